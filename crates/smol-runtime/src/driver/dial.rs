//! Answering the core's `Connect`, and giving an upstream connection back.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use futures_lite::future;
use switchyard_core::{Input, RouteId, StateKind};

use super::link::Upstream;
use super::peer::{Peer, UpstreamFacts};
use super::Driver;
use crate::buffer::Chunk;
use crate::upstream::{self, Dialed};

impl Driver {
    pub(super) fn release_upstream(&mut self, reusable: bool) {
        let (Some(upstream), Some(facts)) = (self.upstream.take(), self.facts.take()) else {
            return;
        };
        let Upstream { peer, in_use } = upstream;
        let UpstreamFacts {
            server,
            reused,
            bytes_read,
            poolable,
        } = facts;
        let group = self.upstream_group;
        // A pooled connection that ended before answering anything makes the core retry
        // once, and that retry should not meet another stale pooled connection.
        self.next_fresh = !reusable && reused && bytes_read == 0;
        let clean = !peer.pending() && !peer.read_eof && !peer.write_closed;
        if reusable && clean && poolable {
            // No longer in use once pooled.
            drop(in_use);
            self.pool.put(server, peer.stream, peer.tls);
        } else if reusable && clean {
            // Its PROXY header names this client: kept for this client's next request
            // only, as the pool would for anyone.
            // Still this client's: still in use.
            let upstream = Upstream { peer, in_use };
            let facts = UpstreamFacts {
                server,
                reused,
                bytes_read: 0,
                poolable,
            };
            self.kept = group.map(|group| Box::new((group as usize, upstream, facts)));
        }
    }

    /// Answers `Connect(route)`: with this client's kept or a pooled connection at once,
    /// else by a dial raced against the core's connect deadline.
    pub(super) async fn connect(&mut self, route: RouteId) {
        // What is decided without waiting is in functions of their own, so that none of
        // their locals is kept in every connection's task across the dial's await.
        let Some(plan) = self.connect_at_once(route) else {
            return;
        };
        let (group_index, send_proxy) = (plan.group, plan.send_proxy);
        let group_tls = self.shared.groups[plan.group].tls.is_some();
        // Towards a TLS group the header goes out before the handshake, in the dial;
        // towards a plain one, with the request head.
        let tls_header = (plan.send_proxy && group_tls).then(|| self.proxy_header());
        let shared = Arc::clone(&self.link.shared);
        let pool = Rc::clone(&self.pool);
        // On the heap, with the header it writes: dialing state would otherwise sit in
        // every connection's task (dialing is over before a tunnel starts).
        let mut dial = Box::pin(async move {
            let header = tls_header.as_deref();
            upstream::connect(
                &shared.groups[group_index],
                &pool,
                plan.fresh,
                plan.connect_timeout,
                plan.choice,
                header,
            )
            .await
        });
        let dialed = loop {
            self.arm_timer();
            let timer = &mut self.timer;
            // A poll of the two rather than `future::or` of two futures: this sits in
            // every connection's task.
            let raced = future::poll_fn(|cx| {
                if let Poll::Ready(dialed) = dial.as_mut().poll(cx) {
                    return Poll::Ready(Some(dialed));
                }
                Pin::new(&mut *timer).poll(cx).map(|()| None)
            });
            match raced.await {
                Some(dialed) => break dialed,
                None => {
                    // The timer may fire before the core's deadline (see `arm_timer`).
                    self.conn.handle_timeout(Instant::now());
                    if self.conn.state() != StateKind::Connecting {
                        return; // the core gave up (504) and has said what to do
                    }
                }
            }
        };
        self.connected(group_index, send_proxy, dialed);
    }

