//! The search index: which messages name a term, by the term's keyed hash (a tag, see
//! [`crate::crypto::seal::index_tag`]), never by the term.
//!
//! Stored as a tag log: each write that stores messages naming anyone adds one key holding the
//! tags of every such message in it (`Q` + the first message's sequence), in the same atomic
//! batch as the messages themselves; a redaction rewrites the key without its message. A key
//! per tag and message would cost sled a key insert each, about as much as the message's own
//! record: the receive path would lose half its rate to the index. The lookup structure is
//! derived from the tag log in memory (sorted postings of the tag's first 8 bytes), loaded at
//! open on a thread of its own so that the node is ready before it is, and kept up to date by
//! the writer once each write is durable. A search waits for it.
//!
//! A posting keeps the first 28 bits of its tag with the message's sequence in one 8-byte word
//! (16 bytes for a sequence of 2^36 or more): a collision only adds a candidate, and every
//! candidate is checked against its envelope before it is returned.

use std::collections::HashSet;
use std::sync::{Condvar, Mutex, PoisonError};

use crate::crypto::seal::INDEX_TAG_LEN;

/// A tag as the index stores it.
pub(super) type Tag = [u8; INDEX_TAG_LEN];

/// One message's tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Tagged {
    pub(super) sequence: u64,
    pub(super) tags: Vec<Tag>,
}

/// How many messages one tag-log key holds at most.
pub(super) const PER_KEY: usize = 4096;

/// A tag-log value: each message as its sequence (8 bytes, big-endian), its number of tags (one
/// byte), then its tags.
pub(super) fn encode(entries: &[Tagged]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * (9 + 2 * INDEX_TAG_LEN));
    for e in entries {
        out.extend_from_slice(&e.sequence.to_be_bytes());
        out.push(e.tags.len().min(255) as u8);
        for tag in e.tags.iter().take(255) {
            out.extend_from_slice(tag);
        }
    }
    out
}

/// Why a tag-log value does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a search index value is cut short")]
pub(super) struct Truncated;

/// The messages of a tag-log value.
pub(super) fn decode(mut bytes: &[u8]) -> Result<Vec<Tagged>, Truncated> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let head = bytes.get(..9).ok_or(Truncated)?;
        let sequence = u64::from_be_bytes(head[..8].try_into().map_err(|_| Truncated)?);
        let count = usize::from(head[8]);
        let body = bytes.get(9..9 + count * INDEX_TAG_LEN).ok_or(Truncated)?;
        let tags = body
            .chunks_exact(INDEX_TAG_LEN)
            .map(|c| c.try_into().map_err(|_| Truncated))
            .collect::<Result<_, _>>()?;
        out.push(Tagged { sequence, tags });
        bytes = &bytes[9 + count * INDEX_TAG_LEN..];
    }
    Ok(out)
}

fn short(tag: &Tag) -> u64 {
    let mut first = [0; 8];
    first.copy_from_slice(&tag[..8]);
    u64::from_be_bytes(first)
}

/// Bits of a packed posting that hold the sequence: 36, for 68 billion entries; the other 28
/// hold the start of the tag.
const SEQUENCE_BITS: u32 = 36;

/// One posting: the start of a tag and a message's sequence, ordered by tag, then sequence.
trait Posting: Copy + Ord + std::hash::Hash {
    const ZERO: Self;

    /// The posting of `sequence` under a tag that starts with `short`.
    fn of(short: u64, sequence: u64) -> Self;

    /// The first posting a tag starting with `short` can have.
    fn first(short: u64) -> Self {
        Self::of(short, 0)
    }

    /// Whether this posting is under the tag that starts with `short`.
    fn under(&self, short: u64) -> bool;

    fn sequence(&self) -> u64;
}

/// The tag's first 28 bits and the sequence in one word: half the memory of the wide form, for
/// every sequence below 2^36.
impl Posting for u64 {
    const ZERO: Self = 0;

    fn of(short: u64, sequence: u64) -> Self {
        (short >> SEQUENCE_BITS << SEQUENCE_BITS) | sequence
    }

    fn under(&self, short: u64) -> bool {
        self >> SEQUENCE_BITS == short >> SEQUENCE_BITS
    }

