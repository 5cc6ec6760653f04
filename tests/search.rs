//! Search, case state and the record of who looked, between two real nodes over mutual TLS.

mod common;

use common::*;
use focalpoint::pb;
use prost::Message;
use tonic::Code;

/// The example alert with its own id, person and passport.
fn alert(id: &str, family: &str, given: &str, born: &str, passport: &str) -> pb::Envelope {
    let mut e = example("idn/alert-trafficking-victim.json");
    e.message_id = id.into();
    if let Some(pb::envelope::Body::TravellerAlert(a)) = &mut e.body {
        let p = a.person.as_mut().unwrap();
        p.family_name = family.into();
        p.given_names = given.into();
        p.date_of_birth = born.into();
        a.documents[0].number = passport.into();
        // The zone names the example passport; keep the document without one.
        a.documents[0].mrz.clear();
    }
    e
}

/// A change to the alert `of`: an update (with a person) or a withdrawal.
fn change(id: &str, of: &str, lifecycle: pb::AlertLifecycle) -> pb::Envelope {
    let mut e = example("idn/alert-trafficking-victim.json");
    e.message_id = id.into();
    e.reference = of.into();
    if let Some(pb::envelope::Body::TravellerAlert(a)) = &mut e.body {
        a.lifecycle = lifecycle as i32;
        if lifecycle == pb::AlertLifecycle::Withdraw {
            a.person = None;
            a.documents.clear();
        }
        a.summary = "changed".into();
    }
    e
}

fn response(id: &str, to: &str, status: pb::ResponseStatus) -> pb::Envelope {
    let mut e = example("khm/response-to-alert.json");
    e.message_id = id.into();
    e.reference = to.into();
    if let Some(pb::envelope::Body::CaseResponse(r)) = &mut e.body {
        r.status = status as i32;
        // A hit report goes only with a match or a location.
        r.encounter = None;
    }
    e
}

fn by_document(number: &str) -> pb::SearchRequest {
    pb::SearchRequest {
        document: number.into(),
        ..Default::default()
    }
}

fn by_name(name: &str) -> pb::SearchRequest {
    pb::SearchRequest {
        name: name.into(),
        ..Default::default()
    }
}

fn ids(r: &pb::SearchResponse) -> Vec<&str> {
    r.hits.iter().map(|h| h.message_id.as_str()).collect()
}

fn status(state: Option<&pb::CaseState>) -> pb::CaseStatus {
    pb::CaseStatus::try_from(state.unwrap().status).unwrap()
}

