//! The exchange: what a node does with envelopes, apart from any transport. It checks who may
//! do what, validates, logs, signs receipts and answers queries. gRPC handlers only translate
//! to and from it.

use std::collections::BTreeMap;
use std::sync::Arc;

use prost::Message;
use rustls::pki_types::CertificateDer;
use tokio::sync::Notify;

use crate::crypto::receipt::{self, ReceiptError, ReceiptSigner};
use crate::domain::model::{
    CountryCode, Digest, Identity, MessageId, Role, format_instant, parse_instant,
};
use crate::domain::validate::{self, ValidEnvelope, ValidationError};
use crate::exchange::error::ExchangeError;
use crate::log::{Appended, ExchangeLog, LogError, NewEntry, StoredEntry, Txn};
use crate::pb;

/// The refusal of an envelope whose sender is not the caller's country.
fn wrong_sender(caller: CountryCode) -> String {
    format!("sender: is not {caller}, the country of the caller's certificate")
}

/// Why an envelope was refused inside its log write, with the refusal logged there.
enum Refused {
    /// Its id was already used for other content.
    Conflict(String),
    /// It is new, and invalid as of now (its creation time is ahead of this node's clock).
    Invalid(ValidationError),
}

impl Refused {
    fn into_error(self) -> ExchangeError {
        match self {
            Self::Conflict(id) => ExchangeError::Conflict(id),
            Self::Invalid(e) => ExchangeError::Invalid(e),
        }
    }
}

/// A peer's envelope refused before its log write: what the refusal entry and the metric
/// record, and what the peer is answered.
struct PeerRefusal {
    kind: &'static str,
    message_id: String,
    reason: String,
    error: ExchangeError,
}

/// The log write of an envelope this node sends: a new entry, the first one again for the
/// same content, or a refusal for an id already used for other content.
fn store_sent(t: &mut Txn<'_>, valid: Storable) -> Result<Result<(u64, bool), Refused>, LogError> {
    let Storable {
        message_id,
        kind,
        reference,
        bytes,
        digest,
        receiver: peer,
        created_at,
        search_terms,
        actor,
        copy_of,
    } = valid;
    let id = message_id.as_str();
    if let Some(seq) = t.sent(id)? {
        let first = t.entry(seq)?.ok_or(LogError::Corrupt {
            sequence: seq,
            reason: "indexed entry is missing".into(),
        })?;
        if first.entry.content_sha256 == digest.0 {
            return Ok(Ok((seq, true)));
        }
        t.append(refusal(
            Some(peer),
            id,
            digest,
            "message id already used for other content",
        ))?;
        return Ok(Err(Refused::Conflict(id.to_owned())));
    }
    let Appended { sequence, .. } = t.append(NewEntry {
        kind: pb::EntryKind::MessageSent,
        peer: Some(peer),
        message_id: id.to_owned(),
        message_kind: kind,
        content: Some(bytes),
        content_digest: Some(digest),
        reference,
        created_at,
        search_terms,
        actor,
        copy_of,
        ..Default::default()
    })?;
    Ok(Ok((sequence, false)))
}

/// What the log keeps of a checked envelope: its bytes and the fields its entry names. Made
/// before the write is queued, so the decoded body is freed by the thread that decoded it, not
/// by the log's writer.
struct Storable {
    message_id: MessageId,
    kind: pb::MessageKind,
    reference: Option<MessageId>,
    created_at: String,
    bytes: Vec<u8>,
    digest: Digest,
    receiver: CountryCode,
    search_terms: Vec<crate::domain::search::Term>,
    /// Who asked, for a message this node sends.
    actor: String,
    /// For a copy of a message sent to several peers: the first copy's id.
    copy_of: Option<MessageId>,
}

impl From<ValidEnvelope> for Storable {
    fn from(valid: ValidEnvelope) -> Self {
        Self {
            search_terms: crate::domain::search::distinct_terms(&valid.envelope),
            actor: String::new(),
            copy_of: None,
            message_id: valid.message_id,
            kind: valid.kind,
            reference: valid.reference,
            created_at: valid.envelope.created_at,
            bytes: valid.bytes,
            digest: valid.digest,
            receiver: valid.receiver,
        }
    }
}

/// The log write of an envelope `caller` delivered to `country`: the entry with its receipt
/// issued in the same write; the first receipt again for the same content (signed now if a
/// stop left it unsigned); or a refusal, for an id already used for other content or for a
/// new envelope created ahead of this node's clock.
fn store_received(
    t: &mut Txn<'_>,
    country: CountryCode,
    caller: CountryCode,
    valid: Storable,
    sender_sequence: u64,
    too_far_ahead: Option<ValidationError>,
) -> Result<Result<(Answer, Option<u64>), Refused>, LogError> {
    let id = valid.message_id.as_str();
    if let Some(seq) = t.received(caller, id)? {
        let first = t.entry(seq)?.ok_or(LogError::Corrupt {
            sequence: seq,
            reason: "indexed entry is missing".into(),
        })?;
        if first.entry.content_sha256 == valid.digest.0 {
            if let Some(signed) = t.issued_receipt(seq)? {
                return Ok(Ok((Answer::Stored(signed), None)));
            }
            // Stored, but the node stopped before signing its receipt: sign it now.
            let ticket = t.reissue_receipt(seq)?.ok_or(LogError::Corrupt {
                sequence: seq,
                reason: "issued receipt is missing".into(),
            })?;
            return Ok(Ok((Answer::Pending(ticket), None)));
        }
        t.append(refusal(
            Some(caller),
            id,
            valid.digest,
            "message id already used for other content",
        ))?;
        return Ok(Err(Refused::Conflict(id.to_owned())));
    }
    if let Some(e) = too_far_ahead {
        t.append(refusal(Some(caller), id, valid.digest, &e.to_string()))?;
        return Ok(Err(Refused::Invalid(e)));
    }
    let appended = t.append(NewEntry {
        kind: pb::EntryKind::MessageReceived,
        peer: Some(caller),
        message_id: id.to_owned(),
        message_kind: valid.kind,
        content: Some(valid.bytes),
        content_digest: Some(valid.digest),
        reference: valid.reference,
        peer_sequence: sender_sequence,
        created_at: valid.created_at,
        search_terms: valid.search_terms,
        ..Default::default()
    })?;
    let receipt = pb::Receipt {
        message_id: id.to_owned(),
        envelope_sha256: valid.digest.0.to_vec(),
        sender: caller.to_string(),
        receiver: country.to_string(),
        log_sequence: appended.sequence,
        entry_hash: appended.hash.0.to_vec(),
        stored_at: format_instant(time::OffsetDateTime::now_utc()),
    };
    let ticket = t.issue_receipt(appended.sequence, receipt.encode_to_vec())?;
    Ok(Ok((Answer::Pending(ticket), Some(appended.sequence))))
}

