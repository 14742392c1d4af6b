//! docs/ARCHITECTURE.md §Protocol rules, "Deadlines": every deadline comes from the right
//! place. `header` and `idle` are connection-wide ([`Config::timeouts`]: they run before a
//! request picks a route); every other one comes from the route of the request, or of the
//! tunnel, it bounds.

mod common;

use std::time::Duration;

use common::*;
use switchyard_core::sim::Sim;
use switchyard_core::{CloseReason, Config, Input, Route, Side, StateKind};

const SEC: Duration = Duration::from_secs(1);

#[test]
fn a_stalled_write_in_a_tunnel_gets_the_send_timeout_of_the_tunnel_route() {
    // Route 0 `/` has a short send_timeout, route 1 `/chat/` a long one.
    let mut config = Config::default();
    config.routes[0].timeouts.send = SEC;
    let mut chat = Route::new("/chat/");
    chat.timeouts.send = 300 * SEC;
    config.routes.push(chat);
    let mut sim = sim_with(config);
    sim.client_sends(ws_request("/chat/room").as_bytes());
    sim.upstream_sends(ws_101().as_bytes());
    assert_eq!(sim.state(), StateKind::Tunnel);

    // The client stops reading; the upstream keeps the tunnel alive by sending.
    sim.stall_writes(Side::Client);
    sim.upstream_sends(b"\x81\x05hello");
    sim.advance(2 * SEC);
    assert_eq!(
        sim.state(),
        StateKind::Tunnel,
        "closed with {:?}",
        closed_with(&sim)
    );
    assert_eq!(closed_with(&sim), None);
}

/// Three routes whose every deadline differs from the other routes' and from the
/// connection-wide ones, so that a value taken from the wrong place fires at the wrong
/// instant. The tests use `/chat/`, route 1: neither the first route nor the last.
///
/// Within a route, `send` < `tunnel_idle` < `read`, so that each can be made to fire first.
fn three_routes() -> Config {
    let mut config = Config::default();
    config.timeouts.header = 7 * SEC;
    config.timeouts.idle = 9 * SEC;
    config.timeouts.connect = 11 * SEC;
    config.timeouts.read = 13 * SEC;
    config.timeouts.send = 12 * SEC;
    config.timeouts.tunnel_idle = Some(12 * SEC);
    set_all(&mut config.routes[0], 100);
    for (prefix, base) in [("/chat/", 200), ("/static/", 300)] {
        let mut route = Route::new(prefix);
        set_all(&mut route, base);
        config.routes.push(route);
    }
    config
}

fn set_all(route: &mut Route, base: u64) {
    let t = &mut route.timeouts;
    t.send = Duration::from_secs(base + 1);
    t.tunnel_idle = Some(Duration::from_secs(base + 2));
    t.read = Duration::from_secs(base + 3);
    t.connect = Duration::from_secs(base + 4);
    t.header = Duration::from_secs(base + 5);
    t.idle = Duration::from_secs(base + 6);
}

/// `/chat/`'s value of a deadline (see [`three_routes`]).
fn chat(offset: u64) -> Duration {
    Duration::from_secs(200 + offset)
}

const CHAT_SEND: u64 = 1;
const CHAT_TUNNEL_IDLE: u64 = 2;
const CHAT_READ: u64 = 3;
const CHAT_CONNECT: u64 = 4;

/// Checks the connection is still open one millisecond before `after` from now, then
/// that it closed at `after` exactly, with `reason`.
fn closes_exactly_after(sim: &mut Sim, after: Duration, reason: CloseReason) {
    sim.advance(after - Duration::from_millis(1));
    assert!(
        !sim.is_closed(),
        "closed before {after:?}, with {:?}",
        closed_with(sim)
    );
    sim.advance(Duration::from_millis(1));
    assert!(sim.is_closed(), "still open after {after:?}");
    assert_eq!(closed_with(sim), Some(reason));
}

/// A connection that has finished one exchange on `/chat/` and is kept alive.
fn after_a_chat_exchange() -> Sim {
    let mut sim = sim_with(three_routes());
    sim.client_sends(get("/chat/history").as_bytes());
    sim.upstream_sends(ok("[]").as_bytes());
    assert_eq!(sim.state(), StateKind::ReadingHead);
    sim
}

fn chat_tunnel() -> Sim {
    let mut sim = sim_with(three_routes());
    sim.client_sends(ws_request("/chat/room").as_bytes());
    sim.upstream_sends(ws_101().as_bytes());
    assert_eq!(sim.state(), StateKind::Tunnel);
    sim
}

#[test]
fn header_timeout_is_connection_wide_for_the_first_request() {
    let mut sim = sim_with(three_routes());
    sim.client_sends(b"GET /chat/room HTTP/1.1\r\nHost: a\r\n");
    closes_exactly_after(&mut sim, 7 * SEC, CloseReason::HeaderTimeout);
    assert_eq!(status(&sim), 408);
}

#[test]
fn header_timeout_is_connection_wide_after_an_exchange_on_a_route() {
    let mut sim = after_a_chat_exchange();
    sim.advance(SEC);
    sim.client_sends(b"GET /chat/room HTTP/1.1\r\nHost: a\r\n");
    closes_exactly_after(&mut sim, 7 * SEC, CloseReason::HeaderTimeout);
    assert_eq!(statuses(&sim.client_received), vec![200, 408]);
}

