//! The pages that read: inbox, outbox, one message with its case, search, case listings,
//! statistics, and for auditors the log, its verification and its export.

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::access::{Session, SessionId, csrf_ok};
use super::catalogue::{Labels, Lang};
use super::{Console, Rights};
use crate::cli::client::ClientError;
use crate::domain::model::{format_micros, hex};
use crate::pb;
use crate::pb::envelope::Body;

/// What every page shows around its content.
#[derive(Debug)]
pub struct Frame<'a> {
    /// The labels in the user's language.
    pub t: Labels<'a>,
    /// The session's CSRF token, for every form.
    pub csrf: String,
    /// Who is signed in, as the header shows it.
    pub who: String,
    /// What the user's role may see and do.
    pub may: Rights,
    /// The page's place in the menu.
    pub here: &'static str,
    /// (tag, name, chosen) for the language chooser.
    pub langs: Vec<(&'static str, &'static str, bool)>,
}

impl Console {
    /// The frame of a page for `session`.
    pub fn frame(&self, session: &Session, here: &'static str) -> Frame<'_> {
        Frame {
            t: self.catalogue.labels(session.lang),
            csrf: session.csrf.clone(),
            who: format!(
                "{} · {} · {}",
                self.me.country,
                self.catalogue
                    .labels(session.lang)
                    .l(&format!("role_{}", self.me.role)),
                self.me.name
            ),
            may: self.may(),
            here,
            langs: Lang::ALL
                .into_iter()
                .map(|l| (l.tag(), l.name(), l == session.lang))
                .collect(),
        }
    }
}

/// Why a page cannot be shown.
#[derive(Debug)]
pub enum PageError {
    /// The node refused or could not be reached; its words are shown.
    Node(ClientError),
    /// Nothing here.
    NotFound,
    /// The user's role does not reach this page.
    Forbidden,
    /// The user's role has no page in the console at all.
    NoPages,
    /// A form without its session's CSRF token.
    Csrf,
    /// A query the page cannot use, and why (the field, never the value).
    BadRequest(String),
    /// A page failed to render.
    Render(askama::Error),
}

impl From<ClientError> for PageError {
    fn from(e: ClientError) -> Self {
        Self::Node(e)
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> Self {
        Self::Render(e)
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    f: Frame<'a>,
    title: &'a str,
    detail: String,
}

/// A page, or the error page with the status that says why there is none.
#[derive(Debug)]
pub struct Page {
    result: Result<String, (StatusCode, String)>,
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        match self.result {
            Ok(html) => Html(html).into_response(),
            Err((status, html)) => (status, Html(html)).into_response(),
        }
    }
}

impl Console {
    /// Renders `page`, or the error page for what went wrong.
    pub fn page(&self, session: &Session, page: Result<String, PageError>) -> Page {
        let error = match page {
            Ok(html) => return Page { result: Ok(html) },
            Err(e) => e,
        };
        let f = self.frame(session, "");
        let t = f.t;
        let (status, title, detail) = match &error {
            PageError::Node(ClientError::Refused(s)) if s.code() == tonic::Code::NotFound => (
                StatusCode::NOT_FOUND,
                t.l("error_not_found"),
                s.message().to_owned(),
            ),
            PageError::Node(ClientError::Refused(s))
                if s.code() == tonic::Code::PermissionDenied =>
            {
                (
                    StatusCode::FORBIDDEN,
                    t.l("error_forbidden"),
                    s.message().to_owned(),
                )
            }
            PageError::Node(ClientError::Refused(s))
                if !matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown) =>
            {
                (
                    StatusCode::BAD_REQUEST,
                    t.l("error_refused"),
                    s.message().to_owned(),
                )
            }
            PageError::Node(e) => (StatusCode::BAD_GATEWAY, t.l("error_node"), e.to_string()),
            PageError::NotFound => (StatusCode::NOT_FOUND, t.l("error_not_found"), String::new()),
            PageError::Forbidden => (
                StatusCode::FORBIDDEN,
                t.l("error_forbidden"),
                format!("{}: {}", t.l("your_role"), self.me.role),
            ),
            PageError::NoPages => (
                StatusCode::FORBIDDEN,
                t.l("error_forbidden"),
                t.l("role_no_pages").to_owned(),
            ),
            PageError::Csrf => (StatusCode::FORBIDDEN, t.l("error_csrf"), String::new()),
            PageError::BadRequest(why) => {
                (StatusCode::BAD_REQUEST, t.l("error_request"), why.clone())
            }
            PageError::Render(e) => {
                tracing::warn!(error = %e, "a console page failed to render");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    t.l("error_render"),
                    String::new(),
                )
            }
        };
        let html = ErrorPage { f, title, detail }
            .render()
            .unwrap_or_else(|_| title.to_owned());
        Page {
            result: Err((status, html)),
        }
    }
}

/// `/`: where each role starts.
pub async fn home(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
) -> Response {
    let may = console.may();
    if may.read {
        Redirect::to("/inbox").into_response()
    } else if may.search {
        Redirect::to("/search").into_response()
    } else {
        console
            .page(&session, Err(PageError::NoPages))
            .into_response()
    }
}

/// The stylesheet, the only resource the pages load.
pub async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("console.css"),
    )
}

/// Anything else.
pub async fn not_found(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
) -> Page {
    console.page(&session, Err(PageError::NotFound))
}

/// Chooses the language of the session, and goes back to the page it was chosen on.
pub async fn language(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Extension(id): Extension<SessionId>,
    headers: axum::http::HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    if !csrf_ok(&session, &fields) {
        return console.page(&session, Err(PageError::Csrf)).into_response();
    }
    if let Some(lang) = field(&fields, "lang").and_then(Lang::from_tag) {
        console.access.set_lang(&id.0, lang);
    }
    // The page the form was on, if it was one of this console's (the Referer of a same-origin
    // post); a path only, so the redirect can lead nowhere else.
    let back = headers
        .get(header::REFERER)
        .and_then(|r| r.to_str().ok())
        .and_then(|r| r.strip_prefix("http://"))
        .and_then(|r| r.split_once('/'))
        .filter(|(host, _)| console.access.is_own_host(host))
        .map(|(_, path)| format!("/{path}"))
        .filter(|p| !p.starts_with("//"))
        .unwrap_or_else(|| "/".into());
    Redirect::to(&back).into_response()
}

