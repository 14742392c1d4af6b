//! TLS towards upstream servers: what a group's `tls` says (the roots its servers'
//! certificates are verified against, the name they are verified for), the rustls
//! client configuration built from it, and the handshake a dial makes before the
//! connection is handed to a client connection. The session itself is the listeners'
//! ([`TlsSession`], with a `ClientConnection`).

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::session::{rustls_error, TlsSession};
use super::{error, provider, TlsError};
use crate::backend::Io;

/// What a group's servers' certificates are verified against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamRoots {
    /// The operating system's trust store (read with `rustls-native-certs`).
    System,
    /// The CA certificates in this PEM file (a private CA).
    CaFile(PathBuf),
    /// Nothing: any certificate is taken. For tests and emergencies only; the binary
    /// warns at every start and reload that uses it.
    InsecureSkipVerify,
}

/// TLS to an upstream group's servers: the roots, the name each server's certificate
/// must be valid for, and the rustls configuration built from them (TLS 1.2 and 1.3,
/// ALPN `http/1.1`, the provider of `tls::provider`). Without [`UpstreamTls::server_name`], a
/// server from a host name is verified for that name, a server given as an address for
/// its IP address (an IP subject alternative name).
///
/// # Examples
///
/// ```no_run
/// use switchyard_smol::{UpstreamRoots, UpstreamTls};
///
/// let tls = UpstreamTls::load(UpstreamRoots::CaFile("internal-ca.pem".into()), Some("app.internal"))?;
/// assert_eq!(tls.server_name(), Some("app.internal"));
/// # Ok::<(), switchyard_smol::TlsError>(())
/// ```
#[derive(Clone)]
pub struct UpstreamTls {
    roots: UpstreamRoots,
    server_name: Option<ServerName<'static>>,
    server_name_text: Option<String>,
    config: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("roots", &self.roots)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// Two are the same when they name the same roots and name (a reload reads the CA file
/// again whatever they compare as).
impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        self.roots == other.roots && self.server_name == other.server_name
    }
}

impl Eq for UpstreamTls {}

impl UpstreamTls {
    /// Reads the roots (the CA file, or the system's store) and checks `server_name`
    /// (a DNS name or an IP address). The error names the file: unreadable, no
    /// certificate in it, a certificate that is no CA rustls can use; or the name.
    pub fn load(roots: UpstreamRoots, server_name: Option<&str>) -> Result<Self, TlsError> {
        let server_name_text = server_name;
        let server_name = server_name
            .map(|name| {
                ServerName::try_from(name.to_string()).map_err(|_| {
                    error(
                        Path::new("server_name"),
                        format!("`{name}` is neither a DNS name nor an IP address"),
                    )
                })
            })
            .transpose()?;
        let provider = provider();
        let algorithms = provider.signature_verification_algorithms;
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("TLS 1.2 and 1.3 are supported by both providers");
        let builder = match &roots {
            UpstreamRoots::System => builder.with_root_certificates(system_roots()?),
            UpstreamRoots::CaFile(file) => builder.with_root_certificates(ca_file(file)?),
            UpstreamRoots::InsecureSkipVerify => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(TakeAnything { algorithms })),
        };
        let mut config = builder.with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(UpstreamTls {
            roots,
            server_name,
            server_name_text: server_name_text.map(str::to_string),
            config: Arc::new(config),
        })
    }

    /// What the certificates are verified against.
    pub fn roots(&self) -> &UpstreamRoots {
        &self.roots
    }

    /// The name every server's certificate is verified for, when one is set.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name_text.as_deref()
    }

    /// The name `server` (from the host name `host`, if it came from one) is verified
    /// for: the configured one, else the host name, else its IP address.
    pub(crate) fn name_for(&self, server: SocketAddr, host: Option<&str>) -> ServerName<'static> {
        if let Some(name) = &self.server_name {
            return name.clone();
        }
        host.and_then(|host| ServerName::try_from(host.to_string()).ok())
            .unwrap_or_else(|| ServerName::IpAddress(server.ip().into()))
    }

    /// The TLS session of a new connection to `server`, handshake done.
    pub(crate) async fn handshake(
        &self,
        stream: &Io<TcpStream>,
        server: SocketAddr,
        name: ServerName<'static>,
    ) -> Result<Box<TlsSession>, HandshakeFailure> {
        let session = TlsSession::client(self.config.clone(), name, server)
            .map_err(|e| HandshakeFailure::from_rustls(&e))?;
        match session.handshake(stream).await {
            Ok(()) => Ok(Box::new(session)),
            Err(e) => Err(HandshakeFailure::from_io(&e)),
        }
    }
}

/// Why a handshake with an upstream server failed: `reason` is the metric's label
/// (`unknown_issuer`, `name_mismatch`, `expired`, `bad_certificate`, `alert`,
/// `protocol` or `closed`), `detail` rustls' own words for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HandshakeFailure {
    pub(crate) reason: &'static str,
    pub(crate) detail: String,
}

