//! The header fields the core itself looks at, recognised once per field when a head is
//! parsed: every later question ("is there a `Transfer-Encoding`?", "is this field
//! hop-by-hop?") is a byte compare or a bit test instead of a pass over every field
//! name with a case-insensitive string compare.

pub(crate) use crate::spelling::is_websocket;
use crate::spelling::Spelling;

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

/// How many kinds there are.
pub(crate) const KINDS: usize = FieldKind::SecWebSocketExtensions as usize + 1;

impl FieldKind {
    /// The kind of the field called `name` (case-insensitive). Names are told apart by
    /// length and first letter, so at most one comparison is made, a word at a time
    /// ([`Spelling`]), never a byte loop.
    ///
    /// Most names are none of these: a table of the lengths and first letters of the
    /// known names turns those away at once, inline, and the rest are told apart out of
    /// line (a field loop with all of this inline keeps too much in registers).
    #[inline(always)]
    pub(crate) fn of(name: &[u8]) -> FieldKind {
        let Some(&first) = name.first() else {
            return FieldKind::Other;
        };
        let letters = KNOWN_FIRST_LETTERS.get(name.len()).copied().unwrap_or(0);
        if letters >> (first & 31) & 1 == 0 {
            return FieldKind::Other;
        }
        FieldKind::of_candidate(name, first)
    }

    /// [`of`](Self::of) for a name whose length and first letter are those of a known one.
    #[inline(never)]
    fn of_candidate(name: &[u8], first: u8) -> FieldKind {
        use FieldKind::*;
        // Each comparison in its own arm, where the length is known: a fixed sequence
        // of loads and compares, not a loop over words of an unknown count.
        let is = |known: &Spelling, kind: FieldKind| {
            if known.matches(name) {
                kind
            } else {
                Other
            }
        };
        let framing = |known: &Spelling, kind: FieldKind| {
            if known.matches(name) {
                kind
            } else if is_lookalike(name) {
                FramingLookalike
            } else {
                Other
            }
        };
        match (name.len(), first | 0x20) {
            (2, b't') => is(&TE, Te),
            (3, b'v') => is(&VIA, Via),
            (4, b'h') => is(&HOST, Host),
            (7, b'u') => is(&UPGRADE, Upgrade),
            (7, b't') => is(&TRAILER, Trailer),
            (8, b't') => is(&TRAILERS, Trailers),
            (9, b'f') => is(&FORWARDED, Forwarded),
            (10, b'c') => is(&CONNECTION, Connection),
            (10, b'k') => is(&KEEP_ALIVE, KeepAlive),
            (14, b'c') => framing(&CONTENT_LENGTH, ContentLength),
            (14, b'h') => is(&HTTP2_SETTINGS, Http2Settings),
            (15, b'x') => is(&X_FORWARDED_FOR, XForwardedFor),
            (16, b'p') => is(&PROXY_CONNECTION, ProxyConnection),
            (17, b't') => framing(&TRANSFER_ENCODING, TransferEncoding),
            (17, b'x') => is(&X_FORWARDED_PROTO, XForwardedProto),
            (17, b's') => is(&SEC_WEBSOCKET_KEY, SecWebSocketKey),
            (18, b'p') => is(&PROXY_AUTHENTICATE, ProxyAuthenticate),
            (19, b'p') => is(&PROXY_AUTHORIZATION, ProxyAuthorization),
            (20, b's') => is(&SEC_WEBSOCKET_ACCEPT, SecWebSocketAccept),
            (24, b's') => is(&SEC_WEBSOCKET_EXTENSIONS, SecWebSocketExtensions),
            _ => Other,
        }
    }

    /// This kind's bit in a head's set of kinds present.
    #[inline]
    pub(crate) fn bit(self) -> u32 {
        1 << self as u8
    }

    /// Whether a field of this kind describes one connection and is never forwarded.
    #[inline]
    pub(crate) fn is_hop_by_hop(self) -> bool {
        self.bit() & HOP_BY_HOP != 0
    }

    /// Neither hop-by-hop nor written by the proxy itself: forwarded as it is.
    #[inline]
    pub(crate) fn is_plain(self) -> bool {
        self.bit() & (HOP_BY_HOP | FORWARDING) == 0
    }

    /// Whether the proxy writes fields of this kind itself towards the upstream.
    #[inline]
    pub(crate) fn is_forwarding(self) -> bool {
        self.bit() & FORWARDING != 0
    }

    /// Fields a `Connection` token may not remove: dropping them would change how the
    /// upstream frames or routes the message (a known way to smuggle through a proxy).
    #[inline]
    pub(crate) fn is_protected(self) -> bool {
        matches!(self, FieldKind::Host | FieldKind::ContentLength)
    }
}

