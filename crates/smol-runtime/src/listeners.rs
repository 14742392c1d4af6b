//! The set of listening addresses, changed by a reload without an accept gap: an address
//! that stays keeps its sockets, a new one is bound (once per worker) and handed to
//! every worker through its inbox, a removed one stops accepting.
//!
//! A worker's inbox is also how a reload reaches the worker's own state: its upstream
//! pool (servers no generation uses any more) and, on worker 0, the timers that drain an
//! old generation once `drain_timeout` has passed.

use std::collections::HashSet;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::driver::Shared;
use crate::server::listen;
use crate::signal::Signal;

/// What a reload asks of a worker.
#[derive(Debug)]
pub(crate) enum Command {
    /// Accept on this socket too (a new address; this worker's own socket for it).
    Listen(Listener),
    /// Pool connections to these servers only (the newest generation's); close the
    /// idle ones to any other.
    Servers(HashSet<SocketAddr>),
    /// Drain `generation`'s connections once `after` has passed (sent to worker 0).
    Retire {
        generation: Weak<Shared>,
        after: Duration,
    },
}

/// One worker's listening socket for one address, and the signal that stops it.
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) socket: TcpListener,
    /// Fired when a reload removes the address.
    pub(crate) stop: Arc<Signal>,
}

/// One address being listened on.
#[derive(Debug)]
struct Entry {
    /// As configured (a port 0 stays 0: the same entry in the next configuration is the
    /// same listener).
    configured: SocketAddr,
    /// As bound.
    local: SocketAddr,
    stop: Arc<Signal>,
}

impl Entry {
    /// Whether a configured `addr` names this listener: its address as configured, or
    /// as bound (a port 0 that a configuration now names by the port it got).
    fn is(&self, addr: SocketAddr) -> bool {
        self.configured == addr || self.local == addr
    }
}

/// Every address listened on, in the order configured.
#[derive(Debug)]
pub(crate) struct ListenerSet {
    entries: Vec<Entry>,
    workers: usize,
}

/// Addresses bound for a reload but not yet handed to the workers: dropping it closes
/// them, and nothing has changed.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// `(configured, bound, one socket per worker)`.
    added: Vec<(SocketAddr, SocketAddr, Vec<TcpListener>)>,
    /// Indexes of the entries to remove.
    removed: Vec<usize>,
}

/// What [`ListenerSet::apply`] changed.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// Bound addresses now accepting.
    pub(crate) added: Vec<SocketAddr>,
    /// Bound addresses that stop accepting.
    pub(crate) removed: Vec<SocketAddr>,
}

/// Binds `addr` once per worker: with several workers each socket has `SO_REUSEPORT`,
/// and a port 0 is resolved by the first socket, which the others join.
fn bind_address(addr: SocketAddr, workers: usize) -> io::Result<(SocketAddr, Vec<TcpListener>)> {
    let cannot = |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"));
    let first = listen(addr, workers > 1).map_err(cannot)?;
    let bound = first.local_addr()?;
    let mut sockets = Vec::with_capacity(workers);
    sockets.push(first);
    for _ in 1..workers {
        sockets.push(listen(bound, true).map_err(cannot)?);
    }
    Ok((bound, sockets))
}

impl ListenerSet {
    /// Binds every address of `addrs` for `workers` workers; returns the set and, for
    /// each worker, its sockets in the order of `addrs`.
    pub(crate) fn bind(
        addrs: &[SocketAddr],
        workers: usize,
    ) -> io::Result<(ListenerSet, Vec<Vec<Listener>>)> {
        let mut per_worker: Vec<Vec<Listener>> = (0..workers)
            .map(|_| Vec::with_capacity(addrs.len()))
            .collect();
        let mut entries = Vec::with_capacity(addrs.len());
        for &configured in addrs {
            let (local, sockets) = bind_address(configured, workers)?;
            let stop = Arc::new(Signal::default());
            for (worker, socket) in per_worker.iter_mut().zip(sockets) {
                worker.push(Listener {
                    socket,
                    stop: stop.clone(),
                });
            }
            entries.push(Entry {
                configured,
                local,
                stop,
            });
        }
        Ok((ListenerSet { entries, workers }, per_worker))
    }

