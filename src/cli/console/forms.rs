//! The forms that send: a traveller alert, a document-fraud notice, a case response, and an
//! update or withdrawal of an alert this node sent.
//!
//! A form field is named by the field's path in the envelope, as the proto's JSON mapping and
//! the node's validation name it (`traveller_alert.documents[0].mrz`), so a refusal lands on the
//! field it names without a table between them. A form is turned into an envelope through the
//! same JSON mapping the command line reads, validated here with the node's own rules, and only
//! sent when it passes; whatever the node still refuses (an agreement, an unknown peer) is shown
//! the same way.

use std::collections::BTreeMap;

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Map, Value};

use super::Console;
use super::access::{Session, csrf_ok};
use super::catalogue::Labels;
use super::pages::{Frame, PageError, field};
use crate::cli::client::{ClientError, new_message_id};
use crate::domain::model::format_instant;
use crate::pb;
use crate::pb::envelope::Body;

/// How a field is entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Input {
    /// One line of text.
    Text,
    /// Several lines.
    Long,
    /// A date, `YYYY-MM-DD`.
    Date,
    /// An instant, entered to the minute in UTC.
    Instant,
    /// A country code (ISO 3166-1 alpha-3), taken in capitals.
    Country,
    /// Country codes separated by commas, sent as a list.
    Countries,
    /// Names separated by semicolons (a name may hold a comma), sent as a list.
    Names,
    /// One of a proto enum's values, by name.
    Choice(&'static [&'static str]),
}

/// A field of a form: its envelope path, its label, how it is entered.
#[derive(Clone, Copy, Debug)]
struct Spec {
    path: &'static str,
    label: &'static str,
    input: Input,
    required: bool,
}

const fn f(path: &'static str, label: &'static str, input: Input) -> Spec {
    Spec {
        path,
        label,
        input,
        required: false,
    }
}

const fn r(path: &'static str, label: &'static str, input: Input) -> Spec {
    Spec {
        path,
        label,
        input,
        required: true,
    }
}

/// A group of fields under a heading.
type Group = (&'static str, &'static [Spec]);

const URGENCY: &[&str] = &["URGENCY_ROUTINE", "URGENCY_URGENT", "URGENCY_IMMEDIATE"];
const DISTRIBUTION: &[&str] = &[
    "DISTRIBUTION_FOCAL_POINT_ONLY",
    "DISTRIBUTION_IMMIGRATION_SERVICE",
    "DISTRIBUTION_LAW_ENFORCEMENT",
];
const ONWARD: &[&str] = &[
    "ONWARD_SHARING_PROHIBITED",
    "ONWARD_SHARING_WITH_ORIGINATOR_CONSENT",
    "ONWARD_SHARING_PERMITTED",
];
const CATEGORY: &[&str] = &[
    "ALERT_CATEGORY_SUSPECTED_NON_PROCEDURAL_MIGRANT_WORKER",
    "ALERT_CATEGORY_SUSPECTED_TRAFFICKING_VICTIM",
    "ALERT_CATEGORY_SUSPECTED_RECRUITER",
    "ALERT_CATEGORY_SUSPECTED_TRAFFICKER",
    "ALERT_CATEGORY_DEPARTURE_POSTPONED",
    "ALERT_CATEGORY_PASSPORT_ISSUANCE_POSTPONED",
    "ALERT_CATEGORY_REPATRIATION_REQUEST",
    "ALERT_CATEGORY_OVERSTAY",
];
const SEX: &[&str] = &["SEX_FEMALE", "SEX_MALE", "SEX_UNKNOWN"];
const DOCUMENT: &[&str] = &[
    "DOCUMENT_TYPE_PASSPORT",
    "DOCUMENT_TYPE_VISA",
    "DOCUMENT_TYPE_RESIDENCE_PERMIT",
    "DOCUMENT_TYPE_WORK_PERMIT",
    "DOCUMENT_TYPE_IDENTITY_CARD",
    "DOCUMENT_TYPE_EMERGENCY_TRAVEL_DOCUMENT",
    "DOCUMENT_TYPE_BORDER_PASS",
];
const INDICATOR: &[&str] = &[
    "INDICATOR_CODE_TOURIST_VISA_WITH_JOB_OFFER",
    "INDICATOR_CODE_RECRUITED_THROUGH_SOCIAL_MEDIA",
    "INDICATOR_CODE_SCAM_COMPOUND_JOB_PROFILE",
    "INDICATOR_CODE_TRANSIT_THROUGH_THIRD_COUNTRY",
    "INDICATOR_CODE_PASSPORT_HELD_BY_EMPLOYER",
    "INDICATOR_CODE_TRAVEL_PAID_BY_RECRUITER",
    "INDICATOR_CODE_INCONSISTENT_TRAVEL_PURPOSE",
    "INDICATOR_CODE_PREVIOUS_NON_PROCEDURAL_DEPARTURE",
    "INDICATOR_CODE_ACCOMPANIED_BY_RECRUITER",
    "INDICATOR_CODE_OTHER",
];
const ACTION: &[&str] = &[
    "REQUESTED_ACTION_INFORMATION_ONLY",
    "REQUESTED_ACTION_VERIFY_AND_REPORT",
    "REQUESTED_ACTION_INTERVIEW_ON_ARRIVAL",
    "REQUESTED_ACTION_LOCATE_AND_PROTECT",
    "REQUESTED_ACTION_ASSIST_REPATRIATION",
    "REQUESTED_ACTION_REFER_TO_VICTIM_SERVICES",
    "REQUESTED_ACTION_REFUSE_ENTRY_PENDING_VERIFICATION",
];
const FRAUD: &[&str] = &[
    "FRAUD_TYPE_COUNTERFEIT",
    "FRAUD_TYPE_FORGED_OR_ALTERED",
    "FRAUD_TYPE_FRAUDULENTLY_OBTAINED",
    "FRAUD_TYPE_IMPOSTOR",
    "FRAUD_TYPE_STOLEN_BLANK",
];
const RESPONSE: &[&str] = &[
    "RESPONSE_STATUS_RECEIVED",
    "RESPONSE_STATUS_MATCH_FOUND",
    "RESPONSE_STATUS_NO_MATCH",
    "RESPONSE_STATUS_LOCATED",
    "RESPONSE_STATUS_REPATRIATED",
    "RESPONSE_STATUS_CLOSED",
];

