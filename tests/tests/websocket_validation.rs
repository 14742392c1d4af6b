//! Frame validation in WebSocket tunnels, against raw peers: a frame that breaks RFC 6455
//! is never forwarded and gets Close 1002 on both sides, the offender's last, after the
//! other side's answers to what it had been sent; permessage-deflate's RSV1 passes
//! when the 101 negotiated it and is a violation when it did not; with validation and
//! pings off the tunnel is byte-exact, as a plain byte tunnel.

use std::io::Write;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use flate2::write::{DeflateDecoder, DeflateEncoder};
use flate2::Compression;
use switchyard_core::WebSocketPolicy;
use switchyard_e2e::{
    encode_fragment, encode_frame, encode_raw_frame, opcode, wait_until, ws_connect_raw, Events,
    Frame, Origin, Proxy, RawPeer, IO_TIMEOUT, PEER_MASK,
};

const MASK: Option<[u8; 4]> = Some(PEER_MASK);
/// FIN and RSV1 (RFC 7692: the message is compressed).
const FIN_RSV1: u8 = 0x80 | 0x40;
/// After a violation the offender's Close waits for the other side's answers: until that
/// side's Close or EOF, or 1 s.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// What a loaded machine may add to a deadline before the test calls it late.
const SLACK: Duration = Duration::from_millis(1500);
const DEFLATE_OFFER: &str =
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
const DEFLATE_AGREED: &str = "Sec-WebSocket-Extensions: permessage-deflate\r\n";

/// A message compressed as permessage-deflate sends it (RFC 7692 §7.2.1): raw DEFLATE,
/// flushed, without the final empty block's `00 00 ff ff`. Each message is compressed
/// afresh, which every receiver accepts whatever context takeover it allows.
fn deflate(message: &[u8]) -> Vec<u8> {
    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(message).expect("deflate");
    encoder.flush().expect("a sync flush");
    let compressed = encoder.get_ref();
    compressed
        .strip_suffix(&[0, 0, 0xff, 0xff])
        .expect("a sync flush ends with an empty stored block")
        .to_vec()
}

/// The inverse of [`deflate`] (RFC 7692 §7.2.2).
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut decoder = DeflateDecoder::new(Vec::new());
    decoder.write_all(payload).expect("inflate");
    decoder.write_all(&[0, 0, 0xff, 0xff]).expect("inflate");
    decoder.flush().expect("inflate");
    decoder.get_ref().clone()
}

/// Reads everything the proxy sends `client` until it closes; panics unless it is whole
/// frames.
fn frames_until_eof(client: &mut switchyard_e2e::Conn) -> Vec<Frame> {
    let mut frames = Vec::new();
    while let Some(frame) = client.read_frame().expect("whole frames until EOF") {
        frames.push(frame);
    }
    frames
}

/// The proxy's own Close 1002 (its reason names the offender; the peers' here have none).
fn assert_proxy_close_1002(frame: Option<&Frame>, masked: bool, towards: &str) {
    let frame = frame.unwrap_or_else(|| panic!("no Close towards the {towards}"));
    assert_eq!(
        (frame.opcode, frame.close_code()),
        (opcode::CLOSE, Some(1002)),
        "towards the {towards}: {frame:?}"
    );
    assert!(
        frame.close_reason().starts_with("protocol error by the"),
        "the proxy's own Close towards the {towards}: {frame:?}"
    );
    assert_eq!(
        frame.mask.is_some(),
        masked,
        "MASK of the Close towards the {towards}"
    );
}

