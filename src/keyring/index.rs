//! The constant-time index from token hash to key slot: sorted hash prefixes with a directory.
//! See the [`keyring`](super) module docs for why a lookup through it stays constant time.

use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use super::KeyringError;
use crate::ct::{above_u64, after};
use crate::key::ApiKey;
use crate::timestamp::Timestamp;
use crate::token::TokenHash;

/// The slot of the dummy key that misses are judged against in an empty table.
pub(super) const DUMMY_SLOT: u32 = 0;

/// One stored secret: the current token of a key, or a retired one still in its grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IndexEntry {
    /// The first 8 bytes of `hash`, big-endian: the sort and search key.
    pub(super) prefix: u64,
    pub(super) hash: TokenHash,
    pub(super) slot: u32,
    /// The first instant the secret stops working: [`Timestamp::MAX`] for a current secret.
    pub(super) valid_until: Timestamp,
}

impl IndexEntry {
    fn new(hash: TokenHash, slot: u32, valid_until: Timestamp) -> Self {
        Self {
            prefix: prefix_of(&hash),
            hash,
            slot,
            valid_until,
        }
    }

    /// What the search lands on in an empty table: points at the dummy slot, and is never valid.
    pub(super) const DUMMY: Self = Self {
        prefix: 0,
        hash: TokenHash::from_bytes([0; 32]),
        slot: DUMMY_SLOT,
        valid_until: Timestamp::from_unix_micros(i64::MIN),
    };
}

/// Every indexed secret, sorted by prefix with unique prefixes, and the prefix directory the
/// search reads. The keyring keeps it equal to [`entries_for`] of every stored key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct SecretIndex {
    pub(super) entries: Vec<IndexEntry>,
    /// `entries[i].prefix`, for every `i`, with a directory into them: all the search reads.
    pub(super) prefixes: PrefixIndex,
}

impl SecretIndex {
    /// An index of `entries` in any order, built with one sort. Fails on two secrets with the same
    /// prefix, naming the slot of the second.
    pub(super) fn from_entries(
        mut entries: Vec<IndexEntry>,
        id_at: impl Fn(u32) -> crate::key::KeyId,
    ) -> Result<Self, KeyringError> {
        entries.sort_unstable_by_key(|e| e.prefix);
        for pair in entries.windows(2) {
            if let [a, b] = pair
                && a.prefix == b.prefix
            {
                let id = id_at(b.slot);
                return Err(if a.hash == b.hash {
                    KeyringError::DuplicateToken(id)
                } else {
                    KeyringError::PrefixCollision(id)
                });
            }
        }
        let mut index = Self {
            entries,
            prefixes: PrefixIndex::default(),
        };
        index.sync_prefixes();
        Ok(index)
    }

    /// How many secrets are indexed.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The slot of the entry the search for `hash` lands on (the key it belongs to when it
    /// matched; a neighbour, or the dummy in an empty table, when not), and whether it matched a
    /// secret that still works at `now`. Constant time: a fixed number of search steps, one full
    /// hash comparison, one validity comparison.
    pub(super) fn lookup(&self, hash: &TokenHash, now: Timestamp) -> (u32, Choice) {
        let entry = self
            .entries
            .get(self.prefixes.search(prefix_of(hash)))
            .unwrap_or(&IndexEntry::DUMMY);
        let matched = entry.hash.ct_eq(hash) & works_at(entry.valid_until, now);
        (entry.slot, matched)
    }

    /// Whether `key`'s secrets can be indexed at `slot`: none may share a prefix with a secret of
    /// another slot, nor with each other.
    pub(super) fn check(&self, key: &ApiKey, slot: u32) -> Result<(), KeyringError> {
        let clash = |a: &IndexEntry, b: &IndexEntry| {
            if a.hash == b.hash {
                KeyringError::DuplicateToken(key.id())
            } else {
                KeyringError::PrefixCollision(key.id())
            }
        };
        let mut own = entries_for(key, slot);
        let current = own.next();
        let retired = own.next();
        if let (Some(current), Some(retired)) = (&current, &retired)
            && current.prefix == retired.prefix
        {
            return Err(clash(current, retired));
        }
        for new in current.iter().chain(retired.iter()) {
            let at = self.entries.partition_point(|e| e.prefix < new.prefix);
            if let Some(old) = self.entries.get(at)
                && old.prefix == new.prefix
                && old.slot != slot
            {
                return Err(clash(old, new));
            }
        }
        Ok(())
    }

