//! Plain HTTP/1.1 through the proxy: forwarding, hop-by-hop headers, keep-alive, request
//! and response bodies, bodiless responses and an unreachable upstream.

use std::net::TcpListener;

use switchyard_e2e::{chunked_is_canonical, ok, Conn, Message, Origin, Proxy, Reply};

/// An origin answering every request with its target as the body.
fn echo_target_origin() -> Origin {
    Origin::http(|request| Reply::Send(ok(request.head.target().as_bytes())))
}

/// An origin that answers `/chunked` with `chunked` (a whole response, as sent) and
/// anything else with a short `after`.
fn chunked_origin(chunked: Vec<u8>) -> Origin {
    Origin::http(move |request| {
        if request.head.target() == "/chunked" {
            Reply::Send(chunked.clone())
        } else {
            Reply::Send(ok(b"after"))
        }
    })
}

fn get(client: &mut Conn, target: &str) -> Message {
    client.write_all(format!("GET {target} HTTP/1.1\r\nHost: example\r\n\r\n").as_bytes());
    client
        .read_final_response("GET")
        .unwrap_or_else(|e| panic!("response to GET {target}: {e}"))
}

#[test]
fn get_is_forwarded_with_forwarding_headers() {
    let origin = echo_target_origin();
    let proxy = Proxy::start(origin.addr());
    let mut client = Conn::connect(proxy.addr());

    let response = get(&mut client, "/path?query=1");
    assert_eq!(response.head.status(), 200);
    assert_eq!(response.body, b"/path?query=1");

    let request = &origin.requests()[0];
    assert_eq!(request.head.start_line, "GET /path?query=1 HTTP/1.1");
    assert_eq!(request.head.get("host"), Some("example"));
    assert!(
        request
            .head
            .get("x-forwarded-for")
            .is_some_and(|value| value.contains("127.0.0.1")),
        "X-Forwarded-For: {:?}",
        request.head.get("x-forwarded-for")
    );
    assert!(
        request.head.problems().is_empty(),
        "{:?}",
        request.head.problems()
    );
}

#[test]
fn hop_by_hop_headers_are_removed_both_ways() {
    let origin = Origin::http(|_| {
        Reply::Send(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Origin-Private\r\nKeep-Alive: timeout=5\r\n\
              Proxy-Authenticate: Basic realm=\"x\"\r\nProxy-Connection: keep-alive\r\nTrailer: X-Checksum\r\n\
              Upgrade: foo\r\nX-Origin-Private: secret\r\nX-Origin-Public: shown\r\nContent-Length: 2\r\n\r\nok"
                .to_vec(),
        )
    });
    let proxy = Proxy::start(origin.addr());
    let mut client = Conn::connect(proxy.addr());

    client.write_all(
        b"GET / HTTP/1.1\r\nHost: example\r\nConnection: keep-alive, X-Client-Private\r\nKeep-Alive: 300\r\n\
          Proxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n\
          X-Client-Private: secret\r\nX-Client-Public: shown\r\n\r\n",
    );
    let response = client.read_final_response("GET").expect("response");
    assert_eq!(response.head.status(), 200);
    assert_eq!(response.body, b"ok");
    let received = response.head.hop_by_hop_present(&["x-origin-private"]);
    assert!(
        received.is_empty(),
        "client received hop-by-hop fields {received:?}"
    );
    assert!(!response.head.has_token("connection", "x-origin-private"));
    assert_eq!(response.head.get("x-origin-public"), Some("shown"));

    let request = &origin.requests()[0].head;
    let forwarded = request.hop_by_hop_present(&["x-client-private"]);
    assert!(
        forwarded.is_empty(),
        "origin received hop-by-hop fields {forwarded:?}"
    );
    assert!(!request.has_token("connection", "x-client-private"));
    assert_eq!(request.get("x-client-public"), Some("shown"));
    assert!(request.problems().is_empty(), "{:?}", request.problems());

    // The connection is still usable: the proxy wrote its own framing and Connection.
    let again = get(&mut client, "/again");
    assert_eq!(again.head.status(), 200);
}

