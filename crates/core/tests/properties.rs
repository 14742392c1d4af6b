//! Property tests of the core's rules (proptest), over arbitrary splits, bytes, headers,
//! responses and activity schedules.

mod common;

use std::time::Duration;

use common::*;
use proptest::prelude::*;
use switchyard_core::sim::Sim;
use switchyard_core::{is_hop_by_hop, Config, Event, Output, Side, StateKind};

/// The status line of the proxy's own 502.
const BAD_GATEWAY: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\n";

/// Feeds `bytes` in pieces cut at `cuts` (positions taken modulo the length).
fn feed_split(bytes: &[u8], cuts: &[usize], mut send: impl FnMut(&[u8])) {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points.dedup();
    for w in points.windows(2) {
        send(&bytes[w[0]..w[1]]);
    }
}

#[derive(Debug, Clone)]
struct Exchange {
    request: Vec<u8>,
    response: Vec<u8>,
}

fn exchange() -> impl Strategy<Value = Exchange> {
    let body = proptest::collection::vec(any::<u8>(), 0..200);
    (0..4u8, body.clone(), body, 0..3u8).prop_map(|(kind, req_body, resp_body, resp_kind)| {
        let request = match kind {
            0 => get("/a").into_bytes(),
            1 => {
                let mut r = format!(
                    "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
                    req_body.len()
                )
                .into_bytes();
                r.extend_from_slice(&req_body);
                r
            }
            2 => {
                let mut r =
                    b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                for part in req_body.chunks(7) {
                    r.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                    r.extend_from_slice(part);
                    r.extend_from_slice(b"\r\n");
                }
                r.extend_from_slice(b"0\r\n\r\n");
                r
            }
            _ => b"HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
        };
        let response = if kind == 3 {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                resp_body.len()
            )
            .into_bytes()
        } else if resp_kind == 0 {
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                resp_body.len()
            )
            .into_bytes();
            r.extend_from_slice(&resp_body);
            r
        } else {
            let mut r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for part in resp_body.chunks(5) {
                r.extend_from_slice(format!("{:X}\r\n", part.len()).as_bytes());
                r.extend_from_slice(part);
                r.extend_from_slice(b"\r\n");
            }
            r.extend_from_slice(b"0\r\n\r\n");
            r
        };
        Exchange { request, response }
    })
}

