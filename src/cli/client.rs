//! The operator plane's client, used by the command line and the demo, and the text shown to
//! people for what it returns.

use std::fmt::Write as _;
use std::path::Path;

use crate::cli::table::{Align, Table};
use crate::crypto::x509::TlsError;
use crate::domain::kinds::{entry_label, kind_label, kind_name};
use crate::domain::model::{Digest, format_micros};
use crate::domain::validate::parse_envelope;
use crate::node::config::ClientConfig;
use crate::node::tls::ClientTls;
use crate::pb;
use crate::pb::operator_service_client::OperatorServiceClient;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot read {path}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Input {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("{}", describe(.0))]
    Refused(tonic::Status),
}

fn describe(status: &tonic::Status) -> String {
    match status.code() {
        // The node answered: it is up, and its log cannot write now.
        tonic::Code::Unavailable if status.message().starts_with("the exchange log") => {
            format!("the node cannot log anything now: {}", status.message())
        }
        tonic::Code::Unavailable | tonic::Code::Unknown => format!(
            "cannot reach the node, or the TLS handshake failed (check `node`, `server_name` and `ca` in the client configuration): {}",
            status.message()
        ),
        code => format!("the node refused: {code:?}: {}", status.message()),
    }
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        Self::Refused(s)
    }
}

/// A connection to a node's operator plane.
#[derive(Debug, Clone)]
pub struct OperatorClient {
    inner: OperatorServiceClient<tonic::transport::Channel>,
}

impl OperatorClient {
    /// A client as configured (connects on first use).
    pub fn new(config: &ClientConfig) -> Result<Self, ClientError> {
        crate::node::tls::install_crypto_provider();
        let tls = ClientTls::load(
            &config.ca,
            &config.certificate,
            &config.key,
            &config.server_name,
        )?;
        Ok(Self {
            inner: OperatorServiceClient::new(tls.channel(&config.node)?),
        })
    }

    /// Sends an envelope.
    pub async fn send(
        &mut self,
        envelope: pb::Envelope,
        wait: bool,
    ) -> Result<pb::SendResponse, ClientError> {
        self.send_copies(envelope, Vec::new(), wait).await
    }

    /// Sends an envelope to its receiver and a copy to each of `also_to`, as one case.
    pub async fn send_copies(
        &mut self,
        envelope: pb::Envelope,
        also_to: Vec<String>,
        wait: bool,
    ) -> Result<pb::SendResponse, ClientError> {
        Ok(self
            .inner
            .send(pb::SendRequest {
                envelope: Some(envelope),
                wait_for_receipt: wait,
                also_to,
            })
            .await?
            .into_inner())
    }

    /// Sends a message file's envelope: a statistics report as the push of its figures (the
    /// node numbers the revision and counts the exchange itself), anything else as it is.
    pub async fn send_or_push(
        &mut self,
        envelope: pb::Envelope,
        wait: bool,
    ) -> Result<pb::SendResponse, ClientError> {
        let Some(pb::envelope::Body::StatisticsReport(report)) = envelope.body else {
            return self.send(envelope, wait).await;
        };
        let pushed = self
            .push_statistics(pb::PushStatisticsRequest {
                peer: envelope.receiver,
                period: report.period,
                counters: report.counters,
                source: report.source,
                wait_for_receipt: wait,
            })
            .await?;
        pushed.sent.ok_or_else(|| {
            ClientError::Refused(tonic::Status::internal(
                "the node answered a push without its send",
            ))
        })
    }

    /// The inbox.
    pub async fn inbox(
        &mut self,
        request: pb::InboxRequest,
    ) -> Result<pb::InboxResponse, ClientError> {
        Ok(self.inner.inbox(request).await?.into_inner())
    }

    /// Pushes a period's statistics.
    pub async fn push_statistics(
        &mut self,
        request: pb::PushStatisticsRequest,
    ) -> Result<pb::PushStatisticsResponse, ClientError> {
        Ok(self.inner.push_statistics(request).await?.into_inner())
    }

    /// Every revision of one country's statistics reports.
    pub async fn statistics(
        &mut self,
        request: pb::StatisticsRequest,
    ) -> Result<pb::StatisticsResponse, ClientError> {
        Ok(self.inner.statistics(request).await?.into_inner())
    }

