//! TLS termination on 127.0.0.1: rustls clients (and tungstenite over them) against a
//! TLS listener, with certificates made by rcgen for each test. Every read is bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use switchyard_smol::{ProxyProtocol, Server, ServerConfig, TlsCertificates, TlsListener};
use tungstenite::Message;

const LIMIT: Duration = Duration::from_secs(5);

/// A certificate authority the test's clients trust.
struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Authority {
    fn new() -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        Authority {
            issuer: CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    /// A certificate for `names` (DNS names or IP addresses), as PEM: (chain, key).
    fn leaf(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = CertificateParams::new(names).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn certificates(&self, names: &[&str]) -> TlsCertificates {
        let (cert, key) = self.leaf(names);
        TlsCertificates::from_pem(&[(cert.as_bytes(), key.as_bytes())], ("cert", "key")).unwrap()
    }

    fn client(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.issuer.der().to_vec()))
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// Connects and completes the handshake for `name` (an IP address sends no SNI).
fn connect(addr: SocketAddr, name: &str, config: &Arc<ClientConfig>) -> std::io::Result<TlsStream> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(LIMIT))?;
    tcp.set_write_timeout(Some(LIMIT))?;
    let name = ServerName::try_from(name.to_string()).unwrap();
    let conn = ClientConnection::new(config.clone(), name).unwrap();
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// A WebSocket echo origin; each upgrade request's forwarding headers are kept.
// tungstenite's callback type has the large error, not this code.
#[allow(clippy::result_large_err)]
fn echo_origin() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let log = log.clone();
            thread::spawn(move || {
                let callback = |request: &tungstenite::handshake::server::Request, response| {
                    for name in ["x-forwarded-proto", "x-forwarded-for", "forwarded"] {
                        if let Some(value) = request.headers().get(name) {
                            let value = value.to_str().unwrap_or("?");
                            log.lock().unwrap().push(format!("{name}: {value}"));
                        }
                    }
                    Ok(response)
                };
                let Ok(mut ws) = tungstenite::accept_hdr(stream, callback) else {
                    return;
                };
                while let Ok(message) = ws.read() {
                    if message.is_close() || ws.send(message).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

struct Proxy {
    addr: SocketAddr,
    admin: Option<SocketAddr>,
    server: switchyard_smol::ShutdownHandle,
    reload: switchyard_smol::ReloadHandle,
    config: ServerConfig,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.server.shutdown();
    }
}

fn proxy(origin: SocketAddr, certificates: TlsCertificates, admin: bool) -> Proxy {
    proxy_with(origin, certificates, admin, |_| {})
}

fn proxy_with(
    origin: SocketAddr,
    certificates: TlsCertificates,
    admin: bool,
    adjust: impl FnOnce(&mut ServerConfig),
) -> Proxy {
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut config = ServerConfig::simple(listen, origin);
    config.workers = 1;
    config.shutdown_grace = Duration::from_millis(100);
    config.core.forwarding.forwarded = true;
    config.core.timeouts.header = Duration::from_secs(1);
    if admin {
        config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    }
    config.tls = vec![TlsListener {
        addr: listen,
        certificates,
    }];
    adjust(&mut config);
    let server = Server::bind(config.clone()).unwrap();
    let proxy = Proxy {
        addr: server.local_addrs()[0],
        admin: server.admin_addr(),
        server: server.shutdown_handle(),
        reload: server.reload_handle(),
        config,
    };
    thread::spawn(move || server.run());
    proxy
}

fn websocket(stream: TlsStream) -> tungstenite::WebSocket<TlsStream> {
    let (ws, _) = tungstenite::client("ws://a.test/chat", stream).unwrap();
    ws
}

fn echo(ws: &mut tungstenite::WebSocket<TlsStream>, text: &str) {
    ws.send(Message::text(text)).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text(text));
}

#[test]
fn wss_echo_through_a_tls_listener_with_https_forwarding_headers() {
    let (origin, seen) = echo_origin();
    let authority = Authority::new();
    let proxy = proxy(origin, authority.certificates(&["a.test"]), false);
    let stream = connect(proxy.addr, "a.test", &authority.client()).unwrap();
    assert_eq!(
        stream.conn.alpn_protocol(),
        Some(&b"http/1.1"[..]),
        "never h2"
    );
    let mut ws = websocket(stream);
    for size in [5, 70_000, 300_000] {
        echo(&mut ws, &"x".repeat(size));
    }
    ws.close(None).unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.contains(&"x-forwarded-proto: https".to_string()),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|h| h.starts_with("forwarded:") && h.contains("proto=https")),
        "{seen:?}"
    );
}

