//! The embedded key store: token hash → [`ApiKey`], with `authenticate` and `authorize` straight
//! from the token a client presented.
//!
//! A server that keeps its keys in memory (loaded from its database at start-up, updated as keys
//! are issued, rotated and revoked) asks a [`Keyring`] "may the holder of this token do this?" and
//! gets a [`Decision`] in constant time, without allocating.
//!
//! # How a lookup stays constant time
//!
//! * **Hash first.** The presented token is hashed with SHA-256 before anything looks at the
//!   store. Everything after that depends on the *hash* of the guess, never on its characters, so
//!   whatever the lookup's timing reveals is a fact about SHA-256 outputs, which does not help
//!   anyone find a token: learning that `SHA-256(guess)` sorts near a stored hash brings a guess no
//!   closer to a stored token. (This is also why the index may be ordered by hash at all.)
//! * **A fixed-shape search.** The index is a `Vec` sorted by the first 8 bytes of each hash (with
//!   those prefixes also kept in a `Vec<u64>` of their own, which is all the search reads). The
//!   lookup is a branch-free binary search: its iteration count depends only on the table size,
//!   and each step picks the next bound by `subtle` selection, not by a branch. Then exactly one
//!   full constant-time comparison of the 32-byte hash runs against the entry found (or against a
//!   dummy entry when the table is empty), together with the entry's validity time and the token
//!   format check. `found = format_ok & hash_eq & still_valid`.
//! * **A miss does a hit's work.** The key to judge is the one whose entry the search landed on,
//!   hit or miss (slot 0 holds a dummy key, revoked and without permissions, for an empty table):
//!   [`authorize`](crate::authorize()) runs on it in full, and on a miss the answer is replaced by
//!   [`Deny::UnknownKey`] by selecting on a reason code, not by returning early. A miss must not
//!   read the dummy instead: the dummy stays in cache and a random stored key does not, which
//!   `benches/ct.rs` measured as a hit/miss difference of |t| = 150 at 200,000 samples per class.
//! * **Lengths are public.** A token of the wrong length cannot match, and hashing it would cost
//!   time proportional to whatever length the client sent, so a fixed stand-in of the right
//!   length is hashed instead. Only the length decides that branch.
//!
//! What is *not* hidden: whether the token was valid (the response says so anyway), its length,
//! and the table size. The memory addresses the search touches depend on the hash of the guess
//! (see above for why that is harmless).
//!
//! Why not a `HashMap<TokenHash, ApiKey>`? It would be safe for the same hash-first reason, but
//! its probe count varies with the table's occupancy around the hash and its key comparison exits
//! at the first differing byte. The sorted index has a fixed step count and one fixed-cost
//! comparison, costs 64 bytes per secret, and builds from a million keys with one sort.
//!
//! Two stored secrets whose hashes share their first 8 bytes cannot both be indexed (the search
//! would find only one): the second is refused with [`KeyringError::PrefixCollision`]. For random
//! tokens that happens with probability about 2⁻⁶⁴ per pair; [`Keyring::rotate`] simply mints
//! again, and a caller inserting a freshly issued key re-issues it.

use core::fmt;
use core::time::Duration;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use crate::authorize::{Action, code, decision_for, liveness_code, reason_code};
use crate::catalog::PermissionSet;
use crate::decision::{Decision, Deny};
use crate::key::{ApiKey, KeyId, LifecycleError};
use crate::ratelimit::RateLimitState;
use crate::scope::{AccountId, Resource, Scope};
use crate::timestamp::Timestamp;
use crate::token::{Token, TokenFormat, TokenHash};
use crate::usage::Usage;

/// The slot of the dummy key that misses are judged against.
const DUMMY_SLOT: u32 = 0;
/// How many tokens [`Keyring::rotate`] mints before giving up on an index collision. One is
/// enough with a working RNG; a few more make a 2⁻⁶⁴ accident invisible.
const ROTATE_ATTEMPTS: usize = 4;

