//! Signed receipts: what a receiving node stored, signed with its node key, so that anyone
//! holding the receiver's CA certificate can check it offline.
//!
//! A receipt is signed in one of two ways; the domain prefix keeps a receipt signature from ever
//! being valid as anything else:
//! - alone: the signature covers `focalpoint-receipt-v1 || 0x00 || receipt bytes`;
//! - in a batch: the receipts issued in one durable write of the log are the leaves of an
//!   RFC 9162 Merkle tree, one signature covers `focalpoint-receipt-batch-v1 || 0x00 ||
//!   size || root`, and each receipt carries its inclusion path. Each receipt still checks on its
//!   own, offline, and a node signs once per write instead of once per message.

use std::sync::Arc;

use prost::Message;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::sign::SigningKey;

use crate::crypto::merkle;
use crate::crypto::x509::identity_of;
use crate::domain::model::{CountryCode, Digest, Role, parse_instant};
use crate::pb;

const DOMAIN: &[u8] = b"focalpoint-receipt-v1\0";
const BATCH_DOMAIN: &[u8] = b"focalpoint-receipt-batch-v1\0";
/// More leaves than any write of the log can hold; a longer path is refused before hashing.
const MAX_PATH: usize = 48;

/// The Merkle leaf of an encoded receipt: SHA-256(0x00 || receipt).
pub fn leaf_hash(receipt: &[u8]) -> Digest {
    Digest::of_parts(&[&[0], receipt])
}

/// What a batch signature covers after its domain: the batch's size and root.
fn batch_body(size: u64, root: &Digest) -> [u8; 40] {
    let mut body = [0; 40];
    body[..8].copy_from_slice(&size.to_be_bytes());
    body[8..].copy_from_slice(&root.0);
    body
}

/// Why a receipt is not good.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReceiptError {
    #[error("receipt cannot be decoded: {0}")]
    Decode(String),
    #[error("signer certificate: {0}")]
    Certificate(String),
    #[error("signer certificate: {0}")]
    Revoked(#[from] crate::crypto::revocation::Revoked),
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

/// The signature schemes receipts, checkpoints and cosignatures may carry, by the names the
/// contract gives them (`SignedReceipt.signature_scheme`, `Signed.signature_scheme`). The names
/// are the contract's own, fixed here: they never follow another crate's `Debug` output.
pub const SCHEMES: [(&str, rustls::SignatureScheme); 4] = [
    ("ED25519", rustls::SignatureScheme::ED25519),
    (
        "ECDSA_NISTP256_SHA256",
        rustls::SignatureScheme::ECDSA_NISTP256_SHA256,
    ),
    (
        "ECDSA_NISTP384_SHA384",
        rustls::SignatureScheme::ECDSA_NISTP384_SHA384,
    ),
    ("RSA_PSS_SHA256", rustls::SignatureScheme::RSA_PSS_SHA256),
];

/// The contract's name of `scheme`, if receipts may use it.
fn scheme_name(scheme: rustls::SignatureScheme) -> Option<&'static str> {
    SCHEMES.iter().find(|(_, s)| *s == scheme).map(|(n, _)| *n)
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
            batch: None,
        })
    }

    /// Signs a batch of receipts, given their leaves ([`leaf_hash`]), with one signature over
    /// their Merkle tree; the tree gives each receipt its path.
    pub fn sign_batch(&self, leaves: Vec<Digest>) -> Result<SignedBatch, ReceiptError> {
        let tree = merkle::Tree::new(leaves);
        let body = batch_body(tree.size() as u64, &tree.root());
        let (signature_scheme, signature) = self.sign_raw(BATCH_DOMAIN, &body)?;
        Ok(SignedBatch {
            signature_scheme,
            signature,
            tree,
        })
    }

    /// The signing node's certificate (DER).
    pub fn certificate(&self) -> &[u8] {
        &self.certificate
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
        let schemes = SCHEMES.map(|(_, scheme)| scheme);
        let signer = self
            .key
            .choose_scheme(&schemes)
            .ok_or_else(|| ReceiptError::Signing("key type has no supported scheme".into()))?;
        let name = scheme_name(signer.scheme())
            .ok_or_else(|| ReceiptError::Signing("the chosen scheme has no name".into()))?;
        let signature = signer
            .sign(&[domain, bytes].concat())
            .map_err(|e| ReceiptError::Signing(e.to_string()))?;
        Ok((name.to_owned(), signature))
    }
}

