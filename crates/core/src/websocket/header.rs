//! The frame header of RFC 6455 §5.2, parsed from a prefix of any length.
//!
//! Every byte sequence is the start of a syntactically valid header, so parsing never
//! fails: it says either what the header is or how many bytes it needs in total. That
//! total is known from the second byte on, which is what lets a caller gather a header
//! split across reads, one byte at a time if need be, holding at most
//! [`MAX_HEADER_LEN`] bytes. Whether the header is *allowed* is a separate question
//! (`validate.rs`).

use bytes::{BufMut, BytesMut};

/// The longest frame header: 2 bytes, a 64-bit length and a masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// The first reserved bit (RSV1), as it appears in [`FrameHeader::rsv`].
pub const RSV1: u8 = 0b100;
/// The second reserved bit (RSV2), as it appears in [`FrameHeader::rsv`].
pub const RSV2: u8 = 0b010;
/// The third reserved bit (RSV3), as it appears in [`FrameHeader::rsv`].
pub const RSV3: u8 = 0b001;

/// The longest payload a control frame may carry (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame's opcode (RFC 6455 §5.2, §11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// `0x0`: a further fragment of the message in progress.
    Continuation,
    /// `0x1`: the first frame of a text message.
    Text,
    /// `0x2`: the first frame of a binary message.
    Binary,
    /// `0x8`: the closing handshake.
    Close,
    /// `0x9`: a keep-alive or round-trip probe, answered by a Pong.
    Ping,
    /// `0xA`: the answer to a Ping (or an unsolicited heartbeat).
    Pong,
    /// `0x3`–`0x7` (data) or `0xB`–`0xF` (control): reserved, not defined by any RFC.
    Reserved(u8),
}

impl Opcode {
    /// The opcode of the low four bits of `bits`.
    pub fn from_bits(bits: u8) -> Opcode {
        match bits & 0x0F {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            other => Opcode::Reserved(other),
        }
    }

    /// The four-bit value on the wire.
    pub fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
            Opcode::Reserved(bits) => bits & 0x0F,
        }
    }

    /// Whether this is a control opcode (its high bit is set), reserved ones included.
    pub fn is_control(self) -> bool {
        self.bits() & 0x8 != 0
    }

    /// Whether this opcode starts a data message (`Text` or `Binary`).
    pub fn starts_message(self) -> bool {
        matches!(self, Opcode::Text | Opcode::Binary)
    }
}

/// A parsed frame header (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// FIN: this is the final frame of its message (always set on control frames).
    pub fin: bool,
    /// RSV1–RSV3 as three bits ([`RSV1`], [`RSV2`], [`RSV3`]); zero unless an extension
    /// gives them a meaning.
    pub rsv: u8,
    /// What the frame is.
    pub opcode: Opcode,
    /// The masking key, when MASK is set (frames from a client must be masked).
    pub mask: Option<[u8; 4]>,
    /// How many payload bytes follow the header.
    pub payload_len: u64,
}

/// What [`FrameHeader::parse`] found in a prefix of a stream at a frame boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderStatus {
    /// The prefix is shorter than the header: the header takes `needed` bytes in total
    /// (2 while fewer than 2 bytes are known, then exactly the header's length).
    Partial {
        /// The header's full length, as far as the prefix tells.
        needed: usize,
    },
    /// The header is complete; it took the first `len` bytes (2–14).
    Complete {
        /// The header.
        header: FrameHeader,
        /// Its length on the wire, which may exceed [`FrameHeader::encoded_len`] when
        /// the peer used a longer length form than needed.
        len: usize,
    },
}

impl FrameHeader {
    /// Parses the header at the start of `prefix` (bytes after it are ignored).
    ///
    /// # Examples
    /// ```
    /// use switchyard_core::websocket::{FrameHeader, HeaderStatus, Opcode};
    ///
    /// // An unmasked text frame of 5 bytes, then its payload.
    /// let HeaderStatus::Complete { header, len } = FrameHeader::parse(b"\x81\x05hello") else {
    ///     panic!("a two-byte header is complete");
    /// };
    /// assert_eq!((header.opcode, header.payload_len, len), (Opcode::Text, 5, 2));
    /// // With a 16-bit length the header needs 4 bytes, which the second byte tells.
    /// assert_eq!(FrameHeader::parse(b"\x82\x7e"), HeaderStatus::Partial { needed: 4 });
    /// ```
    #[inline]
    pub fn parse(prefix: &[u8]) -> HeaderStatus {
        let &[first, second, ref rest @ ..] = prefix else {
            return HeaderStatus::Partial { needed: 2 };
        };
        let needed = header_len(second);
        if prefix.len() < needed {
            return HeaderStatus::Partial { needed };
        }
        let (payload_len, rest) = match second & 0x7F {
            126 => (
                u64::from(u16::from_be_bytes([rest[0], rest[1]])),
                &rest[2..],
            ),
            127 => {
                let mut be = [0; 8];
                be.copy_from_slice(&rest[..8]);
                (u64::from_be_bytes(be), &rest[8..])
            }
            short => (u64::from(short), rest),
        };
        let mask = (second & 0x80 != 0).then(|| [rest[0], rest[1], rest[2], rest[3]]);
        let header = FrameHeader {
            fin: first & 0x80 != 0,
            rsv: (first >> 4) & 0b111,
            opcode: Opcode::from_bits(first),
            mask,
            payload_len,
        };
        HeaderStatus::Complete {
            header,
            len: needed,
        }
    }

