//! The tracker's rules, one test each (the header and validation rules themselves are
//! tested in their modules).

use super::*;
use crate::io::Side;

/// What a caller forwarding as told would have written, and the frames it saw.
#[derive(Debug, Default)]
struct Run {
    forwarded: Vec<u8>,
    frames: Vec<FrameHeader>,
    violation: Option<Violation>,
}

fn run(tracker: &mut FrameTracker, reads: &[&[u8]]) -> Run {
    let mut out = Run::default();
    for read in reads {
        let mut rest = *read;
        while !rest.is_empty() {
            let used = match tracker.advance(rest) {
                Step::NeedMore => break,
                Step::Payload { len } => len,
                Step::Header { header, consumed } | Step::ControlFrame { header, consumed } => {
                    out.forwarded.extend_from_slice(tracker.carried());
                    out.frames.push(header);
                    consumed
                }
                Step::Violation(violation) => {
                    out.violation = Some(violation);
                    return out;
                }
            };
            out.forwarded.extend_from_slice(&rest[..used]);
            rest = &rest[used..];
        }
    }
    out
}

fn from_upstream() -> FrameTracker {
    FrameTracker::new(Side::Upstream, Rules::default())
}

fn from_client() -> FrameTracker {
    FrameTracker::new(Side::Client, Rules::default())
}

fn masked(opcode: Opcode, fin: bool, payload: &[u8]) -> Vec<u8> {
    encode::frame(
        Side::Upstream,
        fin,
        opcode,
        payload,
        [0x11, 0x22, 0x33, 0x44],
    )
    .to_vec()
}

fn unmasked(opcode: Opcode, fin: bool, payload: &[u8]) -> Vec<u8> {
    encode::frame(Side::Client, fin, opcode, payload, [0; 4]).to_vec()
}

/// Feeds `stream` to a fresh tracker and returns the violation it reports.
fn violation_of(mut tracker: FrameTracker, stream: &[u8]) -> Violation {
    let run = run(&mut tracker, &[stream]);
    let violation = run.violation.expect("a violation");
    assert_eq!(
        tracker.advance(b"more"),
        Step::Violation(violation),
        "sticky"
    );
    violation
}

#[test]
fn payload_bytes_are_forwarded_raw_as_told() {
    let mut tracker = from_upstream();
    let stream = unmasked(Opcode::Binary, true, &[7; 300]);
    assert_eq!(
        tracker.advance(&stream),
        Step::Header {
            header: FrameHeader {
                fin: true,
                rsv: 0,
                opcode: Opcode::Binary,
                mask: None,
                payload_len: 300,
            },
            consumed: 4,
        }
    );
    assert!(!tracker.at_frame_boundary());
    assert_eq!(tracker.advance(&stream[4..100]), Step::Payload { len: 96 });
    // A payload step stops where the frame ends.
    let next = unmasked(Opcode::Text, true, b"x");
    let rest = [&stream[100..], &next[..]].concat();
    assert_eq!(tracker.advance(&rest), Step::Payload { len: 204 });
    assert!(tracker.at_frame_boundary());
    assert!(matches!(
        tracker.advance(&rest[204..]),
        Step::Header { consumed: 2, .. }
    ));
}

#[test]
fn header_split_one_byte_at_a_time_is_held_then_carried() {
    let mut tracker = from_client();
    let frame = masked(Opcode::Text, true, &[b'a'; 200]);
    // Header: 2 bytes, a 16-bit length, a masking key.
    for byte in &frame[..7] {
        assert_eq!(tracker.advance(std::slice::from_ref(byte)), Step::NeedMore);
        assert!(tracker.holds_partial_frame());
        assert!(
            tracker.at_frame_boundary(),
            "held bytes are not forwarded yet"
        );
    }
    let Step::Header { header, consumed } = tracker.advance(&frame[7..]) else {
        panic!("the eighth byte completes the header");
    };
    assert_eq!((header.payload_len, consumed), (200, 1));
    assert_eq!(tracker.carried(), &frame[..7]);
    assert_eq!(tracker.advance(&frame[8..]), Step::Payload { len: 200 });
    assert_eq!(tracker.carried(), b"", "only right after the header step");
}

#[test]
fn every_length_form_is_followed() {
    for len in [0usize, 125, 126, 65_535, 65_536] {
        let frame = unmasked(Opcode::Binary, true, &vec![1; len]);
        let mut tracker = from_upstream();
        let run = run(&mut tracker, &[&frame]);
        assert_eq!(run.forwarded, frame, "payload of {len}");
        assert_eq!(run.frames[0].payload_len, len as u64);
        assert!(tracker.at_frame_boundary());
    }
}

