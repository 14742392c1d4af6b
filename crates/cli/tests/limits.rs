//! The open-file limit: raised at start-up, one warning when `max_connections` cannot
//! fit in it, and, once the descriptors are all taken, idle upstream connections closed
//! so that a new client is still served. The binary runs under a lowered limit.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use common::{binary_with_descriptor_limit, Running, LIMIT};

const SOFT: u64 = 256;
const HARD: u64 = 1024;

fn start(args: &[&str]) -> Running {
    start_limited(SOFT, HARD, args)
}

fn start_limited(soft: u64, hard: u64, args: &[&str]) -> Running {
    let mut command = binary_with_descriptor_limit(soft, hard);
    command.args(args);
    Running::spawn(command)
}

/// The soft and hard `Max open files` of a running process.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no open-file limit in\n{limits}"));
    let mut values = line["Max open files".len()..].split_whitespace();
    let soft = values.next().unwrap().to_string();
    let hard = values.next().unwrap().to_string();
    (soft, hard)
}

fn descriptor_warnings(proxy: &Running) -> Vec<&String> {
    proxy
        .seen()
        .iter()
        .filter(|line| line.contains("file descriptors"))
        .collect()
}

#[test]
fn the_soft_open_file_limit_is_raised_to_the_hard_one_at_start_up() {
    let mut proxy = start(&["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:9"]);
    proxy.listening_addr();
    let limits = open_file_limits(proxy.child.id());
    assert_eq!(limits, (HARD.to_string(), HARD.to_string()));
}

#[test]
fn a_max_connections_that_cannot_fit_in_the_limit_is_warned_about_once_with_the_numbers() {
    let mut proxy = start(&[
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "127.0.0.1:9",
        "--workers",
        "2",
    ]);
    // Logged before the listeners are announced: every start-up line is in by now.
    proxy.listening_addr();
    let warnings = descriptor_warnings(&proxy);
    assert_eq!(warnings.len(), 1, "{:#?}", proxy.seen());
    let warning = warnings[0];
    assert!(warning.contains("WARN"), "{warning}");
    // 2 × 10 000 connections, 128 idle per server in each of 2 pools, and for the
    // listeners, the workers and the process: 86 with the per-worker reactors (each
    // keeps an epoll, an eventfd and spare splice pipes), 20 on the portable backend
    // (one shared poller, no pipes); compared with the raised limit.
    #[cfg(not(feature = "portable"))]
    let (total, fixed, fit) = (20342, 86, 341);
    #[cfg(feature = "portable")]
    let (total, fixed, fit) = (20276, 20, 374);
    assert!(
        warning.contains(&format!(
            "max_connections 10000 needs up to {total} file descriptors (2 per connection, 256 \
             for idle upstream connections, {fixed} for listeners, workers and the process), \
             but the limit is 1024 (hard 1024), enough for about {fit} connections; raise it \
             (ulimit -n"
        )),
        "{warning}"
    );
}

#[test]
fn a_max_connections_that_fits_the_raised_limit_is_not_warned_about() {
    // 2 × 300 + 256 + 86 = 942: more than the soft limit it started with, within the
    // hard one it is raised to.
    let mut proxy = start(&[
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "127.0.0.1:9",
        "--workers",
        "2",
        "--max-connections",
        "300",
    ]);
    proxy.listening_addr();
    assert_eq!(
        descriptor_warnings(&proxy),
        Vec::<&String>::new(),
        "{:#?}",
        proxy.seen()
    );
}

/// A keep-alive origin answering `ok`, counting the connections it accepted. The first
/// answer on each of its first `held` connections waits until `held` requests have
/// arrived: the proxy must have dialed that many connections at once.
struct Origin {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Origin {
    fn start(held: usize) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let barrier = Arc::new(Barrier::new(held));
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let mut hold = count.fetch_add(1, Ordering::SeqCst) < held;
                let barrier = barrier.clone();
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
                                return;
                            }
                        }
                        line.clear();
                    }
                });
            }
        });
        Origin { addr, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// One request on a connection of its own; the answer, read to the proxy's close.
fn get(proxy: SocketAddr) -> String {
    let mut client = TcpStream::connect(proxy).unwrap();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap();
    answer
}

fn open_descriptors(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64
}

#[test]
fn with_every_descriptor_taken_idle_upstream_connections_are_closed_to_serve_a_new_client() {
    const LIMIT_FDS: u64 = 128;
    const POOLED: usize = 40;
    let origin = Origin::start(POOLED);
    let upstream = origin.addr.to_string();
    let mut proxy = start_limited(
        LIMIT_FDS,
        LIMIT_FDS,
        &[
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--workers",
            "1",
        ],
    );
    let addr = proxy.listening_addr();

    // POOLED requests at once, each on an upstream connection of its own; once answered
    // they are all pooled (the next request reuses one, the origin sees no new one).
    let clients: Vec<_> = (0..POOLED)
        .map(|_| thread::spawn(move || get(addr)))
        .collect();
    for client in clients {
        assert!(client.join().unwrap().ends_with("ok"));
    }
    assert!(get(addr).ends_with("ok"));
    assert_eq!(
        origin.accepted(),
        POOLED,
        "the upstream connections are pooled"
    );

    // Clients that send nothing take the proxy's remaining descriptors, and 24 more:
    // those wait in the listen queue until the proxy closes pooled connections (accept
    // fails with EMFILE, twice at 16 closed each time), as does the client with a request.
    let free = LIMIT_FDS - open_descriptors(proxy.child.id());
    let idle: Vec<TcpStream> = (0..free + 24)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let answer = get(addr);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(
        origin.accepted(),
        POOLED,
        "served over a pooled connection that was kept: the oldest were closed"
    );

    drop(idle);
    common::signal(proxy.child.id(), "TERM");
    assert_eq!(proxy.wait_exit().code(), Some(0));
    let warnings: Vec<_> = proxy
        .seen()
        .iter()
        .filter(|line| line.contains("accept failed"))
        .collect();
    assert_eq!(warnings.len(), 1, "once for the shortage: {warnings:#?}");
    assert!(warnings[0].contains("WARN"), "{}", warnings[0]);
    assert!(
        warnings[0].contains("Too many open files"),
        "{}",
        warnings[0]
    );
}
