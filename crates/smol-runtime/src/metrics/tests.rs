//! The counters and their encoding: events in, exact lines of the text format out.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchyard_core::websocket::FrameStats;
use switchyard_core::{
    AccessRecord, CloseReason, ErrorKind, Event, ProtocolError, Route, Side, TunnelRecord,
    WebSocketRecord,
};

use super::layout::{self, Layout};
use super::Metrics;
use crate::events::{EventContext, EventSink};
use crate::signal::Tracker;
use crate::{ServerConfig, UpstreamGroup};

const WORKERS: usize = 2;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// Routes `/` (websocket) and `/chat/` (websocket, TLS/1.2 and TLS/1.3); groups
/// `default` (one server) and `chat` (two, one shared with `default`).
fn config() -> ServerConfig {
    let mut config = ServerConfig::simple(addr("127.0.0.1:8080"), addr("127.0.0.1:9000"));
    let mut chat = Route::new("/chat/");
    chat.allow_upgrade = vec!["websocket".into(), "TLS/1.2".into(), "tls/1.3".into()];
    config.core.routes.push(chat);
    config.upstreams.push(UpstreamGroup {
        name: "chat".into(),
        servers: vec![addr("127.0.0.1:9001"), addr("127.0.0.1:9000")],
        ..Default::default()
    });
    config.route_upstream = vec![0, 1];
    config
}

fn metrics() -> (Arc<Metrics>, Arc<Tracker>) {
    let connections = Arc::new(Tracker::default());
    let metrics = Metrics::new(&config(), WORKERS, connections.clone());
    (Arc::new(metrics), connections)
}

fn on(worker: usize) -> EventContext {
    EventContext::new(worker, addr("127.0.0.1:50000"))
}

fn exchange(route: Option<usize>, status: u16, duration: Duration) -> Event {
    Event::Exchange(AccessRecord {
        method: "GET".into(),
        target: "/".into(),
        route,
        status,
        bytes_from_client: 10,
        bytes_to_client: 20,
        duration,
        close: None,
    })
}

fn opened(route: usize, protocol: &str) -> Event {
    Event::TunnelOpened {
        route,
        protocol: protocol.into(),
    }
}

fn closed(route: usize, protocol: &str, reason: CloseReason, bytes: (u64, u64)) -> Event {
    Event::TunnelClosed(Box::new(TunnelRecord {
        route,
        target: "/chat/room".into(),
        protocol: protocol.into(),
        bytes_client_to_upstream: bytes.0,
        bytes_upstream_to_client: bytes.1,
        duration: Duration::from_secs(90),
        reason,
        websocket: None,
    }))
}

/// The value of the one sample line `series` (name and labels as written), if any.
fn value(text: &str, series: &str) -> Option<String> {
    let prefix = format!("{series} ");
    let mut found = text.lines().filter_map(|line| line.strip_prefix(&prefix));
    let value = found.next().map(str::to_string);
    assert!(found.next().is_none(), "{series} appears twice");
    value
}

fn expect(text: &str, series: &str, expected: &str) {
    assert_eq!(
        value(text, series).as_deref(),
        Some(expected),
        "{series} in\n{text}"
    );
}

#[test]
fn requests_of_every_worker_are_summed_by_route_and_status_class() {
    let (metrics, _) = metrics();
    metrics.start(WORKERS);
    for _ in 0..3 {
        metrics.event(&on(0), &exchange(Some(0), 200, Duration::from_millis(1)));
    }
    metrics.event(&on(1), &exchange(Some(0), 204, Duration::from_millis(1)));
    metrics.event(&on(1), &exchange(Some(1), 404, Duration::from_millis(1)));
    metrics.event(&on(0), &exchange(None, 400, Duration::ZERO));
    metrics.event(&on(1), &exchange(Some(1), 0, Duration::ZERO));
    let text = metrics.encode();
    let requests = |route: &str, code: &str| {
        format!("switchyard_http_requests_total{{route=\"{route}\",code=\"{code}\"}}")
    };
    expect(&text, &requests("/", "2xx"), "4");
    expect(&text, &requests("/", "4xx"), "0");
    expect(&text, &requests("/chat/", "4xx"), "1");
    expect(&text, &requests("/chat/", "none"), "1");
    expect(&text, &requests("none", "4xx"), "1");
    expect(&text, &requests("none", "1xx"), "0");
    assert!(
        text.contains("# TYPE switchyard_http_requests_total counter\n"),
        "{text}"
    );
}