#[tokio::test]
async fn received_alerts_are_found_by_document_mrz_and_name_in_any_written_form() {
    let pair = start_pair().await;
    let mut idn = pair.client("idn", "operator");
    let example_alert = example("idn/alert-trafficking-victim.json");
    idn.send(example_alert.clone(), true).await.unwrap();
    idn.send(
        alert(
            "IDN-S-NGUYEN",
            "NGUYỄN",
            "Thị Hoa",
            "1999-07-02",
            "C1234567",
        ),
        true,
    )
    .await
    .unwrap();
    idn.send(
        alert("IDN-S-SINGLE", "SUPARMAN", "", "1988-01-20", "B7654321"),
        true,
    )
    .await
    .unwrap();
    let mut khm = pair.client("khm", "operator");

    // The passport number, as written and as a passport reader gives the whole zone.
    let r = khm.search(by_document("X2217845")).await.unwrap();
    assert_eq!(ids(&r), [example_alert.message_id.as_str()]);
    let hit = &r.hits[0];
    assert_eq!(hit.direction, pb::Direction::Received as i32);
    assert_eq!(hit.peer, "IDN");
    assert_eq!(hit.kind, pb::MessageKind::TravellerAlert as i32);
    assert_eq!(
        hit.category,
        pb::AlertCategory::SuspectedTraffickingVictim as i32
    );
    assert_eq!(hit.matched_field, "traveller_alert.documents[0].number");
    assert_eq!(status(hit.case.as_ref()), pb::CaseStatus::Active);
    let zone = match &example_alert.body {
        Some(pb::envelope::Body::TravellerAlert(a)) => a.documents[0].mrz.clone(),
        _ => unreachable!(),
    };
    let r = khm.search(by_document(&zone)).await.unwrap();
    assert_eq!(ids(&r), [example_alert.message_id.as_str()]);
    let r = khm.search(by_document("x2217845<")).await.unwrap();
    assert_eq!(r.hits.len(), 1, "fillers and case do not matter");

    // Diacritics folded, either order, punctuation alike.
    for name in ["Nguyen, Thi Hoa", "THI HOA NGUYEN", "nguyễn thị-hoa"] {
        let r = khm.search(by_name(name)).await.unwrap();
        assert_eq!(ids(&r), ["IDN-S-NGUYEN"], "{name}");
        assert_eq!(r.hits[0].matched_field, "traveller_alert.person");
    }
    // One name, as ICAO writes it.
    let r = khm.search(by_name("Suparman")).await.unwrap();
    assert_eq!(ids(&r), ["IDN-S-SINGLE"]);
    // Part of a name is not the name.
    assert!(
        khm.search(by_name("Thi Hoa"))
            .await
            .unwrap()
            .hits
            .is_empty()
    );
    // The sender finds its own, by direction.
    let sent = pb::SearchRequest {
        direction: pb::Direction::Sent as i32,
        ..by_name("Suparman")
    };
    let r = idn.search(sent).await.unwrap();
    assert_eq!(r.hits[0].direction, pb::Direction::Sent as i32);
    let received = pb::SearchRequest {
        direction: pb::Direction::Received as i32,
        ..by_name("Suparman")
    };
    assert!(idn.search(received).await.unwrap().hits.is_empty());
    pair.stop().await;
}

#[tokio::test]
async fn a_date_of_birth_excludes_a_namesake_and_a_partial_date_matches_what_it_can() {
    let pair = start_pair().await;
    let mut idn = pair.client("idn", "operator");
    idn.send(
        alert("IDN-S-ELDER", "RAHAYU", "SITI", "1972-05-01", "A1111111"),
        true,
    )
    .await
    .unwrap();
    idn.send(
        alert("IDN-S-YOUNGER", "RAHAYU", "SITI", "2001-11-30", "A2222222"),
        true,
    )
    .await
    .unwrap();
    let mut khm = pair.client("khm", "operator");
    let born = |born: &str| pb::SearchRequest {
        born: born.into(),
        ..by_name("Siti Rahayu")
    };
    assert_eq!(
        ids(&khm.search(by_name("Siti Rahayu")).await.unwrap()),
        ["IDN-S-ELDER", "IDN-S-YOUNGER"]
    );
    assert_eq!(
        ids(&khm.search(born("2001-11-30")).await.unwrap()),
        ["IDN-S-YOUNGER"]
    );
    assert_eq!(
        ids(&khm.search(born("1972")).await.unwrap()),
        ["IDN-S-ELDER"]
    );
    assert_eq!(
        ids(&khm.search(born("2001-11")).await.unwrap()),
        ["IDN-S-YOUNGER"]
    );
    assert!(khm.search(born("1990")).await.unwrap().hits.is_empty());
    // A malformed date is refused, naming the field, and does not quote it.
    let err = khm.search(born("30/11/2001")).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("born"), "{text}");
    assert!(!text.contains("30/11/2001"), "{text}");
    pair.stop().await;
}

