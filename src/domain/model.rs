//! Typed values of the product's world, each parsed once from raw input and unable to hold a
//! bad value afterwards.

use std::fmt;
use std::str::FromStr;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Why a raw value is not a valid typed value.
///
/// The value itself is never carried: a bad value may be personal data sent by the other
/// side, and these errors reach refusal entries that can never be redacted, log lines and the
/// peer. The caller names the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("is not an ISO 3166-1 alpha-3 country code")]
    Country,
    #[error("is not a message id (1 to 64 characters of A-Z a-z 0-9 . _ : -)")]
    MessageId,
    #[error("is not a role (operator, auditor, sync, screening or node)")]
    Role,
    #[error("is not a focalpoint identity (urn:focalpoint:COUNTRY:ROLE[:NAME])")]
    Identity,
    #[error("is not a date (YYYY-MM-DD)")]
    Date,
    #[error("is not an RFC 3339 instant in UTC (e.g. 2025-04-30T08:15:00Z)")]
    Instant,
}

/// ISO 3166-1 alpha-3 codes, plus the ICAO codes for the stateless, refugees and UN documents,
/// sorted and one space apart (looked up by binary search).
const COUNTRIES: &str = "ABW AFG AGO AIA ALA ALB AND ARE ARG ARM ASM ATA ATF ATG AUS AUT AZE BDI \
BEL BEN BES BFA BGD BGR BHR BHS BIH BLM BLR BLZ BMU BOL BRA BRB BRN BTN BVT BWA CAF CAN CCK CHE \
CHL CHN CIV CMR COD COG COK COL COM CPV CRI CUB CUW CXR CYM CYP CZE DEU DJI DMA DNK DOM DZA ECU \
EGY ERI ESH ESP EST ETH FIN FJI FLK FRA FRO FSM GAB GBR GEO GGY GHA GIB GIN GLP GMB GNB GNQ GRC \
GRD GRL GTM GUF GUM GUY HKG HMD HND HRV HTI HUN IDN IMN IND IOT IRL IRN IRQ ISL ISR ITA JAM JEY \
JOR JPN KAZ KEN KGZ KHM KIR KNA KOR KWT LAO LBN LBR LBY LCA LIE LKA LSO LTU LUX LVA MAC MAF MAR \
MCO MDA MDG MDV MEX MHL MKD MLI MLT MMR MNE MNG MNP MOZ MRT MSR MTQ MUS MWI MYS MYT NAM NCL NER \
NFK NGA NIC NIU NLD NOR NPL NRU NZL OMN PAK PAN PCN PER PHL PLW PNG POL PRI PRK PRT PRY PSE PYF \
QAT REU RKS ROU RUS RWA SAU SDN SEN SGP SGS SHN SJM SLB SLE SLV SMR SOM SPM SRB SSD STP SUR SVK \
SVN SWE SWZ SXM SYC SYR TCA TCD TGO THA TJK TKL TKM TLS TON TTO TUN TUR TUV TWN TZA UGA UKR UMI \
UNA UNK UNO URY USA UZB VAT VCT VEN VGB VIR VNM VUT WLF WSM XXA XXB XXC XXX YEM ZAF ZMB ZWE";

/// A country: ISO 3166-1 alpha-3, upper case.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 3]);

impl CountryCode {
    /// The three letters.
    pub fn as_str(&self) -> &str {
        // Only upper-case ASCII letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

/// Whether `code` is in `COUNTRIES`: a binary search over its sorted, space-separated codes.
fn is_country(code: &[u8]) -> bool {
    let list = COUNTRIES.as_bytes();
    let (mut low, mut high) = (0, list.len().div_ceil(4));
    while low < high {
        let middle = (low + high) / 2;
        match list[4 * middle..4 * middle + 3].cmp(code) {
            std::cmp::Ordering::Less => low = middle + 1,
            std::cmp::Ordering::Greater => high = middle,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}

impl FromStr for CountryCode {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_uppercase) || !is_country(bytes) {
            return Err(ParseError::Country);
        }
        Ok(Self([bytes[0], bytes[1], bytes[2]]))
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for CountryCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for CountryCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A sender-chosen message id: 1 to 64 characters of `A-Z a-z 0-9 . _ : -`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct MessageId(String);

impl MessageId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for MessageId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError::MessageId)
        }
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a certificate holder may do.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Role {
    /// A focal point's node, on the peer plane.
    Node,
    /// A focal-point operator: sends, reads, answers.
    Operator,
    /// An auditor: reads only.
    Auditor,
    /// The nightly statistics sync: pushes statistics reports only.
    Sync,
    /// A border-control system checking travellers: searches what was exchanged, nothing else.
    Screening,
}

impl Role {
    /// The role's name as it appears in certificates and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Node => "node",
            Self::Operator => "operator",
            Self::Auditor => "auditor",
            Self::Sync => "sync",
            Self::Screening => "screening",
        }
    }
}

