//! `switchyard demo --tls`: a self-signed certificate for `localhost` made at start, the
//! steps to try it (`curl --insecure`, a browser), and the self-check over `wss://`.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// The demo's certificate: its PEM files and the certificate itself, which the
/// self-check trusts.
#[derive(Debug, Clone)]
pub struct DemoCertificate {
    /// The certificate, PEM.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
    der: Vec<u8>,
}

/// Makes a self-signed certificate for `localhost`, `127.0.0.1` and `::1` and writes it
/// to `dir` as `demo.pem` and `demo.key` (the key readable by its owner only).
pub fn make_certificate(dir: &Path) -> io::Result<DemoCertificate> {
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    let key = rcgen::KeyPair::generate().map_err(io::Error::other)?;
    let cert = rcgen::CertificateParams::new(names)
        .and_then(|params| params.self_signed(&key))
        .map_err(io::Error::other)?;
    std::fs::create_dir_all(dir)?;
    let cert_path = dir.join("demo.pem");
    let key_path = dir.join("demo.key");
    std::fs::write(&cert_path, cert.pem())?;
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    Ok(DemoCertificate {
        cert: cert_path,
        key: key_path,
        der: cert.der().to_vec(),
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

/// Sends one WebSocket message to `wss://localhost/ws` through `proxy`, trusting only
/// `certificate`, and checks it comes back; every step bounded by `limit`.
pub fn self_check(
    proxy: SocketAddr,
    certificate: &DemoCertificate,
    limit: Duration,
) -> Result<(), String> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(certificate.der.clone()))
        .map_err(|e| format!("the demo certificate: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect_timeout(&proxy, limit)
        .map_err(|e| format!("cannot connect to the proxy at {proxy}: {e}"))?;
    tcp.set_read_timeout(Some(limit))
        .and_then(|()| tcp.set_write_timeout(Some(limit)))
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let conn = ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let stream = StreamOwned::new(conn, tcp);
    let (mut ws, _) = tungstenite::client("wss://localhost/ws", stream)
        .map_err(|e| format!("WebSocket over TLS through the proxy failed: {e}"))?;
    crate::demo::echo_once(&mut ws, "hello through switchyard over TLS")
}

/// The instructions printed once the demo runs over TLS.
pub fn instructions(
    proxy: SocketAddr,
    origin: SocketAddr,
    certificate: &DemoCertificate,
) -> String {
    let port = proxy.port();
    let host = if proxy.ip().is_loopback() {
        format!("localhost:{port}")
    } else {
        proxy.to_string()
    };
    format!(
        "switchyard demo: proxy on https://{proxy}/ (TLS) -> demo origin on http://{origin}/\n\
         A self-signed certificate for localhost was made for this run: {cert} (key {key}).\n\
         \n\
         Try it:\n  \
         curl -i --insecure https://{host}/\n  \
         curl -i --cacert {cert} https://{host}/\n  \
         websocat --insecure wss://{host}/ws       # type a line, it comes back\n  \
         or open https://{host}/ in a browser: it warns that the certificate is not\n  \
         trusted (it is self-signed); accept it once (\"Advanced\", then \"Proceed\" or\n  \
         \"Accept the Risk and Continue\"), and the page talks to the echo over wss://.\n\
         \n\
         Stop with Ctrl-C.\n",
        cert = certificate.cert.display(),
        key = certificate.key.display(),
    )
}
