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

#[test]
fn the_proxy_header_target_holds_its_invariants_on_seeded_inputs() {
    use switchyard_core_fuzz::run_proxy_header;
    let seeds: [&[u8]; 4] = [
        b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n\r\n",
        b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n",
        b"PROXY UNKNOWN\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x01\xc6\x33\x64\x02\xdc\x04\x01\xbb",
    ];
    let mut done = 0;
    for seed in 0..20_000u64 {
        let noise = bytes(seed, 1 + (seed as usize % 80));
        // A valid header with a few bytes overwritten, or cut and followed by noise,
        // or noise alone.
        let base = seeds[(seed % 4) as usize];
        let mut data = vec![noise[0]];
        match seed % 3 {
            0 => {
                data.extend_from_slice(base);
                for pair in noise[1..].chunks(2).take(2) {
                    if let [at, value] = pair {
                        let at = usize::from(*at) % data.len().max(2);
                        data[at.max(1)] = *value;
                    }
                }
            }
            1 => {
                data.extend_from_slice(&base[..usize::from(noise[0]) % base.len()]);
                data.extend_from_slice(&noise[1..]);
            }
            _ => data.extend_from_slice(&noise[1..]),
        }
        let outcome = std::panic::catch_unwind(|| run_proxy_header(&data));
        outcome.unwrap_or_else(|_| panic!("seed {seed}: {data:?}"));
        if switchyard_core::proxy_protocol::parse(&data[1..])
            .is_ok_and(|p| p != switchyard_core::proxy_protocol::Parsed::NeedMore)
        {
            done += 1;
        }
    }
    // Mutations leave a good share valid, so both paths are exercised.
    assert!(done > 1_000, "only {done} inputs held a whole header");
    for seed in seeds {
        let mut data = vec![3];
        data.extend_from_slice(seed);
        run_proxy_header(&data);
    }
}
