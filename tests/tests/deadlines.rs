//! Deadlines, end to end, with short timeouts: each must fire neither before its
//! duration nor absurdly late (a generous upper bound absorbs slow CI machines).

use std::io::Write;
use std::time::{Duration, Instant};

use switchyard_e2e::{
    join_within, ok, ws_accept_response, ws_close, ws_connect, Conn, Origin, Proxy, Reply,
};
use switchyard_smol::ServerConfig;
use tungstenite::Message;

const SHORT: Duration = Duration::from_millis(300);
const LATE: Duration = Duration::from_secs(5);

fn short_read_timeout(config: &mut ServerConfig) {
    config.core.routes[0].timeouts.read = SHORT;
}

fn assert_fired_in_time(elapsed: Duration, what: &str) {
    assert!(
        elapsed >= SHORT,
        "{what} after {elapsed:?}, before the {SHORT:?} deadline"
    );
    assert!(
        elapsed < LATE,
        "{what} only after {elapsed:?}, deadline {SHORT:?}"
    );
}

#[test]
fn silent_upstream_is_504_after_read_timeout() {
    let origin = Origin::http(|_| Reply::Silent);
    let proxy = Proxy::start_with(origin.addr(), short_read_timeout);
    let mut client = Conn::connect(proxy.addr());

    let started = Instant::now();
    client.write_all(b"GET /slow HTTP/1.1\r\nHost: example\r\n\r\n");
    let response = client.read_final_response("GET").expect("a response");
    assert_fired_in_time(started.elapsed(), "504");
    assert_eq!(response.head.status(), 504);
    assert!(response.head.has_token("connection", "close"));
    assert_eq!(client.read_to_end().expect("EOF after 504"), b"");
}

#[test]
fn tunnel_is_closed_after_read_timeout_of_upstream_silence() {
    let origin = Origin::scripted(|conn| {
        let Ok(Some(handshake)) = conn.read_request() else {
            return;
        };
        let key = handshake
            .head
            .get("sec-websocket-key")
            .unwrap_or_default()
            .to_owned();
        conn.write_all(ws_accept_response(&key).as_bytes());
        let _ = conn.read_to_end();
    });
    let proxy = Proxy::start_with(origin.addr(), short_read_timeout);

    // Measured from before the handshake: the proxy's deadline starts after it.
    let started = Instant::now();
    let (mut ws, _) = ws_connect(proxy.addr(), "/");
    match ws.read() {
        Ok(message) => panic!("the silent origin sent nothing, yet the client read {message:?}"),
        Err(tungstenite::Error::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            panic!("the tunnel was still open after {:?}", started.elapsed())
        }
        Err(_closed) => assert_fired_in_time(started.elapsed(), "tunnel closed"),
    }
}

#[test]
fn tunnel_is_kept_open_by_upstream_traffic_past_several_read_timeouts() {
    // A longer read_timeout than the other tests: traffic every tenth of it leaves room
    // for a loaded machine to delay a round trip without the deadline passing.
    const READ: Duration = Duration::from_secs(1);
    let origin = Origin::ws_echo();
    let proxy = Proxy::start_with(origin.addr(), |config| {
        config.core.routes[0].timeouts.read = READ;
    });
    let (mut ws, _) = ws_connect(proxy.addr(), "/");

    let started = Instant::now();
    let mut round = 0;
    // Each echo is upstream traffic, a tenth of a read_timeout apart, for three read_timeouts.
    while started.elapsed() < READ * 3 {
        std::thread::sleep(READ / 10);
        let message = Message::text(format!("keep-alive {round}"));
        ws.send(message.clone())
            .unwrap_or_else(|e| panic!("send after {:?}: {e}", started.elapsed()));
        let echo = ws
            .read()
            .unwrap_or_else(|e| panic!("echo after {:?}: {e}", started.elapsed()));
        assert_eq!(echo, message);
        round += 1;
    }
    ws_close(&mut ws);
}

