//! A reverse proxy driven by a hand-written event loop: no async runtime, only std
//! non-blocking sockets and the `polling` crate for readiness. It shows what any embedder
//! of `switchyard-core` does, in one thread for every connection:
//!
//! 1. feed what happened on a socket to that connection's [`Connection`];
//! 2. drain [`Connection::poll_output`] and perform each [`Output`] in order;
//! 3. sleep until a socket is ready or the earliest [`Connection::poll_timeout`] passes
//!    (then feed [`Input::Timeout`]).
//!
//! In a tunnel it asks [`Connection::tunnel_passthrough`] before each read: bytes within
//! that budget are copied past the core ([`Input::TunnelActivity`]); at 0 (a WebSocket
//! frame header, a control frame) the read is lent to the core
//! ([`Connection::handle_tunnel_read`]), which says how much of it to forward as it is
//! and writes the rest of what it forwards as outputs. [`Output::NeedMaskingKey`] is
//! answered at once.
//!
//! ```text
//! cargo run -p switchyard-core --example event_loop -- \
//!     --listen 127.0.0.1:8081 --upstream 127.0.0.1:9000
//! ```
//!
//! Kept short on purpose: upstream connections are dialled with a blocking connect (a
//! production loop would connect non-blocking and wait for writability) and never pooled,
//! deadlines are found by scanning every connection (use a timer heap), and events are
//! printed to stderr (use `tracing`).
#![deny(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use polling::{Event, Events, Poller};
use switchyard_core::{Config, Connection, Input, Output, PeerInfo, RouteId, Side};

/// Poller key of the listener. Connection `id` (from 1) uses `2 * id` for its client
/// socket and `2 * id + 1` for its upstream socket.
const LISTENER: usize = 0;
/// Bytes read from a socket at once.
const READ_SIZE: usize = 16 * 1024;
/// Before the tunnel, stop reading a side while this much is queued towards the other.
const HTTP_BACKLOG: usize = 256 * 1024;
/// Longest the (blocking) upstream connect may stall the loop.
const CONNECT_WAIT: Duration = Duration::from_secs(2);
/// After the core's `Close`: time to write what is pending, then to linger reading the
/// client (closing with unread bytes would reset the connection and lose the response).
const FLUSH_WAIT: Duration = Duration::from_secs(5);
const LINGER: Duration = Duration::from_secs(1);

#[allow(dead_code)] // unused when the integration test includes this file as a module
fn main() -> io::Result<()> {
    let (mut listen, mut upstream) = ("127.0.0.1:8081".to_string(), "127.0.0.1:9000".to_string());
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--listen", Some(addr)) => listen = addr,
            ("--upstream", Some(addr)) => upstream = addr,
            _ => {
                eprintln!("usage: event_loop [--listen ADDR] [--upstream ADDR]");
                std::process::exit(2);
            }
        }
    }
    let upstream = upstream
        .to_socket_addrs()?
        .next()
        .ok_or(io::ErrorKind::InvalidInput)?;
    let mut proxy = Proxy::new(TcpListener::bind(listen)?, upstream, Config::default())?;
    eprintln!("proxying {} -> {upstream}", proxy.local_addr()?);
    proxy.run()
}

/// The proxy: one listener, one poller, a `Conn` per client connection.
pub struct Proxy {
    poller: Arc<Poller>,
    listener: TcpListener,
    upstream: SocketAddr,
    config: Arc<Config>,
    conns: HashMap<usize, Conn>,
    next_id: usize,
    stop: Arc<AtomicBool>,
}

/// Ends [`Proxy::run`] from another thread.
pub struct Stopper {
    poller: Arc<Poller>,
    stop: Arc<AtomicBool>,
}

impl Stopper {
    /// Makes `run` return after its current iteration.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.poller.notify();
    }
}

