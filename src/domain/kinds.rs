//! The names of message kinds, log entry kinds, directions and periods: what people read in
//! tables and sentences, and the kinds a statistics report counts.

use crate::domain::model::parse_date;
use crate::pb;

/// The name of a message kind, for sentences.
pub fn kind_name(kind: i32) -> &'static str {
    match pb::MessageKind::try_from(kind).unwrap_or_default() {
        pb::MessageKind::TravellerAlert => "traveller alert",
        pb::MessageKind::DocumentFraudNotice => "document-fraud notice",
        pb::MessageKind::StatisticsReport => "statistics report",
        pb::MessageKind::CaseResponse => "case response",
        pb::MessageKind::Unspecified => "message without a body",
    }
}

/// A message kind as exports, comparisons and tables name it. The serde names are the wire of
/// the JSONL export that the two countries compare; the display text is derived from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MessageName {
    /// A traveller alert.
    #[serde(rename = "alert")]
    Alert,
    /// A document-fraud notice.
    #[serde(rename = "fraud")]
    Fraud,
    /// A statistics report.
    #[serde(rename = "stats")]
    Stats,
    /// A case response.
    #[serde(rename = "response")]
    Response,
    /// No message (an entry about something else), or a kind this build does not know.
    #[serde(rename = "-", other)]
    None,
}

impl MessageName {
    /// The name of a stored message kind.
    pub fn of(kind: i32) -> Self {
        match pb::MessageKind::try_from(kind).unwrap_or_default() {
            pb::MessageKind::TravellerAlert => Self::Alert,
            pb::MessageKind::DocumentFraudNotice => Self::Fraud,
            pb::MessageKind::StatisticsReport => Self::Stats,
            pb::MessageKind::CaseResponse => Self::Response,
            pb::MessageKind::Unspecified => Self::None,
        }
    }

    /// As written in exports and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alert => "alert",
            Self::Fraud => "fraud",
            Self::Stats => "stats",
            Self::Response => "response",
            Self::None => "-",
        }
    }
}

/// A short label for a message kind.
pub fn kind_label(kind: i32) -> &'static str {
    MessageName::of(kind).as_str()
}

/// A log entry's kind as exports, comparisons and tables name it; the serde names are the wire
/// of the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryName {
    /// A message this node sent.
    Sent,
    /// A message this node received.
    Received,
    /// The peer's receipt for a sent message.
    Receipt,
    /// Input refused.
    Refusal,
    /// A delivery the peer refused for good.
    Failed,
    /// This node's checkpoint, cosigned by the peer.
    Cosigned,
    /// The peer's checkpoint, witnessed here.
    Witnessed,
    /// A statistics reconciliation.
    Reconciled,
    /// Content removed under the retention policy.
    Redacted,
    /// A local user consulted personal data.
    Consulted,
    /// A case's deadline came.
    Deadline,
    /// No known kind, or one this build does not know (a newer peer's export).
    #[serde(rename = "?", other)]
    Unknown,
}

impl EntryName {
    /// The name of a stored entry kind.
    pub fn of(kind: i32) -> Self {
        match pb::EntryKind::try_from(kind).unwrap_or_default() {
            pb::EntryKind::MessageSent => Self::Sent,
            pb::EntryKind::MessageReceived => Self::Received,
            pb::EntryKind::ReceiptReceived => Self::Receipt,
            pb::EntryKind::Refusal => Self::Refusal,
            pb::EntryKind::DeliveryFailed => Self::Failed,
            pb::EntryKind::CheckpointCosigned => Self::Cosigned,
            pb::EntryKind::CheckpointWitnessed => Self::Witnessed,
            pb::EntryKind::Reconciliation => Self::Reconciled,
            pb::EntryKind::Redaction => Self::Redacted,
            pb::EntryKind::Consultation => Self::Consulted,
            pb::EntryKind::Deadline => Self::Deadline,
            pb::EntryKind::Unspecified => Self::Unknown,
        }
    }

    /// As written in exports and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Received => "received",
            Self::Receipt => "receipt",
            Self::Refusal => "refusal",
            Self::Failed => "failed",
            Self::Cosigned => "cosigned",
            Self::Witnessed => "witnessed",
            Self::Reconciled => "reconciled",
            Self::Redacted => "redacted",
            Self::Consulted => "consulted",
            Self::Deadline => "deadline",
            Self::Unknown => "?",
        }
    }
}

