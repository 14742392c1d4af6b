//! `loadgen`: the load generator and origin behind `benches/compare.sh`, which measures
//! switchyard, nginx and HAProxy side by side.
//!
//! ```text
//! $ loadgen origin --listen 127.0.0.1:19000 &
//! $ loadgen ws-throughput --target 127.0.0.1:19000 --size 65536 --window 16 --duration 3
//! ws-throughput: 2345.6 MB/s (35791 messages of 65536 bytes, window 16)
//! result mbps=2345.6
//! ```
//!
//! Subcommands (every duration in seconds, every figure bounded by it):
//! - `origin --listen ADDR`: HTTP `GET /` (13-byte body), `GET /1m` (1 MiB body), and
//!   WebSocket echo on any other upgrade request; keep-alive.
//! - `ws-throughput --target ADDR [--size 65536] [--window 16] [--duration 5]
//!   [--tls-ca FILE]`: over TLS (`wss`) with `--tls-ca`, trusting only that certificate.
//! - `ws-messages --target ADDR [--connections 50] [--size 32] [--duration 5]`
//! - `ws-handshakes --target ADDR [--concurrency 16] [--duration 5]`
//! - `ws-idle --target ADDR --pid PID [--tunnels 5000] [--hold 5]`: memory per idle
//!   tunnel of the process tree rooted at PID.
//! - `tls-cert --out DIR`: an ECDSA P-256 certificate for `localhost` and its key
//!   (`cert.pem`, `key.pem`, and `both.pem` for HAProxy), for every proxy of a run.
//! - `tls-handshakes --target ADDR --tls-ca FILE [--concurrency 16] [--duration 5]`:
//!   full TLS 1.3 handshakes per second, each with one `GET /` (see `measure_tls`).
//!
//! The TLS client (module `tls`) is the same for every proxy: rustls on ring, TLS 1.3
//! only, no resumption.
//!
//! Each measurement ends with one `result key=value ...` line for scripts.

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod measure;
mod measure_tls;
mod origin;
mod procfs;
mod tls;
mod ws;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str =
    "usage: loadgen <origin|ws-throughput|ws-messages|ws-handshakes|ws-idle|tls-cert|tls-handshakes> [--flag value]...
  origin         --listen ADDR
  ws-throughput  --target ADDR [--size 65536] [--window 16] [--duration 5] [--tls-ca FILE]
  ws-messages    --target ADDR [--connections 50] [--size 32] [--duration 5]
  ws-handshakes  --target ADDR [--concurrency 16] [--duration 5]
  ws-idle        --target ADDR --pid PID [--tunnels 5000] [--hold 5]
  tls-cert       --out DIR
  tls-handshakes --target ADDR --tls-ca FILE [--concurrency 16] [--duration 5]";

/// `println!` that ignores a closed stdout (`loadgen ... | head -1`) instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Flags of one subcommand, `--name value` pairs.
#[derive(Debug)]
struct Flags(HashMap<String, String>);