/// The receipt for a received envelope: issued in this write and signed with it, or issued
/// earlier and read back from the log.
enum Answer {
    Pending(crate::log::ReceiptTicket),
    Stored(pb::SignedReceipt),
}

/// A received envelope's log write, queued: answers with the receipt once it is durable.
pub type QueuedReceipt = std::pin::Pin<
    Box<dyn Future<Output = Result<pb::SignedReceipt, ExchangeError>> + Send + 'static>,
>;

/// What the node knows of one peer: whose CA signs its node and receipts.
#[derive(Debug, Clone)]
pub struct PeerTrust {
    /// The CA certificates of the peer.
    pub anchors: Vec<CertificateDer<'static>>,
    /// What the peer's CA revoked: a receipt signed at or after its signer's revocation is
    /// refused.
    pub revoked: crate::crypto::revocation::Revocations,
    /// The response times agreed with the peer, by urgency.
    pub response_times: crate::domain::case::ResponseTimes,
    /// What may flow with the peer, each way.
    pub agreement: crate::domain::agreement::Agreement,
}

/// A sent message's delivery state, derived from the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Logged here, no receipt yet.
    Pending,
    /// The peer's receipt is logged.
    Delivered,
    /// The peer refused it for good.
    Failed,
}

/// The result of an operator's send.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The message id.
    pub message_id: MessageId,
    /// The receiving country.
    pub peer: CountryCode,
    /// Where the message sits in this node's log.
    pub sequence: u64,
    /// SHA-256 of the envelope.
    pub digest: Digest,
    /// Whether this exact message had already been logged.
    pub duplicate: bool,
}

/// A message as the log holds it, with its receipt.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// The log entry.
    pub entry: StoredEntry,
    /// The envelope, if its content is still held.
    pub envelope: Option<pb::Envelope>,
    /// For received messages the receipt this node issued; for sent ones the peer's.
    pub receipt: Option<pb::SignedReceipt>,
    /// For sent messages, the delivery state.
    pub delivery: Option<Delivery>,
    /// "redacted on DATE under policy X" once retention removed the content.
    pub redacted: Option<String>,
}

/// Filters for the inbox.
#[derive(Debug, Clone, Default)]
pub struct InboxFilter {
    /// Only this kind.
    pub kind: Option<pb::MessageKind>,
    /// Only from this peer.
    pub peer: Option<CountryCode>,
    /// Stored at or after, microseconds since the epoch.
    pub since_micros: Option<i64>,
    /// Stored at or before.
    pub until_micros: Option<i64>,
    /// At most this many, the newest.
    pub limit: usize,
}

/// One node's exchange. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Exchange {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    country: CountryCode,
    log: ExchangeLog,
    /// Swapped whole when certificates are reloaded.
    signer: std::sync::RwLock<Arc<ReceiptSigner>>,
    /// The configured peers, swapped whole on reload: peers may be added, changed or removed.
    peers: std::sync::RwLock<Arc<BTreeMap<CountryCode, Arc<PeerTrust>>>>,
    /// Woken when a message for a peer is logged; kept for a removed peer, whose messages
    /// stay queued.
    outbound: std::sync::RwLock<BTreeMap<CountryCode, Arc<Notify>>>,
    receipts: Notify,
    attempts: std::sync::Mutex<BTreeMap<u64, Attempts>>,
    metrics: Arc<crate::exchange::metrics::Metrics>,
    /// The largest envelope accepted from a peer (`[limits] max_envelope_bytes`).
    max_envelope_bytes: std::sync::atomic::AtomicUsize,
    /// Seconds a creation time may be ahead of this node's clock (`[limits]`).
    max_clock_skew_secs: std::sync::atomic::AtomicU64,
    /// What this node found good among the peers' receipts and checkpoints.
    verifier: receipt::Verifier,
    /// What the deadline checks keep from one to the next.
    deadlines: std::sync::Mutex<crate::domain::case::DeadlineMemory>,
}

/// Delivery attempts of one sent message since this node started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attempts {
    /// How many times it was sent.
    pub count: u32,
    /// Why the last attempt did not deliver it, if it did not.
    pub last_error: Option<String>,
}

impl Exchange {
    /// An exchange for `country` over `log`, which was opened with `signer` (the node's key
    /// for receipts, checkpoints and cosignatures).
    pub fn new(
        country: CountryCode,
        log: ExchangeLog,
        signer: Arc<ReceiptSigner>,
        peers: BTreeMap<CountryCode, PeerTrust>,
    ) -> Self {
        let outbound = peers
            .keys()
            .map(|c| (*c, Arc::new(Notify::new())))
            .collect();
        Self {
            inner: Arc::new(Inner {
                country,
                log,
                signer: std::sync::RwLock::new(signer),
                peers: std::sync::RwLock::new(Arc::new(
                    peers.into_iter().map(|(c, t)| (c, Arc::new(t))).collect(),
                )),
                outbound: std::sync::RwLock::new(outbound),
                receipts: Notify::new(),
                attempts: std::sync::Mutex::default(),
                metrics: Arc::default(),
                max_envelope_bytes: validate::MAX_ENVELOPE_BYTES.into(),
                verifier: receipt::Verifier::new(),
                deadlines: std::sync::Mutex::default(),
                max_clock_skew_secs: validate::DEFAULT_CLOCK_SKEW
                    .whole_seconds()
                    .unsigned_abs()
                    .into(),
            }),
        }
    }

    /// What the deadline checks keep from one to the next.
    pub(crate) fn deadline_memory(&self) -> &std::sync::Mutex<crate::domain::case::DeadlineMemory> {
        &self.inner.deadlines
    }

    /// This node's country.
    pub fn country(&self) -> CountryCode {
        self.inner.country
    }