/// Every enum value a form offers or a page names, for the catalogue's test.
pub fn enum_names() -> impl Iterator<Item = &'static str> {
    let pages: &[&str] = &[
        "MESSAGE_KIND_TRAVELLER_ALERT",
        "MESSAGE_KIND_DOCUMENT_FRAUD_NOTICE",
        "MESSAGE_KIND_STATISTICS_REPORT",
        "MESSAGE_KIND_CASE_RESPONSE",
        "ALERT_LIFECYCLE_ISSUE",
        "ALERT_LIFECYCLE_UPDATE",
        "ALERT_LIFECYCLE_WITHDRAW",
        "ALERT_LIFECYCLE_EXPIRE",
        "CASE_STATUS_ACTIVE",
        "CASE_STATUS_WITHDRAWN",
        "CASE_STATUS_EXPIRED",
        "CASE_STATUS_CLOSED",
    ];
    let entries = (1..=40).filter_map(|k| pb::EntryKind::try_from(k).ok().map(|e| e.as_str_name()));
    [
        URGENCY,
        DISTRIBUTION,
        ONWARD,
        CATEGORY,
        SEX,
        DOCUMENT,
        INDICATOR,
        ACTION,
        FRAUD,
        RESPONSE,
        pages,
    ]
    .into_iter()
    .flatten()
    .copied()
    .chain(entries)
}

const HANDLING: Group = (
    "section_handling",
    &[
        r("handling.urgency", "urgency", Input::Choice(URGENCY)),
        r(
            "handling.distribution",
            "distribution",
            Input::Choice(DISTRIBUTION),
        ),
        r(
            "handling.onward_sharing",
            "onward_sharing",
            Input::Choice(ONWARD),
        ),
        f("handling.conditions", "conditions", Input::Long),
    ],
);

/// Where a new message goes: its receiver, and further peers that get a copy.
const ADDRESS: Group = (
    "section_address",
    &[
        r("receiver", "receiver", Input::Country),
        f("also_to", "also_to", Input::Countries),
    ],
);

/// Where a fraud notice goes.
const ADDRESS_ONE: Group = (
    "section_address",
    &[r("receiver", "receiver", Input::Country)],
);

/// An alert's fields, as a new alert and an update both have them.
const ALERT_BODY: [Group; 6] = [
    (
        "section_alert",
        &[
            r(
                "traveller_alert.category",
                "category",
                Input::Choice(CATEGORY),
            ),
            r(
                "traveller_alert.action_requested",
                "action_requested",
                Input::Choice(ACTION),
            ),
            r("traveller_alert.valid_until", "valid_until", Input::Date),
            f("traveller_alert.summary", "summary", Input::Long),
        ],
    ),
    (
        "section_traveller",
        &[
            r(
                "traveller_alert.person.family_name",
                "family_name",
                Input::Text,
            ),
            f(
                "traveller_alert.person.given_names",
                "given_names",
                Input::Text,
            ),
            r(
                "traveller_alert.person.date_of_birth",
                "date_of_birth",
                Input::Date,
            ),
            r("traveller_alert.person.sex", "sex", Input::Choice(SEX)),
            r(
                "traveller_alert.person.nationalities",
                "nationalities",
                Input::Countries,
            ),
            f(
                "traveller_alert.person.place_of_birth",
                "place_of_birth",
                Input::Text,
            ),
            f("traveller_alert.person.aliases", "aliases", Input::Names),
        ],
    ),
    (
        "section_document",
        &[
            f(
                "traveller_alert.documents[0].type",
                "document_type",
                Input::Choice(DOCUMENT),
            ),
            f(
                "traveller_alert.documents[0].number",
                "document_number",
                Input::Text,
            ),
            f(
                "traveller_alert.documents[0].issuing_state",
                "issuing_state",
                Input::Country,
            ),
            f(
                "traveller_alert.documents[0].expiry_date",
                "expiry_date",
                Input::Date,
            ),
            f("traveller_alert.documents[0].mrz", "mrz", Input::Long),
        ],
    ),
    (
        "section_route",
        &[
            f(
                "traveller_alert.route.departure_port",
                "departure_port",
                Input::Text,
            ),
            f(
                "traveller_alert.route.departure_date",
                "departure_date",
                Input::Date,
            ),
            f(
                "traveller_alert.route.transit_countries",
                "transit_countries",
                Input::Countries,
            ),
            f(
                "traveller_alert.route.destination_country",
                "destination_country",
                Input::Country,
            ),
            f("traveller_alert.route.carrier", "carrier", Input::Text),
        ],
    ),
    (
        "section_indicators",
        &[
            f(
                "traveller_alert.indicators[0].code",
                "indicator",
                Input::Choice(INDICATOR),
            ),
            f(
                "traveller_alert.indicators[0].detail",
                "indicator_detail",
                Input::Text,
            ),
            f(
                "traveller_alert.indicators[1].code",
                "indicator",
                Input::Choice(INDICATOR),
            ),
            f(
                "traveller_alert.indicators[1].detail",
                "indicator_detail",
                Input::Text,
            ),
            f(
                "traveller_alert.indicators[2].code",
                "indicator",
                Input::Choice(INDICATOR),
            ),
            f(
                "traveller_alert.indicators[2].detail",
                "indicator_detail",
                Input::Text,
            ),
        ],
    ),
    HANDLING,
];

const ALERT: &[Group] = &[
    ADDRESS,
    ALERT_BODY[0],
    ALERT_BODY[1],
    ALERT_BODY[2],
    ALERT_BODY[3],
    ALERT_BODY[4],
    ALERT_BODY[5],
];

/// An update goes where the alert went: the form has no address.
const UPDATE: &[Group] = &ALERT_BODY;

