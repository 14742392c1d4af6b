//! `/status.json`: the open tunnels (the longest-lived [`MAX_LISTED`], with the total
//! count), per-route and per-upstream-server summaries and the configuration generation,
//! written with `serde_json`; and `/status`, the page that shows it (`status.html`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::metrics::Metrics;
use crate::tunnels::{Entry, Registry};
use crate::upstream::{Group, ServerState};

/// At most this many tunnels are listed, the longest-lived first.
pub(crate) const MAX_LISTED: usize = 1_000;

/// The status page: one HTML file, its style and script inline.
pub(super) const PAGE: &str = include_str!("status.html");

/// What `/status.json` is written from: the metrics, the live tunnel list and the
/// upstream groups (read only: their servers' failure marks).
#[derive(Debug)]
pub(crate) struct Status {
    metrics: Arc<Metrics>,
    tunnels: Arc<Registry>,
    upstreams: Mutex<Arc<[Group]>>,
    started: Instant,
}

/// The whole document.
#[derive(Debug, Serialize)]
struct Document<'a> {
    generation: u64,
    uptime_seconds: f64,
    connections_open: usize,
    /// Open tunnels, all of them (`tunnels` lists at most [`MAX_LISTED`]).
    tunnels_open: usize,
    tunnels: Vec<TunnelView<'a>>,
    routes: Vec<RouteView>,
    upstreams: Vec<UpstreamView>,
}

#[derive(Debug, Serialize)]
struct TunnelView<'a> {
    client: String,
    route: &'a str,
    protocol: &'a str,
    age_seconds: f64,
    /// From the client.
    bytes_in: u64,
    /// To the client.
    bytes_out: u64,
    /// Data messages from the client, in a frame-aware WebSocket tunnel.
    #[serde(skip_serializing_if = "Option::is_none")]
    messages_in: Option<u64>,
    /// Data messages to the client.
    #[serde(skip_serializing_if = "Option::is_none")]
    messages_out: Option<u64>,
}

#[derive(Debug, Serialize)]
struct RouteView {
    route: String,
    tunnels_open: usize,
    tunnels_opened: u64,
    tunnels_closed: u64,
    requests: u64,
    requests_by_class: BTreeMap<&'static str, u64>,
    ws_violations: u64,
}

#[derive(Debug, Serialize)]
struct UpstreamView {
    upstream: String,
    servers: Vec<ServerView>,
}

#[derive(Debug, Serialize)]
struct ServerView {
    server: String,
    /// `healthy`; `failed`: a connect failed recently, so it is tried after the others
    /// until `failed_for_seconds` more have passed; `down`: its health checks failed,
    /// so it takes no new connection until they pass.
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed_for_seconds: Option<f64>,
    /// With a health check: `up` or `down`, as the checks last found it.
    #[serde(skip_serializing_if = "Option::is_none")]
    health_check: Option<&'static str>,
    connections_open: u64,
    pool_idle: u64,
    connect_errors: u64,
}

impl Status {
    /// The status of a server whose metrics, tunnel list and upstream groups these are.
    pub(crate) fn new(
        metrics: Arc<Metrics>,
        tunnels: Arc<Registry>,
        upstreams: Arc<[Group]>,
    ) -> Self {
        Status {
            metrics,
            tunnels,
            upstreams: Mutex::new(upstreams),
            started: Instant::now(),
        }
    }

    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub(crate) fn tunnels(&self) -> &Arc<Registry> {
        &self.tunnels
    }

    /// Shows `upstreams` from now on (the groups new connections use).
    #[allow(dead_code)] // the reload of a configuration will call it
    pub(crate) fn set_upstreams(&self, upstreams: Arc<[Group]>) {
        *self.upstreams.lock().unwrap_or_else(|p| p.into_inner()) = upstreams;
    }

