//! Frame-aware WebSocket tunnels, the driver's side of the contract (WS_SPEC.md): when a
//! tunnel is frame-aware, the passthrough budget, shown bytes, leftovers, masking keys,
//! and the byte tunnel left exactly as it was.

mod common;

use bytes::BytesMut;
use common::ws::*;
use common::*;
use switchyard_core::websocket::{encode, Opcode};
use switchyard_core::{Config, Event, Input, Misuse, Output, Side, StateKind};

#[test]
fn validate_off_and_pings_off_is_the_byte_tunnel_unchanged() {
    let mut sim = byte_sim();
    let mut request = ws_request("/").into_bytes();
    request.extend_from_slice(b"not a frame");
    sim.client_sends(&request);
    sim.upstream_sends(format!("{}\x00\x01", ws_101()).as_bytes());
    let start = sim.outputs.iter().find_map(|o| match o {
        Output::StartTunnel {
            client_leftover,
            upstream_leftover,
        } => Some((client_leftover.clone(), upstream_leftover.clone())),
        _ => None,
    });
    assert_eq!(
        start,
        Some((b"not a frame"[..].into(), b"\x00\x01"[..].into()))
    );
    assert!(!sim.outputs.contains(&Output::NeedMaskingKey));
    assert_eq!(sim.connection().tunnel_passthrough(Side::Client), u64::MAX);
    sim.client_sends(b"\xff\xff any bytes");
    assert!(sim.upstream_received().ends_with(b"\xff\xff any bytes"));
    let data = BytesMut::from(&b"x"[..]);
    assert_eq!(
        sim.input(Input::TunnelData {
            from: Side::Client,
            data
        }),
        Err(Misuse::Unexpected {
            state: StateKind::Tunnel,
            input: "TunnelData"
        })
    );
    assert!(matches!(
        sim.input(Input::MaskingKey([0; 4])),
        Err(Misuse::Unexpected { .. })
    ));
    sim.client_eof();
    sim.upstream_eof();
    assert_eq!(tunnel_record(&sim).websocket, None);
}

#[test]
fn validate_off_and_pings_on_follows_frames_without_validating_them() {
    let mut config = pinging(10 * SEC, 5 * SEC);
    config.routes[0].websocket.validate = false;
    let mut sim = ws_tunnel(config);
    sim.answer_pings(Side::Client, true);
    // An unmasked client frame breaks a rule nobody checks now.
    let unmasked = raw_frame(Side::Upstream, true, 0, Opcode::Text, b"unmasked");
    sim.client_sends(&unmasked);
    assert_eq!(sim.tunnel_received(Side::Upstream), &unmasked[..]);
    sim.advance(10 * SEC);
    let to_upstream = sim.frames_received(Side::Upstream);
    assert_eq!(opcodes(&to_upstream), [Opcode::Text, Opcode::Ping]);
    assert!(!sim.is_closed());
    assert!(!sim
        .events()
        .iter()
        .any(|e| matches!(e, Event::WebSocketViolation { .. })));
}

