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
use std::sync::Arc;

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
    layout: Arc<Layout>,
    /// One per worker, indexed by [`EventContext::worker`].
    blocks: Box<[Block]>,
    /// The server's count of open client connections, read at each scrape.
    connections: Arc<Tracker>,
    /// The configuration generation serving new connections (1 until reloads exist).
    generation: AtomicU64,
    /// Reloads that succeeded and that failed.
    reloads: [AtomicU64; 2],
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("workers", &self.blocks.len())
            .field("slots_per_worker", &self.layout.len)
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
        let layout = Layout::new(config);
        let blocks = (0..workers.max(1))
            .map(|_| Block::new(layout.len))
            .collect();
        Metrics {
            layout: Arc::new(layout),
            blocks,
            connections,
            generation: AtomicU64::new(1),
            reloads: Default::default(),
        }
    }

    /// The runtime's counts of worker `worker`, for the code that runs on its thread.
    pub(crate) fn worker(self: &Arc<Self>, worker: usize) -> WorkerMetrics {
        WorkerMetrics {
            metrics: self.clone(),
            worker,
        }
    }

    fn block(&self, worker: usize) -> Option<&Block> {
        self.blocks.get(worker)
    }

    /// Adds one observation of `duration` to the histogram at `base` with `bounds`.
    fn observe(block: &Block, base: usize, bounds: &[u64], duration: std::time::Duration) {
        block.add(base + layout::bucket(bounds, duration), 1);
        block.add(base + bounds.len() + 1, layout::micros(duration));
    }
}

impl EventSink for Metrics {
    fn event(&self, context: &EventContext, event: &Event) {
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
    /// A connect to `server` of the group named `group` failed or timed out.
    pub(crate) fn connect_failed(&self, group: &str, server: SocketAddr) {
        let metrics = &self.metrics;
        if let (Some(block), Some(slot)) = (
            metrics.block(self.worker),
            metrics.layout.connect_error(group, server),
        ) {
            block.add(slot, 1);
        }
    }

    /// The slot of `server`'s connections in use, for [`WorkerMetrics::upstream_in_use`].
    pub(crate) fn upstream_slot(&self, server: SocketAddr) -> Option<usize> {
        let layout = &self.metrics.layout;
        layout
            .server_index(server)
            .map(|index| layout.upstream_open(index))
    }

    /// A connection counted at `slot` ([`WorkerMetrics::upstream_slot`]) was handed to a
    /// client connection (`opened`) or ended its use there: given back to the pool or
    /// closed.
    pub(crate) fn upstream_in_use(&self, slot: usize, opened: bool) {
        if let Some(block) = self.metrics.block(self.worker) {
            // Wrapping: one worker's slot could only dip below 0 by closing what another
            // opened, which cannot happen (a connection stays on its worker); the
            // scrape's sum is exact either way.
            block.add(slot, if opened { 1 } else { u64::MAX });
        }
    }

    /// This worker's pool now holds `idle` connections to `server`.
    pub(crate) fn pool_idle(&self, server: SocketAddr, idle: usize) {
        let metrics = &self.metrics;
        if let (Some(block), Some(index)) = (
            metrics.block(self.worker),
            metrics.layout.server_index(server),
        ) {
            block.set(metrics.layout.pool_idle(index), idle as u64);
        }
    }

    /// This worker's pool now holds exactly these idle connections (`(server, count)`;
    /// a server not named holds none).
    pub(crate) fn pool_idle_all(&self, idle: impl IntoIterator<Item = (SocketAddr, usize)>) {
        let metrics = &self.metrics;
        let Some(block) = metrics.block(self.worker) else {
            return;
        };
        let mut counts = vec![0u64; metrics.layout.servers.len()];
        for (server, count) in idle {
            if let Some(index) = metrics.layout.server_index(server) {
                counts[index] += count as u64;
            }
        }
        for (index, count) in counts.into_iter().enumerate() {
            block.set(metrics.layout.pool_idle(index), count);
        }
    }
}

/// The configuration generation and the reloads: set by whoever reloads the
/// configuration, read by `/metrics` (`switchyard_config_generation`,
/// `switchyard_config_reloads_total`) and `/status.json` (`generation`).
impl Metrics {
    /// The configuration generation new connections use: 1 for the configuration the
    /// server was bound with.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Publishes `generation` as the one new connections use.
    ///
    /// # Examples
    ///
    /// ```
    /// use switchyard_smol::{Server, ServerConfig};
    ///
    /// let mut config = ServerConfig::simple(
    ///     "127.0.0.1:0".parse().unwrap(),
    ///     "127.0.0.1:9000".parse().unwrap(),
    /// );
    /// config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    /// let server = Server::bind(config)?;
    /// let metrics = server.metrics().expect("the admin listener is on");
    /// assert_eq!(metrics.generation(), 1);
    /// // A reload that validated its configuration and published it:
    /// metrics.set_generation(2);
    /// metrics.count_reload(true);
    /// let text = metrics.encode();
    /// assert!(text.contains("switchyard_config_generation 2\n"));
    /// assert!(text.contains("switchyard_config_reloads_total{result=\"success\"} 1\n"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_generation(&self, generation: u64) {
        self.generation.store(generation, Ordering::Relaxed);
    }

    /// Counts one reload, that succeeded or failed.
    pub fn count_reload(&self, succeeded: bool) {
        let counter = &self.reloads[usize::from(!succeeded)];
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn reloads(&self) -> [u64; 2] {
        [
            self.reloads[0].load(Ordering::Relaxed),
            self.reloads[1].load(Ordering::Relaxed),
        ]
    }
}
