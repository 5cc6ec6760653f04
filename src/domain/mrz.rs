//! Parsing and check-digit verification of ICAO Doc 9303 machine-readable
//! zones (MRZ) in the three travel-document formats:
//!
//! * TD1 (identity cards, Doc 9303 Part 5): three lines of 30 characters;
//! * TD2 (Doc 9303 Part 6): two lines of 36 characters;
//! * TD3 (passports, Doc 9303 Part 4): two lines of 44 characters.
//!
//! Only upper-case `A`-`Z`, `0`-`9` and the filler `<` are accepted inside a
//! line; anything else (lower case, spaces, accented letters, ...) is refused
//! with the exact line and 1-based position. Lines are separated by `\n` or
//! `\r\n`; leading and trailing whitespace around the whole input is ignored.
//!
//! Every check digit is verified: document number, date of birth, expiry
//! date, the TD3 personal number and the composite check digit over the
//! ranges fixed by Doc 9303. The long-document-number rule of TD1 and TD2
//! (document number check digit position holding `<`, the number continuing
//! in the optional data field) is supported.
//!
//! Machine-readable visas (document code starting with `V`, Doc 9303 Part 7)
//! share the TD2 / TD3 sizes but have no composite check digit: for them the
//! optional data runs to the end of line 2 and no composite is verified.
//!
//! Dates are kept as the raw `YYMMDD` strings since the century is not
//! encoded; they must nevertheless be plausible calendar dates (dates with
//! unknown parts filled with `<` are refused).

use std::fmt;
use std::str::FromStr;

/// The size of a machine-readable travel document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MrzFormat {
    /// Three lines of 30 characters (identity cards).
    Td1,
    /// Two lines of 36 characters.
    Td2,
    /// Two lines of 44 characters (passports).
    Td3,
}

impl MrzFormat {
    /// Number of lines of the machine-readable zone.
    pub const fn line_count(self) -> usize {
        match self {
            Self::Td1 => 3,
            Self::Td2 | Self::Td3 => 2,
        }
    }

    /// Number of characters on every line of the machine-readable zone.
    pub const fn line_length(self) -> usize {
        match self {
            Self::Td1 => 30,
            Self::Td2 => 36,
            Self::Td3 => 44,
        }
    }
}

/// A part of the machine-readable zone, used to name what failed in an
/// [`MrzError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MrzField {
    /// Document code (positions 1-2 of line 1).
    DocumentCode,
    /// Issuing state or organisation.
    IssuingState,
    /// Document number.
    DocumentNumber,
    /// Nationality.
    Nationality,
    /// Date of birth.
    DateOfBirth,
    /// Sex.
    Sex,
    /// Date of expiry.
    ExpiryDate,
    /// Optional data elements.
    OptionalData,
    /// Personal number (TD3 optional data, which has its own check digit).
    PersonalNumber,
    /// Composite check digit.
    Composite,
    /// Name of the holder (primary and secondary identifiers).
    Name,
}

impl fmt::Display for MrzField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DocumentCode => "document code",
            Self::IssuingState => "issuing state",
            Self::DocumentNumber => "document number",
            Self::Nationality => "nationality",
            Self::DateOfBirth => "date of birth",
            Self::Sex => "sex",
            Self::ExpiryDate => "expiry date",
            Self::OptionalData => "optional data",
            Self::PersonalNumber => "personal number",
            Self::Composite => "composite",
            Self::Name => "name",
        })
    }
}

/// Why a machine-readable zone was refused. Lines and positions are 1-based. The messages
/// name the part of the zone and the rule, never a character, digit or value from it: they
/// reach logs, the peer and refusal entries that are never redacted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MrzError {
    /// The input holds nothing but whitespace.
    #[error("machine-readable zone is empty")]
    Empty,
    /// The input has a number of lines no format uses.
    #[error("machine-readable zone has {found} lines, expected 2 or 3")]
    LineCount {
        /// Number of lines found.
        found: usize,
    },
    /// A character other than `A`-`Z`, `0`-`9` or `<` appears in a line.
    #[error("line {line} position {position} holds a character outside A-Z, 0-9 and <")]
    InvalidCharacter {
        /// The offending character.
        character: char,
        /// Line of the character.
        line: usize,
        /// Position of the character within its line.
        position: usize,
    },
    /// The first of two lines matches neither TD2 nor TD3.
    #[error("line 1 has {found} characters, expected 36 (td2) or 44 (td3)")]
    UnknownLineLength {
        /// Number of characters found on line 1.
        found: usize,
    },
    /// A line does not have the length of the detected format.
    #[error("line {line} has {found} characters, expected {expected}")]
    LineLength {
        /// The line at fault.
        line: usize,
        /// Number of characters found.
        found: usize,
        /// Number of characters the format requires.
        expected: usize,
    },
    /// A check-digit position holds something other than a digit.
    #[error("{field} check digit at line {line} position {position} is not a digit")]
    CheckDigitNotDigit {
        /// The field the check digit protects.
        field: MrzField,
        /// The character found.
        found: char,
        /// Line of the check digit.
        line: usize,
        /// Position of the check digit within its line.
        position: usize,
    },
    /// A check digit does not match its field.
    #[error("{field} check digit does not match the field")]
    CheckDigit {
        /// The field the check digit protects.
        field: MrzField,
        /// The check digit found in the zone.
        found: u8,
        /// The check digit computed from the field.
        expected: u8,
    },
    /// A date is not a plausible `YYMMDD` date. The messages of this error never quote the
    /// zone's values: they reach logs and the peer, and the values are personal data.
    #[error("{field} is not a valid date")]
    InvalidDate {
        /// The date field.
        field: MrzField,
        /// The raw value found.
        value: String,
    },
    /// The sex is not `M`, `F`, `X` or `<`.
    #[error("sex must be 'M', 'F', 'X' or '<'")]
    InvalidSex {
        /// The character found.
        found: char,
    },
    /// A country code is not three letters (or letters followed by fillers).
    #[error("{field} is not a valid country code")]
    InvalidCountryCode {
        /// The country field.
        field: MrzField,
        /// The raw value found.
        value: String,
    },
    /// A field does not have the shape Doc 9303 requires.
    #[error("{field} is malformed")]
    Malformed {
        /// The field at fault.
        field: MrzField,
        /// The raw value found.
        value: String,
    },
}