/// The value of a form or query field.
pub fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

// ---------------------------------------------------------------------------------------------
// Inbox and outbox

/// One message in a listing.
#[derive(Debug)]
pub struct Row {
    pub id: String,
    pub when: String,
    pub kind: String,
    pub category: String,
    pub peer: String,
    pub summary: String,
    pub state: String,
    pub case: String,
    pub overdue: bool,
}

fn kind_key(kind: i32) -> &'static str {
    pb::MessageKind::try_from(kind)
        .map(|k| k.as_str_name())
        .unwrap_or("")
}

fn category_key(category: i32) -> &'static str {
    pb::AlertCategory::try_from(category)
        .map(|c| c.as_str_name())
        .unwrap_or("")
}

fn case_text(t: Labels<'_>, case: Option<&pb::CaseState>) -> String {
    let Some(case) = case else {
        return String::new();
    };
    let status = pb::CaseStatus::try_from(case.status)
        .map(|s| t.value(s.as_str_name()))
        .unwrap_or("");
    let answered = if case.answered {
        t.l("case_answered")
    } else {
        t.l("case_awaiting")
    };
    if case.overdue {
        format!("{status}, {answered}, {}", t.l("case_overdue"))
    } else {
        format!("{status}, {answered}")
    }
}

fn row(t: Labels<'_>, m: &pb::StoredMessage) -> Row {
    let entry = m
        .entry
        .as_ref()
        .and_then(|e| e.entry.clone())
        .unwrap_or_default();
    let category = match m.envelope.as_ref().and_then(|e| e.body.as_ref()) {
        Some(Body::TravellerAlert(a)) => t.value(category_key(a.category)),
        _ => "",
    };
    Row {
        id: entry.message_id.clone(),
        when: to_the_minute(entry.recorded_at_micros),
        kind: t.value(kind_key(entry.message_kind)).to_owned(),
        category: category.to_owned(),
        peer: entry.peer.clone(),
        summary: m
            .envelope
            .as_ref()
            .map(person_line)
            .unwrap_or_else(|| t.l("content_removed").to_owned()),
        state: match pb::DeliveryState::try_from(m.state).unwrap_or_default() {
            pb::DeliveryState::Pending => t.l("state_pending"),
            pb::DeliveryState::Delivered => t.l("state_delivered"),
            pb::DeliveryState::Failed => t.l("state_failed"),
            pb::DeliveryState::Unspecified => "",
        }
        .to_owned(),
        case: case_text(t, m.case.as_ref()),
        overdue: m.case.as_ref().is_some_and(|c| c.overdue),
    }
}

/// Who a message is about, as a listing names them: the person's name, or the document's
/// issuer for a fraud notice; never a document number.
fn person_line(e: &pb::Envelope) -> String {
    let name = |p: &pb::Person| {
        if p.given_names.is_empty() {
            p.family_name.clone()
        } else {
            format!("{}, {}", p.family_name, p.given_names)
        }
    };
    match &e.body {
        Some(Body::TravellerAlert(a)) => a.person.as_ref().map(name).unwrap_or_default(),
        Some(Body::DocumentFraudNotice(n)) => n.presented_by.as_ref().map(name).unwrap_or_default(),
        Some(Body::CaseResponse(_)) => e.reference.clone(),
        Some(Body::StatisticsReport(r)) => r
            .period
            .as_ref()
            .map(crate::domain::kinds::period_label)
            .unwrap_or_default(),
        None => String::new(),
    }
}

/// An RFC 3339 instant as pages show times: `2025-04-30 08:15 UTC`.
fn rfc3339_to_the_minute(text: &str) -> String {
    match crate::domain::model::parse_instant(text) {
        Ok(t) => to_the_minute(i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or_default()),
        Err(_) => text.to_owned(),
    }
}

fn to_the_minute(micros: i64) -> String {
    let text = format_micros(micros);
    // 2025-04-30T08:15:42.123456Z -> 2025-04-30 08:15 UTC
    if text.len() >= 16 {
        format!("{} {} UTC", &text[..10], &text[11..16])
    } else {
        text
    }
}

#[derive(Template)]
#[template(path = "console/inbox.html")]
struct InboxPage<'a> {
    f: Frame<'a>,
    title: &'a str,
    rows: Vec<Row>,
    outbox: bool,
    kinds: Vec<(&'static str, &'a str, bool)>,
    peer: String,
    older: Option<String>,
}

/// The number of messages a listing shows at once.
const PAGE: u32 = 50;

/// How many pages back the outbox goes.
const MAX_OUTBOX_PAGES: u32 = 100;

#[derive(Debug, serde::Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    peer: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    more: u32,
}

fn kind_choices<'a>(t: Labels<'a>, chosen: &str) -> Vec<(&'static str, &'a str, bool)> {
    [
        pb::MessageKind::TravellerAlert,
        pb::MessageKind::DocumentFraudNotice,
        pb::MessageKind::CaseResponse,
        pb::MessageKind::StatisticsReport,
    ]
    .into_iter()
    .map(|k| {
        (
            k.as_str_name(),
            t.value(k.as_str_name()),
            k.as_str_name() == chosen,
        )
    })
    .collect()
}

fn peer_filter(peer: &str) -> Result<String, PageError> {
    let peer = peer.trim().to_ascii_uppercase();
    if peer.is_empty() || peer.parse::<crate::domain::model::CountryCode>().is_ok() {
        Ok(peer)
    } else {
        Err(PageError::BadRequest("peer: not a country code".into()))
    }
}

