//! One reactor per worker thread: an epoll instance where every socket is registered
//! once, edge-triggered, and a timer list, driven by [`block_on`] between runs of the
//! worker's executor.
//!
//! Why not `async-io`'s reactor: it is one per process (with two workers, wake-ups cross
//! threads through a futex and an eventfd), it registers sockets one-shot (an
//! `epoll_ctl` for every wait), and every wait re-arms a timerfd and an eventfd (two
//! more `epoll_ctl`s). Measured with `strace -c`, that was 11 system calls per proxied
//! HTTP request; here it is the reads, the writes and at most one `epoll_wait` per
//! wake-up (see `docs/DECISIONS.md`).
//!
//! Readiness is kept per socket, the way nginx keeps `ready` on its events: the kernel
//! reports a change once (edge-triggered), the flag stays set until a read or write
//! finds the socket drained (`WouldBlock`, or a short read/write), and only then does a
//! task wait. A peer's FIN (`EPOLLRDHUP`) keeps the socket readable, since a short read
//! can leave the EOF still to be seen; such a read proves that the EOF comes next, and
//! the next read returns it without a system call.
//!
//! Readiness is right only if every read and write reports what it found, so the
//! sockets are reachable only through [`Io`]'s methods, which do (see `io_source.rs`).
//! A [`Timer`] waits only inside [`block_on`]: polled anywhere else it panics rather
//! than hang (see its docs).
//!
//! # A registered socket is never duplicated
//!
//! No `try_clone`, `dup` or `into_inner` of a socket once it is registered, and a
//! socket is registered once. epoll's interest list holds the *open file description*:
//! it drops an entry only when the last descriptor of that description is closed. [`Io`]
//! relies on that to deregister for free (closing the socket, with no
//! `EPOLL_CTL_DEL`); a duplicate would keep the entry alive after the `Io` is gone, and
//! its events would keep arriving under the data of a freed slot (ignored by the
//! generation check, but never stopped); registered in turn, a duplicate would be a
//! second entry for the same socket, two slots whose readiness each read or write
//! keeps for one of them only. The pool hands the `Io` itself from task to task
//! instead.
//!
//! Listening sockets are the one exception: duplicates of them are kept to offer a
//! successor (`handover/`), which then holds the very same sockets, so a listener's
//! socket can outlive its worker's descriptor; dropping a listener's [`Io`] unregisters
//! it (`EPOLL_CTL_DEL`).
//!
//! Everything here is single-threaded (`Rc`, `RefCell`), except the [`Notifier`] that
//! lets another thread wake a sleeping worker (a shutdown signal, a slot freed in the
//! connection limit).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::num::NonZeroU32;
use std::os::fd::OwnedFd;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use rustix::event::{epoll, eventfd, EventfdFlags, Timespec};
use timers::{TimerKey, Timers};

mod io_source;
mod timer;
mod timers;

pub(crate) use io_source::Io;
pub(crate) use timer::Timer;

/// The epoll data of the notifier's eventfd (sockets use their slot and generation).
const NOTIFY: u64 = u64::MAX;
/// Events taken per `epoll_wait`.
const EVENTS: usize = 256;

thread_local! {
    static CURRENT: RefCell<Option<Rc<Reactor>>> = const { RefCell::new(None) };
    /// The stamp of the thread's next timer registration (see [`TimerKey`]).
    static NEXT_TIMER: Cell<u32> = const { Cell::new(1) };
}

/// A worker thread's reactor.
pub(crate) struct Reactor {
    epoll: OwnedFd,
    sources: RefCell<Sources>,
    /// Waiting timers, their deadlines in nanoseconds from `epoch` (8 bytes where an
    /// `Instant` takes 16).
    timers: RefCell<Timers>,
    /// Where the wakers of due timers wait to be woken, outside the table's borrow (kept
    /// for its room).
    due: RefCell<Vec<Waker>>,
    /// What timer deadlines count from: the reactor's start (no registered deadline is
    /// earlier: a timer due already does not register).
    epoch: Instant,
    notifier: Arc<Notifier>,
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("sources", &self.sources.borrow().live())
            .field("timers", &self.timers.borrow().len())
            .finish()
    }
}

