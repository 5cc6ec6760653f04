//! Cosigned checkpoints: each node witnesses the other's log head; a node that rewrites or
//! truncates its log after a cosigned checkpoint is caught.

mod common;

use std::path::Path;

use common::*;
use focalpoint::domain::model::Digest;
use focalpoint::exchange::audit::{self};
use focalpoint::log::{Durability, ExchangeLog};
use focalpoint::node::config::NodeConfig;
use focalpoint::pb;
use prost::Message;
use tonic::Code;

fn key(prefix: u8, sequence: u64) -> Vec<u8> {
    let mut k = vec![prefix];
    k.extend_from_slice(&sequence.to_be_bytes());
    k
}

/// What a careful forger does: changes entry `sequence` with `change`, then recomputes every
/// link after it so that the chain alone verifies again.
fn rewrite_and_rechain(data: &Path, sequence: u64, change: impl FnOnce(&mut pb::LogEntry)) {
    remove_head_marker(data);
    let db = raw_sled(data);
    let tree = db.open_tree("exchange-log").unwrap();
    let mut change = Some(change);
    let mut previous: Option<Vec<u8>> = None;
    for seq in 1.. {
        if tree.get(key(b'e', seq)).unwrap().is_none() {
            break;
        }
        let mut stored = record(&tree, seq);
        let mut entry = pb::LogEntry::decode(stored.entry.as_slice()).unwrap();
        if seq == sequence {
            (change.take().unwrap())(&mut entry);
        }
        if let Some(p) = &previous {
            entry.previous_hash = p.clone();
        }
        let encoded = entry.encode_to_vec();
        previous = Some(Digest::of_parts(&[&[0], &encoded]).0.to_vec());
        stored.entry = encoded;
        tree.insert(key(b'e', seq), stored.encode_to_vec()).unwrap();
    }
    db.flush().unwrap();
}

/// Cuts the log after entry `keep`, content and all, and rebuilds the views: a clean truncation.
fn truncate(data: &Path, keep: u64) {
    remove_head_marker(data);
    {
        let db = raw_sled(data);
        let tree = db.open_tree("exchange-log").unwrap();
        for seq in keep + 1..keep + 100 {
            tree.remove(key(b'e', seq)).unwrap();
        }
        db.flush().unwrap();
    }
    let log = ExchangeLog::open(data, Durability::Flush).unwrap();
    log.rebuild_views().unwrap();
}

async fn send_alert(pair: &Pair, id: &str) {
    let mut e = example("idn/alert-trafficking-victim.json");
    e.message_id = id.into();
    let r = pair.client("idn", "operator").send(e, true).await.unwrap();
    assert_eq!(r.state, pb::DeliveryState::Delivered as i32, "{}", r.detail);
}

async fn restart(dir: tempfile::TempDir, idn: &NodeConfig, khm: &NodeConfig) -> Pair {
    let (idn, khm) = focalpoint::cli::demo::start_pair(idn.clone(), khm.clone())
        .await
        .unwrap();
    Pair { dir, idn, khm }
}

fn offline_audit(
    config: &Path,
    data: &Path,
) -> Result<audit::AuditReport, focalpoint::log::VerifyError> {
    let trust = NodeConfig::load(config).unwrap().audit_trust().unwrap();
    let log = ExchangeLog::open(data, Durability::Flush).unwrap();
    audit::verify(&log, &trust)
}

#[tokio::test]
async fn checkpoints_are_cosigned_both_ways_and_verify() {
    let pair = start_pair().await;
    send_alert(&pair, "IDN-CP-1").await;
    let mut idn = pair.client("idn", "operator");
    let mut khm = pair.client("khm", "operator");
    let first = idn.checkpoint("KHM").await.unwrap();
    assert_eq!(first.size, 2, "the sent alert and its receipt");
    send_alert(&pair, "IDN-CP-2").await;
    khm.checkpoint("IDN").await.unwrap();
    let second = idn.checkpoint("KHM").await.unwrap();
    assert!(second.size > first.size);
    for (country, expected) in [("idn", 3), ("khm", 3)] {
        let r = pair.client(country, "auditor").verify().await.unwrap();
        assert!(r.ok, "{country}: {}", r.problem);
        assert_eq!(r.checkpoints, expected, "{country}");
    }
    // Auditors cannot ask for checkpoints.
    assert!(
        pair.client("idn", "auditor")
            .checkpoint("KHM")
            .await
            .is_err()
    );
    pair.stop().await;
}