    /// The length of this header when written by [`FrameHeader::write_to`] (the
    /// shortest length form).
    pub fn encoded_len(&self) -> usize {
        let length_bytes = match self.payload_len {
            0..=125 => 0,
            126..=0xFFFF => 2,
            _ => 8,
        };
        2 + length_bytes + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Appends this header to `out`, with the shortest length form (RFC 6455 §5.2
    /// requires it of senders).
    pub fn write_to(&self, out: &mut BytesMut) {
        let fin = if self.fin { 0x80 } else { 0 };
        out.put_u8(fin | (self.rsv & 0b111) << 4 | self.opcode.bits());
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        match self.payload_len {
            short @ 0..=125 => out.put_u8(mask_bit | short as u8),
            medium @ 126..=0xFFFF => {
                out.put_u8(mask_bit | 126);
                out.put_u16(medium as u16);
            }
            long => {
                out.put_u8(mask_bit | 127);
                out.put_u64(long);
            }
        }
        if let Some(key) = self.mask {
            out.put_slice(&key);
        }
    }
}

/// The length of a header whose second byte is `second`.
pub(crate) fn header_len(second: u8) -> usize {
    let length_bytes = match second & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + length_bytes + if second & 0x80 != 0 { 4 } else { 0 }
}

/// XORs `data` with `key`, as if `data` began `offset` bytes into the payload (RFC 6455
/// §5.3). Masking and unmasking are the same operation.
pub fn apply_mask(data: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, byte) in data.iter_mut().enumerate() {
        *byte ^= key[(offset + i) % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(bytes: &[u8]) -> (FrameHeader, usize) {
        match FrameHeader::parse(bytes) {
            HeaderStatus::Complete { header, len } => (header, len),
            partial => panic!("expected a complete header, got {partial:?}"),
        }
    }

    #[test]
    fn length_form_7_bit() {
        let (header, len) = complete(&[0x82, 125]);
        assert_eq!((header.payload_len, len, header.mask), (125, 2, None));
        assert_eq!(header.encoded_len(), 2);
    }

    #[test]
    fn length_form_16_bit() {
        assert_eq!(
            FrameHeader::parse(&[0x82, 126, 0x01]),
            HeaderStatus::Partial { needed: 4 }
        );
        let (header, len) = complete(&[0x82, 126, 0x01, 0x00]);
        assert_eq!((header.payload_len, len), (256, 4));
        assert_eq!(header.encoded_len(), 4);
    }

    #[test]
    fn length_form_64_bit() {
        let bytes = [0x02, 127, 0, 0, 0, 1, 0, 0, 0, 0];
        let (header, len) = complete(&bytes);
        assert_eq!((header.payload_len, len, header.fin), (1 << 32, 10, false));
        assert_eq!(header.encoded_len(), 10);
    }

    #[test]
    fn masked_64_bit_header_is_the_longest() {
        let mut bytes = vec![0x82, 0x80 | 127];
        bytes.extend_from_slice(&70_000u64.to_be_bytes());
        bytes.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(bytes.len(), MAX_HEADER_LEN);
        let (header, len) = complete(&bytes);
        assert_eq!((header.mask, len), (Some([1, 2, 3, 4]), 14));
    }

    #[test]
    fn non_minimal_length_form_is_read_as_sent() {
        let (header, len) = complete(&[0x89, 126, 0, 5]);
        assert_eq!(
            (header.opcode, header.payload_len, len),
            (Opcode::Ping, 5, 4)
        );
        assert_eq!(header.encoded_len(), 2, "written back in the shortest form");
    }

    #[test]
    fn split_header_needs_are_known_from_the_second_byte() {
        let mut bytes = vec![0x81, 0x80 | 126, 0x12, 0x34];
        bytes.extend_from_slice(&[9, 8, 7, 6]);
        let needs: Vec<_> = (0..bytes.len())
            .map(|n| match FrameHeader::parse(&bytes[..n]) {
                HeaderStatus::Partial { needed } => needed,
                complete => panic!("{n} bytes cannot be complete: {complete:?}"),
            })
            .collect();
        assert_eq!(needs, [2, 2, 8, 8, 8, 8, 8, 8]);
        let (header, len) = complete(&bytes);
        assert_eq!((header.payload_len, len), (0x1234, 8));
        assert_eq!(header.mask, Some([9, 8, 7, 6]));
    }

    #[test]
    fn write_to_round_trips_every_length_form() {
        for payload_len in [0, 125, 126, 0xFFFF, 0x1_0000, u64::MAX >> 1] {
            for mask in [None, Some([0xA, 0xB, 0xC, 0xD])] {
                let header = FrameHeader {
                    fin: payload_len % 2 == 0,
                    rsv: RSV1 | RSV3,
                    opcode: Opcode::Reserved(0x3),
                    mask,
                    payload_len,
                };
                let mut out = BytesMut::new();
                header.write_to(&mut out);
                assert_eq!(out.len(), header.encoded_len());
                assert_eq!(complete(&out), (header, out.len()));
            }
        }
    }

    #[test]
    fn opcode_bits_round_trip() {
        for bits in 0..16 {
            let opcode = Opcode::from_bits(bits);
            assert_eq!(opcode.bits(), bits);
            assert_eq!(opcode.is_control(), bits >= 8);
        }
    }

    #[test]
    fn masking_twice_restores_and_honours_the_offset() {
        let key = [1, 2, 3, 4];
        let mut whole = *b"abcdefgh";
        apply_mask(&mut whole, key, 0);
        let mut tail = *b"defgh";
        apply_mask(&mut tail, key, 3);
        assert_eq!(&whole[3..], &tail);
        apply_mask(&mut whole, key, 0);
        assert_eq!(&whole, b"abcdefgh");
    }
}
