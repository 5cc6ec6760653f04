//! A job's view of the log while the writer runs it: reads see what the job itself staged, then
//! what the write staged before it, then what is committed; writes are staged and join the
//! write if the job succeeds. Also here: what a write stages and how it becomes one sled batch,
//! and the tickets by which a receipt issued in a write is found once the write is durable.

use std::collections::BTreeMap;
use std::sync::Arc;

use prost::Message;

use super::{
    Appended, Issued, LogError, NewEntry, StoredBatch, StoredEntry, entry_hash, index, is_message,
    issued_state, key, new_record, own_sender_marker, parse_record, read_entry, read_seq,
    receipt_mismatch, received_cursor, recent, record, view_updates,
};
use crate::crypto::seal::{self, LogKey};
use crate::domain::model::{CountryCode, Digest, now_micros};
use crate::pb;

/// One writer's view while it runs a job: reads see everything committed so far, writes are
/// staged and applied atomically when the job succeeds.
#[derive(Debug)]
pub struct Txn<'a> {
    pub(super) tree: &'a sled::Tree,
    /// What the jobs before this one in the same write staged.
    pub(super) group: &'a Staged,
    /// What this job stages: it joins the group's if the job succeeds.
    pub(super) own: Staged,
    pub(super) key: Option<&'a LogKey>,
    pub(super) clock_offset: i64,
    pub(super) next: u64,
    pub(super) head: Digest,
    pub(super) receipts: &'a mut Vec<PendingReceipt>,
    /// Whether the entries appended are kept for those following the log.
    pub(super) followed: bool,
    /// The entry appended last: a receipt issued for it leaves out what it gives.
    pub(super) last: Option<StoredEntry>,
}

/// Writes staged and not yet applied: a key's new value, or `None` for its removal. A whole
/// write (a group of jobs) is applied to sled as one atomic batch before it is made durable.
/// The tags of the messages a write stores go to the tag log as one value (a key per message
/// and tag would cost sled as much as the message itself); those a write's redactions remove
/// leave the in-memory index once the write is durable.
#[derive(Debug, Default)]
pub(super) struct Staged {
    pub(super) keys: BTreeMap<Vec<u8>, Option<sled::IVec>>,
    pub(super) tagged: Vec<index::Tagged>,
    pub(super) untagged: Vec<index::Tagged>,
    /// The entries appended, with their content in plain, kept only while someone follows
    /// the log.
    pub(super) entries: Vec<recent::Held>,
    /// Whether content is removed.
    pub(super) redacts: bool,
}

impl Staged {
    pub(super) fn insert(&mut self, k: impl Into<Vec<u8>>, v: impl Into<sled::IVec>) {
        self.keys.insert(k.into(), Some(v.into()));
    }

    pub(super) fn remove(&mut self, k: impl Into<Vec<u8>>) {
        self.keys.insert(k.into(), None);
    }

    /// `Some(staged)` when the key was written here (`Some(None)`: removed).
    pub(super) fn get(&self, k: &[u8]) -> Option<Option<&sled::IVec>> {
        self.keys.get(k).map(Option::as_ref)
    }

    pub(super) fn absorb(&mut self, later: Self) {
        self.keys.extend(later.keys);
        self.tagged.extend(later.tagged);
        self.untagged.extend(later.untagged);
        self.entries.extend(later.entries);
        self.redacts |= later.redacts;
    }

    /// The sled batch of the write, with its tag-log values, and what the in-memory index
    /// takes in and lets go of once it is durable.
    pub(super) fn into_batch(mut self) -> (sled::Batch, Vec<index::Tagged>, Vec<index::Tagged>) {
        // A message redacted in the write that stored it is not tagged at all.
        let dropped: Vec<u64> = self
            .untagged
            .iter()
            .filter(|t| t.tags.is_empty())
            .map(|t| t.sequence)
            .collect();
        if !dropped.is_empty() {
            self.tagged.retain(|t| !dropped.contains(&t.sequence));
            self.untagged.retain(|t| !t.tags.is_empty());
        }
        for chunk in self.tagged.chunks(index::PER_KEY) {
            if let Some(first) = chunk.first() {
                self.keys.insert(
                    key::seq(key::TAGS, first.sequence),
                    Some(index::encode(chunk).into()),
                );
            }
        }
        let mut batch = sled::Batch::default();
        for (k, v) in self.keys {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        (batch, self.tagged, self.untagged)
    }
}

/// What a reader of the store sees: sled as committed, or sled with a write's staged changes.
pub(super) trait Read {
    fn get(&self, k: &[u8]) -> Result<Option<sled::IVec>, sled::Error>;

