//! A peer's write queue: the chunks waiting to be written to one socket, in order.
//!
//! An empty queue is one null pointer. What a queue holds lives in a block of its own,
//! taken from this thread's spares when the first chunk is queued and given back as soon
//! as the last is written. Two queues per connection, most of them empty most of the
//! time (every idle tunnel's are): an inline chunk would keep 48 bytes of room in each,
//! and the spares make taking a block a pop from a vector, not an allocation.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::IoSlice;

use crate::buffer::Chunk;

/// Most spare blocks kept per thread; more are freed. A worker keeps as many as its
/// connections had queued bytes at once, up to this.
const MAX_SPARE_PER_THREAD: usize = 256;
/// Chunks a spare block keeps room for; a block that grew past it (a response queued
/// piece by piece) gives the excess back before it is kept.
const SPARE_CHUNKS: usize = 4;

thread_local! {
    // Boxed in the vector too: a block moves between a queue and the spares as one
    // pointer, never copied into a new allocation.
    #[allow(clippy::vec_box)]
    static SPARE: RefCell<Vec<Box<Queued>>> = const { RefCell::new(Vec::new()) };
}

/// An ordered queue of chunks towards one peer.
#[derive(Debug, Default)]
pub(crate) struct WriteQueue {
    /// `None` exactly when nothing is queued.
    queued: Option<Box<Queued>>,
}

/// A non-empty queue's chunks and their bytes.
#[derive(Debug, Default)]
struct Queued {
    chunks: VecDeque<Chunk>,
    len: usize,
}

impl WriteQueue {
    pub(crate) fn push(&mut self, chunk: Chunk) {
        let n = chunk.as_slice().len();
        if n == 0 {
            chunk.release();
            return;
        }
        let queued = self.queued.get_or_insert_with(take_spare);
        queued.len += n;
        queued.chunks.push_back(chunk);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queued.is_none()
    }

    /// Bytes queued.
    pub(crate) fn len(&self) -> usize {
        self.queued.as_ref().map_or(0, |queued| queued.len)
    }

    /// The bytes to write next (empty when the queue is).
    #[cfg(test)]
    pub(crate) fn front(&self) -> &[u8] {
        self.queued
            .as_ref()
            .and_then(|queued| queued.chunks.front())
            .map_or(&[], Chunk::as_slice)
    }

    /// Fills `slices` with the queued chunks, in order, as far as they go; returns how
    /// many it filled (0 when the queue is empty).
    pub(crate) fn slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let Some(queued) = &self.queued else {
            return 0;
        };
        let mut filled = 0;
        for (slot, chunk) in slices.iter_mut().zip(&queued.chunks) {
            *slot = IoSlice::new(chunk.as_slice());
            filled += 1;
        }
        filled
    }

    /// Marks `n` bytes of the front as written, releasing finished chunks.
    pub(crate) fn consume(&mut self, mut n: usize) {
        let Some(queued) = &mut self.queued else {
            return;
        };
        if n >= queued.len {
            // All of it, the usual case (one chunk in flight).
            return self.clear();
        }
        queued.len -= n;
        while let Some(front) = queued.chunks.front_mut() {
            let available = front.as_slice().len();
            if n < available {
                front.advance(n);
                return;
            }
            n -= available;
            if let Some(done) = queued.chunks.pop_front() {
                done.release();
            }
        }
    }

    /// Drops everything queued, returning pooled buffers; the block goes back to the
    /// thread's spares.
    pub(crate) fn clear(&mut self) {
        let Some(mut queued) = self.queued.take() else {
            return;
        };
        while let Some(chunk) = queued.chunks.pop_front() {
            chunk.release();
        }
        queued.len = 0;
        if queued.chunks.capacity() > SPARE_CHUNKS {
            queued.chunks.shrink_to(SPARE_CHUNKS);
        }
        // During the thread's exit the spares may be gone already: then it is freed.
        let _ = SPARE.try_with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < MAX_SPARE_PER_THREAD {
                spare.push(queued);
            }
        });
    }
}