    /// The node's counters.
    pub fn metrics(&self) -> &Arc<crate::exchange::metrics::Metrics> {
        &self.inner.metrics
    }

    /// Lowers the largest envelope accepted from a peer below the protocol's limit.
    pub fn set_max_envelope_bytes(&self, max: usize) {
        self.inner.max_envelope_bytes.store(
            max.min(validate::MAX_ENVELOPE_BYTES),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Sets how far ahead of this node's clock an envelope's creation time may be.
    pub fn set_max_clock_skew(&self, seconds: u64) {
        self.inner
            .max_clock_skew_secs
            .store(seconds, std::sync::atomic::Ordering::Relaxed);
    }

    /// The envelope's creation time against this node's clock and the configured skew.
    fn created_in_time(&self, valid: &ValidEnvelope) -> Result<(), ValidationError> {
        let skew = self
            .inner
            .max_clock_skew_secs
            .load(std::sync::atomic::Ordering::Relaxed);
        let skew = time::Duration::seconds(i64::try_from(skew).unwrap_or(i64::MAX));
        validate::created_in_time(valid, time::OffsetDateTime::now_utc(), skew)
    }

    /// The node's signing key (receipts, checkpoints, cosignatures).
    pub fn signer(&self) -> Arc<ReceiptSigner> {
        read(&self.inner.signer).clone()
    }

    /// Takes a reloaded signing key and the peers as configured now into use for everything
    /// that starts after this call: a peer left out is no longer one, and a new one is. What
    /// this node logged for a removed peer stays queued for it.
    pub fn reload(&self, signer: ReceiptSigner, peers: BTreeMap<CountryCode, PeerTrust>) {
        let signer = Arc::new(signer);
        if let Err(e) = self.inner.log.rotate_receipt_signer(signer.clone()) {
            tracing::error!(error = %e, "the exchange log does not take the reloaded receipt key");
        }
        *self
            .inner
            .signer
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = signer;
        {
            let mut outbound = self
                .inner
                .outbound
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for country in peers.keys() {
                outbound
                    .entry(*country)
                    .or_insert_with(|| Arc::new(Notify::new()));
            }
        }
        *self
            .inner
            .peers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Arc::new(peers.into_iter().map(|(c, t)| (c, Arc::new(t))).collect());
    }

    /// The peers as configured now.
    fn peer_map(&self) -> Arc<BTreeMap<CountryCode, Arc<PeerTrust>>> {
        read(&self.inner.peers).clone()
    }

    /// What this node holds of `peer`, if it is configured.
    fn trust(&self, peer: CountryCode) -> Option<Arc<PeerTrust>> {
        self.peer_map().get(&peer).cloned()
    }

    /// Whether `peer` is configured now.
    pub fn is_peer(&self, peer: CountryCode) -> bool {
        self.peer_map().contains_key(&peer)
    }

    /// The CA certificates of `peer`, if it is configured.
    pub fn peer_anchors(&self, peer: CountryCode) -> Option<Vec<CertificateDer<'static>>> {
        self.trust(peer).map(|t| t.anchors.clone())
    }

    /// What checks the peers' receipts and checkpoints for this node, and remembers what it
    /// found good.
    pub fn verifier(&self) -> &receipt::Verifier {
        &self.inner.verifier
    }

    /// What `peer`'s CA revoked, as configured now.
    pub fn peer_revoked(&self, peer: CountryCode) -> crate::crypto::revocation::Revocations {
        self.trust(peer)
            .map(|t| t.revoked.clone())
            .unwrap_or_default()
    }

    /// The response times agreed with `peer`, if it is configured.
    pub fn response_times(&self, peer: CountryCode) -> Option<crate::domain::case::ResponseTimes> {
        self.trust(peer).map(|t| t.response_times)
    }

    /// What may flow with `peer`, if it is configured.
    pub fn agreement(&self, peer: CountryCode) -> Option<crate::domain::agreement::Agreement> {
        self.trust(peer).map(|t| t.agreement.clone())
    }

    /// Why the sent message at `sequence` may not go to `peer` under the agreement in force
    /// now, if it may not: an agreement narrowed by a reload after the message was logged.
    pub fn outside_agreement_now(
        &self,
        peer: CountryCode,
        sequence: u64,
    ) -> Result<Option<String>, ExchangeError> {
        let Some(trust) = self.trust(peer) else {
            return Ok(None);
        };
        if trust.agreement.send == crate::domain::agreement::Flow::default() {
            return Ok(None);
        }
        let Some(envelope) = self
            .inner
            .log
            .content(sequence)?
            .and_then(|c| pb::Envelope::decode(c.as_slice()).ok())
        else {
            return Ok(None);
        };
        Ok(trust
            .agreement
            .send
            .refuses_envelope(&envelope)
            .map(|reason| {
                format!(
                    "not sent: outside the agreement with {peer} in force now: what this node may \
                 send {peer} {reason}"
                )
            }))
    }

    /// Refuses an envelope of this node's own that its receiver's agreement does not cover,
    /// before anything is logged. A receiver that is not a configured peer is left to validation
    /// and to the peer check, which name it.
    fn within_send_agreement(&self, envelope: &pb::Envelope) -> Result<(), ExchangeError> {
        let Ok(peer) = envelope.receiver.parse::<CountryCode>() else {
            return Ok(());
        };
        let Some(trust) = self.trust(peer) else {
            return Ok(());
        };
        match trust.agreement.send.refuses_envelope(envelope) {
            Some(reason) => Err(ExchangeError::Forbidden(format!(
                "outside the agreement with {peer}: what this node may send {peer} {reason} \
                 (peers.agreement.send)"
            ))),
            None => Ok(()),
        }
    }

    /// The log.
    pub fn log(&self) -> &ExchangeLog {
        &self.inner.log
    }

    /// Woken whenever a message for `peer` is logged.
    pub fn outbound_signal(&self, peer: CountryCode) -> Option<Arc<Notify>> {
        read(&self.inner.outbound).get(&peer).cloned()
    }

    /// Checks that `caller` may read.
    pub fn authorize_read(&self, caller: &Identity) -> Result<(), ExchangeError> {
        self.local_user(caller)?;
        match caller.role {
            Role::Operator | Role::Auditor => Ok(()),
            Role::Sync | Role::Screening | Role::Node => Err(ExchangeError::Forbidden(format!(
                "role {} may not read the log",
                caller.role
            ))),
        }
    }

    /// The configured peers.
    pub fn peers(&self) -> Vec<CountryCode> {
        self.peer_map().keys().copied().collect()
    }

    /// The peer named by `name`, or, when `name` is empty, the only configured peer.
    pub fn peer_or_only(&self, name: &str) -> Result<CountryCode, ExchangeError> {
        if name.is_empty() {
            let map = self.peer_map();
            let mut peers = map.keys();
            return match (peers.next(), peers.next()) {
                (Some(p), None) => Ok(*p),
                _ => Err(ExchangeError::BadRequest(
                    "peer: this node has several peers; name one".into(),
                )),
            };
        }
        let peer: CountryCode = name.parse().map_err(|e| {
            ExchangeError::Invalid(ValidationError {
                field: "peer".into(),
                reason: format!("{e}"),
            })
        })?;
        if !self.is_peer(peer) {
            return Err(ExchangeError::UnknownPeer(peer.to_string()));
        }
        Ok(peer)
    }

    pub(crate) fn local_user(&self, caller: &Identity) -> Result<(), ExchangeError> {
        if caller.country != self.inner.country || caller.role == Role::Node {
            return Err(ExchangeError::Forbidden(format!(
                "{caller} is not a user of this node"
            )));
        }
        Ok(())
    }

    /// An operator's send: validated, logged and flushed, then handed to delivery.
    ///
    /// Statistics reports are refused here: they go through the statistics push, where the
    /// node numbers the revision and counts the exchange from its own log, so that no caller
    /// can send a revision or exchanged counts of its own.
    pub async fn submit(
        &self,
        caller: &Identity,
        envelope: pb::Envelope,
    ) -> Result<Submitted, ExchangeError> {
        self.local_user(caller)?;
        match caller.role {
            Role::Operator => {}
            Role::Sync => {
                return Err(ExchangeError::Forbidden(
                    "the sync role may push statistics reports only (PushStatistics, `stats push`)"
                        .into(),
                ));
            }
            Role::Auditor | Role::Screening | Role::Node => {
                return Err(ExchangeError::Forbidden(format!(
                    "role {} may not send",
                    caller.role
                )));
            }
        }
        if matches!(envelope.body, Some(pb::envelope::Body::StatisticsReport(_))) {
            return Err(ExchangeError::Invalid(ValidationError::new(
                "body",
                "a statistics report is sent with PushStatistics (`stats push`), which numbers \
                 its revision and counts the exchange from this node's log",
            )));
        }
        self.submit_any(caller, envelope, None).await
    }

    /// An operator's send of one message to several peers: the envelope to its own receiver,
    /// and a copy to each of `also_to`, under the message id followed by `-` and that peer's
    /// country, linked to the first as one case. Every copy is checked (its peer, that peer's
    /// agreement, validation, onward sharing) before any is logged, so that a refusal leaves
    /// nothing half-sent.
    pub async fn submit_copies(
        &self,
        caller: &Identity,
        envelope: pb::Envelope,
        also_to: &[String],
    ) -> Result<Vec<Submitted>, ExchangeError> {
        if also_to.is_empty() {
            return Ok(vec![self.submit(caller, envelope).await?]);
        }
        self.local_user(caller)?;
        if caller.role != Role::Operator {
            return Err(ExchangeError::Forbidden(format!(
                "role {} may not send",
                caller.role
            )));
        }
        if matches!(envelope.body, Some(pb::envelope::Body::StatisticsReport(_))) {
            return Err(ExchangeError::Invalid(ValidationError::new(
                "also_to",
                "a statistics report goes to each peer by PushStatistics (`stats push`)",
            )));
        }
        let first = self.filled_in(envelope)?;
        let mut copies = vec![first.clone()];
        for (i, peer) in also_to.iter().enumerate() {
            let field = format!("also_to[{i}]");
            let country: CountryCode = peer.parse().map_err(|e| {
                ExchangeError::Invalid(ValidationError::new(&field, format!("{e}")))
            })?;
            if !self.is_peer(country) {
                return Err(ExchangeError::UnknownPeer(country.to_string()));
            }
            if copies.iter().any(|c| c.receiver == country.as_str()) {
                return Err(ExchangeError::Invalid(ValidationError::new(
                    &field,
                    format!("{country} is named twice"),
                )));
            }
            let mut copy = first.clone();
            copy.receiver = country.to_string();
            copy.message_id = format!("{}-{country}", first.message_id);
            copies.push(copy);
        }
        for copy in &copies {
            self.within_send_agreement(copy)?;
            let valid = match self.checked_own(copy)? {
                Ok(valid) => valid,
                Err(e) => {
                    self.refuse(
                        None,
                        body_kind(copy),
                        &copy.message_id,
                        &copy.encode_to_vec(),
                        &e.to_string(),
                    )
                    .await?;
                    return Err(e.into());
                }
            };
            // An id this node already used for other content would be refused at its write,
            // after the copies before it were logged: refused here, before any is.
            if let Some(seq) = self.inner.log.sent(&copy.message_id)?
                && self
                    .inner
                    .log
                    .entry(seq)?
                    .is_some_and(|e| e.entry.content_sha256 != valid.digest.0)
            {
                return Err(ExchangeError::Conflict(copy.message_id.clone()));
            }
        }
        let first_id: MessageId = first.message_id.parse().map_err(|_| {
            ExchangeError::Invalid(ValidationError::new("message_id", "is not a message id"))
        })?;
        let mut submitted = Vec::with_capacity(copies.len());
        for (i, copy) in copies.into_iter().enumerate() {
            let copy_of = (i > 0).then(|| first_id.clone());
            submitted.push(self.submit_any(caller, copy, copy_of).await?);
        }
        Ok(submitted)
    }

    /// The send of a statistics report that the statistics push built.
    pub(crate) async fn submit_report(
        &self,
        caller: &Identity,
        envelope: pb::Envelope,
    ) -> Result<Submitted, ExchangeError> {
        self.local_user(caller)?;
        if !matches!(envelope.body, Some(pb::envelope::Body::StatisticsReport(_))) {
            return Err(ExchangeError::Inconsistent(
                "a statistics push built something other than a report".into(),
            ));
        }
        self.submit_any(caller, envelope, None).await
    }

    /// Logs an envelope from this node's own side for delivery: who may send, the node's
    /// defaults filled in, validation (a refusal is logged), then the log write.
    async fn submit_any(
        &self,
        caller: &Identity,
        envelope: pb::Envelope,
        copy_of: Option<MessageId>,
    ) -> Result<Submitted, ExchangeError> {
        match caller.role {
            Role::Operator | Role::Sync => {}
            Role::Auditor | Role::Screening | Role::Node => {
                return Err(ExchangeError::Forbidden(format!(
                    "role {} may not send",
                    caller.role
                )));
            }
        }
        let envelope = self.filled_in(envelope)?;
        self.within_send_agreement(&envelope)?;
        let valid = self.admit_own(envelope).await?;
        let peer = valid.receiver;
        if !self.is_peer(peer) {
            return Err(ExchangeError::UnknownPeer(peer.to_string()));
        }
        let (message_id, kind, digest) = (valid.message_id.clone(), valid.kind, valid.digest);
        let mut valid = Storable::from(valid);
        valid.actor = caller.uri();
        valid.copy_of = copy_of;
        let outcome = self
            .inner
            .log
            .transact(move |t| store_sent(t, valid))
            .await?;
        let kind_label = crate::domain::kinds::kind_label(kind as i32);
        let (sequence, duplicate) = outcome.map_err(|refused| {
            self.inner.metrics.refused(kind_label, "local");
            refused.into_error()
        })?;
        if !duplicate {
            self.inner.metrics.sent(kind_label, peer.as_str());
            tracing::info!(peer = %peer, sequence, message_id = %message_id, "message logged for delivery");
        }
        if let Some(signal) = self.outbound_signal(peer) {
            signal.notify_one();
        }
        Ok(Submitted {
            message_id,
            peer,
            sequence,
            digest,
            duplicate,
        })
    }

    /// `envelope` with what the node fills in: its own country as sender, and a creation time.
    fn filled_in(&self, mut envelope: pb::Envelope) -> Result<pb::Envelope, ExchangeError> {
        if envelope.sender.is_empty() {
            envelope.sender = self.inner.country.to_string();
        }
        if envelope.created_at.is_empty() {
            // A retried send of the same file must be the same message: reuse the time the
            // node filled in the first time, so the content, and so the digest, are equal.
            let first = match self.inner.log.sent(&envelope.message_id)? {
                Some(seq) => self.inner.log.content(seq)?,
                None => None,
            };
            envelope.created_at = first
                .and_then(|bytes| pb::Envelope::decode(bytes.as_slice()).ok())
                .map(|first| first.created_at)
                .unwrap_or_else(|| format_instant(time::OffsetDateTime::now_utc()));
        }
        Ok(envelope)
    }

    /// Validates an envelope of this node's own: well formed, created in time, sent as this
    /// node's country. A refusal is logged before it is returned.
    async fn admit_own(&self, envelope: pb::Envelope) -> Result<ValidEnvelope, ExchangeError> {
        match self.checked_own(&envelope)? {
            Ok(v) => Ok(v),
            Err(e) => {
                self.refuse(
                    None,
                    body_kind(&envelope),
                    &envelope.message_id,
                    &envelope.encode_to_vec(),
                    &e.to_string(),
                )
                .await?;
                Err(e.into())
            }
        }
    }

    /// [`Self::admit_own`]'s checks, without logging a refusal.
    fn checked_own(
        &self,
        envelope: &pb::Envelope,
    ) -> Result<Result<ValidEnvelope, ValidationError>, ExchangeError> {
        let own = self.inner.country;
        let checked = validate::validate(envelope.clone())
            .and_then(|v| self.created_in_time(&v).map(|()| v))
            .and_then(|v| {
                if v.sender == own {
                    Ok(v)
                } else {
                    Err(ValidationError {
                        field: "sender".into(),
                        reason: format!("must be this node's country {own}"),
                    })
                }
            });
        Ok(match checked {
            Ok(v) => self.check_own_case(&v)?.map(|()| v),
            Err(e) => Err(e),
        })
    }

    async fn refuse(
        &self,
        peer: Option<CountryCode>,
        kind: &'static str,
        message_id: &str,
        bytes: &[u8],
        reason: &str,
    ) -> Result<(), ExchangeError> {
        self.refuse_queued(peer, kind, message_id, bytes, reason.to_owned())?
            .await
    }

    /// Queues a refusal record; what it returns answers once the record is durable.
    fn refuse_queued(
        &self,
        peer: Option<CountryCode>,
        kind: &'static str,
        message_id: &str,
        bytes: &[u8],
        reason: String,
    ) -> Result<impl Future<Output = Result<(), ExchangeError>> + Send + 'static, ExchangeError>
    {
        // Only a message id that is itself valid is kept: the refusal entry is never redacted.
        let message_id = message_id
            .parse::<MessageId>()
            .map(|id| id.to_string())
            .unwrap_or_default();
        let entry = refusal(peer, &message_id, Digest::of(bytes), &reason);
        let written = self.inner.log.enqueue(move |t| t.append(entry))?;
        let metrics = self.inner.metrics.clone();
        Ok(async move {
            written.await?;
            let label = peer.map_or_else(|| "local".to_owned(), |p| p.to_string());
            metrics.refused(kind, &label);
            tracing::warn!(peer = %label, kind, reason, "input refused");
            Ok(())
        })
    }

    /// An envelope delivered by the peer `caller`: logged and flushed, then acknowledged with a
    /// signed receipt. The same envelope again returns the first receipt.
    pub async fn receive(
        &self,
        caller: CountryCode,
        bytes: Vec<u8>,
        sender_sequence: u64,
    ) -> Result<pb::SignedReceipt, ExchangeError> {
        self.receive_queued(caller, bytes, sender_sequence)?.await
    }

    /// [`Self::receive`] in two steps: checks the envelope and queues its log write now, and
    /// returns what answers with the receipt once the write is durable. A stream queues each
    /// envelope as it arrives, so the log keeps the stream's order and flushes many together.
    pub fn receive_queued(
        &self,
        caller: CountryCode,
        bytes: Vec<u8>,
        sender_sequence: u64,
    ) -> Result<QueuedReceipt, ExchangeError> {
        if !self.is_peer(caller) {
            return Err(ExchangeError::UnknownPeer(caller.to_string()));
        }
        let valid = match self.admit_from_peer(caller, &bytes) {
            Ok(valid) => valid,
            Err(refusal) => {
                let written = self.refuse_queued(
                    Some(caller),
                    refusal.kind,
                    &refusal.message_id,
                    &bytes,
                    refusal.reason,
                )?;
                let error = refusal.error;
                return Ok(Box::pin(async move { written.await.and(Err(error)) }));
            }
        };
        // Held to the clock only if it is new: a retry of what is stored gets its receipt even
        // after this node's clock has stepped back.
        let too_far_ahead = self.created_in_time(&valid).err();
        let country = self.inner.country;
        let kind = valid.kind;
        let valid = Storable::from(valid);
        let written = self.inner.log.enqueue(move |t| {
            store_received(t, country, caller, valid, sender_sequence, too_far_ahead)
        })?;
        let this = self.clone();
        Ok(Box::pin(async move {
            let outcome = written.await?;
            this.answered(caller, kind, outcome).await
        }))
    }

    /// Checks an envelope a peer delivered before anything is written: its size, its encoding,
    /// that it comes from the caller's country and is addressed to this one.
    fn admit_from_peer(
        &self,
        caller: CountryCode,
        bytes: &[u8],
    ) -> Result<ValidEnvelope, Box<PeerRefusal>> {
        let max = self
            .inner
            .max_envelope_bytes
            .load(std::sync::atomic::Ordering::Relaxed);
        let checked = if bytes.len() > max {
            Err(ValidationError::new(
                "envelope",
                format!(
                    "{} bytes, more than this node's limit of {max}",
                    bytes.len()
                ),
            ))
        } else {
            validate::decode_canonical(bytes)
        };
        let wrong_sender = |kind, message_id| {
            let reason = wrong_sender(caller);
            Box::new(PeerRefusal {
                kind,
                message_id,
                reason: reason.clone(),
                error: ExchangeError::Forbidden(reason),
            })
        };
        let valid = match checked {
            Ok(v) => v,
            Err(e) => {
                // Only a message id that is itself valid is named in the refusal entry.
                let raw = pb::Envelope::decode(bytes).ok();
                let id = raw
                    .as_ref()
                    .and_then(|r| r.message_id.parse::<MessageId>().ok())
                    .map(|id| id.to_string())
                    .unwrap_or_default();
                // A sender claiming a country its certificate does not hold is the fault,
                // whatever else the envelope gets wrong (its receiver, say, being that country).
                if let Some(raw) = &raw
                    && raw.sender != caller.as_str()
                {
                    return Err(wrong_sender(body_kind(raw), id));
                }
                return Err(Box::new(PeerRefusal {
                    kind: "unknown",
                    message_id: id,
                    reason: e.to_string(),
                    error: e.into(),
                }));
            }
        };
        if valid.sender != caller {
            return Err(wrong_sender(
                body_kind(&valid.envelope),
                valid.message_id.to_string(),
            ));
        }
        if valid.receiver != self.inner.country {
            let e = ValidationError {
                field: "receiver".into(),
                reason: format!("is not {}, this node's country", self.inner.country),
            };
            return Err(Box::new(PeerRefusal {
                kind: body_kind(&valid.envelope),
                message_id: valid.message_id.to_string(),
                reason: e.to_string(),
                error: e.into(),
            }));
        }
        // Held to the agreement only if it is new: a retry of what this node stored under an
        // earlier agreement gets its receipt, so that both sides keep agreeing on what passed.
        let refused = self
            .trust(caller)
            .and_then(|t| t.agreement.accept.refuses_envelope(&valid.envelope))
            .filter(|_| {
                let stored_before = self.inner.log.received(caller, valid.message_id.as_str());
                !matches!(stored_before, Ok(Some(_)))
            });
        if let Some(reason) = refused {
            let reason = format!(
                "outside the agreement with {caller}: what this node accepts from {caller} {reason}"
            );
            return Err(Box::new(PeerRefusal {
                kind: body_kind(&valid.envelope),
                message_id: valid.message_id.to_string(),
                reason: reason.clone(),
                error: ExchangeError::Forbidden(reason),
            }));
        }
        Ok(valid)
    }

    /// What a received envelope's durable log write answers: its receipt, or the refusal the
    /// write logged; counted, and a new statistics report reconciled.
    async fn answered(
        &self,
        caller: CountryCode,
        kind: pb::MessageKind,
        outcome: Result<(Answer, Option<u64>), Refused>,
    ) -> Result<pb::SignedReceipt, ExchangeError> {
        let kind_label = body_kind_of(kind);
        let (signed, new) = outcome.map_err(|refused| {
            self.inner.metrics.refused(kind_label, caller.as_str());
            if let Refused::Invalid(e) = &refused {
                tracing::warn!(peer = %caller, kind = kind_label, reason = %e, "input refused");
            }
            refused.into_error()
        })?;
        if let Some(sequence) = new {
            self.inner.metrics.received(kind_label, caller.as_str());
            if kind == pb::MessageKind::StatisticsReport {
                // The report is stored and its receipt signed whatever the comparison finds; a
                // failed comparison can be repeated with `stats reconcile --recheck`.
                if let Err(e) =
                    crate::exchange::reconcile::reconcile_report(self.log(), sequence).await
                {
                    tracing::warn!(peer = %caller, sequence, error = %e, "statistics report not reconciled");
                }
            }
        }
        match signed {
            Answer::Pending(ticket) => ticket
                .signed()
                .ok_or_else(|| ExchangeError::Log(LogError::Unsigned)),
            Answer::Stored(signed) => Ok(signed),
        }
    }

    /// The highest sender sequence this node holds from `peer`.
    pub fn cursor(&self, peer: CountryCode) -> Result<u64, ExchangeError> {
        if !self.is_peer(peer) {
            return Err(ExchangeError::UnknownPeer(peer.to_string()));
        }
        Ok(self.inner.log.cursor(peer)?)
    }

    /// The peer's receipt for the sent message at `sequence`: checked against the peer's CA and
    /// the message, then logged. Logging the same receipt twice is a no-op.
    pub async fn accept_receipt(
        &self,
        peer: CountryCode,
        sequence: u64,
        signed: pb::SignedReceipt,
    ) -> Result<(), ExchangeError> {
        let sent = self
            .inner
            .log
            .entry(sequence)?
            .ok_or_else(|| ExchangeError::NotFound(format!("log entry {sequence}")))?;
        self.accept_receipt_queued(peer, &sent, signed)?.await?;
        Ok(())
    }

    /// [`Self::accept_receipt`] for the sent entry at hand, checking the receipt and queuing its
    /// log write now; what it returns answers once the write is durable, with the receipt entry
    /// logged before for the same message, if there was one (nothing is written then).
    /// Receipts queued together share a flush.
    pub fn accept_receipt_queued(
        &self,
        peer: CountryCode,
        sent: &StoredEntry,
        signed: pb::SignedReceipt,
    ) -> Result<
        impl Future<Output = Result<Option<u64>, ExchangeError>> + Send + 'static,
        ExchangeError,
    > {
        let trust = self
            .trust(peer)
            .ok_or_else(|| ExchangeError::UnknownPeer(peer.to_string()))?;
        let receipt = self.inner.verifier.verify(&signed, &trust.anchors, peer)?;
        let sequence = sent.entry.sequence;
        // Signed no earlier than the message it acknowledges was logged here, whatever time
        // the receipt claims: a revoked key cannot date a receipt back before its revocation.
        let claimed = parse_instant(&receipt.stored_at)
            .map_err(|e| ReceiptError::Decode(format!("stored_at {e}")))?;
        let signed_at = claimed.max(crate::domain::model::from_micros(
            sent.entry.recorded_at_micros,
        ));
        trust
            .revoked
            .check(&signed.signer_certificate, signed_at)
            .map_err(ReceiptError::Revoked)?;
        if receipt.message_id != sent.entry.message_id {
            return Err(ReceiptError::Mismatch {
                field: "message_id",
                found: receipt.message_id,
                expected: sent.entry.message_id.clone(),
            }
            .into());
        }
        if receipt.envelope_sha256 != sent.entry.content_sha256 {
            return Err(ReceiptError::Mismatch {
                field: "envelope_sha256",
                found: crate::domain::model::hex(&receipt.envelope_sha256),
                expected: crate::domain::model::hex(&sent.entry.content_sha256),
            }
            .into());
        }
        let bytes = signed.encode_to_vec();
        let message_id = receipt.message_id.clone();
        let message_kind = sent.entry.message_kind;
        // Whether the message has its receipt already is read in the write itself: the writer
        // reads without waiting for a write in progress, and sees the receipts of its group.
        let written = self.inner.log.enqueue(move |t| {
            if let Some(earlier) = t.receipt_for(sequence)? {
                return Ok(Some(earlier));
            }
            t.append(NewEntry {
                kind: pb::EntryKind::ReceiptReceived,
                peer: Some(peer),
                message_id,
                message_kind: pb::MessageKind::try_from(message_kind).unwrap_or_default(),
                content: Some(bytes),
                refers_to: sequence,
                ..Default::default()
            })?;
            Ok(None)
        })?;
        let this = self.clone();
        let recorded_at = sent.entry.recorded_at_micros;
        let peer_sequence = receipt.log_sequence;
        Ok(async move {
            let earlier = written.await?;
            let latency_micros = crate::domain::model::now_micros() - recorded_at;
            this.inner
                .metrics
                .delivery_latency(latency_micros.max(0) as f64 / 1e6);
            tracing::info!(peer = %peer, sequence, peer_sequence, "receipt logged");
            this.inner.receipts.notify_waiters();
            Ok(earlier)
        })
    }

    /// The peer refused the message at `sequence` for good.
    pub async fn mark_failed(
        &self,
        peer: CountryCode,
        sequence: u64,
        reason: String,
    ) -> Result<(), ExchangeError> {
        tracing::warn!(peer = %peer, sequence, reason, "delivery failed for good");
        self.inner
            .log
            .transact(move |t| {
                if t.receipt_for(sequence)?.is_some() || t.failed(sequence)? {
                    return Ok(());
                }
                let sent = t.entry(sequence)?;
                t.append(NewEntry {
                    kind: pb::EntryKind::DeliveryFailed,
                    peer: Some(peer),
                    message_id: sent
                        .as_ref()
                        .map(|s| s.entry.message_id.clone())
                        .unwrap_or_default(),
                    message_kind: sent
                        .and_then(|s| pb::MessageKind::try_from(s.entry.message_kind).ok())
                        .unwrap_or_default(),
                    refers_to: sequence,
                    reason,
                    ..Default::default()
                })?;
                Ok(())
            })
            .await?;
        self.inner.receipts.notify_waiters();
        Ok(())
    }

    /// Records that the sent message at `sequence` is being sent once more.
    pub fn record_attempt(&self, sequence: u64) {
        self.update_attempts(sequence, |a| {
            a.count += 1;
            a.last_error = None;
        });
    }

    /// Records why the latest attempt to deliver `sequence` did not.
    pub fn record_failure(&self, sequence: u64, error: String) {
        self.update_attempts(sequence, |a| a.last_error = Some(error));
    }

    fn update_attempts(&self, sequence: u64, update: impl FnOnce(&mut Attempts)) {
        // A poisoned lock only means another thread panicked mid-update of a counter.
        let mut attempts = self
            .inner
            .attempts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        update(attempts.entry(sequence).or_default());
    }

    /// Delivery attempts of the sent message at `sequence` since this node started.
    pub fn attempts(&self, sequence: u64) -> Attempts {
        self.inner
            .attempts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&sequence)
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until the sent message at `sequence` is delivered or failed, at most `timeout`.
    pub async fn wait_for_delivery(
        &self,
        sequence: u64,
        timeout: std::time::Duration,
    ) -> Result<Delivery, ExchangeError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.receipts.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let state = self.delivery(sequence)?;
            if state != Delivery::Pending {
                return Ok(state);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Delivery::Pending);
            }
        }
    }

    fn delivery(&self, sequence: u64) -> Result<Delivery, ExchangeError> {
        let log = &self.inner.log;
        if log.receipt_for(sequence)?.is_some() {
            Ok(Delivery::Delivered)
        } else if log.failure(sequence)?.is_some() {
            Ok(Delivery::Failed)
        } else {
            Ok(Delivery::Pending)
        }
    }

    /// A stored message with its receipt and state.
    pub fn stored_message(&self, sequence: u64) -> Result<StoredMessage, ExchangeError> {
        let log = &self.inner.log;
        let entry = log
            .entry(sequence)?
            .ok_or_else(|| ExchangeError::NotFound(format!("log entry {sequence}")))?;
        let envelope = log
            .content(sequence)?
            .and_then(|c| pb::Envelope::decode(c.as_slice()).ok());
        let (receipt, delivery) = match entry.kind() {
            pb::EntryKind::MessageReceived => (log.issued_receipt(sequence)?, None),
            pb::EntryKind::MessageSent => match log.receipt_for(sequence)? {
                Some(r) => (
                    log.content(r)?
                        .and_then(|b| pb::SignedReceipt::decode(b.as_slice()).ok()),
                    Some(Delivery::Delivered),
                ),
                None => (None, Some(self.delivery(sequence)?)),
            },
            _ => (None, None),
        };
        let redacted = match envelope {
            Some(_) => None,
            None => crate::exchange::retention::redaction_note(log, sequence)?,
        };
        Ok(StoredMessage {
            entry,
            envelope,
            receipt,
            delivery,
            redacted,
        })
    }

    /// The failure reason of a sent message, if it failed.
    pub fn failure_reason(&self, sequence: u64) -> Result<Option<String>, ExchangeError> {
        Ok(self.inner.log.failure(sequence)?)
    }

    /// Received messages matching `filter`, oldest first.
    pub fn inbox(&self, filter: &InboxFilter) -> Result<Vec<StoredMessage>, ExchangeError> {
        let mut out = Vec::new();
        for sequence in self.inner.log.inbox()?.into_iter().rev() {
            if out.len() >= filter.limit {
                break;
            }
            let Some(entry) = self.inner.log.entry(sequence)? else {
                continue;
            };
            let e = &entry.entry;
            if filter.kind.is_some_and(|k| k as i32 != e.message_kind)
                || filter.peer.is_some_and(|p| p.as_str() != e.peer)
                || filter
                    .since_micros
                    .is_some_and(|s| e.recorded_at_micros < s)
                || filter
                    .until_micros
                    .is_some_and(|u| e.recorded_at_micros > u)
            {
                continue;
            }
            out.push(self.stored_message(sequence)?);
        }
        out.reverse();
        Ok(out)
    }

    /// Sent messages to `peer` (or all peers), newest `limit`, oldest first.
    pub fn outbox(
        &self,
        peer: Option<CountryCode>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, ExchangeError> {
        let mut out = Vec::new();
        let (size, _) = self.inner.log.head()?;
        let mut sequence = size;
        while sequence > 0 && out.len() < limit {
            if let Some(entry) = self.inner.log.entry(sequence)?
                && entry.kind() == pb::EntryKind::MessageSent
                && peer.is_none_or(|p| p.as_str() == entry.entry.peer)
            {
                out.push(self.stored_message(sequence)?);
            }
            sequence -= 1;
        }
        out.reverse();
        Ok(out)
    }

    /// Everything about one message id: the messages with that id (sent or received), those
    /// that reference it, and every log entry naming it.
    pub fn show(&self, id: &str) -> Result<(Vec<StoredMessage>, Vec<StoredEntry>), ExchangeError> {
        let log = &self.inner.log;
        let mut sequences = Vec::new();
        if let Some(s) = log.sent(id)? {
            sequences.push(s);
        }
        for peer in self.peer_map().keys() {
            if let Some(s) = log.received(*peer, id)? {
                sequences.push(s);
            }
        }
        if sequences.is_empty() {
            return Err(ExchangeError::NotFound(format!("message {id}")));
        }
        sequences.extend(log.referencing(id)?);
        sequences.sort_unstable();
        sequences.dedup();
        let messages = sequences
            .iter()
            .map(|s| self.stored_message(*s))
            .collect::<Result<Vec<_>, _>>()?;
        let mut entries = Vec::new();
        for s in &sequences {
            if let Some(e) = log.entry(*s)? {
                entries.push(e);
            }
            if let Some(r) = log.receipt_for(*s)?
                && let Some(e) = log.entry(r)?
            {
                entries.push(e);
            }
        }
        entries.sort_by_key(|e| e.entry.sequence);
        Ok((messages, entries))
    }
}

