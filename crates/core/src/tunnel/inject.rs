//! Frames of the proxy's own in a frame-aware tunnel, and how such a tunnel ends.
//!
//! The injection rule: a Ping or Close towards `to` is written only when the direction
//! that writes into `to` is at a frame boundary and nothing written towards `to` is
//! unflushed (with a masking key at hand, towards the upstream). Until then it waits in
//! the slot of its side, and [`Connection::pump_websocket`], run after every input,
//! writes it the first time both hold.

use super::frames::{Answers, CloseWhy, EndingKind, Frames, HalfClose, CLOSE_WAIT};
use super::Sink;
use crate::connection::Connection;
use crate::event::CloseReason;
use crate::io::{Output, Side};
use crate::state::Phase;
use crate::websocket::encode;

impl Connection {
    /// After every input to a frame-aware tunnel: writes the waiting frames the rule
    /// allows, and closes a tunnel whose ending is complete. After almost every input
    /// there is nothing to do, which is told inline, before the sink is built.
    #[inline(always)]
    pub(crate) fn pump_websocket(&mut self) {
        match &self.phase {
            Phase::Tunnel(tunnel) if tunnel.ws.as_ref().is_some_and(|ws| !ws.quiet(tunnel.eof)) => {
                self.pump_websocket_frames();
            }
            _ => {}
        }
    }

    /// [`pump_websocket`](Self::pump_websocket) when there is something to do.
    #[inline(never)]
    fn pump_websocket_frames(&mut self) {
        let Some((tunnel, mut sink)) = self.tunnel_sink() else {
            return;
        };
        let eof = tunnel.eof;
        let Some(ws) = tunnel.ws.as_deref_mut() else {
            return;
        };
        for to in [Side::Client, Side::Upstream] {
            let pings = ws.pings_allowed(to, eof);
            ws.inject_towards(to, pings, &mut sink);
        }
        let flushed = ws.closes_flushed(|side| sink.writes.pending(side));
        let both_eof = eof[0] && eof[1];
        let reason = match ws.ending().map(|ending| ending.kind) {
            // Both directions are over: the tunnel ends as a byte tunnel does, once the
            // Close owed to a side that stayed is written.
            None if both_eof => Some(CloseReason::BothClosed),
            Some(EndingKind::PeerLeft(_)) if both_eof && flushed => Some(CloseReason::BothClosed),
            // The upstream left and the client answered the proxy's Close: the closing
            // handshake with the client is complete, and its server (the proxy) closes
            // first (RFC 6455 §7.1.1), once what the client sent before is written. Towards
            // an upstream that stayed, the proxy is the client and waits for its EOF.
            Some(EndingKind::PeerLeft(Side::Upstream))
                if flushed
                    && ws.tracker(Side::Client).saw_close()
                    && !sink.writes.pending(Side::Upstream) =>
            {
                Some(CloseReason::BothClosed)
            }
            // Otherwise it ends when the wait runs out.
            None | Some(EndingKind::PeerLeft(_)) => None,
            // The other side's answers still go to the offender.
            Some(EndingKind::Violation {
                answers: Answers::Awaited,
                ..
            }) => None,
            Some(EndingKind::Drain) => (flushed
                && ws.peer_closed(Side::Client, eof[0])
                && ws.peer_closed(Side::Upstream, eof[1]))
            .then_some(CloseReason::Shutdown),
            Some(kind) => flushed.then(|| kind.reason()),
        };
        if let Some(reason) = reason {
            self.close(reason);
        }
    }

    /// A masking key from the caller, for the next frame towards the upstream.
    pub(crate) fn on_masking_key(&mut self, key: [u8; 4]) {
        if let Some((tunnel, _)) = self.tunnel_sink() {
            if let Some(ws) = &mut tunnel.ws {
                ws.key = Some(key);
            }
        }
    }

    /// The wait of a frame-aware tunnel's ending ran out. After a violation whose other
    /// side's answers were awaited, the offender is owed its Close 1002 now and the
    /// tunnel waits up to 1 s more; otherwise returns the reason to close with.
    pub(crate) fn on_ending_wait_over(&mut self) -> Option<CloseReason> {
        let now = self.now;
        let Some((tunnel, _)) = self.tunnel_sink() else {
            return Some(CloseReason::Shutdown);
        };
        if let Some(ws) = tunnel.ws.as_deref_mut() {
            if let Some(EndingKind::Violation {
                answers: Answers::Awaited,
                ..
            }) = ws.ending().map(|ending| ending.kind)
            {
                ws.end_answers(now);
                return None;
            }
        }
        Some(tunnel.ending_reason().unwrap_or(CloseReason::Shutdown))
    }

