//! Sockets registered with async-io's reactor, behind the same methods as the Linux
//! reactor's `Io`: every read, write and accept goes through one of them, and records
//! what it found.

use std::cell::Cell;
use std::io::{self, IoSlice, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::task::{Context, Poll};

use async_io::Async;

use super::pipe::Pipe;

/// A socket registered with async-io's reactor, and its readiness as far as this side
/// knows. Not `Sync` (the flags are `Cell`s): one task uses it at a time, as on the Linux
/// reactor.
pub(crate) struct Io<T: AsFd> {
    inner: Async<T>,
    readable: Cell<bool>,
    writable: Cell<bool>,
}

impl<T: AsFd + std::fmt::Debug> std::fmt::Debug for Io<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Io").field(self.inner.get_ref()).finish()
    }
}

impl<T: AsFd> Io<T> {
    fn new(inner: Async<T>, readable: bool, writable: bool) -> Self {
        Io {
            inner,
            readable: Cell::new(readable),
            writable: Cell::new(writable),
        }
    }

    /// Ready when the socket may have something to read (or an EOF or error to report).
    pub(crate) fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<()> {
        poll_ready(&self.readable, || self.inner.poll_readable(cx))
    }

    /// Ready when the socket may accept bytes.
    pub(crate) fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<()> {
        poll_ready(&self.writable, || self.inner.poll_writable(cx))
    }

    /// Whether a read may find something. async-io tells of an event only to a task that
    /// waits, so for a socket nobody waits on (a pooled one) this cannot know: true.
    pub(crate) fn may_be_readable(&self) -> bool {
        true
    }

    /// False when a write found the send buffer full and no wait has seen it writable
    /// since.
    pub(crate) fn may_be_writable(&self) -> bool {
        self.writable.get()
    }

    /// Forgets the tasks waiting on this socket: nothing to do, async-io offers no way.
    /// The last task's waker stays with the socket until an event wakes it (a finished
    /// task: nothing runs) or the next task's wait replaces it.
    pub(crate) fn forget_wakers(&self) {}

    /// Completes when [`poll_readable`](Io::poll_readable) would be ready.
    pub(crate) async fn readable(&self) {
        std::future::poll_fn(|cx| self.poll_readable(cx)).await;
    }

    /// Completes when [`poll_writable`](Io::poll_writable) would be ready (the driver
    /// writes first and waits through `poll_writable`; tests wait with this).
    #[cfg(test)]
    pub(crate) async fn writable(&self) {
        std::future::poll_fn(|cx| self.poll_writable(cx)).await;
    }

    /// Records what a read of up to `wanted` bytes returned: `WouldBlock`, or fewer bytes
    /// than asked for, means the next read waits (and a wait that was not needed ends at
    /// once: async-io's registration is level-triggered).
    fn note_read(&self, result: Result<usize, &io::Error>, wanted: usize) {
        if drained(result, wanted) {
            self.readable.set(false);
        }
    }

    /// Records what a write of `offered` bytes returned, as [`Io::note_read`] does.
    fn note_write(&self, result: Result<usize, &io::Error>, offered: usize) {
        let full = match result {
            Ok(n) => n < offered,
            Err(error) => error.kind() == io::ErrorKind::WouldBlock,
        };
        if full {
            self.writable.set(false);
        }
    }
}

/// Ready at once while `flag` is set, else once async-io reports an event (an error
/// counts as ready: the next read or write reports it).
fn poll_ready(flag: &Cell<bool>, poll: impl FnOnce() -> Poll<io::Result<()>>) -> Poll<()> {
    if flag.get() {
        return Poll::Ready(());
    }
    match poll() {
        Poll::Ready(_) => {
            flag.set(true);
            Poll::Ready(())
        }
        Poll::Pending => Poll::Pending,
    }
}

fn drained(result: Result<usize, &io::Error>, wanted: usize) -> bool {
    match result {
        Ok(n) => n > 0 && n < wanted,
        Err(error) => error.kind() == io::ErrorKind::WouldBlock,
    }
}

