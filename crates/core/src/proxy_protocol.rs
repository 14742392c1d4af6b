//! The PROXY protocol (HAProxy's `proxy-protocol.txt`, versions 1 and 2): the header an
//! L4 balancer sends before anything else on a connection, naming the client it accepted.
//!
//! This is a step of its own, before a [`Connection`](crate::Connection) exists: the
//! header precedes everything else on the wire, TLS included, so an adapter reads it from
//! the raw socket, learns the client's address, and then builds the connection (or its
//! TLS session) with that address and the bytes that followed the header.
//!
//! [`parse`] looks at the bytes received so far and says: a whole header (and how many
//! bytes it took), not enough yet, or not a valid header. [`HeaderReader`] keeps the
//! bytes between reads for an adapter that does not want to. [`encode_v2`] writes the
//! version 2 header a proxy sends to its upstream.
//!
//! ```
//! use switchyard_core::proxy_protocol::{HeaderReader, Read};
//!
//! let mut reader = HeaderReader::new();
//! assert!(matches!(reader.push(b"PROXY TCP4 192.0.2.1 19"), Ok(Read::NeedMore)));
//! let Ok(Read::Done { header, rest }) =
//!     reader.push(b"8.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n")
//! else {
//!     panic!("a whole header");
//! };
//! assert_eq!(header.source(), Some("192.0.2.1:56324".parse().unwrap()));
//! assert_eq!(&rest[..], b"GET / HTTP/1.1\r\n");
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::BytesMut;

/// The 12 bytes a version 2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// A version 1 header is at most this long, `PROXY` to CRLF included (the spec's 107).
pub const V1_MAX_LENGTH: usize = 107;

/// Most bytes after the fixed 16 a version 2 header may announce (addresses and TLVs).
/// The spec allows 65,535; balancers send a few dozen (AWS's and Azure's TLVs included),
/// and a connection must not make the proxy hold 64 KiB before it has said anything.
pub const V2_MAX_PAYLOAD: usize = 2048;

const V1_PREFIX: &[u8] = b"PROXY ";

/// The version of a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The text form.
    V1,
    /// The binary form.
    V2,
}

/// A parsed PROXY header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Which form it came in.
    pub version: Version,
    /// The connection's real endpoints (`source` the client, `destination` the address
    /// it connected to), or `None` for v1 `UNKNOWN`, a v2 `LOCAL` command (a balancer's
    /// own health check) and v2 families without TCP addresses (`UNSPEC`, `UNIX`): the
    /// socket's own addresses stand then.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
}

impl Header {
    /// The client's address, when the header names one.
    pub fn source(&self) -> Option<SocketAddr> {
        self.addresses.map(|(source, _)| source)
    }

    /// The address the client connected to, when the header names one.
    pub fn destination(&self) -> Option<SocketAddr> {
        self.addresses.map(|(_, destination)| destination)
    }
}

/// What [`parse`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// The bytes so far are a valid beginning of a header; read more.
    NeedMore,
    /// A whole header, `length` bytes long; what follows is the connection's.
    Done {
        /// The header.
        header: Header,
        /// How many bytes of the input it took.
        length: usize,
    },
}

/// Why the bytes are not a PROXY header. Every variant means: close the connection
/// without a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Neither the v1 `PROXY ` nor the v2 signature.
    NotProxy,
    /// A v1 line without CRLF within 107 bytes.
    V1TooLong,
    /// A v1 line that is not `PROXY TCP4|TCP6 src dst sport dport` or `PROXY UNKNOWN…`.
    V1Malformed,
    /// A v2 version other than 2, or a command other than `LOCAL`/`PROXY`.
    V2Version,
    /// A v2 address family or transport protocol that is unknown, or not TCP.
    V2Family,
    /// A v2 length shorter than its family's addresses.
    V2Length,
    /// A v2 length over [`V2_MAX_PAYLOAD`].
    V2TooLong,
}

impl Error {
    /// A short name, for logs and metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Error::NotProxy => "not_proxy",
            Error::V1TooLong => "v1_too_long",
            Error::V1Malformed => "v1_malformed",
            Error::V2Version => "v2_version",
            Error::V2Family => "v2_family",
            Error::V2Length => "v2_length",
            Error::V2TooLong => "v2_too_long",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Error::NotProxy => "no PROXY protocol header",
            Error::V1TooLong => "PROXY v1 line longer than 107 bytes",
            Error::V1Malformed => "malformed PROXY v1 line",
            Error::V2Version => "unknown PROXY v2 version or command",
            Error::V2Family => "unsupported PROXY v2 address family or protocol",
            Error::V2Length => "PROXY v2 length too short for its addresses",
            Error::V2TooLong => "PROXY v2 header too long",
        };
        f.write_str(text)
    }
}

