//! Frames of the proxy's own: Ping, Pong, Close (and data frames, for scripted peers).
//!
//! A frame is masked exactly when it goes to the upstream (RFC 6455 §5.1: a client
//! masks, a server does not), so every function takes the side it is written to and a
//! masking key. The key comes from the caller, who draws it from a source the peers
//! cannot predict; the core has no randomness. Towards the client the key is unused.

use std::fmt;

use bytes::{Bytes, BytesMut};

use super::header::{apply_mask, FrameHeader, Opcode, MAX_CONTROL_PAYLOAD};
use crate::io::Side;

/// A close code an endpoint may send in a Close frame (RFC 6455 §7.4, IANA registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: the purpose of the connection is fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: an endpoint is going away (a shutdown, or the other peer stopped answering).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: a protocol error.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1011: an unexpected condition (the upstream failed).
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);

    /// `code` if an endpoint may send it: 1000–1003, 1007–1014 and 3000–4999. The others
    /// are reserved (1004), only reported locally and never sent (1005, 1006, 1015), or
    /// unassigned.
    pub fn new(code: u16) -> Option<CloseCode> {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999).then_some(CloseCode(code))
    }

    /// The code's number.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A control frame's payload was over 125 bytes (RFC 6455 §5.5). The caller's mistake:
/// peers cannot cause it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadTooLong {
    /// The length given.
    pub len: usize,
}

impl fmt::Display for PayloadTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a control frame payload of {} bytes is over {MAX_CONTROL_PAYLOAD}",
            self.len
        )
    }
}

impl std::error::Error for PayloadTooLong {}

/// A Ping towards `to` carrying `payload` (at most 125 bytes), masked with `key` when
/// `to` is the upstream.
///
/// # Examples
/// ```
/// use switchyard_core::websocket::encode;
/// use switchyard_core::Side;
///
/// let ping = encode::ping(Side::Client, b"p1", [0; 4]).unwrap();
/// assert_eq!(&ping[..], b"\x89\x02p1");
/// let masked = encode::ping(Side::Upstream, b"p1", [1, 2, 3, 4]).unwrap();
/// assert_eq!(&masked[..], &[0x89, 0x82, 1, 2, 3, 4, b'p' ^ 1, b'1' ^ 2]);
/// ```
pub fn ping(to: Side, payload: &[u8], key: [u8; 4]) -> Result<Bytes, PayloadTooLong> {
    control(to, Opcode::Ping, payload, key)
}

/// A Pong towards `to` carrying `payload` (at most 125 bytes), masked with `key` when
/// `to` is the upstream.
pub fn pong(to: Side, payload: &[u8], key: [u8; 4]) -> Result<Bytes, PayloadTooLong> {
    control(to, Opcode::Pong, payload, key)
}

/// The longest reason a Close frame has room for: 125 bytes less the code's two.
pub const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// A Close towards `to` with `code` and `reason`, masked with `key` when `to` is the
/// upstream. A reason longer than [`MAX_CLOSE_REASON`] bytes is cut at the last UTF-8
/// character boundary that fits, so the frame stays valid.
pub fn close(to: Side, code: CloseCode, reason: &str, key: [u8; 4]) -> Bytes {
    close_with(to, code, reason, key)
}

/// [`close`] with the reason `reason`'s `Display` writes, straight into the frame's
/// payload: the proxy's own reasons are built as they are written, with no `String`.
pub(crate) fn close_with(
    to: Side,
    code: CloseCode,
    reason: impl fmt::Display,
    key: [u8; 4],
) -> Bytes {
    let mut payload = [0; MAX_CONTROL_PAYLOAD];
    payload[..2].copy_from_slice(&code.get().to_be_bytes());
    let mut text = Cut {
        room: &mut payload[2..],
        len: 0,
        cut: false,
    };
    // An error only says the reason was cut.
    let _ = fmt::write(&mut text, format_args!("{reason}"));
    let end = 2 + text.len;
    frame(to, true, Opcode::Close, &payload[..end], key)
}

/// Text written into a fixed room: a piece that does not fit is cut at the last
/// character boundary that does, and nothing is written after it, so that the text
/// stays a prefix of the whole (a later, shorter piece could fit after the cut).
struct Cut<'a> {
    room: &'a mut [u8],
    len: usize,
    cut: bool,
}

impl fmt::Write for Cut<'_> {
    fn write_str(&mut self, piece: &str) -> fmt::Result {
        if self.cut {
            return Err(fmt::Error);
        }
        let mut end = piece.len().min(self.room.len() - self.len);
        while !piece.is_char_boundary(end) {
            end -= 1;
        }
        self.room[self.len..self.len + end].copy_from_slice(&piece.as_bytes()[..end]);
        self.len += end;
        self.cut = end < piece.len();
        if self.cut {
            return Err(fmt::Error);
        }
        Ok(())
    }
}

