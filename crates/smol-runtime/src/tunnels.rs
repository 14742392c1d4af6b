//! The live tunnel registry: the tunnels open now, for the admin listener's
//! `/status.json`. Each worker's connections enter their tunnel when it opens and leave
//! when it ends (a handle's drop, whichever way the task ends); the counts of an entry
//! are written by its connection's thread alone and read by a scrape.
//!
//! Nothing here is on a tunnel's data path but [`TunnelHandle::update`]: four relaxed
//! stores to the entry's own memory after each read. Entering and leaving lock the
//! worker's own list, which only a scrape (once a second or so) also takes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use switchyard_core::{Config, RouteId, TunnelTraffic};

/// The open tunnels of every worker.
#[derive(Debug)]
pub(crate) struct Registry {
    workers: Box<[Padded]>,
}

/// One worker's list on cache lines of its own (see `metrics/block.rs` for why 128).
#[repr(align(128))]
#[derive(Debug, Default)]
struct Padded(Mutex<Slots>);

/// A slab: entries by slot, and the slots free for reuse.
#[derive(Debug, Default)]
struct Slots {
    entries: Vec<Option<Arc<Entry>>>,
    free: Vec<usize>,
}

/// One open tunnel.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The client's address and port.
    pub(crate) client: SocketAddr,
    /// The configuration the connection was accepted under, which names its route.
    core: Arc<Config>,
    route: RouteId,
    /// The protocol switched to, as the upstream named it.
    pub(crate) protocol: String,
    /// When the tunnel opened.
    pub(crate) opened: Instant,
    /// Whether it follows WebSocket frames (and so counts messages).
    pub(crate) frame_aware: bool,
    /// Bytes from the client, bytes from the upstream, messages from the client,
    /// messages from the upstream.
    counts: [AtomicU64; 4],
}

impl Entry {
    /// The route's prefix, from the connection's own configuration.
    pub(crate) fn route(&self) -> &str {
        self.core
            .routes
            .get(self.route)
            .map_or("none", |route| route.prefix.as_str())
    }

    /// What the tunnel carried until its last read: `(bytes_in, bytes_out, messages_in,
    /// messages_out)`, "in" from the client, "out" to it.
    pub(crate) fn counts(&self) -> [u64; 4] {
        self.counts
            .each_ref()
            .map(|count| count.load(Ordering::Relaxed))
    }
}

/// What is known of a tunnel when it opens.
#[derive(Debug)]
pub(crate) struct Opened<'a> {
    pub(crate) worker: usize,
    pub(crate) client: SocketAddr,
    pub(crate) core: &'a Arc<Config>,
    pub(crate) route: RouteId,
    pub(crate) protocol: &'a str,
    pub(crate) now: Instant,
    /// What the core counted already (leftovers of the handshake); `messages` set for a
    /// frame-aware tunnel.
    pub(crate) traffic: TunnelTraffic,
}

impl Registry {
    /// A registry for `workers` workers.
    pub(crate) fn new(workers: usize) -> Registry {
        Registry {
            workers: (0..workers.max(1)).map(|_| Padded::default()).collect(),
        }
    }

    fn slots(&self, worker: usize) -> MutexGuard<'_, Slots> {
        let padded = &self.workers[worker.min(self.workers.len() - 1)];
        // A panic while holding it left a slab that is still consistent (every change
        // is a single assignment).
        padded
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Enters a tunnel that just opened; it stays listed until the handle is dropped.
    pub(crate) fn open(self: &Arc<Self>, opened: Opened<'_>) -> TunnelHandle {
        let entry = Arc::new(Entry {
            client: opened.client,
            core: opened.core.clone(),
            route: opened.route,
            protocol: opened.protocol.to_string(),
            opened: opened.now,
            frame_aware: opened.traffic.messages.is_some(),
            counts: Default::default(),
        });
        let handle_entry = entry.clone();
        let slot = {
            let mut slots = self.slots(opened.worker);
            match slots.free.pop() {
                Some(slot) => {
                    slots.entries[slot] = Some(entry);
                    slot
                }
                None => {
                    slots.entries.push(Some(entry));
                    slots.entries.len() - 1
                }
            }
        };
        let handle = TunnelHandle {
            registry: self.clone(),
            entry: handle_entry,
            worker: opened.worker,
            slot,
        };
        handle.update(&opened.traffic);
        handle
    }

    fn close(&self, worker: usize, slot: usize) {
        let mut slots = self.slots(worker);
        if let Some(entry) = slots.entries.get_mut(slot) {
            if entry.take().is_some() {
                slots.free.push(slot);
            }
        }
    }