/// A parsed and verified machine-readable zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mrz {
    format: MrzFormat,
    document_code: String,
    issuing_state: String,
    document_number: String,
    nationality: String,
    date_of_birth: String,
    sex: char,
    expiry_date: String,
    primary_identifier: String,
    secondary_identifier: String,
    optional_data: String,
    optional_data_2: Option<String>,
}

impl Mrz {
    /// The format (size) of the zone.
    pub const fn format(&self) -> MrzFormat {
        self.format
    }

    /// The document code, trailing fillers stripped (`"P"`, `"I"`, `"ID"`,
    /// `"AC"`, `"V"`, ...).
    pub fn document_code(&self) -> &str {
        &self.document_code
    }

    /// The issuing state or organisation, fillers stripped (`"UTO"`, `"D"`).
    pub fn issuing_state(&self) -> &str {
        &self.issuing_state
    }

    /// The document number, fillers stripped. For TD1 / TD2 documents using
    /// the long-document-number rule this is the full number, including the
    /// part stored in the optional data field.
    pub fn document_number(&self) -> &str {
        &self.document_number
    }

    /// The nationality of the holder, fillers stripped.
    pub fn nationality(&self) -> &str {
        &self.nationality
    }

    /// The date of birth as the raw `YYMMDD` string.
    pub fn date_of_birth(&self) -> &str {
        &self.date_of_birth
    }

    /// The sex: `'M'`, `'F'`, `'X'` or `'<'` (unspecified).
    pub const fn sex(&self) -> char {
        self.sex
    }

    /// The date of expiry as the raw `YYMMDD` string.
    pub fn expiry_date(&self) -> &str {
        &self.expiry_date
    }

    /// The primary identifier (surname), fillers turned into spaces.
    pub fn primary_identifier(&self) -> &str {
        &self.primary_identifier
    }

    /// The secondary identifier (given names), fillers turned into spaces;
    /// empty when the zone has none.
    pub fn secondary_identifier(&self) -> &str {
        &self.secondary_identifier
    }

    /// The optional data, leading and trailing fillers stripped (inner
    /// fillers are kept as `<`):
    ///
    /// * TD3 passport: the personal number (line 2 positions 29-42);
    /// * TD2: line 2 positions 29-35;
    /// * visas: line 2 from position 29 to the end;
    /// * TD1: optional data 1 (line 1 positions 16-30); the optional data 2 of
    ///   line 2 is given by [`Mrz::optional_data_2`].
    ///
    /// When the long-document-number rule is used, the continuation of the
    /// document number and its check digit are not part of the optional data.
    pub fn optional_data(&self) -> &str {
        &self.optional_data
    }

    /// TD1 only: optional data 2 (line 2 positions 19-29), leading and
    /// trailing fillers stripped; `None` for the other formats.
    pub fn optional_data_2(&self) -> Option<&str> {
        self.optional_data_2.as_deref()
    }
}

impl FromStr for Mrz {
    type Err = MrzError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse(text)
    }
}

/// Computes the Doc 9303 check digit of `field`: weights 7, 3, 1 repeating,
/// `0`-`9` worth their value, `A`-`Z` worth 10-35 and `<` worth 0, sum
/// modulo 10. Returns `None` if `field` holds any other character.
pub fn check_digit(field: &str) -> Option<u8> {
    const WEIGHTS: [u32; 3] = [7, 3, 1];
    let mut sum = 0_u32;
    for (character, weight) in field.chars().zip(WEIGHTS.iter().cycle()) {
        let value = match character {
            '0'..='9' | 'A'..='Z' => character.to_digit(36)?,
            '<' => 0,
            _ => return None,
        };
        sum = (sum + value * weight) % 10;
    }
    u8::try_from(sum).ok()
}

/// Parses and verifies a machine-readable zone: its lines separated by `\n`
/// (or `\r\n`); whitespace around the whole input is ignored. The format is
/// decided from the number of lines and the length of the first line.
///
/// # Errors
///
/// Returns an [`MrzError`] naming the first part of the zone that is not
/// well-formed or whose check digit does not match.
pub fn parse(text: &str) -> Result<Mrz, MrzError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(MrzError::Empty);
    }
    let lines: Vec<&str> = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .collect();
    if !(2..=3).contains(&lines.len()) {
        return Err(MrzError::LineCount { found: lines.len() });
    }
    for (index, line) in lines.iter().enumerate() {
        if let Some((position, character)) = line
            .chars()
            .enumerate()
            .find(|&(_, c)| !is_mrz_character(c))
        {
            return Err(MrzError::InvalidCharacter {
                character,
                line: index + 1,
                position: position + 1,
            });
        }
    }
    // Every character is ASCII from here on, so byte lengths and byte
    // positions are character lengths and positions.
    match *lines.as_slice() {
        [line1, line2] => {
            let format = match line1.len() {
                36 => MrzFormat::Td2,
                44 => MrzFormat::Td3,
                found => return Err(MrzError::UnknownLineLength { found }),
            };
            check_lengths(&lines, format)?;
            parse_two_lines(format, line1, line2)
        }
        [line1, line2, line3] => {
            check_lengths(&lines, MrzFormat::Td1)?;
            parse_td1(line1, line2, line3)
        }
        _ => Err(MrzError::LineCount { found: lines.len() }),
    }
}