#[test]
fn spliced_payload_is_reported_not_shown() {
    let mut tracker = from_upstream();
    let frame = unmasked(Opcode::Binary, true, &[0; 70_000]);
    assert!(matches!(
        tracker.advance(&frame[..10]),
        Step::Header { consumed: 10, .. }
    ));
    assert_eq!(tracker.payload_remaining(), 70_000);
    assert_eq!(tracker.payload_forwarded(69_999), Ok(()));
    assert_eq!(
        tracker.payload_forwarded(2),
        Err(PayloadOverrun {
            forwarded: 2,
            remaining: 1
        })
    );
    assert_eq!(tracker.payload_forwarded(1), Ok(()));
    assert!(tracker.at_frame_boundary());
}

#[test]
fn control_frames_are_held_whole_and_unmasked() {
    let mut tracker = from_client();
    let ping = masked(Opcode::Ping, true, b"proxy-ping-1");
    assert_eq!(
        tracker.advance(&ping[..9]),
        Step::NeedMore,
        "header and part of payload"
    );
    assert_eq!(tracker.control_payload(), None);
    let Step::ControlFrame { header, consumed } = tracker.advance(&ping[9..]) else {
        panic!("the rest completes the Ping");
    };
    assert_eq!((header.opcode, consumed), (Opcode::Ping, ping.len() - 9));
    assert_eq!(tracker.carried(), &ping[..9]);
    assert_eq!(
        tracker.control_payload().unwrap().as_bytes(),
        b"proxy-ping-1"
    );
    assert!(tracker.at_frame_boundary());
    tracker.advance(b"\x8a");
    assert_eq!(tracker.control_payload(), None, "a new frame has begun");
}

#[test]
fn control_frames_may_sit_between_fragments() {
    let mut tracker = from_upstream();
    let stream = [
        unmasked(Opcode::Text, false, b"hel"),
        unmasked(Opcode::Ping, true, b""),
        unmasked(Opcode::Continuation, false, b"l"),
        unmasked(Opcode::Pong, true, b"x"),
        unmasked(Opcode::Continuation, true, b"o"),
    ];
    let mut in_message = Vec::new();
    for frame in &stream {
        let run = run(&mut tracker, &[frame]);
        assert_eq!(run.forwarded, *frame);
        in_message.push(tracker.in_fragmented_message());
    }
    assert_eq!(in_message, [true, true, true, true, false]);
    let stats = tracker.stats();
    assert_eq!(
        (stats.frames, stats.messages, stats.pings, stats.pongs),
        (5, 1, 1, 1)
    );
}

#[test]
fn close_code_of_a_peer_close_is_recorded() {
    let mut tracker = from_client();
    let close = encode::close(Side::Upstream, CloseCode::new(4000).unwrap(), "bye", [5; 4]);
    run(&mut tracker, &[&close[..3], &close[3..]]);
    assert_eq!(tracker.stats().close_frames, 1);
    assert_eq!(tracker.stats().close_code, Some(4000));
    assert_eq!(tracker.control_payload().unwrap().close_reason(), b"bye");

    let mut tracker = from_upstream();
    run(&mut tracker, &[b"\x88\x00"]);
    assert_eq!(
        (tracker.stats().close_frames, tracker.stats().close_code),
        (1, None)
    );
}

#[test]
fn offending_frame_is_not_forwarded() {
    let mut tracker = from_client();
    let good = masked(Opcode::Text, true, b"ok");
    let bad = unmasked(Opcode::Text, true, b"bad");
    let run = run(&mut tracker, &[&[&good[..], &bad[..1]].concat(), &bad[1..]]);
    assert_eq!(run.forwarded, good, "not a byte of the unmasked frame");
    assert_eq!(run.violation, Some(Violation::UnmaskedClientFrame));
    assert!(tracker.at_frame_boundary(), "the Close 1002 can follow");
}

#[test]
fn client_frames_must_be_masked() {
    let frame = unmasked(Opcode::Binary, true, b"x");
    assert_eq!(
        violation_of(from_client(), &frame),
        Violation::UnmaskedClientFrame
    );
}

#[test]
fn upstream_frames_must_be_unmasked() {
    let frame = masked(Opcode::Binary, true, b"x");
    assert_eq!(
        violation_of(from_upstream(), &frame),
        Violation::MaskedUpstreamFrame
    );
}

#[test]
fn reserved_opcodes_are_protocol_errors() {
    let frame = unmasked(Opcode::Reserved(0xB), true, b"");
    assert_eq!(
        violation_of(from_upstream(), &frame[..1]),
        Violation::ReservedOpcode { opcode: 0xB }
    );
}

#[test]
fn control_frames_over_125_bytes_are_protocol_errors() {
    let frame = unmasked(Opcode::Ping, true, &[0; 126]);
    assert_eq!(
        violation_of(from_upstream(), &frame),
        Violation::ControlFrameTooLong
    );
}