#[test]
fn a_byte_tunnel_over_tls_carries_large_messages_both_ways() {
    let (origin, _) = echo_origin();
    let authority = Authority::new();
    let certificates = authority.certificates(&["a.test"]);
    let proxy = proxy_with(origin, certificates, false, |config| {
        config.core.routes[0].websocket.validate = false;
    });
    let mut ws = websocket(connect(proxy.addr, "a.test", &authority.client()).unwrap());
    // Larger than a TLS record, than rustls' plaintext buffer and than a read.
    for size in [1, 16 * 1024 + 1, 1 << 20] {
        let message: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        ws.send(Message::binary(message.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::binary(message));
    }
}

#[test]
fn sni_picks_the_certificate_that_names_the_host_and_the_first_is_the_default() {
    let (origin, _) = echo_origin();
    let authority = Authority::new();
    let (a_cert, a_key) = authority.leaf(&["a.test", "127.0.0.1"]);
    let (b_cert, b_key) = authority.leaf(&["*.b.test"]);
    let certificates = TlsCertificates::from_pem(
        &[
            (a_cert.as_bytes(), a_key.as_bytes()),
            (b_cert.as_bytes(), b_key.as_bytes()),
        ],
        ("cert", "key"),
    )
    .unwrap();
    let proxy = proxy(origin, certificates, false);
    let client = authority.client();
    let served = |name: &str| {
        let stream = connect(proxy.addr, name, &client).unwrap();
        let chain = stream.conn.peer_certificates().unwrap();
        chain[0].as_ref().to_vec()
    };
    let a = served("a.test");
    let b = served("www.b.test");
    assert_ne!(a, b);
    // An IP address sends no SNI: the default, which names 127.0.0.1 too.
    assert_eq!(served("127.0.0.1"), a);
    // A name neither has: the default, which the client then refuses.
    assert!(connect(proxy.addr, "c.test", &client).is_err());
    echo(
        &mut websocket(connect(proxy.addr, "x.b.test", &client).unwrap()),
        "b",
    );
}

fn metric(admin: SocketAddr, name: &str) -> Option<u64> {
    let mut stream = TcpStream::connect(admin).ok()?;
    stream.set_read_timeout(Some(LIMIT)).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
}

#[test]
fn failed_handshakes_are_counted_and_do_not_hurt_other_connections() {
    let (origin, _) = echo_origin();
    let authority = Authority::new();
    let proxy = proxy(origin, authority.certificates(&["a.test"]), true);
    let admin = proxy.admin.unwrap();
    let mut tunnel = websocket(connect(proxy.addr, "a.test", &authority.client()).unwrap());
    echo(&mut tunnel, "before");

    // Not a TLS record (an unknown content type; no letter first, so not taken for
    // plain HTTP).
    let mut garbage = TcpStream::connect(proxy.addr).unwrap();
    garbage.set_read_timeout(Some(LIMIT)).unwrap();
    garbage
        .write_all(&[0x99, 0x03, 0x03, 0x00, 0x01, 0x00])
        .unwrap();
    let mut answer = Vec::new();
    let _ = garbage.read_to_end(&mut answer);
    assert!(
        answer.first().map_or(true, |&b| b == 0x15),
        "an alert or nothing: {answer:?}"
    );
    // A client that does not trust the certificate: it aborts with an alert.
    let stranger = Authority::new();
    assert!(connect(proxy.addr, "a.test", &stranger.client()).is_err());

    let deadline = Instant::now() + LIMIT;
    while metric(admin, "switchyard_tls_handshake_errors_total") != Some(2) {
        assert!(
            Instant::now() < deadline,
            "the two failures were not counted"
        );
        thread::sleep(Duration::from_millis(20));
    }
    echo(&mut tunnel, "after");
    echo(
        &mut websocket(connect(proxy.addr, "a.test", &authority.client()).unwrap()),
        "new",
    );
}

#[test]
fn plain_http_on_a_tls_listener_gets_a_plain_text_400_and_is_closed() {
    let (origin, _) = echo_origin();
    let authority = Authority::new();
    let proxy = proxy(origin, authority.certificates(&["a.test"]), false);
    let mut plain = TcpStream::connect(proxy.addr).unwrap();
    plain.set_read_timeout(Some(LIMIT)).unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    plain.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{answer}"
    );
    assert!(
        body.contains("plain HTTP request was sent to a TLS port"),
        "{answer}"
    );
}

