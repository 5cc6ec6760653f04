//! Store-and-forward: what is logged while the peer is away arrives, in order, once it returns.

mod common;

use common::*;
use focalpoint::node::server::BoundNode;
use focalpoint::pb;

#[tokio::test]
async fn messages_queued_while_the_peer_is_down_arrive_in_order_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (idn_config, khm_config) = focalpoint::cli::demo::example_configs(dir.path()).unwrap();
    let (idn, khm) = focalpoint::cli::demo::start_pair(idn_config, khm_config.clone())
        .await
        .unwrap();
    let khm_peer_address = khm.peer_address;
    khm.stop().await.unwrap();

    let mut operator = focalpoint::cli::client::OperatorClient::new(
        &focalpoint::cli::demo::example_client(dir.path(), "idn", "operator", &idn),
    )
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
    let khm = khm.start().await.unwrap();

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
    assert_eq!(state, focalpoint::exchange::core::Delivery::Delivered);
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

/// Restarts KHM on the address it had, with the data directory of its configuration.
async fn restart_khm(
    config: &focalpoint::node::config::NodeConfig,
    address: std::net::SocketAddr,
    idn: &focalpoint::node::server::RunningNode,
) -> focalpoint::node::server::RunningNode {
    let mut config = config.clone();
    config.peer_listener.address = address;
    let mut khm = BoundNode::bind(config, None).await.unwrap();
    khm.set_peer_address(
        "IDN".parse().unwrap(),
        &format!("https://{}", idn.peer_address),
    );
    khm.start().await.unwrap()
}

fn inbox_ids(node: &focalpoint::node::server::RunningNode) -> Vec<String> {
    let log = node.exchange().log();
    log.inbox()
        .unwrap()
        .into_iter()
        .map(|s| log.entry(s).unwrap().unwrap().entry.message_id)
        .collect()
}

fn alert(id: &str) -> pb::Envelope {
    let mut e = example("idn/alert-trafficking-victim.json");
    e.message_id = id.into();
    e
}

#[tokio::test]
async fn a_peer_restored_from_an_old_copy_is_caught_up_on_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let (idn_config, khm_config) = focalpoint::cli::demo::example_configs(dir.path()).unwrap();
    let khm_data = khm_config.data_dir.clone().unwrap();
    let (idn, khm) = focalpoint::cli::demo::start_pair(idn_config, khm_config.clone())
        .await
        .unwrap();
    let address = khm.peer_address;
    let mut operator = focalpoint::cli::client::OperatorClient::new(
        &focalpoint::cli::demo::example_client(dir.path(), "idn", "operator", &idn),
    )
    .unwrap();
    let delivered = pb::DeliveryState::Delivered as i32;
    assert_eq!(
        operator.send(alert("IDN-CU-1"), true).await.unwrap().state,
        delivered
    );
    khm.stop().await.unwrap();
    let backup = dir.path().join("khm-backup");
    copy_dir(&khm_data, &backup);

    let khm = restart_khm(&khm_config, address, &idn).await;
    for id in ["IDN-CU-2", "IDN-CU-3"] {
        assert_eq!(
            operator.send(alert(id), true).await.unwrap().state,
            delivered
        );
    }
    khm.stop().await.unwrap();
    // KHM's disk is restored from the copy: it no longer holds 2 and 3, which IDN holds
    // receipts for.
    std::fs::remove_dir_all(&khm_data).unwrap();
    copy_dir(&backup, &khm_data);
    let pending = operator.send(alert("IDN-CU-4"), false).await.unwrap();

    let khm = restart_khm(&khm_config, address, &idn).await;
    let state = idn
        .exchange()
        .wait_for_delivery(pending.log_sequence, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(state, focalpoint::exchange::core::Delivery::Delivered);
    assert_eq!(
        inbox_ids(&khm),
        ["IDN-CU-1", "IDN-CU-2", "IDN-CU-3", "IDN-CU-4"],
        "caught up, in order"
    );
    assert!(khm.exchange().log().verify().is_ok());
    assert!(idn.exchange().log().verify().is_ok());
    idn.stop().await.unwrap();
    khm.stop().await.unwrap();
}

