//! Search, and the record of who consulted what.
//!
//! A search looks a term up in the log's search index (keyed hashes, never the term), then reads
//! each candidate's envelope and finds the term again in it, so that what is returned names the
//! field that matched and nothing a hash collision or a stale index could add. Filters, the date
//! of birth among them, are applied to the envelope.
//!
//! Every search, every message shown and every case read is personal data consulted: each
//! appends a consultation entry to the chain (the actor from the certificate, the operation,
//! the message ids returned, never the query's terms) before the answer is given.

use prost::Message;

use crate::domain::model::{CountryCode, Identity, Role, format_instant};
use crate::domain::search::{self, Born, Term};
use crate::domain::validate::ValidationError;
use crate::exchange::cases::CaseStatus;
use crate::exchange::core::Exchange;
use crate::exchange::error::ExchangeError;
use crate::log::NewEntry;
use crate::pb;

/// What to search for: a document, a name, or both (a message must match both), and filters.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// A document number.
    pub document: Option<Term>,
    /// A name.
    pub name: Option<Term>,
    /// Narrows a name: a full or partial date of birth.
    pub born: Option<Born>,
    /// Only people of this nationality.
    pub nationality: Option<CountryCode>,
    /// Only this kind of message.
    pub kind: Option<pb::MessageKind>,
    /// Only this alert category.
    pub category: Option<pb::AlertCategory>,
    /// Only sent, or only received, messages.
    pub direction: Option<pb::Direction>,
    /// Also withdrawn, expired and closed cases.
    pub all: bool,
}

impl Query {
    /// The query an operator-plane request asks for; refused, naming the field, when a value is
    /// malformed. The refusal never quotes the value.
    pub fn from_request(r: &pb::SearchRequest) -> Result<Self, ExchangeError> {
        let invalid = |field: &str, reason: &str| {
            ExchangeError::Invalid(ValidationError::new(field.to_owned(), reason.to_owned()))
        };
        let document = match r.document.trim() {
            "" => None,
            text if text.contains('\n') => Some(
                search::mrz_number(text)
                    .ok_or_else(|| invalid("document", "is not a machine-readable zone"))?,
            ),
            text => Some(
                Term::document(text)
                    .ok_or_else(|| invalid("document", "holds no letter or digit"))?,
            ),
        };
        let name = match r.name.trim() {
            "" => None,
            text => Some(
                Term::name([text]).ok_or_else(|| invalid("name", "holds no letter or digit"))?,
            ),
        };
        if document.is_none() && name.is_none() {
            return Err(invalid(
                "document",
                "a document number or a name is required",
            ));
        }
        let born = match r.born.trim() {
            "" => None,
            text => Some(
                text.parse::<Born>()
                    .map_err(|e| invalid("born", &e.to_string()))?,
            ),
        };
        let nationality = match r.nationality.trim() {
            "" => None,
            text => Some(text.parse().map_err(|_| {
                invalid("nationality", "is not a country code (ISO 3166-1 alpha-3)")
            })?),
        };
        let kind = match pb::MessageKind::try_from(r.kind) {
            Ok(pb::MessageKind::Unspecified) => None,
            Ok(k) => Some(k),
            Err(_) => return Err(invalid("kind", "is not a known value")),
        };
        let category = match pb::AlertCategory::try_from(r.category) {
            Ok(pb::AlertCategory::Unspecified) => None,
            Ok(c) => Some(c),
            Err(_) => return Err(invalid("category", "is not a known value")),
        };
        let direction = match pb::Direction::try_from(r.direction) {
            Ok(pb::Direction::Unspecified) => None,
            Ok(d) => Some(d),
            Err(_) => return Err(invalid("direction", "is not a known value")),
        };
        Ok(Self {
            document,
            name,
            born,
            nationality,
            kind,
            category,
            direction,
            all: r.all,
        })
    }
}

/// One message found.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Where it sits in the log.
    pub sequence: u64,
    /// What the operator plane shows of it.
    pub view: pb::SearchHit,
}

/// The people a message is about: an alert's person, a fraud notice's presenter.
fn person_of(envelope: &pb::Envelope) -> Option<&pb::Person> {
    match envelope.body.as_ref()? {
        pb::envelope::Body::TravellerAlert(a) => a.person.as_ref(),
        pb::envelope::Body::DocumentFraudNotice(n) => n.presented_by.as_ref(),
        _ => None,
    }
}

impl Exchange {
    /// Who may search: operators, auditors and the border systems' screening role.
    pub fn authorize_search(&self, caller: &Identity) -> Result<(), ExchangeError> {
        self.local_user(caller)?;
        match caller.role {
            Role::Operator | Role::Auditor | Role::Screening => Ok(()),
            Role::Sync | Role::Node => Err(ExchangeError::Forbidden(format!(
                "role {} may not search",
                caller.role
            ))),
        }
    }