impl Proxy {
    /// A proxy accepting on `listener` and forwarding to `upstream`.
    pub fn new(listener: TcpListener, upstream: SocketAddr, config: Config) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let poller = Arc::new(Poller::new()?);
        // SAFETY: `Drop for Proxy` deletes the listener from the poller before it closes.
        #[allow(unsafe_code)]
        unsafe {
            poller.add(&listener, Event::readable(LISTENER))?
        };
        let (config, stop) = (Arc::new(config), Arc::default());
        let (conns, next_id) = (HashMap::new(), 1);
        Ok(Proxy {
            poller,
            listener,
            upstream,
            config,
            conns,
            next_id,
            stop,
        })
    }

    /// Where clients connect.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle that stops [`run`](Self::run).
    pub fn stopper(&self) -> Stopper {
        Stopper {
            poller: self.poller.clone(),
            stop: self.stop.clone(),
        }
    }

    /// The event loop.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::new();
        while !self.stop.load(Ordering::Acquire) {
            // Sleep until a socket is ready or the earliest deadline of any connection.
            let deadline = self.conns.values().filter_map(Conn::deadline).min();
            let timeout = deadline.map(|at| at.saturating_duration_since(Instant::now()));
            events.clear();
            match self.poller.wait(&mut events, timeout) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => result?,
            };
            let now = Instant::now();
            let mut touched = Vec::new();
            for event in events.iter() {
                if event.key == LISTENER {
                    self.accept(now, &mut touched);
                    continue;
                }
                let (id, side) = match event.key % 2 {
                    0 => (event.key / 2, Side::Client),
                    _ => (event.key / 2, Side::Upstream),
                };
                let Some(conn) = self.conns.get_mut(&id) else {
                    continue;
                };
                if event.writable {
                    conn.flush(side, now);
                }
                if event.readable {
                    conn.read(side, now);
                }
                touched.push(id);
            }
            // Deadlines that passed (a busy socket must not starve them).
            for (&id, conn) in &mut self.conns {
                if conn.deadline().is_some_and(|at| at <= now) {
                    if conn.closing.is_none() {
                        conn.core.handle_timeout(now);
                    }
                    touched.push(id);
                }
            }
            // Perform what the cores asked for; re-arm interest (`polling` registrations
            // are one-shot) or drop connections that are over.
            touched.sort_unstable();
            touched.dedup();
            for id in touched {
                let Some(conn) = self.conns.get_mut(&id) else {
                    continue;
                };
                conn.drive(&self.poller, self.upstream, &self.config, id, now);
                if conn.finished(now) || conn.rearm(&self.poller, id).is_err() {
                    self.conns.remove(&id);
                }
            }
        }
        Ok(())
    }

    fn accept(&mut self, now: Instant, touched: &mut Vec<usize>) {
        loop {
            let (stream, addr) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    break;
                }
            };
            let id = self.next_id;
            self.next_id += 1;
            let Ok(client) = Peer::new(stream, &self.poller, 2 * id) else {
                continue;
            };
            let peer = PeerInfo {
                client_addr: Some(addr.ip()),
                ..PeerInfo::default()
            };
            let core = Connection::new(self.config.clone(), peer, now);
            let conn = Conn {
                core,
                client,
                upstream: None,
                connect: None,
                tunnel: false,
                closing: None,
            };
            self.conns.insert(id, conn);
            touched.push(id);
        }
        let _ = self
            .poller
            .modify(&self.listener, Event::readable(LISTENER));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.conns.clear();
        let _ = self.poller.delete(&self.listener);
    }
}

/// One socket and the bytes queued towards it.
struct Peer {
    stream: TcpStream,
    poller: Arc<Poller>,
    queue: VecDeque<Bytes>,
    /// EOF (or a read error) was seen and reported.
    read_eof: bool,
    /// The core asked for a half-close once the queue is written.
    shutdown_pending: bool,
    /// Writing is over (shut down, or a write failed).
    write_closed: bool,
}

