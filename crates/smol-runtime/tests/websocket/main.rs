//! The driver in frame-aware WebSocket tunnels, over real sockets on 127.0.0.1: shown
//! reads and raw payload in order, the proxy's Pings answered and absorbed, a dead
//! upstream, the drain's Close frames, a violation's 1002, and the byte tunnel that
//! `ws_validate = false` without pings still is. Every read is bounded by a timeout.

mod peers;

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use switchyard_core::{CloseReason, Side, WebSocketPolicy};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

use peers::*;

/// Reads what the client is sent until the close handshake is over (the proxy or the
/// origin closed the connection); returns the messages, the Close among them.
fn read_until_closed(ws: &mut tungstenite::WebSocket<std::net::TcpStream>) -> Vec<Message> {
    let mut seen = Vec::new();
    loop {
        match ws.read() {
            Ok(message) => seen.push(message),
            Err(tungstenite::Error::ConnectionClosed) => return seen,
            Err(tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            )) => return seen,
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::ConnectionReset => {
                return seen
            }
            Err(e) => panic!("reading until closed: {e} (after {seen:?})"),
        }
    }
}

/// The next message the client is sent that is not a Ping of the proxy's (a loaded
/// machine may take longer than a ping interval to answer).
fn read_past_pings(ws: &mut tungstenite::WebSocket<std::net::TcpStream>) -> Message {
    loop {
        match ws.read().unwrap() {
            Message::Ping(payload) if payload.len() == 8 => {}
            other => return other,
        }
    }
}

