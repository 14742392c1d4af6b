//! `[upstreams.NAME] tls = …`: verification against a private CA, a wrong CA (502, a
//! WARN line, the server marked failed, the metric), `server_name`, pooled TLS
//! connections, WebSocket and health checks over TLS, the PROXY header before the
//! handshake, the insecure key, and the CA file read again on reload.

mod common;
mod tls_support;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;

use common::{config_file, run, signal, Running, LIMIT};
use tls_support::{admin_get, get, Authority, Client, Origin};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A config file `NAME` with one group `app` of `origin` whose `tls = …` is `tls`
/// (and `extra` lines in the group), an admin listener, one worker.
fn file(name: &str, origin: SocketAddr, tls: &str, extra: &str) -> std::path::PathBuf {
    config_file(
        name,
        &format!(
            "listen = [\"127.0.0.1:0\"]\nworkers = 1\nadmin_listen = \"127.0.0.1:0\"\n\n[upstreams.app]\nservers = [\"{origin}\"]\ntls = {tls}\n{extra}\n[[routes]]\nprefix = \"/\"\nupstream = \"app\"\n"
        ),
    )
}

fn start(config: &Path) -> (Running, SocketAddr, SocketAddr) {
    let mut proxy = Running::start(&["--config", path(config)]);
    let addr = proxy.listening_addr();
    let admin = proxy.admin_addr();
    (proxy, addr, admin)
}

/// The value of the series `series` (its whole name and labels) in `/metrics`.
fn metric(admin: SocketAddr, series: &str) -> Option<String> {
    let text = admin_get(admin, "/metrics");
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .map(str::to_string)
}

#[test]
fn a_private_ca_verifies_the_upstream_and_pooled_tls_connections_are_reused() {
    let ca = Authority::new();
    // Servers given as addresses are verified for their IP address.
    let origin = Origin::start(Some(ca.server(&["127.0.0.1"])), false);
    let ca_file = ca.write_ca("private-ca.pem");
    let config = file(
        "upstream-tls.toml",
        origin.addr,
        "{ ca = \"private-ca.pem\" }",
        "",
    );
    let checked = run(&["check", "--config", path(&config)]);
    assert!(checked.status.success(), "{}", checked.stderr);
    assert!(
        checked.stdout.contains(&format!(
            "    tls            ca {}   server_name (each server's host name or IP address)   alpn http/1.1\n",
            ca_file.display()
        )),
        "{}",
        checked.stdout
    );
    let (_proxy, addr, _) = start(&config);
    let mut client = Client::connect(addr);
    for i in 0..5 {
        let (status, body) = client.get(&format!("/r{i}"));
        assert_eq!(status, 200, "{body}");
        assert!(
            body.starts_with("sni=None alpn=Some(\"http/1.1\")"),
            "{body}"
        );
    }
    assert_eq!(
        origin.handshakes(),
        1,
        "five requests, one upstream TLS handshake"
    );
    // The pool's connection serves a second client too.
    assert_eq!(get(addr, "/other").0, 200);
    assert_eq!(origin.handshakes(), 1);
}

#[test]
fn websocket_upgrades_pass_through_a_tls_upstream() {
    let ca = Authority::new();
    let origin = Origin::start(Some(ca.server(&["127.0.0.1"])), false);
    ca.write_ca("ws-ca.pem");
    let config = file(
        "upstream-tls-ws.toml",
        origin.addr,
        "{ ca = \"ws-ca.pem\" }",
        "",
    );
    let (_proxy, addr, _) = start(&config);
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let (mut ws, response) = tungstenite::client(format!("ws://{addr}/ws"), stream).unwrap();
    assert_eq!(response.status(), 101);
    for size in [5, 70_000, 300_000] {
        let text = "x".repeat(size);
        ws.send(tungstenite::Message::text(text.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), tungstenite::Message::text(text));
    }
    ws.close(None).unwrap();
}

