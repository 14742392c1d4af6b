//! The heap an idle tunnel keeps in the core, counted by a counting global allocator:
//! a connection is taken through its handshake to a tunnel, echoes one message each
//! way, and every output is performed (dropped); what dropping it then gives back is
//! what an idle tunnel holds besides `Connection` itself (benches/RESULTS.md, "Memory per
//! idle tunnel"). The test fails when a block is added or one grows past its bound.
//!
//! ```text
//! cargo test -p switchyard-core --test tunnel_memory -- --nocapture
//! ```

use std::alloc::System;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::BytesMut;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use switchyard_core::websocket::{encode, Opcode};
use switchyard_core::{Config, Connection, Input, Output, PeerInfo, Side, StateKind};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The count is process-wide: one test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const UPGRADE: &[u8] = b"GET /chat HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
const SWITCHED: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

/// Performs every output the way a driver would, by dropping it, and reports the writes
/// flushed.
fn perform(conn: &mut Connection, now: Instant) {
    let mut flushed = [false; 2];
    while let Some(output) = conn.poll_output() {
        match output {
            Output::ToClient(_) => flushed[0] = true,
            Output::ToUpstream(_) => flushed[1] = true,
            Output::NeedMaskingKey => {
                conn.handle_input(Input::MaskingKey([1, 2, 3, 4]), now)
                    .unwrap();
            }
            _ => {}
        }
    }
    for (to, flushed) in [Side::Client, Side::Upstream].into_iter().zip(flushed) {
        if flushed {
            conn.handle_input(Input::Flushed { to }, now).unwrap();
        }
    }
    assert!(conn.poll_output().is_none());
}

/// A tunnel on `config`, opened at `now`, after one message each way.
fn idle_tunnel(config: &Arc<Config>, now: Instant) -> Connection {
    let mut conn = Connection::new(config.clone(), PeerInfo::default(), now);
    let request = BytesMut::from(UPGRADE);
    conn.handle_input(Input::ClientData(request), now).unwrap();
    perform(&mut conn, now);
    conn.handle_input(Input::UpstreamConnected { reused: false }, now)
        .unwrap();
    perform(&mut conn, now);
    let answer = BytesMut::from(SWITCHED);
    conn.handle_input(Input::UpstreamData(answer), now).unwrap();
    perform(&mut conn, now);
    assert_eq!(conn.state(), StateKind::Tunnel);
    let to_upstream = encode::frame(Side::Upstream, true, Opcode::Text, b"hello", [9, 8, 7, 6]);
    let to_client = encode::frame(Side::Client, true, Opcode::Text, b"hello", [0; 4]);
    for (from, message) in [(Side::Client, to_upstream), (Side::Upstream, to_client)] {
        if conn.tunnel_passthrough(from) == u64::MAX {
            let bytes = message.len();
            conn.handle_input(Input::TunnelActivity { from, bytes }, now)
                .unwrap();
        } else {
            let forward = conn.handle_tunnel_read(from, &message, now).unwrap();
            assert_eq!(forward, message.len());
        }
        perform(&mut conn, now);
    }
    conn
}

/// The blocks and bytes an idle tunnel on `config` keeps on the heap: what dropping it
/// gives back.
fn held_by_idle_tunnel(config: Config) -> (usize, usize) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let config = Arc::new(config);
    let now = Instant::now();
    let conn = idle_tunnel(&config, now);
    let region = Region::new(GLOBAL);
    drop(conn);
    let freed = region.change();
    assert_eq!((freed.allocations, freed.reallocations), (0, 0));
    (freed.deallocations, freed.bytes_deallocated)
}

#[test]
fn an_idle_frame_aware_tunnel_holds_its_tunnel_frames_and_names() {
    let (blocks, bytes) = held_by_idle_tunnel(Config::default());
    println!("frame-aware idle tunnel: {blocks} heap blocks, {bytes} bytes");
    // The tunnel's state (88), `Frames` (168), "websocket/chat" (14): no receive
    // buffer, output queue, head, room for a split frame head or ending is kept.
    assert_eq!(blocks, 3);
    assert_eq!(bytes, 88 + 168 + 14);
}

#[test]
fn an_idle_byte_tunnel_holds_its_tunnel_and_names() {
    let mut config = Config::default();
    config.routes[0].websocket.validate = false;
    let (blocks, bytes) = held_by_idle_tunnel(config);
    println!("byte idle tunnel: {blocks} heap blocks, {bytes} bytes");
    // The tunnel's state (88) and "websocket/chat".
    assert_eq!(blocks, 2);
    assert_eq!(bytes, 88 + 14);
}