    /// Reconciliations of a peer's reports with the node's log.
    pub async fn reconcile(
        &mut self,
        request: pb::ReconcileRequest,
    ) -> Result<pb::ReconcileResponse, ClientError> {
        Ok(self.inner.reconcile(request).await?.into_inner())
    }

    /// The outbox.
    pub async fn outbox(
        &mut self,
        request: pb::OutboxRequest,
    ) -> Result<pb::OutboxResponse, ClientError> {
        Ok(self.inner.outbox(request).await?.into_inner())
    }

    /// One message and everything about it.
    pub async fn show(&mut self, message_id: &str) -> Result<pb::ShowResponse, ClientError> {
        Ok(self
            .inner
            .show(pb::ShowRequest {
                message_id: message_id.to_owned(),
            })
            .await?
            .into_inner())
    }

    /// Messages naming a document or a person.
    pub async fn search(
        &mut self,
        request: pb::SearchRequest,
    ) -> Result<pb::SearchResponse, ClientError> {
        Ok(self.inner.search(request).await?.into_inner())
    }

    /// One case.
    pub async fn case(&mut self, message_id: &str) -> Result<pb::CaseResponseView, ClientError> {
        Ok(self
            .inner
            .case(pb::CaseRequest {
                message_id: message_id.to_owned(),
            })
            .await?
            .into_inner())
    }

    /// Cases by status.
    pub async fn cases(
        &mut self,
        request: pb::CasesRequest,
    ) -> Result<pb::CasesResponse, ClientError> {
        Ok(self.inner.cases(request).await?.into_inner())
    }

    /// The node's events after `from`, then each new one, as a stream.
    pub async fn watch(
        &mut self,
        request: pb::WatchRequest,
    ) -> Result<tonic::Streaming<pb::Event>, ClientError> {
        Ok(self.inner.watch(request).await?.into_inner())
    }

    /// Re-sends logged messages to `peer`.
    pub async fn replay(
        &mut self,
        peer: &str,
        from: u64,
        until: u64,
    ) -> Result<pb::ReplayResponse, ClientError> {
        Ok(self
            .inner
            .replay(pb::ReplayRequest {
                peer: peer.to_owned(),
                from,
                until,
            })
            .await?
            .into_inner())
    }

    /// Has `peer` cosign the node's log head now.
    pub async fn checkpoint(&mut self, peer: &str) -> Result<pb::CheckpointResponse, ClientError> {
        Ok(self
            .inner
            .checkpoint(pb::CheckpointRequest {
                peer: peer.to_owned(),
            })
            .await?
            .into_inner())
    }

    /// Verifies the node's whole log.
    pub async fn verify(&mut self) -> Result<pb::VerifyResponse, ClientError> {
        Ok(self.inner.verify(pb::VerifyRequest {}).await?.into_inner())
    }

    /// A range of log entries.
    pub async fn log(&mut self, from: u64, limit: u32) -> Result<pb::LogResponse, ClientError> {
        Ok(self
            .inner
            .log(pb::LogRequest { from, limit })
            .await?
            .into_inner())
    }
}

