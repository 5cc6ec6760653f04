//! The statistics sync: idempotent pushes, revisions, reconciliation with the receiver's log, and
//! the readings (CSV, chart).

mod common;

use common::*;
use focalpoint::node::server::BoundNode;
use focalpoint::pb;
use prost::Message;

fn figures(path: &str) -> focalpoint::cli::figures::Figures {
    focalpoint::cli::figures::read_figures(&repo().join("examples").join(path)).unwrap()
}

fn push_request(
    period: &str,
    f: &focalpoint::cli::figures::Figures,
    wait: bool,
) -> pb::PushStatisticsRequest {
    pb::PushStatisticsRequest {
        peer: String::new(),
        period: Some(focalpoint::domain::kinds::parse_period(period).unwrap()),
        counters: f.counters.clone(),
        source: f.source.clone(),
        wait_for_receipt: wait,
    }
}

/// Today (UTC) as a one-day period: the envelopes the nodes fill in are created today.
fn today() -> String {
    now().date().to_string()
}

async fn send_alert(client: &mut focalpoint::cli::client::OperatorClient, id: &str) {
    let mut e = example("idn/alert-trafficking-victim.json");
    e.message_id = id.into();
    e.created_at = String::new();
    client.send(e, true).await.unwrap();
}

#[tokio::test]
async fn the_same_figures_change_nothing_and_changed_figures_become_a_revision() {
    let pair = start_pair().await;
    let mut operator = pair.client("idn", "operator");
    send_alert(&mut operator, "IDN-STATS-ALERT-1").await;
    let mut sync = pair.client("idn", "sync");
    let f = figures("idn/figures-2025-04.csv");
    let period = today();

    let first = sync
        .push_statistics(push_request(&period, &f, true))
        .await
        .unwrap();
    assert_eq!(first.revision, 1);
    assert!(!first.unchanged);
    let sent = first.sent.clone().unwrap();
    assert_eq!(
        sent.state,
        pb::DeliveryState::Delivered as i32,
        "{}",
        sent.detail
    );
    let alerts_sent = first
        .exchanged
        .iter()
        .find(|x| {
            x.kind == pb::MessageKind::TravellerAlert as i32
                && x.direction == pb::Direction::Sent as i32
        })
        .unwrap();
    assert_eq!(alerts_sent.count, 1, "the alert sent today is counted");

    let head = pair.idn.exchange().log().head().unwrap();
    let again = sync
        .push_statistics(push_request(&period, &f, true))
        .await
        .unwrap();
    assert!(again.unchanged);
    assert_eq!(again.revision, 1);
    assert_eq!(again.sent.unwrap().message_id, sent.message_id);
    assert_eq!(
        pair.idn.exchange().log().head().unwrap(),
        head,
        "pushing the same figures again logs nothing"
    );

    let mut changed = f.clone();
    changed.counters[1].value += 4;
    let second = sync
        .push_statistics(push_request(&period, &changed, true))
        .await
        .unwrap();
    assert_eq!(second.revision, 2);
    assert!(!second.unchanged);
    let second_id = second.sent.unwrap().message_id;
    assert_ne!(second_id, sent.message_id);

    // KHM holds both revisions; the second supersedes the first.
    let mut khm = pair.client("khm", "operator");
    let history = khm
        .statistics(pb::StatisticsRequest {
            country: "IDN".into(),
            period: Some(focalpoint::domain::kinds::parse_period(&period).unwrap()),
        })
        .await
        .unwrap()
        .reports;
    assert_eq!(history.len(), 2, "both revisions stay in the log");
    assert_eq!(history[0].message_id, sent.message_id);
    assert!(history[0].superseded);
    assert_eq!(history[1].message_id, second_id);
    assert!(!history[1].superseded);
    let current = focalpoint::cli::render::current(&history);
    assert_eq!(current.len(), 1);
    let report = current[0].report.as_ref().unwrap();
    assert_eq!(report.counters[1].value, f.counters[1].value + 4);

    // Everything agreed, and KHM recorded that it did.
    let reconciliation = history[1].reconciliation.as_ref().unwrap();
    assert!(
        reconciliation.lines.iter().all(|l| l.agrees),
        "{reconciliation:?}"
    );
    let alerts = reconciliation
        .lines
        .iter()
        .find(|l| {
            l.kind == pb::MessageKind::TravellerAlert as i32
                && l.direction == pb::Direction::Received as i32
        })
        .unwrap();
    assert_eq!((alerts.ours, alerts.theirs), (1, 1));

    // IDN's own view of what it sent is the same.
    let own = operator
        .statistics(pb::StatisticsRequest {
            country: "IDN".into(),
            period: None,
        })
        .await
        .unwrap()
        .reports;
    assert_eq!(own.len(), 2);
    assert!(own[0].superseded && !own[1].superseded);
    pair.stop().await;
}