impl Io<TcpStream> {
    /// The address this end of the connection has (for a client: the address it
    /// connected to).
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }

    /// Registers a connected, non-blocking stream (as [`Io::accept`] returns them);
    /// `readable` says whether to try a read before waiting for an event.
    pub(crate) fn stream(stream: TcpStream, readable: bool) -> io::Result<Self> {
        Ok(Io::new(Async::new_nonblocking(stream)?, readable, true))
    }

    /// Connects to `addr` without blocking the thread, from `source` when given.
    pub(crate) async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<Self> {
        let Some(source) = source else {
            let stream = Async::<TcpStream>::connect(addr).await?;
            return Ok(Io::new(stream, false, true));
        };
        // std connects only from an address of the system's choice: the socket is made,
        // bound and connected here, the wait for the connect left to async-io.
        use rustix::net::{self, AddressFamily, SocketType};
        let family = match addr {
            SocketAddr::V4(_) => AddressFamily::INET,
            SocketAddr::V6(_) => AddressFamily::INET6,
        };
        let socket = net::socket(family, SocketType::STREAM, None)?;
        crate::source::bind(&socket, source)?;
        let stream = TcpStream::from(socket);
        stream.set_nonblocking(true)?;
        match net::connect(&stream, &addr) {
            Ok(()) | Err(rustix::io::Errno::INPROGRESS) => {}
            Err(error) => return Err(error.into()),
        }
        let stream = Async::new_nonblocking(stream)?;
        stream.writable().await?;
        if let Some(error) = stream.get_ref().take_error()? {
            return Err(error);
        }
        Ok(Io::new(stream, false, true))
    }

    /// One read into `buffer`.
    pub(crate) fn read(&self, buffer: &mut [u8]) -> io::Result<usize> {
        let result = (&mut self.inner.get_ref()).read(buffer);
        self.note_read(result.as_ref().copied(), buffer.len());
        result
    }

    /// One read into the spare capacity of `buffer` (uninitialised memory: nothing is
    /// zeroed first), whose length then grows by what was read.
    pub(crate) fn read_spare(&self, buffer: &mut Vec<u8>) -> io::Result<usize> {
        let wanted = buffer.capacity() - buffer.len();
        let result = rustix::io::read(self.inner.get_ref(), rustix::buffer::spare_capacity(buffer))
            .map_err(io::Error::from);
        self.note_read(result.as_ref().copied(), wanted);
        result
    }

    /// One vectored write of `slices`, in order.
    pub(crate) fn write_vectored(&self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        let offered = slices.iter().map(|slice| slice.len()).sum();
        let result = (&mut self.inner.get_ref()).write_vectored(slices);
        self.note_write(result.as_ref().copied(), offered);
        result
    }

    /// Splices into a pipe: there is none to splice into here.
    pub(crate) fn splice_to(&self, pipe: &Pipe, _most: usize) -> io::Result<usize> {
        match *pipe {}
    }

    /// Splices out of a pipe: there is none here.
    pub(crate) fn splice_from(&self, pipe: &Pipe) -> io::Result<usize> {
        match *pipe {}
    }

    /// Shuts down writing (sends the FIN once queued bytes are out).
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        self.inner.get_ref().shutdown(Shutdown::Write)
    }

    /// Turns Nagle's algorithm off (`nodelay`) or on.
    pub(crate) fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.get_ref().set_nodelay(nodelay)
    }
}

impl Io<TcpListener> {
    /// Registers a listening socket, set non-blocking here.
    pub(crate) fn listener(listener: TcpListener) -> io::Result<Self> {
        Ok(Io::new(Async::new(listener)?, true, false))
    }

    /// The next connection, non-blocking already, and its peer's address.
    pub(crate) async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        loop {
            self.readable().await;
            match self.inner.get_ref().accept() {
                Ok((stream, addr)) => {
                    stream.set_nonblocking(true)?;
                    return Ok((stream, addr));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.readable.set(false);
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// A connection already in the accept queue, if any, without waiting, for emptying
    /// the queue before the listener closes.
    pub(crate) fn accept_queued(&self) -> io::Result<Option<(TcpStream, SocketAddr)>> {
        match self.inner.get_ref().accept() {
            Ok((stream, addr)) => {
                stream.set_nonblocking(true)?;
                Ok(Some((stream, addr)))
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                self.readable.set(false);
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// The address the listener is bound to.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portable::block_on;

    /// A connected pair whose near end is non-blocking, as registered sockets are.
    fn pair() -> (TcpStream, TcpStream) {
        let (near, far) = crate::test_support::tcp_pair();
        near.set_nonblocking(true).unwrap();
        (near, far)
    }

    /// A flag cleared by a short read is only a hint here: the next wait still sees
    /// what is queued (level-triggered), the EOF behind the bytes included.
    #[test]
    fn a_short_read_waits_and_the_wait_sees_what_is_still_queued() {
        let (near, mut far) = pair();
        far.write_all(b"abcdef").unwrap();
        far.shutdown(Shutdown::Write).unwrap();
        let received = block_on(async {
            let io = Io::stream(near, true).unwrap();
            let mut received = Vec::new();
            let mut buffer = [0u8; 4];
            loop {
                io.readable().await;
                match io.read(&mut buffer) {
                    Ok(0) => return received,
                    Ok(n) => received.extend_from_slice(&buffer[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        assert!(!io.readable.get());
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        })
        .unwrap();
        assert_eq!(received, b"abcdef");
    }

    #[test]
    fn accept_connect_and_a_vectored_write_cross() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = block_on(async {
            let listener = Io::listener(listener).unwrap();
            let client = Io::connect(addr, None).await.unwrap();
            let (accepted, peer) = listener.accept().await.unwrap();
            assert_eq!(peer.ip(), addr.ip());
            let accepted = Io::stream(accepted, false).unwrap();
            client.writable().await;
            let slices = [IoSlice::new(b"he"), IoSlice::new(b"llo")];
            assert_eq!(client.write_vectored(&slices).unwrap(), 5);
            client.shutdown_write().unwrap();
            let mut received = Vec::with_capacity(64);
            loop {
                accepted.readable().await;
                match accepted.read_spare(&mut received) {
                    Ok(0) => return received,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{e}"),
                }
            }
        })
        .unwrap();
        assert_eq!(received, b"hello");
    }

    #[test]
    fn connect_to_a_closed_port_fails() {
        let addr = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        assert!(block_on(Io::connect(addr, None)).unwrap().is_err());
    }
}
