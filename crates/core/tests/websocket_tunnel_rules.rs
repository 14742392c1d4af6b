//! Frame-aware WebSocket tunnels, the validation rules (issue 10; docs/DECISIONS.md
//! "WebSocket tunnels"): one test per rule, each a Close 1002 both ways (the offender's
//! after the other side's answers), the offending frame not forwarded, and an event
//! naming the rule.

mod common;

use common::ws::*;
use common::*;
use switchyard_core::sim::SimFrame;
use switchyard_core::websocket::{Opcode, RSV1};
use switchyard_core::{CloseReason, Config, Event, Side};

/// `from` sends a message, the frames of `prelude` (forwarded), then `bad`: the event
/// names `rule`, reading from `from` stops, nothing of `bad` is forwarded, and the other
/// side receives the message, the prelude's frames and Close 1002. `from` gets nothing
/// of the proxy's yet: the other side's echo still reaches it, then that side's Close is
/// absorbed and `from` receives Close 1002 instead; the tunnel closes with
/// `ProtocolError`.
fn breaks_rule(config: Config, from: Side, prelude: &[Vec<u8>], bad: &[u8], rule: &'static str) {
    let other = from.other();
    let mut sim = ws_tunnel(config);
    sim.send_frame(from, Opcode::Text, b"ok");
    for frame in prelude {
        sim.sends(from, frame);
    }
    sim.sends(from, bad);
    assert!(
        sim.events()
            .contains(&&Event::WebSocketViolation { side: from, rule }),
        "events: {:?}",
        sim.events()
    );
    assert!(!sim.connection().wants_read(from));
    let forwarded = sim.frames_received(other);
    assert_eq!(forwarded.len(), prelude.len() + 2, "{forwarded:?}");
    assert_eq!(forwarded[0].payload, b"ok");
    assert_eq!(
        sim.partial_frame_received(other),
        0,
        "nothing of it forwarded"
    );
    assert_proxy_close(&forwarded[forwarded.len() - 1], other);
    assert_eq!(sim.frames_received(from), [], "the offender's Close waits");

    sim.send_frame(other, Opcode::Text, b"ok");
    assert!(!sim.is_closed());
    sim.send_close(other, 1002, "");
    let received = sim.frames_received(from);
    assert_eq!(
        opcodes(&received),
        [Opcode::Text, Opcode::Close],
        "the echo first"
    );
    assert_proxy_close(&received[1], from);
    assert_eq!(sim.close_reason(), Some(CloseReason::ProtocolError));
    assert_eq!(tunnel_record(&sim).reason, CloseReason::ProtocolError);
}

/// A Close 1002 of the proxy's own towards `to`, masked iff `to` is the upstream.
fn assert_proxy_close(close: &SimFrame, to: Side) {
    assert_eq!(close.close_code(), Some(1002), "towards {to:?}");
    assert!(close.close_reason().contains("protocol error"), "{close:?}");
    assert_eq!(close.header.mask.is_some(), to == Side::Upstream);
}

fn rule(from: Side, bad: &[u8], rule: &'static str) {
    breaks_rule(Config::default(), from, &[], bad, rule);
}

#[test]
fn client_frames_must_be_masked() {
    let unmasked = raw_frame(Side::Upstream, true, 0, Opcode::Text, b"hi");
    rule(Side::Client, &unmasked, "client_frame_unmasked");
}

#[test]
fn upstream_frames_must_be_unmasked() {
    let masked = raw_frame(Side::Client, true, 0, Opcode::Text, b"hi");
    rule(Side::Upstream, &masked, "upstream_frame_masked");
}

#[test]
fn reserved_opcodes_are_a_protocol_error() {
    for from in [Side::Client, Side::Upstream] {
        for opcode in [0x3, 0xB] {
            let bad = raw_frame(from, true, 0, Opcode::Reserved(opcode), b"x");
            rule(from, &bad, "reserved_opcode");
        }
    }
}

#[test]
fn control_frames_over_125_bytes_are_a_protocol_error() {
    let bad = raw_frame(Side::Upstream, true, 0, Opcode::Ping, &[7; 126]);
    rule(Side::Upstream, &bad, "control_frame_too_long");
}

