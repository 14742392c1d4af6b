//! One task per client connection: feeds what happens on the sockets into the core,
//! performs what the core asks for, and sleeps until the next readiness or deadline.
//!
//! This file holds the loop, the outputs and the wait; `peer.rs` the sockets, their
//! write queues and the HTTP-phase reads; `tunnel.rs` the tunnel's copy and splice;
//! `dial.rs` answering `Connect` and releasing upstreams; `finish.rs` the close and the
//! linger after it. The phase is the core's (`Connection::state`): the driver keeps no
//! copy of it.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{future, FutureExt};
use switchyard_core::{
    Config, Connection, Input, Misuse, Output, PeerInfo, RouteId, Scheme, Side, StateKind,
};

use crate::backend::{Io, Timer};
use crate::buffer::Chunk;
use crate::events::{EventContext, EventSink};
use crate::signal::Signal;
use crate::tls::session::TlsSession;
use crate::upstream::{Group, Pool};

mod body;
mod dial;
mod finish;
mod peer;
mod tunnel;
mod wait;

use peer::{Peer, Upstream};

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
#[derive(Debug)]
pub(crate) struct Start {
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

/// Serves one client connection until the core closes it; `pool` is the worker's.
///
/// The task's future is this one: the driver and a small state of the loop it is in.
/// The connection's starting state comes boxed, and the driver is made by an `async fn`
/// of its own ([`Driver::open`]), because an `async fn`'s arguments and the locals moved
/// into the driver would otherwise stay reserved in every task for its whole life.
pub(crate) async fn serve(shared: &Shared, pool: &Pool, start: Box<Start>) {
    // One expression: a local holding the opened driver would stay reserved beside it.
    let Some(mut driver) = AssertUnwindSafe(Driver::open(shared, pool, start))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            tracing::error!("connection task panicked before serving");
            None
        })
    else {
        return;
    };
    if AssertUnwindSafe(driver.run()).catch_unwind().await.is_err() {
        tracing::error!(client_addr = %driver.context.client, "connection task panicked");
    }
}

impl<'a> Driver<'a> {
    /// Reads the PROXY header and starts the TLS session where the listener asks for
    /// them, and makes the driver; `None` when the connection ends before it has one.
    async fn open(shared: &'a Shared, pool: &'a Pool, start: Box<Start>) -> Option<Driver<'a>> {
        let Start {
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
        let mut driver = Driver {
            shared,
            pool,
            context,
            conn: Connection::new(shared.core.clone(), peer, accepted),
            destination,
            upstream_group: None,
            kept: None,
            client: Peer::with_tls(client, session),
            upstream: None,
            pending_connect: None,
            abandoned: false,
            shutdown_told: false,
            shutdown_waiter: None,
            next_fresh: false,
            client_first: false,
            timer: Timer::never(),
            waits: 0,
            tunnel: None,
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

struct Driver<'a> {
    shared: &'a Shared,
    pool: &'a Pool,
    context: EventContext,
    conn: Connection,
    client: Peer,
    upstream: Option<Upstream>,
    pending_connect: Option<RouteId>,
    /// The core asked for something this driver does not know (a newer core): the
    /// driver ends the connection on its own, which the core cannot know, so unlike the
    /// phase (`conn.state()`) this is not the core's to tell.
    abandoned: bool,
    shutdown_told: bool,
    /// Registered with the shared shutdown signal on the first wait and kept until it
    /// fires or the connection ends (see [`Signal::poll_fired`]): registering on every
    /// wait would take the signal's lock, which every worker shares, once per message.
    shutdown_waiter: Option<u32>,
    /// The last pooled connection died before answering: the core's retry must dial.
    next_fresh: bool,
    /// Which peer's readiness the next wait looks at first.
    client_first: bool,
    timer: Timer,
    /// Waits in a row that completed without sleeping (see [`WAITS_BEFORE_YIELD`]).
    waits: u8,
    /// The tunnel's entry in the live tunnel list, while it is open and the list is kept
    /// (boxed: most servers keep no list, and every task would carry it).
    tunnel: Option<Box<crate::tunnels::TunnelHandle>>,
    /// The address the client connected to, as a PROXY header named it (`None`: the
    /// socket's own), for the header sent to an upstream group that wants one. Boxed:
    /// only connections behind a PROXY header have one.
    destination: Option<Box<SocketAddr>>,
    /// The group of the current upstream connection.
    upstream_group: Option<u32>,
    /// An upstream connection that began with this client's PROXY header, between two
    /// of its requests (such a connection is never pooled), with its group.
    kept: Option<Box<(usize, Upstream)>>,
}

impl Drop for Driver<'_> {
    fn drop(&mut self) {
        // Also when the task is dropped mid-wait: the signal must not keep its waker.
        self.shared.shutdown.forget(&mut self.shutdown_waiter);
    }
}

impl Driver<'_> {
    // `&mut self` rather than `self` throughout: moving the driver into nested futures
    // would keep several copies of it in every connection's task.
    async fn run(&mut self) {
        loop {
            while let Some(output) = self.conn.poll_output() {
                self.apply(output);
            }
            if self.abandoned || self.conn.is_closed() {
                break;
            }
            for peer in [
                Some(&mut self.client),
                self.upstream.as_mut().map(|u| &mut u.peer),
            ]
            .into_iter()
            .flatten()
            {
                if peer.shutdown_pending && !peer.pending() {
                    peer.shutdown_write();
                }
            }
            if let Some(route) = self.pending_connect.take() {
                self.connect(route).await;
                continue;
            }
            // A socket that stays ready (a bulk tunnel, a pipelining client) would keep
            // this task from ever returning to the executor, starving the other
            // connections and the reactor: after many waits in a row that did not have
            // to sleep, yield. (Yielding on a count alone would put a message that is
            // half forwarded behind every other connection's work.)
            if self.waits >= WAITS_BEFORE_YIELD {
                self.waits = 0;
                future::yield_now().await;
            }
            let wake = self.wait().await;
            let now = Instant::now();
            match wake {
                Wake::Timer => self.conn.handle_timeout(now),
                Wake::Readable(side) => self.read(side, now),
                Wake::Wrote(side, result) => self.wrote(side, result, now),
                Wake::Shutdown => {
                    self.shutdown_told = true;
                    self.shared.shutdown.forget(&mut self.shutdown_waiter);
                    let grace = self.shared.drain_grace();
                    self.feed(Input::Drain { grace }, now);
                }
            }
            // A busy socket must not starve the deadlines.
            if self
                .conn
                .poll_timeout()
                .is_some_and(|deadline| deadline <= now)
            {
                self.conn.handle_timeout(now);
            }
        }
        // Boxed for the same reason as dialing: it runs once, at the end.
        Box::pin(self.finish()).await;
    }

