//! docs/ARCHITECTURE.md §Protocol rules, "Deadlines": every deadline comes from the right
//! place. `header` and `idle` are connection-wide ([`Config::timeouts`]: they run before a
//! request picks a route); every other one comes from the route of the request, or of the
//! tunnel, it bounds.

mod common;

use std::time::Duration;

use common::*;
use switchyard_core::sim::Sim;
use switchyard_core::{CloseReason, Config, Route, Side, StateKind};

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
