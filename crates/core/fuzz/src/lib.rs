//! A fuzzing driver for [`switchyard_core::Connection`]: decodes a sequence of adapter
//! events (client and upstream bytes, EOFs, connection results, time, tunnel activity,
//! flushes, failed writes, shutdown), plays them the way a correct adapter would, drains every output,
//! and checks the core's invariants after each step:
//!
//! - no panic (debug assertions are on in fuzz builds), and no [`Misuse`] for an input a
//!   correct adapter may give;
//! - nothing is output after [`Output::Close`], and input after it is [`Misuse::Closed`];
//! - [`Output::StartTunnel`] comes at most once, only right after a `101` head was written
//!   to the client, only when the upstream really sent a `101`; after it the core asks
//!   for no connection, and in a byte tunnel it writes no bytes;
//! - in a frame-aware WebSocket tunnel (routes `/` and `/ping` validate frames, `/loose`
//!   pings without validating, `/raw` is a byte tunnel) the harness moves bytes as a
//!   driver does (raw within [`Connection::tunnel_passthrough`], at 0 lent with
//!   [`Connection::handle_tunnel_read`] or given as [`Input::TunnelData`], keys answered
//!   to [`Output::NeedMaskingKey`] or withheld),
//!   and everything written towards each side, the core's outputs and the raw bytes
//!   together, parses as whole frames with [`FrameParser`] (valid ones, on a validating
//!   route); a Ping or Close of the proxy's own starts at a frame boundary of that
//!   stream;
//! - bytes go to the upstream only while a connection is held;
//! - a response head forwarded to the client was sent by the upstream connection in use
//!   (not left over from an earlier one);
//! - every request head written to an upstream and every response head written to the
//!   client is well-formed: CRLF line endings, token names, no control characters, no
//!   hop-by-hop field but the proxy's own framing and `Connection`.
//!
//! ```
//! use switchyard_core_fuzz::{run, Event};
//! run(&[Event::ClientTemplate(0), Event::ConnectOk(false), Event::UpstreamTemplate(0)]);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod heads;
mod proxy;

pub use proxy::run_proxy_header;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use heads::{check_request_head, check_response_head};
use switchyard_core::websocket::{encode, Extensions, FrameParser, Opcode, Rules};
use switchyard_core::{
    Config, Connection, Event as CoreEvent, Input, Misuse, Output, PeerInfo, Route, Side,
};

/// Requests a client may send, so the fuzzer reaches deep states quickly.
pub const CLIENT_TEMPLATES: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Drop\r\nX-Drop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\n\r\n",
    b"PUT /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
    b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"3\r\nabc\r\n",
    b"0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET /raw HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n\x81\x82abcdXY",
    b"GET /loose HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
];

/// Frames a peer may send in a WebSocket tunnel (masked when the client sends them):
/// opcode bits, FIN, payload length.
pub const FRAME_TEMPLATES: &[(u8, bool, usize)] = &[
    (0x1, true, 5),
    (0x2, true, 300),
    (0x2, true, 70_000),
    (0x1, false, 3),
    (0x0, false, 2),
    (0x0, true, 4),
    (0x9, true, 4),
    (0xA, true, 8),
    (0x8, true, 2),
    (0x8, true, 0),
    (0x3, true, 1),
    (0x9, false, 1),
];

/// Responses an upstream may send.
pub const UPSTREAM_TEMPLATES: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X\r\n\r\n2\r\nok\r\n0\r\nX: 1\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x02hi",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close",
    b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
    b"HTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: X-Up\r\nX-Up: 1\r\nKeep-Alive: 1\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n\xc1\x01x\x89\x00",
];

