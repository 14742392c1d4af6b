//! The proxy's own Pings in frame-aware tunnels, against independent peers: a quiet but
//! alive tunnel outlives `read_timeout` and its Pongs are absorbed; a peer that stops
//! answering is found within `ping_interval + ping_timeout` and the other side gets
//! Close 1001 naming it; a Ping due while a frame trickles in waits for the frame's end.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use switchyard_core::WebSocketPolicy;
use switchyard_e2e::{
    encode_frame, opcode, parse_frames, wait_until, ws_close, ws_connect, ws_connect_raw,
    ws_next_message, ws_stay_quiet, Conn, Events, Frame, Origin, Proxy, RawPeer, IO_TIMEOUT,
    PEER_MASK,
};
use switchyard_smol::ServerConfig;
use tungstenite::Message;

const PING_INTERVAL: Duration = Duration::from_millis(200);
const PING_TIMEOUT: Duration = Duration::from_millis(300);
/// When a peer that stopped answering is declared dead, counted from its last byte.
const DEAD_AFTER: Duration = Duration::from_millis(500);
/// What a loaded machine may add to a deadline before the test calls it late.
const SLACK: Duration = Duration::from_millis(1500);

fn pings_on(config: &mut ServerConfig) {
    config.core.routes[0].websocket = WebSocketPolicy {
        validate: true,
        ping_interval: Some(PING_INTERVAL),
        ping_timeout: PING_TIMEOUT,
    };
}

fn assert_proxy_pings(pings: &[&[u8]], towards: &str) {
    assert!(!pings.is_empty(), "the proxy sent the {towards} no Ping");
    for payload in pings {
        assert_eq!(
            payload.len(),
            8,
            "a Ping of the proxy's towards the {towards}"
        );
    }
    let mut distinct = pings.to_vec();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        pings.len(),
        "the proxy reused a Ping payload towards the {towards}: {pings:02x?}"
    );
}

fn assert_close(frame: &Frame, code: u16, names: &str, masked: bool) {
    assert_eq!(
        frame.opcode,
        opcode::CLOSE,
        "expected a Close, got {frame:?}"
    );
    assert_eq!(
        frame.close_code(),
        Some(code),
        "the Close's code in {frame:?}"
    );
    assert!(
        frame.close_reason().contains(names),
        "the Close's reason {:?} does not name the {names}",
        frame.close_reason()
    );
    assert_eq!(frame.mask.is_some(), masked, "MASK of the proxy's Close");
}

#[test]
fn quiet_but_alive_tunnel_outlives_read_timeout_and_sees_no_pong_it_did_not_ask_for() {
    // Pings every 200 ms keep both peers answering: the quiet period is three
    // read_timeouts, which without pings would end the tunnel at the first.
    const READ_TIMEOUT: Duration = Duration::from_millis(600);
    let origin = Origin::ws_echo();
    let proxy = Proxy::start_with(origin.addr(), |config| {
        pings_on(config);
        config.core.routes[0].timeouts.read = READ_TIMEOUT;
    });
    let (mut ws, _) = ws_connect(proxy.addr(), "/");
    ws.send(Message::text("before")).expect("send");
    assert_eq!(ws_next_message(&mut ws), Message::text("before"));

    let pings = ws_stay_quiet(&mut ws, READ_TIMEOUT * 3);
    assert!(
        pings.len() >= 2,
        "{} Pings in {:?} of quiet, interval {PING_INTERVAL:?}",
        pings.len(),
        READ_TIMEOUT * 3
    );
    assert_proxy_pings(
        &pings.iter().map(Vec::as_slice).collect::<Vec<_>>(),
        "client",
    );

    ws.send(Message::text("after"))
        .expect("send after the quiet");
    assert_eq!(ws_next_message(&mut ws), Message::text("after"));
    // A Ping of the client's own passes through, and so does the upstream's answer.
    ws.send(Message::Ping(b"the client's own".to_vec().into()))
        .expect("ping");
    assert_eq!(
        ws_next_message(&mut ws),
        Message::Pong(b"the client's own".to_vec().into())
    );
    ws_close(&mut ws);
}

