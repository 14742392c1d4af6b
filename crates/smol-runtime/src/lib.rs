//! switchyard-smol drives real sockets through the sans-IO
//! [`switchyard_core::Connection`], on smol's tasks (`async-task`, an executor per
//! worker thread: `executor.rs`) and `futures-lite`. On Linux each worker thread has a reactor of its own (an
//! edge-triggered epoll) and bulk tunnel data moves with `splice(2)`; on every other
//! system, and on Linux with the cargo feature `portable`, the same code runs on
//! async-io (smol's reactor) and tunnels copy. The feature exists to compare the two and
//! to test the portable path where it is not the default.
//!
//! Each worker thread runs its own executor and accepts on its own listening socket
//! (`SO_REUSEPORT`); one task per client connection, on the thread that accepted it,
//! feeds what happens on its sockets into the core, performs the core's outputs in order
//! (writing first and waiting for writability only when a socket's buffer is full), and
//! sleeps until a socket is ready or the core's next deadline (one timer). On the Linux
//! reactor sockets are registered once and the reactor keeps their readiness, so a read
//! or write that would block is never tried twice and a wait costs no system call of its
//! own. HTTP-phase reads take up to 64 KiB: small ones are copied into a buffer of
//! their size, large ones go to the core without a copy. The adapter owns everything
//! shared between connections: upstream groups and their balancers (round-robin, weighted,
//! least connections, consistent hashing; shared by the workers; host names re-resolved
//! on a thread of their own) and a
//! keep-alive pool of idle upstream connections (one per worker). Tunnels copy bytes
//! through 64 KiB buffers taken from a pool only once a socket is readable, and a
//! direction carrying bulk data splices through a pooled pipe instead (Linux reactor);
//! buffers and pipes go back once written, so an idle WebSocket holds neither. In a
//! frame-aware WebSocket tunnel the core is shown each frame header and control frame
//! while payloads go past it on the same path, up to the frame's end; the core's own
//! frames towards upstreams are masked with keys from the operating system's CSPRNG.
//!
//! # Example
//!
//! A proxy on a free loopback port in front of `127.0.0.1:9000`, stopped gracefully:
//!
//! ```
//! use switchyard_smol::{Server, ServerConfig};
//!
//! # fn main() -> std::io::Result<()> {
//! let config = ServerConfig::simple(
//!     "127.0.0.1:0".parse().unwrap(),    // port 0: any free port
//!     "127.0.0.1:9000".parse().unwrap(), // the upstream server
//! );
//! let server = Server::bind(config)?; // a port in use is reported here
//! println!("listening on {:?}", server.local_addrs());
//!
//! // Call `shutdown()` from anywhere, e.g. a SIGTERM handler thread.
//! let stop = server.shutdown_handle();
//! let runner = std::thread::spawn(move || server.run());
//! stop.shutdown();
//! runner.join().unwrap()?; // returns once every connection has finished
//! # Ok(())
//! # }
//! ```
//!
//! Routes and their deadlines come from [`switchyard_core::Config`];
//! [`ServerConfig::route_upstream`] maps each route to an [`UpstreamGroup`].
//!
//! # Events and logging
//!
//! Every event of the core ([`switchyard_core::Event`]) goes to one [`EventSink`],
//! [`ServerConfig::events`]. The default sink, [`AccessLog`], makes every finished
//! request and every finished tunnel one `tracing` record at INFO with target
//! `switchyard::access` (client, method, path, status, bytes each way, duration, and for
//! tunnels the close reason, and a frame-aware WebSocket's messages, frames, close codes
//! and pings); protocol errors of clients are DEBUG, of upstreams WARN.
//! Metrics are another sink, beside it. The runtime's own records (failing upstream
//! connects and accept errors are WARN) go to `tracing` directly.
//!
//! # Metrics and the admin listener
//!
//! With [`ServerConfig::admin_listen`] set, the server counts into [`Metrics`] (fed every
//! event after [`ServerConfig::events`], and the runtime's own counts: open connections,
//! failed upstream connects, upstream connections in use, idle pooled connections), each
//! worker into counters of its own, summed when read, and keeps a live list of the open
//! tunnels (each publishes its bytes and messages after every read). Its admin listener,
//! on worker 0's executor and a socket of its own, answers `GET` (and `HEAD`) of
//! `/metrics` (the Prometheus text format), `/status.json` (the open tunnels, the
//! longest-lived 1,000 listed, per-route and per-upstream-server summaries, the
//! configuration generation), `/status` (a page that shows it), `/healthz` (200 while the
//! process runs) and `/readyz` (200 while accepting, 503 from the moment a shutdown
//! starts), 405 for other methods there, 404 for other paths and 400 for what is not
//! HTTP/1.1; it holds no upstream connection and reaches none.
//!
//! # Reloading
//!
//! [`Server::reload_handle`] gives a [`ReloadHandle`] that publishes a new
//! [`ServerConfig`] as a new configuration generation while the server runs (the binary
//! calls it on SIGHUP): new connections take its routes, upstream groups, deadlines and
//! limits, open ones finish under the generation they were accepted under. Listeners
//! are added and removed without an accept gap for the addresses that stay; upstream
//! failure marks carry over; [`ServerConfig::drain_timeout`] bounds how long an old
//! generation's connections live.
//!
//! # Upgrades
//!
//! Every listener has `SO_REUSEPORT`, so a second server can bind the same addresses.
//! With [`ServerConfig::upgrade_socket`] set, a server serves that Unix socket while it
//! runs; a server bound with the same path receives the running one's listening
//! sockets over it (`SCM_RIGHTS`: the same sockets, so their accept queues are shared
//! and nothing queued is lost), binds only what it lacks, and once it runs tells the old
//! one, which drains as on [`ShutdownHandle::shutdown`]. A listener that stops
//! accepting first accepts what is already queued.
//!
//! # TLS
//!
//! The addresses named in [`ServerConfig::tls`] speak TLS (rustls: TLS 1.2 and 1.3,
//! ALPN `http/1.1`), with [`TlsCertificates`] loaded from PEM files and chosen by the
//! client's SNI name. The session sits between the client's socket and the core, which
//! sees plaintext and writes `X-Forwarded-Proto: https`; the handshake counts against
//! `header_timeout`, and a reload serves new certificates to new connections. Tunnels
//! of TLS clients copy (no splice). A certificate that expired or is not valid yet is
//! refused by [`TlsCertificates::load`]; [`TlsCertificates::expiring_within`] lists
//! those that expire soon.
//!
//! An upstream group with [`UpstreamGroup::tls`] ([`UpstreamTls`]: a CA file, the
//! system's roots, or, loudly, none) speaks TLS to its servers through the same
//! session: the handshake is part of the dial, so a certificate that does not verify
//! fails the server as a refused connect does (the next server is tried, a 502 when none
//! is left, a WARN line, `switchyard_upstream_tls_errors_total`); pooled connections keep
//! their session, health checks verify the same way, and a PROXY header goes before
//! the handshake.
//!
//! # Descriptor limits
//!
//! [`Server::bind`] warns once when `max_connections` cannot fit in the open-file limit
//! (see [`DescriptorBudget`]); the library never changes the limit itself, a program
//! owning its process calls [`raise_descriptor_limit`] first. While accepting fails for
//! want of descriptors (EMFILE, ENFILE), a worker closes its oldest idle upstream
//! connections and retries, and pauses briefly only when none are left; the shortage is
//! logged once when it begins and once when it is over.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