#[tokio::test]
async fn replay_returns_original_receipts_and_stores_nothing_twice() {
    let pair = start_pair().await;
    let mut operator = pair.client("idn", "operator");
    for id in ["IDN-RP-1", "IDN-RP-2", "IDN-RP-3"] {
        let r = operator.send(alert(id), true).await.unwrap();
        assert_eq!(r.state, pb::DeliveryState::Delivered as i32);
    }
    let khm_size = pair.khm.exchange().log().head().unwrap().0;
    let idn_size = pair.idn.exchange().log().head().unwrap().0;
    let report = operator.replay("KHM", 1, 0).await.unwrap();
    assert_eq!(report.resent, 3);
    assert_eq!(report.already_held, 3);
    assert_eq!(report.newly_stored + report.refused, 0);
    assert_eq!(pair.khm.exchange().log().head().unwrap().0, khm_size);
    assert_eq!(pair.idn.exchange().log().head().unwrap().0, idn_size);
    // A range: only the second.
    let report = operator.replay("KHM", 2, 2).await.unwrap();
    assert_eq!(
        report.resent, 0,
        "sequence 2 is IDN-RP-1's receipt, not a sent message"
    );
    // Auditors may not replay.
    assert!(
        pair.client("idn", "auditor")
            .replay("KHM", 1, 0)
            .await
            .is_err()
    );
    pair.stop().await;
}

#[tokio::test]
async fn a_message_the_peer_refuses_for_good_is_marked_failed_and_not_retried() {
    let pair = start_pair().await;
    // KHM already holds IDN-FAIL-1 with other content (delivered straight to its peer plane).
    let (cert, key) = example_cert("idn", "node");
    let mut peer = peer_client(&pair.khm, "khm", cert, key);
    peer.deliver(pb::DeliverRequest {
        envelope: idn_alert_bytes("IDN-FAIL-1", "another text"),
        ..Default::default()
    })
    .await
    .unwrap();

    let mut operator = pair.client("idn", "operator");
    let r = operator.send(alert("IDN-FAIL-1"), true).await.unwrap();
    assert_eq!(r.state, pb::DeliveryState::Failed as i32);
    assert!(r.detail.contains("ALREADY_EXISTS"), "{}", r.detail);
    // Later traffic flows past it, and it is not sent again.
    let ok = operator.send(alert("IDN-FAIL-2"), true).await.unwrap();
    assert_eq!(ok.state, pb::DeliveryState::Delivered as i32);
    let outbox = operator.outbox(pb::OutboxRequest::default()).await.unwrap();
    let failed = &outbox.messages[0];
    assert_eq!(failed.state, pb::DeliveryState::Failed as i32);
    assert_eq!(failed.attempts, 1);
    assert!(
        failed.detail.contains("refused by KHM"),
        "{}",
        failed.detail
    );
    let log = pair.idn.exchange().log();
    let failure = log.entry(log.head().unwrap().0 - 2).unwrap().unwrap();
    assert_eq!(failure.kind(), pb::EntryKind::DeliveryFailed);
    assert_eq!(failure.entry.refers_to, r.log_sequence);
    pair.stop().await;
}

/// A peer that answers every envelope with a refusal for good that names another message.
struct Misaddressed;

type Answers = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<pb::DeliverResponse, tonic::Status>> + Send>,
>;

fn misaddressed_refusal() -> pb::DeliverResponse {
    pb::DeliverResponse {
        outcome: Some(pb::deliver_response::Outcome::Refusal(pb::Refusal {
            message_id: "IDN-SOMETHING-ELSE".into(),
            code: tonic::Code::InvalidArgument as i32,
            reason: "not this one".into(),
        })),
    }
}

#[tonic::async_trait]
impl pb::peer_service_server::PeerService for Misaddressed {
    async fn deliver(
        &self,
        _: tonic::Request<pb::DeliverRequest>,
    ) -> Result<tonic::Response<pb::DeliverResponse>, tonic::Status> {
        Ok(tonic::Response::new(misaddressed_refusal()))
    }
    type DeliverStreamStream = Answers;
    async fn deliver_stream(
        &self,
        request: tonic::Request<tonic::Streaming<pb::DeliverRequest>>,
    ) -> Result<tonic::Response<Answers>, tonic::Status> {
        use tokio_stream::StreamExt as _;
        let answers = request.into_inner().map(|_| Ok(misaddressed_refusal()));
        Ok(tonic::Response::new(Box::pin(answers)))
    }
    async fn cursor(
        &self,
        _: tonic::Request<pb::CursorRequest>,
    ) -> Result<tonic::Response<pb::CursorResponse>, tonic::Status> {
        Ok(tonic::Response::new(pb::CursorResponse::default()))
    }
    async fn cosign(
        &self,
        _: tonic::Request<pb::CosignRequest>,
    ) -> Result<tonic::Response<pb::CosignResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not a node"))
    }
}

