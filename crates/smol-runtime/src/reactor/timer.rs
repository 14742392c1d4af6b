//! Deadlines for the tasks of a worker, kept in its reactor's timer table (`timers.rs`).

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::{Reactor, TimerKey};

/// Completes at a deadline; set again with [`Timer::set_at`]. Once fired it stays
/// pending until set again. Registered with the reactor only while being waited for
/// with a deadline in the future, and re-registered only when the deadline changed or
/// the timer was handed to another task ([`Timer::forget_waker`]): while registered it
/// wakes the task that polled it, and a poll costs no look at the reactor.
///
/// # Panics
///
/// When it has to wait outside [`block_on`](super::block_on) (no reactor runs on the
/// thread, so nothing would ever wake it): every task of this crate runs inside
/// `block_on`, so that is a bug of the crate, reported where it happens instead of as a
/// connection that hangs.
#[derive(Debug)]
pub(crate) struct Timer {
    when: Option<Instant>,
    /// Its place in the reactor's timers while it waits there (which holds the task's
    /// waker: the timer itself keeps 8 bytes of it, and each connection's task carries a
    /// timer). No handle to the reactor: the timer is only ever polled and dropped on
    /// the thread whose reactor registered it.
    registered: Option<TimerKey>,
    /// Not `Send`: a registration is in the table of this thread's reactor.
    thread: PhantomData<Rc<()>>,
}

impl Timer {
    /// A timer that never fires (until set).
    pub(crate) fn never() -> Timer {
        Timer {
            when: None,
            registered: None,
            thread: PhantomData,
        }
    }

    /// A timer firing at `when`.
    pub(crate) fn at(when: Instant) -> Timer {
        Timer {
            when: Some(when),
            registered: None,
            thread: PhantomData,
        }
    }

    /// A timer firing `after` from now.
    pub(crate) fn after(after: Duration) -> Timer {
        Timer::at(Instant::now() + after)
    }

    /// The deadline it is set to; `None` once it fired (or when it never fires).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.when
    }

    /// Fires at `when` instead.
    pub(crate) fn set_at(&mut self, when: Instant) {
        if self.when != Some(when) {
            self.unregister();
            self.when = Some(when);
        }
    }

    /// The timer is handed to another task: the next poll registers that task's waker
    /// (until then a registered timer wakes the task that polled it).
    pub(crate) fn forget_waker(&mut self) {
        self.unregister();
    }

    fn unregister(&mut self) {
        let Some(key) = self.registered.take() else {
            return;
        };
        // No reactor on this thread any more (its `block_on` returned): its table, and the
        // entry, go with it.
        if let Ok(reactor) = Reactor::current() {
            // Dropped once the table is released: a waker's drop may run code.
            let removed = reactor.timers.borrow_mut().remove(key);
            drop(removed);
        }
    }
}

impl Future for Timer {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(when) = self.when else {
            return Poll::Pending;
        };
        if when <= Instant::now() {
            self.unregister();
            self.when = None;
            return Poll::Ready(());
        }
        if let Some(key) = self.registered {
            // Registered by this task (a timer handed to another task forgets its
            // registration first: `forget_waker`), so the reactor wakes it when due.
            debug_assert!(
                Reactor::with_current(|reactor| reactor.timers.borrow().wakes(key, cx.waker()))
                    .unwrap_or(true),
                "a registered timer was polled by another task"
            );
            return Poll::Pending;
        }
        let reactor = match Reactor::current() {
            Ok(reactor) => reactor,
            Err(_) => panic!(
                "a switchyard timer was polled outside the reactor's `block_on`: \
                 nothing would ever wake it"
            ),
        };
        self.registered = Some(reactor.add_timer(when, cx.waker().clone()));
        Poll::Pending
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.unregister();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reactor::block_on;
    use crate::test_support::Wakes;
    use std::sync::Arc;
    use std::task::Waker;

