//! Upstream groups (round-robin, shared by the workers), dialing, and each worker's
//! keep-alive pool of idle upstream connections.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;

use crate::backend::{Io, Timer};
use crate::metrics::WorkerMetrics;
use crate::PoolConfig;

/// After a failed connect, a server is tried after the others for this long (nginx's
/// `max_fails=1 fail_timeout=10s`).
const FAIL_TIMEOUT: Duration = Duration::from_secs(10);

/// An upstream group at run time: its servers, its round-robin position, and which
/// servers failed recently.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) name: String,
    servers: Vec<Server>,
    next: AtomicUsize,
    /// Origin of the `failed_until` clocks.
    epoch: Instant,
}

#[derive(Debug)]
struct Server {
    addr: SocketAddr,
    /// Milliseconds after `epoch` until which the server counts as failed; 0 when it
    /// does not. Shared with the same server of the same group in the generations
    /// before and after a reload, so a failure seen by either counts for both.
    failed_until: Arc<AtomicU64>,
}

impl Group {
    #[cfg(test)]
    pub(crate) fn new(name: String, servers: Vec<SocketAddr>) -> Self {
        Group::carrying(name, servers, None)
    }

    /// A group whose servers that were already in `previous` (the group of the same
    /// name in the generation before) keep their failure marks, and whose round-robin
    /// position continues from it.
    pub(crate) fn carrying(
        name: String,
        servers: Vec<SocketAddr>,
        previous: Option<&Group>,
    ) -> Self {
        let carried = |addr: SocketAddr| {
            previous
                .and_then(|group| group.servers.iter().find(|server| server.addr == addr))
                .map(|server| server.failed_until.clone())
        };
        Group {
            name,
            servers: servers
                .into_iter()
                .map(|addr| Server {
                    addr,
                    failed_until: carried(addr).unwrap_or_default(),
                })
                .collect(),
            next: AtomicUsize::new(previous.map_or(0, |group| group.next.load(Ordering::Relaxed))),
            epoch: previous.map_or_else(Instant::now, |group| group.epoch),
        }
    }

    /// The servers' addresses.
    pub(crate) fn addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.servers.iter().map(|server| server.addr)
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Every server once: those not failed recently in round-robin order, then the
    /// failed ones (a last resort, not skipped).
    fn rotation(&self, now: Instant) -> Vec<SocketAddr> {
        let n = self.servers.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n.max(1);
        let now = self.millis(now);
        let ordered = (0..n).map(|k| &self.servers[(start + k) % n]);
        let (healthy, failed): (Vec<&Server>, Vec<&Server>) =
            ordered.partition(|server| server.failed_until.load(Ordering::Relaxed) <= now);
        healthy
            .into_iter()
            .chain(failed)
            .map(|server| server.addr)
            .collect()
    }

    /// Each server, and how much longer it counts as failed (tried after the others)
    /// when a connect to it failed in the last [`FAIL_TIMEOUT`]; `None` when healthy.
    pub(crate) fn health(&self, now: Instant) -> Vec<(SocketAddr, Option<Duration>)> {
        let now = self.millis(now);
        self.servers
            .iter()
            .map(|server| {
                let until = server.failed_until.load(Ordering::Relaxed);
                let failed = (until > now).then(|| Duration::from_millis(until - now));
                (server.addr, failed)
            })
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

/// An upstream connection handed to a client connection.
#[derive(Debug)]
pub(crate) struct Dialed {
    pub(crate) stream: Io<TcpStream>,
    pub(crate) server: SocketAddr,
    pub(crate) reused: bool,
}

/// Finds a connection to a server of `group`: the next server in round-robin order, from
/// the pool when it holds a live one (unless `fresh`), else dialed with `connect_timeout`.
/// A failed dial moves on to the next server; each server is tried at most once, and a
/// server whose connect failed in the last [`FAIL_TIMEOUT`] only after the others.
pub(crate) async fn connect(
    group: &Group,
    pool: &Pool,
    fresh: bool,
    connect_timeout: Duration,
) -> Option<Dialed> {
    for server in group.rotation(Instant::now()) {
        if !fresh {
            if let Some(stream) = pool.take(server) {
                return Some(Dialed {
                    stream,
                    server,
                    reused: true,
                });
            }
        }
        // Counts a failure, also when the caller gives up on the dial (the core's
        // connect deadline) and drops this future.
        let mut attempt = DialAttempt {
            metrics: pool.metrics.as_deref(),
            group: &group.name,
            server,
            failed: true,
        };
        let dial = async { Some(Io::connect(server).await) };
        let outcome = if group.servers.len() == 1 {
            // The caller races this against the core's connect deadline, which is the
            // same: a timer of its own would only cost the reactor work.
            dial.await
        } else {
            let give_up = async {
                Timer::after(connect_timeout).await;
                None
            };
            future::or(dial, give_up).await
        };
        let connected = matches!(outcome, Some(Ok(_)));
        group.record(server, connected, Instant::now());
        attempt.failed = !connected;
        drop(attempt);
        match outcome {
            Some(Ok(stream)) => {
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%server, %error, "setting TCP_NODELAY failed");
                }
                return Some(Dialed {
                    stream,
                    server,
                    reused: false,
                });
            }
            Some(Err(error)) => {
                tracing::warn!(group = %group.name, %server, %error, "upstream connect failed");
            }
            None => {
                tracing::warn!(group = %group.name, %server, "upstream connect timed out");
            }
        }
    }
    None
}

