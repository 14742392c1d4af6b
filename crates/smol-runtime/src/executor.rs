//! A worker thread's executor: connection tasks woken on their own thread go on a
//! thread-local run queue, and only a wake from another thread (a shutdown signal, a
//! reload's command, a slot freed in the connection limit) takes a lock.
//!
//! Why not async-executor's `LocalExecutor`: it is its multi-threaded `Executor` with a
//! `!Send` spawn, so every wake-up pushes onto a concurrent queue and notifies its
//! sleepers through a mutex, and every run looks at that queue, its local queue and
//! other runners to steal from. A worker's tasks are woken by its own reactor, on its
//! own thread, almost always. Measured with callgrind, what a worker spent outside its
//! tasks' own polls fell from 933 to 320 instructions per small WebSocket echo, and from
//! 1,122 to 333 per keep-alive request (`benches/RESULTS.md`, "Waking tasks without the
//! shared queue").
//!
//! Tasks are `async_task`'s, as under async-executor: the same `Task` handle (`detach`,
//! awaiting its output, cancelling on drop), a panic in a task caught and handed to its
//! handle (a detached connection's panic ends that connection, not the worker), and the
//! tasks still alive when the executor is dropped are dropped with it, closing their
//! sockets.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use async_task::{Builder, Runnable, Task};
use slab::Slab;

/// Tasks run between two looks at the reactor, as async-executor's `run` did: a task
/// that keeps waking itself cannot starve the sockets.
const BUDGET: usize = 200;

/// Ids of executors, so that a wake on a thread tells its own executor's queue from
/// another's (0: none).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The run queue of the executor that owns this thread, if any.
    static LOCAL: RefCell<Local> = const {
        RefCell::new(Local {
            owner: 0,
            queue: VecDeque::new(),
            running: false,
            waker: None,
        })
    };
}

/// One thread's run queue.
struct Local {
    /// The id of the executor whose queue this is (0: none).
    owner: u64,
    queue: VecDeque<Runnable>,
    /// `run` is running tasks: it will see a push without being woken.
    running: bool,
    /// What wakes the thread's `block_on` when a task is pushed outside `run`.
    waker: Option<Waker>,
}

/// What the wakers of every task share: the way in from other threads.
struct Shared {
    id: u64,
    /// Tasks woken on other threads (or on this one when another executor owns the
    /// thread's queue).
    foreign: Mutex<VecDeque<Runnable>>,
    /// `foreign` is not empty: read without the lock on every run.
    has_foreign: AtomicBool,
    /// The waker of the `block_on` running this executor, for foreign wakes.
    waker: Mutex<Option<Waker>>,
}

impl Shared {
    /// Queues a woken task: on this thread's queue when this executor owns it, else
    /// through the lock, waking the executor's thread.
    fn schedule(&self, runnable: Runnable) {
        // Moved into the queue only once it is known to be ours: were the thread-local
        // gone, a closure owning it would drop the task, perhaps on the wrong thread.
        let mut runnable = Some(runnable);
        let _ = LOCAL.try_with(|local| {
            // Already borrowed only when this wake comes from inside the queue's own
            // bookkeeping (an executor run inside another's task, whose waker this is):
            // the lock's way is as good.
            let Ok(mut local) = local.try_borrow_mut() else {
                return;
            };
            if local.owner != self.id {
                return;
            }
            local.queue.extend(runnable.take());
            if !local.running {
                if let Some(waker) = &local.waker {
                    waker.wake_by_ref();
                }
            }
        });
        if let Some(runnable) = runnable {
            let mut foreign = self.foreign.lock().unwrap_or_else(PoisonError::into_inner);
            foreign.push_back(runnable);
            // Under the lock, so that `pop_foreign` clearing it sees every push.
            self.has_foreign.store(true, Ordering::Release);
            drop(foreign);
            let waker = self.waker.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(waker) = &*waker {
                waker.wake_by_ref();
            }
        }
    }

