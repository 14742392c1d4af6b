//! The TLS client of the TLS figures, the same for every proxy: rustls on the ring
//! provider, TLS 1.3 only, ALPN `http/1.1`, no resumption (every handshake a full one,
//! as a new client's), trusting only the run's own certificate; and that certificate,
//! made once per run (`loadgen tls-cert`) for every proxy to serve.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// The name every certificate of a run is made for, and every client asks for (SNI).
pub const SERVER_NAME: &str = "localhost";

/// A blocking TLS connection whose handshake is complete.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// Writes an ECDSA P-256 certificate for [`SERVER_NAME`] and `127.0.0.1` (self-signed)
/// into `dir`: `cert.pem`, `key.pem` (PKCS#8), and `both.pem`, the two in one file, as
/// HAProxy's `crt` takes them.
pub fn write_certificate(dir: &Path) -> io::Result<()> {
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(io::Error::other)?;
    let params =
        rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned(), "127.0.0.1".to_owned()])
            .map_err(io::Error::other)?;
    let cert = params.self_signed(&key).map_err(io::Error::other)?;
    let (cert, key) = (cert.pem(), key.serialize_pem());
    fs::create_dir_all(dir)?;
    fs::write(dir.join("cert.pem"), &cert)?;
    fs::write(dir.join("key.pem"), &key)?;
    fs::write(dir.join("both.pem"), format!("{cert}{key}"))
}

/// The client configuration, trusting the certificate(s) in the PEM file `ca`.
#[derive(Debug, Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
}

impl TlsClient {
    /// Reads `ca` (PEM certificates) as the only trust anchors.
    pub fn new(ca: &Path) -> io::Result<Self> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca)
            .map_err(|e| io::Error::other(format!("{}: {e}", ca.display())))?
        {
            let cert = cert.map_err(|e| io::Error::other(format!("{}: {e}", ca.display())))?;
            roots.add(cert).map_err(io::Error::other)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(io::Error::other)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.resumption = rustls::client::Resumption::disabled();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// Connects to `addr` and completes a full handshake.
    pub fn connect(&self, addr: SocketAddr) -> io::Result<TlsStream> {
        let mut sock = TcpStream::connect(addr)?;
        sock.set_nodelay(true)?;
        let name = ServerName::try_from(SERVER_NAME).expect("a valid DNS name");
        let mut conn =
            ClientConnection::new(self.config.clone(), name).map_err(io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)?;
        }
        Ok(StreamOwned::new(conn, sock))
    }
}

/// What was agreed, for the log line: `TLS13_AES_256_GCM_SHA384 X25519`, say.
pub fn negotiated(stream: &TlsStream) -> String {
    let suite = stream
        .conn
        .negotiated_cipher_suite()
        .map_or("?".to_owned(), |s| format!("{:?}", s.suite()));
    let group = stream
        .conn
        .negotiated_key_exchange_group()
        .map_or("?".to_owned(), |g| format!("{:?}", g.name()));
    format!("{suite} {group}")
}

/// Splits a connection into a reading half and a writing half for two threads (the
/// echo throughput figure's reader and sender), and a handle that shuts the socket down.
/// Each half takes the session's lock only to decrypt or encrypt, never across a
/// blocking socket call, so a sender blocked on a full socket does not stop the reader.
pub fn split(stream: TlsStream) -> io::Result<(TlsReader, TlsWriter, TcpStream)> {
    let StreamOwned { conn, sock } = stream;
    let shared = Arc::new(Mutex::new(conn));
    let reader = TlsReader {
        conn: shared.clone(),
        sock: sock.try_clone()?,
        ciphertext: vec![0; 64 * 1024],
        start: 0,
        end: 0,
    };
    let writer = TlsWriter {
        conn: shared,
        sock: sock.try_clone()?,
        ciphertext: Vec::with_capacity(80 * 1024),
    };
    Ok((reader, writer, sock))
}

fn lock(conn: &Mutex<ClientConnection>) -> MutexGuard<'_, ClientConnection> {
    // A panic elsewhere ends the measurement anyway; the session itself is intact.
    conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The reading half of [`split`]: plaintext out.
#[derive(Debug)]
pub struct TlsReader {
    conn: Arc<Mutex<ClientConnection>>,
    sock: TcpStream,
    /// Read from the socket, not yet given to rustls (which takes 4 KiB per call and
    /// holds at most 16 KiB of plaintext).
    ciphertext: Vec<u8>,
    start: usize,
    end: usize,
}

impl Read for TlsReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            {
                let mut conn = lock(&self.conn);
                match conn.reader().read(out) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if self.start < self.end {
                    let mut rest = &self.ciphertext[self.start..self.end];
                    let taken = conn.read_tls(&mut rest)?;
                    self.start += taken;
                    conn.process_new_packets().map_err(io::Error::other)?;
                    continue;
                }
            }
            let n = self.sock.read(&mut self.ciphertext)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            (self.start, self.end) = (0, n);
        }
    }
}

/// The writing half of [`split`]: plaintext in, each write encrypted and sent at once.
#[derive(Debug)]
pub struct TlsWriter {
    conn: Arc<Mutex<ClientConnection>>,
    sock: TcpStream,
    ciphertext: Vec<u8>,
}

impl Write for TlsWriter {
    fn write(&mut self, plaintext: &[u8]) -> io::Result<usize> {
        self.ciphertext.clear();
        let taken = {
            let mut conn = lock(&self.conn);
            let taken = conn.writer().write(plaintext)?;
            while conn.wants_write() {
                conn.write_tls(&mut self.ciphertext)?;
            }
            taken
        };
        self.sock.write_all(&self.ciphertext)?;
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Ends a connection as a client should: close_notify, then both directions shut.
pub fn close(mut stream: TlsStream) {
    stream.conn.send_close_notify();
    while stream.conn.wants_write() {
        if stream.conn.write_tls(&mut stream.sock).is_err() {
            break;
        }
    }
    let _ = stream.sock.shutdown(Shutdown::Both);
}
