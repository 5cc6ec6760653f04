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

/// A routine alert `id` valid until `days` after `today`.
fn ending(id: &str, today: time::Date, days: i64) -> pb::Envelope {
    let mut e = alert(id, pb::Urgency::Routine);
    if let Some(pb::envelope::Body::TravellerAlert(a)) = &mut e.body {
        a.valid_until = (today + time::Duration::days(days)).to_string();
    }
    e
}

/// Runs `exchange`'s deadline check once, with the default reminder period, and gives the
/// expiry reminders it noted: each case's first message id and the version reminded of.
async fn reminders_noted(exchange: &Exchange) -> Vec<(String, String)> {
    let before = exchange.log().head().unwrap().0;
    exchange.note_deadlines(14).await.unwrap();
    exchange
        .log()
        .range(before + 1, 100)
        .unwrap()
        .into_iter()
        .filter(|e| e.entry.reason == "expiring")
        .map(|e| (e.entry.message_id, e.entry.reference))
        .collect()
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
    let again = khm.note_deadlines(14).await.unwrap();
    assert_eq!(khm.log().head().unwrap().0, after, "noted once");
    assert_eq!(again, counts, "still counted while it stays overdue");
    // Answered late, it is counted no longer, by the same node's next checks and by a node
    // started afresh on the log.
    let mut late = example("khm/response-to-alert.json");
    late.message_id = "KHM-D-LATE".into();
    late.reference = "IDN-D-IMMEDIATE".into();
    khm.submit(&identity("urn:focalpoint:KHM:operator:duty"), late)
        .await
        .unwrap();
    for _ in 0..2 {
        assert!(khm.note_deadlines(14).await.unwrap().is_empty());
    }
    assert!(overdue(&khm).is_empty());
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
    // IDN, which the late answer has not reached (both nodes are stopped), is still owed it.
    let idn_ahead = exchange_ahead(&dir, "idn", "khm", 2);
    assert_eq!(overdue(&idn_ahead), ["IDN-D-IMMEDIATE"]);
    drop(idn_ahead);
    // Eight days on, the routine one is overdue too (seven days by default); the answered one
    // stays answered.
    let khm = exchange_ahead(&dir, "khm", "idn", 8 * 24);
    assert_eq!(overdue(&khm), ["IDN-D-ROUTINE"]);
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
    assert_eq!(
        entries[0].entry.reference, "IDN-D-SOON",
        "the version reminded"
    );

    // Renewed, still within the fortnight. A check that read the case before the renewal was
    // logged leaves its reminder after it, naming the version before: the renewal is still
    // reminded of, once.
    let mut renewal = alert("IDN-D-SOON-R", pb::Urgency::Routine);
    renewal.reference = "IDN-D-SOON".into();
    if let Some(pb::envelope::Body::TravellerAlert(a)) = &mut renewal.body {
        a.lifecycle = pb::AlertLifecycle::Update as i32;
        a.valid_until = (in_five_days + time::Duration::days(5)).to_string();
    }
    idn.send(renewal, true).await.unwrap();
    let case = entries[0].entry.refers_to;
    let late = focalpoint::log::NewEntry {
        kind: pb::EntryKind::Deadline,
        peer: Some("KHM".parse().unwrap()),
        message_id: "IDN-D-SOON".into(),
        message_kind: pb::MessageKind::TravellerAlert,
        refers_to: case,
        reason: "expiring".into(),
        reference: Some("IDN-D-SOON".parse().unwrap()),
        ..Default::default()
    };
    exchange
        .log()
        .transact(move |t| t.append(late).map(drop))
        .await
        .unwrap();
    let before = exchange.log().head().unwrap().0;
    exchange.note_deadlines(14).await.unwrap();
    exchange.note_deadlines(14).await.unwrap();
    let entries = exchange.log().range(before + 1, 10).unwrap();
    assert_eq!(entries.len(), 1, "the renewal reminded of, once");
    assert_eq!(entries[0].entry.reference, "IDN-D-SOON-R");
    assert_eq!(entries[0].entry.refers_to, case);
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
    for line in [
        "hit report KHM-H-OK:",
        "  document presented: X2217845",
        "  action taken: Placed in a shelter; the embassy was informed.",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    // Shown with the message, and carried in the auditors' export, on both sides.
    let shown = idn.show("KHM-H-OK").await.unwrap();
    match shown.messages[0].envelope.as_ref().unwrap().body.as_ref() {
        Some(pb::envelope::Body::CaseResponse(r)) => {
            assert_eq!(r.encounter.as_ref(), Some(&encounter));
        }
        other => panic!("not a response: {other:?}"),
    }
    for node in [&pair.idn, &pair.khm] {
        let country = node.exchange().country().as_str().to_ascii_lowercase();
        let config = focalpoint::node::config::NodeConfig::load(
            &pair.dir.path().join(country).join("node.toml"),
        )
        .unwrap();
        let records = focalpoint::exchange::audit::export(
            node.exchange().log(),
            &config.audit_trust().unwrap(),
            1,
            u64::MAX,
            (None, None),
        )
        .unwrap();
        let hit = records.iter().find(|r| r.message_id == "KHM-H-OK").unwrap();
        let exported = hit.envelope.as_ref().unwrap().to_string();
        for part in [
            "Poipet international checkpoint",
            "2025-05-01T09:30:00Z",
            "X2217845",
            "Placed in a shelter",
        ] {
            assert!(exported.contains(part), "{part}: {exported}");
        }
    }
    pair.stop().await;
}

/// IDN and KHM started on the example files under `dir`, each configuration changed by
/// `change`, with their logs' clocks `hours` ahead of the system's.
async fn start_ahead(
    dir: tempfile::TempDir,
    hours: i64,
    change: impl Fn(&mut focalpoint::node::config::NodeConfig),
) -> Pair {
    let (mut idn, mut khm) = focalpoint::cli::demo::example_configs(dir.path()).unwrap();
    change(&mut idn);
    change(&mut khm);
    let mut nodes = focalpoint::cli::demo::start_nodes_ahead(vec![idn, khm], hours * HOUR_MICROS)
        .await
        .unwrap()
        .into_iter();
    let (idn, khm) = (nodes.next().unwrap(), nodes.next().unwrap());
    Pair { dir, idn, khm }
}

/// Stops both nodes, keeping their files.
async fn stop_keeping_files(pair: Pair) -> tempfile::TempDir {
    let Pair { dir, idn, khm } = pair;
    idn.stop().await.unwrap();
    khm.stop().await.unwrap();
    dir
}

/// Events of `stream` until `wanted` of the kind `kind` came, those returned in order.
async fn events_of_kind(
    stream: &mut tonic::Streaming<pb::Event>,
    kind: pb::EventKind,
    wanted: usize,
) -> Vec<pb::Event> {
    use tokio_stream::StreamExt;
    let mut found = Vec::new();
    while found.len() < wanted {
        let event = tokio::time::timeout(std::time::Duration::from_secs(30), stream.next())
            .await
            .expect("an event within 30 s")
            .expect("the stream goes on")
            .unwrap();
        if event.kind == kind as i32 {
            found.push(event);
        }
    }
    found
}

/// The metrics page of the node at `address` once it holds `line`.
async fn metrics_with(address: std::net::SocketAddr, line: &str) -> String {
    for _ in 0..300 {
        let page = scrape(address).await;
        if page.contains(line) {
            return page;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{line} never appeared: {}", scrape(address).await);
}

fn overdue_ids(listed: &pb::CasesResponse) -> Vec<(String, i32)> {
    listed
        .cases
        .iter()
        .map(|c| (c.state.as_ref().unwrap().case_id.clone(), c.direction))
        .collect()
}

#[tokio::test]
async fn running_nodes_list_tell_and_count_the_cases_overdue_by_the_times_they_agreed() {
    // Both sides agree three hours for an urgent answer (twelve by default).
    let agreed = |config: &mut focalpoint::node::config::NodeConfig| {
        config.peers[0].response_hours.urgent = 3;
    };
    let dir = tempfile::tempdir().unwrap();
    let pair = start_ahead(dir, 0, agreed).await;
    let mut idn = pair.client("idn", "operator");
    for (id, urgency) in [
        ("IDN-O-IMMEDIATE", pb::Urgency::Immediate),
        ("IDN-O-URGENT", pb::Urgency::Urgent),
        ("IDN-O-ROUTINE", pb::Urgency::Routine),
    ] {
        idn.send(alert(id, urgency), true).await.unwrap();
    }
    let mut fraud = example("khm/fraud-notice-poipet.json");
    fraud.message_id = "KHM-O-FRAUD".into();
    fraud.handling.as_mut().unwrap().urgency = pb::Urgency::Urgent as i32;
    pair.client("khm", "operator")
        .send(fraud, true)
        .await
        .unwrap();
    let watched_from = pair.khm.exchange().log().head().unwrap().0;
    let dir = stop_keeping_files(pair).await;

    // Four hours on: the immediate and the urgent alert are overdue, and so is the urgent
    // fraud notice the other way; the routine alert is not.
    let pair = start_ahead(dir, 4, agreed).await;
    let (sent, received) = (pb::Direction::Sent as i32, pb::Direction::Received as i32);
    // Each side lists the alerts and the fraud notice in the direction they went from it.
    for (country, alerts, notice) in [("khm", received, sent), ("idn", sent, received)] {
        let listed = pair
            .client(country, "operator")
            .cases(pb::CasesRequest {
                overdue: true,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            overdue_ids(&listed),
            [
                ("IDN-O-IMMEDIATE".to_owned(), alerts),
                ("IDN-O-URGENT".to_owned(), alerts),
                ("KHM-O-FRAUD".to_owned(), notice),
            ],
            "{country}"
        );
    }

    // The running node's own check tells a watcher of each, once the deadline passed.
    let mut stream = pair
        .client("khm", "operator")
        .watch(pb::WatchRequest {
            from_sequence: watched_from,
            kinds: Vec::new(),
        })
        .await
        .unwrap();
    let told = events_of_kind(&mut stream, pb::EventKind::Overdue, 3).await;
    let ids: Vec<_> = told.iter().map(|e| e.message_id.as_str()).collect();
    assert_eq!(ids, ["IDN-O-IMMEDIATE", "IDN-O-URGENT", "KHM-O-FRAUD"]);
    assert!(told.iter().all(|e| e.case.as_ref().unwrap().overdue));
    assert_eq!(
        told[0].category,
        pb::AlertCategory::SuspectedTraffickingVictim as i32
    );

    // And counts them for the metrics, by peer and direction, on both sides.
    let page = metrics_with(
        pair.khm.metrics_address.unwrap(),
        "focalpoint_overdue_responses{peer=\"IDN\",direction=\"received\"} 2",
    )
    .await;
    assert!(
        page.contains("focalpoint_overdue_responses{peer=\"IDN\",direction=\"sent\"} 1"),
        "{page}"
    );
    let page = metrics_with(
        pair.idn.metrics_address.unwrap(),
        "focalpoint_overdue_responses{peer=\"KHM\",direction=\"sent\"} 2",
    )
    .await;
    assert!(
        page.contains("focalpoint_overdue_responses{peer=\"KHM\",direction=\"received\"} 1"),
        "{page}"
    );
    let dir = stop_keeping_files(pair).await;

    // Half a year on, cases noted overdue are still counted, however long ago they opened.
    let khm = exchange_ahead(dir.path(), "khm", "idn", 200 * 24);
    let counts = khm.note_deadlines(14).await.unwrap();
    assert_eq!(counts.get(&("IDN".to_owned(), "received")), Some(&2));
    assert_eq!(counts.get(&("IDN".to_owned(), "sent")), Some(&1));
    drop(khm);

    // Past the retention period, the cases' content is gone: they are neither counted nor
    // noted again, as whether they were answered can no longer be read.
    let khm = exchange_ahead(dir.path(), "khm", "idn", 2000 * 24);
    let config =
        focalpoint::node::config::NodeConfig::load(&dir.path().join("khm/node.toml")).unwrap();
    let now = khm.log().now();
    let micros = i64::try_from(now.unix_timestamp_nanos() / 1000).unwrap();
    focalpoint::exchange::retention::sweep(khm.log(), config.retention.as_ref().unwrap(), micros)
        .unwrap();
    let before = khm.log().head().unwrap().0;
    let counts = khm.note_deadlines(14).await.unwrap();
    assert!(counts.is_empty(), "{counts:?}");
    assert_eq!(khm.log().head().unwrap().0, before);
}

#[tokio::test]
async fn a_renewed_alert_reminds_its_sender_again_when_its_new_end_comes_near() {
    let often = |config: &mut focalpoint::node::config::NodeConfig| {
        config.cases.deadline_check_secs = 1;
    };
    let dir = tempfile::tempdir().unwrap();
    let pair = start_ahead(dir, 0, often).await;
    let today = time::OffsetDateTime::now_utc().date();
    let ending = |id: &str, days: i64| ending(id, today, days);
    let mut idn = pair.client("idn", "operator");
    idn.send(ending("IDN-E-LONG", 200), true).await.unwrap();
    let mut stream = idn.watch(pb::WatchRequest::default()).await.unwrap();
    idn.send(ending("IDN-E-1", 5), true).await.unwrap();
    let told = events_of_kind(&mut stream, pb::EventKind::Expiring, 1).await;
    assert_eq!(told[0].message_id, "IDN-E-1");
    assert_eq!(
        told[0].case.as_ref().unwrap().valid_until,
        (today + time::Duration::days(5)).to_string()
    );
    // The sender's listing of what ends soon shows it.
    let listed = idn
        .cases(pb::CasesRequest {
            expiring_within_days: 14,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        overdue_ids(&listed),
        [("IDN-E-1".to_owned(), pb::Direction::Sent as i32)]
    );
    // The receiving side lists it as received, and not among the alerts it sent.
    let mut khm = pair.client("khm", "operator");
    let expiring = |direction: pb::Direction| pb::CasesRequest {
        expiring_within_days: 14,
        direction: direction as i32,
        ..Default::default()
    };
    let listed = khm.cases(expiring(pb::Direction::Received)).await.unwrap();
    assert_eq!(
        overdue_ids(&listed),
        [("IDN-E-1".to_owned(), pb::Direction::Received as i32)]
    );
    let listed = khm.cases(expiring(pb::Direction::Sent)).await.unwrap();
    assert!(listed.cases.is_empty());
    let mut unknown = expiring(pb::Direction::Sent);
    unknown.direction = 9;
    match khm.cases(unknown).await {
        Err(focalpoint::cli::client::ClientError::Refused(status)) => {
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert!(status.message().contains("direction"), "{status:?}");
        }
        other => panic!("an unknown direction is refused: {other:?}"),
    }

    // Renewed for forty days: not ending soon, nothing more to remind.
    let mut renewal = ending("IDN-E-1-R", 40);
    renewal.reference = "IDN-E-1".into();
    if let Some(pb::envelope::Body::TravellerAlert(a)) = &mut renewal.body {
        a.lifecycle = pb::AlertLifecycle::Update as i32;
    }
    idn.send(renewal, true).await.unwrap();
    let exchange = pair.idn.exchange().clone();
    exchange.note_deadlines(14).await.unwrap();
    let reminders = |log: &focalpoint::log::ExchangeLog| {
        let (size, _) = log.head().unwrap();
        log.range(1, size as usize)
            .unwrap()
            .into_iter()
            .filter(|e| e.kind() == pb::EntryKind::Deadline && e.entry.reason == "expiring")
            .count()
    };
    assert_eq!(reminders(exchange.log()), 1);
    assert!(
        idn.cases(pb::CasesRequest {
            expiring_within_days: 14,
            ..Default::default()
        })
        .await
        .unwrap()
        .cases
        .is_empty()
    );
    let watched_from = exchange.log().head().unwrap().0;
    drop(exchange);
    let dir = stop_keeping_files(pair).await;

    // Thirty days on, the renewal ends within the fortnight: its sender is reminded again.
    let pair = start_ahead(dir, 30 * 24, often).await;
    let mut stream = pair
        .client("idn", "operator")
        .watch(pb::WatchRequest {
            from_sequence: watched_from,
            kinds: Vec::new(),
        })
        .await
        .unwrap();
    let told = events_of_kind(&mut stream, pb::EventKind::Expiring, 1).await;
    assert_eq!(told[0].message_id, "IDN-E-1");
    assert_eq!(told[0].case.as_ref().unwrap().in_effect, "IDN-E-1-R");
    assert_eq!(reminders(pair.idn.exchange().log()), 2);
    // The receiving side is not the one to renew it.
    assert_eq!(reminders(pair.khm.exchange().log()), 0);
    let dir = stop_keeping_files(pair).await;

    // An alert valid for longer than the deadline check looks back for overdue answers is
    // still reminded when its end comes near.
    let idn = exchange_ahead(dir.path(), "idn", "khm", 190 * 24);
    let noted: Vec<_> = reminders_noted(&idn).await;
    assert_eq!(noted, [("IDN-E-LONG".to_owned(), "IDN-E-LONG".to_owned())]);
}

#[tokio::test]
async fn a_change_to_an_alert_from_the_side_that_did_not_open_its_case_is_not_taken() {
    let pair = start_pair().await;
    let in_five_days = time::OffsetDateTime::now_utc().date() + time::Duration::days(5);
    let mut own = example("idn/alert-trafficking-victim.json");
    own.message_id = "KHM-D-OWN".into();
    own.sender = "KHM".into();
    own.receiver = "IDN".into();
    if let Some(pb::envelope::Body::TravellerAlert(a)) = &mut own.body {
        a.valid_until = in_five_days.to_string();
    }
    pair.client("khm", "operator")
        .send(own.clone(), true)
        .await
        .unwrap();
    // IDN's node sends what reads as a renewal of KHM's alert.
    let mut renewal = own;
    renewal.message_id = "IDN-D-NOT-YOURS".into();
    renewal.sender = "IDN".into();
    renewal.receiver = "KHM".into();
    renewal.reference = "KHM-D-OWN".into();
    renewal.created_at = "2025-04-30T08:15:00Z".into();
    if let Some(pb::envelope::Body::TravellerAlert(a)) = &mut renewal.body {
        a.lifecycle = pb::AlertLifecycle::Update as i32;
        a.valid_until = (in_five_days + time::Duration::days(60)).to_string();
    }
    let (cert, key) = example_cert("idn", "node");
    let mut peer = peer_client(&pair.khm, "khm", cert, key);
    let delivered = peer
        .deliver(pb::DeliverRequest {
            envelope: prost::Message::encode_to_vec(&renewal),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        matches!(
            delivered.outcome,
            Some(pb::deliver_response::Outcome::Receipt(_))
        ),
        "{delivered:?}"
    );

    // KHM's case keeps its own version, and says why the other is not taken.
    let case = pair
        .client("khm", "operator")
        .case("KHM-D-OWN")
        .await
        .unwrap();
    let state = case.state.unwrap();
    assert_eq!(state.in_effect, "KHM-D-OWN");
    assert_eq!(state.valid_until, in_five_days.to_string());
    assert_eq!(case.messages.len(), 2);
    assert!(
        case.findings
            .iter()
            .any(|f| f.starts_with("IDN-D-NOT-YOURS:") && f.contains("not taken")),
        "{:?}",
        case.findings
    );
    // So KHM is reminded that its alert ends, naming its own version.
    let exchange = pair.khm.exchange().clone();
    let before = exchange.log().head().unwrap().0;
    exchange.note_deadlines(14).await.unwrap();
    let noted = exchange.log().range(before + 1, 10).unwrap();
    let reminders: Vec<_> = noted
        .iter()
        .filter(|e| e.kind() == pb::EntryKind::Deadline && e.entry.reason == "expiring")
        .collect();
    assert_eq!(reminders.len(), 1, "{noted:?}");
    assert_eq!(reminders[0].entry.reference, "KHM-D-OWN");
    // The audit holds the reminder to a version of the alert KHM sent.
    let config =
        focalpoint::node::config::NodeConfig::load(&pair.dir.path().join("khm/node.toml")).unwrap();
    let report =
        focalpoint::exchange::audit::verify(exchange.log(), &config.audit_trust().unwrap());
    assert!(report.is_ok(), "{:?}", report.err());
    drop(exchange);
    pair.stop().await;
}

/// An alert whose end has passed is expired on both sides and reminds nobody; renewed by its
/// sender, its case is active again on both sides, and its sender is reminded of the renewal
/// when the renewal's own end comes near.
#[tokio::test]
async fn an_alert_renewed_after_its_end_is_active_again_and_its_renewal_is_reminded() {
    let quiet = |config: &mut focalpoint::node::config::NodeConfig| {
        config.cases.deadline_check_secs = 86_400;
    };
    let today = time::OffsetDateTime::now_utc().date();
    let ending = |id: &str, days: i64| ending(id, today, days);
    let pair = start_ahead(tempfile::tempdir().unwrap(), 0, quiet).await;
    pair.client("idn", "operator")
        .send(ending("IDN-X-1", 5), true)
        .await
        .unwrap();
    let dir = stop_keeping_files(pair).await;

    // Ten days on, its end has passed.
    let pair = start_ahead(dir, 10 * 24, quiet).await;
    let (mut idn, mut khm) = (
        pair.client("idn", "operator"),
        pair.client("khm", "operator"),
    );
    for side in [&mut idn, &mut khm] {
        let case = side.case("IDN-X-1").await.unwrap();
        let state = case.state.unwrap();
        assert_eq!(state.status, pb::CaseStatus::Expired as i32);
        assert_eq!(state.in_effect, "IDN-X-1");
    }
    let exchange = pair.idn.exchange().clone();
    assert!(
        reminders_noted(&exchange).await.is_empty(),
        "an alert that has ended is not reminded of"
    );

    // Renewed to end a week from the nodes' today: active again, the renewal in effect.
    let mut renewal = ending("IDN-X-1-R", 17);
    renewal.reference = "IDN-X-1".into();
    if let Some(pb::envelope::Body::TravellerAlert(a)) = &mut renewal.body {
        a.lifecycle = pb::AlertLifecycle::Update as i32;
    }
    idn.send(renewal, true).await.unwrap();
    for side in [&mut idn, &mut khm] {
        let state = side.case("IDN-X-1").await.unwrap().state.unwrap();
        assert_eq!(state.status, pb::CaseStatus::Active as i32);
        assert_eq!(state.in_effect, "IDN-X-1-R");
        assert_eq!(
            state.valid_until,
            (today + time::Duration::days(17)).to_string()
        );
    }
    assert_eq!(
        reminders_noted(&exchange).await,
        [("IDN-X-1".to_owned(), "IDN-X-1-R".to_owned())],
        "the renewal reminded of, under its case"
    );
    drop(exchange);
    stop_keeping_files(pair).await;
}
