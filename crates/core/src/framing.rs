//! Message framing (RFC 9112 §6; docs/ARCHITECTURE.md §Protocol rules, "Message
//! framing"): how long a body is, decoding it from the receive buffer without copying,
//! and re-encoding it canonically for the other side.

use bytes::{Bytes, BytesMut};

use crate::error::ErrorKind;
use crate::field_kind::FieldKind;
use crate::head::{is_token, Head};

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the sender closes (responses only).
    UntilClose,
}

/// `Content-Length`: every value must be plain digits, and there must be at most one
/// field (several, even equal, are rejected: the strict reading of RFC 9112 §6.3).
fn content_length(head: &Head) -> Result<Option<u64>, ErrorKind> {
    let mut values = head.values_of(FieldKind::ContentLength);
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() || first.is_empty() || first.len() > 19 {
        return Err(ErrorKind::BadContentLength);
    }
    if !first.iter().all(u8::is_ascii_digit) {
        return Err(ErrorKind::BadContentLength);
    }
    // At most 19 digits always fits in a u64.
    Ok(Some(
        first.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')),
    ))
}

/// `Transfer-Encoding`: only a lone `chunked` is implemented. A list ending in something
/// else is 400 (the length cannot be known); a known list we do not implement is 501.
fn transfer_encoding(head: &Head) -> Result<bool, ErrorKind> {
    if !head.has_kind(FieldKind::TransferEncoding) {
        return Ok(false);
    }
    let codings: Vec<&[u8]> = head.list_of(FieldKind::TransferEncoding).collect();
    if codings.iter().any(|c| !is_token(c)) {
        return Err(ErrorKind::BadTransferEncoding);
    }
    let chunked = |c: &&[u8]| c.eq_ignore_ascii_case(b"chunked");
    match codings.as_slice() {
        [only] if chunked(only) => Ok(true),
        [.., last] if chunked(last) => {
            if codings.iter().filter(|c| chunked(c)).count() > 1 {
                Err(ErrorKind::BadTransferEncoding)
            } else {
                Err(ErrorKind::UnsupportedTransferEncoding)
            }
        }
        _ => Err(ErrorKind::BadTransferEncoding),
    }
}

/// Body of a request (RFC 9112 §6.3 items 3–6, strict).
pub(crate) fn request_body(head: &Head) -> Result<BodyKind, ErrorKind> {
    let te_present = head.has_kind(FieldKind::TransferEncoding);
    if te_present && head.has_kind(FieldKind::ContentLength) {
        return Err(ErrorKind::ContentLengthWithTransferEncoding);
    }
    if te_present && head.version == 0 {
        return Err(ErrorKind::BadTransferEncoding);
    }
    if transfer_encoding(head)? {
        return Ok(BodyKind::Chunked);
    }
    Ok(match content_length(head)? {
        Some(0) | None => BodyKind::Empty,
        Some(n) => BodyKind::Length(n),
    })
}

/// Body of a response to a request with `request_method`.
pub(crate) fn response_body(head: &Head, request_is_head: bool) -> Result<BodyKind, ErrorKind> {
    let te_present = head.has_kind(FieldKind::TransferEncoding);
    if te_present && head.has_kind(FieldKind::ContentLength) {
        return Err(ErrorKind::ContentLengthWithTransferEncoding);
    }
    let chunked = transfer_encoding(head)?;
    let length = content_length(head)?;
    if request_is_head || head.status < 200 || head.status == 204 || head.status == 304 {
        return Ok(BodyKind::Empty);
    }
    Ok(match (chunked, length) {
        (true, _) => BodyKind::Chunked,
        (false, Some(0)) => BodyKind::Empty,
        (false, Some(n)) => BodyKind::Length(n),
        (false, None) => BodyKind::UntilClose,
    })
}

/// A piece of a decoded body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Body bytes, sliced from the receive buffer.
    Data(Bytes),
    /// A chunk of this many bytes starts (chunked coding only). Re-encoding keeps the
    /// sender's chunk boundaries, so the output does not depend on how reads were split.
    ChunkStart(u64),
    /// The current chunk ended (chunked coding only).
    ChunkEnd,
    /// The body is complete.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data, this many bytes to go.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// Expecting the trailer section after the last chunk.
    Trailers,
}

/// Longest chunk-size line (with extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;