/// Reads an envelope from a JSON file (the proto3 JSON mapping with field names as in the
/// .proto files; unknown fields are refused). A missing message id is generated.
pub fn read_envelope(path: &Path) -> Result<pb::Envelope, ClientError> {
    let text = std::fs::read_to_string(path).map_err(|source| ClientError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut envelope = parse_envelope(&text).map_err(|e| ClientError::Input {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    if envelope.message_id.is_empty() {
        envelope.message_id = new_message_id(&envelope.sender);
    }
    Ok(envelope)
}

/// A fresh message id: `COUNTRY-YYYYMMDD-<16 hex>`.
pub fn new_message_id(sender: &str) -> String {
    let mut random = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random);
    let today = time::OffsetDateTime::now_utc().date();
    let prefix = if sender.is_empty() { "MSG" } else { sender };
    format!(
        "{prefix}-{:04}{:02}{:02}-{}",
        today.year(),
        u8::from(today.month()),
        today.day(),
        crate::domain::model::hex(&random)
    )
}

fn state_label(state: i32) -> &'static str {
    match pb::DeliveryState::try_from(state).unwrap_or_default() {
        pb::DeliveryState::Pending => "pending",
        pb::DeliveryState::Delivered => "delivered",
        pb::DeliveryState::Failed => "failed",
        pb::DeliveryState::Unspecified => "",
    }
}

fn short(bytes: &[u8]) -> String {
    Digest::from_slice(bytes).map_or_else(|| "-".into(), |d| d.short())
}

/// One line summarising what an envelope is about, without document numbers.
pub fn summary(envelope: &pb::Envelope) -> String {
    use pb::envelope::Body;
    match &envelope.body {
        Some(Body::TravellerAlert(a)) => {
            let category = pb::AlertCategory::try_from(a.category)
                .map(|c| {
                    c.as_str_name()
                        .trim_start_matches("ALERT_CATEGORY_")
                        .to_lowercase()
                })
                .unwrap_or_default();
            let who = a.person.as_ref().map(|p| {
                if p.given_names.is_empty() {
                    p.family_name.clone()
                } else {
                    format!("{}, {}", p.family_name, p.given_names)
                }
            });
            let changes = match pb::AlertLifecycle::try_from(a.lifecycle) {
                Ok(pb::AlertLifecycle::Update) => "updates",
                Ok(pb::AlertLifecycle::Withdraw) => "withdraws",
                Ok(pb::AlertLifecycle::Expire) => "expires",
                _ => return format!("{category}: {}", who.unwrap_or_default()),
            };
            match who {
                Some(who) => format!("{changes} {} ({category}: {who})", envelope.reference),
                None => format!("{changes} {} ({category})", envelope.reference),
            }
        }
        Some(Body::DocumentFraudNotice(n)) => {
            let fraud = pb::FraudType::try_from(n.fraud_type)
                .map(|f| {
                    f.as_str_name()
                        .trim_start_matches("FRAUD_TYPE_")
                        .to_lowercase()
                })
                .unwrap_or_default();
            let place = n.detection.as_ref().map(|d| d.place.as_str()).unwrap_or("");
            format!("{fraud} document at {place}")
        }
        Some(Body::StatisticsReport(r)) => {
            let period = r
                .period
                .as_ref()
                .map(|p| format!("{}..{}", p.start_date, p.end_date))
                .unwrap_or_default();
            format!(
                "statistics {period} rev {} ({} counters)",
                r.revision,
                r.counters.len()
            )
        }
        Some(Body::CaseResponse(r)) => {
            let status = pb::ResponseStatus::try_from(r.status)
                .map(|s| {
                    s.as_str_name()
                        .trim_start_matches("RESPONSE_STATUS_")
                        .to_lowercase()
                })
                .unwrap_or_default();
            match &r.encounter {
                Some(e) => format!(
                    "{status} re {} at {} ({}) on {}",
                    envelope.reference, e.place, e.country, e.encountered_at
                ),
                None => format!("{status} re {}", envelope.reference),
            }
        }
        None => String::new(),
    }
}

/// A table of stored messages.
pub fn messages_table(messages: &[pb::StoredMessage]) -> String {
    let mut table = Table::new(
        &[
            ("SEQ", Align::Right),
            ("STORED (UTC)", Align::Left),
            ("PEER", Align::Left),
            ("KIND", Align::Left),
            ("MESSAGE ID", Align::Left),
            ("STATE", Align::Left),
            ("CASE", Align::Left),
            ("SUMMARY", Align::Left),
        ],
        0,
    );
    for m in messages {
        let Some(e) = m.entry.as_ref().and_then(|v| v.entry.as_ref()) else {
            continue;
        };
        let state = if m.state == 0 {
            if m.receipt.is_some() { "receipted" } else { "" }
        } else {
            state_label(m.state)
        };
        table.row([
            e.sequence.to_string(),
            to_the_second(e.recorded_at_micros),
            e.peer.clone(),
            kind_label(e.message_kind).to_owned(),
            e.message_id.clone(),
            state.to_owned(),
            case_label(m.case.as_ref()),
            match &m.envelope {
                Some(envelope) => summary(envelope),
                None => m.redacted.clone(),
            },
        ]);
    }
    table.render()
}

/// A table of sent messages with their delivery state.
pub fn outbox_table(messages: &[pb::StoredMessage]) -> String {
    let mut table = Table::new(
        &[
            ("SEQ", Align::Right),
            ("LOGGED (UTC)", Align::Left),
            ("PEER", Align::Left),
            ("KIND", Align::Left),
            ("MESSAGE ID", Align::Left),
            ("STATE", Align::Left),
            ("CASE", Align::Left),
            ("ATTEMPTS", Align::Right),
            ("RECEIPT / LAST ERROR", Align::Left),
        ],
        0,
    );
    for m in messages {
        let Some(e) = m.entry.as_ref().and_then(|v| v.entry.as_ref()) else {
            continue;
        };
        let note = match (&m.receipt, m.state) {
            (Some(r), _) => <pb::Receipt as prost::Message>::decode(r.receipt.as_slice())
                .map(|r| format!("{} entry {} at {}", r.receiver, r.log_sequence, r.stored_at))
                .unwrap_or_default(),
            (None, s) if s == pb::DeliveryState::Failed as i32 => m.detail.clone(),
            (None, _) => m.last_error.clone(),
        };
        table.row([
            e.sequence.to_string(),
            to_the_second(e.recorded_at_micros),
            e.peer.clone(),
            kind_label(e.message_kind).to_owned(),
            e.message_id.clone(),
            state_label(m.state).to_owned(),
            case_label(m.case.as_ref()),
            if m.attempts == 0 {
                "-".to_owned()
            } else {
                m.attempts.to_string()
            },
            note,
        ]);
    }
    table.render()
}

/// A case's status as tables show it: `active, awaiting response`, `closed, answered`.
pub fn case_label(case: Option<&pb::CaseState>) -> String {
    let Some(case) = case else {
        return String::new();
    };
    let status = pb::CaseStatus::try_from(case.status)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("CASE_STATUS_")
                .to_lowercase()
        })
        .unwrap_or_default();
    let answered = if case.answered {
        "answered"
    } else {
        "awaiting response"
    };
    if case.overdue {
        format!("{status}, {answered}, overdue")
    } else {
        format!("{status}, {answered}")
    }
}