#[test]
fn twenty_requests_on_one_kept_alive_connection() {
    let origin = echo_target_origin();
    let proxy = Proxy::start(origin.addr());
    let mut client = Conn::connect(proxy.addr());

    for i in 0..20 {
        let target = format!("/request/{i}");
        let response = get(&mut client, &target);
        assert_eq!(response.head.status(), 200, "request {i}");
        assert_eq!(response.body, target.as_bytes(), "request {i}");
        assert!(
            !response.head.has_token("connection", "close"),
            "request {i} closed the connection"
        );
    }
    let targets: Vec<_> = origin
        .requests()
        .iter()
        .map(|r| r.head.target().to_owned())
        .collect();
    let expected: Vec<_> = (0..20).map(|i| format!("/request/{i}")).collect();
    assert_eq!(targets, expected);
}

#[test]
fn post_with_content_length_reaches_the_origin_intact() {
    let origin =
        Origin::http(|request| Reply::Send(ok(format!("{}", request.body.len()).as_bytes())));
    let proxy = Proxy::start(origin.addr());
    let mut client = Conn::connect(proxy.addr());

    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let mut request = format!(
        "POST /upload HTTP/1.1\r\nHost: example\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    client.write_all(&request);

    let response = client.read_final_response("POST").expect("response");
    assert_eq!(response.head.status(), 200);
    assert_eq!(response.body, b"100000");
    let received = &origin.requests()[0];
    assert_eq!(received.head.get("content-length"), Some("100000"));
    assert!(!received.head.has("transfer-encoding"));
    assert!(received.body == body, "body differs at the origin");
}

#[test]
fn post_with_chunked_body_is_reencoded_canonically() {
    let origin = Origin::http(|request| Reply::Send(ok(&request.body)));
    let proxy = Proxy::start(origin.addr());
    let mut client = Conn::connect(proxy.addr());

    let big: Vec<u8> = (0..0x1a).map(|i| b'a' + i).collect();
    let mut request =
        b"POST /chunks HTTP/1.1\r\nHost: example\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    request.extend_from_slice(b"1A;name=value\r\n");
    request.extend_from_slice(&big);
    request.extend_from_slice(b"\r\n0010\r\n0123456789abcdef\r\n5\r\nhello\r\n0\r\n\r\n");
    client.write_all(&request);

    let mut expected = big.clone();
    expected.extend_from_slice(b"0123456789abcdefhello");
    let response = client.read_final_response("POST").expect("response");
    assert_eq!(response.head.status(), 200);
    assert_eq!(response.body, expected, "body echoed by the origin");

    let received = &origin.requests()[0];
    assert_eq!(received.body, expected, "body decoded at the origin");
    assert!(received.head.has_token("transfer-encoding", "chunked"));
    assert_eq!(received.head.get_all("transfer-encoding").len(), 1);
    assert!(!received.head.has("content-length"));
    if let Err(problem) = chunked_is_canonical(&received.raw_body) {
        panic!(
            "origin received non-canonical chunked body ({problem}): {:?}",
            String::from_utf8_lossy(&received.raw_body)
        );
    }
}

#[test]
fn chunked_response_is_forwarded_and_the_connection_reused() {
    let origin = chunked_origin(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n1;ext=1\r\n,\r\n0006\r\n world\r\n0\r\n\r\n"
            .to_vec(),
    );
    let proxy = Proxy::start(origin.addr());
    let mut client = Conn::connect(proxy.addr());

    let response = get(&mut client, "/chunked");
    assert_eq!(response.head.status(), 200);
    assert_eq!(response.body, b"hello, world");
    if response.head.has("transfer-encoding") {
        assert!(!response.head.has("content-length"));
        if let Err(problem) = chunked_is_canonical(&response.raw_body) {
            panic!("client received non-canonical chunked body ({problem})");
        }
    }
    let after = get(&mut client, "/after");
    assert_eq!(after.body, b"after");
}

#[test]
fn head_response_has_no_body_and_the_connection_is_reused() {
    let origin = Origin::http(|request| {
        if request.head.method() == "HEAD" {
            Reply::Send(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: text/plain\r\n\r\n"
                    .to_vec(),
            )
        } else {
            Reply::Send(ok(b"second"))
        }
    });
    let proxy = Proxy::start(origin.addr());
    let mut client = Conn::connect(proxy.addr());

    client.write_all(b"HEAD /resource HTTP/1.1\r\nHost: example\r\n\r\n");
    let response = client.read_final_response("HEAD").expect("HEAD response");
    assert_eq!(response.head.status(), 200);
    assert_eq!(response.head.get("content-length"), Some("1234"));

    let second = get(&mut client, "/second");
    assert_eq!(second.head.status(), 200);
    assert_eq!(
        second.body, b"second",
        "the HEAD response must not have swallowed or added bytes"
    );
}

#[test]
fn not_modified_has_no_body_and_the_connection_is_reused() {
    let origin = Origin::http(|request| {
        if request.head.has("if-none-match") {
            Reply::Send(
                b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 99\r\n\r\n".to_vec(),
            )
        } else {
            Reply::Send(ok(b"fresh"))
        }
    });
    let proxy = Proxy::start(origin.addr());
    let mut client = Conn::connect(proxy.addr());

    client.write_all(b"GET /cached HTTP/1.1\r\nHost: example\r\nIf-None-Match: \"v1\"\r\n\r\n");
    let response = client.read_final_response("GET").expect("304");
    assert_eq!(response.head.status(), 304);
    assert_eq!(response.head.get("etag"), Some("\"v1\""));

    let second = get(&mut client, "/fresh");
    assert_eq!(second.head.status(), 200);
    assert_eq!(second.body, b"fresh");
}

#[test]
fn upstream_down_is_502_and_close() {
    let refusing = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
    };
    let proxy = Proxy::start(refusing);
    let mut client = Conn::connect(proxy.addr());

    let response = get(&mut client, "/");
    assert_eq!(response.head.status(), 502);
    assert!(response.head.has_token("connection", "close"));
    assert_eq!(
        client.read_to_end().expect("EOF after the canned response"),
        b""
    );
}

