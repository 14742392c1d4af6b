//! One task per client connection: feeds what happens on the sockets into the core,
//! performs what the core asks for, and sleeps until the next readiness or deadline.
//!
//! This file holds the HTTP phase's loop and its outputs; `link.rs` what both phases
//! keep, the outputs they share and the tunnel's own task; `wait.rs` the wait;
//! `peer.rs` the sockets, their write queues and the HTTP-phase reads; `tunnel.rs` the
//! tunnel's copy and splice; `dial.rs` answering `Connect` and releasing upstreams;
//! `finish.rs` the close and the linger after it. The phase is the core's (`Connection::state`): the driver keeps no
//! copy of it.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::panic::AssertUnwindSafe;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::executor::LocalExecutor;
use futures_lite::{future, FutureExt};
use switchyard_core::{Config, Connection, Input, Output, PeerInfo, RouteId, Scheme, Side};

use crate::backend::Io;
use crate::events::{EventContext, EventSink};
use crate::signal::{ConnectionGuard, Signal};
use crate::tls::session::TlsSession;
use crate::upstream::{Group, Pool};

mod body;
mod dial;
mod finish;
mod link;
mod peer;
mod tunnel;
mod wait;

use link::{Link, Upstream};
use peer::{Peer, UpstreamFacts};

/// Waits in a row that found a socket ready at once (each leads to one read or write)
/// before a connection's task yields to the others.
const WAITS_BEFORE_YIELD: u8 = 32;

/// State shared by every connection of one configuration generation: a connection
/// keeps the generation it was accepted under (routes, route → group mapping,
/// deadlines, limits) for its whole life.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) core: Arc<Config>,
    /// Shared with the admin listener, which shows their servers' state.
    pub(crate) groups: Arc<[Group]>,
    pub(crate) route_upstream: Vec<usize>,
    /// Fired when this generation's connections must drain: at the server's shutdown,
    /// or once `drain_timeout` has passed since a reload replaced the generation.
    pub(crate) shutdown: Arc<Signal>,
    /// The server's shutdown: set when the drain is a shutdown's.
    pub(crate) stopping: Arc<Signal>,
    pub(crate) grace: Duration,
    /// Where every event of the core goes.
    pub(crate) events: Arc<dyn EventSink>,
    /// This generation's number (1: the configuration bound).
    pub(crate) generation: u64,
    /// The live tunnel list of `/status.json`, when the admin listener is on.
    pub(crate) tunnels: Option<Arc<crate::tunnels::Registry>>,
    /// Listening addresses, as bound, whose connections begin with a PROXY header.
    pub(crate) accept_proxy: Vec<SocketAddr>,
    /// The listeners that speak TLS, by bound address, with this generation's
    /// certificates.
    pub(crate) tls: crate::tls::TlsByAddress,
}

impl Shared {
    /// How long a tunnel may go on once told to drain: `shutdown_grace` at a shutdown;
    /// none when an old generation's `drain_timeout` passed (that was its grace).
    pub(crate) fn drain_grace(&self) -> Duration {
        if self.stopping.is_set() {
            self.grace
        } else {
            Duration::ZERO
        }
    }
}

/// What a connection's task starts from: the accepted socket and what the accept loop
/// knows of it. Boxed by the caller and opened into a [`Driver`] by [`serve`], so that
/// none of it stays reserved in the task once the driver runs.
pub(crate) struct Start {
    /// The generation of its accept, for the connection's whole life.
    pub(crate) shared: Arc<Shared>,
    /// The worker's upstream pool.
    pub(crate) pool: Rc<Pool>,
    /// Counts the connection among the server's while it lives.
    pub(crate) guard: ConnectionGuard,
    /// Where the tunnel's own task is spawned, once the connection becomes one.
    pub(crate) executor: Weak<LocalExecutor>,
    pub(crate) client: Io<TcpStream>,
    /// Names the worker and the client for the events.
    pub(crate) context: EventContext,
    /// The connection must begin with a PROXY header within `header_timeout`: its client
    /// address replaces the socket's, and without one the connection is closed
    /// unanswered.
    pub(crate) proxy_header: bool,
    /// The client's bytes (after the PROXY header, if any) are a TLS session's.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
}