/// An upstream connection in use by a client connection (a request or a tunnel), counted
/// in `switchyard_upstream_connections_open` and `/status.json` from its creation until
/// it is dropped: given back to the pool or closed, whichever way the connection ends.
#[derive(Debug)]
pub(crate) struct InUse {
    counted: Option<(Rc<WorkerMetrics>, usize)>,
}

impl InUse {
    /// Counts a connection to `server`, taken from `pool` or dialed for it.
    pub(crate) fn new(pool: &Pool, server: SocketAddr) -> InUse {
        let counted = pool.metrics.as_ref().and_then(|metrics| {
            let slot = metrics.upstream_slot(server)?;
            metrics.upstream_in_use(slot, true);
            Some((metrics.clone(), slot))
        });
        InUse { counted }
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        if let Some((metrics, slot)) = &self.counted {
            metrics.upstream_in_use(*slot, false);
        }
    }
}

/// One dial of an upstream server, counted as a connect error unless it succeeded.
struct DialAttempt<'a> {
    metrics: Option<&'a WorkerMetrics>,
    group: &'a str,
    server: SocketAddr,
    failed: bool,
}

impl Drop for DialAttempt<'_> {
    fn drop(&mut self) {
        if let (true, Some(metrics)) = (self.failed, self.metrics) {
            metrics.connect_failed(self.group, self.server);
        }
    }
}

/// Idle keep-alive connections per upstream server, of one worker (like nginx's
/// `keepalive`, which is per worker process): a connection is registered with its
/// worker's reactor and serves that worker's clients only.
#[derive(Debug)]
pub(crate) struct Pool {
    config: PoolConfig,
    idle: RefCell<HashMap<SocketAddr, VecDeque<Idle>>>,
    /// The servers of the newest configuration generation, once a reload happened:
    /// connections to any other server are not pooled (a connection of an older
    /// generation may still use one).
    servers: RefCell<Option<std::collections::HashSet<SocketAddr>>>,
    /// The worker's counts, told how many connections idle per server after each change.
    /// An `Rc`: each connection in use holds one ([`InUse`]), and counting one more must
    /// not touch memory the other workers share.
    metrics: Option<Rc<WorkerMetrics>>,
}

impl Pool {
    /// The worker's counts, when metrics are on.
    pub(crate) fn metrics(&self) -> Option<&Rc<WorkerMetrics>> {
        self.metrics.as_ref()
    }
}

#[derive(Debug)]
struct Idle {
    stream: Io<TcpStream>,
    since: Instant,
}

impl Pool {
    /// A pool that counts into no metrics (the tests' kind).
    #[cfg(test)]
    pub(crate) fn new(config: PoolConfig) -> Self {
        Pool::with_metrics(config, None)
    }

    /// A pool that keeps `metrics` told of its idle connections and failed connects.
    pub(crate) fn with_metrics(config: PoolConfig, metrics: Option<WorkerMetrics>) -> Self {
        Pool {
            config,
            idle: RefCell::new(HashMap::new()),
            servers: RefCell::new(None),
            metrics: metrics.map(Rc::new),
        }
    }

    /// Tells the metrics how many connections to `server` idle now.
    fn publish(&self, server: SocketAddr, idle: usize) {
        if let Some(metrics) = &self.metrics {
            metrics.pool_idle(server, idle);
        }
    }

    /// Tells the metrics how many connections idle per server, after a change to many.
    fn publish_all(&self) {
        if let Some(metrics) = &self.metrics {
            let idle = self.idle.borrow();
            metrics.pool_idle_all(idle.iter().map(|(&server, queue)| (server, queue.len())));
        }
    }

