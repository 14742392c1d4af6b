//! [`Frames`]: what a frame-aware WebSocket tunnel knows besides bytes and deadlines: a
//! [`FrameTracker`] per direction, the proxy's frames waiting for a frame boundary, its
//! Pings and their answers, and how the tunnel is ending. Plain state and decisions; the
//! inputs that drive it are in `data.rs` (bytes) and `inject.rs` (frames of the proxy's
//! own, endings).

use std::fmt;
use std::time::{Duration, Instant};

use super::pings::Pings;
use crate::event::{CloseReason, WebSocketRecord};
use crate::io::Side;
use crate::timer::{earlier, Deadline};
use crate::websocket::{CloseCode, FrameTracker, Rules, Violation};

/// How long a tunnel that is ending waits for the Close frames it is owed (or for its
/// own to be written) before it closes anyway.
pub(crate) const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The frame-aware part of a WebSocket tunnel. Boxed in the tunnel, so that a byte
/// tunnel does not carry its size.
#[derive(Debug)]
pub(crate) struct Frames {
    /// One per direction, indexed by the side the frames come from.
    pub trackers: [FrameTracker; 2],
    /// The proxy's Pings, on a route that sends them.
    pub pings: Option<Box<Pings>>,
    /// The masking key for the next frame of the proxy's own towards the upstream.
    pub key: Option<[u8; 4]>,
    /// Indexed by the side the proxy writes to.
    pub towards: [Towards; 2],
    /// When a byte of the peers' own was last forwarded (`tunnel_idle_timeout` counts
    /// only those: an absorbed Pong is not traffic).
    pub last_forwarded: Instant,
    /// How the tunnel is ending. Boxed: 16 bytes less in every idle tunnel (which puts
    /// `Frames` in a 176-byte allocator chunk instead of a 192-byte one), for one
    /// allocation at the end of a tunnel that ends with a wait (a Close exchange, a
    /// peer that left, a violation).
    pub ending: Option<Box<Ending>>,
    /// Reading from this side stopped: it broke a rule, stopped answering, or failed.
    pub stopped: [bool; 2],
    /// This side cannot be written to any more (a write to it failed).
    pub gone: [bool; 2],
}

/// What the proxy writes, or waits to write, towards one side: 7 bytes, so that both
/// sides' slots, the key and the flags of `Frames` fill one word and a half.
#[derive(Debug, Default)]
pub(crate) struct Towards {
    /// A Ping is due (the slot for one Ping).
    pub ping_due: bool,
    /// A Close of the proxy's own is waiting, for this reason (the slot for one Close;
    /// it replaces a Ping). Its code follows from the reason.
    pub close: Option<CloseWhy>,
    /// The proxy's own Close was emitted: nothing more is forwarded towards this side.
    pub close_sent: bool,
    /// Where the half-close towards this side is.
    pub half_close: HalfClose,
}

/// The half-close towards a side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum HalfClose {
    /// Not asked for.
    #[default]
    Open,
    /// Waits for the Close in the slot to be written.
    Deferred,
    /// Emitted: nothing more can be written.
    Shut,
}

/// Why the proxy closes: the reason text of its Close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseWhy {
    /// The side ended its connection without a Close frame.
    WentAway(Side),
    /// A write to the upstream failed.
    UpstreamFailed,
    /// The side did not answer the proxy's Ping.
    StoppedAnswering(Side),
    /// A graceful drain ended.
    Draining,
    /// The side broke a rule.
    Violation(Side, Violation),
}

impl CloseWhy {
    /// The Close frame's code: 1002 for a broken rule, 1011 for a failed upstream,
    /// 1001 (going away) otherwise.
    pub(crate) fn code(self) -> CloseCode {
        match self {
            CloseWhy::Violation(_, violation) => violation.close_code(),
            CloseWhy::UpstreamFailed => CloseCode::INTERNAL_ERROR,
            CloseWhy::WentAway(_) | CloseWhy::StoppedAnswering(_) | CloseWhy::Draining => {
                CloseCode::GOING_AWAY
            }
        }
    }
}

