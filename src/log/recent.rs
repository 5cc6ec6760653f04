//! The entries made durable last, with their content, kept in memory while someone follows the
//! log as it grows (the event stream), so that a follower reads what was just written without
//! reading it back from the store. Entries never change once durable, and a write that removes
//! content empties the window, so what the window holds is what the store holds. Nothing is
//! kept while nobody follows.
//!
//! Each entry is held as the record the log's writer gave the store, shared with it rather
//! than copied, and decoded by the follower: the writer, which sets the pace of the receive
//! path, lets go of one buffer per entry as the window moves on, where a decoded entry and its
//! content were half a dozen (measured: 0.7 µs of the writer's CPU per message).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use prost::Message;

use super::{LogError, StoredEntry};
use crate::domain::model::Digest;
use crate::pb;

/// Entries the window holds at most: a follower further behind reads the store.
const HELD: usize = 1024;

/// An entry as written: its record as the store has it, and its content in plain where the
/// record does not hold it so (sealed, or a peer's receipt kept in parts).
#[derive(Debug)]
pub(super) struct Held {
    pub(super) sequence: u64,
    pub(super) hash: Digest,
    pub(super) record: sled::IVec,
    pub(super) plain: Option<Vec<u8>>,
}

impl Held {
    fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The entry, decoded, and its content in plain, if it has any.
    fn read(&self) -> Result<(StoredEntry, Option<&[u8]>), LogError> {
        let view = super::parse_record(self.sequence, &self.record)?;
        let entry = pb::LogEntry::decode(view.entry).map_err(|e| LogError::Corrupt {
            sequence: self.sequence,
            reason: format!("entry: {e}"),
        })?;
        let content = self.plain.as_deref().or(view.content);
        Ok((
            StoredEntry {
                entry,
                hash: self.hash,
            },
            content,
        ))
    }
}

/// The last durable writes' entries, a write at a time, oldest first.
#[derive(Debug, Default)]
pub(super) struct Recent {
    writes: Mutex<VecDeque<Arc<[Held]>>>,
}

impl Recent {
    /// Takes in the entries of a write just made durable (in sequence order, following the
    /// last write taken in), letting go of the oldest beyond what the window holds.
    pub(super) fn push(&self, entries: Vec<Held>) {
        if entries.is_empty() {
            return;
        }
        let mut writes = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        let follows = writes
            .back()
            .and_then(|w| w.last())
            .is_none_or(|last| Some(last.sequence() + 1) == first_sequence(&entries));
        if !follows {
            // A gap (writes were taken in while nobody followed): start again from here.
            writes.clear();
        }
        writes.push_back(entries.into());
        let mut held: usize = writes.iter().map(|w| w.len()).sum();
        while held > HELD
            && let Some(oldest) = writes.pop_front()
        {
            held -= oldest.len();
        }
    }

    /// Lets go of everything: nobody follows.
    pub(super) fn clear(&self) {
        self.writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The entries `from` to `until`, if the window holds every one of them.
    pub(super) fn get(&self, from: u64, until: u64) -> Option<Window> {
        let writes = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        let first = first_sequence(writes.front()?)?;
        let last = writes.back()?.last()?.sequence();
        if from < first || until > last || from > until {
            return None;
        }
        let writes = writes
            .iter()
            .filter(|w| {
                first_sequence(w).is_some_and(|f| f <= until)
                    && w.last().is_some_and(|l| l.sequence() >= from)
            })
            .cloned()
            .collect();
        Some(Window {
            writes,
            from,
            until,
        })
    }
}

fn first_sequence(entries: &[Held]) -> Option<u64> {
    entries.first().map(Held::sequence)
}

/// Entries read from the window: shared with it, not copied.
#[derive(Debug)]
pub struct Window {
    writes: Vec<Arc<[Held]>>,
    from: u64,
    until: u64,
}

impl Window {
    /// The entries, in sequence order, each with its content in plain if it holds any.
    pub fn iter(
        &self,
    ) -> impl Iterator<Item = Result<(StoredEntry, Option<&[u8]>), LogError>> + '_ {
        self.writes
            .iter()
            .flat_map(|w| w.iter())
            .filter(|h| (self.from..=self.until).contains(&h.sequence()))
            .map(Held::read)
    }
}

/// An entry read with [`Entries::iter`], and its content in plain if at hand.
pub type DurableEntry<'a> = Result<(Cow<'a, StoredEntry>, Option<&'a [u8]>), LogError>;

/// Durable entries asked for by sequence: shared with the window, or read from the store.
#[derive(Debug)]
pub enum Entries {
    /// From the window of recent writes.
    Recent(Window),
    /// Read from the store.
    Read(Vec<StoredEntry>),
}

impl Entries {
    /// The entries, in sequence order, each with its content in plain when it is at hand
    /// (from the window); otherwise the content is read with [`super::ExchangeLog::content`].
    pub fn iter(&self) -> Box<dyn Iterator<Item = DurableEntry<'_>> + '_> {
        match self {
            Self::Recent(window) => {
                Box::new(window.iter().map(|r| r.map(|(e, c)| (Cow::Owned(e), c))))
            }
            Self::Read(entries) => Box::new(entries.iter().map(|e| Ok((Cow::Borrowed(e), None)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::Digest;
    use crate::pb;

    fn entries(from: u64, count: u64) -> Vec<Held> {
        (from..from + count)
            .map(|sequence| {
                let entry = pb::LogEntry {
                    sequence,
                    ..Default::default()
                }
                .encode_to_vec();
                let content = sequence.to_be_bytes();
                let (record, _) = super::super::new_record(
                    &entry,
                    pb::EntryKind::MessageReceived,
                    Some(&content),
                    None,
                    None,
                );
                Held {
                    sequence,
                    hash: Digest::default(),
                    record: record.into(),
                    plain: None,
                }
            })
            .collect()
    }

    fn sequences(window: &Window) -> Vec<u64> {
        window
            .iter()
            .map(|read| {
                let (e, content) = read.unwrap();
                assert_eq!(content, Some(&e.entry.sequence.to_be_bytes()[..]));
                e.entry.sequence
            })
            .collect()
    }

    #[test]
    fn a_window_gives_exactly_the_entries_asked_for_across_writes() {
        let recent = Recent::default();
        recent.push(entries(1, 3));
        recent.push(entries(4, 3));
        let window = recent.get(2, 5).expect("held");
        assert_eq!(sequences(&window), vec![2, 3, 4, 5]);
        assert!(recent.get(5, 7).is_none(), "entry 7 is not durable yet");
        assert!(recent.get(0, 2).is_none(), "entry 0 was never held");
    }

    #[test]
    fn the_oldest_writes_leave_beyond_what_the_window_holds() {
        let recent = Recent::default();
        let write = HELD as u64 / 2;
        recent.push(entries(1, write));
        recent.push(entries(write + 1, write));
        recent.push(entries(2 * write + 1, write));
        assert!(recent.get(1, 1).is_none(), "the first write was let go");
        let window = recent
            .get(write + 1, 3 * write)
            .expect("the last two writes are held");
        assert_eq!(window.iter().count() as u64, 2 * write);
    }

    #[test]
    fn a_gap_starts_the_window_again() {
        let recent = Recent::default();
        recent.push(entries(1, 3));
        recent.push(entries(10, 2));
        assert!(
            recent.get(3, 10).is_none(),
            "entries 4 to 9 were never taken in"
        );
        assert_eq!(sequences(&recent.get(10, 11).expect("held")), vec![10, 11]);
        recent.clear();
        assert!(recent.get(10, 11).is_none());
    }
}
