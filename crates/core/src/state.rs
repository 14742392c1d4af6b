//! The connection's phases and every legal transition between them, in one table (as
//! h11's `_state.py`): [`TRANSITIONS`] is the rule, [`next`] reads it, and
//! [`Phase::take`] is the only code that changes a phase, moving each phase's data into
//! the next. docs/ARCHITECTURE.md §Phases holds the same table, checked by a test below.

use std::time::Instant;

use crate::exchange::Exchange;
use crate::request::Reading;
use crate::tunnel::Tunnel;

/// Coarse state of a [`Connection`](crate::Connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateKind {
    /// Waiting for (or reading) a request head.
    ReadingHead,
    /// A request head was accepted; waiting for the upstream connection.
    Connecting,
    /// Sending the request and forwarding its response.
    Exchange,
    /// Copying bytes both ways after a validated `101`.
    Tunnel,
    /// Over; no more input is accepted.
    Closed,
}

/// What moves a connection from one phase to another: the name of a [`Step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StepKind {
    /// A request head was accepted and routed.
    HeadAccepted,
    /// The upstream connection is ready.
    Connected,
    /// A reused upstream connection closed before answering; a fresh one is asked for.
    Reconnect,
    /// The exchange ended and the client connection is kept alive.
    KeepAlive,
    /// A validated `101`: the connection becomes a tunnel.
    Switched,
    /// The connection ends (normally, by error, or by deadline).
    Close,
}

impl StepKind {
    /// The step's name, for events.
    pub(crate) fn name(self) -> &'static str {
        match self {
            StepKind::HeadAccepted => "HeadAccepted",
            StepKind::Connected => "Connected",
            StepKind::Reconnect => "Reconnect",
            StepKind::KeepAlive => "KeepAlive",
            StepKind::Switched => "Switched",
            StepKind::Close => "Close",
        }
    }
}

/// Every legal transition: from, step, to. Anything else is a bug in the core.
pub(crate) const TRANSITIONS: &[(StateKind, StepKind, StateKind)] = {
    use StateKind::*;
    use StepKind::*;
    &[
        (ReadingHead, HeadAccepted, Connecting),
        (ReadingHead, Close, Closed),
        (Connecting, Connected, Exchange),
        (Connecting, Close, Closed),
        (Exchange, Reconnect, Connecting),
        (Exchange, KeepAlive, ReadingHead),
        (Exchange, Switched, Tunnel),
        (Exchange, Close, Closed),
        (Tunnel, Close, Closed),
    ]
};

/// Where `step` leads from `from`, by [`TRANSITIONS`]; `None` when it is illegal.
pub(crate) fn next(from: StateKind, step: StepKind) -> Option<StateKind> {
    TRANSITIONS
        .iter()
        .find(|(f, s, _)| *f == from && *s == step)
        .map(|(_, _, to)| *to)
}

/// The phase of a connection, owning what only that phase has: "Tunnel" and "there is a
/// tunnel" cannot disagree.
#[derive(Debug)]
pub(crate) enum Phase {
    /// Waiting for, or reading, a request head.
    ReadingHead(Reading),
    /// A request head was accepted; its upstream connection must be ready by `deadline`
    /// (`connect_timeout`).
    Connecting {
        /// The exchange that waits for the connection.
        exchange: Box<Exchange>,
        /// When the attempt is given up.
        deadline: Instant,
    },
    /// Sending the request and forwarding its response. Boxed: an idle connection and a
    /// tunnel need not carry its size.
    Exchange(Box<Exchange>),
    /// Copying bytes both ways after a validated `101`. Inline, but only what fits in
    /// the room `ReadingHead` takes anyway (the rest of it is boxed).
    Tunnel(Tunnel),
    /// Over.
    Closed,
}

/// A step with what the phase it leads to needs.
#[derive(Debug)]
pub(crate) enum Step {
    /// A request head became this exchange, whose connection must be ready by `connect_by`.
    HeadAccepted {
        /// The new exchange.
        exchange: Box<Exchange>,
        /// Its connect deadline.
        connect_by: Instant,
    },
    /// The upstream connection is ready.
    Connected,
    /// A fresh connection is asked for, to be ready by `connect_by`.
    Reconnect {
        /// The new attempt's connect deadline.
        connect_by: Instant,
    },
    /// The exchange ended; the client may send its next request until `idle_until`.
    KeepAlive {
        /// The `idle_timeout` deadline.
        idle_until: Instant,
    },
    /// A validated `101` opened this tunnel.
    Switched(Tunnel),
    /// The connection ends.
    Close,
}

