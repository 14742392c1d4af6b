//! Active health checks of upstream servers: each server of a group with a
//! [`HealthCheck`] gets an HTTP/1.1 `GET` every `interval` (`probe.rs`), run by tasks on
//! worker 0's executor (`task.rs`); `fails` failures in a row take it out of the
//! rotation, `passes` passes in a row bring it back (`tally.rs`). The state sits with the
//! server in its group (shared by the generations a reload makes), where the dial's
//! choice of a server reads it.

mod probe;
mod tally;
mod task;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) use tally::{Change, Tally};
pub(crate) use task::Checks;

use crate::source::Sources;

/// How a group's servers are checked: HAProxy's `option httpchk` with
/// `check inter fall rise`, nginx's `health_check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// The request target of each check's `GET`. Default `/`.
    pub path: String,
    /// Time between one check of a server and the next. Default 5 s.
    pub interval: Duration,
    /// A check not answered with a status line within this long fails (connect
    /// included). Default 1 s.
    pub timeout: Duration,
    /// Failed checks in a row that take a server out. Default 3 (HAProxy's `fall`).
    pub fails: u32,
    /// Passed checks in a row that bring it back. Default 2 (HAProxy's `rise`).
    pub passes: u32,
    /// The statuses that pass; empty (the default): any 2xx or 3xx.
    pub status: Vec<u16>,
    /// The `Host` header of each check; `None` (the default): the server's address.
    pub host: Option<String>,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            path: "/".to_string(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            fails: 3,
            passes: 2,
            status: Vec::new(),
            host: None,
        }
    }
}

impl HealthCheck {
    /// What makes this check unusable, if anything: a zero `interval` (checks without
    /// pause) or `timeout`, or a `path` or `host` that is not printable ASCII without
    /// spaces (it goes into the request as is), or a `path` not starting with `/`.
    pub(crate) fn problem(&self) -> Option<String> {
        let token = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic());
        if self.interval.is_zero() || self.timeout.is_zero() {
            return Some("interval and timeout must be longer than 0".into());
        }
        if !self.path.starts_with('/') || !token(&self.path) {
            return Some(format!("invalid path {:?}", self.path));
        }
        match &self.host {
            Some(host) if !token(host) => Some(format!("invalid host {host:?}")),
            _ => None,
        }
    }

    /// Whether an answer with `status` passes.
    pub fn passes_with(&self, status: u16) -> bool {
        if self.status.is_empty() {
            (200..400).contains(&status)
        } else {
            self.status.contains(&status)
        }
    }
}

/// One server's health as its checks found it. Shared by the same server of the same
/// group in every generation, so that a reload neither forgets a server is down nor
/// restarts its count.
#[derive(Debug, Default)]
pub(crate) struct ServerHealth {
    /// Read by every worker's dial; written by the check task only.
    down: AtomicBool,
    tally: Mutex<Tally>,
}

impl ServerHealth {
    /// Whether the checks took the server out.
    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Counts one check's result; says when the server went down or came back up.
    pub(crate) fn record(&self, passed: bool, check: &HealthCheck) -> Option<Change> {
        let mut tally = self.tally.lock().unwrap_or_else(|p| p.into_inner());
        let change = tally.record(passed, check.fails, check.passes);
        self.down.store(tally.is_down(), Ordering::Relaxed);
        change
    }
}

/// What the check tasks of one group need from it.
#[derive(Debug)]
pub(crate) struct Targets {
    pub(crate) group: String,
    pub(crate) check: HealthCheck,
    /// The group's source addresses: checks leave from them too, as its connections do.
    pub(crate) sources: Sources,
    pub(crate) servers: Vec<(SocketAddr, Arc<ServerHealth>)>,
    /// Whether every server was down at the last change, so that the group's going
    /// dark and coming back are logged once each.
    pub(crate) all_down: Arc<AtomicBool>,
    /// In a group with TLS: its TLS, and each server's name to verify (checks verify
    /// as the group's connections do).
    pub(crate) tls: Option<(
        crate::UpstreamTls,
        Vec<(SocketAddr, rustls::pki_types::ServerName<'static>)>,
    )>,
    /// The group's connections begin with a PROXY header, so its servers may refuse
    /// any connection without one: each check begins with a v2 `LOCAL` header (the
    /// proxy's own connection, relaying no client), before its TLS handshake if any.
    pub(crate) proxy_header: bool,
}
