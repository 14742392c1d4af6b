//! Prometheus metrics: an [`EventSink`] beside the access log, plus the runtime's own
//! counts (open connections, failed upstream connects, idle pooled connections).
//!
//! Counting must not slow the connections down: each worker counts into a block of
//! counters of its own ([`block`]), on cache lines no other worker writes, with plain
//! loads and stores; a scrape sums the blocks. Every series is a slot at an index fixed
//! when the server is bound ([`layout`]), so counting an event never allocates, hashes a
//! label or takes a lock. The text is written by `prometheus-client`'s encoder of the
//! Prometheus text format, version 0.0.4 ([`encode`]).

mod block;
mod encode;
mod layout;
mod summary;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use switchyard_core::{CloseReason, Event, Side};

use crate::events::{EventContext, EventSink};
use crate::signal::Tracker;
use crate::ServerConfig;
use block::Block;
use layout::Layout;
pub(crate) use summary::ServerTotals;

/// The metrics of a [`Server`](crate::Server) whose
/// [`admin_listen`](crate::ServerConfig::admin_listen) is set: what its admin listener
/// serves at `GET /metrics`, also to be read in-process with [`Metrics::encode`] (see
/// [`Server::metrics`](crate::Server::metrics)).
///
/// It is an [`EventSink`]: the server feeds it every event after the configured sink
/// ([`ServerConfig::events`]), as a pair of sinks does. Counts are kept per worker and
/// summed when encoded. Tunnel bytes and WebSocket messages are counted when a tunnel
/// closes (the core reports them then), so an open tunnel's traffic shows once it ends.
///
/// # Examples
///
/// ```
/// use switchyard_smol::{Metrics, Server, ServerConfig};
///
/// let mut config = ServerConfig::simple(
///     "127.0.0.1:0".parse().unwrap(),
///     "127.0.0.1:9000".parse().unwrap(),
/// );
/// config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
/// let server = Server::bind(config)?;
/// let metrics = server.metrics().expect("the admin listener is on");
/// let text = metrics.encode();
/// assert!(text.contains("switchyard_connections_open 0\n"));
/// assert!(text.contains("switchyard_http_requests_total{route=\"/\",code=\"2xx\"} 0\n"));
/// assert_eq!(Metrics::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Metrics {
    /// The counts of the newest configuration generation (its layout covers every
    /// label of every generation so far).
    current: ArcSwap<Counts>,
    /// The counts of every generation, summed at each scrape.
    past: Arc<Mutex<Past>>,
    workers: usize,
    /// The server's count of open client connections, read at each scrape.
    connections: Arc<Tracker>,
    /// The configuration generation serving new connections (1: the one bound).
    generation: AtomicU64,
    /// Reloads that succeeded and that failed.
    reloads: [AtomicU64; 2],
    /// The newest generation's upstream groups, whose servers' state
    /// `switchyard_upstream_healthy` shows.
    upstreams: Mutex<Option<Arc<[crate::upstream::Group]>>>,
    /// Connections closed for want of a valid PROXY header, by reason
    /// (`proxy_protocol::REFUSALS`). Shared by the workers: a refusal is rare, and a
    /// hot one is an attack or a misconfiguration, not the data path.
    proxy_refused: [AtomicU64; crate::proxy_protocol::REFUSALS.len()],
    /// TLS handshakes that failed (rare, and any client can cause one: one shared
    /// counter, off the hot path).
    tls_handshake_errors: AtomicU64,
    /// Failed TLS handshakes with upstream servers, by group, server and reason
    /// (`tls::upstream::HandshakeFailure`): rare (each marks its server failed), so one
    /// map under a lock, listing only what happened.
    upstream_tls_errors: Mutex<UpstreamTlsErrors>,
}