    /// The frames of a frame-aware tunnel, if this is one.
    fn frames_mut(&mut self) -> Option<&mut Frames> {
        self.tunnel_sink()?.0.ws.as_deref_mut()
    }

    /// `side` has been silent for `ws_ping_interval`: a Ping is due towards it.
    pub(crate) fn on_ping_due(&mut self, side: Side) {
        if let Some(ws) = self.frames_mut() {
            ws.towards(side).ping_due = true;
        }
    }

    /// `side` sent nothing within `ws_ping_timeout` of the proxy's Ping: it is dead. The
    /// other side gets Close 1001 (if `side` left it at a frame boundary), then the
    /// tunnel closes once that is flushed, or 1 s from now.
    pub(crate) fn on_unresponsive(&mut self, side: Side) {
        let now = self.now;
        let Some(ws) = self.frames_mut() else {
            return;
        };
        if let Some(pings) = &mut ws.pings {
            pings.awaiting[side.index()] = false;
        }
        ws.stopped[side.index()] = true;
        if ws.awaits_answers_from(side) {
            // A dead peer has no more answers; the offender gets its 1002.
            ws.end_answers(now);
        }
        if ws.tracker(side).at_frame_boundary() {
            let why = CloseWhy::StoppedAnswering(side);
            ws.queue_close(side.other(), why);
        }
        ws.begin(EndingKind::Unresponsive(side), Some(now + CLOSE_WAIT));
    }

    /// The end of a drain's grace. A frame-aware tunnel sends Close 1001 both ways and
    /// waits up to 1 s for the peers' Close frames; a byte tunnel closes now. Returns
    /// whether the tunnel is frame-aware (and so was not closed).
    pub(crate) fn on_drain_grace_over(&mut self) -> bool {
        let now = self.now;
        let Some((tunnel, _)) = self.tunnel_sink() else {
            return false;
        };
        tunnel.drain_deadline = None;
        let Some(ws) = tunnel.ws.as_deref_mut() else {
            return false;
        };
        // A violation's offender gets its 1002, not the drain's 1001.
        ws.end_answers(now);
        for to in [Side::Client, Side::Upstream] {
            ws.queue_close(to, CloseWhy::Draining);
        }
        ws.begin(EndingKind::Drain, Some(now + CLOSE_WAIT));
        true
    }

    /// A write towards `to` failed in a frame-aware tunnel: that peer is gone; the other
    /// gets Close 1001 (1011 when the upstream failed), if `to` sent no Close and left it
    /// at a frame boundary, and the tunnel closes once that is flushed or 1 s from now.
    /// Returns the reason to close with at once, if any.
    pub(crate) fn on_tunnel_write_failed(&mut self, to: Side) -> Option<CloseReason> {
        let reason = EndingKind::WriteFailed(to).reason();
        let now = self.now;
        let Some((tunnel, sink)) = self.tunnel_sink() else {
            return Some(reason);
        };
        let Some(ws) = tunnel.ws.as_deref_mut() else {
            return Some(reason);
        };
        sink.writes.forget(to);
        if ws.gone[to.other().index()] {
            // Both peers are gone: nobody is left to tell.
            return Some(reason);
        }
        if ws.gone[to.index()] {
            return None;
        }
        ws.gone[to.index()] = true;
        ws.stopped[to.index()] = true;
        // Either peer gone ends a violation's wait: no more answers, or nobody to get them.
        ws.end_answers(now);
        let towards = ws.towards(to);
        towards.close = None;
        towards.ping_due = false;
        if towards.half_close == HalfClose::Deferred {
            towards.half_close = HalfClose::Open;
        }
        let tracker = ws.tracker(to);
        if !tracker.saw_close() && tracker.at_frame_boundary() {
            let why = match to {
                Side::Upstream => CloseWhy::UpstreamFailed,
                Side::Client => CloseWhy::WentAway(Side::Client),
            };
            ws.queue_close(to.other(), why);
        }
        ws.begin(EndingKind::WriteFailed(to), Some(now + CLOSE_WAIT));
        None
    }
}

