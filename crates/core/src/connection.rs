//! [`Connection`]: one client connection, from request heads to tunnel, as inputs in and
//! outputs out. This file holds the contract (inputs dispatched, outputs queued, the
//! phase changed only through the table in `state.rs`); each phase's work is in its own
//! module: `request.rs`, `exchange.rs`, `response.rs`, `tunnel/`, `close.rs`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::config::{Config, PeerInfo};
use crate::error::Misuse;
use crate::event::{CloseReason, Event};
use crate::io::{Input, Output, Side};
use crate::request::Reading;
use crate::state::{Phase, StateKind, Step, StepKind};
use crate::timer::{earlier, Deadline, WriteDeadlines};

/// Most bytes buffered from one peer that the core has not forwarded yet (a request body
/// waiting for the upstream connection, or bytes held behind a pending exchange);
/// beyond it [`Connection::wants_read`] says stop.
const BUFFER_LIMIT: usize = 64 * 1024;

/// The proxy state for one client connection: a deterministic, sans-IO state machine.
///
/// `Connection` never touches a socket or a clock. The caller (an *adapter*, such as
/// `switchyard-smol`, or a test) feeds it what happened and performs what it asks.
///
/// # Methods, by kind
/// - Getters (`&self`): [`state`](Self::state), [`is_closed`](Self::is_closed),
///   [`wants_read`](Self::wants_read), [`tunnel_passthrough`](Self::tunnel_passthrough),
///   [`response_body_passthrough`](Self::response_body_passthrough),
///   [`poll_timeout`](Self::poll_timeout), [`request_header`](Self::request_header).
/// - Input: [`handle_input`](Self::handle_input) (bytes, EOFs, upstream connection
///   results, flushes, tunnel activity, shutdown, time), its shorthand
///   [`handle_timeout`](Self::handle_timeout), and
///   [`handle_tunnel_read`](Self::handle_tunnel_read) (a frame-aware tunnel's read,
///   lent).
/// - Output: [`poll_output`](Self::poll_output).
///
/// # The driving loop
/// 1. Feed one input with `handle_input(input, now)`.
/// 2. Drain [`poll_output`](Self::poll_output) until `None`, performing each [`Output`]
///    in order (writes to one peer must stay in order).
/// 3. Ask [`poll_timeout`](Self::poll_timeout) for the earliest deadline and wait for
///    whichever comes first: that instant (then feed [`Input::Timeout`]), or readiness of
///    a peer for which [`wants_read`](Self::wants_read) is true.
///
/// After writing everything queued towards a peer, feed [`Input::Flushed`]: while bytes
/// towards a peer are unwritten, `send_timeout` runs.
///
/// # Tunnels
/// After [`Output::StartTunnel`] the caller moves the bytes. In a byte tunnel it copies
/// (or splices) whatever it reads and reports each read with [`Input::TunnelActivity`].
/// A `websocket` tunnel on a route that validates frames or pings is *frame-aware*, and
/// each read from side `from` goes:
/// 1. `budget = conn.tunnel_passthrough(from)`;
/// 2. if `budget > 0`: read (or splice) at most `budget` bytes, queue them towards the
///    other side, feed `TunnelActivity { from, bytes }` (more than the budget is
///    [`Misuse::PassthroughExceeded`]);
/// 3. if `budget == 0`: lend the bytes read with
///    [`handle_tunnel_read`](Self::handle_tunnel_read), write the first `n` it returns
///    towards the other side from your own buffer, then perform the outputs (or give
///    them as [`Input::TunnelData`], when owned buffers suit the caller better: the
///    core then writes what is to be forwarded as [`Output::ToClient`] /
///    [`Output::ToUpstream`] slices of them). Either way the core consumes them all and
///    writes its own Pings and Close frames between the peers' frames.
///
/// [`Output::NeedMaskingKey`] asks for [`Input::MaskingKey`], at once, from a CSPRNG: the
/// key masks the core's next frame towards the upstream. Only after [`Input::Flushed`]
/// towards a side does the core write a frame of its own towards it, so a driver's order
/// of splice pipe and write queue never matters. [`Input::Drain`] ends such a tunnel with
/// Close 1001 both ways; a peer that stops answering the core's Pings, breaks a rule or
/// leaves without a Close gets the other side a Close frame before the TCP close.
///
/// # Time
/// Every input carries `now`, given by the caller; the core never reads a clock, so tests
/// can drive it faster than real time. A `now` earlier than one already seen is treated
/// as the latest one. A timeout with nothing due is a no-op, so spurious wake-ups are safe.
///
/// # Errors
/// A peer's protocol error never panics and never returns `Err`: it becomes outputs (a
/// canned `400`/`404`/`408`/`413`/`414`/`431`/`501`/`502`/`504`/`505` to the client, an
/// [`Event::Rejected`], then [`Output::Close`]). `Err` ([`Misuse`]) is reserved for the
/// caller's mistakes, such as input after `Close`. A bug in the core itself (a phase
/// change the transition table does not allow) closes the connection with
/// [`CloseReason::InternalError`] after an [`Event::IllegalTransition`]; it never panics
/// in a release build.
///
/// # Phases
/// [`state`](Self::state) says which phase the connection is in; docs/ARCHITECTURE.md
/// §Phases has the table of every transition.
#[derive(Debug)]
pub struct Connection {
    pub(crate) config: Arc<Config>,
    pub(crate) peer: PeerInfo,
    /// The phase, with what only it has.
    pub(crate) phase: Phase,
    pub(crate) now: Instant,
    pub(crate) out: VecDeque<Output>,
    /// What the client sent and the core has not consumed; the client's socket outlives
    /// every phase, and so do its unread bytes.
    pub(crate) client_buf: BytesMut,
    /// Writes not reported flushed yet, per peer.
    pub(crate) writes: WriteDeadlines,
    /// A graceful drain was asked for, with this grace for a tunnel.
    pub(crate) drain: Option<Duration>,
}

