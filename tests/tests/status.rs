//! `/status.json` read as the status page reads it: WebSocket tunnels with known
//! messages, requests, an upstream server that refuses connections, then the document
//! parsed and every figure checked against what was sent; the bound of 1,000 listed
//! tunnels and their order; a WebSocket violation counted on its tunnel's route; what
//! else the admin listener refuses.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use serde_json::Value;
use switchyard_core::Route;
use switchyard_e2e::{
    encode_frame, wait_until, ws_close, ws_connect, ws_connect_raw, Conn, Origin, Proxy, Reply,
};
use switchyard_smol::UpstreamGroup;
use tungstenite::Message;

/// WebSocket tunnels opened in the first test; tunnel `i` carries `i + 1` messages.
const TUNNELS: usize = 3;
const REQUESTS: usize = 4;

/// A port nothing listens on: bound, then closed.
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// `GET path` on the admin listener: status, content type and body.
fn admin_get(admin: SocketAddr, method: &str, path: &str) -> (u16, Option<String>, Vec<u8>) {
    let mut conn = Conn::connect(admin);
    conn.write_all(format!("{method} {path} HTTP/1.1\r\nHost: admin\r\n\r\n").as_bytes());
    let response = conn.read_response(method).expect("an answer");
    let content_type = response.head.get("content-type").map(str::to_string);
    (response.head.status(), content_type, response.body)
}

fn status(admin: SocketAddr) -> Value {
    let (code, content_type, body) = admin_get(admin, "GET", "/status.json");
    assert_eq!(code, 200);
    assert_eq!(content_type.as_deref(), Some("application/json"));
    serde_json::from_slice(&body).expect("/status.json is JSON")
}

fn number(value: &Value, key: &str) -> u64 {
    value[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a count in {value}"))
}

fn find<'a>(list: &'a Value, key: &str, wanted: &str) -> &'a Value {
    list.as_array()
        .expect("a list")
        .iter()
        .find(|item| item[key] == wanted)
        .unwrap_or_else(|| panic!("no {key} {wanted} in {list}"))
}