const FRAUD_NOTICE: &[Group] = &[
    ADDRESS_ONE,
    (
        "section_fraud",
        &[
            r(
                "document_fraud_notice.fraud_type",
                "fraud_type",
                Input::Choice(FRAUD),
            ),
            f(
                "document_fraud_notice.description",
                "description",
                Input::Long,
            ),
            r(
                "document_fraud_notice.detection.place",
                "detection_place",
                Input::Text,
            ),
            f(
                "document_fraud_notice.detection.office",
                "detection_office",
                Input::Text,
            ),
            r(
                "document_fraud_notice.detection.country",
                "detection_country",
                Input::Country,
            ),
            r(
                "document_fraud_notice.detection.detected_at",
                "detected_at",
                Input::Instant,
            ),
        ],
    ),
    (
        "section_document",
        &[
            r(
                "document_fraud_notice.document.type",
                "document_type",
                Input::Choice(DOCUMENT),
            ),
            r(
                "document_fraud_notice.document.number",
                "document_number",
                Input::Text,
            ),
            r(
                "document_fraud_notice.document.issuing_state",
                "issuing_state",
                Input::Country,
            ),
            f(
                "document_fraud_notice.document.expiry_date",
                "expiry_date",
                Input::Date,
            ),
            f("document_fraud_notice.document.mrz", "mrz", Input::Long),
        ],
    ),
    (
        "section_presented_by",
        &[
            f(
                "document_fraud_notice.presented_by.family_name",
                "family_name",
                Input::Text,
            ),
            f(
                "document_fraud_notice.presented_by.given_names",
                "given_names",
                Input::Text,
            ),
            f(
                "document_fraud_notice.presented_by.date_of_birth",
                "date_of_birth",
                Input::Date,
            ),
            f(
                "document_fraud_notice.presented_by.sex",
                "sex",
                Input::Choice(SEX),
            ),
            f(
                "document_fraud_notice.presented_by.nationalities",
                "nationalities",
                Input::Countries,
            ),
        ],
    ),
    HANDLING,
];

const RESPONSE_FORM: &[Group] = &[
    (
        "section_response",
        &[
            r(
                "case_response.status",
                "response_status",
                Input::Choice(RESPONSE),
            ),
            f("case_response.details", "details", Input::Long),
            r("case_response.office", "office", Input::Text),
        ],
    ),
    (
        "section_encounter",
        &[
            f(
                "case_response.encounter.place",
                "encounter_place",
                Input::Text,
            ),
            f(
                "case_response.encounter.country",
                "encounter_country",
                Input::Country,
            ),
            f(
                "case_response.encounter.encountered_at",
                "encountered_at",
                Input::Instant,
            ),
            f(
                "case_response.encounter.document_presented",
                "document_presented",
                Input::Text,
            ),
            f(
                "case_response.encounter.action_taken",
                "action_taken",
                Input::Text,
            ),
            f(
                "case_response.encounter.action_not_taken_reason",
                "action_not_taken_reason",
                Input::Text,
            ),
        ],
    ),
    HANDLING,
];

const WITHDRAWAL: &[Group] = &[(
    "section_withdrawal",
    &[r(
        "traveller_alert.summary",
        "withdrawal_reason",
        Input::Long,
    )],
)];

/// A field as the form template shows it.
#[derive(Debug)]
pub struct FieldView {
    pub path: &'static str,
    pub id: String,
    pub label: String,
    pub input: &'static str,
    pub value: String,
    pub options: Vec<(&'static str, String, bool)>,
    pub required: bool,
    pub error: Option<String>,
    pub hint: String,
    pub placeholder: &'static str,
}

/// A group as the form template shows it.
#[derive(Debug)]
pub struct GroupView {
    pub legend: String,
    /// Fields that go in pairs (an indicator and what was seen), two to a row.
    pub pairs: bool,
    pub fields: Vec<FieldView>,
}

#[derive(Template)]
#[template(path = "console/form.html")]
struct FormPage<'a> {
    f: Frame<'a>,
    title: String,
    action: String,
    message_id: String,
    lifecycle: String,
    groups: Vec<GroupView>,
    /// Refusals that name no field of the form.
    general: Vec<String>,
    /// (field id, label, reason) of each field refused, listed above the form.
    problems: Vec<(String, String, String)>,
    submit: &'a str,
    context: String,
}

fn html_id(path: &str) -> String {
    path.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn views(
    t: Labels<'_>,
    groups: &[Group],
    values: &BTreeMap<String, String>,
    errors: &BTreeMap<&'static str, String>,
) -> Vec<GroupView> {
    groups
        .iter()
        .map(|(legend, specs)| GroupView {
            legend: t.l(legend).to_owned(),
            pairs: *legend == "section_indicators",
            fields: specs
                .iter()
                .map(|s| {
                    let value = values.get(s.path).cloned().unwrap_or_default();
                    FieldView {
                        path: s.path,
                        id: html_id(s.path),
                        label: t.l(s.label).to_owned(),
                        input: match s.input {
                            Input::Text | Input::Country | Input::Countries | Input::Names => {
                                "text"
                            }
                            Input::Long => "textarea",
                            // Text, not the browser's date widget: that shows dates in the
                            // workstation's locale order, and the border works in ISO 8601.
                            Input::Date | Input::Instant => "text",
                            Input::Choice(_) => "select",
                        },
                        options: match s.input {
                            Input::Choice(names) => names
                                .iter()
                                .map(|n| (*n, t.value(n).to_owned(), *n == value))
                                .collect(),
                            _ => Vec::new(),
                        },
                        hint: match s.input {
                            Input::Countries => t.l("hint_countries"),
                            Input::Names => t.l("hint_names"),
                            Input::Country => t.l("hint_country"),
                            Input::Instant => t.l("hint_utc"),
                            _ if s.path.ends_with("mrz") => t.l("hint_mrz"),
                            _ => "",
                        }
                        .to_owned(),
                        placeholder: match s.input {
                            Input::Date => "YYYY-MM-DD",
                            Input::Instant => "YYYY-MM-DDTHH:MM",
                            _ => "",
                        },
                        required: s.required,
                        error: errors.get(s.path).cloned(),
                        value,
                    }
                })
                .collect(),
        })
        .collect()
}

/// The form field a refusal's path names: the field itself, the list it is an item of, or the
/// nearest enclosing field the form has.
fn field_for(groups: &[Group], path: &str) -> Option<&'static str> {
    let specs = || groups.iter().flat_map(|(_, s)| s.iter());
    let mut candidate = path.to_owned();
    loop {
        if let Some(s) = specs().find(|s| s.path == candidate) {
            return Some(s.path);
        }
        // `traveller_alert.documents[0]` is about the document's fields: its first one.
        let within = [format!("{candidate}."), format!("{candidate}[")];
        if let Some(s) = specs().find(|s| within.iter().any(|w| s.path.starts_with(w.as_str()))) {
            return Some(s.path);
        }
        // `nationalities[1]` is an item of the `nationalities` list field.
        let cut = if candidate.ends_with(']') {
            candidate.rfind('[')
        } else {
            candidate.rfind('.')
        };
        match cut {
            Some(at) => candidate.truncate(at),
            None => return None,
        }
    }
}