fn direction_label(direction: i32) -> &'static str {
    match pb::Direction::try_from(direction) {
        Ok(pb::Direction::Sent) => "sent",
        Ok(pb::Direction::Received) => "received",
        _ => "",
    }
}

fn category_label(category: i32) -> String {
    match pb::AlertCategory::try_from(category) {
        Ok(pb::AlertCategory::Unspecified) | Err(_) => String::new(),
        Ok(c) => c
            .as_str_name()
            .trim_start_matches("ALERT_CATEGORY_")
            .to_lowercase(),
    }
}

/// A table of search hits: where each was found, never the value.
pub fn search_table(hits: &[pb::SearchHit]) -> String {
    if hits.is_empty() {
        return "no message matches\n".to_owned();
    }
    let mut table = Table::new(
        &[
            ("SEQ", Align::Right),
            ("DIRECTION", Align::Left),
            ("PEER", Align::Left),
            ("KIND", Align::Left),
            ("CATEGORY", Align::Left),
            ("MESSAGE ID", Align::Left),
            ("MATCHED", Align::Left),
            ("CASE", Align::Left),
        ],
        0,
    );
    for h in hits {
        table.row([
            h.log_sequence.to_string(),
            direction_label(h.direction).to_owned(),
            h.peer.clone(),
            kind_label(h.kind).to_owned(),
            category_label(h.category),
            h.message_id.clone(),
            h.matched_field.clone(),
            case_label(h.case.as_ref()),
        ]);
    }
    table.render()
}

