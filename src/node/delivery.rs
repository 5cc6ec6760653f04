//! Store-and-forward delivery to one peer: every logged, unacknowledged message is sent in log
//! order until the peer's receipt is logged. While the peer is away the worker backs off
//! exponentially with jitter; a message the peer refuses for good is marked failed and not
//! retried blindly.
//!
//! Catch-up: whenever the worker (re)connects, it first asks the peer for the last of this
//! node's sequence numbers it holds ([`pb::CursorResponse`]) and sends everything after it as
//! well as everything still without a receipt; the peer deduplicates by message id, so the
//! exchange is effectively once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prost::Message;
use tokio::sync::watch;
use tokio_stream::StreamExt as _;
use tonic::Code;
use tonic::transport::Channel;

use crate::domain::model::CountryCode;
use crate::exchange::core::Exchange;
use crate::log::StoredEntry;
use crate::pb;
use crate::pb::deliver_response::Outcome;
use crate::pb::peer_service_client::PeerServiceClient;

const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Envelopes per streaming call when the peer does not say how many it takes.
const STREAM_MESSAGES: usize = 256;
/// The most envelopes per streaming call, whatever the peer takes: a stream holds one of the
/// peer's stream slots while it lasts.
const MAX_STREAM_MESSAGES: usize = 10_000;
/// Answers whose receipts are being logged at once while a stream goes on. Bounds memory, and
/// lets their log writes share flushes.
const SETTLING: usize = 512;
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
    let mut stream_messages = STREAM_MESSAGES;
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
                    Ok(()) => send(&exchange, &mut client, peer, &plan, stream_messages)
                        .await
                        .map(|_| ()),
                    Err(e) => Err(e),
                },
                Err(e) => Err(DeliveryError::from(e)),
            }
        } else {
            catch_up(&exchange, &mut client, peer)
                .await
                .map(|agreed| stream_messages = agreed)
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

/// What the peer holds from this node and how it takes more.
struct Agreed {
    /// The last of this node's sequences the peer holds.
    cursor: u64,
    /// Envelopes one stream to the peer may carry.
    stream_messages: usize,
}

/// Asks the peer what it holds from this node and how many envelopes a stream may carry.
async fn agree(client: &mut PeerServiceClient<Channel>) -> Result<Agreed, DeliveryError> {
    let answer = client.cursor(pb::CursorRequest {}).await?.into_inner();
    let stream_messages = match answer.max_stream_messages {
        0 => STREAM_MESSAGES,
        n => usize::try_from(n).map_or(MAX_STREAM_MESSAGES, |n| n.min(MAX_STREAM_MESSAGES)),
    };
    Ok(Agreed {
        cursor: answer.last_sender_sequence,
        stream_messages,
    })
}

/// Agrees with the peer on what it holds, then sends everything it lacks or has not
/// receipted. Returns how many envelopes a stream to the peer may carry.
async fn catch_up(
    exchange: &Exchange,
    client: &mut PeerServiceClient<Channel>,
    peer: CountryCode,
) -> Result<usize, DeliveryError> {
    let Agreed {
        cursor,
        stream_messages,
    } = agree(client).await?;
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
    send(exchange, client, peer, &plan, stream_messages).await?;
    Ok(stream_messages)
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
    let stream_messages = agree(client).await?.stream_messages;
    let mut plan = exchange.log().sent_to(peer, from, until)?;
    skip_redacted(exchange, peer, &mut plan)?;
    let settled = send(exchange, client, peer, &plan, stream_messages).await?;
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

/// Sends `plan` in order: one unary call for a single message, streams of at most
/// `stream_messages` for more. Stops at the first message that cannot be settled now (after
/// settling what was already sent).
async fn send(
    exchange: &Exchange,
    client: &mut PeerServiceClient<Channel>,
    peer: CountryCode,
    plan: &[u64],
    stream_messages: usize,
) -> Result<Vec<Settled>, DeliveryError> {
    let mut settled = Vec::with_capacity(plan.len());
    for part in plan.chunks(stream_messages.max(1)) {
        match part {
            [sequence] => settled.push(send_one(exchange, client, peer, *sequence).await?),
            _ => send_stream(exchange, client, peer, part, &mut settled).await?,
        }
    }
    Ok(settled)
}

/// Sends one message in a unary call and settles the answer.
async fn send_one(
    exchange: &Exchange,
    client: &mut PeerServiceClient<Channel>,
    peer: CountryCode,
    sequence: u64,
) -> Result<Settled, DeliveryError> {
    let Some((sent, envelope)) = exchange.log().entry_with_content(sequence)? else {
        return Err(DeliveryError::Missing(sequence));
    };
    exchange.record_attempt(sequence);
    let request = pb::DeliverRequest {
        envelope,
        sender_sequence: sequence,
    };
    let result = match client
        .deliver(request)
        .await
        .map(|r| r.into_inner().outcome)
    {
        Ok(Some(o)) => match settle(exchange, peer, &sent, o) {
            Ok(settling) => settling.await,
            Err(e) => Err(e),
        },
        Ok(None) => Err(DeliveryError::Protocol("answered without an outcome")),
        Err(status) if is_permanent(status.code()) => {
            let reason = DeliveryError::from(status).to_string();
            refuse(exchange, peer, sequence, &reason).await
        }
        Err(status) => Err(DeliveryError::from(status)),
    };
    if let Err(e) = &result {
        exchange.record_failure(sequence, e.to_string());
    }
    result
}

/// Sends `part` over one stream and settles each answer as it comes, in order.
///
/// Envelopes are read from the log as the transport takes them, and answers are settled while
/// later envelopes are still on their way, so neither node waits for the other between
/// batches. The receipts of answers in flight share flushes; at most [`SETTLING`] are awaited
/// at once. Sending stops at the first answer that cannot settle its message now, and what was
/// already sent is still settled.
async fn send_stream(
    exchange: &Exchange,
    client: &mut PeerServiceClient<Channel>,
    peer: CountryCode,
    part: &[u64],
    settled: &mut Vec<Settled>,
) -> Result<(), DeliveryError> {
    let feed = Arc::new(Feed::default());
    let requests = {
        let (exchange, feed) = (exchange.clone(), feed.clone());
        tokio_stream::iter(part.to_vec()).map_while(move |sequence| feed.next(&exchange, sequence))
    };
    let mut responses = match client.deliver_stream(requests).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            let e = DeliveryError::from(status);
            let taken = feed.stop();
            if taken == 0 {
                // The call was for the first message, whether or not it was read yet.
                exchange.record_attempt(part[0]);
            }
            for &sequence in &part[..taken.max(1)] {
                exchange.record_failure(sequence, e.to_string());
            }
            return Err(e);
        }
    };
    let mut first_error = None;
    let mut settling: VecDeque<(u64, Settling)> = VecDeque::with_capacity(SETTLING);
    let mut answered = 0;
    let ended = loop {
        // While the next answer is awaited, the oldest answer being settled is followed too:
        // its receipt is told (to those waiting for it, the metrics, the trace) once it is
        // durable, not only when a later answer makes room or the stream ends.
        // The front is taken inside the branch's own future: `select!` builds every branch's
        // future even when its condition is off.
        let next = tokio::select! {
            biased;
            done = async { (&mut settling.front_mut().expect("not empty").1).await },
                if !settling.is_empty() => Err(done),
            answer = responses.message() => Ok(answer),
        };
        let answer = match next {
            Ok(answer) => answer,
            Err(done) => {
                if let Some((sequence, _)) = settling.pop_front()
                    && let Some(e) = settled_one(exchange, sequence, done, settled)
                {
                    feed.stop();
                    first_error.get_or_insert(e);
                }
                continue;
            }
        };
        let outcome = match answer {
            Ok(Some(response)) => response.outcome,
            Ok(None) => break None,
            Err(status) => break Some(DeliveryError::from(status)),
        };
        let Some(sent) = feed.answered() else {
            break Some(DeliveryError::Protocol(
                "answered an envelope it was not sent",
            ));
        };
        let sequence = sent.entry.sequence;
        answered += 1;
        let started = outcome
            .ok_or(DeliveryError::Protocol("answered without an outcome"))
            .and_then(|o| settle(exchange, peer, &sent, o));
        let started = match started {
            Ok(started) => started,
            Err(e) => {
                // Nothing more is sent; what was is still settled.
                feed.stop();
                exchange.record_failure(sequence, e.to_string());
                first_error.get_or_insert(e);
                continue;
            }
        };
        settling.push_back((sequence, started));
        if settling.len() >= SETTLING
            && let Some((sequence, started)) = settling.pop_front()
            && let Some(e) = settle_one(exchange, sequence, started, settled).await
        {
            feed.stop();
            first_error.get_or_insert(e);
        }
    };
    // The transport takes no more requests, whatever ended the answers.
    let taken = feed.stop();
    if answered < taken {
        let reason = ended.as_ref().map_or_else(
            || "the peer ended its stream early".into(),
            ToString::to_string,
        );
        for &sequence in &part[answered..taken] {
            exchange.record_failure(sequence, reason.clone());
        }
    } else if let Some(e) = &ended {
        tracing::warn!(peer = %peer, error = %e, "the peer's stream ended badly after its last answer");
    }
    for (sequence, started) in settling {
        if let Some(e) = settle_one(exchange, sequence, started, settled).await {
            first_error.get_or_insert(e);
        }
    }
    if answered < part.len() && first_error.is_none() {
        first_error = Some(
            feed.unreadable()
                .or(ended)
                .unwrap_or(DeliveryError::Protocol("ended its stream early")),
        );
    }
    first_error.map_or(Ok(()), Err)
}

