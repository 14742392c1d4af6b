//! One worker thread's serving: its accept loops (one task per listening socket), its
//! upstream pool and the pruning of it, and what reloads send it through its inbox (new
//! listening sockets, the servers its pool may keep, old generations to drain).

use std::rc::Rc;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::executor::LocalExecutor;
use futures_lite::future;

use crate::accept::accept_loop;
use crate::backend::{Io, Timer};
use crate::driver::Shared;
use crate::generation::Generations;
use crate::listeners::{Command, Listener};
use crate::metrics::Metrics;
use crate::signal::{ConnectionGuard, Signal, Tracker};
use crate::upstream::Pool;
use crate::PoolConfig;

/// What one worker thread serves: its listening sockets, and those reloads add.
pub(crate) struct Worker {
    /// Its number, for the events (0: the thread that called `run`).
    pub(crate) index: usize,
    pub(crate) listeners: Vec<Listener>,
    /// One per listener, dropped when its accept loop ends.
    pub(crate) accept_guards: Vec<ConnectionGuard>,
    pub(crate) inbox: async_channel::Receiver<Command>,
    /// Held until the inbox is closed and emptied (a socket waiting in it is closed).
    pub(crate) inbox_guard: ConnectionGuard,
    /// Counts the accept loops running (each holds a guard until it ends).
    pub(crate) accepting: Arc<Tracker>,
    pub(crate) generations: Arc<Generations>,
    pub(crate) pool: PoolConfig,
    pub(crate) tracker: Arc<Tracker>,
    pub(crate) max_connections: usize,
    /// The metrics, when the admin listener is on: the pool counts into them.
    pub(crate) metrics: Option<Arc<Metrics>>,
}

impl Worker {
    /// Accepts on every listener of this worker (one task each, so that a wake-up of
    /// anything else never retries an `accept`), spawning connections on `executor`,
    /// and prunes the worker's upstream pool, until shutdown; every listener is closed
    /// when this returns.
    pub(crate) async fn serve(self, executor: &Rc<LocalExecutor>) {
        let Worker {
            index,
            listeners,
            accept_guards,
            inbox,
            inbox_guard,
            accepting,
            generations,
            pool,
            tracker,
            max_connections,
            metrics,
        } = self;
        let stopping = generations.stopping.clone();
        let metrics = metrics.map(|metrics| metrics.worker(index));
        let pool = Rc::new(Pool::with_metrics(pool, metrics));
        executor
            .spawn(prune_pool(pool.clone(), stopping.clone()))
            .detach();
        // Worker 0 runs the health checks (reloads send it the groups to check).
        let mut checks = crate::health::Checks::default();
        if index == 0 {
            checks.start(&generations.current().groups, executor, &stopping);
        }
        let accept_on = |listener: Listener, guard: ConnectionGuard| {
            let Listener { socket, stop } = listener;
            let socket = match Io::listener(socket) {
                Ok(socket) => socket,
                Err(error) => {
                    tracing::error!(%error, "cannot register a listener");
                    return None;
                }
            };
            let accept = accept_loop(
                socket,
                Stops {
                    server: stopping.clone(),
                    listener: stop,
                },
                generations.clone(),
                pool.clone(),
                tracker.clone(),
                // The task holds the executor it spawns on until the loop ends (at
                // shutdown, before the executor is dropped).
                executor.clone(),
                max_connections,
                index,
            );
            Some(executor.spawn(async move {
                accept.await;
                drop(guard);
            }))
        };
        let mut loops: Vec<_> = listeners
            .into_iter()
            .zip(accept_guards)
            .filter_map(|(listener, guard)| accept_on(listener, guard))
            .collect();
        // What reloads send, until shutdown.
        loop {
            let next = async { Some(inbox.recv().await.ok()) };
            let Some(command) = future::or(next, stopped(&stopping)).await else {
                break;
            };
            match command {
                Some(Command::Listen(listener)) => {
                    loops.extend(accept_on(listener, accepting.enter()));
                }
                Some(Command::Servers(servers)) => pool.retain_servers(servers),
                Some(Command::Health(groups)) => checks.start(&groups, executor, &stopping),
                Some(Command::Retire { generation, after }) => {
                    executor
                        .spawn(retire(generation, after, stopping.clone()))
                        .detach();
                }
                // Every sender is gone: no reload can come.
                None => stopping.wait().await,
            }
        }
        // Sockets of a reload that came too late close here.
        inbox.close();
        while inbox.try_recv().is_ok() {}
        drop(inbox_guard);
        for accept in loops {
            accept.await;
        }
    }
}

/// Drains the connections of an old `generation` once `after` has passed (unless the
/// server shuts down first, which drains them itself, or they have all ended).
async fn retire(generation: Weak<Shared>, after: Duration, stopping: Arc<Signal>) {
    let expired = async {
        Timer::after(after).await;
        true
    };
    let stopped = async {
        stopping.wait().await;
        false
    };
    if !future::or(expired, stopped).await {
        return;
    }
    if let Some(generation) = generation.upgrade() {
        // Each of its connections holds one reference; `generation` is the other.
        let connections = Arc::strong_count(&generation) - 1;
        tracing::info!(
            generation = generation.generation,
            connections,
            "drain_timeout passed: draining the connections of an old configuration generation"
        );
        generation.shutdown.fire();
    }
}

/// What stops an accept loop: the server's shutdown, or a reload removing its address.
pub(crate) struct Stops {
    pub(crate) server: Arc<Signal>,
    pub(crate) listener: Arc<Signal>,
}

impl Stops {
    /// Completes with `None` once either fired (the other arm of a race yields `Some`).
    pub(crate) async fn stopped<T>(&self) -> Option<T> {
        future::or(self.server.wait(), self.listener.wait()).await;
        None
    }
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
