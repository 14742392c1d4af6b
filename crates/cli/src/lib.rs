//! The `switchyard` command: flags, the `switchyard.toml` config file, logging, signals,
//! `switchyard check` and `switchyard demo`, around the proxy of `switchyard-smol`.
//!
//! The binary is a thin `main` over [`execute`]. The pieces are public so that the merging
//! rules (built-in defaults, then the file, then flags) can be used and tested on their own:
//!
//! ```
//! use switchyard::settings::{Overrides, Settings};
//! use switchyard::duration::parse_duration;
//!
//! let flags = Overrides {
//!     listen: vec!["127.0.0.1:8080".parse().unwrap()],
//!     upstream: vec!["127.0.0.1:9000".parse().unwrap(), "127.0.0.1:9001".parse().unwrap()],
//!     read_timeout: Some(parse_duration("2m").unwrap()),
//!     ..Overrides::default()
//! };
//! let settings = Settings::load(&flags).unwrap();
//! assert_eq!(settings.core.routes[0].prefix, "/");
//! assert_eq!(settings.core.routes[0].timeouts.read.as_secs(), 120);
//! assert_eq!(settings.upstreams[0].servers.len(), 2); // one group, used round-robin
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod cli;
pub mod demo;
pub mod demo_tls;
pub mod duration;
pub mod error;
pub mod file;
pub mod settings;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, DemoArgs, ProxyArgs};
use crate::error::ConfigError;
use crate::settings::{Overrides, Settings};
use switchyard_smol::{ReloadHandle, Server};

/// Exit status for a bad flag or config file (clap uses the same).
pub const EXIT_USAGE: u8 = 2;
/// Exit status when the proxy cannot run (port in use, runtime failure) or `check` fails.
pub const EXIT_FAILURE: u8 = 1;

/// Runs what the command line asks for and returns the process's exit status.
pub fn execute(cli: Cli) -> ExitCode {
    match cli.command {
        None => run_proxy(&cli.proxy),
        Some(Command::Check(args)) => check(&args),
        Some(Command::Demo(args)) => demo(&args),
    }
}

fn usage_error(err: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {err}");
    ExitCode::from(EXIT_USAGE)
}

fn failure(err: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {err}");
    ExitCode::from(EXIT_FAILURE)
}

/// Logs to stderr through `tracing`, filtered by `filter` (env-filter syntax).
fn init_logging(filter: &str) -> Result<(), ConfigError> {
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| ConfigError::new(format!("invalid --log filter `{filter}`: {e}")))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .map_err(|e| ConfigError::new(format!("cannot set up logging: {e}")))
}

fn run_proxy(args: &ProxyArgs) -> ExitCode {
    if let Err(err) = init_logging(&args.log) {
        return usage_error(err);
    }
    match Settings::load(&args.overrides()) {
        Ok(settings) => {
            warn_about(&settings);
            serve(&settings, Some(args.overrides()), "", |_| {})
        }
        Err(err) => usage_error(err),
    }
}

/// `switchyard check`: validate and print the effective configuration, like `nginx -t`.
fn check(args: &ProxyArgs) -> ExitCode {
    let name = args
        .config
        .as_ref()
        .map_or(String::new(), |p| format!(" file {}", p.display()));
    if let Err(err) = EnvFilter::try_new(&args.log) {
        return failure(format!("invalid --log filter `{}`: {err}", args.log));
    }
    match Settings::load(&args.overrides()) {
        Ok(settings) => {
            print!("{settings}");
            for warning in settings.warnings() {
                println!("warning: {warning}");
            }
            println!("switchyard: configuration{name} test is successful");
            ExitCode::SUCCESS
        }
        Err(err) => failure(err),
    }
}

