//! Sockets registered with the worker's reactor: readiness, and the reads and writes
//! that keep it.
//!
//! Every read, write, splice and accept of a registered socket goes through a method of
//! [`Io`], which records what the call said about readiness (a drained socket, a full
//! send buffer) before returning its result: the socket itself is not reachable from
//! outside, so no call site can do I/O and forget to record it.

use std::io::{self, IoSlice, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::rc::Rc;
use std::task::{Context, Poll};

use rustix::event::epoll;

use super::{event_data, Hup, Reactor, Slot};
use crate::pipe::Pipe;

/// A socket registered with the current thread's reactor. Not `Send`: it belongs to the
/// worker that registered it. Never duplicated, listening sockets aside (see the module
/// docs of `reactor`).
pub(crate) struct Io<T: AsFd + 'static> {
    inner: T,
    reactor: Rc<Reactor>,
    index: u32,
}

impl<T: AsFd + std::fmt::Debug + 'static> std::fmt::Debug for Io<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Io").field(&self.inner).finish()
    }
}

impl<T: AsFd + 'static> Io<T> {
    /// Registers a non-blocking socket, with the readiness it is known to have now (a
    /// wrong guess costs one `WouldBlock`).
    fn register(inner: T, readable: bool, writable: bool) -> io::Result<Self> {
        let reactor = Reactor::current()?;
        let (index, generation) = reactor.sources.borrow_mut().insert(readable, writable);
        use epoll::EventFlags as F;
        let added = epoll::add(
            &reactor.epoll,
            &inner,
            epoll::EventData::new_u64(event_data(index, generation)),
            F::IN | F::OUT | F::RDHUP | F::PRI | F::ET,
        );
        if let Err(error) = added {
            reactor.sources.borrow_mut().remove(index);
            return Err(error.into());
        }
        Ok(Io {
            inner,
            reactor,
            index,
        })
    }

    fn with_slot<R>(&self, f: impl FnOnce(&mut Slot) -> R) -> R {
        f(&mut self.reactor.sources.borrow_mut().slots[self.index as usize])
    }

    /// Ready when the socket may have something to read (or an EOF or error to report).
    pub(crate) fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.with_slot(|slot| {
            if slot.readable {
                return Poll::Ready(());
            }
            slot.wait(cx.waker(), true);
            Poll::Pending
        })
    }

    /// Ready when the socket may accept bytes.
    pub(crate) fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.with_slot(|slot| {
            if slot.writable {
                return Poll::Ready(());
            }
            slot.wait(cx.waker(), false);
            Poll::Pending
        })
    }

    /// False when nothing arrived (no bytes, no FIN, no error) since a read found the
    /// socket drained, as of the reactor's last look at the kernel's events.
    pub(crate) fn may_be_readable(&self) -> bool {
        self.with_slot(|slot| slot.readable)
    }

    /// False when a write found the send buffer full and no event said it has room
    /// since, as of the reactor's last look at the kernel's events.
    pub(crate) fn may_be_writable(&self) -> bool {
        self.with_slot(|slot| slot.writable)
    }

    /// Forgets the tasks waiting on this socket (it is handed to another task, or
    /// pooled), so that a finished task is neither kept alive nor woken through it.
    pub(crate) fn forget_wakers(&self) {
        let waiter = self.with_slot(Slot::forget);
        drop(waiter);
    }

    /// Completes when [`poll_readable`](Io::poll_readable) would be ready.
    pub(crate) async fn readable(&self) {
        std::future::poll_fn(|cx| self.poll_readable(cx)).await;
    }

    /// Completes when [`poll_writable`](Io::poll_writable) would be ready.
    pub(crate) async fn writable(&self) {
        std::future::poll_fn(|cx| self.poll_writable(cx)).await;
    }

    /// Records what a read of up to `wanted` bytes returned: `WouldBlock`, or fewer bytes
    /// than asked for (the kernel had no more), means the next read waits for an event.
    fn note_read(&self, result: Result<usize, &io::Error>, wanted: usize) {
        let drained = match result {
            Ok(n) => n > 0 && n < wanted,
            Err(error) => error.kind() == io::ErrorKind::WouldBlock,
        };
        if drained {
            self.with_slot(|slot| {
                if result.is_err() {
                    slot.readable = false;
                    slot.urgent = false;
                } else if slot.urgent {
                    // At an urgent mark more bytes wait behind it: stay readable.
                } else if slot.hup == Hup::Fin {
                    // After a FIN a short read took all there was before it: the EOF is
                    // next, and stays readable.
                    slot.hup = Hup::Drained;
                } else if slot.hup == Hup::Open {
                    slot.readable = false;
                }
            });
        }
    }

    /// Whether the next read is known to return the EOF (see [`Hup::Drained`]).
    fn eof_next(&self) -> bool {
        self.with_slot(|slot| slot.hup == Hup::Drained)
    }

    /// Records what a write of `offered` bytes returned: `WouldBlock` or a short write
    /// means the send buffer is full, and the next write waits for an event.
    fn note_write(&self, result: Result<usize, &io::Error>, offered: usize) {
        let full = match result {
            Ok(n) => n < offered,
            Err(error) => error.kind() == io::ErrorKind::WouldBlock,
        };
        if full {
            self.with_slot(|slot| slot.writable = false);
        }
    }
}

