//! The usual message head, parsed in one loop that also tells its fields apart.
//!
//! A head almost always arrives whole in one read and is written plainly: `method SP
//! target SP HTTP/1.x CRLF` (or `HTTP/1.x SP status [SP reason] CRLF`), then `name:
//! value CRLF` lines, then CRLF. This parser takes only that: a strict subset of what
//! `httparse` followed by the strict rules accepts (docs/ARCHITECTURE.md §Protocol
//! rules, "Message framing"), and it finds the same head. Whatever else it meets (a bare
//! LF, whitespace around a value, an empty value, a target or reason byte outside
//! visible ASCII, more fields than fit inline, a limit reached, a head not all there)
//! makes it give up: then `httparse` and the scanner take the head and decide, exactly
//! as if this had not been tried. Giving up is always safe, so the only property it must
//! keep is one-sided (`tests`: whatever it accepts, the general path accepts too, as the
//! same head).
//!
//! What it saves is a second loop: `httparse` finds the fields, then `Fields::fill`
//! walks them again for their kinds, runs and line endings (and a response head was
//! scanned for its end first). Here each field is found, recognised and counted once,
//! names and values sixteen bytes at a time.

use crate::config::Limits;
use crate::field_kind::is_tchar;
use crate::fields::{Field, Fields, Tally, MAX_HEAD};
use crate::head::Head;
use crate::head_scan::{below, equal, first_marked, first_of_16, first_stop, sixteen, splat};

/// A mark on each byte of `w` that no field value may hold in a plain run: a control
/// byte (HTAB and the line's CR among them) or DEL. Bytes from 0x80 up (obs-text)
/// pass, as in `httparse`.
#[inline(always)]
fn value_marks(w: u64) -> u64 {
    below(w, 0x20) | equal(w, 0x7f)
}

/// [`value_marks`] for one byte.
#[inline(always)]
fn value_byte_stops(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// Where the first byte from `i` on is that [`value_marks`] marks.
#[inline(always)]
fn value_stop(buf: &[u8], i: usize) -> usize {
    first_stop(buf, i, value_marks, value_byte_stops)
}

/// Where the first byte from `i` on is that is not in `!`..=`~` (the end of a target
/// made of visible ASCII only: anything else is left to the general path).
#[inline(always)]
fn target_stop(buf: &[u8], i: usize) -> usize {
    first_marked(
        buf,
        i,
        |w| below(w, 0x21) | equal(w, 0x7f) | (w & splat(0x80)),
        |b| !(0x21..0x7f).contains(&b),
    )
}

/// Where the token starting at `i` ends.
#[inline(always)]
fn token_stop(buf: &[u8], i: usize) -> usize {
    let rest = &buf[i.min(buf.len())..];
    i + rest
        .iter()
        .position(|&b| !is_tchar(b))
        .unwrap_or(rest.len())
}

/// A mark on each byte of `w` that is none of ASCII letters, digits and `-`: what field
/// names are made of, but for a few other `tchar`s. Exact on every byte (each byte's
/// sums stay within it: no carry or borrow crosses into the next).
#[inline(always)]
fn not_name_letter(w: u64) -> u64 {
    let high = w & splat(0x80);
    let x = w & splat(0x7f);
    // `x + (0x80 - lo)` has its high bit set exactly when `x >= lo`.
    let at_least = |lo: u8| x + splat(0x80 - lo);
    let lower = x | splat(0x20);
    let letter = (lower + splat(0x80 - b'a')) & !(lower + splat(0x80 - (b'z' + 1)));
    let digit = at_least(b'0') & !at_least(b'9' + 1);
    let dash = !((x ^ splat(b'-')) + splat(0x7f));
    (!(letter | digit | dash) & splat(0x80)) | high
}

/// [`not_name_letter`] for one byte.
#[inline(always)]
fn name_byte_stops(b: u8) -> bool {
    !(b.is_ascii_alphanumeric() || b == b'-')
}

/// Where the run of letters, digits and `-` from `i` ends: the first sixteen bytes at
/// once (most names end within them), then eight at a time.
#[inline(always)]
fn name_letters_stop(buf: &[u8], i: usize) -> usize {
    match sixteen(buf, i) {
        Some(chunk) => match first_of_16(chunk, name_byte_stops) {
            16 => first_marked(buf, i + 16, not_name_letter, name_byte_stops),
            first => i + first,
        },
        None => first_marked(buf, i, not_name_letter, name_byte_stops),
    }
}

/// Where the field name starting at `i` ends: letters, digits and `-` many at a time,
/// the other `tchar`s one by one.
#[inline(always)]
fn name_stop(buf: &[u8], i: usize) -> usize {
    let mut end = name_letters_stop(buf, i);
    while buf.get(end).is_some_and(|&b| b != b':' && is_tchar(b)) {
        end = name_letters_stop(buf, end + 1);
    }
    end
}

/// The request head at the start of `buf` into `head` (all but its bytes), when it is
/// all there, written plainly, and within `limits`; returns its length. `None` gives it
/// to the general path (`head` is then to be made empty again).
pub(crate) fn parse_request(buf: &[u8], limits: &Limits, head: &mut Head) -> Option<usize> {
    let method_end = token_stop(buf, 0);
    if method_end == 0 || buf.get(method_end) != Some(&b' ') {
        return None;
    }
    let target_start = method_end + 1;
    let target_end = target_stop(buf, target_start);
    if target_end == target_start || buf.get(target_end) != Some(&b' ') {
        return None;
    }
    let version_start = target_end + 1;
    head.version = match buf.get(version_start..version_start + 10)? {
        b"HTTP/1.1\r\n" => 1,
        b"HTTP/1.0\r\n" => 0,
        _ => return None,
    };
    head.first = 0..method_end;
    head.target = target_start..target_end;
    fields(buf, version_start + 10, limits, head)
}

/// The response head at the start of `buf` into `head`, as [`parse_request`] does for a
/// request: `HTTP/1.x SP status` then CRLF or `SP reason CRLF`, the status within
/// 100..=599 and the reason phrase of visible ASCII and spaces only.
pub(crate) fn parse_response(buf: &[u8], limits: &Limits, head: &mut Head) -> Option<usize> {
    let (version, status) = match buf.get(..12)? {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor @ (b'0' | b'1'), b' ', digits @ ..] => {
            let mut status = 0u16;
            for &d in digits {
                if !d.is_ascii_digit() {
                    return None;
                }
                status = status * 10 + u16::from(d - b'0');
            }
            (minor - b'0', status)
        }
        _ => return None,
    };
    if !(100..=599).contains(&status) {
        return None;
    }
    head.version = version;
    head.status = status;
    let line_end = match buf.get(12)? {
        b'\r' => 12,
        b' ' => first_marked(
            buf,
            13,
            |w| below(w, 0x20) | equal(w, 0x7f) | (w & splat(0x80)),
            |b| !(0x20..0x7f).contains(&b),
        ),
        _ => return None,
    };
    if buf.get(line_end..line_end + 2) != Some(b"\r\n") {
        return None;
    }
    head.first = if line_end > 13 { 13..line_end } else { 0..0 };
    fields(buf, line_end + 2, limits, head)
}