/// Serves one client connection until the core closes it or it becomes a tunnel, which
/// a task of its own serves from then on (see `link.rs`).
///
/// The task's future is this one: the driver and a small state of the loop it is in.
/// The connection's starting state comes boxed, and the driver is made by an `async fn`
/// of its own ([`Driver::open`]), because an `async fn`'s arguments and the locals moved
/// into the driver would otherwise stay reserved in every task for its whole life.
pub(crate) async fn serve(start: Box<Start>) {
    // One expression: a local holding the opened driver would stay reserved beside it.
    let Some(mut driver) = AssertUnwindSafe(Driver::open(start))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            tracing::error!("connection task panicked before serving");
            None
        })
    else {
        return;
    };
    match AssertUnwindSafe(driver.run()).catch_unwind().await {
        Ok(Ended::Closed) => {}
        Ok(Ended::Tunnel) => {
            let executor = driver.executor.upgrade();
            let mut link = driver.link;
            link.hand_over();
            // No executor: the worker is shutting down and drops its tasks anyway.
            if let Some(executor) = executor {
                executor.spawn(link::TunnelTask::Running(link)).detach();
            }
        }
        Err(_) => {
            tracing::error!(client_addr = %driver.origin.client, "connection task panicked")
        }
    }
}

impl Driver {
    /// Reads the PROXY header and starts the TLS session where the listener asks for
    /// them, and makes the driver; `None` when the connection ends before it has one.
    async fn open(start: Box<Start>) -> Option<Driver> {
        let Start {
            shared,
            pool,
            guard,
            executor,
            client,
            mut context,
            proxy_header,
            tls,
        } = *start;
        let accepted = Instant::now();
        let mut first_bytes = None;
        let mut destination = None;
        if proxy_header {
            let deadline = accepted + shared.core.timeouts.header;
            // On the heap: its read buffer would otherwise sit in every connection's task
            // for the task's whole life.
            match Box::pin(crate::proxy_protocol::read_header(&client, deadline)).await {
                Ok((header, rest)) => {
                    if let Some((source, to)) = header.addresses {
                        context.client = source;
                        destination = Some(Box::new(to));
                    }
                    first_bytes = Some(rest).filter(|rest| !rest.is_empty());
                }
                Err(refused) => {
                    let reason = crate::proxy_protocol::REFUSALS[refused.0];
                    tracing::debug!(client = %context.client, reason, "no valid PROXY protocol header, closed");
                    if let Some(metrics) = pool.metrics() {
                        metrics.proxy_header_refused(refused.0);
                    }
                    return None;
                }
            }
        }
        // After a PROXY header, TLS: what came behind the header is the handshake's first
        // ciphertext, never the core's. The handshake runs in the core's header_timeout,
        // counted from the accept like the PROXY header's.
        let session = match tls {
            None => None,
            Some(config) => {
                let metrics = pool.metrics.clone();
                let early = first_bytes.take().unwrap_or_default();
                match TlsSession::new(config, context.client, metrics, early) {
                    Ok(session) => Some(Box::new(session)),
                    Err(error) => {
                        tracing::error!(client = %context.client, %error, "cannot start TLS");
                        return None;
                    }
                }
            }
        };
        let peer = PeerInfo {
            client_addr: Some(context.client.ip()),
            scheme: if session.is_some() {
                Scheme::Https
            } else {
                Scheme::Http
            },
        };
        let conn = Connection::new(shared.core.clone(), peer, accepted);
        let mut driver = Driver {
            link: Link::new(
                shared,
                guard,
                context,
                conn,
                Peer::with_tls(client, session),
            ),
            pool,
            executor,
            destination,
            facts: None,
            upstream_group: None,
            kept: None,
            pending_connect: None,
            next_fresh: false,
        };
        if let Some(bytes) = first_bytes {
            driver.feed(Input::ClientData(bytes), Instant::now());
        }
        Some(driver)
    }
}

