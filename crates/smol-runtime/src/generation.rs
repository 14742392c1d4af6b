//! Configuration generations: a reload validates a whole new [`ServerConfig`], then
//! publishes it as a new generation for new connections, while every open connection
//! finishes under the generation it was accepted under.
//!
//! A generation is the driver's [`Shared`]: the core's configuration (routes, deadlines,
//! limits), the upstream groups and the route → group mapping. The newest sits in an
//! `ArcSwap`, which each accept loads once per connection; a connection holds its
//! generation's `Arc` until it ends, so an old generation lives exactly as long as its
//! connections. Upstream groups of the same name carry their servers' failure marks
//! over; the workers' pools close the idle connections of servers no longer used.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::admin::Status;
use crate::driver::Shared;
use crate::handover::Offered;
use crate::listeners::{Command, ListenerSet};
use crate::metrics::Metrics;
use crate::signal::Signal;
use crate::tls::TlsByAddress;
use crate::upstream::Group;
use crate::{EventSink, PoolConfig, ServerConfig};

/// The settings a reload cannot change (they shape the threads, sockets and sinks made
/// at bind), as bound.
#[derive(Debug, Clone, PartialEq)]
struct Fixed {
    workers: usize,
    shutdown_grace: Duration,
    max_connections: usize,
    pool: PoolConfig,
    admin_listen: Option<SocketAddr>,
    upgrade_socket: Option<std::path::PathBuf>,
}

impl Fixed {
    fn of(config: &ServerConfig) -> Fixed {
        Fixed {
            workers: config.workers,
            shutdown_grace: config.shutdown_grace,
            max_connections: config.max_connections,
            pool: config.pool.clone(),
            admin_listen: config.admin_listen,
            upgrade_socket: config.upgrade_socket.clone(),
        }
    }

    /// The names of the settings that differ.
    fn changed(&self, other: &Fixed) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if self.workers != other.workers {
            changed.push("workers");
        }
        if self.shutdown_grace != other.shutdown_grace {
            changed.push("shutdown_grace");
        }
        if self.max_connections != other.max_connections {
            changed.push("max_connections");
        }
        if self.pool != other.pool {
            changed.push("pool");
        }
        if self.admin_listen != other.admin_listen {
            changed.push("admin_listen");
        }
        if self.upgrade_socket != other.upgrade_socket {
            changed.push("upgrade_socket");
        }
        changed
    }
}

/// What a reload changes, locked while one runs.
#[derive(Debug)]
struct Reloadable {
    listeners: ListenerSet,
    /// Older generations that may still have connections, drained at shutdown.
    retired: Vec<Weak<Shared>>,
}

/// The server's generations: the newest, the older ones still alive, and what a reload
/// needs to publish a new one.
#[derive(Debug)]
pub(crate) struct Generations {
    current: ArcSwap<Shared>,
    reloadable: Mutex<Reloadable>,
    /// One per worker: how a reload hands it sockets and pool changes.
    inboxes: Vec<async_channel::Sender<Command>>,
    /// The server's shutdown.
    pub(crate) stopping: Arc<Signal>,
    fixed: Fixed,
    /// The sink given at bind (a reloaded configuration's `events` is not used).
    events: Arc<dyn EventSink>,
    metrics: Option<Arc<Metrics>>,
    /// What `/status.json` shows, when the admin listener is on: every generation feeds
    /// its live tunnel list, and it shows the newest generation's upstream groups.
    status: Option<Arc<Status>>,
    /// With an upgrade socket: the sockets offered to a successor, and a duplicate of
    /// the admin listener's (which a reload does not change).
    offered: Option<(Offered, Option<OwnedFd>)>,
    /// The configuration of the newest generation, which the resolver of upstream
    /// names starts from.
    config: Mutex<Arc<ServerConfig>>,
}

/// Builds generation `number` from `config`; groups of the same name as in `previous`
/// keep their servers' failure marks.
fn build(
    config: &ServerConfig,
    number: u64,
    previous: Option<&Shared>,
    events: Arc<dyn EventSink>,
    stopping: Arc<Signal>,
    grace: Duration,
    status: Option<&Arc<Status>>,
) -> Shared {
    let groups: Arc<[Group]> = config
        .upstreams
        .iter()
        .map(|group| {
            let before = previous.and_then(|p| p.groups.iter().find(|g| g.name == group.name));
            Group::carrying(group, before)
                .with_proxy_header(config.proxy_protocol.send_to.contains(&group.name))
        })
        .collect();
    if let Some(status) = status {
        status.set_upstreams(groups.clone());
        status.metrics().set_upstreams(groups.clone());
    }
    Shared {
        core: Arc::new(config.core.clone()),
        groups,
        route_upstream: config.route_upstream.clone(),
        shutdown: Arc::new(Signal::default()),
        stopping,
        grace,
        events,
        generation: number,
        tunnels: status.map(|status| status.tunnels().clone()),
        accept_proxy: Vec::new(),
        tls: Default::default(),
    }
}

