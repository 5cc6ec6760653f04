//! Response deadlines by urgency, held to the log's clock, and hit reports, between two real
//! nodes over mutual TLS.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::*;
use focalpoint::crypto::receipt::ReceiptSigner;
use focalpoint::crypto::x509;
use focalpoint::domain::case::ResponseTimes;
use focalpoint::exchange::cases::CasesFilter;
use focalpoint::exchange::{Exchange, PeerTrust};
use focalpoint::log::{Durability, ExchangeLog, LogOptions};
use focalpoint::pb;

const HOUR_MICROS: i64 = 3_600_000_000;

fn alert(id: &str, urgency: pb::Urgency) -> pb::Envelope {
    let mut e = example("idn/alert-trafficking-victim.json");
    e.message_id = id.into();
    e.handling.as_mut().unwrap().urgency = urgency as i32;
    e
}

/// The exchange of the stopped node `country` (`own`) over its log as it will be `hours` from
/// now, with `peer` configured at the default response times.
fn exchange_ahead(dir: &Path, own: &str, peer: &str, hours: i64) -> Exchange {
    let base = dir.join(own);
    let cert = x509::load_certs(&base.join("node.pem")).unwrap();
    let key = x509::load_key(&base.join("node.key")).unwrap();
    let signer = Arc::new(ReceiptSigner::new(&cert[0], &key).unwrap());
    let log = ExchangeLog::open(
        &base.join("data"),
        LogOptions::from(Durability::Flush)
            .with_signer(signer.clone())
            .ahead(hours * HOUR_MICROS),
    )
    .unwrap();
    let anchors = x509::load_certs(&base.join(format!("peers/{peer}-ca.pem"))).unwrap();
    let peers = BTreeMap::from([(
        peer.to_ascii_uppercase().parse().unwrap(),
        PeerTrust {
            anchors,
            revoked: Default::default(),
            response_times: ResponseTimes::default(),
            agreement: Default::default(),
        },
    )]);
    Exchange::new(
        own.to_ascii_uppercase().parse().unwrap(),
        log,
        signer,
        peers,
    )
}

