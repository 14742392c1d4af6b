//! Property tests of the WebSocket frame layer (`switchyard_core::websocket`): (a) a
//! valid frame stream split anywhere is passed on byte-identical, with boundaries
//! where the frames' are; (b) the proxy's own frames are masked iff they go upstream
//! and read back as built; (c) arbitrary bytes never panic, and either follow as
//! frames or stop at a violation, the same however they are split.

use proptest::prelude::*;
use switchyard_core::websocket::{
    encode, CloseCode, Extensions, FrameHeader, FrameParser, FrameTracker, Opcode, Rules, Step,
    Violation, MAX_CONTROL_PAYLOAD, RSV1,
};
use switchyard_core::Side;

/// One frame of a generated stream, before it is made valid by [`build`].
#[derive(Debug, Clone)]
struct Spec {
    /// 0–2: a Ping, Pong or Close; otherwise a data frame (Text or Binary if it starts
    /// a message, by parity).
    kind: u8,
    /// 0–7 a short payload, 8 a 16-bit length, 9 a 64-bit length.
    size_class: u8,
    size: usize,
    fin: bool,
    rsv1: bool,
    key: [u8; 4],
    fill: u8,
}

fn spec() -> impl Strategy<Value = Spec> {
    (0..8u8, 0..10u8, 0..2000usize, any::<bool>(), any::<bool>()).prop_flat_map(
        |(kind, size_class, size, fin, rsv1)| {
            (any::<[u8; 4]>(), any::<u8>()).prop_map(move |(key, fill)| Spec {
                kind,
                size_class,
                size,
                fin,
                rsv1,
                key,
                fill,
            })
        },
    )
}

/// A valid stream of frames sent by `from`, with each frame's end offset and whether a
/// fragmented message is in progress after it.
struct Stream {
    bytes: Vec<u8>,
    headers: Vec<FrameHeader>,
    ends: Vec<usize>,
    in_message_after: Vec<bool>,
    messages: u64,
}

fn build(from: Side, extensions: Extensions, specs: &[Spec]) -> Stream {
    let mut stream = Stream {
        bytes: Vec::new(),
        headers: Vec::new(),
        ends: Vec::new(),
        in_message_after: Vec::new(),
        messages: 0,
    };
    let mut in_message = false;
    let push = |stream: &mut Stream, header: FrameHeader, payload: &[u8], in_message| {
        stream
            .bytes
            .extend_from_slice(&encode::frame_with_header(&header, payload));
        stream.headers.push(header);
        stream.ends.push(stream.bytes.len());
        stream.in_message_after.push(in_message);
    };
    for spec in specs {
        let mask = (from == Side::Client).then_some(spec.key);
        if spec.kind < 3 {
            let opcode = [Opcode::Ping, Opcode::Pong, Opcode::Close][usize::from(spec.kind)];
            let mut len = spec.size % (MAX_CONTROL_PAYLOAD + 1);
            if opcode == Opcode::Close && len == 1 {
                len = 2;
            }
            let payload: Vec<u8> = (0..len).map(|i| spec.fill ^ i as u8).collect();
            let header = header(true, 0, opcode, mask, len);
            push(&mut stream, header, &payload, in_message);
            continue;
        }
        let len = match spec.size_class {
            0..=7 => spec.size % 200,
            8 => 126 + spec.size,
            _ => 65_536 + spec.size,
        };
        let payload: Vec<u8> = (0..len).map(|i| spec.fill.wrapping_add(i as u8)).collect();
        let (opcode, rsv) = if in_message {
            (Opcode::Continuation, 0)
        } else {
            let opcode = if spec.kind % 2 == 0 {
                Opcode::Text
            } else {
                Opcode::Binary
            };
            let deflated = extensions == Extensions::PermessageDeflate && spec.rsv1;
            (opcode, if deflated { RSV1 } else { 0 })
        };
        in_message = !spec.fin;
        stream.messages += u64::from(spec.fin);
        push(
            &mut stream,
            header(spec.fin, rsv, opcode, mask, len),
            &payload,
            in_message,
        );
    }
    if in_message {
        let mask = (from == Side::Client).then_some([1, 2, 3, 4]);
        let last = header(true, 0, Opcode::Continuation, mask, 3);
        push(&mut stream, last, b"end", false);
        stream.messages += 1;
    }
    stream
}

fn header(fin: bool, rsv: u8, opcode: Opcode, mask: Option<[u8; 4]>, len: usize) -> FrameHeader {
    FrameHeader {
        fin,
        rsv,
        opcode,
        mask,
        payload_len: len as u64,
    }
}

