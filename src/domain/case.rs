//! Case values: where a case stands, and how long a peer has agreed to take to answer one, by
//! the urgency its message states.

use crate::pb;

/// The response times agreed with a peer, by urgency: how long after a case is logged an
/// answer is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseTimes {
    pub immediate_hours: u32,
    pub urgent_hours: u32,
    pub routine_hours: u32,
}

impl Default for ResponseTimes {
    /// One hour for immediate, twelve for urgent (as SIRENE bureaux answer a hit), seven days
    /// for routine.
    fn default() -> Self {
        Self {
            immediate_hours: 1,
            urgent_hours: 12,
            routine_hours: 7 * 24,
        }
    }
}

impl ResponseTimes {
    /// The shortest of the three.
    pub fn shortest(&self) -> time::Duration {
        let hours = self
            .immediate_hours
            .min(self.urgent_hours)
            .min(self.routine_hours);
        time::Duration::hours(i64::from(hours))
    }

    /// The longest of the three.
    pub fn longest(&self) -> time::Duration {
        let hours = self
            .immediate_hours
            .max(self.urgent_hours)
            .max(self.routine_hours);
        time::Duration::hours(i64::from(hours))
    }

    /// The time to answer a message of `urgency` (unspecified is routine).
    pub fn of(&self, urgency: i32) -> time::Duration {
        let hours = match pb::Urgency::try_from(urgency) {
            Ok(pb::Urgency::Immediate) => self.immediate_hours,
            Ok(pb::Urgency::Urgent) => self.urgent_hours,
            _ => self.routine_hours,
        };
        time::Duration::hours(i64::from(hours))
    }
}

/// Where a case stands. Serde names are the wire of `--json` and exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    /// Open: nothing ended it and it has not expired.
    Active,
    /// A withdrawal ended it.
    Withdrawn,
    /// Its `valid_until` passed, or an expiry ended it.
    Expired,
    /// A response closed it.
    Closed,
}

impl CaseStatus {
    /// As the operator plane carries it.
    pub fn to_pb(self) -> pb::CaseStatus {
        match self {
            Self::Active => pb::CaseStatus::Active,
            Self::Withdrawn => pb::CaseStatus::Withdrawn,
            Self::Expired => pb::CaseStatus::Expired,
            Self::Closed => pb::CaseStatus::Closed,
        }
    }

    /// From the operator plane's value; `None` for unspecified.
    pub fn from_pb(status: pb::CaseStatus) -> Option<Self> {
        match status {
            pb::CaseStatus::Unspecified => None,
            pb::CaseStatus::Active => Some(Self::Active),
            pb::CaseStatus::Withdrawn => Some(Self::Withdrawn),
            pb::CaseStatus::Expired => Some(Self::Expired),
            pb::CaseStatus::Closed => Some(Self::Closed),
        }
    }
}

/// What a node's deadline checks keep from one to the next, so that a check reads what can
/// still come due rather than all the node ever sent or noted.
#[derive(Debug, Default)]
pub struct DeadlineMemory {
    /// The last sent message read for whether it is an alert that opens a case.
    pub(crate) sent_read: u64,
    /// The alerts this node sent that may still end soon.
    pub(crate) alerts: std::collections::BTreeSet<u64>,
    /// Cases noted overdue that never can be again: answered, ended, or no longer held whole.
    pub(crate) overdue_done: std::collections::BTreeSet<u64>,
}
