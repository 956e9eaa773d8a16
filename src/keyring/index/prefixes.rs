//! A sorted array of prefixes with a directory: the search the index runs over its chunks.

use subtle::{Choice, ConditionallySelectable};

use crate::ct::above_u64;

/// Sorted prefixes (here, the lower bounds of the index's chunks), with a directory that narrows a
/// search to the few prefixes sharing the target's top bits.
///
/// A plain binary search over a million prefixes makes about twenty dependent loads from an
/// 8 MB array, each a likely cache miss. Prefixes are uniformly distributed (they are SHA-256
/// output), so with about one directory bucket per prefix, `directory[b]..directory[b + 1]` holds
/// only a handful of them: the search reads the directory once, then finishes inside that short
/// run. Its step count is `steps`, fixed by the table (the longest run), never by the target, so a
/// hit and a miss take the same steps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(in crate::keyring) struct PrefixIndex {
    pub(in crate::keyring) sorted: Vec<u64>,
    /// `directory[b]` is the position of the first prefix whose top `bits` bits are `>= b`; it has
    /// `2^bits + 1` entries, the last one `sorted.len()`.
    directory: Vec<u32>,
    /// How many top bits pick a bucket: about `log2(len)`, at most [`PrefixIndex::MAX_BITS`].
    bits: u32,
    /// Binary-search steps that always suffice inside one bucket and its left neighbour.
    steps: u32,
}

impl PrefixIndex {
    /// Caps the directory at 2^22 + 1 entries (16 MB), enough for four million secrets at about
    /// one per bucket.
    const MAX_BITS: u32 = 22;

    /// Replaces the contents with `prefixes`, which must come sorted. Reuses the allocations.
    pub(in crate::keyring) fn rebuild(&mut self, prefixes: impl Iterator<Item = u64>) {
        self.sorted.clear();
        self.sorted.extend(prefixes);
        let len = self.sorted.len();
        self.bits = usize::BITS - len.saturating_sub(1).leading_zeros();
        self.bits = self.bits.min(Self::MAX_BITS);
        let buckets = 1usize << self.bits;
        self.directory.clear();
        self.directory.reserve(buckets + 1);
        let mut position = 0usize;
        for bucket in 0..buckets {
            while self
                .sorted
                .get(position)
                .is_some_and(|&p| self.bucket_of(p) < bucket)
            {
                position += 1;
            }
            self.directory
                .push(u32::try_from(position).unwrap_or(u32::MAX));
        }
        self.directory.push(u32::try_from(len).unwrap_or(u32::MAX));
        // The search covers a bucket plus the entry before it (the answer when no prefix of the
        // bucket is <= the target): ceil(log2(longest such span)) halvings bring it down to one.
        let longest = self
            .directory
            .windows(2)
            .filter_map(|w| match w {
                [start, end] => Some(end - start.saturating_sub(1)),
                _ => None,
            })
            .max()
            .unwrap_or(1)
            .max(1);
        self.steps = u32::BITS - (longest - 1).leading_zeros();
    }

    fn bucket_of(&self, prefix: u64) -> usize {
        // `checked_shr` covers `bits == 0`, where every prefix falls in bucket 0.
        usize::try_from(prefix.checked_shr(u64::BITS - self.bits).unwrap_or(0)).unwrap_or(0)
    }

    /// The position of the largest prefix `<= target` (0 if there is none), in one directory read
    /// and `steps` branch-free halvings.
    pub(in crate::keyring) fn search(&self, target: u64) -> usize {
        let bucket = self.bucket_of(target);
        let start = self.directory.get(bucket).copied().unwrap_or(0) as usize;
        let end = self.directory.get(bucket + 1).copied().unwrap_or(0) as usize;
        // Every prefix before `start` is below the target's bucket, so the answer lies in
        // `start - 1 ..= end - 1`.
        let mut base = start.saturating_sub(1);
        let mut size = end.saturating_sub(base).max(1);
        for _ in 0..self.steps {
            let half = size / 2;
            let mid = base + half;
            let mid_prefix = self.sorted.get(mid).copied().unwrap_or(u64::MAX);
            let above = above_u64(mid_prefix, target);
            let mut next = base as u64;
            next.conditional_assign(&(mid as u64), !Choice::from(above));
            base = usize::try_from(next).unwrap_or(base);
            size -= half;
        }
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_finds_every_stored_prefix_and_lands_in_range_otherwise() {
        for n in [0usize, 1, 2, 3, 4, 5, 7, 8, 9, 100] {
            let mut index = PrefixIndex::default();
            index.rebuild((0..n).map(|i| (i as u64) * 10 + 5));
            for i in 0..n {
                let p = (i as u64) * 10 + 5;
                assert_eq!(index.search(p), i);
                // Just above a stored prefix: the largest prefix not above the target.
                assert_eq!(index.search(p + 1), i);
            }
            assert_eq!(index.search(0), 0);
            assert_eq!(index.search(u64::MAX), n.saturating_sub(1));
        }
    }

    proptest::proptest! {
        /// The directory search agrees with the plain definition (the largest prefix <= target,
        /// or position 0), on uniform and on clustered prefixes (long runs in one bucket).
        #[test]
        fn prefix_search_matches_the_definition(
            mut prefixes in proptest::collection::vec(proptest::prelude::any::<u64>(), 0..300),
            cluster in proptest::prelude::any::<bool>(),
            targets in proptest::collection::vec(proptest::prelude::any::<u64>(), 1..20),
        ) {
            if cluster {
                for p in &mut prefixes {
                    *p >>= 40;
                }
            }
            prefixes.sort_unstable();
            prefixes.dedup();
            let mut index = PrefixIndex::default();
            index.rebuild(prefixes.iter().copied());
            let near: Vec<u64> = prefixes.iter().flat_map(|&p| [p, p.wrapping_add(1), p.wrapping_sub(1)]).collect();
            for target in targets.into_iter().chain(near).chain([0, u64::MAX]) {
                let expected = prefixes.iter().rposition(|&p| p <= target).unwrap_or(0);
                proptest::prop_assert_eq!(index.search(target), expected, "target {}", target);
            }
        }
    }
}
