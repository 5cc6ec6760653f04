//! The exchange log: one append-only, hash-chained record of every message sent and received,
//! every receipt and every refusal. Inbox, outbox and case views are indexes beside it.
//!
//! Each entry (`focalpoint.v1.LogEntry`) names the hash of the entry before it, and commits to
//! its content by SHA-256 only, so content can be redacted later without breaking
//! verification. The store keeps an entry, its content and the receipt issued for it as one
//! record (`focalpoint.v1.StoredRecord`) under the entry's sequence; what must be found by key
//! (a message id, the pending set, a peer's cursor) is a compact view beside it, and what can
//! be derived from those (the inbox) is derived.
//!
//! All writes go through one writer thread that commits in groups: the jobs of a group are
//! applied as one atomic sled batch (a job that fails contributes nothing), then flushed once
//! (and, with [`Durability::Fsync`], fsynced) before any job in it is answered. Nothing is
//! acknowledged before it is durable. sled stays behind this module.

mod index;
pub mod migrate;
pub use recent::{DurableEntry, Entries, Window};
use txn::{Read, Staged};
pub use txn::{ReceiptTicket, Txn};
use writer::Writer;
mod recent;
mod record;
mod txn;
mod writer;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use prost::Message;

use crate::crypto::receipt::{self, ReceiptSigner};
use crate::crypto::seal::{self, LogKey, SealError};
use crate::domain::model::{CountryCode, Digest, MessageId};
use crate::domain::search::{self, Term};
use crate::pb;

/// What "durable" means for this log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// Every acknowledged write has been fsynced: it survives a power cut.
    #[default]
    Fsync,
    /// Every acknowledged write has reached the kernel (sled's flush): it survives the
    /// process being killed, not necessarily a power cut.
    Flush,
}

/// How a new log stores its pages. A log keeps the choice it was created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    /// Pages stored as written: the fastest writes.
    #[default]
    None,
    /// Pages compressed with zstd: a fraction of the disk, at some cost in write throughput.
    Zstd,
}

/// MiB of pages a log keeps in memory unless told otherwise: enough for the pages being written
/// and the indexes read most, small enough for a modest host.
pub const DEFAULT_CACHE_MIB: u64 = 16;

/// How to open a log.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// What an acknowledged write survives.
    pub durability: Durability,
    /// With a key, new message content is sealed at rest.
    pub key: Option<Arc<LogKey>>,
    /// For a new log: how it stores its pages. An existing log keeps its own.
    pub compression: Compression,
    /// The log's clock runs this far ahead of the system clock: for retention drills and tests
    /// that need the log as it will be days from now. A node opens its log this way only when
    /// started for such a drill (`BoundNode::bind_ahead`).
    pub clock_offset_micros: i64,
    /// MiB of pages kept in memory.
    pub cache_mib: u64,
    /// The key that signs the receipts this node issues. A node's log always has one; a log
    /// opened without one (an audit, a tool) takes no message from a peer.
    pub signer: Option<Arc<ReceiptSigner>>,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            durability: Durability::default(),
            key: None,
            compression: Compression::default(),
            clock_offset_micros: 0,
            cache_mib: DEFAULT_CACHE_MIB,
            signer: None,
        }
    }
}

impl From<Durability> for LogOptions {
    fn from(durability: Durability) -> Self {
        Self {
            durability,
            ..Self::default()
        }
    }
}

impl LogOptions {
    /// With `key`, new message content is sealed at rest and sealed content opened on reading;
    /// without, sealed content is verified by its sealed digest but cannot be read.
    pub fn with_key(mut self, key: Option<Arc<LogKey>>) -> Self {
        self.key = key;
        self
    }

    /// Receipts this log issues are signed by `signer`.
    pub fn with_signer(mut self, signer: Arc<ReceiptSigner>) -> Self {
        self.signer = Some(signer);
        self
    }

    /// The log's clock runs `micros` ahead of the system clock (retention drills, tests).
    pub fn ahead(mut self, micros: i64) -> Self {
        self.clock_offset_micros = micros;
        self
    }
}

/// Why the log could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("storage error: {0}")]
    Storage(sled::Error),
    #[error("the log's data file {path} is corrupt{}", at.map(|o| format!(" at byte offset {o}")).unwrap_or_default())]
    CorruptFile { path: PathBuf, at: Option<u64> },
    #[error(
        "the log's data file {path} is damaged: it ends at entry {found}, but entries up to {expected} were made durable. Restore the data directory from a copy; to accept the log as it is, audit it and remove {marker}"
    )]
    Truncated {
        path: PathBuf,
        found: u64,
        expected: u64,
        marker: PathBuf,
    },
    #[error(
        "the log's data file {path} is damaged: entry {sequence} is not the entry that was made durable there. Restore the data directory from a copy"
    )]
    Rewritten { path: PathBuf, sequence: u64 },
    #[error(
        "the data directory {path} is in use by another process: is the node still running? Audit a copy, or stop the node"
    )]
    Locked { path: PathBuf },
    #[error("the log is reopening its store after a storage failure; try again shortly")]
    Reopening,
    #[error("cannot open the log's data file {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the write was not made durable")]
    Unwritten(#[source] Arc<Self>),
    #[error("no key is set to sign receipts")]
    NoSigner,
    #[error("signing the receipts of a write failed")]
    Signing(#[source] crate::crypto::receipt::ReceiptError),
    #[error("the receipt was stored but not signed")]
    Unsigned,
    #[error("fsync of the log's data file failed")]
    Fsync(#[source] std::io::Error),
    #[error("the log writer has stopped after an earlier storage failure")]
    Closed,
    #[error(
        "the data directory {path} holds a log in the first store layout, which this version reads only to convert it: with the node stopped, run `focalpoint migrate --config NODE.toml --out NEWDIR` and use NEWDIR as the data directory"
    )]
    OldLayout { path: PathBuf },
    #[error(
        "the data directory {path} holds a log in store layout {found:?}, which this version does not know: it was written by a newer focalpoint"
    )]
    UnknownLayout { path: PathBuf, found: String },
    #[error(
        "the data directory {path} is already in the current store layout: there is nothing to convert"
    )]
    NotFirstLayout { path: PathBuf },
    #[error("log entry {sequence} cannot be decoded: {reason}")]
    Corrupt { sequence: u64, reason: String },
    #[error(transparent)]
    Seal(#[from] SealError),
}

impl From<sled::Error> for LogError {
    fn from(e: sled::Error) -> Self {
        match e {
            // sled reports a bad checksum as corruption; the file is the database's one data
            // file, named where the directory is known.
            sled::Error::Corruption { at, .. } => Self::CorruptFile {
                path: PathBuf::from("db"),
                at: at.map(|ptr| ptr.lid()),
            },
            other => Self::Storage(other),
        }
    }
}

impl LogError {
    /// Whether this is the file system being full (or over quota): the one storage failure the
    /// log waits out by reopening its store. After any other I/O failure, an fsync's above all,
    /// the kernel may have dropped what it could not write, so the log stays closed.
    fn is_disk_full(&self) -> bool {
        let full = |e: &std::io::Error| {
            matches!(
                e.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            ) || matches!(e.raw_os_error(), Some(28 | 122))
        };
        match self {
            // Never after an fsync of our own failed, whatever it said: the kernel may then
            // have dropped pages it could not write.
            Self::Storage(sled::Error::Io(e)) => full(e),
            _ => false,
        }
    }

    /// This error with the data file named by its full path under `dir`.
    fn in_dir(self, dir: &Path) -> Self {
        match self {
            Self::CorruptFile { path, at } if path.is_relative() => Self::CorruptFile {
                path: dir.join(path),
                at,
            },
            other => other,
        }
    }
}

/// Where a verification failed.
#[derive(Debug, thiserror::Error)]
#[error("entry {sequence}: {problem}")]
pub struct VerifyError {
    /// The first bad entry.
    pub sequence: u64,
    /// What is wrong with it.
    #[source]
    pub problem: Problem,
}

/// What is wrong with an entry, as the chain or a check on it found.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("cannot be read: {0}")]
    Unreadable(#[source] LogError),
    #[error("cannot be decoded: {0}")]
    Undecodable(#[source] prost::DecodeError),
    #[error("its stored record cannot be read: {0}")]
    Record(&'static str),
    #[error(
        "keeps whole the receipt issued for it, though its entry gives part of it and earlier records keep such receipts without that part"
    )]
    ReceiptKeptWhole,
    #[error("is missing; the next entry found is {next}")]
    Missing { next: u64 },
    #[error("holds entry {found} (entries were moved or swapped)")]
    Moved { found: u64 },
    #[error(
        "its hash no longer matches the one entry {next} recorded: entry {at} or {next} was altered"
    )]
    Altered { at: u64, next: u64 },
    #[error("is of no known kind ({0})")]
    UnknownKind(i32),
    #[error("sealed content does not match its sealed digest")]
    SealedDigest,
    #[error(transparent)]
    Unsealed(#[from] crate::crypto::seal::SealError),
    #[error("content does not match its digest")]
    ContentDigest,
    #[error("content is missing")]
    ContentMissing,
    #[error("redacts entry {target}, which does not precede it")]
    RedactsLater { target: u64 },
    #[error("redacts entry {target}, which is not message {message_id}")]
    RedactsOther { target: u64, message_id: String },
    #[error("records the redaction of entry {target}, whose content is still held")]
    RedactedHeld { target: u64 },
    #[error(
        "is missing, but the log's head names entry {orphan}: the log was truncated after entry {last}"
    )]
    Truncated { orphan: u64, last: u64 },
    /// A check of the caller's ([`ExchangeLog::verify_with`]) refused the entry.
    #[error(transparent)]
    Check(Box<dyn std::error::Error + Send + Sync>),
}

impl From<sled::Error> for Problem {
    fn from(e: sled::Error) -> Self {
        Self::Unreadable(LogError::from(e))
    }
}

/// An entry whose place in the chain and content digest have been checked.
#[derive(Debug)]
pub struct Checked<'a> {
    /// The entry.
    pub entry: &'a pb::LogEntry,
    /// Its hash.
    pub hash: Digest,
    /// Its content, if held and readable: content encrypted at rest is here only when the
    /// log was opened with its key.
    pub content: Option<&'a [u8]>,
    /// Whether its content is stored encrypted at rest.
    pub sealed: bool,
    /// Whether its content was removed by a later redaction entry.
    pub redacted: bool,
    /// For a received message, the receipt this node issued, if it was signed alone (by a log
    /// written before receipts were batched).
    pub issued_receipt: Option<&'a pb::SignedReceipt>,
    /// For a received message, the receipt this node issued and signed in a batch, with the
    /// batch's whole tree.
    pub issued_in_batch: Option<receipt::InBatch<'a>>,
    /// For a received message without a signed receipt: its receipt (an encoded `Receipt`) if it
    /// was stored but its batch is not signed in the log, as when the node stopped in between.
    pub unsigned_receipt: Option<&'a [u8]>,
}

/// An entry as stored, with its hash.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    /// The entry.
    pub entry: pb::LogEntry,
    /// SHA-256(0x00 || encoding): what the next entry names.
    pub hash: Digest,
}

impl StoredEntry {
    /// The entry's kind, `Unspecified` if unknown.
    pub fn kind(&self) -> pb::EntryKind {
        pb::EntryKind::try_from(self.entry.kind).unwrap_or_default()
    }
}

/// An entry to append; the log fills in sequence, time and previous hash.
#[derive(Debug, Clone, Default)]
pub struct NewEntry {
    /// What happened.
    pub kind: pb::EntryKind,
    /// The other focal point.
    pub peer: Option<CountryCode>,
    /// The message concerned.
    pub message_id: String,
    /// The kind of message concerned.
    pub message_kind: pb::MessageKind,
    /// The content kept beside the entry.
    pub content: Option<Vec<u8>>,
    /// The digest of the content: of content that is not kept (refusals), or of `content`
    /// when the caller has it already (a received envelope's, from its validation); the log
    /// computes it otherwise.
    pub content_digest: Option<Digest>,
    /// For receipts: the sent message's sequence.
    pub refers_to: u64,
    /// For refusals and failed deliveries: why.
    pub reason: String,
    /// For messages: the earlier message referred to. For a reminder (a deadline entry
    /// `expiring`): the version of the alert it reminds of.
    pub reference: Option<MessageId>,
    /// For received messages: the position in the sender's log.
    pub peer_sequence: u64,
    /// For messages: the envelope's creation time.
    pub created_at: String,
    /// For messages: what it can be found by (`domain::search::distinct_terms` of its
    /// envelope), indexed in the same write as the entry.
    pub search_terms: Vec<Term>,
    /// For a message this node sends and for a consultation: the URI SAN of who asked.
    pub actor: String,
    /// For a copy of a message sent to several peers: the first copy's message id.
    pub copy_of: Option<MessageId>,
}

/// The position of an appended entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Its sequence number.
    pub sequence: u64,
    /// Its hash.
    pub hash: Digest,
}

/// One key and value of a view.
pub type ViewRecord = (Vec<u8>, Vec<u8>);

/// The zero hash the first entry names as its predecessor.
pub const GENESIS: Digest = Digest([0; 32]);

/// The layout of the store this code writes, kept under [`key::LAYOUT`]: one record per entry.
/// A store without it, holding entries, is in the first layout (an entry, its content, its
/// issued receipt and each index under keys of their own) and is converted by
/// [`migrate::migrate`].
pub const LAYOUT: &[u8] = b"2";

mod key {
    /// A `StoredRecord`: the entry, its content and any receipt issued for it.
    pub(super) const ENTRY: u8 = b'e';
    /// The store's layout, one key: [`super::LAYOUT`].
    pub(super) const LAYOUT: &[u8] = b"v";
    /// The last entry: its sequence (8 bytes, big-endian) and hash. One key, a view.
    pub(super) const HEAD: &[u8] = b"h";
    /// The sequence of the last record holding a receipt this node issued. One key.
    pub(super) const LAST_ISSUED: &[u8] = b"l";
    /// A `ReceiptBatch`, by the sequence of its first receipt.
    pub(super) const RECEIPT_BATCH: u8 = b'b';
    /// A peer's `PeerBatch`, by the SHA-256 of its signature.
    pub(super) const PEER_BATCH: u8 = b'p';
    /// A signer certificate, by its SHA-256.
    pub(super) const CERTIFICATE: u8 = b'z';
    pub(super) const MESSAGE: u8 = b'i';
    pub(super) const RECEIPT_FOR: u8 = b'a';
    pub(super) const PENDING: u8 = b'o';
    pub(super) const REFERENCE: u8 = b'x';
    pub(super) const FAILED: u8 = b'f';
    pub(super) const SENT_TO: u8 = b't';
    /// By peer: the highest sender sequence received from it.
    pub(super) const RECEIVED_FROM: u8 = b's';
    pub(super) const COSIGNED: u8 = b'k';
    pub(super) const WITNESSED: u8 = b'w';
    pub(super) const RECONCILED: u8 = b'g';
    pub(super) const REDACTED: u8 = b'd';
    /// The search index's tag log, by the sequence of the first message of each value (see
    /// [`super::index`]).
    pub(super) const TAGS: u8 = b'Q';
    /// Present once the tag log holds every message's tags (a log written before the index
    /// existed gets them when a node first opens it with its content readable).
    pub(super) const SEARCH_COMPLETE: &[u8] = b"u";
    /// By a case's first message and a reason: the deadline entry noting it.
    pub(super) const DEADLINE: u8 = b'y';

    pub(super) fn deadline(case: u64, reason: &str) -> Vec<u8> {
        let mut k = seq(DEADLINE, case);
        k.extend_from_slice(reason.as_bytes());
        k
    }