impl Flags {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let name = flag
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected {flag:?}\n{USAGE}"))?;
            let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            map.insert(name.to_owned(), value.clone());
        }
        Ok(Self(map))
    }

    fn get<T: std::str::FromStr>(&self, name: &str, default: Option<T>) -> Result<T, String> {
        match self.0.get(name) {
            Some(raw) => raw
                .parse()
                .map_err(|_| format!("--{name}: cannot parse {raw:?}")),
            None => default.ok_or_else(|| format!("--{name} is required\n{USAGE}")),
        }
    }

    fn secs(&self, name: &str, default: f64) -> Result<Duration, String> {
        Duration::try_from_secs_f64(self.get(name, Some(default))?)
            .map_err(|e| format!("--{name}: {e}"))
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let (command, rest) = args.split_first().ok_or(USAGE)?;
    let flags = Flags::parse(rest)?;
    let target = || flags.get::<SocketAddr>("target", None);
    let io = |e: std::io::Error| e.to_string();
    match command.as_str() {
        "origin" => {
            let listen: SocketAddr = flags.get("listen", None)?;
            let listener = TcpListener::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
            eprintln!("origin listening on {}", listener.local_addr().map_err(io)?);
            origin::serve(listener).map_err(io)
        }
        "ws-throughput" => {
            let (size, window) = (
                flags.get("size", Some(65536))?,
                flags.get("window", Some(16))?,
            );
            let duration = flags.secs("duration", 5.0)?;
            let (r, over) = match flags.0.get("tls-ca") {
                None => (
                    measure::throughput(target()?, size, window, duration).map_err(io)?,
                    String::new(),
                ),
                Some(ca) => {
                    let client = tls::TlsClient::new(ca.as_ref()).map_err(io)?;
                    let (r, agreed) =
                        measure_tls::throughput(target()?, &client, size, window, duration)
                            .map_err(io)?;
                    (r, format!(", over TLS: {agreed}"))
                }
            };
            say!(
                "ws-throughput: {:.1} MB/s ({} messages of {size} bytes, window {window}{over})",
                r.megabytes_per_sec,
                r.messages
            );
            say!("result mbps={:.1}", r.megabytes_per_sec);
            Ok(())
        }
        "ws-messages" => {
            let (connections, size) = (
                flags.get("connections", Some(50))?,
                flags.get("size", Some(32))?,
            );
            warn_nofile(connections);
            let r = measure::messages(target()?, connections, size, flags.secs("duration", 5.0)?)
                .map_err(io)?;
            say!(
                "ws-messages: {:.0} msg/s, round trip p50 {} us, p99 {} us ({connections} connections, \
                 {size}-byte messages, {} errors)",
                r.per_sec, r.p50_us, r.p99_us, r.errors
            );
            say!(
                "result msgs={:.0} p50_us={} p99_us={} errors={}",
                r.per_sec,
                r.p50_us,
                r.p99_us,
                r.errors
            );
            Ok(())
        }
        "ws-handshakes" => {
            let concurrency = flags.get("concurrency", Some(16))?;
            let r = measure::handshakes(target()?, concurrency, flags.secs("duration", 5.0)?)
                .map_err(io)?;
            say!(
                "ws-handshakes: {:.0}/s ({concurrency} concurrent clients, {} errors)",
                r.per_sec,
                r.errors
            );
            say!("result handshakes={:.0} errors={}", r.per_sec, r.errors);
            Ok(())
        }
        "ws-idle" => {
            let tunnels = flags.get("tunnels", Some(5000))?;
            warn_nofile(tunnels);
            let pid = flags.get("pid", None)?;
            let r = measure::idle(target()?, pid, tunnels, flags.secs("hold", 5.0)?).map_err(io)?;
            say!(
                "ws-idle: {} tunnels open, proxy RSS {} KiB -> {} KiB, {:.0} bytes per tunnel, \
                 {} still echoing after the hold",
                r.opened,
                r.rss_before_kib,
                r.rss_held_kib,
                r.bytes_per_tunnel,
                r.alive_after_hold
            );
            say!(
                "result opened={} bytes_per_tunnel={:.0} alive={}",
                r.opened,
                r.bytes_per_tunnel,
                r.alive_after_hold
            );
            Ok(())
        }
        "tls-cert" => {
            let dir: std::path::PathBuf = flags.get("out", None)?;
            tls::write_certificate(&dir).map_err(|e| format!("{}: {e}", dir.display()))
        }
        "tls-handshakes" => {
            let concurrency = flags.get("concurrency", Some(16))?;
            let ca: std::path::PathBuf = flags.get("tls-ca", None)?;
            let client = tls::TlsClient::new(&ca).map_err(io)?;
            let r = measure_tls::handshakes(
                target()?,
                &client,
                concurrency,
                flags.secs("duration", 5.0)?,
            )
            .map_err(io)?;
            say!(
                "tls-handshakes: {:.0}/s ({concurrency} concurrent clients, full TLS 1.3 \
                 handshakes, one GET / each, {}; {} errors)",
                r.per_sec,
                r.agreed,
                r.errors
            );
            say!("result handshakes={:.0} errors={}", r.per_sec, r.errors);
            Ok(())
        }
        other => Err(format!("unknown subcommand {other:?}\n{USAGE}")),
    }
}

fn warn_nofile(sockets: usize) {
    if let Some(limit) = procfs::nofile_limit() {
        if limit < sockets as u64 + 64 {
            eprintln!("loadgen: RLIMIT_NOFILE is {limit}, too low for {sockets} sockets: raise it (ulimit -n)");
        }
    }
}
