//! The log's writer: the one thread that appends. It takes the jobs queued at once (up to 1,024)
//! as one write, runs each against the store and what the write staged before it, signs the
//! receipts the write issued under one signature, applies the write to sled as one atomic
//! batch, makes it durable, and only then answers each job. A write that fails answers every
//! job with its error. After a full disk the writer lets go of the store and opens it again once
//! space is freed (jobs that come meanwhile are dropped, which their callers hear as the log
//! being closed); after any other storage failure it stops, and the log stays closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use prost::Message;

use super::txn::{InSignedBatch, PendingReceipt, Staged, Txn};
use super::{
    Completion, Job, LogError, MARKER_FLUSH, MARKER_FSYNC, MARKER_TAG, Place, SharedSigner,
    SharedStore, Store, StoredBatch, index, key, recent, sign_unsigned, tail,
};
use crate::crypto::receipt;
use crate::crypto::seal::LogKey;
use crate::domain::model::{Digest, now_micros};
use crate::pb;

/// The writer's state, built by the log as it opens.
pub(super) struct Writer {
    pub(super) shared: SharedStore,
    pub(super) place: Place,
    pub(super) key: Option<Arc<LogKey>>,
    pub(super) signer: SharedSigner,
    pub(super) clock_offset: i64,
    /// The log's next entry.
    pub(super) next: u64,
    /// The hash of the log's last entry.
    pub(super) head: Digest,
    /// The entry after the last one made durable.
    pub(super) durable_next: u64,
    pub(super) closed: Arc<AtomicBool>,
    /// The in-memory search index, told what each durable write tagged and untagged.
    pub(super) search: Arc<index::SearchIndex>,
    /// The last entry made durable, for readers that must see nothing else.
    pub(super) durable: Arc<tokio::sync::watch::Sender<u64>>,
    /// The entries of the last durable writes, while someone follows the log.
    pub(super) recent: Arc<recent::Recent>,
}

impl Writer {
    /// Starts the writer on a thread of its own, from `store` as it holds `next` and `head`.
    /// It ends once `jobs` has no sender left, or after a storage failure it cannot recover
    /// from (the log then stays closed).
    pub(super) fn spawn(
        self,
        store: Arc<Store>,
        jobs: mpsc::Receiver<Job>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("exchange-log-writer".into())
            .spawn(move || self.run(store, &jobs))
    }

