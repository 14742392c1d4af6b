//! [`Connection`]: one client connection, from request heads to tunnel, as inputs in and
//! outputs out.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::config::{Config, PeerInfo, RouteId};
use crate::error::{ErrorKind, Misuse, ProtocolError};
use crate::event::{AccessRecord, CloseReason, Event, TunnelRecord};
use crate::framing::{self, BodyKind, BodyReader, Piece};
use crate::head::{self, Head, HeadScanner, Scan};
use crate::headers::{self, ClientConnection, RequestExtras};
use crate::io::{Input, Output, Side};
use crate::state::{self, StateKind, Step};
use crate::timer::{Timer, TimerTable};
use crate::tunnel::Tunnel;
use crate::upgrade::{self, Proposal};

/// Most bytes buffered from one peer that the core has not forwarded yet (a request body
/// waiting for the upstream connection, or bytes held behind a pending exchange);
/// beyond it [`Connection::wants_read`] says stop.
const BUFFER_LIMIT: usize = 64 * 1024;

/// Where the response of the current exchange is.
#[derive(Debug)]
enum Response {
    AwaitingHead,
    Body {
        reader: BodyReader,
        chunked_out: bool,
    },
    Done,
}

/// One request/response exchange (or an upgrade attempt).
#[derive(Debug)]
struct Exchange {
    route: RouteId,
    method: String,
    target: String,
    started: Instant,
    is_head: bool,
    client_version: u8,
    client_keep_alive: bool,
    proposal: Option<Proposal>,
    upstream_head: Bytes,
    request: BodyReader,
    request_chunked: bool,
    request_body_bytes: u64,
    response: Response,
    reused: bool,
    retried: bool,
    upstream_sent_bytes: bool,
    upstream_reusable: bool,
    bytes_from_client: u64,
    bytes_to_client: u64,
    /// Final status forwarded to the client; 0 until then.
    status: u16,
}

impl Exchange {
    fn record(&self, status: u16, now: Instant, close: Option<CloseReason>) -> AccessRecord {
        AccessRecord {
            close,
            method: self.method.clone(),
            target: self.target.clone(),
            route: Some(self.route),
            status,
            bytes_from_client: self.bytes_from_client,
            bytes_to_client: self.bytes_to_client,
            duration: now.saturating_duration_since(self.started),
        }
    }
}

/// The proxy state for one client connection: a deterministic, sans-IO state machine.
///
/// `Connection` never touches a socket or a clock. The caller (an *adapter*, such as
/// `switchyard-smol`, or a test) feeds it what happened and performs what it asks.
///
/// # Methods, by kind
/// - Getters (`&self`): [`state`](Self::state), [`is_closed`](Self::is_closed),
///   [`wants_read`](Self::wants_read), [`poll_timeout`](Self::poll_timeout).
/// - Input: [`handle_input`](Self::handle_input) (bytes, EOFs, upstream connection
///   results, flushes, tunnel activity, shutdown, time) and its shorthand
///   [`handle_timeout`](Self::handle_timeout).
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
/// # Time
/// Every input carries `now`, given by the caller; the core never reads a clock, so tests
/// can drive it faster than real time. A `now` earlier than one already seen is treated
/// as the latest one. A timeout with nothing due is a no-op, so spurious wake-ups are safe.
///
/// # Errors
/// A peer's protocol error never panics and never returns `Err`: it becomes outputs (a
/// canned `400`/`404`/`408`/`413`/`414`/`431`/`501`/`502`/`504`/`505` to the client, an
/// [`Event::Rejected`], then [`Output::Close`]). `Err` ([`Misuse`]) is reserved for the
/// caller's mistakes, such as input after `Close`.
#[derive(Debug)]
pub struct Connection {
    config: Arc<Config>,
    peer: PeerInfo,
    /// The client's address as text, for forwarding headers (formatted once).
    client_text: Option<String>,
    state: StateKind,
    now: Instant,
    timers: TimerTable,
    out: VecDeque<Output>,
    client_buf: BytesMut,
    upstream_buf: BytesMut,
    client_scanner: HeadScanner,
    upstream_scanner: HeadScanner,
    /// Bytes of a request head have arrived (the header deadline runs).
    head_started: bool,
    /// Boxed: a tunnel (and an idle connection) need not carry its size.
    exchange: Option<Box<Exchange>>,
    tunnel: Option<Tunnel>,
    client_eof: bool,
    /// Graceful shutdown was asked for, with this grace for a tunnel.
    shutdown_grace: Option<Duration>,
    /// An upstream connection was asked for and not released yet.
    upstream_held: bool,
}