impl Frames {
    /// Writes what waits in the slots towards `to`, if the injection rule allows now.
    fn inject_towards(&mut self, to: Side, pings_allowed: bool, sink: &mut Sink<'_>) {
        if !self.can_write(to) {
            let towards = self.towards(to);
            towards.close = None;
            towards.ping_due = false;
            return;
        }
        if !self.tracker(to.other()).at_frame_boundary() || sink.writes.pending(to) {
            return;
        }
        if let Some(why) = self.towards[to.index()].close {
            if self.peer_close_forwarded(to) {
                // The other peer's Close went that way first: one Close is enough.
                self.towards(to).close = None;
                return self.release_half_close(to, sink);
            }
            let Some(key) = self.take_key(to) else {
                return;
            };
            let frame = encode::close_with(to, why.code(), why, key);
            self.write_own(to, frame, sink);
            let towards = self.towards(to);
            towards.close = None;
            towards.close_sent = true;
            towards.ping_due = false;
            if let Some(ending) = self.ending.as_deref_mut() {
                if matches!(ending.kind, EndingKind::PeerLeft(_)) {
                    ending.by.get_or_insert(sink.now + CLOSE_WAIT);
                }
            }
            return self.release_half_close(to, sink);
        }
        if !self.towards[to.index()].ping_due {
            return;
        }
        if !pings_allowed {
            self.towards(to).ping_due = false;
            return;
        }
        let Some(key) = self.take_key(to) else {
            return;
        };
        // Allowed only on a route that pings.
        let Some(pings) = &mut self.pings else {
            return;
        };
        let payload = pings.next_payload();
        // Eight bytes always fit a control frame.
        let Ok(frame) = encode::ping(to, &payload, key) else {
            return;
        };
        pings.sent(to, payload, sink.now);
        self.write_own(to, frame, sink);
        self.towards(to).ping_due = false;
    }

    /// The key for a frame towards `to`: none is needed towards the client; towards the
    /// upstream the one at hand, used once (`None` until the caller gives one).
    fn take_key(&mut self, to: Side) -> Option<[u8; 4]> {
        match to {
            Side::Client => Some([0; 4]),
            Side::Upstream => self.key.take(),
        }
    }

    fn write_own(&mut self, to: Side, frame: bytes::Bytes, sink: &mut Sink<'_>) {
        sink.write(to, frame);
        if to == Side::Upstream {
            sink.push(Output::NeedMaskingKey);
        }
    }

    /// EOF from `from`. Unless `from` sent its Close frame (or stopped inside a frame),
    /// the other side is owed Close 1001. Towards the client, the half-close follows
    /// that Close: the proxy is its server, which closes first. Towards the upstream it
    /// does not: the proxy is the client there and leaves the first close to the server
    /// (RFC 6455 §7.1.1), so that the server keeps the `TIME_WAIT`, not the proxy's
    /// ports; the tunnel ends at the server's EOF, or when the wait for it runs out.
    pub(crate) fn peer_eof(&mut self, from: Side, sink: &mut Sink<'_>) {
        let to = from.other();
        if self.awaits_answers_from(from) {
            // No more answers: the offender gets its 1002 (and, if it is the client, the
            // half-close after it).
            self.end_answers(sink.now);
        }
        let tracker = self.tracker(from);
        if !tracker.saw_close()
            && tracker.at_frame_boundary()
            && self.queue_close(to, CloseWhy::WentAway(from))
        {
            self.begin(EndingKind::PeerLeft(from), None);
        }
        if self.towards[to.index()].close.is_some() {
            if to == Side::Client {
                self.towards(to).half_close = HalfClose::Deferred;
            }
        } else if self.can_write(to) {
            self.towards(to).half_close = HalfClose::Shut;
            sink.push(Output::HalfClose { side: to });
        }
    }

    /// The Close towards `to` is written (or dropped): a half-close waiting for it follows.
    fn release_half_close(&mut self, to: Side, sink: &mut Sink<'_>) {
        let towards = self.towards(to);
        if towards.half_close == HalfClose::Deferred {
            towards.half_close = HalfClose::Shut;
            sink.push(Output::HalfClose { side: to });
        }
    }
}
