//! switchyard-core (docs to come)
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod config;
mod connection;
mod error;
mod event;
mod io;

pub use config::{Config, Forwarding, Limits, PeerInfo, Route, RouteId, Scheme, Timeouts};
pub use connection::{Connection, StateKind};
pub use error::{ErrorKind, Misuse, ProtocolError};
pub use event::{AccessRecord, CloseReason, Event, TunnelRecord};
pub use io::{Input, Output, Side};
