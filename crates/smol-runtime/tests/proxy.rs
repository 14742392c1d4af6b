//! Real sockets on 127.0.0.1: scripted `std::net` origins and clients around a running
//! server. Every socket read is bounded by a timeout, so a broken proxy fails the test
//! instead of hanging it.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use switchyard_smol::{spawn, Server, ServerConfig, ShutdownHandle, UpstreamGroup};

const LIMIT: Duration = Duration::from_secs(5);

/// A keep-alive HTTP origin whose every response body is its name.
struct Origin {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Origin {
    fn start(name: &'static str) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (count, log) = (accepted.clone(), heads.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let log = log.clone();
                thread::spawn(move || serve_keep_alive(stream, name, &log));
            }
        });
        Origin {
            addr,
            accepted,
            heads,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.heads.lock().unwrap().len()
    }
}

fn serve_keep_alive(stream: TcpStream, body: &str, log: &Mutex<Vec<String>>) {
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    while let Some(head) = read_head(&mut reader) {
        log.lock().unwrap().push(head);
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// Reads a head up to its empty line; `None` at EOF before any byte of it.
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

/// A client connection to the proxy.
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

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    fn get(&mut self, path: &str) -> (u16, String) {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
        self.response()
    }

    /// Reads one response with a `Content-Length` body: (status, body).
    fn response(&mut self) -> (u16, String) {
        let head = read_head(&mut self.reader).expect("a response head");
        let status = head[9..12].parse().unwrap();
        let length = header(&head, "content-length").map_or(0, |v| v.parse().unwrap());
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).unwrap();
        (status, String::from_utf8(body).unwrap())
    }
}

fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn config(servers: Vec<SocketAddr>) -> ServerConfig {
    let mut config = ServerConfig::simple("127.0.0.1:0".parse().unwrap(), servers[0]);
    config.upstreams = vec![UpstreamGroup {
        name: "test".into(),
        servers,
        ..Default::default()
    }];
    config.workers = 2;
    config.shutdown_grace = Duration::from_secs(2);
    config
}

/// A running proxy that is shut down (and its `run` checked) when dropped.
struct Proxy {
    addr: SocketAddr,
    handle: ShutdownHandle,
    thread: Option<thread::JoinHandle<io::Result<()>>>,
}

impl Proxy {
    fn start(config: ServerConfig) -> Proxy {
        let (addrs, handle, thread) = spawn(config).unwrap();
        Proxy {
            addr: addrs[0],
            handle,
            thread: Some(thread),
        }
    }

    /// Shuts down and waits (bounded) for `run` to return.
    fn stop(&mut self) -> io::Result<()> {
        self.handle.shutdown();
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        let (done, wait) = mpsc::channel();
        thread::spawn(move || done.send(thread.join().unwrap()));
        wait.recv_timeout(Duration::from_secs(10))
            .expect("run returned after shutdown")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if !thread::panicking() {
            self.stop().unwrap();
        }
    }
}

/// An address nothing listens on.
fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[test]
fn get_is_forwarded_to_the_upstream() {
    let origin = Origin::start("hello");
    let proxy = Proxy::start(config(vec![origin.addr]));
    let mut client = Client::connect(proxy.addr);
    assert_eq!(client.get("/path?q=1"), (200, "hello".to_string()));
    let heads = origin.heads.lock().unwrap();
    assert!(
        heads[0].starts_with("GET /path?q=1 HTTP/1.1\r\n"),
        "{}",
        heads[0]
    );
    assert_eq!(header(&heads[0], "x-forwarded-for"), Some("127.0.0.1"));
}

#[test]
fn many_requests_on_one_client_connection() {
    let origin = Origin::start("ok");
    let proxy = Proxy::start(config(vec![origin.addr]));
    let mut client = Client::connect(proxy.addr);
    for _ in 0..20 {
        assert_eq!(client.get("/"), (200, "ok".to_string()));
    }
    assert_eq!(origin.requests(), 20);
    assert_eq!(origin.accepted(), 1);
}

/// One worker: each worker has a pool of its own (as each nginx worker process does).
fn one_worker(servers: Vec<SocketAddr>) -> ServerConfig {
    ServerConfig {
        workers: 1,
        ..config(servers)
    }
}

#[test]
fn upstream_connections_are_pooled_across_client_connections() {
    let origin = Origin::start("ok");
    let proxy = Proxy::start(one_worker(vec![origin.addr]));
    for _ in 0..3 {
        let mut client = Client::connect(proxy.addr);
        assert_eq!(client.get("/"), (200, "ok".to_string()));
    }
    assert_eq!(origin.requests(), 3);
    assert_eq!(origin.accepted(), 1, "one upstream connection, reused");
}

