//! The worker threads and their accept loops, and graceful shutdown.
//!
//! Every worker thread runs its own executor (driving the reactor itself when it has
//! nothing else to do) and accepts from its own listening socket per address: each
//! address is bound once per worker with `SO_REUSEPORT` (`listeners.rs`, which also
//! takes sockets over from a running process: `handover/`), so the kernel spreads new
//! connections over the workers (Linux does; see `docs/DECISIONS.md`
//! for other systems), and a connection stays on the thread that accepted it, its
//! sockets registered with that thread's reactor (see `backend.rs`). Each worker keeps its own upstream keep-alive pool; only the
//! upstream groups, the connection count and the
//! shutdown signal are shared. The admin listener, when configured, is a task on worker
//! 0's executor with a socket of its own (see `admin/`).

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use futures_lite::{future, FutureExt};

use crate::admin::Admin;
use crate::backend::{self, Io, Timer};
use crate::driver::{self, Shared};
use crate::events::EventContext;
use crate::handover::{Offered, UpgradeSocket};
use crate::limits::{self, DescriptorBudget};
use crate::listeners;
use crate::metrics::Metrics;
use crate::shortage;
use crate::signal::{ConnectionGuard, Signal, Tracker};
use crate::upstream::{Group, Pool};
use crate::{EventSink, PoolConfig, ServerConfig};

/// Connections accepted before the accept loop lets the other tasks run.
const ACCEPT_BATCH: usize = 16;
/// How long accepting pauses after a failure that is not one client's: out of file
/// descriptors with no idle upstream connection left to close, or any other.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// After `shutdown_grace`, how much longer connections may take to finish closing: a
/// WebSocket tunnel sends its Close frames at the end of the grace and waits up to 1 s
/// for the peers' answers, and then what is queued is written.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(2);

/// A bound proxy server, ready to [`run`](Server::run).
#[derive(Debug)]
pub struct Server {
    /// For each worker, one listening socket per address.
    listeners: Vec<Vec<TcpListener>>,
    local_addrs: Vec<SocketAddr>,
    shared: Arc<Shared>,
    pool: PoolConfig,
    workers: usize,
    max_connections: usize,
    /// Open client connections: counted by the accept loops, read by the metrics.
    tracker: Arc<Tracker>,
    /// The admin listener and the metrics it serves, when `admin_listen` is set.
    admin: Option<Admin>,
    /// The upgrade socket, when `upgrade_socket` is set.
    upgrade: Option<UpgradeSocket>,
}

/// Starts a graceful shutdown of a [`Server`] from anywhere (a signal handler thread, a
/// test). Cheap to clone.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    signal: Arc<Signal>,
}

impl ShutdownHandle {
    /// Stops accepting, tells every connection to finish (an exchange in flight completes,
    /// a tunnel gets `shutdown_grace`), and lets [`Server::run`] return once all are done
    /// or `shutdown_grace` plus two seconds have passed. Calling it again does nothing.
    pub fn shutdown(&self) {
        self.signal.fire();
    }
}

