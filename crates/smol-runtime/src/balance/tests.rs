use std::collections::HashMap;
use std::net::SocketAddr;

use super::*;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], port))
}

fn servers(weights: &[u32]) -> Vec<(SocketAddr, u32)> {
    (0..weights.len())
        .map(|i| (addr(9000 + i as u16), weights[i]))
        .collect()
}

fn candidates(weights: &[u32]) -> Vec<Candidate> {
    weights
        .iter()
        .map(|&weight| Candidate {
            weight,
            open: 0,
            usable: true,
        })
        .collect()
}

/// How often each server comes first in `picks` choices.
fn firsts(balancer: &Balancer, servers: &[Candidate], picks: usize) -> Vec<usize> {
    let mut counts = vec![0; servers.len()];
    for _ in 0..picks {
        counts[balancer.order(servers, None)[0]] += 1;
    }
    counts
}

#[test]
fn equal_weights_take_turns_and_every_order_names_each_server_once() {
    let balancer = Balancer::new(Balance::RoundRobin, &servers(&[1, 1, 1]), None);
    let servers = candidates(&[1, 1, 1]);
    assert_eq!(balancer.order(&servers, None), [0, 1, 2]);
    assert_eq!(balancer.order(&servers, None), [1, 2, 0]);
    assert_eq!(balancer.order(&servers, None), [2, 0, 1]);
    assert_eq!(firsts(&balancer, &servers, 300), [100, 100, 100]);
}

#[test]
fn weighted_round_robin_gives_each_server_its_weights_share_spread_out() {
    let weights = [5, 1, 1];
    let balancer = Balancer::new(Balance::RoundRobin, &servers(&weights), None);
    let servers = candidates(&weights);
    let sequence: Vec<usize> = (0..7).map(|_| balancer.order(&servers, None)[0]).collect();
    // nginx's example for weights 5, 1, 1: a a b a c a a.
    assert_eq!(sequence, [0, 0, 1, 0, 2, 0, 0]);
    assert_eq!(firsts(&balancer, &servers, 700), [500, 100, 100]);
}

#[test]
fn weighted_round_robin_skips_an_unusable_server_and_shares_among_the_others() {
    let weights = [3, 2, 1];
    let balancer = Balancer::new(Balance::RoundRobin, &servers(&weights), None);
    let mut servers = candidates(&weights);
    servers[0].usable = false;
    let counts = firsts(&balancer, &servers, 300);
    assert_eq!(counts, [0, 200, 100]);
    assert_eq!(
        *balancer.order(&servers, None).last().unwrap(),
        0,
        "tried last"
    );
}

#[test]
fn least_conn_picks_the_emptiest_server_and_takes_turns_on_ties() {
    let balancer = Balancer::new(Balance::LeastConn, &servers(&[1, 1, 1]), None);
    let mut servers = candidates(&[1, 1, 1]);
    servers[0].open = 5;
    servers[1].open = 2;
    servers[2].open = 7;
    assert_eq!(balancer.order(&servers, None), [1, 0, 2]);
    // Following the counts as connections open: each pick is a least loaded server and
    // adds one to it, so the loads level out.
    for _ in 0..31 {
        let first = balancer.order(&servers, None)[0];
        let least = servers.iter().map(|s| s.open).min().unwrap();
        assert_eq!(servers[first].open, least);
        servers[first].open += 1;
    }
    assert_eq!(
        servers.iter().map(|s| s.open).collect::<Vec<_>>(),
        [15, 15, 15]
    );
    // Equal counts: in turn.
    let ties = firsts(&balancer, &servers, 300);
    assert_eq!(ties, [100, 100, 100]);
    // A server whose connections ended gets every new one until it catches up.
    servers[2].open = 5;
    for _ in 0..10 {
        let first = balancer.order(&servers, None)[0];
        assert_eq!(first, 2);
        servers[first].open += 1;
    }
}

#[test]
fn least_conn_divides_by_weight_and_skips_unusable_servers() {
    let weights = [3, 1];
    let balancer = Balancer::new(Balance::LeastConn, &servers(&weights), None);
    let mut servers = candidates(&weights);
    for _ in 0..400 {
        let first = balancer.order(&servers, None)[0];
        servers[first].open += 1;
    }
    assert_eq!(servers[0].open, 300);
    assert_eq!(servers[1].open, 100);
    servers[1].open = 0;
    servers[1].usable = false;
    assert_eq!(balancer.order(&servers, None), [0, 1]);
}

fn key(n: u32) -> u64 {
    super::ring::hash(format!("client-{n}").as_bytes())
}

#[test]
fn the_ring_spreads_keys_by_weight() {
    let weights = [1, 1, 2, 1];
    let balancer = Balancer::new(Balance::IpHash, &servers(&weights), None);
    let servers = candidates(&weights);
    let mut counts = vec![0usize; 4];
    let keys = 20_000;
    for n in 0..keys {
        counts[balancer.order(&servers, Some(key(n)))[0]] += 1;
    }
    for (i, &count) in counts.iter().enumerate() {
        let ideal = keys as f64 * f64::from(weights[i]) / 5.0;
        let off = (count as f64 - ideal).abs() / ideal;
        // 160 points per unit of weight: a share within a quarter of its ideal.
        assert!(off < 0.25, "server {i}: {count} keys, ideal {ideal}");
    }
    let lightest = counts[0].max(counts[1]).max(counts[3]);
    assert!(
        counts[2] * 2 > lightest * 3,
        "weight 2 weighs more: {counts:?}"
    );
}

