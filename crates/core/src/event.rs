//! Events for logs and metrics.

use std::time::Duration;

use crate::config::RouteId;
use crate::error::ProtocolError;
use crate::io::Side;
use crate::state::StateKind;
use crate::text::Text;
use crate::websocket::FrameStats;

/// Why a connection (or a tunnel) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client closed, between requests or mid-exchange.
    ClientClosed,
    /// The upstream closed.
    UpstreamClosed,
    /// Both sides of a tunnel closed (the normal end of a tunnel).
    BothClosed,
    /// The exchange ended and the connection is not kept alive.
    NotKeptAlive,
    /// The client sent no complete head within `header_timeout`.
    HeaderTimeout,
    /// A kept-alive client sent no request within `idle_timeout`.
    IdleTimeout,
    /// The upstream connection was not established within `connect_timeout`.
    ConnectTimeout,
    /// No upstream server could be reached.
    ConnectFailed,
    /// The upstream sent nothing for `read_timeout` (in a tunnel: the last open direction
    /// was silent that long).
    ReadTimeout,
    /// A write towards a peer made no progress for `send_timeout`.
    SendTimeout,
    /// A tunnel moved no byte either way for `tunnel_idle_timeout`.
    TunnelIdleTimeout,
    /// A peer broke the protocol.
    ProtocolError,
    /// Graceful shutdown.
    Shutdown,
    /// A bug in the core: it tried a phase change its transition table does not allow
    /// (reported first as [`Event::IllegalTransition`]).
    InternalError,
    /// In a frame-aware WebSocket tunnel, the client sent nothing at all within
    /// `ws_ping_timeout` of the proxy's Ping (the upstream got Close 1001).
    ClientUnresponsive,
    /// In a frame-aware WebSocket tunnel, the upstream sent nothing at all within
    /// `ws_ping_timeout` of the proxy's Ping (the client got Close 1001).
    UpstreamUnresponsive,
}

impl CloseReason {
    /// A short snake_case name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "client_closed",
            CloseReason::UpstreamClosed => "upstream_closed",
            CloseReason::BothClosed => "both_closed",
            CloseReason::NotKeptAlive => "not_kept_alive",
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::ConnectTimeout => "connect_timeout",
            CloseReason::ConnectFailed => "connect_failed",
            CloseReason::ReadTimeout => "read_timeout",
            CloseReason::SendTimeout => "send_timeout",
            CloseReason::TunnelIdleTimeout => "tunnel_idle_timeout",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::Shutdown => "shutdown",
            CloseReason::InternalError => "internal_error",
            CloseReason::ClientUnresponsive => "client_unresponsive",
            CloseReason::UpstreamUnresponsive => "upstream_unresponsive",
        }
    }
}

/// One finished request/response exchange: an access-log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRecord {
    /// Request method.
    pub method: Text,
    /// Request target as the client sent it.
    pub target: Text,
    /// Route chosen, if any.
    pub route: Option<RouteId>,
    /// Status sent to the client (a canned one when the proxy answered itself).
    pub status: u16,
    /// Bytes of the request (head and body) read from the client.
    pub bytes_from_client: u64,
    /// Bytes of the response (head and body) written to the client.
    pub bytes_to_client: u64,
    /// From the complete request head to the end of the response.
    pub duration: Duration,
    /// Why the client connection closed after this exchange; `None` when it is kept
    /// alive for the next request.
    pub close: Option<CloseReason>,
}

/// One finished tunnel: an access-log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelRecord {
    /// The route the upgrade request took.
    pub route: RouteId,
    /// The upgrade request's target.
    pub target: String,
    /// Protocol switched to (the upstream's `Upgrade` value).
    pub protocol: String,
    /// Bytes copied from the client to the upstream.
    pub bytes_client_to_upstream: u64,
    /// Bytes copied from the upstream to the client.
    pub bytes_upstream_to_client: u64,
    /// How long the tunnel lived.
    pub duration: Duration,
    /// Why it ended.
    pub reason: CloseReason,
    /// What a frame-aware WebSocket tunnel carried; `None` for a byte tunnel.
    pub websocket: Option<WebSocketRecord>,
}

