//! Upstream groups (shared by the workers; their balancers are in `balance/`, their
//! health checks in `health/`) and dialing; each worker's keep-alive pool is in
//! `pool.rs`.

use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::Io;
use crate::balance::{Balancer, Candidate};
use crate::health::{HealthCheck, ServerHealth, Targets};
use crate::metrics::WorkerMetrics;
pub(crate) use crate::pool::Pool;
use crate::source::Sources;
use crate::tls::session::TlsSession;
use crate::{UpstreamGroup, UpstreamTls};

/// After a failed connect, a server is tried after the others for this long (nginx's
/// `max_fails=1 fail_timeout=10s`).
const FAIL_TIMEOUT: Duration = Duration::from_secs(10);

/// An upstream group at run time: its servers, its balancer, which servers failed
/// recently, which its health checks took out, and its source addresses.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) name: String,
    servers: Vec<Server>,
    balancer: Balancer,
    /// Origin of the `failed_until` clocks.
    epoch: Instant,
    check: Option<HealthCheck>,
    sources: Sources,
    /// Whether every server was down by its health check at the last change (shared
    /// with the generations before and after, like the servers' state).
    all_down: Arc<AtomicBool>,
    /// TLS to the servers, if the group speaks it.
    pub(crate) tls: Option<UpstreamTls>,
    /// Whether its connections begin with a PROXY v2 header (the server's
    /// `send_proxy_protocol` names the group); its health checks then begin with a
    /// `LOCAL` one.
    pub(crate) proxy_header: bool,
}

#[derive(Debug)]
struct Server {
    addr: SocketAddr,
    weight: u32,
    /// Milliseconds after `epoch` until which the server counts as failed; 0 when it
    /// does not. Shared with the same server of the same group in the generations
    /// before and after a reload, so a failure seen by either counts for both.
    failed_until: Arc<AtomicU64>,
    /// Its connections in use (requests in flight and tunnels) across every worker and
    /// generation, for least connections; shared like `failed_until`.
    open: Arc<AtomicUsize>,
    /// What the health checks found (never down without them); shared the same way.
    health: Arc<ServerHealth>,
    /// The name its certificate is verified for, in a group with TLS.
    tls_name: Option<rustls::pki_types::ServerName<'static>>,
}

/// What a connection's choice of server depends on besides the group.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Choice {
    /// The request's hash key ([`crate::Balance::key`]), if its group hashes one.
    pub(crate) key: Option<u64>,
}

/// Whether a server takes new connections: what every choice of a server reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ServerState {
    /// Takes connections.
    Healthy,
    /// A connect failed recently: tried after the healthy ones, for this much longer.
    Failed(Duration),
    /// Its health checks failed: takes no new connection until they pass.
    Down,
}

impl Group {
    #[cfg(test)]
    pub(crate) fn new(name: String, servers: Vec<SocketAddr>) -> Self {
        let config = UpstreamGroup {
            name,
            servers,
            ..UpstreamGroup::default()
        };
        Group::carrying(&config, None)
    }

    /// The group `config` describes; its servers that were already in `previous` (the
    /// group of the same name in the generation before) keep their failure marks,
    /// connection counts and health (unless the group no longer has a health check),
    /// and its balancer's position and turn of source addresses continue from it.
    pub(crate) fn carrying(config: &UpstreamGroup, previous: Option<&Group>) -> Self {
        let carried = |addr: SocketAddr| {
            previous.and_then(|group| group.servers.iter().find(|server| server.addr == addr))
        };
        let checked = config.health_check.is_some();
        let servers: Vec<Server> = config
            .servers
            .iter()
            .enumerate()
            .map(|(index, &addr)| {
                let before = carried(addr);
                let host = config
                    .names
                    .iter()
                    .find(|name| name.addrs.contains(&addr))
                    .and_then(|name| name.name.rsplit_once(':'))
                    .map(|(host, _)| host);
                Server {
                    tls_name: config.tls.as_ref().map(|tls| tls.name_for(addr, host)),
                    addr,
                    weight: config.weight(index),
                    failed_until: before.map(|s| s.failed_until.clone()).unwrap_or_default(),
                    open: before.map(|s| s.open.clone()).unwrap_or_default(),
                    health: before
                        .filter(|_| checked)
                        .map(|s| s.health.clone())
                        .unwrap_or_default(),
                }
            })
            .collect();
        let all_down = checked && servers.iter().all(|server| server.health.is_down());
        let weighted: Vec<(SocketAddr, u32)> = servers.iter().map(|s| (s.addr, s.weight)).collect();
        Group {
            name: config.name.clone(),
            balancer: Balancer::new(
                config.balance.clone(),
                &weighted,
                previous.map(|group| &group.balancer),
            ),
            servers,
            epoch: previous.map_or_else(Instant::now, |group| group.epoch),
            check: config.health_check.clone(),
            sources: Sources::new(&config.source, previous.map(|group| &group.sources)),
            all_down: Arc::new(AtomicBool::new(all_down)),
            tls: config.tls.clone(),
            proxy_header: false,
        }
    }

