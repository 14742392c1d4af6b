//! Against a small TLS server of this test process: WebSocket echo (the bytes sent back
//! as they came) on an upgrade request, the origin's 200 on any other.

use super::*;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// A fresh certificate in its own temp folder, removed when dropped.
struct Certificate(PathBuf);

impl std::ops::Deref for Certificate {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Certificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn certificate() -> Certificate {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "loadgen-tls-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    tls::write_certificate(&dir).unwrap();
    Certificate(dir)
}

fn server(dir: &std::path::Path, version: &'static rustls::SupportedProtocolVersion) -> SocketAddr {
    let chain = CertificateDer::pem_file_iter(dir.join("cert.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).unwrap();
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[version])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            let config = config.clone();
            thread::spawn(move || serve(sock, config));
        }
    });
    addr
}

fn serve(sock: TcpStream, config: Arc<ServerConfig>) -> io::Result<()> {
    let mut stream = StreamOwned::new(ServerConnection::new(config).unwrap(), sock);
    let mut buf = RecvBuf::with_capacity(4096);
    let end = loop {
        if let Some(end) = ws::head_end(buf.filled()) {
            break end;
        }
        if buf.fill_from(&mut stream)? == 0 {
            return Ok(());
        }
    };
    let head = buf.filled()[..end].to_vec();
    let Some(key) = ws::header(&head, "sec-websocket-key") else {
        stream.write_all(crate::origin::SMALL_RESPONSE)?;
        return stream.read(&mut [0; 64]).map(drop);
    };
    let accept = ws::accept_key(std::str::from_utf8(key).unwrap());
    write!(
        stream,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )?;
    buf.consume(end);
    stream.write_all(buf.filled())?;
    let mut chunk = vec![0; 64 * 1024];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&chunk[..n])?;
    }
}

const SHORT: Duration = Duration::from_millis(300);

#[test]
fn every_handshake_ends_with_an_answered_request() {
    let dir = certificate();
    let addr = server(&dir, &rustls::version::TLS13);
    let client = TlsClient::new(&dir.join("cert.pem")).unwrap();
    let r = handshakes(addr, &client, 2, SHORT).unwrap();
    assert_eq!(r.errors, 0);
    assert!(r.per_sec > 0.0);
    assert!(r.agreed.starts_with("TLS13_"), "{}", r.agreed);
}

#[test]
fn a_server_without_tls13_fails_every_handshake() {
    let dir = certificate();
    let addr = server(&dir, &rustls::version::TLS12);
    let client = TlsClient::new(&dir.join("cert.pem")).unwrap();
    let r = handshakes(addr, &client, 1, SHORT).unwrap();
    assert_eq!(r.per_sec, 0.0);
    assert!(r.errors > 0);
}

#[test]
fn a_certificate_other_than_the_runs_is_refused() {
    let served = certificate();
    let trusted = certificate();
    let addr = server(&served, &rustls::version::TLS13);
    let client = TlsClient::new(&trusted.join("cert.pem")).unwrap();
    let err = client.connect(addr).unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[test]
fn wss_throughput_counts_whole_echoed_messages() {
    let dir = certificate();
    let addr = server(&dir, &rustls::version::TLS13);
    let client = TlsClient::new(&dir.join("cert.pem")).unwrap();
    let (r, agreed) = throughput(addr, &client, 65536, 4, SHORT).unwrap();
    assert!(r.messages > 0);
    assert!(r.megabytes_per_sec > 0.0);
    assert!(agreed.contains("TLS13_"), "{agreed}");
}

#[test]
fn the_certificate_is_ecdsa_p256_and_haproxys_file_holds_both() {
    let dir = certificate();
    let both = std::fs::read_to_string(dir.join("both.pem")).unwrap();
    assert!(both.contains("BEGIN CERTIFICATE") && both.contains("BEGIN PRIVATE KEY"));
    let key = std::fs::read_to_string(dir.join("key.pem")).unwrap();
    let key = rcgen::KeyPair::from_pem(&key).unwrap();
    assert_eq!(key.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256);
}