#[test]
fn interim_103_is_forwarded_before_the_final_response() {
    let origin = Origin::http(|_| {
        let mut answer =
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n".to_vec();
        answer.extend(ok(b"final"));
        Reply::Send(answer)
    });
    let proxy = Proxy::start(origin.addr());
    let mut client = Conn::connect(proxy.addr());

    client.write_all(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n");
    let interim = client.read_response("GET").expect("the 103");
    assert_eq!(interim.head.status(), 103);
    assert_eq!(interim.head.get("link"), Some("</style.css>; rel=preload"));
    let last = client.read_response("GET").expect("the final response");
    assert_eq!(last.head.status(), 200);
    assert_eq!(last.body, b"final");
    assert_eq!(
        get(&mut client, "/next").body,
        b"final",
        "the connection after a 103"
    );
}

#[test]
fn client_half_close_after_a_request_still_gets_the_response() {
    let origin = echo_target_origin();
    let proxy = Proxy::start(origin.addr());
    let mut client = Conn::connect(proxy.addr());

    client.write_all(b"GET /half-closed HTTP/1.1\r\nHost: example\r\n\r\n");
    client.shutdown_write();
    let response = client
        .read_final_response("GET")
        .expect("the response after the client's EOF");
    assert_eq!(response.head.status(), 200);
    assert_eq!(response.body, b"/half-closed");
    assert_eq!(client.read_to_end().expect("EOF after the response"), b"");
}

#[test]
fn client_x_forwarded_for_is_kept_and_the_client_address_appended() {
    let origin = echo_target_origin();
    let proxy = Proxy::start(origin.addr());
    let mut client = Conn::connect(proxy.addr());

    client.write_all(b"GET / HTTP/1.1\r\nHost: example\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: gopher\r\n\r\n");
    assert_eq!(
        client
            .read_final_response("GET")
            .expect("response")
            .head
            .status(),
        200
    );
    let request = &origin.requests()[0].head;
    assert_eq!(request.get_all("x-forwarded-for"), ["10.0.0.1, 127.0.0.1"]);
    assert_eq!(request.get_all("x-forwarded-proto"), ["http"]);
}

#[test]
fn large_response_body_is_streamed_intact() {
    let body: Vec<u8> = (0..8u32 << 20)
        .map(|i| (i.wrapping_mul(7) % 251) as u8)
        .collect();
    let answer = ok(&body);
    let origin = Origin::http(move |_| Reply::Send(answer.clone()));
    let proxy = Proxy::start(origin.addr());
    let mut client = Conn::connect(proxy.addr());

    let response = get(&mut client, "/large");
    assert_eq!(response.head.status(), 200);
    assert_eq!(response.body.len(), body.len());
    assert!(response.body == body, "8 MiB body differs");
    assert_eq!(get(&mut client, "/after").head.status(), 200);
}

/// Large chunks (their payload spliced on Linux, their size lines shown to the core)
/// are re-encoded with the sender's boundaries, byte-exact; the connection carries the
/// next request.
#[test]
fn large_chunked_response_body_is_streamed_intact() {
    let sizes = [300_000usize, 70_000, 1, 1 << 20, 20_000];
    let mut answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let mut body = Vec::new();
    for (k, size) in sizes.iter().enumerate() {
        let chunk: Vec<u8> = (0..*size).map(|i| (i * 31 + k) as u8).collect();
        answer.extend(format!("{size:x}\r\n").into_bytes());
        answer.extend(&chunk);
        answer.extend(b"\r\n");
        body.extend(chunk);
    }
    answer.extend(b"0\r\n\r\n");
    let origin = chunked_origin(answer);
    let proxy = Proxy::start(origin.addr());
    let mut client = Conn::connect(proxy.addr());

    let response = get(&mut client, "/chunked");
    assert_eq!(response.head.status(), 200);
    assert!(response.body == body, "chunked body differs");
    if let Err(problem) = chunked_is_canonical(&response.raw_body) {
        panic!("client received non-canonical chunked body ({problem})");
    }
    assert_eq!(get(&mut client, "/after").body, b"after");
}

/// A body delimited by the upstream's close reaches the client whole, and the client's
/// connection is closed after it.
#[test]
fn large_body_until_close_is_streamed_intact() {
    let body: Vec<u8> = (0..3u32 << 20).map(|i| (i % 241) as u8).collect();
    let mut answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
    answer.extend(&body);
    let origin = Origin::http(move |_| Reply::SendAndClose(answer.clone()));
    let proxy = Proxy::start(origin.addr());
    let mut client = Conn::connect(proxy.addr());

    let response = get(&mut client, "/until-close");
    assert_eq!(response.head.status(), 200);
    assert_eq!(response.body.len(), body.len());
    assert!(response.body == body, "body differs");
}

/// An upstream that closes inside a large body gets the client's connection closed:
/// the client never sees a complete message.
#[test]
fn large_truncated_body_closes_the_client_connection() {
    let mut answer = b"HTTP/1.1 200 OK\r\nContent-Length: 4194304\r\n\r\n".to_vec();
    answer.extend(vec![b'x'; 2 << 20]);
    let origin = Origin::http(move |_| Reply::SendAndClose(answer.clone()));
    let proxy = Proxy::start(origin.addr());
    let mut client = Conn::connect(proxy.addr());

    client.write_all(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n");
    let error = client
        .read_final_response("GET")
        .expect_err("a complete response from a truncated one");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData, "{error}");
}

#[test]
fn upstream_closing_without_a_response_is_502() {
    let origin = Origin::http(|_| Reply::Close);
    let proxy = Proxy::start(origin.addr());
    let mut client = Conn::connect(proxy.addr());

    let response = get(&mut client, "/");
    assert_eq!(response.head.status(), 502);
    assert!(response.head.has_token("connection", "close"));
}

#[test]
fn truncated_upstream_body_closes_the_client_connection() {
    let origin = Origin::http(|_| {
        Reply::SendAndClose(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b".to_vec())
    });
    let proxy = Proxy::start(origin.addr());
    let mut client = Conn::connect(proxy.addr());

    client.write_all(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n");
    // The head may already be on its way; the body can never complete, so the proxy
    // must close instead of leaving the client waiting for 90 more bytes.
    match client.read_final_response("GET") {
        Ok(response) => assert_eq!(
            response.head.status(),
            502,
            "a complete response from a truncated one"
        ),
        Err(e) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::InvalidData,
            "expected EOF inside the body, got {e}"
        ),
    }
}
