//! Who may connect: every refusal happens in the TLS handshake, before any handler runs, so
//! nothing reaches the log.

mod common;

use common::*;
use focalpoint::certs::Authority;
use focalpoint::pb;
use focalpoint::pb::operator_service_client::OperatorServiceClient;
use focalpoint::tls::ClientTls;

async fn refused_on_peer_plane(pair: &Pair, cert: String, key: String) {
    let mut client = peer_client(&pair.khm, "khm", cert, key);
    let result = client
        .deliver(pb::DeliverRequest {
            envelope: idn_alert_bytes("IDN-TRUST-1", "x"),
            ..Default::default()
        })
        .await;
    assert!(result.is_err(), "the call must fail");
    assert_eq!(
        pair.khm.exchange().log().head().unwrap().0,
        0,
        "nothing logged"
    );
}

#[tokio::test]
async fn the_example_node_certificate_is_accepted() {
    let pair = start_pair().await;
    let (cert, key) = example_cert("idn", "node");
    let mut client = peer_client(&pair.khm, "khm", cert, key);
    client
        .deliver(pb::DeliverRequest {
            envelope: idn_alert_bytes("IDN-TRUST-OK", "x"),
            ..Default::default()
        })
        .await
        .unwrap();
    pair.stop().await;
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let pair = start_pair().await;
    let ca = read(&repo().join("certs-example/khm/ca.pem"));
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
        .domain_name("khm.focalpoint.example");
    let channel =
        tonic::transport::Endpoint::from_shared(format!("https://{}", pair.khm.peer_address))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect_lazy();
    let mut client = pb::peer_service_client::PeerServiceClient::new(channel);
    let result = client
        .deliver(pb::DeliverRequest {
            envelope: idn_alert_bytes("IDN-TRUST-2", "x"),
            ..Default::default()
        })
        .await;
    assert!(result.is_err());
    assert_eq!(pair.khm.exchange().log().head().unwrap().0, 0);
    pair.stop().await;
}

#[tokio::test]
async fn a_client_from_an_unknown_ca_is_refused() {
    let pair = start_pair().await;
    let rogue = Authority::new(
        "IDN".parse().unwrap(),
        "rogue CA",
        now() - time::Duration::days(1),
        now() + time::Duration::days(30),
    )
    .unwrap();
    let (cert, key) = issue(&rogue, &identity("urn:focalpoint:IDN:node"), -1, 30);
    refused_on_peer_plane(&pair, cert, key).await;
    pair.stop().await;
}

#[tokio::test]
async fn a_peer_claiming_another_country_is_refused() {
    let pair = start_pair().await;
    // Signed by IDN's real CA, but claiming to be Thailand's node, and then KHM's own.
    for uri in ["urn:focalpoint:THA:node", "urn:focalpoint:KHM:node"] {
        let (cert, key) = issue(&example_authority("idn"), &identity(uri), -1, 30);
        refused_on_peer_plane(&pair, cert, key).await;
    }
    pair.stop().await;
}

#[tokio::test]
async fn an_expired_or_not_yet_valid_peer_certificate_is_refused() {
    let pair = start_pair().await;
    let node = identity("urn:focalpoint:IDN:node");
    for (from, until) in [(-30, -1), (1, 30)] {
        let (cert, key) = issue(&example_authority("idn"), &node, from, until);
        refused_on_peer_plane(&pair, cert, key).await;
    }
    pair.stop().await;
}

#[tokio::test]
async fn an_operator_certificate_on_the_peer_plane_is_refused() {
    let pair = start_pair().await;
    let (cert, key) = example_cert("idn", "operator");
    refused_on_peer_plane(&pair, cert, key).await;
    pair.stop().await;
}

#[tokio::test]
async fn a_peer_certificate_on_the_operator_plane_is_refused() {
    let pair = start_pair().await;
    // IDN's node certificate at KHM's operator listener (wrong CA), and at IDN's own
    // operator listener (right CA, but a node is not a user).
    for (target, node) in [("khm", &pair.khm), ("idn", &pair.idn)] {
        let (cert, key) = example_cert("idn", "node");
        let tls = ClientTls {
            ca_pem: read(&repo().join("certs-example").join(target).join("ca.pem")).into_bytes(),
            cert_pem: cert.into_bytes(),
            key_pem: key.into_bytes(),
            server_name: format!("{target}.focalpoint.example"),
        };
        let channel = tls
            .channel(&format!("https://{}", node.operator_address))
            .unwrap();
        let mut client = OperatorServiceClient::new(channel);
        let result = client.log(pb::LogRequest::default()).await;
        assert!(result.is_err(), "{target}: the call must fail");
    }
    pair.stop().await;
}
