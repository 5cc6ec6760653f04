//! Node and client configuration files (TOML). Unknown keys are refused, errors name the key,
//! and relative paths are read relative to the file that names them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use std::collections::{BTreeMap, BTreeSet};

use crate::domain::agreement::{Agreement, AlertCategoryName, Flow, MessageKindName};

use crate::crypto::x509::{self, TlsError};
use crate::domain::model::CountryCode;
use crate::exchange::audit::AuditTrust;
use crate::log::Durability;

/// Why a configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// A node's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This focal point's country.
    pub country: CountryCode,
    /// Where the exchange log lives; `--data-dir` overrides it.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// What an acknowledged write survives.
    #[serde(default)]
    pub durability: Durability,
    /// How a new exchange log stores its pages (`none` or `zstd`); an existing log keeps its own.
    #[serde(default)]
    pub compression: crate::log::Compression,
    /// MiB of memory the exchange log keeps its pages in (1 to 4096).
    #[serde(default = "default_cache_mib")]
    pub cache_mib: u64,
    /// How the node logs.
    #[serde(default)]
    pub log: LogConfig,
    /// The Prometheus metrics listener.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Seconds between cosigned checkpoints with each peer; 0 turns them off.
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval_secs: u64,
    /// The node's own certificate and key, used on both listeners and to sign receipts.
    pub node: NodeIdentityConfig,
    /// Where peers connect.
    pub peer_listener: ListenerConfig,
    /// Where local operators, auditors and the sync connect.
    pub operator_listener: OperatorListenerConfig,
    /// The other focal points.
    pub peers: Vec<PeerConfig>,
    /// How long message content is kept; absent keeps it for good.
    #[serde(default)]
    pub retention: Option<crate::exchange::retention::RetentionPolicy>,
    /// Encryption of message content at rest; absent stores it in plain.
    #[serde(default)]
    pub encryption: Option<EncryptionConfig>,
    /// What a peer may ask of this node.
    #[serde(default)]
    pub limits: crate::node::limits::Limits,
    /// Case deadlines: how often they are checked, and how early an alert's end is told.
    #[serde(default)]
    pub cases: CasesConfig,
}

/// Where the log key that seals message content at rest comes from: exactly one of a file
/// (64 hexadecimal digits, readable by the node only) or an environment variable.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// A file holding the key.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The name of an environment variable holding the key.
    #[serde(default)]
    pub key_env: Option<String>,
    /// Keys replaced by a rotation: they no longer seal anything, but still open what they
    /// sealed. Drop one once everything it sealed has been redacted.
    #[serde(default)]
    pub previous_key_files: Vec<PathBuf>,
}

impl EncryptionConfig {
    /// Loads the key.
    pub fn load_key(&self) -> Result<crate::crypto::seal::LogKey, crate::crypto::seal::SealError> {
        let current = match (&self.key_file, &self.key_env) {
            (Some(file), _) => crate::crypto::seal::LogKey::from_file(file)?,
            (None, Some(var)) => crate::crypto::seal::LogKey::from_env(var)?,
            (None, None) => return Err(crate::crypto::seal::SealError::Unset(String::new())),
        };
        let previous = self
            .previous_key_files
            .iter()
            .map(|f| crate::crypto::seal::LogKey::from_file(f))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(current.with_previous(previous))
    }
}

/// Logging: format and filter. Logs never carry names or document numbers: message ids,
/// countries, sequences and reasons only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `human` (default) or `json`, one object per line.
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter: `info` (default), `warn`, `focalpoint=debug`, ...
    #[serde(default = "default_filter")]
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            filter: default_filter(),
        }
    }
}

/// Where metrics are served, as Prometheus text at `/metrics`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve metrics at all (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// `host:port`, loopback by default (127.0.0.1:9464).
    #[serde(default = "crate::node::metrics::default_address")]
    pub address: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            address: crate::node::metrics::default_address(),
        }
    }
}

fn default_true() -> bool {
    true
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Plain text for people.
    #[default]
    Human,
    /// One JSON object per line, for collectors.
    Json,
}