    pub(super) fn per_peer(prefix: u8, peer: &str, sequence: u64) -> Vec<u8> {
        let mut k = vec![prefix];
        k.extend_from_slice(peer.as_bytes());
        k.extend_from_slice(&sequence.to_be_bytes());
        k
    }

    pub(super) fn peer_prefix(prefix: u8, peer: &str) -> Vec<u8> {
        let mut k = vec![prefix];
        k.extend_from_slice(peer.as_bytes());
        k
    }

    pub(super) fn seq(prefix: u8, sequence: u64) -> Vec<u8> {
        let mut k = Vec::with_capacity(9);
        k.push(prefix);
        k.extend_from_slice(&sequence.to_be_bytes());
        k
    }

    pub(super) fn message(sender: &str, id: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(4 + id.len());
        k.push(MESSAGE);
        k.extend_from_slice(sender.as_bytes());
        k.extend_from_slice(id.as_bytes());
        k
    }

    pub(super) fn pending(peer: &str, sequence: u64) -> Vec<u8> {
        per_peer(PENDING, peer, sequence)
    }

    pub(super) fn reference(id: &str, sequence: u64) -> Vec<u8> {
        let mut k = vec![REFERENCE];
        k.extend_from_slice(id.as_bytes());
        k.push(0);
        k.extend_from_slice(&sequence.to_be_bytes());
        k
    }

    pub(super) fn reference_prefix(id: &str) -> Vec<u8> {
        let mut k = vec![REFERENCE];
        k.extend_from_slice(id.as_bytes());
        k.push(0);
        k
    }

    pub(super) fn certificate(digest: &super::Digest) -> Vec<u8> {
        digest_key(CERTIFICATE, digest)
    }

    pub(super) fn digest_key(prefix: u8, digest: &super::Digest) -> Vec<u8> {
        let mut k = Vec::with_capacity(33);
        k.push(prefix);
        k.extend_from_slice(&digest.0);
        k
    }

    pub(super) fn peer_batch(signature_sha256: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(33);
        k.push(PEER_BATCH);
        k.extend_from_slice(signature_sha256);
        k
    }

    pub(super) fn tail_seq(k: &[u8]) -> Option<u64> {
        let tail: [u8; 8] = k.get(k.len().checked_sub(8)?..)?.try_into().ok()?;
        Some(u64::from_be_bytes(tail))
    }
}

/// Whether entries of `kind` hold a message envelope.
pub fn is_message(kind: pb::EntryKind) -> bool {
    matches!(
        kind,
        pb::EntryKind::MessageSent | pb::EntryKind::MessageReceived
    )
}

/// Sent messages are indexed under a marker instead of the node's own country, so the index
/// does not depend on configuration: "SNT" can never be a peer's alpha-3 code.
fn own_sender_marker() -> String {
    "SNT".to_owned()
}

type Completion = Box<dyn FnOnce(Option<&Arc<LogError>>) + Send>;
type SharedSigner = Arc<std::sync::RwLock<Option<Arc<ReceiptSigner>>>>;
/// The receipt batch read last, with its tree: an audit reads a batch's receipts one after
/// another, and each needs a path from the same tree.
type BatchCache = std::sync::Mutex<Option<(u64, Arc<StoredBatch>)>>;
type Job = Box<dyn FnOnce(&mut Txn<'_>) -> (bool, Completion) + Send>;

/// The exchange log of one node. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ExchangeLog {
    inner: Arc<Inner>,
}

/// The open store under the log. The writer replaces it as a whole when it reopens the store
/// after a storage failure (a full disk): sled refuses every operation after its first I/O
/// error until it is opened again.
#[derive(Debug)]
struct Store {
    db: sled::Db,
    tree: sled::Tree,
    /// sled's data file, for fsync.
    data_file: Option<File>,
    /// The head marker: the last entry made durable, written after each durable write.
    marker: Option<File>,
}

/// The current store; `None` while the writer reopens it.
type SharedStore = Arc<std::sync::RwLock<Option<Arc<Store>>>>;

/// The name of the head marker file in the data directory.
const MARKER_FILE: &str = "head";
/// The head marker's format: this tag, the sequence (8 bytes, big-endian) and the hash.
const MARKER_TAG: &[u8; 7] = b"fphead1";
/// After the tag: written by a log made durable with fsync (the marker is then strict), or
/// with flush only (a power cut may leave the store behind the marker, as that mode allows).
const MARKER_FSYNC: u8 = b'F';
const MARKER_FLUSH: u8 = b'N';

#[derive(Debug)]
struct Inner {
    store: SharedStore,
    key: Option<Arc<LogKey>>,
    compression: Compression,
    signer: SharedSigner,
    batches: BatchCache,
    peer_batches: PeerBatchCache,
    jobs: Option<mpsc::SyncSender<Job>>,
    closed: Arc<AtomicBool>,
    writer: Option<std::thread::JoinHandle<()>>,
    search: Arc<index::SearchIndex>,
    durable: Arc<tokio::sync::watch::Sender<u64>>,
    /// The entries of the last durable writes, while someone follows the log.
    recent: Arc<recent::Recent>,
    /// Microseconds this log's clock is ahead of the system's (tests of time passing).
    clock_offset: i64,
    /// The thread reading the tag log into the search index, while it runs.
    loader: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Inner {
    /// Stops the writer and waits for it, so the data directory is released when the last
    /// handle to the log is gone (a node can be reopened at once).
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        // The search index's loader holds the store open while it reads.
        self.wait_for_loader();
    }
}

impl Inner {
    /// Waits for the search index's loader started at open, if it still runs.
    fn wait_for_loader(&self) {
        let loader = self
            .loader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(loader) = loader {
            let _ = loader.join();
        }
    }
}

impl ExchangeLog {
    /// Opens (or creates) the log in `dir` as `options` say (a [`Durability`] alone is the
    /// options of a log in plain, without a receipt signer). With a signer, any receipt left
    /// unsigned when the node last stopped, between storing a message and signing its receipt,
    /// is signed before this returns.
    pub fn open(dir: &Path, options: impl Into<LogOptions>) -> Result<Self, LogError> {
        let LogOptions {
            durability,
            key,
            compression,
            clock_offset_micros: offset_micros,
            cache_mib,
            signer,
        } = options.into();
        std::fs::create_dir_all(dir).map_err(|source| LogError::Open {
            path: dir.to_owned(),
            source,
        })?;
        let place = Place {
            dir: dir.to_owned(),
            compression,
            cache_mib,
            durability,
        };
        let (store, compression) = place.open()?;
        let (next, head) = tail(&store.tree).map_err(|e| e.in_dir(dir))?;
        place.check_marker(&store.tree, next - 1)?;
        let store = Arc::new(store);
        let shared: SharedStore = Arc::new(std::sync::RwLock::new(Some(store.clone())));
        let (jobs, receiver) = mpsc::sync_channel::<Job>(4096);
        let closed = Arc::new(AtomicBool::new(false));
        let signed_on_open = signer.is_some();
        let signer: SharedSigner = Arc::new(std::sync::RwLock::new(signer));
        let search = Arc::new(index::SearchIndex::default());
        let durable = Arc::new(tokio::sync::watch::Sender::new(next - 1));
        let recent = Arc::new(recent::Recent::default());
        let writer = Writer {
            shared: shared.clone(),
            place,
            key: key.clone(),
            signer: signer.clone(),
            clock_offset: offset_micros,
            next,
            head,
            durable_next: next,
            closed: closed.clone(),
            search: search.clone(),
            durable: durable.clone(),
            recent: recent.clone(),
        }
        .spawn(store, receiver)
        .map_err(|source| LogError::Open {
            path: dir.to_owned(),
            source,
        })?;
        let log = Self {
            inner: Arc::new(Inner {
                store: shared,
                key,
                compression,
                signer,
                batches: BatchCache::default(),
                peer_batches: PeerBatchCache::default(),
                jobs: Some(jobs),
                closed,
                writer: Some(writer),
                search,
                durable,
                recent,
                clock_offset: offset_micros,
                loader: std::sync::Mutex::default(),
            }),
        };
        // A node (which opens its log with its signer, and its key) completes the search index
        // of a log written before it existed; offline tools leave the store as it is.
        if signed_on_open || next == 1 {
            log.complete_search_index()?;
        }
        log.load_search_index()?;
        if signed_on_open {
            let signed = log.transact_blocking(sign_unsigned)?;
            if signed > 0 {
                tracing::warn!(
                    receipts = signed,
                    "signed the receipts left unsigned when the node last stopped"
                );
            }
        }
        Ok(log)
    }

    /// Indexes every message of a log written before the search index existed, once. Content
    /// encrypted at rest needs the log key: opened without it (an offline audit), the log is
    /// left as it was, and the node indexes it when it next starts with its key.
    fn complete_search_index(&self) -> Result<(), LogError> {
        if self.store()?.tree.contains_key(key::SEARCH_COMPLETE)? {
            return Ok(());
        }
        let indexed = self.transact_blocking(|t| {
            let mut index = Staged::default();
            let mut messages = 0u64;
            for kv in t.scan(key::ENTRY) {
                let (k, v) = kv?;
                let sequence = key::tail_seq(&k).unwrap_or(0);
                let view = parse_record(sequence, &v)?;
                let stored = decode_entry(sequence, view.entry)?;
                if index_record(&mut index, t.key, &stored, &view)?.is_err() {
                    return Ok(None);
                }
                messages += u64::from(is_message(stored.kind()));
            }
            index.insert(key::SEARCH_COMPLETE, b"1".to_vec());
            t.own.absorb(index);
            Ok(Some(messages))
        })?;
        match indexed {
            Some(messages) if messages > 0 => {
                tracing::info!(messages, "indexed the log's messages for search");
            }
            Some(_) => {}
            None => tracing::warn!(
                "the log's messages are encrypted at rest and the log was opened without its key: \
                 the search index is completed when the node starts with the key"
            ),
        }
        Ok(())
    }

    /// The messages whose envelope names `term`, by sequence, ascending. Hashes under earlier
    /// log keys are looked up too.
    pub fn search(&self, term: &Term) -> Result<Vec<u64>, LogError> {
        let tags = seal::index_tags(self.inner.key.as_deref(), &term.hashed_bytes());
        self.inner
            .search
            .lookup(&tags)
            .map_err(|reason| LogError::Corrupt {
                sequence: 0,
                reason,
            })
    }

