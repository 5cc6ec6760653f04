//! `focalpoint check-config`: a configuration and every certificate it names, checked before a
//! node or client is started with them, with a warning for certificates close to expiry.

use std::path::Path;

use rustls::pki_types::CertificateDer;

use crate::crypto::x509;
use crate::domain::model::{Identity, Role, format_instant};
use crate::node::config::{ClientConfig, ConfigError, NodeConfig};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Checked and fine.
    Ok,
    /// Works today, needs attention soon.
    Warning,
    /// Will not work.
    Error,
}

/// One thing checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How serious.
    pub level: Level,
    /// What was found, naming the file.
    pub message: String,
}

struct Findings {
    list: Vec<Finding>,
    warn_days: i64,
}

impl Findings {
    fn push(&mut self, level: Level, message: String) {
        self.list.push(Finding { level, message });
    }

    /// Validity of every certificate in `certs`, read from `path` as `what`.
    fn validity(&mut self, what: &str, path: &Path, certs: &[CertificateDer<'_>]) {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        for cert in certs {
            let (not_before, not_after) = match x509::validity_of(cert) {
                Ok(v) => v,
                Err(e) => {
                    self.push(Level::Error, format!("{what} {}: {e}", path.display()));
                    continue;
                }
            };
            let until = time::OffsetDateTime::from_unix_timestamp(not_after)
                .map(format_instant)
                .unwrap_or_else(|_| not_after.to_string());
            let days_left = (not_after - now) / 86_400;
            if now < not_before {
                self.push(
                    Level::Error,
                    format!("{what} {} is not valid yet", path.display()),
                );
            } else if now > not_after {
                self.push(
                    Level::Error,
                    format!("{what} {} expired on {until}", path.display()),
                );
            } else if days_left < self.warn_days {
                self.push(
                    Level::Warning,
                    format!(
                        "{what} {} expires in {days_left} days, on {until}: renew it",
                        path.display()
                    ),
                );
            } else {
                self.push(
                    Level::Ok,
                    format!("{what} {} valid until {until}", path.display()),
                );
            }
        }
    }

    /// A certificate that must name `expected` role (and country, if given).
    fn identity(
        &mut self,
        what: &str,
        path: &Path,
        cert: &CertificateDer<'_>,
        check: impl Fn(&Identity) -> Result<(), String>,
    ) {
        match x509::identity_of(cert) {
            Ok(identity) => match check(&identity) {
                Ok(()) => self.push(
                    Level::Ok,
                    format!("{what} {} names {identity}", path.display()),
                ),
                Err(e) => self.push(
                    Level::Error,
                    format!("{what} {} names {identity}: {e}", path.display()),
                ),
            },
            Err(e) => self.push(Level::Error, format!("{what} {}: {e}", path.display())),
        }
    }

    fn load(&mut self, what: &str, path: &Path) -> Option<Vec<CertificateDer<'static>>> {
        match x509::load_certs(path) {
            Ok(c) => Some(c),
            Err(e) => {
                self.push(Level::Error, format!("{what}: {e}"));
                None
            }
        }
    }
}

/// Checks the node or client configuration at `path`; certificates expiring within
/// `warn_days` are warnings. A file that is neither kind is an error.
pub fn check(path: &Path, warn_days: i64) -> Result<Vec<Finding>, ConfigError> {
    let mut f = Findings {
        list: Vec::new(),
        warn_days,
    };
    match NodeConfig::load(path) {
        Ok(config) => check_node(&mut f, &config),
        Err(node_error) => match ClientConfig::load(path) {
            Ok(config) => check_client(&mut f, &config),
            // Report it as the node configuration it most likely is, unless it looks like a client's.
            Err(client_error) => {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                return Err(
                    if text.contains("server_name") && !text.contains("[node]") {
                        client_error
                    } else {
                        node_error
                    },
                );
            }
        },
    }
    Ok(f.list)
}

fn check_node(f: &mut Findings, config: &NodeConfig) {
    let country = config.country;
    f.push(
        Level::Ok,
        format!("node configuration for {country} parses"),
    );
    if let Some(chain) = f.load("node certificate", &config.node.certificate) {
        f.identity(
            "node certificate",
            &config.node.certificate,
            &chain[0],
            |id| {
                if id.role == Role::Node && id.country == country {
                    Ok(())
                } else {
                    Err(format!("expected urn:focalpoint:{country}:node"))
                }
            },
        );
        f.validity("node certificate", &config.node.certificate, &chain[..1]);
        match x509::load_key(&config.node.key) {
            Ok(key) => {
                let matched = rustls::crypto::ring::sign::any_supported_type(&key)
                    .map(|signing| rustls::sign::CertifiedKey::new(chain, signing))
                    .and_then(|certified| certified.keys_match());
                match matched {
                    Ok(_) => f.push(
                        Level::Ok,
                        format!(
                            "node key {} matches its certificate",
                            config.node.key.display()
                        ),
                    ),
                    Err(e) => f.push(
                        Level::Error,
                        format!("node key {}: {e}", config.node.key.display()),
                    ),
                }
            }
            Err(e) => f.push(Level::Error, format!("node key: {e}")),
        }
    }
    if let Some(ca) = f.load("local CA", &config.operator_listener.ca) {
        f.validity("local CA", &config.operator_listener.ca, &ca);
        f.revocations("local CA", config.operator_listener.crl.as_deref(), &ca);
    }
    for peer in &config.peers {
        let what = format!("CA of {}", peer.country);
        if let Some(ca) = f.load(&what, &peer.ca) {
            f.validity(&what, &peer.ca, &ca);
            f.revocations(&what, peer.crl.as_deref(), &ca);
        }
        if peer.retired {
            f.push(
                Level::Ok,
                format!(
                    "{} is retired: nothing is exchanged with it; its CA is kept for audits",
                    peer.country
                ),
            );
            continue;
        }
        let agreement = peer.agreement.agreement();
        f.push(
            Level::Ok,
            format!(
                "agreement with {}: sends {}; accepts {}",
                peer.country,
                agreement.send.describe(),
                agreement.accept.describe()
            ),
        );
    }
}

