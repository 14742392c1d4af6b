//! One worker's counters: a block of its own cache lines that only its thread writes and
//! a scrape reads.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters per cache line (8 bytes each).
const PER_LINE: usize = 16;

/// 128 bytes, not 64: Intel's spatial prefetcher fetches lines in pairs, so two workers'
/// counters 64 bytes apart would still bounce between their cores (crossbeam's
/// `CachePadded` pads to 128 on x86_64 and aarch64 for the same reason).
#[repr(align(128))]
#[derive(Default)]
struct Line([AtomicU64; PER_LINE]);

/// A worker's counters, each a slot of [`Layout`](super::layout::Layout). Written by one
/// thread only, so an addition is a plain load and store (no locked instruction), and
/// read by the scrape with relaxed loads: a scrape may see one event's counts partly,
/// never a torn value.
pub(super) struct Block {
    lines: Box<[Line]>,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("slots", &(self.lines.len() * PER_LINE))
            .finish()
    }
}

impl Block {
    /// A block of at least `slots` counters, all 0; the allocation's alignment keeps
    /// every other allocation off its lines.
    pub(super) fn new(slots: usize) -> Block {
        let lines = slots.div_ceil(PER_LINE).max(1);
        Block {
            lines: (0..lines).map(|_| Line::default()).collect(),
        }
    }

    fn slot(&self, slot: usize) -> Option<&AtomicU64> {
        self.lines
            .get(slot / PER_LINE)
            .map(|line| &line.0[slot % PER_LINE])
    }

    /// Adds `n` to a counter. Only the block's own worker may call it: two threads
    /// adding at once could lose one's addition (never memory safety).
    #[inline]
    pub(super) fn add(&self, slot: usize, n: u64) {
        if let Some(counter) = self.slot(slot) {
            counter.store(
                counter.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Relaxed,
            );
        }
    }

    /// Sets a gauge (the block's own worker only, as [`Block::add`]).
    pub(super) fn set(&self, slot: usize, value: u64) {
        if let Some(counter) = self.slot(slot) {
            counter.store(value, Ordering::Relaxed);
        }
    }

    /// A counter's value (any thread).
    pub(super) fn get(&self, slot: usize) -> u64 {
        self.slot(slot)
            .map_or(0, |counter| counter.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_starts_on_a_line_of_its_own_and_rounds_up_to_whole_lines() {
        let blocks: Vec<Block> = (0..4).map(|_| Block::new(17)).collect();
        for block in &blocks {
            assert_eq!(block.lines.len(), 2, "17 slots take two lines");
            let start = block.lines.as_ptr() as usize;
            assert_eq!(start % 128, 0, "aligned to 128 bytes");
            assert_eq!(std::mem::size_of_val(&*block.lines), 256);
        }
        // Whole, aligned lines: no other allocation can share one.
        let mut spans: Vec<(usize, usize)> = blocks
            .iter()
            .map(|b| {
                let start = b.lines.as_ptr() as usize;
                (start, start + std::mem::size_of_val(&*b.lines))
            })
            .collect();
        spans.sort_unstable();
        assert!(spans.windows(2).all(|pair| pair[0].1 <= pair[1].0));
    }

    #[test]
    fn add_set_and_get_address_the_same_slot_and_ignore_others() {
        let block = Block::new(3);
        block.add(2, 5);
        block.add(2, 1);
        block.set(0, 9);
        assert_eq!((block.get(0), block.get(1), block.get(2)), (9, 0, 6));
        // Past the block: ignored, never a panic.
        block.add(1 << 20, 1);
        assert_eq!(block.get(1 << 20), 0);
    }
}
