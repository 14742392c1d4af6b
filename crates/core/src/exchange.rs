//! The `Connecting` and `Exchange` phases: one request and its response, from the accepted
//! head to the end of the response body. The response side is in `response.rs`.
//!
//! What becomes of the two connections afterwards is decided here, each in one place:
//! [`Exchange::close_after`] (is the client connection kept alive?) and
//! [`Exchange::upstream_reusable`] (may the upstream connection be pooled?), from facts
//! the exchange records as they happen.

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::config::{Limits, RouteId};
use crate::connection::Connection;
use crate::error::{ErrorKind, ProtocolError};
use crate::event::{AccessRecord, CloseReason};
use crate::framing::{self, BodyKind, BodyReader, Piece};
use crate::head::{Head, HeadScanner};
use crate::io::Output;
use crate::state::{Phase, Step};
use crate::text::Text;
use crate::upgrade::Proposal;

/// A request head that passed every check, on its way to becoming an [`Exchange`].
#[derive(Debug)]
pub(crate) struct Accepted {
    pub route: RouteId,
    pub method: Text,
    pub target: Text,
    pub body: BodyKind,
    pub proposal: Option<Proposal>,
    /// The head as it is forwarded.
    pub upstream_head: Bytes,
}

/// Where the response of an exchange is.
#[derive(Debug)]
pub(crate) enum Response {
    AwaitingHead,
    Body {
        reader: BodyReader,
        /// The body is re-encoded as chunked towards the client.
        chunked_out: bool,
    },
    Done,
}

/// What the exchange knows of its current upstream connection; a fresh one (after a
/// reconnect) starts from the default.
#[derive(Debug, Default)]
pub(crate) struct UpstreamConn {
    /// Bytes read from it and not processed yet.
    pub buf: BytesMut,
    /// How far the end of the response head has been searched for in `buf`.
    pub scanner: HeadScanner,
    /// It came from a keep-alive pool.
    pub reused: bool,
    /// It sent at least one byte.
    pub sent_bytes: bool,
    /// It closed its sending side.
    pub eof: bool,
    /// It sent bytes after a complete response.
    pub stray_bytes: bool,
    /// A connection was asked for ([`Output::Connect`]) and not given back: the adapter
    /// holds one, or is connecting, for this exchange.
    pub held: bool,
}

/// One request/response exchange (or an upgrade attempt).
#[derive(Debug)]
pub(crate) struct Exchange {
    pub route: RouteId,
    /// The request's method and target, sharing the client's head bytes (for events).
    pub method: Text,
    pub target: Text,
    pub started: Instant,
    pub is_head: bool,
    pub client_version: u8,
    /// The request asks for a persistent connection (HTTP/1.1 without
    /// `Connection: close`, HTTP/1.0 with `Connection: keep-alive`).
    pub client_keep_alive: bool,
    pub proposal: Option<Proposal>,
    pub upstream_head: Bytes,
    pub request: BodyReader,
    pub request_chunked: bool,
    pub request_body_bytes: u64,
    pub response: Response,
    /// The client sent EOF (after a complete request it still gets its response).
    pub client_eof: bool,
    /// A fresh connection was asked for once already.
    pub retried: bool,
    pub upstream: UpstreamConn,
    /// Upstream silence deadline (`read_timeout`), running once the request is sent.
    pub read_deadline: Option<Instant>,
    /// The final response head lets the upstream connection persist (HTTP/1.1, no
    /// `Connection: close`, a body not read until close).
    pub upstream_persistent: bool,
    /// The client can tell where the response ends without the connection closing.
    pub response_delimited: bool,
    /// The response head told the client the connection closes after it.
    pub close_announced: bool,
    pub bytes_from_client: u64,
    pub bytes_to_client: u64,
    /// Final status forwarded to the client (or answered by the proxy); 0 until then.
    pub status: u16,
}

impl Exchange {
    /// The exchange of an accepted head, boxed where it is made: an exchange is a few
    /// hundred bytes, and made by the caller and then boxed it was moved once more. (It
    /// is still made on the stack and copied into the box once: making it in the box
    /// needs `Box::new_uninit`, newer than the workspace's `rust-version`.)
    pub(crate) fn boxed(
        accepted: Accepted,
        head: &Head,
        now: Instant,
        limits: &Limits,
    ) -> Box<Self> {
        let client_keep_alive = if head.version == 1 {
            !head.connection.close
        } else {
            head.connection.keep_alive
        };
        Box::new(Exchange {
            route: accepted.route,
            method: accepted.method,
            target: accepted.target,
            started: now,
            is_head: head.method() == b"HEAD",
            client_version: head.version,
            client_keep_alive,
            proposal: accepted.proposal,
            upstream_head: accepted.upstream_head,
            request: BodyReader::new(accepted.body, limits.max_header_bytes),
            request_chunked: accepted.body == BodyKind::Chunked,
            request_body_bytes: 0,
            response: Response::AwaitingHead,
            client_eof: false,
            retried: false,
            upstream: UpstreamConn::default(),
            read_deadline: None,
            upstream_persistent: false,
            response_delimited: false,
            close_announced: false,
            bytes_from_client: head.bytes.len() as u64,
            bytes_to_client: 0,
            status: 0,
        })
    }