    fn feed(&mut self, input: Input, now: Instant) {
        if let Err(misuse) = self.conn.handle_input(input, now) {
            self.misused(misuse);
        }
    }

    /// The core refused an input.
    fn misused(&self, misuse: Misuse) {
        match misuse {
            // Already closed: the loop ends once the outputs are drained.
            Misuse::Closed => {}
            other => {
                tracing::warn!(client = %self.context.client, %other, "core rejected an input");
                // The driver's own bug (say, bytes past a frame-aware tunnel's
                // passthrough budget): loud in tests and debug builds.
                debug_assert!(false, "core rejected an input: {other}");
            }
        }
    }

    /// Whether tunnel data may splice: never through a TLS session, whose records
    /// only userspace can read or write.
    fn may_splice(&self) -> bool {
        let upstream_tls = self.upstream.as_ref().is_some_and(|u| u.peer.tls.is_some());
        crate::backend::pipe_supported() && self.client.tls.is_none() && !upstream_tls
    }

    /// After `StartTunnel`: reads go to pooled buffers and are copied, or, in a
    /// frame-aware tunnel, are shown to the core where it must see them.
    fn in_tunnel(&self) -> bool {
        self.conn.state() == StateKind::Tunnel
    }

    fn apply(&mut self, output: Output) {
        match output {
            Output::Connect(route) => self.pending_connect = Some(route),
            Output::ToClient(bytes) => self.client.push(Chunk::Bytes(bytes)),
            Output::ToUpstream(bytes) => match &mut self.upstream {
                Some(upstream) => upstream.peer.push(Chunk::Bytes(bytes)),
                None => {
                    tracing::debug!(client = %self.context.client, "bytes for a missing upstream dropped")
                }
            },
            Output::ReleaseUpstream { reusable } => self.release_upstream(reusable),
            Output::StartTunnel {
                client_leftover,
                upstream_leftover,
            } => {
                self.client.queue.compact();
                if let Some(upstream) = &mut self.upstream {
                    upstream.peer.queue.compact();
                }
                if let Some(upstream) = &mut self.upstream {
                    upstream.peer.push(Chunk::Bytes(client_leftover));
                }
                self.client.push(Chunk::Bytes(upstream_leftover));
            }
            Output::NeedMaskingKey => self.give_masking_key(),
            // Done once the queue is written and unless the connection closes first
            // (closing sends the FIN anyway): see `run` and `wrote`.
            Output::HalfClose { side } => {
                if let Some(peer) = self.peer_mut(side) {
                    peer.shutdown_pending = true;
                }
            }
            // The core is closed now (`is_closed`): the loop ends.
            Output::Close => {}
            Output::Event(event) => {
                self.track_tunnel(&event);
                self.shared.events.event(&self.context, &event);
            }
            // An action this driver does not know (a newer core): ending the connection
            // is the only safe answer.
            other => {
                tracing::error!(client = %self.context.client, ?other, "unknown core output");
                self.abandoned = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PoolConfig;
    use std::net::TcpListener;

    /// The task of an idle connection (or idle tunnel) is this future and nothing else
    /// of the adapter's: no buffer. It is most of an idle tunnel's memory (992 of 1623
    /// bytes with the executor's header, frame-aware: `benches/RESULTS.md`, issue 14),
    /// whose targets are under 2 KB (issue 10) and under 1 KB (issue 14).
    #[test]
    fn connection_task_stays_small() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nonblocking(true).unwrap();
        let shared = Shared {
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
        };
        let pool = Pool::new(PoolConfig::default());
        let size = crate::backend::block_on(async {
            let client = Io::stream(stream, true).unwrap();
            let start = Box::new(Start {
                client,
                context: EventContext::new(0, addr),
                proxy_header: true,
                tls: None,
            });
            let task = serve(&shared, &pool, start);
            std::mem::size_of_val(&task)
        })
        .unwrap();
        // The driver (about 730 bytes, with the core's connection inline) and the state of its
        // loop; the wait is a poll over the driver's own fields (no future of its own);
        // the connection's starting state, dialing, closing, a PROXY header's read, a
        // kept PROXY upstream connection and a TLS session are boxed. Measured: 848
        // bytes on the Linux reactor, 864 on the portable backend (1464 and 1456 with
        // the wait's tree of futures, the arguments of `serve` kept beside the driver
        // and a timer holding its reactor); the same in a frame-aware WebSocket tunnel,
        // whose frames the core keeps on the heap.
        let bound = 880;
        assert!(size < bound, "a connection task takes {size} bytes");
    }
}
