//! Scripted WebSocket peers for [`Sim`]: frames sent by either side, Pings answered or
//! not, and the frames each side received, parsed whole.
//!
//! # Examples
//! A route that pings after 30 s of silence, and a client that stopped answering:
//! ```
//! use std::time::{Duration, Instant};
//! use switchyard_core::sim::Sim;
//! use switchyard_core::websocket::Opcode;
//! use switchyard_core::{CloseReason, Config, Side};
//!
//! let mut config = Config::default();
//! config.routes[0].websocket.ping_interval = Some(Duration::from_secs(30));
//! let mut sim = Sim::new(config, Instant::now());
//! sim.client_sends(b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n\
//!     Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
//! sim.upstream_sends(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
//!     Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
//! sim.answer_pings(Side::Upstream, true); // the upstream is alive, the client is not
//! sim.upstream_sends_frame(Opcode::Text, b"hello");
//!
//! sim.advance(Duration::from_secs(40)); // 30 s of silence, then 10 s without an answer
//! let to_client = sim.frames_received(Side::Client);
//! assert_eq!(to_client[0].payload, b"hello");
//! assert_eq!(to_client[1].header.opcode, Opcode::Ping);
//! let to_upstream = sim.frames_received(Side::Upstream);
//! assert_eq!(to_upstream.last().and_then(|f| f.close_code()), Some(1001));
//! assert!(to_upstream.iter().all(|f| f.header.mask.is_some()), "masked towards the upstream");
//! assert!(sim.is_closed());
//! assert_eq!(sim.close_reason(), Some(CloseReason::ClientUnresponsive));
//! ```

use bytes::Bytes;

use super::Sim;
use crate::websocket::{
    encode, CloseCode, Extensions, FrameHeader, FrameParser, FrameTracker, Opcode, Rules, Step,
};
use crate::{CloseReason, Event, Input, Side};

/// A whole frame one side received, as a peer reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimFrame {
    /// The frame's header (with its masking key, if it had one).
    pub header: FrameHeader,
    /// The payload, unmasked.
    pub payload: Vec<u8>,
}

impl SimFrame {
    /// The code of a Close frame, if it is one and carries a code.
    pub fn close_code(&self) -> Option<u16> {
        match (self.header.opcode, &self.payload[..]) {
            (Opcode::Close, [high, low, ..]) => Some(u16::from_be_bytes([*high, *low])),
            _ => None,
        }
    }

    /// The reason of a Close frame (empty for other frames), lossily as text.
    pub fn close_reason(&self) -> String {
        match self.header.opcode {
            Opcode::Close => {
                String::from_utf8_lossy(self.payload.get(2..).unwrap_or_default()).into_owned()
            }
            _ => String::new(),
        }
    }
}

impl Sim {
    /// The frame `from` would send: masked with a fresh key from the client, unmasked
    /// from the upstream. Nothing is checked (a test may build a broken frame with
    /// [`encode::frame_with_header`] instead).
    pub fn frame_from(&mut self, from: Side, fin: bool, opcode: Opcode, payload: &[u8]) -> Bytes {
        let key = self.draw_key();
        encode::frame(from.other(), fin, opcode, payload, key)
    }

    /// `from` sends a whole message (or control frame) in one final frame.
    ///
    /// # Panics
    /// When the connection refuses the input, e.g. after it closed.
    #[track_caller]
    pub fn send_frame(&mut self, from: Side, opcode: Opcode, payload: &[u8]) {
        self.send_fragment(from, opcode, payload, true);
    }

    /// `from` sends one frame of a fragmented message: `opcode` is `Text` or `Binary`
    /// for the first, `Continuation` for the rest; `fin` on the last.
    ///
    /// # Panics
    /// When the connection refuses the input, e.g. after it closed.
    #[track_caller]
    pub fn send_fragment(&mut self, from: Side, opcode: Opcode, payload: &[u8], fin: bool) {
        let frame = self.frame_from(from, fin, opcode, payload);
        self.sends(from, &frame);
    }

    /// `from` sends a Close frame with `code` and `reason`.
    ///
    /// # Panics
    /// When `code` may not be sent (see [`CloseCode::new`]) or the connection refuses the
    /// input.
    #[track_caller]
    pub fn send_close(&mut self, from: Side, code: u16, reason: &str) {
        let code = CloseCode::new(code).expect("a close code an endpoint may send");
        let key = self.draw_key();
        let frame = encode::close(from.other(), code, reason, key);
        self.sends(from, &frame);
    }

    /// The client sends one final frame (masked).
    #[track_caller]
    pub fn client_sends_frame(&mut self, opcode: Opcode, payload: &[u8]) {
        self.send_frame(Side::Client, opcode, payload);
    }

    /// The upstream sends one final frame (unmasked).
    #[track_caller]
    pub fn upstream_sends_frame(&mut self, opcode: Opcode, payload: &[u8]) {
        self.send_frame(Side::Upstream, opcode, payload);
    }

    /// `from` sends raw `bytes` (a client's or an upstream's, as [`Sim::client_sends`]
    /// and [`Sim::upstream_sends`]).
    #[track_caller]
    pub fn sends(&mut self, from: Side, bytes: &[u8]) {
        match from {
            Side::Client => self.client_sends(bytes),
            Side::Upstream => self.upstream_sends(bytes),
        }
    }

