//! Totals for `/status.json`: per route and per upstream server, summed over the
//! workers' blocks like a scrape, without the Prometheus text.

use std::net::SocketAddr;

use super::layout;
use super::Metrics;

/// One route's totals since the server started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteTotals {
    /// The route's prefix (`none` for exchanges answered before a route was chosen).
    pub(crate) prefix: String,
    /// Finished exchanges, by status class (`1xx` … `5xx`, `none`).
    pub(crate) requests: Vec<(&'static str, u64)>,
    /// Tunnels opened.
    pub(crate) tunnels_opened: u64,
    /// Tunnels closed.
    pub(crate) tunnels_closed: u64,
    /// WebSocket frames that broke a rule, both sides.
    pub(crate) ws_violations: u64,
}

/// One upstream server's counts, in one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerTotals {
    /// The group's name.
    pub(crate) upstream: String,
    /// The server.
    pub(crate) server: SocketAddr,
    /// Connections to it in use by client connections now.
    pub(crate) connections_open: u64,
    /// Connections to it idle in the workers' pools now.
    pub(crate) pool_idle: u64,
    /// Connects to it (in this group) that failed or timed out.
    pub(crate) connect_errors: u64,
}

impl Metrics {
    /// Every route's totals, in the order of `/metrics` (every route of every
    /// generation so far).
    pub(crate) fn route_totals(&self) -> Vec<RouteTotals> {
        let (layout, totals) = self.snapshot();
        let total = |slot: usize| totals[slot];
        layout
            .routes
            .iter()
            .chain([&layout.unrouted])
            .map(|route| {
                let requests = layout::STATUS_CLASSES
                    .iter()
                    .enumerate()
                    .map(|(class, name)| (*name, total(route.requests(class))))
                    .collect();
                let protocols = 0..route.protocol_slots();
                let tunnels_opened = protocols.clone().map(|p| total(route.opened(p))).sum();
                let tunnels_closed = protocols
                    .flat_map(|p| (0..=layout::CLOSE_REASONS.len()).map(move |r| (p, r)))
                    .map(|(p, r)| total(route.closed(p, r)))
                    .sum();
                let ws_violations = (0..layout::SIDES.len())
                    .flat_map(|side| (0..=layout::VIOLATION_RULES.len()).map(move |r| (side, r)))
                    .map(|(side, rule)| total(route.violations(side, rule)))
                    .sum();
                RouteTotals {
                    prefix: route.prefix.clone(),
                    requests,
                    tunnels_opened,
                    tunnels_closed,
                    ws_violations,
                }
            })
            .collect()
    }

    /// Every server of every group, in the order of the configuration.
    pub(crate) fn server_totals(&self) -> Vec<ServerTotals> {
        let (layout, totals) = self.snapshot();
        let total = |slot: usize| totals[slot];
        let layout = &*layout;
        layout
            .groups
            .iter()
            .flat_map(|group| {
                group.servers.iter().map(move |&(server, errors)| {
                    let index = layout.server_index(server);
                    let gauge = |slot: fn(&layout::Layout, usize) -> usize| {
                        index.map_or(0, |index| total(slot(layout, index)))
                    };
                    ServerTotals {
                        upstream: group.name.clone(),
                        server,
                        connections_open: gauge(layout::Layout::upstream_open),
                        pool_idle: gauge(layout::Layout::pool_idle),
                        connect_errors: total(errors),
                    }
                })
            })
            .collect()
    }