    fn run(mut self, mut store: Arc<Store>, jobs: &mpsc::Receiver<Job>) {
        while let Ok(first) = jobs.recv() {
            let mut group = vec![first];
            while group.len() < 1024 {
                match jobs.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            if let Err(e) = self.write_group(&store, group) {
                if !e.is_disk_full() {
                    return;
                }
                match self.reopen(store, jobs) {
                    Some(reopened) => store = reopened,
                    None => return,
                }
            }
        }
    }

    /// Runs one group of jobs, applies what they staged as one sled batch, makes it durable,
    /// and answers each job. A job that fails stages nothing; a write that fails answers every
    /// job with its error and leaves the store as before.
    fn write_group(&mut self, store: &Store, group: Vec<Job>) -> Result<(), Arc<LogError>> {
        let mut completions = Vec::with_capacity(group.len());
        let mut receipts = Vec::new();
        let mut staged = Staged::default();
        let (next, head) = (self.next, self.head);
        let followed = self.durable.receiver_count() > 0;
        if !followed {
            self.recent.clear();
        }
        for job in group {
            let issued_before = receipts.len();
            let mut txn = Txn {
                tree: &store.tree,
                group: &staged,
                own: Staged::default(),
                key: self.key.as_deref(),
                clock_offset: self.clock_offset,
                next: self.next,
                head: self.head,
                receipts: &mut receipts,
                followed,
                last: None,
            };
            let (ok, done) = job(&mut txn);
            let (job_next, job_head, own) = (txn.next, txn.head, txn.own);
            if ok {
                staged.absorb(own);
                self.next = job_next;
                self.head = job_head;
            } else {
                receipts.truncate(issued_before);
            }
            completions.push(done);
        }
        let mut failure = None;
        let mut signed = None;
        if !receipts.is_empty() {
            match self.sign_receipts(store, &mut staged, &receipts) {
                Ok(batch) => signed = Some(batch),
                Err(e) => failure = Some(e),
            }
        }
        // Content a write removes must not stay in memory for those following the log: the
        // window starts again after it.
        let entries = if staged.redacts {
            self.recent.clear();
            Vec::new()
        } else {
            std::mem::take(&mut staged.entries)
        };
        let (batch, tagged, untagged) = staged.into_batch();
        if failure.is_none()
            && let Err(e) = store.tree.apply_batch(batch)
        {
            failure = Some(LogError::from(e).in_dir(&self.place.dir));
        }
        if failure.is_some() {
            // Nothing of this write is in the store: the next write follows the last one.
            self.next = next;
            self.head = head;
        }
        let outcome = match failure {
            Some(e) => Err(e),
            None => self.make_durable(store, entries),
        };
        if outcome.is_ok() {
            self.search.apply(&tagged, &untagged);
        }
        if let (Ok(()), Some(batch)) = (&outcome, signed) {
            // A ticket holds its signed receipt only once the write is durable.
            for (index, p) in receipts.into_iter().enumerate() {
                let _ = p.ticket.0.set(InSignedBatch {
                    batch: batch.clone(),
                    index,
                    receipt: p.receipt,
                });
            }
        }
        if let Err(e) = &outcome {
            if e.is_disk_full() {
                tracing::error!(error = %e, "exchange log write failed: the disk is full; nothing in this write is acknowledged, and the store is reopened once space is freed");
            } else {
                tracing::error!(error = %e, "exchange log write failed; nothing in this write is acknowledged, and the log takes no more writes: check the disk and restart the node");
            }
            self.closed.store(true, Ordering::Release);
        }
        let outcome = outcome.map_err(Arc::new);
        for done in completions {
            done(outcome.as_ref().err());
        }
        outcome
    }

    /// After a storage failure: lets go of the store, then opens it again with a growing
    /// pause until a probe write is durable (space was freed, the device came back), and
    /// takes writes again. Nothing acknowledged is lost: the reopened store must hold every
    /// entry made durable before the failure, or the log stays closed. Jobs that arrive
    /// meanwhile are dropped unanswered, which their callers hear as the log being closed.
    /// Returns `None` once the log itself is dropped.
    fn reopen(&mut self, store: Arc<Store>, jobs: &mpsc::Receiver<Job>) -> Option<Arc<Store>> {
        *self
            .shared
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        drop(store);
        let mut pause = std::time::Duration::from_millis(100);
        let mut attempts: u64 = 0;
        loop {
            match jobs.recv_timeout(pause) {
                Ok(job) => {
                    drop(job);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
            pause = (pause * 2).min(std::time::Duration::from_secs(5));
            attempts += 1;
            let reopened = self.place.open().and_then(|(store, _)| {
                probe(&store)?;
                Ok(store)
            });
            let store = match reopened {
                Ok(store) => store,
                Err(e) => {
                    // Once a minute at most, after the first few.
                    if attempts <= 3 || attempts.is_multiple_of(12) {
                        tracing::warn!(error = %e, attempts, "exchange log store not writable yet; trying again");
                    }
                    continue;
                }
            };
            let recovered = tail(&store.tree)
                .map_err(|e| e.in_dir(&self.place.dir))
                .and_then(|(next, head)| {
                    self.place
                        .check_marker(&store.tree, next - 1)
                        .map(|()| (next, head))
                });
            let (next, head) = match recovered {
                Ok((next, _)) if next < self.durable_next => {
                    tracing::error!(
                        found = next - 1,
                        expected = self.durable_next - 1,
                        "the reopened store lacks entries that were made durable; the log stays closed"
                    );
                    return None;
                }
                Ok(tail) => tail,
                Err(e) => {
                    tracing::error!(error = %e, "the reopened store is damaged; the log stays closed");
                    return None;
                }
            };
            self.next = next;
            self.head = head;
            self.durable_next = next;
            let store = Arc::new(store);
            *self
                .shared
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(store.clone());
            self.closed.store(false, Ordering::Release);
            tracing::warn!(
                entries = next - 1,
                "exchange log store writable again; taking writes"
            );
            // A write that failed may have stored receipts it could not sign.
            let resign: Job = Box::new(|t| {
                let result = sign_unsigned(t);
                let ok = result.is_ok();
                let done: Completion = Box::new(move |flush_error| {
                    if let Some(e) = flush_error
                        .map(ToString::to_string)
                        .or(result.err().map(|e| e.to_string()))
                    {
                        tracing::error!(error = %e, "receipts left unsigned by the storage failure cannot be signed");
                    }
                });
                (ok, done)
            });
            match self.write_group(&store, vec![resign]) {
                Ok(()) => return Some(store),
                Err(e) if e.is_disk_full() => {
                    // Full again at once: let go of the store and wait once more.
                    *self
                        .shared
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                    drop(store);
                    continue;
                }
                Err(_) => return None,
            }
        }
    }

    /// Signs the receipts issued in this write with one signature over their Merkle tree, and
    /// stages the batch (and the signer's certificate, once) with the write; returns the signed
    /// batch, whose leaves are `pending`'s receipts in order, for the tickets once the write is
    /// durable.
    fn sign_receipts(
        &self,
        store: &Store,
        staged: &mut Staged,
        pending: &[PendingReceipt],
    ) -> Result<Arc<StoredBatch>, LogError> {
        let signer = self
            .signer
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or(LogError::NoSigner)?;
        let leaves: Vec<Digest> = pending
            .iter()
            .map(|p| receipt::leaf_hash(&p.receipt))
            .collect();
        let leaf_bytes = leaves.iter().flat_map(|l| l.0).collect();
        let signed = signer.sign_batch(leaves).map_err(LogError::Signing)?;
        let certificate = signer.certificate();
        let certificate_sha256 = Digest::of(certificate);
        let batch_id = pending[0].sequence;
        let batch_key = key::seq(key::RECEIPT_BATCH, batch_id);
        if store.tree.contains_key(&batch_key)? {
            return Err(LogError::Corrupt {
                sequence: batch_id,
                reason: "a receipt batch of this entry is already stored".into(),
            });
        }
        let certificate_key = key::certificate(&certificate_sha256);
        if !store.tree.contains_key(&certificate_key)? {
            staged.insert(certificate_key, certificate);
        }
        let record = pb::ReceiptBatch {
            signature_scheme: signed.signature_scheme.clone(),
            signature: signed.signature.clone(),
            signer_certificate_sha256: certificate_sha256.0.to_vec(),
            leaves: leaf_bytes,
        };
        staged.insert(batch_key, record.encode_to_vec());
        Ok(Arc::new(StoredBatch {
            signed,
            certificate: certificate.to_vec(),
        }))
    }

    /// Makes the write durable, then tells those following the log of its `entries`.
    fn make_durable(&mut self, store: &Store, entries: Vec<recent::Held>) -> Result<(), LogError> {
        store
            .db
            .flush()
            .map_err(|e| LogError::from(e).in_dir(&self.place.dir))?;
        if let Some(file) = &store.data_file {
            file.sync_data().map_err(LogError::Fsync)?;
        }
        self.durable_next = self.next;
        // The window first: a follower told of the new head finds its entries there.
        self.recent.push(entries);
        self.durable.send_replace(self.next - 1);
        // The marker follows what is durable: after a crash it may lag, never lead. It is
        // rewritten in place, so a full disk does not stop it.
        if let Some(marker) = &store.marker {
            use std::os::unix::fs::FileExt;
            let mut bytes = Vec::with_capacity(48);
            bytes.extend_from_slice(MARKER_TAG);
            bytes.push(if store.data_file.is_some() {
                MARKER_FSYNC
            } else {
                MARKER_FLUSH
            });
            bytes.extend_from_slice(&(self.next - 1).to_be_bytes());
            bytes.extend_from_slice(&self.head.0);
            if let Err(e) = marker.write_all_at(&bytes, 0) {
                tracing::warn!(error = %e, "the log's head marker was not written");
            }
        }
        Ok(())
    }
}

/// A small durable write beside the chain: whether the store takes writes again.
fn probe(store: &Store) -> Result<(), LogError> {
    let probe = store.db.open_tree("writable-probe")?;
    probe.insert(b"probe", &now_micros().to_be_bytes())?;
    store.db.flush()?;
    if let Some(file) = &store.data_file {
        file.sync_data().map_err(LogError::Fsync)?;
    }
    Ok(())
}