/// Sends `bytes` from a client that offered `offer`, to an echoing upstream whose 101
/// carries `agreed`, and checks the proxy's answer to the violation in them: the upstream
/// gets the frames in `forwarded`, byte for byte, then Close 1002 (masked) and then EOF;
/// the client gets the upstream's echo of each, then (the upstream's Close absorbed) the
/// proxy's Close 1002 and EOF; the tunnel record says `protocol_error`.
fn assert_client_violation(offer: &str, agreed: &'static str, bytes: &[u8], forwarded: &[&[u8]]) {
    let events = Events::default();
    let origin = Origin::ws_scripted(agreed, |conn| {
        let _ = RawPeer::server(conn).serve_until_close(true, |_| {});
    });
    let proxy = Proxy::start_with(origin.addr(), |config| events.install(config));
    let (mut client, _) = ws_connect_raw(proxy.addr(), offer);

    let started = Instant::now();
    client.write_all(bytes);
    let frames = frames_until_eof(&mut client);
    let ended_after = started.elapsed();
    assert_eq!(
        frames.len(),
        forwarded.len() + 1,
        "the client got {frames:?}"
    );
    for (echo, sent) in frames.iter().zip(forwarded) {
        let (sent, _) = switchyard_e2e::parse_frame(sent).expect("a frame");
        assert_eq!(
            (echo.opcode, &echo.payload),
            (sent.opcode, &sent.payload),
            "the upstream's echo, before the Close"
        );
    }
    assert_proxy_close_1002(frames.last(), false, "client");
    assert!(
        ended_after < CLOSE_WAIT + SLACK,
        "the client connection ended after {ended_after:?}"
    );

    wait_until(IO_TIMEOUT, "the proxy to close the upstream", || {
        origin.ended() == 1
    });
    let frames = origin.ws_frames();
    let (before_close, close) = frames.split_at(frames.len().saturating_sub(1));
    let before_close: Vec<_> = before_close.iter().map(|frame| &frame.raw[..]).collect();
    assert_eq!(
        before_close, forwarded,
        "what reached the upstream before the Close"
    );
    assert_proxy_close_1002(close.first(), true, "upstream");
    let record = events.wait_for_tunnel_record(IO_TIMEOUT);
    assert_eq!(record.reason.as_str(), "protocol_error");
}

#[test]
fn unmasked_client_frame_never_reaches_the_upstream_and_the_echo_before_it_reaches_the_client() {
    let valid = encode_frame(opcode::TEXT, b"a valid frame first", MASK);
    // One write: the proxy must cut between the valid frame and the unmasked one.
    let mut bytes = valid.clone();
    bytes.extend(encode_frame(opcode::TEXT, b"unmasked", None));
    assert_client_violation("", "", &bytes, &[&valid]);
}

/// An upstream that sends a valid frame and a masked one in one write, then reads until
/// the proxy's Close: each frame it gets, with when, and `None` at its EOF; the instant
/// just before the write comes first.
fn masked_upstream(valid: &[u8]) -> (Origin, mpsc::Receiver<(Option<Frame>, Instant)>) {
    let (frames_tx, frames_rx) = mpsc::channel();
    let valid = valid.to_vec();
    let origin = Origin::ws_scripted("", move |conn| {
        let mut bytes = valid.clone();
        bytes.extend(encode_frame(opcode::TEXT, b"masked", MASK));
        let _ = frames_tx.send((None, Instant::now()));
        conn.write_all(&bytes);
        let mut peer = RawPeer::server(conn);
        let _ = peer.serve_until_close(false, |frame| {
            let _ = frames_tx.send((Some(frame.clone()), Instant::now()));
        });
        let _ = frames_tx.send((None, Instant::now()));
    });
    (origin, frames_rx)
}

/// The frames `frames_rx` reports up to the upstream's EOF, and the instant before the
/// upstream's violation.
fn upstream_frames(
    frames_rx: &mpsc::Receiver<(Option<Frame>, Instant)>,
) -> (Vec<(Frame, Instant)>, Instant) {
    let next = || {
        frames_rx
            .recv_timeout(IO_TIMEOUT)
            .expect("the upstream's report")
    };
    let (_, violated) = next();
    let mut frames = Vec::new();
    while let (Some(frame), at) = next() {
        frames.push((frame, at));
    }
    (frames, violated)
}

#[test]
fn masked_upstream_frame_never_reaches_the_client_and_the_clients_reply_reaches_the_upstream() {
    let events = Events::default();
    let valid = encode_frame(opcode::TEXT, b"a valid frame first", None);
    let (origin, frames_rx) = masked_upstream(&valid);
    let proxy = Proxy::start_with(origin.addr(), |config| events.install(config));
    let (mut client, _) = ws_connect_raw(proxy.addr(), "");

    let first = client.read_frame().expect("read").expect("a frame");
    assert_eq!(first.raw, valid, "the valid frame before the masked one");
    let close = client.read_frame().expect("read").expect("a Close");
    assert_proxy_close_1002(Some(&close), false, "client");
    // The client answers what it got, then closes: its answer reaches the upstream, its
    // Close is absorbed and the upstream gets the proxy's 1002 instead.
    let reply = encode_frame(opcode::TEXT, b"a reply on its way", MASK);
    client.write_all(&reply);
    client.write_all(&encode_frame(opcode::CLOSE, &1002u16.to_be_bytes(), MASK));
    assert_eq!(frames_until_eof(&mut client), [], "nothing after the Close");

    let (frames, _) = upstream_frames(&frames_rx);
    assert_eq!(frames.len(), 2, "the upstream got {frames:?}");
    assert_eq!(
        frames[0].0.raw, reply,
        "the client's reply, before the Close"
    );
    assert_proxy_close_1002(Some(&frames[1].0), true, "upstream");
    let record = events.wait_for_tunnel_record(IO_TIMEOUT);
    assert_eq!(record.reason.as_str(), "protocol_error");
}

