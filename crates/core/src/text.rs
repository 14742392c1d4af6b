//! [`Text`]: a piece of a message head carried in an event, sharing the head's bytes.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

/// Text taken from a message head (a request's method or target) for an [`Event`]:
/// a view of the head's own bytes, so making one, or cloning it into every event of an
/// exchange, neither allocates nor copies. Reads as a `&str` ([`as_str`](Self::as_str),
/// `Deref`, `Display`, comparison with `&str`).
///
/// Head bytes that are not UTF-8 are replaced as by [`String::from_utf8_lossy`] (the
/// parser already refuses such a method or target, so this does not happen in practice).
///
/// [`Event`]: crate::Event
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Text(Bytes);

impl Text {
    /// `bytes` as text, without a copy when they are UTF-8.
    pub fn from_bytes(bytes: Bytes) -> Self {
        match std::str::from_utf8(&bytes) {
            Ok(_) => Text(bytes),
            Err(_) => Text(Bytes::from(
                String::from_utf8_lossy(&bytes).into_owned().into_bytes(),
            )),
        }
    }

    /// Bytes a parser already found to be UTF-8 (httparse gives a request's method and
    /// target as `&str`): not checked again when made.
    pub(crate) fn from_utf8_bytes(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Text(bytes)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // UTF-8 when made (checked by `from_bytes`, or by the parser); checked again here
        // rather than trusted, at the cost of one pass over the text when it is read.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// A copy of its own, holding nothing else alive: for text kept long (a tunnel's
    /// target), whose head's bytes would otherwise stay allocated with it.
    pub fn detached(&self) -> Self {
        Text(Bytes::copy_from_slice(&self.0))
    }
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Text(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl From<String> for Text {
    fn from(text: String) -> Self {
        Text(Bytes::from(text.into_bytes()))
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        self.0 == other.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn text_reads_as_the_lossy_utf8_of_its_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            let text = Text::from_bytes(Bytes::from(bytes.clone()));
            let lossy = String::from_utf8_lossy(&bytes);
            prop_assert_eq!(text.as_str(), &*lossy);
            let detached = text.detached();
            prop_assert_eq!(detached.as_str(), &*lossy);
        }
    }

    #[test]
    fn text_of_utf8_bytes_shares_them() {
        let head = Bytes::from_static(b"GET /chat HTTP/1.1");
        let target = Text::from_bytes(head.slice(4..9));
        assert_eq!(target, "/chat");
        assert_eq!(target.0.as_ptr(), head[4..].as_ptr());
    }
}
