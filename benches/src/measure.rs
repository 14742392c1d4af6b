//! The WebSocket figures: throughput, small-message rate and latency, handshakes, and
//! memory per idle tunnel.
//!
//! Every function runs against `target` (a proxy or the origin itself), is bounded by
//! its `duration`, and returns numbers; printing is the caller's business.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::procfs;
use crate::ws::{self, Client, RecvBuf};

/// Echo throughput over one connection.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// Payload bytes echoed back per second, in MB/s (10^6).
    pub megabytes_per_sec: f64,
    /// Messages echoed back.
    pub messages: u64,
}

/// Sends `size`-byte binary messages over one connection, keeping `window` of them in
/// flight, for `duration`; counts the payload that comes back.
pub fn throughput(
    target: SocketAddr,
    size: usize,
    window: usize,
    duration: Duration,
) -> io::Result<Throughput> {
    let client = Client::connect(target, 1)?;
    let writer = client.stream.try_clone()?;
    let closer = client.stream.try_clone()?;
    echo_throughput(
        client.stream,
        client.buf,
        writer,
        closer,
        size,
        window,
        duration,
    )
}

/// [`throughput`] on an upgraded connection: `reader` and `writer` its two directions
/// (`buf` what was read past the 101), `closer` its socket, shut down at the end.
pub fn echo_throughput(
    mut reader: impl Read,
    mut buf: RecvBuf,
    mut writer: impl Write + Send + 'static,
    closer: TcpStream,
    size: usize,
    window: usize,
    duration: Duration,
) -> io::Result<Throughput> {
    let frame = ws::client_frame(ws::OP_BINARY, &vec![0xA5; size]);
    // One token per message allowed in flight; the reader hands one back per echo.
    let (tokens, credit) = mpsc::sync_channel::<()>(window);
    for _ in 0..window {
        tokens.send(()).expect("the receiver is alive");
    }
    let sender = thread::spawn(move || -> io::Result<()> {
        while credit.recv().is_ok() {
            writer.write_all(&frame)?;
        }
        Ok(())
    });
    let start = Instant::now();
    let deadline = start + duration;
    let mut bytes = 0u64;
    let mut messages = 0u64;
    let outcome = loop {
        if Instant::now() >= deadline {
            break Ok(());
        }
        match ws::read_frame(&mut reader, &mut buf) {
            Ok(head) => {
                buf.consume(head.frame_len());
                if head.payload_len != size {
                    break Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "echo of another size",
                    ));
                }
                bytes += size as u64;
                messages += 1;
                let _ = tokens.send(());
            }
            Err(e) => break Err(e),
        }
    };
    let elapsed = start.elapsed().as_secs_f64();
    drop(tokens);
    // Unblocks the sender if it is stuck writing into a full pipe.
    let _ = closer.shutdown(Shutdown::Both);
    let _ = sender.join();
    outcome?;
    Ok(Throughput {
        megabytes_per_sec: bytes as f64 / elapsed / 1e6,
        messages,
    })
}

/// Closed-loop small-message figures over many connections.
#[derive(Debug, Clone, Copy)]
pub struct Messages {
    /// Round trips completed per second, all connections together.
    pub per_sec: f64,
    /// Median round trip, microseconds.
    pub p50_us: u32,
    /// 99th-percentile round trip, microseconds.
    pub p99_us: u32,
    /// Connections that failed (handshake or I/O).
    pub errors: u64,
}

