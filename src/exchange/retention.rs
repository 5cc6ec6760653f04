//! Retention: at the end of a message kind's retention period, the personal data in its
//! content is removed, and a redaction entry in the chain records when and under which policy.
//!
//! What stays: the message's log entry (ids, countries, times, the SHA-256 of the envelope),
//! the receipts on both sides, checkpoints and reconciliations. The chain commits to digests,
//! not content, so `audit verify` still passes, and a receipt still proves which envelope was
//! exchanged. What goes: the envelope itself, with every name, document number and note in it.
//! Messages still waiting for delivery are kept until they are settled.

use serde::Deserialize;

use crate::log::{ExchangeLog, LogError, NewEntry, is_message};
use crate::pb;

const MICROS_PER_DAY: i64 = 86_400 * 1_000_000;
/// The longest retention period that can be set (100 years); longer is a typo, and leaving the
/// kind out keeps its content for good.
pub const MAX_DAYS: u32 = 36_500;
/// Redactions committed together: one atomic batch and one flush.
const BATCH: usize = 256;

/// A retention policy: how long each kind of message keeps its content.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    /// The policy's name, recorded in every redaction and shown to auditors.
    pub policy: String,
    /// Days a traveller alert keeps its content after it was logged; absent keeps it.
    #[serde(default)]
    pub alert_days: Option<u32>,
    /// Days a document-fraud notice keeps its content.
    #[serde(default)]
    pub fraud_notice_days: Option<u32>,
    /// Days a case response keeps its content.
    #[serde(default)]
    pub case_response_days: Option<u32>,
    /// Days a statistics report keeps its content (reports hold counts, not people).
    #[serde(default)]
    pub statistics_days: Option<u32>,
    /// Seconds between sweeps while the node runs; the node also sweeps at start.
    #[serde(default = "default_sweep_interval")]
    pub sweep_interval_secs: u64,
}

fn default_sweep_interval() -> u64 {
    3600
}

impl RetentionPolicy {
    /// Days the content of `kind` is kept, if it is not kept for good.
    pub fn days(&self, kind: pb::MessageKind) -> Option<u32> {
        match kind {
            pb::MessageKind::TravellerAlert => self.alert_days,
            pb::MessageKind::DocumentFraudNotice => self.fraud_notice_days,
            pb::MessageKind::CaseResponse => self.case_response_days,
            pb::MessageKind::StatisticsReport => self.statistics_days,
            pb::MessageKind::Unspecified => None,
        }
    }

    /// What is wrong with the policy, naming the key.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if self.policy.trim().is_empty() || self.policy.len() > 120 {
            return Some((
                "policy",
                "must name the policy in 1 to 120 characters".into(),
            ));
        }
        for (key, days) in [
            ("alert_days", self.alert_days),
            ("fraud_notice_days", self.fraud_notice_days),
            ("case_response_days", self.case_response_days),
            ("statistics_days", self.statistics_days),
        ] {
            if days == Some(0) {
                return Some((
                    key,
                    "must be at least 1 day; leave it out to keep content".into(),
                ));
            }
            if days.is_some_and(|d| d > MAX_DAYS) {
                return Some((
                    key,
                    format!("must be at most {MAX_DAYS} days; leave it out to keep content"),
                ));
            }
        }
        if self.sweep_interval_secs == 0 {
            return Some(("sweep_interval_secs", "must be at least 1".into()));
        }
        None
    }

    fn reason(&self, kind: pb::MessageKind, days: u32) -> String {
        let what = match kind {
            pb::MessageKind::TravellerAlert => "alerts",
            pb::MessageKind::DocumentFraudNotice => "fraud notices",
            pb::MessageKind::CaseResponse => "case responses",
            pb::MessageKind::StatisticsReport => "statistics reports",
            pb::MessageKind::Unspecified => "messages",
        };
        format!("{} ({what} kept {days} days)", self.policy)
    }
}

/// Removes the content of every message past its retention period at `now_micros`, each with
/// a redaction entry. Returns the number of messages redacted. Safe to run again: redacted
/// messages are skipped.
pub fn sweep(
    log: &ExchangeLog,
    policy: &RetentionPolicy,
    now_micros: i64,
) -> Result<u64, LogError> {
    let Some(shortest) = [
        pb::MessageKind::TravellerAlert,
        pb::MessageKind::DocumentFraudNotice,
        pb::MessageKind::CaseResponse,
        pb::MessageKind::StatisticsReport,
    ]
    .into_iter()
    .filter_map(|k| policy.days(k))
    .min() else {
        return Ok(0);
    };
    let horizon = now_micros.saturating_sub(period(shortest));
    let mut due = Vec::new();
    let mut next = 1;
    'scan: loop {
        let batch = log.range(next, 1024)?;
        let Some(last) = batch.last() else { break };
        next = last.entry.sequence + 1;
        for stored in batch {
            let e = &stored.entry;
            if e.recorded_at_micros > horizon {
                break 'scan;
            }
            if !is_message(stored.kind()) {
                continue;
            }
            let kind = pb::MessageKind::try_from(e.message_kind).unwrap_or_default();
            let Some(days) = policy.days(kind) else {
                continue;
            };
            let expires = e.recorded_at_micros.saturating_add(period(days));
            if expires > now_micros || log.redaction_of(e.sequence)?.is_some() {
                continue;
            }
            let settled = stored.kind() == pb::EntryKind::MessageReceived
                || log.receipt_for(e.sequence)?.is_some()
                || log.failure(e.sequence)?.is_some();
            if settled {
                due.push((e.sequence, policy.reason(kind, days)));
            }
        }
    }
    let mut redacted = 0;
    for chunk in due.chunks(BATCH) {
        let chunk = chunk.to_vec();
        redacted += log.transact_blocking(move |t| {
            let mut n = 0;
            for (sequence, reason) in chunk {
                if !t.holds_content(sequence)? {
                    continue;
                }
                let Some(message) = t.entry(sequence)? else {
                    continue;
                };
                let m = message.entry;
                t.remove_content(sequence);
                t.append(NewEntry {
                    kind: pb::EntryKind::Redaction,
                    peer: m.peer.parse().ok(),
                    message_id: m.message_id,
                    message_kind: pb::MessageKind::try_from(m.message_kind).unwrap_or_default(),
                    refers_to: sequence,
                    reason,
                    ..NewEntry::default()
                })?;
                n += 1;
            }
            Ok(n)
        })?;
    }
    if redacted > 0 {
        tracing::info!(redacted, policy = %policy.policy, "message content redacted at the end of retention");
    }
    Ok(redacted)
}

/// A retention period in microseconds, saturating rather than wrapping.
pub fn period(days: u32) -> i64 {
    i64::from(days).saturating_mul(MICROS_PER_DAY)
}

/// "redacted on DATE under policy X" for a message whose content was removed, if it was.
pub fn redaction_note(log: &ExchangeLog, sequence: u64) -> Result<Option<String>, LogError> {
    let Some(by) = log.redaction_of(sequence)? else {
        return Ok(None);
    };
    let Some(redaction) = log.entry(by)? else {
        return Ok(None);
    };
    let date = crate::domain::model::format_micros(redaction.entry.recorded_at_micros);
    let day = date.get(..10).unwrap_or(&date);
    Ok(Some(format!(
        "redacted on {day} under policy {}",
        redaction.entry.reason
    )))
}
