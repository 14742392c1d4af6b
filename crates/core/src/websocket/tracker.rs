//! [`FrameTracker`]: one direction of a WebSocket tunnel, followed frame by frame.

use std::fmt;

use super::control::ControlPayload;
use super::header::{
    apply_mask, FrameHeader, HeaderStatus, Opcode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN,
};
use super::validate::{Rules, Validator, Violation};
use crate::io::Side;

/// The most bytes a tracker holds: a header, and the payload of a control frame.
const MAX_HELD: usize = MAX_HEADER_LEN + MAX_CONTROL_PAYLOAD;

/// What the bytes shown to [`FrameTracker::advance`] were, and what to do with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// All the bytes shown belong to a header (or a control frame) that is not complete;
    /// the tracker holds them. Forward nothing yet; show the next bytes read.
    NeedMore,
    /// The first `len` bytes shown are payload of the current data frame: forward them
    /// raw. `len` is less than the input only where the frame ends.
    Payload {
        /// How many of the bytes shown are payload.
        len: usize,
    },
    /// A data frame's header is complete (and valid, if validating). Forward
    /// [`FrameTracker::carried`], then the first `consumed` bytes shown; then its
    /// `header.payload_len` payload bytes follow, to forward raw: show them
    /// ([`Step::Payload`]) or move them unseen ([`FrameTracker::payload_forwarded`]).
    Header {
        /// The header.
        header: FrameHeader,
        /// How many of the bytes shown completed it.
        consumed: usize,
    },
    /// A whole Close, Ping or Pong frame, header and payload. Its bytes are
    /// [`FrameTracker::carried`] and the first `consumed` bytes shown: forward them, or
    /// absorb them (a Pong answering the proxy's own Ping). Its payload, unmasked, is
    /// [`FrameTracker::control_payload`]. The tracker is back at a frame boundary.
    ControlFrame {
        /// The header.
        header: FrameHeader,
        /// How many of the bytes shown ended the frame.
        consumed: usize,
    },
    /// The frame being read breaks a rule. None of it may be forwarded; the tunnel ends
    /// with Close 1002. Every later call gives the same answer.
    Violation(Violation),
}

/// What a direction has carried so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameStats {
    /// Frames whose header was complete, control frames included.
    pub frames: u64,
    /// Data messages whose final frame's header was complete.
    pub messages: u64,
    /// Ping frames. A tracker stops counting Pings, Pongs and Closes at 2³² − 1.
    pub pings: u64,
    /// Pong frames (also those the proxy absorbs).
    pub pongs: u64,
    /// Close frames.
    pub close_frames: u64,
    /// The code of the first Close frame, if it carried one (none is 1005 in logs).
    pub close_code: Option<u16>,
}

/// [`FrameTracker::payload_forwarded`] was told of more payload than the frame has left.
/// The caller's mistake: peers cannot cause it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadOverrun {
    /// The bytes reported forwarded.
    pub forwarded: u64,
    /// The payload bytes the frame had left.
    pub remaining: u64,
}

impl fmt::Display for PayloadOverrun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} payload bytes forwarded, but the frame had {} left",
            self.forwarded, self.remaining
        )
    }
}

impl std::error::Error for PayloadOverrun {}

