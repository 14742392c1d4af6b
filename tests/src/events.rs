//! A recording [`EventSink`], for tests of what the proxy reports: tunnel records, close
//! reasons, protocol violations.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_core::{Event, TunnelRecord};
use switchyard_smol::{EventContext, EventSink, ServerConfig};

use crate::wait_until;

/// Keeps every event of every connection, in the order the workers reported them.
/// Clones share the same record.
#[derive(Debug, Clone, Default)]
pub struct Events(Arc<Mutex<Vec<Event>>>);

impl EventSink for Events {
    fn event(&self, _context: &EventContext, event: &Event) {
        self.0.lock().unwrap().push(event.clone());
    }
}

impl Events {
    /// Makes this the server's only sink (instead of the access log).
    pub fn install(&self, config: &mut ServerConfig) {
        config.events = Arc::new(self.clone());
    }

    /// Every event so far.
    pub fn all(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    /// The records of the tunnels closed so far.
    pub fn tunnel_records(&self) -> Vec<TunnelRecord> {
        self.all()
            .into_iter()
            .filter_map(|event| match event {
                Event::TunnelClosed(record) => Some(*record),
                _ => None,
            })
            .collect()
    }

    /// Waits for the first tunnel to be closed and returns its record; panics if none is
    /// within `within`.
    pub fn wait_for_tunnel_record(&self, within: Duration) -> TunnelRecord {
        wait_until(within, "a tunnel record", || {
            !self.tunnel_records().is_empty()
        });
        self.tunnel_records().remove(0)
    }
}
