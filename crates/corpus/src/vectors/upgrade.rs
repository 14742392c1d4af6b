//! Upgrade smuggling: non-101 answers to an upgrade, 101 validation, h2c and the
//! route's allow-list (CVE-2019-17567, CVE-2024-23326, h2csmuggler).

use super::{bad_switch, cat, get, ws_request};
use crate::vector::{Reply, Side, Up, Vector, SMUGGLED};

/// The vectors of this class.
#[allow(clippy::vec_init_then_push)] // one push per vector reads as a table
pub(super) fn vectors() -> Vec<Vector> {
    let mut v = Vec::new();
    let next: &[u8] =
        b"GET /next HTTP/1.1\r\nHost: a\r\nProxy-Authorization: Basic eDp5\r\nConnection: X-Hidden\r\nX-Hidden: 1\r\n\r\n";
    v.push(
        Vector::new(
            "upgrade_refused_held_request_parsed",
            "non-101 to an upgrade",
            Side::Upgrade,
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
            Side::Upgrade,
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
            Side::Upgrade,
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
            Side::Upgrade,
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
            Side::Upgrade,
            cat(&[&ws_request("/ws", "Upgrade", "websocket", ""), SMUGGLED]),
        )
        .replies(&[Reply::RawThenClose(b"HTTP/1.1 200 OK\r\n\r\nbody")])
        .st(&[200])
        .closed(true)
        .up(Up::Requests(&["GET /ws HTTP/1.1"])),
    );
    v.push(
        Vector::new("upgrade_answered_426", "non-101 to an upgrade", Side::Upgrade, cat(&[&ws_request("/ws", "Upgrade", "websocket", ""), SMUGGLED]))
            .replies(&[Reply::Raw(b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\n")])
            .st(&[426, 200])
            .up(Up::Requests(&["GET /ws HTTP/1.1", "GET /smuggled HTTP/1.1"])),
    );
    v.push(
        Vector::new("switch_without_proposal", "101 validation", Side::Upgrade, get(&[]))
            .replies(&[Reply::Raw(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nMARKER")])
            .st(&[502])
            .up(Up::Requests(&["GET / HTTP/1.1"]))
            .never(&[b"101", b"MARKER"]),
    );
    v.push(
        Vector::new(
            "switch_to_upgrade_without_connection_token",
            "101 validation",
            Side::Upgrade,
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
            Side::Upgrade,
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
            Side::Upgrade,
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
        Vector::new("h2c_switch_refused", "h2c", Side::Upgrade, get(&["Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"]))
            .replies(&[Reply::Raw(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\nMARKER")])
            .st(&[502])
            .up(Up::Requests(&["GET / HTTP/1.1"]))
            .never(&[b"101", b"MARKER"]),
    );
    v.push(
        Vector::new(
            "h2c_preface_held_and_rejected",
            "h2c",
            Side::Upgrade,
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
            Side::Upgrade,
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
            Side::Upgrade,
            get(&["Connection: Upgrade", "Upgrade: foo/1"]),
        )
        .st(&[200])
        .up(Up::Requests(&["GET / HTTP/1.1"]))
        .hidden(&["upgrade"]),
    );

    v
}
