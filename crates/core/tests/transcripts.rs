//! Transcript tests: the exact sequence of outputs for whole scenarios.

mod common;

use common::*;
use switchyard_core::{Event, Output};

/// A compact, exact rendering of one output.
fn line(o: &Output) -> String {
    match o {
        Output::Connect(r) => format!("connect {r}"),
        Output::ToClient(b) => format!("client <- {}", String::from_utf8_lossy(b).escape_debug()),
        Output::ToUpstream(b) => {
            format!("upstream <- {}", String::from_utf8_lossy(b).escape_debug())
        }
        Output::ReleaseUpstream { reusable } => format!("release reusable={reusable}"),
        Output::StartTunnel {
            client_leftover,
            upstream_leftover,
        } => format!(
            "tunnel client_leftover={} upstream_leftover={}",
            String::from_utf8_lossy(client_leftover).escape_debug(),
            String::from_utf8_lossy(upstream_leftover).escape_debug()
        ),
        Output::HalfClose { side } => format!("half-close {side:?}"),
        Output::Close => "close".into(),
        Output::Event(Event::Request { method, target, .. }) => {
            format!("event request {method} {target}")
        }
        Output::Event(Event::Response { status }) => format!("event response {status}"),
        Output::Event(Event::Exchange(r)) => {
            format!("event exchange {} {} {}", r.method, r.target, r.status)
        }
        Output::Event(Event::TunnelOpened { route, protocol }) => {
            format!("event tunnel-opened route={route} {protocol}")
        }
        Output::Event(Event::TunnelClosed(r)) => format!(
            "event tunnel-closed {:?} c2u={} u2c={}",
            r.reason, r.bytes_client_to_upstream, r.bytes_upstream_to_client
        ),
        Output::Event(Event::Rejected(e)) => format!("event rejected {:?} {:?}", e.side, e.kind),
        Output::Event(Event::Closed { reason }) => format!("event closed {reason:?}"),
        other => format!("unknown {other:?}"),
    }
}

fn transcript(sim: &switchyard_core::sim::Sim) -> Vec<String> {
    sim.outputs.iter().map(line).collect()
}

const FWD: &str = "X-Forwarded-Proto: http\\r\\nConnection: keep-alive\\r\\n\\r\\n";