impl Generations {
    /// Generation 1, serving `config` on `listeners`; `inboxes` are the workers'.
    pub(crate) fn first(
        config: &ServerConfig,
        listeners: ListenerSet,
        inboxes: Vec<async_channel::Sender<Command>>,
        events: Arc<dyn EventSink>,
        metrics: Option<Arc<Metrics>>,
        status: Option<Arc<Status>>,
        offered: Option<(Offered, Option<OwnedFd>)>,
    ) -> io::Result<Generations> {
        let stopping = Arc::new(Signal::default());
        let sink = generation_sink(&events, metrics.as_deref().map(Metrics::first_generation));
        let first = build(
            config,
            1,
            None,
            sink,
            stopping.clone(),
            config.shutdown_grace,
            status.as_ref(),
        );
        let mut first = first;
        first.accept_proxy = listeners.bound_for(&config.proxy_protocol.accept_on, None);
        first.tls = TlsByAddress::new(&config.tls, |addr| listeners.local_of(None, addr));
        let generations = Generations {
            current: ArcSwap::new(Arc::new(first)),
            reloadable: Mutex::new(Reloadable {
                listeners,
                retired: Vec::new(),
            }),
            inboxes,
            stopping,
            fixed: Fixed::of(config),
            events,
            metrics,
            status,
            offered,
            config: Mutex::new(Arc::new(config.clone())),
        };
        generations.offer(&generations.lock().listeners)?;
        Ok(generations)
    }

    /// The set of sockets offered to a successor, when there is an upgrade socket.
    pub(crate) fn offered(&self) -> Option<Offered> {
        self.offered.as_ref().map(|(offered, _)| offered.clone())
    }

    /// Offers a successor the sockets of `listeners` (and the admin listener's), when
    /// there is an upgrade socket: what a reload changes is offered from then on, and a
    /// removed listener is not kept open by a duplicate.
    fn offer(&self, listeners: &ListenerSet) -> io::Result<()> {
        let Some((offered, admin)) = &self.offered else {
            return Ok(());
        };
        let mut sockets = listeners.duplicates()?;
        if let Some(admin) = admin {
            sockets.push(admin.try_clone()?);
        }
        offered.replace(sockets);
        Ok(())
    }

    /// The generation new connections are accepted under.
    pub(crate) fn current(&self) -> Arc<Shared> {
        self.current.load_full()
    }

    fn lock(&self) -> MutexGuard<'_, Reloadable> {
        self.reloadable
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn local_addrs(&self) -> Vec<SocketAddr> {
        self.lock().listeners.local_addrs()
    }

    /// Tells the connections of every generation to drain (the server shuts down).
    pub(crate) fn drain_all(&self) {
        let reloadable = self.lock();
        self.current.load().shutdown.fire();
        for generation in reloadable.retired.iter().filter_map(Weak::upgrade) {
            generation.shutdown.fire();
        }
    }

    /// The configuration of the newest generation.
    pub(crate) fn config(&self) -> Option<Arc<ServerConfig>> {
        let config = self.config.lock().ok()?;
        Some(config.clone())
    }

    /// Publishes `next`, the newest configuration with its upstream names resolved again
    /// ([`crate::resolve`]), unless a reload published another one since it was read
    /// (that one resolved its names itself).
    pub(crate) fn refresh(
        &self,
        based_on: &Arc<ServerConfig>,
        next: ServerConfig,
    ) -> Result<(), ReloadError> {
        let report = self.publish(next, Some(based_on))?;
        tracing::info!(
            generation = report.generation,
            "upstream names resolved to new addresses: new generation published"
        );
        Ok(())
    }

    /// Validates `config` and publishes it as the next generation.
    pub(crate) fn reload(&self, config: ServerConfig) -> Result<ReloadReport, ReloadError> {
        let result = self.publish(config, None);
        match &result {
            Ok(report) => {
                tracing::info!("{report}");
                if !report.needs_restart.is_empty() {
                    tracing::warn!(
                        "reload: {} changed, which takes effect only after a restart",
                        report.needs_restart.join(", ")
                    );
                }
            }
            Err(_) => self.count_failure(),
        }
        result
    }

    /// Counts a reload refused before [`Generations::reload`] (an unreadable file).
    pub(crate) fn count_failure(&self) {
        if let Some(metrics) = &self.metrics {
            metrics.reload_failed();
        }
    }

