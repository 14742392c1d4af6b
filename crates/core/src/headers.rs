//! Hop-by-hop filtering (RFC 9110 §7.6.1; docs/ARCHITECTURE.md §Protocol rules, "Hop-by-hop
//! headers") and the heads the proxy writes.

use std::net::IpAddr;

use bytes::{BufMut, Bytes, BytesMut};

use crate::config::{Forwarding, PeerInfo, Scheme};
use crate::field_kind::FieldKind;
use crate::head::{split_list, Field, Head};
use crate::head_size;

/// Fields that describe one connection and are never forwarded, in either direction.
/// `HTTP2-Settings` belongs to the `h2c` upgrade, which is never forwarded.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

/// Whether `name` is in the fixed hop-by-hop list.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    FieldKind::of(name).is_hop_by_hop()
}

/// The field names `Connection` nominates that are not removed anyway, gathered once per
/// head (on the stack for the usual handful). The usual tokens (`keep-alive`, `upgrade`)
/// name hop-by-hop fields, which go whatever `Connection` says, so they are left out and
/// most heads have none to look for.
#[inline(always)]
pub(crate) fn connection_tokens(head: &Head) -> Tokens<'_> {
    let mut tokens = Tokens::default();
    if head.connection.names_fields {
        gather_tokens(head, &mut tokens);
    }
    tokens
}

/// [`connection_tokens`] of a head whose `Connection` may name fields (out of line:
/// the usual head has none, and the caller then only makes the empty list).
#[inline(never)]
fn gather_tokens<'a>(head: &'a Head, tokens: &mut Tokens<'a>) {
    for t in head.values_of(FieldKind::Connection).flat_map(split_list) {
        if FieldKind::of(t).is_hop_by_hop() {
            continue;
        }
        if tokens.len < tokens.small.len() {
            tokens.small[tokens.len] = t;
            tokens.len += 1;
        } else {
            tokens.spill.push(t);
        }
    }
}

/// Tokens of `Connection` fields.
#[derive(Debug, Default)]
pub(crate) struct Tokens<'a> {
    small: [&'a [u8]; 8],
    len: usize,
    spill: Vec<&'a [u8]>,
}

impl Tokens<'_> {
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn contains(&self, name: &[u8]) -> bool {
        self.small[..self.len]
            .iter()
            .chain(&self.spill)
            .any(|t| t.eq_ignore_ascii_case(name))
    }
}

/// Whether `field` of `head` is end-to-end: not hop-by-hop and not among `named` (the
/// head's [`connection_tokens`]), unless protected (`Host`, `Content-Length`).
#[inline]
pub(crate) fn is_end_to_end(head: &Head, field: &Field, named: &Tokens<'_>) -> bool {
    if field.kind.is_hop_by_hop() {
        return false;
    }
    named.is_empty() || field.kind.is_protected() || !named.contains(head.name(field))
}

fn put_field(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// What the proxy adds to a forwarded request head after the end-to-end fields.
#[derive(Debug, Default)]
pub(crate) struct RequestExtras<'a> {
    /// `Transfer-Encoding: chunked` (the body is re-encoded).
    pub chunked: bool,
    /// `Upgrade: <value>` + `Connection: upgrade`; otherwise `Connection: keep-alive`.
    pub upgrade: Option<&'a [u8]>,
    /// `Host:` with an empty value (an HTTP/1.0 request without one).
    pub empty_host: bool,
}

