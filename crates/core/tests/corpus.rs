//! The smuggling corpus (`switchyard-corpus`, crates/corpus) through the sans-IO core, in
//! the simulation harness: every vector in one write and byte by byte, each asserting
//! the statuses the client gets, what the upstream receives (nothing, or exactly the
//! expected well-formed requests), and what never reaches either side. Then a proptest:
//! whatever a client sends, the upstream only ever receives well-formed, CRLF-terminated
//! requests without hop-by-hop fields.

use std::time::Instant;

use proptest::prelude::*;
use switchyard_core::sim::Sim;
use switchyard_core::{Config, StateKind};
use switchyard_corpus::{
    client_statuses, parse_forwarded, reply_bytes, verify, view_upstream, Forwarded, Observed,
    Parsed, Reply, Side, Vector,
};

/// Vectors the core does not pass yet: run and printed with their outcome, not asserted.
/// Move a name out of here once the core handles it.
const KNOWN_GAPS: &[&str] = &[];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Every peer sends everything in one write.
    Whole,
    /// Every byte of both peers is a separate read.
    Bytewise,
}

/// The scripted upstream: answers every complete request on the connection in use.
#[derive(Default)]
struct Upstream {
    parsed: Vec<usize>,
    answered: usize,
}

fn pieces(bytes: &[u8], mode: Mode) -> Vec<&[u8]> {
    match mode {
        Mode::Whole => vec![bytes],
        Mode::Bytewise => bytes.chunks(1).collect(),
    }
}

impl Upstream {
    fn serve(&mut self, sim: &mut Sim, replies: &[Reply], mode: Mode) {
        loop {
            if sim.is_closed() || sim.state() == StateKind::Tunnel {
                return;
            }
            let Some(index) = sim.upstreams.len().checked_sub(1) else {
                return;
            };
            if sim.upstreams[index].released.is_some() {
                return;
            }
            self.parsed.resize(sim.upstreams.len(), 0);
            let received = &sim.upstreams[index].received[self.parsed[index]..];
            let Parsed::Complete(request, used) = parse_forwarded(received) else {
                return;
            };
            self.parsed[index] += used;
            let reply = replies.get(self.answered).copied().unwrap_or(Reply::Echo);
            self.answered += 1;
            let bytes = reply_bytes(reply, &request);
            // A scripted upstream stops once the proxy closed or let go of its
            // connection: the rest of its reply goes nowhere (and must never reach the
            // next upstream connection).
            let gone = |sim: &Sim| sim.is_closed() || sim.upstreams[index].released.is_some();
            for piece in pieces(&bytes, mode) {
                if gone(sim) {
                    break;
                }
                sim.upstream_sends(piece);
            }
            if matches!(reply, Reply::RawThenClose(_)) && !gone(sim) {
                sim.upstream_eof();
            }
        }
    }
}

fn run(vector: &Vector, mode: Mode) -> Observed {
    // The corpus is about HTTP framing; its tunnel vectors carry bytes that are not valid
    // WebSocket frames (an unmasked client frame), so its tunnels are byte tunnels.
    let mut config = Config::default();
    config.routes[0].websocket.validate = false;
    let mut sim = Sim::new(config, Instant::now());
    let mut upstream = Upstream::default();
    for piece in pieces(&vector.client, mode) {
        // What a client sends after the proxy closed goes nowhere.
        if sim.is_closed() {
            break;
        }
        sim.client_sends(piece);
        upstream.serve(&mut sim, &vector.replies, mode);
    }
    upstream.serve(&mut sim, &vector.replies, mode);
    Observed {
        client: sim.client_received.clone(),
        closed: sim.is_closed(),
        tunnel: sim.state() == StateKind::Tunnel,
        connect_is_async: false,
        upstreams: sim
            .upstreams
            .iter()
            .map(|u| (u.received.clone(), u.released))
            .collect(),
    }
}

fn show(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(240)]).into_owned();
    if bytes.len() > 240 {
        format!("{text:?}… ({} bytes)", bytes.len())
    } else {
        format!("{text:?}")
    }
}