#[tokio::test]
async fn a_case_is_issued_updated_answered_and_withdrawn_in_order() {
    let pair = start_pair().await;
    let mut idn = pair.client("idn", "operator");
    let mut khm = pair.client("khm", "operator");
    let root = alert("IDN-C-1", "WIDODO", "AYU", "1995-02-03", "E5555555");
    idn.send(root, true).await.unwrap();
    let case = khm.case("IDN-C-1").await.unwrap();
    let state = case.state.as_ref().unwrap();
    assert_eq!(status(Some(state)), pb::CaseStatus::Active);
    assert!(!state.answered);
    assert_eq!(state.in_effect, "IDN-C-1");

    idn.send(
        change("IDN-C-1-U1", "IDN-C-1", pb::AlertLifecycle::Update),
        true,
    )
    .await
    .unwrap();
    khm.send(
        response("KHM-C-1-R1", "IDN-C-1-U1", pb::ResponseStatus::Received),
        true,
    )
    .await
    .unwrap();
    let case = idn.case("IDN-C-1").await.unwrap();
    let state = case.state.as_ref().unwrap();
    assert_eq!(status(Some(state)), pb::CaseStatus::Active);
    assert!(state.answered, "KHM answered, through the update");
    assert_eq!(state.in_effect, "IDN-C-1-U1");
    // Asked through any of its messages, the same case.
    let through_response = idn.case("KHM-C-1-R1").await.unwrap();
    assert_eq!(through_response.state, case.state);

    idn.send(
        change("IDN-C-1-W", "IDN-C-1", pb::AlertLifecycle::Withdraw),
        true,
    )
    .await
    .unwrap();
    for client in [&mut idn, &mut khm] {
        let case = client.case("IDN-C-1").await.unwrap();
        assert_eq!(
            status(case.state.as_ref()),
            pb::CaseStatus::Withdrawn,
            "both sides see it withdrawn"
        );
        let order: Vec<_> = case
            .messages
            .iter()
            .map(|m| {
                m.entry
                    .as_ref()
                    .unwrap()
                    .entry
                    .as_ref()
                    .unwrap()
                    .message_id
                    .clone()
            })
            .collect();
        assert_eq!(order, ["IDN-C-1", "IDN-C-1-U1", "KHM-C-1-R1", "IDN-C-1-W"]);
        assert!(case.findings.is_empty());
    }
    // Withdrawn: left out of a search unless asked for all.
    assert!(
        khm.search(by_document("E5555555"))
            .await
            .unwrap()
            .hits
            .is_empty()
    );
    let all = pb::SearchRequest {
        all: true,
        ..by_document("E5555555")
    };
    let r = khm.search(all).await.unwrap();
    assert_eq!(ids(&r), ["IDN-C-1"]);
    assert!(
        r.hits
            .iter()
            .all(|h| status(h.case.as_ref()) == pb::CaseStatus::Withdrawn)
    );
    // The inbox shows each message's case; the withdrawal names the alert it withdraws.
    let inbox = khm.inbox(pb::InboxRequest::default()).await.unwrap();
    let withdrawal = inbox
        .messages
        .iter()
        .find(|m| m.entry.as_ref().unwrap().entry.as_ref().unwrap().message_id == "IDN-C-1-W")
        .unwrap();
    assert_eq!(status(withdrawal.case.as_ref()), pb::CaseStatus::Withdrawn);
    let table = focalpoint::cli::client::messages_table(&inbox.messages);
    assert!(
        table.contains("withdraws IDN-C-1 (suspected_trafficking_victim)"),
        "{table}"
    );
    // Listings by status.
    let withdrawn = pb::CasesRequest {
        status: pb::CaseStatus::Withdrawn as i32,
        ..Default::default()
    };
    let listed = khm.cases(withdrawn).await.unwrap();
    assert_eq!(listed.cases.len(), 1);
    assert_eq!(listed.cases[0].messages, 4);
    let active = pb::CasesRequest {
        status: pb::CaseStatus::Active as i32,
        ..Default::default()
    };
    assert!(khm.cases(active).await.unwrap().cases.is_empty());
    pair.stop().await;
}

