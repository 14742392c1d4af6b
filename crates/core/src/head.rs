//! Parsing and validating message heads.
//!
//! A whole head is parsed in one pass (by `head_fast.rs` when written plainly, else by
//! `httparse`); a head split across reads is located incrementally first
//! (`head_scan.rs`), then parsed once with `httparse` and checked against the strict rules
//! of docs/ARCHITECTURE.md §Protocol rules, "Message framing". Parsed heads keep byte
//! ranges into one [`Bytes`] instead of owned strings.

use std::mem::MaybeUninit;
use std::ops::Range;

use bytes::Bytes;

use crate::config::Limits;
use crate::error::ErrorKind;
pub(crate) use crate::field_kind::{is_tchar, is_token};
use crate::field_kind::{ConnectionOptions, FieldKind};
pub(crate) use crate::fields::Field;
use crate::fields::{Fields, MAX_HEAD};
use crate::head_scan::find_lf;
pub(crate) use crate::head_scan::{skip_leading_crlf, HeadScanner, Scan};

/// Upper bound of header fields parsed on the stack; larger limits use the heap.
const STACK_FIELDS: usize = 128;

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
    pub fields: Fields,
    /// The [`FieldKind::bit`]s of the kinds among `fields`.
    pub kinds: u32,
    /// The bits of the kinds that more than one field has: a search for the one field of
    /// any other kind stops at it.
    pub repeated: u32,
    /// What its `Connection` fields say.
    pub connection: ConnectionOptions,
}

impl Head {
    /// A head with nothing in it yet, for a parser to fill in place (a head is a few
    /// hundred bytes with its fields inline: moving it costs more than filling it).
    pub(crate) fn empty() -> Head {
        Head {
            bytes: Bytes::new(),
            first: 0..0,
            target: 0..0,
            version: 0,
            status: 0,
            fields: Fields::EMPTY,
            kinds: 0,
            repeated: 0,
            connection: ConnectionOptions::default(),
        }
    }

    /// Fills in the fields httparse found in `buf` (the head's bytes, or a buffer starting
    /// with them), their kinds and what the `Connection` fields say.
    fn fill_fields(&mut self, buf: &[u8], parsed: &[httparse::Header<'_>]) {
        (self.kinds, self.repeated) = self.fields.fill(buf, parsed);
        self.read_connection(buf);
    }

    /// Reads what the `Connection` fields say, once the fields of `buf` are filled in.
    #[inline(always)]
    pub(crate) fn read_connection(&mut self, buf: &[u8]) {
        self.connection = if self.has_kind(FieldKind::Connection) {
            ConnectionOptions::of(
                self.fields_of(FieldKind::Connection)
                    .map(|f| &buf[f.value()]),
            )
        } else {
            ConnectionOptions::default()
        };
    }

    pub fn slice(&self, r: &Range<usize>) -> &[u8] {
        &self.bytes[r.clone()]
    }

    pub fn name(&self, f: &Field) -> &[u8] {
        &self.bytes[f.name()]
    }

    pub fn value(&self, f: &Field) -> &[u8] {
        &self.bytes[f.value()]
    }

    /// Values of every field called `name` (case-insensitive), in order. A name the
    /// core knows ([`FieldKind`]) is looked up by kind: no pass at all when the head has
    /// none of it, and a byte compare per field otherwise.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        let kind = FieldKind::of(name.as_bytes());
        let fields: &[Field] = if kind != FieldKind::Other && !self.has_kind(kind) {
            &[]
        } else {
            &self.fields
        };
        fields
            .iter()
            .filter(move |f| {
                f.kind == kind
                    && (kind != FieldKind::Other
                        || self.name(f).eq_ignore_ascii_case(name.as_bytes()))
            })
            .map(move |f| self.value(f))
    }