mod accept;
mod admin;
mod backend;
mod balance;
mod buffer;
mod driver;
mod events;
mod executor;
mod generation;
mod handover;
mod health;
#[cfg(test)]
mod idle_tests;
mod limits;
mod listeners;
mod log;
mod masking;
mod metrics;
// The backend (see `backend.rs`): the Linux reactor with splice, or async-io.
#[cfg(all(target_os = "linux", not(feature = "portable")))]
mod pipe;
mod pool;
#[cfg(any(not(target_os = "linux"), feature = "portable"))]
mod portable;
mod proxy_protocol;
#[cfg(all(target_os = "linux", not(feature = "portable")))]
mod reactor;
mod resolve;
mod server;
mod shortage;
mod signal;
mod sockets;
mod source;
mod stream_io;
#[cfg(test)]
mod test_support;
mod tls;
mod tunnels;
mod upstream;
mod worker;
mod write_queue;

pub use events::{EventContext, EventSink};
pub use generation::{ReloadError, ReloadHandle, ReloadReport};
pub use health::HealthCheck;
pub use limits::{
    descriptor_limit, raise_descriptor_limit, DescriptorBudget, DescriptorLimit, Shortfall,
};
pub use log::{AccessLog, ACCESS_TARGET};
pub use metrics::Metrics;
pub use proxy_protocol::ProxyProtocol;
pub use server::{Server, ShutdownHandle};
pub use tls::{TlsCertificates, TlsError, TlsListener, UpstreamRoots, UpstreamTls};