/// `switchyard demo`: the demo origin with the proxy in front of it.
fn demo(args: &DemoArgs) -> ExitCode {
    if let Err(err) = init_logging(&args.log) {
        return usage_error(err);
    }
    let origin = match demo::start_origin() {
        Ok(addr) => addr,
        Err(err) => return failure(format!("cannot start the demo origin: {err}")),
    };
    if args.tls {
        return demo_over_tls(args, origin);
    }
    let listen = args.listen.unwrap_or(([127, 0, 0, 1], 8080).into());
    let flags = Overrides {
        listen: vec![listen],
        upstream: vec![origin.to_string()],
        ..Overrides::default()
    };
    let settings = match Settings::load(&flags) {
        Ok(settings) => settings,
        Err(err) => return usage_error(err),
    };
    let hint = " (pick another address with --listen, e.g. 127.0.0.1:8081)";
    serve(&settings, None, hint, move |addrs| {
        let Some(&proxy) = addrs.first() else { return };
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(demo::instructions(proxy, origin).as_bytes());
        let _ = out.flush();
        std::thread::spawn(
            move || match demo::self_check(proxy, Duration::from_secs(5)) {
                Ok(()) => tracing::info!(
                    "self-check: a WebSocket message went through the proxy and came back"
                ),
                Err(err) => tracing::warn!("self-check failed: {err}"),
            },
        );
    })
}

/// `switchyard demo --tls`: the same over `https://` and `wss://`, with a self-signed
/// certificate made now (in a folder of this process's own under the temporary folder).
fn demo_over_tls(args: &DemoArgs, origin: SocketAddr) -> ExitCode {
    let dir = std::env::temp_dir().join(format!("switchyard-demo-{}", std::process::id()));
    let certificate = match demo_tls::make_certificate(&dir) {
        Ok(certificate) => certificate,
        Err(err) => return failure(format!("cannot make the demo certificate: {err}")),
    };
    let listen = args.listen.unwrap_or(([127, 0, 0, 1], 8443).into());
    let flags = Overrides {
        listen_tls: vec![listen],
        tls_cert: vec![certificate.cert.clone()],
        tls_key: vec![certificate.key.clone()],
        upstream: vec![origin.to_string()],
        ..Overrides::default()
    };
    let settings = match Settings::load(&flags) {
        Ok(settings) => settings,
        Err(err) => return usage_error(err),
    };
    let hint = " (pick another address with --listen, e.g. 127.0.0.1:8444)";
    let status = serve(&settings, None, hint, move |addrs| {
        let Some(&proxy) = addrs.first() else { return };
        let mut out = std::io::stdout().lock();
        let text = demo_tls::instructions(proxy, origin, &certificate);
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        std::thread::spawn(move || {
            match demo_tls::self_check(proxy, &certificate, Duration::from_secs(5)) {
                Ok(()) => tracing::info!(
                    "self-check: a WebSocket message went through the proxy over TLS and came back"
                ),
                Err(err) => tracing::warn!("self-check failed: {err}"),
            }
        });
    });
    let _ = std::fs::remove_dir_all(&dir);
    status
}

