//! Helpers for the frame-aware WebSocket tunnel tests.

use std::time::Duration;

use switchyard_core::sim::{Sim, SimFrame};
use switchyard_core::websocket::{encode, FrameHeader, Opcode};
use switchyard_core::{CloseReason, Config, Event, Output, Side, StateKind};

use super::{sim_with, ws_101, ws_request};

pub const SEC: Duration = Duration::from_secs(1);
pub const MS: Duration = Duration::from_millis(1);

/// A frame-aware tunnel on `config` (after the handshake, with nothing sent yet).
pub fn ws_tunnel(config: Config) -> Sim {
    ws_tunnel_with_101(config, &ws_101())
}

/// A frame-aware tunnel opened by the `101` `answer`.
pub fn ws_tunnel_with_101(config: Config, answer: &str) -> Sim {
    let mut sim = sim_with(config);
    sim.client_sends(ws_request("/").as_bytes());
    sim.upstream_sends(answer.as_bytes());
    assert_eq!(sim.state(), StateKind::Tunnel);
    assert!(
        sim.outputs.contains(&Output::NeedMaskingKey),
        "a frame-aware tunnel asks for a masking key"
    );
    sim
}

/// The default route (validation on), with pings every `interval`, dead `timeout` after.
pub fn pinging(interval: Duration, timeout: Duration) -> Config {
    let mut config = Config::default();
    config.routes[0].websocket.ping_interval = Some(interval);
    config.routes[0].websocket.ping_timeout = timeout;
    // Long enough never to be what ends these tunnels.
    config.routes[0].timeouts.read = 1000 * SEC;
    config
}

/// A frame `from` sends, with `header` as given (masked iff it has a key): for frames
/// that break rules on purpose.
pub fn raw_frame(from: Side, fin: bool, rsv: u8, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader {
        fin,
        rsv,
        opcode,
        mask: (from == Side::Client).then_some([0x11, 0x22, 0x33, 0x44]),
        payload_len: payload.len() as u64,
    };
    encode::frame_with_header(&header, payload).to_vec()
}

/// The opcodes of `frames`.
pub fn opcodes(frames: &[SimFrame]) -> Vec<Opcode> {
    frames.iter().map(|f| f.header.opcode).collect()
}

/// The proxy's own Pings among `frames` (8-byte payloads; the tests' own never are).
pub fn proxy_pings(frames: &[SimFrame]) -> Vec<&SimFrame> {
    frames
        .iter()
        .filter(|f| f.header.opcode == Opcode::Ping && f.payload.len() == 8)
        .collect()
}

/// The last frame `side` received.
pub fn last_frame(sim: &Sim, side: Side) -> SimFrame {
    sim.frames_received(side)
        .pop()
        .unwrap_or_else(|| panic!("{side:?} received no frame"))
}

/// The tunnel's access-log record, once it closed.
pub fn tunnel_record(sim: &Sim) -> switchyard_core::TunnelRecord {
    sim.events()
        .into_iter()
        .find_map(|e| match e {
            Event::TunnelClosed(record) => Some(switchyard_core::TunnelRecord::clone(record)),
            _ => None,
        })
        .expect("a tunnel record")
}

/// Checks the connection is open 1 ms before `after` from now and closed with `reason`
/// at `after` exactly.
pub fn closes_exactly_after(sim: &mut Sim, after: Duration, reason: CloseReason) {
    sim.advance(after - MS);
    assert!(
        !sim.is_closed(),
        "closed before {after:?}: {:?}",
        sim.close_reason()
    );
    sim.advance(MS);
    assert!(sim.is_closed(), "still open after {after:?}");
    assert_eq!(sim.close_reason(), Some(reason));
}
