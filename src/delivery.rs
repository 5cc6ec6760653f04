//! Store-and-forward delivery to one peer: every logged, unacknowledged message is sent in log
//! order until the peer's receipt is logged. While the peer is away the worker backs off
//! exponentially with jitter; a message the peer refuses for good is marked failed and not
//! retried blindly.

use std::time::Duration;

use tokio::sync::watch;
use tonic::Code;
use tonic::transport::Channel;

use crate::exchange::Exchange;
use crate::model::CountryCode;
use crate::pb;
use crate::pb::peer_service_client::PeerServiceClient;

const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Whether the peer's answer means "this message will never be accepted".
fn is_permanent(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::PermissionDenied
            | Code::AlreadyExists
            | Code::FailedPrecondition
    )
}

/// Delivers messages for `peer` until `shutdown` turns true.
pub async fn run(
    exchange: Exchange,
    peer: CountryCode,
    channel: Channel,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(signal) = exchange.outbound_signal(peer) else {
        return;
    };
    let mut client = PeerServiceClient::new(channel);
    let mut backoff = FIRST_BACKOFF;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let pending = match exchange.log().pending(peer) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(peer = %peer, error = %e, "cannot read the outbox");
                Vec::new()
            }
        };
        let mut stalled = false;
        for sequence in pending {
            let outcome = deliver_one(&exchange, &mut client, peer, sequence).await;
            exchange.record_attempt(sequence, outcome.as_ref().err().cloned());
            match outcome {
                Ok(()) => backoff = FIRST_BACKOFF,
                Err(reason) => {
                    tracing::info!(peer = %peer, sequence, reason, retry_in_ms = backoff.as_millis() as u64, "delivery deferred");
                    stalled = true;
                    break;
                }
            }
            if *shutdown.borrow() {
                return;
            }
        }
        if stalled {
            let sleep = jitter(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                _ = shutdown.changed() => return,
            }
        } else {
            tokio::select! {
                () = signal.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Sends one message and logs the outcome. `Err` means "try again later".
async fn deliver_one(
    exchange: &Exchange,
    client: &mut PeerServiceClient<Channel>,
    peer: CountryCode,
    sequence: u64,
) -> Result<(), String> {
    let envelope = exchange
        .log()
        .content(sequence)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("content of entry {sequence} is missing"))?;
    let outcome = client
        .deliver(pb::DeliverRequest { envelope })
        .await
        .map(|r| r.into_inner().outcome);
    match outcome {
        Ok(Some(pb::deliver_response::Outcome::Receipt(receipt))) => {
            match exchange.accept_receipt(peer, sequence, receipt).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    // A receipt that does not check out is not a delivery: keep it pending and
                    // let an operator look, rather than record a bad receipt.
                    tracing::error!(peer = %peer, sequence, error = %e, "peer's receipt refused");
                    Err(e.to_string())
                }
            }
        }
        Ok(Some(pb::deliver_response::Outcome::Refusal(r))) => {
            let reason = format!("refused by {peer}: {}", r.reason);
            exchange
                .mark_failed(peer, sequence, reason)
                .await
                .map_err(|e| e.to_string())
        }
        Ok(None) => Err("peer answered without an outcome".into()),
        Err(status) if is_permanent(status.code()) => {
            let reason = format!(
                "refused by {peer}: {:?}: {}",
                status.code(),
                status.message()
            );
            exchange
                .mark_failed(peer, sequence, reason)
                .await
                .map_err(|e| e.to_string())
        }
        Err(status) => Err(format!("{:?}: {}", status.code(), status.message())),
    }
}

fn jitter(d: Duration) -> Duration {
    let mut byte = [0u8; 1];
    // Without randomness, fall back to no jitter; the backoff still grows.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut byte);
    // Between 50% and 100% of the backoff.
    d / 2 + d * u32::from(byte[0]) / 512
}
