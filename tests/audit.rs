//! Auditing: a whole exchange verifies, online and offline; any tampering with the stored log
//! is found and the first bad entry named.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use focalpoint::exchange::audit::{self};
use focalpoint::log::{Durability, ExchangeLog};
use focalpoint::node::config::NodeConfig;
use focalpoint::pb;
use prost::Message;

/// Runs an exchange of every example, stops both nodes, and returns the directory, IDN's
/// configuration path and its data directory.
async fn exchanged() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let pair = start_pair().await;
    for (from, role, file) in [
        ("idn", "operator", "idn/alert-trafficking-victim.json"),
        ("khm", "operator", "khm/fraud-notice-poipet.json"),
        ("idn", "sync", "idn/statistics-2025-jan-apr.json"),
        ("khm", "operator", "khm/response-to-alert.json"),
        ("idn", "operator", "idn/response-to-fraud-notice.json"),
    ] {
        let r = pair
            .client(from, role)
            .send_or_push(example(file), true)
            .await
            .unwrap();
        assert_eq!(r.state, pb::DeliveryState::Delivered as i32);
    }
    // Online, through the operator plane, with the auditor's certificate.
    let online = pair.client("idn", "auditor").verify().await.unwrap();
    assert!(online.ok, "{}", online.problem);
    assert_eq!(online.entries, 8);
    assert_eq!(
        online.receipts, 5,
        "2 issued for received messages, 3 from KHM"
    );
    let Pair { dir, idn, khm } = pair;
    idn.stop().await.unwrap();
    khm.stop().await.unwrap();
    let config = dir.path().join("idn/node.toml");
    let data = dir.path().join("idn/data");
    (dir, config, data)
}

fn key(prefix: u8, sequence: u64) -> Vec<u8> {
    let mut k = vec![prefix];
    k.extend_from_slice(&sequence.to_be_bytes());
    k
}

/// The sequences of IDN's entries of `kind`.
/// Rewrites the receipt batch that signs the receipt issued for entry `sequence`.
fn change_batch(t: &sled::Tree, sequence: u64, change: impl FnOnce(&mut pb::ReceiptBatch)) {
    let batch = record(t, sequence).issued.unwrap().batch;
    let bytes = t.get(key(b'b', batch)).unwrap().unwrap();
    let mut stored = pb::ReceiptBatch::decode(bytes.as_ref()).unwrap();
    change(&mut stored);
    t.insert(key(b'b', batch), stored.encode_to_vec()).unwrap();
}

fn of_kind(data: &Path, kind: pb::EntryKind) -> Vec<u64> {
    let log = ExchangeLog::open(data, Durability::Flush).unwrap();
    log.range(1, usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind() == kind)
        .map(|e| e.entry.sequence)
        .collect()
}

/// Copies the data directory, lets `tamper` change the copy's raw storage, and returns the
/// audit's verdict on the copy.
fn audit_after(
    config: &Path,
    data: &Path,
    name: &str,
    tamper: impl FnOnce(&sled::Tree),
) -> (
    PathBuf,
    Result<audit::AuditReport, focalpoint::log::VerifyError>,
) {
    let copy = data.with_file_name(format!("tampered-{name}"));
    copy_dir(data, &copy);
    // Whoever rewrites the store can remove the head marker too; the audit must find the
    // change from the chain alone (a marker left in place refuses a shortened log at open).
    std::fs::remove_file(copy.join("head")).unwrap();
    {
        let db = raw_sled(&copy);
        let tree = db.open_tree("exchange-log").unwrap();
        tamper(&tree);
        db.flush().unwrap();
    }
    let trust = NodeConfig::load(config).unwrap().audit_trust().unwrap();
    let log = ExchangeLog::open(&copy, Durability::Flush).unwrap();
    let verdict = audit::verify(&log, &trust);
    (copy, verdict)
}

