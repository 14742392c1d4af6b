//! A worker's waiting timers: a binary min-heap of deadlines over a table of slots that
//! hold the wakers.
//!
//! Every connection's task keeps one timer waiting, so a timer's entry is part of every
//! idle tunnel: here it is 16 bytes in the heap and 24 in the table, where an ordered
//! map's entry took its share of a B-tree node (about 55 bytes). A timer knows its slot,
//! so it changes its waker, or leaves, without a search; the slot knows the timer's place
//! in the heap, so leaving is a swap with the last entry and one sift.

use std::num::NonZeroU32;
use std::task::Waker;

/// Where a registered timer is: its slot and the stamp it was registered with. A stamp
/// is drawn once per registration from a counter of the thread (not the table), so a
/// key kept past its timer's firing, or across a reactor's end, never matches the slot's
/// next timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerKey {
    slot: u32,
    stamp: NonZeroU32,
}

/// One deadline in the heap, in the reactor's ticks, and the slot it belongs to.
#[derive(Debug, Clone, Copy)]
struct Entry {
    when: u64,
    slot: u32,
}

#[derive(Debug, Default)]
struct Slot {
    /// The task to wake; `None` while the slot is free.
    waker: Option<Waker>,
    /// The stamp of the timer in the slot (0 while free).
    stamp: u32,
    /// The timer's place in the heap.
    pos: u32,
}

/// The timers of one reactor.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: Vec<Entry>,
    slots: Vec<Slot>,
    free: Vec<u32>,
}

impl Timers {
    /// A table with room for `timers` before it grows.
    pub(crate) fn with_capacity(timers: usize) -> Self {
        Timers {
            heap: Vec::with_capacity(timers),
            slots: Vec::with_capacity(timers),
            free: Vec::with_capacity(timers),
        }
    }

    /// Waiting timers.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The earliest deadline.
    pub(crate) fn first(&self) -> Option<u64> {
        self.heap.first().map(|entry| entry.when)
    }

    /// Adds a timer due at `when` that wakes `waker`; `stamp` tells this registration
    /// apart from every other of the thread.
    pub(crate) fn insert(&mut self, when: u64, waker: Waker, stamp: NonZeroU32) -> TimerKey {
        let pos = u32::try_from(self.heap.len()).unwrap_or(u32::MAX);
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(Slot::default());
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.slots[slot as usize] = Slot {
            waker: Some(waker),
            stamp: stamp.get(),
            pos,
        };
        self.heap.push(Entry { when, slot });
        self.sift_up(pos as usize);
        TimerKey { slot, stamp }
    }

    /// The timer of `key`'s slot, if it still waits.
    fn slot_mut(&mut self, key: TimerKey) -> Option<&mut Slot> {
        self.slots
            .get_mut(key.slot as usize)
            .filter(|slot| slot.stamp == key.stamp.get() && slot.waker.is_some())
    }

    /// Whether the timer of `key` still waits, and wakes `waker`'s task when due (false
    /// for one that fired or left).
    pub(crate) fn wakes(&self, key: TimerKey, waker: &Waker) -> bool {
        self.slots.get(key.slot as usize).is_some_and(|slot| {
            slot.stamp == key.stamp.get() && slot.waker.as_ref().is_some_and(|w| w.will_wake(waker))
        })
    }

    /// Takes the timer of `key` out; its waker comes back (dropped by the caller, outside
    /// any borrow: a waker's drop may run code). `None` when it fired or left already.
    pub(crate) fn remove(&mut self, key: TimerKey) -> Option<Waker> {
        let pos = self.slot_mut(key)?.pos as usize;
        self.remove_at(pos)
    }

    /// Takes out every timer due at `now` or before, earliest first, for its waker.
    pub(crate) fn pop_due(&mut self, now: u64, mut wake: impl FnMut(Waker)) {
        while self.heap.first().is_some_and(|entry| entry.when <= now) {
            if let Some(waker) = self.remove_at(0) {
                wake(waker);
            }
        }
    }

    /// Removes the heap's entry at `pos` and frees its slot, whose waker comes back
    /// (always there: a slot in the heap holds one).
    fn remove_at(&mut self, pos: usize) -> Option<Waker> {
        let removed = self.heap.swap_remove(pos);
        if pos < self.heap.len() {
            self.place(pos);
            // The last entry moved into the hole: it may belong above or below it.
            let pos = self.sift_up(pos);
            self.sift_down(pos);
        }
        let slot = &mut self.slots[removed.slot as usize];
        slot.stamp = 0;
        let waker = slot.waker.take();
        self.free.push(removed.slot);
        waker
    }

