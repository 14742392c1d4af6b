//! The effective configuration: built-in defaults, then the file, then flags (flags win).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use switchyard_core::{Config, Forwarding, Limits, Route, Timeouts};

use crate::duration::{format_duration, ConfigDuration, ConfigTimeout};
use crate::error::ConfigError;
use crate::file::{parse_address, parse_upgrade_protocol, FileConfig, Source};
use switchyard_smol::{AccessLog, PoolConfig, ServerConfig, UpstreamGroup};
use toml::Spanned;

/// Name of the upstream group made from `--upstream` flags.
pub const FLAG_UPSTREAM_GROUP: &str = "default";
/// Default `shutdown_grace`: how long tunnels may continue after SIGTERM.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Default `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default idle upstream connections kept per server.
pub const DEFAULT_POOL_MAX_IDLE: usize = 128;
/// Default lifetime of an idle upstream connection.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What was given on the command line. `None` (or empty) means "not given".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Config file to read.
    pub config: Option<PathBuf>,
    /// `--listen`, replacing the file's `listen`.
    pub listen: Vec<SocketAddr>,
    /// `--upstream`: one group serving the route `/`.
    pub upstream: Vec<SocketAddr>,
    /// `--header-timeout`.
    pub header_timeout: Option<Duration>,
    /// `--idle-timeout`.
    pub idle_timeout: Option<Duration>,
    /// `--connect-timeout`.
    pub connect_timeout: Option<Duration>,
    /// `--read-timeout`.
    pub read_timeout: Option<Duration>,
    /// `--send-timeout`.
    pub send_timeout: Option<Duration>,
    /// `--tunnel-idle-timeout`; `Some(None)` is `0s`, off.
    pub tunnel_idle_timeout: Option<Option<Duration>>,
    /// `--allow-upgrade`, replacing every route's list.
    pub allow_upgrade: Vec<String>,
    /// `--max-header-bytes`.
    pub max_header_bytes: Option<usize>,
    /// `--max-body-bytes`.
    pub max_body_bytes: Option<u64>,
    /// `--workers`.
    pub workers: Option<usize>,
    /// `--shutdown-grace`.
    pub shutdown_grace: Option<Duration>,
    /// `--max-connections`.
    pub max_connections: Option<usize>,
}

/// Everything the proxy runs with, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The config file it came from, if any.
    pub source: Option<PathBuf>,
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// The core's configuration (routes, deadlines, limits, forwarding).
    pub core: Config,
    /// Upstream groups: name and servers.
    pub upstreams: Vec<(String, Vec<SocketAddr>)>,
    /// For each route (same index as `core.routes`), its upstream group.
    pub route_upstream: Vec<usize>,
    /// Executor threads.
    pub workers: usize,
    /// How long tunnels may continue after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Most client connections at once.
    pub max_connections: usize,
    /// Idle upstream connections kept per server.
    pub pool_max_idle_per_server: usize,
    /// How long an idle upstream connection is kept.
    pub pool_idle_timeout: Duration,
}

/// The `Via` pseudonym goes into a header as is: printable ASCII and inner spaces only, so
/// a config value can never inject a line into requests.
fn check_via(via: &str) -> Result<String, String> {
    let printable = via.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
    if via.trim().is_empty() || via.trim() != via || !printable {
        return Err(format!(
            "via: invalid value {via:?}: expected printable ASCII such as \"switchyard\""
        ));
    }
    Ok(via.to_string())
}