#[tokio::test]
async fn reconciliation_records_a_missing_and_an_extra_message() {
    let dir = tempfile::tempdir().unwrap();
    let (idn_config, khm_config) = focalpoint::cli::demo::example_configs(dir.path()).unwrap();
    let trust = idn_config.audit_trust().unwrap();
    // IDN cannot reach KHM (its peer address is a closed port); KHM reaches IDN.
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut idn = BoundNode::bind(idn_config, None).await.unwrap();
    let mut khm = BoundNode::bind(khm_config, None).await.unwrap();
    idn.set_peer_address("KHM".parse().unwrap(), &format!("https://{unused}"));
    khm.set_peer_address(
        "IDN".parse().unwrap(),
        &format!("https://{}", idn.peer_address()),
    );
    let (idn, khm) = (idn.start().await.unwrap(), khm.start().await.unwrap());
    let client = |country: &str, role: &str, node: &focalpoint::node::server::RunningNode| {
        focalpoint::cli::client::OperatorClient::new(&focalpoint::cli::demo::example_client(
            dir.path(),
            country,
            role,
            node,
        ))
        .unwrap()
    };

    // Missing at KHM: an alert IDN logged for KHM that never arrived.
    let mut idn_operator = client("idn", "operator", &idn);
    let mut e = example("idn/alert-trafficking-victim.json");
    e.message_id = "IDN-NEVER-ARRIVED".into();
    e.created_at = String::new();
    let r = idn_operator.send(e, false).await.unwrap();
    assert_eq!(r.state, pb::DeliveryState::Pending as i32);

    // A push while the peer is away says so, and leaves the report in the outbox.
    let mut idn_sync = client("idn", "sync", &idn);
    let away = idn_sync
        .push_statistics(push_request(
            &today(),
            &figures("idn/figures-2025-04.csv"),
            false,
        ))
        .await
        .unwrap();
    assert_eq!(
        away.sent.as_ref().unwrap().state,
        pb::DeliveryState::Pending as i32
    );
    assert!(
        focalpoint::cli::client::push_text(&away).contains("stays in the outbox"),
        "{}",
        focalpoint::cli::client::push_text(&away)
    );

    // Extra at IDN: an alert delivered with KHM's node certificate that KHM's log never sent.
    let (cert, key) = example_cert("khm", "node");
    let mut forged = example("khm/fraud-notice-poipet.json");
    forged.message_id = "KHM-NOT-IN-KHM-LOG".into();
    forged.sender = "KHM".into();
    forged.created_at = focalpoint::domain::model::format_instant(now());
    let mut peer = peer_client(&idn, "idn", cert, key);
    peer.deliver(pb::DeliverRequest {
        envelope: forged.encode_to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();

    // KHM pushes its statistics; IDN compares them with its own log on receipt.
    let mut khm_sync = client("khm", "sync", &khm);
    let pushed = khm_sync
        .push_statistics(push_request(
            &today(),
            &figures("khm/figures-2025-04.json"),
            true,
        ))
        .await
        .unwrap();
    assert_eq!(
        pushed.sent.as_ref().unwrap().state,
        pb::DeliveryState::Delivered as i32
    );

    // An auditor sees the findings, with both counts.
    let mut auditor = client("idn", "auditor", &idn);
    let found = auditor
        .reconcile(pb::ReconcileRequest {
            peer: "KHM".into(),
            period: None,
            recheck: false,
        })
        .await
        .unwrap()
        .reconciliations;
    assert_eq!(found.len(), 1, "{found:?}");
    let line = |kind: pb::MessageKind, direction: pb::Direction| {
        found[0]
            .lines
            .iter()
            .find(|l| l.kind == kind as i32 && l.direction == direction as i32)
            .unwrap()
            .clone()
    };
    let missing = line(pb::MessageKind::TravellerAlert, pb::Direction::Sent);
    assert!(!missing.agrees);
    assert_eq!(
        (missing.ours, missing.theirs),
        (1, 0),
        "IDN sent one KHM lacks"
    );
    let extra = line(
        pb::MessageKind::DocumentFraudNotice,
        pb::Direction::Received,
    );
    assert!(!extra.agrees);
    assert_eq!(
        (extra.ours, extra.theirs),
        (1, 0),
        "IDN holds one KHM never sent"
    );
    let quiet = line(pb::MessageKind::CaseResponse, pb::Direction::Sent);
    assert!(quiet.agrees);
    assert_eq!(found[0].lines.iter().filter(|l| !l.agrees).count(), 2);

    // A watcher is told of it.
    let mut events = auditor.watch(pb::WatchRequest::default()).await.unwrap();
    let finding = loop {
        use tokio_stream::StreamExt;
        let event = tokio::time::timeout(std::time::Duration::from_secs(30), events.next())
            .await
            .expect("an event within 30 s")
            .unwrap()
            .unwrap();
        if event.kind == pb::EventKind::Finding as i32 {
            break event;
        }
    };
    assert_eq!(
        finding.message_kind,
        pb::MessageKind::StatisticsReport as i32
    );
    assert_eq!(
        finding.detail,
        "a statistics report disagrees with this log"
    );
    drop(events);

    // The finding is an entry of IDN's log, chained like every other and verified.
    let log = idn.exchange().log();
    let (size, _) = log.head().unwrap();
    let entries = log.range(1, size as usize).unwrap();
    let recorded = entries
        .iter()
        .filter(|e| e.kind() == pb::EntryKind::Reconciliation)
        .count();
    assert_eq!(recorded, 1);
    let audited = focalpoint::exchange::audit::verify(log, &trust).unwrap();
    assert_eq!(audited.entries, size);

    // Exported for auditors, the reconciliation carries both counts.
    let export = focalpoint::exchange::audit::export(log, &trust, 1, u64::MAX, (None, None));
    let line = export
        .unwrap()
        .into_iter()
        .find(|r| r.kind == focalpoint::domain::kinds::EntryName::Reconciled)
        .unwrap();
    let lines = &line.reconciliation.unwrap()["lines"];
    // proto3 JSON leaves out a false `agrees`: those lines are the findings.
    let findings: Vec<_> = lines
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l.get("agrees").and_then(|v| v.as_bool()) != Some(true))
        .collect();
    assert_eq!(findings.len(), 2, "{lines}");
    assert!(findings.iter().all(|l| l["ours"] == "1"), "{lines}");

    // Auditors may read but not recheck; rechecking with nothing changed records nothing new.
    assert!(
        auditor
            .reconcile(pb::ReconcileRequest {
                peer: "KHM".into(),
                period: None,
                recheck: true,
            })
            .await
            .is_err()
    );
    let rechecked = idn_operator
        .reconcile(pb::ReconcileRequest {
            peer: "KHM".into(),
            period: None,
            recheck: true,
        })
        .await
        .unwrap()
        .reconciliations;
    assert_eq!(rechecked[0].lines, found[0].lines);
    assert_eq!(
        log.head().unwrap().0,
        size,
        "an unchanged outcome is not logged again"
    );

    idn.stop().await.unwrap();
    khm.stop().await.unwrap();
}

#[tokio::test]
async fn the_chart_and_the_csv_come_from_the_reports_in_the_log() {
    let pair = start_pair().await;
    let mut idn_sync = pair.client("idn", "sync");
    let mut khm_sync = pair.client("khm", "sync");
    let base = figures("idn/figures-2025-04.csv");
    for (month, value) in [("2025-02", 1100), ("2025-03", 1250), ("2025-04", 1310)] {
        let mut f = base.clone();
        f.counters[0].value = value;
        f.counters[0].breakdown.clear();
        idn_sync
            .push_statistics(push_request(month, &f, true))
            .await
            .unwrap();
    }
    let khm_base = figures("khm/figures-2025-04.json");
    for (month, value) in [("2025-03", 850), ("2025-04", 897)] {
        let mut f = khm_base.clone();
        f.counters[0].value = value;
        f.counters[0].breakdown.clear();
        khm_sync
            .push_statistics(push_request(month, &f, true))
            .await
            .unwrap();
    }

    let mut reader = pair.client("idn", "auditor");
    let mut series = Vec::new();
    for country in ["IDN", "KHM"] {
        let records = reader
            .statistics(pb::StatisticsRequest {
                country: country.into(),
                period: None,
            })
            .await
            .unwrap()
            .reports;
        series.push(focalpoint::cli::render::series(
            country,
            &records,
            "departures_postponed",
            focalpoint::cli::render::Granularity::Month,
        ));
    }
    assert_eq!(
        series[0].points,
        vec![
            ("2025-02".to_owned(), 1100),
            ("2025-03".to_owned(), 1250),
            ("2025-04".to_owned(), 1310)
        ]
    );
    assert_eq!(
        series[1].points,
        vec![("2025-03".to_owned(), 850), ("2025-04".to_owned(), 897)]
    );
    let svg = focalpoint::cli::render::chart_svg(
        "departures_postponed",
        focalpoint::cli::render::Granularity::Month,
        &series,
    )
    .unwrap();
    assert!(svg.starts_with("<svg"));
    let polyline = |country: &str| {
        let start = svg
            .find(&format!("data-country=\"{country}\""))
            .unwrap_or_else(|| panic!("no line for {country}"));
        let points = &svg[start..];
        let points = &points[points.find("points=\"").unwrap() + 8..];
        points[..points.find('"').unwrap()]
            .split_whitespace()
            .count()
    };
    assert_eq!(polyline("IDN"), 3);
    assert_eq!(polyline("KHM"), 2);
    assert!(svg.contains("<title>KHM 2025-04 897</title>"));

    let records = reader
        .statistics(pb::StatisticsRequest {
            country: "KHM".into(),
            period: None,
        })
        .await
        .unwrap()
        .reports;
    let csv = focalpoint::cli::render::csv(&focalpoint::cli::render::current(&records));
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("country,peer,period_start,period_end,revision,counter,location,value")
    );
    assert!(csv.contains("KHM,2025-03-01,2025-03-31,1,departures_postponed,,850\n"));
    assert!(csv.contains("KHM,2025-04-01,2025-04-30,1,residents_idn,,4120\n"));
    pair.stop().await;
}

