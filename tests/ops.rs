//! Operations: gRPC health and reflection on both listeners, behind the same mutual TLS.

mod common;

use common::*;
use focalpoint::node::tls::ClientTls;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

fn channel(
    ca_country: &str,
    address: std::net::SocketAddr,
    cert: (String, String),
) -> tonic::transport::Channel {
    ClientTls {
        ca_pem: read(&repo().join("certs-example").join(ca_country).join("ca.pem")).into_bytes(),
        cert_pem: cert.0.into_bytes(),
        key_pem: cert.1.into_bytes(),
        server_name: format!("{ca_country}.focalpoint.example"),
    }
    .channel(&format!("https://{address}"))
    .unwrap()
}

#[tokio::test]
async fn both_listeners_report_health_to_authenticated_callers() {
    let pair = start_pair().await;
    let operator = channel(
        "idn",
        pair.idn.operator_address,
        example_cert("idn", "operator"),
    );
    let peer = channel("khm", pair.khm.peer_address, example_cert("idn", "node"));
    for (channel, service) in [
        (operator.clone(), "focalpoint.v1.OperatorService"),
        (peer, "focalpoint.v1.PeerService"),
    ] {
        let status = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service}");
    }
    // A certificate of the wrong plane gets no answer at all.
    let wrong = channel(
        "khm",
        pair.khm.peer_address,
        example_cert("idn", "operator"),
    );
    assert!(
        HealthClient::new(wrong)
            .check(HealthCheckRequest::default())
            .await
            .is_err()
    );
    pair.stop().await;
}

/// The services a listener lists through reflection `v1`.
async fn services_v1(channel: tonic::transport::Channel) -> Vec<String> {
    use tonic_reflection::pb::v1;
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut stream = v1::server_reflection_client::ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("not a service list");
    };
    list.service.into_iter().map(|s| s.name).collect()
}