/// One thing that happens to the adapter.
#[derive(Debug, Clone, Arbitrary)]
pub enum Event {
    /// The client sends these bytes.
    ClientData(Vec<u8>),
    /// The client sends a template request.
    ClientTemplate(u8),
    /// The client sends a template request with one byte replaced.
    ClientMutated {
        /// Which template.
        template: u8,
        /// Where (modulo its length).
        at: u16,
        /// The new byte.
        byte: u8,
    },
    /// The upstream sends these bytes.
    UpstreamData(Vec<u8>),
    /// The upstream sends a template response.
    UpstreamTemplate(u8),
    /// The upstream sends a template response with one byte replaced.
    UpstreamMutated {
        /// Which template.
        template: u8,
        /// Where (modulo its length).
        at: u16,
        /// The new byte.
        byte: u8,
    },
    /// The client closes.
    ClientEof,
    /// The upstream closes.
    UpstreamEof,
    /// The pending connect succeeds (`reused`: from the pool).
    ConnectOk(bool),
    /// The pending connect fails.
    ConnectFail,
    /// Virtual time advances by this many milliseconds (scaled up to minutes).
    Advance(u16),
    /// The caller passes a `now` earlier than one already given.
    Rewind(u8),
    /// Tunnel bytes were copied.
    TunnelActivity {
        /// From the client (else from the upstream).
        from_client: bool,
        /// How many.
        bytes: u16,
    },
    /// Pending writes towards the client (or the upstream) completed.
    Flushed(bool),
    /// A pending write towards the client (or the upstream) failed.
    WriteFailed(bool),
    /// Graceful shutdown with this grace in milliseconds.
    Shutdown(u16),
    /// In a WebSocket tunnel, a peer sends a template frame, whole or only its first
    /// `cut` bytes (the rest is lost: a peer that then goes silent or leaves).
    Frame {
        /// From the client (else from the upstream).
        from_client: bool,
        /// Which template.
        template: u8,
        /// Bytes of it sent (0: all).
        cut: u16,
    },
    /// A masking key arrives, asked for or not.
    MaskingKey([u8; 4]),
    /// From now on the harness answers `NeedMaskingKey` at once (or withholds keys).
    AnswerKeys(bool),
    /// A spurious or due wake-up.
    Timeout,
}

fn template(list: &[&[u8]], index: u8) -> Vec<u8> {
    list[usize::from(index) % list.len()].to_vec()
}

fn mutated(list: &[&[u8]], index: u8, at: u16, byte: u8) -> Vec<u8> {
    let mut bytes = template(list, index);
    let at = usize::from(at) % bytes.len();
    bytes[at] = byte;
    bytes
}

/// Tracks what the adapter knows and checks every output.
struct Driver {
    conn: Connection,
    start: Instant,
    now: Instant,
    closed: bool,
    pending_connects: usize,
    connected: bool,
    /// Bytes the current upstream connection sent, before any tunnel.
    upstream_sent: Vec<u8>,
    /// The next ToUpstream is a request head (right after a connection was handed over).
    expect_request_head: bool,
    /// The next ToClient is a final response head (after `Event::Response`).
    expect_response_head: Option<u16>,
    last_to_client: Option<Bytes>,
    tunnel: bool,
    client_eof: bool,
    unflushed: [bool; 2],
    /// The tunnel follows WebSocket frames (known from the output after `StartTunnel`).
    frame_aware: bool,
    /// The output after `StartTunnel` will tell whether the tunnel is frame-aware.
    tunnel_kind_pending: bool,
    /// The route the tunnel opened on.
    tunnel_route: usize,
    /// Everything written towards each side in a frame-aware tunnel, and how much of it
    /// parsed as whole frames so far, with the parser that read it.
    streams: [Vec<u8>; 2],
    parsed: [usize; 2],
    parsers: [Option<FrameParser>; 2],
    answer_keys: bool,
    key_wanted: bool,
    keys_fed: u32,
    config: Arc<Config>,
    reached: Reached,
}

/// How deep one run went, so that a test can check the inputs do reach the states the
/// invariants are about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reached {
    /// A frame-aware WebSocket tunnel started.
    pub frame_aware_tunnel: bool,
    /// Frames of the proxy's own (Pings, Closes) it wrote.
    pub proxy_frames: usize,
    /// Lent tunnel reads of which the core forwarded a prefix in place.
    pub lent_in_place: usize,
}

