//! Tunnel bytes moved with `splice(2)`: socket → pipe → socket, never copied through
//! userspace (the kernel hands the pages over).
//!
//! Used per direction once it carries bulk data (a copied read filled a whole buffer),
//! and left again when a splice moves little: for small messages splice costs the same
//! two system calls as a read and a write, and one more to learn that the socket is
//! drained (a short splice may stop at the pipe's slot count, so only `WouldBlock` says
//! the socket is empty). A pipe is taken from a per-thread pool when bytes arrive and
//! given back once it is written out, so an idle tunnel holds none. Where splice is not
//! supported, the first failure turns it off for the thread and the copy path carries on.
//!
//! A new pipe is asked to hold [`PIPE_CHUNK`] (256 KiB, `F_SETPIPE_SZ`) while fewer than
//! [`LARGE_PIPES`] pipes exist in the process; beyond that, or where the kernel refuses,
//! it keeps the default 64 KiB and a splice simply moves less. A pipe's capacity counts
//! against its user's pipe buffer limit (`/proc/sys/fs/pipe-user-pages-soft`, 64 MiB by
//! default), past which every new pipe of that user gets two pages: the budget keeps the
//! large ones to a quarter of it.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};

use rustix::pipe::{fcntl_setpipe_size, pipe_with, splice, PipeFlags, SpliceFlags};

use crate::buffer::TUNNEL_BUFFER_SIZE;

/// Most bytes a pipe holds here, and what a new pipe is asked to hold (a pipe holds 64 KiB
/// by default). Since 2026-12-03 a response body's splice and a tunnel's bulk splice move
/// at most [`BULK_READ`](crate::buffer::BULK_READ) (their callers' `most`), which
/// measured faster than 256 KiB splices; the pipes stay as large as the measurements were
/// made with
/// (`benches/RESULTS.md`, "Larger pipes" and "Tunnel reads that fit one packet").
const PIPE_CHUNK: usize = 4 * TUNNEL_BUFFER_SIZE;
/// While fewer pipes than this exist in the process, a new one is made [`PIPE_CHUNK`]
/// large: 64 × 256 KiB is a quarter of an unprivileged user's default pipe buffer limit.
const LARGE_PIPES: usize = 64;

/// Pipes that exist in the process. Only a pipe made while this was under [`LARGE_PIPES`]
/// is large, so the large ones never number more than that.
static PIPES: AtomicUsize = AtomicUsize::new(0);
/// Most free pipes kept per thread; more are closed.
pub(crate) const MAX_FREE_PER_THREAD: usize = 16;

/// Pipes taken and not given back (a pipe dropped with bytes in it, when a peer is gone,
/// stays counted), and splices that moved bytes into a pipe, across all threads (tests
/// check that idle tunnels hold none, and that bulk data spliced).
#[cfg(test)]
pub(crate) static IN_USE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
#[cfg(test)]
pub(crate) static SPLICES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    static FREE: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
    static UNSUPPORTED: Cell<bool> = const { Cell::new(false) };
}

/// Whether splicing may be tried on this thread.
pub(crate) fn supported() -> bool {
    !UNSUPPORTED.with(Cell::get)
}

/// A pipe and how many bytes it holds (at most [`PIPE_CHUNK`]: a `u32`, so that the
/// pipe's slot in each peer of every connection takes 12 bytes, not 16). Its capacity is
/// the kernel's business: a splice into a smaller pipe moves less.
#[derive(Debug)]
pub(crate) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    len: Cell<u32>,
}

