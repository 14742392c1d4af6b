//! A deliberately small, independent HTTP/1.1 reader over a raw `TcpStream`.
//!
//! It parses leniently (so it can record whatever the proxy sends) and offers
//! [`Head::problems`] and [`chunked_is_canonical`] to check strictly.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};

use crate::IO_TIMEOUT;

/// Header fields that must never be forwarded, in either direction, besides those named
/// by `Connection` (docs/ARCHITECTURE.md, "Hop-by-hop headers").
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
];

/// `200 OK` with a `Content-Length` body.
pub fn ok(body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

/// A message head as received: the raw bytes (including the final empty line), the start
/// line and the fields split at their first colon.
#[derive(Debug, Clone)]
pub struct Head {
    /// Every byte of the head, up to and including the blank line.
    pub raw: Vec<u8>,
    /// The request or status line, without its line ending.
    pub start_line: String,
    /// Field names as sent and values trimmed of surrounding whitespace.
    pub fields: Vec<(String, String)>,
}

impl Head {
    fn parse(raw: Vec<u8>) -> Head {
        let text = String::from_utf8_lossy(&raw).into_owned();
        let mut lines = text.split("\r\n");
        let start_line = lines.next().unwrap_or_default().to_string();
        let fields = lines
            .filter(|line| !line.is_empty())
            .map(|line| match line.split_once(':') {
                Some((name, value)) => (
                    name.to_string(),
                    value.trim_matches([' ', '\t']).to_string(),
                ),
                None => (line.to_string(), String::new()),
            })
            .collect();
        Head {
            raw,
            start_line,
            fields,
        }
    }

    /// The status code of a response head (0 if the status line is malformed).
    pub fn status(&self) -> u16 {
        self.start_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0)
    }

    /// The method of a request head.
    pub fn method(&self) -> &str {
        self.start_line.split(' ').next().unwrap_or_default()
    }

    /// The request target of a request head.
    pub fn target(&self) -> &str {
        self.start_line.split(' ').nth(1).unwrap_or_default()
    }

    /// The first value of the field `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).into_iter().next()
    }

    /// Every value of the field `name` (case-insensitive), in order.
    pub fn get_all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// Whether a field `name` is present.
    pub fn has(&self, name: &str) -> bool {
        !self.get_all(name).is_empty()
    }

    /// Whether the comma-separated list in the fields `name` holds `token` (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name)
            .iter()
            .flat_map(|value| value.split(','))
            .any(|item| item.trim().eq_ignore_ascii_case(token))
    }

    /// Hop-by-hop fields present in this head: the fixed list (except `Connection` itself,
    /// which a proxy writes on its own, and `Transfer-Encoding`, which it may use for its own
    /// framing) plus `extra_named` (the names a peer listed in its `Connection`).
    pub fn hop_by_hop_present(&self, extra_named: &[&str]) -> Vec<String> {
        self.fields
            .iter()
            .map(|(name, _)| name.to_ascii_lowercase())
            .filter(|name| {
                let fixed = HOP_BY_HOP.contains(&name.as_str())
                    && name != "connection"
                    && name != "transfer-encoding";
                fixed
                    || extra_named
                        .iter()
                        .any(|extra| extra.eq_ignore_ascii_case(name))
            })
            .collect()
    }

    /// Everything about the raw bytes that is not well-formed HTTP/1.1: lines not ended by
    /// CRLF, bare CR or LF, obs-fold, invalid field-name characters, controls in values.
    /// Empty when the head is clean.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let Some(body) = self.raw.strip_suffix(b"\r\n\r\n") else {
            return vec!["head does not end with CRLF CRLF".into()];
        };
        for (index, line) in split_crlf(body).enumerate() {
            if line.contains(&b'\r') || line.contains(&b'\n') {
                problems.push(format!("bare CR or LF in line {index}"));
            }
            self.check_line(index, line, &mut problems);
        }
        problems
    }

    fn check_line(&self, index: usize, line: &[u8], problems: &mut Vec<String>) {
        let shown = String::from_utf8_lossy(line);
        if index == 0 {
            if line.iter().any(|&byte| byte < 0x20 || byte == 0x7f) {
                problems.push(format!("control character in start line {shown:?}"));
            }
            return;
        }
        if line
            .first()
            .is_some_and(|&byte| byte == b' ' || byte == b'\t')
        {
            problems.push(format!("obs-fold in {shown:?}"));
            return;
        }
        let Some(colon) = line.iter().position(|&byte| byte == b':') else {
            problems.push(format!("field line without colon {shown:?}"));
            return;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&byte| is_tchar(byte)) {
            problems.push(format!("invalid field name in {shown:?}"));
        }
        if value
            .iter()
            .any(|&byte| (byte < 0x20 && byte != b'\t') || byte == 0x7f)
        {
            problems.push(format!("control character in value of {shown:?}"));
        }
    }
}

