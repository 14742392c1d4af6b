//! Command-line flags (clap). Each flag also exists in the config file; a flag wins.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::duration::{
    parse_any_duration, parse_duration_or_off_text, parse_timeout, DurationOrOff,
};
use crate::file::{parse_address, parse_upgrade_protocol};
use crate::settings::Overrides;

/// A reverse proxy for WebSocket and other HTTP/1.1 Upgrade traffic.
///
/// Run `switchyard --listen 127.0.0.1:8080 --upstream 127.0.0.1:9000`, or
/// `switchyard --config switchyard.toml`. Try it with `switchyard demo`.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do; without one, run the proxy.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The proxy's settings.
    #[command(flatten)]
    pub proxy: ProxyArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration and print it as it would run (like `nginx -t`).
    Check(Box<ProxyArgs>),
    /// Run the proxy in front of a built-in demo origin (a page and a WebSocket echo).
    Demo(DemoArgs),
}

/// Flags of `switchyard` and `switchyard check`.
#[derive(Debug, Clone, Args)]
pub struct ProxyArgs {
    /// Config file (TOML); flags given here override its values.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to accept clients on, IP:PORT (repeatable).
    #[arg(long, value_name = "ADDR", value_parser = parse_address)]
    pub listen: Vec<SocketAddr>,
    /// Address to accept TLS clients on, IP:PORT (repeatable), serving the --tls-cert
    /// certificates.
    #[arg(long, value_name = "ADDR", value_parser = parse_address)]
    pub listen_tls: Vec<SocketAddr>,
    /// PEM certificate chain for --listen-tls (repeatable, each with a --tls-key; the
    /// first is the default, the others are chosen by the client's SNI name).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Vec<PathBuf>,
    /// PEM private key of the --tls-cert given in the same position.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Vec<PathBuf>,
    /// Serve /metrics, /status, /status.json, /healthz and /readyz on this IP:PORT, an
    /// address of its own [default: off].
    #[arg(long, value_name = "ADDR", value_parser = parse_address)]
    pub admin_listen: Option<SocketAddr>,
    /// Unix socket for zero-downtime upgrades: a process started with the same path
    /// takes over this one's listening sockets, and this one drains [default: off].
    #[arg(long, value_name = "PATH")]
    pub upgrade_socket: Option<PathBuf>,
    /// Every --listen (or every listener of the file) requires a PROXY protocol v1 or v2
    /// header before anything else, and takes the client's address from it.
    #[arg(long)]
    pub accept_proxy_protocol: bool,
    /// Upstream server for the route `/`, IP:PORT or HOST:PORT (repeatable: used
    /// round-robin; every address a name resolves to is a server).
    #[arg(long, value_name = "ADDR", value_parser = crate::settings::parse_server)]
    pub upstream: Vec<String>,
    /// Longest upstream silence, for a response and in a tunnel [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub read_timeout: Option<Duration>,
    /// Longest a write may make no progress [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub send_timeout: Option<Duration>,
    /// Deadline to connect to an upstream [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub connect_timeout: Option<Duration>,
    /// Deadline for a whole request head [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub header_timeout: Option<Duration>,
    /// How long a kept-alive client may wait between requests [default: 75s].
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub idle_timeout: Option<Duration>,
    /// Close a tunnel when neither direction moved this long; `off` or `0s` is off
    /// [default: off].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_or_off_text)]
    pub tunnel_idle_timeout: Option<DurationOrOff>,
    /// Ping a WebSocket side that sent nothing this long; `off` or `0s` is off
    /// [default: off].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_or_off_text)]
    pub ws_ping_interval: Option<DurationOrOff>,
    /// After a ping, how long a WebSocket side may send nothing before it is taken for
    /// dead [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub ws_ping_timeout: Option<Duration>,
    /// Upgrade protocol to forward (repeatable) [default: websocket]. `h2c` is refused.
    #[arg(long, value_name = "PROTO", value_parser = parse_upgrade_protocol)]
    pub allow_upgrade: Vec<String>,
    /// Largest request head in bytes [default: 32768].
    #[arg(long, value_name = "BYTES")]
    pub max_header_bytes: Option<usize>,
    /// Largest request body in bytes [default: unlimited].
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<u64>,
    /// Executor threads [default: number of cores].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// How long open tunnels may continue after SIGTERM/SIGINT [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_any_duration)]
    pub shutdown_grace: Option<Duration>,
    /// After a reload (SIGHUP), how long connections accepted before it may live before
    /// they are drained (tunnels get Close 1001); `off` or `0s`: until they end
    /// [default: off].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_or_off_text)]
    pub drain_timeout: Option<DurationOrOff>,
    /// Most client connections served at once [default: 10000].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Log filter, `tracing` env-filter syntax (e.g. `info`, `switchyard=debug`).
    #[arg(long, value_name = "FILTER", default_value = "info")]
    pub log: String,
}

