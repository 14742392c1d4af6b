//! Reads lent to the core (`Connection::handle_tunnel_read`) against reads given to it
//! (`Input::TunnelData`): whatever the frames and wherever the reads split them, the two
//! paths write the same bytes to both sides, in the same outputs, with the same events
//! and the same ending. And the common case takes the fast path: a read of whole, valid
//! frames is forwarded in place, all of it, with no output for the peer's bytes.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ws::*;
use common::{byte_tunnels, ws_101, ws_request};
use proptest::prelude::*;
use switchyard_core::sim::Sim;
use switchyard_core::websocket::{encode, Opcode};
use switchyard_core::{Config, Connection, Input, Misuse, Output, PeerInfo, Side, StateKind};

/// The same tunnel twice from one instant: reads lent (`.0`) and given (`.1`).
fn twin_tunnels(config: Config) -> (Sim, Sim) {
    let start = Instant::now();
    let open = |lend: bool| {
        let mut sim = Sim::new(config.clone(), start);
        sim.lend_tunnel_reads = lend;
        sim.client_sends(ws_request("/").as_bytes());
        sim.upstream_sends(ws_101().as_bytes());
        assert_eq!(sim.state(), StateKind::Tunnel);
        sim
    };
    (open(true), open(false))
}

/// A stream of frames `from` sends: data messages (fragmented or not, small or large)
/// with Pings and Pongs between fragments, Pongs that answer the proxy's first Pings
/// (payloads 1 and 2: absorbed when they match), and where `bad` says, one frame that
/// breaks a rule.
fn stream(from: Side, specs: &[(u8, usize, bool, u8)], bad: Option<usize>) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut in_message = false;
    for (i, &(kind, len, fin, fill)) in specs.iter().enumerate() {
        if bad == Some(i) {
            let opcode = if fill % 2 == 0 {
                Opcode::Text // masked wrongly for its direction
            } else {
                Opcode::Continuation // without a message, or unmasked
            };
            let to = if fill % 3 == 0 { from } else { from.other() };
            bytes.extend_from_slice(&encode::frame(to, true, opcode, b"bad", [3; 4]));
        }
        let key = [fill, 1, i as u8, 7];
        let (opcode, payload, fin): (Opcode, Vec<u8>, bool) = match kind {
            0 => (
                Opcode::Ping,
                (0..len % 126).map(|j| j as u8).collect(),
                true,
            ),
            1 => (Opcode::Pong, vec![fill; (len % 126) | 1], true),
            2 => (
                Opcode::Pong,
                (1 + u64::from(fill % 2)).to_be_bytes().to_vec(),
                true,
            ),
            _ => {
                let opcode = if in_message {
                    Opcode::Continuation
                } else {
                    [Opcode::Text, Opcode::Binary][usize::from(kind % 2)]
                };
                in_message = !fin;
                (opcode, (0..len).map(|j| fill ^ j as u8).collect(), fin)
            }
        };
        bytes.extend_from_slice(&encode::frame(from.other(), fin, opcode, &payload, key));
    }
    if in_message {
        let last = encode::frame(from.other(), true, Opcode::Continuation, b"end", [9; 4]);
        bytes.extend_from_slice(&last);
    }
    bytes
}

fn specs() -> impl Strategy<Value = Vec<(u8, usize, bool, u8)>> {
    let size = prop_oneof![8 => 0..200usize, 1 => 200..3000usize, 1 => 60_000..70_000usize];
    proptest::collection::vec((0..7u8, size, any::<bool>(), any::<u8>()), 1..14)
}

/// Both tunnels are in the same state, as far as their peers and logs can tell.
fn same(lent: &Sim, given: &Sim) -> Result<(), TestCaseError> {
    prop_assert_eq!(&lent.outputs, &given.outputs, "the same outputs, in order");
    prop_assert_eq!(&lent.client_received, &given.client_received);
    prop_assert_eq!(lent.upstream_received(), given.upstream_received());
    prop_assert_eq!(lent.is_closed(), given.is_closed());
    prop_assert_eq!(lent.close_reason(), given.close_reason());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any frame stream (valid, or with one violation), split anywhere, with the proxy's
    /// Pings falling due on the way: lent and given reads leave the same trace.
    #[test]
    fn lent_and_given_reads_forward_the_same_bytes_in_the_same_outputs(
        from_client in any::<bool>(),
        specs in specs(),
        bad in proptest::option::weighted(0.25, 0..14usize),
        cuts in proptest::collection::vec(any::<usize>(), 0..24),
        delays in proptest::collection::vec(0u64..2500, 24),
        pinged_first in any::<bool>(),
    ) {
        let from = if from_client { Side::Client } else { Side::Upstream };
        let (mut lent, mut given) = twin_tunnels(pinging(SEC, 10 * SEC));
        // The receiving side answers the proxy's Pings; the sender's answers, if any,
        // are in its stream.
        lent.answer_pings(from.other(), true);
        given.answer_pings(from.other(), true);
        if pinged_first {
            // The proxy's first Pings go out, so the stream's Pongs may answer them.
            lent.advance(SEC);
            given.advance(SEC);
        }
        let bytes = stream(from, &specs, bad);
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.extend([0, bytes.len()]);
        points.sort_unstable();
        points.dedup();
        for (i, piece) in points.windows(2).enumerate() {
            if lent.is_closed() || given.is_closed() {
                break;
            }
            lent.sends(from, &bytes[piece[0]..piece[1]]);
            given.sends(from, &bytes[piece[0]..piece[1]]);
            same(&lent, &given)?;
            let delay = Duration::from_millis(delays[i % delays.len()]);
            lent.advance(delay);
            given.advance(delay);
            same(&lent, &given)?;
        }
        if bad.is_none_or(|b| b >= specs.len()) {
            prop_assert!(!lent.is_closed(), "a valid stream keeps the tunnel open");
        }
    }
}

