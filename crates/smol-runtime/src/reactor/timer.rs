//! Deadlines for the tasks of a worker, kept in its reactor's ordered map.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::{Reactor, CURRENT};

/// Completes at a deadline; set again with [`Timer::set_at`]. Once fired it stays
/// pending until set again. Registered with the reactor only while being waited for
/// with a deadline in the future, and re-registered only when the deadline or the
/// waiting task changed.
#[derive(Debug)]
pub(crate) struct Timer {
    when: Option<Instant>,
    registered: Option<((Instant, u64), Waker)>,
}

impl Timer {
    /// A timer that never fires (until set).
    pub(crate) fn never() -> Timer {
        Timer {
            when: None,
            registered: None,
        }
    }

    /// A timer firing at `when`.
    pub(crate) fn at(when: Instant) -> Timer {
        Timer {
            when: Some(when),
            registered: None,
        }
    }

    /// A timer firing `after` from now.
    pub(crate) fn after(after: Duration) -> Timer {
        Timer::at(Instant::now() + after)
    }

    /// Fires at `when` instead.
    pub(crate) fn set_at(&mut self, when: Instant) {
        if self.when != Some(when) {
            self.unregister();
            self.when = Some(when);
        }
    }

    fn unregister(&mut self) {
        if let Some((key, _)) = self.registered.take() {
            // No reactor (the thread's `block_on` ended): nothing is registered either.
            let _ = CURRENT.try_with(|current| {
                if let Some(reactor) = &*current.borrow() {
                    // Dropped once the map is released: a waker's drop may run code.
                    let removed = reactor.timers.borrow_mut().remove(&key);
                    drop(removed);
                }
            });
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
        if let Some((_, waker)) = &self.registered {
            if waker.will_wake(cx.waker()) {
                return Poll::Pending;
            }
        }
        self.unregister();
        if let Ok(reactor) = Reactor::current() {
            let key = reactor.add_timer(when, cx.waker().clone());
            self.registered = Some((key, cx.waker().clone()));
        }
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

    #[test]
    fn timers_fire_in_order_and_not_early() {
        let fired = block_on(async {
            let start = Instant::now();
            let mut order = Vec::new();
            let late = async {
                Timer::after(Duration::from_millis(30)).await;
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
