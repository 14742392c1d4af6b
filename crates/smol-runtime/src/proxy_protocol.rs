//! The PROXY protocol at the edges of the runtime: reading the header a balancer sends
//! before anything else on a listener that requires it (parsed by the core's
//! `switchyard_core::proxy_protocol`), and the v2 header written as the first bytes of
//! a new connection to an upstream group that wants one.
//!
//! The header is read from the raw socket before the core's `Connection` (or a TLS
//! session) exists: it precedes everything else on the wire, TLS included. What
//! followed it in the same reads is handed on as the connection's first bytes.

use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use bytes::BytesMut;
use futures_lite::future;
use switchyard_core::proxy_protocol::{Header, HeaderReader, Read};

use crate::backend::{Io, Timer};

/// Where the PROXY protocol is spoken; part of [`ServerConfig`](crate::ServerConfig).
/// The default speaks it nowhere.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyProtocol {
    /// `listen` addresses (as written there) whose connections must begin with a PROXY
    /// header, v1 or v2, within `header_timeout`; one without is closed unanswered. The
    /// address in the header is the client's for the forwarding headers, the access log,
    /// the events and the metrics; `UNKNOWN` (v1) and `LOCAL` (v2) keep the socket's.
    pub accept_on: Vec<SocketAddr>,
    /// Names of upstream groups whose new connections begin with a PROXY v2 header
    /// naming the client (as learned) and the address it connected to. Such a group's
    /// connections are never pooled: a header belongs to the one client that opened it.
    pub send_to: Vec<String>,
}

/// Why a connection was closed before its header was whole: the `reason` label of
/// `switchyard_proxy_protocol_errors_total`, in slot order.
pub(crate) const REFUSALS: [&str; 4] = ["missing", "invalid", "timeout", "closed"];

/// A connection that did not send a valid header in time; the slot in [`REFUSALS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused(pub(crate) usize);

/// Bytes read at a time while looking for the header: a v1 line fits, a v2 header with
/// the TLVs balancers send does, and whatever follows is handed on, not lost.
const READ_SIZE: usize = 512;

/// Reads a PROXY header from `stream` by `deadline`; returns it with the bytes that
/// followed it in the same reads.
pub(crate) async fn read_header(
    stream: &Io<TcpStream>,
    deadline: Instant,
) -> Result<(Header, BytesMut), Refused> {
    let mut reader = HeaderReader::new();
    let mut timer = Timer::at(deadline);
    let mut buffer = [0u8; READ_SIZE];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Err(Refused(3)),
            Ok(n) => match reader.push(&buffer[..n]) {
                Ok(Read::NeedMore) => continue,
                Ok(Read::Done { header, rest }) => return Ok((header, rest)),
                Err(switchyard_core::proxy_protocol::Error::NotProxy) => return Err(Refused(0)),
                Err(_) => return Err(Refused(1)),
            },
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(Refused(3)),
        }
        let readable = async {
            stream.readable().await;
            true
        };
        let expired = async {
            (&mut timer).await;
            false
        };
        if !future::or(readable, expired).await {
            return Err(Refused(2));
        }
    }
}
