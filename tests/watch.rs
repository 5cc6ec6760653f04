//! The event stream with real processes: a KHM node run by `focalpoint serve`, alerts delivered
//! to it over the peer plane with IDN's node certificate, and `focalpoint watch` as a national
//! system would run it, killed and restarted, across a restart of the node too.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use focalpoint::node::tls::ClientTls;
use focalpoint::pb;
use focalpoint::pb::peer_service_client::PeerServiceClient;

/// The next item of a watch, failing the test rather than hanging it.
async fn next_event(
    stream: &mut tonic::Streaming<pb::Event>,
) -> Option<Result<pb::Event, tonic::Status>> {
    use tokio_stream::StreamExt;
    tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("the stream answers within 30 s")
}

/// Where a pair's example files are.
fn dir_of(pair: &Pair) -> &Path {
    pair.dir.path()
}

/// KHM's example configuration listening on `peer` and `operator` (port 0 for any).
fn khm_config(dir: &Path, peer: &str, operator: &str) -> PathBuf {
    let path = dir.join("khm/node.toml");
    let text = read(&dir.join("khm/node.toml.example"))
        .replace("127.0.0.1:7543", peer)
        .replace("127.0.0.1:7544", operator)
        .replace("127.0.0.1:7545", "127.0.0.1:0");
    std::fs::write(&path, text).unwrap();
    path
}

fn client_config(dir: &Path, role: &str, operator: &str) -> PathBuf {
    let path = dir.join(format!("khm/{role}-client.toml"));
    std::fs::write(
        &path,
        format!(
            "node = \"https://{operator}\"\nserver_name = \"khm.focalpoint.example\"\n\
             ca = \"ca.pem\"\ncertificate = \"{role}.pem\"\nkey = \"{role}.key\"\n"
        ),
    )
    .unwrap();
    path
}

/// A `focalpoint watch --json` process whose lines arrive on the returned channel.
fn watcher(config: &Path, from: u64) -> (Child, mpsc::Receiver<String>) {
    watch_process(config, &["--json", "--from", &from.to_string()])
}

