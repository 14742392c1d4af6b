//! The end of a connection: what is queued is written, the upstream closed, and the
//! client's socket lingers before it closes.

use std::io;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use futures_lite::future;

use super::peer::{flush, is_transient};
use super::Link;
use crate::backend::{Io, Timer};

/// After the core closes, how long the client may keep sending before its socket is
/// closed (see [`linger`]).
const LINGER: Duration = Duration::from_secs(2);
/// Lingering ends when the client sent nothing for this long.
const LINGER_QUIET: Duration = Duration::from_millis(250);
/// At most this much is read and discarded while lingering.
const LINGER_BYTES: usize = 256 * 1024;

impl Link {
    /// After `Close`: write what is pending (within the `send_timeout` of the route that
    /// queued it, as the core says), close the upstream, then half-close the client and
    /// linger briefly so unread request bytes do not turn the close into a reset.
    pub(super) async fn finish(&mut self) {
        let flush_by = self
            .conn
            .flush_deadline()
            .unwrap_or_else(|| Instant::now() + self.shared.core.timeouts.send);
        let client = &mut self.client;
        let upstream = self.upstream.as_mut().map(|u| &mut u.peer);
        let flush_both = async {
            future::zip(flush(Some(client)), flush(upstream)).await;
        };
        future::or(flush_both, async {
            Timer::at(flush_by).await;
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
