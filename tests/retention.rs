//! Care with personal data at rest: retention removes message content past its period and the
//! log still verifies; a log encrypted at rest names nobody on disk, opens only with its key,
//! and verifies without it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::*;
use focalpoint::crypto::seal::{LogKey, SealError};
use focalpoint::exchange::audit::{self, AuditTrust};
use focalpoint::exchange::retention::{self, RetentionPolicy};
use focalpoint::log::{Durability, ExchangeLog, LogError, LogOptions, NewEntry};
use focalpoint::node::config::NodeConfig;
use focalpoint::node::server::BoundNode;
use focalpoint::pb;
use prost::Message;

const DAY_MICROS: i64 = 86_400 * 1_000_000;
/// The family name in the example alert: it must never be found where it should not be.
const NAME: &[u8] = b"WULANDARI";
/// The example alert's passport number.
const PASSPORT: &str = "X2217845";

fn policy() -> RetentionPolicy {
    RetentionPolicy {
        policy: "IDN-PDP-TEST".into(),
        alert_days: Some(30),
        fraud_notice_days: Some(60),
        case_response_days: None,
        statistics_days: None,
        sweep_interval_secs: 3600,
    }
}

fn sequence_of(log: &ExchangeLog, id: &str) -> u64 {
    log.sent(id)
        .unwrap()
        .or_else(|| log.received("KHM".parse().unwrap(), id).unwrap())
        .or_else(|| log.received("IDN".parse().unwrap(), id).unwrap())
        .unwrap_or_else(|| panic!("{id} is not in the log"))
}

/// What an auditor checks against: the configuration's certificates and `policy()`.
fn trust(config: &NodeConfig) -> AuditTrust {
    let mut trust = config.audit_trust().unwrap();
    trust.retention = Some(policy());
    trust
}

/// The log as it will be `days` from now.
fn days_ahead(data: &Path, days: i64) -> ExchangeLog {
    ExchangeLog::open(
        data,
        LogOptions::from(Durability::Flush).ahead(days * DAY_MICROS),
    )
    .unwrap()
}

/// Whether any file under `dir` contains `needle`.
fn files_contain(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_contain(&path, needle)
        } else {
            std::fs::read(&path)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
        }
    })
}

