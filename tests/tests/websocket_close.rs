//! How frame-aware tunnels end, against raw peers: a graceful shutdown sends Close 1001
//! both ways at the end of `shutdown_grace` (unmasked to the client, masked to the
//! upstream) and closes once the peers answer or a second later; a peer that leaves
//! without a Close frame gets the other side a Close 1001 instead of a bare TCP close,
//! and an upstream that got it closes the TCP connection first.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use switchyard_e2e::{
    opcode, wait_until, ws_connect_raw, Events, Frame, Origin, Proxy, RawPeer, IO_TIMEOUT,
};

const GRACE: Duration = Duration::from_millis(300);
/// After its own Close frames the proxy waits this long for the peers' (or their EOF).
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// How much earlier than its deadline the server may act (timer granularity), as in
/// `shutdown.rs`.
const EARLY: Duration = Duration::from_millis(50);
/// What a loaded machine may add to a deadline before the test calls it late.
const SLACK: Duration = Duration::from_millis(1500);

fn assert_close_1001(frame: Option<&Frame>, masked: bool, towards: &str) {
    let frame = frame.unwrap_or_else(|| panic!("no Close towards the {towards}"));
    assert_eq!(
        (frame.opcode, frame.close_code()),
        (opcode::CLOSE, Some(1001)),
        "towards the {towards}: {frame:?}"
    );
    assert_eq!(
        frame.mask.is_some(),
        masked,
        "MASK of the Close towards the {towards}"
    );
}

/// Opens a tunnel through a proxy with [`GRACE`], proves it works, shuts the proxy down
/// and checks both sides got the proxy's Close 1001 after the grace period. Peers that
/// `answer` reply with their own Close; the others just read on. Returns when each
/// connection ended, counted from the start of the shutdown.
fn drain(answer: bool) -> (Duration, Duration) {
    let events = Events::default();
    // Each frame the upstream reads, then `None` at its EOF, with when it came.
    let (frames_tx, frames_rx) = mpsc::channel::<(Option<Frame>, Instant)>();
    let origin = Origin::ws_scripted("", move |conn| {
        let mut peer = RawPeer::server(conn);
        let mut report = |frame: &Frame| {
            let _ = frames_tx.send((Some(frame.clone()), Instant::now()));
        };
        if answer {
            let _ = peer.serve_until_close(false, &mut report);
        }
        while let Ok(Some(frame)) = peer.next_frame() {
            report(&frame);
        }
        let _ = frames_tx.send((None, Instant::now()));
    });
    let mut proxy = Proxy::start_with(origin.addr(), |config| {
        config.shutdown_grace = GRACE;
        events.install(config);
    });
    let (mut client, _) = ws_connect_raw(proxy.addr(), "");
    let mut peer = RawPeer::client(&mut client);
    peer.send(opcode::TEXT, b"before the drain");
    let (first, _) = frames_rx
        .recv_timeout(IO_TIMEOUT)
        .expect("a frame upstream");
    assert_eq!(first.expect("a frame").payload, b"before the drain");

    let started = Instant::now();
    proxy.begin_shutdown();
    let close = peer.next_non_ping().expect("read").expect("a Close");
    let closed_after = started.elapsed();
    assert_close_1001(Some(&close), false, "client");
    assert!(
        closed_after >= GRACE - EARLY,
        "the client got the Close after {closed_after:?}, grace {GRACE:?}"
    );
    if answer {
        peer.send_close(1001, "");
    }
    assert_eq!(
        peer.next_non_ping().expect("read"),
        None,
        "the client got more after the proxy's Close"
    );
    let client_ended = started.elapsed();

    let (close, at) = frames_rx
        .recv_timeout(IO_TIMEOUT)
        .expect("a Close upstream");
    assert_close_1001(close.as_ref(), true, "upstream");
    assert!(
        at - started >= GRACE - EARLY,
        "the upstream got the Close after {:?}, grace {GRACE:?}",
        at - started
    );
    let (eof, at) = frames_rx
        .recv_timeout(IO_TIMEOUT)
        .expect("the upstream's EOF");
    assert_eq!(eof, None, "the upstream got more after the proxy's Close");
    let upstream_ended = at - started;

    let took = proxy.shutdown().expect("the server to stop");
    assert!(
        took < GRACE + CLOSE_WAIT + SLACK,
        "the server took {took:?} to stop"
    );
    let record = events.wait_for_tunnel_record(IO_TIMEOUT);
    assert_eq!(record.reason.as_str(), "shutdown");
    (client_ended, upstream_ended)
}

#[test]
fn drain_sends_close_1001_both_ways_and_closes_as_soon_as_the_peers_answer() {
    let (client_ended, upstream_ended) = drain(true);
    for (side, ended) in [("client", client_ended), ("upstream", upstream_ended)] {
        assert!(
            ended < GRACE + CLOSE_WAIT,
            "the {side} connection ended {ended:?} into the shutdown, though both peers \
             answered the proxy's Close"
        );
    }
}

