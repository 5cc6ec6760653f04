//! Limits on the peer plane: an oversized envelope, a flood, too many or too long streams and
//! too many connections are each refused with a clear status, counted, and harm nothing else.

mod common;

use std::time::Duration;

use common::*;
use focalpoint::node::limits::Limits;
use focalpoint::node::{BoundNode, RunningNode};
use focalpoint::pb;
use tokio::io::AsyncReadExt;
use tonic::Code;

fn khm_limits(
    limits: Limits,
) -> (
    tempfile::TempDir,
    focalpoint::node::config::NodeConfig,
    focalpoint::node::config::NodeConfig,
) {
    let dir = tempfile::tempdir().unwrap();
    let (idn, mut khm) = focalpoint::cli::demo::example_configs(dir.path()).unwrap();
    khm.limits = limits;
    (dir, idn, khm)
}

/// KHM alone, its peer pointing nowhere: nobody else connects to its peer plane.
async fn khm_alone(khm: focalpoint::node::config::NodeConfig) -> RunningNode {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("https://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut bound = BoundNode::bind(khm, None).await.unwrap();
    bound.set_peer_address("IDN".parse().unwrap(), &nowhere);
    bound.start().await.unwrap()
}

fn from_idn(
    khm: &RunningNode,
) -> pb::peer_service_client::PeerServiceClient<tonic::transport::Channel> {
    let (cert, key) = example_cert("idn", "node");
    peer_client(khm, "khm", cert, key)
}

fn deliver(id: &str, summary: &str) -> pb::DeliverRequest {
    pb::DeliverRequest {
        envelope: idn_alert_bytes(id, summary),
        sender_sequence: 0,
    }
}

fn limit_refusals(node: &RunningNode, limit: &str) -> u64 {
    let text = node
        .exchange()
        .metrics()
        .render(&focalpoint::exchange::metrics::Gauges::default());
    let prefix = format!("focalpoint_limit_refusals_total{{limit=\"{limit}\",peer=\"IDN\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn an_oversized_envelope_is_refused_naming_the_limit() {
    let (_dir, _, khm) = khm_limits(Limits {
        max_envelope_bytes: 2048,
        ..Limits::default()
    });
    let khm = khm_alone(khm).await;
    let mut client = from_idn(&khm);
    let small = deliver("IDN-20250430-ALERT-0100", "small");
    assert!(small.envelope.len() < 2048);
    client.deliver(small).await.unwrap();
    let big = deliver("IDN-20250430-ALERT-0101", &"x".repeat(1900));
    let size = big.envelope.len();
    assert!(size > 2048);
    let status = client.deliver(big).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        format!("invalid envelope: {size} bytes, more than this node's limit of 2048")
    );
    // Far beyond any envelope: refused before it is read whole.
    let huge = pb::DeliverRequest {
        envelope: vec![0; 5 * 1024 * 1024],
        sender_sequence: 0,
    };
    assert!(client.deliver(huge).await.is_err());
    // The refusal is in the log, without the content; the accepted one is there too.
    let log = khm.exchange().log().clone();
    let entries = log.range(1, usize::MAX).unwrap();
    let kinds: Vec<_> = entries.iter().map(|e| e.kind()).collect();
    assert_eq!(
        kinds,
        [pb::EntryKind::MessageReceived, pb::EntryKind::Refusal]
    );
    assert!(entries[1].entry.reason.contains("limit of 2048"));
    assert!(log.content(entries[1].entry.sequence).unwrap().is_none());
    khm.stop().await.unwrap();
}

#[tokio::test]
async fn a_flood_from_the_peer_is_refused_and_operators_are_still_served() {
    let (dir, idn, khm) = khm_limits(Limits {
        peer_rate_per_sec: 20,
        peer_burst: 20,
        ..Limits::default()
    });
    let (idn, khm) = focalpoint::cli::demo::start_pair(idn, khm).await.unwrap();
    let client = from_idn(&khm);
    let mut flood = Vec::new();
    for task in 0..8 {
        let mut client = client.clone();
        flood.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for i in 0..50 {
                let id = format!("IDN-20250430-ALERT-{}", 1000 + task * 50 + i);
                outcomes.push(client.deliver(deliver(&id, "flood")).await.map(|_| ()));
            }
            outcomes
        }));
    }
    // While the flood runs, the operator plane answers every call.
    let operator = focalpoint::cli::demo::example_client(dir.path(), "khm", "operator", &khm);
    let mut operator = focalpoint::cli::client::OperatorClient::new(&operator).unwrap();
    for _ in 0..20 {
        let answer = tokio::time::timeout(Duration::from_secs(30), operator.log(1, 5)).await;
        assert!(
            matches!(answer, Ok(Ok(_))),
            "the operator plane must answer"
        );
    }
    let mut accepted = 0;
    let mut refused = 0;
    for task in flood {
        for outcome in task.await.unwrap() {
            match outcome {
                Ok(()) => accepted += 1,
                Err(status) => {
                    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                    assert!(status.message().contains("more than 20 envelopes a second"));
                    refused += 1;
                }
            }
        }
    }
    assert_eq!(accepted + refused, 400);
    assert!(accepted >= 20, "the burst is accepted: {accepted}");
    assert!(
        refused > 0,
        "a flood of 400 at 20 a second is refused in part"
    );
    assert_eq!(limit_refusals(&khm, "rate"), refused);
    // Nothing accepted is lost, nothing refused is half-written: the inbox holds exactly the
    // accepted envelopes, and refusals for exceeding a rate leave no entries.
    let inbox = khm.exchange().log().inbox().unwrap();
    assert_eq!(inbox.len() as u64, accepted);
    assert_eq!(
        khm.exchange().log().head().unwrap().0,
        accepted,
        "rate refusals append nothing"
    );
    // IDN's own delivery still gets through once the flood stops.
    let idn_operator = focalpoint::cli::demo::example_client(dir.path(), "idn", "operator", &idn);
    let sent = focalpoint::cli::client::OperatorClient::new(&idn_operator)
        .unwrap()
        .send(example("idn/alert-trafficking-victim.json"), true)
        .await
        .unwrap();
    assert_eq!(sent.state, pb::DeliveryState::Delivered as i32);
    idn.stop().await.unwrap();
    khm.stop().await.unwrap();
}

