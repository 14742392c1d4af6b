//! The peers of the WebSocket tests: a running proxy whose events are kept, tungstenite
//! origins, raw socket origins and clients, and hand-made frames.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use switchyard_core::{Event, Side, TunnelRecord, WebSocketPolicy};
use switchyard_smol::{spawn, EventContext, EventSink, ServerConfig, ShutdownHandle};
use tungstenite::Message;

/// Every blocking socket operation of a test gives up after this.
pub const LIMIT: Duration = Duration::from_secs(5);

/// Keeps every event of every connection, and wakes whoever waits for a tunnel's end.
#[derive(Debug, Default)]
pub struct Events {
    events: Mutex<Vec<Event>>,
    changed: Condvar,
}

impl EventSink for Events {
    fn event(&self, _context: &EventContext, event: &Event) {
        self.events.lock().unwrap().push(event.clone());
        self.changed.notify_all();
    }
}

impl Events {
    /// The record of the (only) tunnel, once it has closed (bounded wait).
    pub fn tunnel(&self) -> TunnelRecord {
        let deadline = Instant::now() + LIMIT;
        let mut events = self.events.lock().unwrap();
        loop {
            let closed = events.iter().find_map(|event| match event {
                Event::TunnelClosed(record) => Some(TunnelRecord::clone(record)),
                _ => None,
            });
            if let Some(record) = closed {
                return record;
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .expect("the tunnel did not close in time");
            events = self.changed.wait_timeout(events, left).unwrap().0;
        }
    }

    /// The WebSocket rules peers broke, in order.
    pub fn violations(&self) -> Vec<(Side, &'static str)> {
        let events = self.events.lock().unwrap();
        let violations = events.iter().filter_map(|event| match event {
            Event::WebSocketViolation { side, rule } => Some((*side, *rule)),
            _ => None,
        });
        violations.collect()
    }
}

/// A running proxy in front of one origin, shut down (and its `run` checked) when
/// dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    pub handle: ShutdownHandle,
    pub events: Arc<Events>,
    thread: Option<thread::JoinHandle<io::Result<()>>>,
}

impl Proxy {
    /// A proxy whose WebSocket tunnels follow `policy`, with `grace` to drain.
    pub fn start(origin: SocketAddr, policy: WebSocketPolicy, grace: Duration) -> Proxy {
        let events = Arc::new(Events::default());
        let mut config = ServerConfig::simple("127.0.0.1:0".parse().unwrap(), origin);
        config.core.routes[0].websocket = policy;
        config.workers = 1;
        config.shutdown_grace = grace;
        config.events = events.clone();
        let (addrs, handle, thread) = spawn(config).unwrap();
        Proxy {
            addr: addrs[0],
            handle,
            events,
            thread: Some(thread),
        }
    }

    /// Shuts down and waits (bounded) for `run` to return.
    pub fn stop(&mut self) {
        self.handle.shutdown();
        let Some(thread) = self.thread.take() else {
            return;
        };
        let (done, wait) = mpsc::channel();
        thread::spawn(move || done.send(thread.join().unwrap()));
        let result = wait
            .recv_timeout(Duration::from_secs(10))
            .expect("run returned after shutdown");
        result.expect("run succeeded");
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if !thread::panicking() {
            self.stop();
        }
    }
}

/// Validation on (the default) and pings every `interval`, a peer dead `timeout` after
/// one.
pub fn pinging(interval: Duration, timeout: Duration) -> WebSocketPolicy {
    WebSocketPolicy {
        ping_interval: Some(interval),
        ping_timeout: timeout,
        ..WebSocketPolicy::default()
    }
}

/// A tungstenite origin for one connection that echoes text and binary messages and
/// reports every message it reads (Pings and Closes included; it answers those itself).
pub fn echo_origin() -> (SocketAddr, mpsc::Receiver<Message>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen, messages) = mpsc::channel();
    thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut ws = tungstenite::accept(stream).expect("origin handshake");
        while let Ok(message) = ws.read() {
            if message.is_text() || message.is_binary() {
                let _ = ws.send(message.clone());
            }
            if seen.send(message).is_err() {
                return;
            }
        }
    });
    (addr, messages)
}

