//! gRPC adapters for both planes. Handlers read the caller's identity from its verified
//! certificate, convert, call the [`Exchange`], and map the error. Nothing else happens here.

use std::pin::Pin;

use prost::Message;
use tokio::sync::watch;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::domain::model::{CountryCode, Identity, Role};
use crate::exchange::cases::{CaseStatus, CasesFilter};
use crate::exchange::core::{
    Attempts, Delivery, Exchange, InboxFilter, QueuedReceipt, StoredMessage,
};
use crate::exchange::error::ExchangeError;
use crate::exchange::search::Query;
use crate::log::StoredEntry;
use crate::node::limits::Limiter;
use crate::pb;
use crate::pb::operator_service_server::OperatorService;
use crate::pb::peer_service_server::PeerService;

impl From<ExchangeError> for Status {
    fn from(e: ExchangeError) -> Self {
        match &e {
            ExchangeError::Invalid(_) | ExchangeError::BadRequest(_) => {
                tracing::info!(error = %e, "request refused");
                Self::invalid_argument(e.to_string())
            }
            ExchangeError::Forbidden(_) => {
                tracing::warn!(error = %e, "request refused");
                Self::permission_denied(e.to_string())
            }
            ExchangeError::Conflict(_) => {
                tracing::warn!(error = %e, "conflicting duplicate refused");
                Self::already_exists(e.to_string())
            }
            ExchangeError::UnknownPeer(_) => {
                tracing::info!(error = %e, "request refused");
                Self::failed_precondition(e.to_string())
            }
            ExchangeError::NotFound(_) => Self::not_found(e.to_string()),
            ExchangeError::Inconsistent(_) => {
                tracing::warn!(error = %e, "inconsistent checkpoint refused");
                Self::failed_precondition(e.to_string())
            }
            ExchangeError::Receipt(_) => {
                tracing::warn!(error = %e, "receipt refused");
                Self::invalid_argument(e.to_string())
            }
            ExchangeError::Internal { .. } => {
                // Ours: the detail stays in this node's log.
                tracing::error!(error = %e, cause = ?std::error::Error::source(&e).map(ToString::to_string), "internal failure");
                Self::internal("an internal failure; this node's log has the detail")
            }
            ExchangeError::Log(inner) => {
                // Ours, not the caller's: log the detail, tell the caller only that it failed.
                tracing::error!(error = %inner, "exchange log failure");
                Self::unavailable(
                    "the exchange log is unavailable (a storage failure, or the node is stopping); retry later",
                )
            }
        }
    }
}

/// The verified caller of an RPC. The TLS layer has already refused anything else; the
/// identity was read from the verified leaf when the connection's handshake ended
/// ([`crate::node::tls::Caller`]).
fn caller<T>(request: &Request<T>) -> Result<Identity, Status> {
    match request
        .extensions()
        .get::<crate::node::tls::Caller>()
        .and_then(crate::node::tls::Caller::identity)
    {
        Some(Ok(identity)) => Ok(identity.clone()),
        Some(Err(why)) => Err(Status::unauthenticated(why.to_owned())),
        None => Err(Status::unauthenticated("a client certificate is required")),
    }
}

fn peer_country<T>(request: &Request<T>) -> Result<CountryCode, Status> {
    let identity = caller(request)?;
    if identity.role != Role::Node {
        return Err(Status::permission_denied("only nodes may deliver"));
    }
    Ok(identity.country)
}

/// The peer plane.
#[derive(Debug, Clone)]
pub struct PeerApi {
    exchange: Exchange,
    limiter: Limiter,
}

impl PeerApi {
    /// The peer plane over `exchange`, within `limiter`'s limits.
    pub fn new(exchange: Exchange, limiter: Limiter) -> Self {
        Self { exchange, limiter }
    }
}

