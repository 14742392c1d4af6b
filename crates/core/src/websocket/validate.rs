//! The rules a frame header must follow in one direction (RFC 6455 §5.2–§5.5, RFC 7692
//! §6 for RSV1), checked on a header's prefix as soon as the bytes that decide each
//! rule are known, so a broken frame is refused before the rest of it arrives.

use std::fmt;

use super::encode::CloseCode;
use super::extensions::Extensions;
use super::header::{FrameHeader, HeaderStatus, Opcode, MAX_CONTROL_PAYLOAD};
use crate::io::Side;

/// A protocol error in a peer's frames: the frame must not be forwarded and both sides
/// get Close [`CloseCode::PROTOCOL_ERROR`] (1002). Each rule has its own value so the
/// event that ends the tunnel can name it ([`Violation::rule`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Violation {
    /// A client frame without MASK (RFC 6455 §5.1: a server must close on it).
    UnmaskedClientFrame,
    /// An upstream frame with MASK set (RFC 6455 §5.1: a client must close on it).
    MaskedUpstreamFrame,
    /// Opcode `0x3`–`0x7` or `0xB`–`0xF`.
    ReservedOpcode {
        /// The opcode's four bits.
        opcode: u8,
    },
    /// RSV bits that no negotiated extension gave a meaning to.
    ReservedBits {
        /// The RSV bits of the frame ([`RSV1`](super::RSV1) etc.).
        rsv: u8,
    },
    /// A control frame whose payload is over 125 bytes.
    ControlFrameTooLong,
    /// A control frame with FIN clear (control frames cannot be fragmented).
    FragmentedControlFrame,
    /// A continuation frame while no fragmented message is in progress.
    ContinuationWithoutMessage,
    /// A Text or Binary frame while a fragmented message is still in progress.
    DataFrameInsideMessage,
    /// A 64-bit payload length with its most significant bit set.
    LengthTopBitSet,
    /// A Close frame with a 1-byte payload: too short for a close code.
    CloseCodeTruncated,
}

impl Violation {
    /// The rule's name, for events and logs (`snake_case`, stable).
    pub fn rule(self) -> &'static str {
        match self {
            Violation::UnmaskedClientFrame => "client_frame_unmasked",
            Violation::MaskedUpstreamFrame => "upstream_frame_masked",
            Violation::ReservedOpcode { .. } => "reserved_opcode",
            Violation::ReservedBits { .. } => "reserved_bits",
            Violation::ControlFrameTooLong => "control_frame_too_long",
            Violation::FragmentedControlFrame => "control_frame_fragmented",
            Violation::ContinuationWithoutMessage => "continuation_without_message",
            Violation::DataFrameInsideMessage => "data_frame_inside_message",
            Violation::LengthTopBitSet => "length_top_bit_set",
            Violation::CloseCodeTruncated => "close_code_truncated",
        }
    }

    /// The close code both sides are sent: always 1002 (protocol error).
    pub fn close_code(self) -> CloseCode {
        CloseCode::PROTOCOL_ERROR
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::ReservedOpcode { opcode } => write!(f, "reserved opcode {opcode:#x}"),
            Violation::ReservedBits { rsv } => write!(f, "reserved bits {rsv:#05b} set"),
            other => f.write_str(&other.rule().replace('_', " ")),
        }
    }
}

impl std::error::Error for Violation {}

/// How one direction's frames are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rules {
    /// Whether frames are checked at all (`ws_validate`). Off, the frames are still
    /// followed and counted, and nothing is ever a [`Violation`].
    pub validate: bool,
    /// What the handshake negotiated.
    pub extensions: Extensions,
}

impl Default for Rules {
    /// Validation on, no extensions.
    fn default() -> Self {
        Rules {
            validate: true,
            extensions: Extensions::None,
        }
    }
}

/// The rules of one direction, with the message state they depend on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Validator {
    /// The side whose frames are checked; `None` when nothing is (`Rules::validate`
    /// off), which is the only case where the side does not matter. One byte where the
    /// side and the flag took two: a tunnel holds two validators, and every byte of an
    /// idle tunnel counts.
    checked: Option<Side>,
    extensions: Extensions,
    /// A fragmented message has begun and its final frame has not been seen.
    in_message: bool,
}

impl Validator {
    pub(crate) fn new(from: Side, rules: Rules) -> Self {
        Validator {
            checked: rules.validate.then_some(from),
            extensions: rules.extensions,
            in_message: false,
        }
    }

