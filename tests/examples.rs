//! Every configuration and example message in the repository parses.

mod common;

use std::path::{Path, PathBuf};

use common::repo;
use focalpoint::config::{ClientConfig, NodeConfig};

fn files(dir: &Path, extension: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "data") {
                continue;
            }
            files(&path, extension, out);
        } else if path.extension().is_some_and(|e| e == extension) {
            out.push(path);
        }
    }
}

#[test]
fn every_example_config_parses() {
    let mut found = Vec::new();
    for dir in ["certs-example", "deploy"] {
        let dir = repo().join(dir);
        if dir.exists() {
            files(&dir, "toml", &mut found);
        }
    }
    let (mut nodes, mut clients) = (0, 0);
    for path in &found {
        if path.file_name().is_some_and(|n| n == "node.toml") {
            let config = NodeConfig::load(path).unwrap_or_else(|e| panic!("{e}"));
            assert!(config.node.certificate.exists(), "{}", path.display());
            nodes += 1;
        } else {
            let config = ClientConfig::load(path).unwrap_or_else(|e| panic!("{e}"));
            assert!(config.certificate.exists(), "{}", path.display());
            clients += 1;
        }
    }
    assert!(nodes >= 2, "found {nodes} node configurations");
    assert!(clients >= 6, "found {clients} client configurations");
}

#[test]
fn every_example_message_is_valid() {
    let mut found = Vec::new();
    files(&repo().join("examples"), "json", &mut found);
    assert!(found.len() >= 6, "found {} examples", found.len());
    for path in found {
        let mut envelope = focalpoint::client::read_envelope(&path).unwrap();
        // The node fills these in on send.
        envelope.sender = if envelope.receiver == "KHM" {
            "IDN"
        } else {
            "KHM"
        }
        .into();
        envelope.created_at = "2025-04-30T00:00:00Z".into();
        focalpoint::validate::validate(envelope)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}
