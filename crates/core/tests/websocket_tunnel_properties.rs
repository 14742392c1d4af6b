//! Property tests of frame-aware WebSocket tunnels: (a) a valid frame stream split
//! anywhere, with time passing and pings on, reaches the other side byte-identical but
//! for the proxy's Pings, and the receiver always sees whole frames; (b) the proxy's own
//! frames are masked iff they go upstream, each with a key of its own; (c) on the virtual
//! clock a silent peer is dead exactly `ws_ping_interval + ws_ping_timeout` after its
//! last byte; (d) after a violation, everything the other side still sends before its
//! Close reaches the offender byte-identical, then one Close 1002 of the proxy's; (e)
//! after a peer left without a Close, the other side's stream still reaches it
//! byte-identical, and the other side's Close, which answers the proxy's 1001, does not.

mod common;

use std::time::Duration;

use common::ws::*;
use proptest::prelude::*;
use switchyard_core::sim::Sim;
use switchyard_core::websocket::{encode, Extensions, FrameParser, Opcode, Rules};
use switchyard_core::{CloseReason, Config, Input, Side};

/// A valid stream of frames `from` sends: control frames (never of 8 bytes, which would
/// look like the proxy's) between fragments of data messages, every message finished.
fn stream(from: Side, specs: &[(u8, usize, bool, u8)]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut in_message = false;
    for (i, &(kind, len, fin, fill)) in specs.iter().enumerate() {
        let key = [fill, 1, i as u8, 7];
        let (opcode, len, fin) = match kind {
            0 | 1 => {
                let len = match len % 126 {
                    8 => 9,
                    len => len,
                };
                ([Opcode::Ping, Opcode::Pong][usize::from(kind)], len, true)
            }
            _ if in_message => (Opcode::Continuation, len, fin),
            _ => (
                [Opcode::Text, Opcode::Binary][usize::from(kind % 2)],
                len,
                fin,
            ),
        };
        if !opcode.is_control() {
            in_message = !fin;
        }
        let payload: Vec<u8> = (0..len).map(|j| fill ^ j as u8).collect();
        bytes.extend_from_slice(&encode::frame(from.other(), fin, opcode, &payload, key));
    }
    if in_message {
        let last = encode::frame(from.other(), true, Opcode::Continuation, b"end", [9; 4]);
        bytes.extend_from_slice(&last);
    }
    bytes
}

fn specs() -> impl Strategy<Value = Vec<(u8, usize, bool, u8)>> {
    let size = prop_oneof![8 => 0..300usize, 1 => 60_000..70_000usize];
    proptest::collection::vec((0..6u8, size, any::<bool>(), any::<u8>()), 1..12)
}

/// What `to` received, checked to be whole, valid frames from `from` (a partial frame at
/// the end aside), with the proxy's own Pings (and stale answers to them) cut out.
fn received_without_proxy_frames(sim: &Sim, to: Side) -> Result<(Vec<u8>, usize), String> {
    let bytes = sim.tunnel_received(to);
    let rules = Rules {
        validate: true,
        extensions: Extensions::None,
    };
    let mut parser = FrameParser::new(to.other(), rules);
    let (frames, used) = parser
        .parse_all(bytes)
        .map_err(|v| format!("{to:?} received a broken frame: {v}"))?;
    let mut peers = Vec::new();
    for frame in frames {
        let own =
            matches!(frame.header.opcode, Opcode::Ping | Opcode::Pong) && frame.payload.len() == 8;
        if !own {
            let start = frame.payload.as_ptr() as usize - bytes.as_ptr() as usize;
            peers.extend_from_slice(&bytes[start - frame.header_len..start + frame.payload.len()]);
        }
    }
    Ok((peers, bytes.len() - used))
}

