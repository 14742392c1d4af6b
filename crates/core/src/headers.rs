//! Hop-by-hop filtering (RFC 9110 §7.6.1; docs/ARCHITECTURE.md §Protocol rules, "Hop-by-hop
//! headers") and the heads the proxy writes.

use bytes::{BufMut, Bytes, BytesMut};

use crate::config::{Forwarding, PeerInfo};
use crate::head::{Field, Head};

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

/// Fields a `Connection` token may not remove: dropping them would change how the
/// upstream frames or routes the message (a known way to smuggle through a proxy).
const PROTECTED: &[&str] = &["host", "content-length"];

/// Fields the proxy writes itself towards the upstream (the client's are merged in).
const FORWARDING: &[&str] = &["x-forwarded-for", "x-forwarded-proto", "forwarded", "via"];

/// Whether `name` is in the fixed hop-by-hop list.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
}

fn is_one_of(name: &[u8], list: &[&str]) -> bool {
    list.iter().any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
}

/// The field names `Connection` nominates, gathered once per head (on the stack for the
/// usual handful).
pub(crate) fn connection_tokens(head: &Head) -> Tokens<'_> {
    let mut tokens = Tokens::default();
    for t in head.list("connection") {
        if tokens.len < tokens.small.len() {
            tokens.small[tokens.len] = t;
            tokens.len += 1;
        } else {
            tokens.spill.push(t);
        }
    }
    tokens
}

/// Tokens of `Connection` fields.
#[derive(Debug, Default)]
pub(crate) struct Tokens<'a> {
    small: [&'a [u8]; 8],
    len: usize,
    spill: Vec<&'a [u8]>,
}

impl Tokens<'_> {
    fn is_empty(&self) -> bool {
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
/// head's [`connection_tokens`]).
pub(crate) fn is_end_to_end(head: &Head, field: &Field, named: &Tokens<'_>) -> bool {
    let name = head.name(field);
    if is_hop_by_hop(name) {
        return false;
    }
    named.is_empty() || is_one_of(name, PROTECTED) || !named.contains(name)
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
/// and in order, forwarding fields merged, then framing and `Connection`.
/// `client` is the client's address as text (formatted once per connection).
pub(crate) fn upstream_request(
    head: &Head,
    fwd: &Forwarding,
    peer: &PeerInfo,
    client: Option<&str>,
    extras: &RequestExtras<'_>,
) -> Bytes {
    let mut out = BytesMut::with_capacity(head.bytes.len() + 128);
    out.put_slice(head.method());
    out.put_u8(b' ');
    out.put_slice(head.slice(&head.target));
    out.put_slice(b" HTTP/1.1\r\n");
    if extras.empty_host {
        out.put_slice(b"Host: \r\n");
    }
    let named = connection_tokens(head);
    for f in &head.fields {
        let name = head.name(f);
        if is_end_to_end(head, f, &named) && !is_one_of(name, FORWARDING) {
            put_field(&mut out, name, head.value(f));
        }
    }
    if fwd.x_forwarded_for {
        let mut value = join(head.values("x-forwarded-for"));
        if let Some(c) = client {
            if !value.is_empty() {
                value.extend_from_slice(b", ");
            }
            value.extend_from_slice(c.as_bytes());
        }
        if !value.is_empty() {
            put_field(&mut out, b"X-Forwarded-For", &value);
        }
    } else {
        keep_all(&mut out, head, &named, "x-forwarded-for");
    }
    if fwd.x_forwarded_proto {
        put_field(
            &mut out,
            b"X-Forwarded-Proto",
            peer.scheme.as_str().as_bytes(),
        );
    } else {
        keep_all(&mut out, head, &named, "x-forwarded-proto");
    }
    if fwd.forwarded {
        let mut value = join(head.values("forwarded"));
        if !value.is_empty() {
            value.extend_from_slice(b", ");
        }
        match peer.client_addr {
            Some(core::net::IpAddr::V6(a)) => {
                value.extend_from_slice(format!("for=\"[{a}]\"").as_bytes())
            }
            Some(a) => value.extend_from_slice(format!("for={a}").as_bytes()),
            None => value.extend_from_slice(b"for=unknown"),
        }
        value.extend_from_slice(b";proto=");
        value.extend_from_slice(peer.scheme.as_str().as_bytes());
        put_field(&mut out, b"Forwarded", &value);
    } else {
        keep_all(&mut out, head, &named, "forwarded");
    }
    if let Some(via) = &fwd.via {
        let mut value = join(head.values("via"));
        if !value.is_empty() {
            value.extend_from_slice(b", ");
        }
        value.extend_from_slice(b"1.1 ");
        value.extend_from_slice(via.as_bytes());
        put_field(&mut out, b"Via", &value);
    } else {
        keep_all(&mut out, head, &named, "via");
    }
    if extras.chunked {
        out.put_slice(b"Transfer-Encoding: chunked\r\n");
    }
    match extras.upgrade {
        Some(protocols) => {
            put_field(&mut out, b"Upgrade", protocols);
            out.put_slice(b"Connection: upgrade\r\n");
        }
        None => out.put_slice(b"Connection: keep-alive\r\n"),
    }
    out.put_slice(b"\r\n");
    out.freeze()
}

fn keep_all(out: &mut BytesMut, head: &Head, named: &Tokens<'_>, name: &str) {
    for f in &head.fields {
        if head.name(f).eq_ignore_ascii_case(name.as_bytes()) && is_end_to_end(head, f, named) {
            put_field(out, head.name(f), head.value(f));
        }
    }
}

fn join<'a>(values: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        if v.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(v);
    }
    out
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
    let mut out = BytesMut::with_capacity(head.bytes.len() + 64);
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
    let named = connection_tokens(head);
    for f in &head.fields {
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