fn close_frame_of(messages: &[Message]) -> CloseFrame {
    messages
        .iter()
        .find_map(|message| match message {
            Message::Close(Some(frame)) => Some(frame.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Close with a code in {messages:?}"))
}

#[test]
fn small_and_one_mebibyte_messages_echo_through_a_frame_aware_tunnel() {
    let (origin, seen) = echo_origin();
    let proxy = Proxy::start(origin, WebSocketPolicy::default(), LIMIT);
    let mut ws = ws_client(proxy.addr);

    ws.send(Message::text("hello")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("hello"));
    // Many payload reads of one frame (spliced on the Linux reactor), with the header
    // shown to the core; then a small message right behind it.
    let large: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    ws.send(Message::binary(large.clone())).unwrap();
    ws.send(Message::text("after")).unwrap();
    assert!(ws.read().unwrap() == Message::binary(large), "1 MiB echo");
    assert_eq!(ws.read().unwrap(), Message::text("after"));
    assert_eq!(next_data(&seen), Message::text("hello"));

    let bye = CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    };
    ws.close(Some(bye)).unwrap();
    let messages = read_until_closed(&mut ws);
    assert_eq!(close_frame_of(&messages).code, CloseCode::Normal);
    // The handshake is over; the client's connection ends as the origin's did.
    drop(ws);

    let record = proxy.events.tunnel();
    assert_eq!(record.protocol, "websocket");
    let frames = record.websocket.expect("a frame-aware tunnel");
    assert_eq!(frames.client.messages, 3);
    assert_eq!(frames.upstream.messages, 3);
    assert_eq!(frames.client.close_code, Some(1000));
    assert_eq!(
        frames.upstream.close_code,
        Some(1000),
        "the origin's answer"
    );
    assert_eq!(frames.pings_sent, 0, "pings are off");
    assert!(record.bytes_client_to_upstream > 1 << 20);
    assert!(record.bytes_upstream_to_client > 1 << 20);
    assert!(proxy.events.violations().is_empty());
}

#[test]
fn payload_passes_the_core_only_up_to_its_frame_end() {
    let (origin, _seen) = echo_origin();
    let proxy = Proxy::start(origin, WebSocketPolicy::default(), LIMIT);
    let mut ws = ws_client(proxy.addr);
    // Frames of many sizes, each with a small one right behind it: wherever the reads
    // of a payload end, what follows the frame is the next header, which the core must
    // see (bytes past the budget would be the driver's bug, which the core refuses).
    let pairs = 24;
    for i in 0..pairs {
        let large: Vec<u8> = (0..100_000 + i * 12_345).map(|b| (b % 253) as u8).collect();
        ws.send(Message::binary(large.clone())).unwrap();
        ws.send(Message::text(format!("behind {i}"))).unwrap();
        assert!(ws.read().unwrap() == Message::binary(large), "echo {i}");
        assert_eq!(ws.read().unwrap(), Message::text(format!("behind {i}")));
    }
    ws.close(None).unwrap();
    read_until_closed(&mut ws);
    drop(ws);
    let frames = proxy.events.tunnel().websocket.unwrap();
    assert_eq!(frames.client.messages, 2 * pairs as u64);
    assert_eq!(frames.upstream.messages, 2 * pairs as u64);
}

#[test]
fn pings_to_quiet_live_peers_are_answered_and_absorbed() {
    let (origin, seen) = echo_origin();
    let interval = Duration::from_millis(100);
    let timeout = Duration::from_millis(300);
    let proxy = Proxy::start(origin, pinging(interval, timeout), LIMIT);
    let mut ws = ws_client(proxy.addr);
    let opened = Instant::now();

    // A Ping of the client's own is the peers' business: it passes, and so does the
    // origin's Pong.
    ws.send(Message::Ping("mine".into())).unwrap();
    assert_eq!(read_past_pings(&mut ws), Message::Pong("mine".into()));

    // Quiet from here on, except for what tungstenite answers by itself: the proxy pings
    // both sides, each answers, and the answers go no further. Five Pings take longer
    // than interval + timeout, so a side whose answers were lost would be dead by then.
    let mut pings = Vec::new();
    while pings.len() < 5 {
        match ws.read().unwrap() {
            Message::Ping(payload) => pings.push(payload),
            other => panic!("the client got {other:?} while quiet"),
        }
    }
    assert!(opened.elapsed() > interval + timeout);
    assert!(pings.iter().all(|payload| payload.len() == 8));
    pings.dedup();
    assert_eq!(pings.len(), 5, "each Ping has a payload of its own");

    ws.send(Message::text("still here")).unwrap();
    assert_eq!(read_past_pings(&mut ws), Message::text("still here"));
    ws.close(None).unwrap();
    read_until_closed(&mut ws);
    drop(ws);

    let record = proxy.events.tunnel();
    assert!(
        !matches!(
            record.reason,
            CloseReason::ClientUnresponsive | CloseReason::UpstreamUnresponsive
        ),
        "{:?}",
        record.reason
    );
    let frames = record.websocket.unwrap();
    // The origin was pinged as well, and its Pongs were absorbed like the client's.
    let origin_saw: Vec<Message> = seen.try_iter().collect();
    let origin_pings = origin_saw
        .iter()
        .filter(|m| matches!(m, Message::Ping(p) if p.len() == 8))
        .count();
    assert!(origin_pings >= 2, "{origin_saw:?}");
    assert!(
        !origin_saw
            .iter()
            .any(|m| matches!(m, Message::Pong(p) if p.len() == 8)),
        "the client's answers to the proxy reached the origin: {origin_saw:?}"
    );
    let origin_pings = origin_pings as u64;
    assert!(frames.pings_sent >= 5 + origin_pings);
    // Every Ping the origin saw was answered before it echoed "still here".
    assert!(frames.pongs_received >= 4 + origin_pings);
    let (last, min) = (frames.last_ping_rtt.unwrap(), frames.min_ping_rtt.unwrap());
    assert!(min <= last, "{min:?} {last:?}");
    assert_eq!(frames.client.pings, 1, "the client's own Ping");
}

#[test]
fn a_silent_upstream_is_declared_dead_and_the_client_gets_close_1001() {
    let (got, upstream_bytes) = mpsc::channel();
    // Takes the upgrade, then never writes nor answers: what it receives is reported
    // once the proxy closes the connection.
    let origin = raw_origin(Vec::new(), move |mut reader, _writer| {
        let mut received = Vec::new();
        let _ = reader.read_to_end(&mut received);
        let _ = got.send(received);
    });
    let interval = Duration::from_millis(100);
    let timeout = Duration::from_millis(200);
    let proxy = Proxy::start(origin, pinging(interval, timeout), LIMIT);
    // Before the origin's last byte (its 101).
    let connecting = Instant::now();
    let mut ws = ws_client(proxy.addr);

    let messages = read_until_closed(&mut ws);
    let close = close_frame_of(&messages);
    assert_eq!(close.code, CloseCode::Away);
    assert_eq!(close.reason.as_str(), "upstream stopped answering");
    assert!(
        connecting.elapsed() >= interval + timeout,
        "declared dead after {:?}",
        connecting.elapsed()
    );

    let record = proxy.events.tunnel();
    assert_eq!(record.reason, CloseReason::UpstreamUnresponsive);
    // The upstream got one masked Ping of 8 bytes, nothing else, then the close.
    let received = upstream_bytes.recv_timeout(LIMIT).unwrap();
    let (first, payload, masked) = read_frame(&mut &received[..]);
    assert_eq!((first, payload.len(), masked), (0x89, 8, true));
    assert_eq!(received.len(), 2 + 4 + 8, "{received:?}");
    assert_eq!(record.websocket.unwrap().upstream.pongs, 0);
}

#[test]
fn a_drain_sends_close_1001_to_both_sides() {
    let (origin, seen) = echo_origin();
    let grace = Duration::from_millis(200);
    let mut proxy = Proxy::start(origin, WebSocketPolicy::default(), grace);
    let mut ws = ws_client(proxy.addr);
    ws.send(Message::text("before")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("before"));

    proxy.handle.shutdown();
    // tungstenite answers the Close; the proxy then closes the connection.
    let messages = read_until_closed(&mut ws);
    let close = close_frame_of(&messages);
    assert_eq!(close.code, CloseCode::Away);
    assert_eq!(close.reason.as_str(), "proxy going away");
    // The origin got the proxy's Close (masked, or tungstenite would have refused it).
    let to_origin = loop {
        match next_data(&seen) {
            Message::Close(Some(frame)) => break frame,
            Message::Close(None) => panic!("a Close without a code"),
            _ => {}
        }
    };
    assert_eq!(to_origin.code, CloseCode::Away);

    proxy.stop();
    let record = proxy.events.tunnel();
    assert_eq!(record.reason, CloseReason::Shutdown);
    let frames = record.websocket.unwrap();
    assert_eq!(frames.client.close_code, Some(1001), "the client's answer");
    assert_eq!(
        frames.upstream.close_code,
        Some(1001),
        "the origin's answer"
    );
}

#[test]
fn an_unmasked_client_frame_goes_no_further_and_gets_close_1002_after_the_echo() {
    let (origin, seen) = echo_origin();
    let proxy = Proxy::start(origin, WebSocketPolicy::default(), LIMIT);
    let masked_hello = frame(0x1, b"first", Some([1, 2, 3, 4]));
    let (mut reader, mut writer) = raw_client(proxy.addr, &masked_hello);
    let (first, payload, masked) = read_frame(&mut reader);
    assert_eq!((first, &payload[..], masked), (0x81, &b"first"[..], false));

    // A valid frame and the unmasked one in one write: the origin's echo of the valid
    // one still reaches the client, before the proxy's Close.
    let mut write = frame(0x1, b"second", Some([5, 6, 7, 8]));
    write.extend(frame(0x1, b"unmasked", None));
    writer.write_all(&write).unwrap();
    let (first, payload, masked) = read_frame(&mut reader);
    assert_eq!((first, &payload[..], masked), (0x81, &b"second"[..], false));
    let (first, payload, masked) = read_frame(&mut reader);
    assert_eq!((first, masked), (0x88, false), "an unmasked Close");
    assert_eq!(close_code(&payload), 1002);
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    assert!(rest.is_empty(), "nothing after the Close: {rest:?}");

    assert_eq!(next_data(&seen), Message::text("first"));
    assert_eq!(next_data(&seen), Message::text("second"));
    match next_data(&seen) {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Protocol),
        other => panic!("the origin got {other:?}"),
    }
    let record = proxy.events.tunnel();
    assert_eq!(record.reason, CloseReason::ProtocolError);
    let violations = proxy.events.violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].0, Side::Client);
}

