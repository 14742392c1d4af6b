//! A table-driven corpus of request- and response-side framing attacks (RFC 9112 §6,
//! RFC 9110 §5.5), run end to end. Each vector asserts the status and that nothing
//! smuggled got through: for requests, the origin receives nothing (or, for bodies,
//! no complete request and never the request hidden behind); for responses, the client
//! never receives the origin's message.
//!
//! Classes come from Http11Probe, HTTP Garden, smuggler's Transfer-Encoding mutations
//! and nginx-tests; the decisions where RFCs leave a choice are in docs/DECISIONS.md
//! (bare LF rejected, repeated Content-Length rejected even when equal).

use switchyard_e2e::{ok, origin_saw_only_a_probe, send_raw, Conn, Origin, Proxy, Reply};

/// A request hidden behind each vector: it must never reach the origin.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: example\r\n\r\n";
const POST: &str = "POST /vector HTTP/1.1\r\nHost: example\r\n";

fn plain_origin() -> Origin {
    Origin::http(|request| Reply::Send(ok(request.head.target().as_bytes())))
}

fn report(failures: Vec<String>, total: usize) {
    assert!(
        failures.is_empty(),
        "{} of {total} vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Request heads that must be rejected before anything is forwarded: (name, head without
/// the final blank line, allowed statuses).
const REQUEST_HEADS: &[(&str, &str, &[u16])] = &[
    // Content-Length and Transfer-Encoding together, in both orders and in HTTP/1.0.
    (
        "CL then TE",
        "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        &[400],
    ),
    (
        "TE then CL",
        "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
        &[400],
    ),
    (
        "CL and TE in HTTP/1.0",
        "\x00HTTP/1.0 Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        &[400],
    ),
    // Content-Length values.
    (
        "two differing CL",
        "Content-Length: 4\r\nContent-Length: 5\r\n",
        &[400],
    ),
    (
        "two equal CL",
        "Content-Length: 4\r\nContent-Length: 4\r\n",
        &[400],
    ),
    (
        "CL list of equal values",
        "Content-Length: 4, 4\r\n",
        &[400],
    ),
    (
        "CL list of differing values",
        "Content-Length: 4, 5\r\n",
        &[400],
    ),
    ("CL with plus sign", "Content-Length: +4\r\n", &[400]),
    ("CL negative", "Content-Length: -1\r\n", &[400]),
    ("CL hex", "Content-Length: 0x4\r\n", &[400]),
    ("CL empty", "Content-Length: \r\n", &[400]),
    ("CL with inner space", "Content-Length: 4 4\r\n", &[400]),
    ("CL with letter", "Content-Length: 4a\r\n", &[400]),
    ("CL decimal point", "Content-Length: 4.0\r\n", &[400]),
    (
        "CL over 64 bits",
        "Content-Length: 184467440737095516160\r\n",
        &[400, 413],
    ),
    // Transfer-Encoding mutations.
    (
        "TE xchunked",
        "Transfer-Encoding: xchunked\r\n",
        &[400, 501],
    ),
    (
        "TE chunked not last",
        "Transfer-Encoding: chunked, gzip\r\n",
        &[400, 501],
    ),
    ("TE gzip only", "Transfer-Encoding: gzip\r\n", &[400, 501]),
    (
        "TE identity",
        "Transfer-Encoding: identity\r\n",
        &[400, 501],
    ),
    (
        "TE quoted",
        "Transfer-Encoding: \"chunked\"\r\n",
        &[400, 501],
    ),
    (
        "TE vertical tab",
        "Transfer-Encoding: chunked\x0b\r\n",
        &[400, 501],
    ),
    (
        "TE form feed",
        "Transfer-Encoding: chunked\x0c\r\n",
        &[400, 501],
    ),
    ("TE NUL", "Transfer-Encoding: chunked\x00\r\n", &[400, 501]),
    (
        "TE bare CR",
        "Transfer-Encoding: chunked\r\r\n",
        &[400, 501],
    ),
    (
        "TE repeated field",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        &[400],
    ),
    (
        "TE chunked twice",
        "Transfer-Encoding: chunked, chunked\r\n",
        &[400],
    ),
    (
        "TE space before colon",
        "Transfer-Encoding : chunked\r\n",
        &[400],
    ),
    (
        "TE tab before colon",
        "Transfer-Encoding\t: chunked\r\n",
        &[400],
    ),
    (
        "TE folded value",
        "Transfer-Encoding:\r\n chunked\r\n",
        &[400],
    ),
    (
        "TE line folded onto another",
        "X-Before: 1\r\n Transfer-Encoding: chunked\r\n",
        &[400],
    ),
    (
        "TE after bare LF",
        "X-Before: 1\nTransfer-Encoding: chunked\r\n",
        &[400],
    ),
    (
        "TE in HTTP/1.0",
        "\x00HTTP/1.0 Transfer-Encoding: chunked\r\n",
        &[400],
    ),
    // Field syntax.
    ("CL space before colon", "Content-Length : 4\r\n", &[400]),
    ("obs-fold", "X-Folded: a\r\n b\r\n", &[400]),
    ("NUL in value", "X-Nul: a\x00b\r\n", &[400]),
    ("bare CR in value", "X-Cr: a\rb\r\n", &[400]),
    ("DEL in value", "X-Del: a\x7fb\r\n", &[400]),
    ("parenthesis in name", "X(Bad): 1\r\n", &[400]),
    ("space in name", "X Bad: 1\r\n", &[400]),
    ("empty name", ": 1\r\n", &[400]),
    ("non-ASCII name", "X-\u{dc}: 1\r\n", &[400]),
    ("line without colon", "X-No-Colon\r\n", &[400]),
    // Host.
    ("missing Host", "\x00NOHOST X-Any: 1\r\n", &[400]),
    ("two Host fields", "Host: other\r\n", &[400]),
];

/// Request lines that must be rejected: (name, whole head, allowed statuses).
const REQUEST_LINES: &[(&str, &str, &[u16])] = &[
    (
        "double space in request line",
        "GET  / HTTP/1.1\r\nHost: example\r\n\r\n",
        &[400],
    ),
    (
        "garbage version",
        "GET / HTXP/1.1\r\nHost: example\r\n\r\n",
        &[400],
    ),
    (
        "HTTP/2.0 version",
        "GET / HTTP/2.0\r\nHost: example\r\n\r\n",
        &[400, 505],
    ),
    (
        "control character in target",
        "GET /a\x01b HTTP/1.1\r\nHost: example\r\n\r\n",
        &[400],
    ),
    (
        "space in target",
        "GET /a b HTTP/1.1\r\nHost: example\r\n\r\n",
        // Read as target "/a" and version "b HTTP/1.1": 505 is as safe as 400.
        &[400, 505],
    ),
    (
        "bare LF line endings",
        "GET / HTTP/1.1\nHost: example\n\n",
        &[400],
    ),
    (
        "bare LF after request line",
        "GET / HTTP/1.1\nHost: example\r\n\r\n",
        &[400],
    ),
];

/// Builds a request from a [`REQUEST_HEADS`] entry; a leading NUL marks a variant
/// (`HTTP/1.0` start line, or no `Host`).
fn request_for(fields: &str) -> String {
    if let Some(rest) = fields.strip_prefix("\x00HTTP/1.0 ") {
        format!("POST /vector HTTP/1.0\r\nHost: example\r\n{rest}\r\n")
    } else if let Some(rest) = fields.strip_prefix("\x00NOHOST ") {
        format!("POST /vector HTTP/1.1\r\n{rest}\r\n")
    } else {
        format!("{POST}{fields}\r\n")
    }
}

fn run_rejected_request(case: &str, head: &str, allowed: &[u16], failures: &mut Vec<String>) {
    let origin = plain_origin();
    let proxy = Proxy::start(origin.addr());
    // A body that also reads as an empty chunked body, then the hidden request.
    let input = format!("{head}0\r\n\r\n{SMUGGLED}");
    let (status, rest) = send_raw(proxy.addr(), input.as_bytes());
    if !allowed.contains(&status) {
        failures.push(format!(
            "{case}: status {status}, expected one of {allowed:?}"
        ));
    }
    if !rest.is_empty() {
        failures.push(format!(
            "{case}: after the response the client received {:?}",
            String::from_utf8_lossy(&rest)
        ));
    }
    if let Err(problem) = origin_saw_only_a_probe(&origin, proxy.addr()) {
        failures.push(format!("{case}: {problem}"));
    }
}

#[test]
fn request_head_vectors_are_rejected_and_reach_nothing() {
    let mut failures = Vec::new();
    for &(case, fields, allowed) in REQUEST_HEADS {
        run_rejected_request(case, &request_for(fields), allowed, &mut failures);
    }
    for &(case, head, allowed) in REQUEST_LINES {
        run_rejected_request(case, head, allowed, &mut failures);
    }
    report(failures, REQUEST_HEADS.len() + REQUEST_LINES.len());
}

/// Chunked request bodies that must be rejected: the head may already be forwarded, but
/// the client gets 400, the origin never receives a complete request, and never the
/// request hidden behind the bad chunk.
const CHUNKED_BODIES: &[(&str, &str)] = &[
    ("size with 0x", "0x5\r\nhello\r\n0\r\n\r\n"),
    ("size with plus", "+5\r\nhello\r\n0\r\n\r\n"),
    ("size negative", "-5\r\nhello\r\n0\r\n\r\n"),
    ("size with underscore", "0_5\r\nhello\r\n0\r\n\r\n"),
    ("size with leading space", " 5\r\nhello\r\n0\r\n\r\n"),
    ("size with trailing space", "5 \r\nhello\r\n0\r\n\r\n"),
    (
        "size over 64 bits",
        "1ffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    ),
    ("size not hex", "g\r\nhello\r\n0\r\n\r\n"),
    ("size empty", "\r\nhello\r\n0\r\n\r\n"),
    ("size ended by bare LF", "5\nhello\r\n0\r\n\r\n"),
    ("data without CRLF", "5\r\nhelloXX0\r\n\r\n"),
    ("data ended by bare LF", "5\r\nhello\n0\r\n\r\n"),
    ("last chunk ended by bare LF", "5\r\nhello\r\n0\n\r\n"),
    (
        "malformed trailer",
        "5\r\nhello\r\n0\r\nBad Trailer\r\n\r\n",
    ),
    ("folded trailer", "5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n"),
];

#[test]
fn chunked_body_vectors_are_400_and_smuggle_nothing() {
    let mut failures = Vec::new();
    for &(case, body) in CHUNKED_BODIES {
        let origin = plain_origin();
        let proxy = Proxy::start(origin.addr());
        let input = format!("{POST}Transfer-Encoding: chunked\r\n\r\n{body}{SMUGGLED}");
        let (status, rest) = send_raw(proxy.addr(), input.as_bytes());
        if status != 400 {
            failures.push(format!("{case}: status {status}, expected 400"));
        }
        if !rest.is_empty() {
            failures.push(format!(
                "{case}: after the response the client received {:?}",
                String::from_utf8_lossy(&rest)
            ));
        }
        let received = String::from_utf8_lossy(&origin.received_all()).into_owned();
        if received.contains("/smuggled") {
            failures.push(format!(
                "{case}: the origin received the hidden request: {received:?}"
            ));
        }
        if origin
            .requests()
            .iter()
            .any(|request| request.head.target() == "/vector")
        {
            failures.push(format!(
                "{case}: the origin received a complete request: {received:?}"
            ));
        }
    }
    report(failures, CHUNKED_BODIES.len());
}

/// Response heads the proxy must refuse with 502: (name, the origin's whole answer).
const RESPONSE_HEADS: &[(&str, &str)] = &[
    ("CL and TE", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    ("two differing CL", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    ("two equal CL", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
    ("CL list", "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello"),
    ("CL with plus sign", "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello"),
    ("CL space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello"),
    ("obs-fold", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Folded: a\r\n b\r\n\r\nhello"),
    ("TE xchunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    ("TE chunked twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    ("NUL in value", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Nul: a\x00b\r\n\r\nhello"),
    ("bare CR in value", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Cr: a\rb\r\n\r\nhello"),
    ("bare LF line endings", "HTTP/1.1 200 OK\nContent-Length: 5\n\nhello"),
    ("invalid name", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX(Bad): 1\r\n\r\nhello"),
    ("four-digit status", "HTTP/1.1 2000 OK\r\nContent-Length: 5\r\n\r\nhello"),
    ("two-digit status", "HTTP/1.1 20 OK\r\nContent-Length: 5\r\n\r\nhello"),
    ("non-numeric status", "HTTP/1.1 2x0 OK\r\nContent-Length: 5\r\n\r\nhello"),
    ("garbage version", "HTXP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
];

#[test]
fn response_head_vectors_are_502_and_reach_no_client() {
    let mut failures = Vec::new();
    for &(case, answer) in RESPONSE_HEADS {
        let origin = Origin::http(move |_| Reply::SendAndClose(answer.as_bytes().to_vec()));
        let proxy = Proxy::start(origin.addr());
        let mut client = Conn::connect(proxy.addr());
        client.write_all(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n");
        let Ok(response) = client.read_final_response("GET") else {
            failures.push(format!("{case}: no response"));
            continue;
        };
        if response.head.status() != 502 {
            failures.push(format!(
                "{case}: status {}, expected 502",
                response.head.status()
            ));
        }
        let mut everything = response.raw();
        everything.extend(client.read_to_end().unwrap_or_default());
        let text = String::from_utf8_lossy(&everything);
        if text.contains("hello") || text.contains("200 OK") {
            failures.push(format!(
                "{case}: the client received part of the origin's answer: {text:?}"
            ));
        }
    }
    report(failures, RESPONSE_HEADS.len());
}

/// Chunked response bodies that break mid-way: the head may already have reached the
/// client, but the client must never get a complete message from them.
const RESPONSE_BODIES: &[(&str, &str)] = &[
    ("size with 0x", "0x5\r\nhello\r\n0\r\n\r\n"),
    (
        "size over 64 bits",
        "1ffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    ),
    ("data without CRLF", "5\r\nhelloXX0\r\n\r\n"),
    ("size ended by bare LF", "5\nhello\r\n0\r\n\r\n"),
];

#[test]
fn response_body_vectors_never_complete_a_message() {
    let mut failures = Vec::new();
    for &(case, body) in RESPONSE_BODIES {
        let answer = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
        let origin = Origin::http(move |_| Reply::SendAndClose(answer.clone().into_bytes()));
        let proxy = Proxy::start(origin.addr());
        let mut client = Conn::connect(proxy.addr());
        client.write_all(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n");
        match client.read_final_response("GET") {
            Ok(response) if response.head.status() == 502 => {}
            Ok(response) => failures.push(format!(
                "{case}: the client received a complete {} with body {:?}",
                response.head.status(),
                String::from_utf8_lossy(&response.body)
            )),
            // A truncated message: the proxy cut the connection when the body broke.
            Err(_) => {}
        }
    }
    report(failures, RESPONSE_BODIES.len());
}

/// Look-alikes that are valid and must be forwarded intact, so the corpus cannot pass by
/// rejecting everything.
#[test]
fn valid_look_alikes_are_forwarded_intact() {
    let origin = Origin::http(|request| Reply::Send(ok(&request.body)));
    let proxy = Proxy::start(origin.addr());

    // `Connection` naming Content-Length must not strip it: the body would become a request.
    let mut client = Conn::connect(proxy.addr());
    let request = format!(
        "{POST}Connection: Content-Length\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
        SMUGGLED.len()
    );
    client.write_all(request.as_bytes());
    let response = client.read_final_response("POST").expect("response");
    assert_eq!(response.head.status(), 200);
    assert_eq!(
        response.body,
        SMUGGLED.as_bytes(),
        "Connection: Content-Length"
    );

    // Transfer codings are case-insensitive.
    let mut client = Conn::connect(proxy.addr());
    client.write_all(
        format!("{POST}Transfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").as_bytes(),
    );
    let response = client.read_final_response("POST").expect("response");
    assert_eq!(response.head.status(), 200);
    assert_eq!(response.body, b"hello", "Transfer-Encoding: Chunked");

    let targets: Vec<_> = origin
        .requests()
        .iter()
        .map(|r| r.head.target().to_owned())
        .collect();
    assert_eq!(
        targets,
        ["/vector", "/vector"],
        "requests the origin received"
    );
}
