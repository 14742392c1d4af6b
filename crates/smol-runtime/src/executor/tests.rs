use std::cell::Cell;
use std::sync::mpsc;

use futures_lite::future;

use super::*;

/// Completes once `flag` is set, keeping the waker of its last poll in `waker`.
fn wait_for(flag: Rc<Cell<bool>>, waker: Rc<RefCell<Option<Waker>>>) -> impl Future<Output = ()> {
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
