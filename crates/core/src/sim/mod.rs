//! A deterministic simulation harness: a virtual clock and scripted peers around one
//! [`Connection`], for testing the state machine (yours or ours) without sockets.
//!
//! The harness plays the adapter: it answers [`Output::Connect`] at once (reusing an
//! upstream connection released as reusable, like a pool), writes instantly (feeding
//! [`Input::Flushed`]), records what each peer received, and jumps the clock from
//! deadline to deadline.
//!
//! The helpers that script a peer ([`Sim::client_sends`], [`Sim::upstream_eof`], …) panic
//! when the connection refuses their input ([`Misuse`]), say after it closed: a test that
//! goes on as if the connection were open fails there instead of passing without having
//! tested anything. Check [`Sim::is_closed`] to script a peer that keeps talking after
//! the proxy closed, or feed [`Sim::input`] to expect the refusal.
//!
//! In a frame-aware WebSocket tunnel the harness moves bytes the way a driver does: it
//! asks [`Connection::tunnel_passthrough`] before each read, forwards that many raw
//! ([`Input::TunnelActivity`]) and shows the rest ([`Connection::handle_tunnel_read`],
//! or [`Input::TunnelData`]: [`Sim::lend_tunnel_reads`]); it answers
//! [`Output::NeedMaskingKey`] with a fresh deterministic key
//! ([`Sim::answer_masking_keys`]). Scripted WebSocket peers send frames
//! ([`Sim::send_frame`], [`Sim::send_fragment`], [`Sim::send_close`]), answer the Pings
//! they receive or not ([`Sim::answer_pings`]), and show what they received, parsed
//! with [`FrameParser`](crate::websocket::FrameParser) ([`Sim::frames_received`]): see
//! the `websocket` submodule's example.
//!
//! # Examples
//! ```
//! use std::time::{Duration, Instant};
//! use switchyard_core::{sim::Sim, Config, StateKind};
//!
//! let mut sim = Sim::new(Config::default(), Instant::now());
//! sim.client_sends(b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n\
//!     Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
//! assert!(sim.upstream_received().starts_with(b"GET /chat HTTP/1.1\r\n"));
//! sim.upstream_sends(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
//!     Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
//! assert_eq!(sim.state(), StateKind::Tunnel);
//!
//! // The upstream goes silent: the tunnel closes exactly at read_timeout (60 s).
//! sim.advance(Duration::from_secs(59));
//! assert_eq!(sim.state(), StateKind::Tunnel);
//! sim.advance(Duration::from_secs(1));
//! assert!(sim.is_closed());
//! ```

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::{Config, Connection, Event, Input, Misuse, Output, PeerInfo, Side, StateKind};

mod tunnel;
mod websocket;
pub use websocket::SimFrame;

/// One upstream connection as the simulated upstream saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimUpstream {
    /// Every byte the proxy wrote to it.
    pub received: Vec<u8>,
    /// The proxy shut down writing towards it.
    pub shut_down: bool,
    /// Released with `reusable: true`, `false`, or still in use (`None`).
    pub released: Option<bool>,
}

/// How the simulated adapter answers [`Output::Connect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectBehaviour {
    /// Connect at once (or reuse a pooled connection).
    Succeed,
    /// Report [`Input::UpstreamConnectFailed`] at once.
    Fail,
    /// Do nothing: the connection attempt hangs (for `connect_timeout`).
    Hang,
}

/// A [`Connection`] with scripted peers and a virtual clock.
#[derive(Debug)]
pub struct Sim {
    conn: Connection,
    now: Instant,
    /// Every byte the proxy wrote to the client.
    pub client_received: Vec<u8>,
    /// The proxy shut down writing towards the client.
    pub client_shut_down: bool,
    /// Upstream connections in the order they were opened.
    pub upstreams: Vec<SimUpstream>,
    /// Every output, in order (bytes included).
    pub outputs: Vec<Output>,
    /// How [`Output::Connect`] is answered.
    pub connect: ConnectBehaviour,
    current: Option<usize>,
    pool: Vec<usize>,
    tunnel: bool,
    /// Writes towards each side (by [`Side`] order: client, upstream) are not reported
    /// flushed: that peer stopped reading.
    stalled: [bool; 2],
    /// Answer [`Output::NeedMaskingKey`] at once (the default), with a fresh key each
    /// time; when false the core's frames towards the upstream wait for
    /// [`Sim::feed_masking_key`].
    pub answer_masking_keys: bool,
    /// Every masking key fed to the connection, in order.
    pub masking_keys_fed: Vec<[u8; 4]>,
    /// In a frame-aware tunnel, the bytes the core must see are lent with
    /// [`Connection::handle_tunnel_read`] (the default, as `switchyard-smol` does); when
    /// false they are given as [`Input::TunnelData`]. Either way
    /// [`outputs`](Self::outputs) shows what was written, in order: a lent read's
    /// forwarded prefix as the [`Output::ToClient`] / [`Output::ToUpstream`] it stands
    /// for.
    pub lend_tunnel_reads: bool,
    /// Where the tunnel's bytes begin in what each side received (client, upstream).
    tunnel_start: [usize; 2],
    /// Each side answers the Pings it receives with a Pong.
    answer_pings: [bool; 2],
    /// How many Pings each side has answered.
    pings_answered: [usize; 2],
    /// Keys handed out: the connection's and the scripted client's masking keys.
    keys_drawn: u32,
    /// Inside the automatic answers to Pings (they send, which drains again).
    answering: bool,
    /// What each peer sent in the tunnel, followed frame by frame: a peer answers a Ping
    /// only between frames of its own, as a WebSocket library does.
    outgoing: [crate::websocket::FrameTracker; 2],
}