fn default_filter() -> String {
    "info".into()
}

fn default_checkpoint_interval() -> u64 {
    3600
}

/// The node's certificate and key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeIdentityConfig {
    /// PEM certificate chain, leaf first.
    pub certificate: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// A listening address.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// `host:port`; port 0 picks a free one.
    pub address: SocketAddr,
}

/// The operator listener: address and the local CA its users' certificates chain to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorListenerConfig {
    /// `host:port`; port 0 picks a free one.
    pub address: SocketAddr,
    /// PEM certificate of the local CA.
    pub ca: PathBuf,
    /// PEM certificate revocation list of the local CA: its revoked node, operator, auditor
    /// and sync certificates. Reread on reload.
    #[serde(default)]
    pub crl: Option<PathBuf>,
}

/// One other focal point.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The peer's country.
    pub country: CountryCode,
    /// Its peer listener, `https://host:port`.
    pub address: String,
    /// The DNS name in its node certificate.
    pub server_name: String,
    /// PEM certificate of the CA its node certificate chains to.
    pub ca: PathBuf,
    /// PEM certificate revocation list the peer's CA publishes. Reread on reload.
    #[serde(default)]
    pub crl: Option<PathBuf>,
    /// The response times agreed with the peer, in hours by urgency:
    /// `response_hours = { immediate = 1, urgent = 12, routine = 168 }` (the defaults).
    #[serde(default)]
    pub response_hours: ResponseHours,
    /// What may flow with the peer, each way; left out, everything may.
    #[serde(default)]
    pub agreement: AgreementConfig,
    /// A former peer: nothing is exchanged with it any more, and its CA and revocation list
    /// are kept only so that audits can still check what it signed.
    #[serde(default)]
    pub retired: bool,
}

/// `[peers.agreement]`: the kinds (`alert`, `fraud`, `stats`, `response`) this node may send
/// the peer and accept from it, and for alerts their categories. A list left out allows every
/// kind or category; an empty list allows none.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgreementConfig {
    #[serde(default)]
    pub send: Option<BTreeSet<MessageKindName>>,
    #[serde(default)]
    pub accept: Option<BTreeSet<MessageKindName>>,
    #[serde(default)]
    pub send_alert_categories: Option<BTreeSet<AlertCategoryName>>,
    #[serde(default)]
    pub accept_alert_categories: Option<BTreeSet<AlertCategoryName>>,
}

impl AgreementConfig {
    /// The agreement this configures.
    pub fn agreement(&self) -> Agreement {
        Agreement {
            send: Flow {
                kinds: self.send.clone(),
                alert_categories: self.send_alert_categories.clone(),
            },
            accept: Flow {
                kinds: self.accept.clone(),
                alert_categories: self.accept_alert_categories.clone(),
            },
        }
    }
}

/// `[cases]`: the deadline check.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CasesConfig {
    /// Days before an alert this node sent ends that an `expiring` event reminds its sender.
    pub expiry_reminder_days: u32,
    /// Seconds between checks for deadlines that came (overdue answers, alerts ending).
    pub deadline_check_secs: u64,
}

impl Default for CasesConfig {
    fn default() -> Self {
        Self {
            expiry_reminder_days: 14,
            deadline_check_secs: 60,
        }
    }
}

/// Response times by urgency, in hours; each at least one.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseHours {
    pub immediate: u32,
    pub urgent: u32,
    pub routine: u32,
}

impl Default for ResponseHours {
    fn default() -> Self {
        let d = crate::domain::case::ResponseTimes::default();
        Self {
            immediate: d.immediate_hours,
            urgent: d.urgent_hours,
            routine: d.routine_hours,
        }
    }
}

impl ResponseHours {
    /// As the exchange holds them.
    pub fn times(self) -> crate::domain::case::ResponseTimes {
        crate::domain::case::ResponseTimes {
            immediate_hours: self.immediate,
            urgent_hours: self.urgent,
            routine_hours: self.routine,
        }
    }
}

