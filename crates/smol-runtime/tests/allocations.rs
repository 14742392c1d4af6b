//! Heap allocations per operation through a running proxy (1 worker), counted by a
//! counting global allocator: one keep-alive request, one WebSocket handshake.
//!
//! The client and the origin of this test allocate nothing while a count runs (fixed
//! buffers, threads started before), so every allocation counted is the proxy's. Each
//! figure is the mean over many operations after a warm-up (the pool filled, buffers
//! and queues grown), and the test fails when it grows past the bound measured in
//! benches/RESULTS.md ("Allocations per request").
//!
//! ```text
//! cargo test -p switchyard-smol --test allocations -- --nocapture
//! ```

use std::alloc::System;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use switchyard_smol::{spawn, ServerConfig, ShutdownHandle};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The count is process-wide: one test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const LIMIT: Duration = Duration::from_secs(5);
const WARM_UP: usize = 50;
const MEASURED: usize = 400;

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, world!";
const REQUEST: &[u8] =
    b"GET / HTTP/1.1\r\nHost: test\r\nUser-Agent: allocations\r\nAccept: */*\r\n\r\n";
/// RFC 6455 §1.3's own example key, so the origin's answer is a constant.
const UPGRADE: &[u8] = b"GET /chat HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
const SWITCHED: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

/// Reads into `buf` until it holds a complete head (and, with `body`, ends with it);
/// returns the bytes read. Allocation-free.
fn read_until(stream: &mut TcpStream, buf: &mut [u8], body: &[u8]) -> io::Result<usize> {
    let mut n = 0;
    loop {
        let got = stream.read(&mut buf[n..])?;
        if got == 0 {
            return Ok(n);
        }
        n += got;
        let head_done = buf[..n].windows(4).any(|w| w == b"\r\n\r\n");
        if head_done && buf[..n].ends_with(body) {
            return Ok(n);
        }
    }
}

/// An origin on threads started before any count: each accepts a connection, answers
/// every request head on it with `answer`, and counts the connections it saw end.
struct Origin {
    addr: SocketAddr,
    closed: Arc<AtomicUsize>,
}

impl Origin {
    fn start(answer: &'static [u8]) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let closed = Arc::new(AtomicUsize::new(0));
        for _ in 0..4 {
            let listener = listener.try_clone().unwrap();
            let closed = closed.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok((mut stream, _)) = listener.accept() {
                    stream.set_read_timeout(Some(LIMIT)).unwrap();
                    while let Ok(n) = read_until(&mut stream, &mut buf, b"") {
                        if n == 0 || stream.write_all(answer).is_err() {
                            break;
                        }
                    }
                    closed.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        Origin { addr, closed }
    }

    /// Waits (bounded) until `count` upstream connections have ended.
    fn wait_closed(&self, count: usize) {
        for _ in 0..5000 {
            if self.closed.load(Ordering::SeqCst) >= count {
                return;
            }
            thread::yield_now();
            thread::park_timeout(Duration::from_millis(1));
        }
        panic!("the proxy did not close its upstream connections");
    }
}

struct Proxy {
    addr: SocketAddr,
    handle: ShutdownHandle,
    thread: Option<thread::JoinHandle<io::Result<()>>>,
}

impl Proxy {
    fn start(origin: SocketAddr) -> Proxy {
        let mut config = ServerConfig::simple("127.0.0.1:0".parse().unwrap(), origin);
        config.workers = 1;
        config.shutdown_grace = Duration::from_secs(1);
        let (addrs, handle, thread) = spawn(config).unwrap();
        Proxy {
            addr: addrs[0],
            handle,
            thread: Some(thread),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(thread) = self.thread.take() {
            let (done, wait) = mpsc::channel();
            thread::spawn(move || done.send(thread.join().map(|r| r.is_ok())));
            let ran = wait.recv_timeout(Duration::from_secs(10));
            if !thread::panicking() {
                assert!(
                    matches!(ran, Ok(Ok(true))),
                    "the proxy ran and stopped cleanly"
                );
            }
        }
    }
}

/// Allocations per operation of `op`, run `MEASURED` times after `WARM_UP` times.
fn allocations_per(mut op: impl FnMut(), settle: impl Fn(usize)) -> f64 {
    for _ in 0..WARM_UP {
        op();
    }
    settle(WARM_UP);
    let region = Region::new(GLOBAL);
    for _ in 0..MEASURED {
        op();
    }
    settle(WARM_UP + MEASURED);
    region.change().allocations as f64 / MEASURED as f64
}

#[test]
fn a_keep_alive_request_allocates_little() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let origin = Origin::start(RESPONSE);
    let proxy = Proxy::start(origin.addr);
    let mut client = TcpStream::connect(proxy.addr).unwrap();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    let mut buf = [0u8; 4096];
    let per_request = allocations_per(
        || {
            client.write_all(REQUEST).unwrap();
            let n = read_until(&mut client, &mut buf, b"Hello, world!").unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200 "));
        },
        |_| {},
    );
    println!("allocations per keep-alive request: {per_request:.2}");
    // Measured 8.00 on the Linux reactor (22.07 before issue 14, 11.06 before the head
    // fields went inline and heads exactly sized; benches/RESULTS.md, "Allocations per
    // request"), 12.00 on the portable backend (async-io's own registrations and wakers).
    let bound = if cfg!(feature = "portable") {
        12.5
    } else {
        8.5
    };
    assert!(
        per_request <= bound,
        "{per_request} allocations per request"
    );
}

#[test]
fn a_websocket_handshake_allocates_little() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let origin = Origin::start(SWITCHED);
    let proxy = Proxy::start(origin.addr);
    let mut buf = [0u8; 4096];
    let per_handshake = allocations_per(
        || {
            let mut client = TcpStream::connect(proxy.addr).unwrap();
            client.set_read_timeout(Some(LIMIT)).unwrap();
            client.write_all(UPGRADE).unwrap();
            let n = read_until(&mut client, &mut buf, b"").unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 101 "));
            client.shutdown(Shutdown::Both).unwrap();
        },
        |handshakes| origin.wait_closed(handshakes),
    );
    println!("allocations per WebSocket handshake: {per_handshake:.2}");
    // Measured 39.00-39.03 on the Linux reactor (50.20 before issue 14, 41.20 before
    // the head fields went inline and heads exactly sized; benches/RESULTS.md,
    // "Allocations per request"). Three of them are kept on purpose: the tunnel's own
    // task, which holds far less than the HTTP task it replaces; the tunnel's ending,
    // boxed so that an idle tunnel does not carry its room (this client leaves without
    // a Close); and the tunnel's closing record, boxed so that every output the core
    // moves is half the size. 48.6-50.5 on the portable backend (async-io's
    // registrations vary with how the handshake's reads and writes meet readiness).
    let bound = if cfg!(feature = "portable") {
        52.0
    } else {
        39.5
    };
    assert!(
        per_handshake <= bound,
        "{per_handshake} allocations per handshake"
    );
}
