//! The checks every head the core writes must pass: well-formed lines, token names, no
//! hop-by-hop field, canonical framing.

fn lines(head: &[u8]) -> Vec<&[u8]> {
    let body = head
        .strip_suffix(b"\r\n\r\n")
        .unwrap_or_else(|| panic!("head not ended by CRLF CRLF: {head:?}"));
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
        out.push(&rest[..i]);
        rest = &rest[i + 2..];
    }
    out.push(rest);
    for line in &out {
        assert!(
            !line.contains(&b'\r') && !line.contains(&b'\n'),
            "bare CR or LF in {head:?}"
        );
    }
    out
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Checks the field lines; returns (lowercased name, value) pairs.
fn fields<'a>(head: &[u8], lines: &[&'a [u8]]) -> Vec<(String, &'a [u8])> {
    let mut out = Vec::new();
    for line in lines {
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .unwrap_or_else(|| panic!("field without colon in {head:?}"));
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        assert!(
            !name.is_empty() && name.iter().all(|&b| is_tchar(b)),
            "bad field name in {head:?}"
        );
        assert!(
            !value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f),
            "control character in a value of {head:?}"
        );
        out.push((String::from_utf8_lossy(name).to_ascii_lowercase(), value));
    }
    out
}

/// Hop-by-hop fields the proxy never forwards; `Connection`, `Transfer-Encoding` and
/// `Upgrade` are checked separately (the proxy writes its own).
const NEVER: &[&str] = &[
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "trailers",
    "http2-settings",
];

pub(crate) fn check_request_head(head: &[u8]) {
    let lines = lines(head);
    let first = lines[0];
    assert!(first.ends_with(b" HTTP/1.1"), "request line {first:?}");
    assert_eq!(
        first.iter().filter(|&&b| b == b' ').count(),
        2,
        "request line {first:?}"
    );
    let fields = fields(head, &lines[1..]);
    let count = |n: &str| fields.iter().filter(|(name, _)| name == n).count();
    assert_eq!(count("host"), 1, "Host in {head:?}");
    assert_eq!(count("connection"), 1, "Connection in {head:?}");
    for (name, value) in &fields {
        assert!(
            !NEVER.contains(&name.as_str()),
            "hop-by-hop {name} forwarded in {head:?}"
        );
        match name.as_str() {
            "connection" => assert!(
                *value == b" keep-alive" || *value == b" upgrade",
                "{head:?}"
            ),
            "transfer-encoding" => {
                assert_eq!(*value, b" chunked", "{head:?}");
                assert_eq!(count("content-length"), 0, "CL with TE in {head:?}");
            }
            "upgrade" => {
                let lower = String::from_utf8_lossy(value).to_ascii_lowercase();
                assert!(!lower.contains("h2c"), "h2c forwarded in {head:?}");
            }
            _ => {}
        }
    }
    assert!(
        count("transfer-encoding") <= 1 && count("content-length") <= 1,
        "{head:?}"
    );
}

pub(crate) fn check_response_head(head: &[u8], status: Option<u16>) {
    let lines = lines(head);
    let first = std::str::from_utf8(lines[0]).expect("status line is UTF-8");
    let code: u16 = first
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("status line {first:?}"));
    if let Some(status) = status {
        assert_eq!(code, status, "status line {first:?}");
    }
    let fields = fields(head, &lines[1..]);
    for (name, _) in &fields {
        assert!(
            !NEVER.contains(&name.as_str()),
            "hop-by-hop {name} sent to the client in {head:?}"
        );
    }
}