#[test]
fn fragmented_control_frames_are_a_protocol_error() {
    let bad = raw_frame(Side::Client, false, 0, Opcode::Ping, b"p");
    rule(Side::Client, &bad, "control_frame_fragmented");
}

#[test]
fn a_continuation_without_a_message_is_a_protocol_error() {
    let bad = raw_frame(Side::Client, true, 0, Opcode::Continuation, b"x");
    rule(Side::Client, &bad, "continuation_without_message");
}

#[test]
fn a_data_frame_inside_a_fragmented_message_is_a_protocol_error() {
    let first = raw_frame(Side::Upstream, false, 0, Opcode::Text, b"part");
    let bad = raw_frame(Side::Upstream, true, 0, Opcode::Binary, b"x");
    breaks_rule(
        Config::default(),
        Side::Upstream,
        &[first],
        &bad,
        "data_frame_inside_message",
    );
}

#[test]
fn rsv_bits_without_a_negotiated_extension_are_a_protocol_error() {
    let bad = raw_frame(Side::Client, true, RSV1, Opcode::Text, b"x");
    rule(Side::Client, &bad, "reserved_bits");
}

#[test]
fn a_64_bit_length_with_the_top_bit_set_is_a_protocol_error() {
    // Only the header's first three bytes are sent: the rule is known from them.
    rule(Side::Upstream, &[0x82, 127, 0x80], "length_top_bit_set");
}

#[test]
fn a_close_frame_with_a_one_byte_payload_is_a_protocol_error() {
    let bad = raw_frame(Side::Client, true, 0, Opcode::Close, &[3]);
    rule(Side::Client, &bad, "close_code_truncated");
}

#[test]
fn a_violation_split_across_reads_is_found_before_any_of_it_is_forwarded() {
    let mut sim = ws_tunnel(Config::default());
    // A masked Ping with a 16-bit length of 200: too long once its 8-byte header is
    // whole; until then its bytes are held, not forwarded.
    let bad = raw_frame(Side::Client, true, 0, Opcode::Ping, &[1; 200]);
    for (sent, byte) in bad.iter().enumerate() {
        if !sim.connection().wants_read(Side::Client) {
            assert_eq!(sent, 8, "refused at the header's last byte");
            break;
        }
        sim.client_sends(&[*byte]);
    }
    let to_upstream = sim.frames_received(Side::Upstream);
    assert_eq!(
        opcodes(&to_upstream),
        [Opcode::Close],
        "only the proxy's Close"
    );
    assert_eq!(last_frame(&sim, Side::Upstream).close_code(), Some(1002));
    // The upstream never answers: the client's Close comes when the wait is over.
    sim.advance(SEC);
    assert_eq!(last_frame(&sim, Side::Client).close_code(), Some(1002));
    assert_eq!(sim.close_reason(), Some(CloseReason::ProtocolError));
}

#[test]
fn permessage_deflate_in_the_101_permits_rsv1() {
    let answer = ws_101().replace(
        "\r\n\r\n",
        "\r\nSec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n\r\n",
    );
    let mut sim = ws_tunnel_with_101(Config::default(), &answer);
    let compressed = raw_frame(Side::Client, true, RSV1, Opcode::Text, b"\x01\x02");
    sim.client_sends(&compressed);
    let reply = raw_frame(Side::Upstream, true, RSV1, Opcode::Binary, b"\x03");
    sim.upstream_sends(&reply);
    assert_eq!(sim.tunnel_received(Side::Upstream), &compressed[..]);
    assert_eq!(sim.tunnel_received(Side::Client), &reply[..]);
    // RSV1 is deflate's on a message's first frame only: a Ping with it is refused.
    let ping = raw_frame(Side::Client, true, RSV1, Opcode::Ping, b"");
    sim.client_sends(&ping);
    assert!(sim.events().contains(&&Event::WebSocketViolation {
        side: Side::Client,
        rule: "reserved_bits"
    }));
}

#[test]
fn validation_is_on_by_default_for_websocket_tunnels() {
    assert!(Config::default().routes[0].websocket.validate);
    let sim = ws_tunnel(Config::default());
    assert_eq!(sim.connection().tunnel_passthrough(Side::Client), 0);
}
