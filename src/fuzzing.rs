//! Entry points for the fuzzers (`fuzz/`, run with cargo-fuzz) and for their replay on stable
//! Rust in the test suite. Each takes arbitrary bytes, must never panic on them, and asserts
//! what must hold of whatever it accepts.

use std::path::Path;

use prost::Message;

use crate::domain::model::Digest;
use crate::pb;

/// An envelope as it arrives on the peer plane. What is accepted is canonical: its digest is
/// of exactly the bytes received, and it validates again to the same bytes.
pub fn envelope(data: &[u8]) {
    if let Ok(valid) = crate::domain::validate::decode_canonical(data) {
        assert_eq!(
            valid.bytes, data,
            "accepted bytes are the canonical encoding"
        );
        assert_eq!(valid.digest, Digest::of(data));
        let again = crate::domain::validate::validate(valid.envelope.clone())
            .expect("an accepted envelope validates again");
        assert_eq!(again.bytes, valid.bytes);
        assert_eq!(again.message_id, valid.message_id);
    }
    if let Ok(decoded) = pb::Envelope::decode(data) {
        crate::domain::validate::refusals_quote_nothing(&decoded);
    }
}

/// A machine-readable zone, as operators paste it into alerts.
pub fn mrz(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match crate::domain::mrz::parse(text) {
        Ok(first) => {
            let again = crate::domain::mrz::parse(text).expect("parsing is deterministic");
            assert_eq!(format!("{first:?}"), format!("{again:?}"));
        }
        Err(e) => {
            // Errors name the part of the zone, never quote a line of it (a line of the zone's
            // own alphabet: an error's words are lower case).
            let message = e.to_string();
            let zone_line = |l: &&str| {
                l.len() >= 30
                    && l.bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'<')
            };
            for line in text.lines().filter(zone_line) {
                assert!(!message.contains(line), "an MRZ error quotes the zone");
            }
        }
    }
}

/// Configuration and figures files: node and client configuration (TOML), and statistics
/// figures (CSV and JSON).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) =
        crate::node::config::NodeConfig::parse(Path::new("/etc/focalpoint/node.toml"), text)
    {
        assert!(config.limits.problem().is_none());
        assert!(!config.peers.is_empty());
    }
    let _ = toml::from_str::<crate::node::config::ClientConfig>(text);
    for name in ["figures.csv", "figures.json"] {
        if let Ok(figures) = crate::cli::figures::parse_figures(name, text) {
            for counter in &figures.counters {
                assert!(
                    crate::domain::validate::is_counter_name(&counter.name),
                    "{name} accepted counter {:?}",
                    counter.name
                );
                if !counter.breakdown.is_empty() {
                    let sum: u128 = counter.breakdown.iter().map(|b| u128::from(b.value)).sum();
                    assert_eq!(
                        sum,
                        u128::from(counter.value),
                        "locations add up to the total"
                    );
                }
            }
        }
    }
}

/// Stored log bytes: an entry in its place in the chain, sealed content, a checkpoint, a
/// receipt and a reconciliation. Decoding never panics, nothing forged opens or verifies.
pub fn log_entry(data: &[u8]) {
    if let Ok(entry) = crate::log::link(1, &crate::log::GENESIS, data) {
        assert_eq!(entry.sequence, 1);
        assert_eq!(entry.previous_hash, crate::log::GENESIS.0);
    }
    let key = crate::crypto::seal::LogKey::from_bytes(&[7; 32]);
    assert!(
        key.open(1, &Digest::of(data).0, data).is_err(),
        "forged sealed content opened"
    );
    let _ = crate::exchange::checkpoint::open(data);
    let _ = pb::Reconciliation::decode(data);
    if let Ok(signed) = pb::SignedReceipt::decode(data) {
        let anchors = example_anchors();
        assert!(
            crate::crypto::receipt::verify(&signed, &anchors, "KHM".parse().expect("country"))
                .is_err(),
            "a forged receipt verified"
        );
    }
}

fn example_anchors() -> Vec<rustls::pki_types::CertificateDer<'static>> {
    let pem = include_bytes!("../certs-example/khm/ca.pem");
    rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .expect("the example CA parses")
}