#[test]
fn frames_that_come_with_the_handshake_are_forwarded_first() {
    let (got, origin_got) = mpsc::channel();
    let welcome = frame(0x1, b"welcome", None);
    let origin = raw_origin(welcome, move |mut reader, mut writer| {
        // The client's frame came in the same write as its request; answer it.
        let (first, payload, masked) = read_frame(&mut reader);
        writer.write_all(&frame(0x2, &payload, None)).unwrap();
        let _ = got.send((first, payload, masked));
        let (first, payload, masked) = read_frame(&mut reader);
        let _ = got.send((first, payload, masked));
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest);
        let _ = got.send((0, rest, false));
    });
    let proxy = Proxy::start(origin, WebSocketPolicy::default(), LIMIT);
    let payload: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
    let (mut reader, writer) = raw_client(proxy.addr, &frame(0x2, &payload, Some([9, 8, 7, 6])));

    let (first, welcome, _) = read_frame(&mut reader);
    assert_eq!((first, &welcome[..]), (0x81, &b"welcome"[..]));
    let (first, echoed, _) = read_frame(&mut reader);
    assert_eq!((first, &echoed), (0x82, &payload));
    assert_eq!(
        origin_got.recv_timeout(LIMIT).unwrap(),
        (0x82, payload, true)
    );
    // The client leaves without a Close: the origin is told 1001 (masked), then EOF.
    writer.shutdown(Shutdown::Write).unwrap();
    let (first, payload, masked) = origin_got.recv_timeout(LIMIT).unwrap();
    assert_eq!((first, masked), (0x88, true));
    assert_eq!(close_code(&payload), 1001);
    assert_eq!(&payload[2..], b"client went away");
    let (_, rest, _) = origin_got.recv_timeout(LIMIT).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    drop((reader, writer));
    let record = proxy.events.tunnel();
    let frames = record.websocket.unwrap();
    assert_eq!((frames.client.messages, frames.upstream.messages), (1, 2));
    assert_eq!(frames.client.close_frames, 0);
}