/// Binds, runs until SIGTERM/SIGINT and a graceful shutdown, and returns the exit status.
/// On SIGHUP the settings are loaded again from `reload_flags` (the config file they name,
/// then the flags) and published as a new generation. `on_ready` is called with the
/// bound addresses once clients can connect; `bind_hint` is appended to a bind error.
fn serve(
    settings: &Settings,
    reload_flags: Option<Overrides>,
    bind_hint: &str,
    on_ready: impl FnOnce(&[SocketAddr]),
) -> ExitCode {
    // Before binding: the bind warns when max_connections does not fit in the limit.
    raise_descriptor_limit();
    let server = match Server::bind(settings.server_config()) {
        Ok(server) => server,
        // The runtime's error names the address that could not be bound.
        Err(err) => return failure(format!("{err}{bind_hint}")),
    };
    let handle = server.shutdown_handle();
    let reload = server.reload_handle();
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(signals) => signals,
        Err(err) => return failure(format!("cannot install signal handlers: {err}")),
    };
    let grace = settings.shutdown_grace;
    std::thread::spawn(move || {
        let mut stopping = false;
        for signal in signals.forever() {
            match signal {
                SIGHUP => reload_settings(reload_flags.as_ref(), &reload),
                SIGTERM | SIGINT if !stopping => {
                    stopping = true;
                    handle.shutdown();
                    let name = if signal == SIGINT {
                        "SIGINT"
                    } else {
                        "SIGTERM"
                    };
                    tracing::info!(
                        "{name}: stopping gracefully (no new connections, requests in flight finish, tunnels get {}); a second Ctrl-C exits at once",
                        duration::format_duration(grace)
                    );
                }
                // A repeated SIGTERM is common (supervisors and `timeout` signal both the
                // process and its group) and must not cut the grace short; a second
                // Ctrl-C is a person who does not want to wait.
                SIGINT => {
                    tracing::warn!("second SIGINT: exiting now");
                    std::process::exit(i32::from(EXIT_FAILURE));
                }
                _ => tracing::debug!(signal, "already shutting down"),
            }
        }
    });

    let addrs = server.local_addrs();
    // The plain addresses come first (see `Settings::server_config`).
    for (index, addr) in addrs.iter().enumerate() {
        if index < settings.listen.len() {
            tracing::info!("listening on {addr}");
        } else {
            tracing::info!("listening for TLS on {addr}");
        }
    }
    // Worded unlike the line above, which tests and scripts look for.
    if let Some(admin) = server.admin_addr() {
        tracing::info!(
            "admin endpoints on http://{admin}: /metrics /status /status.json /healthz /readyz"
        );
    }
    for (route, &upstream) in settings.core.routes.iter().zip(&settings.route_upstream) {
        let group = &settings.upstreams[upstream];
        let servers: Vec<String> = group.servers.iter().map(ToString::to_string).collect();
        tracing::info!(
            "route {} -> upstream {} ({}, {})",
            route.prefix,
            group.name,
            servers.join(", "),
            group.balance
        );
    }
    on_ready(&addrs);
    match server.run() {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(err) => failure(format!("proxy failed: {err}")),
    }
}

/// SIGHUP: loads the settings again (the file named by `flags`, then the flags, which
/// still win) and publishes them. A file that does not load, or settings the runtime
/// refuses, change nothing; the one error line says why (`file:line: ...` for the
/// file, as `switchyard check` prints it). The runtime logs the published generation.
fn reload_settings(flags: Option<&Overrides>, reload: &ReloadHandle) {
    // Certificates given as flags are files to read again too.
    let Some(flags) = flags.filter(|flags| flags.config.is_some() || !flags.tls_cert.is_empty())
    else {
        tracing::warn!("SIGHUP: no --config file to read again, nothing changed");
        return;
    };
    let refused = |err: &dyn std::fmt::Display| {
        tracing::error!(
            "reload failed, still running configuration generation {}: {err}",
            reload.generation()
        );
    };
    match Settings::load(flags) {
        Ok(settings) => {
            warn_about(&settings);
            if let Err(err) = reload.reload(settings.server_config()) {
                refused(&err);
            }
        }
        Err(err) => {
            reload.count_failure();
            refused(&err);
        }
    }
}

/// Logs [`Settings::warnings`] at WARN, one line each.
fn warn_about(settings: &Settings) {
    for warning in settings.warnings() {
        tracing::warn!("{warning}");
    }
}

/// The binary owns its process, so it takes every descriptor it may: the soft open-file
/// limit (often 1,024) is raised to the hard one, as `ulimit -n` could.
fn raise_descriptor_limit() {
    let before = switchyard_smol::descriptor_limit();
    match switchyard_smol::raise_descriptor_limit() {
        Ok(now) if now != before => {
            tracing::debug!("open-file limit raised from {before} to {now}");
        }
        Ok(_) => {}
        Err(err) => tracing::warn!("cannot raise the open-file limit {before}: {err}"),
    }
}