#[tokio::test]
async fn reflection_lists_the_services_in_v1_and_v1alpha() {
    use tonic_reflection::pb::v1alpha;
    let pair = start_pair().await;
    let operator = channel(
        "idn",
        pair.idn.operator_address,
        example_cert("idn", "operator"),
    );

    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut stream =
        v1alpha::server_reflection_client::ServerReflectionClient::new(operator.clone())
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("not a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"focalpoint.v1.OperatorService".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );

    let names = services_v1(operator).await;
    assert!(
        names.contains(&"focalpoint.v1.OperatorService".to_owned()),
        "{names:?}"
    );
    assert!(
        !names.contains(&"focalpoint.v1.PeerService".to_owned()),
        "the operator listener lists the peer service: {names:?}"
    );

    // The peer listener lists its own service and not the operator plane's.
    let peer = channel("khm", pair.khm.peer_address, example_cert("idn", "node"));
    let names = services_v1(peer).await;
    assert!(
        names.contains(&"focalpoint.v1.PeerService".to_owned()),
        "{names:?}"
    );
    assert!(
        !names.contains(&"focalpoint.v1.OperatorService".to_owned()),
        "the peer listener lists the operator service: {names:?}"
    );
    pair.stop().await;
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly_and_json_logs_are_json() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let (_, khm_config) = focalpoint::cli::demo::example_configs(dir.path()).unwrap();
    let khm = focalpoint::node::BoundNode::bind(khm_config, None)
        .await
        .unwrap();
    let config = idn_child_config(dir.path(), khm.peer_address());
    let text = read(&config).replace("format = \"human\"", "format = \"json\"");
    std::fs::write(&config, text).unwrap();
    let khm = khm.start().await.unwrap();

    let (mut child, _, operator) = serve_logging(
        &config,
        &dir.path().join("idn/data"),
        "info",
        std::process::Stdio::piped(),
    );
    // Some work, so there is something to flush.
    let mut client = focalpoint::cli::client::OperatorClient::new(&idn_client(
        dir.path(),
        "operator",
        &operator,
    ))
    .unwrap();
    let r = client
        .send(example("idn/alert-trafficking-victim.json"), true)
        .await
        .unwrap();
    assert_eq!(r.state, focalpoint::pb::DeliveryState::Delivered as i32);

    drop(client);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (exit, mut child) = tokio::task::spawn_blocking(move || (child.wait().unwrap(), child))
        .await
        .unwrap();
    assert!(exit.success(), "SIGTERM must exit 0, got {exit:?}");
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["fields"]["message"]
            == "shutting down: no new connections, finishing in-flight work")
    );
    // No personal data in the logs: not the name, not the document number.
    assert!(
        !logs.contains("WULANDARI") && !logs.contains("X2217845"),
        "{logs}"
    );
    // The log was left whole.
    let log = focalpoint::log::ExchangeLog::open(
        &dir.path().join("idn/data"),
        focalpoint::log::Durability::Flush,
    )
    .unwrap();
    assert_eq!(log.verify().unwrap(), 2);
    khm.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_count_messages_refusals_handshakes_and_read_the_log() {
    let pair = start_pair().await;
    let r = pair
        .client("idn", "operator")
        .send(example("idn/alert-trafficking-victim.json"), true)
        .await
        .unwrap();
    assert_eq!(r.state, focalpoint::pb::DeliveryState::Delivered as i32);
    let mut bad = example("khm/fraud-notice-poipet.json");
    bad.receiver = "KHN".into();
    assert!(
        pair.client("khm", "operator")
            .send(bad, false)
            .await
            .is_err()
    );
    // A handshake with a certificate from the wrong plane.
    let wrong = channel(
        "khm",
        pair.khm.peer_address,
        example_cert("idn", "operator"),
    );
    assert!(
        HealthClient::new(wrong)
            .check(HealthCheckRequest::default())
            .await
            .is_err()
    );

    let idn = scrape(pair.idn.metrics_address.unwrap()).await;
    assert!(
        idn.contains("focalpoint_messages_sent_total{kind=\"alert\",peer=\"KHM\"} 1"),
        "{idn}"
    );
    assert!(
        idn.contains("focalpoint_delivery_latency_seconds_count 1"),
        "{idn}"
    );
    assert!(idn.contains("focalpoint_log_entries 2"), "{idn}");
    // OpenMetrics text, as Prometheus negotiates it: typed families and the closing marker.
    assert!(
        idn.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{idn}"
    );
    assert!(
        idn.contains("# TYPE focalpoint_messages_sent counter"),
        "{idn}"
    );
    assert!(idn.ends_with("# EOF\n"), "{idn}");
    assert!(
        idn.contains("focalpoint_outbox_depth{peer=\"KHM\"} 0"),
        "{idn}"
    );
    let khm = scrape(pair.khm.metrics_address.unwrap()).await;
    assert!(
        khm.contains("focalpoint_messages_received_total{kind=\"alert\",peer=\"IDN\"} 1"),
        "{khm}"
    );
    assert!(
        khm.contains("focalpoint_messages_refused_total{kind=\"fraud\",peer=\"local\"} 1"),
        "{khm}"
    );
    // The refused handshake is counted once the server side has seen it.
    let mut counted = false;
    for _ in 0..100 {
        let khm = scrape(pair.khm.metrics_address.unwrap()).await;
        if khm.contains(
            "focalpoint_tls_handshake_failures_total{plane=\"peer\",reason=\"identity_refused\"} 1",
        ) {
            counted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        counted,
        "{}",
        scrape(pair.khm.metrics_address.unwrap()).await
    );
    // No personal data in any label.
    assert!(!idn.contains("WULANDARI") && !khm.contains("SANTOSO"));
    pair.stop().await;
}

#[tokio::test]
async fn certificates_reload_without_downtime_and_bad_ones_are_refused() {
    use focalpoint::pb;
    let pair = start_pair().await;
    let mut idn = pair.client("idn", "operator");
    let mut khm = pair.client("khm", "operator");
    khm.log(1, 1).await.unwrap(); // an established operator connection
    let send = |id: &str| {
        let mut e = example("idn/alert-trafficking-victim.json");
        e.message_id = id.into();
        e
    };
    let signer_of = |r: &pb::SendResponse| r.receipt.as_ref().unwrap().signer_certificate.clone();
    let before = idn.send(send("IDN-ROT-1"), true).await.unwrap();

    // KHM's node certificate is rotated on disk, then reloaded.
    let node = identity("urn:focalpoint:KHM:node");
    let (cert, key) = issue(&example_authority("khm"), &node, -1, 365);
    let khm_dir = pair.dir.path().join("khm");
    std::fs::write(khm_dir.join("node.pem"), &cert).unwrap();
    std::fs::write(khm_dir.join("node.key"), &key).unwrap();
    pair.khm.reload().unwrap();
    let rotated =
        focalpoint::crypto::x509::load_certs(&khm_dir.join("node.pem")).unwrap()[0].to_vec();

    khm.log(1, 1).await.unwrap(); // established work carries on
    let after = idn.send(send("IDN-ROT-2"), true).await.unwrap();
    assert_eq!(after.state, pb::DeliveryState::Delivered as i32);
    assert_ne!(signer_of(&after), signer_of(&before));
    assert_eq!(
        signer_of(&after),
        rotated,
        "receipts are signed with the new key"
    );
    // A fresh operator connection handshakes with the new certificate.
    pair.client("khm", "operator").log(1, 1).await.unwrap();

    // An expired certificate is refused and the node keeps the one it has.
    let (expired, expired_key) = issue(&example_authority("khm"), &node, -30, -1);
    std::fs::write(khm_dir.join("node.pem"), &expired).unwrap();
    std::fs::write(khm_dir.join("node.key"), &expired_key).unwrap();
    assert!(pair.khm.reload().is_err());
    let third = idn.send(send("IDN-ROT-3"), true).await.unwrap();
    assert_eq!(third.state, pb::DeliveryState::Delivered as i32);
    assert_eq!(signer_of(&third), rotated);
    // Receipts from before and after the rotation all verify against the CA.
    let r = pair.client("idn", "auditor").verify().await.unwrap();
    assert!(r.ok, "{}", r.problem);
    pair.stop().await;
}
