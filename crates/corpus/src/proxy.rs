//! PROXY protocol headers (HAProxy's `proxy-protocol.txt`, v1 and v2): hostile ones that
//! a listener requiring the header must refuse by closing, and valid ones with the client
//! address each names. Written out by hand, independently of the core's parser and
//! encoder.

/// A PROXY header vector.
#[derive(Debug, Clone)]
pub struct ProxyVector {
    /// A unique name.
    pub name: &'static str,
    /// The bytes, as the balancer (or an attacker) sends them.
    pub bytes: Vec<u8>,
    /// For a valid header, the client address it names (`Some("")` when it names none:
    /// `UNKNOWN`, `LOCAL`); `None` for a hostile one.
    pub source: Option<&'static str>,
}

/// A v2 header: the signature, then `rest`.
fn v2(rest: &[&[u8]]) -> Vec<u8> {
    let mut bytes = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    for part in rest {
        bytes.extend_from_slice(part);
    }
    bytes
}

/// Every PROXY vector, valid and hostile; names are unique.
pub fn proxy_vectors() -> Vec<ProxyVector> {
    let valid = |name, bytes: &[u8], source| ProxyVector {
        name,
        bytes: bytes.to_vec(),
        source: Some(source),
    };
    let hostile = |name, bytes: &[u8]| ProxyVector {
        name,
        bytes: bytes.to_vec(),
        source: None,
    };
    vec![
        valid("v1_tcp4", b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 80\r\n", "203.0.113.7:40000"),
        valid("v1_tcp6", b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 80\r\n", "[2001:db8::7]:40000"),
        valid("v1_unknown", b"PROXY UNKNOWN\r\n", ""),
        valid("v1_unknown_with_addresses", b"PROXY UNKNOWN 2001:db8::7 2001:db8::1 1 2\r\n", ""),
        valid(
            "v2_tcp4",
            &v2(&[b"\x21\x11\x00\x0c", b"\x0a\x00\x00\x07", b"\x0a\x00\x00\x01", b"\x9c\x40", b"\x00\x50"]),
            "10.0.0.7:40000",
        ),
        valid(
            "v2_tcp4_with_tlvs",
            &v2(&[b"\x21\x11\x00\x13", b"\x0a\x00\x00\x07", b"\x0a\x00\x00\x01", b"\x9c\x40", b"\x00\x50", b"\x01\x00\x04h1.1"]),
            "10.0.0.7:40000",
        ),
        valid(
            "v2_tcp6",
            &v2(&[
                b"\x21\x21\x00\x24",
                b"\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x07",
                b"\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01",
                b"\x9c\x40",
                b"\x00\x50"
            ]),
            "[2001:db8::7]:40000",
        ),
        valid("v2_local", &v2(&[b"\x20\x00\x00\x00"]), ""),
        valid("v2_unspec", &v2(&[b"\x21\x00\x00\x00"]), ""),
        hostile("http_request", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        hostile("v1_lowercase", b"proxy TCP4 203.0.113.7 192.0.2.1 40000 80\r\n"),
        hostile("v1_bare_lf", b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 80\n"),
        hostile("v1_missing_port", b"PROXY TCP4 203.0.113.7 192.0.2.1 40000\r\n"),
        hostile("v1_extra_field", b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 80 80\r\n"),
        hostile("v1_family_mismatch", b"PROXY TCP4 2001:db8::7 192.0.2.1 40000 80\r\n"),
        hostile("v1_port_overflow", b"PROXY TCP4 203.0.113.7 192.0.2.1 65536 80\r\n"),
        hostile("v1_signed_port", b"PROXY TCP4 203.0.113.7 192.0.2.1 +4 80\r\n"),
        hostile("v1_octal_address", b"PROXY TCP4 203.0.113.07 192.0.2.1 4 80\r\n"),
        hostile("v1_double_space", b"PROXY TCP4  203.0.113.7 192.0.2.1 4 80\r\n"),
        hostile("v1_udp", b"PROXY UDP4 203.0.113.7 192.0.2.1 4 80\r\n"),
        hostile("v1_nul", b"PROXY TCP4 203.0.113.7\0 192.0.2.1 4 80\r\n"),
        hostile(
            "v1_too_long",
            b"PROXY UNKNOWN aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
        ),
        hostile("v1_then_header_injection", b"PROXY TCP4 203.0.113.7 192.0.2.1 4 80 \r\n"),
        hostile("v2_version_1", &v2(&[b"\x11\x11\x00\x0c", b"\x0a\x00\x00\x07\x0a\x00\x00\x01\x9c\x40\x00\x50"])),
        hostile("v2_command_2", &v2(&[b"\x22\x11\x00\x0c", b"\x0a\x00\x00\x07\x0a\x00\x00\x01\x9c\x40\x00\x50"])),
        hostile("v2_udp", &v2(&[b"\x21\x12\x00\x0c", b"\x0a\x00\x00\x07\x0a\x00\x00\x01\x9c\x40\x00\x50"])),
        hostile("v2_family_4", &v2(&[b"\x21\x41\x00\x0c", b"\x0a\x00\x00\x07\x0a\x00\x00\x01\x9c\x40\x00\x50"])),
        hostile("v2_short_length", &v2(&[b"\x21\x11\x00\x0b", b"\x0a\x00\x00\x07\x0a\x00\x00\x01\x9c\x40\x00"])),
        hostile("v2_tcp6_short", &v2(&[b"\x21\x21\x00\x0c", b"\x0a\x00\x00\x07\x0a\x00\x00\x01\x9c\x40\x00\x50"])),
        hostile("v2_huge_length", &v2(&[b"\x21\x11\xff\xff", b"\x0a\x00\x00\x07\x0a\x00\x00\x01\x9c\x40\x00\x50"])),
        hostile("v2_bad_signature", b"\r\n\r\n\0\r\nQUIT\r\x21\x11\x00\x0c\x0a\x00\x00\x07\x0a\x00\x00\x01\x9c\x40\x00\x50"),
        hostile("tls_client_hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
    ]
}
