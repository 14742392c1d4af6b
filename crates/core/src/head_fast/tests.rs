use bytes::Bytes;
use proptest::prelude::*;

use super::{name_stop, parse_request, parse_response, target_stop, value_stop};
use crate::config::Limits;
use crate::head::{parse_request_whole_with_httparse, parse_response as parse_response_general};
use crate::head::{Head, HeadScanner, Scan};

/// Everything the rest of the core reads of a parsed head, for comparing two parses.
fn summary(head: &Head) -> String {
    let fields: Vec<_> = head
        .fields
        .iter()
        .map(|f| (f.name(), f.value(), f.kind))
        .collect();
    let runs = head.fields.plain_runs().map(|r| r.collect::<Vec<_>>());
    format!(
        "{:?} {:?} {} {} {:x} {:x} {:?} {:?} {} {} {:?}",
        head.first,
        head.target,
        head.version,
        head.status,
        head.kinds,
        head.repeated,
        head.connection,
        fields,
        head.fields.plain_len(),
        head.fields.cr_after_values(),
        runs,
    )
}

/// Parses `buf` both ways; panics (through proptest) when the plain-head parser takes a
/// head the general path refuses or reads differently. Returns whether it took it.
fn agrees(buf: &[u8], limits: &Limits) -> Result<bool, TestCaseError> {
    let mut fast = Head::empty();
    let Some(end) = parse_request(buf, limits, &mut fast) else {
        return Ok(false);
    };
    let mut general = Head::empty();
    let general_end = parse_request_whole_with_httparse(buf, limits, &mut general);
    prop_assert_eq!(general_end, Some(end), "{:?}", String::from_utf8_lossy(buf));
    prop_assert_eq!(summary(&fast), summary(&general));
    Ok(true)
}

/// [`agrees`] for a response head: the general path is the scanner, then
/// `httparse` and the strict rules.
fn response_agrees(buf: &[u8], limits: &Limits) -> Result<bool, TestCaseError> {
    let mut fast = Head::empty();
    let Some(end) = parse_response(buf, limits, &mut fast) else {
        return Ok(false);
    };
    let scanned = HeadScanner::default().scan(buf, limits);
    prop_assert_eq!(
        scanned,
        Ok(Scan::Complete(end)),
        "{:?}",
        String::from_utf8_lossy(buf)
    );
    let general = parse_response_general(Bytes::copy_from_slice(&buf[..end]), limits);
    prop_assert!(
        general.is_ok(),
        "{:?}: {:?}",
        String::from_utf8_lossy(buf),
        general
    );
    prop_assert_eq!(summary(&fast), summary(&general.unwrap()));
    Ok(true)
}

/// The default limits, or (`which` 1 to 3) one of them lowered to where the generated
/// heads cross it: the start line to `line`, the head to `head` bytes, or three fields.
fn limits_near(which: u8, line: usize, head: usize) -> Limits {
    let mut limits = Limits::default();
    match which {
        1 => limits.max_request_line = line,
        2 => limits.max_header_bytes = head,
        3 => limits.max_headers = 3,
        _ => {}
    }
    limits
}