#[test]
fn pooled_connection_closed_by_the_upstream_is_not_used() {
    // An origin that answers as if keeping the connection alive, then closes it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            count.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if read_head(&mut reader).is_some() {
                let mut writer = stream;
                let _ = writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            }
        }
    });
    let proxy = Proxy::start(config(vec![origin]));
    for _ in 0..3 {
        let mut client = Client::connect(proxy.addr);
        assert_eq!(client.get("/"), (200, "ok".to_string()));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[test]
fn round_robin_spreads_requests_over_the_group() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let proxy = Proxy::start(one_worker(vec![a.addr, b.addr]));
    let mut bodies = Vec::new();
    for _ in 0..4 {
        let mut client = Client::connect(proxy.addr);
        bodies.push(client.get("/").1);
    }
    assert_eq!(bodies, ["a", "b", "a", "b"]);
    assert_eq!((a.accepted(), b.accepted()), (1, 1), "both pooled");
}

#[test]
fn refused_server_is_skipped_for_the_next_one() {
    let live = Origin::start("live");
    let proxy = Proxy::start(config(vec![dead_addr(), live.addr]));
    for _ in 0..3 {
        let mut client = Client::connect(proxy.addr);
        assert_eq!(client.get("/").0, 200);
    }
    assert_eq!(live.requests(), 3);
}

#[test]
fn unreachable_upstream_is_502() {
    let proxy = Proxy::start(config(vec![dead_addr(), dead_addr()]));
    let mut client = Client::connect(proxy.addr);
    assert_eq!(client.get("/").0, 502);
}

/// An origin accepting the `echo` upgrade; after its 101, `tunnel` serves the
/// connection (reads bounded by [`LIMIT`]).
fn echo_upgrade_origin(tunnel: fn(BufReader<TcpStream>, TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            thread::spawn(move || {
                stream.set_read_timeout(Some(LIMIT)).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                if read_head(&mut reader).is_none() {
                    return;
                }
                writer
                    .write_all(
                        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n",
                    )
                    .unwrap();
                tunnel(reader, writer);
            });
        }
    });
    addr
}

/// After its 101 it reads until the client's EOF, then answers with what it got and
/// closes.
fn upgrade_origin() -> SocketAddr {
    echo_upgrade_origin(|mut reader, mut writer| {
        let mut received = Vec::new();
        reader.read_to_end(&mut received).unwrap();
        writer.write_all(b"got:").unwrap();
        writer.write_all(&received).unwrap();
    })
}

fn upgrade_config(origin: SocketAddr) -> ServerConfig {
    let mut config = config(vec![origin]);
    config.core.routes[0].allow_upgrade = vec!["echo".to_string()];
    config
}

const UPGRADE_REQUEST: &[u8] =
    b"GET /echo HTTP/1.1\r\nHost: test\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n";

#[test]
fn tunnel_half_close_lets_the_other_direction_finish() {
    let proxy = Proxy::start(upgrade_config(upgrade_origin()));
    let mut client = Client::connect(proxy.addr);
    client.send(UPGRADE_REQUEST);
    let head = read_head(&mut client.reader).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    client.send(b"hello ");
    client.send(b"world");
    client.writer.shutdown(Shutdown::Write).unwrap();
    let mut rest = String::new();
    client.reader.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "got:hello world");
}

#[test]
fn tunnel_carries_a_large_stream() {
    let proxy = Proxy::start(upgrade_config(upgrade_origin()));
    let mut client = Client::connect(proxy.addr);
    client.send(UPGRADE_REQUEST);
    read_head(&mut client.reader).unwrap();
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut writer = client.writer.try_clone().unwrap();
    let sent = payload.clone();
    let sender = thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut rest = Vec::new();
    client.reader.read_to_end(&mut rest).unwrap();
    sender.join().unwrap();
    assert_eq!(&rest[..4], b"got:");
    assert!(rest[4..] == payload[..], "payload intact");
}

#[test]
fn shutdown_completes_the_request_in_flight() {
    // An origin that answers only when told to.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = listener.local_addr().unwrap();
    let (got_request, request_seen) = mpsc::channel();
    let (answer, answer_now) = mpsc::channel::<()>();
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        read_head(&mut reader).unwrap();
        got_request.send(()).unwrap();
        answer_now.recv().unwrap();
        let mut writer = stream;
        writer
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
            .unwrap();
    });
    let mut proxy = Proxy::start(config(vec![origin]));
    let mut client = Client::connect(proxy.addr);
    client.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    request_seen.recv_timeout(LIMIT).unwrap();

    proxy.handle.shutdown();
    answer.send(()).unwrap();
    assert_eq!(client.response(), (200, "done".to_string()));
    proxy.stop().unwrap();
    assert!(
        TcpStream::connect(proxy.addr).is_err(),
        "the listener is closed after run returns"
    );
}

#[test]
fn accepting_pauses_at_max_connections() {
    let origin = Origin::start("ok");
    let mut config = config(vec![origin.addr]);
    config.max_connections = 1;
    let proxy = Proxy::start(config);
    let mut first = Client::connect(proxy.addr);
    assert_eq!(first.get("/"), (200, "ok".to_string()));

    // The kernel completes the handshake, but the proxy does not accept it yet.
    let mut second = Client::connect(proxy.addr);
    second.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    second
        .writer
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = second.writer.peek(&mut byte);
    assert!(
        early.is_err(),
        "no answer while the limit is reached: {early:?}"
    );

    drop(first);
    second.writer.set_read_timeout(Some(LIMIT)).unwrap();
    assert_eq!(second.response(), (200, "ok".to_string()));
}

