//! The header fields the core itself looks at, recognised once per field when a head is
//! parsed: every later question ("is there a `Transfer-Encoding`?", "is this field
//! hop-by-hop?") is a byte compare or a bit test instead of a pass over every field
//! name with a case-insensitive string compare.

/// What a field's name is to the core. `Other` is every name the core has no rule for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum FieldKind {
    Other,
    // Hop-by-hop (`headers::HOP_BY_HOP`).
    Connection,
    KeepAlive,
    ProxyAuthenticate,
    ProxyAuthorization,
    ProxyConnection,
    Te,
    Trailer,
    Trailers,
    TransferEncoding,
    Upgrade,
    Http2Settings,
    // Routing and framing.
    Host,
    ContentLength,
    /// `Content_Length` or `Transfer_Encoding` (any case, `_` for some `-`): a framing
    /// field to upstreams that map `_` to `-` (CGI, WSGI).
    FramingLookalike,
    // Written by the proxy itself towards the upstream (`headers::FORWARDING`).
    XForwardedFor,
    XForwardedProto,
    Forwarded,
    Via,
    // WebSocket handshake.
    SecWebSocketKey,
    SecWebSocketAccept,
    SecWebSocketExtensions,
}

impl FieldKind {
    /// The kind of the field called `name` (case-insensitive). Names are told apart by
    /// length and first letter, so at most one full comparison is made (two for the
    /// 7-byte `upgrade` / 17-byte `transfer-encoding` families sharing a letter: none do).
    pub(crate) fn of(name: &[u8]) -> FieldKind {
        use FieldKind::*;
        let Some(&first) = name.first() else {
            return Other;
        };
        let (known, kind): (&str, FieldKind) = match (name.len(), first | 0x20) {
            (2, b't') => ("te", Te),
            (3, b'v') => ("via", Via),
            (4, b'h') => ("host", Host),
            (7, b'u') => ("upgrade", Upgrade),
            (7, b't') => ("trailer", Trailer),
            (8, b't') => ("trailers", Trailers),
            (9, b'f') => ("forwarded", Forwarded),
            (10, b'c') => ("connection", Connection),
            (10, b'k') => ("keep-alive", KeepAlive),
            (14, b'c') => ("content-length", ContentLength),
            (14, b'h') => ("http2-settings", Http2Settings),
            (15, b'x') => ("x-forwarded-for", XForwardedFor),
            (16, b'p') => ("proxy-connection", ProxyConnection),
            (17, b't') => ("transfer-encoding", TransferEncoding),
            (17, b'x') => ("x-forwarded-proto", XForwardedProto),
            (17, b's') => ("sec-websocket-key", SecWebSocketKey),
            (18, b'p') => ("proxy-authenticate", ProxyAuthenticate),
            (19, b'p') => ("proxy-authorization", ProxyAuthorization),
            (20, b's') => ("sec-websocket-accept", SecWebSocketAccept),
            (24, b's') => ("sec-websocket-extensions", SecWebSocketExtensions),
            _ => return Other,
        };
        if name.eq_ignore_ascii_case(known.as_bytes()) {
            kind
        } else if matches!(kind, ContentLength | TransferEncoding) && is_lookalike(name) {
            FramingLookalike
        } else {
            Other
        }
    }

    /// This kind's bit in a head's set of kinds present.
    pub(crate) fn bit(self) -> u32 {
        1 << self as u8
    }

    /// Whether a field of this kind describes one connection and is never forwarded.
    pub(crate) fn is_hop_by_hop(self) -> bool {
        use FieldKind::*;
        matches!(
            self,
            Connection
                | KeepAlive
                | ProxyAuthenticate
                | ProxyAuthorization
                | ProxyConnection
                | Te
                | Trailer
                | Trailers
                | TransferEncoding
                | Upgrade
                | Http2Settings
        )
    }

    /// Whether the proxy writes fields of this kind itself towards the upstream.
    pub(crate) fn is_forwarding(self) -> bool {
        use FieldKind::*;
        matches!(self, XForwardedFor | XForwardedProto | Forwarded | Via)
    }

    /// Fields a `Connection` token may not remove: dropping them would change how the
    /// upstream frames or routes the message (a known way to smuggle through a proxy).
    pub(crate) fn is_protected(self) -> bool {
        matches!(self, FieldKind::Host | FieldKind::ContentLength)
    }
}

/// What a head's `Connection` fields say, read once when the head is parsed (keep-alive,
/// upgrade and the removal of nominated fields each asked it again before).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ConnectionOptions {
    /// A `close` token.
    pub close: bool,
    /// A `keep-alive` token.
    pub keep_alive: bool,
    /// An `upgrade` token.
    pub upgrade: bool,
    /// A token that is not the name of a hop-by-hop field: it may nominate an
    /// end-to-end field for removal (`headers::connection_tokens`).
    pub names_fields: bool,
}

