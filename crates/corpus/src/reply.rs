//! The scripted upstream's answers, as bytes.

use crate::forwarded::Forwarded;
use crate::vector::Reply;

/// The GUID of RFC 6455 §1.3, appended to the key before hashing.
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The bytes the scripted upstream sends for `reply` to `request` (the same in the
/// core corpus and end to end).
///
/// # Examples
///
/// ```
/// use switchyard_corpus::{parse_forwarded, reply_bytes, Parsed, Reply};
///
/// let Parsed::Complete(request, _) =
///     parse_forwarded(b"GET /hi HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
/// else {
///     panic!("a well-formed request");
/// };
/// assert_eq!(
///     reply_bytes(Reply::Echo, &request),
///     b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n/hi"
/// );
/// ```
pub fn reply_bytes(reply: Reply, request: &Forwarded) -> Vec<u8> {
    match reply {
        Reply::Echo => {
            let target = request.line.split(' ').nth(1).unwrap_or("");
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{target}",
                target.len()
            )
            .into_bytes()
        }
        Reply::Raw(bytes) | Reply::RawThenClose(bytes) => bytes.to_vec(),
        Reply::WebSocket(after) => {
            let key = request
                .values("sec-websocket-key")
                .first()
                .map(|k| k.to_vec())
                .unwrap_or_default();
            let mut out = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                websocket_accept(&key)
            )
            .into_bytes();
            out.extend_from_slice(after);
            out
        }
    }
}

/// `Sec-WebSocket-Accept` for `key` (RFC 6455 §4.2.2), computed here rather than by the
/// proxy: a wrong accept in the proxy must not validate its own 101s.
fn websocket_accept(key: &[u8]) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(WEBSOCKET_GUID);
    data_encoding::BASE64.encode(&sha.digest().bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vector::{ACCEPT, KEY};

    #[test]
    fn accept_is_the_rfc_6455_example() {
        assert_eq!(websocket_accept(KEY.as_bytes()), ACCEPT);
    }
}