impl Connection {
    /// A connection that has just been accepted at `now`. The first request head must be
    /// complete within `header_timeout`.
    pub fn new(config: Arc<Config>, peer: PeerInfo, now: Instant) -> Self {
        let mut timers = TimerTable::default();
        timers.set(Timer::Header, now + config.timeouts.header);
        Connection {
            config,
            client_text: peer.client_addr.map(|a| a.to_string()),
            peer,
            state: StateKind::ReadingHead,
            now,
            timers,
            out: VecDeque::new(),
            client_buf: BytesMut::new(),
            upstream_buf: BytesMut::new(),
            client_scanner: HeadScanner::default(),
            upstream_scanner: HeadScanner::default(),
            head_started: false,
            exchange: None,
            tunnel: None,
            client_eof: false,
            shutdown_grace: None,
            upstream_held: false,
        }
    }

    /// The coarse state.
    pub fn state(&self) -> StateKind {
        self.state
    }

    /// Whether [`Output::Close`] was emitted; no input is accepted after it.
    pub fn is_closed(&self) -> bool {
        self.state == StateKind::Closed
    }

    /// Whether the caller should read from `side` now. False when the core does not
    /// need bytes from that peer or holds enough of them unprocessed (backpressure).
    pub fn wants_read(&self, side: Side) -> bool {
        match (self.state, side) {
            (StateKind::Closed, _) => false,
            (StateKind::Tunnel, side) => self.tunnel.as_ref().is_some_and(|t| !t.has_eof(side)),
            (StateKind::ReadingHead, Side::Client) => !self.client_eof,
            (StateKind::ReadingHead | StateKind::Connecting, Side::Upstream) => false,
            (StateKind::Connecting | StateKind::Exchange, Side::Client) => {
                !self.client_eof && self.client_buf.len() < BUFFER_LIMIT
            }
            (StateKind::Exchange, Side::Upstream) => self.upstream_buf.len() < BUFFER_LIMIT,
        }
    }

