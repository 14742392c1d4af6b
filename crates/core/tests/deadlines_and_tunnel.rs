//! docs/ARCHITECTURE.md §Protocol rules, "Deadlines" and "Tunnels", on the virtual clock:
//! one test per rule. The tunnels here are byte tunnels (frame-aware WebSocket tunnels
//! are tested in `websocket_tunnel_*.rs`).

mod common;

use std::time::{Duration, Instant};

use common::*;
use switchyard_core::sim::{ConnectBehaviour, Sim};
use switchyard_core::{
    CloseReason, Config, Connection, Input, Misuse, Output, PeerInfo, Side, StateKind,
};

const SEC: Duration = Duration::from_secs(1);

fn tunnel() -> Sim {
    let mut sim = byte_sim();
    sim.client_sends(ws_request("/").as_bytes());
    sim.upstream_sends(ws_101().as_bytes());
    assert_eq!(sim.state(), StateKind::Tunnel);
    sim
}

#[test]
fn header_timeout_is_absolute_for_the_whole_head() {
    let mut sim = sim();
    // One byte a second never resets the deadline (slowloris).
    for b in b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
        sim.client_sends(&[*b]);
        sim.advance(SEC);
        if sim.is_closed() {
            break;
        }
    }
    assert_eq!(status(&sim), 408);
    assert_eq!(closed_with(&sim), Some(CloseReason::HeaderTimeout));
}

#[test]
fn header_timeout_closes_a_silent_connection_without_a_response() {
    let mut sim = sim();
    sim.advance(59 * SEC);
    assert!(!sim.is_closed());
    sim.advance(SEC);
    assert!(sim.is_closed());
    assert!(sim.client_received.is_empty());
}

#[test]
fn idle_timeout_closes_a_kept_alive_client() {
    let mut sim = sim();
    sim.client_sends(get("/").as_bytes());
    sim.upstream_sends(ok("x").as_bytes());
    sim.advance(74 * SEC);
    assert!(!sim.is_closed());
    sim.advance(SEC);
    assert_eq!(closed_with(&sim), Some(CloseReason::IdleTimeout));
}

#[test]
fn a_new_request_on_a_kept_alive_connection_gets_a_fresh_header_deadline() {
    let mut sim = sim();
    sim.client_sends(get("/").as_bytes());
    sim.upstream_sends(ok("x").as_bytes());
    sim.advance(70 * SEC);
    sim.client_sends(b"GET / HT");
    sim.advance(59 * SEC);
    assert!(!sim.is_closed());
    sim.advance(SEC);
    assert_eq!(status_after_first(&sim), 408);
}

fn status_after_first(sim: &Sim) -> u16 {
    *statuses(&sim.client_received).last().unwrap()
}

#[test]
fn connect_timeout_is_504() {
    let mut sim = sim();
    sim.connect = ConnectBehaviour::Hang;
    sim.client_sends(get("/").as_bytes());
    sim.advance(60 * SEC);
    assert_eq!(status(&sim), 504);
    assert_eq!(closed_with(&sim), Some(CloseReason::ConnectTimeout));
}

