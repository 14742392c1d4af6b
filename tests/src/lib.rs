//! End-to-end test harness for switchyard: starts the proxy in-process and puts real,
//! independent peers on both sides of it, all on 127.0.0.1.
//!
//! - [`Proxy`] runs a `switchyard_smol::Server` on its own thread and shuts it down
//!   (with a deadline) when dropped.
//! - [`Origin`] is an upstream server: a scripted raw-socket origin that records every
//!   byte it received ([`Origin::scripted`]), a plain HTTP origin ([`Origin::http`]) and a
//!   WebSocket echo origin built on `tungstenite` ([`Origin::ws_echo`]).
//! - [`Conn`] is a raw client (or origin-side) connection with an independent HTTP/1.1
//!   reader, so tests can send malformed input and assert on exact bytes. It also reads
//!   whole WebSocket frames ([`Conn::read_frame`], [`Frame`]) with a parser of its own,
//!   and [`RawPeer`] makes it a WebSocket endpoint that answers Pings like a live one.
//! - [`Events`] records what the proxy reports through its `EventSink`.
//!
//! Every socket has read and write timeouts ([`IO_TIMEOUT`]) so no test can hang.
//!
//! The tests, by concept (`tests/tests/*.rs`):
//!
//! | file | what it proves |
//! |---|---|
//! | `websocket.rs` | echo, 4 MiB messages, back-to-back frames, frames in the same write as a handshake or a 101, `Connection: keep-alive, Upgrade`, hop-by-hop removal in the handshake, ping, fragments, half-close |
//! | `websocket_pings.rs` | with the proxy's pings on: a quiet but alive tunnel outlives `read_timeout` and never shows a Pong it did not ask for; a peer that stops answering gets the other side Close 1001 within `ping_interval + ping_timeout`; a Ping due while a frame trickles in waits for its end |
//! | `websocket_fragments.rs` | fragmented messages with the peer's and the proxy's Pings between fragments, reassembled by tungstenite |
//! | `websocket_validation.rs` | a frame breaking RFC 6455 is never forwarded and gets Close 1002 both ways, the offender's after the other side's answers; permessage-deflate with and without agreement; byte-exact with validation off |
//! | `websocket_close.rs` | the drain's Close 1001 both ways, with peers that answer and peers that do not; Close 1001 for a peer that left without one |
//! | `websocket_demo.rs` | a browser's session (Chromium's handshake) through the demo origin with pings on |
//! | `websocket_records.rs` | the tunnel record's frame counts and the violation event, through an `EventSink` |
//! | `http.rs` | forwarding, hop-by-hop removal both ways, keep-alive, request and response bodies (length, chunked, large), HEAD, 304, 103, 502s |
//! | `upgrade_safety.rs` | refused upgrades never tunnel, rogue 101s are 502, `h2c` never forwarded, CL+TE, bytes after a response |
//! | `smuggling.rs` | a corpus of framing attacks on both sides, each checking status and that nothing got through |
//! | `smuggling_corpus.rs` | the smuggling corpus (`switchyard-corpus`, `crates/corpus`) through the real proxy, in one write and byte by byte |
//! | `properties.rs` | any client input yields only well-formed, hop-by-hop-free requests at the origin, and every request that must be forwarded arrives, intact and in order |
//! | `deadlines.rs` | read, send, header and idle deadlines, per route, neither early nor late |
//! | `limits.rs` | 414, 431, 413, 404, `max_connections` |
//! | `load.rs` | 200 concurrent tunnels × 50 messages, nothing lost |
//! | `shutdown.rs` | graceful shutdown finishes requests and gives tunnels their grace |
//! | `reload.rs` | a reload switches a route's upstream while a tunnel opened before keeps echoing from the old one; an invalid configuration changes nothing; listeners added and removed; `drain_timeout` ends an old generation's tunnel with Close 1001; the generation and reload metrics, and a new route's own label |
//! | `metrics.rs` | `/metrics` parsed by a Prometheus text parser, every value checked against the traffic sent (requests, a refused request, a failed connect, a byte tunnel, a frame-aware WebSocket's messages) |
//! | `docs.rs` | every relative link in the documents resolves, every path the architecture names exists |
//!
//! # Examples
//!
//! ```
//! use switchyard_e2e::{ok, Conn, Origin, Proxy, Reply};
//!
//! let origin = Origin::http(|request| Reply::Send(ok(request.head.target().as_bytes())));
//! let proxy = Proxy::start(origin.addr());
//!
//! let mut client = Conn::connect(proxy.addr());
//! client.write_all(b"GET /hello HTTP/1.1\r\nHost: example\r\n\r\n");
//! let response = client.read_response("GET").expect("a response");
//! assert_eq!(response.head.status(), 200);
//! assert_eq!(response.body, b"/hello");
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod checks;
mod events;
mod frames;
mod http;
mod origin;
mod proxy;
mod ws;

pub use checks::{origin_saw_only_a_probe, send_raw};
pub use events::Events;
pub use frames::{opcode, parse_frame, parse_frames, Frame, RawPeer, PEER_MASK};
pub use http::{chunked_is_canonical, ok, Conn, Head, Message, HOP_BY_HOP};
pub use origin::{Origin, Reply};
pub use proxy::Proxy;
pub use ws::{
    close_payload, encode_fragment, encode_frame, encode_raw_frame, ws_accept_response,
    ws_accept_response_with, ws_close, ws_config, ws_connect, ws_connect_raw, ws_next_message,
    ws_request, ws_stay_quiet, WS_KEY,
};

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Read and write timeout of every socket the harness opens: a generous bound so a broken
/// proxy makes a test fail instead of hang.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Polls `condition` until it holds, panicking with `what` once `within` has passed.
pub fn wait_until(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Joins `thread`, panicking if it has not finished within `within`; a panic inside the
/// thread is propagated to the caller.
pub fn join_within<T>(thread: JoinHandle<T>, within: Duration) -> T {
    wait_until(within, "a thread to finish", || thread.is_finished());
    match thread.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
