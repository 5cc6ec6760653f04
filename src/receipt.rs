//! Signed receipts: what a receiving node stored, signed with its node key, so that anyone
//! holding the receiver's CA certificate can check it offline.
//!
//! The signature covers `focalpoint-receipt-v1 || 0x00 || receipt bytes`; the domain prefix
//! keeps a receipt signature from ever being valid as anything else.

use std::sync::Arc;

use prost::Message;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::sign::SigningKey;

use crate::model::{CountryCode, Role, parse_instant};
use crate::pb;
use crate::tls::identity_of;

const DOMAIN: &[u8] = b"focalpoint-receipt-v1\0";

/// Why a receipt is not good.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReceiptError {
    #[error("receipt cannot be decoded: {0}")]
    Decode(String),
    #[error("signer certificate: {0}")]
    Certificate(String),
    #[error("signer certificate names {found}, expected the node of {expected}")]
    WrongSigner { found: String, expected: String },
    #[error("signature scheme {0:?} is not supported")]
    Scheme(String),
    #[error("signature does not verify")]
    Signature,
    #[error("receipt says {field} is {found}, expected {expected}")]
    Mismatch {
        field: &'static str,
        found: String,
        expected: String,
    },
    #[error("signing failed: {0}")]
    Signing(String),
}

/// Signs receipts with the node's TLS key.
pub struct ReceiptSigner {
    key: Arc<dyn SigningKey>,
    certificate: Vec<u8>,
}

impl std::fmt::Debug for ReceiptSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReceiptSigner { key: MASKED }")
    }
}

impl ReceiptSigner {
    /// A signer from the node's certificate and key.
    pub fn new(
        certificate: &CertificateDer<'_>,
        key: &PrivateKeyDer<'_>,
    ) -> Result<Self, ReceiptError> {
        let key = rustls::crypto::ring::sign::any_supported_type(key)
            .map_err(|e| ReceiptError::Signing(e.to_string()))?;
        Ok(Self {
            key,
            certificate: certificate.as_ref().to_vec(),
        })
    }

    /// Signs `receipt`.
    pub fn sign(&self, receipt: &pb::Receipt) -> Result<pb::SignedReceipt, ReceiptError> {
        let bytes = receipt.encode_to_vec();
        let (signature_scheme, signature) = self.sign_raw(DOMAIN, &bytes)?;
        Ok(pb::SignedReceipt {
            receipt: bytes,
            signature_scheme,
            signature,
            signer_certificate: self.certificate.clone(),
        })
    }

    /// Signs `body` (an encoded checkpoint or cosignature) under `domain`.
    pub fn sign_body(&self, domain: &[u8], body: Vec<u8>) -> Result<pb::Signed, ReceiptError> {
        let (signature_scheme, signature) = self.sign_raw(domain, &body)?;
        Ok(pb::Signed {
            body,
            signature_scheme,
            signature,
            signer_certificate: self.certificate.clone(),
        })
    }

    fn sign_raw(&self, domain: &[u8], bytes: &[u8]) -> Result<(String, Vec<u8>), ReceiptError> {
        let schemes = [
            rustls::SignatureScheme::ED25519,
            rustls::SignatureScheme::ECDSA_NISTP256_SHA256,
            rustls::SignatureScheme::ECDSA_NISTP384_SHA384,
            rustls::SignatureScheme::RSA_PSS_SHA256,
        ];
        let signer = self
            .key
            .choose_scheme(&schemes)
            .ok_or_else(|| ReceiptError::Signing("key type has no supported scheme".into()))?;
        let signature = signer
            .sign(&[domain, bytes].concat())
            .map_err(|e| ReceiptError::Signing(e.to_string()))?;
        Ok((format!("{:?}", signer.scheme()), signature))
    }
}