/// One signature over a batch of receipts, and the batch's tree.
#[derive(Debug)]
pub struct SignedBatch {
    pub signature_scheme: String,
    pub signature: Vec<u8>,
    pub tree: merkle::Tree,
}

impl SignedBatch {
    /// The signed receipt at `index` of the batch, with its inclusion path.
    pub fn receipt(&self, index: usize, receipt: Vec<u8>, certificate: &[u8]) -> pb::SignedReceipt {
        pb::SignedReceipt {
            receipt,
            signature_scheme: self.signature_scheme.clone(),
            signature: self.signature.clone(),
            signer_certificate: certificate.to_vec(),
            batch: Some(pb::ReceiptBatchProof {
                index: index as u64,
                size: self.tree.size() as u64,
                path: self
                    .tree
                    .inclusion_proof(index)
                    .into_iter()
                    .map(|d| d.0.to_vec())
                    .collect(),
            }),
        }
    }
}

/// A receipt at its place in a signed batch whose whole tree is at hand, as in the log of the
/// node that issued it.
#[derive(Debug, Clone, Copy)]
pub struct InBatch<'a> {
    /// The canonical encoding of the `Receipt`.
    pub receipt: &'a [u8],
    /// Its leaf hash, [`leaf_hash`] of `receipt`: worked out by [`InBatch::new`], or, within
    /// the crate, once where the receipt was read and compared with the tree.
    pub(crate) leaf: Digest,
    /// Its leaf index in the batch.
    pub index: usize,
    pub batch: &'a SignedBatch,
    /// The signer's certificate (DER).
    pub certificate: &'a [u8],
}

impl<'a> InBatch<'a> {
    /// The receipt `receipt` (its canonical encoding) at `index` in `batch`, signed with the
    /// key of `certificate`.
    pub fn new(
        receipt: &'a [u8],
        index: usize,
        batch: &'a SignedBatch,
        certificate: &'a [u8],
    ) -> Self {
        Self {
            receipt,
            leaf: leaf_hash(receipt),
            index,
            batch,
            certificate,
        }
    }

    /// The receipt as its receiver holds it: signed, with its inclusion path.
    pub fn signed(&self) -> pb::SignedReceipt {
        self.batch
            .receipt(self.index, self.receipt.to_vec(), self.certificate)
    }
}

