//! The constant-time index from token hash to key slot: sorted chunks of entries, found through
//! a directory of their lower bounds.
//! See the [`keyring`](super) module docs for why a lookup through it stays constant time.

mod prefixes;

use std::sync::Arc;

use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use super::KeyringError;
use super::persistent::PVec;
use crate::ct::{above_u64, after};
use crate::key::ApiKey;
use crate::timestamp::Timestamp;
use crate::token::TokenHash;
use prefixes::PrefixIndex;

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

/// Entries a chunk may hold: a chunk that would grow past it splits in two. The search inside a
/// chunk takes `log2` of it in steps, whatever the chunk holds.
pub(super) const CHUNK_CAP: usize = 64;
/// Halvings that bring a search over [`CHUNK_CAP`] positions down to one.
const CHUNK_STEPS: u32 = CHUNK_CAP.trailing_zeros();

/// Up to [`CHUNK_CAP`] entries, sorted, with their prefixes in an array of their own: the search
/// reads those (eight to a cache line), then one entry.
#[derive(Debug, Clone)]
struct Chunk {
    prefixes: Arc<[u64]>,
    entries: Arc<[IndexEntry]>,
}

impl From<Vec<IndexEntry>> for Chunk {
    fn from(entries: Vec<IndexEntry>) -> Self {
        Self {
            prefixes: entries.iter().map(|e| e.prefix).collect(),
            entries: Arc::from(entries),
        }
    }
}

impl core::ops::Deref for Chunk {
    type Target = [IndexEntry];

    fn deref(&self) -> &[IndexEntry] {
        &self.entries
    }
}