impl Findings {
    /// The revocation list configured for a CA: readable, and signed by that CA.
    fn revocations(&mut self, what: &str, path: Option<&Path>, ca: &[CertificateDer<'static>]) {
        let Some(path) = path else {
            self.push(
                Level::Ok,
                format!("{what}: no revocation list configured (crl)"),
            );
            return;
        };
        match crate::crypto::revocation::Revocations::load(path, ca) {
            Ok(list) => self.push(
                Level::Ok,
                format!(
                    "{what}: revocation list {} signed by the CA, {} revoked",
                    path.display(),
                    list.count()
                ),
            ),
            Err(e) => self.push(Level::Error, format!("{what}: {e}")),
        }
    }
}

fn check_client(f: &mut Findings, config: &ClientConfig) {
    f.push(
        Level::Ok,
        format!("client configuration for {} parses", config.node),
    );
    if let Some(chain) = f.load("certificate", &config.certificate) {
        f.identity("certificate", &config.certificate, &chain[0], |id| {
            if id.role == Role::Node {
                Err("a node certificate cannot be used on the operator plane".into())
            } else {
                Ok(())
            }
        });
        f.validity("certificate", &config.certificate, &chain[..1]);
    }
    if let Err(e) = x509::load_key(&config.key) {
        f.push(Level::Error, format!("key: {e}"));
    }
    if let Some(ca) = f.load("CA", &config.ca) {
        f.validity("CA", &config.ca, &ca);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(file: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("certs-example")
            .join(file)
    }

    #[test]
    fn the_example_configurations_check_out() {
        for file in [
            "idn/node.toml",
            "khm/node.toml",
            "idn/operator.toml",
            "khm/sync.toml",
        ] {
            let findings = check(&example(file), 30).unwrap();
            assert!(findings.len() >= 3, "{file}: {findings:?}");
            assert!(
                findings.iter().all(|f| f.level == Level::Ok),
                "{file}: {findings:?}"
            );
        }
    }

    #[test]
    fn the_agreement_in_force_with_each_peer_is_shown() {
        let findings = check(&example("idn/node.toml"), 30).unwrap();
        assert!(
            findings.iter().any(|f| f.level == Level::Ok
                && f.message
                    == "agreement with KHM: sends every kind (alert, fraud, stats, response); \
                        accepts every kind (alert, fraud, stats, response)"),
            "{findings:?}"
        );
    }

    #[test]
    fn expiring_expired_and_mismatched_certificates_are_reported() {
        // With a horizon beyond the example PKI's lifetime, everything warns.
        let findings = check(&example("idn/node.toml"), 365 * 100).unwrap();
        assert!(
            findings
                .iter()
                .any(|f| f.level == Level::Warning && f.message.contains("expires in"))
        );

        let dir = tempfile::tempdir().unwrap();
        for f in [
            "ca.pem",
            "node.pem",
            "node.key",
            "operator.key",
            "operator.pem",
        ] {
            std::fs::copy(example(&format!("idn/{f}")), dir.path().join(f)).unwrap();
        }
        std::fs::create_dir(dir.path().join("peers")).unwrap();
        std::fs::copy(
            example("idn/peers/khm-ca.pem"),
            dir.path().join("peers/khm-ca.pem"),
        )
        .unwrap();
        let text = std::fs::read_to_string(example("idn/node.toml")).unwrap();
        // The operator's key with the node's certificate: refused.
        std::fs::write(
            dir.path().join("node.toml"),
            text.replace("key = \"node.key\"", "key = \"operator.key\""),
        )
        .unwrap();
        let findings = check(&dir.path().join("node.toml"), 30).unwrap();
        assert!(
            findings
                .iter()
                .any(|f| f.level == Level::Error && f.message.contains("operator.key")),
            "{findings:?}"
        );
        // A user certificate as the node certificate: refused.
        std::fs::write(
            dir.path().join("node.toml"),
            text.replace(
                "certificate = \"node.pem\"",
                "certificate = \"operator.pem\"",
            ),
        )
        .unwrap();
        let findings = check(&dir.path().join("node.toml"), 30).unwrap();
        assert!(
            findings.iter().any(|f| f.level == Level::Error
                && f.message.contains("expected urn:focalpoint:IDN:node")),
            "{findings:?}"
        );
    }
}