/// [`Misaddressed`] serving under KHM's node certificate, admitting IDN's nodes.
async fn misaddressed_khm() -> std::net::SocketAddr {
    fake_khm(Misaddressed).await
}

/// `service` serving under KHM's node certificate, admitting IDN's nodes.
async fn fake_khm(service: impl pb::peer_service_server::PeerService) -> std::net::SocketAddr {
    use focalpoint::crypto::x509;
    use focalpoint::node::tls;
    let base = repo().join("certs-example");
    let idn_ca = base.join("khm/peers/idn-ca.pem");
    let admission = tls::Admission::Peers(
        [(
            "IDN".parse().unwrap(),
            tls::Anchor {
                path: idn_ca.clone(),
                certs: x509::load_certs(&idn_ca).unwrap(),
                revoked: focalpoint::crypto::revocation::Revocations::none(),
            },
        )]
        .into(),
    );
    let config = tls::server_config(
        &admission,
        x509::load_certs(&base.join("khm/node.pem")).unwrap(),
        x509::load_key(&base.join("khm/node.key")).unwrap(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (keep, config) = tokio::sync::watch::channel(config);
    let incoming = tls::incoming(
        listener,
        config,
        tls::ListenerOptions::new("peer", &focalpoint::node::limits::Limits::default()),
        std::sync::Arc::default(),
        None,
    );
    tokio::spawn(async move {
        let _keep = keep;
        tonic::transport::Server::builder()
            .add_service(pb::peer_service_server::PeerServiceServer::new(service))
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    address
}

#[tokio::test]
async fn a_refusal_naming_another_message_fails_nothing() {
    let khm = misaddressed_khm().await;
    let dir = tempfile::tempdir().unwrap();
    let (idn_config, _) = focalpoint::cli::demo::example_configs(dir.path()).unwrap();
    let mut idn = BoundNode::bind(idn_config, None).await.unwrap();
    idn.set_peer_address("KHM".parse().unwrap(), &format!("https://{khm}"));
    let idn = idn.start().await.unwrap();
    let mut operator = focalpoint::cli::client::OperatorClient::new(
        &focalpoint::cli::demo::example_client(dir.path(), "idn", "operator", &idn),
    )
    .unwrap();
    // One message alone goes in a single call, several in a stream: both are answered with a
    // refusal for good that names another message.
    for id in [
        "IDN-MISADDRESSED-1",
        "IDN-MISADDRESSED-2",
        "IDN-MISADDRESSED-3",
    ] {
        let sent = operator.send(alert(id), false).await.unwrap();
        assert_eq!(
            sent.state,
            pb::DeliveryState::Pending as i32,
            "{}",
            sent.detail
        );
    }
    let mut outbox = Vec::new();
    for _ in 0..200 {
        outbox = operator
            .outbox(pb::OutboxRequest::default())
            .await
            .unwrap()
            .messages;
        // An attempt clears the last one's error as it starts: wait for a moment where each
        // message's latest attempt has ended.
        if outbox
            .iter()
            .all(|m| m.attempts > 0 && !m.last_error.is_empty())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        outbox.iter().all(|m| m.attempts > 0),
        "IDN tried to deliver each"
    );
    for m in &outbox {
        assert_eq!(
            m.state,
            pb::DeliveryState::Pending as i32,
            "{}",
            m.last_error
        );
    }
    let errors: Vec<&str> = outbox.iter().map(|m| m.last_error.as_str()).collect();
    assert!(
        errors
            .iter()
            .all(|e| e.contains("refused a message other than the one it was sent")),
        "{errors:?}"
    );
    // Nothing was marked failed: a misaddressed refusal is not the peer's word on this message.
    let log = idn.exchange().log();
    let failures = log
        .range(1, usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind() == pb::EntryKind::DeliveryFailed)
        .count();
    assert_eq!(failures, 0);
    idn.stop().await.unwrap();
}

/// A KHM that passes what it is sent on to the real KHM node and answers with its answers, but
/// only once it is opened (before, it is unavailable), and that does not end a stream: once it
/// has answered every envelope of one, it keeps it open and says nothing more until released.
struct Stalling {
    khm: pb::peer_service_client::PeerServiceClient<tonic::transport::Channel>,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    released: tokio::sync::watch::Receiver<bool>,
}

impl Stalling {
    fn opened(&self) -> Result<(), tonic::Status> {
        if self.open.load(std::sync::atomic::Ordering::Acquire) {
            Ok(())
        } else {
            Err(tonic::Status::unavailable("not open yet"))
        }
    }
}

#[tonic::async_trait]
impl pb::peer_service_server::PeerService for Stalling {
    async fn deliver(
        &self,
        request: tonic::Request<pb::DeliverRequest>,
    ) -> Result<tonic::Response<pb::DeliverResponse>, tonic::Status> {
        self.opened()?;
        self.khm.clone().deliver(request.into_inner()).await
    }
    type DeliverStreamStream = Answers;
    async fn deliver_stream(
        &self,
        request: tonic::Request<tonic::Streaming<pb::DeliverRequest>>,
    ) -> Result<tonic::Response<Answers>, tonic::Status> {
        self.opened()?;
        let mut khm = self.khm.clone();
        let mut released = self.released.clone();
        let mut incoming = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(async move {
            while let Ok(Some(request)) = incoming.message().await {
                let answer = khm.deliver(request).await.map(tonic::Response::into_inner);
                if tx.send(answer).await.is_err() {
                    return;
                }
            }
            // Every envelope is answered: the stream stays open, silent.
            tokio::select! {
                () = tx.closed() => {}
                _ = released.wait_for(|r| *r) => {}
            }
        });
        Ok(tonic::Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
    async fn cursor(
        &self,
        request: tonic::Request<pb::CursorRequest>,
    ) -> Result<tonic::Response<pb::CursorResponse>, tonic::Status> {
        self.opened()?;
        self.khm.clone().cursor(request.into_inner()).await
    }
    async fn cosign(
        &self,
        _: tonic::Request<pb::CosignRequest>,
    ) -> Result<tonic::Response<pb::CosignResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not a node"))
    }
}

/// Messages delivered in a stream are told delivered (to `send --wait`, the metrics and the
/// trace) once their receipts are logged, even while the peer keeps the stream open after its
/// last answer.
#[tokio::test]
async fn a_receipt_in_a_stream_is_told_while_the_peer_keeps_the_stream_open() {
    let dir = tempfile::tempdir().unwrap();
    let (idn_config, khm_config) = focalpoint::cli::demo::example_configs(dir.path()).unwrap();
    let khm = BoundNode::bind(khm_config, None)
        .await
        .unwrap()
        .start()
        .await
        .unwrap();
    let (cert, key) = example_cert("idn", "node");
    let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (release, released) = tokio::sync::watch::channel(false);
    let stalling = fake_khm(Stalling {
        khm: peer_client(&khm, "khm", cert, key),
        open: open.clone(),
        released,
    })
    .await;
    let mut idn = BoundNode::bind(idn_config, None).await.unwrap();
    idn.set_peer_address("KHM".parse().unwrap(), &format!("https://{stalling}"));
    let idn = idn.start().await.unwrap();
    let mut operator = focalpoint::cli::client::OperatorClient::new(
        &focalpoint::cli::demo::example_client(dir.path(), "idn", "operator", &idn),
    )
    .unwrap();
    // Three messages wait while KHM is unavailable; they then go in one stream.
    let mut last = 0;
    for i in 0..3 {
        let sent = operator
            .send(alert(&format!("IDN-STALLED-{i}")), false)
            .await
            .unwrap();
        assert_eq!(sent.state, pb::DeliveryState::Pending as i32);
        last = sent.log_sequence;
    }
    let exchange = idn.exchange().clone();
    let waiting = tokio::spawn(async move {
        exchange
            .wait_for_delivery(last, std::time::Duration::from_secs(60))
            .await
    });
    // The waiter has found the message pending before KHM opens.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!waiting.is_finished());
    open.store(true, std::sync::atomic::Ordering::Release);
    let state = waiting.await.unwrap().unwrap();
    assert_eq!(
        state,
        focalpoint::exchange::core::Delivery::Delivered,
        "told before the stream ends"
    );
    assert_eq!(inbox_ids(&khm).len(), 3);
    release.send_replace(true);
    idn.stop().await.unwrap();
    khm.stop().await.unwrap();
}