#[test]
fn request_durations_fall_in_buckets_that_include_their_bound() {
    let (metrics, _) = metrics();
    for millis in [5, 6, 10, 20_000] {
        let event = exchange(Some(1), 200, Duration::from_millis(millis));
        metrics.event(&on(1), &event);
    }
    let text = metrics.encode();
    let bucket = |le: &str| {
        format!("switchyard_http_request_duration_seconds_bucket{{route=\"/chat/\",le=\"{le}\"}}")
    };
    // Cumulative: ≤ 5 ms holds one, ≤ 10 ms three, 20 s is above every bound.
    expect(&text, &bucket("0.005"), "1");
    expect(&text, &bucket("0.01"), "3");
    expect(&text, &bucket("10"), "3");
    expect(&text, &bucket("+Inf"), "4");
    let sum = "switchyard_http_request_duration_seconds_sum{route=\"/chat/\"}";
    expect(&text, sum, "20.021");
    let count = "switchyard_http_request_duration_seconds_count{route=\"/chat/\"}";
    expect(&text, count, "4");
    assert!(text.contains("# TYPE switchyard_http_request_duration_seconds histogram\n"));
}

#[test]
fn tunnels_are_counted_open_then_closed_by_protocol_and_reason() {
    let (metrics, _) = metrics();
    metrics.event(&on(0), &opened(1, "websocket"));
    metrics.event(&on(1), &opened(1, "WebSocket"));
    metrics.event(&on(1), &opened(1, "TLS/1.3"));
    let text = metrics.encode();
    let open = |protocol: &str| {
        format!("switchyard_tunnels_open{{route=\"/chat/\",protocol=\"{protocol}\"}}")
    };
    expect(&text, &open("websocket"), "2");
    // TLS/1.2 and tls/1.3 are one protocol by name.
    expect(&text, &open("TLS"), "1");
    expect(
        &text,
        "switchyard_tunnels_open{route=\"/\",protocol=\"websocket\"}",
        "0",
    );
    assert_eq!(value(&text, &open("other")), None, "no other protocol yet");

    metrics.event(
        &on(1),
        &closed(1, "WebSocket", CloseReason::BothClosed, (100, 200)),
    );
    let text = metrics.encode();
    expect(&text, &open("websocket"), "1");
    let total = |protocol: &str, reason: &str| {
        format!(
            "switchyard_tunnels_total{{route=\"/chat/\",protocol=\"{protocol}\",reason=\"{reason}\"}}"
        )
    };
    expect(&text, &total("websocket", "both_closed"), "1");
    expect(&text, &total("websocket", "shutdown"), "0");
    expect(&text, &total("TLS", "both_closed"), "0");
    let bytes = |direction: &str| {
        format!("switchyard_tunnel_bytes_total{{route=\"/chat/\",direction=\"{direction}\"}}")
    };
    expect(&text, &bytes("client_to_upstream"), "100");
    expect(&text, &bytes("upstream_to_client"), "200");
    expect(
        &text,
        "switchyard_tunnel_duration_seconds_bucket{le=\"60\"}",
        "0",
    );
    expect(
        &text,
        "switchyard_tunnel_duration_seconds_bucket{le=\"300\"}",
        "1",
    );
    expect(&text, "switchyard_tunnel_duration_seconds_count", "1");
    expect(&text, "switchyard_tunnel_duration_seconds_sum", "90.0");
}

#[test]
fn a_protocol_no_route_allows_counts_as_other() {
    let (metrics, _) = metrics();
    metrics.event(&on(0), &opened(0, "h2c"));
    metrics.event(&on(0), &closed(0, "h2c", CloseReason::Shutdown, (1, 1)));
    let text = metrics.encode();
    expect(
        &text,
        "switchyard_tunnels_open{route=\"/\",protocol=\"other\"}",
        "0",
    );
    expect(
        &text,
        "switchyard_tunnels_total{route=\"/\",protocol=\"other\",reason=\"shutdown\"}",
        "1",
    );
}

