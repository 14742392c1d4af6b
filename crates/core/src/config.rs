//! Configuration of the state machine: routes, deadlines, limits and forwarding headers.

use std::time::Duration;

/// Index of a route in [`Config::routes`]; the adapter maps it to an upstream group.
pub type RouteId = usize;

/// Deadlines, named after their nginx equivalents. Defaults are nginx's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    /// Absolute deadline for a whole request head (`client_header_timeout`, 60 s). Not
    /// reset by each byte, so a client trickling a head (slowloris) is cut off with 408.
    pub header: Duration,
    /// Deadline for the upstream connection to be established (`proxy_connect_timeout`, 60 s).
    pub connect: Duration,
    /// Longest silence between two successive reads from the upstream, while a response
    /// is awaited or forwarded and inside a tunnel (`proxy_read_timeout`, 60 s).
    pub read: Duration,
    /// Longest time a write towards a peer may make no progress (`proxy_send_timeout`, 60 s).
    pub send: Duration,
    /// How long a kept-alive client connection may wait for its next request
    /// (`keepalive_timeout`, 75 s).
    pub idle: Duration,
    /// Close a tunnel when neither direction moved for this long (off by default).
    pub tunnel_idle: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header: Duration::from_secs(60),
            connect: Duration::from_secs(60),
            read: Duration::from_secs(60),
            send: Duration::from_secs(60),
            idle: Duration::from_secs(75),
            tunnel_idle: None,
        }
    }
}

/// Size limits on what a peer may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line; longer is `414 URI Too Long`. Default 8 KiB.
    pub max_request_line: usize,
    /// Largest request or response head; larger is `431` (request) or `502` (response).
    /// Default 32 KiB.
    pub max_header_bytes: usize,
    /// Most header fields in one head; more is `431`. Default 100.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8 * 1024,
            max_header_bytes: 32 * 1024,
            max_headers: 100,
        }
    }
}

/// Which forwarding headers the proxy adds to requests towards the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarding {
    /// Append the client address to `X-Forwarded-For` (nginx `$proxy_add_x_forwarded_for`).
    pub x_forwarded_for: bool,
    /// Set `X-Forwarded-Proto` to the scheme the client used.
    pub x_forwarded_proto: bool,
    /// Append an RFC 7239 `Forwarded: for=...;proto=...` element.
    pub forwarded: bool,
    /// Append `Via: 1.1 <this>` when set.
    pub via: Option<String>,
}

impl Default for Forwarding {
    fn default() -> Self {
        Forwarding {
            x_forwarded_for: true,
            x_forwarded_proto: true,
            forwarded: false,
            via: None,
        }
    }
}

/// How a route's WebSocket tunnels are followed frame by frame (RFC 6455 §5.2).
///
/// A tunnel whose protocol is `websocket` is frame-aware when `validate` is on or pings
/// are: the core then reads each frame's header (never its payload) in both directions,
/// so that it can check frames, answer for dead peers and write Close frames of its own
/// between the peers' frames. With `validate` off and no pings it is a plain byte tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocketPolicy {
    /// Check every frame: client frames masked, upstream frames unmasked, no reserved
    /// opcodes, control frames whole and at most 125 bytes, fragments in order, RSV bits
    /// only as a negotiated extension allows. A violation closes both sides with 1002.
    /// Default on.
    pub validate: bool,
    /// Send a side a Ping when nothing has been received from it for this long. Default
    /// off.
    pub ping_interval: Option<Duration>,
    /// After the proxy's Ping, how long a side may send nothing at all before it is
    /// declared dead (the other side gets Close 1001). Default 10 s.
    pub ping_timeout: Duration,
}

impl Default for WebSocketPolicy {
    fn default() -> Self {
        WebSocketPolicy {
            validate: true,
            ping_interval: None,
            ping_timeout: Duration::from_secs(10),
        }
    }
}

/// One route: requests whose path starts with `prefix` go to this route's upstream group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Path prefix; the longest matching prefix wins. `/` matches everything.
    pub prefix: String,
    /// Upgrade protocols this route forwards (compared case-insensitively by name,
    /// ignoring a `/version` suffix). `h2c` is never forwarded, whatever this says.
    pub allow_upgrade: Vec<String>,
    /// Deadlines for requests on this route (`header` and `idle` come from
    /// [`Config::timeouts`], since they run before a route is known).
    pub timeouts: Timeouts,
    /// Largest request body accepted; larger is `413`. `None` means unlimited.
    pub max_body_bytes: Option<u64>,
    /// How this route's WebSocket tunnels are followed.
    pub websocket: WebSocketPolicy,
}

impl Route {
    /// A route for `prefix` with default deadlines that allows WebSocket upgrades.
    pub fn new(prefix: impl Into<String>) -> Self {
        Route {
            prefix: prefix.into(),
            allow_upgrade: vec!["websocket".to_string()],
            timeouts: Timeouts::default(),
            max_body_bytes: None,
            websocket: WebSocketPolicy::default(),
        }
    }
}

/// Everything a [`Connection`](crate::Connection) needs to know; shared by all connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Routes, matched by longest path prefix. A request matching none gets `404`.
    pub routes: Vec<Route>,
    /// Connection-wide deadlines (`header`, `idle`); the rest are per route.
    pub timeouts: Timeouts,
    /// Size limits.
    pub limits: Limits,
    /// Forwarding headers added towards the upstream.
    pub forwarding: Forwarding,
}

impl Default for Config {
    /// One route `/` allowing `websocket`, nginx's default deadlines.
    fn default() -> Self {
        Config {
            routes: vec![Route::new("/")],
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            forwarding: Forwarding::default(),
        }
    }
}

impl Config {
    /// The route whose prefix is the longest one `path` starts with.
    pub fn route_for(&self, path: &[u8]) -> Option<RouteId> {
        self.routes
            .iter()
            .enumerate()
            .filter(|(_, r)| path.starts_with(r.prefix.as_bytes()))
            .max_by_key(|(_, r)| r.prefix.len())
            .map(|(id, _)| id)
    }
}

/// Scheme the client used to reach the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheme {
    /// Plain HTTP.
    #[default]
    Http,
    /// HTTP over TLS (terminated in front of the core).
    Https,
}

impl Scheme {
    /// `"http"` or `"https"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// What the core knows about the client of one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// The client's address, for forwarding headers and logs.
    pub client_addr: Option<core::net::IpAddr>,
    /// The scheme the client used.
    pub scheme: Scheme,
}