    /// Every open tunnel, each worker's list copied under its lock (pointers only; the
    /// counts are read afterwards).
    pub(crate) fn snapshot(&self) -> Vec<Arc<Entry>> {
        let mut all = Vec::new();
        for worker in 0..self.workers.len() {
            let slots = self.slots(worker);
            all.extend(slots.entries.iter().flatten().cloned());
        }
        all
    }
}

/// A connection's entry in the [`Registry`], held while its tunnel is open; dropping it
/// takes the tunnel off the list.
#[derive(Debug)]
pub(crate) struct TunnelHandle {
    registry: Arc<Registry>,
    entry: Arc<Entry>,
    worker: usize,
    slot: usize,
}

impl TunnelHandle {
    /// Publishes what the tunnel carried so far. Relaxed stores: only this connection's
    /// thread writes them, and a scrape that reads one count of a read and not yet the
    /// other is off by one read, for a second.
    #[inline]
    pub(crate) fn update(&self, traffic: &TunnelTraffic) {
        let counts = &self.entry.counts;
        counts[0].store(traffic.bytes_client_to_upstream, Ordering::Relaxed);
        counts[1].store(traffic.bytes_upstream_to_client, Ordering::Relaxed);
        if let Some((from_client, from_upstream)) = traffic.messages {
            counts[2].store(from_client, Ordering::Relaxed);
            counts[3].store(from_upstream, Ordering::Relaxed);
        }
    }
}

impl Drop for TunnelHandle {
    fn drop(&mut self) {
        self.registry.close(self.worker, self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(worker: usize, core: &Arc<Config>, port: u16, messages: bool) -> Opened<'_> {
        Opened {
            worker,
            client: SocketAddr::from(([127, 0, 0, 1], port)),
            core,
            route: 0,
            protocol: "websocket",
            now: Instant::now(),
            traffic: TunnelTraffic {
                bytes_client_to_upstream: 3,
                bytes_upstream_to_client: 4,
                messages: messages.then_some((1, 2)),
            },
        }
    }

    #[test]
    fn a_tunnel_is_listed_from_open_until_its_handle_drops_and_its_slot_is_reused() {
        let core = Arc::new(Config::default());
        let registry = Arc::new(Registry::new(2));
        let first = registry.open(opened(0, &core, 1000, true));
        let second = registry.open(opened(1, &core, 1001, false));
        let ports = |registry: &Registry| {
            let mut ports: Vec<u16> = registry
                .snapshot()
                .iter()
                .map(|e| e.client.port())
                .collect();
            ports.sort_unstable();
            ports
        };
        assert_eq!(ports(&registry), [1000, 1001]);
        drop(first);
        assert_eq!(ports(&registry), [1001]);
        let third = registry.open(opened(0, &core, 1002, true));
        assert_eq!(third.slot, 0, "the freed slot is reused");
        assert_eq!(ports(&registry), [1001, 1002]);
        drop((second, third));
        assert!(registry.snapshot().is_empty());
    }

    #[test]
    fn counts_are_the_last_update_and_messages_only_for_frame_aware_tunnels() {
        let core = Arc::new(Config::default());
        let registry = Arc::new(Registry::new(1));
        let ws = registry.open(opened(0, &core, 1, true));
        let bytes = registry.open(opened(0, &core, 2, false));
        let by_port = |port: u16| {
            let all = registry.snapshot();
            let entry = all.iter().find(|e| e.client.port() == port).unwrap();
            (entry.counts(), entry.frame_aware, entry.route().to_string())
        };
        assert_eq!(by_port(1), ([3, 4, 1, 2], true, "/".to_string()));
        assert_eq!(by_port(2), ([3, 4, 0, 0], false, "/".to_string()));
        ws.update(&TunnelTraffic {
            bytes_client_to_upstream: 10,
            bytes_upstream_to_client: 20,
            messages: Some((5, 6)),
        });
        assert_eq!(by_port(1).0, [10, 20, 5, 6]);
        drop(bytes);
    }

    /// What the live list adds to an open tunnel: its entry (behind an `Arc`'s two
    /// counts) and a slot of its worker's list; the protocol's name is a few bytes more.
    #[test]
    fn an_entry_stays_small() {
        let entry = std::mem::size_of::<Entry>();
        println!("Entry {entry} bytes");
        assert!(entry <= 136, "Entry is {entry} bytes");
    }

    #[test]
    fn a_worker_index_past_the_last_uses_the_last_list_instead_of_panicking() {
        let core = Arc::new(Config::default());
        let registry = Arc::new(Registry::new(1));
        let handle = registry.open(opened(7, &core, 9, false));
        assert_eq!(registry.snapshot().len(), 1);
        drop(handle);
        assert!(registry.snapshot().is_empty());
    }
}