    fn sequence(&self) -> u64 {
        self & ((1 << SEQUENCE_BITS) - 1)
    }
}

/// A posting too large to pack: the tag's first 8 bytes and the sequence.
type Wide = (u64, u64);

/// The tag's first 8 bytes and the sequence, for sequences too large to pack.
impl Posting for Wide {
    const ZERO: Self = (0, 0);

    fn of(short: u64, sequence: u64) -> Self {
        (short, sequence)
    }

    fn under(&self, short: u64) -> bool {
        self.0 == short
    }

    fn sequence(&self) -> u64 {
        self.1
    }
}

/// Sorted postings, with the latest additions and removals kept apart until they are folded
/// in.
#[derive(Debug, Default)]
struct Sorted<P> {
    sorted: Vec<P>,
    recent: Vec<P>,
    removed: HashSet<P>,
}

/// Additions kept apart before they are merged into the sorted postings.
const RECENT: usize = 65_536;

impl<P: Posting> Sorted<P> {
    fn insert(&mut self, posting: P) {
        self.removed.remove(&posting);
        self.recent.push(posting);
        if self.recent.len() >= RECENT {
            self.fold();
        }
    }

    fn remove(&mut self, posting: P) {
        self.removed.insert(posting);
        if self.removed.len() >= RECENT {
            self.fold();
        }
    }

    /// Merges the recent postings into the sorted ones, in place, from the back, and drops the
    /// removed ones.
    fn fold(&mut self) {
        self.recent.sort_unstable();
        let (n, m) = (self.sorted.len(), self.recent.len());
        self.sorted.resize(n + m, P::ZERO);
        let (mut i, mut j) = (n, m);
        for k in (0..n + m).rev() {
            if j == 0 {
                break;
            }
            if i > 0 && self.sorted[i - 1] > self.recent[j - 1] {
                self.sorted[k] = self.sorted[i - 1];
                i -= 1;
            } else {
                self.sorted[k] = self.recent[j - 1];
                j -= 1;
            }
        }
        self.recent.clear();
        self.sorted.dedup();
        if !self.removed.is_empty() {
            let removed = std::mem::take(&mut self.removed);
            self.sorted.retain(|p| !removed.contains(p));
        }
    }

    fn lookup(&self, short: u64, out: &mut Vec<u64>) {
        let first = P::first(short);
        let start = self.sorted.partition_point(|p| *p < first);
        let found = self.sorted[start..]
            .iter()
            .take_while(|p| p.under(short))
            .chain(self.recent.iter().filter(|p| p.under(short)))
            .filter(|p| !self.removed.contains(p))
            .map(P::sequence);
        out.extend(found);
    }
}

/// Every posting: packed in a word while the sequence allows, wide beyond.
#[derive(Debug, Default)]
struct Postings {
    packed: Sorted<u64>,
    wide: Sorted<Wide>,
}

impl Postings {
    fn insert(&mut self, tagged: &Tagged) {
        self.each(tagged, Sorted::insert, Sorted::insert);
    }

    fn remove(&mut self, tagged: &Tagged) {
        self.each(tagged, Sorted::remove, Sorted::remove);
    }

    /// Applies `packed` or `wide` to each posting of `tagged`, by the form its sequence takes.
    fn each(
        &mut self,
        tagged: &Tagged,
        packed: fn(&mut Sorted<u64>, u64),
        wide: fn(&mut Sorted<Wide>, Wide),
    ) {
        for tag in &tagged.tags {
            if tagged.sequence >> SEQUENCE_BITS == 0 {
                packed(&mut self.packed, u64::of(short(tag), tagged.sequence));
            } else {
                wide(&mut self.wide, Posting::of(short(tag), tagged.sequence));
            }
        }
    }

    fn fold(&mut self) {
        self.packed.fold();
        self.wide.fold();
    }

    fn lookup(&self, tag: &Tag, out: &mut Vec<u64>) {
        self.packed.lookup(short(tag), out);
        self.wide.lookup(short(tag), out);
    }
}

/// Where the in-memory index stands.
#[derive(Debug, Default)]
enum Load {
    /// The tag log is being read; what the writer applies meanwhile is kept.
    #[default]
    Loading,
    Loaded,
    /// The tag log could not be read: searches fail with this, rather than miss.
    Failed(String),
}

