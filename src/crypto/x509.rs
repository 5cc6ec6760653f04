//! X.509 material: reading PEM certificates and keys, and the focalpoint identity a
//! certificate names in its one URI subject alternative name, `urn:focalpoint:COUNTRY:ROLE[:NAME]`.

use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::domain::model::Identity;

/// Why certificates, keys or identities could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key")]
    NoKey { path: PathBuf },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("certificate is not valid X.509: {0}")]
    Parse(String),
    #[error("certificate names no focalpoint identity (a URI SAN urn:focalpoint:COUNTRY:ROLE)")]
    NoIdentity,
    #[error("certificate names more than one focalpoint identity")]
    SeveralIdentities,
    #[error("certificate identity: {0}")]
    BadIdentity(#[from] crate::domain::model::ParseError),
    #[error("tls configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Revocation(#[from] crate::crypto::revocation::RevocationError),
}

/// Reads every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Reads the private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| TlsError::Invalid {
            path: path.to_owned(),
            reason: e.to_string(),
        })?
        .ok_or_else(|| TlsError::NoKey {
            path: path.to_owned(),
        })
}

/// The bytes of a certificate or key file.
pub fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The focalpoint identity a certificate names.
pub fn identity_of(cert: &CertificateDer<'_>) -> Result<Identity, TlsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| TlsError::Parse(e.to_string()))?;
    let san = parsed
        .subject_alternative_name()
        .map_err(|e| TlsError::Parse(e.to_string()))?;
    let mut found = None;
    for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
        if let x509_parser::extensions::GeneralName::URI(uri) = name
            && Identity::is_focalpoint_uri(uri)
        {
            if found.is_some() {
                return Err(TlsError::SeveralIdentities);
            }
            found = Some(uri.parse::<Identity>()?);
        }
    }
    found.ok_or(TlsError::NoIdentity)
}

/// A certificate's validity period as Unix seconds (not before, not after).
pub fn validity_of(cert: &CertificateDer<'_>) -> Result<(i64, i64), TlsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| TlsError::Parse(e.to_string()))?;
    let v = parsed.validity();
    Ok((v.not_before.timestamp(), v.not_after.timestamp()))
}
