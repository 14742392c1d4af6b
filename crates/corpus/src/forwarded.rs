//! Strict checks of what a proxy forwarded. Dependency-free on purpose: an independent
//! parser, so a bug in the proxy's parser cannot hide itself.

/// One request as an upstream received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// The request line, without CRLF.
    pub line: String,
    /// Field names (lowercased) and raw values (surrounding whitespace trimmed).
    pub fields: Vec<(String, Vec<u8>)>,
    /// The body after removing the chunked coding.
    pub body: Vec<u8>,
}

impl Forwarded {
    /// Values of the field `name` (lowercase).
    pub fn values(&self, name: &str) -> Vec<&[u8]> {
        self.fields
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| &v[..])
            .collect()
    }
}

/// What [`parse_forwarded`] found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A complete, well-formed request of this many bytes.
    Complete(Forwarded, usize),
    /// A well-formed prefix of a request.
    Incomplete,
    /// Not well-formed: why.
    Invalid(String),
}

/// Hop-by-hop fields that must never reach an upstream (the proxy's own `Connection`,
/// `Transfer-Encoding: chunked` and `Upgrade` are checked separately).
pub const NEVER_FORWARDED: &[&str] = &[
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "trailers",
    "http2-settings",
];

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &v[start..end.max(start)]
}

/// A bare LF, or a CR not followed by LF (a CR as the very last byte may still be
/// followed by one).
fn bare_line_ending(b: &[u8]) -> bool {
    b.iter().enumerate().any(|(i, &c)| {
        (c == b'\n' && (i == 0 || b[i - 1] != b'\r'))
            || (c == b'\r' && i + 1 < b.len() && b[i + 1] != b'\n')
    })
}

/// Parses the request at the start of `buf` as strictly as an upstream should be able
/// to: HTTP/1.1, CRLF only, token names, no control characters, one `Host`, the proxy's
/// own `Connection`, no hop-by-hop field, unambiguous canonical framing.
pub fn parse_forwarded(buf: &[u8]) -> Parsed {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return if bare_line_ending(buf) {
            Parsed::Invalid("bare CR or LF in an incomplete head".into())
        } else {
            Parsed::Incomplete
        };
    };
    let head = &buf[..end + 2];
    if bare_line_ending(head) {
        return Parsed::Invalid("bare CR or LF in the head".into());
    }
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| &l[..l.len().saturating_sub(1)]);
    let first = lines.next().unwrap_or_default();
    let parts: Vec<&[u8]> = first.split(|&b| b == b' ').collect();
    if parts.len() != 3
        || parts[0].is_empty()
        || !parts[0].iter().all(|&b| is_tchar(b))
        || parts[1].is_empty()
        || parts[1].iter().any(|&b| b <= 0x20 || b >= 0x7f)
        || parts[2] != b"HTTP/1.1"
    {
        return Parsed::Invalid(format!("request line {:?}", String::from_utf8_lossy(first)));
    }
    let mut fields = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Parsed::Invalid(format!(
                "field line without colon {:?}",
                String::from_utf8_lossy(line)
            ));
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Parsed::Invalid(format!("field name {:?}", String::from_utf8_lossy(name)));
        }
        if value.iter().any(|&b| is_ctl(b)) {
            return Parsed::Invalid(format!(
                "control character in {:?}",
                String::from_utf8_lossy(line)
            ));
        }
        fields.push((
            String::from_utf8_lossy(name).to_ascii_lowercase(),
            trim(value).to_vec(),
        ));
    }
    let mut request = Forwarded {
        line: String::from_utf8_lossy(first).into_owned(),
        fields,
        body: Vec::new(),
    };
    if let Err(why) = check_fields(&request) {
        return Parsed::Invalid(why);
    }
    let rest = &buf[end + 4..];
    let chunked = !request.values("transfer-encoding").is_empty();
    let consumed = if chunked {
        match dechunk(rest) {
            Ok(Some((body, used))) => {
                request.body = body;
                used
            }
            Ok(None) => return Parsed::Incomplete,
            Err(why) => return Parsed::Invalid(why),
        }
    } else {
        let length = match request.values("content-length").first() {
            Some(v) => match std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
            {
                Some(n) => n,
                None => return Parsed::Invalid("Content-Length".into()),
            },
            None => 0,
        };
        if rest.len() < length {
            return Parsed::Incomplete;
        }
        request.body = rest[..length].to_vec();
        length
    };
    Parsed::Complete(request, end + 4 + consumed)
}

