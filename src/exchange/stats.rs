//! Statistics reports. The push numbers revisions and attaches what the log shows was exchanged
//! in the period; the same figures again change nothing. The receiving node compares those
//! counts with its own log and records the comparison, disagreements included, as a
//! reconciliation entry. Also here: periods, figures files, the CSV export and the chart.

use std::collections::BTreeMap;

use prost::Message;

use crate::domain::model::{CountryCode, Digest, Identity, Role};
use crate::domain::validate::ValidationError;
use crate::exchange::core::{Exchange, Submitted};
use crate::exchange::error::ExchangeError;
use crate::exchange::reconcile::{period_dates, reconcile_report, recorded, tally};
use crate::log::{ExchangeLog, LogError};
use crate::pb;

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

/// The sync's (or an operator's) push of one period's figures: to the peer the request names,
/// or, when it names none, to every peer whose agreement includes statistics, in turn.
pub async fn push(
    exchange: &Exchange,
    caller: &Identity,
    request: pb::PushStatisticsRequest,
) -> Result<Vec<Pushed>, ExchangeError> {
    statistics_writer(exchange, caller, "push statistics")?;
    let peers = if request.peer.is_empty() {
        let agreed: Vec<CountryCode> = exchange
            .peers()
            .into_iter()
            .filter(|p| exchange.agreement(*p).is_some_and(|a| a.send.statistics()))
            .collect();
        if agreed.is_empty() {
            return Err(ExchangeError::Forbidden(
                "no peer's agreement includes statistics (peers.agreement.send)".into(),
            ));
        }
        agreed
    } else {
        vec![exchange.peer_or_only(&request.peer)?]
    };
    let mut pushed = Vec::with_capacity(peers.len());
    for peer in peers {
        pushed.push(push_to(exchange, caller, peer, request.clone()).await?);
    }
    Ok(pushed)
}

/// One period's figures to `peer`: a new revision for that peer and period, unless the
/// current one holds the same figures.
async fn push_to(
    exchange: &Exchange,
    caller: &Identity,
    peer: CountryCode,
    request: pb::PushStatisticsRequest,
) -> Result<Pushed, ExchangeError> {
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
            .ok_or_else(|| {
                ExchangeError::Log(LogError::Corrupt {
                    sequence: last.sequence,
                    reason: "the stored report has no content digest".into(),
                })
            })?;
        return Ok(Pushed {
            revision: last.report.revision,
            unchanged: true,
            submitted: Submitted {
                message_id: last
                    .envelope
                    .message_id
                    .parse()
                    .map_err(|e| ExchangeError::internal("a stored report's message id", e))?,
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
            .map_err(|e| ExchangeError::internal("counting the exchange", e))??
    };
    let envelope = pb::Envelope {
        message_id: format!("{own}-STATS-{peer}-{start}-{end}-R{revision}"),
        sender: own.to_string(),
        receiver: peer.to_string(),
        handling: Some(pb::Handling {
            urgency: pb::Urgency::Routine as i32,
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

pub(crate) fn period_key(r: &pb::StatisticsReport) -> (String, String) {
    r.period
        .as_ref()
        .map(|p| (p.start_date.clone(), p.end_date.clone()))
        .unwrap_or_default()
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
                peer: r.peer.to_string(),
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
    let peers = if request.peer.is_empty() {
        exchange.peers()
    } else {
        vec![exchange.peer_or_only(&request.peer)?]
    };
    let own = exchange.country();
    let mut current: BTreeMap<(CountryCode, (String, String)), Report> = BTreeMap::new();
    for peer in peers {
        for r in reports(exchange.log(), own, peer, &[], request.period.as_ref())? {
            current_of(&mut current, r);
        }
    }
    let mut out = Vec::with_capacity(current.len());
    for r in current.into_values() {
        if request.recheck {
            out.extend(reconcile_report(exchange.log(), r.sequence).await?);
        } else if let Some(rec) = recorded(exchange.log(), r.sequence)? {
            out.push(rec);
        }
    }
    Ok(out)
}

/// Keeps `r` in `current` if it is the latest revision of its peer and period so far.
fn current_of(current: &mut BTreeMap<(CountryCode, (String, String)), Report>, r: Report) {
    let key = (r.peer, period_key(&r.report));
    if current
        .get(&key)
        .is_none_or(|c| c.report.revision < r.report.revision)
    {
        current.insert(key, r);
    }
}