fn run(exchanges: &[Exchange], cuts: Option<&[usize]>) -> (Vec<u8>, Vec<u8>, StateKind) {
    let mut sim = sim();
    for ex in exchanges {
        match cuts {
            None => sim.client_sends(&ex.request),
            Some(c) => feed_split(&ex.request, c, |b| sim.client_sends(b)),
        }
        match cuts {
            None => sim.upstream_sends(&ex.response),
            Some(c) => feed_split(&ex.response, c, |b| sim.upstream_sends(b)),
        }
    }
    let upstream: Vec<u8> = sim
        .upstreams
        .iter()
        .flat_map(|u| u.received.clone())
        .collect();
    (sim.client_received.clone(), upstream, sim.state())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// (a) Splitting a valid exchange at arbitrary points changes nothing either peer sees.
    #[test]
    fn any_split_of_a_valid_exchange_gives_the_same_bytes(
        exchanges in proptest::collection::vec(exchange(), 1..4),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = run(&exchanges, None);
        let split = run(&exchanges, Some(&cuts));
        prop_assert_eq!(&whole, &split);
        prop_assert_eq!(whole.2, StateKind::ReadingHead);
        prop_assert_eq!(statuses(&whole.0).len(), exchanges.len());
    }

    /// (b) Arbitrary client bytes never panic: they parse, wait for more, or end in a
    /// 4xx/5xx and close — and a byte-by-byte feed ends the same way.
    #[test]
    fn arbitrary_client_bytes_parse_or_end_in_an_error_and_close(
        bytes in proptest::collection::vec(prop_oneof![any::<u8>(), Just(b'\r'), Just(b'\n'), Just(b' '), Just(b':')], 0..300),
        prefix in prop_oneof![Just(&b""[..]), Just(&b"GET / HTTP/1.1\r\n"[..]), Just(&b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"[..])],
    ) {
        let input: Vec<u8> = [prefix, &bytes[..]].concat();
        let mut whole = sim();
        whole.client_sends(&input);
        let mut single = sim();
        for b in &input {
            if single.is_closed() { break; }
            single.client_sends(&[*b]);
        }
        for s in [&whole, &single] {
            if s.is_closed() {
                let code = status(s);
                prop_assert!((400..600).contains(&code) || s.client_received.is_empty(), "closed with {}", code);
            } else {
                prop_assert!(s.client_received.is_empty());
            }
        }
        prop_assert_eq!(status(&whole), status(&single));
        prop_assert_eq!(whole.state(), single.state());
    }

    /// (b) Arbitrary upstream bytes in answer to a valid request: a forwarded response or 502.
    #[test]
    fn arbitrary_upstream_bytes_forward_or_end_in_502(
        bytes in proptest::collection::vec(prop_oneof![any::<u8>(), Just(b'\r'), Just(b'\n')], 0..300),
        prefix in prop_oneof![Just(&b""[..]), Just(&b"HTTP/1.1 200 OK\r\n"[..]), Just(&b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"[..])],
    ) {
        let mut sim = sim();
        sim.client_sends(get("/").as_bytes());
        sim.upstream_sends(&[prefix, &bytes[..]].concat());
        if !sim.is_closed() {
            sim.upstream_eof();
        }
        prop_assert!(sim.is_closed() || sim.state() == StateKind::ReadingHead);
        prop_assert!(!started_tunnel(&sim));
        let events = sim.events();
        let forwarded = events.iter().find_map(|e| match e {
            Event::Response { status } if *status >= 200 => Some(*status),
            _ => None,
        });
        let records: Vec<_> = events.iter().filter_map(|e| match e {
            Event::Exchange(record) => Some(record.status),
            _ => None,
        }).collect();
        let finals: Vec<u16> = statuses(&sim.client_received).into_iter().filter(|s| *s >= 200).collect();
        match forwarded {
            // The upstream's response, under its own status, and no answer of the proxy's
            // after it (a truncated body stays truncated).
            Some(status) => {
                prop_assert_eq!(records, vec![status]);
                prop_assert_eq!(finals.first().copied(), Some(status));
                prop_assert!(!sim.client_received.windows(BAD_GATEWAY.len()).any(|w| w == BAD_GATEWAY));
            }
            // Nothing the client could take for a response: a 502 and the connection closed,
            // blaming the upstream.
            None => {
                prop_assert_eq!(finals, vec![502]);
                prop_assert_eq!(records, vec![502]);
                prop_assert!(sim.is_closed());
                prop_assert!(events.iter().any(|e| matches!(e, Event::Rejected(error) if error.side == Side::Upstream)));
            }
        }
    }
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(vec![
            "Connection",
            "keep-alive",
            "PROXY-AUTHORIZATION",
            "Proxy-Authenticate",
            "te",
            "Trailer",
            "Trailers",
            "Upgrade",
            "Proxy-Connection",
            "HTTP2-Settings"
        ])
        .prop_map(String::from),
        "X-[a-z]{1,6}",
        "[A-Z][a-z]{1,8}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// (c) Hop-by-hop headers (fixed list and those named by Connection) never reach the
    /// upstream; every end-to-end header does, byte-exact and in order.
    #[test]
    fn hop_by_hop_never_reach_the_upstream_and_end_to_end_do_in_order(
        fields in proptest::collection::vec((header_name(), "[a-zA-Z0-9 ,;=/.-]{0,20}"), 0..20),
        named in proptest::collection::vec("X-[a-z]{1,6}", 0..3),
    ) {
        let mut request = String::from("GET / HTTP/1.1\r\nHost: h\r\n");
        let fields: Vec<(String, String)> = fields.into_iter()
            .filter(|(n, _)| !["connection", "host", "content-length", "transfer-encoding", "x-forwarded-for", "x-forwarded-proto", "forwarded", "via", "upgrade"].contains(&n.to_ascii_lowercase().as_str()))
            .map(|(n, v)| (n, v.trim().to_string()))
            .collect();
        for (n, v) in &fields {
            request.push_str(&format!("{n}: {v}\r\n"));
        }
        request.push_str(&format!("Connection: {}\r\n\r\n", named.join(", ")));
        let mut sim = sim();
        sim.client_sends(request.as_bytes());
        let up = sim.upstream_received().to_vec();
        let mut parsed = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut parsed);
        prop_assert!(matches!(req.parse(&up), Ok(httparse::Status::Complete(_))));
        let forwarded: Vec<(String, String)> = req.headers.iter()
            .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
            .collect();
        let is_named = |n: &str| named.iter().any(|x| x.eq_ignore_ascii_case(n));
        for (n, _) in &forwarded {
            prop_assert!(!is_hop_by_hop(n.as_bytes()) || n.eq_ignore_ascii_case("connection"), "{} forwarded", n);
            prop_assert!(!is_named(n), "{} named by Connection but forwarded", n);
        }
        let expected: Vec<(String, String)> = fields.iter()
            .filter(|(n, _)| !is_hop_by_hop(n.as_bytes()) && !is_named(n))
            .cloned()
            .collect();
        let kept: Vec<(String, String)> = forwarded.into_iter()
            .filter(|(n, _)| !["host", "connection", "x-forwarded-proto"].contains(&n.to_ascii_lowercase().as_str()))
            .collect();
        prop_assert_eq!(kept, expected);
    }

    /// (d) Nothing but a validated 101 to a proposal ever starts a tunnel.
    #[test]
    fn only_a_validated_101_starts_a_tunnel(
        propose in any::<bool>(),
        status_code in prop_oneof![Just(101u16), Just(200), Just(426), Just(100), Just(400)],
        upgrade in prop_oneof![Just("websocket"), Just("WebSocket"), Just("h2c"), Just(""), Just("websocket, h2c")],
        connection in prop_oneof![Just("Upgrade"), Just("keep-alive"), Just(""), Just("close, upgrade")],
        good_accept in any::<bool>(),
    ) {
        let mut sim = sim();
        let request = if propose { ws_request("/") } else { get("/") };
        sim.client_sends(request.as_bytes());
        let mut response = format!("HTTP/1.1 {status_code} X\r\n");
        if !upgrade.is_empty() { response.push_str(&format!("Upgrade: {upgrade}\r\n")); }
        if !connection.is_empty() { response.push_str(&format!("Connection: {connection}\r\n")); }
        response.push_str(&format!("Sec-WebSocket-Accept: {}\r\n", if good_accept { ACCEPT } else { "bm9wZQ==" }));
        if status_code >= 200 { response.push_str("Content-Length: 0\r\n"); }
        response.push_str("\r\n");
        sim.upstream_sends(response.as_bytes());
        let valid = propose && status_code == 101 && upgrade.eq_ignore_ascii_case("websocket")
            && connection.to_ascii_lowercase().contains("upgrade") && good_accept;
        prop_assert_eq!(started_tunnel(&sim), valid);
        prop_assert_eq!(sim.state() == StateKind::Tunnel, valid);
        if status_code == 101 && !valid {
            prop_assert_eq!(statuses(&sim.client_received), vec![502]);
        }
    }

    /// (e) With random activity, a tunnel closes exactly when the upstream has been
    /// silent for read_timeout — not a moment before, not a moment after.
    #[test]
    fn a_tunnel_closes_exactly_after_read_timeout_of_upstream_silence(
        schedule in proptest::collection::vec((0u64..15_000, any::<bool>()), 1..40),
    ) {
        let read = Duration::from_secs(10);
        let mut config = Config::default();
        config.routes[0].timeouts.read = read;
        let mut sim = Sim::new(byte_tunnels(config), std::time::Instant::now());
        sim.client_sends(ws_request("/").as_bytes());
        sim.upstream_sends(ws_101().as_bytes());
        let mut last_upstream = sim.now();
        for (delay, from_upstream) in schedule {
            let delay = Duration::from_millis(delay);
            let deadline = last_upstream + read;
            if sim.now() + delay >= deadline {
                let before = deadline - sim.now() - Duration::from_millis(1);
                sim.advance(before);
                prop_assert_eq!(sim.state(), StateKind::Tunnel);
                sim.advance(Duration::from_millis(1));
                prop_assert!(sim.is_closed());
                return Ok(());
            }
            sim.advance(delay);
            prop_assert_eq!(sim.state(), StateKind::Tunnel);
            if from_upstream {
                sim.upstream_sends(b"u");
                last_upstream = sim.now();
            } else {
                sim.client_sends(b"c");
            }
        }
    }
}

#[test]
fn outputs_after_close_are_none() {
    let mut sim = sim();
    sim.client_sends(b"BAD\r\n\r\n");
    assert!(sim.is_closed());
    assert!(matches!(sim.outputs.last(), Some(Output::Close)));
}