/// Decodes one body from a receive buffer.
#[derive(Debug)]
pub(crate) struct BodyReader {
    kind: BodyKind,
    remaining: u64,
    chunk: Chunk,
    done: bool,
    max_trailer_bytes: usize,
}

impl BodyReader {
    pub(crate) fn new(kind: BodyKind, max_trailer_bytes: usize) -> Self {
        BodyReader {
            kind,
            remaining: match kind {
                BodyKind::Length(n) => n,
                _ => 0,
            },
            chunk: Chunk::Size,
            done: false,
            max_trailer_bytes,
        }
    }

    pub(crate) fn kind(&self) -> BodyKind {
        self.kind
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// The next piece of the body from `buf`, consuming what it returns. `Ok(None)` means
    /// more bytes are needed.
    pub(crate) fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Piece>, ErrorKind> {
        if self.done {
            return Ok(None);
        }
        match self.kind {
            BodyKind::Empty => {
                self.done = true;
                Ok(Some(Piece::End))
            }
            BodyKind::Length(_) => {
                if self.remaining == 0 {
                    self.done = true;
                    return Ok(Some(Piece::End));
                }
                if buf.is_empty() {
                    return Ok(None);
                }
                let n = (buf.len() as u64).min(self.remaining) as usize;
                self.remaining -= n as u64;
                Ok(Some(Piece::Data(buf.split_to(n).freeze())))
            }
            BodyKind::UntilClose => {
                if buf.is_empty() {
                    return Ok(None);
                }
                Ok(Some(Piece::Data(buf.split().freeze())))
            }
            BodyKind::Chunked => self.next_chunked(buf),
        }
    }

    /// How many of the body's next bytes are payload that may go on without being
    /// decoded: the rest of a `Content-Length` body or of the current chunk, everything
    /// of a body read until close; 0 where framing comes next (a chunk-size line, the
    /// CRLF after a chunk, trailers) or when the body is done.
    pub(crate) fn passthrough(&self) -> u64 {
        if self.done {
            return 0;
        }
        match (self.kind, self.chunk) {
            (BodyKind::Length(_), _) => self.remaining,
            (BodyKind::UntilClose, _) => u64::MAX,
            (BodyKind::Chunked, Chunk::Data(left)) => left,
            (BodyKind::Chunked | BodyKind::Empty, _) => 0,
        }
    }

    /// `n` bytes of payload went on without being decoded; at most
    /// [`passthrough`](Self::passthrough) (the caller checks).
    pub(crate) fn passed(&mut self, n: u64) {
        debug_assert!(n <= self.passthrough());
        match (self.kind, self.chunk) {
            (BodyKind::Length(_), _) => self.remaining -= n,
            (BodyKind::Chunked, Chunk::Data(left)) => {
                self.chunk = if left == n {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left - n)
                };
            }
            _ => {}
        }
    }

    /// Whether the rest of the body is already in `buf` (judged exactly for empty and
    /// `Content-Length` bodies; a chunked body is assumed incomplete).
    pub(crate) fn complete_within(&self, buf: &[u8]) -> bool {
        self.done
            || match self.kind {
                BodyKind::Empty => true,
                BodyKind::Length(_) => self.remaining <= buf.len() as u64,
                BodyKind::Chunked | BodyKind::UntilClose => false,
            }
    }

    /// The sender closed: a body read until close ends here; any other is truncated.
    pub(crate) fn eof(&mut self) -> Result<Piece, ErrorKind> {
        match self.kind {
            BodyKind::UntilClose => {
                self.done = true;
                Ok(Piece::End)
            }
            _ if self.done => Ok(Piece::End),
            _ => Err(ErrorKind::Truncated),
        }
    }

