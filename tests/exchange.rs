//! The exchange end to end: two real nodes over mutual TLS on loopback.

mod common;

use common::*;
use focalpoint::domain::model::{CountryCode, Digest};
use focalpoint::pb;
use prost::Message;
use tonic::Code;

fn ca(country: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    focalpoint::crypto::x509::load_certs(&repo().join("certs-example").join(country).join("ca.pem"))
        .unwrap()
}

#[tokio::test]
async fn every_kind_goes_both_ways_and_is_in_both_logs_with_matching_digests() {
    let pair = start_pair().await;
    let sends = [
        ("idn", "operator", "idn/alert-trafficking-victim.json"),
        ("khm", "operator", "khm/fraud-notice-poipet.json"),
        ("idn", "sync", "idn/statistics-2025-jan-apr.json"),
        ("khm", "sync", "khm/statistics-2025-jan-apr.json"),
        ("khm", "operator", "khm/response-to-alert.json"),
        ("idn", "operator", "idn/response-to-fraud-notice.json"),
        // Every kind in both directions: an alert from KHM and a response from IDN to it.
        ("khm", "operator", "khm/response-to-alert.json"),
    ];
    for (from, role, file) in sends {
        let r = pair
            .client(from, role)
            .send_or_push(example(file), true)
            .await
            .unwrap();
        assert_eq!(
            r.state,
            pb::DeliveryState::Delivered as i32,
            "{file}: {}",
            r.detail
        );
        let receipt = r.receipt.expect("a delivered message carries its receipt");
        let receiver = if from == "idn" { "khm" } else { "idn" };
        let checked = focalpoint::crypto::receipt::verify(
            &receipt,
            &ca(receiver),
            receiver.to_uppercase().parse().unwrap(),
        )
        .unwrap();
        assert_eq!(checked.envelope_sha256, r.envelope_sha256);
    }
    // An alert and a fraud notice from KHM, so every kind also flows KHM to IDN.
    let mut alert = example("idn/alert-trafficking-victim.json");
    alert.message_id = "KHM-20250502-ALERT-0001".into();
    alert.receiver = "IDN".into();
    let mut fraud = example("khm/fraud-notice-poipet.json");
    fraud.message_id = "IDN-20250503-FRAUD-0001".into();
    fraud.receiver = "KHM".into();
    for (from, envelope) in [("khm", alert), ("idn", fraud)] {
        let r = pair
            .client(from, "operator")
            .send(envelope, true)
            .await
            .unwrap();
        assert_eq!(r.state, pb::DeliveryState::Delivered as i32, "{}", r.detail);
    }

    for (name, node) in [("idn", &pair.idn), ("khm", &pair.khm)] {
        let inbox = pair
            .client(name, "operator")
            .inbox(pb::InboxRequest::default())
            .await
            .unwrap();
        let kinds: std::collections::BTreeSet<i32> = inbox
            .messages
            .iter()
            .map(|m| {
                m.entry
                    .as_ref()
                    .unwrap()
                    .entry
                    .as_ref()
                    .unwrap()
                    .message_kind
            })
            .collect();
        assert_eq!(kinds.len(), 4, "{name} inbox holds every kind");
        assert!(node.exchange().log().verify().is_ok());
    }
    // Every sent message is in the receiver's log with the same digest.
    let mut compared = 0;
    for (from, to) in [(&pair.idn, &pair.khm), (&pair.khm, &pair.idn)] {
        let sender: CountryCode = from.exchange().country();
        for e in from.exchange().log().range(1, 1000).unwrap() {
            if e.kind() != pb::EntryKind::MessageSent {
                continue;
            }
            let seq = to
                .exchange()
                .log()
                .received(sender, &e.entry.message_id)
                .unwrap()
                .expect("the receiver logged it");
            let theirs = to.exchange().log().entry(seq).unwrap().unwrap();
            assert_eq!(theirs.entry.content_sha256, e.entry.content_sha256);
            compared += 1;
        }
    }
    // The duplicate response above was a no-op, so 8 distinct messages.
    assert_eq!(compared, 8);
    pair.stop().await;
}