#[test]
fn idle_timeout_is_connection_wide_after_an_exchange_on_a_route() {
    let mut sim = after_a_chat_exchange();
    closes_exactly_after(&mut sim, 9 * SEC, CloseReason::IdleTimeout);
}

#[test]
fn connect_timeout_comes_from_the_request_route() {
    let mut sim = sim_with(three_routes());
    sim.connect = switchyard_core::sim::ConnectBehaviour::Hang;
    sim.client_sends(get("/chat/history").as_bytes());
    closes_exactly_after(&mut sim, chat(CHAT_CONNECT), CloseReason::ConnectTimeout);
    assert_eq!(status(&sim), 504);
}

#[test]
fn read_timeout_comes_from_the_request_route() {
    let mut sim = sim_with(three_routes());
    sim.client_sends(get("/chat/history").as_bytes());
    closes_exactly_after(&mut sim, chat(CHAT_READ), CloseReason::ReadTimeout);
    assert_eq!(status(&sim), 504);
}

#[test]
fn each_request_on_a_kept_alive_connection_takes_the_read_timeout_of_its_own_route() {
    let mut sim = after_a_chat_exchange();
    sim.client_sends(get("/static/app.js").as_bytes());
    closes_exactly_after(&mut sim, Duration::from_secs(303), CloseReason::ReadTimeout);
}

#[test]
fn send_timeout_towards_the_upstream_comes_from_the_request_route() {
    let mut sim = sim_with(three_routes());
    sim.stall_writes(Side::Upstream);
    sim.client_sends(get("/chat/history").as_bytes());
    closes_exactly_after(&mut sim, chat(CHAT_SEND), CloseReason::SendTimeout);
    assert_eq!(status(&sim), 504);
}

#[test]
fn send_timeout_towards_the_client_comes_from_the_request_route() {
    let mut sim = sim_with(three_routes());
    sim.client_sends(get("/chat/history").as_bytes());
    sim.stall_writes(Side::Client);
    sim.upstream_sends(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    closes_exactly_after(&mut sim, chat(CHAT_SEND), CloseReason::SendTimeout);
    assert_eq!(
        statuses(&sim.client_received),
        vec![200],
        "no 504 after a 200"
    );
}

#[test]
fn tunnel_read_timeout_comes_from_the_tunnel_route() {
    let mut sim = chat_tunnel();
    // Client traffic keeps tunnel_idle away; only the upstream's silence counts.
    sim.advance(100 * SEC);
    sim.client_sends(b"\x81\x82abcdxy");
    closes_exactly_after(
        &mut sim,
        chat(CHAT_READ) - 100 * SEC,
        CloseReason::ReadTimeout,
    );
}

#[test]
fn tunnel_send_timeout_towards_the_client_comes_from_the_tunnel_route() {
    let mut sim = chat_tunnel();
    sim.stall_writes(Side::Client);
    sim.upstream_sends(b"\x81\x05hello");
    closes_exactly_after(&mut sim, chat(CHAT_SEND), CloseReason::SendTimeout);
}

#[test]
fn tunnel_send_timeout_towards_the_upstream_comes_from_the_tunnel_route() {
    let mut sim = chat_tunnel();
    sim.stall_writes(Side::Upstream);
    sim.client_sends(b"\x81\x82abcdxy");
    closes_exactly_after(&mut sim, chat(CHAT_SEND), CloseReason::SendTimeout);
}

#[test]
fn tunnel_idle_timeout_comes_from_the_tunnel_route() {
    let mut sim = chat_tunnel();
    closes_exactly_after(
        &mut sim,
        chat(CHAT_TUNNEL_IDLE),
        CloseReason::TunnelIdleTimeout,
    );
}

/// A `/chat/` tunnel that is a byte tunnel, so a failed write ends it at once (a
/// frame-aware one first sends the other side its Close 1011).
fn chat_byte_tunnel() -> Sim {
    let mut config = three_routes();
    config.routes[1].websocket.validate = false;
    let mut sim = sim_with(config);
    sim.client_sends(ws_request("/chat/room").as_bytes());
    sim.upstream_sends(ws_101().as_bytes());
    assert_eq!(sim.state(), StateKind::Tunnel);
    sim
}

#[test]
fn the_final_flush_after_close_is_bounded_by_the_tunnel_route() {
    let mut sim = chat_byte_tunnel();
    sim.stall_writes(Side::Client);
    let queued_at = sim.now();
    sim.upstream_sends(b"\x81\x05hello");
    // The upstream's socket fails: the tunnel closes with the write to the client
    // still pending, and the driver may go on flushing it for `/chat/`'s send timeout.
    sim.input(Input::WriteFailed { to: Side::Upstream })
        .unwrap();
    assert!(sim.is_closed());
    assert_eq!(
        sim.connection().flush_deadline(),
        Some(queued_at + chat(CHAT_SEND))
    );
}

#[test]
fn nothing_pending_at_close_leaves_no_flush_deadline() {
    let mut sim = chat_byte_tunnel();
    sim.input(Input::WriteFailed { to: Side::Upstream })
        .unwrap();
    assert!(sim.is_closed());
    assert_eq!(sim.connection().flush_deadline(), None);
}