/// Builds the envelope's JSON from the form's fields (each under its path), in the proto JSON
/// mapping the command line reads. Empty fields are left out. With a `base` (the version an
/// update replaces), the form is laid over it: what the form does not show (a second document,
/// a fourth indicator) is kept, and a field the user emptied is removed.
fn envelope_json(
    groups: &[Group],
    values: &BTreeMap<String, String>,
    base: Option<&pb::Envelope>,
) -> Value {
    let mut root = match base.map(serde_json::to_value) {
        Some(Ok(mut json)) => {
            if let Value::Object(map) = &mut json {
                // What identifies the old version, or the node fills in for the new one.
                for key in [
                    "message_id",
                    "created_at",
                    "sender",
                    "reference",
                    "receiver",
                ] {
                    map.remove(key);
                }
            }
            json
        }
        _ => Value::Object(Map::new()),
    };
    for spec in groups.iter().flat_map(|(_, s)| s.iter()) {
        if spec.path == "also_to" {
            continue;
        }
        let Some(raw) = values.get(spec.path) else {
            remove(&mut root, spec.path);
            continue;
        };
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let value = match spec.input {
            Input::Countries | Input::Names => Value::Array(
                items(spec.input, raw)
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            ),
            // A browser sends `2025-05-02T10:30`; the field is an RFC 3339 instant in UTC.
            Input::Instant if raw.len() == 16 => Value::String(format!("{raw}:00Z")),
            Input::Instant if raw.len() == 19 && !raw.ends_with('Z') => {
                Value::String(format!("{raw}Z"))
            }
            _ => Value::String(raw.replace("\r\n", "\n")),
        };
        put(&mut root, spec.path, value);
    }
    // Indicator rows left empty are not indicators: keep only those with a code, in order.
    if let Some(list) = root
        .pointer_mut("/traveller_alert/indicators")
        .and_then(Value::as_array_mut)
    {
        list.retain(|i| {
            i.get("code")
                .and_then(Value::as_str)
                .is_some_and(|c| !c.ends_with("_UNSPECIFIED"))
        });
    }
    root
}

/// Removes what is at a dotted path with list indices, if anything is.
fn remove(root: &mut Value, path: &str) {
    let parts: Vec<&str> = path.split('.').collect();
    let mut here = root;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (*part, None),
        };
        let Value::Object(map) = here else {
            return;
        };
        if last && index.is_none() {
            map.remove(name);
            return;
        }
        let Some(next) = map.get_mut(name) else {
            return;
        };
        here = match index {
            Some(index) => match next.get_mut(index) {
                Some(item) => item,
                None => return,
            },
            None => next,
        };
    }
}

/// The items of a list field.
fn items(input: Input, raw: &str) -> impl Iterator<Item = &str> {
    let separator = if input == Input::Names { ';' } else { ',' };
    raw.split(separator)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The form's values as the envelope takes them: country codes in capitals, surrounding blanks
/// gone, a browser's CRLF line ends as LF.
fn normalised(groups: &[Group], mut values: BTreeMap<String, String>) -> BTreeMap<String, String> {
    for spec in groups.iter().flat_map(|(_, s)| s.iter()) {
        if let Some(v) = values.get_mut(spec.path) {
            let mut text = v.trim().replace("\r\n", "\n");
            if matches!(spec.input, Input::Country | Input::Countries) {
                text = text.to_ascii_uppercase();
            }
            *v = text;
        }
    }
    values.retain(|_, v| !v.is_empty());
    // Indicator rows in the order filled, without gaps: a refusal of the n-th indicator is
    // then the n-th row's.
    let row = |i: usize, part: &str| format!("traveller_alert.indicators[{i}].{part}");
    let mut rows = Vec::new();
    for i in 0..INDICATOR_ROWS {
        let (code, detail) = (
            values.remove(&row(i, "code")),
            values.remove(&row(i, "detail")),
        );
        if code.is_some() || detail.is_some() {
            rows.push((code, detail));
        }
    }
    for (i, (code, detail)) in rows.into_iter().enumerate() {
        if let Some(code) = code {
            values.insert(row(i, "code"), code);
        }
        if let Some(detail) = detail {
            values.insert(row(i, "detail"), detail);
        }
    }
    values
}

/// Indicator rows on the alert form.
const INDICATOR_ROWS: usize = 3;

/// What the console can tell about each field before the node's rules, in the user's language,
/// all at once: what is required and missing, and codes, dates and instants that are not
/// written as they must be.
fn precheck(
    t: Labels<'_>,
    groups: &[Group],
    values: &BTreeMap<String, String>,
) -> BTreeMap<&'static str, String> {
    let is_code = |c: &str| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase());
    let is_date = |d: &str| crate::domain::model::parse_date(d).is_ok();
    let mut errors = BTreeMap::new();
    for spec in groups.iter().flat_map(|(_, s)| s.iter()) {
        let Some(value) = values.get(spec.path) else {
            if spec.required {
                errors.insert(spec.path, t.l("is_required").to_owned());
            }
            continue;
        };
        let wrong = match spec.input {
            Input::Country => !is_code(value),
            Input::Countries => items(spec.input, value).any(|c| !is_code(c)),
            Input::Date => !is_date(value),
            Input::Instant => {
                let (day, time) = value.split_once('T').unwrap_or((value, ""));
                let time = time.trim_end_matches('Z');
                !is_date(day)
                    || !(time.len() == 5 || time.len() == 8)
                    || !time.bytes().enumerate().all(|(i, b)| {
                        if i % 3 == 2 {
                            b == b':'
                        } else {
                            b.is_ascii_digit()
                        }
                    })
            }
            _ => false,
        };
        // What was seen, without saying which indicator it shows.
        if spec.path.ends_with("].detail") {
            let code = spec.path.replace("].detail", "].code");
            if !values.contains_key(&code)
                && let Some(code) = groups
                    .iter()
                    .flat_map(|(_, s)| s.iter())
                    .find(|s| s.path == code)
            {
                errors.insert(code.path, t.l("indicator_needs_code").to_owned());
            }
        }
        if wrong {
            let why = match spec.input {
                Input::Country | Input::Countries => "not_country",
                Input::Date => "not_date",
                _ => "not_instant",
            };
            errors.insert(spec.path, t.l(why).to_owned());
        }
    }
    errors
}

