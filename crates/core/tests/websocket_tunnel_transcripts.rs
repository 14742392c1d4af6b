//! Transcript tests of frame-aware WebSocket tunnels: the exact sequence of outputs from
//! the tunnel's start, frames written as what a peer would read.

mod common;

use common::ws::*;
use switchyard_core::sim::Sim;
use switchyard_core::websocket::{Extensions, FrameParser, Opcode, Rules};
use switchyard_core::{Config, Event, Input, Output, Side};

/// The frames in `bytes` (written towards `to`), or the bytes if they are not whole frames.
fn frames(bytes: &[u8], to: Side) -> String {
    let rules = Rules {
        validate: true,
        extensions: Extensions::None,
    };
    let mut parser = FrameParser::new(to.other(), rules);
    match parser.parse_all(bytes) {
        Ok((frames, used)) if used == bytes.len() => frames
            .iter()
            .map(|f| {
                let payload = f.unmasked_payload();
                let shown = match f.header.opcode {
                    Opcode::Close => format!(
                        "{} {:?}",
                        u16::from_be_bytes([payload[0], payload[1]]),
                        String::from_utf8_lossy(&payload[2..])
                    ),
                    Opcode::Ping | Opcode::Pong if payload.len() == 8 => {
                        format!("#{}", u64::from_be_bytes(payload.try_into().unwrap()))
                    }
                    _ => format!("{:?}", String::from_utf8_lossy(&payload)),
                };
                let masked = if f.header.mask.is_some() {
                    " masked"
                } else {
                    ""
                };
                format!("{:?}({shown}){masked}", f.header.opcode)
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => format!("bytes {bytes:?}"),
    }
}

fn line(output: &Output) -> String {
    match output {
        Output::ToClient(b) => format!("client <- {}", frames(b, Side::Client)),
        Output::ToUpstream(b) => format!("upstream <- {}", frames(b, Side::Upstream)),
        Output::NeedMaskingKey => "need-masking-key".into(),
        Output::HalfClose { side } => format!("half-close {side:?}"),
        Output::ReleaseUpstream { reusable } => format!("release reusable={reusable}"),
        Output::Close => "close".into(),
        Output::Event(Event::WebSocketViolation { side, rule }) => {
            format!("event violation {side:?} {rule}")
        }
        Output::Event(Event::TunnelClosed(record)) => {
            format!("event tunnel-closed {:?}", record.reason)
        }
        Output::Event(Event::Closed { reason }) => format!("event closed {reason:?}"),
        other => format!("{other:?}"),
    }
}

/// Every output since the tunnel started.
fn transcript(sim: &Sim) -> Vec<String> {
    let start = sim
        .outputs
        .iter()
        .position(|o| matches!(o, Output::StartTunnel { .. }))
        .expect("a tunnel");
    sim.outputs[start + 2..].iter().map(line).collect()
}

#[test]
fn transcript_a_ping_injected_between_two_frames() {
    let mut sim = ws_tunnel(pinging(30 * SEC, 10 * SEC));
    sim.answer_pings(Side::Client, true);
    sim.answer_pings(Side::Upstream, true);
    sim.advance(20 * SEC);
    sim.client_sends_frame(Opcode::Text, b"one");
    sim.advance(15 * SEC);
    sim.client_sends_frame(Opcode::Text, b"two");
    assert_eq!(
        transcript(&sim),
        [
            "upstream <- Text(\"one\") masked",
            // 30 s: the upstream has been silent since the start; its Pong is absorbed.
            "upstream <- Ping(#1) masked",
            "need-masking-key",
            "upstream <- Text(\"two\") masked",
        ]
    );
    // 60 s: the upstream again, 30 s after its Pong; 65 s: the client, 30 s after "two".
    sim.advance(30 * SEC);
    assert_eq!(
        transcript(&sim)[4..],
        [
            "upstream <- Ping(#2) masked",
            "need-masking-key",
            "client <- Ping(#3)",
        ]
    );
}

#[test]
fn transcript_a_pong_absorbed() {
    let mut sim = ws_tunnel(pinging(30 * SEC, 10 * SEC));
    sim.upstream_sends_frame(Opcode::Text, b"hi");
    sim.advance(30 * SEC);
    sim.client_sends_frame(Opcode::Pong, &1u64.to_be_bytes());
    sim.client_sends_frame(Opcode::Pong, &1u64.to_be_bytes());
    assert_eq!(
        transcript(&sim),
        [
            "client <- Text(\"hi\")",
            "client <- Ping(#1)",
            "upstream <- Ping(#2) masked",
            "need-masking-key",
            // The first Pong answers the proxy and is absorbed; a second one passes.
            "upstream <- Pong(#1) masked",
        ]
    );
}

#[test]
fn transcript_a_dead_client_gets_the_upstream_a_close_1001() {
    let mut sim = ws_tunnel(pinging(30 * SEC, 10 * SEC));
    sim.answer_pings(Side::Upstream, true);
    sim.advance(40 * SEC);
    assert_eq!(
        transcript(&sim),
        [
            "client <- Ping(#1)",
            "upstream <- Ping(#2) masked",
            "need-masking-key",
            "upstream <- Close(1001 \"client stopped answering\") masked",
            "need-masking-key",
            "event tunnel-closed ClientUnresponsive",
            "release reusable=false",
            "event closed ClientUnresponsive",
            "close",
        ]
    );
}

#[test]
fn transcript_drain_sends_both_closes() {
    let mut sim = ws_tunnel(Config::default());
    sim.input(Input::Drain { grace: 5 * SEC }).unwrap();
    sim.advance(5 * SEC);
    sim.send_close(Side::Upstream, 1001, "");
    sim.send_close(Side::Client, 1001, "");
    assert_eq!(
        transcript(&sim),
        [
            "client <- Close(1001 \"proxy going away\")",
            "upstream <- Close(1001 \"proxy going away\") masked",
            "need-masking-key",
            // Both peers answered (their Closes are not forwarded: each had one).
            "event tunnel-closed Shutdown",
            "release reusable=false",
            "event closed Shutdown",
            "close",
        ]
    );
}

#[test]
fn transcript_1002_on_an_unmasked_client_frame() {
    let mut sim = ws_tunnel(Config::default());
    sim.upstream_sends_frame(Opcode::Text, b"welcome");
    sim.client_sends(&raw_frame(Side::Upstream, true, 0, Opcode::Text, b"oops"));
    // The upstream's answer to what it had, then its Close (absorbed).
    sim.upstream_sends_frame(Opcode::Text, b"late");
    sim.send_close(Side::Upstream, 1002, "");
    assert_eq!(
        transcript(&sim),
        [
            "client <- Text(\"welcome\")",
            "event violation Client client_frame_unmasked",
            "upstream <- Close(1002 \"protocol error by the client: client frame unmasked\") masked",
            "need-masking-key",
            "client <- Text(\"late\")",
            "client <- Close(1002 \"protocol error by the client: client frame unmasked\")",
            "event tunnel-closed ProtocolError",
            "release reusable=false",
            "event closed ProtocolError",
            "close",
        ]
    );
}
