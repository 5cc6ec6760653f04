//! Encryption at rest for message content in the exchange log.
//!
//! A message's envelope names a person; when a log key is configured it is stored sealed with
//! AES-256-GCM, so that a copied data directory reveals no names. The chain still commits to
//! the SHA-256 of the plaintext (what receipts acknowledge), and each sealed entry also commits
//! to the SHA-256 of its sealed bytes, so `audit verify` checks every entry without the key.
//!
//! Sealed form: `0x00 0x01 || key id (8) || nonce (12) || ciphertext || tag (16)`. A protobuf
//! encoding never starts with a zero byte (field number 0 does not exist), so sealed and plain
//! content cannot be confused. The associated data binds the ciphertext to its entry's sequence
//! and plaintext digest: sealed content moved to another entry does not open.

use std::path::{Path, PathBuf};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::domain::model::{Digest, hex};

const MAGIC: [u8; 2] = [0x00, 0x01];
const KEY_ID_LEN: usize = 8;
const HEADER_LEN: usize = MAGIC.len() + KEY_ID_LEN + NONCE_LEN;
const TAG_LEN: usize = 16;
/// What the search index's key is derived for, from the log key.
const INDEX_KEY_LABEL: &[u8] = b"focalpoint search index v1";
/// What a search term's hash is prefixed with in a log without a key.
const PLAIN_INDEX_LABEL: &[u8] = b"focalpoint search term v1\0";
/// The bytes of a search term's hash that the index keeps.
pub const INDEX_TAG_LEN: usize = 16;

/// The search index's hash of a term (see `domain::search`): with a log key, HMAC-SHA-256
/// under a key derived from it, so the index of a copied data directory names no one; without
/// one, where the content itself is in plain, SHA-256. The first 16 bytes.
pub fn index_tag(key: Option<&LogKey>, term: &[u8]) -> [u8; INDEX_TAG_LEN] {
    let mut tag = [0; INDEX_TAG_LEN];
    match key {
        Some(key) => tag.copy_from_slice(&hmac::sign(&key.index, term).as_ref()[..INDEX_TAG_LEN]),
        None => {
            tag.copy_from_slice(&Digest::of_parts(&[PLAIN_INDEX_LABEL, term]).0[..INDEX_TAG_LEN])
        }
    }
    tag
}

/// A term's hash under the log key and under every key it replaced: what a search looks up,
/// since entries indexed before a key rotation keep their earlier hashes.
pub fn index_tags(key: Option<&LogKey>, term: &[u8]) -> Vec<[u8; INDEX_TAG_LEN]> {
    let mut tags = vec![index_tag(key, term)];
    if let Some(key) = key {
        tags.extend(key.previous.iter().map(|k| index_tag(Some(k), term)));
    }
    tags
}

/// Why a log key cannot be loaded or sealed content cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("cannot read the log key file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the log key {origin} must be 64 hexadecimal digits (32 bytes)")]
    Malformed { origin: String },
    #[error("the environment variable {0} holding the log key is not set")]
    Unset(String),
    #[error("content of entry {sequence} is encrypted at rest; configure the log key to read it")]
    NoKey { sequence: u64 },
    #[error(
        "content of entry {sequence} was sealed with log key {stored}, but the configured key is {configured}"
    )]
    WrongKey {
        sequence: u64,
        stored: String,
        configured: String,
    },
    #[error("content of entry {sequence} does not open with the log key: it was altered or moved")]
    Tampered { sequence: u64 },
    #[error("content of entry {sequence} is too short to be sealed content")]
    Truncated { sequence: u64 },
    #[error("the system random number generator failed")]
    Random,
}

/// The key that seals message content at rest, and the earlier keys it replaced, which still
/// open what they sealed.
pub struct LogKey {
    key: LessSafeKey,
    id: [u8; KEY_ID_LEN],
    /// Keys the search index's hashes of names and document numbers, derived from the log key
    /// so that one secret guards both.
    index: hmac::Key,
    previous: Vec<Self>,
}

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogKey").field("id", &self.id()).finish()
    }
}

