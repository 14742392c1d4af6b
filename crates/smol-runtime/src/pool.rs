//! Each worker's keep-alive pool of idle upstream connections.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use rustc_hash::{FxHashMap, FxHashSet};

use crate::backend::Io;
use crate::metrics::WorkerMetrics;
use crate::tls::session::TlsSession;
use crate::PoolConfig;

/// Idle keep-alive connections per upstream server, of one worker (like nginx's
/// `keepalive`, which is per worker process): a connection is registered with its
/// worker's reactor and serves that worker's clients only.
#[derive(Debug)]
pub(crate) struct Pool {
    config: PoolConfig,
    idle: RefCell<FxHashMap<SocketAddr, VecDeque<Idle>>>,
    /// The servers of the newest configuration generation, once a reload happened:
    /// connections to any other server are not pooled (a connection of an older
    /// generation may still use one).
    servers: RefCell<Option<FxHashSet<SocketAddr>>>,
    /// The worker's counts, told how many connections idle per server after each change.
    /// An `Rc`: each connection in use holds one ([`InUse`]), and counting one more must
    /// not touch memory the other workers share.
    pub(crate) metrics: Option<Rc<WorkerMetrics>>,
}

#[derive(Debug)]
struct Idle {
    stream: Io<TcpStream>,
    /// Its TLS session, to a group with TLS: pooled with the socket, so a reused
    /// connection makes no new handshake.
    tls: Option<Box<TlsSession>>,
    since: Instant,
}

/// A pooled connection handed out again: the socket and its TLS session, if any.
pub(crate) type Reused = (Io<TcpStream>, Option<Box<TlsSession>>);

impl Pool {
    /// The worker's counts, when the metrics are on.
    pub(crate) fn metrics(&self) -> Option<&WorkerMetrics> {
        self.metrics.as_deref()
    }

    /// A pool that counts into no metrics (the tests' kind).
    #[cfg(test)]
    pub(crate) fn new(config: PoolConfig) -> Self {
        Pool::with_metrics(config, None)
    }

    /// A pool that keeps `metrics` told of its idle connections and failed connects.
    pub(crate) fn with_metrics(config: PoolConfig, metrics: Option<WorkerMetrics>) -> Self {
        Pool {
            config,
            idle: RefCell::new(FxHashMap::default()),
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

    fn idle_mut(&self) -> std::cell::RefMut<'_, FxHashMap<SocketAddr, VecDeque<Idle>>> {
        self.idle.borrow_mut()
    }

    /// Keeps `stream` for reuse; the oldest idle connection to `server` is closed when
    /// the server already has `max_idle_per_server`.
    /// A TLS session holding unread bytes is not kept.
    pub(crate) fn put(
        &self,
        server: SocketAddr,
        stream: Io<TcpStream>,
        tls: Option<Box<TlsSession>>,
    ) {
        if self.config.max_idle_per_server == 0 || tls.as_ref().is_some_and(|tls| !tls.is_idle()) {
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
                tls,
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
    pub(crate) fn take(&self, server: SocketAddr) -> Option<Reused> {
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
                    found = Some((entry.stream, entry.tls));
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
        *self.servers.borrow_mut() = Some(servers.into_iter().collect());
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
                pool.put(server, Io::stream(stream, false).unwrap(), None);
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
}
