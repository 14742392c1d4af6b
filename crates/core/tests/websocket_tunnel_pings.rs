//! Frame-aware WebSocket tunnels, pings and dead peers, on the virtual clock: the proxy
//! pings a silent side, absorbs the Pong that answers it, lets every other Ping and Pong
//! through, declares a side dead `ws_ping_timeout` after an unanswered Ping, and writes
//! its frames only at frame boundaries.

mod common;

use common::ws::*;
use switchyard_core::websocket::Opcode;
use switchyard_core::{CloseReason, Config, Side};

#[test]
fn a_ping_is_sent_to_a_side_silent_for_the_interval() {
    let mut sim = ws_tunnel(pinging(30 * SEC, 10 * SEC));
    sim.advance(10 * SEC);
    sim.client_sends_frame(Opcode::Text, b"still here");
    sim.advance(30 * SEC - MS);
    // The upstream has been silent for 40 s less 1 ms, the client for 30 s less 1 ms.
    assert_eq!(proxy_pings(&sim.frames_received(Side::Upstream)).len(), 1);
    assert_eq!(proxy_pings(&sim.frames_received(Side::Client)).len(), 0);
    sim.advance(MS);
    let to_client = sim.frames_received(Side::Client);
    let pings = proxy_pings(&to_client);
    assert_eq!(pings.len(), 1, "30 s after the client's last frame");
    assert_eq!(pings[0].header.mask, None, "unmasked towards the client");
    let to_upstream = sim.frames_received(Side::Upstream);
    let upstream_ping = proxy_pings(&to_upstream)[0];
    assert!(
        upstream_ping.header.mask.is_some(),
        "masked towards the upstream"
    );
    assert_ne!(
        upstream_ping.payload, pings[0].payload,
        "a payload unique per ping"
    );
}

#[test]
fn a_pong_answering_the_proxys_ping_is_absorbed_and_its_round_trip_recorded() {
    let mut sim = ws_tunnel(pinging(30 * SEC, 10 * SEC));
    sim.client_sends_frame(Opcode::Text, b"a");
    sim.advance(30 * SEC);
    let to_upstream = sim.frames_received(Side::Upstream);
    let ping = proxy_pings(&to_upstream)[0].payload.clone();
    sim.advance(2 * SEC);
    sim.upstream_sends_frame(Opcode::Pong, &ping);
    sim.advance(SEC);
    sim.upstream_sends_frame(Opcode::Text, b"b");
    let to_client: Vec<_> = sim
        .frames_received(Side::Client)
        .into_iter()
        .filter(|f| f.header.opcode != Opcode::Ping)
        .collect();
    assert_eq!(
        opcodes(&to_client),
        [Opcode::Text],
        "the Pong is not forwarded"
    );
    sim.client_eof();
    sim.upstream_eof();
    let record = tunnel_record(&sim).websocket.expect("a frame-aware record");
    assert_eq!(record.pongs_received, 1);
    assert_eq!(record.pings_sent, 2, "one each way");
    assert_eq!(record.last_ping_rtt, Some(2 * SEC));
    assert_eq!(record.min_ping_rtt, Some(2 * SEC));
    assert_eq!(
        record.upstream.pongs, 1,
        "counted as the upstream's frame all the same"
    );
}

#[test]
fn other_pings_and_pongs_pass_through_untouched() {
    let mut sim = ws_tunnel(pinging(30 * SEC, 10 * SEC));
    sim.advance(30 * SEC);
    // A Ping of the proxy's is outstanding towards each side; these are not its answers.
    sim.client_sends_frame(Opcode::Ping, b"client's own");
    sim.upstream_sends_frame(Opcode::Pong, b"client's own");
    sim.upstream_sends_frame(Opcode::Pong, b"unsolicited");
    sim.client_sends_frame(Opcode::Pong, b"");
    let to_upstream = sim.frames_received(Side::Upstream);
    let forwarded: Vec<_> = to_upstream
        .iter()
        .filter(|f| f.payload.len() != 8)
        .collect();
    assert_eq!(forwarded.len(), 2);
    assert_eq!(
        (forwarded[0].header.opcode, &forwarded[0].payload[..]),
        (Opcode::Ping, &b"client's own"[..])
    );
    assert_eq!(forwarded[1].header.opcode, Opcode::Pong);
    let to_client = sim.frames_received(Side::Client);
    let pongs: Vec<_> = to_client
        .iter()
        .filter(|f| f.header.opcode == Opcode::Pong)
        .map(|f| f.payload.clone())
        .collect();
    assert_eq!(pongs, [b"client's own".to_vec(), b"unsolicited".to_vec()]);
}