fn run_corpus(mode: Mode) {
    let mut failures = Vec::new();
    let mut gaps = Vec::new();
    for vector in switchyard_corpus::all() {
        let outcome = run(&vector, mode);
        let wrong = verify(&vector, &outcome);
        if KNOWN_GAPS.contains(&vector.name) {
            gaps.push((vector, outcome, wrong));
        } else if !wrong.is_empty() {
            failures.push(format!(
                "{} [{}] sent {}\n  client received {}\n  - {}",
                vector.name,
                vector.class,
                show(&vector.client),
                show(&outcome.client),
                wrong.join("\n  - ")
            ));
        }
    }
    for (vector, outcome, wrong) in &gaps {
        let statuses = client_statuses(&outcome.client, vector.head_requests);
        if wrong.is_empty() {
            println!(
                "KNOWN GAP {} ({mode:?}) passes in this mode; move it out once it passes in every mode",
                vector.name
            );
        } else {
            println!(
                "KNOWN GAP {} ({mode:?}): sent {}; expected statuses {:?}, got {statuses:?}; {}",
                vector.name,
                show(&vector.client),
                vector.statuses,
                wrong.join("; ")
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} vector(s) failed ({mode:?}):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn corpus_is_large_and_covers_both_sides() {
    let all = switchyard_corpus::all();
    let mut names: Vec<_> = all.iter().map(|v| v.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all.len(), "vector names are unique");
    let attacks = all.iter().filter(|v| v.is_hostile()).count();
    let by_side = |side: Side| {
        all.iter()
            .filter(|v| v.side == side && v.is_hostile())
            .count()
    };
    println!(
        "{} vectors: {attacks} hostile ({} request, {} response, {} upgrade), {} known gaps",
        all.len(),
        by_side(Side::Request),
        by_side(Side::Response),
        by_side(Side::Upgrade),
        KNOWN_GAPS.len()
    );
    assert!(attacks >= 60, "{attacks} hostile vectors");
    assert!(
        by_side(Side::Request) >= 40
            && by_side(Side::Response) >= 15
            && by_side(Side::Upgrade) >= 15
    );
    for gap in KNOWN_GAPS {
        assert!(
            names.contains(gap),
            "KNOWN_GAPS names {gap}, which is not in the corpus"
        );
    }
}

#[test]
fn corpus_in_one_write() {
    run_corpus(Mode::Whole);
}

#[test]
fn corpus_byte_by_byte() {
    run_corpus(Mode::Bytewise);
}

// ---- proptest: whatever the client sends, the upstream gets only clean requests -----

/// Field names a client may send, hop-by-hop ones and framing ones included.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "Connection", "Keep-Alive", "Proxy-Authorization", "Proxy-Authenticate",
            "Proxy-Connection", "TE", "Trailer", "Trailers", "Transfer-Encoding", "Upgrade",
            "HTTP2-Settings", "Content-Length", "Host", "X-Hop", "Sec-WebSocket-Key",
            "X-Forwarded-For", "Forwarded", "Via", "transfer-encoding", "CONNECTION",
        ])
        .prop_map(str::to_string),
        2 => "[A-Za-z][A-Za-z0-9_-]{0,10}",
        1 => "[ -~]{1,8}",
    ]
}

/// Field values: mostly visible ASCII, with CR, LF, NUL and any byte sprinkled in.
fn field_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => prop::sample::select(vec![
            "chunked", "close", "keep-alive", "upgrade", "Upgrade, X-Hop", "websocket",
            "h2c", "websocket, h2c", "5", "0", "gzip, chunked", "a", "X-Hop",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        3 => prop::collection::vec(0x21u8..0x7f, 0..16),
        1 => prop::collection::vec(
            prop_oneof![12 => 0x20u8..0x7f, 1 => Just(b'\r'), 1 => Just(b'\n'), 1 => Just(0u8), 1 => any::<u8>()],
            0..16,
        ),
    ]
}

#[derive(Debug, Clone)]
enum Body {
    None,
    Length(Vec<u8>),
    Chunked(Vec<Vec<u8>>),
}

