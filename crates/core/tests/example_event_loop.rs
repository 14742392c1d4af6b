//! The `event_loop` example proxies over real loopback sockets: a WebSocket echo through
//! its tunnel and plain keep-alive GETs.

#[path = "../examples/event_loop.rs"]
#[allow(dead_code)]
mod event_loop;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use switchyard_core::Config;
use tungstenite::Message;

/// Every blocking socket operation of the test gives up after this.
const LIMIT: Duration = Duration::from_secs(10);

/// A running example proxy, stopped when dropped.
struct Running {
    addr: SocketAddr,
    stopper: event_loop::Stopper,
    thread: Option<thread::JoinHandle<io::Result<()>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stopper.stop();
        if let Some(thread) = self.thread.take() {
            let result = thread.join().expect("event loop panicked");
            if !thread::panicking() {
                result.expect("event loop failed");
            }
        }
    }
}

fn start_proxy(origin: SocketAddr) -> Running {
    start_proxy_with(origin, Config::default())
}

fn start_proxy_with(origin: SocketAddr, config: Config) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut proxy = event_loop::Proxy::new(listener, origin, config).unwrap();
    let addr = proxy.local_addr().unwrap();
    let stopper = proxy.stopper();
    let thread = Some(thread::spawn(move || proxy.run()));
    Running {
        addr,
        stopper,
        thread,
    }
}

/// An origin on 127.0.0.1: WebSocket upgrades are echoed (by tungstenite's server), other
/// requests are answered with their own head as the body, keep-alive.
fn start_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            thread::spawn(move || serve_origin(stream));
        }
    });
    addr
}

fn serve_origin(stream: TcpStream) {
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        // Read one head line by line; BufReader may hold bytes after it.
        let mut head = String::new();
        loop {
            let before = head.len();
            match reader.read_line(&mut head) {
                Ok(0) | Err(_) => return,
                Ok(_) if &head[before..] == "\r\n" => break,
                Ok(_) => {}
            }
        }
        if head.to_ascii_lowercase().contains("upgrade: websocket") {
            // Replay the head (and whatever was read past it) to tungstenite's handshake.
            let replay = Replay {
                prefix: io::Cursor::new([head.as_bytes(), reader.buffer()].concat()),
                stream,
            };
            let mut ws = tungstenite::accept(replay).expect("origin handshake");
            while let Ok(message) = ws.read() {
                if message.is_text() || message.is_binary() {
                    ws.send(message).unwrap();
                }
            }
            return;
        }
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{head}",
            head.len()
        );
        if reader.get_mut().write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// A stream whose first bytes are already read.
struct Replay {
    prefix: io::Cursor<Vec<u8>>,
    stream: TcpStream,
}

impl Read for Replay {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.prefix.read(buf)? {
            0 => self.stream.read(buf),
            n => Ok(n),
        }
    }
}

impl Write for Replay {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream.set_write_timeout(Some(LIMIT)).unwrap();
    stream
}

/// Reads one response with a `Content-Length` body; returns (head, body).
fn read_response(reader: &mut BufReader<TcpStream>) -> (String, String) {
    let mut head = String::new();
    loop {
        let before = head.len();
        assert_ne!(
            reader.read_line(&mut head).unwrap(),
            0,
            "EOF in head: {head:?}"
        );
        if &head[before..] == "\r\n" {
            break;
        }
    }
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("content-length")
        .parse()
        .unwrap();
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    (head, String::from_utf8(body).unwrap())
}

#[test]
fn websocket_text_and_binary_echo_through_the_event_loop() {
    let proxy = start_proxy(start_origin());
    let stream = connect(proxy.addr);
    let url = format!("ws://{}/chat", proxy.addr);
    let (mut ws, response) = tungstenite::client(url, stream).expect("handshake via proxy");
    assert_eq!(response.status(), 101);

    ws.send(Message::text("hello through the loop")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("hello through the loop"));
    // Large enough to take several reads and writes each way.
    let binary: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(binary.clone())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(binary));

    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("closing: {e}"),
        }
    }
}

#[test]
fn the_event_loop_pings_quiet_websocket_peers_and_absorbs_their_pongs() {
    let mut config = Config::default();
    config.routes[0].websocket.ping_interval = Some(Duration::from_millis(100));
    config.routes[0].websocket.ping_timeout = Duration::from_millis(300);
    let proxy = start_proxy_with(start_origin(), config);
    let stream = connect(proxy.addr);
    let (mut ws, _) = tungstenite::client(format!("ws://{}/chat", proxy.addr), stream).unwrap();

    // Quiet, the client is pinged (tungstenite answers each Ping as it reads the next
    // message); so is the origin, with frames masked by keys the loop hands the core,
    // or tungstenite would refuse them. Four Pings outlast interval + timeout: a peer
    // whose answers were not absorbed as answers would have been declared dead.
    for _ in 0..4 {
        match ws.read().unwrap() {
            Message::Ping(payload) => assert_eq!(payload.len(), 8),
            other => panic!("the client got {other:?} while quiet"),
        }
    }
    ws.send(Message::text("still open")).unwrap();
    // (A loaded machine may take an interval to echo: skip the Pings meanwhile.)
    let echo = loop {
        match ws.read().unwrap() {
            Message::Ping(_) => {}
            other => break other,
        }
    };
    assert_eq!(echo, Message::text("still open"));
    ws.close(None).unwrap();
}

#[test]
fn plain_gets_are_proxied_with_keep_alive() {
    let proxy = start_proxy(start_origin());
    let stream = connect(proxy.addr);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    for path in ["/first", "/second"] {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: example.test\r\nConnection: keep-alive\r\n\r\n");
        reader.get_mut().write_all(request.as_bytes()).unwrap();
        let (head, body) = read_response(&mut reader);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        // The origin echoes what it received: the rewritten request head.
        assert!(
            body.starts_with(&format!("GET {path} HTTP/1.1\r\n")),
            "{body}"
        );
        assert!(body.contains("X-Forwarded-For: 127.0.0.1\r\n"), "{body}");
        assert!(body.contains("Host: example.test\r\n"), "{body}");
    }
    // The proxy ends the connection when asked to.
    let request = "GET /last HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n";
    reader.get_mut().write_all(request.as_bytes()).unwrap();
    let (head, _) = read_response(&mut reader);
    assert!(head.contains("Connection: close\r\n"), "{head}");
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn unreachable_upstream_is_a_502() {
    // A port that was just free: connecting to it is refused at once.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = start_proxy(closed);
    let mut stream = connect(proxy.addr);
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    assert!(
        response.starts_with(b"HTTP/1.1 502 "),
        "{}",
        String::from_utf8_lossy(&response)
    );
}
