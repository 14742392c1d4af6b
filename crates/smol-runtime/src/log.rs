//! The access log: the event sink that turns the core's events into `tracing` records.
//! Finished exchanges and tunnels are access-log lines (target `switchyard::access`,
//! level INFO).

use std::net::SocketAddr;
use std::time::Duration;

use switchyard_core::websocket::FrameStats;
use switchyard_core::{Event, Side, WebSocketRecord};

use crate::events::{EventContext, EventSink};

/// Target of access-log records, for filtering (`switchyard::access=info`).
pub const ACCESS_TARGET: &str = "switchyard::access";

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A ping's round trip in milliseconds, to the microsecond (a loopback one is well
/// under a millisecond).
fn round_trip_ms(rtt: Duration) -> f64 {
    u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX) as f64 / 1000.0
}

/// The close code a side sent, as RFC 6455 §7.1.5 names it: 1005 for a Close frame
/// without a code, 1006 for no Close frame at all.
fn close_code(stats: &FrameStats) -> u16 {
    match (stats.close_frames, stats.close_code) {
        (0, _) => 1006,
        (_, code) => code.unwrap_or(1005),
    }
}

/// The access log, the default [`EventSink`]: every finished request and tunnel is one
/// `tracing` record at INFO with target [`ACCESS_TARGET`] (client, method, path, status,
/// bytes each way, duration, and for tunnels the route, protocol and close reason);
/// protocol errors of clients are DEBUG, of upstreams WARN; the other events DEBUG.
///
/// A frame-aware WebSocket tunnel's line also has, from its
/// [`WebSocketRecord`]: `ws_messages_in` / `ws_messages_out` and `ws_frames_in` /
/// `ws_frames_out` (from the client / from the upstream), `ws_close_client` and
/// `ws_close_upstream` (the code each side's Close frame carried: 1005 without a code,
/// 1006 when it sent none), `ws_pings_sent`, `ws_pongs_received`, and when a Ping of
/// the proxy's was answered `ws_rtt_ms` and `ws_min_rtt_ms` (the last and the shortest
/// round trip, in milliseconds).
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
        Event::TunnelClosed(record) => {
            // Absent fields (`None`) are left out of the line: a byte tunnel's line is
            // as it always was.
            let ws = record.websocket.as_ref();
            let rtt = |pick: fn(&WebSocketRecord) -> Option<Duration>| {
                ws.and_then(pick).map(round_trip_ms)
            };
            tracing::info!(
                target: ACCESS_TARGET,
                %client,
                path = %record.target,
                route = record.route,
                protocol = %record.protocol,
                bytes_in = record.bytes_client_to_upstream,
                bytes_out = record.bytes_upstream_to_client,
                duration_ms = millis(record.duration),
                reason = record.reason.as_str(),
                ws_messages_in = ws.map(|ws| ws.client.messages),
                ws_messages_out = ws.map(|ws| ws.upstream.messages),
                ws_frames_in = ws.map(|ws| ws.client.frames),
                ws_frames_out = ws.map(|ws| ws.upstream.frames),
                ws_close_client = ws.map(|ws| close_code(&ws.client)),
                ws_close_upstream = ws.map(|ws| close_code(&ws.upstream)),
                ws_pings_sent = ws.map(|ws| ws.pings_sent),
                ws_pongs_received = ws.map(|ws| ws.pongs_received),
                ws_rtt_ms = rtt(|ws| ws.last_ping_rtt),
                ws_min_rtt_ms = rtt(|ws| ws.min_ping_rtt),
                "tunnel"
            )
        }
        Event::WebSocketViolation { side, rule } => match side {
            Side::Client => tracing::debug!(%client, rule, "client WebSocket protocol error"),
            Side::Upstream => tracing::warn!(%client, rule, "upstream WebSocket protocol error"),
        },
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use switchyard_core::{CloseReason, TunnelRecord};

    /// The access-log line `event` makes, as the CLI's formatter writes it.
    fn line_of(event: &Event) -> String {
        #[derive(Clone, Default)]
        struct Capture(Arc<Mutex<Vec<u8>>>);
        impl Write for Capture {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().write(bytes)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let capture = Capture::default();
        let writer = capture.clone();
        // No colours: the workspace's binary turns on tracing-subscriber's `ansi` feature.
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let client = "127.0.0.1:4000".parse().unwrap();
        tracing::subscriber::with_default(subscriber, || record(client, event));
        let bytes = capture.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    fn tunnel(websocket: Option<WebSocketRecord>, reason: CloseReason) -> Event {
        Event::TunnelClosed(Box::new(TunnelRecord {
            route: 0,
            target: "/chat".into(),
            protocol: "websocket".into(),
            bytes_client_to_upstream: 120,
            bytes_upstream_to_client: 340,
            duration: Duration::from_millis(1500),
            reason,
            websocket,
        }))
    }

    #[test]
    fn a_frame_aware_tunnel_line_shows_its_websocket_accounting() {
        let client = FrameStats {
            frames: 7,
            messages: 3,
            close_frames: 1,
            close_code: Some(1000),
            ..FrameStats::default()
        };
        let upstream = FrameStats {
            frames: 5,
            messages: 4,
            ..FrameStats::default()
        };
        let record = WebSocketRecord {
            client,
            upstream,
            pings_sent: 2,
            pongs_received: 1,
            last_ping_rtt: Some(Duration::from_micros(1250)),
            min_ping_rtt: Some(Duration::from_micros(310)),
        };
        let line = line_of(&tunnel(Some(record), CloseReason::UpstreamUnresponsive));
        for field in [
            "path=/chat",
            "protocol=websocket",
            "bytes_in=120",
            "bytes_out=340",
            "duration_ms=1500",
            "reason=\"upstream_unresponsive\"",
            "ws_messages_in=3",
            "ws_messages_out=4",
            "ws_frames_in=7",
            "ws_frames_out=5",
            "ws_close_client=1000",
            "ws_close_upstream=1006",
            "ws_pings_sent=2",
            "ws_pongs_received=1",
            "ws_rtt_ms=1.25",
            "ws_min_rtt_ms=0.31",
        ] {
            assert!(line.contains(field), "{field} missing in {line}");
        }
    }

    #[test]
    fn a_byte_tunnel_line_has_no_websocket_fields() {
        let line = line_of(&tunnel(None, CloseReason::BothClosed));
        assert!(line.contains("reason=\"both_closed\""), "{line}");
        assert!(line.contains("bytes_in=120"), "{line}");
        assert!(!line.contains("ws_"), "{line}");
    }

    #[test]
    fn close_codes_are_named_as_rfc_6455_does() {
        let sent = |close_frames, close_code| FrameStats {
            close_frames,
            close_code,
            ..FrameStats::default()
        };
        assert_eq!(close_code(&sent(1, Some(4000))), 4000);
        assert_eq!(close_code(&sent(1, None)), 1005, "a Close without a code");
        assert_eq!(close_code(&sent(0, None)), 1006, "no Close at all");
    }
}
