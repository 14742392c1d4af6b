//! The scrape: every worker's block summed into one snapshot, written in the Prometheus
//! text format (version 0.0.4) by `prometheus-client`'s encoder, through a collector
//! that names each family and its series.

use std::borrow::Cow;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::layout::{self, Layout};
use super::Metrics;

impl Metrics {
    /// Every metric, in the Prometheus text format ([`Metrics::CONTENT_TYPE`]), the
    /// workers' counts summed. Takes a few microseconds per worker and route.
    ///
    /// Counters are summed over every configuration generation's counts (a slot means
    /// the same series in each); the pools' idle gauges are read from the newest
    /// generation's, where the pools write since the last reload.
    pub fn encode(&self) -> String {
        let (layout, totals) = self.snapshot();
        let snapshot = Snapshot {
            layout,
            totals,
            connections: self.connections.active(),
            generation: self.generation(),
            reloads: self.reloads(),
            health: self.server_health(),
            proxy_refused: self.proxy_refused(),
            tls_handshake_errors: self.tls_handshake_errors(),
            upstream_tls_errors: self.upstream_tls_errors(),
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(snapshot));
        let mut text = String::new();
        if let Err(error) =
            prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
        {
            // Writing to a String cannot fail, nor can the collector below.
            tracing::error!(%error, "encoding the metrics failed");
        }
        text
    }
}

impl Metrics {
    /// The newest layout and every slot's value under it: counters summed over every
    /// generation's counts (a slot means the same series in each), the pools' idle
    /// gauges read from the newest generation's, where the pools write since the last
    /// reload.
    pub(super) fn snapshot(&self) -> (Arc<Layout>, Vec<u64>) {
        let current = self.current.load_full();
        let layout = current.layout.clone();
        let mut totals = self.totals(layout.len);
        for index in 0..layout.servers.len() {
            let slot = layout.pool_idle(index);
            totals[slot] = current.blocks.iter().map(|block| block.get(slot)).sum();
        }
        (layout, totals)
    }
}

/// Every slot summed over the workers, and the values read from shared state.
#[derive(Debug)]
struct Snapshot {
    layout: Arc<Layout>,
    totals: Vec<u64>,
    connections: usize,
    generation: u64,
    reloads: [u64; 2],
    /// Each upstream server: group, server, healthy.
    health: Vec<(String, std::net::SocketAddr, bool)>,
    proxy_refused: [u64; crate::proxy_protocol::REFUSALS.len()],
    tls_handshake_errors: u64,
    /// `((group, server, reason), count)`, only those that happened.
    upstream_tls_errors: Vec<((String, std::net::SocketAddr, &'static str), u64)>,
}

/// The `route` label of a route's prefix.
fn route(prefix: &str) -> (&'static str, Cow<'_, str>) {
    ("route", Cow::Borrowed(prefix))
}

/// A series's labels: `(name, value)` pairs.
type Labels<'a> = Vec<(&'static str, Cow<'a, str>)>;

/// What one series holds.
enum Value {
    Counter(u64),
    Gauge(u64),
    /// Per-bucket counts (not cumulative) of the bounds, the count above the last bound,
    /// and the sum in µs.
    Histogram {
        bounds: &'static [u64],
        slots: Vec<u64>,
    },
}

impl Snapshot {
    fn get(&self, slot: usize) -> u64 {
        self.totals.get(slot).copied().unwrap_or(0)
    }

    fn histogram(&self, base: usize, bounds: &'static [u64]) -> Value {
        let slots = (0..layout::histogram_slots(bounds))
            .map(|offset| self.get(base + offset))
            .collect();
        Value::Histogram { bounds, slots }
    }
}

/// Writes one family: its `# HELP` and `# TYPE` lines, then each series.
fn family<'a>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    series: impl IntoIterator<Item = (Labels<'a>, Value)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in series {
        let encoder = metric.encode_family(&labels)?;
        match value {
            Value::Counter(value) => ConstCounter::new(value).encode(encoder)?,
            Value::Gauge(value) => ConstGauge::new(value).encode(encoder)?,
            Value::Histogram { bounds, slots } => {
                let mut encoder = encoder;
                let buckets: Vec<(f64, u64)> = bounds
                    .iter()
                    .zip(&slots)
                    .map(|(&bound, &count)| (seconds(bound), count))
                    .collect();
                let count = slots[..=bounds.len()].iter().sum();
                let sum = seconds(slots[bounds.len() + 1]);
                encoder.encode_histogram::<Labels<'_>>(sum, count, &buckets, None)?;
            }
        }
    }
    Ok(())
}