fn is_mrz_character(character: char) -> bool {
    character.is_ascii_uppercase() || character.is_ascii_digit() || character == '<'
}

fn check_lengths(lines: &[&str], format: MrzFormat) -> Result<(), MrzError> {
    let expected = format.line_length();
    for (index, line) in lines.iter().enumerate() {
        if line.len() != expected {
            return Err(MrzError::LineLength {
                line: index + 1,
                found: line.len(),
                expected,
            });
        }
    }
    Ok(())
}

/// The characters at 1-based positions `first..=last` of a checked line.
fn span(line: &str, first: usize, last: usize) -> &str {
    &line[first - 1..last]
}

/// The character at 1-based `position` of a checked line.
fn at(line: &str, position: usize) -> char {
    char::from(line.as_bytes()[position - 1])
}

/// Parses TD2 and TD3 zones, including machine-readable visas of both sizes.
fn parse_two_lines(format: MrzFormat, line1: &str, line2: &str) -> Result<Mrz, MrzError> {
    let length = format.line_length();
    let document_code = document_code(span(line1, 1, 2))?;
    let issuing_state = country_code(MrzField::IssuingState, span(line1, 3, 5))?;
    let (primary_identifier, secondary_identifier) = names(span(line1, 6, length))?;
    let is_visa = document_code.starts_with('V');

    // Optional data starts at position 29 of line 2, after the expiry date
    // check digit. It ends before the composite (TD2), before the personal
    // number check digit (TD3) or at the end of the line (visas).
    let principal = span(line2, 1, 9);
    let digit = at(line2, 10);
    let (document_number, optional_data) = match (format, is_visa) {
        (_, true) => {
            verify(MrzField::DocumentNumber, principal, 2, digit, 10)?;
            (strip_fillers(principal), span(line2, 29, length))
        }
        (MrzFormat::Td2, false) => {
            document_number_with_overflow(principal, digit, span(line2, 29, 35), 2, 10)?
        }
        _ => {
            verify(MrzField::DocumentNumber, principal, 2, digit, 10)?;
            (strip_fillers(principal), span(line2, 29, 42))
        }
    };
    let nationality = country_code(MrzField::Nationality, span(line2, 11, 13))?;
    let date_of_birth = date(MrzField::DateOfBirth, span(line2, 14, 19))?;
    verify(MrzField::DateOfBirth, date_of_birth, 2, at(line2, 20), 20)?;
    let sex = sex(at(line2, 21))?;
    let expiry_date = date(MrzField::ExpiryDate, span(line2, 22, 27))?;
    verify(MrzField::ExpiryDate, expiry_date, 2, at(line2, 28), 28)?;

    if format == MrzFormat::Td3 && !is_visa {
        let personal_number = span(line2, 29, 42);
        let digit = at(line2, 43);
        // Doc 9303 Part 4: the check digit may be a filler when the personal
        // number is all fillers.
        if !(digit == '<' && personal_number.bytes().all(|b| b == b'<')) {
            verify(MrzField::PersonalNumber, personal_number, 2, digit, 43)?;
        }
    }
    if !is_visa {
        let composite = [
            span(line2, 1, 10),
            span(line2, 14, 20),
            span(line2, 22, length - 1),
        ]
        .concat();
        verify(
            MrzField::Composite,
            &composite,
            2,
            at(line2, length),
            length,
        )?;
    }

    Ok(Mrz {
        format,
        document_code,
        issuing_state,
        document_number,
        nationality,
        date_of_birth: date_of_birth.to_owned(),
        sex,
        expiry_date: expiry_date.to_owned(),
        primary_identifier,
        secondary_identifier,
        optional_data: strip_fillers(optional_data),
        optional_data_2: None,
    })
}

/// Parses a TD1 zone.
fn parse_td1(line1: &str, line2: &str, line3: &str) -> Result<Mrz, MrzError> {
    let document_code = document_code(span(line1, 1, 2))?;
    let issuing_state = country_code(MrzField::IssuingState, span(line1, 3, 5))?;
    let (document_number, optional_data) = document_number_with_overflow(
        span(line1, 6, 14),
        at(line1, 15),
        span(line1, 16, 30),
        1,
        15,
    )?;

    let date_of_birth = date(MrzField::DateOfBirth, span(line2, 1, 6))?;
    verify(MrzField::DateOfBirth, date_of_birth, 2, at(line2, 7), 7)?;
    let sex = sex(at(line2, 8))?;
    let expiry_date = date(MrzField::ExpiryDate, span(line2, 9, 14))?;
    verify(MrzField::ExpiryDate, expiry_date, 2, at(line2, 15), 15)?;
    let nationality = country_code(MrzField::Nationality, span(line2, 16, 18))?;
    let optional_data_2 = span(line2, 19, 29);
    let composite = [
        span(line1, 6, 30),
        span(line2, 1, 7),
        span(line2, 9, 15),
        span(line2, 19, 29),
    ]
    .concat();
    verify(MrzField::Composite, &composite, 2, at(line2, 30), 30)?;

    let (primary_identifier, secondary_identifier) = names(line3)?;

    Ok(Mrz {
        format: MrzFormat::Td1,
        document_code,
        issuing_state,
        document_number,
        nationality,
        date_of_birth: date_of_birth.to_owned(),
        sex,
        expiry_date: expiry_date.to_owned(),
        primary_identifier,
        secondary_identifier,
        optional_data: strip_fillers(optional_data),
        optional_data_2: Some(strip_fillers(optional_data_2)),
    })
}