/// Follows the frames of one direction of a WebSocket tunnel (RFC 6455 §5.2) without
/// ever copying a data frame's payload.
///
/// The caller shows it the bytes it read, from where the last step left off, with
/// [`FrameTracker::advance`]; each [`Step`] says how many of them to forward and what
/// they were. Headers (and control frames, at most 139 bytes) split across reads are
/// held by the tracker until whole, so nothing of a frame is forwarded before it is
/// known to be valid; their bytes from earlier reads are then given back by
/// [`FrameTracker::carried`]. Payload bytes may be forwarded without being shown at all
/// (`splice(2)`), reported with [`FrameTracker::payload_forwarded`].
///
/// Between frames of this direction ([`FrameTracker::at_frame_boundary`]) the proxy may
/// write frames of its own into it, even in the middle of a fragmented message.
///
/// # Examples
/// ```
/// use switchyard_core::websocket::{FrameTracker, Opcode, Rules, Step};
/// use switchyard_core::Side;
///
/// let mut tracker = FrameTracker::new(Side::Upstream, Rules::default());
/// let mut forwarded = Vec::new();
/// let mut frames = Vec::new();
/// // A text frame "hello", a Ping "p" whose header arrives in two reads, then "bye".
/// let reads: [&[u8]; 3] = [b"\x81\x05hel", b"lo\x89", b"\x01p\x81\x03bye"];
/// for read in reads {
///     let mut rest = read;
///     while !rest.is_empty() {
///         let used = match tracker.advance(rest) {
///             Step::NeedMore => break, // the tracker holds the rest
///             Step::Payload { len } => len,
///             Step::Header { header, consumed } | Step::ControlFrame { header, consumed } => {
///                 // Bytes of this frame held from earlier reads come first.
///                 forwarded.extend_from_slice(tracker.carried());
///                 frames.push(header.opcode);
///                 consumed
///             }
///             Step::Violation(violation) => panic!("{violation}"),
///         };
///         forwarded.extend_from_slice(&rest[..used]);
///         rest = &rest[used..];
///     }
/// }
/// assert_eq!(frames, [Opcode::Text, Opcode::Ping, Opcode::Text]);
/// assert_eq!(forwarded, b"\x81\x05hello\x89\x01p\x81\x03bye");
/// assert!(tracker.at_frame_boundary());
/// assert_eq!((tracker.stats().messages, tracker.stats().pings), (2, 1));
/// ```
#[derive(Clone)]
pub struct FrameTracker {
    validator: Validator,
    /// The raw bytes of the frame head being read: its header and, for a control frame,
    /// its payload. Out of line, and only while there are some: most headers are whole
    /// in one read and never held, and an idle tunnel has two trackers.
    held: Option<Box<[u8; MAX_HELD]>>,
    held_len: u8,
    /// How many of the held bytes of the frame completed by the last step came from
    /// earlier calls (zero after any other step).
    carried_len: u8,
    /// The held bytes are a whole frame head, shown by the last header step.
    complete: bool,
    payload_remaining: u64,
    violation: Option<Violation>,
    counts: Counts,
}

/// [`FrameStats`] as a tracker keeps them: the control-frame counts in 32 bits, which
/// 4 billion Pings, Pongs or Closes per direction would saturate (no decision reads more
/// than whether a Close came), so that a tracker is 56 bytes rather than 72; an idle
/// frame-aware tunnel holds two.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    frames: u64,
    messages: u64,
    pings: u32,
    pongs: u32,
    close_frames: u32,
    close_code: Option<u16>,
}

impl Counts {
    fn stats(&self) -> FrameStats {
        FrameStats {
            frames: self.frames,
            messages: self.messages,
            pings: u64::from(self.pings),
            pongs: u64::from(self.pongs),
            close_frames: u64::from(self.close_frames),
            close_code: self.close_code,
        }
    }
}

impl FrameTracker {
    /// A tracker for the frames sent by `from`, at the start of the tunnel.
    pub fn new(from: Side, rules: Rules) -> Self {
        FrameTracker {
            validator: Validator::new(from, rules),
            held: None,
            held_len: 0,
            carried_len: 0,
            complete: false,
            payload_remaining: 0,
            violation: None,
            counts: Counts::default(),
        }
    }

    /// Takes the next bytes of the direction, from where the last step left off (the
    /// bytes after those it consumed; a [`Step::NeedMore`] consumed all). See [`Step`]
    /// for what to do with them. Showing no bytes moves nothing (inside a payload it
    /// gives `Payload { len: 0 }`), but like every call it ends what
    /// [`FrameTracker::carried`] and [`FrameTracker::control_payload`] give for the
    /// last step: read them first.
    pub fn advance(&mut self, input: &[u8]) -> Step {
        self.carried_len = 0;
        if let Some(violation) = self.violation {
            return Step::Violation(violation);
        }
        if self.payload_remaining > 0 {
            let len = self.payload_remaining.min(input.len() as u64);
            self.payload_remaining -= len;
            // `len` is at most `input.len()`, so it fits.
            return Step::Payload { len: len as usize };
        }
        if self.complete {
            self.complete = false;
            self.held_len = 0;
        }
        if self.held_len == 0 {
            if let Some(step) = self.whole_data_header(input) {
                return step;
            }
        }
        let carried = self.held_len;
        let mut consumed = 0;
        let (header, header_len) = loop {
            let held = self.held();
            let needed = match FrameHeader::parse(held) {
                HeaderStatus::Partial { needed } => needed,
                HeaderStatus::Complete { header, len } => {
                    let whole = len + held_payload_len(&header);
                    if held.len() >= whole {
                        break (header, len);
                    }
                    whole
                }
            };
            let take = needed
                .saturating_sub(held.len())
                .min(input.len() - consumed);
            if take == 0 {
                return Step::NeedMore;
            }
            let start = held.len();
            let room = self.held.get_or_insert_with(|| Box::new([0; MAX_HELD]));
            room[start..start + take].copy_from_slice(&input[consumed..consumed + take]);
            // At most MAX_HELD (139) bytes are ever held.
            self.held_len += take as u8;
            consumed += take;
            if let Err(violation) = self.validator.check_prefix(self.header_prefix()) {
                self.violation = Some(violation);
                return Step::Violation(violation);
            }
        };
        self.complete = true;
        self.carried_len = carried;
        self.count(&header, header_len);
        if holds_payload(&header) {
            return Step::ControlFrame { header, consumed };
        }
        self.payload_remaining = header.payload_len;
        Step::Header { header, consumed }
    }

