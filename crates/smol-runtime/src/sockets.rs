//! Creating the proxy's listening sockets, one per worker and address, fresh or taken
//! over from a running process (see `handover/`); which addresses are listened on, and
//! how a reload changes them, is `listeners.rs`.
//!
//! Every proxy listener has `SO_REUSEPORT`, even with one worker: a second process
//! (a new binary being rolled out) can then bind the same address while this one still
//! serves, and the kernel spreads new connections over both until this one stops.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};

use crate::backend::Io;

/// For each worker, its listening sockets, and the address each `listen` entry is bound
/// to (a port 0 resolved), in the order of `listen`.
#[derive(Debug)]
pub(crate) struct Bound {
    /// Indexed by worker. With sockets taken over, a worker may accept on several
    /// sockets of one address (the previous process had more workers).
    pub(crate) per_worker: Vec<Vec<TcpListener>>,
    pub(crate) local_addrs: Vec<SocketAddr>,
}

/// Binds `listen` for `workers` workers. The sockets in `inherited` whose address is a
/// `listen` entry are used first: each one is a separate accept queue that must keep
/// being accepted from, so all of them are spread over the workers (several on one
/// worker when there are fewer workers than sockets); workers left without one bind a
/// fresh socket, which joins the same port through `SO_REUSEPORT`, but listens only
/// once [`start`] is called: until this server accepts, the old process serves the
/// address, and a socket listening already would take a share of its connections and
/// hold them unanswered. Inherited sockets of addresses not in `listen` are closed.
/// Errors name the address.
pub(crate) fn bind(
    listen: &[SocketAddr],
    workers: usize,
    mut inherited: Vec<(SocketAddr, TcpListener)>,
) -> io::Result<Bound> {
    let mut per_worker: Vec<Vec<TcpListener>> = (0..workers)
        .map(|_| Vec::with_capacity(listen.len()))
        .collect();
    let mut local_addrs = Vec::with_capacity(listen.len());
    for &addr in listen {
        let cannot =
            |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"));
        let (taken, rest): (Vec<_>, Vec<_>) = inherited
            .into_iter()
            .partition(|(bound, _)| addr.port() != 0 && *bound == addr);
        inherited = rest;
        let served_already = !taken.is_empty();
        let mut sockets = taken.into_iter().map(|(_, socket)| socket);
        let mut bound = None;
        for worker in 0..workers.max(sockets.len()) {
            // Port 0 resolved by the first socket: the others join the same port.
            let socket = match sockets.next() {
                Some(socket) => socket,
                None if served_already => bind_only(addr, true).map_err(cannot)?,
                None => listen_on(bound.unwrap_or(addr)).map_err(cannot)?,
            };
            bound.get_or_insert(socket.local_addr()?);
            per_worker[worker % workers].push(socket);
        }
        local_addrs.push(bound.unwrap_or(addr));
    }
    for (addr, _) in &inherited {
        tracing::info!(%addr, "a listener taken over is not configured here: closed");
    }
    Ok(Bound {
        per_worker,
        local_addrs,
    })
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
/// to `serve`; returns how many. Closing a listener resets the connections still in its
/// queue (with `SO_REUSEPORT`, the kernel went on queueing new ones on it until now), so
/// they are served, drained like the others. Ones arriving between the last accept and
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

/// Makes every socket of `sockets` listen: the ones [`bind`] left bound only. A socket
/// listening already only has its backlog set again, to the same maximum.
pub(crate) fn start<'a>(sockets: impl IntoIterator<Item = &'a TcpListener>) -> io::Result<()> {
    for socket in sockets {
        rustix::net::listen(socket, -1)?;
    }
    Ok(())
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

/// A socket bound to `addr` as [`listen`] binds it, not listening yet: no connection
/// reaches it (the kernel spreads connections only over listening sockets).
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
    fn a_second_process_can_bind_the_address_of_a_single_worker() {
        let bound = bind(&[loopback()], 1, Vec::new()).unwrap();
        let addr = bound.local_addrs[0];
        let second = bind(&[addr], 1, Vec::new()).expect("SO_REUSEPORT with one worker too");
        assert_eq!(second.local_addrs, vec![addr]);
    }

    #[test]
    fn every_inherited_socket_is_accepted_from_whatever_the_worker_count() {
        let old = bind(&[loopback(), loopback()], 3, Vec::new()).unwrap();
        let addrs = old.local_addrs.clone();
        let inherited = |old: &Bound| -> Vec<(SocketAddr, TcpListener)> {
            old.per_worker
                .iter()
                .flatten()
                .map(|s| (s.local_addr().unwrap(), s.try_clone().unwrap()))
                .collect()
        };
        // Fewer workers: the three sockets of each address are all kept, on two workers.
        let fewer = bind(&addrs, 2, inherited(&old)).unwrap();
        assert_eq!(fewer.local_addrs, addrs);
        let counts: Vec<usize> = fewer.per_worker.iter().map(Vec::len).collect();
        assert_eq!(counts, vec![4, 2]);
        // More workers: three inherited sockets per address, two fresh ones, which take
        // no connection before the server starts.
        let more = bind(&addrs, 5, inherited(&old)).unwrap();
        assert!(more.per_worker.iter().all(|w| w.len() == 2));
        let listening = |bound: &Bound| -> Vec<bool> {
            let sockets = bound.per_worker.iter().flatten();
            sockets
                .map(|s| rustix::net::sockopt::socket_acceptconn(s).unwrap())
                .collect()
        };
        assert_eq!(listening(&more).iter().filter(|l| !**l).count(), 4);
        start(more.per_worker.iter().flatten()).unwrap();
        assert!(listening(&more).iter().all(|l| *l));
        let old_ports: Vec<u16> = addrs.iter().map(SocketAddr::port).collect();
        for socket in more.per_worker.iter().flatten() {
            assert!(old_ports.contains(&socket.local_addr().unwrap().port()));
        }
        // An address no longer listened on is dropped, the others kept.
        let one = bind(&addrs[..1], 1, inherited(&old)).unwrap();
        assert_eq!(one.per_worker[0].len(), 3);
    }

    #[test]
    fn an_inherited_socket_keeps_its_queued_connections() {
        let old = bind(&[loopback()], 1, Vec::new()).unwrap();
        let addr = old.local_addrs[0];
        let socket = &old.per_worker[0][0];
        let client = std::net::TcpStream::connect(addr).unwrap();
        let handed = vec![(addr, socket.try_clone().unwrap())];
        drop(old);
        let new = bind(&[addr], 1, handed).unwrap();
        let (accepted, peer) = new.per_worker[0][0].accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        drop(accepted);
    }
}