/// `bytes` cut at `cuts` (positions taken modulo the length), in order.
fn pieces<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.extend([0, bytes.len()]);
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
}

/// What a caller that forwards exactly as told ends up with.
#[derive(Debug, Default, PartialEq)]
struct Forwarded {
    bytes: Vec<u8>,
    headers: Vec<FrameHeader>,
    /// `at_frame_boundary()` after every step, with the forwarded length then.
    boundaries: Vec<(usize, bool)>,
    violation: Option<Violation>,
}

/// Feeds `reads` through `tracker`, forwarding as told; for reads whose `splice` flag is
/// set, payload is reported moved unseen instead of shown.
fn forward(tracker: &mut FrameTracker, reads: &[&[u8]], splice: &[bool]) -> Forwarded {
    let mut out = Forwarded::default();
    for (i, read) in reads.iter().enumerate() {
        let spliced = splice
            .get(i % splice.len().max(1))
            .copied()
            .unwrap_or(false);
        let mut rest = *read;
        while !rest.is_empty() {
            let used = if spliced && tracker.payload_remaining() > 0 {
                let len = tracker.payload_remaining().min(rest.len() as u64);
                tracker.payload_forwarded(len).expect("within the payload");
                len as usize
            } else {
                match tracker.advance(rest) {
                    Step::NeedMore => {
                        out.boundaries
                            .push((out.bytes.len(), tracker.at_frame_boundary()));
                        break;
                    }
                    Step::Payload { len } => {
                        assert!(len > 0 && len <= rest.len());
                        len
                    }
                    Step::Header { header, consumed } | Step::ControlFrame { header, consumed } => {
                        assert!(consumed > 0 && consumed <= rest.len());
                        out.bytes.extend_from_slice(tracker.carried());
                        out.headers.push(header);
                        consumed
                    }
                    Step::Violation(violation) => {
                        out.violation = Some(violation);
                        return out;
                    }
                }
            };
            out.bytes.extend_from_slice(&rest[..used]);
            rest = &rest[used..];
            out.boundaries
                .push((out.bytes.len(), tracker.at_frame_boundary()));
        }
    }
    out
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Client), Just(Side::Upstream)]
}