/// What ended a wait.
#[derive(Debug)]
enum Wake {
    Timer,
    Readable(Side),
    Wrote(Side, io::Result<usize>),
    Shutdown,
}

/// How the HTTP phase's loop ended.
enum Ended {
    /// The core closed the connection.
    Closed,
    /// The core's phase is a tunnel: its own task goes on from here.
    Tunnel,
}

/// The HTTP phase: the [`Link`] both phases keep, and what only this phase uses.
struct Driver {
    link: Link,
    pool: Rc<Pool>,
    executor: Weak<LocalExecutor>,
    pending_connect: Option<RouteId>,
    /// The last pooled connection died before answering: the core's retry must dial.
    next_fresh: bool,
    /// The address the client connected to, as a PROXY header named it (`None`: the
    /// socket's own), for the header sent to an upstream group that wants one. Boxed:
    /// only connections behind a PROXY header have one.
    destination: Option<Box<SocketAddr>>,
    /// What the HTTP phase knows of the current upstream connection.
    facts: Option<UpstreamFacts>,
    /// The group of the current upstream connection.
    upstream_group: Option<u32>,
    /// An upstream connection that began with this client's PROXY header, between two
    /// of its requests (such a connection is never pooled), with its group.
    kept: Option<Box<(usize, Upstream, UpstreamFacts)>>,
}

impl std::ops::Deref for Driver {
    type Target = Link;
    fn deref(&self) -> &Link {
        &self.link
    }
}

impl std::ops::DerefMut for Driver {
    fn deref_mut(&mut self) -> &mut Link {
        &mut self.link
    }
}

impl Driver {
    // `&mut self` rather than `self` throughout: moving the driver into nested futures
    // would keep several copies of it in every connection's task.
    async fn run(&mut self) -> Ended {
        loop {
            while let Some(output) = self.conn.poll_output() {
                self.apply(output);
            }
            if self.abandoned || self.conn.is_closed() {
                break;
            }
            // The outputs that began the tunnel are all performed (the 101 and the
            // leftovers queued): the tunnel's own task takes over.
            if self.in_tunnel() && self.pending_connect.is_none() {
                return Ended::Tunnel;
            }
            self.shut_down_written();
            if let Some(route) = self.pending_connect.take() {
                self.connect(route).await;
                continue;
            }
            if self.should_yield() {
                future::yield_now().await;
            }
            let wake = self.wait().await;
            let now = Instant::now();
            if let Wake::Readable(side) = wake {
                self.read(side, now);
            }
            self.link.woke(wake, now);
        }
        // Boxed for the same reason as dialing: it runs once, at the end.
        Box::pin(self.link.finish()).await;
        Ended::Closed
    }