fn request() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec!["GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE"]),
        "/[a-z0-9]{0,6}",
        prop::sample::select(vec!["HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]),
        prop::bool::weighted(0.9),
        prop::collection::vec((field_name(), field_value()), 0..6),
        prop_oneof![
            2 => Just(Body::None),
            1 => prop::collection::vec(any::<u8>(), 0..20).prop_map(Body::Length),
            1 => prop::collection::vec(prop::collection::vec(any::<u8>(), 1..10), 0..3).prop_map(Body::Chunked),
        ],
    )
        .prop_map(|(method, target, version, host, fields, body)| {
            let mut out = format!("{method} {target} {version}\r\n").into_bytes();
            if host {
                out.extend_from_slice(b"Host: example\r\n");
            }
            if fields.iter().any(|(name, _)| name.eq_ignore_ascii_case("x-hop")) {
                // X-Hop is always named by Connection, so it must never be forwarded. Named
                // before the fields: a hostile value with a blank line in it ends the head
                // early, and the X-Hop fields in that head must still be named by it.
                out.extend_from_slice(b"Connection: X-Hop\r\n");
            }
            for (name, value) in &fields {
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value);
                out.extend_from_slice(b"\r\n");
            }
            match &body {
                Body::None => out.extend_from_slice(b"\r\n"),
                Body::Length(bytes) => {
                    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", bytes.len()).as_bytes());
                    out.extend_from_slice(bytes);
                }
                Body::Chunked(chunks) => {
                    out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                    for chunk in chunks {
                        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                        out.extend_from_slice(chunk);
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(b"0\r\n\r\n");
                }
            }
            out
        })
}

/// A client's whole input: requests, raw bytes and stray line endings, in any order.
fn client_input() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            6 => request(),
            1 => prop::collection::vec(any::<u8>(), 0..24),
            1 => prop::sample::select(vec![&b"\r\n"[..], b"\n", b"\r", b"\r\n\r\n"]).prop_map(<[u8]>::to_vec),
        ],
        1..6,
    )
    .prop_map(|parts| parts.concat())
}

/// `httparse` must read the head of every forwarded request completely, with nothing left
/// over before the body.
fn httparse_accepts(received: &[u8], request: &Forwarded) -> Result<(), String> {
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut parsed = httparse::Request::new(&mut fields);
    match parsed.parse(received) {
        Ok(httparse::Status::Complete(_)) => {}
        other => return Err(format!("httparse: {other:?} for {:?}", request.line)),
    }
    if parsed.version != Some(1) || parsed.headers.len() != request.fields.len() {
        return Err(format!("httparse disagrees on {:?}", request.line));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn upstream_only_receives_clean_requests(
        input in client_input(),
        splits in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut cuts: Vec<usize> = splits.iter().map(|i| i.index(input.len() + 1)).collect();
        cuts.push(0);
        cuts.push(input.len());
        cuts.sort_unstable();
        cuts.dedup();
        let mut sim = Sim::new(Config::default(), Instant::now());
        let mut upstream = Upstream::default();
        for window in cuts.windows(2) {
            if sim.is_closed() {
                break;
            }
            sim.client_sends(&input[window[0]..window[1]]);
            upstream.serve(&mut sim, &[], Mode::Whole);
        }
        for (index, u) in sim.upstreams.iter().enumerate() {
            let view = view_upstream(&u.received);
            prop_assert!(view.invalid.is_none(), "connection {index}: {:?}", view.invalid);
            if view.partial.is_some() {
                // Only a request the proxy gave up on (and closed) may stay incomplete.
                prop_assert!(u.released == Some(false) || sim.is_closed() || u.released.is_none(),
                    "connection {index} left {:?} incomplete", view.partial);
            }
            let mut at = 0;
            for request in &view.requests {
                let Parsed::Complete(_, used) = parse_forwarded(&u.received[at..]) else { unreachable!() };
                let result = httparse_accepts(&u.received[at..at + used], request);
                prop_assert!(result.is_ok(), "{:?}", result);
                prop_assert!(request.values("x-hop").is_empty(), "X-Hop forwarded in {:?}", request.line);
                at += used;
            }
        }
    }
}
