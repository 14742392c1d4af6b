//! The PROXY protocol end to end, with raw `std::net` peers: a listener that requires a
//! header takes the client's address from it (v1 and v2, IPv4 and IPv6) for
//! `X-Forwarded-For` and the status page, refuses anything else by closing without a
//! byte (nothing reaches the origin), keeps the socket's address for `UNKNOWN`/`LOCAL`,
//! bounds the header by `header_timeout`; an upstream group with `send_proxy_protocol`
//! gets a v2 header on every new connection, never a pooled one.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard_e2e::{ok, ws_config, Conn, Origin, Proxy, Reply};
use tungstenite::Message as WsMessage;

const REQUEST: &[u8] = b"GET /who HTTP/1.1\r\nHost: example\r\n\r\n";

fn origin() -> Origin {
    Origin::http(|_| Reply::Send(ok(b"hello")))
}

/// A proxy whose every listener requires the header.
fn requiring(origin: &Origin, configure: impl FnOnce(&mut switchyard_smol::ServerConfig)) -> Proxy {
    Proxy::start_with(origin.addr(), |config| {
        config.proxy_protocol.accept_on = config.listen.clone();
        configure(config);
    })
}

/// Sends `header` then a request, and returns the `X-Forwarded-For` the origin saw.
fn forwarded_for(proxy: &Proxy, origin: &Origin, header: &[u8]) -> String {
    let mut client = Conn::connect(proxy.addr());
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(REQUEST);
    client.write_all(&bytes);
    let response = client.read_final_response("GET").expect("an answer");
    assert_eq!(response.head.status(), 200);
    assert_eq!(response.body, b"hello");
    let requests = origin.requests();
    let request = requests.last().expect("the origin got the request");
    assert_eq!(request.head.target(), "/who");
    request
        .head
        .get("x-forwarded-for")
        .unwrap_or("")
        .to_string()
}

/// Reads until the proxy closes; what it sent (must be nothing), within `within`.
fn closed_unanswered(client: &mut TcpStream, within: Duration) -> Vec<u8> {
    client.set_read_timeout(Some(within)).unwrap();
    let mut got = Vec::new();
    match client.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the proxy did not close within {within:?}: {e}"),
    }
    got
}

#[test]
fn every_valid_corpus_header_names_the_client_the_origin_sees() {
    let origin = origin();
    let proxy = requiring(&origin, |_| {});
    let mut seen = 0;
    for vector in switchyard_corpus::proxy_vectors() {
        let Some(source) = vector.source else {
            continue;
        };
        let expected = if source.is_empty() {
            "127.0.0.1".to_string() // UNKNOWN and LOCAL keep the socket's address
        } else {
            source.parse::<SocketAddr>().unwrap().ip().to_string()
        };
        assert_eq!(
            forwarded_for(&proxy, &origin, &vector.bytes),
            expected,
            "{}",
            vector.name
        );
        seen += 1;
    }
    assert!(seen >= 9);
}

#[test]
fn v2_headers_with_ipv4_and_ipv6_sources_reach_the_origin_as_x_forwarded_for() {
    let origin = origin();
    let proxy = requiring(&origin, |_| {});
    let v4 = v2_header(
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9)), 1234),
        proxy.addr(),
    );
    assert_eq!(forwarded_for(&proxy, &origin, &v4), "198.51.100.9");
    let v6 = v2_header(
        SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x42)),
            1234,
        ),
        SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 443),
    );
    assert_eq!(forwarded_for(&proxy, &origin, &v6), "2001:db8::42");
}

/// A v2 header written out field by field (independently of the core's encoder).
fn v2_header(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut bytes = b"\r\n\r\n\0\r\nQUIT\n\x21".to_vec();
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            bytes.extend_from_slice(&[0x11, 0, 12]);
            bytes.extend_from_slice(&s.octets());
            bytes.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            bytes.extend_from_slice(&[0x21, 0, 36]);
            bytes.extend_from_slice(&s.octets());
            bytes.extend_from_slice(&d.octets());
        }
        _ => panic!("one family"),
    }
    bytes.extend_from_slice(&source.port().to_be_bytes());
    bytes.extend_from_slice(&destination.port().to_be_bytes());
    bytes
}