    /// Now, by this log's clock: what its entries are stamped with, and what deadlines and
    /// expiries are held to.
    pub fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc() + time::Duration::microseconds(self.inner.clock_offset)
    }

    /// The last entry made durable: what readers that must never see more (the event stream)
    /// read up to.
    pub fn durable_head(&self) -> u64 {
        *self.inner.durable.borrow()
    }

    /// Told each time more entries are durable, with the last of them. While a receiver is
    /// held, the entries of each durable write are kept in memory for a while, for
    /// [`Self::durable_entries`].
    pub fn subscribe_durable(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.durable.subscribe()
    }

    /// The entries `from` to `until`, which must be durable: from memory when they were
    /// written lately and someone follows the log, else read from the store.
    pub fn durable_entries(&self, from: u64, until: u64) -> Result<Entries, LogError> {
        if from > until {
            return Ok(Entries::Read(Vec::new()));
        }
        if let Some(window) = self.inner.recent.get(from, until) {
            return Ok(Entries::Recent(window));
        }
        let limit = usize::try_from(until.saturating_sub(from) + 1).unwrap_or(usize::MAX);
        self.range(from, limit).map(Entries::Read)
    }

    /// Reads the tag log into the in-memory index, on a thread of its own: the log is ready
    /// before its index is, and a search waits for it.
    fn load_search_index(&self) -> Result<(), LogError> {
        let tree = self.store()?.tree.clone();
        let index = self.inner.search.clone();
        let loader = std::thread::Builder::new()
            .name("search-index-loader".into())
            .spawn(move || index.loaded(read_tag_log(&tree)))
            .map_err(|source| LogError::Open {
                path: PathBuf::from("search-index-loader"),
                source,
            })?;
        *self
            .inner
            .loader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(loader);
        Ok(())
    }

    /// Signs the receipts issued from now on with `signer` (a reloaded key). The log must have
    /// been opened with a signer.
    pub fn rotate_receipt_signer(&self, signer: Arc<ReceiptSigner>) -> Result<(), LogError> {
        let mut slot = self
            .inner
            .signer
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match slot.as_mut() {
            Some(current) => {
                *current = signer;
                Ok(())
            }
            None => Err(LogError::NoSigner),
        }
    }

    /// The current store, or [`LogError::Reopening`] while the writer reopens it.
    fn store(&self) -> Result<Arc<Store>, LogError> {
        self.inner
            .store
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or(LogError::Reopening)
    }

    /// How this log stores its pages.
    pub fn compression(&self) -> Compression {
        self.inner.compression
    }

    /// Runs `job` on the writer; its writes are applied atomically if it returns `Ok`, and the
    /// answer comes only once they are durable.
    pub async fn transact<R, F>(&self, job: F) -> Result<R, LogError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Txn<'_>) -> Result<R, LogError> + Send + 'static,
    {
        self.enqueue(job)?.await
    }

    /// Queues `job` on the writer now and returns what answers once its writes are durable.
    /// Jobs run in the order they were queued, so a caller that queues several before awaiting
    /// any gets them logged in that order and flushed together.
    pub fn enqueue<R, F>(
        &self,
        job: F,
    ) -> Result<impl Future<Output = Result<R, LogError>> + Send + 'static, LogError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Txn<'_>) -> Result<R, LogError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(job, move |answer| {
            let _ = tx.send(answer);
        })?;
        Ok(async move { rx.await.map_err(|_| LogError::Closed)? })
    }

    /// [`Self::transact`] for code that may block its thread (offline tools, tests).
    pub fn transact_blocking<R, F>(&self, job: F) -> Result<R, LogError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Txn<'_>) -> Result<R, LogError> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(job, move |answer| {
            let _ = tx.send(answer);
        })?;
        rx.recv().map_err(|_| LogError::Closed)?
    }

    fn submit<R, F>(
        &self,
        job: F,
        reply: impl FnOnce(Result<R, LogError>) + Send + 'static,
    ) -> Result<(), LogError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Txn<'_>) -> Result<R, LogError> + Send + 'static,
    {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(LogError::Closed);
        }
        let job: Job = Box::new(move |txn| {
            let result = job(txn);
            let ok = result.is_ok();
            let done: Completion = Box::new(move |flush_error| {
                reply(match flush_error {
                    Some(e) => Err(LogError::Unwritten(e.clone())),
                    None => result,
                });
            });
            (ok, done)
        });
        self.inner
            .jobs
            .as_ref()
            .ok_or(LogError::Closed)?
            .send(job)
            .map_err(|_| LogError::Closed)
    }

    /// The number of entries and the hash of the last one.
    pub fn head(&self) -> Result<(u64, Digest), LogError> {
        let (next, hash) = tail(&self.store()?.tree)?;
        Ok((next - 1, hash))
    }

    /// One entry.
    pub fn entry(&self, sequence: u64) -> Result<Option<StoredEntry>, LogError> {
        read_entry(&self.store()?.tree, sequence)
    }

    /// Entries from `from` on, at most `limit`.
    pub fn range(&self, from: u64, limit: usize) -> Result<Vec<StoredEntry>, LogError> {
        self.store()?
            .tree
            .range(key::seq(key::ENTRY, from.max(1))..key::seq(key::ENTRY, u64::MAX))
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                let sequence = key::tail_seq(&k).unwrap_or(0);
                decode_entry(sequence, parse_record(sequence, &v)?.entry)
            })
            .collect()
    }

    /// The content kept with an entry, if it is still there; content sealed at rest is
    /// opened with the log key, and is an error without it.
    pub fn content(&self, sequence: u64) -> Result<Option<Vec<u8>>, LogError> {
        let store = self.store()?;
        let Some(stored) = store.tree.get(key::seq(key::ENTRY, sequence))? else {
            return Ok(None);
        };
        self.plain_content(&store.tree, sequence, &parse_record(sequence, &stored)?)
    }

    /// An entry and its content ([`Self::content`]), in one read; `None` if either is gone.
    pub fn entry_with_content(
        &self,
        sequence: u64,
    ) -> Result<Option<(StoredEntry, Vec<u8>)>, LogError> {
        let store = self.store()?;
        let Some(stored) = store.tree.get(key::seq(key::ENTRY, sequence))? else {
            return Ok(None);
        };
        let view = parse_record(sequence, &stored)?;
        let Some(content) = self.plain_content(&store.tree, sequence, &view)? else {
            return Ok(None);
        };
        Ok(Some((decode_entry(sequence, view.entry)?, content)))
    }

    /// The content of a stored record, opened if it is sealed.
    fn plain_content(
        &self,
        tree: &sled::Tree,
        sequence: u64,
        view: &record::View<'_>,
    ) -> Result<Option<Vec<u8>>, LogError> {
        let Some(held) = held_content(tree, sequence, view, &self.inner.peer_batches)? else {
            return Ok(None);
        };
        match in_plain(sequence, view.entry, held, self.inner.key.as_deref())? {
            Some(plain) => Ok(Some(plain.into_owned())),
            None => Err(SealError::NoKey { sequence }.into()),
        }
    }

    /// Whether the content of entry `sequence` is held encrypted at rest.
    pub fn is_sealed(&self, sequence: u64) -> Result<bool, LogError> {
        let Some(stored) = self.store()?.tree.get(key::seq(key::ENTRY, sequence))? else {
            return Ok(false);
        };
        Ok(parse_record(sequence, &stored)?
            .content
            .is_some_and(seal::is_sealed))
    }

    /// The last deadline entry noting `reason` for the case opened at `case`, if one is logged.
    pub fn deadline_noted(&self, case: u64, reason: &str) -> Result<Option<u64>, LogError> {
        read_seq(&self.store()?.tree, &key::deadline(case, reason))
    }

    /// The redaction entry that removed the content of entry `sequence`, if any.
    pub fn redaction_of(&self, sequence: u64) -> Result<Option<u64>, LogError> {
        read_seq(&self.store()?.tree, &key::seq(key::REDACTED, sequence))
    }

    /// The sequence of the message `id` received from `sender`.
    pub fn received(&self, sender: CountryCode, id: &str) -> Result<Option<u64>, LogError> {
        read_seq(&self.store()?.tree, &key::message(sender.as_str(), id))
    }

    /// The sequence of the message `id` this node sent.
    pub fn sent(&self, id: &str) -> Result<Option<u64>, LogError> {
        read_seq(&self.store()?.tree, &key::message(&own_sender_marker(), id))
    }

    /// The sequences of the messages `id` received from any sender, configured now or not.
    pub fn received_from_anyone(&self, id: &str) -> Result<Vec<u64>, LogError> {
        let tree = &self.store()?.tree;
        let own = own_sender_marker();
        let mut found = Vec::new();
        let mut from = vec![key::MESSAGE];
        // One seek per sender: a message id never holds the byte 0xFF, so the sender followed
        // by it lies after every key of that sender.
        while let Some(next) = tree.range(from.clone()..).next() {
            let (k, _) = next?;
            if k.first() != Some(&key::MESSAGE) || k.len() < 4 {
                break;
            }
            let sender = String::from_utf8_lossy(&k[1..4]).into_owned();
            if sender != own
                && let Some(seq) = read_seq(tree, &key::message(&sender, id))?
            {
                found.push(seq);
            }
            from = vec![key::MESSAGE];
            from.extend_from_slice(&k[1..4]);
            from.push(0xFF);
        }
        Ok(found)
    }

    /// The signed receipt this node issued for the received message at `sequence`.
    pub fn issued_receipt(&self, sequence: u64) -> Result<Option<pb::SignedReceipt>, LogError> {
        Ok(issued_state(&self.store()?.tree, sequence, Some(&self.inner.batches))?.into_signed())
    }

    /// The sequence of the receipt entry for the sent message at `sent`.
    pub fn receipt_for(&self, sent: u64) -> Result<Option<u64>, LogError> {
        read_seq(&self.store()?.tree, &key::seq(key::RECEIPT_FOR, sent))
    }

    /// Why the peer refused the sent message at `sequence` for good, if it did.
    pub fn failure(&self, sequence: u64) -> Result<Option<String>, LogError> {
        Ok(self
            .store()?
            .tree
            .get(key::seq(key::FAILED, sequence))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Sequences of sent messages to `peer` without a receipt yet, oldest first.
    pub fn pending(&self, peer: CountryCode) -> Result<Vec<u64>, LogError> {
        self.store()?
            .tree
            .scan_prefix(key::peer_prefix(key::PENDING, peer.as_str()))
            .keys()
            .map(|k| Ok(key::tail_seq(&k?).unwrap_or(0)))
            .collect()
    }

    /// The highest sender sequence held from `peer`, 0 if none.
    pub fn cursor(&self, peer: CountryCode) -> Result<u64, LogError> {
        Ok(read_seq(
            &self.store()?.tree,
            &key::peer_prefix(key::RECEIVED_FROM, peer.as_str()),
        )?
        .unwrap_or(0))
    }

    /// Sequences of messages sent to `peer` in `from..=until`, oldest first.
    pub fn sent_to(&self, peer: CountryCode, from: u64, until: u64) -> Result<Vec<u64>, LogError> {
        let p = peer.as_str();
        self.store()?
            .tree
            .range(key::per_peer(key::SENT_TO, p, from)..=key::per_peer(key::SENT_TO, p, until))
            .keys()
            .map(|k| Ok(key::tail_seq(&k?).unwrap_or(0)))
            .collect()
    }

    /// The entry holding this node's latest checkpoint cosigned by `peer`.
    pub fn last_cosigned(&self, peer: CountryCode) -> Result<Option<u64>, LogError> {
        read_seq(
            &self.store()?.tree,
            &key::peer_prefix(key::COSIGNED, peer.as_str()),
        )
    }

    /// The entry holding the latest checkpoint of `peer` this node witnessed.
    pub fn last_witnessed(&self, peer: CountryCode) -> Result<Option<u64>, LogError> {
        read_seq(
            &self.store()?.tree,
            &key::peer_prefix(key::WITNESSED, peer.as_str()),
        )
    }

    /// The hashes of the first `size` entries: the Merkle tree's leaves.
    pub fn leaves(&self, size: u64) -> Result<Vec<Digest>, LogError> {
        let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        for kv in self
            .store()?
            .tree
            .range(key::seq(key::ENTRY, 1)..=key::seq(key::ENTRY, size.max(1)))
        {
            let (k, v) = kv?;
            let sequence = key::tail_seq(&k).unwrap_or(0);
            out.push(entry_hash(parse_record(sequence, &v)?.entry));
        }
        if out.len() as u64 != size {
            return Err(LogError::Corrupt {
                sequence: out.len() as u64 + 1,
                reason: format!("the log holds {} entries, not {size}", out.len()),
            });
        }
        Ok(out)
    }

    /// The latest reconciliation recorded for the received statistics report at `report`.
    pub fn reconciliation_of(&self, report: u64) -> Result<Option<u64>, LogError> {
        read_seq(&self.store()?.tree, &key::seq(key::RECONCILED, report))
    }

    /// Sequences of received messages, oldest first: derived from the message index, which
    /// names every received message by its sender.
    pub fn inbox(&self) -> Result<Vec<u64>, LogError> {
        let own = own_sender_marker();
        let mut received = Vec::new();
        for kv in self.store()?.tree.scan_prefix([key::MESSAGE]) {
            let (k, v) = kv?;
            if k.get(1..4) == Some(own.as_bytes()) {
                continue;
            }
            if let Ok(sequence) = <[u8; 8]>::try_from(v.as_ref()) {
                received.push(u64::from_be_bytes(sequence));
            }
        }
        received.sort_unstable();
        Ok(received)
    }

    /// Sequences of the messages this node sent, oldest first: derived from the message index.
    pub fn outbox(&self) -> Result<Vec<u64>, LogError> {
        let mut sent = Vec::new();
        for kv in self
            .store()?
            .tree
            .scan_prefix(key::message(&own_sender_marker(), ""))
        {
            let (_, v) = kv?;
            if let Ok(sequence) = <[u8; 8]>::try_from(v.as_ref()) {
                sent.push(u64::from_be_bytes(sequence));
            }
        }
        sent.sort_unstable();
        Ok(sent)
    }

    /// The cases a deadline entry with `reason` was noted for, by their first message's
    /// sequence, in order.
    pub fn noted_deadlines(&self, reason: &str) -> Result<Vec<u64>, LogError> {
        let mut cases = Vec::new();
        for k in self.store()?.tree.scan_prefix([key::DEADLINE]).keys() {
            let k = k?;
            if k.get(9..) == Some(reason.as_bytes())
                && let Some(case) = k.get(1..9).and_then(key::tail_seq)
            {
                cases.push(case);
            }
        }
        Ok(cases)
    }

    /// Sequences of messages that name `id` as their reference.
    pub fn referencing(&self, id: &str) -> Result<Vec<u64>, LogError> {
        self.store()?
            .tree
            .scan_prefix(key::reference_prefix(id))
            .keys()
            .map(|k| Ok(key::tail_seq(&k?).unwrap_or(0)))
            .collect()
    }

    /// Recomputes the whole chain: sequence numbers, links and content digests. Returns the
    /// number of entries checked, or the first bad entry.
    pub fn verify(&self) -> Result<u64, VerifyError> {
        self.verify_with(|_| Ok::<(), std::convert::Infallible>(()))
    }

    /// [`Self::verify`], calling `check` on every entry once its place in the chain and its
    /// content digest hold; an `Err` from `check` names that entry.
    pub fn verify_with<E>(
        &self,
        check: impl FnMut(&Checked<'_>) -> Result<(), E>,
    ) -> Result<u64, VerifyError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        self.verify_with_batches(|_, _| {}, check)
    }

    /// [`Self::verify_with`], calling `batch` on the receipt batches the log holds, each with
    /// its signer's certificate, on a thread of its own that reads them in key order ahead of
    /// the entries whose receipts they sign, until verification ends or a batch cannot be
    /// read: the caller checks batch signatures there, beside the checking of entries.
    pub fn verify_with_batches<E>(
        &self,
        batch: impl Fn(&receipt::SignedBatch, &[u8]) + Sync,
        check: impl FnMut(&Checked<'_>) -> Result<(), E>,
    ) -> Result<u64, VerifyError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let store = self.store().map_err(|e| VerifyError {
            sequence: 1,
            problem: Problem::Unreadable(e),
        })?;
        std::thread::scope(|scope| {
            let (sender, ahead) = mpsc::sync_channel(BATCHES_AHEAD);
            let batch = &batch;
            let tree = &store.tree;
            scope.spawn(move || read_batches_ahead(tree, batch, &sender));
            let batches = BatchesAhead {
                ahead,
                last: std::sync::Mutex::default(),
                read: BatchCache::default(),
            };
            // Dropped when verification ends, which stops the thread at its next batch.
            self.verify_entries(&store, &batches, check)
        })
    }

    /// [`Self::verify_with`] over `store`, finding receipt batches in `batches` first.
    fn verify_entries<E>(
        &self,
        store: &Store,
        batches: &dyn BatchesRead,
        mut check: impl FnMut(&Checked<'_>) -> Result<(), E>,
    ) -> Result<u64, VerifyError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let mut previous = GENESIS;
        let mut expected = 1;
        // Whether a record before kept its receipt without what its entry gives: from then on
        // every receipt that can be is kept so, and the stored form of each is the one.
        let mut kept_short = false;
        let tree = &store.tree;
        // Read a few chunks ahead on a thread of its own, which hashes each entry and the
        // content its record holds on the way: reading and checking take about as long each.
        for kv in ReadAhead::new(tree.clone(), key::ENTRY, RecordHashes::of) {
            let bad = |sequence: u64, problem: Problem| VerifyError { sequence, problem };
            let (k, v, hashes) = kv.map_err(|e| bad(expected, e.into()))?;
            let stored = key::tail_seq(&k).unwrap_or(0);
            if stored != expected {
                return Err(bad(expected, Problem::Missing { next: stored }));
            }
            let view = record::View::parse(&v).map_err(|e| bad(expected, Problem::Record(e)))?;
            let entry = link(expected, &previous, view.entry)?;
            let kind = pb::EntryKind::try_from(entry.kind).unwrap_or_default();
            if kind == pb::EntryKind::Unspecified {
                // Stored data is never read as a default: an entry of no known kind is wrong.
                return Err(bad(expected, Problem::UnknownKind(entry.kind)));
            }
            let content = self
                .checked_content(tree, &entry, kind, &view, hashes.content)
                .map_err(|problem| bad(expected, problem))?;
            let hash = hashes.entry.unwrap_or_else(|| entry_hash(view.entry));
            let issued = if kind == pb::EntryKind::MessageReceived {
                issued_of(tree, expected, &view, Some((&entry, &hash)), Some(batches))
                    .map_err(|e| bad(expected, Problem::Unreadable(e)))?
            } else {
                Issued::None
            };
            if let Some((receipt, short)) = issued.kept() {
                if short {
                    kept_short = true;
                } else if kept_short && record::short_receipt(receipt, &entry, &hash).is_some() {
                    return Err(bad(expected, Problem::ReceiptKeptWhole));
                }
            }
            check(&Checked {
                entry: &entry,
                hash,
                content: content.bytes.as_deref(),
                sealed: content.sealed,
                redacted: content.redacted,
                issued_receipt: match &issued {
                    Issued::Signed(signed) => Some(signed),
                    _ => None,
                },
                issued_in_batch: match &issued {
                    Issued::InBatch {
                        receipt,
                        leaf,
                        index,
                        batch,
                        ..
                    } => Some(receipt::InBatch {
                        receipt,
                        leaf: *leaf,
                        index: *index,
                        batch: &batch.signed,
                        certificate: &batch.certificate,
                    }),
                    _ => None,
                },
                unsigned_receipt: match &issued {
                    Issued::Unsigned { receipt, .. } => Some(receipt),
                    _ => None,
                },
            })
            .map_err(|problem| bad(expected, Problem::Check(Box::new(problem))))?;
            previous = hash;
            expected += 1;
        }
        let last = expected - 1;
        check_tail(tree, last)?;
        Ok(last)
    }

    /// The content of `entry` as verification checks it: against its sealed digest and, with
    /// the key, opened; against its content digest; and if gone, accounted for by a redaction.
    /// `digest` is that of the content the record holds in itself, if worked out already.
    fn checked_content<'a>(
        &self,
        tree: &sled::Tree,
        entry: &pb::LogEntry,
        kind: pb::EntryKind,
        view: &record::View<'a>,
        digest: Option<Digest>,
    ) -> Result<CheckedContent<'a>, Problem> {
        let expected = entry.sequence;
        let content = held_content(tree, expected, view, &self.inner.peer_batches)
            .map_err(Problem::Unreadable)?;
        // The content as stored: the record's own, whose digest may be known, or rebuilt.
        let stored_digest = |c: &[u8]| match (view.content, digest) {
            (Some(own), Some(d)) if std::ptr::eq(own, c) => d,
            _ => Digest::of(c),
        };
        let held = content.is_some();
        let keeps_content = matches!(
            kind,
            pb::EntryKind::MessageSent
                | pb::EntryKind::MessageReceived
                | pb::EntryKind::ReceiptReceived
                | pb::EntryKind::CheckpointCosigned
                | pb::EntryKind::CheckpointWitnessed
                | pb::EntryKind::Reconciliation
        );
        let sealed = !entry.sealed_sha256.is_empty();
        // Sealed content is checked against its sealed digest, and opened when the key is
        // here; plain content is used as stored.
        let bytes = match (content, sealed) {
            (Some(c), true) => {
                if stored_digest(&c).0[..] != entry.sealed_sha256[..] {
                    return Err(Problem::SealedDigest);
                }
                match self.inner.key.as_deref() {
                    Some(key) => Some(key.open(expected, &entry.content_sha256, &c)?.into()),
                    None => None,
                }
            }
            (content, _) => content,
        };
        let mut redacted = false;
        // Content opened here is hashed here; content stored in plain is the record's own.
        let plain_digest = |c: &[u8]| {
            if sealed {
                Digest::of(c)
            } else {
                stored_digest(c)
            }
        };
        match &bytes {
            Some(c) if plain_digest(c).0[..] != entry.content_sha256[..] => {
                return Err(Problem::ContentDigest);
            }
            None if (keeps_content && !sealed) || (sealed && !held) => {
                self.check_redacted(expected)?;
                redacted = true;
            }
            _ => {}
        }
        if kind == pb::EntryKind::Redaction {
            self.check_redaction(entry)?;
        }
        Ok(CheckedContent {
            bytes,
            sealed,
            redacted,
        })
    }

    /// A message whose content is gone must have been redacted by a later redaction entry.
    fn check_redacted(&self, sequence: u64) -> Result<(), Problem> {
        let by = self
            .redaction_of(sequence)
            .map_err(Problem::Unreadable)?
            .ok_or(Problem::ContentMissing)?;
        let redaction = self
            .entry(by)
            .map_err(Problem::Unreadable)?
            .ok_or(Problem::ContentMissing)?;
        if redaction.kind() != pb::EntryKind::Redaction
            || redaction.entry.refers_to != sequence
            || by <= sequence
        {
            return Err(Problem::ContentMissing);
        }
        Ok(())
    }

    /// A redaction must name an earlier message whose content is no longer held.
    fn check_redaction(&self, entry: &pb::LogEntry) -> Result<(), Problem> {
        let target = entry.refers_to;
        let message = self
            .entry(target)
            .map_err(Problem::Unreadable)?
            .filter(|_| target < entry.sequence)
            .ok_or(Problem::RedactsLater { target })?;
        if !is_message(message.kind()) || message.entry.message_id != entry.message_id {
            return Err(Problem::RedactsOther {
                target,
                message_id: entry.message_id.clone(),
            });
        }
        let held = match self
            .store()
            .map_err(Problem::Unreadable)?
            .tree
            .get(key::seq(key::ENTRY, target))?
        {
            Some(stored) => record::View::parse(&stored)
                .map_err(Problem::Record)?
                .holds_content(),
            None => false,
        };
        if held {
            return Err(Problem::RedactedHeld { target });
        }
        Ok(())
    }

    /// Every key and value of the views (not the chain, content or issued receipts), in key
    /// order: what [`Self::rebuild_views`] must reproduce.
    pub fn views(&self) -> Result<Vec<ViewRecord>, LogError> {
        let mut out = Vec::new();
        for prefix in VIEW_PREFIXES {
            for kv in self.store()?.tree.scan_prefix([prefix]) {
                let (k, v) = kv?;
                if prefix != key::TAGS {
                    out.push((k.to_vec(), v.to_vec()));
                    continue;
                }
                // How messages are grouped into tag-log values depends on the writes; what
                // each message is tagged with does not.
                let tagged = index::decode(&v).map_err(|e| LogError::Corrupt {
                    sequence: key::tail_seq(&k).unwrap_or(0),
                    reason: e.to_string(),
                })?;
                for t in tagged {
                    for tag in t.tags {
                        let mut k = vec![key::TAGS];
                        k.extend_from_slice(&tag);
                        k.extend_from_slice(&t.sequence.to_be_bytes());
                        out.push((k, Vec::new()));
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Throws the views away and rebuilds them from the chain alone. Run with the node stopped.
    /// Returns the number of entries replayed.
    pub fn rebuild_views(&self) -> Result<u64, LogError> {
        self.transact_blocking(|t| {
            let mut rebuilt = Staged::default();
            for prefix in VIEW_PREFIXES {
                for kv in t.scan(prefix) {
                    rebuilt.remove(kv?.0);
                }
            }
            let mut replayed = 0;
            let mut cursors = BTreeMap::new();
            for kv in t.scan(key::ENTRY) {
                let (k, v) = kv?;
                let sequence = key::tail_seq(&k).unwrap_or(0);
                let stored = decode_entry(sequence, parse_record(sequence, &v)?.entry)?;
                for (k, v) in view_updates(&stored.entry, &stored.hash) {
                    match v {
                        Some(v) => rebuilt.insert(k, v),
                        None => rebuilt.remove(k),
                    }
                }
                if let Some(cursor) = received_cursor(&stored.entry) {
                    let highest = cursors.entry(cursor).or_insert(0);
                    *highest = stored.entry.peer_sequence.max(*highest);
                }
                index_record(&mut rebuilt, t.key, &stored, &parse_record(sequence, &v)?)?
                    .map_err(|sealed| SealError::NoKey { sequence: sealed })?;
                replayed += 1;
            }
            for (k, highest) in cursors {
                rebuilt.insert(k, highest.to_be_bytes().to_vec());
            }
            rebuilt.insert(key::SEARCH_COMPLETE, b"1".to_vec());
            t.own.absorb(rebuilt);
            Ok(replayed)
        })
        .and_then(|replayed| {
            // The loader started at open must not add the tag log it read to the index read
            // again here.
            self.inner.wait_for_loader();
            self.inner.search.reset();
            let tree = self.store()?.tree.clone();
            self.inner.search.loaded(read_tag_log(&tree));
            Ok(replayed)
        })
    }

    /// Copies every live key of the log into a new data directory `to`, and verifies the copy.
    /// sled is log-structured: bytes of removed keys (redacted content) can stay in its files
    /// until it reuses the space; the copy holds none of them. Run with the node stopped; the
    /// copy then replaces the data directory. Returns the number of entries verified.
    pub fn compact_into(&self, to: &Path) -> Result<u64, LogError> {
        let not_empty = std::fs::read_dir(to).is_ok_and(|mut d| d.next().is_some());
        if not_empty {
            return Err(LogError::Open {
                path: to.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "the target directory is not empty",
                ),
            });
        }
        {
            let (db, _) = open_db(to, self.inner.compression, DEFAULT_CACHE_MIB)?;
            let tree = db.open_tree("exchange-log")?;
            let mut batch = sled::Batch::default();
            let mut in_batch = 0;
            for kv in self.store()?.tree.iter() {
                let (k, v) = kv?;
                batch.insert(k, v);
                in_batch += 1;
                if in_batch == 4096 {
                    tree.apply_batch(std::mem::take(&mut batch))?;
                    in_batch = 0;
                }
            }
            tree.apply_batch(batch)?;
            db.flush()?;
            let path = to.join("db");
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|source| LogError::Open { path, source })?;
        }
        let copy = Self::open(
            to,
            LogOptions::from(Durability::Flush).with_key(self.inner.key.clone()),
        )?;
        copy.verify().map_err(|e| LogError::Corrupt {
            sequence: e.sequence,
            reason: format!("the compacted copy does not verify: {}", e.problem),
        })
    }

    /// Flushes everything to disk; used at shutdown.
    pub fn flush(&self) -> Result<(), LogError> {
        self.store()?.db.flush()?;
        Ok(())
    }
}

/// Opens sled in `dir`, waiting up to a second for the directory lock: a handle this process
/// has just dropped may still be shutting down sled's own threads. Another process holding the
/// lock (a running node) is still an error after that. A new database takes `compression`, an
/// existing one keeps what it was created with. Returns the database and its compression.
fn open_db(
    dir: &Path,
    compression: Compression,
    cache_mib: u64,
) -> Result<(sled::Db, Compression), LogError> {
    // sled refuses to open a database with another compression setting than it was made with,
    // and records that setting in its `conf` file: text lines followed by a checksum.
    let compression = match std::fs::read(dir.join("conf")) {
        Ok(conf) if conf.windows(21).any(|w| w == b"use_compression: true") => Compression::Zstd,
        Ok(conf) if conf.windows(22).any(|w| w == b"use_compression: false") => Compression::None,
        _ => compression,
    };
    let mut attempts = 0;
    loop {
        match sled::Config::new()
            .path(dir)
            .cache_capacity(cache_mib.saturating_mul(1024 * 1024))
            .use_compression(compression == Compression::Zstd)
            .compression_factor(1)
            .open()
        {
            Err(sled::Error::Io(e))
                if attempts < 50 && e.to_string().contains("could not acquire lock") =>
            {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                return Err(LogError::Locked {
                    path: dir.to_owned(),
                });
            }
            other => return Ok((other?, compression)),
        }
    }
}

/// Where the log's store lives and how it is opened: what a reopen needs.
#[derive(Debug, Clone)]
struct Place {
    dir: PathBuf,
    compression: Compression,
    cache_mib: u64,
    durability: Durability,
}

impl Place {
    /// Opens the store; returns it with the compression it keeps.
    fn open(&self) -> Result<(Store, Compression), LogError> {
        let dir = &self.dir;
        let (db, compression) =
            open_db(dir, self.compression, self.cache_mib).map_err(|e| e.in_dir(dir))?;
        let tree = db
            .open_tree("exchange-log")
            .map_err(|e| LogError::from(e).in_dir(dir))?;
        check_layout(&tree, dir)?;
        let data_file = match self.durability {
            Durability::Fsync => {
                let path = dir.join("db");
                Some(File::open(&path).map_err(|source| LogError::Open { path, source })?)
            }
            Durability::Flush => None,
        };
        let path = dir.join(MARKER_FILE);
        let marker = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| LogError::Open { path, source })?;
        Ok((
            Store {
                db,
                tree,
                data_file,
                marker: Some(marker),
            },
            compression,
        ))
    }

    /// Holds the store's last entry `last` against the head marker: the store must still hold
    /// every entry that was made durable, unchanged. sled recovers a data file damaged in the
    /// middle by stopping at the damage, so without this a damaged log would open shorter, and
    /// verify, as if nothing had been written after the damage.
    fn check_marker(&self, tree: &sled::Tree, last: u64) -> Result<(), LogError> {
        let path = self.dir.join(MARKER_FILE);
        let Ok(bytes) = std::fs::read(&path) else {
            return Ok(());
        };
        let Some((sequence, hash, strict)) = parse_marker(&bytes) else {
            // Empty (a new log) or torn by a crash mid-write: nothing to hold the store to.
            return Ok(());
        };
        let found = if last < sequence {
            Err(LogError::Truncated {
                path: self.dir.join("db"),
                found: last,
                expected: sequence,
                marker: path,
            })
        } else if sequence > 0
            && read_entry(tree, sequence)
                .map_err(|e| e.in_dir(&self.dir))?
                .is_none_or(|e| e.hash != hash)
        {
            Err(LogError::Rewritten {
                path: self.dir.join("db"),
                sequence,
            })
        } else {
            Ok(())
        };
        match found {
            Err(e) if !strict => {
                // Made durable by flush only: a power cut may lose the last writes, as that
                // mode allows. Said, not refused.
                tracing::warn!(error = %e, "the log ends before its head marker; with durability = \"flush\" a power cut can do this");
                Ok(())
            }
            other => other,
        }
    }
}

/// Holds the store to the layout this code writes; a new store takes it.
fn check_layout(tree: &sled::Tree, dir: &Path) -> Result<(), LogError> {
    let in_dir = |e: sled::Error| LogError::from(e).in_dir(dir);
    match tree.get(key::LAYOUT).map_err(in_dir)? {
        Some(found) if found == LAYOUT => Ok(()),
        Some(found) => Err(LogError::UnknownLayout {
            path: dir.to_owned(),
            found: String::from_utf8_lossy(&found).chars().take(16).collect(),
        }),
        None if tree.is_empty() => {
            // Made durable with the log's first write.
            tree.insert(key::LAYOUT, LAYOUT).map_err(in_dir)?;
            Ok(())
        }
        None => Err(LogError::OldLayout {
            path: dir.to_owned(),
        }),
    }
}

/// A head marker: the sequence and hash of the last durable entry, and whether it was written
/// under fsync.
fn parse_marker(bytes: &[u8]) -> Option<(u64, Digest, bool)> {
    if bytes.len() != MARKER_TAG.len() + 1 + 8 + 32 || !bytes.starts_with(MARKER_TAG) {
        return None;
    }
    let strict = match bytes[7] {
        MARKER_FSYNC => true,
        MARKER_FLUSH => false,
        _ => return None,
    };
    let sequence = u64::from_be_bytes(bytes[8..16].try_into().ok()?);
    let hash = Digest(bytes[16..48].try_into().ok()?);
    Some((sequence, hash, strict))
}

/// The number of the next entry and the hash of the last one in `tree`.
fn tail(tree: &sled::Tree) -> Result<(u64, Digest), LogError> {
    match tree.scan_prefix([key::ENTRY]).next_back() {
        None => Ok((1, GENESIS)),
        Some(kv) => {
            let (k, v) = kv?;
            let sequence = key::tail_seq(&k).ok_or(LogError::Corrupt {
                sequence: 0,
                reason: "malformed entry key".into(),
            })?;
            Ok((sequence + 1, entry_hash(parse_record(sequence, &v)?.entry)))
        }
    }
}

/// The entries of a tree under one key prefix, in key order, read by a thread of their own a
/// few chunks ahead of whoever takes them, each with what `prepare` works out of its value
/// there. Dropping it stops that thread and waits for it, so the store is not held open behind
/// the caller's back. If the thread stops before the end (it panicked), the last item is an
/// error: a reader of the whole log never takes a part of it for the whole.
struct ReadAhead<T> {
    chunks: Option<mpsc::Receiver<Vec<Prepared<T>>>>,
    current: std::vec::IntoIter<Prepared<T>>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// Whether the thread said it reached the end (with an empty chunk).
    ended: bool,
}

/// A key and its value as a scan reads them, with what was worked out of the value.
type Prepared<T> = sled::Result<(sled::IVec, sled::IVec, T)>;

/// Entries the reading thread hands over at a time.
const READ_AHEAD_CHUNK: usize = 256;

impl<T: Send + 'static> ReadAhead<T> {
    fn new(tree: sled::Tree, prefix: u8, prepare: fn(&[u8]) -> T) -> Self {
        let (sender, chunks) = mpsc::sync_channel(4);
        let reader = std::thread::spawn(move || {
            let mut chunk = Vec::with_capacity(READ_AHEAD_CHUNK);
            for kv in tree.scan_prefix([prefix]) {
                let failed = kv.is_err();
                chunk.push(kv.map(|(k, v)| {
                    let prepared = prepare(&v);
                    (k, v, prepared)
                }));
                if chunk.len() == READ_AHEAD_CHUNK || failed {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(READ_AHEAD_CHUNK));
                    // Nobody takes any more, or the scan cannot go on.
                    if sender.send(full).is_err() || failed {
                        return;
                    }
                }
            }
            if !chunk.is_empty() && sender.send(chunk).is_err() {
                return;
            }
            // The end: every chunk before it is full, or ends with a failed read.
            let _ = sender.send(Vec::new());
        });
        Self {
            chunks: Some(chunks),
            current: Vec::new().into_iter(),
            reader: Some(reader),
            ended: false,
        }
    }
}

