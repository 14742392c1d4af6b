//! Request framing: pipelining, `Content-Length` (RFC 9112 §6.3, RFC 9110 §8.6) and
//! `Transfer-Encoding` (RFC 9112 §6.1, §6.3).

use super::{cat, get, rejected};
use crate::vector::{Side, Up, Vector, SMUGGLED};

/// The vectors of this class.
#[allow(clippy::vec_init_then_push)] // one push per vector reads as a table
pub(super) fn vectors() -> Vec<Vector> {
    let mut v = Vec::new();
    // ---- pipelining: what follows a message is never read as part of it, nor the reverse
    v.push(
        Vector::new(
            "pipelined_after_connection_close",
            "pipelining",
            Side::Request,
            cat(&[&get(&["Connection: close"]), SMUGGLED]),
        )
        .st(&[200])
        .closed(true)
        .up(Up::Requests(&["GET / HTTP/1.1"])),
    );
    v.push(
        Vector::new(
            "pipelined_after_http10",
            "pipelining",
            Side::Request,
            cat(&[b"GET /old HTTP/1.0\r\nHost: a\r\n\r\n", SMUGGLED]),
        )
        .st(&[200])
        .closed(true)
        .up(Up::Requests(&["GET /old HTTP/1.1"])),
    );
    v.push(
        Vector::new(
            "request_inside_length_body",
            "pipelining",
            Side::Request,
            cat(&[
                b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 35\r\n\r\n",
                SMUGGLED,
            ]),
        )
        .st(&[200])
        .up(Up::Requests(&["POST /p HTTP/1.1"])),
    );
    v.push(
        Vector::new(
            "request_inside_chunked_body",
            "pipelining",
            Side::Request,
            cat(&[
                b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n23\r\n",
                SMUGGLED,
                b"\r\n0\r\n\r\n",
            ]),
        )
        .st(&[200])
        .up(Up::Requests(&["POST /c HTTP/1.1"])),
    );

    // ---- Content-Length (RFC 9112 §6.3, RFC 9110 §8.6) -------------------------------
    v.push(rejected("cl_with_te", "CL+TE", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400));
    v.push(rejected("te_with_cl", "CL+TE", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", 400));
    v.push(rejected("cl_with_obfuscated_te", "CL+TE", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: xchunked\r\n\r\n5c\r\n", 400));
    v.push(rejected(
        "cl_twice_equal",
        "Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        400,
    ));
    v.push(rejected(
        "cl_twice_differing",
        "Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
    ));
    v.push(rejected(
        "cl_list",
        "Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello",
        400,
    ));
    v.push(rejected(
        "cl_plus_sign",
        "Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
        400,
    ));
    v.push(rejected(
        "cl_negative",
        "Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\nhello",
        400,
    ));
    v.push(rejected(
        "cl_hex",
        "Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello",
        400,
    ));
    v.push(rejected(
        "cl_inner_space",
        "Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\n\r\nhello",
        400,
    ));
    v.push(rejected(
        "cl_empty",
        "Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\nhello",
        400,
    ));
    v.push(rejected(
        "cl_decimal",
        "Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5.0\r\n\r\nhello",
        400,
    ));
    v.push(rejected(
        "cl_overflow",
        "Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551621\r\n\r\nhello",
        400,
    ));
    v.push(rejected(
        "cl_vertical_tab",
        "Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\x0b\r\n\r\nhello",
        400,
    ));

    // ---- Transfer-Encoding (RFC 9112 §6.1, §6.3) --------------------------------------
    v.push(rejected(
        "te_last_not_chunked",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "te_identity",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "te_unknown_then_chunked",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
    ));
    v.push(rejected(
        "te_unknown_alone",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "te_xchunked",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "te_chunk_truncated_name",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunk\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "te_chunked_twice_in_list",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(rejected("te_two_fields", "Transfer-Encoding", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400));
    v.push(rejected("te_second_field_identity", "Transfer-Encoding", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n", 400));
    v.push(rejected(
        "te_quoted",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "te_single_quoted",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: 'chunked'\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "te_vertical_tab",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "te_nul_prefix",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x00chunked\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "te_non_ascii",
        "Transfer-Encoding",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chùnked\r\n\r\n0\r\n\r\n".as_bytes(),
        400,
    ));
    v.push(rejected(
        "te_space_before_colon",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "te_tab_before_colon",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "te_leading_space_line",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: a\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "te_obs_fold_value",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "te_lf_before_colon",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\n: chunked\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "te_in_http10",
        "Transfer-Encoding",
        b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(rejected("te_underscore_with_cl", "Transfer-Encoding", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400));

    v
}