#[test]
fn status_json_shows_the_open_tunnels_routes_and_upstream_servers_as_sent() {
    let http = Origin::http(|_| Reply::Send(switchyard_e2e::ok(b"hello")));
    let echo = Origin::ws_echo();
    let dead = closed_port();
    let proxy = Proxy::start_with(http.addr(), |config| {
        config.workers = 2;
        config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
        config.core.routes.push(Route::new("/ws/"));
        config.upstreams.push(UpstreamGroup {
            name: "echo".into(),
            servers: vec![echo.addr(), dead],
            ..Default::default()
        });
        config.route_upstream = vec![0, 1];
    });
    let admin = proxy.admin_addr().expect("the admin listener is on");

    let empty = status(admin);
    assert_eq!(number(&empty, "generation"), 1);
    assert_eq!(number(&empty, "tunnels_open"), 0);
    assert_eq!(empty["tunnels"], Value::Array(Vec::new()));

    for _ in 0..REQUESTS {
        let mut client = Conn::connect(proxy.addr());
        client.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert_eq!(client.read_response("GET").unwrap().head.status(), 200);
        client.read_to_end().expect("the proxy closes");
    }
    // Tunnel i carries i + 1 text messages of 1, 2, ... bytes, each echoed. Client frames
    // are masked (6 header bytes), the origin's are not (2).
    let mut clients = Vec::new();
    let mut expected = Vec::new();
    for i in 0..TUNNELS {
        let (mut ws, _) = ws_connect(proxy.addr(), "/ws/chat");
        let (mut sent, mut echoed) = (0, 0);
        for length in 1..=i + 1 {
            let text = "x".repeat(length);
            ws.send(Message::text(text.clone())).unwrap();
            assert_eq!(ws.read().unwrap(), Message::text(text));
            sent += length + 6;
            echoed += length + 2;
        }
        let port = ws.get_ref().local_addr().unwrap();
        expected.push((port.to_string(), sent as u64, echoed as u64, i as u64 + 1));
        clients.push(ws);
    }

    let document = status(admin);
    assert_eq!(number(&document, "tunnels_open"), TUNNELS as u64);
    assert!(number(&document, "connections_open") >= TUNNELS as u64);
    let tunnels = document["tunnels"].as_array().unwrap();
    assert_eq!(tunnels.len(), TUNNELS);
    let mut last_age = f64::INFINITY;
    // Longest-lived first: the order they were opened in.
    for (tunnel, (client, bytes_in, bytes_out, messages)) in tunnels.iter().zip(&expected) {
        assert_eq!(tunnel["client"], client.as_str(), "{tunnel}");
        assert_eq!(tunnel["route"], "/ws/");
        assert_eq!(tunnel["protocol"], "websocket");
        assert_eq!(number(tunnel, "bytes_in"), *bytes_in, "{tunnel}");
        assert_eq!(number(tunnel, "bytes_out"), *bytes_out, "{tunnel}");
        assert_eq!(number(tunnel, "messages_in"), *messages, "{tunnel}");
        assert_eq!(number(tunnel, "messages_out"), *messages, "{tunnel}");
        let age = tunnel["age_seconds"].as_f64().unwrap();
        assert!((0.0..60.0).contains(&age) && age <= last_age, "{tunnel}");
        last_age = age;
    }

    let routes = &document["routes"];
    let ws_route = find(routes, "route", "/ws/");
    assert_eq!(number(ws_route, "tunnels_open"), TUNNELS as u64);
    assert_eq!(number(ws_route, "tunnels_opened"), TUNNELS as u64);
    assert_eq!(number(ws_route, "requests"), 0, "an upgrade is a tunnel");
    let root = find(routes, "route", "/");
    assert_eq!(number(root, "requests"), REQUESTS as u64);
    assert_eq!(number(&root["requests_by_class"], "2xx"), REQUESTS as u64);
    assert_eq!(number(root, "tunnels_open"), 0);

    // Round robin over [echo, dead]: the second tunnel's dial tried the dead server
    // first, which failed once and is tried last since.
    let echo_group = find(&document["upstreams"], "upstream", "echo");
    let live = find(&echo_group["servers"], "server", &echo.addr().to_string());
    assert_eq!(live["state"], "healthy");
    assert_eq!(number(live, "connections_open"), TUNNELS as u64);
    assert_eq!(number(live, "connect_errors"), 0);
    let refused = find(&echo_group["servers"], "server", &dead.to_string());
    assert_eq!(refused["state"], "failed", "{refused}");
    let failed_for = refused["failed_for_seconds"].as_f64().unwrap();
    assert!(failed_for > 0.0 && failed_for <= 10.0, "{refused}");
    assert_eq!(number(refused, "connect_errors"), 1);
    assert_eq!(number(refused, "connections_open"), 0);
    let http_group = find(&document["upstreams"], "upstream", "default");
    let origin = find(&http_group["servers"], "server", &http.addr().to_string());
    assert_eq!(
        number(origin, "connections_open"),
        0,
        "the requests are over"
    );
    assert_eq!(origin["state"], "healthy");

    // The first tunnel closes: it leaves the list, the others stay in their order.
    let mut first = clients.remove(0);
    ws_close(&mut first);
    drop(first);
    wait_until(
        Duration::from_secs(10),
        "the closed tunnel to leave",
        || number(&status(admin), "tunnels_open") == TUNNELS as u64 - 1,
    );
    let document = status(admin);
    let listed: Vec<&str> = document["tunnels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["client"].as_str().unwrap())
        .collect();
    let still: Vec<&str> = expected[1..].iter().map(|e| e.0.as_str()).collect();
    assert_eq!(listed, still);
    let ws_route = find(&document["routes"], "route", "/ws/");
    assert_eq!(number(ws_route, "tunnels_open"), TUNNELS as u64 - 1);
    for mut ws in clients {
        ws_close(&mut ws);
    }
}

/// Opens a byte tunnel (protocol `chat`, which the proxy does not follow) through `proxy`
/// to the holding origin, and returns the client's socket.
fn chat_tunnel(proxy: SocketAddr) -> TcpStream {
    let mut conn = Conn::connect(proxy);
    conn.write_all(b"GET /c HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: chat\r\n\r\n");
    let response = conn.read_response("GET").expect("a 101");
    assert_eq!(response.head.status(), 101);
    let (stream, _) = conn.into_parts();
    stream
}

/// An origin on one thread that answers every upgrade with a `101` to `chat` and holds
/// the connection: a thousand tunnels need no thousand threads.
fn holding_origin(connections: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::with_capacity(connections);
        for stream in listener.incoming().take(connections) {
            let Ok(mut stream) = stream else { continue };
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match stream.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let answer =
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: chat\r\n\r\n";
            if std::io::Write::write_all(&mut stream, answer).is_ok() {
                held.push(stream);
            }
        }
        // Held until every client is gone: each read ends at the proxy's close.
        for mut stream in held {
            let _ = stream.read_to_end(&mut Vec::new());
        }
    });
    addr
}

