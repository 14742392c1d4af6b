//! A browser's session through `switchyard demo`'s origin, with the proxy's pings on:
//! the page, then its WebSocket opened with the handshake Chromium sends (offering
//! permessage-deflate, which the demo's origin declines), messages both ways, a quiet
//! spell longer than a dead peer's deadline (a browser answers Pings by itself, as
//! tungstenite does), and a clean close.

use std::net::SocketAddr;
use std::time::Duration;

use switchyard_core::WebSocketPolicy;
use switchyard_e2e::{ws_config, ws_next_message, ws_stay_quiet, Conn, Proxy};
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role};
use tungstenite::{Message, WebSocket};

const PING_INTERVAL: Duration = Duration::from_millis(200);
const PING_TIMEOUT: Duration = Duration::from_millis(300);
/// A `Sec-WebSocket-Key` as a browser draws it: 16 random bytes in base64.
const BROWSER_KEY: &str = "x3JJHMbDL1EzLkh9GBhXDw==";

/// The handshake Chromium sends for `new WebSocket("ws://{host}/ws")` on a page from
/// `http://{host}/`, header for header and in its order.
fn chromium_handshake(host: SocketAddr) -> String {
    format!(
        "GET /ws HTTP/1.1\r\n\
         Host: {host}\r\n\
         Connection: Upgrade\r\n\
         Pragma: no-cache\r\n\
         Cache-Control: no-cache\r\n\
         User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
         Chrome/126.0.0.0 Safari/537.36\r\n\
         Upgrade: websocket\r\n\
         Origin: http://{host}\r\n\
         Sec-WebSocket-Version: 13\r\n\
         Accept-Encoding: gzip, deflate, br, zstd\r\n\
         Accept-Language: en-US,en;q=0.9\r\n\
         Sec-WebSocket-Key: {BROWSER_KEY}\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
         \r\n"
    )
}

#[test]
fn browser_session_through_the_demo_with_pings_on() {
    let origin = switchyard::demo::start_origin().expect("start the demo origin");
    let proxy = Proxy::start_with(origin, |config| {
        config.core.routes[0].websocket = WebSocketPolicy {
            validate: true,
            ping_interval: Some(PING_INTERVAL),
            ping_timeout: PING_TIMEOUT,
        };
    });
    let host = proxy.addr();

    let mut page = Conn::connect(host);
    page.write_all(
        format!(
            "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n\
             Accept: text/html,application/xhtml+xml\r\nAccept-Encoding: gzip, deflate, br\r\n\r\n"
        )
        .as_bytes(),
    );
    let response = page.read_final_response("GET").expect("the demo page");
    assert_eq!(response.head.status(), 200);
    let body = String::from_utf8_lossy(&response.body);
    assert!(body.contains("new WebSocket("), "the page: {body}");

    let mut client = Conn::connect(host);
    client.write_all(chromium_handshake(host).as_bytes());
    let response = client.read_response("GET").expect("the 101");
    assert_eq!(
        response.head.status(),
        101,
        "{:?}",
        response.head.start_line
    );
    assert_eq!(
        response.head.get("sec-websocket-accept"),
        Some(derive_accept_key(BROWSER_KEY.as_bytes()).as_str())
    );
    // The demo's origin declines the compression the browser offered, and the proxy
    // agrees to none in its place: the browser must not compress.
    assert_eq!(response.head.get("sec-websocket-extensions"), None);
    let (stream, leftover) = client.into_parts();
    let mut ws = WebSocket::from_partially_read(stream, leftover, Role::Client, Some(ws_config()));

    ws.send(Message::text("hello")).expect("send");
    assert_eq!(ws_next_message(&mut ws), Message::text("hello"));
    // Longer than a dead peer's deadline: the browser and the origin live on by
    // answering the proxy's Pings.
    let pings = ws_stay_quiet(&mut ws, (PING_INTERVAL + PING_TIMEOUT) * 3);
    assert!(!pings.is_empty(), "the proxy sent the browser no Ping");
    ws.send(Message::text("still here"))
        .expect("send after the quiet");
    assert_eq!(ws_next_message(&mut ws), Message::text("still here"));

    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "tab closed".into(),
    }))
    .expect("send Close");
    let reply = loop {
        match ws.read() {
            Ok(Message::Close(reply)) => break reply,
            Ok(Message::Ping(_)) => {}
            Ok(other) => panic!("after its Close the browser read {other:?}"),
            Err(e) => panic!("no Close reply: {e}"),
        }
    };
    assert_eq!(reply.map(|frame| frame.code), Some(CloseCode::Normal));
}
