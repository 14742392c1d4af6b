//! TLS termination: a transport layer between a client's socket and the core, which
//! sees the plaintext exactly as on a plain listener (only the scheme differs, for the
//! forwarding headers).
//!
//! rustls is itself a sans-IO state machine (`ServerConnection`: `read_tls`,
//! `process_new_packets`, `reader`, `writer`, `write_tls`); [`session`] drives it on the
//! driver's non-blocking socket. This file holds what is loaded from the configuration:
//! the certificates ([`TlsCertificates`], chosen by SNI), the listeners that speak TLS
//! ([`TlsListener`]) and the rustls configuration built from them: TLS 1.2 and 1.3,
//! ALPN `http/1.1` only (never `h2` until HTTP/2 is spoken), the `aws-lc-rs` provider
//! (`ring` with the feature of that name).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

pub(crate) mod session;
pub(crate) mod upstream;
mod validity;

pub use upstream::{UpstreamRoots, UpstreamTls};

/// A listen address that speaks TLS, and the certificates it serves.
#[derive(Debug, Clone)]
pub struct TlsListener {
    /// One of [`ServerConfig::listen`](crate::ServerConfig::listen)'s addresses, as
    /// configured there.
    pub addr: SocketAddr,
    /// What it serves.
    pub certificates: TlsCertificates,
}

/// Certificate chains and their private keys, loaded and checked. With several, a
/// client's SNI name picks the first whose certificate is valid for it (its DNS
/// subject alternative names, wildcards included); a client without SNI, or with a
/// name none has, gets the first.
///
/// # Examples
///
/// ```no_run
/// use switchyard_smol::TlsCertificates;
///
/// let certificates = TlsCertificates::load(&[
///     ("example.com.pem".into(), "example.com.key".into()),
///     ("other.org.pem".into(), "other.org.key".into()),
/// ])?;
/// assert_eq!(certificates.len(), 2);
/// # Ok::<(), switchyard_smol::TlsError>(())
/// ```
#[derive(Clone)]
pub struct TlsCertificates {
    keys: Vec<Arc<CertifiedKey>>,
    /// Where each came from: `(certificate, key)` files, for `check` and logs.
    files: Vec<(PathBuf, PathBuf)>,
    /// Each leaf's `notAfter` (Unix seconds).
    not_after: Vec<validity::NotAfter>,
}

impl fmt::Debug for TlsCertificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsCertificates")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// A certificate or key that cannot be used: `file` is the one to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    /// The file at fault.
    pub file: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.reason)
    }
}

impl std::error::Error for TlsError {}

pub(crate) fn error(file: &Path, reason: impl Into<String>) -> TlsError {
    TlsError {
        file: file.to_path_buf(),
        reason: reason.into(),
    }
}

/// The one crypto provider: `aws-lc-rs`, or `ring` with the feature of that name (see
/// docs/DECISIONS.md, "TLS benchmarks").
pub(crate) fn provider() -> Arc<CryptoProvider> {
    #[cfg(feature = "ring")]
    let provider = rustls::crypto::ring::default_provider();
    #[cfg(not(feature = "ring"))]
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    Arc::new(provider)
}