/// Checks a signed receipt: the signer certificate chains to one of `anchors` (the receiving
/// country's CA) at the time the receipt says it was stored, names the node of `receiver`,
/// and its key made the signature. Returns the receipt.
pub fn verify(
    signed: &pb::SignedReceipt,
    anchors: &[CertificateDer<'_>],
    receiver: CountryCode,
) -> Result<pb::Receipt, ReceiptError> {
    let receipt = pb::Receipt::decode(signed.receipt.as_slice())
        .map_err(|e| ReceiptError::Decode(e.to_string()))?;
    let stored_at = parse_instant(&receipt.stored_at)
        .map_err(|e| ReceiptError::Decode(format!("stored_at: {e}")))?;
    check_signature(
        DOMAIN,
        &signed.receipt,
        &signed.signature_scheme,
        &signed.signature,
        &signed.signer_certificate,
        anchors,
        receiver,
        stored_at,
    )?;
    if receipt.receiver != receiver.as_str() {
        return Err(ReceiptError::Mismatch {
            field: "receiver",
            found: receipt.receiver.clone(),
            expected: receiver.to_string(),
        });
    }
    Ok(receipt)
}

/// Domain of checkpoint signatures.
pub const CHECKPOINT_DOMAIN: &[u8] = b"focalpoint-checkpoint-v1\0";
/// Domain of cosignatures.
pub const COSIGNATURE_DOMAIN: &[u8] = b"focalpoint-cosignature-v1\0";

/// Checks a signed body: made under `domain` by the node of `signer`, whose certificate chains
/// to one of `anchors` at time `at`.
pub fn verify_signed(
    domain: &[u8],
    signed: &pb::Signed,
    anchors: &[CertificateDer<'_>],
    signer: CountryCode,
    at: time::OffsetDateTime,
) -> Result<(), ReceiptError> {
    check_signature(
        domain,
        &signed.body,
        &signed.signature_scheme,
        &signed.signature,
        &signed.signer_certificate,
        anchors,
        signer,
        at,
    )
}

/// A signer certificate found to chain to its trust anchors, and the period (Unix seconds) in
/// which that holds: the intersection of the certificate's and every anchor's validity.
#[derive(Debug, Clone)]
struct Chained {
    key: crate::model::Digest,
    identity: crate::model::Identity,
    from: i64,
    until: i64,
}

/// Certificates already validated. A node signs every receipt with the same certificate, so
/// validating its chain once per certificate and anchors, instead of once per receipt, leaves
/// only the receipt's own signature to check. Small and bounded: cleared when full.
static CHAINED: std::sync::Mutex<Vec<Chained>> = std::sync::Mutex::new(Vec::new());
const CHAINED_MAX: usize = 32;

fn chain_key(certificate: &[u8], anchors: &[CertificateDer<'_>]) -> crate::model::Digest {
    let mut parts: Vec<&[u8]> = Vec::with_capacity(anchors.len() + 1);
    parts.push(certificate);
    parts.extend(anchors.iter().map(|a| a.as_ref()));
    crate::model::Digest::of_parts(&parts)
}

fn chained(key: &crate::model::Digest, at: i64) -> Option<crate::model::Identity> {
    CHAINED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .find(|c| c.key == *key && (c.from..=c.until).contains(&at))
        .map(|c| c.identity.clone())
}

fn remember(
    key: crate::model::Digest,
    identity: crate::model::Identity,
    cert: &CertificateDer<'_>,
    anchors: &[CertificateDer<'_>],
) {
    let mut from = i64::MIN;
    let mut until = i64::MAX;
    for c in std::iter::once(cert).chain(anchors) {
        match crate::tls::validity_of(c) {
            Ok((a, b)) => {
                from = from.max(a);
                until = until.min(b);
            }
            Err(_) => return,
        }
    }
    let mut cache = CHAINED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if cache.len() >= CHAINED_MAX {
        cache.clear();
    }
    cache.push(Chained {
        key,
        identity,
        from,
        until,
    });
}

#[allow(clippy::too_many_arguments)]
fn check_signature(
    domain: &[u8],
    body: &[u8],
    scheme: &str,
    signature: &[u8],
    certificate: &[u8],
    anchors: &[CertificateDer<'_>],
    signer: CountryCode,
    at: time::OffsetDateTime,
) -> Result<(), ReceiptError> {
    let cert = CertificateDer::from(certificate);
    let key = chain_key(certificate, anchors);
    let known = chained(&key, at.unix_timestamp());
    let identity = match &known {
        Some(identity) => identity.clone(),
        None => identity_of(&cert).map_err(|e| ReceiptError::Certificate(e.to_string()))?,
    };
    if identity.role != Role::Node || identity.country != signer {
        return Err(ReceiptError::WrongSigner {
            found: identity.to_string(),
            expected: signer.to_string(),
        });
    }
    let end_entity = webpki::EndEntityCert::try_from(&cert)
        .map_err(|e| ReceiptError::Certificate(e.to_string()))?;
    let provider = rustls::crypto::ring::default_provider();
    let algorithms = provider.signature_verification_algorithms;
    if known.is_none() {
        let trust_anchors = anchors
            .iter()
            .map(|a| webpki::anchor_from_trusted_cert(a).map(|t| t.to_owned()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ReceiptError::Certificate(format!("trust anchor: {e}")))?;
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(at.unix_timestamp()).unwrap_or(0),
        ));
        end_entity
            .verify_for_usage(
                algorithms.all,
                &trust_anchors,
                &[],
                at,
                webpki::KeyUsage::client_auth(),
                None,
                None,
            )
            .map_err(|e| ReceiptError::Certificate(format!("does not chain to the CA: {e}")))?;
        remember(key, identity, &cert, anchors);
    }
    let (_, candidates) = algorithms
        .mapping
        .iter()
        .find(|(s, _)| format!("{s:?}") == scheme)
        .ok_or_else(|| ReceiptError::Scheme(scheme.to_owned()))?;
    let message = [domain, body].concat();
    if candidates.iter().any(|alg| {
        end_entity
            .verify_signature(*alg, &message, signature)
            .is_ok()
    }) {
        Ok(())
    } else {
        Err(ReceiptError::Signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{load_certs, load_key};
    use std::path::Path;

    fn example(country: &str, file: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("certs-example")
            .join(country)
            .join(file)
    }

    fn signed() -> pb::SignedReceipt {
        let cert = load_certs(&example("khm", "node.pem")).unwrap();
        let key = load_key(&example("khm", "node.key")).unwrap();
        let signer = ReceiptSigner::new(&cert[0], &key).unwrap();
        signer
            .sign(&pb::Receipt {
                message_id: "IDN-1".into(),
                envelope_sha256: vec![7; 32],
                sender: "IDN".into(),
                receiver: "KHM".into(),
                log_sequence: 42,
                entry_hash: vec![9; 32],
                stored_at: crate::model::format_instant(time::OffsetDateTime::now_utc()),
            })
            .unwrap()
    }

    fn khm() -> CountryCode {
        "KHM".parse().unwrap()
    }

    #[test]
    fn a_receipt_verifies_offline_with_the_receivers_ca_alone() {
        let anchors = load_certs(&example("khm", "ca.pem")).unwrap();
        let receipt = verify(&signed(), &anchors, khm()).unwrap();
        assert_eq!(receipt.log_sequence, 42);
    }

    #[test]
    fn forged_or_misattributed_receipts_are_refused() {
        let khm_ca = load_certs(&example("khm", "ca.pem")).unwrap();
        let idn_ca = load_certs(&example("idn", "ca.pem")).unwrap();

        let mut forged = signed();
        let mut receipt = pb::Receipt::decode(forged.receipt.as_slice()).unwrap();
        receipt.log_sequence = 43;
        forged.receipt = receipt.encode_to_vec();
        assert_eq!(
            verify(&forged, &khm_ca, khm()),
            Err(ReceiptError::Signature)
        );

        let mut flipped = signed();
        let last = flipped.signature.len() - 1;
        flipped.signature[last] ^= 1;
        assert_eq!(
            verify(&flipped, &khm_ca, khm()),
            Err(ReceiptError::Signature)
        );

        assert!(matches!(
            verify(&signed(), &idn_ca, khm()),
            Err(ReceiptError::Certificate(_))
        ));
        assert!(matches!(
            verify(&signed(), &khm_ca, "IDN".parse().unwrap()),
            Err(ReceiptError::WrongSigner { .. })
        ));
        let mut unknown = signed();
        unknown.signature_scheme = "ROT13".into();
        assert!(matches!(
            verify(&unknown, &khm_ca, khm()),
            Err(ReceiptError::Scheme(_))
        ));
    }
}