#[test]
fn a_header_split_over_many_writes_is_read_whole_and_the_request_after_it_kept() {
    let origin = origin();
    let proxy = requiring(&origin, |_| {});
    let mut client = TcpStream::connect(proxy.addr()).unwrap();
    client.set_nodelay(true).unwrap();
    let mut bytes = b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 80\r\n".to_vec();
    bytes.extend_from_slice(REQUEST);
    // Each write on its own segment: the proxy sees the header a few bytes at a time,
    // the last piece carrying its end and the request's start together.
    for piece in bytes.chunks(7) {
        client.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut conn = Conn::new(client);
    let response = conn.read_final_response("GET").expect("an answer");
    assert_eq!(response.head.status(), 200);
    let requests = origin.requests();
    assert_eq!(requests[0].head.get("x-forwarded-for"), Some("2001:db8::7"));
}

#[test]
fn malformed_headers_and_none_at_all_are_closed_without_a_byte_and_nothing_forwarded() {
    let origin = origin();
    let proxy = requiring(&origin, |config| {
        config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    });
    let mut refused = 0;
    for vector in switchyard_corpus::proxy_vectors() {
        if vector.source.is_some() {
            continue;
        }
        let mut client = TcpStream::connect(proxy.addr()).unwrap();
        let mut bytes = vector.bytes.clone();
        bytes.extend_from_slice(REQUEST);
        // The proxy may close before the whole write is taken: that is the point.
        let _ = client.write_all(&bytes);
        let got = closed_unanswered(&mut client, Duration::from_secs(5));
        assert!(
            got.is_empty(),
            "{}: answered {:?}",
            vector.name,
            String::from_utf8_lossy(&got)
        );
        refused += 1;
    }
    assert!(refused > 20);
    assert_eq!(origin.accepted(), 0, "nothing may reach the origin");
    let metrics = admin_get(proxy.admin_addr().unwrap(), "/metrics");
    let count = |reason: &str| -> u64 {
        let prefix = format!("switchyard_proxy_protocol_errors_total{{reason=\"{reason}\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
            .parse()
            .unwrap()
    };
    // These four never looked like a header; the rest began as one.
    assert_eq!(
        count("missing"),
        4,
        "http_request, v1_lowercase, v2_bad_signature, tls_client_hello"
    );
    assert_eq!(
        count("missing") + count("invalid") + count("closed"),
        refused
    );
}

fn admin_get(admin: SocketAddr, path: &str) -> String {
    let mut conn = Conn::connect(admin);
    conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n").as_bytes());
    let response = conn.read_response("GET").expect("an answer");
    assert_eq!(response.head.status(), 200);
    String::from_utf8(response.body).unwrap()
}

#[test]
fn the_header_must_be_whole_within_header_timeout() {
    let origin = origin();
    let timeout = Duration::from_millis(300);
    let proxy = requiring(&origin, |config| config.core.timeouts.header = timeout);
    for partial in [
        &b""[..],
        b"PROXY TCP4 203.0.113.7 ",
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c",
    ] {
        let started = Instant::now();
        let mut client = TcpStream::connect(proxy.addr()).unwrap();
        client.write_all(partial).unwrap();
        let got = closed_unanswered(&mut client, Duration::from_secs(5));
        let waited = started.elapsed();
        assert!(got.is_empty());
        assert!(
            waited >= timeout,
            "closed after {waited:?}, before the deadline"
        );
        assert!(
            waited < Duration::from_secs(3),
            "closed only after {waited:?}"
        );
    }
    assert_eq!(origin.accepted(), 0);
}

#[test]
fn the_header_and_the_request_head_share_header_timeout() {
    let origin = origin();
    let timeout = Duration::from_millis(400);
    let proxy = requiring(&origin, |config| config.core.timeouts.header = timeout);
    let started = Instant::now();
    let mut client = Conn::connect(proxy.addr());
    client.write_all(b"PROXY UNKNOWN\r\nGET / HTTP/1.1\r\n");
    let response = client.read_final_response("GET").expect("an answer");
    assert_eq!(response.head.status(), 408);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(origin.accepted(), 0);
}

#[test]
fn a_websocket_behind_a_proxy_header_tunnels_and_shows_the_client_on_the_status_page() {
    let origin = Origin::ws_echo();
    let proxy = requiring(&origin, |config| {
        config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    });
    let mut stream = TcpStream::connect(proxy.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"PROXY TCP4 203.0.113.77 192.0.2.1 40000 80\r\n")
        .unwrap();
    let url = format!("ws://{}/chat", proxy.addr());
    let (mut ws, response) =
        tungstenite::client::client_with_config(url, stream, Some(ws_config()))
            .expect("the handshake behind the header");
    assert_eq!(response.status(), 101);
    ws.send(WsMessage::text("ping through")).unwrap();
    assert_eq!(ws.read().unwrap(), WsMessage::text("ping through"));
    let status = admin_get(proxy.admin_addr().unwrap(), "/status.json");
    assert!(status.contains("203.0.113.77:40000"), "{status}");
    let _ = ws.close(None);
    let upgrade = origin.requests()[0]
        .head
        .get("x-forwarded-for")
        .map(str::to_string);
    assert_eq!(upgrade.as_deref(), Some("203.0.113.77"));
}

/// The source and destination of a PROXY header.
type Endpoints = (SocketAddr, SocketAddr);

/// A raw origin: for each connection, reads a v2 header (16 bytes and its length) and
/// records its addresses, then answers every request on it with `200 ok`, keeping it
/// open.
fn header_reading_origin() -> (SocketAddr, Arc<Mutex<Vec<Endpoints>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let record = record.clone();
            std::thread::spawn(move || {
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut fixed = [0u8; 16];
                if stream.read_exact(&mut fixed).is_err() {
                    return;
                }
                assert_eq!(
                    &fixed[..12],
                    b"\r\n\r\n\0\r\nQUIT\n",
                    "a v2 signature first"
                );
                assert_eq!(fixed[12], 0x21, "version 2, PROXY");
                let mut payload = vec![0; usize::from(u16::from_be_bytes([fixed[14], fixed[15]]))];
                stream.read_exact(&mut payload).unwrap();
                let port = |at: usize| u16::from_be_bytes([payload[at], payload[at + 1]]);
                let addresses = match fixed[13] {
                    0x11 => {
                        let ip = |at: usize| {
                            IpAddr::from(<[u8; 4]>::try_from(&payload[at..at + 4]).unwrap())
                        };
                        (
                            SocketAddr::new(ip(0), port(8)),
                            SocketAddr::new(ip(4), port(10)),
                        )
                    }
                    0x21 => {
                        let ip = |at: usize| {
                            IpAddr::from(<[u8; 16]>::try_from(&payload[at..at + 16]).unwrap())
                        };
                        (
                            SocketAddr::new(ip(0), port(32)),
                            SocketAddr::new(ip(16), port(34)),
                        )
                    }
                    other => panic!("family {other:#x}"),
                };
                record.lock().unwrap().push(addresses);
                let mut conn = Conn::new(stream);
                while let Ok(Some(_)) = conn.read_request() {
                    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                }
            });
        }
    });
    (addr, seen)
}

