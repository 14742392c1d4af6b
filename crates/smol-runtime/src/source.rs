//! Source addresses of upstream connections (nginx's `proxy_bind`, HAProxy's `source`):
//! each connection binds the next address of its group before connecting. With
//! `IP_BIND_ADDRESS_NO_PORT` (Linux) the port is picked at `connect`, for the whole
//! 4-tuple, so each source address adds its own ~64k ports towards one server instead of
//! sharing the ephemeral range at `bind`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A group's source addresses and whose turn is next; clones share the turn.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sources {
    addrs: Arc<[IpAddr]>,
    next: Arc<AtomicUsize>,
}

impl Sources {
    /// `addrs`, continuing the turn of `previous` (the same group before a reload).
    pub(crate) fn new(addrs: &[IpAddr], previous: Option<&Sources>) -> Sources {
        Sources {
            addrs: addrs.into(),
            next: previous.map_or_else(Default::default, |p| p.next.clone()),
        }
    }

    /// The source address of the next connection to `server`: the next in turn of the
    /// server's family; `None` when the group has none. An error when it has some, but
    /// none of that family.
    pub(crate) fn next_for(&self, server: SocketAddr) -> io::Result<Option<IpAddr>> {
        if self.addrs.is_empty() {
            return Ok(None);
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.addrs.len();
        (0..n)
            .map(|k| self.addrs[(start + k) % n])
            .find(|source| source.is_ipv4() == server.is_ipv4())
            .map(Some)
            .ok_or_else(|| {
                let family = if server.is_ipv4() { "IPv4" } else { "IPv6" };
                io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    format!("no {family} source address for {server}"),
                )
            })
    }
}

/// Binds `socket` to `source` (port 0: picked at connect time). The error names the
/// address.
pub(crate) fn bind(socket: &impl AsFd, source: IpAddr) -> io::Result<()> {
    let failed = |error: io::Error| {
        io::Error::new(
            error.kind(),
            format!("cannot bind source address {source}: {error}"),
        )
    };
    #[cfg(target_os = "linux")]
    if source.is_ipv4() {
        use nix::sys::socket::{setsockopt, sockopt::IpBindAddressNoPort};
        setsockopt(socket, IpBindAddressNoPort, &true).map_err(|e| failed(e.into()))?;
    }
    rustix::net::bind(socket, &SocketAddr::new(source, 0)).map_err(|e| failed(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_take_turns_within_the_servers_family() {
        let v4: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        let addrs: Vec<IpAddr> = ["127.0.0.2", "::1", "127.0.0.3"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let sources = Sources::new(&addrs, None);
        let picks: Vec<String> = (0..4)
            .map(|_| sources.next_for(v4).unwrap().unwrap().to_string())
            .collect();
        assert_eq!(picks, ["127.0.0.2", "127.0.0.3", "127.0.0.3", "127.0.0.2"]);
        assert_eq!(sources.next_for(v6).unwrap(), Some(addrs[1]));
        let only_v4 = Sources::new(&addrs[..1], None);
        let error = only_v4.next_for(v6).unwrap_err();
        assert!(
            error.to_string().contains("no IPv6 source address"),
            "{error}"
        );
        assert_eq!(Sources::default().next_for(v4).unwrap(), None);
    }

    #[test]
    fn a_reloaded_group_continues_the_turn() {
        let server: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let addrs: Vec<IpAddr> = vec!["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()];
        let before = Sources::new(&addrs, None);
        assert_eq!(before.next_for(server).unwrap(), Some(addrs[0]));
        let after = Sources::new(&addrs, Some(&before));
        assert_eq!(after.next_for(server).unwrap(), Some(addrs[1]));
    }
}