#[tokio::test]
async fn a_duplicate_returns_the_first_receipt_and_appends_nothing() {
    let pair = start_pair().await;
    let (cert, key) = example_cert("idn", "node");
    let mut peer = peer_client(&pair.khm, "khm", cert, key);
    let bytes = idn_alert_bytes("IDN-DUP-1", "first");
    let first = peer
        .deliver(pb::DeliverRequest {
            envelope: bytes.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let size = pair.khm.exchange().log().head().unwrap().0;
    let again = peer
        .deliver(pb::DeliverRequest {
            envelope: bytes,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, again, "the same receipt, signature and all");
    assert_eq!(pair.khm.exchange().log().head().unwrap().0, size);

    // The operator plane too: the same send again is reported as a duplicate, nothing logged.
    let mut operator = pair.client("idn", "operator");
    let envelope = example("idn/alert-trafficking-victim.json");
    let r1 = operator.send(envelope.clone(), true).await.unwrap();
    let idn_size = pair.idn.exchange().log().head().unwrap().0;
    // The same file sent again, with no created_at of its own: the node reuses the time it
    // filled in the first time, so this is the same message.
    let r2 = operator.send(envelope, false).await.unwrap();
    assert!(r2.duplicate);
    assert_eq!(r2.log_sequence, r1.log_sequence);
    assert_eq!(pair.idn.exchange().log().head().unwrap().0, idn_size);
    pair.stop().await;
}

#[tokio::test]
async fn a_conflicting_duplicate_is_refused_and_the_refusal_is_logged() {
    let pair = start_pair().await;
    let (cert, key) = example_cert("idn", "node");
    let mut peer = peer_client(&pair.khm, "khm", cert, key);
    peer.deliver(pb::DeliverRequest {
        envelope: idn_alert_bytes("IDN-CONFLICT-1", "first"),
        ..Default::default()
    })
    .await
    .unwrap();
    let err = peer
        .deliver(pb::DeliverRequest {
            envelope: idn_alert_bytes("IDN-CONFLICT-1", "other content"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let log = pair.khm.exchange().log();
    let (size, _) = log.head().unwrap();
    let last = log.entry(size).unwrap().unwrap();
    assert_eq!(last.kind(), pb::EntryKind::Refusal);
    assert_eq!(last.entry.message_id, "IDN-CONFLICT-1");
    assert_eq!(
        Digest::from_slice(&last.entry.content_sha256),
        Some(Digest::of(&idn_alert_bytes(
            "IDN-CONFLICT-1",
            "other content"
        )))
    );
    // The first message is untouched.
    let first = log
        .received("IDN".parse().unwrap(), "IDN-CONFLICT-1")
        .unwrap()
        .unwrap();
    assert_eq!(
        log.content(first).unwrap().unwrap(),
        idn_alert_bytes("IDN-CONFLICT-1", "first")
    );
    pair.stop().await;
}

#[tokio::test]
async fn invalid_inputs_are_refused_naming_the_field_and_leave_only_a_refusal() {
    let pair = start_pair().await;
    let mut operator = pair.client("idn", "operator");
    type Mutation = Box<dyn Fn(&mut pb::Envelope)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("receiver", Box::new(|e| e.receiver = "KHN".into())),
        ("message_id", Box::new(|e| e.message_id = "bad id".into())),
        (
            "traveller_alert.person.date_of_birth",
            Box::new(|e| {
                if let Some(pb::envelope::Body::TravellerAlert(a)) = &mut e.body {
                    a.person.as_mut().unwrap().date_of_birth = "2001-02-30".into();
                }
            }),
        ),
        (
            "traveller_alert.documents[0].mrz",
            Box::new(|e| {
                if let Some(pb::envelope::Body::TravellerAlert(a)) = &mut e.body {
                    a.documents[0].mrz = a.documents[0].mrz.replace("<8IDN", "<9IDN");
                }
            }),
        ),
        ("handling", Box::new(|e| e.handling = None)),
        (
            "created_at",
            Box::new(|e| e.created_at = "9999-12-31T23:59:59Z".into()),
        ),
        (
            "traveller_alert.person.aliases",
            Box::new(|e| {
                if let Some(pb::envelope::Body::TravellerAlert(a)) = &mut e.body {
                    a.person.as_mut().unwrap().aliases = vec!["SARI".into(); 60_000];
                }
            }),
        ),
    ];
    for (field, mutate) in cases {
        let before = pair.idn.exchange().log().head().unwrap().0;
        let mut e = example("idn/alert-trafficking-victim.json");
        mutate(&mut e);
        let err = operator.send(e, false).await.unwrap_err();
        let focalpoint::cli::client::ClientError::Refused(status) = err else {
            panic!("{field}: expected a refusal, got {err}");
        };
        assert_eq!(status.code(), Code::InvalidArgument, "{field}");
        assert!(
            status.message().contains(field),
            "{field} not named in {}",
            status.message()
        );
        let log = pair.idn.exchange().log();
        assert_eq!(
            log.head().unwrap().0,
            before + 1,
            "{field}: exactly one entry"
        );
        assert_eq!(
            log.entry(before + 1).unwrap().unwrap().kind(),
            pb::EntryKind::Refusal
        );
    }
    assert!(
        pair.idn
            .exchange()
            .log()
            .pending("KHM".parse().unwrap())
            .unwrap()
            .is_empty()
    );

    // The peer plane refuses unknown fields and garbage, naming the envelope.
    let (cert, key) = example_cert("idn", "node");
    let mut peer = peer_client(&pair.khm, "khm", cert, key);
    let mut future = pb::Envelope::decode(idn_alert_bytes("IDN-FUTURE", "x").as_slice()).unwrap();
    future.created_at = "9999-12-31T23:59:59Z".into();
    let err = peer
        .deliver(pb::DeliverRequest {
            envelope: future.encode_to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("created_at"), "{}", err.message());
    let mut bytes = idn_alert_bytes("IDN-UNKNOWN-FIELD", "x");
    bytes.extend_from_slice(&[0x98, 0x06, 0x01]);
    for envelope in [bytes, vec![0xff, 0x00, 0x13]] {
        let err = peer
            .deliver(pb::DeliverRequest {
                envelope,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("envelope"), "{}", err.message());
    }
    assert!(pair.khm.exchange().log().inbox().unwrap().is_empty());
    pair.stop().await;
}

#[tokio::test]
async fn an_envelope_whose_sender_is_not_the_callers_country_is_refused() {
    let pair = start_pair().await;
    let (cert, key) = example_cert("idn", "node");
    let mut peer = peer_client(&pair.khm, "khm", cert, key);
    let mut e = pb::Envelope::decode(idn_alert_bytes("THA-1", "x").as_slice()).unwrap();
    e.sender = "THA".into();
    let err = peer
        .deliver(pb::DeliverRequest {
            envelope: e.encode_to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("sender:"), "{}", err.message());

    // IDN's certificate, an envelope claiming to come from KHM and addressed to KHM: the
    // receiver being the sender's own country is a symptom; the fault is the sender.
    let mut e = pb::Envelope::decode(idn_alert_bytes("KHM-1", "x").as_slice()).unwrap();
    e.sender = "KHM".into();
    let err = peer
        .deliver(pb::DeliverRequest {
            envelope: e.encode_to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    assert!(err.message().contains("sender:"), "{}", err.message());
    assert!(pair.khm.exchange().log().inbox().unwrap().is_empty());

    // A refusal names the message id only when the id itself is valid.
    let mut e = pb::Envelope::decode(idn_alert_bytes("IDN-1", "x").as_slice()).unwrap();
    e.message_id = "WULANDARI SARI X2217845".into();
    let err = peer
        .deliver(pb::DeliverRequest {
            envelope: e.encode_to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(!err.message().contains("X2217845"), "{}", err.message());
    let log = pair.khm.exchange().log();
    let (size, _) = log.head().unwrap();
    let refusal = log.entry(size).unwrap().unwrap();
    assert_eq!(refusal.kind(), pb::EntryKind::Refusal);
    assert_eq!(refusal.entry.message_id, "", "an invalid id is not kept");
    assert!(!format!("{refusal:?}").contains("X2217845"));
    pair.stop().await;
}

#[tokio::test]
async fn an_auditor_cannot_send_and_the_sync_may_push_statistics_only() {
    let pair = start_pair().await;
    let err = pair
        .client("idn", "auditor")
        .send(example("idn/statistics-2025-jan-apr.json"), false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, focalpoint::cli::client::ClientError::Refused(s) if s.code() == Code::PermissionDenied)
    );
    let err = pair
        .client("idn", "sync")
        .send(example("idn/alert-trafficking-victim.json"), false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, focalpoint::cli::client::ClientError::Refused(s) if s.code() == Code::PermissionDenied)
    );
    let err = pair
        .client("idn", "sync")
        .inbox(pb::InboxRequest::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, focalpoint::cli::client::ClientError::Refused(s) if s.code() == Code::PermissionDenied)
    );
    // A statistics report goes through PushStatistics only, where the node numbers its
    // revision and counts the exchange: through Send, with a revision and counts of the
    // caller's own, it is refused for the sync and for operators alike.
    let mut forged = example("idn/statistics-2025-jan-apr.json");
    if let Some(pb::envelope::Body::StatisticsReport(r)) = &mut forged.body {
        r.revision = 99;
        r.exchanged = vec![pb::ExchangeCount {
            kind: pb::MessageKind::TravellerAlert as i32,
            direction: pb::Direction::Sent as i32,
            count: 1_000,
            message_ids_sha256: vec![0; 32],
        }];
    }
    let err = pair
        .client("idn", "sync")
        .send(forged.clone(), false)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, focalpoint::cli::client::ClientError::Refused(s) if s.code() == Code::PermissionDenied),
        "{err}"
    );
    let err = pair
        .client("idn", "operator")
        .send(forged, false)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, focalpoint::cli::client::ClientError::Refused(s)
            if s.code() == Code::InvalidArgument && s.message().contains("PushStatistics")),
        "{err}"
    );
    assert_eq!(
        pair.idn.exchange().log().head().unwrap().0,
        0,
        "nothing logged"
    );
    // Auditors read.
    let log = pair.client("idn", "auditor").log(1, 10).await.unwrap();
    assert_eq!(log.size, 0);
    pair.stop().await;
}

/// A stream may hold only so many bytes of envelopes in flight (8 MiB): one whose envelopes
/// would pass that before the bound on their number waits for answers to make room, and every
/// envelope is still answered, in order.
#[tokio::test]
async fn a_stream_carrying_more_than_it_may_hold_in_flight_is_answered_in_full() {
    let pair = start_pair().await;
    let (cert, key) = example_cert("idn", "node");
    let mut peer = peer_client(&pair.khm, "khm", cert, key);
    // A summary and ten indicators of three-byte characters: about 42 KiB an envelope, so
    // 8 MiB holds fewer than 200 of them, and 400 carry 16 MiB.
    let envelope = |i: usize| {
        let mut e = example("idn/alert-trafficking-victim.json");
        e.message_id = format!("IDN-LARGE-{i}");
        e.sender = "IDN".into();
        e.created_at = "2025-04-30T08:15:00Z".into();
        if let Some(pb::envelope::Body::TravellerAlert(a)) = &mut e.body {
            a.summary = "\u{1780}".repeat(4000);
            let code = a.indicators[0].code;
            a.indicators = (0..10)
                .map(|_| pb::Indicator {
                    code,
                    detail: "\u{1781}".repeat(1000),
                })
                .collect();
        }
        e.encode_to_vec()
    };
    let envelopes: Vec<Vec<u8>> = (0..400).map(envelope).collect();
    // The bytes bind before the number (384 in flight) does.
    let smallest = envelopes.iter().map(Vec::len).min().unwrap();
    assert!(
        smallest > 8 * 1024 * 1024 / 384,
        "the smallest envelope is {smallest} bytes"
    );
    let requests = envelopes.into_iter().map(|envelope| pb::DeliverRequest {
        envelope,
        ..Default::default()
    });
    let answered = tokio::time::timeout(std::time::Duration::from_secs(120), async {
        let mut responses = peer
            .deliver_stream(tokio_stream::iter(requests))
            .await
            .unwrap()
            .into_inner();
        let mut ids = Vec::new();
        while let Some(r) = responses.message().await.unwrap() {
            match r.outcome.unwrap() {
                pb::deliver_response::Outcome::Receipt(r) => {
                    ids.push(
                        pb::Receipt::decode(r.receipt.as_slice())
                            .unwrap()
                            .message_id,
                    );
                }
                pb::deliver_response::Outcome::Refusal(r) => panic!("refused: {}", r.reason),
            }
        }
        ids
    })
    .await
    .expect("the stream is answered in full, not stalled");
    let expected: Vec<String> = (0..400).map(|i| format!("IDN-LARGE-{i}")).collect();
    assert_eq!(answered, expected);
    assert_eq!(pair.khm.exchange().log().inbox().unwrap().len(), 400);
    pair.stop().await;
}

#[tokio::test]
async fn a_stream_of_envelopes_gets_one_answer_each_in_order() {
    let pair = start_pair().await;
    let (cert, key) = example_cert("idn", "node");
    let mut peer = peer_client(&pair.khm, "khm", cert, key);
    let mut bad = idn_alert_bytes("IDN-STREAM-2", "x");
    bad.extend_from_slice(&[0x98, 0x06, 0x01]);
    let requests = vec![
        idn_alert_bytes("IDN-STREAM-1", "first"),
        bad,
        idn_alert_bytes("IDN-STREAM-3", "third"),
        idn_alert_bytes("IDN-STREAM-1", "first"),
    ]
    .into_iter()
    .map(|envelope| pb::DeliverRequest {
        envelope,
        ..Default::default()
    });
    let mut responses = peer
        .deliver_stream(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut outcomes = Vec::new();
    while let Some(r) = responses.message().await.unwrap() {
        outcomes.push(r.outcome.unwrap());
    }
    use pb::deliver_response::Outcome;
    assert_eq!(outcomes.len(), 4);
    let receipt_id = |o: &Outcome| match o {
        Outcome::Receipt(r) => {
            pb::Receipt::decode(r.receipt.as_slice())
                .unwrap()
                .message_id
        }
        Outcome::Refusal(r) => panic!("unexpected refusal {r:?}"),
    };
    assert_eq!(receipt_id(&outcomes[0]), "IDN-STREAM-1");
    assert!(
        matches!(&outcomes[1], Outcome::Refusal(r) if r.code == Code::InvalidArgument as i32 && r.message_id == "IDN-STREAM-2")
    );
    assert_eq!(receipt_id(&outcomes[2]), "IDN-STREAM-3");
    assert_eq!(
        outcomes[3], outcomes[0],
        "the duplicate gets the first receipt"
    );
    assert_eq!(pair.khm.exchange().log().inbox().unwrap().len(), 2);
    pair.stop().await;
}

#[tokio::test]
async fn the_inbox_filters_by_kind_peer_and_time() {
    let pair = start_pair().await;
    let mut khm = pair.client("khm", "operator");
    for file in [
        "khm/fraud-notice-poipet.json",
        "khm/statistics-2025-jan-apr.json",
    ] {
        let r = khm.send_or_push(example(file), true).await.unwrap();
        assert_eq!(r.state, pb::DeliveryState::Delivered as i32);
    }
    let mut idn = pair.client("idn", "operator");
    let count = |r: pb::InboxResponse| r.messages.len();
    let all = idn.inbox(pb::InboxRequest::default()).await.unwrap();
    assert_eq!(count(all), 2);
    let fraud = idn
        .inbox(pb::InboxRequest {
            kind: pb::MessageKind::DocumentFraudNotice as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(fraud.messages.len(), 1);
    assert_eq!(
        fraud.messages[0].envelope.as_ref().unwrap().message_id,
        "KHM-20250429-FRAUD-0001"
    );
    for (request, expected) in [
        (
            pb::InboxRequest {
                peer: "THA".into(),
                ..Default::default()
            },
            0,
        ),
        (
            pb::InboxRequest {
                since: "2999-01-01T00:00:00Z".into(),
                ..Default::default()
            },
            0,
        ),
        (
            pb::InboxRequest {
                since: "2000-01-01T00:00:00Z".into(),
                until: "2999-01-01T00:00:00Z".into(),
                ..Default::default()
            },
            2,
        ),
    ] {
        let filter = format!("{request:?}");
        assert_eq!(
            count(idn.inbox(request).await.unwrap()),
            expected,
            "{filter}"
        );
    }
    let err = idn
        .inbox(pb::InboxRequest {
            since: "yesterday".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("since"), "{err}");
    // show: the alert's story from the sender's side.
    let shown = idn.show("KHM-20250429-FRAUD-0001").await.unwrap();
    assert_eq!(shown.messages.len(), 1);
    assert!(shown.messages[0].receipt.is_some());
    pair.stop().await;
}

#[tokio::test]
async fn a_retry_of_a_stored_envelope_is_answered_even_when_the_clock_would_refuse_it_now() {
    let pair = start_pair().await;
    let (cert, key) = example_cert("idn", "node");
    let mut peer = peer_client(&pair.khm, "khm", cert, key);
    let ahead = focalpoint::domain::model::format_instant(now() + time::Duration::minutes(5));
    let envelope_at = |id: &str| {
        let mut e = pb::Envelope::decode(idn_alert_bytes(id, "x").as_slice()).unwrap();
        e.created_at = ahead.clone();
        e.encode_to_vec()
    };
    let first = peer
        .deliver(pb::DeliverRequest {
            envelope: envelope_at("IDN-AHEAD-1"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // As if KHM's clock had stepped back: five minutes ahead is now too far.
    pair.khm.exchange().set_max_clock_skew(60);
    let again = peer
        .deliver(pb::DeliverRequest {
            envelope: envelope_at("IDN-AHEAD-1"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, first, "the retry is answered with the first receipt");
    let refused = peer
        .deliver(pb::DeliverRequest {
            envelope: envelope_at("IDN-AHEAD-2"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("created_at"),
        "{}",
        refused.message()
    );
    let log = pair.khm.exchange().log();
    let (size, _) = log.head().unwrap();
    assert_eq!(
        log.entry(size).unwrap().unwrap().kind(),
        pb::EntryKind::Refusal
    );
    pair.stop().await;
}