/// Where a stream from `from` to `to` is cut: `from`, `to` and each cut folded into that
/// range, in order, each once.
fn cut_points(cuts: &[usize], from: usize, to: usize) -> Vec<usize> {
    let mut points: Vec<usize> = cuts.iter().map(|c| from + c % (to - from + 1)).collect();
    points.extend([from, to]);
    points.sort_unstable();
    points.dedup();
    points
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// (a) Split anywhere, with pings falling due mid-frame, the other side receives the
    /// stream byte for byte; the proxy's Pings sit between frames (the receiver always
    /// parses whole, valid frames).
    #[test]
    fn a_valid_frame_stream_split_anywhere_reaches_the_other_side_byte_identical(
        from_client in any::<bool>(),
        specs in specs(),
        cuts in proptest::collection::vec(any::<usize>(), 0..24),
        delays in proptest::collection::vec(0u64..2500, 24),
    ) {
        let from = if from_client { Side::Client } else { Side::Upstream };
        let to = from.other();
        let mut sim = ws_tunnel(pinging(SEC, 10 * SEC));
        sim.answer_pings(Side::Client, true);
        sim.answer_pings(Side::Upstream, true);
        let bytes = stream(from, &specs);
        let points = cut_points(&cuts, 0, bytes.len());
        for (i, piece) in points.windows(2).enumerate() {
            sim.sends(from, &bytes[piece[0]..piece[1]]);
            prop_assert!(!sim.is_closed(), "closed with {:?}", sim.close_reason());
            let (peers, _) = received_without_proxy_frames(&sim, to).map_err(TestCaseError::fail)?;
            prop_assert_eq!(&peers[..], &bytes[..peers.len()], "a prefix, in order");
            sim.advance(Duration::from_millis(delays[i % delays.len()]));
        }
        let (peers, partial) = received_without_proxy_frames(&sim, to).map_err(TestCaseError::fail)?;
        prop_assert_eq!(partial, 0);
        prop_assert!(peers == bytes, "the whole stream, byte for byte");
    }

    /// (b) Frames of the proxy's own (Pings, Closes) are masked exactly when they go to
    /// the upstream, each with a key fed for it alone.
    #[test]
    fn injected_frames_are_masked_iff_they_go_upstream(
        schedule in proptest::collection::vec((0u8..4, 0u64..4000), 1..30),
        end in 0u8..3,
    ) {
        let mut sim = ws_tunnel(pinging(SEC, 3 * SEC));
        sim.answer_pings(Side::Upstream, true);
        for (action, delay) in schedule {
            if sim.is_closed() {
                break;
            }
            match action {
                0 => sim.client_sends_frame(Opcode::Text, b"c"),
                1 => sim.upstream_sends_frame(Opcode::Binary, b"u"),
                2 => sim.answer_pings(Side::Client, delay % 2 == 0),
                _ => {
                    // Keys are withheld for a while, then fed by hand.
                    sim.answer_masking_keys = !sim.answer_masking_keys;
                    if sim.answer_masking_keys {
                        let n = sim.masking_keys_fed.len() as u8;
                        sim.feed_masking_key([0xAA, n, delay as u8, 0x55]);
                    }
                }
            }
            sim.advance(Duration::from_millis(delay));
        }
        if !sim.is_closed() {
            match end {
                0 => sim.input(Input::Drain { grace: Duration::ZERO }).unwrap(),
                1 => sim.client_eof(),
                _ => sim.input(Input::WriteFailed { to: Side::Upstream }).unwrap(),
            }
            sim.advance(2 * SEC);
        }
        let to_upstream = sim.frames_received(Side::Upstream);
        let to_client = sim.frames_received(Side::Client);
        prop_assert!(to_upstream.iter().all(|f| f.header.mask.is_some()));
        prop_assert!(to_client.iter().all(|f| f.header.mask.is_none()));
        // The proxy's frames towards the upstream: its Pings and Closes.
        let own: Vec<[u8; 4]> = to_upstream
            .iter()
            .filter(|f| f.header.opcode == Opcode::Ping || f.header.opcode == Opcode::Close)
            .filter_map(|f| f.header.mask)
            .collect();
        let mut distinct = own.clone();
        distinct.sort_unstable();
        distinct.dedup();
        prop_assert_eq!(distinct.len(), own.len(), "a key used twice");
        prop_assert!(own.iter().all(|key| sim.masking_keys_fed.contains(key)));
    }

    /// (c) A peer that goes silent is declared dead exactly `ws_ping_interval +
    /// ws_ping_timeout` after its last byte, whatever the other side does meanwhile.
    #[test]
    fn a_silent_peer_is_dead_exactly_interval_plus_timeout_after_its_last_byte(
        silent_client in any::<bool>(),
        interval_ms in 1_000u64..30_000,
        timeout_ms in 1_000u64..30_000,
        last_byte_ms in 0u64..5_000,
        chatter in proptest::collection::vec(1u64..3_000, 0..20),
    ) {
        let silent = if silent_client { Side::Client } else { Side::Upstream };
        let interval = Duration::from_millis(interval_ms);
        let timeout = Duration::from_millis(timeout_ms);
        let mut sim = ws_tunnel(pinging(interval, timeout));
        sim.answer_pings(silent.other(), true);
        // Alive (answering the proxy's pings) until its last frame, silent after it.
        sim.answer_pings(silent, true);
        sim.advance(Duration::from_millis(last_byte_ms));
        sim.send_frame(silent, Opcode::Text, b"last");
        sim.answer_pings(silent, false);
        let dead_at = sim.now() + interval + timeout;
        for delay in chatter {
            let at = sim.now() + Duration::from_millis(delay);
            if at >= dead_at {
                break;
            }
            sim.advance(Duration::from_millis(delay));
            sim.send_frame(silent.other(), Opcode::Binary, b"alive");
        }
        let left = dead_at - sim.now();
        let reason = match silent {
            Side::Client => CloseReason::ClientUnresponsive,
            Side::Upstream => CloseReason::UpstreamUnresponsive,
        };
        sim.advance(left - MS);
        prop_assert!(!sim.is_closed(), "closed early: {:?}", sim.close_reason());
        sim.advance(MS);
        prop_assert_eq!(sim.close_reason(), Some(reason));
        prop_assert_eq!(last_frame(&sim, silent.other()).close_code(), Some(1001));
    }

    /// (d) A side breaks a rule while the other side is anywhere in a valid stream
    /// towards it: the rest of that stream, split anywhere and sent within the wait,
    /// reaches the offender byte for byte, followed by exactly one frame: the proxy's
    /// Close 1002, right after the other side's Close (never forwarded) or EOF, or exactly
    /// 1 s after the violation if it says nothing more.
    #[test]
    fn after_a_violation_the_other_sides_answers_reach_the_offender_before_its_1002(
        offender_client in any::<bool>(),
        specs in specs(),
        before in any::<usize>(),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        delays in proptest::collection::vec(0u64..70, 12),
        ending in 0u8..3,
    ) {
        let offender = if offender_client { Side::Client } else { Side::Upstream };
        let other = offender.other();
        let mut sim = ws_tunnel(Config::default());
        let answers = stream(other, &specs);
        let before = before % (answers.len() + 1);
        sim.sends(other, &answers[..before]);
        let mut write = sim.frame_from(offender, true, Opcode::Text, b"last").to_vec();
        let bad = encode::frame(offender, true, Opcode::Binary, b"bad", [1, 2, 3, 4]);
        write.extend_from_slice(&bad);
        sim.sends(offender, &write);
        let violated_at = sim.now();
        let to_other = sim.frames_received(other);
        prop_assert_eq!(to_other.len(), 2);
        prop_assert_eq!(to_other[1].close_code(), Some(1002));

        let points = cut_points(&cuts, before, answers.len());
        for (i, piece) in points.windows(2).enumerate() {
            sim.sends(other, &answers[piece[0]..piece[1]]);
            prop_assert!(!sim.is_closed(), "closed with {:?}", sim.close_reason());
            sim.advance(Duration::from_millis(delays[i]));
        }
        prop_assert_eq!(sim.tunnel_received(offender), &answers[..], "no Close yet");
        match ending {
            0 => sim.send_close(other, 1000, ""),
            1 if other == Side::Client => sim.client_eof(),
            1 => sim.upstream_eof(),
            _ => {
                sim.advance(violated_at + SEC - MS - sim.now());
                prop_assert_eq!(sim.tunnel_received(offender), &answers[..], "early");
                sim.advance(MS);
            }
        }
        let received = sim.tunnel_received(offender);
        prop_assert_eq!(&received[..answers.len()], &answers[..]);
        let mut parser = FrameParser::new(other, Rules { validate: true, extensions: Extensions::None });
        let (frames, used) = parser.parse_all(&received[answers.len()..]).map_err(|v| TestCaseError::fail(v.to_string()))?;
        prop_assert_eq!(used, received.len() - answers.len());
        prop_assert_eq!(frames.len(), 1, "one frame of the proxy's");
        prop_assert_eq!(frames[0].header.opcode, Opcode::Close);
        prop_assert_eq!(&frames[0].unmasked_payload()[..2], &1002u16.to_be_bytes());
        prop_assert_eq!(frames[0].header.mask.is_some(), offender == Side::Upstream);
        prop_assert_eq!(sim.close_reason(), Some(CloseReason::ProtocolError));
    }

    /// (e) A peer leaves without a Close at a frame boundary: the other side gets the
    /// proxy's Close 1001 and nothing else of the proxy's; what it still sends, split
    /// anywhere, reaches the one that left byte for byte, but not its Close (an answer to
    /// the proxy's). The tunnel ends as both_closed: at that Close when the client stayed
    /// (the proxy is its server and closes first, its half-close behind its Close), at
    /// the upstream's EOF otherwise (the proxy is the client there and never half-closes:
    /// the server closes first).
    #[test]
    fn after_a_peer_left_the_answer_to_the_proxys_close_stays_with_the_proxy(
        leaver_client in any::<bool>(),
        specs in specs(),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        delays in proptest::collection::vec(0u64..70, 12),
    ) {
        let leaver = if leaver_client { Side::Client } else { Side::Upstream };
        let stayer = leaver.other();
        let mut sim = ws_tunnel(Config::default());
        if leaver == Side::Client {
            sim.client_eof();
        } else {
            sim.upstream_eof();
        }
        let to_stayer = sim.frames_received(stayer);
        prop_assert_eq!(to_stayer.len(), 1);
        prop_assert_eq!(to_stayer[0].close_code(), Some(1001));

        let answers = stream(stayer, &specs);
        let points = cut_points(&cuts, 0, answers.len());
        for (i, piece) in points.windows(2).enumerate() {
            sim.sends(stayer, &answers[piece[0]..piece[1]]);
            prop_assert!(!sim.is_closed(), "closed with {:?}", sim.close_reason());
            sim.advance(Duration::from_millis(delays[i]));
        }
        sim.send_close(stayer, 1000, "");
        prop_assert_eq!(sim.tunnel_received(leaver), &answers[..], "all but the Close");
        prop_assert_eq!(sim.frames_received(stayer).len(), 1, "one Close of the proxy's");
        if stayer == Side::Upstream {
            prop_assert!(!sim.is_closed(), "closed before the upstream's EOF");
            // The server closes first (RFC 6455 §7.1.1): no FIN of the proxy's before.
            prop_assert!(!sim.upstreams[0].shut_down, "the proxy half-closed the upstream");
            sim.upstream_eof();
        } else {
            prop_assert!(sim.client_shut_down, "the proxy, the client's server, closes first");
        }
        prop_assert_eq!(sim.close_reason(), Some(CloseReason::BothClosed));
    }
}