impl Pipe {
    /// An empty pipe from this thread's pool, or a new one.
    pub(crate) fn take() -> io::Result<Pipe> {
        let pipe = match FREE.with(|free| free.borrow_mut().pop()) {
            Some(pipe) => pipe,
            None => {
                let (read, write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
                if PIPES.fetch_add(1, Ordering::Relaxed) < LARGE_PIPES {
                    if let Err(errno) = fcntl_setpipe_size(&write, PIPE_CHUNK) {
                        // Past the user's limit, or a kernel that will not: 64 KiB then.
                        tracing::debug!(%errno, "a pipe keeps its default size");
                    }
                }
                Pipe {
                    read,
                    write,
                    len: Cell::new(0),
                }
            }
        };
        #[cfg(test)]
        IN_USE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(pipe)
    }

    /// Gives an empty pipe back to the pool; one still holding bytes is closed.
    pub(crate) fn give(self) {
        #[cfg(test)]
        IN_USE.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        if self.len.get() != 0 {
            return;
        }
        FREE.with(|free| {
            let mut free = free.borrow_mut();
            if free.len() < MAX_FREE_PER_THREAD {
                free.push(self);
            }
        });
    }

    /// The pipe's capacity (`F_GETPIPE_SZ`), for tests.
    #[cfg(test)]
    fn capacity(&self) -> usize {
        rustix::pipe::fcntl_getpipe_size(&self.write).unwrap()
    }

    /// Bytes in the pipe.
    pub(crate) fn len(&self) -> usize {
        self.len.get() as usize
    }

    /// Moves what `from` has, up to `most` bytes and [`PIPE_CHUNK`] in the pipe, into
    /// the pipe. The caller's `most` is what one packet carries for bulk data (a byte
    /// tunnel's, a response body's), or the rest of a frame-aware tunnel's frame, which
    /// a splice never passes and which is moved whole when it fits a buffer: a 64 KiB
    /// frame's payload in one splice, not a packet's worth and a tail copied after it.
    /// An error that means splice cannot work here turns it off for the thread.
    pub(crate) fn fill(&self, from: impl AsFd, most: usize) -> io::Result<usize> {
        let room = (PIPE_CHUNK - self.len()).min(most);
        let moved = splice(
            from,
            None,
            &self.write,
            None,
            room,
            SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
        );
        #[cfg(test)]
        if matches!(moved, Ok(n) if n > 0) {
            SPLICES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        self.account(moved, true)
    }

    /// Moves what the pipe holds into `to`.
    pub(crate) fn drain(&self, to: impl AsFd) -> io::Result<usize> {
        let moved = splice(
            &self.read,
            None,
            to,
            None,
            self.len(),
            SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
        );
        self.account(moved, false)
    }

    fn account(&self, moved: rustix::io::Result<usize>, filled: bool) -> io::Result<usize> {
        match moved {
            Ok(n) => {
                let len = self.len();
                let len = if filled { len + n } else { len - n };
                // Within PIPE_CHUNK, which a u32 holds.
                self.len.set(u32::try_from(len).unwrap_or(u32::MAX));
                Ok(n)
            }
            Err(errno) => {
                if matches!(
                    errno,
                    rustix::io::Errno::INVAL
                        | rustix::io::Errno::NOSYS
                        | rustix::io::Errno::OPNOTSUPP
                ) {
                    UNSUPPORTED.with(|unsupported| unsupported.set(true));
                    tracing::debug!(%errno, "splice unsupported: tunnels copy instead");
                }
                Err(errno.into())
            }
        }
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        PIPES.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::tcp_pair;
    use std::io::{Read, Write};
    use std::sync::Mutex;

    /// Held by the test that takes more pipes than are made large, so that a test
    /// counting on a large pipe does not get a small one meanwhile.
    static PIPE_BUDGET: Mutex<()> = Mutex::new(());

    #[test]
    fn bytes_cross_a_pipe_in_order_and_the_empty_pipe_is_reused() {
        let (mut sender, from) = tcp_pair();
        let (to, mut receiver) = tcp_pair();
        from.set_nonblocking(true).unwrap();
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let writer = std::thread::spawn(move || sender.write_all(&payload).map(|()| payload));
        let mut received = Vec::new();
        let reader = std::thread::spawn(move || {
            receiver.read_to_end(&mut received).unwrap();
            received
        });
        let pipe = Pipe::take().unwrap();
        let mut total = 0;
        loop {
            match pipe.fill(&from, usize::MAX) {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::yield_now();
                    continue;
                }
                Err(e) => panic!("{e}"),
            }
            while pipe.len() > 0 {
                pipe.drain(&to).unwrap();
            }
        }
        drop(to);
        let payload = writer.join().unwrap().unwrap();
        assert_eq!(total, payload.len());
        assert!(reader.join().unwrap() == payload, "bytes differ");
        pipe.give();
        assert_eq!(FREE.with(|free| free.borrow().len()), 1, "kept for reuse");
    }

    #[test]
    fn new_pipes_are_large_within_the_budget_and_never_beyond_it() {
        let _budget = PIPE_BUDGET.lock().unwrap_or_else(|e| e.into_inner());
        let pipes: Vec<Pipe> = (0..LARGE_PIPES + 4)
            .map(|_| Pipe::take().unwrap())
            .collect();
        let capacities: Vec<usize> = pipes.iter().map(Pipe::capacity).collect();
        let large = capacities.iter().filter(|&&c| c >= PIPE_CHUNK).count();
        // Other tests' pipes may exist meanwhile, so only the bound is exact.
        assert!(large <= LARGE_PIPES, "{large} large pipes");
        assert!(
            capacities[0] >= PIPE_CHUNK,
            "the first is {}",
            capacities[0]
        );
        assert!(capacities[LARGE_PIPES..].iter().all(|&c| c < PIPE_CHUNK));
        for pipe in pipes {
            pipe.give();
        }
    }

    #[test]
    fn a_fill_moves_all_it_is_allowed_beyond_a_packet() {
        // A 64 KiB frame's payload after the 117 bytes its header's read took, all of it
        // in the socket: one splice takes it (a cap at a packet's worth would leave 3,979
        // bytes for a copy after it).
        const REST: usize = 65_536 - 117;
        const { assert!(REST > crate::buffer::BULK_READ) };
        let _budget = PIPE_BUDGET.lock().unwrap_or_else(|e| e.into_inner());
        let (mut sender, from) = tcp_pair();
        sender.write_all(&[5u8; REST]).unwrap();
        // Loopback delivers at once, but maybe in pieces: wait (bounded) until every
        // byte is there to be taken.
        let mut seen = vec![0u8; REST];
        let arrived = (0..1000).any(|_| {
            let all = from.peek(&mut seen).unwrap() == REST;
            if !all {
                std::thread::yield_now();
            }
            all
        });
        assert!(arrived, "the bytes arrive");
        from.set_nonblocking(true).unwrap();
        let pipe = Pipe::take().unwrap();
        assert_eq!(
            pipe.fill(&from, REST).unwrap(),
            REST,
            "one splice for the rest"
        );
        pipe.give();
    }

    #[test]
    fn a_fill_moves_no_more_than_it_is_allowed() {
        let (mut sender, from) = tcp_pair();
        from.set_nonblocking(true).unwrap();
        sender.write_all(&[7u8; 50_000]).unwrap();
        let pipe = Pipe::take().unwrap();
        // Loopback delivers at once, but not necessarily in one piece: poll (bounded).
        let mut moved = 0;
        for _ in 0..1000 {
            match pipe.fill(&from, 20_000 - moved) {
                Ok(n) => moved += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
            if moved == 20_000 {
                break;
            }
        }
        assert_eq!(moved, 20_000);
        assert_eq!(pipe.len(), 20_000, "the frame's tail stays in the socket");
        let mut rest = [0u8; 30_000];
        let mut from = from;
        from.set_nonblocking(false).unwrap();
        from.read_exact(&mut rest).unwrap();
        pipe.give(); // closed, since it holds bytes
    }
}