/// A tungstenite client connected through the proxy at `addr`.
pub fn ws_client(addr: SocketAddr) -> tungstenite::WebSocket<TcpStream> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream.set_nodelay(true).unwrap();
    let (ws, response) = tungstenite::client(format!("ws://{addr}/chat"), stream).unwrap();
    assert_eq!(response.status(), 101);
    ws
}

/// The next message from `messages` that is not a Ping or Pong (bounded wait).
pub fn next_data(messages: &mpsc::Receiver<Message>) -> Message {
    loop {
        match messages.recv_timeout(LIMIT).expect("a message") {
            Message::Ping(_) | Message::Pong(_) => {}
            other => return other,
        }
    }
}

/// Reads a head up to its empty line.
pub fn read_head(reader: &mut impl BufRead) -> String {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "EOF in a head");
        head.push_str(&line);
        if line == "\r\n" {
            return head;
        }
    }
}

/// The key a raw client sends (RFC 6455's example).
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A WebSocket upgrade request with [`KEY`].
pub fn upgrade_request() -> Vec<u8> {
    format!(
        "GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// A raw origin for one connection: it answers the upgrade with a valid `101` followed
/// by `after_101` in the same write, then hands the socket to `then` (the reader may
/// hold bytes that followed the request head).
pub fn raw_origin(
    after_101: Vec<u8>,
    then: impl FnOnce(BufReader<TcpStream>, TcpStream) + Send + 'static,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let head = read_head(&mut reader);
        let key = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim().to_string())
            })
            .expect("a key");
        let accept = switchyard_core::websocket_accept(key.as_bytes());
        let mut answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .into_bytes();
        answer.extend_from_slice(&after_101);
        writer.write_all(&answer).unwrap();
        then(reader, writer);
    });
    addr
}

/// A raw client that has completed the upgrade through the proxy at `addr`, having
/// sent `after_request` in the same write as its request.
pub fn raw_client(addr: SocketAddr, after_request: &[u8]) -> (BufReader<TcpStream>, TcpStream) {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut request = upgrade_request();
    request.extend_from_slice(after_request);
    writer.write_all(&request).unwrap();
    let head = read_head(&mut reader);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    (reader, writer)
}

/// One final frame with a 7- or 16-bit length, masked with `mask` if given.
pub fn frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut bytes = vec![0x80 | opcode];
    let masked = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        len @ 0..=125 => bytes.push(masked | len as u8),
        len => {
            bytes.push(masked | 126);
            bytes.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            bytes.extend_from_slice(&key);
            bytes.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => bytes.extend_from_slice(payload),
    }
    bytes
}

/// A frame read from a raw socket: its first byte, its payload (unmasked), and whether
/// it was masked. Only 7- and 16-bit lengths (the tests send no more).
pub fn read_frame(reader: &mut impl Read) -> (u8, Vec<u8>, bool) {
    let mut head = [0u8; 2];
    reader.read_exact(&mut head).unwrap();
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7f {
        126 => {
            let mut len = [0u8; 2];
            reader.read_exact(&mut len).unwrap();
            usize::from(u16::from_be_bytes(len))
        }
        127 => panic!("a 64-bit length"),
        len => usize::from(len),
    };
    let mut key = [0u8; 4];
    if masked {
        reader.read_exact(&mut key).unwrap();
    }
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).unwrap();
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
    (head[0], payload, masked)
}

/// The code of a Close frame's payload.
pub fn close_code(payload: &[u8]) -> u16 {
    assert!(payload.len() >= 2, "a Close without a code");
    u16::from_be_bytes([payload[0], payload[1]])
}