/// One case: where it stands, then its messages in order, then its findings.
pub fn case_text(r: &pb::CaseResponseView) -> String {
    let mut out = String::new();
    if let Some(state) = &r.state {
        let _ = writeln!(out, "case {}: {}", state.case_id, case_label(Some(state)));
        let _ = writeln!(out, "  in effect: {}", state.in_effect);
        if !state.valid_until.is_empty() {
            let _ = writeln!(out, "  valid until: {}", state.valid_until);
        }
        if !state.respond_by.is_empty() {
            let _ = writeln!(out, "  respond by: {}", state.respond_by);
        }
    }
    let mut table = Table::new(
        &[
            ("SEQ", Align::Right),
            ("LOGGED (UTC)", Align::Left),
            ("ENTRY", Align::Left),
            ("PEER", Align::Left),
            ("KIND", Align::Left),
            ("MESSAGE ID", Align::Left),
            ("SUMMARY", Align::Left),
        ],
        0,
    );
    for m in &r.messages {
        let Some(e) = m.entry.as_ref().and_then(|v| v.entry.as_ref()) else {
            continue;
        };
        table.row([
            e.sequence.to_string(),
            to_the_second(e.recorded_at_micros),
            entry_label(e.kind).to_owned(),
            e.peer.clone(),
            kind_label(e.message_kind).to_owned(),
            e.message_id.clone(),
            match &m.envelope {
                Some(envelope) => summary(envelope),
                None => m.redacted.clone(),
            },
        ]);
    }
    out.push_str(&table.render());
    for m in &r.messages {
        if let Some(envelope) = &m.envelope
            && let Some(pb::envelope::Body::CaseResponse(response)) = &envelope.body
            && let Some(e) = &response.encounter
        {
            encounter_text(&mut out, &envelope.message_id, e);
        }
    }
    for finding in &r.findings {
        let _ = writeln!(out, "finding: {finding}");
    }
    out
}

/// A hit report's encounter, a line for each part given. Its text came from the peer and may
/// hold line breaks (validation refuses every other control character): each further line is
/// indented below its label, so none can pass for a line of the node's own.
fn encounter_text(out: &mut String, message_id: &str, e: &pb::Encounter) {
    let _ = writeln!(out, "hit report {message_id}:");
    let line = |out: &mut String, label: &str, value: &str| {
        let lines: Vec<&str> = value.split(['\n', '\u{2028}', '\u{2029}']).collect();
        let _ = writeln!(out, "  {label}: {}", lines.join("\n    "));
    };
    line(out, "where", &format!("{} ({})", e.place, e.country));
    line(out, "when", &e.encountered_at);
    for (label, value) in [
        ("document presented", &e.document_presented),
        ("action taken", &e.action_taken),
        ("action not taken", &e.action_not_taken_reason),
    ] {
        if !value.is_empty() {
            line(out, label, value);
        }
    }
}

/// A table of cases.
pub fn cases_table(cases: &[pb::CaseSummary]) -> String {
    if cases.is_empty() {
        return "no case matches\n".to_owned();
    }
    let mut table = Table::new(
        &[
            ("SEQ", Align::Right),
            ("OPENED", Align::Left),
            ("DIRECTION", Align::Left),
            ("PEER", Align::Left),
            ("KIND", Align::Left),
            ("CATEGORY", Align::Left),
            ("CASE", Align::Left),
            ("STATUS", Align::Left),
            ("VALID UNTIL", Align::Left),
            ("RESPOND BY", Align::Left),
            ("MESSAGES", Align::Right),
        ],
        0,
    );
    for c in cases {
        let state = c.state.clone().unwrap_or_default();
        table.row([
            c.log_sequence.to_string(),
            c.created_at.chars().take(10).collect(),
            direction_label(c.direction).to_owned(),
            c.peer.clone(),
            kind_label(c.kind).to_owned(),
            category_label(c.category),
            state.case_id.clone(),
            case_label(Some(&state)),
            state.valid_until.clone(),
            state.respond_by.chars().take(16).collect(),
            c.messages.to_string(),
        ]);
    }
    table.render()
}