    fn publish(
        &self,
        config: ServerConfig,
        based_on: Option<&Arc<ServerConfig>>,
    ) -> Result<ReloadReport, ReloadError> {
        let mut reloadable = self.lock();
        if self.stopping.is_set() {
            return Err(ReloadError::ShuttingDown);
        }
        if let Some(based_on) = based_on {
            let newest = self
                .config()
                .is_some_and(|newest| Arc::ptr_eq(&newest, based_on));
            if !newest {
                return Err(ReloadError::Outdated);
            }
        }
        crate::server::validate(&config).map_err(|e| ReloadError::Invalid(e.to_string()))?;
        let prepared = reloadable
            .listeners
            .prepare(&config.listen)
            .map_err(ReloadError::Bind)?;

        let previous = self.current.load_full();
        let number = previous.generation + 1;
        let counts = self.metrics.as_ref().map(|m| m.publish(&config, number));
        let sink = generation_sink(&self.events, counts);
        let mut next = build(
            &config,
            number,
            Some(&previous),
            sink,
            self.stopping.clone(),
            previous.grace,
            self.status.as_ref(),
        );
        next.accept_proxy = reloadable
            .listeners
            .bound_for(&config.proxy_protocol.accept_on, Some(&prepared));
        next.tls = TlsByAddress::new(&config.tls, |addr| {
            reloadable.listeners.local_of(Some(&prepared), addr)
        });
        let servers: HashSet<SocketAddr> = next.groups.iter().flat_map(Group::addrs).collect();
        let servers_removed: Vec<SocketAddr> = {
            let mut gone: Vec<SocketAddr> = previous
                .groups
                .iter()
                .flat_map(Group::addrs)
                .filter(|server| !servers.contains(server))
                .collect();
            gone.sort_unstable();
            gone.dedup();
            gone
        };
        self.current.store(Arc::new(next));
        if let Ok(mut newest) = self.config.lock() {
            *newest = Arc::new(config.clone());
        }
        // From here on every accept takes the new generation.
        let applied = reloadable.listeners.apply(prepared, &self.inboxes);
        if let Err(error) = self.offer(&reloadable.listeners) {
            tracing::warn!(%error, "upgrade socket: cannot offer the new listeners");
        }
        for inbox in &self.inboxes {
            let _ = inbox.try_send(Command::Servers(servers.clone()));
        }
        if let Some(first) = self.inboxes.first() {
            let _ = first.try_send(Command::Health(self.current.load().groups.clone()));
        }
        if let (Some(after), Some(first)) = (config.drain_timeout, self.inboxes.first()) {
            let _ = first.try_send(Command::Retire {
                generation: Arc::downgrade(&previous),
                after,
            });
        }
        reloadable.retired.retain(|old| old.strong_count() > 0);
        reloadable.retired.push(Arc::downgrade(&previous));
        // Dropped with the lock held: a shutdown's `drain_all` cannot miss it.
        drop(previous);
        drop(reloadable);
        Ok(ReloadReport {
            generation: number,
            routes: config.core.routes.len(),
            upstreams: config.upstreams.len(),
            listeners_added: applied.added,
            listeners_removed: applied.removed,
            servers_removed,
            drain_timeout: config.drain_timeout,
            needs_restart: self.fixed.changed(&Fixed::of(&config)),
        })
    }
}

/// The event sink of a generation's connections: the server's sink, then (with the
/// admin listener) the generation's metrics.
fn generation_sink(
    events: &Arc<dyn EventSink>,
    counts: Option<crate::metrics::GenerationMetrics>,
) -> Arc<dyn EventSink> {
    match counts {
        Some(counts) => Arc::new((events.clone(), counts)),
        None => events.clone(),
    }
}

/// Reloads a running [`Server`](crate::Server)'s configuration from any thread (a
/// signal handler's, a test's); cheap to clone. Taken with
/// [`Server::reload_handle`](crate::Server::reload_handle) before [`run`](crate::Server::run).
#[derive(Debug, Clone)]
pub struct ReloadHandle {
    pub(crate) generations: Arc<Generations>,
}