#[test]
fn at_most_a_thousand_tunnels_are_listed_the_longest_lived_first_with_the_total() {
    const OPEN: usize = 1_005;
    let origin = holding_origin(OPEN);
    let proxy = Proxy::start_with(origin, |config| {
        config.workers = 2;
        config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
        config.core.routes[0].allow_upgrade = vec!["chat".into()];
    });
    let admin = proxy.admin_addr().unwrap();
    let mut clients = Vec::with_capacity(OPEN);
    for _ in 0..OPEN {
        clients.push(chat_tunnel(proxy.addr()));
    }
    let document = status(admin);
    assert_eq!(number(&document, "tunnels_open"), OPEN as u64);
    let tunnels = document["tunnels"].as_array().unwrap();
    assert_eq!(tunnels.len(), 1_000);
    // Each tunnel was open before the next client connected: the listed ones are the
    // first thousand, in that order.
    for (tunnel, client) in tunnels.iter().zip(&clients) {
        let client = client.local_addr().unwrap().to_string();
        assert_eq!(tunnel["client"], client.as_str());
        assert_eq!(tunnel["protocol"], "chat");
        assert_eq!(tunnel["route"], "/");
        // A byte tunnel knows no messages.
        assert!(tunnel.get("messages_in").is_none(), "{tunnel}");
    }
    let ages: Vec<f64> = tunnels
        .iter()
        .map(|t| t["age_seconds"].as_f64().unwrap())
        .collect();
    assert!(ages.windows(2).all(|pair| pair[0] >= pair[1]));
    let root = find(&document["routes"], "route", "/");
    assert_eq!(number(root, "tunnels_open"), OPEN as u64);
    drop(clients);
    wait_until(Duration::from_secs(20), "every tunnel to close", || {
        number(&status(admin), "tunnels_open") == 0
    });
}

#[test]
fn the_status_page_is_one_self_contained_html_file_and_other_requests_are_refused() {
    let origin = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = Proxy::start_with(origin.local_addr().unwrap(), |config| {
        config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    });
    let admin = proxy.admin_addr().unwrap();
    let (code, content_type, body) = admin_get(admin, "GET", "/status");
    assert_eq!(code, 200);
    assert_eq!(content_type.as_deref(), Some("text/html; charset=utf-8"));
    let page = String::from_utf8(body).unwrap();
    assert!(page.starts_with("<!doctype html>"));
    assert!(
        page.contains("fetch(\"/status.json\""),
        "it reads the document"
    );
    for external in ["http://", "https://", "src=", "<link", "@import"] {
        assert!(!page.contains(external), "the page loads {external}");
    }
    let (code, _, body) = admin_get(admin, "HEAD", "/status.json");
    assert_eq!((code, body.len()), (200, 0));
    for method in ["POST", "PUT", "DELETE"] {
        for path in ["/status", "/status.json"] {
            assert_eq!(admin_get(admin, method, path).0, 405, "{method} {path}");
        }
    }
    for path in ["/status/", "/status.json/x", "/status.html", "/tunnels"] {
        assert_eq!(admin_get(admin, "GET", path).0, 404, "{path}");
    }
    // Nothing the admin listener answered reached the upstream.
    origin.set_nonblocking(true).unwrap();
    assert!(origin.accept().is_err(), "the origin was reached");
}