/// The in-memory lookup structure of one log.
#[derive(Debug, Default)]
pub(super) struct SearchIndex {
    postings: Mutex<(Load, Postings)>,
    loaded: Condvar,
}

impl SearchIndex {
    /// What the writer made durable: messages indexed and messages redacted.
    pub(super) fn apply(&self, added: &[Tagged], removed: &[Tagged]) {
        if added.is_empty() && removed.is_empty() {
            return;
        }
        let mut guard = self.postings.lock().unwrap_or_else(PoisonError::into_inner);
        for t in added {
            guard.1.insert(t);
        }
        for t in removed {
            guard.1.remove(t);
        }
    }

    /// Adds what the tag log held when it was read, to what the writer applied meanwhile, and
    /// wakes the searches waiting for it.
    pub(super) fn loaded(&self, read: Result<Vec<Tagged>, String>) {
        let mut guard = self.postings.lock().unwrap_or_else(PoisonError::into_inner);
        match read {
            Ok(read) => {
                for t in &read {
                    guard.1.insert(t);
                }
                guard.1.fold();
                guard.0 = Load::Loaded;
            }
            Err(why) => guard.0 = Load::Failed(why),
        }
        self.loaded.notify_all();
    }

    /// Forgets everything, to be loaded again (after the views were rebuilt).
    pub(super) fn reset(&self) {
        *self.postings.lock().unwrap_or_else(PoisonError::into_inner) =
            (Load::Loading, Postings::default());
    }

    /// The sequences whose message carries one of `tags`, once loaded; ascending, each once.
    pub(super) fn lookup(&self, tags: &[Tag]) -> Result<Vec<u64>, String> {
        let mut guard = self.postings.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            match &guard.0 {
                Load::Loading => {
                    guard = self
                        .loaded
                        .wait(guard)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                Load::Failed(why) => return Err(why.clone()),
                Load::Loaded => break,
            }
        }
        let mut out = Vec::new();
        for tag in tags {
            guard.1.lookup(tag, &mut out);
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(byte: u8) -> Tag {
        [byte; INDEX_TAG_LEN]
    }

    #[test]
    fn tag_log_values_round_trip_and_a_cut_one_is_refused() {
        let entries = vec![
            Tagged {
                sequence: 7,
                tags: vec![tag(1), tag(2)],
            },
            Tagged {
                sequence: 9,
                tags: vec![],
            },
            Tagged {
                sequence: 1 << 40,
                tags: vec![tag(3)],
            },
        ];
        let bytes = encode(&entries);
        assert_eq!(bytes.len(), 3 * 9 + 3 * INDEX_TAG_LEN);
        assert_eq!(decode(&bytes).unwrap(), entries);
        assert_eq!(decode(&bytes[..bytes.len() - 1]), Err(Truncated));
        assert_eq!(decode(&bytes[..5]), Err(Truncated));
    }

    /// Postings against a plain list of (tag, sequence) pairs, through inserts, removals and
    /// folds in every order.
    #[test]
    fn postings_agree_with_a_plain_list() {
        let mut postings = Postings::default();
        let mut plain: Vec<(Tag, u64)> = Vec::new();
        let mut state = 0x2545_f491_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for step in 0..20_000u64 {
            let t = tag((next() % 40) as u8);
            // Both sides of the largest sequence a packed posting holds.
            let sequence = (1 << SEQUENCE_BITS) - 250 + next() % 500;
            let one = Tagged {
                sequence,
                tags: vec![t],
            };
            if next() % 4 == 0 {
                postings.remove(&one);
                plain.retain(|p| *p != (t, sequence));
            } else {
                postings.insert(&one);
                plain.push((t, sequence));
            }
            if step % 997 == 0 {
                postings.fold();
            }
        }
        for byte in 0..40 {
            let mut found = Vec::new();
            postings.lookup(&tag(byte), &mut found);
            found.sort_unstable();
            found.dedup();
            let mut expected: Vec<u64> = plain
                .iter()
                .filter(|p| p.0 == tag(byte))
                .map(|p| p.1)
                .collect();
            expected.sort_unstable();
            expected.dedup();
            assert_eq!(found, expected, "tag {byte}");
        }
    }
}