impl<T> Iterator for ReadAhead<T> {
    type Item = Prepared<T>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(kv) = self.current.next() {
                return Some(kv);
            }
            if self.ended {
                return None;
            }
            match self.chunks.as_ref()?.recv() {
                Ok(chunk) if chunk.is_empty() => self.ended = true,
                Ok(chunk) => self.current = chunk.into_iter(),
                Err(_) => {
                    self.ended = true;
                    return Some(Err(sled::Error::Io(std::io::Error::other(
                        "the thread reading the log ahead stopped before the end",
                    ))));
                }
            }
        }
    }
}

impl<T> Drop for ReadAhead<T> {
    fn drop(&mut self) {
        self.chunks = None;
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// The hashes verification needs of a stored record, worked out by the thread that reads the
/// records ahead: its entry's hash, and the digest of the content it holds in itself. `None`
/// where the record cannot be read (verification then finds why) or holds no content.
#[derive(Debug, Default, Clone, Copy)]
struct RecordHashes {
    entry: Option<Digest>,
    content: Option<Digest>,
}

impl RecordHashes {
    fn of(value: &[u8]) -> Self {
        match record::View::parse(value) {
            Ok(view) => Self {
                entry: Some(entry_hash(view.entry)),
                content: view.content.map(Digest::of),
            },
            Err(_) => Self::default(),
        }
    }
}

/// The changes an entry makes to the views beside the chain: the head, the message index, the
/// outbox, receipts and failures by message, and references. `None` removes a key. The same
/// function serves appends and rebuilds, so a rebuilt view equals the one kept while running.
/// A peer's cursor, the one view that depends on what it held before, is [`received_cursor`].
fn view_updates(entry: &pb::LogEntry, hash: &Digest) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let sequence = entry.sequence;
    let seq_bytes = || Some(sequence.to_be_bytes().to_vec());
    let mut head = sequence.to_be_bytes().to_vec();
    head.extend_from_slice(&hash.0);
    let mut updates = vec![(key::HEAD.to_vec(), Some(head))];
    let kind = pb::EntryKind::try_from(entry.kind).unwrap_or_default();
    match kind {
        pb::EntryKind::MessageSent => {
            updates.push((
                key::message(&own_sender_marker(), &entry.message_id),
                seq_bytes(),
            ));
            updates.push((key::pending(&entry.peer, sequence), Some(Vec::new())));
            updates.push((
                key::per_peer(key::SENT_TO, &entry.peer, sequence),
                Some(Vec::new()),
            ));
        }
        pb::EntryKind::MessageReceived => {
            updates.push((key::message(&entry.peer, &entry.message_id), seq_bytes()));
        }
        pb::EntryKind::ReceiptReceived => {
            updates.push((key::seq(key::RECEIPT_FOR, entry.refers_to), seq_bytes()));
            updates.push((key::pending(&entry.peer, entry.refers_to), None));
        }
        pb::EntryKind::DeliveryFailed => {
            updates.push((
                key::seq(key::FAILED, entry.refers_to),
                Some(entry.reason.as_bytes().to_vec()),
            ));
            updates.push((key::pending(&entry.peer, entry.refers_to), None));
        }
        pb::EntryKind::CheckpointCosigned => {
            updates.push((key::peer_prefix(key::COSIGNED, &entry.peer), seq_bytes()));
        }
        pb::EntryKind::CheckpointWitnessed => {
            updates.push((key::peer_prefix(key::WITNESSED, &entry.peer), seq_bytes()));
        }
        pb::EntryKind::Reconciliation => {
            updates.push((key::seq(key::RECONCILED, entry.refers_to), seq_bytes()));
        }
        pb::EntryKind::Redaction => {
            updates.push((key::seq(key::REDACTED, entry.refers_to), seq_bytes()));
        }
        pb::EntryKind::Deadline => {
            updates.push((key::deadline(entry.refers_to, &entry.reason), seq_bytes()));
        }
        pb::EntryKind::Refusal | pb::EntryKind::Consultation | pb::EntryKind::Unspecified => {}
    }
    if !entry.reference.is_empty()
        && matches!(
            kind,
            pb::EntryKind::MessageSent | pb::EntryKind::MessageReceived
        )
    {
        updates.push((key::reference(&entry.reference, sequence), Some(Vec::new())));
    }
    // A copy is found from the first copy as a message referring to it is, so that the case
    // holds every copy.
    if !entry.copy_of.is_empty() && kind == pb::EntryKind::MessageSent {
        updates.push((key::reference(&entry.copy_of, sequence), Some(Vec::new())));
    }
    updates
}

/// Keys and values a record's content shares with other records.
type SharedKeys = Vec<(Vec<u8>, Vec<u8>)>;

/// The record of a new entry, and the keys its content shares with others: a peer's batch
/// receipt is held in parts, its batch's signature and certificate stored once (the caller
/// stores each shared key unless it is held already); any other content is held whole.
fn new_record(
    entry: &[u8],
    kind: pb::EntryKind,
    content: Option<&[u8]>,
    issued: Option<&[u8]>,
    issued_signed: Option<&[u8]>,
) -> (Vec<u8>, SharedKeys) {
    let split = match content {
        Some(c) if kind == pb::EntryKind::ReceiptReceived => record::split_receipt(c),
        _ => None,
    };
    let mut shared = Vec::new();
    let peer_receipt = split.map(|split| {
        shared.push((
            key::certificate(&Digest::of(&split.certificate)),
            split.certificate,
        ));
        shared.push((
            key::peer_batch(&split.own.signature_sha256),
            split.batch.encode_to_vec(),
        ));
        split.own.encode_to_vec()
    });
    let stored = record::View {
        entry,
        content: content.filter(|_| peer_receipt.is_none()),
        issued,
        issued_signed: issued_signed.filter(|_| issued.is_none()),
        peer_receipt: peer_receipt.as_deref(),
    };
    (stored.encode(), shared)
}

/// Stages the tags of a message's record, derived from its content as held. `Err` with the
/// sequence when the content is sealed and no key opens it.
fn index_record(
    staged: &mut Staged,
    key: Option<&LogKey>,
    stored: &StoredEntry,
    view: &record::View<'_>,
) -> Result<Result<(), u64>, LogError> {
    let sequence = stored.entry.sequence;
    if !is_message(stored.kind()) || view.content.is_none() {
        return Ok(Ok(()));
    }
    let Some(plain) = readable_content(sequence, view, key)? else {
        return Ok(Err(sequence));
    };
    let tags: Vec<_> = message_terms(&plain)
        .iter()
        .map(|term| seal::index_tag(key, &term.hashed_bytes()))
        .collect();
    if !tags.is_empty() {
        staged.tagged.push(index::Tagged { sequence, tags });
    }
    Ok(Ok(()))
}

/// Every message of the tag log, or why it cannot be read.
fn read_tag_log(tree: &sled::Tree) -> Result<index::Read, String> {
    let mut read = index::Read::default();
    for kv in tree.scan_prefix([key::TAGS]) {
        let (_, v) = kv.map_err(|e| format!("reading the search index: {e}"))?;
        read.add(&v).map_err(|e| e.to_string())?;
    }
    Ok(read)
}

/// A message record's content in plain: opened with `key` when sealed; `None` when it is not
/// held, or sealed and `key` is `None`.
fn readable_content<'a>(
    sequence: u64,
    view: &record::View<'a>,
    key: Option<&LogKey>,
) -> Result<Option<std::borrow::Cow<'a, [u8]>>, LogError> {
    match view.content {
        Some(content) => in_plain(
            sequence,
            view.entry,
            std::borrow::Cow::Borrowed(content),
            key,
        ),
        None => Ok(None),
    }
}