/// Reads a TD1 / TD2 document number and verifies its check digit `digit`,
/// found at `check_position` of `line` right after the nine `principal`
/// characters and right before the `optional` data field.
///
/// If the check digit position holds `<`, the long-document-number rule of
/// Doc 9303 applies: the number continues in the optional data up to the
/// first filler, and the last character before that filler is the check digit
/// of the whole number. Returns the document number and the rest of the
/// optional data.
fn document_number_with_overflow<'a>(
    principal: &str,
    digit: char,
    optional: &'a str,
    line: usize,
    check_position: usize,
) -> Result<(String, &'a str), MrzError> {
    if digit != '<' {
        verify(
            MrzField::DocumentNumber,
            principal,
            line,
            digit,
            check_position,
        )?;
        return Ok((strip_fillers(principal), optional));
    }
    let overflow_length = optional.find('<').unwrap_or(optional.len());
    if overflow_length < 2 {
        return Err(MrzError::Malformed {
            field: MrzField::DocumentNumber,
            value: format!("{principal}<{optional}"),
        });
    }
    let continuation = &optional[..overflow_length - 1];
    let number = [principal, continuation].concat();
    verify(
        MrzField::DocumentNumber,
        &number,
        line,
        at(optional, overflow_length),
        check_position + overflow_length,
    )?;
    Ok((strip_fillers(&number), &optional[overflow_length..]))
}

/// Verifies that `digit`, found at `line` / `position`, is the check digit of
/// `data`.
fn verify(
    field: MrzField,
    data: &str,
    line: usize,
    digit: char,
    position: usize,
) -> Result<(), MrzError> {
    let Some(found) = digit
        .to_digit(10)
        .and_then(|value| u8::try_from(value).ok())
    else {
        return Err(MrzError::CheckDigitNotDigit {
            field,
            found: digit,
            line,
            position,
        });
    };
    let Some(expected) = check_digit(data) else {
        return Err(MrzError::Malformed {
            field,
            value: data.to_owned(),
        });
    };
    if found == expected {
        Ok(())
    } else {
        Err(MrzError::CheckDigit {
            field,
            found,
            expected,
        })
    }
}

/// Removes leading and trailing fillers.
fn strip_fillers(value: &str) -> String {
    value.trim_matches('<').to_owned()
}

/// A document code: a letter, then a letter or a filler.
fn document_code(value: &str) -> Result<String, MrzError> {
    let bytes = value.as_bytes();
    let valid = bytes.len() == 2
        && bytes[0].is_ascii_uppercase()
        && (bytes[1].is_ascii_uppercase() || bytes[1] == b'<');
    if valid {
        Ok(strip_fillers(value))
    } else {
        Err(MrzError::Malformed {
            field: MrzField::DocumentCode,
            value: value.to_owned(),
        })
    }
}

/// A country code: three characters, letters possibly followed by fillers
/// (`"UTO"`, `"D<<"`). Returns it with the fillers stripped.
fn country_code(field: MrzField, value: &str) -> Result<String, MrzError> {
    let letters = value.trim_end_matches('<');
    let valid =
        value.len() == 3 && !letters.is_empty() && letters.bytes().all(|b| b.is_ascii_uppercase());
    if valid {
        Ok(letters.to_owned())
    } else {
        Err(MrzError::InvalidCountryCode {
            field,
            value: value.to_owned(),
        })
    }
}

/// Checks that `value` is a plausible `YYMMDD` date. The century is unknown,
/// so 29 February is accepted whenever `YY` is a multiple of 4 (exact for
/// 1901-2099).
fn date(field: MrzField, value: &str) -> Result<&str, MrzError> {
    let invalid = || MrzError::InvalidDate {
        field,
        value: value.to_owned(),
    };
    let bytes = value.as_bytes();
    if bytes.len() != 6 || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(invalid());
    }
    let number = |index: usize| (bytes[index] - b'0') * 10 + (bytes[index + 1] - b'0');
    let (year, month, day) = (number(0), number(2), number(4));
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 => 29,
        2 => 28,
        _ => return Err(invalid()),
    };
    if (1..=days_in_month).contains(&day) {
        Ok(value)
    } else {
        Err(invalid())
    }
}

fn sex(value: char) -> Result<char, MrzError> {
    match value {
        'M' | 'F' | 'X' | '<' => Ok(value),
        found => Err(MrzError::InvalidSex { found }),
    }
}

