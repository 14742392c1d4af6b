//! The wait between two inputs: the first of a write that made progress, a socket the
//! core wants read that became readable, the shutdown signal, or the core's deadline.
//!
//! One hand-written poll over what the driver keeps anyway (its peers, its timer, its
//! registration with the shutdown signal), rather than a tree of `future::or` around a
//! future per condition: that tree sat in every connection's task (200 bytes, also
//! while a tunnel idles) and was built again on every wake-up.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::future;
use std::future::Future;
use switchyard_core::Side;

use super::peer::{poll_readable, poll_write_queued, wants_write};
use super::{Link, Wake};

impl Link {
    /// Makes sure the timer fires no later than the core's next deadline. A deadline that
    /// moved later (each tunnel read moves the read deadline) leaves the timer as it is:
    /// it fires early, the timeout is a no-op, and the timer is set again then. Moving a
    /// timer costs the reactor far more than one spurious wake-up.
    pub(super) fn arm_timer(&mut self) {
        let Some(deadline) = self.conn.poll_timeout() else {
            return; // a timer still armed only causes a harmless wake-up
        };
        if self.timer.deadline().map_or(true, |armed| deadline < armed) {
            self.timer.set_at(deadline);
        }
    }

    /// Begins a wait: the timer armed, the peers to read decided, the turn taken.
    pub(super) fn begin_wait(&mut self) {
        self.arm_timer();
        let client = self.should_read(Side::Client);
        let upstream = self.should_read(Side::Upstream);
        // Whichever is looked at first wins when both are ready: take turns, so that one
        // busy direction of a tunnel cannot starve the other.
        self.wait.begin(client, upstream);
    }

    /// Ends a wait that completed, counting it among the waits in a row unless it slept.
    pub(super) fn end_wait(&mut self) {
        self.waits = if self.wait.waiting() {
            0
        } else {
            self.waits.saturating_add(1)
        };
        self.wait.end();
    }

    /// Sleeps until a socket is readable, a write made progress, the deadline passed or
    /// shutdown began.
    pub(super) async fn wait(&mut self) -> Wake {
        self.begin_wait();
        let wake = future::poll_fn(|cx| {
            let poll = self.poll_wake(cx);
            if poll.is_pending() {
                self.wait.set_waiting();
            }
            poll
        })
        .await;
        self.end_wait();
        wake
    }

    /// One look at every condition of the wait, in order: writes (the client's first),
    /// reads (in turns), shutdown, deadline. Each registers the task's waker where it is
    /// pending, so the next wake-up polls again.
    pub(super) fn poll_wake(&mut self, cx: &mut Context<'_>) -> Poll<Wake> {
        for side in [Side::Client, Side::Upstream] {
            if let Some(peer) = self.peer(side).filter(|peer| wants_write(peer)) {
                if let Poll::Ready(result) = poll_write_queued(peer, cx) {
                    return Poll::Ready(Wake::Wrote(side, result));
                }
            }
        }
        let order = if self.wait.client_first() {
            [Side::Client, Side::Upstream]
        } else {
            [Side::Upstream, Side::Client]
        };
        for side in order {
            if self.wait.reads(side) {
                if let Some(peer) = self.peer(side) {
                    if poll_readable(peer, cx).is_ready() {
                        return Poll::Ready(Wake::Readable(side));
                    }
                }
            }
        }
        if !self.shutdown_key.told() && self.shutdown_key.poll(&self.shared.shutdown, cx).is_ready()
        {
            return Poll::Ready(Wake::Shutdown);
        }
        if Pin::new(&mut self.timer).poll(cx).is_ready() {
            return Poll::Ready(Wake::Timer);
        }
        Poll::Pending
    }
}

/// A wait's state in one byte: whose turn the next wait begins with, whether the
/// current one slept, and which peers it looks at for readability (decided once at its
/// start). One byte rather than four flags: every idle tunnel keeps it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct WaitState(u8);

impl WaitState {
    const CLIENT_FIRST: u8 = 1;
    const WAITING: u8 = 2;
    const READ_CLIENT: u8 = 4;
    const READ_UPSTREAM: u8 = 8;

    /// A wait begins: the turn passes to the other peer.
    fn begin(&mut self, client: bool, upstream: bool) {
        let turn = (self.0 & Self::CLIENT_FIRST) ^ Self::CLIENT_FIRST;
        let mut bits = turn;
        if client {
            bits |= Self::READ_CLIENT;
        }
        if upstream {
            bits |= Self::READ_UPSTREAM;
        }
        self.0 = bits;
    }

    /// The wait completed; the turn stays.
    fn end(&mut self) {
        self.0 &= Self::CLIENT_FIRST;
    }

    /// The wait slept (found nothing ready).
    pub(super) fn set_waiting(&mut self) {
        self.0 |= Self::WAITING;
    }

    pub(super) fn waiting(self) -> bool {
        self.0 & Self::WAITING != 0
    }

    fn client_first(self) -> bool {
        self.0 & Self::CLIENT_FIRST != 0
    }

    fn reads(self, side: Side) -> bool {
        let bit = match side {
            Side::Client => Self::READ_CLIENT,
            Side::Upstream => Self::READ_UPSTREAM,
        };
        self.0 & bit != 0
    }
}
