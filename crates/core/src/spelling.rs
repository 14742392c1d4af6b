//! [`Spelling`]: a known header name (or token) compared with a name from a head a word
//! at a time, case-insensitively, without a byte loop: what [`FieldKind`] and the
//! `Connection` and `Upgrade` readings are told apart by.
//!
//! [`FieldKind`]: crate::field_kind::FieldKind

/// A known name as up to three little-endian words, lower case, with the bits that make
/// an ASCII letter lower case set in `letters`: `(word | letters) == lower` holds exactly
/// when the name's bytes equal the known ones but for the case of letters (a `-` or a
/// digit is compared as it is). A name of 8 bytes or more is read as words at 0, 8, ...,
/// the last one ending at the name's end (overlapping the one before); a shorter one as
/// one word, zero-padded.
pub(crate) struct Spelling {
    pub(crate) len: usize,
    lower: [u64; 3],
    letters: [u64; 3],
}

impl Spelling {
    /// The spelling of `name`, given in lower case.
    pub(crate) const fn new(name: &str) -> Spelling {
        let b = name.as_bytes();
        let mut lower = [0; 3];
        let mut letters = [0; 3];
        let mut j = 0;
        while j < words(b.len()) {
            let at = word_start(b.len(), j);
            let mut i = 0;
            while i < 8 && at + i < b.len() {
                let byte = b[at + i];
                lower[j] |= (byte as u64) << (8 * i);
                if byte.is_ascii_lowercase() {
                    letters[j] |= 0x20 << (8 * i);
                }
                i += 1;
            }
            j += 1;
        }
        Spelling {
            len: b.len(),
            lower,
            letters,
        }
    }

    /// Whether `name` (of this spelling's length) is this name in any case.
    #[inline(always)]
    pub(crate) fn matches(&self, name: &[u8]) -> bool {
        debug_assert_eq!(name.len(), self.len);
        // Spelled out for the one to three words (a loop here is not unrolled).
        match words(name.len()) {
            1 => self.same_word(name, 0),
            2 => self.same_word(name, 0) && self.same_word(name, 1),
            _ => self.same_word(name, 0) && self.same_word(name, 1) && self.same_word(name, 2),
        }
    }

    /// Whether word `j` of `name` is this spelling's, but for the case of letters.
    #[inline(always)]
    fn same_word(&self, name: &[u8], j: usize) -> bool {
        (word(name, word_start(name.len(), j)) | self.letters[j]) == self.lower[j]
    }
}

/// How many words a name of `len` bytes is read as.
const fn words(len: usize) -> usize {
    if len < 8 {
        1
    } else {
        len.div_ceil(8)
    }
}

/// Where the `j`th word of a name of `len` bytes starts.
const fn word_start(len: usize, j: usize) -> usize {
    if len < 8 {
        0
    } else if 8 * j + 8 > len {
        len - 8
    } else {
        8 * j
    }
}

/// The word of `name` at `at`: eight bytes, or a shorter name zero-padded. A shorter
/// name is two overlapping loads (its first and last four bytes, or two, or its one
/// byte), or-ed: the bytes both hold are the same ones, so the word is exact. Where the
/// length is known, this is one or two loads, not a loop.
#[inline(always)]
fn word(name: &[u8], at: usize) -> u64 {
    fn load<const N: usize>(bytes: &[u8]) -> [u8; N] {
        bytes.try_into().unwrap_or([0; N])
    }
    let len = name.len();
    match len {
        8.. => u64::from_le_bytes(load(&name[at..at + 8])),
        4..=7 => {
            let (low, high) = (load::<4>(&name[..4]), load::<4>(&name[len - 4..]));
            u64::from(u32::from_le_bytes(low))
                | u64::from(u32::from_le_bytes(high)) << (8 * (len - 4))
        }
        2..=3 => {
            let (low, high) = (load::<2>(&name[..2]), load::<2>(&name[len - 2..]));
            u64::from(u16::from_le_bytes(low))
                | u64::from(u16::from_le_bytes(high)) << (8 * (len - 2))
        }
        1 => u64::from(name[0]),
        _ => 0,
    }
}

/// Whether `token` is `websocket` in any case (a word compare, for the usual `Upgrade`).
pub(crate) fn is_websocket(token: &[u8]) -> bool {
    const WEBSOCKET: Spelling = Spelling::new("websocket");
    token.len() == WEBSOCKET.len && WEBSOCKET.matches(token)
}