    /// The common case, without holding anything: a data frame's whole header at the
    /// start of `input`. `None` when the slow path must gather the bytes.
    fn whole_data_header(&mut self, input: &[u8]) -> Option<Step> {
        match self.data_header(input)? {
            Ok((header, len)) => {
                self.take_data_header(&header, len);
                Some(Step::Header {
                    header,
                    consumed: len,
                })
            }
            Err(violation) => {
                self.violation = Some(violation);
                Some(Step::Violation(violation))
            }
        }
    }

    /// A data frame's whole header at the start of `input`, checked, and its length;
    /// `None` when there is none there (a split header, or a control frame, which the
    /// tracker holds whole). Takes nothing in.
    #[inline]
    fn data_header(&self, input: &[u8]) -> Option<Result<(FrameHeader, usize), Violation>> {
        let HeaderStatus::Complete { header, len } = FrameHeader::parse(input) else {
            return None;
        };
        if holds_payload(&header) {
            return None;
        }
        let checked = self.validator.check_header(&header);
        debug_assert_eq!(checked, self.validator.check_prefix(&input[..len]));
        Some(checked.map(|()| (header, len)))
    }

    /// A data frame's header (whole, checked) is taken in: its payload follows.
    #[inline]
    fn take_data_header(&mut self, header: &FrameHeader, len: usize) {
        self.complete = true;
        self.count(header, len);
        self.payload_remaining = header.payload_len;
    }

    /// [`FrameTracker::advance`] over the plain part of `input` in one pass, without
    /// the steps: the rest of the current data frame's payload, then every data frame
    /// whose header is whole in `input` and valid, the last one's payload possibly cut
    /// by the end of `input`, taken in and counted exactly as `advance` would. Returns
    /// how many bytes that was, all of them to forward as they are (nothing of it is
    /// ever [`carried`](Self::carried)). It stops before anything else (a control frame,
    /// a header cut by the end of `input`, a frame that breaks a rule, bytes of a frame
    /// head held from earlier) and leaves that to `advance`, which may be called next
    /// on the bytes after the ones consumed. The lent read's path: a read of small
    /// messages is followed at the cost of a header parse and check per frame.
    pub fn advance_data_frames(&mut self, input: &[u8]) -> usize {
        self.carried_len = 0;
        if self.violation.is_some() {
            return 0;
        }
        if self.complete {
            self.complete = false;
            self.held_len = 0;
        }
        if self.held_len > 0 {
            return 0;
        }
        let mut used = 0;
        loop {
            let rest = &input[used..];
            if self.payload_remaining > 0 {
                let len = self.payload_remaining.min(rest.len() as u64);
                self.payload_remaining -= len;
                // `len` is at most `rest.len()`, so it fits.
                used += len as usize;
                if self.payload_remaining > 0 {
                    return used;
                }
                continue;
            }
            if rest.is_empty() {
                return used;
            }
            let Some(Ok((header, len))) = self.data_header(rest) else {
                return used;
            };
            self.take_data_header(&header, len);
            used += len;
        }
    }

    /// Reports `len` payload bytes of the current frame forwarded without being shown
    /// (spliced). At most [`FrameTracker::payload_remaining`].
    pub fn payload_forwarded(&mut self, len: u64) -> Result<(), PayloadOverrun> {
        if len > self.payload_remaining {
            return Err(PayloadOverrun {
                forwarded: len,
                remaining: self.payload_remaining,
            });
        }
        self.payload_remaining -= len;
        self.carried_len = 0;
        Ok(())
    }

    /// The bytes of the frame head just completed ([`Step::Header`],
    /// [`Step::ControlFrame`]) that were shown in earlier calls, to forward before the
    /// bytes the step consumed. Empty after any other step, and whenever the whole head
    /// came in one call.
    pub fn carried(&self) -> &[u8] {
        self.held
            .as_deref()
            .map_or(&[], |held| &held[..usize::from(self.carried_len)])
    }

    /// The unmasked payload of the control frame of the last [`Step::ControlFrame`];
    /// `None` once a later step has begun another frame, or if there was none.
    pub fn control_payload(&self) -> Option<ControlPayload> {
        if !self.complete {
            return None;
        }
        let held = self.held();
        let HeaderStatus::Complete { header, len } = FrameHeader::parse(held) else {
            return None;
        };
        if !holds_payload(&header) {
            return None;
        }
        Some(ControlPayload::unmasked(&held[len..], header.mask))
    }

