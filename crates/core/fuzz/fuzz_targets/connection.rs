//! Arbitrary client/upstream event sequences against one `Connection`; see the crate docs
//! for the invariants checked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_core_fuzz::{run, Event};

fuzz_target!(|events: Vec<Event>| {
    let _ = run(&events);
});