#[test]
fn upstream_that_stops_answering_gets_the_client_close_1001_after_interval_plus_timeout() {
    let events = Events::default();
    // Completes the handshake, then reads everything and never writes.
    let origin = Origin::ws_scripted("", |conn| {
        let _ = conn.read_to_end();
    });
    let proxy = Proxy::start_with(origin.addr(), |config| {
        pings_on(config);
        events.install(config);
    });

    // Before connecting: the upstream's last byte (the 101) is sent after this.
    let started = Instant::now();
    let (mut client, _) = ws_connect_raw(proxy.addr(), "");
    let mut peer = RawPeer::client(&mut client);
    let close = peer
        .next_non_ping()
        .expect("read")
        .expect("a Close before EOF");
    let closed_after = started.elapsed();
    assert_close(&close, 1001, "upstream", false);
    assert_eq!(
        peer.next_non_ping().expect("read after the Close"),
        None,
        "the proxy sent more after its Close"
    );
    let ended_after = started.elapsed();
    assert!(
        closed_after >= DEAD_AFTER,
        "declared dead after {closed_after:?}, before {DEAD_AFTER:?}"
    );
    assert!(
        ended_after < DEAD_AFTER + SLACK,
        "the client connection ended only after {ended_after:?}"
    );

    wait_until(IO_TIMEOUT, "the proxy to close the upstream", || {
        origin.ended() == 1
    });
    let frames = origin.ws_frames();
    assert!(
        frames
            .iter()
            .all(|frame| frame.opcode == opcode::PING && frame.mask.is_some()),
        "the silent upstream received more than the proxy's masked Pings \
         (the client's Pongs are the proxy's to absorb): {frames:?}"
    );
    let pings: Vec<_> = frames.iter().map(|frame| &frame.payload[..]).collect();
    assert_proxy_pings(&pings, "upstream");
    let record = events.wait_for_tunnel_record(IO_TIMEOUT);
    assert_eq!(record.reason.as_str(), "upstream_unresponsive");
}

#[test]
fn client_that_stops_answering_gets_the_upstream_close_1001_after_interval_plus_timeout() {
    let events = Events::default();
    let (frames_tx, frames_rx) = mpsc::channel::<(Frame, Instant)>();
    // A live upstream: it answers the proxy's Pings and reports every other frame.
    let origin = Origin::ws_scripted("", move |conn| {
        let _ = RawPeer::server(conn).serve_until_close(false, |frame| {
            if frame.opcode != opcode::PING {
                let _ = frames_tx.send((frame.clone(), Instant::now()));
            }
        });
    });
    let proxy = Proxy::start_with(origin.addr(), |config| {
        pings_on(config);
        events.install(config);
    });

    let started = Instant::now();
    // The client sends its handshake, then reads and never answers.
    let (mut client, _) = ws_connect_raw(proxy.addr(), "");
    let received = client.read_to_end().expect("read until the proxy closes");
    let ended_after = started.elapsed();

    let (close, at) = frames_rx
        .recv_timeout(IO_TIMEOUT)
        .expect("a frame at the upstream");
    assert_close(&close, 1001, "client", true);
    let closed_after = at - started;
    assert!(
        closed_after >= DEAD_AFTER,
        "declared dead after {closed_after:?}, before {DEAD_AFTER:?}"
    );
    assert!(
        ended_after < DEAD_AFTER + SLACK,
        "the client connection ended only after {ended_after:?}"
    );
    let (frames, rest) = parse_frames(&received);
    assert!(rest.is_empty(), "the client received a partial frame");
    assert!(
        frames.iter().all(|frame| frame.mask.is_none()),
        "a masked frame towards the client: {frames:?}"
    );
    let pings: Vec<_> = frames
        .iter()
        .filter(|frame| frame.opcode == opcode::PING)
        .map(|frame| &frame.payload[..])
        .collect();
    assert_proxy_pings(&pings, "client");
    let record = events.wait_for_tunnel_record(IO_TIMEOUT);
    assert_eq!(record.reason.as_str(), "client_unresponsive");
}

/// Steps over which a frame is trickled, 50 ms apart: 1.2 s, more than twice
/// `ping_interval + ping_timeout`.
const TRICKLE_STEPS: usize = 24;

/// Writes `bytes` as a slow peer would: one byte (so even the header arrives split),
/// then the rest in [`TRICKLE_STEPS`] writes 50 ms apart.
fn trickle(conn: &mut Conn, bytes: &[u8]) {
    conn.write_all(&bytes[..1]);
    for chunk in bytes[1..].chunks(bytes.len() / TRICKLE_STEPS + 1) {
        std::thread::sleep(Duration::from_millis(50));
        conn.write_all(chunk);
    }
}

fn large_payload() -> Vec<u8> {
    (0..64 * 1024u32).map(|i| (i % 251) as u8).collect()
}

/// `frames` as a receiver saw them: the trickled frame whole and first, then the
/// `after` message, the proxy's Pings (held back while the frame was in flight, one at
/// least) around it and the closing handshake.
fn assert_trickle_received(frames: &[Frame], trickled: &[u8], after: &[u8], masked: bool) {
    assert_eq!(
        frames.first().map(|frame| &frame.raw[..]),
        Some(trickled),
        "the trickled frame did not arrive whole and first"
    );
    let others: Vec<_> = frames[1..]
        .iter()
        .filter(|frame| frame.opcode != opcode::PING)
        .map(|frame| (frame.opcode, frame.payload.clone()))
        .collect();
    assert_eq!(
        others,
        [
            (opcode::TEXT, after.to_vec()),
            (opcode::CLOSE, 1000u16.to_be_bytes().to_vec())
        ],
        "after the trickled frame"
    );
    let pings: Vec<_> = frames
        .iter()
        .filter(|frame| frame.opcode == opcode::PING)
        .collect();
    assert!(
        pings.iter().all(|ping| ping.mask.is_some() == masked),
        "MASK of the proxy's Pings: {pings:?}"
    );
    let towards = if masked { "upstream" } else { "client" };
    assert_proxy_pings(
        &pings
            .iter()
            .map(|ping| &ping.payload[..])
            .collect::<Vec<_>>(),
        towards,
    );
}

