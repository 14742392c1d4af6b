//! Errors, sorted by whose fault they are (as h11 does): a peer's ([`ProtocolError`],
//! which becomes a canned response and never an `Err`) or the caller's ([`Misuse`]).

use std::fmt;

use crate::io::Side;

/// What a peer did wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The head does not parse as HTTP/1.x.
    MalformedHead,
    /// A line ends in a bare LF or holds a bare CR.
    BareLineEnding,
    /// A control character (NUL, CR, LF, …) in a field value.
    ControlCharacter,
    /// Whitespace between a field name and its colon, or an invalid name character.
    InvalidFieldName,
    /// A line folded with leading whitespace (obs-fold).
    ObsFold,
    /// HTTP/1.1 request without `Host`, or with more than one.
    BadHost,
    /// A malformed, repeated or differing `Content-Length`.
    BadContentLength,
    /// Both `Content-Length` and `Transfer-Encoding`.
    ContentLengthWithTransferEncoding,
    /// `Transfer-Encoding` whose last coding is not `chunked`, repeated `chunked`, or in HTTP/1.0.
    BadTransferEncoding,
    /// A transfer coding the proxy does not implement (`501`).
    UnsupportedTransferEncoding,
    /// A chunk size line or chunk terminator that is not exactly valid.
    BadChunk,
    /// A malformed trailer section.
    BadTrailer,
    /// A request line longer than the limit.
    RequestLineTooLong,
    /// A head larger than the limit, or with too many fields.
    HeadTooLarge,
    /// A request body larger than the route allows.
    BodyTooLarge,
    /// A request target that is not origin-, absolute- or asterisk-form.
    BadTarget,
    /// No route matches the path.
    NoRoute,
    /// An HTTP version other than 1.0 and 1.1.
    UnsupportedVersion,
    /// A `101` to a request that did not propose an upgrade, naming a protocol not
    /// offered, without `Connection: upgrade`, or with a wrong `Sec-WebSocket-Accept`.
    InvalidSwitch,
    /// A response to a request that was not sent, or bytes after a complete response.
    UnexpectedResponse,
    /// The peer closed in the middle of a message.
    Truncated,
}

/// A protocol error by one of the peers. Never returned as `Err`: the core answers it
/// itself (a canned response to the client, then close) and reports it as
/// [`Event::Rejected`](crate::Event::Rejected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolError {
    /// Who misbehaved.
    pub side: Side,
    /// What was wrong.
    pub kind: ErrorKind,
}

impl ProtocolError {
    pub(crate) fn client(kind: ErrorKind) -> Self {
        ProtocolError {
            side: Side::Client,
            kind,
        }
    }

    pub(crate) fn upstream(kind: ErrorKind) -> Self {
        ProtocolError {
            side: Side::Upstream,
            kind,
        }
    }

    /// The status the client is answered with (h11's `error_status_hint`): a client's
    /// fault is a 4xx (or `501`), an upstream's fault is `502`.
    pub fn status_hint(&self) -> u16 {
        if self.side == Side::Upstream {
            return 502;
        }
        match self.kind {
            ErrorKind::RequestLineTooLong => 414,
            ErrorKind::HeadTooLarge => 431,
            ErrorKind::BodyTooLarge => 413,
            ErrorKind::UnsupportedTransferEncoding => 501,
            ErrorKind::NoRoute => 404,
            ErrorKind::UnsupportedVersion => 505,
            _ => 400,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = match self.side {
            Side::Client => "client",
            Side::Upstream => "upstream",
        };
        write!(f, "{who} protocol error: {:?}", self.kind)
    }
}

impl std::error::Error for ProtocolError {}

/// The caller used the API wrongly. Peers can never cause this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Misuse {
    /// Input after the connection emitted [`Output::Close`](crate::Output::Close).
    Closed,
    /// An input that makes no sense in the current state, e.g. upstream data when no
    /// upstream connection was asked for.
    Unexpected {
        /// The state the connection was in.
        state: crate::StateKind,
        /// Which input it was given.
        input: &'static str,
    },
    /// [`Input::TunnelActivity`](crate::Input::TunnelActivity) reported more bytes moved
    /// past the core than
    /// [`Connection::tunnel_passthrough`](crate::Connection::tunnel_passthrough) allowed:
    /// in a frame-aware tunnel those bytes had to be shown with
    /// [`Input::TunnelData`](crate::Input::TunnelData). Or
    /// [`Input::ResponseBodyPassed`](crate::Input::ResponseBodyPassed) more than
    /// [`Connection::response_body_passthrough`](crate::Connection::response_body_passthrough).
    PassthroughExceeded {
        /// Where the bytes came from.
        from: Side,
        /// How many were reported.
        bytes: u64,
        /// How many were allowed.
        budget: u64,
    },
}

impl fmt::Display for Misuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Misuse::Closed => write!(f, "input after the connection was closed"),
            Misuse::Unexpected { state, input } => {
                write!(f, "input {input} is not expected in state {state:?}")
            }
            Misuse::PassthroughExceeded {
                from,
                bytes,
                budget,
            } => write!(
                f,
                "{bytes} bytes from the {} moved past the core, but only {budget} may",
                match from {
                    Side::Client => "client",
                    Side::Upstream => "upstream",
                }
            ),
        }
    }
}

impl std::error::Error for Misuse {}
