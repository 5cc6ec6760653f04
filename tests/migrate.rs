//! Logs written in the first store layout: a node refuses them and names the command that
//! converts them; `focalpoint migrate` converts them with the same entries, entry hashes and
//! head, and the converted log passes the audit and runs a node. The old logs are the data
//! directories in `tests/fixtures/layout-1/`, written by the code of that layout.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use common::*;
use focalpoint::domain::model::{Digest, hex};
use focalpoint::log::{Durability, ExchangeLog, LogOptions};
use focalpoint::pb;
use prost::Message;

/// The heads the first layout's code read from the fixtures (their README).
const IDN_HEAD: (u64, &str) = (
    8,
    "bff417b6c1acaafeb40ef2d03dab065a26a0fa7ac3942a84065e572e82fd1d83",
);
const KHM_HEAD: (u64, &str) = (
    9,
    "48a7bf02ecae693dee1c89325f248bf2200aa261b5bf66f70fdb7761dae3ff52",
);

fn focalpoint(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_focalpoint"))
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The example configurations in `dir`, with the fixture's data directories in place and
/// KHM's log key named in its configuration.
fn fixture_nodes(dir: &Path) -> (PathBuf, PathBuf) {
    focalpoint::cli::demo::example_configs(dir).unwrap();
    let fixtures = repo().join("tests/fixtures/layout-1");
    for country in ["idn", "khm"] {
        copy_dir(&fixtures.join(country), &dir.join(country).join("data"));
    }
    std::fs::copy(fixtures.join("khm.log.key"), dir.join("khm/log.key")).unwrap();
    // The retention policy the fixture's redactions were made under.
    for country in ["idn", "khm"] {
        let path = dir.join(country).join("node.toml");
        let config = read(&path);
        let start = config.find("policy = ").unwrap();
        let end = start + config[start..].find('\n').unwrap();
        let config = format!(
            "{}policy = \"IDN-PDP-TEST\"{}",
            &config[..start],
            &config[end..]
        )
        .replace("alert_days = 730", "alert_days = 30");
        std::fs::write(&path, config).unwrap();
    }
    let khm = dir.join("khm/node.toml");
    let mut config = read(&khm);
    config.push_str("\n[encryption]\nkey_file = \"log.key\"\n");
    std::fs::write(&khm, config).unwrap();
    (dir.join("idn/node.toml"), khm)
}

/// The first layout read directly: each entry's bytes and the content kept beside it.
fn old_entries(data: &Path) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let db = raw_sled(data);
    let tree = db.open_tree("exchange-log").unwrap();
    let mut out = Vec::new();
    for kv in tree.scan_prefix(b"e") {
        let (k, entry) = kv.unwrap();
        let mut content_key = k.to_vec();
        content_key[0] = b'c';
        let content = tree.get(content_key).unwrap().map(|c| c.to_vec());
        out.push((entry.to_vec(), content));
    }
    out
}

fn leaf(entry: &[u8]) -> Digest {
    Digest::of_parts(&[&[0], entry])
}