/// The request head sent to the upstream: always HTTP/1.1, end-to-end fields byte-exact
/// and in order, forwarding fields merged, then framing and `Connection`. Written into
/// one buffer of exactly its size ([`head_size`]); runs of end-to-end fields are copied
/// as they lie in the client's head, with their line endings, one copy per run.
pub(crate) fn upstream_request(
    head: &Head,
    fwd: &Forwarding,
    peer: &PeerInfo,
    extras: &RequestExtras<'_>,
) -> Bytes {
    let named = connection_tokens(head);
    let len = head_size::upstream_request_len(head, fwd, peer, extras, &named);
    let mut out = BytesMut::with_capacity(len);
    out.put_slice(head.method());
    out.put_u8(b' ');
    out.put_slice(head.slice(&head.target));
    out.put_slice(b" HTTP/1.1\r\n");
    if extras.empty_host {
        out.put_slice(b"Host: \r\n");
    }
    match head.fields.plain_runs() {
        // No field nominated by `Connection`: the plain fields are the ones forwarded.
        Some(runs) if named.is_empty() => runs.for_each(|run| out.put_slice(&head.bytes[run])),
        _ => copy_fields(&mut out, head, |f| {
            is_end_to_end(head, f, &named) && !f.kind.is_forwarding()
        }),
    }
    if fwd.x_forwarded_for {
        let client = peer.client_addr;
        let earlier = head
            .values_of(FieldKind::XForwardedFor)
            .any(|v| !v.is_empty());
        if earlier || client.is_some() {
            out.put_slice(b"X-Forwarded-For: ");
            let before = out.len();
            join_into(&mut out, head.values_of(FieldKind::XForwardedFor));
            if let Some(client) = client {
                if out.len() > before {
                    out.put_slice(b", ");
                }
                put_ip(&mut out, client);
            }
            out.put_slice(b"\r\n");
        }
    } else {
        keep_all(&mut out, head, &named, FieldKind::XForwardedFor);
    }
    if fwd.x_forwarded_proto {
        out.put_slice(match peer.scheme {
            Scheme::Http => b"X-Forwarded-Proto: http\r\n",
            Scheme::Https => b"X-Forwarded-Proto: https\r\n",
        });
    } else {
        keep_all(&mut out, head, &named, FieldKind::XForwardedProto);
    }
    if fwd.forwarded {
        out.put_slice(b"Forwarded: ");
        if join_into(&mut out, head.values_of(FieldKind::Forwarded)) {
            out.put_slice(b", ");
        }
        match peer.client_addr {
            Some(core::net::IpAddr::V6(a)) => {
                out.put_slice(b"for=\"[");
                put_ip(&mut out, core::net::IpAddr::V6(a));
                out.put_slice(b"]\"");
            }
            Some(a) => {
                out.put_slice(b"for=");
                put_ip(&mut out, a);
            }
            None => out.put_slice(b"for=unknown"),
        }
        out.put_slice(b";proto=");
        out.put_slice(peer.scheme.as_str().as_bytes());
        out.put_slice(b"\r\n");
    } else {
        keep_all(&mut out, head, &named, FieldKind::Forwarded);
    }
    if let Some(via) = &fwd.via {
        out.put_slice(b"Via: ");
        if join_into(&mut out, head.values_of(FieldKind::Via)) {
            out.put_slice(b", ");
        }
        out.put_slice(b"1.1 ");
        out.put_slice(via.as_bytes());
        out.put_slice(b"\r\n");
    } else {
        keep_all(&mut out, head, &named, FieldKind::Via);
    }
    if extras.chunked {
        out.put_slice(b"Transfer-Encoding: chunked\r\n");
    }
    match extras.upgrade {
        Some(protocols) => {
            out.put_slice(b"Upgrade: ");
            out.put_slice(protocols);
            out.put_slice(b"\r\nConnection: upgrade\r\n\r\n");
        }
        None => out.put_slice(b"Connection: keep-alive\r\n\r\n"),
    }
    debug_assert_eq!(out.len(), len, "head_size::upstream_request_len");
    out.freeze()
}

