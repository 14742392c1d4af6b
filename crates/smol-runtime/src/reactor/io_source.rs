//! Sockets registered with the worker's reactor: readiness, and the bookkeeping that
//! says when a read or write found a socket drained.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use rustix::event::epoll;

use super::{Reactor, Slot};

/// A socket registered with the current thread's reactor. Not `Send`: it belongs to the
/// worker that registered it.
pub(crate) struct Io<T: AsFd> {
    inner: T,
    reactor: Rc<Reactor>,
    index: u32,
}

impl<T: AsFd + std::fmt::Debug> std::fmt::Debug for Io<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Io").field(&self.inner).finish()
    }
}

impl<T: AsFd> Io<T> {
    /// Registers a non-blocking socket, with the readiness it is known to have now (a
    /// wrong guess costs one `WouldBlock`).
    fn register(inner: T, readable: bool, writable: bool) -> io::Result<Self> {
        let reactor = Reactor::current()?;
        let (index, generation) = reactor.sources.borrow_mut().insert(readable, writable);
        use epoll::EventFlags as F;
        let added = epoll::add(
            &reactor.epoll,
            &inner,
            epoll::EventData::new_u64(u64::from(generation) << 32 | u64::from(index)),
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

    /// The socket.
    pub(crate) fn get_ref(&self) -> &T {
        &self.inner
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
            store(&mut slot.reader, cx.waker());
            Poll::Pending
        })
    }

    /// Ready when the socket may accept bytes.
    pub(crate) fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.with_slot(|slot| {
            if slot.writable {
                return Poll::Ready(());
            }
            store(&mut slot.writer, cx.waker());
            Poll::Pending
        })
    }

    /// False when nothing arrived (no bytes, no FIN, no error) since a read found the
    /// socket drained, as of the reactor's last look at the kernel's events.
    pub(crate) fn may_be_readable(&self) -> bool {
        self.with_slot(|slot| slot.readable)
    }

    /// Forgets the tasks waiting on this socket (it is handed to another task, or
    /// pooled), so that a finished task is neither kept alive nor woken through it.
    pub(crate) fn forget_wakers(&self) {
        let wakers = self.with_slot(|slot| (slot.reader.take(), slot.writer.take()));
        drop(wakers);
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
    pub(crate) fn note_read(&self, result: Result<usize, &io::Error>, wanted: usize) {
        let drained = match result {
            Ok(n) => n > 0 && n < wanted,
            Err(error) => error.kind() == io::ErrorKind::WouldBlock,
        };
        if drained {
            self.with_slot(|slot| {
                if result.is_err() {
                    slot.readable = false;
                    slot.urgent = false;
                } else if !slot.hup && !slot.urgent {
                    // After a FIN a short read leaves the EOF to read, and at an urgent
                    // mark more bytes wait behind it: then stay readable.
                    slot.readable = false;
                }
            });
        }
    }

    /// Records what a write of `offered` bytes returned: `WouldBlock` or a short write
    /// means the send buffer is full, and the next write waits for an event.
    pub(crate) fn note_write(&self, result: Result<usize, &io::Error>, offered: usize) {
        let full = match result {
            Ok(n) => n < offered,
            Err(error) => error.kind() == io::ErrorKind::WouldBlock,
        };
        if full {
            self.with_slot(|slot| slot.writable = false);
        }
    }
}

/// Keeps the waker of the task waiting, cloning only when it changed.
fn store(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(old) if old.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
}

impl<T: AsFd> Drop for Io<T> {
    fn drop(&mut self) {
        // Closing the socket (when `inner` drops, right after) removes it from the epoll
        // set: no `EPOLL_CTL_DEL` needed. The wakers are dropped outside the borrow.
        let wakers = self.reactor.sources.borrow_mut().remove(self.index);
        drop(wakers);
    }
}

impl Io<TcpStream> {
    /// Registers a connected, non-blocking stream (as [`Io::accept`] returns them);
    /// `readable` says whether to try a read before waiting for an event.
    pub(crate) fn stream(stream: TcpStream, readable: bool) -> io::Result<Self> {
        Io::register(stream, readable, true)
    }

    /// Connects to `addr` without blocking the thread.
    pub(crate) async fn connect(addr: SocketAddr) -> io::Result<Self> {
        use rustix::net::{self, AddressFamily, SocketFlags, SocketType};
        let family = match addr {
            SocketAddr::V4(_) => AddressFamily::INET,
            SocketAddr::V6(_) => AddressFamily::INET6,
        };
        let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
        let socket = net::socket_with(family, SocketType::STREAM, flags, None)?;
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
            if io.with_slot(|slot| slot.hup) {
                if let Err(error) = rustix::net::sockopt::socket_error(&io.inner)? {
                    return Err(error.into());
                }
            }
        }
        Ok(io)
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reactor::block_on;
    use std::io::{Read, Write};

    #[test]
    fn a_stream_reads_what_its_peer_wrote_and_sees_eof() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            socket.write_all(b"hello").unwrap();
            let mut echo = [0u8; 3];
            socket.read_exact(&mut echo).unwrap();
            echo
        });
        let got = block_on(async {
            let io = Io::connect(addr).await.unwrap();
            let mut received = Vec::new();
            loop {
                io.readable().await;
                let mut buf = [0u8; 64];
                let result = (&mut io.get_ref()).read(&mut buf);
                io.note_read(result.as_ref().copied(), buf.len());
                match result {
                    Ok(n) => {
                        received.extend_from_slice(&buf[..n]);
                        if received.len() == 5 {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{e}"),
                }
            }
            io.writable().await;
            (&mut io.get_ref()).write_all(b"ack").unwrap();
            received
        })
        .unwrap();
        assert_eq!(got, b"hello");
        assert_eq!(&peer.join().unwrap(), b"ack");
    }

    #[test]
    fn connect_to_a_closed_port_fails() {
        let addr = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let result = block_on(Io::connect(addr)).unwrap();
        assert!(result.is_err());
    }
}
