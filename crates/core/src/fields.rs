//! A parsed head's fields: byte ranges into its bytes with each name's [`FieldKind`],
//! kept inline for the usual number of fields so that parsing a head allocates nothing
//! for them (a vector per head was one allocation per request and per response).

use std::ops::{Deref, Range};

use crate::field_kind::FieldKind;

/// Fields kept inline; a head with more keeps them all on the heap.
const INLINE: usize = 24;

/// One header field: where its name and value are in the head's bytes, and what its name
/// is to the core. Offsets are `u32`: a head is far smaller (limits cap it at
/// [`MAX_HEAD`]), and the list stays small enough to move cheaply.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    name_start: u32,
    name_end: u32,
    value_start: u32,
    value_end: u32,
    pub kind: FieldKind,
}

/// The largest head whose fields can be described (offsets are `u32`).
pub(crate) const MAX_HEAD: usize = u32::MAX as usize;

impl Field {
    const EMPTY: Field = Field {
        name_start: 0,
        name_end: 0,
        value_start: 0,
        value_end: 0,
        kind: FieldKind::Other,
    };

    /// A field whose name and value are these ranges of a head of at most [`MAX_HEAD`]
    /// bytes.
    pub(crate) fn new(name: Range<usize>, value: Range<usize>, kind: FieldKind) -> Field {
        debug_assert!(name.end <= MAX_HEAD && value.end <= MAX_HEAD);
        Field {
            name_start: name.start as u32,
            name_end: name.end as u32,
            value_start: value.start as u32,
            value_end: value.end as u32,
            kind,
        }
    }

    /// Where the name is in the head's bytes.
    pub(crate) fn name(&self) -> Range<usize> {
        self.name_start as usize..self.name_end as usize
    }

    /// Where the value is in the head's bytes.
    pub(crate) fn value(&self) -> Range<usize> {
        self.value_start as usize..self.value_end as usize
    }
}

/// A head's fields, in order: inline up to [`INLINE`], all on the heap above.
#[derive(Debug, Clone)]
pub(crate) struct Fields {
    len: usize,
    inline: [Field; INLINE],
    spilled: Vec<Field>,
}

impl Fields {
    /// No fields.
    pub(crate) const EMPTY: Fields = Fields {
        len: 0,
        inline: [Field::EMPTY; INLINE],
        spilled: Vec::new(),
    };

    /// Becomes the fields httparse found in `buf`, each with its kind; returns the set
    /// of kinds ([`FieldKind::bit`]s). `buf` is at most [`MAX_HEAD`] bytes long (so are the
    /// offsets into it).
    pub(crate) fn fill(&mut self, buf: &[u8], parsed: &[httparse::Header<'_>]) -> u32 {
        let mut kinds = 0;
        let base = buf.as_ptr() as usize;
        self.len = parsed.len();
        if parsed.len() > INLINE {
            self.spilled = Vec::with_capacity(parsed.len());
        }
        for (i, h) in parsed.iter().enumerate() {
            let kind = FieldKind::of(h.name.as_bytes());
            kinds |= kind.bit();
            let name = h.name.as_ptr() as usize - base;
            let value = h.value.as_ptr() as usize - base;
            let field = Field::new(
                name..name + h.name.len(),
                value..value + h.value.len(),
                kind,
            );
            match self.inline.get_mut(i) {
                Some(slot) if parsed.len() <= INLINE => *slot = field,
                _ => self.spilled.push(field),
            }
        }
        kinds
    }
}

impl Deref for Fields {
    type Target = [Field];

    fn deref(&self) -> &[Field] {
        if self.len <= INLINE {
            &self.inline[..self.len]
        } else {
            &self.spilled
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Inline or on the heap, the list holds exactly the fields it was filled with.
        #[test]
        fn fields_are_the_ones_built_in_order(count in 0..3 * INLINE) {
            let buf: Vec<u8> = (0..count).flat_map(|_| *b"ab").collect();
            let parsed: Vec<httparse::Header<'_>> = buf
                .chunks(2)
                .map(|pair| httparse::Header {
                    name: std::str::from_utf8(&pair[..1]).unwrap(),
                    value: &pair[1..],
                })
                .collect();
            let mut fields = Fields::EMPTY;
            prop_assert_eq!(fields.fill(&buf, &parsed), if count > 0 { FieldKind::Other.bit() } else { 0 });
            prop_assert_eq!(fields.len(), count);
            for (i, f) in fields.iter().enumerate() {
                prop_assert_eq!((f.name(), f.value()), (2 * i..2 * i + 1, 2 * i + 1..2 * i + 2));
            }
        }
    }
}
