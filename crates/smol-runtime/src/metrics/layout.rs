//! Where each count lives in a worker's block of counters: every series's label values
//! are known from the configuration (routes, their upgrade protocols, upstream groups
//! and servers), so each series is one slot at a fixed index, and counting an event is
//! a few additions at indexes computed without allocating. A reload extends the layout:
//! labels are added, never moved or removed.

use std::net::SocketAddr;
use std::time::Duration;

use switchyard_core::{CloseReason, RouteId, Side};

use crate::ServerConfig;

/// Label values of `code` in `switchyard_http_requests_total`: the status class, or
/// `none` for an exchange that ended before any response was sent (the client left).
pub(super) const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

/// Label value of `route` for exchanges answered before a route was chosen (a request
/// the proxy refused, a client that sent nothing usable). No route prefix can be it:
/// prefixes start with `/`.
pub(super) const UNROUTED: &str = "none";

/// Label value of `protocol` for an upgrade protocol that none of the route's
/// `allow_upgrade` names (the core forwards only those, so this stays at zero unless
/// the configuration and the core disagree).
pub(super) const OTHER: &str = "other";

/// Upper bounds (µs) of `switchyard_http_request_duration_seconds`: Prometheus's
/// default buckets, 5 ms to 10 s.
pub(super) const REQUEST_BOUNDS: [u64; 11] = [
    5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000,
];

/// Upper bounds (µs) of `switchyard_tunnel_duration_seconds`: tunnels live from a second
/// to days, so 1 s to 24 h.
pub(super) const TUNNEL_BOUNDS: [u64; 11] = [
    1_000_000,
    10_000_000,
    60_000_000,
    300_000_000,
    900_000_000,
    1_800_000_000,
    3_600_000_000,
    7_200_000_000,
    14_400_000_000,
    43_200_000_000,
    86_400_000_000,
];

/// Every close reason, in the order of their slots; one more slot (`other`) takes a
/// reason added to the core later.
pub(super) const CLOSE_REASONS: [CloseReason; 16] = [
    CloseReason::ClientClosed,
    CloseReason::UpstreamClosed,
    CloseReason::BothClosed,
    CloseReason::NotKeptAlive,
    CloseReason::HeaderTimeout,
    CloseReason::IdleTimeout,
    CloseReason::ConnectTimeout,
    CloseReason::ConnectFailed,
    CloseReason::ReadTimeout,
    CloseReason::SendTimeout,
    CloseReason::TunnelIdleTimeout,
    CloseReason::ProtocolError,
    CloseReason::Shutdown,
    CloseReason::InternalError,
    CloseReason::ClientUnresponsive,
    CloseReason::UpstreamUnresponsive,
];

/// Label values of `direction` (tunnel bytes, WebSocket messages) and of `side` (dead
/// peers), in slot order.
pub(super) const DIRECTIONS: [&str; 2] = ["client_to_upstream", "upstream_to_client"];
/// See [`DIRECTIONS`].
pub(super) const SIDES: [&str; 2] = ["client", "upstream"];

/// Label values of `rule` in `switchyard_ws_violations_total`: every
/// [`Violation::rule`](switchyard_core::websocket::Violation::rule) of the core, in slot
/// order; one more slot (`other`) takes a rule added to the core later.
pub(super) const VIOLATION_RULES: [&str; 10] = [
    "client_frame_unmasked",
    "upstream_frame_masked",
    "reserved_opcode",
    "reserved_bits",
    "control_frame_too_long",
    "control_frame_fragmented",
    "continuation_without_message",
    "data_frame_inside_message",
    "length_top_bit_set",
    "close_code_truncated",
];

/// The slot of `rule` among [`VIOLATION_RULES`] (and `other`).
pub(super) fn rule_slot(rule: &str) -> usize {
    VIOLATION_RULES
        .iter()
        .position(|&known| known == rule)
        .unwrap_or(VIOLATION_RULES.len())
}