/// A block for a queue that is about to hold its first chunk.
fn take_spare() -> Box<Queued> {
    SPARE
        .try_with(|spare| spare.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_default()
}

impl Drop for WriteQueue {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::{take_buffer, FREE};
    use bytes::Bytes;

    fn free_buffers() -> usize {
        FREE.with(|free| free.borrow().len())
    }

    fn spare_blocks() -> usize {
        SPARE.with(|spare| spare.borrow().len())
    }

    #[test]
    fn consume_walks_across_chunks_in_order() {
        let mut queue = WriteQueue::default();
        queue.push(Chunk::Bytes(Bytes::from_static(b"abc")));
        queue.push(Chunk::Bytes(Bytes::new()));
        queue.push(Chunk::Bytes(Bytes::from_static(b"defg")));
        assert_eq!(queue.len(), 7);
        queue.consume(2);
        assert_eq!(queue.front(), b"c");
        queue.consume(2);
        assert_eq!(queue.front(), b"efg");
        assert_eq!(queue.len(), 3);
        queue.consume(3);
        assert!(queue.is_empty());
        assert_eq!(queue.front(), b"");
        assert_eq!(queue.len(), 0);
    }

    /// Every idle connection keeps two queues: an empty one is a null pointer, and its
    /// block is back with the thread's spares, where the next queue to fill takes it.
    #[test]
    fn an_emptied_queue_keeps_nothing_and_its_block_is_taken_again() {
        assert_eq!(std::mem::size_of::<WriteQueue>(), 8);
        let before = spare_blocks();
        let mut queue = WriteQueue::default();
        queue.push(Chunk::Bytes(Bytes::from_static(b"head")));
        queue.push(Chunk::Bytes(Bytes::from_static(b"body")));
        queue.push(Chunk::Bytes(Bytes::from_static(b"tail")));
        assert_eq!(queue.len(), 12);
        queue.consume(6);
        assert_eq!(queue.len(), 6);
        assert_eq!(queue.front(), b"dy");
        queue.clear();
        assert_eq!(queue.len(), 0);
        assert!(queue.is_empty());
        assert!(queue.queued.is_none(), "an empty queue holds no block");
        assert_eq!(spare_blocks(), before + 1, "given back to the spares");

        let mut other = WriteQueue::default();
        other.push(Chunk::Bytes(Bytes::from_static(b"next")));
        assert_eq!(
            spare_blocks(),
            before,
            "the spare is taken, not a new block"
        );
        other.consume(4);
        assert_eq!(spare_blocks(), before + 1);
    }

    /// A block that grew for a long response keeps room for a few chunks only.
    #[test]
    fn a_spare_block_keeps_room_for_a_few_chunks() {
        let mut queue = WriteQueue::default();
        for _ in 0..100 {
            queue.push(Chunk::Bytes(Bytes::from_static(b"x")));
        }
        queue.consume(100);
        assert!(queue.is_empty());
        let block = SPARE.with(|spare| spare.borrow_mut().pop()).unwrap();
        assert!(block.chunks.capacity() < 100, "{}", block.chunks.capacity());
    }

    #[test]
    fn slices_list_the_chunks_in_order() {
        let mut queue = WriteQueue::default();
        queue.push(Chunk::Bytes(Bytes::from_static(b"head")));
        queue.push(Chunk::Bytes(Bytes::from_static(b"body")));
        queue.consume(2);
        let mut slices = [IoSlice::new(&[]); crate::buffer::MAX_WRITE_SLICES];
        let n = queue.slices(&mut slices);
        let listed: Vec<&[u8]> = slices[..n].iter().map(|s| &s[..]).collect();
        assert_eq!(listed, [&b"ad"[..], &b"body"[..]]);
    }

    #[test]
    fn a_written_tunnel_buffer_returns_to_the_pool() {
        let before = free_buffers();
        let mut buffer = take_buffer();
        buffer[..5].copy_from_slice(b"hello");
        let mut queue = WriteQueue::default();
        queue.push(Chunk::Pooled {
            buffer,
            start: 0,
            end: 5,
        });
        assert_eq!(queue.front(), b"hello");
        queue.consume(3);
        assert_eq!(queue.front(), b"lo");
        assert_eq!(free_buffers(), before.saturating_sub(1));
        queue.consume(2);
        assert_eq!(free_buffers(), before.max(1));
    }

    #[test]
    fn dropped_queue_returns_its_buffers() {
        let buffer = take_buffer();
        let before = free_buffers();
        let mut queue = WriteQueue::default();
        queue.push(Chunk::Pooled {
            buffer,
            start: 0,
            end: 10,
        });
        drop(queue);
        assert_eq!(free_buffers(), before + 1);
    }
}
