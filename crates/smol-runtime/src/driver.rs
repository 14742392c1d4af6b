//! One task per client connection: feeds what happens on the sockets into the core,
//! performs what the core asks for, and sleeps until the next readiness or deadline.

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::{SocketAddr, TcpStream};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use event_listener::EventListener;
use futures_lite::future;
use switchyard_core::{
    Config, Connection, Input, Misuse, Output, PeerInfo, RouteId, Side, StateKind,
};

use crate::backend::{Io, Timer};
use crate::buffer::{self, give_buffer, take_buffer, Chunk, WriteQueue, MAX_WRITE_SLICES};
use crate::pipe::{self, Pipe};
use crate::signal::Signal;
use crate::upstream::{self, Dialed, Group, Pool};

/// In the HTTP phase, stop reading from a peer while this much is queued towards the
/// other one (the core has its own backpressure; this bounds memory whatever it does).
const HTTP_BACKLOG: usize = 256 * 1024;
/// After the core closes, how long the client may keep sending before its socket is
/// closed (see [`linger`]).
const LINGER: Duration = Duration::from_secs(2);
/// Lingering ends when the client sent nothing for this long.
const LINGER_QUIET: Duration = Duration::from_millis(250);
/// At most this much is read and discarded while lingering.
const LINGER_BYTES: usize = 256 * 1024;
/// Waits in a row that found a socket ready at once (each leads to one read or write)
/// before a connection's task yields to the others.
const WAITS_BEFORE_YIELD: u8 = 32;
/// A tunnel direction that splices keeps splicing while each splice moves at least this
/// much; less sends it back to copying (see `pipe.rs`).
const SPLICE_AT_LEAST: usize = 16 * 1024;

/// State shared by every connection of a server.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) core: Arc<Config>,
    pub(crate) groups: Vec<Group>,
    pub(crate) route_upstream: Vec<usize>,
    pub(crate) shutdown: Arc<Signal>,
    pub(crate) grace: Duration,
}

/// Serves one client connection until the core closes it; `pool` is the worker's.
pub(crate) async fn serve(
    shared: &Shared,
    pool: &Pool,
    client: Io<TcpStream>,
    client_addr: SocketAddr,
) {
    let peer = PeerInfo {
        client_addr: Some(client_addr.ip()),
        ..PeerInfo::default()
    };
    let mut driver = Driver {
        shared,
        pool,
        client_addr,
        conn: Connection::new(shared.core.clone(), peer, Instant::now()),
        client: Peer::new(client),
        upstream: None,
        tunnel: false,
        pending_connect: None,
        closing: false,
        shutdown_told: false,
        shutdown_listener: None,
        next_fresh: false,
        client_first: false,
        timer: Timer::never(),
        armed: None,
        waits: 0,
    };
    driver.run().await;
}

/// One socket and what is queued towards it.
#[derive(Debug)]
struct Peer {
    stream: Io<TcpStream>,
    queue: WriteQueue,
    /// Tunnel bytes on their way to this peer in a pipe (written once `queue` is empty).
    pipe: Option<Pipe>,
    /// Tunnel reads from this peer splice into a pipe (it sent bulk data lately).
    splice_reads: bool,
    /// EOF (or a read error) was seen and reported; nothing more is read.
    read_eof: bool,
    /// The core asked to shut down writing once the queue is written.
    shutdown_pending: bool,
    /// Writing is over (shut down, or a write failed): queued bytes are dropped.
    write_closed: bool,
}

impl Peer {
    fn new(stream: Io<TcpStream>) -> Self {
        Peer {
            stream,
            queue: WriteQueue::default(),
            pipe: None,
            splice_reads: false,
            read_eof: false,
            shutdown_pending: false,
            write_closed: false,
        }
    }

    fn push(&mut self, chunk: Chunk) {
        if self.write_closed {
            chunk.release();
            return;
        }
        self.queue.push(chunk);
    }