fn focalpoint(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_focalpoint"))
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn redaction_removes_content_past_retention_and_the_log_still_verifies() {
    let pair = start_pair().await;
    let alert = example("idn/alert-trafficking-victim.json");
    let fraud = example("khm/fraud-notice-poipet.json");
    let stats = example("idn/statistics-2025-jan-apr.json");
    for (from, role, envelope) in [
        ("idn", "operator", alert.clone()),
        ("khm", "operator", fraud.clone()),
        ("idn", "sync", stats.clone()),
    ] {
        let r = pair
            .client(from, role)
            .send_or_push(envelope, true)
            .await
            .unwrap();
        assert_eq!(r.state, pb::DeliveryState::Delivered as i32);
    }
    // A checkpoint KHM cosigned over IDN's log as it was before any redaction.
    pair.client("idn", "operator")
        .checkpoint("KHM")
        .await
        .unwrap();
    let Pair { dir, idn, khm } = pair;
    idn.stop().await.unwrap();
    khm.stop().await.unwrap();
    let (idn_config, _) = focalpoint::cli::demo::example_configs(dir.path()).unwrap();
    let data = dir.path().join("idn/data");

    let now = focalpoint::domain::model::now_micros();
    let (alert_seq, fraud_seq, stats_seq, digests) = {
        let log = ExchangeLog::open(&data, Durability::Flush).unwrap();
        let (a, f, s) = (
            sequence_of(&log, &alert.message_id),
            sequence_of(&log, &fraud.message_id),
            sequence_of(&log, &stats.message_id),
        );
        let digests: Vec<Vec<u8>> = [a, f, s]
            .iter()
            .map(|&q| log.entry(q).unwrap().unwrap().entry.content_sha256)
            .collect();
        // Nothing is due yet.
        assert_eq!(retention::sweep(&log, &policy(), now).unwrap(), 0);
        (a, f, s, digests)
    };
    // What statistics count before any redaction, for the alert's month.
    let created = {
        let log = ExchangeLog::open(&data, Durability::Flush).unwrap();
        log.entry(alert_seq).unwrap().unwrap().entry.created_at
    };
    let month = focalpoint::domain::kinds::parse_period(&created[..7]).unwrap();
    let khm: focalpoint::domain::model::CountryCode = "KHM".parse().unwrap();
    let counted =
        |log: &ExchangeLog| focalpoint::exchange::reconcile::tally(log, khm, &month).unwrap();
    let before = counted(&ExchangeLog::open(&data, Durability::Flush).unwrap());
    assert!(
        before.iter().any(|c| c.count > 0),
        "the alert is counted in its month"
    );
    {
        // 31 days on: past the alert's 30 days, not the fraud notice's 60; a second sweep
        // finds nothing more.
        let log = days_ahead(&data, 31);
        let later = now + 31 * DAY_MICROS;
        let passport = focalpoint::domain::search::Term::document(PASSPORT).unwrap();
        assert_eq!(log.search(&passport).unwrap(), vec![alert_seq]);
        assert_eq!(retention::sweep(&log, &policy(), later).unwrap(), 1);
        assert_eq!(retention::sweep(&log, &policy(), later).unwrap(), 0);
        assert!(log.content(alert_seq).unwrap().is_none());
        assert!(log.content(fraud_seq).unwrap().is_some());
        // Redacted: its search index keys went with its content, in the same write.
        assert!(log.search(&passport).unwrap().is_empty());
        let name = focalpoint::domain::search::Term::name(["WULANDARI", "SARI"]).unwrap();
        assert!(log.search(&name).unwrap().is_empty());
    }
    {
        // 61 days on, the fraud notice goes; statistics have no period here and stay.
        let log = days_ahead(&data, 61);
        let later = now + 61 * DAY_MICROS;
        assert_eq!(retention::sweep(&log, &policy(), later).unwrap(), 1);
        assert_eq!(
            retention::sweep(&log, &policy(), later + 9000 * DAY_MICROS).unwrap(),
            0
        );
        assert!(log.content(fraud_seq).unwrap().is_none());
        assert!(log.content(stats_seq).unwrap().is_some());
    }

    // The chain, digests, receipts and checkpoints still verify, and the audit counts the
    // redactions; statistics still count the redacted messages by their date.
    let log = ExchangeLog::open(&data, Durability::Flush).unwrap();
    assert_eq!(counted(&log), before);
    let report = audit::verify(&log, &trust(&idn_config)).unwrap();
    assert_eq!(report.redacted, 2);
    assert_eq!(report.receipts, 3, "every receipt still holds");
    assert_eq!(
        report.checkpoints, 1,
        "the checkpoint cosigned before redaction still holds"
    );
    // A redaction must keep to the policy the auditor holds.
    let mut stricter = trust(&idn_config);
    stricter.retention = Some(RetentionPolicy {
        alert_days: Some(60),
        ..policy()
    });
    let err = audit::verify(&log, &stricter).unwrap_err();
    assert!(
        err.problem
            .to_string()
            .contains("before the end of its 60-day retention period under policy IDN-PDP-TEST"),
        "{}",
        err.problem
    );
    let mut none = trust(&idn_config);
    none.retention = None;
    let err = audit::verify(&log, &none).unwrap_err();
    assert!(
        err.problem
            .to_string()
            .contains("no retention policy is configured"),
        "{}",
        err.problem
    );
    for (q, digest) in [alert_seq, fraud_seq, stats_seq].iter().zip(&digests) {
        assert_eq!(
            &log.entry(*q).unwrap().unwrap().entry.content_sha256,
            digest
        );
    }
    // Each redaction is an entry in the chain naming the message and the policy.
    let redactions: Vec<_> = log
        .range(1, usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind() == pb::EntryKind::Redaction)
        .collect();
    assert_eq!(redactions.len(), 2);
    assert_eq!(redactions[0].entry.refers_to, alert_seq);
    assert_eq!(redactions[0].entry.message_id, alert.message_id);
    assert_eq!(
        redactions[0].entry.reason,
        "IDN-PDP-TEST (alerts kept 30 days)"
    );
    assert_eq!(redactions[1].entry.refers_to, fraud_seq);

    // Auditors see the redaction in place of the payload.
    let records = audit::export(&log, &trust(&idn_config), 1, u64::MAX, (None, None)).unwrap();
    let record = |q: u64| records.iter().find(|r| r.sequence == q).unwrap();
    let today = focalpoint::domain::model::format_micros(now + 31 * DAY_MICROS);
    assert_eq!(
        record(alert_seq).withheld.as_deref(),
        Some(
            format!(
                "redacted on {} under policy IDN-PDP-TEST (alerts kept 30 days)",
                &today[..10]
            )
            .as_str()
        )
    );
    assert!(record(alert_seq).envelope.is_none());
    // The receipt this node issued for the redacted fraud notice is still exported.
    assert!(record(fraud_seq).envelope.is_none());
    assert!(record(fraud_seq).receipt.is_some());
    assert!(record(stats_seq).envelope.is_some());
    assert!(record(stats_seq).withheld.is_none());

    // Compaction copies the live log and leaves the removed bytes behind: the copy names
    // nobody, and still verifies.
    drop(log);
    let compacted = dir.path().join("idn/compacted");
    let compact = || {
        focalpoint(&[
            "compact",
            "--config",
            dir.path().join("idn/node.toml").to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--out",
            compacted.to_str().unwrap(),
        ])
    };
    let out = compact();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!files_contain(&compacted, NAME));
    {
        let copy = ExchangeLog::open(&compacted, Durability::Flush).unwrap();
        let report = audit::verify(&copy, &trust(&idn_config)).unwrap();
        assert_eq!(report.redacted, 2);
        assert!(copy.content(stats_seq).unwrap().is_some());
    }
    let again = compact();
    assert!(
        !again.status.success(),
        "a non-empty target is never written into"
    );

    // Content removed without a redaction entry is still found.
    let copy = dir.path().join("idn/cut");
    copy_dir(&data, &copy);
    {
        let db = raw_sled(&copy);
        let tree = db.open_tree("exchange-log").unwrap();
        change_record(&tree, stats_seq, |r| r.content = None);
        db.flush().unwrap();
    }
    let cut = ExchangeLog::open(&copy, Durability::Flush).unwrap();
    let err = audit::verify(&cut, &trust(&idn_config)).unwrap_err();
    assert_eq!(err.sequence, stats_seq);
    assert!(
        matches!(err.problem, focalpoint::log::Problem::ContentMissing),
        "{err}"
    );
    drop(cut);

    // The node shows the redaction to operators, and keeps a message still waiting for its
    // peer however old it is.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("https://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut bound = BoundNode::bind(idn_config.clone(), None).await.unwrap();
    bound.set_peer_address("KHM".parse().unwrap(), &nowhere);
    let idn = bound.start().await.unwrap();
    let client = |role: &str| {
        let config = focalpoint::cli::demo::example_client(dir.path(), "idn", role, &idn);
        focalpoint::cli::client::OperatorClient::new(&config).unwrap()
    };
    let shown = client("operator").show(&alert.message_id).await.unwrap();
    let message = &shown.messages[0];
    assert!(message.envelope.is_none());
    assert!(
        message.redacted.starts_with("redacted on 20")
            && message
                .redacted
                .ends_with("under policy IDN-PDP-TEST (alerts kept 30 days)"),
        "{}",
        message.redacted
    );
    let mut waiting = example("idn/alert-trafficking-victim.json");
    waiting.message_id = "IDN-2025-WAITING-1".into();
    client("operator").send(waiting, false).await.unwrap();
    idn.stop().await.unwrap();
    let log = ExchangeLog::open(&data, Durability::Flush).unwrap();
    assert_eq!(
        retention::sweep(&log, &policy(), now + 400 * DAY_MICROS).unwrap(),
        0
    );
    let waiting = log.sent("IDN-2025-WAITING-1").unwrap().unwrap();
    assert!(log.content(waiting).unwrap().is_some());
    assert!(audit::verify(&log, &trust(&idn_config)).is_ok());
}

