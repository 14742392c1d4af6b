//! What a connection keeps in both of its phases, and all that a tunnel keeps: the core's
//! connection, the two sockets and their queues, the timer, the registration with the
//! shutdown signal, the events' context and the live tunnel list's entry.
//!
//! The HTTP phase's [`Driver`](super::Driver) wraps a [`Link`] with what only that phase
//! uses (dialing, the upstream's server and reuse, a PROXY header's destination). Once
//! the core's phase is a tunnel, the HTTP task hands its `Link` to a task of its own
//! ([`tunnel_task`]) and ends: an `async fn`'s future is as large as its largest state,
//! so the same task could never shrink to what an idle tunnel needs.

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use switchyard_core::{Connection, Input, Misuse, Output, StateKind};

use super::peer::Peer;
use super::wait::WaitState;
use super::{Shared, Wake, WAITS_BEFORE_YIELD};
use crate::backend::Timer;
use crate::buffer::Chunk;
use crate::events::EventContext;
use crate::signal::{ConnectionGuard, Signal};

/// The current upstream connection, as both phases keep it.
#[derive(Debug)]
pub(super) struct Upstream {
    pub(super) peer: Peer,
    /// Counts the connection as in use while it lives.
    pub(super) in_use: crate::upstream::InUse,
}

pub(super) struct Link {
    pub(super) shared: Arc<Shared>,
    /// Counts the connection among the server's while it lives.
    pub(super) _guard: ConnectionGuard,
    /// Whose connection it is, for the events' context and the logs.
    pub(super) origin: Origin,
    pub(super) conn: Connection,
    pub(super) client: Peer,
    pub(super) upstream: Option<Upstream>,
    /// The core asked for something this driver does not know (a newer core): the
    /// driver ends the connection on its own, which the core cannot know, so unlike the
    /// phase (`conn.state()`) this is not the core's to tell.
    pub(super) abandoned: bool,
    /// Waits in a row that completed without sleeping (see [`WAITS_BEFORE_YIELD`]).
    pub(super) waits: u8,
    /// Whose turn the next wait begins with, and the current wait's reads.
    pub(super) wait: WaitState,
    /// The registration with the shared shutdown signal.
    pub(super) shutdown_key: ShutdownKey,
    pub(super) timer: Timer,
    /// The tunnel's entry in the live tunnel list, while it is open and the list is kept
    /// (boxed: most servers keep no list, and every task would carry it).
    pub(super) tunnel: Option<Box<crate::tunnels::TunnelHandle>>,
}

impl Drop for Link {
    fn drop(&mut self) {
        // Also when the task is dropped mid-wait: the signal must not keep its waker.
        self.shutdown_key.forget(&self.shared.shutdown);
    }
}

/// What the events' context says of a connection, in 40 bytes where an
/// [`EventContext`] takes 56 (its indexes are `usize`s): every connection's task keeps
/// it, and an event, which makes the context from it, is rare next to a read.
#[derive(Debug, Clone, Copy)]
pub(super) struct Origin {
    /// The client's address.
    pub(super) client: SocketAddr,
    /// The worker serving the connection.
    worker: u32,
    /// The tunnel's route once it opened; [`Origin::NO_ROUTE`] before.
    route: u32,
}

impl Origin {
    const NO_ROUTE: u32 = u32::MAX;

    fn new(context: &EventContext) -> Self {
        Origin {
            client: context.client,
            // Both are far below 4 billion (workers are threads, routes a
            // configuration's); one that was not would only lose its label.
            worker: u32::try_from(context.worker).unwrap_or(u32::MAX),
            route: context
                .tunnel_route
                .and_then(|route| u32::try_from(route).ok())
                .unwrap_or(Self::NO_ROUTE),
        }
    }

    /// The context of this connection's events.
    pub(super) fn context(&self) -> EventContext {
        EventContext {
            worker: self.worker as usize,
            client: self.client,
            tunnel_route: (self.route != Self::NO_ROUTE).then_some(self.route as usize),
        }
    }

    pub(super) fn worker(&self) -> usize {
        self.worker as usize
    }

    /// The connection's tunnel opened on `route`.
    pub(super) fn set_route(&mut self, route: switchyard_core::RouteId) {
        self.route = u32::try_from(route).unwrap_or(Self::NO_ROUTE);
    }
}

/// A link's registration with the shared shutdown signal, in 4 bytes: none yet, a key in
/// the signal's slab, or told (the drain went to the core; nothing more to wait for).
/// Registered on the first wait and kept until the signal fires or the connection ends
/// (see [`Signal::poll_fired`]): registering on every wait would take the signal's lock,
/// which every worker shares, once per message. 4 bytes rather than an `Option<u32>`
/// and a flag: with the wait's flags they take 8 bytes of every idle tunnel, not 16.
#[derive(Debug, Clone, Copy)]
pub(super) struct ShutdownKey(u32);

