//! Arbitrary bytes as a connection's first bytes on a listener that requires a PROXY
//! header; see `run_proxy_header` for the invariants checked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_core_fuzz::run_proxy_header;

fuzz_target!(|data: &[u8]| run_proxy_header(data));
