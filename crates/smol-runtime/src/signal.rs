//! A one-shot broadcast flag that async tasks can wait on, and a counter of live
//! connections that can be waited on going down.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use event_listener::{Event, EventListener};
use slab::Slab;

/// Set once, never cleared; every waiter wakes when it is set.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    set: AtomicBool,
    event: Event,
    /// The tasks of connections waiting for it, each by a key it keeps (see
    /// [`Signal::poll_fired`]): a waker in a slab, 24 bytes, where an
    /// [`EventListener`] is an allocation of 56 that every idle connection would hold.
    waiters: Mutex<Slab<Waker>>,
}

impl Signal {
    pub(crate) fn fire(&self) {
        self.set.store(true, Ordering::SeqCst);
        self.event.notify(usize::MAX);
        let waiters = std::mem::take(&mut *self.lock_waiters());
        // Woken outside the lock: a waker may run code.
        for (_, waker) in waiters {
            waker.wake();
        }
    }

    fn lock_waiters(&self) -> std::sync::MutexGuard<'_, Slab<Waker>> {
        // A panic while holding it leaves a slab of wakers, still usable.
        self.waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Ready once the signal is set; until then the task of `cx` is woken when it is.
    /// `key` is the caller's registration, kept between polls: the waker of the first
    /// poll is the one woken, so the caller polls from one task for as long as it keeps
    /// the key (a connection's driver does: its task's waker never changes), and the
    /// lock, which every worker shares, is taken only to register, not on every wait.
    /// Give the key back with [`Signal::forget`] when no longer waiting.
    pub(crate) fn poll_fired(&self, key: &mut Option<u32>, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_set() {
            return Poll::Ready(());
        }
        if key.is_some() {
            return Poll::Pending;
        }
        let mut waiters = self.lock_waiters();
        // Checked again under the lock, which `fire` takes after setting the flag: a
        // fire in between is seen here or wakes the waker registered now.
        if self.is_set() {
            return Poll::Ready(());
        }
        let entry = waiters.insert(cx.waker().clone());
        match u32::try_from(entry) {
            Ok(entry) => *key = Some(entry),
            // More than 4 billion waiting connections cannot be: never kept.
            Err(_) => drop(waiters.remove(entry)),
        }
        Poll::Pending
    }

    /// Ends the registration `key` of [`Signal::poll_fired`].
    pub(crate) fn forget(&self, key: &mut Option<u32>) {
        if let Some(k) = key.take() {
            let removed = self.lock_waiters().try_remove(k as usize);
            drop(removed);
        }
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
    use crate::test_support::Wakes;
    use std::sync::Arc;

    /// A connection waiting for the drain is woken by the fire, once, through the waker
    /// it registered; one that stopped waiting is not, and leaves nothing behind.
    #[test]
    fn a_fire_wakes_every_registered_waiter_once_and_none_that_was_forgotten() {
        let signal = Signal::default();
        let waiting = Arc::new(Wakes::default());
        let gone = Arc::new(Wakes::default());
        let (waiting_waker, gone_waker) = (Waker::from(waiting.clone()), Waker::from(gone.clone()));
        let (mut waiting_key, mut gone_key) = (None, None);
        let mut cx = Context::from_waker(&waiting_waker);
        assert!(signal.poll_fired(&mut waiting_key, &mut cx).is_pending());
        assert!(signal.poll_fired(&mut waiting_key, &mut cx).is_pending());
        assert_eq!(signal.lock_waiters().len(), 1, "registered once");
        let mut gone_cx = Context::from_waker(&gone_waker);
        assert!(signal.poll_fired(&mut gone_key, &mut gone_cx).is_pending());
        signal.forget(&mut gone_key);
        assert_eq!((gone_key, signal.lock_waiters().len()), (None, 1));
        signal.fire();
        assert_eq!(waiting.count(), 1);
        assert_eq!(gone.count(), 0);
        assert!(signal.poll_fired(&mut waiting_key, &mut cx).is_ready());
        assert!(
            signal.poll_fired(&mut None, &mut cx).is_ready(),
            "set: ready at once"
        );
        assert!(signal.lock_waiters().is_empty());
        signal.forget(&mut waiting_key);
    }

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