/// Splits a name field into primary and secondary identifiers at the first
/// `<<`, turning the remaining fillers into single spaces.
fn names(field: &str) -> Result<(String, String), MrzError> {
    if !field.bytes().all(|b| b.is_ascii_uppercase() || b == b'<') {
        return Err(MrzError::Malformed {
            field: MrzField::Name,
            value: field.to_owned(),
        });
    }
    let field = field.trim_end_matches('<');
    let (primary, secondary) = field.split_once("<<").unwrap_or((field, ""));
    let words = |part: &str| {
        part.split('<')
            .filter(|word| !word.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    };
    Ok((words(primary), words(secondary)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TD3: &str = "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\n\
                       L898902C36UTO7408122F1204159ZE184226B<<<<<10";
    const TD2: &str = "I<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<\n\
                       D231458907UTO7408122F1204159<<<<<<<6";
    const TD1: &str = "I<UTOD231458907<<<<<<<<<<<<<<<\n\
                       7408122F1204159UTO<<<<<<<<<<<6\n\
                       ERIKSSON<<ANNA<MARIA<<<<<<<<<<";
    /// Doc 9303 Part 5 long document number D23145890734 (check digit 9).
    const TD1_LONG: &str = "I<UTOD23145890<7349<<<<<<<<<<<\n\
                            7408122F1204159UTO<<<<<<<<<<<6\n\
                            ERIKSSON<<ANNA<MARIA<<<<<<<<<<";
    /// TD2 with the same long document number in positions 29-35.
    const TD2_LONG: &str = "I<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<\n\
                            D23145890<UTO7408122F12041597349<<<2";
    /// Doc 9303 Part 7 MRV-A visa specimen: no composite check digit, optional
    /// data in positions 29-44.
    const MRV_A: &str = "V<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\n\
                         L8988901C4XXX4009078F96121096ZE184226B<<<<<<";
    /// Doc 9303 Part 7 MRV-B visa specimen (TD2 size, no composite).
    const MRV_B: &str = "V<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<\n\
                         L8988901C4XXX4009078F9612109<<<<<<<<";
    /// TD3 with an empty personal number and a filler as its check digit.
    const TD3_NO_PERSONAL_NUMBER: &str = "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\n\
                                          L898902C36UTO7408122F1204159<<<<<<<<<<<<<<<8";

    /// Replaces the character at 1-based `line` / `position` of `mrz`.
    fn replace(mrz: &str, line: usize, position: usize, character: char) -> String {
        mrz.split('\n')
            .enumerate()
            .map(|(index, text)| {
                if index + 1 == line {
                    text.chars()
                        .enumerate()
                        .map(|(i, c)| if i + 1 == position { character } else { c })
                        .collect()
                } else {
                    text.to_owned()
                }
            })
            .collect::<Vec<String>>()
            .join("\n")
    }

    fn character_at(mrz: &str, line: usize, position: usize) -> char {
        mrz.split('\n')
            .nth(line - 1)
            .and_then(|text| text.chars().nth(position - 1))
            .expect("position inside the specimen")
    }

    #[test]
    fn check_digit_known_values() {
        let cases = [
            ("L898902C3", Some(6)),
            ("740812", Some(2)),
            ("120415", Some(9)),
            ("D23145890", Some(7)),
            ("D23145890734", Some(9)),
            ("ZE184226B<<<<<", Some(1)),
            ("L8988901C", Some(4)),
            ("", Some(0)),
            ("<<<<<<<<<", Some(0)),
            ("l898902C3", None),
            ("L898 902C3", None),
            ("É", None),
        ];
        for (field, expected) in cases {
            assert_eq!(check_digit(field), expected, "check digit of {field:?}");
        }
    }

    #[test]
    fn specimen_strings_have_the_format_lengths() {
        for (mrz, format) in [
            (TD3, MrzFormat::Td3),
            (TD2, MrzFormat::Td2),
            (TD1, MrzFormat::Td1),
            (TD1_LONG, MrzFormat::Td1),
            (TD2_LONG, MrzFormat::Td2),
            (MRV_A, MrzFormat::Td3),
            (MRV_B, MrzFormat::Td2),
            (TD3_NO_PERSONAL_NUMBER, MrzFormat::Td3),
        ] {
            let lines: Vec<&str> = mrz.split('\n').collect();
            assert_eq!(lines.len(), format.line_count(), "{mrz}");
            for line in lines {
                assert_eq!(line.len(), format.line_length(), "{line}");
            }
        }
    }

    #[test]
    fn parses_td3_specimen() {
        let mrz = parse(TD3).expect("specimen parses");
        assert_eq!(mrz.format(), MrzFormat::Td3);
        assert_eq!(mrz.document_code(), "P");
        assert_eq!(mrz.issuing_state(), "UTO");
        assert_eq!(mrz.document_number(), "L898902C3");
        assert_eq!(mrz.nationality(), "UTO");
        assert_eq!(mrz.date_of_birth(), "740812");
        assert_eq!(mrz.sex(), 'F');
        assert_eq!(mrz.expiry_date(), "120415");
        assert_eq!(mrz.primary_identifier(), "ERIKSSON");
        assert_eq!(mrz.secondary_identifier(), "ANNA MARIA");
        assert_eq!(mrz.optional_data(), "ZE184226B");
        assert_eq!(mrz.optional_data_2(), None);
    }

    #[test]
    fn parses_td2_specimen() {
        let mrz = parse(TD2).expect("specimen parses");
        assert_eq!(mrz.format(), MrzFormat::Td2);
        assert_eq!(mrz.document_code(), "I");
        assert_eq!(mrz.issuing_state(), "UTO");
        assert_eq!(mrz.document_number(), "D23145890");
        assert_eq!(mrz.nationality(), "UTO");
        assert_eq!(mrz.date_of_birth(), "740812");
        assert_eq!(mrz.sex(), 'F');
        assert_eq!(mrz.expiry_date(), "120415");
        assert_eq!(mrz.primary_identifier(), "ERIKSSON");
        assert_eq!(mrz.secondary_identifier(), "ANNA MARIA");
        assert_eq!(mrz.optional_data(), "");
        assert_eq!(mrz.optional_data_2(), None);
    }

    #[test]
    fn parses_td1_specimen() {
        let mrz = parse(TD1).expect("specimen parses");
        assert_eq!(mrz.format(), MrzFormat::Td1);
        assert_eq!(mrz.document_code(), "I");
        assert_eq!(mrz.issuing_state(), "UTO");
        assert_eq!(mrz.document_number(), "D23145890");
        assert_eq!(mrz.nationality(), "UTO");
        assert_eq!(mrz.date_of_birth(), "740812");
        assert_eq!(mrz.sex(), 'F');
        assert_eq!(mrz.expiry_date(), "120415");
        assert_eq!(mrz.primary_identifier(), "ERIKSSON");
        assert_eq!(mrz.secondary_identifier(), "ANNA MARIA");
        assert_eq!(mrz.optional_data(), "");
        assert_eq!(mrz.optional_data_2(), Some(""));
    }

    #[test]
    fn parses_long_document_numbers() {
        for (mrz, format) in [(TD1_LONG, MrzFormat::Td1), (TD2_LONG, MrzFormat::Td2)] {
            let parsed = parse(mrz).expect("long document number parses");
            assert_eq!(parsed.format(), format);
            assert_eq!(parsed.document_number(), "D23145890734");
            assert_eq!(parsed.optional_data(), "");
        }
    }

    #[test]
    fn parses_visa_without_composite() {
        let mrz = parse(MRV_A).expect("visa parses");
        assert_eq!(mrz.format(), MrzFormat::Td3);
        assert_eq!(mrz.document_code(), "V");
        assert_eq!(mrz.document_number(), "L8988901C");
        assert_eq!(mrz.nationality(), "XXX");
        assert_eq!(mrz.date_of_birth(), "400907");
        assert_eq!(mrz.sex(), 'F');
        assert_eq!(mrz.expiry_date(), "961210");
        assert_eq!(mrz.optional_data(), "6ZE184226B");

        let mrz = parse(MRV_B).expect("visa parses");
        assert_eq!(mrz.format(), MrzFormat::Td2);
        assert_eq!(mrz.document_code(), "V");
        assert_eq!(mrz.document_number(), "L8988901C");
        assert_eq!(mrz.primary_identifier(), "ERIKSSON");
        assert_eq!(mrz.secondary_identifier(), "ANNA MARIA");
        assert_eq!(mrz.optional_data(), "");
    }

    #[test]
    fn personal_number_check_digit_may_be_filler_when_empty() {
        let mrz = parse(TD3_NO_PERSONAL_NUMBER).expect("filler check digit accepted");
        assert_eq!(mrz.optional_data(), "");
        // The computed check digit 0 is accepted too (composite adjusted).
        let zero = "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\n\
                    L898902C36UTO7408122F1204159<<<<<<<<<<<<<<08";
        assert!(parse(zero).is_ok());
        // A filler check digit is refused for a non-empty personal number.
        assert_eq!(
            parse(&replace(TD3, 2, 43, '<')),
            Err(MrzError::CheckDigitNotDigit {
                field: MrzField::PersonalNumber,
                found: '<',
                line: 2,
                position: 43,
            })
        );
    }

    #[test]
    fn accepts_crlf_and_surrounding_whitespace() {
        for input in [
            TD3.replace('\n', "\r\n"),
            format!("{TD3}\n"),
            format!("{TD3}\r\n"),
            format!("  \n{TD1}\n\t "),
            format!("{TD3} "),
        ] {
            assert!(parse(&input).is_ok(), "{input:?}");
        }
        assert_eq!(TD2.parse::<Mrz>(), parse(TD2));
    }

    #[test]
    fn refuses_each_wrong_check_digit() {
        use MrzField::{Composite, DateOfBirth, DocumentNumber, ExpiryDate, PersonalNumber};
        let cases = [
            (TD3, 2, 10, DocumentNumber),
            (TD3, 2, 20, DateOfBirth),
            (TD3, 2, 28, ExpiryDate),
            (TD3, 2, 43, PersonalNumber),
            (TD3, 2, 44, Composite),
            (TD2, 2, 10, DocumentNumber),
            (TD2, 2, 20, DateOfBirth),
            (TD2, 2, 28, ExpiryDate),
            (TD2, 2, 36, Composite),
            (TD1, 1, 15, DocumentNumber),
            (TD1, 2, 7, DateOfBirth),
            (TD1, 2, 15, ExpiryDate),
            (TD1, 2, 30, Composite),
            (TD1_LONG, 1, 19, DocumentNumber),
            (TD2_LONG, 2, 32, DocumentNumber),
            (MRV_A, 2, 10, DocumentNumber),
            (MRV_A, 2, 20, DateOfBirth),
            (MRV_A, 2, 28, ExpiryDate),
            (MRV_B, 2, 10, DocumentNumber),
            (MRV_B, 2, 28, ExpiryDate),
        ];
        for (mrz, line, position, field) in cases {
            let expected = character_at(mrz, line, position)
                .to_digit(10)
                .and_then(|d| u8::try_from(d).ok())
                .expect("check digit in specimen");
            let found = (expected + 1) % 10;
            let mutated = replace(mrz, line, position, char::from(b'0' + found));
            assert_eq!(
                parse(&mutated),
                Err(MrzError::CheckDigit {
                    field,
                    found,
                    expected,
                }),
                "line {line} position {position} of {mrz}"
            );
        }
    }

    #[test]
    fn refuses_data_changes_caught_only_by_the_composite() {
        // Optional data of TD1 / TD2 has no check digit of its own.
        let cases = [(TD2, 2, 29), (TD1, 1, 20), (TD1, 2, 20)];
        for (mrz, line, position) in cases {
            let result = parse(&replace(mrz, line, position, 'B'));
            assert!(
                matches!(
                    result,
                    Err(MrzError::CheckDigit {
                        field: MrzField::Composite,
                        ..
                    })
                ),
                "{result:?}"
            );
        }
    }

    #[test]
    fn refuses_non_digit_check_digits() {
        let cases = [
            (TD3, 2, 10, MrzField::DocumentNumber),
            (TD3, 2, 20, MrzField::DateOfBirth),
            (TD3, 2, 44, MrzField::Composite),
            (TD1, 2, 15, MrzField::ExpiryDate),
        ];
        for (mrz, line, position, field) in cases {
            assert_eq!(
                parse(&replace(mrz, line, position, 'A')),
                Err(MrzError::CheckDigitNotDigit {
                    field,
                    found: 'A',
                    line,
                    position,
                })
            );
        }
    }

    #[test]
    fn refuses_malformed_long_document_number() {
        // Check digit position is a filler but no continuation follows.
        let mrz = replace(TD1, 1, 15, '<');
        assert_eq!(
            parse(&mrz),
            Err(MrzError::Malformed {
                field: MrzField::DocumentNumber,
                value: "D23145890<<<<<<<<<<<<<<<<".to_owned(),
            })
        );
        // A TD3 document number check digit may never be a filler.
        assert!(matches!(
            parse(&replace(TD3, 2, 10, '<')),
            Err(MrzError::CheckDigitNotDigit {
                field: MrzField::DocumentNumber,
                ..
            })
        ));
    }

    #[test]
    fn refuses_wrong_shapes() {
        let td3_lines: Vec<&str> = TD3.split('\n').collect();
        let cases = [
            ("", MrzError::Empty),
            (" \n ", MrzError::Empty),
            (td3_lines[0], MrzError::LineCount { found: 1 }),
            (
                &*format!("{TD1}\n{}", "<".repeat(30)),
                MrzError::LineCount { found: 4 },
            ),
            (
                &*format!("{}\n{}", &td3_lines[0][..40], td3_lines[1]),
                MrzError::UnknownLineLength { found: 40 },
            ),
            (
                &*format!("{}\n{}", td3_lines[0], &td3_lines[1][..43]),
                MrzError::LineLength {
                    line: 2,
                    found: 43,
                    expected: 44,
                },
            ),
            (
                &*format!("{}\n{}<", td3_lines[0], td3_lines[1]),
                MrzError::LineLength {
                    line: 2,
                    found: 45,
                    expected: 44,
                },
            ),
            (
                &*format!("{TD1}<"),
                MrzError::LineLength {
                    line: 3,
                    found: 31,
                    expected: 30,
                },
            ),
            (
                &*TD1.replacen('\n', "<\n", 1),
                MrzError::LineLength {
                    line: 1,
                    found: 31,
                    expected: 30,
                },
            ),
            (
                &*TD3.replace('\n', "\n\n"),
                MrzError::LineLength {
                    line: 1,
                    found: 44,
                    expected: 30,
                },
            ),
            (
                &*format!("{}\n{}", TD2.split('\n').next().unwrap_or(""), td3_lines[1]),
                MrzError::LineLength {
                    line: 2,
                    found: 44,
                    expected: 36,
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input), Err(expected), "{input:?}");
        }
    }

    #[test]
    fn refuses_invalid_characters() {
        let cases = [
            (replace(TD3, 1, 1, 'p'), 'p', 1, 1),
            (replace(TD3, 2, 5, ' '), ' ', 2, 5),
            (replace(TD1, 3, 30, 'É'), 'É', 3, 30),
            (replace(TD2, 2, 35, '\t'), '\t', 2, 35),
            (TD3.replace('\n', " \n"), ' ', 1, 45),
            (TD3.replace('\n', "\n "), ' ', 2, 1),
            (TD3.replace('\n', "\r\r\n"), '\r', 1, 45),
        ];
        for (input, character, line, position) in cases {
            assert_eq!(
                parse(&input),
                Err(MrzError::InvalidCharacter {
                    character,
                    line,
                    position,
                }),
                "{input:?}"
            );
        }
    }

    #[test]
    fn refuses_invalid_dates() {
        let cases = [
            (TD3, 2, 14, "741312", MrzField::DateOfBirth),
            (TD3, 2, 14, "740832", MrzField::DateOfBirth),
            (TD3, 2, 14, "740800", MrzField::DateOfBirth),
            (TD3, 2, 14, "740431", MrzField::DateOfBirth),
            (TD3, 2, 14, "750229", MrzField::DateOfBirth),
            (TD3, 2, 14, "7408<<", MrzField::DateOfBirth),
            (TD3, 2, 22, "120015", MrzField::ExpiryDate),
            (TD2, 2, 22, "120230", MrzField::ExpiryDate),
            (TD1, 2, 1, "74A812", MrzField::DateOfBirth),
            (TD1, 2, 9, "121315", MrzField::ExpiryDate),
        ];
        for (mrz, line, first, value, field) in cases {
            let mutated = value
                .chars()
                .enumerate()
                .fold(mrz.to_owned(), |text, (offset, c)| {
                    replace(&text, line, first + offset, c)
                });
            assert_eq!(
                parse(&mutated),
                Err(MrzError::InvalidDate {
                    field,
                    value: value.to_owned(),
                }),
                "{value}"
            );
        }
    }

    #[test]
    fn validates_dates_per_month() {
        let cases = [
            ("740812", true),
            ("000229", true),
            ("960229", true),
            ("970229", false),
            ("970228", true),
            ("970131", true),
            ("970631", false),
            ("970630", true),
            ("971231", true),
            ("970001", false),
            ("971301", false),
            ("97010", false),
            ("9701011", false),
        ];
        for (value, valid) in cases {
            assert_eq!(date(MrzField::DateOfBirth, value).is_ok(), valid, "{value}");
        }
    }

    #[test]
    fn sex_values() {
        for sex in ['M', 'F', 'X', '<'] {
            let mrz = parse(&replace(TD3, 2, 21, sex)).expect("valid sex");
            assert_eq!(mrz.sex(), sex);
        }
        for (mrz, position) in [(TD3, 21), (TD2, 21), (TD1, 8)] {
            assert_eq!(
                parse(&replace(mrz, 2, position, 'Q')),
                Err(MrzError::InvalidSex { found: 'Q' })
            );
        }
    }

    #[test]
    fn country_codes() {
        let germany = replace(&replace(&replace(TD3, 1, 3, 'D'), 1, 4, '<'), 1, 5, '<');
        let mrz = parse(&germany).expect("D<< is a valid issuing state");
        assert_eq!(mrz.issuing_state(), "D");
        // TD1 nationality (line 2 positions 16-18) is outside the composite.
        let mrz = parse(&replace(TD1, 2, 18, '<')).expect("UT< is a valid nationality");
        assert_eq!(mrz.nationality(), "UT");

        let cases = [
            (replace(TD3, 1, 4, '1'), MrzField::IssuingState, "U1O"),
            (replace(TD3, 1, 3, '<'), MrzField::IssuingState, "<TO"),
            (replace(TD3, 1, 4, '<'), MrzField::IssuingState, "U<O"),
            (replace(TD3, 2, 12, '7'), MrzField::Nationality, "U7O"),
            (replace(TD1, 1, 5, '0'), MrzField::IssuingState, "UT0"),
        ];
        for (input, field, value) in cases {
            assert_eq!(
                parse(&input),
                Err(MrzError::InvalidCountryCode {
                    field,
                    value: value.to_owned(),
                }),
                "{value}"
            );
        }
    }

    #[test]
    fn refuses_malformed_document_code_and_names() {
        let cases = [
            (
                replace(TD3, 1, 1, '1'),
                MrzField::DocumentCode,
                "1<".to_owned(),
            ),
            (
                replace(TD3, 1, 1, '<'),
                MrzField::DocumentCode,
                "<<".to_owned(),
            ),
            (
                replace(TD3, 1, 8, '4'),
                MrzField::Name,
                "ER4KSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<".to_owned(),
            ),
        ];
        for (input, field, value) in cases {
            assert_eq!(parse(&input), Err(MrzError::Malformed { field, value }));
        }
    }

    #[test]
    fn splits_names() {
        let cases = [
            ("ERIKSSON<<ANNA<MARIA<<<<<", "ERIKSSON", "ANNA MARIA"),
            ("VAN<DER<BERG<<JAN<<<<<<<<", "VAN DER BERG", "JAN"),
            ("SUKARNO<<<<<<<<<<<<<<<<<<", "SUKARNO", ""),
            ("<<SOKHA<<<<<<<<<<<<<<<<<<", "", "SOKHA"),
        ];
        for (field, primary, secondary) in cases {
            assert_eq!(
                names(field),
                Ok((primary.to_owned(), secondary.to_owned())),
                "{field}"
            );
        }
    }

    #[test]
    fn error_messages_name_the_failing_part() {
        let cases = [
            (
                MrzError::LineLength {
                    line: 2,
                    found: 43,
                    expected: 44,
                },
                "line 2 has 43 characters, expected 44",
            ),
            (
                MrzError::InvalidCharacter {
                    character: 'p',
                    line: 1,
                    position: 1,
                },
                "line 1 position 1 holds a character outside A-Z, 0-9 and <",
            ),
            (
                MrzError::CheckDigit {
                    field: MrzField::DateOfBirth,
                    found: 3,
                    expected: 2,
                },
                "date of birth check digit does not match the field",
            ),
            (
                MrzError::CheckDigitNotDigit {
                    field: MrzField::Composite,
                    found: 'A',
                    line: 2,
                    position: 44,
                },
                "composite check digit at line 2 position 44 is not a digit",
            ),
            (
                MrzError::InvalidDate {
                    field: MrzField::ExpiryDate,
                    value: "121315".to_owned(),
                },
                "expiry date is not a valid date",
            ),
            (
                MrzError::InvalidSex { found: 'Q' },
                "sex must be 'M', 'F', 'X' or '<'",
            ),
            (
                MrzError::InvalidCountryCode {
                    field: MrzField::IssuingState,
                    value: "U1O".to_owned(),
                },
                "issuing state is not a valid country code",
            ),
            (
                MrzError::LineCount { found: 4 },
                "machine-readable zone has 4 lines, expected 2 or 3",
            ),
            (
                MrzError::UnknownLineLength { found: 40 },
                "line 1 has 40 characters, expected 36 (td2) or 44 (td3)",
            ),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), message);
        }
    }
}
