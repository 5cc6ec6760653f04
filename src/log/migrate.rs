//! Converts a data directory written in the first store layout into the current one.
//!
//! The first layout kept an entry (`e`), its content (`c`), the receipt issued for it (`q`, or
//! `r` whole before receipts were signed in batches) and every index under keys of their own.
//! The current one keeps the first three as one record per entry. The entries are copied byte
//! for byte, so every entry hash, the head and any checkpoint over the log stay what they were;
//! content (sealed or not) is copied as stored; the views are derived again from the chain.
//! The copy is verified before it is reported as done, and the old directory is never changed.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{
    Digest, Durability, ExchangeLog, LAYOUT, LogError, LogOptions, MARKER_FILE, MARKER_FSYNC,
    MARKER_TAG, entry_hash, key, new_record, parse_marker, received_cursor, view_updates,
};
use crate::crypto::seal::LogKey;
use crate::pb;

/// The keys of the first layout that the current one keeps elsewhere or derives.
mod old {
    pub(super) const CONTENT: u8 = b'c';
    pub(super) const ISSUED_RECEIPT: u8 = b'r';
    pub(super) const ISSUED_IN_BATCH: u8 = b'q';
}

/// Every key prefix a store of the first layout holds.
const FIRST_LAYOUT_PREFIXES: &[u8] = b"ecrqbzianxftskwgdo";

/// What a migration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// Entries converted and verified.
    pub entries: u64,
    /// The head: the last entry's sequence and hash, the same in both directories.
    pub head: (u64, Digest),
}

/// Converts the first-layout data directory `from` into a new data directory `to` (which must
/// not exist or be empty), and verifies the result with `key` if the log is encrypted at rest
/// (without it, sealed content is checked against its sealed digest). Run with the node
/// stopped. On any error `to` is left empty.
pub fn migrate(from: &Path, to: &Path, key: Option<Arc<LogKey>>) -> Result<Migrated, LogError> {
    if !from.join("db").is_file() {
        return Err(LogError::Open {
            path: from.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no log is stored here (there is no `db` file)",
            ),
        });
    }
    let existed = to.exists();
    if std::fs::read_dir(to).is_ok_and(|mut d| d.next().is_some()) {
        return Err(LogError::Open {
            path: to.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the target directory is not empty",
            ),
        });
    }
    let converted = convert(from, to).and_then(|head| {
        let log = ExchangeLog::open(to, LogOptions::from(Durability::Flush).with_key(key))?;
        let entries = log.verify().map_err(|e| LogError::Corrupt {
            sequence: e.sequence,
            reason: format!("the converted log does not verify: {}", e.problem),
        })?;
        let converted_head = log.head()?;
        if converted_head != head {
            return Err(LogError::Corrupt {
                sequence: converted_head.0,
                reason: format!(
                    "the converted log's head is entry {}, not entry {} as in the old log",
                    converted_head.0, head.0
                ),
            });
        }
        Ok(Migrated { entries, head })
    });
    if converted.is_err() {
        // Nothing half-written stays behind.
        let _ = std::fs::remove_dir_all(to);
        if existed {
            let _ = std::fs::create_dir_all(to);
        }
    }
    converted
}