    /// The group, its connections beginning with a PROXY v2 header when `proxy_header`.
    pub(crate) fn with_proxy_header(mut self, proxy_header: bool) -> Self {
        self.proxy_header = proxy_header;
        self
    }

    /// What the group's health check tasks need; `None` without a health check.
    pub(crate) fn health_targets(&self) -> Option<Targets> {
        Some(Targets {
            group: self.name.clone(),
            check: self.check.clone()?,
            sources: self.sources.clone(),
            servers: self
                .servers
                .iter()
                .map(|server| (server.addr, server.health.clone()))
                .collect(),
            tls: self.tls.clone().zip(Some(
                self.servers
                    .iter()
                    .filter_map(|server| Some((server.addr, server.tls_name.clone()?)))
                    .collect(),
            )),
            all_down: self.all_down.clone(),
            proxy_header: self.proxy_header,
        })
    }

    /// Whether the group has a health check.
    pub(crate) fn is_checked(&self) -> bool {
        self.check.is_some()
    }

    fn state(&self, server: &Server, now_millis: u64) -> ServerState {
        if server.health.is_down() {
            return ServerState::Down;
        }
        let until = server.failed_until.load(Ordering::Relaxed);
        if until > now_millis {
            ServerState::Failed(Duration::from_millis(until - now_millis))
        } else {
            ServerState::Healthy
        }
    }

    /// The servers' addresses.
    pub(crate) fn addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.servers.iter().map(|server| server.addr)
    }

    /// What the group balances by.
    pub(crate) fn balance(&self) -> &crate::Balance {
        self.balancer.balance()
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Every server that takes new connections once, in the order the balancer tries
    /// them: those not failed recently first, then the failed ones (a last resort, not
    /// skipped). Servers down by their health check are left out: with all of them
    /// down, none.
    fn rotation(&self, now: Instant, choice: Choice) -> Vec<&Server> {
        let now = self.millis(now);
        let candidates: Vec<Candidate> = self
            .servers
            .iter()
            .map(|server| Candidate {
                weight: server.weight,
                open: server.open.load(Ordering::Relaxed),
                usable: self.state(server, now) == ServerState::Healthy,
            })
            .collect();
        self.balancer
            .order(&candidates, choice.key)
            .into_iter()
            .map(|index| &self.servers[index])
            .filter(|server| self.state(server, now) != ServerState::Down)
            .collect()
    }

    /// The addresses [`Group::rotation`] gives for a connection with no hash key, in
    /// order (for tests of what takes new connections).
    #[cfg(test)]
    pub(crate) fn rotation_addrs(&self, now: Instant) -> Vec<SocketAddr> {
        let rotation = self.rotation(now, Choice::default());
        rotation.into_iter().map(|server| server.addr).collect()
    }

    /// Each server and its state.
    pub(crate) fn health(&self, now: Instant) -> Vec<(SocketAddr, ServerState)> {
        let now = self.millis(now);
        self.servers
            .iter()
            .map(|server| (server.addr, self.state(server, now)))
            .collect()
    }

    fn record(&self, addr: SocketAddr, ok: bool, now: Instant) {
        let until = if ok {
            0
        } else {
            self.millis(now + FAIL_TIMEOUT).max(1)
        };
        for server in self.servers.iter().filter(|server| server.addr == addr) {
            server.failed_until.store(until, Ordering::Relaxed);
        }
    }
}

mod dial;
pub(crate) use dial::{connect, open, pooled_single, DialError};

/// An upstream connection handed to a client connection.
#[derive(Debug)]
pub(crate) struct Dialed {
    pub(crate) stream: Io<TcpStream>,
    /// Its TLS session, handshake done, in a group with TLS.
    pub(crate) tls: Option<Box<TlsSession>>,
    pub(crate) server: SocketAddr,
    pub(crate) reused: bool,
    /// The server's count of connections in use, for [`InUse`].
    pub(crate) open: Arc<AtomicUsize>,
}

/// An upstream connection in use by a client connection (a request or a tunnel), counted
/// in `switchyard_upstream_connections_open` and `/status.json` (per worker, summed when
/// read) and in its server's count for least connections (one atomic shared by the
/// workers: a choice cannot wait for a sum) from its creation until it is dropped: given
/// back to the pool or closed, whichever way the connection ends.
#[derive(Debug)]
pub(crate) struct InUse {
    counted: Option<(Rc<WorkerMetrics>, usize)>,
    open: Arc<AtomicUsize>,
}