/// Field lines: known and unknown names, separators, values with the bytes at the
/// edges of what a value may hold, line endings right and wrong.
fn field() -> impl Strategy<Value = Vec<u8>> {
    let name = prop_oneof![
        Just(&b"Host"[..]),
        Just(&b"Connection"[..]),
        Just(&b"Upgrade"[..]),
        Just(&b"Content-Length"[..]),
        Just(&b"Transfer-Encoding"[..]),
        Just(&b"content_length"[..]),
        Just(&b"X-Forwarded-For"[..]),
        Just(&b"Sec-WebSocket-Key"[..]),
        Just(&b"Keep-Alive"[..]),
        Just(&b"Via"[..]),
        Just(&b"TE"[..]),
        Just(&b"X"[..]),
        Just(&b"User-Agent"[..]),
        Just(&b"A{b"[..]),
        Just(&b"Bad Name"[..]),
        Just(&b""[..]),
    ];
    let name = prop_oneof![12 => name.clone().prop_filter("good", |n| crate::head::is_token(n)), 1 => name];
    let separator = prop_oneof![
        40 => Just(&b": "[..]),
        1 => Just(&b":"[..]),
        1 => Just(&b":  "[..]),
        1 => Just(&b":\t"[..]),
        1 => Just(&b" :"[..]),
    ];
    let byte = prop_oneof![
        400 => Just(b'a'),
        40 => Just(b'Z'),
        20 => Just(b'~'),
        20 => Just(b' '),
        20 => Just(b','),
        1 => Just(b'\t'),
        1 => Just(b'\r'),
        1 => Just(b'\n'),
        1 => Just(0u8),
        1 => Just(0x1fu8),
        1 => Just(0x7fu8),
        5 => Just(0x80u8),
        5 => Just(0xffu8),
        5 => Just(b':'),
    ];
    let value = prop_oneof![
        Just(b"close".to_vec()),
        Just(b"keep-alive, Upgrade".to_vec()),
        Just(b"websocket".to_vec()),
        Just(b"0".to_vec()),
        Just(b"chunked".to_vec()),
        proptest::collection::vec(byte, 0..100),
    ];
    let ending =
        prop_oneof![80 => Just(&b"\r\n"[..]), 1 => Just(&b"\n"[..]), 1 => Just(&b"\r"[..])];
    (name, separator, value, ending).prop_map(|(n, s, v, e)| [n, s, &v, e].concat())
}

fn request_line() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![
        8 => Just(&b"GET"[..]),
        4 => Just(&b"POST"[..]),
        1 => Just(&b"M-SEARCH"[..]),
        1 => Just(&b"G{T"[..]),
        1 => Just(&b""[..])
    ];
    let target = prop_oneof![
        8 => Just(&b"/"[..]),
        4 => Just(&b"/a/b?c=d&e=%20"[..]),
        4 => Just(&b"/a-long-path/with/several/segments/index.html"[..]),
        1 => Just(&b"*"[..]),
        1 => Just(&b"http://h:80/x"[..]),
        1 => Just(&b"/\x7f"[..]),
        1 => Just(&b"/\xc3\xa9"[..]),
        1 => Just(&b"/\xff"[..]),
        1 => Just(&b"/a b"[..]),
        1 => Just(&b""[..]),
    ];
    let version = prop_oneof![
        20 => Just(&b" HTTP/1.1\r\n"[..]),
        4 => Just(&b" HTTP/1.0\r\n"[..]),
        1 => Just(&b" HTTP/1.1\n"[..]),
        1 => Just(&b" HTTP/2.0\r\n"[..]),
        1 => Just(&b"  HTTP/1.1\r\n"[..]),
        1 => Just(&b" http/1.1\r\n"[..]),
    ];
    (
        prop_oneof![9 => Just(&b""[..]), 1 => Just(&b"\r\n"[..])],
        method,
        target,
        version,
    )
        .prop_map(|(lead, m, t, v)| [lead, m, b" ", t, v].concat())
}

fn status_line() -> impl Strategy<Value = Vec<u8>> {
    let version = prop_oneof![
        8 => Just(&b"HTTP/1.1 "[..]),
        2 => Just(&b"HTTP/1.0 "[..]),
        1 => Just(&b"HTTP/1.2 "[..]),
        1 => Just(&b"HTTP/1.1  "[..]),
        1 => Just(&b"\r\nHTTP/1.1 "[..]),
    ];
    let status = prop_oneof![
        8 => Just(&b"200"[..]),
        2 => Just(&b"101"[..]),
        1 => Just(&b"099"[..]),
        1 => Just(&b"600"[..]),
        1 => Just(&b"2x0"[..]),
        1 => Just(&b"20"[..]),
    ];
    let reason = prop_oneof![
        6 => Just(&b" OK\r\n"[..]),
        2 => Just(&b"\r\n"[..]),
        2 => Just(&b" \r\n"[..]),
        2 => Just(&b" Switching Protocols\r\n"[..]),
        1 => Just(&b" OK \r\n"[..]),
        1 => Just(&b" O\tK\r\n"[..]),
        1 => Just(&b" \xc3\xa9\r\n"[..]),
        1 => Just(&b" O\x7fK\r\n"[..]),
        1 => Just(&b" OK\n"[..]),
        1 => Just(&b"x\r\n"[..]),
    ];
    (version, status, reason).prop_map(|(v, s, r)| [v, s, r].concat())
}