impl FromStr for Role {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "node" => Ok(Self::Node),
            "operator" => Ok(Self::Operator),
            "auditor" => Ok(Self::Auditor),
            "sync" => Ok(Self::Sync),
            "screening" => Ok(Self::Screening),
            _ => Err(ParseError::Role),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a certificate says its holder is, carried as a URI subject alternative name:
/// `urn:focalpoint:IDN:node` or `urn:focalpoint:IDN:operator:siti`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Identity {
    /// The holder's country.
    pub country: CountryCode,
    /// What the holder may do.
    pub role: Role,
    /// The user's name for people and jobs; empty for nodes.
    pub name: String,
}

const URN_PREFIX: &str = "urn:focalpoint:";

impl Identity {
    /// The identity as it is written in a certificate.
    pub fn uri(&self) -> String {
        if self.name.is_empty() {
            format!("{URN_PREFIX}{}:{}", self.country, self.role)
        } else {
            format!("{URN_PREFIX}{}:{}:{}", self.country, self.role, self.name)
        }
    }

    /// Whether a URI is meant as a focalpoint identity (and so must parse as one).
    pub fn is_focalpoint_uri(uri: &str) -> bool {
        uri.starts_with(URN_PREFIX)
    }
}

impl FromStr for Identity {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseError::Identity;
        let rest = s.strip_prefix(URN_PREFIX).ok_or_else(bad)?;
        let mut parts = rest.splitn(3, ':');
        let country = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let role: Role = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let name = parts.next().unwrap_or_default().to_owned();
        let name_ok = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        // Nodes carry no name; people and jobs must.
        if !name_ok || (role == Role::Node) != name.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            country,
            role,
            name,
        })
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// SHA-256 of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self::of_parts(&[data])
    }

    /// SHA-256 of the concatenation of `parts`.
    pub fn of_parts(parts: &[&[u8]]) -> Self {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for part in parts {
            ctx.update(part);
        }
        let mut out = [0; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        Self(out)
    }

    /// A digest from 32 bytes, or `None` for any other length.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }

    /// Lower-case hex.
    pub fn hex(&self) -> String {
        hex(&self.0)
    }

    /// The first 12 hex digits, for tables.
    pub fn short(&self) -> String {
        hex(&self.0[..6])
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A calendar date, `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Result<time::Date, ParseError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    if s.len() != 10 {
        return Err(ParseError::Date);
    }
    time::Date::parse(s, &format).map_err(|_| ParseError::Date)
}

/// An RFC 3339 instant with a zero UTC offset.
pub fn parse_instant(s: &str) -> Result<OffsetDateTime, ParseError> {
    match OffsetDateTime::parse(s, &Rfc3339) {
        Ok(t) if t.offset().is_utc() => Ok(t),
        _ => Err(ParseError::Instant),
    }
}

/// An instant as RFC 3339 UTC, to the second.
pub fn format_instant(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Microseconds since the Unix epoch as RFC 3339 UTC, to the microsecond.
pub fn format_micros(micros: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| micros.to_string())
}

/// An instant from microseconds since the Unix epoch; out of range, the epoch.
pub fn from_micros(micros: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Now, in microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_codes_parse_only_when_assigned() {
        for ok in ["IDN", "KHM", "THA", "MYS", "SGP", "XXA"] {
            assert_eq!(ok.parse::<CountryCode>().unwrap().as_str(), ok);
        }
        for bad in ["", "ID", "idn", "IDNN", "KHN", "ZZZ", "I D", "AAA", "ZZW"] {
            assert!(bad.parse::<CountryCode>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_country_list_is_sorted_codes_one_space_apart_and_each_is_found() {
        let codes: Vec<&str> = COUNTRIES.split(' ').collect();
        assert!(codes.iter().all(|c| c.len() == 3));
        assert!(codes.windows(2).all(|w| w[0] < w[1]));
        for c in codes {
            assert!(is_country(c.as_bytes()), "{c}");
        }
    }

    #[test]
    fn message_ids_are_bounded_and_plain() {
        assert!("IDN-2025-04-30-0001".parse::<MessageId>().is_ok());
        assert!("a".repeat(64).parse::<MessageId>().is_ok());
        for bad in ["", "has space", "slash/", "é", &"a".repeat(65)] {
            assert!(bad.parse::<MessageId>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn identities_round_trip_and_refuse_odd_shapes() {
        for uri in [
            "urn:focalpoint:IDN:node",
            "urn:focalpoint:KHM:operator:sokha",
        ] {
            assert_eq!(uri.parse::<Identity>().unwrap().uri(), uri);
        }
        for bad in [
            "urn:focalpoint:IDN:node:extra",
            "urn:focalpoint:IDN:operator",
            "urn:focalpoint:IDN:admin:x",
            "urn:focalpoint:XYZ:node",
            "spiffe://idn/node",
        ] {
            assert!(bad.parse::<Identity>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn instants_must_be_utc() {
        assert!(parse_instant("2025-04-30T08:15:00Z").is_ok());
        assert!(parse_instant("2025-04-30T08:15:00+07:00").is_err());
        assert!(parse_instant("2025-04-30").is_err());
        assert!(parse_date("2025-02-29").is_err());
        assert!(parse_date("2024-02-29").is_ok());
    }
}
