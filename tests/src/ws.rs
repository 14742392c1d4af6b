//! WebSocket helpers: a `tungstenite` client, raw handshakes and a frame encoder for
//! tests that need exact control over what goes into each write.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tungstenite::handshake::client::Response;
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use crate::http::{Conn, Head};
use crate::IO_TIMEOUT;

/// The `Sec-WebSocket-Key` of RFC 6455's example handshake.
pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A `tungstenite` configuration that accepts messages of up to 64 MiB.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
}

/// Opens a WebSocket to `ws://addr{path}` with `tungstenite`; panics if the handshake fails.
pub fn ws_connect(addr: SocketAddr, path: &str) -> (WebSocket<TcpStream>, Response) {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("set_read_timeout");
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("set_write_timeout");
    stream.set_nodelay(true).expect("set_nodelay");
    tungstenite::client::client_with_config(format!("ws://{addr}{path}"), stream, Some(ws_config()))
        .unwrap_or_else(|e| panic!("WebSocket handshake through {addr}: {e}"))
}

/// A WebSocket handshake request for `path` with [`WS_KEY`] and `extra` header lines
/// (each ending in CRLF), using `connection` as the `Connection` value.
pub fn ws_request(path: &str, connection: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\nConnection: {connection}\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Sends a Close frame and reads until the peer's Close has been seen and the connection
/// is closed; panics on any other outcome.
pub fn ws_close(ws: &mut WebSocket<TcpStream>) {
    ws.close(None).expect("send Close");
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => return,
            Err(e) => panic!("closing handshake failed: {e}"),
        }
    }
}

/// Reads from `ws` for `quiet` without sending anything (tungstenite answers Pings by
/// itself) and returns the payloads of the Pings that arrived. Any other message, or the
/// end of the tunnel, fails the test.
pub fn ws_stay_quiet(ws: &mut WebSocket<TcpStream>, quiet: Duration) -> Vec<Vec<u8>> {
    let started = Instant::now();
    let mut pings = Vec::new();
    while let Some(left) = quiet.checked_sub(started.elapsed()) {
        // Short reads, so the loop ends on time however quiet the tunnel is.
        let wait = left
            .min(Duration::from_millis(50))
            .max(Duration::from_millis(1));
        ws.get_ref()
            .set_read_timeout(Some(wait))
            .expect("set_read_timeout");
        match ws.read() {
            Ok(Message::Ping(payload)) => pings.push(payload.to_vec()),
            Ok(other) => panic!(
                "{:?} into the quiet period the client read {other:?}",
                started.elapsed()
            ),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!(
                "the tunnel ended {:?} into the quiet period: {e}",
                started.elapsed()
            ),
        }
    }
    ws.get_ref()
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("set_read_timeout");
    pings
}

/// The next message that is not a Ping (tungstenite answers those by itself).
pub fn ws_next_message(ws: &mut WebSocket<TcpStream>) -> Message {
    loop {
        match ws.read().expect("a message") {
            Message::Ping(_) => {}
            message => return message,
        }
    }
}

/// A valid `101 Switching Protocols` head answering a handshake with `key`.
pub fn ws_accept_response(key: &str) -> String {
    ws_accept_response_with(key, "")
}

/// Like [`ws_accept_response`], with `extra` header lines (each ending in CRLF), such as
/// the `Sec-WebSocket-Extensions` the origin agrees to.
pub fn ws_accept_response_with(key: &str, extra: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n{extra}\r\n",
        derive_accept_key(key.as_bytes())
    )
}

/// Opens a raw WebSocket connection through `addr`: sends [`ws_request`] for `/` with
/// `extra` header lines, checks the `101` and its `Sec-WebSocket-Accept`, and returns the
/// connection (holding whatever came after the 101 head) and the 101's head.
pub fn ws_connect_raw(addr: SocketAddr, extra: &str) -> (Conn, Head) {
    let mut client = Conn::connect(addr);
    client.write_all(ws_request("/", "Upgrade", extra).as_bytes());
    let response = client
        .read_response("GET")
        .unwrap_or_else(|e| panic!("a response to the handshake through {addr}: {e}"));
    assert_eq!(
        response.head.status(),
        101,
        "handshake answered with {:?}",
        response.head.start_line
    );
    assert_eq!(
        response.head.get("sec-websocket-accept"),
        Some(derive_accept_key(WS_KEY.as_bytes()).as_str()),
        "the 101's Sec-WebSocket-Accept"
    );
    (client, response.head)
}

/// Encodes one final frame with `opcode` (1 text, 2 binary, 8 close) around `payload`,
/// masked with `mask` when given (clients must mask, servers must not).
pub fn encode_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    encode_fragment(true, opcode, payload, mask)
}

/// Like [`encode_frame`], with the FIN bit given: `fin == false` starts or continues a
/// fragmented message (continuation frames have opcode 0).
pub fn encode_fragment(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    encode_raw_frame(if fin { 0x80 } else { 0 } | opcode, payload, mask)
}

/// Encodes a frame whose first byte (FIN, RSV1–3 and opcode) is `first_byte` exactly as
/// it goes on the wire, so tests can set reserved bits and opcodes a peer must refuse.
pub fn encode_raw_frame(first_byte: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut frame = vec![first_byte];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        len @ 0..=125 => frame.push(mask_bit | len as u8),
        len @ 126..=0xffff => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            frame.extend_from_slice(&key);
            frame.extend(
                payload
                    .iter()
                    .enumerate()
                    .map(|(i, byte)| byte ^ key[i % 4]),
            );
        }
        None => frame.extend_from_slice(payload),
    }
    frame
}

/// The payload of a Close frame: `code` in network byte order, then `reason`.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}