#[test]
fn read_timeout_is_504_and_is_reset_by_every_read() {
    let mut config = Config::default();
    config.routes[0].timeouts.read = 10 * SEC;
    let mut sim = sim_with(config);
    sim.client_sends(get("/").as_bytes());
    sim.advance(9 * SEC);
    sim.upstream_sends(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\na");
    sim.advance(9 * SEC);
    sim.upstream_sends(b"b");
    sim.advance(9 * SEC);
    assert!(!sim.is_closed());
    sim.advance(SEC);
    assert!(sim.is_closed());
    assert_eq!(closed_with(&sim), Some(CloseReason::ReadTimeout));
    assert_eq!(
        statuses(&sim.client_received),
        vec![200],
        "no second head after a forwarded one"
    );

    let mut silent = sim_with({
        let mut c = Config::default();
        c.routes[0].timeouts.read = 10 * SEC;
        c
    });
    silent.client_sends(get("/").as_bytes());
    silent.advance(10 * SEC);
    assert_eq!(status(&silent), 504);
}

#[test]
fn send_timeout_closes_when_writes_make_no_progress() {
    let mut conn = Connection::new(
        std::sync::Arc::new(Config::default()),
        PeerInfo::default(),
        Instant::now(),
    );
    let t0 = Instant::now();
    conn.handle_input(Input::ClientData(get("/").as_bytes().into()), t0)
        .unwrap();
    while conn.poll_output().is_some() {}
    conn.handle_input(Input::UpstreamConnected { reused: false }, t0)
        .unwrap();
    while conn.poll_output().is_some() {}
    // The head towards the upstream is never reported flushed.
    conn.handle_timeout(t0 + Duration::from_secs(59));
    assert!(!conn.is_closed());
    conn.handle_timeout(t0 + Duration::from_secs(60));
    assert!(conn.is_closed());
}

#[test]
fn a_now_earlier_than_one_seen_is_treated_as_the_latest() {
    let mut conn = Connection::new(
        std::sync::Arc::new(Config::default()),
        PeerInfo::default(),
        Instant::now(),
    );
    let t0 = Instant::now();
    conn.handle_input(Input::ClientData(b"GET".as_slice().into()), t0 + 30 * SEC)
        .unwrap();
    conn.handle_timeout(t0);
    assert!(!conn.is_closed());
    assert!(conn
        .poll_timeout()
        .is_some_and(|d| d <= t0 + 60 * SEC + Duration::from_millis(1)));
}

#[test]
fn a_timeout_with_nothing_due_is_a_no_op() {
    let t0 = Instant::now();
    let mut conn = Connection::new(
        std::sync::Arc::new(Config::default()),
        PeerInfo::default(),
        t0,
    );
    for i in 0..10 {
        conn.handle_timeout(t0 + i * SEC);
    }
    assert_eq!(conn.poll_output(), None);
    assert_eq!(conn.state(), StateKind::ReadingHead);
}

#[test]
fn input_after_close_is_a_misuse() {
    let mut sim = sim();
    sim.client_eof();
    assert!(sim.is_closed());
    assert_eq!(sim.input(Input::ClientEof), Err(Misuse::Closed));
    assert!(matches!(sim.input(Input::Timeout), Err(Misuse::Closed)));
}

#[test]
#[should_panic(expected = "input after the connection was closed")]
fn the_sim_helpers_refuse_to_feed_a_closed_connection() {
    let mut sim = sim();
    sim.client_sends(b"BAD\r\n\r\n");
    assert!(sim.is_closed());
    // A test that goes on as if the connection were open fails here, loudly.
    sim.client_sends(get("/").as_bytes());
}

#[test]
#[should_panic(expected = "is not expected in state ReadingHead")]
fn the_sim_helpers_refuse_an_input_the_state_does_not_expect() {
    let mut sim = sim();
    sim.upstream_sends(b"HTTP/1.1 200 OK\r\n\r\n");
}

#[test]
fn unexpected_inputs_are_misuse_and_change_nothing() {
    let mut sim = sim();
    let err = sim.input(Input::UpstreamData(b"x".as_slice().into()));
    assert!(matches!(
        err,
        Err(Misuse::Unexpected {
            state: StateKind::ReadingHead,
            ..
        })
    ));
    assert!(matches!(
        sim.input(Input::TunnelActivity {
            from: Side::Client,
            bytes: 1
        }),
        Err(Misuse::Unexpected { .. })
    ));
    assert_eq!(sim.state(), StateKind::ReadingHead);
}

#[test]
fn a_peer_error_never_returns_err() {
    let mut sim = sim();
    assert_eq!(
        sim.input(Input::ClientData(b"\x00\x01\x02\r\n\r\n".as_slice().into())),
        Ok(())
    );
    assert_eq!(status(&sim), 400);
}

#[test]
fn tunnel_closes_after_read_timeout_of_upstream_silence() {
    let mut sim = tunnel();
    sim.advance(59 * SEC);
    assert_eq!(sim.state(), StateKind::Tunnel);
    sim.advance(SEC);
    assert_eq!(closed_with(&sim), Some(CloseReason::ReadTimeout));
}

#[test]
fn upstream_traffic_keeps_the_tunnel_open() {
    let mut sim = tunnel();
    for _ in 0..10 {
        sim.advance(50 * SEC);
        sim.upstream_sends(b"\x81\x01x");
    }
    assert_eq!(sim.state(), StateKind::Tunnel);
}

#[test]
fn client_traffic_alone_does_not_keep_the_tunnel_open() {
    let mut sim = tunnel();
    for _ in 0..5 {
        sim.advance(11 * SEC);
        sim.client_sends(b"\x81\x81abcdx");
    }
    sim.advance(5 * SEC);
    assert_eq!(closed_with(&sim), Some(CloseReason::ReadTimeout));
}

#[test]
fn tunnel_idle_timeout_closes_when_neither_direction_moves() {
    let mut config = Config::default();
    config.routes[0].timeouts.tunnel_idle = Some(20 * SEC);
    let mut sim = sim_with(byte_tunnels(config));
    sim.client_sends(ws_request("/").as_bytes());
    sim.upstream_sends(ws_101().as_bytes());
    sim.advance(15 * SEC);
    sim.client_sends(b"x");
    sim.advance(19 * SEC);
    assert_eq!(sim.state(), StateKind::Tunnel);
    sim.advance(SEC);
    assert_eq!(closed_with(&sim), Some(CloseReason::TunnelIdleTimeout));
}

#[test]
fn half_close_shuts_down_the_other_side_and_keeps_the_other_direction() {
    let mut sim = tunnel();
    sim.client_eof();
    assert!(sim.upstreams[0].shut_down);
    assert!(!sim.is_closed());
    assert!(sim.connection().wants_read(Side::Upstream));
    assert!(!sim.connection().wants_read(Side::Client));
    sim.upstream_sends(b"\x81\x03bye");
    assert!(sim.client_received.ends_with(b"\x81\x03bye"));
    sim.upstream_eof();
    assert!(sim.client_shut_down);
    assert_eq!(closed_with(&sim), Some(CloseReason::BothClosed));
}

#[test]
fn after_the_upstream_half_closes_the_client_direction_is_bounded_by_read_timeout() {
    let mut sim = tunnel();
    sim.advance(30 * SEC);
    sim.upstream_eof();
    assert!(sim.client_shut_down);
    sim.advance(59 * SEC);
    assert_eq!(sim.state(), StateKind::Tunnel);
    sim.advance(SEC);
    assert_eq!(closed_with(&sim), Some(CloseReason::ReadTimeout));
}

#[test]
fn a_client_that_half_closed_before_the_101_is_shut_down_towards_the_upstream() {
    let mut sim = byte_sim();
    sim.client_sends(ws_request("/").as_bytes());
    sim.client_eof();
    sim.upstream_sends(ws_101().as_bytes());
    assert_eq!(sim.state(), StateKind::Tunnel);
    assert!(sim.upstreams[0].shut_down);
}

#[test]
fn tunnel_close_reports_bytes_and_duration() {
    let mut sim = tunnel();
    sim.client_sends(b"12345");
    sim.advance(2 * SEC);
    sim.upstream_sends(b"123");
    sim.client_eof();
    sim.upstream_eof();
    let record = sim.events().into_iter().find_map(|e| match e {
        switchyard_core::Event::TunnelClosed(r) => Some(r.clone()),
        _ => None,
    });
    let record = record.expect("a tunnel record");
    assert_eq!(
        (
            record.bytes_client_to_upstream,
            record.bytes_upstream_to_client
        ),
        (5, 3)
    );
    assert_eq!(record.duration, 2 * SEC);
    assert_eq!(record.protocol, "websocket");
}

#[test]
fn shutdown_finishes_the_exchange_in_flight_then_closes() {
    let mut sim = sim();
    sim.client_sends(get("/").as_bytes());
    sim.input(Input::Drain { grace: 10 * SEC }).unwrap();
    assert!(!sim.is_closed());
    sim.upstream_sends(ok("x").as_bytes());
    assert_eq!(
        header(&sim.client_received, "connection").as_deref(),
        Some("close")
    );
    assert_eq!(closed_with(&sim), Some(CloseReason::Shutdown));
}

#[test]
fn shutdown_closes_a_kept_alive_connection_between_requests_at_once() {
    let mut sim = sim();
    sim.client_sends(get("/").as_bytes());
    sim.upstream_sends(ok("x").as_bytes());
    assert_eq!(sim.state(), StateKind::ReadingHead);
    sim.input(Input::Drain { grace: 10 * SEC }).unwrap();
    assert_eq!(closed_with(&sim), Some(CloseReason::Shutdown));
}

#[test]
fn shutdown_lets_a_fresh_connection_send_its_first_request() {
    let mut sim = sim();
    sim.input(Input::Drain { grace: 10 * SEC }).unwrap();
    assert!(
        !sim.is_closed(),
        "a client that just connected has a request on the way"
    );
    sim.advance(SEC / 2);
    sim.client_sends(get("/").as_bytes());
    sim.upstream_sends(ok("x").as_bytes());
    assert!(sim.client_received.starts_with(b"HTTP/1.1 200"));
    assert_eq!(
        header(&sim.client_received, "connection").as_deref(),
        Some("close")
    );
    assert_eq!(closed_with(&sim), Some(CloseReason::Shutdown));
}

#[test]
fn shutdown_gives_a_fresh_connection_one_second_for_its_first_request() {
    let mut sim = sim();
    sim.input(Input::Drain { grace: 10 * SEC }).unwrap();
    sim.advance(SEC - Duration::from_millis(1));
    assert!(!sim.is_closed());
    sim.advance(Duration::from_millis(1));
    assert_eq!(closed_with(&sim), Some(CloseReason::Shutdown));
    assert!(
        sim.client_received.is_empty(),
        "nothing was asked, nothing is answered"
    );
}

#[test]
fn shutdown_waits_for_a_fresh_connection_at_most_the_grace() {
    let mut sim = sim();
    sim.input(Input::Drain { grace: SEC / 4 }).unwrap();
    sim.advance(SEC / 4);
    assert_eq!(closed_with(&sim), Some(CloseReason::Shutdown));
    let mut sim = sim_with(Config::default());
    sim.input(Input::Drain {
        grace: Duration::ZERO,
    })
    .unwrap();
    sim.advance(Duration::ZERO);
    assert_eq!(closed_with(&sim), Some(CloseReason::Shutdown));
}

#[test]
fn shutdown_gives_a_tunnel_its_grace() {
    let mut sim = tunnel();
    sim.input(Input::Drain { grace: 10 * SEC }).unwrap();
    sim.advance(9 * SEC);
    assert_eq!(sim.state(), StateKind::Tunnel);
    sim.advance(SEC);
    assert_eq!(closed_with(&sim), Some(CloseReason::Shutdown));
}

#[test]
fn poll_timeout_is_the_earliest_deadline() {
    let t0 = Instant::now();
    let mut config = Config::default();
    config.timeouts.header = 5 * SEC;
    let conn = Connection::new(std::sync::Arc::new(config), PeerInfo::default(), t0);
    assert_eq!(conn.poll_timeout(), Some(t0 + 5 * SEC));
    let mut sim = tunnel();
    let before = sim.connection().poll_timeout().unwrap();
    sim.advance(SEC);
    sim.upstream_sends(b"x");
    assert_eq!(sim.connection().poll_timeout(), Some(before + SEC));
}

#[test]
fn start_tunnel_is_preceded_by_the_101_head() {
    let sim = tunnel();
    let position = |pred: &dyn Fn(&Output) -> bool| sim.outputs.iter().position(pred);
    let head = position(&|o| matches!(o, Output::ToClient(b) if b.starts_with(b"HTTP/1.1 101")));
    let start = position(&|o| matches!(o, Output::StartTunnel { .. }));
    assert!(head.unwrap() < start.unwrap());
}

#[test]
fn a_failed_write_ends_the_tunnel_at_once() {
    let mut sim = tunnel();
    sim.input(Input::WriteFailed { to: Side::Client }).unwrap();
    assert_eq!(closed_with(&sim), Some(CloseReason::ClientClosed));
    assert!(sim.is_closed());
}

#[test]
fn a_failed_write_to_the_upstream_before_a_response_is_502() {
    let mut sim = sim();
    sim.client_sends(get("/").as_bytes());
    sim.input(Input::WriteFailed { to: Side::Upstream })
        .unwrap();
    assert_eq!(status(&sim), 502);
    assert!(sim.is_closed());
}

proptest::proptest! {
    /// Under a drain, a fresh connection's first request is answered when it arrives
    /// before 1 s and before the grace is over, whatever the grace; otherwise the
    /// connection closes with `shutdown` at that instant, having written nothing.
    #[test]
    fn a_fresh_connection_under_a_drain_is_answered_only_within_its_wait(
        grace_ms in 0u64..3_000,
        delay_ms in 0u64..3_000,
    ) {
        let grace = Duration::from_millis(grace_ms);
        let delay = Duration::from_millis(delay_ms);
        let mut sim = sim();
        sim.input(Input::Drain { grace }).unwrap();
        sim.advance(delay);
        let wait = grace.min(SEC);
        if delay < wait {
            proptest::prop_assert!(!sim.is_closed());
            sim.client_sends(get("/").as_bytes());
            sim.upstream_sends(ok("x").as_bytes());
            proptest::prop_assert!(sim.client_received.starts_with(b"HTTP/1.1 200"));
        } else {
            proptest::prop_assert!(sim.client_received.is_empty());
        }
        proptest::prop_assert_eq!(closed_with(&sim), Some(CloseReason::Shutdown));
    }
}
