//! An independent reader of WebSocket frames (RFC 6455 §5.2) for the receiving ends of
//! frame-aware tests, and [`RawPeer`], a raw-socket endpoint that answers Pings the way a
//! live peer does while keeping every frame it received.
//!
//! The reader shares no code with the proxy's frame tracker: a test that parses what a
//! peer received with it proves the proxy wrote whole frames, not just frames the proxy's
//! own parser would accept.

use std::io::{self, ErrorKind};

use crate::http::Conn;
use crate::ws::{close_payload, encode_fragment};

/// Opcodes (RFC 6455 §5.2).
pub mod opcode {
    /// A continuation of a fragmented message.
    pub const CONTINUATION: u8 = 0x0;
    /// A text frame.
    pub const TEXT: u8 = 0x1;
    /// A binary frame.
    pub const BINARY: u8 = 0x2;
    /// Close.
    pub const CLOSE: u8 = 0x8;
    /// Ping.
    pub const PING: u8 = 0x9;
    /// Pong.
    pub const PONG: u8 = 0xA;
}

/// The key [`RawPeer::client`] masks its frames with. Fixed: a test peer needs none of
/// the unpredictability a browser's keys have.
pub const PEER_MASK: [u8; 4] = [0x5a, 0x13, 0xc7, 0x82];

/// One whole frame as a peer received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The FIN bit.
    pub fin: bool,
    /// The RSV1–3 bits, in place (`0x40` is RSV1).
    pub rsv: u8,
    /// The opcode (see [`opcode`]).
    pub opcode: u8,
    /// The masking key, if MASK was set.
    pub mask: Option<[u8; 4]>,
    /// The payload, unmasked.
    pub payload: Vec<u8>,
    /// Every byte of the frame exactly as received, header and masked payload.
    pub raw: Vec<u8>,
}

impl Frame {
    /// Whether this is a Ping, Pong or Close.
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }

    /// The code of a Close frame (`None` for other frames and for a Close without one).
    pub fn close_code(&self) -> Option<u16> {
        match self.payload[..] {
            [high, low, ..] if self.opcode == opcode::CLOSE => {
                Some(u16::from_be_bytes([high, low]))
            }
            _ => None,
        }
    }

    /// The reason text of a Close frame (empty when there is none).
    pub fn close_reason(&self) -> String {
        if self.opcode != opcode::CLOSE || self.payload.len() < 2 {
            return String::new();
        }
        String::from_utf8_lossy(&self.payload[2..]).into_owned()
    }
}

/// Parses one frame at the start of `bytes`: the frame and how many bytes it took, or
/// `None` while `bytes` do not hold all of it.
pub fn parse_frame(bytes: &[u8]) -> Option<(Frame, usize)> {
    let (&first, &second) = (bytes.first()?, bytes.get(1)?);
    let (length, mut at) = match second & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?)),
            4,
        ),
        127 => (u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?), 10),
        short => (u64::from(short), 2),
    };
    let mask = if second & 0x80 != 0 {
        let key: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(key)
    } else {
        None
    };
    let end = at.checked_add(usize::try_from(length).ok()?)?;
    let mut payload = bytes.get(at..end)?.to_vec();
    if let Some(key) = mask {
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= key[i % 4];
        }
    }
    let frame = Frame {
        fin: first & 0x80 != 0,
        rsv: first & 0x70,
        opcode: first & 0x0f,
        mask,
        payload,
        raw: bytes[..end].to_vec(),
    };
    Some((frame, end))
}

/// Splits `bytes` into whole frames; returns them and the bytes after the last whole
/// frame (empty when `bytes` end at a frame boundary).
pub fn parse_frames(mut bytes: &[u8]) -> (Vec<Frame>, &[u8]) {
    let mut frames = Vec::new();
    while let Some((frame, used)) = parse_frame(bytes) {
        frames.push(frame);
        bytes = &bytes[used..];
    }
    (frames, bytes)
}

