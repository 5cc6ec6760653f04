//! Reconciliation of statistics: what this node's log shows was exchanged with a peer in a
//! period, counted by envelope creation date and direction with a digest of the message ids,
//! and the comparison of a received report's counts with it, recorded as a chained entry.

use std::collections::BTreeMap;

use prost::Message;

use crate::domain::kinds::{COUNTED, direction_label};
use crate::domain::model::{CountryCode, Digest, format_instant, parse_date, parse_instant};
use crate::domain::validate::ValidationError;
use crate::exchange::error::ExchangeError;
use crate::log::{ExchangeLog, LogError, NewEntry};
use crate::pb;

const DIRECTIONS: [pb::Direction; 2] = [pb::Direction::Sent, pb::Direction::Received];

/// What this log shows was exchanged with `peer` in `period`, by envelope creation date (UTC),
/// as this node sees it: every counted kind in both directions, zeros included.
pub fn tally(
    log: &ExchangeLog,
    peer: CountryCode,
    period: &pb::Period,
) -> Result<Vec<pb::ExchangeCount>, ExchangeError> {
    let (start, end) = period_dates(period)?;
    let mut ids: BTreeMap<(i32, i32), Vec<String>> = BTreeMap::new();
    let sent = log.sent_to(peer, 1, u64::MAX)?;
    let received = log.inbox()?;
    let sequences = sent
        .into_iter()
        .map(|s| (s, pb::Direction::Sent))
        .chain(received.into_iter().map(|s| (s, pb::Direction::Received)));
    for (sequence, direction) in sequences {
        let Some(stored) = log.entry(sequence)? else {
            continue;
        };
        let e = &stored.entry;
        if e.peer != peer.as_str() || !COUNTED.iter().any(|k| *k as i32 == e.message_kind) {
            continue;
        }
        // The entry keeps the envelope's date, also once retention has removed the envelope;
        // entries written before it did are read from their envelope.
        let created_at = if e.created_at.is_empty() {
            let Some(content) = log.content(sequence)? else {
                continue;
            };
            pb::Envelope::decode(content.as_slice())
                .map_err(|err| LogError::Corrupt {
                    sequence,
                    reason: format!("stored envelope: {err}"),
                })?
                .created_at
        } else {
            e.created_at.clone()
        };
        let Ok(created) = parse_instant(&created_at) else {
            continue;
        };
        if (start..=end).contains(&created.date()) {
            ids.entry((e.message_kind, direction as i32))
                .or_default()
                .push(e.message_id.clone());
        }
    }
    let mut out = Vec::with_capacity(COUNTED.len() * DIRECTIONS.len());
    for kind in COUNTED {
        for direction in DIRECTIONS {
            let mut list = ids
                .remove(&(kind as i32, direction as i32))
                .unwrap_or_default();
            list.sort();
            out.push(pb::ExchangeCount {
                kind: kind as i32,
                direction: direction as i32,
                count: list.len() as u64,
                message_ids_sha256: ids_digest(&list).0.to_vec(),
            });
        }
    }
    Ok(out)
}

fn ids_digest(sorted: &[String]) -> Digest {
    let mut text = String::with_capacity(sorted.len() * 24);
    for id in sorted {
        text.push_str(id);
        text.push('\n');
    }
    Digest::of(text.as_bytes())
}

pub(crate) fn period_dates(p: &pb::Period) -> Result<(time::Date, time::Date), ExchangeError> {
    let date = |field: &str, v: &str| {
        parse_date(v).map_err(|e| {
            ExchangeError::Invalid(ValidationError {
                field: format!("period.{field}"),
                reason: e.to_string(),
            })
        })
    };
    let start = date("start_date", &p.start_date)?;
    let end = date("end_date", &p.end_date)?;
    if end < start {
        return Err(ExchangeError::Invalid(ValidationError {
            field: "period.end_date".into(),
            reason: "is before start_date".into(),
        }));
    }
    Ok((start, end))
}

/// Compares a peer's counts with this node's, line by line as this node sees them.
pub fn compare(
    theirs: &[pb::ExchangeCount],
    ours: &[pb::ExchangeCount],
) -> Vec<pb::ReconciliationLine> {
    ours.iter()
        .map(|o| {
            let mirrored = match pb::Direction::try_from(o.direction).unwrap_or_default() {
                pb::Direction::Sent => pb::Direction::Received,
                pb::Direction::Received => pb::Direction::Sent,
                pb::Direction::Unspecified => pb::Direction::Unspecified,
            } as i32;
            let t = theirs
                .iter()
                .find(|t| t.kind == o.kind && t.direction == mirrored);
            let (count, digest) =
                t.map_or((0, Vec::new()), |t| (t.count, t.message_ids_sha256.clone()));
            pb::ReconciliationLine {
                kind: o.kind,
                direction: o.direction,
                ours: o.count,
                theirs: count,
                agrees: count == o.count && digest == o.message_ids_sha256,
                our_message_ids_sha256: o.message_ids_sha256.clone(),
                their_message_ids_sha256: digest,
            }
        })
        .collect()
}

