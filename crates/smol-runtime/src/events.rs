//! The runtime's one stream of events: every [`Event`] of every connection goes to the
//! server's [`EventSink`] ([`ServerConfig::events`](crate::ServerConfig::events)). The
//! access log ([`AccessLog`](crate::AccessLog), the default) is one sink, metrics are
//! another; a pair of sinks is a sink that feeds both.

use std::net::SocketAddr;
use std::sync::Arc;

use switchyard_core::Event;

/// Where an event happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventContext {
    /// The worker thread serving the connection, from 0 to the count given to
    /// [`EventSink::start`] (excluded): state kept per worker (counters) can be indexed
    /// by it, so that the workers never write to the same memory.
    pub worker: usize,
    /// The client's address.
    pub client: SocketAddr,
    /// The route of the connection's tunnel, from its [`Event::TunnelOpened`] on (the
    /// events of a tunnel that carry none, such as [`Event::WebSocketViolation`], happen
    /// on it); `None` before.
    ///
    /// [`Event::TunnelOpened`]: switchyard_core::Event::TunnelOpened
    /// [`Event::WebSocketViolation`]: switchyard_core::Event::WebSocketViolation
    pub tunnel_route: Option<switchyard_core::RouteId>,
}

impl EventContext {
    /// The context of an event of `client`'s connection, served by `worker`.
    pub fn new(worker: usize, client: SocketAddr) -> Self {
        EventContext {
            worker,
            client,
            tunnel_route: None,
        }
    }
}

/// Receives the events of every connection, in order for each connection, on the worker
/// thread that serves it.
///
/// [`event`](EventSink::event) runs inline in the connection's task: keep it short and
/// non-blocking (format a line, bump a counter, hand over to a channel), and do not
/// panic.
///
/// # Examples
///
/// The access log and a count of finished requests, kept per worker and summed when
/// read (as metrics are: no two workers write to the same counter):
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::{Arc, OnceLock};
/// use switchyard_core::Event;
/// use switchyard_smol::{AccessLog, EventContext, EventSink, ServerConfig};
///
/// #[derive(Debug, Default)]
/// struct Requests(OnceLock<Vec<AtomicU64>>);
///
/// impl EventSink for Requests {
///     fn start(&self, workers: usize) {
///         // (A real one would pad each worker's counters to a cache line of its own.)
///         let _ = self.0.set((0..workers).map(|_| AtomicU64::new(0)).collect());
///     }
///
///     fn event(&self, context: &EventContext, event: &Event) {
///         let counter = self.0.get().and_then(|counters| counters.get(context.worker));
///         if let (Event::Exchange(_), Some(counter)) = (event, counter) {
///             counter.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
///
/// impl Requests {
///     fn total(&self) -> u64 {
///         self.0.get().map_or(0, |c| c.iter().map(|n| n.load(Ordering::Relaxed)).sum())
///     }
/// }
///
/// let requests = Arc::new(Requests::default());
/// let mut config = ServerConfig::simple(
///     "127.0.0.1:0".parse().unwrap(),
///     "127.0.0.1:9000".parse().unwrap(),
/// );
/// config.events = Arc::new((AccessLog, requests.clone()));
/// # assert_eq!(requests.total(), 0);
/// ```
pub trait EventSink: Send + Sync {
    /// Called once before the server serves, with its number of workers (see
    /// [`EventContext::worker`]).
    fn start(&self, workers: usize) {
        let _ = workers;
    }

    /// One event of the connection of `context.client`.
    fn event(&self, context: &EventContext, event: &Event);
}

impl std::fmt::Debug for dyn EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventSink")
    }
}

/// Both sinks, the first one first.
impl<A: EventSink, B: EventSink> EventSink for (A, B) {
    fn start(&self, workers: usize) {
        self.0.start(workers);
        self.1.start(workers);
    }

    fn event(&self, context: &EventContext, event: &Event) {
        self.0.event(context, event);
        self.1.event(context, event);
    }
}

/// A shared sink (so that the code that reads it, such as a metrics endpoint, keeps a
/// handle).
impl<S: EventSink + ?Sized> EventSink for Arc<S> {
    fn start(&self, workers: usize) {
        (**self).start(workers);
    }

    fn event(&self, context: &EventContext, event: &Event) {
        (**self).event(context, event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use switchyard_core::CloseReason;

    #[derive(Debug, Default)]
    struct Recorder {
        name: &'static str,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl EventSink for Recorder {
        fn start(&self, workers: usize) {
            self.log
                .lock()
                .unwrap()
                .push(format!("{} start {workers}", self.name));
        }

        fn event(&self, context: &EventContext, event: &Event) {
            let line = format!("{} {} {event:?}", self.name, context.worker);
            self.log.lock().unwrap().push(line);
        }
    }

    #[test]
    fn a_pair_of_sinks_feeds_both_in_order() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let first = Recorder {
            name: "log",
            log: log.clone(),
        };
        let second = Arc::new(Recorder {
            name: "metrics",
            log: log.clone(),
        });
        let sink: Arc<dyn EventSink> = Arc::new((first, second));
        sink.start(2);
        let event = Event::Closed {
            reason: CloseReason::ClientClosed,
        };
        sink.event(
            &EventContext::new(1, "127.0.0.1:5000".parse().unwrap()),
            &event,
        );
        assert_eq!(
            *log.lock().unwrap(),
            [
                "log start 2".to_string(),
                "metrics start 2".to_string(),
                format!("log 1 {event:?}"),
                format!("metrics 1 {event:?}"),
            ]
        );
        assert_eq!(format!("{sink:?}"), "EventSink");
    }
}