/// A named set of upstream servers and how connections are spread over them
/// ([`Balance`], round-robin by default). A server that fails to connect is skipped for
/// the next one, and for 10 s it is tried only after the others, whatever the balancer.
/// With a [`HealthCheck`], a server that fails it gets no new connections until it
/// passes again.
///
/// Servers may come from host names ([`UpstreamGroup::names`]): the server re-resolves
/// them every [`UpstreamGroup::resolve_interval`] on a thread of its own and publishes
/// the group's new servers as a new configuration generation when they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamGroup {
    /// Name, for logs.
    pub name: String,
    /// The servers (the addresses given and those the names resolved to).
    pub servers: Vec<SocketAddr>,
    /// Each server's weight (`weights[i]` is `servers[i]`'s, 1 to 1000); a server
    /// without an entry weighs 1. Round-robin and least connections give a server
    /// `weight` times the share of a server of weight 1; the hashing balancers give it
    /// `weight` times the share of the ring.
    pub weights: Vec<u32>,
    /// How a server is chosen for a connection.
    pub balance: Balance,
    /// The host names among the servers, with what each resolved to last (those
    /// addresses are in `servers`); re-resolved every `resolve_interval`.
    pub names: Vec<ServerName>,
    /// How often `names` are resolved again. Default 30 s.
    pub resolve_interval: Duration,
    /// Active health checks of each server; `None` (the default): only the passive
    /// marks of failed connects.
    pub health_check: Option<HealthCheck>,
    /// Source addresses each new upstream connection binds before connecting, the next
    /// one in turn (of the server's address family); empty (the default): the system
    /// picks.
    pub source: Vec<std::net::IpAddr>,
    /// TLS to its servers (`None`, the default: plain TCP): each new connection makes
    /// its handshake (after the PROXY header, if one is sent) before it is used, and a
    /// certificate that does not verify fails the server as a refused connect does.
    pub tls: Option<UpstreamTls>,
}

impl Default for UpstreamGroup {
    fn default() -> Self {
        UpstreamGroup {
            name: String::new(),
            servers: Vec::new(),
            weights: Vec::new(),
            balance: Balance::RoundRobin,
            names: Vec::new(),
            resolve_interval: Duration::from_secs(30),
            health_check: None,
            source: Vec::new(),
            tls: None,
        }
    }
}

impl UpstreamGroup {
    /// The weight of `servers[index]` (1 when not given).
    pub fn weight(&self, index: usize) -> u32 {
        self.weights.get(index).copied().unwrap_or(1).max(1)
    }
}

pub use balance::Balance;
pub use resolve::{resolve, ServerName};

/// The keep-alive pool of idle upstream connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Most idle connections kept per upstream server by each worker (0 disables pooling).
    /// Default 128.
    pub max_idle_per_server: usize,
    /// An idle connection is closed after this long. Default 60 s.
    pub idle_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_idle_per_server: 128,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Everything a [`Server`] needs.