#[test]
fn a_malformed_csv_is_refused_naming_the_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("figures.csv");
    std::fs::write(
        &bad,
        "counter,location,value\ndepartures_postponed,,1310\nrepatriations,,12x\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_focalpoint"))
        .args(["stats", "push", "--period", "2025-04", "--config"])
        .arg(dir.path().join("unused-client.toml"))
        .arg("--file")
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(
        stderr.contains("line 3, column 3 (value)") && stderr.contains("\"12x\""),
        "{stderr}"
    );
}

/// The deployed nightly job, run as cron or the systemd timer would, against real nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nightly_sync_script_is_safe_to_rerun_and_says_when_the_peer_is_away() {
    let pair = start_pair().await;
    let work = tempfile::tempdir().unwrap();
    let stats_dir = work.path().join("stats");
    std::fs::create_dir_all(&stats_dir).unwrap();
    let examples = repo().join("examples");
    std::fs::copy(
        examples.join("idn/figures-2025-04.csv"),
        stats_dir.join("2025-04-30.csv"),
    )
    .unwrap();
    std::fs::copy(
        examples.join("khm/figures-2025-04.json"),
        stats_dir.join("2025-04.json"),
    )
    .unwrap();
    let client = focalpoint::cli::demo::example_client(pair.dir.path(), "idn", "sync", &pair.idn);
    let config = work.path().join("sync.toml");
    std::fs::write(
        &config,
        format!(
            "node = {:?}\nserver_name = {:?}\nca = {:?}\ncertificate = {:?}\nkey = {:?}\n",
            client.node, client.server_name, client.ca, client.certificate, client.key
        ),
    )
    .unwrap();
    let run = move |config: std::path::PathBuf, stats_dir: std::path::PathBuf| async move {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("sh")
                .arg(repo().join("deploy/focalpoint-stats-sync"))
                .env("FOCALPOINT_CLIENT_CONFIG", config)
                .env("STATS_DIR", stats_dir)
                .env("FOCALPOINT", env!("CARGO_BIN_EXE_focalpoint"))
                .env("SYNC_DATE", "2025-05-01")
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };

    let first = run(config.clone(), stats_dir.clone()).await;
    let text = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(
        first.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(text.matches("revision 1 logged").count(), 2, "{text}");

    let second = run(config.clone(), stats_dir.clone()).await;
    let text = String::from_utf8_lossy(&second.stdout).into_owned();
    assert!(second.status.success(), "{text}");
    assert_eq!(text.matches("unchanged: revision 1").count(), 2, "{text}");
    assert!(
        text.contains("reconciling the peer's report for 2025-04"),
        "{text}"
    );

    // KHM goes away; corrected figures for the month are logged as revision 2 and wait.
    let Pair { dir, idn, khm } = pair;
    khm.stop().await.unwrap();
    let corrected = common::read(&stats_dir.join("2025-04.json")).replace("4120", "4121");
    std::fs::write(stats_dir.join("2025-04.json"), corrected).unwrap();
    let third = run(config, stats_dir).await;
    let text = String::from_utf8_lossy(&third.stdout).into_owned();
    assert!(third.status.success(), "{text}");
    assert!(text.contains("revision 2 logged"), "{text}");
    assert!(text.contains("stays in the outbox"), "{text}");
    let outbox = idn.exchange().outbox(None, 10).unwrap();
    assert!(
        outbox
            .iter()
            .any(|m| m.entry.entry.message_id.ends_with("-R2")
                && m.delivery == Some(focalpoint::exchange::core::Delivery::Pending)),
        "the corrected report waits in the outbox"
    );
    idn.stop().await.unwrap();
    drop(dir);
}
