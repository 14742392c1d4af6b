//! The smuggling corpus (`switchyard-corpus`, crates/corpus), end to end: each vector is
//! written by a raw `std::net` client to a real proxy on 127.0.0.1 in front of a raw
//! recording origin, in one write and then one byte per write. The verdict uses the same
//! rules as the core corpus (`switchyard_corpus::verify`): the statuses the client got,
//! and that the origin received nothing, or exactly the expected well-formed requests.
//!
//! A connection the proxy keeps open is ended with a probe request on the same
//! connection: its response must come next and be intact, so a forged or leftover
//! response cannot hide behind a read timeout.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use switchyard_corpus::{
    client_statuses, parse_forwarded, reply_bytes, verify, Observed, Parsed, Reply, Side, Up,
    Vector,
};
use switchyard_e2e::{wait_until, Proxy, IO_TIMEOUT};

/// Vectors that fail end to end, printed with their outcome but not asserted. Keep in
/// step with `KNOWN_GAPS` of crates/core/tests/corpus.rs (the core is the same).
const KNOWN_GAPS: &[&str] = &[];

/// Vectors after which the proxy waits for the rest of an incomplete head: a probe would
/// become part of it, so the connection is just closed.
const NO_PROBE: &[&str] = &["upgrade_answered_200_frame_bytes_held"];

/// Whole run bound: a vector that takes longer than this fails instead of hanging.
const VECTOR_DEADLINE: Duration = Duration::from_secs(10);

// ---- the recording origin ------------------------------------------------------------

#[derive(Default)]
struct Recording {
    received: Mutex<Vec<u8>>,
    done: AtomicBool,
}

/// An upstream on 127.0.0.1 that records every connection's bytes and answers each
/// complete, well-formed request with the vector's next [`Reply`].
struct Origin {
    addr: SocketAddr,
    connections: Arc<Mutex<Vec<Arc<Recording>>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Origin {
    fn start(replies: Vec<Reply>) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the origin");
        let addr = listener.local_addr().expect("origin address");
        let connections: Arc<Mutex<Vec<Arc<Recording>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let replies = Arc::new(replies);
        let acceptor = {
            let (connections, stop) = (connections.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let recording = Arc::new(Recording::default());
                    connections.lock().unwrap().push(recording.clone());
                    let (replies, answered) = (replies.clone(), answered.clone());
                    std::thread::spawn(move || serve(stream, &recording, &replies, &answered));
                }
            })
        };
        Origin {
            addr,
            connections,
            stop,
            acceptor: Some(acceptor),
        }
    }

    fn received(&self) -> Vec<Vec<u8>> {
        self.connections
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.received.lock().unwrap().clone())
            .collect()
    }

    fn all_done(&self) -> bool {
        self.connections
            .lock()
            .unwrap()
            .iter()
            .all(|r| r.done.load(Ordering::SeqCst))
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn serve(mut stream: TcpStream, recording: &Recording, replies: &[Reply], answered: &AtomicUsize) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let mut parsed = 0;
    let mut answering = true;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut received = recording.received.lock().unwrap();
        received.extend_from_slice(&chunk[..n]);
        while answering {
            let Parsed::Complete(request, used) = parse_forwarded(&received[parsed..]) else {
                break;
            };
            parsed += used;
            let reply = replies
                .get(answered.fetch_add(1, Ordering::SeqCst))
                .copied()
                .unwrap_or(Reply::Echo);
            let _ = stream.write_all(&reply_bytes(reply, &request));
            match reply {
                Reply::RawThenClose(_) => {
                    let _ = stream.shutdown(Shutdown::Write);
                    answering = false;
                }
                // After a 101 the bytes are the tunnel's; they are recorded, not parsed.
                Reply::WebSocket(_) => answering = false,
                Reply::Echo | Reply::Raw(_) => {}
            }
        }
    }
    recording.done.store(true, Ordering::SeqCst);
}

// ---- the client ------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Whole,
    Bytewise,
}

/// Reads what is available into `buf`; false once the peer closed (or reset).
fn read_some(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk) {
        Ok(0) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
        Err(e) if e.kind() == ErrorKind::Interrupted => true,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!(
                "the proxy sent nothing more before the read timeout; received so far {:?}",
                String::from_utf8_lossy(buf)
            )
        }
        Err(_) => false,
    }
}

/// The probe that ends a kept-alive connection, and what its response ends with.
fn probe(vector: &Vector) -> &'static [u8] {
    if vector.head_requests {
        b"HEAD /probe HTTP/1.1\r\nHost: a\r\n\r\n"
    } else {
        b"GET /probe HTTP/1.1\r\nHost: a\r\n\r\n"
    }
}

/// The vector as observed end to end: a probe is expected after a kept-alive exchange.
fn expected(vector: &Vector) -> Vector {
    let mut expected = vector.clone();
    let probing =
        !vector.closed && !matches!(vector.up, Up::Tunnel(..)) && !NO_PROBE.contains(&vector.name);
    if probing {
        expected.statuses.push(200);
        if let Up::Requests(lines) = vector.up {
            let mut lines = lines.to_vec();
            lines.push(if vector.head_requests {
                "HEAD /probe HTTP/1.1"
            } else {
                "GET /probe HTTP/1.1"
            });
            expected.up = Up::Requests(Box::leak(lines.into_boxed_slice()));
        }
    }
    expected
}