impl Connection {
    /// A connection that has just been accepted at `now`. The first request head must be
    /// complete within `header_timeout`.
    pub fn new(config: Arc<Config>, peer: PeerInfo, now: Instant) -> Self {
        let header_by = now + config.timeouts.header;
        Connection {
            config,
            peer,
            phase: Phase::ReadingHead(Reading::first(header_by)),
            now,
            out: VecDeque::new(),
            client_buf: BytesMut::new(),
            writes: WriteDeadlines::default(),
            drain: None,
        }
    }

    /// The coarse state.
    pub fn state(&self) -> StateKind {
        self.phase.kind()
    }

    /// Whether [`Output::Close`] was emitted; no input is accepted after it.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// By when the writes still pending must be done: the latest `send_timeout`
    /// deadline of what was queued and not reported flushed, each bounded by the route of
    /// the exchange or tunnel that queued it. After [`Output::Close`] this is how long
    /// the caller may keep flushing before it closes the sockets. `None` when nothing
    /// bounded is pending (a canned answer before any route is known: use the
    /// connection-wide [`Timeouts::send`](crate::Timeouts::send)).
    pub fn flush_deadline(&self) -> Option<Instant> {
        self.writes.latest()
    }

    /// Whether the caller should read from `side` now. False when the core does not
    /// need bytes from that peer or holds enough of them unprocessed (backpressure).
    #[inline]
    pub fn wants_read(&self, side: Side) -> bool {
        match (&self.phase, side) {
            (Phase::Closed, _) => false,
            (Phase::Tunnel(tunnel), side) => tunnel.wants_read(side),
            (Phase::ReadingHead(_), Side::Client) => true,
            (Phase::ReadingHead(_) | Phase::Connecting { .. }, Side::Upstream) => false,
            (Phase::Connecting { exchange: ex, .. } | Phase::Exchange(ex), Side::Client) => {
                !ex.client_eof && self.client_buf.len() < BUFFER_LIMIT
            }
            (Phase::Exchange(ex), Side::Upstream) => ex.upstream.buf.len() < BUFFER_LIMIT,
        }
    }

    /// The earliest deadline, if any: call [`handle_timeout`](Self::handle_timeout) then.
    #[inline]
    pub fn poll_timeout(&self) -> Option<Instant> {
        // A tunnel's is asked for before every wait, so it is found without naming which
        // deadline it is.
        if let Phase::Tunnel(tunnel) = &self.phase {
            let timeouts = &self.config.routes[tunnel.route].timeouts;
            let at = tunnel.next_at(timeouts, &self.writes);
            debug_assert_eq!(at, self.next_deadline().map(|(_, at)| at));
            return at;
        }
        self.next_deadline().map(|(_, at)| at)
    }

