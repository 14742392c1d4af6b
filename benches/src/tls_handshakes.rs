//! Full TLS handshakes per second, server and client in one thread, in memory (no
//! sockets), with an ECDSA P-256 certificate: what the crypto provider costs a TLS
//! listener per new connection. `cargo run --release -p switchyard-bench --bin
//! tls_handshakes [--features aws-lc-rs] [SECONDS [ROUNDS]]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

fn configs(
    provider: CryptoProvider,
    version: &'static rustls::SupportedProtocolVersion,
) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = CertificateDer::from(cert.der().to_vec());
    let key = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let provider = Arc::new(provider);
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(der).unwrap();
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Every handshake a full one, as a new client's.
    client.resumption = rustls::client::Resumption::disabled();
    (Arc::new(server), Arc::new(client))
}

/// One full handshake; returns the server's time in it.
fn handshake(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) -> Duration {
    let name = ServerName::try_from("localhost").unwrap();
    let mut c = ClientConnection::new(client.clone(), name).unwrap();
    let mut s = ServerConnection::new(server.clone()).unwrap();
    let mut on_server = Duration::ZERO;
    let mut wire = Vec::new();
    while c.is_handshaking() || s.is_handshaking() {
        wire.clear();
        while c.wants_write() {
            c.write_tls(&mut wire).unwrap();
        }
        let started = Instant::now();
        let mut rest = &wire[..];
        while !rest.is_empty() {
            s.read_tls(&mut rest).unwrap();
            s.process_new_packets().unwrap();
        }
        wire.clear();
        while s.wants_write() {
            s.write_tls(&mut wire).unwrap();
        }
        on_server += started.elapsed();
        let mut rest = &wire[..];
        while !rest.is_empty() {
            c.read_tls(&mut rest).unwrap();
            c.process_new_packets().unwrap();
        }
    }
    on_server
}

/// This thread's CPU time (user + system) in clock ticks, from `/proc/thread-self/stat`:
/// unlike the wall clock, it does not count the time other processes had the core.
fn thread_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // The command name is in parentheses and may contain spaces: count after it.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let mut fields = after.split_whitespace().skip(11);
    let mut next = || {
        fields
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    next() + next()
}

/// Clock ticks per second of `/proc`'s CPU times (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// One measurement: handshakes per second (client and server), server µs each (wall
/// clock), and CPU µs per handshake (client and server, this thread's CPU time).
fn measure(
    provider: &CryptoProvider,
    version: &'static rustls::SupportedProtocolVersion,
    seconds: f64,
) -> (f64, f64, f64) {
    let (server, client) = configs(provider.clone(), version);
    let started = Instant::now();
    let ticks = thread_cpu_ticks();
    let mut count = 0u32;
    let mut on_server = Duration::ZERO;
    while started.elapsed().as_secs_f64() < seconds {
        on_server += handshake(&server, &client);
        count += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_secs = (thread_cpu_ticks() - ticks) as f64 / TICKS_PER_SEC;
    (
        f64::from(count) / elapsed,
        on_server.as_secs_f64() * 1e6 / f64::from(count),
        cpu_secs * 1e6 / f64::from(count),
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[(values.len() - 1) / 2]
}

/// `tls_handshakes [SECONDS] [ROUNDS]`: the providers' rounds interleaved (a burst of
/// load from elsewhere lands on each alike), the median of each shown.
fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let providers = [
        ("ring", rustls::crypto::ring::default_provider()),
        #[cfg(feature = "aws-lc-rs")]
        ("aws-lc-rs", rustls::crypto::aws_lc_rs::default_provider()),
    ];
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    let mut samples = vec![[Vec::new(), Vec::new(), Vec::new()]; providers.len() * versions.len()];
    for _ in 0..rounds {
        for (p, (_, provider)) in providers.iter().enumerate() {
            for (v, version) in versions.iter().enumerate() {
                let (rate, server_us, cpu_us) = measure(provider, version, seconds / rounds as f64);
                let slot = &mut samples[p * versions.len() + v];
                slot[0].push(rate);
                slot[1].push(server_us);
                slot[2].push(cpu_us);
            }
        }
    }
    for (p, (name, _)) in providers.iter().enumerate() {
        for (v, version) in versions.iter().enumerate() {
            let [rates, server, cpu] = samples[p * versions.len() + v].clone();
            println!(
                "{name:10} {:?}: {:7.0} handshakes/s (client and server), server side {:6.1} µs \
                 each, CPU {:6.1} µs per handshake (both sides; median of {rounds})",
                version.version,
                median(rates),
                median(server),
                median(cpu)
            );
        }
    }
}
