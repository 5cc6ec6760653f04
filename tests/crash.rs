//! Crash safety: the sending node is a real child process, SIGKILLed again and again in the
//! middle of a stream of sends. Every send it acknowledged reaches the peer's log exactly once,
//! and its own log verifies after every kill.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use focalpoint::cli::client::OperatorClient;
use focalpoint::log::{Durability, ExchangeLog};
use focalpoint::node::server::BoundNode;
use focalpoint::pb;

const ROUNDS: usize = 10;
const ACKS_PER_ROUND: usize = 15;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_sends_survive_repeated_sigkill_and_arrive_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_, khm_config) = focalpoint::cli::demo::example_configs(dir.path()).unwrap();
    let khm = BoundNode::bind(khm_config, None).await.unwrap();
    let idn_toml = idn_child_config(dir.path(), khm.peer_address());
    let khm = khm.start().await.unwrap();
    let data = dir.path().join("idn-data");
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut verified_sizes = Vec::new();

    for round in 0..ROUNDS {
        let (mut child, _, operator) = serve(&idn_toml, &data);
        let mut client =
            OperatorClient::new(&idn_client(dir.path(), "operator", &operator)).unwrap();
        let acks = acknowledged.clone();
        let sender = tokio::spawn(async move {
            for i in 0.. {
                let mut e = example("idn/alert-trafficking-victim.json");
                e.message_id = format!("IDN-CRASH-{round}-{i}");
                match client.send(e, false).await {
                    Ok(r) => acks.lock().unwrap().push(r.message_id),
                    Err(_) => return,
                }
            }
        });
        // Kill once this round has had its acknowledgements, with sends still in flight.
        let target = (round + 1) * ACKS_PER_ROUND;
        while acknowledged.lock().unwrap().len() < target {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        sender.await.unwrap();

        // Offline, between restarts: the chain is whole and holds every acknowledged send.
        let log = ExchangeLog::open(&data, Durability::Flush).unwrap();
        let size = log
            .verify()
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        for id in acknowledged.lock().unwrap().iter() {
            assert!(log.sent(id).unwrap().is_some(), "round {round}: {id} lost");
        }
        verified_sizes.push(size);
    }
    assert!(
        verified_sizes.windows(2).all(|w| w[0] <= w[1]),
        "the log never shrinks"
    );

    // One last start lets delivery drain the outbox.
    let (mut child, _, _) = serve(&idn_toml, &data);
    let expected = acknowledged.lock().unwrap().clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let received = loop {
        let log = khm.exchange().log();
        let mut counts = BTreeMap::<String, usize>::new();
        for e in log.range(1, usize::MAX).unwrap() {
            if e.kind() == pb::EntryKind::MessageReceived {
                *counts.entry(e.entry.message_id).or_default() += 1;
            }
        }
        if expected.iter().all(|id| counts.contains_key(id)) {
            break counts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} acknowledged messages arrived",
            expected
                .iter()
                .filter(|id| counts.contains_key(*id))
                .count(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        received.values().all(|n| *n == 1),
        "exactly once: {received:?}"
    );
    assert!(expected.len() >= ROUNDS * ACKS_PER_ROUND);
    assert!(khm.exchange().log().verify().is_ok());
    child.kill().unwrap();
    child.wait().unwrap();
    khm.stop().await.unwrap();
}
