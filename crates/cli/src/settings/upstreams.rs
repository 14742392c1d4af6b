//! `[upstreams.NAME]` and `--upstream`: servers (addresses, host names resolved here, at
//! start and on every reload), weights and the balancer.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use switchyard_smol::{resolve, Balance, ServerName, UpstreamGroup};
use toml::Spanned;

use crate::error::ConfigError;
use crate::file::{ServerEntry, UpstreamSection};

/// Default `resolve_interval`.
pub const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);
/// Largest weight of a server.
pub const MAX_WEIGHT: u32 = 1000;

/// Checks the shape of a `--upstream` value: `IP:PORT` or `HOST:PORT` (resolved later,
/// when the settings are built).
pub fn parse_server(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.parse::<SocketAddr>().is_ok() {
        return Ok(text.to_string());
    }
    let valid = text.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && port.parse::<u16>().is_ok()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    });
    if valid {
        Ok(text.to_string())
    } else {
        Err(format!(
            "invalid server `{text}`: expected IP:PORT or HOST:PORT such as 127.0.0.1:9000 or app:9000"
        ))
    }
}

/// The balancer named by `balance` and `hash`.
fn parse_balance(balance: Option<&str>, hash: Option<&str>) -> Result<Balance, String> {
    let hashed = |hash: &str| match hash.split_once(':') {
        Some(("header", name)) if is_token(name) => Ok(Balance::Header(name.to_ascii_lowercase())),
        Some(("cookie", name)) if is_token(name) => Ok(Balance::Cookie(name.to_string())),
        _ => Err(format!(
            "hash: invalid value `{hash}`: expected header:NAME or cookie:NAME"
        )),
    };
    match (balance, hash) {
        (None | Some("round_robin"), None) => Ok(Balance::RoundRobin),
        (Some("least_conn"), None) => Ok(Balance::LeastConn),
        (Some("ip_hash"), None) => Ok(Balance::IpHash),
        (None | Some("hash"), Some(hash)) => hashed(hash),
        (Some("hash"), None) => Err(
            "balance = \"hash\" needs `hash = \"header:NAME\"` or `hash = \"cookie:NAME\"`"
                .to_string(),
        ),
        (Some(other @ ("round_robin" | "least_conn" | "ip_hash")), Some(_)) => Err(format!(
            "`hash` goes with balance = \"hash\", not \"{other}\""
        )),
        (Some(other), _) => Err(format!(
            "balance: unknown balancer `{other}`: expected round_robin, least_conn, ip_hash or hash"
        )),
    }
}

fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

/// Adds `address` (an `IP:PORT`, or a `HOST:PORT` resolved now: every address is a
/// server) to `group` with `weight`.
fn add(group: &mut UpstreamGroup, address: &str, weight: u32) -> Result<(), String> {
    let address = parse_server(address)?;
    if !(1..=MAX_WEIGHT).contains(&weight) {
        return Err(format!(
            "server `{address}`: weight {weight} is out of range 1 to {MAX_WEIGHT}"
        ));
    }
    let literal = address.parse::<SocketAddr>().ok();
    let addrs = match literal {
        Some(addr) => vec![addr],
        None => resolve(&address).map_err(|e| e.to_string())?,
    };
    for &addr in &addrs {
        if group.servers.contains(&addr) {
            return Err(format!(
                "server `{address}`: {addr} is listed twice in the group"
            ));
        }
        group.servers.push(addr);
        group.weights.push(weight);
    }
    if literal.is_none() {
        group.names.push(ServerName {
            name: address,
            weight,
            addrs,
        });
    }
    Ok(())
}

/// The group `[upstreams.NAME]` describes, its names resolved; errors point into the
/// file with `at`.
pub(super) fn from_file(
    name: &str,
    section: &Spanned<UpstreamSection>,
    default_interval: Duration,
    at: &dyn Fn(Range<usize>, String) -> ConfigError,
) -> Result<UpstreamGroup, ConfigError> {
    let s = section.get_ref();
    if s.servers.is_empty() {
        return Err(at(
            section.span(),
            format!("upstream `{name}` has no servers: list at least one IP:PORT or HOST:PORT in `servers`"),
        ));
    }
    fn text(value: &Option<Spanned<String>>) -> Option<&str> {
        value.as_ref().map(|v| v.get_ref().as_str())
    }
    let balance = parse_balance(text(&s.balance), text(&s.hash)).map_err(|e| {
        let span = s.hash.as_ref().or(s.balance.as_ref()).map(Spanned::span);
        at(
            span.unwrap_or(section.span()),
            format!("upstream `{name}`: {e}"),
        )
    })?;
    let mut group = UpstreamGroup {
        name: name.to_string(),
        balance,
        resolve_interval: s.resolve_interval.map_or(default_interval, |t| t.0),
        ..UpstreamGroup::default()
    };
    for entry in &s.servers {
        let (address, weight) = match entry.get_ref() {
            ServerEntry::Address(address) => (address.as_str(), 1),
            ServerEntry::Weighted(server) => (server.address.as_str(), server.weight.unwrap_or(1)),
        };
        add(&mut group, address, weight)
            .map_err(|e| at(entry.span(), format!("upstream `{name}`: {e}")))?;
    }
    Ok(group)
}