#[test]
fn a_wrong_ca_gives_502_a_warning_the_server_marked_failed_and_a_metric() {
    let ca = Authority::new();
    let origin = Origin::start(Some(ca.server(&["127.0.0.1"])), false);
    Authority::new().write_ca("other-ca.pem");
    let config = file(
        "upstream-tls-wrong.toml",
        origin.addr,
        "{ ca = \"other-ca.pem\" }",
        "",
    );
    let (mut proxy, addr, admin) = start(&config);
    assert_eq!(get(addr, "/").0, 502);
    let line = proxy.wait_for_log("upstream TLS handshake failed");
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("group=app"), "{line}");
    assert!(line.contains(&format!("server={}", origin.addr)), "{line}");
    assert!(
        line.contains("reason=\"unknown_issuer\"") || line.contains("reason=unknown_issuer"),
        "{line}"
    );
    assert!(
        line.contains("UnknownIssuer") || line.contains("unknown issuer"),
        "{line}"
    );
    let server = format!("upstream=\"app\",server=\"{}\"", origin.addr);
    assert_eq!(
        metric(
            admin,
            &format!("switchyard_upstream_tls_errors_total{{{server},reason=\"unknown_issuer\"}}")
        )
        .as_deref(),
        Some("1")
    );
    assert_eq!(
        metric(admin, &format!("switchyard_upstream_healthy{{{server}}}")).as_deref(),
        Some("0"),
        "marked failed, as a refused connect is"
    );
    assert_eq!(
        metric(
            admin,
            &format!("switchyard_upstream_connect_errors_total{{{server}}}")
        )
        .as_deref(),
        Some("0"),
        "the connect itself succeeded"
    );
    assert_eq!(origin.handshakes(), 0);
}

#[test]
fn server_name_sets_the_name_verified_and_sent_and_the_ca_is_read_again_on_reload() {
    let ca = Authority::new();
    let origin = Origin::start(Some(ca.server(&["app.internal"])), false);
    let ca_file = ca.write_ca("named-ca.pem");
    // Without server_name the IP address is verified, which the certificate lacks.
    let config = file(
        "upstream-tls-named.toml",
        origin.addr,
        "{ ca = \"named-ca.pem\" }",
        "",
    );
    let (mut proxy, addr, _) = start(&config);
    assert_eq!(get(addr, "/").0, 502);
    let line = proxy.wait_for_log("upstream TLS handshake failed");
    assert!(line.contains("name_mismatch"), "{line}");

    let named = file(
        "upstream-tls-named.toml",
        origin.addr,
        "{ ca = \"named-ca.pem\", server_name = \"app.internal\" }",
        "",
    );
    assert_eq!(named, config);
    signal(proxy.child.id(), "HUP");
    proxy.wait_for_log("configuration reloaded: generation 2");
    let (status, body) = get(addr, "/");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("sni=Some(\"app.internal\")"), "{body}");

    // A CA file that no longer reads: the reload fails naming it, the old one serves on.
    std::fs::write(&ca_file, "not a certificate\n").unwrap();
    signal(proxy.child.id(), "HUP");
    let line = proxy.wait_for_log("reload failed");
    assert!(line.contains(path(&ca_file)), "{line}");
    assert!(line.contains("no CA certificate"), "{line}");
    assert_eq!(get(addr, "/again").0, 200);
}

