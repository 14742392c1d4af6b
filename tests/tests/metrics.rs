//! `/metrics` read as Prometheus reads it: known traffic through the proxy (requests
//! with known statuses, a WebSocket tunnel with known messages, a refused request, a
//! failed connect), then the admin listener's text parsed by a Prometheus text-format
//! parser and every value checked against what was sent.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use prometheus_parse::{LineInfo, Sample, Scrape, Value};
use switchyard_core::Route;
use switchyard_e2e::{send_raw, wait_until, ws_close, ws_connect, Conn, Origin, Proxy, Reply};
use switchyard_smol::UpstreamGroup;
use tungstenite::Message;

/// Requests answered 200 and 404 by the origin.
const OK: usize = 7;
const NOT_FOUND: usize = 3;
/// Text messages sent through the WebSocket tunnel (each echoed).
const MESSAGES: usize = 5;
const WORKERS: usize = 2;

/// A port nothing listens on: bound, then closed.
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Routes `/` (an HTTP origin: `/missing` is 404, the rest 200), `/ws/` (a WebSocket
/// echo, frame-aware), `/raw/` (the same echo through a byte tunnel: no frame
/// validation, no pings) and `/dead/` (a server that refuses connections), two workers,
/// the admin listener on.
fn proxy(http: &Origin, echo: &Origin, dead: SocketAddr) -> Proxy {
    Proxy::start_with(http.addr(), |config| {
        config.workers = WORKERS;
        config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
        config.core.routes.push(Route::new("/ws/"));
        let mut raw = Route::new("/raw/");
        raw.websocket.validate = false;
        raw.websocket.ping_interval = None;
        config.core.routes.push(raw);
        config.core.routes.push(Route::new("/dead/"));
        config.upstreams.push(UpstreamGroup {
            name: "echo".into(),
            servers: vec![echo.addr()],
            ..Default::default()
        });
        config.upstreams.push(UpstreamGroup {
            name: "dead".into(),
            servers: vec![dead],
            ..Default::default()
        });
        config.route_upstream = vec![0, 1, 1, 2];
    })
}

/// `GET /metrics` on the admin listener: the text, checked line by line against the
/// grammar (no line the parser would skip), and parsed.
fn scrape(admin: SocketAddr) -> (String, Scrape) {
    let mut conn = Conn::connect(admin);
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n");
    let response = conn.read_response("GET").expect("an answer");
    assert_eq!(response.head.status(), 200);
    assert_eq!(
        response.head.get("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8(response.body).expect("UTF-8");
    for line in text.lines() {
        match LineInfo::parse(line) {
            LineInfo::Doc { .. } | LineInfo::Type { .. } | LineInfo::Sample { .. } => {}
            other => panic!("{line:?} is not a line of the text format: {other:?}"),
        }
    }
    let lines = text.lines().map(|line| Ok(line.to_string()));
    let scrape = Scrape::parse(lines).expect("the text parses");
    (text, scrape)
}

/// The one sample of `metric` whose labels are exactly `labels`.
fn sample<'a>(scrape: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> &'a Sample {
    let found: Vec<&Sample> = scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == metric
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .collect();
    assert_eq!(found.len(), 1, "{metric} {labels:?}: {found:#?}");
    found[0]
}

fn counter(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match sample(scrape, metric, labels).value {
        Value::Counter(value) => value,
        ref other => panic!("{metric} {labels:?} is not a counter: {other:?}"),
    }
}

fn gauge(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match sample(scrape, metric, labels).value {
        Value::Gauge(value) => value,
        ref other => panic!("{metric} {labels:?} is not a gauge: {other:?}"),
    }
}

/// The `+Inf` bucket (the count) of a histogram.
fn observations(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match &sample(scrape, metric, labels).value {
        Value::Histogram(buckets) => {
            let all = buckets.iter().find(|b| b.less_than == f64::INFINITY);
            all.expect("a +Inf bucket").count
        }
        other => panic!("{metric} {labels:?} is not a histogram: {other:?}"),
    }
}

/// Sends `GET path` with `Connection: close` and reads the answer to the proxy's close,
/// by which time the connection's events have all been counted.
fn get_and_close(proxy: SocketAddr, path: &str) -> u16 {
    let mut client = Conn::connect(proxy);
    client.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let status = client
        .read_response("GET")
        .expect("a response")
        .head
        .status();
    client.read_to_end().expect("the proxy closes");
    status
}

/// Opens a WebSocket on `path`, sends text messages of 1..=[`MESSAGES`] bytes (each
/// echoed), closes it normally and returns the payload bytes sent. Client frames are
/// masked: 2 + 4 header bytes each, the Close without a code included.
fn echo_messages(proxy: SocketAddr, admin: SocketAddr, route: &str) -> usize {
    let (mut ws, _) = ws_connect(proxy, &format!("{route}chat"));
    let labels = [("route", route), ("protocol", "websocket")];
    assert_eq!(
        gauge(&scrape(admin).1, "switchyard_tunnels_open", &labels),
        1.0
    );
    let mut payload = 0;
    for length in 1..=MESSAGES {
        let text = "x".repeat(length);
        ws.send(Message::text(text.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(text));
        payload += length;
    }
    ws_close(&mut ws);
    payload
}

/// Waits until the proxy has ended the tunnel of `route`: the client's closing
/// handshake is over before the proxy's task has seen both EOFs and reported it.
fn tunnel_closed(admin: SocketAddr, route: &str) {
    let labels = [("route", route), ("protocol", "websocket")];
    wait_until(Duration::from_secs(10), "the tunnel to be closed", || {
        gauge(&scrape(admin).1, "switchyard_tunnels_open", &labels) == 0.0
    });
}

/// The tunnel of `route` closed once, for a normal reason, and carried `payload` bytes
/// of messages each way in [`MESSAGES`] frames and a Close.
fn assert_one_normal_tunnel(after: &Scrape, text: &str, route: &str, payload: usize) {
    let labels = [("route", route), ("protocol", "websocket")];
    assert_eq!(gauge(after, "switchyard_tunnels_open", &labels), 0.0);
    let closed: f64 = after
        .samples
        .iter()
        .filter(|s| s.metric == "switchyard_tunnels_total" && s.labels.get("route") == Some(route))
        .map(|s| match s.value {
            Value::Counter(value) => value,
            ref other => panic!("not a counter: {other:?}"),
        })
        .sum();
    assert_eq!(closed, 1.0, "one tunnel closed on {route}:\n{text}");
    let normal: f64 = ["both_closed", "client_closed", "upstream_closed"]
        .iter()
        .map(|reason| {
            let labels = [labels[0], labels[1], ("reason", *reason)];
            counter(after, "switchyard_tunnels_total", &labels)
        })
        .sum();
    assert_eq!(normal, 1.0, "it closed normally:\n{text}");
    let bytes = "switchyard_tunnel_bytes_total";
    let direction = |d| [("route", route), ("direction", d)];
    // The origin's frames are not masked: 2 header bytes each.
    let sent = payload + 6 * (MESSAGES + 1);
    let echoed = payload + 2 * (MESSAGES + 1);
    assert_eq!(
        counter(after, bytes, &direction("client_to_upstream")),
        sent as f64
    );
    assert_eq!(
        counter(after, bytes, &direction("upstream_to_client")),
        echoed as f64
    );
}

#[test]
fn metrics_count_the_traffic_sent() {
    let http = Origin::http(|request| {
        let answer = if request.head.target() == "/missing" {
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()
        } else {
            switchyard_e2e::ok(b"hello")
        };
        Reply::Send(answer)
    });
    let echo = Origin::ws_echo();
    let dead = closed_port();
    let proxy = proxy(&http, &echo, dead);
    let admin = proxy.admin_addr().expect("the admin listener is on");

    // Nothing yet: every known series is there, at zero.
    let (_, before) = scrape(admin);
    let requests = "switchyard_http_requests_total";
    assert_eq!(
        counter(&before, requests, &[("route", "/"), ("code", "2xx")]),
        0.0
    );
    assert_eq!(gauge(&before, "switchyard_config_generation", &[]), 1.0);

    for _ in 0..OK {
        assert_eq!(get_and_close(proxy.addr(), "/hello"), 200);
    }
    for _ in 0..NOT_FOUND {
        assert_eq!(get_and_close(proxy.addr(), "/missing"), 404);
    }
    assert_eq!(get_and_close(proxy.addr(), "/dead/x"), 502);
    let (status, _) = send_raw(proxy.addr(), b"NOT HTTP AT ALL\r\n\r\n");
    assert_eq!(status, 400);
    let payload = echo_messages(proxy.addr(), admin, "/raw/");
    tunnel_closed(admin, "/raw/");

    let (text, after) = scrape(admin);
    let route = |prefix, code| [("route", prefix), ("code", code)];
    assert_eq!(counter(&after, requests, &route("/", "2xx")), OK as f64);
    assert_eq!(
        counter(&after, requests, &route("/", "4xx")),
        NOT_FOUND as f64
    );
    assert_eq!(counter(&after, requests, &route("/", "5xx")), 0.0);
    assert_eq!(counter(&after, requests, &route("/dead/", "5xx")), 1.0);
    assert_eq!(counter(&after, requests, &route("none", "4xx")), 1.0);
    // The upgrade became a tunnel: it is counted there, not as a request.
    for code in ["1xx", "2xx", "3xx", "4xx", "5xx", "none"] {
        assert_eq!(
            counter(&after, requests, &route("/raw/", code)),
            0.0,
            "{code}"
        );
    }
    let durations = "switchyard_http_request_duration_seconds";
    assert_eq!(
        observations(&after, durations, &[("route", "/")]),
        (OK + NOT_FOUND) as f64
    );
    assert_eq!(observations(&after, durations, &[("route", "/dead/")]), 1.0);

    assert_one_normal_tunnel(&after, &text, "/raw/", payload);
    assert_eq!(
        observations(&after, "switchyard_tunnel_duration_seconds", &[]),
        1.0
    );
    // A byte tunnel knows no frames: no messages are counted.
    let messages = "switchyard_ws_messages_total";
    for d in ["client_to_upstream", "upstream_to_client"] {
        let labels = [("route", "/raw/"), ("direction", d)];
        assert_eq!(counter(&after, messages, &labels), 0.0, "{d}");
    }

    let rejected = "switchyard_rejected_requests_total";
    assert_eq!(counter(&after, rejected, &[("status", "400")]), 1.0);
    assert_eq!(counter(&after, rejected, &[("status", "502")]), 0.0);
    let errors = "switchyard_upstream_connect_errors_total";
    let dead_server = dead.to_string();
    let dead_labels = [("upstream", "dead"), ("server", dead_server.as_str())];
    assert_eq!(counter(&after, errors, &dead_labels), 1.0);
    let http_server = http.addr().to_string();
    let http_labels = [("upstream", "default"), ("server", http_server.as_str())];
    assert_eq!(counter(&after, errors, &http_labels), 0.0);
    // Each worker that served a request keeps its upstream connection for the next.
    let idle = gauge(
        &after,
        "switchyard_upstream_pool_idle",
        &[("upstream", "default")],
    );
    assert!((1.0..=WORKERS as f64).contains(&idle), "{idle}");
    assert_eq!(
        gauge(
            &after,
            "switchyard_upstream_pool_idle",
            &[("upstream", "dead")]
        ),
        0.0
    );
    assert_eq!(
        counter(
            &after,
            "switchyard_config_reloads_total",
            &[("result", "success")]
        ),
        0.0
    );

    // Every client has closed; each connection's task ends once it sees that.
    wait_until(Duration::from_secs(10), "no connection open", || {
        gauge(&scrape(admin).1, "switchyard_connections_open", &[]) == 0.0
    });
}

#[test]
fn websocket_messages_are_counted_in_frame_aware_tunnels() {
    let http = Origin::http(|_| Reply::Send(switchyard_e2e::ok(b"")));
    let echo = Origin::ws_echo();
    let proxy = proxy(&http, &echo, closed_port());
    let admin = proxy.admin_addr().expect("the admin listener is on");

    let payload = echo_messages(proxy.addr(), admin, "/ws/");
    tunnel_closed(admin, "/ws/");

    let (text, after) = scrape(admin);
    assert_one_normal_tunnel(&after, &text, "/ws/", payload);
    let messages = "switchyard_ws_messages_total";
    for d in ["client_to_upstream", "upstream_to_client"] {
        let labels = [("route", "/ws/"), ("direction", d)];
        assert_eq!(counter(&after, messages, &labels), MESSAGES as f64, "{d}");
    }
    for side in ["client", "upstream"] {
        let dead_peers = "switchyard_ws_dead_peers_total";
        assert_eq!(counter(&after, dead_peers, &[("side", side)]), 0.0);
    }
}
