// The smuggling corpus: raw vectors with the status the client must get and what the
// upstream may receive. Shared by crates/core/tests/corpus.rs (through the simulation
// harness) and tests/tests/smuggling_corpus.rs (through real sockets) with `include!`.
//
// Sources of inspiration: RFC 9112 §2–§7 and RFC 9110 §5, §7.6; smuggler's and
// SMUGGLEtest's Transfer-Encoding mutations; Http11Probe's smuggling and compliance
// tests; HTTP Garden's discrepancy classes; nginx-tests' proxy and chunked tests; the
// upgrade-smuggling advisories CVE-2019-17567 (mod_proxy_wstunnel tunnels without a
// 101), CVE-2024-23326 (a non-101 answer accepted as an upgrade) and h2csmuggler.

/// How the scripted upstream answers one complete request it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `200 OK` with the request target as a `Content-Length` body.
    Echo,
    /// These bytes, verbatim.
    Raw(&'static [u8]),
    /// These bytes, then close.
    RawThenClose(&'static [u8]),
    /// A valid `101` for the request's `Sec-WebSocket-Key`, then these bytes.
    WebSocket(&'static [u8]),
}

/// The bytes the scripted upstream sends for `reply` to `request` (the same in the
/// core corpus and end to end).
pub fn reply_bytes(reply: Reply, request: &Forwarded) -> Vec<u8> {
    match reply {
        Reply::Echo => {
            let target = request.line.split(' ').nth(1).unwrap_or("");
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{target}",
                target.len()
            )
            .into_bytes()
        }
        Reply::Raw(bytes) | Reply::RawThenClose(bytes) => bytes.to_vec(),
        Reply::WebSocket(after) => {
            let key = request
                .values("sec-websocket-key")
                .first()
                .map(|k| k.to_vec())
                .unwrap_or_default();
            let mut out = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                switchyard_core::websocket_accept(&key)
            )
            .into_bytes();
            out.extend_from_slice(after);
            out
        }
    }
}

/// What the upstream side must have received, over all its connections, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Up {
    /// No upstream connection was opened.
    Nothing,
    /// Exactly these complete, well-formed requests (request lines), nothing else.
    Requests(&'static [&'static str]),
    /// These complete requests, then one that never completed (its request line): the
    /// proxy gave up on it and closed that connection.
    Abandoned(&'static [&'static str], &'static str),
    /// These complete requests, then exactly these tunnel bytes.
    Tunnel(&'static [&'static str], &'static [u8]),
}

/// One vector.
#[derive(Debug, Clone)]
pub struct Vector {
    /// Unique name.
    pub name: &'static str,
    /// Which class of rule (a SECURITY.md line).
    pub class: &'static str,
    /// `request`, `response` or `upgrade`: whose bytes are hostile.
    pub side: &'static str,
    /// Everything the client sends, in one go.
    pub client: Vec<u8>,
    /// The upstream's answers, one per complete request; [`Reply::Echo`] past the end.
    pub replies: Vec<Reply>,
    /// Statuses the client receives, in order.
    pub statuses: Vec<u16>,
    /// What the upstream receives.
    pub up: Up,
    /// Field names (lowercase) that must not reach the upstream, besides hop-by-hop ones.
    pub not_forwarded: Vec<&'static str>,
    /// Byte strings that must never reach the client.
    pub never_to_client: Vec<&'static [u8]>,
    /// Whether the proxy closes the client connection at the end.
    pub closed: bool,
    /// The client's requests are HEAD (responses carry no body).
    pub head_requests: bool,
}

/// A complete, valid request the client slips in after a hostile one: it must never
/// reach the upstream unless the vector says so.
pub const SMUGGLED: &[u8] = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";

/// A second request pipelined after the first: what a leftover of the first response
/// would be taken for.
pub const NEXT: &[u8] = b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n";

/// The RFC 6455 example key, used by every WebSocket handshake of the corpus.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// Its `Sec-WebSocket-Accept`.
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