#[test]
fn a_bad_ca_file_is_one_line_naming_it_at_start_and_in_check() {
    let garbage = config_file(
        "garbage-ca.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    );
    for (name, tls, named) in [
        ("missing", "{ ca = \"no-such-ca.pem\" }", "no-such-ca.pem"),
        ("garbage", "{ ca = \"garbage-ca.pem\" }", path(&garbage)),
        ("name", "{ server_name = \"not a name\" }", "not a name"),
    ] {
        let config = file(
            &format!("bad-ca-{name}.toml"),
            "127.0.0.1:9".parse().unwrap(),
            tls,
            "",
        );
        // `check` fails as for any invalid file (1); the start is a usage error (2).
        for (args, code) in [
            (vec!["check", "--config", path(&config)], 1),
            (vec!["--config", path(&config)], 2),
        ] {
            let finished = run(&args);
            assert_eq!(finished.status.code(), Some(code), "{}", finished.stderr);
            let lines: Vec<&str> = finished.stderr.lines().collect();
            assert_eq!(lines.len(), 1, "{}", finished.stderr);
            assert!(
                lines[0].contains(named) && lines[0].contains("upstream `app`: tls"),
                "{}",
                lines[0]
            );
        }
    }
}

#[test]
fn health_checks_of_a_tls_upstream_verify_it_as_connections_do() {
    let ca = Authority::new();
    let origin = Origin::start(Some(ca.server(&["127.0.0.1"])), false);
    ca.write_ca("health-ca.pem");
    Authority::new().write_ca("health-other-ca.pem");
    let check = "health_check = { path = \"/health\", interval = \"100ms\", timeout = \"2s\", fails = 1, passes = 1 }\n";
    let good = file(
        "health-tls.toml",
        origin.addr,
        "{ ca = \"health-ca.pem\" }",
        check,
    );
    let (proxy, _, _) = start(&good);
    let deadline = std::time::Instant::now() + LIMIT;
    while origin.requests_for("/health") < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no health check reached the origin over TLS"
        );
        std::thread::yield_now();
    }
    assert!(origin.handshakes() >= 2, "each check makes its handshake");
    drop(proxy);

    let wrong = file(
        "health-tls-wrong.toml",
        origin.addr,
        "{ ca = \"health-other-ca.pem\" }",
        check,
    );
    let (mut proxy, addr, _) = start(&wrong);
    let line = proxy.wait_for_log("upstream server down");
    assert!(
        line.contains("TLS handshake") && line.contains("UnknownIssuer"),
        "{line}"
    );
    assert_eq!(get(addr, "/").0, 502);
}

#[test]
fn send_proxy_protocol_writes_its_header_before_the_tls_handshake() {
    let ca = Authority::new();
    let origin = Origin::start(Some(ca.server(&["127.0.0.1"])), true);
    ca.write_ca("proxy-ca.pem");
    let config = file(
        "upstream-tls-proxy.toml",
        origin.addr,
        "{ ca = \"proxy-ca.pem\" }",
        "send_proxy_protocol = true\n",
    );
    let (_proxy, addr, _) = start(&config);
    let mut client = Client::connect(addr);
    let local = client_addr(&client);
    for _ in 0..2 {
        let (status, body) = client.get("/");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(&format!("proxy={local} ")), "{body}");
    }
    assert_eq!(
        origin.handshakes(),
        1,
        "the client's own connection is kept for it"
    );
}

#[test]
fn health_checks_of_a_group_sending_proxy_headers_begin_with_a_local_one() {
    let ca = Authority::new();
    ca.write_ca("health-proxy-ca.pem");
    let check = "send_proxy_protocol = true\nhealth_check = { path = \"/health\", interval = \"100ms\", timeout = \"2s\", fails = 1, passes = 1 }\n";
    for (name, tls) in [("plain", None), ("tls", Some(ca.server(&["127.0.0.1"])))] {
        let tls_key = if tls.is_some() {
            "{ ca = \"health-proxy-ca.pem\" }"
        } else {
            "false"
        };
        // The origin closes every connection that does not begin with a PROXY header.
        let origin = Origin::start(tls, true);
        let config = file(
            &format!("health-proxy-{name}.toml"),
            origin.addr,
            tls_key,
            check,
        );
        let (_proxy, addr, _) = start(&config);
        let deadline = std::time::Instant::now() + LIMIT;
        while origin.requests_for("/health") < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "{name}: no health check got past the origin's PROXY header check"
            );
            std::thread::yield_now();
        }
        let mut client = Client::connect(addr);
        let local = client_addr(&client);
        let (status, body) = client.get("/");
        assert_eq!(status, 200, "{name}: {body}");
        assert!(body.contains(&format!("proxy={local} ")), "{name}: {body}");
    }
}

fn client_addr(client: &Client) -> SocketAddr {
    client.local_addr()
}

