//! The admin listener's HTTP/1.1: one request per connection, its head parsed strictly
//! (`httparse`), answered from what the server knows, then the connection closed. No
//! body is read and none is needed: every connection ends after its one answer, so
//! bytes after the head can never be taken for a request.

/// The largest request head read (an admin request is a line and a few fields).
pub(super) const MAX_HEAD: usize = 8 * 1024;
/// The most header fields a request may have.
const MAX_HEADERS: usize = 32;
/// The methods every endpoint allows.
const ALLOW: &str = "GET, HEAD";

/// What the admin listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    /// `/metrics`: the Prometheus text format.
    Metrics,
    /// `/healthz`: 200 while the process runs.
    Health,
    /// `/readyz`: 200 while accepting, 503 once a shutdown began.
    Ready,
    /// `/status.json`: the open tunnels, routes and upstream servers.
    StatusJson,
    /// `/status`: the page that shows `/status.json`.
    StatusPage,
}

impl Endpoint {
    fn at(path: &str) -> Option<Endpoint> {
        match path {
            "/metrics" => Some(Endpoint::Metrics),
            "/healthz" => Some(Endpoint::Health),
            "/readyz" => Some(Endpoint::Ready),
            "/status.json" => Some(Endpoint::StatusJson),
            "/status" => Some(Endpoint::StatusPage),
            _ => None,
        }
    }
}

/// What to answer a request whose head is complete (or will never be).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    /// `GET` of an endpoint, or `HEAD` (`head_only`: the same head, no body).
    Serve {
        /// What is asked for.
        endpoint: Endpoint,
        /// `HEAD`.
        head_only: bool,
    },
    /// Not HTTP/1.1, or a head that breaks its rules: 400.
    BadRequest,
    /// No such path: 404.
    NotFound,
    /// A known path, but neither `GET` nor `HEAD`: 405 with `Allow`.
    MethodNotAllowed,
    /// A head over [`MAX_HEAD`] bytes or [`MAX_HEADERS`] fields: 431.
    HeadTooLarge,
    /// No complete head within the header deadline: 408.
    Timeout,
}

/// What the bytes read so far amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Parsed {
    /// A head is on its way: read more.
    Partial,
    /// Answer this.
    Complete(Answer),
}

/// Parses the request head at the start of `bytes`.
pub(super) fn parse(bytes: &[u8]) -> Parsed {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut fields);
    match request.parse(bytes) {
        Ok(httparse::Status::Partial) if bytes.len() >= MAX_HEAD => {
            Parsed::Complete(Answer::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Ok(httparse::Status::Complete(length)) if length > MAX_HEAD => {
            Parsed::Complete(Answer::HeadTooLarge)
        }
        Ok(httparse::Status::Complete(_)) => Parsed::Complete(classify(&request)),
        Err(httparse::Error::TooManyHeaders) => Parsed::Complete(Answer::HeadTooLarge),
        Err(_) => Parsed::Complete(Answer::BadRequest),
    }
}

/// What a complete, well-formed head asks for.
fn classify(request: &httparse::Request<'_, '_>) -> Answer {
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Answer::BadRequest;
    };
    let named = |name: &'static str| {
        request
            .headers
            .iter()
            .filter(move |field| field.name.eq_ignore_ascii_case(name))
    };
    // HTTP/1.1 requires exactly one Host (RFC 9112 §3.2); HTTP/1.0 at most one.
    let hosts = named("host").count();
    if hosts > 1 || (version == 1 && hosts == 0) {
        return Answer::BadRequest;
    }
    // The body is never read, but a head whose framing is broken is not a request.
    let mut lengths = named("content-length").map(|field| {
        std::str::from_utf8(field.value)
            .ok()
            .filter(|value| !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()))
    });
    let first = lengths.next();
    if first.is_some_and(|length| length.is_none() || lengths.any(|other| other != length)) {
        return Answer::BadRequest;
    }
    if first.is_some() && named("transfer-encoding").next().is_some() {
        return Answer::BadRequest;
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    let Some(endpoint) = Endpoint::at(path) else {
        return Answer::NotFound;
    };
    match method {
        "GET" => Answer::Serve {
            endpoint,
            head_only: false,
        },
        "HEAD" => Answer::Serve {
            endpoint,
            head_only: true,
        },
        _ => Answer::MethodNotAllowed,
    }
}

/// The whole response for `answer` (head and body, `Connection: close`); `ready` says
/// whether the server still accepts, `render` writes the body of `/metrics`,
/// `/status.json` and `/status`.
pub(super) fn respond(
    answer: Answer,
    ready: bool,
    render: impl FnOnce(Endpoint) -> String,
) -> Vec<u8> {
    const TEXT: &str = "text/plain; charset=utf-8";
    let (status, content_type, body, head_only) = match answer {
        Answer::Serve {
            endpoint,
            head_only,
        } => {
            let (status, content_type, body) = match endpoint {
                Endpoint::Metrics => (200, crate::Metrics::CONTENT_TYPE, render(endpoint)),
                Endpoint::StatusJson => (200, "application/json", render(endpoint)),
                Endpoint::StatusPage => (200, "text/html; charset=utf-8", render(endpoint)),
                Endpoint::Health => (200, TEXT, "ok\n".to_string()),
                Endpoint::Ready if ready => (200, TEXT, "ready\n".to_string()),
                Endpoint::Ready => (503, TEXT, "shutting down\n".to_string()),
            };
            (status, content_type, body, head_only)
        }
        Answer::BadRequest => (400, TEXT, "bad request\n".to_string(), false),
        Answer::NotFound => (404, TEXT, not_found(), false),
        Answer::MethodNotAllowed => (405, TEXT, format!("allowed: {ALLOW}\n"), false),
        Answer::HeadTooLarge => (431, TEXT, "request head too large\n".to_string(), false),
        Answer::Timeout => (408, TEXT, "request head timed out\n".to_string(), false),
    };
    let allow = if answer == Answer::MethodNotAllowed {
        format!("Allow: {ALLOW}\r\n")
    } else {
        String::new()
    };
    let mut response = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\n{allow}Connection: close\r\n\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    if !head_only {
        response.extend_from_slice(body.as_bytes());
    }
    response
}

