//! Frame-aware WebSocket tunnels, the order of the Closes after a violation
//! (docs/DECISIONS.md "WebSocket tunnels", "A violation"): the side that broke a rule is
//! read no more and the other side gets Close 1002 at once; what that side still sends
//! (its answers to what it had been sent) reaches the offender, until its Close (absorbed),
//! its EOF or 1 s; then the offender gets Close 1002, and the tunnel closes once flushed.

mod common;

use common::ws::*;
use switchyard_core::sim::Sim;
use switchyard_core::websocket::Opcode;
use switchyard_core::{CloseReason, Config, Input, Output, Side};

/// A frame `from` may not send: masked from the upstream, unmasked from the client.
fn wrongly_masked(from: Side, payload: &[u8]) -> Vec<u8> {
    raw_frame(from.other(), true, 0, Opcode::Text, payload)
}

/// A frame-aware tunnel in which `from` sent a valid message and a broken frame in one
/// write (as Autobahn's cases do).
fn after_violation(from: Side) -> Sim {
    let mut sim = ws_tunnel(Config::default());
    let mut write = sim.frame_from(from, true, Opcode::Text, b"valid").to_vec();
    write.extend_from_slice(&wrongly_masked(from, b"broken"));
    sim.sends(from, &write);
    sim
}

/// The proxy's Close 1002 for a violation by `offender`, as `to` received it.
fn assert_proxy_1002(sim: &Sim, to: Side, offender: Side) {
    let close = last_frame(sim, to);
    assert_eq!(close.header.opcode, Opcode::Close, "towards {to:?}");
    assert_eq!(close.close_code(), Some(1002), "towards {to:?}");
    let who = match offender {
        Side::Client => "client",
        Side::Upstream => "upstream",
    };
    assert!(
        close
            .close_reason()
            .starts_with(&format!("protocol error by the {who}")),
        "{close:?}"
    );
    assert_eq!(close.header.mask.is_some(), to == Side::Upstream);
}

#[test]
fn the_other_sides_echo_reaches_the_offender_before_its_1002() {
    for from in [Side::Client, Side::Upstream] {
        let other = from.other();
        let mut sim = after_violation(from);
        let to_other = sim.frames_received(other);
        assert_eq!(
            opcodes(&to_other),
            [Opcode::Text, Opcode::Close],
            "{from:?}"
        );
        assert_eq!(to_other[0].payload, b"valid");
        assert_proxy_1002(&sim, other, from);
        assert!(
            sim.frames_received(from).is_empty(),
            "{from:?}: nothing yet"
        );
        assert!(!sim.connection().wants_read(from));
        assert!(sim.connection().wants_read(other), "its answers are read");

        sim.send_frame(other, Opcode::Text, b"valid");
        sim.send_frame(other, Opcode::Ping, b"still here");
        let to_offender = sim.frames_received(from);
        assert_eq!(opcodes(&to_offender), [Opcode::Text, Opcode::Ping]);
        assert_eq!(to_offender[0].payload, b"valid");
        assert!(!sim.is_closed());

        sim.send_close(other, 1002, "");
        assert_eq!(
            opcodes(&sim.frames_received(from)),
            [Opcode::Text, Opcode::Ping, Opcode::Close]
        );
        assert_proxy_1002(&sim, from, from);
        assert_eq!(sim.close_reason(), Some(CloseReason::ProtocolError));
    }
}

#[test]
fn an_offender_whose_peer_never_answers_gets_its_1002_exactly_one_second_later() {
    for from in [Side::Client, Side::Upstream] {
        let mut sim = after_violation(from);
        sim.advance(SEC - MS);
        assert!(sim.frames_received(from).is_empty(), "{from:?}: early");
        assert!(!sim.is_closed());
        sim.advance(MS);
        assert_eq!(opcodes(&sim.frames_received(from)), [Opcode::Close]);
        assert_proxy_1002(&sim, from, from);
        // Flushed at once in the simulation: the tunnel closes with it.
        assert_eq!(sim.close_reason(), Some(CloseReason::ProtocolError));
    }
}

#[test]
fn the_other_sides_close_is_absorbed_and_the_offender_gets_1002_right_after() {
    let mut sim = after_violation(Side::Client);
    sim.advance(SEC / 2);
    sim.send_close(Side::Upstream, 1000, "bye");
    let to_client = sim.frames_received(Side::Client);
    assert_eq!(
        opcodes(&to_client),
        [Opcode::Close],
        "one Close, the proxy's"
    );
    assert_proxy_1002(&sim, Side::Client, Side::Client);
    assert_eq!(sim.close_reason(), Some(CloseReason::ProtocolError));
    let record = tunnel_record(&sim);
    assert_eq!(record.reason, CloseReason::ProtocolError);
    let ws = record.websocket.expect("frame-aware");
    assert_eq!(
        ws.upstream.close_code,
        Some(1000),
        "the upstream's own code"
    );
    assert_eq!(ws.client.close_code, None);
}

#[test]
fn the_other_sides_eof_ends_the_wait_with_1002_not_1001() {
    let mut sim = after_violation(Side::Client);
    sim.send_frame(Side::Upstream, Opcode::Binary, b"last words");
    sim.upstream_eof();
    assert_eq!(
        opcodes(&sim.frames_received(Side::Client)),
        [Opcode::Binary, Opcode::Close]
    );
    assert_proxy_1002(&sim, Side::Client, Side::Client);
    let close_at = sim
        .outputs
        .iter()
        .rposition(|o| matches!(o, Output::ToClient(_)))
        .unwrap();
    let half_close_at = sim
        .outputs
        .iter()
        .position(|o| matches!(o, Output::HalfClose { side: Side::Client }))
        .expect("a half-close towards the client");
    assert!(half_close_at > close_at, "after the Close");
    assert_eq!(sim.close_reason(), Some(CloseReason::ProtocolError));
}

