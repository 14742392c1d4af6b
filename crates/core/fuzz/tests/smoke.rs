//! Plays the fuzz harness on deterministic pseudo-random inputs, so that `cargo test`
//! exercises the target's invariants on stable Rust without libFuzzer. A violated
//! invariant panics inside `run`, failing the test with the seed in its name.

use arbitrary::{Arbitrary, Unstructured};
use switchyard_core_fuzz::{run, Event};

/// xorshift64*: a fixed, seedable byte stream (no randomness at test time).
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

#[test]
fn the_fuzz_target_holds_its_invariants_on_twenty_thousand_seeded_inputs() {
    let mut events_played = 0;
    for seed in 0..20_000u64 {
        let data = bytes(seed, 64 + (seed as usize % 1024));
        // One event after another until the bytes run out (a sequence as libFuzzer
        // would find one, only many events long).
        let mut input = Unstructured::new(&data);
        let mut events = Vec::new();
        while let Ok(event) = Event::arbitrary(&mut input) {
            if input.is_empty() {
                break;
            }
            events.push(event);
        }
        events_played += events.len();
        let outcome = std::panic::catch_unwind(|| run(&events));
        assert!(outcome.is_ok(), "seed {seed}: {events:?}");
    }
    // The generator must actually produce work, or the test proves nothing.
    assert!(
        events_played > 100_000,
        "only {events_played} events played"
    );
}
