//! The binary's TLS listeners: `--listen-tls` with `--tls-cert`/`--tls-key`, `[[tls]]`
//! in the file, one clear line naming the file for a bad certificate or key, and the
//! certificates read again on SIGHUP while an open wss tunnel goes on.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{config_file, run, signal, Running, LIMIT};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

struct Authority(CertifiedIssuer<'static, KeyPair>);

impl Authority {
    fn new() -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Authority(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    /// Writes a certificate for `localhost` and its key as `NAME.pem` and `NAME.key`.
    fn write(&self, name: &str) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &self.0)
            .unwrap();
        (
            config_file(&format!("{name}.pem"), &cert.pem()),
            config_file(&format!("{name}.key"), &key.serialize_pem()),
        )
    }

    fn client(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.0.der().to_vec()))
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

fn connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(LIMIT))?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut stream = StreamOwned::new(ClientConnection::new(config.clone(), name).unwrap(), tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

fn echo(ws: &mut tungstenite::WebSocket<Tls>, text: &str) {
    ws.send(tungstenite::Message::text(text)).unwrap();
    assert_eq!(ws.read().unwrap(), tungstenite::Message::text(text));
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The one line on stderr that says what is wrong.
fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    lines[0]
}

#[test]
fn bad_certificates_and_keys_are_one_line_naming_the_file_and_exit_2() {
    let authority = Authority::new();
    let (cert, key) = authority.write("bad-flags");
    let (_, other_key) = authority.write("bad-flags-other");
    let missing = cert.with_file_name("missing.pem");
    let garbage = config_file("garbage.pem", "not a certificate\n");
    let cases: [(&Path, &Path, &Path, &str); 4] = [
        (&missing, &key, &missing, "cannot read it"),
        (&garbage, &key, &garbage, "no certificate"),
        (&cert, &cert, &cert, "no private key"),
        (
            &cert,
            &other_key,
            &other_key,
            "does not match the certificate",
        ),
    ];
    for (cert, key, named, reason) in cases {
        let finished = run(&[
            "--listen-tls",
            "127.0.0.1:0",
            "--tls-cert",
            path(cert),
            "--tls-key",
            path(key),
            "--upstream",
            "127.0.0.1:9",
        ]);
        assert_eq!(finished.status.code(), Some(2), "{}", finished.stderr);
        let line = one_line(&finished.stderr);
        assert!(line.starts_with("error: "), "{line}");
        assert!(
            line.contains(path(named)) && line.contains(reason),
            "{line}"
        );
    }
    let finished = run(&["--listen-tls", "127.0.0.1:0", "--upstream", "127.0.0.1:9"]);
    assert_eq!(finished.status.code(), Some(2));
    assert!(one_line(&finished.stderr).contains("--tls-cert FILE --tls-key FILE"));
}

#[test]
fn check_prints_the_tls_listeners_and_refuses_a_bad_file_at_its_line() {
    let authority = Authority::new();
    let (cert, key) = authority.write("check");
    let (_, other_key) = authority.write("check-other");
    let good = format!(
        "listen = [\"127.0.0.1:8080\"]\n\n[[tls]]\nlisten = [\"127.0.0.1:8443\"]\ncertificates = [\n  {{ cert = \"{}\", key = \"{}\" }},\n]\n\n[upstreams.app]\nservers = [\"127.0.0.1:9000\"]\n\n[[routes]]\nprefix = \"/\"\nupstream = \"app\"\n",
        cert.file_name().unwrap().to_str().unwrap(),
        key.file_name().unwrap().to_str().unwrap(),
    );
    // Relative paths are the config file's folder's.
    let file = config_file("tls-good.toml", &good);
    let finished = run(&["check", "--config", path(&file)]);
    assert!(finished.status.success(), "{}", finished.stderr);
    assert!(
        finished.stdout.contains(&format!(
            "listen tls         127.0.0.1:8443   certificates {} (key {})",
            cert.display(),
            key.display()
        )),
        "{}",
        finished.stdout
    );
    // The flag requires a PROXY header on every listener, the TLS ones included.
    let finished = run(&["check", "--config", path(&file), "--accept-proxy-protocol"]);
    assert!(finished.status.success(), "{}", finished.stderr);
    assert!(
        finished
            .stdout
            .contains("proxy_protocol     required on 127.0.0.1:8080 127.0.0.1:8443"),
        "{}",
        finished.stdout
    );
    let bad = good.replace(
        key.file_name().unwrap().to_str().unwrap(),
        other_key.file_name().unwrap().to_str().unwrap(),
    );
    let file = config_file("tls-bad.toml", &bad);
    let finished = run(&["check", "--config", path(&file)]);
    assert!(!finished.status.success());
    let line = one_line(&finished.stderr);
    assert!(
        line.contains(&format!("tls-bad.toml:6: {}", other_key.display())),
        "{line}"
    );
    assert!(line.contains("does not match"), "{line}");
    // Starting with it is a usage error.
    let started = run(&["--config", path(&file)]);
    assert_eq!(started.status.code(), Some(2), "{}", started.stderr);
}

#[test]
fn sighup_reads_the_certificates_again_and_an_open_wss_tunnel_goes_on() {
    let origin = switchyard::demo::start_origin().unwrap();
    let old = Authority::new();
    let (cert, key) = old.write("reload");
    let mut proxy = Running::start(&[
        "--listen-tls",
        "127.0.0.1:0",
        "--tls-cert",
        path(&cert),
        "--tls-key",
        path(&key),
        "--upstream",
        &origin.to_string(),
        "--workers",
        "1",
    ]);
    let line = proxy.wait_for_log("listening for TLS on ");
    let addr: SocketAddr = line.rsplit(' ').next().unwrap().parse().unwrap();
    let stream = connect(addr, &old.client()).unwrap();
    let (mut tunnel, _) = tungstenite::client("ws://localhost/ws", stream).unwrap();
    echo(&mut tunnel, "before");

    let new = Authority::new();
    let (new_cert, new_key) = new.write("reload-new");
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    signal(proxy.child.id(), "HUP");
    proxy.wait_for_log("configuration reloaded: generation 2");
    assert!(connect(addr, &new.client()).is_ok(), "the new certificate");
    assert!(connect(addr, &old.client()).is_err(), "not the old one");
    echo(&mut tunnel, "after");

    // A broken file: the running certificate stays, and the log says which file.
    std::fs::write(&key, "broken").unwrap();
    signal(proxy.child.id(), "HUP");
    let line = proxy.wait_for_log("reload failed");
    assert!(
        line.contains(path(&key)) && line.contains("no private key"),
        "{line}"
    );
    assert!(
        connect(addr, &new.client()).is_ok(),
        "still the new certificate"
    );
    echo(&mut tunnel, "still");
}

#[test]
fn demo_tls_serves_https_and_wss_with_a_certificate_made_at_start() {
    let mut demo = Running::start(&["demo", "--tls", "--listen", "127.0.0.1:0"]);
    let first = demo.stdout.recv_timeout(LIMIT).expect("demo instructions");
    let proxy: SocketAddr = first
        .split("proxy on https://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
    let second = demo
        .stdout
        .recv_timeout(LIMIT)
        .expect("the certificate line");
    let cert = second
        .split("made for this run: ")
        .nth(1)
        .and_then(|rest| rest.split(" (key").next())
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("unexpected line {second:?}"));
    let instructions: Vec<String> = (0..6)
        .map(|_| demo.stdout.recv_timeout(LIMIT).unwrap())
        .collect();
    assert!(
        instructions.iter().any(|l| l.contains(&format!(
            "curl -i --insecure https://localhost:{}/",
            proxy.port()
        ))),
        "{instructions:?}"
    );
    demo.wait_for_log("self-check: a WebSocket message went through the proxy over TLS");

    // A client that trusts the certificate file the demo named.
    let pem = std::fs::read(&cert).unwrap();
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(&pem).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(der).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let stream = connect(proxy, &config).unwrap();
    let (mut ws, _) = tungstenite::client("wss://localhost/ws", stream).unwrap();
    echo(&mut ws, "demo");
    ws.close(None).unwrap();
    while ws.read().is_ok() {}
    drop(ws);

    signal(demo.child.id(), "TERM");
    assert_eq!(demo.wait_exit().code(), Some(0));
    assert!(
        !cert.exists(),
        "the certificate's folder is removed at exit"
    );
}