impl Server {
    /// Checks `config` and binds every listener now, so a port already in use is reported
    /// here, naming the address. Logs one warning when `max_connections` cannot fit in
    /// the open-file limit (see [`DescriptorBudget`]); the limit itself is left alone
    /// (see [`raise_descriptor_limit`](crate::raise_descriptor_limit)).
    ///
    /// Fails with [`io::ErrorKind::InvalidInput`] when there is no listener, a route maps
    /// to no upstream group (`route_upstream` must have one entry per route), or a group
    /// has no server.
    pub fn bind(config: ServerConfig) -> io::Result<Server> {
        validate(&config)?;
        let workers = match config.workers {
            0 => thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let budget = DescriptorBudget::new(&config, workers);
        // A running process's sockets, when it serves the upgrade socket, before any bind.
        let mut upgrade = config
            .upgrade_socket
            .as_deref()
            .map(UpgradeSocket::bind)
            .transpose()?;
        let mut inherited = upgrade
            .as_mut()
            .map(UpgradeSocket::take_inherited)
            .unwrap_or_default();
        let admin_inherited = config
            .admin_listen
            .and_then(|addr| listeners::take(&mut inherited, addr));
        let listeners::Bound {
            per_worker: listeners,
            local_addrs,
        } = listeners::bind(&config.listen, workers, inherited)?;
        let tracker = Arc::new(Tracker::default());
        let admin = match config.admin_listen {
            Some(addr) => {
                let metrics = Arc::new(Metrics::new(&config, workers, tracker.clone()));
                Some(match admin_inherited {
                    Some(listener) => Admin::on(listener, metrics)?,
                    None => Admin::bind(addr, metrics)?,
                })
            }
            None => None,
        };
        // The metrics follow the configured sink, as a pair of sinks does.
        let events: Arc<dyn EventSink> = match &admin {
            Some(admin) => Arc::new((config.events, admin.metrics().clone())),
            None => config.events,
        };
        // Said once the listeners are bound: a port in use is the error to report.
        limits::warn_if_short(&budget);
        let shared = Shared {
            core: Arc::new(config.core),
            groups: config
                .upstreams
                .into_iter()
                .map(|group| Group::new(group.name, group.servers))
                .collect(),
            route_upstream: config.route_upstream,
            shutdown: Arc::new(Signal::default()),
            grace: config.shutdown_grace,
            events,
        };
        Ok(Server {
            listeners,
            local_addrs,
            shared: Arc::new(shared),
            pool: config.pool,
            workers,
            max_connections: config.max_connections,
            tracker,
            admin,
            upgrade,
        })
    }

    /// The addresses actually bound, in the order of `listen` (a port 0 is resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.local_addrs.clone()
    }

