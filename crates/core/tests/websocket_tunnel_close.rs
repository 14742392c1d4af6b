//! Frame-aware WebSocket tunnels, how they end: the peers' Close frames pass through and
//! are recorded; a peer that leaves without one gets the other side a Close 1001 (1011
//! for a failed upstream); a drain sends Close 1001 both ways; nothing is forwarded
//! towards a side after the proxy's own Close.

mod common;

use common::ws::*;
use common::*;
use switchyard_core::websocket::Opcode;
use switchyard_core::{CloseReason, Config, Input, Output, Side};

#[test]
fn close_frames_pass_through_and_their_codes_are_recorded() {
    let mut sim = ws_tunnel(Config::default());
    sim.send_close(Side::Client, 1000, "done");
    sim.send_close(Side::Upstream, 4001, "ok");
    assert_eq!(last_frame(&sim, Side::Upstream).close_code(), Some(1000));
    assert_eq!(last_frame(&sim, Side::Upstream).close_reason(), "done");
    assert_eq!(last_frame(&sim, Side::Client).close_code(), Some(4001));
    sim.upstream_eof();
    sim.client_eof();
    let record = tunnel_record(&sim);
    assert_eq!(record.reason, CloseReason::BothClosed);
    let frames = record.websocket.unwrap();
    assert_eq!(frames.client.close_code, Some(1000));
    assert_eq!(frames.upstream.close_code, Some(4001));
    assert_eq!(
        (frames.client.close_frames, frames.upstream.close_frames),
        (1, 1)
    );
    // Both had closed properly: neither got a Close of the proxy's.
    assert_eq!(sim.frames_received(Side::Client).len(), 1);
    assert_eq!(sim.frames_received(Side::Upstream).len(), 1);
}

#[test]
fn an_eof_without_a_close_frame_gets_the_other_side_a_close_1001() {
    let mut sim = ws_tunnel(Config::default());
    sim.client_sends_frame(Opcode::Text, b"bye");
    sim.client_eof();
    let close = last_frame(&sim, Side::Upstream);
    assert_eq!(close.close_code(), Some(1001));
    assert_eq!(close.close_reason(), "client went away");
    // The upstream still talks until it closes too, at most 1 s after the Close.
    sim.upstream_sends_frame(Opcode::Text, b"late");
    assert_eq!(last_frame(&sim, Side::Client).payload, b"late");
    closes_exactly_after(&mut sim, SEC, CloseReason::ClientClosed);
    // Towards the upstream the proxy is the client: the server is to close first (RFC
    // 6455 §7.1.1), so no half-close follows the Close; the close comes at the end.
    let half_closed = sim.outputs.iter().any(|o| {
        *o == Output::HalfClose {
            side: Side::Upstream,
        }
    });
    assert!(!half_closed, "{:?}", sim.outputs);
}

#[test]
fn a_client_that_half_closed_before_the_101_gets_the_upstream_a_close_1001_and_no_fin() {
    let mut sim = sim();
    sim.client_sends(ws_request("/").as_bytes());
    sim.client_eof();
    sim.upstream_sends(ws_101().as_bytes());
    let frames = sim.frames_received(Side::Upstream);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].close_code(), Some(1001));
    // The server closes first; then the tunnel ends.
    assert!(!sim.upstreams[0].shut_down);
    assert!(!sim.is_closed());
    sim.upstream_eof();
    assert_eq!(sim.close_reason(), Some(CloseReason::BothClosed));
}

#[test]
fn the_client_gets_its_half_close_behind_the_close_for_an_upstream_that_left() {
    let mut sim = ws_tunnel(Config::default());
    sim.upstream_eof();
    // Towards the client the proxy is the server, which closes first.
    let close_at = sim
        .outputs
        .iter()
        .rposition(|o| matches!(o, Output::ToClient(_)));
    let shut_at = sim
        .outputs
        .iter()
        .position(|o| *o == Output::HalfClose { side: Side::Client });
    assert!(shut_at.is_some() && close_at < shut_at, "{:?}", sim.outputs);
}

#[test]
fn an_upstream_eof_without_a_close_frame_gets_the_client_a_close_1001() {
    let mut sim = ws_tunnel(Config::default());
    sim.upstream_eof();
    let close = last_frame(&sim, Side::Client);
    assert_eq!(close.close_code(), Some(1001));
    assert_eq!(close.close_reason(), "upstream went away");
    assert!(sim.client_shut_down);
    // The client answers the Close: both directions are over, and the proxy closes
    // without waiting for the client's EOF.
    sim.send_close(Side::Client, 1001, "");
    assert_eq!(sim.close_reason(), Some(CloseReason::BothClosed));
}

