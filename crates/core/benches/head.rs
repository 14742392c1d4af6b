//! Request head parse + rewrite through the core, against a bare `httparse` parse of the
//! same bytes (the target is at most 2× the bare parse).
//!
//! For each head, three measurements:
//! - `httparse`: `httparse::Request::parse` into a stack array of 64 fields;
//! - `core`: what a new client connection costs up to the rewritten head: a fresh
//!   [`Connection`], the head fed as one read, `UpstreamConnected`, outputs drained until
//!   the `ToUpstream` head (the read buffer is made outside the timing, as an adapter's
//!   read buffer would be);
//! - `core_warm`: the same on a kept-alive connection (made, and one exchange served on
//!   it, outside the timing): what each later request of a connection costs;
//! - `core_steady`: the same on one connection serving request after request, its
//!   response fed and its outputs dropped outside the timing. The allocator is then in
//!   the state a proxy leaves it in (the last exchange's memory just freed), which the
//!   batched `core_warm` is not: it makes thousands of connections before it times any
//!   of them, so their allocations miss the allocator's thread cache.
//!
//! ```text
//! cargo bench -p switchyard-core --bench head
//! ```

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use switchyard_core::{Config, Connection, Input, Output, PeerInfo, StateKind};

/// A typical browser navigation.
const BROWSER_GET: &[u8] = b"GET /static/app/index.html?lang=en&v=2 HTTP/1.1\r\n\
Host: www.example.com\r\n\
Connection: keep-alive\r\n\
Cache-Control: max-age=0\r\n\
sec-ch-ua: \"Chromium\";v=\"130\", \"Google Chrome\";v=\"130\", \"Not?A_Brand\";v=\"99\"\r\n\
sec-ch-ua-mobile: ?0\r\n\
sec-ch-ua-platform: \"Linux\"\r\n\
Upgrade-Insecure-Requests: 1\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8\r\n\
Sec-Fetch-Site: none\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-User: ?1\r\n\
Sec-Fetch-Dest: document\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Cookie: session=8f14e45fceea167a5a36dedd4bea2543; theme=dark\r\n\r\n";

/// A browser's WebSocket opening handshake.
const WEBSOCKET_UPGRADE: &[u8] = b"GET /chat/socket?room=42 HTTP/1.1\r\n\
Host: www.example.com\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: https://www.example.com\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

/// An API call with 20 header fields.
const TWENTY_HEADERS: &[u8] = b"POST /api/v2/orders/batch HTTP/1.1\r\n\
Host: api.example.com\r\n\
User-Agent: example-client/4.2.1\r\n\
Accept: application/json\r\n\
Accept-Encoding: gzip\r\n\
Accept-Language: en\r\n\
Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl\r\n\
Content-Type: application/json\r\n\
Content-Length: 0\r\n\
Connection: keep-alive\r\n\
X-Request-Id: 3f2504e0-4f89-11d3-9a0c-0305e82c3301\r\n\
X-Correlation-Id: 7c9e6679-7425-40de-944b-e07fc1f90ae7\r\n\
X-Forwarded-For: 203.0.113.7\r\n\
X-Api-Version: 2024-10-01\r\n\
X-Client-Region: eu-west-1\r\n\
X-Feature-Flags: beta-checkout,new-pricing\r\n\
If-None-Match: \"33a64df551425fcc55e4d42a148795d9f25f89d4\"\r\n\
Cache-Control: no-cache\r\n\
Origin: https://shop.example.com\r\n\
Referer: https://shop.example.com/cart\r\n\
Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n";

const HEADS: [(&str, &[u8]); 3] = [
    ("browser_get", BROWSER_GET),
    ("websocket_upgrade", WEBSOCKET_UPGRADE),
    ("twenty_headers", TWENTY_HEADERS),
];

fn peer() -> PeerInfo {
    PeerInfo {
        client_addr: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))),
        ..PeerInfo::default()
    }
}

/// What a new connection costs up to its upstream head (a function of its own, so a
/// profiler can single it out: `--toggle-collect='*head::core_once*'`).
#[inline(never)]
fn core_once(config: &Arc<Config>, head: BytesMut, now: Instant) -> (Connection, Bytes) {
    let mut conn = Connection::new(config.clone(), peer(), now);
    let out = rewrite(&mut conn, head, now);
    (conn, out)
}

