//! cargo-fuzz target: see `focalpoint::fuzzing::log_entry`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| focalpoint::fuzzing::log_entry(data));
