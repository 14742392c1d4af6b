//! What the proxy reports about a frame-aware tunnel, through an [`EventSink`]: the
//! tunnel record's per-side counts (messages, Close codes, Pings and Pongs), the proxy's
//! own Pings and the Pongs it absorbed, and the rule a violation broke.
//!
//! [`EventSink`]: switchyard_smol::EventSink

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_core::{Event, Side, WebSocketPolicy};
use switchyard_e2e::{
    encode_frame, opcode, ws_config, ws_connect, ws_connect_raw, ws_next_message, ws_stay_quiet,
    Events, Origin, Proxy, IO_TIMEOUT,
};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role};
use tungstenite::{Message, WebSocket};

/// A tungstenite echo origin that counts the Pings it reads (tungstenite answers them).
fn counting_echo_origin(pings: Arc<AtomicUsize>) -> Origin {
    Origin::ws_scripted("", move |conn| {
        let stream = conn.stream().try_clone().expect("clone the origin stream");
        let mut ws = WebSocket::from_partially_read(
            stream,
            conn.take_buffered(),
            Role::Server,
            Some(ws_config()),
        );
        while let Ok(message) = ws.read() {
            if let Message::Ping(_) = message {
                pings.fetch_add(1, Ordering::SeqCst);
            } else if (message.is_text() || message.is_binary()) && ws.send(message).is_err() {
                return;
            }
        }
    })
}

#[test]
fn tunnel_record_counts_messages_close_codes_pings_and_absorbed_pongs() {
    let events = Events::default();
    let upstream_pings = Arc::new(AtomicUsize::new(0));
    let origin = counting_echo_origin(upstream_pings.clone());
    let proxy = Proxy::start_with(origin.addr(), |config| {
        config.core.routes[0].websocket = WebSocketPolicy {
            validate: true,
            ping_interval: Some(Duration::from_millis(200)),
            // Long: this test counts Pongs and must not lose a peer on a slow machine.
            ping_timeout: Duration::from_secs(5),
        };
        events.install(config);
    });
    let (mut ws, _) = ws_connect(proxy.addr(), "/");

    for message in [
        Message::text("one"),
        Message::binary(vec![2; 300]),
        Message::text("three"),
    ] {
        ws.send(message.clone()).expect("send");
        assert_eq!(ws_next_message(&mut ws), message);
    }
    let mut client_pings = 0;
    let deadline = Instant::now() + IO_TIMEOUT;
    while client_pings == 0 || upstream_pings.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no Ping reached both peers");
        client_pings += ws_stay_quiet(&mut ws, Duration::from_millis(50)).len();
    }
    // tungstenite sends its pending Pong before its next frame and the origin answers
    // before it echoes: after this round trip the proxy has read both peers' Pongs.
    ws.send(Message::text("four")).expect("send");
    assert_eq!(ws_next_message(&mut ws), Message::text("four"));
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    }))
    .expect("send Close");
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("closing handshake: {e}"),
        }
    }
    // The upstream closed first, as a server does; the tunnel ends when the client follows.
    drop(ws);

    let record = events.wait_for_tunnel_record(IO_TIMEOUT);
    let websocket = record.websocket.expect("a WebSocket record");
    assert_eq!(
        websocket.client.messages, 4,
        "client messages: {websocket:?}"
    );
    assert_eq!(
        websocket.upstream.messages, 4,
        "upstream messages: {websocket:?}"
    );
    assert_eq!(websocket.client.close_frames, 1);
    assert_eq!(websocket.upstream.close_frames, 1);
    assert_eq!(websocket.client.close_code, Some(1000));
    assert_eq!(
        websocket.upstream.close_code,
        Some(1000),
        "tungstenite echoes the code"
    );
    // The peers sent no Ping of their own; every Ping they read was the proxy's.
    assert_eq!((websocket.client.pings, websocket.upstream.pings), (0, 0));
    let seen = (client_pings + upstream_pings.load(Ordering::SeqCst)) as u64;
    assert!(
        websocket.pings_sent >= seen,
        "{} Pings sent, {seen} read by the peers",
        websocket.pings_sent
    );
    assert!(
        websocket.client.pongs >= 1 && websocket.upstream.pongs >= 1,
        "{websocket:?}"
    );
    assert!(
        websocket.pongs_received >= 2 && websocket.pongs_received <= websocket.pings_sent,
        "{} Pongs absorbed for {} Pings",
        websocket.pongs_received,
        websocket.pings_sent
    );
    let (last, min) = (
        websocket.last_ping_rtt.expect("a round trip"),
        websocket.min_ping_rtt.expect("a minimum round trip"),
    );
    assert!(
        min <= last && last < IO_TIMEOUT,
        "round trips {min:?} ≤ {last:?}"
    );
}

#[test]
fn violation_is_reported_with_the_side_and_the_rule() {
    let events = Events::default();
    let origin = Origin::ws_scripted("", |conn| {
        let _ = conn.read_to_end();
    });
    let proxy = Proxy::start_with(origin.addr(), |config| events.install(config));
    let (mut client, _) = ws_connect_raw(proxy.addr(), "");
    client.write_all(&encode_frame(opcode::TEXT, b"unmasked", None));
    while client
        .read_frame()
        .expect("whole frames until EOF")
        .is_some()
    {}

    let record = events.wait_for_tunnel_record(IO_TIMEOUT);
    assert_eq!(record.reason.as_str(), "protocol_error");
    let violations: Vec<_> = events
        .all()
        .into_iter()
        .filter_map(|event| match event {
            Event::WebSocketViolation { side, rule, .. } => Some((side, rule)),
            _ => None,
        })
        .collect();
    assert_eq!(violations, [(Side::Client, "client_frame_unmasked")]);
    assert!(record.websocket.is_some(), "a WebSocket record");
}
