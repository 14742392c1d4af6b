//! Upstream groups' active health checks and source addresses, against origins that
//! answer `/health` with a status the test flips, and record the peer address of every
//! connection that is not a check: a server that fails `fails` checks in a row gets no
//! new connection until it passes `passes` in a row; with every server down a request
//! gets 502 at once; an open tunnel on a server that goes down is left alone; source
//! addresses are used in turn, and one that cannot be bound gives 502.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use switchyard_e2e::{wait_until, Conn, Proxy, IO_TIMEOUT};
use switchyard_smol::{HealthCheck, ServerConfig};

/// An origin: `/health` answers `health` (and reports each check on `checks`); an
/// `Upgrade` request gets 101 and an echo of every byte; anything else 200 with the
/// origin's port as the body. Every answer closes the connection (no pooling: each
/// request is a dial).
struct Backend {
    addr: SocketAddr,
    health: Arc<AtomicU16>,
    /// The peer address of each connection that was not a check.
    peers: Arc<Mutex<Vec<IpAddr>>>,
    checks: Receiver<u16>,
}

impl Backend {
    fn start() -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let health = Arc::new(AtomicU16::new(200));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let (report, checks) = mpsc::channel();
        let (status, seen) = (health.clone(), peers.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (status, seen, report) = (status.clone(), seen.clone(), report.clone());
                std::thread::spawn(move || serve(stream, addr, &status, &seen, &report));
            }
        });
        Backend {
            addr,
            health,
            peers,
            checks,
        }
    }

    fn set_health(&self, status: u16) {
        self.health.store(status, Ordering::SeqCst);
    }

    /// Waits for the next check answered with `status` (checks answered otherwise
    /// before it are skipped).
    fn next_check(&self, status: u16) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.checks.recv_timeout(left) {
                Ok(answered) if answered == status => return,
                Ok(_) => continue,
                Err(_) => panic!("no health check of {} answered {status}", self.addr),
            }
        }
    }

    fn requests(&self) -> usize {
        self.peers.lock().unwrap().len()
    }
}

fn serve(
    stream: TcpStream,
    addr: SocketAddr,
    health: &AtomicU16,
    peers: &Mutex<Vec<IpAddr>>,
    checks: &Sender<u16>,
) {
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let peer = stream.peer_addr().unwrap().ip();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        head.push(line.to_ascii_lowercase());
    }
    let mut stream = stream;
    if head[0].starts_with("get /health ") {
        let status = health.load(Ordering::SeqCst);
        let answer =
            format!("HTTP/1.1 {status} Checked\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let _ = stream.write_all(answer.as_bytes());
        let _ = checks.send(status);
        return;
    }
    peers.lock().unwrap().push(peer);
    if head.iter().any(|line| line.starts_with("upgrade:")) {
        let _ = stream.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
        );
        let mut buffer = [0u8; 1024];
        while let Ok(n @ 1..) = reader.read(&mut buffer) {
            if stream.write_all(&buffer[..n]).is_err() {
                return;
            }
        }
        return;
    }
    let body = addr.port().to_string();
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes());
}

/// Checks every 150 ms: `fails` 2, `passes` 2.
fn check() -> HealthCheck {
    HealthCheck {
        path: "/health".into(),
        interval: Duration::from_millis(150),
        timeout: Duration::from_millis(500),
        fails: 2,
        passes: 2,
        ..HealthCheck::default()
    }
}

/// A proxy whose one group has `servers`, configured further by `group`.
fn proxy(servers: &[SocketAddr], group: impl FnOnce(&mut ServerConfig)) -> Proxy {
    Proxy::start_with(servers[0], |config| {
        setup(config, servers);
        group(config);
    })
}

fn setup(config: &mut ServerConfig, servers: &[SocketAddr]) {
    config.workers = 2;
    config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    config.upstreams[0].servers = servers.to_vec();
    config.core.routes[0].allow_upgrade.push("echo".into());
}

/// `GET /` through the proxy: the status and the body.
fn get(proxy: &Proxy) -> (u16, String) {
    let mut client = Conn::connect(proxy.addr());
    client.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let response = client.read_response("GET").expect("an answer");
    let body = String::from_utf8_lossy(&response.body).into_owned();
    (response.head.status(), body)
}

