//! The response side: a hostile upstream's framing, syntax, status lines, limits, and
//! bytes after a complete response.

use super::{bad_response, cat, get};
use std::sync::OnceLock;

use crate::vector::{Reply, Side, Up, Vector, NEXT};

/// The vectors of this class.
#[allow(clippy::vec_init_then_push)] // one push per vector reads as a table
pub(super) fn vectors() -> Vec<Vector> {
    let mut v = Vec::new();
    v.push(bad_response("resp_cl_with_te", "response framing", b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nMARKER\r\n0\r\n\r\n"));
    v.push(bad_response(
        "resp_cl_differing",
        "response framing",
        b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nContent-Length: 7\r\n\r\nMARKER!",
    ));
    v.push(bad_response(
        "resp_cl_list",
        "response framing",
        b"HTTP/1.1 200 OK\r\nContent-Length: 6, 6\r\n\r\nMARKER",
    ));
    v.push(bad_response(
        "resp_cl_not_digits",
        "response framing",
        b"HTTP/1.1 200 OK\r\nContent-Length: six\r\n\r\nMARKER",
    ));
    v.push(bad_response(
        "resp_te_last_not_chunked",
        "response framing",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nMARKER",
    ));
    v.push(bad_response(
        "resp_te_xchunked",
        "response framing",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n6\r\nMARKER\r\n0\r\n\r\n",
    ));
    v.push(bad_response(
        "resp_obs_fold",
        "response syntax",
        b"HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 6\r\n\r\nMARKER",
    ));
    v.push(bad_response(
        "resp_bare_lf",
        "response syntax",
        b"HTTP/1.1 200 OK\nContent-Length: 6\n\nMARKER",
    ));
    v.push(bad_response(
        "resp_nul_in_value",
        "response syntax",
        b"HTTP/1.1 200 OK\r\nX-A: b\0c\r\nContent-Length: 6\r\n\r\nMARKER",
    ));
    v.push(bad_response(
        "resp_bare_cr_injection",
        "response syntax",
        b"HTTP/1.1 200 OK\r\nX-A: b\rSet-Cookie: s=1\r\nContent-Length: 6\r\n\r\nMARKER",
    ));
    v.push(bad_response(
        "resp_space_before_colon",
        "response syntax",
        b"HTTP/1.1 200 OK\r\nContent-Length : 6\r\n\r\nMARKER",
    ));
    v.push(bad_response(
        "resp_invalid_name",
        "response syntax",
        b"HTTP/1.1 200 OK\r\nX A: b\r\nContent-Length: 6\r\n\r\nMARKER",
    ));
    v.push(bad_response(
        "resp_status_4_digits",
        "response status line",
        b"HTTP/1.1 2000 OK\r\nContent-Length: 6\r\n\r\nMARKER",
    ));
    v.push(bad_response(
        "resp_status_below_100",
        "response status line",
        b"HTTP/1.1 099 Odd\r\nContent-Length: 6\r\n\r\nMARKER",
    ));
    v.push(bad_response(
        "resp_version_2",
        "response status line",
        b"HTTP/2.0 200 OK\r\nContent-Length: 6\r\n\r\nMARKER",
    ));
    v.push(bad_response(
        "resp_not_http",
        "response status line",
        b"ICY 200 OK\r\nContent-Length: 6\r\n\r\nMARKER",
    ));
    v.push(bad_response(
        "resp_head_over_32k",
        "response limits",
        head_over_32k(),
    ));
    v.push(bad_response(
        "resp_over_100_fields",
        "response limits",
        over_100_fields(),
    ));
    v.push(
        Vector::new("resp_bad_chunk_after_head", "response framing", Side::Response, get(&[]))
            .replies(&[Reply::Raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n+6\r\nMARKER\r\n0\r\n\r\n")])
            .st(&[200])
            .closed(true)
            .up(Up::Requests(&["GET / HTTP/1.1"]))
            .never(&[b"MARKER"]),
    );
    v.push(
        Vector::new("resp_bytes_after_response", "bytes after a response", Side::Response, cat(&[&get(&[]), NEXT]))
            .replies(&[Reply::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nMARKER")])
            .st(&[200, 200])
            .up(Up::Requests(&["GET / HTTP/1.1", "GET /next HTTP/1.1"]))
            .never(&[b"MARKER"]),
    );
    v.push(
        Vector::new(
            "resp_body_on_204",
            "bytes after a response",
            Side::Response,
            cat(&[&get(&[]), NEXT]),
        )
        .replies(&[Reply::Raw(
            b"HTTP/1.1 204 No Content\r\nContent-Length: 6\r\n\r\nMARKER",
        )])
        .st(&[204, 200])
        .up(Up::Requests(&["GET / HTTP/1.1", "GET /next HTTP/1.1"]))
        .never(&[b"MARKER"]),
    );
    v.push(
        Vector::new(
            "resp_body_on_304",
            "bytes after a response",
            Side::Response,
            cat(&[&get(&[]), NEXT]),
        )
        .replies(&[Reply::Raw(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 6\r\n\r\nMARKER",
        )])
        .st(&[304, 200])
        .up(Up::Requests(&["GET / HTTP/1.1", "GET /next HTTP/1.1"]))
        .never(&[b"MARKER"]),
    );
    v.push(
        Vector::new(
            "resp_body_on_head",
            "bytes after a response",
            Side::Response,
            b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\nHEAD /next HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        )
        .head_requests()
        .replies(&[Reply::Raw(
            b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nMARKER",
        )])
        .st(&[200, 200])
        .up(Up::Requests(&["HEAD / HTTP/1.1", "HEAD /next HTTP/1.1"]))
        .never(&[b"MARKER"]),
    );
    v.push(
        Vector::new("resp_after_last_chunk", "bytes after a response", Side::Response, cat(&[&get(&[]), NEXT]))
            .replies(&[Reply::Raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nMARKER")])
            .st(&[200, 200])
            .up(Up::Requests(&["GET / HTTP/1.1", "GET /next HTTP/1.1"]))
            .never(&[b"MARKER"]),
    );
    v.push(
        Vector::new("resp_queue_poisoning", "bytes after a response", Side::Response, cat(&[b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n", b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n"]))
            .replies(&[Reply::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nMARKER"), Reply::Echo])
            .st(&[200, 200])
            .up(Up::Requests(&["GET /a HTTP/1.1", "GET /b HTTP/1.1"]))
            .never(&[b"MARKER"]),
    );
    v.push(
        Vector::new("resp_hop_by_hop_dropped", "hop-by-hop", Side::Response, get(&[]))
            .replies(&[Reply::Raw(b"HTTP/1.1 200 OK\r\nConnection: X-Up-Secret\r\nX-Up-Secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nTrailer: X\r\nContent-Length: 2\r\n\r\nok")])
            .st(&[200])
            .up(Up::Requests(&["GET / HTTP/1.1"]))
            .never(&[b"X-Up-Secret", b"Keep-Alive", b"Proxy-Authenticate", b"Trailer"]),
    );
    v.push(
        Vector::new("resp_interim_then_final", "control", Side::Response, get(&[]))
            .replies(&[Reply::Raw(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")])
            .st(&[100, 103, 200])
            .up(Up::Requests(&["GET / HTTP/1.1"])),
    );
    v
}

/// A response whose head is over the 32 KiB limit. Built once: a [`Reply`] holds
/// `'static` bytes.
fn head_over_32k() -> &'static [u8] {
    static RESPONSE: OnceLock<Vec<u8>> = OnceLock::new();
    RESPONSE.get_or_init(|| {
        format!(
            "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 6\r\n\r\nMARKER",
            "b".repeat(33 * 1024)
        )
        .into_bytes()
    })
}

/// A response with 102 fields, over the limit of 100. Built once, like [`head_over_32k`].
fn over_100_fields() -> &'static [u8] {
    static RESPONSE: OnceLock<Vec<u8>> = OnceLock::new();
    RESPONSE.get_or_init(|| {
        let lines: Vec<String> = (0..101).map(|i| format!("X-F{i}: {i}")).collect();
        format!(
            "HTTP/1.1 200 OK\r\n{}\r\nContent-Length: 6\r\n\r\nMARKER",
            lines.join("\r\n")
        )
        .into_bytes()
    })
}