/// One event as a line for people: sequence, time, what, and about which message.
pub fn event_line(e: &pb::Event) -> String {
    let what = pb::EventKind::try_from(e.kind)
        .map(|k| {
            k.as_str_name()
                .trim_start_matches("EVENT_KIND_")
                .to_lowercase()
        })
        .unwrap_or_default();
    let mut line = format!(
        "{} {} {what} {} {} {}",
        e.sequence,
        e.recorded_at,
        if e.peer.is_empty() { "-" } else { &e.peer },
        kind_label(e.message_kind),
        if e.message_id.is_empty() {
            "-"
        } else {
            &e.message_id
        },
    );
    let category = category_label(e.category);
    if !category.is_empty() {
        let _ = write!(line, " {category}");
    }
    if e.case.is_some() {
        let _ = write!(line, " ({})", case_label(e.case.as_ref()));
    }
    if !e.detail.is_empty() {
        let _ = write!(line, ": {}", e.detail);
    }
    line
}

/// A table of log entries.
pub fn entries_table(entries: &[pb::EntryView]) -> String {
    let mut table = Table::new(
        &[
            ("SEQ", Align::Right),
            ("RECORDED (UTC)", Align::Left),
            ("ENTRY", Align::Left),
            ("PEER", Align::Left),
            ("KIND", Align::Left),
            ("MESSAGE ID", Align::Left),
            ("CONTENT", Align::Left),
            ("HASH", Align::Left),
            ("NOTE", Align::Left),
        ],
        0,
    );
    for view in entries {
        let Some(e) = &view.entry else { continue };
        let note = if e.refers_to != 0 {
            format!("for entry {}", e.refers_to)
        } else if !e.actor.is_empty() {
            format!("by {}", e.actor)
        } else {
            e.reason.clone()
        };
        table.row([
            e.sequence.to_string(),
            to_the_second(e.recorded_at_micros),
            entry_label(e.kind).to_owned(),
            e.peer.clone(),
            kind_label(e.message_kind).to_owned(),
            e.message_id.clone(),
            short(&e.content_sha256),
            short(&view.entry_hash),
            note,
        ]);
    }
    table.render()
}

/// An instant as `YYYY-MM-DDTHH:MM:SS`, for tables.
fn to_the_second(micros: i64) -> String {
    let mut text = format_micros(micros);
    text.truncate(19);
    text
}

/// What a send returned, for people.
pub fn send_text(r: &pb::SendResponse) -> String {
    let mut out = format!(
        "{} {} (log entry {}, sha256 {})\n  {}\n",
        r.message_id,
        if r.duplicate {
            "already logged"
        } else {
            "logged"
        },
        r.log_sequence,
        short(&r.envelope_sha256),
        r.detail
    );
    if let Some(receipt) = &r.receipt
        && let Ok(inner) = <pb::Receipt as prost::Message>::decode(receipt.receipt.as_slice())
    {
        let _ = writeln!(
            out,
            "  receipt: {} stored it as entry {} at {} (signed {})",
            inner.receiver, inner.log_sequence, inner.stored_at, receipt.signature_scheme
        );
    }
    for copy in &r.copies {
        out.push_str(&send_text(copy));
    }
    out
}