impl Sim {
    /// A fresh connection at `start` with the default [`PeerInfo`].
    pub fn new(config: Config, start: Instant) -> Self {
        Self::with_peer(config, PeerInfo::default(), start)
    }

    /// A fresh connection at `start` for `peer`.
    pub fn with_peer(config: Config, peer: PeerInfo, start: Instant) -> Self {
        let mut sim = Sim {
            conn: Connection::new(std::sync::Arc::new(config), peer, start),
            now: start,
            client_received: Vec::new(),
            client_shut_down: false,
            upstreams: Vec::new(),
            outputs: Vec::new(),
            connect: ConnectBehaviour::Succeed,
            current: None,
            pool: Vec::new(),
            tunnel: false,
            stalled: [false; 2],
            answer_masking_keys: true,
            masking_keys_fed: Vec::new(),
            lend_tunnel_reads: true,
            tunnel_start: [0; 2],
            answer_pings: [false; 2],
            pings_answered: [0; 2],
            keys_drawn: 0,
            answering: false,
            outgoing: [Side::Client, Side::Upstream].map(websocket::outgoing_tracker),
        };
        sim.drain();
        sim
    }

    /// The connection under test.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The connection's state.
    pub fn state(&self) -> StateKind {
        self.conn.state()
    }

    /// Whether the connection closed.
    pub fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }

    /// Bytes received by the current (or last) upstream connection.
    pub fn upstream_received(&self) -> &[u8] {
        self.upstreams.last().map_or(&[][..], |u| &u.received[..])
    }

    /// Every event, in order.
    pub fn events(&self) -> Vec<&Event> {
        self.outputs
            .iter()
            .filter_map(|o| match o {
                Output::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    /// Feeds an input at the current virtual time, then plays every output.
    pub fn input(&mut self, input: Input) -> Result<(), Misuse> {
        self.conn.handle_input(input, self.now)?;
        self.drain();
        Ok(())
    }

    /// From now on writes towards `to` never complete (that peer stopped reading): the
    /// harness writes the bytes but does not report [`Input::Flushed`], so
    /// `send_timeout` runs. Undone by [`resume_writes`](Self::resume_writes).
    pub fn stall_writes(&mut self, to: Side) {
        self.stalled[to.index()] = true;
    }

    /// Writes towards `to` complete again, and what was pending is reported flushed.
    pub fn resume_writes(&mut self, to: Side) {
        self.stalled[to.index()] = false;
        if !self.conn.is_closed() {
            self.feed("resume_writes", Input::Flushed { to });
        }
    }

    /// Reports writes towards `to` complete, as an adapter does once it has written
    /// everything queued: not while that peer is stalled, nor after `Close`.
    fn flushed(&mut self, to: Side) {
        if !self.stalled[to.index()] && !self.conn.is_closed() {
            self.adapter_input(Input::Flushed { to });
        }
    }

    /// Feeds what a scripted peer did; the caller broke the contract if the connection
    /// refuses it (say, bytes after `Close`), and the test fails here rather than pass
    /// without having tested anything.
    #[track_caller]
    fn feed(&mut self, helper: &str, input: Input) {
        let shown = format!("{input:?}");
        if let Err(misuse) = self.input(input) {
            panic!(
                "Sim::{helper}: the connection refused {shown} ({misuse}), in state {:?}; \
                 check Sim::is_closed first, or use Sim::input to expect the refusal",
                self.conn.state()
            );
        }
    }

    /// Feeds what the simulated adapter itself does in answer to an output; a refusal is
    /// a bug in the core or in this harness.
    fn adapter_input(&mut self, input: Input) {
        let shown = format!("{input:?}");
        if let Err(misuse) = self.conn.handle_input(input, self.now) {
            panic!(
                "sim adapter: the connection refused {shown} ({misuse}), in state {:?}",
                self.conn.state()
            );
        }
    }

    /// The client sends `bytes` (in the tunnel: the adapter copies them and reports it;
    /// in a frame-aware tunnel it shows the core what the core must see).
    ///
    /// # Panics
    /// When the connection refuses the input ([`Misuse`]), e.g. after it closed.
    #[track_caller]
    pub fn client_sends(&mut self, bytes: &[u8]) {
        if self.tunnel {
            self.tunnel_sends("client_sends", Side::Client, bytes);
        } else {
            self.feed("client_sends", Input::ClientData(BytesMut::from(bytes)));
        }
    }

    /// The upstream sends `bytes`.
    ///
    /// # Panics
    /// When the connection refuses the input ([`Misuse`]), e.g. after it closed.
    #[track_caller]
    pub fn upstream_sends(&mut self, bytes: &[u8]) {
        if self.tunnel {
            self.tunnel_sends("upstream_sends", Side::Upstream, bytes);
        } else {
            self.feed("upstream_sends", Input::UpstreamData(BytesMut::from(bytes)));
        }
    }

    /// The client closes its sending side.
    ///
    /// # Panics
    /// When the connection refuses the input ([`Misuse`]), e.g. after it closed.
    #[track_caller]
    pub fn client_eof(&mut self) {
        self.feed("client_eof", Input::ClientEof);
    }

    /// The upstream closes its sending side.
    ///
    /// # Panics
    /// When the connection refuses the input ([`Misuse`]), e.g. after it closed.
    #[track_caller]
    pub fn upstream_eof(&mut self) {
        self.feed("upstream_eof", Input::UpstreamEof);
    }

    /// Moves the virtual clock forward by `by`, firing every deadline on the way at its
    /// exact instant.
    pub fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        while let Some(at) = self.conn.poll_timeout() {
            if at > until {
                break;
            }
            self.now = self.now.max(at);
            self.conn.handle_timeout(self.now);
            self.drain();
        }
        self.now = until;
    }

    /// Jumps to the next deadline and fires it; returns false when there is none.
    pub fn fire_next_timeout(&mut self) -> bool {
        match self.conn.poll_timeout() {
            Some(at) => {
                self.now = self.now.max(at);
                self.conn.handle_timeout(self.now);
                self.drain();
                true
            }
            None => false,
        }
    }

    fn drain(&mut self) {
        self.play_outputs();
        self.answer_received_pings();
    }

    fn play_outputs(&mut self) {
        // Bounded: a connection emits finitely many outputs per input.
        for _ in 0..1_000_000 {
            let Some(out) = self.conn.poll_output() else {
                return;
            };
            self.outputs.push(out.clone());
            match out {
                Output::Connect(_) => match self.connect {
                    ConnectBehaviour::Succeed => {
                        let (index, reused) = match self.pool.pop() {
                            Some(i) => (i, true),
                            None => {
                                self.upstreams.push(SimUpstream::default());
                                (self.upstreams.len() - 1, false)
                            }
                        };
                        self.upstreams[index].released = None;
                        self.current = Some(index);
                        self.adapter_input(Input::UpstreamConnected { reused });
                    }
                    ConnectBehaviour::Fail => {
                        self.adapter_input(Input::UpstreamConnectFailed);
                    }
                    ConnectBehaviour::Hang => {}
                },
                Output::ToClient(b) => {
                    self.client_received.extend_from_slice(&b);
                    self.flushed(Side::Client);
                }
                Output::ToUpstream(b) => {
                    if let Some(u) = self.current.and_then(|i| self.upstreams.get_mut(i)) {
                        u.received.extend_from_slice(&b);
                    }
                    self.flushed(Side::Upstream);
                }
                Output::ReleaseUpstream { reusable } => {
                    if let Some(i) = self.current.take() {
                        self.upstreams[i].released = Some(reusable);
                        if reusable {
                            self.pool.push(i);
                        }
                    }
                }
                Output::StartTunnel {
                    client_leftover,
                    upstream_leftover,
                } => {
                    self.tunnel = true;
                    self.tunnel_start =
                        [self.client_received.len(), self.upstream_received().len()];
                    self.client_received.extend_from_slice(&upstream_leftover);
                    if let Some(u) = self.current.and_then(|i| self.upstreams.get_mut(i)) {
                        u.received.extend_from_slice(&client_leftover);
                    }
                }
                Output::HalfClose { side: Side::Client } => self.client_shut_down = true,
                Output::HalfClose {
                    side: Side::Upstream,
                } => {
                    if let Some(u) = self.current.and_then(|i| self.upstreams.get_mut(i)) {
                        u.shut_down = true;
                    }
                }
                Output::NeedMaskingKey => {
                    if self.answer_masking_keys && !self.conn.is_closed() {
                        let key = self.draw_key();
                        self.masking_keys_fed.push(key);
                        self.adapter_input(Input::MaskingKey(key));
                    }
                }
                Output::Close | Output::Event(_) => {}
            }
        }
    }
}

/// Concatenates every [`Output::ToClient`] / [`Output::ToUpstream`] of `outputs` for `side`.
pub fn bytes_to(outputs: &[Output], side: Side) -> Bytes {
    let mut all = BytesMut::new();
    for o in outputs {
        match (o, side) {
            (Output::ToClient(b), Side::Client) | (Output::ToUpstream(b), Side::Upstream) => {
                all.extend_from_slice(b)
            }
            _ => {}
        }
    }
    all.freeze()
}