impl std::error::Error for Error {}

/// Reads a PROXY header from the start of `input` (everything received so far).
/// Refuses as early as one byte shows the input cannot be a header, so a client that
/// speaks HTTP straight away is refused at its first byte.
pub fn parse(input: &[u8]) -> Result<Parsed, Error> {
    let Some(&first) = input.first() else {
        return Ok(Parsed::NeedMore);
    };
    match first {
        b'P' => parse_v1(input),
        b'\r' => parse_v2(input),
        _ => Err(Error::NotProxy),
    }
}

fn is_prefix_of(input: &[u8], expected: &[u8]) -> bool {
    let n = input.len().min(expected.len());
    input[..n] == expected[..n]
}

fn parse_v1(input: &[u8]) -> Result<Parsed, Error> {
    if !is_prefix_of(input, V1_PREFIX) {
        return Err(Error::NotProxy);
    }
    let window = &input[..input.len().min(V1_MAX_LENGTH)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        if window.len() == V1_MAX_LENGTH || window.contains(&b'\n') {
            return Err(if window.contains(&b'\n') {
                Error::V1Malformed
            } else {
                Error::V1TooLong
            });
        }
        return Ok(Parsed::NeedMore);
    };
    let line = &input[V1_PREFIX.len()..end];
    let addresses = v1_addresses(line)?;
    Ok(Parsed::Done {
        header: Header {
            version: Version::V1,
            addresses,
        },
        length: end + 2,
    })
}

fn v1_addresses(line: &[u8]) -> Result<Option<(SocketAddr, SocketAddr)>, Error> {
    if line.starts_with(b"UNKNOWN") && matches!(line.get(7), None | Some(b' ')) {
        // The spec: the receiver ignores whatever follows UNKNOWN.
        return Ok(None);
    }
    let text = std::str::from_utf8(line).map_err(|_| Error::V1Malformed)?;
    let fields: Vec<&str> = text.split(' ').collect();
    let [family, source, destination, source_port, destination_port] = fields[..] else {
        return Err(Error::V1Malformed);
    };
    let (source, destination) = match family {
        "TCP4" => (IpAddr::V4(v1_ip(source)?), IpAddr::V4(v1_ip(destination)?)),
        "TCP6" => (IpAddr::V6(v1_ip(source)?), IpAddr::V6(v1_ip(destination)?)),
        _ => return Err(Error::V1Malformed),
    };
    Ok(Some((
        SocketAddr::new(source, v1_port(source_port)?),
        SocketAddr::new(destination, v1_port(destination_port)?),
    )))
}

fn v1_ip<A: std::str::FromStr>(text: &str) -> Result<A, Error> {
    text.parse().map_err(|_| Error::V1Malformed)
}

/// A port in decimal, 0 to 65535, digits only (no sign, no leading zero but `0`).
fn v1_port(text: &str) -> Result<u16, Error> {
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (text.len() > 1 && text.starts_with('0')) {
        return Err(Error::V1Malformed);
    }
    text.parse().map_err(|_| Error::V1Malformed)
}

fn parse_v2(input: &[u8]) -> Result<Parsed, Error> {
    if !is_prefix_of(input, &V2_SIGNATURE) {
        return Err(Error::NotProxy);
    }
    let Some(&version_command) = input.get(12) else {
        return Ok(Parsed::NeedMore);
    };
    let local = match version_command {
        0x20 => true,
        0x21 => false,
        _ => return Err(Error::V2Version),
    };
    let Some(&family_protocol) = input.get(13) else {
        return Ok(Parsed::NeedMore);
    };
    // Family in the high nibble (UNSPEC, INET, INET6, UNIX), transport in the low one
    // (UNSPEC, STREAM, DGRAM): a TCP listener carries only STREAM, or UNSPEC as a whole.
    let needed = match family_protocol {
        0x00 => 0,
        0x11 => 12,
        0x21 => 36,
        0x31 => 216,
        _ if local => 0,
        _ => return Err(Error::V2Family),
    };
    let Some(length) = input.get(14..16) else {
        return Ok(Parsed::NeedMore);
    };
    let length = usize::from(u16::from_be_bytes([length[0], length[1]]));
    if length > V2_MAX_PAYLOAD {
        return Err(Error::V2TooLong);
    }
    if !local && length < needed {
        return Err(Error::V2Length);
    }
    let Some(payload) = input.get(16..16 + length) else {
        return Ok(Parsed::NeedMore);
    };
    let addresses = if local {
        None
    } else {
        v2_addresses(family_protocol, payload)
    };
    Ok(Parsed::Done {
        header: Header {
            version: Version::V2,
            addresses,
        },
        length: 16 + length,
    })
}

