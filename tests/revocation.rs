//! Revocation: a certificate on its CA's revocation list is refused in the handshake, on both
//! planes and after a reload, and a receipt signed before its signer's revocation still
//! verifies in the audit while one signed after it does not.

mod common;

use std::path::Path;

use common::*;
use focalpoint::exchange::audit::{self};
use focalpoint::log::{Durability, ExchangeLog};
use focalpoint::pb;
use time::Duration;

/// The demo PKI under `dir` with the CA keys beside the CAs, as `certs revoke` needs them.
fn with_ca_keys(dir: &Path) {
    for country in ["idn", "khm"] {
        std::fs::copy(
            repo().join("certs-example").join(country).join("ca.key"),
            dir.join(country).join("ca.key"),
        )
        .unwrap();
    }
}

/// A throwaway certificate of `country`'s CA, written under `dir`: revoking it starts a list
/// that revokes nothing that matters.
fn throwaway(dir: &Path, country: &str) -> std::path::PathBuf {
    let (cert, _) = issue(
        &example_authority(country),
        &identity(&format!(
            "urn:focalpoint:{}:operator:former",
            country.to_uppercase()
        )),
        -1,
        30,
    );
    let path = dir.join(format!("{country}-former.pem"));
    std::fs::write(&path, cert).unwrap();
    path
}

/// IDN's log audited offline with KHM's revocation list at `list`.
fn audit_with_peer_list(
    idn_config: &focalpoint::node::config::NodeConfig,
    list: &Path,
) -> Result<audit::AuditReport, focalpoint::log::VerifyError> {
    let mut config = idn_config.clone();
    config.peers[0].crl = Some(list.to_owned());
    let trust = config.audit_trust().unwrap();
    let data = config.data_dir.clone().unwrap();
    let log = ExchangeLog::open(&data, Durability::Flush).unwrap();
    audit::verify(&log, &trust)
}

async fn operator_answers(
    dir: &Path,
    node: &focalpoint::node::server::RunningNode,
    role: &str,
) -> bool {
    let mut client = focalpoint::cli::client::OperatorClient::new(
        &focalpoint::cli::demo::example_client(dir, "idn", role, node),
    )
    .unwrap();
    client.log(1, 1).await.is_ok()
}

