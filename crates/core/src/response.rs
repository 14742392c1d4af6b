//! The response side of an exchange: reading the upstream's response head and body,
//! forwarding them to the client, and what an upstream EOF means at each point.

use bytes::BytesMut;

use crate::connection::Connection;
use crate::error::{ErrorKind, ProtocolError};
use crate::event::{CloseReason, Event};
use crate::exchange::Response;
use crate::framing::{self, BodyKind, BodyReader, Piece};
use crate::head::{self, Head, Scan};
use crate::headers::{self, ClientConnection};
use crate::io::Output;
use crate::state::Phase;
use crate::Side;

impl Connection {
    pub(crate) fn on_upstream_data(&mut self, data: BytesMut) {
        if let Some(ex) = self.upstream_read() {
            ex.upstream.buf.unsplit(data);
        }
    }

    /// What every read from the upstream in an exchange counts for: the upstream has
    /// answered something, and the read deadline starts again.
    fn upstream_read(&mut self) -> Option<&mut crate::exchange::Exchange> {
        let Phase::Exchange(ex) = &mut self.phase else {
            return None;
        };
        ex.upstream.sent_bytes = true;
        if ex.read_deadline.is_some() {
            ex.read_deadline = Some(self.now + self.config.routes[ex.route].timeouts.read);
        }
        Some(ex)
    }

    /// How many of the response body's next bytes the caller may move from the
    /// upstream to the client itself (splice them), without showing them to the core:
    /// the rest of a `Content-Length` body or of the current chunk's data, `u64::MAX`
    /// for a body read until the upstream closes. 0 when the core must see the next
    /// bytes (a head, a chunk-size line, trailers), while it holds upstream bytes it has
    /// not forwarded (they go first), and outside an exchange's response body.
    ///
    /// Move at most this many, only once everything queued towards the client is
    /// written, and report them with [`Input::ResponseBodyPassed`](crate::Input::ResponseBodyPassed).
    pub fn response_body_passthrough(&self) -> u64 {
        let Phase::Exchange(ex) = &self.phase else {
            return 0;
        };
        match &ex.response {
            Response::Body { reader, .. } if ex.upstream.buf.is_empty() => reader.passthrough(),
            _ => 0,
        }
    }

    /// The caller moved `bytes` of the response body (at most the passthrough): they
    /// count as read from the upstream and written towards the client.
    pub(crate) fn on_response_body_passed(&mut self, bytes: u64) {
        let Some(ex) = self.upstream_read() else {
            return;
        };
        if let Response::Body { reader, .. } = &mut ex.response {
            reader.passed(bytes);
        }
        ex.bytes_to_client += bytes;
        self.queue_write(Side::Client);
    }

    /// Reads and forwards the upstream's response.
    pub(crate) fn pump_response(&mut self) -> bool {
        let Phase::Exchange(ex) = &mut self.phase else {
            return false;
        };
        let upstream = &mut ex.upstream;
        match &mut ex.response {
            Response::AwaitingHead => {
                if upstream.buf.is_empty() {
                    return false;
                }
                if upstream.scanner.is_fresh() {
                    // The usual case: the whole head came in one read, written plainly.
                    let mut head = Head::empty();
                    if let Some(end) =
                        head::parse_response_whole(&upstream.buf, &self.config.limits, &mut head)
                    {
                        head.bytes = upstream.buf.split_to(end).freeze();
                        self.on_response_head(head);
                        return true;
                    }
                }
                match upstream.scanner.scan(&upstream.buf, &self.config.limits) {
                    Ok(Scan::Partial) => false,
                    Ok(Scan::Complete(end)) => {
                        let bytes = upstream.buf.split_to(end).freeze();
                        upstream.scanner.reset();
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
                match reader.next(&mut upstream.buf) {
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
                self.discard_stray_bytes();
                false
            }
        }
    }

    /// Bytes after a complete response are never forwarded, and the connection they
    /// came on is not trusted again.
    pub(crate) fn discard_stray_bytes(&mut self) {
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        if !matches!(ex.response, Response::Done) || ex.upstream.buf.is_empty() {
            return;
        }
        ex.upstream.stray_bytes = true;
        ex.upstream.buf.clear();
        self.out
            .push_back(Output::Event(Event::Rejected(ProtocolError::upstream(
                ErrorKind::UnexpectedResponse,
            ))));
    }

    fn on_response_head(&mut self, head: Head) {
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        match head.status {
            101 => self.start_tunnel(head),
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
                // A body without a coding the HTTP/1.0 client understands is decoded and
                // delimited by closing.
                let chunked_out = body == BodyKind::Chunked && client_11;
                ex.response_delimited = match body {
                    BodyKind::UntilClose => false,
                    BodyKind::Chunked => client_11,
                    BodyKind::Empty | BodyKind::Length(_) => true,
                };
                ex.upstream_persistent =
                    head.version == 1 && !head.connection.close && body != BodyKind::UntilClose;
                let close = ex.close_after(self.drain.is_some());
                ex.close_announced = close.is_some();
                let conn = match (close, client_11) {
                    (Some(_), _) => ClientConnection::Close,
                    (None, true) => ClientConnection::Persistent,
                    (None, false) => ClientConnection::KeepAlive10,
                };
                ex.status = status;
                ex.response = Response::Body {
                    reader: BodyReader::new(body, self.config.limits.max_header_bytes),
                    chunked_out,
                };
                let bytes = headers::client_response(&head, chunked_out, conn);
                self.out
                    .push_back(Output::Event(Event::Response { status }));
                self.send_client(bytes);
            }
        }
    }

    pub(crate) fn on_upstream_eof(&mut self) {
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        ex.upstream.eof = true;
        match &mut ex.response {
            Response::AwaitingHead => {
                let stale = ex.upstream.reused
                    && !ex.retried
                    && !ex.upstream.sent_bytes
                    && ex.request.kind() == BodyKind::Empty;
                if stale {
                    self.reconnect();
                } else {
                    self.reject(ProtocolError::upstream(ErrorKind::Truncated));
                }
            }
            // What is buffered is an incomplete piece of the body (every input is
            // followed by decoding all it allows): the EOF ends the body or truncates it.
            Response::Body {
                reader,
                chunked_out,
            } => {
                let chunked_out = *chunked_out;
                match reader.eof() {
                    Ok(_) => {
                        ex.response = Response::Done;
                        if chunked_out {
                            self.send_client(framing::LAST_CHUNK);
                        }
                    }
                    Err(kind) => {
                        // The client sees a truncated message, never a forged end.
                        self.out.push_back(Output::Event(Event::Rejected(
                            ProtocolError::upstream(kind),
                        )));
                        self.close(CloseReason::UpstreamClosed);
                    }
                }
            }
            // After its response, the upstream closing leaves a request body nowhere
            // to go.
            Response::Done => {
                if !ex.request.is_done() {
                    self.close(CloseReason::UpstreamClosed);
                }
            }
        }
    }
}
