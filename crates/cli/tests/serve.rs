//! Running the proxy: binding, signals and graceful shutdown, the demo.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
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

/// The origin holds its answer until the proxy has logged that it is shutting down; the
/// request in flight must still complete, then the process exits 0.
#[test]
fn sigterm_completes_the_request_in_flight_then_exits_0() {
    let origin = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin_addr = origin.local_addr().unwrap().to_string();
    let (got_request_tx, got_request) = mpsc::channel::<()>();
    let (answer_tx, answer) = mpsc::channel::<()>();
    let origin_thread = thread::spawn(move || {
        let (mut stream, _) = origin.accept().unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(stream.read(&mut byte).unwrap(), 1, "request head cut short");
            head.push(byte[0]);
        }
        got_request_tx.send(()).unwrap();
        answer.recv_timeout(LIMIT).unwrap();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nlater")
            .unwrap();
    });

    let mut proxy = Running::start(&[
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &origin_addr,
        "--shutdown-grace",
        "10s",
    ]);
    let addr = proxy.listening_addr();
    let mut client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    client
        .write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    got_request.recv_timeout(LIMIT).unwrap();

    signal(proxy.child.id(), "TERM");
    proxy.wait_for_log("SIGTERM: stopping gracefully");
    // The runtime reports this once its listeners are closed: no new client gets in,
    // and the one request is still in flight.
    proxy.wait_for_log("shutting down connections=1");
    let refused = TcpStream::connect(addr).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    answer_tx.send(()).unwrap();

    let mut response = Vec::new();
    client.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\nlater"), "{response}");
    assert_eq!(proxy.wait_exit().code(), Some(0));
    origin_thread.join().unwrap();
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