    fn next_chunked(&mut self, buf: &mut BytesMut) -> Result<Option<Piece>, ErrorKind> {
        loop {
            match self.chunk {
                Chunk::Size => {
                    let Some(line_end) = find_crlf(buf, MAX_CHUNK_LINE)? else {
                        return Ok(None);
                    };
                    let size = parse_chunk_size(&buf[..line_end])?;
                    let _ = buf.split_to(line_end + 2);
                    if size == 0 {
                        self.chunk = Chunk::Trailers;
                    } else {
                        self.chunk = Chunk::Data(size);
                        return Ok(Some(Piece::ChunkStart(size)));
                    }
                }
                Chunk::Data(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = (buf.len() as u64).min(left) as usize;
                    let rest = left - n as u64;
                    self.chunk = if rest == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(rest)
                    };
                    return Ok(Some(Piece::Data(buf.split_to(n).freeze())));
                }
                Chunk::DataEnd => {
                    if buf.len() < 2 {
                        if buf.first().is_some_and(|&b| b != b'\r') {
                            return Err(ErrorKind::BadChunk);
                        }
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ErrorKind::BadChunk);
                    }
                    let _ = buf.split_to(2);
                    self.chunk = Chunk::Size;
                    return Ok(Some(Piece::ChunkEnd));
                }
                Chunk::Trailers => {
                    // Trailer fields are validated and then dropped: the body is
                    // re-encoded, and RFC 9110 §6.5.1 lets a recipient that removes the
                    // chunked coding discard them.
                    let mut fields = [httparse::EMPTY_HEADER; 32];
                    return match httparse::parse_headers(buf, &mut fields) {
                        Ok(httparse::Status::Complete((len, parsed))) => {
                            if parsed.iter().any(|h| {
                                !is_token(h.name.as_bytes())
                                    || h.value
                                        .iter()
                                        .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
                            }) || buf[..len]
                                .windows(2)
                                .any(|w| w[0] == b'\n' && (w[1] == b' ' || w[1] == b'\t'))
                                || bare_lf(&buf[..len])
                            {
                                return Err(ErrorKind::BadTrailer);
                            }
                            let _ = buf.split_to(len);
                            self.done = true;
                            Ok(Some(Piece::End))
                        }
                        Ok(httparse::Status::Partial) => {
                            if buf.len() > self.max_trailer_bytes || bare_lf(buf) {
                                Err(ErrorKind::BadTrailer)
                            } else {
                                Ok(None)
                            }
                        }
                        Err(_) => Err(ErrorKind::BadTrailer),
                    };
                }
            }
        }
    }
}

fn bare_lf(b: &[u8]) -> bool {
    b.iter().enumerate().any(|(i, &c)| {
        (c == b'\n' && (i == 0 || b[i - 1] != b'\r'))
            || (c == b'\r' && b.get(i + 1).is_some_and(|&n| n != b'\n'))
    })
}

/// Offset of the first CRLF, rejecting a bare LF/CR or a line longer than `max`.
fn find_crlf(buf: &[u8], max: usize) -> Result<Option<usize>, ErrorKind> {
    for (i, &b) in buf.iter().enumerate() {
        if i > max {
            return Err(ErrorKind::BadChunk);
        }
        match b {
            b'\r' => match buf.get(i + 1) {
                Some(b'\n') => return Ok(Some(i)),
                Some(_) => return Err(ErrorKind::BadChunk),
                None => return Ok(None),
            },
            b'\n' => return Err(ErrorKind::BadChunk),
            _ => {}
        }
    }
    if buf.len() > max {
        return Err(ErrorKind::BadChunk);
    }
    Ok(None)
}

/// `chunk-size [ chunk-ext ]`: plain hex digits (no sign, `0x`, `_` or whitespace), at
/// most 16 of them; extensions (`;name[=value]`) are checked for control characters
/// and dropped.
fn parse_chunk_size(line: &[u8]) -> Result<u64, ErrorKind> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(ErrorKind::BadChunk);
    }
    let rest = &line[digits..];
    if !rest.is_empty() {
        let ext = rest.trim_ascii_start();
        if ext.first() != Some(&b';') || ext.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            return Err(ErrorKind::BadChunk);
        }
    }
    let mut n = 0u64;
    for &d in &line[..digits] {
        let v = (d as char).to_digit(16).unwrap_or(0);
        n = (n << 4) | u64::from(v);
    }
    Ok(n)
}

/// The chunk-size line for `len` bytes of data: lowercase hex, no extensions.
pub(crate) fn chunk_head(len: u64) -> Bytes {
    Bytes::from(format!("{len:x}\r\n"))
}

/// The CRLF closing a chunk.
pub(crate) const CHUNK_END: Bytes = Bytes::from_static(b"\r\n");
/// The last chunk and an empty trailer section.
pub(crate) const LAST_CHUNK: Bytes = Bytes::from_static(b"0\r\n\r\n");
