//! switchyard-core
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod config;
mod connection;
mod error;
mod event;
mod framing;
mod head;
mod headers;
mod io;
mod state;
mod timer;
mod tunnel;
mod upgrade;

pub use config::{Config, Forwarding, Limits, PeerInfo, Route, RouteId, Scheme, Timeouts};
pub use connection::Connection;
pub use error::{ErrorKind, Misuse, ProtocolError};
pub use event::{AccessRecord, CloseReason, Event, TunnelRecord};
pub use headers::{is_hop_by_hop, HOP_BY_HOP};
pub use io::{Input, Output, Side};
pub use state::StateKind;
pub use upgrade::websocket_accept;

#[cfg(any(test, feature = "sim"))]
pub mod sim;
