//! [`FrameParser`]: whole frames out of a buffer, for the receiving end of a test.
//!
//! The tunnel never needs whole frames (it forwards payloads unseen), but a test
//! standing where a peer would does: "the client only ever receives whole, valid
//! frames" is asserted by parsing what it received. The parser applies the same rules
//! as [`FrameTracker`](super::FrameTracker) and borrows payloads from the caller's
//! buffer, as httparse borrows heads.

use super::header::{apply_mask, FrameHeader, HeaderStatus};
use super::validate::{Rules, Validator, Violation};
use crate::io::Side;

/// A whole frame at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WholeFrame<'a> {
    /// The header.
    pub header: FrameHeader,
    /// The header's length on the wire.
    pub header_len: usize,
    /// The payload as sent (still masked, if the header has a key).
    pub payload: &'a [u8],
}

impl WholeFrame<'_> {
    /// The frame's length on the wire: header and payload.
    pub fn wire_len(&self) -> usize {
        self.header_len + self.payload.len()
    }

    /// The payload, unmasked.
    pub fn unmasked_payload(&self) -> Vec<u8> {
        let mut payload = self.payload.to_vec();
        if let Some(key) = self.header.mask {
            apply_mask(&mut payload, key, 0);
        }
        payload
    }
}

/// Parses the frames sent by one side, whole, checking the same rules as the tunnel.
///
/// # Examples
/// ```
/// use switchyard_core::websocket::{encode, FrameParser, Opcode, Rules};
/// use switchyard_core::Side;
///
/// // What an upstream received: a masked Ping, and the start of another frame.
/// let mut received = encode::ping(Side::Upstream, b"p1", [7; 4]).unwrap().to_vec();
/// received.extend_from_slice(b"\x81");
/// let mut parser = FrameParser::new(Side::Client, Rules::default());
/// let frame = parser.parse(&received).unwrap().expect("a whole frame");
/// assert_eq!(frame.header.opcode, Opcode::Ping);
/// assert_eq!(frame.unmasked_payload(), b"p1");
/// let rest = &received[frame.wire_len()..];
/// assert_eq!(parser.parse(rest), Ok(None), "only part of a frame");
/// ```
#[derive(Debug, Clone)]
pub struct FrameParser {
    validator: Validator,
}

impl FrameParser {
    /// A parser for the frames sent by `from`.
    pub fn new(from: Side, rules: Rules) -> Self {
        FrameParser {
            validator: Validator::new(from, rules),
        }
    }

    /// The frame at the start of `buf`: `Ok(None)` when `buf` holds only part of one
    /// (show it again with more), `Err` as soon as the part seen breaks a rule.
    pub fn parse<'a>(&mut self, buf: &'a [u8]) -> Result<Option<WholeFrame<'a>>, Violation> {
        let (header, header_len) = match FrameHeader::parse(buf) {
            HeaderStatus::Partial { .. } => {
                self.validator.check_prefix(buf)?;
                return Ok(None);
            }
            HeaderStatus::Complete { header, len } => (header, len),
        };
        self.validator.check_prefix(&buf[..header_len])?;
        let available = (buf.len() - header_len) as u64;
        if available < header.payload_len {
            return Ok(None);
        }
        self.validator.commit(&header);
        // Fits: it is at most what `buf` holds.
        let end = header_len + header.payload_len as usize;
        Ok(Some(WholeFrame {
            header,
            header_len,
            payload: &buf[header_len..end],
        }))
    }

    /// Every whole frame at the start of `buf`, and how many bytes they take; the rest
    /// is part of a frame.
    pub fn parse_all<'a>(
        &mut self,
        mut buf: &'a [u8],
    ) -> Result<(Vec<WholeFrame<'a>>, usize), Violation> {
        let (mut frames, mut used) = (Vec::new(), 0);
        while let Some(frame) = self.parse(buf)? {
            used += frame.wire_len();
            buf = &buf[frame.wire_len()..];
            frames.push(frame);
        }
        Ok((frames, used))
    }

    /// Whether a fragmented data message has begun and not yet ended.
    pub fn in_fragmented_message(&self) -> bool {
        self.validator.in_message()
    }
}
