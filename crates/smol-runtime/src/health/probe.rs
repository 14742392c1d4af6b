//! One health check: open a connection as the group's connections are opened
//! (`upstream::open`: from the group's next source address; in a group with TLS, the
//! handshake, verified as theirs is), beginning with a v2 `LOCAL` PROXY header in a
//! group whose connections begin with a PROXY header; send
//! `GET path HTTP/1.1` with `Connection: close`, read the status line, close. Only the
//! status line is read: the rest of the answer does not matter.

use std::borrow::Cow;
use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};

use futures_lite::future;

use super::HealthCheck;
use crate::backend::{Io, Timer};
use crate::tls::session::TlsSession;
use crate::upstream::{self, DialError};
use crate::UpstreamTls;

/// A group's TLS and the name a server is verified for.
pub(super) type Tls<'a> = Option<(&'a UpstreamTls, rustls::pki_types::ServerName<'static>)>;

/// How a check connects to its server: from where, with which PROXY header and TLS.
pub(super) struct Dial<'a> {
    pub(super) source: Option<IpAddr>,
    /// Written first, before the TLS handshake if any.
    pub(super) proxy_header: Option<&'a [u8]>,
    pub(super) tls: Tls<'a>,
}

/// The longest status line read; a longer one fails the check.
const MAX_STATUS_LINE: usize = 1024;