    /// The next action for the caller, in order; `None` when there is nothing to do.
    #[inline]
    pub fn poll_output(&mut self) -> Option<Output> {
        // Returned as popped (looked at first, an output is copied once more).
        if let Some(output) = self.out.pop_front() {
            return Some(output);
        }
        if self.state() == StateKind::Tunnel && self.out.capacity() > 0 {
            // A tunnel rarely has output: an idle one keeps no queue allocated.
            self.out = VecDeque::new();
        }
        None
    }

    /// Time passed; shorthand for `handle_input(Input::Timeout, now)` that ignores
    /// [`Misuse::Closed`].
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = self.handle_input(Input::Timeout, now);
    }

    /// Feeds what happened at `now`. Drain [`poll_output`](Self::poll_output) afterwards.
    ///
    /// # Errors
    /// [`Misuse`] when the input makes no sense for the state (the caller's bug); the
    /// connection is unchanged then.
    pub fn handle_input(&mut self, input: Input, now: Instant) -> Result<(), Misuse> {
        if self.is_closed() {
            return Err(Misuse::Closed);
        }
        self.now = self.now.max(now);
        let state = self.state();
        let unexpected = |input: &'static str| Err(Misuse::Unexpected { state, input });
        match input {
            Input::ClientData(data) => {
                let reading = match &self.phase {
                    Phase::ReadingHead(_) => true,
                    Phase::Connecting { exchange: ex, .. } | Phase::Exchange(ex) => !ex.client_eof,
                    Phase::Tunnel(_) | Phase::Closed => false,
                };
                if !reading {
                    return unexpected("ClientData");
                }
                self.client_buf.unsplit(data);
            }
            Input::ClientEof => self.on_client_eof(),
            Input::UpstreamConnected { reused } => {
                if state != StateKind::Connecting {
                    return unexpected("UpstreamConnected");
                }
                self.on_connected(reused);
            }
            Input::UpstreamConnectFailed => {
                if state != StateKind::Connecting {
                    return unexpected("UpstreamConnectFailed");
                }
                self.on_connect_failed();
            }
            Input::UpstreamData(data) => {
                if state != StateKind::Exchange {
                    return unexpected("UpstreamData");
                }
                self.on_upstream_data(data);
            }
            Input::UpstreamEof => match state {
                StateKind::Exchange => self.on_upstream_eof(),
                StateKind::Tunnel => self.on_tunnel_eof(Side::Upstream),
                _ => return unexpected("UpstreamEof"),
            },
            Input::Flushed { to } => self.writes.flushed(to),
            Input::WriteFailed { to } => self.on_write_failed(to),
            Input::TunnelActivity { from, bytes } => {
                if state != StateKind::Tunnel {
                    return unexpected("TunnelActivity");
                }
                let budget = self.tunnel_passthrough(from);
                if bytes as u64 > budget {
                    return Err(Misuse::PassthroughExceeded {
                        from,
                        bytes: bytes as u64,
                        budget,
                    });
                }
                self.on_tunnel_activity(from, bytes);
            }
            Input::TunnelData { from, data } => {
                if !self.is_frame_aware() {
                    return unexpected("TunnelData");
                }
                self.on_tunnel_data(from, data);
            }
            Input::MaskingKey(key) => {
                if !self.is_frame_aware() {
                    return unexpected("MaskingKey");
                }
                self.on_masking_key(key);
            }
            Input::ResponseBodyPassed { bytes } => {
                if state != StateKind::Exchange {
                    return unexpected("ResponseBodyPassed");
                }
                let budget = self.response_body_passthrough();
                if bytes as u64 > budget {
                    return Err(Misuse::PassthroughExceeded {
                        from: Side::Upstream,
                        bytes: bytes as u64,
                        budget,
                    });
                }
                self.on_response_body_passed(bytes as u64);
            }
            Input::Drain { grace } => self.on_drain(grace),
            Input::Timeout => self.on_timeout(),
        }
        self.drive();
        Ok(())
    }

    /// In a frame-aware tunnel: shows the core `data`, read from `from` when
    /// [`tunnel_passthrough`](Self::tunnel_passthrough)`(from)` was 0, by reference
    /// instead of as an owned [`Input::TunnelData`], with the same effect. Returns how
    /// many of the first bytes of `data` to write towards the other side as they are,
    /// **before** performing the outputs this call queued (drain
    /// [`poll_output`](Self::poll_output) afterwards, as after any input). Whatever else
    /// of `data` is to be forwarded comes back as [`Output::ToClient`] /
    /// [`Output::ToUpstream`] copies, exactly as `TunnelData` would give it.
    ///
    /// In the common case (the read starts at a frame boundary and holds whole, valid
    /// frames) the whole read comes back as the number, and the core neither copies nor
    /// allocates: the caller writes its own read buffer. Counts as a read from `from`.
    ///
    /// # Errors
    /// [`Misuse`] after `Close` or outside a frame-aware tunnel; nothing is to be
    /// forwarded then.
    pub fn handle_tunnel_read(
        &mut self,
        from: Side,
        data: &[u8],
        now: Instant,
    ) -> Result<usize, Misuse> {
        if self.is_closed() {
            return Err(Misuse::Closed);
        }
        self.now = self.now.max(now);
        if !self.is_frame_aware() {
            let state = self.state();
            return Err(Misuse::Unexpected {
                state,
                input: "handle_tunnel_read",
            });
        }
        let forward = self.on_tunnel_read(from, data);
        self.drive_tunnel();
        Ok(forward)
    }

    /// Takes `step` ([`Phase::take`]); true when the phase changed. A step the table does
    /// not allow is a bug in the core: loud in a debug build, and in a release build an
    /// [`Event::IllegalTransition`] and a close with [`CloseReason::InternalError`],
    /// never a silent no-op nor a panic. Inlined, with [`Phase::take`], where a step is
    /// taken (see there).
    #[inline(always)]
    pub(crate) fn enter(&mut self, step: Step) -> bool {
        let (from, kind) = (self.phase.kind(), step.kind());
        match std::mem::replace(&mut self.phase, Phase::Closed).take(step) {
            Ok(next) => {
                self.phase = next;
                true
            }
            Err(unchanged) => {
                self.phase = unchanged;
                self.illegal(from, kind);
                false
            }
        }
    }

    pub(crate) fn illegal(&mut self, state: StateKind, step: StepKind) {
        // Unit tests exercise the release-build path.
        #[cfg(not(test))]
        debug_assert!(false, "illegal transition: {step:?} in {state:?}");
        if state == StateKind::Closed {
            // `Close` was emitted already, and nothing may follow it.
            return;
        }
        self.out.push_back(Output::Event(Event::IllegalTransition {
            state,
            step: step.name(),
        }));
        self.close(CloseReason::InternalError);
    }

    /// Whether the connection is a frame-aware WebSocket tunnel.
    fn is_frame_aware(&self) -> bool {
        matches!(&self.phase, Phase::Tunnel(tunnel) if tunnel.is_frame_aware())
    }

    /// Makes every progress the buffered bytes allow.
    fn drive(&mut self) {
        if matches!(self.phase, Phase::Tunnel(_)) {
            return self.drive_tunnel();
        }
        loop {
            let progressed = match self.phase {
                Phase::ReadingHead(_) => self.read_request_head(),
                Phase::Exchange(_) => self.pump_exchange(),
                _ => false,
            };
            if !progressed {
                break;
            }
        }
        // The frames of the proxy's own that the input made possible.
        self.pump_websocket();
        // A buffer consumed to its end is still a view of the allocation it was read
        // into, which would stay alive while the connection idles: let it go.
        release_if_empty(&mut self.client_buf);
        match &mut self.phase {
            Phase::Exchange(ex) => release_if_empty(&mut ex.upstream.buf),
            // Nor the room for a split frame head, once none is split.
            Phase::Tunnel(tunnel) => tunnel.shed(),
            _ => {}
        }
    }

    /// [`drive`](Self::drive) in a tunnel, after each of its reads and writes: only the
    /// tunnel's own steps (no head to parse, and no receive buffer, which the tunnel
    /// took at its start).
    #[inline]
    fn drive_tunnel(&mut self) {
        self.pump_websocket();
        if let Phase::Tunnel(tunnel) = &mut self.phase {
            tunnel.shed();
        }
    }

    /// The earliest deadline: the phase's own, or a pending write's.
    #[inline]
    pub(crate) fn next_deadline(&self) -> Option<(Deadline, Instant)> {
        let phase = match &self.phase {
            Phase::ReadingHead(reading) => Some(reading.deadline()),
            Phase::Connecting { deadline, .. } => Some((Deadline::Connect, *deadline)),
            Phase::Exchange(ex) => ex.read_deadline.map(|at| (Deadline::Read, at)),
            Phase::Tunnel(tunnel) => tunnel.deadline(&self.config.routes[tunnel.route].timeouts),
            Phase::Closed => return None,
        };
        earlier(phase, self.writes.next())
    }

    /// The `send_timeout` of the phase writing: its exchange's or its tunnel's route. A
    /// connection between requests writes only a canned answer before it closes.
    fn send_timeout(&self) -> Option<Duration> {
        match &self.phase {
            Phase::Connecting { exchange: ex, .. } | Phase::Exchange(ex) => {
                Some(self.config.routes[ex.route].timeouts.send)
            }
            Phase::Tunnel(tunnel) => Some(self.config.routes[tunnel.route].timeouts.send),
            Phase::ReadingHead(_) | Phase::Closed => None,
        }
    }

    /// Something is being written towards `to`: it must be flushed within the phase's
    /// `send_timeout`.
    pub(crate) fn queue_write(&mut self, to: Side) {
        if let Some(send) = self.send_timeout() {
            self.writes.queued(to, self.now + send);
        }
    }

    pub(crate) fn send_client(&mut self, bytes: Bytes) {
        if let Some(ex) = self.phase.exchange_mut() {
            ex.bytes_to_client += bytes.len() as u64;
        }
        self.queue_write(Side::Client);
        self.out.push_back(Output::ToClient(bytes));
    }

    pub(crate) fn send_upstream(&mut self, bytes: Bytes) {
        self.queue_write(Side::Upstream);
        self.out.push_back(Output::ToUpstream(bytes));
    }
}

