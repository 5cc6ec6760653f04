//! What a message can be found by: the document numbers it names (as written, and as read from
//! their machine-readable zones) and the names of the person it is about (and their aliases),
//! each normalised so that the ways people and passport readers write the same thing meet.
//!
//! Names are normalised as ICAO Doc 9303 transliterates them into a machine-readable zone:
//! upper case, diacritics folded (`NGUYỄN` is `NGUYEN`), and spaces, hyphens, apostrophes and
//! `<` all separating one name part from the next. The parts are then sorted, so a family name
//! and given names match in either order, and a single name (as many Indonesians have, written
//! by ICAO as the primary identifier alone) matches wherever it was written. Scripts without
//! case or diacritics to fold (Khmer, Thai) are kept as they are.
//!
//! A term's text is itself personal data: the log keeps only a keyed hash of it (see
//! `crypto::seal`), and this module never prints one.

use unicode_normalization::UnicodeNormalization;

use crate::domain::mrz;
use crate::pb;

/// What a term names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TermKind {
    /// A travel document's number.
    Document,
    /// A person's name, its parts sorted.
    Name,
}

/// A normalised search term. Its text is personal data: `Debug` does not show it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Term {
    kind: TermKind,
    text: String,
}

impl std::fmt::Debug for Term {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Term")
            .field("kind", &self.kind)
            .field("text", &"MASKED")
            .finish()
    }
}

impl Term {
    /// A document number as written on the document, in a form, or read from a zone: upper
    /// case, with spaces, hyphens and `<` fillers dropped. `None` if nothing is left.
    pub fn document(number: &str) -> Option<Self> {
        let text: String = number
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        (!text.is_empty()).then_some(Self {
            kind: TermKind::Document,
            text,
        })
    }

    /// A name from any number of parts (a family name and given names, an alias, or a name
    /// typed as `FAMILY, GIVEN`). `None` if no part is left.
    pub fn name<'a>(parts: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        let mut tokens: Vec<String> = parts.into_iter().flat_map(name_parts).collect();
        if tokens.is_empty() {
            return None;
        }
        tokens.sort_unstable();
        Some(Self {
            kind: TermKind::Name,
            text: tokens.join(" "),
        })
    }

    /// What the term names.
    pub fn kind(&self) -> TermKind {
        self.kind
    }

    /// The bytes a term is hashed from: its kind, then its text.
    pub fn hashed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.text.len());
        out.push(match self.kind {
            TermKind::Document => b'D',
            TermKind::Name => b'N',
        });
        out.extend_from_slice(self.text.as_bytes());
        out
    }
}

/// A term found in a message, with the field path it was found at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The normalised term.
    pub term: Term,
    /// Where in the envelope, e.g. `traveller_alert.documents[0].mrz`.
    pub field: String,
}

/// Every term an envelope can be found by: for an alert, its person, their aliases and every
/// document (number and zone); for a fraud notice, its document and the person who presented
/// it. Other kinds name no one to search for.
pub fn terms(envelope: &pb::Envelope) -> Vec<Found> {
    let mut out = Vec::new();
    visit(envelope, &mut |term, field| {
        out.push(Found {
            term,
            field: field(),
        });
    });
    out
}

/// The distinct terms of an envelope, what the search index keeps for it (without the field
/// paths, which the receive path has no use for).
pub fn distinct_terms(envelope: &pb::Envelope) -> Vec<Term> {
    let mut out = Vec::new();
    visit(envelope, &mut |term, _| out.push(term));
    out.sort_unstable();
    out.dedup();
    out
}

/// Calls `found` with each term of `envelope` and a way to name its field.
type Visitor<'a> = dyn FnMut(Term, &dyn Fn() -> String) + 'a;