/// Content as held, in plain: as it is, or opened with `key` when sealed; `None` when it is
/// sealed and there is no key. `entry` is the record's encoded entry, whose content digest the
/// seal is bound to.
fn in_plain<'a>(
    sequence: u64,
    entry: &[u8],
    held: std::borrow::Cow<'a, [u8]>,
    key: Option<&LogKey>,
) -> Result<Option<std::borrow::Cow<'a, [u8]>>, LogError> {
    if !seal::is_sealed(&held) {
        return Ok(Some(held));
    }
    let Some(key) = key else {
        return Ok(None);
    };
    let entry = decode_entry(sequence, entry)?;
    Ok(Some(std::borrow::Cow::Owned(key.open(
        sequence,
        &entry.entry.content_sha256,
        &held,
    )?)))
}

/// The search terms of a message's envelope. Content that does not decode as an envelope names
/// nothing to search for: it was never accepted as one, and its digest is the audit's to check,
/// not a reason to stop a rebuild or a redaction.
fn message_terms(plain: &[u8]) -> Vec<Term> {
    pb::Envelope::decode(plain)
        .map(|envelope| search::distinct_terms(&envelope))
        .unwrap_or_default()
}

/// The key of the peer's cursor a received message moves: the highest sender sequence held
/// from that peer, which the entry's `peer_sequence` replaces if it is higher.
fn received_cursor(entry: &pb::LogEntry) -> Option<Vec<u8>> {
    (entry.kind == pb::EntryKind::MessageReceived as i32 && entry.peer_sequence != 0)
        .then(|| key::peer_prefix(key::RECEIVED_FROM, &entry.peer))
}

/// Prefixes of the views: every key under them is derived from the chain alone.
const VIEW_PREFIXES: [u8; 14] = [
    key::TAGS,
    key::DEADLINE,
    key::HEAD[0],
    key::REDACTED,
    key::RECONCILED,
    key::COSIGNED,
    key::WITNESSED,
    key::SENT_TO,
    key::RECEIVED_FROM,
    key::MESSAGE,
    key::RECEIPT_FOR,
    key::PENDING,
    key::REFERENCE,
    key::FAILED,
];

/// An entry's content as verification found it.
struct CheckedContent<'a> {
    /// The content in plain, if held and readable.
    bytes: Option<std::borrow::Cow<'a, [u8]>>,
    /// Encrypted at rest.
    sealed: bool,
    /// Removed by a redaction entry.
    redacted: bool,
}

/// Nothing may lie beyond the last entry: a head naming a later entry means the tail was cut
/// off, unless a running node appended since the scan passed the end.
fn check_tail(tree: &sled::Tree, last: u64) -> Result<(), VerifyError> {
    let unreadable = |e: sled::Error| VerifyError {
        sequence: last + 1,
        problem: e.into(),
    };
    let head = tree.get(key::HEAD).map_err(unreadable)?;
    let named = head
        .as_deref()
        .and_then(|h| h.get(..8))
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_be_bytes);
    if let Some(orphan) = named
        && orphan > last
        && !tree
            .contains_key(key::seq(key::ENTRY, last + 1))
            .map_err(unreadable)?
    {
        return Err(VerifyError {
            sequence: last + 1,
            problem: Problem::Truncated { orphan, last },
        });
    }
    Ok(())
}

/// Decodes the stored entry `expected` and checks its place in the chain after the entry
/// whose hash is `previous`.
pub fn link(expected: u64, previous: &Digest, bytes: &[u8]) -> Result<pb::LogEntry, VerifyError> {
    let bad = |sequence: u64, problem: Problem| VerifyError { sequence, problem };
    let entry = pb::LogEntry::decode(bytes).map_err(|e| bad(expected, Problem::Undecodable(e)))?;
    if entry.sequence != expected {
        return Err(bad(
            expected,
            Problem::Moved {
                found: entry.sequence,
            },
        ));
    }
    if entry.previous_hash != previous.0 {
        // Either the entry before was altered after this one was written, or this one's link
        // was: name the earlier, the first that no longer matches the record.
        let before = expected.saturating_sub(1);
        return Err(bad(
            before,
            Problem::Altered {
                at: before,
                next: expected,
            },
        ));
    }
    Ok(entry)
}

/// SHA-256(0x00 || encoded entry), the RFC 6962 leaf hash of the entry.
pub fn entry_hash(encoded: &[u8]) -> Digest {
    Digest::of_parts(&[&[0], encoded])
}

/// Issues again, in the job `t`, every receipt left unsigned by a stop. A write stores its
/// receipts and their batch together, so only a store written otherwise (by an earlier
/// version, or changed by hand) holds them; they are the receipts of the last write that
/// issued any, found from the last issued one: a read of a few keys.
fn sign_unsigned(t: &mut Txn<'_>) -> Result<usize, LogError> {
    let Some(last) = read_seq(&*t, key::LAST_ISSUED)? else {
        return Ok(0);
    };
    let batch = match t.get(&key::seq(key::ENTRY, last))? {
        Some(stored) => match parse_record(last, &stored)?.issued {
            Some(issued) => {
                pb::IssuedReceipt::decode(issued)
                    .map_err(|e| LogError::Corrupt {
                        sequence: last,
                        reason: format!("issued receipt: {e}"),
                    })?
                    .batch
            }
            None => return Ok(0),
        },
        // Cut off after the last receipt (a clean truncation): nothing left to sign.
        None => return Ok(0),
    };
    if t.contains_key(&key::seq(key::RECEIPT_BATCH, batch))? {
        return Ok(0);
    }
    let mut unsigned = Vec::new();
    for sequence in batch..=last {
        if let Issued::Unsigned { .. } = issued_state(&*t, sequence, None)? {
            unsigned.push(sequence);
        }
    }
    for &sequence in &unsigned {
        t.reissue_receipt(sequence)?;
    }
    Ok(unsigned.len())
}

/// Which field of a receipt this node issued does not describe its entry, if any.
pub fn receipt_mismatch(
    receipt: &pb::Receipt,
    entry: &pb::LogEntry,
    hash: &Digest,
) -> Option<&'static str> {
    if receipt.message_id != entry.message_id {
        Some("message id")
    } else if receipt.envelope_sha256 != entry.content_sha256 {
        Some("envelope digest")
    } else if receipt.log_sequence != entry.sequence {
        Some("log sequence")
    } else if receipt.entry_hash != hash.0 {
        Some("entry hash")
    } else if receipt.sender != entry.peer {
        Some("sender")
    } else {
        None
    }
}

/// A stored receipt batch: its signature, its tree and its signer's certificate.
#[derive(Debug)]
struct StoredBatch {
    signed: receipt::SignedBatch,
    certificate: Vec<u8>,
}

fn read_batch(tree: &impl Read, id: u64) -> Result<StoredBatch, LogError> {
    let bytes = tree
        .get(&key::seq(key::RECEIPT_BATCH, id))?
        .ok_or_else(|| LogError::Corrupt {
            sequence: id,
            reason: "the receipt batch is missing".into(),
        })?;
    batch_of(tree, id, &bytes)
}

/// The receipt batch `id` stored as `bytes`, with its signer's certificate and whole tree.
fn batch_of(tree: &impl Read, id: u64, bytes: &[u8]) -> Result<StoredBatch, LogError> {
    let corrupt = |reason: String| LogError::Corrupt {
        sequence: id,
        reason,
    };
    let batch =
        pb::ReceiptBatch::decode(bytes).map_err(|e| corrupt(format!("receipt batch: {e}")))?;
    let certificate_sha256 = <[u8; 32]>::try_from(batch.signer_certificate_sha256.as_slice())
        .map_err(|_| corrupt("receipt batch: the certificate digest is not 32 bytes".into()))?;
    let certificate = tree
        .get(&key::certificate(&Digest(certificate_sha256)))?
        .ok_or_else(|| corrupt("receipt batch: its signer certificate is missing".into()))?;
    if Digest::of(&certificate).0 != certificate_sha256 {
        return Err(corrupt(
            "receipt batch: the stored signer certificate does not match its digest".into(),
        ));
    }
    if batch.leaves.is_empty() || batch.leaves.len() % 32 != 0 {
        return Err(corrupt(
            "receipt batch: the leaves are not a whole number of 32-byte hashes".into(),
        ));
    }
    let leaves = batch
        .leaves
        .chunks_exact(32)
        .map(|c| Digest(c.try_into().unwrap_or([0; 32])))
        .collect();
    Ok(StoredBatch {
        signed: receipt::SignedBatch {
            signature_scheme: batch.signature_scheme,
            signature: batch.signature,
            tree: crate::crypto::merkle::Tree::new(leaves),
        },
        certificate: certificate.to_vec(),
    })
}

