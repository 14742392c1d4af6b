//! The PROXY protocol's flag and file keys: what `check` prints for them, and how a
//! mistake is refused.

mod common;

use common::{config_file, run};

#[test]
fn the_flag_requires_the_header_on_every_listen_address() {
    let out = run(&[
        "check",
        "--listen",
        "127.0.0.1:8080",
        "--listen",
        "127.0.0.1:8081",
        "--upstream",
        "127.0.0.1:9000",
        "--accept-proxy-protocol",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stdout
            .contains("\nproxy_protocol     required on 127.0.0.1:8080 127.0.0.1:8081\n"),
        "{}",
        out.stdout
    );
    let without = run(&[
        "check",
        "--listen",
        "127.0.0.1:8080",
        "--upstream",
        "127.0.0.1:9000",
    ]);
    assert!(
        !without.stdout.contains("proxy_protocol"),
        "{}",
        without.stdout
    );
}

const FILE: &str = r#"listen = ["127.0.0.1:8080"]

[[listeners]]
address = "127.0.0.1:8443"
proxy_protocol = true

[[listeners]]
address = "127.0.0.1:8444"

[upstreams.backend]
servers = ["127.0.0.1:9000"]
send_proxy_protocol = true

[upstreams.other]
servers = ["127.0.0.1:9001"]

[[routes]]
prefix = "/"
upstream = "backend"

[[routes]]
prefix = "/other/"
upstream = "other"
"#;

#[test]
fn listeners_tables_add_addresses_beside_listen_with_their_own_setting() {
    let path = config_file("proxy-listeners.toml", FILE);
    let out = run(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let s = &out.stdout;
    assert!(
        s.contains("listen             127.0.0.1:8080 127.0.0.1:8443 127.0.0.1:8444\n"),
        "{s}"
    );
    assert!(
        s.contains("proxy_protocol     required on 127.0.0.1:8443\n"),
        "{s}"
    );
    assert!(
        s.contains("upstream backend   127.0.0.1:9000   balance round_robin   send_proxy_protocol v2, not pooled\n"),
        "{s}"
    );
    assert!(
        s.contains("upstream other     127.0.0.1:9001   balance round_robin\n"),
        "{s}"
    );
}

#[test]
fn listen_flags_replace_the_files_listeners_and_the_flag_covers_them_all() {
    let path = config_file("proxy-listeners-flags.toml", FILE);
    let path = path.to_str().unwrap();
    let out = run(&["check", "--config", path, "--listen", "127.0.0.1:7000"]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("listen             127.0.0.1:7000\n"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("required on"), "{}", out.stdout);
    let out = run(&["check", "--config", path, "--accept-proxy-protocol"]);
    assert!(
        out.stdout.contains(
            "proxy_protocol     required on 127.0.0.1:8080 127.0.0.1:8443 127.0.0.1:8444\n"
        ),
        "{}",
        out.stdout
    );
}

/// One line on stderr, naming the file and line, from `check` (exit 1) and from a run
/// (exit 2, before anything is bound).
fn refused(name: &str, text: &str, expected: &[&str]) {
    let path = config_file(name, text);
    let path = path.to_str().unwrap();
    for (args, code) in [
        (vec!["check", "--config", path], 1),
        (vec!["--config", path], 2),
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(code), "{}", out.stdout);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{}", out.stderr);
        for part in expected {
            assert!(lines[0].contains(part), "{part:?} not in {}", lines[0]);
        }
    }
}

#[test]
fn a_listener_named_twice_or_a_mistyped_key_is_one_line_naming_the_file() {
    let upstream = "\n[upstreams.b]\nservers = [\"127.0.0.1:9000\"]\n\n[[routes]]\nprefix = \"/\"\nupstream = \"b\"\n";
    refused(
        "proxy-twice.toml",
        &format!("listen = [\"127.0.0.1:8080\"]\n\n[[listeners]]\naddress = \"127.0.0.1:8080\"\nproxy_protocol = true\n{upstream}"),
        &["proxy-twice.toml:4:", "127.0.0.1:8080 is listed twice"],
    );
    refused(
        "proxy-typo.toml",
        &format!("[[listeners]]\naddress = \"127.0.0.1:8080\"\nproxy_protocl = true\n{upstream}"),
        &["proxy-typo.toml:", "proxy_protocl"],
    );
    refused(
        "proxy-address.toml",
        &format!("[[listeners]]\naddress = \"localhost:8080\"\n{upstream}"),
        &["proxy-address.toml:2:", "listeners: address"],
    );
    refused(
        "proxy-send.toml",
        "listen = [\"127.0.0.1:8080\"]\n\n[upstreams.b]\nservers = [\"127.0.0.1:9000\"]\nsend_proxy_protocol = \"yes\"\n\n[[routes]]\nprefix = \"/\"\nupstream = \"b\"\n",
        &["proxy-send.toml:", "send_proxy_protocol"],
    );
}

/// The binary with `--accept-proxy-protocol`: a v1 header's address reaches the origin
/// as `X-Forwarded-For`, and a client without one is closed unanswered.
#[test]
fn the_binary_takes_the_client_address_from_the_header() {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    let origin = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin_addr = origin.local_addr().unwrap().to_string();
    let seen = std::thread::spawn(move || {
        let (mut stream, _) = origin.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            .unwrap();
        String::from_utf8(head).unwrap()
    });
    let mut proxy = common::Running::start(&[
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &origin_addr,
        "--accept-proxy-protocol",
    ]);
    let addr = proxy.listening_addr();

    let mut plain = TcpStream::connect(addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));

    let mut client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client
        .write_all(b"PROXY TCP4 203.0.113.9 192.0.2.1 4000 80\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = Vec::new();
    let _ = client.read_to_end(&mut response);
    assert!(
        response.starts_with(b"HTTP/1.1 200 OK"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    let head = seen.join().unwrap().to_ascii_lowercase();
    assert!(head.contains("x-forwarded-for: 203.0.113.9\r\n"), "{head}");
}
