//! The portable backend: the same interface as the Linux reactor (`reactor/`), on
//! async-io (smol's reactor: `Async<T>`, `async_io::Timer`, `async_io::block_on`), for
//! every system but Linux and for Linux with the `portable` feature. No splice: tunnels
//! always copy (`pipe.rs` here has no pipe to give).
//!
//! async-io registers a socket one-shot and level-triggered each time a task waits on
//! it, and reports readiness only to a task that waited, so [`Io`] keeps a readiness
//! flag of its own, cleared by the same rule as the reactor's (a `WouldBlock`, a short
//! read or write). Being level-triggered, async-io forgives a flag cleared too early: a
//! wait on a socket that still has bytes, an EOF or urgent data queued ends at once. So
//! no hang-up or urgent-data state is needed here.
//!
//! The rule of the reactor holds here too: a registered socket is never duplicated.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

mod io_source;
pub(crate) mod pipe;

pub(crate) use io_source::Io;

/// Runs `future` on this thread until it completes, driving async-io's reactor while it
/// waits. Wakers work from any thread. Never fails (the reactor is set up on first use);
/// the `Result` is the interface's.
pub(crate) fn block_on<F: Future>(future: F) -> io::Result<F::Output> {
    Ok(async_io::block_on(future))
}

/// Completes at a deadline; set again with [`Timer::set_at`]. Once fired it stays
/// pending until set again. Works on any thread: async-io's reactor is global.
#[derive(Debug)]
pub(crate) struct Timer {
    timer: async_io::Timer,
    when: Option<Instant>,
}

impl Timer {
    /// A timer that never fires (until set).
    pub(crate) fn never() -> Timer {
        Timer {
            timer: async_io::Timer::never(),
            when: None,
        }
    }

    /// A timer firing at `when`.
    pub(crate) fn at(when: Instant) -> Timer {
        Timer {
            timer: async_io::Timer::at(when),
            when: Some(when),
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
        self.timer.set_at(when);
        self.when = Some(when);
    }

    /// The timer is handed to another task. Nothing to do: async-io's timer takes the
    /// waker of whichever task polls it.
    pub(crate) fn forget_waker(&mut self) {}
}

impl Future for Timer {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // A one-shot async-io timer yields its deadline once and then stays pending,
        // as the reactor's timer does.
        let fired = Pin::new(&mut self.timer).poll(cx).map(|_| ());
        if fired.is_ready() {
            self.when = None;
        }
        fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fired_timer_stays_pending_until_set_again() {
        block_on(async {
            let mut timer = Timer::after(Duration::from_millis(5));
            let start = Instant::now();
            (&mut timer).await;
            assert!(start.elapsed() >= Duration::from_millis(5));
            let again = futures_lite::future::poll_once(&mut timer).await;
            assert!(again.is_none(), "fired once");
            timer.set_at(Instant::now());
            (&mut timer).await;
        })
        .unwrap();
    }

    #[test]
    fn another_thread_wakes_a_waiting_block_on() {
        let signal = std::sync::Arc::new(crate::signal::Signal::default());
        let fire = signal.clone();
        let firing = std::thread::spawn(move || fire.fire());
        block_on(signal.wait()).unwrap();
        firing.join().unwrap();
    }
}
