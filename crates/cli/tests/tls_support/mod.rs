//! What the upstream TLS tests share: a private CA made with rcgen, an origin that
//! speaks TLS (or plain HTTP) and counts its handshakes, and a small HTTP client.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::common::{config_file, LIMIT};

/// A private certificate authority.
pub struct Authority(CertifiedIssuer<'static, KeyPair>);

impl Authority {
    pub fn new() -> Authority {
        // A name of its own: two CAs of one name would differ only in their signatures.
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let name = format!(
            "test CA {} {}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        );
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        Authority(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    /// Writes the CA certificate as `NAME` and returns its path.
    pub fn write_ca(&self, name: &str) -> PathBuf {
        config_file(name, &self.0.pem())
    }

    /// A certificate for `names` (DNS names, or IP addresses) valid `from` days ago
    /// `to` days from now: PEM certificate and key.
    pub fn issue(&self, names: &[&str], from: i64, to: i64) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = names
            .iter()
            .map(|name| match name.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*name).try_into().unwrap()),
            })
            .collect();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(from);
        params.not_after = now + time::Duration::days(to);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.0).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// [`Authority::issue`], valid from yesterday for a year, written as `NAME.pem` and
    /// `NAME.key`.
    pub fn write(&self, name: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let (cert, key) = self.issue(names, 1, 365);
        (
            config_file(&format!("{name}.pem"), &cert),
            config_file(&format!("{name}.key"), &key),
        )
    }

    /// A rustls client configuration that trusts this authority only.
    pub fn client(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.0.der().to_vec()))
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    /// A rustls server configuration with a certificate for `names`.
    pub fn server(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let (cert, key) = self.issue(names, 1, 365);
        let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// An origin on a loopback port: TLS (with `config`) or plain, optionally reading a
/// PROXY v2 header first (and closing a connection without one; `proxy=local` for a
/// `LOCAL` one). It answers every request with its own view of the
/// connection (`sni=… alpn=… proxy=… path=…`, then the request's head), echoes a
/// WebSocket, and counts completed handshakes and requests per path.
pub struct Origin {
    pub addr: SocketAddr,
    pub handshakes: Arc<AtomicUsize>,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl Origin {
    pub fn start(config: Option<Arc<rustls::ServerConfig>>, proxy_header: bool) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (handshakes.clone(), requests.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (config, count, seen) = (config.clone(), count.clone(), seen.clone());
                thread::spawn(move || serve(stream, config, proxy_header, &count, &seen));
            }
        });
        Origin {
            addr,
            handshakes,
            requests,
        }
    }

    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    pub fn requests_for(&self, path: &str) -> usize {
        let requests = self.requests.lock().unwrap();
        requests.iter().filter(|p| *p == path).count()
    }
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

fn serve(
    mut tcp: TcpStream,
    config: Option<Arc<rustls::ServerConfig>>,
    proxy_header: bool,
    handshakes: &AtomicUsize,
    seen: &Mutex<Vec<String>>,
) {
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    let mut proxy = String::from("none");
    if proxy_header {
        let mut fixed = [0u8; 16];
        if tcp.read_exact(&mut fixed).is_err() || &fixed[..12] != b"\r\n\r\n\0\r\nQUIT\n" {
            return;
        }
        let mut rest = vec![0u8; usize::from(u16::from_be_bytes([fixed[14], fixed[15]]))];
        if tcp.read_exact(&mut rest).is_err() {
            return;
        }
        match fixed[12] {
            0x20 => proxy = "local".into(),
            0x21 if rest.len() >= 12 => {
                let source = SocketAddr::from((
                    [rest[0], rest[1], rest[2], rest[3]],
                    u16::from_be_bytes([rest[8], rest[9]]),
                ));
                proxy = source.to_string();
            }
            _ => return,
        }
    }
    let (mut stream, sni, alpn): (Box<dyn Stream>, String, String) = match config {
        Some(config) => {
            let mut conn = rustls::ServerConnection::new(config).unwrap();
            while conn.is_handshaking() {
                if conn.complete_io(&mut tcp).is_err() {
                    return;
                }
            }
            handshakes.fetch_add(1, Ordering::SeqCst);
            let sni = format!("{:?}", conn.server_name());
            let alpn = format!(
                "{:?}",
                conn.alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
            );
            (Box::new(rustls::StreamOwned::new(conn, tcp)), sni, alpn)
        }
        None => (Box::new(tcp), "plain".into(), "plain".into()),
    };
    let mut buffered = Vec::new();
    loop {
        let Some((head, rest)) = read_head(&mut stream, buffered) else {
            return;
        };
        let path = head.split(' ').nth(1).unwrap_or("").to_string();
        seen.lock().unwrap().push(path.clone());
        let lower = head.to_ascii_lowercase();
        if lower.contains("upgrade: websocket") {
            let key = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("Sec-WebSocket-Key: ")
                        .or_else(|| l.strip_prefix("sec-websocket-key: "))
                })
                .unwrap_or("")
                .trim()
                .to_string();
            let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
            let answer = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
            if stream.write_all(answer.as_bytes()).is_err() {
                return;
            }
            let mut ws = tungstenite::WebSocket::from_partially_read(
                stream,
                rest,
                tungstenite::protocol::Role::Server,
                None,
            );
            while let Ok(message) = ws.read() {
                if message.is_close() || ws.send(message).is_err() {
                    return;
                }
            }
            return;
        }
        let body = format!("sni={sni} alpn={alpn} proxy={proxy} path={path}\n{head}");
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(answer.as_bytes()).is_err() {
            return;
        }
        buffered = rest;
    }
}

/// Reads a request head (after `buffered`); returns it and the bytes after it.
fn read_head(stream: &mut impl Read, mut buffered: Vec<u8>) -> Option<(String, Vec<u8>)> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffered.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buffered.split_off(end + 4);
            return Some((String::from_utf8_lossy(&buffered).into_owned(), rest));
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffered.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A keep-alive HTTP/1.1 client on one connection.
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        Client {
            reader: BufReader::new(stream),
        }
    }

    /// The client's own address (what a PROXY header names).
    pub fn local_addr(&self) -> SocketAddr {
        self.reader.get_ref().local_addr().unwrap()
    }

    /// `GET path`: the status and the body.
    pub fn get(&mut self, path: &str) -> (u16, String) {
        let request = format!("GET {path} HTTP/1.1\r\nHost: app\r\n\r\n");
        self.reader.get_mut().write_all(request.as_bytes()).unwrap();
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line).unwrap();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {status_line:?}"));
        let mut length = 0;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body).unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

/// One `GET path` on a connection of its own.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    Client::connect(addr).get(path)
}

/// `GET path` of the admin listener at `admin`: the body.
pub fn admin_get(admin: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(admin).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

/// A TLS connection to `addr` for `localhost` under `config`, after `before` (a PROXY
/// header) in clear; the handshake done.
pub fn tls_connect(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    before: &[u8],
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let mut tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(LIMIT))?;
    tcp.write_all(before)?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}
