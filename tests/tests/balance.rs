//! Upstream balancers through the real proxy: least connections following the tunnels'
//! ends, consistent hashing on the client address and on a header, weights, and host
//! names (resolved at start, and again while running).

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use switchyard_e2e::{ok, wait_until, ws_connect, Conn, Origin, Proxy, Reply};
use switchyard_smol::{Balance, ServerName};

const LIMIT: Duration = Duration::from_secs(5);

/// An HTTP origin that answers every request with its `name`.
fn named(name: &'static str) -> Origin {
    Origin::http(move |_| Reply::Send(ok(name.as_bytes())))
}

/// One `GET /` on a connection of its own from `source` (an address of 127/8) with
/// `extra` header lines; the body of the answer.
fn get_from(proxy: SocketAddr, source: [u8; 4], extra: &str) -> String {
    use rustix::net::{bind, connect, socket, AddressFamily, SocketType};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None).expect("a socket");
    bind(&fd, &SocketAddr::from((source, 0))).expect("bind the client's source address");
    connect(&fd, &proxy).expect("connect to the proxy");
    let mut conn = Conn::new(TcpStream::from(fd));
    let request = format!("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n");
    conn.write_all(request.as_bytes());
    let response = conn.read_response("GET").expect("a response");
    assert_eq!(response.head.status(), 200);
    String::from_utf8(response.body).expect("a name")
}

fn get(proxy: SocketAddr, extra: &str) -> String {
    get_from(proxy, [127, 0, 0, 1], extra)
}

/// `switchyard_upstream_connections_open` of `server` (in its group), from the admin
/// listener.
fn open_on(admin: SocketAddr, server: SocketAddr) -> Option<u64> {
    let mut conn = Conn::connect(admin);
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    let text = String::from_utf8(conn.read_response("GET").ok()?.body).ok()?;
    // Whatever the group: the one group of these tests.
    let series = format!(",server=\"{server}\"}} ");
    text.lines()
        .filter(|line| line.starts_with("switchyard_upstream_connections_open{"))
        .find_map(|line| line.split_once(series.as_str()).map(|(_, value)| value))
        .and_then(|value| value.trim().parse().ok())
}

/// A WebSocket origin whose 101 says `X-Origin: name`, holding each tunnel open until
/// the proxy closes it.
fn holding(extra: &'static str) -> Origin {
    Origin::ws_scripted(extra, |conn| {
        let _ = conn.read_to_end();
    })
}

/// Opens a tunnel; which origin took it.
fn tunnel(proxy: SocketAddr) -> (tungstenite::WebSocket<TcpStream>, String) {
    let (ws, response) = ws_connect(proxy, "/");
    let origin = response.headers().get("x-origin").expect("X-Origin");
    let origin = origin.to_str().expect("text").to_string();
    (ws, origin)
}

#[test]
fn least_connections_keeps_tunnels_level_and_fills_the_server_whose_tunnels_ended() {
    let (a, b) = (holding("X-Origin: a\r\n"), holding("X-Origin: b\r\n"));
    let proxy = Proxy::start_with(a.addr(), |config| {
        config.workers = 2;
        config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
        config.upstreams[0].servers.push(b.addr());
        config.upstreams[0].balance = Balance::LeastConn;
    });
    let admin = proxy.admin_addr().expect("an admin listener");
    // Opened one after another over both workers: whichever worker accepts, the count it
    // sees is the servers' total, so the two never differ by more than one.
    let (mut on_a, mut on_b) = (Vec::new(), Vec::new());
    for _ in 0..6 {
        let (ws, origin) = tunnel(proxy.addr());
        match origin.as_str() {
            "a" => on_a.push(ws),
            _ => on_b.push(ws),
        }
        assert!(
            on_a.len().abs_diff(on_b.len()) <= 1,
            "{} on a, {} on b",
            on_a.len(),
            on_b.len()
        );
    }
    assert_eq!((on_a.len(), on_b.len()), (3, 3));

    // a's tunnels end (the clients go away); b keeps three.
    on_a.clear();
    wait_until(LIMIT, "a's tunnels to end", || {
        open_on(admin, a.addr()) == Some(0)
    });
    assert_eq!(open_on(admin, b.addr()), Some(3));
    // The next three all go to the emptied server.
    for k in 0..3 {
        let (ws, origin) = tunnel(proxy.addr());
        assert_eq!(origin, "a", "new tunnel {k} goes to the emptied server");
        on_a.push(ws);
    }
    assert_eq!(open_on(admin, a.addr()), Some(3));
    drop((on_a, on_b));
}

