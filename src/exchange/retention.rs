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
/// messages are skipped. Reads the log from its start; a running node keeps a [`Sweeper`].
pub fn sweep(
    log: &ExchangeLog,
    policy: &RetentionPolicy,
    now_micros: i64,
) -> Result<u64, LogError> {
    Ok(Sweeper::default().sweep(log, policy, now_micros)?.redacted)
}

/// The kinds a policy can set a period for.
const KINDS: [pb::MessageKind; 4] = [
    pb::MessageKind::TravellerAlert,
    pb::MessageKind::DocumentFraudNotice,
    pb::MessageKind::CaseResponse,
    pb::MessageKind::StatisticsReport,
];

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Messages whose content was removed.
    pub redacted: u64,
    /// Log entries read to find them.
    pub examined: u64,
}

/// Retention sweeps that read the log incrementally: a cursor per kind marks where the last
/// sweep stopped (the first entry not yet past that kind's period), so each sweep reads only
/// what came of age since, and the messages that were due but not settled yet.
#[derive(Debug, Default)]
pub struct Sweeper {
    /// Per kind: every entry before this sequence has been read for it.
    cursors: std::collections::BTreeMap<i32, u64>,
    /// Messages past their period, but still waiting for delivery: read again each sweep.
    unsettled: std::collections::BTreeSet<u64>,
}

impl Sweeper {
    /// Removes the content of every message past its retention period at `now_micros`, each
    /// with a redaction entry.
    pub fn sweep(
        &mut self,
        log: &ExchangeLog,
        policy: &RetentionPolicy,
        now_micros: i64,
    ) -> Result<Swept, LogError> {
        let mut found = Found::default();
        let mut examined = 0;
        // Taken into use only once the sweep succeeds: a failed one is read again from the
        // cursors it started with.
        let mut cursors = self.cursors.clone();
        for &sequence in &self.unsettled {
            let Some(stored) = log.entry(sequence)? else {
                continue;
            };
            examined += 1;
            let kind = pb::MessageKind::try_from(stored.entry.message_kind).unwrap_or_default();
            if let Some(days) = policy.days(kind) {
                found.consider(log, policy, &stored, kind, days, now_micros)?;
            }
        }
        // One pass from the lowest cursor: each entry is read once, and handed to every kind
        // whose cursor it has reached; a kind stops at its first entry not yet past its period.
        let mut open: Vec<(pb::MessageKind, u32, i64)> = KINDS
            .into_iter()
            .filter_map(|kind| {
                let days = policy.days(kind)?;
                Some((kind, days, now_micros.saturating_sub(period(days))))
            })
            .collect();
        let mut next = open
            .iter()
            .map(|(kind, _, _)| *cursors.entry(*kind as i32).or_insert(1))
            .min()
            .unwrap_or(u64::MAX);
        'scan: while !open.is_empty() {
            let batch = log.range(next, 1024)?;
            if batch.is_empty() {
                break;
            }
            for stored in batch {
                let e = &stored.entry;
                next = e.sequence + 1;
                let mut read = false;
                let mut i = 0;
                while i < open.len() {
                    let (kind, days, horizon) = open[i];
                    let cursor = cursors.entry(kind as i32).or_insert(1);
                    if e.sequence < *cursor {
                        i += 1;
                        continue;
                    }
                    if e.recorded_at_micros > horizon {
                        // This kind is done until the next sweep; its cursor stays here.
                        open.swap_remove(i);
                        continue;
                    }
                    read = true;
                    *cursor = e.sequence + 1;
                    if is_message(stored.kind()) && e.message_kind == kind as i32 {
                        found.consider(log, policy, &stored, kind, days, now_micros)?;
                    }
                    i += 1;
                }
                if read {
                    examined += 1;
                }
                if open.is_empty() {
                    break 'scan;
                }
            }
        }
        let Found { mut due, unsettled } = found;
        due.sort_unstable_by_key(|(sequence, _)| *sequence);
        let redacted = redact(log, due)?;
        self.cursors = cursors;
        self.unsettled = unsettled;
        if redacted > 0 {
            tracing::info!(redacted, policy = %policy.policy, "message content redacted at the end of retention");
        }
        Ok(Swept { redacted, examined })
    }
}

/// What a sweep found: messages to redact now, with their reasons, and messages past their
/// period but not yet settled with the peer.
#[derive(Default)]
struct Found {
    due: Vec<(u64, String)>,
    unsettled: std::collections::BTreeSet<u64>,
}

impl Found {
    /// Files the message `stored` of `kind`, kept `days`, as due, unsettled, or neither at
    /// `now_micros`.
    fn consider(
        &mut self,
        log: &ExchangeLog,
        policy: &RetentionPolicy,
        stored: &crate::log::StoredEntry,
        kind: pb::MessageKind,
        days: u32,
        now_micros: i64,
    ) -> Result<(), LogError> {
        let e = &stored.entry;
        let expires = e.recorded_at_micros.saturating_add(period(days));
        if expires > now_micros || log.redaction_of(e.sequence)?.is_some() {
            return Ok(());
        }
        let settled = stored.kind() == pb::EntryKind::MessageReceived
            || log.receipt_for(e.sequence)?.is_some()
            || log.failure(e.sequence)?.is_some();
        if settled {
            self.due.push((e.sequence, policy.reason(kind, days)));
        } else {
            self.unsettled.insert(e.sequence);
        }
        Ok(())
    }
}

/// Removes the content of each message in `due`, each with its redaction entry in the same
/// write, [`BATCH`] to a write.
fn redact(log: &ExchangeLog, due: Vec<(u64, String)>) -> Result<u64, LogError> {
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
                t.remove_content(sequence)?;
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
