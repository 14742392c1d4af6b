//! Chunked bodies (RFC 9112 §7.1): chunk sizes, chunk data and trailers, each rejected
//! after the head was forwarded.

use super::bad_chunked;
use crate::vector::Vector;

/// The vectors of this class.
#[allow(clippy::vec_init_then_push)] // one push per vector reads as a table
pub(super) fn vectors() -> Vec<Vector> {
    let mut v = Vec::new();
    v.push(bad_chunked(
        "chunk_size_plus",
        "chunk size",
        b"+5\r\nhello\r\n0\r\n\r\n",
    ));
    v.push(bad_chunked(
        "chunk_size_minus",
        "chunk size",
        b"-5\r\nhello\r\n0\r\n\r\n",
    ));
    v.push(bad_chunked(
        "chunk_size_0x",
        "chunk size",
        b"0x5\r\nhello\r\n0\r\n\r\n",
    ));
    v.push(bad_chunked(
        "chunk_size_underscore",
        "chunk size",
        b"1_0\r\n0123456789abcdef\r\n0\r\n\r\n",
    ));
    v.push(bad_chunked(
        "chunk_size_leading_space",
        "chunk size",
        b" 5\r\nhello\r\n0\r\n\r\n",
    ));
    v.push(bad_chunked(
        "chunk_size_trailing_space",
        "chunk size",
        b"5 \r\nhello\r\n0\r\n\r\n",
    ));
    v.push(bad_chunked(
        "chunk_size_17_digits",
        "chunk size",
        b"10000000000000005\r\nhello\r\n0\r\n\r\n",
    ));
    v.push(bad_chunked(
        "chunk_size_empty",
        "chunk size",
        b"\r\nhello\r\n0\r\n\r\n",
    ));
    v.push(bad_chunked(
        "chunk_size_not_hex",
        "chunk size",
        b"g\r\nhello\r\n0\r\n\r\n",
    ));
    v.push(bad_chunked(
        "chunk_size_bare_lf",
        "chunk size",
        b"5\nhello\r\n0\r\n\r\n",
    ));
    v.push(bad_chunked(
        "chunk_ext_control",
        "chunk size",
        b"5;a=\x01\r\nhello\r\n0\r\n\r\n",
    ));
    v.push(bad_chunked(
        "chunk_missing_crlf",
        "chunk data",
        b"5\r\nhelloXX0\r\n\r\n",
    ));
    v.push(bad_chunked(
        "chunk_lf_after_data",
        "chunk data",
        b"5\r\nhello\n0\r\n\r\n",
    ));
    v.push(bad_chunked(
        "chunk_too_long_data",
        "chunk data",
        b"3\r\nhello\r\n0\r\n\r\n",
    ));
    v.push(bad_chunked(
        "trailer_space_before_colon",
        "trailers",
        b"0\r\nX-T : 1\r\n\r\n",
    ));
    v.push(bad_chunked(
        "trailer_obs_fold",
        "trailers",
        b"0\r\nX-T: 1\r\n 2\r\n\r\n",
    ));
    v.push(bad_chunked(
        "trailer_bare_lf",
        "trailers",
        b"0\r\nX-T: 1\n\r\n",
    ));
    v.push(bad_chunked(
        "trailer_nul",
        "trailers",
        b"0\r\nX-T: 1\x002\r\n\r\n",
    ));
    v.push(bad_chunked(
        "trailer_without_colon",
        "trailers",
        b"0\r\nbogus\r\n\r\n",
    ));

    v
}
