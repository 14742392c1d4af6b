//! Read buffers and tunnel buffers (the write queues that hold them: `write_queue.rs`).
//!
//! HTTP-phase reads land in one read buffer per thread, never zeroed (the kernel writes
//! into its spare capacity); a read under half the buffer is copied out into a
//! `BytesMut` of exactly its size, a larger one takes the buffer itself to the core (no
//! copy) and the thread gets a new one. A tunnel takes a buffer
//! only once a socket is readable and gives it back as soon as the bytes are written
//! out, so an idle tunnel holds none. Free buffers are kept per thread (no lock), a
//! bounded number of them.

use std::cell::RefCell;
use std::io;
use std::net::TcpStream;

use bytes::{Buf, Bytes, BytesMut};

use crate::backend::Io;

/// Size of one tunnel buffer.
pub(crate) const TUNNEL_BUFFER_SIZE: usize = 64 * 1024;
/// Most free buffers kept per thread; more are freed.
const MAX_FREE_PER_THREAD: usize = 16;

/// Most bytes one read takes when what it reads is written on as it came (a body, a
/// tunnel's bulk data): 60 KiB, so that the write after it fits one TCP packet of 64 KiB
/// with its headers (what segmentation offload, and the loopback device, carry at most)
/// instead of a full one and a runt of a few bytes. On loopback a 64 KiB echo through a
/// byte tunnel went at 1.7× the rate, for half the CPU per MB, with reads of at most
/// 65,483 bytes than with reads of 65,484 or more, and a chunked 1 MiB response at 1.7×
/// (`benches/RESULTS.md`, "Tunnel reads that fit one packet").
pub(crate) const BULK_READ: usize = 60 * 1024;

/// Most bytes taken by one HTTP-phase read.
pub(crate) const HTTP_READ_SIZE: usize = BULK_READ;
/// Most chunks handed to one vectored write.
pub(crate) const MAX_WRITE_SLICES: usize = 16;

/// HTTP-phase reads of at least this many bytes hand the read buffer itself to the core;
/// smaller ones are copied out. Every queued piece of a read keeps its whole buffer
/// alive, and the write queues are bounded by the bytes they hold: at half the buffer
/// size, a queue holds at most twice its bytes in buffers (a peer writing 8 KiB at a
/// time would otherwise pin a whole read buffer per 8 KiB queued).
const HTTP_COPY_BELOW: usize = HTTP_READ_SIZE / 2;

thread_local! {
    pub(crate) static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static HTTP_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// One read of at most [`HTTP_READ_SIZE`] bytes from `socket` into this thread's read
/// buffer; the bytes read (none at EOF) come back in a `BytesMut` of their own.
///
/// Below [`HTTP_COPY_BELOW`] they are copied into an allocation of exactly their size:
/// any view of a buffer keeps the whole allocation alive, and the core keeps what it
/// has not consumed. From that size on (bodies being streamed) the buffer goes to the
/// core as it is, and the thread allocates another (uninitialised, so neither a copy
/// nor zeroing touches the bytes).
pub(crate) fn read_http(socket: &Io<TcpStream>) -> io::Result<BytesMut> {
    HTTP_SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        scratch.clear();
        scratch.reserve_exact(HTTP_READ_SIZE);
        // Fills the spare capacity and extends the length over what the kernel wrote.
        let n = socket.read_spare(&mut scratch)?;
        if n < HTTP_COPY_BELOW {
            return Ok(BytesMut::from(&scratch[..]));
        }
        // Zero-copy both ways: the vector becomes the `Bytes`' allocation, and a unique
        // `Bytes` becomes a `BytesMut` over the same allocation.
        Ok(BytesMut::from(Bytes::from(std::mem::take(&mut *scratch))))
    })
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

    pub(crate) fn advance(&mut self, n: usize) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_reads_come_back_in_buffers_of_their_own_size() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut writer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (reader, _) = listener.accept().unwrap();
        reader.set_nonblocking(true).unwrap();
        crate::backend::block_on(async move {
            let reader = Io::stream(reader, false).unwrap();
            let read = || async {
                loop {
                    reader.readable().await;
                    match read_http(&reader) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        result => return result.unwrap(),
                    }
                }
            };
            let read_exactly = |wanted: usize| async move {
                let mut got = BytesMut::new();
                while got.len() < wanted {
                    let piece = read().await;
                    assert!(!piece.is_empty() && piece.len() <= HTTP_READ_SIZE);
                    if piece.len() < HTTP_COPY_BELOW {
                        // A small read holds its own size, not the thread's read buffer.
                        assert_eq!(piece.capacity(), piece.len());
                    } else {
                        // A large one holds at most twice its size.
                        assert!(piece.capacity() <= 2 * piece.len());
                    }
                    got.unsplit(piece);
                }
                got
            };
            // 8 KiB, as upstreams often write: copied, not a whole read buffer per 8 KiB
            // queued.
            writer.write_all(&[b'x'; 8192]).unwrap();
            assert_eq!(read_exactly(8192).await.len(), 8192);
            writer.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
            let small = read_exactly(18).await;
            assert_eq!(&small[..], b"GET / HTTP/1.1\r\n\r\n");
            // Its own allocation: exactly what was read, not a view of the thread buffer.
            assert_eq!(small.capacity(), small.len());

            let big: Vec<u8> = (0..3 * HTTP_READ_SIZE).map(|i| (i % 251) as u8).collect();
            let sender = std::thread::spawn({
                let big = big.clone();
                move || {
                    writer.write_all(&big).unwrap();
                    writer
                }
            });
            let got = read_exactly(big.len()).await;
            assert!(got[..] == big[..], "bytes lost or reordered");

            drop(sender.join().unwrap());
            assert!(read().await.is_empty(), "EOF reads nothing");
        })
        .unwrap();
    }
}