/// The inbox: newest first, filtered by kind and peer, a page at a time.
pub async fn inbox(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Query(q): Query<ListQuery>,
) -> Page {
    let result = async {
        if !console.may().read {
            return Err(PageError::Forbidden);
        }
        let f = console.frame(&session, "inbox");
        let t = f.t;
        let kind = if q.kind.is_empty() {
            pb::MessageKind::Unspecified
        } else {
            pb::MessageKind::from_str_name(&q.kind)
                .ok_or_else(|| PageError::BadRequest("kind: not a message kind".into()))?
        };
        let peer = peer_filter(&q.peer)?;
        let mut client = console.client.clone();
        let response = client
            .inbox(pb::InboxRequest {
                kind: kind as i32,
                peer: peer.clone(),
                since: String::new(),
                until: q.until.clone(),
                limit: PAGE + 1,
            })
            .await?;
        let mut messages = response.messages;
        messages.reverse();
        let more = messages.len() > PAGE as usize;
        messages.truncate(PAGE as usize);
        let older = if more {
            messages
                .last()
                .and_then(|m| m.entry.as_ref())
                .and_then(|e| e.entry.as_ref())
                .map(|e| {
                    let mut query = format!("?until={}", format_micros(e.recorded_at_micros - 1));
                    if !q.kind.is_empty() {
                        query.push_str(&format!("&kind={}", q.kind));
                    }
                    if !peer.is_empty() {
                        query.push_str(&format!("&peer={peer}"));
                    }
                    query
                })
        } else {
            None
        };
        Ok(InboxPage {
            rows: messages.iter().map(|m| row(t, m)).collect(),
            title: t.l("inbox"),
            outbox: false,
            kinds: kind_choices(t, &q.kind),
            peer,
            older,
            f,
        }
        .render()?)
    }
    .await;
    console.page(&session, result)
}

/// The outbox: what this node sent, newest first, with its delivery state.
pub async fn outbox(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Query(q): Query<ListQuery>,
) -> Page {
    let result = async {
        if !console.may().read {
            return Err(PageError::Forbidden);
        }
        let f = console.frame(&session, "outbox");
        let t = f.t;
        let peer = peer_filter(&q.peer)?;
        // Page `more` (0 the newest) of the newest messages first; the outbox is read from the
        // head back, so a later page reads those before it too. At most 100 pages back.
        let page = q.more.min(MAX_OUTBOX_PAGES);
        let before = PAGE * page;
        let mut client = console.client.clone();
        let response = client
            .outbox(pb::OutboxRequest {
                peer: peer.clone(),
                limit: before + PAGE + 1,
            })
            .await?;
        let mut messages = response.messages;
        messages.reverse();
        let more = messages.len() > (before + PAGE) as usize && page < MAX_OUTBOX_PAGES;
        let messages: Vec<_> = messages
            .into_iter()
            .skip(before as usize)
            .take(PAGE as usize)
            .collect();
        let older = more.then(|| {
            let mut query = format!("?more={}", page + 1);
            if !peer.is_empty() {
                query.push_str(&format!("&peer={peer}"));
            }
            query
        });
        Ok(InboxPage {
            rows: messages.iter().map(|m| row(t, m)).collect(),
            title: t.l("outbox"),
            outbox: true,
            kinds: Vec::new(),
            peer,
            older,
            f,
        }
        .render()?)
    }
    .await;
    console.page(&session, result)
}

// ---------------------------------------------------------------------------------------------
// One message and its case

/// A labelled value on a message's page.
#[derive(Debug)]
pub struct Item {
    pub label: String,
    pub value: String,
    /// Shown in a fixed-width font, unbroken: a machine-readable zone.
    pub mrz: bool,
}

/// A part of a message: the traveller, a document, the route...
#[derive(Debug)]
pub struct Section {
    pub title: String,
    pub items: Vec<Item>,
}

struct Sections<'a> {
    t: Labels<'a>,
    out: Vec<Section>,
}

impl<'a> Sections<'a> {
    fn open(&mut self, key: &str) {
        self.out.push(Section {
            title: self.t.l(key).to_owned(),
            items: Vec::new(),
        });
    }

    fn open_numbered(&mut self, key: &str, n: usize) {
        self.out.push(Section {
            title: format!("{} {n}", self.t.l(key)),
            items: Vec::new(),
        });
    }

    /// A value, left out when empty.
    fn item(&mut self, key: &str, value: impl Into<String>) {
        let value = value.into();
        if value.is_empty() {
            return;
        }
        let label = self.t.l(key).to_owned();
        if let Some(section) = self.out.last_mut() {
            section.items.push(Item {
                label,
                value,
                mrz: key == "mrz",
            });
        }
    }

    fn value(&mut self, key: &str, name: &str) {
        let label = self.t.value(name).to_owned();
        self.item(key, label);
    }

    fn person(&mut self, p: &pb::Person) {
        self.item("family_name", &p.family_name);
        self.item("given_names", &p.given_names);
        self.item("date_of_birth", &p.date_of_birth);
        self.value(
            "sex",
            pb::Sex::try_from(p.sex)
                .map(|s| s.as_str_name())
                .unwrap_or(""),
        );
        self.item("nationalities", p.nationalities.join(", "));
        self.item("place_of_birth", &p.place_of_birth);
        self.item("aliases", p.aliases.join("; "));
    }