/// A `focalpoint watch` process with `args`, whose lines arrive on the returned channel.
fn watch_process(config: &Path, args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_focalpoint"))
        .arg("watch")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("FOCALPOINT_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

/// The next `n` events a watcher prints, as (sequence, kind, message id).
fn events(rx: &mpsc::Receiver<String>, n: usize) -> Vec<(u64, String, String)> {
    (0..n)
        .map(|_| {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("an event within 30 s");
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            let sequence = v["sequence"].as_str().unwrap().parse().unwrap();
            (
                sequence,
                v["kind"].as_str().unwrap().to_owned(),
                v["message_id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn deliver(peer: &str, ids: &[&str]) {
    let (cert, key) = example_cert("idn", "node");
    let tls = ClientTls {
        ca_pem: read(&repo().join("certs-example/khm/ca.pem")).into_bytes(),
        cert_pem: cert.into_bytes(),
        key_pem: key.into_bytes(),
        server_name: "khm.focalpoint.example".into(),
    };
    let mut client = PeerServiceClient::new(tls.channel(&format!("https://{peer}")).unwrap());
    for id in ids {
        client
            .deliver(pb::DeliverRequest {
                envelope: idn_alert_bytes(id, "watched"),
                ..Default::default()
            })
            .await
            .unwrap();
    }
}

/// The example certificates in `dir`, and KHM's node served from `dir/khm/data` as a process
/// of its own on free ports: the process, and its peer and operator addresses.
fn served_khm(dir: &Path) -> (Child, String, String) {
    focalpoint::cli::demo::example_configs(dir).unwrap();
    std::fs::rename(dir.join("khm/node.toml"), dir.join("khm/node.toml.example")).unwrap();
    let config = khm_config(dir, "127.0.0.1:0", "127.0.0.1:0");
    serve(&config, &dir.join("khm/data"))
}

#[tokio::test]
async fn a_watcher_killed_and_restarted_sees_every_event_once_across_a_node_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("khm/data");
    let (mut node, peer, operator) = served_khm(dir.path());
    let operator_config = client_config(dir.path(), "operator", &operator);

    // A watcher from the start sees the first three alerts.
    let (mut watching, rx) = watcher(&operator_config, 0);
    deliver(&peer, &["IDN-W-1", "IDN-W-2", "IDN-W-3"]).await;
    let mut seen = events(&rx, 3);
    watching.kill().unwrap();
    watching.wait().unwrap();

    // Two arrive while it is away; restarted from its last sequence, it sees them and the next.
    deliver(&peer, &["IDN-W-4", "IDN-W-5"]).await;
    let last = seen.last().unwrap().0;
    let (mut watching, rx) = watcher(&operator_config, last);
    deliver(&peer, &["IDN-W-6"]).await;
    seen.extend(events(&rx, 3));

    // The node stops and starts again on the same addresses: the running watcher reconnects by
    // itself and resumes.
    node.kill().unwrap();
    node.wait().unwrap();
    let config = khm_config(dir.path(), &peer, &operator);
    let (node_again, _, _) = serve(&config, &data);
    let mut node = node_again;
    deliver(&peer, &["IDN-W-7"]).await;
    seen.extend(events(&rx, 1));
    watching.kill().unwrap();
    watching.wait().unwrap();

    // And killed again, restarted after another alert.
    deliver(&peer, &["IDN-W-8"]).await;
    let last = seen.last().unwrap().0;
    let (mut watching, rx) = watcher(&operator_config, last);
    seen.extend(events(&rx, 1));
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "nothing more, nothing twice"
    );
    watching.kill().unwrap();
    watching.wait().unwrap();
    node.kill().unwrap();
    node.wait().unwrap();

    let ids: Vec<_> = seen.iter().map(|(_, _, id)| id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "IDN-W-1", "IDN-W-2", "IDN-W-3", "IDN-W-4", "IDN-W-5", "IDN-W-6", "IDN-W-7", "IDN-W-8"
        ]
    );
    assert!(
        seen.iter()
            .all(|(_, kind, _)| kind == "EVENT_KIND_MESSAGE_RECEIVED")
    );
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "sequences only grow: {seen:?}"
    );
}

#[tokio::test]
async fn only_operators_and_auditors_may_watch_and_kinds_filter_the_stream() {
    let pair = start_pair().await;
    use tokio_stream::StreamExt;
    for role in ["sync", "screening"] {
        let err = pair
            .client("khm", role)
            .watch(pb::WatchRequest::default())
            .await
            .unwrap_err();
        match err {
            focalpoint::cli::client::ClientError::Refused(s) => {
                assert_eq!(s.code(), tonic::Code::PermissionDenied, "{role}");
            }
            other => panic!("{role}: {other}"),
        }
    }
    let mut idn = pair.client("idn", "operator");
    let alert = example("idn/alert-trafficking-victim.json");
    idn.send(alert.clone(), true).await.unwrap();
    let mut khm = pair.client("khm", "operator");
    let mut response = example("khm/response-to-alert.json");
    response.message_id = "KHM-WATCH-R".into();
    khm.send(response, true).await.unwrap();

    // IDN's auditor watches responses only: the receipt for IDN's alert is left out.
    let mut auditor = pair.client("idn", "auditor");
    let mut stream = auditor
        .watch(pb::WatchRequest {
            from_sequence: 0,
            kinds: vec![pb::MessageKind::CaseResponse as i32],
        })
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.kind, pb::EventKind::MessageReceived as i32);
    assert_eq!(first.message_id, "KHM-WATCH-R");
    let state = first.case.unwrap();
    assert_eq!(state.case_id, alert.message_id);
    assert!(state.answered);

    // Everything, from the start: the receipt for the alert, then the response.
    let mut stream = auditor.watch(pb::WatchRequest::default()).await.unwrap();
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let e = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        kinds.push((pb::EventKind::try_from(e.kind).unwrap(), e.message_id));
    }
    assert_eq!(
        kinds,
        [
            (pb::EventKind::ReceiptReceived, alert.message_id.clone()),
            (pb::EventKind::MessageReceived, "KHM-WATCH-R".into()),
        ]
    );
    // A new event follows as soon as it is durable.
    let mut update = example("idn/alert-update.json");
    update.message_id = "IDN-WATCH-U".into();
    idn.send(update, false).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next.kind, pb::EventKind::ReceiptReceived as i32);
    assert_eq!(next.message_id, "IDN-WATCH-U");
    pair.stop().await;
}

