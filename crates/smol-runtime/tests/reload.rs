//! Reloading through the API (`Server::reload_handle`): new connections take the new
//! generation, open ones keep theirs; an invalid configuration changes nothing;
//! listeners come and go; `drain_timeout` ends an old generation's connections; pools of
//! removed servers close. Real sockets on 127.0.0.1, every read bounded.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use switchyard_smol::{ReloadError, ReloadHandle, Server, ServerConfig, ShutdownHandle};

const LIMIT: Duration = Duration::from_secs(5);

/// A keep-alive HTTP origin whose every response body is its name; it reports each
/// connection's end (EOF from the proxy) on `closed`.
struct Origin {
    addr: SocketAddr,
    closed: mpsc::Receiver<()>,
}

impl Origin {
    fn start(name: &'static str) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tell, closed) = mpsc::channel();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let tell = tell.clone();
                thread::spawn(move || {
                    serve(stream, name);
                    let _ = tell.send(());
                });
            }
        });
        Origin { addr, closed }
    }
}

fn serve(stream: TcpStream, body: &str) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    while read_head(&mut reader).is_some() {
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
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

/// A keep-alive client of the proxy.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(proxy: SocketAddr) -> Client {
        let stream = TcpStream::connect(proxy).unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    /// The body of `GET path` (the name of the origin that answered).
    fn get(&mut self, path: &str) -> String {
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        self.writer.write_all(request.as_bytes()).unwrap();
        let head = read_head(&mut self.reader).expect("a response head");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let length: usize = head
            .lines()
            .find_map(|line| {
                line.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap();
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).unwrap();
        String::from_utf8(body).unwrap()
    }

    /// Whether the proxy closed the connection (EOF) within [`LIMIT`].
    fn closed_by_proxy(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.reader.read(&mut byte), Ok(0))
    }
}