impl ShutdownKey {
    const NONE: u32 = u32::MAX;
    const TOLD: u32 = u32::MAX - 1;

    pub(super) fn new() -> Self {
        ShutdownKey(Self::NONE)
    }

    /// The drain was fed to the core: the signal is not waited for any more.
    pub(super) fn told(self) -> bool {
        self.0 == Self::TOLD
    }

    fn key(self) -> Option<u32> {
        (self.0 < Self::TOLD).then_some(self.0)
    }

    /// Ready once the signal fired; registers the task's waker on the first poll.
    pub(super) fn poll(&mut self, signal: &Signal, cx: &mut Context<'_>) -> Poll<()> {
        let mut key = self.key();
        let poll = signal.poll_fired(&mut key, cx);
        match key {
            Some(k) if k < Self::TOLD => self.0 = k,
            // The two largest slab keys are this type's own: not kept (four billion
            // waiting connections cannot be).
            Some(_) => signal.forget(&mut key),
            None => {}
        }
        poll
    }

    /// Ends the registration (a told key stays told).
    pub(super) fn forget(&mut self, signal: &Signal) {
        let mut key = self.key();
        signal.forget(&mut key);
        if !self.told() {
            self.0 = Self::NONE;
        }
    }

    /// The drain is being fed to the core.
    pub(super) fn tell(&mut self, signal: &Signal) {
        self.forget(signal);
        self.0 = Self::TOLD;
    }
}

impl Link {
    /// A connection's link at its start: the client's peer, no upstream yet, nothing
    /// waited for.
    pub(super) fn new(
        shared: Arc<Shared>,
        guard: ConnectionGuard,
        context: EventContext,
        conn: Connection,
        client: Peer,
    ) -> Self {
        Link {
            shared,
            _guard: guard,
            origin: Origin::new(&context),
            conn,
            client,
            upstream: None,
            abandoned: false,
            waits: 0,
            wait: WaitState::default(),
            shutdown_key: ShutdownKey::new(),
            timer: Timer::never(),
            tunnel: None,
        }
    }

    pub(super) fn feed(&mut self, input: Input, now: Instant) {
        if let Err(misuse) = self.conn.handle_input(input, now) {
            self.misused(misuse);
        }
    }

    /// The core refused an input.
    pub(super) fn misused(&self, misuse: Misuse) {
        match misuse {
            // Already closed: the loop ends once the outputs are drained.
            Misuse::Closed => {}
            other => {
                tracing::warn!(client = %self.origin.client, %other, "core rejected an input");
                // The driver's own bug (say, bytes past a frame-aware tunnel's
                // passthrough budget): loud in tests and debug builds.
                debug_assert!(false, "core rejected an input: {other}");
            }
        }
    }

    /// Whether tunnel data may splice: never through a TLS session, whose records
    /// only userspace can read or write.
    pub(super) fn may_splice(&self) -> bool {
        let upstream_tls = self.upstream.as_ref().is_some_and(|u| u.peer.tls.is_some());
        crate::backend::pipe_supported() && self.client.tls.is_none() && !upstream_tls
    }

    /// After `StartTunnel`: reads go to pooled buffers and are copied, or, in a
    /// frame-aware tunnel, are shown to the core where it must see them.
    pub(super) fn in_tunnel(&self) -> bool {
        self.conn.state() == StateKind::Tunnel
    }

    /// Performs the outputs both phases know; gives back the HTTP phase's own
    /// (`Connect`, `ReleaseUpstream`) and any this driver does not know.
    pub(super) fn apply(&mut self, output: Output) -> Option<Output> {
        match output {
            Output::ToClient(bytes) => self.client.push(Chunk::Bytes(bytes)),
            Output::ToUpstream(bytes) => match &mut self.upstream {
                Some(upstream) => upstream.peer.push(Chunk::Bytes(bytes)),
                None => {
                    tracing::debug!(client = %self.origin.client, "bytes for a missing upstream dropped")
                }
            },
            Output::StartTunnel {
                client_leftover,
                upstream_leftover,
            } => {
                if let Some(upstream) = &mut self.upstream {
                    upstream.peer.push(Chunk::Bytes(client_leftover));
                }
                self.client.push(Chunk::Bytes(upstream_leftover));
            }
            Output::NeedMaskingKey => self.give_masking_key(),
            // Done once the queue is written and unless the connection closes first
            // (closing sends the FIN anyway): see `shut_down_written` and `wrote`.
            Output::HalfClose { side } => {
                if let Some(peer) = self.peer_mut(side) {
                    peer.shutdown_pending = true;
                }
            }
            // The core is closed now (`is_closed`): the loop ends.
            Output::Close => {}
            Output::Event(event) => {
                self.track_tunnel(&event);
                self.shared.events.event(&self.origin.context(), &event);
            }
            other => return Some(other),
        }
        None
    }

