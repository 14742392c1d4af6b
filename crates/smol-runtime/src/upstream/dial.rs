//! Dialing a server of a group: the pool first, then a connect (and, in a group with
//! TLS, the handshake), server after server in the balancer's order.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream};

use rustls::pki_types::ServerName;
use std::time::{Duration, Instant};

use futures_lite::future;

use super::{Choice, Dialed, Group, Pool, Server, ServerState};
use crate::backend::{Io, Timer};
use crate::metrics::WorkerMetrics;
use crate::stream_io::write_all;
use crate::tls::session::TlsSession;
use crate::tls::upstream::HandshakeFailure;
use crate::UpstreamTls;

/// A pooled connection to the only server of a one-server group, found without the
/// balancer: its rotation, which allocates the order of the servers, can only name that
/// server (unless its health check has it down). What most requests of such a group
/// take, with no allocation.
pub(crate) fn pooled_single(group: &Group, pool: &Pool) -> Option<Dialed> {
    let [server] = &group.servers[..] else {
        return None;
    };
    if group.state(server, group.millis(Instant::now())) == ServerState::Down {
        return None;
    }
    // A connection of the other kind (a reload turned TLS on or off) is closed.
    let (stream, tls) = pool
        .take(server.addr)
        .filter(|(_, tls)| tls.is_some() == group.tls.is_some())?;
    Some(Dialed {
        stream,
        tls,
        server: server.addr,
        reused: true,
        open: server.open.clone(),
    })
}

/// Finds a connection to a server of `group`: the balancer's choice for `choice`, from
/// the pool when it holds a live one (unless `fresh`), else dialed with `connect_timeout`.
/// A failed dial moves on to the next server; each server is tried at most once, and a
/// server whose connect failed in the last [`FAIL_TIMEOUT`] only after the others. In a
/// group with TLS a dial includes the handshake, and a handshake that fails (a
/// certificate that does not verify) fails the server as a refused connect does;
/// `proxy_header` is written before it (a plain connection's goes out with the request).
pub(crate) async fn connect(
    group: &Group,
    pool: &Pool,
    fresh: bool,
    connect_timeout: Duration,
    choice: Choice,
    proxy_header: Option<&[u8]>,
) -> Option<Dialed> {
    for chosen in group.rotation(Instant::now(), choice) {
        let server = chosen.addr;
        let open = || chosen.open.clone();
        if !fresh {
            // A connection of the other kind (a reload turned TLS on or off) is closed.
            let pooled = pool
                .take(server)
                .filter(|(_, tls)| tls.is_some() == group.tls.is_some());
            if let Some((stream, tls)) = pooled {
                return Some(Dialed {
                    stream,
                    tls,
                    server,
                    reused: true,
                    open: open(),
                });
            }
        }
        // Counts a failure, also when the caller gives up on the dial (the core's
        // connect deadline) and drops this future.
        let mut attempt = DialAttempt {
            metrics: pool.metrics.as_deref(),
            group: &group.name,
            server,
            failed: true,
        };
        let dial = async { Some(dial(group, chosen, proxy_header).await) };
        let outcome = if group.servers.len() == 1 {
            // The caller races this against the core's connect deadline, which is the
            // same: a timer of its own would only cost the reactor work.
            dial.await
        } else {
            let give_up = async {
                Timer::after(connect_timeout).await;
                None
            };
            future::or(dial, give_up).await
        };
        let connected = matches!(outcome, Some(Ok(_)));
        group.record(server, connected, Instant::now());
        attempt.failed = matches!(outcome, None | Some(Err(DialError::Connect(_))));
        drop(attempt);
        match outcome {
            Some(Ok((stream, tls))) => {
                return Some(Dialed {
                    stream,
                    tls,
                    server,
                    reused: false,
                    open: open(),
                });
            }
            Some(Err(DialError::Connect(error))) => {
                tracing::warn!(group = %group.name, %server, %error, "upstream connect failed");
            }
            Some(Err(DialError::Tls(failure))) => {
                tracing::warn!(
                    group = %group.name,
                    %server,
                    reason = failure.reason,
                    error = %failure.detail,
                    "upstream TLS handshake failed"
                );
                if let Some(metrics) = pool.metrics() {
                    metrics.upstream_tls_failed(&group.name, server, failure.reason);
                }
            }
            None => {
                tracing::warn!(group = %group.name, %server, "upstream connect timed out");
            }
        }
    }
    None
}

/// Why a dial gave no connection.
pub(crate) enum DialError {
    Connect(io::Error),
    Tls(HandshakeFailure),
}

/// Connects to `server` (from the group's next source address) and, in a group with
/// TLS, writes `proxy_header` and makes the handshake.
async fn dial(
    group: &Group,
    server: &Server,
    proxy_header: Option<&[u8]>,
) -> Result<(Io<TcpStream>, Option<Box<TlsSession>>), DialError> {
    let source = group
        .sources
        .next_for(server.addr)
        .map_err(DialError::Connect)?;
    let tls = group.tls.as_ref().zip(server.tls_name.clone());
    open(server.addr, source, proxy_header, tls).await
}

/// Connects to `addr` from `source` and, with `tls` (the group's and the name the server
/// is verified for), writes `proxy_header` in clear and makes the handshake. Without TLS
/// the header is not written here: it goes out with the connection's first bytes, which
/// are the caller's. The connections to servers and their health checks both open so.
pub(crate) async fn open(
    addr: SocketAddr,
    source: Option<IpAddr>,
    proxy_header: Option<&[u8]>,
    tls: Option<(&UpstreamTls, ServerName<'static>)>,
) -> Result<(Io<TcpStream>, Option<Box<TlsSession>>), DialError> {
    let stream = Io::connect(addr, source)
        .await
        .map_err(DialError::Connect)?;
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(server = %addr, %error, "setting TCP_NODELAY failed");
    }
    let Some((tls, name)) = tls else {
        return Ok((stream, None));
    };
    if let Some(header) = proxy_header {
        write_all(&stream, header)
            .await
            .map_err(DialError::Connect)?;
    }
    let session = tls
        .handshake(&stream, addr, name)
        .await
        .map_err(DialError::Tls)?;
    Ok((stream, Some(session)))
}

/// One dial of an upstream server, counted as a connect error unless it succeeded.
struct DialAttempt<'a> {
    metrics: Option<&'a WorkerMetrics>,
    group: &'a str,
    server: SocketAddr,
    failed: bool,
}

impl Drop for DialAttempt<'_> {
    fn drop(&mut self) {
        if let (true, Some(metrics)) = (self.failed, self.metrics) {
            metrics.connect_failed(self.group, self.server);
        }
    }
}
