//! A minimal RFC 6455 codec: just what the origin and the load generator need.
//!
//! Frames are parsed from a [`RecvBuf`] without copying; client frames are built once
//! (already masked) and written many times, so the load generator spends its CPU on
//! syscalls, not on masking.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};

/// The GUID that RFC 6455 §1.3 appends to `Sec-WebSocket-Key`.
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Largest frame payload either side accepts (the benchmarks use at most 64 KiB).
pub const MAX_PAYLOAD: usize = 16 << 20;

/// Opcode of a binary data frame.
pub const OP_BINARY: u8 = 0x2;
/// Opcode of a Close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Opcode of a Ping frame.
pub const OP_PING: u8 = 0x9;
/// Opcode of a Pong frame.
pub const OP_PONG: u8 = 0xA;

/// `base64(SHA-1(key + GUID))`, the value of `Sec-WebSocket-Accept`.
pub fn accept_key(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    base64(&sha.digest().bytes())
}

/// Standard base64 with padding.
pub fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The fixed part of a frame: what [`parse_head`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    /// First byte with the RSV bits cleared: FIN and opcode.
    pub fin_opcode: u8,
    /// Masking key, present on client-to-server frames.
    pub mask: Option<[u8; 4]>,
    /// Bytes taken by the head (2 to 14).
    pub head_len: usize,
    /// Bytes of payload that follow the head.
    pub payload_len: usize,
}

impl FrameHead {
    /// The opcode (low four bits).
    pub fn opcode(&self) -> u8 {
        self.fin_opcode & 0x0F
    }

    /// Head plus payload.
    pub fn frame_len(&self) -> usize {
        self.head_len + self.payload_len
    }
}

/// Parses a frame head at the start of `buf`: `Ok(None)` when more bytes are needed.
pub fn parse_head(buf: &[u8]) -> io::Result<Option<FrameHead>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let masked = buf[1] & 0x80 != 0;
    let (len_bytes, payload_len) = match buf[1] & 0x7F {
        126 if buf.len() >= 4 => (2, usize::from(u16::from_be_bytes([buf[2], buf[3]]))),
        127 if buf.len() >= 10 => {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(raw);
            (8, usize::try_from(len).unwrap_or(usize::MAX))
        }
        126 | 127 => return Ok(None),
        len => (0, usize::from(len)),
    };
    if payload_len > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mask_at = 2 + len_bytes;
    let head_len = mask_at + if masked { 4 } else { 0 };
    if buf.len() < head_len {
        return Ok(None);
    }
    let mask = masked.then(|| {
        [
            buf[mask_at],
            buf[mask_at + 1],
            buf[mask_at + 2],
            buf[mask_at + 3],
        ]
    });
    Ok(Some(FrameHead {
        fin_opcode: buf[0] & 0x8F,
        mask,
        head_len,
        payload_len,
    }))
}

/// Appends a frame head for `payload_len` bytes to `out`.
pub fn push_head(out: &mut Vec<u8>, fin_opcode: u8, payload_len: usize, mask: Option<[u8; 4]>) {
    out.push(fin_opcode);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    if payload_len < 126 {
        out.push(mask_bit | payload_len as u8);
    } else if let Ok(len) = u16::try_from(payload_len) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(payload_len as u64).to_be_bytes());
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
}

/// XORs `data` with the masking key (RFC 6455 §5.3), eight bytes at a time.
pub fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

/// A whole masked client frame (FIN set), ready to be written as many times as needed.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    const KEY: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];
    let mut frame = Vec::with_capacity(payload.len() + 14);
    push_head(&mut frame, 0x80 | opcode, payload.len(), Some(KEY));
    let start = frame.len();
    frame.extend_from_slice(payload);
    apply_mask(&mut frame[start..], KEY);
    frame
}

