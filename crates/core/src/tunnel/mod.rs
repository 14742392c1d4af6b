//! The `Tunnel` phase (docs/ARCHITECTURE.md §Protocol rules, "Tunnels"): what the core
//! tracks while the adapter copies bytes both ways, from the validated `101` to the end.
//!
//! The tunnel owns its route, whose deadlines (read, send, idle) it reads from the
//! connection's configuration (which never changes under a connection), so nothing in it
//! depends on an exchange that is gone and an idle tunnel does not carry copies of them. Read and idle deadlines are derived from two
//! last-read instants rather than kept in a table, so reporting a read is two stores.
//!
//! A WebSocket tunnel on a route that validates frames or sends pings is *frame-aware*:
//! it also holds [`Frames`] (boxed, so a byte tunnel stays small), which follows both
//! directions frame by frame. `data.rs` runs the bytes shown to the core through the
//! trackers, `lent.rs` forwards a lent read's whole frames in place; `pings.rs` holds
//! the proxy's Pings (on a route that sends them); `inject.rs` writes the proxy's own Pings and Closes at frame boundaries and
//! ends the tunnel; `frames.rs` holds the state.

mod data;
mod frames;
mod inject;
mod lent;
mod pings;

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::config::{RouteId, Timeouts};
use crate::connection::Connection;
use crate::error::{ErrorKind, ProtocolError};
use crate::event::{CloseReason, Event, TunnelRecord, TunnelTraffic};
use crate::head::Head;
use crate::headers::{self, ClientConnection};
use crate::io::{Output, Side};
use crate::state::{Phase, Step};
use crate::timer::{earlier, Deadline, WriteDeadlines};
use crate::upgrade;
use crate::websocket::{Extensions, FrameTracker, Rules};
use frames::Frames;

/// The `Tunnel` phase, inline in the connection's phase: what only its events and its
/// record read (when it started, its names) fits beside the pointer to the rest in the
/// room the `ReadingHead` phase takes anyway. The rest, [`TunnelState`], is what every
/// read and wait touches, boxed as the whole tunnel was, so the per-read path loads the
/// same pointer as before; `Tunnel` derefs to it.
#[derive(Debug)]
pub(crate) struct Tunnel {
    started: Instant,
    /// The upgrade's protocol, then the request's target, in one allocation (16 bytes
    /// where a `String` and a `Cow<str>` took 48).
    names: Box<str>,
    state: Box<TunnelState>,
}

/// What a tunnel keeps out of line: everything a read or a wait looks at.
#[derive(Debug)]
pub(crate) struct TunnelState {
    pub route: RouteId,
    /// Where the protocol ends in the tunnel's names.
    protocol_len: u32,
    /// When each side was last read from (or the tunnel opened).
    last_read: [Instant; 2],
    /// Whether each side has sent EOF.
    eof: [bool; 2],
    /// Bytes read from each side.
    pub bytes_from: [u64; 2],
    /// The end of the grace a graceful drain gives the tunnel.
    drain_deadline: Option<Instant>,
    /// A frame-aware WebSocket tunnel's frames; `None` for a byte tunnel.
    ws: Option<Box<Frames>>,
}

/// Where a tunnel's outputs go: the connection's queue and write deadlines, borrowed
/// beside the tunnel.
pub(crate) struct Sink<'a> {
    out: &'a mut VecDeque<Output>,
    writes: &'a mut WriteDeadlines,
    now: Instant,
    send_timeout: Duration,
}

impl Sink<'_> {
    /// Writes `bytes` towards `to`, within the tunnel's `send_timeout`.
    fn write(&mut self, to: Side, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.writes.queued(to, self.now + self.send_timeout);
        self.out.push_back(match to {
            Side::Client => Output::ToClient(bytes),
            Side::Upstream => Output::ToUpstream(bytes),
        });
    }

    fn push(&mut self, output: Output) {
        self.out.push_back(output);
    }

    /// The adapter is writing bytes of the peers' own towards `to`: they must be
    /// flushed within the tunnel's `send_timeout` (a write already pending keeps its
    /// deadline, which is then not even computed: this runs after every read).
    #[inline]
    fn writing(&mut self, to: Side) {
        if !self.writes.pending(to) {
            self.writes.queued(to, self.now + self.send_timeout);
        }
    }
}