/// A keyring operation was refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// A key with this id is already in the keyring.
    #[error("duplicate API key id {0}")]
    DuplicateKeyId(KeyId),
    /// The key's token (current or retired) has the same hash as a token already in the keyring.
    #[error("API key {0} has a token hash already in the keyring")]
    DuplicateToken(KeyId),
    /// The key's token hash shares its first 8 bytes with another stored hash (about 2⁻⁶⁴ per
    /// pair for random tokens): issue the key again with a fresh token.
    #[error("API key {0}: token hash prefix collides with another key's; mint a new token")]
    PrefixCollision(KeyId),
    /// No key with this id is in the keyring.
    #[error("no API key with id {0}")]
    UnknownKeyId(KeyId),
    /// The key refused the operation (a revoked key cannot be rotated).
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// The keyring holds as many keys as it can address (about four billion).
    #[error("keyring is full")]
    Full,
}

/// A key's mutable per-request state, kept beside it: its usage counters and its rate limiter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyState {
    /// Requests and errors counted so far.
    #[serde(default)]
    pub usage: Usage,
    /// The key's GCRA state, for [`RateLimit::check`](crate::RateLimit::check).
    #[serde(default)]
    pub rate_limit: RateLimitState,
}

/// One stored secret: the current token of a key, or a retired one still in its grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IndexEntry {
    /// The first 8 bytes of `hash`, big-endian: the sort and search key.
    prefix: u64,
    hash: TokenHash,
    slot: u32,
    /// The first instant the secret stops working: [`Timestamp::MAX`] for a current secret.
    valid_until: Timestamp,
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
    const DUMMY: Self = Self {
        prefix: 0,
        hash: TokenHash::from_bytes([0; 32]),
        slot: DUMMY_SLOT,
        valid_until: Timestamp::from_unix_micros(i64::MIN),
    };
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
struct PrefixIndex {
    sorted: Vec<u64>,
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
    fn rebuild(&mut self, prefixes: impl Iterator<Item = u64>) {
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
    fn search(&self, target: u64) -> usize {
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
            // `mid_prefix <= target` as the borrow of a 128-bit subtraction: one instruction
            // pattern with no data-dependent branch, and cheaper than a chain of `Choice`s.
            let above = ((u128::from(target).wrapping_sub(u128::from(mid_prefix))) >> 127) as u8;
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
fn works_at(valid_until: Timestamp, now: Timestamp) -> Choice {
    valid_until.ct_gt(now) | valid_until.unix_micros().ct_eq(&i64::MAX)
}

fn prefix_of(hash: &TokenHash) -> u64 {
    let [a, b, c, d, e, f, g, h, ..] = *hash.as_bytes();
    u64::from_be_bytes([a, b, c, d, e, f, g, h])
}

/// The index entries a key needs: its current secret, and its retired one if it has one.
fn entries_for(key: &ApiKey, slot: u32) -> impl Iterator<Item = IndexEntry> {
    let current = IndexEntry::new(key.token_hash(), slot, Timestamp::MAX);
    let retired = key
        .retired_secret()
        .map(|r| IndexEntry::new(r.token_hash, slot, r.valid_until));
    core::iter::once(current).chain(retired)
}

/// The key judged when a token matches nothing: revoked and empty, so even a bug that let it
/// through would deny.
fn dummy_key() -> ApiKey {
    let mut key = ApiKey::new(
        KeyId::from_bytes([0; 16]),
        "",
        AccountId::from_bytes([0; 16]),
        Scope::Account,
        PermissionSet::EMPTY,
        IndexEntry::DUMMY.hash,
        Timestamp::EPOCH,
    );
    key.revoke(Timestamp::EPOCH);
    key
}

/// The embedded key store.
///
/// ```
/// use keygate::{AccountId, Action, ApiKey, Catalog, Decision, Deny, KeyId, Keyring, ProjectId,
///     Resource, Scope, Timestamp, TokenFormat};
/// use rand::SeedableRng;
///
/// let mut rng = rand::rngs::StdRng::seed_from_u64(1);
/// let catalog = Catalog::read_write_delete();
/// let format = TokenFormat::default();
/// let token = format.mint(&mut rng);
/// let account = AccountId::from_u64(7);
/// let key = ApiKey::new(KeyId::random(&mut rng), "Backend", account, Scope::Account,
///     catalog.expand(["read"])?, token.hash(), Timestamp::EPOCH);
///
/// let mut keyring = Keyring::new(format);
/// keyring.insert(key)?;
///
/// let now = Timestamp::from_unix_seconds(1_000);
/// let read = Action::named(&catalog, "read")?;
/// let recordings = Resource::in_project(account, ProjectId::from_u64(42));
/// assert_eq!(keyring.authorize(token.expose_secret(), read, &recordings, now), Decision::Allow);
/// assert_eq!(
///     keyring.authorize("idc_notAKeyAtAllnotAKeyAtAllnotAKey", read, &recordings, now),
///     Decision::Deny(Deny::UnknownKey)
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Keyring {
    format: TokenFormat,
    /// A string of the format's length, hashed in place of a wrong-length token.
    stand_in: String,
    /// Slot 0 is the dummy key; real keys follow in no particular order.
    keys: Vec<ApiKey>,
    /// `states[slot]` belongs to `keys[slot]`.
    states: Vec<KeyState>,
    /// Sorted by `prefix`, prefixes unique; exactly the entries of [`entries_for`] of every real
    /// key.
    index: Vec<IndexEntry>,
    /// `index[i].prefix`, for every `i`, with a directory into them: all the search reads.
    prefixes: PrefixIndex,
    slots: HashMap<KeyId, u32>,
}

impl fmt::Debug for Keyring {
    /// The format and the number of keys: a keyring's contents are for its methods to show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("format", &self.format)
            .field("keys", &self.len())
            .field("secrets", &self.index.len())
            .finish()
    }
}

impl Default for Keyring {
    /// An empty keyring for the default `idc_` format.
    fn default() -> Self {
        Self::new(TokenFormat::default())
    }
}

impl Keyring {
    /// An empty keyring for tokens of `format`. Tokens of any other format are refused.
    pub fn new(format: TokenFormat) -> Self {
        let stand_in = format!("{}{}", format.prefix(), "A".repeat(format.body_len()));
        Self {
            format,
            stand_in,
            keys: vec![dummy_key()],
            states: vec![KeyState::default()],
            index: Vec::new(),
            prefixes: PrefixIndex::default(),
            slots: HashMap::new(),
        }
    }

    /// A keyring holding `keys`, built with one sort: the way to load a store at start-up.
    ///
    /// Fails, keeping nothing, on a duplicate key id, on two secrets with the same hash, or on a
    /// hash prefix collision.
    pub fn from_keys<I>(format: TokenFormat, keys: I) -> Result<Self, KeyringError>
    where
        I: IntoIterator<Item = ApiKey>,
    {
        let mut ring = Self::new(format);
        let keys = keys.into_iter();
        let (lower, _) = keys.size_hint();
        ring.keys.reserve(lower);
        ring.states.reserve(lower);
        ring.index.reserve(lower);
        ring.slots.reserve(lower);
        for key in keys {
            let slot = ring.next_slot()?;
            match ring.slots.entry(key.id()) {
                Entry::Occupied(_) => return Err(KeyringError::DuplicateKeyId(key.id())),
                Entry::Vacant(vacant) => vacant.insert(slot),
            };
            ring.index.extend(entries_for(&key, slot));
            ring.keys.push(key);
            ring.states.push(KeyState::default());
        }
        ring.index.sort_unstable_by_key(|e| e.prefix);
        ring.sync_prefixes();
        for pair in ring.index.windows(2) {
            if let [a, b] = pair
                && a.prefix == b.prefix
            {
                let id = ring.id_at(b.slot);
                return Err(if a.hash == b.hash {
                    KeyringError::DuplicateToken(id)
                } else {
                    KeyringError::PrefixCollision(id)
                });
            }
        }
        Ok(ring)
    }

    /// The token format this keyring accepts.
    pub fn format(&self) -> &TokenFormat {
        &self.format
    }

    /// How many keys it holds (revoked and expired ones included, until removed).
    pub fn len(&self) -> usize {
        self.keys.len().saturating_sub(1)
    }

    /// Whether it holds no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every key, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &ApiKey> {
        self.keys.iter().skip(1)
    }

    /// The key with this id.
    pub fn get(&self, id: KeyId) -> Option<&ApiKey> {
        self.slot_of(id).ok().and_then(|slot| self.key_at(slot))
    }

    /// The per-request state of the key with this id.
    pub fn state(&self, id: KeyId) -> Option<&KeyState> {
        let slot = self.slot_of(id).ok()?;
        self.states.get(usize::try_from(slot).ok()?)
    }

    /// The per-request state of the key with this id, to count a request or check its rate limit.
    ///
    /// ```
    /// # use keygate::{AccountId, ApiKey, KeyId, Keyring, PermissionSet, Scope, Timestamp, TokenHash};
    /// # let id = KeyId::from_bytes([1; 16]);
    /// # let mut keyring = Keyring::default();
    /// # keyring.insert(ApiKey::new(id, "k", AccountId::from_u64(1), Scope::Account,
    /// #     PermissionSet::EMPTY, TokenHash::of("x"), Timestamp::EPOCH))?;
    /// let now = Timestamp::from_unix_seconds(60);
    /// if let Some(state) = keyring.state_mut(id) {
    ///     state.usage.record("GET /recordings", 200, now);
    /// }
    /// assert_eq!(keyring.state(id).map(|s| s.usage.total_requests()), Some(1));
    /// # Ok::<(), keygate::KeyringError>(())
    /// ```
    pub fn state_mut(&mut self, id: KeyId) -> Option<&mut KeyState> {
        let slot = self.slot_of(id).ok()?;
        self.states.get_mut(usize::try_from(slot).ok()?)
    }

    /// Adds a key. Fails, changing nothing, if its id is already present, if one of its secrets
    /// (current or retired) is already present, or on a hash prefix collision.
    pub fn insert(&mut self, key: ApiKey) -> Result<(), KeyringError> {
        if self.slots.contains_key(&key.id()) {
            return Err(KeyringError::DuplicateKeyId(key.id()));
        }
        let slot = self.next_slot()?;
        self.check_secrets(&key, slot)?;
        self.index_secrets(&key, slot);
        self.slots.insert(key.id(), slot);
        self.keys.push(key);
        self.states.push(KeyState::default());
        Ok(())
    }

    /// Removes a key and its state; its tokens stop matching at once. (To keep a record of a
    /// refused key, [`revoke`](Self::revoke) it instead.)
    pub fn remove(&mut self, id: KeyId) -> Option<(ApiKey, KeyState)> {
        let slot = self.slots.remove(&id)?;
        let index = usize::try_from(slot).ok()?;
        self.index.retain(|e| e.slot != slot);
        self.sync_prefixes();
        let last = u32::try_from(self.keys.len().saturating_sub(1)).ok()?;
        // `swap_remove` moves the last key into the freed slot: point its entries there.
        if last != slot {
            for entry in self.index.iter_mut().filter(|e| e.slot == last) {
                entry.slot = slot;
            }
            let moved = self.id_at(last);
            self.slots.insert(moved, slot);
        }
        let key = self.keys.swap_remove(index);
        let state = self.states.swap_remove(index);
        Some((key, state))
    }

    /// Revokes a key now: every one of its tokens, current or in a grace period, is refused from
    /// `now` on. Revoking again keeps the first time.
    pub fn revoke(&mut self, id: KeyId, now: Timestamp) -> Result<(), KeyringError> {
        self.update(id, |mut key| {
            key.revoke(now);
            key
        })
    }

    /// Gives a key a new secret, keeping its id, metadata and state, and returns the new token
    /// (show it once).
    ///
    /// Without a grace period (`None` or zero) the old token is refused at once, as seed 001
    /// says; with one, it keeps working until `now + grace` (exclusive). Only the latest retired
    /// secret is kept, so rotating again ends an earlier grace period.
    ///
    /// ```
    /// use keygate::{AccountId, ApiKey, Deny, KeyId, Keyring, PermissionSet, Scope, Timestamp};
    /// use rand::SeedableRng;
    /// use std::time::Duration;
    ///
    /// let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    /// let mut keyring = Keyring::default();
    /// let old = keyring.format().mint(&mut rng);
    /// let id = KeyId::random(&mut rng);
    /// keyring.insert(ApiKey::new(id, "ci", AccountId::from_u64(1), Scope::Account,
    ///     PermissionSet::EMPTY, old.hash(), Timestamp::EPOCH))?;
    ///
    /// let now = Timestamp::from_unix_seconds(100);
    /// let new = keyring.rotate(id, now, Some(Duration::from_secs(60)), &mut rng)?;
    /// assert!(keyring.authenticate(new.expose_secret(), now).is_ok());
    /// assert!(keyring.authenticate(old.expose_secret(), now).is_ok());
    /// let later = now + Duration::from_secs(60);
    /// assert_eq!(keyring.authenticate(old.expose_secret(), later).err(), Some(Deny::UnknownKey));
    /// # Ok::<(), keygate::KeyringError>(())
    /// ```
    pub fn rotate<R: CryptoRng + ?Sized>(
        &mut self,
        id: KeyId,
        now: Timestamp,
        grace: Option<Duration>,
        rng: &mut R,
    ) -> Result<Token, KeyringError> {
        let slot = self.slot_of(id)?;
        let current = self.key_at(slot).ok_or(KeyringError::UnknownKeyId(id))?;
        let mut last_error = KeyringError::UnknownKeyId(id);
        for _ in 0..ROTATE_ATTEMPTS {
            let mut next = current.clone();
            let token = next.rotate(&self.format, now, grace, rng)?;
            match self.check_secrets(&next, slot) {
                Ok(()) => {
                    self.replace(slot, next);
                    return Ok(token);
                }
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    /// Changes a key through `f`, which gets the key by value (so builders such as
    /// [`ApiKey::with_expiry`] work) and returns the new version. The index follows any change of
    /// secret. Fails, changing nothing, if the new version's secrets clash with another key's.
    ///
    /// The key id cannot change this way (`f`'s result keeps the original id), and neither can a
    /// revocation be undone: revocation is final.
    pub fn update<F>(&mut self, id: KeyId, f: F) -> Result<(), KeyringError>
    where
        F: FnOnce(ApiKey) -> ApiKey,
    {
        let slot = self.slot_of(id)?;
        let current = self.key_at(slot).ok_or(KeyringError::UnknownKeyId(id))?;
        let revoked_at = current.revoked_at;
        let mut next = f(current.clone());
        next.id = id;
        next.revoked_at = revoked_at.or(next.revoked_at);
        self.check_secrets(&next, slot)?;
        self.replace(slot, next);
        Ok(())
    }

    /// Forgets every retired secret whose grace period has ended by `now`, from the keys and the
    /// index, and returns how many. Such secrets are already refused; pruning only frees their
    /// memory and drops them from the keys' records.
    pub fn prune(&mut self, now: Timestamp) -> usize {
        let before = self.index.len();
        self.index
            .retain(|e| bool::from(works_at(e.valid_until, now)));
        let pruned = before - self.index.len();
        // Skipping the rest when nothing was pruned only saves work: no retired secret has ended,
        // so the loop would change nothing (cargo-mutants' `>` to `>=` here is equivalent).
        if pruned > 0 {
            self.sync_prefixes();
            for key in self.keys.iter_mut().skip(1) {
                // The index's own predicate, so that keys and index agree (also at `MAX`).
                if key
                    .retired
                    .is_some_and(|r| !bool::from(works_at(r.valid_until, now)))
                {
                    key.retired = None;
                }
            }
        }
        pruned
    }

    /// The active keys that expire within `window` of `now`: the ones to warn owners about.
    pub fn expiring_within(
        &self,
        now: Timestamp,
        window: Duration,
    ) -> impl Iterator<Item = &ApiKey> + '_ {
        self.iter()
            .filter(move |key| key.expires_within(now, window))
    }

    /// The active key a presented token belongs to.
    ///
    /// A token that is malformed, of another format, unknown, or a retired secret past its grace
    /// period gives [`Deny::UnknownKey`]; a revoked key [`Deny::Revoked`], an expired one
    /// [`Deny::Expired`]. All three are 401 with the same body. Constant time and allocation-free,
    /// as described in the [module docs](self).
    pub fn authenticate(&self, token: &str, now: Timestamp) -> Result<&ApiKey, Deny> {
        let (slot, found) = self.lookup(token, now);
        let Some(key) = self.key_at(slot) else {
            return Err(Deny::UnknownKey);
        };
        let mut reason = liveness_code(key, now);
        reason.conditional_assign(&code::UNKNOWN_KEY, !found);
        match reason {
            code::ALLOW => Ok(key),
            code::REVOKED => Err(Deny::Revoked),
            code::EXPIRED => Err(Deny::Expired),
            _ => Err(Deny::UnknownKey),
        }
    }

    /// May the holder of `token` do `action` on `resource` at `now`?
    ///
    /// The token is looked up as in [`authenticate`](Self::authenticate), then every rule of
    /// [`authorize`](crate::authorize()) is evaluated on the key the search landed on (another key's
    /// on a miss, so that a miss costs what a hit does); an unmatched token gives
    /// [`Deny::UnknownKey`]. Constant time and
    /// allocation-free.
    pub fn authorize(
        &self,
        token: &str,
        action: Action,
        resource: &Resource,
        now: Timestamp,
    ) -> Decision {
        let (slot, found) = self.lookup(token, now);
        let Some(key) = self.key_at(slot) else {
            return Decision::Deny(Deny::UnknownKey);
        };
        let mut reason = reason_code(key, action, resource, now);
        reason.conditional_assign(&code::UNKNOWN_KEY, !found);
        decision_for(reason, action.permission())
    }

    /// The slot of the entry the search for `token` landed on (the key it belongs to when it
    /// matched; a neighbour, or the dummy in an empty table, when not), and whether it matched.
    fn lookup(&self, token: &str, now: Timestamp) -> (u32, Choice) {
        // Branching on the length is fine: it is public, and a wrong length never matches.
        let hashed = if token.len() == self.format.token_len() {
            token
        } else {
            &self.stand_in
        };
        let hash = TokenHash::of(hashed);
        let format_ok = self.format.matches(token);
        let entry = self
            .index
            .get(self.search(prefix_of(&hash)))
            .unwrap_or(&IndexEntry::DUMMY);
        let hash_eq = entry.hash.ct_eq(&hash);
        let still_valid = works_at(entry.valid_until, now);
        let found = format_ok & hash_eq & still_valid;
        // The entry's slot even on a miss, so that a miss touches a stored key's memory as a hit
        // does; callers replace the decision by `UnknownKey` when `found` is false.
        (entry.slot, found)
    }

    /// The position of the largest prefix `<= target` (0 if there is none, so also for an empty
    /// index), in a number of steps that depends on the table only.
    fn search(&self, target: u64) -> usize {
        self.prefixes.search(target)
    }

    fn slot_of(&self, id: KeyId) -> Result<u32, KeyringError> {
        self.slots
            .get(&id)
            .copied()
            .ok_or(KeyringError::UnknownKeyId(id))
    }

    fn key_at(&self, slot: u32) -> Option<&ApiKey> {
        self.keys.get(usize::try_from(slot).ok()?)
    }

    fn id_at(&self, slot: u32) -> KeyId {
        self.key_at(slot)
            .map_or(KeyId::from_bytes([0; 16]), ApiKey::id)
    }

    fn next_slot(&self) -> Result<u32, KeyringError> {
        u32::try_from(self.keys.len()).map_err(|_| KeyringError::Full)
    }

    /// Whether `key`'s secrets can be indexed at `slot`: none may share a prefix with a secret of
    /// another slot, nor with each other.
    fn check_secrets(&self, key: &ApiKey, slot: u32) -> Result<(), KeyringError> {
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
            let at = self.index.partition_point(|e| e.prefix < new.prefix);
            if let Some(old) = self.index.get(at)
                && old.prefix == new.prefix
                && old.slot != slot
            {
                return Err(clash(old, new));
            }
        }
        Ok(())
    }

    /// Adds `key`'s secrets at `slot` to the index, in order. [`check_secrets`](Self::check_secrets)
    /// must have passed.
    fn index_secrets(&mut self, key: &ApiKey, slot: u32) {
        for entry in entries_for(key, slot) {
            let at = self.index.partition_point(|e| e.prefix < entry.prefix);
            self.index.insert(at, entry);
        }
        self.sync_prefixes();
    }

    /// Rebuilds `prefixes` from `index` after a change (in place: no allocation once the
    /// capacity is there). Linear, like the `Vec` insertions and removals it follows.
    fn sync_prefixes(&mut self) {
        self.prefixes.rebuild(self.index.iter().map(|e| e.prefix));
    }

    /// Puts `key` in `slot`, replacing its secrets in the index. The checks must have passed.
    fn replace(&mut self, slot: u32, key: ApiKey) {
        self.index.retain(|e| e.slot != slot);
        self.index_secrets(&key, slot);
        if let Some(place) = usize::try_from(slot)
            .ok()
            .and_then(|i| self.keys.get_mut(i))
        {
            *place = key;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    impl Keyring {
        /// Panics unless every invariant of the index holds.
        fn assert_consistent(&self) {
            assert!(self.keys[0].is_revoked(), "slot 0 is the dummy");
            assert_eq!(self.keys.len(), self.states.len());
            assert_eq!(self.slots.len(), self.len());
            assert!(
                self.index.windows(2).all(|w| w[0].prefix < w[1].prefix),
                "index sorted with unique prefixes"
            );
            let mut expected: Vec<IndexEntry> = Vec::new();
            for (slot, key) in self.keys.iter().enumerate().skip(1) {
                let slot = u32::try_from(slot).unwrap();
                assert_eq!(self.slots[&key.id()], slot);
                expected.extend(entries_for(key, slot));
            }
            expected.sort_unstable_by_key(|e| e.prefix);
            assert_eq!(self.index, expected);
            for entry in &self.index {
                assert_eq!(entry.prefix, prefix_of(&entry.hash));
            }
            let prefixes: Vec<u64> = self.index.iter().map(|e| e.prefix).collect();
            assert_eq!(self.prefixes.sorted, prefixes);
        }
    }

    fn key(rng: &mut StdRng, token: &Token) -> ApiKey {
        let catalog = Catalog::read_write_delete();
        ApiKey::new(
            KeyId::random(rng),
            "k",
            AccountId::from_u64(1),
            Scope::Account,
            catalog.all(),
            token.hash(),
            Timestamp::EPOCH,
        )
    }

    #[test]
    fn index_stays_consistent_through_every_operation() {
        let mut rng = StdRng::seed_from_u64(11);
        let mut ring = Keyring::default();
        ring.assert_consistent();
        let mut ids = Vec::new();
        for _ in 0..50 {
            let token = ring.format().mint(&mut rng);
            let key = key(&mut rng, &token);
            ids.push(key.id());
            ring.insert(key).unwrap();
            ring.assert_consistent();
        }
        let now = Timestamp::from_unix_seconds(10);
        for (i, id) in ids.iter().enumerate() {
            let grace = (i % 2 == 0).then(|| Duration::from_secs(30));
            ring.rotate(*id, now, grace, &mut rng).unwrap();
            ring.assert_consistent();
        }
        for id in ids.iter().step_by(3) {
            ring.remove(*id).unwrap();
            ring.assert_consistent();
        }
        for id in ids.iter().skip(1).step_by(3) {
            ring.revoke(*id, now).unwrap();
            ring.rotate(*id, now, None, &mut rng).unwrap_err();
            ring.assert_consistent();
        }
        let rebuilt = Keyring::from_keys(TokenFormat::default(), ring.iter().cloned()).unwrap();
        rebuilt.assert_consistent();
        assert_eq!(rebuilt.len(), ring.len());
    }

    #[test]
    fn search_finds_every_stored_prefix_and_lands_in_range_otherwise() {
        for n in [0usize, 1, 2, 3, 4, 5, 7, 8, 9, 100] {
            let mut ring = Keyring::default();
            ring.prefixes.rebuild((0..n).map(|i| (i as u64) * 10 + 5));
            for i in 0..n {
                let p = (i as u64) * 10 + 5;
                assert_eq!(ring.search(p), i);
                // Just above a stored prefix: the largest prefix not above the target.
                assert_eq!(ring.search(p + 1), i);
            }
            assert_eq!(ring.search(0), 0);
            assert_eq!(ring.search(u64::MAX), n.saturating_sub(1));
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

    /// One step of a random life: what the model test does to a keyring.
    #[derive(Debug, Clone)]
    enum Op {
        Insert,
        Remove(usize),
        Revoke(usize),
        Rotate(usize, Option<u64>),
        Prune,
        Advance(u64),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            3 => Just(Op::Insert),
            1 => any::<usize>().prop_map(Op::Remove),
            1 => any::<usize>().prop_map(Op::Revoke),
            2 => (any::<usize>(), proptest::option::of(0u64..5)).prop_map(|(i, g)| Op::Rotate(i, g)),
            1 => Just(Op::Prune),
            1 => (0u64..4).prop_map(Op::Advance),
        ]
    }

    proptest::proptest! {
        /// After any sequence of operations the index is consistent, and every token ever
        /// handed out authenticates exactly when a plain model says it should.
        #[test]
        fn random_lives_agree_with_a_plain_model(ops in proptest::collection::vec(op(), 1..60)) {
            let mut rng = StdRng::seed_from_u64(99);
            let mut ring = Keyring::default();
            let mut now = Timestamp::from_unix_seconds(1);
            // Model: each token -> (key id, valid until); plus the set of revoked ids.
            let mut tokens: Vec<(Token, KeyId, Timestamp)> = Vec::new();
            let mut ids: Vec<KeyId> = Vec::new();
            let mut revoked: Vec<KeyId> = Vec::new();
            for op in ops {
                match op {
                    Op::Insert => {
                        let token = ring.format().mint(&mut rng);
                        let key = key(&mut rng, &token);
                        ids.push(key.id());
                        tokens.push((token, key.id(), Timestamp::MAX));
                        ring.insert(key).unwrap();
                    }
                    Op::Remove(i) if !ids.is_empty() => {
                        let id = ids.remove(i % ids.len());
                        ring.remove(id).unwrap();
                        // A removed key's tokens are unknown from now on.
                        for (_, owner, until) in tokens.iter_mut() {
                            if *owner == id {
                                *until = Timestamp::from_unix_micros(i64::MIN);
                            }
                        }
                    }
                    Op::Revoke(i) if !ids.is_empty() => {
                        let id = ids[i % ids.len()];
                        ring.revoke(id, now).unwrap();
                        revoked.push(id);
                    }
                    Op::Rotate(i, grace) if !ids.is_empty() => {
                        let id = ids[i % ids.len()];
                        let grace = grace.map(Duration::from_secs);
                        match ring.rotate(id, now, grace, &mut rng) {
                            Ok(token) => {
                                let end = grace.filter(|g| !g.is_zero()).map(|g| now + g);
                                for (_, owner, until) in tokens.iter_mut() {
                                    if *owner == id {
                                        // The current secret gets the grace period; an older
                                        // retired one ends now.
                                        *until = match (*until == Timestamp::MAX, end) {
                                            (true, Some(end)) => end,
                                            _ => (*until).min(now),
                                        };
                                    }
                                }
                                tokens.push((token, id, Timestamp::MAX));
                            }
                            Err(error) => {
                                proptest::prop_assert!(revoked.contains(&id), "{error}");
                            }
                        }
                    }
                    Op::Prune => {
                        ring.prune(now);
                    }
                    Op::Advance(seconds) => now = now + Duration::from_secs(seconds),
                    Op::Remove(_) | Op::Revoke(_) | Op::Rotate(..) => {}
                }
                ring.assert_consistent();
                proptest::prop_assert_eq!(ring.len(), ids.len());
                for (token, owner, until) in &tokens {
                    let expected = if *until <= now {
                        Err(Deny::UnknownKey)
                    } else if revoked.contains(owner) {
                        Err(Deny::Revoked)
                    } else {
                        Ok(*owner)
                    };
                    let got = ring.authenticate(token.expose_secret(), now).map(ApiKey::id);
                    proptest::prop_assert_eq!(got, expected);
                }
            }
        }
    }

    #[test]
    fn prefix_collisions_are_refused() {
        let mut rng = StdRng::seed_from_u64(5);
        let token = TokenFormat::default().mint(&mut rng);
        let mut ring = Keyring::default();
        let first = key(&mut rng, &token);
        ring.insert(first.clone()).unwrap();
        // Same first 8 bytes, different rest.
        let mut bytes = *token.hash().as_bytes();
        bytes[31] ^= 1;
        let mut second = key(&mut rng, &token);
        second.token_hash = TokenHash::from_bytes(bytes);
        let id = second.id();
        assert_eq!(
            ring.insert(second.clone()),
            Err(KeyringError::PrefixCollision(id))
        );
        assert!(matches!(
            Keyring::from_keys(TokenFormat::default(), [first, second]),
            Err(KeyringError::PrefixCollision(_))
        ));
        ring.assert_consistent();
    }
}