    fn apply(&mut self, output: Output) {
        match self.link.apply(output) {
            None => {}
            Some(Output::Connect(route)) => self.pending_connect = Some(route),
            Some(Output::ReleaseUpstream { reusable }) => self.release_upstream(reusable),
            Some(other) => self.link.unknown(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PoolConfig;
    use std::net::TcpListener;

    fn test_shared() -> Arc<Shared> {
        Arc::new(Shared {
            core: Arc::new(Config::default()),
            groups: Arc::new([]),
            route_upstream: Vec::new(),
            shutdown: Arc::new(Signal::default()),
            stopping: Arc::new(Signal::default()),
            grace: Duration::from_secs(1),
            events: Arc::new(crate::AccessLog),
            generation: 1,
            tunnels: None,
            accept_proxy: Vec::new(),
            tls: Default::default(),
        })
    }

    fn connected_stream() -> (TcpStream, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nonblocking(true).unwrap();
        (stream, addr)
    }

    /// The task of a connection in its HTTP phase is this future and nothing else of
    /// the adapter's: no buffer, no dial, no TLS session inline.
    #[test]
    fn connection_task_stays_small() {
        let (stream, addr) = connected_stream();
        let shared = test_shared();
        let tracker = Arc::new(crate::signal::Tracker::default());
        let size = crate::backend::block_on(async {
            let client = Io::stream(stream, true).unwrap();
            let start = Box::new(Start {
                shared,
                pool: Rc::new(Pool::new(PoolConfig::default())),
                guard: tracker.enter(),
                executor: Weak::new(),
                client,
                context: EventContext::new(0, addr),
                proxy_header: true,
                tls: None,
            });
            let task = serve(start);
            std::mem::size_of_val(&task)
        })
        .unwrap();
        println!("HTTP connection task: {size} bytes");
        // The driver (the link, with the core's connection inline, and the HTTP
        // phase's own state) and the state of its loop; the wait is a poll over the
        // driver's own fields (no future of its own); the connection's starting state,
        // dialing, closing, a PROXY header's read, a kept PROXY upstream connection and
        // a TLS session are boxed. Measured: 640 bytes on the Linux reactor, 688 on the
        // portable backend (1464 and 1456 with the wait's tree of futures, the
        // arguments of `serve` kept beside the driver and a timer holding its reactor;
        // 848 and 864 before a tunnel had a task of its own, and the accept loop's
        // block held 48 bytes more around it; 768 and 800 with a chunk inline in each
        // write queue and the events' context kept whole; 656 on the Linux reactor with a
        // timer that kept a copy of its waker).
        let bound = 700;
        assert!(size < bound, "a connection task takes {size} bytes");
    }

    /// An idle tunnel's task: what a tunnel keeps (the core's connection, the two
    /// sockets and their queues, the timer) and its loop's state. It is most of an idle
    /// tunnel's memory (`benches/RESULTS.md`, issue 14: under 1 KB per idle tunnel).
    #[test]
    fn tunnel_task_stays_small() {
        let (stream, addr) = connected_stream();
        let (upstream, _) = connected_stream();
        let shared = test_shared();
        let tracker = Arc::new(crate::signal::Tracker::default());
        let pool = Pool::new(PoolConfig::default());
        let (link, task) = crate::backend::block_on(async {
            let peer = PeerInfo {
                client_addr: Some(addr.ip()),
                scheme: Scheme::Http,
            };
            let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let conn = Connection::new(shared.core.clone(), peer, Instant::now());
            let client = Peer::with_tls(Io::stream(stream, true).unwrap(), None);
            let context = EventContext::new(0, addr);
            let mut link = Link::new(shared, tracker.enter(), context, conn, client);
            link.upstream = Some(Upstream {
                peer: Peer::with_tls(Io::stream(upstream, true).unwrap(), None),
                in_use: crate::upstream::InUse::new(&pool, addr, open),
            });
            let link_size = std::mem::size_of_val(&link);
            let task = link::TunnelTask::Running(link);
            (link_size, std::mem::size_of_val(&task))
        })
        .unwrap();
        println!("link: {link} bytes, tunnel task: {task} bytes");
        println!(
            "of the link: the core's connection {}, a peer {}, the upstream {}, the origin {}, the timer {}",
            std::mem::size_of::<Connection>(),
            std::mem::size_of::<Peer>(),
            std::mem::size_of::<Option<Upstream>>(),
            std::mem::size_of::<link::Origin>(),
            std::mem::size_of::<crate::backend::Timer>(),
        );
        // The link alone: a hand-written future keeps nothing beside it. Measured: 424
        // bytes on the Linux reactor, 472 on the portable backend (the core's
        // `Connection` 208 of it; the tunnel's task was the HTTP task before, 848 and 864
        // bytes; 552 and 584 with a chunk inline in each write queue and the events'
        // context kept whole; 440 on the Linux reactor with a timer that kept a copy of
        // its waker). At 424 the task's allocation, with the executor's header, takes a
        // 496-byte chunk of glibc's allocator.
        let bound = 480;
        assert!(task < bound, "a tunnel task takes {task} bytes");
    }
}