    /// The answer to an output this driver does not know (a newer core): ending the
    /// connection is the only safe one.
    pub(super) fn unknown(&mut self, output: Output) {
        tracing::error!(client = %self.origin.client, ?output, "unknown core output");
        self.abandoned = true;
    }

    /// Half-closes the peers whose shutdown waited for their queue to be written.
    pub(super) fn shut_down_written(&mut self) {
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
    }

    /// What ended a wait, except a readable socket (each phase reads its own way).
    pub(super) fn woke(&mut self, wake: Wake, now: Instant) {
        match wake {
            Wake::Timer => self.conn.handle_timeout(now),
            Wake::Readable(_) => {}
            Wake::Wrote(side, result) => self.wrote(side, result, now),
            Wake::Shutdown => {
                self.shutdown_key.tell(&self.shared.shutdown);
                let grace = self.shared.drain_grace();
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

    /// Whether the task should yield before its next wait: a socket that stays ready (a
    /// bulk tunnel, a pipelining client) would keep it from ever returning to the
    /// executor, starving the other connections and the reactor. Only after many waits
    /// in a row that did not have to sleep: yielding on a count alone would put a
    /// message that is half forwarded behind every other connection's work.
    pub(super) fn should_yield(&mut self) -> bool {
        if self.waits >= WAITS_BEFORE_YIELD {
            self.waits = 0;
            return true;
        }
        false
    }

    /// Readies the link for another task: the wakers of the HTTP task stay nowhere
    /// (the reactor's slots, the shutdown signal's slab), where they would keep that
    /// task's memory alive. So does the timer's registration: the tunnel task's first
    /// poll registers its own.
    pub(super) fn hand_over(&mut self) {
        self.client.stream.forget_wakers();
        if let Some(upstream) = &self.upstream {
            upstream.peer.stream.forget_wakers();
        }
        self.shutdown_key.forget(&self.shared.shutdown);
        self.timer.forget_waker();
    }

    /// The tunnel's loop, the HTTP phase's less dialing, as one poll: `Ready` once the
    /// connection is to be closed (see [`Link::finish`]).
    fn poll_tunnel(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if !self.wait.waiting() {
                while let Some(output) = self.conn.poll_output() {
                    match self.apply(output) {
                        None => {}
                        // A tunnel's upstream is never reusable: it closes with the tunnel.
                        Some(Output::ReleaseUpstream { .. }) => self.upstream = None,
                        Some(other) => self.unknown(other),
                    }
                }
                if self.abandoned || self.conn.is_closed() {
                    return Poll::Ready(());
                }
                self.shut_down_written();
                if self.should_yield() {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                self.begin_wait();
            }
            let Poll::Ready(wake) = self.poll_wake(cx) else {
                self.wait.set_waiting();
                return Poll::Pending;
            };
            self.end_wait();
            let now = Instant::now();
            if let Wake::Readable(side) = wake {
                self.read_tunnel_side(side, now);
            }
            self.woke(wake, now);
        }
    }
}

/// The task of a tunnel, from the HTTP task's link once the core's phase became one: a
/// future written out by hand, because an `async fn` keeps its argument and the local it
/// is moved into both reserved (two links in every tunnel's task).
// The link inline is the point: the task is allocated once, with the tunnel.
#[allow(clippy::large_enum_variant)]
pub(super) enum TunnelTask {
    Running(Link),
    /// Writing what is queued, then lingering (boxed: it runs once, at the end).
    Finishing(Pin<Box<dyn Future<Output = ()>>>),
    Done,
}

impl Future for TunnelTask {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match this {
                TunnelTask::Running(link) => {
                    match std::panic::catch_unwind(AssertUnwindSafe(|| link.poll_tunnel(cx))) {
                        Ok(Poll::Pending) => return Poll::Pending,
                        Ok(Poll::Ready(())) => {
                            let TunnelTask::Running(mut link) =
                                std::mem::replace(this, TunnelTask::Done)
                            else {
                                unreachable!("the task was running")
                            };
                            *this = TunnelTask::Finishing(Box::pin(async move {
                                link.finish().await;
                            }));
                        }
                        Err(_) => {
                            tracing::error!(client_addr = %link.origin.client, "tunnel task panicked");
                            *this = TunnelTask::Done;
                        }
                    }
                }
                TunnelTask::Finishing(finish) => {
                    let poll =
                        std::panic::catch_unwind(AssertUnwindSafe(|| finish.as_mut().poll(cx)));
                    match poll {
                        Ok(Poll::Pending) => return Poll::Pending,
                        Ok(Poll::Ready(())) => *this = TunnelTask::Done,
                        Err(_) => {
                            tracing::error!("tunnel task panicked while closing");
                            *this = TunnelTask::Done;
                        }
                    }
                }
                TunnelTask::Done => return Poll::Ready(()),
            }
        }
    }
}
