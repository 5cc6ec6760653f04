//! Sorted packed postings in their coded form: blocks of [`BLOCK`], each posting a gap from
//! the one before, Rice-coded. What the search index keeps in memory for every message it
//! holds, at about half a word a posting.

use super::{Posting, SEQUENCE_BITS};

/// Postings a block holds: the unit a lookup decodes.
const BLOCK: usize = 128;

/// A gap whose quotient reaches this is written whole, after as many one bits.
const ESCAPE: u32 = 32;

/// Where one block of a run starts, and how its gaps are coded.
#[derive(Debug, Clone, Copy)]
struct Block {
    /// Its first posting, whole: what a lookup searches by.
    first: u64,
    /// The bit its second posting starts at.
    at: u64,
    /// Low bits of each gap written as they are.
    k: u8,
    /// Bits the block's largest sequence takes.
    s: u8,
}

/// Sorted packed postings, coded in blocks of [`BLOCK`]. Within a block a posting is taken as
/// its tag's bits above just the bits the block's sequences need, and written as its gap from
/// the one before, Rice-coded: the gap's quotient by 2^k in unary, then its k low bits. Tags
/// are keyed hashes, so postings spread evenly and a gap is near the block's mean: about the
/// mean's logarithm in bits, some 31 a posting at 1,000,000 messages against the 64 of a word.
#[derive(Debug, Default)]
pub(super) struct Run {
    blocks: Vec<Block>,
    bits: Vec<u64>,
    /// Bits written.
    end: u64,
    len: usize,
}

/// A posting in a block's form: its tag's bits above the `s` bits of its sequence.
fn narrow(posting: u64, s: u8) -> u64 {
    ((posting >> SEQUENCE_BITS) << s) | posting.sequence()
}

/// A posting from its block's form.
fn widen(key: u64, s: u8) -> u64 {
    u64::of((key >> s) << SEQUENCE_BITS, key & low_bits(s.into()))
}

/// A mask of the `n` low bits.
fn low_bits(n: u32) -> u64 {
    u64::MAX.checked_shr(64 - n).unwrap_or(0)
}

impl Run {
    /// A run of `postings`, which come sorted; a repeated one is kept once.
    pub(super) fn of(postings: impl Iterator<Item = u64>) -> Self {
        let mut run = Self::default();
        let mut block = Vec::with_capacity(BLOCK);
        let mut previous = None;
        for posting in postings {
            if previous == Some(posting) {
                continue;
            }
            debug_assert!(previous.is_none_or(|last| last < posting));
            previous = Some(posting);
            block.push(posting);
            if block.len() == BLOCK {
                run.push_block(&block);
                block.clear();
            }
        }
        if !block.is_empty() {
            run.push_block(&block);
        }
        run.bits.shrink_to_fit();
        run.blocks.shrink_to_fit();
        run
    }

    fn push_block(&mut self, block: &[u64]) {
        let largest = block.iter().map(|p| p.sequence()).max().unwrap_or(0);
        let s = (64 - largest.leading_zeros()) as u8;
        let (first, last) = (narrow(block[0], s), narrow(block[block.len() - 1], s));
        let mean = (last - first) / (block.len() as u64 - 1).max(1);
        let k = mean.checked_ilog2().unwrap_or(0);
        self.blocks.push(Block {
            first: block[0],
            at: self.end,
            k: k as u8,
            s,
        });
        let mut previous = first;
        for posting in &block[1..] {
            let key = narrow(*posting, s);
            let gap = key - previous;
            previous = key;
            match u32::try_from(gap >> k) {
                Ok(quotient) if quotient < ESCAPE => {
                    self.push_bits(low_bits(quotient), quotient + 1);
                    self.push_bits(gap & low_bits(k), k);
                }
                _ => {
                    self.push_bits(low_bits(ESCAPE), ESCAPE);
                    self.push_bits(gap, 64);
                }
            }
        }
        self.len += block.len();
    }

    /// Appends the `n` low bits of `value`.
    fn push_bits(&mut self, value: u64, n: u32) {
        if n == 0 {
            return;
        }
        let at = (self.end % 64) as u32;
        if at == 0 {
            self.bits.push(0);
        }
        let last = self.bits.len() - 1;
        self.bits[last] |= value << at;
        if at + n > 64 {
            self.bits.push(value >> (64 - at));
        }
        self.end += u64::from(n);
    }

    /// The postings from the start of block `block` on, in order.
    fn starting_at(&self, block: usize) -> RunIter<'_> {
        RunIter {
            run: self,
            block,
            left: 0,
            key: 0,
            at: 0,
        }
    }

    pub(super) fn iter(&self) -> RunIter<'_> {
        self.starting_at(0)
    }

    /// The sequences under the tag that starts with `short`.
    pub(super) fn lookup(&self, short: u64, out: &mut Vec<u64>) {
        let first = u64::first(short);
        // The postings under the tag may start in the block before the first that starts
        // at or after it.
        let block = self
            .blocks
            .partition_point(|b| b.first < first)
            .saturating_sub(1);
        let found = self
            .starting_at(block)
            .skip_while(|p| *p < first)
            .take_while(|p| p.under(short))
            .map(|p| p.sequence());
        out.extend(found);
    }

    /// Postings held.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held.
    #[cfg(test)]
    fn size(&self) -> usize {
        self.bits.len() * 8 + self.blocks.len() * std::mem::size_of::<Block>()
    }
}

/// A run's postings in order, decoded a gap at a time.
pub(super) struct RunIter<'a> {
    run: &'a Run,
    /// The block of the next posting, when `left` is 0.
    block: usize,
    /// Postings left in the current block.
    left: usize,
    /// The last posting in its block's form.
    key: u64,
    /// The bit the next gap starts at.
    at: u64,
}