/// Readiness and waiting tasks of every registered socket, by slot.
#[derive(Default)]
struct Sources {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

/// What is known of the end of a socket's incoming stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Hup {
    /// Nothing yet.
    #[default]
    Open,
    /// The peer's FIN arrived (`EPOLLRDHUP`): what is queued ends with the EOF.
    Fin,
    /// The FIN arrived and a short read took everything before it, so every read from
    /// now on returns the EOF: [`Io`] answers it without asking the kernel.
    Drained,
    /// `EPOLLHUP` or `EPOLLERR`: the socket failed, or both directions are closed; a
    /// read returns the EOF or the error.
    Failed,
}

/// 24 bytes: two of them per connection, in every worker's table.
#[derive(Default)]
struct Slot {
    /// Bumped when the slot is freed, so an event for its old socket is ignored (the
    /// events of one `epoll_wait` are handled before any slot is freed 65,536 times).
    generation: u16,
    readable: bool,
    writable: bool,
    /// The peer closed (or the socket failed): reads will not block again.
    hup: Hup,
    /// Urgent (out-of-band) data arrived: a read stops short at its mark with more
    /// queued behind it, so only `WouldBlock` says the socket is drained.
    urgent: bool,
    /// The waiting task waits for the socket to become readable, writable.
    wants_read: bool,
    wants_write: bool,
    /// The task waiting on the socket, whichever way: a socket belongs to one task at a
    /// time (it is handed on only after [`Io::forget_wakers`]), so one waker serves both
    /// directions.
    waiter: Option<Waker>,
}

impl Slot {
    /// Records that the task of `waker` waits for readability (`read`) or writability.
    fn wait(&mut self, waker: &Waker, read: bool) {
        match &self.waiter {
            Some(old) if old.will_wake(waker) => {}
            // Another task now: what the previous one waited for is no longer wanted.
            _ => {
                self.waiter = Some(waker.clone());
                self.wants_read = false;
                self.wants_write = false;
            }
        }
        if read {
            self.wants_read = true;
        } else {
            self.wants_write = true;
        }
    }

    /// The waiter, taken, when it waits for what just became ready: it polls again and
    /// registers what it still waits for.
    fn wake_for(&mut self, readable: bool, writable: bool) -> Option<Waker> {
        if (readable && self.wants_read) || (writable && self.wants_write) {
            self.wants_read = false;
            self.wants_write = false;
            self.waiter.take()
        } else {
            None
        }
    }

    fn forget(&mut self) -> Option<Waker> {
        self.wants_read = false;
        self.wants_write = false;
        self.waiter.take()
    }
}

impl Sources {
    fn live(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    fn insert(&mut self, readable: bool, writable: bool) -> (u32, u16) {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot::default());
                // More than u32::MAX sockets cannot be open.
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.readable = readable;
        slot.writable = writable;
        slot.hup = Hup::Open;
        slot.urgent = false;
        (index, slot.generation)
    }

    fn remove(&mut self, index: u32) -> Option<Waker> {
        let slot = &mut self.slots[index as usize];
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
        slot.forget()
    }
}

/// The epoll data of a socket: its slot and the slot's generation, so that an event
/// for a freed slot's old socket is told apart from one for its new socket.
fn event_data(index: u32, generation: u16) -> u64 {
    u64::from(generation) << 32 | u64::from(index)
}

fn split_event_data(data: u64) -> (u32, u16) {
    ((data & 0xffff_ffff) as u32, (data >> 32) as u16)
}

/// Wakes the thread running [`block_on`], from any thread.
struct Notifier {
    /// The future of `block_on` should be polled.
    woken: AtomicBool,
    /// The thread is in (or about to enter) `epoll_wait` with a timeout.
    sleeping: AtomicBool,
    eventfd: OwnedFd,
}