    /// The address the admin listener is bound to (a port 0 resolved), when
    /// [`ServerConfig::admin_listen`] is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(Admin::local_addr)
    }

    /// The metrics the admin listener serves at `/metrics`, when
    /// [`ServerConfig::admin_listen`] is set.
    pub fn metrics(&self) -> Option<Arc<Metrics>> {
        self.admin.as_ref().map(|admin| admin.metrics().clone())
    }

    /// A handle that starts a graceful shutdown.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            signal: self.shared.shutdown.clone(),
        }
    }

    /// Serves on `workers` threads (this one included) until a shutdown started with a
    /// [`ShutdownHandle`] has completed.
    pub fn run(self) -> io::Result<()> {
        let Server {
            mut listeners,
            local_addrs,
            shared,
            pool,
            workers,
            max_connections,
            tracker,
            admin,
            upgrade,
        } = self;
        // Sockets bound only, beside ones taken over, join the port now that this
        // server accepts.
        listeners::start(&listeners)?;
        // Before the listeners move to their workers.
        let upgrade_sockets = upgrade
            .as_ref()
            .map(|_| Offered::duplicates(&listeners, admin.as_ref().map(Admin::listener)))
            .transpose()?;
        // Set when a successor took the sockets over: the admin listener stops at once
        // (the successor answers on it), the rest drains.
        let handed_over = Arc::new(Signal::default());
        let metrics = admin.as_ref().map(|admin| admin.metrics().clone());
        // Counts the accept loops still running (every listener still open).
        let accepting = Arc::new(Tracker::default());
        shared.events.start(workers);
        let worker = |index: usize, listeners: Vec<TcpListener>| Worker {
            index,
            accept_guards: listeners.iter().map(|_| accepting.enter()).collect(),
            listeners,
            shared: shared.clone(),
            pool: pool.clone(),
            tracker: tracker.clone(),
            max_connections,
            metrics: metrics.clone(),
        };
        let own = worker(0, std::mem::take(&mut listeners[0]));
        let stop_workers = Arc::new(Signal::default());
        let mut threads = Vec::with_capacity(workers.saturating_sub(1));
        for (index, listeners) in listeners.into_iter().enumerate().skip(1) {
            let worker = worker(index, listeners);
            let stop = stop_workers.clone();
            let thread = thread::Builder::new()
                .name(format!("switchyard-worker-{index}"))
                .spawn(move || {
                    let executor = Rc::new(LocalExecutor::new());
                    let served = backend::block_on(executor.run(async {
                        worker.serve(&executor).await;
                        stop.wait().await;
                    }));
                    if let Err(error) = served {
                        tracing::error!(%error, "worker stopped");
                    }
                    // Dropping the executor drops the tasks still alive, closing their
                    // sockets.
                });
            match thread {
                Ok(thread) => threads.push(thread),
                Err(error) => {
                    stop_workers.fire();
                    shared.shutdown.fire();
                    return Err(error);
                }
            }
        }
        tracing::debug!(listen = ?local_addrs, workers, "serving");
        let upgrade = upgrade
            .zip(upgrade_sockets)
            .and_then(|(socket, listeners)| {
                socket
                    .serve(listeners, handed_over.clone(), shared.shutdown.clone())
                    .map_err(|error| tracing::warn!(%error, "upgrade socket: cannot serve it"))
                    .ok()
            });

        let executor = Rc::new(LocalExecutor::new());
        let drained = backend::block_on(executor.run(async {
            let coordinate = async {
                shared.shutdown.wait().await;
                if let Some(service) = upgrade {
                    service.stop();
                }
                let deadline = Instant::now() + shared.grace + SHUTDOWN_SLACK;
                // The accept loops end promptly, closing every listener, before this
                // waits for the connections.
                accepting.wait_below(1).await;
                let live = tracker.active();
                // Logged once the listeners are closed (the binary's tests wait for it).
                tracing::info!(connections = live, "shutting down");
                future::or(
                    async {
                        tracker.wait_below(1).await;
                        true
                    },
                    async {
                        Timer::at(deadline).await;
                        false
                    },
                )
                .await
            };
            let serve = async {
                if let Some(admin) = admin {
                    // Weak: the listener's task must not keep its executor alive (the
                    // executor, dropped at the end, drops the task and closes the socket).
                    let spawner = Rc::downgrade(&executor);
                    let handed_over = handed_over.clone();
                    let serve = admin.serve(shared.shutdown.clone(), spawner);
                    executor
                        .spawn(future::or(serve, async move { handed_over.wait().await }))
                        .detach();
                }
                own.serve(&executor).await;
                future::pending::<bool>().await
            };
            future::or(coordinate, serve).await
        }));
        if let Err(error) = &drained {
            // The reactor could not be set up or failed: stop the workers too.
            tracing::error!(%error, "serving failed");
            shared.shutdown.fire();
        }
        if let Ok(false) = drained {
            tracing::warn!(
                connections = tracker.active(),
                "shutdown grace expired, closing the remaining connections"
            );
        }
        stop_workers.fire();
        for thread in threads {
            if thread.join().is_err() {
                tracing::warn!("a worker thread panicked");
            }
        }
        // Dropping the executor drops the tasks still alive, closing their sockets.
        drop(executor);
        drained?;
        tracing::debug!("all connections closed, stopped");
        Ok(())
    }
}

/// What one worker thread serves: its listening sockets.
struct Worker {
    /// Its number, for the events (0: the thread that called `run`).
    index: usize,
    listeners: Vec<TcpListener>,
    /// One per listener, dropped when its accept loop ends.
    accept_guards: Vec<ConnectionGuard>,
    shared: Arc<Shared>,
    pool: PoolConfig,
    tracker: Arc<Tracker>,
    max_connections: usize,
    /// The metrics, when the admin listener is on: the pool counts into them.
    metrics: Option<Arc<Metrics>>,
}

