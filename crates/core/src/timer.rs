//! Deadlines (docs/ARCHITECTURE.md, "Deadlines"). Each phase keeps its own (the head's, the connect attempt's, the
//! exchange's read deadline, the tunnel's), so none can outlive its phase; the deadlines
//! of writes belong to the sockets, which outlive phases, and are kept here.

use std::time::Instant;

use crate::io::Side;

/// Which deadline passed; each one ends the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// A whole request head (`header_timeout`).
    Header,
    /// A kept-alive client waiting for its next request (`idle_timeout`).
    Idle,
    /// The upstream connection being established (`connect_timeout`).
    Connect,
    /// Silence of the upstream while a response is awaited or read (`read_timeout`).
    Read,
    /// A write towards this peer not flushed (`send_timeout`).
    Send(Side),
    /// Silence of the tunnel's last open direction (`read_timeout`).
    TunnelRead,
    /// A tunnel in which nothing moved (`tunnel_idle_timeout`).
    TunnelIdle,
    /// The grace a graceful drain gives a tunnel.
    Drain,
    /// Nothing was received from this side of a frame-aware tunnel for
    /// `ws_ping_interval`: a Ping is due towards it.
    PingDue(Side),
    /// Nothing at all came from this side within `ws_ping_timeout` of the proxy's Ping.
    PingTimeout(Side),
    /// A frame-aware tunnel that is ending (Close frames of the proxy's own sent) has
    /// waited as long as it waits for them.
    WebSocketEnding,
}

/// The earlier of two deadlines (the first on a tie).
pub(crate) fn earlier(
    a: Option<(Deadline, Instant)>,
    b: Option<(Deadline, Instant)>,
) -> Option<(Deadline, Instant)> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.1 < a.1 { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// When each peer's pending writes must have been flushed (`send_timeout`), one slot per
/// peer as in quinn-proto's `TimerTable`. A write is bounded by the send timeout of the
/// phase that queued it: the route of its exchange or tunnel.
#[derive(Debug, Default, Clone)]
pub(crate) struct WriteDeadlines {
    flush_by: [Option<Instant>; 2],
}

impl WriteDeadlines {
    /// Bytes were queued towards `to`; a write already pending keeps its first deadline.
    pub(crate) fn queued(&mut self, to: Side, flush_by: Instant) {
        self.flush_by[to.index()].get_or_insert(flush_by);
    }

    /// Everything queued towards `to` was written.
    pub(crate) fn flushed(&mut self, to: Side) {
        self.flush_by[to.index()] = None;
    }

    /// Whether something queued towards `to` has not been reported flushed.
    pub(crate) fn pending(&self, to: Side) -> bool {
        self.flush_by[to.index()].is_some()
    }

    /// The peer gave back; nothing more will be written to it.
    pub(crate) fn forget(&mut self, to: Side) {
        self.flushed(to);
    }

    /// The latest write deadline: by then everything pending is written or given up.
    pub(crate) fn latest(&self) -> Option<Instant> {
        self.flush_by.iter().flatten().max().copied()
    }

    /// When the earliest write deadline falls.
    pub(crate) fn next_at(&self) -> Option<Instant> {
        match self.flush_by {
            [Some(a), Some(b)] => Some(a.min(b)),
            [a, b] => a.or(b),
        }
    }

    /// The earliest write deadline.
    pub(crate) fn next(&self) -> Option<(Deadline, Instant)> {
        let slot = |side: Side| self.flush_by[side.index()].map(|at| (Deadline::Send(side), at));
        earlier(slot(Side::Client), slot(Side::Upstream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_pending_write_keeps_its_first_deadline_until_flushed() {
        let t0 = Instant::now();
        let mut writes = WriteDeadlines::default();
        writes.queued(Side::Client, t0 + Duration::from_secs(5));
        writes.queued(Side::Client, t0 + Duration::from_secs(9));
        writes.queued(Side::Upstream, t0 + Duration::from_secs(7));
        assert_eq!(
            writes.next(),
            Some((Deadline::Send(Side::Client), t0 + Duration::from_secs(5)))
        );
        writes.flushed(Side::Client);
        assert_eq!(
            writes.next(),
            Some((Deadline::Send(Side::Upstream), t0 + Duration::from_secs(7)))
        );
        writes.forget(Side::Upstream);
        assert_eq!(writes.next(), None);
    }
}
