//! Running out of file descriptors makes `accept` fail (EMFILE); the server must keep
//! serving, not stop: by closing idle upstream connections when it has some, else by
//! pausing until descriptors are freed. Its own test binary, because it lowers this
//! process's open-file limit; the tests take turns. Linux only: it counts open
//! descriptors in `/proc/self/fd`.
#![cfg(target_os = "linux")]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use switchyard_smol::{spawn, ServerConfig};

const LIMIT: Duration = Duration::from_secs(5);

/// A keep-alive origin answering `ok`. The first answer on each of its first `held`
/// connections waits until `held` requests have arrived, so that the proxy must have
/// dialed that many connections at once. Each connection it sees closed is reported on
/// `closed`.
struct Origin {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed: Receiver<()>,
}

impl Origin {
    fn start(held: usize) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let barrier = Arc::new(Barrier::new(held.max(1)));
        let (closed_tx, closed) = mpsc::channel();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let mut hold = count.fetch_add(1, Ordering::SeqCst) < held;
                let barrier = barrier.clone();
                let closed = closed_tx.clone();
                thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut writer = stream;
                    let mut line = String::new();
                    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                        if line == "\r\n" {
                            if std::mem::take(&mut hold) {
                                barrier.wait();
                            }
                            let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                            if writer.write_all(answer).is_err() {
                                break;
                            }
                        }
                        line.clear();
                    }
                    let _ = closed.send(());
                });
            }
        });
        Origin {
            addr,
            accepted,
            closed,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn open_files() -> u64 {
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

/// The tests lower the limit of the whole process: one at a time.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The descriptor table filled but for one slot, under a limit just above what is open;
/// the limit and the slots come back on drop.
struct FullTable {
    original: Rlimit,
    filler: Vec<File>,
}

impl FullTable {
    fn fill() -> FullTable {
        let original = getrlimit(Resource::Nofile);
        let tight = Rlimit {
            current: Some(open_files() + 16),
            maximum: original.maximum,
        };
        setrlimit(Resource::Nofile, tight).unwrap();
        let mut filler = Vec::new();
        while let Ok(file) = File::open("/dev/null") {
            filler.push(file);
            assert!(filler.len() < 1000, "the limit did not bite");
        }
        filler.pop();
        FullTable { original, filler }
    }
}

impl Drop for FullTable {
    fn drop(&mut self) {
        self.filler.clear();
        let _ = setrlimit(Resource::Nofile, self.original);
    }
}

/// Sends a request (a new connection each, closed by the proxy after the answer).
fn send(proxy: SocketAddr) -> TcpStream {
    let mut client = TcpStream::connect(proxy).unwrap();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    client
}

fn answer(mut client: TcpStream) -> String {
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap();
    answer
}

fn get(proxy: SocketAddr) -> String {
    answer(send(proxy))
}

#[test]
fn accept_pauses_while_out_of_file_descriptors_and_resumes_once_some_are_freed() {
    let _turn = one_at_a_time();
    let mut config = ServerConfig::simple("127.0.0.1:0".parse().unwrap(), Origin::start(0).addr);
    config.workers = 1;
    // No idle upstream connection to close: only the pause is left.
    config.pool.max_idle_per_server = 0;
    let (addrs, handle, server) = spawn(config).unwrap();
    let proxy = addrs[0];
    assert!(get(proxy).ends_with("ok"));

    // The client takes the last free slot: the proxy cannot accept it (EMFILE) until
    // descriptors are freed.
    let full = FullTable::fill();
    let client = send(proxy);

    // Once descriptors are free again, the paused accept loop picks the client up.
    drop(full);
    let answer = answer(client);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    handle.shutdown();
    server.join().unwrap().unwrap();
}

#[test]
fn out_of_file_descriptors_the_oldest_idle_upstream_connections_are_closed_to_accept() {
    const POOLED: usize = 20;
    let _turn = one_at_a_time();
    let origin = Origin::start(POOLED);
    let mut config = ServerConfig::simple("127.0.0.1:0".parse().unwrap(), origin.addr);
    config.workers = 1;
    let (addrs, handle, server) = spawn(config).unwrap();
    let proxy = addrs[0];

    // POOLED requests at once, each on an upstream connection of its own, all pooled
    // once answered: the next request reuses one.
    let clients: Vec<_> = (0..POOLED)
        .map(|_| thread::spawn(move || get(proxy)))
        .collect();
    for client in clients {
        assert!(client.join().unwrap().ends_with("ok"));
    }
    assert_eq!(origin.accepted(), POOLED);
    assert!(get(proxy).ends_with("ok"));
    assert_eq!(
        origin.accepted(),
        POOLED,
        "the upstream connections are pooled"
    );

    // The table stays full: nothing but the proxy's own idle connections can free a
    // descriptor for the client's connection.
    let full = FullTable::fill();
    let answer = answer(send(proxy));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(full);
    origin
        .closed
        .recv_timeout(LIMIT)
        .expect("an idle upstream connection was closed");
    assert_eq!(
        origin.accepted(),
        POOLED,
        "the client was served over a pooled connection the trim kept"
    );

    handle.shutdown();
    server.join().unwrap().unwrap();
}
