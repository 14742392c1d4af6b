//! How an upstream group chooses a server: the balancers (round-robin, smooth weighted
//! round-robin, least connections, consistent hashing on the client address, a header
//! or a cookie). [`Balancer::order`] is the one choice the dial makes: every server of
//! the group once, in the order to try them, those that may take connections first.
//! What makes a server unusable (a passive failure mark, a failed health check) is the
//! caller's to say in [`Candidate::usable`]; every balancer puts such servers last.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

mod ring;
#[cfg(test)]
mod tests;

use ring::Ring;

/// How a group spreads connections over its servers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Balance {
    /// Each server in turn, `weight` times as often as a server of weight 1 (nginx's
    /// smooth weighted round-robin: a heavier server's turns are spread out, not
    /// bunched).
    #[default]
    RoundRobin,
    /// The server with the fewest open connections (requests in flight and tunnels,
    /// counted across every worker) per unit of weight; ties in turn. The balancer for
    /// long-lived connections: a server that restarted or joined late fills up first.
    LeastConn,
    /// Consistent hashing on the client's IP address: a client keeps its server, and a
    /// server added or removed moves only its share of the clients.
    IpHash,
    /// Consistent hashing on the value of this request header; a request without it
    /// goes round-robin.
    Header(String),
    /// Consistent hashing on the value of this cookie; a request without it goes
    /// round-robin.
    Cookie(String),
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Balance::RoundRobin => f.write_str("round_robin"),
            Balance::LeastConn => f.write_str("least_conn"),
            Balance::IpHash => f.write_str("ip_hash"),
            Balance::Header(name) => write!(f, "hash header:{name}"),
            Balance::Cookie(name) => write!(f, "hash cookie:{name}"),
        }
    }
}

impl Balance {
    /// The hash key of a request: the client's IP address, or the header's or cookie's
    /// value when present and not empty; `None` for the balancers that hash nothing and
    /// when the value is missing (the request goes round-robin).
    pub(crate) fn key<'a>(
        &self,
        client: SocketAddr,
        mut header: impl FnMut(&str) -> Vec<&'a [u8]>,
    ) -> Option<u64> {
        match self {
            Balance::RoundRobin | Balance::LeastConn => None,
            Balance::IpHash => Some(match client.ip() {
                IpAddr::V4(ip) => ring::hash(&ip.octets()),
                IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
                    Some(v4) => ring::hash(&v4.octets()),
                    None => ring::hash(&ip.octets()),
                },
            }),
            Balance::Header(name) => header(name)
                .into_iter()
                .map(trim)
                .find(|value| !value.is_empty())
                .map(ring::hash),
            Balance::Cookie(name) => header("cookie")
                .into_iter()
                .flat_map(|value| value.split(|&b| b == b';'))
                .find_map(|pair| {
                    let pair = trim(pair);
                    let eq = pair.iter().position(|&b| b == b'=')?;
                    let value = trim(&pair[eq + 1..]);
                    (trim(&pair[..eq]) == name.as_bytes() && !value.is_empty()).then_some(value)
                })
                .map(ring::hash),
        }
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace());
    match (start, end) {
        (Some(start), Some(end)) => &bytes[start..=end],
        _ => &[],
    }
}

/// What the balancer needs to know of a server at the moment of a choice.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate {
    /// Its weight, at least 1.
    pub(crate) weight: u32,
    /// Its open connections, across every worker.
    pub(crate) open: usize,
    /// Whether it may take new connections (not marked failed, not down).
    pub(crate) usable: bool,
}

/// A group's balancer: its kind and the state of its choices, shared by the workers.
#[derive(Debug)]
pub(crate) struct Balancer {
    balance: Balance,
    /// Round-robin position (and the tie-breaker of least connections).
    next: AtomicUsize,
    /// Smooth weighted round-robin's current weights, when the weights differ (equal
    /// weights take the lock-free `next`).
    smooth: Option<Mutex<Vec<i64>>>,
    /// For the hashing balancers.
    ring: Option<Ring>,
}

impl Balancer {
    /// The balancer of `servers` (address and weight); the round-robin position
    /// continues from `previous`, the same group before a reload.
    pub(crate) fn new(
        balance: Balance,
        servers: &[(SocketAddr, u32)],
        previous: Option<&Balancer>,
    ) -> Balancer {
        let weighted = servers.windows(2).any(|pair| pair[0].1 != pair[1].1);
        let hashed = matches!(
            balance,
            Balance::IpHash | Balance::Header(_) | Balance::Cookie(_)
        );
        Balancer {
            ring: hashed.then(|| Ring::new(servers)),
            smooth: weighted.then(|| Mutex::new(vec![0; servers.len()])),
            next: AtomicUsize::new(previous.map_or(0, |b| b.next.load(Ordering::Relaxed))),
            balance,
        }
    }

    /// What it balances by.
    pub(crate) fn balance(&self) -> &Balance {
        &self.balance
    }

    /// Every server once (indices into `servers`), in the order to try them: the
    /// balancer's choice first, then the other usable ones, then the unusable ones (a
    /// last resort: a failure mark may be stale). `key` is the request's hash key
    /// ([`Balance::key`]); without one a hashing balancer goes round-robin.
    pub(crate) fn order(&self, servers: &[Candidate], key: Option<u64>) -> Vec<usize> {
        let order = match (&self.balance, &self.ring, key) {
            (Balance::LeastConn, _, _) => self.least_conn(servers),
            (_, Some(ring), Some(key)) => ring.walk(key, servers.len()),
            _ => self.round_robin(servers),
        };
        let (mut usable, unusable): (Vec<usize>, Vec<usize>) =
            order.into_iter().partition(|&i| servers[i].usable);
        usable.extend(unusable);
        usable
    }

    fn rotated(&self, n: usize) -> impl Iterator<Item = usize> {
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n.max(1);
        (0..n).map(move |k| (start + k) % n)
    }

    fn round_robin(&self, servers: &[Candidate]) -> Vec<usize> {
        let n = servers.len();
        let Some(smooth) = &self.smooth else {
            return self.rotated(n).collect();
        };
        let mut current = smooth
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if current.len() != n {
            *current = vec![0; n];
        }
        // nginx's smooth weighted round-robin over the usable servers: each gains its
        // weight, the highest is chosen and loses the total.
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, server) in servers.iter().enumerate().filter(|(_, s)| s.usable) {
            let weight = i64::from(server.weight.max(1));
            current[i] += weight;
            total += weight;
            if best.map_or(true, |b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let start = match best {
            Some(best) => {
                current[best] -= total;
                best
            }
            None => self.next.fetch_add(1, Ordering::Relaxed) % n.max(1),
        };
        (0..n).map(|k| (start + k) % n).collect()
    }

    fn least_conn(&self, servers: &[Candidate]) -> Vec<usize> {
        let mut order: Vec<usize> = self.rotated(servers.len()).collect();
        // open ÷ weight, compared exactly: a.open × b.weight against b.open × a.weight.
        // Stable, so equal loads keep the rotation's order and take turns.
        order.sort_by(|&a, &b| {
            let (a, b) = (&servers[a], &servers[b]);
            let left = a.open as u128 * u128::from(b.weight.max(1));
            let right = b.open as u128 * u128::from(a.weight.max(1));
            left.cmp(&right)
        });
        order
    }
}