#[tokio::test]
async fn tampering_of_every_kind_is_found_and_the_entry_named() {
    let (_dir, config, data) = exchanged().await;
    let trust = NodeConfig::load(&config).unwrap().audit_trust().unwrap();
    {
        let log = ExchangeLog::open(&data, Durability::Flush).unwrap();
        let clean = audit::verify(&log, &trust).unwrap();
        assert_eq!((clean.entries, clean.receipts), (8, 5));
    }
    let received = of_kind(&data, pb::EntryKind::MessageReceived);
    let sent = of_kind(&data, pb::EntryKind::MessageSent);
    let receipts = of_kind(&data, pb::EntryKind::ReceiptReceived);
    let last = 8;

    type Tamper = Box<dyn FnOnce(&sled::Tree)>;
    let r0 = received[0];
    let s0 = sent[0];
    let (a, b) = (sent[1], received[1]);
    let cases: Vec<(&str, u64, &str, Tamper)> = vec![
        (
            "content-byte",
            r0,
            "digest",
            Box::new(move |t| {
                change_record(t, r0, |r| r.content.as_mut().unwrap()[10] ^= 0x01);
            }),
        ),
        (
            "entry-field",
            s0,
            "altered",
            Box::new(move |t| {
                change_entry(t, s0, |e| e.recorded_at_micros += 1);
            }),
        ),
        (
            "received-entry-field",
            r0,
            "receipt",
            Box::new(move |t| {
                change_entry(t, r0, |e| {
                    e.message_kind = pb::MessageKind::CaseResponse as i32;
                });
            }),
        ),
        (
            "deleted",
            4,
            "missing",
            Box::new(|t| {
                t.remove(key(b'e', 4)).unwrap();
            }),
        ),
        (
            "swapped",
            a.min(b),
            "swapped",
            Box::new(move |t| {
                let x = t.get(key(b'e', a)).unwrap().unwrap();
                let y = t.get(key(b'e', b)).unwrap().unwrap();
                t.insert(key(b'e', a), y).unwrap();
                t.insert(key(b'e', b), x).unwrap();
            }),
        ),
        (
            "truncated",
            last - 1,
            "truncated",
            Box::new(move |t| {
                t.remove(key(b'e', last)).unwrap();
                t.remove(key(b'e', last - 1)).unwrap();
            }),
        ),
        (
            "forged-issued-receipt",
            r0,
            "issued receipt",
            Box::new(move |t| {
                change_record(t, r0, |r| {
                    let issued = r.issued.as_mut().unwrap();
                    let mut receipt = pb::Receipt::decode(issued.receipt.as_slice()).unwrap();
                    receipt.stored_at = "2025-05-01T00:00:00Z".into();
                    issued.receipt = receipt.encode_to_vec();
                });
            }),
        ),
        (
            "forged-receipt-batch",
            r0,
            "does not match leaf 0 of its batch",
            Box::new(move |t| {
                change_batch(t, r0, |batch| batch.leaves[0] ^= 1);
            }),
        ),
        (
            // The batch's signature is checked on the thread that reads batches ahead; one
            // that does not verify must still stop the audit at the first receipt under it.
            "forged-batch-signature",
            r0,
            "the issued receipt is not valid: signature does not verify",
            Box::new(move |t| {
                change_batch(t, r0, |batch| {
                    let last = batch.signature.len() - 1;
                    batch.signature[last] ^= 1;
                });
            }),
        ),
        (
            "swapped-signer-certificate",
            r0,
            "does not match its digest",
            Box::new(move |t| {
                // The certificate that signed the batch of r0's receipt.
                let batch = record(t, r0).issued.unwrap().batch;
                let bytes = t.get(key(b'b', batch)).unwrap().unwrap();
                let named = pb::ReceiptBatch::decode(bytes.as_ref())
                    .unwrap()
                    .signer_certificate_sha256;
                let other = std::fs::read(repo().join("certs-example/khm/ca.pem")).unwrap();
                t.insert([b"z".as_slice(), &named].concat(), other).unwrap();
            }),
        ),
        (
            "deleted-issued-receipt",
            r0,
            "receipt this node issued is missing",
            Box::new(move |t| {
                change_record(t, r0, |r| r.issued = None);
            }),
        ),
        (
            "missing-receipt-content",
            receipts[0],
            "missing",
            Box::new({
                let s = receipts[0];
                move |t| {
                    change_record(t, s, |r| {
                        r.content = None;
                        r.peer_receipt = None;
                    });
                }
            }),
        ),
    ];
    for (name, sequence, words, tamper) in cases {
        let (copy, verdict) = audit_after(&config, &data, name, tamper);
        let err = verdict.expect_err(name);
        assert_eq!(err.sequence, sequence, "{name}: {err}");
        assert!(err.problem.to_string().contains(words), "{name}: {err}");

        // The command line says the same and exits non-zero.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_focalpoint"))
            .args(["audit", "verify", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(&copy)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("FAILED at entry {sequence}:")),
            "{name}: {stdout}"
        );
    }

    // And on the untouched data the command line is content.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_focalpoint"))
        .args(["audit", "verify", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("verified 8 entries, 5 receipts"));
}

/// Turns the signed receipt of the received message at `sequence` back into the state a node
/// leaves when it stops after storing the message and before signing the receipt: the receipt
/// stored, its batch not.
fn unsign(t: &sled::Tree, sequence: u64) {
    let batch = record(t, sequence).issued.unwrap().batch;
    t.remove(key(b'b', batch)).unwrap();
}

#[tokio::test]
async fn a_receipt_left_unsigned_by_a_stop_is_signed_when_the_node_starts() {
    let (dir, config, data) = exchanged().await;
    let received = of_kind(&data, pb::EntryKind::MessageReceived);
    let (first, last) = (received[0], received[received.len() - 1]);

    // Unsigned at the end of the log: nothing was acknowledged, so the audit passes and counts it.
    let (copy, verdict) = audit_after(&config, &data, "unsigned-tail", |t| unsign(t, last));
    let report = verdict.unwrap();
    assert_eq!((report.receipts, report.unsigned_receipts), (4, 1));

    // An unsigned receipt must still describe its message.
    let (_, verdict) = audit_after(&config, &data, "unsigned-altered", |t| {
        unsign(t, last);
        change_record(t, last, |r| {
            let issued = r.issued.as_mut().unwrap();
            let mut receipt = pb::Receipt::decode(issued.receipt.as_slice()).unwrap();
            receipt.message_id = "KHM-OTHER".into();
            issued.receipt = receipt.encode_to_vec();
        });
    });
    let err = verdict.unwrap_err();
    assert_eq!(err.sequence, last, "{err}");
    assert!(
        err.problem
            .to_string()
            .contains("the unsigned receipt's message id does not match the entry"),
        "{err}"
    );

    // Unsigned before a signed one: no node leaves that, so the audit fails.
    let (_, verdict) = audit_after(&config, &data, "unsigned-middle", |t| unsign(t, first));
    let err = verdict.unwrap_err();
    assert_eq!(err.sequence, last, "{err}");
    assert!(
        err.problem
            .to_string()
            .contains(&format!("the receipt of entry {first} before it is not")),
        "{err}"
    );

    // The node signs it as it starts, before it takes anything new.
    let (mut idn_config, khm_config) = focalpoint::cli::demo::example_configs(dir.path()).unwrap();
    idn_config.data_dir = Some(copy.clone());
    let (idn, khm) = focalpoint::cli::demo::start_pair(idn_config, khm_config)
        .await
        .unwrap();
    let log = idn.exchange().log().clone();
    log.transact(|_| Ok(())).await.unwrap();
    let signed = log.issued_receipt(last).unwrap().expect("signed at start");
    let receipt = pb::Receipt::decode(signed.receipt.as_slice()).unwrap();
    assert_eq!(receipt.log_sequence, last);
    assert!(signed.batch.is_some());
    let trust = NodeConfig::load(&config).unwrap().audit_trust().unwrap();
    let report = audit::verify(&log, &trust).unwrap();
    assert_eq!((report.receipts, report.unsigned_receipts), (5, 0));
    idn.stop().await.unwrap();
    khm.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_of_a_node_taking_a_stream_passes_throughout() {
    let pair = start_pair().await;
    let khm_config = NodeConfig::load(&pair.dir.path().join("khm/node.toml")).unwrap();
    let trust = khm_config.audit_trust().unwrap();
    let (cert, key) = example_cert("idn", "node");
    let mut client = peer_client(&pair.khm, "khm", cert, key);
    const COUNT: usize = 1500;
    let requests: Vec<pb::DeliverRequest> = (0..COUNT)
        .map(|i| pb::DeliverRequest {
            envelope: idn_alert_bytes(&format!("IDN-20250430-ALERT-{i:04}"), "load"),
            sender_sequence: i as u64 + 1,
        })
        .collect();
    let stream = tokio::spawn(async move {
        let mut responses = client
            .deliver_stream(tokio_stream::iter(requests))
            .await
            .unwrap()
            .into_inner();
        let mut receipts = 0;
        while let Some(answer) = responses.message().await.unwrap() {
            assert!(matches!(
                answer.outcome,
                Some(pb::deliver_response::Outcome::Receipt(_))
            ));
            receipts += 1;
        }
        receipts
    });
    // Audits read the log while writes are signed and flushed under them.
    let log = pair.khm.exchange().log().clone();
    let mut audits = 0;
    while !stream.is_finished() {
        let log = log.clone();
        let trust = trust.clone();
        let report = tokio::task::spawn_blocking(move || audit::verify(&log, &trust))
            .await
            .unwrap();
        let report = report.unwrap_or_else(|e| panic!("audit {audits} under load: {e}"));
        assert!(report.receipts <= COUNT as u64);
        audits += 1;
    }
    assert_eq!(stream.await.unwrap(), COUNT);
    let report = audit::verify(&log, &trust).unwrap();
    assert_eq!(
        (report.receipts, report.unsigned_receipts),
        (COUNT as u64, 0)
    );
    assert!(audits > 0);
    pair.stop().await;
}

#[tokio::test]
async fn auditors_stay_read_only() {
    let pair = start_pair().await;
    let mut auditor = pair.client("idn", "auditor");
    assert!(
        auditor
            .send(example("idn/alert-trafficking-victim.json"), false)
            .await
            .is_err()
    );
    assert!(auditor.replay("KHM", 1, 0).await.is_err());
    assert!(auditor.verify().await.unwrap().ok);
    assert!(auditor.log(1, 10).await.is_ok());
    assert_eq!(pair.idn.exchange().log().head().unwrap().0, 0);
    pair.stop().await;
}

fn export(dir: &Path, country: &str) -> Vec<audit::ExportRecord> {
    let config = NodeConfig::load(&dir.join(country).join("node.toml")).unwrap();
    let log = ExchangeLog::open(&dir.join(country).join("data"), Durability::Flush).unwrap();
    let trust = config.audit_trust().unwrap();
    audit::export(&log, &trust, 1, u64::MAX, (None, None)).unwrap()
}

#[tokio::test]
async fn the_two_countries_exports_agree_and_disagreements_are_named() {
    let (dir, idn_config, _) = exchanged().await;
    let idn = export(dir.path(), "idn");
    let khm = export(dir.path(), "khm");
    assert_eq!(idn.len(), 8);
    assert!(
        idn.iter()
            .filter(|r| r.kind == focalpoint::domain::kinds::EntryName::Sent)
            .all(|r| r.envelope.is_some())
    );
    assert!(
        audit::compare(&idn, &khm).is_empty(),
        "{:?}",
        audit::compare(&idn, &khm)
    );

    // KHM's export lacking a message IDN sent.
    let first_sent = idn
        .iter()
        .find(|r| r.kind == focalpoint::domain::kinds::EntryName::Sent)
        .unwrap()
        .message_id
        .clone();
    let lacking: Vec<_> = khm
        .iter()
        .filter(|r| r.message_id != first_sent)
        .cloned()
        .collect();
    let findings = audit::compare(&idn, &lacking);
    assert!(
        findings
            .iter()
            .any(|f| f.contains(&first_sent) && f.contains("lacks")),
        "{findings:?}"
    );
    // A digest that differs, and a receipt that names another entry.
    let mut altered = khm.clone();
    let received = altered
        .iter_mut()
        .find(|r| r.kind == focalpoint::domain::kinds::EntryName::Received)
        .unwrap();
    received.content_sha256 = "00".repeat(32);
    received.entry_hash = "11".repeat(32);
    let findings = audit::compare(&idn, &altered);
    assert!(
        findings.iter().any(|f| f.contains("stored 0000")),
        "{findings:?}"
    );
    assert!(
        findings.iter().any(|f| f.contains("holds a receipt")),
        "{findings:?}"
    );

    // The command line: export both, compare, agree; CSV has a header and a line per entry.
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_focalpoint"))
            .args(args)
            .output()
            .unwrap()
    };
    let mut files = Vec::new();
    for country in ["idn", "khm"] {
        let config = dir.path().join(country).join("node.toml");
        let out = run(&[
            "audit",
            "export",
            "--config",
            config.to_str().unwrap(),
            "--format",
            "jsonl",
        ]);
        assert!(out.status.success(), "{out:?}");
        let file = dir.path().join(format!("{country}.jsonl"));
        std::fs::write(&file, &out.stdout).unwrap();
        files.push(file);
    }
    let out = run(&[
        "audit",
        "compare",
        files[0].to_str().unwrap(),
        files[1].to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let csv = run(&[
        "audit",
        "export",
        "--config",
        idn_config.to_str().unwrap(),
        "--format",
        "csv",
        "--from",
        "2",
        "--until",
        "5",
    ]);
    let text = String::from_utf8(csv.stdout).unwrap();
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(text.starts_with(&focalpoint::cli::render::AUDIT_CSV_COLUMNS.join(",")));
    std::fs::write(
        &files[1],
        lacking
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let out = run(&[
        "audit",
        "compare",
        files[0].to_str().unwrap(),
        files[1].to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("lacks"));
}

/// `focalpoint audit verify` on a copy of `data` whose data file `tamper` changed: its exit
/// code and what it printed.
fn audit_cli(
    config: &Path,
    data: &Path,
    name: &str,
    tamper: impl FnOnce(&mut Vec<u8>),
) -> (Option<i32>, String) {
    let copy = data.with_file_name(format!("damaged-{name}"));
    copy_dir(data, &copy);
    let mut bytes = std::fs::read(copy.join("db")).unwrap();
    tamper(&mut bytes);
    std::fs::write(copy.join("db"), bytes).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_focalpoint"))
        .args(["audit", "verify", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(&copy)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[tokio::test]
async fn a_damaged_data_file_is_named_and_never_taken_for_a_shorter_log() {
    let (_dir, config, data) = exchanged().await;
    let len = std::fs::metadata(data.join("db")).unwrap().len() as usize;
    // Damage at several places: sled stops recovering at the first bad checksum, so without
    // the head marker the log would open shorter and verify.
    for (i, fraction) in [0.1, 0.5, 0.9].into_iter().enumerate() {
        let at = (len as f64 * fraction) as usize;
        let (code, text) = audit_cli(&config, &data, &format!("{i}"), |bytes| {
            for b in &mut bytes[at..(at + 64).min(len)] {
                *b ^= 0x5a;
            }
        });
        assert_eq!(code, Some(1), "a damaged log is a failed audit: {text}");
        assert!(
            text.contains("damaged") || text.contains("corrupt"),
            "damage at {at}: {text}"
        );
        assert!(text.contains("/db"), "the data file is not named: {text}");
        assert!(!text.contains("still running"), "{text}");
        assert!(!text.contains("verified"), "{text}");
    }
    // A data directory in use names the lock, and only then the running node.
    let log = ExchangeLog::open(&data, Durability::Flush).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_focalpoint"))
        .args(["audit", "verify", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    drop(log);
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(66));
    assert!(text.contains("in use by another process"), "{text}");
    // The undamaged log still verifies.
    let (code, text) = audit_cli(&config, &data, "none", |_| {});
    assert_eq!(code, Some(0), "{text}");
}

/// Appends a deadline entry for the case opened at `case` to a copy of the log at `data`, and
/// returns its sequence and the audit's verdict on the copy.
fn audit_with_deadline(
    config: &Path,
    data: &Path,
    name: &str,
    case: u64,
    reason: &str,
    version: Option<&str>,
) -> (
    u64,
    Result<audit::AuditReport, focalpoint::log::VerifyError>,
) {
    let copy = data.with_file_name(format!("deadline-{name}"));
    copy_dir(data, &copy);
    let log = ExchangeLog::open(&copy, Durability::Flush).unwrap();
    let root = log.entry(case).unwrap().unwrap().entry;
    let entry = focalpoint::log::NewEntry {
        kind: pb::EntryKind::Deadline,
        peer: root.peer.parse().ok(),
        message_id: root.message_id.clone(),
        message_kind: pb::MessageKind::try_from(root.message_kind).unwrap(),
        refers_to: case,
        reason: reason.to_owned(),
        reference: version.map(|v| v.parse().unwrap()),
        ..Default::default()
    };
    let appended = log
        .transact_blocking(move |t| t.append(entry).map(|a| a.sequence))
        .unwrap();
    let trust = NodeConfig::load(config).unwrap().audit_trust().unwrap();
    (appended, audit::verify(&log, &trust))
}

#[tokio::test]
async fn the_audit_holds_each_deadline_entry_to_a_case_this_node_could_note() {
    let (_dir, config, data) = exchanged().await;
    let (alert, notice, response_to_alert, response_to_notice) = {
        let log = ExchangeLog::open(&data, Durability::Flush).unwrap();
        let first = |kind: pb::EntryKind, message: pb::MessageKind| {
            log.range(1, usize::MAX)
                .unwrap()
                .into_iter()
                .find(|e| e.kind() == kind && e.entry.message_kind == message as i32)
                .unwrap()
                .entry
        };
        (
            first(pb::EntryKind::MessageSent, pb::MessageKind::TravellerAlert),
            first(
                pb::EntryKind::MessageReceived,
                pb::MessageKind::DocumentFraudNotice,
            ),
            first(
                pb::EntryKind::MessageReceived,
                pb::MessageKind::CaseResponse,
            ),
            first(pb::EntryKind::MessageSent, pb::MessageKind::CaseResponse),
        )
    };
    let bad = |name: &str, case: u64, reason: &str, version: Option<&str>, found: &str| {
        let (sequence, verdict) = audit_with_deadline(&config, &data, name, case, reason, version);
        let e = verdict.expect_err(name);
        assert_eq!(e.sequence, sequence, "{name}: {e}");
        assert!(e.to_string().contains(found), "{name}: {e}");
    };

    // A renewal of the alert, as the node sends one.
    let renewed = data.with_file_name("deadline-renewed-base");
    copy_dir(&data, &renewed);
    {
        let log = ExchangeLog::open(&renewed, Durability::Flush).unwrap();
        let mut envelope = example("idn/alert-trafficking-victim.json");
        envelope.message_id = "IDN-RENEWAL-1".into();
        envelope.reference = alert.message_id.clone();
        if let Some(pb::envelope::Body::TravellerAlert(a)) = &mut envelope.body {
            a.lifecycle = pb::AlertLifecycle::Update as i32;
        }
        let entry = focalpoint::log::NewEntry {
            kind: pb::EntryKind::MessageSent,
            peer: Some("KHM".parse().unwrap()),
            message_id: envelope.message_id.clone(),
            message_kind: pb::MessageKind::TravellerAlert,
            reference: Some(alert.message_id.parse().unwrap()),
            created_at: envelope.created_at.clone(),
            content: Some(envelope.encode_to_vec()),
            ..Default::default()
        };
        log.transact_blocking(move |t| t.append(entry).map(drop))
            .unwrap();
    }

    // What the node itself notes passes: a case overdue; an alert it sent reminded of, naming
    // the alert or its renewal as the version, or (as before reminders named one) no version.
    for (name, base, case, reason, version) in [
        ("overdue", &data, notice.sequence, "overdue", None),
        (
            "expiring",
            &data,
            alert.sequence,
            "expiring",
            Some(alert.message_id.as_str()),
        ),
        ("unnamed", &data, alert.sequence, "expiring", None),
        (
            "renewal",
            &renewed,
            alert.sequence,
            "expiring",
            Some("IDN-RENEWAL-1"),
        ),
    ] {
        let (_, verdict) = audit_with_deadline(&config, base, name, case, reason, version);
        assert!(verdict.is_ok(), "{name}: {verdict:?}");
    }

    bad(
        "answer",
        response_to_alert.sequence,
        "overdue",
        None,
        "rather than opening a case",
    );
    bad(
        "received-expiring",
        notice.sequence,
        "expiring",
        None,
        "not an alert this node sent",
    );
    bad(
        "other-version",
        alert.sequence,
        "expiring",
        Some(response_to_notice.message_id.as_str()),
        "not a message of case",
    );
    // Noted overdue twice: the second entry is the one named.
    let copy = data.with_file_name("deadline-twice-base");
    copy_dir(&data, &copy);
    {
        let log = ExchangeLog::open(&copy, Durability::Flush).unwrap();
        let entry = focalpoint::log::NewEntry {
            kind: pb::EntryKind::Deadline,
            peer: notice.peer.parse().ok(),
            message_id: notice.message_id.clone(),
            message_kind: pb::MessageKind::DocumentFraudNotice,
            refers_to: notice.sequence,
            reason: "overdue".into(),
            ..Default::default()
        };
        log.transact_blocking(move |t| t.append(entry).map(drop))
            .unwrap();
    }
    let (sequence, verdict) =
        audit_with_deadline(&config, &copy, "twice", notice.sequence, "overdue", None);
    let e = verdict.unwrap_err();
    assert_eq!(e.sequence, sequence);
    assert!(e.to_string().contains("already did"), "{e}");
}
