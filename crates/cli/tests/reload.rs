//! SIGHUP: the binary reads its `--config` file again and publishes it; flags still win;
//! a broken file changes nothing and says where it is broken.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::thread;

use common::{config_file, signal, Running, LIMIT};

/// An HTTP origin whose every response body is `name`.
fn origin(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            thread::spawn(move || {
                stream.set_read_timeout(Some(LIMIT)).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                while read_head(&mut reader).is_some() {
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{name}",
                        name.len()
                    );
                    if writer.write_all(response.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn read_head(reader: &mut impl BufRead) -> Option<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        head.push_str(&line);
        if line == "\r\n" {
            return Some(head);
        }
    }
}

/// A keep-alive client connection.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    /// The body of `GET path` on this connection.
    fn get(&mut self, path: &str) -> String {
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        self.writer.write_all(request.as_bytes()).unwrap();
        let head = read_head(&mut self.reader).expect("a response head");
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().unwrap())
            })
            .unwrap_or(0);
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).unwrap();
        String::from_utf8(body).unwrap()
    }
}

/// A file routing `/` to `upstream`, listening on `listen`.
fn file(listen: SocketAddr, upstream: SocketAddr) -> String {
    format!(
        "listen = [\"{listen}\"]\nworkers = 2\n\n[upstreams.app]\nservers = [\"{upstream}\"]\n\n[[routes]]\nprefix = \"/\"\nupstream = \"app\"\n"
    )
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn sighup_publishes_the_file_again_for_new_connections_and_open_ones_keep_theirs() {
    let (a, b) = (origin("a"), origin("b"));
    let path = config_file("reload-switch.toml", &file(free_port(), a));
    let config = path.to_str().unwrap();
    let mut proxy = Running::start(&["--config", config, "--listen", "127.0.0.1:0"]);
    let addr = proxy.listening_addr();
    let mut before = Client::connect(addr);
    assert_eq!(before.get("/"), "a");

    // The file now names another upstream, and another address; `--listen` still wins.
    let elsewhere = free_port();
    write(&path, &file(elsewhere, b));
    signal(proxy.child.id(), "HUP");
    let line = proxy.wait_for_log("configuration reloaded: generation 2");
    assert!(line.contains("1 routes, 1 upstreams"), "{line}");
    assert!(
        line.contains("listeners added none, removed none"),
        "{line}"
    );

    assert_eq!(Client::connect(addr).get("/"), "b");
    assert_eq!(
        before.get("/"),
        "a",
        "an open connection keeps its generation"
    );
    assert!(
        TcpStream::connect(elsewhere).is_err(),
        "the file's address was bound though --listen was given"
    );
    signal(proxy.child.id(), "TERM");
    assert_eq!(proxy.wait_exit().code(), Some(0));
}

#[test]
fn sighup_with_a_broken_file_changes_nothing_and_names_the_file_and_line() {
    let (a, b) = (origin("a"), origin("b"));
    let listen = free_port();
    let path = config_file("reload-broken.toml", &file(listen, a));
    let config = path.to_str().unwrap();
    let mut proxy = Running::start(&["--config", config]);
    let addr = proxy.listening_addr();
    assert_eq!(addr, listen);

    // Line 9: a route naming an upstream that does not exist.
    let broken = file(listen, b).replace("upstream = \"app\"", "upstream = \"missing\"");
    write(&path, &broken);
    signal(proxy.child.id(), "HUP");
    let line = proxy.wait_for_log("reload failed");
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains(&format!("{config}:9:")), "{line}");
    assert!(line.contains("unknown upstream `missing`"), "{line}");
    assert!(
        line.contains("still running configuration generation 1"),
        "{line}"
    );
    assert_eq!(Client::connect(addr).get("/"), "a", "traffic unchanged");

    // A file that parses but cannot be bound is refused too, as a whole.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let unbindable = file(listen, b).replace(
        &format!("listen = [\"{listen}\"]"),
        &format!(
            "listen = [\"{listen}\", \"{}\"]",
            taken.local_addr().unwrap()
        ),
    );
    write(&path, &unbindable);
    signal(proxy.child.id(), "HUP");
    let line = proxy.wait_for_log("cannot listen on");
    assert!(line.contains("reload failed"), "{line}");
    assert_eq!(Client::connect(addr).get("/"), "a", "traffic unchanged");

    // Fixed, the next SIGHUP publishes it.
    write(&path, &file(listen, b));
    signal(proxy.child.id(), "HUP");
    proxy.wait_for_log("configuration reloaded: generation 2");
    assert_eq!(Client::connect(addr).get("/"), "b");
}

