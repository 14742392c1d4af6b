//! The admin listener: `/metrics`, `/status`, `/status.json`, `/healthz` and `/readyz`
//! on an address of its own,
//! served by worker 0's executor (one task per connection, at most
//! [`MAX_CONNECTIONS`] at once), until the server stops.
//!
//! It holds the metrics, the live tunnel list, the upstream groups' failure marks (read
//! only) and the shutdown signal, nothing else of the server's: no pool, no socket of a
//! connection, so nothing it answers can reach an upstream.
//! Every connection gets one answer and is closed; a request head must arrive within
//! [`HEADER_TIMEOUT`] and fit in [`http::MAX_HEAD`] bytes.

mod http;
mod status;

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::executor::LocalExecutor;
use futures_lite::future;

use crate::backend::{Io, Timer};
use crate::metrics::Metrics;
use crate::signal::{Signal, Tracker};
use crate::stream_io::{read_some, write_all};
pub(crate) use status::Status;

/// Admin connections served at once; more wait in the listen backlog.
pub(crate) const MAX_CONNECTIONS: usize = 16;
/// How long a client has to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long writing an answer may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// After answering, how long what the client still sends is read and dropped, so that
/// closing does not reset the connection before it read the answer.
const LINGER: Duration = Duration::from_secs(1);
/// At most this much is dropped while lingering.
const LINGER_BYTES: usize = 64 * 1024;
/// How long accepting pauses after a failure that is not one client's (say, no file
/// descriptor left).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The admin listener, bound, and what it serves.
#[derive(Debug)]
pub(crate) struct Admin {
    listener: TcpListener,
    addr: SocketAddr,
    status: Arc<Status>,
}

impl Admin {
    /// Binds `addr` (a socket of its own: never `SO_REUSEPORT`, so it cannot share a
    /// proxy listener's port).
    pub(crate) fn bind(addr: SocketAddr, status: Arc<Status>) -> io::Result<Admin> {
        let cannot = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {addr} (admin_listen): {e}"),
            )
        };
        let listener = crate::sockets::listen(addr, false).map_err(cannot)?;
        Admin::on(listener, status)
    }

    /// Serves on `listener`, taken over from a running process (see `handover/`).
    pub(crate) fn on(listener: TcpListener, status: Arc<Status>) -> io::Result<Admin> {
        Ok(Admin {
            addr: listener.local_addr()?,
            listener,
            status,
        })
    }

    /// The listening socket, to offer a duplicate of it to a successor before
    /// [`Admin::serve`] registers it.
    pub(crate) fn listener(&self) -> &TcpListener {
        &self.listener
    }

    /// The bound address (port 0 resolved).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        self.status.metrics()
    }

    /// What `/status.json` and `/status` show.
    pub(crate) fn status(&self) -> &Arc<Status> {
        &self.status
    }

    /// Accepts and answers admin connections, each on a task of `spawner`, until that
    /// executor is dropped (which drops this task and closes the listener). `/readyz`
    /// answers 503 once `shutdown` is set.
    pub(crate) async fn serve(self, shutdown: Arc<Signal>, spawner: Weak<LocalExecutor>) {
        let listener = match Io::listener(self.listener) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(%error, "cannot register the admin listener");
                return;
            }
        };
        tracing::debug!(addr = %self.addr, "admin listener serving");
        let state = Rc::new(State {
            status: self.status,
            shutdown,
        });
        let open = Arc::new(Tracker::default());
        loop {
            open.wait_below(MAX_CONNECTIONS).await;
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let Some(executor) = spawner.upgrade() else {
                        return;
                    };
                    let stream = match Io::stream(stream, true) {
                        Ok(stream) => stream,
                        Err(error) => {
                            tracing::debug!(%peer, %error, "cannot register an admin connection");
                            continue;
                        }
                    };
                    let guard = open.enter();
                    let state = state.clone();
                    executor
                        .spawn(async move {
                            let _guard = guard;
                            exchange(stream, &state).await;
                        })
                        .detach();
                }
                Err(error) if crate::accept::is_per_connection(&error) => {
                    tracing::debug!(%error, "admin accept failed");
                }
                Err(error) => {
                    tracing::warn!(%error, "admin accept failed, pausing");
                    Timer::after(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
}

/// What every admin connection reads.
struct State {
    status: Arc<Status>,
    shutdown: Arc<Signal>,
}

/// Reads one request head, answers it and closes.
async fn exchange(stream: Io<TcpStream>, state: &State) {
    let deadline = Instant::now() + HEADER_TIMEOUT;
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    let answer = loop {
        let read = async { Some(read_some(&stream, &mut chunk).await) };
        let expired = async {
            Timer::at(deadline).await;
            None
        };
        match future::or(read, expired).await {
            None => break http::Answer::Timeout,
            // The client left, or its connection failed: nobody to answer.
            Some(Ok(0) | Err(_)) => return,
            Some(Ok(n)) => {
                head.extend_from_slice(&chunk[..n]);
                match http::parse(&head) {
                    http::Parsed::Partial => continue,
                    http::Parsed::Complete(answer) => break answer,
                }
            }
        }
    };
    // Read at the moment of answering: 503 from the instant a shutdown begins.
    let ready = !state.shutdown.is_set();
    let response = http::respond(answer, ready, |endpoint| match endpoint {
        http::Endpoint::Metrics => state.status.metrics().encode(),
        http::Endpoint::StatusJson => state.status.json(),
        _ => status::PAGE.to_string(),
    });
    let write = async { Some(write_all(&stream, &response).await) };
    let expired = async {
        Timer::after(WRITE_TIMEOUT).await;
        None
    };
    if !matches!(future::or(write, expired).await, Some(Ok(()))) {
        return;
    }
    if stream.shutdown_write().is_ok() {
        linger(&stream).await;
    }
}

/// One read, once the socket is readable.
/// Reads and drops what the client still sends (bytes after its head), until its EOF,
/// [`LINGER`] or [`LINGER_BYTES`].
async fn linger(stream: &Io<TcpStream>) {
    let drain = async {
        let mut sink = [0u8; 1024];
        let mut total = 0;
        while total < LINGER_BYTES {
            match read_some(stream, &mut sink).await {
                Ok(n) if n > 0 => total += n,
                _ => return,
            }
        }
    };
    future::or(drain, async {
        Timer::after(LINGER).await;
    })
    .await;
}