/// Sets `value` at a dotted path with list indices (`a.b[0].c`), making what is missing.
fn put(root: &mut Value, path: &str, value: Value) {
    let mut here = root;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (*part, None),
        };
        let Value::Object(map) = here else {
            return;
        };
        match index {
            None if last => {
                map.insert(name.to_owned(), value);
                return;
            }
            None => {
                here = map
                    .entry(name.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
            }
            Some(index) => {
                let list = map
                    .entry(name.to_owned())
                    .or_insert_with(|| Value::Array(Vec::new()));
                let Value::Array(list) = list else {
                    return;
                };
                while list.len() <= index {
                    list.push(Value::Object(Map::new()));
                }
                if last {
                    list[index] = value;
                    return;
                }
                here = &mut list[index];
            }
        }
    }
}

/// The form's values for an envelope: each field of `groups` that the envelope fills.
fn values_of(groups: &[Group], envelope: &pb::Envelope) -> BTreeMap<String, String> {
    let json = serde_json::to_value(envelope).unwrap_or(Value::Null);
    let mut values = BTreeMap::new();
    for spec in groups.iter().flat_map(|(_, s)| s.iter()) {
        let mut here = Some(&json);
        for part in spec.path.split('.') {
            here = match part.split_once('[') {
                Some((name, rest)) => {
                    let index = rest.trim_end_matches(']').parse::<usize>().unwrap_or(0);
                    here.and_then(|h| h.get(name)).and_then(|l| l.get(index))
                }
                None => here.and_then(|h| h.get(part)),
            };
        }
        let text = match here {
            Some(Value::String(s)) if s.ends_with("_UNSPECIFIED") => continue,
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            _ => continue,
        };
        if !text.is_empty() {
            values.insert(spec.path.to_owned(), text);
        }
    }
    values
}

/// A form as it is being filled in or was refused.
struct Filled {
    groups: &'static [Group],
    /// The version an update replaces: what the form does not show is kept from it.
    base: Option<pb::Envelope>,
    title: String,
    action: String,
    message_id: String,
    lifecycle: String,
    values: BTreeMap<String, String>,
    errors: BTreeMap<&'static str, String>,
    general: Vec<String>,
    submit: String,
    context: String,
}

impl Console {
    fn render_form(&self, session: &Session, form: Filled) -> Result<String, PageError> {
        // The menu marks the new-alert and new-notice forms; answers and changes are reached
        // from a message.
        let here = match form.action.as_str() {
            "/send/alert" => "send",
            "/send/fraud" => "fraud",
            _ => "",
        };
        let f = self.frame(session, here);
        let t = f.t;
        let groups = views(t, form.groups, &form.values, &form.errors);
        let problems = groups
            .iter()
            .flat_map(|g| g.fields.iter())
            .filter_map(|x| {
                x.error
                    .as_ref()
                    .map(|e| (x.id.clone(), x.label.clone(), e.clone()))
            })
            .collect();
        Ok(FormPage {
            groups,
            problems,
            title: form.title,
            action: form.action,
            message_id: form.message_id,
            lifecycle: form.lifecycle,
            general: form.general,
            submit: &form.submit,
            context: form.context,
            f,
        }
        .render()?)
    }

    /// Files a refusal at the field it names, or with the form's general ones.
    fn file_refusal(form: &mut Filled, t: Labels<'_>, path: &str, reason: &str) {
        match field_for(form.groups, path) {
            Some(field) => {
                form.errors
                    .entry(field)
                    .or_insert_with(|| reason.to_owned());
            }
            None if path.is_empty() => form.general.push(reason.to_owned()),
            None => form
                .general
                .push(format!("{} {path}: {reason}", t.l("field"))),
        }
    }

    /// Validates and sends a filled form; the form again with its refusals if it does not pass.
    async fn send_form(
        &self,
        session: &Session,
        mut form: Filled,
        complete: impl FnOnce(&mut pb::Envelope),
    ) -> Result<Response, PageError> {
        let t = self.catalogue.labels(session.lang);
        form.values = normalised(form.groups, std::mem::take(&mut form.values));
        form.errors = precheck(t, form.groups, &form.values);
        if !form.errors.is_empty() {
            return Ok(axum::response::Html(self.render_form(session, form)?).into_response());
        }
        let mut json = envelope_json(form.groups, &form.values, form.base.as_ref());
        if let Value::Object(map) = &mut json {
            map.insert("message_id".into(), Value::String(form.message_id.clone()));
        }
        let text = json.to_string();
        let mut envelope = match crate::domain::validate::parse_envelope(&text) {
            Ok(e) => e,
            Err(e) => {
                form.general.push(e.to_string());
                return Ok(axum::response::Html(self.render_form(session, form)?).into_response());
            }
        };
        complete(&mut envelope);
        // The node's own rules, here first: nothing is sent until the form passes them.
        let mut check = envelope.clone();
        check.sender = self.me.country.to_string();
        check.created_at = format_instant(time::OffsetDateTime::now_utc());
        if let Err(e) = crate::domain::validate::validate(check) {
            Self::file_refusal(&mut form, t, &e.field, &e.reason);
            return Ok(axum::response::Html(self.render_form(session, form)?).into_response());
        }
        let addressed = form
            .groups
            .iter()
            .any(|(_, specs)| specs.iter().any(|s| s.path == "also_to"));
        let also_to: Vec<String> = form
            .values
            .get("also_to")
            .filter(|_| addressed)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_ascii_uppercase())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let mut client = self.client.clone();
        match client.send_copies(envelope, also_to, false).await {
            Ok(sent) => Ok(Redirect::to(&format!("/message/{}", sent.message_id)).into_response()),
            Err(ClientError::Refused(status)) if status.code() != tonic::Code::Unavailable => {
                // The node names the field first, as validation does: `field: reason`.
                let message = status.message();
                let named = message.strip_prefix("invalid ").unwrap_or(message);
                match named.split_once(": ") {
                    Some((path, reason))
                        if !path.contains(' ') && field_for(form.groups, path).is_some() =>
                    {
                        Self::file_refusal(&mut form, t, path, reason);
                    }
                    _ => form.general.push(message.to_owned()),
                }
                Ok(axum::response::Html(self.render_form(session, form)?).into_response())
            }
            Err(e) => {
                // The node did not answer: the message may or may not be logged. The form
                // stays as typed, with its message id, so sending it again sends it once.
                form.general
                    .push(format!("{} ({e})", t.l("node_unreachable")));
                Ok((
                    axum::http::StatusCode::BAD_GATEWAY,
                    axum::response::Html(self.render_form(session, form)?),
                )
                    .into_response())
            }
        }
    }
}

