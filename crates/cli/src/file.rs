//! The `switchyard.toml` file format, read with serde. Every table refuses unknown keys, and
//! every error is turned into one line naming the file, the line and the key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::duration::{ConfigDuration, ConfigTimeout, DurationOrOff};
use crate::error::ConfigError;

/// The whole file. Top-level keys come before the first `[table]`, as TOML requires.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Addresses to accept client connections on.
    #[serde(default)]
    pub listen: Vec<Spanned<String>>,
    /// Listeners with settings of their own (`[[listeners]]`), beside `listen`.
    #[serde(default)]
    pub listeners: Vec<Spanned<ListenerSection>>,
    /// Where the admin endpoints (`/metrics`, `/status`, `/status.json`, `/healthz`,
    /// `/readyz`) are served.
    pub admin_listen: Option<Spanned<String>>,
    /// The Unix socket for zero-downtime upgrades.
    pub upgrade_socket: Option<Spanned<PathBuf>>,
    /// Executor threads.
    pub workers: Option<usize>,
    /// How long open tunnels may continue after a shutdown signal.
    pub shutdown_grace: Option<ConfigDuration>,
    /// After a reload (SIGHUP), how long connections of the configuration before may
    /// live; `off`: until they end.
    pub drain_timeout: Option<DurationOrOff>,
    /// Most client connections served at once.
    pub max_connections: Option<usize>,
    /// Settings every route starts from.
    #[serde(default)]
    pub defaults: Defaults,
    /// The upstream keep-alive pool.
    #[serde(default)]
    pub pool: PoolSection,
    /// Forwarding headers added towards upstreams.
    #[serde(default)]
    pub forwarding: ForwardingSection,
    /// Upstream groups by name.
    #[serde(default)]
    pub upstreams: BTreeMap<String, Spanned<UpstreamSection>>,
    /// Routes, matched by longest prefix.
    #[serde(default)]
    pub routes: Vec<Spanned<RouteSection>>,
    /// `[[tls]]`: listeners that speak TLS, each with its certificates.
    #[serde(default)]
    pub tls: Vec<Spanned<TlsSection>>,
}

/// `[[tls]]`: addresses that accept TLS clients and the certificates they serve (the
/// first is the default; the others are chosen by the client's SNI name).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Addresses, `IP:PORT`, beside the plain `listen` ones.
    pub listen: Vec<Spanned<String>>,
    /// Certificate chains and keys, PEM files (relative to the config file's folder).
    pub certificates: Vec<Spanned<CertificateEntry>>,
    /// Require a PROXY protocol (v1 or v2) header before the TLS handshake.
    #[serde(default)]
    pub proxy_protocol: bool,
}

/// One `{ cert = "…", key = "…" }` of a `[[tls]]` listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateEntry {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `[defaults]`: connection-wide settings and what each route inherits.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Whole request head deadline (connection-wide).
    pub header_timeout: Option<ConfigTimeout>,
    /// Kept-alive client idle deadline (connection-wide).
    pub idle_timeout: Option<ConfigTimeout>,
    /// Upstream connect deadline.
    pub connect_timeout: Option<ConfigTimeout>,
    /// Upstream silence deadline.
    pub read_timeout: Option<ConfigTimeout>,
    /// Stalled write deadline.
    pub send_timeout: Option<ConfigTimeout>,
    /// Tunnel idle deadline; `"off"` or `"0s"` is off.
    pub tunnel_idle_timeout: Option<DurationOrOff>,
    /// Upgrade protocols forwarded.
    pub allow_upgrade: Option<Vec<Spanned<String>>>,
    /// Largest request body.
    pub max_body_bytes: Option<u64>,
    /// Check WebSocket frames.
    pub ws_validate: Option<bool>,
    /// Ping a silent WebSocket side after this long; `"off"` or `"0s"` is off.
    pub ws_ping_interval: Option<DurationOrOff>,
    /// How long a pinged WebSocket side may stay silent.
    pub ws_ping_timeout: Option<ConfigTimeout>,
    /// Largest head.
    pub max_header_bytes: Option<usize>,
    /// Longest request line.
    pub max_request_line: Option<usize>,
    /// Most header fields.
    pub max_headers: Option<usize>,
    /// How often upstream host names are resolved again (a group's own wins).
    pub resolve_interval: Option<ConfigTimeout>,
}