/// Compares the received report at `sequence` with this log now, and records the comparison
/// unless the latest one recorded for it says the same.
/// A report that carries no exchange counts has nothing to compare: `None`.
pub async fn reconcile_report(
    log: &ExchangeLog,
    sequence: u64,
) -> Result<Option<pb::Reconciliation>, ExchangeError> {
    let written = log.clone();
    let log = log.clone();
    let outcome = tokio::task::spawn_blocking(move || -> Result<_, ExchangeError> {
        let stored = log
            .entry(sequence)?
            .ok_or_else(|| ExchangeError::NotFound(format!("log entry {sequence}")))?;
        let content = log
            .content(sequence)?
            .ok_or_else(|| ExchangeError::NotFound(format!("content of entry {sequence}")))?;
        let envelope = pb::Envelope::decode(content.as_slice()).map_err(|e| LogError::Corrupt {
            sequence,
            reason: format!("stored envelope: {e}"),
        })?;
        let Some(pb::envelope::Body::StatisticsReport(report)) = envelope.body else {
            return Err(ExchangeError::BadRequest(format!(
                "entry {sequence} is not a statistics report"
            )));
        };
        if report.exchanged.is_empty() {
            return Ok(None);
        }
        let peer: CountryCode = stored.entry.peer.parse().map_err(|e| LogError::Corrupt {
            sequence,
            reason: format!("peer: {e}"),
        })?;
        let period = report.period.clone().unwrap_or_default();
        let ours = tally(&log, peer, &period)?;
        let lines = compare(&report.exchanged, &ours);
        let last = recorded(&log, sequence)?;
        if let Some(last) = last
            && last.lines == lines
        {
            return Ok(Some((last, false)));
        }
        Ok(Some((
            pb::Reconciliation {
                peer: peer.to_string(),
                report_message_id: envelope.message_id,
                revision: report.revision,
                period: Some(period),
                lines,
                compared_at: format_instant(time::OffsetDateTime::now_utc()),
            },
            true,
        )))
    })
    .await
    .map_err(|e| ExchangeError::internal("reconciling", e))??;
    let Some((record, changed)) = outcome else {
        return Ok(None);
    };
    if !changed {
        return Ok(Some(record));
    }
    let findings = record.lines.iter().filter(|l| !l.agrees).count();
    let entry = NewEntry {
        kind: pb::EntryKind::Reconciliation,
        peer: Some(
            record
                .peer
                .parse()
                .map_err(|e| ExchangeError::internal("a stored reconciliation's peer", e))?,
        ),
        message_id: record.report_message_id.clone(),
        message_kind: pb::MessageKind::StatisticsReport,
        refers_to: sequence,
        content: Some(record.encode_to_vec()),
        ..Default::default()
    };
    written.transact(move |t| t.append(entry)).await?;
    for line in record.lines.iter().filter(|l| !l.agrees) {
        tracing::warn!(
            peer = %record.peer,
            report = %record.report_message_id,
            kind = crate::domain::kinds::kind_label(line.kind),
            direction = direction_label(line.direction),
            ours = line.ours,
            theirs = line.theirs,
            "statistics reconciliation finding"
        );
    }
    tracing::info!(peer = %record.peer, report = %record.report_message_id, findings, "statistics reconciled");
    Ok(Some(record))
}

pub(crate) fn recorded(
    log: &ExchangeLog,
    report: u64,
) -> Result<Option<pb::Reconciliation>, ExchangeError> {
    let Some(sequence) = log.reconciliation_of(report)? else {
        return Ok(None);
    };
    let content = log.content(sequence)?.ok_or_else(|| LogError::Corrupt {
        sequence,
        reason: "reconciliation content is missing".into(),
    })?;
    Ok(Some(
        pb::Reconciliation::decode(content.as_slice()).map_err(|e| LogError::Corrupt {
            sequence,
            reason: format!("stored reconciliation: {e}"),
        })?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison_mirrors_directions_and_catches_swapped_messages() {
        let count = |kind: pb::MessageKind, direction: pb::Direction, ids: &[&str]| {
            let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
            pb::ExchangeCount {
                kind: kind as i32,
                direction: direction as i32,
                count: ids.len() as u64,
                message_ids_sha256: ids_digest(&ids).0.to_vec(),
            }
        };
        use pb::Direction::{Received, Sent};
        use pb::MessageKind::TravellerAlert as A;
        let theirs = [
            count(A, Received, &["IDN-1", "IDN-2"]),
            count(A, Sent, &["KHM-1"]),
        ];
        let ours = [
            count(A, Sent, &["IDN-1", "IDN-3"]),
            count(A, Received, &["KHM-1"]),
        ];
        let lines = compare(&theirs, &ours);
        assert_eq!((lines[0].ours, lines[0].theirs), (2, 2));
        assert!(!lines[0].agrees, "same count, different messages");
        assert!(lines[1].agrees);
    }
}
