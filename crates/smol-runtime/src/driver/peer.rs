//! The two sockets of a connection, what is queued towards each, and the reads and
//! writes of the HTTP phase.

use std::io::{self, IoSlice};
use std::net::{SocketAddr, TcpStream};
use std::task::{Context, Poll};
use std::time::Instant;

use futures_lite::future;
use switchyard_core::{Input, Side};

use super::{Driver, Link};
use crate::backend::{Io, Pipe};
use crate::buffer::{self, Chunk, MAX_WRITE_SLICES};
/// A failure that means "not now" (shared with the proxy's other socket code).
pub(super) use crate::stream_io::is_transient;
use crate::tls::session::TlsSession;
use crate::write_queue::WriteQueue;

/// In the HTTP phase, stop reading from a peer while this much is queued towards the
/// other one (the core has its own backpressure; this bounds memory whatever it does).
const HTTP_BACKLOG: usize = 256 * 1024;

/// One socket and what is queued towards it. The flags record what happened on this
/// socket, which the core does not see: it hears of an EOF or a failed write once, as
/// an input, and never of the pipe or the shutdown's timing.
#[derive(Debug)]
pub(super) struct Peer {
    pub(super) stream: Io<TcpStream>,
    pub(super) queue: WriteQueue,
    /// Tunnel bytes (or a response body's) on their way to this peer in a pipe. Written
    /// before `queue`: a pipe is only filled while nothing is pending towards the peer,
    /// so whatever the queue holds came after it (frames of the core's own, the next
    /// shown read, a chunk's end).
    pub(super) pipe: Option<Pipe>,
    /// Tunnel reads from this peer, and reads of a response body, splice into a pipe
    /// (it sent bulk data lately).
    pub(super) splice_reads: bool,
    /// EOF (or a read error) was seen and reported; nothing more is read.
    pub(super) read_eof: bool,
    /// The core asked to shut down writing once the queue is written.
    pub(super) shutdown_pending: bool,
    /// Writing is over (shut down, or a write failed): queued bytes are dropped.
    pub(super) write_closed: bool,
    /// The TLS session: a client's on a TLS listener, an upstream's in a group with
    /// TLS. Reads and writes go through it (see `tls/session.rs`), and nothing splices.
    pub(super) tls: Option<Box<TlsSession>>,
}

impl Peer {
    /// A peer whose bytes pass through `tls` when it is a TLS session.
    pub(super) fn with_tls(stream: Io<TcpStream>, tls: Option<Box<TlsSession>>) -> Self {
        Peer {
            tls,
            stream,
            queue: WriteQueue::default(),
            pipe: None,
            splice_reads: false,
            read_eof: false,
            shutdown_pending: false,
            write_closed: false,
        }
    }

    pub(super) fn push(&mut self, chunk: Chunk) {
        if self.write_closed {
            chunk.release();
            return;
        }
        self.queue.push(chunk);
    }

    /// Bytes wait to be written to this peer.
    pub(super) fn pending(&self) -> bool {
        !self.queue.is_empty()
            || self.pipe.is_some()
            || self.tls.as_ref().is_some_and(|tls| tls.wants_write())
    }

    /// One read of plaintext (through the TLS session, if any).
    pub(super) fn read(&self, buffer: &mut [u8]) -> io::Result<usize> {
        match &self.tls {
            Some(tls) => tls.read(&self.stream, buffer),
            None => self.stream.read(buffer),
        }
    }

    /// One HTTP-phase read (see [`buffer::read_http`]; through the TLS session, if any).
    pub(super) fn read_http(&self) -> io::Result<bytes::BytesMut> {
        match &self.tls {
            Some(tls) => tls.read_http(&self.stream),
            None => buffer::read_http(&self.stream),
        }
    }

    /// Accounts for `n` bytes written by [`poll_write_queued`] (from the pipe while there is
    /// one, which counted them itself, else from the queue).
    fn written(&mut self, n: usize) {
        match &self.pipe {
            Some(pipe) if pipe.len() == 0 => {
                if let Some(pipe) = self.pipe.take() {
                    pipe.give();
                }
            }
            Some(_) => {}
            None => self.queue.consume(n),
        }
    }

    /// Drops what waits to be written (the peer is gone).
    fn discard(&mut self) {
        self.queue.clear();
        self.pipe = None;
    }

    pub(super) fn shutdown_write(&mut self) {
        self.shutdown_pending = false;
        if self.write_closed {
            return;
        }
        self.write_closed = true;
        if let Some(tls) = &self.tls {
            // A TLS client learns of the end from close_notify; a TCP shutdown with
            // it still unwritten would cut it off, and the close sends the FIN anyway.
            if !tls.close_notify(&self.stream) {
                return;
            }
        }
        // Fails only when the peer is already gone, which changes nothing here.
        let _ = self.stream.shutdown_write();
    }
}