#[test]
fn the_handshake_counts_against_the_header_timeout() {
    let (origin, _) = echo_origin();
    let authority = Authority::new();
    let proxy = proxy(origin, authority.certificates(&["a.test"]), false);
    // Half a ClientHello record, then nothing: closed at header_timeout (1 s here).
    let mut stalled = TcpStream::connect(proxy.addr).unwrap();
    stalled.set_read_timeout(Some(LIMIT)).unwrap();
    let started = Instant::now();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x01, 0x00, 0x01])
        .unwrap();
    let mut rest = Vec::new();
    stalled.read_to_end(&mut rest).unwrap();
    let waited = started.elapsed();
    assert!(rest.is_empty(), "{rest:?}");
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    assert!(waited < LIMIT, "{waited:?}");
}

#[test]
fn a_reload_serves_new_certificates_to_new_connections_and_open_tunnels_go_on() {
    let (origin, _) = echo_origin();
    let old = Authority::new();
    let proxy = proxy(origin, old.certificates(&["a.test"]), false);
    let mut tunnel = websocket(connect(proxy.addr, "a.test", &old.client()).unwrap());
    echo(&mut tunnel, "before");

    let new = Authority::new();
    let mut config = proxy.config.clone();
    config.listen = vec![proxy.addr];
    config.tls[0].addr = proxy.addr;
    config.tls[0].certificates = new.certificates(&["a.test"]);
    proxy.reload.reload(config).unwrap();

    echo(
        &mut websocket(connect(proxy.addr, "a.test", &new.client()).unwrap()),
        "new",
    );
    assert!(
        connect(proxy.addr, "a.test", &old.client()).is_err(),
        "old certificate"
    );
    echo(&mut tunnel, "after");
}

#[test]
fn a_proxy_header_before_the_client_hello_names_the_client_of_a_tls_listener() {
    let (origin, seen) = echo_origin();
    let authority = Authority::new();
    let proxy = proxy_with(
        origin,
        authority.certificates(&["a.test"]),
        false,
        |config| {
            config.proxy_protocol = ProxyProtocol {
                accept_on: config.listen.clone(),
                send_to: Vec::new(),
            };
        },
    );
    let tcp = TcpStream::connect(proxy.addr).unwrap();
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    tcp.set_write_timeout(Some(LIMIT)).unwrap();
    let name = ServerName::try_from("a.test".to_string()).unwrap();
    let mut conn = ClientConnection::new(authority.client(), name).unwrap();
    // The header and the ClientHello in one write: the proxy's read of the header takes
    // the start of the handshake with it, which must reach the TLS session, not the core.
    let mut first = b"PROXY TCP4 203.0.113.7 127.0.0.1 4567 443\r\n".to_vec();
    while conn.wants_write() {
        conn.write_tls(&mut first).unwrap();
    }
    let mut stream = StreamOwned::new(conn, tcp);
    stream.sock.write_all(&first).unwrap();
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).unwrap();
    }
    let mut ws = websocket(stream);
    for size in [5, 70_000, 300_000] {
        echo(&mut ws, &"p".repeat(size));
    }
    ws.close(None).unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.contains(&"x-forwarded-for: 203.0.113.7".to_string()),
        "{seen:?}"
    );
    assert!(
        seen.contains(&"x-forwarded-proto: https".to_string()),
        "{seen:?}"
    );
}

#[test]
fn a_tls_listener_that_requires_a_proxy_header_closes_a_client_hello_without_one() {
    let (origin, _) = echo_origin();
    let authority = Authority::new();
    let proxy = proxy_with(
        origin,
        authority.certificates(&["a.test"]),
        false,
        |config| {
            config.proxy_protocol.accept_on = config.listen.clone();
        },
    );
    let refused = connect(proxy.addr, "a.test", &authority.client());
    assert!(refused.is_err(), "a handshake without the header completed");
}
