//! What happened, as events for people and national systems: one event for each log entry that
//! matters to them, read from the log up to what is durable, so that an event is never told of
//! something a crash could still take back, and its sequence lets a watcher resume where it
//! stopped without a gap or a duplicate.

use prost::Message;

use crate::domain::model::{Identity, Role, format_micros};
use crate::exchange::core::Exchange;
use crate::exchange::error::ExchangeError;
use crate::log::StoredEntry;
use crate::pb;

impl Exchange {
    /// Who may watch: operators and auditors.
    pub fn authorize_watch(&self, caller: &Identity) -> Result<(), ExchangeError> {
        self.local_user(caller)?;
        match caller.role {
            Role::Operator | Role::Auditor => Ok(()),
            Role::Sync | Role::Screening | Role::Node => Err(ExchangeError::Forbidden(format!(
                "role {} may not watch",
                caller.role
            ))),
        }
    }

    /// The event a log entry gives, if it gives one; `content` is the entry's content in
    /// plain if the caller has it at hand, else it is read when needed.
    pub fn event_of(
        &self,
        stored: &StoredEntry,
        content: Option<&[u8]>,
    ) -> Result<Option<pb::Event>, ExchangeError> {
        let e = &stored.entry;
        let mut event = pb::Event {
            sequence: e.sequence,
            recorded_at: format_micros(e.recorded_at_micros),
            peer: e.peer.clone(),
            message_id: e.message_id.clone(),
            message_kind: e.message_kind,
            ..Default::default()
        };
        event.kind = match stored.kind() {
            pb::EntryKind::MessageReceived => {
                // Most messages open a case of their own: read straight from their fields.
                if let Some((category, state)) = self.opening_state(stored, content)? {
                    debug_assert_eq!(
                        self.case_state_as_of(stored, content)?.map(|case| (
                            crate::exchange::cases::category_of(case.root()),
                            case.state()
                        )),
                        Some((category, state.clone())),
                        "a case opening read from its fields as the whole case reads it"
                    );
                    event.category = category;
                    event.case = Some(state);
                } else if let Some(case) = self.case_state_as_of(stored, content)? {
                    if let Some(this) = case
                        .messages
                        .iter()
                        .find(|m| m.entry.entry.sequence == e.sequence)
                    {
                        event.category = crate::exchange::cases::category_of(this);
                    }
                    event.case = Some(case.state());
                }
                if !e.reference.is_empty() && self.exchanged(&e.reference)?.is_none() {
                    event.detail = "reference names a message this node never exchanged".into();
                    pb::EventKind::Finding
                } else {
                    pb::EventKind::MessageReceived
                }
            }
            pb::EntryKind::ReceiptReceived => pb::EventKind::ReceiptReceived,
            pb::EntryKind::Deadline => {
                if let Some(case) = self.case_state_at_entry(e.refers_to, stored)? {
                    event.category = crate::exchange::cases::category_of(case.root());
                    event.case = Some(case.state());
                }
                match e.reason.as_str() {
                    crate::exchange::cases::OVERDUE => pb::EventKind::Overdue,
                    crate::exchange::cases::EXPIRING => pb::EventKind::Expiring,
                    _ => return Ok(None),
                }
            }
            pb::EntryKind::DeliveryFailed => {
                event.detail = e.reason.clone();
                pb::EventKind::DeliveryFailed
            }
            pb::EntryKind::Reconciliation => {
                let disagrees = self
                    .content_at_hand(e.sequence, content)?
                    .and_then(|c| pb::Reconciliation::decode(c.as_ref()).ok())
                    .is_some_and(|r| r.lines.iter().any(|l| !l.agrees));
                if !disagrees {
                    return Ok(None);
                }
                event.detail = "a statistics report disagrees with this log".into();
                pb::EventKind::Finding
            }
            _ => return Ok(None),
        } as i32;
        Ok(Some(event))
    }
}