/// Flags of `switchyard demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Address the proxy listens on [default: 127.0.0.1:8080, with --tls 127.0.0.1:8443].
    #[arg(long, value_name = "ADDR", value_parser = parse_address)]
    pub listen: Option<SocketAddr>,
    /// Serve the demo over https:// and wss://, with a self-signed certificate for
    /// localhost made at start.
    #[arg(long)]
    pub tls: bool,
    /// Log filter, `tracing` env-filter syntax.
    #[arg(long, value_name = "FILTER", default_value = "info")]
    pub log: String,
}

impl ProxyArgs {
    /// The flags as overrides of the config file.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config: self.config.clone(),
            listen: self.listen.clone(),
            listen_tls: self.listen_tls.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            admin_listen: self.admin_listen,
            upgrade_socket: self.upgrade_socket.clone(),
            accept_proxy_protocol: self.accept_proxy_protocol,
            upstream: self.upstream.clone(),
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            connect_timeout: self.connect_timeout,
            read_timeout: self.read_timeout,
            send_timeout: self.send_timeout,
            tunnel_idle_timeout: self.tunnel_idle_timeout.map(|t| t.0),
            ws_ping_interval: self.ws_ping_interval.map(|t| t.0),
            ws_ping_timeout: self.ws_ping_timeout,
            allow_upgrade: self.allow_upgrade.clone(),
            max_header_bytes: self.max_header_bytes,
            max_body_bytes: self.max_body_bytes,
            workers: self.workers,
            shutdown_grace: self.shutdown_grace,
            drain_timeout: self.drain_timeout.map(|t| t.0),
            max_connections: self.max_connections,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_parse_into_overrides() {
        let cli = Cli::try_parse_from([
            "switchyard",
            "--listen",
            "127.0.0.1:8080",
            "--upstream",
            "127.0.0.1:9000",
            "--upstream",
            "127.0.0.1:9001",
            "--read-timeout",
            "2m",
            "--tunnel-idle-timeout",
            "0s",
        ])
        .unwrap();
        let o = cli.proxy.overrides();
        assert_eq!(o.upstream.len(), 2);
        assert_eq!(o.read_timeout, Some(Duration::from_secs(120)));
        assert_eq!(o.tunnel_idle_timeout, Some(None));
        assert_eq!(o.ws_ping_interval, None);
        assert_eq!(o.ws_ping_timeout, None);
    }

    #[test]
    fn websocket_ping_flags_parse_and_off_turns_pings_off() {
        let parse = |args: &[&str]| {
            let mut argv = vec!["switchyard"];
            argv.extend_from_slice(args);
            Cli::try_parse_from(argv).map(|cli| cli.proxy.overrides())
        };
        let o = parse(&["--ws-ping-interval", "30s", "--ws-ping-timeout", "5s"]).unwrap();
        assert_eq!(o.ws_ping_interval, Some(Some(Duration::from_secs(30))));
        assert_eq!(o.ws_ping_timeout, Some(Duration::from_secs(5)));
        for off in ["off", "0s"] {
            let o = parse(&["--ws-ping-interval", off, "--tunnel-idle-timeout", off]).unwrap();
            assert_eq!(o.ws_ping_interval, Some(None), "{off}");
            assert_eq!(o.tunnel_idle_timeout, Some(None), "{off}");
        }
        for bad in ["0s", "off", "10"] {
            let err = parse(&["--ws-ping-timeout", bad]).unwrap_err().to_string();
            assert!(err.contains("--ws-ping-timeout"), "{err}");
        }
        let err = parse(&["--ws-ping-interval", "never"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected `off` or"), "{err}");
    }

    #[test]
    fn admin_listen_parses_as_an_address() {
        let cli = Cli::try_parse_from(["switchyard", "--admin-listen", "127.0.0.1:9100"]).unwrap();
        let expected: SocketAddr = "127.0.0.1:9100".parse().unwrap();
        assert_eq!(cli.proxy.overrides().admin_listen, Some(expected));
        let cli = Cli::try_parse_from(["switchyard"]).unwrap();
        assert_eq!(cli.proxy.overrides().admin_listen, None, "off by default");
        let err = Cli::try_parse_from(["switchyard", "--admin-listen", "localhost:9100"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--admin-listen"), "{err}");
        assert!(err.contains("expected IP:PORT"), "{err}");
    }

    #[test]
    fn zero_read_timeout_and_h2c_are_refused() {
        let err = Cli::try_parse_from(["switchyard", "--read-timeout", "0s"]).unwrap_err();
        assert!(err.to_string().contains("0s"), "{err}");
        let err = Cli::try_parse_from(["switchyard", "--allow-upgrade", "h2c"]).unwrap_err();
        assert!(err.to_string().contains("h2c"), "{err}");
    }
}