#[tokio::test]
async fn revoked_certificates_are_refused_on_both_planes_and_after_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (mut idn_config, mut khm_config) =
        focalpoint::cli::demo::example_configs(dir.path()).unwrap();
    with_ca_keys(dir.path());
    let now = now();
    // IDN's list starts with a former operator only; KHM's copy of IDN's list likewise.
    let idn_ca = dir.path().join("idn");
    focalpoint::cli::certs::revoke(&idn_ca, &throwaway(dir.path(), "idn"), now).unwrap();
    idn_config.operator_listener.crl = Some(idn_ca.join("crl.pem"));
    khm_config.peers[0].crl = Some(idn_ca.join("crl.pem"));
    let (idn, khm) = focalpoint::cli::demo::start_pair(idn_config, khm_config)
        .await
        .unwrap();
    assert!(operator_answers(dir.path(), &idn, "operator").await);

    // IDN revokes its operator's certificate and reloads: new connections are refused, and
    // the auditor, not revoked, is still served.
    let listed =
        focalpoint::cli::certs::revoke(&idn_ca, &idn_ca.join("operator.pem"), now).unwrap();
    assert_eq!(listed, 2);
    idn.reload().unwrap();
    assert!(
        !operator_answers(dir.path(), &idn, "operator").await,
        "a revoked operator certificate was served"
    );
    assert!(operator_answers(dir.path(), &idn, "auditor").await);

    // The peer plane: IDN's node certificate revoked; KHM reloads its copy of the list.
    let (cert, key) = example_cert("idn", "node");
    let mut before = peer_client(&khm, "khm", cert.clone(), key.clone());
    before
        .deliver(pb::DeliverRequest {
            envelope: idn_alert_bytes("IDN-REVOKE-1", "x"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        focalpoint::cli::certs::revoke(&idn_ca, &idn_ca.join("node.pem"), now).unwrap(),
        3
    );
    khm.reload().unwrap();
    let mut after = peer_client(&khm, "khm", cert, key);
    let refused = after
        .deliver(pb::DeliverRequest {
            envelope: idn_alert_bytes("IDN-REVOKE-2", "x"),
            ..Default::default()
        })
        .await;
    assert!(refused.is_err(), "a revoked node certificate was served");
    assert!(
        khm.exchange()
            .log()
            .received("IDN".parse().unwrap(), "IDN-REVOKE-2")
            .unwrap()
            .is_none()
    );
    idn.stop().await.unwrap();
    khm.stop().await.unwrap();
}

#[tokio::test]
async fn a_receipt_stands_if_it_was_signed_before_its_signer_was_revoked() {
    let pair = start_pair().await;
    let mut alert = example("idn/alert-trafficking-victim.json");
    alert.message_id = "IDN-REVOKE-AUDIT-1".into();
    let r = pair
        .client("idn", "operator")
        .send(alert, true)
        .await
        .unwrap();
    assert_eq!(r.state, pb::DeliveryState::Delivered as i32);
    let signed_at = {
        use prost::Message;
        let receipt = pb::Receipt::decode(r.receipt.unwrap().receipt.as_slice()).unwrap();
        focalpoint::domain::model::parse_instant(&receipt.stored_at).unwrap()
    };
    let Pair { dir, idn, khm } = pair;
    idn.stop().await.unwrap();
    khm.stop().await.unwrap();
    with_ca_keys(dir.path());
    let khm_ca = dir.path().join("khm");
    let (idn_config, _) = focalpoint::cli::demo::example_configs(dir.path()).unwrap();
    let audit_with = |list: &Path| audit_with_peer_list(&idn_config, list);

    // KHM's node certificate revoked a second after it signed: the receipt stands.
    focalpoint::cli::certs::revoke(
        &khm_ca,
        &khm_ca.join("node.pem"),
        signed_at + Duration::seconds(1),
    )
    .unwrap();
    let later = dir.path().join("khm-crl-now.pem");
    std::fs::copy(khm_ca.join("crl.pem"), &later).unwrap();
    let report = audit_with(&later).unwrap();
    assert_eq!(report.receipts, 1);

    // Revoked an hour before it signed: the receipt does not stand.
    std::fs::remove_file(khm_ca.join("crl.pem")).unwrap();
    focalpoint::cli::certs::revoke(
        &khm_ca,
        &khm_ca.join("node.pem"),
        signed_at - Duration::hours(1),
    )
    .unwrap();
    let err = audit_with(&khm_ca.join("crl.pem")).unwrap_err();
    assert!(
        err.problem.to_string().contains("revoked"),
        "entry {}: {}",
        err.sequence,
        err.problem
    );

    // A list the peer's CA did not sign is refused as configuration.
    let mut config = idn_config.clone();
    let idn_ca = dir.path().join("idn");
    focalpoint::cli::certs::revoke(&idn_ca, &idn_ca.join("operator.pem"), now()).unwrap();
    config.peers[0].crl = Some(idn_ca.join("crl.pem"));
    let refused = config.audit_trust().unwrap_err().to_string();
    assert!(
        refused.contains("not signed by the configured CA"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_cosignature_stands_if_it_was_made_before_its_witness_was_revoked() {
    let pair = start_pair().await;
    let before = now();
    let cp = pair
        .client("idn", "operator")
        .checkpoint("KHM")
        .await
        .unwrap();
    let after = now();
    let Pair { dir, idn, khm } = pair;
    idn.stop().await.unwrap();
    khm.stop().await.unwrap();
    with_ca_keys(dir.path());
    let khm_ca = dir.path().join("khm");
    let (idn_config, _) = focalpoint::cli::demo::example_configs(dir.path()).unwrap();
    let audit_with = |list: &Path| audit_with_peer_list(&idn_config, list);
    focalpoint::cli::certs::revoke(
        &khm_ca,
        &khm_ca.join("node.pem"),
        after + Duration::seconds(1),
    )
    .unwrap();
    let report = audit_with(&khm_ca.join("crl.pem")).unwrap();
    assert_eq!(report.checkpoints, 1);
    std::fs::remove_file(khm_ca.join("crl.pem")).unwrap();
    focalpoint::cli::certs::revoke(
        &khm_ca,
        &khm_ca.join("node.pem"),
        before - Duration::hours(1),
    )
    .unwrap();
    let err = audit_with(&khm_ca.join("crl.pem")).unwrap_err();
    assert_eq!(err.sequence, cp.log_sequence, "{}", err.problem);
    assert!(
        err.problem
            .to_string()
            .contains("cosignature does not stand"),
        "{}",
        err.problem
    );
}

#[tokio::test]
async fn a_receipt_from_a_revoked_peer_is_refused_however_it_is_dated() {
    let dir = tempfile::tempdir().unwrap();
    let (mut idn_config, khm_config) = focalpoint::cli::demo::example_configs(dir.path()).unwrap();
    with_ca_keys(dir.path());
    let khm_ca = dir.path().join("khm");
    // KHM's node key was revoked a minute ago; IDN has KHM's list.
    focalpoint::cli::certs::revoke(
        &khm_ca,
        &khm_ca.join("node.pem"),
        now() - Duration::minutes(1),
    )
    .unwrap();
    idn_config.peers[0].crl = Some(khm_ca.join("crl.pem"));
    let (idn, khm) = focalpoint::cli::demo::start_pair(idn_config, khm_config)
        .await
        .unwrap();

    // A delivery now, to a node whose key is revoked.
    let mut operator = focalpoint::cli::client::OperatorClient::new(
        &focalpoint::cli::demo::example_client(dir.path(), "idn", "operator", &idn),
    )
    .unwrap();
    let mut alert = example("idn/alert-trafficking-victim.json");
    alert.message_id = "IDN-REVOKED-PEER-1".into();
    let sent = operator.send(alert, false).await.unwrap();
    let log = idn.exchange().log();

    // IDN does not hand the alert to a server whose certificate is revoked: the connection
    // fails in its handshake, and KHM never receives it.
    // KHM's listener sees IDN's client abandon the handshake.
    let failed_handshakes = || {
        khm.exchange()
            .metrics()
            .render(&focalpoint::exchange::metrics::Gauges::default())
            .lines()
            .filter(|l| l.starts_with("focalpoint_tls_handshake_failures_total{plane=\"peer\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while failed_handshakes() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no delivery was tried"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        khm.exchange()
            .log()
            .received("IDN".parse().unwrap(), "IDN-REVOKED-PEER-1")
            .unwrap()
            .is_none(),
        "the alert reached a node whose certificate is revoked"
    );

    // A receipt made with the revoked key and dated an hour back, before the revocation:
    // refused, since the message it acknowledges was logged after the revocation.
    let cert = focalpoint::crypto::x509::load_certs(&khm_ca.join("node.pem")).unwrap();
    let key = focalpoint::crypto::x509::load_key(&khm_ca.join("node.key")).unwrap();
    let signer = focalpoint::crypto::receipt::ReceiptSigner::new(&cert[0], &key).unwrap();
    let entry = log.entry(sent.log_sequence).unwrap().unwrap();
    let backdated = pb::Receipt {
        message_id: "IDN-REVOKED-PEER-1".into(),
        envelope_sha256: entry.entry.content_sha256.clone(),
        sender: "IDN".into(),
        receiver: "KHM".into(),
        log_sequence: 1,
        entry_hash: vec![0; 32],
        stored_at: focalpoint::domain::model::format_instant(now() - Duration::hours(1)),
    };
    let signed = signer.sign(&backdated).unwrap();
    let refused = idn
        .exchange()
        .accept_receipt("KHM".parse().unwrap(), sent.log_sequence, signed)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("revoked"), "{refused}");
    assert!(
        log.receipt_for(sent.log_sequence).unwrap().is_none(),
        "a receipt from a revoked key was logged"
    );
    idn.stop().await.unwrap();
    khm.stop().await.unwrap();
}