impl Worker {
    /// Accepts on every listener of this worker (one task each, so that a wake-up of
    /// anything else never retries an `accept`), spawning connections on `executor`,
    /// and prunes the worker's upstream pool, until shutdown; every listener is closed
    /// when this returns.
    async fn serve(self, executor: &Rc<LocalExecutor<'static>>) {
        let Worker {
            index,
            listeners,
            accept_guards,
            shared,
            pool,
            tracker,
            max_connections,
            metrics,
        } = self;
        let metrics = metrics.map(|metrics| metrics.worker(index));
        let pool = Rc::new(Pool::with_metrics(pool, metrics));
        executor
            .spawn(prune_pool(pool.clone(), shared.shutdown.clone()))
            .detach();
        let mut loops = Vec::with_capacity(listeners.len());
        for (listener, guard) in listeners.into_iter().zip(accept_guards) {
            let listener = match Io::listener(listener) {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::error!(%error, "cannot register a listener");
                    continue;
                }
            };
            let accept = accept_loop(
                listener,
                shared.clone(),
                pool.clone(),
                tracker.clone(),
                // The task holds the executor it spawns on until the loop ends (at
                // shutdown, before the executor is dropped).
                executor.clone(),
                max_connections,
                index,
            );
            loops.push(executor.spawn(async move {
                accept.await;
                drop(guard);
            }));
        }
        for accept in loops {
            accept.await;
        }
    }
}

fn validate(config: &ServerConfig) -> io::Result<()> {
    let invalid = |message: String| Err(io::Error::new(io::ErrorKind::InvalidInput, message));
    if config.listen.is_empty() {
        return invalid("no listen address".into());
    }
    if config.route_upstream.len() != config.core.routes.len() {
        return invalid(format!(
            "{} routes but {} route-to-upstream entries",
            config.core.routes.len(),
            config.route_upstream.len()
        ));
    }
    for (route, &group) in config.route_upstream.iter().enumerate() {
        if group >= config.upstreams.len() {
            return invalid(format!(
                "route {:?} maps to upstream group {group}, but there are {}",
                config.core.routes[route].prefix,
                config.upstreams.len()
            ));
        }
    }
    if let Some(group) = config.upstreams.iter().find(|g| g.servers.is_empty()) {
        return invalid(format!("upstream group {:?} has no server", group.name));
    }
    if let Some(admin) = config.admin_listen {
        if admin.port() != 0 && config.listen.contains(&admin) {
            return invalid(format!(
                "admin_listen {admin} is also a listen address: the admin endpoints need an address of their own"
            ));
        }
    }
    Ok(())
}

