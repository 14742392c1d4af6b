//! A consistent hash ring (Karger et al., as nginx's `hash … consistent` and HAProxy's
//! `hash-type consistent`): every server owns `POINTS_PER_WEIGHT × weight` points on a
//! 64-bit circle, and a key goes to the first point at or after its hash. Adding a
//! server takes over only the arcs before its own points, about `1/(n+1)` of the keys.

use std::net::SocketAddr;

/// Points per unit of weight: enough that the share of each server stays within a few
/// per cent of its weight's share.
const POINTS_PER_WEIGHT: u32 = 160;

/// FNV-1a, then a 64-bit finalizer (splitmix64's) so that nearby inputs land far apart.
/// Fixed by the code, not seeded: two processes (an old and a new one during an
/// upgrade) place the same key on the same server.
pub(crate) fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The ring: points sorted by position, each naming a server by its index.
#[derive(Debug, Default)]
pub(crate) struct Ring {
    points: Vec<(u64, usize)>,
}

impl Ring {
    /// A ring over `servers` (address and weight). A server's points depend on its
    /// address only, so a server keeps its arcs whatever else joins or leaves.
    pub(crate) fn new(servers: &[(SocketAddr, u32)]) -> Ring {
        let mut points = Vec::new();
        for (index, &(addr, weight)) in servers.iter().enumerate() {
            let name = addr.to_string();
            for point in 0..POINTS_PER_WEIGHT * weight.max(1) {
                let label = format!("{name}-{point}");
                points.push((hash(label.as_bytes()), index));
            }
        }
        points.sort_unstable();
        Ring { points }
    }

    /// The servers in the order a key of hash `key` tries them: the owner of the first
    /// point at or after it, then the owners of the points that follow, each once.
    pub(crate) fn walk(&self, key: u64, servers: usize) -> Vec<usize> {
        let mut order = Vec::with_capacity(servers);
        let mut seen = vec![false; servers];
        let start = self.points.partition_point(|&(at, _)| at < key);
        let len = self.points.len();
        for step in 0..len {
            let (_, index) = self.points[(start + step) % len];
            if index < servers && !seen[index] {
                seen[index] = true;
                order.push(index);
                if order.len() == servers {
                    break;
                }
            }
        }
        order
    }
}