#[test]
fn websocket_messages_and_dead_peers_are_counted_by_direction_and_side() {
    let (metrics, _) = metrics();
    let frames = |messages| FrameStats {
        messages,
        frames: messages + 1,
        ..FrameStats::default()
    };
    let mut event = closed(0, "websocket", CloseReason::ClientUnresponsive, (0, 0));
    if let Event::TunnelClosed(record) = &mut event {
        record.websocket = Some(WebSocketRecord {
            client: frames(7),
            upstream: frames(5),
            pings_sent: 1,
            pongs_received: 0,
            last_ping_rtt: None,
            min_ping_rtt: None,
        });
    }
    metrics.event(&on(0), &event);
    metrics.event(
        &on(1),
        &closed(0, "websocket", CloseReason::UpstreamUnresponsive, (0, 0)),
    );
    metrics.event(
        &on(1),
        &closed(0, "websocket", CloseReason::UpstreamUnresponsive, (0, 0)),
    );
    let text = metrics.encode();
    let messages = |direction: &str| {
        format!("switchyard_ws_messages_total{{route=\"/\",direction=\"{direction}\"}}")
    };
    expect(&text, &messages("client_to_upstream"), "7");
    expect(&text, &messages("upstream_to_client"), "5");
    expect(
        &text,
        "switchyard_ws_dead_peers_total{side=\"client\"}",
        "1",
    );
    expect(
        &text,
        "switchyard_ws_dead_peers_total{side=\"upstream\"}",
        "2",
    );
}

#[test]
fn rejections_are_counted_by_the_status_sent() {
    let (metrics, _) = metrics();
    let rejected = |side, kind| Event::Rejected(ProtocolError { side, kind });
    metrics.event(&on(0), &rejected(Side::Client, ErrorKind::HeadTooLarge));
    metrics.event(&on(1), &rejected(Side::Client, ErrorKind::HeadTooLarge));
    metrics.event(&on(1), &rejected(Side::Upstream, ErrorKind::HeadTooLarge));
    let text = metrics.encode();
    expect(
        &text,
        "switchyard_rejected_requests_total{status=\"431\"}",
        "2",
    );
    expect(
        &text,
        "switchyard_rejected_requests_total{status=\"502\"}",
        "1",
    );
    expect(
        &text,
        "switchyard_rejected_requests_total{status=\"400\"}",
        "0",
    );
    assert_eq!(
        value(&text, "switchyard_rejected_requests_total{status=\"418\"}"),
        None,
        "a status the core never sends is not listed until it counts"
    );
}

#[test]
fn upstream_tls_errors_count_per_group_server_and_reason_across_workers() {
    let (metrics, _) = metrics();
    let series = |reason: &str| {
        format!("switchyard_upstream_tls_errors_total{{upstream=\"chat\",server=\"127.0.0.1:9001\",reason=\"{reason}\"}}")
    };
    assert!(
        !metrics.encode().contains(&series("unknown_issuer")),
        "none yet"
    );
    metrics
        .worker(0)
        .upstream_tls_failed("chat", addr("127.0.0.1:9001"), "unknown_issuer");
    metrics
        .worker(1)
        .upstream_tls_failed("chat", addr("127.0.0.1:9001"), "unknown_issuer");
    metrics
        .worker(1)
        .upstream_tls_failed("chat", addr("127.0.0.1:9001"), "name_mismatch");
    let text = metrics.encode();
    expect(&text, &series("unknown_issuer"), "2");
    expect(&text, &series("name_mismatch"), "1");
}