/// The fields from `i` (where the start line ended) to the empty line into `head`; the
/// head's length.
#[inline(never)]
fn fields(buf: &[u8], mut i: usize, limits: &Limits, head: &mut Head) -> Option<usize> {
    // The start line's LF is at `i - 1`.
    if i > limits.max_request_line {
        return None;
    }
    // Each field `name:` OWS value CRLF, the value neither empty nor ending in
    // whitespace (`httparse` would trim it).
    let mut tally = Tally::new();
    let mut count = 0;
    let max_count = limits.max_headers.min(Fields::INLINE);
    loop {
        if buf.get(i) == Some(&b'\r') {
            if buf.get(i + 1) != Some(&b'\n') {
                return None;
            }
            i += 2;
            break;
        }
        let name_start = i;
        let name_end = name_stop(buf, i);
        if name_end == name_start || buf.get(name_end) != Some(&b':') || count == max_count {
            return None;
        }
        // One space before the value is the plain line; any other whitespace is skipped.
        let mut plainly = buf.get(name_end + 1) == Some(&b' ');
        let mut value_start = name_end + 1 + usize::from(plainly);
        while matches!(buf.get(value_start), Some(b' ' | b'\t')) {
            value_start += 1;
            plainly = false;
        }
        let mut value_end = value_stop(buf, value_start);
        // A tab inside a value: rare, taken byte by byte.
        while buf.get(value_end) == Some(&b'\t') {
            value_end = value_stop(buf, value_end + 1);
        }
        if buf.get(value_end..value_end + 2) != Some(b"\r\n")
            || value_end == value_start
            || matches!(buf[value_end - 1], b' ' | b'\t')
        {
            return None;
        }
        let field = Field::at(buf, name_start..name_end, value_start..value_end);
        head.fields.put(count, field, &mut tally, plainly);
        count += 1;
        i = value_end + 2;
    }
    if i > limits.max_header_bytes.min(MAX_HEAD) {
        return None;
    }
    (head.kinds, head.repeated) = head.fields.finish(count, tally);
    head.read_connection(buf);
    Some(i)
}

#[cfg(test)]
mod tests;
