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
    let (mut frame_aware, mut proxy_frames, mut lent_in_place) = (0, 0, 0);
    for seed in 0..20_000u64 {
        let data = bytes(seed, 64 + (seed as usize % 1024));
        // One event after another until the bytes run out (a sequence as libFuzzer
        // would find one, only many events long).
        let mut input = Unstructured::new(&data);
        // A quarter of the runs open a WebSocket tunnel first (on one of the four
        // routes, by seed), as a corpus entry would: random events rarely get there.
        let mut events = Vec::new();
        if seed % 4 == 0 {
            let request = [1, 13, 14, 15][(seed / 4 % 4) as usize];
            let answer = [2, 12][(seed / 16 % 2) as usize];
            events.extend([
                Event::ClientTemplate(request),
                Event::ConnectOk(false),
                Event::UpstreamTemplate(answer),
            ]);
        }
        while let Ok(event) = Event::arbitrary(&mut input) {
            if input.is_empty() {
                break;
            }
            events.push(event);
        }
        events_played += events.len();
        let outcome = std::panic::catch_unwind(|| run(&events));
        let reached = outcome.unwrap_or_else(|_| panic!("seed {seed}: {events:?}"));
        frame_aware += usize::from(reached.frame_aware_tunnel);
        proxy_frames += reached.proxy_frames;
        lent_in_place += reached.lent_in_place;
    }
    // The generator must actually produce work, or the test proves nothing.
    assert!(
        events_played > 100_000,
        "only {events_played} events played"
    );
    assert!(
        frame_aware > 3_000 && proxy_frames > 1_000,
        "frame-aware tunnels in {frame_aware} runs, {proxy_frames} frames of the proxy's"
    );
    assert!(
        lent_in_place > 500,
        "only {lent_in_place} lent reads forwarded in place"
    );
    println!(
        "frame-aware tunnels in {frame_aware} runs, {proxy_frames} frames of the proxy's, \
         {lent_in_place} lent reads forwarded in place"
    );
}
