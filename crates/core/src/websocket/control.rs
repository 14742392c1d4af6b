//! [`ControlPayload`]: a control frame's payload, unmasked, by value.

use std::fmt;
use std::ops::Deref;

use super::header::{apply_mask, MAX_CONTROL_PAYLOAD};

/// The payload of a control frame, unmasked.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ControlPayload {
    bytes: [u8; MAX_CONTROL_PAYLOAD],
    len: u8,
}

impl ControlPayload {
    /// `payload` (at most 125 bytes, as the tracker guarantees), unmasked with `mask`.
    pub(crate) fn unmasked(payload: &[u8], mask: Option<[u8; 4]>) -> Self {
        let len = payload.len().min(MAX_CONTROL_PAYLOAD);
        let mut unmasked = ControlPayload {
            bytes: [0; MAX_CONTROL_PAYLOAD],
            len: len as u8,
        };
        unmasked.bytes[..len].copy_from_slice(&payload[..len]);
        if let Some(key) = mask {
            apply_mask(&mut unmasked.bytes[..len], key, 0);
        }
        unmasked
    }

    /// The payload.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Read as a Close payload: its code, if it has one.
    pub fn close_code(&self) -> Option<u16> {
        match self.as_bytes() {
            [high, low, ..] => Some(u16::from_be_bytes([*high, *low])),
            _ => None,
        }
    }

    /// Read as a Close payload: the reason after the code (not checked as UTF-8).
    pub fn close_reason(&self) -> &[u8] {
        self.as_bytes().get(2..).unwrap_or_default()
    }
}

impl Deref for ControlPayload {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for ControlPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ControlPayload")
            .field(&self.as_bytes())
            .finish()
    }
}