fn posted(fields: &[(String, String)]) -> BTreeMap<String, String> {
    fields
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn posted_id(fields: &[(String, String)], sender: &str) -> String {
    field(fields, "message_id")
        .filter(|id| id.parse::<crate::domain::model::MessageId>().is_ok())
        .map_or_else(|| new_message_id(sender), str::to_owned)
}

fn render_page(
    console: &Console,
    session: &Session,
    result: Result<Response, PageError>,
) -> Response {
    match result {
        Ok(r) => r,
        Err(e) => console.page(session, Err(e)).into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// A new alert and a new fraud notice

/// What a new message's form sends: an alert or a fraud notice.
#[derive(Clone, Copy, Debug)]
enum NewMessage {
    Alert,
    FraudNotice,
}

impl NewMessage {
    fn groups(self) -> &'static [Group] {
        match self {
            Self::Alert => ALERT,
            Self::FraudNotice => FRAUD_NOTICE,
        }
    }

    fn action(self) -> &'static str {
        match self {
            Self::Alert => "/send/alert",
            Self::FraudNotice => "/send/fraud",
        }
    }

    /// The form, titled, with no values yet.
    fn form(self, t: Labels<'_>, message_id: String) -> Filled {
        Filled {
            groups: self.groups(),
            base: None,
            title: t
                .l(match self {
                    Self::Alert => "new_alert",
                    Self::FraudNotice => "new_fraud",
                })
                .to_owned(),
            action: self.action().into(),
            message_id,
            lifecycle: String::new(),
            values: BTreeMap::new(),
            errors: BTreeMap::new(),
            general: Vec::new(),
            submit: t.l("send").to_owned(),
            context: String::new(),
        }
    }

    /// The handling a new message starts with: an alert urgent and for law enforcement, a fraud
    /// notice routine and for the immigration service; both shared onward only with the
    /// originator's consent (the protective choice for a possible victim).
    fn handling(self) -> BTreeMap<String, String> {
        let (urgency, distribution) = match self {
            Self::Alert => ("URGENCY_URGENT", "DISTRIBUTION_LAW_ENFORCEMENT"),
            Self::FraudNotice => ("URGENCY_ROUTINE", "DISTRIBUTION_IMMIGRATION_SERVICE"),
        };
        BTreeMap::from([
            ("handling.urgency".into(), urgency.into()),
            ("handling.distribution".into(), distribution.into()),
            (
                "handling.onward_sharing".into(),
                "ONWARD_SHARING_WITH_ORIGINATOR_CONSENT".into(),
            ),
        ])
    }
}

/// The empty form for a new message of `kind`.
fn new_form(console: &Console, session: &Session, kind: NewMessage) -> Response {
    let result = (|| {
        if !console.may().send {
            return Err(PageError::Forbidden);
        }
        let t = console.catalogue.labels(session.lang);
        let mut form = kind.form(t, new_message_id(console.me.country.as_str()));
        form.values = kind.handling();
        let html = console.render_form(session, form)?;
        Ok(axum::response::Html(html).into_response())
    })();
    render_page(console, session, result)
}

/// Sends a new message of `kind` from its posted form.
async fn new_submit(
    console: &Console,
    session: &Session,
    kind: NewMessage,
    fields: &[(String, String)],
) -> Response {
    let result = async {
        if !console.may().send {
            return Err(PageError::Forbidden);
        }
        if !csrf_ok(session, fields) {
            return Err(PageError::Csrf);
        }
        let t = console.catalogue.labels(session.lang);
        let mut form = kind.form(t, posted_id(fields, console.me.country.as_str()));
        form.values = posted(fields);
        console
            .send_form(session, form, |e| {
                if let Some(Body::TravellerAlert(a)) = &mut e.body {
                    a.lifecycle = pb::AlertLifecycle::Issue as i32;
                }
            })
            .await
    }
    .await;
    render_page(console, session, result)
}

/// The form for a new traveller alert.
pub async fn alert_form(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
) -> Response {
    new_form(&console, &session, NewMessage::Alert)
}

/// Sends a new traveller alert.
pub async fn alert_submit(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    new_submit(&console, &session, NewMessage::Alert, &fields).await
}

/// The form for a new document-fraud notice.
pub async fn fraud_form(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
) -> Response {
    new_form(&console, &session, NewMessage::FraudNotice)
}

/// Sends a new document-fraud notice.
pub async fn fraud_submit(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    new_submit(&console, &session, NewMessage::FraudNotice, &fields).await
}

// ---------------------------------------------------------------------------------------------
// Answering a received message, and changing a sent alert

/// The message `id` as this node holds it, and whether it was received.
async fn held(console: &Console, id: &str) -> Result<(pb::LogEntry, pb::Envelope), PageError> {
    if id.bytes().all(|b| b == b'.') {
        return Err(PageError::NotFound);
    }
    let mut client = console.client.clone();
    let shown = client.show(id).await?;
    let m = shown
        .messages
        .into_iter()
        .find(|m| {
            m.entry
                .as_ref()
                .and_then(|e| e.entry.as_ref())
                .is_some_and(|e| e.message_id == id)
        })
        .ok_or(PageError::NotFound)?;
    let entry = m.entry.and_then(|e| e.entry).ok_or(PageError::NotFound)?;
    let envelope = m.envelope.ok_or(PageError::NotFound)?;
    Ok((entry, envelope))
}

/// The handling of `envelope` as form values.
fn handling_of(envelope: &pb::Envelope) -> BTreeMap<String, String> {
    values_of(&[HANDLING], envelope)
}

/// The response form for the received message `id`.
fn response_filled(t: Labels<'_>, id: &str, entry: &pb::LogEntry) -> Filled {
    Filled {
        groups: RESPONSE_FORM,
        base: None,
        title: format!("{} {id}", t.l("respond_to")),
        action: format!("/message/{id}/respond"),
        message_id: String::new(),
        lifecycle: String::new(),
        values: BTreeMap::new(),
        errors: BTreeMap::new(),
        general: Vec::new(),
        submit: t.l("send_response").to_owned(),
        context: format!("{} {}", t.l("received_from"), entry.peer),
    }
}

/// A received alert or fraud notice, which the user may answer.
async fn answerable(
    console: &Console,
    id: &str,
) -> Result<(pb::LogEntry, pb::Envelope), PageError> {
    if !console.may().send {
        return Err(PageError::Forbidden);
    }
    let (entry, envelope) = held(console, id).await?;
    let answerable = entry.kind == pb::EntryKind::MessageReceived as i32
        && matches!(
            envelope.body,
            Some(Body::TravellerAlert(_) | Body::DocumentFraudNotice(_))
        );
    if answerable {
        Ok((entry, envelope))
    } else {
        Err(PageError::BadRequest(
            "only a received alert or fraud notice is answered here".into(),
        ))
    }
}

/// The form for answering a received alert or fraud notice.
pub async fn response_form(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        let (entry, envelope) = answerable(&console, &id).await?;
        let t = console.catalogue.labels(session.lang);
        let mut form = response_filled(t, &id, &entry);
        form.message_id = new_message_id(console.me.country.as_str());
        form.values = handling_of(&envelope);
        Ok(axum::response::Html(console.render_form(&session, form)?).into_response())
    }
    .await;
    render_page(&console, &session, result)
}

