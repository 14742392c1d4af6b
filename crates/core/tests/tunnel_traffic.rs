//! `Connection::tunnel_traffic`, what a live status page reads after every read: it
//! grows with what each side sent and agrees with the tunnel's record when it closes.

mod common;

use common::ws::*;
use common::*;
use proptest::prelude::*;
use switchyard_core::websocket::Opcode;
use switchyard_core::{Config, Side, TunnelTraffic};

#[test]
fn there_is_no_traffic_outside_a_tunnel() {
    let mut sim = sim();
    assert_eq!(sim.connection().tunnel_traffic(), None);
    sim.client_sends(ws_request("/").as_bytes());
    assert_eq!(sim.connection().tunnel_traffic(), None, "still an exchange");
    sim.upstream_sends(ws_101().as_bytes());
    assert_eq!(
        sim.connection().tunnel_traffic(),
        Some(TunnelTraffic {
            messages: Some((0, 0)),
            ..TunnelTraffic::default()
        })
    );
    sim.client_eof();
    sim.upstream_eof();
    sim.advance(2 * SEC);
    assert!(sim.is_closed());
    assert_eq!(sim.connection().tunnel_traffic(), None);
}

#[test]
fn a_byte_tunnel_counts_bytes_and_knows_no_messages() {
    let mut sim = byte_sim();
    sim.client_sends(ws_request("/").as_bytes());
    sim.upstream_sends(ws_101().as_bytes());
    sim.client_sends(b"hello");
    sim.upstream_sends(b"hi there");
    sim.client_sends(b"!");
    let traffic = sim.connection().tunnel_traffic().expect("a tunnel");
    assert_eq!(
        (
            traffic.bytes_client_to_upstream,
            traffic.bytes_upstream_to_client
        ),
        (6, 8)
    );
    assert_eq!(traffic.messages, None);
}

proptest! {
    /// Whatever messages the two sides send, in fragments or not, with control frames
    /// between: after each frame the counts never shrink, and at the close they are the
    /// record's.
    #[test]
    fn traffic_grows_with_each_frame_and_ends_as_the_record(
        frames in proptest::collection::vec((any::<bool>(), 0..3u8, 0..200usize), 1..30),
    ) {
        let mut sim = ws_tunnel(Config::default());
        sim.feed_masking_key([1, 2, 3, 4]);
        let mut last = sim.connection().tunnel_traffic().expect("a tunnel");
        let mut sent_messages = [0u64; 2];
        let mut sent_bytes = [0u64; 2];
        for &(from_client, kind, len) in &frames {
            let from = if from_client { Side::Client } else { Side::Upstream };
            let payload = vec![b'a'; len];
            let frame = match kind {
                // A whole message.
                0 => sim.frame_from(from, true, Opcode::Binary, &payload),
                // A message in two fragments, sent as one write.
                1 => {
                    let mut both = sim.frame_from(from, false, Opcode::Text, &payload).to_vec();
                    both.extend_from_slice(&sim.frame_from(from, true, Opcode::Continuation, b"z"));
                    both.into()
                }
                // A Ping: no message.
                _ => sim.frame_from(from, true, Opcode::Ping, &payload[..len.min(125)]),
            };
            sim.sends(from, &frame);
            sent_bytes[at(from)] += frame.len() as u64;
            if kind < 2 {
                sent_messages[at(from)] += 1;
            }
            let now = sim.connection().tunnel_traffic().expect("still a tunnel");
            let (messages, before) = (now.messages.unwrap(), last.messages.unwrap());
            prop_assert!(now.bytes_client_to_upstream >= last.bytes_client_to_upstream);
            prop_assert!(now.bytes_upstream_to_client >= last.bytes_upstream_to_client);
            prop_assert!(messages.0 >= before.0 && messages.1 >= before.1);
            prop_assert_eq!(messages, (sent_messages[0], sent_messages[1]));
            prop_assert_eq!(
                (now.bytes_client_to_upstream, now.bytes_upstream_to_client),
                (sent_bytes[0], sent_bytes[1])
            );
            last = now;
        }
        sim.client_eof();
        sim.upstream_eof();
        sim.advance(2 * SEC);
        prop_assert!(sim.is_closed());
        let record = tunnel_record(&sim);
        prop_assert_eq!(
            (record.bytes_client_to_upstream, record.bytes_upstream_to_client),
            (last.bytes_client_to_upstream, last.bytes_upstream_to_client)
        );
        let websocket = record.websocket.expect("frame-aware");
        prop_assert_eq!(
            (websocket.client.messages, websocket.upstream.messages),
            last.messages.unwrap()
        );
    }
}

fn at(side: Side) -> usize {
    match side {
        Side::Client => 0,
        Side::Upstream => 1,
    }
}
