//! Upstream servers for the tests: each accepts on 127.0.0.1 in a background thread and
//! serves every connection on a thread of its own.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tungstenite::protocol::Role;
use tungstenite::{Message as WsMessage, WebSocket};

use crate::frames::{parse_frames, Frame};
use crate::http::{Conn, Message};
use crate::ws::{ws_accept_response, ws_accept_response_with, ws_config};

type Recording = Arc<Mutex<Vec<u8>>>;

/// What an [`Origin::http`] handler does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Write these bytes and wait for the next request on the same connection.
    Send(Vec<u8>),
    /// Write these bytes, then close the connection.
    SendAndClose(Vec<u8>),
    /// Never answer; keep the connection until the proxy closes it.
    Silent,
    /// Close the connection without answering.
    Close,
}

/// An upstream server on 127.0.0.1 that records, per accepted connection and in accept
/// order, every byte it received.
#[derive(Debug, Clone)]
pub struct Origin {
    addr: SocketAddr,
    connections: Arc<Mutex<Vec<Recording>>>,
    requests: Arc<Mutex<Vec<Message>>>,
    accepted: Arc<AtomicUsize>,
    ended: Arc<AtomicUsize>,
}

impl Origin {
    /// An origin running `script` on each accepted connection. When the script returns,
    /// the origin sends FIN and keeps recording until the proxy closes its side.
    pub fn scripted<F>(script: F) -> Origin
    where
        F: Fn(&mut Conn) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an origin");
        let origin = Origin {
            addr: listener.local_addr().expect("origin address"),
            connections: Arc::default(),
            requests: Arc::default(),
            accepted: Arc::default(),
            ended: Arc::default(),
        };
        let script = Arc::new(script);
        let shared = origin.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let recording = Recording::default();
                shared.connections.lock().unwrap().push(recording.clone());
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                let (script, requests) = (script.clone(), shared.requests.clone());
                let ended = shared.ended.clone();
                std::thread::spawn(move || {
                    serve(Conn::recording(stream, recording, requests), &*script);
                    ended.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        origin
    }

    /// An HTTP/1.1 origin: reads requests one after another on each connection (bodies
    /// framed by `Content-Length` or chunked) and does what `handler` says.
    pub fn http<F>(handler: F) -> Origin
    where
        F: Fn(&Message) -> Reply + Send + Sync + 'static,
    {
        Origin::scripted(move |conn| {
            while let Ok(Some(request)) = conn.read_request() {
                match handler(&request) {
                    Reply::Send(bytes) => {
                        if conn.try_write_all(&bytes).is_err() {
                            return;
                        }
                    }
                    Reply::SendAndClose(bytes) => {
                        let _ = conn.try_write_all(&bytes);
                        return;
                    }
                    Reply::Silent => {
                        let _ = conn.read_to_end();
                        return;
                    }
                    Reply::Close => return,
                }
            }
        })
    }

    /// A WebSocket echo origin: answers the handshake (recorded like any request), then
    /// uses `tungstenite` to send every text or binary message back and to answer Close.
    pub fn ws_echo() -> Origin {
        Origin::scripted(|conn| {
            let Ok(Some(handshake)) = conn.read_request() else {
                return;
            };
            let Some(key) = handshake.head.get("sec-websocket-key").map(str::to_owned) else {
                return;
            };
            if conn
                .try_write_all(ws_accept_response(&key).as_bytes())
                .is_err()
            {
                return;
            }
            let stream = conn.stream().try_clone().expect("clone the origin stream");
            let mut ws = WebSocket::from_partially_read(
                stream,
                conn.take_buffered(),
                Role::Server,
                Some(ws_config()),
            );
            loop {
                match ws.read() {
                    Ok(message @ (WsMessage::Text(_) | WsMessage::Binary(_))) => {
                        if ws.send(message).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        })
    }

    /// A WebSocket origin that answers the handshake (recorded like any request) with a
    /// `101` carrying `extra` header lines (each ending in CRLF), then runs `script` on the
    /// connection, which holds whatever the proxy sent after the handshake.
    pub fn ws_scripted<F>(extra: &'static str, script: F) -> Origin
    where
        F: Fn(&mut Conn) + Send + Sync + 'static,
    {
        Origin::scripted(move |conn| {
            let Ok(Some(handshake)) = conn.read_request() else {
                return;
            };
            let Some(key) = handshake.head.get("sec-websocket-key").map(str::to_owned) else {
                return;
            };
            if conn
                .try_write_all(ws_accept_response_with(&key, extra).as_bytes())
                .is_ok()
            {
                script(conn);
            }
        })
    }

    /// The address the origin listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections the origin has accepted.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// How many connections have ended: their script returned and the proxy closed its
    /// side.
    pub fn ended(&self) -> usize {
        self.ended.load(Ordering::SeqCst)
    }

    /// Everything received so far, one entry per accepted connection, in accept order.
    pub fn received(&self) -> Vec<Vec<u8>> {
        let connections = self.connections.lock().unwrap();
        connections
            .iter()
            .map(|recording| recording.lock().unwrap().clone())
            .collect()
    }

    /// Every request read so far with [`Conn::read_request`] (by [`Origin::http`], by the
    /// handshake of [`Origin::ws_echo`], or by a script), in the order they were completed.
    pub fn requests(&self) -> Vec<Message> {
        self.requests.lock().unwrap().clone()
    }

    /// The WebSocket frames received so far on the first connection, after its handshake
    /// (for origins whose scripts read through their [`Conn`]); panics unless they are
    /// whole frames.
    pub fn ws_frames(&self) -> Vec<Frame> {
        let handshake = self.requests().first().expect("a handshake").raw();
        let received = self.received().swap_remove(0);
        let after = received
            .strip_prefix(&handshake[..])
            .expect("the connection starts with the handshake");
        let (frames, rest) = parse_frames(after);
        assert!(
            rest.is_empty(),
            "the origin received {} bytes that are not a whole frame after {} frames: {:02x?}",
            rest.len(),
            frames.len(),
            &rest[..rest.len().min(32)]
        );
        frames
    }

    /// Everything received so far on all connections, concatenated in accept order.
    pub fn received_all(&self) -> Vec<u8> {
        self.received().concat()
    }
}

fn serve(mut conn: Conn, script: &(dyn Fn(&mut Conn) + Send + Sync)) {
    script(&mut conn);
    let _ = conn.stream().shutdown(std::net::Shutdown::Write);
    let _ = conn.read_to_end();
}