/// The reason text of the proxy's Close, written into the frame as it is formatted.
impl fmt::Display for CloseWhy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = |side: Side| match side {
            Side::Client => "client",
            Side::Upstream => "upstream",
        };
        match *self {
            CloseWhy::WentAway(side) => write!(f, "{} went away", who(side)),
            CloseWhy::UpstreamFailed => f.write_str("upstream failed"),
            CloseWhy::StoppedAnswering(side) => write!(f, "{} stopped answering", who(side)),
            CloseWhy::Draining => f.write_str("proxy going away"),
            CloseWhy::Violation(side, violation) => {
                write!(f, "protocol error by the {}: {violation}", who(side))
            }
        }
    }
}

/// How a frame-aware tunnel is ending, and until when it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ending {
    pub kind: EndingKind,
    /// The close happens then at the latest (unset until the wait has begun).
    pub by: Option<Instant>,
}

/// After a violation, what the other side still sends towards the offender: its answers
/// to what it had already been sent, forwarded until its Close (absorbed: the offender
/// gets the proxy's Close 1002 instead), its EOF, or the wait's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answers {
    /// The other side had closed already: nothing is awaited or absorbed.
    None,
    /// Still forwarded; the offender's Close 1002 waits.
    Awaited,
    /// Over: the offender's Close 1002 was queued (a late Close of the other side's is
    /// still absorbed).
    Over,
}

/// Why a frame-aware tunnel is ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndingKind {
    /// The side's connection ended without its Close frame; the other side was sent
    /// Close 1001, and the tunnel ends as a byte tunnel does, 1 s after that at most.
    PeerLeft(Side),
    /// A write to the side failed.
    WriteFailed(Side),
    /// The `offender` broke a rule: the other side is sent Close 1002 at once, the
    /// offender its own once the other side's answers are over (`answers`).
    Violation { offender: Side, answers: Answers },
    /// The side did not answer the proxy's Ping.
    Unresponsive(Side),
    /// The grace of a graceful drain is over: Close 1001 both ways.
    Drain,
}

impl EndingKind {
    pub(crate) fn reason(self) -> CloseReason {
        match self {
            EndingKind::PeerLeft(Side::Client) | EndingKind::WriteFailed(Side::Client) => {
                CloseReason::ClientClosed
            }
            EndingKind::PeerLeft(Side::Upstream) | EndingKind::WriteFailed(Side::Upstream) => {
                CloseReason::UpstreamClosed
            }
            EndingKind::Violation { .. } => CloseReason::ProtocolError,
            EndingKind::Unresponsive(Side::Client) => CloseReason::ClientUnresponsive,
            EndingKind::Unresponsive(Side::Upstream) => CloseReason::UpstreamUnresponsive,
            EndingKind::Drain => CloseReason::Shutdown,
        }
    }
}

impl Frames {
    /// A tunnel's frames from its start at `now`: checked by `rules`, with Pings every
    /// `ping_interval` of silence (none if `None`), a peer dead `ping_timeout` after one.
    pub(crate) fn new(
        rules: Rules,
        ping_interval: Option<Duration>,
        ping_timeout: Duration,
        now: Instant,
    ) -> Self {
        Frames {
            trackers: [
                FrameTracker::new(Side::Client, rules),
                FrameTracker::new(Side::Upstream, rules),
            ],
            pings: ping_interval.map(|interval| Box::new(Pings::new(interval, ping_timeout))),
            key: None,
            towards: Default::default(),
            last_forwarded: now,
            ending: None,
            stopped: [false; 2],
            gone: [false; 2],
        }
    }

    /// How the tunnel is ending, if it is.
    pub(crate) fn ending(&self) -> Option<Ending> {
        self.ending.as_deref().copied()
    }

    pub(crate) fn tracker(&self, from: Side) -> &FrameTracker {
        &self.trackers[from.index()]
    }

    pub(crate) fn towards(&mut self, to: Side) -> &mut Towards {
        &mut self.towards[to.index()]
    }

    /// Whether the proxy may still write towards `to`.
    pub(crate) fn can_write(&self, to: Side) -> bool {
        !self.gone[to.index()] && (self.towards[to.index()].half_close != HalfClose::Shut)
    }