impl TlsCertificates {
    /// Reads and checks `(certificate chain, private key)` PEM file pairs, the first
    /// being the default. The error names the file: unreadable, not PEM, no
    /// certificate or key in it, a key rustls cannot use, or a key that does not
    /// match its certificate.
    pub fn load(pairs: &[(PathBuf, PathBuf)]) -> Result<Self, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| error(path, format!("cannot read it: {e}")))
        };
        let mut pems = Vec::with_capacity(pairs.len());
        for (cert, key) in pairs {
            pems.push((cert.clone(), read(cert)?, key.clone(), read(key)?));
        }
        Self::from_pem_files(pems)
    }

    /// Like [`TlsCertificates::load`], from PEM text already in memory; `names` are the
    /// labels errors use for each pair's certificate and key.
    pub fn from_pem(pairs: &[(&[u8], &[u8])], names: (&str, &str)) -> Result<Self, TlsError> {
        let pems = pairs
            .iter()
            .map(|(cert, key)| {
                (
                    PathBuf::from(names.0),
                    cert.to_vec(),
                    PathBuf::from(names.1),
                    key.to_vec(),
                )
            })
            .collect();
        Self::from_pem_files(pems)
    }

    fn from_pem_files(pems: Vec<(PathBuf, Vec<u8>, PathBuf, Vec<u8>)>) -> Result<Self, TlsError> {
        if pems.is_empty() {
            return Err(error(Path::new(""), "no certificate given"));
        }
        let provider = provider();
        let mut keys = Vec::with_capacity(pems.len());
        let mut files = Vec::with_capacity(pems.len());
        let mut not_after = Vec::with_capacity(pems.len());
        let now = std::time::SystemTime::now();
        for (cert_file, cert, key_file, key) in pems {
            let certified = certified_key(&cert_file, &cert, &key_file, &key, &provider)?;
            not_after.push(validity::check(&cert_file, &certified.cert[0], now)?);
            keys.push(Arc::new(certified));
            files.push((cert_file, key_file));
        }
        Ok(TlsCertificates {
            keys,
            files,
            not_after,
        })
    }

    /// The certificates that expire within `within` from now: each one's file and the
    /// days it has left, to the nearest (0: under half a day). A certificate that has already
    /// expired, or is not valid yet, is refused by [`TlsCertificates::load`].
    pub fn expiring_within(&self, within: std::time::Duration) -> Vec<(PathBuf, u64)> {
        let now = std::time::SystemTime::now();
        self.files
            .iter()
            .zip(&self.not_after)
            .filter_map(|((cert, _), &not_after)| {
                validity::expires_within(not_after, now, within).map(|days| (cert.clone(), days))
            })
            .collect()
    }

    /// How many certificate chains there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none (never, once loaded).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The `(certificate, key)` files, in order (the first is the default).
    pub fn files(&self) -> &[(PathBuf, PathBuf)] {
        &self.files
    }

    /// The rustls configuration of a listener serving these certificates.
    pub(crate) fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            // Both providers support both versions: this cannot fail.
            .expect("TLS 1.2 and 1.3 are supported by the provider");
        let mut config = builder
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(ByName {
                keys: self.keys.clone(),
            }));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

fn certified_key(
    cert_file: &Path,
    cert: &[u8],
    key_file: &Path,
    key: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(cert_file, format!("not a PEM certificate chain: {e}")))?;
    let Some(leaf) = chain.first() else {
        return Err(error(
            cert_file,
            "no certificate in it (expected PEM `-----BEGIN CERTIFICATE-----`)",
        ));
    };
    webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| error(cert_file, format!("malformed certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
        error(
            key_file,
            format!("no private key in it (expected PEM `-----BEGIN PRIVATE KEY-----`): {e}"),
        )
    })?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| error(key_file, format!("unusable private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(error(
            key_file,
            format!(
                "this key does not match the certificate {}",
                cert_file.display()
            ),
        )),
        Err(e) => Err(error(cert_file, format!("malformed certificate: {e}"))),
    }
}

/// Picks a certificate by the client's SNI name (see [`TlsCertificates`]).
#[derive(Debug)]
struct ByName {
    keys: Vec<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for ByName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if self.keys.len() > 1 {
            let name = hello
                .server_name()
                .and_then(|n| ServerName::try_from(n).ok());
            if let Some(name) = name {
                if let Some(key) = self.keys.iter().find(|key| valid_for(key, &name)) {
                    return Some(key.clone());
                }
            }
        }
        self.keys.first().cloned()
    }
}

/// Whether `key`'s certificate names `name` (checked by webpki, as a client would).
fn valid_for(key: &CertifiedKey, name: &ServerName<'_>) -> bool {
    key.end_entity_cert()
        .ok()
        .and_then(|cert| webpki::EndEntityCert::try_from(cert).ok())
        .is_some_and(|cert| cert.verify_is_valid_for_subject_name(name).is_ok())
}

/// The TLS configuration of each listener that speaks TLS, by its bound address.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsByAddress(Vec<(SocketAddr, Arc<rustls::ServerConfig>)>);

impl TlsByAddress {
    /// For `listeners`, each at the address `local_of` says it is bound to.
    pub(crate) fn new(
        listeners: &[TlsListener],
        local_of: impl Fn(SocketAddr) -> SocketAddr,
    ) -> Self {
        TlsByAddress(
            listeners
                .iter()
                .map(|l| (local_of(l.addr), l.certificates.server_config()))
                .collect(),
        )
    }

    /// The configuration of the listener bound to `local`, if it speaks TLS.
    pub(crate) fn get(&self, local: Option<SocketAddr>) -> Option<Arc<rustls::ServerConfig>> {
        let local = local?;
        self.0
            .iter()
            .find(|(addr, _)| *addr == local)
            .map(|(_, config)| config.clone())
    }
}

#[cfg(test)]
mod tests;