#[test]
fn without_validation_or_pings_the_tunnel_is_byte_exact() {
    // Echoes every byte, frames or not.
    let origin = raw_origin(b"not a frame at all".to_vec(), |mut reader, mut writer| {
        let mut chunk = [0u8; 8192];
        loop {
            match reader.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => writer.write_all(&chunk[..n]).unwrap(),
            }
        }
    });
    let policy = WebSocketPolicy {
        validate: false,
        ping_interval: None,
        ..WebSocketPolicy::default()
    };
    let proxy = Proxy::start(origin, policy, LIMIT);
    // An unmasked frame with a reserved opcode, then bytes that are no frames.
    let first = [0x83, 0x01, 0xff];
    let (mut reader, writer) = raw_client(proxy.addr, &first);
    let mut welcome = [0u8; 18];
    reader.read_exact(&mut welcome).unwrap();
    assert_eq!(&welcome, b"not a frame at all");
    let mut echoed = [0u8; 3];
    reader.read_exact(&mut echoed).unwrap();
    assert_eq!(echoed, first);

    let noise: Vec<u8> = (0..600_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let sender = {
        let noise = noise.clone();
        let mut writer = writer.try_clone().unwrap();
        thread::spawn(move || writer.write_all(&noise).unwrap())
    };
    let mut back = vec![0u8; noise.len()];
    reader.read_exact(&mut back).unwrap();
    sender.join().unwrap();
    assert!(back == noise, "the bytes differ");
    writer.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(
        rest.is_empty(),
        "nothing but the echo: {} bytes",
        rest.len()
    );

    let record = proxy.events.tunnel();
    assert!(record.websocket.is_none(), "a byte tunnel");
    assert_eq!(record.reason, CloseReason::BothClosed);
    // What came with the handshake is not tunnel traffic.
    assert_eq!(record.bytes_client_to_upstream, noise.len() as u64);
}
