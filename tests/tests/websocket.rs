//! WebSocket traffic through the proxy: echo, large and back-to-back frames, bytes that
//! travel in the same write as a handshake, hop-by-hop headers and half-close.

use std::net::TcpStream;

use switchyard_core::WebSocketPolicy;
use switchyard_e2e::{
    encode_fragment, encode_frame, ws_accept_response, ws_close, ws_config, ws_connect, ws_request,
    Conn, Origin, Proxy, WS_KEY,
};
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

const MASK: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

/// Reads the 101 of a raw handshake and turns the connection into a client WebSocket
/// that starts with whatever came after the 101 head.
fn finish_raw_handshake(mut client: Conn) -> WebSocket<TcpStream> {
    let response = client
        .read_response("GET")
        .expect("a response to the handshake");
    assert_eq!(
        response.head.status(),
        101,
        "handshake answered with {:?}",
        response.head.start_line
    );
    assert_eq!(
        response.head.get("sec-websocket-accept"),
        Some(derive_accept_key(WS_KEY.as_bytes()).as_str())
    );
    let (stream, leftover) = client.into_parts();
    WebSocket::from_partially_read(stream, leftover, Role::Client, Some(ws_config()))
}

#[test]
fn text_and_binary_messages_echo() {
    let origin = Origin::ws_echo();
    let proxy = Proxy::start(origin.addr());
    let (mut ws, response) = ws_connect(proxy.addr(), "/chat");
    assert_eq!(response.status(), 101);

    for message in [
        Message::text("hello"),
        Message::binary(vec![0u8, 1, 2, 0xff, 0x80]),
        Message::text("ünïcödé ✓"),
        Message::binary(Vec::new()),
    ] {
        ws.send(message.clone()).expect("send");
        assert_eq!(ws.read().expect("echo"), message);
    }
    ws_close(&mut ws);
}

#[test]
fn four_mib_message_echoes_intact() {
    let origin = Origin::ws_echo();
    let proxy = Proxy::start(origin.addr());
    let (mut ws, _) = ws_connect(proxy.addr(), "/");

    let payload: Vec<u8> = (0..4 << 20)
        .map(|i: u32| (i.wrapping_mul(31) % 251) as u8)
        .collect();
    ws.send(Message::binary(payload.clone()))
        .expect("send 4 MiB");
    match ws.read().expect("echo of 4 MiB") {
        Message::Binary(echo) => {
            assert_eq!(echo.len(), payload.len());
            assert!(echo == payload, "4 MiB echo differs from what was sent");
        }
        other => panic!("expected a binary message, got {other:?}"),
    }
    ws_close(&mut ws);
}

#[test]
fn large_frame_and_small_frame_written_back_to_back_arrive_in_order() {
    let origin = Origin::ws_echo();
    let proxy = Proxy::start(origin.addr());
    let (mut ws, _) = ws_connect(proxy.addr(), "/");

    for round in 0..10u8 {
        let large = Message::binary(vec![round; 48 * 1024]);
        let small = Message::text(format!("small {round}"));
        // Both frames go into tungstenite's write buffer and leave in one flush.
        ws.write(large.clone()).expect("queue the large frame");
        ws.write(small.clone()).expect("queue the small frame");
        ws.flush().expect("flush both frames");
        assert_eq!(
            ws.read().expect("large echo"),
            large,
            "round {round}: large frame"
        );
        assert_eq!(
            ws.read().expect("small echo"),
            small,
            "round {round}: small frame"
        );
    }
    ws_close(&mut ws);
}

#[test]
fn frame_sent_in_the_same_write_as_the_handshake_reaches_the_origin() {
    let origin = Origin::ws_echo();
    let proxy = Proxy::start(origin.addr());

    let mut client = Conn::connect(proxy.addr());
    let mut first_write = ws_request("/", "Upgrade", "").into_bytes();
    first_write.extend(encode_frame(1, b"early bird", MASK));
    client.write_all(&first_write);

    let mut ws = finish_raw_handshake(client);
    assert_eq!(
        ws.read().expect("echo of the early frame"),
        Message::text("early bird")
    );
    ws.send(Message::text("second")).expect("send");
    assert_eq!(ws.read().expect("echo"), Message::text("second"));
    ws_close(&mut ws);
}

#[test]
fn bytes_the_origin_writes_with_its_101_reach_the_client() {
    let origin = Origin::scripted(|conn| {
        let Ok(Some(handshake)) = conn.read_request() else {
            return;
        };
        let key = handshake
            .head
            .get("sec-websocket-key")
            .unwrap_or_default()
            .to_owned();
        let mut first_write = ws_accept_response(&key).into_bytes();
        first_write.extend(encode_frame(1, b"welcome", None));
        first_write.extend(encode_frame(2, &[9; 300], None));
        conn.write_all(&first_write);
        let _ = conn.read_to_end();
    });
    let proxy = Proxy::start(origin.addr());

    let (mut ws, response) = ws_connect(proxy.addr(), "/");
    assert_eq!(response.status(), 101);
    assert_eq!(
        ws.read().expect("the frame sent with the 101"),
        Message::text("welcome")
    );
    assert_eq!(
        ws.read().expect("the second frame"),
        Message::binary(vec![9; 300])
    );
}

#[test]
fn connection_keep_alive_upgrade_is_an_upgrade() {
    let origin = Origin::ws_echo();
    let proxy = Proxy::start(origin.addr());

    let mut client = Conn::connect(proxy.addr());
    client.write_all(ws_request("/", "keep-alive, Upgrade", "").as_bytes());
    let mut ws = finish_raw_handshake(client);
    ws.send(Message::text("firefox")).expect("send");
    assert_eq!(ws.read().expect("echo"), Message::text("firefox"));

    let handshake = &origin.requests()[0].head;
    assert_eq!(handshake.get("upgrade"), Some("websocket"));
    assert!(
        handshake.has_token("connection", "upgrade"),
        "origin saw {:?}",
        handshake.get_all("connection")
    );
    assert!(
        !handshake.has_token("connection", "keep-alive"),
        "origin saw {:?}",
        handshake.get_all("connection")
    );
    ws_close(&mut ws);
}