    /// Values of every field of `kind`, in order: no pass at all when the head has none,
    /// and the search ends at the first when it has one.
    pub fn values_of(&self, kind: FieldKind) -> impl Iterator<Item = &[u8]> + '_ {
        self.fields_of(kind).map(move |f| self.value(f))
    }

    /// The fields of `kind`, in order, found as [`values_of`](Self::values_of) finds them.
    #[inline]
    pub fn fields_of(&self, kind: FieldKind) -> impl Iterator<Item = &Field> + '_ {
        let count = self.count_of(kind);
        let from = self.fields.search_from(kind, count == 1);
        self.fields
            .get(from..)
            .unwrap_or_default()
            .iter()
            .filter(move |f| f.kind == kind)
            .take(count)
    }

    /// How many fields of `kind` there are, as far as the kinds say: none, one, or more
    /// (`usize::MAX`).
    fn count_of(&self, kind: FieldKind) -> usize {
        if !self.has_kind(kind) {
            0
        } else if self.repeated & kind.bit() == 0 {
            1
        } else {
            usize::MAX
        }
    }

    /// Whether any field of `kind` exists.
    pub fn has_kind(&self, kind: FieldKind) -> bool {
        self.kinds & kind.bit() != 0
    }

    /// Elements of the comma-separated lists in every field called `name`, trimmed of
    /// whitespace, empty elements skipped (RFC 9110 §5.6.1).
    pub fn list<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.values(name).flat_map(split_list)
    }

    /// Elements of the comma-separated lists in every field of `kind`.
    pub fn list_of(&self, kind: FieldKind) -> impl Iterator<Item = &[u8]> + '_ {
        self.values_of(kind).flat_map(split_list)
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

/// Whether a head httparse parsed completely as `buf[..end]`, with `fields`, follows
/// every rule [`HeadScanner`] checks: within the size limits, and every line ending in
/// CRLF. httparse takes a bare LF for a line ending and refuses every CR not followed by
/// LF; the lines it accepted are the start line, one per field (after the value and any
/// trailing whitespace it trimmed) and the empty last one, so those are all the line
/// endings there are to look at. `cr_after_values`: every value is known to be followed
/// at once by a CR (then the fields need no look each).
fn scanner_would_accept(
    buf: &[u8],
    end: usize,
    fields: &[httparse::Header<'_>],
    cr_after_values: bool,
    limits: &Limits,
) -> bool {
    if end > limits.max_header_bytes.min(MAX_HEAD) || end < 2 || buf[end - 2] != b'\r' {
        return false;
    }
    // The request line's LF: right before the first field's name (httparse allows no
    // LF in the line itself), or the first LF of a head without fields.
    let first_lf = match fields.first() {
        Some(field) => Some(field.name.as_ptr() as usize - buf.as_ptr() as usize - 1),
        None => find_lf(&buf[..end]),
    };
    debug_assert_eq!(first_lf, find_lf(&buf[..end]));
    match first_lf {
        Some(lf) if lf >= 1 && buf[lf - 1] == b'\r' && lf < limits.max_request_line => {}
        _ => return false,
    }
    if cr_after_values {
        return true;
    }
    let head = &buf[..end];
    let base = head.as_ptr() as usize;
    fields.iter().all(|field| {
        let value_end = field.value.as_ptr() as usize - base + field.value.len();
        // Usually the value ends the line: then the CR is right after it.
        match head.get(value_end) {
            Some(b'\r') => true,
            Some(b' ' | b'\t') => {
                let rest = &head[value_end..];
                let after_whitespace = rest.iter().position(|&b| b != b' ' && b != b'\t');
                after_whitespace.is_some_and(|i| rest[i] == b'\r')
            }
            _ => false,
        }
    })
}

/// A request head at the start of `buf`, when all of it is there and it breaks no rule:
/// parsed in one pass, without [`HeadScanner`]'s search for its end, into `head` (all
/// but its bytes: the first `end` bytes of the buffer, to be split off). `None` when the
/// head is incomplete or anything about it is wrong: then the scanner and
/// [`parse_request`] take it, and decide exactly as if this had not been tried (`head` is
/// to be dropped then).
pub(crate) fn parse_request_whole(buf: &[u8], limits: &Limits, head: &mut Head) -> Option<usize> {
    if let Some(end) = crate::head_fast::parse_request(buf, limits, head) {
        return Some(end);
    }
    *head = Head::empty();
    parse_request_whole_with_httparse(buf, limits, head)
}

/// [`parse_request_whole`] for a head the plain-head parser (`head_fast.rs`) gave up on.
pub(crate) fn parse_request_whole_with_httparse(
    buf: &[u8],
    limits: &Limits,
    head: &mut Head,
) -> Option<usize> {
    with_field_storage(limits.max_headers, |storage| {
        let mut req = httparse::Request::new(&mut []);
        let Ok(httparse::Status::Complete(end)) = req.parse_with_uninit_headers(buf, storage)
        else {
            return None;
        };
        if end > MAX_HEAD {
            return None;
        }
        head.fill_fields(buf, req.headers);
        let cr_after_values = head.fields.cr_after_values();
        if !scanner_would_accept(buf, end, req.headers, cr_after_values, limits) {
            return None;
        }
        head.first = offset(buf, req.method?.as_bytes());
        head.target = offset(buf, req.path?.as_bytes());
        head.version = req.version?;
        Some(end)
    })
}

/// Parses a complete request head (`bytes` ends with CRLF CRLF).
pub(crate) fn parse_request(bytes: Bytes, limits: &Limits) -> Result<Head, ErrorKind> {
    if bytes.len() > MAX_HEAD {
        return Err(ErrorKind::HeadTooLarge);
    }
    let mut head = Head::empty();
    with_field_storage(limits.max_headers, |storage| {
        let mut req = httparse::Request::new(&mut []);
        match req.parse_with_uninit_headers(&bytes, storage) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(ErrorKind::MalformedHead),
            Err(e) => return Err(map_httparse(e, &bytes)),
        }
        let method = req.method.ok_or(ErrorKind::MalformedHead)?.as_bytes();
        let target = req.path.ok_or(ErrorKind::MalformedHead)?.as_bytes();
        head.first = offset(&bytes, method);
        head.target = offset(&bytes, target);
        head.version = req.version.ok_or(ErrorKind::MalformedHead)?;
        head.fill_fields(&bytes, req.headers);
        Ok(())
    })?;
    head.bytes = bytes;
    Ok(head)
}

