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
//! payload is ever buffered (a tracker is a fixed ~200 bytes).
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
//! # Integration with [`Connection`](crate::Connection)
//! The core's tunnel will own two trackers, `[FrameTracker; 2]` indexed by the side
//! the frames come from, created after a validated `101` for `websocket` from the
//! route's `ws_validate` and the 101's `Sec-WebSocket-Extensions`
//! ([`Extensions::from_header_values`]). The API changes that needs:
//!
//! - **`Output::StartTunnel`** says how to move bytes: `framing: Framing::{Raw,
//!   WebSocket}`. `Raw` (other protocols, and `ws_validate = false` with pings off) is
//!   today's tunnel: copy or splice, report [`Input::TunnelActivity`](crate::Input).
//! - **Showing bytes**: a borrowing method, `Connection::handle_tunnel_data(from,
//!   &buf, now)`, since `Input` owns its bytes and the runtime's read buffers are pooled
//!   and must stay the runtime's. The core feeds them to `trackers[from]` and answers,
//!   through `poll_output`, in order: `Output::ForwardRaw { from, len }` (write the next
//!   `len` bytes shown from `from` to the other side, in place, zero copy),
//!   `Output::Discard { from, len }` (drop them: an absorbed Pong, or everything after
//!   a violation), and the existing `ToClient` / `ToUpstream` for
//!   [`FrameTracker::carried`] bytes (at most 139, copied only when a frame head
//!   straddled two reads) and for injected frames. Every byte shown is covered by
//!   exactly one `ForwardRaw` or `Discard`, or held by the tracker until a later call.
//! - **Splice keeps working**: a getter `Connection::tunnel_payload_remaining(from) ->
//!   u64` says how many bytes the adapter may move from `from` unseen. It splices at
//!   most that many (splice(2) takes a length) and reports them with the existing
//!   `Input::TunnelActivity { from, bytes }`, which in a WebSocket tunnel means
//!   [`FrameTracker::payload_forwarded`] as well as a read. At zero, the next read is a
//!   copying read and is shown. The runtime's `splice_reads` switch becomes "splice
//!   while `tunnel_payload_remaining(from)` is at least 16 KiB": a frame of 1 MiB is a
//!   copying read (header and first payload bytes) followed by splices.
//! - **Injection**: Pings (`ws_ping_interval`), Close 1001 on drain or a vanished
//!   peer, Close 1002 on a violation. A frame towards `to` is written into the direction
//!   that `trackers[to.other()]` follows, so it is emitted (as `ToClient` /
//!   `ToUpstream`) only while that tracker is at a frame boundary; otherwise it waits in
//!   a per-side slot (one Ping, one Close; a Close replaces a Ping) and is emitted right
//!   after the `ForwardRaw` or `TunnelActivity` that ends the frame. The ping timeout
//!   starts when the Ping is emitted, not when it fell due, so a peer trickling one
//!   huge frame delays the Ping without being declared dead.
//! - **Masking keys**: `Input::MaskingKey([u8; 4])`. The adapter feeds one right after
//!   `StartTunnel { framing: WebSocket }`, and one after each `Output::NeedMaskingKey`,
//!   which the core emits after it used its key for a frame towards the upstream (the
//!   runtime draws them with `getrandom`). A key is used once; a frame towards the
//!   upstream with no key at hand waits in its slot. Frames towards the client need
//!   none.
//! - **Events**: `CloseReason::WebSocketViolation { side, rule }` ([`Violation::rule`]),
//!   `ClientUnresponsive` / `UpstreamUnresponsive`; `TunnelRecord` gains both sides'
//!   [`FrameStats`], pings sent and the proxy's ping round trips. An EOF while
//!   [`FrameTracker::holds_partial_frame`] or with payload remaining is an EOF inside a
//!   frame: the other side gets a Close only if the direction towards it is at a frame
//!   boundary (a Close inside a frame would be read as payload); otherwise the
//!   connection closes bare.
//! - **Back-pressure** is unchanged: `wants_read(side)` stays false while bytes towards
//!   the other side are queued, so a tracker is only ever shown bytes whose
//!   predecessors were written or queued in order.
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
