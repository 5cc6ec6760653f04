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
//! A posting keeps the first 28 bits of its tag with the message's sequence (in 16 bytes for a
//! sequence of 2^36 or more): a collision only adds a candidate, and every candidate is checked
//! against its envelope before it is returned. Sorted postings are held gap-coded in blocks,
//! about 4 bytes a posting at 1,000,000 messages where a word would take 8.

use std::collections::HashSet;
use std::sync::{Condvar, Mutex, PoisonError};

use crate::crypto::seal::INDEX_TAG_LEN;

mod run;

use run::{Run, merge};

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

/// Postings read from the tag log a value at a time: sorted into a run for every
/// [`READ_RUN`] of them, so that what loading a large log holds at once stays small.
#[derive(Debug, Default)]
pub(super) struct Read {
    runs: Vec<Run>,
    packed: Vec<u64>,
    wide: Vec<Tagged>,
}

/// Postings read before they are sorted into a run: 8 MiB of them, as many as a fold merges
/// at most.
const READ_RUN: usize = LARGEST_MERGE;

impl Read {
    /// Adds the messages of one tag-log value.
    pub(super) fn add(&mut self, value: &[u8]) -> Result<(), Truncated> {
        for tagged in decode(value)? {
            if tagged.sequence >> SEQUENCE_BITS == 0 {
                // One buffer for every run, never grown: loading leaves behind none of the
                // smaller ones a growing buffer passes through.
                if self.packed.capacity() == 0 {
                    self.packed.reserve_exact(READ_RUN);
                }
                if self.packed.len() + tagged.tags.len() > self.packed.capacity() {
                    self.sort_into_run();
                }
                let postings = tagged
                    .tags
                    .iter()
                    .map(|tag| u64::of(short(tag), tagged.sequence));
                self.packed.extend(postings);
            } else {
                self.wide.push(tagged);
            }
        }
        Ok(())
    }

    fn sort_into_run(&mut self) {
        if !self.packed.is_empty() {
            self.packed.sort_unstable();
            self.runs.push(Run::of(self.packed.drain(..)));
        }
    }

    /// Everything read, its packed postings in runs of at most [`READ_RUN`] (the last one
    /// smaller): the size a fold stops merging at, which a sweep rewrites one at a time.
    fn finish(mut self) -> Loaded {
        self.sort_into_run();
        Loaded {
            runs: self.runs,
            wide: self.wide,
        }
    }
}

/// What the tag log held, ready to join the postings.
#[derive(Debug)]
struct Loaded {
    runs: Vec<Run>,
    wide: Vec<Tagged>,
}

/// Postings a fold merges at most: the writer folds what it made durable, so this bounds the
/// time it spends on the index at once (a million postings take about 30 ms to merge on two
/// shared cores), whatever the size of the log. Beyond it, runs of about this size stand side
/// by side, and a lookup reads a block of each.
const LARGEST_MERGE: usize = 1 << 20;

/// Packed postings as runs of at most about [`LARGEST_MERGE`], with the latest additions kept
/// apart until they are folded in, and removals kept apart until a sweep drops them. Folding
/// makes the additions a run and merges it with the runs before it while they are no more than
/// twice its size, so that a posting is rewritten about once for each doubling of its run, and
/// a fold's work is most often the size of the additions rather than of the index. (The runs
/// the tag log was read into come first, whatever their size, and a sweep shrinks runs.)
#[derive(Debug, Default)]
struct Compact {
    runs: Vec<Run>,
    recent: Vec<u64>,
    removed: HashSet<u64>,
    sweep: Sweep,
}

/// Removals set apart while the runs written before them are rewritten without them, a run at
/// a time, so that forgetting many removals (a retention sweep's redactions) never keeps the
/// writer on the whole index at once.
#[derive(Debug, Default)]
struct Sweep {
    removed: HashSet<u64>,
    /// How many runs, the oldest ones, may still hold a posting of `removed`.
    left: usize,
}

impl Compact {
    fn insert(&mut self, posting: u64) {
        self.removed.remove(&posting);
        self.sweep.removed.remove(&posting);
        self.recent.push(posting);
        if self.recent.len() >= RECENT {
            self.fold();
        }
    }

    fn remove(&mut self, posting: u64) {
        self.removed.insert(posting);
        if self.removed.len() >= RECENT && self.sweep.removed.is_empty() {
            self.start_sweep();
        }
    }

    fn is_removed(&self, posting: &u64) -> bool {
        self.removed.contains(posting) || self.sweep.removed.contains(posting)
    }