/// `(group, server, reason)` → count.
type UpstreamTlsErrors = std::collections::BTreeMap<(String, SocketAddr, &'static str), u64>;

/// Every generation's counts: those that may still count, and the sums of those whose
/// connections have all ended (folded, so that many reloads cost no memory or scrape
/// time beyond one vector).
#[derive(Debug, Default)]
struct Past {
    live: Vec<Arc<Counts>>,
    folded: Vec<u64>,
}

impl Past {
    /// Adds every slot of `counts` into `totals` (at least as long as its layout).
    fn add(counts: &Counts, totals: &mut [u64]) {
        for block in counts.blocks.iter() {
            for (slot, total) in totals.iter_mut().enumerate().take(counts.layout.len) {
                // Wrapping, as the blocks add: an in-use gauge's slot may hold a
                // generation's negative share.
                *total = total.wrapping_add(block.get(slot));
            }
        }
    }

    /// Every slot summed over every generation, for a layout of `len` slots.
    fn totals(&self, len: usize) -> Vec<u64> {
        let mut totals = self.folded.clone();
        totals.resize(len.max(totals.len()), 0);
        for counts in &self.live {
            Past::add(counts, &mut totals);
        }
        totals.truncate(len);
        totals
    }

    /// Moves `counts` from the live ones into the folded sums (once).
    fn fold(&mut self, counts: &Arc<Counts>) {
        let Some(at) = self.live.iter().position(|live| Arc::ptr_eq(live, counts)) else {
            return;
        };
        let counts = self.live.remove(at);
        let len = counts.layout.len.max(self.folded.len());
        self.folded.resize(len, 0);
        Past::add(&counts, &mut self.folded);
    }
}

/// The counters one configuration generation's connections count into: a block per
/// worker, laid out by the generation's [`Layout`]. Connections keep their
/// generation's counts for their whole life, as they keep its routes.
pub(crate) struct Counts {
    layout: Arc<Layout>,
    /// One per worker, indexed by [`EventContext::worker`].
    blocks: Box<[Block]>,
}

impl Counts {
    fn new(layout: Layout, workers: usize) -> Counts {
        let blocks = (0..workers.max(1))
            .map(|_| Block::new(layout.len))
            .collect();
        Counts {
            layout: Arc::new(layout),
            blocks,
        }
    }

    fn block(&self, worker: usize) -> Option<&Block> {
        self.blocks.get(worker)
    }
}

impl std::fmt::Debug for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counts")
            .field("workers", &self.blocks.len())
            .field("slots_per_worker", &self.layout.len)
            .finish()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("workers", &self.workers)
            .field("generation", &self.generation())
            .finish()
    }
}

impl Metrics {
    /// The `Content-Type` of [`Metrics::encode`]'s text: the Prometheus text format,
    /// version 0.0.4.
    pub const CONTENT_TYPE: &'static str =
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

    /// Metrics for `config` served by `workers` threads; `connections` is the server's
    /// count of open client connections.
    pub(crate) fn new(config: &ServerConfig, workers: usize, connections: Arc<Tracker>) -> Self {
        let counts = Arc::new(Counts::new(Layout::new(config), workers));
        let past = Past {
            live: vec![counts.clone()],
            folded: Vec::new(),
        };
        Metrics {
            current: ArcSwap::new(counts),
            past: Arc::new(Mutex::new(past)),
            workers,
            connections,
            generation: AtomicU64::new(1),
            reloads: Default::default(),
            upstreams: Mutex::new(None),
            proxy_refused: Default::default(),
            tls_handshake_errors: AtomicU64::new(0),
            upstream_tls_errors: Mutex::default(),
        }
    }

    /// Shows the state of `upstreams`' servers from now on (the groups new connections
    /// use).
    pub(crate) fn set_upstreams(&self, upstreams: Arc<[crate::upstream::Group]>) {
        *self.upstreams.lock().unwrap_or_else(|p| p.into_inner()) = Some(upstreams);
    }

    /// Each server of each group: group, server, and whether it takes connections
    /// (neither failed nor down).
    fn server_health(&self) -> Vec<(String, std::net::SocketAddr, bool)> {
        let groups = self
            .upstreams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let now = std::time::Instant::now();
        groups
            .iter()
            .flat_map(|groups| groups.iter())
            .flat_map(|group| {
                group.health(now).into_iter().map(|(server, state)| {
                    let healthy = state == crate::upstream::ServerState::Healthy;
                    (group.name.clone(), server, healthy)
                })
            })
            .collect()
    }

    /// The counts of the generation bound first, for its connections (taken once).
    pub(crate) fn first_generation(&self) -> GenerationMetrics {
        GenerationMetrics {
            counts: self.current.load_full(),
            past: self.past.clone(),
        }
    }

    /// Counts for a new generation serving `config`, numbered `generation`: the layout
    /// gains `config`'s labels (a new route is counted under its own prefix from its
    /// first request), and new connections' pools and connect errors count there.
    pub(crate) fn publish(&self, config: &ServerConfig, generation: u64) -> GenerationMetrics {
        let layout = self.current.load().layout.extended(config);
        let counts = Arc::new(Counts::new(layout, self.workers));
        lock(&self.past).live.push(counts.clone());
        self.current.store(counts.clone());
        self.generation.store(generation, Ordering::Relaxed);
        self.reloads[0].fetch_add(1, Ordering::Relaxed);
        GenerationMetrics {
            counts,
            past: self.past.clone(),
        }
    }