fn visit(envelope: &pb::Envelope, found: &mut Visitor<'_>) {
    use pb::envelope::Body;
    match &envelope.body {
        Some(Body::TravellerAlert(alert)) => {
            if let Some(p) = &alert.person {
                person("traveller_alert.person", p, found);
            }
            for (i, d) in alert.documents.iter().enumerate() {
                document(&|| format!("traveller_alert.documents[{i}]"), d, found);
            }
        }
        Some(Body::DocumentFraudNotice(notice)) => {
            if let Some(d) = &notice.document {
                document(&|| "document_fraud_notice.document".to_owned(), d, found);
            }
            if let Some(p) = &notice.presented_by {
                person("document_fraud_notice.presented_by", p, found);
            }
        }
        Some(Body::StatisticsReport(_) | Body::CaseResponse(_)) | None => {}
    }
}

fn person(field: &str, p: &pb::Person, found: &mut Visitor<'_>) {
    if let Some(term) = Term::name([p.family_name.as_str(), p.given_names.as_str()]) {
        found(term, &|| field.to_owned());
    }
    for (i, alias) in p.aliases.iter().enumerate() {
        if let Some(term) = Term::name([alias.as_str()]) {
            found(term, &|| format!("{field}.aliases[{i}]"));
        }
    }
}

fn document(field: &dyn Fn() -> String, d: &pb::TravelDocument, found: &mut Visitor<'_>) {
    let number = Term::document(&d.number);
    // Validation holds a zone's number to the document's; the zone is read only when the
    // document gives no number of its own, or another one.
    let zone = match &number {
        Some(n) if !d.mrz.is_empty() && zone_names(&d.mrz, n) => None,
        _ => mrz_number(&d.mrz),
    };
    if let Some(term) = number {
        found(term, &|| format!("{}.number", field()));
    }
    if let Some(term) = zone {
        found(term, &|| format!("{}.mrz", field()));
    }
}

/// Whether a zone's second line starts with `number` (the document number field of TD3 and
/// MRV zones), so that reading the whole zone would find nothing new.
fn zone_names(zone: &str, number: &Term) -> bool {
    zone.lines()
        .nth(1)
        .is_some_and(|line| line.starts_with(number.text.as_str()))
}

/// The document number a machine-readable zone holds, if the text is one.
pub fn mrz_number(zone: &str) -> Option<Term> {
    if zone.is_empty() {
        return None;
    }
    let parsed: mrz::Mrz = zone.parse().ok()?;
    Term::document(parsed.document_number())
}

/// The parts of a name: folded, upper case, split at separators.
fn name_parts(text: &str) -> Vec<String> {
    if text.is_ascii() {
        // Nothing to fold: upper case, split at separators.
        return text
            .split(|c: char| is_separator(c))
            .filter(|p| !p.is_empty())
            .map(str::to_ascii_uppercase)
            .collect();
    }
    let mut parts = Vec::new();
    let mut current = String::new();
    for c in text.nfkd() {
        if is_folded_mark(c) {
            continue;
        }
        if is_separator(c) {
            if !current.is_empty() {
                parts.push(std::mem::take(&mut current));
            }
            continue;
        }
        match transliterated(c) {
            Some(t) => current.push_str(t),
            None => current.extend(c.to_uppercase()),
        }
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
}

/// Combining marks that decorate Latin, Greek and Cyrillic letters (ICAO drops them); the
/// vowel signs of scripts such as Khmer are letters of their own and are kept.
fn is_folded_mark(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}'
        | '\u{1AB0}'..='\u{1AFF}'
        | '\u{1DC0}'..='\u{1DFF}'
        | '\u{20D0}'..='\u{20FF}'
        | '\u{FE20}'..='\u{FE2F}')
}

/// Spaces, hyphens, apostrophes, `<`, and other punctuation: one name part ends there.
fn is_separator(c: char) -> bool {
    c.is_whitespace()
        || c.is_ascii_punctuation()
        || matches!(
            c,
            '\u{2010}'..='\u{2027}' | '\u{02BC}' | '\u{00B7}' | '\u{3000}'
        )
}