/// A command-line client's configuration: which node, and as whom.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The node's operator listener, `https://host:port`.
    pub node: String,
    /// The DNS name in the node's certificate.
    pub server_name: String,
    /// PEM certificate of the local CA.
    pub ca: PathBuf,
    /// The user's PEM certificate.
    pub certificate: PathBuf,
    /// The user's PEM private key.
    pub key: PathBuf,
}

fn load<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })
}

/// Refuses a configured file that does not exist, naming the key that points at it.
fn must_exist(config: &Path, key: &str, file: &Path) -> Result<(), ConfigError> {
    if file.is_file() {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            path: config.to_owned(),
            key: key.to_owned(),
            message: format!("{} does not exist or is not a file", file.display()),
        })
    }
}

fn resolve(base: &Path, p: &mut PathBuf) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

fn default_cache_mib() -> u64 {
    crate::log::DEFAULT_CACHE_MIB
}

impl NodeConfig {
    /// Reads and checks a node configuration; relative paths become relative to its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut config: Self = load(path)?;
        config.finish(path)?;
        must_exist(path, "node.certificate", &config.node.certificate)?;
        must_exist(path, "node.key", &config.node.key)?;
        must_exist(path, "operator_listener.ca", &config.operator_listener.ca)?;
        for (i, peer) in config.peers.iter().enumerate() {
            must_exist(path, &format!("peers[{i}].ca"), &peer.ca)?;
        }
        Ok(config)
    }

    /// Parses a node configuration from text, as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let mut config: Self = parse(path, text)?;
        config.finish(path)?;
        Ok(config)
    }

    fn finish(&mut self, path: &Path) -> Result<(), ConfigError> {
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(d) = &mut self.data_dir {
            resolve(base, d);
        }
        resolve(base, &mut self.node.certificate);
        resolve(base, &mut self.node.key);
        resolve(base, &mut self.operator_listener.ca);
        if let Some(crl) = &mut self.operator_listener.crl {
            resolve(base, crl);
        }
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        if !(1..=4096).contains(&self.cache_mib) {
            return Err(invalid(
                "cache_mib".into(),
                format!("is {}, but must be from 1 to 4096", self.cache_mib),
            ));
        }
        if !(1..=86_400).contains(&self.cases.deadline_check_secs) {
            return Err(invalid(
                "cases.deadline_check_secs".into(),
                format!(
                    "is {}, but must be from 1 to 86400",
                    self.cases.deadline_check_secs
                ),
            ));
        }
        if self.cases.expiry_reminder_days > 3660 {
            return Err(invalid(
                "cases.expiry_reminder_days".into(),
                format!(
                    "is {}, but must be at most 3660",
                    self.cases.expiry_reminder_days
                ),
            ));
        }
        if let Some((key, message)) = self.limits.problem() {
            return Err(invalid(format!("limits.{key}"), message));
        }
        if let Some(policy) = &self.retention
            && let Some((key, message)) = policy.problem()
        {
            return Err(invalid(format!("retention.{key}"), message));
        }
        if let Some(encryption) = &mut self.encryption {
            for file in &mut encryption.previous_key_files {
                resolve(base, file);
            }
            match (&mut encryption.key_file, &encryption.key_env) {
                (Some(file), None) => resolve(base, file),
                (None, Some(var)) if !var.is_empty() => {}
                _ => {
                    return Err(invalid(
                        "encryption".into(),
                        "set exactly one of key_file and key_env".into(),
                    ));
                }
            }
        }
        if self.active_peers().next().is_none() {
            return Err(invalid(
                "peers".into(),
                "at least one peer that is not retired is required".into(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, peer) in self.peers.iter_mut().enumerate() {
            resolve(base, &mut peer.ca);
            if let Some(crl) = &mut peer.crl {
                resolve(base, crl);
            }
            if peer.country == self.country {
                return Err(invalid(
                    format!("peers[{i}].country"),
                    "is this node's own country".into(),
                ));
            }
            if !seen.insert(peer.country) {
                return Err(invalid(
                    format!("peers[{i}].country"),
                    format!("{} is configured twice", peer.country),
                ));
            }
            if !peer.address.starts_with("https://") {
                return Err(invalid(
                    format!("peers[{i}].address"),
                    format!("{:?} must start with https://", peer.address),
                ));
            }
            let hours = peer.response_hours;
            for (name, value) in [
                ("immediate", hours.immediate),
                ("urgent", hours.urgent),
                ("routine", hours.routine),
            ] {
                if !(1..=24 * 366).contains(&value) {
                    return Err(invalid(
                        format!("peers[{i}].response_hours.{name}"),
                        format!("is {value}, but must be from 1 to 8784 hours"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The configuration of the peer `country`, unless it is retired.
    pub fn peer(&self, country: CountryCode) -> Option<&PeerConfig> {
        self.active_peers().find(|p| p.country == country)
    }

    /// The peers this node exchanges with: all but the retired ones.
    pub fn active_peers(&self) -> impl Iterator<Item = &PeerConfig> {
        self.peers.iter().filter(|p| !p.retired)
    }
}

impl ClientConfig {
    /// Reads a client configuration; relative paths become relative to its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut config: Self = load(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        resolve(base, &mut config.ca);
        resolve(base, &mut config.certificate);
        resolve(base, &mut config.key);
        must_exist(path, "ca", &config.ca)?;
        must_exist(path, "certificate", &config.certificate)?;
        must_exist(path, "key", &config.key)?;
        if !config.node.starts_with("https://") {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                key: "node".into(),
                message: format!("{:?} must start with https://", config.node),
            });
        }
        Ok(config)
    }
}

impl NodeConfig {
    /// What an audit of this node's log trusts: the CAs and revocation lists this
    /// configuration names, and its retention policy.
    pub fn audit_trust(&self) -> Result<AuditTrust, TlsError> {
        let mut peers = BTreeMap::new();
        let mut peers_revoked = BTreeMap::new();
        for peer in &self.peers {
            let anchors = x509::load_certs(&peer.ca)?;
            peers_revoked.insert(
                peer.country,
                crate::crypto::revocation::load_optional(peer.crl.as_deref(), &anchors)?,
            );
            peers.insert(peer.country, anchors);
        }
        let own_ca = x509::load_certs(&self.operator_listener.ca)?;
        let own_revoked = crate::crypto::revocation::load_optional(
            self.operator_listener.crl.as_deref(),
            &own_ca,
        )?;
        Ok(AuditTrust {
            country: self.country,
            own_ca,
            peers,
            own_revoked,
            peers_revoked,
            retention: self.retention.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
country = "IDN"
[node]
certificate = "node.pem"
key = "node.key"
[peer_listener]
address = "127.0.0.1:7443"
[operator_listener]
address = "127.0.0.1:7444"
ca = "ca.pem"
[[peers]]
country = "KHM"
address = "https://127.0.0.1:7543"
server_name = "khm.focalpoint.example"
ca = "peers/khm-ca.pem"
"#;

    #[test]
    fn relative_paths_follow_the_file() {
        let c = NodeConfig::parse(Path::new("/etc/focalpoint/node.toml"), GOOD).unwrap();
        assert_eq!(c.node.key, Path::new("/etc/focalpoint/node.key"));
        assert_eq!(c.peers[0].ca, Path::new("/etc/focalpoint/peers/khm-ca.pem"));
        assert_eq!(c.durability, Durability::Fsync);
        assert_eq!(c.compression, crate::log::Compression::None);
        assert_eq!(c.cache_mib, crate::log::DEFAULT_CACHE_MIB);
        let text = GOOD.replace(
            "country = \"IDN\"",
            "country = \"IDN\"\ncompression = \"zstd\"\ncache_mib = 64",
        );
        let c = NodeConfig::parse(Path::new("/etc/focalpoint/node.toml"), &text).unwrap();
        assert_eq!(
            (c.compression, c.cache_mib),
            (crate::log::Compression::Zstd, 64)
        );
    }

    #[test]
    fn retention_and_encryption_are_read() {
        let text = format!(
            "{GOOD}\n[retention]\npolicy = \"IDN-PDP\"\nalert_days = 30\n\n[encryption]\nkey_file = \"log.key\"\n"
        );
        let c = NodeConfig::parse(Path::new("/etc/focalpoint/node.toml"), &text).unwrap();
        let r = c.retention.unwrap();
        assert_eq!(r.days(crate::pb::MessageKind::TravellerAlert), Some(30));
        assert_eq!(r.days(crate::pb::MessageKind::CaseResponse), None);
        assert_eq!(
            c.encryption.unwrap().key_file.unwrap(),
            Path::new("/etc/focalpoint/log.key")
        );
    }

    #[test]
    fn an_agreement_is_read_and_a_peer_without_one_may_exchange_everything() {
        let c = NodeConfig::parse(Path::new("node.toml"), GOOD).unwrap();
        assert_eq!(
            c.peers[0].agreement.agreement(),
            crate::domain::agreement::Agreement::default()
        );
        let text = format!(
            "{GOOD}\n[peers.agreement]\nsend = [\"stats\", \"alert\"]\naccept = []\n\
             send_alert_categories = [\"suspected_trafficking_victim\"]\n"
        );
        let c = NodeConfig::parse(Path::new("node.toml"), &text).unwrap();
        let agreement = c.peers[0].agreement.agreement();
        assert_eq!(
            agreement.send.describe(),
            "alert (suspected_trafficking_victim), stats"
        );
        assert_eq!(agreement.accept.describe(), "nothing");
        assert!(
            agreement
                .accept
                .refuses(crate::pb::MessageKind::CaseResponse, 0)
                .is_some()
        );
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                GOOD.replace("country = \"IDN\"", "country = \"IDN\"\ncolour = 1"),
                "colour",
            ),
            (GOOD.replace("\"KHM\"", "\"IDN\""), "peers[0].country"),
            (GOOD.replace("\"KHM\"", "\"KHN\""), "KHN"),
            (
                GOOD.replace("https://127.0.0.1:7543", "127.0.0.1:7543"),
                "peers[0].address",
            ),
            (GOOD.replace("127.0.0.1:7444", "localhost"), "address"),
            (GOOD.replace("[[peers]]", "[[peer]]"), "peer"),
            (
                GOOD.replace("country = \"IDN\"", "country = \"IDN\"\ncache_mib = 0"),
                "cache_mib",
            ),
            (
                GOOD.replace(
                    "country = \"IDN\"",
                    "country = \"IDN\"\ncompression = \"lz4\"",
                ),
                "lz4",
            ),
            (
                format!("{GOOD}\n[retention]\npolicy = \"P\"\nalert_days = 0\n"),
                "retention.alert_days",
            ),
            (
                format!("{GOOD}\n[retention]\npolicy = \"\"\n"),
                "retention.policy",
            ),
            (
                format!("{GOOD}\n[retention]\npolicy = \"P\"\ncase_response_days = 200000000\n"),
                "retention.case_response_days",
            ),
            (
                format!("{GOOD}\n[retention]\npolicy = \"P\"\nalerts_days = 3\n"),
                "alerts_days",
            ),
            (
                format!("{GOOD}\n[encryption]\nkey_file = \"k\"\nkey_env = \"K\"\n"),
                "encryption",
            ),
            (format!("{GOOD}\n[encryption]\n"), "encryption"),
            (
                format!("{GOOD}\n[peers.agreement]\nsend = [\"alerts\"]\n"),
                "\"alerts\" is not a kind of message",
            ),
            (
                format!("{GOOD}\n[peers.agreement]\naccept_alert_categories = [\"victim\"]\n"),
                "\"victim\" is not an alert category",
            ),
            (
                format!("{GOOD}\n[peers.agreement]\nreceive = [\"alert\"]\n"),
                "receive",
            ),
        ];
        for (text, key) in cases {
            let err = NodeConfig::parse(Path::new("node.toml"), &text).unwrap_err();
            assert!(err.to_string().contains(key), "{err} does not name {key}");
        }
    }
}
