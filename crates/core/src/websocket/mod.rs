//! WebSocket frames (RFC 6455 §5), followed in a tunnel without copying payloads.
//!
//! A [`FrameTracker`] follows one direction of a tunnel frame by frame: it reads
//! headers (split across reads as they may be), checks them against the [`Rules`],
//! counts frames, messages, Pings, Pongs and Close codes ([`FrameStats`]), and says how
//! many payload bytes follow each header, so the caller forwards them raw: copied or
//! spliced, never seen by the tracker. Control frames (at most 125 bytes of payload)
//! are held whole, so the caller can recognise a Pong answering its own Ping and absorb
//! it. [`encode`] builds the proxy's own Ping, Pong and Close frames, masked exactly
//! when they go to the upstream, with keys the caller draws; [`FrameParser`] reads
//! whole frames at a test's receiving end.
//!
//! Like the rest of the core this module is sans-IO: no clock, no randomness, and no
//! payload is ever buffered (a tracker is 56 bytes, and 139 more only while it holds a
//! split frame head).
//!
//! # Driving a tracker
//! ```text
//! bytes read from `from` ──▶ tracker.advance(bytes) ──▶ Step
//!   NeedMore                 hold nothing back: the tracker keeps the bytes
//!   Header { header, consumed }
//!                            forward carried() + bytes[..consumed], then payload_len
//!                            bytes raw: show them (Payload { len }) or splice them and
//!                            report payload_forwarded(n)
//!   ControlFrame { .. }      forward carried() + bytes[..consumed], or absorb them
//!   Violation(rule)          forward nothing more; Close 1002 both ways
//! ```
//! After a frame's last payload byte the tracker is [at a frame
//! boundary](FrameTracker::at_frame_boundary): that is when the proxy may write a frame
//! of its own into this direction, also between the fragments of a message.
//!
//! # In the tunnel
//! A frame-aware tunnel (`crates/core/src/tunnel/`) owns two trackers, indexed by the
//! side the frames come from, made after a validated `101` for `websocket` on a route
//! whose [`WebSocketPolicy`](crate::WebSocketPolicy) validates or pings, from
//! `ws_validate` and the 101's `Sec-WebSocket-Extensions`
//! ([`Extensions::from_header_values`]). What the driver does is the `Connection`
//! contract ("Tunnels"); in short:
//!
//! - `Output::StartTunnel` has empty leftovers: the bytes that came with the handshake go
//!   through the trackers and come out as ordinary `ToUpstream` / `ToClient` right after
//!   it (and after `Output::NeedMaskingKey`).
//! - `Connection::tunnel_passthrough(from)` is the current data frame's
//!   [`FrameTracker::payload_remaining`] (0 when a header or control frame is next, or
//!   the direction is discarded): that many bytes may be copied or spliced unseen and
//!   reported with [`Input::TunnelActivity`], which calls
//!   [`FrameTracker::payload_forwarded`].
//! - At 0 the driver lends what it read to `Connection::handle_tunnel_read(from, &data,
//!   now)`. The plain data frames at its start are walked in one pass
//!   ([`FrameTracker::advance_data_frames`]), the rest step by step; while every
//!   [`Step`] forwards its bytes and nothing is
//!   [carried](FrameTracker::carried) from an earlier read, they form a prefix of
//!   `data`, whose length is returned: the driver writes it from its own buffer before
//!   the outputs. From an absorbed Pong on, and for a read behind a held partial head or
//!   in a discarded direction, the rest is copied and goes the owned way. That is
//!   `Input::TunnelData { from, data }` (owned, like `ClientData`): the core forwards
//!   [`Step::Header`] / [`Step::Payload`] / [`Step::ControlFrame`] bytes as
//!   `split_to().freeze()` slices of `data`, copies only [`FrameTracker::carried`]
//!   bytes, drops an absorbed Pong and everything after a [`Step::Violation`].
//! - The proxy's frames (Ping, Close 1001/1002/1011) towards `to` wait in a slot per side
//!   until `trackers[to.other()]` is [at a frame
//!   boundary](FrameTracker::at_frame_boundary) *and* everything written towards `to` was
//!   reported flushed; towards the upstream they also need a key (`Input::MaskingKey`,
//!   asked for with `Output::NeedMaskingKey`, each used once). The ping timeout runs
//!   from the Ping's emission, so a peer trickling one huge frame delays the Ping
//!   without anyone being declared dead.
//! - A violation emits `Event::WebSocketViolation { side, rule }` ([`Violation::rule`])
//!   and ends the tunnel with `CloseReason::ProtocolError`; a dead peer with
//!   `ClientUnresponsive` / `UpstreamUnresponsive`; `TunnelRecord::websocket` carries
//!   both sides' [`FrameStats`], the proxy's pings and their round trips.
//! - An EOF while [`FrameTracker::holds_partial_frame`] or with payload remaining is an
//!   EOF inside a frame: the other side gets no Close (it would be read as payload), only
//!   the half-close.
//!
//! [`Input::TunnelActivity`]: crate::Input::TunnelActivity

mod control;
pub mod encode;
mod extensions;
mod header;
mod parser;
mod tracker;
mod validate;

pub use control::ControlPayload;
pub use encode::{CloseCode, PayloadTooLong};
pub use extensions::Extensions;
pub use header::{
    apply_mask, FrameHeader, HeaderStatus, Opcode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, RSV1, RSV2,
    RSV3,
};
pub use parser::{FrameParser, WholeFrame};
pub use tracker::{FrameStats, FrameTracker, PayloadOverrun, Step};
pub use validate::{Rules, Violation};

#[cfg(test)]
mod tests;
