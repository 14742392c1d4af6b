//! Finding, parsing and validating message heads.
//!
//! A head is located incrementally (a head may arrive one byte at a time; each byte is
//! scanned once), then parsed once with `httparse` and checked against the strict rules
//! of docs/ARCHITECTURE.md §Protocol rules, "Message framing". Parsed heads keep byte
//! ranges into one [`Bytes`] instead of owned strings.

use std::mem::MaybeUninit;
use std::ops::Range;

use bytes::{Bytes, BytesMut};

use crate::config::Limits;
use crate::error::ErrorKind;

/// Upper bound of header fields parsed on the stack; larger limits use the heap.
const STACK_FIELDS: usize = 128;

/// Incremental search for the end of a head (an LF followed by CRLF, or by a bare LF
/// which validation then refuses). Each byte is looked at about once however the head is
/// split into reads, and whole words at a time.
#[derive(Debug, Default)]
pub(crate) struct HeadScanner {
    /// Bytes of the buffer already searched for the end.
    scanned: usize,
    /// Where the first line ended, once seen.
    first_line_end: Option<usize>,
}

/// What a scan found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scan {
    /// The head ends at this offset (after its final CRLF).
    Complete(usize),
    /// More bytes are needed.
    Partial,
}

/// Position of the first `byte` in `buf`, eight bytes at a time (SWAR, no `unsafe`).
pub(crate) fn find_byte(buf: &[u8], byte: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO * u64::from(byte);
    let mut chunks = buf.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])) ^ pattern;
        // The lowest flagged byte is always a real match (borrows only run upwards).
        let found = word.wrapping_sub(LO) & !word & HI;
        if found != 0 {
            return Some(offset + (found.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == byte)
        .map(|i| offset + i)
}

/// Position of the first `\n` in `buf`.
pub(crate) fn find_lf(buf: &[u8]) -> Option<usize> {
    find_byte(buf, b'\n')
}

impl HeadScanner {
    /// Forget progress (the buffer's head was consumed).
    pub(crate) fn reset(&mut self) {
        *self = HeadScanner::default();
    }

    /// Continue searching `buf` for the end of the head, enforcing the request-line and
    /// head size limits (414 / 431; the caller maps them to 502 for responses).
    pub(crate) fn scan(&mut self, buf: &[u8], limits: &Limits) -> Result<Scan, ErrorKind> {
        let mut from = self.scanned;
        while let Some(i) = find_lf(&buf[from..]).map(|i| from + i) {
            if i == 0 || buf[i - 1] != b'\r' {
                return Err(ErrorKind::BareLineEnding);
            }
            if self.first_line_end.is_none() {
                self.first_line_end = Some(i + 1);
                if i + 1 > limits.max_request_line {
                    return Err(ErrorKind::RequestLineTooLong);
                }
            }
            match (buf.get(i + 1), buf.get(i + 2)) {
                (Some(b'\r'), Some(b'\n')) => return self.complete(buf, i + 3, limits),
                (Some(b'\n'), _) => return Err(ErrorKind::BareLineEnding),
                // The LF may still start the end: look at it again with more bytes.
                (None, _) | (Some(b'\r'), None) => {
                    self.scanned = i;
                    return self.partial(buf, limits);
                }
                _ => from = i + 1,
            }
        }
        self.scanned = buf.len();
        self.partial(buf, limits)
    }

    fn partial(&self, buf: &[u8], limits: &Limits) -> Result<Scan, ErrorKind> {
        if self.first_line_end.is_none() && buf.len() > limits.max_request_line {
            return Err(ErrorKind::RequestLineTooLong);
        }
        if buf.len() > limits.max_header_bytes {
            return Err(ErrorKind::HeadTooLarge);
        }
        Ok(Scan::Partial)
    }

    /// The head is `buf[..end]`: check its size and that no CR stands alone (every LF
    /// was already found to follow a CR; see docs/DECISIONS.md).
    fn complete(&mut self, buf: &[u8], end: usize, limits: &Limits) -> Result<Scan, ErrorKind> {
        self.scanned = end;
        if end > limits.max_header_bytes {
            return Err(ErrorKind::HeadTooLarge);
        }
        let head = &buf[..end];
        let mut from = 0;
        while let Some(i) = find_byte(&head[from..], b'\r').map(|i| from + i) {
            if head.get(i + 1) != Some(&b'\n') {
                return Err(ErrorKind::BareLineEnding);
            }
            from = i + 2;
        }
        Ok(Scan::Complete(end))
    }
}

/// Removes empty lines before a request line (RFC 9112 §2.2 allows ignoring them).
/// Returns false when the buffer holds only (part of) such lines.
pub(crate) fn skip_leading_crlf(buf: &mut BytesMut) -> bool {
    let mut n = 0;
    while buf.len() >= n + 2 && &buf[n..n + 2] == b"\r\n" {
        n += 2;
    }
    if n > 0 {
        let _ = buf.split_to(n);
    }
    !(buf.is_empty() || buf[..] == b"\r"[..])
}

/// One header field: ranges into the head's bytes.
#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub name: Range<usize>,
    pub value: Range<usize>,
}

