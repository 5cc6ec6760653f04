//! Statistics reports. The push numbers revisions and attaches what the log shows was exchanged
//! in the period; the same figures again change nothing. The receiving node compares those
//! counts with its own log and records the comparison, disagreements included, as a
//! reconciliation entry. Also here: periods, figures files, the CSV export and the chart.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use prost::Message;
use serde::Deserialize;

use crate::audit::csv_field;
use crate::exchange::{Exchange, ExchangeError, Submitted};
use crate::log::{ExchangeLog, LogError, NewEntry};
use crate::model::{
    CountryCode, Digest, Identity, Role, format_instant, parse_date, parse_instant,
};
use crate::pb;
use crate::validate::ValidationError;

/// The kinds whose exchange a report counts. Statistics reports themselves are not counted: the
/// report would count itself.
pub(crate) const COUNTED: [pb::MessageKind; 3] = [
    pb::MessageKind::TravellerAlert,
    pb::MessageKind::DocumentFraudNotice,
    pb::MessageKind::CaseResponse,
];

const DIRECTIONS: [pb::Direction; 2] = [pb::Direction::Sent, pb::Direction::Received];

/// A period as written on the command line: `2025-04` (a month), `2025-04-17` (a day) or
/// `2025-04-01..2025-04-15` (a closed range of days).
pub fn parse_period(s: &str) -> Result<pb::Period, String> {
    let bad =
        || format!("{s:?} is not a period: give YYYY-MM, YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD");
    let (start, end) = if let Some((a, b)) = s.split_once("..") {
        let a = parse_date(a).map_err(|_| bad())?;
        let b = parse_date(b).map_err(|_| bad())?;
        if b < a {
            return Err(format!("{s:?}: the period ends before it starts"));
        }
        (a, b)
    } else if s.len() == 7 {
        let first = parse_date(&format!("{s}-01")).map_err(|_| bad())?;
        let last = time::util::days_in_month(first.month(), first.year());
        let end = first.replace_day(last).map_err(|_| bad())?;
        (first, end)
    } else {
        let d = parse_date(s).map_err(|_| bad())?;
        (d, d)
    };
    Ok(pb::Period {
        start_date: start.to_string(),
        end_date: end.to_string(),
    })
}

/// A period as people write it: the month, the day, or the range.
pub fn period_label(p: &pb::Period) -> String {
    if p.start_date == p.end_date {
        return p.start_date.clone();
    }
    if let Ok(month) = parse_period(p.start_date.get(..7).unwrap_or_default())
        && month == *p
    {
        return p.start_date[..7].to_owned();
    }
    format!("{}..{}", p.start_date, p.end_date)
}

/// The figures of one period, as read from a file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Figures {
    pub counters: Vec<pb::Counter>,
    pub source: String,
}

/// Why a figures file was refused.
#[derive(Debug, thiserror::Error)]
pub enum FiguresError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} line {line}, column {column} ({name}): {reason}")]
    Cell {
        path: String,
        line: usize,
        column: usize,
        name: &'static str,
        reason: String,
    },
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
}

/// Reads figures from a `.csv` or `.json` file.
///
/// CSV has the header `counter,location,value`; a row with an empty location is the counter's
/// total, a row with a location one entry of its breakdown. A counter given only by its
/// breakdown totals the breakdown. JSON is `{"source": ..., "counters": [{"name", "value",
/// "breakdown": [{"location", "value"}]}]}`.
pub fn read_figures(path: &Path) -> Result<Figures, FiguresError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| FiguresError::Io {
        path: name.clone(),
        source,
    })?;
    parse_figures(&name, &text)
}

