//! How a connection ends: canned answers, rejections of a peer's protocol error, peers
//! going away, deadlines (every one of which ends the connection), graceful drain, and
//! the close itself, the one way into `Closed`.

use std::time::Duration;

use crate::connection::Connection;
use crate::error::{ErrorKind, ProtocolError};
use crate::event::{AccessRecord, CloseReason, Event};
use crate::exchange::Exchange;
use crate::head::Head;
use crate::headers;
use crate::io::{Output, Side};
use crate::state::{Phase, StateKind, Step};
use crate::text::Text;
use crate::timer::Deadline;

/// Under a drain, how long a fresh connection may take to send its first request: a
/// client that has just connected sends it within a round trip; one that sends nothing
/// (a browser's speculative connection) must not hold a stopping process for long.
pub(crate) const FIRST_REQUEST_UNDER_DRAIN: Duration = Duration::from_secs(1);

impl Connection {
    /// A peer broke the protocol: answer with its status hint and close.
    pub(crate) fn reject(&mut self, error: ProtocolError) {
        self.out.push_back(Output::Event(Event::Rejected(error)));
        self.answer_and_close(error.status_hint(), CloseReason::ProtocolError);
    }

    /// A request head that parsed but breaks a rule: logged with its method and target.
    pub(crate) fn refuse_request(
        &mut self,
        method: Text,
        target: Text,
        head: &Head,
        error: ProtocolError,
    ) {
        let status = error.status_hint();
        self.out.push_back(Output::Event(Event::Rejected(error)));
        let canned = headers::canned(status);
        let record = AccessRecord {
            close: Some(CloseReason::ProtocolError),
            method,
            target,
            route: None,
            status,
            bytes_from_client: head.bytes.len() as u64,
            bytes_to_client: canned.len() as u64,
            duration: Duration::ZERO,
        };
        self.send_client(canned);
        self.out.push_back(Output::Event(Event::Exchange(record)));
        self.close(CloseReason::ProtocolError);
    }

    /// Sends a canned `status` unless a final response head was forwarded already (the
    /// client's view is then a truncated response), and closes.
    pub(crate) fn answer_and_close(&mut self, status: u16, reason: CloseReason) {
        if !self.phase.exchange().is_some_and(|ex| ex.status >= 200) {
            let canned = headers::canned(status);
            let bytes_to_client = canned.len() as u64;
            self.send_client(canned);
            match self.phase.exchange_mut() {
                Some(ex) => ex.status = status,
                // Nothing to log the answer with: a line of its own.
                None => self
                    .out
                    .push_back(Output::Event(Event::Exchange(AccessRecord {
                        close: Some(reason),
                        method: "-".into(),
                        target: "-".into(),
                        route: None,
                        status,
                        bytes_from_client: 0,
                        bytes_to_client,
                        duration: Duration::ZERO,
                    }))),
            }
        }
        self.close(reason);
    }

    /// Ends the connection from whatever phase: the tunnel's or the exchange's record,
    /// the upstream connection given back, then `Closed` and [`Output::Close`].
    pub(crate) fn close(&mut self, reason: CloseReason) {
        if self.is_closed() {
            // Nothing may follow `Close`: a second close is a bug, and changes nothing.
            return self.illegal(StateKind::Closed, crate::state::StepKind::Close);
        }
        if let Phase::Tunnel(tunnel) = &self.phase {
            let record = tunnel.record(reason, self.now);
            self.out
                .push_back(Output::Event(Event::TunnelClosed(Box::new(record))));
        }
        self.release_upstream();
        if let Some(ex) = self.phase.exchange() {
            let record = ex.record(self.now, Some(reason));
            self.out.push_back(Output::Event(Event::Exchange(record)));
        }
        self.out.push_back(Output::Event(Event::Closed { reason }));
        self.out.push_back(Output::Close);
        // The write deadlines stay: after `Close` they bound the final flush
        // (`Connection::flush_deadline`).
        self.enter(Step::Close);
    }

    /// Gives the upstream connection back, to be pooled when the exchange says it may
    /// be reused ([`Exchange::upstream_reusable`]). Bytes it sent that were not part of
    /// a response go with it: they must never be read as the next response.
    pub(crate) fn release_upstream(&mut self) {
        if !self.phase.holds_upstream() {
            return;
        }
        let reusable = self
            .phase
            .exchange()
            .is_some_and(Exchange::upstream_reusable);
        if let Some(ex) = self.phase.exchange_mut() {
            ex.upstream = Default::default();
        }
        self.writes.forget(Side::Upstream);
        self.out.push_back(Output::ReleaseUpstream { reusable });
    }

