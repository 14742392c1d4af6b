//! The handover conversation, against fake peers and between two real ends.

use super::*;
use crate::sockets;

fn temporary_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-handover-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = fs::remove_file(&path);
    path
}

/// A fake "running process" at `path` that answers the hello with `answer`.
fn fake_old(
    path: &Path,
    answer: impl FnOnce(&UnixStream) + Send + 'static,
) -> thread::JoinHandle<()> {
    let listener = UnixListener::bind(path).unwrap();
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        expect(&stream, Kind::Hello).unwrap();
        answer(&stream);
    })
}

#[test]
fn no_running_process_means_no_takeover_and_a_stale_file_is_replaced() {
    let path = temporary_path("none.sock");
    assert!(Takeover::ask(&path).unwrap().is_none(), "no file");
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists(), "a socket file nobody listens on");
    assert!(Takeover::ask(&path).unwrap().is_none(), "stale file");
    let socket = UpgradeSocket::bind(&path).unwrap();
    let service = socket
        .serve(Offered::default(), Arc::default(), Arc::default())
        .unwrap();
    assert!(UnixStream::connect(&path).is_ok(), "served at the path");
    service.stop();
    assert!(!path.exists(), "removed at the end");
}

#[test]
fn the_sockets_and_their_queued_connections_are_handed_over() {
    let path = temporary_path("handover.sock");
    let old = sockets::bind(&["127.0.0.1:0".parse().unwrap()], 2, Vec::new()).unwrap();
    let addr = old.local_addrs[0];
    let duplicates: Vec<OwnedFd> = old
        .per_worker
        .iter()
        .flatten()
        .map(|l| l.try_clone().unwrap().into())
        .collect();
    let shutdown = Arc::new(Signal::default());
    let service = UpgradeSocket::bind(&path)
        .unwrap()
        .serve(Offered::new(duplicates), Arc::default(), shutdown.clone())
        .unwrap();
    let queued = std::net::TcpStream::connect(addr).unwrap();

    let mut new = UpgradeSocket::bind(&path).unwrap();
    let inherited = new.take_inherited();
    assert_eq!(inherited.len(), 2);
    assert!(inherited.iter().all(|(bound, _)| *bound == addr));
    assert!(!shutdown.is_set(), "the old process serves until told");
    // The old process closes its own sockets; the queue lives on in the new one.
    drop(old);
    let accepted = inherited.iter().find_map(|(_, socket)| {
        socket.set_nonblocking(true).unwrap();
        socket.accept().ok()
    });
    let (_, peer) = accepted.expect("the queued connection");
    assert_eq!(peer, queued.local_addr().unwrap());

    let successor = new
        .serve(Offered::default(), Arc::default(), Arc::default())
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !shutdown.is_set() {
        assert!(
            std::time::Instant::now() < deadline,
            "the old process was not told"
        );
        thread::yield_now();
    }
    service.stop();
    assert!(
        path.exists(),
        "the old process leaves the successor's socket alone"
    );
    successor.stop();
    assert!(!path.exists());
}

#[test]
fn a_peer_that_is_not_switchyard_gets_a_clear_error() {
    let path = temporary_path("garbage.sock");
    let old = fake_old(&path, |stream| {
        use std::io::Write;
        let mut stream = stream;
        stream.write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
    });
    let error = Takeover::ask(&path).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    assert!(
        error.to_string().contains("not a switchyard record"),
        "{error}"
    );
    old.join().unwrap();
}

#[test]
fn a_count_that_does_not_match_the_descriptors_is_refused() {
    let path = temporary_path("count.sock");
    let old = fake_old(&path, |stream| {
        let listener = sockets::listen_on("127.0.0.1:0".parse().unwrap()).unwrap();
        send(stream, Kind::Listeners, 2, &[listener.as_fd()]).unwrap();
    });
    let error = Takeover::ask(&path).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("2 sockets announced, 1 received"),
        "{error}"
    );
    old.join().unwrap();
}

#[test]
fn a_descriptor_that_is_not_a_listening_socket_is_refused() {
    let path = temporary_path("notlistening.sock");
    let old = fake_old(&path, |stream| {
        let (a, _b) = UnixStream::pair().unwrap();
        send(stream, Kind::Listeners, 1, &[a.as_fd()]).unwrap();
    });
    let error = Takeover::ask(&path).unwrap_err();
    assert!(
        error.to_string().contains("not a listening TCP socket"),
        "{error}"
    );
    old.join().unwrap();
}

#[test]
fn a_successor_that_goes_away_before_ready_leaves_the_old_process_serving() {
    let path = temporary_path("gone.sock");
    let old = sockets::bind(&["127.0.0.1:0".parse().unwrap()], 1, Vec::new()).unwrap();
    let duplicates = vec![OwnedFd::from(old.per_worker[0][0].try_clone().unwrap())];
    let shutdown = Arc::new(Signal::default());
    let service = UpgradeSocket::bind(&path)
        .unwrap()
        .serve(Offered::new(duplicates), Arc::default(), shutdown.clone())
        .unwrap();
    let takeover = Takeover::ask(&path).unwrap().unwrap();
    assert_eq!(takeover.listeners.len(), 1);
    drop(takeover);
    // The old process answers the next successor: it is still serving.
    let again = Takeover::ask(&path).unwrap().unwrap();
    assert_eq!(again.listeners.len(), 1);
    assert!(!shutdown.is_set());
    drop(again);
    service.stop();
}

#[test]
fn stopping_lets_go_of_the_offered_sockets_so_closing_a_listener_closes_it() {
    let path = temporary_path("stop.sock");
    let listener = sockets::listen_on("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let offered = Offered::new(vec![listener.try_clone().unwrap().into()]);
    let service = UpgradeSocket::bind(&path)
        .unwrap()
        .serve(offered, Arc::default(), Arc::default())
        .unwrap();
    service.stop();
    drop(listener);
    let refused = std::net::TcpStream::connect(addr).unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
}