/// Reads a lock that a panicking writer cannot leave half-written (it swaps an `Arc`).
fn read<T>(lock: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The metric label of an envelope's kind.
fn body_kind(envelope: &pb::Envelope) -> &'static str {
    use pb::envelope::Body;
    body_kind_of(match &envelope.body {
        Some(Body::TravellerAlert(_)) => pb::MessageKind::TravellerAlert,
        Some(Body::DocumentFraudNotice(_)) => pb::MessageKind::DocumentFraudNotice,
        Some(Body::StatisticsReport(_)) => pb::MessageKind::StatisticsReport,
        Some(Body::CaseResponse(_)) => pb::MessageKind::CaseResponse,
        None => pb::MessageKind::Unspecified,
    })
}

fn body_kind_of(kind: pb::MessageKind) -> &'static str {
    crate::domain::kinds::kind_label(kind as i32)
}

fn refusal(peer: Option<CountryCode>, message_id: &str, digest: Digest, reason: &str) -> NewEntry {
    NewEntry {
        kind: pb::EntryKind::Refusal,
        peer,
        // An unparseable id could be anything; keep only a well-formed one.
        message_id: message_id
            .parse::<MessageId>()
            .map(|m| m.to_string())
            .unwrap_or_default(),
        content_digest: Some(digest),
        reason: reason.to_owned(),
        ..Default::default()
    }
}

/// Parses an RFC 3339 bound for inbox filters.
pub fn parse_bound(field: &str, value: &str) -> Result<Option<i64>, ExchangeError> {
    if value.is_empty() {
        return Ok(None);
    }
    let t = parse_instant(value).map_err(|e| ValidationError {
        field: field.into(),
        reason: e.to_string(),
    })?;
    Ok(Some(
        i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX),
    ))
}