/// A stream whose requests come from a channel, so it can be held open.
async fn open_stream(
    client: &mut pb::peer_service_client::PeerServiceClient<tonic::transport::Channel>,
) -> Result<
    (
        tokio::sync::mpsc::Sender<pb::DeliverRequest>,
        tonic::Streaming<pb::DeliverResponse>,
    ),
    tonic::Status,
> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let responses = client
        .deliver_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((tx, responses))
}

#[tokio::test]
async fn streams_are_limited_in_number_and_length() {
    let (_dir, _, khm) = khm_limits(Limits {
        max_streams_per_peer: 2,
        max_stream_messages: 3,
        ..Limits::default()
    });
    let khm = khm_alone(khm).await;
    let mut client = from_idn(&khm);
    let first = open_stream(&mut client).await.unwrap();
    let second = open_stream(&mut client).await.unwrap();
    let third = open_stream(&mut client).await.unwrap_err();
    assert_eq!(third.code(), Code::ResourceExhausted);
    assert!(third.message().contains("already has 2 streams open"));
    assert_eq!(limit_refusals(&khm, "streams"), 1);
    // Closing a stream gives its slot back.
    drop(first);
    let mut reopened = None;
    for _ in 0..100 {
        if let Ok(s) = open_stream(&mut client).await {
            reopened = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (tx, mut responses) = reopened.expect("a closed stream's slot is given back");
    // A stream carries at most 3 envelopes: the fourth ends it, after the first three are
    // answered and logged.
    for i in 0..5 {
        let _ = tx
            .send(deliver(&format!("IDN-20250430-ALERT-020{i}"), "stream"))
            .await;
    }
    for _ in 0..3 {
        let answer = responses.message().await.unwrap().unwrap();
        assert!(matches!(
            answer.outcome,
            Some(pb::deliver_response::Outcome::Receipt(_))
        ));
    }
    let end = responses.message().await.unwrap_err();
    assert_eq!(end.code(), Code::ResourceExhausted);
    assert!(end.message().contains("a stream may carry 3 envelopes"));
    assert_eq!(khm.exchange().log().inbox().unwrap().len(), 3);
    drop(second);
    khm.stop().await.unwrap();
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_and_slow_handshakes_dropped() {
    let (_dir, _, khm) = khm_limits(Limits {
        max_connections_per_peer: 2,
        handshake_timeout_secs: 1,
        ..Limits::default()
    });
    let khm = khm_alone(khm).await;
    let mut a = from_idn(&khm);
    let mut b = from_idn(&khm);
    a.cursor(pb::CursorRequest {}).await.unwrap();
    b.cursor(pb::CursorRequest {}).await.unwrap();
    let mut c = from_idn(&khm);
    assert!(c.cursor(pb::CursorRequest {}).await.is_err());
    assert!(limit_refusals(&khm, "connections") >= 1);
    // The two admitted connections are unharmed.
    b.cursor(pb::CursorRequest {}).await.unwrap();
    // A closed connection gives its slot back.
    drop(a);
    let mut admitted = false;
    for _ in 0..100 {
        let mut d = from_idn(&khm);
        if d.cursor(pb::CursorRequest {}).await.is_ok() {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(admitted, "a closed connection's slot is given back");
    // A client that never starts its handshake is disconnected.
    let mut idle = tokio::net::TcpStream::connect(khm.peer_address)
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(20), idle.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the node closes a connection whose handshake does not finish"
    );
    drop(b);
    khm.stop().await.unwrap();
}

/// A node as a real process whose file descriptors are capped at `descriptors` (soft and
/// hard), with its log lines in `log`.
fn serve_with_descriptors(
    config: &std::path::Path,
    data: &std::path::Path,
    descriptors: u32,
    log: &std::path::Path,
) -> (std::process::Child, String, String) {
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {descriptors} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_focalpoint"))
        .args(["serve", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .env("FOCALPOINT_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    ready(child)
}

/// Raises this process's soft limit on open files to its hard limit; returns the limit.
fn raise_own_descriptors() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(1 << 16);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(hard),
            maximum: limit.maximum,
        },
    )
    .unwrap();
    hard
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_leaves_the_operator_plane_answering() {
    const DESCRIPTORS: u32 = 400;
    let dir = tempfile::tempdir().unwrap();
    focalpoint::cli::demo::example_configs(dir.path()).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = closed.local_addr().unwrap();
    drop(closed);
    let config = idn_child_config(dir.path(), nowhere);
    let log = dir.path().join("idn-stderr.log");
    let (mut child, peer, operator) =
        serve_with_descriptors(&config, &dir.path().join("idn-data"), DESCRIPTORS, &log);
    // Several times what the node may hold open, so that without a bound on pending
    // handshakes it runs out of descriptors.
    let flood = 2_000.min(raise_own_descriptors().saturating_sub(200) as usize);
    assert!(
        flood > DESCRIPTORS as usize * 2,
        "this machine allows too few open files"
    );

    let mut client = focalpoint::cli::client::OperatorClient::new(&idn_client(
        dir.path(),
        "operator",
        &operator,
    ))
    .unwrap();
    client.log(1, 1).await.unwrap();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let peer_address = peer.clone();
    let flooding = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            for _ in 0..flood {
                let connect = tokio::net::TcpStream::connect(peer.as_str());
                if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(1), connect).await
                {
                    held.push(stream);
                }
            }
            // One more a second on, while the flood holds every slot: its refusal is the line
            // that reports how many the throttle left out, however fast the flood came.
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                tokio::net::TcpStream::connect(peer.as_str()),
            )
            .await;
            // Held open, never starting TLS, until the operator calls are done.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            held.len()
        })
    };
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    let began = std::time::Instant::now();
    while began.elapsed() < Duration::from_secs(4) {
        let t = std::time::Instant::now();
        match tokio::time::timeout(Duration::from_secs(2), client.log(1, 1)).await {
            Ok(Ok(_)) => latencies.push(t.elapsed()),
            Ok(Err(e)) => failures.push(e.to_string()),
            Err(_) => failures.push("no answer within 2 s".into()),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A new operator connection is accepted during the flood too.
    let mut fresh = focalpoint::cli::client::OperatorClient::new(&idn_client(
        dir.path(),
        "operator",
        &operator,
    ))
    .unwrap();
    let fresh_answer = tokio::time::timeout(Duration::from_secs(2), fresh.log(1, 1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let connected = flooding.await.unwrap();
    // Then connect and close, 300 times, with bytes that are not TLS: each is a refused
    // handshake, and they are logged a line a second. The flood's pending handshakes end
    // first, as the node reads their close.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..300 {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::TcpStream::connect(peer_address.as_str())
            .await
            .unwrap();
        let _ = stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
        let _ = stream.shutdown().await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.read_to_end(&mut answer)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().unwrap();
    child.wait().unwrap();

    assert!(failures.is_empty(), "operator calls failed: {failures:?}");
    assert!(matches!(fresh_answer, Ok(Ok(_))), "{fresh_answer:?}");
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    eprintln!(
        "{connected} idle connections; {} operator calls, p99 {p99:?}",
        latencies.len()
    );
    let lines = std::fs::read_to_string(&log).unwrap();
    // Logged with a count of the closures left out since the line before.
    let counted = lines
        .lines()
        .filter(|l| l.contains("too many pending"))
        .filter_map(|l| l.split("suppressed=").nth(1))
        .any(|n| n.trim().parse::<u64>().is_ok_and(|n| n > 0));
    assert!(
        counted,
        "the node did not report closing connections: {lines}"
    );
    let count = lines.lines().count();
    assert!(count < 200, "{count} log lines for one flood");
    let refused = lines
        .lines()
        .filter(|l| l.contains("tls handshake refused"))
        .count();
    assert!(
        (1..30).contains(&refused),
        "{refused} lines for 300 refused handshakes"
    );
}

#[tokio::test]
async fn a_catch_up_longer_than_the_peers_stream_limit_arrives_whole_over_several_streams() {
    let (dir, idn_config, khm_config) = khm_limits(Limits {
        max_stream_messages: 7,
        ..Limits::default()
    });
    // KHM tells a sender how many envelopes one stream may carry.
    let khm = khm_alone(khm_config.clone()).await;
    let answer = from_idn(&khm)
        .cursor(pb::CursorRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.max_stream_messages, 7);
    let khm_address = khm.peer_address;
    khm.stop().await.unwrap();

    // IDN queues 15 messages while KHM is away: two streams of 7, then one call for the last.
    let mut idn = BoundNode::bind(idn_config, None).await.unwrap();
    idn.set_peer_address("KHM".parse().unwrap(), &format!("https://{khm_address}"));
    let idn = idn.start().await.unwrap();
    let mut operator = focalpoint::cli::client::OperatorClient::new(
        &focalpoint::cli::demo::example_client(dir.path(), "idn", "operator", &idn),
    )
    .unwrap();
    let mut ids = Vec::new();
    for i in 0..15 {
        let mut e = example("idn/alert-trafficking-victim.json");
        e.message_id = format!("IDN-QUEUED-{i:02}");
        let sent = operator.send(e, false).await.unwrap();
        assert_eq!(
            sent.state,
            pb::DeliveryState::Pending as i32,
            "{}",
            sent.detail
        );
        ids.push(sent.message_id);
    }

    let mut khm_config = khm_config;
    khm_config.peer_listener.address = khm_address;
    let mut khm = BoundNode::bind(khm_config, None).await.unwrap();
    khm.set_peer_address(
        "IDN".parse().unwrap(),
        &format!("https://{}", idn.peer_address),
    );
    let khm = khm.start().await.unwrap();
    let last = idn.exchange().log().sent(&ids[14]).unwrap().unwrap();
    let state = idn
        .exchange()
        .wait_for_delivery(last, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(state, focalpoint::exchange::core::Delivery::Delivered);
    let log = khm.exchange().log();
    let received: Vec<String> = log
        .inbox()
        .unwrap()
        .into_iter()
        .map(|s| log.entry(s).unwrap().unwrap().entry.message_id)
        .collect();
    assert_eq!(received, ids, "every queued message, once, in order");
    assert_eq!(
        limit_refusals(&khm, "stream_length"),
        0,
        "no stream went past KHM's limit"
    );
    assert!(
        idn.exchange()
            .log()
            .pending("KHM".parse().unwrap())
            .unwrap()
            .is_empty()
    );
    idn.stop().await.unwrap();
    khm.stop().await.unwrap();
}