/// What a stream's requests have come to: read from the log one by one as the transport takes
/// them, until the sender stops them or one cannot be read.
#[derive(Default)]
struct Feed {
    state: Mutex<FeedState>,
}

#[derive(Default)]
struct FeedState {
    stopped: bool,
    /// Requests the transport took.
    taken: usize,
    /// The entries of the messages taken and not yet answered, in order: what their answers
    /// are checked against, without reading the log again.
    unanswered: VecDeque<StoredEntry>,
    /// Why the stream ended before its last request, if a message could not be read.
    unreadable: Option<DeliveryError>,
}

impl Feed {
    fn state(&self) -> std::sync::MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The request for `sequence`, or `None` to end the stream.
    fn next(&self, exchange: &Exchange, sequence: u64) -> Option<pb::DeliverRequest> {
        if self.state().stopped {
            return None;
        }
        let read = exchange.log().entry_with_content(sequence);
        let mut state = self.state();
        if state.stopped {
            return None;
        }
        let (sent, envelope) = match read {
            Ok(Some(held)) => held,
            Ok(None) => {
                state.unreadable = Some(DeliveryError::Missing(sequence));
                return None;
            }
            Err(e) => {
                state.unreadable = Some(e.into());
                return None;
            }
        };
        exchange.record_attempt(sequence);
        state.unanswered.push_back(sent);
        state.taken += 1;
        Some(pb::DeliverRequest {
            envelope,
            sender_sequence: sequence,
        })
    }