    fn idle_mut(&self) -> std::cell::RefMut<'_, HashMap<SocketAddr, VecDeque<Idle>>> {
        self.idle.borrow_mut()
    }

    /// Keeps `stream` for reuse; the oldest idle connection to `server` is closed when
    /// the server already has `max_idle_per_server`.
    pub(crate) fn put(&self, server: SocketAddr, stream: Io<TcpStream>) {
        if self.config.max_idle_per_server == 0 {
            return;
        }
        let removed = self
            .servers
            .borrow()
            .as_ref()
            .is_some_and(|servers| !servers.contains(&server));
        if removed {
            return;
        }
        stream.forget_wakers();
        let evicted = {
            let mut idle = self.idle_mut();
            let queue = idle.entry(server).or_default();
            queue.push_back(Idle {
                stream,
                since: Instant::now(),
            });
            let evicted = if queue.len() > self.config.max_idle_per_server {
                queue.pop_front()
            } else {
                None
            };
            self.publish(server, queue.len());
            evicted
        };
        // Closed once the map is released.
        drop(evicted);
    }

    /// The most recently pooled live connection to `server`, if any. Connections that
    /// idled longer than `idle_timeout`, were closed by the server or hold unexpected
    /// bytes are closed on the way.
    pub(crate) fn take(&self, server: SocketAddr) -> Option<Io<TcpStream>> {
        let now = Instant::now();
        let mut discarded = Vec::new();
        let found = {
            let mut idle = self.idle_mut();
            let queue = idle.get_mut(&server)?;
            let mut found = None;
            while let Some(entry) = queue.pop_back() {
                if now.duration_since(entry.since) < self.config.idle_timeout
                    && still_open(&entry.stream)
                {
                    found = Some(entry.stream);
                    break;
                }
                discarded.push(entry);
            }
            self.publish(server, queue.len());
            found
        };
        drop(discarded);
        found
    }

    /// Closes connections that idled too long or that the server closed.
    pub(crate) fn prune(&self) {
        let now = Instant::now();
        let mut discarded = Vec::new();
        {
            let mut idle = self.idle_mut();
            for queue in idle.values_mut() {
                let mut kept = VecDeque::with_capacity(queue.len());
                for entry in queue.drain(..) {
                    if now.duration_since(entry.since) < self.config.idle_timeout
                        && still_open(&entry.stream)
                    {
                        kept.push_back(entry);
                    } else {
                        discarded.push(entry);
                    }
                }
                *queue = kept;
            }
            idle.retain(|_, queue| !queue.is_empty());
        }
        self.publish_all();
        drop(discarded);
    }

    /// Closes up to `most` idle connections, the longest idle first whatever their
    /// server, and returns how many it closed: descriptors given back at once when the
    /// process has none left.
    pub(crate) fn close_oldest(&self, most: usize) -> usize {
        let mut closed = Vec::new();
        {
            let mut idle = self.idle_mut();
            // Each queue is oldest first; the oldest of all is at the front of one.
            while closed.len() < most {
                let oldest = idle
                    .iter()
                    .filter_map(|(server, queue)| Some((queue.front()?.since, *server)))
                    .min();
                let Some((_, server)) = oldest else { break };
                closed.extend(idle.get_mut(&server).and_then(VecDeque::pop_front));
            }
            idle.retain(|_, queue| !queue.is_empty());
        }
        self.publish_all();
        let count = closed.len();
        drop(closed);
        count
    }

    /// After a reload: keeps pooling connections to `servers` only, and closes the idle
    /// connections to every other server.
    pub(crate) fn retain_servers(&self, servers: std::collections::HashSet<SocketAddr>) {
        let closed: Vec<VecDeque<Idle>> = {
            let mut idle = self.idle_mut();
            let gone: Vec<SocketAddr> = idle
                .keys()
                .filter(|server| !servers.contains(server))
                .copied()
                .collect();
            gone.iter()
                .filter_map(|server| idle.remove(server))
                .collect()
        };
        *self.servers.borrow_mut() = Some(servers);
        self.publish_all();
        drop(closed);
    }

    /// Closes every idle connection.
    pub(crate) fn clear(&self) {
        let all = std::mem::take(&mut *self.idle_mut());
        self.publish_all();
        drop(all);
    }

    /// How often [`Pool::prune`] should run.
    pub(crate) fn prune_interval(&self) -> Duration {
        (self.config.idle_timeout / 2).clamp(Duration::from_millis(50), Duration::from_secs(5))
    }
}