    /// A timer dropped while it waits (a deadline that lost a race, a connection that
    /// closed) leaves nothing behind in the reactor, and nothing wakes its task later.
    #[test]
    fn a_timer_dropped_before_it_fires_leaves_nothing_and_wakes_nothing() {
        block_on(async {
            let reactor = Reactor::current().unwrap();
            let wakes = Arc::new(Wakes::default());
            let waker = Waker::from(wakes.clone());
            let mut cx = Context::from_waker(&waker);
            let mut timer = Timer::after(Duration::from_secs(3600));
            assert!(Pin::new(&mut timer).poll(&mut cx).is_pending());
            assert!(Pin::new(&mut timer).poll(&mut cx).is_pending());
            assert_eq!(reactor.timers.borrow().len(), 1, "registered once");
            // Handed to another task: registered for it instead, not twice.
            timer.forget_waker();
            let other = Waker::from(Arc::new(Wakes::default()));
            assert!(Pin::new(&mut timer)
                .poll(&mut Context::from_waker(&other))
                .is_pending());
            assert_eq!(reactor.timers.borrow().len(), 1);
            timer.set_at(Instant::now() + Duration::from_secs(7200));
            assert_eq!(
                reactor.timers.borrow().len(),
                0,
                "a moved deadline unregisters"
            );
            assert!(Pin::new(&mut timer).poll(&mut cx).is_pending());
            drop(timer);
            assert_eq!(
                reactor.timers.borrow().len(),
                0,
                "the table holds nothing more"
            );
            reactor.fire_timers(Instant::now() + Duration::from_secs(10_000));
            assert_eq!(wakes.count(), 0, "no wake-up after the drop");
        })
        .unwrap();
    }

    /// The tunnel's handover: the HTTP task's timer goes on in the tunnel's task, which
    /// it then wakes, and not the task it left.
    #[test]
    fn a_timer_handed_to_another_task_wakes_that_task() {
        block_on(async {
            let reactor = Reactor::current().unwrap();
            let (first, second) = (Arc::new(Wakes::default()), Arc::new(Wakes::default()));
            let mut timer = Timer::after(Duration::from_secs(3600));
            let waker = Waker::from(first.clone());
            assert!(Pin::new(&mut timer)
                .poll(&mut Context::from_waker(&waker))
                .is_pending());
            timer.forget_waker();
            assert!(
                reactor.timers.borrow().is_empty(),
                "the old task's waker is let go"
            );
            let waker = Waker::from(second.clone());
            assert!(Pin::new(&mut timer)
                .poll(&mut Context::from_waker(&waker))
                .is_pending());
            reactor.fire_timers(Instant::now() + Duration::from_secs(3601));
            assert_eq!((first.count(), second.count()), (0, 1));
        })
        .unwrap();
    }

    #[test]
    fn a_due_timer_wakes_its_task_once_and_then_stays_pending() {
        block_on(async {
            let reactor = Reactor::current().unwrap();
            let wakes = Arc::new(Wakes::default());
            let waker = Waker::from(wakes.clone());
            let mut cx = Context::from_waker(&waker);
            let mut timer = Timer::after(Duration::from_secs(3600));
            assert!(Pin::new(&mut timer).poll(&mut cx).is_pending());
            reactor.fire_timers(Instant::now() + Duration::from_secs(3601));
            assert_eq!(wakes.count(), 1);
            assert!(reactor.timers.borrow().is_empty());
            timer.set_at(Instant::now());
            assert!(Pin::new(&mut timer).poll(&mut cx).is_ready());
            assert!(
                Pin::new(&mut timer).poll(&mut cx).is_pending(),
                "fired: until set"
            );
            assert!(reactor.timers.borrow().is_empty());
        })
        .unwrap();
    }

    /// Outside `block_on` no reactor would ever wake the timer: a bug of the crate, so
    /// it panics at once instead of leaving a task pending forever.
    #[test]
    #[should_panic(expected = "timer was polled outside the reactor")]
    fn a_timer_polled_outside_a_reactor_panics() {
        futures_lite::future::block_on(Timer::after(Duration::from_secs(3600)));
    }

    #[test]
    fn timers_fire_in_order_and_not_early() {
        let fired = block_on(async {
            let start = Instant::now();
            let mut order = Vec::new();
            // Far enough out that no stall of a loaded machine makes both due at once
            // (`or` would then take the first it polls, the late one).
            let late = async {
                Timer::after(Duration::from_secs(10)).await;
                2
            };
            let early = async {
                Timer::after(Duration::from_millis(10)).await;
                1
            };
            order.push(futures_lite::future::or(late, early).await);
            assert!(start.elapsed() >= Duration::from_millis(10));
            order
        })
        .unwrap();
        assert_eq!(fired, [1]);
    }
}