    fn contains_key(&self, k: &[u8]) -> Result<bool, sled::Error> {
        Ok(self.get(k)?.is_some())
    }
}

impl Read for sled::Tree {
    fn get(&self, k: &[u8]) -> Result<Option<sled::IVec>, sled::Error> {
        Self::get(self, k)
    }

    fn contains_key(&self, k: &[u8]) -> Result<bool, sled::Error> {
        Self::contains_key(self, k)
    }
}

impl Read for Txn<'_> {
    fn get(&self, k: &[u8]) -> Result<Option<sled::IVec>, sled::Error> {
        match self.own.get(k).or_else(|| self.group.get(k)) {
            Some(staged) => Ok(staged.cloned()),
            None => self.tree.get(k),
        }
    }
}

/// Where a receipt issued in a job is found once its write is durable: signed, with every
/// other receipt of the same write, under one signature.
#[derive(Debug, Clone, Default)]
pub struct ReceiptTicket(pub(super) Arc<std::sync::OnceLock<InSignedBatch>>);

/// A receipt's place in the batch that signed it.
#[derive(Debug)]
pub(super) struct InSignedBatch {
    pub(super) batch: Arc<StoredBatch>,
    pub(super) index: usize,
    pub(super) receipt: Vec<u8>,
}

impl ReceiptTicket {
    /// The signed receipt, with its inclusion path; `None` before the write that issued it is
    /// durable, or if it failed. Built here, by whoever answers, not by the log's writer.
    pub fn signed(&self) -> Option<pb::SignedReceipt> {
        self.0.get().map(|placed| {
            placed.batch.signed.receipt(
                placed.index,
                placed.receipt.clone(),
                &placed.batch.certificate,
            )
        })
    }
}

/// A receipt issued in the current write, to be signed with the others when the write ends.
#[derive(Debug)]
pub(super) struct PendingReceipt {
    pub(super) sequence: u64,
    pub(super) receipt: Vec<u8>,
    pub(super) ticket: ReceiptTicket,
}