#[test]
fn fragmented_control_frames_are_protocol_errors() {
    let frame = unmasked(Opcode::Pong, false, b"");
    assert_eq!(
        violation_of(from_upstream(), &frame),
        Violation::FragmentedControlFrame
    );
}

#[test]
fn continuation_without_message_is_a_protocol_error() {
    let frame = unmasked(Opcode::Continuation, true, b"x");
    assert_eq!(
        violation_of(from_upstream(), &frame),
        Violation::ContinuationWithoutMessage
    );
}

#[test]
fn data_frame_inside_fragmented_message_is_a_protocol_error() {
    let stream = [
        unmasked(Opcode::Text, false, b"a"),
        unmasked(Opcode::Binary, true, b"b"),
    ]
    .concat();
    assert_eq!(
        violation_of(from_upstream(), &stream),
        Violation::DataFrameInsideMessage
    );
}

#[test]
fn reserved_bits_without_extension_are_protocol_errors() {
    let mut frame = unmasked(Opcode::Text, true, b"x");
    frame[0] |= RSV2 << 4;
    assert_eq!(
        violation_of(from_upstream(), &frame),
        Violation::ReservedBits { rsv: RSV2 }
    );
}

#[test]
fn permessage_deflate_permits_rsv1_on_a_message_first_frame() {
    let rules = Rules {
        validate: true,
        extensions: Extensions::PermessageDeflate,
    };
    let mut first = unmasked(Opcode::Text, false, b"a");
    first[0] |= RSV1 << 4;
    let mut tracker = FrameTracker::new(Side::Upstream, rules);
    assert_eq!(run(&mut tracker, &[&first]).forwarded, first);
    let mut next = unmasked(Opcode::Continuation, true, b"b");
    next[0] |= RSV1 << 4;
    assert_eq!(
        violation_of(tracker, &next),
        Violation::ReservedBits { rsv: RSV1 }
    );
}

#[test]
fn length_with_top_bit_set_is_a_protocol_error() {
    let header = [0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(
        violation_of(from_upstream(), &header[..3]),
        Violation::LengthTopBitSet
    );
}

#[test]
fn close_with_one_byte_payload_is_a_protocol_error() {
    assert_eq!(
        violation_of(from_upstream(), b"\x88\x01\x03"),
        Violation::CloseCodeTruncated
    );
}

#[test]
fn validation_off_follows_anything() {
    let rules = Rules {
        validate: false,
        ..Rules::default()
    };
    let mut tracker = FrameTracker::new(Side::Client, rules);
    // Unmasked, a reserved opcode, a 200-byte "Ping", a lone continuation.
    let stream = [
        unmasked(Opcode::Reserved(3), true, b"r"),
        unmasked(Opcode::Ping, true, &[0; 200]),
        unmasked(Opcode::Continuation, true, b"c"),
        b"\x88\x01\x03".to_vec(),
    ]
    .concat();
    let run = run(&mut tracker, &[&stream]);
    assert_eq!((run.forwarded, run.violation), (stream, None));
    assert_eq!(tracker.stats().frames, 4);
    assert_eq!(
        tracker.stats().close_code,
        None,
        "a 1-byte Close has no code"
    );
}

#[test]
fn a_tracker_fits_in_72_bytes() {
    // Two per tunnel, inline; the room for a split frame head (139 bytes) is out of line.
    let size = std::mem::size_of::<FrameTracker>();
    assert!(size <= 72, "{size}");
}

#[test]
fn a_tracker_keeps_room_for_a_frame_head_only_while_one_is_split() {
    let mut tracker = from_client();
    let text = masked(Opcode::Text, true, b"in one read");
    assert!(matches!(tracker.advance(&text), Step::Header { .. }));
    assert!(!tracker.holds_room(), "a whole header is checked in place");
    let ping = masked(Opcode::Ping, true, b"p");
    assert!(matches!(tracker.advance(&text[6..]), Step::Payload { .. }));
    assert!(matches!(tracker.advance(&ping), Step::ControlFrame { .. }));
    assert_eq!(tracker.control_payload().unwrap().as_bytes(), b"p");
    tracker.shed();
    assert!(!tracker.holds_room(), "a whole control frame is not kept");
    assert_eq!(tracker.control_payload(), None);
    assert_eq!(tracker.advance(&text[..3]), Step::NeedMore);
    tracker.shed();
    assert!(tracker.holds_room(), "a split header keeps its bytes");
    assert!(tracker.holds_partial_frame());
    let Step::Header { consumed, .. } = tracker.advance(&text[3..]) else {
        panic!("the rest of the header completes it");
    };
    assert_eq!((tracker.carried(), consumed), (&text[..3], 3));
    tracker.shed();
    assert!(!tracker.holds_room() && !tracker.holds_partial_frame());
    assert_eq!(
        tracker.payload_remaining(),
        11,
        "shedding changes no frame state"
    );
}
