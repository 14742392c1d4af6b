//! Finding the end of a message head in what has arrived: incrementally (a head may
//! arrive one byte at a time; each byte is scanned once), and the byte searches the head
//! parse shares. The one-pass parse of a whole head (`head.rs`) tries first and falls
//! back to this scanner when a head is split or breaks a rule.

use bytes::BytesMut;

use crate::config::Limits;
use crate::error::ErrorKind;

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

/// Each byte of a word set to `b`.
pub(crate) const fn splat(b: u8) -> u64 {
    u64::from_le_bytes([b; 8])
}

/// A mark (high bit) on each byte of `w` below `n` (`n` at most 128). The lowest mark is
/// exact; the ones above it may not be (a borrow), which is all a search needs.
#[inline(always)]
pub(crate) fn below(w: u64, n: u8) -> u64 {
    w.wrapping_sub(splat(n)) & !w & splat(0x80)
}

/// A mark on each byte of `w` equal to `b` (the lowest exact, as in [`below`]).
#[inline(always)]
pub(crate) fn equal(w: u64, b: u8) -> u64 {
    let x = w ^ splat(b);
    x.wrapping_sub(splat(1)) & !x & splat(0x80)
}

/// The first eight bytes of `bytes` (at least eight long) as a little-endian word.
#[inline(always)]
pub(crate) fn word(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8]))
}

/// Where the first byte from `i` on is that `stop` marks in the word holding it (as
/// [`below`] marks: the lowest mark exact), or that `stop_byte` is true of among the
/// last few bytes; `buf.len()` when there is none.
#[inline(always)]
pub(crate) fn first_marked(
    buf: &[u8],
    i: usize,
    stop: impl Fn(u64) -> u64,
    stop_byte: impl Fn(u8) -> bool,
) -> usize {
    let rest = &buf[i.min(buf.len())..];
    let mut words = rest.chunks_exact(8);
    let mut at = i;
    for chunk in words.by_ref() {
        let marks = stop(word(chunk));
        if marks != 0 {
            return at + (marks.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    let tail = words.remainder();
    at + tail
        .iter()
        .position(|&b| stop_byte(b))
        .unwrap_or(tail.len())
}

/// The sixteen bytes of `buf` from `i`, when there are that many.
#[inline(always)]
pub(crate) fn sixteen(buf: &[u8], i: usize) -> Option<&[u8; 16]> {
    buf.get(i..i.checked_add(16)?)?.try_into().ok()
}

/// Where the first of the sixteen bytes of `chunk` is that `stop` is true of; 16 when
/// none is. Written so that the compiler tests all sixteen at once where the target has
/// vector compares (SSE2 on x86-64, NEON on aarch64; no `unsafe`) and finds the first in
/// the mask without a branch. For a field name that is about 30 instructions, where the
/// two words of [`first_marked`] took 40 to 50. `array::from_fn` left out of line
/// measured fewer instructions per head than the same lanes written inline (a loop or a
/// literal array), which crowd the field loop's registers (crates/core/benches/
/// RESULTS.md, "Issue 14, seventh pass").
#[inline(always)]
pub(crate) fn first_of_16(chunk: &[u8; 16], stop: impl Fn(u8) -> bool) -> usize {
    let lanes: [u8; 16] = std::array::from_fn(|k| if stop(chunk[k]) { 0xff } else { 0 });
    (u128::from_le_bytes(lanes).trailing_zeros() / 8) as usize
}

/// [`first_marked`] sixteen bytes at a time ([`first_of_16`], `stop_byte` on each), then
/// words for the last few: for field values, which may run long. (Targets stay with
/// words alone, and names take sixteen bytes once, then words: each measured fewer
/// instructions so.)
#[inline(always)]
pub(crate) fn first_stop(
    buf: &[u8],
    i: usize,
    stop: impl Fn(u64) -> u64,
    stop_byte: impl Fn(u8) -> bool + Copy,
) -> usize {
    let mut at = i;
    while let Some(chunk) = sixteen(buf, at) {
        let first = first_of_16(chunk, stop_byte);
        if first < 16 {
            return at + first;
        }
        at += 16;
    }
    first_marked(buf, at, stop, stop_byte)
}

/// Position of the first `byte` in `buf`, eight bytes at a time (SWAR, no `unsafe`).
pub(crate) fn find_byte(buf: &[u8], byte: u8) -> Option<usize> {
    let at = first_marked(buf, 0, |w| equal(w, byte), |b| b == byte);
    (at < buf.len()).then_some(at)
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

    /// Nothing of the current head was searched yet: a head that arrived whole may be
    /// parsed at once ([`parse_request_whole`]), without this search.
    pub(crate) fn is_fresh(&self) -> bool {
        self.scanned == 0 && self.first_line_end.is_none()
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