#[tokio::test]
async fn a_watcher_that_stops_reading_is_told_it_fell_behind_and_resumes_without_a_gap() {
    use prost::Message;
    let pair = start_pair().await;
    let log = pair.khm.exchange().log().clone();
    let idn: focalpoint::domain::model::CountryCode = "IDN".parse().unwrap();
    // Far more received alerts than a watcher's buffer and the connection's window hold.
    let append = |from: usize, count: usize| {
        let log = log.clone();
        move || {
            log.transact_blocking(move |t| {
                for n in from..from + count {
                    t.append(focalpoint::log::NewEntry {
                        kind: pb::EntryKind::MessageReceived,
                        peer: Some(idn),
                        message_id: format!("IDN-SLOW-{n}"),
                        message_kind: pb::MessageKind::TravellerAlert,
                        content: Some(idn_alert_bytes(&format!("IDN-SLOW-{n}"), "slow")),
                        peer_sequence: n as u64 + 1,
                        ..Default::default()
                    })?;
                }
                Ok(())
            })
            .unwrap()
        }
    };
    const MANY: usize = 3_000;
    tokio::task::spawn_blocking(append(0, MANY)).await.unwrap();
    // A watcher whose connection takes in little before it pushes back (64 KiB windows, where
    // a client's default is megabytes): what the node buffers is what fills up.
    let base = dir_of(&pair).join("khm");
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(read(
            &base.join("ca.pem"),
        )))
        .identity(tonic::transport::Identity::from_pem(
            read(&base.join("auditor.pem")),
            read(&base.join("auditor.key")),
        ))
        .domain_name("khm.focalpoint.example");
    let channel =
        tonic::transport::Endpoint::from_shared(format!("https://{}", pair.khm.operator_address))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .initial_stream_window_size(65_535)
            .initial_connection_window_size(65_535)
            .connect()
            .await
            .unwrap();
    let mut auditor = pb::operator_service_client::OperatorServiceClient::new(channel);
    let mut stream = auditor
        .watch(pb::WatchRequest::default())
        .await
        .unwrap()
        .into_inner();
    // The watcher reads one event, then nothing for longer than the node waits for room.
    let first = next_event(&mut stream).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_secs(7)).await;
    // The log was never held up: it takes more meanwhile.
    tokio::task::spawn_blocking(append(MANY, 10)).await.unwrap();
    let mut last = first.sequence;
    let mut seen = 1;
    let ended = loop {
        match next_event(&mut stream).await {
            Some(Ok(e)) => {
                assert_eq!(e.sequence, last + 1, "in order, without a gap");
                last = e.sequence;
                seen += 1;
            }
            Some(Err(status)) => break status,
            None => panic!("the stream ended without saying why"),
        }
    };
    assert_eq!(ended.code(), tonic::Code::ResourceExhausted, "{ended}");
    assert!(seen < MANY + 10, "the watcher fell behind before the end");
    // Resumed from its last sequence: the rest, and nothing twice.
    let mut stream = auditor
        .watch(pb::WatchRequest {
            from_sequence: last,
            kinds: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    while seen < MANY + 10 {
        let e = next_event(&mut stream).await.unwrap().unwrap();
        assert_eq!(e.sequence, last + 1);
        last = e.sequence;
        seen += 1;
    }
    let envelope = pb::Envelope::decode(log.content(last).unwrap().unwrap().as_slice()).unwrap();
    assert_eq!(envelope.message_id, format!("IDN-SLOW-{}", MANY + 9));
    pair.stop().await;
}

/// An event tells the case as it stood when its entry was written: read again after the case
/// was answered, the alert's event still says what it said live.
#[tokio::test]
async fn an_event_read_again_later_says_what_it_said_live() {
    let pair = start_pair().await;
    use tokio_stream::StreamExt;
    let mut idn = pair.client("idn", "operator");
    let alert = example("idn/alert-trafficking-victim.json");
    idn.send(alert.clone(), true).await.unwrap();
    let mut khm = pair.client("khm", "operator");
    let id = alert.message_id.clone();
    let alert_event = |mut stream: tonic::Streaming<pb::Event>| {
        let id = id.clone();
        async move {
            loop {
                let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap();
                if event.message_id == id {
                    return event;
                }
            }
        }
    };
    let live = alert_event(khm.watch(pb::WatchRequest::default()).await.unwrap()).await;
    let state = live.case.clone().unwrap();
    assert!(!state.answered);
    assert_eq!(state.status, pb::CaseStatus::Active as i32);

    // KHM answers and closes the case; `case` says so.
    let mut response = example("khm/response-closing.json");
    response.reference = alert.message_id.clone();
    khm.send(response, true).await.unwrap();
    let now = khm.case(&alert.message_id).await.unwrap().state.unwrap();
    assert!(now.answered);
    assert_eq!(now.status, pb::CaseStatus::Closed as i32);

    // The alert's event, read again from the start, is the event read live.
    let again = alert_event(khm.watch(pb::WatchRequest::default()).await.unwrap()).await;
    assert_eq!(again, live);
    pair.stop().await;
}

#[tokio::test]
async fn a_watcher_is_told_of_a_failed_delivery_and_of_a_reference_to_nothing_exchanged() {
    let pair = start_pair().await;
    let mut idn_stream = pair
        .client("idn", "operator")
        .watch(pb::WatchRequest::default())
        .await
        .unwrap();
    let mut khm_stream = pair
        .client("khm", "auditor")
        .watch(pb::WatchRequest::default())
        .await
        .unwrap();
    let (cert, key) = example_cert("idn", "node");
    let mut peer = peer_client(&pair.khm, "khm", cert, key);

    // KHM already holds IDN-EV-1 with other content, so it refuses IDN's own for good.
    peer.deliver(pb::DeliverRequest {
        envelope: idn_alert_bytes("IDN-EV-1", "another text"),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut idn = pair.client("idn", "operator");
    let mut refused = example("idn/alert-trafficking-victim.json");
    refused.message_id = "IDN-EV-1".into();
    let sent = idn.send(refused, true).await.unwrap();
    assert_eq!(sent.state, pb::DeliveryState::Failed as i32);
    let failed = next_event(&mut idn_stream).await.unwrap().unwrap();
    assert_eq!(
        (
            failed.kind,
            failed.message_id.as_str(),
            failed.peer.as_str()
        ),
        (pb::EventKind::DeliveryFailed as i32, "IDN-EV-1", "KHM")
    );
    assert!(
        failed.detail.contains("ALREADY_EXISTS"),
        "{}",
        failed.detail
    );

    // An update naming an alert KHM never exchanged is a finding there.
    let mut update = example("idn/alert-update.json");
    update.message_id = "IDN-EV-2".into();
    update.reference = "IDN-NEVER-SENT".into();
    update.sender = "IDN".into();
    update.created_at = "2025-04-30T08:15:00Z".into();
    peer.deliver(pb::DeliverRequest {
        envelope: prost::Message::encode_to_vec(&update),
        ..Default::default()
    })
    .await
    .unwrap();
    let received = next_event(&mut khm_stream).await.unwrap().unwrap();
    assert_eq!(received.kind, pb::EventKind::MessageReceived as i32);
    assert_eq!(received.message_id, "IDN-EV-1");
    assert_eq!(
        received.category,
        pb::AlertCategory::SuspectedTraffickingVictim as i32
    );
    assert_eq!(received.case.unwrap().status, pb::CaseStatus::Active as i32);
    let finding = next_event(&mut khm_stream).await.unwrap().unwrap();
    assert_eq!(
        (finding.kind, finding.message_id.as_str()),
        (pb::EventKind::Finding as i32, "IDN-EV-2")
    );
    assert!(
        finding.detail.contains("never exchanged"),
        "{}",
        finding.detail
    );
    pair.stop().await;
}

#[tokio::test]
async fn watch_prints_a_line_per_event_of_the_kinds_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, peer, operator) = served_khm(dir.path());
    let operator_config = client_config(dir.path(), "operator", &operator);
    let (mut watching, rx) = watch_process(&operator_config, &["--kind", "response,fraud"]);

    // An alert, which the watcher does not ask for, then a response naming nothing KHM sent.
    deliver(&peer, &["IDN-K-1"]).await;
    let mut response = example("idn/response-to-fraud-notice.json");
    response.message_id = "IDN-K-R".into();
    response.reference = "KHM-NEVER-SENT".into();
    response.sender = "IDN".into();
    response.created_at = "2025-04-30T08:15:00Z".into();
    let (cert, key) = example_cert("idn", "node");
    let tls = ClientTls {
        ca_pem: read(&repo().join("certs-example/khm/ca.pem")).into_bytes(),
        cert_pem: cert.into_bytes(),
        key_pem: key.into_bytes(),
        server_name: "khm.focalpoint.example".into(),
    };
    PeerServiceClient::new(tls.channel(&format!("https://{peer}")).unwrap())
        .deliver(pb::DeliverRequest {
            envelope: prost::Message::encode_to_vec(&response),
            ..Default::default()
        })
        .await
        .unwrap();
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a line within 30 s");
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[0], "2", "the response's sequence: {line}");
    assert_eq!(
        &words[2..6],
        ["finding", "IDN", "response", "IDN-K-R"],
        "{line}"
    );
    assert!(
        line.ends_with(": reference names a message this node never exchanged"),
        "{line}"
    );
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "the alert is not printed"
    );
    watching.kill().unwrap();
    watching.wait().unwrap();
    node.kill().unwrap();
    node.wait().unwrap();
}