#[test]
fn a_node_refuses_a_log_in_the_first_layout_and_names_the_command_that_converts_it() {
    let dir = tempfile::tempdir().unwrap();
    let (idn, _) = fixture_nodes(dir.path());
    let config = idn_child_config(dir.path(), "127.0.0.1:9".parse().unwrap());
    assert_eq!(config, idn);
    let out = Command::new(env!("CARGO_BIN_EXE_focalpoint"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("first store layout")
            && said.contains("focalpoint migrate --config NODE.toml --out NEWDIR"),
        "{said}"
    );
    // Offline readers refuse it too, rather than misread it.
    let out = focalpoint(&["audit", "verify", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("focalpoint migrate"), "{}", text(&out));
    // Nothing was written into the old directory by either.
    assert_eq!(
        old_entries(&dir.path().join("idn/data")).len() as u64,
        IDN_HEAD.0
    );
}

#[test]
fn a_migrated_log_keeps_its_entries_hashes_and_head_and_passes_the_audit() {
    let dir = tempfile::tempdir().unwrap();
    let (idn, khm) = fixture_nodes(dir.path());
    for (country, config, head) in [("idn", &idn, IDN_HEAD), ("khm", &khm, KHM_HEAD)] {
        let data = dir.path().join(country).join("data");
        let old = old_entries(&data);
        let old_hashes: Vec<Digest> = old.iter().map(|(e, _)| leaf(e)).collect();
        assert_eq!(old_hashes.len() as u64, head.0, "{country}");
        assert_eq!(
            hex(&old_hashes[old_hashes.len() - 1].0),
            head.1,
            "{country}"
        );

        let new = dir.path().join(country).join("converted");
        let out = focalpoint(&[
            "migrate",
            "--config",
            config.to_str().unwrap(),
            "--out",
            new.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{country}: {}", text(&out));
        assert!(
            text(&out).contains(&format!("({} entries)", head.0))
                && text(&out).contains(head.1)
                && text(&out).contains("the audit passed"),
            "{country}: {}",
            text(&out)
        );

        // The auditor's own command, on the converted directory.
        let out = focalpoint(&[
            "audit",
            "verify",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            new.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{country}: {}", text(&out));

        let key = (country == "khm").then(|| {
            let config = focalpoint::node::config::NodeConfig::load(config).unwrap();
            Arc::new(config.encryption.unwrap().load_key().unwrap())
        });
        let log = ExchangeLog::open(
            &new,
            LogOptions::from(Durability::Flush).with_key(key.clone()),
        )
        .unwrap();
        let entries = log.range(1, usize::MAX).unwrap();
        let new_hashes: Vec<Digest> = entries.iter().map(|e| e.hash).collect();
        assert_eq!(new_hashes, old_hashes, "{country}: the same entries");
        for ((bytes, _), stored) in old.iter().zip(&entries) {
            assert_eq!(&stored.entry.encode_to_vec(), bytes, "{country}");
        }
        assert_eq!(
            log.head().unwrap(),
            (head.0, old_hashes[old_hashes.len() - 1])
        );
        // Content reads back as the old log held it (opened, where it is sealed); what was
        // redacted stays gone.
        let mut redacted = 0;
        for ((_, old_content), stored) in old.iter().zip(&entries) {
            let sequence = stored.entry.sequence;
            let content = log.content(sequence).unwrap();
            match old_content {
                None => {
                    assert!(content.is_none(), "{country} {sequence}");
                    redacted += u64::from(log.redaction_of(sequence).unwrap().is_some());
                }
                Some(old) if key.is_none() => {
                    assert_eq!(content.as_ref(), Some(old), "{country} {sequence}")
                }
                Some(_) => assert_eq!(
                    Digest::of(&content.unwrap()).0.to_vec(),
                    stored.entry.content_sha256,
                    "{country} {sequence}"
                ),
            }
        }
        assert_eq!(redacted, 1, "{country}: the redacted alert");
        // The views are derived again: the inbox and the peer's cursor.
        let received: Vec<u64> = entries
            .iter()
            .filter(|e| e.kind() == pb::EntryKind::MessageReceived)
            .map(|e| e.entry.sequence)
            .collect();
        assert_eq!(log.inbox().unwrap(), received, "{country}");
        let peer = if country == "idn" { "KHM" } else { "IDN" };
        let highest = entries
            .iter()
            .filter(|e| e.kind() == pb::EntryKind::MessageReceived)
            .map(|e| e.entry.peer_sequence)
            .max()
            .unwrap();
        assert_eq!(log.cursor(peer.parse().unwrap()).unwrap(), highest);
        drop(log);

        // A receipt from the peer is stored in parts: its batch's signature and certificate
        // once, not in every record.
        let db = raw_sled(&new);
        let tree = db.open_tree("exchange-log").unwrap();
        let receipt = entries
            .iter()
            .find(|e| e.kind() == pb::EntryKind::ReceiptReceived)
            .unwrap();
        let stored = record(&tree, receipt.entry.sequence);
        assert!(stored.content.is_none() && stored.peer_receipt.is_some());
        drop(tree);
        drop(db);

        // Converting again is refused: it is in the current layout already; so is writing into
        // a directory that is not empty.
        let again = focalpoint(&[
            "migrate",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            new.to_str().unwrap(),
            "--out",
            dir.path().join(country).join("twice").to_str().unwrap(),
        ]);
        assert!(!again.status.success());
        assert!(
            text(&again).contains("already in the current store layout"),
            "{}",
            text(&again)
        );
        assert!(!dir.path().join(country).join("twice").exists());
        let into = focalpoint(&[
            "migrate",
            "--config",
            config.to_str().unwrap(),
            "--out",
            new.to_str().unwrap(),
        ]);
        assert!(!into.status.success());
        assert!(text(&into).contains("not empty"), "{}", text(&into));
    }

    // A node runs on the converted directory.
    let idn = idn_child_config(dir.path(), "127.0.0.1:9".parse().unwrap());
    let (mut child, _, _) = serve(&idn, &dir.path().join("idn/converted"));
    child.kill().unwrap();
    child.wait().unwrap();
}