/// Drops an empty buffer's hold on its allocation (even a view with no capacity left
/// keeps the allocation it was split from alive).
fn release_if_empty(buffer: &mut BytesMut) {
    if buffer.is_empty() {
        *buffer = BytesMut::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs(conn: &mut Connection) -> Vec<Output> {
        std::iter::from_fn(|| conn.poll_output()).collect()
    }

    #[test]
    fn an_illegal_transition_closes_with_an_event_naming_the_state_and_step() {
        let now = Instant::now();
        let mut conn = Connection::new(Arc::new(Config::default()), PeerInfo::default(), now);
        assert!(!conn.enter(Step::Connected));
        assert_eq!(
            outputs(&mut conn),
            vec![
                Output::Event(Event::IllegalTransition {
                    state: StateKind::ReadingHead,
                    step: "Connected",
                }),
                Output::Event(Event::Closed {
                    reason: CloseReason::InternalError
                }),
                Output::Close,
            ]
        );
        assert!(conn.is_closed());
    }

    #[test]
    fn an_illegal_transition_with_an_upstream_held_gives_it_back_and_logs_the_exchange() {
        let now = Instant::now();
        let mut conn = Connection::new(Arc::new(Config::default()), PeerInfo::default(), now);
        let request = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..]);
        conn.handle_input(Input::ClientData(request), now).unwrap();
        assert_eq!(conn.state(), StateKind::Connecting);
        outputs(&mut conn);
        assert!(!conn.enter(Step::KeepAlive { idle_until: now }));
        let out = outputs(&mut conn);
        assert_eq!(
            out[..2],
            [
                Output::Event(Event::IllegalTransition {
                    state: StateKind::Connecting,
                    step: "KeepAlive",
                }),
                Output::ReleaseUpstream { reusable: false },
            ]
        );
        assert!(matches!(
            &out[2],
            Output::Event(Event::Exchange(record))
                if record.close == Some(CloseReason::InternalError)
        ));
        assert_eq!(out.last(), Some(&Output::Close));
        assert!(conn.is_closed());
    }

    /// What every connection's task holds inline (benches/RESULTS.md, "Memory per idle
    /// tunnel"); exact, so that a field added shows here.
    #[test]
    fn a_connection_and_its_phase_stay_small() {
        // The reading phase's deadline and head scanner; a tunnel's last reads and the
        // pointer to the rest of it fit in the same room.
        assert_eq!(std::mem::size_of::<Phase>(), 48);
        // The configuration, the client's address, the phase, the clock, the output
        // queue, the client's unread bytes, the write deadlines, a drain's grace.
        assert_eq!(std::mem::size_of::<Connection>(), 208);
    }

    #[test]
    fn a_second_close_changes_nothing() {
        let now = Instant::now();
        let mut conn = Connection::new(Arc::new(Config::default()), PeerInfo::default(), now);
        conn.close(CloseReason::ClientClosed);
        let first = outputs(&mut conn);
        conn.close(CloseReason::ClientClosed);
        assert_eq!(outputs(&mut conn), vec![]);
        assert_eq!(first.last(), Some(&Output::Close));
    }
}