/// Writes the records, batches, certificates and views of `from` into `to`; returns the head.
fn convert(from: &Path, to: &Path) -> Result<(u64, Digest), LogError> {
    let (old_db, compression) = super::open_db(from, super::Compression::None, 64)?;
    let old = old_db.open_tree("exchange-log")?;
    if old.contains_key(key::LAYOUT)? {
        return Err(LogError::NotFirstLayout {
            path: from.to_owned(),
        });
    }
    for kv in old.iter().keys() {
        let k = kv?;
        let prefix = k.first().copied().unwrap_or(0);
        if !FIRST_LAYOUT_PREFIXES.contains(&prefix) {
            return Err(LogError::Corrupt {
                sequence: 0,
                reason: format!(
                    "the old store holds a key of no known kind (prefix byte 0x{prefix:02x}); nothing was converted"
                ),
            });
        }
    }
    let (db, _) = super::open_db(to, compression, 64)?;
    let tree = db.open_tree("exchange-log")?;
    let mut batch = sled::Batch::default();
    let mut in_batch = 0;
    let mut put = |batch: &mut sled::Batch, k: Vec<u8>, v: Vec<u8>| -> Result<(), LogError> {
        batch.insert(k, v);
        in_batch += 1;
        if in_batch == 4096 {
            tree.apply_batch(std::mem::take(batch))?;
            in_batch = 0;
        }
        Ok(())
    };
    let mut views: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    let mut cursors: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    let mut last_issued = None;
    let mut head = (0, super::GENESIS);
    for kv in old.scan_prefix([key::ENTRY]) {
        let (k, entry_bytes) = kv?;
        let sequence = key::tail_seq(&k).unwrap_or(0);
        if sequence != head.0 + 1 {
            return Err(LogError::Corrupt {
                sequence: head.0 + 1,
                reason: format!(
                    "the old log has no entry {}; the next is {sequence}",
                    head.0 + 1
                ),
            });
        }
        let entry =
            super::link(sequence, &head.1, &entry_bytes).map_err(|e| LogError::Corrupt {
                sequence,
                reason: format!("the old log does not verify: {}", e.problem),
            })?;
        let hash = entry_hash(&entry_bytes);
        for (k, v) in view_updates(&entry, &hash) {
            views.insert(k, v);
        }
        if let Some(cursor) = received_cursor(&entry) {
            let highest = cursors.entry(cursor).or_insert(0);
            *highest = entry.peer_sequence.max(*highest);
        }
        let content = old.get(key::seq(old::CONTENT, sequence))?;
        let issued = old.get(key::seq(old::ISSUED_IN_BATCH, sequence))?;
        let issued_signed = old.get(key::seq(old::ISSUED_RECEIPT, sequence))?;
        if issued.is_some() {
            last_issued = Some(sequence);
        }
        let kind = pb::EntryKind::try_from(entry.kind).unwrap_or_default();
        let (stored, shared) = new_record(
            &entry_bytes,
            kind,
            content.as_deref(),
            issued.as_deref(),
            issued_signed.as_deref(),
        );
        for (k, v) in shared {
            put(&mut batch, k, v)?;
        }
        put(&mut batch, k.to_vec(), stored)?;
        head = (sequence, hash);
    }
    check_old_marker(from, head)?;
    // What nothing in the chain holds: the batches this node signed, and their certificates.
    for prefix in [key::RECEIPT_BATCH, key::CERTIFICATE] {
        for kv in old.scan_prefix([prefix]) {
            let (k, v) = kv?;
            put(&mut batch, k.to_vec(), v.to_vec())?;
        }
    }
    for (k, v) in views {
        if let Some(v) = v {
            put(&mut batch, k, v)?;
        }
    }
    for (k, highest) in cursors {
        put(&mut batch, k, highest.to_be_bytes().to_vec())?;
    }
    if let Some(sequence) = last_issued {
        put(
            &mut batch,
            key::LAST_ISSUED.to_vec(),
            sequence.to_be_bytes().to_vec(),
        )?;
    }
    // The first layout's inbox ("n") and per-message cursors ("s") are derived now: not copied.
    put(&mut batch, key::LAYOUT.to_vec(), LAYOUT.to_vec())?;
    tree.apply_batch(batch)?;
    db.flush()?;
    let path = to.join("db");
    File::open(&path)
        .and_then(|f| f.sync_all())
        .map_err(|source| LogError::Open { path, source })?;
    write_marker(to, head)?;
    Ok(head)
}

/// The old directory's head marker, if it has one, must name an entry the old log holds,
/// unchanged: a store that lost durable entries is not converted as if it were whole.
fn check_old_marker(from: &Path, head: (u64, Digest)) -> Result<(), LogError> {
    let Ok(bytes) = std::fs::read(from.join(MARKER_FILE)) else {
        return Ok(());
    };
    let Some((sequence, hash, _)) = parse_marker(&bytes) else {
        return Ok(());
    };
    if sequence > head.0 {
        return Err(LogError::Truncated {
            path: from.join("db"),
            found: head.0,
            expected: sequence,
            marker: from.join(MARKER_FILE),
        });
    }
    if sequence == head.0 && hash != head.1 {
        return Err(LogError::Rewritten {
            path: from.join("db"),
            sequence,
        });
    }
    Ok(())
}

/// The new directory's head marker, as a node writes it after a durable write.
fn write_marker(to: &Path, head: (u64, Digest)) -> Result<(), LogError> {
    let mut bytes = Vec::with_capacity(48);
    bytes.extend_from_slice(MARKER_TAG);
    bytes.push(MARKER_FSYNC);
    bytes.extend_from_slice(&head.0.to_be_bytes());
    bytes.extend_from_slice(&head.1.0);
    let path: PathBuf = to.join(MARKER_FILE);
    std::fs::write(&path, bytes)
        .and_then(|()| File::open(&path)?.sync_all())
        .map_err(|source| LogError::Open { path, source })
}
