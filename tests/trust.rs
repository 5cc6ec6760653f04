//! Who may connect: every refusal happens in the TLS handshake, before any handler runs, so
//! nothing reaches the log.

mod common;

use common::*;
use focalpoint::cli::certs::Authority;
use focalpoint::node::tls::ClientTls;
use focalpoint::pb;
use focalpoint::pb::operator_service_client::OperatorServiceClient;

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

/// A leaf for `uri` issued by an intermediate CA that the example CA of `country` issued: the
/// chain `openssl verify` refuses ("path length constraint exceeded"), as the CA has
/// `pathlen:0`. Returns the chain (leaf, then intermediate) and the leaf's key.
fn under_an_intermediate(country: &str, uri: &str, dns: &[&str]) -> (String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose, SanType,
    };
    let base = repo().join("certs-example").join(country);
    let ca = Issuer::from_ca_cert_pem(
        &read(&base.join("ca.pem")),
        KeyPair::from_pem(&read(&base.join("ca.key"))).unwrap(),
    )
    .unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "an intermediate the CA never meant",
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let intermediate_key = KeyPair::generate().unwrap();
    let intermediate = params.signed_by(&intermediate_key, &ca).unwrap();
    let intermediate_issuer = Issuer::new(params, intermediate_key);
    let mut leaf =
        CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>()).unwrap();
    leaf.subject_alt_names
        .push(SanType::URI(uri.try_into().unwrap()));
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf.signed_by(&leaf_key, &intermediate_issuer).unwrap();
    (
        format!("{}{}", leaf.pem(), intermediate.pem()),
        leaf_key.serialize_pem(),
    )
}

#[tokio::test]
async fn a_certificate_issued_under_an_intermediate_is_refused_on_both_planes() {
    let pair = start_pair().await;
    // The peer plane: a node of IDN, through an intermediate under IDN's CA.
    let (chain, key) = under_an_intermediate(
        "idn",
        "urn:focalpoint:IDN:node",
        &["idn.focalpoint.example"],
    );
    refused_on_peer_plane(&pair, chain, key).await;
    // The operator plane: an operator of IDN, through an intermediate under IDN's CA.
    let (chain, key) = under_an_intermediate("idn", "urn:focalpoint:IDN:operator:rogue", &[]);
    let tls = ClientTls {
        ca_pem: read(&repo().join("certs-example/idn/ca.pem")).into_bytes(),
        cert_pem: chain.into_bytes(),
        key_pem: key.into_bytes(),
        server_name: "idn.focalpoint.example".into(),
    };
    let channel = tls
        .channel(&format!("https://{}", pair.idn.operator_address))
        .unwrap();
    let mut client = OperatorServiceClient::new(channel);
    let mut alert = example("idn/alert-trafficking-victim.json");
    alert.message_id = "IDN-ROGUE-1".into();
    let result = client
        .send(pb::SendRequest {
            envelope: Some(alert),
            wait_for_receipt: false,
            also_to: vec![],
        })
        .await;
    assert!(result.is_err(), "the call must fail");
    assert_eq!(
        pair.idn.exchange().log().head().unwrap().0,
        0,
        "nothing logged"
    );
    pair.stop().await;
}