/// Checks a signed receipt: the signer certificate chains to one of `anchors` (the receiving
/// country's CA) at the time the receipt says it was stored, names the node of `receiver`,
/// and its key made the signature. Returns the receipt. Remembers nothing: a sender or an
/// auditor checking many receipts keeps a [`Verifier`].
pub fn verify(
    signed: &pb::SignedReceipt,
    anchors: &[CertificateDer<'_>],
    receiver: CountryCode,
) -> Result<pb::Receipt, ReceiptError> {
    Verifier::default().verify(signed, anchors, receiver)
}

/// Checks a signed body: made under `domain` by the node of `signer`, whose certificate chains
/// to one of `anchors` at time `at`. Remembers nothing; see [`Verifier`].
pub fn verify_signed(
    domain: &'static [u8],
    signed: &pb::Signed,
    anchors: &[CertificateDer<'_>],
    signer: CountryCode,
    at: time::OffsetDateTime,
) -> Result<(), ReceiptError> {
    Verifier::default().verify_signed(domain, signed, anchors, signer, at)
}

/// Checks receipts, checkpoints and cosignatures, and remembers what it found good: a node
/// signs every receipt with the same certificate, and the receipts of one write share one
/// signature, so a sender or an auditor validates each certificate's chain once and each
/// batch signature once. Owned by whoever checks (a node's exchange, one audit); two nodes
/// in one process never share what they verified. Bounded, and compared byte for byte.
#[derive(Debug, Default)]
pub struct Verifier {
    chained: std::sync::Mutex<Vec<Chained>>,
    verified: std::sync::Mutex<std::collections::VecDeque<Verified>>,
}

impl Verifier {
    /// A verifier that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// [`verify`], remembering what it found good.
    pub fn verify(
        &self,
        signed: &pb::SignedReceipt,
        anchors: &[CertificateDer<'_>],
        receiver: CountryCode,
    ) -> Result<pb::Receipt, ReceiptError> {
        verify_with(self, signed, anchors, receiver)
    }

    /// [`Self::verify`] for a receipt whose batch tree is at hand: the receipt must be the
    /// tree's leaf at its index and the signature must cover the tree's root, which is what
    /// walking its inclusion path to that root proves, without building or walking the path.
    /// Gives the receipt and the time it says it was stored, read once.
    pub fn verify_in_batch(
        &self,
        issued: &InBatch<'_>,
        anchors: &[CertificateDer<'_>],
        receiver: CountryCode,
    ) -> Result<(pb::Receipt, time::OffsetDateTime), ReceiptError> {
        let receipt =
            pb::Receipt::decode(issued.receipt).map_err(|e| ReceiptError::Decode(e.to_string()))?;
        let stored_at = parse_instant(&receipt.stored_at)
            .map_err(|e| ReceiptError::Decode(format!("stored_at: {e}")))?;
        let tree = &issued.batch.tree;
        debug_assert_eq!(
            issued.leaf,
            leaf_hash(issued.receipt),
            "an InBatch whose leaf is not its receipt's"
        );
        if tree.leaf(issued.index) != Some(issued.leaf) {
            return Err(ReceiptError::Decode(format!(
                "batch: the receipt is not leaf {} of its batch of {}",
                issued.index,
                tree.size()
            )));
        }
        check_signature(
            self,
            BATCH_DOMAIN,
            &batch_body(tree.size() as u64, &tree.root()),
            &issued.batch.signature_scheme,
            &issued.batch.signature,
            issued.certificate,
            anchors,
            receiver,
            stored_at,
        )?;
        Ok((received_by(receipt, receiver)?, stored_at))
    }

    /// Checks a batch's signature over its tree with the key of `certificate`, and remembers
    /// it if it is good, so that [`Self::verify_in_batch`] finds the arithmetic done once it
    /// knows the certificate chains. Only the signature: whose certificate it is, and whether
    /// it chains to the CA when a receipt says it was signed, are checked with each receipt, as
    /// before. A signature that does not check out is not remembered, and each receipt of its
    /// batch is refused as it would be without this.
    pub fn check_batch_ahead(&self, batch: &SignedBatch, certificate: &[u8]) {
        let body = batch_body(batch.tree.size() as u64, &batch.tree.root());
        if already_verified(
            self,
            BATCH_DOMAIN,
            &body,
            &batch.signature_scheme,
            &batch.signature,
            certificate,
        ) {
            return;
        }
        let cert = CertificateDer::from(certificate);
        if let Ok(end_entity) = webpki::EndEntityCert::try_from(&cert) {
            let _ = check_and_remember(
                self,
                &end_entity,
                BATCH_DOMAIN,
                &body,
                &batch.signature_scheme,
                &batch.signature,
                certificate,
            );
        }
    }

    /// [`verify_signed`], remembering what it found good.
    pub fn verify_signed(
        &self,
        domain: &'static [u8],
        signed: &pb::Signed,
        anchors: &[CertificateDer<'_>],
        signer: CountryCode,
        at: time::OffsetDateTime,
    ) -> Result<(), ReceiptError> {
        check_signature(
            self,
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
}

fn verify_with(
    verifier: &Verifier,
    signed: &pb::SignedReceipt,
    anchors: &[CertificateDer<'_>],
    receiver: CountryCode,
) -> Result<pb::Receipt, ReceiptError> {
    let receipt = pb::Receipt::decode(signed.receipt.as_slice())
        .map_err(|e| ReceiptError::Decode(e.to_string()))?;
    let stored_at = parse_instant(&receipt.stored_at)
        .map_err(|e| ReceiptError::Decode(format!("stored_at: {e}")))?;
    let batch_signed;
    let (domain, body): (&[u8], &[u8]) = match &signed.batch {
        None => (DOMAIN, &signed.receipt),
        Some(batch) => {
            batch_signed = batch_root(&signed.receipt, batch)?;
            (BATCH_DOMAIN, &batch_signed)
        }
    };
    check_signature(
        verifier,
        domain,
        body,
        &signed.signature_scheme,
        &signed.signature,
        &signed.signer_certificate,
        anchors,
        receiver,
        stored_at,
    )?;
    received_by(receipt, receiver)
}

/// The receipt, if it names `receiver` as the node that stored the message.
fn received_by(receipt: pb::Receipt, receiver: CountryCode) -> Result<pb::Receipt, ReceiptError> {
    if receipt.receiver != receiver.as_str() {
        return Err(ReceiptError::Mismatch {
            field: "receiver",
            found: receipt.receiver.clone(),
            expected: receiver.to_string(),
        });
    }
    Ok(receipt)
}

/// What the batch signature must cover for `receipt` to be at its place in the batch.
fn batch_root(receipt: &[u8], batch: &pb::ReceiptBatchProof) -> Result<[u8; 40], ReceiptError> {
    let malformed = |what: &str| ReceiptError::Decode(format!("batch: {what}"));
    if batch.path.len() > MAX_PATH {
        return Err(malformed("inclusion path is too long"));
    }
    let path = batch
        .path
        .iter()
        .map(|p| {
            <[u8; 32]>::try_from(p.as_slice())
                .map(Digest)
                .map_err(|_| malformed("a path hash is not 32 bytes"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let root = merkle::root_from_inclusion(batch.index, batch.size, leaf_hash(receipt), &path)
        .ok_or_else(|| {
            malformed(&format!(
                "the inclusion path does not fit index {} of {}",
                batch.index, batch.size
            ))
        })?;
    Ok(batch_body(batch.size, &root))
}

/// Domain of checkpoint signatures.
pub const CHECKPOINT_DOMAIN: &[u8] = b"focalpoint-checkpoint-v1\0";
/// Domain of cosignatures.
pub const COSIGNATURE_DOMAIN: &[u8] = b"focalpoint-cosignature-v1\0";

/// A signer certificate found to chain to its trust anchors, and the period (Unix seconds) in
/// which that holds: the intersection of the certificate's and every anchor's validity.
#[derive(Debug, Clone)]
struct Chained {
    certificate: Vec<u8>,
    anchors: Vec<Vec<u8>>,
    identity: crate::domain::model::Identity,
    from: i64,
    until: i64,
}

impl Chained {
    fn is(&self, certificate: &[u8], anchors: &[CertificateDer<'_>]) -> bool {
        self.certificate == certificate
            && self.anchors.len() == anchors.len()
            && self
                .anchors
                .iter()
                .zip(anchors)
                .all(|(a, b)| a == b.as_ref())
    }
}

/// Certificates a verifier remembers as validated; cleared when full.
const CHAINED_MAX: usize = 32;

fn chained(
    verifier: &Verifier,
    certificate: &[u8],
    anchors: &[CertificateDer<'_>],
    at: i64,
) -> Option<crate::domain::model::Identity> {
    verifier
        .chained
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .find(|c| c.is(certificate, anchors) && (c.from..=c.until).contains(&at))
        .map(|c| c.identity.clone())
}

fn remember(
    verifier: &Verifier,
    identity: crate::domain::model::Identity,
    cert: &CertificateDer<'_>,
    anchors: &[CertificateDer<'_>],
) {
    let mut from = i64::MIN;
    let mut until = i64::MAX;
    for c in std::iter::once(cert).chain(anchors) {
        match crate::crypto::x509::validity_of(c) {
            Ok((a, b)) => {
                from = from.max(a);
                until = until.min(b);
            }
            Err(_) => return,
        }
    }
    let mut cache = verifier
        .chained
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if cache.len() >= CHAINED_MAX {
        cache.clear();
    }
    cache.push(Chained {
        certificate: cert.as_ref().to_vec(),
        anchors: anchors.iter().map(|a| a.as_ref().to_vec()).collect(),
        identity,
        from,
        until,
    });
}

/// A signature found good: everything its check covered.
#[derive(Debug)]
struct Verified {
    domain: &'static [u8],
    body: Vec<u8>,
    scheme: String,
    signature: Vec<u8>,
    certificate: Vec<u8>,
}

/// Signatures a verifier remembers as good; the oldest is forgotten first.
const VERIFIED_MAX: usize = 64;

fn verified(
    verifier: &Verifier,
) -> std::sync::MutexGuard<'_, std::collections::VecDeque<Verified>> {
    verifier
        .verified
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn already_verified(
    verifier: &Verifier,
    domain: &[u8],
    body: &[u8],
    scheme: &str,
    signature: &[u8],
    certificate: &[u8],
) -> bool {
    // Newest first: receipts are checked in the order of their batches, so the one sought is
    // among the last remembered.
    verified(verifier).iter().rev().any(|v| {
        v.body == body
            && v.signature == signature
            && v.domain == domain
            && v.scheme == scheme
            && v.certificate == certificate
    })
}

#[allow(clippy::too_many_arguments)]
fn check_signature(
    verifier: &Verifier,
    domain: &'static [u8],
    body: &[u8],
    scheme: &str,
    signature: &[u8],
    certificate: &[u8],
    anchors: &[CertificateDer<'_>],
    signer: CountryCode,
    at: time::OffsetDateTime,
) -> Result<(), ReceiptError> {
    let cert = CertificateDer::from(certificate);
    let known = chained(verifier, certificate, anchors, at.unix_timestamp());
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
    let end_entity = || {
        webpki::EndEntityCert::try_from(&cert).map_err(|e| ReceiptError::Certificate(e.to_string()))
    };
    if known.is_none() {
        let end_entity = end_entity()?;
        let provider = rustls::crypto::ring::default_provider();
        let algorithms = provider.signature_verification_algorithms;
        // webpki takes a trust anchor as it is; the contract holds the issuing CA to its
        // dates too.
        let issuer_valid = x509_parser::parse_x509_certificate(certificate)
            .ok()
            .is_some_and(|(_, leaf)| {
                anchors.iter().any(|anchor| {
                    x509_parser::parse_x509_certificate(anchor.as_ref())
                        .ok()
                        .is_some_and(|(_, ca)| {
                            ca.subject() == leaf.issuer()
                                && ca.validity().not_before.timestamp() <= at.unix_timestamp()
                                && at.unix_timestamp() <= ca.validity().not_after.timestamp()
                        })
                })
            });
        if !issuer_valid {
            return Err(ReceiptError::Certificate(
                "no CA that issued it was valid when this was signed".into(),
            ));
        }
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
        remember(verifier, identity, &cert, anchors);
    }
    // The certificate is the signer's and chains: a signature found good before, here or by
    // a batch checked ahead, need not be checked again.
    if already_verified(verifier, domain, body, scheme, signature, certificate) {
        return Ok(());
    }
    check_and_remember(
        verifier,
        &end_entity()?,
        domain,
        body,
        scheme,
        signature,
        certificate,
    )
}

/// Checks that `signature` over `domain` and `body` was made with the key of `end_entity`
/// (whose encoding is `certificate`) under `scheme`, and remembers it if so.
fn check_and_remember(
    verifier: &Verifier,
    end_entity: &webpki::EndEntityCert<'_>,
    domain: &'static [u8],
    body: &[u8],
    scheme: &str,
    signature: &[u8],
    certificate: &[u8],
) -> Result<(), ReceiptError> {
    let provider = rustls::crypto::ring::default_provider();
    let algorithms = provider.signature_verification_algorithms;
    let wanted = SCHEMES
        .iter()
        .find(|(name, _)| *name == scheme)
        .map(|(_, s)| *s)
        .ok_or_else(|| ReceiptError::Scheme(scheme.to_owned()))?;
    let (_, candidates) = algorithms
        .mapping
        .iter()
        .find(|(s, _)| *s == wanted)
        .ok_or_else(|| ReceiptError::Scheme(scheme.to_owned()))?;
    let message = [domain, body].concat();
    if candidates.iter().any(|alg| {
        end_entity
            .verify_signature(*alg, &message, signature)
            .is_ok()
    }) {
        let mut cache = verified(verifier);
        if cache.len() >= VERIFIED_MAX {
            cache.pop_front();
        }
        cache.push_back(Verified {
            domain,
            body: body.to_vec(),
            scheme: scheme.to_owned(),
            signature: signature.to_vec(),
            certificate: certificate.to_vec(),
        });
        Ok(())
    } else {
        Err(ReceiptError::Signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::x509::{load_certs, load_key};
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
                stored_at: crate::domain::model::format_instant(time::OffsetDateTime::now_utc()),
            })
            .unwrap()
    }

    fn khm() -> CountryCode {
        "KHM".parse().unwrap()
    }

    fn khm_signer() -> ReceiptSigner {
        let cert = load_certs(&example("khm", "node.pem")).unwrap();
        let key = load_key(&example("khm", "node.key")).unwrap();
        ReceiptSigner::new(&cert[0], &key).unwrap()
    }

    /// Five receipts under one batch signature.
    fn batch() -> Vec<pb::SignedReceipt> {
        let signer = khm_signer();
        let receipts: Vec<Vec<u8>> = (0..5)
            .map(|i| {
                pb::Receipt {
                        message_id: format!("IDN-{i}"),
                        envelope_sha256: vec![i; 32],
                        sender: "IDN".into(),
                        receiver: "KHM".into(),
                        log_sequence: 100 + u64::from(i),
                        entry_hash: vec![9; 32],
                        stored_at: crate::domain::model::format_instant(
                            time::OffsetDateTime::now_utc(),
                        ),
                    }
                    .encode_to_vec()
            })
            .collect();
        let signed = signer
            .sign_batch(receipts.iter().map(|r| leaf_hash(r)).collect())
            .unwrap();
        receipts
            .into_iter()
            .enumerate()
            .map(|(i, r)| signed.receipt(i, r, signer.certificate()))
            .collect()
    }

    #[test]
    fn each_receipt_of_a_batch_verifies_on_its_own() {
        let anchors = load_certs(&example("khm", "ca.pem")).unwrap();
        let batch = batch();
        assert!(batch.iter().all(|s| s.signature == batch[0].signature));
        for (i, signed) in batch.iter().enumerate() {
            let receipt = verify(signed, &anchors, khm()).unwrap();
            assert_eq!(receipt.message_id, format!("IDN-{i}"));
        }
    }

    #[test]
    fn a_receipt_with_its_batch_at_hand_verifies_at_its_place_only() {
        let anchors = load_certs(&example("khm", "ca.pem")).unwrap();
        let signer = khm_signer();
        let receipts: Vec<Vec<u8>> = batch().into_iter().map(|s| s.receipt).collect();
        let signed = signer
            .sign_batch(receipts.iter().map(|r| leaf_hash(r)).collect())
            .unwrap();
        let verifier = Verifier::new();
        let at = |receipt: usize, index: usize| {
            verifier.verify_in_batch(
                &InBatch::new(&receipts[receipt], index, &signed, signer.certificate()),
                &anchors,
                khm(),
            )
        };
        let (receipt, _) = at(3, 3).unwrap();
        assert_eq!(receipt.message_id, "IDN-3");
        assert!(at(3, 2).is_err(), "another receipt's place");
    }

    #[test]
    fn a_batch_receipt_out_of_its_place_is_refused() {
        let anchors = load_certs(&example("khm", "ca.pem")).unwrap();
        let batch = batch();

        // Another receipt's path, index or size.
        let mut moved = batch[2].clone();
        moved.batch = batch[3].batch.clone();
        assert_eq!(
            verify(&moved, &anchors, khm()),
            Err(ReceiptError::Signature)
        );
        let mut resized = batch[2].clone();
        resized.batch.as_mut().unwrap().size = 6;
        assert_eq!(
            verify(&resized, &anchors, khm()),
            Err(ReceiptError::Signature)
        );
        resized.batch.as_mut().unwrap().size = 3;
        assert!(matches!(
            verify(&resized, &anchors, khm()),
            Err(ReceiptError::Decode(m)) if m.contains("does not fit index 2 of 3")
        ));
        let mut beyond = batch[2].clone();
        beyond.batch.as_mut().unwrap().index = 5;
        assert!(matches!(
            verify(&beyond, &anchors, khm()),
            Err(ReceiptError::Decode(m)) if m.contains("does not fit index 5 of 5")
        ));

        // A changed receipt, a changed path hash, a short or overlong path.
        // The message id "IDN-1" becomes "IEN-1": the receipt still decodes, its leaf changes.
        let mut changed = batch[1].clone();
        assert_eq!(changed.receipt[3], b'D');
        changed.receipt[3] ^= 1;
        assert_eq!(
            verify(&changed, &anchors, khm()),
            Err(ReceiptError::Signature)
        );
        let mut flipped = batch[1].clone();
        flipped.batch.as_mut().unwrap().path[0][0] ^= 1;
        assert_eq!(
            verify(&flipped, &anchors, khm()),
            Err(ReceiptError::Signature)
        );
        let mut short = batch[1].clone();
        short.batch.as_mut().unwrap().path[0].pop();
        assert!(matches!(
            verify(&short, &anchors, khm()),
            Err(ReceiptError::Decode(m)) if m.contains("not 32 bytes")
        ));
        let mut long = batch[1].clone();
        long.batch.as_mut().unwrap().path = vec![vec![0; 32]; MAX_PATH + 1];
        assert!(matches!(
            verify(&long, &anchors, khm()),
            Err(ReceiptError::Decode(m)) if m.contains("too long")
        ));

        // The batch signature is not a signature over a lone receipt.
        let mut alone = batch[0].clone();
        alone.batch = None;
        assert_eq!(
            verify(&alone, &anchors, khm()),
            Err(ReceiptError::Signature)
        );
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

    #[test]
    fn each_verifier_remembers_only_what_it_verified_itself() {
        let anchors = load_certs(&example("khm", "ca.pem")).unwrap();
        let receipts = batch();
        let (first, second) = (Verifier::new(), Verifier::new());
        for r in &receipts {
            first.verify(r, &anchors, khm()).unwrap();
        }
        let held = |v: &Verifier| {
            (
                v.chained.lock().unwrap().len(),
                v.verified.lock().unwrap().len(),
            )
        };
        // One certificate chain and one batch signature, for five receipts.
        assert_eq!(held(&first), (1, 1));
        assert_eq!(held(&second), (0, 0), "a second verifier shares nothing");
        // What one verifier remembered never lets a forged receipt through another.
        let mut forged = receipts[0].clone();
        forged.signature[10] ^= 1;
        assert!(second.verify(&forged, &anchors, khm()).is_err());
        assert!(first.verify(&forged, &anchors, khm()).is_err());
    }
}