/// The state `/status.json` shows for `server`.
fn state(proxy: &Proxy, server: SocketAddr) -> String {
    let admin = proxy.admin_addr().expect("the admin listener");
    let mut conn = Conn::connect(admin);
    conn.write_all(b"GET /status.json HTTP/1.1\r\nHost: admin\r\n\r\n");
    let document: Value = serde_json::from_slice(&conn.read_response("GET").unwrap().body)
        .expect("/status.json is JSON");
    let servers = document["upstreams"][0]["servers"].as_array().unwrap();
    let entry = servers
        .iter()
        .find(|s| s["server"] == server.to_string().as_str())
        .unwrap_or_else(|| panic!("{server} is not in {document}"));
    entry["state"].as_str().unwrap().to_string()
}

/// The value of one series of `/metrics`.
fn metric(proxy: &Proxy, series: &str) -> Option<String> {
    let admin = proxy.admin_addr().expect("the admin listener");
    let mut conn = Conn::connect(admin);
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n");
    let text = String::from_utf8(conn.read_response("GET").unwrap().body).unwrap();
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .map(str::to_string)
}

fn healthy(upstream: &str, server: SocketAddr) -> String {
    format!("switchyard_upstream_healthy{{upstream=\"{upstream}\",server=\"{server}\"}}")
}

#[test]
fn a_server_failing_its_checks_is_taken_out_after_fails_and_back_after_passes() {
    let a = Backend::start();
    let b = Backend::start();
    let proxy = proxy(&[a.addr, b.addr], |config| {
        config.upstreams[0].health_check = Some(check());
    });
    a.next_check(200);
    assert_eq!(
        metric(&proxy, &healthy("default", a.addr)).as_deref(),
        Some("1")
    );

    a.set_health(503);
    a.next_check(503);
    // One failure of two: the next check is an interval away, so it is still in.
    assert_eq!(
        state(&proxy, a.addr),
        "healthy",
        "taken out after one failure"
    );
    a.next_check(503);
    wait_until(Duration::from_secs(2), "a taken out", || {
        state(&proxy, a.addr) == "down"
    });
    assert_eq!(
        metric(&proxy, &healthy("default", a.addr)).as_deref(),
        Some("0")
    );
    assert_eq!(
        metric(&proxy, &healthy("default", b.addr)).as_deref(),
        Some("1")
    );

    let before = a.requests();
    for _ in 0..6 {
        assert_eq!(get(&proxy), (200, b.addr.port().to_string()));
    }
    assert_eq!(
        a.requests(),
        before,
        "no new connection reached the server down"
    );

    a.set_health(200);
    a.next_check(200);
    assert_eq!(state(&proxy, a.addr), "down", "back after one pass of two");
    a.next_check(200);
    wait_until(Duration::from_secs(2), "a back", || {
        state(&proxy, a.addr) == "healthy"
    });
    let bodies: Vec<String> = (0..4).map(|_| get(&proxy).1).collect();
    assert!(
        bodies.contains(&a.addr.port().to_string()),
        "a takes requests again: {bodies:?}"
    );
}

#[test]
fn with_every_server_down_requests_get_502_at_once_and_checks_go_on() {
    let a = Backend::start();
    let b = Backend::start();
    let proxy = proxy(&[a.addr, b.addr], |config| {
        config.upstreams[0].health_check = Some(check());
        // A dial would not be what answers: a long deadline would show.
        config.core.routes[0].timeouts.connect = Duration::from_secs(30);
    });
    a.set_health(500);
    b.set_health(500);
    wait_until(Duration::from_secs(3), "both servers down", || {
        state(&proxy, a.addr) == "down" && state(&proxy, b.addr) == "down"
    });
    for _ in 0..3 {
        let started = Instant::now();
        let (status, _) = get(&proxy);
        let took = started.elapsed();
        assert_eq!(status, 502);
        assert!(took < Duration::from_secs(1), "502 after {took:?}");
    }
    assert_eq!(a.requests() + b.requests(), 0, "no server was dialed");

    // The checks go on: b recovers and serves.
    b.set_health(200);
    wait_until(Duration::from_secs(3), "b back", || {
        state(&proxy, b.addr) == "healthy"
    });
    assert_eq!(get(&proxy), (200, b.addr.port().to_string()));
}