    pub(crate) fn in_message(&self) -> bool {
        self.in_message
    }

    /// Checks every rule that `prefix` (the first bytes of a header, at most the whole
    /// header) decides. Rules are checked in header order, so the first one broken is
    /// the one reported. Idempotent: the same prefix gives the same answer.
    pub(crate) fn check_prefix(&self, prefix: &[u8]) -> Result<(), Violation> {
        let Some(from) = self.checked else {
            return Ok(());
        };
        let Some(&first) = prefix.first() else {
            return Ok(());
        };
        let opcode = Opcode::from_bits(first);
        let fin = first & 0x80 != 0;
        let rsv = (first >> 4) & 0b111;
        if let Opcode::Reserved(bits) = opcode {
            return Err(Violation::ReservedOpcode { opcode: bits });
        }
        if rsv & !self.extensions.allowed_rsv(opcode) != 0 {
            return Err(Violation::ReservedBits { rsv });
        }
        if opcode.is_control() && !fin {
            return Err(Violation::FragmentedControlFrame);
        }
        if opcode == Opcode::Continuation && !self.in_message {
            return Err(Violation::ContinuationWithoutMessage);
        }
        if opcode.starts_message() && self.in_message {
            return Err(Violation::DataFrameInsideMessage);
        }
        let Some(&second) = prefix.get(1) else {
            return Ok(());
        };
        let masked = second & 0x80 != 0;
        match (from, masked) {
            (Side::Client, false) => return Err(Violation::UnmaskedClientFrame),
            (Side::Upstream, true) => return Err(Violation::MaskedUpstreamFrame),
            _ => {}
        }
        // The top bit of a 64-bit length is its first length byte's.
        if second & 0x7F == 127 && prefix.get(2).is_some_and(|&b| b & 0x80 != 0) {
            return Err(Violation::LengthTopBitSet);
        }
        let HeaderStatus::Complete { header, .. } = FrameHeader::parse(prefix) else {
            return Ok(());
        };
        if opcode.is_control() && header.payload_len > MAX_CONTROL_PAYLOAD as u64 {
            return Err(Violation::ControlFrameTooLong);
        }
        if opcode == Opcode::Close && header.payload_len == 1 {
            return Err(Violation::CloseCodeTruncated);
        }
        Ok(())
    }

    /// [`Validator::check_prefix`] of a whole header already parsed: the same rules in
    /// the same order, without parsing it again (the fast path of every data frame).
    pub(crate) fn check_header(&self, header: &FrameHeader) -> Result<(), Violation> {
        let Some(from) = self.checked else {
            return Ok(());
        };
        let opcode = header.opcode;
        if let Opcode::Reserved(bits) = opcode {
            return Err(Violation::ReservedOpcode { opcode: bits });
        }
        if header.rsv & !self.extensions.allowed_rsv(opcode) != 0 {
            return Err(Violation::ReservedBits { rsv: header.rsv });
        }
        if opcode.is_control() && !header.fin {
            return Err(Violation::FragmentedControlFrame);
        }
        if opcode == Opcode::Continuation && !self.in_message {
            return Err(Violation::ContinuationWithoutMessage);
        }
        if opcode.starts_message() && self.in_message {
            return Err(Violation::DataFrameInsideMessage);
        }
        match (from, header.mask.is_some()) {
            (Side::Client, false) => return Err(Violation::UnmaskedClientFrame),
            (Side::Upstream, true) => return Err(Violation::MaskedUpstreamFrame),
            _ => {}
        }
        // Only the 64-bit form can carry it.
        if header.payload_len >> 63 != 0 {
            return Err(Violation::LengthTopBitSet);
        }
        if opcode.is_control() && header.payload_len > MAX_CONTROL_PAYLOAD as u64 {
            return Err(Violation::ControlFrameTooLong);
        }
        if opcode == Opcode::Close && header.payload_len == 1 {
            return Err(Violation::CloseCodeTruncated);
        }
        Ok(())
    }