#[test]
fn other_protocols_are_byte_tunnels_whatever_the_websocket_policy() {
    let mut config = pinging(10 * SEC, 5 * SEC);
    config.routes[0].allow_upgrade.push("chat".into());
    let mut sim = sim_with(config);
    sim.client_sends(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: chat\r\n\r\n");
    sim.upstream_sends(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: chat\r\nConnection: upgrade\r\n\r\n",
    );
    assert_eq!(sim.state(), StateKind::Tunnel);
    assert_eq!(
        sim.connection().tunnel_passthrough(Side::Upstream),
        u64::MAX
    );
}

#[test]
fn tunnel_passthrough_is_the_rest_of_the_current_data_frame() {
    let mut sim = ws_tunnel(Config::default());
    let conn = |sim: &switchyard_core::sim::Sim, side| sim.connection().tunnel_passthrough(side);
    assert_eq!(conn(&sim, Side::Upstream), 0, "a header is next");
    let frame = encode::frame(Side::Client, true, Opcode::Binary, &[7; 1000], [0; 4]);
    // Shown: the header and 10 payload bytes.
    sim.input(Input::TunnelData {
        from: Side::Upstream,
        data: BytesMut::from(&frame[..14]),
    })
    .unwrap();
    assert_eq!(conn(&sim, Side::Upstream), 990);
    let too_many = Input::TunnelActivity {
        from: Side::Upstream,
        bytes: 991,
    };
    assert_eq!(
        sim.input(too_many),
        Err(Misuse::PassthroughExceeded {
            from: Side::Upstream,
            bytes: 991,
            budget: 990
        })
    );
    sim.input(Input::TunnelActivity {
        from: Side::Upstream,
        bytes: 990,
    })
    .unwrap();
    assert_eq!(
        conn(&sim, Side::Upstream),
        0,
        "the next header must be shown"
    );
    assert_eq!(sim.connection().tunnel_passthrough(Side::Client), 0);
    assert_eq!(
        sim_with(Config::default())
            .connection()
            .tunnel_passthrough(Side::Client),
        0
    );
}

#[test]
fn a_control_frame_is_shown_whole_before_any_of_it_is_forwarded() {
    let mut sim = ws_tunnel(Config::default());
    let ping = encode::ping(Side::Client, b"abc", [0; 4]).unwrap();
    sim.upstream_sends(&ping[..3]);
    assert!(sim.tunnel_received(Side::Client).is_empty(), "held");
    assert_eq!(sim.connection().tunnel_passthrough(Side::Upstream), 0);
    sim.upstream_sends(&ping[3..]);
    assert_eq!(sim.tunnel_received(Side::Client), &ping[..]);
}

#[test]
fn shown_bytes_are_forwarded_as_slices_of_the_read_buffer() {
    let mut sim = ws_tunnel(Config::default());
    let mut read = BytesMut::new();
    read.extend_from_slice(&encode::frame(
        Side::Client,
        true,
        Opcode::Text,
        b"one",
        [0; 4],
    ));
    read.extend_from_slice(&encode::frame(
        Side::Client,
        true,
        Opcode::Text,
        b"two",
        [0; 4],
    ));
    let start = read.as_ptr() as usize;
    let before = sim.outputs.len();
    sim.input(Input::TunnelData {
        from: Side::Upstream,
        data: read,
    })
    .unwrap();
    let written: Vec<_> = sim.outputs[before..]
        .iter()
        .filter_map(|o| match o {
            Output::ToClient(bytes) => Some(bytes.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(written.len(), 1, "both frames in one slice");
    assert_eq!(written[0].as_ptr() as usize, start, "no copy");
    assert_eq!(&written[0][..], b"\x81\x03one\x81\x03two");
}

#[test]
fn the_handshakes_leftovers_run_through_the_trackers_after_start_tunnel() {
    let mut sim = sim();
    let hello = encode::frame(Side::Upstream, true, Opcode::Text, b"hi", [1, 2, 3, 4]);
    let mut request = ws_request("/").into_bytes();
    request.extend_from_slice(&hello);
    sim.client_sends(&request);
    let welcome = encode::frame(Side::Client, true, Opcode::Text, b"yo", [0; 4]);
    let mut answer = ws_101().into_bytes();
    answer.extend_from_slice(&welcome);
    sim.upstream_sends(&answer);
    let start = sim
        .outputs
        .iter()
        .position(|o| matches!(o, Output::StartTunnel { .. }))
        .unwrap();
    assert_eq!(
        sim.outputs[start..start + 4],
        [
            Output::StartTunnel {
                client_leftover: Default::default(),
                upstream_leftover: Default::default(),
            },
            Output::NeedMaskingKey,
            Output::ToUpstream(hello.clone()),
            Output::ToClient(welcome.clone()),
        ]
    );
}

#[test]
fn tunnel_data_counts_as_a_read_like_tunnel_activity() {
    let mut config = Config::default();
    config.routes[0].timeouts.read = 10 * SEC;
    let mut sim = ws_tunnel(config);
    sim.advance(9 * SEC);
    sim.upstream_sends(&[0x81]);
    closes_exactly_after(
        &mut sim,
        10 * SEC,
        switchyard_core::CloseReason::ReadTimeout,
    );
}

#[test]
fn the_tunnel_record_counts_frames_and_messages_each_way() {
    let mut sim = ws_tunnel(Config::default());
    sim.send_fragment(Side::Client, Opcode::Text, b"a", false);
    sim.send_frame(Side::Client, Opcode::Ping, b"p");
    sim.send_fragment(Side::Client, Opcode::Continuation, b"b", true);
    sim.send_frame(Side::Upstream, Opcode::Binary, b"c");
    sim.send_close(Side::Upstream, 1000, "");
    sim.client_eof();
    sim.upstream_eof();
    let ws = tunnel_record(&sim).websocket.unwrap();
    assert_eq!(
        (ws.client.frames, ws.client.messages, ws.client.pings),
        (3, 1, 1)
    );
    assert_eq!((ws.upstream.frames, ws.upstream.messages), (2, 1));
    assert_eq!(
        (ws.client.close_code, ws.upstream.close_code),
        (None, Some(1000))
    );
}