impl Txn<'_> {
    /// The sequence of the message `id` this node sent, if logged.
    pub fn sent(&self, id: &str) -> Result<Option<u64>, LogError> {
        read_seq(self, &key::message(&own_sender_marker(), id))
    }

    /// The sequence of the message `id` received from `sender`, if logged.
    pub fn received(&self, sender: CountryCode, id: &str) -> Result<Option<u64>, LogError> {
        read_seq(self, &key::message(sender.as_str(), id))
    }

    /// Whether the sent message at `sequence` has been marked failed.
    pub fn failed(&self, sequence: u64) -> Result<bool, LogError> {
        Ok(self.contains_key(&key::seq(key::FAILED, sequence))?)
    }

    /// A committed entry.
    pub fn entry(&self, sequence: u64) -> Result<Option<StoredEntry>, LogError> {
        read_entry(self, sequence)
    }

    /// The signed receipt this node issued for a received message, in earlier writes.
    pub fn issued_receipt(&self, sequence: u64) -> Result<Option<pb::SignedReceipt>, LogError> {
        Ok(issued_state(self, sequence, None)?.into_signed())
    }

    /// Signs again, in this write, the receipt of the received message at `sequence` if it was
    /// stored but its batch never signed. Nothing was answered with it, so it is issued anew as
    /// of now (the certificate that signs it may be newer than the old time); it must still
    /// describe its entry. `None` if the message has no unsigned receipt.
    pub fn reissue_receipt(&mut self, sequence: u64) -> Result<Option<ReceiptTicket>, LogError> {
        let Issued::Unsigned { receipt: bytes, .. } = issued_state(self, sequence, None)? else {
            return Ok(None);
        };
        let corrupt = |reason: String| LogError::Corrupt { sequence, reason };
        let mut receipt = pb::Receipt::decode(bytes.as_slice())
            .map_err(|e| corrupt(format!("unsigned receipt: {e}")))?;
        let stored = self
            .entry(sequence)?
            .ok_or_else(|| corrupt("the entry of an unsigned receipt is missing".into()))?;
        if let Some(field) = receipt_mismatch(&receipt, &stored.entry, &stored.hash) {
            return Err(corrupt(format!(
                "the unsigned receipt's {field} does not match its entry"
            )));
        }
        receipt.stored_at = crate::domain::model::format_instant(
            time::OffsetDateTime::now_utc() + time::Duration::microseconds(self.clock_offset),
        );
        self.issue_receipt(sequence, receipt.encode_to_vec())
            .map(Some)
    }

    /// Issues the receipt (an encoded `Receipt`) for the received message at `sequence`. It is
    /// stored in the message's record with this job's writes, and signed together with every
    /// receipt issued in the same durable write; the ticket holds the signed receipt once the
    /// job is answered. Issuing one message's receipt twice in one write gives the same ticket.
    pub fn issue_receipt(
        &mut self,
        sequence: u64,
        receipt: Vec<u8>,
    ) -> Result<ReceiptTicket, LogError> {
        if let Some(p) = self.receipts.iter().find(|p| p.sequence == sequence) {
            return Ok(p.ticket.clone());
        }
        // The record keeps what the entry does not give: the entry is at hand if this job
        // appended it, else (a receipt issued again) read.
        let short = match self.appended(sequence) {
            Some(s) => record::short_receipt(&receipt, &s.entry, &s.hash),
            None => self
                .entry(sequence)?
                .and_then(|s| record::short_receipt(&receipt, &s.entry, &s.hash)),
        };
        // The batch is named by its first receipt's message, and written when the write ends.
        let issued = pb::IssuedReceipt {
            from_entry: short.is_some(),
            receipt: short.unwrap_or_else(|| receipt.clone()),
            batch: self.receipts.first().map_or(sequence, |p| p.sequence),
            index: self.receipts.len() as u64,
        }
        .encode_to_vec();
        self.change_record(sequence, |view| {
            record::View {
                issued: Some(&issued),
                issued_signed: None,
                ..view
            }
            .encode()
        })?;
        self.own
            .insert(key::LAST_ISSUED, sequence.to_be_bytes().to_vec());
        let ticket = ReceiptTicket::default();
        self.receipts.push(PendingReceipt {
            sequence,
            receipt,
            ticket: ticket.clone(),
        });
        Ok(ticket)
    }

    /// The entry `sequence`, if this job appended it last.
    fn appended(&self, sequence: u64) -> Option<&StoredEntry> {
        self.last.as_ref().filter(|s| s.entry.sequence == sequence)
    }

    /// Stages the record of entry `sequence` as `change` encodes it anew.
    fn change_record(
        &mut self,
        sequence: u64,
        change: impl FnOnce(record::View<'_>) -> Vec<u8>,
    ) -> Result<(), LogError> {
        let k = key::seq(key::ENTRY, sequence);
        let stored = self.get(&k)?.ok_or(LogError::Corrupt {
            sequence,
            reason: "the entry is missing".into(),
        })?;
        let changed = change(parse_record(sequence, &stored)?);
        self.own.insert(k, changed);
        Ok(())
    }

    /// The sequence of the receipt entry for a sent message, if one is logged.
    pub fn receipt_for(&self, sent: u64) -> Result<Option<u64>, LogError> {
        read_seq(self, &key::seq(key::RECEIPT_FOR, sent))
    }

    /// The last deadline entry noting `reason` for the case opened at `case`, if one is logged.
    pub fn deadline_noted(&self, case: u64, reason: &str) -> Result<Option<u64>, LogError> {
        read_seq(self, &key::deadline(case, reason))
    }

    /// Stages an entry, its content and the views that go with its kind.
    pub fn append(&mut self, new: NewEntry) -> Result<Appended, LogError> {
        let sequence = self.next;
        let (content_sha256, content_length) = match (&new.content, new.content_digest) {
            (Some(c), Some(d)) => {
                debug_assert!(
                    Digest::of(c) == d,
                    "a content digest given for other content"
                );
                (d, c.len() as u64)
            }
            (Some(c), None) => (Digest::of(c), c.len() as u64),
            (None, Some(d)) => (d, 0),
            (None, None) => (Digest::default(), 0),
        };
        let peer = new.peer.map(|p| p.as_str().to_owned()).unwrap_or_default();
        // Messages name people: with a log key they are stored sealed.
        let (content, plain) = match (new.content, self.key) {
            (Some(plain), Some(key)) if is_message(new.kind) => (
                Some(key.seal(sequence, &content_sha256, &plain)?),
                Some(plain),
            ),
            (content, _) => (content, None),
        };
        let sealed_sha256 = match (&content, self.key) {
            (Some(c), Some(_)) if seal::is_sealed(c) => Digest::of(c).0.to_vec(),
            _ => Vec::new(),
        };
        let entry = pb::LogEntry {
            sequence,
            previous_hash: self.head.0.to_vec(),
            recorded_at_micros: now_micros().saturating_add(self.clock_offset),
            kind: new.kind as i32,
            peer: peer.clone(),
            message_id: new.message_id.clone(),
            message_kind: new.message_kind as i32,
            content_sha256: content_sha256.0.to_vec(),
            content_length,
            refers_to: new.refers_to,
            reason: new.reason,
            reference: new.reference.map(|r| r.to_string()).unwrap_or_default(),
            peer_sequence: new.peer_sequence,
            sealed_sha256,
            created_at: new.created_at,
            actor: new.actor,
            copy_of: new.copy_of.map(|c| c.to_string()).unwrap_or_default(),
        };
        let bytes = entry.encode_to_vec();
        let hash = entry_hash(&bytes);
        for (k, v) in view_updates(&entry, &hash) {
            match v {
                Some(v) => self.own.insert(k, v),
                None => self.own.remove(k),
            }
        }
        if let Some(cursor) = received_cursor(&entry)
            && read_seq(self, &cursor)?.is_none_or(|held| held < entry.peer_sequence)
        {
            self.own
                .insert(cursor, entry.peer_sequence.to_be_bytes().to_vec());
        }
        if is_message(new.kind) && !new.search_terms.is_empty() {
            let tags = new
                .search_terms
                .iter()
                .map(|term| seal::index_tag(self.key, &term.hashed_bytes()))
                .collect();
            self.own.tagged.push(index::Tagged { sequence, tags });
        }
        let (record, shared) = new_record(&bytes, new.kind, content.as_deref(), None, None);
        // The record holds the content otherwise than it came when it is sealed or a peer's
        // receipt kept in parts: a follower is then given it in plain beside the record.
        let held_otherwise = !shared.is_empty() || plain.is_some();
        for (k, v) in shared {
            if !self.contains_key(&k)? {
                self.own.insert(k, v);
            }
        }
        let record = sled::IVec::from(record);
        if self.followed {
            self.own.entries.push(recent::Held {
                sequence,
                hash,
                record: record.clone(),
                plain: if held_otherwise {
                    plain.or(content)
                } else {
                    None
                },
            });
        }
        self.own.insert(key::seq(key::ENTRY, sequence), record);
        self.next += 1;
        self.head = hash;
        self.last = Some(StoredEntry { entry, hash });
        Ok(Appended { sequence, hash })
    }

    /// Whether the content of entry `sequence` is still held.
    pub fn holds_content(&self, sequence: u64) -> Result<bool, LogError> {
        match self.get(&key::seq(key::ENTRY, sequence))? {
            Some(stored) => Ok(parse_record(sequence, &stored)?.holds_content()),
            None => Ok(false),
        }
    }

    /// Stages the removal of the content of entry `sequence`, and of the search index's keys
    /// for it; only a redaction entry appended in the same job accounts for it.
    pub fn remove_content(&mut self, sequence: u64) -> Result<(), LogError> {
        self.untag(sequence)?;
        self.own.redacts = true;
        self.change_record(sequence, |view| {
            record::View {
                content: None,
                peer_receipt: None,
                ..view
            }
            .encode()
        })
    }

    /// Takes message `sequence` out of the tag log: from this write's tags if it was stored in
    /// it, else from the tag-log value that holds it (the last one starting at or before it).
    fn untag(&mut self, sequence: u64) -> Result<(), LogError> {
        if let Some(i) = self.own.tagged.iter().position(|t| t.sequence == sequence) {
            self.own.tagged.remove(i);
            return Ok(());
        }
        if self.group.tagged.iter().any(|t| t.sequence == sequence) {
            // Stored by an earlier job of this write: the write leaves it out of the tag log.
            self.own.untagged.push(index::Tagged {
                sequence,
                tags: Vec::new(),
            });
            return Ok(());
        }
        let upto = key::seq(key::TAGS, sequence);
        let Some(found) = self
            .tree
            .range(vec![key::TAGS]..=upto)
            .keys()
            .next_back()
            .transpose()?
        else {
            return Ok(());
        };
        let Some(value) = self.get(&found)? else {
            return Ok(());
        };
        let corrupt = |e: index::Truncated| LogError::Corrupt {
            sequence,
            reason: e.to_string(),
        };
        let mut entries = index::decode(&value).map_err(corrupt)?;
        let Some(i) = entries.iter().position(|t| t.sequence == sequence) else {
            return Ok(());
        };
        let removed = entries.remove(i);
        if entries.is_empty() {
            self.own.remove(found.to_vec());
        } else {
            self.own.insert(found.to_vec(), index::encode(&entries));
        }
        self.own.untagged.push(removed);
        Ok(())
    }

    /// The keys and values under `prefix` as this job sees them: sled's, with what this write
    /// staged before and in this job laid over them, in key order.
    pub(super) fn scan(
        &self,
        prefix: u8,
    ) -> impl Iterator<Item = Result<(Vec<u8>, sled::IVec), LogError>> {
        Merged {
            stored: self.tree.scan_prefix([prefix]).peekable(),
            staged: self.staged_under(prefix).into_iter().peekable(),
        }
    }

    /// What this write staged under `prefix`, the later job's over the earlier's.
    fn staged_under(&self, prefix: u8) -> BTreeMap<Vec<u8>, Option<sled::IVec>> {
        let mut staged = BTreeMap::new();
        for layer in [self.group, &self.own] {
            let after = layer.keys.range(vec![prefix]..);
            for (k, v) in after.take_while(|(k, _)| k.first() == Some(&prefix)) {
                staged.insert(k.clone(), v.clone());
            }
        }
        staged
    }
}