    /// Takes a complete header (already checked) into the message state. Returns true
    /// when the frame ends a data message.
    pub(crate) fn commit(&mut self, header: &FrameHeader) -> bool {
        match header.opcode {
            Opcode::Text | Opcode::Binary => {
                // Unvalidated, a data frame inside a message abandons the old one.
                self.in_message = !header.fin;
                header.fin
            }
            Opcode::Continuation if header.fin => std::mem::take(&mut self.in_message),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::websocket::header::RSV1;
    use proptest::strategy::Strategy;

    const FROM_CLIENT: Side = Side::Client;
    const FROM_UPSTREAM: Side = Side::Upstream;

    fn check(from: Side, extensions: Extensions, prefix: &[u8]) -> Result<(), Violation> {
        let rules = Rules {
            validate: true,
            extensions,
        };
        Validator::new(from, rules).check_prefix(prefix)
    }

    fn in_message(from: Side) -> Validator {
        let mut validator = Validator::new(from, Rules::default());
        let first = FrameHeader::parse(&[0x01, 0x00]);
        let HeaderStatus::Complete { header, .. } = first else {
            unreachable!()
        };
        assert!(!validator.commit(&header));
        assert!(validator.in_message());
        validator
    }

    #[test]
    fn client_frames_must_be_masked() {
        assert_eq!(
            check(FROM_CLIENT, Extensions::None, &[0x81, 0x05]),
            Err(Violation::UnmaskedClientFrame)
        );
        assert_eq!(check(FROM_CLIENT, Extensions::None, &[0x81, 0x85]), Ok(()));
    }

    #[test]
    fn upstream_frames_must_be_unmasked() {
        assert_eq!(
            check(FROM_UPSTREAM, Extensions::None, &[0x81, 0x85]),
            Err(Violation::MaskedUpstreamFrame)
        );
        assert_eq!(
            check(FROM_UPSTREAM, Extensions::None, &[0x81, 0x05]),
            Ok(())
        );
    }

    #[test]
    fn reserved_opcodes_are_refused_from_the_first_byte() {
        for opcode in (0x3..=0x7).chain(0xB..=0xF) {
            assert_eq!(
                check(FROM_UPSTREAM, Extensions::Unknown, &[0x80 | opcode]),
                Err(Violation::ReservedOpcode { opcode })
            );
        }
    }

    #[test]
    fn control_frames_over_125_bytes_are_refused() {
        assert_eq!(check(FROM_UPSTREAM, Extensions::None, &[0x89, 125]), Ok(()));
        assert_eq!(
            check(FROM_UPSTREAM, Extensions::None, &[0x89, 126, 0, 126]),
            Err(Violation::ControlFrameTooLong)
        );
        // The longer length form alone is not the fault; the length is.
        assert_eq!(
            check(FROM_UPSTREAM, Extensions::None, &[0x8A, 126, 0, 5]),
            Ok(())
        );
    }

    #[test]
    fn fragmented_control_frames_are_refused() {
        for opcode in [0x8, 0x9, 0xA] {
            assert_eq!(
                check(FROM_UPSTREAM, Extensions::None, &[opcode]),
                Err(Violation::FragmentedControlFrame)
            );
        }
    }

    #[test]
    fn continuation_without_message_is_refused() {
        assert_eq!(
            check(FROM_UPSTREAM, Extensions::None, &[0x80]),
            Err(Violation::ContinuationWithoutMessage)
        );
        assert_eq!(
            in_message(FROM_UPSTREAM).check_prefix(&[0x80, 0x00]),
            Ok(())
        );
    }

    #[test]
    fn data_frame_inside_message_is_refused() {
        let validator = in_message(FROM_UPSTREAM);
        assert_eq!(
            validator.check_prefix(&[0x82]),
            Err(Violation::DataFrameInsideMessage)
        );
        // Control frames may sit between the fragments.
        assert_eq!(validator.check_prefix(&[0x89, 0x00]), Ok(()));
    }

    #[test]
    fn reserved_bits_need_a_negotiated_extension() {
        for rsv in 1..8u8 {
            assert_eq!(
                check(FROM_UPSTREAM, Extensions::None, &[0x81 | rsv << 4]),
                Err(Violation::ReservedBits { rsv })
            );
            assert_eq!(
                check(FROM_UPSTREAM, Extensions::Unknown, &[0x81 | rsv << 4]),
                Ok(())
            );
        }
    }

    #[test]
    fn permessage_deflate_permits_rsv1_on_the_first_frame_of_a_message_only() {
        let deflate = Extensions::PermessageDeflate;
        assert_eq!(check(FROM_UPSTREAM, deflate, &[0xC1, 0x00]), Ok(()));
        assert_eq!(check(FROM_UPSTREAM, deflate, &[0x42, 0x00]), Ok(()));
        let rsv1 = Err(Violation::ReservedBits { rsv: RSV1 });
        assert_eq!(
            check(FROM_UPSTREAM, deflate, &[0xC9, 0x00]),
            rsv1,
            "on a Ping"
        );
        let mut validator = Validator::new(
            FROM_UPSTREAM,
            Rules {
                validate: true,
                extensions: deflate,
            },
        );
        validator.in_message = true;
        assert_eq!(validator.check_prefix(&[0xC0]), rsv1, "on a continuation");
        assert_eq!(
            check(FROM_UPSTREAM, deflate, &[0xA1]),
            Err(Violation::ReservedBits { rsv: 0b010 }),
            "RSV2 is not deflate's"
        );
    }

    #[test]
    fn length_with_top_bit_set_is_refused() {
        assert_eq!(
            check(FROM_UPSTREAM, Extensions::None, &[0x82, 127, 0x80]),
            Err(Violation::LengthTopBitSet)
        );
        assert_eq!(
            check(FROM_UPSTREAM, Extensions::None, &[0x82, 127, 0x7F]),
            Ok(())
        );
    }

    #[test]
    fn close_with_a_one_byte_payload_is_refused() {
        assert_eq!(
            check(FROM_UPSTREAM, Extensions::None, &[0x88, 1]),
            Err(Violation::CloseCodeTruncated)
        );
        assert_eq!(check(FROM_UPSTREAM, Extensions::None, &[0x88, 0]), Ok(()));
        assert_eq!(check(FROM_UPSTREAM, Extensions::None, &[0x88, 2]), Ok(()));
    }

    #[test]
    fn validation_off_refuses_nothing() {
        let rules = Rules {
            validate: false,
            extensions: Extensions::None,
        };
        let validator = Validator::new(FROM_CLIENT, rules);
        for prefix in [&[0x0F, 0x05][..], &[0x70, 127, 0xFF], &[0x08, 1], &[0x80]] {
            assert_eq!(validator.check_prefix(prefix), Ok(()));
        }
    }

    #[test]
    fn every_violation_maps_to_close_1002_and_a_distinct_rule() {
        let all = [
            Violation::UnmaskedClientFrame,
            Violation::MaskedUpstreamFrame,
            Violation::ReservedOpcode { opcode: 3 },
            Violation::ReservedBits { rsv: 1 },
            Violation::ControlFrameTooLong,
            Violation::FragmentedControlFrame,
            Violation::ContinuationWithoutMessage,
            Violation::DataFrameInsideMessage,
            Violation::LengthTopBitSet,
            Violation::CloseCodeTruncated,
        ];
        let rules: std::collections::HashSet<_> = all.iter().map(|v| v.rule()).collect();
        assert_eq!(rules.len(), all.len());
        assert!(all.iter().all(|v| v.close_code().get() == 1002));
        assert_eq!(
            Violation::ReservedOpcode { opcode: 0xB }.to_string(),
            "reserved opcode 0xb"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        /// A whole header checked as parsed (the fast path) or as bytes (the held path)
        /// breaks the same rule, or none, in every message state and direction.
        #[test]
        fn a_parsed_header_is_checked_as_its_bytes_are(
            first in proptest::prop_oneof![
                1 => proptest::prelude::any::<u8>(),
                // Mostly frames that get as far as the length rules.
                3 => (
                    proptest::prelude::any::<bool>(),
                    proptest::sample::select(vec![0u8, 1, 2, 8, 9, 10]),
                )
                    .prop_map(|(fin, opcode)| u8::from(fin) << 7 | opcode),
            ],
            masked in proptest::prelude::any::<bool>(),
            length in proptest::prop_oneof![0..126u8, proptest::strategy::Just(126), proptest::strategy::Just(127)],
            rest in proptest::collection::vec(proptest::prelude::any::<u8>(), 12),
            from_client in proptest::prelude::any::<bool>(),
            deflate in proptest::prelude::any::<bool>(),
            validate in proptest::prelude::any::<bool>(),
            message in proptest::prelude::any::<bool>(),
        ) {
            let from = if from_client { FROM_CLIENT } else { FROM_UPSTREAM };
            let extensions = if deflate { Extensions::PermessageDeflate } else { Extensions::None };
            let mut validator = Validator::new(from, Rules { validate, extensions });
            validator.in_message = message;
            let mut bytes = vec![first, u8::from(masked) << 7 | length];
            bytes.extend_from_slice(&rest);
            if let HeaderStatus::Complete { header, len } = FrameHeader::parse(&bytes) {
                proptest::prop_assert_eq!(
                    validator.check_header(&header),
                    validator.check_prefix(&bytes[..len])
                );
            }
        }
    }
}