#[test]
fn frame_trickled_by_the_client_is_not_a_dead_peer_and_no_ping_lands_inside_it() {
    let (frames_tx, frames_rx) = mpsc::channel::<Frame>();
    let origin = Origin::ws_scripted("", move |conn| {
        let mut peer = RawPeer::server(conn);
        // The echoes wait for the proxy's Ping: a side that speaks first is not silent,
        // and the Ping due to it would rightly be dropped.
        let (mut held, mut pinged) = (Vec::new(), false);
        while let Ok(Some(frame)) = peer.next_frame() {
            let _ = frames_tx.send(frame.clone());
            match frame.opcode {
                opcode::PING => pinged = true,
                opcode::CLOSE => {
                    peer.send(opcode::CLOSE, frame.payload.get(..2).unwrap_or_default());
                    return;
                }
                _ => held.push(frame),
            }
            if pinged {
                for frame in held.drain(..) {
                    peer.send(frame.opcode, &frame.payload);
                }
            }
        }
    });
    let proxy = Proxy::start_with(origin.addr(), pings_on);
    let (mut client, _) = ws_connect_raw(proxy.addr(), "");

    let payload = large_payload();
    let trickled = encode_frame(opcode::BINARY, &payload, Some(PEER_MASK));
    // The upstream is silent meanwhile: a Ping towards it falls due mid-frame.
    trickle(&mut client, &trickled);
    let mut peer = RawPeer::client(&mut client);
    peer.send(opcode::TEXT, b"after the trickle");
    let echo = peer
        .next_non_ping()
        .expect("the echo, which the upstream sends once the proxy's Ping reached it")
        .expect("the echo");
    assert_eq!(
        (echo.opcode, echo.payload.len()),
        (opcode::BINARY, payload.len())
    );
    assert!(
        echo.payload == payload,
        "the echo of the trickled frame differs"
    );
    let echo = peer.next_non_ping().expect("read").expect("the echo");
    assert_eq!(echo.payload, b"after the trickle");
    peer.send_close(1000, "");
    let close = peer.next_non_ping().expect("read").expect("a Close");
    assert_eq!(close.close_code(), Some(1000), "the upstream's own Close");
    assert_eq!(peer.next_non_ping().expect("read"), None);

    let mut frames: Vec<Frame> = Vec::new();
    while frames
        .last()
        .map_or(true, |frame| frame.opcode != opcode::CLOSE)
    {
        let frame = frames_rx
            .recv_timeout(IO_TIMEOUT)
            .expect("the upstream's frames up to the client's Close");
        frames.push(frame);
    }
    assert_trickle_received(&frames, &trickled, b"after the trickle", true);
}

#[test]
fn frame_trickled_by_the_upstream_is_not_a_dead_peer_and_no_ping_lands_inside_it() {
    let payload = large_payload();
    let trickled = encode_frame(opcode::BINARY, &payload, None);
    let origin = {
        let trickled = trickled.clone();
        Origin::ws_scripted("", move |conn| {
            // The client is silent meanwhile: a Ping towards it falls due mid-frame.
            trickle(conn, &trickled);
            let mut peer = RawPeer::server(conn);
            peer.send(opcode::TEXT, b"after the trickle");
            let _ = peer.serve_until_close(false, |_| {});
        })
    };
    let proxy = Proxy::start_with(origin.addr(), pings_on);
    let (mut client, _) = ws_connect_raw(proxy.addr(), "");
    let mut peer = RawPeer::client(&mut client);
    let big = peer
        .next_frame()
        .expect("read")
        .expect("the trickled frame");
    assert!(big.payload == payload, "the trickled frame arrived changed");
    // The client says nothing before the proxy's Ping has come (its Pong aside), so the
    // Ping due to it mid-frame cannot be dropped for the client having spoken.
    let mut saw_after = false;
    while !saw_after || !peer.received().iter().any(|f| f.opcode == opcode::PING) {
        let frame = peer
            .next_frame()
            .expect("frames until the proxy's Ping and the upstream's last frame")
            .expect("a frame");
        saw_after |= frame.opcode == opcode::TEXT;
    }
    peer.send_close(1000, "");
    let close = peer.next_non_ping().expect("read").expect("a Close");
    assert_eq!(close.close_code(), Some(1000), "the upstream's own Close");
    assert_eq!(peer.next_non_ping().expect("read"), None);

    assert_trickle_received(peer.received(), &trickled, b"after the trickle", false);
}