/// Whole heads, with what may follow them, and some cut short.
fn heads() -> impl Strategy<Value = Vec<u8>> {
    heads_after(request_line())
}

/// Whole heads after `start` lines, with what may follow them, and some cut short.
fn heads_after(start: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let tail = prop_oneof![
        Just(&b""[..]),
        Just(&b"GET / HTTP/1.1\r\n\r\n"[..]),
        Just(&b"body"[..]),
    ];
    let end = prop_oneof![40 => Just(&b"\r\n"[..]), 1 => Just(&b"\n"[..]), 1 => Just(&b"\r"[..])];
    (
        start,
        proptest::collection::vec(field(), 0..12),
        end,
        tail,
        any::<prop::sample::Index>(),
        0..6u8,
    )
        .prop_map(|(line, fields, end, tail, cut, how)| {
            let mut head = [&line[..], &fields.concat(), end, tail].concat();
            match how {
                // Cut short somewhere.
                0 => head.truncate(cut.index(head.len() + 1)),
                // One byte changed somewhere.
                1 if !head.is_empty() => {
                    let i = cut.index(head.len());
                    head[i] = [b'\r', b'\n', b' ', b'\t', b':', 0, 0x7f, 0x80][i % 8];
                }
                _ => {}
            }
            head
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Whatever the plain-head parser takes, `httparse` and the strict rules take too,
    /// as the same head: same length, same start line, same fields and kinds, same
    /// reading of `Connection`, same runs to copy.
    #[test]
    fn a_head_it_takes_is_the_head_the_general_path_finds(
        buf in heads(),
        small in 0..4u8,
    ) {
        agrees(&buf, &limits_near(small, 20, 120))?;
    }

    /// The same for response heads, against the scanner and the general parse.
    #[test]
    fn a_response_head_it_takes_is_the_head_the_scanner_and_parse_find(
        buf in heads_after(status_line()),
        small in 0..4u8,
    ) {
        response_agrees(&buf, &limits_near(small, 14, 100))?;
    }

    /// The word-at-a-time searches stop where a byte-by-byte search stops, from every
    /// offset, whatever bytes there are.
    #[test]
    fn the_word_searches_agree_with_byte_searches(
        buf in proptest::collection::vec(
            prop_oneof![4 => Just(b'a'), 2 => Just(b'-'), 1 => Just(b':'), 1 => Just(b' '), 1 => Just(0x7f),
                        1 => Just(0x80), 1 => Just(0x1f), 1 => Just(b'_'), 4 => any::<u8>()],
            0..40,
        ),
    ) {
        let first = |from: usize, stop: &dyn Fn(u8) -> bool| {
            buf[from..].iter().position(|&b| stop(b)).map_or(buf.len(), |p| from + p)
        };
        for from in 0..=buf.len() {
            prop_assert_eq!(
                name_stop(&buf, from),
                first(from, &|b| b == b':' || !crate::head::is_tchar(b))
            );
            prop_assert_eq!(value_stop(&buf, from), first(from, &|b| b < 0x20 || b == 0x7f));
            prop_assert_eq!(target_stop(&buf, from), first(from, &|b| !(0x21..0x7f).contains(&b)));
        }
    }

    /// A value search stops at the first control byte or DEL however long the run
    /// before it: through the sixteen-byte chunks and the words after them.
    #[test]
    fn the_value_search_stops_at_the_first_stop_byte_of_long_runs(
        buf in proptest::collection::vec(
            prop_oneof![200 => Just(b'a'), 10 => Just(0x80), 4 => Just(b' '), 1 => Just(b'\r'),
                        1 => Just(b'\t'), 1 => Just(0x7f), 1 => Just(0x1f), 1 => Just(0)],
            0..160,
        ),
    ) {
        for from in 0..=buf.len() {
            let expected = buf[from..]
                .iter()
                .position(|&b| b < 0x20 || b == 0x7f)
                .map_or(buf.len(), |p| from + p);
            prop_assert_eq!(value_stop(&buf, from), expected);
        }
    }

    /// A name search stops at the first byte that is not a `tchar`, or at a colon,
    /// however long the run of letters, digits and dashes before it: through the first
    /// sixteen bytes, the words after them, and again after each other `tchar`.
    #[test]
    fn the_name_search_stops_at_the_first_stop_byte_of_long_runs(
        buf in proptest::collection::vec(
            prop_oneof![100 => Just(b'a'), 30 => Just(b'Z'), 30 => Just(b'7'), 30 => Just(b'-'),
                        3 => Just(b'_'), 3 => Just(b'.'), 1 => Just(b':'), 1 => Just(b' '),
                        1 => Just(b'\r'), 1 => Just(0x80), 1 => Just(b'@')],
            0..96,
        ),
    ) {
        for from in 0..=buf.len() {
            let expected = buf[from..]
                .iter()
                .position(|&b| b == b':' || !crate::head::is_tchar(b))
                .map_or(buf.len(), |p| from + p);
            prop_assert_eq!(name_stop(&buf, from), expected);
        }
    }

    /// Arbitrary bytes after a plain request line: never taken unless the general path
    /// agrees.
    #[test]
    fn arbitrary_bytes_are_never_taken_alone(
        rest in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let buf = [&b"GET / HTTP/1.1\r\n"[..], &rest].concat();
        agrees(&buf, &Limits::default())?;
    }
}

/// The heads clients usually send are all taken by it (else it saves nothing), with or
/// without a next request behind them.
#[test]
fn the_usual_heads_are_taken() {
    let heads: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 13\r\n\r\n",
        b"POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nCookie: a=b; c=\xc3\xa9\r\n\
          User-Agent: Mozilla/5.0 (X11; Linux x86_64)\tx\r\n\r\nhi",
        b"GET /x?y=1 HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\n",
    ];
    for buf in heads {
        assert!(
            agrees(buf, &Limits::default()).unwrap(),
            "not taken: {:?}",
            String::from_utf8_lossy(buf)
        );
    }
    let mut head = Head::empty();
    let end = parse_request(heads[3], &Limits::default(), &mut head).unwrap();
    head.bytes = Bytes::copy_from_slice(&heads[3][..end]);
    assert_eq!(head.slice(&head.target), b"/x?y=1");
    assert_eq!(head.version, 0);
    assert!(head.connection.keep_alive);
}

/// The usual response heads are taken too.
#[test]
fn the_usual_response_heads_are_taken() {
    for buf in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello"[..],
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x00",
        b"HTTP/1.0 204\r\nServer: x\r\n\r\n",
    ] {
        assert!(
            response_agrees(buf, &Limits::default()).unwrap(),
            "not taken: {:?}",
            String::from_utf8_lossy(buf)
        );
    }
}

/// What it gives up on, the general path decides.
#[test]
fn the_unusual_heads_are_left_to_the_general_path() {
    let limits = Limits::default();
    for buf in [
        &b"GET / HTTP/1.1\r\nHost: a\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a \r\n\r\n",
        b"GET / HTTP/1.1\r\nX:\r\n\r\n",
        b"GET / HTTP/1.1\r\n X: a\r\n\r\n",
        b"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n",
    ] {
        assert!(
            parse_request(buf, &limits, &mut Head::empty()).is_none(),
            "{:?}",
            String::from_utf8_lossy(buf)
        );
    }
}
