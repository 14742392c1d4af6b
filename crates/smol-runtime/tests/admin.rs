//! The admin listener over real sockets on 127.0.0.1: its endpoints, what it refuses,
//! readiness through a shutdown, its own address. Every read is bounded by a timeout.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use switchyard_smol::{Server, ServerConfig};

const LIMIT: Duration = Duration::from_secs(5);

/// An answer of the admin listener: status, head (lower-cased field names) and body.
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn field(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (field, value) = line.split_once(':')?;
            field.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// Sends `raw` on a fresh connection and reads the answer up to the listener's close.
fn ask(admin: SocketAddr, raw: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(admin).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream.write_all(raw).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&bytes)));
    let head = String::from_utf8(bytes[..split].to_vec()).unwrap();
    let status = head[9..12].parse().unwrap();
    Answer {
        status,
        head,
        body: bytes[split + 4..].to_vec(),
    }
}

fn get(admin: SocketAddr, path: &str) -> Answer {
    ask(
        admin,
        format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n").as_bytes(),
    )
}

/// A proxy with the admin listener on a free port, in front of `origin`.
fn server(origin: SocketAddr, configure: impl FnOnce(&mut ServerConfig)) -> Server {
    let mut config = ServerConfig::simple("127.0.0.1:0".parse().unwrap(), origin);
    config.workers = 2;
    config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    configure(&mut config);
    Server::bind(config).unwrap()
}

#[test]
fn the_endpoints_answer_get_and_head_and_everything_else_is_refused() {
    // An origin nothing may ever reach: its backlog must stay empty.
    let origin = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = server(origin.local_addr().unwrap(), |_| {});
    let admin = server.admin_addr().expect("an admin address");
    assert_ne!(admin.port(), 0);
    assert!(!server.local_addrs().contains(&admin));
    let handle = server.shutdown_handle();
    let runner = thread::spawn(move || server.run());

    let health = get(admin, "/healthz");
    assert_eq!((health.status, &health.body[..]), (200, &b"ok\n"[..]));
    assert_eq!(health.field("connection"), Some("close"));
    assert_eq!(get(admin, "/readyz").status, 200);

    let metrics = get(admin, "/metrics");
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.field("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8(metrics.body.clone()).unwrap();
    assert!(text.contains("\nswitchyard_connections_open 0\n"), "{text}");
    assert_eq!(
        metrics.field("content-length"),
        Some(text.len().to_string().as_str())
    );

    let head = ask(admin, b"HEAD /metrics HTTP/1.1\r\nHost: admin\r\n\r\n");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD has no body");
    assert!(head.field("content-length").is_some_and(|n| n != "0"));

    for method in ["POST", "PUT", "DELETE"] {
        let raw =
            format!("{method} /metrics HTTP/1.1\r\nHost: admin\r\nContent-Length: 2\r\n\r\nhi");
        let refused = ask(admin, raw.as_bytes());
        assert_eq!(refused.status, 405, "{method}");
        assert_eq!(refused.field("allow"), Some("GET, HEAD"));
    }
    for path in [
        "/",
        "/stat",
        "/metrics/x",
        "/../metrics",
        "/healthz/",
        "/status/x",
    ] {
        assert_eq!(get(admin, path).status, 404, "{path}");
    }
    for garbage in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"[..],
        b"GET /metrics HTTP/1.1\r\n\r\n",
        b"GET /metrics SPDY/3\r\nHost: a\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    ] {
        let answer = ask(admin, garbage);
        assert_eq!(answer.status, 400, "{:?}", String::from_utf8_lossy(garbage));
    }
    let mut huge = b"GET /metrics HTTP/1.1\r\nHost: a\r\nX-Fill: ".to_vec();
    huge.resize(20_000, b'a');
    assert_eq!(ask(admin, &huge).status, 431);

    // The admin listener is not a proxy listener: what the proxy would forward, it does
    // not.
    let proxied = ask(admin, b"GET /api HTTP/1.1\r\nHost: backend\r\n\r\n");
    assert_eq!(proxied.status, 404);
    origin.set_nonblocking(true).unwrap();
    let reached = origin.accept();
    assert!(
        matches!(&reached, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
        "the origin was reached: {reached:?}"
    );

    handle.shutdown();
    runner.join().unwrap().unwrap();
    // Stopped: the admin listener is closed with the rest.
    let after = TcpStream::connect_timeout(&admin, LIMIT);
    assert!(after.is_err(), "the admin listener outlived the server");
}

/// Answers an `echo` upgrade with a 101, then echoes until EOF.
fn echo_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            thread::spawn(move || {
                stream.set_read_timeout(Some(LIMIT)).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 && !line.ends_with("\r\n\r\n") {}
                let switched = "HTTP/1.1 101 Switching Protocols\r\n\
                                Upgrade: echo\r\nConnection: Upgrade\r\n\r\n";
                writer.write_all(switched.as_bytes()).unwrap();
                let mut chunk = [0u8; 1024];
                while let Ok(n @ 1..) = reader.read(&mut chunk) {
                    writer.write_all(&chunk[..n]).unwrap();
                }
            });
        }
    });
    addr
}