/// A parsed head (request or response), as ranges into `bytes`.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub bytes: Bytes,
    /// Method (request) or reason phrase (response).
    pub first: Range<usize>,
    /// Target (request); empty for a response.
    pub target: Range<usize>,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Status code (response); 0 for a request.
    pub status: u16,
    pub fields: Vec<Field>,
}

impl Head {
    pub fn slice(&self, r: &Range<usize>) -> &[u8] {
        &self.bytes[r.clone()]
    }

    pub fn name(&self, f: &Field) -> &[u8] {
        self.slice(&f.name)
    }

    pub fn value(&self, f: &Field) -> &[u8] {
        self.slice(&f.value)
    }

    /// Values of every field called `name` (case-insensitive), in order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields
            .iter()
            .filter(move |f| self.name(f).eq_ignore_ascii_case(name.as_bytes()))
            .map(move |f| self.value(f))
    }

    /// Whether any field called `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.values(name).next().is_some()
    }

    /// Elements of the comma-separated lists in every field called `name`, trimmed of
    /// whitespace, empty elements skipped (RFC 9110 §5.6.1).
    pub fn list<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.values(name).flat_map(split_list)
    }

    /// Whether the comma-separated lists of `name` contain `token` (case-insensitive).
    pub fn list_has(&self, name: &str, token: &str) -> bool {
        self.list(name)
            .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
    }

    pub fn method(&self) -> &[u8] {
        self.slice(&self.first)
    }
}

/// Splits a comma-separated field value into trimmed, non-empty elements.
pub(crate) fn split_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|e| e.trim_ascii())
        .filter(|e| !e.is_empty())
}

/// `tchar` of RFC 9110 §5.6.2.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

fn offset(base: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - base.as_ptr() as usize;
    start..start + part.len()
}

fn map_httparse(e: httparse::Error, line: &[u8]) -> ErrorKind {
    match e {
        httparse::Error::TooManyHeaders => ErrorKind::HeadTooLarge,
        httparse::Error::HeaderName => {
            if line.windows(2).any(|w| w == b" :" || w == b"\t:") {
                ErrorKind::InvalidFieldName
            } else if line
                .windows(2)
                .any(|w| w[0] == b'\n' && (w[1] == b' ' || w[1] == b'\t'))
            {
                ErrorKind::ObsFold
            } else {
                ErrorKind::InvalidFieldName
            }
        }
        httparse::Error::HeaderValue => ErrorKind::ControlCharacter,
        httparse::Error::NewLine => ErrorKind::BareLineEnding,
        httparse::Error::Version => {
            // A well-formed line (exactly three parts) with an `HTTP/x.y` we do not speak
            // is 505; anything else is garbage.
            let first = line.split(|&b| b == b'\r').next().unwrap_or(&[]);
            let parts = first.split(|&b| b == b' ').count();
            match first.rsplit(|&b| b == b' ').next() {
                Some(v)
                    if parts == 3
                        && v.len() == 8
                        && v.starts_with(b"HTTP/")
                        && v[5].is_ascii_digit()
                        && v[6] == b'.'
                        && v[7].is_ascii_digit() =>
                {
                    ErrorKind::UnsupportedVersion
                }
                _ => ErrorKind::MalformedHead,
            }
        }
        _ => ErrorKind::MalformedHead,
    }
}

