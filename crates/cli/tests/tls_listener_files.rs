//! What a `[[tls]]` listener's files and keys do beyond the certificates themselves:
//! certificates that look expired or not yet valid are refused (start, `check`,
//! reload), one expiring soon is warned about, and `proxy_protocol = true` puts the
//! PROXY header before the handshake.

mod common;
mod tls_support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::{config_file, run, signal, Running};
use tls_support::{tls_connect, Authority, Origin};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A certificate for `localhost` valid from `from` days ago to `to` days from now,
/// written as `NAME.pem` and `NAME.key`.
fn write(authority: &Authority, name: &str, from: i64, to: i64) -> (PathBuf, PathBuf) {
    let (cert, key) = authority.issue(&["localhost"], from, to);
    (
        config_file(&format!("{name}.pem"), &cert),
        config_file(&format!("{name}.key"), &key),
    )
}

/// A file with one `[[tls]]` listener serving `cert`/`key` (with `extra` lines) in
/// front of `upstream`.
fn file(name: &str, cert: &Path, key: &Path, extra: &str, upstream: SocketAddr) -> PathBuf {
    config_file(
        name,
        &format!(
            "workers = 1\n\n[[tls]]\nlisten = [\"127.0.0.1:0\"]\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\n{extra}\n[upstreams.app]\nservers = [\"{upstream}\"]\n\n[[routes]]\nprefix = \"/\"\nupstream = \"app\"\n",
            path(cert),
            path(key)
        ),
    )
}

fn tls_addr(proxy: &mut Running) -> SocketAddr {
    let line = proxy.wait_for_log("listening for TLS on ");
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn a_certificate_that_expired_or_is_not_valid_yet_is_one_line_naming_it() {
    let authority = Authority::new();
    for (name, from, to, reason) in [
        ("expired", 30, -1, "the certificate expired on"),
        ("not-yet", -2, 30, "the certificate is not valid before"),
    ] {
        let (cert, key) = write(&authority, name, from, to);
        let started = run(&[
            "--listen-tls",
            "127.0.0.1:0",
            "--tls-cert",
            path(&cert),
            "--tls-key",
            path(&key),
            "--upstream",
            "127.0.0.1:9",
        ]);
        assert_eq!(started.status.code(), Some(2), "{}", started.stderr);
        let lines: Vec<&str> = started.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{}", started.stderr);
        assert!(
            lines[0].contains(path(&cert)) && lines[0].contains(reason),
            "{}",
            lines[0]
        );
        let config = file(
            &format!("{name}.toml"),
            &cert,
            &key,
            "",
            "127.0.0.1:9".parse().unwrap(),
        );
        let checked = run(&["check", "--config", path(&config)]);
        assert!(!checked.status.success());
        assert!(
            checked.stderr.contains(path(&cert)) && checked.stderr.contains(reason),
            "{}",
            checked.stderr
        );
    }
}

#[test]
fn a_certificate_expiring_within_two_weeks_is_warned_about_at_start_and_each_reload() {
    let authority = Authority::new();
    let origin = Origin::start(None, false);
    let (cert, key) = write(&authority, "soon", 1, 5);
    let config = file("soon.toml", &cert, &key, "", origin.addr);
    let checked = run(&["check", "--config", path(&config)]);
    assert!(checked.status.success(), "{}", checked.stderr);
    let warning = format!(
        "warning: {}: the certificate expires in 5 days",
        path(&cert)
    );
    assert!(checked.stdout.contains(&warning), "{}", checked.stdout);

    let mut proxy = Running::start(&["--config", path(&config)]);
    let line = proxy.wait_for_log("the certificate expires in");
    assert!(
        line.contains("WARN") && line.contains(path(&cert)),
        "{line}"
    );
    let addr = tls_addr(&mut proxy);
    signal(proxy.child.id(), "HUP");
    proxy.wait_for_log("configuration reloaded: generation 2");
    let warned = proxy
        .seen()
        .iter()
        .filter(|l| l.contains("WARN") && l.contains("the certificate expires in 5 days"))
        .count();
    assert_eq!(warned, 2, "{:?}", proxy.seen());

    // An expired certificate in its place: the reload fails naming it, the running
    // certificate stays.
    let (expired, expired_key) = write(&authority, "soon-expired", 30, -1);
    std::fs::copy(&expired, &cert).unwrap();
    std::fs::copy(&expired_key, &key).unwrap();
    signal(proxy.child.id(), "HUP");
    let line = proxy.wait_for_log("reload failed");
    assert!(
        line.contains(path(&cert)) && line.contains("expired"),
        "{line}"
    );
    assert!(tls_connect(addr, &authority.client(), b"").is_ok());
}

#[test]
fn proxy_protocol_on_a_tls_listener_reads_the_header_before_the_handshake() {
    let authority = Authority::new();
    let origin = Origin::start(None, false);
    let (cert, key) = write(&authority, "proxied", 1, 365);
    let config = file(
        "proxied.toml",
        &cert,
        &key,
        "proxy_protocol = true\n",
        origin.addr,
    );
    let checked = run(&["check", "--config", path(&config)]);
    assert!(checked.status.success(), "{}", checked.stderr);
    assert!(
        checked
            .stdout
            .contains("proxy_protocol     required on 127.0.0.1:0"),
        "{}",
        checked.stdout
    );
    let mut proxy = Running::start(&["--config", path(&config)]);
    let addr = tls_addr(&mut proxy);
    let header = b"PROXY TCP4 192.0.2.7 127.0.0.1 5555 443\r\n";
    let mut stream = tls_connect(addr, &authority.client(), header).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let answer = answer.to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(answer.contains("x-forwarded-for: 192.0.2.7"), "{answer}");
    assert!(answer.contains("x-forwarded-proto: https"), "{answer}");
    // Without the header the handshake is not even read.
    assert!(tls_connect(addr, &authority.client(), b"").is_err());
}