#[test]
fn a_websocket_violation_counts_on_the_tunnels_route_in_the_metrics_and_the_status() {
    let echo = Origin::ws_echo();
    let proxy = Proxy::start_with(echo.addr(), |config| {
        config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    });
    let admin = proxy.admin_addr().unwrap();
    let (mut client, _) = ws_connect_raw(proxy.addr(), "");
    // A client frame without a mask: never forwarded, Close 1002 to both sides.
    client.write_all(&encode_frame(1, b"hi", None));
    client.read_to_end().expect("the proxy closes");
    let series = "switchyard_ws_violations_total{route=\"/\",side=\"client\",rule=\"client_frame_unmasked\"} ";
    let count = || {
        let (_, _, body) = admin_get(admin, "GET", "/metrics");
        let text = String::from_utf8(body).unwrap();
        let line = text.lines().find_map(|line| line.strip_prefix(series));
        line.map(str::to_string)
    };
    wait_until(
        Duration::from_secs(10),
        "the violation to be counted",
        || count().as_deref() == Some("1"),
    );
    let document = status(admin);
    assert_eq!(
        number(find(&document["routes"], "route", "/"), "ws_violations"),
        1
    );
    assert_eq!(number(&document, "tunnels_open"), 0);
}

#[test]
fn after_a_reload_status_json_shows_the_new_generation_and_still_lists_the_old_ones_tunnels() {
    let first = Origin::ws_echo();
    let second = Origin::ws_echo();
    let proxy = Proxy::start_with(first.addr(), |config| {
        config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    });
    let admin = proxy.admin_addr().expect("the admin listener is on");
    let (mut old, _) = ws_connect(proxy.addr(), "/chat");
    old.send(Message::text("before")).unwrap();
    assert_eq!(old.read().unwrap(), Message::text("before"));

    let report = proxy
        .reload_with(second.addr(), |config| {
            config.core.routes.insert(0, Route::new("/live/"));
            config.route_upstream = vec![0, 0];
        })
        .expect("a valid configuration");
    assert_eq!(report.generation, 2);
    let (mut new, _) = ws_connect(proxy.addr(), "/live/feed");
    new.send(Message::text("after")).unwrap();
    assert_eq!(new.read().unwrap(), Message::text("after"));

    let document = status(admin);
    assert_eq!(number(&document, "generation"), 2);
    assert_eq!(number(&document, "tunnels_open"), 2);
    let tunnels = &document["tunnels"];
    // The old generation's tunnel keeps its route's name; the new route is counted.
    assert_eq!(tunnels[0]["route"], "/");
    assert_eq!(tunnels[1]["route"], "/live/");
    assert_eq!(
        number(
            find(&document["routes"], "route", "/live/"),
            "tunnels_opened"
        ),
        1
    );
    // The upstream servers shown are the new generation's; the tunnel still open on the
    // removed server is not among them, the new one's is counted as in use.
    let servers = &find(&document["upstreams"], "upstream", "default")["servers"];
    assert_eq!(servers.as_array().map(Vec::len), Some(1), "{servers}");
    let live = find(servers, "server", &second.addr().to_string());
    assert_eq!(number(live, "connections_open"), 1);

    ws_close(&mut old);
    ws_close(&mut new);
    drop((old, new));
    wait_until(Duration::from_secs(5), "both tunnels closed", || {
        number(&status(admin), "tunnels_open") == 0
    });
}
