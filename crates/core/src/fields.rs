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

    /// The field httparse found as `h` in the buffer starting at address `base`.
    #[inline(always)]
    fn parsed(base: usize, h: &httparse::Header<'_>) -> Field {
        let name = h.name.as_ptr() as usize - base;
        let value = h.value.as_ptr() as usize - base;
        debug_assert!(name + h.name.len() <= MAX_HEAD && value + h.value.len() <= MAX_HEAD);
        Field {
            name_start: name as u32,
            name_end: (name + h.name.len()) as u32,
            value_start: value as u32,
            value_end: (value + h.value.len()) as u32,
            kind: FieldKind::of(h.name.as_bytes()),
        }
    }

    /// Its length written as `name: value` CRLF.
    #[inline]
    pub(crate) fn line_len(&self) -> usize {
        (self.name_end - self.name_start + self.value_end - self.value_start) as usize + 4
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
    /// The length, as `name: value` CRLF lines, of the fields neither hop-by-hop nor
    /// written by the proxy itself: most of a forwarded head, known without a pass.
    plain_len: usize,
    /// Every value is followed at once by a CR in the buffer parsed (no trailing
    /// whitespace): the line-ending check need not look at the fields one by one.
    cr_after_values: bool,
    inline: [Field; INLINE],
    spilled: Vec<Field>,
}

impl Fields {
    /// No fields.
    pub(crate) const EMPTY: Fields = Fields {
        len: 0,
        plain_len: 0,
        cr_after_values: true,
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
        let mut plain_len = 0;
        let mut cr_after_values = true;
        let mut add = |f: &Field| {
            kinds |= f.kind.bit();
            if f.kind.is_plain() {
                plain_len += f.line_len();
            }
            cr_after_values &= buf.get(f.value_end as usize) == Some(&b'\r');
        };
        if parsed.len() <= INLINE {
            for (slot, h) in self.inline.iter_mut().zip(parsed) {
                *slot = Field::parsed(base, h);
                add(slot);
            }
        } else {
            self.spilled = parsed.iter().map(|h| Field::parsed(base, h)).collect();
            self.spilled.iter().for_each(add);
        }
        self.plain_len = plain_len;
        self.cr_after_values = cr_after_values;
        kinds
    }
}

impl Fields {
    /// The length of the fields neither hop-by-hop nor the proxy's own, each written as
    /// `name: value` CRLF.
    pub(crate) fn plain_len(&self) -> usize {
        self.plain_len
    }

    /// Whether, in the buffer they were found in, every value is followed at once by a CR.
    pub(crate) fn cr_after_values(&self) -> bool {
        self.cr_after_values
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
