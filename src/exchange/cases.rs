//! Case state: an alert or a fraud notice, every message that refers to it (updates,
//! withdrawals, expiries, responses, at any depth and in both directions), and where it stands.
//! Derived from the log and the clock, like every other view: nothing here is stored.
//!
//! A case is `withdrawn`, `expired` or `closed` by the first message that ends it (a
//! withdrawal, an expiry, a response that closes it); without one, it is `expired` once the
//! version in effect is past its `valid_until` (no message needed), and `active` before. It is
//! answered once the other side has responded.
//!
//! A message whose reference names nothing this node exchanged is still logged (the peer's
//! word is evidence) and shown as a finding of its case; the operator plane refuses to send
//! one (see [`Exchange::check_own_references`]).

use std::collections::BTreeSet;

pub use crate::domain::case::{CaseStatus, ResponseTimes};
use crate::domain::model::{CountryCode, parse_date};
use crate::domain::validate::{ValidEnvelope, ValidationError};
use crate::exchange::core::{Exchange, StoredMessage};
use crate::exchange::error::ExchangeError;
use crate::log::StoredEntry;
use crate::pb;

/// How deep a chain of references is followed: far beyond any real case, short of a loop.
const MAX_DEPTH: usize = 64;

/// The entry a case is read as of, with its content in plain if the caller has it at hand.
#[derive(Clone, Copy)]
struct AsOf<'a> {
    entry: &'a StoredEntry,
    content: Option<&'a [u8]>,
}

/// A case, as the log and the clock show it now.
#[derive(Debug, Clone)]
pub struct Case {
    /// Every message of the case in log order, the root first: the message that opened it
    /// (or, if its reference names nothing held, the earliest held).
    pub messages: Vec<StoredMessage>,
    /// Its status.
    pub status: CaseStatus,
    /// A response from the other side is logged.
    pub answered: bool,
    /// The message id of the version in effect: the last update, or the root.
    pub in_effect: String,
    /// The version in effect's `valid_until`, for an alert.
    pub valid_until: String,
    /// Messages of the case whose reference names a message this node never exchanged, each
    /// as `MESSAGE-ID: reference names a message this node never exchanged`.
    pub findings: Vec<String>,
    /// When an answer is due.
    pub respond_by: time::OffsetDateTime,
    /// Active, unanswered, past `respond_by`.
    pub overdue: bool,
}

impl Case {
    /// The message that opened the case (or, if its reference names nothing held, the
    /// earliest held).
    pub fn root(&self) -> &StoredMessage {
        &self.messages[0]
    }

    /// The case's state on the operator plane.
    pub fn state(&self) -> pb::CaseState {
        pb::CaseState {
            case_id: self.root().entry.entry.message_id.clone(),
            status: self.status.to_pb() as i32,
            answered: self.answered,
            in_effect: self.in_effect.clone(),
            valid_until: self.valid_until.clone(),
            respond_by: crate::domain::model::format_instant(self.respond_by),
            overdue: self.overdue,
        }
    }

    /// Whether the root is a message this node sent.
    pub fn sent(&self) -> bool {
        self.root().entry.kind() == pb::EntryKind::MessageSent
    }
}

