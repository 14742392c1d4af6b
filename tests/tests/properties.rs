//! Property, end to end: whatever a client sends, every request the origin receives is
//! well-formed (CRLF-terminated, valid field names, no controls, no obs-fold) and free of
//! hop-by-hop fields, including those the client named in `Connection`.

use proptest::prelude::*;
use switchyard_e2e::{ok, Conn, Origin, Proxy, Reply};

/// Header lines a client might send: mostly valid (hop-by-hop ones included), sometimes
/// malformed (a conflicting second `Content-Length` or `Host` among them).
fn field_line() -> impl Strategy<Value = String> {
    let valid = prop::sample::select(vec![
        "X-Plain: value\r\n",
        "X-Other: a, b\r\n",
        "Keep-Alive: timeout=5\r\n",
        "Proxy-Authorization: Basic c2VjcmV0\r\n",
        "Proxy-Connection: keep-alive\r\n",
        "TE: trailers\r\n",
        "Trailer: X-Checksum\r\n",
        "Upgrade: websocket\r\n",
        "Upgrade: h2c\r\n",
        "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        "Sec-WebSocket-Version: 13\r\n",
        "Content-Length: 5\r\n",
        "Transfer-Encoding: chunked\r\n",
        "X-Private: secret\r\n",
    ]);
    let malformed = prop::sample::select(vec![
        "Content-Length: 0\r\n",
        "Transfer-Encoding: gzip, chunked\r\n",
        "Host: other\r\n",
        "X-Folded: a\r\n b\r\n",
        "X-Space : b\r\n",
        "X-Bare-Lf: b\n",
        "X-Nul: a\0b\r\n",
        "X-Cr: a\rb\r\n",
        "X(Bad): 1\r\n",
    ]);
    let connection = prop::collection::vec(
        prop::sample::select(vec![
            "close",
            "keep-alive",
            "Upgrade",
            "X-Private",
            "HTTP2-Settings",
            "X-Plain",
            "TE",
        ]),
        0..4,
    )
    .prop_map(|tokens| format!("Connection: {}\r\n", tokens.join(", ")));
    // A field with a random value drawn from an alphabet rich in delimiters and controls.
    let random_value = prop::collection::vec(
        prop::sample::select(vec![
            'a', 'Z', ' ', '\t', ',', ';', ':', '"', '\r', '\n', '\0', '\x0b', '\u{e9}',
        ]),
        0..12,
    )
    .prop_map(|chars| format!("X-Random: {}\r\n", chars.into_iter().collect::<String>()));
    prop_oneof![
        10 => valid.prop_map(str::to_owned),
        3 => connection,
        1 => malformed.prop_map(str::to_owned),
        1 => random_value,
    ]
}

fn body() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "",
        "hello",
        "5\r\nhello\r\n0\r\n\r\n",
        "0\r\n\r\n",
        "5;ext=1\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n",
        "0x5\r\nhello\r\n0\r\n\r\n",
        "GET /smuggled HTTP/1.1\r\nHost: example\r\n\r\n",
    ])
    .prop_map(str::to_owned)
}

fn request() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["GET", "POST", "HEAD"]),
        prop::sample::select(vec!["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]),
        any::<bool>(),
        prop::collection::vec(field_line(), 0..8),
        body(),
    )
        .prop_map(|(method, version, host, fields, body)| {
            let host = if host { "Host: example\r\n" } else { "" };
            format!(
                "{method} /p {version}\r\n{host}{}\r\n{body}",
                fields.concat()
            )
        })
}

/// Requests, each with its index in its target (`/p0`, `/p1`, ...) so a request the
/// origin receives can be matched with the one the client sent.
fn numbered_requests() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(request(), 1..3).prop_map(|requests| {
        requests
            .into_iter()
            .enumerate()
            .map(|(index, request)| request.replacen(" /p ", &format!(" /p{index} "), 1))
            .collect()
    })
}

/// Field names the client's `Connection` fields named (Host and Content-Length excepted:
/// the proxy forwards those whatever `Connection` says).
fn named_in_connection(request: &str) -> Vec<String> {
    let head = request.split("\r\n\r\n").next().unwrap_or_default();
    head.split("\r\n")
        .filter_map(|line| line.strip_prefix("Connection:"))
        .flat_map(|value| value.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .filter(|token| !token.is_empty() && token != "host" && token != "content-length")
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn origin_receives_only_well_formed_requests_without_hop_by_hop_fields(
        requests in numbered_requests(),
        split in 1usize..64,
    ) {
        let origin = Origin::http(|_| Reply::Send(ok(b"fine")));
        let proxy = Proxy::start(origin.addr());
        let input = requests.concat();
        let mut client = Conn::connect(proxy.addr());
        // Write in pieces (the last one may be short) so heads straddle reads.
        let piece = input.len().div_ceil(split).max(1);
        for part in input.as_bytes().chunks(piece) {
            if client.try_write_all(part).is_err() {
                break;
            }
        }
        let _ = client.stream().shutdown(std::net::Shutdown::Write);
        let _ = client.read_to_end();

        for received in origin.requests() {
            let head = &received.head;
            // Fields named in the `Connection` of the client request this one came from
            // (none for a request that was the body of another).
            let sent = head.target().strip_prefix("/p").and_then(|index| index.parse::<usize>().ok());
            let named = sent.map(|index| named_in_connection(&requests[index])).unwrap_or_default();
            let named: Vec<&str> = named.iter().map(String::as_str).collect();
            prop_assert!(head.problems().is_empty(), "{:?} in {:?}", head.problems(), String::from_utf8_lossy(&head.raw));
            let mut hop_by_hop = head.hop_by_hop_present(&named);
            // A forwarded WebSocket proposal keeps `Upgrade: websocket` with `Connection: upgrade`.
            if head.get("upgrade").is_some_and(|value| value.eq_ignore_ascii_case("websocket"))
                && head.has_token("connection", "upgrade")
            {
                hop_by_hop.retain(|name| name != "upgrade");
            }
            prop_assert!(hop_by_hop.is_empty(), "{:?} in {:?}", hop_by_hop, String::from_utf8_lossy(&head.raw));
            prop_assert!(!head.has("http2-settings"), "HTTP2-Settings in {:?}", String::from_utf8_lossy(&head.raw));
            for coding in head.get_all("transfer-encoding") {
                prop_assert!(coding.eq_ignore_ascii_case("chunked"), "Transfer-Encoding: {coding} forwarded");
            }
        }
    }
}
