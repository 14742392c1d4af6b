//! A parsed head's fields: byte ranges into its bytes with each name's [`FieldKind`],
//! kept inline for the usual number of fields so that parsing a head allocates nothing
//! for them (a vector per head was one allocation per request and per response).

use std::ops::{Deref, Range};

use crate::field_kind::FieldKind;

/// Fields kept inline; a head with more keeps them all on the heap.
const INLINE: usize = 24;

/// Runs of plain lines kept ([`Fields::plain_runs`]); a head with more is written field
/// by field.
const RUNS: usize = 8;

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
    /// How many of `runs` there are, or `u8::MAX` when the plain fields are not all
    /// written plainly, or lie in more than [`RUNS`] runs.
    run_count: u8,
    /// The plain fields' lines as runs of adjacent lines, as start and end offsets.
    runs: [(u32, u32); RUNS],
    inline: [Field; INLINE],
    spilled: Vec<Field>,
}

impl Fields {
    /// No fields.
    pub(crate) const EMPTY: Fields = Fields {
        len: 0,
        plain_len: 0,
        cr_after_values: true,
        run_count: 0,
        runs: [(0, 0); RUNS],
        inline: [Field::EMPTY; INLINE],
        spilled: Vec::new(),
    };

    /// Becomes the fields httparse found in `buf`, each with its kind; returns the set
    /// of kinds ([`FieldKind::bit`]s) and the set of those seen more than once. `buf` is
    /// at most [`MAX_HEAD`] bytes long (so are the offsets into it).
    pub(crate) fn fill(&mut self, buf: &[u8], parsed: &[httparse::Header<'_>]) -> (u32, u32) {
        let mut kinds = 0;
        let mut repeated = 0;
        let base = buf.as_ptr() as usize;
        self.len = parsed.len();
        let mut plain_len = 0;
        let mut cr_after_values = true;
        let mut run_count = 0;
        let runs = &mut self.runs;
        let mut add = |f: &Field| {
            repeated |= kinds & f.kind.bit();
            kinds |= f.kind.bit();
            let cr_after = buf.get(f.value_end as usize) == Some(&b'\r');
            cr_after_values &= cr_after;
            if f.kind.is_plain() {
                plain_len += f.line_len();
                // `name: value` CRLF exactly (httparse found the colon right after the
                // name, and a CR is followed by LF): the line may be copied as it is.
                let plainly = cr_after
                    && f.value_start == f.name_end + 2
                    && buf.get(f.name_end as usize + 1) == Some(&b' ');
                let line_end = f.value_end + 2;
                if !plainly {
                    run_count = u8::MAX;
                } else if run_count > 0
                    && usize::from(run_count) <= RUNS
                    && runs[usize::from(run_count) - 1].1 == f.name_start
                {
                    runs[usize::from(run_count) - 1].1 = line_end;
                } else if usize::from(run_count) < RUNS {
                    runs[usize::from(run_count)] = (f.name_start, line_end);
                    run_count += 1;
                } else {
                    run_count = u8::MAX;
                }
            }
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
        self.run_count = run_count;
        (kinds, repeated)
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

    /// The plain fields (neither hop-by-hop nor the proxy's own) as ranges of whole
    /// `name: value` CRLF lines of the buffer they were found in, adjacent lines in one
    /// range, in order; `None` when one of them is written otherwise (whitespace around
    /// the value) or they lie in too many pieces. Found while the fields are filled in,
    /// so a forwarded head is a few copies without a second look at its fields.
    pub(crate) fn plain_runs(&self) -> Option<impl Iterator<Item = Range<usize>> + '_> {
        let runs = self.runs.get(..usize::from(self.run_count))?;
        Some(
            runs.iter()
                .map(|&(start, end)| start as usize..end as usize),
        )
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
            let other = FieldKind::Other.bit();
            let kinds = (if count > 0 { other } else { 0 }, if count > 1 { other } else { 0 });
            prop_assert_eq!(fields.fill(&buf, &parsed), kinds);
            prop_assert_eq!(fields.len(), count);
            for (i, f) in fields.iter().enumerate() {
                prop_assert_eq!((f.name(), f.value()), (2 * i..2 * i + 1, 2 * i + 1..2 * i + 2));
            }
        }
    }
}