/// Letters that have no decomposition, written as ICAO Doc 9303 part 3 transliterates them.
fn transliterated(c: char) -> Option<&'static str> {
    Some(match c {
        'ß' | 'ẞ' => "SS",
        'Æ' | 'æ' => "AE",
        'Ø' | 'ø' | 'Œ' | 'œ' => "OE",
        'Þ' | 'þ' => "TH",
        'Đ' | 'đ' | 'Ð' | 'ð' => "D",
        'Ł' | 'ł' => "L",
        'Ħ' | 'ħ' => "H",
        'ı' => "I",
        'Ŋ' | 'ŋ' => "N",
        _ => return None,
    })
}

/// A date of birth asked for: a year, a year and month, or a whole date, as an MRZ may know
/// only part of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Born {
    year: u16,
    month: Option<u8>,
    day: Option<u8>,
}

/// Why a date of birth asked for is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("is not a date of birth (YYYY, YYYY-MM or YYYY-MM-DD)")]
pub struct BornError;

impl std::str::FromStr for Born {
    type Err = BornError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split('-');
        let number = |p: Option<&str>, len: usize| -> Result<Option<u16>, BornError> {
            match p {
                None => Ok(None),
                Some(p) if p.len() == len && p.bytes().all(|b| b.is_ascii_digit()) => {
                    p.parse().map(Some).map_err(|_| BornError)
                }
                Some(_) => Err(BornError),
            }
        };
        let year = number(parts.next(), 4)?.ok_or(BornError)?;
        let month = number(parts.next(), 2)?;
        let day = number(parts.next(), 2)?;
        if parts.next().is_some() || (day.is_some() && month.is_none()) {
            return Err(BornError);
        }
        let month = month.map(|m| m as u8);
        let day = day.map(|d| d as u8);
        if month.is_some_and(|m| !(1..=12).contains(&m))
            || day.is_some_and(|d| !(1..=31).contains(&d))
        {
            return Err(BornError);
        }
        Ok(Self { year, month, day })
    }
}