async fn accept_loop(
    listener: Io<TcpListener>,
    shared: Arc<Shared>,
    pool: Rc<Pool>,
    tracker: Arc<Tracker>,
    executor: Rc<LocalExecutor<'static>>,
    max_connections: usize,
    worker: usize,
) {
    let shutdown = shared.shutdown.clone();
    let start_serving = |stream, client_addr, guard| {
        spawn_connection(
            &executor,
            &shared,
            &pool,
            stream,
            client_addr,
            guard,
            worker,
        )
    };
    let mut accepts = 0usize;
    loop {
        if max_connections > 0 && tracker.active() >= max_connections {
            tracing::debug!(max_connections, "connection limit reached, pausing accept");
            let slot = async {
                tracker.wait_below(max_connections).await;
                Some(())
            };
            if future::or(slot, stopped(&shutdown)).await.is_none() {
                break;
            }
        }
        // A listener stays readable until an accept finds its queue empty: without a
        // pause, a burst of connections would keep this task from yielding to the
        // connections already being served: it yields every `ACCEPT_BATCH` accepts.
        accepts += 1;
        if accepts % ACCEPT_BATCH == 0 {
            future::yield_now().await;
        }
        let accept = async { Some(listener.accept().await) };
        match future::or(accept, stopped(&shutdown)).await {
            None => break,
            Some(Ok((stream, client_addr))) => {
                shortage::accepted();
                // A client usually sends its request right behind its handshake: read
                // before waiting for an event.
                let stream = match Io::stream(stream, true) {
                    Ok(stream) => stream,
                    Err(error) => {
                        tracing::warn!(%client_addr, %error, "cannot register a connection");
                        continue;
                    }
                };
                // Another worker may have taken the last slot since the check above:
                // this connection waits, accepted but unserved, for a slot of its own.
                let guard = loop {
                    if let Some(guard) = tracker.try_enter(max_connections) {
                        break Some(guard);
                    }
                    let slot = async {
                        tracker.wait_below(max_connections).await;
                        Some(())
                    };
                    if future::or(slot, stopped(&shutdown)).await.is_none() {
                        break None;
                    }
                };
                let Some(guard) = guard else {
                    // Shutting down: served anyway, as the queue's others are below.
                    let guard = tracker.enter();
                    start_serving(stream, client_addr, guard);
                    break;
                };
                start_serving(stream, client_addr, guard);
            }
            Some(Err(error)) if shortage::out_of_descriptors(&error) => {
                // Idle upstream connections are descriptors this worker can give back
                // at once (a new client may still reuse the newer ones); only with none
                // left does accepting wait for descriptors to be freed.
                let closed = pool.close_oldest(shortage::TRIM_BATCH);
                shortage::accept_failed(&error, closed, closed == 0);
                if closed > 0 {
                    continue;
                }
                let pause = async {
                    Timer::after(ACCEPT_BACKOFF).await;
                    Some(())
                };
                if future::or(pause, stopped(&shutdown)).await.is_none() {
                    break;
                }
            }
            Some(Err(error)) => {
                if is_per_connection(&error) {
                    tracing::debug!(%error, "accept failed");
                    continue;
                }
                tracing::warn!(%error, "accept failed, pausing");
                let pause = async {
                    Timer::after(ACCEPT_BACKOFF).await;
                    Some(())
                };
                if future::or(pause, stopped(&shutdown)).await.is_none() {
                    break;
                }
            }
        }
    }
    // Served over `max_connections` if need be: the alternative is a reset.
    let queued = listeners::take_queued(&listener, |stream, client_addr| {
        start_serving(stream, client_addr, tracker.enter())
    });
    if let Ok(addr) = listener.local_addr() {
        tracing::debug!(%addr, queued, "stopped accepting");
    }
}

/// Serves one accepted connection in a task of its own, counted by `guard`.
fn spawn_connection(
    executor: &LocalExecutor<'static>,
    shared: &Arc<Shared>,
    pool: &Rc<Pool>,
    stream: Io<TcpStream>,
    client_addr: SocketAddr,
    guard: ConnectionGuard,
    worker: usize,
) {
    let shared = shared.clone();
    let pool = pool.clone();
    let task = async move {
        let _guard = guard;
        let context = EventContext::new(worker, client_addr);
        let serve = driver::serve(&shared, &pool, stream, context);
        let served = AssertUnwindSafe(serve).catch_unwind().await;
        if served.is_err() {
            tracing::error!(%client_addr, "connection task panicked");
        }
    };
    executor.spawn(task).detach();
}

/// Errors that concern one failed handshake, not the listener or the process (running
/// out of file descriptors, EMFILE/ENFILE, is not one: see `shortage`).
pub(crate) fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// Closes pooled upstream connections that idled too long, until shutdown; then all.
async fn prune_pool(pool: Rc<Pool>, shutdown: Arc<Signal>) {
    let interval = pool.prune_interval();
    loop {
        let tick = async {
            Timer::after(interval).await;
            true
        };
        let stop = async {
            shutdown.wait().await;
            false
        };
        if !future::or(tick, stop).await {
            pool.clear();
            return;
        }
        pool.prune();
    }
}

/// Completes with `None` once shutdown began (the other arm of a race yields `Some`).
async fn stopped<T>(shutdown: &Signal) -> Option<T> {
    shutdown.wait().await;
    None
}