    /// Bytes wait to be written to this peer.
    fn pending(&self) -> bool {
        !self.queue.is_empty() || self.pipe.is_some()
    }

    /// Accounts for `n` bytes written by [`write_queued`] (from the queue while it holds
    /// any, else from the pipe, which counted them itself).
    fn written(&mut self, n: usize) {
        if !self.queue.is_empty() {
            self.queue.consume(n);
        } else if self.pipe.as_ref().is_some_and(|pipe| pipe.len() == 0) {
            if let Some(pipe) = self.pipe.take() {
                pipe.give();
            }
        }
    }

    /// Drops what waits to be written (the peer is gone).
    fn discard(&mut self) {
        self.queue.clear();
        self.pipe = None;
    }

    fn shutdown_write(&mut self) {
        self.shutdown_pending = false;
        if self.write_closed {
            return;
        }
        self.write_closed = true;
        // Fails only when the peer is already gone, which changes nothing here.
        let _ = self.stream.shutdown_write();
    }
}

/// The current upstream connection.
#[derive(Debug)]
struct Upstream {
    peer: Peer,
    server: SocketAddr,
    reused: bool,
    bytes_read: u64,
}

/// What ended a wait.
#[derive(Debug)]
enum Wake {
    Timer,
    Readable(Side),
    Wrote(Side, io::Result<usize>),
    Shutdown,
}

struct Driver<'a> {
    shared: &'a Shared,
    pool: &'a Pool,
    client_addr: SocketAddr,
    conn: Connection,
    client: Peer,
    upstream: Option<Upstream>,
    /// After `StartTunnel`: reads go to pooled buffers and are copied, not parsed.
    tunnel: bool,
    pending_connect: Option<RouteId>,
    /// The core said `Close`.
    closing: bool,
    shutdown_told: bool,
    /// Registered with the shared shutdown signal on the first wait and kept until it
    /// fires: registering on every wait would allocate and take the signal's lock, which
    /// every worker shares, once per message.
    shutdown_listener: Option<EventListener>,
    /// The last pooled connection died before answering: the core's retry must dial.
    next_fresh: bool,
    /// Which peer's readiness the next wait looks at first.
    client_first: bool,
    timer: Timer,
    /// The deadline `timer` is set to (None once it fired or when there is none).
    armed: Option<Instant>,
    /// Waits in a row that completed without sleeping (see [`WAITS_BEFORE_YIELD`]).
    waits: u8,
}