#[test]
fn connect_errors_count_per_group_and_server_and_pools_per_group() {
    let (metrics, connections) = metrics();
    let worker0 = metrics.worker(0);
    let worker1 = metrics.worker(1);
    worker0.connect_failed("chat", addr("127.0.0.1:9001"));
    worker1.connect_failed("chat", addr("127.0.0.1:9001"));
    worker1.connect_failed("default", addr("127.0.0.1:9000"));
    worker1.connect_failed("nobody", addr("127.0.0.1:1"));
    worker0.pool_idle(addr("127.0.0.1:9000"), 3);
    worker1.pool_idle(addr("127.0.0.1:9000"), 2);
    worker1.pool_idle(addr("127.0.0.1:9001"), 4);
    let _open = [connections.enter(), connections.enter()];
    let text = metrics.encode();
    let errors = |group: &str, server: &str| {
        format!(
            "switchyard_upstream_connect_errors_total{{upstream=\"{group}\",server=\"{server}\"}}"
        )
    };
    expect(&text, &errors("chat", "127.0.0.1:9001"), "2");
    expect(&text, &errors("chat", "127.0.0.1:9000"), "0");
    expect(&text, &errors("default", "127.0.0.1:9000"), "1");
    // 127.0.0.1:9000 serves both groups: its idle connections count in both.
    expect(
        &text,
        "switchyard_upstream_pool_idle{upstream=\"default\"}",
        "5",
    );
    expect(
        &text,
        "switchyard_upstream_pool_idle{upstream=\"chat\"}",
        "9",
    );
    expect(&text, "switchyard_connections_open", "2");

    // A change to many servers at once replaces the worker's counts.
    worker1.pool_idle_all([(addr("127.0.0.1:9001"), 1)]);
    let text = metrics.encode();
    expect(
        &text,
        "switchyard_upstream_pool_idle{upstream=\"default\"}",
        "3",
    );
    expect(
        &text,
        "switchyard_upstream_pool_idle{upstream=\"chat\"}",
        "4",
    );
}

#[test]
fn configuration_metrics_say_generation_one_and_no_reload() {
    let (metrics, _) = metrics();
    let text = metrics.encode();
    expect(&text, "switchyard_config_generation", "1");
    expect(
        &text,
        "switchyard_config_reloads_total{result=\"success\"}",
        "0",
    );
    expect(
        &text,
        "switchyard_config_reloads_total{result=\"failure\"}",
        "0",
    );
}

#[test]
fn an_event_of_an_unknown_worker_is_ignored() {
    let (metrics, _) = metrics();
    metrics.event(&on(WORKERS), &exchange(Some(0), 200, Duration::ZERO));
    metrics
        .worker(WORKERS)
        .connect_failed("chat", addr("127.0.0.1:9001"));
    let text = metrics.encode();
    expect(
        &text,
        "switchyard_http_requests_total{route=\"/\",code=\"2xx\"}",
        "0",
    );
}

/// Every family has one `# HELP` and one `# TYPE` line before its samples, every sample
/// belongs to the family above it, and no series appears twice.
#[test]
fn the_text_is_well_formed_families_with_unique_series() {
    let (metrics, _) = metrics();
    let text = metrics.encode();
    let mut families = HashSet::new();
    let mut series = HashSet::new();
    let mut current: Option<(String, String)> = None;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(help) = line.strip_prefix("# HELP ") {
            let name = help.split(' ').next().unwrap().to_string();
            let kind = lines
                .next()
                .and_then(|l| l.strip_prefix("# TYPE "))
                .unwrap();
            let (type_name, kind) = kind.split_once(' ').unwrap();
            assert_eq!(type_name, name);
            assert!(families.insert(name.clone()), "{name} twice");
            current = Some((name, kind.to_string()));
            continue;
        }
        let (name, kind) = current.as_ref().expect("a sample before any family");
        let (key, number) = line.rsplit_once(' ').unwrap();
        number
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("{line}: not a number"));
        let metric = key.split('{').next().unwrap();
        let allowed: Vec<String> = if kind == "histogram" {
            ["_bucket", "_sum", "_count"]
                .iter()
                .map(|suffix| format!("{name}{suffix}"))
                .collect()
        } else {
            vec![name.clone()]
        };
        assert!(allowed.iter().any(|a| a == metric), "{line} under {name}");
        assert!(series.insert(key.to_string()), "{key} twice");
    }
    let expected = [
        "switchyard_http_requests_total",
        "switchyard_http_request_duration_seconds",
        "switchyard_tunnels_open",
        "switchyard_tunnels_total",
        "switchyard_tunnel_bytes_total",
        "switchyard_tunnel_duration_seconds",
        "switchyard_ws_messages_total",
        "switchyard_ws_dead_peers_total",
        "switchyard_ws_violations_total",
        "switchyard_connections_open",
        "switchyard_rejected_requests_total",
        "switchyard_upstream_connect_errors_total",
        "switchyard_upstream_pool_idle",
        "switchyard_upstream_connections_open",
        "switchyard_upstream_healthy",
        "switchyard_config_generation",
        "switchyard_config_reloads_total",
        "switchyard_proxy_protocol_errors_total",
        "switchyard_tls_handshake_errors_total",
        "switchyard_upstream_tls_errors_total",
    ];
    let expected: HashSet<String> = expected.iter().map(|name| name.to_string()).collect();
    assert_eq!(families, expected);
}