/// Runs `f` with room for `max` header fields: on the stack, uninitialised (no zeroing
/// per head), up to [`STACK_FIELDS`].
fn with_field_storage<'b, R>(
    max: usize,
    f: impl FnOnce(&mut [MaybeUninit<httparse::Header<'b>>]) -> R,
) -> R {
    if max <= STACK_FIELDS {
        let mut storage = [const { MaybeUninit::uninit() }; STACK_FIELDS];
        f(&mut storage[..max])
    } else {
        let mut storage = Vec::with_capacity(max);
        storage.resize_with(max, MaybeUninit::uninit);
        f(&mut storage)
    }
}

/// The parsed fields as ranges into `bytes`.
fn field_ranges(bytes: &[u8], parsed: &[httparse::Header<'_>]) -> Vec<Field> {
    parsed
        .iter()
        .map(|h| Field {
            name: offset(bytes, h.name.as_bytes()),
            value: offset(bytes, h.value),
        })
        .collect()
}

/// Parses a complete request head (`bytes` ends with CRLF CRLF).
pub(crate) fn parse_request(bytes: Bytes, limits: &Limits) -> Result<Head, ErrorKind> {
    with_field_storage(limits.max_headers, |storage| {
        let mut req = httparse::Request::new(&mut []);
        match req.parse_with_uninit_headers(&bytes, storage) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(ErrorKind::MalformedHead),
            Err(e) => return Err(map_httparse(e, &bytes)),
        }
        let method = req.method.ok_or(ErrorKind::MalformedHead)?.as_bytes();
        let target = req.path.ok_or(ErrorKind::MalformedHead)?.as_bytes();
        let fields = field_ranges(&bytes, req.headers);
        Ok(Head {
            first: offset(&bytes, method),
            target: offset(&bytes, target),
            version: req.version.ok_or(ErrorKind::MalformedHead)?,
            status: 0,
            fields,
            bytes: bytes.clone(),
        })
    })
}

/// Parses a complete response head.
pub(crate) fn parse_response(bytes: Bytes, limits: &Limits) -> Result<Head, ErrorKind> {
    with_field_storage(limits.max_headers, |storage| {
        let mut resp = httparse::Response::new(&mut []);
        match httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut resp, &bytes, storage)
        {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(ErrorKind::MalformedHead),
            Err(e) => return Err(map_httparse(e, &bytes)),
        }
        let status = resp.code.ok_or(ErrorKind::MalformedHead)?;
        if !(100..=599).contains(&status) {
            return Err(ErrorKind::MalformedHead);
        }
        let reason = resp.reason.unwrap_or("").as_bytes();
        let reason = if reason.is_empty() {
            0..0
        } else {
            offset(&bytes, reason)
        };
        let fields = field_ranges(&bytes, resp.headers);
        Ok(Head {
            first: reason,
            target: 0..0,
            version: resp.version.ok_or(ErrorKind::MalformedHead)?,
            status,
            fields,
            bytes: bytes.clone(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn find_byte_agrees_with_a_plain_search(
            buf in proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(b'\n'), Just(b'\r'), Just(0x80), any::<u8>()], 0..64),
            byte in prop_oneof![Just(b'\n'), Just(b'\r'), Just(0u8), any::<u8>()],
        ) {
            prop_assert_eq!(find_byte(&buf, byte), buf.iter().position(|&b| b == byte));
        }
    }
}