#[test]
fn an_upstream_group_with_send_proxy_protocol_gets_a_v2_header_per_client_never_pooled() {
    let (origin, seen) = header_reading_origin();
    let proxy = Proxy::start_with(origin, |config| {
        config.proxy_protocol.accept_on = config.listen.clone();
        config.proxy_protocol.send_to = vec!["default".to_string()];
    });
    for (client, port) in [("203.0.113.1", 1111), ("203.0.113.2", 2222)] {
        let mut conn = Conn::connect(proxy.addr());
        let header = format!("PROXY TCP4 {client} 192.0.2.80 {port} 443\r\n");
        conn.write_all(header.as_bytes());
        for _ in 0..2 {
            conn.write_all(REQUEST);
            let response = conn.read_final_response("GET").expect("an answer");
            assert_eq!(response.head.status(), 200);
        }
    }
    // The plain client that follows is named by its socket, and the destination is the
    // address it connected to.
    let mut conn = Conn::connect(proxy.addr());
    let plain_port = conn.stream().local_addr().unwrap().port();
    conn.write_all(b"PROXY UNKNOWN\r\n");
    conn.write_all(REQUEST);
    assert_eq!(conn.read_final_response("GET").unwrap().head.status(), 200);
    let seen = seen.lock().unwrap().clone();
    let expected = vec![
        (
            "203.0.113.1:1111".parse().unwrap(),
            "192.0.2.80:443".parse().unwrap(),
        ),
        (
            "203.0.113.2:2222".parse().unwrap(),
            "192.0.2.80:443".parse().unwrap(),
        ),
        (
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), plain_port),
            proxy.addr(),
        ),
    ];
    // One upstream connection per client: kept alive for its own requests, never
    // handed to the next client.
    assert_eq!(seen, expected);
}

#[test]
fn a_reload_turns_the_requirement_on_for_new_connections_of_a_kept_listener() {
    let origin = origin();
    let proxy = Proxy::start(origin.addr());
    assert_eq!(forwarded_for(&proxy, &origin, b""), "127.0.0.1");
    // The listener is kept (named as configured, port 0); from now on it requires one.
    proxy
        .reload_with(origin.addr(), |config| {
            config.proxy_protocol.accept_on = config.listen.clone();
        })
        .expect("the reload");
    let header = b"PROXY TCP4 198.51.100.3 192.0.2.1 5 80\r\n";
    assert_eq!(forwarded_for(&proxy, &origin, header), "198.51.100.3");
    let mut plain = TcpStream::connect(proxy.addr()).unwrap();
    plain.write_all(REQUEST).unwrap();
    assert!(closed_unanswered(&mut plain, Duration::from_secs(5)).is_empty());
    // And off again.
    proxy
        .reload_with(origin.addr(), |_| {})
        .expect("the reload");
    assert_eq!(forwarded_for(&proxy, &origin, b""), "127.0.0.1");
}