impl Driver {
    fn new() -> Driver {
        let start = Instant::now();
        let mut config = Config::default();
        config.limits.max_header_bytes = 4096;
        config.limits.max_request_line = 1024;
        config.limits.max_headers = 20;
        for (prefix, validate, ping) in [
            ("/raw", false, false),
            ("/ping", true, true),
            ("/loose", false, true),
        ] {
            let mut route = Route::new(prefix);
            route.websocket.validate = validate;
            route.websocket.ping_interval = ping.then_some(Duration::from_secs(1));
            route.websocket.ping_timeout = Duration::from_secs(2);
            config.routes.push(route);
        }
        let config = Arc::new(config);
        let conn = Connection::new(config.clone(), PeerInfo::default(), start);
        Driver {
            conn,
            start,
            now: start,
            closed: false,
            pending_connects: 0,
            connected: false,
            upstream_sent: Vec::new(),
            expect_request_head: false,
            expect_response_head: None,
            last_to_client: None,
            tunnel: false,
            client_eof: false,
            unflushed: [false; 2],
            frame_aware: false,
            tunnel_kind_pending: false,
            tunnel_route: 0,
            streams: [Vec::new(), Vec::new()],
            parsed: [0; 2],
            parsers: [None, None],
            answer_keys: true,
            key_wanted: false,
            keys_fed: 0,
            config,
            reached: Reached::default(),
        }
    }

    fn feed(&mut self, input: Input, now: Instant) {
        let name = format!("{input:?}");
        let result = self.conn.handle_input(input, now);
        if self.closed {
            assert_eq!(result, Err(Misuse::Closed), "input after Close: {name}");
        } else {
            assert_eq!(result, Ok(()), "a legal input was refused: {name}");
        }
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(output) = self.conn.poll_output() {
            assert!(!self.closed, "output after Close: {output:?}");
            self.check(output);
        }
        if std::mem::take(&mut self.key_wanted) && self.answer_keys && !self.closed {
            self.keys_fed += 1;
            let key = self.keys_fed.wrapping_mul(0x9E37_79B9).to_be_bytes();
            self.feed(Input::MaskingKey(key), self.now);
        }
        if self.closed {
            assert!(self.conn.is_closed());
            assert_eq!(self.conn.poll_timeout(), None, "a deadline after Close");
            assert!(!self.conn.wants_read(Side::Client) && !self.conn.wants_read(Side::Upstream));
        }
    }

