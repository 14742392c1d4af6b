//! `switchyard demo`: a tiny origin (an HTML page, `POST /echo`, and a WebSocket echo at
//! `/ws`) on a loopback port, for the proxy to stand in front of.
//!
//! The origin runs on plain threads, one per connection, with `tungstenite` for WebSocket.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use tungstenite::Message;

/// The page served at `/`: it opens a WebSocket to `/ws` through whatever served it.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>switchyard demo</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 2em auto">
<h1>switchyard demo</h1>
<p>This page came through the proxy. The box below talks to a WebSocket echo at
<code>/ws</code>, also through the proxy.</p>
<form id="f"><input id="m" value="hello" autofocus> <button>send</button></form>
<pre id="log"></pre>
<script>
const log = (t) => document.getElementById("log").textContent += t + "\n";
const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
ws.onopen = () => log("connected");
ws.onmessage = (e) => log("< " + e.data);
ws.onclose = (e) => log("closed (" + e.code + ")");
document.getElementById("f").onsubmit = (e) => {
  e.preventDefault();
  const m = document.getElementById("m").value;
  ws.send(m); log("> " + m);
};
</script>
</body></html>
"#;

/// Largest request head or body the demo origin reads.
const MAX_REQUEST: usize = 1024 * 1024;

/// Starts the demo origin on `127.0.0.1` with an ephemeral port and returns its address.
/// It serves until the process exits.
///
/// # Examples
///
/// ```no_run
/// let origin = switchyard::demo::start_origin()?;
/// println!("demo origin on http://{origin}/ (WebSocket echo at /ws)");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn start_origin() -> io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::Builder::new()
        .name("demo-origin".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = thread::Builder::new()
                    .name("demo-conn".into())
                    .spawn(move || {
                        if let Err(err) = serve_connection(stream) {
                            tracing::debug!("demo origin: connection ended: {err}");
                        }
                    });
            }
        })?;
    Ok(addr)
}

/// A stream that first yields bytes already read (the request head), then the socket.
struct Rewind {
    prefix: Vec<u8>,
    stream: TcpStream,
}

impl Read for Rewind {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.prefix.is_empty() {
            return self.stream.read(buf);
        }
        let n = buf.len().min(self.prefix.len());
        buf[..n].copy_from_slice(&self.prefix[..n]);
        self.prefix.drain(..n);
        Ok(n)
    }
}

impl Write for Rewind {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn header<'a>(headers: &'a [httparse::Header<'_>], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

fn has_token(value: Option<&[u8]>, token: &str) -> bool {
    value
        .and_then(|v| std::str::from_utf8(v).ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Serves requests on one connection, kept alive, until the peer closes, a request asks
/// for close, or a WebSocket session ends.
fn serve_connection(mut stream: TcpStream) -> io::Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let head_len = loop {
            if let Some(end) = find_head_end(&buf) {
                break end;
            }
            if buf.len() > MAX_REQUEST {
                return respond(&mut stream, 431, "text/plain", b"head too large\n", false);
            }
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };

        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        if request.parse(&buf[..head_len]).is_err() {
            return respond(&mut stream, 400, "text/plain", b"bad request\n", false);
        }
        let method = request.method.unwrap_or("").to_string();
        let path = request.path.unwrap_or("").to_string();
        let http10 = request.version == Some(0);
        let keep_alive = !http10 && !has_token(header(request.headers, "connection"), "close");
        let upgrade = has_token(header(request.headers, "upgrade"), "websocket");
        let chunked = header(request.headers, "transfer-encoding").is_some();
        let content_length = header(request.headers, "content-length")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);

        if path == "/ws" && upgrade {
            // The whole buffer, head and anything after it, goes to the WebSocket
            // handshake: a client may send its first frame right behind the request.
            let prefix = std::mem::take(&mut buf);
            let mut ws = tungstenite::accept(Rewind { prefix, stream })
                .map_err(|e| io::Error::other(e.to_string()))?;
            return echo(&mut ws);
        }
        if chunked {
            return respond(
                &mut stream,
                501,
                "text/plain",
                b"the demo origin reads Content-Length bodies only\n",
                false,
            );
        }
        if content_length > MAX_REQUEST {
            return respond(&mut stream, 413, "text/plain", b"body too large\n", false);
        }
        while buf.len() < head_len + content_length {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body: Vec<u8> = buf[head_len..head_len + content_length].to_vec();
        buf.drain(..head_len + content_length);

        match (method.as_str(), path.as_str()) {
            ("GET", "/") => respond(&mut stream, 200, "text/html", PAGE.as_bytes(), keep_alive)?,
            ("HEAD", "/") => respond_head(&mut stream, PAGE.len(), keep_alive)?,
            ("POST", "/echo") => respond(
                &mut stream,
                200,
                "application/octet-stream",
                &body,
                keep_alive,
            )?,
            _ => respond(
                &mut stream,
                404,
                "text/plain",
                b"not found: try / or /ws (WebSocket) or POST /echo\n",
                keep_alive,
            )?,
        }
        if !keep_alive {
            return Ok(());
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        _ => "Not Implemented",
    }
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
        reason(status),
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    stream.write_all(&out)
}

fn respond_head(stream: &mut TcpStream, length: usize, keep_alive: bool) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {length}\r\nConnection: {}\r\n\r\n",
        if keep_alive { "keep-alive" } else { "close" }
    );
    stream.write_all(head.as_bytes())
}

/// Sends every text and binary message back until the peer closes.
fn echo<S: Read + Write>(ws: &mut tungstenite::WebSocket<S>) -> io::Result<()> {
    loop {
        match ws.read() {
            Ok(message @ (Message::Text(_) | Message::Binary(_))) => ws
                .send(message)
                .map_err(|e| io::Error::other(e.to_string()))?,
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return Ok(())
            }
            Err(e) => return Err(io::Error::other(e.to_string())),
        }
    }
}