impl ConnectionOptions {
    /// The options of the comma-separated `values` of a head's `Connection` fields.
    pub(crate) fn of<'a>(values: impl Iterator<Item = &'a [u8]>) -> Self {
        let mut options = ConnectionOptions::default();
        for token in values.flat_map(crate::head::split_list) {
            match FieldKind::of(token) {
                FieldKind::KeepAlive => options.keep_alive = true,
                FieldKind::Upgrade => options.upgrade = true,
                kind if kind.is_hop_by_hop() => {}
                _ if token.eq_ignore_ascii_case(b"close") => {
                    options.close = true;
                    options.names_fields = true;
                }
                _ => options.names_fields = true,
            }
        }
        options
    }
}

/// `Content_Length` / `Transfer_Encoding` with `_` for any `-` (at least one `_`).
fn is_lookalike(name: &[u8]) -> bool {
    name.contains(&b'_')
        && ["content-length", "transfer-encoding"]
            .iter()
            .any(|framing| {
                name.len() == framing.len()
                    && name.iter().zip(framing.bytes()).all(|(&a, b)| {
                        let a = if a == b'_' {
                            b'-'
                        } else {
                            a.to_ascii_lowercase()
                        };
                        a == b
                    })
            })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Lower-case names of the known kinds: what [`FieldKind::of`] must agree with.
    const NAMES: &[(&str, FieldKind)] = &[
        ("connection", FieldKind::Connection),
        ("keep-alive", FieldKind::KeepAlive),
        ("proxy-authenticate", FieldKind::ProxyAuthenticate),
        ("proxy-authorization", FieldKind::ProxyAuthorization),
        ("proxy-connection", FieldKind::ProxyConnection),
        ("te", FieldKind::Te),
        ("trailer", FieldKind::Trailer),
        ("trailers", FieldKind::Trailers),
        ("transfer-encoding", FieldKind::TransferEncoding),
        ("upgrade", FieldKind::Upgrade),
        ("http2-settings", FieldKind::Http2Settings),
        ("host", FieldKind::Host),
        ("content-length", FieldKind::ContentLength),
        ("x-forwarded-for", FieldKind::XForwardedFor),
        ("x-forwarded-proto", FieldKind::XForwardedProto),
        ("forwarded", FieldKind::Forwarded),
        ("via", FieldKind::Via),
        ("sec-websocket-key", FieldKind::SecWebSocketKey),
        ("sec-websocket-accept", FieldKind::SecWebSocketAccept),
        (
            "sec-websocket-extensions",
            FieldKind::SecWebSocketExtensions,
        ),
    ];

    /// What `FieldKind::of` must agree with: the plain, slow reading of each rule.
    fn slow_kind(name: &[u8]) -> FieldKind {
        NAMES
            .iter()
            .find(|(known, _)| name.eq_ignore_ascii_case(known.as_bytes()))
            .map(|&(_, kind)| kind)
            .unwrap_or_else(|| {
                if name.contains(&b'_') && is_lookalike(name) {
                    FieldKind::FramingLookalike
                } else {
                    FieldKind::Other
                }
            })
    }

    fn name_like() -> impl Strategy<Value = Vec<u8>> {
        let known = proptest::sample::select(
            NAMES
                .iter()
                .map(|(n, _)| n.as_bytes().to_vec())
                .chain([b"content_length".to_vec(), b"transfer_encoding".to_vec()])
                .collect::<Vec<_>>(),
        );
        prop_oneof![
            // A known name with its case changed and maybe one byte replaced.
            (known, any::<u64>(), any::<Option<(usize, u8)>>()).prop_map(|(mut n, case, swap)| {
                for (i, b) in n.iter_mut().enumerate() {
                    if case >> (i % 64) & 1 == 1 {
                        *b = b.to_ascii_uppercase();
                    }
                }
                if let Some((at, byte)) = swap {
                    let at = at % n.len();
                    n[at] = byte;
                }
                n
            }),
            proptest::collection::vec(any::<u8>(), 0..30),
        ]
    }

    proptest! {
        #[test]
        fn field_kinds_agree_with_a_plain_comparison_of_names(name in name_like()) {
            prop_assert_eq!(FieldKind::of(&name), slow_kind(&name));
        }
    }

    #[test]
    fn the_hop_by_hop_kinds_are_the_hop_by_hop_list() {
        for name in crate::headers::HOP_BY_HOP {
            assert!(FieldKind::of(name.as_bytes()).is_hop_by_hop(), "{name}");
        }
        let hop = NAMES
            .iter()
            .filter(|(_, kind)| kind.is_hop_by_hop())
            .count();
        assert_eq!(hop, crate::headers::HOP_BY_HOP.len());
    }

    #[test]
    fn every_kind_has_its_own_bit() {
        let bits: u32 = NAMES.iter().map(|(_, kind)| kind.bit()).fold(0, |a, b| {
            assert_eq!(a & b, 0);
            a | b
        });
        assert_eq!(bits.count_ones() as usize, NAMES.len());
    }
}
