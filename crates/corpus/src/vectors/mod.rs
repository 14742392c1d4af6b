//! The vectors, one file per class of rule, and the shapes they share.
//!
//! Sources of inspiration: RFC 9112 §2–§7 and RFC 9110 §5, §7.6; smuggler's and
//! SMUGGLEtest's Transfer-Encoding mutations; Http11Probe's smuggling and compliance
//! tests; HTTP Garden's discrepancy classes; nginx-tests' proxy and chunked tests; the
//! upgrade-smuggling advisories CVE-2019-17567 (mod_proxy_wstunnel tunnels without a
//! 101), CVE-2024-23326 (a non-101 answer accepted as an upgrade) and h2csmuggler.

use crate::vector::{Reply, Side, Up, Vector, KEY, SMUGGLED};

mod chunked;
mod control;
mod framing;
mod head;
mod limits;
mod response;
mod upgrade;

/// Every vector of the corpus, class by class.
pub(crate) fn all() -> Vec<Vector> {
    [
        control::vectors(),
        framing::vectors(),
        head::vectors(),
        chunked::vectors(),
        limits::vectors(),
        upgrade::vectors(),
        response::vectors(),
    ]
    .concat()
}

/// The parts, one after the other.
pub(super) fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A request head with `lines` (each without CRLF) after `GET / HTTP/1.1` and `Host: a`.
pub(super) fn get(lines: &[&str]) -> Vec<u8> {
    let mut out = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for l in lines {
        out.extend_from_slice(l.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A head-level rejection: `status`, nothing reaches the upstream, and [`SMUGGLED`]
/// sent right after is never forwarded.
pub(super) fn rejected(
    name: &'static str,
    class: &'static str,
    head: &[u8],
    status: u16,
) -> Vector {
    Vector::new(name, class, Side::Request, cat(&[head, SMUGGLED]))
        .st(&[status])
        .up(Up::Nothing)
}

/// A rejection inside a `POST /c` chunked body: the head was already forwarded, the
/// request is abandoned (never completed towards the upstream), 400, and [`SMUGGLED`]
/// never forwarded.
pub(super) fn bad_chunked(name: &'static str, class: &'static str, body: &[u8]) -> Vector {
    let head: &[u8] = b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    Vector::new(name, class, Side::Request, cat(&[head, body, SMUGGLED]))
        .st(&[400])
        .up(Up::Abandoned(&[], "POST /c HTTP/1.1"))
}

/// A WebSocket handshake on `path` with the corpus [`KEY`] and these `Connection` and
/// `Upgrade` values; `extra` holds more field lines, each with its CRLF.
pub(super) fn ws_request(path: &str, connection: &str, upgrade: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: a\r\nConnection: {connection}\r\nUpgrade: {upgrade}\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// A hostile upstream answer to `GET / HTTP/1.1`: 502, and `MARKER` never reaches the client.
pub(super) fn bad_response(
    name: &'static str,
    class: &'static str,
    response: &'static [u8],
) -> Vector {
    Vector::new(name, class, Side::Response, get(&[]))
        .replies(&[Reply::Raw(response)])
        .st(&[502])
        .up(Up::Requests(&["GET / HTTP/1.1"]))
        .never(&[b"MARKER"])
}

/// A hostile `101` to a WebSocket handshake on `/ws` that carries a frame after its head:
/// 502, and neither the 101 nor the frame reaches the client.
pub(super) fn bad_switch(name: &'static str, response: &'static [u8]) -> Vector {
    Vector::new(
        name,
        "101 validation",
        Side::Upgrade,
        ws_request("/ws", "Upgrade", "websocket", ""),
    )
    .replies(&[Reply::Raw(response)])
    .st(&[502])
    .up(Up::Requests(&["GET /ws HTTP/1.1"]))
    .never(&[b"101", b"MARKER"])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The figures the README's "Security" section quotes: a vector added or removed
    /// must be counted there too.
    #[test]
    fn inventory_matches_the_readme() {
        let vectors = all();
        let mut names: Vec<_> = vectors.iter().map(|v| v.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), vectors.len(), "vector names are unique");
        let hostile = |side: Side| {
            vectors
                .iter()
                .filter(|v| v.is_hostile() && v.side == side)
                .count()
        };
        assert_eq!(vectors.len(), 161);
        assert_eq!(
            (
                hostile(Side::Request),
                hostile(Side::Response),
                hostile(Side::Upgrade)
            ),
            (103, 26, 24)
        );
    }
}