/// sled's keys under a prefix merged with the staged ones, which win, in key order.
struct Merged<S, T>
where
    S: Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
    T: Iterator<Item = (Vec<u8>, Option<sled::IVec>)>,
{
    stored: std::iter::Peekable<S>,
    staged: std::iter::Peekable<T>,
}

impl<S, T> Iterator for Merged<S, T>
where
    S: Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
    T: Iterator<Item = (Vec<u8>, Option<sled::IVec>)>,
{
    type Item = Result<(Vec<u8>, sled::IVec), LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let stored_key = match self.stored.peek() {
                Some(Ok((k, _))) => Some(k.to_vec()),
                Some(Err(_)) => {
                    let Some(Err(e)) = self.stored.next() else {
                        unreachable!("peeked an error")
                    };
                    return Some(Err(e.into()));
                }
                None => None,
            };
            let staged_key = self.staged.peek().map(|(k, _)| k.clone());
            let take_staged = match (&stored_key, &staged_key) {
                (None, None) => return None,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some(a), Some(b)) => b <= a,
            };
            if take_staged {
                let (k, v) = self.staged.next()?;
                if stored_key.as_ref() == Some(&k) {
                    self.stored.next();
                }
                match v {
                    Some(v) => return Some(Ok((k, v))),
                    None => continue,
                }
            }
            let (k, v) = self.stored.next()?.ok()?;
            return Some(Ok((k.to_vec(), v)));
        }
    }
}