    /// Indexes `key`'s secrets at `slot`, replacing whatever that slot had. [`check`](Self::check)
    /// must have passed.
    pub(super) fn put(&mut self, key: &ApiKey, slot: u32) {
        self.entries.retain(|e| e.slot != slot);
        for entry in entries_for(key, slot) {
            let at = self.entries.partition_point(|e| e.prefix < entry.prefix);
            self.entries.insert(at, entry);
        }
        self.sync_prefixes();
    }

    /// Drops every secret of `slot`.
    pub(super) fn remove(&mut self, slot: u32) {
        self.entries.retain(|e| e.slot != slot);
        self.sync_prefixes();
    }

    /// Points the secrets of slot `from` at slot `to` (after the keyring moved a key).
    pub(super) fn move_slot(&mut self, from: u32, to: u32) {
        for entry in self.entries.iter_mut().filter(|e| e.slot == from) {
            entry.slot = to;
        }
    }

    /// Drops every secret that no longer works at `now`, and returns how many.
    pub(super) fn prune(&mut self, now: Timestamp) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|e| bool::from(works_at(e.valid_until, now)));
        let pruned = before - self.entries.len();
        if pruned > 0 {
            self.sync_prefixes();
        }
        pruned
    }

    /// Rebuilds `prefixes` from `entries` after a change (in place: no allocation once the
    /// capacity is there). Linear, like the `Vec` insertions and removals it follows.
    fn sync_prefixes(&mut self) {
        self.prefixes.rebuild(self.entries.iter().map(|e| e.prefix));
    }
}

/// The sorted hash prefixes of every indexed secret, with a directory that narrows a search to
/// the few prefixes sharing the target's top bits.
///
/// A plain binary search over a million prefixes makes about twenty dependent loads from an
/// 8 MB array, each a likely cache miss. Prefixes are uniformly distributed (they are SHA-256
/// output), so with about one directory bucket per prefix, `directory[b]..directory[b + 1]` holds
/// only a handful of them: the search reads the directory once, then finishes inside that short
/// run. Its step count is `steps`, fixed by the table (the longest run), never by the target, so a
/// hit and a miss take the same steps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct PrefixIndex {
    pub(super) sorted: Vec<u64>,
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
    pub(super) fn rebuild(&mut self, prefixes: impl Iterator<Item = u64>) {
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
    pub(super) fn search(&self, target: u64) -> usize {
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

/// Whether a secret that stops working at `valid_until` still works at `now`. A current secret's
/// `valid_until` is [`Timestamp::MAX`], "until replaced": it works even at `now == MAX`, the one
/// instant a plain `valid_until > now` would refuse (found by the `differential` fuzz target: at
/// that instant every token was unknown, and `prune` dropped every current secret).
pub(super) fn works_at(valid_until: Timestamp, now: Timestamp) -> Choice {
    after(valid_until, now) | valid_until.unix_micros().ct_eq(&i64::MAX)
}

pub(super) fn prefix_of(hash: &TokenHash) -> u64 {
    let [a, b, c, d, e, f, g, h, ..] = *hash.as_bytes();
    u64::from_be_bytes([a, b, c, d, e, f, g, h])
}

/// The index entries a key needs: its current secret, and its retired one if it has one.
pub(super) fn entries_for(key: &ApiKey, slot: u32) -> impl Iterator<Item = IndexEntry> {
    let current = IndexEntry::new(key.token_hash(), slot, Timestamp::MAX);
    let retired = key
        .retired_secret()
        .map(|r| IndexEntry::new(r.token_hash, slot, r.valid_until));
    core::iter::once(current).chain(retired)
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