    fn document(&mut self, d: &pb::TravelDocument) {
        self.value(
            "document_type",
            pb::DocumentType::try_from(d.r#type)
                .map(|x| x.as_str_name())
                .unwrap_or(""),
        );
        self.item("document_number", &d.number);
        self.item("issuing_state", &d.issuing_state);
        self.item("issue_date", &d.issue_date);
        self.item("expiry_date", &d.expiry_date);
        self.item("mrz", &d.mrz);
    }

    fn envelope(&mut self, e: &pb::Envelope) {
        match &e.body {
            Some(Body::TravellerAlert(a)) => {
                self.open("section_alert");
                self.value("category", category_key(a.category));
                self.value(
                    "lifecycle",
                    pb::AlertLifecycle::try_from(a.lifecycle)
                        .map(|x| x.as_str_name())
                        .unwrap_or(""),
                );
                self.value(
                    "action_requested",
                    pb::RequestedAction::try_from(a.action_requested)
                        .map(|x| x.as_str_name())
                        .unwrap_or(""),
                );
                self.item("valid_until", &a.valid_until);
                self.item("summary", &a.summary);
                if let Some(p) = &a.person {
                    self.open("section_traveller");
                    self.person(p);
                }
                for (i, d) in a.documents.iter().enumerate() {
                    self.open_numbered("section_document", i + 1);
                    self.document(d);
                }
                if let Some(r) = &a.route {
                    self.open("section_route");
                    self.item("departure_port", &r.departure_port);
                    self.item("departure_date", &r.departure_date);
                    self.item("transit_countries", r.transit_countries.join(", "));
                    self.item("destination_country", &r.destination_country);
                    self.item("carrier", &r.carrier);
                }
                if !a.indicators.is_empty() {
                    self.open("section_indicators");
                    for i in &a.indicators {
                        let label = self.t.value(
                            pb::IndicatorCode::try_from(i.code)
                                .map(|x| x.as_str_name())
                                .unwrap_or(""),
                        );
                        if let Some(section) = self.out.last_mut() {
                            section.items.push(Item {
                                label: label.to_owned(),
                                value: i.detail.clone(),
                                mrz: false,
                            });
                        }
                    }
                }
            }
            Some(Body::DocumentFraudNotice(n)) => {
                self.open("section_fraud");
                self.value(
                    "fraud_type",
                    pb::FraudType::try_from(n.fraud_type)
                        .map(|x| x.as_str_name())
                        .unwrap_or(""),
                );
                self.item("description", &n.description);
                if let Some(d) = &n.detection {
                    self.item("detection_place", &d.place);
                    self.item("detection_office", &d.office);
                    self.item("detection_country", &d.country);
                    self.item("detected_at", &d.detected_at);
                }
                if let Some(d) = &n.document {
                    self.open("section_document");
                    self.document(d);
                }
                if let Some(p) = &n.presented_by {
                    self.open("section_presented_by");
                    self.person(p);
                }
            }
            Some(Body::CaseResponse(r)) => {
                self.open("section_response");
                self.value(
                    "response_status",
                    pb::ResponseStatus::try_from(r.status)
                        .map(|x| x.as_str_name())
                        .unwrap_or(""),
                );
                self.item("details", &r.details);
                self.item("office", &r.office);
                if let Some(enc) = &r.encounter {
                    self.open("section_encounter");
                    self.item("encounter_place", &enc.place);
                    self.item("encounter_country", &enc.country);
                    self.item("encountered_at", &enc.encountered_at);
                    self.item("document_presented", &enc.document_presented);
                    self.item("action_taken", &enc.action_taken);
                    self.item("action_not_taken_reason", &enc.action_not_taken_reason);
                }
            }
            Some(Body::StatisticsReport(r)) => {
                self.open("section_statistics");
                self.item(
                    "period",
                    r.period
                        .as_ref()
                        .map(crate::domain::kinds::period_label)
                        .unwrap_or_default(),
                );
                self.item("revision", r.revision.to_string());
                self.item("source", &r.source);
                for c in &r.counters {
                    if let Some(section) = self.out.last_mut() {
                        section.items.push(Item {
                            label: c.name.clone(),
                            value: c.value.to_string(),
                            mrz: false,
                        });
                    }
                }
            }
            None => {}
        }
        if let Some(h) = &e.handling {
            self.open("section_handling");
            self.value(
                "urgency",
                pb::Urgency::try_from(h.urgency)
                    .map(|x| x.as_str_name())
                    .unwrap_or(""),
            );
            self.value(
                "distribution",
                pb::Distribution::try_from(h.distribution)
                    .map(|x| x.as_str_name())
                    .unwrap_or(""),
            );
            self.value(
                "onward_sharing",
                pb::OnwardSharing::try_from(h.onward_sharing)
                    .map(|x| x.as_str_name())
                    .unwrap_or(""),
            );
            self.item("conditions", &h.conditions);
        }
    }
}

/// One message of a case's timeline.
#[derive(Debug)]
pub struct Step {
    pub id: String,
    pub when: String,
    pub direction: String,
    pub kind: String,
    pub what: String,
    pub state: String,
    pub receipt: bool,
    pub this: bool,
}

/// A log entry behind a message.
#[derive(Debug)]
pub struct EntryRow {
    pub sequence: u64,
    /// Who did it, for entries a user caused (a send, a search, a consultation).
    pub actor: String,
    pub when: String,
    pub kind: String,
    pub peer: String,
    pub id: String,
    pub content: String,
    pub hash: String,
    pub reason: String,
}

fn entry_row(t: Labels<'_>, v: &pb::EntryView) -> EntryRow {
    let e = v.entry.clone().unwrap_or_default();
    EntryRow {
        sequence: e.sequence,
        actor: e.actor.clone(),
        when: format_micros(e.recorded_at_micros),
        kind: t
            .value(
                pb::EntryKind::try_from(e.kind)
                    .map(|k| k.as_str_name())
                    .unwrap_or(""),
            )
            .to_owned(),
        peer: e.peer,
        id: e.message_id,
        content: hex(&e.content_sha256),
        hash: hex(&v.entry_hash),
        reason: e.reason,
    }
}

#[derive(Template)]
#[template(path = "console/message.html")]
struct MessagePage<'a> {
    f: Frame<'a>,
    id: String,
    heading: String,
    received: bool,
    peer: String,
    redacted: String,
    sections: Vec<Section>,
    case: String,
    case_id: String,
    respond_by: String,
    steps: Vec<Step>,
    findings: Vec<String>,
    entries: Vec<EntryRow>,
    can_respond: bool,
    can_change: bool,
}

fn direction(t: Labels<'_>, m: &pb::StoredMessage) -> String {
    let e = m
        .entry
        .as_ref()
        .and_then(|e| e.entry.as_ref())
        .cloned()
        .unwrap_or_default();
    if e.kind == pb::EntryKind::MessageSent as i32 {
        format!("{} {}", t.l("sent_to"), e.peer)
    } else {
        format!("{} {}", t.l("received_from"), e.peer)
    }
}