fn extensions() -> impl Strategy<Value = Extensions> {
    prop_oneof![
        Just(Extensions::None),
        Just(Extensions::PermessageDeflate),
        Just(Extensions::Unknown)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// (a) Any valid frame stream, split at arbitrary points, is passed on byte-identical;
    /// the tracker is at a frame boundary exactly where a frame of the stream ends; its
    /// headers, message state and counts are the stream's; and a parser at the
    /// receiving end reads the same whole frames.
    #[test]
    fn valid_stream_split_anywhere_is_forwarded_byte_identical(
        from in side(),
        extensions in extensions(),
        specs in proptest::collection::vec(spec(), 0..12),
        cuts in proptest::collection::vec(any::<usize>(), 0..24),
        splice in proptest::collection::vec(any::<bool>(), 1..4),
    ) {
        let stream = build(from, extensions, &specs);
        let rules = Rules { validate: true, extensions };
        let mut tracker = FrameTracker::new(from, rules);
        let out = forward(&mut tracker, &pieces(&stream.bytes, &cuts), &splice);

        prop_assert_eq!(out.violation, None);
        prop_assert!(out.bytes == stream.bytes, "forwarded bytes differ from the stream");
        prop_assert_eq!(&out.headers, &stream.headers);
        for &(at, boundary) in &out.boundaries {
            let frame_end = at == 0 || stream.ends.contains(&at);
            prop_assert_eq!(boundary, frame_end, "at byte {}", at);
        }
        prop_assert!(tracker.at_frame_boundary() && !tracker.holds_partial_frame());
        prop_assert!(!tracker.in_fragmented_message());
        let stats = tracker.stats();
        prop_assert_eq!(stats.frames, stream.headers.len() as u64);
        prop_assert_eq!(stats.messages, stream.messages);
        let count = |opcode| stream.headers.iter().filter(|h| h.opcode == opcode).count() as u64;
        prop_assert_eq!(stats.pings, count(Opcode::Ping));
        prop_assert_eq!(stats.pongs, count(Opcode::Pong));
        prop_assert_eq!(stats.close_frames, count(Opcode::Close));

        let mut parser = FrameParser::new(from, rules);
        let (frames, used) = parser.parse_all(&out.bytes).expect("valid frames");
        prop_assert_eq!(used, out.bytes.len(), "the receiver sees whole frames only");
        let ends: Vec<usize> = frames
            .iter()
            .scan(0, |end, frame| { *end += frame.wire_len(); Some(*end) })
            .collect();
        prop_assert_eq!(ends, stream.ends.clone());
        let mut in_message = Vec::new();
        let mut parser = FrameParser::new(from, rules);
        let mut rest = &out.bytes[..];
        while let Some(frame) = parser.parse(rest).expect("valid") {
            rest = &rest[frame.wire_len()..];
            in_message.push(parser.in_fragmented_message());
        }
        prop_assert_eq!(in_message, stream.in_message_after);
    }

    /// (b) The proxy's Ping, Pong and Close frames are masked iff they go to the
    /// upstream, with the caller's key, and read back at the receiving end as built;
    /// a long Close reason is cut to fit at a character boundary.
    #[test]
    fn own_frames_are_masked_iff_towards_the_upstream(
        to in side(),
        key in any::<[u8; 4]>(),
        payload in proptest::collection::vec(any::<u8>(), 0..=MAX_CONTROL_PAYLOAD),
        code in prop_oneof![1000..=1003u16, 1007..=1014u16, 3000..=4999u16],
        reason in "\\PC{0,80}",
    ) {
        let code = CloseCode::new(code).expect("a sendable code");
        let frames = [
            (Opcode::Ping, encode::ping(to, &payload, key).unwrap(), payload.clone()),
            (Opcode::Pong, encode::pong(to, &payload, key).unwrap(), payload.clone()),
            (Opcode::Close, encode::close(to, code, &reason, key), Vec::new()),
        ];
        for (opcode, bytes, expected) in frames {
            // The receiver checks frames as if from the sender: the client, when they
            // go to the upstream.
            let mut parser = FrameParser::new(to.other(), Rules::default());
            let frame = parser.parse(&bytes).expect("valid").expect("whole");
            prop_assert_eq!(frame.wire_len(), bytes.len());
            prop_assert_eq!(frame.header.opcode, opcode);
            prop_assert!(frame.header.fin);
            let expected_mask = (to == Side::Upstream).then_some(key);
            prop_assert_eq!(frame.header.mask, expected_mask);
            let unmasked = frame.unmasked_payload();
            if opcode == Opcode::Close {
                prop_assert_eq!(u16::from_be_bytes([unmasked[0], unmasked[1]]), code.get());
                let sent = std::str::from_utf8(&unmasked[2..]).expect("cut at a boundary");
                prop_assert!(reason.starts_with(sent));
                prop_assert!(unmasked.len() <= MAX_CONTROL_PAYLOAD);
                // Cut only when needed, and by less than one character.
                prop_assert!(sent.len() == reason.len() || sent.len() + 4 > encode::MAX_CLOSE_REASON);
            } else {
                prop_assert_eq!(&unmasked, &expected);
            }
            // A tracker in the tunnel sees the same frame, held whole and unmasked.
            let mut tracker = FrameTracker::new(to.other(), Rules::default());
            let step = tracker.advance(&bytes);
            prop_assert_eq!(step, Step::ControlFrame { header: frame.header, consumed: bytes.len() });
            let held = tracker.control_payload().expect("a control frame");
            prop_assert_eq!(held.as_bytes(), &unmasked[..]);
        }
    }

    /// (c) Arbitrary bytes, split anywhere, never panic; the tracker forwards a prefix of
    /// them and either follows frames or stops at a violation, agreeing with a parser
    /// given the whole buffer at once.
    #[test]
    fn arbitrary_bytes_parse_or_give_a_violation(
        from in side(),
        validate in any::<bool>(),
        extensions in extensions(),
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        cuts in proptest::collection::vec(any::<usize>(), 0..24),
        splice in proptest::collection::vec(any::<bool>(), 1..4),
    ) {
        let rules = Rules { validate, extensions };
        agrees_with_parser(from, rules, &bytes, &cuts, &splice)?;
    }

    /// (c) The same for a valid stream with one byte changed: it follows the frames
    /// up to the change and then either goes on or stops at a violation.
    #[test]
    fn corrupted_stream_parses_or_gives_a_violation(
        from in side(),
        extensions in extensions(),
        specs in proptest::collection::vec(spec(), 1..6),
        at in any::<usize>(),
        flip in 1..=255u8,
        cuts in proptest::collection::vec(any::<usize>(), 0..24),
        splice in proptest::collection::vec(any::<bool>(), 1..4),
    ) {
        let mut bytes = build(from, extensions, &specs).bytes;
        let at = at % bytes.len();
        bytes[at] ^= flip;
        let rules = Rules { validate: true, extensions };
        agrees_with_parser(from, rules, &bytes, &cuts, &splice)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The one-pass walk over data frames (`advance_data_frames`, the lent read's path)
    /// followed by `advance` where it stops takes in exactly what `advance` alone does:
    /// the same bytes forwarded, the same violation, counts and state, for valid streams
    /// and for arbitrary bytes, split anywhere.
    #[test]
    fn data_frames_in_one_pass_are_followed_as_step_by_step(
        from in side(),
        validate in any::<bool>(),
        extensions in extensions(),
        specs in proptest::collection::vec(spec(), 0..10),
        noise in proptest::collection::vec(any::<u8>(), 0..64),
        cuts in proptest::collection::vec(any::<usize>(), 0..24),
    ) {
        let mut bytes = build(from, extensions, &specs).bytes;
        bytes.extend_from_slice(&noise);
        let rules = Rules { validate, extensions };
        let reads = pieces(&bytes, &cuts);
        let mut stepwise = FrameTracker::new(from, rules);
        let expected = forward(&mut stepwise, &reads, &[false]);
        let mut in_passes = FrameTracker::new(from, rules);
        let (forwarded, violation) = forward_in_passes(&mut in_passes, &reads);
        prop_assert!(forwarded == expected.bytes, "forwarded bytes differ");
        prop_assert_eq!(violation, expected.violation);
        prop_assert_eq!(in_passes.stats(), stepwise.stats());
        prop_assert_eq!(in_passes.payload_remaining(), stepwise.payload_remaining());
        prop_assert_eq!(in_passes.holds_partial_frame(), stepwise.holds_partial_frame());
        prop_assert_eq!(in_passes.in_fragmented_message(), stepwise.in_fragmented_message());
        prop_assert_eq!(in_passes.violation(), stepwise.violation());
    }
}

/// Feeds `reads` as the lent read's path does: the plain data frames in one pass, then
/// one step of `advance` where that stops, and again.
fn forward_in_passes(tracker: &mut FrameTracker, reads: &[&[u8]]) -> (Vec<u8>, Option<Violation>) {
    let mut out = Vec::new();
    for read in reads {
        let mut rest = *read;
        while !rest.is_empty() {
            let plain = tracker.advance_data_frames(rest);
            assert!(plain <= rest.len());
            assert!(tracker.carried().is_empty());
            out.extend_from_slice(&rest[..plain]);
            rest = &rest[plain..];
            if rest.is_empty() {
                break;
            }
            let used = match tracker.advance(rest) {
                Step::NeedMore => break,
                Step::Payload { len } => len,
                Step::Header { consumed, .. } | Step::ControlFrame { consumed, .. } => {
                    out.extend_from_slice(tracker.carried());
                    consumed
                }
                Step::Violation(violation) => return (out, Some(violation)),
            };
            out.extend_from_slice(&rest[..used]);
            rest = &rest[used..];
        }
    }
    (out, None)
}

/// Feeds `bytes` split at `cuts` through a tracker and checks it against a parser
/// given them whole: the same frames, the same violation, and a prefix forwarded.
fn agrees_with_parser(
    from: Side,
    rules: Rules,
    bytes: &[u8],
    cuts: &[usize],
    splice: &[bool],
) -> Result<(), TestCaseError> {
    let mut tracker = FrameTracker::new(from, rules);
    let out = forward(&mut tracker, &pieces(bytes, cuts), splice);
    prop_assert!(
        bytes.starts_with(&out.bytes),
        "forwarded bytes are the input's"
    );
    if !rules.validate {
        prop_assert_eq!(out.violation, None);
    }

    let mut parser = FrameParser::new(from, rules);
    let mut rest = bytes;
    let mut parsed = Vec::new();
    let parser_violation = loop {
        match parser.parse(rest) {
            Ok(Some(frame)) => {
                rest = &rest[frame.wire_len()..];
                parsed.push(frame.header);
            }
            Ok(None) => break None,
            Err(violation) => break Some(violation),
        }
    };
    prop_assert_eq!(out.violation, parser_violation);
    // The tracker also reports the header of a frame whose payload is still coming.
    prop_assert!(out.headers.len() >= parsed.len());
    prop_assert_eq!(&out.headers[..parsed.len()], &parsed[..]);
    let extra = out.headers.len() - parsed.len();
    prop_assert!(extra == 0 || (extra == 1 && tracker.payload_remaining() > 0));
    Ok(())
}
