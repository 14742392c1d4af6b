//! Answering the core's `Connect`, and giving an upstream connection back.

use std::time::Instant;

use futures_lite::future;
use switchyard_core::{Input, RouteId, StateKind};

use super::peer::{Peer, Upstream};
use super::Driver;
use crate::upstream::{self, Dialed};

impl Driver<'_> {
    pub(super) fn release_upstream(&mut self, reusable: bool) {
        let Some(upstream) = self.upstream.take() else {
            return;
        };
        let Upstream {
            peer,
            server,
            reused,
            bytes_read,
            in_use,
        } = upstream;
        // No longer in use, whether pooled or closed.
        drop(in_use);
        // A pooled connection that ended before answering anything makes the core retry
        // once, and that retry should not meet another stale pooled connection.
        self.next_fresh = !reusable && reused && bytes_read == 0;
        let clean = !peer.pending() && !peer.read_eof && !peer.write_closed;
        if reusable && clean {
            self.pool.put(server, peer.stream);
        }
    }

    /// Answers `Connect(route)`, racing the dial against the core's connect deadline.
    pub(super) async fn connect(&mut self, route: RouteId) {
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
        let conn = &self.conn;
        let choice = upstream::Choice {
            key: group.balance().key(self.context.client, |name| {
                conn.request_header(name).collect()
            }),
        };
        // On the heap: dialing state would otherwise sit in every connection's task,
        // also while it idles as a tunnel.
        let mut dial = Box::pin(upstream::connect(
            group,
            self.pool,
            fresh,
            connect_timeout,
            choice,
        ));
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
                open,
            }) => {
                tracing::debug!(client = %self.context.client, %server, reused, "upstream connected");
                self.upstream = Some(Upstream {
                    peer: Peer::new(stream),
                    server,
                    reused,
                    bytes_read: 0,
                    in_use: upstream::InUse::new(self.pool, server, open),
                });
                self.feed(Input::UpstreamConnected { reused }, now);
            }
            None => self.feed(Input::UpstreamConnectFailed, now),
        }
    }
}