fn split_crlf(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(bytes);
    std::iter::from_fn(move || {
        let current = rest?;
        match find(current, b"\r\n") {
            Some(end) => {
                rest = Some(&current[end + 2..]);
                Some(&current[..end])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// A complete message: its head and its body, decoded and as it was framed on the wire.
#[derive(Debug, Clone)]
pub struct Message {
    /// The head.
    pub head: Head,
    /// The body after removing chunked framing.
    pub body: Vec<u8>,
    /// The body bytes exactly as received (chunk-size lines and all).
    pub raw_body: Vec<u8>,
}

impl Message {
    /// Head and raw body, exactly as received.
    pub fn raw(&self) -> Vec<u8> {
        let mut raw = self.head.raw.clone();
        raw.extend_from_slice(&self.raw_body);
        raw
    }
}

/// Checks that `raw` is a chunked body written the canonical way: every size line plain
/// hex without leading zeros or extensions, every chunk followed by CRLF, a last chunk
/// `0` and no trailers.
pub fn chunked_is_canonical(raw: &[u8]) -> Result<(), String> {
    let mut rest = raw;
    loop {
        let end = find(rest, b"\r\n").ok_or("size line without CRLF")?;
        let line = &rest[..end];
        rest = &rest[end + 2..];
        let text = std::str::from_utf8(line).map_err(|_| "size line is not ASCII")?;
        if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(format!("size line {text:?} is not plain hex"));
        }
        if text.len() > 1 && text.starts_with('0') {
            return Err(format!("size line {text:?} has leading zeros"));
        }
        let size = usize::from_str_radix(text, 16).map_err(|e| e.to_string())?;
        if size == 0 {
            return if rest == b"\r\n" {
                Ok(())
            } else {
                Err(format!(
                    "after the last chunk: {:?}",
                    String::from_utf8_lossy(rest)
                ))
            };
        }
        if rest.len() < size + 2 || &rest[size..size + 2] != b"\r\n" {
            return Err(format!("chunk of {size} bytes not followed by CRLF"));
        }
        rest = &rest[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, message.into())
}

/// A raw connection (client or origin side) with a receive buffer and, optionally, a
/// recorder that keeps every byte ever read.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buffer: Vec<u8>,
    recorder: Option<Arc<Mutex<Vec<u8>>>>,
    requests: Option<Arc<Mutex<Vec<Message>>>>,
}

impl Conn {
    /// Connects to `addr` with [`IO_TIMEOUT`] on reads and writes; panics on failure.
    pub fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        Conn::new(stream)
    }

    /// Wraps an accepted or connected stream, setting [`IO_TIMEOUT`] and `TCP_NODELAY`.
    pub fn new(stream: TcpStream) -> Conn {
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("set_read_timeout");
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("set_write_timeout");
        stream.set_nodelay(true).expect("set_nodelay");
        Conn {
            stream,
            buffer: Vec::new(),
            recorder: None,
            requests: None,
        }
    }

    /// A connection that appends every byte it reads to `recorder` and every request it
    /// reads with [`Conn::read_request`] to `requests`.
    pub(crate) fn recording(
        stream: TcpStream,
        recorder: Arc<Mutex<Vec<u8>>>,
        requests: Arc<Mutex<Vec<Message>>>,
    ) -> Conn {
        Conn {
            recorder: Some(recorder),
            requests: Some(requests),
            ..Conn::new(stream)
        }
    }

    /// The underlying stream (to change timeouts, shut down, or clone).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Takes the bytes received but not consumed yet.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buffer)
    }

    /// Splits into the stream and the bytes received but not consumed yet.
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        (self.stream, self.buffer)
    }

    /// Writes all of `bytes` in one `write_all` call; panics on failure.
    pub fn write_all(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write {} bytes: {e}", bytes.len()));
    }

    /// Writes all of `bytes`, returning the error instead of panicking.
    pub fn try_write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Shuts down the writing half (sends FIN).
    pub fn shutdown_write(&self) {
        self.stream
            .shutdown(Shutdown::Write)
            .expect("shutdown(Write)");
    }

    /// The bytes received but not consumed yet.
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.buffer
    }

    /// Drops the first `n` buffered bytes (consumed by a reader outside this module).
    pub(crate) fn consume(&mut self, n: usize) {
        self.buffer.drain(..n);
    }

    /// Reads once more into the buffer; `Ok(0)` is EOF.
    pub(crate) fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 64 * 1024];
        let n = loop {
            match self.stream.read(&mut chunk) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        self.buffer.extend_from_slice(&chunk[..n]);
        if let Some(recorder) = &self.recorder {
            recorder.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
        Ok(n)
    }

    /// Reads a head (up to and including CRLF CRLF). `Ok(None)` on EOF before any byte.
    pub fn read_head(&mut self) -> io::Result<Option<Head>> {
        let mut searched = 0;
        loop {
            if let Some(end) = find(&self.buffer[searched..], b"\r\n\r\n") {
                let end = searched + end + 4;
                let raw: Vec<u8> = self.buffer.drain(..end).collect();
                return Ok(Some(Head::parse(raw)));
            }
            searched = self.buffer.len().saturating_sub(3);
            if self.fill()? == 0 {
                return if self.buffer.is_empty() {
                    Ok(None)
                } else {
                    Err(invalid(format!(
                        "EOF inside a head: {:?}",
                        String::from_utf8_lossy(&self.buffer)
                    )))
                };
            }
        }
    }

    /// Reads exactly `n` bytes.
    pub fn read_exact_bytes(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buffer.len() < n {
            if self.fill()? == 0 {
                return Err(invalid(format!(
                    "EOF after {} of {n} bytes",
                    self.buffer.len()
                )));
            }
        }
        Ok(self.buffer.drain(..n).collect())
    }

    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        let mut searched = 0;
        loop {
            if let Some(end) = self.buffer[searched..]
                .iter()
                .position(|&byte| byte == b'\n')
            {
                return Ok(self.buffer.drain(..searched + end + 1).collect());
            }
            searched = self.buffer.len();
            if self.fill()? == 0 {
                return Err(invalid("EOF inside a line"));
            }
        }
    }

    /// Reads until the peer closes (a reset counts as a close) and returns every byte
    /// received from now on, including what was already buffered.
    pub fn read_to_end(&mut self) -> io::Result<Vec<u8>> {
        loop {
            match self.fill() {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) => return Err(e),
            }
        }
        Ok(self.take_buffered())
    }

    fn read_chunked(&mut self) -> io::Result<(Vec<u8>, Vec<u8>)> {
        let (mut body, mut raw) = (Vec::new(), Vec::new());
        loop {
            let line = self.read_line()?;
            raw.extend_from_slice(&line);
            let text = String::from_utf8_lossy(&line);
            let size_text = text
                .trim_end_matches(['\r', '\n'])
                .split(';')
                .next()
                .unwrap_or("")
                .trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| invalid(format!("bad chunk size line {text:?}")))?;
            if size == 0 {
                loop {
                    let trailer = self.read_line()?;
                    raw.extend_from_slice(&trailer);
                    if trailer == b"\r\n" || trailer == b"\n" {
                        return Ok((body, raw));
                    }
                }
            }
            let data = self.read_exact_bytes(size + 2)?;
            raw.extend_from_slice(&data);
            if &data[size..] != b"\r\n" {
                return Err(invalid("chunk data not followed by CRLF"));
            }
            body.extend_from_slice(&data[..size]);
        }
    }

    fn read_body(&mut self, head: &Head, until_close: bool) -> io::Result<(Vec<u8>, Vec<u8>)> {
        if head.has("transfer-encoding") {
            return self.read_chunked();
        }
        if let Some(length) = head.get("content-length") {
            let length: usize = length
                .parse()
                .map_err(|_| invalid(format!("Content-Length {length:?}")))?;
            let body = self.read_exact_bytes(length)?;
            return Ok((body.clone(), body));
        }
        if until_close {
            let body = self.read_to_end()?;
            return Ok((body.clone(), body));
        }
        Ok((Vec::new(), Vec::new()))
    }

    /// Reads a whole request. `Ok(None)` on a clean EOF between requests.
    pub fn read_request(&mut self) -> io::Result<Option<Message>> {
        let Some(head) = self.read_head()? else {
            return Ok(None);
        };
        let (body, raw_body) = self.read_body(&head, false)?;
        let request = Message {
            head,
            body,
            raw_body,
        };
        if let Some(requests) = &self.requests {
            requests.lock().unwrap().push(request.clone());
        }
        Ok(Some(request))
    }

    /// Reads one response (interim 1xx ones included) to a request made with `method`.
    pub fn read_response(&mut self, method: &str) -> io::Result<Message> {
        let head = self
            .read_head()?
            .ok_or_else(|| invalid("EOF instead of a response"))?;
        let status = head.status();
        let bodyless = method.eq_ignore_ascii_case("HEAD")
            || (100..200).contains(&status)
            || status == 204
            || status == 304;
        let (body, raw_body) = if bodyless {
            (Vec::new(), Vec::new())
        } else {
            self.read_body(&head, true)?
        };
        Ok(Message {
            head,
            body,
            raw_body,
        })
    }

    /// Reads the final response to a request made with `method`, skipping 100 and 103.
    pub fn read_final_response(&mut self, method: &str) -> io::Result<Message> {
        loop {
            let response = self.read_response(method)?;
            if !matches!(response.head.status(), 100 | 102 | 103) {
                return Ok(response);
            }
        }
    }
}