#[test]
fn a_dead_client_gets_the_upstream_a_close_1001_and_client_unresponsive() {
    let mut sim = ws_tunnel(pinging(30 * SEC, 10 * SEC));
    sim.answer_pings(Side::Upstream, true);
    sim.client_sends_frame(Opcode::Text, b"last words");
    closes_exactly_after(&mut sim, 40 * SEC, CloseReason::ClientUnresponsive);
    let close = last_frame(&sim, Side::Upstream);
    assert_eq!(close.close_code(), Some(1001));
    assert_eq!(close.close_reason(), "client stopped answering");
    assert!(close.header.mask.is_some());
    assert_eq!(last_frame(&sim, Side::Client).header.opcode, Opcode::Ping);
    assert_eq!(tunnel_record(&sim).reason, CloseReason::ClientUnresponsive);
}

#[test]
fn a_dead_upstream_gets_the_client_a_close_1001_and_upstream_unresponsive() {
    let mut sim = ws_tunnel(pinging(20 * SEC, 5 * SEC));
    sim.answer_pings(Side::Client, true);
    sim.advance(3 * SEC);
    sim.upstream_sends_frame(Opcode::Binary, b"\x00");
    closes_exactly_after(&mut sim, 25 * SEC, CloseReason::UpstreamUnresponsive);
    let close = last_frame(&sim, Side::Client);
    assert_eq!(close.close_code(), Some(1001));
    assert_eq!(close.close_reason(), "upstream stopped answering");
    assert_eq!(close.header.mask, None);
}

#[test]
fn any_byte_from_a_pinged_side_ends_the_wait() {
    let mut sim = ws_tunnel(pinging(30 * SEC, 10 * SEC));
    sim.answer_pings(Side::Upstream, true);
    sim.advance(39 * SEC);
    // One byte of a frame, not a Pong: the client is alive.
    sim.client_sends(&[0x81]);
    sim.advance(20 * SEC);
    assert!(!sim.is_closed(), "{:?}", sim.close_reason());
    // The next Ping falls due 30 s after that byte and goes out when the frame is done.
    sim.advance(10 * SEC);
    assert_eq!(proxy_pings(&sim.frames_received(Side::Client)).len(), 2);
}

#[test]
fn a_peer_trickling_one_large_frame_while_a_ping_is_due_is_not_declared_dead_and_the_ping_waits_for_the_boundary(
) {
    let mut sim = ws_tunnel(pinging(10 * SEC, 5 * SEC));
    sim.answer_pings(Side::Client, true);
    let frame = sim.frame_from(Side::Client, true, Opcode::Binary, &[9; 60]);
    // One byte a second: the frame takes 66 s, far past the interval and the timeout.
    let (last, rest) = frame.split_last().unwrap();
    for byte in rest {
        sim.client_sends(&[*byte]);
        sim.advance(SEC);
        assert!(!sim.is_closed(), "closed with {:?}", sim.close_reason());
        assert!(proxy_pings(&sim.frames_received(Side::Upstream)).is_empty());
    }
    sim.client_sends(&[*last]);
    // The silent upstream gets its Ping only now, right after the frame.
    let to_upstream = sim.frames_received(Side::Upstream);
    assert_eq!(opcodes(&to_upstream), [Opcode::Binary, Opcode::Ping]);
    assert_eq!(
        sim.tunnel_received(Side::Upstream)[..frame.len()],
        frame[..]
    );
    // Its timeout runs from the Ping: the upstream is dead 5 s after it was sent.
    closes_exactly_after(&mut sim, 5 * SEC, CloseReason::UpstreamUnresponsive);
}

#[test]
fn the_proxy_pings_between_the_fragments_of_a_message() {
    let mut sim = ws_tunnel(pinging(10 * SEC, 5 * SEC));
    sim.answer_pings(Side::Client, true);
    sim.answer_pings(Side::Upstream, true);
    sim.send_fragment(Side::Client, Opcode::Text, b"first ", false);
    sim.advance(10 * SEC);
    sim.send_fragment(Side::Client, Opcode::Continuation, b"last", true);
    let to_upstream = sim.frames_received(Side::Upstream);
    assert_eq!(
        opcodes(&to_upstream),
        [Opcode::Text, Opcode::Ping, Opcode::Continuation]
    );
    assert!(!to_upstream[0].header.fin && to_upstream[2].header.fin);
    assert!(!sim.is_closed());
}