/// Receipt batches already read, where [`issued_of`] looks before it reads one.
trait BatchesRead {
    /// Batch `id`, if it is at hand.
    fn find(&self, id: u64) -> Option<Arc<StoredBatch>>;
    /// Batch `id`, just read.
    fn keep(&self, id: u64, batch: Arc<StoredBatch>);
}

/// The last batch read: receipts of one write are read one after another.
impl BatchesRead for BatchCache {
    fn find(&self, id: u64) -> Option<Arc<StoredBatch>> {
        self.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .filter(|(held, _)| *held == id)
            .map(|(_, b)| b.clone())
    }

    fn keep(&self, id: u64, batch: Arc<StoredBatch>) {
        *self
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((id, batch));
    }
}

/// Batches a thread of their own reads in key order ahead of verification, which takes them
/// as the entries it checks name them. A batch behind the last one taken, or one the thread
/// did not get to, is read by verification itself and kept while its receipts follow.
struct BatchesAhead {
    ahead: mpsc::Receiver<(u64, Arc<StoredBatch>)>,
    last: std::sync::Mutex<Option<(u64, Arc<StoredBatch>)>>,
    read: BatchCache,
}

/// Batches the reading thread may be ahead of verification.
const BATCHES_AHEAD: usize = 8;

impl BatchesRead for BatchesAhead {
    fn find(&self, id: u64) -> Option<Arc<StoredBatch>> {
        if let Some(read) = self.read.find(id) {
            return Some(read);
        }
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            match &*last {
                Some((held, b)) if *held == id => return Some(b.clone()),
                Some((held, _)) if *held > id => return None,
                _ => {}
            }
            *last = Some(self.ahead.recv().ok()?);
        }
    }

    fn keep(&self, id: u64, batch: Arc<StoredBatch>) {
        self.read.keep(id, batch);
    }
}

/// Reads the receipt batches of `tree` in key order, calls `check` on each, and sends it on
/// `ahead` until the receiver is gone. Stops at the first key that is not a batch's (a prefix
/// and a sequence) and at the first batch it cannot read: verification reads what it needs
/// from there itself, by each batch's own key, and names what is wrong.
fn read_batches_ahead(
    tree: &sled::Tree,
    check: &(dyn Fn(&receipt::SignedBatch, &[u8]) + Sync),
    ahead: &mpsc::SyncSender<(u64, Arc<StoredBatch>)>,
) {
    for kv in tree.scan_prefix([key::RECEIPT_BATCH]) {
        let Ok((k, v)) = kv else { return };
        let id = match key::tail_seq(&k) {
            Some(id) if k.len() == 9 => id,
            _ => return,
        };
        let Ok(batch) = batch_of(tree, id, &v) else {
            return;
        };
        check(&batch.signed, &batch.certificate);
        if ahead.send((id, Arc::new(batch))).is_err() {
            return;
        }
    }
}

/// The receipt issued for a received message, as stored.
enum Issued {
    None,
    /// Stored with its message, but the node stopped before signing its batch: the encoded
    /// `Receipt`.
    Unsigned {
        receipt: Vec<u8>,
        /// Whether the record keeps it without what its entry gives.
        short: bool,
    },
    /// Signed alone, by a log written before receipts were batched.
    Signed(pb::SignedReceipt),
    /// Signed in a batch: the encoded `Receipt`, its leaf index, and the batch.
    InBatch {
        receipt: Vec<u8>,
        /// The receipt's leaf hash, which is the batch's leaf at `index`.
        leaf: Digest,
        index: usize,
        batch: Arc<StoredBatch>,
        /// Whether the record keeps it without what its entry gives.
        short: bool,
    },
}

impl Issued {
    /// The receipt issued (an encoded `Receipt`), and whether the record keeps it without what
    /// its entry gives; `None` if there is none or it was signed alone.
    fn kept(&self) -> Option<(&[u8], bool)> {
        match self {
            Self::InBatch { receipt, short, .. } | Self::Unsigned { receipt, short } => {
                Some((receipt, *short))
            }
            Self::None | Self::Signed(_) => None,
        }
    }

    /// The signed receipt as its receiver holds it, with its inclusion path; `None` if there
    /// is none or it is not signed.
    fn into_signed(self) -> Option<pb::SignedReceipt> {
        match self {
            Self::Signed(signed) => Some(signed),
            Self::InBatch {
                receipt,
                index,
                batch,
                ..
            } => Some(batch.signed.receipt(index, receipt, &batch.certificate)),
            Self::None | Self::Unsigned { .. } => None,
        }
    }
}

/// The receipt issued for the message at `sequence`, rebuilt from its batch.
fn issued_state(
    tree: &impl Read,
    sequence: u64,
    cache: Option<&dyn BatchesRead>,
) -> Result<Issued, LogError> {
    match tree.get(&key::seq(key::ENTRY, sequence))? {
        Some(stored) => issued_of(
            tree,
            sequence,
            &parse_record(sequence, &stored)?,
            None,
            cache,
        ),
        None => Ok(Issued::None),
    }
}

/// The receipt issued for the message whose record is `view`, rebuilt from its batch and, if
/// the record keeps it without what its entry gives, from the entry (`entry`, if decoded already).
fn issued_of(
    tree: &impl Read,
    sequence: u64,
    view: &record::View<'_>,
    entry: Option<(&pb::LogEntry, &Digest)>,
    cache: Option<&dyn BatchesRead>,
) -> Result<Issued, LogError> {
    let corrupt = |e: prost::DecodeError| LogError::Corrupt {
        sequence,
        reason: format!("issued receipt: {e}"),
    };
    let Some(bytes) = view.issued else {
        return match view.issued_signed {
            Some(signed) => Ok(Issued::Signed(
                pb::SignedReceipt::decode(signed).map_err(corrupt)?,
            )),
            None => Ok(Issued::None),
        };
    };
    let mut issued = pb::IssuedReceipt::decode(bytes).map_err(corrupt)?;
    if issued.from_entry {
        let decoded;
        let (entry, hash) = match entry {
            Some(given) => given,
            None => {
                decoded = decode_entry(sequence, view.entry)?;
                (&decoded.entry, &decoded.hash)
            }
        };
        issued.receipt = record::whole_receipt(&issued.receipt, entry, hash).map_err(|reason| {
            LogError::Corrupt {
                sequence,
                reason: format!("issued receipt: {reason}"),
            }
        })?;
    }
    let batch = match cache.and_then(|c| c.find(issued.batch)) {
        Some(b) => b,
        None if !tree.contains_key(&key::seq(key::RECEIPT_BATCH, issued.batch))? => {
            return Ok(Issued::Unsigned {
                receipt: issued.receipt,
                short: issued.from_entry,
            });
        }
        None => {
            let b = Arc::new(read_batch(tree, issued.batch)?);
            if let Some(c) = cache {
                c.keep(issued.batch, b.clone());
            }
            b
        }
    };
    let index = usize::try_from(issued.index).unwrap_or(usize::MAX);
    let leaf = receipt::leaf_hash(&issued.receipt);
    match batch.signed.tree.leaf(index) {
        None => {
            return Err(LogError::Corrupt {
                sequence,
                reason: format!(
                    "issued receipt: index {} is outside its batch of {}",
                    issued.index,
                    batch.signed.tree.size()
                ),
            });
        }
        Some(at_index) if at_index != leaf => {
            return Err(LogError::Corrupt {
                sequence,
                reason: format!(
                    "issued receipt does not match leaf {} of its batch",
                    issued.index
                ),
            });
        }
        Some(_) => {}
    }
    Ok(Issued::InBatch {
        receipt: issued.receipt,
        leaf,
        index,
        batch,
        short: issued.from_entry,
    })
}

fn read_seq(tree: &impl Read, k: &[u8]) -> Result<Option<u64>, LogError> {
    Ok(tree
        .get(k)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map(u64::from_be_bytes))
}

fn read_entry(tree: &impl Read, sequence: u64) -> Result<Option<StoredEntry>, LogError> {
    tree.get(&key::seq(key::ENTRY, sequence))?
        .map(|v| decode_entry(sequence, parse_record(sequence, &v)?.entry))
        .transpose()
}

fn decode_entry(sequence: u64, bytes: &[u8]) -> Result<StoredEntry, LogError> {
    let entry = pb::LogEntry::decode(bytes).map_err(|e| LogError::Corrupt {
        sequence,
        reason: e.to_string(),
    })?;
    Ok(StoredEntry {
        entry,
        hash: entry_hash(bytes),
    })
}

/// The stored record of entry `sequence`, read in place.
fn parse_record(sequence: u64, bytes: &[u8]) -> Result<record::View<'_>, LogError> {
    record::View::parse(bytes).map_err(|reason| LogError::Corrupt {
        sequence,
        reason: format!("stored record: {reason}"),
    })
}

/// A peer's receipt batch read last: a sender's receipts come a batch at a time.
type PeerBatchCache = std::sync::Mutex<Option<(Vec<u8>, Arc<(pb::PeerBatch, Vec<u8>)>)>>;