/// The label value of a rule slot.
pub(super) fn rule_label(slot: usize) -> &'static str {
    VIOLATION_RULES.get(slot).copied().unwrap_or(OTHER)
}

/// Statuses of `switchyard_rejected_requests_total` with a slot each (the core's status
/// hints are all among them); one more slot (`other`) takes anything else.
pub(super) const REJECTED_STATUSES: std::ops::RangeInclusive<u16> = 400..=599;

// Offsets within a route's slots.
const REQUESTS: usize = 0;
const REQUEST_HISTOGRAM: usize = REQUESTS + STATUS_CLASSES.len();
const BYTES: usize = REQUEST_HISTOGRAM + histogram_slots(&REQUEST_BOUNDS);
const MESSAGES: usize = BYTES + DIRECTIONS.len();
const VIOLATIONS: usize = MESSAGES + DIRECTIONS.len();
/// A side's violation slots: one per rule, and `other`.
const RULE_STRIDE: usize = VIOLATION_RULES.len() + 1;
const TUNNELS: usize = VIOLATIONS + SIDES.len() * RULE_STRIDE;
/// A protocol's slots: tunnels opened, then tunnels closed by reason (and `other`).
const TUNNEL_STRIDE: usize = 1 + CLOSE_REASONS.len() + 1;

/// A histogram's slots: one per bound, one above the last bound, and the sum in µs.
pub(super) const fn histogram_slots(bounds: &[u64]) -> usize {
    bounds.len() + 2
}

/// The slot of `duration` among `bounds` (Prometheus's `le`: a bound includes itself).
pub(super) fn bucket(bounds: &[u64], duration: Duration) -> usize {
    let micros = micros(duration);
    bounds
        .iter()
        .position(|&bound| micros <= bound)
        .unwrap_or(bounds.len())
}

/// Whole microseconds, saturating (584 000 years fit).
pub(super) fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// The slot of a status in [`STATUS_CLASSES`].
pub(super) fn status_class(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100) - 1,
        _ => STATUS_CLASSES.len() - 1,
    }
}

/// The slot of `reason` in a protocol's close counts ([`CLOSE_REASONS`], then `other`).
pub(super) fn reason_slot(reason: CloseReason) -> usize {
    CLOSE_REASONS
        .iter()
        .position(|&known| known == reason)
        .unwrap_or(CLOSE_REASONS.len())
}

/// The label value of a reason slot.
pub(super) fn reason_label(slot: usize) -> &'static str {
    CLOSE_REASONS
        .get(slot)
        .map_or(OTHER, |reason| reason.as_str())
}

/// An upgrade protocol's name without its `/version`, as the core compares them.
fn protocol_name(protocol: &str) -> &str {
    protocol.split('/').next().unwrap_or(protocol)
}

/// One `route` label value and where its slots begin.
#[derive(Debug, Clone)]
pub(super) struct RouteLabels {
    /// The route's prefix ([`UNROUTED`] for exchanges no route took).
    pub(super) prefix: String,
    /// Its upgrade protocols, by name (no version), each once, with the first slot of
    /// each one's tunnel counts; [`OTHER`] follows them. A reload that allows a route
    /// another protocol appends it, with slots of its own.
    pub(super) protocols: Vec<(String, usize)>,
    base: usize,
    /// The first slot of the [`OTHER`] protocol's tunnel counts.
    other: usize,
}

impl RouteLabels {
    pub(super) fn requests(&self, class: usize) -> usize {
        self.base + REQUESTS + class
    }

    pub(super) fn request_histogram(&self) -> usize {
        self.base + REQUEST_HISTOGRAM
    }

    pub(super) fn bytes(&self, direction: usize) -> usize {
        self.base + BYTES + direction
    }

    pub(super) fn messages(&self, direction: usize) -> usize {
        self.base + MESSAGES + direction
    }

    /// WebSocket violations of `side` (0: client, 1: upstream) against the rule in slot
    /// `rule`.
    pub(super) fn violations(&self, side: usize, rule: usize) -> usize {
        self.base + VIOLATIONS + side * RULE_STRIDE + rule
    }

