//! The access log: the event sink that turns the core's events into `tracing` records.
//! Finished exchanges and tunnels are access-log lines (target `switchyard::access`,
//! level INFO).

use std::net::SocketAddr;
use std::time::Duration;

use switchyard_core::{Event, Side};

use crate::events::{EventContext, EventSink};

/// Target of access-log records, for filtering (`switchyard::access=info`).
pub const ACCESS_TARGET: &str = "switchyard::access";

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The access log, the default [`EventSink`]: every finished request and tunnel is one
/// `tracing` record at INFO with target [`ACCESS_TARGET`] (client, method, path, status,
/// bytes each way, duration, and for tunnels the route, protocol and close reason);
/// protocol errors of clients are DEBUG, of upstreams WARN; the other events DEBUG.
#[derive(Debug, Clone, Copy, Default)]
pub struct AccessLog;

impl EventSink for AccessLog {
    fn event(&self, context: &EventContext, event: &Event) {
        record(context.client, event);
    }
}

fn record(client: SocketAddr, event: &Event) {
    match event {
        Event::Exchange(record) => tracing::info!(
            target: ACCESS_TARGET,
            %client,
            method = %record.method,
            path = %record.target,
            status = record.status,
            bytes_in = record.bytes_from_client,
            bytes_out = record.bytes_to_client,
            duration_ms = millis(record.duration),
            close = record.close.map_or("kept_alive", |reason| reason.as_str()),
            "request"
        ),
        Event::TunnelClosed(record) => tracing::info!(
            target: ACCESS_TARGET,
            %client,
            path = %record.target,
            route = record.route,
            protocol = %record.protocol,
            bytes_in = record.bytes_client_to_upstream,
            bytes_out = record.bytes_upstream_to_client,
            duration_ms = millis(record.duration),
            reason = record.reason.as_str(),
            "tunnel"
        ),
        Event::Rejected(error) => match error.side {
            Side::Client => tracing::debug!(
                %client,
                status = error.status_hint(),
                kind = ?error.kind,
                "client protocol error"
            ),
            Side::Upstream => tracing::warn!(
                %client,
                status = error.status_hint(),
                kind = ?error.kind,
                "upstream protocol error"
            ),
        },
        Event::Request {
            method,
            target,
            route,
            upgrade,
        } => {
            tracing::debug!(%client, %method, path = %target, route, upgrade = upgrade.as_deref(), "request head")
        }
        Event::Response { status } => tracing::debug!(%client, status, "response head"),
        Event::TunnelOpened { route, protocol } => {
            tracing::debug!(%client, route, %protocol, "tunnel opened")
        }
        Event::Closed { reason } => {
            tracing::debug!(%client, reason = reason.as_str(), "connection closed")
        }
        other => tracing::debug!(%client, ?other, "event"),
    }
}