#[test]
fn an_upstream_that_broke_a_rule_gets_its_close_1002_a_second_after_a_silent_client() {
    let valid = encode_frame(opcode::TEXT, b"a valid frame first", None);
    let (origin, frames_rx) = masked_upstream(&valid);
    let proxy = Proxy::start(origin.addr());
    let (mut client, _) = ws_connect_raw(proxy.addr(), "");

    let frames = frames_until_eof(&mut client);
    assert_eq!(frames.len(), 2, "the client got {frames:?}");
    assert_eq!(frames[0].raw, valid);
    assert_proxy_close_1002(frames.get(1), false, "client");

    let (frames, violated) = upstream_frames(&frames_rx);
    assert_eq!(frames.len(), 1, "the upstream got {frames:?}");
    let (close, at) = &frames[0];
    assert_proxy_close_1002(Some(close), true, "upstream");
    let waited = at.duration_since(violated);
    assert!(
        waited >= CLOSE_WAIT && waited < CLOSE_WAIT + SLACK,
        "the upstream's Close came {waited:?} after its violation"
    );
}

#[test]
fn rsv1_frame_without_negotiated_deflate_gets_close_1002_on_both_sides_after_the_echo() {
    let valid = encode_frame(opcode::TEXT, b"uncompressed", MASK);
    let mut bytes = valid.clone();
    bytes.extend(encode_raw_frame(
        FIN_RSV1 | opcode::TEXT,
        &deflate(b"compressed, but nobody agreed to it"),
        MASK,
    ));
    // The client offers permessage-deflate; the upstream's 101 declines it.
    assert_client_violation(DEFLATE_OFFER, "", &bytes, &[&valid]);
}

/// An upstream that agreed to permessage-deflate: it reassembles each message,
/// inflates it when its first frame has RSV1, and sends it back compressed, in one
/// frame with RSV1.
fn deflate_echo_origin() -> Origin {
    Origin::ws_scripted(DEFLATE_AGREED, |conn| {
        let mut peer = RawPeer::server(conn);
        let mut message: Option<(Frame, Vec<u8>)> = None;
        while let Ok(Some(frame)) = peer.next_non_ping() {
            if frame.opcode == opcode::CLOSE {
                peer.send(opcode::CLOSE, frame.payload.get(..2).unwrap_or_default());
                return;
            }
            let (first, mut payload) = message.take().unwrap_or((frame.clone(), Vec::new()));
            payload.extend_from_slice(&frame.payload);
            if !frame.fin {
                message = Some((first, payload));
                continue;
            }
            let data = if first.rsv & 0x40 != 0 {
                inflate(&payload)
            } else {
                payload
            };
            let reply = encode_raw_frame(FIN_RSV1 | first.opcode, &deflate(&data), None);
            peer.conn().write_all(&reply);
        }
    })
}