/// Writes the fields `keep` selects as `name: value` CRLF. A field the peer already
/// wrote that way (one space after the colon, nothing after the value) is copied as it
/// lies in its head, and a run of such fields in one copy: most heads are a few copies.
fn copy_fields(out: &mut BytesMut, head: &Head, keep: impl Fn(&Field) -> bool) {
    let bytes = &head.bytes[..];
    let mut run = 0..0;
    for field in head.fields.iter().filter(|f| keep(f)) {
        let (name, value) = (field.name(), field.value());
        let written_plainly = value.start == name.end + 2
            && bytes[name.end + 1] == b' '
            && bytes.get(value.end..value.end + 2) == Some(&b"\r\n"[..]);
        if written_plainly {
            let line = name.start..value.end + 2;
            if run.end != line.start || run.is_empty() {
                out.put_slice(&bytes[run]);
                run = line;
            } else {
                run.end = line.end;
            }
        } else {
            out.put_slice(&bytes[run]);
            run = 0..0;
            put_field(out, head.name(field), head.value(field));
        }
    }
    out.put_slice(&bytes[run]);
}

/// Writes the end-to-end fields of `kind` as they are (a forwarding field the proxy does
/// not write itself); inline, as the usual head has none.
#[inline(always)]
fn keep_all(out: &mut BytesMut, head: &Head, named: &Tokens<'_>, kind: FieldKind) {
    if head.has_kind(kind) {
        keep_all_of(out, head, named, kind);
    }
}

#[inline(never)]
fn keep_all_of(out: &mut BytesMut, head: &Head, named: &Tokens<'_>, kind: FieldKind) {
    for f in head.fields.iter() {
        if f.kind == kind && is_end_to_end(head, f, named) {
            put_field(out, head.name(f), head.value(f));
        }
    }
}

/// Writes the non-empty `values` separated by `, `; whether any was written.
fn join_into<'a>(out: &mut BytesMut, values: impl Iterator<Item = &'a [u8]>) -> bool {
    let mut any = false;
    for v in values.filter(|v| !v.is_empty()) {
        if any {
            out.put_slice(b", ");
        }
        out.put_slice(v);
        any = true;
    }
    any
}

/// Each byte's decimal digits (padded to three) and how many there are.
pub(crate) const OCTET_DIGITS: [([u8; 3], u8); 256] = {
    let mut table = [([0; 3], 0); 256];
    let mut n = 0;
    while n < 256 {
        let b = n as u8;
        table[n] = if b >= 100 {
            ([b'0' + b / 100, b'0' + b / 10 % 10, b'0' + b % 10], 3)
        } else if b >= 10 {
            ([b'0' + b / 10, b'0' + b % 10, 0], 2)
        } else {
            ([b'0' + b, 0, 0], 1)
        };
        n += 1;
    }
    table
};

/// Writes an address as `Display` would, without the formatting machinery for the
/// common IPv4 case (it runs once per forwarded request).
fn put_ip(out: &mut BytesMut, addr: IpAddr) {
    match addr {
        IpAddr::V4(v4) => {
            // Each octet's digits from a table, three bytes written and its length kept:
            // the last octet starts at most at byte 12, so the three always fit.
            let mut text = [0u8; 15];
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                let (digits, count) = OCTET_DIGITS[usize::from(octet)];
                text[len..len + 3].copy_from_slice(&digits);
                len += usize::from(count);
            }
            out.put_slice(&text[..len]);
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write;
            let mut text = String::with_capacity(39);
            let _ = write!(text, "{v6}");
            out.put_slice(text.as_bytes());
        }
    }
}

/// How the proxy ends a response head towards the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientConnection {
    /// Nothing (HTTP/1.1 persistence is the default).
    Persistent,
    /// `Connection: keep-alive` (an HTTP/1.0 client that asked for it).
    KeepAlive10,
    /// `Connection: close`.
    Close,
    /// `Upgrade: <value>` + `Connection: upgrade` (a validated 101).
    Upgrade,
    /// A 1xx interim response: no connection field.
    Interim,
}