    /// Makes the recent additions a run, and merges it with the runs before it while they are
    /// no more than twice its size and the merge stays within [`LARGEST_MERGE`].
    fn fold(&mut self) {
        if self.recent.is_empty() {
            return;
        }
        let mut recent = std::mem::take(&mut self.recent);
        recent.sort_unstable();
        let run = Run::of(recent.into_iter().filter(|p| !self.is_removed(p)));
        self.runs.push(run);
        while let [.., older, newer] = self.runs.as_slice() {
            if older.len() > 2 * newer.len() || older.len() + newer.len() > LARGEST_MERGE {
                break;
            }
            let (newer, older) = (self.runs.pop(), self.runs.pop());
            let merged = self.merge(&[older, newer].map(Option::unwrap_or_default));
            self.runs.push(merged);
            // A merged run holds no removal.
            self.sweep.left = self.sweep.left.min(self.runs.len() - 1);
        }
        self.drop_empty_runs();
    }

    /// Sets the removals apart for a sweep of every run there is now, once the recent
    /// additions are rid of them (the sweep rewrites only runs).
    fn start_sweep(&mut self) {
        let removed = &self.removed;
        self.recent.retain(|p| !removed.contains(p));
        self.sweep.removed = std::mem::take(&mut self.removed);
        self.sweep.left = self.runs.len();
    }

    /// One step of a sweep: rewrites the newest run that may still hold a removal set apart,
    /// without them; once none may, forgets them, and sets apart the removals made since if
    /// they are many. The writer takes a step each time it applies a write, so that a step's
    /// work is at most a run's (about [`LARGEST_MERGE`] postings). (Should the tag log still be
    /// loading when removals are forgotten, a posting it read before its removal comes back: a
    /// candidate only, which the check of every candidate against its envelope drops.)
    fn sweep_step(&mut self) {
        if self.sweep.removed.is_empty() {
            // None on, or re-inserts took back every removal it held.
            self.sweep.left = 0;
            return;
        }
        if let Some(newest) = self.sweep.left.checked_sub(1) {
            let rewritten = self.merge(std::slice::from_ref(&self.runs[newest]));
            self.runs[newest] = rewritten;
            self.sweep.left = newest;
            self.drop_empty_runs();
        }
        if self.sweep.left == 0 {
            // Its table given back, not kept at the size of the removals it held.
            self.sweep.removed = HashSet::new();
            if self.removed.len() >= RECENT {
                self.start_sweep();
            }
        }
    }

    /// Drops the runs left empty, keeping the ones a sweep has still to rewrite first.
    fn drop_empty_runs(&mut self) {
        self.sweep.left = self.runs[..self.sweep.left]
            .iter()
            .filter(|run| !run.is_empty())
            .count();
        self.runs.retain(|run| !run.is_empty());
    }

    /// One run of every posting of `runs` not removed.
    fn merge(&self, runs: &[Run]) -> Run {
        merge(runs, |p| !self.is_removed(p))
    }

    fn lookup(&self, short: u64, out: &mut Vec<u64>) {
        let start = out.len();
        for run in &self.runs {
            run.lookup(short, out);
        }
        out.extend(
            self.recent
                .iter()
                .filter(|p| p.under(short))
                .map(|p| p.sequence()),
        );
        if !self.removed.is_empty() || !self.sweep.removed.is_empty() {
            let mut i = start;
            while i < out.len() {
                if self.is_removed(&u64::of(short, out[i])) {
                    out.swap_remove(i);
                } else {
                    i += 1;
                }
            }
        }
    }
}

/// Every posting: packed while the sequence allows, wide beyond.
#[derive(Debug, Default)]
struct Postings {
    packed: Compact,
    wide: Sorted<Wide>,
}

impl Postings {
    fn insert(&mut self, tagged: &Tagged) {
        self.each(tagged, Compact::insert, Sorted::insert);
    }

    fn remove(&mut self, tagged: &Tagged) {
        self.each(tagged, Compact::remove, Sorted::remove);
    }