impl Deref for Tunnel {
    type Target = TunnelState;

    fn deref(&self) -> &TunnelState {
        &self.state
    }
}

impl DerefMut for Tunnel {
    fn deref_mut(&mut self) -> &mut TunnelState {
        &mut self.state
    }
}

impl Tunnel {
    /// A tunnel on `route` opened at `now`.
    pub(crate) fn new(route: RouteId, target: &str, protocol: &str, now: Instant) -> Self {
        // Both come from one head, whose size the limits bound far below 4 GiB.
        let protocol_len = u32::try_from(protocol.len()).unwrap_or(u32::MAX);
        Tunnel {
            started: now,
            names: [protocol, target].concat().into_boxed_str(),
            state: Box::new(TunnelState {
                route,
                protocol_len,
                last_read: [now; 2],
                eof: [false; 2],
                bytes_from: [0; 2],
                drain_deadline: None,
                ws: None,
            }),
        }
    }

    /// The upgrade's protocol (`websocket`, ...).
    pub(crate) fn protocol(&self) -> &str {
        self.names
            .get(..self.protocol_len as usize)
            .unwrap_or_default()
    }

    /// The request target the tunnel was opened with.
    pub(crate) fn target(&self) -> &str {
        self.names
            .get(self.protocol_len as usize..)
            .unwrap_or_default()
    }

    pub(crate) fn record(&self, reason: CloseReason, now: Instant) -> TunnelRecord {
        TunnelRecord {
            route: self.route,
            target: self.target().to_owned(),
            protocol: self.protocol().to_owned(),
            bytes_client_to_upstream: self.bytes_from[Side::Client.index()],
            bytes_upstream_to_client: self.bytes_from[Side::Upstream.index()],
            duration: now.saturating_duration_since(self.started),
            reason,
            websocket: self.ws.as_ref().map(|ws| ws.record()),
        }
    }
}

impl TunnelState {
    pub(crate) fn activity(&mut self, from: Side, bytes: usize, now: Instant) {
        self.last_read[from.index()] = now;
        self.bytes_from[from.index()] += bytes as u64;
        if let Some(ws) = &mut self.ws {
            ws.heard(from);
        }
    }

    /// Lets the frame trackers give back the room for a split frame head, unless one is
    /// split now (see [`FrameTracker::shed`](crate::websocket::FrameTracker::shed)).
    pub(crate) fn shed(&mut self) {
        if let Some(ws) = &mut self.ws {
            ws.trackers.iter_mut().for_each(FrameTracker::shed);
        }
    }

    /// Why a frame-aware tunnel that is ending will close.
    pub(crate) fn ending_reason(&self) -> Option<CloseReason> {
        Some(self.ws.as_ref()?.ending()?.kind.reason())
    }

    /// Whether the tunnel follows WebSocket frames.
    pub(crate) fn is_frame_aware(&self) -> bool {
        self.ws.is_some()
    }

    /// How many bytes from `from` the adapter may forward without showing them.
    pub(crate) fn passthrough(&self, from: Side) -> u64 {
        self.ws.as_ref().map_or(u64::MAX, |ws| ws.passthrough(from))
    }

    /// Whether the adapter should read from `side`.
    pub(crate) fn wants_read(&self, side: Side) -> bool {
        let stopped = self
            .ws
            .as_ref()
            .is_some_and(|ws| ws.stopped[side.index()] || ws.gone[side.index()]);
        !self.has_eof(side) && !stopped
    }