#[test]
fn permessage_deflate_negotiated_by_both_ends_passes_with_validation_on() {
    let origin = deflate_echo_origin();
    let proxy = Proxy::start(origin.addr());
    let (mut client, head) = ws_connect_raw(proxy.addr(), DEFLATE_OFFER);
    assert_eq!(
        head.get("sec-websocket-extensions"),
        Some("permessage-deflate"),
        "the upstream's agreement reaches the client"
    );
    assert_eq!(
        origin.requests()[0].head.get("sec-websocket-extensions"),
        Some("permessage-deflate; client_max_window_bits"),
        "the client's offer reaches the upstream"
    );

    let text = b"Hello, hello, hello: compressed through a validating proxy".repeat(4);
    let binary: Vec<u8> = (0..3000u32).map(|i| (i % 7) as u8).collect();
    let compressed_binary = deflate(&binary);
    let (head_part, tail_part) = compressed_binary.split_at(compressed_binary.len() / 2);
    let sent = [
        // A compressed message in one frame.
        encode_raw_frame(FIN_RSV1 | opcode::TEXT, &deflate(&text), MASK),
        // A compressed message in two fragments: RSV1 on the first one only.
        encode_raw_frame(0x40 | opcode::BINARY, head_part, MASK),
        encode_fragment(true, opcode::CONTINUATION, tail_part, MASK),
        // A message sent uncompressed, as RFC 7692 allows.
        encode_frame(opcode::TEXT, b"not compressed", MASK),
    ];
    for frame in &sent {
        client.write_all(frame);
    }
    for (expected_opcode, expected) in [
        (opcode::TEXT, &text[..]),
        (opcode::BINARY, &binary[..]),
        (opcode::TEXT, &b"not compressed"[..]),
    ] {
        let echo = client.read_frame().expect("read").expect("an echo");
        assert_eq!(
            (echo.opcode, echo.rsv, echo.fin, echo.mask),
            (expected_opcode, 0x40, true, None),
            "the echo's header"
        );
        assert!(
            inflate(&echo.payload) == expected,
            "the echo inflated differs"
        );
    }
    client.write_all(&encode_frame(opcode::CLOSE, &1000u16.to_be_bytes(), MASK));
    let close = client.read_frame().expect("read").expect("the Close reply");
    assert_eq!(close.close_code(), Some(1000));
    assert_eq!(client.read_frame().expect("read"), None);
    // The upstream closed first, as a server does; the client follows.
    client.shutdown_write();

    wait_until(IO_TIMEOUT, "the upstream connection to end", || {
        origin.ended() == 1
    });
    let received: Vec<_> = origin
        .ws_frames()
        .into_iter()
        .map(|frame| frame.raw)
        .collect();
    assert_eq!(
        &received[..sent.len()],
        &sent[..],
        "the frames the upstream got"
    );
}

#[test]
fn with_validation_and_pings_off_the_tunnel_is_byte_exact() {
    // Frames a validating proxy would refuse, each way, and bytes that are no frame.
    let mut from_client = encode_frame(opcode::TEXT, b"masked", MASK);
    from_client.extend(encode_frame(opcode::TEXT, b"unmasked", None));
    from_client.extend(encode_raw_frame(FIN_RSV1 | opcode::TEXT, b"rsv1", MASK));
    from_client.extend(encode_raw_frame(0x80 | 0x3, b"reserved opcode", MASK));
    from_client.extend(encode_frame(opcode::PING, &[7; 200], MASK));
    from_client.extend(encode_fragment(true, opcode::CONTINUATION, b"orphan", MASK));
    from_client.extend_from_slice(b"\x00\x01 and not a frame at all");
    let mut from_upstream = encode_frame(opcode::BINARY, b"masked by the upstream", MASK);
    from_upstream.extend(encode_raw_frame(0x80 | 0x20 | opcode::TEXT, b"rsv2", None));
    from_upstream.extend(encode_fragment(
        false,
        opcode::PONG,
        b"fragmented pong",
        None,
    ));

    let origin = {
        let (expected, reply) = (from_client.len(), from_upstream.clone());
        Origin::ws_scripted("", move |conn| {
            if conn.read_exact_bytes(expected).is_ok() {
                conn.write_all(&reply);
            }
        })
    };
    let proxy = Proxy::start_with(origin.addr(), |config| {
        config.core.routes[0].websocket = WebSocketPolicy {
            validate: false,
            ping_interval: None,
            ..WebSocketPolicy::default()
        };
    });
    let (mut client, _) = ws_connect_raw(proxy.addr(), "");
    client.write_all(&from_client);
    let received = client
        .read_exact_bytes(from_upstream.len())
        .expect("the upstream's bytes");
    assert_eq!(received, from_upstream, "what the client received");
    client.shutdown_write();
    assert_eq!(
        client.read_to_end().expect("EOF"),
        b"",
        "after the upstream's bytes"
    );

    wait_until(IO_TIMEOUT, "the upstream connection to end", || {
        origin.ended() == 1
    });
    let mut expected = origin.requests()[0].raw();
    expected.extend_from_slice(&from_client);
    assert_eq!(origin.received()[0], expected, "what the upstream received");
}
