//! docs/ARCHITECTURE.md §Protocol rules, "Hop-by-hop headers", "Upgrade negotiation" and
//! "101 detection": one test per rule.

mod common;

use common::*;
use switchyard_core::sim::Sim;
use switchyard_core::{Config, Forwarding, Output, PeerInfo, Scheme, StateKind};

#[test]
fn hop_by_hop_request_headers_are_not_forwarded() {
    let mut sim = sim();
    sim.client_sends(
        b"GET / HTTP/1.1\r\nHost: a\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic eA==\r\n\
          TE: trailers\r\nTrailer: X\r\nProxy-Connection: keep-alive\r\nUpgrade: foo\r\nX-End: 1\r\n\r\n",
    );
    let names = header_names(sim.upstream_received());
    for hop in [
        "keep-alive",
        "proxy-authorization",
        "te",
        "trailer",
        "proxy-connection",
        "upgrade",
    ] {
        assert!(
            !names.contains(&hop.to_string()),
            "{hop} forwarded: {names:?}"
        );
    }
    assert!(names.contains(&"x-end".to_string()));
    assert_eq!(
        header(sim.upstream_received(), "connection").as_deref(),
        Some("keep-alive")
    );
}

#[test]
fn headers_named_by_connection_are_not_forwarded() {
    let mut sim = sim();
    sim.client_sends(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Secret, close\r\nX-Secret: 1\r\nX-Kept: 2\r\n\r\n");
    let names = header_names(sim.upstream_received());
    assert!(!names.contains(&"x-secret".to_string()));
    assert!(names.contains(&"x-kept".to_string()));
}

#[test]
fn connection_cannot_strip_content_length_or_host() {
    let mut sim = sim();
    sim.client_sends(b"POST / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length, Host\r\nContent-Length: 3\r\n\r\nabc");
    let up = sim.upstream_received();
    assert_eq!(header(up, "content-length").as_deref(), Some("3"));
    assert_eq!(header(up, "host").as_deref(), Some("a"));
    assert!(up.ends_with(b"\r\n\r\nabc"));
}

#[test]
fn hop_by_hop_response_headers_are_not_forwarded_to_client() {
    let mut sim = sim();
    sim.client_sends(get("/").as_bytes());
    sim.upstream_sends(
        b"HTTP/1.1 200 OK\r\nConnection: X-Internal\r\nX-Internal: 1\r\nKeep-Alive: timeout=4\r\n\
          Proxy-Authenticate: Basic\r\nUpgrade: h2c\r\nTrailer: X\r\nX-Public: 2\r\nContent-Length: 0\r\n\r\n",
    );
    let names = header_names(&sim.client_received);
    for hop in [
        "x-internal",
        "keep-alive",
        "proxy-authenticate",
        "upgrade",
        "trailer",
        "connection",
    ] {
        assert!(
            !names.contains(&hop.to_string()),
            "{hop} reached the client: {names:?}"
        );
    }
    assert!(names.contains(&"x-public".to_string()));
}

#[test]
fn end_to_end_headers_keep_order_and_bytes() {
    let mut sim = sim();
    sim.client_sends(b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\nX-B: two  words\r\nCookie: a=1\r\nX-A: \"quoted\"\r\nCookie: b=2\r\n\r\n");
    let up = String::from_utf8_lossy(sim.upstream_received()).into_owned();
    assert!(up.starts_with("GET /x?y=1 HTTP/1.1\r\nHost: a\r\nX-B: two  words\r\nCookie: a=1\r\nX-A: \"quoted\"\r\nCookie: b=2\r\n"), "{up}");
}

#[test]
fn x_forwarded_for_appends_client_address() {
    let peer = PeerInfo {
        client_addr: Some("192.0.2.7".parse().unwrap()),
        scheme: Scheme::Https,
    };
    let mut sim = Sim::with_peer(Config::default(), peer, std::time::Instant::now());
    sim.client_sends(b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: gopher\r\n\r\n");
    let up = sim.upstream_received();
    assert_eq!(
        header(up, "x-forwarded-for").as_deref(),
        Some("10.0.0.1, 192.0.2.7")
    );
    assert_eq!(header(up, "x-forwarded-proto").as_deref(), Some("https"));
}

#[test]
fn forwarded_and_via_are_added_when_configured() {
    let config = Config {
        forwarding: Forwarding {
            forwarded: true,
            via: Some("switchyard".into()),
            ..Forwarding::default()
        },
        ..Config::default()
    };
    let peer = PeerInfo {
        client_addr: Some("2001:db8::1".parse().unwrap()),
        scheme: Scheme::Http,
    };
    let mut sim = Sim::with_peer(config, peer, std::time::Instant::now());
    sim.client_sends(b"GET / HTTP/1.1\r\nHost: a\r\nVia: 1.0 edge\r\n\r\n");
    let up = sim.upstream_received();
    assert_eq!(
        header(up, "forwarded").as_deref(),
        Some("for=\"[2001:db8::1]\";proto=http")
    );
    assert_eq!(
        header(up, "via").as_deref(),
        Some("1.0 edge, 1.1 switchyard")
    );
}

#[test]
fn upgrade_proposal_is_forwarded_explicitly() {
    let mut sim = sim();
    sim.client_sends(ws_request("/chat").as_bytes());
    let up = sim.upstream_received();
    assert_eq!(header(up, "upgrade").as_deref(), Some("websocket"));
    assert_eq!(header(up, "connection").as_deref(), Some("upgrade"));
    assert_eq!(header(up, "sec-websocket-key").as_deref(), Some(KEY));
}

/// `request` (a variant of [`ws_request`]) reaches the upstream as the plain
/// `Upgrade: websocket` proposal, and the upstream's 101 opens the tunnel.
fn proposes_websocket_and_switches(request: &str) {
    assert_ne!(request, ws_request("/"), "the request is a variant");
    let mut sim = sim();
    sim.client_sends(request.as_bytes());
    assert_eq!(
        header(sim.upstream_received(), "upgrade").as_deref(),
        Some("websocket")
    );
    sim.upstream_sends(ws_101().as_bytes());
    assert_eq!(sim.state(), StateKind::Tunnel);
}

#[test]
fn a_protocol_offered_twice_is_forwarded_once() {
    proposes_websocket_and_switches(&ws_request("/").replace(
        "Upgrade: websocket\r\n",
        "Upgrade: websocket\r\nUpgrade: WebSocket, websocket\r\n",
    ));
}

#[test]
fn connection_keep_alive_upgrade_counts_as_a_proposal() {
    proposes_websocket_and_switches(
        &ws_request("/").replace("Connection: Upgrade", "Connection: keep-alive, Upgrade"),
    );
}

#[test]
fn upgrade_without_connection_token_is_not_a_proposal() {
    let mut sim = sim();
    let req = ws_request("/").replace("Connection: Upgrade\r\n", "");
    sim.client_sends(req.as_bytes());
    let up = sim.upstream_received();
    assert!(!has_header(up, "upgrade"));
    assert_eq!(header(up, "connection").as_deref(), Some("keep-alive"));
}

#[test]
fn http10_upgrade_is_not_a_proposal() {
    let mut sim = sim();
    let req = ws_request("/").replace("HTTP/1.1", "HTTP/1.0");
    sim.client_sends(req.as_bytes());
    assert!(!has_header(sim.upstream_received(), "upgrade"));
    sim.upstream_sends(ws_101().as_bytes());
    assert_eq!(status(&sim), 502);
    assert!(!started_tunnel(&sim));
}

#[test]
fn only_allowed_protocols_are_forwarded() {
    let mut sim = sim();
    sim.client_sends(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: foo/2, websocket, IRC/6.9\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
    assert_eq!(
        header(sim.upstream_received(), "upgrade").as_deref(),
        Some("websocket")
    );
}

#[test]
fn routes_may_allow_other_protocols() {
    let mut config = Config::default();
    config.routes[0].allow_upgrade = vec!["irc".into()];
    let mut sim = sim_with(config);
    sim.client_sends(
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: IRC/6.9, websocket\r\n\r\n",
    );
    assert_eq!(
        header(sim.upstream_received(), "upgrade").as_deref(),
        Some("IRC/6.9")
    );
    sim.upstream_sends(
        b"HTTP/1.1 101 Switching\r\nUpgrade: IRC/6.9\r\nConnection: upgrade\r\n\r\n",
    );
    assert_eq!(sim.state(), StateKind::Tunnel);
}

#[test]
fn h2c_and_http2_settings_are_never_forwarded() {
    let mut config = Config::default();
    config.routes[0].allow_upgrade = vec!["websocket".into(), "h2c".into()];
    let mut sim = sim_with(config);
    sim.client_sends(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n");
    let up = sim.upstream_received();
    assert!(!has_header(up, "upgrade"));
    assert!(!has_header(up, "http2-settings"));
    sim.upstream_sends(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
    );
    assert_eq!(status(&sim), 502);
    assert!(!started_tunnel(&sim));
}

#[test]
fn plain_request_gets_connection_keep_alive() {
    let mut sim = sim();
    sim.client_sends(get("/").as_bytes());
    assert_eq!(
        header(sim.upstream_received(), "connection").as_deref(),
        Some("keep-alive")
    );
}

#[test]
fn client_bytes_after_upgrade_request_are_held() {
    let mut sim = sim();
    let mut bytes = ws_request("/").into_bytes();
    bytes.extend_from_slice(b"\x81\x05hello");
    sim.client_sends(&bytes);
    assert!(
        sim.upstream_received().ends_with(b"\r\n\r\n"),
        "held bytes were forwarded before the 101"
    );
}

#[test]
fn held_bytes_become_the_first_tunnel_bytes_after_101() {
    let mut sim = byte_sim();
    let mut bytes = ws_request("/").into_bytes();
    bytes.extend_from_slice(b"\x81\x05hello");
    sim.client_sends(&bytes);
    sim.upstream_sends(ws_101().as_bytes());
    assert!(sim.upstream_received().ends_with(b"\r\n\r\n\x81\x05hello"));
}

#[test]
fn held_bytes_are_parsed_as_the_next_request_after_a_non_101() {
    let mut sim = sim();
    let mut bytes = ws_request("/").into_bytes();
    bytes.extend_from_slice(b"GET /admin HTTP/1.1\r\nHost: a\r\nProxy-Authorization: x\r\n\r\n");
    sim.client_sends(&bytes);
    sim.upstream_sends(b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n");
    assert!(!started_tunnel(&sim));
    // The held request went through full policy, on a fresh upstream connection.
    assert_eq!(sim.upstreams.len(), 2);
    assert_eq!(sim.upstreams[0].released, Some(false));
    let second = &sim.upstreams[1].received;
    assert!(second.starts_with(b"GET /admin HTTP/1.1\r\n"));
    assert!(!has_header(second, "proxy-authorization"));
}

#[test]
fn valid_101_starts_the_tunnel() {
    let mut sim = sim();
    sim.client_sends(ws_request("/").as_bytes());
    sim.upstream_sends(ws_101().as_bytes());
    assert_eq!(sim.state(), StateKind::Tunnel);
    assert_eq!(status(&sim), 101);
    let client = &sim.client_received;
    assert_eq!(header(client, "upgrade").as_deref(), Some("websocket"));
    assert_eq!(header(client, "connection").as_deref(), Some("upgrade"));
    assert_eq!(
        header(client, "sec-websocket-accept").as_deref(),
        Some(ACCEPT)
    );
}

#[test]
fn a_101_to_a_request_without_a_proposal_is_502() {
    let mut sim = sim();
    sim.client_sends(get("/").as_bytes());
    sim.upstream_sends(ws_101().as_bytes());
    assert_eq!(status(&sim), 502);
    assert!(!started_tunnel(&sim));
    assert_eq!(sim.upstreams[0].released, Some(false));
    assert!(sim.is_closed());
}

#[test]
fn a_101_with_a_wrong_accept_is_502() {
    let mut sim = sim();
    sim.client_sends(ws_request("/").as_bytes());
    sim.upstream_sends(
        ws_101()
            .replace(ACCEPT, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
            .as_bytes(),
    );
    assert_eq!(statuses(&sim.client_received), vec![502]);
    assert!(!started_tunnel(&sim));
}

#[test]
fn a_101_naming_a_protocol_not_offered_is_502() {
    let mut sim = sim();
    sim.client_sends(ws_request("/").as_bytes());
    sim.upstream_sends(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
    );
    assert_eq!(statuses(&sim.client_received), vec![502]);
    assert!(!started_tunnel(&sim));
}

#[test]
fn a_101_without_connection_upgrade_is_502() {
    let mut sim = sim();
    sim.client_sends(ws_request("/").as_bytes());
    sim.upstream_sends(ws_101().replace("Connection: Upgrade\r\n", "").as_bytes());
    assert_eq!(statuses(&sim.client_received), vec![502]);
    assert!(!started_tunnel(&sim));
}

#[test]
fn a_non_101_answer_to_an_upgrade_is_ordinary_and_the_upstream_is_not_reused() {
    let mut sim = sim();
    sim.client_sends(ws_request("/").as_bytes());
    sim.upstream_sends(ok("no").as_bytes());
    assert_eq!(status(&sim), 200);
    assert_eq!(body(&sim.client_received), b"no");
    assert_eq!(sim.state(), StateKind::ReadingHead);
    assert_eq!(sim.upstreams[0].released, Some(false));
}

#[test]
fn bytes_after_the_101_head_are_forwarded_first() {
    let mut sim = byte_sim();
    sim.client_sends(ws_request("/").as_bytes());
    let mut answer = ws_101().into_bytes();
    answer.extend_from_slice(b"\x81\x02hi");
    sim.upstream_sends(&answer);
    let start = sim.outputs.iter().find_map(|o| match o {
        Output::StartTunnel {
            upstream_leftover, ..
        } => Some(upstream_leftover.clone()),
        _ => None,
    });
    assert_eq!(start.as_deref(), Some(&b"\x81\x02hi"[..]));
    assert!(sim.client_received.ends_with(b"\r\n\r\n\x81\x02hi"));
}

#[test]
fn interim_100_and_103_are_forwarded_and_the_proxy_keeps_waiting() {
    let mut sim = sim();
    sim.client_sends(
        b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
    );
    sim.upstream_sends(b"HTTP/1.1 100 Continue\r\n\r\n");
    sim.client_sends(b"ok");
    sim.upstream_sends(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n");
    sim.upstream_sends(ok("done").as_bytes());
    assert_eq!(statuses(&sim.client_received), vec![100, 103, 200]);
    assert!(sim.upstream_received().ends_with(b"\r\n\r\nok"));
}

#[test]
fn interim_responses_are_not_sent_to_http10_clients() {
    let mut sim = sim();
    sim.client_sends(b"GET / HTTP/1.0\r\n\r\n");
    sim.upstream_sends(b"HTTP/1.1 103 Early Hints\r\n\r\n");
    sim.upstream_sends(ok("x").as_bytes());
    assert_eq!(statuses(&sim.client_received), vec![200]);
}

#[test]
fn frames_held_behind_a_refused_upgrade_are_refused_at_once() {
    let mut sim = sim();
    let mut bytes = ws_request("/").into_bytes();
    bytes.extend_from_slice(b"\x81\x85abcdhello");
    sim.client_sends(&bytes);
    sim.upstream_sends(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(statuses(&sim.client_received), vec![403, 400]);
    assert!(sim.is_closed());
    assert_eq!(sim.upstreams.len(), 1, "nothing of the frame was forwarded");
}