impl Peer {
    fn new(stream: TcpStream, poller: &Arc<Poller>, key: usize) -> io::Result<Peer> {
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        // SAFETY: `Drop for Peer` deletes the socket from the poller before it closes.
        #[allow(unsafe_code)]
        unsafe {
            poller.add(&stream, Event::none(key))?
        };
        let (queue, poller) = (VecDeque::new(), poller.clone());
        Ok(Peer {
            stream,
            poller,
            queue,
            read_eof: false,
            shutdown_pending: false,
            write_closed: false,
        })
    }

    fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() && !self.write_closed {
            self.queue.push_back(bytes);
        }
    }

    fn queued(&self) -> usize {
        self.queue.iter().map(Bytes::len).sum()
    }

    fn shutdown_write(&mut self) {
        self.shutdown_pending = false;
        if !std::mem::replace(&mut self.write_closed, true) {
            let _ = self.stream.shutdown(Shutdown::Write);
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.poller.delete(&self.stream);
    }
}

/// One client connection: its core, its sockets, and where the adapter is.
struct Conn {
    core: Connection,
    client: Peer,
    upstream: Option<Peer>,
    /// The core asked for an upstream connection for this route.
    connect: Option<RouteId>,
    /// After `StartTunnel`: bytes are copied by the loop, not fed to the core.
    tunnel: bool,
    /// After `Close`: when the sockets are dropped at the latest.
    closing: Option<Instant>,
}

