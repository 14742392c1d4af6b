//! A worker's accept loop for one listening socket: accepting within
//! `max_connections`, giving back idle upstream connections when descriptors run out,
//! emptying the queue of a listener that stops, and a task per connection under the
//! newest configuration generation.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::executor::LocalExecutor;
use futures_lite::future;

use crate::backend::{Io, Timer};
use crate::driver::{self, Shared};
use crate::events::EventContext;
use crate::generation::Generations;
use crate::shortage;
use crate::signal::{ConnectionGuard, Tracker};
use crate::sockets;
use crate::upstream::Pool;
use crate::worker::Stops;

/// Connections accepted before the accept loop lets the other tasks run.
const ACCEPT_BATCH: usize = 16;
/// How long accepting pauses after a failure that is not one client's: out of file
/// descriptors with no idle upstream connection left to close, or any other.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

#[allow(clippy::too_many_arguments)]
pub(crate) async fn accept_loop(
    listener: Io<TcpListener>,
    stops: Stops,
    generations: Arc<Generations>,
    pool: Rc<Pool>,
    tracker: Arc<Tracker>,
    executor: Rc<LocalExecutor>,
    max_connections: usize,
    worker: usize,
) {
    // Which listener accepted a connection decides whether it begins with a PROXY
    // header and whether it speaks TLS (a generation's settings, by bound address: a
    // reload can change both, and the certificates).
    let listening = listener.local_addr().ok();
    let start_serving = |stream, client_addr, guard| {
        // The generation of its accept, for the connection's whole life.
        let shared = generations.current();
        let accepted = Accepted {
            client: client_addr,
            listener: listening,
            worker,
        };
        spawn_connection(&executor, shared, &pool, stream, accepted, guard)
    };
    let mut accepts = 0usize;
    loop {
        if max_connections > 0 && tracker.active() >= max_connections {
            tracing::debug!(max_connections, "connection limit reached, pausing accept");
            let slot = async {
                tracker.wait_below(max_connections).await;
                Some(())
            };
            if future::or(slot, stops.stopped()).await.is_none() {
                break;
            }
        }
        // A listener stays readable until an accept finds its queue empty: without a
        // pause, a burst of connections would keep this task from yielding to the
        // connections already being served: it yields every `ACCEPT_BATCH` accepts.
        accepts += 1;
        if accepts % ACCEPT_BATCH == 0 {
            future::yield_now().await;
        }
        let accept = async { Some(listener.accept().await) };
        match future::or(accept, stops.stopped()).await {
            None => break,
            Some(Ok((stream, client_addr))) => {
                shortage::accepted();
                // A client usually sends its request right behind its handshake: read
                // before waiting for an event.
                let stream = match Io::stream(stream, true) {
                    Ok(stream) => stream,
                    Err(error) => {
                        tracing::warn!(%client_addr, %error, "cannot register a connection");
                        continue;
                    }
                };
                // Another worker may have taken the last slot since the check above:
                // this connection waits, accepted but unserved, for a slot of its own.
                let guard = loop {
                    if let Some(guard) = tracker.try_enter(max_connections) {
                        break Some(guard);
                    }
                    let slot = async {
                        tracker.wait_below(max_connections).await;
                        Some(())
                    };
                    if future::or(slot, stops.stopped()).await.is_none() {
                        break None;
                    }
                };
                let Some(guard) = guard else {
                    // Shutting down: served anyway, as the queue's others are below.
                    start_serving(stream, client_addr, tracker.enter());
                    break;
                };
                start_serving(stream, client_addr, guard);
            }
            Some(Err(error)) if shortage::out_of_descriptors(&error) => {
                // Idle upstream connections are descriptors this worker can give back
                // at once (a new client may still reuse the newer ones); only with none
                // left does accepting wait for descriptors to be freed.
                let closed = pool.close_oldest(shortage::TRIM_BATCH);
                shortage::accept_failed(&error, closed, closed == 0);
                if closed > 0 {
                    continue;
                }
                let pause = async {
                    Timer::after(ACCEPT_BACKOFF).await;
                    Some(())
                };
                if future::or(pause, stops.stopped()).await.is_none() {
                    break;
                }
            }
            Some(Err(error)) => {
                if is_per_connection(&error) {
                    tracing::debug!(%error, "accept failed");
                    continue;
                }
                tracing::warn!(%error, "accept failed, pausing");
                let pause = async {
                    Timer::after(ACCEPT_BACKOFF).await;
                    Some(())
                };
                if future::or(pause, stops.stopped()).await.is_none() {
                    break;
                }
            }
        }
    }
    // Served over `max_connections` if need be: the alternative is a reset.
    let queued = sockets::take_queued(&listener, |stream, client_addr| {
        start_serving(stream, client_addr, tracker.enter())
    });
    if let Ok(addr) = listener.local_addr() {
        tracing::debug!(%addr, queued, "stopped accepting");
    }
}

/// Who connected, where, and which worker serves it.
#[derive(Debug, Clone, Copy)]
struct Accepted {
    client: SocketAddr,
    /// The listening socket's bound address.
    listener: Option<SocketAddr>,
    worker: usize,
}

/// Serves one accepted connection under `shared` in a task of its own, counted by
/// `guard`.
fn spawn_connection(
    executor: &Rc<LocalExecutor>,
    shared: Arc<Shared>,
    pool: &Rc<Pool>,
    stream: Io<TcpStream>,
    accepted: Accepted,
    guard: ConnectionGuard,
) {
    let Accepted {
        client: client_addr,
        listener,
        worker,
    } = accepted;
    let context = EventContext::new(worker, client_addr);
    let proxy_header = listener.is_some_and(|addr| shared.accept_proxy.contains(&addr));
    let tls = shared.tls.get(listener);
    // Boxed: the task carries only what it serves with (see `driver::serve`).
    let start = Box::new(driver::Start {
        shared,
        pool: pool.clone(),
        guard,
        executor: Rc::downgrade(executor),
        client: stream,
        context,
        proxy_header,
        tls,
    });
    executor.spawn(driver::serve(start)).detach();
}

/// Errors that concern one failed handshake, not the listener or the process (running
/// out of file descriptors, EMFILE/ENFILE, is not one: see `shortage`).
pub(crate) fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}
