//! Turns raw envelopes into [`ValidEnvelope`]s: every field checked once, here, with an error
//! that names the field. Nothing downstream re-checks or sees an unchecked envelope.

use std::fmt::Display;

use prost::Message;

use crate::domain::model::{CountryCode, Digest, MessageId, parse_date, parse_instant};
use crate::domain::mrz;
use crate::pb;
use crate::pb::envelope::Body;

/// The largest envelope accepted, in bytes of its canonical encoding.
pub const MAX_ENVELOPE_BYTES: usize = 256 * 1024;

/// An input field that is wrong, and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    /// Dotted path of the field, e.g. `traveller_alert.person.date_of_birth`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ValidationError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, reason: impl ToString) -> Self {
        Self {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

type Result<T> = std::result::Result<T, ValidationError>;

/// An envelope whose every field has been checked, with its canonical encoding and digest.
#[derive(Debug, Clone)]
pub struct ValidEnvelope {
    /// The sender-chosen id.
    pub message_id: MessageId,
    /// The sending country.
    pub sender: CountryCode,
    /// The receiving country.
    pub receiver: CountryCode,
    /// Which of the four kinds the body is.
    pub kind: pb::MessageKind,
    /// The earlier message this one refers to.
    pub reference: Option<MessageId>,
    /// When the sender created it.
    pub created_at: time::OffsetDateTime,
    /// The checked envelope.
    pub envelope: pb::Envelope,
    /// Its canonical encoding: what is stored, delivered and hashed.
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes`.
    pub digest: Digest,
}

/// Decodes an envelope from the peer plane. The bytes must be the canonical encoding: an
/// unknown field or a non-canonical encoding would make the two sides' digests disagree.
pub fn decode_canonical(bytes: &[u8]) -> Result<ValidEnvelope> {
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(ValidationError::new(
            "envelope",
            format!(
                "{} bytes, more than the limit of {MAX_ENVELOPE_BYTES}",
                bytes.len()
            ),
        ));
    }
    let envelope = pb::Envelope::decode(bytes)
        .map_err(|e| ValidationError::new("envelope", format!("not a valid encoding: {e}")))?;
    if envelope.encode_to_vec() != bytes {
        return Err(ValidationError::new(
            "envelope",
            "unknown fields or a non-canonical encoding",
        ));
    }
    validate(envelope)
}

/// Checks every field of `envelope`.
pub fn validate(envelope: pb::Envelope) -> Result<ValidEnvelope> {
    let message_id = envelope
        .message_id
        .parse()
        .map_err(|e| ValidationError::new("message_id", e))?;
    let sender = country("sender", &envelope.sender)?;
    let receiver = country("receiver", &envelope.receiver)?;
    if sender == receiver {
        return Err(ValidationError::new(
            "receiver",
            "is the sender's own country",
        ));
    }
    let created_at =
        parse_instant(&envelope.created_at).map_err(|e| ValidationError::new("created_at", e))?;
    let handling = envelope
        .handling
        .as_ref()
        .ok_or_else(|| ValidationError::new("handling", "is required"))?;
    enumeration::<pb::Distribution>("handling.distribution", handling.distribution)?;
    enumeration::<pb::OnwardSharing>("handling.onward_sharing", handling.onward_sharing)?;
    text("handling.conditions", &handling.conditions, 1000, false)?;
    if pb::Urgency::try_from(handling.urgency).is_err() {
        return Err(ValidationError::new(
            "handling.urgency",
            "is not a known value",
        ));
    }
    let reference = if envelope.reference.is_empty() {
        None
    } else {
        let reference: MessageId = envelope
            .reference
            .parse()
            .map_err(|e| ValidationError::new("reference", e))?;
        if reference == message_id {
            return Err(ValidationError::new(
                "reference",
                "names the message itself",
            ));
        }
        Some(reference)
    };
    let kind = match &envelope.body {
        None => {
            return Err(ValidationError::new(
                "body",
                "is required (one of traveller_alert, document_fraud_notice, statistics_report, case_response)",
            ));
        }
        Some(Body::TravellerAlert(a)) => {
            alert(a, reference.is_some())?;
            pb::MessageKind::TravellerAlert
        }
        Some(Body::DocumentFraudNotice(n)) => {
            fraud_notice(n)?;
            pb::MessageKind::DocumentFraudNotice
        }
        Some(Body::StatisticsReport(r)) => {
            statistics(r)?;
            pb::MessageKind::StatisticsReport
        }
        Some(Body::CaseResponse(r)) => {
            if reference.is_none() {
                return Err(ValidationError::new(
                    "reference",
                    "is required for a case response: name the alert or notice it answers",
                ));
            }
            enumeration::<pb::ResponseStatus>("case_response.status", r.status)?;
            text("case_response.details", &r.details, 4000, false)?;
            text("case_response.office", &r.office, 200, true)?;
            if let Some(encounter) = &r.encounter {
                self::encounter(r.status, encounter)?;
            }
            pb::MessageKind::CaseResponse
        }
    };
    let bytes = envelope.encode_to_vec();
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(ValidationError::new(
            "envelope",
            format!(
                "{} bytes, more than the limit of {MAX_ENVELOPE_BYTES}",
                bytes.len()
            ),
        ));
    }
    let digest = Digest::of(&bytes);
    Ok(ValidEnvelope {
        message_id,
        sender,
        receiver,
        kind,
        reference,
        created_at,
        envelope,
        bytes,
        digest,
    })
}

/// How far ahead of this node's clock a creation time may be, unless configured otherwise
/// (`[limits] max_clock_skew_secs`).
pub const DEFAULT_CLOCK_SKEW: time::Duration = time::Duration::minutes(10);

/// Checks that `valid` was not created further than `skew` after `now`: a creation time in
/// the future is a wrong clock or a forged date, and statistics count messages by it.
pub fn created_in_time(
    valid: &ValidEnvelope,
    now: time::OffsetDateTime,
    skew: time::Duration,
) -> Result<()> {
    if valid.created_at > now + skew {
        return Err(ValidationError::new(
            "created_at",
            format!(
                "is more than {} seconds ahead of this node's clock",
                skew.whole_seconds()
            ),
        ));
    }
    Ok(())
}

/// The most entries each repeated field may hold. Far above anything real, and small enough
/// that no envelope can carry a flood of them.
pub mod bounds {
    /// `documents` of an alert.
    pub const DOCUMENTS: usize = 20;
    /// `nationalities` of a person.
    pub const NATIONALITIES: usize = 10;
    /// `aliases` of a person.
    pub const ALIASES: usize = 20;
    /// `route.transit_countries` of an alert.
    pub const TRANSIT_COUNTRIES: usize = 20;
    /// `indicators` of an alert.
    pub const INDICATORS: usize = 50;
    /// `counters` of a statistics report.
    pub const COUNTERS: usize = 500;
    /// `breakdown` of one counter.
    pub const BREAKDOWN: usize = 1_000;
    /// `exchanged` of a statistics report: three kinds, two directions.
    pub const EXCHANGED: usize = 6;
}

fn at_most<T>(field: impl Display, items: &[T], max: usize) -> Result<()> {
    if items.len() > max {
        return Err(ValidationError::new(
            field.to_string(),
            format!("{} entries, more than the limit of {max}", items.len()),
        ));
    }
    Ok(())
}

fn alert(a: &pb::TravellerAlert, has_reference: bool) -> Result<()> {
    let lifecycle = enumeration::<pb::AlertLifecycle>("traveller_alert.lifecycle", a.lifecycle)?;
    let issuing = lifecycle == pb::AlertLifecycle::Issue;
    if !issuing && !has_reference {
        return Err(ValidationError::new(
            "reference",
            "is required to update, withdraw or expire an alert: name the alert",
        ));
    }
    if issuing && has_reference {
        return Err(ValidationError::new(
            "reference",
            "must be empty when an alert is issued; use lifecycle ALERT_LIFECYCLE_UPDATE",
        ));
    }
    enumeration::<pb::AlertCategory>("traveller_alert.category", a.category)?;
    let withdrawing = matches!(
        lifecycle,
        pb::AlertLifecycle::Withdraw | pb::AlertLifecycle::Expire
    );
    if !withdrawing {
        let person = a
            .person
            .as_ref()
            .ok_or_else(|| ValidationError::new("traveller_alert.person", "is required"))?;
        self::person("traveller_alert.person", person)?;
        enumeration::<pb::RequestedAction>("traveller_alert.action_requested", a.action_requested)?;
        date("traveller_alert.valid_until", &a.valid_until)?;
    } else if let Some(person) = &a.person {
        self::person("traveller_alert.person", person)?;
    }
    at_most("traveller_alert.documents", &a.documents, bounds::DOCUMENTS)?;
    for (i, d) in a.documents.iter().enumerate() {
        document(format_args!("traveller_alert.documents[{i}]"), d)?;
    }
    if let Some(route) = &a.route {
        at_most(
            "traveller_alert.route.transit_countries",
            &route.transit_countries,
            bounds::TRANSIT_COUNTRIES,
        )?;
        for (i, c) in route.transit_countries.iter().enumerate() {
            country(
                format_args!("traveller_alert.route.transit_countries[{i}]"),
                c,
            )?;
        }
        optional(&route.destination_country, |c| {
            country("traveller_alert.route.destination_country", c)
        })?;
        optional(&route.departure_date, |d| {
            date("traveller_alert.route.departure_date", d)
        })?;
        text(
            "traveller_alert.route.departure_port",
            &route.departure_port,
            200,
            false,
        )?;
        text("traveller_alert.route.carrier", &route.carrier, 100, false)?;
    }
    at_most(
        "traveller_alert.indicators",
        &a.indicators,
        bounds::INDICATORS,
    )?;
    for (i, indicator) in a.indicators.iter().enumerate() {
        let field = format!("traveller_alert.indicators[{i}]");
        enumeration::<pb::IndicatorCode>(format_args!("{field}.code"), indicator.code)?;
        text(
            format_args!("{field}.detail"),
            &indicator.detail,
            1000,
            false,
        )?;
    }
    text("traveller_alert.summary", &a.summary, 4000, false)?;
    Ok(())
}

fn fraud_notice(n: &pb::DocumentFraudNotice) -> Result<()> {
    let d = n
        .document
        .as_ref()
        .ok_or_else(|| ValidationError::new("document_fraud_notice.document", "is required"))?;
    document("document_fraud_notice.document", d)?;
    enumeration::<pb::FraudType>("document_fraud_notice.fraud_type", n.fraud_type)?;
    let detection = n
        .detection
        .as_ref()
        .ok_or_else(|| ValidationError::new("document_fraud_notice.detection", "is required"))?;
    text(
        "document_fraud_notice.detection.place",
        &detection.place,
        200,
        true,
    )?;
    country(
        "document_fraud_notice.detection.country",
        &detection.country,
    )?;
    let detected = parse_instant(&detection.detected_at)
        .map_err(|e| ValidationError::new("document_fraud_notice.detection.detected_at", e))?;
    if detected > time::OffsetDateTime::now_utc() + time::Duration::days(1) {
        return Err(ValidationError::new(
            "document_fraud_notice.detection.detected_at",
            "is more than a day in the future",
        ));
    }
    text(
        "document_fraud_notice.detection.office",
        &detection.office,
        200,
        false,
    )?;
    if let Some(p) = &n.presented_by {
        person("document_fraud_notice.presented_by", p)?;
    }
    text(
        "document_fraud_notice.description",
        &n.description,
        4000,
        false,
    )?;
    Ok(())
}

/// A statistics counter name: snake_case, starting with a letter, at most 64 characters.
pub fn is_counter_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn statistics(r: &pb::StatisticsReport) -> Result<()> {
    let period = r
        .period
        .as_ref()
        .ok_or_else(|| ValidationError::new("statistics_report.period", "is required"))?;
    let start = date("statistics_report.period.start_date", &period.start_date)?;
    let end = date("statistics_report.period.end_date", &period.end_date)?;
    if end < start {
        return Err(ValidationError::new(
            "statistics_report.period.end_date",
            "is before start_date",
        ));
    }
    if r.revision == 0 {
        return Err(ValidationError::new(
            "statistics_report.revision",
            "must be 1 or more",
        ));
    }
    if r.counters.is_empty() {
        return Err(ValidationError::new(
            "statistics_report.counters",
            "at least one counter is required",
        ));
    }
    at_most("statistics_report.counters", &r.counters, bounds::COUNTERS)?;
    at_most(
        "statistics_report.exchanged",
        &r.exchanged,
        bounds::EXCHANGED,
    )?;
    let mut names = std::collections::BTreeMap::new();
    for (i, c) in r.counters.iter().enumerate() {
        let field = format!("statistics_report.counters[{i}]");
        if !is_counter_name(&c.name) {
            return Err(ValidationError::new(
                format!("{field}.name"),
                "is not a snake_case counter name (a-z, 0-9 and _, at most 64)",
            ));
        }
        if let Some(first) = names.insert(c.name.as_str(), i) {
            return Err(ValidationError::new(
                format!("{field}.name"),
                format!("is the name of counters[{first}] too"),
            ));
        }
        at_most(
            format_args!("{field}.breakdown"),
            &c.breakdown,
            bounds::BREAKDOWN,
        )?;
        if !c.breakdown.is_empty() {
            let mut sum: u64 = 0;
            for (j, b) in c.breakdown.iter().enumerate() {
                text(
                    format_args!("{field}.breakdown[{j}].location"),
                    &b.location,
                    200,
                    true,
                )?;
                sum = sum.saturating_add(b.value);
            }
            if sum != c.value {
                return Err(ValidationError::new(
                    format!("{field}.breakdown"),
                    "the locations do not add up to the counter's value",
                ));
            }
        }
    }
    text("statistics_report.source", &r.source, 200, false)?;
    let mut seen = std::collections::BTreeSet::new();
    for (i, x) in r.exchanged.iter().enumerate() {
        let field = format!("statistics_report.exchanged[{i}]");
        let kind = pb::MessageKind::try_from(x.kind).unwrap_or_default();
        if !crate::domain::kinds::COUNTED.contains(&kind) {
            return Err(ValidationError::new(
                format!("{field}.kind"),
                "must be a traveller alert, document-fraud notice or case response",
            ));
        }
        let direction = pb::Direction::try_from(x.direction).unwrap_or_default();
        if direction == pb::Direction::Unspecified {
            return Err(ValidationError::new(
                format!("{field}.direction"),
                "must be sent or received",
            ));
        }
        if !seen.insert((x.kind, x.direction)) {
            return Err(ValidationError::new(
                field.to_string(),
                "this kind and direction appear twice",
            ));
        }
        if x.message_ids_sha256.len() != 32 {
            return Err(ValidationError::new(
                format!("{field}.message_ids_sha256"),
                "must be 32 bytes",
            ));
        }
    }
    Ok(())
}

fn person(field: impl Display + Copy, p: &pb::Person) -> Result<()> {
    text(
        format_args!("{field}.family_name"),
        &p.family_name,
        200,
        true,
    )?;
    text(
        format_args!("{field}.given_names"),
        &p.given_names,
        200,
        false,
    )?;
    let born = date(format_args!("{field}.date_of_birth"), &p.date_of_birth)?;
    if born > time::OffsetDateTime::now_utc().date() {
        return Err(ValidationError::new(
            format!("{field}.date_of_birth"),
            "is in the future",
        ));
    }
    enumeration::<pb::Sex>(format_args!("{field}.sex"), p.sex)?;
    if p.nationalities.is_empty() {
        return Err(ValidationError::new(
            format!("{field}.nationalities"),
            "at least one is required",
        ));
    }
    at_most(
        format_args!("{field}.nationalities"),
        &p.nationalities,
        bounds::NATIONALITIES,
    )?;
    for (i, n) in p.nationalities.iter().enumerate() {
        country(format_args!("{field}.nationalities[{i}]"), n)?;
    }
    text(
        format_args!("{field}.place_of_birth"),
        &p.place_of_birth,
        200,
        false,
    )?;
    at_most(format_args!("{field}.aliases"), &p.aliases, bounds::ALIASES)?;
    for (i, a) in p.aliases.iter().enumerate() {
        text(format_args!("{field}.aliases[{i}]"), a, 200, true)?;
    }
    Ok(())
}

/// A hit report: only with a response that found or located someone.
fn encounter(status: i32, e: &pb::Encounter) -> Result<()> {
    let field = "case_response.encounter";
    let found = [
        pb::ResponseStatus::MatchFound as i32,
        pb::ResponseStatus::Located as i32,
    ];
    if !found.contains(&status) {
        return Err(ValidationError::new(
            field.to_string(),
            "is reported only with a response of MATCH_FOUND or LOCATED",
        ));
    }
    text(format_args!("{field}.place"), &e.place, 200, true)?;
    country(format_args!("{field}.country"), &e.country)?;
    if e.encountered_at.is_empty() {
        return Err(ValidationError::new(
            format!("{field}.encountered_at"),
            "is required",
        ));
    }
    parse_instant(&e.encountered_at).map_err(|_| {
        ValidationError::new(
            format!("{field}.encountered_at"),
            "is not an RFC 3339 UTC instant",
        )
    })?;
    let number_ok = e.document_presented.len() <= 20
        && e.document_presented
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if !number_ok {
        return Err(ValidationError::new(
            format!("{field}.document_presented"),
            "is not a document number (1 to 20 of A-Z 0-9)",
        ));
    }
    text(
        format_args!("{field}.action_taken"),
        &e.action_taken,
        1000,
        false,
    )?;
    text(
        format_args!("{field}.action_not_taken_reason"),
        &e.action_not_taken_reason,
        1000,
        false,
    )?;
    if e.action_taken.trim().is_empty() && e.action_not_taken_reason.trim().is_empty() {
        return Err(ValidationError::new(
            format!("{field}.action_taken"),
            "or action_not_taken_reason is required",
        ));
    }
    Ok(())
}

fn document(field: impl Display + Copy, d: &pb::TravelDocument) -> Result<()> {
    enumeration::<pb::DocumentType>(format_args!("{field}.type"), d.r#type)?;
    let number_ok = (1..=20).contains(&d.number.len())
        && d.number
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if !number_ok {
        return Err(ValidationError::new(
            format!("{field}.number"),
            "is not a document number (1 to 20 of A-Z 0-9)",
        ));
    }
    country(format_args!("{field}.issuing_state"), &d.issuing_state)?;
    optional(&d.issue_date, |v| {
        date(format_args!("{field}.issue_date"), v)
    })?;
    optional(&d.expiry_date, |v| {
        date(format_args!("{field}.expiry_date"), v)
    })?;
    if !d.mrz.is_empty() {
        // Stored as both sides hash it and search reads it: the zone's own alphabet, its
        // lines separated by one line feed, nothing around it.
        let canonical = d
            .mrz
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'<' || b == b'\n')
            && !d.mrz.starts_with('\n')
            && !d.mrz.ends_with('\n')
            && !d.mrz.contains("\n\n");
        if !canonical {
            return Err(ValidationError::new(
                format!("{field}.mrz"),
                "may hold only A-Z, 0-9 and <, its lines separated by a single line feed (\\n)",
            ));
        }
        let zone: mrz::Mrz = d
            .mrz
            .parse()
            .map_err(|e| ValidationError::new(format!("{field}.mrz"), e))?;
        if zone.document_number() != d.number {
            return Err(ValidationError::new(
                format!("{field}.mrz"),
                "the document number in the zone differs from the document's number",
            ));
        }
        if zone.issuing_state() != d.issuing_state {
            return Err(ValidationError::new(
                format!("{field}.mrz"),
                "the issuing state in the zone differs from the document's issuing_state",
            ));
        }
    }
    Ok(())
}

fn country(field: impl Display, value: &str) -> Result<CountryCode> {
    if value.is_empty() {
        return Err(ValidationError::new(field.to_string(), "is required"));
    }
    value
        .parse()
        .map_err(|e| ValidationError::new(field.to_string(), e))
}

fn date(field: impl Display, value: &str) -> Result<time::Date> {
    if value.is_empty() {
        return Err(ValidationError::new(field.to_string(), "is required"));
    }
    // The value is not quoted: it may be a date of birth, and reasons reach logs and the peer.
    parse_date(value)
        .map_err(|_| ValidationError::new(field.to_string(), "is not a date (YYYY-MM-DD)"))
}

fn optional<T>(value: &str, check: impl FnOnce(&str) -> Result<T>) -> Result<()> {
    if !value.is_empty() {
        check(value)?;
    }
    Ok(())
}

fn text(field: impl Display, value: &str, max_chars: usize, required: bool) -> Result<()> {
    if required && value.trim().is_empty() {
        return Err(ValidationError::new(field.to_string(), "is required"));
    }
    let chars = value.chars().count();
    if chars > max_chars {
        return Err(ValidationError::new(
            field.to_string(),
            format!("{chars} characters, more than the limit of {max_chars}"),
        ));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ValidationError::new(
            field.to_string(),
            "contains control characters",
        ));
    }
    Ok(())
}

fn enumeration<E>(field: impl Display, value: i32) -> Result<E>
where
    E: TryFrom<i32> + Default + PartialEq,
{
    match E::try_from(value) {
        Ok(e) if e != E::default() => Ok(e),
        Ok(_) => Err(ValidationError::new(field.to_string(), "is required")),
        Err(_) => Err(ValidationError::new(
            field.to_string(),
            "is not a known value",
        )),
    }
}

/// Parses an envelope from JSON text.
pub fn parse_envelope(text: &str) -> std::result::Result<pb::Envelope, EnvelopeJsonError> {
    serde_json::from_str(text).map_err(|e| EnvelopeJsonError {
        what: value_free(&e.to_string()),
        line: e.line(),
        column: e.column(),
    })
}

/// Why a JSON envelope does not parse, at its line and column, with every quoted value the
/// parser would have repeated left out: the text may be a name or a document number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("is not a valid envelope: {what} (line {line}, column {column})")]
pub struct EnvelopeJsonError {
    what: String,
    line: usize,
    column: usize,
}

/// `message` without what it quotes ("…" or `…`) and without its own position suffix.
fn value_free(message: &str) -> String {
    let message = message.split(" at line ").next().unwrap_or(message);
    let mut out = String::with_capacity(message.len());
    let mut quote = None;
    for c in message.chars() {
        match (quote, c) {
            (None, '"' | '`') => {
                quote = Some(c);
                out.push('…');
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, c) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[test]
fn an_envelope_that_does_not_parse_is_named_without_its_values() {
    for text in [
        r#"{"sender": "IDN", "alert": {"person": {"family_name": 2217845}}}"#,
        r#"{"sender": "IDN", "message_kind": "X2217845"}"#,
        r#"{"sender": "IDN", "X2217845": 1}"#,
        r#"{"sender": "IDN", "created_at": "X2217845""#,
    ] {
        let err = parse_envelope(text).unwrap_err().to_string();
        assert!(!err.contains("2217845"), "{err}");
        assert!(err.contains("line 1, column"), "{err}");
    }
}

/// Values put in place of one field at a time: a name with a document number, a code-shaped
/// value, and an instant-shaped one. None may ever appear in a refusal reason.
const MARKERS: [&str; 3] = [
    "WULANDARI<<SARI X2217845 2001-03-14",
    "QQZ",
    "2031-13-45T25:61:00+07:00",
];

/// Puts each marker in place of each string field of `envelope`, one at a time, and checks
/// that no refusal reason quotes it: reasons name the field and the rule, never the value,
/// since they reach the peer, the logs and refusal entries that can never be redacted.
pub fn refusals_quote_nothing(envelope: &pb::Envelope) {
    let Ok(json) = serde_json::to_value(envelope) else {
        return;
    };
    let mut leaves = Vec::new();
    string_leaves(&json, String::new(), &mut leaves);
    for pointer in leaves {
        for marker in MARKERS {
            let mut changed = json.clone();
            if let Some(leaf) = changed.pointer_mut(&pointer) {
                *leaf = serde_json::Value::String(marker.to_owned());
            }
            // Enumerations and bytes do not take the marker: nothing to check there.
            let Ok(candidate) = serde_json::from_value::<pb::Envelope>(changed) else {
                continue;
            };
            if let Err(e) = validate(candidate) {
                let reason = e.to_string();
                assert!(
                    !reason.contains(marker),
                    "the refusal of {pointer} quotes its value: {reason}"
                );
            }
        }
    }
}

/// The JSON pointers of every string in `value`.
fn string_leaves(value: &serde_json::Value, at: String, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(_) => out.push(at),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                string_leaves(item, format!("{at}/{i}"), out);
            }
        }
        serde_json::Value::Object(fields) => {
            for (key, item) in fields {
                let key = key.replace('~', "~0").replace('/', "~1");
                string_leaves(item, format!("{at}/{key}"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn alert_envelope() -> pb::Envelope {
        pb::Envelope {
            message_id: "IDN-TEST-1".into(),
            sender: "IDN".into(),
            receiver: "KHM".into(),
            created_at: "2025-04-30T08:15:00Z".into(),
            handling: Some(pb::Handling {
                distribution: pb::Distribution::ImmigrationService as i32,
                onward_sharing: pb::OnwardSharing::Prohibited as i32,
                conditions: String::new(),
                urgency: pb::Urgency::Routine as i32,
            }),
            reference: String::new(),
            body: Some(Body::TravellerAlert(pb::TravellerAlert {
                lifecycle: pb::AlertLifecycle::Issue as i32,
                category: pb::AlertCategory::SuspectedTraffickingVictim as i32,
                person: Some(pb::Person {
                    family_name: "ERIKSSON".into(),
                    given_names: "ANNA MARIA".into(),
                    date_of_birth: "1974-08-12".into(),
                    sex: pb::Sex::Female as i32,
                    nationalities: vec!["IDN".into()],
                    ..Default::default()
                }),
                documents: vec![pb::TravelDocument {
                    r#type: pb::DocumentType::Passport as i32,
                    number: "X2217845".into(),
                    issuing_state: "IDN".into(),
                    mrz: "P<IDNWULANDARI<<SARI<<<<<<<<<<<<<<<<<<<<<<<<\nX2217845<8IDN0103141F3401099<<<<<<<<<<<<<<<4".into(),
                    ..Default::default()
                }],
                action_requested: pb::RequestedAction::LocateAndProtect as i32,
                valid_until: "2025-12-31".into(),
                ..Default::default()
            })),
        }
    }

    fn body(e: &mut pb::Envelope) -> &mut pb::TravellerAlert {
        match e.body.as_mut() {
            Some(Body::TravellerAlert(a)) => a,
            _ => unreachable!("the test envelope carries an alert"),
        }
    }

    #[test]
    fn a_complete_alert_is_accepted() {
        let v = validate(alert_envelope()).unwrap();
        assert_eq!(v.kind, pb::MessageKind::TravellerAlert);
        assert_eq!(v.digest, Digest::of(&v.bytes));
        let again = decode_canonical(&v.bytes).unwrap();
        assert_eq!(again.digest, v.digest);
    }

    #[test]
    fn each_bad_field_is_named() {
        type Mutation = fn(&mut pb::Envelope);
        let cases: &[(&str, Mutation)] = &[
            ("message_id", |e| e.message_id = "has space".into()),
            ("sender", |e| e.sender = "XYZ".into()),
            ("receiver", |e| e.receiver = "IDN".into()),
            ("created_at", |e| e.created_at = "yesterday".into()),
            ("handling", |e| e.handling = None),
            ("handling.urgency", |e| {
                e.handling.as_mut().unwrap().urgency = 99;
            }),
            ("handling.distribution", |e| {
                e.handling.as_mut().unwrap().distribution = 99
            }),
            ("body", |e| e.body = None),
            ("traveller_alert.lifecycle", |e| body(e).lifecycle = 0),
            ("traveller_alert.person.date_of_birth", |e| {
                body(e).person.as_mut().unwrap().date_of_birth = "1974-02-30".into()
            }),
            ("traveller_alert.person.nationalities", |e| {
                body(e).person.as_mut().unwrap().nationalities.clear()
            }),
            ("traveller_alert.person.family_name", |e| {
                body(e).person.as_mut().unwrap().family_name = String::new()
            }),
            ("traveller_alert.documents[0].mrz", |e| {
                body(e).documents[0].mrz = body(e).documents[0].mrz.replace("<8IDN", "<7IDN")
            }),
            ("traveller_alert.documents[0].mrz", |e| {
                body(e).documents[0].number = "X2217846".into()
            }),
            ("traveller_alert.valid_until", |e| {
                body(e).valid_until = String::new()
            }),
            ("reference", |e| {
                body(e).lifecycle = pb::AlertLifecycle::Update as i32
            }),
        ];
        for (field, mutate) in cases {
            let mut e = alert_envelope();
            mutate(&mut e);
            let err = validate(e).unwrap_err();
            assert_eq!(&err.field, field, "{err}");
        }
    }

    /// Refusal reasons reach the node's log, its operators' logs and the peer: a bad personal
    /// value is named by its field, never quoted.
    #[test]
    fn refusal_reasons_do_not_quote_personal_values() {
        type Mutation = fn(&mut pb::Envelope) -> &'static str;
        let cases: &[Mutation] = &[
            |e| {
                body(e).person.as_mut().unwrap().date_of_birth = "1974-13-31".into();
                "1974-13-31"
            },
            |e| {
                body(e).documents[0].number = "X22-17845".into();
                "X22-17845"
            },
            |e| {
                body(e).documents[0].number = "Y9876543".into();
                "Y9876543"
            },
            |e| {
                body(e).documents[0].mrz = body(e).documents[0].mrz.replace("0103141", "0113321");
                "011332"
            },
            |e| {
                body(e).documents[0].mrz =
                    body(e).documents[0].mrz.replace("X2217845<8", "X22?7845<8");
                "X22?7845"
            },
        ];
        for mutate in cases {
            let mut e = alert_envelope();
            let value = mutate(&mut e);
            let err = validate(e).unwrap_err().to_string();
            assert!(!err.contains(value), "{err:?} quotes {value:?}");
            assert!(
                !err.contains("X2217845"),
                "{err:?} quotes the document number"
            );
        }
    }

    /// Every string field of every example kind, replaced by a name and document number, a
    /// code-shaped and an instant-shaped value in turn: no refusal quotes what it was given.
    #[test]
    fn no_refusal_quotes_the_value_of_any_string_field() {
        let examples = [
            include_str!("../../examples/idn/alert-trafficking-victim.json"),
            include_str!("../../examples/khm/fraud-notice-poipet.json"),
            include_str!("../../examples/khm/response-to-alert.json"),
            include_str!("../../examples/idn/statistics-2025-jan-apr.json"),
        ];
        let mut checked = 0;
        for text in examples {
            let mut e = crate::domain::validate::parse_envelope(text).unwrap();
            e.sender = if e.receiver == "KHM" { "IDN" } else { "KHM" }.into();
            e.created_at = "2025-04-30T08:15:00Z".into();
            validate(e.clone()).unwrap();
            refusals_quote_nothing(&e);
            checked += 1;
        }
        let mut alert = alert_envelope();
        let a = body(&mut alert);
        a.person.as_mut().unwrap().aliases = vec!["SARI W".into()];
        a.person.as_mut().unwrap().place_of_birth = "SURABAYA".into();
        a.documents[0].issue_date = "2024-01-09".into();
        alert.reference = String::new();
        refusals_quote_nothing(&alert);
        assert_eq!(checked, examples.len());
    }

    #[test]
    fn repeated_fields_are_bounded() {
        type Mutation = fn(&mut pb::Envelope);
        let cases: &[(&str, Mutation)] = &[
            ("traveller_alert.person.aliases", |e| {
                body(e).person.as_mut().unwrap().aliases = vec!["SARI".into(); 60_000]
            }),
            ("traveller_alert.person.nationalities", |e| {
                body(e).person.as_mut().unwrap().nationalities = vec!["IDN".into(); 11]
            }),
            ("traveller_alert.indicators", |e| {
                body(e).indicators = vec![
                    pb::Indicator {
                        code: pb::IndicatorCode::RecruitedThroughSocialMedia as i32,
                        detail: String::new(),
                    };
                    20_000
                ]
            }),
            ("traveller_alert.route.transit_countries", |e| {
                body(e).route = Some(pb::Route {
                    transit_countries: vec!["THA".into(); 50_000],
                    ..Default::default()
                })
            }),
            ("traveller_alert.documents", |e| {
                let d = body(e).documents[0].clone();
                body(e).documents = vec![d; 21];
            }),
        ];
        for (field, mutate) in cases {
            let mut e = alert_envelope();
            mutate(&mut e);
            let err = validate(e).unwrap_err();
            assert_eq!(&err.field, field, "{err}");
            assert!(err.reason.contains("more than the limit"), "{err}");
        }
        // At the bound, accepted.
        let mut e = alert_envelope();
        body(&mut e).person.as_mut().unwrap().aliases = vec!["SARI".into(); bounds::ALIASES];
        validate(e).unwrap();
    }

    #[test]
    fn a_zone_must_be_in_its_canonical_form() {
        for zone in [
            "P<IDNWULANDARI<<SARI<<<<<<<<<<<<<<<<<<<<<<<<\r\nX2217845<8IDN0103141F3401099<<<<<<<<<<<<<<<4",
            "P<IDNWULANDARI<<SARI<<<<<<<<<<<<<<<<<<<<<<<<\nX2217845<8IDN0103141F3401099<<<<<<<<<<<<<<<4\n",
            " P<IDNWULANDARI<<SARI<<<<<<<<<<<<<<<<<<<<<<<<\nX2217845<8IDN0103141F3401099<<<<<<<<<<<<<<<4",
            "P<IDNWULANDARI<<SARI<<<<<<<<<<<<<<<<<<<<<<<<\n\nX2217845<8IDN0103141F3401099<<<<<<<<<<<<<<<4",
        ] {
            let mut e = alert_envelope();
            body(&mut e).documents[0].mrz = zone.into();
            let err = validate(e).unwrap_err();
            assert_eq!(
                err.field, "traveller_alert.documents[0].mrz",
                "{zone:?}: {err}"
            );
            assert!(err.reason.contains("single line feed"), "{err}");
        }
    }

    #[test]
    fn a_creation_time_far_ahead_of_the_clock_is_refused() {
        let now = time::OffsetDateTime::now_utc();
        let mut e = alert_envelope();
        e.created_at = "9999-12-31T23:59:59Z".into();
        let valid = validate(e).unwrap();
        let err = created_in_time(&valid, now, DEFAULT_CLOCK_SKEW).unwrap_err();
        assert_eq!(err.field, "created_at");
        assert!(!err.reason.contains("9999"), "{err}");
        let mut e = alert_envelope();
        e.created_at = crate::domain::model::format_instant(now + time::Duration::minutes(5));
        created_in_time(&validate(e).unwrap(), now, DEFAULT_CLOCK_SKEW).unwrap();
        let mut e = alert_envelope();
        e.created_at = crate::domain::model::format_instant(now + time::Duration::minutes(11));
        created_in_time(&validate(e).unwrap(), now, DEFAULT_CLOCK_SKEW).unwrap_err();
    }

    /// A zone changed one character at a time, at every position, to a letter, a digit and a
    /// filler: each refusal names the part of the zone and the rule, and quotes neither the
    /// character put there nor the digits around it.
    #[test]
    fn no_refusal_of_a_zone_quotes_what_is_in_it() {
        let valid = alert_envelope();
        let zone = match &valid.body {
            Some(Body::TravellerAlert(a)) => a.documents[0].mrz.clone(),
            _ => unreachable!("the test envelope carries an alert"),
        };
        let mut refused = 0;
        for (at, original) in zone.char_indices().filter(|(_, c)| *c != '\n') {
            for put in ['Q', '7', '<', 'a'] {
                if put == original {
                    continue;
                }
                let mut changed = zone.clone();
                changed.replace_range(at..at + 1, &put.to_string());
                let mut e = alert_envelope();
                body(&mut e).documents[0].mrz = changed;
                let Err(err) = validate(e) else { continue };
                refused += 1;
                let reason = err.reason;
                assert!(!reason.contains(&format!("'{put}'")), "{reason}");
                assert!(
                    !reason.contains("expected") || reason.contains("characters"),
                    "{reason}"
                );
                assert!(
                    !reason.contains("X2217845") && !reason.contains("010314"),
                    "{reason}"
                );
                assert!(
                    !reason.contains("IDN") || reason.contains("issuing_state"),
                    "{reason}"
                );
            }
        }
        assert!(refused > 100, "only {refused} changes were refused");
    }

    #[test]
    fn unknown_fields_are_refused_on_the_peer_plane() {
        let mut bytes = validate(alert_envelope()).unwrap().bytes;
        // Field 99, varint 1: not part of the contract.
        bytes.extend_from_slice(&[0x98, 0x06, 0x01]);
        let err = decode_canonical(&bytes).unwrap_err();
        assert_eq!(err.field, "envelope");
        assert!(err.reason.contains("unknown fields"));
        assert!(decode_canonical(&[0xff, 0xff]).is_err());
    }

    #[test]
    fn statistics_breakdown_must_add_up() {
        let mut e = alert_envelope();
        e.body = Some(Body::StatisticsReport(pb::StatisticsReport {
            period: Some(pb::Period {
                start_date: "2025-01-01".into(),
                end_date: "2025-04-30".into(),
            }),
            revision: 1,
            counters: vec![pb::Counter {
                name: "departures_postponed".into(),
                value: 5000,
                breakdown: vec![pb::Breakdown {
                    location: "CGK".into(),
                    value: 4000,
                }],
            }],
            source: String::new(),
            exchanged: Vec::new(),
        }));
        let err = validate(e).unwrap_err();
        assert_eq!(err.field, "statistics_report.counters[0].breakdown");
    }
}