impl Driver<'_> {
    // `&mut self` rather than `self` throughout: moving the driver into nested futures
    // would keep several copies of it in every connection's task.
    async fn run(&mut self) {
        loop {
            while let Some(output) = self.conn.poll_output() {
                self.apply(output);
            }
            if self.closing || self.conn.is_closed() {
                break;
            }
            for peer in [
                Some(&mut self.client),
                self.upstream.as_mut().map(|u| &mut u.peer),
            ]
            .into_iter()
            .flatten()
            {
                if peer.shutdown_pending && !peer.pending() {
                    peer.shutdown_write();
                }
            }
            if let Some(route) = self.pending_connect.take() {
                self.connect(route).await;
                continue;
            }
            // A socket that stays ready (a bulk tunnel, a pipelining client) would keep
            // this task from ever returning to the executor, starving the other
            // connections and the reactor: after many waits in a row that did not have
            // to sleep, yield. (Yielding on a count alone would put a message that is
            // half forwarded behind every other connection's work.)
            if self.waits >= WAITS_BEFORE_YIELD {
                self.waits = 0;
                future::yield_now().await;
            }
            let wake = self.wait().await;
            let now = Instant::now();
            match wake {
                Wake::Timer => {
                    self.armed = None;
                    self.conn.handle_timeout(now);
                }
                Wake::Readable(side) => self.read(side, now),
                Wake::Wrote(side, result) => self.wrote(side, result, now),
                Wake::Shutdown => {
                    self.shutdown_told = true;
                    self.shutdown_listener = None;
                    let grace = self.shared.grace;
                    self.feed(Input::Drain { grace }, now);
                }
            }
            // A busy socket must not starve the deadlines.
            if self
                .conn
                .poll_timeout()
                .is_some_and(|deadline| deadline <= now)
            {
                self.conn.handle_timeout(now);
            }
        }
        // Boxed for the same reason as dialing: it runs once, at the end.
        Box::pin(self.finish()).await;
    }

    fn feed(&mut self, input: Input, now: Instant) {
        if let Err(misuse) = self.conn.handle_input(input, now) {
            match misuse {
                Misuse::Closed => self.closing = true,
                other => {
                    tracing::warn!(client = %self.client_addr, %other, "core rejected an input")
                }
            }
        }
    }

    fn peer_mut(&mut self, side: Side) -> Option<&mut Peer> {
        match side {
            Side::Client => Some(&mut self.client),
            Side::Upstream => self.upstream.as_mut().map(|u| &mut u.peer),
        }
    }

    fn peer(&self, side: Side) -> Option<&Peer> {
        match side {
            Side::Client => Some(&self.client),
            Side::Upstream => self.upstream.as_ref().map(|u| &u.peer),
        }
    }

    fn apply(&mut self, output: Output) {
        match output {
            Output::Connect(route) => self.pending_connect = Some(route),
            Output::ToClient(bytes) => self.client.push(Chunk::Bytes(bytes)),
            Output::ToUpstream(bytes) => match &mut self.upstream {
                Some(upstream) => upstream.peer.push(Chunk::Bytes(bytes)),
                None => {
                    tracing::debug!(client = %self.client_addr, "bytes for a missing upstream dropped")
                }
            },
            Output::ReleaseUpstream { reusable } => self.release_upstream(reusable),
            Output::StartTunnel {
                client_leftover,
                upstream_leftover,
            } => {
                self.tunnel = true;
                self.client.queue.compact();
                if let Some(upstream) = &mut self.upstream {
                    upstream.peer.queue.compact();
                }
                if let Some(upstream) = &mut self.upstream {
                    upstream.peer.push(Chunk::Bytes(client_leftover));
                }
                self.client.push(Chunk::Bytes(upstream_leftover));
            }
            // Done once the queue is written and unless the connection closes first
            // (closing sends the FIN anyway): see `run` and `wrote`.
            Output::HalfClose { side } => {
                if let Some(peer) = self.peer_mut(side) {
                    peer.shutdown_pending = true;
                }
            }
            Output::Close => self.closing = true,
            Output::Event(event) => crate::log::event(self.client_addr, event),
            // An action this driver does not know (a newer core): ending the connection
            // is the only safe answer.
            other => {
                tracing::error!(client = %self.client_addr, ?other, "unknown core output");
                self.closing = true;
            }
        }
    }

    fn release_upstream(&mut self, reusable: bool) {
        let Some(upstream) = self.upstream.take() else {
            return;
        };
        let Upstream {
            peer,
            server,
            reused,
            bytes_read,
        } = upstream;
        // A pooled connection that ended before answering anything makes the core retry
        // once, and that retry should not meet another stale pooled connection.
        self.next_fresh = !reusable && reused && bytes_read == 0;
        let clean = !peer.pending() && !peer.read_eof && !peer.write_closed;
        if reusable && clean {
            self.pool.put(server, peer.stream);
        }
    }

    /// Answers `Connect(route)`, racing the dial against the core's connect deadline.
    async fn connect(&mut self, route: RouteId) {
        let fresh = std::mem::take(&mut self.next_fresh);
        // The core asks for a new connection only after releasing the old one; if it
        // did not, the old one is not reusable.
        self.upstream = None;
        let shared = self.shared;
        let Some(group) = shared
            .route_upstream
            .get(route)
            .and_then(|&index| shared.groups.get(index))
        else {
            tracing::warn!(route, "route has no upstream group");
            self.feed(Input::UpstreamConnectFailed, Instant::now());
            return;
        };
        let connect_timeout = shared
            .core
            .routes
            .get(route)
            .map_or(shared.core.timeouts.connect, |r| r.timeouts.connect);
        // On the heap: dialing state would otherwise sit in every connection's task,
        // also while it idles as a tunnel.
        let mut dial = Box::pin(upstream::connect(group, self.pool, fresh, connect_timeout));
        let dialed = loop {
            self.arm_timer();
            let timer = &mut self.timer;
            let finished = async { Some(dial.as_mut().await) };
            let expire = async {
                timer.await;
                None
            };
            match future::or(finished, expire).await {
                Some(dialed) => break dialed,
                None => {
                    // The timer may fire before the core's deadline (see `arm_timer`).
                    self.armed = None;
                    self.conn.handle_timeout(Instant::now());
                    if self.conn.state() != StateKind::Connecting {
                        return; // the core gave up (504) and has said what to do
                    }
                }
            }
        };
        let now = Instant::now();
        match dialed {
            Some(Dialed {
                stream,
                server,
                reused,
            }) => {
                tracing::debug!(client = %self.client_addr, %server, reused, "upstream connected");
                self.upstream = Some(Upstream {
                    peer: Peer::new(stream),
                    server,
                    reused,
                    bytes_read: 0,
                });
                self.feed(Input::UpstreamConnected { reused }, now);
            }
            None => self.feed(Input::UpstreamConnectFailed, now),
        }
    }

    /// Makes sure the timer fires no later than the core's next deadline. A deadline that
    /// moved later (each tunnel read moves the read deadline) leaves the timer as it is:
    /// it fires early, the timeout is a no-op, and the timer is set again then. Moving a
    /// timer costs the reactor far more than one spurious wake-up.
    fn arm_timer(&mut self) {
        let Some(deadline) = self.conn.poll_timeout() else {
            return; // a timer still armed only causes a harmless wake-up
        };
        if self.armed.map_or(true, |armed| deadline < armed) {
            self.timer.set_at(deadline);
            self.armed = Some(deadline);
        }
    }

    fn should_read(&self, side: Side) -> bool {
        let Some(peer) = self.peer(side) else {
            return false;
        };
        if peer.read_eof || !self.conn.wants_read(side) {
            return false;
        }
        let other = self.peer(side.other());
        let queued_other_way = other.map_or(0, |p| p.queue.len());
        if self.tunnel {
            // One buffer (or pipe) in flight per direction: the next read waits for the
            // write.
            !other.is_some_and(Peer::pending)
        } else {
            queued_other_way < HTTP_BACKLOG
        }
    }

    /// Sleeps until a socket is readable, a write made progress, the deadline passed or
    /// shutdown began.
    async fn wait(&mut self) -> Wake {
        self.arm_timer();
        let read_client = self.should_read(Side::Client);
        let read_upstream = self.should_read(Side::Upstream);
        if !self.shutdown_told && self.shutdown_listener.is_none() {
            self.shutdown_listener = Some(self.shared.shutdown.listen());
        }
        let client = &self.client;
        let upstream = self.upstream.as_ref().map(|u| &u.peer);
        let timer = &mut self.timer;
        let signal = &*self.shared.shutdown;
        let listener = self.shutdown_listener.as_mut();

        let write_client = write_some(Some(client), Side::Client);
        let write_upstream = write_some(upstream, Side::Upstream);
        let readable_client = readable(Some(client).filter(|_| read_client), Side::Client);
        let readable_upstream = readable(upstream.filter(|_| read_upstream), Side::Upstream);
        // Whichever is polled first wins when both are ready: take turns, so that one
        // busy direction of a tunnel cannot starve the other.
        self.client_first = !self.client_first;
        let readable_either = if self.client_first {
            future::or(readable_client, readable_upstream)
        } else {
            future::or(readable_upstream, readable_client)
        };
        let shutdown = async move {
            match listener {
                // Checked after registering: a shutdown that began before is not missed.
                Some(listener) if !signal.is_set() => listener.await,
                Some(_) => {}
                None => future::pending().await,
            }
            Wake::Shutdown
        };
        let deadline = async {
            timer.await;
            Wake::Timer
        };
        let waited = future::or(
            future::or(write_client, write_upstream),
            future::or(readable_either, future::or(shutdown, deadline)),
        );
        let mut waited = pin!(waited);
        let mut slept = false;
        let wake = future::poll_fn(|cx| {
            let poll = waited.as_mut().poll(cx);
            slept |= poll.is_pending();
            poll
        })
        .await;
        self.waits = if slept {
            0
        } else {
            self.waits.saturating_add(1)
        };
        wake
    }

    fn read(&mut self, side: Side, now: Instant) {
        if self.tunnel {
            self.read_tunnel(side, now);
        } else {
            self.read_http(side, now);
        }
    }

    /// HTTP phase: the read buffer goes to the core, which adopts it when it can.
    fn read_http(&mut self, side: Side, now: Instant) {
        let Some(peer) = self.peer_mut(side) else {
            return;
        };
        let result = buffer::read_http(&peer.stream);
        match result {
            Ok(buffer) if buffer.is_empty() => self.eof(side, now),
            Ok(buffer) => {
                let n = buffer.len();
                let input = match side {
                    Side::Client => Input::ClientData(buffer),
                    Side::Upstream => {
                        if let Some(upstream) = &mut self.upstream {
                            upstream.bytes_read += n as u64;
                        }
                        Input::UpstreamData(buffer)
                    }
                };
                self.feed(input, now);
            }
            Err(e) if is_transient(&e) => {}
            Err(error) => {
                tracing::debug!(client = %self.client_addr, ?side, %error, "read failed");
                self.eof(side, now);
            }
        }
    }

    /// Tunnel: read into a pooled buffer (taken only now that the socket is readable)
    /// and queue it towards the other side.
    fn read_tunnel(&mut self, side: Side, now: Instant) {
        let Some(peer) = self.peer_mut(side) else {
            return;
        };
        if peer.splice_reads && pipe::supported() {
            self.splice_tunnel(side, now);
            return;
        }
        let mut buffer = take_buffer();
        let result = peer.stream.read(&mut buffer);
        // A full buffer: bulk data, which the next reads splice instead of copying.
        peer.splice_reads = matches!(result, Ok(n) if n == buffer.len());
        match result {
            Ok(0) => {
                give_buffer(buffer);
                self.eof(side, now);
            }
            Ok(n) => {
                self.feed(
                    Input::TunnelActivity {
                        from: side,
                        bytes: n,
                    },
                    now,
                );
                match self.peer_mut(side.other()) {
                    Some(other) if !other.write_closed => other.queue.push(Chunk::Pooled {
                        buffer,
                        start: 0,
                        end: n,
                    }),
                    _ => give_buffer(buffer),
                }
            }
            Err(e) if is_transient(&e) => give_buffer(buffer),
            Err(error) => {
                give_buffer(buffer);
                tracing::debug!(client = %self.client_addr, ?side, %error, "read failed");
                self.eof(side, now);
            }
        }
    }

    /// Tunnel, bulk direction: splice what the socket holds into a pipe towards the other
    /// side. A splice that moved little sends the next reads back to copying.
    fn splice_tunnel(&mut self, side: Side, now: Instant) {
        let Some(peer) = self.peer_mut(side) else {
            return;
        };
        let pipe = match Pipe::take() {
            Ok(pipe) => pipe,
            Err(error) => {
                tracing::debug!(%error, "no pipe: copying instead");
                peer.splice_reads = false;
                return; // the socket is still readable: the next wait reads it
            }
        };
        let result = peer.stream.splice_to(&pipe);
        // A short splice may stop at the pipe's slot count, so only WouldBlock can say
        // the socket is drained, and not even that: splice never reads past an urgent
        // (out-of-band) mark. On WouldBlock the next read copies (a read skips the
        // mark) and decides; a drained socket costs one read more.
        if matches!(&result, Err(e) if is_transient(e)) {
            peer.splice_reads = false;
        }
        match result {
            Ok(0) => {
                pipe.give();
                self.eof(side, now);
            }
            Ok(n) => {
                peer.splice_reads = n >= SPLICE_AT_LEAST;
                self.feed(
                    Input::TunnelActivity {
                        from: side,
                        bytes: n,
                    },
                    now,
                );
                if let Some(other) = self.peer_mut(side.other()).filter(|o| !o.write_closed) {
                    // `should_read` waits for the other side's queue and pipe to empty,
                    // and the core sends nothing during a tunnel: `Peer::written` relies
                    // on never having both.
                    debug_assert!(!other.pending());
                    other.pipe = Some(pipe);
                }
            }
            Err(e) if is_transient(&e) => pipe.give(),
            Err(_) if !pipe::supported() => {
                pipe.give();
                peer.splice_reads = false; // the copy path reads it on the next wait
            }
            Err(error) => {
                pipe.give();
                tracing::debug!(client = %self.client_addr, ?side, %error, "splice failed");
                self.eof(side, now);
            }
        }
    }

    fn eof(&mut self, side: Side, now: Instant) {
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

    fn wrote(&mut self, side: Side, result: io::Result<usize>, now: Instant) {
        let Some(peer) = self.peer_mut(side) else {
            return;
        };
        match result {
            Ok(0) => self.write_failed(side, io::ErrorKind::WriteZero.into(), now),
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
        tracing::debug!(client = %self.client_addr, ?side, %error, "write failed");
        if let Some(peer) = self.peer_mut(side) {
            peer.discard();
            peer.shutdown_pending = false;
            peer.write_closed = true;
            peer.read_eof = true;
        }
        // The peer is gone both ways: the core ends the exchange or tunnel at once.
        self.feed(Input::WriteFailed { to: side }, now);
    }

    /// After `Close`: write what is pending (within `send_timeout`), close the upstream,
    /// then half-close the client and linger briefly so unread request bytes do not turn
    /// the close into a reset.
    async fn finish(&mut self) {
        let limit = self.shared.core.timeouts.send;
        let client = &mut self.client;
        let upstream = self.upstream.as_mut().map(|u| &mut u.peer);
        let flush_both = async {
            future::zip(flush(Some(client)), flush(upstream)).await;
        };
        future::or(flush_both, async {
            Timer::after(limit).await;
        })
        .await;
        self.upstream = None;
        // A client that sent its EOF has nothing unread: closing sends the FIN, with no
        // reset to fear and no need for a separate shutdown.
        if !self.client.read_eof {
            self.client.shutdown_write();
            linger(&self.client.stream).await;
        }
    }
}

/// Reads and discards what the client still sends, until its EOF, a quiet gap of
/// [`LINGER_QUIET`], [`LINGER`] in all or [`LINGER_BYTES`]: closing a socket with unread
/// bytes resets the connection, which can destroy a response the client has not read yet
/// (say, a `413` sent while the client was still uploading).
async fn linger(stream: &Io<TcpStream>) {
    let drain = async {
        // On the heap and only now, so that no task carries it while it is not lingering.
        let mut sink = vec![0u8; 4096];
        let mut total = 0;
        while total < LINGER_BYTES {
            let read = async { Some(read_some(stream, &mut sink).await) };
            let quiet = async {
                Timer::after(LINGER_QUIET).await;
                None
            };
            match future::or(read, quiet).await {
                Some(Ok(n)) if n > 0 => total += n,
                _ => return,
            }
        }
    };
    future::or(drain, async {
        Timer::after(LINGER).await;
    })
    .await;
}

fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// Reads once `stream` is readable.
async fn read_some(stream: &Io<TcpStream>, buffer: &mut [u8]) -> io::Result<usize> {
    loop {
        stream.readable().await;
        let result = stream.read(buffer);
        if !matches!(&result, Err(e) if is_transient(e)) {
            return result;
        }
    }
}

/// One vectored write of what is queued towards `peer` (head and body of a response go
/// out in one system call), or else one splice out of its pipe, once its socket may take
/// bytes. The slices are built on every poll rather than kept in the future, which every
/// connection's task would carry.
async fn write_queued(peer: &Peer) -> io::Result<usize> {
    future::poll_fn(|cx| loop {
        if peer.stream.poll_writable(cx).is_pending() {
            return Poll::Pending;
        }
        if let Some(pipe) = peer.pipe.as_ref().filter(|_| peer.queue.is_empty()) {
            let result = peer.stream.splice_from(pipe);
            match result {
                Err(e) if is_transient(&e) => continue, // now waits for writability
                result => return Poll::Ready(result),
            }
        }
        let mut slices = [IoSlice::new(&[]); MAX_WRITE_SLICES];
        let n = peer.queue.slices(&mut slices);
        let result = peer.stream.write_vectored(&slices[..n]);
        match result {
            Err(e) if is_transient(&e) => {} // now waits for writability
            result => return Poll::Ready(result),
        }
    })
    .await
}

/// Writes some of what is queued towards `peer`; never completes when nothing is.
async fn write_some(peer: Option<&Peer>, side: Side) -> Wake {
    match peer {
        Some(peer) if peer.pending() && !peer.write_closed => {
            Wake::Wrote(side, write_queued(peer).await)
        }
        _ => future::pending().await,
    }
}

/// Completes when `peer` is readable; never completes for `None`. Readiness lives in the
/// reactor, not in this future: what arrived while a wait was won by something else is
/// still seen by the next wait.
async fn readable(peer: Option<&Peer>, side: Side) -> Wake {
    match peer {
        Some(peer) => {
            peer.stream.readable().await;
            Wake::Readable(side)
        }
        None => future::pending().await,
    }
}

/// Writes everything queued towards `peer` (a failed write drops the rest); a shutdown
/// still pending is left to the close that follows.
async fn flush(peer: Option<&mut Peer>) {
    let Some(peer) = peer else {
        return;
    };
    while peer.pending() && !peer.write_closed {
        match write_queued(peer).await {
            Ok(n) if n > 0 => peer.written(n),
            Err(e) if is_transient(&e) => {}
            _ => {
                peer.discard();
                peer.write_closed = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PoolConfig;
    use std::net::TcpListener;

    /// The task of an idle connection (or idle tunnel) is this future and nothing else
    /// of the adapter's: no buffer. The design's target is under 2 KB of proxy memory
    /// per idle tunnel.
    #[test]
    fn connection_task_stays_small() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nonblocking(true).unwrap();
        let shared = Shared {
            core: Arc::new(Config::default()),
            groups: Vec::new(),
            route_upstream: Vec::new(),
            shutdown: Arc::new(Signal::default()),
            grace: Duration::from_secs(1),
        };
        let pool = Pool::new(PoolConfig::default());
        let size = crate::backend::block_on(async {
            let client = Io::stream(stream, true).unwrap();
            let task = serve(&shared, &pool, client, addr);
            std::mem::size_of_val(&task)
        })
        .unwrap();
        // The driver (with the core's connection inline) and the wait for readiness;
        // dialing and closing are boxed.
        assert!(size < 1700, "a connection task takes {size} bytes");
    }
}