impl Step {
    pub(crate) fn kind(&self) -> StepKind {
        match self {
            Step::HeadAccepted { .. } => StepKind::HeadAccepted,
            Step::Connected => StepKind::Connected,
            Step::Reconnect { .. } => StepKind::Reconnect,
            Step::KeepAlive { .. } => StepKind::KeepAlive,
            Step::Switched(_) => StepKind::Switched,
            Step::Close => StepKind::Close,
        }
    }
}

impl Phase {
    pub(crate) fn kind(&self) -> StateKind {
        match self {
            Phase::ReadingHead(_) => StateKind::ReadingHead,
            Phase::Connecting { .. } => StateKind::Connecting,
            Phase::Exchange(_) => StateKind::Exchange,
            Phase::Tunnel(_) => StateKind::Tunnel,
            Phase::Closed => StateKind::Closed,
        }
    }

    /// The phase `step` leads to, with this phase's data carried across (the exchange
    /// from `Connecting` to `Exchange` and back). A step [`TRANSITIONS`] does not allow
    /// from this phase gives the phase back, unchanged, as `Err`.
    ///
    /// Inlined with [`Connection::enter`](crate::Connection) into each place that takes a
    /// step: the step is then known there, and the table lookup and the match fold down
    /// to the one transition (about 100 instructions a transition fewer than the general
    /// function: crates/core/benches/RESULTS.md, "Issue 14, seventh pass").
    #[inline(always)]
    pub(crate) fn take(self, step: Step) -> Result<Phase, Phase> {
        let Some(to) = next(self.kind(), step.kind()) else {
            return Err(self);
        };
        let phase = match (self, step) {
            (_, Step::Close) => Phase::Closed,
            (
                Phase::ReadingHead(_),
                Step::HeadAccepted {
                    exchange,
                    connect_by,
                },
            ) => Phase::Connecting {
                exchange,
                deadline: connect_by,
            },
            (Phase::Connecting { exchange, .. }, Step::Connected) => Phase::Exchange(exchange),
            (Phase::Exchange(exchange), Step::Reconnect { connect_by }) => Phase::Connecting {
                exchange,
                deadline: connect_by,
            },
            (Phase::Exchange(_), Step::KeepAlive { idle_until }) => {
                Phase::ReadingHead(Reading::idle(idle_until))
            }
            (Phase::Exchange(_), Step::Switched(tunnel)) => Phase::Tunnel(tunnel),
            // The table allows a step this match does not carry out: also refused.
            (phase, _) => return Err(phase),
        };
        debug_assert_eq!(phase.kind(), to);
        Ok(phase)
    }

    /// The exchange in flight, while connecting or exchanging.
    pub(crate) fn exchange(&self) -> Option<&Exchange> {
        match self {
            Phase::Connecting { exchange, .. } | Phase::Exchange(exchange) => Some(exchange),
            _ => None,
        }
    }

    /// The exchange in flight, while connecting or exchanging.
    pub(crate) fn exchange_mut(&mut self) -> Option<&mut Exchange> {
        match self {
            Phase::Connecting { exchange, .. } | Phase::Exchange(exchange) => Some(exchange),
            _ => None,
        }
    }

    /// Whether an upstream connection was asked for and not given back: from the
    /// `Connect` output until `ReleaseUpstream` (a tunnel keeps it to the end).
    pub(crate) fn holds_upstream(&self) -> bool {
        match self {
            Phase::Connecting { exchange, .. } | Phase::Exchange(exchange) => {
                exchange.upstream.held
            }
            Phase::Tunnel(_) => true,
            Phase::ReadingHead(_) | Phase::Closed => false,
        }
    }
}

