//! The origin every proxy forwards to: HTTP `GET /` (13 bytes), `GET /1m` (1 MiB),
//! `GET /1m-chunked` (the same body in sixteen 64 KiB chunks), and WebSocket echo on any
//! path, with keep-alive.
//!
//! One thread per connection with blocking I/O: a proxy multiplexes many client
//! connections onto few upstream ones, so the origin sees at most as many connections
//! as the load generator opens, and a blocked thread costs nothing while it waits.

use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread;

use crate::ws::{self, RecvBuf};

/// The answer to `GET /`.
pub const SMALL_RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world\n";

/// Size of the body of `GET /1m`.
pub const BIG_BODY_LEN: usize = 1 << 20;

const NOT_FOUND: &[u8] = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
const MAX_HEAD: usize = 64 * 1024;

fn big_response() -> &'static [u8] {
    static BIG: OnceLock<Vec<u8>> = OnceLock::new();
    BIG.get_or_init(|| {
        let mut response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {BIG_BODY_LEN}\r\n\r\n"
        )
        .into_bytes();
        response.resize(response.len() + BIG_BODY_LEN, b'x');
        response
    })
}

/// The answer to `GET /1m-chunked`: [`BIG_BODY_LEN`] bytes in chunks of 64 KiB, as a
/// streaming server sends them: a proxy reads each chunk line and passes on (or splices)
/// only the payload between them.
fn big_chunked_response() -> &'static [u8] {
    static BIG: OnceLock<Vec<u8>> = OnceLock::new();
    BIG.get_or_init(|| {
        const CHUNK: usize = 64 * 1024;
        let mut response = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
            Transfer-Encoding: chunked\r\n\r\n"
            .to_vec();
        for _ in 0..BIG_BODY_LEN / CHUNK {
            response.extend_from_slice(format!("{CHUNK:x}\r\n").as_bytes());
            response.resize(response.len() + CHUNK, b'x');
            response.extend_from_slice(b"\r\n");
        }
        response.extend_from_slice(b"0\r\n\r\n");
        response
    })
}

/// Accepts connections forever, one thread each; threads are reused, since creating and
/// tearing one down (stack mapping, TLB shootdowns) costs more than a whole handshake.
pub fn serve(listener: TcpListener) -> io::Result<()> {
    big_response();
    big_chunked_response();
    let (handoff, queue) = mpsc::channel::<TcpStream>();
    let queue = Arc::new(Mutex::new(queue));
    // Threads waiting for a connection. Only this loop decrements it, and each thread
    // increments it once before each wait, so a handed-off stream always has a taker.
    let idle = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, _) = listener.accept()?;
        if idle.load(Ordering::Acquire) > 0 {
            idle.fetch_sub(1, Ordering::AcqRel);
            if handoff.send(stream).is_ok() {
                continue;
            }
            unreachable!("the queue lives as long as this loop");
        }
        let (queue, idle) = (queue.clone(), idle.clone());
        // Small stacks: the idle-tunnel figure holds thousands of these threads.
        let spawned = thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || {
                let mut next = Some(stream);
                while let Some(stream) = next.take() {
                    let _ = serve_connection(stream);
                    idle.fetch_add(1, Ordering::AcqRel);
                    next = queue.lock().ok().and_then(|q| q.recv().ok());
                }
            });
        if let Err(e) = spawned {
            eprintln!("origin: cannot spawn a connection thread: {e}");
        }
    }
}

fn serve_connection(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = RecvBuf::with_capacity(4096);
    let mut out = Vec::new();
    loop {
        // Answer every complete head in the buffer (pipelining) with one write.
        while let Some(end) = ws::head_end(buf.filled()) {
            let head = &buf.filled()[..end];
            let close = ws::header(head, "connection").is_some_and(|v| ws::has_token(v, "close"));
            let upgrade =
                ws::header(head, "upgrade").is_some_and(|v| ws::has_token(v, "websocket"));
            if upgrade {
                let key = ws::header(head, "sec-websocket-key").unwrap_or_default();
                let accept = ws::accept_key(std::str::from_utf8(key).unwrap_or_default());
                out.extend_from_slice(
                    format!(
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                         Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                    )
                    .as_bytes(),
                );
                stream.write_all(&out)?;
                buf.consume(end);
                return echo(stream, buf);
            }
            let path = head.split(|&b| b == b' ').nth(1).unwrap_or_default();
            match path {
                b"/" => out.extend_from_slice(SMALL_RESPONSE),
                b"/1m" => {
                    stream.write_all(&out)?;
                    out.clear();
                    stream.write_all(big_response())?;
                }
                b"/1m-chunked" => {
                    stream.write_all(&out)?;
                    out.clear();
                    stream.write_all(big_chunked_response())?;
                }
                _ => out.extend_from_slice(NOT_FOUND),
            }
            buf.consume(end);
            if close {
                stream.write_all(&out)?;
                return Ok(());
            }
        }
        if !out.is_empty() {
            stream.write_all(&out)?;
            out.clear();
        }
        if buf.filled().len() > MAX_HEAD || buf.fill_from(&mut stream)? == 0 {
            return Ok(());
        }
    }
}

/// Echoes every data frame with its own FIN and opcode, answers Ping, returns Close.
fn echo(mut stream: TcpStream, mut buf: RecvBuf) -> io::Result<()> {
    let mut out = Vec::with_capacity(4096);
    loop {
        while let Some(head) = ws::parse_head(buf.filled())? {
            if buf.filled().len() < head.frame_len() {
                buf.reserve_total(head.frame_len());
                break;
            }
            let frame = &mut buf.filled_mut()[..head.frame_len()];
            let payload = &mut frame[head.head_len..];
            if let Some(key) = head.mask {
                ws::apply_mask(payload, key);
            }
            match head.opcode() {
                ws::OP_PONG => {}
                ws::OP_PING => {
                    ws::push_head(&mut out, 0x80 | ws::OP_PONG, payload.len(), None);
                    out.extend_from_slice(payload);
                }
                opcode => {
                    ws::push_head(&mut out, head.fin_opcode, payload.len(), None);
                    out.extend_from_slice(payload);
                    if opcode == ws::OP_CLOSE {
                        stream.write_all(&out)?;
                        return Ok(());
                    }
                }
            }
            buf.consume(head.frame_len());
        }
        if !out.is_empty() {
            stream.write_all(&out)?;
            out.clear();
        }
        if buf.fill_from(&mut stream)? == 0 {
            return Ok(());
        }
    }
}