impl Conn {
    /// Reads the next whole frame. `Ok(None)` when the peer closed (or reset) the
    /// connection at a frame boundary; an error when it closed inside a frame.
    pub fn read_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some((frame, used)) = parse_frame(self.buffered()) {
                self.consume(used);
                return Ok(Some(frame));
            }
            let closed = match self.fill() {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => true,
                Err(e) => return Err(e),
            };
            if closed {
                return if self.buffered().is_empty() {
                    Ok(None)
                } else {
                    Err(io::Error::new(
                        ErrorKind::InvalidData,
                        format!("EOF inside a frame: {:02x?}", self.buffered()),
                    ))
                };
            }
        }
    }
}

/// A WebSocket endpoint on a raw connection (after the handshake) that behaves like a
/// live peer: every Ping it reads is answered at once with a Pong carrying the same
/// payload. It keeps every frame it received, in order, and masks what it sends exactly
/// when it is the client.
#[derive(Debug)]
pub struct RawPeer<'a> {
    conn: &'a mut Conn,
    mask: Option<[u8; 4]>,
    received: Vec<Frame>,
}

impl<'a> RawPeer<'a> {
    /// The client end: its frames are masked with [`PEER_MASK`].
    pub fn client(conn: &'a mut Conn) -> Self {
        RawPeer {
            conn,
            mask: Some(PEER_MASK),
            received: Vec::new(),
        }
    }

    /// The upstream end: its frames are unmasked.
    pub fn server(conn: &'a mut Conn) -> Self {
        RawPeer {
            conn,
            mask: None,
            received: Vec::new(),
        }
    }

    /// The connection underneath (to write raw bytes or change timeouts).
    pub fn conn(&mut self) -> &mut Conn {
        self.conn
    }

    /// The frame this peer would send: masked when it is the client.
    pub fn encode(&self, fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        encode_fragment(fin, opcode, payload, self.mask)
    }

    /// Sends one final frame.
    pub fn send(&mut self, opcode: u8, payload: &[u8]) {
        let frame = self.encode(true, opcode, payload);
        self.conn.write_all(&frame);
    }

    /// Sends a Close frame with `code` and `reason`.
    pub fn send_close(&mut self, code: u16, reason: &str) {
        self.send(opcode::CLOSE, &close_payload(code, reason));
    }

    /// Reads the next frame, whatever it is; a Ping is answered before it is returned.
    /// `Ok(None)` at EOF.
    pub fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        let Some(frame) = self.conn.read_frame()? else {
            return Ok(None);
        };
        if frame.opcode == opcode::PING {
            let pong = self.encode(true, opcode::PONG, &frame.payload);
            // The proxy may already have closed its side; the Ping is still reported.
            let _ = self.conn.try_write_all(&pong);
        }
        self.received.push(frame.clone());
        Ok(Some(frame))
    }

    /// Reads frames, answering Pings, until one that is not a Ping. `Ok(None)` at EOF.
    pub fn next_non_ping(&mut self) -> io::Result<Option<Frame>> {
        loop {
            match self.next_frame()? {
                Some(frame) if frame.opcode == opcode::PING => {}
                other => return Ok(other),
            }
        }
    }

    /// Serves like a live endpoint until the peer closes: Pings answered, each data frame
    /// sent back with `echo` (as a final frame with the same opcode, for tests whose
    /// messages are single frames), and a Close answered with a Close of the same code,
    /// after which it returns (the server closes the TCP connection first, RFC 6455
    /// §7.1.1). Also returns at EOF. Calls `on_frame` with each frame as it arrives and
    /// returns them all.
    pub fn serve_until_close(
        &mut self,
        echo: bool,
        mut on_frame: impl FnMut(&Frame),
    ) -> io::Result<Vec<Frame>> {
        let mut frames = Vec::new();
        while let Some(frame) = self.next_frame()? {
            on_frame(&frame);
            let opcode = frame.opcode;
            if opcode == opcode::CLOSE {
                let code = frame.payload.get(..2).unwrap_or_default();
                let reply = self.encode(true, opcode::CLOSE, code);
                let _ = self.conn.try_write_all(&reply);
            } else if echo && (opcode == opcode::TEXT || opcode == opcode::BINARY) {
                let reply = self.encode(true, opcode, &frame.payload);
                let _ = self.conn.try_write_all(&reply);
            }
            frames.push(frame);
            if opcode == opcode::CLOSE {
                break;
            }
        }
        Ok(frames)
    }

    /// Every frame received so far, in order, Pings included.
    pub fn received(&self) -> &[Frame] {
        &self.received
    }
}
