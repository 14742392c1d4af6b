//! Masking keys for the proxy's own WebSocket frames towards upstreams, drawn from the
//! operating system's CSPRNG (`getrandom`) in blocks: one system call serves
//! [`KEYS_PER_DRAW`] keys instead of one, and a frame-aware tunnel asks for a key as it
//! opens and after each frame of its own (RFC 6455 §5.3 wants each key unpredictable to
//! the peers, which a block of CSPRNG output kept in this thread's memory is; nothing
//! derives one key from another).

use std::cell::RefCell;

/// Keys drawn per system call.
const KEYS_PER_DRAW: usize = 64;

/// This thread's drawn keys, and how many of them are used.
struct Drawn {
    bytes: [u8; 4 * KEYS_PER_DRAW],
    used: usize,
}

thread_local! {
    static DRAWN: RefCell<Drawn> = const {
        RefCell::new(Drawn {
            bytes: [0; 4 * KEYS_PER_DRAW],
            used: KEYS_PER_DRAW,
        })
    };
}

/// A fresh masking key; each is handed out once. Fails only when the CSPRNG does.
pub(crate) fn masking_key() -> Result<[u8; 4], getrandom::Error> {
    DRAWN.with(|drawn| {
        let mut drawn = drawn.borrow_mut();
        if drawn.used == KEYS_PER_DRAW {
            getrandom::fill(&mut drawn.bytes)?;
            drawn.used = 0;
        }
        let at = 4 * drawn.used;
        let mut key = [0; 4];
        key.copy_from_slice(&drawn.bytes[at..at + 4]);
        // Wiped once handed out: a key in use is the only copy of it.
        drawn.bytes[at..at + 4].fill(0);
        drawn.used += 1;
        Ok(key)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_fresh_draws_and_are_not_repeated() {
        let keys: Vec<[u8; 4]> = (0..3 * KEYS_PER_DRAW)
            .map(|_| masking_key().unwrap())
            .collect();
        let distinct: std::collections::HashSet<_> = keys.iter().collect();
        // 192 random 32-bit keys: a repeat is a one-in-a-million chance; a key handed out
        // twice, or a block not drawn again once used (its wiped keys are zeros), repeats
        // many at once.
        assert!(
            distinct.len() >= keys.len() - 1,
            "{} of {}",
            distinct.len(),
            keys.len()
        );
    }
}