    /// The first slot of the protocol in slot `protocol` (its tunnels opened); the
    /// reasons' slots follow (see [`RouteLabels::closed`]).
    pub(super) fn opened(&self, protocol: usize) -> usize {
        self.protocols
            .get(protocol)
            .map_or(self.other, |&(_, base)| base)
    }

    /// Tunnels of protocol slot `protocol` closed for the reason in slot `reason`.
    pub(super) fn closed(&self, protocol: usize, reason: usize) -> usize {
        self.opened(protocol) + 1 + reason
    }

    /// The protocol slot of `protocol` (its name matched without case), or the last one,
    /// [`OTHER`].
    pub(super) fn protocol_slot(&self, protocol: &str) -> usize {
        let name = protocol_name(protocol);
        self.protocols
            .iter()
            .position(|(known, _)| known.eq_ignore_ascii_case(name))
            .unwrap_or(self.protocols.len())
    }

    /// Protocol slots, `other` included.
    pub(super) fn protocol_slots(&self) -> usize {
        self.protocols.len() + 1
    }

    /// The label value of protocol slot `slot`.
    pub(super) fn protocol_label(&self, slot: usize) -> &str {
        self.protocols
            .get(slot)
            .map_or(OTHER, |(name, _)| name.as_str())
    }
}

/// An upstream group's `upstream` label, its servers' pool slots, and its connect-error
/// slot per server.
#[derive(Debug, Clone)]
pub(super) struct GroupLabels {
    pub(super) name: String,
    /// `(server, connect-error slot)`, each server once.
    pub(super) servers: Vec<(SocketAddr, usize)>,
    /// Indexes into [`Layout::servers`] (the pool's idle gauges), each once.
    pub(super) pooled: Vec<usize>,
}

/// Every series's slot, for the configurations of every generation so far: a reload
/// extends the layout of the generation before (labels are only ever added, and keep
/// their slots), so the counts of every generation add up slot by slot.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    /// One per distinct route prefix, in the order first configured.
    pub(super) routes: Vec<RouteLabels>,
    /// Exchanges answered before a route was chosen.
    pub(super) unrouted: RouteLabels,
    /// Route id of this generation → index in `routes` (a prefix given twice shares the
    /// first one's).
    route_of: Vec<usize>,
    tunnel_histogram: usize,
    dead_peers: usize,
    rejected: usize,
    /// One per distinct group name (a name given twice shares the first one's).
    pub(super) groups: Vec<GroupLabels>,
    /// Every distinct upstream server, with the first of its two slots: its idle
    /// gauge, then its connections in use.
    pub(super) servers: Vec<(SocketAddr, usize)>,
    /// Slots in a worker's block.
    pub(super) len: usize,
}

/// The distinct protocol names of an `allow_upgrade` list, in order.
fn protocol_names(allowed: &[String]) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for name in allowed.iter().map(|p| protocol_name(p)) {
        if !names.iter().any(|known| known.eq_ignore_ascii_case(name)) {
            names.push(name);
        }
    }
    names
}

impl Layout {
    pub(super) fn new(config: &ServerConfig) -> Layout {
        let mut len = 0;
        let mut take = |slots: usize| {
            len += slots;
            len - slots
        };
        let unrouted = RouteLabels {
            prefix: UNROUTED.to_string(),
            protocols: Vec::new(),
            base: take(TUNNELS),
            other: take(TUNNEL_STRIDE),
        };
        let tunnel_histogram = take(histogram_slots(&TUNNEL_BOUNDS));
        let dead_peers = take(SIDES.len());
        let rejected = take(REJECTED_STATUSES.len() + 1);
        let empty = Layout {
            routes: Vec::new(),
            unrouted,
            route_of: Vec::new(),
            tunnel_histogram,
            dead_peers,
            rejected,
            groups: Vec::new(),
            servers: Vec::new(),
            len,
        };
        empty.extended(config)
    }