impl LogKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        let digest = Digest::of_parts(&[b"focalpoint log key id\0", bytes]);
        let mut id = [0; KEY_ID_LEN];
        id.copy_from_slice(&digest.0[..KEY_ID_LEN]);
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).expect("AES-256 takes a 32-byte key");
        let derived = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, bytes), INDEX_KEY_LABEL);
        Self {
            key: LessSafeKey::new(unbound),
            id,
            index: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
            previous: Vec::new(),
        }
    }

    /// This key, still able to open what `earlier` keys sealed (after a key rotation).
    pub fn with_previous(mut self, earlier: Vec<Self>) -> Self {
        self.previous = earlier;
        self
    }

    /// A key written as 64 hexadecimal digits; `origin` names where it came from in errors.
    pub fn from_hex(text: &str, origin: &str) -> Result<Self, SealError> {
        let malformed = || SealError::Malformed {
            origin: origin.to_owned(),
        };
        let text = text.trim();
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed());
        }
        let mut bytes = [0u8; 32];
        for (i, pair) in text.as_bytes().chunks(2).enumerate() {
            let pair = std::str::from_utf8(pair).map_err(|_| malformed())?;
            bytes[i] = u8::from_str_radix(pair, 16).map_err(|_| malformed())?;
        }
        Ok(Self::from_bytes(&bytes))
    }

    /// Reads a key file holding 64 hexadecimal digits.
    pub fn from_file(path: &Path) -> Result<Self, SealError> {
        let text = std::fs::read_to_string(path).map_err(|source| SealError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_hex(&text, &format!("in {}", path.display()))
    }

    /// Reads a key from the environment variable `name`.
    pub fn from_env(name: &str) -> Result<Self, SealError> {
        let text = std::env::var(name).map_err(|_| SealError::Unset(name.to_owned()))?;
        Self::from_hex(&text, &format!("in ${name}"))
    }

    /// A new random key, as 64 hexadecimal digits.
    pub fn generate_hex() -> Result<String, SealError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| SealError::Random)?;
        Ok(hex(&bytes))
    }

    /// The key's public identifier: names it in errors without revealing it.
    pub fn id(&self) -> String {
        hex(&self.id)
    }

    /// Seals the content of entry `sequence`, whose plaintext digest is `digest`.
    pub fn seal(&self, sequence: u64, digest: &Digest, plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let mut out = Vec::with_capacity(HEADER_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(sequence, digest)),
                &mut body,
            )
            .map_err(|_| SealError::Random)?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Opens the sealed content of entry `sequence`, whose plaintext digest is `digest`.
    pub fn open(&self, sequence: u64, digest: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < HEADER_LEN + TAG_LEN || !is_sealed(sealed) {
            return Err(SealError::Truncated { sequence });
        }
        let stored_id = &sealed[MAGIC.len()..MAGIC.len() + KEY_ID_LEN];
        if stored_id != self.id {
            return match self.previous.iter().find(|k| k.id == stored_id) {
                Some(earlier) => earlier.open(sequence, digest, sealed),
                None => Err(SealError::WrongKey {
                    sequence,
                    stored: hex(stored_id),
                    configured: self.id(),
                }),
            };
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[MAGIC.len() + KEY_ID_LEN..HEADER_LEN]);
        let digest = Digest(
            digest
                .try_into()
                .map_err(|_| SealError::Tampered { sequence })?,
        );
        let mut body = sealed[HEADER_LEN..].to_vec();
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(sequence, &digest)),
                &mut body,
            )
            .map_err(|_| SealError::Tampered { sequence })?;
        Ok(plain.to_vec())
    }
}

/// Whether stored content is in sealed form.
pub fn is_sealed(stored: &[u8]) -> bool {
    stored.starts_with(&MAGIC)
}

