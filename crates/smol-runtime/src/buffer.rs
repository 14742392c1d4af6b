//! Tunnel buffers and per-peer write queues.
//!
//! A tunnel takes a buffer only once a socket is readable and gives it back as soon as
//! the bytes are written out, so an idle tunnel holds none. Free buffers are kept per
//! thread (no lock), a bounded number of them.

use std::cell::RefCell;
use std::collections::VecDeque;

use bytes::{Buf, Bytes};

/// Size of one tunnel buffer.
pub(crate) const TUNNEL_BUFFER_SIZE: usize = 16 * 1024;
/// Most free buffers kept per thread; more are freed.
const MAX_FREE_PER_THREAD: usize = 16;

thread_local! {
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Buffers taken and not given back, across all threads (tests check that idle tunnels
/// hold none).
#[cfg(test)]
pub(crate) static IN_USE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Takes a buffer of [`TUNNEL_BUFFER_SIZE`] initialised bytes from this thread's pool.
pub(crate) fn take_buffer() -> Vec<u8> {
    #[cfg(test)]
    IN_USE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    FREE.with(|free| free.borrow_mut().pop())
        .unwrap_or_else(|| vec![0; TUNNEL_BUFFER_SIZE])
}

/// Gives a buffer back (it stays initialised, so the next read needs no zeroing).
pub(crate) fn give_buffer(buffer: Vec<u8>) {
    #[cfg(test)]
    IN_USE.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    debug_assert_eq!(buffer.len(), TUNNEL_BUFFER_SIZE);
    FREE.with(|free| {
        let mut free = free.borrow_mut();
        if free.len() < MAX_FREE_PER_THREAD {
            free.push(buffer);
        }
    });
}

/// Bytes waiting to be written to one peer.
#[derive(Debug)]
pub(crate) enum Chunk {
    /// Bytes produced by the core.
    Bytes(Bytes),
    /// Bytes read in a tunnel, still in their pooled buffer: `buffer[start..end]`.
    Pooled {
        buffer: Vec<u8>,
        start: usize,
        end: usize,
    },
}

impl Chunk {
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Chunk::Bytes(bytes) => bytes,
            Chunk::Pooled { buffer, start, end } => &buffer[*start..*end],
        }
    }

    fn advance(&mut self, n: usize) {
        match self {
            Chunk::Bytes(bytes) => bytes.advance(n),
            Chunk::Pooled { start, .. } => *start += n,
        }
    }

    /// Gives a pooled buffer back.
    pub(crate) fn release(self) {
        if let Chunk::Pooled { buffer, .. } = self {
            give_buffer(buffer);
        }
    }
}

/// An ordered queue of chunks towards one peer.
#[derive(Debug, Default)]
pub(crate) struct WriteQueue {
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
        self.len += n;
        self.chunks.push_back(chunk);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Bytes queued.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The bytes to write next (empty when the queue is).
    pub(crate) fn front(&self) -> &[u8] {
        self.chunks.front().map_or(&[], Chunk::as_slice)
    }

    /// Marks `n` bytes of the front as written, releasing finished chunks.
    pub(crate) fn consume(&mut self, mut n: usize) {
        self.len -= n.min(self.len);
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            let available = front.as_slice().len();
            if n < available {
                front.advance(n);
                return;
            }
            n -= available;
            if let Some(done) = self.chunks.pop_front() {
                done.release();
            }
        }
    }

    /// Drops everything queued, returning pooled buffers.
    pub(crate) fn clear(&mut self) {
        for chunk in self.chunks.drain(..) {
            chunk.release();
        }
        self.len = 0;
    }
}

impl Drop for WriteQueue {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_buffers() -> usize {
        FREE.with(|free| free.borrow().len())
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