    /// The bound addresses, in the order configured.
    pub(crate) fn local_addrs(&self) -> Vec<SocketAddr> {
        self.entries.iter().map(|entry| entry.local).collect()
    }

    /// Binds the addresses of `addrs` not listened on yet; fails, changing nothing, when
    /// one cannot be bound.
    pub(crate) fn prepare(&self, addrs: &[SocketAddr]) -> io::Result<Prepared> {
        let mut added = Vec::new();
        for &configured in addrs {
            let known = self.entries.iter().any(|e| e.is(configured));
            let twice = added.iter().any(|&(seen, _, _)| seen == configured);
            if !known && !twice {
                let (local, sockets) = bind_address(configured, self.workers)?;
                added.push((configured, local, sockets));
            }
        }
        let removed = (0..self.entries.len())
            .filter(|&index| !addrs.iter().any(|&addr| self.entries[index].is(addr)))
            .collect();
        Ok(Prepared { added, removed })
    }

    /// Hands the new sockets to the workers (one each, through `inboxes`, indexed by
    /// worker) and stops accepting on the removed addresses. A worker whose inbox is
    /// closed (it stopped) drops its socket.
    pub(crate) fn apply(
        &mut self,
        prepared: Prepared,
        inboxes: &[async_channel::Sender<Command>],
    ) -> Applied {
        let mut applied = Applied::default();
        for &index in prepared.removed.iter().rev() {
            let entry = self.entries.remove(index);
            entry.stop.fire();
            applied.removed.insert(0, entry.local);
        }
        for (configured, local, sockets) in prepared.added {
            let stop = Arc::new(Signal::default());
            for (inbox, socket) in inboxes.iter().zip(sockets) {
                let listener = Listener {
                    socket,
                    stop: stop.clone(),
                };
                // Refused only once the worker has stopped: the socket closes here.
                let _ = inbox.try_send(Command::Listen(listener));
            }
            self.entries.push(Entry {
                configured,
                local,
                stop,
            });
            applied.added.push(local);
        }
        applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any_port() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    #[test]
    fn a_kept_address_keeps_its_sockets_and_a_new_one_is_bound_per_worker() {
        let (mut set, per_worker) = ListenerSet::bind(&[any_port()], 2).unwrap();
        assert_eq!(per_worker.len(), 2);
        let kept = set.local_addrs()[0];
        let spare = TcpListener::bind(any_port()).unwrap();
        let new = spare.local_addr().unwrap();
        drop(spare);
        let prepared = set.prepare(&[any_port(), new]).unwrap();
        assert!(prepared.removed.is_empty());
        let (inboxes, receivers): (Vec<_>, Vec<_>) =
            (0..2).map(|_| async_channel::unbounded()).unzip();
        let applied = set.apply(prepared, &inboxes);
        assert_eq!(applied.added, [new]);
        assert_eq!(set.local_addrs(), [kept, new]);
        for receiver in &receivers {
            match receiver.try_recv() {
                Ok(Command::Listen(listener)) => {
                    assert_eq!(listener.socket.local_addr().unwrap(), new)
                }
                other => panic!("each worker gets a socket of its own: {other:?}"),
            }
        }
        // The kept socket still accepts (no gap): its first worker's socket has it.
        let client = std::net::TcpStream::connect(kept).unwrap();
        drop(client);
        drop(per_worker);
    }

    #[test]
    fn a_removed_address_is_stopped_and_a_failed_bind_changes_nothing() {
        let (mut set, per_worker) = ListenerSet::bind(&[any_port()], 1).unwrap();
        let taken = TcpListener::bind(any_port()).unwrap();
        let busy = taken.local_addr().unwrap();
        // Without SO_REUSEPORT on `taken`, binding its address fails.
        assert!(set.prepare(&[any_port(), busy]).is_err());
        assert_eq!(set.local_addrs().len(), 1);
        let old = set.local_addrs()[0];
        let prepared = set.prepare(&[]).unwrap();
        let applied = set.apply(prepared, &[]);
        assert_eq!(applied.removed, [old]);
        assert!(
            per_worker[0][0].stop.is_set(),
            "its accept loops are told to stop"
        );
        assert!(set.local_addrs().is_empty());
    }
}