    /// Whether what `from` sends is parsed and dropped rather than forwarded: the proxy
    /// closed towards the other side, that side is gone, or `from` was stopped.
    pub(crate) fn discarding(&self, from: Side) -> bool {
        let to = from.other().index();
        self.towards[to].close_sent || self.gone[to] || self.stopped[from.index()]
    }

    /// How many bytes from `from` may go past the core.
    pub(crate) fn passthrough(&self, from: Side) -> u64 {
        if self.discarding(from) {
            0
        } else {
            self.tracker(from).payload_remaining()
        }
    }

    /// Whether the WebSocket's closing has begun: a peer sent a Close frame, or the
    /// tunnel is ending. No more Pings then.
    fn closing(&self) -> bool {
        self.ending.is_some() || self.trackers.iter().any(|t| t.saw_close())
    }

    /// Whether a Ping may be sent to `to` now, given which sides sent EOF.
    pub(crate) fn pings_allowed(&self, to: Side, eof: [bool; 2]) -> bool {
        self.pings.is_some()
            && !self.closing()
            && !eof[0]
            && !eof[1]
            && !self.gone[to.index()]
            && !self.stopped[to.index()]
    }

    /// Something came from `from`: the wait for an answer is over, and a Ping that fell
    /// due for its silence is not needed any more.
    pub(crate) fn heard(&mut self, from: Side) {
        self.towards(from).ping_due = false;
        if let Some(pings) = &mut self.pings {
            pings.awaiting[from.index()] = false;
        }
    }

    /// Puts a Close of the proxy's own in the slot towards `to`, unless one is there or
    /// was sent, a Close from the other peer went that way already, or `to` cannot be
    /// written to. Returns whether it did.
    pub(crate) fn queue_close(&mut self, to: Side, why: CloseWhy) -> bool {
        let towards = &self.towards[to.index()];
        if !self.can_write(to) || towards.close_sent || towards.close.is_some() {
            return false;
        }
        if self.peer_close_forwarded(to) {
            return false;
        }
        let towards = self.towards(to);
        towards.close = Some(why);
        towards.ping_due = false;
        true
    }

    /// Whether the other peer's Close frame went towards `to` (one Close each way): it
    /// was seen, and not absorbed by a violation's ending.
    pub(crate) fn peer_close_forwarded(&self, to: Side) -> bool {
        self.tracker(to.other()).saw_close() && !self.absorbs_close_from(to.other())
    }

    /// Whether a Close frame from `from` is absorbed, not forwarded: it answers a Close
    /// of the proxy's own. After the other side broke a rule while `from` had not closed,
    /// the offender gets the proxy's Close 1002, not `from`'s; after the other side left
    /// without a Close, `from` was sent the proxy's Close 1001, and the side that left is
    /// in no closing handshake to be answered.
    pub(crate) fn absorbs_close_from(&self, from: Side) -> bool {
        match self.ending().map(|ending| ending.kind) {
            Some(EndingKind::Violation { offender, answers }) => {
                offender == from.other() && answers != Answers::None
            }
            Some(EndingKind::PeerLeft(gone)) => gone == from.other(),
            _ => false,
        }
    }

    /// Whether the tunnel is forwarding the answers of `from` to a side that broke a
    /// rule, and the offender's Close waits for them to end.
    pub(crate) fn awaits_answers_from(&self, from: Side) -> bool {
        matches!(
            self.ending(),
            Some(Ending {
                kind: EndingKind::Violation {
                    offender,
                    answers: Answers::Awaited,
                },
                ..
            }) if offender == from.other()
        )
    }

    /// The answers awaited after a violation are over at `now` (the other side's Close,
    /// its EOF, a side gone, the wait run out): the offender is owed Close 1002, and the
    /// tunnel waits up to 1 s more for it to be written. Nothing when none are awaited.
    pub(crate) fn end_answers(&mut self, now: Instant) {
        let Some(Ending {
            kind: EndingKind::Violation { offender, answers },
            by,
        }) = self.ending.as_deref_mut()
        else {
            return;
        };
        if *answers != Answers::Awaited {
            return;
        }
        *answers = Answers::Over;
        *by = Some(now + CLOSE_WAIT);
        let offender = *offender;
        if let Some(violation) = self.tracker(offender).violation() {
            let why = CloseWhy::Violation(offender, violation);
            self.queue_close(offender, why);
        }
    }