/// What a case's state reads of an envelope, under the envelope's own field numbers: the
/// handling, an alert's lifecycle, category and end, a response's status. prost skips the rest
/// (the person, documents, route and indicators) without decoding it, so that a case's state,
/// read for every event, hit, listing and deadline check, allocates nothing for them.
#[derive(Clone, PartialEq, prost::Message)]
struct CaseFields {
    #[prost(message, optional, tag = "5")]
    handling: Option<HandlingFields>,
    #[prost(message, optional, tag = "10")]
    traveller_alert: Option<AlertFields>,
    #[prost(message, optional, tag = "13")]
    case_response: Option<ResponseFields>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HandlingFields {
    #[prost(int32, tag = "2")]
    onward_sharing: i32,
    #[prost(int32, tag = "4")]
    urgency: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct AlertFields {
    #[prost(int32, tag = "1")]
    lifecycle: i32,
    #[prost(int32, tag = "2")]
    category: i32,
    #[prost(string, tag = "8")]
    valid_until: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ResponseFields {
    #[prost(int32, tag = "1")]
    status: i32,
}

impl CaseFields {
    /// An envelope holding these fields only.
    fn into_envelope(self) -> pb::Envelope {
        pb::Envelope {
            handling: self.handling.map(|h| pb::Handling {
                onward_sharing: h.onward_sharing,
                urgency: h.urgency,
                ..Default::default()
            }),
            body: match (self.traveller_alert, self.case_response) {
                (Some(a), _) => Some(pb::envelope::Body::TravellerAlert(pb::TravellerAlert {
                    lifecycle: a.lifecycle,
                    category: a.category,
                    valid_until: a.valid_until,
                    ..Default::default()
                })),
                (None, Some(r)) => Some(pb::envelope::Body::CaseResponse(pb::CaseResponse {
                    status: r.status,
                    ..Default::default()
                })),
                (None, None) => None,
            },
            ..Default::default()
        }
    }
}

/// The alert's lifecycle and category, for an alert.
fn alert_of(m: &StoredMessage) -> Option<&pb::TravellerAlert> {
    match m.envelope.as_ref()?.body.as_ref()? {
        pb::envelope::Body::TravellerAlert(a) => Some(a),
        _ => None,
    }
}

/// A case's status: how it ended, if it did, else active until the day after its
/// `valid_until` (if it has one), as of `now`.
fn status_of(
    ended: Option<CaseStatus>,
    valid_until: &str,
    now: time::OffsetDateTime,
) -> CaseStatus {
    ended.unwrap_or_else(|| match parse_date(valid_until) {
        Ok(until) if until < now.date() => CaseStatus::Expired,
        _ => CaseStatus::Active,
    })
}

fn response_of(m: &StoredMessage) -> Option<&pb::CaseResponse> {
    match m.envelope.as_ref()?.body.as_ref()? {
        pb::envelope::Body::CaseResponse(r) => Some(r),
        _ => None,
    }
}

/// Whether a message can open a case.
pub fn opens_case(kind: i32) -> bool {
    kind == pb::MessageKind::TravellerAlert as i32
        || kind == pb::MessageKind::DocumentFraudNotice as i32
}

/// Whether `stored` is a message that opens a case of its own: an alert or a fraud notice,
/// sent or received, that answers nothing and is no further peer's copy.
fn opens(stored: &StoredEntry) -> bool {
    let e = &stored.entry;
    matches!(
        stored.kind(),
        pb::EntryKind::MessageSent | pb::EntryKind::MessageReceived
    ) && opens_case(e.message_kind)
        && e.reference.is_empty()
        && e.copy_of.is_empty()
}

impl Exchange {
    /// The sequence of the message `id` this node exchanged (sent, or received from any peer).
    pub(crate) fn exchanged(&self, id: &str) -> Result<Option<u64>, ExchangeError> {
        let log = self.log();
        if let Some(s) = log.sent(id)? {
            return Ok(Some(s));
        }
        for peer in self.peers() {
            if let Some(s) = log.received(peer, id)? {
                return Ok(Some(s));
            }
        }
        // From a peer no longer configured (retired, or removed by a reload).
        Ok(log.received_from_anyone(id)?.into_iter().next())
    }

    /// What an envelope of this node's own must satisfy before it is logged: its reference
    /// names a message this node exchanged, and an alert issued or updated is still valid.
    pub(crate) fn check_own_case(
        &self,
        valid: &ValidEnvelope,
    ) -> Result<Result<(), ValidationError>, ExchangeError> {
        if let Some(reference) = &valid.reference
            && self.exchanged(reference.as_str())?.is_none()
        {
            return Ok(Err(ValidationError::new(
                "reference",
                "names no message this node sent or received",
            )));
        }
        if let Some(reference) = &valid.reference
            && let Some(refusal) = self.onward_sharing(reference.as_str(), valid.receiver)?
        {
            return Ok(Err(refusal));
        }
        if let Some(pb::envelope::Body::TravellerAlert(alert)) = &valid.envelope.body
            && matches!(
                pb::AlertLifecycle::try_from(alert.lifecycle),
                Ok(pb::AlertLifecycle::Issue | pb::AlertLifecycle::Update)
            )
            && parse_date(&alert.valid_until).is_ok_and(|until| until < self.log().now().date())
        {
            return Ok(Err(ValidationError::new(
                "traveller_alert.valid_until",
                "has already passed: an alert is issued or updated while it is valid",
            )));
        }
        Ok(Ok(()))
    }

    /// Refuses a reference, by a message for `receiver`, to a message (or a message it answers,
    /// at any depth) that this node received from another country whose handling does not
    /// allow onward sharing: prohibited, or only with the originator's written consent, which
    /// this node holds no record of. Every message the id names is looked at, from any sender,
    /// configured now or not; one whose content was removed at the end of its retention is
    /// refused too, since its handling can no longer be read.
    fn onward_sharing(
        &self,
        reference: &str,
        receiver: CountryCode,
    ) -> Result<Option<ValidationError>, ExchangeError> {
        let log = self.log();
        let mut ids = vec![reference.to_owned()];
        let mut seen = BTreeSet::new();
        while let Some(id) = ids.pop() {
            if !seen.insert(id.clone()) || seen.len() > MAX_DEPTH * 4 {
                continue;
            }
            let mut sequences = log.received_from_anyone(&id)?;
            sequences.extend(log.sent(&id)?);
            for sequence in sequences {
                let Some(entry) = log.entry(sequence)? else {
                    continue;
                };
                let e = &entry.entry;
                if !e.reference.is_empty() {
                    ids.push(e.reference.clone());
                }
                if entry.kind() != pb::EntryKind::MessageReceived || e.peer == receiver.as_str() {
                    continue;
                }
                let sharing = self
                    .message_alone(entry.clone(), None)?
                    .envelope
                    .map(|envelope| envelope.handling.unwrap_or_default().onward_sharing)
                    .map(|s| pb::OnwardSharing::try_from(s).unwrap_or_default());
                let reason = match sharing {
                    Some(
                        s @ (pb::OnwardSharing::Prohibited
                        | pb::OnwardSharing::WithOriginatorConsent),
                    ) => format!("whose handling is {}", s.as_str_name()),
                    None => "whose content was removed, so its handling can no longer be read"
                        .to_owned(),
                    Some(_) => continue,
                };
                return Ok(Some(ValidationError::new(
                    "reference",
                    format!(
                        "leads to log entry {sequence}, a message from {}, {reason}: it may not \
                         be passed on to {receiver}",
                        e.peer
                    ),
                )));
            }
        }
        Ok(None)
    }

    /// The content of entry `sequence` in plain: `at_hand` if the caller has it, else read.
    pub(crate) fn content_at_hand<'a>(
        &self,
        sequence: u64,
        at_hand: Option<&'a [u8]>,
    ) -> Result<Option<std::borrow::Cow<'a, [u8]>>, ExchangeError> {
        Ok(match at_hand {
            Some(c) => Some(std::borrow::Cow::Borrowed(c)),
            None => self.log().content(sequence)?.map(std::borrow::Cow::Owned),
        })
    }

    /// The case the message at `sequence` belongs to; `None` for a message outside any case (a
    /// statistics report).
    pub fn case_at(&self, sequence: u64) -> Result<Option<Case>, ExchangeError> {
        self.case_of(sequence, false)
    }

    /// [`Self::case_at`] with each message's entry and envelope only (no receipts, delivery
    /// or redaction notes): enough for the case's state, at a fraction of the reads.
    pub fn case_state_at(&self, sequence: u64) -> Result<Option<Case>, ExchangeError> {
        self.case_of(sequence, true)
    }

    /// The state of the case of `stored`, an entry the caller has read already (an event's), as
    /// it stood when that entry was written: only the case's messages logged up to it count,
    /// and its time is the entry's. So an event read again later says what it said then.
    /// `content` is the entry's content in plain, if the caller has it at hand.
    pub fn case_state_as_of(
        &self,
        stored: &StoredEntry,
        content: Option<&[u8]>,
    ) -> Result<Option<Case>, ExchangeError> {
        let as_of = AsOf {
            entry: stored,
            content,
        };
        self.case_from(stored.clone(), true, Some(as_of))
    }

    /// The state of the case of the message at `sequence`, as it stood when `stored` (a later
    /// entry about it, such as a deadline's) was written.
    pub fn case_state_at_entry(
        &self,
        sequence: u64,
        stored: &StoredEntry,
    ) -> Result<Option<Case>, ExchangeError> {
        let Some(entry) = self.log().entry(sequence)? else {
            return Err(ExchangeError::NotFound(format!("log entry {sequence}")));
        };
        let as_of = AsOf {
            entry: stored,
            content: None,
        };
        self.case_from(entry, true, Some(as_of))
    }

    fn case_of(&self, sequence: u64, light: bool) -> Result<Option<Case>, ExchangeError> {
        let Some(entry) = self.log().entry(sequence)? else {
            return Err(ExchangeError::NotFound(format!("log entry {sequence}")));
        };
        self.case_from(entry, light, None)
    }

    /// The case of `entry`: as it stands now, or, with `as_of`, as it stood when that entry was
    /// written.
    fn case_from(
        &self,
        mut entry: StoredEntry,
        light: bool,
        as_of: Option<AsOf<'_>>,
    ) -> Result<Option<Case>, ExchangeError> {
        let log = self.log();
        let until = as_of.map_or(u64::MAX, |a| a.entry.entry.sequence);
        if entry.entry.message_kind == pb::MessageKind::StatisticsReport as i32 {
            return Ok(None);
        }
        // Up to the message that opened the case.
        let mut root = entry.entry.sequence;
        for _ in 0..MAX_DEPTH {
            // A message names what it answers; a copy sent to a further peer, its first copy.
            let up = if entry.entry.reference.is_empty() {
                &entry.entry.copy_of
            } else {
                &entry.entry.reference
            };
            if up.is_empty() {
                break;
            }
            match self.exchanged(up)? {
                Some(up) if up != root => {
                    root = up;
                    entry = log
                        .entry(up)?
                        .ok_or_else(|| ExchangeError::NotFound(format!("log entry {up}")))?;
                }
                _ => break,
            }
        }
        // Down to every message that refers to it, at any depth; each entry is read once. A
        // message that opens its case, as of its own entry, has nothing referring to it yet.
        let opens_itself = root == until;
        let mut ids = if opens_itself {
            Vec::new()
        } else {
            vec![entry.entry.message_id.clone()]
        };
        let mut members = std::collections::BTreeMap::from([(root, entry)]);
        let mut seen_ids = BTreeSet::new();
        while let Some(id) = ids.pop() {
            if !seen_ids.insert(id.clone()) || seen_ids.len() > 10_000 {
                continue;
            }
            for s in log.referencing(&id)? {
                if s <= until
                    && !members.contains_key(&s)
                    && let Some(e) = log.entry(s)?
                {
                    ids.push(e.entry.message_id.clone());
                    members.insert(s, e);
                }
            }
        }
        let messages = members
            .into_iter()
            .map(|(s, entry)| {
                if light {
                    let content = as_of.and_then(|a| a.content.filter(|_| s == until));
                    self.message_alone(entry, content)
                } else {
                    self.stored_message(s)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let now = match as_of {
            Some(a) => crate::domain::model::from_micros(a.entry.entry.recorded_at_micros),
            None => self.log().now(),
        };
        Ok(Some(self.settle(messages, now)?))
    }

    /// A message's entry and what its case's state reads of its envelope (see [`CaseFields`]),
    /// without its receipt or delivery state; its `content` is read unless the caller has it.
    fn message_alone(
        &self,
        entry: StoredEntry,
        content: Option<&[u8]>,
    ) -> Result<StoredMessage, ExchangeError> {
        let envelope = self
            .content_at_hand(entry.entry.sequence, content)?
            .and_then(|c| <CaseFields as prost::Message>::decode(c.as_ref()).ok())
            .map(CaseFields::into_envelope);
        Ok(StoredMessage {
            entry,
            envelope,
            receipt: None,
            delivery: None,
            redacted: None,
        })
    }

    /// Status, version in effect and findings of a case's messages (in log order, root first).
    fn settle(
        &self,
        messages: Vec<StoredMessage>,
        now: time::OffsetDateTime,
    ) -> Result<Case, ExchangeError> {
        let root = &messages[0];
        let root_sent = root.entry.kind() == pb::EntryKind::MessageSent;
        let mut ended = None;
        let mut answered = false;
        let mut in_effect = root;
        let mut findings = Vec::new();
        for m in &messages {
            let e = &m.entry.entry;
            if !e.reference.is_empty() && self.exchanged(&e.reference)?.is_none() {
                findings.push(format!(
                    "{}: reference names a message this node never exchanged",
                    e.message_id
                ));
            }
            let from_other_side = (m.entry.kind() == pb::EntryKind::MessageSent) != root_sent;
            // Only the side that opened a case updates, withdraws or ends its alert.
            let changes_alert = alert_of(m).is_some_and(|a| {
                matches!(
                    pb::AlertLifecycle::try_from(a.lifecycle).unwrap_or_default(),
                    pb::AlertLifecycle::Update
                        | pb::AlertLifecycle::Withdraw
                        | pb::AlertLifecycle::Expire
                )
            });
            if from_other_side && changes_alert {
                findings.push(format!(
                    "{}: a change to the alert from the side that did not open the case is not taken",
                    e.message_id
                ));
            } else if let Some(alert) = alert_of(m) {
                match pb::AlertLifecycle::try_from(alert.lifecycle).unwrap_or_default() {
                    pb::AlertLifecycle::Update if ended.is_none() => in_effect = m,
                    pb::AlertLifecycle::Withdraw => {
                        ended.get_or_insert(CaseStatus::Withdrawn);
                    }
                    pb::AlertLifecycle::Expire => {
                        ended.get_or_insert(CaseStatus::Expired);
                    }
                    _ => {}
                }
            }
            if let Some(response) = response_of(m) {
                answered |= from_other_side;
                if response.status == pb::ResponseStatus::Closed as i32 {
                    ended.get_or_insert(CaseStatus::Closed);
                }
            }
        }
        let valid_until = alert_of(in_effect)
            .map(|a| a.valid_until.clone())
            .unwrap_or_default();
        let status = status_of(ended, &valid_until, now);
        let in_effect = in_effect.entry.entry.message_id.clone();
        let urgency = root
            .envelope
            .as_ref()
            .and_then(|e| e.handling.as_ref())
            .map_or(0, |h| h.urgency);
        let respond_by = self.respond_by(&root.entry.entry, urgency);
        let overdue = status == CaseStatus::Active && !answered && now > respond_by;
        Ok(Case {
            messages,
            status,
            answered,
            in_effect,
            valid_until,
            findings,
            respond_by,
            overdue,
        })
    }

    /// When an answer to the case `root` opens is due: when it was logged, plus the time
    /// agreed with its peer for `urgency`.
    fn respond_by(&self, root: &pb::LogEntry, urgency: i32) -> time::OffsetDateTime {
        crate::domain::model::from_micros(root.recorded_at_micros)
            + self.times_agreed(&root.peer).of(urgency)
    }

    /// The response times agreed with the peer an entry names (the defaults for a peer no
    /// longer configured).
    fn times_agreed(&self, peer: &str) -> crate::domain::case::ResponseTimes {
        peer.parse()
            .ok()
            .and_then(|peer| self.response_times(peer))
            .unwrap_or_default()
    }

    /// The state of the case that `stored` opens, as of its own entry, and its alert's
    /// category: what [`Self::case_state_as_of`] gives for it, read from the message's own
    /// fields, since the case holds it alone then. `None` if it does not open a case.
    pub(crate) fn opening_state(
        &self,
        stored: &StoredEntry,
        content: Option<&[u8]>,
    ) -> Result<Option<(i32, pb::CaseState)>, ExchangeError> {
        if !opens(stored) {
            return Ok(None);
        }
        let e = &stored.entry;
        let fields = self
            .content_at_hand(e.sequence, content)?
            .and_then(|c| <CaseFields as prost::Message>::decode(c.as_ref()).ok())
            .unwrap_or_default();
        let alert = fields.traveller_alert.unwrap_or_default();
        let ended = match pb::AlertLifecycle::try_from(alert.lifecycle).unwrap_or_default() {
            pb::AlertLifecycle::Withdraw => Some(CaseStatus::Withdrawn),
            pb::AlertLifecycle::Expire => Some(CaseStatus::Expired),
            _ => None,
        };
        let now = crate::domain::model::from_micros(e.recorded_at_micros);
        let status = status_of(ended, &alert.valid_until, now);
        let respond_by = self.respond_by(e, fields.handling.map_or(0, |h| h.urgency));
        let state = pb::CaseState {
            case_id: e.message_id.clone(),
            status: status.to_pb() as i32,
            answered: false,
            in_effect: e.message_id.clone(),
            valid_until: alert.valid_until,
            respond_by: crate::domain::model::format_instant(respond_by),
            overdue: status == CaseStatus::Active && now > respond_by,
        };
        Ok(Some((alert.category, state)))
    }

    /// Every case this node holds (opened by an alert or a fraud notice, sent or received),
    /// matching `filter`, oldest first.
    pub fn cases(&self, filter: &CasesFilter) -> Result<Vec<Case>, ExchangeError> {
        let log = self.log();
        let (size, _) = log.head()?;
        let mut out = Vec::new();
        let mut sequence = 1;
        while sequence <= size {
            let batch = log.range(sequence, 1024)?;
            if batch.is_empty() {
                break;
            }
            for stored in &batch {
                let e = &stored.entry;
                let is_message = matches!(
                    stored.kind(),
                    pb::EntryKind::MessageSent | pb::EntryKind::MessageReceived
                );
                // A case is listed under the message that opened it; a message whose reference
                // names nothing held stands as a case of its own, with its finding.
                let opens = opens_case(e.message_kind) && e.reference.is_empty();
                let stray = e.message_kind != pb::MessageKind::StatisticsReport as i32
                    && !e.reference.is_empty()
                    && self.exchanged(&e.reference)?.is_none();
                if !is_message || !(opens || stray) {
                    continue;
                }
                if filter.peer.is_some_and(|p| p.as_str() != e.peer) {
                    continue;
                }
                let Some(case) = self.case_state_at(e.sequence)? else {
                    continue;
                };
                if filter.admits(&case, self.log().now().date()) {
                    out.push(case);
                }
            }
            sequence = batch.last().map_or(size, |s| s.entry.sequence) + 1;
        }
        Ok(out)
    }
}

/// What a deadline entry's reason names.
pub const OVERDUE: &str = "overdue";
/// See [`OVERDUE`].
pub const EXPIRING: &str = "expiring";

pub use crate::exchange::metrics::OverdueCounts;

impl Exchange {
    /// Notes in the log each deadline that has come and was not noted yet, one entry per case
    /// and reason: a case past its respond-by time without an answer, and an alert this node
    /// sent whose `valid_until` falls within `reminder_days`. Each entry gives watchers an
    /// event. Returns the overdue cases by peer and direction.
    pub async fn note_deadlines(&self, reminder_days: u32) -> Result<OverdueCounts, ExchangeError> {
        let exchange = self.clone();
        let (counts, due) = tokio::task::spawn_blocking(move || exchange.deadlines(reminder_days))
            .await
            .map_err(|e| ExchangeError::internal("a deadline check stopped", e))??;
        for due in due {
            let log = self.log();
            let noted = due.noted_by(
                |case, reason| log.deadline_noted(case, reason),
                |sequence| log.entry(sequence),
                |id| log.sent(id),
            )?;
            if noted {
                continue;
            }
            let (id, reason) = (due.root.message_id.clone(), due.reason);
            let entry = crate::log::NewEntry {
                kind: pb::EntryKind::Deadline,
                peer: due.root.peer.parse().ok(),
                message_id: due.root.message_id.clone(),
                message_kind: pb::MessageKind::try_from(due.root.message_kind).unwrap_or_default(),
                refers_to: due.case,
                reason: due.reason.to_owned(),
                reference: due.version.as_ref().and_then(|(_, id)| id.parse().ok()),
                ..Default::default()
            };
            // Noted once, whatever ran meanwhile.
            let appended = log
                .transact(move |t| {
                    let noted = due.noted_by(
                        |case, reason| t.deadline_noted(case, reason),
                        |sequence| t.entry(sequence),
                        |id| t.sent(id),
                    )?;
                    if noted {
                        Ok(false)
                    } else {
                        t.append(entry).map(|_| true)
                    }
                })
                .await?;
            if appended {
                tracing::info!(case = %id, reason, "case deadline noted");
            }
        }
        Ok(counts)
    }
}

/// A deadline that came.
struct Due {
    /// The case's first message.
    case: u64,
    /// Its entry.
    root: pb::LogEntry,
    reason: &'static str,
    /// For a reminder, the version in effect (its sequence and message id): each version is
    /// reminded once, so that a renewed alert is reminded again when its new end comes near.
    version: Option<(u64, String)>,
}

impl Due {
    /// Whether the latest deadline entry for this case and reason (found through
    /// `deadline_noted` and `entry`) notes this deadline: any does for an overdue case. For a
    /// reminder, one that names the version in effect or a version logged after it (`sent`
    /// gives where): a renewal logged between a check's reading and its reminder leaves the
    /// reminder naming the version before, and the renewal is reminded in its turn, once
    /// however many checks run at a time. A reminder that names no version (written before
    /// reminders named one) notes the version in effect if it was logged after it.
    fn noted_by(
        &self,
        deadline_noted: impl Fn(u64, &str) -> Result<Option<u64>, crate::log::LogError>,
        entry: impl Fn(u64) -> Result<Option<StoredEntry>, crate::log::LogError>,
        sent: impl Fn(&str) -> Result<Option<u64>, crate::log::LogError>,
    ) -> Result<bool, crate::log::LogError> {
        let noted = match deadline_noted(self.case, self.reason)? {
            Some(sequence) => entry(sequence)?,
            None => None,
        };
        let Some(noted) = noted.map(|n| n.entry) else {
            return Ok(false);
        };
        Ok(match &self.version {
            None => true,
            Some((version, _)) if noted.reference.is_empty() => noted.sequence > *version,
            Some((version, _)) => sent(&noted.reference)?.is_some_and(|s| s >= *version),
        })
    }
}

/// How long after its deadline a case is still found for a first note, should no check have
/// found it before (the node was stopped, or the agreed times changed): cases opened more than
/// the longest agreed response time and this many days ago are not read for it. A case noted
/// overdue is read at every check, however old.
pub const DEADLINE_WINDOW_DAYS: i64 = 180;

impl Exchange {
    /// The overdue cases by peer and direction, and the deadlines that came (noted or not).
    /// Three sets of cases are read: those opened within the longest agreed response time and
    /// [`DEADLINE_WINDOW_DAYS`] (only those older than the shortest response time agreed with
    /// their peer, as a younger one cannot be overdue), those noted overdue before, and every
    /// alert this node sent that still opens a case (only those can be expiring, and an alert
    /// can be valid for years).
    fn deadlines(&self, reminder_days: u32) -> Result<(OverdueCounts, Vec<Due>), ExchangeError> {
        let log = self.log();
        let now = log.now();
        let today = now.date();
        let (size, _) = log.head()?;
        let longest = self
            .peers()
            .into_iter()
            .filter_map(|peer| self.response_times(peer))
            .chain([Default::default()])
            .map(|t| t.longest())
            .max()
            .unwrap_or_default();
        let window_start = now - longest - time::Duration::days(DEADLINE_WINDOW_DAYS);
        let mut roots = std::collections::BTreeSet::new();
        let mut sequence = self.first_logged_after(window_start, size)?;
        while sequence <= size {
            let batch = log.range(sequence, 1024)?;
            let Some(last) = batch.last().map(|s| s.entry.sequence) else {
                break;
            };
            for stored in &batch {
                let e = &stored.entry;
                let logged = crate::domain::model::from_micros(e.recorded_at_micros);
                if opens(stored) && now > logged + self.times_agreed(&e.peer).shortest() {
                    roots.insert(e.sequence);
                }
            }
            sequence = last + 1;
        }
        let mut memory = self
            .deadline_memory()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let noted: BTreeSet<u64> = log
            .noted_deadlines(OVERDUE)?
            .into_iter()
            .filter(|case| !memory.overdue_done.contains(case))
            .collect();
        roots.extend(&noted);
        // The sent alerts that open a case, read once each: a message's entry never changes.
        let sent = log.outbox()?;
        let read = memory.sent_read;
        for &s in sent.iter().filter(|s| **s > read) {
            if let Some(stored) = log.entry(s)?
                && opens(&stored)
                && stored.entry.message_kind == pb::MessageKind::TravellerAlert as i32
            {
                memory.alerts.insert(s);
            }
        }
        memory.sent_read = sent
            .last()
            .map_or(memory.sent_read, |l| memory.sent_read.max(*l));
        roots.extend(&memory.alerts);
        let mut counts = OverdueCounts::new();
        let mut due = Vec::new();
        for case in roots {
            let Some(state) = self.case_state_at(case)? else {
                continue;
            };
            let root = &state.root().entry.entry;
            // A case whose content was removed under retention (or cannot be read here) no
            // longer shows whether it was answered, withdrawn or renewed: it is not judged,
            // now or later.
            if root.sequence != case || state.messages.iter().any(|m| m.envelope.is_none()) {
                memory.alerts.remove(&case);
                if noted.contains(&case) {
                    memory.overdue_done.insert(case);
                }
                continue;
            }
            // What can never come again is not read again: a withdrawn or closed alert never
            // ends soon, an answered or ended case is never overdue.
            let ended = matches!(state.status, CaseStatus::Withdrawn | CaseStatus::Closed);
            if ended {
                memory.alerts.remove(&case);
            }
            if (ended || state.answered) && noted.contains(&case) {
                memory.overdue_done.insert(case);
            }
            if state.overdue {
                let direction = if state.sent() { "sent" } else { "received" };
                *counts.entry((root.peer.clone(), direction)).or_default() += 1;
                due.push(Due {
                    case,
                    root: root.clone(),
                    reason: OVERDUE,
                    version: None,
                });
            }
            let expiring = state.sent()
                && state.status == CaseStatus::Active
                && parse_date(&state.valid_until).is_ok_and(|until| {
                    until <= today + time::Duration::days(i64::from(reminder_days))
                });
            if expiring {
                let in_effect = state
                    .messages
                    .iter()
                    .rev()
                    .find(|m| m.entry.entry.message_id == state.in_effect)
                    .map_or(case, |m| m.entry.entry.sequence);
                due.push(Due {
                    case,
                    root: root.clone(),
                    reason: EXPIRING,
                    version: Some((in_effect, state.in_effect.clone())),
                });
            }
        }
        Ok((counts, due))
    }

    /// The first entry logged at or after `at` (entries are logged in time order), or one past
    /// `size` if none is.
    fn first_logged_after(
        &self,
        at: time::OffsetDateTime,
        size: u64,
    ) -> Result<u64, ExchangeError> {
        let at = i64::try_from(at.unix_timestamp_nanos() / 1000).unwrap_or(i64::MIN);
        let (mut low, mut high) = (1, size + 1);
        while low < high {
            let mid = low + (high - low) / 2;
            let recorded = self
                .log()
                .entry(mid)?
                .map_or(i64::MAX, |s| s.entry.recorded_at_micros);
            if recorded < at {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        Ok(low)
    }
}

/// Which cases to list.
#[derive(Debug, Clone, Default)]
pub struct CasesFilter {
    /// Only this status.
    pub status: Option<CaseStatus>,
    /// Only active cases whose version in effect expires within this many days.
    pub expiring_within_days: Option<u32>,
    /// Only cases without a response from the other side.
    pub awaiting_response: bool,
    /// Only cases with this peer.
    pub peer: Option<CountryCode>,
    /// Only overdue cases.
    pub overdue: bool,
    /// Only cases this node opened (`Some(true)`) or a peer opened (`Some(false)`).
    pub sent: Option<bool>,
}

impl CasesFilter {
    fn admits(&self, case: &Case, today: time::Date) -> bool {
        if self.status.is_some_and(|s| s != case.status) || (self.overdue && !case.overdue) {
            return false;
        }
        if self.awaiting_response && case.answered {
            return false;
        }
        if self.sent.is_some_and(|sent| sent != case.sent()) {
            return false;
        }
        if let Some(days) = self.expiring_within_days {
            let Ok(until) = parse_date(&case.valid_until) else {
                return false;
            };
            if case.status != CaseStatus::Active
                || until > today + time::Duration::days(i64::from(days))
            {
                return false;
            }
        }
        true
    }
}

/// The alert category of a message, 0 for anything but an alert.
pub fn category_of(m: &StoredMessage) -> i32 {
    alert_of(m).map_or(0, |a| a.category)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// The fields a case reads come out of the light decoding as the full one gives them, and
    /// nothing of the person comes with them.
    #[test]
    fn case_fields_read_what_the_full_envelope_holds_and_leave_the_person() {
        let text = include_str!("../../examples/idn/alert-trafficking-victim.json");
        let mut full = crate::domain::validate::parse_envelope(text).unwrap();
        full.handling.as_mut().unwrap().onward_sharing = pb::OnwardSharing::Prohibited as i32;
        let light = CaseFields::decode(full.encode_to_vec().as_slice())
            .unwrap()
            .into_envelope();
        let (
            Some(pb::envelope::Body::TravellerAlert(a)),
            Some(pb::envelope::Body::TravellerAlert(b)),
        ) = (&full.body, &light.body)
        else {
            panic!("the alert was not read");
        };
        assert_eq!(
            (a.lifecycle, a.category, &a.valid_until),
            (b.lifecycle, b.category, &b.valid_until)
        );
        assert!(b.person.is_none() && b.documents.is_empty() && b.summary.is_empty());
        let (h, l) = (full.handling.unwrap(), light.handling.unwrap());
        assert_eq!((h.urgency, h.onward_sharing), (l.urgency, l.onward_sharing));

        let text = include_str!("../../examples/khm/response-closing.json");
        let full = crate::domain::validate::parse_envelope(text).unwrap();
        let light = CaseFields::decode(full.encode_to_vec().as_slice())
            .unwrap()
            .into_envelope();
        let (Some(pb::envelope::Body::CaseResponse(a)), Some(pb::envelope::Body::CaseResponse(b))) =
            (&full.body, &light.body)
        else {
            panic!("the response was not read");
        };
        assert_eq!(a.status, b.status);
        assert_ne!(a.status, 0);
    }
}
