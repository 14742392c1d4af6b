//! A one-shot broadcast flag that async tasks can wait on, and a counter of live
//! connections that can be waited on going down.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use event_listener::{Event, EventListener};

/// Set once, never cleared; every waiter wakes when it is set.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    set: AtomicBool,
    event: Event,
}

impl Signal {
    pub(crate) fn fire(&self) {
        self.set.store(true, Ordering::SeqCst);
        self.event.notify(usize::MAX);
    }

    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    /// A listener woken by the next [`Signal::fire`]; check [`Signal::is_set`] after
    /// taking it, for a fire that came before.
    pub(crate) fn listen(&self) -> EventListener {
        self.event.listen()
    }

    /// Completes once [`Signal::fire`] has been called (at once if it already was).
    pub(crate) async fn wait(&self) {
        loop {
            if self.is_set() {
                return;
            }
            // Listen before the second check so a `fire` in between is not lost.
            let listener = self.event.listen();
            if self.is_set() {
                return;
            }
            listener.await;
        }
    }
}

/// Counts live client connections; lets the accept loop wait for a free slot and the
/// shutdown path wait for zero.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    active: AtomicUsize,
    changed: Event,
}

impl Tracker {
    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Counts one connection until the returned guard is dropped.
    pub(crate) fn enter(self: &std::sync::Arc<Self>) -> ConnectionGuard {
        self.active.fetch_add(1, Ordering::SeqCst);
        ConnectionGuard {
            tracker: self.clone(),
        }
    }

    /// Counts one connection, as [`Tracker::enter`], unless `limit` connections are live
    /// already (0: no limit). Atomic, so threads accepting at once cannot overshoot.
    pub(crate) fn try_enter(self: &std::sync::Arc<Self>, limit: usize) -> Option<ConnectionGuard> {
        let mut live = self.active();
        loop {
            if limit > 0 && live >= limit {
                return None;
            }
            match self.active.compare_exchange_weak(
                live,
                live + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => {
                    return Some(ConnectionGuard {
                        tracker: self.clone(),
                    })
                }
                Err(now) => live = now,
            }
        }
    }

    /// Completes once fewer than `limit` connections are live.
    pub(crate) async fn wait_below(&self, limit: usize) {
        loop {
            if self.active() < limit {
                return;
            }
            let listener = self.changed.listen();
            if self.active() < limit {
                return;
            }
            listener.await;
        }
    }
}

/// Decrements the [`Tracker`] when dropped (also when a task is cancelled).
#[derive(Debug)]
pub(crate) struct ConnectionGuard {
    tracker: std::sync::Arc<Tracker>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.tracker.active.fetch_sub(1, Ordering::SeqCst);
        self.tracker.changed.notify(usize::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn try_enter_stops_at_the_limit_and_frees_the_slot_on_drop() {
        let tracker = Arc::new(Tracker::default());
        let first = tracker.try_enter(2).expect("below the limit");
        let second = tracker.try_enter(2).expect("below the limit");
        assert!(tracker.try_enter(2).is_none());
        assert_eq!(tracker.active(), 2);
        drop(first);
        let third = tracker.try_enter(2).expect("a slot was freed");
        assert!(tracker.try_enter(0).is_some(), "0 means no limit");
        drop((second, third));
        assert_eq!(tracker.active(), 0);
    }
}