#[tokio::test]
async fn a_closing_response_closes_the_case_and_awaiting_cases_are_listed() {
    let pair = start_pair().await;
    let mut idn = pair.client("idn", "operator");
    let mut khm = pair.client("khm", "operator");
    idn.send(
        alert("IDN-C-2", "LESTARI", "DEWI", "1990-09-09", "F6666666"),
        true,
    )
    .await
    .unwrap();
    idn.send(
        alert("IDN-C-3", "PRATAMA", "BUDI", "1991-01-01", "F7777777"),
        true,
    )
    .await
    .unwrap();
    khm.send(
        response("KHM-C-2-R", "IDN-C-2", pb::ResponseStatus::Closed),
        true,
    )
    .await
    .unwrap();
    let case = idn.case("IDN-C-2").await.unwrap();
    let state = case.state.unwrap();
    assert_eq!(status(Some(&state)), pb::CaseStatus::Closed);
    assert!(state.answered);
    let awaiting = pb::CasesRequest {
        awaiting_response: true,
        ..Default::default()
    };
    let listed = idn.cases(awaiting).await.unwrap();
    let open: Vec<_> = listed
        .cases
        .iter()
        .map(|c| c.state.as_ref().unwrap().case_id.as_str())
        .collect();
    assert_eq!(open, ["IDN-C-3"]);
    assert_eq!(listed.cases[0].direction, pb::Direction::Sent as i32);
    pair.stop().await;
}

