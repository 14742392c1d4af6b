//! Helpers shared by the core's integration tests.
#![allow(dead_code)]

use std::time::Instant;

use switchyard_core::sim::Sim;
use switchyard_core::{Config, Event, Output};

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

pub fn sim() -> Sim {
    Sim::new(Config::default(), Instant::now())
}

pub fn sim_with(config: Config) -> Sim {
    Sim::new(config, Instant::now())
}

/// `config` with every route's WebSocket tunnels as plain byte tunnels (no frame
/// validation, no pings): what the tests of byte-tunnel rules need.
pub fn byte_tunnels(mut config: Config) -> Config {
    for route in &mut config.routes {
        route.websocket.validate = false;
        route.websocket.ping_interval = None;
    }
    config
}

/// A harness whose WebSocket tunnels are byte tunnels.
pub fn byte_sim() -> Sim {
    sim_with(byte_tunnels(Config::default()))
}

pub fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: example.test\r\n\r\n")
}

pub fn ws_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
    )
}

pub fn ws_101() -> String {
    format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n")
}

pub fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Status codes of every response head in `bytes` (interim ones included).
pub fn statuses(bytes: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(bytes);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

/// Status of the first response the client received.
pub fn status(sim: &Sim) -> u16 {
    statuses(&sim.client_received).first().copied().unwrap_or(0)
}

/// The header names of the first head in `bytes`, lowercased, in order.
pub fn header_names(bytes: &[u8]) -> Vec<String> {
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut fields);
    if let Ok(httparse::Status::Complete(_)) = req.parse(bytes) {
        return req
            .headers
            .iter()
            .map(|h| h.name.to_ascii_lowercase())
            .collect();
    }
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut resp = httparse::Response::new(&mut fields);
    resp.parse(bytes).expect("a head");
    resp.headers
        .iter()
        .map(|h| h.name.to_ascii_lowercase())
        .collect()
}

/// The value of `name` in the first head of `bytes`.
pub fn header(bytes: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let head = text.split("\r\n\r\n").next()?;
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

pub fn has_header(bytes: &[u8], name: &str) -> bool {
    header_names(bytes)
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name))
}

/// Body of the first message in `bytes` (after the head).
pub fn body(bytes: &[u8]) -> &[u8] {
    let at = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(bytes.len(), |i| i + 4);
    &bytes[at..]
}

pub fn started_tunnel(sim: &Sim) -> bool {
    sim.outputs
        .iter()
        .any(|o| matches!(o, Output::StartTunnel { .. }))
}

pub fn closed_with(sim: &Sim) -> Option<switchyard_core::CloseReason> {
    sim.events().into_iter().find_map(|e| match e {
        Event::Closed { reason } => Some(*reason),
        _ => None,
    })
}
pub mod ws;