impl<T: AsFd + 'static> Drop for Io<T> {
    fn drop(&mut self) {
        // Closing a stream (when `inner` drops, right after) removes it from the epoll
        // set: no `EPOLL_CTL_DEL` needed. A listener's socket stays open wherever another
        // descriptor of it is (a successor's, the duplicates kept to offer one),
        // and epoll drops an entry only with a socket's last descriptor: without the
        // `EPOLL_CTL_DEL`, every new connection would go on waking this worker under the
        // freed slot's data. (A constant test: the branch is compiled out for streams.)
        if std::any::TypeId::of::<T>() == std::any::TypeId::of::<TcpListener>() {
            // Fails only if the entry is gone already, which is what is wanted.
            let _ = epoll::delete(&self.reactor.epoll, &self.inner);
        }
        // The wakers are dropped outside the borrow.
        let waiter = self.reactor.sources.borrow_mut().remove(self.index);
        drop(waiter);
    }
}

impl Io<TcpStream> {
    /// The address this end of the connection has (for a client: the address it
    /// connected to).
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Registers a connected, non-blocking stream (as [`Io::accept`] returns them);
    /// `readable` says whether to try a read before waiting for an event.
    pub(crate) fn stream(stream: TcpStream, readable: bool) -> io::Result<Self> {
        Io::register(stream, readable, true)
    }

    /// Connects to `addr` without blocking the thread, from `source` when given.
    pub(crate) async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<Self> {
        use rustix::net::{self, AddressFamily, SocketFlags, SocketType};
        let family = match addr {
            SocketAddr::V4(_) => AddressFamily::INET,
            SocketAddr::V6(_) => AddressFamily::INET6,
        };
        let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
        let socket = net::socket_with(family, SocketType::STREAM, flags, None)?;
        if let Some(source) = source {
            crate::source::bind(&socket, source)?;
        }
        let in_progress = match net::connect(&socket, &addr) {
            Ok(()) => false,
            Err(rustix::io::Errno::INPROGRESS) => true,
            Err(error) => return Err(error.into()),
        };
        let io = Io::register(TcpStream::from(socket), false, !in_progress)?;
        if in_progress {
            io.writable().await;
            // A failed connect reports EPOLLERR (recorded as `hup`): only then is there an
            // error to fetch.
            if io.with_slot(|slot| slot.hup == Hup::Failed) {
                if let Err(error) = rustix::net::sockopt::socket_error(&io.inner)? {
                    return Err(error.into());
                }
            }
        }
        Ok(io)
    }