fn check_fields(request: &Forwarded) -> Result<(), String> {
    let count = |name: &str| request.values(name).len();
    if count("host") != 1 {
        return Err(format!("{} Host fields", count("host")));
    }
    if let Some(name) = NEVER_FORWARDED.iter().find(|n| count(n) > 0) {
        return Err(format!("hop-by-hop field {name} forwarded"));
    }
    let connection = request.values("connection");
    let upgrade = match connection.as_slice() {
        [v] if v.eq_ignore_ascii_case(b"keep-alive") || v.eq_ignore_ascii_case(b"close") => false,
        [v] if v.eq_ignore_ascii_case(b"upgrade") => true,
        other => return Err(format!("Connection {other:?} is not the proxy's own")),
    };
    match (upgrade, request.values("upgrade").as_slice()) {
        (false, []) => {}
        (true, [v])
            if !String::from_utf8_lossy(v)
                .to_ascii_lowercase()
                .contains("h2c") => {}
        (_, other) => return Err(format!("Upgrade {other:?} with Connection {connection:?}")),
    }
    match (count("transfer-encoding"), count("content-length")) {
        (0, 0) | (0, 1) => {}
        (1, 0) if request.values("transfer-encoding")[0] == b"chunked" => {}
        _ => return Err("ambiguous framing".into()),
    }
    if let Some(cl) = request.values("content-length").first() {
        if cl.is_empty() || !cl.iter().all(u8::is_ascii_digit) {
            return Err("Content-Length not plain digits".into());
        }
    }
    Ok(())
}

/// Decodes a canonical chunked body: lowercase hex sizes without leading zeros or
/// extensions, CRLF after each chunk, `0` and no trailers. `Ok(None)` when incomplete.
fn dechunk(mut rest: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let total = rest.len();
    let mut body = Vec::new();
    loop {
        let Some(end) = find(rest, b"\r\n") else {
            let ok = rest.iter().all(u8::is_ascii_hexdigit) || rest.ends_with(b"\r");
            return if ok {
                Ok(None)
            } else {
                Err("chunk size line".into())
            };
        };
        let line = &rest[..end];
        if line.is_empty()
            || !line
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            || (line.len() > 1 && line[0] == b'0')
        {
            return Err(format!(
                "chunk size {:?} is not canonical",
                String::from_utf8_lossy(line)
            ));
        }
        let size = usize::from_str_radix(std::str::from_utf8(line).unwrap_or("x"), 16)
            .map_err(|e| e.to_string())?;
        rest = &rest[end + 2..];
        if size == 0 {
            return match rest.get(..2) {
                Some(b"\r\n") => Ok(Some((body, total - rest.len() + 2))),
                Some(_) => Err("trailers after the last chunk".into()),
                None if rest.is_empty() || rest == b"\r" => Ok(None),
                None => Err("trailers after the last chunk".into()),
            };
        }
        if rest.len() < size + 2 {
            let crlf_ok = match rest.len().checked_sub(size) {
                Some(1) => rest[size] == b'\r',
                _ => true,
            };
            return if crlf_ok {
                Ok(None)
            } else {
                Err("chunk not followed by CRLF".into())
            };
        }
        if &rest[size..size + 2] != b"\r\n" {
            return Err("chunk not followed by CRLF".into());
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Everything one upstream connection received, split into complete well-formed
/// requests, then either nothing, a well-formed incomplete request (`partial`), or
/// bytes that are not well-formed (`invalid`).
#[derive(Debug, Default, Clone)]
pub struct UpstreamView {
    /// Complete requests, in order.
    pub requests: Vec<Forwarded>,
    /// The first line of a request that never completed.
    pub partial: Option<String>,
    /// Why the bytes after the complete requests are not well-formed.
    pub invalid: Option<String>,
}

/// Splits `received` into requests.
pub fn view_upstream(received: &[u8]) -> UpstreamView {
    let mut view = UpstreamView::default();
    let mut at = 0;
    while at < received.len() {
        match parse_forwarded(&received[at..]) {
            Parsed::Complete(request, used) => {
                view.requests.push(request);
                at += used;
            }
            Parsed::Incomplete => {
                let rest = &received[at..];
                let line_end = find(rest, b"\r\n").unwrap_or(rest.len());
                view.partial = Some(String::from_utf8_lossy(&rest[..line_end]).into_owned());
                break;
            }
            Parsed::Invalid(why) => {
                view.invalid = Some(format!(
                    "{why}: {:?}",
                    String::from_utf8_lossy(&received[at..received.len().min(at + 300)])
                ));
                break;
            }
        }
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checker_refuses_what_an_upstream_must_never_see() {
        let ok = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n";
        assert!(matches!(parse_forwarded(ok), Parsed::Complete(_, n) if n == ok.len()));
        for bad in [
            &b"GET / HTTP/1.1\nHost: a\r\nConnection: keep-alive\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: keep-alive\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nUpgrade: websocket\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n05\r\nhello\r\n0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n X: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\x01\r\nConnection: keep-alive\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
        ] {
            assert!(
                matches!(parse_forwarded(bad), Parsed::Invalid(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