#[test]
fn the_answer_to_the_close_sent_for_a_client_that_left_is_not_forwarded() {
    let mut sim = ws_tunnel(Config::default());
    sim.client_eof();
    assert_eq!(last_frame(&sim, Side::Upstream).close_code(), Some(1001));
    // The upstream's data still reaches the half-closed client; its Close answers the
    // proxy's and stays with the proxy.
    sim.upstream_sends_frame(Opcode::Text, b"late");
    sim.send_close(Side::Upstream, 1001, "bye");
    assert_eq!(opcodes(&sim.frames_received(Side::Client)), [Opcode::Text]);
    assert!(
        !sim.is_closed(),
        "the proxy waits for the server to close first"
    );
    assert!(!sim.upstreams[0].shut_down);
    sim.upstream_eof();
    let record = tunnel_record(&sim);
    assert_eq!(record.reason, CloseReason::BothClosed);
    let frames = record.websocket.unwrap();
    assert_eq!(frames.upstream.close_code, Some(1001));
    assert_eq!(frames.upstream.close_frames, 1);
    assert_eq!(frames.client.close_code, None);
}

#[test]
fn the_answer_to_the_close_sent_for_an_upstream_that_left_is_not_forwarded() {
    let mut sim = ws_tunnel(Config::default());
    sim.upstream_eof();
    assert_eq!(last_frame(&sim, Side::Client).close_code(), Some(1001));
    let to_upstream = sim.upstream_received().len();
    sim.client_sends_frame(Opcode::Text, b"late");
    sim.send_close(Side::Client, 1000, "");
    // The data frame goes on to the half-closed upstream, the Close does not.
    let frames = sim.frames_received(Side::Upstream);
    assert_eq!(opcodes(&frames[frames.len() - 1..]), [Opcode::Text]);
    assert!(sim.upstream_received().len() > to_upstream);
    // The closing handshake with the client is complete: the proxy, its server, closes
    // first, without waiting for the client's EOF.
    let record = tunnel_record(&sim);
    assert_eq!(record.reason, CloseReason::BothClosed);
    assert_eq!(record.websocket.unwrap().client.close_code, Some(1000));
}

#[test]
fn after_the_upstream_left_the_clients_last_frames_are_written_before_the_close() {
    let mut sim = ws_tunnel(Config::default());
    sim.upstream_eof();
    sim.stall_writes(Side::Upstream);
    sim.client_sends_frame(Opcode::Text, b"late");
    sim.send_close(Side::Client, 1000, "");
    assert!(!sim.is_closed(), "closed with the client's frame unwritten");
    sim.resume_writes(Side::Upstream);
    assert_eq!(last_frame(&sim, Side::Upstream).payload, b"late");
    assert_eq!(sim.close_reason(), Some(CloseReason::BothClosed));
}

#[test]
fn a_client_whose_close_the_upstream_left_unanswered_gets_close_1001_and_the_end() {
    let mut sim = ws_tunnel(Config::default());
    sim.send_close(Side::Client, 1000, "done");
    assert_eq!(last_frame(&sim, Side::Upstream).close_code(), Some(1000));
    sim.upstream_eof();
    // The proxy answers in the upstream's place and, as the client's server, closes.
    assert_eq!(last_frame(&sim, Side::Client).close_code(), Some(1001));
    assert_eq!(sim.close_reason(), Some(CloseReason::BothClosed));
}

#[test]
fn an_eof_inside_a_frame_gets_no_close_frame() {
    let mut sim = ws_tunnel(Config::default());
    let frame = sim.frame_from(Side::Upstream, true, Opcode::Binary, &[5; 50]);
    sim.upstream_sends(&frame[..20]);
    sim.upstream_eof();
    // A Close now would be read as payload: the client gets the half-close alone.
    assert!(sim.client_shut_down);
    assert_eq!(sim.tunnel_received(Side::Client), &frame[..20]);
    assert!(!sim.is_closed());
}

#[test]
fn both_eofs_close_the_tunnel_after_the_close_owed_is_written() {
    let mut sim = ws_tunnel(Config::default());
    sim.client_eof();
    sim.upstream_eof();
    assert_eq!(last_frame(&sim, Side::Upstream).close_code(), Some(1001));
    assert_eq!(last_frame(&sim, Side::Client).close_code(), Some(1001));
    assert_eq!(sim.close_reason(), Some(CloseReason::BothClosed));
}

#[test]
fn a_failed_write_to_the_upstream_gets_the_client_a_close_1011() {
    let mut sim = ws_tunnel(Config::default());
    sim.client_sends_frame(Opcode::Text, b"lost");
    sim.input(Input::WriteFailed { to: Side::Upstream })
        .unwrap();
    let close = last_frame(&sim, Side::Client);
    assert_eq!(close.close_code(), Some(1011));
    assert_eq!(close.close_reason(), "upstream failed");
    assert_eq!(sim.close_reason(), Some(CloseReason::UpstreamClosed));
}

