//! How the health checks' state reaches the choice of a server, and crosses reloads.

use std::net::SocketAddr;
use std::time::Instant;

use super::{Change, HealthCheck};
use crate::upstream::{Group, ServerState};
use crate::UpstreamGroup;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn checked(servers: Vec<SocketAddr>, check: Option<HealthCheck>) -> UpstreamGroup {
    UpstreamGroup {
        name: "g".into(),
        servers,
        health_check: check,
        ..UpstreamGroup::default()
    }
}

fn check() -> HealthCheck {
    HealthCheck {
        fails: 2,
        passes: 1,
        ..HealthCheck::default()
    }
}

#[test]
fn a_server_down_by_its_checks_is_left_out_of_the_rotation_until_it_passes() {
    let config = checked(vec![addr(1), addr(2)], Some(check()));
    let group = Group::carrying(&config, None);
    let targets = group.health_targets().expect("checked");
    let (_, first) = &targets.servers[0];
    let now = Instant::now();
    assert_eq!(first.record(false, &targets.check), None);
    assert_eq!(
        group.rotation_addrs(now),
        [addr(1), addr(2)],
        "one failure of two"
    );
    assert_eq!(first.record(false, &targets.check), Some(Change::WentDown));
    for _ in 0..3 {
        assert_eq!(group.rotation_addrs(now), [addr(2)]);
    }
    assert_eq!(group.health(now)[0], (addr(1), ServerState::Down));
    assert_eq!(first.record(true, &targets.check), Some(Change::CameUp));
    assert_eq!(group.rotation_addrs(now).len(), 2);
    assert_eq!(group.health(now)[0], (addr(1), ServerState::Healthy));
}

#[test]
fn with_every_server_down_the_rotation_is_empty() {
    let config = checked(vec![addr(1), addr(2)], Some(check()));
    let group = Group::carrying(&config, None);
    let targets = group.health_targets().expect("checked");
    for (_, health) in &targets.servers {
        health.record(false, &targets.check);
        health.record(false, &targets.check);
    }
    assert_eq!(group.rotation_addrs(Instant::now()), []);
}

#[test]
fn a_reload_keeps_the_state_of_the_servers_that_stay_and_drops_it_with_the_check() {
    let before = Group::carrying(&checked(vec![addr(1), addr(2)], Some(check())), None);
    let targets = before.health_targets().expect("checked");
    for (_, health) in &targets.servers {
        health.record(false, &targets.check);
        health.record(false, &targets.check);
    }
    let now = Instant::now();
    let after = Group::carrying(
        &checked(vec![addr(2), addr(3)], Some(check())),
        Some(&before),
    );
    assert_eq!(
        after.rotation_addrs(now),
        [addr(3)],
        "2 stays down, 3 is new and up"
    );
    // The count carries too: one pass brings 2 back (passes = 1), seen by both.
    let carried = after.health_targets().expect("checked");
    assert_eq!(
        carried.servers[0].1.record(true, &carried.check),
        Some(Change::CameUp)
    );
    assert!(before.rotation_addrs(now).contains(&addr(2)));
    // A group whose check was removed starts every server up.
    let unchecked = Group::carrying(&checked(vec![addr(1)], None), Some(&before));
    assert!(unchecked.health_targets().is_none());
    assert_eq!(unchecked.rotation_addrs(now), [addr(1)]);
}

#[test]
fn a_group_without_a_health_check_has_no_targets() {
    let group = Group::carrying(&checked(vec![addr(1)], None), None);
    assert!(group.health_targets().is_none());
    assert!(!group.is_checked());
}
