//! The proxy under test, run in-process on a thread of its own.

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use switchyard_smol::{
    ReloadError, ReloadHandle, ReloadReport, Server, ServerConfig, ShutdownHandle,
};

/// How long [`Proxy::shutdown`] waits for the server to return after asking it to stop.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(15);

/// A running switchyard listening on an ephemeral 127.0.0.1 port. Dropping it shuts the
/// server down (bounded by a deadline).
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    admin: Option<SocketAddr>,
    handle: Option<ShutdownHandle>,
    reload: ReloadHandle,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// A proxy with one route `/` to `origin` and default settings.
    pub fn start(origin: SocketAddr) -> Proxy {
        Proxy::start_with(origin, |_| {})
    }

    /// A proxy with one route `/` to `origin`, after `configure` has adjusted the config.
    pub fn start_with(origin: SocketAddr, configure: impl FnOnce(&mut ServerConfig)) -> Proxy {
        let server = Server::bind(Proxy::config(origin, configure)).expect("bind the proxy");
        let addr = server.local_addrs()[0];
        let admin = server.admin_addr();
        let handle = server.shutdown_handle();
        let reload = server.reload_handle();
        let thread = std::thread::spawn(move || {
            let _ = server.run();
        });
        Proxy {
            addr,
            admin,
            handle: Some(handle),
            reload,
            thread: Some(thread),
        }
    }

    /// The configuration [`Proxy::start_with`] binds: one route `/` to `origin`, a
    /// short shutdown grace, then `configure`.
    pub fn config(origin: SocketAddr, configure: impl FnOnce(&mut ServerConfig)) -> ServerConfig {
        let mut config = ServerConfig::simple("127.0.0.1:0".parse().expect("an address"), origin);
        // Tests close their tunnels before dropping the proxy; a short grace bounds the
        // drop of one that failed half-way.
        config.shutdown_grace = Duration::from_secs(1);
        configure(&mut config);
        config
    }

    /// Reloads the running proxy with [`Proxy::config`]`(origin, configure)` (its
    /// listen address `127.0.0.1:0` is the listener it has).
    pub fn reload_with(
        &self,
        origin: SocketAddr,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> Result<ReloadReport, ReloadError> {
        self.reload.reload(Proxy::config(origin, configure))
    }

    /// The handle that reloads the running proxy.
    pub fn reload_handle(&self) -> &ReloadHandle {
        &self.reload
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin listener's address, when `configure` set `admin_listen`.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// Asks the server to shut down gracefully without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown();
        }
    }

    /// Whether the server's `run` has returned.
    pub fn has_stopped(&self) -> bool {
        self.thread.as_ref().map_or(true, JoinHandle::is_finished)
    }

    /// Shuts the server down gracefully and waits for `run` to return. Returns how long that
    /// took, or `None` if it did not return within 15 s.
    pub fn shutdown(&mut self) -> Option<Duration> {
        let started = Instant::now();
        self.begin_shutdown();
        let deadline = started + SHUTDOWN_DEADLINE;
        while !self.has_stopped() {
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        Some(started.elapsed())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Do not panic while unwinding; a test that cares calls `shutdown` and asserts.
        let _ = self.shutdown();
    }
}
