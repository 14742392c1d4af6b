//! A response body moved past the core (`response_body_passthrough`, then
//! `Input::ResponseBodyPassed`, as a driver that splices does) gives the client exactly
//! the bytes it gets when every byte is shown to the core, and ends the exchange the
//! same way; more than the passthrough is refused.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use proptest::prelude::*;
use switchyard_core::{Config, Connection, Input, Misuse, Output, PeerInfo, Side, StateKind};

/// What the client received, and each `ReleaseUpstream`'s `reusable`.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    client: Vec<u8>,
    released: Vec<bool>,
    state: StateKind,
}

struct Driver {
    conn: Connection,
    now: Instant,
    seen: Seen,
}

impl Driver {
    fn new(request: &[u8]) -> Driver {
        let now = Instant::now();
        let conn = Connection::new(Arc::new(Config::default()), PeerInfo::default(), now);
        let mut driver = Driver {
            conn,
            now,
            seen: Seen {
                client: Vec::new(),
                released: Vec::new(),
                state: StateKind::ReadingHead,
            },
        };
        driver.feed(Input::ClientData(BytesMut::from(request)));
        driver
    }

    fn feed(&mut self, input: Input) {
        self.conn
            .handle_input(input, self.now)
            .expect("a valid input");
        self.drain();
    }

    /// Performs the outputs; everything towards the client is written at once.
    fn drain(&mut self) {
        while let Some(output) = self.conn.poll_output() {
            match output {
                Output::Connect(_) => self
                    .conn
                    .handle_input(Input::UpstreamConnected { reused: false }, self.now)
                    .expect("connecting"),
                Output::ToClient(bytes) => {
                    self.seen.client.extend_from_slice(&bytes);
                    self.conn
                        .handle_input(Input::Flushed { to: Side::Client }, self.now)
                        .expect("flushed");
                }
                Output::ReleaseUpstream { reusable } => self.seen.released.push(reusable),
                _ => {}
            }
        }
        self.seen.state = self.conn.state();
    }

    /// The upstream's `read`: shown to the core, or, where `splice` says so and the
    /// passthrough allows, its first bytes moved past the core (at most `splice`).
    fn upstream_sends(&mut self, mut read: &[u8], splice: usize) {
        let budget = self.conn.response_body_passthrough();
        let moved = (splice as u64).min(budget).min(read.len() as u64) as usize;
        if moved > 0 {
            self.seen.client.extend_from_slice(&read[..moved]);
            self.feed(Input::ResponseBodyPassed { bytes: moved });
            read = &read[moved..];
        }
        if !read.is_empty() && self.conn.state() == StateKind::Exchange {
            self.feed(Input::UpstreamData(BytesMut::from(read)));
        }
    }
}

/// A response with a `Content-Length` body, a chunked one (chunks of these sizes, maybe
/// trailers), or one read until the upstream closes.
fn response() -> impl Strategy<Value = (Vec<u8>, bool)> {
    let length = (0usize..3000).prop_map(|n| {
        let mut bytes = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n").into_bytes();
        bytes.extend((0..n).map(|i| b'a' + (i % 26) as u8));
        (bytes, false)
    });
    let chunked = (proptest::collection::vec(1usize..700, 0..5), any::<bool>()).prop_map(
        |(sizes, trailers)| {
            let mut bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for (k, size) in sizes.iter().enumerate() {
                bytes.extend(format!("{size:x}\r\n").into_bytes());
                bytes.extend(std::iter::repeat(b'0' + k as u8).take(*size));
                bytes.extend(b"\r\n");
            }
            bytes.extend(b"0\r\n");
            if trailers {
                bytes.extend(b"X-Sum: 1\r\n");
            }
            bytes.extend(b"\r\n");
            (bytes, false)
        },
    );
    let until_close = (0usize..2000).prop_map(|n| {
        let mut bytes = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
        bytes.extend(std::iter::repeat(b'z').take(n));
        (bytes, true)
    });
    prop_oneof![length, chunked, until_close]
}

/// Sends `response` in reads cut at `cuts`, moving up to `splices[i]` bytes of read `i`
/// past the core (none at all without `splices`); then the upstream's EOF if it closes.
fn run(response: &[u8], closes: bool, cuts: &[usize], splices: Option<&[usize]>) -> Seen {
    let mut driver = Driver::new(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n");
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (response.len() + 1)).collect();
    points.extend([0, response.len()]);
    points.sort_unstable();
    points.dedup();
    for (i, pair) in points.windows(2).enumerate() {
        let splice = splices.map_or(0, |s| s.get(i).copied().unwrap_or(usize::MAX));
        driver.upstream_sends(&response[pair[0]..pair[1]], splice);
    }
    if closes && driver.conn.state() == StateKind::Exchange {
        driver.feed(Input::UpstreamEof);
    }
    driver.seen
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_body_moved_past_the_core_reaches_the_client_as_if_shown(
        (response, closes) in response(),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
        splices in proptest::collection::vec(prop_oneof![Just(0usize), 1usize..2000, Just(usize::MAX)], 0..12),
    ) {
        let shown = run(&response, closes, &cuts, None);
        let passed = run(&response, closes, &cuts, Some(&splices));
        prop_assert_eq!(&shown, &passed);
        prop_assert_eq!(shown.released.len(), 1, "the exchange ended");
    }
}

#[test]
fn the_passthrough_is_the_body_left_and_never_a_head_or_chunk_line() {
    let mut driver = Driver::new(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        driver.conn.response_body_passthrough(),
        0,
        "no response yet"
    );
    driver.upstream_sends(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 0);
    assert_eq!(driver.conn.response_body_passthrough(), 7);
    assert_eq!(
        driver
            .conn
            .handle_input(Input::ResponseBodyPassed { bytes: 8 }, driver.now),
        Err(Misuse::PassthroughExceeded {
            from: Side::Upstream,
            bytes: 8,
            budget: 7
        }),
    );
    driver.feed(Input::ResponseBodyPassed { bytes: 7 });
    assert_eq!(
        driver.seen.released,
        [true],
        "the body ended on the moved bytes"
    );
    assert_eq!(driver.conn.state(), StateKind::ReadingHead);

    let mut chunked = Driver::new(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    chunked.upstream_sends(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0);
    assert_eq!(
        chunked.conn.response_body_passthrough(),
        0,
        "a size line is next"
    );
    chunked.upstream_sends(b"10\r\n", 0);
    assert_eq!(chunked.conn.response_body_passthrough(), 16);
    chunked.upstream_sends(b"0123456789abcdef", usize::MAX);
    assert_eq!(
        chunked.conn.response_body_passthrough(),
        0,
        "its CRLF is next"
    );
}

#[test]
fn bytes_the_core_holds_go_first() {
    let mut driver = Driver::new(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    // A chunk's size line cut in two: the core keeps its first part.
    driver.upstream_sends(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1",
        usize::MAX,
    );
    assert_eq!(driver.conn.response_body_passthrough(), 0);
    assert_eq!(
        driver
            .conn
            .handle_input(Input::ResponseBodyPassed { bytes: 1 }, driver.now),
        Err(Misuse::PassthroughExceeded {
            from: Side::Upstream,
            bytes: 1,
            budget: 0
        }),
    );
}
