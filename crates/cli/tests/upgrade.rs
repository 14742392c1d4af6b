//! Zero-downtime upgrades of the binary: a second `switchyard` on the same address, and
//! the first one draining, while clients connect in a loop.
//!
//! `measure_swaps` (ignored; run it with `--ignored --nocapture`) repeats the swaps and
//! prints how many connections failed, for `docs/DECISIONS.md`; with
//! `SWITCHYARD_OLD_BINARY` set, that binary plays the old process (`SWAP_HANDOVER` if
//! it has the upgrade socket), with `SWITCHYARD_BINARY` set, that one plays both (or
//! the new one); `SWAP_ROUNDS` and `SWAP_CLIENTS` set the swaps and the client threads.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{binary, signal, Running, LIMIT};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

/// Client threads connecting in a loop: several, so that connections are queued in the
/// listeners' backlogs at the instant the old process stops accepting
/// (`measure_swaps` takes `SWAP_CLIENTS`).
const CLIENTS: usize = 4;
/// Any one connection's whole exchange; a failure past it is a failure, not a hang.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(5);

/// How one connection of the loop ended badly.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    Refused,
    Reset,
    Other(String),
}

fn classify(error: &std::io::Error) -> Failure {
    match error.kind() {
        ErrorKind::ConnectionRefused => Failure::Refused,
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted => {
            Failure::Reset
        }
        _ => Failure::Other(error.to_string()),
    }
}

fn connect(addr: SocketAddr) -> Result<TcpStream, Failure> {
    let stream = TcpStream::connect_timeout(&addr, EXCHANGE_LIMIT).map_err(|e| classify(&e))?;
    stream.set_read_timeout(Some(EXCHANGE_LIMIT)).unwrap();
    stream.set_write_timeout(Some(EXCHANGE_LIMIT)).unwrap();
    Ok(stream)
}

/// One request on a fresh connection: `POST /echo` with a body of its own, answered in
/// full.
fn http_echo(addr: SocketAddr, n: usize) -> Result<(), Failure> {
    let mut stream = connect(addr)?;
    let body = format!("request {n}");
    let request = format!(
        "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| classify(&e))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| classify(&e))?;
    let response = String::from_utf8_lossy(&response);
    if response.starts_with("HTTP/1.1 200 ") && response.ends_with(&format!("\r\n\r\n{body}")) {
        Ok(())
    } else {
        Err(Failure::Other(format!("unexpected response {response:?}")))
    }
}

fn ws_failure(error: tungstenite::Error) -> Failure {
    match error {
        tungstenite::Error::Io(e) => classify(&e),
        tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ) => Failure::Reset,
        other => Failure::Other(other.to_string()),
    }
}

/// One WebSocket on a fresh connection: the handshake, a message echoed, a clean close.
fn ws_echo(addr: SocketAddr, n: usize) -> Result<(), Failure> {
    let stream = connect(addr)?;
    let (mut ws, _) =
        tungstenite::client(format!("ws://{addr}/ws"), stream).map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => ws_failure(e),
            tungstenite::HandshakeError::Interrupted(_) => Failure::Other("interrupted".into()),
        })?;
    let text = format!("message {n}");
    ws.send(Message::text(text.clone())).map_err(ws_failure)?;
    match ws.read().map_err(ws_failure)? {
        Message::Text(reply) if reply.as_str() == text => {}
        other => return Err(Failure::Other(format!("unexpected echo {other:?}"))),
    }
    ws.close(None).map_err(ws_failure)?;
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => return Ok(()),
            Err(e) => return Err(ws_failure(e)),
        }
    }
}

/// Clients connecting in a loop until stopped, every connection checked.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<Vec<Failure>>>,
}

/// What the loop saw.
struct Tally {
    connections: usize,
    failures: Vec<Failure>,
}

impl Tally {
    fn count(&self, what: fn(&Failure) -> bool) -> usize {
        self.failures.iter().filter(|f| what(f)).count()
    }
}

impl Load {
    fn start(addr: SocketAddr) -> Load {
        Load::with_clients(addr, CLIENTS)
    }

