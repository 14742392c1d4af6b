//! The HTTP phase's bulk: a large response body spliced from the upstream's socket to
//! the client's through a pooled pipe, within what the core lets past it
//! ([`Connection::response_body_passthrough`](switchyard_core::Connection::response_body_passthrough)),
//! instead of read into userspace and written out again. The core sees the head, chunk
//! lines and trailers; the payload between them only as counts.

use std::time::Instant;

use switchyard_core::{Input, Side};

use super::peer::is_transient;
use super::tunnel::SPLICE_AT_LEAST;
use super::Driver;
use crate::backend::{pipe_supported, Pipe};
use crate::buffer::BULK_READ;

impl Driver {
    /// Splices what the upstream sent of a response body towards the client, when the
    /// body has at least [`SPLICE_AT_LEAST`] bytes left, the upstream sent bulk lately,
    /// neither side is TLS and everything queued towards the client is written (the
    /// pipe goes out before anything queued after it). False when it did not try: the
    /// read is then an ordinary one.
    pub(super) fn splice_response_body(&mut self, now: Instant) -> bool {
        let budget = self.conn.response_body_passthrough();
        if budget < SPLICE_AT_LEAST as u64 || !self.may_splice() || self.client.pending() {
            return false;
        }
        let link = &mut self.link;
        let Some(upstream) = &mut link.upstream else {
            return false;
        };
        if !upstream.peer.splice_reads || link.client.write_closed {
            return false;
        }
        let pipe = match Pipe::take() {
            Ok(pipe) => pipe,
            Err(error) => {
                tracing::debug!(%error, "no pipe: copying instead");
                upstream.peer.splice_reads = false;
                return false;
            }
        };
        // One packet's worth a splice, as a tunnel's bulk reads: a 1 MiB response went at
        // 1.4× the rate, for half the CPU per MB, than in 256 KiB splices.
        let most = usize::try_from(budget).unwrap_or(usize::MAX).min(BULK_READ);
        let result = upstream.peer.stream.splice_to(&pipe, most);
        // As in a tunnel: a short splice sends the next reads back to copying, and so
        // does WouldBlock (splice stops at an urgent mark, which a read skips).
        upstream.peer.splice_reads = matches!(result, Ok(n) if n >= SPLICE_AT_LEAST);
        match result {
            Ok(0) => {
                pipe.give();
                self.eof(Side::Upstream, now);
            }
            Ok(n) => {
                if let Some(facts) = &mut self.facts {
                    facts.bytes_read += n as u64;
                }
                self.feed(Input::ResponseBodyPassed { bytes: n }, now);
                self.client.pipe = Some(pipe);
            }
            Err(e) if is_transient(&e) => pipe.give(),
            Err(_) if !pipe_supported() => pipe.give(),
            Err(error) => {
                pipe.give();
                tracing::debug!(client = %self.origin.client, %error, "splice failed");
                self.eof(Side::Upstream, now);
            }
        }
        true
    }
}