    fn check(&mut self, output: Output) {
        if std::mem::take(&mut self.tunnel_kind_pending) {
            self.frame_aware = output == Output::NeedMaskingKey;
            self.reached.frame_aware_tunnel |= self.frame_aware;
        }
        if self.tunnel && self.frame_aware {
            assert!(
                !matches!(output, Output::Connect(_) | Output::StartTunnel { .. }),
                "in a tunnel the core connects nowhere: {output:?}"
            );
            match &output {
                Output::ToClient(bytes) => self.written(Side::Client, bytes, true),
                Output::ToUpstream(bytes) => self.written(Side::Upstream, bytes, true),
                _ => {}
            }
        } else if self.tunnel {
            assert!(
                matches!(
                    output,
                    Output::HalfClose { .. }
                        | Output::ReleaseUpstream { .. }
                        | Output::Close
                        | Output::Event(_)
                ),
                "in a byte tunnel the core writes nothing and connects nowhere: {output:?}"
            );
        }
        match output {
            Output::Connect(_) => {
                assert!(!self.connected, "Connect while a connection is held");
                self.pending_connects += 1;
            }
            Output::ToClient(bytes) => {
                if let Some(status) = self.expect_response_head.take() {
                    check_response_head(&bytes, Some(status));
                }
                self.unflushed[0] = true;
                self.last_to_client = Some(bytes);
            }
            Output::ToUpstream(bytes) => {
                assert!(
                    self.connected,
                    "bytes for an upstream that is not connected"
                );
                if self.expect_request_head {
                    self.expect_request_head = false;
                    check_request_head(&bytes);
                }
                self.unflushed[1] = true;
            }
            Output::ReleaseUpstream { .. } => {
                // Releasing while the connect is still pending abandons the attempt.
                if self.connected {
                    self.connected = false;
                } else {
                    assert!(
                        self.pending_connects > 0,
                        "release of an upstream that is not held"
                    );
                    self.pending_connects -= 1;
                }
                self.upstream_sent.clear();
            }
            Output::StartTunnel { .. } => {
                assert!(!self.tunnel, "a second StartTunnel");
                assert!(self.connected, "a tunnel without an upstream");
                let head = self
                    .last_to_client
                    .take()
                    .expect("a 101 head before StartTunnel");
                assert!(
                    head.starts_with(b"HTTP/1.1 101 "),
                    "StartTunnel after {head:?}"
                );
                check_response_head(&head, Some(101));
                assert!(
                    self.upstream_sent.windows(4).any(|w| w == b" 101"),
                    "StartTunnel though the upstream never sent a 101"
                );
                self.tunnel = true;
                self.tunnel_kind_pending = true;
            }
            Output::NeedMaskingKey => {
                assert!(
                    self.tunnel && self.frame_aware,
                    "a key asked for outside a frame-aware tunnel"
                );
                self.key_wanted = true;
            }
            Output::Event(CoreEvent::TunnelOpened { route, .. }) => self.tunnel_route = route,
            Output::HalfClose { .. } => {}
            Output::Close => self.closed = true,
            Output::Event(CoreEvent::Response { status }) => {
                assert!(status >= 101, "final status {status}");
                // A response forwarded to the client came from the upstream connection in
                // use: never from bytes a previous connection left behind.
                assert!(
                    self.connected,
                    "a response {status} with no upstream connection"
                );
                assert!(
                    self.upstream_sent
                        .windows(4)
                        .any(|w| w == format!(" {status}").as_bytes()),
                    "a response {status} the current upstream connection never sent"
                );
                self.expect_response_head = Some(status);
            }
            Output::Event(_) => {}
            other => panic!("an output the harness does not know: {other:?}"),
        }
    }

