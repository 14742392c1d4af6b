//! Binding, the worker threads, and graceful shutdown (each worker's accept loops are
//! `accept.rs`).
//!
//! Every worker thread runs its own executor (driving the reactor itself when it has
//! nothing else to do) and accepts from its own listening socket per address: each
//! address is bound once per worker with `SO_REUSEPORT` (`sockets.rs`, which also takes
//! sockets over from a running process: `handover/`), so the kernel spreads new
//! connections over the workers (Linux does; see `docs/DECISIONS.md`
//! for other systems), and a connection stays on the thread that accepted it, its
//! sockets registered with that thread's reactor (see `backend.rs`). Each worker keeps its own upstream keep-alive pool; only the
//! upstream groups, the connection count and the
//! shutdown signal are shared. The admin listener, when configured, is a task on worker
//! 0's executor with a socket of its own (see `admin/`).
//!
//! Each accept takes the newest configuration generation (`generation.rs`); a reload
//! reaches the workers through an inbox each (`listeners.rs`, served in `worker.rs`):
//! new listening sockets, the servers their pools may keep, and (worker 0) old
//! generations to drain.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::executor::LocalExecutor;
use futures_lite::future;

use crate::admin::{Admin, Status};
use crate::backend::{self, Timer};
use crate::generation::{Generations, ReloadError, ReloadHandle, ReloadReport};
use crate::handover::{Offered, UpgradeSocket};
use crate::health::HealthCheck;
use crate::limits::{self, DescriptorBudget};
use crate::listeners::{Command, Listener, ListenerSet};
use crate::metrics::Metrics;
use crate::signal::{Signal, Tracker};
use crate::sockets;
use crate::tunnels::Registry;
use crate::worker::Worker;
use crate::{EventSink, PoolConfig, ServerConfig};

/// After `shutdown_grace`, how much longer connections may take to finish closing: a
/// WebSocket tunnel sends its Close frames at the end of the grace and waits up to 1 s
/// for the peers' answers, and then what is queued is written.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(2);

/// A bound proxy server, ready to [`run`](Server::run).
#[derive(Debug)]
pub struct Server {
    /// For each worker, one listening socket per address.
    listeners: Vec<Vec<Listener>>,
    /// For each worker, what reloads send it.
    inboxes: Vec<async_channel::Receiver<Command>>,
    generations: Arc<Generations>,
    pool: PoolConfig,
    workers: usize,
    max_connections: usize,
    /// Open client connections: counted by the accept loops, read by the metrics.
    tracker: Arc<Tracker>,
    /// The admin listener and the metrics it serves, when `admin_listen` is set.
    admin: Option<Admin>,
    /// The upgrade socket, when `upgrade_socket` is set.
    upgrade: Option<UpgradeSocket>,
    /// What a successor taking the listeners over gets, with the upgrade socket.
    offered: Option<Offered>,
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
            .and_then(|addr| sockets::take(&mut inherited, addr));
        let (listener_set, listeners) =
            ListenerSet::bind(&config.listen, workers, inherited, upgrade.is_some())?;
        let tracker = Arc::new(Tracker::default());
        let admin = match config.admin_listen {
            Some(addr) => {
                let metrics = Arc::new(Metrics::new(&config, workers, tracker.clone()));
                let tunnels = Arc::new(Registry::new(workers));
                // Each generation shows its upstream groups there once built.
                let status = Arc::new(Status::new(metrics, tunnels, Arc::new([])));
                Some(match admin_inherited {
                    Some(listener) => Admin::on(listener, status)?,
                    None => Admin::bind(addr, status)?,
                })
            }
            None => None,
        };
        // Duplicates of every listening socket, taken before any is registered; a
        // reload that changes the listeners replaces them.
        let offered = match &upgrade {
            Some(_) => {
                let admin = admin.as_ref().map(|admin| admin.listener().try_clone());
                let admin = admin.transpose()?.map(std::os::fd::OwnedFd::from);
                Some((Offered::new(Vec::new()), admin))
            }
            None => None,
        };
        // Said once the listeners are bound: a port in use is the error to report.
        limits::warn_if_short(&budget);
        let (senders, inboxes) = (0..workers).map(|_| async_channel::unbounded()).unzip();
        // Each generation's metrics follow the configured sink, as a pair of sinks does.
        let metrics = admin.as_ref().map(|admin| admin.metrics().clone());
        let generations = Generations::first(
            &config,
            listener_set,
            senders,
            config.events.clone(),
            metrics,
            admin.as_ref().map(|admin| admin.status().clone()),
            offered,
        )?;
        Ok(Server {
            listeners,
            inboxes,
            offered: generations.offered(),
            generations: Arc::new(generations),
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
        self.generations.local_addrs()
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
            signal: self.generations.stopping.clone(),
        }
    }