fn not_found() -> String {
    "not found; the admin endpoints are /metrics, /status, /status.json, /healthz and /readyz\n"
        .to_string()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(head: &str) -> Answer {
        match parse(head.as_bytes()) {
            Parsed::Complete(answer) => answer,
            Parsed::Partial => panic!("{head:?} is partial"),
        }
    }

    fn get(endpoint: Endpoint) -> Answer {
        Answer::Serve {
            endpoint,
            head_only: false,
        }
    }

    #[test]
    fn each_endpoint_is_served_to_get_and_head() {
        for (path, endpoint) in [
            ("/metrics", Endpoint::Metrics),
            ("/healthz", Endpoint::Health),
            ("/readyz", Endpoint::Ready),
            ("/status.json", Endpoint::StatusJson),
            ("/status", Endpoint::StatusPage),
        ] {
            let head = format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n");
            assert_eq!(complete(&head), get(endpoint), "{head:?}");
            let head = format!("HEAD {path}?probe=1 HTTP/1.1\r\nHost: admin\r\n\r\n");
            let head_only = Answer::Serve {
                endpoint,
                head_only: true,
            };
            assert_eq!(complete(&head), head_only, "{head:?}");
        }
        // HTTP/1.0 needs no Host.
        assert_eq!(
            complete("GET /healthz HTTP/1.0\r\n\r\n"),
            get(Endpoint::Health)
        );
    }

    #[test]
    fn other_methods_on_known_paths_are_405_and_other_paths_404() {
        for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "BREW"] {
            for path in ["/metrics", "/status", "/status.json"] {
                let head = format!("{method} {path} HTTP/1.1\r\nHost: a\r\n\r\n");
                assert_eq!(complete(&head), Answer::MethodNotAllowed, "{head:?}");
            }
        }
        for target in [
            "/",
            "/metrics/",
            "/Metrics",
            "/status/",
            "/status.html",
            "/Status",
            "*",
            "http://a/metrics",
        ] {
            let head = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(complete(&head), Answer::NotFound, "{head:?}");
        }
        let head = "POST /nothing HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(complete(head), Answer::NotFound);
    }

    #[test]
    fn garbage_and_broken_heads_are_400() {
        for head in [
            "GARBAGE\r\n\r\n",
            "GET /metrics HTTP/2.0\r\nHost: a\r\n\r\n",
            "GET /metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nHo st: a\r\n\r\n",
            "\u{1}\u{2}\u{3}\r\n\r\n",
        ] {
            assert_eq!(complete(head), Answer::BadRequest, "{head:?}");
        }
    }

    #[test]
    fn a_partial_head_waits_until_the_size_limit() {
        assert_eq!(parse(b"GET /metrics HTTP/1.1\r\nHost"), Parsed::Partial);
        assert_eq!(parse(b""), Parsed::Partial);
        let mut long = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
        long.resize(MAX_HEAD, b'a');
        assert_eq!(parse(&long), Parsed::Complete(Answer::HeadTooLarge));
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        let head = format!("GET /metrics HTTP/1.1\r\nHost: a\r\n{many}\r\n");
        assert_eq!(complete(&head), Answer::HeadTooLarge);
    }

    fn split(response: &[u8]) -> (String, String) {
        let text = String::from_utf8(response.to_vec()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head.to_string(), body.to_string())
    }

    #[test]
    fn answers_say_their_length_and_close() {
        let (head, body) = split(&respond(get(Endpoint::Metrics), true, |_| "m 1\n".into()));
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains("\r\nContent-Type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(head.contains("\r\nContent-Length: 4\r\n"), "{head}");
        assert!(head.ends_with("\r\nConnection: close"), "{head}");
        assert_eq!(body, "m 1\n");

        let head_only = Answer::Serve {
            endpoint: Endpoint::Metrics,
            head_only: true,
        };
        let (head, body) = split(&respond(head_only, true, |_| "m 1\n".into()));
        assert!(head.contains("\r\nContent-Length: 4\r\n"), "{head}");
        assert_eq!(body, "", "HEAD has no body");

        let (head, _) = split(&respond(Answer::MethodNotAllowed, true, |_| String::new()));
        assert!(head.starts_with("HTTP/1.1 405 "), "{head}");
        assert!(head.contains("\r\nAllow: GET, HEAD\r\n"), "{head}");
        for (request, status) in [
            (Answer::BadRequest, "400"),
            (Answer::NotFound, "404"),
            (Answer::HeadTooLarge, "431"),
            (Answer::Timeout, "408"),
        ] {
            let (head, _) = split(&respond(request, true, |_| {
                unreachable!("no body to render")
            }));
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
            assert!(!head.contains("Allow"), "{head}");
        }
    }

    #[test]
    fn readiness_is_503_once_shutting_down_while_health_stays_200() {
        let status = |endpoint, ready| {
            let (head, _) = split(&respond(get(endpoint), ready, |_| String::new()));
            head[9..12].to_string()
        };
        assert_eq!(status(Endpoint::Ready, true), "200");
        assert_eq!(status(Endpoint::Ready, false), "503");
        assert_eq!(status(Endpoint::Health, false), "200");
        assert_eq!(status(Endpoint::Metrics, false), "200");
    }
}
