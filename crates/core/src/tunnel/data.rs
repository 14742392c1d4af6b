//! Bytes a frame-aware tunnel is shown ([`Input::TunnelData`](crate::Input::TunnelData)),
//! run through the direction's tracker: forwarded as slices of the read buffer, except an
//! absorbed Pong, whatever follows a violation, and a direction being discarded. A
//! violation closes towards the other side first and towards the offender once the
//! other side's answers are over.

use bytes::{Buf, Bytes, BytesMut};

use super::frames::{Answers, CloseWhy, Ending, EndingKind, Frames, CLOSE_WAIT};
use super::Sink;
use crate::connection::Connection;
use crate::event::Event;
use crate::io::{Output, Side};
use crate::websocket::{Opcode, Step, Violation};

impl Connection {
    /// `data` read from `from` and shown to the core: a read, then followed frame by frame.
    pub(crate) fn on_tunnel_data(&mut self, from: Side, data: BytesMut) {
        let Some((tunnel, sink)) = self.tunnel_sink() else {
            return;
        };
        tunnel.activity(from, data.len(), sink.now);
        self.follow_shown(from, data);
    }

    /// Runs `data` from `from` through its tracker, forwarding what may be forwarded; a
    /// violation stops the direction and closes both sides with 1002, the offender last.
    pub(crate) fn follow_shown(&mut self, from: Side, data: BytesMut) {
        let Some((tunnel, mut sink)) = self.tunnel_sink() else {
            return;
        };
        let other_eof = tunnel.eof[from.other().index()];
        let Some(ws) = tunnel.ws.as_deref_mut() else {
            return;
        };
        if let Some(violation) = ws.follow(from, data, &mut sink) {
            ws.report_violation(from, violation, other_eof, &mut sink);
        }
    }
}

impl Frames {
    /// Follows `data` from `from`: forwards it towards the other side in as few slices as
    /// the frames allow, absorbs a Pong answering the proxy's Ping, drops what a
    /// discarded direction sends. Returns a violation the first time one is found.
    pub(crate) fn follow(
        &mut self,
        from: Side,
        mut data: BytesMut,
        sink: &mut Sink<'_>,
    ) -> Option<Violation> {
        let to = from.other();
        if self.tracker(from).violation().is_some() {
            // Reported already; nothing after it is forwarded.
            return None;
        }
        let keep = !self.discarding(from);
        // The first `run` bytes of `data` are to be forwarded as one slice.
        let mut run = 0;
        let mut found = None;
        while run < data.len() {
            let tracker = &mut self.trackers[from.index()];
            let (len, forward) = match tracker.advance(&data[run..]) {
                Step::NeedMore => {
                    // The tracker holds the rest until the header or control frame is whole.
                    data.truncate(run);
                    break;
                }
                Step::Payload { len } => (len, keep),
                Step::Header { consumed, .. } => {
                    if keep && !tracker.carried().is_empty() {
                        let carried = Bytes::copy_from_slice(tracker.carried());
                        self.flush_run(to, &mut data, &mut run, sink);
                        self.forwarded(to, carried, sink);
                    }
                    (consumed, keep)
                }
                Step::ControlFrame { header, consumed } => {
                    let carried = Bytes::copy_from_slice(tracker.carried());
                    let payload = tracker.control_payload();
                    let absorbed = match header.opcode {
                        Opcode::Pong => payload.is_some_and(|p| self.take_pong(from, &p, sink.now)),
                        Opcode::Close => self.absorbs_close_from(from),
                        _ => false,
                    };
                    if header.opcode == Opcode::Close && self.awaits_answers_from(from) {
                        // Its answers end with it; the offender's Close goes next.
                        self.end_answers(sink.now);
                    }
                    let forward = keep && !absorbed;
                    if forward && !carried.is_empty() {
                        self.flush_run(to, &mut data, &mut run, sink);
                        self.forwarded(to, carried, sink);
                    }
                    (consumed, forward)
                }
                Step::Violation(violation) => {
                    found = Some(violation);
                    data.truncate(run);
                    break;
                }
            };
            if forward {
                run += len;
            } else {
                self.flush_run(to, &mut data, &mut run, sink);
                data.advance(len);
            }
        }
        self.flush_run(to, &mut data, &mut run, sink);
        found
    }

    /// Forwards the pending run of `data` as one slice (zero copy).
    fn flush_run(&mut self, to: Side, data: &mut BytesMut, run: &mut usize, sink: &mut Sink<'_>) {
        if *run > 0 {
            let bytes = data.split_to(*run).freeze();
            *run = 0;
            self.forwarded(to, bytes, sink);
        }
    }

    fn forwarded(&mut self, to: Side, bytes: Bytes, sink: &mut Sink<'_>) {
        if !bytes.is_empty() {
            self.last_forwarded = sink.now;
            sink.write(to, bytes);
        }
    }

    /// `from` broke a rule: the event naming it, then [`Frames::violation`] (both the
    /// owned and the lent path report a violation here); `other_eof` is whether the
    /// other side's connection has ended.
    pub(crate) fn report_violation(
        &mut self,
        from: Side,
        violation: Violation,
        other_eof: bool,
        sink: &mut Sink<'_>,
    ) {
        sink.push(Output::Event(Event::WebSocketViolation {
            side: from,
            rule: violation.rule(),
        }));
        let other_closed = self.peer_closed(from.other(), other_eof);
        self.violation(from, violation, other_closed, sink.now);
    }

    /// `from` broke a rule at `now`: reading from it stops and the other side is owed
    /// Close 1002 (written at its next frame boundary). Unless that side had closed
    /// (`other_closed`) or the tunnel was ending already, what it still sends is forwarded
    /// to `from` (its answers to what it was sent) until its Close, which is absorbed,
    /// its EOF, or 1 s from now; then `from` is owed Close 1002 too, and the tunnel closes
    /// once both are flushed, or 1 s after that.
    pub(crate) fn violation(
        &mut self,
        from: Side,
        violation: Violation,
        other_closed: bool,
        now: std::time::Instant,
    ) {
        self.stopped[from.index()] = true;
        // A violation by the side whose answers were awaited ends that wait.
        self.end_answers(now);
        let why = CloseWhy::Violation(from, violation);
        self.queue_close(from.other(), why);
        let fresh = matches!(
            self.ending(),
            None | Some(Ending {
                kind: EndingKind::PeerLeft(_),
                ..
            })
        );
        if fresh && !other_closed {
            self.ending = Some(Box::new(Ending {
                kind: EndingKind::Violation {
                    offender: from,
                    answers: Answers::Awaited,
                },
                by: Some(now + CLOSE_WAIT),
            }));
            return;
        }
        self.queue_close(from, why);
        let kind = EndingKind::Violation {
            offender: from,
            answers: Answers::None,
        };
        self.begin(kind, Some(now + CLOSE_WAIT));
    }
}