/// An idle connection is usable only if a non-blocking read finds nothing: EOF means
/// the server closed it, bytes mean it sent something no request asked for. The reactor
/// knows when nothing arrived since the last read found the socket drained (no event
/// since): then no read is needed.
fn still_open(stream: &Io<TcpStream>) -> bool {
    if !stream.may_be_readable() {
        return true;
    }
    let mut probe = [0u8; 1];
    let result = stream.read(&mut probe);
    matches!(result, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn rotation_is_round_robin_and_tries_each_server_once() {
        let group = Group::new("g".into(), vec![addr(1), addr(2), addr(3)]);
        let now = Instant::now();
        assert_eq!(group.rotation(now), [addr(1), addr(2), addr(3)]);
        assert_eq!(group.rotation(now), [addr(2), addr(3), addr(1)]);
        assert_eq!(group.rotation(now), [addr(3), addr(1), addr(2)]);
        assert_eq!(group.rotation(now), [addr(1), addr(2), addr(3)]);
    }

    #[test]
    fn a_failed_server_is_tried_last_until_the_fail_timeout_passes() {
        let group = Group::new("g".into(), vec![addr(1), addr(2), addr(3)]);
        let now = Instant::now();
        group.record(addr(1), false, now);
        assert_eq!(group.rotation(now), [addr(2), addr(3), addr(1)]);
        assert_eq!(group.rotation(now), [addr(2), addr(3), addr(1)]);
        let later = now + FAIL_TIMEOUT + Duration::from_millis(1);
        assert_eq!(group.rotation(later), [addr(3), addr(1), addr(2)]);
    }

    #[test]
    fn closing_the_oldest_takes_the_longest_idle_first_whatever_the_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let origin = listener.local_addr().unwrap();
        crate::backend::block_on(async {
            let pool = Pool::new(PoolConfig::default());
            let mut peers = Vec::new();
            for server in [addr(1), addr(2), addr(1), addr(2)] {
                let stream = TcpStream::connect(origin).unwrap();
                stream.set_nonblocking(true).unwrap();
                let (peer, _) = listener.accept().unwrap();
                peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                peers.push(peer);
                // A later instant for each, so the order across servers is this one.
                let before = Instant::now();
                while Instant::now() == before {}
                pool.put(server, Io::stream(stream, false).unwrap());
            }
            assert_eq!(pool.close_oldest(2), 2);
            for peer in &mut peers[..2] {
                assert_eq!(peer.read(&mut [0u8; 1]).unwrap(), 0, "closed: EOF");
            }
            // The newer connection to each server stays open (its peer reads nothing
            // yet) and is still in the pool.
            for (server, peer) in [addr(1), addr(2)].into_iter().zip(&mut peers[2..]) {
                peer.set_nonblocking(true).unwrap();
                let read = peer.read(&mut [0u8; 1]);
                assert!(
                    matches!(&read, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
                    "the newer connection to {server} stays open: {read:?}"
                );
                assert!(pool.take(server).is_some(), "{server} keeps one");
            }
            assert_eq!(pool.close_oldest(16), 0, "nothing idle is left to close");
        })
        .unwrap();
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
                pool.put(origin, Io::stream(stream, false).unwrap());
            }
            assert_eq!(idle_of(&metrics), "2");
            assert!(pool.take(origin).is_some());
            assert_eq!(idle_of(&metrics), "1");
            pool.clear();
            assert_eq!(idle_of(&metrics), "0");

            // The refused server is counted once; the other one takes the request.
            let group = Group::new("default".into(), vec![refused, origin]);
            let dialed = connect(&group, &pool, true, Duration::from_secs(5)).await;
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
        let after = Group::carrying("g".into(), vec![addr(3), addr(1)], Some(&before));
        assert_eq!(after.rotation(now), [addr(3), addr(1)]);
        assert_eq!(
            after.rotation(now),
            [addr(3), addr(1)],
            "the failed server is still tried last"
        );
        // What the old generation's connections see counts for the new one too.
        before.record(addr(1), true, now);
        assert_eq!(after.rotation(now), [addr(3), addr(1)]);
        assert_eq!(after.rotation(now), [addr(1), addr(3)]);
    }

    #[test]
    fn a_successful_connect_clears_the_failure() {
        let group = Group::new("g".into(), vec![addr(1), addr(2)]);
        let now = Instant::now();
        group.record(addr(1), false, now);
        group.record(addr(1), true, now);
        assert_eq!(group.rotation(now), [addr(1), addr(2)]);
    }
}
