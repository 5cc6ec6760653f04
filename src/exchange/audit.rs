//! Auditing a node's exchange log: the whole chain, every content digest, and every receipt's
//! signature against the certificates of the CA that vouches for its signer. Works on a data
//! directory (or a copy of one) and certificates alone.

use std::collections::BTreeMap;

use prost::Message;
use rustls::pki_types::CertificateDer;

use crate::crypto::receipt;
use crate::crypto::revocation::Revocations;
use crate::crypto::revocation::Revoked;
use crate::domain::kinds::{EntryName, MessageName};
use crate::domain::model::ParseError;
use crate::domain::model::{CountryCode, hex};
use crate::log::{Checked, ExchangeLog, LogError, Problem, VerifyError};
use crate::pb;

/// The certificates an audit checks receipts against.
#[derive(Debug, Clone)]
pub struct AuditTrust {
    /// The audited node's country.
    pub country: CountryCode,
    /// Its CA: receipts it issued chain here.
    pub own_ca: Vec<CertificateDer<'static>>,
    /// Each peer's CA: receipts it returned chain there.
    pub peers: BTreeMap<CountryCode, Vec<CertificateDer<'static>>>,
    /// What this node's CA revoked (`operator_listener.crl`).
    pub own_revoked: Revocations,
    /// What each peer's CA revoked (`peers[].crl`).
    pub peers_revoked: BTreeMap<CountryCode, Revocations>,
    /// The retention policy redactions must keep to: none may come before its message's
    /// retention period has ended, and without a policy none may happen at all.
    pub retention: Option<crate::exchange::retention::RetentionPolicy>,
}

impl AuditTrust {
    /// What the CA of `country` revoked.
    fn revoked(&self, country: CountryCode) -> Revocations {
        if country == self.country {
            self.own_revoked.clone()
        } else {
            self.peers_revoked
                .get(&country)
                .cloned()
                .unwrap_or_default()
        }
    }
}

/// What a successful audit checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditReport {
    /// Entries whose chain link and content digest hold.
    pub entries: u64,
    /// Receipts whose signature, certificate chain and contents hold.
    pub receipts: u64,
    /// Checkpoints (own, cosigned by a peer; and peers', witnessed here) whose signatures hold,
    /// and, for own checkpoints, whose root matches the log's entries.
    pub checkpoints: u64,
    /// Messages whose content was redacted, each accounted for by a redaction entry.
    pub redacted: u64,
    /// Messages encrypted at rest, checked against their sealed digest only (no key).
    pub sealed_unopened: u64,
    /// Received messages after the last signed receipt whose receipts are stored, and describe
    /// them, but are not signed in the log, as when the node stops between storing a write and
    /// signing it (nothing in it was answered). The node signs them when it starts.
    pub unsigned_receipts: u64,
    /// Messages whose reference names a message this log never held: logged as the peer's word,
    /// a finding to follow up rather than a failure.
    pub unknown_references: u64,
    /// The first of them.
    pub first_unknown_reference: Option<u64>,
}

/// What the audit found wrong with an entry, beyond its place in the chain (the log's own
/// [`crate::log::Problem`]).
#[derive(Debug, thiserror::Error)]
pub enum Finding {
    #[error("{what} cannot be decoded: {source}")]
    Undecodable {
        what: &'static str,
        #[source]
        source: prost::DecodeError,
    },
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("cannot be read: {0}")]
    Unreadable(#[from] LogError),
    #[error("peer: {0}")]
    Peer(#[source] ParseError),
    #[error("no CA is configured for peer {0}")]
    NoPeerCa(CountryCode),
    #[error("it is a copy of {0}, which is not a message this node sent before it")]
    CopyOfUnknown(String),
    #[error("the checkpoint cannot be decoded: {0}")]
    Checkpoint(#[from] crate::exchange::checkpoint::OpenError),
    #[error("{what} {source}")]
    Instant {
        what: &'static str,
        #[source]
        source: ParseError,
    },
    #[error("{what} is not valid: {source}")]
    Invalid {
        what: String,
        #[source]
        source: receipt::ReceiptError,
    },
    #[error("{what} does not stand: {source}")]
    Revoked {
        what: String,
        #[source]
        source: Revoked,
    },
    #[error("the cosignature is not over this checkpoint")]
    NotOverCheckpoint,
    #[error("the checkpoint covers {size} entries, but it is entry {sequence}")]
    CoversLater { size: u64, sequence: u64 },
    #[error(
        "the log's first {size} entries no longer match the root {peer} cosigned: the log was rewritten"
    )]
    Rewritten { size: u64, peer: CountryCode },
    #[error("records creation time {recorded}, but its envelope says {envelope}")]
    CreatedAt { recorded: String, envelope: String },
    #[error("{what}'s {field} does not match the entry")]
    ReceiptMismatch {
        what: &'static str,
        field: &'static str,
    },
    #[error("its receipt is signed, but the receipt of entry {0} before it is not")]
    UnsignedBefore(u64),
    #[error("names message {names} but entry {refers_to} is {found}")]
    NamesOther {
        names: String,
        refers_to: u64,
        found: String,
    },
    #[error("the receipt is for message {receipt}, but entry {refers_to} is {sent}")]
    ReceiptForOther {
        receipt: String,
        refers_to: u64,
        sent: String,
    },
    #[error("the receipt acknowledges content {acknowledged} but entry {refers_to} holds {held}")]
    ReceiptForOtherContent {
        acknowledged: String,
        refers_to: u64,
        held: String,
    },
    #[error("refers to entry {0}, which does not precede it")]
    NotPreceding(u64),
    #[error("refers to entry {0}, which cannot precede it")]
    CannotPrecede(u64),
    #[error("refers to entry {0}, which is missing")]
    ReferenceMissing(u64),
    #[error("refers to entry {refers_to}, which is not a message sent to {peer}")]
    NotSentTo { refers_to: u64, peer: String },
    #[error(
        "refers to entry {refers_to}, which is not statistics report {message_id} received from {peer}"
    )]
    NotReport {
        refers_to: u64,
        message_id: String,
        peer: String,
    },
    #[error("its content is about {about} from {from}, not {message_id} from {peer}")]
    ReconciliationOther {
        about: String,
        from: String,
        message_id: String,
        peer: String,
    },
    #[error("records a consultation, but {0}")]
    Consultation(&'static str),
    #[error("records a case deadline of no known reason")]
    DeadlineReason,
    #[error(
        "notes a deadline of entry {0}, which answers or changes a message rather than opening a case"
    )]
    DeadlineNotCase(u64),
    #[error("notes case {0} overdue, which an entry before it already did")]
    OverdueTwice(u64),
    #[error("reminds of the end of entry {0}, which is not an alert this node sent")]
    ExpiringNotSentAlert(u64),
    #[error(
        "reminds of version {version}, which is not a message of case {refers_to} sent before it"
    )]
    VersionNotInCase { version: String, refers_to: u64 },
    #[error("redacts a message, but no retention policy is configured")]
    NoRetentionPolicy,
    #[error("redacts entry {0}, which is missing")]
    RedactsMissing(u64),
    #[error("redacts entry {target}, but policy {policy} keeps {kind} content")]
    KeptByPolicy {
        target: u64,
        policy: String,
        kind: &'static str,
    },
    #[error(
        "redacts entry {target} before the end of its {days}-day retention period under policy {policy}"
    )]
    RedactedEarly {
        target: u64,
        days: u32,
        policy: String,
    },
    /// Found on an entry re-read after the scan passed it.
    #[error("entry {sequence}: {source}")]
    At {
        sequence: u64,
        #[source]
        source: Box<Self>,
    },
}