fn aad(sequence: u64, digest: &Digest) -> Vec<u8> {
    let mut aad = Vec::with_capacity(24 + 8 + 32);
    aad.extend_from_slice(b"focalpoint log content\0");
    aad.extend_from_slice(&sequence.to_be_bytes());
    aad.extend_from_slice(&digest.0);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> LogKey {
        LogKey::from_bytes(&[byte; 32])
    }

    #[test]
    fn sealed_content_opens_only_for_its_entry_and_key() {
        let plain = b"\x0a\x05ALERT name SOPHEAP".to_vec();
        let digest = Digest::of(&plain);
        let sealed = key(7).seal(42, &digest, &plain).unwrap();
        assert!(is_sealed(&sealed));
        assert!(
            !sealed.windows(7).any(|w| w == b"SOPHEAP"),
            "the name must not appear in sealed form"
        );
        assert_eq!(key(7).open(42, &digest.0, &sealed).unwrap(), plain);
        assert!(matches!(
            key(7).open(43, &digest.0, &sealed),
            Err(SealError::Tampered { sequence: 43 })
        ));
        assert!(matches!(
            key(8).open(42, &digest.0, &sealed),
            Err(SealError::WrongKey { .. })
        ));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            key(7).open(42, &digest.0, &flipped),
            Err(SealError::Tampered { .. })
        ));
        assert!(matches!(
            key(7).open(42, &digest.0, &sealed[..20]),
            Err(SealError::Truncated { .. })
        ));
    }

    #[test]
    fn a_rotated_key_still_opens_what_the_earlier_key_sealed() {
        let plain = b"envelope".to_vec();
        let digest = Digest::of(&plain);
        let old = key(1).seal(5, &digest, &plain).unwrap();
        let current = key(2).with_previous(vec![key(1)]);
        assert_eq!(current.open(5, &digest.0, &old).unwrap(), plain);
        let new = current.seal(6, &digest, &plain).unwrap();
        assert!(matches!(
            key(1).open(6, &digest.0, &new),
            Err(SealError::WrongKey { .. })
        ));
        assert_eq!(current.open(6, &digest.0, &new).unwrap(), plain);
    }

    #[test]
    fn index_tags_are_keyed_and_follow_rotation() {
        let term = b"DX2217845";
        let plain = index_tag(None, term);
        let old = index_tag(Some(&key(1)), term);
        assert_ne!(plain, old);
        assert_ne!(old, index_tag(Some(&key(2)), term));
        assert_eq!(old, index_tag(Some(&key(1)), term));
        assert_ne!(old, index_tag(Some(&key(1)), b"DX2217846"));
        let rotated = key(2).with_previous(vec![key(1)]);
        let tags = index_tags(Some(&rotated), term);
        assert_eq!(tags, vec![index_tag(Some(&key(2)), term), old]);
        // Known answers from Python's hashlib and hmac: SHA-256("focalpoint search term
        // v1\0" || term), and HMAC-SHA-256 under HMAC-SHA-256(log key, "focalpoint search
        // index v1"), each cut to 16 bytes.
        assert_eq!(hex(&plain), "855e04b9fc188cf43f2080fc52566ad8");
        assert_eq!(hex(&old), "f2876a76cfba8119a7d8d113e02e0d61");
    }

    #[test]
    fn keys_are_read_as_64_hex_digits() {
        let text = LogKey::generate_hex().unwrap();
        assert_eq!(text.len(), 64);
        let a = LogKey::from_hex(&format!("{text}\n"), "test").unwrap();
        let b = LogKey::from_hex(&text, "test").unwrap();
        assert_eq!(a.id(), b.id());
        let err = LogKey::from_hex("abcd", "in key.hex").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the log key in key.hex must be 64 hexadecimal digits (32 bytes)"
        );
        assert!(LogKey::from_hex(&"zz".repeat(32), "x").is_err());
    }
}