/// Every indexed secret, sorted by prefix with unique prefixes, cut into chunks of at most
/// [`CHUNK_CAP`] entries. The keyring keeps it equal to [`entries_for`] of every stored key.
///
/// The chunks sit in a [`PVec`] and each is shared behind an `Arc`, so that a change copies one
/// chunk and one path, not the table (the sorted array this replaces copied and shifted every
/// entry on every change). The directory of chunk bounds is rebuilt only when a chunk splits or
/// empties: once per [`CHUNK_CAP`]` / 2` inserts at most, one entry per chunk.
#[derive(Debug, Clone, Default)]
pub(super) struct SecretIndex {
    /// Non-empty, sorted, each below the next.
    chunks: PVec<Chunk>,
    /// `bounds.sorted[i]` is at most the least prefix of chunk `i` and above every prefix of
    /// chunk `i - 1`; the first is 0, so that every target finds a chunk.
    bounds: PrefixIndex,
    len: usize,
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
        let len = entries.len();
        // Half full, so that inserts split chunks rarely.
        let chunks: Vec<Chunk> = entries
            .chunks(CHUNK_CAP / 2)
            .map(|c| Chunk::from(c.to_vec()))
            .collect();
        let mut index = Self {
            chunks: PVec::default(),
            bounds: PrefixIndex::default(),
            len,
        };
        index.set_chunks(chunks);
        Ok(index)
    }

    /// How many secrets are indexed.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The chunk a search for `prefix` reads, and its position (an empty slice in an empty table).
    fn chunk(&self, prefix: u64) -> (usize, &[IndexEntry]) {
        let at = self.bounds.search(prefix);
        (at, self.chunks.get(at).map_or(&[], |c| &**c))
    }

    /// The slot of the entry the search for `hash` lands on (the key it belongs to when it
    /// matched; a neighbour, or the dummy in an empty table, when not), and whether it matched a
    /// secret that still works at `now`. Constant time: a directory read and its fixed steps, one
    /// chunk read and [`CHUNK_STEPS`] steps in it whatever it holds, one full hash comparison, one
    /// validity comparison. A miss lands on the largest prefix below it in its chunk (the chunk's
    /// first if none is), so a hit and a miss that land on one entry read the same memory.
    pub(super) fn lookup(&self, hash: &TokenHash, now: Timestamp) -> (u32, Choice) {
        let target = prefix_of(hash);
        let (prefixes, chunk): (&[u64], &[IndexEntry]) = self
            .chunks
            .get(self.bounds.search(target))
            .map_or((&[], &[]), |c| (&c.prefixes, &c.entries));
        let last = chunk.len().saturating_sub(1);
        let mut base = 0usize;
        let mut size = CHUNK_CAP;
        for _ in 0..CHUNK_STEPS {
            let half = size / 2;
            let mid = base + half;
            // Positions past the chunk's end read as the largest prefix, so the search never
            // moves onto them (except for a target of `u64::MAX`, clamped below). Which positions
            // exist depends on the chunk only: a hit and a miss landing on one entry take the
            // same path through it.
            let mid_prefix = prefixes.get(mid).copied().unwrap_or(u64::MAX);
            let mut next = base as u64;
            next.conditional_assign(&(mid as u64), !Choice::from(above_u64(mid_prefix, target)));
            base = usize::try_from(next).unwrap_or(base);
            size -= half;
        }
        let entry = chunk.get(base.min(last)).unwrap_or(&IndexEntry::DUMMY);
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
            let (_, chunk) = self.chunk(new.prefix);
            if let Some(old) = chunk
                .iter()
                .find(|e| e.prefix == new.prefix && e.slot != slot)
            {
                return Err(clash(old, new));
            }
        }
        Ok(())
    }

    /// Indexes `key`'s secrets at `slot`, replacing those of `old` (the key the slot held, if
    /// any). [`check`](Self::check) must have passed.
    pub(super) fn put(&mut self, old: Option<&ApiKey>, key: &ApiKey, slot: u32) {
        if let Some(old) = old {
            self.remove(old, slot);
        }
        for entry in entries_for(key, slot) {
            self.insert(entry);
        }
    }

    fn insert(&mut self, entry: IndexEntry) {
        self.edit(entry.prefix, |entries| {
            let position = entries.partition_point(|e| e.prefix < entry.prefix);
            entries.insert(position, entry);
        });
        self.len += 1;
    }

    /// Drops the secrets of `key` indexed at `slot`.
    pub(super) fn remove(&mut self, key: &ApiKey, slot: u32) {
        for entry in entries_for(key, slot) {
            let mut removed = 0;
            self.edit(entry.prefix, |entries| {
                let before = entries.len();
                entries.retain(|e| !(e.prefix == entry.prefix && e.slot == slot));
                removed = before - entries.len();
            });
            self.len -= removed;
        }
    }

    /// Points the secrets of `key` from slot `from` to slot `to` (after the keyring moved it).
    pub(super) fn move_slot(&mut self, key: &ApiKey, from: u32, to: u32) {
        for entry in entries_for(key, from) {
            self.edit(entry.prefix, |entries| {
                for e in entries
                    .iter_mut()
                    .filter(|e| e.prefix == entry.prefix && e.slot == from)
                {
                    e.slot = to;
                }
            });
        }
    }

    /// Drops every secret that no longer works at `now`, and returns how many. A pass over the
    /// whole table.
    pub(super) fn prune(&mut self, now: Timestamp) -> usize {
        let mut pruned = 0;
        let mut emptied = false;
        self.chunks.update_all(|chunk| {
            if chunk
                .iter()
                .all(|e| bool::from(works_at(e.valid_until, now)))
            {
                return;
            }
            let kept: Vec<IndexEntry> = chunk
                .iter()
                .filter(|e| bool::from(works_at(e.valid_until, now)))
                .copied()
                .collect();
            pruned += chunk.len() - kept.len();
            emptied |= kept.is_empty();
            *chunk = Chunk::from(kept);
        });
        self.len -= pruned;
        if emptied {
            self.drop_empty_chunks();
        }
        pruned
    }

    /// Runs `f` on the entries of the chunk `prefix` belongs in (none in an empty table) and
    /// stores the result: in place, or, when it emptied or grew past [`CHUNK_CAP`], as nothing or
    /// as two halves, rebuilding the chunk list and its directory around them. `f` must keep the
    /// entries sorted and within the chunk's bounds.
    fn edit(&mut self, prefix: u64, f: impl FnOnce(&mut Vec<IndexEntry>)) {
        let (at, chunk) = self.chunk(prefix);
        let mut entries = chunk.to_vec();
        f(&mut entries);
        if !entries.is_empty()
            && entries.len() <= CHUNK_CAP
            && let Some(place) = self.chunks.get_mut(at)
        {
            *place = Chunk::from(entries);
            return;
        }
        let upper = if entries.len() > CHUNK_CAP {
            entries.split_off(entries.len() / 2)
        } else {
            Vec::new()
        };
        let pieces = [entries, upper]
            .into_iter()
            .filter(|e| !e.is_empty())
            .map(Chunk::from);
        let mut chunks: Vec<Chunk> = self.chunks.iter().cloned().collect();
        let end = (at + 1).min(chunks.len());
        chunks.splice(at.min(end)..end, pieces);
        self.set_chunks(chunks);
    }

    fn drop_empty_chunks(&mut self) {
        let chunks: Vec<Chunk> = self
            .chunks
            .iter()
            .filter(|c| !c.is_empty())
            .cloned()
            .collect();
        self.set_chunks(chunks);
    }

    /// Replaces the chunks (non-empty, sorted, each below the next) and rebuilds their directory:
    /// each chunk's bound is its least prefix, the first chunk's 0.
    fn set_chunks(&mut self, chunks: Vec<Chunk>) {
        self.bounds.rebuild(chunks.iter().enumerate().map(|(i, c)| {
            if i == 0 {
                0
            } else {
                c.first().map_or(0, |e| e.prefix)
            }
        }));
        self.chunks = chunks.into_iter().collect();
    }

    /// Every entry, in order (for tests and checks).
    #[cfg(test)]
    pub(super) fn entries(&self) -> impl Iterator<Item = &IndexEntry> + '_ {
        self.chunks.iter().flat_map(|c| c.entries.iter())
    }

    /// Whether the chunks are non-empty, within the cap, sorted each below the next, with their
    /// bounds in the directory, and hold `len` entries.
    #[cfg(test)]
    pub(super) fn well_formed(&self) -> bool {
        let chunks: Vec<&Chunk> = self.chunks.iter().collect();
        let all: Vec<u64> = self.entries().map(|e| e.prefix).collect();
        chunks.len() == self.bounds.sorted.len()
            && chunks.iter().all(|c| !c.is_empty() && c.len() <= CHUNK_CAP)
            && all.windows(2).all(|w| matches!(w, [a, b] if a < b))
            && self.bounds.sorted.first().is_none_or(|&b| b == 0)
            && chunks.iter().zip(&self.bounds.sorted).all(|(c, &bound)| {
                c.first().is_some_and(|e| e.prefix >= bound)
            })
            && chunks.windows(2).zip(self.bounds.sorted.iter().skip(1)).all(|(pair, &next)| {
                matches!(pair, [c, _] if c.last().is_some_and(|e| e.prefix < next))
            })
            && chunks.iter().all(|c| c.prefixes.iter().eq(c.entries.iter().map(|e| &e.prefix)))
            && all.len() == self.len
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
    use crate::key::KeyId;

    fn entry(prefix: u64, slot: u32) -> IndexEntry {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&prefix.to_be_bytes());
        bytes[8..12].copy_from_slice(&slot.to_be_bytes());
        IndexEntry::new(TokenHash::from_bytes(bytes), slot, Timestamp::MAX)
    }

    proptest::proptest! {
        /// Built at once or grown by inserts (splitting chunks) and shrunk by removals (dropping
        /// them), the index stays well formed and the fixed-step search lands on the largest
        /// prefix not above the target in its chunk (the chunk's first if none is), finding
        /// every stored hash.
        #[test]
        fn chunks_hold_every_entry_and_the_search_finds_each(
            prefixes in proptest::collection::btree_set(proptest::prelude::any::<u64>(), 0..400),
            removals in proptest::collection::vec(proptest::prelude::any::<proptest::sample::Index>(), 0..100),
            targets in proptest::collection::vec(proptest::prelude::any::<u64>(), 1..20),
        ) {
            let entries: Vec<IndexEntry> =
                prefixes.iter().zip(1u32..).map(|(&p, s)| entry(p, s)).collect();
            let built = SecretIndex::from_entries(entries.clone(), |_| KeyId::from_bytes([0; 16]));
            proptest::prop_assert!(built.is_ok());
            let mut grown = SecretIndex::default();
            for e in &entries {
                grown.insert(*e);
            }
            let mut kept = entries.clone();
            let mut shrunk = grown.clone();
            for r in removals {
                if kept.is_empty() {
                    break;
                }
                let gone = kept.remove(r.index(kept.len()));
                shrunk.edit(gone.prefix, |es| es.retain(|e| e.prefix != gone.prefix));
                shrunk.len -= 1;
            }
            let indexes = [(built.unwrap_or_default(), &entries), (grown, &entries), (shrunk, &kept)];
            for (index, stored) in &indexes {
                proptest::prop_assert!(index.well_formed());
                proptest::prop_assert_eq!(index.len(), stored.len());
                for e in stored.iter() {
                    let (slot, matched) = index.lookup(&e.hash, Timestamp::EPOCH);
                    proptest::prop_assert!(bool::from(matched));
                    proptest::prop_assert_eq!(slot, e.slot);
                }
                for &target in &targets {
                    let (_, chunk) = index.chunk(target);
                    let expected = chunk.iter().rposition(|e| e.prefix <= target).unwrap_or(0);
                    let hash = entry(target, u32::MAX).hash;
                    let (slot, matched) = index.lookup(&hash, Timestamp::EPOCH);
                    proptest::prop_assert!(!bool::from(matched) || stored.iter().any(|e| e.prefix == target));
                    proptest::prop_assert_eq!(slot, chunk.get(expected).map_or(DUMMY_SLOT, |e| e.slot));
                }
            }
        }
    }

    #[test]
    fn an_empty_table_lands_on_the_dummy() {
        let index = SecretIndex::default();
        let (slot, matched) = index.lookup(&TokenHash::of("x"), Timestamp::EPOCH);
        assert_eq!(slot, DUMMY_SLOT);
        assert!(!bool::from(matched));
    }
}