#[test]
fn slow_request_head_is_408_at_header_timeout() {
    let origin = Origin::http(|_| Reply::Send(ok(b"never")));
    let proxy = Proxy::start_with(origin.addr(), |config| config.core.timeouts.header = SHORT);

    // Measured from before connecting: the deadline starts when the proxy accepts.
    let started = Instant::now();
    let mut client = Conn::connect(proxy.addr());
    client.write_all(b"GET / HTTP/1.1\r\nHost: example\r\nX-Slow: ");
    // One byte every 20 ms: each byte arrives well inside the deadline, the head never ends.
    let mut trickle = client.stream().try_clone().expect("clone");
    let writer = std::thread::spawn(move || {
        while started.elapsed() < LATE {
            if trickle.write_all(b"a").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let response = client.read_final_response("GET").expect("a response");
    assert_fired_in_time(started.elapsed(), "408");
    assert_eq!(response.head.status(), 408);
    assert!(response.head.has_token("connection", "close"));
    join_within(writer, LATE + Duration::from_secs(1));
    assert_eq!(origin.accepted(), 0, "the origin was contacted");
}

#[test]
fn idle_kept_alive_client_is_closed_at_idle_timeout() {
    let origin = Origin::http(|_| Reply::Send(ok(b"hello")));
    let proxy = Proxy::start_with(origin.addr(), |config| config.core.timeouts.idle = SHORT);
    let mut client = Conn::connect(proxy.addr());

    client.write_all(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n");
    let started = Instant::now();
    let response = client.read_final_response("GET").expect("a response");
    assert_eq!(response.body, b"hello");
    let after = client.read_to_end().expect("EOF at idle_timeout");
    // The deadline starts when the proxy finished the response, a moment before the
    // client read it; allow for that moment.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= SHORT - Duration::from_millis(50),
        "closed after {elapsed:?}"
    );
    assert!(elapsed < LATE, "closed only after {elapsed:?}");
    let after = String::from_utf8_lossy(&after);
    assert!(
        after.is_empty() || after.starts_with("HTTP/1.1 408"),
        "idle close sent {after:?}"
    );
}

#[test]
fn read_timeout_is_per_route() {
    let origin = Origin::http(|request| {
        if request.head.target().starts_with("/slow/") {
            Reply::Silent
        } else {
            Reply::Send(ok(b"quick"))
        }
    });
    let proxy = Proxy::start_with(origin.addr(), |config| {
        let mut slow = config.core.routes[0].clone();
        slow.prefix = "/slow/".into();
        slow.timeouts.read = SHORT;
        config.core.routes[0].timeouts.read = LATE * 4;
        config.core.routes.push(slow);
        config.route_upstream.push(config.route_upstream[0]);
    });

    let mut client = Conn::connect(proxy.addr());
    let started = Instant::now();
    client.write_all(b"GET /slow/report HTTP/1.1\r\nHost: example\r\n\r\n");
    let response = client.read_final_response("GET").expect("a response");
    assert_fired_in_time(started.elapsed(), "504 on the /slow/ route");
    assert_eq!(response.head.status(), 504);

    let mut client = Conn::connect(proxy.addr());
    client.write_all(b"GET /fast HTTP/1.1\r\nHost: example\r\n\r\n");
    assert_eq!(
        client.read_final_response("GET").expect("a response").body,
        b"quick"
    );
}

#[test]
fn client_that_stops_reading_is_cut_at_send_timeout() {
    use std::io::ErrorKind;
    use std::sync::{Arc, Mutex};

    let outcome: Arc<Mutex<Option<Result<(), ErrorKind>>>> = Arc::default();
    let seen = outcome.clone();
    // 64 MiB: far more than the socket buffers between origin and client can hold.
    let origin = Origin::scripted(move |conn| {
        if conn.read_request().ok().flatten().is_none() {
            return;
        }
        let body = vec![b'x'; 64 << 20];
        let mut answer =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        answer.extend_from_slice(&body);
        let result = conn.try_write_all(&answer);
        *seen.lock().unwrap() = Some(result.map_err(|e| e.kind()));
    });
    let proxy = Proxy::start_with(origin.addr(), |config| {
        config.core.routes[0].timeouts.send = SHORT
    });
    let mut client = Conn::connect(proxy.addr());

    let started = Instant::now();
    client.write_all(b"GET /huge HTTP/1.1\r\nHost: example\r\n\r\n");
    // The client reads nothing; the proxy must stop waiting and close the upstream too.
    switchyard_e2e::wait_until(LATE, "the origin's write to end", || {
        outcome.lock().unwrap().is_some()
    });
    let elapsed = started.elapsed();
    match outcome.lock().unwrap().expect("set") {
        Ok(()) => {
            panic!("the origin wrote all 64 MiB: the proxy buffered what the client did not read")
        }
        Err(kind @ (ErrorKind::WouldBlock | ErrorKind::TimedOut)) => {
            panic!("the origin's write timed out ({kind:?}): the proxy never closed the upstream")
        }
        Err(_closed) => {}
    }
    assert!(
        elapsed >= SHORT,
        "cut after {elapsed:?}, before send_timeout {SHORT:?}"
    );
    let received = client.read_to_end().expect("EOF after the cut");
    assert!(
        received.len() < 64 << 20,
        "the client received all {} bytes",
        received.len()
    );
}
