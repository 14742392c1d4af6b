//! TLS listeners: `--listen-tls` with `--tls-cert`/`--tls-key` pairs, or the file's
//! `[[tls]]` tables. Certificates are loaded here, so a bad one fails `switchyard check`,
//! the start and a reload alike, with one line naming the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::time::Duration;

use switchyard_smol::{TlsCertificates, TlsListener, UpstreamRoots};

use super::{Overrides, Settings};
use crate::error::ConfigError;
use crate::file::{parse_address, FileConfig, Source};

/// A group of TLS listen addresses and the certificates they serve, loaded.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Addresses that speak TLS.
    pub listen: Vec<SocketAddr>,
    /// Their certificates (the first is the default; others by SNI).
    pub certificates: TlsCertificates,
    /// Whether they require a PROXY protocol header before the handshake (a file's
    /// `proxy_protocol = true`; `--accept-proxy-protocol` covers every listener).
    pub proxy_protocol: bool,
}

/// Two settings are the same when they name the same addresses and files (a reload
/// reads the files again whatever they compare as).
impl PartialEq for TlsSettings {
    fn eq(&self, other: &Self) -> bool {
        self.listen == other.listen
            && self.certificates.files() == other.certificates.files()
            && self.proxy_protocol == other.proxy_protocol
    }
}

impl Eq for TlsSettings {}

impl TlsSettings {
    /// The runtime's listeners: one per address, sharing the certificates.
    pub fn listeners(&self) -> impl Iterator<Item = TlsListener> + '_ {
        self.listen.iter().map(|&addr| TlsListener {
            addr,
            certificates: self.certificates.clone(),
        })
    }
}

/// The TLS listeners from the flags (which replace the file's) or the file. `plain` is
/// the plain `listen` list: an address cannot be both.
pub(super) fn listeners(
    file: &FileConfig,
    source: Option<&Source>,
    flags: &Overrides,
    plain: &[SocketAddr],
) -> Result<Vec<TlsSettings>, ConfigError> {
    let at = |span: std::ops::Range<usize>, msg: String| match source {
        Some(src) => src.error_at(span, msg),
        None => ConfigError::new(msg),
    };
    let tls = if !flags.listen_tls.is_empty() || !flags.tls_cert.is_empty() {
        vec![from_flags(flags)?]
    } else {
        if !flags.tls_key.is_empty() {
            return Err(ConfigError::new(
                "--tls-key needs --tls-cert and --listen-tls",
            ));
        }
        let base = source
            .and_then(|s| Path::new(&s.name).parent())
            .unwrap_or(Path::new(""));
        let mut groups = Vec::new();
        for section in &file.tls {
            let tls = section.get_ref();
            if tls.listen.is_empty() || tls.certificates.is_empty() {
                return Err(at(
                    section.span(),
                    "[[tls]] needs `listen = [\"IP:PORT\"]` and `certificates = [{ cert = \"FILE\", key = \"FILE\" }]`".into(),
                ));
            }
            let listen = tls
                .listen
                .iter()
                .map(|a| {
                    parse_address(a.get_ref()).map_err(|e| at(a.span(), format!("tls listen: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut pairs = Vec::new();
            for entry in &tls.certificates {
                let pair = (
                    base.join(&entry.get_ref().cert),
                    base.join(&entry.get_ref().key),
                );
                // Each pair on its own, so that the error points at its line.
                TlsCertificates::load(std::slice::from_ref(&pair))
                    .map_err(|e| at(entry.span(), e.to_string()))?;
                pairs.push(pair);
            }
            let certificates =
                TlsCertificates::load(&pairs).map_err(|e| at(section.span(), e.to_string()))?;
            groups.push(TlsSettings {
                listen,
                certificates,
                proxy_protocol: tls.proxy_protocol,
            });
        }
        groups
    };
    let mut seen: Vec<SocketAddr> = plain.to_vec();
    for addr in tls.iter().flat_map(|t| &t.listen) {
        if seen.contains(addr) {
            return Err(ConfigError::new(format!(
                "{addr} is listed twice (an address is either plain `listen` or one TLS listener's)"
            )));
        }
        seen.push(*addr);
    }
    Ok(tls)
}

fn from_flags(flags: &Overrides) -> Result<TlsSettings, ConfigError> {
    if flags.listen_tls.is_empty() {
        return Err(ConfigError::new(
            "--tls-cert needs --listen-tls ADDR: the address that serves it",
        ));
    }
    if flags.tls_cert.is_empty() {
        return Err(ConfigError::new(
            "--listen-tls needs a certificate: --tls-cert FILE --tls-key FILE",
        ));
    }
    if flags.tls_cert.len() != flags.tls_key.len() {
        return Err(ConfigError::new(format!(
            "{} --tls-cert but {} --tls-key: give each certificate its key, in the same order",
            flags.tls_cert.len(),
            flags.tls_key.len()
        )));
    }
    let pairs: Vec<(PathBuf, PathBuf)> = flags
        .tls_cert
        .iter()
        .cloned()
        .zip(flags.tls_key.iter().cloned())
        .collect();
    let certificates =
        TlsCertificates::load(&pairs).map_err(|e| ConfigError::new(e.to_string()))?;
    Ok(TlsSettings {
        listen: flags.listen_tls.clone(),
        certificates,
        proxy_protocol: false,
    })
}

/// A certificate expiring within this long is warned about at start and on each reload.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 86_400);

impl Settings {
    /// What should be fixed although it runs: upstream groups whose certificates are
    /// not verified, and listener certificates that expire within [`EXPIRY_WARNING`].
    /// The binary logs each at WARN at start and on every reload; `check` prints them.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for group in &self.upstreams {
            if group.tls.as_ref().map(|tls| tls.roots()) == Some(&UpstreamRoots::InsecureSkipVerify)
            {
                warnings.push(format!(
                    "upstream `{}`: tls insecure_skip_verify = true: its servers' certificates are NOT verified, so anyone on the path can impersonate them",
                    group.name
                ));
            }
        }
        for tls in &self.tls {
            for (file, days) in tls.certificates.expiring_within(EXPIRY_WARNING) {
                let when = match days {
                    0 => "within hours".to_string(),
                    1 => "in 1 day".to_string(),
                    days => format!("in {days} days"),
                };
                warnings.push(format!(
                    "{}: the certificate expires {when}",
                    file.display()
                ));
            }
        }
        warnings
    }
}