/// Sends one WebSocket message to `/ws` through `proxy` and checks it comes back, with every
/// step bounded by `limit`. Returns what went wrong, in one line.
pub fn self_check(proxy: SocketAddr, limit: Duration) -> Result<(), String> {
    let stream = TcpStream::connect_timeout(&proxy, limit)
        .map_err(|e| format!("cannot connect to the proxy at {proxy}: {e}"))?;
    stream
        .set_read_timeout(Some(limit))
        .and_then(|()| stream.set_write_timeout(Some(limit)))
        .map_err(|e| e.to_string())?;
    let (mut ws, response) = tungstenite::client(format!("ws://{proxy}/ws"), stream)
        .map_err(|e| format!("WebSocket handshake through the proxy failed: {e}"))?;
    if response.status() != 101 {
        return Err(format!("expected 101, got {}", response.status()));
    }
    echo_once(&mut ws, "hello through switchyard")
}

/// Sends `text` on `ws` and checks that it comes back; what went wrong, in one line.
pub(crate) fn echo_once<S: Read + Write>(
    ws: &mut tungstenite::WebSocket<S>,
    text: &str,
) -> Result<(), String> {
    ws.send(Message::text(text))
        .map_err(|e| format!("cannot send: {e}"))?;
    match ws.read() {
        Ok(Message::Text(reply)) if reply.as_str() == text => {
            let _ = ws.close(None);
            Ok(())
        }
        Ok(other) => Err(format!("unexpected reply {other:?}")),
        Err(e) => Err(format!("no echo: {e}")),
    }
}

/// The instructions printed once the demo runs.
pub fn instructions(proxy: SocketAddr, origin: SocketAddr) -> String {
    format!(
        "switchyard demo: proxy on http://{proxy}/ -> demo origin on http://{origin}/\n\
         \n\
         Try it:\n  \
         curl -i http://{proxy}/\n  \
         curl -i --data 'ping' http://{proxy}/echo\n  \
         websocat ws://{proxy}/ws                 # type a line, it comes back\n  \
         python3 -m websockets ws://{proxy}/ws    # needs `pip install websockets`\n  \
         or open http://{proxy}/ in a browser.\n\
         \n\
         Stop with Ctrl-C.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_serves_the_page_and_echoes_websocket_messages() {
        let origin = start_origin().unwrap();
        let limit = Duration::from_secs(10);

        let mut http = TcpStream::connect(origin).unwrap();
        http.set_read_timeout(Some(limit)).unwrap();
        http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        http.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.ends_with("</html>\n"));

        // The origin itself passes the check the demo runs through the proxy.
        self_check(origin, limit).unwrap();
    }

    #[test]
    fn origin_keeps_connections_alive_and_echoes_bodies() {
        let origin = start_origin().unwrap();
        let mut http = TcpStream::connect(origin).unwrap();
        http.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        for _ in 0..2 {
            http.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nping")
                .unwrap();
            let mut got = Vec::new();
            let mut byte = [0u8; 1];
            while !got.ends_with(b"ping") {
                assert_eq!(http.read(&mut byte).unwrap(), 1);
                got.push(byte[0]);
            }
            assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
        }
    }
}