/// A short label for a log entry's kind.
pub fn entry_label(kind: i32) -> &'static str {
    EntryName::of(kind).as_str()
}

/// The kinds whose exchange a report counts. Statistics reports themselves are not counted: the
/// report would count itself.
pub const COUNTED: [pb::MessageKind; 3] = [
    pb::MessageKind::TravellerAlert,
    pb::MessageKind::DocumentFraudNotice,
    pb::MessageKind::CaseResponse,
];

/// Why a period given on the command line is refused; it quotes what was typed there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    #[error("{0:?} is not a period: give YYYY-MM, YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD")]
    Malformed(String),
    #[error("{0:?}: the period ends before it starts")]
    EndsBeforeStart(String),
}

/// A period as written on the command line: `2025-04` (a month), `2025-04-17` (a day) or
/// `2025-04-01..2025-04-15` (a closed range of days).
pub fn parse_period(s: &str) -> Result<pb::Period, PeriodError> {
    let bad = || PeriodError::Malformed(s.to_owned());
    let (start, end) = if let Some((a, b)) = s.split_once("..") {
        let a = parse_date(a).map_err(|_| bad())?;
        let b = parse_date(b).map_err(|_| bad())?;
        if b < a {
            return Err(PeriodError::EndsBeforeStart(s.to_owned()));
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

/// "sent" or "received".
pub fn direction_label(direction: i32) -> &'static str {
    match pb::Direction::try_from(direction).unwrap_or_default() {
        pb::Direction::Sent => "sent",
        pb::Direction::Received => "received",
        pb::Direction::Unspecified => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_names_and_display_text_agree() {
        for kind in 0..=9 {
            let name = EntryName::of(kind);
            assert_eq!(
                serde_json::to_string(&name).unwrap(),
                format!("\"{}\"", name.as_str())
            );
        }
        for kind in 0..=4 {
            let name = MessageName::of(kind);
            assert_eq!(
                serde_json::to_string(&name).unwrap(),
                format!("\"{}\"", name.as_str())
            );
        }
        let parsed: EntryName = serde_json::from_str("\"received\"").unwrap();
        assert_eq!(parsed, EntryName::Received);
        // The export's wire, literally, as the other country's exports write it.
        let wire = [
            (pb::EntryKind::MessageSent, "sent"),
            (pb::EntryKind::MessageReceived, "received"),
            (pb::EntryKind::ReceiptReceived, "receipt"),
            (pb::EntryKind::Refusal, "refusal"),
            (pb::EntryKind::DeliveryFailed, "failed"),
            (pb::EntryKind::CheckpointCosigned, "cosigned"),
            (pb::EntryKind::CheckpointWitnessed, "witnessed"),
            (pb::EntryKind::Reconciliation, "reconciled"),
            (pb::EntryKind::Redaction, "redacted"),
            (pb::EntryKind::Consultation, "consulted"),
            (pb::EntryKind::Deadline, "deadline"),
        ];
        for (kind, text) in wire {
            let parsed: EntryName = serde_json::from_str(&format!("\"{text}\"")).unwrap();
            assert_eq!(parsed, EntryName::of(kind as i32), "{text}");
        }
        for (kind, text) in [
            (pb::MessageKind::TravellerAlert, "alert"),
            (pb::MessageKind::DocumentFraudNotice, "fraud"),
            (pb::MessageKind::StatisticsReport, "stats"),
            (pb::MessageKind::CaseResponse, "response"),
        ] {
            let parsed: MessageName = serde_json::from_str(&format!("\"{text}\"")).unwrap();
            assert_eq!(parsed, MessageName::of(kind as i32), "{text}");
        }
        // A kind a newer build writes is read, as unknown, rather than failing the export.
        let newer: EntryName = serde_json::from_str("\"case_closed\"").unwrap();
        assert_eq!(newer, EntryName::Unknown);
        let newer: MessageName = serde_json::from_str("\"hit_report\"").unwrap();
        assert_eq!(newer, MessageName::None);
    }

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
        assert_eq!(
            parse_period("2025-04-15..2025-04-01"),
            Err(PeriodError::EndsBeforeStart(
                "2025-04-15..2025-04-01".into()
            ))
        );
        assert_eq!(
            parse_period("April"),
            Err(PeriodError::Malformed("April".into()))
        );
        assert!(matches!(
            parse_period("2025-13"),
            Err(PeriodError::Malformed(_))
        ));
    }
}
