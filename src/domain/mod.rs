//! The product's values, pure: typed values parsed once (countries, message ids, identities,
//! instants), ICAO 9303 machine-readable zones, envelope validation, what a message can be found by, case status and response times, what may flow with a peer, and the names of message
//! kinds and periods. No I/O, no storage, no transport.

pub mod agreement;
pub mod case;
pub mod kinds;
pub mod model;
pub mod mrz;
pub mod search;
pub mod validate;