/// Verifies `log` in full; the error names the first bad entry.
pub fn verify(log: &ExchangeLog, trust: &AuditTrust) -> Result<AuditReport, VerifyError> {
    // This audit's own: what it found good, it checks once.
    let verifier = receipt::Verifier::new();
    let verifier = &verifier;
    let mut receipts = 0;
    let mut checkpoints = 0;
    let mut redacted = 0;
    let mut sealed_unopened = 0;
    // Received messages whose receipts are stored but whose batch is not signed in the log.
    let mut unsigned: Vec<(pb::LogEntry, crate::domain::model::Digest)> = Vec::new();
    let mut hashes = Vec::new();
    let mut unknown_references = 0;
    let mut first_unknown_reference = None;
    let mut noted_overdue = std::collections::BTreeSet::new();
    // Batch signatures are checked on the thread that reads the batches ahead; each receipt
    // then finds its batch's signature checked, unless the thread had not reached it.
    let batch_ahead = |batch: &receipt::SignedBatch, certificate: &[u8]| {
        verifier.check_batch_ahead(batch, certificate);
    };
    let entries = log.verify_with_batches(batch_ahead, |checked| {
        let e = checked.entry;
        hashes.push(checked.hash);
        if !e.reference.is_empty() && !references_held(log, trust, &e.reference)? {
            unknown_references += 1;
            first_unknown_reference.get_or_insert(e.sequence);
        }
        if checked.sealed && checked.content.is_none() && !checked.redacted {
            sealed_unopened += 1;
        }
        check_created_at(checked)?;
        match pb::EntryKind::try_from(e.kind).unwrap_or_default() {
            pb::EntryKind::CheckpointCosigned => {
                check_checkpoint(verifier, checked, trust, true, &hashes)?;
                checkpoints += 1;
            }
            pb::EntryKind::CheckpointWitnessed => {
                check_checkpoint(verifier, checked, trust, false, &hashes)?;
                checkpoints += 1;
            }
            pb::EntryKind::MessageReceived => {
                match (
                    checked.issued_receipt,
                    checked.issued_in_batch,
                    checked.unsigned_receipt,
                ) {
                    (None, None, Some(bytes)) => {
                        let r =
                            pb::Receipt::decode(bytes).map_err(|source| Finding::Undecodable {
                                what: "the unsigned receipt",
                                source,
                            })?;
                        if let Some(field) = crate::log::receipt_mismatch(&r, e, &checked.hash) {
                            return Err(Finding::ReceiptMismatch {
                                what: "the unsigned receipt",
                                field,
                            });
                        }
                        unsigned.push((e.clone(), checked.hash));
                    }
                    (signed, in_batch, _) => {
                        match in_batch {
                            Some(in_batch) => {
                                check_issued_in_batch(verifier, &in_batch, e, &checked.hash, trust)?
                            }
                            None => check_issued(verifier, signed, e, &checked.hash, trust)?,
                        }
                        // A node signs what it left unsigned before it takes anything new; a running
                        // node may have signed a write in progress since it was read.
                        receipts += signed_since(verifier, log, &mut unsigned, trust)?;
                        if let Some((first, _)) = unsigned.first() {
                            return Err(Finding::UnsignedBefore(first.sequence));
                        }
                        receipts += 1;
                    }
                }
            }
            pb::EntryKind::ReceiptReceived => {
                check_received(verifier, log, checked, trust)?;
                receipts += 1;
            }
            pb::EntryKind::Reconciliation => check_reconciliation(log, checked)?,
            pb::EntryKind::Consultation => check_consultation(checked)?,
            pb::EntryKind::Deadline => check_deadline(log, trust, e, &mut noted_overdue)?,
            pb::EntryKind::Redaction => {
                check_redaction(log, checked, trust)?;
                redacted += 1;
            }
            pb::EntryKind::MessageSent if !e.copy_of.is_empty() => {
                // A copy names the first copy: a message this node sent before it.
                let first = log.sent(&e.copy_of)?.filter(|first| *first < e.sequence);
                if first.is_none() {
                    return Err(Finding::CopyOfUnknown(e.copy_of.clone()));
                }
            }
            pb::EntryKind::DeliveryFailed => {
                let sent = referred(log, e)?;
                if sent.message_id != e.message_id {
                    return Err(Finding::NamesOther {
                        names: e.message_id.clone(),
                        refers_to: e.refers_to,
                        found: sent.message_id,
                    });
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    let receipts = receipts
        + signed_since(verifier, log, &mut unsigned, trust).map_err(|finding| VerifyError {
            sequence: unsigned.first().map_or(entries, |(e, _)| e.sequence),
            problem: Problem::Check(Box::new(finding)),
        })?;
    Ok(AuditReport {
        entries,
        receipts,
        checkpoints,
        redacted,
        sealed_unopened,
        unsigned_receipts: unsigned.len() as u64,
        unknown_references,
        first_unknown_reference,
    })
}

/// A deadline entry names a message before it that opens a case (a case's first message; the
/// node's code before 2026-12-07 also noted a copy sent to a further peer, or a message whose
/// reference names nothing held, which stands as a case of its own) and a known reason: a
/// case is noted overdue once (`noted_overdue` holds those noted before it), and a reminder is
/// of an alert this node sent, naming, if it names one, a version of that alert this node sent
/// before the reminder.
fn check_deadline(
    log: &ExchangeLog,
    trust: &AuditTrust,
    e: &pb::LogEntry,
    noted_overdue: &mut std::collections::BTreeSet<u64>,
) -> Result<(), Finding> {
    if e.refers_to == 0 || e.refers_to >= e.sequence {
        return Err(Finding::NotPreceding(e.refers_to));
    }
    let case = log
        .entry(e.refers_to)?
        .ok_or(Finding::ReferenceMissing(e.refers_to))?;
    if !crate::log::is_message(case.kind()) || case.entry.message_id != e.message_id {
        return Err(Finding::NamesOther {
            names: e.message_id.clone(),
            refers_to: e.refers_to,
            found: case.entry.message_id,
        });
    }
    let answers = &case.entry.reference;
    if !answers.is_empty() && references_held(log, trust, answers)? {
        return Err(Finding::DeadlineNotCase(e.refers_to));
    }
    match e.reason.as_str() {
        crate::exchange::cases::OVERDUE => {
            if !noted_overdue.insert(e.refers_to) {
                return Err(Finding::OverdueTwice(e.refers_to));
            }
            Ok(())
        }
        crate::exchange::cases::EXPIRING => {
            if !is_sent_alert(&case) {
                return Err(Finding::ExpiringNotSentAlert(e.refers_to));
            }
            if e.reference.is_empty() || version_of(log, e, &case.entry.message_id)? {
                Ok(())
            } else {
                Err(Finding::VersionNotInCase {
                    version: e.reference.clone(),
                    refers_to: e.refers_to,
                })
            }
        }
        _ => Err(Finding::DeadlineReason),
    }
}

fn is_sent_alert(stored: &crate::log::StoredEntry) -> bool {
    stored.kind() == pb::EntryKind::MessageSent
        && stored.entry.message_kind == pb::MessageKind::TravellerAlert as i32
}

/// Whether the version a reminder `e` names is an alert this node sent before it that is the
/// alert `root` or leads to it, through the messages it updates or the copies it was made
/// from, at any depth.
fn version_of(log: &ExchangeLog, e: &pb::LogEntry, root: &str) -> Result<bool, Finding> {
    let mut id = e.reference.clone();
    let mut named = true;
    for _ in 0..64 {
        let Some(sequence) = log.sent(&id)?.filter(|s| *s < e.sequence) else {
            return Ok(false);
        };
        let Some(version) = log.entry(sequence)? else {
            return Ok(false);
        };
        if named && !is_sent_alert(&version) {
            return Ok(false);
        }
        named = false;
        if id == root {
            return Ok(true);
        }
        id = if version.entry.reference.is_empty() {
            version.entry.copy_of
        } else {
            version.entry.reference
        };
    }
    Ok(false)
}

/// Whether the log holds the message `id` a reference names: sent by this node or received
/// from a peer.
fn references_held(log: &ExchangeLog, trust: &AuditTrust, id: &str) -> Result<bool, Finding> {
    if log.sent(id)?.is_some() {
        return Ok(true);
    }
    for peer in trust.peers.keys() {
        if log.received(*peer, id)?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A consultation entry: who (a local user of this node's country), what (a known operation),
/// and the messages returned, all readable. Its content is never redacted.
fn check_consultation(checked: &crate::log::Checked<'_>) -> Result<(), Finding> {
    let e = checked.entry;
    let identity: crate::domain::model::Identity = e
        .actor
        .parse()
        .map_err(|_| Finding::Consultation("its actor is not a focalpoint identity"))?;
    if identity.role == crate::domain::model::Role::Node {
        return Err(Finding::Consultation("its actor is a node, not a user"));
    }
    if !e.peer.is_empty() || !e.message_id.is_empty() {
        return Err(Finding::Consultation(
            "it names a peer or a message of its own",
        ));
    }
    let content = checked
        .content
        .ok_or(Finding::Consultation("its content is not held"))?;
    let consultation = pb::Consultation::decode(content)
        .map_err(|_| Finding::Consultation("its content does not decode"))?;
    match pb::ConsultationOperation::try_from(consultation.operation) {
        Ok(pb::ConsultationOperation::Unspecified) | Err(_) => {
            Err(Finding::Consultation("its operation is not known"))
        }
        Ok(_) => Ok(()),
    }
}

/// Reads again the receipts found unsigned: those signed since are checked and dropped from
/// `unsigned`, and counted.
fn signed_since(
    verifier: &receipt::Verifier,
    log: &ExchangeLog,
    unsigned: &mut Vec<(pb::LogEntry, crate::domain::model::Digest)>,
    trust: &AuditTrust,
) -> Result<u64, Finding> {
    let mut signed = 0;
    let mut still = Vec::new();
    for (entry, hash) in unsigned.drain(..) {
        let at = |finding: Finding| Finding::At {
            sequence: entry.sequence,
            source: Box::new(finding),
        };
        let issued = log
            .issued_receipt(entry.sequence)
            .map_err(|err| at(err.into()))?;
        match issued {
            None => still.push((entry, hash)),
            Some(receipt) => {
                check_issued(verifier, Some(&receipt), &entry, &hash, trust).map_err(at)?;
                signed += 1;
            }
        }
    }
    *unsigned = still;
    Ok(signed)
}

/// A checkpoint entry: both signatures by the right nodes, the cosignature over the same head,
/// and for this node's own checkpoints, the root recomputed from the log's first `size` entries.
fn check_checkpoint(
    verifier: &receipt::Verifier,
    checked: &Checked<'_>,
    trust: &AuditTrust,
    own: bool,
    hashes: &[crate::domain::model::Digest],
) -> Result<(), Finding> {
    let e = checked.entry;
    let peer: CountryCode = e.peer.parse().map_err(Finding::Peer)?;
    let peer_ca = trust.peers.get(&peer).ok_or(Finding::NoPeerCa(peer))?;
    let content = checked.content.ok_or(Finding::Missing("the checkpoint"))?;
    let (checkpoint, cosignature, both) = crate::exchange::checkpoint::open(content)?;
    let (origin, origin_ca, witness, witness_ca) = if own {
        (trust.country, &trust.own_ca, peer, peer_ca)
    } else {
        (peer, peer_ca, trust.country, &trust.own_ca)
    };
    let at = |what: &'static str, t: &str| {
        crate::domain::model::parse_instant(t).map_err(|source| Finding::Instant { what, source })
    };
    let created_at = at("the checkpoint's created_at", &checkpoint.created_at)?;
    let witnessed_at = at("the cosignature's witnessed_at", &cosignature.witnessed_at)?;
    let invalid = |what: &str| {
        let what = what.to_owned();
        move |source| Finding::Invalid { what, source }
    };
    let revoked = |what: &str| {
        let what = what.to_owned();
        move |source| Finding::Revoked { what, source }
    };
    let signed = both
        .checkpoint
        .as_ref()
        .ok_or(crate::exchange::checkpoint::OpenError::NoCheckpoint)?;
    verifier
        .verify_signed(
            receipt::CHECKPOINT_DOMAIN,
            signed,
            origin_ca,
            origin,
            created_at,
        )
        .map_err(invalid("the checkpoint's signature"))?;
    trust
        .revoked(origin)
        .check(&signed.signer_certificate, created_at)
        .map_err(revoked("the checkpoint's signature"))?;
    let cosigned = both
        .cosignature
        .as_ref()
        .ok_or(crate::exchange::checkpoint::OpenError::NoCosignature)?;
    verifier
        .verify_signed(
            receipt::COSIGNATURE_DOMAIN,
            cosigned,
            witness_ca,
            witness,
            witnessed_at,
        )
        .map_err(invalid("the cosignature"))?;
    trust
        .revoked(witness)
        .check(&cosigned.signer_certificate, witnessed_at)
        .map_err(revoked("the cosignature"))?;
    if checkpoint.origin != origin.as_str()
        || cosignature.origin != checkpoint.origin
        || cosignature.size != checkpoint.size
        || cosignature.root_hash != checkpoint.root_hash
        || cosignature.witness != witness.as_str()
    {
        return Err(Finding::NotOverCheckpoint);
    }
    if own {
        let covers_later = Finding::CoversLater {
            size: checkpoint.size,
            sequence: e.sequence,
        };
        let size = usize::try_from(checkpoint.size)
            .ok()
            .filter(|size| *size < hashes.len())
            .ok_or(covers_later)?;
        let root = crate::crypto::merkle::root(&hashes[..size]);
        if root.0[..] != checkpoint.root_hash[..] {
            return Err(Finding::Rewritten {
                size: checkpoint.size,
                peer,
            });
        }
    }
    Ok(())
}

/// A message entry's creation time, which statistics count by after redaction, must be the
/// envelope's.
/// The one field of an `Envelope` the audit holds against its entry: decoding only it skips
/// the body (names, documents) instead of building it for every message.
#[derive(Clone, PartialEq, prost::Message)]
struct EnvelopeCreatedAt {
    /// `Envelope.created_at`.
    #[prost(string, tag = "4")]
    created_at: String,
}

fn check_created_at(checked: &Checked<'_>) -> Result<(), Finding> {
    let e = checked.entry;
    let is_message = crate::log::is_message(pb::EntryKind::try_from(e.kind).unwrap_or_default());
    if let (true, Some(content), false) = (is_message, checked.content, e.created_at.is_empty()) {
        let envelope =
            EnvelopeCreatedAt::decode(content).map_err(|source| Finding::Undecodable {
                what: "the envelope",
                source,
            })?;
        if envelope.created_at != e.created_at {
            return Err(Finding::CreatedAt {
                recorded: e.created_at.clone(),
                envelope: envelope.created_at,
            });
        }
    }
    Ok(())
}

/// The receipt this node issued must be signed by this node and describe this very entry.
fn check_issued(
    verifier: &receipt::Verifier,
    signed: Option<&pb::SignedReceipt>,
    e: &pb::LogEntry,
    hash: &crate::domain::model::Digest,
    trust: &AuditTrust,
) -> Result<(), Finding> {
    let signed = signed.ok_or(Finding::Missing("the receipt this node issued"))?;
    let r = verifier
        .verify(signed, &trust.own_ca, trust.country)
        .map_err(|source| Finding::Invalid {
            what: "the issued receipt".into(),
            source,
        })?;
    stands(
        &trust.own_revoked,
        &signed.signer_certificate,
        &r,
        e.recorded_at_micros,
        "the issued receipt",
    )?;
    describes(&r, e, hash)
}

/// [`check_issued`] for a receipt read with its batch's whole tree: the batch signature is
/// checked over the tree's root, which holds the receipt at its index.
fn check_issued_in_batch(
    verifier: &receipt::Verifier,
    issued: &receipt::InBatch<'_>,
    e: &pb::LogEntry,
    hash: &crate::domain::model::Digest,
    trust: &AuditTrust,
) -> Result<(), Finding> {
    let (r, stored_at) = verifier
        .verify_in_batch(issued, &trust.own_ca, trust.country)
        .map_err(|source| Finding::Invalid {
            what: "the issued receipt".into(),
            source,
        })?;
    stands_at(
        &trust.own_revoked,
        issued.certificate,
        stored_at,
        e.recorded_at_micros,
        "the issued receipt",
    )?;
    describes(&r, e, hash)
}

/// The receipt this node issued must describe this very entry.
fn describes(
    r: &pb::Receipt,
    e: &pb::LogEntry,
    hash: &crate::domain::model::Digest,
) -> Result<(), Finding> {
    match crate::log::receipt_mismatch(r, e, hash) {
        Some(field) => Err(Finding::ReceiptMismatch {
            what: "the issued receipt",
            field,
        }),
        None => Ok(()),
    }
}

/// A receipt stands if its signer's certificate was not revoked when it was signed.
/// It counts as signed no earlier than `logged_micros`, when the message it acknowledges was
/// logged: a revoked key cannot date a receipt back before its revocation.
fn stands(
    revoked: &Revocations,
    certificate: &[u8],
    receipt: &pb::Receipt,
    logged_micros: i64,
    what: &str,
) -> Result<(), Finding> {
    let at = crate::domain::model::parse_instant(&receipt.stored_at).map_err(|source| {
        Finding::Instant {
            what: "the receipt's stored_at",
            source,
        }
    })?;
    stands_at(revoked, certificate, at, logged_micros, what)
}

/// [`stands`] for a receipt whose time is read already.
fn stands_at(
    revoked: &Revocations,
    certificate: &[u8],
    stored_at: time::OffsetDateTime,
    logged_micros: i64,
    what: &str,
) -> Result<(), Finding> {
    let at = stored_at.max(crate::domain::model::from_micros(logged_micros));
    revoked
        .check(certificate, at)
        .map_err(|source| Finding::Revoked {
            what: what.to_owned(),
            source,
        })
}

/// A peer's receipt must be signed by that peer's node and acknowledge the message it names.
fn check_received(
    verifier: &receipt::Verifier,
    log: &ExchangeLog,
    checked: &Checked<'_>,
    trust: &AuditTrust,
) -> Result<(), Finding> {
    let e = checked.entry;
    let peer: CountryCode = e.peer.parse().map_err(Finding::Peer)?;
    let anchors = trust.peers.get(&peer).ok_or(Finding::NoPeerCa(peer))?;
    let bytes = checked.content.ok_or(Finding::Missing("the receipt"))?;
    let signed = pb::SignedReceipt::decode(bytes).map_err(|source| Finding::Undecodable {
        what: "the receipt",
        source,
    })?;
    let r = verifier
        .verify(&signed, anchors, peer)
        .map_err(|source| Finding::Invalid {
            what: format!("the receipt from {peer}"),
            source,
        })?;
    let sent = referred(log, e)?;
    stands(
        &trust.revoked(peer),
        &signed.signer_certificate,
        &r,
        sent.recorded_at_micros,
        &format!("the receipt from {peer}"),
    )?;
    if r.message_id != sent.message_id || r.message_id != e.message_id {
        return Err(Finding::ReceiptForOther {
            receipt: r.message_id,
            refers_to: e.refers_to,
            sent: sent.message_id,
        });
    }
    if r.envelope_sha256 != sent.content_sha256 {
        return Err(Finding::ReceiptForOtherContent {
            acknowledged: hex(&r.envelope_sha256),
            refers_to: e.refers_to,
            held: hex(&sent.content_sha256),
        });
    }
    Ok(())
}

/// The sent message an entry refers to, which must come before it.
/// A reconciliation must name a statistics report received earlier from the same peer, and
/// its content must be about that report.
fn check_reconciliation(log: &ExchangeLog, checked: &Checked<'_>) -> Result<(), Finding> {
    let e = checked.entry;
    let report = log
        .entry(e.refers_to)?
        .filter(|_| e.refers_to < e.sequence)
        .ok_or(Finding::NotPreceding(e.refers_to))?;
    if report.kind() != pb::EntryKind::MessageReceived
        || report.entry.message_kind != pb::MessageKind::StatisticsReport as i32
        || report.entry.peer != e.peer
        || report.entry.message_id != e.message_id
    {
        return Err(Finding::NotReport {
            refers_to: e.refers_to,
            message_id: e.message_id.clone(),
            peer: e.peer.clone(),
        });
    }
    let content = checked
        .content
        .ok_or(Finding::Missing("the reconciliation's content"))?;
    let r = pb::Reconciliation::decode(content).map_err(|source| Finding::Undecodable {
        what: "the reconciliation's content",
        source,
    })?;
    if r.report_message_id != e.message_id || r.peer != e.peer {
        return Err(Finding::ReconciliationOther {
            about: r.report_message_id,
            from: r.peer,
            message_id: e.message_id.clone(),
            peer: e.peer.clone(),
        });
    }
    Ok(())
}

/// A redaction must keep to the retention policy: it comes no earlier than its message's
/// retention period allows. (That it names an earlier message whose content is gone is checked
/// with the chain.)
fn check_redaction(
    log: &ExchangeLog,
    checked: &Checked<'_>,
    trust: &AuditTrust,
) -> Result<(), Finding> {
    let e = checked.entry;
    let policy = trust.retention.as_ref().ok_or(Finding::NoRetentionPolicy)?;
    let message = log
        .entry(e.refers_to)?
        .ok_or(Finding::RedactsMissing(e.refers_to))?;
    let kind = pb::MessageKind::try_from(message.entry.message_kind).unwrap_or_default();
    let days = policy.days(kind).ok_or_else(|| Finding::KeptByPolicy {
        target: e.refers_to,
        policy: policy.policy.clone(),
        kind: crate::domain::kinds::kind_label(message.entry.message_kind),
    })?;
    let allowed = message
        .entry
        .recorded_at_micros
        .saturating_add(crate::exchange::retention::period(days));
    if e.recorded_at_micros < allowed {
        return Err(Finding::RedactedEarly {
            target: e.refers_to,
            days,
            policy: policy.policy.clone(),
        });
    }
    Ok(())
}

fn referred(log: &ExchangeLog, e: &pb::LogEntry) -> Result<pb::LogEntry, Finding> {
    if e.refers_to == 0 || e.refers_to >= e.sequence {
        return Err(Finding::CannotPrecede(e.refers_to));
    }
    let sent = log
        .entry(e.refers_to)?
        .ok_or(Finding::ReferenceMissing(e.refers_to))?;
    if sent.kind() != pb::EntryKind::MessageSent || sent.entry.peer != e.peer {
        return Err(Finding::NotSentTo {
            refers_to: e.refers_to,
            peer: e.peer.clone(),
        });
    }
    Ok(sent.entry)
}

/// One log entry as an export line: the entry, its hashes, decoded content and receipt.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExportRecord {
    /// The exporting node's country.
    pub node: String,
    /// Log position.
    pub sequence: u64,
    /// When the entry was appended (RFC 3339, UTC).
    pub recorded_at: String,
    /// What the entry records.
    pub kind: EntryName,
    /// The other focal point.
    pub peer: String,
    /// The message concerned.
    pub message_id: String,
    /// The kind of the message concerned.
    pub message_kind: MessageName,
    /// SHA-256 of the content, hex.
    pub content_sha256: String,
    /// This entry's hash, hex.
    pub entry_hash: String,
    /// The previous entry's hash, hex.
    pub previous_hash: String,
    /// For receipts and failures: the sent message's sequence.
    pub refers_to: u64,
    /// For messages: the message referred to.
    pub reference: String,
    /// For refusals and failures: why.
    pub reason: String,
    /// For a message this node sent and a consultation: who asked (a certificate's URI SAN).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub actor: String,
    /// For a copy of a message sent to several peers: the first copy's message id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub copy_of: String,
    /// For a consultation: the operation and the messages it returned (proto3 JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consultation: Option<serde_json::Value>,
    /// For messages: the envelope (proto3 JSON), if still held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<serde_json::Value>,
    /// For a reconciliation: what this node found comparing the peer's statistics report with
    /// its log (proto3 JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciliation: Option<serde_json::Value>,
    /// For a message whose envelope is absent, why: "redacted on DATE under policy X", or
    /// that it is encrypted at rest and the export ran without the log key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withheld: Option<String>,
    /// The receipt: issued by this node for a received message, or the peer's for a sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<ExportReceipt>,
    /// Proof that the entry is in the latest checkpoint a peer cosigned, if it is covered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<ExportProof>,
}

/// An RFC 6962 inclusion proof of an entry in a cosigned checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExportProof {
    /// The log entry holding the cosigned checkpoint.
    pub checkpoint_entry: u64,
    /// The peer that cosigned it.
    pub cosigned_by: String,
    /// Entries the checkpoint covers.
    pub tree_size: u64,
    /// The cosigned root, hex.
    pub root_hash: String,
    /// The entry's leaf index (sequence - 1).
    pub leaf_index: u64,
    /// The audit path, hex, leaf to root.
    pub path: Vec<String>,
}

/// A receipt in an export.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExportReceipt {
    /// The receiving country.
    pub receiver: String,
    /// Where the receiver stored the message.
    pub log_sequence: u64,
    /// The receiver's entry hash, hex.
    pub entry_hash: String,
    /// SHA-256 of the envelope, hex.
    pub envelope_sha256: String,
    /// When the receiver stored it.
    pub stored_at: String,
    /// The signature scheme.
    pub signature_scheme: String,
    /// The signature, hex: over the receipt alone, or over its batch when `batch` is given.
    pub signature: String,
    /// Where one signature covers a batch of receipts: this receipt's place in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<ExportBatch>,
}

/// A receipt's place in a signed batch, as exported.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExportBatch {
    /// Its leaf index, from 0.
    pub index: u64,
    /// How many receipts the batch holds.
    pub size: u64,
    /// The inclusion path to the batch's root, hex.
    pub path: Vec<String>,
}

fn export_receipt(signed: pb::SignedReceipt) -> Option<ExportReceipt> {
    let r = pb::Receipt::decode(signed.receipt.as_slice()).ok()?;
    Some(ExportReceipt {
        receiver: r.receiver,
        log_sequence: r.log_sequence,
        entry_hash: hex(&r.entry_hash),
        envelope_sha256: hex(&r.envelope_sha256),
        stored_at: r.stored_at,
        signature_scheme: signed.signature_scheme,
        signature: hex(&signed.signature),
        batch: signed.batch.map(|b| ExportBatch {
            index: b.index,
            size: b.size,
            path: b.path.iter().map(|p| hex(p)).collect(),
        }),
    })
}

/// An audit's outcome as the operator plane reports it.
pub fn response(outcome: Result<AuditReport, VerifyError>) -> pb::VerifyResponse {
    match outcome {
        Ok(report) => pb::VerifyResponse {
            ok: true,
            entries: report.entries,
            receipts: report.receipts,
            checkpoints: report.checkpoints,
            redacted: report.redacted,
            sealed_unopened: report.sealed_unopened,
            unsigned_receipts: report.unsigned_receipts,
            unknown_references: report.unknown_references,
            first_unknown_reference: report.first_unknown_reference.unwrap_or(0),
            ..Default::default()
        },
        Err(e) => pb::VerifyResponse {
            ok: false,
            entries: e.sequence.saturating_sub(1),
            first_bad_sequence: e.sequence,
            problem: e.problem.to_string(),
            ..Default::default()
        },
    }
}

/// The entries of `log` from `from` to `until` (sequences, inclusive) whose time lies in
/// `since..=until_time` (microseconds), as export records.
pub fn export(
    log: &ExchangeLog,
    trust: &AuditTrust,
    from: u64,
    until: u64,
    time: (Option<i64>, Option<i64>),
) -> Result<Vec<ExportRecord>, crate::log::LogError> {
    let country = trust.country;
    // The latest checkpoint any peer cosigned, and the tree it commits to.
    let mut latest: Option<(u64, CountryCode, pb::Checkpoint)> = None;
    for peer in trust.peers.keys() {
        if let Some(seq) = log.last_cosigned(*peer)?
            && let Some(content) = log.content(seq)?
            && let Ok((checkpoint, _, _)) = crate::exchange::checkpoint::open(&content)
            && latest
                .as_ref()
                .is_none_or(|(_, _, c)| c.size < checkpoint.size)
        {
            latest = Some((seq, *peer, checkpoint));
        }
    }
    let tree = match &latest {
        Some((_, _, c)) => Some(crate::crypto::merkle::Tree::new(log.leaves(c.size)?)),
        None => None,
    };
    let proof_of = |sequence: u64| -> Option<ExportProof> {
        let (entry, peer, checkpoint) = latest.as_ref()?;
        let tree = tree.as_ref()?;
        if sequence == 0 || sequence > checkpoint.size {
            return None;
        }
        let index = usize::try_from(sequence - 1).ok()?;
        Some(ExportProof {
            checkpoint_entry: *entry,
            cosigned_by: peer.to_string(),
            tree_size: checkpoint.size,
            root_hash: hex(&checkpoint.root_hash),
            leaf_index: sequence - 1,
            path: tree
                .inclusion_proof(index)
                .iter()
                .map(|d| d.hex())
                .collect(),
        })
    };
    let mut out = Vec::new();
    let mut next = from.max(1);
    while next <= until {
        let batch = log.range(next, 1024)?;
        let Some(last) = batch.last() else { break };
        next = last.entry.sequence + 1;
        for stored in batch {
            let e = &stored.entry;
            if e.sequence > until {
                break;
            }
            if time.0.is_some_and(|t| e.recorded_at_micros < t)
                || time.1.is_some_and(|t| e.recorded_at_micros > t)
            {
                continue;
            }
            let kind = stored.kind();
            let (content, withheld) = match log.content(e.sequence) {
                Ok(Some(c)) => (Some(c), None),
                Ok(None) if crate::log::is_message(kind) => (
                    None,
                    crate::exchange::retention::redaction_note(log, e.sequence)?
                        .or_else(|| Some("content no longer held".into())),
                ),
                Ok(None) => (None, None),
                Err(crate::log::LogError::Seal(crate::crypto::seal::SealError::NoKey {
                    ..
                })) => (
                    None,
                    Some("encrypted at rest; export with the log key to read it".into()),
                ),
                Err(e) => return Err(e),
            };
            let envelope = match kind {
                pb::EntryKind::MessageSent | pb::EntryKind::MessageReceived => content
                    .as_deref()
                    .and_then(|c| pb::Envelope::decode(c).ok())
                    .and_then(|env| serde_json::to_value(env).ok()),
                _ => None,
            };
            let reconciliation = match kind {
                pb::EntryKind::Reconciliation => content
                    .as_deref()
                    .and_then(|c| pb::Reconciliation::decode(c).ok())
                    .and_then(|r| serde_json::to_value(r).ok()),
                _ => None,
            };
            let receipt = match kind {
                pb::EntryKind::MessageReceived => {
                    log.issued_receipt(e.sequence)?.and_then(export_receipt)
                }
                pb::EntryKind::ReceiptReceived => content
                    .as_deref()
                    .and_then(|c| pb::SignedReceipt::decode(c).ok())
                    .and_then(export_receipt),
                _ => None,
            };
            out.push(ExportRecord {
                node: country.to_string(),
                sequence: e.sequence,
                recorded_at: crate::domain::model::format_micros(e.recorded_at_micros),
                kind: EntryName::of(e.kind),
                peer: e.peer.clone(),
                message_id: e.message_id.clone(),
                message_kind: MessageName::of(e.message_kind),
                content_sha256: hex(&e.content_sha256),
                entry_hash: stored.hash.hex(),
                previous_hash: hex(&e.previous_hash),
                refers_to: e.refers_to,
                reference: e.reference.clone(),
                reason: e.reason.clone(),
                actor: e.actor.clone(),
                copy_of: e.copy_of.clone(),
                consultation: match kind {
                    pb::EntryKind::Consultation => content
                        .as_deref()
                        .and_then(|c| pb::Consultation::decode(c).ok())
                        .and_then(|c| serde_json::to_value(c).ok()),
                    _ => None,
                },
                envelope,
                reconciliation,
                withheld,
                receipt,
                proof: proof_of(e.sequence),
            });
        }
    }
    Ok(out)
}

/// Where two countries' exports disagree.
pub fn compare(mine: &[ExportRecord], theirs: &[ExportRecord]) -> Vec<String> {
    let mut findings = Vec::new();
    let side =
        |records: &[ExportRecord]| records.first().map(|r| r.node.clone()).unwrap_or_default();
    let (a, b) = (side(mine), side(theirs));
    for (from, to, from_name, to_name) in [(mine, theirs, &a, &b), (theirs, mine, &b, &a)] {
        let received: BTreeMap<&str, &ExportRecord> = to
            .iter()
            .filter(|r| r.kind == EntryName::Received && &r.peer == from_name)
            .map(|r| (r.message_id.as_str(), r))
            .collect();
        let failed: std::collections::BTreeSet<u64> = from
            .iter()
            .filter(|r| r.kind == EntryName::Failed)
            .map(|r| r.refers_to)
            .collect();
        let receipts: BTreeMap<u64, &ExportReceipt> = from
            .iter()
            .filter(|r| r.kind == EntryName::Receipt)
            .filter_map(|r| r.receipt.as_ref().map(|x| (r.refers_to, x)))
            .collect();
        for sent in from
            .iter()
            .filter(|r| r.kind == EntryName::Sent && &r.peer == to_name)
        {
            let id = &sent.message_id;
            let Some(got) = received.get(id.as_str()) else {
                if !failed.contains(&sent.sequence) {
                    findings.push(format!(
                        "{from_name} sent {id} (entry {}), but {to_name}'s log lacks it",
                        sent.sequence
                    ));
                }
                continue;
            };
            if got.content_sha256 != sent.content_sha256 {
                findings.push(format!(
                    "{id}: {from_name} sent content {}, {to_name} stored {}",
                    sent.content_sha256, got.content_sha256
                ));
            }
            if let Some(receipt) = receipts.get(&sent.sequence)
                && (receipt.log_sequence != got.sequence || receipt.entry_hash != got.entry_hash)
            {
                findings.push(format!(
                    "{id}: {from_name} holds a receipt for {to_name} entry {} ({}), but {to_name}'s entry {} has hash {}",
                    receipt.log_sequence, receipt.entry_hash, got.sequence, got.entry_hash
                ));
            }
        }
        let sent_ids: std::collections::BTreeSet<&str> = from
            .iter()
            .filter(|r| r.kind == EntryName::Sent && &r.peer == to_name)
            .map(|r| r.message_id.as_str())
            .collect();
        for (id, got) in &received {
            if !sent_ids.contains(id) {
                findings.push(format!(
                    "{to_name} holds {id} from {from_name} (entry {}), but {from_name}'s export has no such sent message",
                    got.sequence
                ));
            }
        }
    }
    findings
}