    /// The earliest deadline, if any: call [`handle_timeout`](Self::handle_timeout) then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        let table = self.timers.next();
        let tunnel = self.tunnel.as_ref().and_then(Tunnel::next_deadline);
        match (table, tunnel) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next action for the caller, in order; `None` when there is nothing to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        let output = self.out.pop_front();
        if output.is_none() && self.state == StateKind::Tunnel && self.out.capacity() > 0 {
            // A tunnel rarely has output: an idle one keeps no queue allocated.
            self.out = VecDeque::new();
        }
        output
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
        let state = self.state;
        let unexpected = |input: &'static str| Err(Misuse::Unexpected { state, input });
        match input {
            Input::ClientData(data) => {
                if state == StateKind::Tunnel || self.client_eof {
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
                self.upstream_held = false;
                self.answer_and_close(502, CloseReason::ConnectFailed);
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
            Input::Flushed { to } => self.timers.stop(send_timer(to)),
            Input::WriteFailed { to } => self.on_write_failed(to),
            Input::TunnelActivity { from, bytes } => {
                let Some(tunnel) = self.tunnel.as_mut() else {
                    return unexpected("TunnelActivity");
                };
                tunnel.activity(from, bytes, self.now);
                // The tunnel's own route, not whichever route an absent exchange implies.
                let send = tunnel.send_timeout;
                self.timers
                    .set_if_unset(send_timer(from.other()), self.now + send);
            }
            Input::Drain { grace } => self.on_shutdown(grace),
            Input::Timeout => self.on_timeout(),
        }
        self.drive();
        Ok(())
    }

    // ---- phases ----------------------------------------------------------------------

    fn enter(&mut self, step: Step) {
        match state::next(self.state, step) {
            Some(next) => self.state = next,
            None => debug_assert!(false, "illegal transition {:?} on {:?}", self.state, step),
        }
    }

    /// Makes every progress the buffered bytes allow.
    fn drive(&mut self) {
        loop {
            let progressed = match self.state {
                StateKind::ReadingHead => self.read_request_head(),
                StateKind::Exchange => self.pump_exchange(),
                _ => false,
            };
            if !progressed {
                break;
            }
        }
        // A buffer consumed to its end is still a view of the allocation it was read
        // into, which would stay alive while the connection idles: let it go.
        release_if_empty(&mut self.client_buf);
        release_if_empty(&mut self.upstream_buf);
    }

    fn route_or_default(&self) -> RouteId {
        self.exchange
            .as_ref()
            .map_or(0, |e| e.route)
            .min(self.config.routes.len().saturating_sub(1))
    }

    fn route_timeouts(&self) -> &crate::config::Timeouts {
        self.config
            .routes
            .get(self.route_or_default())
            .map_or(&self.config.timeouts, |r| &r.timeouts)
    }

    // ---- request head ----------------------------------------------------------------

    fn read_request_head(&mut self) -> bool {
        if self.client_buf.is_empty() {
            return false;
        }
        if !self.head_started {
            if !head::skip_leading_crlf(&mut self.client_buf) {
                return false;
            }
            // A request starts with a method token: anything else (say, WebSocket frames
            // held behind a refused upgrade) is refused now, not at the header deadline.
            if !head::is_tchar(self.client_buf[0]) {
                self.reject(ProtocolError::client(ErrorKind::MalformedHead));
                return false;
            }
            self.head_started = true;
            if self.timers.get(Timer::Idle).is_some() {
                self.timers.stop(Timer::Idle);
                self.timers
                    .set(Timer::Header, self.now + self.config.timeouts.header);
            }
        }
        let limits = &self.config.limits;
        match self.client_scanner.scan(&self.client_buf, limits) {
            Err(kind) => {
                self.reject(ProtocolError::client(kind));
                false
            }
            Ok(Scan::Partial) => false,
            Ok(Scan::Complete(end)) => {
                let bytes = self.client_buf.split_to(end).freeze();
                self.client_scanner.reset();
                self.head_started = false;
                self.timers.stop(Timer::Header);
                match head::parse_request(bytes, &self.config.limits) {
                    Ok(head) => self.accept_request(head),
                    Err(kind) => self.reject(ProtocolError::client(kind)),
                }
                true
            }
        }
    }

    fn accept_request(&mut self, head: Head) {
        let method = String::from_utf8_lossy(head.method()).into_owned();
        let target = String::from_utf8_lossy(head.slice(&head.target)).into_owned();
        let checked = check_request(&head, &self.config);
        let (route, body) = match checked {
            Ok(ok) => ok,
            Err(kind) => {
                self.exchange_failed(&method, &target, &head, ProtocolError::client(kind));
                return;
            }
        };
        let route_cfg = &self.config.routes[route];
        let proposal = upgrade::proposal(&head, &route_cfg.allow_upgrade);
        let client_keep_alive = if head.version == 1 {
            !head.list_has("connection", "close")
        } else {
            head.list_has("connection", "keep-alive")
        };
        let extras = RequestExtras {
            chunked: body == BodyKind::Chunked,
            upgrade: proposal.as_ref().map(|p| &p.upgrade[..]),
            empty_host: head.version == 0 && !head.has("host"),
        };
        let upstream_head = headers::upstream_request(
            &head,
            &self.config.forwarding,
            &self.peer,
            self.client_text.as_deref(),
            &extras,
        );
        self.out.push_back(Output::Event(Event::Request {
            method: method.clone(),
            target: target.clone(),
            route,
            upgrade: proposal
                .as_ref()
                .map(|p| String::from_utf8_lossy(&p.upgrade).into_owned()),
        }));
        self.exchange = Some(Box::new(Exchange {
            route,
            is_head: head.method() == b"HEAD",
            method,
            target,
            started: self.now,
            client_version: head.version,
            client_keep_alive,
            proposal,
            upstream_head,
            request: BodyReader::new(body, self.config.limits.max_header_bytes),
            request_chunked: body == BodyKind::Chunked,
            request_body_bytes: 0,
            response: Response::AwaitingHead,
            reused: false,
            retried: false,
            upstream_sent_bytes: false,
            upstream_reusable: false,
            bytes_from_client: head.bytes.len() as u64,
            bytes_to_client: 0,
            status: 0,
        }));
        self.enter(Step::HeadAccepted);
        self.connect(route);
    }

    fn connect(&mut self, route: RouteId) {
        self.upstream_held = true;
        self.out.push_back(Output::Connect(route));
        let connect = self.config.routes[route].timeouts.connect;
        self.timers.set(Timer::Connect, self.now + connect);
    }

    fn on_connected(&mut self, reused: bool) {
        self.timers.stop(Timer::Connect);
        self.enter(Step::Connected);
        let Some(ex) = self.exchange.as_mut() else {
            return;
        };
        ex.reused = reused;
        let head = ex.upstream_head.clone();
        let request_done = ex.request.is_done();
        self.send_upstream(head);
        if request_done {
            self.arm_read();
        }
    }

    // ---- exchange --------------------------------------------------------------------

    fn pump_exchange(&mut self) -> bool {
        self.pump_request() | self.pump_response() | self.finish_exchange()
    }

    /// Forwards what the client sent of the request body.
    fn pump_request(&mut self) -> bool {
        let Some(ex) = self.exchange.as_mut() else {
            return false;
        };
        if ex.request.is_done() {
            return false;
        }
        let max_body = self.config.routes[ex.route].max_body_bytes;
        match ex.request.next(&mut self.client_buf) {
            Ok(None) => false,
            Ok(Some(Piece::Data(data))) => {
                ex.request_body_bytes += data.len() as u64;
                ex.bytes_from_client += data.len() as u64;
                if max_body.is_some_and(|max| ex.request_body_bytes > max) {
                    self.reject(ProtocolError::client(ErrorKind::BodyTooLarge));
                    return false;
                }
                self.send_upstream(data);
                true
            }
            Ok(Some(Piece::ChunkStart(size))) => {
                if max_body.is_some_and(|max| ex.request_body_bytes.saturating_add(size) > max) {
                    self.reject(ProtocolError::client(ErrorKind::BodyTooLarge));
                    return false;
                }
                self.send_upstream(framing::chunk_head(size));
                true
            }
            Ok(Some(Piece::ChunkEnd)) => {
                self.send_upstream(framing::CHUNK_END);
                true
            }
            Ok(Some(Piece::End)) => {
                if ex.request_chunked {
                    self.send_upstream(framing::LAST_CHUNK);
                }
                self.arm_read();
                true
            }
            Err(kind) => {
                self.reject(ProtocolError::client(kind));
                false
            }
        }
    }

    /// Reads and forwards the upstream's response.
    fn pump_response(&mut self) -> bool {
        let Some(ex) = self.exchange.as_mut() else {
            return false;
        };
        match &mut ex.response {
            Response::AwaitingHead => {
                if self.upstream_buf.is_empty() {
                    return false;
                }
                match self
                    .upstream_scanner
                    .scan(&self.upstream_buf, &self.config.limits)
                {
                    Ok(Scan::Partial) => false,
                    Ok(Scan::Complete(end)) => {
                        let bytes = self.upstream_buf.split_to(end).freeze();
                        self.upstream_scanner.reset();
                        match head::parse_response(bytes, &self.config.limits) {
                            Ok(head) => self.on_response_head(head),
                            Err(kind) => self.reject(ProtocolError::upstream(kind)),
                        }
                        true
                    }
                    Err(kind) => {
                        self.reject(ProtocolError::upstream(kind));
                        false
                    }
                }
            }
            Response::Body {
                reader,
                chunked_out,
            } => {
                let chunked_out = *chunked_out;
                match reader.next(&mut self.upstream_buf) {
                    Ok(None) => false,
                    Ok(Some(Piece::Data(data))) => {
                        self.send_client(data);
                        true
                    }
                    Ok(Some(Piece::ChunkStart(size))) => {
                        if chunked_out {
                            self.send_client(framing::chunk_head(size));
                        }
                        true
                    }
                    Ok(Some(Piece::ChunkEnd)) => {
                        if chunked_out {
                            self.send_client(framing::CHUNK_END);
                        }
                        true
                    }
                    Ok(Some(Piece::End)) => {
                        ex.response = Response::Done;
                        if chunked_out {
                            self.send_client(framing::LAST_CHUNK);
                        }
                        true
                    }
                    Err(kind) => {
                        self.reject(ProtocolError::upstream(kind));
                        false
                    }
                }
            }
            Response::Done => {
                if !self.upstream_buf.is_empty() {
                    // Bytes after a complete response are never forwarded, and the
                    // connection they came on is not trusted again.
                    ex.upstream_reusable = false;
                    self.upstream_buf.clear();
                    self.out
                        .push_back(Output::Event(Event::Rejected(ProtocolError::upstream(
                            ErrorKind::UnexpectedResponse,
                        ))));
                }
                false
            }
        }
    }

    fn on_response_head(&mut self, head: Head) {
        let Some(ex) = self.exchange.as_mut() else {
            return;
        };
        match head.status {
            101 => self.on_switch(head),
            100..=199 => {
                // Interim responses are forwarded to HTTP/1.1 clients only (RFC 9110 §15.2).
                if ex.client_version == 1 {
                    let bytes = headers::client_response(&head, false, ClientConnection::Interim);
                    self.send_client(bytes);
                }
            }
            status => {
                let body = match framing::response_body(&head, ex.is_head) {
                    Ok(body) => body,
                    Err(kind) => return self.reject(ProtocolError::upstream(kind)),
                };
                let client_11 = ex.client_version == 1;
                let chunked_out = body == BodyKind::Chunked && client_11;
                let delimited = match body {
                    BodyKind::UntilClose => false,
                    BodyKind::Chunked => client_11,
                    BodyKind::Empty | BodyKind::Length(_) => true,
                };
                let keep = ex.client_keep_alive
                    && delimited
                    && ex.request.is_done()
                    && self.shutdown_grace.is_none()
                    && !self.client_eof;
                ex.client_keep_alive = keep;
                let conn = match (keep, client_11) {
                    (false, _) => ClientConnection::Close,
                    (true, true) => ClientConnection::Persistent,
                    (true, false) => ClientConnection::KeepAlive10,
                };
                ex.upstream_reusable = head.version == 1
                    && !head.list_has("connection", "close")
                    && body != BodyKind::UntilClose
                    && ex.proposal.is_none();
                ex.status = status;
                // A body without a coding the 1.0 client understands is sent raw and
                // delimited by closing.
                let reader_kind = body;
                ex.response = Response::Body {
                    reader: BodyReader::new(reader_kind, self.config.limits.max_header_bytes),
                    chunked_out,
                };
                let bytes = headers::client_response(&head, chunked_out, conn);
                self.out
                    .push_back(Output::Event(Event::Response { status }));
                self.send_client(bytes);
            }
        }
    }

    /// A `101`: tunnel only when it answers a proposal and validates; otherwise `502`.
    fn on_switch(&mut self, head: Head) {
        let Some(ex) = self.exchange.as_mut() else {
            return;
        };
        let validated = upgrade::validate_switch(&head, ex.proposal.as_ref());
        let protocol = match validated {
            Ok(protocol) if ex.request.is_done() => protocol,
            _ => return self.reject(ProtocolError::upstream(ErrorKind::InvalidSwitch)),
        };
        ex.status = 101;
        let target = ex.target.clone();
        let route = ex.route;
        let bytes = headers::client_response(&head, false, ClientConnection::Upgrade);
        self.out
            .push_back(Output::Event(Event::Response { status: 101 }));
        self.send_client(bytes);
        self.timers.stop(Timer::Read);
        self.timers.stop(Timer::Idle);
        let timeouts = self.route_timeouts().clone();
        self.out.push_back(Output::Event(Event::TunnelOpened {
            route,
            protocol: protocol.clone(),
        }));
        self.out.push_back(Output::StartTunnel {
            // Taken whole, so that an idle tunnel keeps no receive buffer alive.
            client_leftover: std::mem::take(&mut self.client_buf).freeze(),
            upstream_leftover: std::mem::take(&mut self.upstream_buf).freeze(),
        });
        let mut tunnel = Tunnel::new(route, target, protocol, self.now, &timeouts);
        if self.client_eof {
            tunnel.eof(Side::Client, self.now);
            self.out.push_back(Output::HalfClose {
                side: Side::Upstream,
            });
        }
        self.tunnel = Some(tunnel);
        self.exchange = None;
        self.enter(Step::Switched);
        if let Some(grace) = self.shutdown_grace {
            self.timers.set(Timer::Shutdown, self.now + grace);
        }
    }

    /// Ends the exchange when both the request and the response are complete.
    fn finish_exchange(&mut self) -> bool {
        let Some(ex) = self.exchange.as_ref() else {
            return false;
        };
        if !ex.request.is_done() || !matches!(ex.response, Response::Done) {
            return false;
        }
        let reusable = ex.upstream_reusable && self.upstream_buf.is_empty();
        let keep_alive = ex.client_keep_alive && self.shutdown_grace.is_none() && !self.client_eof;
        let close = (!keep_alive).then(|| {
            if self.shutdown_grace.is_some() {
                CloseReason::Shutdown
            } else if self.client_eof {
                CloseReason::ClientClosed
            } else {
                CloseReason::NotKeptAlive
            }
        });
        let record = ex.record(ex.status, self.now, close);
        self.release_upstream(reusable);
        self.timers.stop(Timer::Read);
        self.out.push_back(Output::Event(Event::Exchange(record)));
        self.exchange = None;
        match close {
            None => {
                self.enter(Step::KeepAlive);
                self.timers
                    .set(Timer::Idle, self.now + self.config.timeouts.idle);
            }
            Some(reason) => self.close(reason),
        }
        true
    }

    fn on_upstream_data(&mut self, data: BytesMut) {
        if let Some(ex) = self.exchange.as_mut() {
            ex.upstream_sent_bytes = true;
        }
        if self.timers.get(Timer::Read).is_some() {
            self.arm_read();
        }
        self.upstream_buf.unsplit(data);
    }

    fn on_upstream_eof(&mut self) {
        let Some(ex) = self.exchange.as_mut() else {
            return;
        };
        match &mut ex.response {
            Response::AwaitingHead => {
                let retry = ex.reused
                    && !ex.retried
                    && !ex.upstream_sent_bytes
                    && ex.request.kind() == BodyKind::Empty;
                if retry {
                    // A pooled connection the upstream closed while idle: ask once for a
                    // fresh one (the request has no body, so it can be sent again).
                    ex.retried = true;
                    let route = ex.route;
                    self.upstream_buf.clear();
                    self.upstream_scanner.reset();
                    self.timers.stop(Timer::Read);
                    self.release_upstream(false);
                    self.enter(Step::Reconnect);
                    self.connect(route);
                } else {
                    self.reject(ProtocolError::upstream(ErrorKind::Truncated));
                }
            }
            Response::Body { .. } => {
                // Whatever is buffered belongs to the body; decode it first.
                self.drive();
                self.on_upstream_eof_in_body();
            }
            Response::Done => self.on_upstream_eof_done(),
        }
    }

    fn on_upstream_eof_in_body(&mut self) {
        let Some(ex) = self.exchange.as_mut() else {
            return;
        };
        let Response::Body {
            reader,
            chunked_out,
        } = &mut ex.response
        else {
            return self.on_upstream_eof_done();
        };
        let chunked_out = *chunked_out;
        match reader.eof() {
            Ok(_) => {
                ex.response = Response::Done;
                ex.upstream_reusable = false;
                if chunked_out {
                    self.send_client(framing::LAST_CHUNK);
                }
                self.drive();
            }
            Err(kind) => {
                // Mid-body: the client sees a truncated message, never a forged end.
                self.out
                    .push_back(Output::Event(Event::Rejected(ProtocolError::upstream(
                        kind,
                    ))));
                self.release_upstream(false);
                self.log_exchange(CloseReason::UpstreamClosed);
                self.close(CloseReason::UpstreamClosed);
            }
        }
    }

    /// The upstream closed after its response; the request body cannot go on.
    fn on_upstream_eof_done(&mut self) {
        let Some(ex) = self.exchange.as_mut() else {
            return;
        };
        ex.upstream_reusable = false;
        if !ex.request.is_done() {
            self.release_upstream(false);
            self.log_exchange(CloseReason::UpstreamClosed);
            self.close(CloseReason::UpstreamClosed);
        }
    }

    // ---- tunnel ----------------------------------------------------------------------

    fn on_tunnel_eof(&mut self, from: Side) {
        let Some(tunnel) = self.tunnel.as_mut() else {
            return;
        };
        if tunnel.has_eof(from) {
            return;
        }
        let both = tunnel.eof(from, self.now);
        self.out.push_back(Output::HalfClose { side: from.other() });
        if both {
            self.close_tunnel(CloseReason::BothClosed);
        }
    }

    fn close_tunnel(&mut self, reason: CloseReason) {
        if let Some(t) = self.tunnel.take() {
            self.out
                .push_back(Output::Event(Event::TunnelClosed(TunnelRecord {
                    route: t.route,
                    target: t.target,
                    protocol: t.protocol,
                    bytes_client_to_upstream: t.bytes_from[Side::Client.index()],
                    bytes_upstream_to_client: t.bytes_from[Side::Upstream.index()],
                    duration: self.now.saturating_duration_since(t.started),
                    reason,
                })));
        }
        self.close(reason);
    }

    // ---- client EOF, shutdown, deadlines -------------------------------------------

    fn on_client_eof(&mut self) {
        if self.state == StateKind::Tunnel {
            return self.on_tunnel_eof(Side::Client);
        }
        if self.client_eof {
            return;
        }
        self.client_eof = true;
        match self.state {
            StateKind::ReadingHead => self.close(CloseReason::ClientClosed),
            _ => {
                // A client that half-closes after a complete request still gets its
                // response; one that leaves mid-request ends the exchange.
                let complete = self
                    .exchange
                    .as_ref()
                    .is_some_and(|e| e.request.complete_within(&self.client_buf));
                if !complete {
                    self.release_upstream(false);
                    self.log_exchange(CloseReason::ClientClosed);
                    self.close(CloseReason::ClientClosed);
                }
            }
        }
    }

    fn on_write_failed(&mut self, to: Side) {
        let reason = match to {
            Side::Client => CloseReason::ClientClosed,
            Side::Upstream => CloseReason::UpstreamClosed,
        };
        match (self.state, to) {
            (StateKind::Tunnel, _) => self.close_tunnel(reason),
            (StateKind::Exchange, Side::Upstream) => {
                self.out
                    .push_back(Output::Event(Event::Rejected(ProtocolError::upstream(
                        ErrorKind::Truncated,
                    ))));
                self.answer_and_close(502, reason);
            }
            _ => {
                self.client_eof = true;
                self.release_upstream(false);
                self.log_exchange(reason);
                self.close(reason);
            }
        }
    }

    fn on_shutdown(&mut self, grace: Duration) {
        if self.shutdown_grace.is_some() {
            return;
        }
        self.shutdown_grace = Some(grace);
        match self.state {
            StateKind::ReadingHead if !self.head_started && self.client_buf.is_empty() => {
                self.close(CloseReason::Shutdown)
            }
            StateKind::Tunnel => self.timers.set(Timer::Shutdown, self.now + grace),
            _ => {}
        }
    }

    fn on_timeout(&mut self) {
        if let Some(reason) = self.tunnel.as_ref().and_then(|t| t.expired(self.now)) {
            return self.close_tunnel(reason);
        }
        let Some(timer) = self.timers.expired(self.now) else {
            return;
        };
        match timer {
            Timer::Header => {
                if self.head_started || !self.client_buf.is_empty() {
                    self.answer_and_close(408, CloseReason::HeaderTimeout);
                } else {
                    self.close(CloseReason::HeaderTimeout);
                }
            }
            Timer::Idle => self.close(CloseReason::IdleTimeout),
            Timer::Connect => self.answer_and_close(504, CloseReason::ConnectTimeout),
            Timer::Read => self.answer_and_close(504, CloseReason::ReadTimeout),
            Timer::SendClient | Timer::SendUpstream => {
                if self.tunnel.is_some() {
                    self.close_tunnel(CloseReason::SendTimeout)
                } else {
                    self.answer_and_close(504, CloseReason::SendTimeout)
                }
            }
            Timer::Shutdown => self.close_tunnel(CloseReason::Shutdown),
        }
    }

    // ---- outputs ---------------------------------------------------------------------

    fn send_client(&mut self, bytes: Bytes) {
        if let Some(ex) = self.exchange.as_mut() {
            ex.bytes_to_client += bytes.len() as u64;
        }
        let send = self.route_timeouts().send;
        self.timers.set_if_unset(Timer::SendClient, self.now + send);
        self.out.push_back(Output::ToClient(bytes));
    }

    fn send_upstream(&mut self, bytes: Bytes) {
        let send = self.route_timeouts().send;
        self.timers
            .set_if_unset(Timer::SendUpstream, self.now + send);
        self.out.push_back(Output::ToUpstream(bytes));
    }

    fn arm_read(&mut self) {
        let read = self.route_timeouts().read;
        self.timers.set(Timer::Read, self.now + read);
    }

    /// Gives the upstream connection back. Bytes it sent that were not part of a
    /// response go with it: they must never be read as the next response.
    fn release_upstream(&mut self, reusable: bool) {
        if self.upstream_held {
            self.upstream_held = false;
            let stray = !self.upstream_buf.is_empty();
            self.upstream_buf.clear();
            self.upstream_scanner.reset();
            if stray && reusable {
                self.out
                    .push_back(Output::Event(Event::Rejected(ProtocolError::upstream(
                        ErrorKind::UnexpectedResponse,
                    ))));
            }
            self.out.push_back(Output::ReleaseUpstream {
                reusable: reusable && !stray,
            });
        }
    }

    fn log_exchange(&mut self, close: CloseReason) {
        if let Some(ex) = self.exchange.take() {
            let record = ex.record(ex.status, self.now, Some(close));
            self.out.push_back(Output::Event(Event::Exchange(record)));
        }
    }

    /// A peer broke the protocol: answer with its status hint and close.
    fn reject(&mut self, error: ProtocolError) {
        self.out.push_back(Output::Event(Event::Rejected(error)));
        self.answer_and_close(error.status_hint(), CloseReason::ProtocolError);
    }

    /// A request head that parsed but breaks a rule: logged with its method and target.
    fn exchange_failed(&mut self, method: &str, target: &str, head: &Head, error: ProtocolError) {
        let status = error.status_hint();
        self.out.push_back(Output::Event(Event::Rejected(error)));
        let canned = headers::canned(status);
        let record = AccessRecord {
            close: Some(CloseReason::ProtocolError),
            method: method.to_string(),
            target: target.to_string(),
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

    /// Sends a canned `status` when no final response head was forwarded yet (otherwise
    /// the client's view is a truncated response), logs the exchange, and closes.
    fn answer_and_close(&mut self, status: u16, reason: CloseReason) {
        let forwarded = self.exchange.as_ref().is_some_and(|e| e.status >= 200);
        let mut status_logged = status;
        if !forwarded {
            self.send_client(headers::canned(status));
        } else if let Some(ex) = self.exchange.as_ref() {
            status_logged = ex.status;
        }
        self.release_upstream(false);
        match self.exchange.take() {
            Some(ex) => {
                let record = ex.record(status_logged, self.now, Some(reason));
                self.out.push_back(Output::Event(Event::Exchange(record)));
            }
            None => {
                self.out
                    .push_back(Output::Event(Event::Exchange(AccessRecord {
                        close: Some(reason),
                        method: "-".into(),
                        target: "-".into(),
                        route: None,
                        status,
                        bytes_from_client: 0,
                        bytes_to_client: headers::canned(status).len() as u64,
                        duration: Duration::ZERO,
                    })));
            }
        }
        self.close(reason);
    }

    fn close(&mut self, reason: CloseReason) {
        if self.tunnel.is_some() {
            return self.close_tunnel(reason);
        }
        self.release_upstream(false);
        self.timers.clear();
        self.out.push_back(Output::Event(Event::Closed { reason }));
        self.out.push_back(Output::Close);
        self.enter(Step::Close);
    }
}

fn send_timer(to: Side) -> Timer {
    match to {
        Side::Client => Timer::SendClient,
        Side::Upstream => Timer::SendUpstream,
    }
}

/// Rules for a parsed request head: target form, `Host`, framing, route, body limit.
fn check_request(head: &Head, config: &Config) -> Result<(RouteId, BodyKind), ErrorKind> {
    let target = head.slice(&head.target);
    let path: &[u8] = if target.starts_with(b"/") {
        target
    } else if target == b"*" && head.method() == b"OPTIONS" {
        b"/"
    } else if let Some(rest) = strip_scheme(target) {
        match rest.iter().position(|&b| b == b'/') {
            Some(i) => &rest[i..],
            None => b"/",
        }
    } else {
        return Err(ErrorKind::BadTarget);
    };
    let mut hosts = head.values("host");
    match (hosts.next(), hosts.next()) {
        (_, Some(_)) => return Err(ErrorKind::BadHost),
        (None, None) if head.version == 1 => return Err(ErrorKind::BadHost),
        (Some(host), None) if !valid_host(host) => return Err(ErrorKind::BadHost),
        _ => {}
    }
    // `Transfer_Encoding` / `Content_Length` become framing fields for upstreams that
    // map `_` to `-` (CGI, WSGI): a length the proxy did not see. Refused.
    let lookalike = |f: &head::Field| {
        let name = head.name(f);
        name.contains(&b'_')
            && ["content-length", "transfer-encoding"]
                .iter()
                .any(|framing| {
                    name.len() == framing.len()
                        && name.iter().zip(framing.bytes()).all(|(&a, b)| {
                            let a = if a == b'_' {
                                b'-'
                            } else {
                                a.to_ascii_lowercase()
                            };
                            a == b
                        })
                })
    };
    if head.fields.iter().any(lookalike) {
        return Err(ErrorKind::BadTransferEncoding);
    }
    let body = framing::request_body(head)?;
    let route = config.route_for(path).ok_or(ErrorKind::NoRoute)?;
    if let (BodyKind::Length(n), Some(max)) = (body, config.routes[route].max_body_bytes) {
        if n > max {
            return Err(ErrorKind::BodyTooLarge);
        }
    }
    Ok((route, body))
}

fn strip_scheme(target: &[u8]) -> Option<&[u8]> {
    for scheme in [&b"http://"[..], b"https://"] {
        if target.len() > scheme.len() && target[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return Some(&target[scheme.len()..]);
        }
    }
    None
}

/// `Host = uri-host [ ":" port ]`: reg-name, IPv4 or bracketed IPv6 characters only.
fn valid_host(host: &[u8]) -> bool {
    host.iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%:[]".contains(&b))
}

/// Drops an empty buffer's hold on its allocation (even a view with no capacity left
/// keeps the allocation it was split from alive).
fn release_if_empty(buffer: &mut BytesMut) {
    if buffer.is_empty() {
        *buffer = BytesMut::new();
    }
}
