//! The deadline table (one slot per kind, as quinn-proto's `TimerTable`).

use std::time::Instant;

/// Kinds of deadline kept in the table. Tunnel read and idle deadlines are not here:
/// they are derived from the tunnel's last-read instants, so a read costs no table write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Whole request head (`header_timeout`).
    Header,
    /// Kept-alive client waiting for a request (`idle_timeout`).
    Idle,
    /// Upstream connection being established (`connect_timeout`).
    Connect,
    /// Silence of the upstream while a response is awaited or read (`read_timeout`).
    Read,
    /// A write towards the client not yet flushed (`send_timeout`).
    SendClient,
    /// A write towards the upstream not yet flushed (`send_timeout`).
    SendUpstream,
    /// Graceful-shutdown grace for a tunnel.
    Shutdown,
}

impl Timer {
    pub(crate) const ALL: [Timer; 7] = [
        Timer::Header,
        Timer::Idle,
        Timer::Connect,
        Timer::Read,
        Timer::SendClient,
        Timer::SendUpstream,
        Timer::Shutdown,
    ];
}

#[derive(Debug, Default, Clone)]
pub(crate) struct TimerTable {
    data: [Option<Instant>; Timer::ALL.len()],
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.data[timer as usize] = Some(at);
    }

    /// Sets the timer unless it already runs (a pending write keeps its first deadline).
    pub(crate) fn set_if_unset(&mut self, timer: Timer, at: Instant) {
        self.data[timer as usize].get_or_insert(at);
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.data[timer as usize]
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.data[timer as usize] = None;
    }

    pub(crate) fn clear(&mut self) {
        self.data = Default::default();
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.data.iter().flatten().min().copied()
    }

    /// The first timer whose deadline is at or before `now`.
    pub(crate) fn expired(&self, now: Instant) -> Option<Timer> {
        Timer::ALL
            .into_iter()
            .find(|t| self.get(*t).is_some_and(|at| at <= now))
    }
}
