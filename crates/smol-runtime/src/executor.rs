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
            active: Rc::new(RefCell::new(Slab::new())),
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
mod tests {
    use std::cell::Cell;
    use std::sync::mpsc;

    use futures_lite::future;

    use super::*;

    /// Completes once `flag` is set, keeping the waker of its last poll in `waker`.
    fn wait_for(
        flag: Rc<Cell<bool>>,
        waker: Rc<RefCell<Option<Waker>>>,
    ) -> impl Future<Output = ()> {
        std::future::poll_fn(move |cx| {
            if flag.get() {
                return Poll::Ready(());
            }
            *waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
    }

    fn foreign_len(executor: &LocalExecutor) -> usize {
        executor.shared.foreign.lock().unwrap().len()
    }

    /// A connection's task is its future and a few words, not twice its future.
    #[test]
    fn a_tracked_future_adds_two_words() {
        let future = async {
            let held = [7u8; 1024];
            future::yield_now().await;
            held.len()
        };
        let bare = std::mem::size_of_val(&future);
        let tracked = Tracked {
            future,
            _leave: Leave {
                registry: Rc::new(RefCell::new(Slab::new())),
                key: 0,
            },
        };
        let size = std::mem::size_of_val(&tracked);
        assert!(size <= bare.next_multiple_of(8) + 16, "{size} for {bare}");
    }

    #[test]
    fn a_wake_on_the_executors_thread_skips_the_lock() {
        let executor = LocalExecutor::new();
        let (flag, waker) = (Rc::new(Cell::new(false)), Rc::new(RefCell::new(None)));
        let task = executor.spawn(wait_for(flag.clone(), waker.clone()));
        let ran = future::block_on(executor.run(async {
            future::yield_now().await;
            flag.set(true);
            // Woken here, on this thread: onto the thread's queue, not the shared one.
            waker.borrow_mut().take().unwrap().wake();
            assert_eq!(foreign_len(&executor), 0);
            assert!(!executor.shared.has_foreign.load(Ordering::SeqCst));
            task.await;
            true
        }));
        assert!(ran);
    }

    #[test]
    fn a_wake_from_another_thread_runs_the_task() {
        let executor = LocalExecutor::new();
        let (sender, receiver) = mpsc::channel::<Waker>();
        let woken = Arc::new(AtomicBool::new(false));
        let set = woken.clone();
        let task = executor.spawn(std::future::poll_fn(move |cx| {
            if woken.load(Ordering::SeqCst) {
                return Poll::Ready(7);
            }
            let _ = sender.send(cx.waker().clone());
            Poll::Pending
        }));
        let thread = std::thread::spawn(move || {
            let waker = receiver.recv().unwrap();
            set.store(true, Ordering::SeqCst);
            waker.wake();
        });
        // futures-lite's block_on sleeps until the other thread's wake reaches it.
        assert_eq!(future::block_on(executor.run(task)), 7);
        thread.join().unwrap();
    }

    #[test]
    fn the_main_future_is_polled_only_when_woken() {
        let executor = LocalExecutor::new();
        let (sender, receiver) = mpsc::channel::<Waker>();
        let waking = std::thread::spawn(move || {
            for _ in 0..20 {
                receiver.recv().unwrap().wake();
            }
        });
        let mut polls = 0;
        let mut task = executor.spawn(std::future::poll_fn(move |cx| {
            polls += 1;
            if polls > 20 {
                return Poll::Ready(polls);
            }
            sender.send(cx.waker().clone()).unwrap();
            Poll::Pending
        }));
        let main_polls = Cell::new(0);
        let task_polls = future::block_on(executor.run(std::future::poll_fn(|cx| {
            main_polls.set(main_polls.get() + 1);
            std::pin::Pin::new(&mut task).poll(cx)
        })));
        waking.join().unwrap();
        // The task was woken 20 times from the other thread; the future awaiting it
        // only when it completed.
        assert_eq!((task_polls, main_polls.get()), (21, 2));
    }

    #[test]
    fn a_second_executor_on_one_thread_runs_its_tasks_through_the_lock() {
        let first = LocalExecutor::new();
        let second = LocalExecutor::new();
        let (flag, waker) = (Rc::new(Cell::new(false)), Rc::new(RefCell::new(None)));
        let task = second.spawn(wait_for(flag.clone(), waker.clone()));
        future::block_on(second.run(async {
            future::yield_now().await;
            flag.set(true);
            waker.borrow_mut().take().unwrap().wake();
            assert_eq!(foreign_len(&second), 1);
            task.await;
        }));
        // The first still owns the thread's queue.
        let task = first.spawn(async { 3 });
        assert_eq!(future::block_on(first.run(task)), 3);
    }

    #[test]
    fn an_executor_run_inside_another_executors_task_wakes_that_task() {
        // The inner one owns the thread's queue; the outer one, made second, does not.
        let inner = Rc::new(LocalExecutor::new());
        let outer = LocalExecutor::new();
        let (flag, waker) = (Rc::new(Cell::new(false)), Rc::new(RefCell::new(None)));
        let task = inner.spawn(wait_for(flag.clone(), waker.clone()));
        let running = inner.clone();
        let runner = outer.spawn(async move { running.run(task).await });
        future::block_on(outer.run(async {
            future::yield_now().await;
            flag.set(true);
            // Queued on the thread's queue, whose waker is the outer task's: waking it
            // happens while that queue is borrowed.
            waker.borrow_mut().take().unwrap().wake();
            runner.await;
        }));
    }

    #[test]
    fn dropping_the_executor_drops_its_waiting_tasks() {
        struct Dropped(Rc<Cell<bool>>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                self.0.set(true);
            }
        }
        let dropped = Rc::new(Cell::new(false));
        let executor = LocalExecutor::new();
        let held = Dropped(dropped.clone());
        executor
            .spawn(async move {
                let _held = held;
                future::pending::<()>().await;
            })
            .detach();
        future::block_on(executor.run(future::yield_now()));
        assert!(!dropped.get());
        drop(executor);
        assert!(dropped.get());
        // The thread's queue is free again for the next executor.
        let next = LocalExecutor::new();
        assert_eq!(LOCAL.with(|local| local.borrow().owner), next.shared.id);
    }

    #[test]
    fn a_task_waking_itself_forever_leaves_room_for_the_rest() {
        let executor = LocalExecutor::new();
        executor
            .spawn(async {
                loop {
                    future::yield_now().await;
                }
            })
            .detach();
        let other = executor.spawn(async { 5 });
        let rounds = Rc::new(Cell::new(0));
        let counted = rounds.clone();
        let output = future::block_on(executor.run(async move {
            for _ in 0..3 {
                counted.set(counted.get() + 1);
                future::yield_now().await;
            }
            other.await
        }));
        assert_eq!((output, rounds.get()), (5, 3));
    }

    #[test]
    fn a_panicking_task_ends_alone() {
        let executor = LocalExecutor::new();
        executor
            .spawn(async { panic!("a task's own fault") })
            .detach();
        let after = executor.spawn(async { 9 });
        assert_eq!(future::block_on(executor.run(after)), 9);
    }
}