    pub(crate) fn record(&self, now: Instant, close: Option<CloseReason>) -> AccessRecord {
        AccessRecord {
            close,
            method: self.method.clone(),
            target: self.target.clone(),
            route: Some(self.route),
            status: self.status,
            bytes_from_client: self.bytes_from_client,
            bytes_to_client: self.bytes_to_client,
            duration: now.saturating_duration_since(self.started),
        }
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.request.is_done() && matches!(self.response, Response::Done)
    }

    /// Why the client connection ends after this exchange, or `None` when it is kept
    /// alive: the one place keep-alive is decided. Asked when the response head goes
    /// out (its `Connection` field carries the answer) and again at the end, when only a
    /// drain or the client's EOF can have turned a yes into a no.
    pub(crate) fn close_after(&self, draining: bool) -> Option<CloseReason> {
        if draining {
            Some(CloseReason::Shutdown)
        } else if self.client_eof {
            Some(CloseReason::ClientClosed)
        } else if self.client_keep_alive
            && self.response_delimited
            && self.request.is_done()
            && !self.close_announced
        {
            None
        } else {
            Some(CloseReason::NotKeptAlive)
        }
    }

    /// Whether the upstream connection may carry another request: the one place reuse
    /// is decided. Only after a complete exchange that was no upgrade attempt (a non-101
    /// answer to one is not trusted again), whose response let the connection persist,
    /// and after which the upstream neither closed nor sent anything more.
    pub(crate) fn upstream_reusable(&self) -> bool {
        self.is_complete()
            && self.proposal.is_none()
            && self.upstream_persistent
            && !self.upstream.eof
            && !self.upstream.stray_bytes
            && self.upstream.buf.is_empty()
    }
}

impl Connection {
    /// The values of the header `name` (case-insensitive) in the request of the
    /// exchange in progress, as forwarded to the upstream (so never a hop-by-hop
    /// header), each trimmed, in order, while it waits for its upstream connection;
    /// none outside an exchange (nor once a fresh connection took the head). What an adapter's
    /// balancer hashes (a session header or cookie) when it answers [`Output::Connect`].
    pub fn request_header<'a: 'n, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a [u8]> + 'n {
        let head: &[u8] = self.phase.exchange().map_or(&[], |ex| &ex.upstream_head);
        // The core wrote this head itself, one field per CRLF-terminated line after the
        // request line, so splitting on LF is exact.
        head.split(|&b| b == b'\n')
            .skip(1)
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
            .take_while(|line| !line.is_empty())
            .filter_map(move |line| {
                let colon = line.iter().position(|&b| b == b':')?;
                line[..colon]
                    .eq_ignore_ascii_case(name.as_bytes())
                    .then(|| line[colon + 1..].trim_ascii())
            })
    }

    pub(crate) fn on_connected(&mut self, reused: bool) {
        if !self.enter(Step::Connected) {
            return;
        }
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        ex.upstream.reused = reused;
        // Only a pooled connection can be found stale and the head sent again
        // (`reconnect`): a fresh one takes the head itself, not a shared copy.
        let head = if reused {
            ex.upstream_head.clone()
        } else {
            std::mem::take(&mut ex.upstream_head)
        };
        let request_done = ex.request.is_done();
        self.send_upstream(head);
        if request_done {
            self.arm_read();
        }
    }

    /// A pooled connection the upstream had closed while idle: ask once for a fresh one
    /// (the request has no body, so it can be sent again).
    pub(crate) fn reconnect(&mut self) {
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        ex.retried = true;
        ex.read_deadline = None;
        let route = ex.route;
        self.release_upstream();
        let connect_by = self.now + self.config.routes[route].timeouts.connect;
        if self.enter(Step::Reconnect { connect_by }) {
            self.connect();
        }
    }

    /// Asks the adapter for a connection to the exchange's route.
    pub(crate) fn connect(&mut self) {
        if let Some(ex) = self.phase.exchange_mut() {
            ex.upstream.held = true;
            self.out.push_back(Output::Connect(ex.route));
        }
    }

    /// (Re)starts the upstream silence deadline.
    pub(crate) fn arm_read(&mut self) {
        if let Phase::Exchange(ex) = &mut self.phase {
            ex.read_deadline = Some(self.now + self.config.routes[ex.route].timeouts.read);
        }
    }

    pub(crate) fn pump_exchange(&mut self) -> bool {
        self.pump_request() | self.pump_response() | self.finish_exchange()
    }

    /// Forwards what the client sent of the request body.
    fn pump_request(&mut self) -> bool {
        let Phase::Exchange(ex) = &mut self.phase else {
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

    /// Ends the exchange when both the request and the response are complete: the client
    /// connection is kept alive or closed, the upstream one pooled or not.
    fn finish_exchange(&mut self) -> bool {
        if !self.phase.exchange().is_some_and(Exchange::is_complete) {
            return false;
        }
        self.discard_stray_bytes();
        let Phase::Exchange(ex) = &self.phase else {
            return false;
        };
        if let Some(reason) = ex.close_after(self.drain.is_some()) {
            self.close(reason);
            return true;
        }
        let record = ex.record(self.now, None);
        self.release_upstream();
        self.out
            .push_back(Output::Event(crate::Event::Exchange(record)));
        let idle_until = self.now + self.config.timeouts.idle;
        self.enter(Step::KeepAlive { idle_until })
    }
}