    /// Applies `packed` or `wide` to each posting of `tagged`, by the form its sequence takes.
    fn each(
        &mut self,
        tagged: &Tagged,
        packed: fn(&mut Compact, u64),
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

    /// Adds what the tag log held when it was read. A removal the writer applied meanwhile
    /// holds, unless a sweep already forgot it (see [`Compact::sweep_step`]): what was read
    /// joins the postings without undoing it.
    fn load(&mut self, read: Loaded) {
        // Read before the removals a sweep has set apart, if any: they are swept too.
        if !self.packed.sweep.removed.is_empty() {
            self.packed.sweep.left += read.runs.len();
        }
        self.packed.runs.splice(0..0, read.runs);
        for tagged in &read.wide {
            let postings = tagged
                .tags
                .iter()
                .map(|tag| Wide::of(short(tag), tagged.sequence));
            self.wide.recent.extend(postings);
        }
        self.fold();
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
        guard.1.packed.sweep_step();
    }

    /// Adds what the tag log held when it was read, to what the writer applied meanwhile, and
    /// wakes the searches waiting for it.
    pub(super) fn loaded(&self, read: Result<Read, String>) {
        // Sorted before the writer, which applies what it makes durable, is kept waiting.
        let read = read.map(Read::finish);
        let mut guard = self.postings.lock().unwrap_or_else(PoisonError::into_inner);
        match read {
            Ok(read) => {
                guard.1.load(read);
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
    use super::run::tests::numbers;
    use super::*;

    fn tag(byte: u8) -> Tag {
        [byte; INDEX_TAG_LEN]
    }

    /// A message at `sequence` with one tag, all of whose bytes are `byte`.
    fn one(sequence: u64, byte: u8) -> Tagged {
        Tagged {
            sequence,
            tags: vec![tag(byte)],
        }
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

    /// What the tag log held when it was read joins what the writer applied meanwhile, and a
    /// removal applied meanwhile holds.
    #[test]
    fn loading_keeps_what_the_writer_applied_meanwhile() {
        let mut postings = Postings::default();
        postings.insert(&one(40, 1));
        postings.remove(&one(5, 1));
        postings.fold();
        postings.insert(&one(41, 1));
        postings.remove(&one(1 << 41, 1));
        let mut read = Read::default();
        read.add(&encode(&[one(5, 1), one(6, 1)])).unwrap();
        // As a large log's load does: what was read so far sorted into a run of its own.
        read.sort_into_run();
        read.add(&encode(&[one(7, 2), one(1 << 40, 1), one(1 << 41, 1)]))
            .unwrap();
        postings.load(read.finish());
        let mut found = Vec::new();
        postings.lookup(&tag(1), &mut found);
        found.sort_unstable();
        assert_eq!(found, vec![6, 40, 41, 1 << 40]);
        found.clear();
        postings.lookup(&tag(2), &mut found);
        assert_eq!(found, vec![7]);
    }

    /// However many postings come, a fold merges at most [`LARGEST_MERGE`] of them, and every
    /// posting is found.
    #[test]
    fn folds_merge_no_more_than_the_largest_merge() {
        let mut next = numbers(0x51_7cc1_b727_220a);
        let mut compact = Compact::default();
        let count = 3 * LARGEST_MERGE as u64;
        let mut sample = Vec::new();
        for sequence in 1..=count {
            let posting = u64::of(next(), sequence);
            compact.insert(posting);
            if sequence % 100_003 == 0 {
                sample.push(posting);
            }
            assert!(compact.runs.iter().all(|run| run.len() <= LARGEST_MERGE));
        }
        compact.fold();
        assert_eq!(
            compact.runs.iter().map(|run| run.len()).sum::<usize>(),
            count as usize
        );
        assert!(compact.runs.len() >= 3, "{} runs", compact.runs.len());
        for posting in sample {
            let mut found = Vec::new();
            compact.lookup(posting, &mut found);
            assert!(found.contains(&posting.sequence()), "{posting:x}");
        }
    }

    /// Many removals are forgotten a run at a time: each step of the sweep rewrites one run,
    /// after which no run it has rewritten holds a removal; no posting removed is found
    /// meanwhile, recent additions included; and once every run is rewritten the removals are
    /// gone from memory and from every run.
    #[test]
    fn a_sweep_rewrites_one_run_at_a_time() {
        let mut next = numbers(0x9e37_79b9_7f4a_7c15);
        let mut compact = Compact::default();
        let mut kept = Vec::new();
        let mut removed = Vec::new();
        for sequence in 1..=6 * RECENT as u64 {
            let posting = u64::of(next(), sequence);
            compact.insert(posting);
            if sequence % 5 == 0 {
                removed.push(posting);
            } else if sequence % 1_001 == 0 {
                kept.push(posting);
            }
        }
        compact.fold();
        let runs = compact.runs.len();
        assert!(runs >= 2, "{runs} runs");
        let total: usize = compact.runs.iter().map(Run::len).sum();
        // Additions not yet folded, half of them removed.
        let late: Vec<u64> = (1..=100)
            .map(|i| u64::of(next(), 6 * RECENT as u64 + i))
            .collect();
        for &posting in &late {
            compact.insert(posting);
        }
        let (late_removed, late_kept) = late.split_at(50);
        for &posting in late_removed {
            compact.remove(posting);
        }
        // Spread over every run.
        let (first, rest) = removed.split_at(RECENT - late_removed.len());
        for &posting in first {
            compact.remove(posting);
        }
        let found = |compact: &Compact, posting: u64| {
            let mut out = Vec::new();
            compact.lookup(posting, &mut out);
            out.contains(&posting.sequence())
        };
        let hidden = |compact: &Compact, removals: &[u64]| {
            removals.iter().step_by(89).all(|&p| !found(compact, p))
        };
        // The threshold set the removals apart: nothing rewritten yet, nothing removed found.
        assert!(compact.removed.is_empty());
        assert_eq!(compact.sweep.removed.len(), RECENT);
        assert_eq!(compact.sweep.left, runs);
        assert_eq!(compact.runs.iter().map(Run::len).sum::<usize>(), total);
        assert!(hidden(&compact, first));
        assert!(late_removed.iter().all(|&p| !found(&compact, p)));
        // Removals made during the sweep are hidden at once; their set waits for the next.
        let during = &rest[..10];
        for &posting in during {
            compact.remove(posting);
        }
        for step in 1..=runs {
            let before: Vec<usize> = compact.runs.iter().map(Run::len).collect();
            compact.sweep_step();
            let after: Vec<usize> = compact.runs.iter().map(Run::len).collect();
            assert!(after.len() == before.len() && after[..runs - step] == before[..runs - step]);
            assert_eq!(compact.sweep.left, runs - step);
            assert!(
                compact.runs[runs - step..]
                    .iter()
                    .all(|run| run.iter().all(|p| !compact.is_removed(&p))),
                "step {step}: a rewritten run still holds a removal"
            );
            assert!(hidden(&compact, first) && hidden(&compact, during));
        }
        assert_eq!(
            compact.sweep.removed.capacity(),
            0,
            "the swept set's table given back"
        );
        assert_eq!(compact.removed.len(), during.len());
        compact.fold();
        let held: usize = compact.runs.iter().map(Run::len).sum();
        assert_eq!(
            held,
            total + late_kept.len() - first.len() - during.len(),
            "every run rewritten without the removals, those made during the sweep too"
        );
        assert!(late_removed.iter().all(|&p| !found(&compact, p)));
        assert!(kept.iter().chain(late_kept).all(|&p| found(&compact, p)));
    }

    /// The runs read from the tag log while a sweep is on are swept too.
    #[test]
    fn a_sweep_on_while_loading_covers_what_was_read() {
        let mut postings = Postings::default();
        postings.insert(&one(40, 1));
        postings.fold();
        postings.remove(&one(5, 1));
        postings.packed.start_sweep();
        let mut read = Read::default();
        read.add(&encode(&[one(5, 1), one(6, 1)])).unwrap();
        read.sort_into_run();
        read.add(&encode(&[one(7, 1)])).unwrap();
        postings.load(read.finish());
        assert_eq!(postings.packed.runs.len(), 3);
        assert_eq!(postings.packed.sweep.left, 3);
        while postings.packed.sweep.left > 0 {
            postings.packed.sweep_step();
        }
        assert!(postings.packed.sweep.removed.is_empty());
        let held: Vec<u64> = postings
            .packed
            .runs
            .iter()
            .flat_map(|run| run.iter().map(|p| p.sequence()).collect::<Vec<_>>())
            .collect();
        assert!(!held.contains(&5), "{held:?}");
        let mut found = Vec::new();
        postings.lookup(&tag(1), &mut found);
        found.sort_unstable();
        assert_eq!(found, vec![6, 7, 40]);
    }

    /// Postings against a plain list of (tag, sequence) pairs, through inserts, removals,
    /// folds and sweeps, interleaved.
    #[test]
    fn postings_agree_with_a_plain_list() {
        let mut postings = Postings::default();
        let mut plain: Vec<(Tag, u64)> = Vec::new();
        let mut next = numbers(0x2545_f491);
        for step in 0..20_000u64 {
            let t = tag((next() % 40) as u8);
            // Both sides of the largest sequence a packed posting holds, and sequences of a
            // few bits.
            let sequence = if step % 2 == 0 {
                (1 << SEQUENCE_BITS) - 250 + next() % 500
            } else {
                next() % 5_000
            };
            let one = Tagged {
                sequence,
                tags: vec![t],
            };
            if next().is_multiple_of(4) {
                postings.remove(&one);
                plain.retain(|p| *p != (t, sequence));
            } else {
                postings.insert(&one);
                plain.push((t, sequence));
            }
            if step % 997 == 0 {
                postings.fold();
            }
            // Sweeps set apart and stepped through while postings come and go.
            if step % 4_999 == 0 && postings.packed.sweep.removed.is_empty() {
                postings.packed.start_sweep();
            }
            if step % 701 == 0 {
                postings.packed.sweep_step();
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