/// For each name length, the known names' first letters of that length, as bits `b & 31`
/// (a letter in either case, and a few other bytes, which the full comparison turns away).
const KNOWN_FIRST_LETTERS: [u32; 25] = {
    let names: [&str; 20] = [
        "te",
        "via",
        "host",
        "upgrade",
        "trailer",
        "trailers",
        "forwarded",
        "connection",
        "keep-alive",
        "content-length",
        "http2-settings",
        "x-forwarded-for",
        "proxy-connection",
        "transfer-encoding",
        "x-forwarded-proto",
        "sec-websocket-key",
        "proxy-authenticate",
        "proxy-authorization",
        "sec-websocket-accept",
        "sec-websocket-extensions",
    ];
    let mut table = [0u32; 25];
    let mut i = 0;
    while i < names.len() {
        let name = names[i].as_bytes();
        table[name.len()] |= 1 << (name[0] & 31);
        i += 1;
    }
    table
};

/// The bits of the kinds that are hop-by-hop (a bit test, not a `match`, per field).
const HOP_BY_HOP: u32 = {
    use FieldKind::*;
    let kinds = [
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
    ];
    let mut bits = 0;
    let mut i = 0;
    while i < kinds.len() {
        bits |= 1 << kinds[i] as u8;
        i += 1;
    }
    bits
};

/// The bits of the kinds the proxy writes itself.
pub(crate) const FORWARDING: u32 = {
    use FieldKind::*;
    1 << XForwardedFor as u8 | 1 << XForwardedProto as u8 | 1 << Forwarded as u8 | 1 << Via as u8
};

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
        for value in values {
            // The usual value is one token as a whole: known at once, without splitting.
            match FieldKind::of(value) {
                FieldKind::KeepAlive => options.keep_alive = true,
                FieldKind::Upgrade => options.upgrade = true,
                _ => options.add_list(value),
            }
        }
        options
    }

    /// The options of one comma-separated value (out of line: the usual value is one
    /// token, told at once by [`of`](Self::of)).
    #[inline(never)]
    fn add_list(&mut self, value: &[u8]) {
        for token in crate::head::split_list(value) {
            match FieldKind::of(token) {
                FieldKind::KeepAlive => self.keep_alive = true,
                FieldKind::Upgrade => self.upgrade = true,
                kind if kind.is_hop_by_hop() => {}
                _ if token.eq_ignore_ascii_case(b"close") => {
                    self.close = true;
                    self.names_fields = true;
                }
                _ => self.names_fields = true,
            }
        }
    }
}

/// `tchar` of RFC 9110 §5.6.2, by byte.
const TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
};

/// `tchar` of RFC 9110 §5.6.2.
#[inline]
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

const TE: Spelling = Spelling::new("te");
const VIA: Spelling = Spelling::new("via");
const HOST: Spelling = Spelling::new("host");
const UPGRADE: Spelling = Spelling::new("upgrade");
const TRAILER: Spelling = Spelling::new("trailer");
const TRAILERS: Spelling = Spelling::new("trailers");
const FORWARDED: Spelling = Spelling::new("forwarded");
const CONNECTION: Spelling = Spelling::new("connection");
const KEEP_ALIVE: Spelling = Spelling::new("keep-alive");
const CONTENT_LENGTH: Spelling = Spelling::new("content-length");
const HTTP2_SETTINGS: Spelling = Spelling::new("http2-settings");
const X_FORWARDED_FOR: Spelling = Spelling::new("x-forwarded-for");
const PROXY_CONNECTION: Spelling = Spelling::new("proxy-connection");
const TRANSFER_ENCODING: Spelling = Spelling::new("transfer-encoding");
const X_FORWARDED_PROTO: Spelling = Spelling::new("x-forwarded-proto");
const SEC_WEBSOCKET_KEY: Spelling = Spelling::new("sec-websocket-key");
const PROXY_AUTHENTICATE: Spelling = Spelling::new("proxy-authenticate");
const PROXY_AUTHORIZATION: Spelling = Spelling::new("proxy-authorization");
const SEC_WEBSOCKET_ACCEPT: Spelling = Spelling::new("sec-websocket-accept");
const SEC_WEBSOCKET_EXTENSIONS: Spelling = Spelling::new("sec-websocket-extensions");

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

        /// A value that is one known token as a whole is read as the list it is.
        #[test]
        fn connection_options_agree_with_reading_every_token(
            values in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::sample::select(
                        [
                            "keep-alive", "Keep-Alive", "upgrade", "UPGRADE", "close", "te",
                            "x-a", ",", " ", ", ",
                        ]
                        .map(str::as_bytes)
                        .to_vec(),
                    ),
                    0..4,
                ).prop_map(|parts| parts.concat()),
                0..3,
            ),
        ) {
            let mut slow = ConnectionOptions::default();
            for value in &values {
                slow.add_list(value);
            }
            prop_assert_eq!(ConnectionOptions::of(values.iter().map(|v| &v[..])), slow);
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