fn tunnel_idle(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// The per-route deadlines, each from the flag, else the file's `[connect, read, send]`
/// value and tunnel idle value, else `base`; the connection-wide ones come from `base`.
fn route_deadlines(
    flags: &Overrides,
    [connect, read, send]: [Option<ConfigTimeout>; 3],
    tunnel: Option<ConfigDuration>,
    base: &Timeouts,
) -> Timeouts {
    let pick = |flag: Option<Duration>, file: Option<ConfigTimeout>, base: Duration| {
        flag.or(file.map(|t| t.0)).unwrap_or(base)
    };
    Timeouts {
        connect: pick(flags.connect_timeout, connect, base.connect),
        read: pick(flags.read_timeout, read, base.read),
        send: pick(flags.send_timeout, send, base.send),
        tunnel_idle: flags
            .tunnel_idle_timeout
            .or(tunnel.map(|t| tunnel_idle(t.0)))
            .unwrap_or(base.tunnel_idle),
        ..base.clone()
    }
}

impl Settings {
    /// Reads the config file named in `flags` (if any) and merges the flags over it.
    pub fn load(flags: &Overrides) -> Result<Settings, ConfigError> {
        match &flags.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::new(format!("cannot read {}: {e}", path.display()))
                })?;
                let source = Source {
                    name: path.display().to_string(),
                    text,
                };
                let file = source.parse()?;
                let mut settings = Settings::build(&file, Some(&source), flags)?;
                settings.source = Some(path.clone());
                Ok(settings)
            }
            None => Settings::build(&FileConfig::default(), None, flags),
        }
    }

    /// Merges built-in defaults, `file` and `flags`, and validates the result. `source` is
    /// the file's text, for line numbers in errors.
    pub fn build(
        file: &FileConfig,
        source: Option<&Source>,
        flags: &Overrides,
    ) -> Result<Settings, ConfigError> {
        let at = |span: std::ops::Range<usize>, msg: String| match source {
            Some(src) => src.error_at(span, msg),
            None => ConfigError::new(msg),
        };
        // List elements are checked here rather than by serde so that an error points at
        // the element's own line, not at the line where the list starts.
        let addresses = |key: &str, list: &[Spanned<String>]| {
            list.iter()
                .map(|a| {
                    parse_address(a.get_ref()).map_err(|e| at(a.span(), format!("{key}: {e}")))
                })
                .collect::<Result<Vec<SocketAddr>, ConfigError>>()
        };
        let protocols = |list: &[Spanned<String>]| {
            list.iter()
                .map(|p| {
                    parse_upgrade_protocol(p.get_ref())
                        .map_err(|e| at(p.span(), format!("allow_upgrade: {e}")))
                })
                .collect::<Result<Vec<String>, ConfigError>>()
        };
        let d = &file.defaults;
        let builtin = Timeouts::default();

        let file_listen = addresses("listen", &file.listen)?;
        let listen: Vec<SocketAddr> = if flags.listen.is_empty() {
            file_listen
        } else {
            flags.listen.clone()
        };
        if listen.is_empty() {
            return Err(ConfigError::new(
                "no address to listen on: pass --listen ADDR or set `listen = [\"IP:PORT\"]` in the config file",
            ));
        }

        let timeouts = Timeouts {
            header: flags
                .header_timeout
                .or(d.header_timeout.map(|t| t.0))
                .unwrap_or(builtin.header),
            idle: flags
                .idle_timeout
                .or(d.idle_timeout.map(|t| t.0))
                .unwrap_or(builtin.idle),
            ..route_deadlines(
                flags,
                [d.connect_timeout, d.read_timeout, d.send_timeout],
                d.tunnel_idle_timeout,
                &builtin,
            )
        };
        let default_upgrades: Vec<String> = if !flags.allow_upgrade.is_empty() {
            flags.allow_upgrade.clone()
        } else if let Some(list) = &d.allow_upgrade {
            protocols(list)?
        } else {
            vec!["websocket".to_string()]
        };
        let default_body = flags.max_body_bytes.or(d.max_body_bytes);

        let builtin_limits = Limits::default();
        let limits = Limits {
            max_request_line: d
                .max_request_line
                .unwrap_or(builtin_limits.max_request_line),
            max_header_bytes: flags
                .max_header_bytes
                .or(d.max_header_bytes)
                .unwrap_or(builtin_limits.max_header_bytes),
            max_headers: d.max_headers.unwrap_or(builtin_limits.max_headers),
        };
        for (name, value) in [
            ("max_request_line", limits.max_request_line),
            ("max_header_bytes", limits.max_header_bytes),
            ("max_headers", limits.max_headers),
        ] {
            if value == 0 {
                return Err(ConfigError::new(format!("{name} must be greater than 0")));
            }
        }

        let builtin_forwarding = Forwarding::default();
        let fw = &file.forwarding;
        let forwarding = Forwarding {
            x_forwarded_for: fw
                .x_forwarded_for
                .unwrap_or(builtin_forwarding.x_forwarded_for),
            x_forwarded_proto: fw
                .x_forwarded_proto
                .unwrap_or(builtin_forwarding.x_forwarded_proto),
            forwarded: fw.forwarded.unwrap_or(builtin_forwarding.forwarded),
            via: match &fw.via {
                Some(via) => Some(check_via(via.get_ref()).map_err(|e| at(via.span(), e))?),
                None => builtin_forwarding.via,
            },
        };

        // Upstream groups and routes: from the file, or one group and route `/` from flags.
        let mut upstreams = Vec::new();
        for (name, group) in &file.upstreams {
            if group.get_ref().servers.is_empty() {
                return Err(at(
                    group.span(),
                    format!(
                        "upstream `{name}` has no servers: list at least one IP:PORT in `servers`"
                    ),
                ));
            }
            let servers = addresses("servers", &group.get_ref().servers)?;
            upstreams.push((name.clone(), servers));
        }

        let mut routes = Vec::new();
        let mut route_upstream = Vec::new();
        if !file.routes.is_empty() {
            if !flags.upstream.is_empty() {
                return Err(ConfigError::new(
                    "--upstream cannot be combined with a config file that has [[routes]]: name the servers in [upstreams.NAME] instead",
                ));
            }
            for (i, spanned) in file.routes.iter().enumerate() {
                let r = spanned.get_ref();
                let prefix = r.prefix.get_ref();
                if !prefix.starts_with('/') {
                    return Err(at(
                        r.prefix.span(),
                        format!("prefix `{prefix}` must start with '/'"),
                    ));
                }
                if let Some(first) = file.routes[..i]
                    .iter()
                    .find(|other| other.get_ref().prefix.get_ref() == prefix)
                {
                    let first_line = source
                        .map(|s| {
                            format!(" (first defined on line {})", s.line_of(first.span().start))
                        })
                        .unwrap_or_default();
                    return Err(at(
                        r.prefix.span(),
                        format!("duplicate route prefix `{prefix}`{first_line}"),
                    ));
                }
                let name = r.upstream.get_ref();
                let Some(index) = upstreams.iter().position(|(n, _)| n == name) else {
                    let known: Vec<&str> = upstreams.iter().map(|(n, _)| n.as_str()).collect();
                    let known = if known.is_empty() {
                        "none is defined".to_string()
                    } else {
                        format!("defined: {}", known.join(", "))
                    };
                    return Err(at(
                        r.upstream.span(),
                        format!("route `{prefix}` names unknown upstream `{name}` ({known}); add [upstreams.{name}]"),
                    ));
                };
                let route_upgrades = match &r.allow_upgrade {
                    Some(list) => Some(protocols(list)?),
                    None => None,
                };
                routes.push(Route {
                    prefix: prefix.clone(),
                    allow_upgrade: if flags.allow_upgrade.is_empty() {
                        route_upgrades.unwrap_or_else(|| default_upgrades.clone())
                    } else {
                        flags.allow_upgrade.clone()
                    },
                    timeouts: route_deadlines(
                        flags,
                        [r.connect_timeout, r.read_timeout, r.send_timeout],
                        r.tunnel_idle_timeout,
                        &timeouts,
                    ),
                    max_body_bytes: flags.max_body_bytes.or(r.max_body_bytes).or(default_body),
                });
                route_upstream.push(index);
            }
        } else if !flags.upstream.is_empty() {
            upstreams.push((FLAG_UPSTREAM_GROUP.to_string(), flags.upstream.clone()));
            routes.push(Route {
                prefix: "/".to_string(),
                allow_upgrade: default_upgrades,
                timeouts: timeouts.clone(),
                max_body_bytes: default_body,
            });
            route_upstream.push(upstreams.len() - 1);
        } else {
            return Err(ConfigError::new(
                "no upstream: pass --upstream ADDR, or define [upstreams.NAME] and [[routes]] in a config file",
            ));
        }

        let workers = flags
            .workers
            .or(file.workers)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if workers == 0 {
            return Err(ConfigError::new("workers must be at least 1"));
        }
        let max_connections = flags
            .max_connections
            .or(file.max_connections)
            .unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            return Err(ConfigError::new("max_connections must be at least 1"));
        }

        Ok(Settings {
            source: None,
            listen,
            core: Config {
                routes,
                timeouts,
                limits,
                forwarding,
            },
            upstreams,
            route_upstream,
            workers,
            shutdown_grace: flags
                .shutdown_grace
                .or(file.shutdown_grace.map(|d| d.0))
                .unwrap_or(DEFAULT_SHUTDOWN_GRACE),
            max_connections,
            pool_max_idle_per_server: file
                .pool
                .max_idle_per_server
                .unwrap_or(DEFAULT_POOL_MAX_IDLE),
            pool_idle_timeout: file
                .pool
                .idle_timeout
                .map_or(DEFAULT_POOL_IDLE_TIMEOUT, |t| t.0),
        })
    }

    /// The runtime's configuration.
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            listen: self.listen.clone(),
            core: self.core.clone(),
            upstreams: self
                .upstreams
                .iter()
                .map(|(name, servers)| UpstreamGroup {
                    name: name.clone(),
                    servers: servers.clone(),
                })
                .collect(),
            route_upstream: self.route_upstream.clone(),
            workers: self.workers,
            shutdown_grace: self.shutdown_grace,
            max_connections: self.max_connections,
            pool: PoolConfig {
                max_idle_per_server: self.pool_max_idle_per_server,
                idle_timeout: self.pool_idle_timeout,
            },
            events: std::sync::Arc::new(AccessLog),
        }
    }
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The effective configuration, one setting per line, as `switchyard check` prints it.
impl fmt::Display for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.core.timeouts;
        let l = &self.core.limits;
        let fw = &self.core.forwarding;
        writeln!(f, "listen             {}", join(&self.listen))?;
        writeln!(
            f,
            "workers            {}   max_connections {}   shutdown_grace {}",
            self.workers,
            self.max_connections,
            format_duration(self.shutdown_grace)
        )?;
        writeln!(
            f,
            "client timeouts    header {}   idle {}",
            format_duration(t.header),
            format_duration(t.idle)
        )?;
        writeln!(
            f,
            "limits             max_request_line {}   max_header_bytes {}   max_headers {}",
            l.max_request_line, l.max_header_bytes, l.max_headers
        )?;
        writeln!(
            f,
            "forwarding         x-forwarded-for {}   x-forwarded-proto {}   forwarded {}   via {}",
            on_off(fw.x_forwarded_for),
            on_off(fw.x_forwarded_proto),
            on_off(fw.forwarded),
            fw.via.as_deref().unwrap_or("off")
        )?;
        writeln!(
            f,
            "pool               {} idle per server per worker, closed after {}",
            self.pool_max_idle_per_server,
            format_duration(self.pool_idle_timeout)
        )?;
        for (name, servers) in &self.upstreams {
            let used = self
                .route_upstream
                .iter()
                .any(|&u| self.upstreams[u].0 == *name);
            writeln!(
                f,
                "upstream {name:<9} {} (round-robin){}",
                join(servers),
                if used { "" } else { "   [unused]" }
            )?;
        }
        for (route, &upstream) in self.core.routes.iter().zip(&self.route_upstream) {
            let rt = &route.timeouts;
            writeln!(
                f,
                "route {} -> {}",
                route.prefix, self.upstreams[upstream].0
            )?;
            let upgrades = if route.allow_upgrade.is_empty() {
                "none".to_string()
            } else {
                route.allow_upgrade.join(", ")
            };
            writeln!(f, "    allow_upgrade  {upgrades}")?;
            writeln!(
                f,
                "    timeouts       connect {}   read {}   send {}   tunnel_idle {}",
                format_duration(rt.connect),
                format_duration(rt.read),
                format_duration(rt.send),
                rt.tunnel_idle.map_or("off".to_string(), format_duration)
            )?;
            writeln!(
                f,
                "    max_body_bytes {}",
                route
                    .max_body_bytes
                    .map_or("unlimited".to_string(), |b| b.to_string())
            )?;
        }
        Ok(())
    }
}