#[test]
fn bind_reports_a_port_in_use() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let error = Server::bind(ServerConfig::simple(addr, dead_addr())).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
    assert!(error.to_string().contains(&addr.to_string()), "{error}");
}

#[test]
fn bind_rejects_a_route_without_an_upstream_group() {
    let mut config = ServerConfig::simple("127.0.0.1:0".parse().unwrap(), dead_addr());
    config.route_upstream = vec![1];
    let error = Server::bind(config).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn bytes_sent_with_the_upgrade_request_reach_the_tunnel() {
    let proxy = Proxy::start(upgrade_config(upgrade_origin()));
    let mut client = Client::connect(proxy.addr);
    let mut first_write = UPGRADE_REQUEST.to_vec();
    first_write.extend_from_slice(b"early");
    client.send(&first_write);
    let head = read_head(&mut client.reader).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    client.writer.shutdown(Shutdown::Write).unwrap();
    let mut rest = String::new();
    client.reader.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "got:early");
}

/// An origin that accepts the `echo` upgrade and then holds the connection silently
/// until the proxy closes it; reports when that happened.
fn silent_upgrade_origin() -> (SocketAddr, mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed, closed_seen) = mpsc::channel();
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        read_head(&mut reader).unwrap();
        let mut writer = stream;
        writer
            .write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n",
            )
            .unwrap();
        let mut rest = Vec::new();
        if reader.read_to_end(&mut rest).is_ok() {
            let _ = closed.send(());
        }
    });
    (addr, closed_seen)
}

#[test]
fn silent_tunnel_is_closed_after_read_timeout() {
    let (origin, origin_closed) = silent_upgrade_origin();
    let mut config = upgrade_config(origin);
    config.core.routes[0].timeouts.read = Duration::from_millis(200);
    let proxy = Proxy::start(config);
    let mut client = Client::connect(proxy.addr);
    client.send(UPGRADE_REQUEST);
    read_head(&mut client.reader).unwrap();
    let mut rest = Vec::new();
    client.reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    origin_closed.recv_timeout(LIMIT).unwrap();
}

#[test]
fn shutdown_closes_a_tunnel_after_the_grace() {
    let (origin, origin_closed) = silent_upgrade_origin();
    let mut config = upgrade_config(origin);
    config.shutdown_grace = Duration::from_millis(200);
    let mut proxy = Proxy::start(config);
    let mut client = Client::connect(proxy.addr);
    client.send(UPGRADE_REQUEST);
    read_head(&mut client.reader).unwrap();

    let started = std::time::Instant::now();
    proxy.stop().unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "the tunnel got its grace"
    );
    let mut rest = Vec::new();
    client.reader.read_to_end(&mut rest).unwrap();
    origin_closed.recv_timeout(LIMIT).unwrap();
}

/// After its 101 it echoes as it reads (no EOF needed).
fn live_echo_origin() -> SocketAddr {
    echo_upgrade_origin(|mut reader, mut writer| {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = reader.read(&mut chunk) {
            if n == 0 || writer.write_all(&chunk[..n]).is_err() {
                return;
            }
        }
    })
}

/// Reads exactly `n` bytes (each read bounded by the client's timeout).
fn read_exactly(client: &mut Client, n: usize) -> Vec<u8> {
    let mut got = vec![0u8; n];
    client.reader.read_exact(&mut got).unwrap();
    got
}

/// TCP urgent data: a read stops short at the urgent mark with bytes queued behind it,
/// which must not be taken for a drained socket (the bytes after the mark would wait
/// for the client's next send, or forever). The urgent byte itself is not part of the
/// stream (no `SO_OOBINLINE`), so the origin sees only the bytes around it. Also after
/// bulk data, when the direction splices (splice never reads past the mark).
#[test]
fn urgent_data_does_not_stall_a_tunnel() {
    use rustix::net::{send, SendFlags};
    let proxy = Proxy::start(upgrade_config(live_echo_origin()));
    let mut client = Client::connect(proxy.addr);
    client.send(UPGRADE_REQUEST);
    assert!(read_head(&mut client.reader)
        .unwrap()
        .starts_with("HTTP/1.1 101"));

    let urgent_between = |client: &mut Client, before: &[u8], after: &[u8]| {
        // One burst: the three arrive before the proxy reads, as far as timing allows.
        client.send(before);
        send(&client.writer, b"!", SendFlags::OOB).unwrap();
        client.send(after);
    };
    urgent_between(&mut client, b"before", b"after");
    assert_eq!(read_exactly(&mut client, 11), b"beforeafter");

    // Bulk first, so that the direction splices, with the mark right behind it.
    let bulk: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut writer = client.writer.try_clone().unwrap();
    let sent = bulk.clone();
    let sender = thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        send(&writer, b"!", SendFlags::OOB).unwrap();
        writer.write_all(b"tail").unwrap();
    });
    let echoed = read_exactly(&mut client, bulk.len() + 4);
    sender.join().unwrap();
    assert!(echoed[..bulk.len()] == bulk[..], "bulk bytes differ");
    assert_eq!(&echoed[bulk.len()..], b"tail");
}
