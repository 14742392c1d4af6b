//! `Connection::request_header`: what an adapter's balancer reads of the request it
//! connects for, as a property over header names, values and their case.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use proptest::prelude::*;
use switchyard_core::{Config, Connection, Input, Output, PeerInfo, Scheme};

/// A connection fed `request`, and whether it asked for an upstream connection.
fn connecting(request: &str) -> (Connection, bool) {
    let now = Instant::now();
    let peer = PeerInfo {
        client_addr: Some([192, 0, 2, 1].into()),
        scheme: Scheme::Http,
    };
    let mut conn = Connection::new(Arc::new(Config::default()), peer, now);
    conn.handle_input(Input::ClientData(BytesMut::from(request.as_bytes())), now)
        .unwrap();
    let mut connect = false;
    while let Some(output) = conn.poll_output() {
        connect |= matches!(output, Output::Connect(_));
    }
    (conn, connect)
}

fn value() -> impl Strategy<Value = String> {
    "[A-Za-z0-9=;._-]([A-Za-z0-9=; ._-]{0,30}[A-Za-z0-9=;._-])?"
}

proptest! {
    #[test]
    fn every_value_of_the_header_is_given_trimmed_in_order_whatever_the_case(
        values in proptest::collection::vec(value(), 1..4),
        other in value(),
        upper in any::<bool>(),
    ) {
        let name = if upper { "X-Session" } else { "x-session" };
        let mut request = String::from("GET /a HTTP/1.1\r\nHost: h\r\n");
        for v in &values {
            request.push_str(&format!("{name}:  {v} \r\nX-Other: {other}\r\n"));
        }
        request.push_str("\r\n");
        let (conn, connect) = connecting(&request);
        prop_assert!(connect);
        let seen: Vec<&[u8]> = conn.request_header("X-SESSION").collect();
        let expected: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        prop_assert_eq!(seen, expected);
        let absent = conn.request_header("x-absent").count();
        prop_assert_eq!(absent, 0);
    }
}

#[test]
fn hop_by_hop_headers_and_the_time_before_a_request_give_nothing() {
    let (conn, connect) =
        connecting("GET / HTTP/1.1\r\nHost: h\r\nKeep-Alive: timeout=5\r\nCookie: sid=1\r\n\r\n");
    assert!(connect);
    assert_eq!(
        conn.request_header("keep-alive").count(),
        0,
        "not forwarded"
    );
    assert_eq!(
        conn.request_header("cookie").collect::<Vec<_>>(),
        [b"sid=1"]
    );
    let (waiting, connect) = connecting("GET / HTTP/1.1\r\nCookie: sid=1\r\n");
    assert!(!connect);
    assert_eq!(
        waiting.request_header("cookie").count(),
        0,
        "no exchange yet"
    );
}
