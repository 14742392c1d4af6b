//! The design's memory rule, checked from inside: a tunnel holds a buffer only while
//! bytes are on their way, never while idle.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use crate::backend::{self, pipe};
use crate::buffer::IN_USE;
use crate::{spawn, ServerConfig};

const LIMIT: Duration = Duration::from_secs(5);

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

#[test]
fn an_idle_tunnel_holds_no_buffer_and_no_pipe() {
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

    // Every byte came back, so every buffer is on its way home; wait (bounded) for the
    // last `give_buffer` of the task that wrote them.
    let deadline = Instant::now() + LIMIT;
    while IN_USE.load(Ordering::SeqCst) != 0 || pipe::IN_USE.load(Ordering::SeqCst) != 0 {
        assert!(
            Instant::now() < deadline,
            "an idle tunnel still holds buffers or pipes"
        );
        thread::yield_now();
    }

    drop((reader, writer));
    handle.shutdown();
    server.join().unwrap().unwrap();
}