fn config(listen: SocketAddr, upstream: SocketAddr) -> ServerConfig {
    let mut config = ServerConfig::simple(listen, upstream);
    config.workers = 2;
    config.shutdown_grace = Duration::from_secs(1);
    config
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A free port on 127.0.0.1 (bound and released).
fn free_port() -> SocketAddr {
    TcpListener::bind(any_port()).unwrap().local_addr().unwrap()
}

struct Running {
    addrs: Vec<SocketAddr>,
    reload: ReloadHandle,
    stop: ShutdownHandle,
    thread: Option<thread::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    fn start(config: ServerConfig) -> Running {
        let server = Server::bind(config).unwrap();
        let addrs = server.local_addrs();
        let reload = server.reload_handle();
        let stop = server.shutdown_handle();
        let thread = Some(thread::spawn(move || server.run()));
        Running {
            addrs,
            reload,
            stop,
            thread,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Connects until refused, within [`LIMIT`]: a removed listener stops accepting once
/// every worker's socket for it is closed.
fn refuses_within_limit(addr: SocketAddr) -> bool {
    let start = Instant::now();
    while start.elapsed() < LIMIT {
        match TcpStream::connect(addr) {
            Err(error) if error.kind() == ErrorKind::ConnectionRefused => return true,
            _ => thread::yield_now(),
        }
    }
    false
}

#[test]
fn a_reload_sends_new_connections_to_the_new_upstream_and_open_ones_stay_on_the_old() {
    let (old, new) = (Origin::start("old"), Origin::start("new"));
    let proxy = Running::start(config(any_port(), old.addr));
    let mut before = Client::connect(proxy.addrs[0]);
    assert_eq!(before.get("/"), "old");

    let report = proxy.reload.reload(config(any_port(), new.addr)).unwrap();
    assert_eq!(report.generation, 2);
    assert_eq!(proxy.reload.generation(), 2);
    assert!(report.listeners_added.is_empty() && report.listeners_removed.is_empty());
    assert_eq!(report.servers_removed, [old.addr]);

    // The listener stayed: the same address takes the new connection.
    let mut after = Client::connect(proxy.addrs[0]);
    assert_eq!(after.get("/"), "new");
    // The connection accepted before keeps its generation's route → group mapping,
    // also for a request that dials afresh.
    assert_eq!(before.get("/"), "old");
    assert_eq!(before.get("/again"), "old");
}

#[test]
fn an_invalid_configuration_changes_nothing() {
    let old = Origin::start("old");
    let proxy = Running::start(config(any_port(), old.addr));
    let mut broken = config(any_port(), Origin::start("new").addr);
    broken.route_upstream = vec![3];
    let error = proxy.reload.reload(broken).unwrap_err();
    assert!(matches!(error, ReloadError::Invalid(_)), "{error}");
    assert!(error.to_string().contains("upstream group 3"), "{error}");
    // A new address that cannot be bound is refused as a whole too.
    let taken = TcpListener::bind(any_port()).unwrap();
    let mut unbindable = config(any_port(), Origin::start("new").addr);
    unbindable.listen.push(taken.local_addr().unwrap());
    let error = proxy.reload.reload(unbindable).unwrap_err();
    assert!(matches!(error, ReloadError::Bind(_)), "{error}");
    assert!(error.to_string().contains("cannot listen on"), "{error}");

    assert_eq!(proxy.reload.generation(), 1);
    assert_eq!(proxy.reload.local_addrs(), proxy.addrs);
    assert_eq!(Client::connect(proxy.addrs[0]).get("/"), "old");
}

#[test]
fn an_added_listener_accepts_at_once_and_a_removed_one_refuses() {
    let origin = Origin::start("origin");
    let proxy = Running::start(config(any_port(), origin.addr));
    let first = proxy.addrs[0];
    let second = free_port();
    let mut both = config(first, origin.addr);
    both.listen.push(second);
    let report = proxy.reload.reload(both).unwrap();
    assert_eq!(report.listeners_added, [second]);
    assert_eq!(Client::connect(second).get("/"), "origin");
    // A connection on the address about to go away.
    let mut open = Client::connect(first);
    assert_eq!(open.get("/"), "origin");

    let report = proxy.reload.reload(config(second, origin.addr)).unwrap();
    assert_eq!(report.listeners_removed, [first]);
    assert_eq!(proxy.reload.local_addrs(), [second]);
    assert!(refuses_within_limit(first), "{first} still accepts");
    // Its open connection goes on (no drain_timeout), the other address serves.
    assert_eq!(open.get("/"), "origin");
    assert_eq!(Client::connect(second).get("/"), "origin");
}

#[test]
fn drain_timeout_ends_the_old_generations_connections_and_spares_the_new() {
    let origin = Origin::start("origin");
    let proxy = Running::start(config(any_port(), origin.addr));
    let mut old = Client::connect(proxy.addrs[0]);
    assert_eq!(old.get("/"), "origin");
    let mut next = config(any_port(), origin.addr);
    next.drain_timeout = Some(Duration::from_millis(300));
    let reloaded = Instant::now();
    proxy.reload.reload(next).unwrap();
    let mut new = Client::connect(proxy.addrs[0]);
    assert_eq!(new.get("/"), "origin");

    // An idle kept-alive connection of the old generation is drained: closed.
    assert!(old.closed_by_proxy(), "the old connection was not closed");
    assert!(
        reloaded.elapsed() >= Duration::from_millis(300),
        "closed before drain_timeout: {:?}",
        reloaded.elapsed()
    );
    // The new generation's connection is not drained.
    assert_eq!(new.get("/"), "origin");
}

#[test]
fn a_removed_servers_pooled_connections_close() {
    let (old, new) = (Origin::start("old"), Origin::start("new"));
    let mut single = config(any_port(), old.addr);
    single.workers = 1;
    let proxy = Running::start(single);
    {
        let mut client = Client::connect(proxy.addrs[0]);
        assert_eq!(client.get("/"), "old");
    }
    // The client left; its upstream connection idles in the pool, open.
    assert!(old.closed.recv_timeout(Duration::from_millis(200)).is_err());
    let mut next = config(any_port(), new.addr);
    next.workers = 1;
    let report = proxy.reload.reload(next).unwrap();
    assert_eq!(report.servers_removed, [old.addr]);
    assert!(
        old.closed.recv_timeout(LIMIT).is_ok(),
        "the pooled connection to the removed server stayed open"
    );
}

#[test]
fn settings_fixed_at_bind_are_named_and_a_reload_after_shutdown_is_refused() {
    let origin = Origin::start("origin");
    let server = Server::bind(config(any_port(), origin.addr)).unwrap();
    let mut more = config(any_port(), origin.addr);
    more.workers = 3;
    more.max_connections = 5;
    let report = server.reload(more).unwrap();
    assert_eq!(report.needs_restart, ["workers", "max_connections"]);
    let reload = server.reload_handle();
    server.shutdown_handle().shutdown();
    server.run().unwrap();
    let error = reload.reload(config(any_port(), origin.addr)).unwrap_err();
    assert!(matches!(error, ReloadError::ShuttingDown), "{error}");
}

/// A client connecting in a loop while the configuration is reloaded twenty times
/// (alternating upstreams, each reload once the client was served since the last) sees
/// every connection accepted and answered: a kept listener has no accept gap, and a
/// swap of generations loses no connection.
#[test]
fn connections_made_across_many_reloads_are_all_served() {
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    let proxy = Running::start(config(any_port(), a.addr));
    let addr = proxy.addrs[0];
    let served = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (served, stop) = (served.clone(), stop.clone());
        thread::spawn(move || {
            let mut answers = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                answers.push(Client::connect(addr).get("/"));
                served.fetch_add(1, Ordering::SeqCst);
            }
            answers
        })
    };
    for round in 0..20 {
        let before = served.load(Ordering::SeqCst);
        let deadline = Instant::now() + LIMIT;
        while served.load(Ordering::SeqCst) == before {
            assert!(Instant::now() < deadline, "the client stalled");
            thread::yield_now();
        }
        let upstream = if round % 2 == 0 { b.addr } else { a.addr };
        proxy.reload.reload(config(any_port(), upstream)).unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let answers = client.join().expect("every connection was answered");
    assert!(answers.len() >= 20, "{} connections", answers.len());
    assert!(answers.iter().any(|body| body == "a"));
    assert!(answers.iter().any(|body| body == "b"));
    assert_eq!(proxy.reload.generation(), 21);
}

/// When `drain_timeout` passes, a request of the old generation still waiting for its
/// response is not cut: the response arrives whole, then the connection closes.
#[test]
fn a_request_in_flight_when_drain_timeout_passes_finishes() {
    let held = TcpListener::bind(any_port()).unwrap();
    let held_addr = held.local_addr().unwrap();
    let (answer, answer_now) = mpsc::channel::<()>();
    let (got, request_arrived) = mpsc::channel::<()>();
    thread::spawn(move || {
        let (stream, _) = held.accept().unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        read_head(&mut reader).expect("the request");
        got.send(()).unwrap();
        answer_now.recv_timeout(LIMIT).unwrap();
        let mut writer = stream;
        writer
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate")
            .unwrap();
    });
    let origin = Origin::start("origin");
    let mut first = config(any_port(), held_addr);
    first
        .core
        .routes
        .push(switchyard_core::Route::new("/idle/"));
    first.upstreams[0].servers = vec![held_addr];
    first.upstreams.push(switchyard_smol::UpstreamGroup {
        name: "idle".into(),
        servers: vec![origin.addr],
        ..Default::default()
    });
    first.route_upstream = vec![0, 1];
    let proxy = Running::start(first);
    let mut idle = Client::connect(proxy.addrs[0]);
    assert_eq!(idle.get("/idle/"), "origin");
    let mut in_flight = Client::connect(proxy.addrs[0]);
    in_flight
        .writer
        .write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    request_arrived.recv_timeout(LIMIT).unwrap();

    let mut next = config(any_port(), origin.addr);
    next.drain_timeout = Some(Duration::from_millis(100));
    proxy.reload.reload(next).unwrap();
    // The drain happened: the idle connection of the old generation is closed.
    assert!(idle.closed_by_proxy());
    answer.send(()).unwrap();
    let head = read_head(&mut in_flight.reader).expect("the response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut body = [0u8; 4];
    in_flight.reader.read_exact(&mut body).unwrap();
    assert_eq!(&body, b"late");
    assert!(in_flight.closed_by_proxy(), "kept alive after the drain");
}