/// What an open tunnel has carried so far
/// ([`Connection::tunnel_traffic`](crate::Connection::tunnel_traffic)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelTraffic {
    /// Bytes read from the client (to the upstream).
    pub bytes_client_to_upstream: u64,
    /// Bytes read from the upstream (to the client).
    pub bytes_upstream_to_client: u64,
    /// Data messages whose final frame's header was seen, `(from the client, from the
    /// upstream)`, in a frame-aware WebSocket tunnel; `None` in a byte tunnel, which
    /// knows no frames.
    pub messages: Option<(u64, u64)>,
}

/// The frames of a frame-aware WebSocket tunnel, for its access-log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebSocketRecord {
    /// Frames the client sent: frames, messages, Pings, Pongs, Close frames and the
    /// code of its first Close.
    pub client: FrameStats,
    /// Frames the upstream sent, counted the same way.
    pub upstream: FrameStats,
    /// Pings the proxy sent of its own, to either side.
    pub pings_sent: u64,
    /// Pongs that answered the proxy's Pings (absorbed: never forwarded).
    pub pongs_received: u64,
    /// The round trip of the last Ping of the proxy's that was answered.
    pub last_ping_rtt: Option<Duration>,
    /// The shortest such round trip.
    pub min_ping_rtt: Option<Duration>,
}

/// Something worth logging or counting, from [`Output::Event`](crate::Output::Event).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A request head was accepted and routed.
    Request {
        /// Request method.
        method: Text,
        /// Request target.
        target: Text,
        /// Route chosen.
        route: RouteId,
        /// Upgrade protocols forwarded, if the request proposes an upgrade (a view of
        /// the head's bytes, as `method` and `target` are).
        upgrade: Option<Text>,
    },
    /// The upstream's final response head (status) was forwarded.
    Response {
        /// Status code.
        status: u16,
    },
    /// An exchange finished.
    Exchange(AccessRecord),
    /// A tunnel opened after a validated `101`.
    TunnelOpened {
        /// The route the upgrade request took.
        route: RouteId,
        /// Protocol switched to.
        protocol: String,
    },
    /// A tunnel ended. The record is boxed: inline it was the largest variant by far
    /// (240 bytes), and every [`Output`](crate::Output) of every request, moved into the
    /// output queue and out again, was that large.
    TunnelClosed(Box<TunnelRecord>),
    /// A peer broke the protocol; what was wrong.
    Rejected(ProtocolError),
    /// In a frame-aware WebSocket tunnel, `side` sent a frame that breaks a rule: the
    /// frame was not forwarded, both sides get Close 1002 and the tunnel closes with
    /// [`CloseReason::ProtocolError`].
    WebSocketViolation {
        /// Who sent the frame.
        side: Side,
        /// The rule it broke ([`Violation::rule`](crate::websocket::Violation::rule)).
        rule: &'static str,
    },
    /// A bug in the core: in phase `state` it tried `step`, which the transition table
    /// (docs/ARCHITECTURE.md §Phases) does not allow. The connection closes with
    /// [`CloseReason::InternalError`].
    IllegalTransition {
        /// The phase the connection was in.
        state: StateKind,
        /// The step it tried (a name from the transition table).
        step: &'static str,
    },
    /// The connection is over; why.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

#[cfg(test)]
mod tests {
    /// Every output is moved into the connection's queue and out again; exact, so that a
    /// variant that grows it shows here (crates/core/benches/RESULTS.md, "Issue 14,
    /// second pass").
    #[test]
    fn an_output_stays_the_size_of_an_access_record() {
        assert_eq!(std::mem::size_of::<super::AccessRecord>(), 120);
        assert_eq!(std::mem::size_of::<super::Event>(), 120);
        assert_eq!(std::mem::size_of::<crate::Output>(), 120);
    }
}