/// Any frame towards `to` (a data frame or fragment of a scripted peer, say), masked
/// with `key` when `to` is the upstream. Nothing is checked: a test may build frames
/// that break rules on purpose.
pub fn frame(to: Side, fin: bool, opcode: Opcode, payload: &[u8], key: [u8; 4]) -> Bytes {
    let header = FrameHeader {
        fin,
        rsv: 0,
        opcode,
        mask: (to == Side::Upstream).then_some(key),
        payload_len: payload.len() as u64,
    };
    frame_with_header(&header, payload)
}

/// The frame of `header` with `payload`, masked with the header's key if it has one.
/// The header's `payload_len` is the caller's to get right (a test may want it wrong).
pub fn frame_with_header(header: &FrameHeader, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(header.encoded_len() + payload.len());
    header.write_to(&mut out);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = header.mask {
        apply_mask(&mut out[start..], key, 0);
    }
    out.freeze()
}

fn control(
    to: Side,
    opcode: Opcode,
    payload: &[u8],
    key: [u8; 4],
) -> Result<Bytes, PayloadTooLong> {
    if payload.len() > MAX_CONTROL_PAYLOAD {
        return Err(PayloadTooLong { len: payload.len() });
    }
    Ok(frame(to, true, opcode, payload, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_towards_the_client_are_unmasked() {
        let ping = ping(Side::Client, b"abc", [9; 4]).unwrap();
        assert_eq!(&ping[..], b"\x89\x03abc");
        let pong = pong(Side::Client, b"", [9; 4]).unwrap();
        assert_eq!(&pong[..], b"\x8A\x00");
    }

    #[test]
    fn frames_towards_the_upstream_are_masked_with_the_given_key() {
        let close = close(
            Side::Upstream,
            CloseCode::GOING_AWAY,
            "",
            [0xFF, 0, 0xFF, 0],
        );
        // 1001 = 0x03E9, masked with FF 00.
        assert_eq!(
            &close[..],
            &[0x88, 0x82, 0xFF, 0, 0xFF, 0, 0x03 ^ 0xFF, 0xE9]
        );
    }

    #[test]
    fn control_payload_over_125_bytes_is_refused() {
        assert!(ping(Side::Client, &[0; 125], [0; 4]).is_ok());
        assert_eq!(
            ping(Side::Client, &[0; 126], [0; 4]),
            Err(PayloadTooLong { len: 126 })
        );
    }

    #[test]
    fn close_reason_is_cut_at_a_character_boundary() {
        // 61 two-byte characters: 122 bytes fit, the 62nd would make 124 > 123.
        let reason = "é".repeat(70);
        let frame = close(Side::Client, CloseCode::NORMAL, &reason, [0; 4]);
        assert_eq!(frame[1] as usize, 2 + 122);
        assert!(std::str::from_utf8(&frame[4..]).is_ok());
        let ascii = "x".repeat(200);
        let frame = close(Side::Client, CloseCode::NORMAL, &ascii, [0; 4]);
        assert_eq!(frame.len(), 2 + MAX_CONTROL_PAYLOAD);
    }

    /// A reason written in pieces, each with its own `write_str`, as `format_args!`
    /// and nested `Display`s write; it goes on after an error, as a `Display` that
    /// ignores one would.
    struct Pieces(Vec<String>);

    impl fmt::Display for Pieces {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            for piece in &self.0 {
                let _ = f.write_str(piece);
            }
            Ok(())
        }
    }

    proptest::proptest! {
        /// However the reason is split into pieces (multi-byte characters across the
        /// cut, a short piece after a long one), the frame carries the longest prefix
        /// of the whole text that ends on a character boundary and fits.
        #[test]
        fn a_reason_written_in_pieces_is_cut_as_the_whole_text(
            pieces in proptest::collection::vec("[a-zé€😀 ]{0,70}", 0..6),
            to_upstream: bool,
        ) {
            let to = if to_upstream { Side::Upstream } else { Side::Client };
            let whole = pieces.concat();
            let mut end = whole.len().min(MAX_CLOSE_REASON);
            while !whole.is_char_boundary(end) {
                end -= 1;
            }
            let mut expected = vec![0x03, 0xE9];
            expected.extend_from_slice(&whole.as_bytes()[..end]);
            let key = [1, 2, 3, 4];
            proptest::prop_assert_eq!(
                close_with(to, CloseCode::GOING_AWAY, Pieces(pieces), key),
                frame(to, true, Opcode::Close, &expected, key)
            );
        }
    }

    #[test]
    fn close_codes_that_may_not_be_sent_are_refused() {
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            assert_eq!(CloseCode::new(code), None, "{code}");
        }
        for code in [1000, 1003, 1007, 1014, 3000, 4999] {
            assert_eq!(CloseCode::new(code).map(CloseCode::get), Some(code));
        }
    }
}
