//! [`Pings`]: the proxy's own Pings in a frame-aware tunnel, with the answers it waits
//! for and the round trips they took. Boxed in [`Frames`](super::frames::Frames), and
//! only on a route that pings (`ws_ping_interval`; off by default), so that an idle
//! tunnel that never pings does not carry it.

use std::time::{Duration, Instant};

use crate::io::Side;

#[derive(Debug)]
pub(crate) struct Pings {
    /// Silence from a side after which it gets a Ping.
    pub interval: Duration,
    /// How long after a Ping a side that sent nothing at all is dead.
    pub timeout: Duration,
    /// The last Ping payload handed out (a per-connection counter).
    counter: u64,
    pub sent: u64,
    pub pongs_received: u64,
    pub last_rtt: Option<Duration>,
    pub min_rtt: Option<Duration>,
    /// Indexed by the side pinged: the last Ping sent to it and not answered yet, its
    /// payload and when.
    pub last_ping: [Option<([u8; 8], Instant)>; 2],
    /// Indexed by the side pinged: a Ping was sent and nothing at all has come from that
    /// side since.
    pub awaiting: [bool; 2],
}

impl Pings {
    pub(crate) fn new(interval: Duration, timeout: Duration) -> Self {
        Pings {
            interval,
            timeout,
            counter: 0,
            sent: 0,
            pongs_received: 0,
            last_rtt: None,
            min_rtt: None,
            last_ping: [None; 2],
            awaiting: [false; 2],
        }
    }

    /// The payload of the next Ping: unique within the connection.
    pub(crate) fn next_payload(&mut self) -> [u8; 8] {
        self.counter += 1;
        self.counter.to_be_bytes()
    }

    /// A Ping carrying `payload` was written towards `to` at `now`.
    pub(crate) fn sent(&mut self, to: Side, payload: [u8; 8], now: Instant) {
        self.sent += 1;
        self.last_ping[to.index()] = Some((payload, now));
        self.awaiting[to.index()] = true;
    }

    /// Whether a Pong from `from` carrying `payload` answers the last Ping to it; if so
    /// it is counted, with its round trip.
    pub(crate) fn take_pong(&mut self, from: Side, payload: &[u8], now: Instant) -> bool {
        let last = &mut self.last_ping[from.index()];
        let Some((sent, at)) = *last else {
            return false;
        };
        if payload != sent {
            return false;
        }
        *last = None;
        let rtt = now.saturating_duration_since(at);
        self.pongs_received += 1;
        self.last_rtt = Some(rtt);
        self.min_rtt = Some(self.min_rtt.map_or(rtt, |min| min.min(rtt)));
        true
    }
}