    /// Client connections open now.
    pub(crate) fn connections_open(&self) -> usize {
        self.connections.active()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use switchyard_core::websocket::Violation;
    use switchyard_core::{Event, Route, Side};

    use super::super::layout;
    use super::*;
    use crate::events::{EventContext, EventSink};
    use crate::signal::Tracker;
    use crate::ServerConfig;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    /// Routes `/` and `/chat/`, one group `default` with one server, two workers.
    fn metrics() -> Arc<Metrics> {
        let mut config = ServerConfig::simple(addr("127.0.0.1:8080"), addr("127.0.0.1:9000"));
        config.core.routes.push(Route::new("/chat/"));
        config.route_upstream = vec![0, 0];
        Arc::new(Metrics::new(&config, 2, Arc::new(Tracker::default())))
    }

    fn in_tunnel(worker: usize, route: Option<usize>) -> EventContext {
        let mut context = EventContext::new(worker, addr("127.0.0.1:50000"));
        context.tunnel_route = route;
        context
    }

    fn line(text: &str, series: &str) -> Option<String> {
        text.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')
                .map(str::to_string)
        })
    }

    #[test]
    fn every_rule_of_the_core_has_a_label_of_its_own() {
        let all = [
            Violation::UnmaskedClientFrame,
            Violation::MaskedUpstreamFrame,
            Violation::ReservedOpcode { opcode: 3 },
            Violation::ReservedBits { rsv: 0x40 },
            Violation::ControlFrameTooLong,
            Violation::FragmentedControlFrame,
            Violation::ContinuationWithoutMessage,
            Violation::DataFrameInsideMessage,
            Violation::LengthTopBitSet,
            Violation::CloseCodeTruncated,
        ];
        let slots: Vec<usize> = all.iter().map(|v| layout::rule_slot(v.rule())).collect();
        assert_eq!(slots, (0..all.len()).collect::<Vec<_>>());
        assert_eq!(layout::rule_slot("a rule added later"), all.len());
        assert_eq!(layout::rule_label(all.len()), layout::OTHER);
    }

    #[test]
    fn violations_count_by_the_tunnels_route_side_and_rule() {
        let metrics = metrics();
        let violation = |side, rule| Event::WebSocketViolation { side, rule };
        metrics.event(
            &in_tunnel(0, Some(1)),
            &violation(Side::Client, "reserved_bits"),
        );
        metrics.event(
            &in_tunnel(1, Some(1)),
            &violation(Side::Client, "reserved_bits"),
        );
        metrics.event(
            &in_tunnel(1, Some(0)),
            &violation(Side::Upstream, "upstream_frame_masked"),
        );
        metrics.event(
            &in_tunnel(0, Some(0)),
            &violation(Side::Client, "brand_new"),
        );
        let text = metrics.encode();
        let series = |route: &str, side: &str, rule: &str| {
            format!("switchyard_ws_violations_total{{route=\"{route}\",side=\"{side}\",rule=\"{rule}\"}}")
        };
        let value = |route, side, rule| line(&text, &series(route, side, rule));
        assert_eq!(
            value("/chat/", "client", "reserved_bits").as_deref(),
            Some("2")
        );
        assert_eq!(
            value("/", "upstream", "upstream_frame_masked").as_deref(),
            Some("1")
        );
        assert_eq!(value("/", "client", "other").as_deref(), Some("1"));
        // Known rules are listed at 0; the catch-all only once it counts.
        assert_eq!(
            value("/chat/", "upstream", "reserved_bits").as_deref(),
            Some("0")
        );
        assert_eq!(value("/chat/", "client", "other"), None);
        let totals = metrics.route_totals();
        let violations: Vec<u64> = totals.iter().map(|r| r.ws_violations).collect();
        assert_eq!(violations, [2, 2, 0], "/, /chat/, none");
    }

    #[test]
    fn connections_in_use_go_up_and_down_per_worker_and_sum() {
        let metrics = metrics();
        let server = addr("127.0.0.1:9000");
        let (worker0, worker1) = (metrics.worker(0), metrics.worker(1));
        let slot = worker0.upstream_slot(server).expect("a known server");
        assert_eq!(worker0.upstream_slot(addr("127.0.0.1:1")), None);
        worker0.upstream_in_use(slot, true);
        worker0.upstream_in_use(slot, true);
        worker1.upstream_in_use(slot, true);
        worker0.upstream_in_use(slot, false);
        let text = metrics.encode();
        let series =
            "switchyard_upstream_connections_open{upstream=\"default\",server=\"127.0.0.1:9000\"}";
        assert_eq!(line(&text, series).as_deref(), Some("2"));
        let servers = metrics.server_totals();
        assert_eq!(servers.len(), 1);
        assert_eq!(
            (servers[0].upstream.as_str(), servers[0].connections_open),
            ("default", 2)
        );
        worker1.upstream_in_use(slot, false);
        worker0.upstream_in_use(slot, false);
        assert_eq!(metrics.server_totals()[0].connections_open, 0);
    }

    #[test]
    fn route_totals_sum_requests_and_tunnels_of_every_worker() {
        let metrics = metrics();
        let context = EventContext::new(1, addr("127.0.0.1:50000"));
        let opened = Event::TunnelOpened {
            route: 1,
            protocol: "websocket".into(),
        };
        metrics.event(&context, &opened);
        metrics.event(&EventContext::new(0, addr("127.0.0.1:50001")), &opened);
        let totals = metrics.route_totals();
        let chat = totals.iter().find(|r| r.prefix == "/chat/").unwrap();
        assert_eq!((chat.tunnels_opened, chat.tunnels_closed), (2, 0));
        assert_eq!(chat.requests.iter().map(|&(_, n)| n).sum::<u64>(), 0);
    }
}
