//! The exact length of each head the proxy writes, worked out before writing it: a head
//! written into an allocation of exactly its size becomes `Bytes` as it is, where one
//! with room to spare needs a second allocation to be shared (`bytes` keeps the capacity
//! in a shared block). The writers in `headers.rs` check in debug builds that they wrote
//! exactly this much; were the two ever to disagree, the head would only cost that
//! allocation again (or a grown buffer), never be written differently.

use std::fmt::Write;
use std::net::IpAddr;

use crate::config::{Forwarding, PeerInfo};
use crate::field_kind::{FieldKind, FORWARDING};
use crate::head::{Field, Head};
use crate::headers::{is_end_to_end, ClientConnection, RequestExtras, Tokens};

/// `name: value` CRLF.
#[inline]
fn field_len(f: &Field) -> usize {
    f.line_len()
}

/// Length of the non-empty values of `kind` joined by `, `, and whether there was one.
fn joined_len(head: &Head, kind: FieldKind) -> (usize, bool) {
    let (mut len, mut any) = (0, false);
    for v in head.values_of(kind).filter(|v| !v.is_empty()) {
        len += v.len() + if any { 2 } else { 0 };
        any = true;
    }
    (len, any)
}

/// Length of the fields of `kind` kept as they are (`headers::keep_all`); inline, as the
/// usual head has none.
#[inline(always)]
fn kept_len(head: &Head, named: &Tokens<'_>, kind: FieldKind) -> usize {
    if head.has_kind(kind) {
        kept_len_of(head, named, kind)
    } else {
        0
    }
}

#[inline(never)]
fn kept_len_of(head: &Head, named: &Tokens<'_>, kind: FieldKind) -> usize {
    head.fields
        .iter()
        .filter(|f| f.kind == kind && is_end_to_end(head, f, named))
        .map(field_len)
        .sum()
}

/// Length of an address as `headers::put_ip` writes it (as `Display` does).
fn ip_len(addr: IpAddr) -> usize {
    match addr {
        IpAddr::V4(v4) => {
            let digits = |o: u8| 1 + usize::from(o >= 10) + usize::from(o >= 100);
            3 + v4.octets().into_iter().map(digits).sum::<usize>()
        }
        IpAddr::V6(v6) => {
            struct Count(usize);
            impl Write for Count {
                fn write_str(&mut self, s: &str) -> std::fmt::Result {
                    self.0 += s.len();
                    Ok(())
                }
            }
            let mut count = Count(0);
            let _ = write!(count, "{v6}");
            count.0
        }
    }
}

/// The length of `headers::upstream_request`'s head.
pub(crate) fn upstream_request_len(
    head: &Head,
    fwd: &Forwarding,
    peer: &PeerInfo,
    extras: &RequestExtras<'_>,
    named: &Tokens<'_>,
) -> usize {
    let mut len = head.first.len() + head.target.len() + " HTTP/1.1\r\n".len() + 1;
    if extras.empty_host {
        len += "Host: \r\n".len();
    }
    len += if named.is_empty() {
        head.fields.plain_len()
    } else {
        head.fields
            .iter()
            .filter(|f| is_end_to_end(head, f, named) && !f.kind.is_forwarding())
            .map(field_len)
            .sum::<usize>()
    };
    let scheme = peer.scheme.as_str().len();
    if fwd.x_forwarded_for {
        let (joined, any) = joined_len(head, FieldKind::XForwardedFor);
        if any || peer.client_addr.is_some() {
            len += "X-Forwarded-For: \r\n".len() + joined;
            if let Some(client) = peer.client_addr {
                len += ip_len(client) + if any { 2 } else { 0 };
            }
        }
    } else {
        len += kept_len(head, named, FieldKind::XForwardedFor);
    }
    len += if fwd.x_forwarded_proto {
        "X-Forwarded-Proto: \r\n".len() + scheme
    } else {
        kept_len(head, named, FieldKind::XForwardedProto)
    };
    if fwd.forwarded {
        let (joined, any) = joined_len(head, FieldKind::Forwarded);
        len += "Forwarded: ;proto=\r\n".len() + joined + if any { 2 } else { 0 } + scheme;
        len += match peer.client_addr {
            Some(a @ IpAddr::V6(_)) => "for=\"[]\"".len() + ip_len(a),
            Some(a) => "for=".len() + ip_len(a),
            None => "for=unknown".len(),
        };
    } else {
        len += kept_len(head, named, FieldKind::Forwarded);
    }
    len += match &fwd.via {
        Some(via) => {
            let (joined, any) = joined_len(head, FieldKind::Via);
            "Via: 1.1 \r\n".len() + joined + if any { 2 } else { 0 } + via.len()
        }
        None => kept_len(head, named, FieldKind::Via),
    };
    if extras.chunked {
        len += "Transfer-Encoding: chunked\r\n".len();
    }
    len += match extras.upgrade {
        Some(protocols) => "Upgrade: \r\nConnection: upgrade\r\n".len() + protocols.len(),
        None => "Connection: keep-alive\r\n".len(),
    };
    len + 2
}