/// [`TRANSITIONS`] as the Markdown table docs/ARCHITECTURE.md shows.
#[cfg(test)]
pub(crate) fn markdown_table() -> String {
    let mut table = String::from("| from | step | to |\n|---|---|---|\n");
    for (from, step, to) in TRANSITIONS {
        table.push_str(&format!("| `{from:?}` | `{step:?}` | `{to:?}` |\n"));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATES: [StateKind; 5] = [
        StateKind::ReadingHead,
        StateKind::Connecting,
        StateKind::Exchange,
        StateKind::Tunnel,
        StateKind::Closed,
    ];
    const STEPS: [StepKind; 6] = [
        StepKind::HeadAccepted,
        StepKind::Connected,
        StepKind::Reconnect,
        StepKind::KeepAlive,
        StepKind::Switched,
        StepKind::Close,
    ];

    #[test]
    fn only_a_validated_switch_enters_the_tunnel() {
        for from in STATES {
            for step in STEPS {
                if next(from, step) == Some(StateKind::Tunnel) {
                    assert_eq!((from, step), (StateKind::Exchange, StepKind::Switched));
                }
            }
        }
    }

    #[test]
    fn closed_is_terminal_and_every_other_phase_can_close() {
        for step in STEPS {
            assert_eq!(next(StateKind::Closed, step), None);
        }
        for from in STATES.into_iter().filter(|s| *s != StateKind::Closed) {
            assert_eq!(next(from, StepKind::Close), Some(StateKind::Closed));
        }
    }

    #[test]
    fn the_table_has_one_row_per_state_and_step() {
        for (i, (from, step, _)) in TRANSITIONS.iter().enumerate() {
            let same = TRANSITIONS[i + 1..]
                .iter()
                .any(|(f, s, _)| f == from && s == step);
            assert!(!same, "{from:?} on {step:?} listed twice");
        }
    }

    fn exchange(now: Instant) -> Box<Exchange> {
        use crate::config::Limits;
        let request = bytes::Bytes::from_static(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let head = crate::head::parse_request(request, &Limits::default()).expect("a head");
        let accepted = crate::exchange::Accepted {
            route: 0,
            method: "GET".into(),
            target: "/".into(),
            body: crate::framing::BodyKind::Empty,
            proposal: None,
            upstream_head: bytes::Bytes::new(),
        };
        Exchange::boxed(accepted, &head, now, &Limits::default())
    }

    fn phase(kind: StateKind, now: Instant) -> Phase {
        match kind {
            StateKind::ReadingHead => Phase::ReadingHead(Reading::first(now)),
            StateKind::Connecting => Phase::Connecting {
                exchange: exchange(now),
                deadline: now,
            },
            StateKind::Exchange => Phase::Exchange(exchange(now)),
            StateKind::Tunnel => Phase::Tunnel(Tunnel::new(0, "/", "websocket", now)),
            StateKind::Closed => Phase::Closed,
        }
    }

    fn step(kind: StepKind, now: Instant) -> Step {
        match kind {
            StepKind::HeadAccepted => Step::HeadAccepted {
                exchange: exchange(now),
                connect_by: now,
            },
            StepKind::Connected => Step::Connected,
            StepKind::Reconnect => Step::Reconnect { connect_by: now },
            StepKind::KeepAlive => Step::KeepAlive { idle_until: now },
            StepKind::Switched => match phase(StateKind::Tunnel, now) {
                Phase::Tunnel(tunnel) => Step::Switched(tunnel),
                _ => unreachable!(),
            },
            StepKind::Close => Step::Close,
        }
    }

    #[test]
    fn phase_changes_follow_the_table_for_every_phase_and_step() {
        let now = Instant::now();
        for from in STATES {
            for kind in STEPS {
                let taken = phase(from, now).take(step(kind, now));
                match next(from, kind) {
                    Some(to) => assert_eq!(
                        taken.map(|p| p.kind()).ok(),
                        Some(to),
                        "{kind:?} from {from:?}"
                    ),
                    None => assert_eq!(
                        taken.err().map(|p| p.kind()),
                        Some(from),
                        "{kind:?} from {from:?} must give the phase back unchanged"
                    ),
                }
            }
        }
    }

    #[test]
    fn architecture_md_shows_the_transition_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/ARCHITECTURE.md");
        let doc = std::fs::read_to_string(path).expect("docs/ARCHITECTURE.md");
        let begin = "<!-- phase-table:begin -->\n";
        let end = "<!-- phase-table:end -->";
        let start = doc.find(begin).expect("a phase-table:begin marker") + begin.len();
        let stop = doc[start..].find(end).expect("a phase-table:end marker") + start;
        assert_eq!(
            doc[start..stop].trim(),
            markdown_table().trim(),
            "docs/ARCHITECTURE.md §Phases must show state.rs's TRANSITIONS; put this \
             between the markers:\n{}",
            markdown_table()
        );
    }
}