/// The group `--upstream` makes, named `name`.
pub(super) fn from_flags(
    name: &str,
    servers: &[String],
    interval: Duration,
) -> Result<UpstreamGroup, ConfigError> {
    let mut group = UpstreamGroup {
        name: name.to_string(),
        resolve_interval: interval,
        ..UpstreamGroup::default()
    };
    for server in servers {
        add(&mut group, server, 1).map_err(|e| ConfigError::new(format!("--upstream: {e}")))?;
    }
    Ok(group)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balancers_are_named_by_balance_and_hash() {
        assert_eq!(parse_balance(None, None), Ok(Balance::RoundRobin));
        assert_eq!(
            parse_balance(Some("least_conn"), None),
            Ok(Balance::LeastConn)
        );
        assert_eq!(parse_balance(Some("ip_hash"), None), Ok(Balance::IpHash));
        assert_eq!(
            parse_balance(None, Some("header:X-User")),
            Ok(Balance::Header("x-user".into()))
        );
        assert_eq!(
            parse_balance(Some("hash"), Some("cookie:sid")),
            Ok(Balance::Cookie("sid".into()))
        );
        for (balance, hash, expected) in [
            (Some("hash"), None, "needs `hash"),
            (
                Some("ip_hash"),
                Some("header:x"),
                "goes with balance = \"hash\"",
            ),
            (Some("leastconn"), None, "unknown balancer `leastconn`"),
            (None, Some("query:x"), "expected header:NAME or cookie:NAME"),
            (None, Some("header:"), "expected header:NAME"),
            (None, Some("header:a b"), "expected header:NAME"),
        ] {
            let error = parse_balance(balance, hash).unwrap_err();
            assert!(error.contains(expected), "{balance:?} {hash:?}: {error}");
        }
    }

    #[test]
    fn servers_are_addresses_or_host_names_with_a_port() {
        assert_eq!(
            parse_server(" 127.0.0.1:9000 ").as_deref(),
            Ok("127.0.0.1:9000")
        );
        assert_eq!(parse_server("[::1]:9000").as_deref(), Ok("[::1]:9000"));
        assert_eq!(
            parse_server("app-1.internal:80").as_deref(),
            Ok("app-1.internal:80")
        );
        for bad in [
            "app",
            "app:",
            "app:http",
            ":80",
            "a b:80",
            "127.0.0.1:70000",
        ] {
            assert!(parse_server(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_name_adds_each_of_its_addresses_with_its_weight() {
        let mut group = UpstreamGroup::default();
        add(&mut group, "10.0.0.5:9000", 2).unwrap();
        add(&mut group, "localhost:9000", 3).unwrap();
        assert_eq!(group.servers[0], "10.0.0.5:9000".parse().unwrap());
        assert!(group.servers.len() >= 2);
        assert!(group.servers[1..]
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 9000));
        assert_eq!(group.weights[0], 2);
        assert!(group.weights[1..].iter().all(|&w| w == 3));
        assert_eq!(group.names.len(), 1);
        assert_eq!(group.names[0].name, "localhost:9000");
        assert_eq!(group.names[0].addrs, group.servers[1..]);
        let twice = add(&mut group, "10.0.0.5:9000", 1).unwrap_err();
        assert!(twice.contains("listed twice"), "{twice}");
        let heavy = add(&mut group, "10.0.0.6:9000", 1001).unwrap_err();
        assert!(heavy.contains("out of range"), "{heavy}");
        let unknown = add(&mut group, "no-such-host.invalid:80", 1).unwrap_err();
        assert!(
            unknown.contains("cannot resolve `no-such-host.invalid:80`"),
            "{unknown}"
        );
    }
}