#[tokio::test]
async fn an_alert_past_its_valid_until_is_expired_without_a_message_and_is_not_sent() {
    let pair = start_pair().await;
    // A peer's alert that was valid when written and has expired since: no message says so.
    let (cert, key) = example_cert("idn", "node");
    let mut peer = peer_client(&pair.khm, "khm", cert, key);
    let mut late = alert("IDN-X-1", "HASANAH", "NUR", "1993-03-03", "G8888888");
    late.sender = "IDN".into();
    late.created_at = "2025-04-30T08:15:00Z".into();
    if let Some(pb::envelope::Body::TravellerAlert(a)) = &mut late.body {
        a.valid_until = "2025-10-31".into();
    }
    peer.deliver(pb::DeliverRequest {
        envelope: late.encode_to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut khm = pair.client("khm", "operator");
    let case = khm.case("IDN-X-1").await.unwrap();
    assert_eq!(status(case.state.as_ref()), pb::CaseStatus::Expired);
    assert_eq!(case.messages.len(), 1, "no message was needed");
    assert!(
        khm.search(by_document("G8888888"))
            .await
            .unwrap()
            .hits
            .is_empty()
    );
    let expired = pb::CasesRequest {
        status: pb::CaseStatus::Expired as i32,
        ..Default::default()
    };
    assert_eq!(khm.cases(expired).await.unwrap().cases.len(), 1);

    // This node will not issue one already expired: refused, naming the field, nothing sent.
    let mut idn = pair.client("idn", "operator");
    let before = pair.idn.exchange().log().head().unwrap().0;
    let mut stale = alert("IDN-X-2", "HASANAH", "NUR", "1993-03-03", "G8888889");
    if let Some(pb::envelope::Body::TravellerAlert(a)) = &mut stale.body {
        a.valid_until = "2025-10-31".into();
    }
    let err = idn.send(stale, false).await.unwrap_err();
    assert!(
        err.to_string().contains("traveller_alert.valid_until"),
        "{err}"
    );
    let log = pair.idn.exchange().log();
    assert!(log.sent("IDN-X-2").unwrap().is_none());
    let last = log.entry(log.head().unwrap().0).unwrap().unwrap();
    assert_eq!(
        last.kind(),
        pb::EntryKind::Refusal,
        "only the refusal is logged"
    );
    assert_eq!(log.head().unwrap().0, before + 1);
    pair.stop().await;
}

#[tokio::test]
async fn a_reference_to_a_message_never_exchanged_is_a_finding_and_is_not_sent() {
    let pair = start_pair().await;
    // The peer's word is evidence: logged, receipted, and shown as a finding.
    let (cert, key) = example_cert("idn", "node");
    let mut peer = peer_client(&pair.khm, "khm", cert, key);
    let mut stray = example("idn/response-to-fraud-notice.json");
    stray.message_id = "IDN-R-STRAY".into();
    stray.reference = "KHM-NEVER-SENT".into();
    stray.sender = "IDN".into();
    stray.receiver = "KHM".into();
    stray.created_at = "2025-05-02T08:00:00Z".into();
    peer.deliver(pb::DeliverRequest {
        envelope: stray.encode_to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut khm = pair.client("khm", "operator");
    let case = khm.case("IDN-R-STRAY").await.unwrap();
    assert_eq!(
        case.findings,
        ["IDN-R-STRAY: reference names a message this node never exchanged"]
    );
    // The case listing shows it with its finding, and the audit reports it without failing.
    let listed = khm.cases(pb::CasesRequest::default()).await.unwrap();
    let stray_case = listed
        .cases
        .iter()
        .find(|c| c.state.as_ref().unwrap().case_id == "IDN-R-STRAY")
        .unwrap();
    assert_eq!(stray_case.findings, 1);
    let verified = pair.client("khm", "auditor").verify().await.unwrap();
    assert!(verified.ok, "{}", verified.problem);
    assert_eq!(verified.unknown_references, 1);
    let stray_seq = pair
        .khm
        .exchange()
        .log()
        .received("IDN".parse().unwrap(), "IDN-R-STRAY");
    assert_eq!(Some(verified.first_unknown_reference), stray_seq.unwrap());
    // The operator plane will not send one.
    let mut idn = pair.client("idn", "operator");
    let mut answer = response("IDN-R-2", "KHM-NEVER-SENT", pb::ResponseStatus::Received);
    answer.receiver = "KHM".into();
    let err = idn.send(answer, false).await.unwrap_err();
    assert!(err.to_string().contains("reference"), "{err}");
    assert!(pair.idn.exchange().log().sent("IDN-R-2").unwrap().is_none());
    pair.stop().await;
}

#[tokio::test]
async fn the_screening_role_may_search_and_nothing_else() {
    let pair = start_pair().await;
    let mut idn = pair.client("idn", "operator");
    let alert = example("idn/alert-trafficking-victim.json");
    idn.send(alert.clone(), true).await.unwrap();
    let mut gate = pair.client("khm", "screening");
    let r = gate.search(by_document("X2217845")).await.unwrap();
    assert_eq!(ids(&r), [alert.message_id.as_str()]);

    let denied = |e: focalpoint::cli::client::ClientError| match e {
        focalpoint::cli::client::ClientError::Refused(s) => s.code(),
        other => panic!("not a refusal: {other}"),
    };
    let mut response = example("khm/response-to-alert.json");
    response.message_id = "KHM-GATE-1".into();
    assert_eq!(
        denied(gate.send(response, false).await.unwrap_err()),
        Code::PermissionDenied
    );
    assert_eq!(
        denied(gate.inbox(pb::InboxRequest::default()).await.unwrap_err()),
        Code::PermissionDenied
    );
    assert_eq!(
        denied(gate.show(&alert.message_id).await.unwrap_err()),
        Code::PermissionDenied
    );
    assert_eq!(
        denied(gate.case(&alert.message_id).await.unwrap_err()),
        Code::PermissionDenied
    );
    assert_eq!(
        denied(gate.log(1, 10).await.unwrap_err()),
        Code::PermissionDenied
    );
    // The sync may not search.
    let mut sync = pair.client("khm", "sync");
    assert_eq!(
        denied(sync.search(by_document("X2217845")).await.unwrap_err()),
        Code::PermissionDenied
    );
    pair.stop().await;
}

#[tokio::test]
async fn consultations_are_chained_exported_and_never_hold_the_query() {
    let pair = start_pair().await;
    let mut idn = pair.client("idn", "operator");
    let alert = example("idn/alert-trafficking-victim.json");
    idn.send(alert.clone(), true).await.unwrap();
    let mut khm = pair.client("khm", "operator");
    let mut gate = pair.client("khm", "screening");
    let log = pair.khm.exchange().log();
    let before = log.head().unwrap().0;
    gate.search(by_document("X2217845")).await.unwrap();
    khm.search(by_name("Wulandari, Sari")).await.unwrap();
    khm.show(&alert.message_id).await.unwrap();
    khm.case(&alert.message_id).await.unwrap();
    khm.search(by_document("Z0000000")).await.unwrap();
    let (after, _) = log.head().unwrap();
    let entries = log.range(before + 1, 100).unwrap();
    assert_eq!(after - before, 5, "one entry per consultation");
    let expected = [
        (
            "urn:focalpoint:KHM:screening:border-gate",
            pb::ConsultationOperation::Search,
            vec![alert.message_id.clone()],
        ),
        (
            "urn:focalpoint:KHM:operator:duty-officer",
            pb::ConsultationOperation::Search,
            vec![alert.message_id.clone()],
        ),
        (
            "urn:focalpoint:KHM:operator:duty-officer",
            pb::ConsultationOperation::Show,
            vec![alert.message_id.clone()],
        ),
        (
            "urn:focalpoint:KHM:operator:duty-officer",
            pb::ConsultationOperation::Case,
            vec![alert.message_id.clone()],
        ),
        (
            "urn:focalpoint:KHM:operator:duty-officer",
            pb::ConsultationOperation::Search,
            vec![],
        ),
    ];
    for (stored, (actor, operation, returned)) in entries.iter().zip(expected) {
        assert_eq!(stored.kind(), pb::EntryKind::Consultation);
        assert_eq!(stored.entry.actor, actor);
        let content = log.content(stored.entry.sequence).unwrap().unwrap();
        let consultation = pb::Consultation::decode(content.as_slice()).unwrap();
        assert_eq!(consultation.operation, operation as i32);
        assert_eq!(consultation.message_ids, returned);
        // Neither the entry nor its content holds what was asked.
        let mut bytes = stored.entry.encode_to_vec();
        bytes.extend_from_slice(&content);
        for term in ["X2217845", "WULANDARI", "Wulandari", "Z0000000"] {
            assert!(
                !bytes.windows(term.len()).any(|w| w == term.as_bytes()),
                "{term} in entry {}",
                stored.entry.sequence
            );
        }
    }
    // Chained and checked like every entry; exported with the actor.
    let mut auditor = pair.client("khm", "auditor");
    let verified = auditor.verify().await.unwrap();
    assert!(verified.ok, "{}", verified.problem);
    let config =
        focalpoint::node::config::NodeConfig::load(&pair.dir.path().join("khm/node.toml")).unwrap();
    let trust = config.audit_trust().unwrap();
    let records =
        focalpoint::exchange::audit::export(log, &trust, before + 1, u64::MAX, (None, None))
            .unwrap();
    let consulted: Vec<_> = records
        .iter()
        .filter(|r| r.kind == focalpoint::domain::kinds::EntryName::Consulted)
        .collect();
    assert_eq!(consulted.len(), 5);
    assert_eq!(
        consulted[0].actor,
        "urn:focalpoint:KHM:screening:border-gate"
    );
    assert!(consulted[0].consultation.is_some());
    // Who sent a message is in its entry too.
    let sent = pair
        .idn
        .exchange()
        .log()
        .sent(&alert.message_id)
        .unwrap()
        .unwrap();
    let entry = pair.idn.exchange().log().entry(sent).unwrap().unwrap();
    assert_eq!(
        entry.entry.actor,
        "urn:focalpoint:IDN:operator:duty-officer"
    );
    pair.stop().await;
}
