//! Upgrade smuggling, end to end: a refused upgrade never tunnels, a 101 the client did
//! not ask for (or that does not validate) never reaches it, `h2c` never reaches the
//! origin; plus CL+TE and bytes after a complete response. The framing corpus is in
//! `smuggling.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use switchyard_e2e::{
    encode_frame, ok, origin_saw_only_a_probe, send_raw, wait_until, ws_accept_response,
    ws_request, Conn, Origin, Proxy, Reply, WS_KEY,
};
use tungstenite::handshake::derive_accept_key;

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: example\r\n\r\n";

fn plain_origin() -> Origin {
    Origin::http(|request| Reply::Send(ok(request.head.target().as_bytes())))
}

#[test]
fn non_101_answer_never_tunnels_and_held_bytes_are_parsed_as_a_request() {
    let origin = Origin::http(|request| {
        if request.head.has("upgrade") {
            Reply::Send(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\n\r\nno ws!".to_vec())
        } else {
            Reply::Send(ok(request.head.target().as_bytes()))
        }
    });
    let proxy = Proxy::start(origin.addr());
    let mut client = Conn::connect(proxy.addr());

    // The second request rides in the same write, where a tunnel would carry it raw.
    let mut write = ws_request("/ws", "Upgrade", "").into_bytes();
    write.extend_from_slice(
        b"GET /next HTTP/1.1\r\nHost: example\r\nProxy-Authorization: Basic c2VjcmV0\r\nConnection: X-Hidden\r\nX-Hidden: 1\r\n\r\n",
    );
    client.write_all(&write);

    let refused = client
        .read_final_response("GET")
        .expect("answer to the upgrade");
    assert_eq!(refused.head.status(), 403);
    assert_eq!(refused.body, b"no ws!");
    let next = client
        .read_final_response("GET")
        .expect("answer to the held request");
    assert_eq!(next.head.status(), 200);
    assert_eq!(next.body, b"/next");

    let requests = origin.requests();
    let targets: Vec<_> = requests
        .iter()
        .map(|r| r.head.target().to_owned())
        .collect();
    assert_eq!(targets, ["/ws", "/next"]);
    for request in &requests {
        assert!(
            request.head.problems().is_empty(),
            "{:?}: {:?}",
            request.head.start_line,
            request.head.problems()
        );
    }
    let held = &requests[1].head;
    assert!(
        held.hop_by_hop_present(&["x-hidden"]).is_empty(),
        "held request kept {:?}",
        held.hop_by_hop_present(&["x-hidden"])
    );
    // The upgrade's upstream connection carried only the upgrade request.
    let first_connection = &origin.received()[0];
    assert_eq!(
        String::from_utf8_lossy(first_connection),
        String::from_utf8_lossy(&requests[0].raw()),
        "the connection that answered the upgrade with 403 must carry nothing else"
    );
}

/// An origin answering the first request with `answer` (given the request's
/// `Sec-WebSocket-Key`, if any) followed by a frame, then waiting for the proxy to close.
/// The flag is set once the proxy has closed the origin connection.
fn rogue_101_origin(answer: fn(&str) -> String) -> (Origin, Arc<AtomicBool>) {
    let closed = Arc::new(AtomicBool::new(false));
    let flag = closed.clone();
    let origin = Origin::scripted(move |conn| {
        let Ok(Some(request)) = conn.read_request() else {
            return;
        };
        let key = request
            .head
            .get("sec-websocket-key")
            .unwrap_or_default()
            .to_owned();
        let mut write = answer(&key).into_bytes();
        write.extend(encode_frame(1, b"smuggled frame", None));
        write.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled");
        if conn.try_write_all(&write).is_ok() && conn.read_to_end().is_ok() {
            flag.store(true, Ordering::SeqCst);
        }
    });
    (origin, closed)
}

fn assert_rogue_101_is_502(request: &[u8], answer: fn(&str) -> String, case: &str) {
    let (origin, upstream_closed) = rogue_101_origin(answer);
    let proxy = Proxy::start(origin.addr());
    let mut client = Conn::connect(proxy.addr());
    client.write_all(request);

    let response = client
        .read_response("GET")
        .unwrap_or_else(|e| panic!("{case}: response: {e}"));
    assert_eq!(
        response.head.status(),
        502,
        "{case}: client got {:?}",
        response.head.start_line
    );
    assert!(
        response.head.has_token("connection", "close"),
        "{case}: 502 without Connection: close"
    );
    let mut everything = response.raw();
    everything.extend(
        client
            .read_to_end()
            .unwrap_or_else(|e| panic!("{case}: EOF after 502: {e}")),
    );
    let text = String::from_utf8_lossy(&everything);
    for leaked in ["101", "Switching", "smuggled", "Sec-WebSocket-Accept"] {
        assert!(
            !text.contains(leaked),
            "{case}: client received {leaked:?}: {text:?}"
        );
    }
    wait_until(
        Duration::from_secs(5),
        "the proxy to close the upstream connection",
        || upstream_closed.load(Ordering::SeqCst),
    );
}

#[test]
fn unsolicited_101_is_502() {
    assert_rogue_101_is_502(
        b"GET / HTTP/1.1\r\nHost: example\r\n\r\n",
        |_| ws_accept_response(WS_KEY),
        "101 to a request without Upgrade",
    );
}

#[test]
fn unsolicited_101_to_connection_upgrade_without_upgrade_header_is_502() {
    assert_rogue_101_is_502(
        b"GET / HTTP/1.1\r\nHost: example\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        |_| ws_accept_response(WS_KEY),
        "101 to a request with Connection: Upgrade but no Upgrade",
    );
}

#[test]
fn wrong_sec_websocket_accept_is_502() {
    assert_rogue_101_is_502(
        ws_request("/", "Upgrade", "").as_bytes(),
        |_| ws_accept_response("AAAAAAAAAAAAAAAAAAAAAA=="),
        "101 with a wrong Sec-WebSocket-Accept",
    );
}

#[test]
fn missing_sec_websocket_accept_is_502() {
    assert_rogue_101_is_502(
        ws_request("/", "Upgrade", "").as_bytes(),
        |_| {
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                .to_owned()
        },
        "101 without Sec-WebSocket-Accept",
    );
}

#[test]
fn a_101_naming_another_protocol_is_502() {
    assert_rogue_101_is_502(
        ws_request("/", "Upgrade", "").as_bytes(),
        |key| {
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                derive_accept_key(key.as_bytes())
            )
        },
        "101 naming h2c to a websocket offer",
    );
}

