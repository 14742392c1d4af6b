//! What goes into a [`Connection`](crate::Connection) and what comes out of it.

use bytes::{Bytes, BytesMut};
use std::time::Duration;

use crate::config::RouteId;
use crate::event::Event;

/// One of the two peers of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The client that connected to the proxy.
    Client,
    /// The upstream server the proxy connected to.
    Upstream,
}

impl Side {
    /// The other peer.
    pub fn other(self) -> Side {
        match self {
            Side::Client => Side::Upstream,
            Side::Upstream => Side::Client,
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Side::Client => 0,
            Side::Upstream => 1,
        }
    }
}

/// Something that happened, fed to [`Connection::handle_input`](crate::Connection::handle_input).
#[derive(Debug)]
#[non_exhaustive]
pub enum Input {
    /// Bytes read from the client. Pass the read buffer itself: when the core holds no
    /// unparsed bytes it adopts the buffer without copying.
    ClientData(BytesMut),
    /// The client closed its sending side (read returned 0) or the read failed.
    ClientEof,
    /// The upstream connection asked for by [`Output::Connect`] is ready. `reused` says it
    /// came from an idle pool: a reused connection that closes before answering a request
    /// without a body makes the core ask for a fresh connection once.
    UpstreamConnected {
        /// Whether the connection was taken from a keep-alive pool.
        reused: bool,
    },
    /// No server of the route's upstream group could be reached (the adapter has already
    /// tried the ones it wanted to). The client gets `502`.
    UpstreamConnectFailed,
    /// Bytes read from the upstream.
    UpstreamData(BytesMut),
    /// The upstream closed its sending side or the read failed.
    UpstreamEof,
    /// Everything written so far towards `to` has been written out. While bytes towards a
    /// peer are pending, `send_timeout` runs; this input stops it.
    Flushed {
        /// The peer whose writes completed.
        to: Side,
    },
    /// A write towards `to` failed: that peer is gone in both directions (unlike an EOF,
    /// which only ends its sending side). The core ends the exchange or tunnel at once, so
    /// nothing keeps reading from one peer on behalf of a dead one.
    WriteFailed {
        /// The peer that could not be written to.
        to: Side,
    },
    /// In a tunnel: the adapter read `bytes` from `from` and is writing them to the other
    /// side (which starts `send_timeout` for that side until [`Input::Flushed`]). In a
    /// frame-aware tunnel at most
    /// [`Connection::tunnel_passthrough`](crate::Connection::tunnel_passthrough)`(from)`
    /// bytes; more is [`Misuse::PassthroughExceeded`](crate::Misuse::PassthroughExceeded).
    TunnelActivity {
        /// Where the bytes came from.
        from: Side,
        /// How many bytes were read.
        bytes: usize,
    },
    /// In a frame-aware tunnel: bytes read from `from` that the core must see (when
    /// [`Connection::tunnel_passthrough`](crate::Connection::tunnel_passthrough)`(from)`
    /// is 0: a frame header, a control frame, or a direction being discarded). The core
    /// consumes all of them: what is to be forwarded comes back as
    /// [`Output::ToClient`] / [`Output::ToUpstream`] slices of `data` (zero copy), an
    /// absorbed Pong and everything after a protocol violation are dropped, and a partial
    /// header or control frame is kept until the next read. Counts as a read from
    /// `from`, exactly as [`Input::TunnelActivity`] does. The same read may instead be
    /// lent, with no copy or allocation in the common case:
    /// [`Connection::handle_tunnel_read`](crate::Connection::handle_tunnel_read).
    TunnelData {
        /// Where the bytes came from.
        from: Side,
        /// The bytes read (pass the read buffer itself).
        data: BytesMut,
    },
    /// In a frame-aware tunnel: a fresh masking key for the next frame of the proxy's
    /// own towards the upstream, in answer to [`Output::NeedMaskingKey`]. Draw it from a
    /// source the peers cannot predict (`getrandom` or another CSPRNG); each key is used
    /// for one frame.
    MaskingKey([u8; 4]),
    /// In an exchange: the caller moved `bytes` of the response body from the upstream
    /// to the client itself (spliced them), after everything queued towards the client,
    /// without showing them to the core; at most
    /// [`Connection::response_body_passthrough`](crate::Connection::response_body_passthrough)
    /// (more is [`Misuse::PassthroughExceeded`](crate::Misuse::PassthroughExceeded)).
    /// Counts as a read from the upstream and a write towards the client (which starts
    /// `send_timeout` until [`Input::Flushed`]).
    ResponseBodyPassed {
        /// How many bytes were moved.
        bytes: usize,
    },
    /// Graceful drain: stop taking new requests, finish the exchange in flight, then
    /// close. A tunnel is given `grace` before it is closed. A kept-alive connection
    /// between requests closes at once; a fresh one that has not sent its first request
    /// yet may still send it within 1 s (at most `grace`), and is answered.
    Drain {
        /// How long an open tunnel may continue.
        grace: Duration,
    },
    /// Time passed. Safe to send at any time; with nothing due it does nothing.
    Timeout,
}

/// An action for the caller, from [`Connection::poll_output`](crate::Connection::poll_output).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Open (or take from a pool) a connection to a server of this route's upstream group,
    /// then answer with [`Input::UpstreamConnected`] or [`Input::UpstreamConnectFailed`].
    Connect(RouteId),
    /// Write these bytes to the client, in order.
    ToClient(Bytes),
    /// Write these bytes to the upstream, in order.
    ToUpstream(Bytes),
    /// The exchange with the current upstream connection is over: pool it when
    /// `reusable`, close it otherwise. It can also come while a [`Output::Connect`] is
    /// still pending (connect deadline, client gone): then abandon the attempt.
    ReleaseUpstream {
        /// Whether the connection may carry another request.
        reusable: bool,
    },
    /// From now on copy bytes both ways yourself, reporting each read as
    /// [`Input::TunnelActivity`] and each EOF as [`Input::ClientEof`] /
    /// [`Input::UpstreamEof`]. First write `client_leftover` to the upstream and
    /// `upstream_leftover` to the client: they arrived with the handshake.
    ///
    /// In a frame-aware WebSocket tunnel both leftovers are empty: the core runs the
    /// bytes that came with the handshake through its frame trackers and emits them as
    /// ordinary [`Output::ToUpstream`] / [`Output::ToClient`] right after this output
    /// (and after [`Output::NeedMaskingKey`]). Before each read from a side, ask
    /// [`Connection::tunnel_passthrough`](crate::Connection::tunnel_passthrough) how many
    /// bytes may go past the core: copy or splice at most that many and report them with
    /// [`Input::TunnelActivity`]; at 0, lend the bytes read to
    /// [`Connection::handle_tunnel_read`](crate::Connection::handle_tunnel_read) or show
    /// them with [`Input::TunnelData`].
    StartTunnel {
        /// Bytes the client sent after its upgrade request, for the upstream.
        client_leftover: Bytes,
        /// Bytes the upstream sent after its `101` head, for the client.
        upstream_leftover: Bytes,
    },
    /// In a frame-aware tunnel: answer at once with [`Input::MaskingKey`]. Emitted right
    /// after [`Output::StartTunnel`] and again each time the core used its key for a frame
    /// of its own towards the upstream (a Ping or a Close); such a frame waits until a
    /// key is at hand.
    NeedMaskingKey,
    /// Shut down writing towards `side` (half-close), after writing what is pending.
    HalfClose {
        /// The peer that will read EOF.
        side: Side,
    },
    /// Write what is pending, then close both connections. Nothing follows.
    Close,
    /// Something worth logging or counting.
    Event(Event),
}
