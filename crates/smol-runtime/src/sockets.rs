//! Creating the proxy's listening sockets, fresh or taken over from a running process
//! (see `handover/`); which addresses are listened on, and how a reload changes them, is
//! `listeners.rs`.
//!
//! An address has one listening socket, and every worker accepts from it through a
//! descriptor of its own ([`share`]): one accept queue, so a connection waits for
//! whichever worker is free, not for the one a hash chose (docs/DECISIONS.md,
//! "One accept queue for all workers").
//!
//! Every proxy listener has `SO_REUSEPORT`, even with one worker: a second process
//! (a new binary being rolled out) can then bind the same address while this one still
//! serves, and the kernel spreads new connections over both until this one stops.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};

use crate::backend::Io;

/// The listening sockets of each `listen` entry, and the address each is bound to (a
/// port 0 resolved), in the order of `listen`.
#[derive(Debug)]
pub(crate) struct Bound {
    /// Indexed like `listen`: one socket per address, or those taken over for it (a
    /// previous process may have had one per worker, each an accept queue of its own).
    pub(crate) per_address: Vec<Vec<TcpListener>>,
    pub(crate) local_addrs: Vec<SocketAddr>,
}

/// Binds `listen`. The sockets in `inherited` whose address is a `listen` entry are used
/// instead of a fresh one: each is an accept queue that must keep being accepted from,
/// so all of them are kept. Inherited sockets of addresses not in `listen` are closed.
/// Errors name the address.
pub(crate) fn bind(
    listen: &[SocketAddr],
    mut inherited: Vec<(SocketAddr, TcpListener)>,
) -> io::Result<Bound> {
    let mut per_address = Vec::with_capacity(listen.len());
    let mut local_addrs = Vec::with_capacity(listen.len());
    for &addr in listen {
        let (taken, rest): (Vec<_>, Vec<_>) = inherited
            .into_iter()
            .partition(|(bound, _)| addr.port() != 0 && *bound == addr);
        inherited = rest;
        let sockets: Vec<TcpListener> = if taken.is_empty() {
            vec![listen_on(addr).map_err(|e| cannot_listen(addr, e))?]
        } else {
            taken.into_iter().map(|(_, socket)| socket).collect()
        };
        local_addrs.push(sockets[0].local_addr()?);
        per_address.push(sockets);
    }
    for (addr, _) in &inherited {
        tracing::info!(%addr, "a listener taken over is not configured here: closed");
    }
    Ok(Bound {
        per_address,
        local_addrs,
    })
}

/// For each of `workers` workers, a descriptor of its own for every socket of
/// `sockets`: each worker registers its descriptors with its own reactor, and all of
/// them accept from the same queues.
pub(crate) fn share(sockets: &[TcpListener], workers: usize) -> io::Result<Vec<Vec<TcpListener>>> {
    (0..workers)
        .map(|_| sockets.iter().map(TcpListener::try_clone).collect())
        .collect()
}

/// The error for an address that cannot be listened on, naming it.
pub(crate) fn cannot_listen(addr: SocketAddr, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("cannot listen on {addr}: {error}"))
}

/// Takes the socket bound to `addr` out of `inherited`, if there is one (the admin
/// listener's: one socket, not one per worker).
pub(crate) fn take(
    inherited: &mut Vec<(SocketAddr, TcpListener)>,
    addr: SocketAddr,
) -> Option<TcpListener> {
    let index = inherited
        .iter()
        .position(|(bound, _)| addr.port() != 0 && *bound == addr)?;
    Some(inherited.swap_remove(index).1)
}

/// Accepts what is still queued on `listener`, about to close, handing each connection
/// to `serve`; returns how many. Closing a listener's last descriptor resets the
/// connections still in its queue (with `SO_REUSEPORT`, the kernel went on queueing new
/// ones on it until now), so every worker empties the queue before dropping its own,
/// and they are served, drained like the others. Ones arriving between the last accept and
/// the close are the gap that handing the sockets over closes (`handover/`).
pub(crate) fn take_queued(
    listener: &Io<TcpListener>,
    mut serve: impl FnMut(Io<TcpStream>, SocketAddr),
) -> usize {
    let mut queued = 0;
    loop {
        match listener.accept_queued() {
            Ok(Some((stream, client_addr))) => {
                let Ok(stream) = Io::stream(stream, true) else {
                    continue;
                };
                queued += 1;
                serve(stream, client_addr);
            }
            Ok(None) => return queued,
            Err(error) if crate::accept::is_per_connection(&error) => {}
            Err(error) => {
                tracing::warn!(%error, "accept failed while emptying the queue");
                return queued;
            }
        }
    }
}

/// Binds a proxy listening socket on `addr`, with `SO_REUSEPORT` (see the module docs).
pub(crate) fn listen_on(addr: SocketAddr) -> io::Result<TcpListener> {
    listen(addr, true)
}