/// `connections` clients each send a `size`-byte message and wait for its echo, again
/// and again, for `duration`.
pub fn messages(
    target: SocketAddr,
    connections: usize,
    size: usize,
    duration: Duration,
) -> io::Result<Messages> {
    let frame = Arc::new(ws::client_frame(ws::OP_BINARY, &vec![b'm'; size]));
    let barrier = Arc::new(Barrier::new(connections + 1));
    let errors = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::with_capacity(connections);
    for id in 0..connections {
        let (frame, barrier, errors) = (frame.clone(), barrier.clone(), errors.clone());
        workers.push(thread::spawn(move || {
            let client = Client::connect(target, id as u64 + 100);
            barrier.wait();
            let mut client = match client {
                Ok(client) => client,
                Err(e) => {
                    eprintln!("messages: connection {id}: {e}");
                    errors.fetch_add(1, Ordering::Relaxed);
                    return Vec::new();
                }
            };
            let deadline = Instant::now() + duration;
            let mut samples = Vec::with_capacity(1 << 16);
            loop {
                let sent = Instant::now();
                if sent >= deadline {
                    break;
                }
                match client.round_trip(&frame) {
                    Ok(n) if n == size => samples.push(sent.elapsed().as_micros() as u32),
                    Ok(_) | Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
            samples
        }));
    }
    barrier.wait();
    let start = Instant::now();
    let mut samples: Vec<u32> = Vec::new();
    for worker in workers {
        samples.extend(worker.join().expect("worker panicked"));
    }
    let elapsed = start.elapsed().as_secs_f64();
    if samples.is_empty() {
        return Err(io::Error::other("no round trip completed"));
    }
    samples.sort_unstable();
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    Ok(Messages {
        per_sec: samples.len() as f64 / elapsed,
        p50_us: pick(0.50),
        p99_us: pick(0.99),
        errors: errors.load(Ordering::Relaxed),
    })
}

/// Opening handshakes completed.
#[derive(Debug, Clone, Copy)]
pub struct Handshakes {
    /// Handshakes (connect, upgrade, validated 101) per second.
    pub per_sec: f64,
    /// Attempts that failed.
    pub errors: u64,
}

/// `concurrency` clients each connect, complete the opening handshake and hang up, again
/// and again, for `duration`.
pub fn handshakes(
    target: SocketAddr,
    concurrency: usize,
    duration: Duration,
) -> io::Result<Handshakes> {
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|id| {
            let (done, errors) = (done.clone(), errors.clone());
            thread::spawn(move || {
                let mut seed = id as u64 * 1_000_000;
                while Instant::now() < deadline {
                    seed += 1;
                    match Client::connect(target, seed) {
                        Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker panicked");
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(Handshakes {
        per_sec: done.load(Ordering::Relaxed) as f64 / elapsed,
        errors: errors.load(Ordering::Relaxed),
    })
}

/// Memory a proxy holds for idle tunnels.
#[derive(Debug, Clone, Copy)]
pub struct Idle {
    /// Tunnels opened (each handshaken and echoed once).
    pub opened: usize,
    /// Proxy resident memory (process tree) before opening, KiB.
    pub rss_before_kib: u64,
    /// Proxy resident memory with every tunnel open and idle, KiB.
    pub rss_held_kib: u64,
    /// `(held - before) / opened`, bytes.
    pub bytes_per_tunnel: f64,
    /// Tunnels that still echoed after the hold.
    pub alive_after_hold: usize,
}

/// Opens `tunnels` tunnels through `target`, echoes one message on each, holds them idle
/// for `hold`, reads the resident memory of process `pid` and its descendants, then
/// checks that every tunnel still echoes.
pub fn idle(target: SocketAddr, pid: u32, tunnels: usize, hold: Duration) -> io::Result<Idle> {
    const OPENERS: usize = 8;
    let rss_before_kib = procfs::tree_rss_kib(pid)?;
    let frame = Arc::new(ws::client_frame(ws::OP_BINARY, b"are you there?"));
    let failed = Arc::new(AtomicBool::new(false));
    let openers: Vec<_> = (0..OPENERS)
        .map(|opener| {
            let (frame, failed) = (frame.clone(), failed.clone());
            thread::spawn(move || {
                let mut clients = Vec::new();
                for i in (opener..tunnels).step_by(OPENERS) {
                    if failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let opened = Client::connect(target, i as u64 + 7).and_then(|mut client| {
                        client
                            .stream
                            .set_read_timeout(Some(Duration::from_secs(10)))?;
                        client.round_trip(&frame)?;
                        Ok(client)
                    });
                    match opened {
                        Ok(client) => clients.push(client),
                        Err(e) => {
                            eprintln!("idle: tunnel {i}: {e}");
                            failed.store(true, Ordering::Relaxed);
                        }
                    }
                }
                clients
            })
        })
        .collect();
    let mut clients: Vec<Client> = Vec::with_capacity(tunnels);
    for opener in openers {
        clients.extend(opener.join().expect("opener panicked"));
    }
    let opened = clients.len();
    thread::sleep(hold);
    let rss_held_kib = procfs::tree_rss_kib(pid)?;
    let alive_after_hold = clients
        .iter_mut()
        .map(|c| c.round_trip(&frame))
        .filter(Result::is_ok)
        .count();
    let delta = rss_held_kib.saturating_sub(rss_before_kib) as f64 * 1024.0;
    Ok(Idle {
        opened,
        rss_before_kib,
        rss_held_kib,
        bytes_per_tunnel: if opened == 0 {
            f64::NAN
        } else {
            delta / opened as f64
        },
        alive_after_hold,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// An origin on an ephemeral port, served by threads of this test process.
    fn origin() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || crate::origin::serve(listener));
        addr
    }

    const SHORT: Duration = Duration::from_millis(200);

    #[test]
    fn throughput_counts_whole_echoed_messages() {
        let r = throughput(origin(), 65536, 4, SHORT).unwrap();
        assert!(r.messages > 0);
        assert!(r.megabytes_per_sec > 0.0);
    }

    #[test]
    fn messages_measure_every_connection_without_errors() {
        let r = messages(origin(), 4, 32, SHORT).unwrap();
        assert_eq!(r.errors, 0);
        assert!(r.per_sec > 0.0);
        assert!(r.p50_us <= r.p99_us);
    }

    #[test]
    fn handshakes_validate_the_accept_key() {
        let r = handshakes(origin(), 2, SHORT).unwrap();
        assert_eq!(r.errors, 0);
        assert!(r.per_sec > 0.0);
    }

    #[test]
    fn handshake_to_a_plain_http_server_is_refused() {
        // The origin answers 404 to a non-upgrade GET, but a server that answers an
        // upgrade with 200 must not count as a handshake.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = ws::RecvBuf::with_capacity(1024);
            while ws::head_end(buf.filled()).is_none() {
                buf.fill_from(&mut stream).unwrap();
            }
            stream.write_all(crate::origin::SMALL_RESPONSE).unwrap();
        });
        let err = Client::connect(addr, 1).unwrap_err();
        assert!(err.to_string().contains("200"), "{err}");
    }

    #[test]
    fn idle_tunnels_all_echo_after_the_hold() {
        let r = idle(origin(), std::process::id(), 20, Duration::ZERO).unwrap();
        assert_eq!(r.opened, 20);
        assert_eq!(r.alive_after_hold, 20);
        assert!(r.rss_held_kib > 0);
    }
}
