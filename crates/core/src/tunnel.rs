//! The `Tunnel` phase (docs/ARCHITECTURE.md §Protocol rules, "Tunnels"): what the core
//! tracks while the adapter copies bytes both ways, from the validated `101` to the end.
//!
//! The tunnel owns its route and that route's deadlines (read, send, idle), so nothing in
//! it depends on an exchange that is gone. Read and idle deadlines are derived from two
//! last-read instants rather than kept in a table, so reporting a read is two stores.
//! This is also where a frame-aware tracker (following WebSocket frame boundaries to
//! inject Ping/Close) will live.

use std::time::{Duration, Instant};

use crate::config::{RouteId, Timeouts};
use crate::connection::Connection;
use crate::error::{ErrorKind, ProtocolError};
use crate::event::{CloseReason, Event, TunnelRecord};
use crate::head::Head;
use crate::headers::{self, ClientConnection};
use crate::io::{Output, Side};
use crate::state::{Phase, Step};
use crate::timer::{earlier, Deadline};
use crate::upgrade;

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
    /// For the writes the adapter makes on the tunnel's behalf.
    pub send_timeout: Duration,
    idle_timeout: Option<Duration>,
    /// The end of the grace a graceful drain gives the tunnel.
    drain_deadline: Option<Instant>,
}

impl Tunnel {
    /// A tunnel on `route` opened at `now`, with that route's `timeouts`.
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
            drain_deadline: None,
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

    /// A graceful drain lets the tunnel go on until `at`, then closes it.
    pub(crate) fn drain_by(&mut self, at: Instant) {
        self.drain_deadline.get_or_insert(at);
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

    /// The earliest of the tunnel's own deadlines.
    pub(crate) fn deadline(&self) -> Option<(Deadline, Instant)> {
        let read = self.read_deadline().map(|at| (Deadline::TunnelRead, at));
        let idle = self.idle_deadline().map(|at| (Deadline::TunnelIdle, at));
        let drain = self.drain_deadline.map(|at| (Deadline::Drain, at));
        earlier(earlier(read, idle), drain)
    }

    pub(crate) fn record(&self, reason: CloseReason, now: Instant) -> TunnelRecord {
        TunnelRecord {
            route: self.route,
            target: self.target.clone(),
            protocol: self.protocol.clone(),
            bytes_client_to_upstream: self.bytes_from[Side::Client.index()],
            bytes_upstream_to_client: self.bytes_from[Side::Upstream.index()],
            duration: now.saturating_duration_since(self.started),
            reason,
        }
    }
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
        let route = ex.route;
        let timeouts = &self.config.routes[route].timeouts;
        let mut tunnel = Tunnel::new(route, ex.target.clone(), protocol, self.now, timeouts);
        let client_eof = ex.client_eof;
        // Taken whole, so that an idle tunnel keeps no receive buffer alive.
        let upstream_leftover = std::mem::take(&mut ex.upstream.buf).freeze();
        let bytes = headers::client_response(&head, false, ClientConnection::Upgrade);
        self.out
            .push_back(Output::Event(Event::Response { status: 101 }));
        self.send_client(bytes);
        self.out.push_back(Output::Event(Event::TunnelOpened {
            route,
            protocol: tunnel.protocol.clone(),
        }));
        self.out.push_back(Output::StartTunnel {
            client_leftover: std::mem::take(&mut self.client_buf).freeze(),
            upstream_leftover,
        });
        if client_eof {
            tunnel.eof(Side::Client, self.now);
            self.out.push_back(Output::HalfClose {
                side: Side::Upstream,
            });
        }
        if let Some(grace) = self.drain {
            tunnel.drain_by(self.now + grace);
        }
        self.enter(Step::Switched(Box::new(tunnel)));
    }

    /// The adapter read `bytes` from `from` and is writing them to the other side.
    pub(crate) fn on_tunnel_activity(&mut self, from: Side, bytes: usize) {
        if let Phase::Tunnel(tunnel) = &mut self.phase {
            tunnel.activity(from, bytes, self.now);
            // Bounded by the tunnel's own route (through the phase's send timeout).
            self.queue_write(from.other());
        }
    }

    /// EOF from `from`: shut down writing towards the other side, and end the tunnel
    /// once both directions are finished.
    pub(crate) fn on_tunnel_eof(&mut self, from: Side) {
        let Phase::Tunnel(tunnel) = &mut self.phase else {
            return;
        };
        if tunnel.has_eof(from) {
            return;
        }
        let both = tunnel.eof(from, self.now);
        self.out.push_back(Output::HalfClose { side: from.other() });
        if both {
            self.close(CloseReason::BothClosed);
        }
    }
}
