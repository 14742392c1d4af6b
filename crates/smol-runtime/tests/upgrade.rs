//! Two servers in one process handing the listening sockets over
//! (`ServerConfig::upgrade_socket`), on 127.0.0.1, every wait bounded. The binary's
//! test (`crates/cli/tests/upgrade.rs`) does it across processes under load.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use switchyard_smol::{Server, ServerConfig};

const LIMIT: Duration = Duration::from_secs(10);

/// An origin answering every request with `ok` and closing.
fn origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            });
        }
    });
    addr
}

fn get(proxy: SocketAddr) -> String {
    let mut stream = TcpStream::connect(proxy).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn config(listen: SocketAddr, origin: SocketAddr, workers: usize, socket: &Path) -> ServerConfig {
    let mut config = ServerConfig::simple(listen, origin);
    config.workers = workers;
    config.shutdown_grace = Duration::from_secs(1);
    config.upgrade_socket = Some(socket.to_owned());
    config
}

/// Runs `server` on a thread; the receiver hears when `run` returned.
fn run(server: Server) -> mpsc::Receiver<std::io::Result<()>> {
    let (done, finished) = mpsc::channel();
    thread::spawn(move || {
        let _ = done.send(server.run());
    });
    finished
}

#[test]
fn a_server_bound_on_the_upgrade_socket_takes_the_sockets_and_the_old_one_drains() {
    let origin = origin();
    let dir = std::env::temp_dir().join(format!("switchyard-smol-upgrade-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("upgrade.sock");

    let old = Server::bind(config("127.0.0.1:0".parse().unwrap(), origin, 2, &socket)).unwrap();
    let addr = old.local_addrs()[0];
    let old_done = run(old);
    assert!(get(addr).ends_with("\r\n\r\nok"));

    // Bound: the old server's two sockets, and the new one's first worker's is one of
    // them; the old server still serves until the new one runs.
    let new = Server::bind(config(addr, origin, 3, &socket)).unwrap();
    assert_eq!(new.local_addrs(), vec![addr]);
    assert!(get(addr).ends_with("\r\n\r\nok"));
    assert!(
        old_done.recv_timeout(Duration::from_millis(200)).is_err(),
        "the old server stopped before the new one ran"
    );
    let stop_new = new.shutdown_handle();
    let new_done = run(new);
    old_done
        .recv_timeout(LIMIT)
        .expect("the old server drained once the new one ran")
        .unwrap();
    for _ in 0..20 {
        assert!(get(addr).ends_with("\r\n\r\nok"));
    }
    stop_new.shutdown();
    new_done.recv_timeout(LIMIT).unwrap().unwrap();
    assert!(
        !socket.exists(),
        "the last server removed its upgrade socket"
    );
}

#[test]
fn after_a_reload_a_removed_listener_is_closed_and_an_added_one_is_handed_over() {
    let origin = origin();
    let dir = std::env::temp_dir().join(format!(
        "switchyard-smol-upgrade-reload-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("upgrade.sock");

    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let old = Server::bind(config(any, origin, 2, &socket)).unwrap();
    let first = old.local_addrs()[0];
    let reload = old.reload_handle();
    let old_done = run(old);
    assert!(get(first).ends_with("\r\n\r\nok"));

    // A second address (a free port: a port 0 would name the first listener again),
    // then the first one removed.
    let free = TcpListener::bind(any).unwrap().local_addr().unwrap();
    let mut both = config(first, origin, 2, &socket);
    both.listen.push(free);
    let added = reload.reload(both).unwrap().listeners_added;
    assert_eq!(added.len(), 1);
    let second = added[0];
    assert!(get(second).ends_with("\r\n\r\nok"));
    let report = reload.reload(config(second, origin, 2, &socket)).unwrap();
    assert_eq!(report.listeners_removed, [first]);
    // Closed for good: no duplicate kept for a successor holds it open. The workers stop
    // their accept loops through their inboxes, so this may take a moment.
    let refused = (0..200).any(|_| {
        let refused = TcpStream::connect(first).is_err();
        if !refused {
            thread::sleep(Duration::from_millis(10));
        }
        refused
    });
    assert!(refused, "the removed listener still accepts connections");

    // A successor takes the address the reload added over, and the old server drains.
    let new = Server::bind(config(second, origin, 1, &socket)).unwrap();
    assert_eq!(new.local_addrs(), vec![second]);
    let stop_new = new.shutdown_handle();
    let new_done = run(new);
    old_done
        .recv_timeout(LIMIT)
        .expect("the old server drained once the new one ran")
        .unwrap();
    for _ in 0..10 {
        assert!(get(second).ends_with("\r\n\r\nok"));
    }
    stop_new.shutdown();
    new_done.recv_timeout(LIMIT).unwrap().unwrap();
}