#[test]
fn transcript_keep_alive_gets() {
    let mut sim = sim();
    sim.client_sends(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n");
    sim.upstream_sends(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na");
    sim.client_sends(b"GET /2 HTTP/1.1\r\nHost: h\r\n\r\n");
    sim.upstream_sends(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb");
    assert_eq!(
        transcript(&sim),
        vec![
            "event request GET /1".to_string(),
            "connect 0".into(),
            format!("upstream <- GET /1 HTTP/1.1\\r\\nHost: h\\r\\n{FWD}"),
            "event response 200".into(),
            "client <- HTTP/1.1 200 OK\\r\\nContent-Length: 1\\r\\n\\r\\n".into(),
            "client <- a".into(),
            "release reusable=true".into(),
            "event exchange GET /1 200".into(),
            "event request GET /2".into(),
            "connect 0".into(),
            format!("upstream <- GET /2 HTTP/1.1\\r\\nHost: h\\r\\n{FWD}"),
            "event response 200".into(),
            "client <- HTTP/1.1 200 OK\\r\\nContent-Length: 1\\r\\n\\r\\n".into(),
            "client <- b".into(),
            "release reusable=true".into(),
            "event exchange GET /2 200".into(),
        ]
    );
}

#[test]
fn transcript_chunked_post() {
    let mut sim = sim();
    sim.client_sends(
        b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    sim.upstream_sends(b"HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(
        transcript(&sim),
        vec![
            "event request POST /up".to_string(),
            "connect 0".into(),
            "upstream <- POST /up HTTP/1.1\\r\\nHost: h\\r\\nX-Forwarded-Proto: http\\r\\nTransfer-Encoding: chunked\\r\\nConnection: keep-alive\\r\\n\\r\\n".into(),
            "upstream <- 3\\r\\n".into(),
            "upstream <- abc".into(),
            "upstream <- \\r\\n".into(),
            "upstream <- 0\\r\\n\\r\\n".into(),
            "event response 204".into(),
            "client <- HTTP/1.1 204 No Content\\r\\n\\r\\n".into(),
            "release reusable=true".into(),
            "event exchange POST /up 204".into(),
        ]
    );
}

#[test]
fn transcript_websocket_handshake_tunnel_half_close_close() {
    let mut sim = byte_sim();
    sim.client_sends(format!("{}\u{81}", ws_request("/ws")).as_bytes());
    sim.upstream_sends(format!("{}\u{82}", ws_101()).as_bytes());
    sim.client_sends(b"ping");
    sim.upstream_sends(b"pong!");
    sim.client_eof();
    sim.upstream_eof();
    let lines = transcript(&sim);
    let expected_tail = vec![
        "event response 101".to_string(),
        format!("client <- HTTP/1.1 101 Switching Protocols\\r\\nSec-WebSocket-Accept: {ACCEPT}\\r\\nUpgrade: websocket\\r\\nConnection: upgrade\\r\\n\\r\\n"),
        "event tunnel-opened route=0 websocket".into(),
        "tunnel client_leftover=\\u{81} upstream_leftover=\\u{82}".into(),
        "half-close Upstream".into(),
        "half-close Client".into(),
        "event tunnel-closed BothClosed c2u=4 u2c=5".into(),
        "release reusable=false".into(),
        "event closed BothClosed".into(),
        "close".into(),
    ];
    assert_eq!(
        &lines[..3],
        &[
            "event request GET /ws".to_string(),
            "connect 0".into(),
            lines[2].clone()
        ]
    );
    assert!(
        lines[2].starts_with("upstream <- GET /ws HTTP/1.1")
            && lines[2].ends_with("Upgrade: websocket\\r\\nConnection: upgrade\\r\\n\\r\\n")
    );
    assert_eq!(&lines[3..], &expected_tail[..]);
}

#[test]
fn transcript_rejected_upgrade_then_pipelined_request() {
    let mut sim = sim();
    sim.client_sends(
        format!("{}GET /next HTTP/1.1\r\nHost: h\r\n\r\n", ws_request("/ws")).as_bytes(),
    );
    sim.upstream_sends(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
    sim.upstream_sends(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let lines = transcript(&sim);
    let from = lines
        .iter()
        .position(|l| l == "event response 403")
        .unwrap();
    assert_eq!(
        &lines[from..],
        &[
            "event response 403".to_string(),
            "client <- HTTP/1.1 403 Forbidden\\r\\nContent-Length: 0\\r\\n\\r\\n".into(),
            "release reusable=false".into(),
            "event exchange GET /ws 403".into(),
            "event request GET /next".into(),
            "connect 0".into(),
            format!("upstream <- GET /next HTTP/1.1\\r\\nHost: h\\r\\n{FWD}"),
            "event response 200".into(),
            "client <- HTTP/1.1 200 OK\\r\\nContent-Length: 0\\r\\n\\r\\n".into(),
            "release reusable=true".into(),
            "event exchange GET /next 200".into(),
        ]
    );
}

#[test]
fn transcript_101_to_a_request_that_did_not_ask() {
    let mut sim = sim();
    sim.client_sends(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    sim.upstream_sends(format!("{}\u{81}\u{0}", ws_101()).as_bytes());
    let lines = transcript(&sim);
    assert_eq!(
        &lines[3..],
        &[
            "event rejected Upstream InvalidSwitch".to_string(),
            "client <- HTTP/1.1 502 Bad Gateway\\r\\nContent-Type: text/plain; charset=utf-8\\r\\nContent-Length: 12\\r\\nConnection: close\\r\\n\\r\\nBad Gateway\\n".into(),
            "release reusable=false".into(),
            "event exchange GET / 502".into(),
            "event closed ProtocolError".into(),
            "close".into(),
        ]
    );
}