/// `[pool]`: idle upstream connections kept for reuse.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    /// Idle connections kept per upstream server.
    pub max_idle_per_server: Option<usize>,
    /// How long an idle connection is kept.
    pub idle_timeout: Option<ConfigTimeout>,
}

/// `[forwarding]`: which forwarding headers are added.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardingSection {
    /// Append the client address to `X-Forwarded-For`.
    pub x_forwarded_for: Option<bool>,
    /// Set `X-Forwarded-Proto`.
    pub x_forwarded_proto: Option<bool>,
    /// Append an RFC 7239 `Forwarded` element.
    pub forwarded: Option<bool>,
    /// Append `Via: 1.1 <via>`.
    pub via: Option<Spanned<String>>,
}

/// `[upstreams.NAME]`: a group of servers and how connections are spread over them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// The servers: `IP:PORT` or `HOST:PORT`, or `{ address = "…", weight = 3 }`.
    pub servers: Vec<Spanned<ServerEntry>>,
    /// `round_robin` (the default), `least_conn`, `ip_hash` or `hash`.
    pub balance: Option<Spanned<String>>,
    /// What `balance = "hash"` hashes: `header:NAME` or `cookie:NAME` (implies `hash`).
    pub hash: Option<Spanned<String>>,
    /// How often host names among the servers are resolved again.
    pub resolve_interval: Option<ConfigTimeout>,
    /// Active health checks of each server.
    pub health_check: Option<Spanned<HealthCheckSection>>,
    /// Source addresses of upstream connections, used in turn.
    pub source: Option<Vec<Spanned<String>>>,
    /// Begin every new connection to it with a PROXY protocol v2 header.
    pub send_proxy_protocol: Option<bool>,
    /// TLS to its servers: `true` (the system's roots) or `{ ca, server_name, … }`.
    pub tls: Option<Spanned<UpstreamTlsEntry>>,
}

/// `tls = …` of an upstream group.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum UpstreamTlsEntry {
    /// `true`: TLS, verified against the system's roots; `false`: plain TCP.
    Enabled(bool),
    /// `{ ca = "FILE", server_name = "NAME", insecure_skip_verify = true }`.
    Table(UpstreamTlsSection),
}

/// `tls = { … }` of an upstream group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsSection {
    /// CA certificates (PEM) the servers' certificates are verified against, relative
    /// to the config file's folder; default: the system's roots.
    pub ca: Option<PathBuf>,
    /// The name the certificates must be valid for; default: each server's host name,
    /// or its IP address.
    pub server_name: Option<String>,
    /// Take any certificate: no verification at all.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// One element of `servers`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ServerEntry {
    /// `"IP:PORT"` or `"HOST:PORT"`, weight 1.
    Address(String),
    /// `{ address = "HOST:PORT", weight = 3 }`.
    Weighted(WeightedServer),
}

/// `{ address = "…", weight = … }` in `servers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedServer {
    /// `IP:PORT` or `HOST:PORT`.
    pub address: String,
    /// Its weight, 1 to 1000 (default 1).
    pub weight: Option<u32>,
}

/// `health_check = { … }` of an upstream group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSection {
    /// Request target of the `GET`.
    pub path: Option<Spanned<String>>,
    /// Time between checks of a server.
    pub interval: Option<ConfigTimeout>,
    /// How long a check may take.
    pub timeout: Option<ConfigTimeout>,
    /// Failures in a row that take a server out.
    pub fails: Option<Spanned<u32>>,
    /// Passes in a row that bring it back.
    pub passes: Option<Spanned<u32>>,
    /// Statuses that pass (default: any 2xx or 3xx).
    pub status: Option<Vec<Spanned<u16>>>,
    /// `Host` header of the checks (default: the server's address).
    pub host: Option<Spanned<String>>,
}

/// `[[listeners]]`: an address to accept clients on, with settings of its own. Further
/// per-listener settings (TLS) are keys of this table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSection {
    /// `IP:PORT`.
    pub address: Spanned<String>,
    /// Require a PROXY protocol (v1 or v2) header before anything else.
    #[serde(default)]
    pub proxy_protocol: bool,
}