impl RunIter<'_> {
    /// The next `n` bits (at most 64).
    fn take(&mut self, n: u32) -> u64 {
        let value = self.peek(n);
        self.at += u64::from(n);
        value
    }

    fn peek(&self, n: u32) -> u64 {
        if n == 0 {
            return 0;
        }
        let bits = &self.run.bits;
        let (word, shift) = ((self.at / 64) as usize, (self.at % 64) as u32);
        let mut value = bits.get(word).copied().unwrap_or(0) >> shift;
        if shift > 0 && shift + n > 64 {
            value |= bits.get(word + 1).copied().unwrap_or(0) << (64 - shift);
        }
        value & low_bits(n)
    }
}

impl Iterator for RunIter<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.left == 0 {
            let b = self.run.blocks.get(self.block)?;
            self.left = (self.run.len - self.block * BLOCK).min(BLOCK) - 1;
            self.key = narrow(b.first, b.s);
            self.at = b.at;
            self.block += 1;
            return Some(b.first);
        }
        let b = self.run.blocks[self.block - 1];
        let k = u32::from(b.k);
        let quotient = self.peek(ESCAPE).trailing_ones();
        let gap = if quotient < ESCAPE {
            self.at += u64::from(quotient) + 1;
            (u64::from(quotient) << k) | self.take(k)
        } else {
            self.at += u64::from(ESCAPE);
            self.take(64)
        };
        self.key += gap;
        self.left -= 1;
        Some(widen(self.key, b.s))
    }
}

/// One run of the postings of `runs` that `keep` keeps.
pub(super) fn merge(runs: &[Run], keep: impl Fn(&u64) -> bool) -> Run {
    let mut heads: Vec<_> = runs.iter().map(|run| run.iter().peekable()).collect();
    let merged = std::iter::from_fn(|| {
        let (at, _) = heads
            .iter_mut()
            .enumerate()
            .filter_map(|(i, head)| head.peek().map(|p| (i, *p)))
            .min_by_key(|(_, p)| *p)?;
        heads[at].next()
    });
    Run::of(merged.filter(keep))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A xorshift generator: the same numbers on every run.
    pub(in crate::log) fn numbers(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    /// A run gives back exactly the postings it was made of, and a lookup finds every posting
    /// of a tag and no other: with tags spread at random, a tag whose postings fill several
    /// blocks, gaps too large for the coding's quotient, and the smallest and largest tags and
    /// sequences a packed posting holds.
    #[test]
    fn runs_give_back_their_postings_and_find_each_tag() {
        let mut next = numbers(0x9e37_79b9_7f4a_7c15);
        let largest = (1 << SEQUENCE_BITS) - 1;
        let mut postings: Vec<u64> = (0..20_000)
            .map(|_| u64::of(next(), next() % 300_000))
            .collect();
        let crowded = next();
        postings.extend((0..1_000).map(|n| u64::of(crowded, n * 7)));
        postings.extend([
            u64::of(0, 0),
            u64::of(0, largest),
            u64::of(u64::MAX, 0),
            u64::of(u64::MAX, largest),
            u64::of(1 << 40, largest),
        ]);
        postings.extend(postings.clone().into_iter().take(100));
        postings.sort_unstable();
        let run = Run::of(postings.iter().copied());
        postings.dedup();
        assert_eq!(run.len, postings.len());
        assert_eq!(run.iter().collect::<Vec<_>>(), postings);
        let mut shorts: Vec<u64> = postings
            .iter()
            .map(|p| p & !low_bits(SEQUENCE_BITS))
            .collect();
        // Tags nobody carries: one at random, and the one beside the crowded tag.
        shorts.extend([
            u64::of(next(), 0),
            u64::of(crowded + (1 << SEQUENCE_BITS), 0),
        ]);
        shorts.dedup();
        for short in shorts {
            let mut found = Vec::new();
            run.lookup(short, &mut found);
            let expected: Vec<u64> = postings
                .iter()
                .filter(|p| p.under(short))
                .map(|p| p.sequence())
                .collect();
            assert_eq!(found, expected, "tag {short:x}");
        }
        // A block with one gap far beyond its mean, between two crowded tags: that gap is
        // written whole.
        let uneven: Vec<u64> = [5, 6_000]
            .into_iter()
            .flat_map(|tag| (0..64).map(move |n| u64::of(tag << SEQUENCE_BITS, 1_000_000 + n)))
            .collect();
        let run = Run::of(uneven.iter().copied());
        assert_eq!(run.iter().collect::<Vec<_>>(), uneven);
        // A posting repeated across the end of a block is kept once.
        let full: Vec<u64> = (0..BLOCK as u64).map(|n| u64::of(0, n)).collect();
        let run = Run::of(full.iter().copied().chain([full[BLOCK - 1]]));
        assert_eq!(run.len, BLOCK);
        assert_eq!(run.iter().collect::<Vec<_>>(), full);
    }

    /// As a node's index holds them (two tags a message, a million messages), postings take
    /// about half the memory of one word each.
    #[test]
    fn a_run_takes_about_half_a_word_a_posting() {
        let mut next = numbers(0x2545_f491_4f6c_dd1d);
        let mut postings: Vec<u64> = (1..=100_000u64)
            .flat_map(|sequence| {
                [
                    u64::of(next(), sequence * 10),
                    u64::of(next(), sequence * 10),
                ]
            })
            .collect();
        postings.sort_unstable();
        let run = Run::of(postings.iter().copied());
        let per_posting = run.size() as f64 / postings.len() as f64;
        assert!(
            (3.0..4.5).contains(&per_posting),
            "{per_posting} bytes a posting"
        );
    }
}
