//! The TLS figures: full handshakes per second, each followed by one small request, and
//! the WebSocket echo throughput over TLS (`wss`).
//!
//! A handshake counts once the proxy has answered a `GET /` over it: a server that sent
//! its Finished but never checked the client's, or cannot decrypt, does not score. The
//! request is the cheap part (13 bytes, the upstream connection kept alive by every
//! proxy); the connection is then closed with close_notify.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crate::measure::{self, Throughput};
use crate::tls::{self, TlsClient};
use crate::ws::{self, RecvBuf};

/// [`measure::throughput`] over TLS; also returns what was agreed (cipher suite, group).
pub fn throughput(
    target: SocketAddr,
    client: &TlsClient,
    size: usize,
    window: usize,
    duration: Duration,
) -> io::Result<(Throughput, String)> {
    let mut stream = client.connect(target)?;
    let agreed = tls::negotiated(&stream);
    let buf = ws::upgrade(&mut stream, target, 1)?;
    let (reader, writer, closer) = tls::split(stream)?;
    let result = measure::echo_throughput(reader, buf, writer, closer, size, window, duration)?;
    Ok((result, agreed))
}

/// Full handshakes completed.
#[derive(Debug, Clone)]
pub struct Handshakes {
    /// Handshakes (connect, full TLS 1.3 handshake, one `GET /` answered 200) per second.
    pub per_sec: f64,
    /// Attempts that failed.
    pub errors: u64,
    /// The cipher suite and key exchange group of the first one.
    pub agreed: String,
}

/// `concurrency` clients each connect, handshake, send one request, read its answer and
/// close, again and again, for `duration`.
pub fn handshakes(
    target: SocketAddr,
    client: &TlsClient,
    concurrency: usize,
    duration: Duration,
) -> io::Result<Handshakes> {
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let agreed = Arc::new(OnceLock::new());
    let first_error = Arc::new(OnceLock::new());
    let start = Instant::now();
    let deadline = start + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (done, errors, client) = (done.clone(), errors.clone(), client.clone());
            let (agreed, first_error) = (agreed.clone(), first_error.clone());
            thread::spawn(move || {
                while Instant::now() < deadline {
                    match one_request(target, &client, agreed.get().is_none()) {
                        Ok(what) => {
                            if let Some(what) = what {
                                let _ = agreed.set(what);
                            }
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            let _ = first_error.set(e.to_string());
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker panicked");
    }
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(e) = first_error.get() {
        eprintln!("tls-handshakes: first error: {e}");
    }
    Ok(Handshakes {
        per_sec: done.load(Ordering::Relaxed) as f64 / elapsed,
        errors: errors.load(Ordering::Relaxed),
        agreed: agreed.get().cloned().unwrap_or_else(|| "-".to_owned()),
    })
}

/// One connection: handshake, `GET /`, its whole 200 read, close. Returns what was
/// agreed when `describe`.
fn one_request(
    target: SocketAddr,
    client: &TlsClient,
    describe: bool,
) -> io::Result<Option<String>> {
    let mut stream = client.connect(target)?;
    let agreed = describe.then(|| tls::negotiated(&stream));
    stream.write_all(format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", tls::SERVER_NAME).as_bytes())?;
    let mut buf = RecvBuf::with_capacity(1024);
    let end = loop {
        if let Some(end) = ws::head_end(buf.filled()) {
            break end;
        }
        if buf.filled().len() > 16 * 1024 || buf.fill_from(&mut stream)? == 0 {
            return Err(bad("no complete response head"));
        }
    };
    let head = &buf.filled()[..end];
    if !head.starts_with(b"HTTP/1.1 200 ") {
        let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
        return Err(bad(&format!("answered {}", String::from_utf8_lossy(line))));
    }
    let body: usize = ws::header(head, "content-length")
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
        .ok_or_else(|| bad("no Content-Length"))?;
    while buf.filled().len() < end + body {
        if buf.fill_from(&mut stream)? == 0 {
            return Err(bad("response body cut short"));
        }
    }
    tls::close(stream);
    Ok(agreed)
}

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_owned())
}

#[cfg(test)]
mod tests;
