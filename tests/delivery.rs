//! Store-and-forward: what is logged while the peer is away arrives, in order, once it returns.

mod common;

use common::*;
use focalpoint::node::BoundNode;
use focalpoint::pb;

#[tokio::test]
async fn messages_queued_while_the_peer_is_down_arrive_in_order_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (idn_config, khm_config) = focalpoint::demo::example_configs(dir.path()).unwrap();
    let (idn, khm) = focalpoint::demo::start_pair(idn_config, khm_config.clone())
        .await
        .unwrap();
    let khm_peer_address = khm.peer_address;
    khm.stop().await.unwrap();

    let mut operator = focalpoint::client::OperatorClient::new(&focalpoint::demo::example_client(
        dir.path(),
        "idn",
        "operator",
        &idn,
    ))
    .unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut e = example("idn/alert-trafficking-victim.json");
        e.message_id = format!("IDN-QUEUED-{i}");
        let r = operator.send(e, false).await.unwrap();
        assert_eq!(r.state, pb::DeliveryState::Pending as i32, "{}", r.detail);
        ids.push(r.message_id);
    }
    let outbox = operator.outbox(pb::OutboxRequest::default()).await.unwrap();
    assert!(
        outbox
            .messages
            .iter()
            .all(|m| m.state == pb::DeliveryState::Pending as i32)
    );

    // KHM comes back on the same address with the same data directory.
    let mut config = khm_config;
    config.peer_listener.address = khm_peer_address;
    let mut khm = BoundNode::bind(config, None).await.unwrap();
    khm.set_peer_address(
        "IDN".parse().unwrap(),
        &format!("https://{}", idn.peer_address),
    );
    let khm = khm.start().unwrap();

    // Waiting on the last one: delivery is in order, so all are then delivered.
    let last = idn
        .exchange()
        .log()
        .sent(ids.last().unwrap())
        .unwrap()
        .unwrap();
    let state = idn
        .exchange()
        .wait_for_delivery(last, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(state, focalpoint::exchange::Delivery::Delivered);
    let received: Vec<String> = khm
        .exchange()
        .log()
        .inbox()
        .unwrap()
        .into_iter()
        .map(|s| {
            khm.exchange()
                .log()
                .entry(s)
                .unwrap()
                .unwrap()
                .entry
                .message_id
        })
        .collect();
    assert_eq!(received, ids, "every queued message, once, in order");
    let outbox = operator.outbox(pb::OutboxRequest::default()).await.unwrap();
    for m in &outbox.messages {
        assert_eq!(m.state, pb::DeliveryState::Delivered as i32);
        assert!(m.attempts >= 1);
        assert!(m.last_error.is_empty(), "{}", m.last_error);
        assert!(m.receipt.is_some());
    }
    idn.stop().await.unwrap();
    khm.stop().await.unwrap();
}
