//! Upgrade negotiation and `101 Switching Protocols` validation (docs/ARCHITECTURE.md
//! §Protocol rules, "Upgrade negotiation" and "101 detection").

use bytes::Bytes;

use crate::field_kind::{is_websocket, FieldKind};
use crate::head::{is_tchar, Head};

/// GUID of RFC 6455 §1.3, appended to `Sec-WebSocket-Key` for `Sec-WebSocket-Accept`.
/// (This is the RFC's value, checked against the RFC's own example below; see
/// docs/DECISIONS.md, "WebSocket GUID".)
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A client's proposal to switch protocols, as forwarded to the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Proposal {
    /// The `Upgrade` value forwarded: the offered protocols the route allows, in order.
    pub upgrade: Bytes,
    /// `Sec-WebSocket-Key`, when exactly one was sent.
    pub websocket_key: Option<Bytes>,
}

/// The protocol name of an `Upgrade` element (`websocket` in `websocket/13`).
fn protocol_name(element: &[u8]) -> &[u8] {
    element.split(|&b| b == b'/').next().unwrap_or(element)
}

fn is_protocol(element: &[u8]) -> bool {
    let mut parts = element.split(|&b| b == b'/');
    let name_ok = parts
        .next()
        .is_some_and(|n| !n.is_empty() && n.iter().all(|&b| is_tchar(b)));
    let version_ok = match (parts.next(), parts.next()) {
        (None, _) => true,
        (Some(v), None) => !v.is_empty() && v.iter().all(|&b| is_tchar(b)),
        _ => false,
    };
    name_ok && version_ok
}

/// Whether the route allows `element`. `h2c` never is, whatever the route says: an
/// upgrade to h2c through a proxy reaches the upstream's HTTP/2 handler unchecked.
pub(crate) fn allowed(element: &[u8], allow: &[String]) -> bool {
    let name = protocol_name(element);
    !name.eq_ignore_ascii_case(b"h2c")
        && allow
            .iter()
            .any(|a| name.eq_ignore_ascii_case(a.as_bytes()))
}

/// The proposal of an HTTP/1.1 request with `Upgrade` and a `Connection: upgrade`
/// token, reduced to the protocols `allow` permits. `None` when the request does not
/// propose an upgrade or offers nothing allowed: it is then forwarded as a plain request.
pub(crate) fn proposal(head: &Head, allow: &[String]) -> Option<Proposal> {
    if head.version != 1 || !head.connection.upgrade {
        return None;
    }
    // Views of the head by the fields' ranges (no search of where a slice lies).
    let websocket_key = || {
        let mut keys = head.fields_of(FieldKind::SecWebSocketKey);
        match (keys.next(), keys.next()) {
            (Some(k), None) => Some(head.bytes.slice(k.value())),
            _ => None,
        }
    };
    // The usual proposal, one `Upgrade: websocket`: what the list below finds for it,
    // without splitting it.
    let mut upgrades = head.fields_of(FieldKind::Upgrade);
    if let (Some(only), None) = (upgrades.next(), upgrades.next()) {
        if is_websocket(head.value(only)) {
            // `allowed`, for a name known to be `websocket`: a word compare per entry.
            let allowed = allow.iter().any(|a| is_websocket(a.as_bytes()));
            return allowed.then(|| Proposal {
                upgrade: head.bytes.slice(only.value()),
                websocket_key: websocket_key(),
            });
        }
    }
    // The offered protocols the route allows, each once (on the stack for the usual
    // one or two): `Upgrade: websocket` twice is forwarded as one `Upgrade: websocket`,
    // which origins that compare the value exactly accept.
    let mut kept: [&[u8]; 4] = [&[]; 4];
    let mut count = 0;
    let mut more: Vec<&[u8]> = Vec::new();
    for element in head.list_of(FieldKind::Upgrade) {
        let repeated = kept[..count]
            .iter()
            .chain(&more)
            .any(|seen| seen.eq_ignore_ascii_case(element));
        if is_protocol(element) && allowed(element, allow) && !repeated {
            if count < kept.len() {
                kept[count] = element;
                count += 1;
            } else {
                more.push(element);
            }
        }
    }
    let upgrade = match (&kept[..count], more.is_empty()) {
        ([], _) => return None,
        // The usual single protocol: a view of the head's bytes, no copy.
        ([only], true) => head.bytes.slice_ref(only),
        (first, _) => {
            let mut joined = Vec::new();
            for element in first.iter().chain(&more) {
                if !joined.is_empty() {
                    joined.extend_from_slice(b", ");
                }
                joined.extend_from_slice(element);
            }
            Bytes::from(joined)
        }
    };
    Some(Proposal {
        upgrade,
        websocket_key: websocket_key(),
    })
}

/// Why a `101` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SwitchError {
    NotProposed,
    NotHttp11,
    NoConnectionUpgrade,
    ProtocolNotOffered,
    BadAccept,
}

/// Validates a `101` against the proposal; returns the protocol switched to.
pub(crate) fn validate_switch(
    response: &Head,
    proposal: Option<&Proposal>,
) -> Result<String, SwitchError> {
    let proposal = proposal.ok_or(SwitchError::NotProposed)?;
    if response.version != 1 {
        return Err(SwitchError::NotHttp11);
    }
    if !response.connection.upgrade {
        return Err(SwitchError::NoConnectionUpgrade);
    }
    let chosen: Vec<&[u8]> = response.list("upgrade").collect();
    if chosen.is_empty() {
        return Err(SwitchError::ProtocolNotOffered);
    }
    let offered: Vec<&[u8]> = crate::head::split_list(&proposal.upgrade).collect();
    let was_offered = |c: &&[u8]| {
        offered
            .iter()
            .any(|o| protocol_name(o).eq_ignore_ascii_case(protocol_name(c)))
    };
    if !chosen.iter().all(was_offered) {
        return Err(SwitchError::ProtocolNotOffered);
    }
    if chosen
        .iter()
        .any(|c| protocol_name(c).eq_ignore_ascii_case(b"websocket"))
    {
        let key = proposal
            .websocket_key
            .as_ref()
            .ok_or(SwitchError::BadAccept)?;
        let mut accepts = response.values("sec-websocket-accept");
        match (accepts.next(), accepts.next()) {
            (Some(a), None) if a == websocket_accept(key).as_bytes() => {}
            _ => return Err(SwitchError::BadAccept),
        }
    }
    let mut protocol = String::new();
    for (i, c) in chosen.iter().enumerate() {
        if i > 0 {
            protocol.push_str(", ");
        }
        protocol.push_str(&String::from_utf8_lossy(c));
    }
    Ok(protocol)
}

/// `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + GUID)) (RFC 6455 §4.2.2).
///
/// ```
/// assert_eq!(
///     switchyard_core::websocket_accept(b"dGhlIHNhbXBsZSBub25jZQ=="),
///     "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
/// );
/// ```
pub fn websocket_accept(key: &[u8]) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(WEBSOCKET_GUID);
    base64(&sha.digest().bytes())
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }
}