#[test]
fn hashing_the_client_address_keeps_each_client_on_its_server() {
    let origins = [named("a"), named("b"), named("c")];
    let proxy = Proxy::start_with(origins[0].addr(), |config| {
        config.workers = 2;
        config.upstreams[0]
            .servers
            .extend([origins[1].addr(), origins[2].addr()]);
        config.upstreams[0].balance = Balance::IpHash;
    });
    let mut chosen = std::collections::BTreeSet::new();
    for last in 2..=9u8 {
        let source = [127, 0, 0, last];
        let first = get_from(proxy.addr(), source, "");
        for _ in 0..4 {
            assert_eq!(
                get_from(proxy.addr(), source, ""),
                first,
                "127.0.0.{last} moved"
            );
        }
        chosen.insert(first);
    }
    // Eight addresses on three servers: all on one would be a 1-in-2000 chance.
    assert!(chosen.len() >= 2, "every client on {chosen:?}");
}

#[test]
fn hashing_a_header_keeps_its_value_on_one_server_and_requests_without_it_take_turns() {
    let origins = [named("a"), named("b"), named("c")];
    let proxy = Proxy::start_with(origins[0].addr(), |config| {
        config.upstreams[0]
            .servers
            .extend([origins[1].addr(), origins[2].addr()]);
        config.upstreams[0].balance = Balance::Header("x-user".into());
    });
    let mut chosen = std::collections::BTreeSet::new();
    for user in [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
    ] {
        let header = format!("X-User: {user}\r\n");
        let first = get(proxy.addr(), &header);
        for _ in 0..3 {
            assert_eq!(get(proxy.addr(), &header), first, "{user} moved");
        }
        chosen.insert(first);
    }
    assert!(chosen.len() >= 2, "every user on {chosen:?}");
    // Without the header: round-robin.
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..6 {
        *counts.entry(get(proxy.addr(), "")).or_default() += 1;
    }
    assert_eq!(counts.values().copied().collect::<Vec<_>>(), [2, 2, 2]);
}

#[test]
fn hashing_a_cookie_keeps_each_session_on_one_server() {
    let origins = [named("a"), named("b"), named("c")];
    let proxy = Proxy::start_with(origins[0].addr(), |config| {
        config.workers = 2;
        config.upstreams[0]
            .servers
            .extend([origins[1].addr(), origins[2].addr()]);
        config.upstreams[0].balance = Balance::Cookie("sid".into());
    });
    let mut chosen = std::collections::BTreeSet::new();
    for session in 0..8 {
        let first = get(proxy.addr(), &format!("Cookie: sid={session}\r\n"));
        for other in ["theme=dark; ", "x=1; sidx=9; "] {
            let header = format!("Cookie: {other}sid={session}\r\n");
            assert_eq!(get(proxy.addr(), &header), first, "session {session} moved");
        }
        chosen.insert(first);
    }
    assert!(chosen.len() >= 2, "every session on {chosen:?}");
}

#[test]
fn weighted_round_robin_gives_each_server_its_weights_share() {
    let (a, b) = (named("a"), named("b"));
    let proxy = Proxy::start_with(a.addr(), |config| {
        config.workers = 2;
        config.upstreams[0].servers.push(b.addr());
        config.upstreams[0].weights = vec![3, 1];
    });
    let answers: Vec<String> = (0..8).map(|_| get(proxy.addr(), "")).collect();
    let on_a = answers.iter().filter(|name| *name == "a").count();
    assert_eq!(on_a, 6, "{answers:?}");
    // Smooth: b's turns are spread out, never two in a row.
    assert!(
        !answers.windows(2).any(|w| w[0] == "b" && w[1] == "b"),
        "{answers:?}"
    );
}

#[test]
fn an_upstream_named_localhost_is_served_and_a_name_is_resolved_again_while_running() {
    let (first, second) = (named("first"), named("second"));
    // What the binary builds from `--upstream localhost:PORT`.
    let flags = switchyard::settings::Overrides {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        upstream: vec![format!("localhost:{}", first.addr().port())],
        ..Default::default()
    };
    let settings = switchyard::settings::Settings::load(&flags).expect("localhost resolves");
    let group = settings.upstreams[0].clone();
    assert!(group.servers.contains(&first.addr()), "{:?}", group.servers);
    let proxy = Proxy::start_with(first.addr(), |config| config.upstreams = vec![group]);
    for _ in 0..3 {
        // An address of localhost that nothing listens on (::1) is tried after the
        // one that answers, once it has failed.
        assert_eq!(get(proxy.addr(), ""), "first");
    }
    drop(proxy);

    // A group whose name resolved to `first` last time, and now resolves to `second`'s
    // port: the resolver thread publishes the new servers.
    let name = format!("localhost:{}", second.addr().port());
    let proxy = Proxy::start_with(first.addr(), |config| {
        let group = &mut config.upstreams[0];
        group.names = vec![ServerName {
            name,
            weight: 1,
            addrs: vec![first.addr()],
        }];
        group.resolve_interval = Duration::from_millis(100);
    });
    let reload = proxy.reload_handle().clone();
    wait_until(LIMIT, "the name to be resolved again", || {
        reload.generation() >= 2
    });
    assert_eq!(get(proxy.addr(), ""), "second");
    assert_eq!(get(proxy.addr(), ""), "second");
}
