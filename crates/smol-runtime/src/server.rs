//! Listeners, the accept loops, executor threads and graceful shutdown.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use async_executor::Executor;
use async_io::{Async, Timer};
use futures_lite::{future, FutureExt};

use crate::driver::{self, Shared};
use crate::signal::{Signal, Tracker};
use crate::upstream::{Group, Pool};
use crate::ServerConfig;

/// How long to pause accepting after the process ran out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// After `shutdown_grace`, how much longer connections may take to finish closing.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(1);

/// A bound proxy server, ready to [`run`](Server::run).
#[derive(Debug)]
pub struct Server {
    listeners: Vec<Async<TcpListener>>,
    local_addrs: Vec<SocketAddr>,
    shared: Arc<Shared>,
    workers: usize,
    max_connections: usize,
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
    /// or `shutdown_grace` plus one second has passed. Calling it again does nothing.
    pub fn shutdown(&self) {
        self.signal.fire();
    }
}

impl Server {
    /// Checks `config` and binds every listener now, so a port already in use is reported
    /// here, naming the address.
    ///
    /// Fails with [`io::ErrorKind::InvalidInput`] when there is no listener, a route maps
    /// to no upstream group (`route_upstream` must have one entry per route), or a group
    /// has no server.
    pub fn bind(config: ServerConfig) -> io::Result<Server> {
        validate(&config)?;
        let mut listeners = Vec::with_capacity(config.listen.len());
        let mut local_addrs = Vec::with_capacity(config.listen.len());
        for &addr in &config.listen {
            let listener = Async::<TcpListener>::bind(addr)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
            local_addrs.push(listener.get_ref().local_addr()?);
            listeners.push(listener);
        }
        let workers = match config.workers {
            0 => thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let shared = Shared {
            core: Arc::new(config.core),
            groups: config
                .upstreams
                .into_iter()
                .map(|group| Group::new(group.name, group.servers))
                .collect(),
            route_upstream: config.route_upstream,
            pool: Pool::new(config.pool),
            shutdown: Arc::new(Signal::default()),
            grace: config.shutdown_grace,
        };
        Ok(Server {
            listeners,
            local_addrs,
            shared: Arc::new(shared),
            workers,
            max_connections: config.max_connections,
        })
    }

    /// The addresses actually bound, in the order of `listen` (a port 0 is resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.local_addrs.clone()
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
            listeners,
            local_addrs,
            shared,
            workers,
            max_connections,
        } = self;
        let executor = Arc::new(Executor::new());
        let stop_workers = Arc::new(Signal::default());
        let mut threads = Vec::with_capacity(workers.saturating_sub(1));
        for index in 1..workers {
            let executor = executor.clone();
            let stop = stop_workers.clone();
            let thread = thread::Builder::new()
                .name(format!("switchyard-worker-{index}"))
                .spawn(move || async_io::block_on(executor.run(stop.wait())));
            match thread {
                Ok(thread) => threads.push(thread),
                Err(error) => {
                    stop_workers.fire();
                    return Err(error);
                }
            }
        }
        tracing::debug!(listen = ?local_addrs, workers, "serving");

        let tracker = Arc::new(Tracker::default());
        let mut background = Vec::with_capacity(listeners.len() + 1);
        for listener in listeners {
            let accept = accept_loop(
                listener,
                shared.clone(),
                tracker.clone(),
                executor.clone(),
                max_connections,
            );
            background.push(executor.spawn(accept));
        }
        background.push(executor.spawn(prune_pool(shared.clone())));

        let drained = async_io::block_on(executor.run(async {
            shared.shutdown.wait().await;
            let deadline = Instant::now() + shared.grace + SHUTDOWN_SLACK;
            // The accept loops end promptly; awaiting them closes every listener
            // before this waits for the connections.
            for task in background {
                task.await;
            }
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
        }));
        if !drained {
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
        shared.pool.clear();
        tracing::debug!("all connections closed, stopped");
        Ok(())
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
    Ok(())
}

async fn accept_loop(
    listener: Async<TcpListener>,
    shared: Arc<Shared>,
    tracker: Arc<Tracker>,
    executor: Arc<Executor<'static>>,
    max_connections: usize,
) {
    let shutdown = shared.shutdown.clone();
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
        let accept = async { Some(listener.accept().await) };
        match future::or(accept, stopped(&shutdown)).await {
            None => break,
            Some(Ok((stream, client_addr))) => {
                if let Err(error) = stream.get_ref().set_nodelay(true) {
                    tracing::debug!(%client_addr, %error, "setting TCP_NODELAY failed");
                }
                let guard = tracker.enter();
                let shared = shared.clone();
                let task = async move {
                    let _guard = guard;
                    let served = AssertUnwindSafe(driver::serve(&shared, stream, client_addr))
                        .catch_unwind()
                        .await;
                    if served.is_err() {
                        tracing::error!(%client_addr, "connection task panicked");
                    }
                };
                executor.spawn(task).detach();
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
    if let Ok(addr) = listener.get_ref().local_addr() {
        tracing::debug!(%addr, "stopped accepting");
    }
}

/// Errors that concern one failed handshake, not the listener or the process (running
/// out of file descriptors, EMFILE/ENFILE, is not one: it gets a pause).
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// Closes pooled upstream connections that idled too long, until shutdown.
async fn prune_pool(shared: Arc<Shared>) {
    let interval = shared.pool.prune_interval();
    loop {
        let tick = async {
            Timer::after(interval).await;
            true
        };
        let stop = async {
            shared.shutdown.wait().await;
            false
        };
        if !future::or(tick, stop).await {
            return;
        }
        shared.pool.prune();
    }
}

/// Completes with `None` once shutdown began (the other arm of a race yields `Some`).
async fn stopped<T>(shutdown: &Signal) -> Option<T> {
    shutdown.wait().await;
    None
}
