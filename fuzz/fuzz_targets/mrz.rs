//! cargo-fuzz target: see `focalpoint::fuzzing::mrz`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| focalpoint::fuzzing::mrz(data));