    /// Takes the tasks woken from other threads.
    fn take_foreign(&self) -> VecDeque<Runnable> {
        if !self.has_foreign.swap(false, Ordering::Acquire) {
            return VecDeque::new();
        }
        std::mem::take(&mut *self.foreign.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The next task woken from other threads, for an executor without the thread's
    /// queue.
    fn pop_foreign(&self) -> Option<Runnable> {
        if !self.has_foreign.load(Ordering::Acquire) {
            return None;
        }
        let mut foreign = self.foreign.lock().unwrap_or_else(PoisonError::into_inner);
        let next = foreign.pop_front();
        if foreign.is_empty() {
            self.has_foreign.store(false, Ordering::Release);
        }
        next
    }
}

/// Runs tasks on the thread that created it (it is neither `Send` nor `Sync`), inside
/// [`LocalExecutor::run`] under the backend's `block_on`.
pub(crate) struct LocalExecutor {
    shared: Arc<Shared>,
    /// A waker of every task alive, so that dropping the executor can drop them.
    active: Rc<RefCell<Slab<Waker>>>,
}

impl std::fmt::Debug for LocalExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalExecutor")
            .field("tasks", &self.active.borrow().len())
            .finish()
    }
}

impl Default for LocalExecutor {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalExecutor {
    /// An executor for this thread; it takes the thread's run queue unless another
    /// executor holds it (then its tasks are queued through the lock, which is slower
    /// and as correct).
    pub(crate) fn new() -> LocalExecutor {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let _ = LOCAL.try_with(|local| {
            let mut local = local.borrow_mut();
            if local.owner == 0 {
                local.owner = id;
                local.running = false;
                local.waker = None;
            }
        });
        LocalExecutor {
            shared: Arc::new(Shared {
                id,
                foreign: Mutex::new(VecDeque::new()),
                has_foreign: AtomicBool::new(false),
                waker: Mutex::new(None),
            }),
            // Room for its connections' tasks from the start (see `RESERVED_CONNECTIONS`).
            active: Rc::new(RefCell::new(Slab::with_capacity(
                crate::backend::RESERVED_CONNECTIONS,
            ))),
        }
    }

    /// Spawns `future` as a task of this executor; it runs once [`run`](Self::run) runs.
    /// The task is cancelled when the handle is dropped, unless detached.
    pub(crate) fn spawn<F>(&self, future: F) -> Task<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let mut active = self.active.borrow_mut();
        let entry = active.vacant_entry();
        let key = entry.key();
        let future = Tracked {
            future,
            _leave: Leave {
                registry: self.active.clone(),
                key,
            },
        };
        let shared = self.shared.clone();
        let (runnable, task) = Builder::new()
            .propagate_panic(true)
            .spawn_local(move |()| future, move |runnable| shared.schedule(runnable));
        entry.insert(runnable.waker());
        drop(active);
        runnable.schedule();
        task
    }

    /// Runs this executor's tasks until `future` completes: at most [`BUDGET`] of them
    /// at a time, then it yields to the caller's `block_on` (which looks at the reactor
    /// without blocking when tasks are left, and sleeps only when none are). `future`
    /// is polled only when it was woken: it is a worker's own loop, which waits on
    /// signals whose every poll takes a lock, and it would otherwise be polled on every
    /// turn of the reactor.
    pub(crate) async fn run<T>(&self, future: impl Future<Output = T>) -> T {
        let mut future = pin!(future);
        let main = Arc::new(MainWake {
            woken: AtomicBool::new(true),
            outer: Mutex::new(None),
        });
        let main_waker = Waker::from(main.clone());
        let mut outer: Option<Waker> = None;
        std::future::poll_fn(|cx| {
            let owned = self.set_waker(cx.waker());
            if !outer.as_ref().is_some_and(|old| old.will_wake(cx.waker())) {
                outer = Some(cx.waker().clone());
                *main.outer.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(cx.waker().clone());
                // Polled once under a new waker, whatever happened before.
                main.woken.store(true, Ordering::Release);
            }
            if main.woken.swap(false, Ordering::AcqRel) {
                let mut main_cx = Context::from_waker(&main_waker);
                if let Poll::Ready(output) = future.as_mut().poll(&mut main_cx) {
                    return Poll::Ready(output);
                }
            }
            if self.run_queued(owned) || main.woken.load(Ordering::Acquire) {
                cx.waker().wake_by_ref();
            }
            Poll::Pending
        })
        .await
    }

