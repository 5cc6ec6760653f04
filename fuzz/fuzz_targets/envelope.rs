//! cargo-fuzz target: see `focalpoint::fuzzing::envelope`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| focalpoint::fuzzing::envelope(data));