/// Sends a response to a received alert or fraud notice.
pub async fn response_submit(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let result = async {
        if !csrf_ok(&session, &fields) {
            return Err(PageError::Csrf);
        }
        let (entry, _) = answerable(&console, &id).await?;
        let t = console.catalogue.labels(session.lang);
        let mut form = response_filled(t, &id, &entry);
        form.message_id = posted_id(&fields, console.me.country.as_str());
        form.values = posted(&fields);
        let peer = entry.peer.clone();
        console
            .send_form(&session, form, move |e| {
                e.receiver = peer;
                e.reference = id;
            })
            .await
    }
    .await;
    render_page(&console, &session, result)
}

#[derive(Debug, serde::Deserialize)]
pub struct ChangeQuery {
    #[serde(default)]
    to: String,
}

/// An alert this node sent, the version of it in effect and the id its case goes by.
async fn changeable(
    console: &Console,
    id: &str,
) -> Result<(pb::LogEntry, pb::Envelope, String), PageError> {
    if !console.may().send {
        return Err(PageError::Forbidden);
    }
    let mut client = console.client.clone();
    let case = client.case(id).await?;
    let state = case.state.unwrap_or_default();
    let (entry, envelope) = held(console, &state.in_effect).await?;
    let ours = entry.kind == pb::EntryKind::MessageSent as i32
        && matches!(envelope.body, Some(Body::TravellerAlert(_)));
    if !ours {
        return Err(PageError::BadRequest(
            "only an alert this node sent is updated or withdrawn".into(),
        ));
    }
    if state.status != pb::CaseStatus::Active as i32 {
        return Err(PageError::BadRequest(
            "the case has ended: an update or withdrawal would change nothing".into(),
        ));
    }
    // Sent to several peers, each holds its own copy: a change here would reach one of them.
    let copies = case.messages.iter().any(|m| {
        m.entry
            .as_ref()
            .and_then(|e| e.entry.as_ref())
            .is_some_and(|e| !e.copy_of.is_empty())
    });
    if copies {
        return Err(PageError::BadRequest(
            "this alert went to several peers: update or withdraw it with `focalpoint alert send --to` for every peer, so that no copy is left in force".into(),
        ));
    }
    Ok((entry, envelope, state.case_id))
}

fn change_filled(t: Labels<'_>, id: &str, withdraw: bool, entry: &pb::LogEntry) -> Filled {
    Filled {
        groups: if withdraw { WITHDRAWAL } else { UPDATE },
        base: None,
        title: format!(
            "{} {id}",
            t.l(if withdraw {
                "withdraw_alert"
            } else {
                "update_alert"
            })
        ),
        action: format!("/message/{id}/change"),
        message_id: String::new(),
        lifecycle: if withdraw { "withdraw" } else { "update" }.into(),
        values: BTreeMap::new(),
        errors: BTreeMap::new(),
        general: Vec::new(),
        submit: t
            .l(if withdraw { "withdraw" } else { "send_update" })
            .to_owned(),
        context: format!("{} {}", t.l("sent_to"), entry.peer),
    }
}

/// The form for updating (the version in effect, filled in) or withdrawing a sent alert.
pub async fn change_form(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Query(q): Query<ChangeQuery>,
) -> Response {
    let result = async {
        let (entry, envelope, _) = changeable(&console, &id).await?;
        let t = console.catalogue.labels(session.lang);
        let withdraw = q.to == "withdraw";
        let mut form = change_filled(t, &id, withdraw, &entry);
        form.message_id = new_message_id(console.me.country.as_str());
        if !withdraw {
            form.values = values_of(UPDATE, &envelope);
        }
        Ok(axum::response::Html(console.render_form(&session, form)?).into_response())
    }
    .await;
    render_page(&console, &session, result)
}

