//! cargo-fuzz target: see `focalpoint::fuzzing::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| focalpoint::fuzzing::config(data));
