//! Host names among an upstream group's servers: resolved by whoever builds the
//! [`ServerConfig`] (the binary, at start and on reload) with [`resolve`], and again
//! every `resolve_interval` by a thread of the server's own, never by a worker (the
//! system resolver blocks). A change is published as a new configuration generation,
//! through the same path as a reload: the metrics layout grows slots for new servers,
//! the workers' pools close idle connections to servers gone, and the failure marks and
//! connection counts of the servers that stay carry over.

use std::collections::HashSet;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use event_listener::Listener;

use crate::generation::Generations;
use crate::ReloadError;
use crate::{ServerConfig, UpstreamGroup};

/// A host name among a group's servers, and what it resolved to last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerName {
    /// `host:port` as configured (`app:9000`).
    pub name: String,
    /// The weight of each of its addresses.
    pub weight: u32,
    /// Its addresses at the last resolution that found any (each one a server).
    pub addrs: Vec<SocketAddr>,
}

/// The addresses of `host:port` (an `IP:PORT` is its own), each once, in the order the
/// resolver gave them. Blocks while the system resolver works.
///
/// # Errors
/// One line naming `address`: no port, a name that does not resolve, or one that
/// resolves to no address.
pub fn resolve(address: &str) -> io::Result<Vec<SocketAddr>> {
    let found = address.to_socket_addrs().map_err(|error| {
        io::Error::new(error.kind(), format!("cannot resolve `{address}`: {error}"))
    })?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in found {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("cannot resolve `{address}`: no address"),
        ));
    }
    Ok(addrs)
}

/// `group` with its names resolved again by `lookup`, or `None` when nothing changed. A
/// name that fails keeps its last addresses, with a warning. The servers given as
/// addresses come first, in their order, then each name's.
fn refreshed(
    group: &UpstreamGroup,
    mut lookup: impl FnMut(&str) -> io::Result<Vec<SocketAddr>>,
) -> Option<UpstreamGroup> {
    let mut names = group.names.clone();
    let mut changed = false;
    for name in &mut names {
        match lookup(&name.name) {
            Ok(addrs) if addrs != name.addrs => {
                tracing::info!(upstream = %group.name, name = %name.name, ?addrs, "upstream name resolves to new addresses");
                name.addrs = addrs;
                changed = true;
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(upstream = %group.name, %error, "upstream name not resolved; its last addresses stay");
            }
        }
    }
    if !changed {
        return None;
    }
    let named: HashSet<SocketAddr> = group.names.iter().flat_map(|n| n.addrs.clone()).collect();
    let mut next = group.clone();
    next.servers.clear();
    next.weights.clear();
    for (index, &addr) in group.servers.iter().enumerate() {
        if !named.contains(&addr) {
            next.servers.push(addr);
            next.weights.push(group.weight(index));
        }
    }
    for name in &names {
        for &addr in &name.addrs {
            if !next.servers.contains(&addr) {
                next.servers.push(addr);
                next.weights.push(name.weight);
            }
        }
    }
    next.names = names;
    Some(next)
}

/// The configuration `config` with every group's names resolved again, or `None` when
/// no group's servers changed.
pub(crate) fn refresh(
    config: &ServerConfig,
    mut lookup: impl FnMut(&str) -> io::Result<Vec<SocketAddr>>,
) -> Option<ServerConfig> {
    let mut next = config.clone();
    let mut changed = false;
    for group in &mut next.upstreams {
        if let Some(group_next) = refreshed(group, &mut lookup) {
            *group = group_next;
            changed = true;
        }
    }
    changed.then_some(next)
}

/// How long the refresher sleeps: the shortest interval of the groups with names, or
/// `None` when no group has any.
fn interval(config: &ServerConfig) -> Option<Duration> {
    let named = config.upstreams.iter().filter(|g| !g.names.is_empty());
    named
        .map(|group| group.resolve_interval.max(Duration::from_millis(100)))
        .min()
}

/// Resolves the names of the newest generation every interval until the server stops,
/// on a thread of its own; a change is published as a new generation. Each wait reads
/// the interval again, so a reload's change applies from the next round on.
pub(crate) fn spawn_refresher(generations: Arc<Generations>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("switchyard-resolve".to_string())
        .spawn(move || loop {
            let wait = generations
                .config()
                .as_deref()
                .and_then(interval)
                .unwrap_or(Duration::from_secs(30));
            let listener = generations.stopping.listen();
            if generations.stopping.is_set() || listener.wait_timeout(wait).is_some() {
                return;
            }
            let Some(config) = generations.config() else {
                continue;
            };
            if let Some(next) = refresh(&config, resolve) {
                match generations.refresh(&config, next) {
                    // A reload came first: it resolved its names; the next round starts
                    // from it.
                    Err(ReloadError::Outdated) => {}
                    Err(error) => tracing::warn!(%error, "resolved upstream names not published"),
                    Ok(()) => {}
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn named_group() -> UpstreamGroup {
        UpstreamGroup {
            name: "app".into(),
            servers: vec![
                addr("10.0.0.9:80"),
                addr("10.0.0.1:80"),
                addr("10.0.0.2:80"),
            ],
            weights: vec![1, 3, 3],
            names: vec![ServerName {
                name: "app:80".into(),
                weight: 3,
                addrs: vec![addr("10.0.0.1:80"), addr("10.0.0.2:80")],
            }],
            ..UpstreamGroup::default()
        }
    }

    #[test]
    fn an_ip_port_resolves_to_itself_and_a_bad_name_is_named_in_the_error() {
        assert_eq!(resolve("127.0.0.1:9000").unwrap(), [addr("127.0.0.1:9000")]);
        assert!(resolve("localhost:9000")
            .unwrap()
            .iter()
            .all(|a| a.ip().is_loopback()));
        let error = resolve("no-such-host.invalid:80").unwrap_err().to_string();
        assert!(error.contains("`no-such-host.invalid:80`"), "{error}");
        let error = resolve("localhost").unwrap_err().to_string();
        assert!(error.contains("`localhost`"), "{error}");
    }

    #[test]
    fn new_addresses_replace_the_names_old_ones_and_keep_its_weight() {
        let group = named_group();
        let next = refreshed(&group, |_| {
            Ok(vec![addr("10.0.0.2:80"), addr("10.0.0.3:80")])
        })
        .expect("changed");
        assert_eq!(
            next.servers,
            [
                addr("10.0.0.9:80"),
                addr("10.0.0.2:80"),
                addr("10.0.0.3:80")
            ]
        );
        assert_eq!(next.weights, [1, 3, 3]);
        assert_eq!(
            next.names[0].addrs,
            [addr("10.0.0.2:80"), addr("10.0.0.3:80")]
        );
    }

    #[test]
    fn the_same_addresses_or_a_failure_change_nothing() {
        let group = named_group();
        let same = group.names[0].addrs.clone();
        assert_eq!(refreshed(&group, |_| Ok(same.clone())), None);
        let failed = refreshed(&group, |name| {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("cannot resolve `{name}`"),
            ))
        });
        assert_eq!(failed, None, "the last good addresses stay");
    }
}