#[tokio::test]
async fn a_log_rewritten_after_a_cosigned_checkpoint_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let (idn_config, khm_config) = focalpoint::cli::demo::example_configs(dir.path()).unwrap();
    let (idn, khm) = focalpoint::cli::demo::start_pair(idn_config.clone(), khm_config.clone())
        .await
        .unwrap();
    let pair = Pair { dir, idn, khm };
    // Entry 1: a refusal (a bad send); 2-3: an alert and its receipt; 4: the checkpoint.
    let mut bad = example("idn/alert-trafficking-victim.json");
    bad.receiver = "KHN".into();
    assert!(
        pair.client("idn", "operator")
            .send(bad, false)
            .await
            .is_err()
    );
    send_alert(&pair, "IDN-RW-1").await;
    let cp = pair
        .client("idn", "operator")
        .checkpoint("KHM")
        .await
        .unwrap();
    assert_eq!((cp.size, cp.log_sequence), (3, 4));
    let Pair { dir, idn, khm } = pair;
    idn.stop().await.unwrap();
    khm.stop().await.unwrap();

    // IDN rewrites the refusal's reason and re-chains: the chain alone is whole again...
    let idn_data = idn_config.data_dir.clone().unwrap();
    rewrite_and_rechain(&idn_data, 1, |e| e.reason = "nothing happened here".into());
    let config = dir.path().join("idn/node.toml");
    {
        let log = ExchangeLog::open(&idn_data, Durability::Flush).unwrap();
        assert!(log.verify().is_ok(), "the forger re-chained consistently");
    }
    // ...but not the root KHM cosigned.
    let err = offline_audit(&config, &idn_data).unwrap_err();
    assert_eq!(err.sequence, 4, "{err}");
    assert!(err.problem.to_string().contains("rewritten"), "{err}");

    // Online, KHM refuses to cosign the rewritten log, and logs why.
    let pair = restart(dir, &idn_config, &khm_config).await;
    let err = pair
        .client("idn", "operator")
        .checkpoint("KHM")
        .await
        .unwrap_err();
    let focalpoint::cli::client::ClientError::Refused(status) = err else {
        panic!("expected a refusal, got {err}");
    };
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let khm_log = pair.khm.exchange().log();
    let last = khm_log.entry(khm_log.head().unwrap().0).unwrap().unwrap();
    assert_eq!(last.kind(), pb::EntryKind::Refusal);
    assert!(
        last.entry.reason.contains("rewritten"),
        "{}",
        last.entry.reason
    );
    pair.stop().await;
}

#[tokio::test]
async fn a_log_truncated_after_a_cosigned_checkpoint_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let (idn_config, khm_config) = focalpoint::cli::demo::example_configs(dir.path()).unwrap();
    let (idn, khm) = focalpoint::cli::demo::start_pair(idn_config.clone(), khm_config.clone())
        .await
        .unwrap();
    let pair = Pair { dir, idn, khm };
    send_alert(&pair, "IDN-TR-1").await;
    send_alert(&pair, "IDN-TR-2").await;
    let cp = pair
        .client("idn", "operator")
        .checkpoint("KHM")
        .await
        .unwrap();
    assert_eq!(cp.size, 4);
    let Pair { dir, idn, khm } = pair;
    idn.stop().await.unwrap();
    khm.stop().await.unwrap();

    // IDN cuts its log back to the first alert and its receipt, cleanly.
    let idn_data = idn_config.data_dir.clone().unwrap();
    truncate(&idn_data, 2);
    let pair = restart(dir, &idn_config, &khm_config).await;
    assert_eq!(pair.idn.exchange().log().head().unwrap().0, 2);
    let err = pair
        .client("idn", "operator")
        .checkpoint("KHM")
        .await
        .unwrap_err();
    let focalpoint::cli::client::ClientError::Refused(status) = err else {
        panic!("expected a refusal, got {err}");
    };
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("truncated"),
        "{}",
        status.message()
    );
    pair.stop().await;
}