    /// One read into `buffer`.
    pub(crate) fn read(&self, buffer: &mut [u8]) -> io::Result<usize> {
        if self.eof_next() {
            return Ok(0);
        }
        let result = (&self.inner).read(buffer);
        self.note_read(result.as_ref().copied(), buffer.len());
        result
    }

    /// One read into the spare capacity of `buffer` (uninitialised memory: nothing is
    /// zeroed first), whose length then grows by what was read.
    pub(crate) fn read_spare(&self, buffer: &mut Vec<u8>) -> io::Result<usize> {
        if self.eof_next() {
            return Ok(0);
        }
        let wanted = buffer.capacity() - buffer.len();
        let result = rustix::io::read(&self.inner, rustix::buffer::spare_capacity(buffer))
            .map_err(io::Error::from);
        self.note_read(result.as_ref().copied(), wanted);
        result
    }

    /// One vectored write of `slices`, in order.
    pub(crate) fn write_vectored(&self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        let offered = slices.iter().map(|slice| slice.len()).sum();
        let result = (&self.inner).write_vectored(slices);
        self.note_write(result.as_ref().copied(), offered);
        result
    }

    /// Splices at most `most` bytes of what the socket holds into `pipe` (see
    /// [`Pipe::fill`]).
    ///
    /// Records nothing: a short splice may stop at the pipe's slot count with more
    /// queued, and `WouldBlock` may mean an urgent mark that splice never reads past, so
    /// no result of a splice proves the socket drained. The caller reads (copies) next
    /// after a `WouldBlock`, which decides.
    pub(crate) fn splice_to(&self, pipe: &Pipe, most: usize) -> io::Result<usize> {
        pipe.fill(&self.inner, most)
    }

    /// Splices what `pipe` holds into the socket (see [`Pipe::drain`]).
    pub(crate) fn splice_from(&self, pipe: &Pipe) -> io::Result<usize> {
        let offered = pipe.len();
        let result = pipe.drain(&self.inner);
        self.note_write(result.as_ref().copied(), offered);
        result
    }

    /// Shuts down writing (sends the FIN once queued bytes are out).
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        self.inner.shutdown(Shutdown::Write)
    }

    /// Turns Nagle's algorithm off (`nodelay`) or on.
    pub(crate) fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.set_nodelay(nodelay)
    }
}

impl Io<TcpListener> {
    /// Registers a listening socket, set non-blocking here.
    pub(crate) fn listener(listener: TcpListener) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        Io::register(listener, true, false)
    }

    /// The next connection, non-blocking already, and its peer's address.
    pub(crate) async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        use rustix::net::{acceptfrom_with, SocketFlags};
        loop {
            self.readable().await;
            match acceptfrom_with(&self.inner, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK) {
                Ok((socket, Some(addr))) => {
                    if let Ok(addr) = SocketAddr::try_from(addr) {
                        return Ok((TcpStream::from(socket), addr));
                    }
                }
                // Not a TCP peer: cannot happen on a TCP listener; dropped.
                Ok((_, None)) => {}
                Err(rustix::io::Errno::AGAIN) => {
                    self.with_slot(|slot| slot.readable = false);
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// A connection already in the accept queue, if any, without waiting: asks the
    /// kernel whatever the recorded readiness says (one arriving since the reactor's
    /// last look counts), for emptying the queue before the listener closes.
    pub(crate) fn accept_queued(&self) -> io::Result<Option<(TcpStream, SocketAddr)>> {
        use rustix::net::{acceptfrom_with, SocketFlags};
        loop {
            match acceptfrom_with(&self.inner, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK) {
                Ok((socket, Some(addr))) => {
                    if let Ok(addr) = SocketAddr::try_from(addr) {
                        return Ok(Some((TcpStream::from(socket), addr)));
                    }
                }
                Ok((_, None)) => {}
                Err(rustix::io::Errno::AGAIN) => {
                    self.with_slot(|slot| slot.readable = false);
                    return Ok(None);
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// The address the listener is bound to.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

#[cfg(test)]
mod tests;