/// The length of `headers::client_response`'s head.
pub(crate) fn client_response_len(
    head: &Head,
    chunked: bool,
    conn: ClientConnection,
    named: &Tokens<'_>,
) -> usize {
    let mut len = "HTTP/1.1 200 \r\n".len() + head.first.len();
    len += if named.is_empty() && head.kinds & FORWARDING == 0 {
        head.fields.plain_len()
    } else {
        head.fields
            .iter()
            .filter(|f| is_end_to_end(head, f, named))
            .map(field_len)
            .sum::<usize>()
    };
    if chunked {
        len += "Transfer-Encoding: chunked\r\n".len();
    }
    len += match conn {
        ClientConnection::Persistent | ClientConnection::Interim => 0,
        ClientConnection::KeepAlive10 => "Connection: keep-alive\r\n".len(),
        ClientConnection::Close => "Connection: close\r\n".len(),
        ClientConnection::Upgrade => {
            let upgrades: usize = head
                .values_of(FieldKind::Upgrade)
                .map(|v| "Upgrade: \r\n".len() + v.len())
                .sum();
            upgrades + "Connection: upgrade\r\n".len()
        }
    };
    len + 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Limits, Scheme};
    use crate::headers::{client_response, connection_tokens, upstream_request};
    use bytes::Bytes;
    use proptest::prelude::*;

    /// Fields the writers treat each their own way, with values empty or not.
    fn fields() -> impl Strategy<Value = String> {
        let field = prop_oneof![
            Just("Host: a.example"),
            Just("X-Forwarded-For: 10.0.0.1"),
            Just("X-Forwarded-For:"),
            Just("x-forwarded-proto: gopher"),
            Just("Forwarded: for=10.0.0.2"),
            Just("Via: 1.0 edge"),
            Just("Connection: keep-alive, x-drop"),
            Just("Connection: close"),
            Just("X-Drop: 1"),
            Just("Upgrade: websocket"),
            Just("Content-Length: 0"),
            Just("Accept:   spaced   "),
            Just("User-Agent: t"),
        ];
        proptest::collection::vec(field, 0..8)
            .prop_map(|lines| lines.iter().map(|l| format!("{l}\r\n")).collect())
    }

    proptest! {
        /// The length worked out first is the length written, whatever the head, the
        /// forwarding settings and the client.
        #[test]
        fn the_sizes_are_the_lengths_written(
            fields in fields(),
            xff in any::<bool>(),
            xfp in any::<bool>(),
            forwarded in any::<bool>(),
            via in proptest::option::of(Just("proxy".to_string())),
            client in prop_oneof![
                Just(None),
                Just(Some("192.0.2.7".parse::<IpAddr>().unwrap())),
                Just(Some("10.200.0.1".parse::<IpAddr>().unwrap())),
                Just(Some("2001:db8::1".parse::<IpAddr>().unwrap())),
            ],
            https in any::<bool>(),
            chunked in any::<bool>(),
            upgrade in proptest::option::of(Just(&b"websocket"[..])),
            empty_host in any::<bool>(),
            conn in prop_oneof![
                Just(ClientConnection::Persistent),
                Just(ClientConnection::KeepAlive10),
                Just(ClientConnection::Close),
                Just(ClientConnection::Upgrade),
                Just(ClientConnection::Interim),
            ],
        ) {
            let limits = Limits::default();
            let request = format!("GET /p?q HTTP/1.1\r\n{fields}\r\n");
            let head = crate::head::parse_request(Bytes::from(request), &limits).unwrap();
            let fwd = Forwarding { x_forwarded_for: xff, x_forwarded_proto: xfp, forwarded, via };
            let scheme = if https { Scheme::Https } else { Scheme::Http };
            let peer = PeerInfo { client_addr: client, scheme };
            let extras = RequestExtras { chunked, upgrade, empty_host };
            let named = connection_tokens(&head);
            prop_assert_eq!(
                upstream_request(&head, &fwd, &peer, &extras).len(),
                upstream_request_len(&head, &fwd, &peer, &extras, &named)
            );
            let response = format!("HTTP/1.1 200 Fine\r\n{fields}\r\n");
            let head = crate::head::parse_response(Bytes::from(response), &limits).unwrap();
            let named = connection_tokens(&head);
            prop_assert_eq!(
                client_response(&head, chunked, conn).len(),
                client_response_len(&head, chunked, conn, &named)
            );
        }
    }
}
