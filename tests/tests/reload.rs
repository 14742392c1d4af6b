//! Reloading a running proxy (`ReloadHandle::reload`, what SIGHUP calls): new
//! connections take the new generation, tunnels opened before keep theirs; an invalid
//! configuration changes nothing; listeners come and go without touching the tunnels
//! they accepted; `drain_timeout` ends an old generation's tunnels with Close 1001; the
//! generation and reload metrics, and a new route counted under its own label.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use switchyard_core::Route;
use switchyard_e2e::{ok, wait_until, ws_close, ws_connect, Conn, Origin, Proxy, Reply};
use switchyard_smol::{ReloadError, UpstreamGroup};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

const LIMIT: Duration = Duration::from_secs(5);

type Ws = WebSocket<TcpStream>;

/// Sends `text` and expects it back.
fn echoes(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).expect("send");
    loop {
        match ws.read().expect("an echo") {
            Message::Text(echo) => {
                assert_eq!(echo.as_str(), text);
                return;
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected the echo of {text:?}, got {other:?}"),
        }
    }
}

/// A free port on 127.0.0.1 (bound, then released).
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Connects to `addr` until it is refused, within [`LIMIT`].
fn wait_refused(addr: SocketAddr) {
    wait_until(
        LIMIT,
        "the removed listener to refuse",
        || matches!(TcpStream::connect(addr), Err(e) if e.kind() == ErrorKind::ConnectionRefused),
    );
}

#[test]
fn a_tunnel_opened_before_a_reload_keeps_echoing_from_the_old_upstream_and_a_new_one_goes_to_the_new(
) {
    let (old, new) = (Origin::ws_echo(), Origin::ws_echo());
    let proxy = Proxy::start_with(old.addr(), |config| config.workers = 2);
    let (mut before, _) = ws_connect(proxy.addr(), "/chat");
    echoes(&mut before, "one");

    let report = proxy
        .reload_with(new.addr(), |config| config.workers = 2)
        .expect("a valid configuration");
    assert_eq!(report.generation, 2);
    assert_eq!(report.servers_removed, [old.addr()]);

    let (mut after, _) = ws_connect(proxy.addr(), "/chat");
    echoes(&mut after, "two");
    echoes(&mut before, "three");
    assert_eq!(old.accepted(), 1, "the new tunnel went to the old upstream");
    assert_eq!(
        new.accepted(),
        1,
        "the new tunnel did not reach the new upstream"
    );
    ws_close(&mut before);
    ws_close(&mut after);
    drop((before, after));
    wait_until(LIMIT, "both origins to see their tunnel end", || {
        old.ended() == 1 && new.ended() == 1
    });
}

#[test]
fn an_invalid_configuration_changes_nothing() {
    let (old, new) = (Origin::ws_echo(), Origin::ws_echo());
    let proxy = Proxy::start_with(old.addr(), |config| {
        config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    });
    let (mut before, _) = ws_connect(proxy.addr(), "/");
    echoes(&mut before, "one");
    let error = proxy
        .reload_with(new.addr(), |config| {
            config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
            config.upstreams[0].servers.clear();
        })
        .expect_err("a group without servers is invalid");
    assert!(matches!(error, ReloadError::Invalid(_)), "{error}");
    assert!(error.to_string().contains("has no server"), "{error}");

    assert_eq!(proxy.reload_handle().generation(), 1);
    echoes(&mut before, "two");
    let (mut after, _) = ws_connect(proxy.addr(), "/");
    echoes(&mut after, "three");
    assert_eq!((old.accepted(), new.accepted()), (2, 0), "traffic changed");
    let text = metrics(&proxy);
    assert_eq!(value(&text, "switchyard_config_generation"), "1");
    assert_eq!(
        value(&text, "switchyard_config_reloads_total{result=\"failure\"}"),
        "1"
    );
    assert_eq!(
        value(&text, "switchyard_config_reloads_total{result=\"success\"}"),
        "0"
    );
    ws_close(&mut before);
    ws_close(&mut after);
}

#[test]
fn an_added_listener_accepts_and_a_removed_one_refuses_while_its_tunnel_goes_on() {
    let echo = Origin::ws_echo();
    let proxy = Proxy::start_with(echo.addr(), |config| config.workers = 2);
    let first = proxy.addr();
    let second = free_port();
    let report = proxy
        .reload_with(echo.addr(), |config| {
            config.workers = 2;
            config.listen = vec![first, second];
        })
        .unwrap();
    assert_eq!(report.listeners_added, [second]);
    let (mut on_second, _) = ws_connect(second, "/");
    echoes(&mut on_second, "added");
    let (mut on_first, _) = ws_connect(first, "/");
    echoes(&mut on_first, "before removal");

    let report = proxy
        .reload_with(echo.addr(), |config| {
            config.workers = 2;
            config.listen = vec![second];
        })
        .unwrap();
    assert_eq!(report.listeners_removed, [first]);
    wait_refused(first);
    // Without drain_timeout the tunnel the removed listener accepted lives on.
    echoes(&mut on_first, "after removal");
    echoes(&mut on_second, "still");
    ws_close(&mut on_first);
    ws_close(&mut on_second);
}