    /// Records in its slot that the entry at `pos` is there.
    fn place(&mut self, pos: usize) {
        let slot = self.heap[pos].slot as usize;
        self.slots[slot].pos = pos as u32;
    }

    fn sift_up(&mut self, mut pos: usize) -> usize {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.heap[parent].when <= self.heap[pos].when {
                break;
            }
            self.heap.swap(parent, pos);
            self.place(pos);
            pos = parent;
        }
        self.place(pos);
        pos
    }

    fn sift_down(&mut self, mut pos: usize) {
        loop {
            let left = 2 * pos + 1;
            if left >= self.heap.len() {
                break;
            }
            let right = left + 1;
            let child = if right < self.heap.len() && self.heap[right].when < self.heap[left].when {
                right
            } else {
                left
            };
            if self.heap[pos].when <= self.heap[child].when {
                break;
            }
            self.heap.swap(pos, child);
            self.place(pos);
            pos = child;
        }
        self.place(pos);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::Wakes;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn stamp(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n + 1).unwrap()
    }

    /// What a timer table is asked to do.
    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64),
        /// Removes the n-th key handed out (fired or removed ones too).
        Remove(usize),
        PopDue(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u64..50).prop_map(Op::Insert),
            2 => any::<usize>().prop_map(Op::Remove),
            1 => (0u64..50).prop_map(Op::PopDue),
        ]
    }

    proptest! {
        /// Against an ordered map of the same timers: the earliest deadline, the count,
        /// which removals find their timer, and that due timers fire in deadline order
        /// and only when due.
        #[test]
        fn the_heap_agrees_with_an_ordered_map(ops in proptest::collection::vec(op(), 1..200)) {
            let mut timers = Timers::default();
            let mut model: BTreeMap<(u64, u32), ()> = BTreeMap::new();
            let mut keys: Vec<(TimerKey, u64, u32)> = Vec::new();
            let waker = Waker::from(Arc::new(Wakes::default()));
            for (n, op) in ops.into_iter().enumerate() {
                let n = n as u32;
                match op {
                    Op::Insert(when) => {
                        let key = timers.insert(when, waker.clone(), stamp(n));
                        model.insert((when, n), ());
                        keys.push((key, when, n));
                    }
                    Op::Remove(i) if !keys.is_empty() => {
                        let (key, when, id) = keys[i % keys.len()];
                        let removed = timers.remove(key).is_some();
                        prop_assert_eq!(removed, model.remove(&(when, id)).is_some());
                    }
                    Op::Remove(_) => {}
                    Op::PopDue(now) => {
                        let mut fired = 0;
                        timers.pop_due(now, |_| fired += 1);
                        let due: Vec<_> = model.range(..=(now, u32::MAX)).map(|(k, _)| *k).collect();
                        prop_assert_eq!(fired, due.len());
                        for k in due {
                            model.remove(&k);
                        }
                    }
                }
                prop_assert_eq!(timers.len(), model.len());
                prop_assert_eq!(timers.first(), model.keys().next().map(|(when, _)| *when));
            }
        }
    }

    /// A key kept past its timer's firing does not reach the next timer of its slot.
    #[test]
    fn a_stale_key_finds_nothing() {
        let mut timers = Timers::default();
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        let first = timers.insert(5, waker.clone(), stamp(1));
        timers.pop_due(5, Waker::wake);
        assert_eq!(wakes.count(), 1);
        let second = timers.insert(9, waker.clone(), stamp(2));
        assert_eq!(first.slot, second.slot, "the slot is reused");
        assert!(timers.remove(first).is_none());
        assert!(!timers.wakes(first, &waker));
        assert!(timers.wakes(second, &waker));
        assert_eq!(timers.len(), 1);
        assert!(timers.remove(second).is_some());
        assert!(timers.is_empty());
    }

    /// A timer wakes the task that registered it, not another.
    #[test]
    fn a_timer_wakes_its_own_task() {
        let mut timers = Timers::default();
        let (own, other) = (Arc::new(Wakes::default()), Arc::new(Wakes::default()));
        let key = timers.insert(3, Waker::from(own.clone()), stamp(1));
        assert!(timers.wakes(key, &Waker::from(own.clone())));
        assert!(!timers.wakes(key, &Waker::from(other.clone())));
        timers.pop_due(3, Waker::wake);
        assert_eq!((own.count(), other.count()), (1, 0));
    }
}