/// A response head at the start of `buf`, when all of it is there and it is written
/// plainly (`head_fast.rs`): parsed at once, without the scanner's search for its end,
/// into `head` (all but its bytes: the first `end` bytes of the buffer). `None` leaves
/// it to the scanner and [`parse_response`], which decide as if this had not been tried.
pub(crate) fn parse_response_whole(buf: &[u8], limits: &Limits, head: &mut Head) -> Option<usize> {
    crate::head_fast::parse_response(buf, limits, head)
}

/// Parses a complete response head.
pub(crate) fn parse_response(bytes: Bytes, limits: &Limits) -> Result<Head, ErrorKind> {
    if bytes.len() > MAX_HEAD {
        return Err(ErrorKind::HeadTooLarge);
    }
    let mut head = Head::empty();
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
        head.first = if reason.is_empty() {
            0..0
        } else {
            offset(&bytes, reason)
        };
        head.version = resp.version.ok_or(ErrorKind::MalformedHead)?;
        head.status = status;
        head.fill_fields(&bytes, resp.headers);
        Ok(())
    })?;
    head.bytes = bytes;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Heads near the rules: line endings CRLF, bare LF or bare CR, separators with
    /// and without whitespace, values with control bytes, and what follows the head.
    fn near_heads() -> impl Strategy<Value = Vec<u8>> {
        let ending =
            prop_oneof![6 => Just(&b"\r\n"[..]), 1 => Just(&b"\n"[..]), 1 => Just(&b"\r"[..])];
        let name = prop_oneof![
            Just(&b"Host"[..]),
            Just(&b"Content-Length"[..]),
            Just(&b"Transfer-Encoding"[..]),
            Just(&b"Connection"[..]),
            Just(&b"X-Long-Name-Of-A-Field"[..]),
            Just(&b"Bad Name"[..]),
        ];
        let separator = prop_oneof![
            Just(&b": "[..]),
            Just(&b":"[..]),
            Just(&b":\t "[..]),
            Just(&b" : "[..])
        ];
        let value = proptest::collection::vec(
            prop_oneof![8 => Just(b'a'), 1 => Just(b' '), 1 => Just(b'\t'), 1 => Just(b'\r'), 1 => Just(b'\n'), 1 => Just(0u8), 1 => Just(0x80u8)],
            0..12,
        );
        let field = (name, separator, value, ending.clone())
            .prop_map(|(n, s, v, e)| [n, s, &v, e].concat());
        let start = prop_oneof![
            Just(b"GET / HTTP/1.1".to_vec()),
            Just(b"GET /a?b HTTP/1.0".to_vec()),
            Just(b"GET  / HTTP/1.1".to_vec()),
            Just(b"GET / HTTP/2.0".to_vec()),
        ];
        let tail = prop_oneof![
            Just(&b""[..]),
            Just(&b"GET / HTTP/1.1\r\n"[..]),
            Just(&b"body"[..])
        ];
        (
            start,
            ending.clone(),
            proptest::collection::vec(field, 0..6),
            ending,
            tail,
        )
            .prop_map(|(start, e1, fields, last, tail)| {
                [&start[..], e1, &fields.concat(), last, tail].concat()
            })
    }

    fn slow_path(buf: &[u8], limits: &Limits) -> Result<Option<Head>, ErrorKind> {
        match HeadScanner::default().scan(buf, limits)? {
            Scan::Partial => Ok(None),
            Scan::Complete(end) => {
                parse_request(Bytes::copy_from_slice(&buf[..end]), limits).map(Some)
            }
        }
    }

    #[test]
    fn a_plain_head_in_one_read_is_parsed_at_once() {
        let buf = b"GET / HTTP/1.1\r\nHost: a\r\nX:  b \r\n\r\nGET";
        let mut head = Head::empty();
        let end = parse_request_whole(buf, &Limits::default(), &mut head).expect("parsed at once");
        assert_eq!(end, buf.len() - 3);
        let bare = b"GET / HTTP/1.1\r\nHost: a\n\r\n";
        assert!(parse_request_whole(bare, &Limits::default(), &mut Head::empty()).is_none());
    }

    #[test]
    fn the_fields_of_a_kind_are_all_found_when_repeated_and_the_one_when_not() {
        let buf = b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nConnection: close\r\nHost: b\r\n\r\n";
        let mut head = Head::empty();
        let end = parse_request_whole(buf, &Limits::default(), &mut head).expect("parsed");
        head.bytes = Bytes::copy_from_slice(&buf[..end]);
        let values = |kind| head.values_of(kind).collect::<Vec<_>>();
        assert_eq!(values(FieldKind::Host), [&b"a"[..], b"b"]);
        assert_eq!(values(FieldKind::Connection), [&b"close"[..]]);
        assert!(values(FieldKind::Upgrade).is_empty());
    }

    proptest! {
        /// Whichever path parsed a head (the one-pass parse of up to its inline fields,
        /// or the general one, inline or spilled), the fields of each kind found from
        /// where the search starts are all the fields of that kind, in order.
        #[test]
        fn the_fields_of_each_kind_are_the_ones_a_full_pass_finds(
            names in proptest::collection::vec(
                proptest::sample::select(&["Host", "Upgrade", "Sec-WebSocket-Key", "Via", "X-A", "Connection", "Accept"][..]),
                0..40,
            ),
            tight in any::<bool>(),
        ) {
            let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
            for (i, name) in names.iter().enumerate() {
                // A tab after the colon makes the one-pass parse give the head up.
                let separator = if tight && i == 0 { ":\t" } else { ": " };
                buf.extend_from_slice(format!("{name}{separator}v{i}\r\n").as_bytes());
            }
            buf.extend_from_slice(b"\r\n");
            let head = match slow_path(&buf, &Limits::default()) {
                Ok(Some(head)) => head,
                other => panic!("refused: {other:?}"),
            };
            let mut fast = Head::empty();
            let parsed_fast = parse_request_whole(&buf, &Limits::default(), &mut fast).is_some();
            fast.bytes = Bytes::copy_from_slice(&buf);
            let kinds = [FieldKind::Host, FieldKind::Upgrade, FieldKind::SecWebSocketKey, FieldKind::Via, FieldKind::Connection];
            for h in [Some(&head), parsed_fast.then_some(&fast)].into_iter().flatten() {
                for kind in kinds {
                    let found: Vec<_> = h.fields_of(kind).map(|f| f.value()).collect();
                    let all: Vec<_> = h.fields.iter().filter(|f| f.kind == kind).map(|f| f.value()).collect();
                    prop_assert_eq!(found, all, "{:?}", kind);
                }
            }
        }
    }

    proptest! {
        /// The one-pass parse of a whole head never accepts what the scanner and the
        /// parse after it would not, and then finds the same head.
        #[test]
        fn a_whole_head_parsed_at_once_is_the_head_the_scanner_finds(
            buf in near_heads(),
            small in any::<bool>(),
        ) {
            let mut limits = Limits::default();
            if small {
                limits.max_request_line = 16;
                limits.max_header_bytes = 48;
                limits.max_headers = 2;
            }
            let mut fast = Head::empty();
            if let Some(end) = parse_request_whole(&buf, &limits, &mut fast) {
                fast.bytes = Bytes::copy_from_slice(&buf[..end]);
                let slow = slow_path(&buf, &limits);
                prop_assert!(matches!(slow, Ok(Some(_))), "{:?} refused: {:?}", String::from_utf8_lossy(&buf), slow);
                let slow = slow.unwrap().unwrap();
                prop_assert_eq!(&fast.bytes, &slow.bytes);
                prop_assert_eq!((&fast.first, &fast.target, fast.version), (&slow.first, &slow.target, slow.version));
                prop_assert_eq!((fast.kinds, fast.repeated), (slow.kinds, slow.repeated));
                prop_assert_eq!(fast.connection, slow.connection);
                let ranges = |h: &Head| h.fields.iter().map(|f| (f.name(), f.value(), f.kind)).collect::<Vec<_>>();
                prop_assert_eq!(ranges(&fast), ranges(&slow));
            }
        }
    }
}