impl Born {
    /// Whether a recorded date of birth (`YYYY-MM-DD`, possibly only `YYYY` or `YYYY-MM`)
    /// agrees with this one on every part both know. A person recorded without a date is not
    /// ruled out.
    pub fn admits(&self, recorded: &str) -> bool {
        if recorded.is_empty() {
            return true;
        }
        let Ok(recorded) = recorded.parse::<Self>() else {
            return true;
        };
        let agree = |a: Option<u8>, b: Option<u8>| a.zip(b).is_none_or(|(a, b)| a == b);
        self.year == recorded.year
            && agree(self.month, recorded.month)
            && agree(self.day, recorded.day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(parts: &[&str]) -> String {
        Term::name(parts.iter().copied())
            .map(|t| t.text)
            .unwrap_or_default()
    }

    #[test]
    fn names_fold_as_icao_writes_them() {
        let cases: &[(&[&str], &[&str])] = &[
            (&["NGUYỄN", "Văn An"], &["Nguyen", "VAN AN"]),
            (&["Siti", "Rahayu"], &["RAHAYU", "SITI"]),
            (&["RAHAYU, SITI"], &["Siti Rahayu"]),
            (&["O'Brien-Smith"], &["O BRIEN<SMITH"]),
            (&["SUPARMAN", ""], &["", "Suparman"]),
            (&["Müller"], &["MULLER"]),
            (&["Straße"], &["STRASSE"]),
            (&["Đặng"], &["DANG"]),
            (&["Søren"], &["SOEREN"]),
        ];
        for (a, b) in cases {
            assert_eq!(name(a), name(b), "{a:?} and {b:?} should meet");
        }
    }

    #[test]
    fn different_names_stay_apart() {
        assert_ne!(name(&["SITI", "RAHAYU"]), name(&["SITI", "RAHAYUNINGSIH"]));
        assert_ne!(name(&["SUPARMAN"]), name(&["SUPARMAN", "ADI"]));
        // Khmer vowel signs are letters: two names differing only in one are different names.
        assert_ne!(name(&["សុខ"]), name(&["សខ"]));
        assert_eq!(name(&["សុខ ចាន់"]), name(&["ចាន់", "សុខ"]));
    }

    #[test]
    fn a_name_of_separators_only_is_no_term() {
        assert!(Term::name([" - ' <<"]).is_none());
        assert!(Term::document("<<< -").is_none());
    }

    #[test]
    fn document_numbers_drop_fillers_and_case() {
        assert_eq!(Term::document("x2217845<"), Term::document("X2217845"));
        assert_eq!(Term::document("X 221-7845"), Term::document("X2217845"));
        assert_ne!(Term::document("X2217845"), Term::document("X2217846"));
    }

    #[test]
    fn a_document_term_never_equals_a_name_term() {
        let d = Term::document("SUPARMAN").unwrap();
        let n = Term::name(["SUPARMAN"]).unwrap();
        assert_ne!(d.hashed_bytes(), n.hashed_bytes());
    }

    #[test]
    fn a_term_does_not_show_its_text() {
        let t = Term::document("X2217845").unwrap();
        assert!(!format!("{t:?}").contains("X2217845"));
    }

    #[test]
    fn terms_name_the_field_they_were_found_at() {
        let alert = pb::Envelope {
            body: Some(pb::envelope::Body::TravellerAlert(pb::TravellerAlert {
                person: Some(pb::Person {
                    family_name: "WULANDARI".into(),
                    given_names: "SARI".into(),
                    aliases: vec!["SARI WULAN".into()],
                    ..Default::default()
                }),
                documents: vec![
                    pb::TravelDocument {
                        number: "X2217845".into(),
                        mrz: "P<IDNWULANDARI<<SARI<<<<<<<<<<<<<<<<<<<<<<<<\nX2217845<8IDN0103141F3401099<<<<<<<<<<<<<<<4".into(),
                        ..Default::default()
                    },
                    pb::TravelDocument {
                        number: "V123".into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            })),
            ..Default::default()
        };
        let fields: Vec<_> = terms(&alert).into_iter().map(|f| f.field).collect();
        assert_eq!(
            fields,
            [
                "traveller_alert.person",
                "traveller_alert.person.aliases[0]",
                "traveller_alert.documents[0].number",
                "traveller_alert.documents[1].number",
            ]
        );
        // The zone repeats its document's number: one term for both.
        assert_eq!(distinct_terms(&alert).len(), 4);
        let notice = pb::Envelope {
            body: Some(pb::envelope::Body::DocumentFraudNotice(
                pb::DocumentFraudNotice {
                    document: Some(pb::TravelDocument {
                        number: "K0001".into(),
                        ..Default::default()
                    }),
                    presented_by: Some(pb::Person {
                        family_name: "SOK".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        let fields: Vec<_> = terms(&notice).into_iter().map(|f| f.field).collect();
        assert_eq!(
            fields,
            [
                "document_fraud_notice.document.number",
                "document_fraud_notice.presented_by"
            ]
        );
    }

    #[test]
    fn partial_dates_of_birth_admit_what_they_can() {
        let table = [
            ("1998", "1998-03-14", true),
            ("1998-03", "1998-03-14", true),
            ("1998-03-14", "1998-03-14", true),
            ("1998-03-15", "1998-03-14", false),
            ("1997", "1998-03-14", false),
            ("1998-04", "1998-03-14", false),
            ("1998-03-14", "", true),
        ];
        for (asked, recorded, admitted) in table {
            let born: Born = asked.parse().unwrap();
            assert_eq!(
                born.admits(recorded),
                admitted,
                "{asked} against {recorded}"
            );
        }
    }

    #[test]
    fn malformed_dates_of_birth_are_refused() {
        for bad in [
            "98",
            "1998-3",
            "1998-13",
            "1998-03-32",
            "1998--14",
            "1998-03-14-1",
            "abcd",
        ] {
            assert_eq!(bad.parse::<Born>(), Err(BornError), "{bad}");
        }
    }
}