    fn step(&mut self, event: Event) {
        let now = self.now;
        match event {
            Event::ClientData(bytes) => self.client(bytes),
            Event::ClientTemplate(i) => self.client(template(CLIENT_TEMPLATES, i)),
            Event::ClientMutated { template, at, byte } => {
                self.client(mutated(CLIENT_TEMPLATES, template, at, byte))
            }
            Event::UpstreamData(bytes) => self.upstream(bytes),
            Event::UpstreamTemplate(i) => self.upstream(template(UPSTREAM_TEMPLATES, i)),
            Event::UpstreamMutated { template, at, byte } => {
                self.upstream(mutated(UPSTREAM_TEMPLATES, template, at, byte))
            }
            Event::ClientEof => {
                if !self.client_eof && (self.closed || self.conn.wants_read(Side::Client)) {
                    self.client_eof = true;
                    self.feed(Input::ClientEof, now);
                }
            }
            Event::UpstreamEof => {
                if self.connected && self.conn.wants_read(Side::Upstream) {
                    self.feed(Input::UpstreamEof, now);
                }
            }
            Event::ConnectOk(reused) => {
                if self.pending_connects > 0 {
                    self.pending_connects -= 1;
                    self.connected = true;
                    self.expect_request_head = true;
                    self.feed(Input::UpstreamConnected { reused }, now);
                }
            }
            Event::ConnectFail => {
                if self.pending_connects > 0 {
                    self.pending_connects -= 1;
                    self.feed(Input::UpstreamConnectFailed, now);
                }
            }
            Event::Advance(ms) => {
                self.now += Duration::from_millis(u64::from(ms) * 8);
                let due = self.conn.poll_timeout().is_some_and(|at| at <= self.now);
                if due {
                    self.feed(Input::Timeout, self.now);
                }
            }
            Event::Rewind(secs) => {
                let earlier = self
                    .now
                    .checked_sub(Duration::from_secs(u64::from(secs)))
                    .unwrap_or(self.start)
                    .max(self.start);
                self.feed(Input::Timeout, earlier);
            }
            Event::TunnelActivity { from_client, bytes } => {
                let from = if from_client {
                    Side::Client
                } else {
                    Side::Upstream
                };
                if self.tunnel && self.frame_aware {
                    // Raw bytes within the budget: payload, whatever it holds.
                    let budget = self.conn.tunnel_passthrough(from);
                    let raw = u64::from(bytes).min(budget) as usize;
                    if raw > 0 && self.conn.wants_read(from) {
                        self.tunnel_read(from, &vec![b'r'; raw]);
                    }
                } else if self.tunnel && self.conn.wants_read(from) {
                    self.unflushed[from.other() as usize] = true;
                    self.feed(
                        Input::TunnelActivity {
                            from,
                            bytes: usize::from(bytes),
                        },
                        now,
                    );
                }
            }
            Event::Flushed(to_client) => {
                let (to, index) = if to_client {
                    (Side::Client, 0)
                } else {
                    (Side::Upstream, 1)
                };
                if self.unflushed[index] {
                    self.unflushed[index] = false;
                    self.feed(Input::Flushed { to }, now);
                }
            }
            Event::WriteFailed(to_client) => {
                let (to, index) = if to_client {
                    (Side::Client, 0)
                } else {
                    (Side::Upstream, 1)
                };
                if self.unflushed[index] && !self.closed {
                    self.unflushed[index] = false;
                    self.feed(Input::WriteFailed { to }, now);
                }
            }
            Event::Shutdown(ms) => self.feed(
                Input::Drain {
                    grace: Duration::from_millis(u64::from(ms)),
                },
                now,
            ),
            Event::Timeout => self.feed(Input::Timeout, now),
            Event::Frame {
                from_client,
                template,
                cut,
            } => {
                let from = if from_client {
                    Side::Client
                } else {
                    Side::Upstream
                };
                let (bits, fin, len) =
                    FRAME_TEMPLATES[usize::from(template) % FRAME_TEMPLATES.len()];
                let payload = vec![b'p'; len];
                let frame = encode::frame(
                    from.other(),
                    fin,
                    Opcode::from_bits(bits),
                    &payload,
                    [7, 1, 3, 9],
                );
                let end = match usize::from(cut) {
                    0 => frame.len(),
                    cut => cut.min(frame.len()),
                };
                if self.tunnel && self.frame_aware {
                    self.tunnel_read(from, &frame[..end]);
                }
            }
            Event::MaskingKey(key) => {
                if self.tunnel && self.frame_aware && !self.closed {
                    self.feed(Input::MaskingKey(key), now);
                }
            }
            Event::AnswerKeys(answer) => self.answer_keys = answer,
        }
    }

    /// What a driver does with `bytes` read from `from` in a frame-aware tunnel: within
    /// the passthrough budget it writes them itself and reports them; at 0 it shows them.
    fn tunnel_read(&mut self, from: Side, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.closed && self.conn.wants_read(from) {
            let budget = self.conn.tunnel_passthrough(from);
            if budget == 0 {
                // Both ways a driver may show bytes, by the read's length: lent (the
                // forwarded prefix written before the outputs) or given.
                if bytes.len().is_multiple_of(2) {
                    self.lend(from, bytes);
                } else {
                    let data = BytesMut::from(bytes);
                    self.feed(Input::TunnelData { from, data }, self.now);
                }
                bytes = &[];
                continue;
            }
            let raw = bytes
                .len()
                .min(usize::try_from(budget).unwrap_or(usize::MAX));
            self.written(from.other(), &bytes[..raw], false);
            self.unflushed[from.other() as usize] = true;
            bytes = &bytes[raw..];
            self.feed(Input::TunnelActivity { from, bytes: raw }, self.now);
        }
    }

    /// A read lent to the core: its forwarded prefix is the caller's to write, first.
    fn lend(&mut self, from: Side, bytes: &[u8]) {
        let result = self.conn.handle_tunnel_read(from, bytes, self.now);
        let forward = match result {
            Ok(forward) => forward,
            Err(misuse) => {
                assert!(self.closed, "a legal tunnel read was refused: {misuse}");
                0
            }
        };
        assert!(forward <= bytes.len(), "more forwarded than lent");
        if forward > 0 {
            self.reached.lent_in_place += 1;
            self.written(from.other(), &bytes[..forward], false);
            self.unflushed[from.other() as usize] = true;
        }
        self.drain();
    }

