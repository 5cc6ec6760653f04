//! A node is a real child process: killed and restarted, it keeps its log and its inbox.

mod common;

use common::*;
use focalpoint::cli::client::OperatorClient;
use focalpoint::log::{Durability, ExchangeLog};
use focalpoint::node::server::BoundNode;
use focalpoint::pb;

#[tokio::test]
async fn a_killed_and_restarted_node_keeps_its_log_and_inbox() {
    let dir = tempfile::tempdir().unwrap();
    let (idn_config, khm_config) = focalpoint::cli::demo::example_configs(dir.path()).unwrap();
    // KHM runs in this process; IDN is a child process on ephemeral ports.
    let idn_toml = dir.path().join("idn/node.toml");
    let text = read(&idn_toml)
        .replace("127.0.0.1:7443", "127.0.0.1:0")
        .replace("127.0.0.1:7444", "127.0.0.1:0");
    let mut khm = BoundNode::bind(khm_config, None).await.unwrap();
    let text = text.replace(
        "https://127.0.0.1:7543",
        &format!("https://{}", khm.peer_address()),
    );
    std::fs::write(&idn_toml, text).unwrap();
    drop(idn_config);
    let data = dir.path().join("idn-data");
    let (mut child, idn_peer, idn_operator) = serve(&idn_toml, &data);
    khm.set_peer_address("IDN".parse().unwrap(), &format!("https://{idn_peer}"));
    let khm = khm.start().await.unwrap();

    let mut khm_operator = OperatorClient::new(&focalpoint::cli::demo::example_client(
        dir.path(),
        "khm",
        "operator",
        &khm,
    ))
    .unwrap();
    for file in [
        "khm/fraud-notice-poipet.json",
        "khm/statistics-2025-jan-apr.json",
    ] {
        let r = khm_operator
            .send_or_push(example(file), true)
            .await
            .unwrap();
        assert_eq!(r.state, pb::DeliveryState::Delivered as i32, "{}", r.detail);
    }
    let idn_client = |operator: &str| idn_client(dir.path(), "operator", operator);
    let mut idn = OperatorClient::new(&idn_client(&idn_operator)).unwrap();
    let before_inbox = idn.inbox(pb::InboxRequest::default()).await.unwrap();
    let before_log = idn.log(1, 1000).await.unwrap();
    assert_eq!(before_inbox.messages.len(), 2);

    // SIGKILL: no chance to flush anything that was not already durable.
    child.kill().unwrap();
    child.wait().unwrap();

    let (mut child, _, idn_operator) = serve(&idn_toml, &data);
    let mut idn = OperatorClient::new(&idn_client(&idn_operator)).unwrap();
    let after_inbox = idn.inbox(pb::InboxRequest::default()).await.unwrap();
    let after_log = idn.log(1, 1000).await.unwrap();
    assert_eq!(after_inbox, before_inbox);
    assert_eq!(after_log.size, before_log.size);
    assert_eq!(after_log.head_hash, before_log.head_hash);

    child.kill().unwrap();
    child.wait().unwrap();
    // Offline, the chain verifies, and the views rebuilt from it equal the views it had.
    let views = {
        let log = ExchangeLog::open(&data, Durability::Flush).unwrap();
        assert_eq!(log.verify().unwrap(), before_log.size);
        log.views().unwrap()
    };
    let rebuild = std::process::Command::new(env!("CARGO_BIN_EXE_focalpoint"))
        .args(["replay", "--rebuild", "--config"])
        .arg(&idn_toml)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(rebuild.status.success(), "{rebuild:?}");
    let log = ExchangeLog::open(&data, Durability::Flush).unwrap();
    assert_eq!(log.views().unwrap(), views);
    khm.stop().await.unwrap();
}