#[test]
fn sighup_without_a_config_file_changes_nothing_and_keeps_running() {
    let a = origin("a");
    let upstream = a.to_string();
    let mut proxy = Running::start(&["--listen", "127.0.0.1:0", "--upstream", &upstream]);
    let addr = proxy.listening_addr();
    signal(proxy.child.id(), "HUP");
    proxy.wait_for_log("SIGHUP: no --config file");
    assert_eq!(Client::connect(addr).get("/"), "a");
    signal(proxy.child.id(), "TERM");
    assert_eq!(proxy.wait_exit().code(), Some(0));
}

#[test]
fn sighup_adds_and_removes_listeners_and_the_admin_metrics_count_reloads() {
    let a = origin("a");
    let (first, second) = (free_port(), free_port());
    let with_admin = |listen: &str| {
        format!(
            "listen = [{listen}]\nadmin_listen = \"127.0.0.1:0\"\n\n[upstreams.app]\nservers = [\"{a}\"]\n\n[[routes]]\nprefix = \"/\"\nupstream = \"app\"\n"
        )
    };
    let path = config_file(
        "reload-listeners.toml",
        &with_admin(&format!("\"{first}\"")),
    );
    let mut proxy = Running::start(&["--config", path.to_str().unwrap()]);
    proxy.listening_addr();
    let admin = proxy.admin_addr();

    write(&path, &with_admin(&format!("\"{first}\", \"{second}\"")));
    signal(proxy.child.id(), "HUP");
    let line = proxy.wait_for_log("configuration reloaded: generation 2");
    assert!(
        line.contains(&format!("listeners added {second}, removed none")),
        "{line}"
    );
    assert_eq!(Client::connect(second).get("/"), "a");

    write(&path, &with_admin(&format!("\"{second}\"")));
    signal(proxy.child.id(), "HUP");
    let line = proxy.wait_for_log("configuration reloaded: generation 3");
    assert!(
        line.contains(&format!("listeners added none, removed {first}")),
        "{line}"
    );
    assert_eq!(Client::connect(second).get("/"), "a");

    write(&path, "listen = [");
    signal(proxy.child.id(), "HUP");
    proxy.wait_for_log("reload failed");
    let metrics = Client::connect(admin).get("/metrics");
    assert!(
        metrics.contains("\nswitchyard_config_generation 3\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nswitchyard_config_reloads_total{result=\"success\"} 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nswitchyard_config_reloads_total{result=\"failure\"} 1\n"),
        "{metrics}"
    );
}

/// Sends `text` through `ws` and expects it back (the demo origin echoes).
fn echoes(ws: &mut tungstenite::WebSocket<TcpStream>, text: &str) {
    ws.send(tungstenite::Message::text(text)).unwrap();
    match ws.read().unwrap() {
        tungstenite::Message::Text(echo) => assert_eq!(echo.as_str(), text),
        other => panic!("expected the echo of {text:?}, got {other:?}"),
    }
}

#[test]
fn a_tunnel_opened_before_sighup_keeps_echoing_until_drain_timeout_closes_it_with_1001() {
    let echo = switchyard::demo::start_origin().unwrap();
    let b = origin("b");
    let listen = free_port();
    let path = config_file("reload-tunnel.toml", &file(listen, echo));
    let mut proxy = Running::start(&["--config", path.to_str().unwrap()]);
    let addr = proxy.listening_addr();
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let (mut ws, _) = tungstenite::client(format!("ws://{addr}/ws"), stream).unwrap();
    echoes(&mut ws, "before");

    // The route now goes to `b`; the old generation's connections may live 1s more.
    write(
        &path,
        &format!("drain_timeout = \"1s\"\n{}", file(listen, b)),
    );
    signal(proxy.child.id(), "HUP");
    proxy.wait_for_log("configuration reloaded: generation 2");
    assert_eq!(Client::connect(addr).get("/"), "b");
    echoes(&mut ws, "after the reload");

    let close = loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(frame)) => break frame.expect("a close code"),
            Ok(tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_)) => continue,
            other => panic!("expected the drain's Close, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.code), 1001, "{close:?}");
    let line = proxy.wait_for_log("drain_timeout passed");
    assert!(line.contains("generation=1"), "{line}");
    signal(proxy.child.id(), "TERM");
    assert_eq!(proxy.wait_exit().code(), Some(0));
}