///
/// # Examples
///
/// `/chat/` to one group (WebSocket, a longer read timeout), everything else to another:
///
/// ```
/// use std::time::Duration;
/// use switchyard_core::Route;
/// use switchyard_smol::{Server, ServerConfig, UpstreamGroup};
///
/// let mut config = ServerConfig::simple(
///     "127.0.0.1:0".parse().unwrap(),
///     "127.0.0.1:9000".parse().unwrap(),
/// );
/// let mut chat = Route::new("/chat/");
/// chat.timeouts.read = Duration::from_secs(300);
/// config.core.routes.push(chat);
/// config.upstreams.push(UpstreamGroup {
///     name: "chat".into(),
///     servers: vec!["127.0.0.1:9001".parse().unwrap(), "127.0.0.1:9002".parse().unwrap()],
///     ..UpstreamGroup::default()
/// });
/// config.route_upstream = vec![0, 1]; // route "/" -> "default", "/chat/" -> "chat"
/// let server = Server::bind(config)?;
/// # drop(server);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Addresses to listen on (port 0 picks a free port; see [`Server::local_addrs`]).
    pub listen: Vec<SocketAddr>,
    /// Routes, deadlines, limits and forwarding headers for the core.
    pub core: switchyard_core::Config,
    /// Upstream groups.
    pub upstreams: Vec<UpstreamGroup>,
    /// For each route (index in `core.routes`), the index of its group in `upstreams`.
    pub route_upstream: Vec<usize>,
    /// Worker threads, each with its own executor and its own listening socket per
    /// address (`SO_REUSEPORT`); a connection stays on the worker that accepted it.
    /// 0 means one per core.
    pub workers: usize,
    /// On shutdown, how long an open tunnel may continue. Default 10 s.
    pub shutdown_grace: Duration,
    /// Accepting pauses while this many client connections are open (0: no limit).
    /// Default 10 000.
    pub max_connections: usize,
    /// Upstream keep-alive pool.
    pub pool: PoolConfig,
    /// Where the events of every connection go. Default: the [`AccessLog`]. A pair of
    /// sinks feeds both (`Arc::new((AccessLog, metrics))`).
    pub events: Arc<dyn EventSink>,
    /// Where the admin listener serves `/metrics`, `/status`, `/status.json`, `/healthz`
    /// and `/readyz` (see
    /// [`Server::admin_addr`]); `None` (the default) serves none and collects no
    /// metrics. Never one of the `listen` addresses.
    pub admin_listen: Option<SocketAddr>,
    /// After a reload, how long the connections of the generation it replaced may live
    /// before they are drained as at a shutdown (an exchange in flight completes, a
    /// tunnel ends at once: a frame-aware WebSocket gets Close 1001). `None` (the
    /// default): they live until they end. Read from the configuration a reload
    /// publishes (see [`ReloadHandle::reload`]).
    pub drain_timeout: Option<Duration>,
    /// A Unix socket path for zero-downtime upgrades (`None`, the default: none). The
    /// server answers on it while it runs; a server bound with the same path while one
    /// runs takes that one's listening sockets over (their accept queues with them),
    /// binds only what it lacks, and once it runs tells the old one to drain as on
    /// [`ShutdownHandle::shutdown`]. Without it, a second server can still bind the
    /// same addresses (every listener has `SO_REUSEPORT`).
    pub upgrade_socket: Option<PathBuf>,
    /// Listeners that require a PROXY protocol header, and upstream groups sent one.
    pub proxy_protocol: ProxyProtocol,
    /// Which of the `listen` addresses speak TLS, and their certificates (empty, the
    /// default: none). Certificates are part of the configuration: a reload serves the
    /// ones it is given to new connections, and open ones keep theirs.
    pub tls: Vec<TlsListener>,
}

impl ServerConfig {
    /// Listens on `listen` and sends everything (one route `/`, WebSocket allowed) to
    /// `upstream`, with default deadlines and limits.
    pub fn simple(listen: SocketAddr, upstream: SocketAddr) -> Self {
        ServerConfig {
            listen: vec![listen],
            core: switchyard_core::Config::default(),
            upstreams: vec![UpstreamGroup {
                name: "default".to_string(),
                servers: vec![upstream],
                ..UpstreamGroup::default()
            }],
            route_upstream: vec![0],
            workers: 0,
            shutdown_grace: Duration::from_secs(10),
            max_connections: 10_000,
            pool: PoolConfig::default(),
            events: Arc::new(AccessLog),
            admin_listen: None,
            drain_timeout: None,
            upgrade_socket: None,
            proxy_protocol: ProxyProtocol::default(),
            tls: Vec::new(),
        }
    }
}

/// Binds a [`Server`] and runs it on a new thread: returns the bound addresses, a
/// [`ShutdownHandle`] and the thread, which ends with [`Server::run`]'s result.
pub fn spawn(
    config: ServerConfig,
) -> io::Result<(Vec<SocketAddr>, ShutdownHandle, JoinHandle<io::Result<()>>)> {
    let server = Server::bind(config)?;
    let addrs = server.local_addrs();
    let handle = server.shutdown_handle();
    let thread = std::thread::Builder::new()
        .name("switchyard".to_string())
        .spawn(move || server.run())?;
    Ok((addrs, handle, thread))
}

/// The crate README's examples, compiled and run as doctests so that they cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
