//! How [`Sim`] moves a peer's bytes in a tunnel: as a driver does.

use bytes::Bytes;

use super::Sim;
use crate::{Input, Output, Side};

impl Sim {
    /// Bytes `from` sends in the tunnel, moved as a driver moves them. In a byte tunnel:
    /// copied and reported in one read. In a frame-aware one: as many as
    /// [`Connection::tunnel_passthrough`](crate::Connection::tunnel_passthrough) allows copied raw, the rest shown to the core,
    /// until all are read, the proxy stops reading from `from`, or it closes.
    #[track_caller]
    pub(super) fn tunnel_sends(&mut self, helper: &str, from: Side, bytes: &[u8]) {
        self.track_outgoing(from, bytes);
        let frame_aware = self.conn.tunnel_passthrough(from) != u64::MAX;
        let mut rest = bytes;
        let mut first = true;
        loop {
            if !first && (rest.is_empty() || self.conn.is_closed()) {
                break;
            }
            if frame_aware && !self.conn.is_closed() && !self.conn.wants_read(from) {
                // The proxy no longer reads from this peer: the bytes stay with it.
                break;
            }
            first = false;
            let budget = self.conn.tunnel_passthrough(from);
            if budget == 0 && !rest.is_empty() {
                let data = std::mem::take(&mut rest);
                if self.lend_tunnel_reads {
                    self.lend(helper, from, data);
                } else {
                    self.feed(
                        helper,
                        Input::TunnelData {
                            from,
                            data: data.into(),
                        },
                    );
                }
                continue;
            }
            let raw = rest
                .len()
                .min(usize::try_from(budget).unwrap_or(usize::MAX));
            self.deliver(from.other(), &rest[..raw]);
            rest = &rest[raw..];
            self.feed(helper, Input::TunnelActivity { from, bytes: raw });
            self.flushed(from.other());
            self.drain();
        }
    }

    /// A read lent to the core: its forwarded prefix is written (and recorded as the
    /// output it stands for) before the outputs the call queued are played.
    #[track_caller]
    fn lend(&mut self, helper: &str, from: Side, data: &[u8]) {
        let forward = match self.conn.handle_tunnel_read(from, data, self.now) {
            Ok(forward) => forward,
            Err(misuse) => panic!(
                "Sim::{helper}: the connection refused a lent read of {} bytes ({misuse}), \
                 in state {:?}; check Sim::is_closed first",
                data.len(),
                self.conn.state()
            ),
        };
        if forward > 0 {
            let prefix = Bytes::copy_from_slice(&data[..forward]);
            self.outputs.push(match from.other() {
                Side::Client => Output::ToClient(prefix),
                Side::Upstream => Output::ToUpstream(prefix),
            });
            self.deliver(from.other(), &data[..forward]);
            self.flushed(from.other());
        }
        self.drain();
    }

    /// What the harness writes to `to` itself (raw tunnel bytes).
    fn deliver(&mut self, to: Side, bytes: &[u8]) {
        match to {
            Side::Client => self.client_received.extend_from_slice(bytes),
            Side::Upstream => {
                if let Some(u) = self.current.and_then(|i| self.upstreams.get_mut(i)) {
                    u.received.extend_from_slice(bytes);
                }
            }
        }
    }
}
