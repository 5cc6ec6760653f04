//! What may flow with one peer, each way, as the two focal points agreed: the kinds of message
//! and, for traveller alerts, their categories. Where nothing was agreed in writing, everything
//! may flow, as between two countries that exchange every kind.

use std::collections::BTreeSet;

use crate::domain::kinds::MessageName;
use crate::pb;

/// One direction of an agreement: the kinds that may flow, and the alert categories.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flow {
    /// The kinds of message; `None` for every kind.
    pub kinds: Option<BTreeSet<MessageKindName>>,
    /// The categories of traveller alert; `None` for every category.
    pub alert_categories: Option<BTreeSet<AlertCategoryName>>,
}

/// What may flow with one peer: what this node may send it, and what it accepts from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Agreement {
    /// From this node to the peer.
    pub send: Flow,
    /// From the peer to this node.
    pub accept: Flow,
}

/// A message kind as an agreement names it (`alert`, `fraud`, `stats`, `response`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct MessageKindName(pb::MessageKind);

/// An alert category as an agreement names it (`suspected_trafficking_victim`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct AlertCategoryName(pb::AlertCategory);

impl TryFrom<String> for MessageKindName {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl TryFrom<String> for AlertCategoryName {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// The message kinds an agreement can name, in the order they are listed.
const KINDS: [pb::MessageKind; 4] = [
    pb::MessageKind::TravellerAlert,
    pb::MessageKind::DocumentFraudNotice,
    pb::MessageKind::StatisticsReport,
    pb::MessageKind::CaseResponse,
];

impl MessageKindName {
    /// Every name there is, for an error that lists them.
    pub fn all() -> String {
        KINDS
            .iter()
            .map(|k| MessageName::of(*k as i32).as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The kind.
    pub fn kind(self) -> pb::MessageKind {
        self.0
    }
}

impl std::str::FromStr for MessageKindName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KINDS
            .iter()
            .find(|k| MessageName::of(**k as i32).as_str() == s)
            .map(|k| Self(*k))
            .ok_or_else(|| format!("{s:?} is not a kind of message; use {}", Self::all()))
    }
}

impl std::fmt::Display for MessageKindName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(MessageName::of(self.0 as i32).as_str())
    }
}

impl AlertCategoryName {
    /// The name of `category`, if it is a category.
    pub fn of(category: i32) -> Option<Self> {
        match pb::AlertCategory::try_from(category) {
            Ok(pb::AlertCategory::Unspecified) | Err(_) => None,
            Ok(c) => Some(Self(c)),
        }
    }

    /// Every name there is, for an error that lists them.
    pub fn all() -> String {
        (1..)
            .map_while(Self::of)
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::str::FromStr for AlertCategoryName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        pb::AlertCategory::from_str_name(&format!("ALERT_CATEGORY_{}", s.to_ascii_uppercase()))
            .filter(|c| *c != pb::AlertCategory::Unspecified && s == s.to_ascii_lowercase())
            .map(Self)
            .ok_or_else(|| format!("{s:?} is not an alert category; use {}", Self::all()))
    }
}

impl std::fmt::Display for AlertCategoryName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            &self
                .0
                .as_str_name()
                .trim_start_matches("ALERT_CATEGORY_")
                .to_ascii_lowercase(),
        )
    }
}

impl Flow {
    /// Why a message of `kind` (and, for an alert, `category`) may not flow this way, if it
    /// may not: the part of the agreement it falls outside.
    pub fn refuses(&self, kind: pb::MessageKind, category: i32) -> Option<String> {
        if let Some(kinds) = &self.kinds
            && !kinds.contains(&MessageKindName(kind))
        {
            return Some(format!(
                "covers {}, not {}",
                list(kinds),
                MessageName::of(kind as i32).as_str()
            ));
        }
        if kind == pb::MessageKind::TravellerAlert
            && let Some(categories) = &self.alert_categories
        {
            let named = AlertCategoryName::of(category);
            if named.is_none_or(|c| !categories.contains(&c)) {
                return Some(format!(
                    "covers alerts of category {}, not {}",
                    list(categories),
                    named.map_or_else(|| "unspecified".to_owned(), |c| c.to_string())
                ));
            }
        }
        None
    }