#[test]
fn drain_closes_a_tunnel_whose_peers_never_answer_one_second_after_its_close_frames() {
    let (client_ended, upstream_ended) = drain(false);
    for (side, ended) in [("client", client_ended), ("upstream", upstream_ended)] {
        assert!(
            ended >= GRACE + CLOSE_WAIT - EARLY,
            "the {side} connection ended {ended:?} into the shutdown: the peers had less \
             than {CLOSE_WAIT:?} to answer the proxy's Close"
        );
        assert!(
            ended < GRACE + CLOSE_WAIT + SLACK,
            "the {side} connection ended only {ended:?} into the shutdown"
        );
    }
}

#[test]
fn client_that_leaves_without_a_close_frame_gets_the_upstream_close_1001() {
    let (frames_tx, frames_rx) = mpsc::channel::<Frame>();
    let origin = Origin::ws_scripted("", move |conn| {
        let _ = RawPeer::server(conn).serve_until_close(false, |frame| {
            let _ = frames_tx.send(frame.clone());
        });
    });
    let proxy = Proxy::start(origin.addr());
    let (mut client, _) = ws_connect_raw(proxy.addr(), "");
    RawPeer::client(&mut client).send(opcode::TEXT, b"last words");
    client.shutdown_write();
    let started = Instant::now();

    let words = frames_rx
        .recv_timeout(IO_TIMEOUT)
        .expect("a frame upstream");
    assert_eq!(words.payload, b"last words");
    let close = frames_rx
        .recv_timeout(IO_TIMEOUT)
        .expect("a Close upstream");
    assert_close_1001(Some(&close), true, "upstream");
    // Whatever the upstream answers, the client's connection ends, in whole frames.
    while client
        .read_frame()
        .expect("whole frames until EOF")
        .is_some()
    {}
    assert!(
        started.elapsed() < CLOSE_WAIT + SLACK,
        "the client connection ended {:?} after its EOF",
        started.elapsed()
    );
}

/// How long the upstream watches for a FIN of the proxy's after its Close 1001: the
/// proxy's half-close, if any, follows the Close within microseconds.
const NO_FIN_WATCH: Duration = Duration::from_millis(300);

#[test]
fn after_the_close_1001_for_a_client_that_left_the_upstream_closes_first() {
    // What the upstream saw after the Close: an EOF (the proxy's FIN) or nothing.
    let (seen_tx, seen_rx) = mpsc::channel::<Result<Option<Frame>, std::io::ErrorKind>>();
    let origin = Origin::ws_scripted("", move |conn| {
        let mut peer = RawPeer::server(conn);
        while let Ok(Some(frame)) = peer.next_non_ping() {
            if frame.opcode == opcode::CLOSE {
                break;
            }
        }
        peer.conn()
            .stream()
            .set_read_timeout(Some(NO_FIN_WATCH))
            .unwrap();
        let seen = peer.next_frame().map_err(|e| e.kind());
        let _ = seen_tx.send(seen);
        // The server's answer, then its close: the first FIN is the upstream's.
        peer.send_close(1001, "");
    });
    let events = Events::default();
    let proxy = Proxy::start_with(origin.addr(), |config| events.install(config));
    let (mut client, _) = ws_connect_raw(proxy.addr(), "");
    client.shutdown_write();
    let seen = seen_rx
        .recv_timeout(IO_TIMEOUT)
        .expect("the upstream's report");
    assert!(
        matches!(
            seen,
            Err(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
        ),
        "the upstream, not the proxy, is to close first (RFC 6455 7.1.1): {seen:?}"
    );
    // Once the upstream closed, so does the proxy, at its EOF (both directions over),
    // not when its wait for the upstream runs out (that would be `client_closed`).
    while client
        .read_frame()
        .expect("whole frames until EOF")
        .is_some()
    {}
    let record = events.wait_for_tunnel_record(IO_TIMEOUT);
    assert_eq!(record.reason.as_str(), "both_closed");
}

#[test]
fn upstream_that_leaves_without_a_close_frame_gets_the_client_close_1001() {
    let origin = Origin::ws_scripted("", |conn| {
        // Then the script returns: the origin sends FIN without a Close frame.
        RawPeer::server(conn).send(opcode::TEXT, b"last words");
    });
    let proxy = Proxy::start(origin.addr());
    let (mut client, _) = ws_connect_raw(proxy.addr(), "");
    let mut peer = RawPeer::client(&mut client);
    let words = peer.next_non_ping().expect("read").expect("a frame");
    assert_eq!(words.payload, b"last words");
    let close = peer.next_non_ping().expect("read").expect("a Close");
    let started = Instant::now();
    assert_close_1001(Some(&close), false, "client");
    assert_eq!(peer.next_non_ping().expect("read"), None, "after the Close");
    drop(peer);
    client.shutdown_write();
    wait_until(CLOSE_WAIT + SLACK, "the tunnel to close", || {
        origin.ended() == 1
    });
    assert!(started.elapsed() < CLOSE_WAIT + SLACK);
}