    /// No server of the route could be reached: nothing to give back, and `502`.
    pub(crate) fn on_connect_failed(&mut self) {
        if let Some(ex) = self.phase.exchange_mut() {
            ex.upstream.held = false;
        }
        self.answer_and_close(502, CloseReason::ConnectFailed);
    }

    pub(crate) fn on_client_eof(&mut self) {
        match &mut self.phase {
            Phase::Tunnel(_) => self.on_tunnel_eof(Side::Client),
            Phase::ReadingHead(_) => self.close(CloseReason::ClientClosed),
            Phase::Connecting { exchange: ex, .. } | Phase::Exchange(ex) => {
                if ex.client_eof {
                    return;
                }
                ex.client_eof = true;
                // A client that half-closes after a complete request still gets its
                // response; one that leaves mid-request ends the exchange.
                if !ex.request.complete_within(&self.client_buf) {
                    self.close(CloseReason::ClientClosed);
                }
            }
            Phase::Closed => {}
        }
    }

    /// A write towards `to` failed: that peer is gone both ways. A frame-aware tunnel
    /// first tells the other peer with a Close frame.
    pub(crate) fn on_write_failed(&mut self, to: Side) {
        let reason = match to {
            Side::Client => CloseReason::ClientClosed,
            Side::Upstream => CloseReason::UpstreamClosed,
        };
        if let Phase::Tunnel(_) = self.phase {
            if let Some(reason) = self.on_tunnel_write_failed(to) {
                self.close(reason);
            }
            return;
        }
        if let (Phase::Exchange(_), Side::Upstream) = (&self.phase, to) {
            self.out
                .push_back(Output::Event(Event::Rejected(ProtocolError::upstream(
                    ErrorKind::Truncated,
                ))));
            return self.answer_and_close(502, reason);
        }
        self.close(reason);
    }

    /// Graceful drain: a kept-alive connection between requests closes now, an exchange
    /// in flight finishes first (then [`Exchange::close_after`] says `Shutdown`), a
    /// tunnel gets `grace`. A fresh connection that has not sent its first request yet
    /// gets up to [`FIRST_REQUEST_UNDER_DRAIN`] (at most `grace`) to send it: its client
    /// has a request on the way (it connected an instant ago, often while the listener
    /// was being handed over), and closing would fail it with nothing to retry.
    pub(crate) fn on_drain(&mut self, grace: Duration) {
        if self.drain.is_some() {
            return;
        }
        self.drain = Some(grace);
        let first_head_by = self.now + grace.min(FIRST_REQUEST_UNDER_DRAIN);
        match &mut self.phase {
            Phase::ReadingHead(reading) if !reading.started() && self.client_buf.is_empty() => {
                let fresh = reading.wait_first_head_until(first_head_by);
                if !fresh {
                    self.close(CloseReason::Shutdown)
                }
            }
            Phase::Tunnel(tunnel) => tunnel.drain_by(self.now + grace),
            _ => {}
        }
    }

    /// The earliest deadline, if it has passed, ends the connection.
    pub(crate) fn on_timeout(&mut self) {
        let Some((deadline, at)) = self.next_deadline() else {
            return;
        };
        if at > self.now {
            return;
        }
        match deadline {
            Deadline::Header => {
                let started = matches!(&self.phase, Phase::ReadingHead(r) if r.started());
                if started || !self.client_buf.is_empty() {
                    self.answer_and_close(408, CloseReason::HeaderTimeout);
                } else if self.drain.is_some() {
                    self.close(CloseReason::Shutdown);
                } else {
                    self.close(CloseReason::HeaderTimeout);
                }
            }
            Deadline::Idle => self.close(CloseReason::IdleTimeout),
            Deadline::Connect => self.answer_and_close(504, CloseReason::ConnectTimeout),
            Deadline::Read => self.answer_and_close(504, CloseReason::ReadTimeout),
            Deadline::Send(_) => match self.phase {
                // Answering a request whose upstream does not take it, or not send.
                Phase::Connecting { .. } | Phase::Exchange(_) => {
                    self.answer_and_close(504, CloseReason::SendTimeout)
                }
                // A finished response the client does not read, or a tunnel.
                _ => self.close(CloseReason::SendTimeout),
            },
            Deadline::TunnelRead => self.close(CloseReason::ReadTimeout),
            Deadline::TunnelIdle => self.close(CloseReason::TunnelIdleTimeout),
            Deadline::Drain => {
                if !self.on_drain_grace_over() {
                    self.close(CloseReason::Shutdown);
                }
            }
            Deadline::PingDue(side) => self.on_ping_due(side),
            Deadline::PingTimeout(side) => self.on_unresponsive(side),
            Deadline::WebSocketEnding => {
                if let Some(reason) = self.on_ending_wait_over() {
                    self.close(reason);
                }
            }
        }
    }
}