    fn with_clients(addr: SocketAddr, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let threads = (0..clients)
            .map(|client| {
                let (stop, done) = (stop.clone(), done.clone());
                thread::spawn(move || {
                    let mut failures = Vec::new();
                    let mut n = client;
                    while !stop.load(Ordering::Relaxed) {
                        // Every other connection a WebSocket, the others a request.
                        let result = if n % 2 == 0 {
                            http_echo(addr, n)
                        } else {
                            ws_echo(addr, n)
                        };
                        if let Err(failure) = result {
                            failures.push(failure);
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                        n += clients;
                    }
                    failures
                })
            })
            .collect();
        Load {
            stop,
            done,
            threads,
        }
    }

    fn connections(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }

    /// Waits until `more` connections beyond those done so far have finished.
    fn wait_for(&self, more: usize) {
        let target = self.connections() + more;
        let deadline = Instant::now() + LIMIT;
        while self.connections() < target {
            assert!(Instant::now() < deadline, "the clients stalled");
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let failures = self
            .threads
            .into_iter()
            .flat_map(|thread| thread.join().unwrap())
            .collect();
        Tally {
            connections: self.done.load(Ordering::Relaxed),
            failures,
        }
    }
}

fn upgrade_socket(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-upgrade-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// `switchyard` with `args`; the binary `SWITCHYARD_OLD_BINARY` names as the old process
/// when `old`, or the one `SWITCHYARD_BINARY` names (a release build, say).
fn start(args: &[String], old: bool) -> Running {
    let named = |variable| std::env::var_os(variable).map(Command::new);
    let old_binary = if old {
        named("SWITCHYARD_OLD_BINARY")
    } else {
        None
    };
    let mut command = old_binary
        .or_else(|| named("SWITCHYARD_BINARY"))
        .unwrap_or_else(binary);
    command.args(args);
    Running::spawn(command)
}

fn args(listen: &str, origin: SocketAddr, workers: usize, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--listen",
        listen,
        "--upstream",
        &origin.to_string(),
        "--workers",
        &workers.to_string(),
        "--shutdown-grace",
        "2s",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    args.extend(extra.iter().map(ToString::to_string));
    args
}

/// How the old process is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Swap {
    /// The new process takes the sockets over the upgrade socket and tells the old one.
    Handover,
    /// The new process binds the same address (`SO_REUSEPORT`); then SIGTERM to the old.
    ReusePortThenSigterm,
}

/// What a swap measured: the client loop's tally, and how many connections the old
/// process found still queued when it stopped accepting (and served instead of
/// resetting them).
struct Swapped {
    tally: Tally,
    queued_at_stop: usize,
}

/// Runs one swap from A to B under the client loop. B is stopped at the end.
fn swap(origin: SocketAddr, how: Swap, workers: (usize, usize), clients: usize) -> Swapped {
    let socket = upgrade_socket(&format!("swap-{:?}-{}-{}.sock", how, workers.0, workers.1));
    let socket_text = socket.display().to_string();
    let handover: Vec<&str> = match how {
        Swap::Handover => vec!["--upgrade-socket", &socket_text],
        Swap::ReusePortThenSigterm => vec![],
    };
    let mut old_args = handover.clone();
    old_args.extend(["--log", "info,switchyard_smol::server=debug"]);
    let mut a = start(&args("127.0.0.1:0", origin, workers.0, &old_args), true);
    let addr = a.listening_addr();
    let load = Load::with_clients(addr, clients);
    load.wait_for(200);
    let mut b = start(
        &args(&addr.to_string(), origin, workers.1, &handover),
        false,
    );
    match how {
        Swap::Handover => {
            b.wait_for_log("took over the listening sockets");
        }
        Swap::ReusePortThenSigterm => {
            b.listening_addr();
            signal(a.child.id(), "TERM");
        }
    }
    assert_eq!(a.wait_exit().code(), Some(0), "{}", a.seen().join("\n"));
    load.wait_for(200);
    let tally = load.finish();
    println!(
        "{how:?} {workers:?}: {} connections, failed: {:?}",
        tally.connections, tally.failures
    );
    signal(b.child.id(), "TERM");
    assert_eq!(b.wait_exit().code(), Some(0), "{}", b.seen().join("\n"));
    let queued_at_stop = a
        .seen()
        .iter()
        .filter(|line| line.contains("stopped accepting"))
        .filter_map(|line| {
            line.split("queued=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    Swapped {
        tally,
        queued_at_stop,
    }
}

/// The status of `GET path` on the admin listener.
fn admin_status(admin: &str, path: &str) -> u16 {
    let mut stream = connect(admin.parse().unwrap()).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response[9..12].parse().unwrap()
}

/// The loop: thousands of connections (requests and WebSockets) across a
/// handover from 2 workers to 3, none refused, reset or failed; and a WebSocket open on
/// the old process echoes through the swap and ends with Close 1001 after its grace.
/// The admin listener is handed over too: once the new process serves, it alone
/// answers `/readyz` (200), while the old one drains.
#[test]
fn a_handover_loses_no_connection_and_the_old_tunnel_drains_with_1001() {
    let origin = switchyard::demo::start_origin().unwrap();
    let socket = upgrade_socket("handover.sock");
    let socket_text = socket.display().to_string();
    // A port of its own, the same for both processes (port 0 would differ).
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let upgrade = [
        "--upgrade-socket",
        socket_text.as_str(),
        "--admin-listen",
        admin.as_str(),
    ];
    let mut a = start(&args("127.0.0.1:0", origin, 2, &upgrade), false);
    let addr = a.listening_addr();
    a.wait_for_log("upgrade socket at ");
    assert!(socket.exists(), "A serves the upgrade socket");

    let stream = connect(addr).unwrap();
    let (mut tunnel, _) = tungstenite::client(format!("ws://{addr}/ws"), stream).unwrap();
    let mut echo = |text: &str| {
        tunnel.send(Message::text(text)).unwrap();
        match tunnel.read().unwrap() {
            Message::Text(reply) => assert_eq!(reply.as_str(), text),
            other => panic!("unexpected {other:?}"),
        }
    };
    echo("before the swap");

    let load = Load::start(addr);
    load.wait_for(500);
    let mut b = start(&args(&addr.to_string(), origin, 3, &upgrade), false);
    b.wait_for_log("took over the listening sockets");
    let handed_over = Instant::now();
    a.wait_for_log("took over the listening sockets; draining");
    a.wait_for_log("admin listener closed; the successor answers on it");
    echo("during the drain");
    for _ in 0..20 {
        assert_eq!(
            admin_status(&admin, "/readyz"),
            200,
            "only the new process answers"
        );
    }
    load.wait_for(500);
    echo("still draining");

    let close = match tunnel.read() {
        Ok(Message::Close(frame)) => frame,
        Ok(other) => panic!("unexpected {other:?}"),
        Err(e) => panic!("the tunnel ended without a Close: {e}"),
    };
    let waited = handed_over.elapsed();
    let close = close.expect("a Close frame with a code");
    assert_eq!(close.code, CloseCode::Away, "{close:?}");
    assert!(
        waited >= Duration::from_millis(1500),
        "Close 1001 came {waited:?} after the handover, before the 2 s grace"
    );
    assert_eq!(a.wait_exit().code(), Some(0), "{}", a.seen().join("\n"));
    // B alone now, on A's sockets and the one it bound for its third worker.
    load.wait_for(1000);
    let tally = load.finish();
    assert!(
        tally.connections >= 2000,
        "{} connections",
        tally.connections
    );
    assert_eq!(
        tally.failures,
        Vec::new(),
        "of {} connections across the handover",
        tally.connections
    );
    assert!(socket.exists(), "B owns the upgrade socket now");
    signal(b.child.id(), "TERM");
    assert_eq!(b.wait_exit().code(), Some(0), "{}", b.seen().join("\n"));
    assert!(!socket.exists(), "B removed its upgrade socket on exit");
}

/// A new process that takes the sockets but then cannot serve (one of its addresses is
/// held by another program) exits 1; the old one hears it, serves on without a failed
/// connection, and hands over to the next attempt.
#[test]
fn a_failed_successor_leaves_the_old_process_serving() {
    let origin = switchyard::demo::start_origin().unwrap();
    let socket = upgrade_socket("failed.sock");
    let socket_text = socket.display().to_string();
    let upgrade = ["--upgrade-socket", socket_text.as_str()];
    let mut a = start(&args("127.0.0.1:0", origin, 2, &upgrade), false);
    let addr = a.listening_addr();
    a.wait_for_log("upgrade socket at ");
    let load = Load::start(addr);
    load.wait_for(100);

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let mut both = upgrade.to_vec();
    both.extend(["--listen", taken.as_str()]);
    let mut failed = start(&args(&addr.to_string(), origin, 2, &both), false);
    assert_eq!(
        failed.wait_exit().code(),
        Some(1),
        "{}",
        failed.seen().join("\n")
    );
    let error = failed.wait_for_log("error: ");
    assert!(
        error.contains(&format!("cannot listen on {taken}")),
        "{error}"
    );
    a.wait_for_log("upgrade: a successor failed, serving on");
    load.wait_for(200);
    assert!(socket.exists(), "A still owns the upgrade socket");

    let mut b = start(&args(&addr.to_string(), origin, 2, &upgrade), false);
    b.wait_for_log("took over the listening sockets");
    assert_eq!(a.wait_exit().code(), Some(0), "{}", a.seen().join("\n"));
    load.wait_for(200);
    let tally = load.finish();
    assert_eq!(tally.failures, Vec::new(), "of {}", tally.connections);
    signal(b.child.id(), "TERM");
    assert_eq!(b.wait_exit().code(), Some(0), "{}", b.seen().join("\n"));
}

/// The new process may have fewer workers than the old one had sockets per address:
/// every socket taken over is still accepted from.
#[test]
fn a_handover_to_fewer_workers_loses_no_connection() {
    let origin = switchyard::demo::start_origin().unwrap();
    let tally = swap(origin, Swap::Handover, (3, 1), CLIENTS).tally;
    assert_eq!(tally.failures, Vec::new(), "of {}", tally.connections);
}

/// Without the upgrade socket: a second process binds the same address, SIGTERM to the
/// first. The old process empties its accept queue before closing, and serves the
/// fresh connections it accepted; what can still fail is a connection queued between
/// the last accept and the close (measured by `measure_swaps`).
#[test]
fn a_second_process_binds_the_same_address_and_the_first_drains_on_sigterm() {
    let origin = switchyard::demo::start_origin().unwrap();
    let tally = swap(origin, Swap::ReusePortThenSigterm, (1, 1), CLIENTS).tally;
    assert!(tally.connections >= 400, "{}", tally.connections);
    let refused = tally.count(|f| *f == Failure::Refused);
    assert_eq!(
        refused, 0,
        "B listened before A stopped: {:?}",
        tally.failures
    );
    assert!(
        tally.failures.len() <= 2,
        "at most a connection or two can fall in the gap: {:?}",
        tally.failures
    );
}

/// A client that connected just before the old process began to drain sends its
/// request a moment later (over a real network, up to a round trip after the
/// handshake): it is answered, not closed unasked.
#[test]
fn a_client_connected_before_the_drain_may_still_send_its_request() {
    let origin = switchyard::demo::start_origin().unwrap();
    let mut a = start(&args("127.0.0.1:0", origin, 1, &[]), false);
    let addr = a.listening_addr();
    let mut early = connect(addr).unwrap();
    signal(a.child.id(), "TERM");
    // Logged once the listeners are closed; the early connection is the one counted.
    a.wait_for_log("shutting down connections=1");
    early
        .write_all(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nearly")
        .unwrap();
    let mut response = Vec::new();
    early.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    assert!(
        response.contains("\r\nconnection: close\r\n")
            || response.contains("\r\nConnection: close\r\n"),
        "{response}"
    );
    assert!(response.ends_with("\r\n\r\nearly"), "{response}");
    assert_eq!(a.wait_exit().code(), Some(0));
}

#[test]
#[ignore = "a measurement: prints the failed connections of many swaps"]
fn measure_swaps() {
    let origin = switchyard::demo::start_origin().unwrap();
    let setting = |name: &str, default: usize| -> usize {
        std::env::var(name)
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(default)
    };
    let (rounds, clients) = (setting("SWAP_ROUNDS", 10), setting("SWAP_CLIENTS", CLIENTS));
    // An old binary may predate the upgrade socket: then only the SIGTERM swap, unless
    // SWAP_HANDOVER says it has one.
    let mut kinds = vec![Swap::ReusePortThenSigterm];
    if std::env::var_os("SWITCHYARD_OLD_BINARY").is_none()
        || std::env::var_os("SWAP_HANDOVER").is_some()
    {
        kinds.push(Swap::Handover);
    }
    for how in kinds {
        let (mut connections, mut refused, mut reset, mut other) = (0, 0, 0, 0);
        let mut queued = 0;
        for _ in 0..rounds {
            let swapped = swap(origin, how, (2, 2), clients);
            queued += swapped.queued_at_stop;
            let tally = swapped.tally;
            connections += tally.connections;
            refused += tally.count(|f| *f == Failure::Refused);
            reset += tally.count(|f| *f == Failure::Reset);
            other += tally.count(|f| matches!(f, Failure::Other(_)));
            for failure in tally
                .failures
                .iter()
                .filter(|f| matches!(f, Failure::Other(_)))
            {
                println!("  {failure:?}");
            }
        }
        println!(
            "{how:?}: {rounds} swaps, {clients} clients, {connections} connections: {refused} refused, {reset} reset, {other} other failures; {queued} found queued at the old process's stop"
        );
    }
}