/// Sends an update or a withdrawal of a sent alert, referring to the alert that opened the case.
pub async fn change_submit(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let result = async {
        if !csrf_ok(&session, &fields) {
            return Err(PageError::Csrf);
        }
        let (entry, in_effect, case_id) = changeable(&console, &id).await?;
        let withdraw = field(&fields, "lifecycle") == Some("withdraw");
        let t = console.catalogue.labels(session.lang);
        let mut form = change_filled(t, &id, withdraw, &entry);
        form.message_id = posted_id(&fields, console.me.country.as_str());
        form.values = posted(&fields);
        if !withdraw {
            form.base = Some(in_effect.clone());
        }
        let peer = entry.peer.clone();
        console
            .send_form(&session, form, move |e| {
                e.reference = case_id;
                // A change goes where the alert went, and nowhere else.
                e.receiver = peer;
                if withdraw {
                    e.handling = in_effect.handling.clone();
                    let category = match &in_effect.body {
                        Some(Body::TravellerAlert(a)) => a.category,
                        _ => 0,
                    };
                    if let Some(Body::TravellerAlert(a)) = &mut e.body {
                        a.lifecycle = pb::AlertLifecycle::Withdraw as i32;
                        a.category = category;
                    }
                } else if let Some(Body::TravellerAlert(a)) = &mut e.body {
                    a.lifecycle = pb::AlertLifecycle::Update as i32;
                }
            })
            .await
    }
    .await;
    render_page(&console, &session, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_lands_on_the_field_it_names() {
        assert_eq!(
            field_for(ALERT, "traveller_alert.documents[0].mrz"),
            Some("traveller_alert.documents[0].mrz")
        );
        assert_eq!(
            field_for(ALERT, "traveller_alert.person.nationalities[1]"),
            Some("traveller_alert.person.nationalities")
        );
        // A whole document is refused: its first field.
        assert_eq!(
            field_for(ALERT, "traveller_alert.documents[0]"),
            Some("traveller_alert.documents[0].type")
        );
        assert_eq!(field_for(ALERT, "created_at"), None);
    }

    #[test]
    fn a_form_becomes_the_envelope_the_command_line_would_read() {
        let values: BTreeMap<String, String> = [
            ("receiver", "KHM"),
            (
                "traveller_alert.category",
                "ALERT_CATEGORY_SUSPECTED_TRAFFICKING_VICTIM",
            ),
            ("traveller_alert.person.family_name", "សុខ"),
            ("traveller_alert.person.nationalities", "KHM, THA"),
            ("traveller_alert.documents[0].mrz", "P<KHM\r\nX"),
            ("traveller_alert.indicators[1].code", "INDICATOR_CODE_OTHER"),
            ("handling.urgency", "URGENCY_URGENT"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let json = envelope_json(ALERT, &values, None);
        let envelope = crate::domain::validate::parse_envelope(&json.to_string()).unwrap();
        assert_eq!(envelope.receiver, "KHM");
        let Some(Body::TravellerAlert(a)) = &envelope.body else {
            panic!("an alert");
        };
        let person = a.person.as_ref().unwrap();
        assert_eq!(person.family_name, "សុខ");
        assert_eq!(person.nationalities, ["KHM", "THA"]);
        assert_eq!(a.documents[0].mrz, "P<KHM\nX");
        // The empty first indicator row is dropped; the filled one stays.
        assert_eq!(a.indicators.len(), 1);
        assert_eq!(a.indicators[0].code, pb::IndicatorCode::Other as i32);
        // And back: the form shows what the envelope holds.
        let back = values_of(ALERT, &envelope);
        assert_eq!(
            back.get("traveller_alert.person.nationalities").unwrap(),
            "KHM, THA"
        );
        assert_eq!(back.get("handling.urgency").unwrap(), "URGENCY_URGENT");
    }

    #[test]
    fn an_update_keeps_what_the_form_does_not_show_and_drops_what_was_emptied() {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples/idn/alert-trafficking-victim.json"),
        )
        .unwrap();
        let mut base = crate::domain::validate::parse_envelope(&text).unwrap();
        let Some(Body::TravellerAlert(a)) = &mut base.body else {
            panic!("an alert");
        };
        let mut visa = a.documents[0].clone();
        visa.r#type = pb::DocumentType::Visa as i32;
        visa.mrz.clear();
        a.documents.push(visa);
        assert_eq!(a.indicators.len(), 4, "one more than the form shows");
        let mut values = values_of(UPDATE, &base);
        values.insert("traveller_alert.summary".into(), "Seen at Poipet.".into());
        values.remove("traveller_alert.route.carrier");
        let values = normalised(UPDATE, values);
        let json = envelope_json(UPDATE, &values, Some(&base));
        let update = crate::domain::validate::parse_envelope(&json.to_string()).unwrap();
        let Some(Body::TravellerAlert(u)) = &update.body else {
            panic!("an alert");
        };
        assert_eq!(u.summary, "Seen at Poipet.");
        assert_eq!(
            u.documents.len(),
            2,
            "the visa the form does not show is kept"
        );
        assert_eq!(u.indicators.len(), 4, "so is the fourth indicator");
        assert!(u.route.as_ref().unwrap().carrier.is_empty(), "emptied");
        assert!(
            update.receiver.is_empty(),
            "the address is the case's, set on sending"
        );
    }

    #[test]
    fn indicator_rows_close_up_and_a_detail_needs_its_indicator() {
        let catalogue = super::super::catalogue::Catalogue::load().unwrap();
        let t = catalogue.labels(super::super::catalogue::Lang::En);
        let values: BTreeMap<String, String> = [
            ("traveller_alert.indicators[1].code", "INDICATOR_CODE_OTHER"),
            ("traveller_alert.indicators[1].detail", "seen"),
            ("traveller_alert.indicators[2].detail", "no code"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let values = normalised(ALERT, values);
        assert_eq!(
            values.get("traveller_alert.indicators[0].code").unwrap(),
            "INDICATOR_CODE_OTHER"
        );
        assert_eq!(
            values.get("traveller_alert.indicators[1].detail").unwrap(),
            "no code"
        );
        let errors = precheck(t, ALERT, &values);
        assert_eq!(
            errors
                .get("traveller_alert.indicators[1].code")
                .map(String::as_str),
            Some("choose the indicator this describes")
        );
        assert!(errors.contains_key("receiver"), "required and empty");
        assert!(!errors.contains_key("traveller_alert.indicators[0].code"));
    }
}