    /// A handle that reloads the configuration while the server runs (see
    /// [`ReloadHandle::reload`]).
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle {
            generations: self.generations.clone(),
        }
    }

    /// Publishes `config` as the next configuration generation: see
    /// [`ReloadHandle::reload`], which does the same from any thread once `run` holds
    /// the server.
    pub fn reload(&self, config: ServerConfig) -> Result<ReloadReport, ReloadError> {
        self.generations.reload(config)
    }

    /// Serves on `workers` threads (this one included) until a shutdown started with a
    /// [`ShutdownHandle`] has completed.
    pub fn run(self) -> io::Result<()> {
        let Server {
            mut listeners,
            inboxes,
            generations,
            pool,
            workers,
            max_connections,
            tracker,
            admin,
            upgrade,
            offered,
        } = self;
        // Sockets bound only, beside ones taken over, join the port now that this
        // server accepts.
        sockets::start(listeners.iter().flatten().map(|listener| &listener.socket))?;
        // Set when a successor took the sockets over: the admin listener stops at once
        // (the successor answers on it), the rest drains.
        let handed_over = Arc::new(Signal::default());
        let upgrade = upgrade.zip(offered).and_then(|(socket, offered)| {
            socket
                .serve(offered, handed_over.clone(), generations.stopping.clone())
                .map_err(|error| tracing::warn!(%error, "upgrade socket: cannot serve it"))
                .ok()
        });
        let metrics = admin.as_ref().map(|admin| admin.metrics().clone());
        // Counts the accept loops still running (every listener still open).
        let accepting = Arc::new(Tracker::default());
        let stopping = generations.stopping.clone();
        generations.current().events.start(workers);
        let mut inboxes = inboxes.into_iter();
        let mut worker = |index: usize, listeners: Vec<Listener>| Worker {
            index,
            // Entered now, so that shutdown cannot find no accept loop running before a
            // worker thread has started its own.
            accept_guards: listeners.iter().map(|_| accepting.enter()).collect(),
            inbox_guard: accepting.enter(),
            listeners,
            inbox: inboxes
                .next()
                .unwrap_or_else(|| async_channel::unbounded().1),
            accepting: accepting.clone(),
            generations: generations.clone(),
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
                    stopping.fire();
                    generations.drain_all();
                    return Err(error);
                }
            }
        }
        crate::resolve::spawn_refresher(generations.clone())?;
        tracing::debug!(listen = ?generations.local_addrs(), workers, "serving");

        let executor = Rc::new(LocalExecutor::new());
        let drained = backend::block_on(executor.run(async {
            let coordinate = async {
                stopping.wait().await;
                if let Some(service) = upgrade {
                    service.stop();
                }
                generations.drain_all();
                let grace = generations.current().grace;
                let deadline = Instant::now() + grace + SHUTDOWN_SLACK;
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
                    let serve = admin.serve(stopping.clone(), spawner);
                    executor
                        .spawn(async move {
                            let stopped = future::or(
                                async {
                                    serve.await;
                                    false
                                },
                                async {
                                    handed_over.wait().await;
                                    true
                                },
                            )
                            .await;
                            // Only now is the listener closed here: from this line on,
                            // every admin connection reaches the successor.
                            if stopped {
                                tracing::info!(
                                    "upgrade: admin listener closed; the successor answers on it"
                                );
                            }
                        })
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
            stopping.fire();
            generations.drain_all();
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

pub(crate) fn validate(config: &ServerConfig) -> io::Result<()> {
    let invalid = |message: String| Err(io::Error::new(io::ErrorKind::InvalidInput, message));
    if config.listen.is_empty() {
        return invalid("no listen address".into());
    }
    for tls in &config.tls {
        if !config.listen.contains(&tls.addr) {
            return invalid(format!(
                "TLS listener {} is not one of the listen addresses",
                tls.addr
            ));
        }
        if tls.certificates.is_empty() {
            return invalid(format!("TLS listener {} has no certificate", tls.addr));
        }
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
    for group in &config.upstreams {
        if group.weights.len() > group.servers.len() {
            return invalid(format!(
                "upstream group {:?} has {} weights for {} servers",
                group.name,
                group.weights.len(),
                group.servers.len()
            ));
        }
        if let Some(weight) = group.weights.iter().find(|w| !(1..=1000).contains(*w)) {
            return invalid(format!(
                "upstream group {:?}: weight {weight} is out of range 1 to 1000",
                group.name
            ));
        }
        if let Some(problem) = group.health_check.as_ref().and_then(HealthCheck::problem) {
            return invalid(format!(
                "upstream group {:?}: health_check: {problem}",
                group.name
            ));
        }
    }
    let proxy = &config.proxy_protocol;
    if let Some(addr) = proxy.accept_on.iter().find(|a| !config.listen.contains(a)) {
        return invalid(format!(
            "the PROXY protocol is required on {addr}, which is not a listen address"
        ));
    }
    if let Some(name) = proxy
        .send_to
        .iter()
        .find(|name| !config.upstreams.iter().any(|g| &&g.name == name))
    {
        return invalid(format!(
            "PROXY headers are to be sent to upstream group {name:?}, which does not exist"
        ));
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
