//! Graceful shutdown: in-flight requests complete, tunnels get `shutdown_grace`, and the
//! server stops accepting and returns.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_e2e::{ok, wait_until, ws_connect, Conn, Origin, Proxy, Reply};
use tungstenite::Message;

#[test]
fn shutdown_completes_an_in_flight_request() {
    let release = Arc::new(AtomicBool::new(false));
    let origin = {
        let release = release.clone();
        Origin::http(move |_| {
            wait_until(
                Duration::from_secs(10),
                "the test to release the response",
                || release.load(Ordering::SeqCst),
            );
            Reply::Send(ok(b"finished after shutdown began"))
        })
    };
    let mut proxy = Proxy::start(origin.addr());
    let mut client = Conn::connect(proxy.addr());
    client.write_all(b"GET /slow HTTP/1.1\r\nHost: example\r\n\r\n");
    wait_until(
        Duration::from_secs(5),
        "the request to reach the origin",
        || origin.requests().len() == 1,
    );

    proxy.begin_shutdown();
    release.store(true, Ordering::SeqCst);
    let response = client
        .read_final_response("GET")
        .expect("the in-flight response");
    assert_eq!(response.head.status(), 200);
    assert_eq!(response.body, b"finished after shutdown began");

    let took = proxy
        .shutdown()
        .expect("the server to stop within its deadline");
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    assert!(
        TcpStream::connect(proxy.addr()).is_err(),
        "the proxy still accepts after shutdown"
    );
}

#[test]
fn shutdown_closes_an_open_tunnel_after_the_grace_period() {
    // Long enough that an echo inside it cannot miss it on a loaded machine.
    let grace = Duration::from_secs(1);
    let origin = Origin::ws_echo();
    let mut proxy = Proxy::start_with(origin.addr(), |config| config.shutdown_grace = grace);
    let (mut ws, _) = ws_connect(proxy.addr(), "/");
    ws.send(Message::text("before")).expect("send");
    assert_eq!(ws.read().expect("echo"), Message::text("before"));

    let started = Instant::now();
    proxy.begin_shutdown();
    // Inside the grace period the tunnel still works.
    ws.send(Message::text("during grace"))
        .expect("send during grace");
    assert_eq!(
        ws.read().expect("echo during grace"),
        Message::text("during grace")
    );
    // Then it is closed: a Close frame or EOF, not a read timeout.
    loop {
        match ws.read() {
            Ok(Message::Close(_)) => {}
            Ok(other) => panic!("unexpected {other:?} after the grace period"),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!(
                    "tunnel still open {:?} after shutdown began",
                    started.elapsed()
                )
            }
            Err(_) => break,
        }
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= grace - Duration::from_millis(50),
        "tunnel closed after {elapsed:?}, grace {grace:?}"
    );
    assert!(proxy.shutdown().is_some(), "the server did not stop");
}