/// The addresses of a PROXY command's payload (its length already checked); TLVs after
/// them are skipped: nothing here needs them.
fn v2_addresses(family_protocol: u8, payload: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    let port = |at: usize| u16::from_be_bytes([payload[at], payload[at + 1]]);
    match family_protocol {
        0x11 => {
            let ip = |at: usize| {
                let octets: [u8; 4] = payload[at..at + 4].try_into().expect("4 bytes");
                IpAddr::V4(Ipv4Addr::from(octets))
            };
            Some((
                SocketAddr::new(ip(0), port(8)),
                SocketAddr::new(ip(4), port(10)),
            ))
        }
        0x21 => {
            let ip = |at: usize| {
                let octets: [u8; 16] = payload[at..at + 16].try_into().expect("16 bytes");
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            Some((
                SocketAddr::new(ip(0), port(32)),
                SocketAddr::new(ip(16), port(34)),
            ))
        }
        _ => None,
    }
}

/// A version 2 header: `PROXY` with `(source, destination)` (both sent as IPv6 when
/// their families differ, an IPv4 one mapped), or `LOCAL` with `None`.
pub fn encode_v2(addresses: Option<(SocketAddr, SocketAddr)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 36);
    out.extend_from_slice(&V2_SIGNATURE);
    let Some((source, destination)) = addresses else {
        out.extend_from_slice(&[0x20, 0x00, 0, 0]);
        return out;
    };
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.extend_from_slice(&[0x21, 0x11, 0, 12]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.extend_from_slice(&[0x21, 0x21, 0, 36]);
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

/// What [`HeaderReader::push`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// Not a whole header yet; push the next read.
    NeedMore,
    /// A whole header; `rest` is what followed it in the reads, the connection's first
    /// bytes.
    Done {
        /// The header.
        header: Header,
        /// The bytes after it (to be given as the connection's first
        /// [`Input::ClientData`](crate::Input::ClientData)).
        rest: BytesMut,
    },
}

/// Keeps the reads of a connection's first bytes until they make a header. Holds at
/// most a header's worth plus one read.
#[derive(Debug, Default)]
pub struct HeaderReader {
    buffer: BytesMut,
}

impl HeaderReader {
    /// A reader that has seen nothing.
    pub fn new() -> Self {
        HeaderReader::default()
    }

    /// Adds one read and looks for a header in everything pushed so far.
    pub fn push(&mut self, data: &[u8]) -> Result<Read, Error> {
        self.buffer.extend_from_slice(data);
        match parse(&self.buffer)? {
            Parsed::NeedMore => Ok(Read::NeedMore),
            Parsed::Done { header, length } => {
                let mut rest = std::mem::take(&mut self.buffer);
                let _ = rest.split_to(length);
                Ok(Read::Done { header, rest })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(input: &[u8]) -> (Header, usize) {
        match parse(input) {
            Ok(Parsed::Done { header, length }) => (header, length),
            other => panic!("{other:?} for {input:?}"),
        }
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_v1_tcp4_line_names_both_endpoints() {
        let (header, length) = done(b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET");
        assert_eq!(length, 45);
        assert_eq!(header.version, Version::V1);
        assert_eq!(
            header.addresses,
            Some((addr("192.0.2.1:56324"), addr("198.51.100.2:443")))
        );
    }

    #[test]
    fn a_v1_tcp6_line_and_unknown() {
        let (header, _) = done(b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n");
        assert_eq!(header.source(), Some(addr("[2001:db8::1]:1")));
        assert_eq!(done(b"PROXY UNKNOWN\r\n").0.addresses, None);
        assert_eq!(done(b"PROXY UNKNOWN ff:: ::1 1 2\r\n").0.addresses, None);
    }

    #[test]
    fn v1_lines_that_break_the_grammar_are_refused() {
        for line in [
            &b"PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n"[..],
            b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443 x\r\n",
            b"PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n",
            b"PROXY TCP6 192.0.2.1 ::1 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 +1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 01 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 65536 2\r\n",
            b"PROXY TCP4 192.0.2.1  198.51.100.2 1 2\r\n",
            b"PROXY TCP4 192.000.2.1 198.51.100.2 1 2\r\n",
            b"PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n",
            b"PROXY UNKNOWNX\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n",
            b"PROXY \r\n",
        ] {
            assert!(parse(line).is_err(), "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn a_v1_line_without_crlf_in_107_bytes_is_refused() {
        let mut line = b"PROXY UNKNOWN ".to_vec();
        line.resize(106, b'a');
        assert_eq!(parse(&line), Ok(Parsed::NeedMore));
        line.push(b'a');
        assert_eq!(parse(&line), Err(Error::V1TooLong));
        // Exactly 107 with its CRLF is allowed.
        line.truncate(105);
        line.extend_from_slice(b"\r\n");
        assert_eq!(done(&line).1, 107);
    }

    #[test]
    fn http_is_refused_at_its_first_byte() {
        assert_eq!(parse(b"G"), Err(Error::NotProxy));
        assert_eq!(parse(b"PRI * HTTP/2.0"), Err(Error::NotProxy));
        assert_eq!(parse(b"\r\n\r\n\0\r\nQUIX"), Err(Error::NotProxy));
        assert_eq!(parse(b""), Ok(Parsed::NeedMore));
    }

    #[test]
    fn v2_round_trips_through_the_encoder() {
        for (source, destination) in [
            (addr("192.0.2.1:56324"), addr("198.51.100.2:443")),
            (addr("[2001:db8::1]:1"), addr("[::1]:8080")),
        ] {
            let bytes = encode_v2(Some((source, destination)));
            let (header, length) = done(&bytes);
            assert_eq!(length, bytes.len());
            assert_eq!(header.version, Version::V2);
            assert_eq!(header.addresses, Some((source, destination)));
        }
        let mixed = encode_v2(Some((addr("192.0.2.1:1"), addr("[::1]:2"))));
        assert_eq!(done(&mixed).0.source(), Some(addr("[::ffff:192.0.2.1]:1")));
        assert_eq!(done(&encode_v2(None)).0.addresses, None);
    }

    #[test]
    fn v2_tlvs_are_skipped_and_local_ignores_addresses() {
        let mut bytes = encode_v2(Some((addr("192.0.2.1:1"), addr("192.0.2.2:2"))));
        bytes[15] += 7;
        bytes.extend_from_slice(&[0x04, 0x00, 0x04, b'a', b'b', b'c', b'd']);
        bytes.extend_from_slice(b"GET");
        let (header, length) = done(&bytes);
        assert_eq!(length, bytes.len() - 3);
        assert_eq!(header.source(), Some(addr("192.0.2.1:1")));
        // LOCAL with an INET payload: the socket's addresses stand.
        bytes[12] = 0x20;
        assert_eq!(done(&bytes).0.addresses, None);
    }

    #[test]
    fn v2_headers_that_break_the_spec_are_refused() {
        let good = encode_v2(Some((addr("192.0.2.1:1"), addr("192.0.2.2:2"))));
        let with = |at: usize, value: u8| {
            let mut bytes = good.clone();
            bytes[at] = value;
            parse(&bytes)
        };
        assert_eq!(with(12, 0x11), Err(Error::V2Version));
        assert_eq!(with(12, 0x22), Err(Error::V2Version));
        assert_eq!(with(13, 0x12), Err(Error::V2Family));
        assert_eq!(with(13, 0x41), Err(Error::V2Family));
        assert_eq!(with(15, 11), Err(Error::V2Length));
        assert_eq!(with(14, 0x08), Err(Error::V2TooLong));
        assert_eq!(parse(&good[..15]), Ok(Parsed::NeedMore));
    }

    #[test]
    fn the_reader_hands_back_what_followed_the_header() {
        let mut reader = HeaderReader::new();
        let bytes = encode_v2(Some((addr("192.0.2.1:1"), addr("192.0.2.2:2"))));
        assert_eq!(reader.push(&bytes[..3]), Ok(Read::NeedMore));
        let mut tail = bytes[3..].to_vec();
        tail.extend_from_slice(b"GET / HTTP/1.1\r\n");
        match reader.push(&tail) {
            Ok(Read::Done { header, rest }) => {
                assert_eq!(header.source(), Some(addr("192.0.2.1:1")));
                assert_eq!(&rest[..], b"GET / HTTP/1.1\r\n");
            }
            other => panic!("{other:?}"),
        }
    }
}
