//! A fuzzing driver for [`switchyard_core::Connection`]: decodes a sequence of adapter
//! events (client and upstream bytes, EOFs, connection results, time, tunnel activity,
//! flushes, failed writes, shutdown), plays them the way a correct adapter would, drains every output,
//! and checks the core's invariants after each step:
//!
//! - no panic (debug assertions are on in fuzz builds), and no [`Misuse`] for an input a
//!   correct adapter may give;
//! - nothing is output after [`Output::Close`], and input after it is [`Misuse::Closed`];
//! - [`Output::StartTunnel`] comes at most once, only right after a `101` head was written
//!   to the client, only when the upstream really sent a `101`; after it the core writes
//!   no bytes and asks for no connection;
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

use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use switchyard_core::{
    Config, Connection, Event as CoreEvent, Input, Misuse, Output, PeerInfo, Side,
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
}

impl Driver {
    fn new() -> Driver {
        let start = Instant::now();
        let mut config = Config::default();
        config.limits.max_header_bytes = 4096;
        config.limits.max_request_line = 1024;
        config.limits.max_headers = 20;
        let conn = Connection::new(Arc::new(config), PeerInfo::default(), start);
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
        if self.closed {
            assert!(self.conn.is_closed());
            assert_eq!(self.conn.poll_timeout(), None, "a deadline after Close");
            assert!(!self.conn.wants_read(Side::Client) && !self.conn.wants_read(Side::Upstream));
        }
    }

    fn check(&mut self, output: Output) {
        if self.tunnel {
            assert!(
                matches!(
                    output,
                    Output::HalfClose { .. }
                        | Output::ReleaseUpstream { .. }
                        | Output::Close
                        | Output::Event(_)
                ),
                "in a tunnel the core writes nothing and connects nowhere: {output:?}"
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
            }
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
                if self.tunnel && self.conn.wants_read(from) {
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
        }
    }

    fn client(&mut self, bytes: Vec<u8>) {
        if self.closed || bytes.is_empty() {
            return;
        }
        if !self.tunnel && self.conn.wants_read(Side::Client) {
            self.feed(Input::ClientData(BytesMut::from(&bytes[..])), self.now);
        }
    }

    fn upstream(&mut self, bytes: Vec<u8>) {
        if self.closed || bytes.is_empty() || !self.connected || self.tunnel {
            return;
        }
        if self.conn.wants_read(Side::Upstream) {
            self.upstream_sent.extend_from_slice(&bytes);
            self.feed(Input::UpstreamData(BytesMut::from(&bytes[..])), self.now);
        }
    }
}

/// Plays `events` against a fresh connection, panicking on any broken invariant.
pub fn run(events: &[Event]) {
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
}

fn lines(head: &[u8]) -> Vec<&[u8]> {
    let body = head
        .strip_suffix(b"\r\n\r\n")
        .unwrap_or_else(|| panic!("head not ended by CRLF CRLF: {head:?}"));
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
        out.push(&rest[..i]);
        rest = &rest[i + 2..];
    }
    out.push(rest);
    for line in &out {
        assert!(
            !line.contains(&b'\r') && !line.contains(&b'\n'),
            "bare CR or LF in {head:?}"
        );
    }
    out
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Checks the field lines; returns (lowercased name, value) pairs.
fn fields<'a>(head: &[u8], lines: &[&'a [u8]]) -> Vec<(String, &'a [u8])> {
    let mut out = Vec::new();
    for line in lines {
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .unwrap_or_else(|| panic!("field without colon in {head:?}"));
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        assert!(
            !name.is_empty() && name.iter().all(|&b| is_tchar(b)),
            "bad field name in {head:?}"
        );
        assert!(
            !value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f),
            "control character in a value of {head:?}"
        );
        out.push((String::from_utf8_lossy(name).to_ascii_lowercase(), value));
    }
    out
}

/// Hop-by-hop fields the proxy never forwards; `Connection`, `Transfer-Encoding` and
/// `Upgrade` are checked separately (the proxy writes its own).
const NEVER: &[&str] = &[
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "trailers",
    "http2-settings",
];

fn check_request_head(head: &[u8]) {
    let lines = lines(head);
    let first = lines[0];
    assert!(first.ends_with(b" HTTP/1.1"), "request line {first:?}");
    assert_eq!(
        first.iter().filter(|&&b| b == b' ').count(),
        2,
        "request line {first:?}"
    );
    let fields = fields(head, &lines[1..]);
    let count = |n: &str| fields.iter().filter(|(name, _)| name == n).count();
    assert_eq!(count("host"), 1, "Host in {head:?}");
    assert_eq!(count("connection"), 1, "Connection in {head:?}");
    for (name, value) in &fields {
        assert!(
            !NEVER.contains(&name.as_str()),
            "hop-by-hop {name} forwarded in {head:?}"
        );
        match name.as_str() {
            "connection" => assert!(
                *value == b" keep-alive" || *value == b" upgrade",
                "{head:?}"
            ),
            "transfer-encoding" => {
                assert_eq!(*value, b" chunked", "{head:?}");
                assert_eq!(count("content-length"), 0, "CL with TE in {head:?}");
            }
            "upgrade" => {
                let lower = String::from_utf8_lossy(value).to_ascii_lowercase();
                assert!(!lower.contains("h2c"), "h2c forwarded in {head:?}");
            }
            _ => {}
        }
    }
    assert!(
        count("transfer-encoding") <= 1 && count("content-length") <= 1,
        "{head:?}"
    );
}

fn check_response_head(head: &[u8], status: Option<u16>) {
    let lines = lines(head);
    let first = std::str::from_utf8(lines[0]).expect("status line is UTF-8");
    let code: u16 = first
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("status line {first:?}"));
    if let Some(status) = status {
        assert_eq!(code, status, "status line {first:?}");
    }
    let fields = fields(head, &lines[1..]);
    for (name, _) in &fields {
        assert!(
            !NEVER.contains(&name.as_str()),
            "hop-by-hop {name} sent to the client in {head:?}"
        );
    }
}