    /// A reload was refused (the new configuration was invalid or could not be bound).
    pub(crate) fn reload_failed(&self) {
        self.reloads[1].fetch_add(1, Ordering::Relaxed);
    }

    /// Every counter summed over every generation, for a layout of `len` slots (for
    /// the encoder). Under the lock a generation's counts are either live or folded,
    /// never both or neither, so no counter is seen going down.
    fn totals(&self, len: usize) -> Vec<u64> {
        lock(&self.past).totals(len)
    }

    /// The runtime's counts of worker `worker`, for the code that runs on its thread.
    pub(crate) fn worker(self: &Arc<Self>, worker: usize) -> WorkerMetrics {
        WorkerMetrics {
            metrics: self.clone(),
            worker,
        }
    }

    /// Adds one observation of `duration` to the histogram at `base` with `bounds`.
    fn observe(block: &Block, base: usize, bounds: &[u64], duration: std::time::Duration) {
        block.add(base + layout::bucket(bounds, duration), 1);
        block.add(base + bounds.len() + 1, layout::micros(duration));
    }
}

/// Counts into the newest generation's counters (the server itself gives each
/// generation's connections a sink of their own generation's).
impl EventSink for Metrics {
    fn event(&self, context: &EventContext, event: &Event) {
        self.current.load().count(context, event);
    }
}

fn lock(past: &Mutex<Past>) -> std::sync::MutexGuard<'_, Past> {
    past.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The event sink of one generation's connections: counts into that generation's
/// counters, with its routes' labels. Dropped with the generation, once its last
/// connection has ended: then its counts are folded into the sums of the past.
#[derive(Debug)]
pub(crate) struct GenerationMetrics {
    counts: Arc<Counts>,
    past: Arc<Mutex<Past>>,
}

impl Drop for GenerationMetrics {
    fn drop(&mut self) {
        lock(&self.past).fold(&self.counts);
    }
}

impl EventSink for GenerationMetrics {
    fn event(&self, context: &EventContext, event: &Event) {
        self.counts.count(context, event);
    }
}

impl Counts {
    fn count(&self, context: &EventContext, event: &Event) {
        let Some(block) = self.block(context.worker) else {
            return;
        };
        match event {
            Event::Exchange(record) => {
                let route = self.layout.route(record.route);
                block.add(route.requests(layout::status_class(record.status)), 1);
                let histogram = route.request_histogram();
                Metrics::observe(block, histogram, &layout::REQUEST_BOUNDS, record.duration);
            }
            Event::TunnelOpened { route, protocol } => {
                let route = self.layout.route(Some(*route));
                block.add(route.opened(route.protocol_slot(protocol)), 1);
            }
            Event::TunnelClosed(record) => {
                let route = self.layout.route(Some(record.route));
                let protocol = route.protocol_slot(&record.protocol);
                block.add(
                    route.closed(protocol, layout::reason_slot(record.reason)),
                    1,
                );
                block.add(route.bytes(0), record.bytes_client_to_upstream);
                block.add(route.bytes(1), record.bytes_upstream_to_client);
                if let Some(frames) = &record.websocket {
                    block.add(route.messages(0), frames.client.messages);
                    block.add(route.messages(1), frames.upstream.messages);
                }
                let histogram = self.layout.tunnel_histogram();
                Metrics::observe(block, histogram, &layout::TUNNEL_BOUNDS, record.duration);
                match record.reason {
                    CloseReason::ClientUnresponsive => {
                        block.add(self.layout.dead_peer(Side::Client), 1)
                    }
                    CloseReason::UpstreamUnresponsive => {
                        block.add(self.layout.dead_peer(Side::Upstream), 1)
                    }
                    _ => {}
                }
            }
            Event::Rejected(error) => block.add(self.layout.rejected(error.status_hint()), 1),
            Event::WebSocketViolation { side, rule } => {
                let route = self.layout.route(context.tunnel_route);
                let side = match side {
                    Side::Client => 0,
                    Side::Upstream => 1,
                };
                block.add(route.violations(side, layout::rule_slot(rule)), 1);
            }
            _ => {}
        }
    }
}

/// The runtime's counts of one worker: failed upstream connects and idle pooled
/// connections, written from that worker's thread only (its upstream pool holds it).
#[derive(Debug, Clone)]
pub(crate) struct WorkerMetrics {
    metrics: Arc<Metrics>,
    worker: usize,
}

