//! Request heads: field syntax (RFC 9112 §5, RFC 9110 §5.5), `Host` (RFC 9112 §3.2)
//! and the request line (RFC 9112 §3).

use super::{get, rejected};
use crate::vector::Vector;

/// The vectors of this class.
#[allow(clippy::vec_init_then_push)] // one push per vector reads as a table
pub(super) fn vectors() -> Vec<Vector> {
    let mut v = Vec::new();
    // ---- field syntax (RFC 9112 §5, RFC 9110 §5.5) -----------------------------------
    v.push(rejected(
        "ws_before_colon",
        "field syntax",
        &get(&["X-A : b"]),
        400,
    ));
    v.push(rejected(
        "host_ws_before_colon",
        "field syntax",
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "obs_fold",
        "obs-fold",
        &get(&["X-A: b", " c"]),
        400,
    ));
    v.push(rejected(
        "obs_fold_tab",
        "obs-fold",
        &get(&["X-A: b", "\tc"]),
        400,
    ));
    v.push(rejected(
        "nul_in_value",
        "control characters",
        &get(&["X-A: b\0c"]),
        400,
    ));
    v.push(rejected(
        "nul_in_name",
        "control characters",
        &get(&["X\0A: b"]),
        400,
    ));
    v.push(rejected(
        "ctl_in_value",
        "control characters",
        &get(&["X-A: b\x01c"]),
        400,
    ));
    v.push(rejected(
        "del_in_value",
        "control characters",
        &get(&["X-A: b\x7fc"]),
        400,
    ));
    v.push(rejected(
        "escape_in_value",
        "control characters",
        &get(&["X-A: \x1b[31m"]),
        400,
    ));
    v.push(rejected(
        "bare_cr_in_value",
        "line endings",
        &get(&["X-A: b\rTransfer-Encoding: chunked"]),
        400,
    ));
    v.push(rejected(
        "bare_lf_in_value",
        "line endings",
        &get(&["X-A: b\nTransfer-Encoding: chunked"]),
        400,
    ));
    v.push(rejected(
        "bare_lf_everywhere",
        "line endings",
        b"GET / HTTP/1.1\nHost: a\n\n",
        400,
    ));
    v.push(rejected(
        "bare_lf_request_line",
        "line endings",
        b"GET / HTTP/1.1\nHost: a\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "bare_cr_request_line",
        "line endings",
        b"GET / HTTP/1.1\rHost: a\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "lf_cr_terminator",
        "line endings",
        b"GET / HTTP/1.1\r\nHost: a\r\n\n\r\n",
        400,
    ));
    v.push(rejected(
        "name_with_paren",
        "field syntax",
        &get(&["X(A): b"]),
        400,
    ));
    v.push(rejected(
        "name_with_space",
        "field syntax",
        &get(&["X A: b"]),
        400,
    ));
    v.push(rejected(
        "name_with_at",
        "field syntax",
        &get(&["X@A: b"]),
        400,
    ));
    v.push(rejected(
        "name_non_ascii",
        "field syntax",
        "GET / HTTP/1.1\r\nHost: a\r\nXé: b\r\n\r\n".as_bytes(),
        400,
    ));
    v.push(rejected("empty_name", "field syntax", &get(&[": b"]), 400));
    v.push(rejected(
        "line_without_colon",
        "field syntax",
        &get(&["X-A b"]),
        400,
    ));

    // ---- Host (RFC 9112 §3.2) ---------------------------------------------------------
    v.push(rejected(
        "host_missing",
        "Host",
        b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "host_twice",
        "Host",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "host_twice_same",
        "Host",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "host_with_space",
        "Host",
        b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "host_with_slash",
        "Host",
        b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "host_with_userinfo",
        "Host",
        b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n",
        400,
    ));

    // ---- request line (RFC 9112 §3) ---------------------------------------------------
    v.push(rejected(
        "version_1_2",
        "request line",
        b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
        505,
    ));
    v.push(rejected(
        "version_2_0",
        "request line",
        b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        505,
    ));
    v.push(rejected(
        "version_lowercase",
        "request line",
        b"GET / http/1.1\r\nHost: a\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "leading_space",
        "request line",
        b" GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "double_space_before_version",
        "request line",
        b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "space_in_target",
        "request line",
        b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "nul_in_target",
        "request line",
        b"GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "method_not_token",
        "request line",
        b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "target_not_a_path",
        "request line",
        b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
        400,
    ));
    v.push(rejected("http09", "request line", b"GET /\r\n\r\n", 400));

    v
}