#[test]
fn a_failed_write_to_the_client_gets_the_upstream_a_close_1001() {
    let mut sim = ws_tunnel(Config::default());
    sim.input(Input::WriteFailed { to: Side::Client }).unwrap();
    let close = last_frame(&sim, Side::Upstream);
    assert_eq!(close.close_code(), Some(1001));
    assert_eq!(close.close_reason(), "client went away");
    assert_eq!(sim.close_reason(), Some(CloseReason::ClientClosed));
}

#[test]
fn a_failed_write_closes_within_a_second_when_the_close_cannot_be_flushed() {
    let mut sim = ws_tunnel(Config::default());
    sim.stall_writes(Side::Client);
    sim.upstream_sends_frame(Opcode::Text, b"never read");
    sim.input(Input::WriteFailed { to: Side::Upstream })
        .unwrap();
    closes_exactly_after(&mut sim, SEC, CloseReason::UpstreamClosed);
}

#[test]
fn drain_sends_close_1001_both_ways_then_closes_within_a_second() {
    let mut sim = ws_tunnel(Config::default());
    sim.input(Input::Drain { grace: 10 * SEC }).unwrap();
    sim.advance(10 * SEC - MS);
    assert!(sim.frames_received(Side::Client).is_empty());
    sim.advance(MS);
    for side in [Side::Client, Side::Upstream] {
        let close = last_frame(&sim, side);
        assert_eq!(close.close_code(), Some(1001), "towards {side:?}");
        assert_eq!(close.close_reason(), "proxy going away");
        assert_eq!(close.header.mask.is_some(), side == Side::Upstream);
    }
    // The peers never answer: closed 1 s later.
    closes_exactly_after(&mut sim, SEC, CloseReason::Shutdown);
}

#[test]
fn drain_closes_as_soon_as_both_peers_answered_with_their_close() {
    let mut sim = ws_tunnel(Config::default());
    sim.input(Input::Drain { grace: SEC }).unwrap();
    sim.advance(SEC);
    sim.send_close(Side::Client, 1001, "");
    assert!(!sim.is_closed());
    sim.send_close(Side::Upstream, 1001, "");
    assert_eq!(sim.close_reason(), Some(CloseReason::Shutdown));
    // Their answers went nowhere: each had the proxy's Close already.
    assert_eq!(sim.frames_received(Side::Client).len(), 1);
    assert_eq!(sim.frames_received(Side::Upstream).len(), 1);
}

#[test]
fn drain_waits_for_a_frame_in_flight_before_its_close() {
    let mut sim = ws_tunnel(Config::default());
    let frame = sim.frame_from(Side::Client, true, Opcode::Binary, &[1; 40]);
    sim.client_sends(&frame[..10]);
    sim.input(Input::Drain { grace: SEC }).unwrap();
    sim.advance(SEC);
    assert!(sim.frames_received(Side::Upstream).is_empty(), "mid-frame");
    assert_eq!(last_frame(&sim, Side::Client).close_code(), Some(1001));
    sim.advance(SEC / 2);
    sim.client_sends(&frame[10..]);
    let to_upstream = sim.frames_received(Side::Upstream);
    assert_eq!(opcodes(&to_upstream), [Opcode::Binary, Opcode::Close]);
}

#[test]
fn nothing_is_forwarded_towards_a_side_after_the_proxys_own_close() {
    let mut sim = ws_tunnel(Config::default());
    sim.input(Input::Drain { grace: SEC }).unwrap();
    sim.advance(SEC);
    let received = sim.tunnel_received(Side::Upstream).len();
    assert_eq!(sim.connection().tunnel_passthrough(Side::Client), 0);
    let big = sim.frame_from(Side::Client, true, Opcode::Binary, &[3; 5000]);
    sim.client_sends(&big);
    sim.client_sends_frame(Opcode::Text, b"after");
    assert_eq!(sim.tunnel_received(Side::Upstream).len(), received);
    assert_eq!(sim.connection().tunnel_passthrough(Side::Client), 0);
}

#[test]
fn a_violation_in_the_handshakes_leftover_closes_both_sides_with_1002() {
    let mut sim = sim();
    let mut request = ws_request("/").into_bytes();
    request.extend_from_slice(&raw_frame(
        Side::Upstream,
        true,
        0,
        Opcode::Text,
        b"no mask",
    ));
    sim.client_sends(&request);
    sim.upstream_sends(ws_101().as_bytes());
    assert_eq!(last_frame(&sim, Side::Upstream).close_code(), Some(1002));
    assert!(sim.frames_received(Side::Client).is_empty());
    sim.send_close(Side::Upstream, 1002, "");
    assert_eq!(last_frame(&sim, Side::Client).close_code(), Some(1002));
    assert_eq!(sim.close_reason(), Some(CloseReason::ProtocolError));
}
