//! docs/ARCHITECTURE.md §Protocol rules, "Message framing", and keep-alive behaviour; the
//! README's §Security for what is rejected: one test per rule.

mod common;

use bytes::BytesMut;
use common::*;
use switchyard_core::{CloseReason, Config, Input, Output, Side, StateKind};

fn rejected_with(request: &[u8], expected: u16) {
    let mut whole = sim();
    whole.client_sends(request);
    assert_eq!(
        status(&whole),
        expected,
        "whole: {:?}",
        String::from_utf8_lossy(request)
    );
    assert!(
        whole.upstreams.is_empty() || whole.upstream_received().is_empty(),
        "something reached the upstream"
    );
    assert!(whole.is_closed());
    let mut split = sim();
    for b in request {
        if split.is_closed() {
            break;
        }
        split.client_sends(&[*b]);
    }
    assert_eq!(
        status(&split),
        expected,
        "byte by byte: {:?}",
        String::from_utf8_lossy(request)
    );
}

#[test]
fn content_length_request_body_is_forwarded() {
    let mut sim = sim();
    sim.client_sends(b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello");
    sim.client_sends(b" world");
    assert!(sim.upstream_received().ends_with(b"Content-Length: 11\r\nX-Forwarded-Proto: http\r\nConnection: keep-alive\r\n\r\nhello world"));
}

#[test]
fn chunked_request_is_reencoded_canonically() {
    let mut sim = sim();
    sim.client_sends(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n00005;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n");
    let up = sim.upstream_received();
    assert_eq!(header(up, "transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(body(up), b"5\r\nhello\r\na\r\n0123456789\r\n0\r\n\r\n");
}

#[test]
fn chunked_response_is_reencoded_for_an_http11_client() {
    let mut sim = sim();
    sim.client_sends(get("/").as_bytes());
    sim.upstream_sends(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n");
    sim.upstream_sends(b"0\r\n\r\n");
    assert_eq!(
        header(&sim.client_received, "transfer-encoding").as_deref(),
        Some("chunked")
    );
    assert_eq!(body(&sim.client_received), b"3\r\nabc\r\n0\r\n\r\n");
    assert_eq!(sim.state(), StateKind::ReadingHead);
    assert_eq!(sim.upstreams[0].released, Some(true));
}

#[test]
fn chunked_response_is_decoded_for_an_http10_client_and_the_connection_closed() {
    let mut sim = sim();
    sim.client_sends(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    sim.upstream_sends(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    assert!(!has_header(&sim.client_received, "transfer-encoding"));
    assert_eq!(
        header(&sim.client_received, "connection").as_deref(),
        Some("close")
    );
    assert_eq!(body(&sim.client_received), b"abc");
    assert!(sim.is_closed());
}

#[test]
fn http10_request_without_host_gets_an_empty_host_upstream() {
    let mut sim = sim();
    sim.client_sends(b"GET / HTTP/1.0\r\n\r\n");
    assert!(sim
        .upstream_received()
        .starts_with(b"GET / HTTP/1.1\r\nHost: \r\n"));
}

#[test]
fn read_until_close_response_closes_the_client() {
    let mut sim = sim();
    sim.client_sends(get("/").as_bytes());
    sim.upstream_sends(b"HTTP/1.1 200 OK\r\n\r\npart one ");
    sim.upstream_sends(b"part two");
    sim.upstream_eof();
    assert_eq!(
        header(&sim.client_received, "connection").as_deref(),
        Some("close")
    );
    assert_eq!(body(&sim.client_received), b"part one part two");
    assert!(sim.is_closed());
    assert_eq!(sim.upstreams[0].released, Some(false));
}

#[test]
fn head_response_has_no_body() {
    let mut sim = sim();
    sim.client_sends(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
    sim.upstream_sends(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n");
    assert_eq!(
        header(&sim.client_received, "content-length").as_deref(),
        Some("1234")
    );
    assert_eq!(sim.state(), StateKind::ReadingHead);
    assert_eq!(sim.upstreams[0].released, Some(true));
}

#[test]
fn status_204_and_304_have_no_body() {
    for status_line in ["204 No Content", "304 Not Modified"] {
        let mut sim = sim();
        sim.client_sends(get("/").as_bytes());
        sim.upstream_sends(format!("HTTP/1.1 {status_line}\r\nETag: \"x\"\r\n\r\n").as_bytes());
        assert_eq!(sim.state(), StateKind::ReadingHead, "{status_line}");
        assert_eq!(sim.upstreams[0].released, Some(true));
    }
}

#[test]
fn content_length_with_transfer_encoding_is_400() {
    rejected_with(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
}

#[test]
fn repeated_or_differing_content_length_is_400() {
    rejected_with(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400,
    );
    rejected_with(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        400,
    );
    rejected_with(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc",
        400,
    );
    rejected_with(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
        400,
    );
}

#[test]
fn transfer_encoding_not_ending_in_chunked_is_400_and_unknown_codings_501() {
    rejected_with(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        400,
    );
    rejected_with(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
        400,
    );
    rejected_with(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        501,
    );
    rejected_with(
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
    );
}

#[test]
fn whitespace_before_colon_is_400() {
    rejected_with(
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n",
        400,
    );
}

#[test]
fn obs_fold_is_400() {
    rejected_with(
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n",
        400,
    );
}

#[test]
fn control_characters_in_values_are_400() {
    rejected_with(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n", 400);
    rejected_with(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x0bb\r\n\r\n", 400);
    rejected_with(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n", 400);
}

#[test]
fn missing_or_repeated_host_is_400() {
    rejected_with(b"GET / HTTP/1.1\r\n\r\n", 400);
    rejected_with(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    rejected_with(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
}

#[test]
fn bare_lf_line_endings_are_400() {
    rejected_with(b"GET / HTTP/1.1\nHost: a\n\n", 400);
    rejected_with(b"GET / HTTP/1.1\r\nHost: a\n\r\n", 400);
}

#[test]
fn head_too_large_is_431_even_in_small_reads() {
    let mut request = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    while request.len() < 40 * 1024 {
        request.extend_from_slice(
            b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
        );
    }
    request.extend_from_slice(b"\r\n");
    rejected_with(&request, 431);
}

#[test]
fn request_line_too_long_is_414() {
    let request = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
    rejected_with(request.as_bytes(), 414);
}

#[test]
fn too_many_header_fields_is_431() {
    let mut request = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..101 {
        request.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    rejected_with(&request, 431);
}

#[test]
fn bad_chunk_sizes_are_400() {
    for chunk in [
        "+5\r\nhello\r\n0\r\n\r\n",
        "0x5\r\nhello\r\n0\r\n\r\n",
        "5 \r\nhello\r\n0\r\n\r\n",
        "1_0\r\n",
        "10000000000000000\r\n",
        "5\r\nhelloXX0\r\n\r\n",
    ] {
        let mut sim = sim();
        sim.client_sends(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
        sim.client_sends(chunk.as_bytes());
        assert_eq!(status(&sim), 400, "{chunk:?}");
        assert!(sim.is_closed());
        assert_eq!(sim.upstreams[0].released, Some(false));
    }
}

#[test]
fn malformed_upstream_response_is_502() {
    for response in [
        "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
        "garbage\r\n\r\n",
    ] {
        let mut sim = sim();
        sim.client_sends(get("/").as_bytes());
        sim.upstream_sends(response.as_bytes());
        assert_eq!(statuses(&sim.client_received), vec![502], "{response:?}");
        assert!(sim.is_closed());
    }
}

#[test]
fn bytes_after_a_complete_response_never_reach_the_client() {
    let mut sim = sim();
    sim.client_sends(get("/").as_bytes());
    sim.upstream_sends(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil");
    assert_eq!(body(&sim.client_received), b"ok");
    assert_eq!(sim.upstreams[0].released, Some(false));
    // The next request gets a fresh upstream and its own answer, not the stray bytes.
    sim.client_sends(get("/2").as_bytes());
    assert_eq!(sim.upstreams.len(), 2);
    sim.upstream_sends(ok("second").as_bytes());
    assert_eq!(statuses(&sim.client_received), vec![200, 200]);
    assert!(sim.client_received.ends_with(b"\r\n\r\nsecond"));
    assert!(!String::from_utf8_lossy(&sim.client_received).contains("evil"));
}

#[test]
fn no_matching_route_is_404() {
    let mut config = Config::default();
    config.routes[0].prefix = "/api/".into();
    let mut sim = sim_with(config);
    sim.client_sends(get("/other").as_bytes());
    assert_eq!(status(&sim), 404);
    assert!(sim.upstreams.is_empty());
}

#[test]
fn longest_prefix_route_wins() {
    let mut config = Config::default();
    config.routes.push(switchyard_core::Route::new("/chat/"));
    config
        .routes
        .push(switchyard_core::Route::new("/chat/admin/"));
    let mut sim = sim_with(config);
    sim.client_sends(get("/chat/admin/x").as_bytes());
    assert!(sim.outputs.contains(&Output::Connect(2)));
}

#[test]
fn body_larger_than_the_route_allows_is_413() {
    let mut config = Config::default();
    config.routes[0].max_body_bytes = Some(4);
    let mut sim = sim_with(config.clone());
    sim.client_sends(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(status(&sim), 413);
    let mut chunked = sim_with(config);
    chunked.client_sends(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert_eq!(status(&chunked), 413);
    assert!(!chunked.upstream_received().ends_with(b"hello\r\n"));
}

#[test]
fn keep_alive_requests_reuse_the_upstream_connection() {
    let mut sim = sim();
    for i in 0..5 {
        sim.client_sends(get(&format!("/{i}")).as_bytes());
        sim.upstream_sends(ok("x").as_bytes());
    }
    assert_eq!(sim.upstreams.len(), 1);
    assert_eq!(statuses(&sim.client_received), vec![200; 5]);
    assert_eq!(sim.state(), StateKind::ReadingHead);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut sim = sim();
    sim.client_sends(format!("{}{}", get("/a"), get("/b")).as_bytes());
    assert!(sim.upstream_received().starts_with(b"GET /a "));
    assert!(
        !String::from_utf8_lossy(sim.upstream_received()).contains("/b"),
        "second request sent before the first answer"
    );
    sim.upstream_sends(ok("A").as_bytes());
    assert!(String::from_utf8_lossy(sim.upstream_received()).contains("GET /b "));
    sim.upstream_sends(ok("B").as_bytes());
    assert!(String::from_utf8_lossy(&sim.client_received).ends_with("\r\n\r\nB"));
}

#[test]
fn connection_close_from_the_client_closes_after_the_response() {
    let mut sim = sim();
    sim.client_sends(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    sim.upstream_sends(ok("x").as_bytes());
    assert_eq!(
        header(&sim.client_received, "connection").as_deref(),
        Some("close")
    );
    assert_eq!(closed_with(&sim), Some(CloseReason::NotKeptAlive));
    // The upstream connection is still good for others.
    assert_eq!(sim.upstreams[0].released, Some(true));
}

#[test]
fn http10_keep_alive_is_honoured() {
    let mut sim = sim();
    sim.client_sends(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    sim.upstream_sends(ok("x").as_bytes());
    assert_eq!(
        header(&sim.client_received, "connection").as_deref(),
        Some("keep-alive")
    );
    assert_eq!(sim.state(), StateKind::ReadingHead);
}

#[test]
fn upstream_connection_close_is_not_reused() {
    let mut sim = sim();
    sim.client_sends(get("/").as_bytes());
    sim.upstream_sends(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(sim.upstreams[0].released, Some(false));
    assert_eq!(sim.state(), StateKind::ReadingHead);
}

#[test]
fn a_stale_pooled_connection_is_retried_once_for_a_bodiless_request() {
    let mut sim = sim();
    sim.client_sends(get("/1").as_bytes());
    sim.upstream_sends(ok("x").as_bytes());
    sim.client_sends(get("/2").as_bytes());
    assert!(sim.outputs.contains(&Output::Connect(0)));
    sim.upstream_eof();
    assert_eq!(sim.upstreams.len(), 2, "a fresh connection was asked for");
    assert!(sim.upstreams[1].received.starts_with(b"GET /2 "));
    sim.upstream_eof();
    assert_eq!(statuses(&sim.client_received), vec![200, 502]);
}

#[test]
fn upstream_eof_before_a_response_is_502() {
    let mut sim = sim();
    sim.client_sends(get("/").as_bytes());
    sim.upstream_eof();
    assert_eq!(status(&sim), 502);
}

#[test]
fn upstream_eof_mid_body_truncates_without_forging_an_end() {
    let mut sim = sim();
    sim.client_sends(get("/").as_bytes());
    sim.upstream_sends(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
    sim.upstream_eof();
    assert!(sim.is_closed());
    assert!(!sim.client_received.ends_with(b"0\r\n\r\n"));
}

#[test]
fn connect_failure_is_502() {
    let mut sim = sim();
    sim.connect = switchyard_core::sim::ConnectBehaviour::Fail;
    sim.client_sends(get("/").as_bytes());
    assert_eq!(status(&sim), 502);
    assert_eq!(closed_with(&sim), Some(CloseReason::ConnectFailed));
}

#[test]
fn client_leaving_mid_body_ends_the_exchange() {
    let mut sim = sim();
    sim.client_sends(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc");
    sim.client_eof();
    assert!(sim.is_closed());
    assert_eq!(sim.upstreams[0].released, Some(false));
}

#[test]
fn client_half_close_after_a_complete_request_still_gets_the_response() {
    let mut sim = sim();
    sim.client_sends(get("/").as_bytes());
    sim.client_eof();
    assert!(!sim.is_closed());
    sim.upstream_sends(ok("late").as_bytes());
    assert_eq!(body(&sim.client_received), b"late");
    assert_eq!(closed_with(&sim), Some(CloseReason::ClientClosed));
}

#[test]
fn body_bytes_are_slices_of_the_receive_buffer() {
    let mut sim = sim();
    sim.client_sends(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n");
    let data = BytesMut::from(&b"hello"[..]);
    let address = data.as_ptr() as usize;
    sim.input(Input::ClientData(data)).unwrap();
    let forwarded = sim.outputs.iter().rev().find_map(|o| match o {
        Output::ToUpstream(b) if &b[..] == b"hello" => Some(b.as_ptr() as usize),
        _ => None,
    });
    assert_eq!(forwarded, Some(address), "the body was copied");
}

#[test]
fn reading_stops_when_unforwarded_bytes_pile_up() {
    let mut sim = sim();
    sim.connect = switchyard_core::sim::ConnectBehaviour::Hang;
    sim.client_sends(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n");
    assert!(sim.connection().wants_read(Side::Client));
    sim.client_sends(&vec![b'x'; 70 * 1024]);
    assert!(!sim.connection().wants_read(Side::Client));
    assert!(!sim.connection().wants_read(Side::Upstream));
}

#[test]
fn access_records_say_whether_the_connection_was_kept_alive() {
    let mut sim = sim();
    sim.client_sends(get("/1").as_bytes());
    sim.upstream_sends(ok("x").as_bytes());
    sim.client_sends(b"GET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    sim.upstream_sends(ok("y").as_bytes());
    let closes: Vec<_> = sim
        .events()
        .into_iter()
        .filter_map(|e| match e {
            switchyard_core::Event::Exchange(r) => Some((r.target.to_string(), r.close)),
            _ => None,
        })
        .collect();
    assert_eq!(
        closes,
        vec![
            ("/1".to_string(), None),
            ("/2".to_string(), Some(CloseReason::NotKeptAlive))
        ]
    );
}

#[test]
fn other_http_versions_are_505_and_malformed_request_lines_400() {
    rejected_with(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505);
    rejected_with(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
    rejected_with(b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    rejected_with(b"GET / FTP/1.1\r\nHost: a\r\n\r\n", 400);
}

#[test]
fn framing_field_lookalikes_with_underscores_are_400() {
    rejected_with(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc",
        400,
    );
    rejected_with(
        b"POST / HTTP/1.1\r\nHost: a\r\ncontent_length: 3\r\n\r\nabc",
        400,
    );
    // Other underscores are ordinary field names.
    let mut sim = sim();
    sim.client_sends(b"GET / HTTP/1.1\r\nHost: a\r\nX_Custom: 1\r\n\r\n");
    assert_eq!(
        header(sim.upstream_received(), "x_custom").as_deref(),
        Some("1")
    );
}

#[test]
fn a_client_that_half_closes_after_a_whole_body_sent_before_the_connect_still_gets_its_response() {
    let mut sim = sim();
    sim.connect = switchyard_core::sim::ConnectBehaviour::Hang;
    sim.client_sends(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc");
    sim.client_eof();
    assert!(!sim.is_closed());
    sim.input(Input::UpstreamConnected { reused: false })
        .unwrap();
    assert!(sim
        .outputs
        .iter()
        .any(|o| matches!(o, Output::ToUpstream(b) if &b[..] == b"abc")));
}

/// An input buffer the core consumed to its end does not keep its allocation alive: a
/// runtime may hand the core a large read buffer without copying, and an idle
/// keep-alive connection must not pin it.
#[test]
fn a_consumed_read_buffer_is_released() {
    use std::sync::Arc;
    use std::time::Instant;
    use switchyard_core::{Connection, PeerInfo};

    let now = Instant::now();
    let mut conn = Connection::new(Arc::new(Config::default()), PeerInfo::default(), now);
    // Each buffer keeps a second handle (`tail`) on its allocation: unique once the core
    // (and the outputs, dropped here) let go of theirs.
    let read = |bytes: &[u8]| {
        let mut buffer = BytesMut::with_capacity(4096);
        buffer.extend_from_slice(bytes);
        let tail = buffer.split_off(buffer.len()).freeze();
        (buffer, tail)
    };
    let (request, request_tail) = read(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    conn.handle_input(Input::ClientData(request), now).unwrap();
    while let Some(output) = conn.poll_output() {
        if let Output::Connect(_) = output {
            conn.handle_input(Input::UpstreamConnected { reused: false }, now)
                .unwrap();
        }
    }
    let (response, response_tail) = read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    conn.handle_input(Input::UpstreamData(response), now)
        .unwrap();
    let mut released = false;
    while let Some(output) = conn.poll_output() {
        released |= matches!(output, Output::ReleaseUpstream { reusable: true });
    }
    assert!(released, "the exchange completed");
    assert_eq!(conn.state(), StateKind::ReadingHead);
    assert!(request_tail.is_unique(), "the request buffer is held");
    assert!(response_tail.is_unique(), "the response buffer is held");
}
