//! What a vector is: the client's bytes, the upstream's answers, and what must come of
//! them on both sides.

/// Whose bytes are hostile in a vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The client's request.
    Request,
    /// The upstream's response.
    Response,
    /// The upgrade handshake, from either side.
    Upgrade,
}

/// How the scripted upstream answers one complete request it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `200 OK` with the request target as a `Content-Length` body.
    Echo,
    /// These bytes, verbatim.
    Raw(&'static [u8]),
    /// These bytes, then close.
    RawThenClose(&'static [u8]),
    /// A valid `101` for the request's `Sec-WebSocket-Key`, then these bytes.
    WebSocket(&'static [u8]),
}

/// What the upstream side must have received, over all its connections, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Up {
    /// No upstream connection was opened.
    Nothing,
    /// Exactly these complete, well-formed requests (request lines), nothing else.
    Requests(&'static [&'static str]),
    /// These complete requests, then one that never completed (its request line): the
    /// proxy gave up on it and closed that connection.
    Abandoned(&'static [&'static str], &'static str),
    /// These complete requests, then exactly these tunnel bytes.
    Tunnel(&'static [&'static str], &'static [u8]),
}

/// One vector: what the client sends, how the upstream answers, and what must come of it.
#[derive(Debug, Clone)]
pub struct Vector {
    /// Unique name.
    pub name: &'static str,
    /// Which class of rule: a row of the tables in the "Security" section of the
    /// repository's README, or `control` for what must simply work.
    pub class: &'static str,
    /// Whose bytes are hostile.
    pub side: Side,
    /// Everything the client sends, in one go.
    pub client: Vec<u8>,
    /// The upstream's answers, one per complete request; [`Reply::Echo`] past the end.
    pub replies: Vec<Reply>,
    /// Statuses the client receives, in order.
    pub statuses: Vec<u16>,
    /// What the upstream receives.
    pub up: Up,
    /// Field names (lowercase) that must not reach the upstream, besides hop-by-hop ones.
    pub not_forwarded: Vec<&'static str>,
    /// Byte strings that must never reach the client.
    pub never_to_client: Vec<&'static [u8]>,
    /// Whether the proxy closes the client connection at the end.
    pub closed: bool,
    /// The client's requests are HEAD (responses carry no body).
    pub head_requests: bool,
}

/// A complete, valid request the client slips in after a hostile one: it must never
/// reach the upstream unless the vector says so.
pub const SMUGGLED: &[u8] = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";

/// A second request pipelined after the first: what a leftover of the first response
/// would be taken for.
pub const NEXT: &[u8] = b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n";

/// The RFC 6455 example key, used by every WebSocket handshake of the corpus.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// Its `Sec-WebSocket-Accept`.
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

impl Vector {
    /// Whether the vector is an attack, not a control that must simply work.
    pub fn is_hostile(&self) -> bool {
        self.class != "control"
    }

    /// A vector that expects nothing: no status, no upstream connection, kept open.
    pub(crate) fn new(
        name: &'static str,
        class: &'static str,
        side: Side,
        client: Vec<u8>,
    ) -> Vector {
        Vector {
            name,
            class,
            side,
            client,
            replies: Vec::new(),
            statuses: Vec::new(),
            up: Up::Nothing,
            not_forwarded: Vec::new(),
            never_to_client: Vec::new(),
            closed: false,
            head_requests: false,
        }
    }

    /// The statuses the client gets; an error status last means the proxy closes.
    pub(crate) fn st(mut self, statuses: &[u16]) -> Vector {
        self.statuses = statuses.to_vec();
        self.closed = statuses.last().is_some_and(|&s| s >= 400);
        self
    }

    pub(crate) fn up(mut self, up: Up) -> Vector {
        self.up = up;
        self
    }

    pub(crate) fn replies(mut self, replies: &[Reply]) -> Vector {
        self.replies = replies.to_vec();
        self
    }

    pub(crate) fn hidden(mut self, names: &[&'static str]) -> Vector {
        self.not_forwarded = names.to_vec();
        self
    }

    pub(crate) fn never(mut self, bytes: &[&'static [u8]]) -> Vector {
        self.never_to_client = bytes.to_vec();
        self
    }

    pub(crate) fn closed(mut self, closed: bool) -> Vector {
        self.closed = closed;
        self
    }

    pub(crate) fn head_requests(mut self) -> Vector {
        self.head_requests = true;
        self
    }
}