/// `[[routes]]`: a path prefix and where it goes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// Path prefix, starting with `/`.
    pub prefix: Spanned<String>,
    /// Name of an `[upstreams.NAME]` group.
    pub upstream: Spanned<String>,
    /// Upstream connect deadline.
    pub connect_timeout: Option<ConfigTimeout>,
    /// Upstream silence deadline.
    pub read_timeout: Option<ConfigTimeout>,
    /// Stalled write deadline.
    pub send_timeout: Option<ConfigTimeout>,
    /// Tunnel idle deadline; `"off"` or `"0s"` is off.
    pub tunnel_idle_timeout: Option<DurationOrOff>,
    /// Upgrade protocols forwarded on this route.
    pub allow_upgrade: Option<Vec<Spanned<String>>>,
    /// Largest request body on this route.
    pub max_body_bytes: Option<u64>,
    /// Check WebSocket frames on this route.
    pub ws_validate: Option<bool>,
    /// Ping a silent WebSocket side after this long; `"off"` or `"0s"` is off.
    pub ws_ping_interval: Option<DurationOrOff>,
    /// How long a pinged WebSocket side may stay silent.
    pub ws_ping_timeout: Option<ConfigTimeout>,
}

/// Parses `IP:PORT` (`127.0.0.1:9000`, `[::1]:9000`) with an error that shows the form.
pub fn parse_address(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse().map_err(|_| {
        format!("invalid address `{text}`: expected IP:PORT such as 127.0.0.1:9000 or [::1]:9000")
    })
}

/// Checks an upgrade protocol name: an HTTP token, optionally `/version`, never `h2c`.
pub fn parse_upgrade_protocol(text: &str) -> Result<String, String> {
    let is_tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    let (name, version) = match text.split_once('/') {
        Some((name, version)) => (name, Some(version)),
        None => (text, None),
    };
    let valid = !name.is_empty()
        && name.chars().all(is_tchar)
        && version.map_or(true, |v| !v.is_empty() && v.chars().all(is_tchar));
    if !valid {
        return Err(format!(
            "invalid upgrade protocol `{text}`: expected a name such as `websocket`"
        ));
    }
    if name.eq_ignore_ascii_case("h2c") {
        return Err(
            "upgrade protocol `h2c` cannot be allowed: forwarding it lets clients smuggle requests past the proxy"
                .to_string(),
        );
    }
    Ok(text.to_string())
}

/// A config file's name and text, to turn byte offsets into line numbers.
#[derive(Debug, Clone)]
pub struct Source {
    /// How the file is named in messages (the path as given).
    pub name: String,
    /// The file's contents.
    pub text: String,
}

impl Source {
    /// The 1-based line holding byte `offset`.
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// An error located at `span`: `name:line: message`.
    pub fn error_at(&self, span: Range<usize>, message: impl fmt::Display) -> ConfigError {
        ConfigError::new(format!(
            "{}:{}: {message}",
            self.name,
            self.line_of(span.start)
        ))
    }

    /// Parses the file.
    pub fn parse(&self) -> Result<FileConfig, ConfigError> {
        toml::from_str(&self.text).map_err(|err| self.describe(&err))
    }

    /// One line for a TOML error: the file, the line, the key when the message does not
    /// already name it, and the parser's message without its source excerpt.
    fn describe(&self, err: &toml::de::Error) -> ConfigError {
        let mut message = err.message().trim().replace('\n', " ");
        if message.starts_with("unknown field `header_timeout`")
            || message.starts_with("unknown field `idle_timeout`")
        {
            // They run before a request is routed, so they cannot be per route.
            message.push_str(" (header_timeout and idle_timeout apply to whole connections: set them in [defaults])");
        }
        let Some(span) = err.span() else {
            return ConfigError::new(format!("{}: {message}", self.name));
        };
        let line_no = self.line_of(span.start);
        let line = self.text.lines().nth(line_no - 1).unwrap_or("");
        match key_of(line) {
            Some(key) if !message.contains(&format!("`{key}`")) => {
                ConfigError::new(format!("{}:{line_no}: {key}: {message}", self.name))
            }
            _ => ConfigError::new(format!("{}:{line_no}: {message}", self.name)),
        }
    }
}

