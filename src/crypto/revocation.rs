//! Certificate revocation: the lists each country's CA publishes (X.509 CRLs, PEM).
//!
//! Trust model. A list counts only if the CA it belongs to signed it. A revoked certificate
//! is refused in the TLS handshake from the moment its list is loaded (rustls checks the
//! lists itself). Signatures are held to the time of revocation: a receipt or checkpoint
//! signed before its signer's certificate was revoked still verifies, one signed at or after
//! it does not, in the audit and when a receipt arrives.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use x509_parser::prelude::FromDer;

/// Why a revocation list cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate revocation list")]
    Empty { path: PathBuf },
    #[error("{path} holds a malformed PEM block")]
    Pem {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Invalid {
        path: PathBuf,
        #[source]
        problem: ListProblem,
    },
}

/// Why a revocation list, already read, is not one this CA published.
#[derive(Debug, thiserror::Error)]
pub enum ListProblem {
    #[error("the CA certificate is not valid X.509: {0}")]
    CaCertificate(#[source] x509_parser::nom::Err<x509_parser::error::X509Error>),
    #[error("not a certificate revocation list: {0}")]
    NotAList(#[source] x509_parser::nom::Err<x509_parser::error::X509Error>),
    #[error("the list is not signed by the configured CA")]
    NotSignedByCa,
}

/// A signature made by a certificate at or after its revocation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signed at {signed_at} by a certificate revoked at {revoked_at}")]
pub struct Revoked {
    /// When the signature counts as made (RFC 3339).
    pub signed_at: String,
    /// When the certificate was revoked (RFC 3339).
    pub revoked_at: String,
}

/// The revocation lists of one CA, checked against it: which certificate was revoked when.
#[derive(Debug, Clone, Default)]
pub struct Revocations {
    /// The lists as read, for the TLS verifier.
    lists: Vec<CertificateRevocationListDer<'static>>,
    /// Serial number (big-endian bytes) to the revocation time, Unix seconds.
    revoked: BTreeMap<Vec<u8>, i64>,
}

impl Revocations {
    /// None revoked.
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads the lists in the PEM file `path`; each must be signed by one of `ca`.
    pub fn load(path: &Path, ca: &[CertificateDer<'_>]) -> Result<Self, RevocationError> {
        let pem = std::fs::read(path).map_err(|source| RevocationError::Read {
            path: path.to_owned(),
            source,
        })?;
        let lists = rustls_pemfile::crls(&mut pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| RevocationError::Pem {
                path: path.to_owned(),
                source,
            })?;
        if lists.is_empty() {
            return Err(RevocationError::Empty {
                path: path.to_owned(),
            });
        }
        Self::from_lists(lists, ca).map_err(|problem| RevocationError::Invalid {
            path: path.to_owned(),
            problem,
        })
    }

    /// Lists already read (DER), each checked against `ca`.
    pub fn from_lists(
        lists: Vec<CertificateRevocationListDer<'static>>,
        ca: &[CertificateDer<'_>],
    ) -> Result<Self, ListProblem> {
        let cas = ca
            .iter()
            .map(|c| {
                x509_parser::parse_x509_certificate(c.as_ref())
                    .map(|(_, parsed)| parsed)
                    .map_err(ListProblem::CaCertificate)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut revoked = BTreeMap::new();
        for list in &lists {
            let (_, crl) =
                x509_parser::revocation_list::CertificateRevocationList::from_der(list.as_ref())
                    .map_err(ListProblem::NotAList)?;
            let signed_by_ca = cas.iter().any(|ca| {
                ca.subject() == crl.issuer() && crl.verify_signature(ca.public_key()).is_ok()
            });
            if !signed_by_ca {
                return Err(ListProblem::NotSignedByCa);
            }
            for entry in crl.iter_revoked_certificates() {
                let at = entry.revocation_date.timestamp();
                revoked
                    .entry(entry.raw_serial().to_vec())
                    .and_modify(|t: &mut i64| *t = (*t).min(at))
                    .or_insert(at);
            }
        }
        Ok(Self { lists, revoked })
    }

    /// How many certificates are revoked.
    pub fn count(&self) -> usize {
        self.revoked.len()
    }

    /// The lists, for rustls.
    pub fn lists(&self) -> &[CertificateRevocationListDer<'static>] {
        &self.lists
    }

    /// When `certificate` was revoked (Unix seconds), if it was.
    pub fn revoked_at(&self, certificate: &[u8]) -> Option<i64> {
        if self.revoked.is_empty() {
            return None;
        }
        let (_, parsed) = x509_parser::parse_x509_certificate(certificate).ok()?;
        self.revoked.get(parsed.raw_serial()).copied()
    }

    /// Whether a signature made at `signed_at` by `certificate` stands: it must come before the
    /// certificate's revocation, if any.
    pub fn check(
        &self,
        certificate: &[u8],
        signed_at: time::OffsetDateTime,
    ) -> Result<(), Revoked> {
        match self.revoked_at(certificate) {
            Some(at) if signed_at.unix_timestamp() >= at => Err(Revoked {
                signed_at: crate::domain::model::format_instant(signed_at),
                revoked_at: time::OffsetDateTime::from_unix_timestamp(at)
                    .map(crate::domain::model::format_instant)
                    .unwrap_or_else(|_| at.to_string()),
            }),
            _ => Ok(()),
        }
    }
}

/// The revocation list at `path`, if one is configured, checked against `ca`.
pub fn load_optional(
    path: Option<&Path>,
    ca: &[CertificateDer<'_>],
) -> Result<Revocations, RevocationError> {
    path.map_or_else(|| Ok(Revocations::none()), |p| Revocations::load(p, ca))
}
