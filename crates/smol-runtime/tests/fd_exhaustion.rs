//! Running out of file descriptors makes `accept` fail (EMFILE); the server must pause
//! and keep serving, not stop. Its own test binary, because it lowers this process's
//! open-file limit. Linux only: it counts open descriptors in `/proc/self/fd`.
#![cfg(target_os = "linux")]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use switchyard_smol::{spawn, ServerConfig};

const LIMIT: Duration = Duration::from_secs(5);

fn origin() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" {
                        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        if writer.write_all(answer).is_err() {
                            return;
                        }
                    }
                    line.clear();
                }
            });
        }
    });
    addr
}

fn open_files() -> u64 {
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

fn get(proxy: std::net::SocketAddr) -> String {
    let mut client = TcpStream::connect(proxy).unwrap();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn accept_survives_running_out_of_file_descriptors() {
    let mut config = ServerConfig::simple("127.0.0.1:0".parse().unwrap(), origin());
    config.workers = 1;
    let (addrs, handle, server) = spawn(config).unwrap();
    let proxy = addrs[0];
    assert!(get(proxy).ends_with("ok"));

    // Fill the descriptor table but for one slot, and let a client take it: the proxy
    // cannot accept that client (EMFILE) until descriptors are freed.
    let original = getrlimit(Resource::Nofile);
    let tight = Rlimit {
        current: Some(open_files() + 16),
        maximum: original.maximum,
    };
    setrlimit(Resource::Nofile, tight).unwrap();
    let mut filler = Vec::new();
    while let Ok(file) = File::open("/dev/null") {
        filler.push(file);
        assert!(filler.len() < 1000, "the limit did not bite");
    }
    filler.pop();
    let mut client = TcpStream::connect(proxy).unwrap();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();

    // Once descriptors are free again, the paused accept loop picks the client up.
    drop(filler);
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    setrlimit(Resource::Nofile, original).unwrap();
    handle.shutdown();
    server.join().unwrap().unwrap();
}