#[test]
fn insecure_skip_verify_takes_any_certificate_and_says_so_loudly() {
    let stranger = Authority::new();
    let origin = Origin::start(Some(stranger.server(&["somewhere.else"])), false);
    let config = file(
        "upstream-tls-insecure.toml",
        origin.addr,
        "{ insecure_skip_verify = true }",
        "",
    );
    let checked = run(&["check", "--config", path(&config)]);
    assert!(checked.status.success(), "{}", checked.stderr);
    assert!(
        checked
            .stdout
            .contains("insecure_skip_verify: NOT VERIFIED"),
        "{}",
        checked.stdout
    );
    assert!(
        checked
            .stdout
            .contains("warning: upstream `app`: tls insecure_skip_verify = true"),
        "{}",
        checked.stdout
    );
    let (mut proxy, addr, _) = start(&config);
    let line = proxy.wait_for_log("insecure_skip_verify");
    assert!(
        line.contains("WARN") && line.contains("upstream `app`") && line.contains("NOT verified"),
        "{line}"
    );
    assert_eq!(get(addr, "/").0, 200);
    // And again on every reload.
    let seen = proxy.seen().len();
    signal(proxy.child.id(), "HUP");
    proxy.wait_for_log("configuration reloaded: generation 2");
    assert!(
        proxy.seen()[seen..]
            .iter()
            .any(|l| l.contains("WARN") && l.contains("insecure_skip_verify")),
        "{:?}",
        &proxy.seen()[seen..]
    );
    let contradiction = file(
        "upstream-tls-contradiction.toml",
        origin.addr,
        "{ ca = \"x.pem\", insecure_skip_verify = true }",
        "",
    );
    let finished = run(&["--config", path(&contradiction)]);
    assert_eq!(finished.status.code(), Some(2));
    assert!(
        finished.stderr.contains("contradict"),
        "{}",
        finished.stderr
    );
}

#[test]
fn a_server_from_a_host_name_is_verified_for_that_name() {
    let ca = Authority::new();
    let origin = Origin::start(Some(ca.server(&["localhost"])), false);
    ca.write_ca("host-ca.pem");
    let config = config_file(
        "upstream-tls-host.toml",
        &format!(
            "listen = [\"127.0.0.1:0\"]\nworkers = 1\n\n[upstreams.app]\nservers = [\"localhost:{}\"]\ntls = {{ ca = \"host-ca.pem\" }}\n\n[[routes]]\nprefix = \"/\"\nupstream = \"app\"\n",
            origin.addr.port()
        ),
    );
    let mut proxy = Running::start(&["--config", path(&config)]);
    let addr = proxy.listening_addr();
    // `localhost` may also name ::1, where nothing listens: that server is skipped.
    let (status, body) = get(addr, "/");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("sni=Some(\"localhost\")"), "{body}");
}

#[test]
fn tls_true_verifies_against_the_system_store_and_an_empty_one_is_an_error() {
    let ca = Authority::new();
    let origin = Origin::start(Some(ca.server(&["127.0.0.1"])), false);
    // rustls-native-certs reads SSL_CERT_FILE (and SSL_CERT_DIR) instead of the
    // system's store when set; the directory is left out, whatever the environment says.
    let store = ca.write_ca("system-store.pem");
    let config = file("upstream-tls-system.toml", origin.addr, "true", "");
    let mut command = common::binary();
    command
        .env("SSL_CERT_FILE", &store)
        .env_remove("SSL_CERT_DIR")
        .args(["--config", path(&config)]);
    let mut proxy = Running::spawn(command);
    let addr = proxy.listening_addr();
    let (status, body) = get(addr, "/");
    assert_eq!(status, 200, "{body}");

    let empty = config_file("empty-store.pem", "");
    let mut command = common::binary();
    command
        .env("SSL_CERT_FILE", &empty)
        .env_remove("SSL_CERT_DIR")
        .args(["--config", path(&config)]);
    let mut refused = Running::spawn(command);
    assert_eq!(refused.wait_exit().code(), Some(2));
    assert!(
        refused
            .seen()
            .iter()
            .any(|l| l.contains("the system's trust store: no usable CA certificate")),
        "{:?}",
        refused.seen()
    );
}