/// Each series has a slot of its own: no two counts land in the same place, and every
/// slot is inside a worker's block.
#[test]
fn every_slot_of_the_layout_is_distinct_and_in_bounds() {
    every_slot_is_distinct_and_in_bounds(&Layout::new(&config()));
    // A reload's layout: a new route, a protocol added to a known one, a new server.
    let mut reloaded = config();
    reloaded.core.routes[0].allow_upgrade.push("foo".into());
    reloaded.core.routes.push(Route::new("/new/"));
    reloaded.route_upstream.push(0);
    reloaded.upstreams[0].servers.push(addr("127.0.0.1:9100"));
    let extended = Layout::new(&config()).extended(&reloaded);
    every_slot_is_distinct_and_in_bounds(&extended);
}

fn every_slot_is_distinct_and_in_bounds(layout: &Layout) {
    let mut slots = Vec::new();
    for route in layout.routes.iter().chain([&layout.unrouted]) {
        slots.extend((0..layout::STATUS_CLASSES.len()).map(|class| route.requests(class)));
        let histogram = route.request_histogram();
        slots.extend(histogram..histogram + layout::histogram_slots(&layout::REQUEST_BOUNDS));
        slots.extend((0..2).flat_map(|d| [route.bytes(d), route.messages(d)]));
        for side in 0..layout::SIDES.len() {
            slots.extend(
                (0..=layout::VIOLATION_RULES.len()).map(|rule| route.violations(side, rule)),
            );
        }
        for protocol in 0..route.protocol_slots() {
            slots.push(route.opened(protocol));
            slots.extend(
                (0..=layout::CLOSE_REASONS.len()).map(|reason| route.closed(protocol, reason)),
            );
        }
    }
    let histogram = layout.tunnel_histogram();
    slots.extend(histogram..histogram + layout::histogram_slots(&layout::TUNNEL_BOUNDS));
    slots.extend([
        layout.dead_peer(Side::Client),
        layout.dead_peer(Side::Upstream),
    ]);
    slots.extend(layout::REJECTED_STATUSES.map(|status| layout.rejected(status)));
    slots.push(layout.rejected(0));
    for group in &layout.groups {
        slots.extend(group.servers.iter().map(|&(_, slot)| slot));
    }
    slots.extend((0..layout.servers.len()).map(|server| layout.pool_idle(server)));
    slots.extend((0..layout.servers.len()).map(|server| layout.upstream_open(server)));
    let distinct: HashSet<usize> = slots.iter().copied().collect();
    assert_eq!(distinct.len(), slots.len(), "two series share a slot");
    assert_eq!(slots.len(), layout.len, "every slot is used");
    assert!(slots.iter().all(|&slot| slot < layout.len));
}

#[test]
fn a_prefix_given_twice_is_one_route_label() {
    let mut config = config();
    config.core.routes.push(Route::new("/chat/"));
    config.route_upstream.push(0);
    let layout = Layout::new(&config);
    let prefixes: Vec<&str> = layout.routes.iter().map(|r| r.prefix.as_str()).collect();
    assert_eq!(prefixes, ["/", "/chat/"]);
    assert_eq!(layout.route(Some(2)).prefix, "/chat/");
    assert_eq!(layout.route(Some(99)).prefix, layout::UNROUTED);
}

/// The counts across configuration generations (reloads).
mod generations;