/// What the HTTP phase knows of the current upstream connection, which a tunnel does
/// not need.
#[derive(Debug)]
pub(super) struct UpstreamFacts {
    pub(super) server: SocketAddr,
    pub(super) reused: bool,
    /// Response bytes read so far: a reused connection that closes before sending any
    /// makes the core's retry dial a fresh one.
    pub(super) bytes_read: u64,
    /// Whether it may go back to the pool (not when it began with a client's PROXY
    /// header).
    pub(super) poolable: bool,
}

impl Link {
    pub(super) fn peer_mut(&mut self, side: Side) -> Option<&mut Peer> {
        match side {
            Side::Client => Some(&mut self.client),
            Side::Upstream => self.upstream.as_mut().map(|u| &mut u.peer),
        }
    }

    pub(super) fn peer(&self, side: Side) -> Option<&Peer> {
        match side {
            Side::Client => Some(&self.client),
            Side::Upstream => self.upstream.as_ref().map(|u| &u.peer),
        }
    }

    /// Whether the next wait looks at `side`'s readability.
    pub(super) fn should_read(&self, side: Side) -> bool {
        let Some(peer) = self.peer(side) else {
            return false;
        };
        if peer.read_eof || !self.conn.wants_read(side) {
            return false;
        }
        let other = self.peer(side.other());
        let queued_other_way = other.map_or(0, |p| p.queue.len());
        if self.in_tunnel() {
            // One buffer (or pipe) in flight per direction: the next read waits for the
            // write.
            !other.is_some_and(Peer::pending)
        } else {
            // A spliced body's pipe, too, is one in flight: the next read may splice.
            queued_other_way < HTTP_BACKLOG && !other.is_some_and(|p| p.pipe.is_some())
        }
    }

    pub(super) fn eof(&mut self, side: Side, now: Instant) {
        let Some(peer) = self.peer_mut(side) else {
            return;
        };
        if peer.read_eof {
            return;
        }
        peer.read_eof = true;
        let input = match side {
            Side::Client => Input::ClientEof,
            Side::Upstream => Input::UpstreamEof,
        };
        self.feed(input, now);
    }

    /// Accounts for a write towards `side` (or its failure).
    pub(super) fn wrote(&mut self, side: Side, result: io::Result<usize>, now: Instant) {
        let Some(peer) = self.peer_mut(side) else {
            return;
        };
        match result {
            // A TLS session's write of nothing queued: what rustls held went out.
            Ok(0) if !peer.queue.is_empty() || peer.pipe.is_some() => {
                self.write_failed(side, io::ErrorKind::WriteZero.into(), now)
            }
            Ok(n) => {
                peer.written(n);
                if !peer.pending() {
                    if peer.shutdown_pending {
                        peer.shutdown_write();
                    }
                    self.feed(Input::Flushed { to: side }, now);
                }
            }
            Err(e) if is_transient(&e) => {}
            Err(error) => self.write_failed(side, error, now),
        }
    }

    /// A peer that cannot be written to is gone: drop what was queued for it and tell the
    /// core, which ends the exchange or tunnel (an EOF would only half-close it).
    fn write_failed(&mut self, side: Side, error: io::Error, now: Instant) {
        tracing::debug!(client = %self.origin.client, ?side, %error, "write failed");
        if let Some(peer) = self.peer_mut(side) {
            peer.discard();
            peer.shutdown_pending = false;
            peer.write_closed = true;
            peer.read_eof = true;
        }
        // The peer is gone both ways: the core ends the exchange or tunnel at once.
        self.feed(Input::WriteFailed { to: side }, now);
    }
}

impl Driver {
    /// Reads what `side` sent, as the phase wants it.
    pub(super) fn read(&mut self, side: Side, now: Instant) {
        if self.in_tunnel() {
            self.read_tunnel_side(side, now);
        } else {
            self.read_http(side, now);
        }
    }