    /// From now on `side` answers every Ping it receives (the proxy's and the other
    /// peer's) with a Pong carrying the same payload, at once, as WebSocket libraries
    /// do; `false` makes it a peer that never answers. Off by default.
    pub fn answer_pings(&mut self, side: Side, answer: bool) {
        self.answer_pings[side.index()] = answer;
        if answer && self.tunnel {
            // Pings received while not answering stay unanswered.
            self.pings_answered[side.index()] = self.pings_received(side);
            self.answer_received_pings();
        }
    }

    /// Feeds `key` as [`Input::MaskingKey`] (with [`Sim::answer_masking_keys`] off, the
    /// connection waits for it).
    ///
    /// # Panics
    /// When the connection refuses it (not a frame-aware tunnel, or closed).
    #[track_caller]
    pub fn feed_masking_key(&mut self, key: [u8; 4]) {
        self.masking_keys_fed.push(key);
        self.feed("feed_masking_key", Input::MaskingKey(key));
    }

    /// Every byte `side` received since the tunnel started.
    pub fn tunnel_received(&self, side: Side) -> &[u8] {
        if !self.tunnel {
            return &[];
        }
        let all = match side {
            Side::Client => &self.client_received[..],
            Side::Upstream => self.upstream_received(),
        };
        all.get(self.tunnel_start[side.index()]..)
            .unwrap_or_default()
    }

    /// The whole frames `side` received since the tunnel started, in order (parsed
    /// without judging them, so that a test can; a partial frame at the end is left
    /// out: see [`Sim::partial_frame_received`]).
    pub fn frames_received(&self, side: Side) -> Vec<SimFrame> {
        self.parse_received(side).0
    }

    /// How many bytes at the end of what `side` received are not a whole frame yet.
    pub fn partial_frame_received(&self, side: Side) -> usize {
        self.parse_received(side).1
    }

    /// Why the connection closed, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.events().into_iter().find_map(|event| match event {
            Event::Closed { reason } => Some(*reason),
            _ => None,
        })
    }

    fn parse_received(&self, side: Side) -> (Vec<SimFrame>, usize) {
        let bytes = self.tunnel_received(side);
        let rules = Rules {
            validate: false,
            extensions: Extensions::Unknown,
        };
        let mut parser = FrameParser::new(side.other(), rules);
        // Unvalidated parsing has no violation to report.
        let (frames, used) = parser.parse_all(bytes).unwrap_or_default();
        let frames = frames
            .into_iter()
            .map(|frame| SimFrame {
                header: frame.header,
                payload: frame.unmasked_payload(),
            })
            .collect();
        (frames, bytes.len() - used)
    }

    fn pings_received(&self, side: Side) -> usize {
        let frames = self.frames_received(side);
        frames
            .iter()
            .filter(|f| f.header.opcode == Opcode::Ping)
            .count()
    }

    /// Follows what `from` sends, so that its answers to Pings go between its frames.
    pub(super) fn track_outgoing(&mut self, from: Side, mut bytes: &[u8]) {
        let tracker = &mut self.outgoing[from.index()];
        while !bytes.is_empty() {
            let used = match tracker.advance(bytes) {
                Step::NeedMore | Step::Violation(_) => break,
                Step::Payload { len } => len,
                Step::Header { consumed, .. } | Step::ControlFrame { consumed, .. } => consumed,
            };
            bytes = &bytes[used..];
        }
    }

    /// Whether `side` is between frames of its own (so it may send a Pong now).
    fn between_own_frames(&self, side: Side) -> bool {
        let tracker = &self.outgoing[side.index()];
        tracker.at_frame_boundary() && !tracker.holds_partial_frame()
    }

    /// A fresh, deterministic masking key (for the connection or the scripted client).
    pub(super) fn draw_key(&mut self) -> [u8; 4] {
        self.keys_drawn += 1;
        (self.keys_drawn.wrapping_mul(0x9E37_79B9) ^ 0x5BD1_E995).to_be_bytes()
    }

    /// The peers that answer Pings answer the ones they received since last time.
    pub(super) fn answer_received_pings(&mut self) {
        if self.answering || !self.tunnel {
            return;
        }
        self.answering = true;
        // Bounded: each round answers Pings already received.
        for _ in 0..64 {
            let mut answered = false;
            for side in [Side::Client, Side::Upstream] {
                let answers = self.answer_pings[side.index()] && self.between_own_frames(side);
                if !answers || self.conn.is_closed() {
                    continue;
                }
                let pings: Vec<Vec<u8>> = self
                    .frames_received(side)
                    .into_iter()
                    .filter(|f| f.header.opcode == Opcode::Ping)
                    .map(|f| f.payload)
                    .collect();
                for payload in pings.iter().skip(self.pings_answered[side.index()]) {
                    self.pings_answered[side.index()] += 1;
                    if self.conn.is_closed() || !self.conn.wants_read(side) {
                        continue;
                    }
                    let key = self.draw_key();
                    // A Ping's payload fits a Pong.
                    if let Ok(pong) = encode::pong(side.other(), payload, key) {
                        self.sends(side, &pong);
                        answered = true;
                    }
                }
            }
            if !answered {
                break;
            }
        }
        self.answering = false;
    }
}

/// A tracker of what `from` sends, unvalidated (a test may send broken frames).
pub(super) fn outgoing_tracker(from: Side) -> FrameTracker {
    let rules = Rules {
        validate: false,
        extensions: Extensions::Unknown,
    };
    FrameTracker::new(from, rules)
}