#[test]
fn adding_a_server_to_the_ring_moves_little_more_than_its_share() {
    for n in [2usize, 3, 5, 8] {
        let before = Balancer::new(Balance::IpHash, &servers(&vec![1; n]), None);
        let after = Balancer::new(Balance::IpHash, &servers(&vec![1; n + 1]), None);
        let (old, new) = (candidates(&vec![1; n]), candidates(&vec![1; n + 1]));
        let keys = 20_000u32;
        let mut moved = 0;
        for k in 0..keys {
            let from = before.order(&old, Some(key(k)))[0];
            let to = after.order(&new, Some(key(k)))[0];
            if from != to {
                assert_eq!(to, n, "a key moves only to the new server");
                moved += 1;
            }
        }
        let ideal = f64::from(keys) / (n + 1) as f64;
        assert!(
            f64::from(moved) <= 1.5 * ideal && f64::from(moved) >= 0.5 * ideal,
            "{n} → {}: {moved} keys moved, ideal {ideal}",
            n + 1
        );
    }
}

#[test]
fn a_key_keeps_its_server_and_an_unusable_one_sends_it_to_the_next_on_the_ring() {
    let balancer = Balancer::new(Balance::IpHash, &servers(&[1, 1, 1, 1]), None);
    let mut servers = candidates(&[1, 1, 1, 1]);
    let owners: HashMap<u32, Vec<usize>> = (0..200)
        .map(|k| (k, balancer.order(&servers, Some(key(k)))))
        .collect();
    for (k, order) in &owners {
        assert_eq!(&balancer.order(&servers, Some(key(*k))), order, "stable");
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 2, 3], "each server once");
    }
    servers[2].usable = false;
    for (k, order) in &owners {
        let now = balancer.order(&servers, Some(key(*k)));
        let expected: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&i| i != 2)
            .chain([2])
            .collect();
        assert_eq!(now, expected);
    }
}

#[test]
fn a_missing_hash_key_goes_round_robin() {
    let balancer = Balancer::new(Balance::Header("x-user".into()), &servers(&[1, 1]), None);
    let servers = candidates(&[1, 1]);
    assert_eq!(firsts(&balancer, &servers, 10), [5, 5]);
}

#[test]
fn keys_come_from_the_client_address_a_header_or_a_cookie() {
    let client: SocketAddr = "192.0.2.7:4000".parse().unwrap();
    let other_port: SocketAddr = "192.0.2.7:4001".parse().unwrap();
    let mapped: SocketAddr = "[::ffff:192.0.2.7]:4000".parse().unwrap();
    let none = |_: &str| Vec::new();
    let ip = Balance::IpHash.key(client, none);
    assert!(ip.is_some());
    assert_eq!(
        Balance::IpHash.key(other_port, none),
        ip,
        "the port is not hashed"
    );
    assert_eq!(
        Balance::IpHash.key(mapped, none),
        ip,
        "a mapped IPv4 is the IPv4"
    );
    assert_eq!(Balance::RoundRobin.key(client, none), None);
    assert_eq!(Balance::LeastConn.key(client, none), None);

    let header = Balance::Header("x-user".into());
    let value =
        |v: &'static [u8]| move |name: &str| if name == "x-user" { vec![v] } else { vec![] };
    assert_eq!(header.key(client, none), None);
    assert_eq!(header.key(client, value(b"  ")), None, "empty is missing");
    assert_eq!(
        header.key(client, value(b" alice ")),
        header.key(client, value(b"alice"))
    );
    assert_ne!(
        header.key(client, value(b"alice")),
        header.key(client, value(b"bob"))
    );

    let cookie = Balance::Cookie("sid".into());
    let cookies =
        |v: &'static [u8]| move |name: &str| if name == "cookie" { vec![v] } else { vec![] };
    let alice = cookie.key(client, cookies(b"sid=alice"));
    assert!(alice.is_some());
    assert_eq!(
        cookie.key(client, cookies(b"theme=dark; sid=alice; x=1")),
        alice
    );
    assert_eq!(cookie.key(client, cookies(b"sidx=alice; theme=dark")), None);
    assert_eq!(cookie.key(client, cookies(b"sid=")), None);
    assert_eq!(cookie.key(client, none), None);
}

#[test]
fn every_balancer_puts_every_server_once_with_unusable_ones_last() {
    for balance in [
        Balance::RoundRobin,
        Balance::LeastConn,
        Balance::IpHash,
        Balance::Cookie("c".into()),
    ] {
        for weights in [vec![1, 1, 1, 1, 1], vec![4, 1, 3, 1, 2]] {
            let balancer = Balancer::new(balance.clone(), &servers(&weights), None);
            let mut servers = candidates(&weights);
            servers[1].usable = false;
            servers[3].usable = false;
            for k in 0..50 {
                let order = balancer.order(&servers, Some(key(k)));
                let mut sorted = order.clone();
                sorted.sort_unstable();
                assert_eq!(sorted, [0, 1, 2, 3, 4], "{balance}");
                assert!(
                    order[3..].iter().all(|&i| i == 1 || i == 3),
                    "{balance}: {order:?}"
                );
            }
        }
    }
}