#[test]
fn readiness_turns_503_the_moment_a_shutdown_starts_while_health_and_metrics_stay_up() {
    let server = server(echo_origin(), |config| {
        config.core.routes[0].allow_upgrade = vec!["echo".into()];
        config.shutdown_grace = Duration::from_secs(10);
    });
    let admin = server.admin_addr().unwrap();
    let proxy = server.local_addrs()[0];
    let handle = server.shutdown_handle();
    let runner = thread::spawn(move || server.run());

    // A tunnel keeps the server draining after the shutdown starts.
    let mut tunnel = TcpStream::connect(proxy).unwrap();
    tunnel.set_read_timeout(Some(LIMIT)).unwrap();
    tunnel
        .write_all(b"GET /t HTTP/1.1\r\nHost: t\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(tunnel.try_clone().unwrap());
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    let mut line = String::new();
    while line != "\r\n" {
        line.clear();
        reader.read_line(&mut line).unwrap();
    }
    tunnel.write_all(b"ping").unwrap();
    let mut echo = [0u8; 4];
    reader.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"ping");

    assert_eq!(get(admin, "/readyz").status, 200);
    let text = String::from_utf8(get(admin, "/metrics").body).unwrap();
    assert!(
        text.contains("\nswitchyard_tunnels_open{route=\"/\",protocol=\"echo\"} 1\n"),
        "{text}"
    );

    handle.shutdown();
    let draining = get(admin, "/readyz");
    assert_eq!(draining.status, 503);
    assert_eq!(draining.body, b"shutting down\n");
    assert_eq!(get(admin, "/healthz").status, 200);
    assert_eq!(get(admin, "/metrics").status, 200);

    // The tunnel still echoes during the grace; closing it lets the server stop.
    tunnel.write_all(b"pong").unwrap();
    reader.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"pong");
    tunnel.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    runner.join().unwrap().unwrap();
    assert!(TcpStream::connect_timeout(&admin, LIMIT).is_err());
}

#[test]
fn the_admin_address_must_be_its_own() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    drop(taken);
    let mut config = ServerConfig::simple(addr, "127.0.0.1:9".parse().unwrap());
    config.admin_listen = Some(addr);
    let error = Server::bind(config).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    assert!(error.to_string().contains("admin_listen"), "{error}");

    // A port in use is reported naming the admin address.
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = ServerConfig::simple(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:9".parse().unwrap(),
    );
    config.admin_listen = Some(busy.local_addr().unwrap());
    let error = Server::bind(config).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&format!(
            "cannot listen on {} (admin_listen)",
            busy.local_addr().unwrap()
        )),
        "{message}"
    );
}

#[test]
fn without_an_admin_address_there_is_no_admin_listener_and_no_metrics() {
    let config = ServerConfig::simple(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:9".parse().unwrap(),
    );
    assert_eq!(config.admin_listen, None, "off by default");
    let server = Server::bind(config).unwrap();
    assert_eq!(server.admin_addr(), None);
    assert!(server.metrics().is_none());
}
