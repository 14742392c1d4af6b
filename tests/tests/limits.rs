//! Size limits, routing and the connection limit, end to end: each rejection carries its
//! status, closes, and reaches nothing upstream.

use std::time::Duration;

use switchyard_e2e::{ok, Conn, Origin, Proxy, Reply};

fn target_origin() -> Origin {
    Origin::http(|request| Reply::Send(ok(request.head.target().as_bytes())))
}

/// Writes `input` in pieces of `piece` bytes (stopping if the proxy closes) and returns
/// the status the proxy answered.
fn status_for(proxy: &Proxy, input: &[u8], piece: usize) -> u16 {
    let mut client = Conn::connect(proxy.addr());
    for part in input.chunks(piece) {
        if client.try_write_all(part).is_err() {
            break;
        }
    }
    let response = client.read_final_response("GET").expect("a response");
    assert!(
        response.head.has_token("connection", "close"),
        "{:?} without Connection: close",
        response.head.start_line
    );
    response.head.status()
}

#[test]
fn request_line_over_8_kib_is_414() {
    let origin = target_origin();
    let proxy = Proxy::start(origin.addr());
    let request = format!(
        "GET /{} HTTP/1.1\r\nHost: example\r\n\r\n",
        "a".repeat(9 * 1024)
    );
    assert_eq!(status_for(&proxy, request.as_bytes(), usize::MAX), 414);
    assert_eq!(origin.accepted(), 0, "the origin was contacted");
}

#[test]
fn head_over_the_limit_is_431_even_in_small_writes() {
    let origin = target_origin();
    let proxy = Proxy::start(origin.addr());
    let mut request = b"GET / HTTP/1.1\r\nHost: example\r\n".to_vec();
    for i in 0..40 {
        request.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "b".repeat(1000)).as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    assert_eq!(status_for(&proxy, &request, 100), 431);
    assert_eq!(origin.accepted(), 0, "the origin was contacted");
}

#[test]
fn more_than_100_header_fields_is_431() {
    let origin = target_origin();
    let proxy = Proxy::start(origin.addr());
    let mut request = b"GET / HTTP/1.1\r\nHost: example\r\n".to_vec();
    for i in 0..101 {
        request.extend_from_slice(format!("X-Field-{i}: {i}\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    assert_eq!(status_for(&proxy, &request, usize::MAX), 431);
    assert_eq!(origin.accepted(), 0, "the origin was contacted");
}

#[test]
fn body_over_max_body_bytes_is_413() {
    let origin = target_origin();
    let proxy = Proxy::start_with(origin.addr(), |config| {
        config.core.routes[0].max_body_bytes = Some(10)
    });
    let request = b"POST / HTTP/1.1\r\nHost: example\r\nContent-Length: 11\r\n\r\nhello world";
    assert_eq!(status_for(&proxy, request, usize::MAX), 413);
    assert_eq!(origin.accepted(), 0, "the origin was contacted");

    let within = b"POST /small HTTP/1.1\r\nHost: example\r\nContent-Length: 10\r\n\r\nhello worl";
    let mut client = Conn::connect(proxy.addr());
    client.write_all(within);
    let response = client.read_final_response("POST").expect("a response");
    assert_eq!(response.head.status(), 200);
}

#[test]
fn chunked_body_over_max_body_bytes_is_413_and_not_forwarded_whole() {
    let origin = target_origin();
    let proxy = Proxy::start_with(origin.addr(), |config| {
        config.core.routes[0].max_body_bytes = Some(10)
    });
    let request = b"POST /big HTTP/1.1\r\nHost: example\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n6\r\nworld!\r\n0\r\n\r\n";
    assert_eq!(status_for(&proxy, request, usize::MAX), 413);
    let received = String::from_utf8_lossy(&origin.received_all()).into_owned();
    assert!(
        !received.contains("world!"),
        "the origin received the body past the limit: {received:?}"
    );
}

#[test]
fn path_matching_no_route_is_404() {
    let origin = target_origin();
    let proxy = Proxy::start_with(origin.addr(), |config| {
        config.core.routes[0].prefix = "/api/".into()
    });
    assert_eq!(
        status_for(
            &proxy,
            b"GET /other HTTP/1.1\r\nHost: example\r\n\r\n",
            usize::MAX
        ),
        404
    );
    assert_eq!(origin.accepted(), 0, "the origin was contacted");

    let mut client = Conn::connect(proxy.addr());
    client.write_all(b"GET /api/users HTTP/1.1\r\nHost: example\r\n\r\n");
    let response = client.read_final_response("GET").expect("a response");
    assert_eq!(response.body, b"/api/users");
}

#[test]
fn above_max_connections_accepting_pauses_until_a_slot_frees() {
    let origin = target_origin();
    let proxy = Proxy::start_with(origin.addr(), |config| config.max_connections = 1);

    let mut first = Conn::connect(proxy.addr());
    first.write_all(b"GET /first HTTP/1.1\r\nHost: example\r\n\r\n");
    assert_eq!(
        first
            .read_final_response("GET")
            .expect("first response")
            .body,
        b"/first"
    );

    // The kernel completes the handshake, but the proxy does not serve the second
    // connection while the first one holds the only slot.
    let mut second = Conn::connect(proxy.addr());
    second.write_all(b"GET /second HTTP/1.1\r\nHost: example\r\n\r\n");
    second
        .stream()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("set_read_timeout");
    let early = second.read_final_response("GET");
    assert!(
        early.is_err(),
        "the second connection was served above max_connections: {early:?}"
    );

    drop(first);
    second
        .stream()
        .set_read_timeout(Some(switchyard_e2e::IO_TIMEOUT))
        .expect("set_read_timeout");
    let response = second
        .read_final_response("GET")
        .expect("served once the first closed");
    assert_eq!(response.body, b"/second");
}
