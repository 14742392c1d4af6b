//! The per-group keys beside `servers`: `health_check = { … }`, `source = [ … ]` and
//! `tls = …` (whose CA file is read here, so a bad one fails `switchyard check`, the
//! start and a reload alike).

use std::net::IpAddr;
use std::path::Path;

use switchyard_smol::{HealthCheck, UpstreamRoots, UpstreamTls};
use toml::Spanned;

use crate::error::ConfigError;
use crate::file::{HealthCheckSection, UpstreamSection, UpstreamTlsEntry};

/// What an upstream group has beside its servers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupOptions {
    /// Active health checks; `None`: passive failure marks only.
    pub health_check: Option<HealthCheck>,
    /// Source addresses of its connections, in turn; empty: the system's choice.
    pub source: Vec<IpAddr>,
    /// TLS to its servers; `None`: plain TCP.
    pub tls: Option<UpstreamTls>,
}

/// Reads group `name`'s options; `at` makes an error point at a span of the file, and
/// relative paths are `base`'s (the config file's folder).
pub(super) fn options(
    name: &str,
    group: &UpstreamSection,
    base: &Path,
    at: &dyn Fn(std::ops::Range<usize>, String) -> ConfigError,
) -> Result<GroupOptions, ConfigError> {
    let health_check = match &group.health_check {
        Some(section) => Some(health_check(name, section, at)?),
        None => None,
    };
    let mut source = Vec::new();
    for text in group.source.iter().flatten() {
        let address: IpAddr = text.get_ref().trim().parse().map_err(|_| {
            at(
                text.span(),
                format!(
                    "upstream `{name}`: source: invalid address `{}`: expected an IP address such as 127.0.0.2 or ::1 (no port)",
                    text.get_ref()
                ),
            )
        })?;
        source.push(address);
    }
    let tls = match &group.tls {
        Some(entry) => tls(name, entry, base, at)?,
        None => None,
    };
    Ok(GroupOptions {
        health_check,
        source,
        tls,
    })
}

/// `tls = true`, `tls = false` or `tls = { … }`.
fn tls(
    name: &str,
    entry: &Spanned<UpstreamTlsEntry>,
    base: &Path,
    at: &dyn Fn(std::ops::Range<usize>, String) -> ConfigError,
) -> Result<Option<UpstreamTls>, ConfigError> {
    let error = |message: String| at(entry.span(), format!("upstream `{name}`: tls: {message}"));
    let (roots, server_name) = match entry.get_ref() {
        UpstreamTlsEntry::Enabled(false) => return Ok(None),
        UpstreamTlsEntry::Enabled(true) => (UpstreamRoots::System, None),
        UpstreamTlsEntry::Table(table) => {
            let roots = match (&table.ca, table.insecure_skip_verify) {
                (Some(_), true) => {
                    return Err(error(
                        "`ca` and `insecure_skip_verify = true` contradict each other: the second verifies nothing".into(),
                    ))
                }
                (None, true) => UpstreamRoots::InsecureSkipVerify,
                (Some(ca), false) => UpstreamRoots::CaFile(base.join(ca)),
                (None, false) => UpstreamRoots::System,
            };
            (roots, table.server_name.as_deref())
        }
    };
    UpstreamTls::load(roots, server_name)
        .map(Some)
        .map_err(|e| error(e.to_string()))
}

/// Printable ASCII without spaces: what goes into a request line or a header as is, so
/// that a configured value can never inject a line into a check.
fn token_like(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic())
}

