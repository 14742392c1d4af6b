//! A parsed head's fields: byte ranges into its bytes with each name's [`FieldKind`],
//! kept inline for the usual number of fields so that parsing a head allocates nothing
//! for them (a vector per head was one allocation per request and per response).

use std::ops::{Deref, Range};

use crate::field_kind::{FieldKind, KINDS};

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

    /// The field whose name is `buf[name]` and whose value is `buf[value]`, offsets into
    /// a buffer of at most [`MAX_HEAD`] bytes.
    #[inline(always)]
    pub(crate) fn at(buf: &[u8], name: Range<usize>, value: Range<usize>) -> Field {
        Field {
            kind: FieldKind::of(&buf[name.clone()]),
            name_start: name.start as u32,
            name_end: name.end as u32,
            value_start: value.start as u32,
            value_end: value.end as u32,
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
    /// For each kind, the index of its last field (0 past index 255): where a search
    /// for the one field of a kind that is not repeated can start.
    last: [u8; KINDS],
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
        last: [0; KINDS],
    };

    /// Becomes the fields httparse found in `buf`, each with its kind; returns the set
    /// of kinds ([`FieldKind::bit`]s) and the set of those seen more than once. `buf` is
    /// at most [`MAX_HEAD`] bytes long (so are the offsets into it).
    pub(crate) fn fill(&mut self, buf: &[u8], parsed: &[httparse::Header<'_>]) -> (u32, u32) {
        let base = buf.as_ptr() as usize;
        let mut tally = Tally::new();
        let mut add = |index: usize, f: &Field| {
            // `name: value` CRLF exactly (httparse found the colon right after the name,
            // and a CR is followed by LF): the line may be copied as it is.
            let cr_after = buf.get(f.value_end as usize) == Some(&b'\r');
            let plainly = cr_after
                && f.value_start == f.name_end + 2
                && buf.get(f.name_end as usize + 1) == Some(&b' ');
            tally.add(&mut self.runs, f, cr_after, plainly);
            self.last[f.kind as usize] = u8::try_from(index).unwrap_or(0);
        };
        if parsed.len() <= INLINE {
            for (index, (slot, h)) in self.inline.iter_mut().zip(parsed).enumerate() {
                *slot = Field::parsed(base, h);
                add(index, slot);
            }
        } else {
            self.spilled = parsed.iter().map(|h| Field::parsed(base, h)).collect();
            for (index, f) in self.spilled.iter().enumerate() {
                add(index, f);
            }
        }
        self.finish(parsed.len(), tally)
    }

    /// Puts `field` at `index` (below [`INLINE`]) and counts it in `tally`, for a parser
    /// that finds the fields one by one, each written `name: value` CRLF exactly when
    /// `plainly` (see [`Tally::add`]).
    #[inline(always)]
    pub(crate) fn put(&mut self, index: usize, field: Field, tally: &mut Tally, plainly: bool) {
        self.inline[index] = field;
        self.last[field.kind as usize] = index as u8;
        tally.add(&mut self.runs, &field, true, plainly);
    }

    /// Ends a fill of `len` fields counted in `tally`; returns the kinds seen and the
    /// kinds seen more than once.
    #[inline(always)]
    pub(crate) fn finish(&mut self, len: usize, tally: Tally) -> (u32, u32) {
        self.len = len;
        self.plain_len = tally.plain_len;
        self.cr_after_values = tally.cr_after_values;
        self.run_count = tally.run_count;
        (tally.kinds, tally.repeated)
    }

    /// Where a search for the fields of `kind` may start: the index of its last field
    /// when it has just one, otherwise 0.
    #[inline]
    pub(crate) fn search_from(&self, kind: FieldKind, only_one: bool) -> usize {
        if only_one {
            usize::from(self.last[kind as usize])
        } else {
            0
        }
    }

    /// How many fields fit inline (a parser that fills them one by one with
    /// [`put`](Self::put) takes at most this many).
    pub(crate) const INLINE: usize = INLINE;
}

/// What a fill has seen of the fields so far: the kinds, the plain fields' length and
/// runs of lines, whether every value ends its line.
pub(crate) struct Tally {
    kinds: u32,
    repeated: u32,
    plain_len: usize,
    cr_after_values: bool,
    run_count: u8,
}

impl Tally {
    pub(crate) fn new() -> Tally {
        Tally {
            kinds: 0,
            repeated: 0,
            plain_len: 0,
            cr_after_values: true,
            run_count: 0,
        }
    }

    /// Counts `f`; `cr_after`: a CR follows its value at once; `plainly`: its line is
    /// `name: value` CRLF exactly, so it may be copied as it is.
    #[inline(always)]
    fn add(&mut self, runs: &mut [(u32, u32); RUNS], f: &Field, cr_after: bool, plainly: bool) {
        self.repeated |= self.kinds & f.kind.bit();
        self.kinds |= f.kind.bit();
        self.cr_after_values &= cr_after;
        if f.kind.is_plain() {
            self.plain_len += f.line_len();
            let line_end = f.value_end + 2;
            let count = usize::from(self.run_count);
            if !plainly {
                self.run_count = u8::MAX;
            } else if count > 0 && count <= RUNS && runs[count - 1].1 == f.name_start {
                runs[count - 1].1 = line_end;
            } else if count < RUNS {
                runs[count] = (f.name_start, line_end);
                self.run_count += 1;
            } else {
                self.run_count = u8::MAX;
            }
        }
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