#[test]
fn a_ping_waits_until_writes_towards_its_side_are_flushed() {
    let mut sim = ws_tunnel(pinging(10 * SEC, 5 * SEC));
    sim.answer_pings(Side::Client, true);
    sim.stall_writes(Side::Upstream);
    sim.client_sends_frame(Opcode::Text, b"queued");
    sim.advance(12 * SEC);
    assert!(proxy_pings(&sim.frames_received(Side::Upstream)).is_empty());
    sim.advance(3 * SEC);
    sim.resume_writes(Side::Upstream);
    assert_eq!(proxy_pings(&sim.frames_received(Side::Upstream)).len(), 1);
}

#[test]
fn a_frame_towards_the_upstream_waits_for_a_masking_key_and_each_key_is_used_once() {
    let mut sim = ws_tunnel(pinging(10 * SEC, 50 * SEC));
    sim.answer_masking_keys = false;
    let asked = |sim: &switchyard_core::sim::Sim| {
        sim.outputs
            .iter()
            .filter(|o| **o == switchyard_core::Output::NeedMaskingKey)
            .count()
    };
    let fed_at_start = sim.masking_keys_fed.len();
    assert_eq!(
        (asked(&sim), fed_at_start),
        (1, 1),
        "asked right after StartTunnel"
    );
    sim.advance(10 * SEC);
    // The key fed at the start paid for this Ping; the next one has no key yet.
    assert_eq!(proxy_pings(&sim.frames_received(Side::Upstream)).len(), 1);
    assert_eq!(asked(&sim), 2);
    sim.client_sends_frame(Opcode::Text, b"x");
    sim.upstream_sends_frame(Opcode::Text, b"y");
    sim.advance(20 * SEC);
    assert_eq!(
        proxy_pings(&sim.frames_received(Side::Upstream)).len(),
        1,
        "no key"
    );
    sim.feed_masking_key([1, 2, 3, 4]);
    let to_upstream = sim.frames_received(Side::Upstream);
    let pings = proxy_pings(&to_upstream);
    assert_eq!(pings.len(), 2);
    assert_eq!(pings[1].header.mask, Some([1, 2, 3, 4]));
    assert_eq!(pings[0].header.mask, Some(sim.masking_keys_fed[0]));
    assert_eq!(asked(&sim), 3, "asked again after each use");
}

#[test]
fn absorbed_pongs_do_not_reset_the_tunnel_idle_timeout() {
    let mut config = pinging(10 * SEC, 5 * SEC);
    config.routes[0].timeouts.tunnel_idle = Some(35 * SEC);
    let mut sim = ws_tunnel(config);
    sim.answer_pings(Side::Client, true);
    sim.answer_pings(Side::Upstream, true);
    sim.client_sends_frame(Opcode::Text, b"the last real frame");
    // Pings go out and are answered every 10 s; only the peers' own frames count.
    closes_exactly_after(&mut sim, 35 * SEC, CloseReason::TunnelIdleTimeout);
    let record = tunnel_record(&sim).websocket.unwrap();
    assert!(record.pongs_received >= 4, "{record:?}");
}

#[test]
fn with_pings_on_read_timeout_still_ends_a_tunnel_whose_upstream_answers_nothing() {
    let mut config = pinging(100 * SEC, 50 * SEC);
    config.routes[0].timeouts.read = 60 * SEC;
    let mut sim = ws_tunnel(config);
    closes_exactly_after(&mut sim, 60 * SEC, CloseReason::ReadTimeout);
}

#[test]
fn a_live_peers_pongs_keep_a_quiet_tunnel_open_past_read_timeout() {
    let mut config = pinging(20 * SEC, 10 * SEC);
    config.routes[0].timeouts.read = 60 * SEC;
    let mut sim = ws_tunnel(config);
    sim.answer_pings(Side::Client, true);
    sim.answer_pings(Side::Upstream, true);
    sim.advance(600 * SEC);
    assert!(!sim.is_closed(), "{:?}", sim.close_reason());
    let record_pings = proxy_pings(&sim.frames_received(Side::Upstream)).len();
    assert_eq!(record_pings, 30);
}

#[test]
fn no_pings_once_a_close_frame_was_seen() {
    let mut sim = ws_tunnel(pinging(10 * SEC, 5 * SEC));
    sim.send_close(Side::Client, 1000, "bye");
    sim.advance(30 * SEC);
    assert!(proxy_pings(&sim.frames_received(Side::Upstream)).is_empty());
    assert!(proxy_pings(&sim.frames_received(Side::Client)).is_empty());
    assert!(!sim.is_closed());
    let _ = Config::default();
}
