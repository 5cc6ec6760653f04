//! A throwaway demonstration PKI: one CA per country, a node certificate and one certificate
//! per role, and ready configurations. Never for production: the CA keys sit beside the
//! certificates they sign.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::domain::model::{CountryCode, Identity, Role};

/// Why certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} already exists; choose an empty directory")]
    Exists(PathBuf),
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// The file, beside a CA's `ca.pem`, that holds its revocation list.
pub const CRL_FILE: &str = "crl.pem";

/// Adds the certificate in `certificate` (PEM) to the revocation list of the demo CA in
/// `ca_dir` (its `ca.pem` and `ca.key`), revoked as of `at`, and writes the list, signed by
/// the CA, to `ca_dir/crl.pem`. Certificates already on the list keep their time. Returns the
/// number of certificates on the list.
pub fn revoke(ca_dir: &Path, certificate: &Path, at: OffsetDateTime) -> Result<usize, CertsError> {
    use x509_parser::prelude::FromDer;
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| CertsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let invalid = |path: &Path, reason: String| CertsError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let authority = Authority::load(
        &read(&ca_dir.join("ca.pem"))?,
        &read(&ca_dir.join("ca.key"))?,
    )?;
    let pem = read(certificate)?;
    let der = rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .ok_or_else(|| invalid(certificate, "holds no PEM certificate".into()))?
        .map_err(|e| invalid(certificate, e.to_string()))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| invalid(certificate, e.to_string()))?;
    let serial = parsed.raw_serial().to_vec();
    let list_path = ca_dir.join(CRL_FILE);
    let mut revoked: Vec<(Vec<u8>, OffsetDateTime)> = Vec::new();
    let mut number: u64 = 0;
    if list_path.exists() {
        let text = read(&list_path)?;
        let list = rustls_pemfile::crls(&mut text.as_bytes())
            .next()
            .ok_or_else(|| invalid(&list_path, "holds no revocation list".into()))?
            .map_err(|e| invalid(&list_path, e.to_string()))?;
        let (_, crl) =
            x509_parser::revocation_list::CertificateRevocationList::from_der(list.as_ref())
                .map_err(|e| invalid(&list_path, e.to_string()))?;
        number = crl
            .crl_number()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        for entry in crl.iter_revoked_certificates() {
            let when = OffsetDateTime::from_unix_timestamp(entry.revocation_date.timestamp())
                .map_err(|e| invalid(&list_path, e.to_string()))?;
            revoked.push((entry.raw_serial().to_vec(), when));
        }
    }
    if !revoked.iter().any(|(s, _)| *s == serial) {
        revoked.push((serial, at));
    }
    let now = OffsetDateTime::now_utc();
    let params = rcgen::CertificateRevocationListParams {
        this_update: now,
        next_update: now + Duration::days(30),
        crl_number: rcgen::SerialNumber::from(number + 1),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|(serial, when)| rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from_slice(serial),
                revocation_time: *when,
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(&authority.issuer)?;
    std::fs::write(&list_path, crl.pem()?).map_err(|source| CertsError::Write {
        path: list_path.clone(),
        source,
    })?;
    Ok(revoked.len())
}

/// A certificate and its key, PEM.
#[derive(Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// The private key; printed as MASKED.
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"MASKED")
            .finish()
    }
}

/// A country's certificate authority.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate and key.
    pub issued: Issued,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authority { .. }")
    }
}

/// The DNS name a country's node certificate carries in the demo PKI.
pub fn node_dns_name(country: CountryCode) -> String {
    format!(
        "{}.focalpoint.example",
        country.as_str().to_ascii_lowercase()
    )
}