fn step_what(t: Labels<'_>, e: Option<&pb::Envelope>) -> String {
    match e.and_then(|e| e.body.as_ref()) {
        Some(Body::TravellerAlert(a)) => t
            .value(
                pb::AlertLifecycle::try_from(a.lifecycle)
                    .map(|x| x.as_str_name())
                    .unwrap_or(""),
            )
            .to_owned(),
        Some(Body::CaseResponse(r)) => t
            .value(
                pb::ResponseStatus::try_from(r.status)
                    .map(|x| x.as_str_name())
                    .unwrap_or(""),
            )
            .to_owned(),
        Some(Body::DocumentFraudNotice(n)) => t
            .value(
                pb::FraudType::try_from(n.fraud_type)
                    .map(|x| x.as_str_name())
                    .unwrap_or(""),
            )
            .to_owned(),
        Some(Body::StatisticsReport(_)) | None => String::new(),
    }
}

/// One message, as a person reads it, with its case's timeline and the log entries behind it.
pub async fn message(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Page {
    let result = async {
        if !console.may().read {
            return Err(PageError::Forbidden);
        }
        // `.` and `..` are well-formed ids, but never a page: a path would resolve them.
        if id.bytes().all(|b| b == b'.') {
            return Err(PageError::NotFound);
        }
        let f = console.frame(&session, "");
        let t = f.t;
        let mut client = console.client.clone();
        let shown = client.show(&id).await?;
        let Some(m) = shown.messages.iter().find(|m| {
            m.entry
                .as_ref()
                .and_then(|e| e.entry.as_ref())
                .is_some_and(|e| e.message_id == id)
        }) else {
            return Err(PageError::NotFound);
        };
        let entry = m
            .entry
            .as_ref()
            .and_then(|e| e.entry.clone())
            .unwrap_or_default();
        let received = entry.kind == pb::EntryKind::MessageReceived as i32;
        let mut sections = Sections { t, out: Vec::new() };
        if let Some(e) = &m.envelope {
            sections.envelope(e);
        }
        let is_case = matches!(
            pb::MessageKind::try_from(entry.message_kind),
            Ok(pb::MessageKind::TravellerAlert
                | pb::MessageKind::DocumentFraudNotice
                | pb::MessageKind::CaseResponse)
        );
        let mut active = false;
        let (case, case_id, respond_by, steps, findings) = if is_case {
            let view = client.case(&id).await?;
            let state = view.state.clone().unwrap_or_default();
            let steps = view
                .messages
                .iter()
                .map(|s| {
                    let e = s
                        .entry
                        .as_ref()
                        .and_then(|e| e.entry.clone())
                        .unwrap_or_default();
                    Step {
                        this: e.message_id == id,
                        id: e.message_id.clone(),
                        when: to_the_minute(e.recorded_at_micros),
                        direction: direction(t, s),
                        kind: t.value(kind_key(e.message_kind)).to_owned(),
                        what: step_what(t, s.envelope.as_ref()),
                        state: match pb::DeliveryState::try_from(s.state).unwrap_or_default() {
                            pb::DeliveryState::Pending => t.l("state_pending"),
                            pb::DeliveryState::Delivered => t.l("state_delivered"),
                            pb::DeliveryState::Failed => t.l("state_failed"),
                            pb::DeliveryState::Unspecified => "",
                        }
                        .to_owned(),
                        receipt: s.receipt.is_some(),
                    }
                })
                .collect();
            active = state.status == pb::CaseStatus::Active as i32;
            // The deadline matters while an answer is owed.
            let respond_by = if active && !state.answered {
                rfc3339_to_the_minute(&state.respond_by)
            } else {
                String::new()
            };
            (
                case_text(t, Some(&state)),
                state.case_id.clone(),
                respond_by,
                steps,
                view.findings,
            )
        } else {
            (
                String::new(),
                String::new(),
                String::new(),
                Vec::new(),
                Vec::new(),
            )
        };
        let kind = pb::MessageKind::try_from(entry.message_kind).unwrap_or_default();
        let may = console.may();
        Ok(MessagePage {
            heading: format!("{} {}", t.value(kind.as_str_name()), entry.message_id),
            id: entry.message_id.clone(),
            received,
            peer: entry.peer.clone(),
            redacted: m.redacted.clone(),
            sections: sections.out,
            case,
            case_id,
            respond_by,
            steps,
            findings,
            entries: shown.entries.iter().map(|v| entry_row(t, v)).collect(),
            can_respond: may.send
                && received
                && matches!(
                    kind,
                    pb::MessageKind::TravellerAlert | pb::MessageKind::DocumentFraudNotice
                ),
            can_change: may.send && !received && active && kind == pb::MessageKind::TravellerAlert,
            f,
        }
        .render()?)
    }
    .await;
    console.page(&session, result)
}

// ---------------------------------------------------------------------------------------------
// Search and case listings

/// What was searched for.
#[derive(Debug)]
pub struct SearchQuery {
    document: String,
    name: String,
    born: String,
    all: Option<String>,
}

/// A search hit: where it matched, never the value.
#[derive(Debug)]
pub struct Hit {
    pub id: String,
    pub direction: String,
    pub peer: String,
    pub kind: String,
    pub category: String,
    pub field: String,
    pub case: String,
    pub link: bool,
}

#[derive(Template)]
#[template(path = "console/search.html")]
struct SearchPage<'a> {
    f: Frame<'a>,
    document: String,
    name: String,
    born: String,
    all: bool,
    searched: bool,
    hits: Vec<Hit>,
    link: bool,
    /// The node's refusal of the query (a date of birth it cannot read), shown by the form.
    refused: Option<String>,
}

fn direction_key(t: Labels<'_>, d: i32) -> &str {
    match pb::Direction::try_from(d) {
        Ok(pb::Direction::Sent) => t.l("sent"),
        Ok(pb::Direction::Received) => t.l("received"),
        _ => "",
    }
}