    /// Records the waker of the `block_on` running this executor; returns whether the
    /// executor owns this thread's queue.
    fn set_waker(&self, waker: &Waker) -> bool {
        let owned = LOCAL
            .try_with(|local| {
                let mut local = local.borrow_mut();
                if local.owner != self.shared.id {
                    return false;
                }
                if !local.waker.as_ref().is_some_and(|old| old.will_wake(waker)) {
                    local.waker = Some(waker.clone());
                    // Other threads' wakes need it too: set only when it changes.
                    *self
                        .shared
                        .waker
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(waker.clone());
                }
                true
            })
            .unwrap_or(false);
        if !owned {
            let mut shared = self
                .shared
                .waker
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !shared.as_ref().is_some_and(|old| old.will_wake(waker)) {
                *shared = Some(waker.clone());
            }
        }
        owned
    }

    /// Runs up to [`BUDGET`] queued tasks; returns whether some are still queued.
    fn run_queued(&self, owned: bool) -> bool {
        if !owned {
            // Every task of an executor without the thread's queue comes this way.
            for _ in 0..BUDGET {
                let Some(runnable) = self.shared.pop_foreign() else {
                    return false;
                };
                runnable.run();
            }
            return self.shared.has_foreign.load(Ordering::Acquire);
        }
        let foreign = self.shared.take_foreign();
        let _ = LOCAL.try_with(|local| {
            let mut local = local.borrow_mut();
            local.queue.extend(foreign);
            local.running = true;
        });
        for _ in 0..BUDGET {
            // Popped in a borrow of its own: the task's run wakes others onto the queue.
            let next = LOCAL
                .try_with(|local| local.borrow_mut().queue.pop_front())
                .ok()
                .flatten();
            let Some(runnable) = next else {
                break;
            };
            runnable.run();
        }
        let queued = LOCAL
            .try_with(|local| {
                let mut local = local.borrow_mut();
                local.running = false;
                !local.queue.is_empty()
            })
            .unwrap_or(false);
        queued || self.shared.has_foreign.load(Ordering::Acquire)
    }
}

impl Drop for LocalExecutor {
    fn drop(&mut self) {
        // Every task alive is woken, so that it is queued, then every queued task is
        // dropped (its future with it) instead of run.
        let wakers: Vec<Waker> = self.active.borrow_mut().drain().collect();
        for waker in wakers {
            waker.wake();
        }
        let id = self.shared.id;
        loop {
            let mut queued = self.shared.take_foreign();
            let _ = LOCAL.try_with(|local| {
                let mut local = local.borrow_mut();
                if local.owner == id {
                    queued.extend(local.queue.drain(..));
                }
            });
            if queued.is_empty() {
                break;
            }
            // Dropped outside the borrow: a future's drop may wake other tasks.
            drop(queued);
        }
        let _ = LOCAL.try_with(|local| {
            let mut local = local.borrow_mut();
            if local.owner == id {
                local.owner = 0;
                local.running = false;
                local.waker = None;
            }
        });
        *self
            .shared
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// The waker of the future [`LocalExecutor::run`] runs: it marks that future to be
/// polled, and wakes the `block_on` around it.
struct MainWake {
    woken: AtomicBool,
    outer: Mutex<Option<Waker>>,
}

impl Wake for MainWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.woken.swap(true, Ordering::AcqRel) {
            let outer = self.outer.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(outer) = &*outer {
                outer.wake_by_ref();
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A task's future and its place in the executor's set. A struct rather than an
    /// `async` block awaiting `future`: the block would keep the moved-from future
    /// beside the one it awaits, twice the size of a connection's task.
    struct Tracked<F> {
        #[pin]
        future: F,
        // Leaves the set however the task ends: completed, cancelled, or dropped with
        // the executor (then the set is already drained and the key vacant).
        _leave: Leave,
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().future.poll(cx)
    }
}

/// Removes a task from its executor's set when the task ends.
struct Leave {
    registry: Rc<RefCell<Slab<Waker>>>,
    key: usize,
}

impl Drop for Leave {
    fn drop(&mut self) {
        if let Ok(mut registry) = self.registry.try_borrow_mut() {
            registry.try_remove(self.key);
        }
    }
}

#[cfg(test)]
mod tests;
