//! The tunnel's data path: copy through a pooled buffer, or splice through a pooled
//! pipe for a direction carrying bulk data, and in a frame-aware WebSocket tunnel the
//! reads the core must see.
//!
//! Before each read the core says how many bytes may go past it
//! ([`Connection::tunnel_passthrough`](switchyard_core::Connection::tunnel_passthrough)):
//! everything in a byte tunnel, the rest of the current frame's payload in a frame-aware
//! one. Within that budget bytes are copied or spliced as in a byte tunnel and reported
//! with [`Input::TunnelActivity`]; at 0 (a frame header, a control frame) the read, into
//! a pooled buffer too, is lent to the core
//! ([`Connection::handle_tunnel_read`](switchyard_core::Connection::handle_tunnel_read)),
//! which says how much of it to queue as it is (whole, valid frames: usually all) and
//! writes anything else as outputs behind it.

use std::time::Instant;

use switchyard_core::websocket::MAX_CONTROL_PAYLOAD;
use switchyard_core::{Event, Input, Side};

use super::peer::{is_transient, wants_write};
use super::Link;
use crate::backend::{pipe_supported, Pipe};
use crate::buffer::{give_buffer, take_buffer, Chunk, BULK_READ, TUNNEL_BUFFER_SIZE};

/// A tunnel direction (or a response body, `body.rs`) that splices keeps splicing while
/// each splice moves at least this much; less sends it back to copying (see `pipe.rs`). A frame-aware direction also
/// splices only while the frame has at least this much payload left: the tail of a
/// frame is copied.
pub(super) const SPLICE_AT_LEAST: usize = 16 * 1024;

/// In a frame-aware direction carrying bulk data, a shown read takes at most this much:
/// a data frame's header (at most 14 bytes) or a whole control frame (2 + 4 + 125), so
/// that the payload after a header is spliced rather than read through userspace.
const SHOWN_IN_BULK: usize = 2 + 4 + MAX_CONTROL_PAYLOAD;

/// How much a tunnel read with `budget` bytes allowed past the core takes, and what a
/// read of bulk data takes there (a read of that size that comes back full means more
/// is waiting). The rest of a frame that fits one buffer is read whole; anything longer
/// (a byte tunnel's data, a long frame) in reads of [`BULK_READ`], copied or spliced,
/// each written out as one TCP packet.
fn read_size(budget: u64) -> (usize, usize) {
    let budget = usize::try_from(budget).unwrap_or(usize::MAX);
    let full = if budget > TUNNEL_BUFFER_SIZE {
        BULK_READ
    } else {
        TUNNEL_BUFFER_SIZE
    };
    (budget.min(full), full)
}

impl Link {
    /// Tunnel: reads what `side` sent, publishes the counts, and writes it through.
    pub(super) fn read_tunnel_side(&mut self, side: Side, now: Instant) {
        self.read_tunnel(side, now);
        self.count_tunnel_traffic();
        self.write_through(side.other(), now);
    }

    /// Tunnel: read what `side` sent as the core's passthrough budget allows.
    pub(super) fn read_tunnel(&mut self, side: Side, now: Instant) {
        let budget = self.conn.tunnel_passthrough(side);
        if budget == 0 {
            self.read_shown(side, now);
            return;
        }
        let (most, full) = read_size(budget);
        let may_splice = self.may_splice();
        let Some(peer) = self.peer_mut(side) else {
            return;
        };
        if peer.splice_reads && most >= SPLICE_AT_LEAST && may_splice {
            self.splice_tunnel(side, most, now);
        } else {
            self.copy_tunnel(side, most, full, now);
        }
    }