#[test]
fn hop_by_hop_headers_are_removed_from_the_handshake_both_ways() {
    let origin = Origin::scripted(|conn| {
        let Ok(Some(handshake)) = conn.read_request() else {
            return;
        };
        let key = handshake
            .head
            .get("sec-websocket-key")
            .unwrap_or_default()
            .to_owned();
        let accept = derive_accept_key(key.as_bytes());
        conn.write_all(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade, X-Origin-Private\r\n\
                 Sec-WebSocket-Accept: {accept}\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic realm=\"x\"\r\n\
                 X-Origin-Private: secret\r\nX-Origin-Public: shown\r\n\r\n"
            )
            .as_bytes(),
        );
        let _ = conn.read_to_end();
    });
    let proxy = Proxy::start(origin.addr());

    let mut client = Conn::connect(proxy.addr());
    client.write_all(
        ws_request(
            "/",
            "Upgrade, X-Client-Private",
            "Keep-Alive: 300\r\nProxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\n\
             TE: trailers\r\nX-Client-Private: secret\r\nX-Client-Public: shown\r\n",
        )
        .as_bytes(),
    );
    let response = client.read_response("GET").expect("101");
    assert_eq!(response.head.status(), 101);
    let removed = response.head.hop_by_hop_present(&["x-origin-private"]);
    let removed: Vec<_> = removed
        .into_iter()
        .filter(|name| name != "upgrade")
        .collect();
    assert!(
        removed.is_empty(),
        "client received hop-by-hop fields {removed:?} in {:?}",
        response.head.start_line
    );
    assert_eq!(response.head.get("x-origin-public"), Some("shown"));
    assert_eq!(response.head.get("upgrade"), Some("websocket"));
    assert!(response.head.has_token("connection", "upgrade"));

    let request = &origin.requests()[0].head;
    let forwarded: Vec<_> = request
        .hop_by_hop_present(&["x-client-private"])
        .into_iter()
        .filter(|name| name != "upgrade")
        .collect();
    assert!(
        forwarded.is_empty(),
        "origin received hop-by-hop fields {forwarded:?}"
    );
    assert_eq!(request.get("x-client-public"), Some("shown"));
    assert_eq!(request.get("upgrade"), Some("websocket"));
    assert!(request.has_token("connection", "upgrade"));
    assert!(!request.has_token("connection", "x-client-private"));
    assert!(request.problems().is_empty(), "{:?}", request.problems());
}

#[test]
fn half_close_keeps_the_other_direction_open() {
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
        // Everything the client sends, up to its EOF, then an answer after that EOF.
        let _ = conn.read_to_end();
        conn.write_all(&encode_frame(1, b"answer after your EOF", None));
    });
    // The byte tunnel's half-close, byte for byte: a frame-aware tunnel would also send
    // the upstream a Close 1001 for the client that left without one (websocket_close.rs).
    let proxy = Proxy::start_with(origin.addr(), |config| {
        config.core.routes[0].websocket = WebSocketPolicy {
            validate: false,
            ping_interval: None,
            ..WebSocketPolicy::default()
        };
    });

    let mut client = Conn::connect(proxy.addr());
    client.write_all(ws_request("/", "Upgrade", "").as_bytes());
    let response = client.read_response("GET").expect("101");
    assert_eq!(response.head.status(), 101);
    client.write_all(&encode_frame(1, b"last words", MASK));
    client.shutdown_write();

    let after = client.read_to_end().expect("read until the tunnel closes");
    assert_eq!(
        after,
        encode_frame(1, b"answer after your EOF", None),
        "what the client received after its EOF"
    );
    let mut expected = origin.requests()[0].raw();
    expected.extend(encode_frame(1, b"last words", MASK));
    assert_eq!(origin.received()[0], expected, "what the origin received");
}

#[test]
fn ping_is_answered_through_the_tunnel() {
    let origin = Origin::ws_echo();
    let proxy = Proxy::start(origin.addr());
    let (mut ws, _) = ws_connect(proxy.addr(), "/");

    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .expect("ping");
    assert_eq!(
        ws.read().expect("pong"),
        Message::Pong(b"are you there".to_vec().into())
    );
    ws_close(&mut ws);
}

#[test]
fn fragmented_message_is_reassembled_by_the_origin() {
    let origin = Origin::ws_echo();
    let proxy = Proxy::start(origin.addr());

    let mut client = Conn::connect(proxy.addr());
    client.write_all(ws_request("/", "Upgrade", "").as_bytes());
    let response = client.read_response("GET").expect("101");
    assert_eq!(response.head.status(), 101);
    // Three fragments with a ping between them, each in a write of its own.
    client.write_all(&encode_fragment(false, 1, b"frag", MASK));
    client.write_all(&encode_fragment(false, 0, b"men", MASK));
    client.write_all(&encode_frame(9, b"mid", MASK));
    client.write_all(&encode_fragment(true, 0, b"ted", MASK));

    let (stream, leftover) = client.into_parts();
    let mut ws = WebSocket::from_partially_read(stream, leftover, Role::Client, Some(ws_config()));
    assert_eq!(
        ws.read().expect("pong"),
        Message::Pong(b"mid".to_vec().into())
    );
    assert_eq!(ws.read().expect("echo"), Message::text("fragmented"));
    ws_close(&mut ws);
}
