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
use std::os::fd::OwnedFd;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::driver::Shared;
use crate::signal::Signal;
use crate::sockets;

/// What a reload asks of a worker.
#[derive(Debug)]
pub(crate) enum Command {
    /// Accept on this socket too (a new address; this worker's own socket for it).
    Listen(Listener),
    /// Pool connections to these servers only (the newest generation's); close the
    /// idle ones to any other.
    Servers(HashSet<SocketAddr>),
    /// Check the servers of these groups from now on, instead of the generation
    /// before's (sent to worker 0, which runs the health checks).
    Health(std::sync::Arc<[crate::upstream::Group]>),
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
    /// Duplicates of its sockets, taken before any is registered, to hand over to a
    /// successor (empty without an upgrade socket). Dropped with the entry, so a removed
    /// address is closed for good.
    duplicates: Vec<OwnedFd>,
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
    /// Whether the entries keep duplicates of their sockets (an upgrade socket is set).
    offer: bool,
}

/// Addresses bound for a reload but not yet handed to the workers: dropping it closes
/// them, and nothing has changed.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// `(configured, bound, one socket per worker)`.
    added: Vec<(SocketAddr, SocketAddr, Vec<TcpListener>)>,
    /// Duplicates of the added sockets, as [`Entry::duplicates`], in the same order.
    duplicates: Vec<Vec<OwnedFd>>,
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

/// Binds `addr` once per worker, each socket with `SO_REUSEPORT`; a port 0 is resolved
/// by the first socket, which the others join.
fn bind_address(addr: SocketAddr, workers: usize) -> io::Result<(SocketAddr, Vec<TcpListener>)> {
    let cannot = |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"));
    let first = sockets::listen_on(addr).map_err(cannot)?;
    let bound = first.local_addr()?;
    let mut sockets = Vec::with_capacity(workers);
    sockets.push(first);
    for _ in 1..workers {
        sockets.push(sockets::listen_on(bound).map_err(cannot)?);
    }
    Ok((bound, sockets))
}

/// Duplicates of `sockets` when `offer`, else none.
fn duplicates<'a>(
    offer: bool,
    sockets: impl IntoIterator<Item = &'a TcpListener>,
) -> io::Result<Vec<OwnedFd>> {
    if !offer {
        return Ok(Vec::new());
    }
    sockets
        .into_iter()
        .map(|socket| socket.try_clone().map(OwnedFd::from))
        .collect()
}

impl ListenerSet {
    /// Binds every address of `addrs` for `workers` workers, using the sockets of
    /// `inherited` (taken over from a running process) first (see [`sockets::bind`]);
    /// returns the set and, for each worker, its sockets in the order of `addrs`. With
    /// `offer`, the set keeps duplicates of every socket for a successor
    /// ([`ListenerSet::duplicates`]).
    pub(crate) fn bind(
        addrs: &[SocketAddr],
        workers: usize,
        inherited: Vec<(SocketAddr, TcpListener)>,
        offer: bool,
    ) -> io::Result<(ListenerSet, Vec<Vec<Listener>>)> {
        let bound = sockets::bind(addrs, workers, inherited)?;
        let mut entries: Vec<Entry> = addrs
            .iter()
            .zip(&bound.local_addrs)
            .map(|(&configured, &local)| Entry {
                configured,
                local,
                stop: Arc::new(Signal::default()),
                duplicates: Vec::new(),
            })
            .collect();
        let mut per_worker = Vec::with_capacity(workers);
        for sockets in bound.per_worker {
            let mut listeners = Vec::with_capacity(sockets.len());
            for socket in sockets {
                let local = socket.local_addr()?;
                let Some(entry) = entries.iter_mut().find(|entry| entry.local == local) else {
                    continue;
                };
                entry.duplicates.extend(duplicates(offer, [&socket])?);
                listeners.push(Listener {
                    socket,
                    stop: entry.stop.clone(),
                });
            }
            per_worker.push(listeners);
        }
        let set = ListenerSet {
            entries,
            workers,
            offer,
        };
        Ok((set, per_worker))
    }

    /// Duplicates of every listening socket, for a successor taking them over.
    pub(crate) fn duplicates(&self) -> io::Result<Vec<OwnedFd>> {
        self.entries
            .iter()
            .flat_map(|entry| &entry.duplicates)
            .map(OwnedFd::try_clone)
            .collect()
    }

    /// The bound addresses, in the order configured.
    pub(crate) fn local_addrs(&self) -> Vec<SocketAddr> {
        self.entries.iter().map(|entry| entry.local).collect()
    }

    /// The bound addresses of the listeners `wanted` names (as configured or as bound),
    /// among those listened on and those `prepared` adds.
    pub(crate) fn bound_for(
        &self,
        wanted: &[SocketAddr],
        prepared: Option<&Prepared>,
    ) -> Vec<SocketAddr> {
        let known = self.entries.iter().map(|e| (e.configured, e.local));
        let added = prepared.into_iter().flat_map(|p| {
            p.added
                .iter()
                .map(|&(configured, local, _)| (configured, local))
        });
        known
            .chain(added)
            .filter(|&(configured, local)| wanted.iter().any(|&w| w == configured || w == local))
            .map(|(_, local)| local)
            .collect()
    }

    /// Where the configured address `addr` is bound: by an entry, or by `prepared`'s
    /// new sockets (`addr` itself if neither has it).
    pub(crate) fn local_of(&self, prepared: Option<&Prepared>, addr: SocketAddr) -> SocketAddr {
        if let Some(entry) = self.entries.iter().find(|entry| entry.is(addr)) {
            return entry.local;
        }
        prepared
            .and_then(|p| {
                p.added
                    .iter()
                    .find(|(configured, _, _)| *configured == addr)
            })
            .map_or(addr, |&(_, local, _)| local)
    }

    /// Binds the addresses of `addrs` not listened on yet; fails, changing nothing, when
    /// one cannot be bound.
    pub(crate) fn prepare(&self, addrs: &[SocketAddr]) -> io::Result<Prepared> {
        let mut added = Vec::new();
        let mut duplicated = Vec::new();
        for &configured in addrs {
            let known = self.entries.iter().any(|e| e.is(configured));
            let twice = added.iter().any(|&(seen, _, _)| seen == configured);
            if !known && !twice {
                let (local, sockets) = bind_address(configured, self.workers)?;
                duplicated.push(duplicates(self.offer, &sockets)?);
                added.push((configured, local, sockets));
            }
        }
        let removed = (0..self.entries.len())
            .filter(|&index| !addrs.iter().any(|&addr| self.entries[index].is(addr)))
            .collect();
        Ok(Prepared {
            added,
            duplicates: duplicated,
            removed,
        })
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
        for ((configured, local, sockets), duplicates) in
            prepared.added.into_iter().zip(prepared.duplicates)
        {
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
                duplicates,
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
        let (mut set, per_worker) = ListenerSet::bind(&[any_port()], 2, Vec::new(), false).unwrap();
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
        let (mut set, per_worker) = ListenerSet::bind(&[any_port()], 1, Vec::new(), false).unwrap();
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