    /// Why `envelope` may not flow this way, if it may not.
    pub fn refuses_envelope(&self, envelope: &pb::Envelope) -> Option<String> {
        let (kind, category) = match &envelope.body {
            Some(pb::envelope::Body::TravellerAlert(a)) => {
                (pb::MessageKind::TravellerAlert, a.category)
            }
            Some(pb::envelope::Body::DocumentFraudNotice(_)) => {
                (pb::MessageKind::DocumentFraudNotice, 0)
            }
            Some(pb::envelope::Body::StatisticsReport(_)) => (pb::MessageKind::StatisticsReport, 0),
            Some(pb::envelope::Body::CaseResponse(_)) => (pb::MessageKind::CaseResponse, 0),
            // Validation names a missing body.
            None => return None,
        };
        self.refuses(kind, category)
    }

    /// Whether statistics reports may flow this way.
    pub fn statistics(&self) -> bool {
        self.refuses(pb::MessageKind::StatisticsReport, 0).is_none()
    }

    /// The flow as people read it: "alert (suspected_trafficking_victim), stats".
    pub fn describe(&self) -> String {
        let categories = self
            .alert_categories
            .as_ref()
            .map(|c| format!(" ({})", list(c)));
        let kinds: Vec<String> = KINDS
            .iter()
            .filter(|k| {
                self.kinds
                    .as_ref()
                    .is_none_or(|kinds| kinds.contains(&MessageKindName(**k)))
            })
            .map(|k| {
                let name = MessageName::of(*k as i32).as_str();
                match (&categories, k) {
                    (Some(c), pb::MessageKind::TravellerAlert) => format!("{name}{c}"),
                    _ => name.to_owned(),
                }
            })
            .collect();
        if kinds.is_empty() {
            "nothing".to_owned()
        } else if self.kinds.is_none() && self.alert_categories.is_none() {
            format!("every kind ({})", kinds.join(", "))
        } else {
            kinds.join(", ")
        }
    }
}

fn list<T: std::fmt::Display>(items: &BTreeSet<T>) -> String {
    if items.is_empty() {
        return "nothing".to_owned();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(kinds: &[&str], categories: Option<&[&str]>) -> Flow {
        Flow {
            kinds: Some(kinds.iter().map(|k| k.parse().unwrap()).collect()),
            alert_categories: categories.map(|c| c.iter().map(|c| c.parse().unwrap()).collect()),
        }
    }

    #[test]
    fn a_flow_refuses_what_it_does_not_name_and_says_what_it_covers() {
        let f = flow(&["stats", "alert"], Some(&["suspected_trafficking_victim"]));
        assert_eq!(f.refuses(pb::MessageKind::StatisticsReport, 0), None);
        assert_eq!(
            f.refuses(
                pb::MessageKind::TravellerAlert,
                pb::AlertCategory::SuspectedTraffickingVictim as i32
            ),
            None
        );
        let reason = f
            .refuses(
                pb::MessageKind::TravellerAlert,
                pb::AlertCategory::SuspectedRecruiter as i32,
            )
            .unwrap();
        assert!(reason.contains("suspected_trafficking_victim"), "{reason}");
        assert!(reason.contains("not suspected_recruiter"), "{reason}");
        let reason = f.refuses(pb::MessageKind::CaseResponse, 0).unwrap();
        assert_eq!(reason, "covers alert, stats, not response");
        assert_eq!(f.describe(), "alert (suspected_trafficking_victim), stats");
        assert!(f.statistics());
        assert!(!flow(&["alert"], None).statistics());
        assert!(Flow::default().describe().starts_with("every kind"));
        assert_eq!(flow(&[], None).describe(), "nothing");
    }

    #[test]
    fn names_parse_exactly_and_a_wrong_one_lists_the_right_ones() {
        assert!("Alert".parse::<MessageKindName>().is_err());
        let e = "alerts".parse::<MessageKindName>().unwrap_err();
        assert!(e.contains("alert, fraud, stats, response"), "{e}");
        assert!("SUSPECTED_RECRUITER".parse::<AlertCategoryName>().is_err());
        assert!("unspecified".parse::<AlertCategoryName>().is_err());
        let e = "trafficking".parse::<AlertCategoryName>().unwrap_err();
        assert!(e.contains("suspected_trafficking_victim"), "{e}");
        assert_eq!(
            "overstay".parse::<AlertCategoryName>().unwrap().to_string(),
            "overstay"
        );
    }
}
