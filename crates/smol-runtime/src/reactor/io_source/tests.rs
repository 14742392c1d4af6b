//! The readiness rules of registered sockets, against real loopback sockets and
//! synthetic events.

use super::*;
use crate::reactor::{block_on, split_event_data};
use crate::test_support::Wakes;
use std::sync::Arc;
use std::task::Waker;

/// A connected pair: the registered side (non-blocking) and its plain peer.
/// A connected pair whose near end is non-blocking, as registered sockets are.
fn pair() -> (TcpStream, TcpStream) {
    let (near, far) = crate::test_support::tcp_pair();
    near.set_nonblocking(true).unwrap();
    (near, far)
}

fn slot_state(io: &Io<TcpStream>) -> (bool, bool, bool, bool) {
    io.with_slot(|slot| {
        (
            slot.readable,
            slot.writable,
            slot.hup != Hup::Open,
            slot.urgent,
        )
    })
}

/// Reads until `WouldBlock`, waiting for readability first.
async fn read_available(io: &Io<TcpStream>) -> Vec<u8> {
    io.readable().await;
    let mut received = Vec::new();
    loop {
        let mut buffer = [0u8; 64];
        match io.read(&mut buffer) {
            Ok(0) => return received,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return received,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn a_stream_reads_what_its_peer_wrote_and_writes_back() {
    let (near, mut far) = pair();
    let peer = std::thread::spawn(move || {
        far.write_all(b"hello").unwrap();
        let mut echo = [0u8; 3];
        far.read_exact(&mut echo).unwrap();
        echo
    });
    let got = block_on(async {
        let io = Io::stream(near, false).unwrap();
        let mut received = Vec::new();
        while received.len() < 5 {
            received.extend(read_available(&io).await);
        }
        io.writable().await;
        let written = io.write_vectored(&[IoSlice::new(b"a"), IoSlice::new(b"ck")]);
        assert_eq!(written.unwrap(), 3);
        received
    })
    .unwrap();
    assert_eq!(got, b"hello");
    assert_eq!(&peer.join().unwrap(), b"ack");
}

#[test]
fn connect_to_a_closed_port_fails() {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let result = block_on(Io::connect(addr, None)).unwrap();
    assert!(result.is_err());
}

#[test]
fn a_short_read_or_would_block_waits_for_the_next_event() {
    let (near, mut far) = pair();
    block_on(async {
        let io = Io::stream(near, true).unwrap();
        let mut buffer = [0u8; 64];
        let error = io.read(&mut buffer).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
        assert!(!io.may_be_readable(), "WouldBlock: drained");
        far.write_all(b"abc").unwrap();
        io.readable().await;
        assert_eq!(io.read(&mut buffer).unwrap(), 3);
        assert!(!io.may_be_readable(), "a short read: drained");
        // A read that fills the buffer says nothing: more may be queued.
        far.write_all(b"abcd").unwrap();
        io.readable().await;
        assert_eq!(io.read(&mut buffer[..4]).unwrap(), 4);
        assert!(io.may_be_readable());
    })
    .unwrap();
}

/// An event carries the slot and its generation: once a socket is closed and its
/// slot serves a new one, a late event for the old socket (already taken from the
/// kernel in the same `epoll_wait`) must not mark the new one ready or wake its task.
#[test]
fn an_event_for_a_freed_slots_old_socket_is_ignored() {
    block_on(async {
        let (first, _first_peer) = pair();
        let old = Io::stream(first, false).unwrap();
        let (index, generation) = (old.index, old.with_slot(|slot| slot.generation));
        let reactor = old.reactor.clone();
        drop(old);
        let (second, _second_peer) = pair();
        let new = Io::stream(second, false).unwrap();
        assert_eq!(new.index, index, "the freed slot serves the new socket");
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        assert!(new
            .poll_readable(&mut Context::from_waker(&waker))
            .is_pending());

        use epoll::EventFlags as F;
        let stale = event_data(index, generation);
        reactor.ready(stale, F::IN | F::OUT | F::RDHUP | F::PRI | F::HUP | F::ERR);
        assert!(!slot_state(&new).0, "not readable");
        assert!(!slot_state(&new).2, "not hung up");
        assert!(!slot_state(&new).3, "no urgent data");
        assert_eq!(wakes.count(), 0, "its task was not woken");

        let current = event_data(index, new.with_slot(|slot| slot.generation));
        assert_eq!(
            split_event_data(current),
            (index, generation.wrapping_add(1))
        );
        reactor.ready(current, F::IN);
        assert!(new.may_be_readable());
        assert_eq!(wakes.count(), 1);
    })
    .unwrap();
}

/// After the peer's FIN, a read that returns less than asked for does not drain the
/// socket: the EOF is still to be read, and no further event will announce it.
#[test]
fn after_a_fin_a_short_read_leaves_the_socket_readable_until_eof() {
    let (near, mut far) = pair();
    far.write_all(b"abc").unwrap();
    far.shutdown(Shutdown::Write).unwrap();
    block_on(async {
        let io = Io::stream(near, false).unwrap();
        io.readable().await;
        assert!(slot_state(&io).2, "the FIN (EPOLLRDHUP) was recorded");
        assert!(!io.eof_next(), "bytes are queued before the EOF");
        let mut buffer = [0u8; 64];
        assert_eq!(io.read(&mut buffer).unwrap(), 3);
        assert!(io.may_be_readable(), "still readable: the EOF waits");
        assert!(io.eof_next(), "the short read took all before the FIN");
        assert_eq!(io.read(&mut buffer).unwrap(), 0, "EOF");
        assert!(io.may_be_readable(), "an EOF reads again without waiting");
        assert_eq!(io.read(&mut buffer).unwrap(), 0, "and again");
    })
    .unwrap();
}

/// After the FIN, a read that fills its buffer proves nothing: more may be queued.
#[test]
fn after_a_fin_a_full_read_still_asks_the_kernel() {
    let (near, mut far) = pair();
    far.write_all(b"abcdef").unwrap();
    far.shutdown(Shutdown::Write).unwrap();
    block_on(async {
        let io = Io::stream(near, false).unwrap();
        io.readable().await;
        let mut buffer = [0u8; 3];
        assert_eq!(io.read(&mut buffer).unwrap(), 3);
        assert!(!io.eof_next(), "a full read");
        assert_eq!(io.read(&mut buffer).unwrap(), 3);
        assert_eq!(&buffer, b"def");
        assert_eq!(io.read(&mut buffer).unwrap(), 0, "EOF from the kernel");
    })
    .unwrap();
}

/// A hang-up or an error (a reset, a failed connect) ends every wait on the socket:
/// both directions are ready, so the task's next read or write reports it.
#[test]
fn a_hang_up_wakes_the_task_waiting_to_read_and_write() {
    block_on(async {
        let (near, _far) = pair();
        let io = Io::stream(near, false).unwrap();
        io.with_slot(|slot| slot.writable = false);
        let task = Arc::new(Wakes::default());
        let waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(io.poll_readable(&mut cx).is_pending());
        assert!(io.poll_writable(&mut cx).is_pending());
        let generation = io.with_slot(|slot| slot.generation);
        io.reactor.ready(
            event_data(io.index, generation),
            epoll::EventFlags::HUP | epoll::EventFlags::ERR,
        );
        assert_eq!(slot_state(&io), (true, true, true, false));
        assert_eq!(task.count(), 1, "woken once");
        assert!(io.poll_readable(&mut cx).is_ready());
        assert!(io.poll_writable(&mut cx).is_ready());
        // Hung up: a short read does not make the task wait for an event that will
        // never come.
        io.note_read(Ok(3), 64);
        assert!(io.may_be_readable());
    })
    .unwrap();
}

/// One waker per socket, with what its task waits for: bytes arriving on a socket whose
/// task waits only to write (a full send buffer, the other direction held back) do not
/// wake it, and room to write wakes it; the readiness is recorded either way.
#[test]
fn an_event_wakes_the_task_only_for_what_it_waits_for() {
    use epoll::EventFlags as F;
    block_on(async {
        let (near, _far) = pair();
        let io = Io::stream(near, false).unwrap();
        io.with_slot(|slot| slot.writable = false);
        let task = Arc::new(Wakes::default());
        let waker = Waker::from(task.clone());
        assert!(io
            .poll_writable(&mut Context::from_waker(&waker))
            .is_pending());
        let data = event_data(io.index, io.with_slot(|slot| slot.generation));
        io.reactor.ready(data, F::IN);
        assert_eq!(task.count(), 0, "it does not wait to read");
        assert!(io.may_be_readable(), "but the bytes are recorded");
        io.reactor.ready(data, F::OUT);
        assert_eq!(task.count(), 1);
        io.reactor.ready(data, F::OUT);
        assert_eq!(task.count(), 1, "woken once: it polls again to wait again");
        // Handed to another task: the first one is forgotten, and what it waited for.
        io.with_slot(|slot| slot.writable = false);
        assert!(io
            .poll_writable(&mut Context::from_waker(&waker))
            .is_pending());
        let other = Arc::new(Wakes::default());
        let other_waker = Waker::from(other.clone());
        io.forget_wakers();
        io.with_slot(|slot| slot.readable = false);
        assert!(io
            .poll_readable(&mut Context::from_waker(&other_waker))
            .is_pending());
        io.reactor.ready(data, F::OUT);
        assert_eq!((task.count(), other.count()), (1, 0));
        io.reactor.ready(data, F::IN);
        assert_eq!((task.count(), other.count()), (1, 1));
    })
    .unwrap();
}

/// Urgent (out-of-band) data: a read stops short at the urgent mark with bytes queued
/// behind it, so a short read proves nothing until `WouldBlock` clears the state.
#[test]
fn urgent_data_keeps_the_socket_readable_until_would_block() {
    use rustix::net::{send, SendFlags};
    let (near, far) = pair();
    send(&far, b"ab", SendFlags::empty()).unwrap();
    send(&far, b"!", SendFlags::OOB).unwrap();
    send(&far, b"cd", SendFlags::empty()).unwrap();
    block_on(async {
        let io = Io::stream(near, false).unwrap();
        io.readable().await;
        assert!(slot_state(&io).3, "EPOLLPRI was recorded");
        let mut buffer = [0u8; 64];
        assert_eq!(io.read(&mut buffer).unwrap(), 2, "stops at the mark");
        assert!(
            io.may_be_readable(),
            "a short read at the mark drains nothing"
        );
        let mut received = buffer[..2].to_vec();
        received.extend(read_available(&io).await);
        // The urgent byte is not inline (no SO_OOBINLINE).
        assert_eq!(received, b"abcd");
        assert!(!slot_state(&io).0, "WouldBlock: drained");
        assert!(!slot_state(&io).3, "and the urgent state is over");
    })
    .unwrap();
}

#[test]
fn a_short_or_refused_write_waits_for_writability() {
    let (near, _far) = pair();
    block_on(async {
        let io = Io::stream(near, false).unwrap();
        io.note_write(Ok(10), 10);
        assert!(
            io.with_slot(|slot| slot.writable),
            "all taken: still writable"
        );
        io.note_write(Ok(4), 10);
        assert!(!io.with_slot(|slot| slot.writable), "a short write: full");
        io.with_slot(|slot| slot.writable = true);
        io.note_write(Err(&io::ErrorKind::WouldBlock.into()), 10);
        assert!(!io.with_slot(|slot| slot.writable), "WouldBlock: full");
    })
    .unwrap();
}

/// The epoll entries of `reactor` that report an event now.
fn pending_events(reactor: &Reactor) -> usize {
    let mut events = Vec::with_capacity(8);
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    epoll::wait(
        &reactor.epoll,
        rustix::buffer::spare_capacity(&mut events),
        Some(&zero),
    )
    .unwrap();
    events.len()
}

#[test]
fn a_dropped_listener_stops_reporting_connections_another_descriptor_still_takes() {
    block_on(async {
        let kept = crate::sockets::listen_on("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = kept.local_addr().unwrap();
        let io = Io::listener(kept.try_clone().unwrap()).unwrap();
        let reactor = io.reactor.clone();
        let first = std::net::TcpStream::connect(addr).unwrap();
        assert_eq!(
            pending_events(&reactor),
            1,
            "registered: the connection is reported"
        );
        drop(io);
        let second = std::net::TcpStream::connect(addr).unwrap();
        assert_eq!(
            pending_events(&reactor),
            0,
            "dropped, while `kept` holds the socket open: nothing reported here"
        );
        drop((first, second, kept));
    })
    .unwrap();
}