    /// HTTP phase: the read buffer goes to the core, which adopts it when it can.
    fn read_http(&mut self, side: Side, now: Instant) {
        if side == Side::Upstream && self.splice_response_body(now) {
            return;
        }
        let Some(peer) = self.peer_mut(side) else {
            return;
        };
        let result = peer.read_http();
        match result {
            Ok(buffer) if buffer.is_empty() => self.eof(side, now),
            Ok(buffer) => {
                let n = buffer.len();
                let input = match side {
                    Side::Client => Input::ClientData(buffer),
                    Side::Upstream => {
                        if let Some(facts) = &mut self.facts {
                            facts.bytes_read += n as u64;
                        }
                        if let Some(upstream) = &mut self.link.upstream {
                            // Bulk arriving: the body's next reads may splice.
                            upstream.peer.splice_reads = n >= super::tunnel::SPLICE_AT_LEAST;
                        }
                        Input::UpstreamData(buffer)
                    }
                };
                self.feed(input, now);
            }
            Err(e) if is_transient(&e) => {}
            Err(error) => {
                tracing::debug!(client = %self.origin.client, ?side, %error, "read failed");
                self.eof(side, now);
            }
        }
    }
}

/// One splice out of the pipe towards `peer`, or else one vectored write of what is
/// queued towards it (head and body of a response go out in one system call), once its
/// socket may take bytes.
pub(super) fn poll_write_queued(peer: &Peer, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
    loop {
        if peer.stream.poll_writable(cx).is_pending() {
            return Poll::Pending;
        }
        match peer.write_once() {
            Err(e) if is_transient(&e) => {} // now waits for writability
            result => return Poll::Ready(result),
        }
    }
}

impl Peer {
    /// One splice out of the pipe, or else one vectored write of the queue (through the
    /// TLS session, if any). The slices are built on every call rather than kept, which
    /// every connection's task would carry.
    pub(super) fn write_once(&self) -> io::Result<usize> {
        if let Some(pipe) = &self.pipe {
            return self.stream.splice_from(pipe);
        }
        let mut slices = [IoSlice::new(&[]); MAX_WRITE_SLICES];
        let n = self.queue.slices(&mut slices);
        match &self.tls {
            Some(tls) => tls.write_vectored(&self.stream, &slices[..n]),
            None => self.stream.write_vectored(&slices[..n]),
        }
    }
}

/// Whether a wait should write towards `peer`: something is queued and writing is not
/// over.
pub(super) fn wants_write(peer: &Peer) -> bool {
    peer.pending() && !peer.write_closed
}

/// Ready when `peer` is readable. Readiness lives in the reactor, not in the wait: what
/// arrived while a wait was won by something else is still seen by the next wait.
pub(super) fn poll_readable(peer: &Peer, cx: &mut Context<'_>) -> Poll<()> {
    // Plaintext a TLS session already holds is not the socket's to announce.
    if peer.tls.as_ref().is_some_and(|tls| tls.has_readable()) {
        return Poll::Ready(());
    }
    peer.stream.poll_readable(cx)
}

/// Writes everything queued towards `peer` (a failed write drops the rest); a shutdown
/// still pending is left to the close that follows.
pub(super) async fn flush(peer: Option<&mut Peer>) {
    let Some(peer) = peer else {
        return;
    };
    while peer.pending() && !peer.write_closed {
        match future::poll_fn(|cx| poll_write_queued(peer, cx)).await {
            Ok(n) if n > 0 || peer.queue.is_empty() => peer.written(n),
            Err(e) if is_transient(&e) => {}
            _ => {
                peer.discard();
                peer.write_closed = true;
            }
        }
    }
}

// Only where a pipe can exist.
#[cfg(all(test, target_os = "linux", not(feature = "portable")))]
mod tests {
    use super::*;
    use crate::backend::block_on;
    use crate::test_support::tcp_pair;
    use bytes::Bytes;
    use std::io::{Read, Write};

    /// Bytes spliced into a pipe towards a peer, then a frame of the core's own queued
    /// behind them: the peer reads them in that order.
    #[test]
    fn a_pipe_is_written_before_what_was_queued_after_it() {
        let (mut sender, from) = tcp_pair();
        let (to, mut receiver) = tcp_pair();
        from.set_nonblocking(true).unwrap();
        to.set_nonblocking(true).unwrap();
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        sender.write_all(b"payload ").unwrap();
        block_on(async move {
            let from = Io::stream(from, true).unwrap();
            let mut peer = Peer::with_tls(Io::stream(to, false).unwrap(), None);
            let pipe = Pipe::take().unwrap();
            let mut moved = 0;
            while moved < 8 {
                from.readable().await;
                match from.splice_to(&pipe, 8 - moved) {
                    Ok(n) => moved += n,
                    Err(e) if is_transient(&e) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            peer.pipe = Some(pipe);
            peer.push(Chunk::Bytes(Bytes::from_static(b"then a Close")));
            flush(Some(&mut peer)).await;
            assert!(!peer.pending());
        })
        .unwrap();
        let mut got = [0u8; 20];
        receiver.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"payload then a Close");
    }
}