    /// The document, as JSON.
    pub(crate) fn json(&self) -> String {
        let now = Instant::now();
        let mut entries = self.tunnels.snapshot();
        let tunnels_open = entries.len();
        let mut open_by_route: BTreeMap<&str, usize> = BTreeMap::new();
        for entry in &entries {
            *open_by_route.entry(entry.route()).or_default() += 1;
        }
        let routes = self.routes(&open_by_route);
        let longest_lived_first =
            |a: &Arc<Entry>, b: &Arc<Entry>| a.opened.cmp(&b.opened).then(a.client.cmp(&b.client));
        if entries.len() > MAX_LISTED {
            entries.select_nth_unstable_by(MAX_LISTED - 1, longest_lived_first);
            entries.truncate(MAX_LISTED);
        }
        entries.sort_unstable_by(longest_lived_first);
        let tunnels = entries.iter().map(|entry| view(entry, now)).collect();
        let document = Document {
            generation: self.metrics.generation(),
            uptime_seconds: seconds(now.saturating_duration_since(self.started)),
            connections_open: self.metrics.connections_open(),
            tunnels_open,
            tunnels,
            routes,
            upstreams: self.upstreams(now),
        };
        serde_json::to_string(&document).unwrap_or_else(|error| {
            // Nothing in the document can fail to serialise (no map with other keys
            // than strings, no float that is not finite).
            tracing::error!(%error, "writing /status.json failed");
            String::from("{}")
        })
    }

    fn routes(&self, open: &BTreeMap<&str, usize>) -> Vec<RouteView> {
        let mut routes: Vec<RouteView> = self
            .metrics
            .route_totals()
            .into_iter()
            .map(|totals| RouteView {
                tunnels_open: open.get(totals.prefix.as_str()).copied().unwrap_or(0),
                tunnels_opened: totals.tunnels_opened,
                tunnels_closed: totals.tunnels_closed,
                requests: totals.requests.iter().map(|&(_, n)| n).sum(),
                requests_by_class: totals.requests.into_iter().collect(),
                ws_violations: totals.ws_violations,
                route: totals.prefix,
            })
            .collect();
        // A tunnel of a route the metrics do not know (one of an older configuration).
        for (&prefix, &count) in open {
            if !routes.iter().any(|route| route.route == prefix) {
                routes.push(RouteView {
                    route: prefix.to_string(),
                    tunnels_open: count,
                    tunnels_opened: 0,
                    tunnels_closed: 0,
                    requests: 0,
                    requests_by_class: BTreeMap::new(),
                    ws_violations: 0,
                });
            }
        }
        routes
    }

    fn upstreams(&self, now: Instant) -> Vec<UpstreamView> {
        let groups = self
            .upstreams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let totals = self.metrics.server_totals();
        groups
            .iter()
            .map(|group| UpstreamView {
                upstream: group.name.clone(),
                servers: group
                    .health(now)
                    .into_iter()
                    .map(|(server, state)| {
                        let counts = totals
                            .iter()
                            .find(|t| t.upstream == group.name && t.server == server);
                        let count =
                            |pick: fn(&crate::metrics::ServerTotals) -> u64| counts.map_or(0, pick);
                        ServerView {
                            server: server.to_string(),
                            state: match state {
                                ServerState::Healthy => "healthy",
                                ServerState::Failed(_) => "failed",
                                ServerState::Down => "down",
                            },
                            failed_for_seconds: match state {
                                ServerState::Failed(left) => Some(seconds(left)),
                                _ => None,
                            },
                            health_check: group.is_checked().then_some(
                                if state == ServerState::Down {
                                    "down"
                                } else {
                                    "up"
                                },
                            ),
                            connections_open: count(|t| t.connections_open),
                            pool_idle: count(|t| t.pool_idle),
                            connect_errors: count(|t| t.connect_errors),
                        }
                    })
                    .collect(),
            })
            .collect()
    }
}

fn view(entry: &Entry, now: Instant) -> TunnelView<'_> {
    let [bytes_in, bytes_out, messages_in, messages_out] = entry.counts();
    let frames = |count: u64| entry.frame_aware.then_some(count);
    TunnelView {
        client: entry.client.to_string(),
        route: entry.route(),
        protocol: &entry.protocol,
        age_seconds: seconds(now.saturating_duration_since(entry.opened)),
        bytes_in,
        bytes_out,
        messages_in: frames(messages_in),
        messages_out: frames(messages_out),
    }
}

/// Seconds, to the millisecond.
fn seconds(duration: Duration) -> f64 {
    duration.as_millis() as f64 / 1000.0
}