impl Authority {
    /// A new self-signed CA for `country`, valid from `not_before` to `not_after`.
    pub fn new(
        country: CountryCode,
        common_name: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Self, CertsError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(country, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let issued = Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        Ok(Self {
            issuer: Issuer::new(params, key),
            issued,
        })
    }

    /// An existing CA from its PEM certificate and key.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self, CertsError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self {
            issuer,
            issued: Issued {
                cert_pem: cert_pem.to_owned(),
                key_pem: key_pem.to_owned(),
            },
        })
    }

    /// A certificate for `identity`, valid from `not_before` to `not_after`. Nodes get both
    /// server and client authentication and the DNS names given; users get client only.
    pub fn issue(
        &self,
        identity: &Identity,
        dns_names: &[String],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Issued, CertsError> {
        let mut params = CertificateParams::new(dns_names.to_vec())?;
        let common_name = if identity.name.is_empty() {
            format!("focalpoint node {}", identity.country)
        } else {
            format!("{} ({})", identity.name, identity.role)
        };
        params.distinguished_name = name(identity.country, &common_name);
        params
            .subject_alt_names
            .push(SanType::URI(identity.uri().try_into()?));
        if identity.role == Role::Node {
            params
                .subject_alt_names
                .push(SanType::IpAddress([127, 0, 0, 1].into()));
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
        } else {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn name(country: CountryCode, common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::OrganizationName,
        format!("focalpoint demo {country}"),
    );
    dn.push(DnType::CommonName, common_name);
    dn
}

/// The user certificates every country gets, with their names.
pub const USERS: [(Role, &str); 4] = [
    (Role::Operator, "duty-officer"),
    (Role::Auditor, "inspectorate"),
    (Role::Sync, "nightly-sync"),
    (Role::Screening, "border-gate"),
];

/// Loopback ports of the `index`th country of the demo: (peer, operator). The first two are
/// IDN's and KHM's of the example PKI (7443, 7543); each further country takes the next
/// hundred, and its metrics the port after its operator listener.
fn ports(index: usize) -> (u16, u16) {
    let base = 7443 + 100 * u16::try_from(index).unwrap_or(0);
    (base, base + 1)
}

/// The most countries one demo PKI holds: ASEAN's ten, with room to spare.
pub const MAX_COUNTRIES: usize = 20;

/// Writes a demo PKI for `countries` under `out`, one directory each (`out/idn/`, ...): each
/// country's CA, node and user certificates, and a node configuration with every other country
/// as a peer. Nothing is written when any directory exists already.
pub fn init(out: &Path, countries: &[CountryCode], years: i64) -> Result<(), CertsError> {
    let distinct: std::collections::BTreeSet<_> = countries.iter().collect();
    if countries.len() < 2 || countries.len() > MAX_COUNTRIES || distinct.len() != countries.len() {
        return Err(CertsError::Invalid {
            path: out.to_owned(),
            reason: format!("--countries: name from 2 to {MAX_COUNTRIES} different countries"),
        });
    }
    let dirs: Vec<PathBuf> = countries
        .iter()
        .map(|c| out.join(c.as_str().to_ascii_lowercase()))
        .collect();
    if let Some(dir) = dirs.iter().find(|d| d.exists()) {
        return Err(CertsError::Exists(dir.clone()));
    }
    let now = OffsetDateTime::now_utc();
    let not_before = now - Duration::days(1);
    let not_after = now + Duration::days(365 * years);
    let authorities = countries
        .iter()
        .map(|c| {
            Authority::new(
                *c,
                &format!("focalpoint demo CA {c} (never use in production)"),
                not_before,
                not_after,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (i, country) in countries.iter().enumerate() {
        let dir = &dirs[i];
        let authority = &authorities[i];
        let write = |file: &str, text: &str| {
            let path = dir.join(file);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|source| CertsError::Write {
                    path: parent.to_owned(),
                    source,
                })?;
            }
            std::fs::write(&path, text).map_err(|source| CertsError::Write { path, source })
        };
        write("ca.pem", &authority.issued.cert_pem)?;
        write("ca.key", &authority.issued.key_pem)?;
        let node = authority.issue(
            &Identity {
                country: *country,
                role: Role::Node,
                name: String::new(),
            },
            &[node_dns_name(*country), "localhost".into()],
            not_before,
            not_after,
        )?;
        write("node.pem", &node.cert_pem)?;
        write("node.key", &node.key_pem)?;
        let mut peers = String::new();
        for (j, peer) in countries.iter().enumerate() {
            if j == i {
                continue;
            }
            let peer_ca = format!("peers/{}-ca.pem", peer.as_str().to_ascii_lowercase());
            write(&peer_ca, &authorities[j].issued.cert_pem)?;
            let (their_peer_port, _) = ports(j);
            peers.push_str(&format!(
                "\n[[peers]]\n\
                 country = \"{peer}\"\n\
                 address = \"https://127.0.0.1:{their_peer_port}\"\n\
                 server_name = \"{}\"\n\
                 ca = \"{peer_ca}\"\n\
                 # What may flow with {peer}, each way; left out, every kind and category may.\n\
                 # [peers.agreement]\n\
                 # send = [\"alert\", \"fraud\", \"stats\", \"response\"]\n\
                 # accept = [\"alert\", \"fraud\", \"stats\", \"response\"]\n\
                 # send_alert_categories = [\"suspected_trafficking_victim\"]\n\
                 # accept_alert_categories = [\"suspected_trafficking_victim\"]\n",
                node_dns_name(*peer)
            ));
        }
        let (peer_port, operator_port) = ports(i);
        let metrics_port = operator_port + 1;
        write(
            "node.toml",
            &format!(
                "# focalpoint node of {country}: demo configuration, never for production.\n\
                 country = \"{country}\"\n\
                 # Relative paths are relative to this file. `serve --data-dir` overrides.\n\
                 data_dir = \"data\"\n\
                 # fsync: an acknowledged message survives a power cut. flush: a killed process only.\n\
                 durability = \"fsync\"\n\
                 # Cosigned checkpoints with each peer, in seconds; 0 turns them off.\n\
                 checkpoint_interval_secs = 3600\n\n\
                 [retention]\n\
                 # Message content is removed this many days after it was logged; the entry, its\n\
                 # digest and the receipts stay and still verify. Leave a kind out to keep it.\n\
                 policy = \"{country}-FP-1\"\n\
                 alert_days = 730\n\
                 fraud_notice_days = 1825\n\
                 case_response_days = 730\n\n\
                 # Encryption of message content at rest: `focalpoint log-key --out log.key`.\n\
                 # [encryption]\n\
                 # key_file = \"log.key\"\n\n\
                 [log]\n\
                 # human or json; the filter as for tracing. FOCALPOINT_LOG_FORMAT and FOCALPOINT_LOG override.\n\
                 format = \"human\"\n\
                 filter = \"info\"\n\n\
                 [metrics]\n\
                 # Prometheus text at /metrics; keep it on loopback or a management network.\n\
                 address = \"127.0.0.1:{metrics_port}\"\n\n\
                 [node]\n\
                 certificate = \"node.pem\"\n\
                 key = \"node.key\"\n\n\
                 [peer_listener]\n\
                 address = \"127.0.0.1:{peer_port}\"\n\n\
                 [operator_listener]\n\
                 address = \"127.0.0.1:{operator_port}\"\n\
                 ca = \"ca.pem\"\n\
                 {peers}"
            ),
        )?;
        for (role, user) in USERS {
            let issued = authority.issue(
                &Identity {
                    country: *country,
                    role,
                    name: user.into(),
                },
                &[],
                not_before,
                not_after,
            )?;
            write(&format!("{role}.pem"), &issued.cert_pem)?;
            write(&format!("{role}.key"), &issued.key_pem)?;
            write(
                &format!("{role}.toml"),
                &format!(
                    "# {role} client of the {country} node: demo configuration.\n\
                     node = \"https://127.0.0.1:{operator_port}\"\n\
                     server_name = \"{}\"\n\
                     ca = \"ca.pem\"\n\
                     certificate = \"{role}.pem\"\n\
                     key = \"{role}.key\"\n",
                    node_dns_name(*country)
                ),
            )?;
        }
    }
    std::fs::write(
        out.join("README.md"),
        "# Demonstration PKI: never use in production\n\n\
         Made by `focalpoint certs init`. The CA keys (`ca.key`) sit beside the certificates \
         they signed and are public in this repository: anyone can issue certificates these \
         CAs vouch for. Use it for the demo, the tests and trying the CLI on loopback only.\n\n\
         Each country directory holds its CA (`ca.pem`), the node's certificate and key, one \
         certificate per role (operator, auditor, sync, screening), every other country's CA under `peers/`, \
         the node configuration `node.toml` and one client configuration per role.\n",
    )
    .map_err(|source| CertsError::Write {
        path: out.join("README.md"),
        source,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::x509::{identity_of, load_certs};
    use crate::node::config::{ClientConfig, NodeConfig};

    #[test]
    fn init_writes_a_pki_whose_configs_and_identities_hold_together() {
        let dir = tempfile::tempdir().unwrap();
        let countries = ["IDN".parse().unwrap(), "KHM".parse().unwrap()];
        init(dir.path(), &countries, 1).unwrap();
        for (country, name) in [(countries[0], "idn"), (countries[1], "khm")] {
            let base = dir.path().join(name);
            let node = NodeConfig::load(&base.join("node.toml")).unwrap();
            assert_eq!(node.country, country);
            let cert = load_certs(&node.node.certificate).unwrap();
            let identity = identity_of(&cert[0]).unwrap();
            assert_eq!((identity.country, identity.role), (country, Role::Node));
            for (role, user) in USERS {
                let client = ClientConfig::load(&base.join(format!("{role}.toml"))).unwrap();
                let cert = load_certs(&client.certificate).unwrap();
                let identity = identity_of(&cert[0]).unwrap();
                assert_eq!(identity.role, role);
                assert_eq!(identity.name, user);
            }
        }
        // A second run into the same place refuses rather than overwrite keys.
        assert!(matches!(
            init(dir.path(), &countries, 1),
            Err(CertsError::Exists(_))
        ));
    }

    #[test]
    fn init_for_three_countries_makes_each_a_peer_of_the_others_on_ports_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let countries: Vec<CountryCode> = ["IDN", "KHM", "THA"]
            .iter()
            .map(|c| c.parse().unwrap())
            .collect();
        init(dir.path(), &countries, 1).unwrap();
        let mut ports = std::collections::BTreeSet::new();
        for country in &countries {
            let base = dir.path().join(country.as_str().to_ascii_lowercase());
            let node = NodeConfig::load(&base.join("node.toml")).unwrap();
            assert_eq!(node.country, *country);
            let peers: Vec<CountryCode> = node.peers.iter().map(|p| p.country).collect();
            let others: Vec<CountryCode> =
                countries.iter().copied().filter(|c| c != country).collect();
            assert_eq!(peers, others);
            for address in [
                node.peer_listener.address,
                node.operator_listener.address,
                node.metrics.address,
            ] {
                assert!(ports.insert(address.port()), "{address} is used twice");
            }
            // Each peer's CA is the one that issued that peer's node certificate.
            for peer in &node.peers {
                let theirs = dir
                    .path()
                    .join(peer.country.as_str().to_ascii_lowercase())
                    .join("ca.pem");
                assert_eq!(
                    std::fs::read(&peer.ca).unwrap(),
                    std::fs::read(theirs).unwrap()
                );
                let their_config = NodeConfig::load(
                    &dir.path()
                        .join(peer.country.as_str().to_ascii_lowercase())
                        .join("node.toml"),
                )
                .unwrap();
                assert_eq!(
                    peer.address,
                    format!("https://{}", their_config.peer_listener.address)
                );
            }
            for (role, _) in USERS {
                ClientConfig::load(&base.join(format!("{role}.toml"))).unwrap();
            }
        }
        // The same country twice, or one alone, is refused, and nothing is written.
        let other = tempfile::tempdir().unwrap();
        for bad in [vec![countries[0]], vec![countries[0], countries[0]]] {
            assert!(matches!(
                init(other.path(), &bad, 1),
                Err(CertsError::Invalid { .. })
            ));
        }
        assert_eq!(std::fs::read_dir(other.path()).unwrap().count(), 0);
    }
}
