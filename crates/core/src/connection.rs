//! stub
use std::sync::Arc;
use std::time::Instant;
use crate::*;

/// Coarse state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    /// Waiting for (or reading) a request head.
    ReadingHead,
    /// Waiting for the upstream connection.
    Connecting,
    /// Sending a request and forwarding its response.
    Exchange,
    /// Copying bytes both ways after a `101`.
    Tunnel,
    /// Over.
    Closed,
}

/// One client connection.
#[derive(Debug)]
pub struct Connection {}

impl Connection {
    /// New.
    pub fn new(_config: Arc<Config>, _peer: PeerInfo, _now: Instant) -> Self { Connection {} }
    /// Input.
    pub fn handle_input(&mut self, _input: Input, _now: Instant) -> Result<(), Misuse> { Ok(()) }
    /// Timeout.
    pub fn handle_timeout(&mut self, _now: Instant) {}
    /// Output.
    pub fn poll_output(&mut self) -> Option<Output> { None }
    /// Deadline.
    pub fn poll_timeout(&self) -> Option<Instant> { None }
    /// Whether to read from side.
    pub fn wants_read(&self, _side: Side) -> bool { true }
    /// State.
    pub fn state(&self) -> StateKind { StateKind::ReadingHead }
    /// Closed?
    pub fn is_closed(&self) -> bool { false }
}
