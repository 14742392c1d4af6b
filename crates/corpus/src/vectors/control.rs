//! Controls: what must work, so the rejections mean something. Two of them carry
//! hop-by-hop fields that must be dropped on the way.

use super::{cat, get, ws_request};
use crate::vector::{Reply, Side, Up, Vector};

/// The vectors of this class.
#[allow(clippy::vec_init_then_push)] // one push per vector reads as a table
pub(super) fn vectors() -> Vec<Vector> {
    let mut v = Vec::new();
    v.push(
        Vector::new("control_get", "control", Side::Request, get(&[]))
            .st(&[200])
            .up(Up::Requests(&["GET / HTTP/1.1"])),
    );
    v.push(
        Vector::new(
            "control_post_content_length",
            "control",
            Side::Request,
            b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
        )
        .st(&[200])
        .up(Up::Requests(&["POST /p HTTP/1.1"])),
    );
    v.push(
        Vector::new(
            "control_chunked_extension_and_trailer",
            "control",
            Side::Request,
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
            Side::Request,
            cat(&[&get(&[]), b"GET /two HTTP/1.1\r\nHost: a\r\n\r\n"]),
        )
        .st(&[200, 200])
        .up(Up::Requests(&["GET / HTTP/1.1", "GET /two HTTP/1.1"])),
    );
    v.push(
        Vector::new(
            "control_leading_empty_lines",
            "control",
            Side::Request,
            cat(&[b"\r\n\r\n", &get(&[])]),
        )
        .st(&[200])
        .up(Up::Requests(&["GET / HTTP/1.1"])),
    );
    v.push(
        Vector::new(
            "control_http10_without_host",
            "control",
            Side::Request,
            b"GET /old HTTP/1.0\r\n\r\n".to_vec(),
        )
        .st(&[200])
        .closed(true)
        .up(Up::Requests(&["GET /old HTTP/1.1"])),
    );
    v.push(
        Vector::new("control_protected_from_connection", "hop-by-hop", Side::Request, b"POST /p HTTP/1.1\r\nHost: a\r\nConnection: Content-Length, Host\r\nContent-Length: 5\r\n\r\nhello".to_vec())
            .st(&[200])
            .up(Up::Requests(&["POST /p HTTP/1.1"])),
    );
    v.push(
        Vector::new(
            "control_hop_by_hop_dropped",
            "hop-by-hop",
            Side::Request,
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
            Side::Upgrade,
            cat(&[
                &ws_request("/chat", "keep-alive, Upgrade", "websocket", ""),
                b"\x81\x02hi",
            ]),
        )
        .replies(&[Reply::WebSocket(b"\x81\x02yo")])
        .st(&[101])
        .up(Up::Tunnel(&["GET /chat HTTP/1.1"], b"\x81\x02hi")),
    );

    v
}
