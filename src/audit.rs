//! Auditing a node's exchange log: the whole chain, every content digest, and every receipt's
//! signature against the certificates of the CA that vouches for its signer. Works on a data
//! directory (or a copy of one) and certificates alone.

use std::collections::BTreeMap;

use prost::Message;
use rustls::pki_types::CertificateDer;

use crate::config::NodeConfig;
use crate::log::{Checked, ExchangeLog, VerifyError};
use crate::model::{CountryCode, hex};
use crate::pb;
use crate::receipt;
use crate::tls::{self, TlsError};

/// The certificates an audit checks receipts against.
#[derive(Debug, Clone)]
pub struct AuditTrust {
    /// The audited node's country.
    pub country: CountryCode,
    /// Its CA: receipts it issued chain here.
    pub own_ca: Vec<CertificateDer<'static>>,
    /// Each peer's CA: receipts it returned chain there.
    pub peers: BTreeMap<CountryCode, Vec<CertificateDer<'static>>>,
}

impl AuditTrust {
    /// The trust anchors named in a node's configuration.
    pub fn from_config(config: &NodeConfig) -> Result<Self, TlsError> {
        let mut peers = BTreeMap::new();
        for peer in &config.peers {
            peers.insert(peer.country, tls::load_certs(&peer.ca)?);
        }
        Ok(Self {
            country: config.country,
            own_ca: tls::load_certs(&config.operator_listener.ca)?,
            peers,
        })
    }
}

/// What a successful audit checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditReport {
    /// Entries whose chain link and content digest hold.
    pub entries: u64,
    /// Receipts whose signature, certificate chain and contents hold.
    pub receipts: u64,
}

/// Verifies `log` in full; the error names the first bad entry.
pub fn verify(log: &ExchangeLog, trust: &AuditTrust) -> Result<AuditReport, VerifyError> {
    let mut receipts = 0;
    let entries = log.verify_with(|checked| {
        let e = checked.entry;
        match pb::EntryKind::try_from(e.kind).unwrap_or_default() {
            pb::EntryKind::MessageReceived => {
                check_issued(checked, trust)?;
                receipts += 1;
            }
            pb::EntryKind::ReceiptReceived => {
                check_received(log, checked, trust)?;
                receipts += 1;
            }
            pb::EntryKind::DeliveryFailed => {
                let sent = referred(log, e)?;
                if sent.message_id != e.message_id {
                    return Err(format!(
                        "names message {} but entry {} is {}",
                        e.message_id, e.refers_to, sent.message_id
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(AuditReport { entries, receipts })
}

fn decode_signed(bytes: &[u8], what: &str) -> Result<pb::SignedReceipt, String> {
    pb::SignedReceipt::decode(bytes).map_err(|e| format!("{what} cannot be decoded: {e}"))
}

/// The receipt this node issued must be signed by this node and describe this very entry.
fn check_issued(checked: &Checked<'_>, trust: &AuditTrust) -> Result<(), String> {
    let e = checked.entry;
    let bytes = checked
        .issued_receipt
        .ok_or("the receipt this node issued is missing")?;
    let signed = decode_signed(bytes, "the issued receipt")?;
    let r = receipt::verify(&signed, &trust.own_ca, trust.country)
        .map_err(|err| format!("the issued receipt is not valid: {err}"))?;
    let mismatch = if r.message_id != e.message_id {
        Some("message id")
    } else if r.envelope_sha256 != e.content_sha256 {
        Some("envelope digest")
    } else if r.log_sequence != e.sequence {
        Some("log sequence")
    } else if r.entry_hash != checked.hash.0 {
        Some("entry hash")
    } else if r.sender != e.peer {
        Some("sender")
    } else {
        None
    };
    match mismatch {
        Some(field) => Err(format!(
            "the issued receipt's {field} does not match the entry"
        )),
        None => Ok(()),
    }
}

/// A peer's receipt must be signed by that peer's node and acknowledge the message it names.
fn check_received(
    log: &ExchangeLog,
    checked: &Checked<'_>,
    trust: &AuditTrust,
) -> Result<(), String> {
    let e = checked.entry;
    let peer: CountryCode = e.peer.parse().map_err(|err| format!("peer: {err}"))?;
    let anchors = trust
        .peers
        .get(&peer)
        .ok_or_else(|| format!("no CA is configured for peer {peer}"))?;
    let bytes = checked.content.ok_or("the receipt is missing")?;
    let signed = decode_signed(bytes, "the receipt")?;
    let r = receipt::verify(&signed, anchors, peer)
        .map_err(|err| format!("the receipt from {peer} is not valid: {err}"))?;
    let sent = referred(log, e)?;
    if r.message_id != sent.message_id || r.message_id != e.message_id {
        return Err(format!(
            "the receipt is for message {}, but entry {} is {}",
            r.message_id, e.refers_to, sent.message_id
        ));
    }
    if r.envelope_sha256 != sent.content_sha256 {
        return Err(format!(
            "the receipt acknowledges content {} but entry {} holds {}",
            hex(&r.envelope_sha256),
            e.refers_to,
            hex(&sent.content_sha256)
        ));
    }
    Ok(())
}

/// The sent message an entry refers to, which must come before it.
fn referred(log: &ExchangeLog, e: &pb::LogEntry) -> Result<pb::LogEntry, String> {
    if e.refers_to == 0 || e.refers_to >= e.sequence {
        return Err(format!(
            "refers to entry {}, which cannot precede it",
            e.refers_to
        ));
    }
    let sent = log
        .entry(e.refers_to)
        .map_err(|err| err.to_string())?
        .ok_or_else(|| format!("refers to entry {}, which is missing", e.refers_to))?;
    if sent.kind() != pb::EntryKind::MessageSent || sent.entry.peer != e.peer {
        return Err(format!(
            "refers to entry {}, which is not a message sent to {}",
            e.refers_to, e.peer
        ));
    }
    Ok(sent.entry)
}