    /// `bytes` were written towards `to` in a frame-aware tunnel: the stream must still
    /// parse as whole frames, and a control frame written in one piece must start at a
    /// frame boundary.
    fn written(&mut self, to: Side, bytes: &[u8], from_core: bool) {
        let index = to as usize;
        let at_boundary = self.parsed[index] == self.streams[index].len();
        let validate = self.config.routes[self.tunnel_route].websocket.validate;
        let rules = Rules {
            validate,
            extensions: Extensions::Unknown,
        };
        if from_core && is_proxy_frame(to, bytes) {
            self.reached.proxy_frames += 1;
            assert!(
                at_boundary,
                "a frame of the proxy's written inside a frame towards {to:?}: {bytes:?}"
            );
        }
        self.streams[index].extend_from_slice(bytes);
        let parser = self.parsers[index].get_or_insert_with(|| FrameParser::new(to.other(), rules));
        let rest = &self.streams[index][self.parsed[index]..];
        match parser.parse_all(rest) {
            Ok((_, used)) => self.parsed[index] += used,
            Err(violation) => {
                panic!("towards {to:?} the core wrote a broken frame ({violation}): {rest:?}")
            }
        }
    }

    fn client(&mut self, bytes: Vec<u8>) {
        if self.closed || bytes.is_empty() {
            return;
        }
        if self.tunnel && self.frame_aware {
            return self.tunnel_read(Side::Client, &bytes);
        }
        if !self.tunnel && self.conn.wants_read(Side::Client) {
            self.feed(Input::ClientData(BytesMut::from(&bytes[..])), self.now);
        }
    }

    fn upstream(&mut self, bytes: Vec<u8>) {
        if self.tunnel && self.frame_aware && !self.closed {
            return self.tunnel_read(Side::Upstream, &bytes);
        }
        if self.closed || bytes.is_empty() || !self.connected || self.tunnel {
            return;
        }
        if self.conn.wants_read(Side::Upstream) {
            self.upstream_sent.extend_from_slice(&bytes);
            self.feed(Input::UpstreamData(BytesMut::from(&bytes[..])), self.now);
        }
    }
}

/// Whether `bytes` are one whole Ping or Close of the proxy's own towards `to`: a Ping
/// with its 8-byte counter payload, a Close with one of its reasons.
fn is_proxy_frame(to: Side, bytes: &[u8]) -> bool {
    let rules = Rules {
        validate: false,
        extensions: Extensions::Unknown,
    };
    let Ok(Some(frame)) = FrameParser::new(to.other(), rules).parse(bytes) else {
        return false;
    };
    if frame.wire_len() != bytes.len() {
        return false;
    }
    let payload = frame.unmasked_payload();
    match frame.header.opcode {
        Opcode::Ping => payload.len() == 8 && payload[..4] == [0; 4],
        Opcode::Close => {
            let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).into_owned();
            reason.ends_with(" went away")
                || reason.ends_with(" stopped answering")
                || reason == "upstream failed"
                || reason == "proxy going away"
                || reason.starts_with("protocol error by the ")
        }
        _ => false,
    }
}

/// Plays `events` against a fresh connection, panicking on any broken invariant, and
/// says how deep it went.
pub fn run(events: &[Event]) -> Reached {
    let mut driver = Driver::new();
    for event in events {
        driver.step(event.clone());
    }
    // Let every deadline fire: a connection always ends by itself.
    for _ in 0..64 {
        if driver.closed {
            break;
        }
        match driver.conn.poll_timeout() {
            Some(at) => {
                driver.now = driver.now.max(at);
                let now = driver.now;
                driver.feed(Input::Timeout, now);
            }
            None => break,
        }
    }
    if driver.closed {
        // Closed is final: more input is refused and produces nothing.
        driver.feed(Input::Timeout, driver.now);
        driver.feed(Input::ClientEof, driver.now);
    }
    driver.reached
}
