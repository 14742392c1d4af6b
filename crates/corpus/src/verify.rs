//! Judging one run of a vector.

use crate::forwarded::{parse_forwarded, view_upstream, Parsed, UpstreamView};
use crate::statuses::client_statuses;
use crate::vector::{Up, Vector};

/// What one run of a vector produced, as seen from outside the proxy.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Every byte the client received.
    pub client: Vec<u8>,
    /// The proxy closed the client connection.
    pub closed: bool,
    /// A tunnel is open at the end.
    pub tunnel: bool,
    /// Per upstream connection, in order: bytes received and how it was released
    /// (`Some(false)`: closed, `Some(true)`: kept alive, `None`: still in use).
    pub upstreams: Vec<(Vec<u8>, Option<bool>)>,
    /// Upstream connections come up while the client keeps sending, so a request
    /// rejected in its body may be rejected before its head was ever sent.
    pub connect_is_async: bool,
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Everything wrong with `outcome` for `vector`; empty when it passes.
pub fn verify(vector: &Vector, outcome: &Observed) -> Vec<String> {
    let mut wrong = Vec::new();
    let statuses = client_statuses(&outcome.client, vector.head_requests);
    if statuses != vector.statuses {
        wrong.push(format!(
            "client got statuses {statuses:?}, expected {:?}",
            vector.statuses
        ));
    }
    if outcome.closed != vector.closed {
        wrong.push(format!(
            "closed: {}, expected {}",
            outcome.closed, vector.closed
        ));
    }
    for never in &vector.never_to_client {
        if contains(&outcome.client, never) {
            wrong.push(format!(
                "the client received {:?}",
                String::from_utf8_lossy(never)
            ));
        }
    }
    let (tunnel_lines, tunnel_bytes): (&[&str], Option<&[u8]>) = match vector.up {
        Up::Tunnel(lines, bytes) => (lines, Some(bytes)),
        _ => (&[], None),
    };
    let mut lines = Vec::new();
    let mut partials = Vec::new();
    for (index, (received, released)) in outcome.upstreams.iter().enumerate() {
        let last = index + 1 == outcome.upstreams.len();
        let view = if let (true, Some(expected)) = (last, tunnel_bytes) {
            // The tunnel's own bytes follow the handshake; they are not requests.
            let mut at = 0;
            let mut view = UpstreamView::default();
            while view.requests.len() < tunnel_lines.len() {
                match parse_forwarded(&received[at..]) {
                    Parsed::Complete(request, used) => {
                        view.requests.push(request);
                        at += used;
                    }
                    other => {
                        view.invalid = Some(format!("{other:?}"));
                        break;
                    }
                }
            }
            if &received[at..] != expected {
                wrong.push(format!(
                    "tunnel bytes {:?}, expected {:?}",
                    &received[at..],
                    expected
                ));
            }
            view
        } else {
            view_upstream(received)
        };
        if let Some(why) = &view.invalid {
            wrong.push(format!("upstream connection {index} received bytes that are not a well-formed request: {why}"));
        }
        if let Some(line) = &view.partial {
            partials.push((index, line.clone(), *released));
        }
        for request in &view.requests {
            lines.push(request.line.clone());
            for name in &vector.not_forwarded {
                if !request.values(name).is_empty() {
                    wrong.push(format!("{name} was forwarded in {:?}", request.line));
                }
            }
        }
    }
    match vector.up {
        Up::Nothing => {
            if !outcome.upstreams.is_empty() {
                wrong.push(format!(
                    "{} upstream connection(s) opened, expected none",
                    outcome.upstreams.len()
                ));
            }
        }
        Up::Requests(expected) | Up::Tunnel(expected, _) => {
            if lines != expected {
                wrong.push(format!(
                    "upstream received {lines:?}, expected {expected:?}"
                ));
            }
            if !partials.is_empty() {
                wrong.push(format!("incomplete requests upstream: {partials:?}"));
            }
        }
        Up::Abandoned(expected, partial) => {
            if lines != expected {
                wrong.push(format!(
                    "upstream received {lines:?}, expected {expected:?}"
                ));
            }
            match partials.as_slice() {
                [(_, line, Some(false))] if line == partial => {}
                // Rejected before the upstream connection was up: nothing was sent.
                [] if outcome.connect_is_async => {}
                other => wrong.push(format!(
                    "abandoned requests {other:?}, expected [{partial:?}] closed"
                )),
            }
        }
    }
    if vector.statuses.contains(&502) {
        match outcome.upstreams.last() {
            Some((_, Some(false))) => {}
            other => wrong.push(format!(
                "after a 502 the upstream is {:?}, expected closed",
                other.map(|u| u.1)
            )),
        }
    }
    if tunnel_bytes.is_some() != outcome.tunnel {
        wrong.push(format!("tunnel open: {}", outcome.tunnel));
    }
    wrong
}