/// The same on a connection made beforehand (`--toggle-collect='*head::warm_once*'`).
#[inline(never)]
fn warm_once(mut conn: Connection, head: BytesMut, now: Instant) -> (Connection, Bytes) {
    let out = rewrite(&mut conn, head, now);
    (conn, out)
}

/// One request of a connection that serves request after request
/// (`--toggle-collect='*head::steady_once*'`).
#[inline(never)]
fn steady_once(conn: &mut Connection, head: BytesMut, now: Instant) -> Bytes {
    rewrite(conn, head, now)
}

/// The bare parse (`--toggle-collect='*head::httparse_once*'`).
#[inline(never)]
fn httparse_once(head: &[u8]) {
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut fields);
    let status = request.parse(black_box(head)).unwrap();
    black_box((status, request.method, request.path, request.headers.len()));
}

/// Feeds `head` to `conn` and returns the head it writes towards the upstream.
fn rewrite(conn: &mut Connection, head: BytesMut, now: Instant) -> Bytes {
    conn.handle_input(Input::ClientData(head), now).unwrap();
    while let Some(output) = conn.poll_output() {
        if let Output::Connect(_) = output {
            conn.handle_input(Input::UpstreamConnected { reused: false }, now)
                .unwrap();
        } else if let Output::ToUpstream(bytes) = output {
            return bytes;
        }
    }
    panic!("no head towards the upstream");
}

/// A connection that served one exchange for `head` and waits for its next request.
fn kept_alive(config: &Arc<Config>, head: &[u8], now: Instant) -> Connection {
    let mut conn = Connection::new(config.clone(), peer(), now);
    rewrite(&mut conn, BytesMut::from(head), now);
    respond(&mut conn, head, now);
    conn
}

/// Answers the exchange of `head` on `conn` and drains its outputs: the connection then
/// waits for its next request.
fn respond(conn: &mut Connection, head: &[u8], now: Instant) {
    let response = if head.starts_with(b"GET /chat") {
        // Not upgraded: the connection stays HTTP.
        &b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"[..]
    } else {
        &b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"[..]
    };
    conn.handle_input(Input::UpstreamData(BytesMut::from(response)), now)
        .unwrap();
    while conn.poll_output().is_some() {}
    assert_eq!(conn.state(), StateKind::ReadingHead, "kept alive");
}

fn bench_heads(c: &mut Criterion) {
    let config = Arc::new(Config::default());
    let now = Instant::now();
    for (name, head) in HEADS {
        // Sanity: both parse the whole head, and the core forwards it.
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let parsed = httparse::Request::new(&mut fields).parse(head).unwrap();
        assert_eq!(parsed, httparse::Status::Complete(head.len()));
        let mut conn = Connection::new(config.clone(), peer(), now);
        let out = rewrite(&mut conn, BytesMut::from(head), now);
        assert!(out.starts_with(&head[..head.iter().position(|&b| b == b' ').unwrap()]));

        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(head.len() as u64));
        group.bench_function("httparse", |b| b.iter(|| httparse_once(head)));
        group.bench_function("core", |b| {
            b.iter_batched(
                || BytesMut::from(head),
                |buf| core_once(&config, black_box(buf), now),
                BatchSize::SmallInput,
            )
        });
        group.bench_function("core_warm", |b| {
            b.iter_batched(
                || (kept_alive(&config, head, now), BytesMut::from(head)),
                |(conn, buf)| warm_once(conn, black_box(buf), now),
                BatchSize::SmallInput,
            )
        });
        group.bench_function("core_steady", |b| {
            b.iter_custom(|iters| {
                let mut conn = kept_alive(&config, head, now);
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let buf = BytesMut::from(head);
                    let start = Instant::now();
                    let out = steady_once(&mut conn, black_box(buf), now);
                    timed += start.elapsed();
                    drop(black_box(out));
                    respond(&mut conn, head, now);
                }
                timed
            })
        });
        group.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_heads
}
criterion_main!(benches);
