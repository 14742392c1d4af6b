//! Fragmented messages through a frame-aware tunnel with Pings between the fragments,
//! the peer's own and the proxy's: tungstenite on the receiving side reassembles the
//! message, the peer's Ping gets its Pong through, the proxy's Pong never shows.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use switchyard_core::WebSocketPolicy;
use switchyard_e2e::{
    opcode, wait_until, ws_config, ws_connect_raw, Frame, Origin, Proxy, RawPeer, IO_TIMEOUT,
};
use switchyard_smol::ServerConfig;
use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

/// Pings soon, and a ping timeout long enough that a peer waiting for the proxy's Ping
/// to show up on the other side is never taken for dead: these tests are about where
/// the Pings go, not about dead peers.
fn pings_on(config: &mut ServerConfig) {
    config.core.routes[0].websocket = WebSocketPolicy {
        validate: true,
        ping_interval: Some(Duration::from_millis(200)),
        ping_timeout: Duration::from_secs(5),
    };
}

fn is_proxy_ping(message: &Message) -> bool {
    matches!(message, Message::Ping(payload) if payload.len() == 8)
}

#[test]
fn fragments_from_the_client_with_pings_between_them_are_reassembled_by_the_upstream() {
    let seen: Arc<Mutex<Vec<Message>>> = Arc::default();
    let origin = {
        let seen = seen.clone();
        Origin::ws_scripted("", move |conn| {
            let stream = conn.stream().try_clone().expect("clone the origin stream");
            let mut ws = WebSocket::from_partially_read(
                stream,
                conn.take_buffered(),
                Role::Server,
                Some(ws_config()),
            );
            // tungstenite answers Pings (and the Close) by itself on its next read.
            while let Ok(message) = ws.read() {
                seen.lock().unwrap().push(message.clone());
                if (message.is_text() || message.is_binary()) && ws.send(message).is_err() {
                    return;
                }
            }
        })
    };
    let proxy = Proxy::start_with(origin.addr(), pings_on);
    let (mut client, _) = ws_connect_raw(proxy.addr(), "");
    let mut peer = RawPeer::client(&mut client);

    let first = peer.encode(false, opcode::TEXT, b"frag");
    peer.conn().write_all(&first);
    peer.send(opcode::PING, b"the client's own");
    // The upstream is silent after its Pong: the proxy's Ping comes between fragments.
    wait_until(
        IO_TIMEOUT,
        "the proxy's Ping to reach the upstream mid-message",
        || seen.lock().unwrap().iter().any(is_proxy_ping),
    );
    let middle = peer.encode(false, opcode::CONTINUATION, b"men");
    let last = peer.encode(true, opcode::CONTINUATION, b"ted");
    peer.conn().write_all(&middle);
    peer.conn().write_all(&last);

    let pong = peer.next_non_ping().expect("read").expect("the Pong");
    assert_eq!(
        (pong.opcode, &pong.payload[..]),
        (opcode::PONG, &b"the client's own"[..]),
        "the first frame the client got that is not a Ping"
    );
    let echo = peer.next_non_ping().expect("read").expect("the echo");
    assert_eq!(
        (echo.opcode, &echo.payload[..]),
        (opcode::TEXT, &b"fragmented"[..])
    );
    peer.send_close(1000, "");
    let close = peer
        .next_non_ping()
        .expect("read")
        .expect("the Close reply");
    assert_eq!(close.close_code(), Some(1000));
    assert_eq!(peer.next_non_ping().expect("read"), None);

    let seen = seen.lock().unwrap().clone();
    let message_at = seen
        .iter()
        .position(|message| message.is_text())
        .expect("the reassembled message");
    assert_eq!(seen[message_at], Message::text("fragmented"));
    assert_eq!(
        seen[0],
        Message::Ping(b"the client's own".to_vec().into()),
        "the client's Ping between the fragments"
    );
    assert!(
        seen[1..message_at].iter().all(is_proxy_ping) && message_at > 1,
        "between the first fragment and the message's end the upstream read {:?}",
        &seen[..message_at]
    );
}

/// A client WebSocket on `client`'s connection, starting with what it holds after the 101.
fn tungstenite_client(client: switchyard_e2e::Conn) -> WebSocket<TcpStream> {
    let (stream, leftover) = client.into_parts();
    WebSocket::from_partially_read(stream, leftover, Role::Client, Some(ws_config()))
}

#[test]
fn fragments_from_the_upstream_with_pings_between_them_are_reassembled_by_the_client() {
    let client_saw_a_proxy_ping = Arc::new(AtomicBool::new(false));
    let (frames_tx, frames_rx) = mpsc::channel::<Frame>();
    let origin = {
        let client_saw_a_proxy_ping = client_saw_a_proxy_ping.clone();
        Origin::ws_scripted("", move |conn| {
            let mut peer = RawPeer::server(conn);
            let first = peer.encode(false, opcode::TEXT, b"frag");
            peer.conn().write_all(&first);
            peer.send(opcode::PING, b"the upstream's own");
            // The client is silent after its Pong: the proxy's Ping comes between
            // fragments.
            wait_until(
                IO_TIMEOUT,
                "the proxy's Ping to reach the client mid-message",
                || client_saw_a_proxy_ping.load(Ordering::SeqCst),
            );
            let middle = peer.encode(false, opcode::CONTINUATION, b"men");
            let last = peer.encode(true, opcode::CONTINUATION, b"ted");
            peer.conn().write_all(&middle);
            peer.conn().write_all(&last);
            let _ = peer.serve_until_close(false, |frame| {
                let _ = frames_tx.send(frame.clone());
            });
        })
    };
    let proxy = Proxy::start_with(origin.addr(), pings_on);
    let (client, _) = ws_connect_raw(proxy.addr(), "");
    let mut ws = tungstenite_client(client);

    let mut seen = Vec::new();
    let message = loop {
        match ws.read().expect("a message") {
            message @ Message::Ping(_) => {
                if is_proxy_ping(&message) {
                    client_saw_a_proxy_ping.store(true, Ordering::SeqCst);
                }
                seen.push(message);
            }
            message => break message,
        }
    };
    assert_eq!(message, Message::text("fragmented"));
    assert_eq!(
        seen[0],
        Message::Ping(b"the upstream's own".to_vec().into()),
        "the upstream's Ping between the fragments"
    );
    assert!(
        seen.len() > 1 && seen[1..].iter().all(is_proxy_ping),
        "between the first fragment and the message's end the client read {seen:?}"
    );
    ws.close(None).expect("send Close");
    loop {
        match ws.read() {
            Ok(message) => assert!(
                matches!(message, Message::Ping(_) | Message::Close(_)),
                "after Close the client read {message:?}"
            ),
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("closing handshake: {e}"),
        }
    }

    let mut pongs = Vec::new();
    loop {
        let frame = frames_rx
            .recv_timeout(IO_TIMEOUT)
            .expect("the upstream's frames up to the client's Close");
        match frame.opcode {
            opcode::CLOSE => break,
            opcode::PONG => pongs.push(frame.payload),
            _ => {}
        }
    }
    assert_eq!(
        pongs,
        [b"the upstream's own".to_vec()],
        "the upstream's Pongs: only the answer to its own Ping (the proxy absorbs the rest)"
    );
}
