//! Temporary stand-in for `switchyard-smol` with its public API: binds the listeners and
#![allow(missing_docs, missing_debug_implementations)]
//! waits for shutdown, without serving. Replaced by `pub use switchyard_smol::...`.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

#[derive(Debug)]
pub struct UpstreamGroup {
    pub name: String,
    pub servers: Vec<SocketAddr>,
}

#[derive(Debug)]
pub struct PoolConfig {
    pub max_idle_per_server: usize,
    pub idle_timeout: Duration,
}

#[derive(Debug)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    pub core: switchyard_core::Config,
    pub upstreams: Vec<UpstreamGroup>,
    pub route_upstream: Vec<usize>,
    pub workers: usize,
    pub shutdown_grace: Duration,
    pub max_connections: usize,
    pub pool: PoolConfig,
}

pub struct Server {
    listeners: Vec<TcpListener>,
    stop: ShutdownHandle,
}

#[derive(Clone, Default)]
pub struct ShutdownHandle(Arc<(Mutex<bool>, Condvar)>);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }
}

impl Server {
    pub fn bind(config: ServerConfig) -> io::Result<Server> {
        let listeners = config
            .listen
            .iter()
            .map(TcpListener::bind)
            .collect::<io::Result<_>>()?;
        Ok(Server {
            listeners,
            stop: ShutdownHandle::default(),
        })
    }
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.stop.clone()
    }
    pub fn run(self) -> io::Result<()> {
        let (lock, cvar) = &*self.stop.0;
        let mut stopped = lock.lock().unwrap();
        while !*stopped {
            stopped = cvar.wait(stopped).unwrap();
        }
        Ok(())
    }
}