/// The response head sent to the client: end-to-end fields byte-exact and in order.
pub(crate) fn client_response(head: &Head, chunked: bool, conn: ClientConnection) -> Bytes {
    let named = connection_tokens(head);
    let len = head_size::client_response_len(head, chunked, conn, &named);
    let mut out = BytesMut::with_capacity(len);
    out.put_slice(b"HTTP/1.1 ");
    // A status is three digits (checked when parsed).
    let status = head.status;
    out.put_slice(&[
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ]);
    out.put_u8(b' ');
    out.put_slice(head.slice(&head.first));
    out.put_slice(b"\r\n");
    for f in head.fields.iter() {
        if is_end_to_end(head, f, &named) {
            put_field(&mut out, head.name(f), head.value(f));
        }
    }
    if chunked {
        out.put_slice(b"Transfer-Encoding: chunked\r\n");
    }
    match conn {
        ClientConnection::Persistent | ClientConnection::Interim => {}
        ClientConnection::KeepAlive10 => out.put_slice(b"Connection: keep-alive\r\n"),
        ClientConnection::Close => out.put_slice(b"Connection: close\r\n"),
        ClientConnection::Upgrade => {
            for v in head.values("upgrade") {
                put_field(&mut out, b"Upgrade", v);
            }
            out.put_slice(b"Connection: upgrade\r\n");
        }
    }
    out.put_slice(b"\r\n");
    debug_assert_eq!(out.len(), len, "head_size::client_response_len");
    out.freeze()
}

/// Reason phrase for a status the proxy answers itself.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// A complete response the proxy sends itself before closing.
pub(crate) fn canned(status: u16) -> Bytes {
    let reason = reason(status);
    Bytes::from(format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reason}\n",
        reason.len() + 1
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use proptest::prelude::*;

    /// Lines written as `name: value` CRLF exactly, of every kind the writer treats its
    /// own way.
    const PLAINLY: [&str; 9] = [
        "Host: a",
        "Accept: */*",
        "X-A: 1",
        "X-Empty: ",
        "Connection: keep-alive",
        "Upgrade: websocket",
        "X-Forwarded-For: 10.0.0.1",
        "Via: 1.0 edge",
        "TE: trailers",
    ];

    proptest! {
        /// An address is written as `Display` writes it.
        #[test]
        fn an_address_is_written_as_display_writes_it(octets in any::<[u8; 4]>(), v6 in any::<u128>()) {
            for addr in [IpAddr::from(octets), IpAddr::from(v6.to_be_bytes())] {
                let mut out = BytesMut::new();
                put_ip(&mut out, addr);
                let shown = addr.to_string();
                prop_assert_eq!(&out[..], shown.as_bytes());
            }
        }

        /// The plain fields copied as the runs found while parsing are exactly the
        /// forwarded fields written one by one; and the runs are there whenever every
        /// line is written plainly in few enough pieces.
        #[test]
        fn plain_runs_are_the_forwarded_fields_written_one_by_one(
            lines in proptest::collection::vec(
                prop_oneof![
                    8 => proptest::sample::select(&PLAINLY[..]),
                    1 => Just("Accept:   spaced   "),
                    1 => Just("X-Tight:v"),
                    1 => Just("X-Wide:  w"),
                ],
                0..30,
            ),
        ) {
            let fields: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
            let request = Bytes::from(format!("GET / HTTP/1.1\r\n{fields}\r\n"));
            let head = crate::head::parse_request(request, &Limits::default()).unwrap();
            let named = connection_tokens(&head);
            prop_assert!(named.is_empty());
            let mut by_field = BytesMut::new();
            copy_fields(&mut by_field, &head, |f| {
                is_end_to_end(&head, f, &named) && !f.kind.is_forwarding()
            });
            let by_run = head.fields.plain_runs().map(|runs| {
                let mut by_run = BytesMut::new();
                runs.for_each(|run| by_run.put_slice(&head.bytes[run]));
                by_run
            });
            match by_run {
                Some(by_run) => prop_assert_eq!(by_run, by_field),
                None => {
                    let pieces = lines
                        .iter()
                        .filter(|l| !FieldKind::of(l.split(':').next().unwrap().as_bytes()).is_plain())
                        .count()
                        + 1;
                    let plainly = lines.iter().all(|l| PLAINLY.contains(l));
                    prop_assert!(!plainly || pieces > 8, "no runs for {:?}", lines);
                }
            }
        }
    }
}