impl WorkerMetrics {
    /// A connect to `server` of the group named `group` failed or timed out (counted in
    /// the newest generation, whose layout has every group and server so far).
    pub(crate) fn connect_failed(&self, group: &str, server: SocketAddr) {
        let counts = self.metrics.current.load();
        if let (Some(block), Some(slot)) = (
            counts.block(self.worker),
            counts.layout.connect_error(group, server),
        ) {
            block.add(slot, 1);
        }
    }

    /// A connection was closed for want of a valid PROXY header, for the reason at
    /// `reason` in `proxy_protocol::REFUSALS`.
    pub(crate) fn proxy_header_refused(&self, reason: usize) {
        if let Some(count) = self.metrics.proxy_refused.get(reason) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A client's TLS handshake failed (or it spoke plain HTTP to a TLS listener).
    pub(crate) fn tls_handshake_failed(&self) {
        self.metrics
            .tls_handshake_errors
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A TLS handshake with `server` of `group` failed, for `reason` (a
    /// `tls::upstream::HandshakeFailure`'s).
    pub(crate) fn upstream_tls_failed(
        &self,
        group: &str,
        server: SocketAddr,
        reason: &'static str,
    ) {
        let mut errors = self
            .metrics
            .upstream_tls_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *errors
            .entry((group.to_string(), server, reason))
            .or_default() += 1;
    }

    /// The slot of `server`'s connections in use, for [`WorkerMetrics::upstream_in_use`]
    /// (a slot keeps its meaning in every later generation's layout).
    pub(crate) fn upstream_slot(&self, server: SocketAddr) -> Option<usize> {
        let counts = self.metrics.current.load();
        let layout = &counts.layout;
        layout
            .server_index(server)
            .map(|index| layout.upstream_open(index))
    }

    /// A connection counted at `slot` ([`WorkerMetrics::upstream_slot`]) was handed to a
    /// client connection (`opened`) or ended its use there: given back to the pool or
    /// closed. Counted in the newest generation; a scrape sums every generation's, so
    /// an opening and its ending may fall in different ones.
    pub(crate) fn upstream_in_use(&self, slot: usize, opened: bool) {
        let counts = self.metrics.current.load();
        if let Some(block) = counts.block(self.worker) {
            // Wrapping: a slot of one generation or worker can dip below 0 by ending
            // what was counted in another; the scrape's wrapping sum is exact.
            block.add(slot, if opened { 1 } else { u64::MAX });
        }
    }

    /// This worker's pool now holds `idle` connections to `server`. Gauges are read from
    /// the newest generation only (see [`Metrics::encode`]).
    pub(crate) fn pool_idle(&self, server: SocketAddr, idle: usize) {
        let counts = self.metrics.current.load();
        if let (Some(block), Some(index)) = (
            counts.block(self.worker),
            counts.layout.server_index(server),
        ) {
            block.set(counts.layout.pool_idle(index), idle as u64);
        }
    }

    /// This worker's pool now holds exactly these idle connections (`(server, count)`;
    /// a server not named holds none).
    pub(crate) fn pool_idle_all(&self, idle: impl IntoIterator<Item = (SocketAddr, usize)>) {
        let counts = self.metrics.current.load();
        let Some(block) = counts.block(self.worker) else {
            return;
        };
        let mut per_server = vec![0u64; counts.layout.servers.len()];
        for (server, count) in idle {
            if let Some(index) = counts.layout.server_index(server) {
                per_server[index] += count as u64;
            }
        }
        for (index, count) in per_server.into_iter().enumerate() {
            block.set(counts.layout.pool_idle(index), count);
        }
    }
}

/// The configuration generation and the reloads: set by a reload
/// ([`ReloadHandle`](crate::ReloadHandle)), read by `/metrics` (`switchyard_config_generation`,
/// `switchyard_config_reloads_total`) and `/status.json` (`generation`).
impl Metrics {
    /// The configuration generation new connections use: 1 for the configuration the
    /// server was bound with.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    pub(super) fn proxy_refused(&self) -> [u64; crate::proxy_protocol::REFUSALS.len()] {
        std::array::from_fn(|i| self.proxy_refused[i].load(Ordering::Relaxed))
    }

    fn upstream_tls_errors(&self) -> Vec<((String, SocketAddr, &'static str), u64)> {
        let errors = self
            .upstream_tls_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        errors
            .iter()
            .map(|(key, &count)| (key.clone(), count))
            .collect()
    }

    fn tls_handshake_errors(&self) -> u64 {
        self.tls_handshake_errors.load(Ordering::Relaxed)
    }

    fn reloads(&self) -> [u64; 2] {
        [
            self.reloads[0].load(Ordering::Relaxed),
            self.reloads[1].load(Ordering::Relaxed),
        ]
    }
}