    /// The entry of the next message answered.
    fn answered(&self) -> Option<StoredEntry> {
        self.state().unanswered.pop_front()
    }

    /// Ends the stream after the requests already taken, and says how many those are.
    fn stop(&self) -> usize {
        let mut state = self.state();
        state.stopped = true;
        state.taken
    }

    /// Why the stream ended before its last request, if a message could not be read.
    fn unreadable(&self) -> Option<DeliveryError> {
        self.state().unreadable.take()
    }
}

/// Waits for one answer to settle; a failure is recorded against its message and returned.
async fn settle_one(
    exchange: &Exchange,
    sequence: u64,
    started: Settling,
    settled: &mut Vec<Settled>,
) -> Option<DeliveryError> {
    settled_one(exchange, sequence, started.await, settled)
}

/// Takes in what settling the answer for the message at `sequence` came to.
fn settled_one(
    exchange: &Exchange,
    sequence: u64,
    done: Result<Settled, DeliveryError>,
    settled: &mut Vec<Settled>,
) -> Option<DeliveryError> {
    match done {
        Ok(s) => {
            settled.push(s);
            None
        }
        Err(e) => {
            exchange.record_failure(sequence, e.to_string());
            Some(e)
        }
    }
}

/// One answer being settled: what it resolves to once its log write is durable.
type Settling = std::pin::Pin<Box<dyn Future<Output = Result<Settled, DeliveryError>> + Send>>;

/// Starts settling the peer's answer for the sent message `sent`: a receipt is checked and its
/// log write queued at once, so receipts started together share a flush. An answer that cannot
/// settle the message now (a receipt that does not check out, a refusal for now, a refusal
/// naming another message) is an error at once.
fn settle(
    exchange: &Exchange,
    peer: CountryCode,
    sent: &StoredEntry,
    outcome: Outcome,
) -> Result<Settling, DeliveryError> {
    let sequence = sent.entry.sequence;
    match outcome {
        Outcome::Receipt(receipt) => {
            let answered = receipt.receipt.clone();
            // A receipt that does not check out is not a delivery: keep the message pending
            // and let an operator look, rather than record a bad receipt.
            let refused = move |e: crate::exchange::error::ExchangeError| {
                tracing::error!(peer = %peer, sequence, error = %e, "peer's receipt refused");
                DeliveryError::from(e)
            };
            let written = exchange
                .accept_receipt_queued(peer, sent, receipt)
                .map_err(refused)?;
            let log = exchange.log().clone();
            Ok(Box::pin(async move {
                let Some(earlier) = written.await.map_err(refused)? else {
                    return Ok(Settled::Receipted {
                        already_held: false,
                    });
                };
                // The message had a receipt: the peer answered with that one again, or with
                // another for the same envelope.
                let already_held = log.content(earlier)?.is_some_and(|bytes| {
                    pb::SignedReceipt::decode(bytes.as_slice()).is_ok_and(|e| e.receipt == answered)
                });
                Ok(Settled::Receipted { already_held })
            }))
        }
        Outcome::Refusal(r)
            if !r.message_id.is_empty() && r.message_id != sent.entry.message_id =>
        {
            Err(DeliveryError::Protocol(
                "refused a message other than the one it was sent",
            ))
        }
        Outcome::Refusal(r) => {
            let code = Code::from_i32(r.code);
            if !is_permanent(code) {
                return Err(DeliveryError::Peer {
                    code,
                    message: r.reason,
                });
            }
            let exchange = exchange.clone();
            Ok(Box::pin(async move {
                refuse(
                    &exchange,
                    peer,
                    sequence,
                    &format!("{}: {}", code_name(code), r.reason),
                )
                .await
            }))
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
