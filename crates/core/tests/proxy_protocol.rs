//! The PROXY protocol step (`switchyard_core::proxy_protocol`): the corpus's valid and
//! hostile headers, and properties over generated ones (any split parses the same, any
//! garbage is refused or needs more, the bytes after the header are the connection's).

use std::net::{IpAddr, SocketAddr};

use proptest::prelude::*;
use switchyard_core::proxy_protocol::{
    encode_v2, parse, Error, HeaderReader, Parsed, Read, V1_MAX_LENGTH,
};

#[test]
fn every_corpus_header_is_read_as_the_corpus_says() {
    for vector in switchyard_corpus::proxy_vectors() {
        let result = parse(&vector.bytes);
        match vector.source {
            Some(source) => {
                let Ok(Parsed::Done { header, length }) = result else {
                    panic!("{}: {result:?}", vector.name);
                };
                assert_eq!(length, vector.bytes.len(), "{}", vector.name);
                let named = header.source().map(|a| a.to_string()).unwrap_or_default();
                assert_eq!(named, source, "{}", vector.name);
            }
            None => assert!(result.is_err(), "{}: {result:?}", vector.name),
        }
    }
}

#[test]
fn every_hostile_corpus_header_is_refused_whatever_follows_it() {
    for vector in switchyard_corpus::proxy_vectors() {
        if vector.source.is_some() {
            continue;
        }
        let mut bytes = vector.bytes.clone();
        bytes.extend_from_slice(b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(parse(&bytes).is_err(), "{}", vector.name);
    }
}

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::from(ip), port)),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::from(ip), port)),
    ]
}

/// A valid header and the addresses it names (`None`: UNKNOWN or LOCAL).
fn header() -> impl Strategy<Value = (Vec<u8>, Option<(SocketAddr, SocketAddr)>)> {
    let v1 = (
        any::<bool>(),
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
        any::<[u16; 2]>(),
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
    )
        .prop_map(|(six, s4, d4, ports, s6, d6)| {
            let (s, d) = if six {
                (IpAddr::from(s6), IpAddr::from(d6))
            } else {
                (IpAddr::from(s4), IpAddr::from(d4))
            };
            let family = if six { "TCP6" } else { "TCP4" };
            let line = format!("PROXY {family} {s} {d} {} {}\r\n", ports[0], ports[1]);
            let addresses = (SocketAddr::new(s, ports[0]), SocketAddr::new(d, ports[1]));
            (line.into_bytes(), Some(addresses))
        });
    let v2 = (
        socket_addr(),
        socket_addr(),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(source, destination, tlvs)| {
            let mut bytes = encode_v2(Some((source, destination)));
            let length = u16::from_be_bytes([bytes[14], bytes[15]]) + tlvs.len() as u16;
            bytes[14..16].copy_from_slice(&length.to_be_bytes());
            bytes.extend_from_slice(&tlvs);
            let mapped = |a: SocketAddr| match (source.ip(), destination.ip()) {
                (IpAddr::V4(_), IpAddr::V4(_)) => a,
                _ => match a.ip() {
                    IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
                    IpAddr::V6(_) => a,
                },
            };
            (bytes, Some((mapped(source), mapped(destination))))
        });
    prop_oneof![
        4 => v1,
        4 => v2,
        1 => Just((b"PROXY UNKNOWN\r\n".to_vec(), None)),
        1 => Just((encode_v2(None), None)),
    ]
}

proptest! {
    #[test]
    fn a_valid_header_split_anywhere_reads_the_same_and_leaves_what_follows(
        (bytes, addresses) in header(),
        after in proptest::collection::vec(any::<u8>(), 0..40),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let mut whole = bytes.clone();
        whole.extend_from_slice(&after);
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(whole.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut reader = HeaderReader::new();
        let mut start = 0;
        let mut result = None;
        for end in cuts.into_iter().chain([whole.len()]) {
            if end < start { continue; }
            match reader.push(&whole[start..end]) {
                Ok(Read::NeedMore) => prop_assert!(end < bytes.len(), "need more after {end} of {}", bytes.len()),
                Ok(Read::Done { header, rest }) => {
                    prop_assert!(end >= bytes.len());
                    let mut after_seen = rest.to_vec();
                    after_seen.extend_from_slice(&whole[end..]);
                    prop_assert_eq!(&after_seen, &after);
                    result = Some(header);
                    break;
                }
                Err(error) => prop_assert!(false, "{error} at {end}"),
            }
            start = end;
        }
        let header = result.expect("a whole header reads as done");
        prop_assert_eq!(header.addresses, addresses);
    }

    #[test]
    fn any_bytes_are_refused_or_need_more_and_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        match parse(&bytes) {
            Ok(Parsed::Done { length, .. }) => prop_assert!(length <= bytes.len()),
            Ok(Parsed::NeedMore) => prop_assert!(bytes.len() < 16 + 2048),
            Err(_) => {}
        }
    }

    #[test]
    fn garbage_after_a_valid_prefix_never_panics(
        (bytes, _) in header(),
        at in any::<prop::sample::Index>(),
        noise in proptest::collection::vec(any::<u8>(), 1..120),
    ) {
        let cut = at.index(bytes.len());
        let mut mangled = bytes[..cut].to_vec();
        mangled.extend_from_slice(&noise);
        let _ = parse(&mangled);
        let mut reader = HeaderReader::new();
        for byte in &mangled {
            match reader.push(std::slice::from_ref(byte)) {
                Ok(Read::NeedMore) => {}
                Ok(Read::Done { .. }) | Err(_) => break,
            }
        }
    }

    #[test]
    fn a_v1_line_never_needs_more_than_107_bytes(tail in proptest::collection::vec(any::<u8>().prop_filter("no CR", |b| *b != b'\r'), 101..200)) {
        let mut line = b"PROXY ".to_vec();
        line.extend_from_slice(&tail);
        prop_assert!(line.len() >= V1_MAX_LENGTH);
        prop_assert!(parse(&line).is_err());
    }
}

#[test]
fn a_client_speaking_http_or_tls_is_refused_at_the_first_byte_no_header_has() {
    // `P` may begin `PROXY `; `PO` cannot.
    for (request, at) in [
        (&b"GET / HTTP/1.1\r\n"[..], 1),
        (b"POST / HTTP/1.1", 2),
        (b"\x16\x03\x01", 1),
    ] {
        assert_eq!(parse(&request[..at - 1]), Ok(Parsed::NeedMore));
        assert_eq!(parse(&request[..at]), Err(Error::NotProxy));
    }
}