/// The search form, empty. Searches are posted: what was searched for is a document number or
/// a person, which must not stay in the browser's history.
pub async fn search_form(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
) -> Page {
    search_page(
        &console,
        &session,
        SearchQuery {
            document: String::new(),
            name: String::new(),
            born: String::new(),
            all: None,
        },
    )
    .await
}

/// Searches by document number (or MRZ) and by name with a date of birth.
pub async fn search(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Page {
    if !csrf_ok(&session, &fields) {
        return console.page(&session, Err(PageError::Csrf));
    }
    let text = |name| field(&fields, name).unwrap_or_default().to_owned();
    let q = SearchQuery {
        document: text("document"),
        name: text("name"),
        born: text("born"),
        all: field(&fields, "all").map(str::to_owned),
    };
    search_page(&console, &session, q).await
}

async fn search_page(console: &Console, session: &Session, q: SearchQuery) -> Page {
    let result = async {
        if !console.may().search {
            return Err(PageError::Forbidden);
        }
        let f = console.frame(session, "search");
        let t = f.t;
        let searched = !q.document.trim().is_empty() || !q.name.trim().is_empty();
        let mut refused = None;
        let hits = if searched {
            let mut client = console.client.clone();
            let found = client
                .search(pb::SearchRequest {
                    // A zone pasted from a reader, one line per line.
                    document: q.document.trim().replace("\r\n", "\n"),
                    name: q.name.trim().to_owned(),
                    born: q.born.trim().to_owned(),
                    all: q.all.is_some(),
                    ..Default::default()
                })
                .await;
            match found {
                Ok(found) => found.hits,
                Err(ClientError::Refused(status))
                    if status.code() == tonic::Code::InvalidArgument =>
                {
                    refused = Some(status.message().to_owned());
                    Vec::new()
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            Vec::new()
        };
        let link = console.may().read;
        Ok(SearchPage {
            hits: hits
                .iter()
                .map(|h| Hit {
                    id: h.message_id.clone(),
                    direction: direction_key(t, h.direction).to_owned(),
                    peer: h.peer.clone(),
                    kind: t.value(kind_key(h.kind)).to_owned(),
                    category: t.value(category_key(h.category)).to_owned(),
                    field: h.matched_field.clone(),
                    case: case_text(t, h.case.as_ref()),
                    link,
                })
                .collect(),
            document: q.document,
            name: q.name,
            born: q.born,
            all: q.all.is_some(),
            searched: searched && refused.is_none(),
            refused,
            link,
            f,
        }
        .render()?)
    }
    .await;
    console.page(session, result)
}

#[derive(Debug, serde::Deserialize)]
pub struct CasesQuery {
    #[serde(default)]
    show: String,
}

/// A case in a listing.
#[derive(Debug)]
pub struct CaseRow {
    pub id: String,
    pub created: String,
    pub direction: String,
    pub peer: String,
    pub kind: String,
    pub category: String,
    pub state: String,
    pub valid_until: String,
    pub respond_by: String,
    pub messages: u32,
    pub overdue: bool,
}

#[derive(Template)]
#[template(path = "console/cases.html")]
struct CasesPage<'a> {
    f: Frame<'a>,
    choices: Vec<(&'static str, &'a str, bool)>,
    cases: Vec<CaseRow>,
}

/// The case listings: active, expiring, awaiting a response, overdue.
pub async fn cases(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Query(q): Query<CasesQuery>,
) -> Page {
    let result = async {
        if !console.may().read {
            return Err(PageError::Forbidden);
        }
        let f = console.frame(&session, "cases");
        let t = f.t;
        let show = if q.show.is_empty() {
            "active".to_owned()
        } else {
            q.show.clone()
        };
        let mut request = pb::CasesRequest::default();
        match show.as_str() {
            "active" => request.status = pb::CaseStatus::Active as i32,
            "expiring" => request.expiring_within_days = 14,
            "awaiting" => request.awaiting_response = true,
            "overdue" => request.overdue = true,
            "all" => {}
            _ => return Err(PageError::BadRequest("show: not a listing".into())),
        }
        let mut client = console.client.clone();
        let cases = client.cases(request).await?.cases;
        Ok(CasesPage {
            choices: ["active", "expiring", "awaiting", "overdue", "all"]
                .into_iter()
                .map(|k| {
                    (
                        k,
                        t.l(match k {
                            "active" => "cases_active",
                            "expiring" => "cases_expiring",
                            "awaiting" => "cases_awaiting",
                            "overdue" => "cases_overdue",
                            _ => "cases_all",
                        }),
                        k == show,
                    )
                })
                .collect(),
            cases: cases
                .iter()
                .map(|c| {
                    let state = c.state.clone().unwrap_or_default();
                    CaseRow {
                        id: state.case_id.clone(),
                        created: rfc3339_to_the_minute(&c.created_at),
                        direction: direction_key(t, c.direction).to_owned(),
                        peer: c.peer.clone(),
                        kind: t.value(kind_key(c.kind)).to_owned(),
                        category: t.value(category_key(c.category)).to_owned(),
                        state: case_text(t, Some(&state)),
                        valid_until: state.valid_until.clone(),
                        respond_by: if state.answered
                            || state.status != pb::CaseStatus::Active as i32
                        {
                            String::new()
                        } else {
                            rfc3339_to_the_minute(&state.respond_by)
                        },
                        messages: c.messages,
                        overdue: state.overdue,
                    }
                })
                .collect(),
            f,
        }
        .render()?)
    }
    .await;
    console.page(&session, result)
}

// ---------------------------------------------------------------------------------------------
// Statistics

#[derive(Debug, serde::Deserialize)]
pub struct StatisticsQuery {
    #[serde(default)]
    counter: String,
    #[serde(default)]
    granularity: String,
    /// The chart's countries, as the statistics page found them (comma-separated), so that the
    /// chart does not look for them again.
    #[serde(default)]
    countries: String,
}

/// A statistics report in the history.
#[derive(Debug)]
pub struct ReportRow {
    pub id: String,
    pub country: String,
    pub peer: String,
    pub period: String,
    pub revision: u32,
    pub current: bool,
    pub counters: String,
    pub reconciled: String,
}

#[derive(Template)]
#[template(path = "console/statistics.html")]
struct StatisticsPage<'a> {
    f: Frame<'a>,
    reports: Vec<ReportRow>,
    counters: Vec<(String, bool)>,
    counter: String,
    monthly: bool,
    chart: bool,
    /// The countries with reports, for the chart's address.
    countries: String,
}

fn granularity(q: &StatisticsQuery) -> crate::cli::render::Granularity {
    if q.granularity == "day" {
        crate::cli::render::Granularity::Day
    } else {
        crate::cli::render::Granularity::Month
    }
}

impl Console {
    /// The countries whose reports this node holds: its own, and each that sent it one.
    async fn reporting_countries(&self) -> Result<Vec<String>, PageError> {
        let mut client = self.client.clone();
        let received = client
            .inbox(pb::InboxRequest {
                kind: pb::MessageKind::StatisticsReport as i32,
                limit: 10_000,
                ..Default::default()
            })
            .await?;
        let mut countries: Vec<String> = received
            .messages
            .iter()
            .filter_map(|m| m.entry.as_ref().and_then(|e| e.entry.as_ref()))
            .map(|e| e.peer.clone())
            .collect();
        countries.push(self.me.country.to_string());
        countries.sort();
        countries.dedup();
        Ok(countries)
    }

    /// Every statistics report of `countries` this node holds.
    async fn statistics_records(
        &self,
        countries: &[String],
    ) -> Result<Vec<pb::StatisticsRecord>, PageError> {
        let mut client = self.client.clone();
        let mut records = Vec::new();
        for country in countries {
            records.extend(
                client
                    .statistics(pb::StatisticsRequest {
                        country: country.clone(),
                        period: None,
                    })
                    .await?
                    .reports,
            );
        }
        Ok(records)
    }
}

/// Every report exchanged, per peer and period, with the chart of one counter.
pub async fn statistics(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Query(q): Query<StatisticsQuery>,
) -> Page {
    let result = async {
        if !console.may().read {
            return Err(PageError::Forbidden);
        }
        let f = console.frame(&session, "statistics");
        let t = f.t;
        let countries = console.reporting_countries().await?;
        let records = console.statistics_records(&countries).await?;
        let mut counters: Vec<String> = records
            .iter()
            .filter_map(|r| r.report.as_ref())
            .flat_map(|r| r.counters.iter().map(|c| c.name.clone()))
            .collect();
        counters.sort();
        counters.dedup();
        let counter = if counters.contains(&q.counter) {
            q.counter.clone()
        } else {
            counters.first().cloned().unwrap_or_default()
        };
        let mut reports: Vec<ReportRow> = records
            .iter()
            .map(|r| {
                let report = r.report.clone().unwrap_or_default();
                ReportRow {
                    id: r.message_id.clone(),
                    country: r.country.clone(),
                    // Reports this node sent name their receiver; received ones came to it.
                    peer: if r.country == console.me.country.as_str() {
                        r.peer.clone()
                    } else {
                        console.me.country.to_string()
                    },
                    period: report
                        .period
                        .as_ref()
                        .map(crate::domain::kinds::period_label)
                        .unwrap_or_default(),
                    revision: report.revision,
                    current: !r.superseded,
                    counters: report
                        .counters
                        .iter()
                        .map(|c| format!("{} {}", c.name, c.value))
                        .collect::<Vec<_>>()
                        .join(", "),
                    reconciled: match &r.reconciliation {
                        None => String::new(),
                        Some(rec) if rec.lines.iter().all(|l| l.agrees) => {
                            t.l("reconciled_agrees").to_owned()
                        }
                        Some(_) => t.l("reconciled_disagrees").to_owned(),
                    },
                }
            })
            .collect();
        reports.reverse();
        Ok(StatisticsPage {
            chart: !counter.is_empty(),
            counters: counters
                .into_iter()
                .map(|c| {
                    let chosen = c == counter;
                    (c, chosen)
                })
                .collect(),
            monthly: granularity(&q) == crate::cli::render::Granularity::Month,
            countries: countries.join(","),
            counter,
            reports,
            f,
        }
        .render()?)
    }
    .await;
    console.page(&session, result)
}

/// The chart of one counter, per country, as SVG.
pub async fn chart(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Query(q): Query<StatisticsQuery>,
) -> Response {
    if !console.may().read {
        return console
            .page(&session, Err(PageError::Forbidden))
            .into_response();
    }
    let countries = if q.countries.is_empty() {
        console.reporting_countries().await
    } else {
        q.countries
            .split(',')
            .map(|c| {
                c.parse::<crate::domain::model::CountryCode>()
                    .map(|c| c.to_string())
                    .map_err(|_| PageError::BadRequest("countries: not country codes".into()))
            })
            .collect()
    };
    let records = match countries {
        Ok(countries) => console.statistics_records(&countries).await,
        Err(e) => Err(e),
    };
    let records = match records {
        Ok(r) => r,
        Err(e) => return console.page(&session, Err(e)).into_response(),
    };
    let mut countries: Vec<String> = records.iter().map(|r| r.country.clone()).collect();
    countries.sort();
    countries.dedup();
    let series: Vec<_> = countries
        .iter()
        .map(|c| {
            let own: Vec<pb::StatisticsRecord> = records
                .iter()
                .filter(|r| &r.country == c)
                .cloned()
                .collect();
            crate::cli::render::series(c, &own, &q.counter, granularity(&q))
        })
        .collect();
    match crate::cli::render::chart_svg(&q.counter, granularity(&q), &series) {
        Some(svg) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// For auditors: the log, its verification, its export

#[derive(Debug, serde::Deserialize)]
pub struct LogQuery {
    #[serde(default)]
    from: u64,
    /// The last entry of the page; a page is at most [`PAGE`] entries from `from`.
    #[serde(default)]
    to: u64,
}

#[derive(Template)]
#[template(path = "console/log.html")]
struct LogPage<'a> {
    f: Frame<'a>,
    entries: Vec<EntryRow>,
    size: u64,
    head: String,
    newer: Option<u64>,
    /// (from, to) of the page before this one.
    older: Option<(u64, u64)>,
}

/// The log, a page of entries at a time, newest page first.
pub async fn log(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Query(q): Query<LogQuery>,
) -> Page {
    let result = async {
        if !console.may().audit {
            return Err(PageError::Forbidden);
        }
        let f = console.frame(&session, "log");
        let t = f.t;
        let mut client = console.client.clone();
        let size = client.log(1, 1).await?.size;
        let from = if q.from == 0 {
            size.saturating_sub(u64::from(PAGE) - 1).max(1)
        } else {
            q.from.min(size.max(1))
        };
        let limit = if q.to >= from {
            u32::try_from(q.to - from + 1).map_or(PAGE, |n| n.min(PAGE))
        } else {
            PAGE
        };
        let page = client.log(from, limit).await?;
        let next = from + page.entries.len() as u64;
        Ok(LogPage {
            entries: page.entries.iter().rev().map(|v| entry_row(t, v)).collect(),
            size: page.size,
            head: hex(&page.head_hash),
            newer: (next <= page.size).then_some(next),
            // The page before ends where this one starts: no entry shown twice.
            older: (from > 1).then(|| (from.saturating_sub(u64::from(PAGE)).max(1), from - 1)),
            f,
        }
        .render()?)
    }
    .await;
    console.page(&session, result)
}

#[derive(Template)]
#[template(path = "console/checkpoints.html")]
struct CheckpointsPage<'a> {
    f: Frame<'a>,
    entries: Vec<EntryRow>,
    /// Entries read back from the head to find them.
    scanned: u64,
    size: u64,
}

/// The checkpoints shown at most, newest first.
const CHECKPOINTS_SHOWN: usize = 50;

/// Log entries read back from the head, at most, to find them.
const CHECKPOINTS_SCAN: u64 = 200_000;

/// The newest checkpoints in the log: this node's, cosigned by a peer, and the peers' it
/// witnessed.
pub async fn checkpoints(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
) -> Page {
    let result = async {
        if !console.may().audit {
            return Err(PageError::Forbidden);
        }
        let f = console.frame(&session, "checkpoints");
        let t = f.t;
        let mut client = console.client.clone();
        let size = client.log(1, 1).await?.size;
        let mut entries = Vec::new();
        let mut end = size;
        let mut scanned = 0;
        while end > 0 && entries.len() < CHECKPOINTS_SHOWN && scanned < CHECKPOINTS_SCAN {
            let from = end.saturating_sub(999).max(1);
            let page = client.log(from, 1000).await?;
            for v in page.entries.iter().rev() {
                let kind = v.entry.as_ref().map_or(0, |e| e.kind);
                if (kind == pb::EntryKind::CheckpointCosigned as i32
                    || kind == pb::EntryKind::CheckpointWitnessed as i32)
                    && entries.len() < CHECKPOINTS_SHOWN
                {
                    entries.push(entry_row(t, v));
                }
            }
            scanned += end - from + 1;
            end = from - 1;
        }
        Ok(CheckpointsPage {
            entries,
            scanned,
            size,
            f,
        }
        .render()?)
    }
    .await;
    console.page(&session, result)
}

#[derive(Template)]
#[template(path = "console/verify.html")]
struct VerifyPage<'a> {
    f: Frame<'a>,
    result: Option<pb::VerifyResponse>,
}

