//! Full TLS handshakes per second, server and client in one thread, in memory (no
//! sockets), with an ECDSA P-256 certificate: what the crypto provider costs a TLS
//! listener per new connection. `cargo run --release -p switchyard-bench --bin
//! tls_handshakes [--features aws-lc-rs] [SECONDS]`.

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

fn measure(name: &str, provider: CryptoProvider, seconds: f64) {
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let (server, client) = configs(provider.clone(), version);
        let started = Instant::now();
        let mut count = 0u32;
        let mut on_server = Duration::ZERO;
        while started.elapsed().as_secs_f64() < seconds {
            on_server += handshake(&server, &client);
            count += 1;
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "{name:10} {:?}: {:7.0} handshakes/s (client and server), server side {:6.1} µs each",
            version.version,
            f64::from(count) / elapsed,
            on_server.as_secs_f64() * 1e6 / f64::from(count)
        );
    }
}

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    measure("ring", rustls::crypto::ring::default_provider(), seconds);
    #[cfg(feature = "aws-lc-rs")]
    measure(
        "aws-lc-rs",
        rustls::crypto::aws_lc_rs::default_provider(),
        seconds,
    );
}