fn health_check(
    name: &str,
    spanned: &Spanned<HealthCheckSection>,
    at: &dyn Fn(std::ops::Range<usize>, String) -> ConfigError,
) -> Result<HealthCheck, ConfigError> {
    let section = spanned.get_ref();
    let builtin = HealthCheck::default();
    let error =
        |span, message: &str| at(span, format!("upstream `{name}`: health_check: {message}"));
    let path = match &section.path {
        Some(path) if !path.get_ref().starts_with('/') || !token_like(path.get_ref()) => {
            return Err(error(
                path.span(),
                &format!(
                    "invalid path {:?}: expected a path starting with '/', printable ASCII without spaces, such as \"/health\"",
                    path.get_ref()
                ),
            ))
        }
        Some(path) => path.get_ref().clone(),
        None => builtin.path,
    };
    let host = match &section.host {
        Some(host) if !token_like(host.get_ref()) => {
            return Err(error(
                host.span(),
                &format!(
                    "invalid host {:?}: expected a host name such as \"app.internal\"",
                    host.get_ref()
                ),
            ))
        }
        Some(host) => Some(host.get_ref().clone()),
        None => None,
    };
    let count = |value: &Option<Spanned<u32>>, key: &str, default: u32| match value {
        Some(n) if *n.get_ref() == 0 => Err(error(n.span(), &format!("{key} must be at least 1"))),
        Some(n) => Ok(*n.get_ref()),
        None => Ok(default),
    };
    let mut status = Vec::new();
    for code in section.status.iter().flatten() {
        if !(100..=599).contains(code.get_ref()) {
            return Err(error(
                code.span(),
                &format!("invalid status {}: expected 100 to 599", code.get_ref()),
            ));
        }
        status.push(*code.get_ref());
    }
    if section.status.as_ref().is_some_and(Vec::is_empty) {
        return Err(error(
            spanned.span(),
            "status is empty: list the statuses that pass, or leave it out for any 2xx or 3xx",
        ));
    }
    let interval = section.interval.map_or(builtin.interval, |d| d.0);
    let timeout = section.timeout.map_or(builtin.timeout, |d| d.0);
    Ok(HealthCheck {
        path,
        interval,
        timeout,
        fails: count(&section.fails, "fails", builtin.fails)?,
        passes: count(&section.passes, "passes", builtin.passes)?,
        status,
        host,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::file::Source;
    use crate::settings::{Overrides, Settings};

    fn build(group_keys: &str) -> Result<Settings, String> {
        let text = format!(
            "listen = [\"127.0.0.1:8080\"]\n[upstreams.app]\nservers = [\"127.0.0.1:9000\"]\n{group_keys}\n[[routes]]\nprefix = \"/\"\nupstream = \"app\"\n"
        );
        let source = Source {
            name: "switchyard.toml".into(),
            text,
        };
        let file = source.parse().map_err(|e| e.to_string())?;
        Settings::build(&file, Some(&source), &Overrides::default()).map_err(|e| e.to_string())
    }

    #[test]
    fn a_health_check_takes_every_key_and_defaults_the_rest() {
        let settings = build(
            "health_check = { path = \"/health\", interval = \"2s\", timeout = \"500ms\", fails = 4, passes = 3, status = [200, 204], host = \"app.internal\" }\nsource = [\"127.0.0.2\", \"::1\"]",
        )
        .unwrap();
        let options = &settings.upstreams[0];
        let check = options.health_check.as_ref().unwrap();
        assert_eq!(check.path, "/health");
        assert_eq!(check.interval, Duration::from_secs(2));
        assert_eq!(check.timeout, Duration::from_millis(500));
        assert_eq!((check.fails, check.passes), (4, 3));
        assert_eq!(check.status, [200, 204]);
        assert_eq!(check.host.as_deref(), Some("app.internal"));
        let sources: Vec<String> = options.source.iter().map(ToString::to_string).collect();
        assert_eq!(sources, ["127.0.0.2", "::1"]);
        let config = settings.server_config();
        assert_eq!(config.upstreams[0].health_check.as_ref(), Some(check));
        assert_eq!(config.upstreams[0].source, options.source);

        let defaults = build("health_check = {}").unwrap();
        let check = defaults.upstreams[0].health_check.clone().unwrap();
        assert_eq!(check, switchyard_smol::HealthCheck::default());
        let printed = defaults.to_string();
        assert!(
            printed.contains("health_check   GET / every 5s, timeout 1s   down after 3 fails, up after 2 passes   status 2xx/3xx"),
            "{printed}"
        );
        assert!(build("").unwrap().upstreams[0].health_check.is_none());
    }

    #[test]
    fn bad_values_are_refused_with_their_line() {
        for (keys, wanted) in [
            (
                "health_check = { fails = 0 }",
                "switchyard.toml:4: upstream `app`: health_check: fails must be at least 1",
            ),
            ("health_check = { passes = 0 }", "passes must be at least 1"),
            (
                "health_check = { path = \"health\" }",
                "invalid path \"health\"",
            ),
            (
                "health_check = { path = \"/a b\" }",
                "invalid path \"/a b\"",
            ),
            ("health_check = { host = \"a\\r\\nX: y\" }", "invalid host"),
            ("health_check = { status = [99] }", "invalid status 99"),
            ("health_check = { status = [] }", "status is empty"),
            ("health_check = { interval = \"0s\" }", "switchyard.toml:4"),
            ("health_check = { every = \"5s\" }", "unknown field `every`"),
            (
                "source = [\"127.0.0.2:80\"]",
                "switchyard.toml:4: upstream `app`: source: invalid address `127.0.0.2:80`",
            ),
            (
                "source = [\"localhost\"]",
                "source: invalid address `localhost`",
            ),
        ] {
            let error = build(keys).unwrap_err();
            assert!(error.contains(wanted), "{keys}: {error}");
        }
    }
}