#[test]
fn drain_timeout_ends_an_old_generations_tunnel_with_close_1001() {
    let echo = Origin::ws_echo();
    let proxy = Proxy::start_with(echo.addr(), |_| {});
    let (mut old, _) = ws_connect(proxy.addr(), "/");
    echoes(&mut old, "one");
    let drain = Duration::from_millis(300);
    let reloaded = Instant::now();
    proxy
        .reload_with(echo.addr(), |config| config.drain_timeout = Some(drain))
        .unwrap();
    let (mut new, _) = ws_connect(proxy.addr(), "/");
    echoes(&mut new, "two");
    echoes(&mut old, "three");

    let code = close_code(&mut old);
    let elapsed = reloaded.elapsed();
    assert_eq!(code, CloseCode::Away);
    assert!(
        elapsed >= drain,
        "drained after {elapsed:?}, before {drain:?}"
    );
    assert!(elapsed < drain + LIMIT, "drained only after {elapsed:?}");
    // The new generation's tunnel is not drained.
    echoes(&mut new, "four");
    ws_close(&mut new);
}

/// `GET /metrics` on the proxy's admin listener.
fn metrics(proxy: &Proxy) -> String {
    let mut conn = Conn::connect(proxy.admin_addr().expect("the admin listener is on"));
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n");
    let response = conn.read_response("GET").expect("an answer");
    assert_eq!(response.head.status(), 200);
    String::from_utf8(response.body).expect("UTF-8")
}

/// The value of the series written exactly `series`.
fn value(text: &str, series: &str) -> String {
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
        .to_string()
}

#[test]
fn metrics_count_generations_and_reloads_and_a_new_route_under_its_own_label() {
    let http = Origin::http(|request| Reply::Send(ok(request.head.target().as_bytes())));
    let get = |proxy: &Proxy, path: &str| {
        let mut conn = Conn::connect(proxy.addr());
        conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
        let response = conn.read_response("GET").expect("a response");
        assert_eq!(response.head.status(), 200);
    };
    let with_routes = |prefixes: &'static [&'static str]| {
        move |config: &mut switchyard_smol::ServerConfig| {
            config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
            for prefix in prefixes {
                config.core.routes.push(Route::new(*prefix));
                config.route_upstream.push(1);
            }
            config.upstreams.push(UpstreamGroup {
                name: "second".into(),
                servers: config.upstreams[0].servers.clone(),
                ..Default::default()
            });
        }
    };
    let proxy = Proxy::start_with(http.addr(), with_routes(&["/old/"]));
    get(&proxy, "/old/a");
    let text = metrics(&proxy);
    assert_eq!(value(&text, "switchyard_config_generation"), "1");

    // `/new/` takes route id 1, which was `/old/`'s.
    let report = proxy
        .reload_with(http.addr(), with_routes(&["/new/"]))
        .unwrap();
    assert_eq!(
        report.needs_restart,
        Vec::<&str>::new(),
        "admin_listen 0 stays"
    );
    get(&proxy, "/new/b");
    get(&proxy, "/new/c");
    get(&proxy, "/d");
    let text = metrics(&proxy);
    assert_eq!(value(&text, "switchyard_config_generation"), "2");
    assert_eq!(
        value(&text, "switchyard_config_reloads_total{result=\"success\"}"),
        "1"
    );
    let requests = |route: &str| {
        value(
            &text,
            &format!("switchyard_http_requests_total{{route=\"{route}\",code=\"2xx\"}}"),
        )
    };
    assert_eq!(requests("/new/"), "2");
    // A removed route's series stay with their last values.
    assert_eq!(requests("/old/"), "1");
    assert_eq!(requests("/"), "1");
}

/// Reads until the proxy's Close and returns its code.
fn close_code(ws: &mut Ws) -> CloseCode {
    loop {
        match ws.read() {
            Ok(Message::Close(frame)) => return frame.expect("a close code").code,
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            other => panic!("expected the drain's Close, got {other:?}"),
        }
    }
}

#[test]
fn with_drain_timeout_a_removed_listeners_tunnel_gets_close_1001() {
    let echo = Origin::ws_echo();
    let proxy = Proxy::start_with(echo.addr(), |_| {});
    let (kept, removed) = (free_port(), proxy.addr());
    proxy
        .reload_with(echo.addr(), |config| config.listen = vec![removed, kept])
        .unwrap();
    let (mut old, _) = ws_connect(removed, "/");
    echoes(&mut old, "one");
    proxy
        .reload_with(echo.addr(), |config| {
            config.listen = vec![kept];
            config.drain_timeout = Some(Duration::from_millis(200));
        })
        .unwrap();
    wait_refused(removed);
    let (mut new, _) = ws_connect(kept, "/");
    assert_eq!(close_code(&mut old), CloseCode::Away);
    echoes(&mut new, "the new generation's tunnel goes on");
    ws_close(&mut new);
}