fn run(vector: &Vector, mode: Mode) -> Observed {
    let origin = Origin::start(vector.replies.clone());
    // The corpus is about HTTP framing; its tunnel vectors carry bytes that are not valid
    // WebSocket frames (an unmasked client frame), so its tunnels are byte tunnels, as in
    // the core's corpus test.
    let mut proxy = Proxy::start_with(origin.addr, |config| {
        config.core.routes[0].websocket.validate = false;
    });
    let started = Instant::now();
    let want = expected(vector);
    let mut client = TcpStream::connect(proxy.addr()).expect("connect to the proxy");
    // A known gap may leave the connection waiting: do not spend IO_TIMEOUT on it.
    let read_timeout = if KNOWN_GAPS.contains(&vector.name) {
        Duration::from_secs(1)
    } else {
        IO_TIMEOUT
    };
    client
        .set_read_timeout(Some(read_timeout))
        .expect("read timeout");
    client
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("write timeout");
    client.set_nodelay(true).expect("nodelay");

    let pieces: Vec<&[u8]> = match mode {
        Mode::Whole => vec![&vector.client[..]],
        Mode::Bytewise => vector.client.chunks(1).collect(),
    };
    for piece in pieces {
        // The proxy may close after a rejection: later writes may fail, which is fine.
        if client.write_all(piece).is_err() {
            break;
        }
    }
    let mut received = Vec::new();
    let mut closed = false;
    let tunnel_expected = matches!(vector.up, Up::Tunnel(..));
    if vector.closed {
        while read_some(&mut client, &mut received) {}
        closed = true;
    } else if tunnel_expected {
        while client_statuses(&received, false).len() < want.statuses.len() {
            if !read_some(&mut client, &mut received) {
                closed = true;
                break;
            }
        }
        if let Up::Tunnel(_, bytes) = vector.up {
            wait_until(
                VECTOR_DEADLINE,
                "the tunnel bytes to reach the origin",
                || origin.received().last().is_some_and(|r| r.ends_with(bytes)),
            );
        }
    } else {
        if want.statuses.len() > vector.statuses.len() {
            let _ = client.write_all(probe(vector));
        }
        let complete = |buf: &[u8]| {
            let statuses = client_statuses(buf, vector.head_requests);
            statuses.len() >= want.statuses.len()
                && (vector.head_requests
                    || want.statuses.len() == vector.statuses.len()
                    || buf.ends_with(b"/probe"))
        };
        while !complete(&received) {
            if !read_some(&mut client, &mut received) {
                closed = true;
                break;
            }
        }
    }
    let tunnel =
        tunnel_expected && !closed && client_statuses(&received, false).first() == Some(&101);
    drop(client);
    let stopped = proxy.shutdown();
    assert!(
        stopped.is_some(),
        "{}: the proxy did not shut down",
        vector.name
    );
    wait_until(VECTOR_DEADLINE, "the origin connections to end", || {
        origin.all_done()
    });
    assert!(
        started.elapsed() < 2 * VECTOR_DEADLINE,
        "{} took {:?}",
        vector.name,
        started.elapsed()
    );
    Observed {
        client: received,
        closed,
        tunnel,
        // Every origin connection is closed by now; how the proxy released each one is
        // asserted by the core corpus, where it is observable.
        upstreams: origin
            .received()
            .into_iter()
            .map(|r| (r, Some(false)))
            .collect(),
        connect_is_async: true,
    }
}

fn show(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
    if bytes.len() > 200 {
        format!("{text:?}… ({} bytes)", bytes.len())
    } else {
        format!("{text:?}")
    }
}

fn run_corpus(mode: Mode, select: impl Fn(&Vector) -> bool) {
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut ran = 0;
    for vector in switchyard_corpus::all().into_iter().filter(|v| select(v)) {
        ran += 1;
        let observed =
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&vector, mode))) {
                Ok(observed) => observed,
                Err(panic) => {
                    let why = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    if KNOWN_GAPS.contains(&vector.name) {
                        println!("KNOWN GAP {} ({mode:?}): {why}", vector.name);
                    } else {
                        failures.push(format!("{} [{}]: {why}", vector.name, vector.class));
                    }
                    continue;
                }
            };
        let wrong = verify(&expected(&vector), &observed);
        if KNOWN_GAPS.contains(&vector.name) {
            if wrong.is_empty() {
                println!(
                    "KNOWN GAP {} ({mode:?}) passes end to end in this mode",
                    vector.name
                );
            } else {
                println!("KNOWN GAP {} ({mode:?}): {}", vector.name, wrong.join("; "));
            }
        } else if !wrong.is_empty() {
            failures.push(format!(
                "{} [{}] sent {}\n  client received {}\n  - {}",
                vector.name,
                vector.class,
                show(&vector.client),
                show(&observed.client),
                wrong.join("\n  - ")
            ));
        }
    }
    println!(
        "{ran} vectors end to end ({mode:?}) in {:?}",
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} vector(s) failed end to end ({mode:?}):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn smuggling_corpus_end_to_end_in_one_write() {
    run_corpus(Mode::Whole, |_| true);
}

#[test]
fn smuggling_corpus_end_to_end_byte_by_byte() {
    // Request-side and upgrade vectors: those are the ones whose bytes the client writes.
    run_corpus(Mode::Bytewise, |v| v.side != Side::Response);
}
