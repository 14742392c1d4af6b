//! # switchyard-core
//!
//! The sans-IO heart of switchyard: an HTTP/1.1 reverse-proxy state machine whose
//! specialty is WebSocket and other `Upgrade` traffic. One [`Connection`] per client
//! connection turns *inputs* (bytes, EOFs, upstream connection results, time) into
//! *outputs* (bytes to write, connections to open, tunnels to start, events to log).
//! It has no sockets, no clock, no threads and no async, so it embeds in any event loop
//! and can be tested faster than real time (see [`sim`], feature `sim`).
//!
//! ## A complete run loop
//! The loop below drives one connection with in-memory peers; a real adapter does the
//! same with sockets (`switchyard-smol`, or `examples/event_loop.rs` with plain
//! non-blocking sockets).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//! use bytes::BytesMut;
//! use switchyard_core::{Config, Connection, Input, Output, PeerInfo, Side};
//!
//! let start = Instant::now(); // the caller owns the clock
//! let mut conn = Connection::new(Arc::new(Config::default()), PeerInfo::default(), start);
//! let (mut to_client, mut to_upstream) = (Vec::new(), Vec::new());
//! let mut inputs = vec![
//!     Input::ClientData(BytesMut::from(&b"GET /hello HTTP/1.1\r\nHost: example\r\n\r\n"[..])),
//! ];
//! while let Some(input) = inputs.pop() {
//!     conn.handle_input(input, start).expect("no misuse");
//!     while let Some(output) = conn.poll_output() {
//!         match output {
//!             // Open a connection to a server of this route's upstream group.
//!             Output::Connect(_route) => inputs.push(Input::UpstreamConnected { reused: false }),
//!             Output::ToUpstream(bytes) => {
//!                 to_upstream.extend_from_slice(&bytes);
//!                 // The in-memory upstream answers once the head is complete.
//!                 if to_upstream.ends_with(b"\r\n\r\n") {
//!                     inputs.push(Input::UpstreamData(BytesMut::from(
//!                         &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"[..],
//!                     )));
//!                 }
//!                 inputs.push(Input::Flushed { to: Side::Upstream });
//!             }
//!             Output::ToClient(bytes) => {
//!                 to_client.extend_from_slice(&bytes);
//!                 inputs.push(Input::Flushed { to: Side::Client });
//!             }
//!             Output::ReleaseUpstream { reusable } => assert!(reusable),
//!             Output::Event(event) => println!("{event:?}"),
//!             _ => {} // StartTunnel, HalfClose, Close: nothing to do here
//!         }
//!     }
//! }
//! assert!(to_upstream.starts_with(b"GET /hello HTTP/1.1\r\nHost: example\r\n"));
//! assert_eq!(to_client, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
//! // The connection is kept alive; the next deadline is keepalive's 75 s.
//! assert_eq!(conn.poll_timeout(), Some(start + Duration::from_secs(75)));
//! ```
//!
//! ## The contract
//! - **Order.** Feed one input with [`Connection::handle_input`], drain
//!   [`Connection::poll_output`] until `None` and perform the outputs in order, then wait
//!   until [`Connection::poll_timeout`] or readiness of a peer for which
//!   [`Connection::wants_read`] is true, whichever comes first.
//! - **Time.** Every input carries `now`. The core never reads a clock; a `now` earlier
//!   than one already seen counts as the latest; a timeout with nothing due is a no-op.
//! - **Writes.** After writing everything queued towards a peer, feed
//!   [`Input::Flushed`]; `send_timeout` runs while writes are pending.
//! - **Errors.** A peer's protocol error never panics and never returns `Err`: it becomes
//!   a canned response and [`Output::Close`]. `Err(`[`Misuse`]`)` means the caller broke
//!   the contract (e.g. input after `Close`).
//! - **Zero copy.** Body bytes leave the core as [`bytes::Bytes`] slices of the buffers
//!   given in [`Input::ClientData`] / [`Input::UpstreamData`]. A caller that can move
//!   bytes between sockets itself (`splice(2)`) asks
//!   [`Connection::response_body_passthrough`] how much of a response body may pass the
//!   core, moves at most that much once its writes towards the client are done, and
//!   reports it with [`Input::ResponseBodyPassed`]: heads, chunk lines and trailers
//!   are always the core's.
//! - **Tunnels.** After [`Output::StartTunnel`] the caller copies bytes itself and
//!   reports each read as [`Input::TunnelActivity`], so deadlines and half-close stay in
//!   the core.
//! - **Frame-aware WebSocket tunnels.** On a route whose [`WebSocketPolicy`] validates
//!   frames or sends pings, a `websocket` tunnel is followed frame by frame (headers
//!   only). Before each read from a side, ask [`Connection::tunnel_passthrough`]: copy or
//!   splice at most that many bytes and report them with [`Input::TunnelActivity`]; at 0,
//!   lend the bytes read with [`Connection::handle_tunnel_read`], write the first `n`
//!   it returns (whole, valid frames: in the common case all of them, with no copy and
//!   no allocation), then the [`Output::ToClient`] / [`Output::ToUpstream`] it queued
//!   (the core drops an absorbed Pong and writes its own Pings and Closes between
//!   frames); or give them as an owned [`Input::TunnelData`], which the core forwards
//!   as slices. Answer [`Output::NeedMaskingKey`] at once with
//!   [`Input::MaskingKey`] from a CSPRNG. [`websocket`] has the frame layer and the
//!   rules.
//!
//! ## Protocol rules
//! Hop-by-hop headers ([`HOP_BY_HOP`] and every header named by `Connection`) are never
//! forwarded either way; an upgrade proposal (`Upgrade` + a `Connection: upgrade` token,
//! HTTP/1.1) is forwarded explicitly for the protocols a route allows (never `h2c`);
//! bytes a client sends after an upgrade request are held until the answer; only a
//! `101` that answers a proposal, names an offered protocol, carries
//! `Connection: upgrade` and (for WebSocket) the right `Sec-WebSocket-Accept` starts a
//! tunnel. Framing is strict (RFC 9112 §6): anything two parsers could read differently
//! is refused with a 4xx (client) or 502 (upstream). docs/ARCHITECTURE.md §Protocol
//! rules states each rule and where it lives; the README's §Security lists every
//! rejection and why.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod close;
mod config;
mod connection;
mod error;
mod event;
mod exchange;
mod field_kind;
mod fields;
mod framing;
mod head;
mod head_fast;
mod head_scan;
mod head_size;
mod headers;
mod io;
pub mod proxy_protocol;
mod request;
mod request_checks;
mod response;
mod spelling;
mod state;
mod text;
mod timer;
mod tunnel;
mod upgrade;
pub mod websocket;

pub use config::{
    Config, Forwarding, Limits, PeerInfo, Route, RouteId, Scheme, Timeouts, WebSocketPolicy,
};
pub use connection::Connection;
pub use error::{ErrorKind, Misuse, ProtocolError};
pub use event::{AccessRecord, CloseReason, Event, TunnelRecord, TunnelTraffic, WebSocketRecord};
pub use headers::{is_hop_by_hop, HOP_BY_HOP};
pub use io::{Input, Output, Side};
pub use state::StateKind;
pub use text::Text;
pub use upgrade::websocket_accept;

#[cfg(any(test, feature = "sim"))]
pub mod sim;

/// The crate README's examples, compiled and run as doctests so that they cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