#[test]
fn a_101_without_connection_upgrade_is_502() {
    assert_rogue_101_is_502(
        ws_request("/", "Upgrade", "").as_bytes(),
        |key| {
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                derive_accept_key(key.as_bytes())
            )
        },
        "101 without Connection: upgrade",
    );
}

#[test]
fn h2c_upgrade_and_http2_settings_never_reach_the_origin() {
    let origin = plain_origin();
    let proxy = Proxy::start(origin.addr());
    for (case, request) in [
        (
            "h2c alone",
            "GET /a HTTP/1.1\r\nHost: example\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        ),
        (
            "h2c offered next to websocket",
            "GET /b HTTP/1.1\r\nHost: example\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c, websocket\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        ),
        (
            "HTTP2-Settings without Connection",
            "GET /c HTTP/1.1\r\nHost: example\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nUpgrade: h2c\r\n\r\n",
        ),
    ] {
        let (status, _) = send_raw(proxy.addr(), request.as_bytes());
        assert_ne!(status, 101, "{case}: switched protocols");
        assert_ne!(status, 0, "{case}: no response at all");
    }
    let received = String::from_utf8_lossy(&origin.received_all()).to_ascii_lowercase();
    assert!(
        !received.contains("h2c"),
        "origin received h2c: {received:?}"
    );
    assert!(
        !received.contains("http2-settings"),
        "origin received HTTP2-Settings: {received:?}"
    );
}

#[test]
fn upgrade_protocols_outside_the_allow_list_are_not_forwarded() {
    let origin = plain_origin();
    let proxy = Proxy::start(origin.addr());
    let (status, _) = send_raw(
        proxy.addr(),
        b"GET /x HTTP/1.1\r\nHost: example\r\nConnection: Upgrade\r\nUpgrade: foo/1\r\n\r\n",
    );
    assert_ne!(status, 101);
    assert_ne!(status, 0, "no response at all");
    let received = String::from_utf8_lossy(&origin.received_all()).to_ascii_lowercase();
    assert!(
        !received.contains("foo/1"),
        "origin received the foo upgrade: {received:?}"
    );
}

#[test]
fn content_length_with_transfer_encoding_is_400_and_reaches_nothing() {
    let origin = plain_origin();
    let proxy = Proxy::start(origin.addr());
    let request = format!(
        "POST / HTTP/1.1\r\nHost: example\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
    );
    let mut client = Conn::connect(proxy.addr());
    client.write_all(request.as_bytes());
    let response = client.read_final_response("POST").expect("a response");
    assert_eq!(response.head.status(), 400);
    assert!(response.head.has_token("connection", "close"));
    let rest = client.read_to_end().expect("EOF after 400");
    assert!(
        rest.is_empty(),
        "after the 400 the client received {:?}",
        String::from_utf8_lossy(&rest)
    );
    if let Err(problem) = origin_saw_only_a_probe(&origin, proxy.addr()) {
        panic!("CL+TE: {problem}");
    }
}

#[test]
fn bytes_after_a_complete_response_are_never_forwarded() {
    let origin = Origin::http(|request| {
        if request.head.target() == "/first" {
            let mut answer = ok(b"first");
            answer.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled");
            Reply::Send(answer)
        } else {
            Reply::Send(ok(request.head.target().as_bytes()))
        }
    });
    let proxy = Proxy::start(origin.addr());
    let mut client = Conn::connect(proxy.addr());

    client.write_all(b"GET /first HTTP/1.1\r\nHost: example\r\n\r\n");
    let first = client.read_final_response("GET").expect("first response");
    assert_eq!(first.body, b"first");
    client.write_all(b"GET /second HTTP/1.1\r\nHost: example\r\n\r\n");
    let second = client.read_final_response("GET").expect("second response");
    assert_eq!(
        second.body, b"/second",
        "the client received the origin's extra bytes as a response"
    );
}