/// What the stream's reader hands its answerer, in order.
enum Queued {
    /// An envelope's log write (or refusal), with its message id, and its share of the bytes
    /// the stream may have in flight, given back once it is answered.
    Envelope(
        String,
        Result<QueuedReceipt, ExchangeError>,
        tokio::sync::OwnedSemaphorePermit,
    ),
    /// The stream ends here with this status, after everything before it is answered.
    End(Status),
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<pb::DeliverResponse, Status>> + Send>>;

#[tonic::async_trait]
impl PeerService for PeerApi {
    async fn deliver(
        &self,
        request: Request<pb::DeliverRequest>,
    ) -> Result<Response<pb::DeliverResponse>, Status> {
        let peer = peer_country(&request)?;
        self.limiter.admit(peer)?;
        let request = request.into_inner();
        let receipt = self
            .exchange
            .receive(peer, request.envelope, request.sender_sequence)
            .await?;
        Ok(Response::new(pb::DeliverResponse {
            outcome: Some(pb::deliver_response::Outcome::Receipt(receipt)),
        }))
    }

    type DeliverStreamStream = ResponseStream;

    async fn deliver_stream(
        &self,
        request: Request<Streaming<pb::DeliverRequest>>,
    ) -> Result<Response<Self::DeliverStreamStream>, Status> {
        let peer = peer_country(&request)?;
        let slot = self.limiter.open_stream(peer)?;
        let limiter = self.limiter.clone();
        let exchange = self.exchange.clone();
        let mut incoming = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        // The reader checks each envelope and queues its log write as it arrives; the answerer
        // awaits those writes in the same order. Envelopes in flight between the two share
        // flushes, and the log keeps the stream's order. The queue bounds what is in flight.
        let (queued_tx, mut queued_rx) = tokio::sync::mpsc::channel::<Queued>(STREAM_IN_FLIGHT);
        let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(STREAM_IN_FLIGHT_KIB));
        tokio::spawn(async move {
            // The stream counts against the peer's open streams until its reader ends.
            let _slot = slot;
            let mut carried = 0;
            while let Some(item) = incoming.next().await {
                let request = match item {
                    Ok(r) => r,
                    Err(status) => {
                        let _ = queued_tx.send(Queued::End(status)).await;
                        return;
                    }
                };
                carried += 1;
                if let Err(e) = limiter.stream_length(peer, carried) {
                    let _ = queued_tx.send(Queued::End(e.into())).await;
                    return;
                }
                limiter.pace(peer).await;
                // The budget is never closed, so this waits only for answers to make room.
                let Ok(share) = in_flight
                    .clone()
                    .acquire_many_owned(in_flight_kib(request.envelope.len()))
                    .await
                else {
                    return;
                };
                // The answerer may have stopped meanwhile: nothing more is written for it.
                if queued_tx.is_closed() {
                    return;
                }
                let id = EnvelopeId::decode(request.envelope.as_slice())
                    .map(|e| e.message_id)
                    .unwrap_or_default();
                let queued =
                    exchange.receive_queued(peer, request.envelope, request.sender_sequence);
                if queued_tx
                    .send(Queued::Envelope(id, queued, share))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        tokio::spawn(async move {
            while let Some(next) = queued_rx.recv().await {
                let (id, queued, share) = match next {
                    Queued::Envelope(id, queued, share) => (id, queued, share),
                    Queued::End(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                let result = match queued {
                    Ok(answer) => answer.await,
                    Err(e) => Err(e),
                };
                drop(share);
                let outcome = match result {
                    Ok(receipt) => pb::deliver_response::Outcome::Receipt(receipt),
                    Err(ExchangeError::Log(e)) => {
                        let _ = tx.send(Err(ExchangeError::Log(e).into())).await;
                        return;
                    }
                    Err(e) => {
                        let status = Status::from(e);
                        pb::deliver_response::Outcome::Refusal(pb::Refusal {
                            message_id: id,
                            code: status.code() as i32,
                            reason: status.message().to_owned(),
                        })
                    }
                };
                let response = pb::DeliverResponse {
                    outcome: Some(outcome),
                };
                if tx.send(Ok(response)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn cursor(
        &self,
        request: Request<pb::CursorRequest>,
    ) -> Result<Response<pb::CursorResponse>, Status> {
        Ok(Response::new(self.cursor_of(&request)?))
    }

    async fn cosign(
        &self,
        request: Request<pb::CosignRequest>,
    ) -> Result<Response<pb::CosignResponse>, Status> {
        let peer = peer_country(&request)?;
        let cosignature =
            crate::exchange::checkpoint::witness(&self.exchange, peer, request.into_inner())
                .await?;
        Ok(Response::new(pb::CosignResponse {
            cosignature: Some(cosignature),
        }))
    }
}

impl PeerApi {
    fn cursor_of<T>(&self, request: &Request<T>) -> Result<pb::CursorResponse, Status> {
        let peer = peer_country(request)?;
        Ok(pb::CursorResponse {
            last_sender_sequence: self.exchange.cursor(peer)?,
            max_stream_messages: self.limiter.max_stream_messages(),
        })
    }
}

/// The channel to each configured peer, as a reload leaves them.
pub type PeerChannels = std::sync::Arc<
    std::sync::RwLock<
        std::collections::BTreeMap<CountryCode, watch::Receiver<tonic::transport::Channel>>,
    >,
>;

/// The operator plane.
#[derive(Debug, Clone)]
pub struct OperatorApi {
    exchange: Exchange,
    peers: PeerChannels,
    trust: watch::Receiver<crate::exchange::audit::AuditTrust>,
    stopping: watch::Receiver<bool>,
}

impl OperatorApi {
    /// The operator plane over `exchange`, with a channel to each peer for replays; the
    /// streams it serves end when `stopping` turns true.
    pub fn new(
        exchange: Exchange,
        peers: PeerChannels,
        trust: watch::Receiver<crate::exchange::audit::AuditTrust>,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        Self {
            exchange,
            peers,
            trust,
            stopping,
        }
    }

    /// A peer-plane client for the configured peer named `peer`.
    fn peer_client(
        &self,
        peer: &str,
    ) -> Result<
        (
            CountryCode,
            crate::pb::peer_service_client::PeerServiceClient<tonic::transport::Channel>,
        ),
        Status,
    > {
        let peer: CountryCode = peer
            .parse()
            .map_err(|e| Status::invalid_argument(format!("peer: {e}")))?;
        let channel = self
            .peers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&peer)
            .map(|c| c.borrow().clone())
            .ok_or_else(|| {
                Status::failed_precondition(format!("{peer} is not a configured peer"))
            })?;
        Ok((
            peer,
            crate::pb::peer_service_client::PeerServiceClient::new(channel),
        ))
    }

    fn reader<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let identity = caller(request)?;
        Ok(self.exchange.authorize_read(&identity)?)
    }

    /// A sent message's state for the operator, after waiting for its receipt if asked.
    async fn send_response(
        &self,
        submitted: &crate::exchange::core::Submitted,
        wait: bool,
    ) -> Result<pb::SendResponse, Status> {
        let state = if wait {
            self.exchange
                .wait_for_delivery(submitted.sequence, RECEIPT_WAIT)
                .await?
        } else {
            Delivery::Pending
        };
        let stored = self.exchange.stored_message(submitted.sequence)?;
        let state = stored.delivery.unwrap_or(state);
        let detail = match state {
            Delivery::Pending => format!(
                "logged and flushed on this node; delivery to {} is pending",
                submitted.peer
            ),
            Delivery::Delivered => format!("delivered; {} logged it", submitted.peer),
            Delivery::Failed => self
                .exchange
                .failure_reason(submitted.sequence)?
                .unwrap_or_default(),
        };
        Ok(pb::SendResponse {
            copies: Vec::new(),
            message_id: submitted.message_id.to_string(),
            log_sequence: submitted.sequence,
            envelope_sha256: submitted.digest.0.to_vec(),
            state: delivery_state(Some(state)) as i32,
            receipt: stored.receipt,
            detail,
            duplicate: submitted.duplicate,
        })
    }
}

/// Events a watcher may have unread before it is told it fell behind.
const WATCH_BUFFER: usize = 1024;

/// How long the node waits for a watcher to make room before telling it it fell behind.
const WATCH_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// Log entries read at once by a watcher that is catching up.
const WATCH_BATCH: usize = 256;

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

/// The events after `from` (only about `kinds`, if any), then each new one as its entry becomes
/// durable. The reader never holds up the log: it reads what is durable, into a bounded buffer;
/// a watcher that leaves the buffer full gets what it holds, then RESOURCE_EXHAUSTED, and
/// resumes from the last sequence it saw. The watch ends with UNAVAILABLE when the node stops.
fn watch_events(
    exchange: Exchange,
    from: u64,
    kinds: Vec<i32>,
    mut stopping: watch::Receiver<bool>,
) -> EventStream {
    // Events travel in the batches they were read in, so that a burst wakes the stream once
    // per batch rather than once per event; at most WATCH_BUFFER events wait.
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<pb::Event>>(WATCH_BUFFER / WATCH_BATCH);
    let (end_tx, end_rx) = tokio::sync::oneshot::channel::<Status>();
    tokio::spawn(async move {
        let status = tokio::select! {
            status = follow(&exchange, from, &kinds, &tx) => status,
            _ = stopping.wait_for(|stopping| *stopping) => {
                Some(Status::unavailable("the node is stopping"))
            }
        };
        if let Some(status) = status {
            let _ = end_tx.send(status);
        }
    });
    let events = Batches {
        rx,
        ready: Vec::new().into_iter(),
    }
    .map(Ok);
    // After every buffered event, the status the watch ended with, if any.
    let ending = tokio_stream::once(end_rx)
        .then(|end| async move { end.await.ok() })
        .filter_map(|status| status.map(Err));
    Box::pin(events.chain(ending))
}

/// The events of batches received on `rx`, one at a time.
struct Batches {
    rx: tokio::sync::mpsc::Receiver<Vec<pb::Event>>,
    ready: std::vec::IntoIter<pb::Event>,
}

impl Stream for Batches {
    type Item = pb::Event;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<pb::Event>> {
        loop {
            if let Some(event) = self.ready.next() {
                return std::task::Poll::Ready(Some(event));
            }
            match std::task::ready!(self.rx.poll_recv(cx)) {
                Some(batch) => self.ready = batch.into_iter(),
                None => return std::task::Poll::Ready(None),
            }
        }
    }
}

/// Sends the events of durable entries after `from` to `tx` until the watcher goes away
/// (`None`) or the watch must end with a status.
async fn follow(
    exchange: &Exchange,
    from: u64,
    kinds: &[i32],
    tx: &tokio::sync::mpsc::Sender<Vec<pb::Event>>,
) -> Option<Status> {
    let mut durable = exchange.log().subscribe_durable();
    let mut next = from.saturating_add(1);
    loop {
        let head = *durable.borrow_and_update();
        while next <= head {
            let reader = exchange.clone();
            let read = in_background(move || read_events(&reader, next, head)).await;
            let (events, last) = match read {
                Some(Ok(read)) => read,
                Some(Err(e)) => return Some(e.into()),
                None => return Some(Status::unavailable("the watch's reader stopped")),
            };
            let events: Vec<pb::Event> = events
                .into_iter()
                .filter(|e| kinds.is_empty() || kinds.contains(&e.message_kind))
                .collect();
            if let Some(sequence) = events.first().map(|e| e.sequence) {
                match tokio::time::timeout(WATCH_PATIENCE, tx.send(events)).await {
                    Ok(Ok(())) => {}
                    // The watcher is gone.
                    Ok(Err(_)) => return None,
                    Err(_) => {
                        return Some(Status::resource_exhausted(format!(
                            "the watcher fell behind before entry {sequence}: reconnect with from_sequence set to the last sequence it received"
                        )));
                    }
                }
            }
            next = last + 1;
        }
        tokio::select! {
            changed = durable.changed() => {
                if changed.is_err() {
                    return Some(Status::unavailable("the node is stopping"));
                }
            }
            () = tx.closed() => return None,
        }
    }
}

/// A job for the background thread.
type Background = Box<dyn FnOnce() + Send>;

/// Runs `job` on the node's background thread, one that runs at a lower CPU priority than its
/// other threads: when the machine is busy, receiving and receipting come before telling
/// watchers. `None` if the thread is gone.
async fn in_background<R: Send + 'static>(job: impl FnOnce() -> R + Send + 'static) -> Option<R> {
    static JOBS: std::sync::OnceLock<Option<std::sync::mpsc::Sender<Background>>> =
        std::sync::OnceLock::new();
    let jobs = JOBS.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Background>();
        std::thread::Builder::new()
            .name("background".into())
            .spawn(move || {
                if let Err(e) = rustix::process::setpriority_process(None, BACKGROUND_NICENESS) {
                    tracing::warn!(error = %e, "the background thread keeps the node's priority");
                }
                for job in rx {
                    // A job that panics answers nothing (its caller is told the reader
                    // stopped); the thread goes on with the next.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })
            .ok()
            .map(|_| tx)
    });
    let (done, answer) = tokio::sync::oneshot::channel();
    let job: Background = Box::new(move || {
        let _ = done.send(job());
    });
    jobs.as_ref()?.send(job).ok()?;
    answer.await.ok()
}

/// How much lower the background thread's CPU priority is (its niceness).
const BACKGROUND_NICENESS: i32 = 10;

/// The events of the entries from `next` up to `head` (at most a batch), and the last entry
/// read.
fn read_events(
    exchange: &Exchange,
    next: u64,
    head: u64,
) -> Result<(Vec<pb::Event>, u64), ExchangeError> {
    let last = head.min(next.saturating_add(WATCH_BATCH as u64 - 1));
    let entries = exchange.log().durable_entries(next, last)?;
    let mut events = Vec::new();
    for read in entries.iter() {
        let (stored, content) = read?;
        if let Some(event) = exchange.event_of(&stored, content)? {
            events.push(event);
        }
    }
    Ok((events, last))
}

/// An envelope's message id alone, which a stream's refusal names: decoding it skips the rest
/// of the envelope rather than copying every field.
#[derive(Clone, PartialEq, prost::Message)]
struct EnvelopeId {
    #[prost(string, tag = "1")]
    message_id: String,
}

/// Envelopes of one stream whose log writes may be queued before the first is answered. The
/// log's writer takes what is queued as one write: the more in flight, the fewer flushes and
/// batch signatures per envelope, and the more memory a node holds (BENCHMARKS.md: 384 keeps a
/// node that received 1,000,000 messages under 100 MB, where 512 does not).
const STREAM_IN_FLIGHT: usize = 384;

/// KiB of envelopes one stream may have in flight, whatever their number: what a stream holds
/// in memory for its queued writes stays under this.
const STREAM_IN_FLIGHT_KIB: usize = 8 * 1024;

/// An envelope's share of [`STREAM_IN_FLIGHT_KIB`]: its size in KiB, rounded up, at least one.
fn in_flight_kib(bytes: usize) -> u32 {
    let kib = bytes.div_ceil(1024).clamp(1, STREAM_IN_FLIGHT_KIB);
    u32::try_from(kib).unwrap_or(u32::MAX)
}

/// How long a send with `wait_for_receipt` waits for the peer's receipt.
pub const RECEIPT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

fn entry_view(e: &StoredEntry) -> pb::EntryView {
    pb::EntryView {
        entry: Some(e.entry.clone()),
        entry_hash: e.hash.0.to_vec(),
    }
}

fn delivery_state(d: Option<Delivery>) -> pb::DeliveryState {
    match d {
        None => pb::DeliveryState::Unspecified,
        Some(Delivery::Pending) => pb::DeliveryState::Pending,
        Some(Delivery::Delivered) => pb::DeliveryState::Delivered,
        Some(Delivery::Failed) => pb::DeliveryState::Failed,
    }
}

impl OperatorApi {
    fn message_view(&self, m: StoredMessage) -> Result<pb::StoredMessage, Status> {
        let detail = if m.delivery == Some(Delivery::Failed) {
            self.exchange
                .failure_reason(m.entry.entry.sequence)?
                .unwrap_or_default()
        } else {
            String::new()
        };
        let attempts = if m.delivery.is_some() {
            self.exchange.attempts(m.entry.entry.sequence)
        } else {
            Attempts::default()
        };
        Ok(pb::StoredMessage {
            entry: Some(entry_view(&m.entry)),
            envelope: m.envelope,
            receipt: m.receipt,
            state: delivery_state(m.delivery) as i32,
            detail,
            attempts: attempts.count,
            last_error: attempts.last_error.unwrap_or_default(),
            redacted: m.redacted.unwrap_or_default(),
            case: self
                .exchange
                .case_state_at(m.entry.entry.sequence)?
                .map(|c| c.state()),
        })
    }
}

#[tonic::async_trait]
impl OperatorService for OperatorApi {
    async fn send(
        &self,
        request: Request<pb::SendRequest>,
    ) -> Result<Response<pb::SendResponse>, Status> {
        let identity = caller(&request)?;
        let request = request.into_inner();
        let envelope = request
            .envelope
            .ok_or_else(|| Status::invalid_argument("envelope: is required"))?;
        let submitted = self
            .exchange
            .submit_copies(&identity, envelope, &request.also_to)
            .await?;
        let mut responses = Vec::with_capacity(submitted.len());
        for s in &submitted {
            responses.push(self.send_response(s, request.wait_for_receipt).await?);
        }
        let mut responses = responses.into_iter();
        let mut first = responses
            .next()
            .ok_or_else(|| Status::internal("a send logged no message"))?;
        first.copies = responses.collect();
        Ok(Response::new(first))
    }

    async fn push_statistics(
        &self,
        request: Request<pb::PushStatisticsRequest>,
    ) -> Result<Response<pb::PushStatisticsResponse>, Status> {
        let identity = caller(&request)?;
        let request = request.into_inner();
        let wait = request.wait_for_receipt;
        let pushed = crate::exchange::stats::push(&self.exchange, &identity, request).await?;
        let mut pushes = Vec::with_capacity(pushed.len());
        for p in pushed {
            let sent = self.send_response(&p.submitted, wait).await?;
            pushes.push(pb::PushStatisticsResponse {
                revision: p.revision,
                unchanged: p.unchanged,
                sent: Some(sent),
                exchanged: p.exchanged,
                peer: p.submitted.peer.to_string(),
                pushes: Vec::new(),
            });
        }
        let mut response = pushes.first().cloned().unwrap_or_default();
        response.pushes = pushes;
        Ok(Response::new(response))
    }

    async fn statistics(
        &self,
        request: Request<pb::StatisticsRequest>,
    ) -> Result<Response<pb::StatisticsResponse>, Status> {
        let identity = caller(&request)?;
        let r = request.into_inner();
        let country = r
            .country
            .parse()
            .map_err(|e| Status::invalid_argument(format!("country: {e}")))?;
        let reports =
            crate::exchange::stats::records(&self.exchange, &identity, country, r.period.as_ref())?;
        Ok(Response::new(pb::StatisticsResponse { reports }))
    }

    async fn reconcile(
        &self,
        request: Request<pb::ReconcileRequest>,
    ) -> Result<Response<pb::ReconcileResponse>, Status> {
        let identity = caller(&request)?;
        let reconciliations =
            crate::exchange::stats::reconcile(&self.exchange, &identity, request.into_inner())
                .await?;
        Ok(Response::new(pb::ReconcileResponse { reconciliations }))
    }

    async fn inbox(
        &self,
        request: Request<pb::InboxRequest>,
    ) -> Result<Response<pb::InboxResponse>, Status> {
        self.reader(&request)?;
        let r = request.into_inner();
        let kind = match pb::MessageKind::try_from(r.kind) {
            Ok(pb::MessageKind::Unspecified) => None,
            Ok(k) => Some(k),
            Err(_) => return Err(Status::invalid_argument("kind: is not a known value")),
        };
        let peer = if r.peer.is_empty() {
            None
        } else {
            Some(
                r.peer
                    .parse()
                    .map_err(|e| Status::invalid_argument(format!("peer: {e}")))?,
            )
        };
        let since_micros = crate::exchange::core::parse_bound("since", &r.since)?;
        let until_micros = crate::exchange::core::parse_bound("until", &r.until)?;
        if let (Some(s), Some(u)) = (since_micros, until_micros)
            && s > u
        {
            return Err(Status::invalid_argument("until: is before since"));
        }
        let filter = InboxFilter {
            kind,
            peer,
            since_micros,
            until_micros,
            limit: if r.limit == 0 { 100 } else { r.limit as usize },
        };
        let messages = self
            .exchange
            .inbox(&filter)?
            .into_iter()
            .map(|m| self.message_view(m))
            .collect::<Result<_, _>>()?;
        Ok(Response::new(pb::InboxResponse { messages }))
    }

    async fn show(
        &self,
        request: Request<pb::ShowRequest>,
    ) -> Result<Response<pb::ShowResponse>, Status> {
        let identity = caller(&request)?;
        self.exchange.authorize_read(&identity)?;
        let id = request.into_inner().message_id;
        let (messages, entries) = self.exchange.show(&id)?;
        self.exchange
            .consulted_messages(&identity, pb::ConsultationOperation::Show, &messages)
            .await?;
        Ok(Response::new(pb::ShowResponse {
            messages: messages
                .into_iter()
                .map(|m| self.message_view(m))
                .collect::<Result<_, _>>()?,
            entries: entries.iter().map(entry_view).collect(),
        }))
    }

    async fn search(
        &self,
        request: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        let identity = caller(&request)?;
        self.exchange.authorize_search(&identity)?;
        let query = Query::from_request(request.get_ref())?;
        let hits = self.exchange.search(&identity, query).await?;
        Ok(Response::new(pb::SearchResponse {
            hits: hits.into_iter().map(|h| h.view).collect(),
        }))
    }

    async fn case(
        &self,
        request: Request<pb::CaseRequest>,
    ) -> Result<Response<pb::CaseResponseView>, Status> {
        let identity = caller(&request)?;
        self.exchange.authorize_read(&identity)?;
        let id = request.into_inner().message_id;
        let sequence = self
            .exchange
            .exchanged(&id)?
            .ok_or_else(|| ExchangeError::NotFound(format!("message {id}")))?;
        let case = self
            .exchange
            .case_at(sequence)?
            .ok_or_else(|| ExchangeError::NotFound(format!("a case for message {id}")))?;
        self.exchange
            .consulted_messages(&identity, pb::ConsultationOperation::Case, &case.messages)
            .await?;
        let state = case.state();
        let findings = case.findings;
        Ok(Response::new(pb::CaseResponseView {
            state: Some(state),
            messages: case
                .messages
                .into_iter()
                .map(|m| self.message_view(m))
                .collect::<Result<_, _>>()?,
            findings,
        }))
    }

    type WatchStream = EventStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let identity = caller(&request)?;
        self.exchange.authorize_watch(&identity)?;
        let r = request.into_inner();
        let mut kinds = Vec::new();
        for k in r.kinds {
            match pb::MessageKind::try_from(k) {
                Ok(pb::MessageKind::Unspecified) | Err(_) => {
                    return Err(Status::invalid_argument("kinds: is not a known value"));
                }
                Ok(k) => kinds.push(k as i32),
            }
        }
        Ok(Response::new(watch_events(
            self.exchange.clone(),
            r.from_sequence,
            kinds,
            self.stopping.clone(),
        )))
    }

    async fn cases(
        &self,
        request: Request<pb::CasesRequest>,
    ) -> Result<Response<pb::CasesResponse>, Status> {
        self.reader(&request)?;
        let r = request.into_inner();
        let status = pb::CaseStatus::try_from(r.status)
            .map_err(|_| Status::invalid_argument("status: is not a known value"))?;
        let peer = if r.peer.is_empty() {
            None
        } else {
            Some(
                r.peer
                    .parse()
                    .map_err(|e| Status::invalid_argument(format!("peer: {e}")))?,
            )
        };
        let filter = CasesFilter {
            status: CaseStatus::from_pb(status),
            expiring_within_days: (r.expiring_within_days > 0).then_some(r.expiring_within_days),
            awaiting_response: r.awaiting_response,
            peer,
            overdue: r.overdue,
            sent: match pb::Direction::try_from(r.direction) {
                Ok(pb::Direction::Unspecified) => None,
                Ok(pb::Direction::Sent) => Some(true),
                Ok(pb::Direction::Received) => Some(false),
                Err(_) => {
                    return Err(Status::invalid_argument("direction: is not a known value"));
                }
            },
        };
        let exchange = self.exchange.clone();
        let cases = tokio::task::spawn_blocking(move || exchange.cases(&filter))
            .await
            .map_err(|e| ExchangeError::internal("a case listing stopped", e))??;
        let cases = cases
            .into_iter()
            .map(|c| {
                let e = &c.root().entry.entry;
                pb::CaseSummary {
                    state: Some(c.state()),
                    direction: if c.sent() {
                        pb::Direction::Sent
                    } else {
                        pb::Direction::Received
                    } as i32,
                    peer: e.peer.clone(),
                    kind: e.message_kind,
                    category: crate::exchange::cases::category_of(c.root()),
                    log_sequence: e.sequence,
                    messages: c.messages.len() as u32,
                    created_at: e.created_at.clone(),
                    findings: c.findings.len() as u32,
                }
            })
            .collect();
        Ok(Response::new(pb::CasesResponse { cases }))
    }

    async fn log(
        &self,
        request: Request<pb::LogRequest>,
    ) -> Result<Response<pb::LogResponse>, Status> {
        self.reader(&request)?;
        let r = request.into_inner();
        let limit = if r.limit == 0 {
            100
        } else {
            r.limit.min(10_000) as usize
        };
        let log = self.exchange.log();
        let entries = log.range(r.from, limit).map_err(ExchangeError::from)?;
        let (size, head) = log.head().map_err(ExchangeError::from)?;
        Ok(Response::new(pb::LogResponse {
            entries: entries.iter().map(entry_view).collect(),
            size,
            head_hash: head.0.to_vec(),
        }))
    }

    async fn outbox(
        &self,
        request: Request<pb::OutboxRequest>,
    ) -> Result<Response<pb::OutboxResponse>, Status> {
        self.reader(&request)?;
        let r = request.into_inner();
        let peer = if r.peer.is_empty() {
            None
        } else {
            Some(
                r.peer
                    .parse()
                    .map_err(|e| Status::invalid_argument(format!("peer: {e}")))?,
            )
        };
        let limit = if r.limit == 0 { 100 } else { r.limit as usize };
        let messages = self
            .exchange
            .outbox(peer, limit)?
            .into_iter()
            .map(|m| self.message_view(m))
            .collect::<Result<_, _>>()?;
        Ok(Response::new(pb::OutboxResponse { messages }))
    }

    async fn replay(
        &self,
        request: Request<pb::ReplayRequest>,
    ) -> Result<Response<pb::ReplayResponse>, Status> {
        let identity = caller(&request)?;
        self.exchange.authorize_read(&identity)?;
        if identity.role != Role::Operator {
            return Err(Status::permission_denied("only operators may replay"));
        }
        let r = request.into_inner();
        let (peer, mut client) = self.peer_client(&r.peer)?;
        let until = if r.until == 0 { u64::MAX } else { r.until };
        if r.from > until {
            return Err(Status::invalid_argument("until: is before from"));
        }
        tracing::info!(peer = %peer, from = r.from, until, by = %identity, "replay requested");
        let report =
            crate::node::delivery::replay(&self.exchange, &mut client, peer, r.from, until)
                .await
                .map_err(|e| Status::unavailable(format!("replay to {peer} stopped: {e}")))?;
        Ok(Response::new(report))
    }

    async fn checkpoint(
        &self,
        request: Request<pb::CheckpointRequest>,
    ) -> Result<Response<pb::CheckpointResponse>, Status> {
        let identity = caller(&request)?;
        self.exchange.authorize_read(&identity)?;
        if identity.role != Role::Operator {
            return Err(Status::permission_denied(
                "only operators may request a checkpoint",
            ));
        }
        let (peer, mut client) = self.peer_client(&request.into_inner().peer)?;
        let (checkpoint, sequence) =
            crate::node::delivery::checkpoint(&self.exchange, &mut client, peer)
                .await
                .map_err(|e| match e {
                    crate::node::delivery::CheckpointError::Refused(s) => s,
                    crate::node::delivery::CheckpointError::Exchange(e) => e.into(),
                })?;
        Ok(Response::new(pb::CheckpointResponse {
            size: checkpoint.size,
            root_hash: checkpoint.root_hash,
            log_sequence: sequence,
        }))
    }

    async fn verify(
        &self,
        request: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        self.reader(&request)?;
        let log = self.exchange.log().clone();
        let trust = self.trust.borrow().clone();
        // Hashing the whole log is heavy: keep it off the async workers.
        let outcome =
            tokio::task::spawn_blocking(move || crate::exchange::audit::verify(&log, &trust))
                .await
                .map_err(|e| Status::internal(format!("verification stopped: {e}")))?;
        Ok(Response::new(crate::exchange::audit::response(outcome)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_failures_are_internal_and_keep_their_detail_here() {
        let ours = ExchangeError::internal(
            "counting the exchange",
            std::io::Error::other("secret bytes of a stored entry"),
        );
        let status = Status::from(ours);
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(!status.message().contains("secret"), "{}", status.message());
        // The caller's faults stay the caller's.
        let theirs = ExchangeError::Invalid(crate::domain::validate::ValidationError::new(
            "created_at",
            "is required",
        ));
        assert_eq!(Status::from(theirs).code(), tonic::Code::InvalidArgument);
    }
}