/// The key assigned on a `key = value` line, if the line is one.
fn key_of(line: &str) -> Option<&str> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let bare = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.';
    (!key.is_empty() && key.chars().all(bare)).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> Source {
        Source {
            name: "switchyard.toml".into(),
            text: text.into(),
        }
    }

    #[test]
    fn unknown_key_names_the_key_and_the_line() {
        let text = "listen = [\"127.0.0.1:8080\"]\n\n[upstreams.backend]\nservers = [\"127.0.0.1:9000\"]\n\n[[routes]]\nprefx = \"/chat/\"\nupstream = \"backend\"\n";
        let err = source(text).parse().unwrap_err().to_string();
        assert!(
            err.starts_with("switchyard.toml:7: unknown field `prefx`"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn bad_duration_names_the_key_and_the_line() {
        let text = "[defaults]\nread_timeout = \"60\"\n";
        let err = source(text).parse().unwrap_err().to_string();
        assert!(
            err.starts_with("switchyard.toml:2: read_timeout: invalid duration `60`"),
            "{err}"
        );
    }

    #[test]
    fn zero_timeout_is_refused_but_zero_tunnel_idle_is_off() {
        let err = source("[defaults]\nsend_timeout = \"0s\"\n")
            .parse()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("switchyard.toml:2: send_timeout:"), "{err}");
        let ok = source("[defaults]\ntunnel_idle_timeout = \"0s\"\n")
            .parse()
            .unwrap();
        assert_eq!(ok.defaults.tunnel_idle_timeout, Some(DurationOrOff(None)));
    }

    #[test]
    fn websocket_keys_are_read_in_defaults_and_routes() {
        let text = "[defaults]\nws_validate = false\nws_ping_interval = \"30s\"\nws_ping_timeout = \"5s\"\n[[routes]]\nprefix = \"/\"\nupstream = \"a\"\nws_ping_interval = \"off\"\n";
        let file = source(text).parse().unwrap();
        let d = &file.defaults;
        assert_eq!(d.ws_validate, Some(false));
        assert_eq!(
            d.ws_ping_interval,
            Some(DurationOrOff(Some(std::time::Duration::from_secs(30))))
        );
        assert_eq!(d.ws_ping_timeout.unwrap().0.as_secs(), 5);
        let route = file.routes[0].get_ref();
        assert_eq!(route.ws_ping_interval, Some(DurationOrOff(None)));
        assert_eq!(route.ws_ping_timeout, None);
    }

    #[test]
    fn bad_websocket_values_name_the_key_and_the_line() {
        for (text, start) in [
            (
                "[defaults]\nws_ping_timeout = \"0s\"\n",
                "switchyard.toml:2: ws_ping_timeout: a timeout of `0s` is not allowed here",
            ),
            (
                "[defaults]\n\nws_ping_interval = 30\n",
                "switchyard.toml:3: ws_ping_interval: invalid duration 30: write it as a string with a unit, like \"30s\"",
            ),
            (
                "[defaults]\nws_validate = \"yes\"\n",
                "switchyard.toml:2: ws_validate: invalid type: string \"yes\", expected a boolean",
            ),
            (
                "[[routes]]\nprefix = \"/\"\nupstream = \"a\"\nws_ping_interval = \"never\"\n",
                "switchyard.toml:4: ws_ping_interval: invalid duration `never`: expected `off` or",
            ),
        ] {
            let err = source(text).parse().unwrap_err().to_string();
            assert!(err.starts_with(start), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn connection_wide_timeouts_in_a_route_say_where_they_belong() {
        let text = "[[routes]]\nprefix = \"/\"\nupstream = \"a\"\nidle_timeout = \"5s\"\n";
        let err = source(text).parse().unwrap_err().to_string();
        assert!(
            err.starts_with("switchyard.toml:4: unknown field `idle_timeout`"),
            "{err}"
        );
        assert!(err.ends_with("set them in [defaults])"), "{err}");
    }

    #[test]
    fn h2c_is_refused_in_any_case() {
        assert!(parse_upgrade_protocol("h2c").is_err());
        assert!(parse_upgrade_protocol("H2C").is_err());
        assert!(parse_upgrade_protocol("h2c/1").is_err());
        assert_eq!(parse_upgrade_protocol("websocket").unwrap(), "websocket");
        assert_eq!(parse_upgrade_protocol("TLS/1.2").unwrap(), "TLS/1.2");
        assert!(parse_upgrade_protocol("web socket").is_err());
        assert!(parse_upgrade_protocol("").is_err());
        assert!(parse_upgrade_protocol("x/").is_err());
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = source("workers = \"four\"\n")
            .parse()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("switchyard.toml:1: workers:"), "{err}");
    }
}
