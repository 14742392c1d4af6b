//! Reads a frame-aware tunnel is lent rather than given
//! ([`Connection::handle_tunnel_read`]): the common case, a read that starts at a frame
//! boundary and holds whole, valid frames the proxy forwards, advances the tracker and
//! hands back "forward the first `n` bytes as they are", with no allocation, no copy and
//! no output for the peers' bytes. Anything else in the read (an absorbed Pong, a
//! violation, a direction being discarded, a header split across reads) goes, from
//! where the fast path stopped, through the owned path (`data.rs`), so both paths give
//! the same bytes in the same order (a property test runs them side by side).

use bytes::BytesMut;

use super::frames::Frames;
use super::Sink;
use crate::connection::Connection;
use crate::io::Side;
use crate::websocket::{Opcode, Step, Violation};

/// Where the fast path over a lent read stopped.
enum Stop {
    /// At the read's end, or inside a header or control frame the tracker now holds.
    Done,
    /// A Pong answering the proxy's Ping was absorbed; the bytes from this offset on are
    /// left to the owned path.
    AbsorbedBefore(usize),
    /// A frame broke a rule; nothing from it on is forwarded.
    Violation(Violation),
}

impl Connection {
    /// `data`, read from `from` and lent to the core: returns how many of its first bytes
    /// the caller forwards as they are, before the outputs this call queued.
    pub(crate) fn on_tunnel_read(&mut self, from: Side, data: &[u8]) -> usize {
        // The forwarded prefix goes before this call's outputs, so none may be waiting.
        let undrained = !self.out.is_empty();
        let Some((tunnel, mut sink)) = self.tunnel_sink() else {
            return 0;
        };
        tunnel.activity(from, data.len(), sink.now);
        let other_eof = tunnel.eof[from.other().index()];
        let Some(ws) = tunnel.ws.as_deref_mut() else {
            return 0;
        };
        if undrained || !ws.lendable(from) {
            self.follow_shown(from, BytesMut::from(data));
            return 0;
        }
        let (forward, stop) = ws.follow_lent(from, data, &mut sink);
        match stop {
            Stop::Done => {}
            Stop::AbsorbedBefore(rest) => self.follow_shown(from, BytesMut::from(&data[rest..])),
            Stop::Violation(violation) => {
                ws.report_violation(from, violation, other_eof, &mut sink);
            }
        }
        forward
    }
}

impl Frames {
    /// Whether a read from `from` may start on the fast path: the direction is forwarded
    /// (not discarded nor stopped by a violation) and no partial header or control frame
    /// is held, whose earlier bytes would have to go before the read's; and no ending
    /// is under way (after a violation the other side's Close is absorbed, not
    /// forwarded: the owned path decides that).
    fn lendable(&self, from: Side) -> bool {
        let tracker = self.tracker(from);
        self.ending.is_none()
            && tracker.violation().is_none()
            && !self.discarding(from)
            && !tracker.holds_partial_frame()
    }

    /// Runs `data` through the tracker for as long as every step forwards its bytes, so
    /// that they form one prefix of `data`; returns its length and why it stopped.
    fn follow_lent(&mut self, from: Side, data: &[u8], sink: &mut Sink<'_>) -> (usize, Stop) {
        let mut run = 0;
        let mut stop = Stop::Done;
        while run < data.len() {
            let tracker = &mut self.trackers[from.index()];
            run += tracker.advance_data_frames(&data[run..]);
            if run == data.len() {
                break;
            }
            let used = match tracker.advance(&data[run..]) {
                Step::NeedMore => break,
                Step::Payload { len } => len,
                Step::Header { consumed, .. } => consumed,
                Step::ControlFrame { header, consumed } => {
                    let payload = tracker.control_payload();
                    let absorbed = header.opcode == Opcode::Pong
                        && payload.is_some_and(|p| self.take_pong(from, &p, sink.now));
                    if absorbed {
                        stop = Stop::AbsorbedBefore(run + consumed);
                        break;
                    }
                    consumed
                }
                Step::Violation(violation) => {
                    stop = Stop::Violation(violation);
                    break;
                }
            };
            // Every frame head begun in this read is whole in it or held at its end, so
            // nothing from an earlier read is ever carried here.
            debug_assert!(self.tracker(from).carried().is_empty());
            run += used;
        }
        if run > 0 {
            self.last_forwarded = sink.now;
            sink.writing(from.other());
        }
        (run, stop)
    }
}
