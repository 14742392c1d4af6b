//! Running the proxy: binding, signals and graceful shutdown, the demo.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;

use common::{run, signal, Running, LIMIT};

#[test]
fn port_in_use_exits_1_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(&["--listen", &addr, "--upstream", "127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("{}", out.stderr));
    assert!(line.contains(&format!("cannot listen on {addr}")), "{line}");
    assert!(line.to_lowercase().contains("in use"), "{line}");
}

#[test]
fn sigterm_when_idle_exits_0() {
    let mut proxy = Running::start(&["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:9"]);
    proxy.listening_addr();
    signal(proxy.child.id(), "TERM");
    assert_eq!(proxy.wait_exit().code(), Some(0));
}

#[test]
fn sigint_when_idle_exits_0() {
    let mut proxy = Running::start(&["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:9"]);
    proxy.listening_addr();
    signal(proxy.child.id(), "INT");
    assert_eq!(proxy.wait_exit().code(), Some(0));
}

/// An origin that takes one request and answers it only when told to.
struct HeldOrigin {
    addr: String,
    got_request: mpsc::Receiver<()>,
    answer: mpsc::Sender<()>,
    thread: thread::JoinHandle<()>,
}

impl HeldOrigin {
    fn start() -> HeldOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (got_request_tx, got_request) = mpsc::channel::<()>();
        let (answer, answer_rx) = mpsc::channel::<()>();
        let thread = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(LIMIT)).unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                assert_eq!(stream.read(&mut byte).unwrap(), 1, "request head cut short");
                head.push(byte[0]);
            }
            got_request_tx.send(()).unwrap();
            if answer_rx.recv_timeout(LIMIT).is_ok() {
                // The proxy may be gone already (second Ctrl-C); that is not this test's
                // concern here.
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nlater");
            }
        });
        HeldOrigin {
            addr,
            got_request,
            answer,
            thread,
        }
    }
}

/// Starts the proxy in front of `origin` and sends one request, returning once the origin
/// holds it.
fn request_in_flight(origin: &HeldOrigin, log: &str) -> (Running, TcpStream, SocketAddr) {
    let mut proxy = Running::start(&[
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &origin.addr,
        "--shutdown-grace",
        "10s",
        "--log",
        log,
    ]);
    let addr = proxy.listening_addr();
    let mut client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    client
        .write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    origin.got_request.recv_timeout(LIMIT).unwrap();
    (proxy, client, addr)
}

/// The origin holds its answer until the proxy has closed its listeners on SIGTERM (and
/// has seen a repeated SIGTERM); the request in flight still completes, then the process
/// exits 0.
#[test]
fn sigterm_completes_the_request_in_flight_then_exits_0() {
    let origin = HeldOrigin::start();
    let (mut proxy, mut client, addr) = request_in_flight(&origin, "info,switchyard=debug");

    signal(proxy.child.id(), "TERM");
    proxy.wait_for_log("SIGTERM: stopping gracefully");
    // The runtime reports this once its listeners are closed: no new client gets in,
    // and the one request is still in flight.
    proxy.wait_for_log("shutting down connections=1");
    let refused = TcpStream::connect(addr).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    // Supervisors may signal twice; that must not cut the grace short.
    signal(proxy.child.id(), "TERM");
    proxy.wait_for_log("already shutting down");
    origin.answer.send(()).unwrap();

    let mut response = Vec::new();
    client.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\nlater"), "{response}");
    assert_eq!(proxy.wait_exit().code(), Some(0));
    origin.thread.join().unwrap();
}

#[test]
fn a_second_ctrl_c_exits_at_once_with_1() {
    let origin = HeldOrigin::start();
    let (mut proxy, mut client, _) = request_in_flight(&origin, "info");

    signal(proxy.child.id(), "INT");
    proxy.wait_for_log("SIGINT: stopping gracefully");
    signal(proxy.child.id(), "INT");
    assert_eq!(proxy.wait_exit().code(), Some(1));

    // The request was abandoned: the client sees the connection end without an answer.
    let mut response = Vec::new();
    let _ = client.read_to_end(&mut response);
    assert!(
        response.is_empty(),
        "{}",
        String::from_utf8_lossy(&response)
    );
    drop(origin.answer);
    origin.thread.join().unwrap();
}

#[test]
fn demo_serves_the_page_and_a_websocket_echo_through_the_proxy() {
    let mut demo = Running::start(&["demo", "--listen", "127.0.0.1:0"]);
    let first = demo.stdout.recv_timeout(LIMIT).expect("demo instructions");
    let proxy = first
        .split("proxy on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
    let proxy: std::net::SocketAddr = proxy.parse().unwrap();
    demo.wait_for_log("self-check: a WebSocket message went through the proxy");

    let mut http = TcpStream::connect(proxy).unwrap();
    http.set_read_timeout(Some(LIMIT)).unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    http.read_to_string(&mut page).unwrap();
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("<h1>switchyard demo</h1>"), "{page}");

    switchyard::demo::self_check(proxy, LIMIT).unwrap();

    signal(demo.child.id(), "TERM");
    assert_eq!(demo.wait_exit().code(), Some(0));
}

#[test]
fn demo_on_a_taken_port_exits_1_and_suggests_another() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(&["demo", "--listen", &addr]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("{}", out.stderr));
    assert!(line.contains(&format!("cannot listen on {addr}")), "{line}");
    assert!(line.contains("--listen"), "{line}");
    assert!(
        out.stdout.is_empty(),
        "no instructions when not running: {}",
        out.stdout
    );
}

/// One `GET path` to the admin listener: the status and the body.
fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(admin).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

/// `--admin-listen`: the address is logged; metrics count the request in flight; from
/// SIGTERM on, `/readyz` is 503 while `/healthz` and `/metrics` still answer, until the
/// request in flight finishes and the process exits 0.
#[test]
fn the_admin_listener_serves_metrics_and_readiness_turns_503_on_sigterm() {
    let origin = HeldOrigin::start();
    let mut proxy = Running::start(&[
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &origin.addr,
        "--admin-listen",
        "127.0.0.1:0",
        "--shutdown-grace",
        "10s",
    ]);
    let addr = proxy.listening_addr();
    let admin = proxy.admin_addr();
    assert_ne!(admin, addr);

    assert_eq!(admin_get(admin, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(admin_get(admin, "/readyz").0, 200);
    assert_eq!(admin_get(admin, "/").0, 404);
    let (status, metrics) = admin_get(admin, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("\nswitchyard_connections_open 0\n"),
        "{metrics}"
    );

    let mut client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    client
        .write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    origin.got_request.recv_timeout(LIMIT).unwrap();
    let (_, metrics) = admin_get(admin, "/metrics");
    assert!(
        metrics.contains("\nswitchyard_connections_open 1\n"),
        "{metrics}"
    );

    signal(proxy.child.id(), "TERM");
    proxy.wait_for_log("SIGTERM: stopping gracefully");
    assert_eq!(
        admin_get(admin, "/readyz"),
        (503, "shutting down\n".to_string())
    );
    assert_eq!(admin_get(admin, "/healthz").0, 200);
    assert_eq!(admin_get(admin, "/metrics").0, 200);

    origin.answer.send(()).unwrap();
    let mut response = Vec::new();
    client.read_to_end(&mut response).unwrap();
    assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_eq!(proxy.wait_exit().code(), Some(0));
    origin.thread.join().unwrap();
    assert!(
        TcpStream::connect(admin).is_err(),
        "the admin listener is closed"
    );
}
