//! The event sink: a sink set in `ServerConfig::events` receives every event of a
//! proxied request and of a tunnel, with the worker and the client's address. Real
//! sockets on 127.0.0.1; every read is bounded by a timeout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use switchyard_core::{CloseReason, Event};
use switchyard_smol::{spawn, EventContext, EventSink, ServerConfig};

const LIMIT: Duration = Duration::from_secs(5);
const WORKERS: usize = 2;

/// Keeps every event, and the worker count it was started with.
#[derive(Debug, Default)]
struct Collect {
    workers: Mutex<Option<usize>>,
    events: Mutex<Vec<(EventContext, Event)>>,
}

impl EventSink for Collect {
    fn start(&self, workers: usize) {
        *self.workers.lock().unwrap() = Some(workers);
    }

    fn event(&self, context: &EventContext, event: &Event) {
        self.events.lock().unwrap().push((*context, event.clone()));
    }
}

impl Collect {
    /// The events of the connection from `client`, in order; each came from one worker.
    fn of(&self, client: SocketAddr) -> Vec<Event> {
        let events = self.events.lock().unwrap();
        let mine: Vec<&(EventContext, Event)> =
            events.iter().filter(|(c, _)| c.client == client).collect();
        let worker = mine.first().expect("events of the connection").0.worker;
        assert!(worker < WORKERS, "worker {worker} of {WORKERS}");
        assert!(mine.iter().all(|(c, _)| c.worker == worker), "one worker");
        mine.into_iter().map(|(_, event)| event.clone()).collect()
    }
}

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

/// Answers `GET /` with `ok`, and an `echo` upgrade with a 101 and an echo until EOF.
fn origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            thread::spawn(move || {
                stream.set_read_timeout(Some(LIMIT)).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                let head = read_head(&mut reader);
                if !head.to_ascii_lowercase().contains("upgrade: echo") {
                    let _ = writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                    return;
                }
                let switched = "HTTP/1.1 101 Switching Protocols\r\n\
                                Upgrade: echo\r\nConnection: Upgrade\r\n\r\n";
                writer.write_all(switched.as_bytes()).unwrap();
                let mut chunk = [0u8; 1024];
                loop {
                    match reader.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => writer.write_all(&chunk[..n]).unwrap(),
                    }
                }
            });
        }
    });
    addr
}

fn connect(proxy: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(proxy).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream
}

#[test]
fn a_custom_sink_receives_the_events_of_a_request_and_of_a_tunnel() {
    let sink = Arc::new(Collect::default());
    let mut config = ServerConfig::simple("127.0.0.1:0".parse().unwrap(), origin());
    config.core.routes[0].allow_upgrade = vec!["echo".into()];
    config.workers = WORKERS;
    config.events = sink.clone();
    let (addrs, handle, server) = spawn(config).unwrap();

    let mut request = connect(addrs[0]);
    request
        .write_all(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    request.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");

    let tunnel = connect(addrs[0]);
    let mut reader = BufReader::new(tunnel.try_clone().unwrap());
    let mut writer = tunnel;
    writer
        .write_all(b"GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
        .unwrap();
    assert!(read_head(&mut reader).starts_with("HTTP/1.1 101"));
    writer.write_all(b"ping").unwrap();
    let mut echo = [0u8; 4];
    reader.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"ping");
    writer.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "the echo ends with the origin's EOF");

    // Once the server has stopped, every connection has finished: all events are in.
    handle.shutdown();
    server.join().unwrap().unwrap();
    assert_eq!(*sink.workers.lock().unwrap(), Some(WORKERS));

    let events = sink.of(request.local_addr().unwrap());
    assert!(
        matches!(
            &events[..],
            [
                Event::Request { method, target, route: 0, upgrade: None },
                Event::Response { status: 200 },
                Event::Exchange(record),
                ..,
            ] if method == "GET" && target == "/hello" && record.status == 200
                && record.bytes_to_client > 0
        ),
        "{events:#?}"
    );

    let events = sink.of(writer.local_addr().unwrap());
    let opened = events
        .iter()
        .position(|event| matches!(event, Event::TunnelOpened { route: 0, protocol } if protocol == "echo"))
        .unwrap_or_else(|| panic!("no TunnelOpened: {events:#?}"));
    assert!(
        matches!(
            &events[0],
            Event::Request { target, upgrade: Some(upgrade), .. }
                if target == "/chat" && upgrade == "echo"
        ),
        "{events:#?}"
    );
    let closed = events[opened..].iter().find_map(|event| match event {
        Event::TunnelClosed(record) => Some(record),
        _ => None,
    });
    let closed = closed.unwrap_or_else(|| panic!("no TunnelClosed: {events:#?}"));
    assert_eq!(closed.target, "/chat");
    assert_eq!(closed.protocol, "echo");
    assert_eq!(closed.bytes_client_to_upstream, 4);
    assert_eq!(closed.bytes_upstream_to_client, 4);
    assert!(
        matches!(
            closed.reason,
            CloseReason::ClientClosed | CloseReason::UpstreamClosed | CloseReason::BothClosed
        ),
        "{:?}",
        closed.reason
    );
}