/// Binds a listening socket on `addr` (`SO_REUSEADDR`, `TCP_NODELAY`, and `SO_REUSEPORT`
/// when `reuse_port`: the admin listener has none, so that a second one cannot share it).
pub(crate) fn listen(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = bind_only(addr, reuse_port)?;
    // As large as the system allows (net.core.somaxconn).
    rustix::net::listen(&socket, -1)?;
    Ok(socket)
}

/// A socket bound to `addr` as [`listen`] binds it, not listening yet.
fn bind_only(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    use rustix::net::{self, sockopt, AddressFamily, SocketFlags, SocketType};
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    #[cfg(target_os = "linux")]
    let socket = net::socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
    // Not every system has SOCK_CLOEXEC (macOS does not).
    #[cfg(not(target_os = "linux"))]
    let socket = {
        let socket = net::socket_with(family, SocketType::STREAM, SocketFlags::empty(), None)?;
        rustix::io::fcntl_setfd(&socket, rustix::io::FdFlags::CLOEXEC)?;
        socket
    };
    sockopt::set_socket_reuseaddr(&socket, true)?;
    if reuse_port {
        sockopt::set_socket_reuseport(&socket, true)?;
    }
    // Accepted sockets inherit TCP_NODELAY from the listener on Linux: one system call
    // here instead of one per connection.
    sockopt::set_tcp_nodelay(&socket, true)?;
    net::bind(&socket, &addr)?;
    Ok(TcpListener::from(socket))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    #[test]
    fn accepted_connections_inherit_tcp_nodelay_from_the_listener() {
        let listener = listen(loopback(), false).unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(
            accepted.nodelay().unwrap(),
            "the accepted socket has Nagle on"
        );
        drop(client);
    }

    #[test]
    fn a_second_process_can_bind_the_address() {
        let bound = bind(&[loopback()], Vec::new()).unwrap();
        let addr = bound.local_addrs[0];
        let second = bind(&[addr], Vec::new()).expect("SO_REUSEPORT");
        assert_eq!(second.local_addrs, vec![addr]);
    }

    /// Accepts until `listener`'s queue is empty; how many.
    fn accept_all(listener: &TcpListener) -> usize {
        listener.set_nonblocking(true).unwrap();
        std::iter::from_fn(|| listener.accept().ok()).count()
    }

    #[test]
    fn every_worker_accepts_from_the_one_queue_of_an_address() {
        let bound = bind(&[loopback(), loopback()], Vec::new()).unwrap();
        assert!(bound.per_address.iter().all(|sockets| sockets.len() == 1));
        let per_worker = share(&bound.per_address[0], 3).unwrap();
        assert!(per_worker.iter().all(|descriptors| descriptors.len() == 1));
        // Sixteen connections, all in the queue that worker 2's descriptor reads: with a
        // socket per worker, the kernel would have put about two thirds elsewhere.
        let addr = bound.local_addrs[0];
        let clients: Vec<_> = (0..16)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        assert_eq!(accept_all(&per_worker[2][0]), clients.len());
        // And the queue is the one every other worker's descriptor reads.
        let late = std::net::TcpStream::connect(addr).unwrap();
        assert_eq!(accept_all(&per_worker[0][0]), 1);
        assert_eq!(accept_all(&per_worker[1][0]), 0);
        drop(late);
    }

    #[test]
    fn every_inherited_socket_is_kept_and_the_rest_closed() {
        // A previous process with a socket per worker (three) on one address, and one
        // on an address no longer listened on.
        let first = listen_on(loopback()).unwrap();
        let addr = first.local_addr().unwrap();
        let mut old = vec![first, listen_on(addr).unwrap(), listen_on(addr).unwrap()];
        let gone = listen_on(loopback()).unwrap();
        let gone_addr = gone.local_addr().unwrap();
        old.push(gone);
        let inherited = old
            .iter()
            .map(|s| (s.local_addr().unwrap(), s.try_clone().unwrap()))
            .collect();
        let new = bind(&[addr, loopback()], inherited).unwrap();
        assert_eq!(new.local_addrs[0], addr);
        assert_eq!(
            new.per_address[0].len(),
            3,
            "each is a queue to keep reading"
        );
        assert_eq!(new.per_address[1].len(), 1, "a new address gets one socket");
        assert_ne!(new.local_addrs[1], gone_addr);
        // Each of two workers reads all three queues.
        let per_worker = share(&new.per_address[0], 2).unwrap();
        assert!(per_worker.iter().all(|descriptors| descriptors.len() == 3));
        // The unconfigured socket's duplicate was closed: only the old one is left.
        drop(old.pop());
        assert!(std::net::TcpStream::connect(gone_addr).is_err());
    }

    #[test]
    fn an_inherited_socket_keeps_its_queued_connections() {
        let old = bind(&[loopback()], Vec::new()).unwrap();
        let addr = old.local_addrs[0];
        let socket = &old.per_address[0][0];
        let client = std::net::TcpStream::connect(addr).unwrap();
        let handed = vec![(addr, socket.try_clone().unwrap())];
        drop(old);
        let new = bind(&[addr], handed).unwrap();
        let (accepted, peer) = new.per_address[0][0].accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        drop(accepted);
    }
}