impl HandshakeFailure {
    fn from_rustls(error: &rustls::Error) -> Self {
        use rustls::Error as E;
        let reason = match error {
            E::InvalidCertificate(CertificateError::UnknownIssuer) => "unknown_issuer",
            E::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => "name_mismatch",
            E::InvalidCertificate(
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. },
            ) => "expired",
            E::InvalidCertificate(_) => "bad_certificate",
            E::AlertReceived(_) => "alert",
            _ => "protocol",
        };
        HandshakeFailure {
            reason,
            detail: error.to_string(),
        }
    }

    fn from_io(error: &io::Error) -> Self {
        match rustls_error(error) {
            Some(error) => Self::from_rustls(error),
            None => HandshakeFailure {
                reason: "closed",
                detail: error.to_string(),
            },
        }
    }
}

impl fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

/// The system's trust store; none found is an error (nothing could verify).
fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_string(), ToString::to_string);
        return Err(error(
            Path::new("the system's trust store"),
            format!(
                "no usable CA certificate ({why}): name a CA file with `tls = {{ ca = \"FILE\" }}`"
            ),
        ));
    }
    Ok(roots)
}

/// The CA certificates of a PEM file.
fn ca_file(file: &Path) -> Result<RootCertStore, TlsError> {
    let pem = std::fs::read(file).map_err(|e| error(file, format!("cannot read it: {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(file, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(error(
            file,
            "no CA certificate in it (expected PEM `-----BEGIN CERTIFICATE-----`)",
        ));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| error(file, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// `insecure_skip_verify`: takes any certificate, but still checks the handshake's
/// signatures (so the session is at least with whoever holds that certificate's key).
#[derive(Debug)]
struct TakeAnything {
    /// The provider's, taken once when the configuration is built.
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for TakeAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("switchyard-upstream-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn the_name_verified_is_the_configured_one_else_the_host_else_the_ip() {
        let server: SocketAddr = "10.0.0.7:8443".parse().unwrap();
        let plain = UpstreamTls::load(UpstreamRoots::InsecureSkipVerify, None).unwrap();
        assert_eq!(
            plain.name_for(server, Some("app.internal")),
            ServerName::try_from("app.internal").unwrap()
        );
        assert_eq!(
            plain.name_for(server, None),
            ServerName::IpAddress(server.ip().into())
        );
        let named = UpstreamTls::load(UpstreamRoots::InsecureSkipVerify, Some("api.test")).unwrap();
        assert_eq!(named.server_name(), Some("api.test"));
        assert_eq!(
            named.name_for(server, Some("app.internal")),
            ServerName::try_from("api.test").unwrap()
        );
        let ip = UpstreamTls::load(UpstreamRoots::InsecureSkipVerify, Some("10.0.0.9")).unwrap();
        assert_eq!(
            ip.name_for(server, None),
            ServerName::IpAddress("10.0.0.9".parse::<std::net::IpAddr>().unwrap().into())
        );
    }

    #[test]
    fn a_bad_ca_file_or_name_is_an_error_naming_it() {
        let missing = std::env::temp_dir().join("switchyard-no-such-ca.pem");
        let empty = temp_file("empty.pem", "nothing here\n");
        let garbage = temp_file(
            "garbage.pem",
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        );
        for (file, reason) in [
            (&missing, "cannot read it"),
            (&empty, "no CA certificate in it"),
            (&garbage, "not a PEM certificate file"),
        ] {
            let error = UpstreamTls::load(UpstreamRoots::CaFile(file.clone()), None).unwrap_err();
            assert_eq!(&error.file, file);
            assert!(error.reason.contains(reason), "{error}");
        }
        let error = UpstreamTls::load(UpstreamRoots::InsecureSkipVerify, Some("a b")).unwrap_err();
        assert!(
            error
                .reason
                .contains("neither a DNS name nor an IP address"),
            "{error}"
        );
    }

    #[test]
    fn a_ca_file_loads_and_two_loads_of_it_compare_equal() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        let file = temp_file("ca.pem", &ca.pem());
        let first = UpstreamTls::load(UpstreamRoots::CaFile(file.clone()), None).unwrap();
        let again = UpstreamTls::load(UpstreamRoots::CaFile(file), None).unwrap();
        assert_eq!(first, again);
        assert_ne!(
            first,
            UpstreamTls::load(UpstreamRoots::InsecureSkipVerify, None).unwrap()
        );
    }

    #[test]
    fn handshake_failures_are_named_from_a_closed_set_of_reasons() {
        use rustls::{AlertDescription, CertificateError as C, Error as E};
        for (error, reason) in [
            (E::InvalidCertificate(C::UnknownIssuer), "unknown_issuer"),
            (E::InvalidCertificate(C::NotValidForName), "name_mismatch"),
            (E::InvalidCertificate(C::Expired), "expired"),
            (E::InvalidCertificate(C::BadSignature), "bad_certificate"),
            (
                E::AlertReceived(AlertDescription::HandshakeFailure),
                "alert",
            ),
            (E::NoApplicationProtocol, "protocol"),
        ] {
            assert_eq!(
                HandshakeFailure::from_rustls(&error).reason,
                reason,
                "{error}"
            );
        }
        let closed = io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "closed during the TLS handshake",
        );
        assert_eq!(HandshakeFailure::from_io(&closed).reason, "closed");
        let wrapped = io::Error::new(
            io::ErrorKind::InvalidData,
            E::InvalidCertificate(C::UnknownIssuer),
        );
        assert_eq!(HandshakeFailure::from_io(&wrapped).reason, "unknown_issuer");
    }
}