    /// Payload bytes of the current data frame still to forward raw; zero at a frame
    /// boundary.
    pub fn payload_remaining(&self) -> u64 {
        self.payload_remaining
    }

    /// Whether everything forwarded so far ends at a frame boundary, so a frame of the
    /// proxy's own may be written into this direction now. Bytes the tracker holds do
    /// not count: they have not been forwarded. Also true after a violation, whose frame
    /// is never forwarded, so the Close 1002 can follow.
    pub fn at_frame_boundary(&self) -> bool {
        self.payload_remaining == 0
    }

    /// Whether the tracker holds part of a header or control frame, waiting for more.
    /// A peer that ends its stream now ended it inside a frame.
    pub fn holds_partial_frame(&self) -> bool {
        !self.complete && self.held_len > 0 && self.violation.is_none()
    }

    /// Whether a fragmented data message has begun and not yet ended (control frames
    /// may still come between its fragments).
    pub fn in_fragmented_message(&self) -> bool {
        self.validator.in_message()
    }

    /// The violation that stopped this direction, if any.
    pub fn violation(&self) -> Option<Violation> {
        self.violation
    }

    /// The counts so far.
    pub fn stats(&self) -> FrameStats {
        self.counts.stats()
    }

    /// Whether a Close frame came in this direction.
    pub(crate) fn saw_close(&self) -> bool {
        self.counts.close_frames > 0
    }

    #[inline]
    fn count(&mut self, header: &FrameHeader, header_len: usize) {
        let counts = &mut self.counts;
        counts.frames += 1;
        if self.validator.commit(header) {
            counts.messages += 1;
        }
        match header.opcode {
            Opcode::Ping => counts.pings = counts.pings.saturating_add(1),
            Opcode::Pong => counts.pongs = counts.pongs.saturating_add(1),
            Opcode::Close => {
                counts.close_frames = counts.close_frames.saturating_add(1);
                // Empty unless the tracker holds the payload.
                let payload = self.held().get(header_len..).unwrap_or_default();
                if let (None, &[high, low, ..]) = (self.counts.close_code, payload) {
                    let mut code = [high, low];
                    if let Some(key) = header.mask {
                        apply_mask(&mut code, key, 0);
                    }
                    self.counts.close_code = Some(u16::from_be_bytes(code));
                }
            }
            _ => {}
        }
    }

    /// The bytes of the frame head held so far.
    fn held(&self) -> &[u8] {
        self.held
            .as_deref()
            .map_or(&[], |held| &held[..usize::from(self.held_len)])
    }

    /// Lets go of the room for a split frame head unless part of one is held (then it
    /// is still needed). Like any call, it ends what [`carried`](Self::carried) and
    /// [`control_payload`](Self::control_payload) give for the last step. The room is
    /// taken again when a head is split across reads or a control frame is read; a
    /// tunnel sheds after each read, so that an idle one keeps none.
    pub fn shed(&mut self) {
        self.carried_len = 0;
        if self.complete {
            self.complete = false;
            self.held_len = 0;
        }
        if self.held_len == 0 {
            self.held = None;
        }
    }

    /// Whether the room for a split frame head is allocated.
    #[cfg(test)]
    pub(crate) fn holds_room(&self) -> bool {
        self.held.is_some()
    }

    /// The held bytes that belong to the header (what the rules look at).
    fn header_prefix(&self) -> &[u8] {
        let held = self.held();
        match held.get(1) {
            Some(&second) => &held[..held.len().min(super::header::header_len(second))],
            None => held,
        }
    }
}

/// Whether the tracker holds a frame's payload: that of a Close, Ping or Pong that fits
/// (always, when validating); no other.
fn holds_payload(header: &FrameHeader) -> bool {
    matches!(header.opcode, Opcode::Close | Opcode::Ping | Opcode::Pong)
        && header.payload_len <= MAX_CONTROL_PAYLOAD as u64
}

/// How many of a frame's payload bytes the tracker holds.
fn held_payload_len(header: &FrameHeader) -> usize {
    if holds_payload(header) {
        header.payload_len as usize
    } else {
        0
    }
}

impl fmt::Debug for FrameTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameTracker")
            .field("validator", &self.validator)
            .field("held", &self.held())
            .field("complete", &self.complete)
            .field("payload_remaining", &self.payload_remaining)
            .field("violation", &self.violation)
            .field("stats", &self.counts)
            .finish()
    }
}
