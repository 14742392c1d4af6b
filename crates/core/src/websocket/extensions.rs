//! Which RSV bits the extensions a `101` agreed on give a meaning to.

use super::header::{Opcode, RSV1};

/// The extensions the `101`'s `Sec-WebSocket-Extensions` agreed on, as far as they
/// decide which RSV bits a frame may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Extensions {
    /// No extension: every RSV bit must be clear.
    #[default]
    None,
    /// `permessage-deflate` (RFC 7692): RSV1 on the first frame of a data message.
    PermessageDeflate,
    /// An extension the proxy does not know: its use of the RSV bits cannot be checked,
    /// so they are not.
    Unknown,
}

impl Extensions {
    /// What the `Sec-WebSocket-Extensions` field values of a `101` agreed on (all of
    /// them, in order; no value means no extension). Commas inside quoted parameter
    /// values do not separate extensions.
    pub fn from_header_values<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Extensions {
        let mut found = Extensions::None;
        for value in values {
            for element in split_unquoted(value, b',') {
                let name = split_unquoted(element, b';').next().unwrap_or(element);
                let name = name.trim_ascii();
                if name.is_empty() {
                    continue;
                }
                if name.eq_ignore_ascii_case(b"permessage-deflate") && found == Extensions::None {
                    found = Extensions::PermessageDeflate;
                } else {
                    // Another extension (or permessage-deflate twice, which no valid
                    // handshake has): its bits are unknown.
                    return Extensions::Unknown;
                }
            }
        }
        found
    }

    /// The RSV bits a frame with `opcode` may carry.
    pub(crate) fn allowed_rsv(self, opcode: Opcode) -> u8 {
        match self {
            Extensions::None => 0,
            Extensions::PermessageDeflate if opcode.starts_message() => RSV1,
            Extensions::PermessageDeflate => 0,
            Extensions::Unknown => 0b111,
        }
    }
}

/// Splits `bytes` at `separator`s outside double-quoted strings (with `\` escapes).
fn split_unquoted(bytes: &[u8], separator: u8) -> impl Iterator<Item = &[u8]> {
    let mut quoted = false;
    let mut escaped = false;
    bytes.split(move |&b| {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        }
        !quoted && b == separator
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_from_the_101() {
        let of =
            |values: &[&str]| Extensions::from_header_values(values.iter().map(|v| v.as_bytes()));
        assert_eq!(of(&[]), Extensions::None);
        assert_eq!(of(&[" , "]), Extensions::None);
        assert_eq!(
            of(&["Permessage-Deflate; server_no_context_takeover"]),
            Extensions::PermessageDeflate
        );
        assert_eq!(of(&["permessage-deflate, x-custom"]), Extensions::Unknown);
        assert_eq!(of(&["permessage-deflate", "x-custom"]), Extensions::Unknown);
        assert_eq!(
            of(&["permessage-deflate; note=\"a, b\\\" c\""]),
            Extensions::PermessageDeflate
        );
    }
}
