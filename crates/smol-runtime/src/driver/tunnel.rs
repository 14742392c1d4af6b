//! The tunnel's data path: copy through a pooled buffer, or splice through a pooled
//! pipe for a direction carrying bulk data.

use std::time::Instant;

use switchyard_core::{Input, Side};

use super::peer::is_transient;
use super::Driver;
use crate::backend::{pipe_supported, Pipe};
use crate::buffer::{give_buffer, take_buffer, Chunk};

/// A tunnel direction that splices keeps splicing while each splice moves at least this
/// much; less sends it back to copying (see `pipe.rs`).
const SPLICE_AT_LEAST: usize = 16 * 1024;

impl Driver<'_> {
    /// Tunnel: read into a pooled buffer (taken only now that the socket is readable)
    /// and queue it towards the other side.
    pub(super) fn read_tunnel(&mut self, side: Side, now: Instant) {
        let Some(peer) = self.peer_mut(side) else {
            return;
        };
        if peer.splice_reads && pipe_supported() {
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
                tracing::debug!(client = %self.context.client, ?side, %error, "read failed");
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
            Err(_) if !pipe_supported() => {
                pipe.give();
                peer.splice_reads = false; // the copy path reads it on the next wait
            }
            Err(error) => {
                pipe.give();
                tracing::debug!(client = %self.context.client, ?side, %error, "splice failed");
                self.eof(side, now);
            }
        }
    }
}