/// Small messages, whole in each read, as a chat or a game sends them: every read is
/// forwarded in place (one output standing for it, none from the core), both ways.
#[test]
fn reads_of_whole_valid_frames_are_forwarded_in_place_whole() {
    let mut sim = ws_tunnel(Config::default());
    for (i, from) in [Side::Client, Side::Upstream]
        .into_iter()
        .cycle()
        .take(6)
        .enumerate()
    {
        let mut read = sim.frame_from(from, true, Opcode::Text, b"hello").to_vec();
        read.extend_from_slice(&sim.frame_from(from, true, Opcode::Binary, &[i as u8; 40]));
        read.extend_from_slice(&sim.frame_from(from, true, Opcode::Ping, b"p"));
        let before = sim.outputs.len();
        let conn_before = sim.connection().tunnel_passthrough(from);
        assert_eq!(conn_before, 0, "at a frame boundary");
        sim.sends(from, &read);
        let written: Vec<&Output> = sim.outputs[before..]
            .iter()
            .filter(|o| matches!(o, Output::ToClient(_) | Output::ToUpstream(_)))
            .collect();
        let expected = match from.other() {
            Side::Client => Output::ToClient(read.clone().into()),
            Side::Upstream => Output::ToUpstream(read.clone().into()),
        };
        assert_eq!(written, [&expected], "the read, once, as it came");
    }
}

/// A header split across reads: its first bytes are held, and the next read, which
/// cannot go first, is forwarded behind them (the owned path), byte-identical.
#[test]
fn a_read_behind_a_held_header_follows_it() {
    let mut sim = ws_tunnel(Config::default());
    let frame = sim.frame_from(Side::Client, true, Opcode::Text, b"split header");
    let before = sim.upstream_received().len();
    sim.client_sends(&frame[..3]);
    assert_eq!(
        sim.upstream_received().len(),
        before,
        "nothing of a partial header"
    );
    sim.client_sends(&frame[3..]);
    assert_eq!(&sim.upstream_received()[before..], &frame[..]);
}

/// Lending a read outside a frame-aware tunnel is the caller's mistake, said as such,
/// and changes nothing: before a tunnel, and in a byte tunnel (whose reads all go past
/// the core).
#[test]
fn a_lent_read_outside_a_frame_aware_tunnel_is_misuse() {
    let now = Instant::now();
    let misuse = |state| {
        Err(Misuse::Unexpected {
            state,
            input: "handle_tunnel_read",
        })
    };
    let config = Arc::new(byte_tunnels(Config::default()));
    let mut conn = Connection::new(config, PeerInfo::default(), now);
    let frame = b"\x81\x80abcd";
    assert_eq!(
        conn.handle_tunnel_read(Side::Client, frame, now),
        misuse(StateKind::ReadingHead)
    );
    assert_eq!(conn.poll_output(), None);
    let request = ws_request("/");
    conn.handle_input(Input::ClientData(request.as_bytes().into()), now)
        .unwrap();
    while conn.poll_output().is_some() {}
    conn.handle_input(Input::UpstreamConnected { reused: false }, now)
        .unwrap();
    while conn.poll_output().is_some() {}
    conn.handle_input(Input::UpstreamData(ws_101().as_bytes().into()), now)
        .unwrap();
    while conn.poll_output().is_some() {}
    assert_eq!(conn.state(), StateKind::Tunnel);
    assert_eq!(
        conn.handle_tunnel_read(Side::Client, frame, now),
        misuse(StateKind::Tunnel)
    );
    assert_eq!(
        conn.poll_output(),
        None,
        "nothing forwarded, nothing written"
    );
}