/// A growable receive buffer: bytes are read at the end and consumed from the front.
#[derive(Debug)]
pub struct RecvBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl RecvBuf {
    /// A buffer that starts with `capacity` bytes and grows on demand.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            data: vec![0; capacity.max(64)],
            start: 0,
            end: 0,
        }
    }

    /// The unconsumed bytes.
    pub fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// The unconsumed bytes, writable (to unmask in place).
    pub fn filled_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.end]
    }

    /// Drops `n` bytes from the front.
    pub fn consume(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Makes sure `total` unconsumed bytes fit without another grow.
    pub fn reserve_total(&mut self, total: usize) {
        if self.data.len() - self.start < total {
            self.compact();
            if self.data.len() < total {
                self.data.resize(total, 0);
            }
        }
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// One `read` into the free space (made by compacting or growing); `Ok(0)` is EOF.
    pub fn fill_from(&mut self, reader: &mut impl Read) -> io::Result<usize> {
        if self.end == self.data.len() {
            self.compact();
            if self.end == self.data.len() {
                let grown = self.data.len() * 2;
                self.data.resize(grown, 0);
            }
        }
        let n = reader.read(&mut self.data[self.end..])?;
        self.end += n;
        Ok(n)
    }
}

/// Reads one whole frame into `buf` and returns its head; the caller consumes it.
pub fn read_frame(stream: &mut impl Read, buf: &mut RecvBuf) -> io::Result<FrameHead> {
    loop {
        if let Some(head) = parse_head(buf.filled())? {
            if buf.filled().len() >= head.frame_len() {
                return Ok(head);
            }
            buf.reserve_total(head.frame_len());
        }
        if buf.fill_from(stream)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Index just past the `\r\n\r\n` that ends an HTTP head, if `buf` holds one.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The value of header `name` (ASCII case-insensitive) in an HTTP head.
pub fn header<'h>(head: &'h [u8], name: &str) -> Option<&'h [u8]> {
    head.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        let (key, value) = line.split_at(colon);
        key.eq_ignore_ascii_case(name.as_bytes())
            .then(|| value[1..].trim_ascii())
    })
}

/// Whether a comma-separated header value contains `token` (case-insensitive).
pub fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// A WebSocket client connection that completed its opening handshake.
#[derive(Debug)]
pub struct Client {
    /// The socket (`TCP_NODELAY` set).
    pub stream: TcpStream,
    /// Bytes read past the 101 head, then every later read.
    pub buf: RecvBuf,
}

impl Client {
    /// Connects to `addr` and performs the opening handshake, checking the 101 fully.
    pub fn connect(addr: SocketAddr, seed: u64) -> io::Result<Self> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let buf = upgrade(&mut stream, addr, seed)?;
        Ok(Self { stream, buf })
    }

    /// Writes `frame` (from [`client_frame`]) and waits for its echo; returns the echoed
    /// payload length.
    pub fn round_trip(&mut self, frame: &[u8]) -> io::Result<usize> {
        self.stream.write_all(frame)?;
        let head = read_frame(&mut self.stream, &mut self.buf)?;
        self.buf.consume(head.frame_len());
        Ok(head.payload_len)
    }
}

/// The opening handshake on a connected `stream` (plain or TLS), the 101 checked fully;
/// returns the bytes read past the 101 head. `seed` makes the key.
pub fn upgrade(
    stream: &mut (impl Read + Write),
    addr: SocketAddr,
    seed: u64,
) -> io::Result<RecvBuf> {
    let key = base64(
        &seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .to_le_bytes()
            .repeat(2),
    );
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    let mut buf = RecvBuf::with_capacity(4096);
    let end = loop {
        if let Some(end) = head_end(buf.filled()) {
            break end;
        }
        if buf.filled().len() > 16 * 1024 || buf.fill_from(stream)? == 0 {
            return Err(bad("no complete 101 head"));
        }
    };
    let head = &buf.filled()[..end];
    if !head.starts_with(b"HTTP/1.1 101 ") {
        let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
        return Err(bad(&format!(
            "handshake answered {}",
            String::from_utf8_lossy(line)
        )));
    }
    let accept = header(head, "sec-websocket-accept");
    if accept != Some(accept_key(&key).as_bytes()) {
        return Err(bad("wrong Sec-WebSocket-Accept"));
    }
    buf.consume(end);
    Ok(buf)
}

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn base64_pads_like_rfc_4648() {
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn client_frame_parses_back_and_unmasks() {
        for len in [0, 5, 125, 126, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mut frame = client_frame(OP_BINARY, &payload);
            let head = parse_head(&frame).unwrap().unwrap();
            assert_eq!(head.payload_len, len);
            assert_eq!(head.frame_len(), frame.len());
            assert_eq!(head.fin_opcode, 0x80 | OP_BINARY);
            // Every strict prefix of the head is incomplete, not an error.
            for cut in 0..head.head_len {
                assert_eq!(parse_head(&frame[..cut]).unwrap(), None);
            }
            let body = &mut frame[head.head_len..];
            apply_mask(body, head.mask.unwrap());
            assert_eq!(body, &payload[..]);
        }
    }

    #[test]
    fn oversized_frame_is_an_error() {
        let mut frame = Vec::new();
        push_head(&mut frame, 0x82, MAX_PAYLOAD + 1, None);
        assert!(parse_head(&frame).is_err());
    }

    #[test]
    fn header_lookup_is_case_insensitive_and_tokens_split() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nconnection: keep-alive, Upgrade\r\n\r\n";
        assert_eq!(
            header(head, "Connection"),
            Some(&b"keep-alive, Upgrade"[..])
        );
        assert!(has_token(header(head, "connection").unwrap(), "upgrade"));
        assert!(!has_token(header(head, "connection").unwrap(), "close"));
        assert_eq!(header(head, "upgrade"), None);
    }
}