    /// The part of `connect` that needs no wait: a route without a group fails, this
    /// client's kept PROXY connection or a one-server group's pooled connection is
    /// taken. `None` when that answered the core; else what the dial needs.
    fn connect_at_once(&mut self, route: RouteId) -> Option<DialPlan> {
        let fresh = std::mem::take(&mut self.next_fresh);
        // The core asks for a new connection only after releasing the old one; if it
        // did not, the old one is not reusable.
        self.upstream = None;
        self.facts = None;
        let found = self
            .shared
            .route_upstream
            .get(route)
            .copied()
            .filter(|&index| index < self.shared.groups.len());
        let Some(group_index) = found else {
            tracing::warn!(route, "route has no upstream group");
            self.feed(Input::UpstreamConnectFailed, Instant::now());
            return None;
        };
        // A connection that carries a PROXY header is the client's that opened it: it is
        // never taken from the pool (nor given back to it).
        let send_proxy = self
            .shared
            .groups
            .get(group_index)
            .is_some_and(|g| g.proxy_header);
        // This client's own connection from its previous request, unless the core's
        // retry needs a fresh one (it was found closed).
        let kept = self.kept.take().map(|kept| *kept);
        if let (Some((group_kept, kept, mut facts)), false) = (kept, fresh) {
            if send_proxy && group_kept == group_index {
                facts.reused = true;
                self.upstream = Some(kept);
                self.facts = Some(facts);
                self.feed(Input::UpstreamConnected { reused: true }, Instant::now());
                return None;
            }
        }
        let fresh = fresh || send_proxy;
        // A one-server group's pooled connection needs neither the balancer's order nor
        // a dial.
        if !fresh {
            let group = &self.shared.groups[group_index];
            if let Some(pooled) = upstream::pooled_single(group, &self.pool) {
                self.connected(group_index, send_proxy, Some(pooled));
                return None;
            }
        }
        let shared = &self.link.shared;
        let group = &shared.groups[group_index];
        let connect_timeout = shared
            .core
            .routes
            .get(route)
            .map_or(shared.core.timeouts.connect, |r| r.timeouts.connect);
        let conn = &self.link.conn;
        let choice = upstream::Choice {
            key: group.balance().key(self.link.origin.client, |name| {
                conn.request_header(name).collect()
            }),
        };
        Some(DialPlan {
            group: group_index,
            send_proxy,
            fresh,
            connect_timeout,
            choice,
        })
    }

    /// Tells the core how the connect ended; a connection becomes the upstream peer.
    fn connected(&mut self, group_index: usize, send_proxy: bool, dialed: Option<Dialed>) {
        let now = Instant::now();
        match dialed {
            Some(Dialed {
                stream,
                tls,
                server,
                reused,
                open,
            }) => {
                tracing::debug!(client = %self.origin.client, %server, reused, "upstream connected");
                let plain = tls.is_none();
                let mut peer = Peer::with_tls(stream, tls);
                if send_proxy && plain {
                    peer.push(Chunk::Bytes(self.proxy_header().into()));
                }
                self.upstream_group = u32::try_from(group_index).ok();
                self.upstream = Some(Upstream {
                    peer,
                    in_use: upstream::InUse::new(&self.pool, server, open),
                });
                self.facts = Some(UpstreamFacts {
                    server,
                    reused,
                    bytes_read: 0,
                    poolable: !send_proxy,
                });
                self.feed(Input::UpstreamConnected { reused }, now);
            }
            None => self.feed(Input::UpstreamConnectFailed, now),
        }
    }

    /// The PROXY v2 header for this client's upstream connection: the client's address
    /// as learned (from its own PROXY header, or the socket) and the address it
    /// connected to.
    fn proxy_header(&self) -> Vec<u8> {
        let destination = self
            .destination
            .as_deref()
            .copied()
            .or_else(|| self.client.stream.local_addr().ok());
        let addresses = destination.map(|destination| (self.origin.client, destination));
        switchyard_core::proxy_protocol::encode_v2(addresses)
    }
}

/// What a dial needs, decided before it starts.
struct DialPlan {
    group: usize,
    send_proxy: bool,
    fresh: bool,
    connect_timeout: std::time::Duration,
    choice: upstream::Choice,
}