/// Writes a log key with the command operators use, and names it in KHM's configuration.
fn encrypt_khm(dir: &Path) -> (PathBuf, NodeConfig) {
    let key_path = dir.join("khm/log.key");
    let out = focalpoint(&["log-key", "--out", key_path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the key is readable by its owner only");
    }
    let again = focalpoint(&["log-key", "--out", key_path.to_str().unwrap()]);
    assert!(
        !again.status.success(),
        "an existing key is never overwritten"
    );
    let config_path = dir.join("khm/node.toml");
    let mut text = std::fs::read_to_string(&config_path).unwrap();
    text.push_str("\n[encryption]\nkey_file = \"log.key\"\n");
    std::fs::write(&config_path, text).unwrap();
    (config_path.clone(), NodeConfig::load(&config_path).unwrap())
}

#[tokio::test]
async fn an_encrypted_log_names_nobody_on_disk_and_verifies_without_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let (idn, mut khm) = focalpoint::cli::demo::example_configs(dir.path()).unwrap();
    let (khm_config_path, encrypted) = encrypt_khm(dir.path());
    khm.encryption = encrypted.encryption.clone();
    let (idn, khm) = focalpoint::cli::demo::start_pair(idn, khm).await.unwrap();
    let alert = example("idn/alert-trafficking-victim.json");
    let fraud = example("khm/fraud-notice-poipet.json");
    let client = |country: &str, node: &focalpoint::node::server::RunningNode| {
        let config = focalpoint::cli::demo::example_client(dir.path(), country, "operator", node);
        focalpoint::cli::client::OperatorClient::new(&config).unwrap()
    };
    let r = client("idn", &idn).send(alert.clone(), true).await.unwrap();
    assert_eq!(r.state, pb::DeliveryState::Delivered as i32);
    let r = client("khm", &khm).send(fraud.clone(), true).await.unwrap();
    assert_eq!(r.state, pb::DeliveryState::Delivered as i32);
    // The node holds the key: operators read the alert as usual.
    let shown = client("khm", &khm).show(&alert.message_id).await.unwrap();
    let envelope = shown.messages[0].envelope.as_ref().unwrap();
    assert_eq!(envelope.message_id, alert.message_id);
    assert!(format!("{envelope:?}").contains("WULANDARI"));
    // And find it by its passport and by the name: the index holds keyed hashes of both.
    for request in [
        pb::SearchRequest {
            document: PASSPORT.into(),
            ..Default::default()
        },
        pb::SearchRequest {
            name: "Sari Wulandari".into(),
            ..Default::default()
        },
    ] {
        let found = client("khm", &khm).search(request).await.unwrap();
        assert_eq!(found.hits.len(), 1);
        assert_eq!(found.hits[0].message_id, alert.message_id);
    }
    idn.stop().await.unwrap();
    khm.stop().await.unwrap();

    // On disk: IDN keeps content in plain, so the name is there to find; KHM's disk names
    // nobody and holds no document number, in the content or in the search index.
    let khm_data = dir.path().join("khm/data");
    assert!(files_contain(&dir.path().join("idn/data"), NAME));
    assert!(files_contain(
        &dir.path().join("idn/data"),
        PASSPORT.as_bytes()
    ));
    assert!(!files_contain(&khm_data, NAME));
    assert!(!files_contain(&khm_data, PASSPORT.as_bytes()));

    // Without the key: the content cannot be read, and the whole log verifies.
    let trust = trust(&encrypted);
    let (alert_seq, fraud_seq) = {
        let log = ExchangeLog::open(&khm_data, Durability::Flush).unwrap();
        let alert_seq = sequence_of(&log, &alert.message_id);
        let fraud_seq = sequence_of(&log, &fraud.message_id);
        assert!(matches!(
            log.content(alert_seq),
            Err(LogError::Seal(SealError::NoKey { .. }))
        ));
        assert!(log.is_sealed(alert_seq).unwrap() && log.is_sealed(fraud_seq).unwrap());
        let report = audit::verify(&log, &trust).unwrap();
        assert_eq!(report.sealed_unopened, 2);
        assert_eq!(report.receipts, 2);
        let records = audit::export(&log, &trust, 1, u64::MAX, (None, None)).unwrap();
        let record = records.iter().find(|r| r.sequence == alert_seq).unwrap();
        assert!(record.envelope.is_none());
        assert_eq!(
            record.withheld.as_deref(),
            Some("encrypted at rest; export with the log key to read it")
        );
        (alert_seq, fraud_seq)
    };
    // With the key: the content opens and matches its digest.
    let key = Arc::new(encrypted.encryption.as_ref().unwrap().load_key().unwrap());
    {
        let log = ExchangeLog::open(
            &khm_data,
            LogOptions::from(Durability::Flush).with_key(Some(key.clone())),
        )
        .unwrap();
        let plain = log.content(alert_seq).unwrap().unwrap();
        assert!(plain.windows(NAME.len()).any(|w| w == NAME));
        let report = audit::verify(&log, &trust).unwrap();
        assert_eq!(report.sealed_unopened, 0);
        let records = audit::export(&log, &trust, 1, u64::MAX, (None, None)).unwrap();
        assert!(
            records
                .iter()
                .any(|r| r.sequence == fraud_seq && r.envelope.is_some())
        );
    }
    // Redaction of sealed content: verified without the key, as before.
    {
        let copy = dir.path().join("khm/redacted");
        copy_dir(&khm_data, &copy);
        let log = ExchangeLog::open(
            &copy,
            LogOptions::from(Durability::Flush)
                .with_key(Some(key.clone()))
                .ahead(31 * DAY_MICROS),
        )
        .unwrap();
        let later = focalpoint::domain::model::now_micros() + 31 * DAY_MICROS;
        assert_eq!(retention::sweep(&log, &policy(), later).unwrap(), 1);
        drop(log);
        let log = ExchangeLog::open(&copy, Durability::Flush).unwrap();
        let report = audit::verify(&log, &trust).unwrap();
        assert_eq!((report.redacted, report.sealed_unopened), (1, 1));
        assert!(!files_contain(&copy, NAME));
    }
    // A key rotation: new content is sealed with the new key, and the earlier key, kept as a
    // previous key, still opens what it sealed.
    {
        let copy = dir.path().join("khm/rotated");
        copy_dir(&khm_data, &copy);
        let earlier = encrypted.encryption.as_ref().unwrap().load_key().unwrap();
        let rotated = Arc::new(LogKey::from_bytes(&[3; 32]).with_previous(vec![earlier]));
        let log = ExchangeLog::open(
            &copy,
            LogOptions::from(Durability::Flush).with_key(Some(rotated)),
        )
        .unwrap();
        let plain = example("idn/alert-trafficking-victim.json").encode_to_vec();
        let added = log
            .transact_blocking(move |t| {
                t.append(NewEntry {
                    kind: pb::EntryKind::MessageSent,
                    peer: Some("IDN".parse().unwrap()),
                    message_id: "KHM-20250430-ALERT-0777".into(),
                    message_kind: pb::MessageKind::TravellerAlert,
                    content: Some(plain),
                    ..NewEntry::default()
                })
            })
            .unwrap();
        assert!(log.content(alert_seq).unwrap().is_some());
        assert!(log.content(added.sequence).unwrap().is_some());
        assert_eq!(log.verify().unwrap(), added.sequence);
        drop(log);
        let only_earlier = Arc::new(encrypted.encryption.as_ref().unwrap().load_key().unwrap());
        let log = ExchangeLog::open(
            &copy,
            LogOptions::from(Durability::Flush).with_key(Some(only_earlier)),
        )
        .unwrap();
        assert!(matches!(
            log.content(added.sequence),
            Err(LogError::Seal(SealError::WrongKey { .. }))
        ));
    }
    // A different key is named as such, not taken for tampering.
    {
        let other = Arc::new(LogKey::from_bytes(&[9; 32]));
        let log = ExchangeLog::open(
            &khm_data,
            LogOptions::from(Durability::Flush).with_key(Some(other)),
        )
        .unwrap();
        let err = log.content(alert_seq).unwrap_err().to_string();
        assert!(err.contains("was sealed with log key"), "{err}");
        let err = audit::verify(&log, &trust).unwrap_err();
        assert!(
            err.problem.to_string().contains("was sealed with log key"),
            "{}",
            err.problem
        );
    }
    // One flipped bit of sealed content is found without the key.
    let copy = dir.path().join("khm/flipped");
    copy_dir(&khm_data, &copy);
    {
        let db = raw_sled(&copy);
        let tree = db.open_tree("exchange-log").unwrap();
        change_record(&tree, alert_seq, |r| {
            let sealed = r.content.as_mut().unwrap();
            let last = sealed.len() - 1;
            sealed[last] ^= 1;
        });
        db.flush().unwrap();
    }
    {
        let log = ExchangeLog::open(&copy, Durability::Flush).unwrap();
        let err = audit::verify(&log, &trust).unwrap_err();
        assert_eq!(err.sequence, alert_seq);
        assert!(
            matches!(err.problem, focalpoint::log::Problem::SealedDigest),
            "{err}"
        );
    }

    // The auditor's command: with the key from the configuration, and without it.
    let config = khm_config_path.to_str().unwrap();
    let data = khm_data.to_str().unwrap();
    let with = focalpoint(&["audit", "verify", "--config", config, "--data-dir", data]);
    assert!(
        with.status.success(),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
    let without = focalpoint(&[
        "audit",
        "verify",
        "--config",
        config,
        "--data-dir",
        data,
        "--without-key",
    ]);
    assert!(without.status.success());
    let text = String::from_utf8_lossy(&without.stdout);
    assert!(
        text.contains("2 messages are encrypted at rest and were checked against their sealed digests without the key"),
        "{text}"
    );
    // The key from the environment instead of a file.
    let key_hex = std::fs::read_to_string(dir.path().join("khm/log.key")).unwrap();
    let env_config = dir.path().join("khm/node-env.toml");
    std::fs::write(
        &env_config,
        std::fs::read_to_string(&khm_config_path).unwrap().replace(
            "key_file = \"log.key\"",
            "key_env = \"FOCALPOINT_TEST_LOG_KEY\"",
        ),
    )
    .unwrap();
    let env_args = [
        "audit",
        "verify",
        "--config",
        env_config.to_str().unwrap(),
        "--data-dir",
        data,
    ];
    let from_env = Command::new(env!("CARGO_BIN_EXE_focalpoint"))
        .args(env_args)
        .env("FOCALPOINT_TEST_LOG_KEY", key_hex.trim())
        .output()
        .unwrap();
    assert!(
        from_env.status.success(),
        "{}",
        String::from_utf8_lossy(&from_env.stderr)
    );
    assert!(!String::from_utf8_lossy(&from_env.stdout).contains("encrypted at rest"));
    let unset = Command::new(env!("CARGO_BIN_EXE_focalpoint"))
        .args(env_args)
        .env_remove("FOCALPOINT_TEST_LOG_KEY")
        .output()
        .unwrap();
    assert!(!unset.status.success());
    assert!(String::from_utf8_lossy(&unset.stderr).contains("FOCALPOINT_TEST_LOG_KEY"));
    std::fs::remove_file(dir.path().join("khm/log.key")).unwrap();
    let lost = focalpoint(&["audit", "verify", "--config", config, "--data-dir", data]);
    assert!(!lost.status.success());
    let stderr = String::from_utf8_lossy(&lost.stderr);
    assert!(
        stderr.contains("log.key") && stderr.contains("--without-key"),
        "{stderr}"
    );
}

/// A running node's sweeps read on from where the last one stopped: what came of age since,
/// not the whole log again.
#[test]
fn a_sweeper_reads_only_what_came_of_age_since_its_last_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let log = ExchangeLog::open(dir.path(), Durability::Flush).unwrap();
    let idn: focalpoint::domain::model::CountryCode = "IDN".parse().unwrap();
    let receive = |log: &ExchangeLog, from: u32, count: u32| {
        log.transact_blocking(move |t| {
            for i in from..from + count {
                t.append(NewEntry {
                    kind: pb::EntryKind::MessageReceived,
                    peer: Some(idn),
                    message_id: format!("IDN-A-{i}"),
                    message_kind: pb::MessageKind::TravellerAlert,
                    content: Some(b"WULANDARI<<SARI".to_vec()),
                    ..Default::default()
                })?;
            }
            Ok(())
        })
        .unwrap();
    };
    receive(&log, 0, 1000);
    let now = focalpoint::domain::model::now_micros();
    let later = now + 31 * DAY_MICROS;
    let mut sweeper = retention::Sweeper::default();
    // Nothing is 30 days old yet: nothing is read.
    let first = sweeper.sweep(&log, &policy(), now).unwrap();
    assert_eq!((first.redacted, first.examined), (0, 0));
    // 31 days on, every alert goes, each read once.
    let second = sweeper.sweep(&log, &policy(), later).unwrap();
    assert_eq!((second.redacted, second.examined), (1000, 1000));
    // Ten more arrive; the next sweep reads them and the redactions after the cursor only.
    receive(&log, 1000, 10);
    let third = sweeper.sweep(&log, &policy(), later).unwrap();
    assert_eq!((third.redacted, third.examined), (10, 1010));
    // A sweep from the start would have read all of it.
    let fresh = retention::Sweeper::default()
        .sweep(&log, &policy(), later)
        .unwrap();
    assert_eq!(fresh.redacted, 0);
    assert_eq!(fresh.examined, 2020, "{fresh:?}");
    assert_eq!(log.verify().unwrap(), 2020);
}
