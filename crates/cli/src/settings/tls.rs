//! TLS listeners: `--listen-tls` with `--tls-cert`/`--tls-key` pairs, or the file's
//! `[[tls]]` tables. Certificates are loaded here, so a bad one fails `switchyard check`,
//! the start and a reload alike, with one line naming the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use switchyard_smol::{TlsCertificates, TlsListener};

use super::Overrides;
use crate::error::ConfigError;
use crate::file::{parse_address, FileConfig, Source};

/// A group of TLS listen addresses and the certificates they serve, loaded.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Addresses that speak TLS.
    pub listen: Vec<SocketAddr>,
    /// Their certificates (the first is the default; others by SNI).
    pub certificates: TlsCertificates,
}

/// Two settings are the same when they name the same addresses and files (a reload
/// reads the files again whatever they compare as).
impl PartialEq for TlsSettings {
    fn eq(&self, other: &Self) -> bool {
        self.listen == other.listen && self.certificates.files() == other.certificates.files()
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
    })
}