/// The request of a check of `server`.
pub(super) fn request(check: &HealthCheck, server: SocketAddr) -> Vec<u8> {
    let host = check.host.clone().unwrap_or_else(|| server.to_string());
    format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: switchyard-health-check\r\nAccept: */*\r\n\r\n",
        check.path
    )
    .into_bytes()
}

/// Checks `server` once: `Ok` when it answered a passing status within the timeout, else
/// why not.
pub(super) async fn check(
    check: &HealthCheck,
    server: SocketAddr,
    dial: Dial<'_>,
) -> Result<(), String> {
    let request = request(check, server);
    let exchange = async { Some(exchange(server, dial, &request).await) };
    let give_up = async {
        Timer::after(check.timeout).await;
        None
    };
    match future::or(exchange, give_up).await {
        Some(Ok(status)) if check.passes_with(status) => Ok(()),
        Some(Ok(status)) => Err(format!("answered {status}")),
        Some(Err(error)) => Err(error),
        None => Err(format!(
            "no status line within {} ms",
            check.timeout.as_millis()
        )),
    }
}

/// Sends `request` and reads the status code of the answer.
async fn exchange(server: SocketAddr, dial: Dial<'_>, request: &[u8]) -> Result<u16, String> {
    let (stream, session) = upstream::open(server, dial.source, dial.proxy_header, dial.tls)
        .await
        .map_err(|error| match error {
            DialError::Connect(error) => format!("connect: {error}"),
            DialError::Tls(failure) => format!("TLS handshake: {failure}"),
        })?;
    // Without TLS the PROXY header goes out with the request, as a connection's does.
    let request = match dial.proxy_header.filter(|_| session.is_none()) {
        Some(header) => Cow::Owned([header, request].concat()),
        None => Cow::Borrowed(request),
    };
    let conn = Conn {
        stream: &stream,
        tls: session.as_deref(),
    };
    let mut written = 0;
    while written < request.len() || conn.pending() {
        match conn.write(&request[written..]) {
            Ok(0) if written < request.len() => {
                return Err("closed while the request was sent".to_string())
            }
            Ok(n) => written += n,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                std::future::poll_fn(|cx| stream.poll_writable(cx)).await;
            }
            Err(error) => return Err(format!("send: {error}")),
        }
    }
    let mut head = Vec::with_capacity(128);
    let mut buffer = [0u8; 512];
    loop {
        if let Some(end) = head.windows(2).position(|pair| pair == b"\r\n") {
            return status_code(&head[..end]).ok_or_else(|| {
                let line = String::from_utf8_lossy(&head[..end]);
                format!("not an HTTP status line: {line:?}")
            });
        }
        if head.len() > MAX_STATUS_LINE {
            return Err(format!(
                "no status line in the first {MAX_STATUS_LINE} bytes"
            ));
        }
        match conn.read(&mut buffer) {
            Ok(0) => return Err("closed before a status line".to_string()),
            Ok(n) => head.extend_from_slice(&buffer[..n]),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => stream.readable().await,
            Err(error) => return Err(format!("receive: {error}")),
        }
    }
}

/// A check's connection, plain or through its TLS session.
struct Conn<'a> {
    stream: &'a Io<std::net::TcpStream>,
    tls: Option<&'a TlsSession>,
}

impl Conn<'_> {
    fn write(&self, bytes: &[u8]) -> io::Result<usize> {
        let slices = [IoSlice::new(bytes)];
        match self.tls {
            Some(tls) => tls.write_vectored(self.stream, &slices),
            None => self.stream.write_vectored(&slices),
        }
    }

    /// Bytes the TLS session still holds to write.
    fn pending(&self) -> bool {
        self.tls.is_some_and(TlsSession::wants_write)
    }

    fn read(&self, buffer: &mut [u8]) -> io::Result<usize> {
        match self.tls {
            Some(tls) => tls.read(self.stream, buffer),
            None => self.stream.read(buffer),
        }
    }
}

/// The code of a status line `HTTP/1.x NNN reason`.
fn status_code(line: &[u8]) -> Option<u16> {
    let rest = line
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| line.strip_prefix(b"HTTP/1.0 "))?;
    let code = rest.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) || rest.get(3).is_some_and(|&b| b != b' ') {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read_strictly() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 503 Service Unavailable"), Some(503));
        assert_eq!(status_code(b"HTTP/1.1 204"), Some(204));
        assert_eq!(status_code(b"HTTP/1.1 20 OK"), None);
        assert_eq!(status_code(b"HTTP/1.1 2000 OK"), None);
        assert_eq!(status_code(b"HTTP/2 200"), None);
        assert_eq!(status_code(b"SSH-2.0-OpenSSH"), None);
    }

    #[test]
    fn the_request_names_the_path_and_host_and_closes() {
        let server: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let mut check = HealthCheck {
            path: "/health".into(),
            ..HealthCheck::default()
        };
        let text = String::from_utf8(request(&check, server)).unwrap();
        assert!(text.starts_with("GET /health HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n"));
        assert!(text.contains("\r\nConnection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        check.host = Some("app.internal".into());
        let text = String::from_utf8(request(&check, server)).unwrap();
        assert!(text.contains("\r\nHost: app.internal\r\n"));
    }

    #[test]
    fn a_check_that_would_spin_or_inject_a_line_is_refused() {
        assert_eq!(HealthCheck::default().problem(), None);
        let bad = [
            HealthCheck {
                interval: std::time::Duration::ZERO,
                ..HealthCheck::default()
            },
            HealthCheck {
                timeout: std::time::Duration::ZERO,
                ..HealthCheck::default()
            },
            HealthCheck {
                path: "health".into(),
                ..HealthCheck::default()
            },
            HealthCheck {
                path: "/a\r\nX: y".into(),
                ..HealthCheck::default()
            },
            HealthCheck {
                host: Some("a b".into()),
                ..HealthCheck::default()
            },
        ];
        for check in bad {
            assert!(check.problem().is_some(), "{check:?}");
        }
    }

    #[test]
    fn statuses_pass_as_configured_or_any_2xx_and_3xx() {
        let mut check = HealthCheck::default();
        assert!(check.passes_with(200) && check.passes_with(302) && check.passes_with(399));
        assert!(!check.passes_with(199) && !check.passes_with(404) && !check.passes_with(500));
        check.status = vec![200, 204];
        assert!(check.passes_with(204) && !check.passes_with(302));
    }
}