impl InUse {
    /// Counts a connection to `server`, taken from `pool` or dialed for it; `open` is
    /// the server's shared count ([`Dialed::open`]).
    pub(crate) fn new(pool: &Pool, server: SocketAddr, open: Arc<AtomicUsize>) -> InUse {
        let counted = pool.metrics.as_ref().and_then(|metrics| {
            let slot = metrics.upstream_slot(server)?;
            metrics.upstream_in_use(slot, true);
            Some((metrics.clone(), slot))
        });
        open.fetch_add(1, Ordering::Relaxed);
        InUse { counted, open }
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        if let Some((metrics, slot)) = &self.counted {
            metrics.upstream_in_use(*slot, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PoolConfig;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn order(group: &Group, now: Instant) -> Vec<SocketAddr> {
        let rotation = group.rotation(now, Choice::default());
        rotation.into_iter().map(|server| server.addr).collect()
    }

    #[test]
    fn rotation_is_round_robin_and_tries_each_server_once() {
        let group = Group::new("g".into(), vec![addr(1), addr(2), addr(3)]);
        let now = Instant::now();
        assert_eq!(order(&group, now), [addr(1), addr(2), addr(3)]);
        assert_eq!(order(&group, now), [addr(2), addr(3), addr(1)]);
        assert_eq!(order(&group, now), [addr(3), addr(1), addr(2)]);
        assert_eq!(order(&group, now), [addr(1), addr(2), addr(3)]);
    }

    #[test]
    fn a_failed_server_is_tried_last_until_the_fail_timeout_passes() {
        let group = Group::new("g".into(), vec![addr(1), addr(2), addr(3)]);
        let now = Instant::now();
        group.record(addr(1), false, now);
        assert_eq!(order(&group, now), [addr(2), addr(3), addr(1)]);
        assert_eq!(order(&group, now), [addr(2), addr(3), addr(1)]);
        let later = now + FAIL_TIMEOUT + Duration::from_millis(1);
        assert_eq!(order(&group, later), [addr(3), addr(1), addr(2)]);
    }

    /// The idle gauge of the group `default` (its one server is the pool's).
    fn idle_of(metrics: &crate::Metrics) -> String {
        let text = metrics.encode();
        let prefix = "switchyard_upstream_pool_idle{upstream=\"default\"} ";
        let line = text.lines().find_map(|line| line.strip_prefix(prefix));
        line.expect("the gauge is listed").to_string()
    }

    #[test]
    fn the_pool_and_failed_connects_count_into_the_metrics() {
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let origin = listener.local_addr().unwrap();
        let refused = {
            let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            closed.local_addr().unwrap()
        };
        let mut config = crate::ServerConfig::simple(addr(1), origin);
        config.upstreams[0].servers.push(refused);
        let tracker = Arc::new(crate::signal::Tracker::default());
        let metrics = Arc::new(crate::Metrics::new(&config, 1, tracker));
        crate::backend::block_on(async {
            let pool = Pool::with_metrics(PoolConfig::default(), Some(metrics.worker(0)));
            let mut peers = Vec::new();
            for _ in 0..2 {
                let stream = TcpStream::connect(origin).unwrap();
                stream.set_nonblocking(true).unwrap();
                peers.push(listener.accept().unwrap().0);
                pool.put(origin, Io::stream(stream, false).unwrap(), None);
            }
            assert_eq!(idle_of(&metrics), "2");
            assert!(pool.take(origin).is_some());
            assert_eq!(idle_of(&metrics), "1");
            pool.clear();
            assert_eq!(idle_of(&metrics), "0");

            // The refused server is counted once; the other one takes the request.
            let group = Group::new("default".into(), vec![refused, origin]);
            let dialed = connect(&group, &pool, true, Duration::from_secs(5), Choice::default(), None).await;
            assert_eq!(dialed.map(|d| d.server), Some(origin));
            let text = metrics.encode();
            let errors = |server: SocketAddr| {
                let series = format!(
                    "switchyard_upstream_connect_errors_total{{upstream=\"default\",server=\"{server}\"}} "
                );
                text.lines()
                    .find_map(|line| line.strip_prefix(series.as_str()))
                    .map(str::to_string)
            };
            assert_eq!(errors(refused).as_deref(), Some("1"));
            assert_eq!(errors(origin).as_deref(), Some("0"));
        })
        .unwrap();
    }

    #[test]
    fn a_group_carried_over_by_a_reload_keeps_the_failure_marks_of_its_remaining_servers() {
        let before = Group::new("g".into(), vec![addr(1), addr(2)]);
        let now = Instant::now();
        before.record(addr(1), false, now);
        let config = crate::UpstreamGroup {
            name: "g".into(),
            servers: vec![addr(3), addr(1)],
            ..crate::UpstreamGroup::default()
        };
        let after = Group::carrying(&config, Some(&before));
        assert_eq!(order(&after, now), [addr(3), addr(1)]);
        assert_eq!(
            order(&after, now),
            [addr(3), addr(1)],
            "the failed server is still tried last"
        );
        // What the old generation's connections see counts for the new one too.
        before.record(addr(1), true, now);
        assert_eq!(order(&after, now), [addr(3), addr(1)]);
        assert_eq!(order(&after, now), [addr(1), addr(3)]);
    }

    #[test]
    fn a_successful_connect_clears_the_failure() {
        let group = Group::new("g".into(), vec![addr(1), addr(2)]);
        let now = Instant::now();
        group.record(addr(1), false, now);
        group.record(addr(1), true, now);
        assert_eq!(order(&group, now), [addr(1), addr(2)]);
    }
}