    /// This layout with the labels of `config` that it lacks added (new slots at the
    /// end), and `config`'s routes mapped to their labels.
    pub(super) fn extended(&self, config: &ServerConfig) -> Layout {
        let mut layout = self.clone();
        let mut take = |slots: usize| {
            layout.len += slots;
            layout.len - slots
        };
        layout.route_of = Vec::with_capacity(config.core.routes.len());
        for route in &config.core.routes {
            let index = match layout.routes.iter().position(|r| r.prefix == route.prefix) {
                Some(known) => known,
                None => {
                    layout.routes.push(RouteLabels {
                        prefix: route.prefix.clone(),
                        protocols: Vec::new(),
                        base: take(TUNNELS),
                        other: take(TUNNEL_STRIDE),
                    });
                    layout.routes.len() - 1
                }
            };
            let labels = &mut layout.routes[index];
            for name in protocol_names(&route.allow_upgrade) {
                if !labels
                    .protocols
                    .iter()
                    .any(|(known, _)| known.eq_ignore_ascii_case(name))
                {
                    labels
                        .protocols
                        .push((name.to_string(), take(TUNNEL_STRIDE)));
                }
            }
            layout.route_of.push(index);
        }
        for group in &config.upstreams {
            let at = match layout.groups.iter().position(|g| g.name == group.name) {
                Some(at) => at,
                None => {
                    layout.groups.push(GroupLabels {
                        name: group.name.clone(),
                        servers: Vec::new(),
                        pooled: Vec::new(),
                    });
                    layout.groups.len() - 1
                }
            };
            for &server in &group.servers {
                let pooled = match layout.servers.iter().position(|&(s, _)| s == server) {
                    Some(index) => index,
                    None => {
                        layout.servers.push((server, take(2)));
                        layout.servers.len() - 1
                    }
                };
                let labels = &mut layout.groups[at];
                if !labels.pooled.contains(&pooled) {
                    labels.pooled.push(pooled);
                }
                if !labels.servers.iter().any(|&(s, _)| s == server) {
                    labels.servers.push((server, take(1)));
                }
            }
        }
        layout
    }

    /// The labels of route `route` of this generation (an unknown id, or `None`, is
    /// [`UNROUTED`]).
    pub(super) fn route(&self, route: Option<RouteId>) -> &RouteLabels {
        route
            .and_then(|route| self.route_of.get(route))
            .map_or(&self.unrouted, |&index| &self.routes[index])
    }

    pub(super) fn tunnel_histogram(&self) -> usize {
        self.tunnel_histogram
    }

    pub(super) fn dead_peer(&self, side: Side) -> usize {
        self.dead_peers
            + match side {
                Side::Client => 0,
                Side::Upstream => 1,
            }
    }

    /// The slot of a rejection answered with `status` (slot `REJECTED_STATUSES.len()`
    /// past the first is `other`).
    pub(super) fn rejected(&self, status: u16) -> usize {
        let offset = if REJECTED_STATUSES.contains(&status) {
            usize::from(status - REJECTED_STATUSES.start())
        } else {
            REJECTED_STATUSES.len()
        };
        self.rejected + offset
    }

    /// The connect-error slot of `server` in the group named `group`.
    pub(super) fn connect_error(&self, group: &str, server: SocketAddr) -> Option<usize> {
        let group = self.groups.iter().find(|g| g.name == group)?;
        let &(_, slot) = group.servers.iter().find(|&&(s, _)| s == server)?;
        Some(slot)
    }

    /// The slot of server index `server`'s idle gauge.
    pub(super) fn pool_idle(&self, server: usize) -> usize {
        self.servers[server].1
    }

    /// The slot of server index `server`'s connections in use (a gauge each worker moves
    /// up and down by one).
    pub(super) fn upstream_open(&self, server: usize) -> usize {
        self.servers[server].1 + 1
    }

    /// The index of `server` in [`Layout::servers`].
    pub(super) fn server_index(&self, server: SocketAddr) -> Option<usize> {
        self.servers.iter().position(|&(s, _)| s == server)
    }
}