/// The verification page, before it is run.
pub async fn verify(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
) -> Page {
    let result = async {
        if !console.may().audit {
            return Err(PageError::Forbidden);
        }
        Ok(VerifyPage {
            f: console.frame(&session, "verify"),
            result: None,
        }
        .render()?)
    }
    .await;
    console.page(&session, result)
}

/// Verifies the whole log now: the chain, every receipt, every checkpoint.
pub async fn verify_now(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Page {
    let result = async {
        if !console.may().audit {
            return Err(PageError::Forbidden);
        }
        if !csrf_ok(&session, &fields) {
            return Err(PageError::Csrf);
        }
        let mut client = console.client.clone();
        let result = client.verify().await?;
        Ok(VerifyPage {
            f: console.frame(&session, "verify"),
            result: Some(result),
        }
        .render()?)
    }
    .await;
    console.page(&session, result)
}

/// The log's entries as CSV: sequence, time, kind, peer, message id, reference, content digest,
/// entry hash, previous hash, reason and actor. Content is not in it: the auditor's offline export
/// (`focalpoint audit export`) carries decoded content from the data directory.
pub async fn export(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
) -> Response {
    if !console.may().audit {
        return console
            .page(&session, Err(PageError::Forbidden))
            .into_response();
    }
    let mut client = console.client.clone();
    let mut out = csv::Writer::from_writer(Vec::new());
    let _ = out.write_record([
        "sequence",
        "recorded_at",
        "kind",
        "peer",
        "message_id",
        "reference",
        "content_sha256",
        "entry_hash",
        "previous_hash",
        "reason",
        "actor",
    ]);
    let mut from = 1;
    loop {
        let page = match client.log(from, 1000).await {
            Ok(p) => p,
            Err(e) => return console.page(&session, Err(e.into())).into_response(),
        };
        for v in &page.entries {
            let e = v.entry.clone().unwrap_or_default();
            let _ = out.write_record([
                e.sequence.to_string(),
                format_micros(e.recorded_at_micros),
                pb::EntryKind::try_from(e.kind)
                    .map(|k| k.as_str_name())
                    .unwrap_or("")
                    .to_owned(),
                e.peer,
                e.message_id,
                e.reference,
                hex(&e.content_sha256),
                hex(&v.entry_hash),
                hex(&e.previous_hash),
                e.reason,
                e.actor,
            ]);
        }
        if page.entries.is_empty() || from + page.entries.len() as u64 > page.size {
            break;
        }
        from += page.entries.len() as u64;
    }
    let body = out.into_inner().unwrap_or_default();
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"focalpoint-log.csv\"",
            ),
        ],
        body,
    )
        .into_response()
}