    /// The messages that match `query`, oldest first, recorded as a consultation by `caller`.
    pub async fn search(&self, caller: &Identity, query: Query) -> Result<Vec<Hit>, ExchangeError> {
        self.authorize_search(caller)?;
        let exchange = self.clone();
        let hits = tokio::task::spawn_blocking(move || exchange.find(&query))
            .await
            .map_err(|e| ExchangeError::internal("a search stopped", e))??;
        let ids = hits.iter().map(|h| h.view.message_id.clone()).collect();
        self.consulted(caller, pb::ConsultationOperation::Search, ids)
            .await?;
        Ok(hits)
    }

    fn find(&self, query: &Query) -> Result<Vec<Hit>, ExchangeError> {
        let log = self.log();
        let mut candidates: Option<Vec<u64>> = None;
        for term in [&query.document, &query.name].into_iter().flatten() {
            let found = log.search(term)?;
            candidates = Some(match candidates {
                None => found,
                Some(before) => before.into_iter().filter(|s| found.contains(s)).collect(),
            });
        }
        let mut hits = Vec::new();
        for sequence in candidates.unwrap_or_default() {
            let message = self.stored_message(sequence)?;
            // Redacted content is never matched, whatever the index still held.
            let Some(envelope) = &message.envelope else {
                continue;
            };
            let found = search::terms(envelope);
            let field_of = |term: &Term| found.iter().find(|f| &f.term == term).map(|f| &f.field);
            let mut matched = Vec::new();
            for term in [&query.document, &query.name].into_iter().flatten() {
                match field_of(term) {
                    Some(field) => matched.push(field.clone()),
                    None => break,
                }
            }
            if matched.len()
                != usize::from(query.document.is_some()) + usize::from(query.name.is_some())
            {
                continue;
            }
            let person = person_of(envelope);
            if let Some(born) = query.born
                && !person.is_none_or(|p| born.admits(&p.date_of_birth))
            {
                continue;
            }
            if let Some(n) = query.nationality
                && !person.is_some_and(|p| p.nationalities.iter().any(|x| x == n.as_str()))
            {
                continue;
            }
            let e = &message.entry.entry;
            if query.kind.is_some_and(|k| k as i32 != e.message_kind) {
                continue;
            }
            let category = crate::exchange::cases::category_of(&message);
            if query.category.is_some_and(|c| c as i32 != category) {
                continue;
            }
            let direction = match message.entry.kind() {
                pb::EntryKind::MessageSent => pb::Direction::Sent,
                _ => pb::Direction::Received,
            };
            if query.direction.is_some_and(|d| d != direction) {
                continue;
            }
            let case = self.case_state_at(sequence)?;
            if !query.all
                && case
                    .as_ref()
                    .is_some_and(|c| c.status != CaseStatus::Active)
            {
                continue;
            }
            hits.push(Hit {
                sequence,
                view: pb::SearchHit {
                    message_id: e.message_id.clone(),
                    direction: direction as i32,
                    peer: e.peer.clone(),
                    kind: e.message_kind,
                    category,
                    matched_field: matched.join(", "),
                    case: case.map(|c| c.state()),
                    log_sequence: sequence,
                },
            });
        }
        Ok(hits)
    }

    /// [`Self::consulted`] for the messages a `show` or a `case` is about to return.
    pub async fn consulted_messages(
        &self,
        caller: &Identity,
        operation: pb::ConsultationOperation,
        messages: &[crate::exchange::core::StoredMessage],
    ) -> Result<(), ExchangeError> {
        let ids = messages
            .iter()
            .map(|m| m.entry.entry.message_id.clone())
            .collect();
        self.consulted(caller, operation, ids).await
    }

    /// Appends, durably, the record that `caller` consulted the messages `ids` through
    /// `operation`.
    pub async fn consulted(
        &self,
        caller: &Identity,
        operation: pb::ConsultationOperation,
        message_ids: Vec<String>,
    ) -> Result<(), ExchangeError> {
        let content = pb::Consultation {
            operation: operation as i32,
            message_ids,
            consulted_at: format_instant(time::OffsetDateTime::now_utc()),
        }
        .encode_to_vec();
        let entry = NewEntry {
            kind: pb::EntryKind::Consultation,
            content: Some(content),
            actor: caller.uri(),
            ..Default::default()
        };
        self.log().transact(move |t| t.append(entry)).await?;
        Ok(())
    }
}