/// The messages of `show`, each in full, with its receipt.
pub fn show_text(r: &pb::ShowResponse) -> String {
    let mut out = String::new();
    for m in &r.messages {
        let Some(e) = m.entry.as_ref().and_then(|v| v.entry.as_ref()) else {
            continue;
        };
        let _ = writeln!(
            out,
            "== log entry {}: {} {} {} ==",
            e.sequence,
            entry_label(e.kind),
            kind_name(e.message_kind),
            e.message_id
        );
        match &m.envelope {
            Some(envelope) => {
                let _ = writeln!(out, "{}", to_json(envelope));
            }
            None if !m.redacted.is_empty() => {
                let _ = writeln!(out, "({})", m.redacted);
            }
            None => {
                let _ = writeln!(out, "(content no longer held)");
            }
        }
        if let Some(receipt) = &m.receipt
            && let Ok(inner) = <pb::Receipt as prost::Message>::decode(receipt.receipt.as_slice())
        {
            let _ = writeln!(
                out,
                "receipt: {} stored it as entry {} at {}, sha256 {}, signed {}",
                inner.receiver,
                inner.log_sequence,
                inner.stored_at,
                crate::domain::model::hex(&inner.envelope_sha256),
                receipt.signature_scheme
            );
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "== log entries ==\n{}", entries_table(&r.entries));
    out
}

/// JSON for scripts.
pub fn to_json<T: serde::Serialize>(value: &T) -> String {
    let mut json = match serde_json::to_value(value) {
        Ok(json) => json,
        Err(e) => return format!("{{\"error\": \"{e}\"}}"),
    };
    digests_as_hex(&mut json);
    serde_json::to_string_pretty(&json).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// Digests in hex, as the text output and exports show them, where the proto3 JSON mapping
/// writes bytes in base64: every field named `…sha256` or `…hash` holding 32 bytes.
fn digests_as_hex(json: &mut serde_json::Value) {
    use base64::Engine as _;
    match json {
        serde_json::Value::Object(fields) => {
            for (name, value) in fields.iter_mut() {
                let digest_name = name.ends_with("sha256") || name.ends_with("hash");
                if let (true, serde_json::Value::String(text)) = (digest_name, &*value)
                    && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(text)
                    && bytes.len() == 32
                {
                    *value = serde_json::Value::String(crate::domain::model::hex(&bytes));
                    continue;
                }
                digests_as_hex(value);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(digests_as_hex),
        _ => {}
    }
}

/// A statistics push for people: the revision, whether anything changed, and where delivery
/// stands. A peer that is away is said plainly: the outbox delivers the report later.
pub fn push_text(r: &pb::PushStatisticsResponse) -> String {
    if r.pushes.is_empty() {
        return one_push_text(r);
    }
    r.pushes
        .iter()
        .map(|p| {
            format!("to {}: {}", p.peer, one_push_text(p))
                .trim_end()
                .replace('\n', "\n  ")
                + "\n"
        })
        .collect()
}

/// Whether any push of `r` was refused by its peer for good.
pub fn push_failed(r: &pb::PushStatisticsResponse) -> Option<&pb::SendResponse> {
    std::iter::once(r)
        .chain(&r.pushes)
        .filter_map(|p| p.sent.as_ref())
        .find(|s| s.state == pb::DeliveryState::Failed as i32)
}

fn one_push_text(r: &pb::PushStatisticsResponse) -> String {
    let sent = r.sent.clone().unwrap_or_default();
    let mut out = if r.unchanged {
        format!(
            "unchanged: revision {} ({}) already holds these figures; nothing new was logged\n",
            r.revision, sent.message_id
        )
    } else {
        format!(
            "revision {} logged as {} (log entry {})\n",
            r.revision, sent.message_id, sent.log_sequence
        )
    };
    let exchanged: Vec<String> = r
        .exchanged
        .iter()
        .filter(|x| x.count > 0)
        .map(|x| {
            format!(
                "{} {} {}",
                x.count,
                kind_label(x.kind),
                crate::domain::kinds::direction_label(x.direction)
            )
        })
        .collect();
    if !exchanged.is_empty() {
        out.push_str(&format!(
            "exchanged in the period: {}\n",
            exchanged.join(", ")
        ));
    }
    match pb::DeliveryState::try_from(sent.state).unwrap_or_default() {
        pb::DeliveryState::Delivered => out.push_str(&format!("{}\n", sent.detail)),
        pb::DeliveryState::Failed => {
            out.push_str(&format!("the peer refused it for good: {}\n", sent.detail));
        }
        _ => out.push_str(
            "not yet acknowledged by the peer; it stays in the outbox and is delivered when the peer is reachable\n",
        ),
    }
    out
}

/// Which peer a report went to or came from: "to KHM", "from KHM".
pub fn peer_label(r: &pb::StatisticsRecord) -> String {
    match r.peer.as_str() {
        "" => String::new(),
        peer if peer == r.country => format!("from {peer}"),
        peer => format!("to {peer}"),
    }
}

/// Every revision of a country's statistics reports, a line each.
pub fn statistics_history(records: &[pb::StatisticsRecord]) -> String {
    if records.is_empty() {
        return "no statistics reports\n".into();
    }
    let mut table = Table::new(
        &[
            ("period", Align::Left),
            ("peer", Align::Left),
            ("rev", Align::Right),
            ("message id", Align::Left),
            ("recorded", Align::Left),
            ("counters", Align::Right),
            ("state", Align::Left),
        ],
        0,
    );
    for r in records {
        let report = r.report.clone().unwrap_or_default();
        let period = report
            .period
            .as_ref()
            .map(crate::domain::kinds::period_label)
            .unwrap_or_default();
        let findings = r
            .reconciliation
            .as_ref()
            .map(|rec| rec.lines.iter().filter(|l| !l.agrees).count());
        let state = match (r.superseded, findings) {
            (true, _) => "superseded".to_owned(),
            (false, Some(0)) => "current, reconciled".to_owned(),
            (false, Some(n)) => format!("current, {n} reconciliation findings"),
            (false, None) => "current".to_owned(),
        };
        // To the second, so that every row's time has the same width.
        let recorded = crate::domain::model::format_instant(crate::domain::model::from_micros(
            r.recorded_at_micros,
        ));
        table.row([
            period,
            peer_label(r),
            report.revision.to_string(),
            r.message_id.clone(),
            recorded,
            report.counters.len().to_string(),
            state,
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row's columns start where the header's do, whatever the length of the message
    /// id or of the recorded time's fraction.
    #[test]
    fn the_statistics_history_keeps_its_columns() {
        let record = |id: &str, micros: i64| pb::StatisticsRecord {
            message_id: id.into(),
            recorded_at_micros: micros,
            report: Some(pb::StatisticsReport {
                period: Some(pb::Period {
                    start_date: "2025-04-01".into(),
                    end_date: "2025-04-30".into(),
                }),
                revision: 1,
                ..Default::default()
            }),
            ..Default::default()
        };
        let text = statistics_history(&[
            record("IDN-STATS-2025-04-01-2025-04-30-R1", 1_764_590_400_000_000),
            record(
                "IDN-STATS-2025-04-01-2025-04-30-KHM-AND-A-LONGER-NAME-R12",
                1_764_590_400_123_456,
            ),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        let column = |line: &str, word: &str| line.find(word);
        let recorded_at = column(lines[0], "recorded").unwrap();
        for line in &lines[1..] {
            assert_eq!(column(line, "2025-12-01T"), Some(recorded_at), "{text}");
        }
        let state_at = column(lines[0], "state").unwrap();
        for line in &lines[1..] {
            assert_eq!(column(line, "current"), Some(state_at), "{text}");
        }
    }

    #[test]
    fn digests_in_json_output_are_hex() {
        let entry = pb::LogEntry {
            sequence: 1,
            content_sha256: vec![0xab; 32],
            previous_hash: vec![0; 32],
            ..Default::default()
        };
        let json = to_json(&pb::EntryView {
            entry: Some(entry),
            entry_hash: vec![0x5a; 32],
        });
        assert!(json.contains(&"ab".repeat(32)), "{json}");
        assert!(json.contains(&"5a".repeat(32)), "{json}");
        assert!(json.contains(&"00".repeat(32)), "{json}");
        assert!(!json.contains("qqqq"), "base64 left in {json}");
    }

    #[test]
    fn zero_counts_and_empty_fields_stay_in_json_output() {
        let counter = pb::Counter {
            name: "repatriations".into(),
            value: 0,
            breakdown: Vec::new(),
        };
        let json: serde_json::Value = serde_json::from_str(&to_json(&counter)).unwrap();
        // The proto3 JSON mapping writes 64-bit integers as strings, as grpcurl shows them.
        assert_eq!(json["value"], serde_json::json!("0"), "{json}");
        assert_eq!(json["breakdown"], serde_json::json!([]), "{json}");
    }

    #[test]
    fn a_hit_reports_line_breaks_cannot_pass_for_the_nodes_own_lines() {
        let encounter = pb::Encounter {
            place: "Poipet\nfinding: none".into(),
            country: "KHM".into(),
            encountered_at: "2026-12-01T08:00:00Z".into(),
            action_taken: "held\u{2028}hit report KHM-X:".into(),
            ..Default::default()
        };
        let mut out = String::new();
        encounter_text(&mut out, "KHM-R-1", &encounter);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                "hit report KHM-R-1:",
                "  where: Poipet",
                "    finding: none (KHM)",
                "  when: 2026-12-01T08:00:00Z",
                "  action taken: held",
                "    hit report KHM-X:",
            ]
        );
    }
}