    /// Records EOF from `from`; returns true when both directions are now finished.
    pub(crate) fn eof(&mut self, from: Side, now: Instant) -> bool {
        self.eof[from.index()] = true;
        // The remaining direction gets a full `read_timeout` from the half-close.
        self.last_read[from.other().index()] = self.last_read[from.other().index()].max(now);
        self.eof[0] && self.eof[1]
    }

    pub(crate) fn has_eof(&self, side: Side) -> bool {
        self.eof[side.index()]
    }

    /// A graceful drain lets the tunnel go on until `at`, then closes it.
    pub(crate) fn drain_by(&mut self, at: Instant) {
        self.drain_deadline.get_or_insert(at);
    }

    /// The read deadline: upstream silence while the upstream still sends; after the
    /// upstream's EOF, silence of the client (the one direction still open).
    fn read_deadline(&self, timeouts: &Timeouts) -> Option<Instant> {
        let side = if !self.eof[Side::Upstream.index()] {
            Side::Upstream
        } else if !self.eof[Side::Client.index()] {
            Side::Client
        } else {
            return None;
        };
        Some(self.last_read[side.index()] + timeouts.read)
    }

    fn idle_deadline(&self, timeouts: &Timeouts) -> Option<Instant> {
        let last = match &self.ws {
            Some(ws) => ws.last_forwarded,
            None => self.last_read[0].max(self.last_read[1]),
        };
        timeouts.tunnel_idle.map(|t| last + t)
    }

    /// The earliest of the tunnel's own deadlines, with its route's `timeouts`.
    pub(crate) fn deadline(&self, timeouts: &Timeouts) -> Option<(Deadline, Instant)> {
        let read = self
            .read_deadline(timeouts)
            .map(|at| (Deadline::TunnelRead, at));
        let idle = self
            .idle_deadline(timeouts)
            .map(|at| (Deadline::TunnelIdle, at));
        let drain = self.drain_deadline.map(|at| (Deadline::Drain, at));
        let frames = match &self.ws {
            // Without pings and before an ending (almost always) there is none.
            Some(ws) if ws.pings.is_some() || ws.ending.is_some() => {
                ws.deadline(self.last_read, self.eof)
            }
            _ => None,
        };
        earlier(earlier(earlier(read, idle), drain), frames)
    }

    /// When the earliest of [`Tunnel::deadline`] and the `writes`' falls, without which
    /// one it is: the instant alone, the cheaper question asked before every wait.
    pub(crate) fn next_at(&self, timeouts: &Timeouts, writes: &WriteDeadlines) -> Option<Instant> {
        let mut next = sooner(self.read_deadline(timeouts), self.idle_deadline(timeouts));
        next = sooner(next, self.drain_deadline);
        if let Some(ws) = self.ws.as_ref() {
            if ws.pings.is_some() || ws.ending.is_some() {
                let frames = ws.deadline(self.last_read, self.eof);
                next = sooner(next, frames.map(|(_, at)| at));
            }
        }
        sooner(next, writes.next_at())
    }
}