/// The content the record `view` keeps for entry `sequence`, as stored: whole, or a peer's
/// receipt put back together from its parts.
fn held_content<'a>(
    tree: &impl Read,
    sequence: u64,
    view: &record::View<'a>,
    cache: &PeerBatchCache,
) -> Result<Option<std::borrow::Cow<'a, [u8]>>, LogError> {
    if let Some(content) = view.content {
        return Ok(Some(std::borrow::Cow::Borrowed(content)));
    }
    let Some(part) = view.peer_receipt else {
        return Ok(None);
    };
    let corrupt = |reason: String| LogError::Corrupt { sequence, reason };
    let own = pb::PeerReceipt::decode(part).map_err(|e| corrupt(format!("peer receipt: {e}")))?;
    let batch_key = key::peer_batch(&own.signature_sha256);
    let cached = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()
        .filter(|(k, _)| *k == batch_key)
        .map(|(_, b)| b.clone());
    let shared = match cached {
        Some(shared) => shared,
        None => {
            let bytes = tree
                .get(&batch_key)?
                .ok_or_else(|| corrupt("the peer's receipt batch is missing".into()))?;
            let batch = pb::PeerBatch::decode(bytes.as_ref())
                .map_err(|e| corrupt(format!("peer receipt batch: {e}")))?;
            let digest =
                <[u8; 32]>::try_from(batch.signer_certificate_sha256.as_slice()).map_err(|_| {
                    corrupt("peer receipt batch: the certificate digest is not 32 bytes".into())
                })?;
            let certificate = tree
                .get(&key::certificate(&Digest(digest)))?
                .ok_or_else(|| {
                    corrupt("peer receipt batch: its signer certificate is missing".into())
                })?;
            if Digest::of(&certificate).0 != digest {
                return Err(corrupt(
                    "peer receipt batch: the stored signer certificate does not match its digest"
                        .into(),
                ));
            }
            let shared = Arc::new((batch, certificate.to_vec()));
            *cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some((batch_key, shared.clone()));
            shared
        }
    };
    Ok(Some(std::borrow::Cow::Owned(record::join_receipt(
        &own, &shared.0, &shared.1,
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch_marked(marker: u8) -> Arc<StoredBatch> {
        Arc::new(StoredBatch {
            signed: receipt::SignedBatch {
                signature_scheme: String::new(),
                signature: vec![marker],
                tree: crate::crypto::merkle::Tree::new(vec![Digest::default()]),
            },
            certificate: Vec::new(),
        })
    }

    fn marker(batch: Option<Arc<StoredBatch>>) -> Option<u8> {
        batch.map(|b| b.signed.signature[0])
    }

    /// The thread reading ahead gives every entry, then ends; one that stops early (a panic
    /// while reading) leaves an error last, never a shorter log that looks whole.
    #[test]
    fn reading_ahead_ends_with_an_error_if_its_thread_stops_early() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("entries").unwrap();
        let count = READ_AHEAD_CHUNK as u64 * 2 + 3;
        for sequence in 1..=count {
            tree.insert(
                key::seq(key::ENTRY, sequence),
                sequence.to_be_bytes().to_vec(),
            )
            .unwrap();
        }
        let read: Vec<u64> = ReadAhead::new(tree.clone(), key::ENTRY, |v| v.len())
            .map(|kv| key::tail_seq(&kv.unwrap().0).unwrap())
            .collect();
        assert_eq!(read, (1..=count).collect::<Vec<_>>());

        let stop_at = READ_AHEAD_CHUNK as u64 + 10;
        tree.insert(key::seq(key::ENTRY, stop_at), b"stop".to_vec())
            .unwrap();
        let items: Vec<_> = ReadAhead::new(tree, key::ENTRY, |v| {
            assert_ne!(v, b"stop", "the reading thread stops here");
        })
        .collect();
        let (last, before) = items.split_last().unwrap();
        assert!(last.is_err(), "the last item is an error");
        assert_eq!(before.len(), READ_AHEAD_CHUNK, "the chunk before the stop");
        assert!(before.iter().all(Result::is_ok));
    }

    #[test]
    fn batches_read_ahead_are_found_in_order_and_the_others_are_left_to_the_reader() {
        let (sender, ahead) = mpsc::sync_channel(8);
        for id in [3, 7, 9] {
            sender.send((id, batch_marked(id as u8))).unwrap();
        }
        let batches = BatchesAhead {
            ahead,
            last: std::sync::Mutex::default(),
            read: BatchCache::default(),
        };
        assert_eq!(marker(batches.find(3)), Some(3));
        assert_eq!(
            marker(batches.find(3)),
            Some(3),
            "the receipts of one batch follow"
        );
        assert_eq!(marker(batches.find(5)), None, "no batch 5 was read ahead");
        assert_eq!(
            marker(batches.find(7)),
            Some(7),
            "looking for 5 kept the batch after it"
        );
        assert_eq!(marker(batches.find(4)), None, "batch 4 lies behind");
        batches.keep(4, batch_marked(44));
        assert_eq!(marker(batches.find(4)), Some(44), "a batch read is kept");
        assert_eq!(marker(batches.find(9)), Some(9));
        drop(sender);
        assert_eq!(
            marker(batches.find(12)),
            None,
            "the thread stopped before batch 12"
        );
    }

    #[test]
    fn verification_hands_each_receipt_batch_to_its_caller_with_its_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let signer = khm_signer();
        let log = ExchangeLog::open(
            dir.path(),
            LogOptions::from(Durability::Flush).with_signer(signer.clone()),
        )
        .unwrap();
        for write in 0..3 {
            log.transact_blocking(move |t| {
                for n in 0..2 {
                    let appended = t.append(NewEntry {
                        kind: pb::EntryKind::MessageReceived,
                        peer: Some("IDN".parse().unwrap()),
                        message_id: format!("IDN-{write}-{n}"),
                        content: Some(b"envelope".to_vec()),
                        ..Default::default()
                    })?;
                    t.issue_receipt(
                        appended.sequence,
                        format!("receipt {write} {n}").into_bytes(),
                    )?;
                }
                Ok(())
            })
            .unwrap();
        }
        let seen = std::sync::Mutex::new(Vec::new());
        let entries = log
            .verify_with_batches(
                |batch, certificate| {
                    seen.lock()
                        .unwrap()
                        .push((batch.tree.size(), certificate == signer.certificate()));
                },
                |_| Ok::<(), std::convert::Infallible>(()),
            )
            .unwrap();
        assert_eq!(entries, 6);
        assert_eq!(seen.into_inner().unwrap(), vec![(2, true); 3]);
    }

    /// A log that signs the receipts it issues, as KHM's node.
    fn signing_log(dir: &Path) -> ExchangeLog {
        ExchangeLog::open(
            dir,
            LogOptions::from(Durability::Flush).with_signer(khm_signer()),
        )
        .unwrap()
    }

    /// Stores message `id` from IDN and issues its receipt, as `change` leaves it. Returns the
    /// message's sequence and the receipt's encoding.
    fn receive_and_issue(
        t: &mut Txn<'_>,
        id: &str,
        change: impl FnOnce(&mut pb::Receipt),
    ) -> Result<(u64, Vec<u8>), LogError> {
        let appended = t.append(NewEntry {
            kind: pb::EntryKind::MessageReceived,
            peer: Some("IDN".parse().unwrap()),
            message_id: id.into(),
            content: Some(b"envelope".to_vec()),
            ..Default::default()
        })?;
        let mut receipt = pb::Receipt {
            message_id: id.into(),
            envelope_sha256: Digest::of(b"envelope").0.to_vec(),
            sender: "IDN".into(),
            receiver: "KHM".into(),
            log_sequence: appended.sequence,
            entry_hash: appended.hash.0.to_vec(),
            stored_at: "2025-05-01T08:00:00Z".into(),
        };
        change(&mut receipt);
        let receipt = receipt.encode_to_vec();
        t.issue_receipt(appended.sequence, receipt.clone())?;
        Ok((appended.sequence, receipt))
    }

    #[test]
    fn a_receipt_is_kept_without_what_its_entry_gives_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let log = signing_log(dir.path());
        // Followed, the entries a write appends are kept for its followers: the same holds.
        let followed = log.subscribe_durable();
        let issued = log
            .transact_blocking(move |t| {
                Ok(vec![
                    receive_and_issue(t, "IDN-1", |_| {})?,
                    // Not its entry's: kept whole, as issued.
                    receive_and_issue(t, "IDN-2", |r| r.sender = "THA".into())?,
                ])
            })
            .unwrap();
        let tree = log.store().unwrap().tree.clone();
        for (n, (sequence, whole)) in issued.iter().enumerate() {
            let stored = tree.get(key::seq(key::ENTRY, *sequence)).unwrap().unwrap();
            let kept = pb::IssuedReceipt::decode(
                parse_record(*sequence, &stored).unwrap().issued.unwrap(),
            )
            .unwrap();
            if n == 0 {
                assert!(kept.from_entry);
                assert_eq!(
                    pb::Receipt::decode(kept.receipt.as_slice()).unwrap(),
                    pb::Receipt {
                        receiver: "KHM".into(),
                        stored_at: "2025-05-01T08:00:00Z".into(),
                        ..Default::default()
                    }
                );
            } else {
                assert!(!kept.from_entry);
                assert_eq!(&kept.receipt, whole);
            }
            let signed = log.issued_receipt(*sequence).unwrap().expect("signed");
            assert_eq!(&signed.receipt, whole, "read back as issued and signed");
        }
        assert_eq!(
            log.verify_with(|_| Ok::<(), std::convert::Infallible>(()))
                .unwrap(),
            2
        );
        drop(followed);
    }

    #[test]
    fn a_receipt_kept_in_any_other_form_than_its_one_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let log = signing_log(dir.path());
        let issued = log
            .transact_blocking(move |t| {
                ["IDN-1", "IDN-2", "IDN-3"]
                    .into_iter()
                    .map(|id| receive_and_issue(t, id, |_| {}))
                    .collect::<Result<Vec<_>, _>>()
            })
            .unwrap();
        let tree = log.store().unwrap().tree.clone();
        let verify = || log.verify_with(|_| Ok::<(), std::convert::Infallible>(()));
        assert_eq!(verify().unwrap(), 3);
        let (sequence, whole) = issued[1].clone();
        let k = key::seq(key::ENTRY, sequence);
        let original = tree.get(&k).unwrap().unwrap();
        let short = {
            let view = parse_record(sequence, &original).unwrap();
            pb::IssuedReceipt::decode(view.issued.unwrap()).unwrap()
        };
        assert!(short.from_entry);
        let stored_as = |issued: pb::IssuedReceipt| {
            let bytes = issued.encode_to_vec();
            let view = parse_record(sequence, &original).unwrap();
            tree.insert(
                &k,
                record::View {
                    issued: Some(&bytes),
                    ..view
                }
                .encode(),
            )
            .unwrap();
            let found = verify().expect_err("a receipt in another form");
            tree.insert(&k, original.clone()).unwrap();
            assert_eq!(found.sequence, sequence, "{found}");
            found.to_string()
        };
        let receiver_at = short.receipt.iter().position(|&b| b == 0x22).unwrap();
        for (case, receipt) in [
            (
                "a length in more bytes than it needs",
                [
                    &short.receipt[..=receiver_at],
                    &[short.receipt[receiver_at + 1] | 0x80, 0x00],
                    &short.receipt[receiver_at + 2..],
                ]
                .concat(),
            ),
            (
                "a field of no known number",
                [&short.receipt[..], &[0x40, 0x01]].concat(),
            ),
            (
                "an empty message id written out",
                [&[0x0a, 0x00][..], &short.receipt].concat(),
            ),
        ] {
            let found = stored_as(pb::IssuedReceipt {
                receipt,
                ..short.clone()
            });
            assert!(found.contains("one stored form"), "{case}: {found}");
        }
        // Kept whole where it can be kept short, after one kept short.
        let found = stored_as(pb::IssuedReceipt {
            receipt: whole,
            from_entry: false,
            ..short.clone()
        });
        assert!(found.contains("keeps whole the receipt"), "{found}");
        assert_eq!(verify().unwrap(), 3, "put back, it verifies");
    }

    fn khm_signer() -> Arc<ReceiptSigner> {
        let at = |file: &str| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("certs-example/khm")
                .join(file)
        };
        let cert = crate::crypto::x509::load_certs(&at("node.pem")).unwrap();
        let key = crate::crypto::x509::load_key(&at("node.key")).unwrap();
        Arc::new(ReceiptSigner::new(&cert[0], &key).unwrap())
    }

    /// Jobs queued together are written together: each sees what the jobs before it staged,
    /// one that fails leaves nothing, and the chain stays whole.
    #[test]
    fn jobs_of_one_write_see_each_other_and_a_failed_one_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = ExchangeLog::open(dir.path(), Durability::Flush).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let khm: CountryCode = "KHM".parse().unwrap();
        let written: Vec<_> = (0..200u32)
            .map(|i| {
                log.enqueue(move |t| {
                    // Each job finds the one before it, staged or stored.
                    let before = i.checked_sub(1).map(|p| format!("G-{p}"));
                    let found = match &before {
                        Some(id) => t.sent(id)?.is_some(),
                        None => true,
                    };
                    let appended = t.append(NewEntry {
                        kind: pb::EntryKind::MessageSent,
                        peer: Some(khm),
                        message_id: format!("G-{i}"),
                        content: Some(vec![7; 64]),
                        ..Default::default()
                    })?;
                    if i % 7 == 3 {
                        // Fails after staging an entry: nothing of it may be written.
                        return Err(LogError::Corrupt {
                            sequence: appended.sequence,
                            reason: "refused by the test".into(),
                        });
                    }
                    Ok(found)
                })
                .unwrap()
            })
            .collect();
        let answers: Vec<_> = runtime.block_on(async {
            let mut answers = Vec::new();
            for w in written {
                answers.push(w.await);
            }
            answers
        });
        for (i, answer) in answers.iter().enumerate() {
            match answer {
                Err(_) => assert_eq!(i % 7, 3, "job {i} failed"),
                // The job after a failed one does not find it.
                Ok(found) => assert_eq!(*found, i % 7 != 4, "job {i}"),
            }
        }
        let kept = (0..200).filter(|i| i % 7 != 3).count() as u64;
        assert_eq!(log.verify().unwrap(), kept);
        let ids: Vec<String> = log
            .range(1, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|e| e.entry.message_id)
            .collect();
        let expected: Vec<String> = (0..200)
            .filter(|i| i % 7 != 3)
            .map(|i| format!("G-{i}"))
            .collect();
        assert_eq!(ids, expected);
        assert!(log.sent("G-3").unwrap().is_none());
    }

    /// A scan inside a job sees the store with this write's staged changes laid over it.
    #[test]
    fn a_scan_inside_a_job_sees_staged_entries_and_removals() {
        let dir = tempfile::tempdir().unwrap();
        let log = ExchangeLog::open(dir.path(), Durability::Flush).unwrap();
        let khm: CountryCode = "KHM".parse().unwrap();
        let message = move |id: &str| NewEntry {
            kind: pb::EntryKind::MessageSent,
            peer: Some(khm),
            message_id: id.into(),
            content: Some(vec![1; 8]),
            ..Default::default()
        };
        log.transact_blocking(move |t| t.append(message("S-1")).map(|_| ()))
            .unwrap();
        let seen = log
            .transact_blocking(move |t| {
                t.append(message("S-2"))?;
                // The receipt for S-1 takes it out of the pending set.
                t.append(NewEntry {
                    kind: pb::EntryKind::ReceiptReceived,
                    peer: Some(khm),
                    message_id: "S-1".into(),
                    content: Some(vec![2; 8]),
                    refers_to: 1,
                    ..Default::default()
                })?;
                t.append(message("S-3"))?;
                t.remove_content(1)?;
                let entries = t.scan(key::ENTRY).count();
                let pending: Vec<u64> = t
                    .scan(key::PENDING)
                    .map(|kv| kv.map(|(k, _)| key::tail_seq(&k).unwrap_or(0)))
                    .collect::<Result<_, _>>()?;
                let held = (t.holds_content(1)?, t.holds_content(2)?);
                Err::<(), _>(LogError::Corrupt {
                    sequence: 0,
                    reason: format!("{entries} {pending:?} {held:?}"),
                })
            })
            .unwrap_err();
        assert!(
            seen.to_string().contains("4 [2, 4] (false, true)"),
            "{seen}"
        );
        // The job failed: its entry and its removal are not in the store.
        assert_eq!(log.verify().unwrap(), 1);
        assert!(log.content(1).unwrap().is_some());
    }

    /// While someone follows the log, the entries of each durable write are read from memory,
    /// with their content in plain as the store gives it (sealed at rest here); a write that
    /// removes content empties that memory, so the content removed is read from nowhere.
    #[test]
    fn followers_read_recent_entries_from_memory_until_content_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(LogKey::from_bytes(&[7; 32]));
        let log = ExchangeLog::open(
            dir.path(),
            LogOptions::from(Durability::Flush).with_key(Some(key)),
        )
        .unwrap();
        log.transact_blocking(|t| t.append(sent("S-0")).map(|_| ()))
            .unwrap();
        assert!(
            matches!(log.durable_entries(1, 1).unwrap(), Entries::Read(_)),
            "nobody followed when entry 1 was written"
        );
        let _follower = log.subscribe_durable();
        for id in ["S-1", "S-2", "S-3"] {
            log.transact_blocking(move |t| t.append(sent(id)).map(|_| ()))
                .unwrap();
        }
        let entries = log.durable_entries(2, 4).unwrap();
        assert!(matches!(entries, Entries::Recent(_)));
        // The window gives each entry, its hash and its content in plain as the store does.
        let read: Vec<(pb::LogEntry, Digest, Option<Vec<u8>>)> = entries
            .iter()
            .map(|read| {
                let (e, content) = read.unwrap();
                (e.entry.clone(), e.hash, content.map(<[u8]>::to_vec))
            })
            .collect();
        let stored: Vec<(pb::LogEntry, Digest, Option<Vec<u8>>)> = log
            .range(2, 3)
            .unwrap()
            .into_iter()
            .map(|e| {
                let content = log.content(e.entry.sequence).unwrap();
                (e.entry, e.hash, content)
            })
            .collect();
        assert_eq!(read, stored);
        assert_eq!(read[0].2.as_deref(), Some(&b"content of S-1"[..]));
        assert!(log.is_sealed(2).unwrap(), "the store holds it sealed");
        assert!(
            matches!(log.durable_entries(1, 4).unwrap(), Entries::Read(_)),
            "entry 1 is not in memory: the store is read"
        );

        log.transact_blocking(|t| t.remove_content(2)).unwrap();
        let entries = log.durable_entries(2, 4).unwrap();
        assert!(matches!(entries, Entries::Read(_)));
        assert!(log.content(2).unwrap().is_none());
        log.transact_blocking(|t| t.append(sent("S-4")).map(|_| ()))
            .unwrap();
        let after: Vec<u64> = log
            .durable_entries(5, 5)
            .unwrap()
            .iter()
            .map(|read| read.unwrap().0.entry.sequence)
            .collect();
        assert_eq!(after, vec![5], "the writes after it are followed again");
    }

    /// The signer comes with the log: one opened with it signs, and takes a reloaded key; one
    /// opened without it (an audit) has nothing to rotate.
    #[test]
    fn the_receipt_signer_is_given_when_the_log_opens() {
        let dir = tempfile::tempdir().unwrap();
        let without = ExchangeLog::open(dir.path(), Durability::Flush).unwrap();
        assert!(matches!(
            without.rotate_receipt_signer(khm_signer()),
            Err(LogError::NoSigner)
        ));
        drop(without);
        let with = ExchangeLog::open(
            dir.path(),
            LogOptions::from(Durability::Flush).with_signer(khm_signer()),
        )
        .unwrap();
        assert!(with.rotate_receipt_signer(khm_signer()).is_ok());
    }

    fn sent(id: &str) -> NewEntry {
        NewEntry {
            kind: pb::EntryKind::MessageSent,
            peer: Some("KHM".parse().unwrap()),
            message_id: id.into(),
            message_kind: pb::MessageKind::TravellerAlert,
            content: Some(format!("content of {id}").into_bytes()),
            ..Default::default()
        }
    }

    /// A sent alert naming a person and a passport, with its search terms, as the exchange
    /// stores one.
    fn alert_naming(id: &str, family: &str, passport: &str) -> NewEntry {
        let envelope = pb::Envelope {
            message_id: id.into(),
            body: Some(pb::envelope::Body::TravellerAlert(pb::TravellerAlert {
                person: Some(pb::Person {
                    family_name: family.into(),
                    ..Default::default()
                }),
                documents: vec![pb::TravelDocument {
                    number: passport.into(),
                    ..Default::default()
                }],
                ..Default::default()
            })),
            ..Default::default()
        };
        NewEntry {
            content: Some(envelope.encode_to_vec()),
            search_terms: search::distinct_terms(&envelope),
            ..sent(id)
        }
    }

    fn passport(number: &str) -> Term {
        Term::document(number).unwrap()
    }

    #[test]
    fn the_search_index_is_written_with_the_entry_removed_with_its_content_and_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let log = ExchangeLog::open(dir.path(), Durability::Flush).unwrap();
        log.transact_blocking(|t| {
            t.append(alert_naming("A-1", "WULANDARI", "X2217845"))?;
            t.append(alert_naming("A-2", "WULANDARI", "X9999999"))?;
            t.append(sent("S-3"))
        })
        .unwrap();
        let name = Term::name(["Wulandari"]).unwrap();
        assert_eq!(log.search(&passport("X2217845")).unwrap(), vec![1]);
        assert_eq!(log.search(&name).unwrap(), vec![1, 2]);
        assert!(log.search(&passport("X0000000")).unwrap().is_empty());
        let kept = log.views().unwrap();
        let index_keys = |views: &[ViewRecord]| {
            views
                .iter()
                .filter(|(k, _)| k.first() == Some(&key::TAGS))
                .count()
        };
        assert_eq!(index_keys(&kept), 4);
        // One write, one tag-log value, in the same batch as the messages.
        let tree = log.store().unwrap().tree.clone();
        assert_eq!(tree.scan_prefix([key::TAGS]).count(), 1);
        // Rebuilt from the chain alone, the index is the same.
        tree.remove(key::seq(key::TAGS, 1)).unwrap();
        assert_eq!(index_keys(&log.views().unwrap()), 0);
        log.rebuild_views().unwrap();
        assert_eq!(log.views().unwrap(), kept);
        assert_eq!(log.search(&name).unwrap(), vec![1, 2]);
        // A redaction removes the message's index keys in the same write as its content.
        log.transact_blocking(|t| {
            t.remove_content(1)?;
            t.append(NewEntry {
                kind: pb::EntryKind::Redaction,
                refers_to: 1,
                ..Default::default()
            })
        })
        .unwrap();
        assert!(log.search(&passport("X2217845")).unwrap().is_empty());
        assert_eq!(log.search(&name).unwrap(), vec![2]);
        assert_eq!(index_keys(&log.views().unwrap()), 2);
        let after_redaction = log.views().unwrap();
        log.rebuild_views().unwrap();
        assert_eq!(log.views().unwrap(), after_redaction);
    }

    #[test]
    fn an_encrypted_log_indexes_keyed_hashes_and_rebuilds_only_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(LogKey::from_bytes(&[7; 32]));
        let with_key = || LogOptions::from(Durability::Flush).with_key(Some(key.clone()));
        {
            let log = ExchangeLog::open(dir.path(), with_key()).unwrap();
            log.transact_blocking(|t| t.append(alert_naming("A-1", "WULANDARI", "X2217845")))
                .unwrap();
            assert_eq!(log.search(&passport("X2217845")).unwrap(), vec![1]);
            let term = passport("X2217845").hashed_bytes();
            let tree = &log.store().unwrap().tree;
            let stored = tree.get(key::seq(key::TAGS, 1)).unwrap().unwrap();
            let tags = &index::decode(&stored).unwrap()[0].tags;
            assert!(tags.contains(&seal::index_tag(Some(&key), &term)));
            assert!(!tags.contains(&seal::index_tag(None, &term)));
        }
        {
            // Without the key, nothing can be derived: a rebuild refuses rather than lose hits.
            let log = ExchangeLog::open(dir.path(), Durability::Flush).unwrap();
            assert!(matches!(
                log.rebuild_views(),
                Err(LogError::Seal(SealError::NoKey { sequence: 1 }))
            ));
        }
        let log = ExchangeLog::open(dir.path(), with_key()).unwrap();
        assert_eq!(log.search(&passport("X2217845")).unwrap(), vec![1]);
        // After a key rotation, what the earlier key indexed is still found.
        drop(log);
        let rotated = Arc::new(
            LogKey::from_bytes(&[8; 32]).with_previous(vec![LogKey::from_bytes(&[7; 32])]),
        );
        let log = ExchangeLog::open(
            dir.path(),
            LogOptions::from(Durability::Flush).with_key(Some(rotated)),
        )
        .unwrap();
        log.transact_blocking(|t| t.append(alert_naming("A-2", "OTHER", "X2217845")))
            .unwrap();
        assert_eq!(log.search(&passport("X2217845")).unwrap(), vec![1, 2]);
    }

    #[test]
    fn a_log_written_before_the_search_index_is_indexed_when_a_node_opens_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = ExchangeLog::open(dir.path(), Durability::Flush).unwrap();
            log.transact_blocking(|t| t.append(alert_naming("A-1", "WULANDARI", "X2217845")))
                .unwrap();
            // As a log of the layout before the index: no index keys, no completion mark.
            let tree = &log.store().unwrap().tree;
            for k in tree.scan_prefix([key::TAGS]).keys() {
                tree.remove(k.unwrap()).unwrap();
            }
            tree.remove(key::SEARCH_COMPLETE).unwrap();
            log.flush().unwrap();
        }
        {
            // An offline tool leaves the store as it is.
            let log = ExchangeLog::open(dir.path(), Durability::Flush).unwrap();
            assert!(log.search(&passport("X2217845")).unwrap().is_empty());
        }
        let log = ExchangeLog::open(
            dir.path(),
            LogOptions::from(Durability::Flush).with_signer(khm_signer()),
        )
        .unwrap();
        assert_eq!(log.search(&passport("X2217845")).unwrap(), vec![1]);
        assert!(
            log.store()
                .unwrap()
                .tree
                .contains_key(key::SEARCH_COMPLETE)
                .unwrap()
        );
    }

    #[test]
    fn appends_chain_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = ExchangeLog::open(dir.path(), Durability::Fsync).unwrap();
            for i in 0..5 {
                let id = format!("m{i}");
                let appended = log.transact_blocking(move |t| t.append(sent(&id))).unwrap();
                assert_eq!(appended.sequence, i + 1);
            }
            assert_eq!(log.verify().unwrap(), 5);
            assert_eq!(log.pending("KHM".parse().unwrap()).unwrap().len(), 5);
        }
        let log = ExchangeLog::open(dir.path(), Durability::Fsync).unwrap();
        let (size, head) = log.head().unwrap();
        assert_eq!(size, 5);
        let appended = log.transact_blocking(|t| t.append(sent("m5"))).unwrap();
        assert_eq!(appended.sequence, 6);
        let sixth = log.entry(6).unwrap().unwrap();
        assert_eq!(sixth.entry.previous_hash, head.0.to_vec());
        assert_eq!(log.verify().unwrap(), 6);
        assert_eq!(log.sent("m3").unwrap(), Some(4));
    }

    #[test]
    fn a_log_keeps_the_compression_it_was_created_with() {
        let dir = tempfile::tempdir().unwrap();
        let compressed = dir.path().join("zstd");
        let zstd = LogOptions {
            durability: Durability::Fsync,
            compression: Compression::Zstd,
            ..LogOptions::default()
        };
        let content = b"a page worth compressing ".repeat(40);
        {
            let log = ExchangeLog::open(&compressed, zstd).unwrap();
            let mut entry = sent("m0");
            entry.content = Some(content.clone());
            log.transact_blocking(move |t| t.append(entry)).unwrap();
            assert_eq!(log.compression(), Compression::Zstd);
        }
        // Opened again without asking for compression, it is still compressed and reads back.
        let log = ExchangeLog::open(&compressed, Durability::Fsync).unwrap();
        assert_eq!(log.compression(), Compression::Zstd);
        assert_eq!(log.content(1).unwrap(), Some(content));
        assert_eq!(log.verify().unwrap(), 1);
        // A compacted copy keeps it too.
        let copy = dir.path().join("copy");
        log.compact_into(&copy).unwrap();
        drop(log);
        let copy = ExchangeLog::open(&copy, Durability::Fsync).unwrap();
        assert_eq!(copy.compression(), Compression::Zstd);
        assert_eq!(copy.verify().unwrap(), 1);
        // And a log made without compression keeps none when asked for it later.
        let plain = dir.path().join("plain");
        drop(ExchangeLog::open(&plain, Durability::Fsync).unwrap());
        let zstd = LogOptions {
            compression: Compression::Zstd,
            ..LogOptions::default()
        };
        let log = ExchangeLog::open(&plain, zstd).unwrap();
        assert_eq!(log.compression(), Compression::None);
    }

    #[test]
    fn a_failed_job_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let log = ExchangeLog::open(dir.path(), Durability::Flush).unwrap();
        let result: Result<(), LogError> = log.transact_blocking(|t| {
            t.append(sent("a"))?;
            Err(LogError::Unsigned)
        });
        assert!(result.is_err());
        assert_eq!(log.head().unwrap().0, 0);
        let appended = log.transact_blocking(|t| t.append(sent("b"))).unwrap();
        assert_eq!(appended.sequence, 1);
        assert_eq!(log.verify().unwrap(), 1);
    }

    #[test]
    fn views_rebuilt_from_the_chain_equal_the_views_kept_while_running() {
        let dir = tempfile::tempdir().unwrap();
        let log = ExchangeLog::open(dir.path(), Durability::Flush).unwrap();
        let khm: CountryCode = "KHM".parse().unwrap();
        for id in ["a", "b", "c"] {
            log.transact_blocking(move |t| t.append(sent(id))).unwrap();
        }
        log.transact_blocking(move |t| {
            t.append(NewEntry {
                kind: pb::EntryKind::MessageReceived,
                peer: Some(khm),
                message_id: "k1".into(),
                message_kind: pb::MessageKind::CaseResponse,
                content: Some(b"response".to_vec()),
                reference: Some("a".parse().unwrap()),
                peer_sequence: 17,
                ..Default::default()
            })?;
            t.append(NewEntry {
                kind: pb::EntryKind::ReceiptReceived,
                peer: Some(khm),
                message_id: "a".into(),
                content: Some(b"receipt".to_vec()),
                refers_to: 1,
                ..Default::default()
            })?;
            t.append(NewEntry {
                kind: pb::EntryKind::DeliveryFailed,
                peer: Some(khm),
                message_id: "b".into(),
                refers_to: 2,
                reason: "refused by KHM".into(),
                ..Default::default()
            })
        })
        .unwrap();
        let kept = log.views().unwrap();
        assert_eq!(log.pending(khm).unwrap(), vec![3]);
        assert_eq!(log.failure(2).unwrap().as_deref(), Some("refused by KHM"));
        assert_eq!(log.referencing("a").unwrap(), vec![4]);
        assert_eq!(log.cursor(khm).unwrap(), 17);
        assert_eq!(log.sent_to(khm, 2, u64::MAX).unwrap(), vec![2, 3]);
        assert_eq!(log.inbox().unwrap(), vec![4]);
        // Lose a view key, then rebuild everything from the chain alone.
        log.store()
            .unwrap()
            .tree
            .remove(key::message("KHM", "k1"))
            .unwrap();
        assert!(log.inbox().unwrap().is_empty());
        assert_ne!(log.views().unwrap(), kept);
        assert_eq!(log.rebuild_views().unwrap(), 6);
        assert_eq!(log.views().unwrap(), kept);
        assert_eq!(log.verify().unwrap(), 6);
    }

    #[test]
    fn changed_content_is_found_by_verification() {
        let dir = tempfile::tempdir().unwrap();
        let log = ExchangeLog::open(dir.path(), Durability::Flush).unwrap();
        for id in ["a", "b", "c"] {
            log.transact_blocking(move |t| t.append(sent(id))).unwrap();
        }
        let tree = log.store().unwrap().tree.clone();
        let stored = tree.get(key::seq(key::ENTRY, 2)).unwrap().unwrap();
        let tampered = record::View {
            content: Some(b"tampered"),
            ..record::View::parse(&stored).unwrap()
        }
        .encode();
        tree.insert(key::seq(key::ENTRY, 2), tampered).unwrap();
        let err = log.verify().unwrap_err();
        assert_eq!(err.sequence, 2);
        assert!(err.problem.to_string().contains("digest"));
    }

    #[test]
    fn only_a_full_disk_is_waited_out() {
        let io = |code| std::io::Error::from_raw_os_error(code);
        assert!(LogError::Storage(sled::Error::Io(io(28))).is_disk_full());
        assert!(LogError::Storage(sled::Error::Io(io(122))).is_disk_full());
        // Even "no space" from an fsync keeps the log closed.
        assert!(!LogError::Fsync(io(28)).is_disk_full());
        // EIO: the kernel may have dropped what it could not write; the log stays closed.
        assert!(!LogError::Fsync(io(5)).is_disk_full());
        assert!(!LogError::Storage(sled::Error::Io(io(5))).is_disk_full());
        assert!(!LogError::NoSigner.is_disk_full());
    }

    /// A log whose store ends before its head marker: refused when the marker was written
    /// under fsync, opened with a warning when written under flush, which a power cut can
    /// leave behind.
    #[test]
    fn the_head_marker_is_strict_only_for_a_log_made_durable_with_fsync() {
        for (durability, refused) in [(Durability::Fsync, true), (Durability::Flush, false)] {
            let dir = tempfile::tempdir().unwrap();
            {
                let log = ExchangeLog::open(dir.path(), durability).unwrap();
                for i in 0..3 {
                    let id = format!("m{i}");
                    log.transact_blocking(move |t| t.append(sent(&id))).unwrap();
                }
            }
            // The store loses its last entry, as a damaged file recovered short would.
            {
                // sled's own threads may hold its lock a moment after the log is dropped.
                let db = (0..50)
                    .find_map(|_| {
                        let opened = sled::Config::new()
                            .path(dir.path())
                            .flush_every_ms(None)
                            .open()
                            .ok();
                        if opened.is_none() {
                            std::thread::sleep(std::time::Duration::from_millis(20));
                        }
                        opened
                    })
                    .expect("the store opens once the log is dropped");
                let tree = db.open_tree("exchange-log").unwrap();
                tree.remove(key::seq(key::ENTRY, 3)).unwrap();
                db.flush().unwrap();
            }
            let opened = ExchangeLog::open(dir.path(), Durability::Flush);
            if refused {
                let err = opened.unwrap_err();
                assert!(
                    matches!(
                        err,
                        LogError::Truncated {
                            found: 2,
                            expected: 3,
                            ..
                        }
                    ),
                    "{err}"
                );
            } else {
                assert_eq!(opened.unwrap().head().unwrap().0, 2);
            }
        }
    }

    #[test]
    fn an_entry_of_no_known_kind_fails_verification() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = ExchangeLog::open(dir.path(), Durability::Flush).unwrap();
            for i in 0..2 {
                let id = format!("m{i}");
                log.transact_blocking(move |t| t.append(sent(&id))).unwrap();
            }
        }
        // The last entry's kind changed to one the contract does not have: no later entry's
        // link notices, so only the kind itself can.
        std::fs::remove_file(dir.path().join(MARKER_FILE)).unwrap();
        {
            // The handle just dropped may still be letting go of the directory's lock.
            let open = || {
                sled::Config::new()
                    .path(dir.path())
                    .flush_every_ms(None)
                    .open()
            };
            let db = (0..50)
                .find_map(|_| {
                    open()
                        .inspect_err(|_| std::thread::sleep(std::time::Duration::from_millis(20)))
                        .ok()
                })
                .unwrap();
            let tree = db.open_tree("exchange-log").unwrap();
            let stored = tree.get(key::seq(key::ENTRY, 2)).unwrap().unwrap();
            let view = record::View::parse(&stored).unwrap();
            let mut entry = pb::LogEntry::decode(view.entry).unwrap();
            entry.kind = 99;
            let entry = entry.encode_to_vec();
            let changed = record::View {
                entry: &entry,
                ..view
            };
            tree.insert(key::seq(key::ENTRY, 2), changed.encode())
                .unwrap();
            db.flush().unwrap();
        }
        let log = ExchangeLog::open(dir.path(), Durability::Flush).unwrap();
        let err = log.verify().unwrap_err();
        assert_eq!(err.sequence, 2, "{}", err.problem);
        assert!(
            err.problem.to_string().contains("no known kind"),
            "{}",
            err.problem
        );
    }
}