    /// Reads at most `most` bytes into a pooled buffer (taken only now that the socket
    /// is readable) and queues them towards the other side; `full` is what a read of
    /// bulk data takes.
    fn copy_tunnel(&mut self, side: Side, most: usize, full: usize, now: Instant) {
        let Some(peer) = self.peer_mut(side) else {
            return;
        };
        let mut buffer = take_buffer();
        let result = peer.read(&mut buffer[..most]);
        let filled = matches!(result, Ok(n) if n == most);
        if most < full && filled {
            // The tail of a frame, which says nothing of what follows: the direction
            // stays as it was.
        } else {
            // A bulk-sized read that came back full: bulk data, which the next reads
            // splice instead of copying.
            peer.splice_reads = filled && most >= SPLICE_AT_LEAST;
        }
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
                tracing::debug!(client = %self.origin.client, ?side, %error, "read failed");
                self.eof(side, now);
            }
        }
    }

    /// Tunnel, bulk direction: splice at most `most` bytes of what the socket holds into
    /// a pipe towards the other side. A splice that moved little sends the next reads
    /// back to copying.
    fn splice_tunnel(&mut self, side: Side, most: usize, now: Instant) {
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
        let result = peer.stream.splice_to(&pipe, most);
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
                    // so nothing queued towards it is older than this pipe, which
                    // `Peer::written` writes first.
                    debug_assert!(!other.pending());
                    other.pipe = Some(pipe);
                }
            }
            Err(e) if is_transient(&e) => pipe.give(),
            Err(_) if !pipe_supported() => {
                pipe.give();
                peer.splice_reads = false; // the copy path reads it on the next wait
            }
            Err(error) => {
                pipe.give();
                tracing::debug!(client = %self.origin.client, ?side, %error, "splice failed");
                self.eof(side, now);
            }
        }
    }

    /// After a tunnel read: writes what it queued towards `to` at once, when that socket
    /// is known to take bytes. The next wait would begin with this very write (writes
    /// win over reads there); done here, a small message costs one wait instead of two.
    /// A full send buffer (`WouldBlock`) leaves the bytes to the wait's write, which
    /// waits for room.
    pub(super) fn write_through(&mut self, to: Side, now: Instant) {
        let Some(peer) = self.peer(to) else {
            return;
        };
        if !wants_write(peer) || !peer.stream.may_be_writable() {
            return;
        }
        let result = peer.write_once();
        // Counts as a wait that did not sleep, so that a busy tunnel yields as often.
        self.waits = self.waits.saturating_add(1);
        self.wrote(to, result, now);
    }

    /// Answers the core's [`Output::NeedMaskingKey`](switchyard_core::Output::NeedMaskingKey)
    /// with a key from the operating system's CSPRNG, drawn 64 at a time (`masking.rs`):
    /// the peers must not predict it (RFC 6455 §5.3).
    pub(super) fn give_masking_key(&mut self) {
        match crate::masking::masking_key() {
            Ok(key) => self.feed(Input::MaskingKey(key), Instant::now()),
            // The tunnel goes on; only the proxy's own frames towards the upstream wait
            // (a drain's Close is then given up after its wait).
            Err(error) => tracing::error!(
                client = %self.origin.client,
                %error,
                "no random masking key: frames of the proxy's own towards the upstream wait"
            ),
        }
    }

    /// Frame-aware tunnel, at a frame header or control frame: one read into a pooled
    /// buffer, lent to the core, which says how much of it goes on as it is (usually all
    /// of it: whole, valid frames) and writes the rest of what it forwards, and its own
    /// frames, as outputs behind it. Usually a whole buffer's worth (many small frames in
    /// one read); in a direction carrying bulk data, only a header's worth, so that the
    /// payload behind it is spliced.
    fn read_shown(&mut self, side: Side, now: Instant) {
        let may_splice = self.may_splice();
        let Some(peer) = self.peer_mut(side) else {
            return;
        };
        let bulk = peer.splice_reads && may_splice;
        let mut buffer = take_buffer();
        let wanted = if bulk { SHOWN_IN_BULK } else { buffer.len() };
        // Plaintext either way: through the TLS session, if any, which never splices.
        let result = peer.read(&mut buffer[..wanted]);
        match result {
            Ok(0) => {
                give_buffer(buffer);
                self.eof(side, now);
            }
            Ok(n) => {
                // A full read: a large frame's payload follows its header, and the reads
                // within it splice.
                peer.splice_reads = bulk || n == buffer.len();
                let forward = match self.conn.handle_tunnel_read(side, &buffer[..n], now) {
                    Ok(forward) => forward,
                    Err(misuse) => {
                        self.misused(misuse);
                        0
                    }
                };
                // Queued before the outputs that call left, which come after it.
                match self.peer_mut(side.other()) {
                    Some(other) if forward > 0 => other.push(Chunk::Pooled {
                        buffer,
                        start: 0,
                        end: forward,
                    }),
                    _ => give_buffer(buffer),
                }
                // A header's worth that opened no large payload: small frames again,
                // which full reads take many at a time.
                if bulk && self.conn.tunnel_passthrough(side) < SPLICE_AT_LEAST as u64 {
                    if let Some(peer) = self.peer_mut(side) {
                        peer.splice_reads = false;
                    }
                }
            }
            Err(e) if is_transient(&e) => give_buffer(buffer),
            Err(error) => {
                give_buffer(buffer);
                tracing::debug!(client = %self.origin.client, ?side, %error, "read failed");
                self.eof(side, now);
            }
        }
    }
}

// The live tunnel list (`/status.json`): entered when the tunnel opens, its counts
// published after each read, left when it closes. Apart from the data path above: the
// only cost there is one call after each read, which does nothing without the list.
impl Link {
    /// Enters or leaves the live tunnel list at the tunnel's open and close events, and
    /// names the tunnel's route in the events' context.
    pub(super) fn track_tunnel(&mut self, event: &Event) {
        match event {
            Event::TunnelOpened { route, protocol } => {
                self.origin.set_route(*route);
                let Some(registry) = &self.shared.tunnels else {
                    return;
                };
                self.tunnel = Some(Box::new(registry.open(crate::tunnels::Opened {
                    worker: self.origin.worker(),
                    client: self.origin.client,
                    core: &self.shared.core,
                    route: *route,
                    protocol,
                    now: Instant::now(),
                    traffic: self.conn.tunnel_traffic().unwrap_or_default(),
                })));
            }
            Event::TunnelClosed(_) => self.tunnel = None,
            _ => {}
        }
    }

    /// Publishes the tunnel's bytes and messages so far, after a read.
    #[inline]
    pub(super) fn count_tunnel_traffic(&self) {
        if let Some(handle) = &self.tunnel {
            if let Some(traffic) = self.conn.tunnel_traffic() {
                handle.update(&traffic);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_reads_fit_one_packet_and_a_frame_rest_that_fits_a_buffer_is_read_whole() {
        // A byte tunnel: everything may pass.
        assert_eq!(read_size(u64::MAX), (BULK_READ, BULK_READ));
        // A long frame: packet-sized reads until its rest fits one buffer.
        assert_eq!(read_size(1 << 20), (BULK_READ, BULK_READ));
        assert_eq!(
            read_size(TUNNEL_BUFFER_SIZE as u64 + 1),
            (BULK_READ, BULK_READ)
        );
        // The rest of a frame within one buffer: one read, whose size says nothing of
        // what follows unless it is a whole buffer.
        let whole = TUNNEL_BUFFER_SIZE as u64;
        assert_eq!(read_size(whole), (TUNNEL_BUFFER_SIZE, TUNNEL_BUFFER_SIZE));
        assert_eq!(read_size(30_000), (30_000, TUNNEL_BUFFER_SIZE));
        // 64 KiB less the IPv6 and TCP headers with the largest options still holds it.
        const { assert!(BULK_READ <= 65_536 - 40 - 60) };
    }
}
