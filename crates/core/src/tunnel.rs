//! Tunnel mode: what the core tracks while the adapter copies bytes both ways.
//!
//! Deadlines are derived from two last-read instants rather than kept in the timer
//! table, so reporting a read is two stores. This is also where a frame-aware tracker
//! (following WebSocket frame boundaries to inject Ping/Close) will live.

use std::time::{Duration, Instant};

use crate::config::{RouteId, Timeouts};
use crate::event::CloseReason;
use crate::io::Side;

#[derive(Debug)]
pub(crate) struct Tunnel {
    pub route: RouteId,
    pub target: String,
    pub protocol: String,
    pub started: Instant,
    /// When each side was last read from (or the tunnel opened).
    last_read: [Instant; 2],
    /// Whether each side has sent EOF.
    eof: [bool; 2],
    /// Bytes read from each side.
    pub bytes_from: [u64; 2],
    read_timeout: Duration,
    /// The tunnel's route's `send_timeout`, for the writes the adapter makes.
    pub send_timeout: Duration,
    idle_timeout: Option<Duration>,
}

impl Tunnel {
    pub(crate) fn new(
        route: RouteId,
        target: String,
        protocol: String,
        now: Instant,
        timeouts: &Timeouts,
    ) -> Self {
        Tunnel {
            route,
            target,
            protocol,
            started: now,
            last_read: [now; 2],
            eof: [false; 2],
            bytes_from: [0; 2],
            read_timeout: timeouts.read,
            send_timeout: timeouts.send,
            idle_timeout: timeouts.tunnel_idle,
        }
    }

    pub(crate) fn activity(&mut self, from: Side, bytes: usize, now: Instant) {
        self.last_read[from.index()] = now;
        self.bytes_from[from.index()] += bytes as u64;
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

    /// The read deadline: upstream silence while the upstream still sends; after the
    /// upstream's EOF, silence of the client (the one direction still open).
    fn read_deadline(&self) -> Option<Instant> {
        let side = if !self.eof[Side::Upstream.index()] {
            Side::Upstream
        } else if !self.eof[Side::Client.index()] {
            Side::Client
        } else {
            return None;
        };
        Some(self.last_read[side.index()] + self.read_timeout)
    }

    fn idle_deadline(&self) -> Option<Instant> {
        let last = self.last_read[0].max(self.last_read[1]);
        self.idle_timeout.map(|t| last + t)
    }

    /// The earliest tunnel deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        match (self.read_deadline(), self.idle_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The deadline that has passed at `now`, if any.
    pub(crate) fn expired(&self, now: Instant) -> Option<CloseReason> {
        if self.read_deadline().is_some_and(|d| d <= now) {
            return Some(CloseReason::ReadTimeout);
        }
        if self.idle_deadline().is_some_and(|d| d <= now) {
            return Some(CloseReason::TunnelIdleTimeout);
        }
        None
    }
}