impl Wake for Notifier {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // SeqCst on both sides: either this sees `sleeping`, or the sleeper sees `woken`
        // before it blocks.
        if !self.woken.swap(true, Ordering::SeqCst) && self.sleeping.load(Ordering::SeqCst) {
            // Fails only when the counter is saturated, which wakes the sleeper anyway.
            let _ = rustix::io::write(&self.eventfd, &1u64.to_ne_bytes());
        }
    }
}

impl Reactor {
    fn new() -> io::Result<Rc<Reactor>> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let eventfd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(
            &epoll,
            &eventfd,
            epoll::EventData::new_u64(NOTIFY),
            epoll::EventFlags::IN | epoll::EventFlags::ET,
        )?;
        Ok(Rc::new(Reactor {
            epoll,
            sources: RefCell::new(Sources {
                slots: Vec::with_capacity(2 * crate::backend::RESERVED_CONNECTIONS),
                free: Vec::with_capacity(2 * crate::backend::RESERVED_CONNECTIONS),
            }),
            timers: RefCell::new(Timers::with_capacity(crate::backend::RESERVED_CONNECTIONS)),
            due: RefCell::new(Vec::new()),
            epoch: Instant::now(),
            notifier: Arc::new(Notifier {
                woken: AtomicBool::new(true),
                sleeping: AtomicBool::new(false),
                eventfd,
            }),
        }))
    }

    /// Runs `f` on this thread's reactor, if one runs, without taking a handle to it.
    fn with_current<R>(f: impl FnOnce(&Reactor) -> R) -> Option<R> {
        CURRENT.with(|current| current.borrow().as_deref().map(f))
    }

    fn current() -> io::Result<Rc<Reactor>> {
        CURRENT
            .with(|current| current.borrow().clone())
            .ok_or_else(|| io::Error::other("no switchyard reactor runs on this thread"))
    }

    /// Waits for events (without blocking when `block` is false, else until the next
    /// timer), records readiness, wakes the tasks waiting for it and fires due timers.
    fn turn(&self, block: bool, events: &mut Vec<epoll::Event>) -> io::Result<()> {
        let mut timeout = Some(Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        });
        if block {
            self.notifier.sleeping.store(true, Ordering::SeqCst);
            if !self.notifier.woken.load(Ordering::SeqCst) {
                timeout = self.timeout();
            }
        }
        events.clear();
        let waited = epoll::wait(
            &self.epoll,
            rustix::buffer::spare_capacity(events),
            timeout.as_ref(),
        );
        self.notifier.sleeping.store(false, Ordering::SeqCst);
        match waited {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(error) => return Err(error.into()),
        }
        for event in events.iter() {
            // Copied out: the event is a packed struct.
            let (flags, data) = (event.flags, event.data.u64());
            if data == NOTIFY {
                let mut count = [0u8; 8];
                // Resets the counter; an empty one (WouldBlock) is as good.
                let _ = rustix::io::read(&self.notifier.eventfd, &mut count);
                continue;
            }
            self.ready(data, flags);
        }
        self.fire_timers(Instant::now());
        Ok(())
    }

    fn ready(&self, data: u64, flags: epoll::EventFlags) {
        use epoll::EventFlags as F;
        let (index, generation) = split_event_data(data);
        let waiter = {
            let mut sources = self.sources.borrow_mut();
            let Some(slot) = sources.slots.get_mut(index as usize) else {
                return;
            };
            if slot.generation != generation {
                return; // the socket is gone; its slot may already serve another
            }
            let failed = flags.intersects(F::HUP | F::ERR);
            if failed {
                slot.hup = Hup::Failed;
            } else if flags.contains(F::RDHUP) && slot.hup == Hup::Open {
                slot.hup = Hup::Fin;
            }
            if flags.contains(F::PRI) {
                slot.urgent = true;
            }
            let readable = failed || flags.intersects(F::IN | F::RDHUP | F::PRI);
            let writable = failed || flags.contains(F::OUT);
            slot.readable |= readable;
            slot.writable |= writable;
            slot.wake_for(readable, writable)
        };
        // Woken outside the borrow: a waker may run code that registers sockets.
        if let Some(waker) = waiter {
            waker.wake();
        }
    }

    /// How long `epoll_wait` may block: until the earliest timer (rounded up to the
    /// millisecond, so a timer is never woken for early), or forever.
    fn timeout(&self) -> Option<Timespec> {
        let when = self.epoch + Duration::from_nanos(self.timers.borrow().first()?);
        // Capped: a longer timeout would need `epoll_pwait2`, which older kernels lack;
        // waking once an hour costs nothing.
        let wait = when
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(3600));
        let millis = wait.as_nanos().div_ceil(1_000_000);
        let millis = i64::try_from(millis).unwrap_or(i64::MAX / 1000);
        Some(Timespec {
            tv_sec: millis / 1000,
            tv_nsec: (millis % 1000) * 1_000_000,
        })
    }

    fn fire_timers(&self, now: Instant) {
        let now = self.ticks(now);
        if !self
            .timers
            .borrow()
            .first()
            .is_some_and(|first| first <= now)
        {
            return;
        }
        let mut due = std::mem::take(&mut *self.due.borrow_mut());
        self.timers
            .borrow_mut()
            .pop_due(now, |waker| due.push(waker));
        // Woken outside the borrows: a waker may run code that sets timers.
        for waker in due.drain(..) {
            waker.wake();
        }
        *self.due.borrow_mut() = due;
    }

    /// Registers a timer due at `when` that wakes `waker`.
    fn add_timer(&self, when: Instant, waker: Waker) -> TimerKey {
        let stamp = NEXT_TIMER.get();
        // 0 is no stamp: the counter skips it when it wraps.
        NEXT_TIMER.set(stamp.checked_add(1).unwrap_or(1));
        let stamp = NonZeroU32::new(stamp).unwrap_or(NonZeroU32::MIN);
        self.timers
            .borrow_mut()
            .insert(self.ticks(when), waker, stamp)
    }

    /// `at` in nanoseconds from the reactor's start (0 before it; 584 years fit).
    fn ticks(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.epoch);
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Runs `future` on this thread with a reactor of its own, which every [`Io`] and
/// [`Timer`] created inside uses, until the future completes.
pub(crate) fn block_on<F: Future>(future: F) -> io::Result<F::Output> {
    let reactor = Reactor::new()?;
    CURRENT.with(|current| *current.borrow_mut() = Some(reactor.clone()));
    // The reactor stops being current however this ends (sockets still open keep it
    // alive through their `Rc`).
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CURRENT.with(|current| current.borrow_mut().take());
        }
    }
    let _reset = Reset;
    let notifier = reactor.notifier.clone();
    let waker = Waker::from(notifier.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    let mut events = Vec::with_capacity(EVENTS);
    loop {
        if notifier.woken.swap(false, Ordering::SeqCst) {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return Ok(output);
            }
        }
        // Blocks only when the future has nothing left to do; otherwise events are
        // collected without waiting, so a busy executor cannot starve the sockets.
        let block = !notifier.woken.load(Ordering::SeqCst);
        reactor.turn(block, &mut events)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two slots per connection stay resident while it idles.
    #[test]
    fn a_slot_is_24_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 24);
    }

    #[test]
    fn another_thread_wakes_a_sleeping_reactor() {
        let (sender, receiver) = std::sync::mpsc::channel::<Waker>();
        let flag = Arc::new(AtomicBool::new(false));
        let set = flag.clone();
        let waker_thread = std::thread::spawn(move || {
            let waker = receiver.recv().unwrap();
            set.store(true, Ordering::SeqCst);
            waker.wake();
        });
        block_on(std::future::poll_fn(|cx| {
            if flag.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            let _ = sender.send(cx.waker().clone());
            Poll::Pending
        }))
        .unwrap();
        waker_thread.join().unwrap();
    }
}