    /// The tunnel is ending for `kind`, by `by` at the latest. An ending already under
    /// way stays, unless it is only a peer having left (whose wait is the weakest).
    pub(crate) fn begin(&mut self, kind: EndingKind, by: Option<Instant>) {
        match self.ending.as_deref_mut() {
            None => self.ending = Some(Box::new(Ending { kind, by })),
            Some(ending) if matches!(ending.kind, EndingKind::PeerLeft(_)) => {
                *ending = Ending { kind, by };
            }
            Some(_) => {}
        }
    }

    /// Whether a Pong from `from` carrying `payload` answers the proxy's last Ping to it;
    /// if so it is counted, with its round trip, and absorbed.
    pub(crate) fn take_pong(&mut self, from: Side, payload: &[u8], now: Instant) -> bool {
        self.pings
            .as_mut()
            .is_some_and(|pings| pings.take_pong(from, payload, now))
    }

    /// Whether `Connection::pump_websocket` has nothing to do after
    /// an input: no frame of the proxy's own waits in a slot, no ending is under way and
    /// neither side sent EOF. True after almost every read, so it is checked first.
    pub(crate) fn quiet(&self, eof: [bool; 2]) -> bool {
        self.ending.is_none()
            && !eof[0]
            && !eof[1]
            && self
                .towards
                .iter()
                .all(|towards| towards.close.is_none() && !towards.ping_due)
    }

    /// Whether every Close of the proxy's own was written (or dropped) and flushed.
    pub(crate) fn closes_flushed(&self, pending: impl Fn(Side) -> bool) -> bool {
        [Side::Client, Side::Upstream].into_iter().all(|side| {
            let towards = &self.towards[side.index()];
            towards.close.is_none() && !(towards.close_sent && pending(side))
        })
    }

    /// Whether `side` has closed its part of the WebSocket (a Close frame, or its
    /// connection's end).
    pub(crate) fn peer_closed(&self, side: Side, eof: bool) -> bool {
        eof || self.gone[side.index()] || self.tracker(side).saw_close()
    }

    /// The earliest of the frame-aware deadlines: a Ping falling due (`last_read` is when
    /// each side was last heard from), a pinged side's answer, the end of an ending.
    pub(crate) fn deadline(
        &self,
        last_read: [Instant; 2],
        eof: [bool; 2],
    ) -> Option<(Deadline, Instant)> {
        let mut next = self
            .ending()
            .and_then(|e| e.by)
            .map(|at| (Deadline::WebSocketEnding, at));
        // Without pings (the default) none falls due or awaits an answer.
        let Some(pings) = &self.pings else {
            return next;
        };
        for side in [Side::Client, Side::Upstream] {
            let i = side.index();
            let due = match (pings.awaiting[i], pings.last_ping[i]) {
                (true, Some((_, at))) => Some((Deadline::PingTimeout(side), at + pings.timeout)),
                (false, _) if !self.towards[i].ping_due && self.pings_allowed(side, eof) => {
                    Some((Deadline::PingDue(side), last_read[i] + pings.interval))
                }
                _ => None,
            };
            next = earlier(next, due);
        }
        next
    }

    pub(crate) fn record(&self) -> WebSocketRecord {
        WebSocketRecord {
            client: self.tracker(Side::Client).stats(),
            upstream: self.tracker(Side::Upstream).stats(),
            pings_sent: self.pings.as_ref().map_or(0, |p| p.sent),
            pongs_received: self.pings.as_ref().map_or(0, |p| p.pongs_received),
            last_ping_rtt: self.pings.as_ref().and_then(|p| p.last_rtt),
            min_ping_rtt: self.pings.as_ref().and_then(|p| p.min_rtt),
        }
    }
}
