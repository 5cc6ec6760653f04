//! The fuzz targets on stable Rust: every seed of `fuzz/seeds/`, the project's own examples,
//! and a fixed series of mutations of each, through the same entry points cargo-fuzz drives
//! (`focalpoint::fuzzing`). A short, deterministic run that belongs in every test run; the
//! long runs are `cargo +nightly fuzz run <target>` (README, "Fuzzing").
//!
//! `FOCALPOINT_WRITE_SEEDS=1` rewrites `fuzz/seeds/` from the examples and a real log.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use focalpoint::log::{Durability, ExchangeLog, LogOptions, NewEntry};
use focalpoint::pb;
use prost::Message;

const MUTATIONS_PER_SEED: usize = 400;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// One mutation of `input`, sometimes spliced with `other`.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(3) {
        let at = rng.below(out.len() + 1);
        match rng.below(7) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = [0x00, 0xff, 0x7f, 0x80, b'<', b'\n', b'"'][rng.below(7)];
            }
            2 => {
                let end = (at + rng.below(16)).min(out.len());
                out.drain(at..end);
            }
            3 => {
                let end = (at + rng.below(32)).min(out.len());
                let copy = out[at..end].to_vec();
                out.splice(at..at, copy);
            }
            4 => {
                let bytes: Vec<u8> = (0..rng.below(8)).map(|_| rng.next() as u8).collect();
                out.splice(at..at, bytes);
            }
            5 => out.truncate(at),
            _ => {
                let from = rng.below(other.len() + 1);
                let end = (from + rng.below(64)).min(other.len());
                out.splice(at..at, other[from..end].iter().copied());
            }
        }
    }
    out
}

fn seeds_dir(target: &str) -> PathBuf {
    repo().join("fuzz/seeds").join(target)
}

/// The seeds of `target`, then the inputs the fuzzers once failed on (`fuzz/regressions/`).
fn read_seeds(target: &str) -> Vec<Vec<u8>> {
    let files = |dir: PathBuf| -> Vec<(PathBuf, Vec<u8>)> {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut files: Vec<_> = entries
            .map(|e| {
                let path = e.unwrap().path();
                let bytes = std::fs::read(&path).unwrap();
                (path, bytes)
            })
            .collect();
        files.sort();
        files
    };
    let seeds = files(seeds_dir(target));
    assert!(!seeds.is_empty(), "fuzz/seeds/{target} holds no seeds");
    seeds
        .into_iter()
        .chain(files(repo().join("fuzz/regressions").join(target)))
        .map(|(_, b)| b)
        .collect()
}

fn run(target: &str, entry: fn(&[u8]), built: Vec<Vec<u8>>) {
    if std::env::var_os("FOCALPOINT_WRITE_SEEDS").is_some() {
        let dir = seeds_dir(target);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, seed) in built.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), seed).unwrap();
        }
    }
    let mut seeds = read_seeds(target);
    seeds.extend(built);
    let mut rng = Rng(0x5eed_f0ca_1901_2022);
    for (i, seed) in seeds.iter().enumerate() {
        entry(seed);
        let other = &seeds[(i + 1) % seeds.len()];
        for _ in 0..MUTATIONS_PER_SEED {
            entry(&mutate(&mut rng, seed, other));
        }
    }
}

fn example_envelopes() -> Vec<pb::Envelope> {
    let mut out = Vec::new();
    for country in ["idn", "khm"] {
        let dir = repo().join("examples").join(country);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json") && !is_figures(p))
            .collect();
        files.sort();
        for file in files {
            let mut envelope = focalpoint::domain::validate::parse_envelope(
                &std::fs::read_to_string(&file).unwrap(),
            )
            .unwrap();
            if envelope.created_at.is_empty() {
                envelope.created_at = "2025-04-30T08:15:00Z".into();
            }
            out.push(envelope);
        }
    }
    out
}

fn is_figures(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("figures"))
}

#[test]
fn envelope_decoding_and_validation() {
    let built = example_envelopes()
        .into_iter()
        .map(|e| e.encode_to_vec())
        .collect();
    run("envelope", focalpoint::fuzzing::envelope, built);
}

#[test]
fn mrz_parsing() {
    let built = example_envelopes()
        .iter()
        .filter_map(|e| match &e.body {
            Some(pb::envelope::Body::TravellerAlert(a)) => {
                a.documents.first().map(|d| d.mrz.clone().into_bytes())
            }
            Some(pb::envelope::Body::DocumentFraudNotice(n)) => {
                n.document.as_ref().map(|d| d.mrz.clone().into_bytes())
            }
            _ => None,
        })
        .filter(|m| !m.is_empty())
        .collect();
    run("mrz", focalpoint::fuzzing::mrz, built);
}

#[test]
fn configuration_and_figures_parsing() {
    let built = [
        "certs-example/idn/node.toml",
        "certs-example/khm/node.toml",
        "certs-example/idn/operator.toml",
        "examples/idn/figures-2025-04.csv",
        "examples/khm/figures-2025-04.json",
    ]
    .iter()
    .map(|p| std::fs::read(repo().join(p)).unwrap())
    .collect();
    run("config", focalpoint::fuzzing::config, built);
}

#[test]
fn log_entry_decoding() {
    // Entries, sealed content and receipts as a real log stores them.
    let dir = tempfile::tempdir().unwrap();
    let key = std::sync::Arc::new(focalpoint::crypto::seal::LogKey::from_bytes(&[7; 32]));
    let log = ExchangeLog::open(
        dir.path(),
        LogOptions::from(Durability::Flush).with_key(Some(key)),
    )
    .unwrap();
    let envelope = example_envelopes().remove(0).encode_to_vec();
    log.transact_blocking(move |t| {
        t.append(NewEntry {
            kind: pb::EntryKind::MessageSent,
            peer: Some("KHM".parse().unwrap()),
            message_id: "IDN-20250430-ALERT-0001".into(),
            message_kind: pb::MessageKind::TravellerAlert,
            content: Some(envelope),
            ..NewEntry::default()
        })?;
        t.append(NewEntry {
            kind: pb::EntryKind::Refusal,
            peer: Some("KHM".parse().unwrap()),
            reason: "envelope: not a valid encoding".into(),
            content_digest: Some(focalpoint::domain::model::Digest::of(b"junk")),
            ..NewEntry::default()
        })
    })
    .unwrap();
    let mut built: Vec<Vec<u8>> = log
        .range(1, 10)
        .unwrap()
        .iter()
        .map(|e| e.entry.encode_to_vec())
        .collect();
    let db = {
        drop(log);
        raw_sled(dir.path())
    };
    let tree = db.open_tree("exchange-log").unwrap();
    built.push(record(&tree, 1).content.unwrap());
    let receipt = pb::SignedReceipt {
        receipt: pb::Receipt {
            message_id: "IDN-20250430-ALERT-0001".into(),
            receiver: "KHM".into(),
            stored_at: "2025-04-30T08:15:01Z".into(),
            ..Default::default()
        }
        .encode_to_vec(),
        signature_scheme: "ECDSA_NISTP256_SHA256".into(),
        signature: vec![0x30; 70],
        signer_certificate: std::fs::read(repo().join("certs-example/khm/ca.pem")).unwrap(),
        batch: None,
    };
    built.push(receipt.encode_to_vec());
    let batched = pb::SignedReceipt {
        batch: Some(pb::ReceiptBatchProof {
            index: 1,
            size: 3,
            path: vec![vec![0x11; 32], vec![0x22; 32]],
        }),
        ..receipt
    };
    built.push(batched.encode_to_vec());
    run("log_entry", focalpoint::fuzzing::log_entry, built);
}