#[test]
fn a_frame_in_flight_towards_the_offender_finishes_before_its_1002() {
    let mut sim = ws_tunnel(Config::default());
    let frame = sim.frame_from(Side::Upstream, true, Opcode::Binary, &[5; 40_000]);
    sim.upstream_sends(&frame[..1000]);
    sim.client_sends(&wrongly_masked(Side::Client, b"x"));
    assert_proxy_1002(&sim, Side::Upstream, Side::Client);
    // The payload still passes by the core.
    assert!(sim.connection().tunnel_passthrough(Side::Upstream) > 0);
    sim.upstream_sends(&frame[1000..]);
    sim.send_close(Side::Upstream, 1002, "");
    let to_client = sim.frames_received(Side::Client);
    assert_eq!(opcodes(&to_client), [Opcode::Binary, Opcode::Close]);
    assert_eq!(to_client[0].payload.len(), 40_000);
    assert_eq!(sim.close_reason(), Some(CloseReason::ProtocolError));
}

#[test]
fn an_answer_that_never_ends_is_cut_one_second_after_the_wait() {
    let mut sim = ws_tunnel(Config::default());
    let frame = sim.frame_from(Side::Upstream, true, Opcode::Binary, &[5; 40_000]);
    sim.upstream_sends(&frame[..1000]);
    sim.client_sends(&wrongly_masked(Side::Client, b"x"));
    // At 1 s the client is owed its Close, which cannot go inside the frame; at 2 s
    // the tunnel closes without it.
    closes_exactly_after(&mut sim, 2 * SEC, CloseReason::ProtocolError);
    assert!(sim.frames_received(Side::Client).is_empty());
}

#[test]
fn a_drain_during_the_wait_gives_the_offender_1002() {
    let mut sim = after_violation(Side::Upstream);
    sim.input(Input::Drain { grace: SEC / 10 }).unwrap();
    sim.advance(SEC / 10);
    assert_eq!(
        opcodes(&sim.frames_received(Side::Upstream)),
        [Opcode::Close]
    );
    assert_proxy_1002(&sim, Side::Upstream, Side::Upstream);
    let to_client = sim.frames_received(Side::Client);
    assert_eq!(opcodes(&to_client), [Opcode::Text, Opcode::Close]);
    assert_proxy_1002(&sim, Side::Client, Side::Upstream);
    assert_eq!(sim.close_reason(), Some(CloseReason::ProtocolError));
}

#[test]
fn a_failed_write_to_the_other_side_ends_the_wait() {
    let mut sim = after_violation(Side::Client);
    sim.input(Input::WriteFailed { to: Side::Upstream })
        .unwrap();
    assert_eq!(opcodes(&sim.frames_received(Side::Client)), [Opcode::Close]);
    assert_proxy_1002(&sim, Side::Client, Side::Client);
    assert_eq!(sim.close_reason(), Some(CloseReason::ProtocolError));
}

#[test]
fn when_the_other_side_closed_first_the_offender_has_its_close_already() {
    let mut sim = ws_tunnel(Config::default());
    sim.send_close(Side::Upstream, 1000, "done");
    sim.client_sends(&wrongly_masked(Side::Client, b"x"));
    let to_client = sim.frames_received(Side::Client);
    assert_eq!(opcodes(&to_client), [Opcode::Close]);
    assert_eq!(to_client[0].close_code(), Some(1000), "the upstream's own");
    assert_proxy_1002(&sim, Side::Upstream, Side::Client);
    // Nothing is awaited: the tunnel closes once the upstream's 1002 is flushed.
    assert_eq!(sim.close_reason(), Some(CloseReason::ProtocolError));
}

#[test]
fn a_violation_by_the_other_side_too_ends_the_wait() {
    let mut sim = after_violation(Side::Client);
    sim.upstream_sends(&wrongly_masked(Side::Upstream, b"y"));
    assert_eq!(opcodes(&sim.frames_received(Side::Client)), [Opcode::Close]);
    assert_proxy_1002(&sim, Side::Client, Side::Client);
    assert_eq!(
        opcodes(&sim.frames_received(Side::Upstream)),
        [Opcode::Text, Opcode::Close],
        "one Close each"
    );
    assert_eq!(sim.close_reason(), Some(CloseReason::ProtocolError));
}

#[test]
fn the_other_side_found_dead_by_its_ping_timeout_ends_the_wait_with_1002() {
    let mut sim = ws_tunnel(pinging(SEC, SEC / 2));
    sim.answer_pings(Side::Client, true);
    // 1 s: the proxy pings the silent upstream; 1.2 s: the client breaks a rule.
    sim.advance(SEC);
    assert_eq!(proxy_pings(&sim.frames_received(Side::Upstream)).len(), 1);
    sim.advance(SEC / 5);
    sim.client_sends(&wrongly_masked(Side::Client, b"x"));
    assert!(sim
        .frames_received(Side::Client)
        .iter()
        .all(|f| f.header.opcode != Opcode::Close));
    // 1.5 s: the upstream's ping timeout, well within the 1 s wait.
    sim.advance(SEC * 3 / 10 - MS);
    assert!(!sim.is_closed());
    sim.advance(MS);
    assert_proxy_1002(&sim, Side::Client, Side::Client);
    assert_eq!(sim.close_reason(), Some(CloseReason::ProtocolError));
}