/// The earlier of two instants, either of which may be missing.
#[inline]
fn sooner(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The frames of a tunnel for `protocol` on a route with `policy`, after the `101`
/// `head`: `None` when it is a byte tunnel (another protocol, or neither validation nor
/// pings).
fn frames_for(
    protocol: &str,
    policy: &crate::config::WebSocketPolicy,
    head: &Head,
    now: Instant,
) -> Option<Box<Frames>> {
    let name = protocol.split('/').next().unwrap_or(protocol);
    let ping_interval = policy.ping_interval.filter(|interval| !interval.is_zero());
    if !name.eq_ignore_ascii_case("websocket") || (!policy.validate && ping_interval.is_none()) {
        return None;
    }
    let extensions = Extensions::from_header_values(head.values("sec-websocket-extensions"));
    let rules = Rules {
        validate: policy.validate,
        extensions,
    };
    Some(Box::new(Frames::new(
        rules,
        ping_interval,
        policy.ping_timeout,
        now,
    )))
}

impl Connection {
    /// A `101`: tunnel only when it answers a proposal and validates; otherwise `502`.
    pub(crate) fn start_tunnel(&mut self, head: Head) {
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        let protocol = match upgrade::validate_switch(&head, ex.proposal.as_ref()) {
            Ok(protocol) if ex.request.is_done() => protocol,
            _ => return self.reject(ProtocolError::upstream(ErrorKind::InvalidSwitch)),
        };
        ex.status = 101;
        let route = &self.config.routes[ex.route];
        let mut tunnel = Tunnel::new(ex.route, &ex.target, &protocol, self.now);
        tunnel.ws = frames_for(tunnel.protocol(), &route.websocket, &head, self.now);
        let client_eof = ex.client_eof;
        // Taken whole, so that an idle tunnel keeps no receive buffer alive.
        let upstream_leftover = std::mem::take(&mut ex.upstream.buf);
        let client_leftover = std::mem::take(&mut self.client_buf);
        let bytes = headers::client_response(&head, false, ClientConnection::Upgrade);
        self.out
            .push_back(Output::Event(Event::Response { status: 101 }));
        self.send_client(bytes);
        self.out.push_back(Output::Event(Event::TunnelOpened {
            route: tunnel.route,
            protocol: tunnel.protocol().to_owned(),
        }));
        if let Some(grace) = self.drain {
            tunnel.drain_by(self.now + grace);
        }
        if tunnel.is_frame_aware() {
            return self.start_frame_aware(tunnel, client_leftover, upstream_leftover, client_eof);
        }
        self.out.push_back(Output::StartTunnel {
            client_leftover: client_leftover.freeze(),
            upstream_leftover: upstream_leftover.freeze(),
        });
        if client_eof {
            tunnel.eof(Side::Client, self.now);
            self.out.push_back(Output::HalfClose {
                side: Side::Upstream,
            });
        }
        self.enter(Step::Switched(tunnel));
    }

    /// A frame-aware tunnel starts with empty leftovers: the bytes that came with the
    /// handshake go through the trackers like any others, after a masking key is asked.
    fn start_frame_aware(
        &mut self,
        tunnel: Tunnel,
        client_leftover: BytesMut,
        upstream_leftover: BytesMut,
        client_eof: bool,
    ) {
        self.out.push_back(Output::StartTunnel {
            client_leftover: Bytes::new(),
            upstream_leftover: Bytes::new(),
        });
        self.out.push_back(Output::NeedMaskingKey);
        if !self.enter(Step::Switched(tunnel)) {
            return;
        }
        if !client_leftover.is_empty() {
            self.follow_shown(Side::Client, client_leftover);
        }
        if !upstream_leftover.is_empty() {
            self.follow_shown(Side::Upstream, upstream_leftover);
        }
        if client_eof {
            self.on_tunnel_eof(Side::Client);
        }
    }

    /// The tunnel and where its outputs go, borrowed side by side.
    pub(crate) fn tunnel_sink(&mut self) -> Option<(&mut TunnelState, Sink<'_>)> {
        let Phase::Tunnel(tunnel) = &mut self.phase else {
            return None;
        };
        let sink = Sink {
            out: &mut self.out,
            writes: &mut self.writes,
            now: self.now,
            send_timeout: self.config.routes[tunnel.route].timeouts.send,
        };
        Some((&mut tunnel.state, sink))
    }

    /// How many bytes read from `from` the caller may forward to the other side without
    /// showing them to the core: `u64::MAX` in a byte tunnel; in a frame-aware tunnel the
    /// rest of the current data frame's payload, and 0 when the next bytes must be shown
    /// with [`Input::TunnelData`](crate::Input::TunnelData) (a header is next, a control
    /// frame is in progress, or the direction is being discarded). 0 outside a tunnel.
    ///
    /// Ask before each read in a tunnel: copy or splice at most this many bytes and
    /// report them with [`Input::TunnelActivity`](crate::Input::TunnelActivity).
    pub fn tunnel_passthrough(&self, from: Side) -> u64 {
        match &self.phase {
            Phase::Tunnel(tunnel) => tunnel.passthrough(from),
            _ => 0,
        }
    }

    /// What the open tunnel has carried so far (bytes read from each side, and data
    /// messages in a frame-aware WebSocket tunnel); `None` outside a tunnel. A few loads:
    /// cheap enough to ask after every read, for a live status page.
    pub fn tunnel_traffic(&self) -> Option<TunnelTraffic> {
        let Phase::Tunnel(tunnel) = &self.phase else {
            return None;
        };
        let messages = tunnel.ws.as_ref().map(|ws| {
            let count = |side: Side| ws.tracker(side).stats().messages;
            (count(Side::Client), count(Side::Upstream))
        });
        Some(TunnelTraffic {
            bytes_client_to_upstream: tunnel.bytes_from[Side::Client.index()],
            bytes_upstream_to_client: tunnel.bytes_from[Side::Upstream.index()],
            messages,
        })
    }

    /// The adapter read `bytes` from `from` and is writing them to the other side (at
    /// most [`tunnel_passthrough`](Self::tunnel_passthrough), checked by the caller).
    pub(crate) fn on_tunnel_activity(&mut self, from: Side, bytes: usize) {
        let Some((tunnel, mut sink)) = self.tunnel_sink() else {
            return;
        };
        tunnel.activity(from, bytes, sink.now);
        if let Some(ws) = &mut tunnel.ws {
            if bytes > 0 {
                ws.last_forwarded = sink.now;
            }
            // Within the budget, so it cannot overrun.
            let _ = ws.trackers[from.index()].payload_forwarded(bytes as u64);
        }
        // Bounded by the tunnel's own route (through the phase's send timeout).
        sink.writing(from.other());
    }

    /// EOF from `from`: shut down writing towards the other side, and end the tunnel
    /// once both directions are finished. In a frame-aware tunnel the other side first
    /// gets Close 1001, if `from` sent no Close frame and left at a frame boundary, and
    /// an upstream that got it is not shut down (the server closes first).
    pub(crate) fn on_tunnel_eof(&mut self, from: Side) {
        let Some((tunnel, mut sink)) = self.tunnel_sink() else {
            return;
        };
        if tunnel.has_eof(from) {
            return;
        }
        let both = tunnel.eof(from, sink.now);
        match &mut tunnel.ws {
            None => {
                sink.push(Output::HalfClose { side: from.other() });
                if both {
                    self.close(CloseReason::BothClosed);
                }
            }
            // Closed by `pump_websocket` once the Close owed to the other side is written.
            Some(ws) => ws.peer_eof(from, &mut sink),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an idle tunnel keeps on the heap (benches/RESULTS.md, "Memory per idle
    /// tunnel"): exact, so that a field added shows here.
    #[test]
    fn a_tunnel_stays_small_and_its_frames_are_boxed() {
        // Inline in the phase: when it started, its protocol and target (one boxed
        // string), and the pointer to the rest.
        assert_eq!(std::mem::size_of::<Tunnel>(), 40);
        // The route, where the protocol ends in the names, when each side was last read,
        // the EOFs, the bytes each way, a drain's deadline, the frames (boxed, in a
        // frame-aware tunnel only).
        assert_eq!(std::mem::size_of::<TunnelState>(), 88);
        // Two trackers, the pings (boxed, on a route that pings), how it is ending (boxed,
        // once it is),
        // when the peers' bytes were last forwarded, the slots for the proxy's own
        // frames towards each side, the masking key, which sides stopped or are gone.
        assert_eq!(std::mem::size_of::<Frames>(), 168);
        // The frame and message counts (64 bits), the control-frame counts (32 bits),
        // the payload left, the room for a split frame head (boxed, only while one is
        // split), the rules and the head's progress.
        assert_eq!(std::mem::size_of::<FrameTracker>(), 56);
        assert_eq!(std::mem::size_of::<pings::Pings>(), 144);
    }
}
