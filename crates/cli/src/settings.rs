//! The effective configuration: built-in defaults, then the file, then flags (flags win).

mod display;
mod groups;
#[cfg(test)]
mod tests;
mod tls;
mod upstreams;

pub use tls::TlsSettings;
pub use upstreams::{parse_server, DEFAULT_RESOLVE_INTERVAL, MAX_WEIGHT};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use switchyard_core::{Config, Forwarding, Limits, Route, Timeouts, WebSocketPolicy};

use crate::duration::{ConfigTimeout, DurationOrOff};
use crate::error::ConfigError;
use crate::file::{parse_address, parse_upgrade_protocol, FileConfig, Source};
use switchyard_smol::{AccessLog, PoolConfig, ProxyProtocol, ServerConfig, UpstreamGroup};
use toml::Spanned;

pub use groups::GroupOptions;

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
    /// `--listen-tls`: with `tls_cert` and `tls_key`, replacing the file's `[[tls]]`.
    pub listen_tls: Vec<SocketAddr>,
    /// `--tls-cert`, paired with `tls_key` by position.
    pub tls_cert: Vec<PathBuf>,
    /// `--tls-key`.
    pub tls_key: Vec<PathBuf>,
    /// `--admin-listen`, replacing the file's `admin_listen`.
    pub admin_listen: Option<SocketAddr>,
    /// `--upgrade-socket`, replacing the file's `upgrade_socket`.
    pub upgrade_socket: Option<PathBuf>,
    /// `--accept-proxy-protocol`: every listener requires a PROXY protocol header.
    pub accept_proxy_protocol: bool,
    /// `--upstream`: one group serving the route `/` (`IP:PORT` or `HOST:PORT`).
    pub upstream: Vec<String>,
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
    /// `--tunnel-idle-timeout`; `Some(None)` is `off`.
    pub tunnel_idle_timeout: Option<Option<Duration>>,
    /// `--ws-ping-interval`; `Some(None)` is `off`.
    pub ws_ping_interval: Option<Option<Duration>>,
    /// `--ws-ping-timeout`.
    pub ws_ping_timeout: Option<Duration>,
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
    /// `--drain-timeout`; `Some(None)` is `off`.
    pub drain_timeout: Option<Option<Duration>>,
    /// `--max-connections`.
    pub max_connections: Option<usize>,
}

/// Everything the proxy runs with, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The config file it came from, if any.
    pub source: Option<PathBuf>,
    /// Addresses to listen on (plain HTTP).
    pub listen: Vec<SocketAddr>,
    /// Listeners that speak TLS, with their certificates (loaded and checked).
    pub tls: Vec<TlsSettings>,
    /// Where the admin endpoints are served; `None`: nowhere.
    pub admin_listen: Option<SocketAddr>,
    /// The Unix socket on which a running process hands its listening sockets to its
    /// successor; `None`: no handover.
    pub upgrade_socket: Option<PathBuf>,
    /// The core's configuration (routes, deadlines, limits, forwarding).
    pub core: Config,
    /// Upstream groups: name, servers (host names resolved), weights and balancer.
    pub upstreams: Vec<UpstreamGroup>,
    /// Listeners that require a PROXY protocol header, and groups sent one.
    pub proxy_protocol: ProxyProtocol,
    /// For each route (same index as `core.routes`), its upstream group.
    pub route_upstream: Vec<usize>,
    /// Executor threads.
    pub workers: usize,
    /// How long tunnels may continue after a shutdown signal.
    pub shutdown_grace: Duration,
    /// After a reload, how long the connections of the generation before may live;
    /// `None`: until they end.
    pub drain_timeout: Option<Duration>,
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

/// The per-route deadlines, each from the flag, else the file's `[connect, read, send]`
/// value and tunnel idle value, else `base`; the connection-wide ones come from `base`.
fn route_deadlines(
    flags: &Overrides,
    [connect, read, send]: [Option<ConfigTimeout>; 3],
    tunnel: Option<DurationOrOff>,
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
            .or(tunnel.map(|t| t.0))
            .unwrap_or(base.tunnel_idle),
        ..base.clone()
    }
}

