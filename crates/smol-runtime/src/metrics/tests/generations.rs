//! Counting across configuration generations: each generation under its own routes'
//! labels, the sums over all of them, pool gauges from the newest, and the folding of a
//! generation whose connections have all ended.

use std::time::Duration;

use switchyard_core::Route;

use super::{addr, config, exchange, expect, metrics, on, opened};
use crate::events::EventSink;

/// Route 1 is `/chat/` in the first generation and `/new/` in the second: each
/// generation's events count under its own routes' prefixes, the counts of both add up,
/// and a route the reload removed keeps its series.
#[test]
fn each_generation_counts_under_its_own_routes_and_the_counts_add_up() {
    let (metrics, _) = metrics();
    let first = metrics.first_generation();
    let mut reloaded = config();
    reloaded.core.routes[1] = Route::new("/new/");
    let second = metrics.publish(&reloaded, 2);
    first.event(&on(0), &exchange(Some(1), 200, Duration::ZERO));
    first.event(&on(1), &exchange(Some(0), 200, Duration::ZERO));
    second.event(&on(0), &exchange(Some(1), 404, Duration::ZERO));
    second.event(&on(1), &exchange(Some(0), 200, Duration::ZERO));
    first.event(&on(0), &opened(1, "websocket"));
    let text = metrics.encode();
    expect(
        &text,
        "switchyard_http_requests_total{route=\"/chat/\",code=\"2xx\"}",
        "1",
    );
    expect(
        &text,
        "switchyard_http_requests_total{route=\"/new/\",code=\"4xx\"}",
        "1",
    );
    expect(
        &text,
        "switchyard_http_requests_total{route=\"/new/\",code=\"2xx\"}",
        "0",
    );
    expect(
        &text,
        "switchyard_http_requests_total{route=\"/\",code=\"2xx\"}",
        "2",
    );
    expect(
        &text,
        "switchyard_tunnels_open{route=\"/chat/\",protocol=\"websocket\"}",
        "1",
    );
    expect(&text, "switchyard_config_generation", "2");
    expect(
        &text,
        "switchyard_config_reloads_total{result=\"success\"}",
        "1",
    );
    metrics.reload_failed();
    let text = metrics.encode();
    expect(
        &text,
        "switchyard_config_reloads_total{result=\"failure\"}",
        "1",
    );
    expect(&text, "switchyard_config_generation", "2");
}

/// The pools write their idle gauges into the newest generation's counts after a
/// reload; the scrape reads them there only, so a gauge written before is not added.
#[test]
fn pool_gauges_are_read_from_the_newest_generation_only() {
    let (metrics, _) = metrics();
    let worker = metrics.worker(0);
    worker.pool_idle(addr("127.0.0.1:9000"), 3);
    metrics.publish(&config(), 2);
    worker.pool_idle(addr("127.0.0.1:9000"), 2);
    let text = metrics.encode();
    expect(
        &text,
        "switchyard_upstream_pool_idle{upstream=\"default\"}",
        "2",
    );
}

/// Once a generation's last connection has ended (its sink is dropped), its counts are
/// folded into the sums: the series keep their values, and the generation's counters
/// are no longer kept.
#[test]
fn an_ended_generations_counts_are_folded_and_keep_their_values() {
    let (metrics, _) = metrics();
    let first = metrics.first_generation();
    first.event(&on(0), &exchange(Some(1), 200, Duration::ZERO));
    first.event(&on(1), &opened(1, "websocket"));
    let second = metrics.publish(&config(), 2);
    second.event(&on(0), &exchange(Some(1), 200, Duration::ZERO));
    drop(first);
    assert_eq!(crate::metrics::lock(&metrics.past).live.len(), 1, "folded");
    let text = metrics.encode();
    expect(
        &text,
        "switchyard_http_requests_total{route=\"/chat/\",code=\"2xx\"}",
        "2",
    );
    expect(
        &text,
        "switchyard_tunnels_open{route=\"/chat/\",protocol=\"websocket\"}",
        "1",
    );
}