impl Conn {
    fn peer(&mut self, side: Side) -> Option<&mut Peer> {
        match side {
            Side::Client => Some(&mut self.client),
            Side::Upstream => self.upstream.as_mut(),
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.closing.or_else(|| self.core.poll_timeout())
    }

    /// Feeds one input. `Err` is the caller's misuse; after `Close` it is expected.
    fn feed(&mut self, input: Input, now: Instant) {
        if let Err(misuse) = self.core.handle_input(input, now) {
            if !self.core.is_closed() {
                eprintln!("core refused an input: {misuse}");
            }
        }
    }

    /// Performs the core's outputs, in order, until it has nothing more to say.
    fn drive(
        &mut self,
        poller: &Arc<Poller>,
        upstream: SocketAddr,
        config: &Config,
        id: usize,
        now: Instant,
    ) {
        loop {
            while let Some(output) = self.core.poll_output() {
                self.apply(output, id, now);
            }
            if let Some(route) = self.connect.take() {
                let wait = config
                    .routes
                    .get(route)
                    .map_or(config.timeouts.connect, |r| r.timeouts.connect);
                let input = match TcpStream::connect_timeout(&upstream, wait.min(CONNECT_WAIT))
                    .and_then(|stream| Peer::new(stream, poller, 2 * id + 1))
                {
                    Ok(peer) => {
                        self.upstream = Some(peer);
                        Input::UpstreamConnected { reused: false }
                    }
                    Err(e) => {
                        eprintln!("[{id}] connect to {upstream} failed: {e}");
                        Input::UpstreamConnectFailed
                    }
                };
                self.feed(input, Instant::now());
                continue;
            }
            // Writes often complete at once; a completed queue is an input (`Flushed`).
            let flushed = self.flush(Side::Client, now) | self.flush(Side::Upstream, now);
            if !flushed {
                break;
            }
        }
        // After `Close` and once everything is written: close the upstream, half-close
        // the client, and linger a moment reading (discarding) what it still sends.
        if let Some(at) = self.closing {
            let upstream_done = self
                .upstream
                .as_ref()
                .map_or(true, |u| u.queue.is_empty() || u.write_closed);
            if self.client.queue.is_empty() && upstream_done && !self.client.write_closed {
                self.upstream = None;
                self.client.shutdown_write();
                self.closing = Some(at.min(now + LINGER));
            }
        }
    }

    fn apply(&mut self, output: Output, id: usize, now: Instant) {
        match output {
            Output::Connect(route) => self.connect = Some(route), // one upstream for every route
            Output::ToClient(bytes) => self.client.push(bytes),
            Output::ToUpstream(bytes) => {
                if let Some(upstream) = &mut self.upstream {
                    upstream.push(bytes);
                }
            }
            // A pool would keep the connection when `reusable`; this loop closes it.
            Output::ReleaseUpstream { reusable: _ } => self.upstream = None,
            Output::StartTunnel {
                client_leftover,
                upstream_leftover,
            } => {
                // Bytes that came with the handshake go first, then the loop copies.
                self.tunnel = true;
                if let Some(upstream) = &mut self.upstream {
                    upstream.push(client_leftover);
                }
                self.client.push(upstream_leftover);
            }
            Output::HalfClose { side } => {
                // Half-close once what is queued towards `side` is written.
                if let Some(peer) = self.peer(side) {
                    if peer.queue.is_empty() {
                        peer.shutdown_write();
                    } else {
                        peer.shutdown_pending = true;
                    }
                }
            }
            Output::NeedMaskingKey => self.feed(Input::MaskingKey(masking_key()), now),
            Output::Close => self.closing = Some(now + FLUSH_WAIT),
            Output::Event(event) => log(id, event),
            // An action this loop does not know (a newer core): close, the safe answer.
            _ => self.closing = Some(now + FLUSH_WAIT),
        }
    }

    /// Writes what is queued towards `side` without blocking. Returns true when the queue
    /// emptied (and `Flushed` was fed) or the write failed (and `WriteFailed` was fed).
    fn flush(&mut self, side: Side, now: Instant) -> bool {
        let Some(peer) = self.peer(side) else {
            return false;
        };
        if peer.queue.is_empty() || peer.write_closed {
            return false;
        }
        while let Some(front) = peer.queue.front_mut() {
            match peer.stream.write(front) {
                Ok(0) => return self.write_failed(side, now),
                Ok(n) if n == front.len() => drop(peer.queue.pop_front()),
                Ok(n) => drop(front.split_to(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.write_failed(side, now),
            }
        }
        if peer.shutdown_pending {
            peer.shutdown_write();
        }
        self.feed(Input::Flushed { to: side }, now);
        true
    }

    /// A peer that cannot be written to is gone both ways: drop its queue, stop reading
    /// it, and tell the core, which ends the exchange or tunnel (in a WebSocket tunnel,
    /// after a Close frame to the other peer).
    fn write_failed(&mut self, side: Side, now: Instant) -> bool {
        let Some(peer) = self.peer(side) else {
            return false;
        };
        peer.queue.clear();
        peer.write_closed = true;
        peer.read_eof = true;
        if self.closing.is_none() {
            self.feed(Input::WriteFailed { to: side }, now);
        }
        true
    }

    fn eof(&mut self, side: Side, now: Instant) {
        let Some(peer) = self.peer(side) else { return };
        if std::mem::replace(&mut peer.read_eof, true) || self.closing.is_some() {
            return;
        }
        let input = match side {
            Side::Client => Input::ClientEof,
            Side::Upstream => Input::UpstreamEof,
        };
        self.feed(input, now);
    }

    /// Reads once from a readable socket.
    fn read(&mut self, side: Side, now: Instant) {
        if !self.should_read(side) {
            return;
        }
        // In a tunnel, at most the bytes the core lets past it (`u64::MAX` in a byte
        // tunnel), or, at 0, a read the core must see.
        let budget = self.core.tunnel_passthrough(side);
        let size = match budget {
            0 => READ_SIZE,
            budget => READ_SIZE.min(usize::try_from(budget).unwrap_or(usize::MAX)),
        };
        let Some(peer) = self.peer(side) else { return };
        let mut buf = BytesMut::zeroed(size);
        let n = match peer.stream.read(&mut buf) {
            Ok(0) => return self.eof(side, now),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                return
            }
            Err(_) => return self.eof(side, now),
        };
        buf.truncate(n);
        if self.closing.is_some() {
            return; // lingering: discard
        }
        if self.tunnel && budget == 0 {
            // Lent to the core, which says how much of it goes on as it is (whole, valid
            // frames: usually all), to be written before the outputs it queued.
            match self.core.handle_tunnel_read(side, &buf, now) {
                Ok(forward) => {
                    if let Some(other) = self.peer(side.other()) {
                        other.push(buf.split_to(forward).freeze());
                    }
                }
                Err(misuse) if !self.core.is_closed() => {
                    eprintln!("core refused a tunnel read: {misuse}");
                }
                Err(_) => {}
            }
        } else if self.tunnel {
            // In the tunnel the loop copies bytes itself and tells the core how many.
            if let Some(other) = self.peer(side.other()) {
                other.push(buf.freeze());
            }
            self.feed(
                Input::TunnelActivity {
                    from: side,
                    bytes: n,
                },
                now,
            );
        } else {
            let input = match side {
                Side::Client => Input::ClientData(buf),
                Side::Upstream => Input::UpstreamData(buf),
            };
            self.feed(input, now);
        }
    }

    /// Read from `side` only when the core wants it and the other way is not backed up.
    fn should_read(&mut self, side: Side) -> bool {
        let closing = self.closing.is_some();
        let wants = self.core.wants_read(side);
        let tunnel = self.tunnel;
        let backlog = self.peer(side.other()).map_or(0, |p| p.queued());
        match self.peer(side) {
            None => false,
            Some(peer) if peer.read_eof => false,
            Some(_) if closing => side == Side::Client,
            // In the tunnel one buffer is in flight per direction.
            Some(_) => {
                wants
                    && if tunnel {
                        backlog == 0
                    } else {
                        backlog < HTTP_BACKLOG
                    }
            }
        }
    }

    /// Registers interest for the next wait.
    fn rearm(&mut self, poller: &Poller, id: usize) -> io::Result<()> {
        for (side, key) in [(Side::Client, 2 * id), (Side::Upstream, 2 * id + 1)] {
            let read = self.should_read(side);
            if let Some(peer) = self.peer(side) {
                let write = !peer.queue.is_empty() && !peer.write_closed;
                poller.modify(&peer.stream, Event::new(key, read, write))?;
            }
        }
        Ok(())
    }

    /// Over: the core closed and the sockets were flushed (or given up on).
    fn finished(&self, now: Instant) -> bool {
        self.closing
            .is_some_and(|at| now >= at || (self.client.write_closed && self.client.read_eof))
    }
}

/// A masking key for the core's own frames towards the upstream. A production loop draws
/// it from the operating system (`getrandom`); this example, free of dependencies,
/// hashes a counter with std's randomly keyed SipHash, which peers cannot predict either.
fn masking_key() -> [u8; 4] {
    use std::cell::Cell;
    use std::hash::{BuildHasher, RandomState};
    thread_local!(static KEYS: (RandomState, Cell<u64>) = (RandomState::new(), Cell::new(0)));
    KEYS.with(|(state, counter)| {
        counter.set(counter.get() + 1);
        (state.hash_one(counter.get()) as u32).to_be_bytes()
    })
}

/// Events are log lines and metrics; `Exchange` and `TunnelClosed` are access-log lines.
fn log(id: usize, event: switchyard_core::Event) {
    use switchyard_core::Event as E;
    match event {
        E::Exchange(r) => eprintln!(
            "[{id}] {} {} {} in={} out={} {:?}",
            r.method, r.target, r.status, r.bytes_from_client, r.bytes_to_client, r.duration
        ),
        E::TunnelClosed(t) => eprintln!(
            "[{id}] tunnel {} {} closed ({}) up={} down={} {:?}",
            t.protocol,
            t.target,
            t.reason.as_str(),
            t.bytes_client_to_upstream,
            t.bytes_upstream_to_client,
            t.duration
        ),
        E::Rejected(error) => eprintln!("[{id}] rejected: {error}"),
        _ => {}
    }
}
