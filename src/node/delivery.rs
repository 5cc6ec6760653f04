//! Store-and-forward delivery to one peer: every logged, unacknowledged message is sent in log
//! order until the peer's receipt is logged. While the peer is away the worker backs off
//! exponentially with jitter; a message the peer refuses for good is marked failed and not
//! retried blindly.
//!
//! Catch-up: whenever the worker (re)connects, it first asks the peer for the last of this
//! node's sequence numbers it holds ([`pb::CursorResponse`]) and sends everything after it as
//! well as everything still without a receipt; the peer deduplicates by message id, so the
//! exchange is effectively once.

use std::time::Duration;

use prost::Message;
use tokio::sync::watch;
use tonic::Code;
use tonic::transport::Channel;

use crate::domain::model::CountryCode;
use crate::exchange::core::Exchange;
use crate::pb;
use crate::pb::deliver_response::Outcome;
use crate::pb::peer_service_client::PeerServiceClient;

const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Envelopes per streaming call; bounds memory during a long catch-up.
const STREAM_BATCH: usize = 256;
/// How often an idle worker re-agrees with the peer on what it holds (anti-entropy).
const RESYNC_EVERY: Duration = Duration::from_secs(600);

/// Why a delivery did not settle now: the node retries it later, or marks it failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The peer answered with a gRPC status, or the connection failed.
    #[error("{}: {message}", code_name(*.code))]
    Peer { code: Code, message: String },
    /// The peer's answer broke the protocol.
    #[error("the peer {0}")]
    Protocol(&'static str),
    /// A sent message's content is gone from this log.
    #[error("content of entry {0} is missing")]
    Missing(u64),
    /// This node's log.
    #[error(transparent)]
    Log(#[from] crate::log::LogError),
    /// The exchange refused the peer's answer (a receipt that does not check out).
    #[error(transparent)]
    Exchange(#[from] crate::exchange::error::ExchangeError),
}

impl From<tonic::Status> for DeliveryError {
    fn from(status: tonic::Status) -> Self {
        Self::Peer {
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}

/// A gRPC status code by its name in the gRPC specification: what a failed delivery's reason
/// says in the log, never another crate's `Debug` text.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

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

/// What became of one message sent to the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The peer's receipt is logged; `already_held` when it matches a receipt logged before.
    Receipted {
        /// The peer answered with the receipt this node already had.
        already_held: bool,
    },
    /// The peer refused it for good; it is marked failed.
    Refused,
}

/// Delivers messages for `peer` until `shutdown` turns true.
pub async fn run(
    exchange: Exchange,
    peer: CountryCode,
    mut channel: watch::Receiver<Channel>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(signal) = exchange.outbound_signal(peer) else {
        return;
    };
    let mut client = PeerServiceClient::new(channel.borrow_and_update().clone());
    let mut backoff = FIRST_BACKOFF;
    let mut synced = false;
    loop {
        if *shutdown.borrow() {
            return;
        }
        if channel.has_changed().unwrap_or(false) {
            // Reloaded certificates: connect afresh with them and agree on a cursor again.
            client = PeerServiceClient::new(channel.borrow_and_update().clone());
            synced = false;
        }
        let outcome = if synced {
            match exchange.log().pending(peer) {
                Ok(mut plan) => match fail_outside_agreement(&exchange, peer, &mut plan).await {
                    Ok(()) => send(&exchange, &mut client, peer, &plan).await.map(|_| ()),
                    Err(e) => Err(e),
                },
                Err(e) => Err(DeliveryError::from(e)),
            }
        } else {
            catch_up(&exchange, &mut client, peer).await
        };
        match outcome {
            Ok(()) => {
                synced = true;
                backoff = FIRST_BACKOFF;
                tokio::select! {
                    () = signal.notified() => {}
                    () = tokio::time::sleep(RESYNC_EVERY) => synced = false,
                    _ = shutdown.changed() => return,
                }
            }
            Err(reason) => {
                synced = false;
                tracing::info!(peer = %peer, reason = %reason, retry_in_ms = backoff.as_millis() as u64, "delivery deferred");
                let sleep = jitter(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                tokio::select! {
                    () = tokio::time::sleep(sleep) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

/// Agrees with the peer on what it holds, then sends everything it lacks or has not receipted.
async fn catch_up(
    exchange: &Exchange,
    client: &mut PeerServiceClient<Channel>,
    peer: CountryCode,
) -> Result<(), DeliveryError> {
    let cursor = client
        .cursor(pb::CursorRequest {})
        .await
        .map_err(DeliveryError::from)?
        .into_inner()
        .last_sender_sequence;
    let log = exchange.log();
    let mut plan = log.pending(peer)?;
    let after = log.sent_to(peer, cursor.saturating_add(1), u64::MAX)?;
    for sequence in &after {
        if !plan.contains(sequence) && log.failure(*sequence)?.is_none() {
            tracing::warn!(peer = %peer, sequence, cursor, "peer lacks a message it had receipted; re-sending");
        }
    }
    plan.extend(after);
    plan.sort_unstable();
    plan.dedup();
    let mut unsettled = Vec::with_capacity(plan.len());
    for sequence in plan {
        if log.failure(sequence)?.is_none() {
            unsettled.push(sequence);
        }
    }
    let mut plan = unsettled;
    skip_redacted(exchange, peer, &mut plan)?;
    fail_outside_agreement(exchange, peer, &mut plan).await?;
    if !plan.is_empty() {
        tracing::info!(peer = %peer, cursor, messages = plan.len(), "catching up");
    }
    send(exchange, client, peer, &plan).await.map(|_| ())
}

/// Re-sends the messages sent to `peer` with sequences in `from..=until`; the peer answers
/// with its original receipts for what it holds and stores what it lacks.
pub async fn replay(
    exchange: &Exchange,
    client: &mut PeerServiceClient<Channel>,
    peer: CountryCode,
    from: u64,
    until: u64,
) -> Result<pb::ReplayResponse, DeliveryError> {
    let mut plan = exchange.log().sent_to(peer, from, until)?;
    skip_redacted(exchange, peer, &mut plan)?;
    let settled = send(exchange, client, peer, &plan).await?;
    let mut report = pb::ReplayResponse {
        resent: plan.len() as u64,
        ..Default::default()
    };
    for s in settled {
        match s {
            Settled::Receipted { already_held: true } => report.already_held += 1,
            Settled::Receipted {
                already_held: false,
            } => report.newly_stored += 1,
            Settled::Refused => report.refused += 1,
        }
    }
    Ok(report)
}

/// Marks failed, and leaves out of `plan`, the messages the agreement with `peer` no longer
/// covers: logged before a reload narrowed it, they are not sent.
async fn fail_outside_agreement(
    exchange: &Exchange,
    peer: CountryCode,
    plan: &mut Vec<u64>,
) -> Result<(), DeliveryError> {
    let mut kept = Vec::with_capacity(plan.len());
    for &sequence in plan.iter() {
        match exchange.outside_agreement_now(peer, sequence)? {
            Some(reason) => exchange.mark_failed(peer, sequence, reason).await?,
            None => kept.push(sequence),
        }
    }
    *plan = kept;
    Ok(())
}

/// Leaves out of `plan` the messages whose content retention removed: they were settled before
/// they were redacted, and cannot be sent again.
fn skip_redacted(
    exchange: &Exchange,
    peer: CountryCode,
    plan: &mut Vec<u64>,
) -> Result<(), DeliveryError> {
    let log = exchange.log();
    let mut kept = Vec::with_capacity(plan.len());
    for &sequence in plan.iter() {
        if log.redaction_of(sequence)?.is_some() {
            tracing::warn!(peer = %peer, sequence, "not re-sending a redacted message");
        } else {
            kept.push(sequence);
        }
    }
    *plan = kept;
    Ok(())
}

/// Sends `plan` in order: one unary call for a single message, streams for more. Stops at the
/// first message that cannot be settled now.
async fn send(
    exchange: &Exchange,
    client: &mut PeerServiceClient<Channel>,
    peer: CountryCode,
    plan: &[u64],
) -> Result<Vec<Settled>, DeliveryError> {
    let mut settled = Vec::with_capacity(plan.len());
    // The previous batch's receipts are still being logged while the next batch is delivered,
    // so neither node waits for the other's flush.
    let mut previous = Vec::new();
    for batch in plan.chunks(STREAM_BATCH) {
        let mut requests = Vec::with_capacity(batch.len());
        for &sequence in batch {
            let envelope = exchange
                .log()
                .content(sequence)?
                .ok_or(DeliveryError::Missing(sequence))?;
            requests.push(pb::DeliverRequest {
                envelope,
                sender_sequence: sequence,
            });
        }
        for &sequence in batch {
            exchange.record_attempt(sequence);
        }
        if let [request] = requests.as_slice() {
            if let Some(e) = settle_all(exchange, std::mem::take(&mut previous), &mut settled).await
            {
                return Err(e);
            }
            let sequence = batch[0];
            let outcome = client
                .deliver(request.clone())
                .await
                .map(|r| r.into_inner().outcome);
            let result = match outcome {
                Ok(Some(o)) => settle(exchange, peer, sequence, o).await,
                Ok(None) => Err(DeliveryError::Protocol("answered without an outcome")),
                Err(status) if is_permanent(status.code()) => {
                    refuse(
                        exchange,
                        peer,
                        sequence,
                        &DeliveryError::from(status).to_string(),
                    )
                    .await
                }
                Err(status) => Err(DeliveryError::from(status)),
            };
            if let Err(e) = &result {
                exchange.record_failure(sequence, e.to_string());
            }
            settled.push(result?);
            continue;
        }
        let mut responses = match client.deliver_stream(tokio_stream::iter(requests)).await {
            Ok(r) => r.into_inner(),
            Err(s) => {
                let e = DeliveryError::from(s);
                for &sequence in batch {
                    exchange.record_failure(sequence, e.to_string());
                }
                let earlier = settle_all(exchange, previous, &mut settled).await;
                return Err(earlier.unwrap_or(e));
            }
        };
        // Every answer of the batch is read and its receipt checked and queued before any is
        // awaited, so the batch's receipts share a flush.
        let mut settling = Vec::with_capacity(batch.len());
        for &sequence in batch {
            let started = match responses.message().await {
                Ok(Some(pb::DeliverResponse { outcome: Some(o) })) => {
                    settle(exchange, peer, sequence, o)
                }
                Ok(_) => failed(DeliveryError::Protocol("ended its stream early")),
                Err(s) => failed(DeliveryError::from(s)),
            };
            settling.push((sequence, started));
        }
        if let Some(e) = settle_all(
            exchange,
            std::mem::replace(&mut previous, settling),
            &mut settled,
        )
        .await
        {
            // This batch is settled too; the earlier failure is the one reported.
            settle_all(exchange, previous, &mut settled).await;
            return Err(e);
        }
    }
    match settle_all(exchange, previous, &mut settled).await {
        Some(e) => Err(e),
        None => Ok(settled),
    }
}

/// Waits for every answer of a batch to settle, in order, and returns the first failure, if
/// any; every answer is settled before it is returned.
async fn settle_all(
    exchange: &Exchange,
    settling: Vec<(u64, Settling)>,
    settled: &mut Vec<Settled>,
) -> Option<DeliveryError> {
    let mut first_error = None;
    for (sequence, started) in settling {
        match started.await {
            Ok(s) => settled.push(s),
            Err(e) => {
                exchange.record_failure(sequence, e.to_string());
                first_error.get_or_insert(e);
            }
        }
    }
    first_error
}

/// One answer being settled: what it resolves to once its log write is durable.
type Settling = std::pin::Pin<Box<dyn Future<Output = Result<Settled, DeliveryError>> + Send>>;

fn failed(reason: DeliveryError) -> Settling {
    Box::pin(std::future::ready(Err(reason)))
}

/// Starts settling the peer's answer for the sent message at `sequence`: a receipt is checked
/// and its log write queued at once, so receipts started together share a flush.
fn settle(exchange: &Exchange, peer: CountryCode, sequence: u64, outcome: Outcome) -> Settling {
    match outcome {
        Outcome::Receipt(receipt) => {
            let log = exchange.log();
            let earlier = match log.receipt_for(sequence) {
                Ok(None) => None,
                Ok(Some(r)) => match log.content(r) {
                    Ok(content) => content,
                    Err(e) => return failed(e.into()),
                },
                Err(e) => return failed(e.into()),
            };
            let already_held = earlier.as_ref().is_some_and(|bytes| {
                pb::SignedReceipt::decode(bytes.as_slice())
                    .is_ok_and(|e| e.receipt == receipt.receipt)
            });
            // A receipt that does not check out is not a delivery: keep the message pending
            // and let an operator look, rather than record a bad receipt.
            let refused = move |e: crate::exchange::error::ExchangeError| {
                tracing::error!(peer = %peer, sequence, error = %e, "peer's receipt refused");
                DeliveryError::from(e)
            };
            match exchange.accept_receipt_queued(peer, sequence, receipt) {
                Ok(written) => Box::pin(async move {
                    written.await.map_err(refused)?;
                    Ok(Settled::Receipted { already_held })
                }),
                Err(e) => failed(refused(e)),
            }
        }
        Outcome::Refusal(r) => {
            let code = Code::from_i32(r.code);
            if is_permanent(code) {
                let exchange = exchange.clone();
                Box::pin(async move {
                    refuse(
                        &exchange,
                        peer,
                        sequence,
                        &format!("{}: {}", code_name(code), r.reason),
                    )
                    .await
                })
            } else {
                failed(DeliveryError::Peer {
                    code,
                    message: r.reason,
                })
            }
        }
    }
}

async fn refuse(
    exchange: &Exchange,
    peer: CountryCode,
    sequence: u64,
    reason: &str,
) -> Result<Settled, DeliveryError> {
    exchange
        .mark_failed(peer, sequence, format!("refused by {peer}: {reason}"))
        .await?;
    Ok(Settled::Refused)
}

/// Why a checkpoint could not be cosigned.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("the peer refused the checkpoint: {}", .0.message())]
    Refused(tonic::Status),
    #[error(transparent)]
    Exchange(#[from] crate::exchange::error::ExchangeError),
}

/// Has `peer` cosign this node's current log head, and logs the cosigned checkpoint.
pub async fn checkpoint(
    exchange: &Exchange,
    client: &mut PeerServiceClient<Channel>,
    peer: CountryCode,
) -> Result<(pb::Checkpoint, u64), CheckpointError> {
    let request = crate::exchange::checkpoint::prepare(exchange, peer).await?;
    let cosignature = client
        .cosign(request.clone())
        .await
        .map_err(CheckpointError::Refused)?
        .into_inner()
        .cosignature
        .ok_or_else(|| CheckpointError::Refused(tonic::Status::data_loss("no cosignature")))?;
    Ok(crate::exchange::checkpoint::accept(exchange, peer, request, cosignature).await?)
}

/// Cosigns a checkpoint with `peer` every `interval` until `shutdown` turns true.
pub async fn checkpoints(
    exchange: Exchange,
    peer: CountryCode,
    channel: watch::Receiver<Channel>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        let mut client = PeerServiceClient::new(channel.borrow().clone());
        if let Err(e) = checkpoint(&exchange, &mut client, peer).await {
            tracing::warn!(peer = %peer, error = %e, "checkpoint not cosigned");
        }
    }
}

fn jitter(d: Duration) -> Duration {
    let mut byte = [0u8; 1];
    // Without randomness, fall back to no jitter; the backoff still grows.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut byte);
    // Between 50% and 100% of the backoff.
    d / 2 + d * u32::from(byte[0]) / 512
}