fn overdue(exchange: &Exchange) -> Vec<String> {
    exchange
        .cases(&CasesFilter {
            overdue: true,
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|c| c.root().entry.entry.message_id.clone())
        .collect()
}

#[tokio::test]
async fn unanswered_cases_are_overdue_after_the_time_agreed_for_their_urgency() {
    let pair = start_pair().await;
    let mut idn = pair.client("idn", "operator");
    idn.send(alert("IDN-D-IMMEDIATE", pb::Urgency::Immediate), true)
        .await
        .unwrap();
    idn.send(alert("IDN-D-ROUTINE", pb::Urgency::Unspecified), true)
        .await
        .unwrap();
    idn.send(alert("IDN-D-ANSWERED", pb::Urgency::Immediate), true)
        .await
        .unwrap();
    let mut response = example("khm/response-to-alert.json");
    response.message_id = "KHM-D-R".into();
    response.reference = "IDN-D-ANSWERED".into();
    pair.client("khm", "operator")
        .send(response, true)
        .await
        .unwrap();
    // Now, nothing is overdue; the respond-by time is the logging time plus the agreed hour.
    let case = pair
        .client("khm", "operator")
        .case("IDN-D-IMMEDIATE")
        .await
        .unwrap();
    let state = case.state.unwrap();
    assert!(!state.overdue);
    let logged = case.messages[0]
        .entry
        .as_ref()
        .unwrap()
        .entry
        .as_ref()
        .unwrap()
        .recorded_at_micros;
    let respond_by = focalpoint::domain::model::parse_instant(&state.respond_by).unwrap();
    let expected = focalpoint::domain::model::from_micros(logged) + time::Duration::hours(1);
    assert!((respond_by - expected).abs() < time::Duration::seconds(1));
    let listed = pair
        .client("khm", "operator")
        .cases(pb::CasesRequest {
            overdue: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(listed.cases.is_empty());
    let dir = pair.dir.path().to_owned();
    let keep = pair.dir;
    pair.idn.stop().await.unwrap();
    pair.khm.stop().await.unwrap();

    // Two hours on: the immediate alert KHM has not answered is overdue on both sides (KHM owes
    // the answer, IDN is owed it); the answered one and the routine one are not.
    let khm = exchange_ahead(&dir, "khm", "idn", 2);
    assert_eq!(overdue(&khm), ["IDN-D-IMMEDIATE"]);
    // The deadline check notes it once in the chain, counts it for the metrics, and watchers
    // get an event.
    let before = khm.log().head().unwrap().0;
    let counts = khm.note_deadlines(14).await.unwrap();
    assert_eq!(counts.get(&("IDN".to_owned(), "received")), Some(&1));
    assert_eq!(counts.len(), 1);
    let (after, _) = khm.log().head().unwrap();
    assert_eq!(after, before + 1);
    khm.note_deadlines(14).await.unwrap();
    assert_eq!(khm.log().head().unwrap().0, after, "noted once");
    let noted = khm.log().entry(after).unwrap().unwrap();
    assert_eq!(noted.kind(), pb::EntryKind::Deadline);
    let event = khm.event_of(&noted, None).unwrap().unwrap();
    assert_eq!(event.kind, pb::EventKind::Overdue as i32);
    assert_eq!(event.message_id, "IDN-D-IMMEDIATE");
    assert!(event.case.unwrap().overdue);
    khm.metrics().overdue(&counts);
    let exposition = khm.metrics().render(&Default::default());
    assert!(
        exposition.contains("focalpoint_overdue_responses{peer=\"IDN\",direction=\"received\"} 1"),
        "{exposition}"
    );
    let config = focalpoint::node::config::NodeConfig::load(&dir.join("khm/node.toml")).unwrap();
    let report = focalpoint::exchange::audit::verify(khm.log(), &config.audit_trust().unwrap());
    assert!(report.is_ok(), "{:?}", report.err());
    drop(khm);
    let idn_ahead = exchange_ahead(&dir, "idn", "khm", 2);
    assert_eq!(overdue(&idn_ahead), ["IDN-D-IMMEDIATE"]);
    drop(idn_ahead);
    // Eight days on, the routine one too (seven days by default).
    let khm = exchange_ahead(&dir, "khm", "idn", 8 * 24);
    assert_eq!(overdue(&khm), ["IDN-D-IMMEDIATE", "IDN-D-ROUTINE"]);
    drop(keep);
}

#[tokio::test]
async fn an_alert_ending_soon_reminds_its_sender_once() {
    let pair = start_pair().await;
    let mut idn = pair.client("idn", "operator");
    let mut soon = alert("IDN-D-SOON", pb::Urgency::Routine);
    let in_five_days = time::OffsetDateTime::now_utc().date() + time::Duration::days(5);
    if let Some(pb::envelope::Body::TravellerAlert(a)) = &mut soon.body {
        a.valid_until = in_five_days.to_string();
    }
    idn.send(soon, true).await.unwrap();
    idn.send(alert("IDN-D-LATER", pb::Urgency::Routine), true)
        .await
        .unwrap();
    let exchange = pair.idn.exchange().clone();
    let before = exchange.log().head().unwrap().0;
    exchange.note_deadlines(14).await.unwrap();
    exchange.note_deadlines(14).await.unwrap();
    let entries = exchange.log().range(before + 1, 10).unwrap();
    assert_eq!(entries.len(), 1, "one reminder, noted once");
    let event = exchange.event_of(&entries[0], None).unwrap().unwrap();
    assert_eq!(event.kind, pb::EventKind::Expiring as i32);
    assert_eq!(event.message_id, "IDN-D-SOON");
    // The receiving side is not the one to renew it.
    let khm = pair.khm.exchange().clone();
    let before = khm.log().head().unwrap().0;
    khm.note_deadlines(14).await.unwrap();
    assert_eq!(khm.log().head().unwrap().0, before);
    pair.stop().await;
}

#[tokio::test]
async fn a_hit_report_is_checked_and_travels_with_its_response() {
    let pair = start_pair().await;
    let mut idn = pair.client("idn", "operator");
    let alert = example("idn/alert-trafficking-victim.json");
    idn.send(alert.clone(), true).await.unwrap();
    let mut khm = pair.client("khm", "operator");
    let hit = |id: &str, status: pb::ResponseStatus, encounter: pb::Encounter| {
        let mut e = example("khm/response-to-alert.json");
        e.message_id = id.into();
        if let Some(pb::envelope::Body::CaseResponse(r)) = &mut e.body {
            r.status = status as i32;
            r.encounter = Some(encounter);
        }
        e
    };
    let encounter = pb::Encounter {
        place: "Poipet international checkpoint".into(),
        country: "KHM".into(),
        encountered_at: "2025-05-01T09:30:00Z".into(),
        document_presented: "X2217845".into(),
        action_taken: "Placed in a shelter; the embassy was informed.".into(),
        action_not_taken_reason: String::new(),
    };
    // Refused, naming the field, and nothing sent.
    let cases = [
        (
            hit("KHM-H-1", pb::ResponseStatus::Closed, encounter.clone()),
            "case_response.encounter",
        ),
        (
            hit(
                "KHM-H-2",
                pb::ResponseStatus::Located,
                pb::Encounter {
                    country: "XX".into(),
                    ..encounter.clone()
                },
            ),
            "case_response.encounter.country",
        ),
        (
            hit(
                "KHM-H-3",
                pb::ResponseStatus::Located,
                pb::Encounter {
                    action_taken: String::new(),
                    ..encounter.clone()
                },
            ),
            "case_response.encounter.action_taken",
        ),
        (
            hit(
                "KHM-H-4",
                pb::ResponseStatus::MatchFound,
                pb::Encounter {
                    encountered_at: "yesterday".into(),
                    ..encounter.clone()
                },
            ),
            "case_response.encounter.encountered_at",
        ),
    ];
    for (envelope, field) in cases {
        let id = envelope.message_id.clone();
        let err = khm.send(envelope, false).await.unwrap_err().to_string();
        assert!(err.contains(field), "{id}: {err}");
        assert!(pair.khm.exchange().log().sent(&id).unwrap().is_none());
    }
    // Accepted, delivered, and shown at IDN with the case.
    khm.send(
        hit("KHM-H-OK", pb::ResponseStatus::Located, encounter.clone()),
        true,
    )
    .await
    .unwrap();
    let case = idn.case(&alert.message_id).await.unwrap();
    let response = case
        .messages
        .iter()
        .find(|m| m.entry.as_ref().unwrap().entry.as_ref().unwrap().message_id == "KHM-H-OK")
        .unwrap();
    match response.envelope.as_ref().unwrap().body.as_ref().unwrap() {
        pb::envelope::Body::CaseResponse(r) => {
            assert_eq!(r.encounter.as_ref(), Some(&encounter));
        }
        other => panic!("not a response: {other:?}"),
    }
    let text = focalpoint::cli::client::case_text(&case);
    assert!(
        text.contains("located re IDN-20250430-ALERT-0001 at Poipet international checkpoint (KHM) on 2025-05-01T09:30:00Z"),
        "{text}"
    );
    pair.stop().await;
}