impl Vector {
    fn new(name: &'static str, class: &'static str, side: &'static str, client: Vec<u8>) -> Vector {
        Vector {
            name,
            class,
            side,
            client,
            replies: Vec::new(),
            statuses: Vec::new(),
            up: Up::Nothing,
            not_forwarded: Vec::new(),
            never_to_client: Vec::new(),
            closed: false,
            head_requests: false,
        }
    }
    fn st(mut self, statuses: &[u16]) -> Vector {
        self.statuses = statuses.to_vec();
        self.closed = statuses.last().is_some_and(|&s| s >= 400);
        self
    }
    fn up(mut self, up: Up) -> Vector {
        self.up = up;
        self
    }
    fn replies(mut self, replies: &[Reply]) -> Vector {
        self.replies = replies.to_vec();
        self
    }
    fn hidden(mut self, names: &[&'static str]) -> Vector {
        self.not_forwarded = names.to_vec();
        self
    }
    fn never(mut self, bytes: &[&'static [u8]]) -> Vector {
        self.never_to_client = bytes.to_vec();
        self
    }
    fn closed(mut self, closed: bool) -> Vector {
        self.closed = closed;
        self
    }
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A request head with `lines` (each without CRLF) after `GET / HTTP/1.1` and `Host: a`.
fn get(lines: &[&str]) -> Vec<u8> {
    let mut out = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for l in lines {
        out.extend_from_slice(l.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A head-level rejection: `status`, nothing reaches the upstream, and [`SMUGGLED`]
/// sent right after is never forwarded.
fn rejected(name: &'static str, class: &'static str, head: &[u8], status: u16) -> Vector {
    Vector::new(name, class, "request", cat(&[head, SMUGGLED]))
        .st(&[status])
        .up(Up::Nothing)
}

/// A rejection inside a `POST /c` chunked body: the head was already forwarded, the
/// request is abandoned (never completed towards the upstream), 400, and [`SMUGGLED`]
/// never forwarded.
fn bad_chunked(name: &'static str, class: &'static str, body: &[u8]) -> Vector {
    let head: &[u8] = b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    Vector::new(name, class, "request", cat(&[head, body, SMUGGLED]))
        .st(&[400])
        .up(Up::Abandoned(&[], "POST /c HTTP/1.1"))
}

fn ws_request(path: &str, connection: &str, upgrade: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: a\r\nConnection: {connection}\r\nUpgrade: {upgrade}\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// A hostile upstream answer to `GET / HTTP/1.1`: 502, and `marker` never reaches the client.
fn bad_response(name: &'static str, class: &'static str, response: &'static [u8]) -> Vector {
    Vector::new(name, class, "response", get(&[]))
        .replies(&[Reply::Raw(response)])
        .st(&[502])
        .up(Up::Requests(&["GET / HTTP/1.1"]))
        .never(&[b"MARKER"])
}

/// A hostile `101` to a WebSocket handshake on `/ws` that carries a frame after its head:
/// 502, and neither the 101 nor the frame reaches the client.
fn bad_switch(name: &'static str, response: &'static [u8]) -> Vector {
    Vector::new(
        name,
        "101 validation",
        "upgrade",
        ws_request("/ws", "Upgrade", "websocket", ""),
    )
    .replies(&[Reply::Raw(response)])
    .st(&[502])
    .up(Up::Requests(&["GET /ws HTTP/1.1"]))
    .never(&[b"101", b"MARKER"])
}

/// Every vector of the corpus.
#[allow(clippy::vec_init_then_push)] // one push per vector reads as a table
pub fn vectors() -> Vec<Vector> {
    let mut v = Vec::new();

    // ---- controls: what must work, so the rejections below mean something ----------
    v.push(
        Vector::new("control_get", "control", "request", get(&[]))
            .st(&[200])
            .up(Up::Requests(&["GET / HTTP/1.1"])),
    );
    v.push(
        Vector::new(
            "control_post_content_length",
            "control",
            "request",
            b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
        )
        .st(&[200])
        .up(Up::Requests(&["POST /p HTTP/1.1"])),
    );
    v.push(
        Vector::new(
            "control_chunked_extension_and_trailer",
            "control",
            "request",
            b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 ;ext=\"v\"\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n".to_vec(),
        )
        .st(&[200])
        .up(Up::Requests(&["POST /c HTTP/1.1"]))
        .hidden(&["x-trailer"]),
    );
    v.push(
        Vector::new(
            "control_pipelined",
            "control",
            "request",
            cat(&[&get(&[]), b"GET /two HTTP/1.1\r\nHost: a\r\n\r\n"]),
        )
        .st(&[200, 200])
        .up(Up::Requests(&["GET / HTTP/1.1", "GET /two HTTP/1.1"])),
    );
    v.push(
        Vector::new(
            "control_leading_empty_lines",
            "control",
            "request",
            cat(&[b"\r\n\r\n", &get(&[])]),
        )
        .st(&[200])
        .up(Up::Requests(&["GET / HTTP/1.1"])),
    );
    v.push(
        Vector::new(
            "control_http10_without_host",
            "control",
            "request",
            b"GET /old HTTP/1.0\r\n\r\n".to_vec(),
        )
        .st(&[200])
        .closed(true)
        .up(Up::Requests(&["GET /old HTTP/1.1"])),
    );
    {
        let mut lines: Vec<String> = (0..99).map(|i| format!("X-F{i}: {i}")).collect();
        lines.insert(0, "Host: a".into());
        let head = format!("GET /hundred HTTP/1.1\r\n{}\r\n\r\n", lines.join("\r\n"));
        v.push(
            Vector::new(
                "control_exactly_100_fields",
                "limits",
                "request",
                head.into_bytes(),
            )
            .st(&[200])
            .up(Up::Requests(&["GET /hundred HTTP/1.1"])),
        );
    }
    {
        let target = format!("/{}", "a".repeat(8000));
        let head = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
        let line: &'static str = Box::leak(format!("GET {target} HTTP/1.1").into_boxed_str());
        let lines: &'static [&'static str] = Box::leak(vec![line].into_boxed_slice());
        v.push(
            Vector::new(
                "control_request_line_8000",
                "limits",
                "request",
                head.into_bytes(),
            )
            .st(&[200])
            .up(Up::Requests(lines)),
        );
    }
    v.push(
        Vector::new("control_protected_from_connection", "hop-by-hop", "request", b"POST /p HTTP/1.1\r\nHost: a\r\nConnection: Content-Length, Host\r\nContent-Length: 5\r\n\r\nhello".to_vec())
            .st(&[200])
            .up(Up::Requests(&["POST /p HTTP/1.1"])),
    );
    v.push(
        Vector::new(
            "control_hop_by_hop_dropped",
            "hop-by-hop",
            "request",
            get(&[
                "Connection: keep-alive, X-Secret",
                "X-Secret: 1",
                "Keep-Alive: timeout=5",
                "Proxy-Authorization: Basic eDp5",
                "TE: trailers",
                "Trailer: X",
                "Proxy-Connection: keep-alive",
            ]),
        )
        .st(&[200])
        .up(Up::Requests(&["GET / HTTP/1.1"]))
        .hidden(&["x-secret"]),
    );
    v.push(
        Vector::new(
            "control_websocket_tunnel",
            "control",
            "upgrade",
            cat(&[
                &ws_request("/chat", "keep-alive, Upgrade", "websocket", ""),
                b"\x81\x02hi",
            ]),
        )
        .replies(&[Reply::WebSocket(b"\x81\x02yo")])
        .st(&[101])
        .up(Up::Tunnel(&["GET /chat HTTP/1.1"], b"\x81\x02hi")),
    );

    // ---- pipelining: what follows a message is never read as part of it, nor the reverse
    v.push(
        Vector::new(
            "pipelined_after_connection_close",
            "pipelining",
            "request",
            cat(&[&get(&["Connection: close"]), SMUGGLED]),
        )
        .st(&[200])
        .closed(true)
        .up(Up::Requests(&["GET / HTTP/1.1"])),
    );
    v.push(
        Vector::new(
            "pipelined_after_http10",
            "pipelining",
            "request",
            cat(&[b"GET /old HTTP/1.0\r\nHost: a\r\n\r\n", SMUGGLED]),
        )
        .st(&[200])
        .closed(true)
        .up(Up::Requests(&["GET /old HTTP/1.1"])),
    );
    v.push(
        Vector::new(
            "request_inside_length_body",
            "pipelining",
            "request",
            cat(&[
                b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 35\r\n\r\n",
                SMUGGLED,
            ]),
        )
        .st(&[200])
        .up(Up::Requests(&["POST /p HTTP/1.1"])),
    );
    v.push(
        Vector::new(
            "request_inside_chunked_body",
            "pipelining",
            "request",
            cat(&[
                b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n23\r\n",
                SMUGGLED,
                b"\r\n0\r\n\r\n",
            ]),
        )
        .st(&[200])
        .up(Up::Requests(&["POST /c HTTP/1.1"])),
    );

    // ---- Content-Length (RFC 9112 §6.3, RFC 9110 §8.6) -------------------------------
    v.push(rejected("cl_with_te", "CL+TE", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400));
    v.push(rejected("te_with_cl", "CL+TE", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", 400));
    v.push(rejected("cl_with_obfuscated_te", "CL+TE", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: xchunked\r\n\r\n5c\r\n", 400));
    v.push(rejected(
        "cl_twice_equal",
        "Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        400,
    ));
    v.push(rejected(
        "cl_twice_differing",
        "Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
    ));
    v.push(rejected(
        "cl_list",
        "Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello",
        400,
    ));
    v.push(rejected(
        "cl_plus_sign",
        "Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
        400,
    ));
    v.push(rejected(
        "cl_negative",
        "Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\nhello",
        400,
    ));
    v.push(rejected(
        "cl_hex",
        "Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello",
        400,
    ));
    v.push(rejected(
        "cl_inner_space",
        "Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\n\r\nhello",
        400,
    ));
    v.push(rejected(
        "cl_empty",
        "Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\nhello",
        400,
    ));
    v.push(rejected(
        "cl_decimal",
        "Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5.0\r\n\r\nhello",
        400,
    ));
    v.push(rejected(
        "cl_overflow",
        "Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551621\r\n\r\nhello",
        400,
    ));
    v.push(rejected(
        "cl_vertical_tab",
        "Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\x0b\r\n\r\nhello",
        400,
    ));

    // ---- Transfer-Encoding (RFC 9112 §6.1, §6.3) --------------------------------------
    v.push(rejected(
        "te_last_not_chunked",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "te_identity",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "te_unknown_then_chunked",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
    ));
    v.push(rejected(
        "te_unknown_alone",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "te_xchunked",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "te_chunk_truncated_name",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunk\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "te_chunked_twice_in_list",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(rejected("te_two_fields", "Transfer-Encoding", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400));
    v.push(rejected("te_second_field_identity", "Transfer-Encoding", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n", 400));
    v.push(rejected(
        "te_quoted",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "te_single_quoted",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: 'chunked'\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "te_vertical_tab",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "te_nul_prefix",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x00chunked\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "te_non_ascii",
        "Transfer-Encoding",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chùnked\r\n\r\n0\r\n\r\n".as_bytes(),
        400,
    ));
    v.push(rejected(
        "te_space_before_colon",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "te_tab_before_colon",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "te_leading_space_line",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: a\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "te_obs_fold_value",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "te_lf_before_colon",
        "Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\n: chunked\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "te_in_http10",
        "Transfer-Encoding",
        b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(rejected("te_underscore_with_cl", "Transfer-Encoding", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400));

    // ---- field syntax (RFC 9112 §5, RFC 9110 §5.5) -----------------------------------
    v.push(rejected(
        "ws_before_colon",
        "field syntax",
        &get(&["X-A : b"]),
        400,
    ));
    v.push(rejected(
        "host_ws_before_colon",
        "field syntax",
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "obs_fold",
        "obs-fold",
        &get(&["X-A: b", " c"]),
        400,
    ));
    v.push(rejected(
        "obs_fold_tab",
        "obs-fold",
        &get(&["X-A: b", "\tc"]),
        400,
    ));
    v.push(rejected(
        "nul_in_value",
        "control characters",
        &get(&["X-A: b\0c"]),
        400,
    ));
    v.push(rejected(
        "nul_in_name",
        "control characters",
        &get(&["X\0A: b"]),
        400,
    ));
    v.push(rejected(
        "ctl_in_value",
        "control characters",
        &get(&["X-A: b\x01c"]),
        400,
    ));
    v.push(rejected(
        "del_in_value",
        "control characters",
        &get(&["X-A: b\x7fc"]),
        400,
    ));
    v.push(rejected(
        "escape_in_value",
        "control characters",
        &get(&["X-A: \x1b[31m"]),
        400,
    ));
    v.push(rejected(
        "bare_cr_in_value",
        "line endings",
        &get(&["X-A: b\rTransfer-Encoding: chunked"]),
        400,
    ));
    v.push(rejected(
        "bare_lf_in_value",
        "line endings",
        &get(&["X-A: b\nTransfer-Encoding: chunked"]),
        400,
    ));
    v.push(rejected(
        "bare_lf_everywhere",
        "line endings",
        b"GET / HTTP/1.1\nHost: a\n\n",
        400,
    ));
    v.push(rejected(
        "bare_lf_request_line",
        "line endings",
        b"GET / HTTP/1.1\nHost: a\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "bare_cr_request_line",
        "line endings",
        b"GET / HTTP/1.1\rHost: a\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "lf_cr_terminator",
        "line endings",
        b"GET / HTTP/1.1\r\nHost: a\r\n\n\r\n",
        400,
    ));
    v.push(rejected(
        "name_with_paren",
        "field syntax",
        &get(&["X(A): b"]),
        400,
    ));
    v.push(rejected(
        "name_with_space",
        "field syntax",
        &get(&["X A: b"]),
        400,
    ));
    v.push(rejected(
        "name_with_at",
        "field syntax",
        &get(&["X@A: b"]),
        400,
    ));
    v.push(rejected(
        "name_non_ascii",
        "field syntax",
        "GET / HTTP/1.1\r\nHost: a\r\nXé: b\r\n\r\n".as_bytes(),
        400,
    ));
    v.push(rejected("empty_name", "field syntax", &get(&[": b"]), 400));
    v.push(rejected(
        "line_without_colon",
        "field syntax",
        &get(&["X-A b"]),
        400,
    ));

    // ---- Host (RFC 9112 §3.2) ---------------------------------------------------------
    v.push(rejected(
        "host_missing",
        "Host",
        b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "host_twice",
        "Host",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "host_twice_same",
        "Host",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "host_with_space",
        "Host",
        b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "host_with_slash",
        "Host",
        b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "host_with_userinfo",
        "Host",
        b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n",
        400,
    ));

    // ---- request line (RFC 9112 §3) ---------------------------------------------------
    v.push(rejected(
        "version_1_2",
        "request line",
        b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
        505,
    ));
    v.push(rejected(
        "version_2_0",
        "request line",
        b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        505,
    ));
    v.push(rejected(
        "version_lowercase",
        "request line",
        b"GET / http/1.1\r\nHost: a\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "leading_space",
        "request line",
        b" GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "double_space_before_version",
        "request line",
        b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "space_in_target",
        "request line",
        b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "nul_in_target",
        "request line",
        b"GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "method_not_token",
        "request line",
        b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
        400,
    ));
    v.push(rejected(
        "target_not_a_path",
        "request line",
        b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
        400,
    ));
    v.push(rejected("http09", "request line", b"GET /\r\n\r\n", 400));

    // ---- chunked body (RFC 9112 §7.1) ------------------------------------------------
    v.push(bad_chunked(
        "chunk_size_plus",
        "chunk size",
        b"+5\r\nhello\r\n0\r\n\r\n",
    ));
    v.push(bad_chunked(
        "chunk_size_minus",
        "chunk size",
        b"-5\r\nhello\r\n0\r\n\r\n",
    ));
    v.push(bad_chunked(
        "chunk_size_0x",
        "chunk size",
        b"0x5\r\nhello\r\n0\r\n\r\n",
    ));
    v.push(bad_chunked(
        "chunk_size_underscore",
        "chunk size",
        b"1_0\r\n0123456789abcdef\r\n0\r\n\r\n",
    ));
    v.push(bad_chunked(
        "chunk_size_leading_space",
        "chunk size",
        b" 5\r\nhello\r\n0\r\n\r\n",
    ));
    v.push(bad_chunked(
        "chunk_size_trailing_space",
        "chunk size",
        b"5 \r\nhello\r\n0\r\n\r\n",
    ));
    v.push(bad_chunked(
        "chunk_size_17_digits",
        "chunk size",
        b"10000000000000005\r\nhello\r\n0\r\n\r\n",
    ));
    v.push(bad_chunked(
        "chunk_size_empty",
        "chunk size",
        b"\r\nhello\r\n0\r\n\r\n",
    ));
    v.push(bad_chunked(
        "chunk_size_not_hex",
        "chunk size",
        b"g\r\nhello\r\n0\r\n\r\n",
    ));
    v.push(bad_chunked(
        "chunk_size_bare_lf",
        "chunk size",
        b"5\nhello\r\n0\r\n\r\n",
    ));
    v.push(bad_chunked(
        "chunk_ext_control",
        "chunk size",
        b"5;a=\x01\r\nhello\r\n0\r\n\r\n",
    ));
    v.push(bad_chunked(
        "chunk_missing_crlf",
        "chunk data",
        b"5\r\nhelloXX0\r\n\r\n",
    ));
    v.push(bad_chunked(
        "chunk_lf_after_data",
        "chunk data",
        b"5\r\nhello\n0\r\n\r\n",
    ));
    v.push(bad_chunked(
        "chunk_too_long_data",
        "chunk data",
        b"3\r\nhello\r\n0\r\n\r\n",
    ));
    v.push(bad_chunked(
        "trailer_space_before_colon",
        "trailers",
        b"0\r\nX-T : 1\r\n\r\n",
    ));
    v.push(bad_chunked(
        "trailer_obs_fold",
        "trailers",
        b"0\r\nX-T: 1\r\n 2\r\n\r\n",
    ));
    v.push(bad_chunked(
        "trailer_bare_lf",
        "trailers",
        b"0\r\nX-T: 1\n\r\n",
    ));
    v.push(bad_chunked(
        "trailer_nul",
        "trailers",
        b"0\r\nX-T: 1\x002\r\n\r\n",
    ));
    v.push(bad_chunked(
        "trailer_without_colon",
        "trailers",
        b"0\r\nbogus\r\n\r\n",
    ));

    // ---- limits --------------------------------------------------------------------
    {
        let head = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(8200));
        v.push(rejected(
            "request_line_over_8k",
            "limits",
            head.as_bytes(),
            414,
        ));
        let big = "b".repeat(1000);
        let lines: Vec<String> = (0..34).map(|i| format!("X-Big{i}: {big}")).collect();
        let head = format!(
            "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n\r\n",
            lines.join("\r\n")
        );
        v.push(rejected("head_over_32k", "limits", head.as_bytes(), 431));
        let lines: Vec<String> = (0..100).map(|i| format!("X-F{i}: {i}")).collect();
        let head = format!(
            "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n\r\n",
            lines.join("\r\n")
        );
        v.push(rejected("fields_over_100", "limits", head.as_bytes(), 431));
        let head = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX-Long: {}\r\n\r\n",
            "c".repeat(33 * 1024)
        );
        v.push(rejected(
            "one_field_over_32k",
            "limits",
            head.as_bytes(),
            431,
        ));
    }

    // ---- upgrade smuggling -------------------------------------------------------
    let next: &[u8] =
        b"GET /next HTTP/1.1\r\nHost: a\r\nProxy-Authorization: Basic eDp5\r\nConnection: X-Hidden\r\nX-Hidden: 1\r\n\r\n";
    v.push(
        Vector::new(
            "upgrade_refused_held_request_parsed",
            "non-101 to an upgrade",
            "upgrade",
            cat(&[&ws_request("/ws", "Upgrade", "websocket", ""), next]),
        )
        .replies(&[Reply::Raw(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\n\r\nno ws!",
        )])
        .st(&[403, 200])
        .up(Up::Requests(&["GET /ws HTTP/1.1", "GET /next HTTP/1.1"]))
        .hidden(&["x-hidden"]),
    );
    v.push(
        Vector::new(
            "upgrade_answered_200_held_bytes_rejected",
            "non-101 to an upgrade",
            "upgrade",
            cat(&[&ws_request("/ws", "Upgrade", "websocket", ""), b"GET /admin HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"]),
        )
        .st(&[200, 400])
        .up(Up::Requests(&["GET /ws HTTP/1.1"])),
    );
    // A WebSocket frame sent ahead of the 101 never travels raw: after a 200 it would be
    // the start of the next request head, and since no method starts with 0x81 it is
    // refused at once (400, close); nothing of it reaches the upstream.
    v.push(
        Vector::new(
            "upgrade_answered_200_frame_bytes_held",
            "non-101 to an upgrade",
            "upgrade",
            cat(&[
                &ws_request("/ws", "Upgrade", "websocket", ""),
                b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58",
            ]),
        )
        .st(&[200, 400])
        .closed(true)
        .up(Up::Requests(&["GET /ws HTTP/1.1"])),
    );
    // The same with a frame that happens to end like a head: parsed, rejected.
    v.push(
        Vector::new(
            "upgrade_answered_200_frame_bytes_rejected",
            "non-101 to an upgrade",
            "upgrade",
            cat(&[
                &ws_request("/ws", "Upgrade", "websocket", ""),
                b"\x81\x8c\x00\x00\x00\x00GET\r\n\r\n\r\n",
            ]),
        )
        .st(&[200, 400])
        .up(Up::Requests(&["GET /ws HTTP/1.1"])),
    );
    v.push(
        Vector::new(
            "upgrade_answered_close_delimited",
            "non-101 to an upgrade",
            "upgrade",
            cat(&[&ws_request("/ws", "Upgrade", "websocket", ""), SMUGGLED]),
        )
        .replies(&[Reply::RawThenClose(b"HTTP/1.1 200 OK\r\n\r\nbody")])
        .st(&[200])
        .closed(true)
        .up(Up::Requests(&["GET /ws HTTP/1.1"])),
    );
    v.push(
        Vector::new("upgrade_answered_426", "non-101 to an upgrade", "upgrade", cat(&[&ws_request("/ws", "Upgrade", "websocket", ""), SMUGGLED]))
            .replies(&[Reply::Raw(b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\n")])
            .st(&[426, 200])
            .up(Up::Requests(&["GET /ws HTTP/1.1", "GET /smuggled HTTP/1.1"])),
    );
    v.push(
        Vector::new("switch_without_proposal", "101 validation", "upgrade", get(&[]))
            .replies(&[Reply::Raw(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nMARKER")])
            .st(&[502])
            .up(Up::Requests(&["GET / HTTP/1.1"]))
            .never(&[b"101", b"MARKER"]),
    );
    v.push(
        Vector::new(
            "switch_to_upgrade_without_connection_token",
            "101 validation",
            "upgrade",
            get(&[
                "Upgrade: websocket",
                "Connection: keep-alive",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            ]),
        )
        .replies(&[Reply::WebSocket(b"MARKER")])
        .st(&[502])
        .up(Up::Requests(&["GET / HTTP/1.1"]))
        .never(&[b"101", b"MARKER"]),
    );
    v.push(
        Vector::new(
            "switch_to_http10_upgrade",
            "101 validation",
            "upgrade",
            b"GET /ws HTTP/1.0\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".to_vec(),
        )
        .replies(&[Reply::WebSocket(b"MARKER")])
        .st(&[502])
        .up(Up::Requests(&["GET /ws HTTP/1.1"]))
        .never(&[b"101", b"MARKER"]),
    );
    v.push(bad_switch(
        "switch_names_h2c",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\nMARKER",
    ));
    v.push(bad_switch("switch_names_other_protocol", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nMARKER"));
    v.push(bad_switch("switch_without_upgrade_field", b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nMARKER"));
    v.push(bad_switch("switch_without_connection_upgrade", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nMARKER"));
    v.push(bad_switch("switch_connection_close", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: close\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nMARKER"));
    v.push(bad_switch("switch_wrong_accept", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\nMARKER"));
    v.push(bad_switch("switch_missing_accept", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nMARKER"));
    v.push(bad_switch("switch_two_accepts", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\nMARKER"));
    v.push(bad_switch("switch_http10", b"HTTP/1.0 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nMARKER"));
    v.push(bad_switch("switch_malformed_head", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept : s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nMARKER"));
    v.push(
        Vector::new(
            "h2c_not_forwarded",
            "h2c",
            "upgrade",
            get(&[
                "Connection: Upgrade, HTTP2-Settings",
                "Upgrade: h2c",
                "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
            ]),
        )
        .st(&[200])
        .up(Up::Requests(&["GET / HTTP/1.1"]))
        .hidden(&["upgrade", "http2-settings"]),
    );
    v.push(
        Vector::new("h2c_switch_refused", "h2c", "upgrade", get(&["Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"]))
            .replies(&[Reply::Raw(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\nMARKER")])
            .st(&[502])
            .up(Up::Requests(&["GET / HTTP/1.1"]))
            .never(&[b"101", b"MARKER"]),
    );
    v.push(
        Vector::new(
            "h2c_preface_held_and_rejected",
            "h2c",
            "upgrade",
            cat(&[
                &get(&[
                    "Connection: Upgrade, HTTP2-Settings",
                    "Upgrade: h2c",
                    "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
                ]),
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            ]),
        )
        .st(&[200, 505])
        .up(Up::Requests(&["GET / HTTP/1.1"])),
    );
    v.push(
        Vector::new(
            "h2c_dropped_from_offer",
            "h2c",
            "upgrade",
            ws_request("/chat", "Upgrade", "h2c, websocket", ""),
        )
        .replies(&[Reply::WebSocket(b"")])
        .st(&[101])
        .up(Up::Tunnel(&["GET /chat HTTP/1.1"], b"")),
    );
    v.push(
        Vector::new(
            "upgrade_protocol_not_allowed",
            "upgrade allow-list",
            "upgrade",
            get(&["Connection: Upgrade", "Upgrade: foo/1"]),
        )
        .st(&[200])
        .up(Up::Requests(&["GET / HTTP/1.1"]))
        .hidden(&["upgrade"]),
    );

    // ---- response side: the upstream is hostile -------------------------------------
    v.push(bad_response("resp_cl_with_te", "response framing", b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nMARKER\r\n0\r\n\r\n"));
    v.push(bad_response(
        "resp_cl_differing",
        "response framing",
        b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nContent-Length: 7\r\n\r\nMARKER!",
    ));
    v.push(bad_response(
        "resp_cl_list",
        "response framing",
        b"HTTP/1.1 200 OK\r\nContent-Length: 6, 6\r\n\r\nMARKER",
    ));
    v.push(bad_response(
        "resp_cl_not_digits",
        "response framing",
        b"HTTP/1.1 200 OK\r\nContent-Length: six\r\n\r\nMARKER",
    ));
    v.push(bad_response(
        "resp_te_last_not_chunked",
        "response framing",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nMARKER",
    ));
    v.push(bad_response(
        "resp_te_xchunked",
        "response framing",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n6\r\nMARKER\r\n0\r\n\r\n",
    ));
    v.push(bad_response(
        "resp_obs_fold",
        "response syntax",
        b"HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 6\r\n\r\nMARKER",
    ));
    v.push(bad_response(
        "resp_bare_lf",
        "response syntax",
        b"HTTP/1.1 200 OK\nContent-Length: 6\n\nMARKER",
    ));
    v.push(bad_response(
        "resp_nul_in_value",
        "response syntax",
        b"HTTP/1.1 200 OK\r\nX-A: b\0c\r\nContent-Length: 6\r\n\r\nMARKER",
    ));
    v.push(bad_response(
        "resp_bare_cr_injection",
        "response syntax",
        b"HTTP/1.1 200 OK\r\nX-A: b\rSet-Cookie: s=1\r\nContent-Length: 6\r\n\r\nMARKER",
    ));
    v.push(bad_response(
        "resp_space_before_colon",
        "response syntax",
        b"HTTP/1.1 200 OK\r\nContent-Length : 6\r\n\r\nMARKER",
    ));
    v.push(bad_response(
        "resp_invalid_name",
        "response syntax",
        b"HTTP/1.1 200 OK\r\nX A: b\r\nContent-Length: 6\r\n\r\nMARKER",
    ));
    v.push(bad_response(
        "resp_status_4_digits",
        "response status line",
        b"HTTP/1.1 2000 OK\r\nContent-Length: 6\r\n\r\nMARKER",
    ));
    v.push(bad_response(
        "resp_status_below_100",
        "response status line",
        b"HTTP/1.1 099 Odd\r\nContent-Length: 6\r\n\r\nMARKER",
    ));
    v.push(bad_response(
        "resp_version_2",
        "response status line",
        b"HTTP/2.0 200 OK\r\nContent-Length: 6\r\n\r\nMARKER",
    ));
    v.push(bad_response(
        "resp_not_http",
        "response status line",
        b"ICY 200 OK\r\nContent-Length: 6\r\n\r\nMARKER",
    ));
    {
        let big: &'static [u8] = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 6\r\n\r\nMARKER",
                "b".repeat(33 * 1024)
            )
            .into_bytes()
            .into_boxed_slice(),
        );
        v.push(bad_response("resp_head_over_32k", "response limits", big));
        let lines: Vec<String> = (0..101).map(|i| format!("X-F{i}: {i}")).collect();
        let many: &'static [u8] = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\n{}\r\nContent-Length: 6\r\n\r\nMARKER",
                lines.join("\r\n")
            )
            .into_bytes()
            .into_boxed_slice(),
        );
        v.push(bad_response(
            "resp_over_100_fields",
            "response limits",
            many,
        ));
    }
    v.push(
        Vector::new("resp_bad_chunk_after_head", "response framing", "response", get(&[]))
            .replies(&[Reply::Raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n+6\r\nMARKER\r\n0\r\n\r\n")])
            .st(&[200])
            .closed(true)
            .up(Up::Requests(&["GET / HTTP/1.1"]))
            .never(&[b"MARKER"]),
    );
    v.push(
        Vector::new("resp_bytes_after_response", "bytes after a response", "response", cat(&[&get(&[]), NEXT]))
            .replies(&[Reply::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nMARKER")])
            .st(&[200, 200])
            .up(Up::Requests(&["GET / HTTP/1.1", "GET /next HTTP/1.1"]))
            .never(&[b"MARKER"]),
    );
    v.push(
        Vector::new(
            "resp_body_on_204",
            "bytes after a response",
            "response",
            cat(&[&get(&[]), NEXT]),
        )
        .replies(&[Reply::Raw(
            b"HTTP/1.1 204 No Content\r\nContent-Length: 6\r\n\r\nMARKER",
        )])
        .st(&[204, 200])
        .up(Up::Requests(&["GET / HTTP/1.1", "GET /next HTTP/1.1"]))
        .never(&[b"MARKER"]),
    );
    v.push(
        Vector::new(
            "resp_body_on_304",
            "bytes after a response",
            "response",
            cat(&[&get(&[]), NEXT]),
        )
        .replies(&[Reply::Raw(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 6\r\n\r\nMARKER",
        )])
        .st(&[304, 200])
        .up(Up::Requests(&["GET / HTTP/1.1", "GET /next HTTP/1.1"]))
        .never(&[b"MARKER"]),
    );
    {
        let mut head = Vector::new(
            "resp_body_on_head",
            "bytes after a response",
            "response",
            b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\nHEAD /next HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        )
        .replies(&[Reply::Raw(
            b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nMARKER",
        )])
        .st(&[200, 200])
        .up(Up::Requests(&["HEAD / HTTP/1.1", "HEAD /next HTTP/1.1"]))
        .never(&[b"MARKER"]);
        head.head_requests = true;
        v.push(head);
    }
    v.push(
        Vector::new("resp_after_last_chunk", "bytes after a response", "response", cat(&[&get(&[]), NEXT]))
            .replies(&[Reply::Raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nMARKER")])
            .st(&[200, 200])
            .up(Up::Requests(&["GET / HTTP/1.1", "GET /next HTTP/1.1"]))
            .never(&[b"MARKER"]),
    );
    v.push(
        Vector::new("resp_queue_poisoning", "bytes after a response", "response", cat(&[b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n", b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n"]))
            .replies(&[Reply::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nMARKER"), Reply::Echo])
            .st(&[200, 200])
            .up(Up::Requests(&["GET /a HTTP/1.1", "GET /b HTTP/1.1"]))
            .never(&[b"MARKER"]),
    );
    v.push(
        Vector::new("resp_hop_by_hop_dropped", "hop-by-hop", "response", get(&[]))
            .replies(&[Reply::Raw(b"HTTP/1.1 200 OK\r\nConnection: X-Up-Secret\r\nX-Up-Secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nTrailer: X\r\nContent-Length: 2\r\n\r\nok")])
            .st(&[200])
            .up(Up::Requests(&["GET / HTTP/1.1"]))
            .never(&[b"X-Up-Secret", b"Keep-Alive", b"Proxy-Authenticate", b"Trailer"]),
    );
    v.push(
        Vector::new("resp_interim_then_final", "control", "response", get(&[]))
            .replies(&[Reply::Raw(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")])
            .st(&[100, 103, 200])
            .up(Up::Requests(&["GET / HTTP/1.1"])),
    );
    v
}
