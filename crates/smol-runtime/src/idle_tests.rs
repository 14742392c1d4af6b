//! The design's memory rule, checked from inside: a tunnel holds a buffer only while
//! bytes are on their way, never while idle; a frame-aware WebSocket tunnel too, and its
//! bulk payload splices.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crate::backend::{self, pipe};
use crate::buffer::IN_USE;
use crate::{spawn, ServerConfig};

const LIMIT: Duration = Duration::from_secs(5);

/// The counters are global: the tests that wait for them to fall to zero take turns.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn read_head(reader: &mut impl BufRead) -> String {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "EOF inside a head"
        );
        head.push_str(&line);
        if line == "\r\n" {
            return head;
        }
    }
}

/// Accepts the `echo` upgrade, then echoes until EOF.
fn echo_origin() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        read_head(&mut reader);
        writer
            .write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n",
            )
            .unwrap();
        let mut chunk = [0u8; 4096];
        loop {
            match reader.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => writer.write_all(&chunk[..n]).unwrap(),
            }
        }
    });
    addr
}

/// Waits (bounded) until every buffer and pipe taken has been given back: every byte
/// arrived, so they are all on their way home, but the task that wrote the last ones
/// may not have run its `give_buffer` yet.
fn wait_until_nothing_is_held() {
    let deadline = Instant::now() + LIMIT;
    while IN_USE.load(Ordering::SeqCst) != 0 || pipe::IN_USE.load(Ordering::SeqCst) != 0 {
        assert!(
            Instant::now() < deadline,
            "an idle tunnel still holds buffers or pipes"
        );
        thread::yield_now();
    }
}

#[test]
fn an_idle_tunnel_holds_no_buffer_and_no_pipe() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut config = ServerConfig::simple("127.0.0.1:0".parse().unwrap(), echo_origin());
    config.core.routes[0].allow_upgrade = vec!["echo".into()];
    config.workers = 2;
    let (addrs, handle, server) = spawn(config).unwrap();

    let client = TcpStream::connect(addrs[0]).unwrap();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut writer = client;
    writer
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
        .unwrap();
    assert!(read_head(&mut reader).starts_with("HTTP/1.1 101"));

    // Enough traffic that both directions take buffers, several at a time, and that the
    // client's direction turns to splicing (a read fills a whole buffer).
    let spliced_before = pipe::SPLICES.load(Ordering::SeqCst);
    let payload: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
    let sender = {
        let mut writer = writer.try_clone().unwrap();
        let payload = payload.clone();
        thread::spawn(move || writer.write_all(&payload).unwrap())
    };
    let mut echoed = vec![0u8; payload.len()];
    reader.read_exact(&mut echoed).unwrap();
    sender.join().unwrap();
    assert!(echoed == payload, "the echo differs");
    if backend::CAN_SPLICE {
        assert!(
            pipe::SPLICES.load(Ordering::SeqCst) > spliced_before,
            "bulk data was copied, not spliced"
        );
    }

    wait_until_nothing_is_held();

    drop((reader, writer));
    handle.shutdown();
    server.join().unwrap().unwrap();
}

/// A tungstenite origin for one connection that echoes text and binary messages.
fn websocket_echo_origin() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        let mut ws = tungstenite::accept(stream).unwrap();
        while let Ok(message) = ws.read() {
            if (message.is_text() || message.is_binary()) && ws.send(message).is_err() {
                return;
            }
        }
    });
    addr
}

#[test]
fn a_large_websocket_message_splices_and_the_idle_websocket_holds_nothing() {
    use tungstenite::Message;
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut config = ServerConfig::simple("127.0.0.1:0".parse().unwrap(), websocket_echo_origin());
    config.workers = 1;
    assert!(
        config.core.routes[0].websocket.validate,
        "frame-aware by default"
    );
    let (addrs, handle, server) = spawn(config).unwrap();
    let stream = TcpStream::connect(addrs[0]).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let (mut ws, _) = tungstenite::client(format!("ws://{}/", addrs[0]), stream).unwrap();

    // Over 1 MiB in one frame each way: the header is shown to the core, the payload
    // goes past it, spliced while at least 16 KiB of it is left, and never beyond the
    // frame (its size is no multiple of a tunnel splice's 64 KiB, and the next frame is right
    // behind it): the small message behind it arrives whole.
    let spliced_before = pipe::SPLICES.load(Ordering::SeqCst);
    let large: Vec<u8> = (0..(1u32 << 20) + 40_000)
        .map(|i| (i % 251) as u8)
        .collect();
    ws.send(Message::binary(large.clone())).unwrap();
    ws.send(Message::text("right behind")).unwrap();
    assert!(
        ws.read().unwrap() == Message::binary(large),
        "the echo differs"
    );
    assert_eq!(ws.read().unwrap(), Message::text("right behind"));
    if backend::CAN_SPLICE {
        // Both directions carry one 1 MiB frame: many 64 KiB splices, not one.
        let splices = pipe::SPLICES.load(Ordering::SeqCst) - spliced_before;
        assert!(
            splices >= 8,
            "the payload was copied, not spliced ({splices})"
        );
    }
    // A stream of 64 KiB messages: each header is read on its own, so that the payload
    // behind it splices (a full read would take almost all of it through userspace).
    let spliced_before = pipe::SPLICES.load(Ordering::SeqCst);
    let message: Vec<u8> = (0..65_536u32).map(|i| (i % 249) as u8).collect();
    for _ in 0..16 {
        ws.send(Message::binary(message.clone())).unwrap();
    }
    for _ in 0..16 {
        assert!(ws.read().unwrap() == Message::binary(message.clone()));
    }
    if backend::CAN_SPLICE {
        let splices = pipe::SPLICES.load(Ordering::SeqCst) - spliced_before;
        assert!(
            splices >= 16,
            "64 KiB messages were copied ({splices} splices)"
        );
    }
    for i in 0..100 {
        let text = format!("small {i}");
        ws.send(Message::text(text.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(text));
    }

    wait_until_nothing_is_held();

    ws.close(None).unwrap();
    drop(ws);
    handle.shutdown();
    server.join().unwrap().unwrap();
}