/// Parses figures; `name` ends in `.csv` or `.json` and names them in errors.
pub fn parse_figures(name: &str, text: &str) -> Result<Figures, FiguresError> {
    if name.ends_with(".csv") {
        parse_csv(name, text)
    } else if name.ends_with(".json") {
        parse_json(name, text)
    } else {
        Err(FiguresError::File {
            path: name.to_owned(),
            reason: "give a .csv or .json file".into(),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonFigures {
    #[serde(default)]
    source: String,
    counters: Vec<JsonCounter>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonCounter {
    name: String,
    value: Option<u64>,
    #[serde(default)]
    breakdown: Vec<JsonBreakdown>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonBreakdown {
    location: String,
    value: u64,
}

fn parse_json(path: &str, text: &str) -> Result<Figures, FiguresError> {
    let f: JsonFigures = serde_json::from_str(text).map_err(|e| FiguresError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let bad = |reason: String| FiguresError::File {
        path: path.to_owned(),
        reason,
    };
    let mut counters = Vec::with_capacity(f.counters.len());
    let mut seen = std::collections::BTreeSet::new();
    for (i, c) in f.counters.into_iter().enumerate() {
        if !crate::validate::is_counter_name(&c.name) {
            return Err(bad(format!(
                "counters[{i}].name: {:?} is not a snake_case counter name",
                c.name
            )));
        }
        if !seen.insert(c.name.clone()) {
            return Err(bad(format!(
                "counters[{i}].name: {:?} appears twice",
                c.name
            )));
        }
        let mut locations = std::collections::BTreeSet::new();
        let mut sum: u64 = 0;
        for (j, b) in c.breakdown.iter().enumerate() {
            if b.location.trim().is_empty() || !locations.insert(b.location.trim()) {
                return Err(bad(format!(
                    "counters[{i}].breakdown[{j}].location: empty, or named twice for {:?}",
                    c.name
                )));
            }
            sum = sum.checked_add(b.value).ok_or_else(|| {
                bad(format!(
                    "counters[{i}].breakdown: the locations of {:?} add up to more than a counter holds",
                    c.name
                ))
            })?;
        }
        let value = match c.value {
            Some(v) if !c.breakdown.is_empty() && v != sum => {
                return Err(bad(format!(
                    "counters[{i}].value: {v} for {:?}, but its locations add up to {sum}",
                    c.name
                )));
            }
            Some(v) => v,
            None if c.breakdown.is_empty() => {
                return Err(bad(format!(
                    "counters[{i}]: {:?} has neither a value nor locations",
                    c.name
                )));
            }
            None => sum,
        };
        counters.push(pb::Counter {
            name: c.name,
            value,
            breakdown: c
                .breakdown
                .into_iter()
                .map(|b| pb::Breakdown {
                    location: b.location,
                    value: b.value,
                })
                .collect(),
        });
    }
    Ok(Figures {
        counters,
        source: f.source,
    })
}

const CSV_COLUMNS: [&str; 3] = ["counter", "location", "value"];

fn parse_csv(path: &str, text: &str) -> Result<Figures, FiguresError> {
    let cell = |line: usize, column: usize, reason: String| FiguresError::Cell {
        path: path.to_owned(),
        line,
        column,
        name: CSV_COLUMNS.get(column - 1).copied().unwrap_or("extra"),
        reason,
    };
    let mut rows = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
    let (line, header) = rows.next().ok_or_else(|| FiguresError::File {
        path: path.to_owned(),
        reason: "is empty: the first line must be the header counter,location,value".into(),
    })?;
    let header = split_csv(header).map_err(|(column, reason)| cell(line, column, reason))?;
    for (i, want) in CSV_COLUMNS.iter().enumerate() {
        match header.get(i) {
            Some(h) if h.trim().eq_ignore_ascii_case(want) => {}
            found => {
                return Err(FiguresError::Cell {
                    path: path.to_owned(),
                    line,
                    column: i + 1,
                    name: want,
                    reason: format!(
                        "the header must be counter,location,value; found {:?}",
                        found.map(String::as_str).unwrap_or("nothing")
                    ),
                });
            }
        }
    }
    if header.len() > CSV_COLUMNS.len() {
        return Err(cell(
            line,
            4,
            "the header has more than three columns".into(),
        ));
    }
    // name -> (total and its line, breakdown with lines), in file order.
    let mut order: Vec<String> = Vec::new();
    let mut totals: BTreeMap<String, (u64, usize)> = BTreeMap::new();
    let mut parts: BTreeMap<String, Vec<(String, u64, usize)>> = BTreeMap::new();
    for (line, row) in rows {
        let fields = split_csv(row).map_err(|(column, reason)| cell(line, column, reason))?;
        if fields.len() != 3 {
            return Err(cell(
                line,
                fields.len().min(3) + 1,
                format!("expected 3 columns, found {}", fields.len()),
            ));
        }
        let name = fields[0].trim();
        if !crate::validate::is_counter_name(name) {
            return Err(cell(
                line,
                1,
                format!("{name:?} is not a snake_case counter name"),
            ));
        }
        let location = fields[1].trim();
        let raw = fields[2].trim();
        let value: u64 = raw.parse().map_err(|_| {
            cell(
                line,
                3,
                format!("{raw:?} is not a whole number of zero or more"),
            )
        })?;
        if !order.iter().any(|n| n == name) {
            order.push(name.to_owned());
        }
        if location.is_empty() {
            if let Some((_, first)) = totals.insert(name.to_owned(), (value, line)) {
                return Err(cell(
                    line,
                    1,
                    format!("{name:?} already has a total on line {first}"),
                ));
            }
        } else {
            let list = parts.entry(name.to_owned()).or_default();
            if let Some((_, _, first)) = list.iter().find(|(l, _, _)| l == location) {
                return Err(cell(
                    line,
                    2,
                    format!("{location:?} already appears for {name:?} on line {first}"),
                ));
            }
            list.push((location.to_owned(), value, line));
        }
    }
    if order.is_empty() {
        return Err(FiguresError::File {
            path: path.to_owned(),
            reason: "holds no figures below its header".into(),
        });
    }
    let mut counters = Vec::with_capacity(order.len());
    for name in order {
        let breakdown = parts.remove(&name).unwrap_or_default();
        let sum = breakdown
            .iter()
            .try_fold(0u64, |acc, (_, v, _)| acc.checked_add(*v));
        let value = match (totals.get(&name), sum) {
            (Some(&(total, line)), Some(sum)) if !breakdown.is_empty() && total != sum => {
                return Err(cell(
                    line,
                    3,
                    format!("the total {total} differs from the sum of its locations, {sum}"),
                ));
            }
            (Some(&(total, _)), Some(_)) => total,
            (None, Some(sum)) => sum,
            (_, None) => {
                let line = breakdown.last().map_or(0, |(_, _, l)| *l);
                return Err(cell(line, 3, format!("the values of {name:?} overflow")));
            }
        };
        counters.push(pb::Counter {
            name,
            value,
            breakdown: breakdown
                .into_iter()
                .map(|(location, value, _)| pb::Breakdown { location, value })
                .collect(),
        });
    }
    Ok(Figures {
        counters,
        source: String::new(),
    })
}

/// Splits one CSV row (RFC 4180 quoting); the error carries the 1-based column.
fn split_csv(row: &str) -> Result<Vec<String>, (usize, String)> {
    let mut fields = vec![String::new()];
    let mut chars = row.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        let field = fields.last_mut().expect("one field at least");
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.trim().is_empty() && !was_quoted => {
                field.clear();
                quoted = true;
                was_quoted = true;
            }
            (false, '"') => {
                return Err((fields.len(), "a quote inside an unquoted value".into()));
            }
            (false, ',') => {
                fields.push(String::new());
                was_quoted = false;
            }
            (false, c) if was_quoted && !c.is_whitespace() => {
                return Err((fields.len(), "text after a closing quote".into()));
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err((fields.len(), "a quote is not closed".into()));
    }
    Ok(fields)
}

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

fn period_dates(p: &pb::Period) -> Result<(time::Date, time::Date), ExchangeError> {
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

/// Operators and the sync may write statistics (push, recheck); auditors only read them.
fn statistics_writer(
    exchange: &Exchange,
    caller: &Identity,
    what: &str,
) -> Result<(), ExchangeError> {
    exchange.local_user(caller)?;
    match caller.role {
        Role::Operator | Role::Sync => Ok(()),
        role => Err(ExchangeError::Forbidden(format!(
            "role {role} may not {what}"
        ))),
    }
}

/// A push's outcome.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The revision now current for the period.
    pub revision: u32,
    /// The figures were already the current revision; nothing was logged.
    pub unchanged: bool,
    /// The report's message.
    pub submitted: Submitted,
    /// The exchange counts the report carries.
    pub exchanged: Vec<pb::ExchangeCount>,
}

/// One statistics report in the log.
#[derive(Debug, Clone)]
struct Report {
    sequence: u64,
    peer: CountryCode,
    recorded_at_micros: i64,
    envelope: pb::Envelope,
    report: pb::StatisticsReport,
}

/// The sync's (or an operator's) push of one period's figures to a peer.
pub async fn push(
    exchange: &Exchange,
    caller: &Identity,
    request: pb::PushStatisticsRequest,
) -> Result<Pushed, ExchangeError> {
    statistics_writer(exchange, caller, "push statistics")?;
    let peer = exchange.peer_or_only(&request.peer)?;
    let period = request.period.ok_or_else(|| {
        ExchangeError::Invalid(ValidationError {
            field: "period".into(),
            reason: "is required".into(),
        })
    })?;
    let (start, end) = period_dates(&period)?;
    let own = exchange.country();
    let log = exchange.log().clone();
    let previous = reports(&log, own, own, &[peer], Some(&period))?
        .into_iter()
        .max_by_key(|r| r.report.revision);
    if let Some(last) = &previous
        && last.report.counters == request.counters
        && last.report.source == request.source
    {
        let digest = log
            .entry(last.sequence)?
            .and_then(|e| Digest::from_slice(&e.entry.content_sha256))
            .unwrap_or(Digest([0; 32]));
        return Ok(Pushed {
            revision: last.report.revision,
            unchanged: true,
            submitted: Submitted {
                message_id: last
                    .envelope
                    .message_id
                    .parse()
                    .map_err(|e| ExchangeError::Inconsistent(format!("stored message id: {e}")))?,
                peer,
                sequence: last.sequence,
                digest,
                duplicate: true,
            },
            exchanged: last.report.exchanged.clone(),
        });
    }
    let revision = previous.map_or(1, |r| r.report.revision + 1);
    let exchanged = {
        let log = log.clone();
        let period = period.clone();
        tokio::task::spawn_blocking(move || tally(&log, peer, &period))
            .await
            .map_err(|e| ExchangeError::Inconsistent(format!("counting the exchange: {e}")))??
    };
    let envelope = pb::Envelope {
        message_id: format!("{own}-STATS-{start}-{end}-R{revision}"),
        sender: own.to_string(),
        receiver: peer.to_string(),
        handling: Some(pb::Handling {
            distribution: pb::Distribution::ImmigrationService as i32,
            onward_sharing: pb::OnwardSharing::Permitted as i32,
            conditions: String::new(),
        }),
        body: Some(pb::envelope::Body::StatisticsReport(pb::StatisticsReport {
            period: Some(period),
            revision,
            counters: request.counters,
            source: request.source,
            exchanged: exchanged.clone(),
        })),
        ..Default::default()
    };
    let submitted = exchange.submit_report(caller, envelope).await?;
    Ok(Pushed {
        revision,
        unchanged: false,
        submitted,
        exchanged,
    })
}

/// Statistics reports in the log, oldest first: sent by this node to any of `peers` when
/// `country` is its own, else received from `country`; only for exactly `period` if given.
fn reports(
    log: &ExchangeLog,
    own: CountryCode,
    country: CountryCode,
    peers: &[CountryCode],
    period: Option<&pb::Period>,
) -> Result<Vec<Report>, ExchangeError> {
    let mut sequences = Vec::new();
    if country == own {
        for p in peers {
            sequences.extend(log.sent_to(*p, 1, u64::MAX)?);
        }
        sequences.sort_unstable();
    } else {
        sequences = log.inbox()?;
    }
    let mut out = Vec::new();
    for sequence in sequences {
        let Some(stored) = log.entry(sequence)? else {
            continue;
        };
        let e = stored.entry;
        if e.message_kind != pb::MessageKind::StatisticsReport as i32
            || (country != own && e.peer != country.as_str())
        {
            continue;
        }
        let Some(content) = log.content(sequence)? else {
            continue;
        };
        let corrupt = |reason: String| LogError::Corrupt { sequence, reason };
        let envelope = pb::Envelope::decode(content.as_slice())
            .map_err(|err| corrupt(format!("stored envelope: {err}")))?;
        let Some(pb::envelope::Body::StatisticsReport(report)) = envelope.body.clone() else {
            return Err(corrupt("indexed as a statistics report but is not one".into()).into());
        };
        if period.is_some_and(|p| report.period.as_ref() != Some(p)) {
            continue;
        }
        let peer = e
            .peer
            .parse()
            .map_err(|err| corrupt(format!("peer: {err}")))?;
        out.push(Report {
            sequence,
            peer,
            recorded_at_micros: e.recorded_at_micros,
            envelope,
            report,
        });
    }
    Ok(out)
}

/// Compares the received report at `sequence` with this log now, and records the comparison
/// unless the latest one recorded for it says the same.
/// A report that carries no exchange counts has nothing to compare: `None`.
pub async fn reconcile_report(
    exchange: &Exchange,
    sequence: u64,
) -> Result<Option<pb::Reconciliation>, ExchangeError> {
    let log = exchange.log().clone();
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
    .map_err(|e| ExchangeError::Inconsistent(format!("reconciling: {e}")))??;
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
                .map_err(|e| ExchangeError::Inconsistent(format!("peer: {e}")))?,
        ),
        message_id: record.report_message_id.clone(),
        message_kind: pb::MessageKind::StatisticsReport,
        refers_to: sequence,
        content: Some(record.encode_to_vec()),
        ..Default::default()
    };
    exchange.log().transact(move |t| t.append(entry)).await?;
    for line in record.lines.iter().filter(|l| !l.agrees) {
        tracing::warn!(
            peer = %record.peer,
            report = %record.report_message_id,
            kind = crate::client::kind_label(line.kind),
            direction = direction_label(line.direction),
            ours = line.ours,
            theirs = line.theirs,
            "statistics reconciliation finding"
        );
    }
    tracing::info!(peer = %record.peer, report = %record.report_message_id, findings, "statistics reconciled");
    Ok(Some(record))
}

fn recorded(log: &ExchangeLog, report: u64) -> Result<Option<pb::Reconciliation>, ExchangeError> {
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

fn period_key(r: &pb::StatisticsReport) -> (String, String) {
    r.period
        .as_ref()
        .map(|p| (p.start_date.clone(), p.end_date.clone()))
        .unwrap_or_default()
}

/// "sent" or "received".
pub fn direction_label(direction: i32) -> &'static str {
    match pb::Direction::try_from(direction).unwrap_or_default() {
        pb::Direction::Sent => "sent",
        pb::Direction::Received => "received",
        pb::Direction::Unspecified => "?",
    }
}

/// Every revision of `country`'s reports (this node's own or a peer's), oldest first, with the
/// latest reconciliation of each received one.
pub fn records(
    exchange: &Exchange,
    caller: &Identity,
    country: CountryCode,
    period: Option<&pb::Period>,
) -> Result<Vec<pb::StatisticsRecord>, ExchangeError> {
    exchange.authorize_read(caller)?;
    let own = exchange.country();
    if country != own {
        exchange.peer_or_only(country.as_str())?;
    }
    let log = exchange.log();
    let found = reports(log, own, country, &exchange.peers(), period)?;
    let mut latest: BTreeMap<(CountryCode, (String, String)), u32> = BTreeMap::new();
    for r in &found {
        let key = (r.peer, period_key(&r.report));
        let rev = latest.entry(key).or_default();
        *rev = (*rev).max(r.report.revision);
    }
    found
        .into_iter()
        .map(|r| {
            let key = (r.peer, period_key(&r.report));
            let reconciliation = if country == own {
                None
            } else {
                recorded(log, r.sequence)?
            };
            Ok(pb::StatisticsRecord {
                country: country.to_string(),
                message_id: r.envelope.message_id,
                log_sequence: r.sequence,
                recorded_at_micros: r.recorded_at_micros,
                superseded: latest.get(&key).is_some_and(|l| *l > r.report.revision),
                report: Some(r.report),
                reconciliation,
            })
        })
        .collect()
}

/// The reconciliations of `peer`'s current reports; with `recheck`, compared again now.
pub async fn reconcile(
    exchange: &Exchange,
    caller: &Identity,
    request: pb::ReconcileRequest,
) -> Result<Vec<pb::Reconciliation>, ExchangeError> {
    if request.recheck {
        statistics_writer(exchange, caller, "recheck reconciliations")?;
    } else {
        exchange.authorize_read(caller)?;
    }
    let peer = exchange.peer_or_only(&request.peer)?;
    let own = exchange.country();
    let found = reports(exchange.log(), own, peer, &[], request.period.as_ref())?;
    let mut current: BTreeMap<(String, String), Report> = BTreeMap::new();
    for r in found {
        let key = period_key(&r.report);
        if current
            .get(&key)
            .is_none_or(|c| c.report.revision < r.report.revision)
        {
            current.insert(key, r);
        }
    }
    let mut out = Vec::with_capacity(current.len());
    for r in current.into_values() {
        if request.recheck {
            out.extend(reconcile_report(exchange, r.sequence).await?);
        } else if let Some(rec) = recorded(exchange.log(), r.sequence)? {
            out.push(rec);
        }
    }
    Ok(out)
}

/// The current revision of each period, oldest period first.
pub fn current(records: &[pb::StatisticsRecord]) -> Vec<&pb::StatisticsRecord> {
    let mut out: Vec<&pb::StatisticsRecord> = records.iter().filter(|r| !r.superseded).collect();
    out.sort_by_key(|r| r.report.as_ref().map(period_key));
    out
}

/// Reports as CSV for spreadsheets: one row per counter and per location, totals with an
/// empty location.
pub fn csv(records: &[&pb::StatisticsRecord]) -> String {
    let mut out = String::from("country,period_start,period_end,revision,counter,location,value\n");
    for r in records {
        let Some(report) = &r.report else { continue };
        let p = report.period.clone().unwrap_or_default();
        let mut row = |counter: &str, location: &str, value: u64| {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{value}",
                r.country,
                p.start_date,
                p.end_date,
                report.revision,
                csv_field(counter),
                csv_field(location)
            );
        };
        for c in &report.counters {
            row(&c.name, "", c.value);
            for b in &c.breakdown {
                row(&c.name, &b.location, b.value);
            }
        }
    }
    out
}

/// One country's values of a counter over periods, for the chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub country: String,
    /// (period label, value), oldest first; a period without the counter is left out.
    pub points: Vec<(String, u64)>,
}

/// The values of `counter` in each country's current reports.
pub fn series(country: &str, records: &[pb::StatisticsRecord], counter: &str) -> Series {
    let points = current(records)
        .into_iter()
        .filter_map(|r| {
            let report = r.report.as_ref()?;
            let c = report.counters.iter().find(|c| c.name == counter)?;
            Some((period_label(report.period.as_ref()?), c.value))
        })
        .collect();
    Series {
        country: country.to_owned(),
        points,
    }
}

const COLOURS: [&str; 4] = ["#c0392b", "#1f5fa8", "#2e8b57", "#8e44ad"];

/// A line chart of one counter over periods, a line per country, as SVG.
pub fn chart_svg(counter: &str, series: &[Series]) -> String {
    let (w, h, left, right, top, bottom) = (760.0, 420.0, 70.0, 150.0, 50.0, 70.0);
    let mut periods: Vec<&str> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|(p, _)| p.as_str()))
        .collect();
    periods.sort_unstable();
    periods.dedup();
    let max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|(_, v)| *v))
        .max()
        .unwrap_or(0)
        .max(1);
    // Round the axis up to 1, 2 or 5 times a power of ten, so its quarters read well.
    let max = {
        let mut step = 1u64;
        loop {
            if let Some(m) = [4, 8, 20].iter().map(|k| k * step).find(|m| *m >= max) {
                break m;
            }
            match step.checked_mul(10) {
                Some(s) => step = s,
                None => break max,
            }
        }
    };
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let x = |period: &str| {
        let i = periods.iter().position(|p| *p == period).unwrap_or(0);
        if periods.len() < 2 {
            left + plot_w / 2.0
        } else {
            left + plot_w * i as f64 / (periods.len() - 1) as f64
        }
    };
    let y = |v: u64| top + plot_h - plot_h * v as f64 / max as f64;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"##
    );
    let _ = writeln!(svg, r##"<rect width="{w}" height="{h}" fill="#ffffff"/>"##);
    let _ = writeln!(
        svg,
        r##"<text x="{left}" y="28" font-size="16" font-weight="bold">{}</text>"##,
        xml(counter)
    );
    for i in 0..=4u64 {
        let v = max * i / 4;
        let yy = y(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#dddddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v}</text>"##,
            left + plot_w,
            left - 8.0,
            yy + 4.0
        );
    }
    for p in &periods {
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            x(p),
            top + plot_h + 20.0,
            xml(p)
        );
    }
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<String> = s
            .points
            .iter()
            .map(|(p, v)| format!("{:.1},{:.1}", x(p), y(*v)))
            .collect();
        let _ = writeln!(
            svg,
            r##"<polyline data-country="{}" fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"##,
            xml(&s.country),
            points.join(" ")
        );
        for (p, v) in &s.points {
            let _ = writeln!(
                svg,
                r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{colour}"><title>{} {} {v}</title></circle>"##,
                x(p),
                y(*v),
                xml(&s.country),
                xml(p)
            );
        }
        let ly = top + 20.0 * i as f64;
        let _ = writeln!(
            svg,
            r##"<rect x="{:.1}" y="{:.1}" width="14" height="4" fill="{colour}"/><text x="{:.1}" y="{:.1}">{}</text>"##,
            left + plot_w + 20.0,
            ly - 4.0,
            left + plot_w + 40.0,
            ly + 2.0,
            xml(&s.country)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A report as a table for people.
pub fn report_text(r: &pb::StatisticsRecord) -> String {
    let mut out = String::new();
    let Some(report) = &r.report else {
        return out;
    };
    let period = report.period.as_ref().map(period_label).unwrap_or_default();
    let _ = writeln!(
        out,
        "{} statistics {period}, revision {}{} ({}, log entry {})",
        r.country,
        report.revision,
        if r.superseded { " (superseded)" } else { "" },
        r.message_id,
        r.log_sequence
    );
    if !report.source.is_empty() {
        let _ = writeln!(out, "source: {}", report.source);
    }
    for c in &report.counters {
        let _ = writeln!(out, "  {:<40} {:>10}", c.name, c.value);
        for b in &c.breakdown {
            let _ = writeln!(out, "    {:<38} {:>10}", b.location, b.value);
        }
    }
    if let Some(rec) = &r.reconciliation {
        out.push_str(&reconciliation_text(rec));
    }
    out
}

/// A reconciliation as a table, findings marked.
pub fn reconciliation_text(r: &pb::Reconciliation) -> String {
    let findings = r.lines.iter().filter(|l| !l.agrees).count();
    let period = r.period.as_ref().map(period_label).unwrap_or_default();
    let mut out = format!(
        "reconciliation of {} {} (revision {}, {period}) at {}: {}\n",
        r.peer,
        r.report_message_id,
        r.revision,
        r.compared_at,
        match findings {
            0 => "the logs agree".to_owned(),
            1 => "1 finding".to_owned(),
            n => format!("{n} findings"),
        }
    );
    let _ = writeln!(
        out,
        "  {:<24} {:<10} {:>8} {:>8}",
        "kind", "here", "ours", "theirs"
    );
    for l in &r.lines {
        let _ = writeln!(
            out,
            "  {:<24} {:<10} {:>8} {:>8}{}",
            crate::client::kind_label(l.kind),
            direction_label(l.direction),
            l.ours,
            l.theirs,
            if l.agrees {
                ""
            } else if l.ours == l.theirs {
                "  FINDING: same count, different messages"
            } else {
                "  FINDING"
            }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_a_month_a_day_or_a_range() {
        let p = parse_period("2024-02").unwrap();
        assert_eq!(
            (p.start_date.as_str(), p.end_date.as_str()),
            ("2024-02-01", "2024-02-29")
        );
        assert_eq!(period_label(&p), "2024-02");
        let d = parse_period("2025-04-17").unwrap();
        assert_eq!(
            (d.start_date.as_str(), d.end_date.as_str()),
            ("2025-04-17", "2025-04-17")
        );
        let r = parse_period("2025-04-01..2025-04-15").unwrap();
        assert_eq!(r.end_date, "2025-04-15");
        assert_eq!(period_label(&r), "2025-04-01..2025-04-15");
        assert!(
            parse_period("2025-04-15..2025-04-01")
                .unwrap_err()
                .contains("ends before")
        );
        assert!(parse_period("April").is_err());
        assert!(parse_period("2025-13").is_err());
    }

    fn csv_error(text: &str) -> (usize, usize, String) {
        match parse_csv("f.csv", text).unwrap_err() {
            FiguresError::Cell {
                line,
                column,
                reason,
                ..
            } => (line, column, reason),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn csv_rows_become_counters_with_breakdowns() {
        let f = parse_csv(
            "f.csv",
            "# comment\ncounter,location,value\nresidents,,7\nwork_permits,\"Phnom Penh, office 2\",3\nwork_permits,Poipet,2\n",
        )
        .unwrap();
        assert_eq!(f.counters.len(), 2);
        assert_eq!(f.counters[0].value, 7);
        assert_eq!(
            f.counters[1].value, 5,
            "a counter without a total sums its locations"
        );
        assert_eq!(f.counters[1].breakdown[0].location, "Phnom Penh, office 2");
    }

    #[test]
    fn csv_errors_name_the_line_and_column() {
        let head = "counter,location,value\n";
        assert_eq!(csv_error(&format!("{head}Residents,,1\n")).0, 2);
        assert_eq!(csv_error(&format!("{head}Residents,,1\n")).1, 1);
        let (line, column, reason) = csv_error(&format!("{head}residents,,1\nrepatriations,,-3\n"));
        assert_eq!((line, column), (3, 3));
        assert!(reason.contains("\"-3\""), "{reason}");
        let (line, column, reason) = csv_error(&format!(
            "{head}residents,,10\nresidents,CGK,4\nresidents,KNO,5\n"
        ));
        assert_eq!((line, column), (2, 3));
        assert!(reason.contains("differs from the sum"), "{reason}");
        assert_eq!(
            csv_error(&format!("{head}residents,CGK,4\nresidents,CGK,5\n")).0,
            3
        );
        assert_eq!(csv_error(&format!("{head}residents,,1,9\n")).1, 4);
        assert_eq!(csv_error("counter,place,value\n").1, 2);
        assert_eq!(csv_error(&format!("{head}residents,\"CGK,1\n")).1, 2);
        let max = u64::MAX;
        let (_, column, reason) = csv_error(&format!(
            "{head}residents,,{max}\nresidents,CGK,{max}\nresidents,KNO,1\n"
        ));
        assert_eq!(column, 3);
        assert!(reason.contains("overflow"), "{reason}");
    }

    #[test]
    fn json_figures_are_held_to_the_same_rules_as_csv() {
        let refused = |json: &str| match parse_figures("f.json", json) {
            Err(FiguresError::File { reason, .. }) => reason,
            other => panic!("{json} was not refused: {other:?}"),
        };
        let reason = refused(r#"{"counters":[{"name":"Residents","value":1}]}"#);
        assert!(reason.starts_with("counters[0].name"), "{reason}");
        let reason = refused(
            r#"{"counters":[{"name":"residents","value":1},{"name":"residents","value":2}]}"#,
        );
        assert!(reason.contains("appears twice"), "{reason}");
        let reason = refused(
            r#"{"counters":[{"name":"residents","value":10,"breakdown":[{"location":"CGK","value":4}]}]}"#,
        );
        assert!(reason.contains("add up to 4"), "{reason}");
        let reason = refused(&format!(
            r#"{{"counters":[{{"name":"residents","breakdown":[{{"location":"CGK","value":{}}},{{"location":"KNO","value":1}}]}}]}}"#,
            u64::MAX
        ));
        assert!(reason.contains("more than a counter holds"), "{reason}");
        let reason = refused(r#"{"counters":[{"name":"residents"}]}"#);
        assert!(reason.contains("neither a value nor locations"), "{reason}");
        let ok = parse_figures(
            "f.json",
            r#"{"counters":[{"name":"residents","breakdown":[{"location":"CGK","value":4},{"location":"KNO","value":5}]}]}"#,
        )
        .unwrap();
        assert_eq!(ok.counters[0].value, 9);
    }

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