/// The per-route WebSocket policy, each setting from the flag (pings only), else the
/// file's `ws_validate`, `ws_ping_interval` and `ws_ping_timeout`, else `base`.
fn route_websocket(
    flags: &Overrides,
    validate: Option<bool>,
    ping_interval: Option<DurationOrOff>,
    ping_timeout: Option<ConfigTimeout>,
    base: &WebSocketPolicy,
) -> WebSocketPolicy {
    WebSocketPolicy {
        validate: validate.unwrap_or(base.validate),
        ping_interval: flags
            .ws_ping_interval
            .or(ping_interval.map(|p| p.0))
            .unwrap_or(base.ping_interval),
        ping_timeout: flags
            .ws_ping_timeout
            .or(ping_timeout.map(|t| t.0))
            .unwrap_or(base.ping_timeout),
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

        let mut file_listen = addresses("listen", &file.listen)?;
        let mut accept_proxy = Vec::new();
        for listener in &file.listeners {
            let section = listener.get_ref();
            let text = &section.address;
            let address = parse_address(text.get_ref())
                .map_err(|e| at(text.span(), format!("listeners: address: {e}")))?;
            if file_listen.contains(&address) {
                return Err(at(
                    text.span(),
                    format!("listeners: {address} is listed twice (in `listen` or another [[listeners]])"),
                ));
            }
            file_listen.push(address);
            if section.proxy_protocol {
                accept_proxy.push(address);
            }
        }
        let listen: Vec<SocketAddr> = if flags.listen.is_empty() {
            file_listen
        } else {
            // The flags replace every listener of the file, and their settings with them.
            accept_proxy.clear();
            flags.listen.clone()
        };
        let tls = tls::listeners(file, source, flags, &listen)?;
        // `proxy_protocol = true` of a file's [[tls]] (the header comes before TLS).
        accept_proxy.extend(
            tls.iter()
                .filter(|t| t.proxy_protocol)
                .flat_map(|t| t.listen.iter().copied()),
        );
        if flags.accept_proxy_protocol {
            // Every listener the flags name, TLS ones too (the header comes before TLS).
            accept_proxy = listen.clone();
            accept_proxy.extend(tls.iter().flat_map(|t| t.listen.iter().copied()));
        }
        if listen.is_empty() && tls.is_empty() {
            return Err(ConfigError::new(
                "no address to listen on: pass --listen ADDR or set `listen = [\"IP:PORT\"]` in the config file",
            ));
        }
        let admin_listen = match (flags.admin_listen, &file.admin_listen) {
            (Some(flag), _) => Some(flag),
            (None, Some(text)) => Some(
                parse_address(text.get_ref())
                    .map_err(|e| at(text.span(), format!("admin_listen: {e}")))?,
            ),
            (None, None) => None,
        };
        if let Some(admin) = admin_listen.filter(|admin| admin.port() != 0) {
            if listen.contains(&admin) || tls.iter().any(|t| t.listen.contains(&admin)) {
                let message = format!(
                    "admin_listen {admin} is also a listen address: the admin endpoints need an address of their own"
                );
                return Err(match (&file.admin_listen, flags.admin_listen) {
                    (Some(text), None) => at(text.span(), message),
                    _ => ConfigError::new(message),
                });
            }
        }

        let upgrade_socket = match (&flags.upgrade_socket, &file.upgrade_socket) {
            (Some(flag), _) if flag.as_os_str().is_empty() => {
                return Err(ConfigError::new("--upgrade-socket: empty path"))
            }
            (Some(flag), _) => Some(flag.clone()),
            (None, Some(path)) if path.get_ref().as_os_str().is_empty() => {
                return Err(at(path.span(), "upgrade_socket: empty path".into()))
            }
            (None, Some(path)) => Some(path.get_ref().clone()),
            (None, None) => None,
        };

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
        let default_websocket = route_websocket(
            flags,
            d.ws_validate,
            d.ws_ping_interval,
            d.ws_ping_timeout,
            &WebSocketPolicy::default(),
        );

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
        let resolve_interval = d.resolve_interval.map_or(DEFAULT_RESOLVE_INTERVAL, |t| t.0);
        let mut upstreams = Vec::new();
        let mut send_proxy = Vec::new();
        for (name, group) in &file.upstreams {
            if group.get_ref().send_proxy_protocol == Some(true) {
                send_proxy.push(name.clone());
            }
            let mut upstream = upstreams::from_file(name, group, resolve_interval, &at)?;
            let base = source
                .and_then(|s| std::path::Path::new(&s.name).parent())
                .unwrap_or(std::path::Path::new(""));
            let options = groups::options(name, group.get_ref(), base, &at)?;
            upstream.health_check = options.health_check;
            upstream.source = options.source;
            upstream.tls = options.tls;
            upstreams.push(upstream);
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
                let Some(index) = upstreams.iter().position(|g| g.name == *name) else {
                    let known: Vec<&str> = upstreams.iter().map(|g| g.name.as_str()).collect();
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
                    websocket: route_websocket(
                        flags,
                        r.ws_validate,
                        r.ws_ping_interval,
                        r.ws_ping_timeout,
                        &default_websocket,
                    ),
                });
                route_upstream.push(index);
            }
        } else if !flags.upstream.is_empty() {
            upstreams.push(upstreams::from_flags(
                FLAG_UPSTREAM_GROUP,
                &flags.upstream,
                resolve_interval,
            )?);
            routes.push(Route {
                prefix: "/".to_string(),
                allow_upgrade: default_upgrades,
                timeouts: timeouts.clone(),
                max_body_bytes: default_body,
                websocket: default_websocket,
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
            tls,
            admin_listen,
            upgrade_socket,
            proxy_protocol: ProxyProtocol {
                accept_on: accept_proxy,
                send_to: send_proxy,
            },
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
            drain_timeout: flags
                .drain_timeout
                .or(file.drain_timeout.map(|d| d.0))
                .unwrap_or(None),
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
        let tls_listen = self.tls.iter().flat_map(|t| t.listen.iter().copied());
        ServerConfig {
            listen: self.listen.iter().copied().chain(tls_listen).collect(),
            tls: self.tls.iter().flat_map(TlsSettings::listeners).collect(),
            admin_listen: self.admin_listen,
            core: self.core.clone(),
            upstreams: self.upstreams.clone(),
            route_upstream: self.route_upstream.clone(),
            workers: self.workers,
            shutdown_grace: self.shutdown_grace,
            max_connections: self.max_connections,
            pool: PoolConfig {
                max_idle_per_server: self.pool_max_idle_per_server,
                idle_timeout: self.pool_idle_timeout,
            },
            events: std::sync::Arc::new(AccessLog),
            drain_timeout: self.drain_timeout,
            upgrade_socket: self.upgrade_socket.clone(),
            proxy_protocol: self.proxy_protocol.clone(),
        }
    }
}