#[test]
fn an_open_tunnel_on_a_server_that_goes_down_is_left_alone() {
    let a = Backend::start();
    let proxy = proxy(&[a.addr], |config| {
        config.upstreams[0].health_check = Some(check());
    });
    let mut tunnel = Conn::connect(proxy.addr());
    tunnel.write_all(b"GET /t HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n");
    let head = tunnel.read_head().unwrap().expect("an answer");
    assert_eq!(head.status(), 101);
    tunnel.write_all(b"before");
    assert_eq!(tunnel.read_exact_bytes(6).unwrap(), b"before");

    a.set_health(503);
    wait_until(Duration::from_secs(3), "a down", || {
        state(&proxy, a.addr) == "down"
    });
    assert_eq!(get(&proxy).0, 502, "no new connection");
    tunnel.write_all(b"after");
    assert_eq!(
        tunnel.read_exact_bytes(5).unwrap(),
        b"after",
        "the tunnel carries on"
    );
}

#[test]
fn checks_follow_reloads_a_server_that_stays_keeps_its_state_a_removed_one_is_not_checked() {
    let a = Backend::start();
    let b = Backend::start();
    let c = Backend::start();
    let proxy = proxy(&[a.addr, b.addr], |config| {
        config.upstreams[0].health_check = Some(check());
    });
    a.set_health(503);
    wait_until(Duration::from_secs(3), "a down", || {
        state(&proxy, a.addr) == "down"
    });
    proxy
        .reload_with(a.addr, |config| {
            setup(config, &[a.addr, c.addr]);
            config.upstreams[0].health_check = Some(check());
        })
        .unwrap();
    // Forgotten, a would be up until two more failures.
    assert_eq!(
        state(&proxy, a.addr),
        "down",
        "a stays down across the reload"
    );
    assert_eq!(get(&proxy), (200, c.addr.port().to_string()));
    // The new generation's checks run (c's first one) once the old ones stopped:
    // b, no longer in the group, gets none from then on.
    c.next_check(200);
    while b.checks.try_recv().is_ok() {}
    let interval = check().interval;
    assert!(
        b.checks.recv_timeout(interval * 4).is_err(),
        "b is still checked after the reload removed it"
    );
    // Without a health check the group's servers are all in again, and unchecked.
    proxy
        .reload_with(a.addr, |config| setup(config, &[a.addr, c.addr]))
        .unwrap();
    assert_eq!(state(&proxy, a.addr), "healthy");
    while a.checks.try_recv().is_ok() {}
    let bodies: Vec<String> = (0..4).map(|_| get(&proxy).1).collect();
    assert!(bodies.contains(&a.addr.port().to_string()), "{bodies:?}");
    assert!(
        a.checks.recv_timeout(interval * 4).is_err(),
        "a is still checked"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn source_addresses_are_used_in_turn() {
    let a = Backend::start();
    let proxy = proxy(&[a.addr], |config| {
        config.upstreams[0].source =
            vec!["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()];
    });
    for _ in 0..4 {
        assert_eq!(get(&proxy).0, 200);
    }
    let peers: Vec<String> = a
        .peers
        .lock()
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(peers, ["127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.3"]);
}

#[test]
fn a_source_that_cannot_be_bound_gives_502_and_counts_as_a_connect_error() {
    let a = Backend::start();
    let proxy = proxy(&[a.addr], |config| {
        // TEST-NET-1 (RFC 5737): no interface of this machine has it.
        config.upstreams[0].source = vec!["192.0.2.1".parse().unwrap()];
    });
    let started = Instant::now();
    assert_eq!(get(&proxy).0, 502);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(a.requests(), 0);
    let series = format!(
        "switchyard_upstream_connect_errors_total{{upstream=\"default\",server=\"{}\"}}",
        a.addr
    );
    assert_eq!(metric(&proxy, &series).as_deref(), Some("1"));
}