fn seconds(micros: u64) -> f64 {
    micros as f64 / 1e6
}

fn labels<'a>(pairs: impl IntoIterator<Item = (&'static str, Cow<'a, str>)>) -> Labels<'a> {
    pairs.into_iter().collect()
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let layout = &*self.layout;
        let named_routes = &layout.routes;
        let routes: Vec<&layout::RouteLabels> =
            named_routes.iter().chain([&layout.unrouted]).collect();

        family(
            &mut encoder,
            "switchyard_http_requests",
            "Finished HTTP exchanges (an upgrade that became a tunnel counts in switchyard_tunnels_total), by route prefix and status class (none: no response was sent).",
            MetricType::Counter,
            routes.iter().flat_map(|&r| {
                layout::STATUS_CLASSES.iter().enumerate().map(move |(class, code)| {
                    let labels = labels([route(&r.prefix), ("code", Cow::Borrowed(*code))]);
                    (labels, Value::Counter(self.get(r.requests(class))))
                })
            }),
        )?;
        family(
            &mut encoder,
            "switchyard_http_request_duration_seconds",
            "From a complete request head to the end of its response, by route prefix.",
            MetricType::Histogram,
            routes.iter().map(|&r| {
                let value = self.histogram(r.request_histogram(), &layout::REQUEST_BOUNDS);
                (labels([route(&r.prefix)]), value)
            }),
        )?;
        family(
            &mut encoder,
            "switchyard_tunnels_open",
            "Tunnels open now, by route prefix and upgrade protocol.",
            MetricType::Gauge,
            named_routes.iter().flat_map(|r| {
                (0..r.protocol_slots()).filter_map(move |p| {
                    let opened = self.get(r.opened(p));
                    let closed: u64 = (0..=layout::CLOSE_REASONS.len())
                        .map(|reason| self.get(r.closed(p, reason)))
                        .sum();
                    let other = p == r.protocols.len();
                    (!other || opened > 0).then(|| {
                        let protocol = Cow::Borrowed(r.protocol_label(p));
                        let labels = labels([route(&r.prefix), ("protocol", protocol)]);
                        (labels, Value::Gauge(opened.saturating_sub(closed)))
                    })
                })
            }),
        )?;
        family(
            &mut encoder,
            "switchyard_tunnels",
            "Tunnels closed, by route prefix, upgrade protocol and close reason.",
            MetricType::Counter,
            named_routes.iter().flat_map(|r| {
                (0..r.protocol_slots()).flat_map(move |p| {
                    (0..=layout::CLOSE_REASONS.len()).filter_map(move |reason| {
                        let value = self.get(r.closed(p, reason));
                        // The catch-all slots only once they count something.
                        let known = p < r.protocols.len() && reason < layout::CLOSE_REASONS.len();
                        (known || value > 0).then(|| {
                            let labels = labels([
                                route(&r.prefix),
                                ("protocol", Cow::Borrowed(r.protocol_label(p))),
                                ("reason", Cow::Borrowed(layout::reason_label(reason))),
                            ]);
                            (labels, Value::Counter(value))
                        })
                    })
                })
            }),
        )?;
        let directions = |slot: fn(&layout::RouteLabels, usize) -> usize| {
            named_routes.iter().flat_map(move |r| {
                layout::DIRECTIONS
                    .iter()
                    .enumerate()
                    .map(move |(direction, name)| {
                        let labels =
                            labels([route(&r.prefix), ("direction", Cow::Borrowed(*name))]);
                        (labels, Value::Counter(self.get(slot(r, direction))))
                    })
            })
        };
        family(
            &mut encoder,
            "switchyard_tunnel_bytes",
            "Bytes tunnels carried, counted when each tunnel closes, by route prefix and direction.",
            MetricType::Counter,
            directions(layout::RouteLabels::bytes),
        )?;
        family(
            &mut encoder,
            "switchyard_tunnel_duration_seconds",
            "How long tunnels lived, counted when each closes.",
            MetricType::Histogram,
            [(
                Labels::new(),
                self.histogram(layout.tunnel_histogram(), &layout::TUNNEL_BOUNDS),
            )],
        )?;
        family(
            &mut encoder,
            "switchyard_ws_messages",
            "WebSocket data messages of frame-aware tunnels, counted when each tunnel closes, by route prefix and direction.",
            MetricType::Counter,
            directions(layout::RouteLabels::messages),
        )?;
        family(
            &mut encoder,
            "switchyard_ws_dead_peers",
            "WebSocket peers that did not answer the proxy's Ping within ws_ping_timeout, by side.",
            MetricType::Counter,
            [
                switchyard_core::Side::Client,
                switchyard_core::Side::Upstream,
            ]
            .into_iter()
            .zip(layout::SIDES)
            .map(|(side, name)| {
                let value = self.get(layout.dead_peer(side));
                (
                    labels([("side", Cow::Borrowed(name))]),
                    Value::Counter(value),
                )
            }),
        )?;
        family(
            &mut encoder,
            "switchyard_ws_violations",
            "Frames of frame-aware WebSocket tunnels that broke a rule (never forwarded; the tunnel closed with 1002), by route prefix, side that sent it and rule.",
            MetricType::Counter,
            named_routes.iter().flat_map(|r| {
                layout::SIDES.iter().enumerate().flat_map(move |(side, side_name)| {
                    (0..=layout::VIOLATION_RULES.len()).filter_map(move |rule| {
                        let value = self.get(r.violations(side, rule));
                        (rule < layout::VIOLATION_RULES.len() || value > 0).then(|| {
                            let labels = labels([
                                route(&r.prefix),
                                ("side", Cow::Borrowed(*side_name)),
                                ("rule", Cow::Borrowed(layout::rule_label(rule))),
                            ]);
                            (labels, Value::Counter(value))
                        })
                    })
                })
            }),
        )?;
        family(
            &mut encoder,
            "switchyard_connections_open",
            "Client connections open now.",
            MetricType::Gauge,
            [(Labels::new(), Value::Gauge(self.connections as u64))],
        )?;
        family(
            &mut encoder,
            "switchyard_rejected_requests",
            "Requests refused for a protocol error of the client (4xx, 5xx such as 505) or answered 502 for one of the upstream, by the status sent.",
            MetricType::Counter,
            rejected_series(self),
        )?;
        family(
            &mut encoder,
            "switchyard_upstream_connect_errors",
            "Connects to an upstream server that failed or timed out, by upstream group and server.",
            MetricType::Counter,
            layout.groups.iter().flat_map(|group| {
                group.servers.iter().map(move |&(server, slot)| {
                    let labels = labels([
                        ("upstream", Cow::Borrowed(group.name.as_str())),
                        ("server", Cow::Owned(server.to_string())),
                    ]);
                    (labels, Value::Counter(self.get(slot)))
                })
            }),
        )?;
        family(
            &mut encoder,
            "switchyard_upstream_pool_idle",
            "Idle keep-alive connections pooled for reuse, all workers, by upstream group (a server in two groups counts in both).",
            MetricType::Gauge,
            layout.groups.iter().map(|group| {
                let idle = group
                    .pooled
                    .iter()
                    .map(|&server| self.get(layout.pool_idle(server)))
                    .sum();
                let labels = labels([("upstream", Cow::Borrowed(group.name.as_str()))]);
                (labels, Value::Gauge(idle))
            }),
        )?;
        family(
            &mut encoder,
            "switchyard_upstream_connections_open",
            "Upstream connections in use by client connections now (a request or a tunnel; pooled ones are switchyard_upstream_pool_idle), by upstream group and server (a server in two groups counts in both).",
            MetricType::Gauge,
            layout.groups.iter().flat_map(|group| {
                group.servers.iter().filter_map(move |&(server, _)| {
                    let index = layout.server_index(server)?;
                    let labels = labels([
                        ("upstream", Cow::Borrowed(group.name.as_str())),
                        ("server", Cow::Owned(server.to_string())),
                    ]);
                    Some((labels, Value::Gauge(self.get(layout.upstream_open(index)))))
                })
            }),
        )?;
        family(
            &mut encoder,
            "switchyard_upstream_healthy",
            "Whether an upstream server takes new connections (1), or not (0: a connect failed recently, or its health check took it out), by upstream group and server.",
            MetricType::Gauge,
            self.health.iter().map(|(upstream, server, healthy)| {
                let labels = labels([
                    ("upstream", Cow::Borrowed(upstream.as_str())),
                    ("server", Cow::Owned(server.to_string())),
                ]);
                (labels, Value::Gauge(u64::from(*healthy)))
            }),
        )?;
        family(
            &mut encoder,
            "switchyard_config_generation",
            "The configuration generation new connections use (1: the one started with).",
            MetricType::Gauge,
            [(Labels::new(), Value::Gauge(self.generation))],
        )?;
        family(
            &mut encoder,
            "switchyard_config_reloads",
            "Configuration reloads, by result.",
            MetricType::Counter,
            ["success", "failure"]
                .into_iter()
                .zip(self.reloads)
                .map(|(result, count)| {
                    let labels = labels([("result", Cow::Borrowed(result))]);
                    (labels, Value::Counter(count))
                }),
        )?;
        family(
            &mut encoder,
            "switchyard_proxy_protocol_errors",
            "Connections closed unanswered on a listener that requires a PROXY protocol header, by reason: missing (the first bytes were not one), invalid, timeout (not whole within header_timeout), closed (the client left first).",
            MetricType::Counter,
            crate::proxy_protocol::REFUSALS
                .into_iter()
                .zip(self.proxy_refused)
                .map(|(reason, count)| {
                    let labels = labels([("reason", Cow::Borrowed(reason))]);
                    (labels, Value::Counter(count))
                }),
        )?;
        family(
            &mut encoder,
            "switchyard_tls_handshake_errors",
            "Client TLS handshakes that failed, plain-HTTP requests on a TLS listener included.",
            MetricType::Counter,
            [(Labels::new(), Value::Counter(self.tls_handshake_errors))],
        )?;
        family(
            &mut encoder,
            "switchyard_upstream_tls_errors",
            "TLS handshakes with an upstream server that failed, by upstream group, server and reason: unknown_issuer, name_mismatch, expired, bad_certificate, alert, protocol, closed.",
            MetricType::Counter,
            self.upstream_tls_errors
                .iter()
                .map(|((group, server, reason), count)| {
                    let labels = labels([
                        ("upstream", Cow::Borrowed(group.as_str())),
                        ("server", Cow::Owned(server.to_string())),
                        ("reason", Cow::Borrowed(*reason)),
                    ]);
                    (labels, Value::Counter(*count))
                }),
        )
    }
}

/// The rejection statuses the core answers with, always; any other once it counts.
fn rejected_series(snapshot: &Snapshot) -> impl Iterator<Item = (Labels<'static>, Value)> + '_ {
    const HINTS: [u16; 8] = [400, 404, 413, 414, 431, 501, 502, 505];
    let layout = &*snapshot.layout;
    let statuses = layout::REJECTED_STATUSES.map(Some).chain([None]);
    statuses.filter_map(move |status| {
        let slot = layout.rejected(status.unwrap_or(0));
        let value = snapshot.get(slot);
        let always = status.is_some_and(|status| HINTS.contains(&status));
        (always || value > 0).then(|| {
            let name = status.map_or(Cow::Borrowed(layout::OTHER), |s| Cow::Owned(s.to_string()));
            (labels([("status", name)]), Value::Counter(value))
        })
    })
}