impl ReloadHandle {
    /// Validates `config` completely and, if it is valid and its new listen addresses
    /// can be bound, publishes it as a new generation: new connections use its routes,
    /// upstream groups, deadlines and limits; open connections finish under the
    /// generation they started with. Listeners whose address stays are kept; new ones
    /// accept at once (the sockets are bound before this returns); removed ones stop
    /// accepting shortly after, on each worker. Upstream groups of the same name keep
    /// their servers' failure marks; idle pooled connections to servers no group names
    /// any more are closed. With `config.drain_timeout` set, the connections of the
    /// generation replaced are drained once it has passed (tunnels get Close 1001,
    /// requests finish).
    ///
    /// The server's event sink, `workers`, `shutdown_grace`, `max_connections`, `pool`
    /// and `admin_listen` are those of [`Server::bind`](crate::Server::bind): a change
    /// of the last five is named in [`ReloadReport::needs_restart`].
    ///
    /// Logs one line (INFO) for a published generation; an error changes nothing and is
    /// the caller's to report. Both are counted in `switchyard_config_reloads_total`.
    ///
    /// # Examples
    ///
    /// ```
    /// use switchyard_smol::{Server, ServerConfig};
    ///
    /// let upstream = "127.0.0.1:9000".parse().unwrap();
    /// let server = Server::bind(ServerConfig::simple("127.0.0.1:0".parse().unwrap(), upstream))?;
    /// let reload = server.reload_handle();
    /// let mut next = ServerConfig::simple("127.0.0.1:0".parse().unwrap(), upstream);
    /// next.upstreams[0].servers = vec!["127.0.0.1:9001".parse().unwrap()];
    /// let report = reload.reload(next).expect("a valid configuration");
    /// assert_eq!(report.generation, 2);
    /// assert_eq!(report.servers_removed, [upstream]);
    /// // An invalid one changes nothing.
    /// let mut broken = ServerConfig::simple("127.0.0.1:0".parse().unwrap(), upstream);
    /// broken.route_upstream = vec![7];
    /// assert!(reload.reload(broken).is_err());
    /// assert_eq!(reload.generation(), 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn reload(&self, config: ServerConfig) -> Result<ReloadReport, ReloadError> {
        self.generations.reload(config)
    }

    /// Counts a reload the caller refused itself before calling [`ReloadHandle::reload`]
    /// (say, a config file that does not parse) in
    /// `switchyard_config_reloads_total{result="failure"}`.
    pub fn count_failure(&self) {
        self.generations.count_failure();
    }

    /// The generation new connections are accepted under (1: the configuration bound).
    pub fn generation(&self) -> u64 {
        self.generations.current.load().generation
    }

    /// The addresses listened on now (a port 0 resolved), in the order configured.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.generations.local_addrs()
    }
}

/// What a successful reload published.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadReport {
    /// The new generation's number (the configuration bound is 1).
    pub generation: u64,
    /// Its routes.
    pub routes: usize,
    /// Its upstream groups.
    pub upstreams: usize,
    /// Addresses bound by this reload (a port 0 resolved).
    pub listeners_added: Vec<SocketAddr>,
    /// Addresses that stop accepting.
    pub listeners_removed: Vec<SocketAddr>,
    /// Upstream servers no group uses any more (their idle pooled connections close).
    pub servers_removed: Vec<SocketAddr>,
    /// How long the replaced generation's connections may live on; `None`: until they
    /// end.
    pub drain_timeout: Option<Duration>,
    /// Settings that differ from the bound ones and take effect only after a restart.
    pub needs_restart: Vec<&'static str>,
}

fn addrs(list: &[SocketAddr]) -> String {
    if list.is_empty() {
        return "none".to_string();
    }
    let text: Vec<String> = list.iter().map(ToString::to_string).collect();
    text.join(" ")
}

/// The log line: `configuration reloaded: generation 2, 3 routes, 2 upstreams,
/// listeners added 127.0.0.1:8081, removed none`.
impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "configuration reloaded: generation {}, {} routes, {} upstreams, listeners added {}, removed {}",
            self.generation,
            self.routes,
            self.upstreams,
            addrs(&self.listeners_added),
            addrs(&self.listeners_removed)
        )
    }
}

/// Why a reload changed nothing.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReloadError {
    /// The configuration is invalid (the message says why, as [`Server::bind`]'s
    /// `InvalidInput` would).
    ///
    /// [`Server::bind`]: crate::Server::bind
    Invalid(String),
    /// A new listen address could not be bound (the error names it).
    Bind(io::Error),
    /// The server is shutting down.
    ShuttingDown,
    /// Upstream names resolved again for a configuration that a reload has replaced
    /// since (the reload resolved its own); nothing is published.
    Outdated,
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadError::Invalid(message) => write!(f, "invalid configuration: {message}"),
            ReloadError::Bind(error) => error.fmt(f),
            ReloadError::ShuttingDown => f.write_str("the server is shutting down"),
            ReloadError::Outdated => {
                f.write_str("a reload replaced the configuration the names were resolved for")
            }
        }
    }
}

impl std::error::Error for ReloadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReloadError::Bind(error) => Some(error),
            _ => None,
        }
    }
}
