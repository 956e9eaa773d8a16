//! The embedded key store: token hash → key, with a constant-time lookup (see [`Keyring`]).

mod admit;
mod caps;
mod change;
mod index;
mod manage;
mod persistent;
mod shared;
mod state;
#[cfg(test)]
mod tests;

use core::fmt;
use core::time::Duration;
use std::sync::Arc;

use subtle::{Choice, ConditionallySelectable};

use crate::authorize::{Action, code, decision_for, liveness_code, reason_code};
use crate::catalog::{Permission, PermissionSet};
use crate::decision::{Decision, Deny};
use crate::key::{ApiKey, KeyId, LifecycleError};
use crate::scope::{AccountId, Resource, Scope};
use crate::timestamp::Timestamp;
use crate::token::{TokenFormat, TokenHash};
use caps::CreatorCaps;
pub use change::{Change, RecordChange, Staged};
use index::{IndexEntry, SecretIndex, entries_for};
use persistent::{PMap, PVec};
pub use shared::{AuthenticatedKey, SharedKeyring, SharedStaged, Writer};
use state::{Endpoints, KeyCell};
pub use state::{KeyState, MAX_RATE_LIMIT_CHAIN};

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
    /// The permit is for another operation than the one asked for.
    #[error("a permit to {got} was presented to {expected}")]
    WrongPermit {
        /// The operation asked for.
        expected: &'static str,
        /// The operation the permit allows.
        got: &'static str,
    },
    /// The keyring holds as many keys as it can address (about four billion).
    #[error("keyring is full")]
    Full,
}

/// A key that cannot be missing: what a lookup reads when a slot somehow is (never, as slot 0
/// always holds the dummy), so that no path depends on it.
static DUMMY_KEY: std::sync::LazyLock<ApiKey> = std::sync::LazyLock::new(dummy_key);

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

/// The embedded key store: token hash → [`ApiKey`], with `authenticate` and `authorize` straight
/// from the token a client presented.
///
/// A server that keeps its keys in memory (loaded from its database at start-up, updated as keys
/// are issued, rotated and revoked) asks a [`Keyring`] "may the holder of this token do this?" and
/// gets a [`Decision`] in constant time, without allocating.
///
/// # How a lookup stays constant time
///
/// * **Hash first.** The presented token is hashed with SHA-256 before anything looks at the
///   store. Everything after that depends on the *hash* of the guess, never on its characters, so
///   whatever the lookup's timing reveals is a fact about SHA-256 outputs, which does not help
///   anyone find a token: learning that `SHA-256(guess)` sorts near a stored hash brings a guess no
///   closer to a stored token. (This is also why the index may be ordered by hash at all.)
/// * **A fixed-shape search.** The index holds every secret sorted by the first 8 bytes of its
///   hash (the prefix), cut into chunks of at most 64, with a directory over the chunks' lower
///   bounds. A lookup finds the chunk through the directory (a fixed number of steps for the
///   table), then runs a branch-free binary search of six steps inside it, whatever the chunk
///   holds: each step picks the next bound by `subtle` selection, not by a branch. Then exactly
///   one full constant-time comparison of the 32-byte hash runs against the entry found (or
///   against a dummy entry when the table is empty), together with the entry's validity time and
///   the token format check. `found = format_ok & hash_eq & still_valid`.
/// * **A miss does a hit's work.** The key to judge is the one whose entry the search landed on,
///   hit or miss (slot 0 holds a dummy key, revoked and without permissions, for an empty table):
///   [`authorize`](crate::authorize()) runs on it in full, and on a miss the answer is replaced by
///   [`Deny::UnknownKey`] by selecting on a reason code, not by returning early. A miss must not
///   read the dummy instead: the dummy stays in cache and a random stored key does not, which
///   `benches/ct.rs` measured as a hit/miss difference of |t| = 150 at 200,000 samples per class.
/// * **Lengths are public.** A token of the wrong length cannot match, and hashing it would cost
///   time proportional to whatever length the client sent, so a fixed stand-in of the right
///   length is hashed instead. Only the length decides that branch.
///
/// What is *not* hidden: whether the token was valid (the response says so anyway), its length,
/// and the table size. The memory addresses the search touches depend on the hash of the guess
/// (see above for why that is harmless).
///
/// Why not a `HashMap<TokenHash, ApiKey>`? It would be safe for the same hash-first reason, but
/// its probe count varies with the table's occupancy around the hash and its key comparison exits
/// at the first differing byte. The chunked search has a fixed step count and one fixed-cost
/// comparison, and costs about 64 bytes per secret.
///
/// Why chunks rather than one sorted array? A [`SharedKeyring`] publishes a new snapshot per
/// change while readers keep the old one, so a change must not copy the keyring. Every table here
/// (keys, their state, the chunks, the id map) is a persistent structure whose snapshots share
/// nodes: a change copies one chunk and the nodes on one path. Only when a chunk splits or
/// empties is the directory of chunk bounds rebuilt (one bound per chunk, about one insert in
/// thirty). Creating a key on a [`SharedKeyring`] of a million keys takes tens of microseconds,
/// where copying a sorted array took 150 ms; lookups pay for it with a deeper walk (see
/// `docs/PERFORMANCE.md`). Why not hash buckets, which never need a directory? A miss landing in
/// an empty bucket has no entry to be judged on, and `benches/ct.rs` measured it against a hit at
/// |t| = 156: sorted chunks leave no gap a miss can fall into.
///
/// Two stored secrets whose hashes share their first 8 bytes cannot both be indexed (the search
/// would find only one): the second is refused with [`KeyringError::PrefixCollision`]. For random
/// tokens that happens with probability about 2⁻⁶⁴ per pair; [`Keyring::rotate`] simply mints
/// again, and a caller inserting a freshly issued key re-issues it.
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
    /// Slot 0 is the dummy key; real keys follow in no particular order. Its nodes are shared
    /// with the snapshots a [`SharedKeyring`] publishes, so that a new snapshot copies one path.
    keys: PVec<Arc<ApiKey>>,
    /// `cells[slot]` is the live state of `keys[slot]`, shared by every snapshot holding it.
    cells: PVec<Arc<KeyCell>>,
    /// The routes usage is counted for.
    endpoints: Arc<Endpoints>,
    /// Exactly the entries of [`entries_for`] of every real key.
    index: SecretIndex,
    slots: PMap<KeyId, u32>,
    /// Every creator's current permissions.
    caps: CreatorCaps,
    /// `cap_slots[slot]` is the cap slot of `keys[slot]`'s creator.
    cap_slots: PVec<u32>,
    /// The limits every key of an account shares, and their state.
    accounts: PMap<AccountId, Arc<admit::AccountLimits>>,
    /// The limits of accounts that have none of their own.
    default_account_limits: Arc<[crate::limits::NamedLimit]>,
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
        let endpoints = Arc::new(Endpoints::default());
        Self {
            format,
            stand_in,
            keys: [Arc::new(dummy_key())].into_iter().collect(),
            cells: [Arc::new(KeyCell::new(&endpoints))].into_iter().collect(),
            endpoints,
            index: SecretIndex::default(),
            slots: PMap::default(),
            caps: CreatorCaps::default(),
            cap_slots: [caps::NO_CREATOR_SLOT].into_iter().collect(),
            accounts: PMap::default(),
            default_account_limits: Arc::new([]),
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
        let mut entries = Vec::with_capacity(lower);
        // Gathered first and built at once: pushing one by one would copy each leaf as it fills.
        let mut stored: Vec<Arc<ApiKey>> = ring.keys.iter().cloned().collect();
        let mut cap_slots: Vec<u32> = ring.cap_slots.iter().copied().collect();
        for key in keys {
            let slot = u32::try_from(stored.len()).map_err(|_| KeyringError::Full)?;
            if ring.slots.insert(key.id(), slot).is_some() {
                return Err(KeyringError::DuplicateKeyId(key.id()));
            }
            entries.extend(entries_for(&key, slot));
            cap_slots.push(ring.caps.slot_for(key.created_by()));
            stored.push(Arc::new(key));
        }
        let endpoints = &ring.endpoints;
        ring.cells = (0..stored.len())
            .map(|_| Arc::new(KeyCell::new(endpoints)))
            .collect();
        ring.keys = stored.into_iter().collect();
        ring.cap_slots = cap_slots.into_iter().collect();
        ring.index = SecretIndex::from_entries(entries, |slot| ring.id_at(slot))?;
        Ok(ring)
    }

    /// The same keyring, counting usage per route for `endpoints` (`"GET /recordings"`, ...);
    /// requests to anything else count under [`Usage::OTHER`](crate::Usage::OTHER). Set it at
    /// start-up: it restarts every key's counters (their settled usage stays).
    ///
    /// ```
    /// use keygate::{AccountId, ApiKey, KeyId, Keyring, PermissionSet, Scope, Timestamp, TokenHash};
    /// let id = KeyId::from_bytes([1; 16]);
    /// let mut keyring = Keyring::default().with_endpoints(["GET /recordings", "POST /recordings"]);
    /// keyring.insert(ApiKey::new(id, "k", AccountId::from_u64(1), Scope::Account,
    ///     PermissionSet::EMPTY, TokenHash::of("x"), Timestamp::EPOCH))?;
    /// let now = Timestamp::from_unix_seconds(60);
    /// keyring.record_usage(id, "GET /recordings", 200, now);
    /// keyring.record_usage(id, "PROPFIND /recordings", 405, now); // not a route: "other"
    /// let usage = keyring.state(id).map(|s| s.usage).unwrap_or_default();
    /// assert_eq!(usage.total_requests(), 2);
    /// assert_eq!(usage.requests_for("GET /recordings"), 1);
    /// assert_eq!(usage.requests_for("other"), 1);
    /// # Ok::<(), keygate::KeyringError>(())
    /// ```
    pub fn with_endpoints<I, S>(mut self, endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let old = core::mem::replace(&mut self.endpoints, Arc::new(Endpoints::new(endpoints)));
        let new = &self.endpoints;
        self.cells.update_all(|cell| {
            let fresh = KeyCell::new(new);
            fresh.restore(&cell.state(&old));
            *cell = Arc::new(fresh);
        });
        self
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
        self.keys.iter().skip(1).map(AsRef::as_ref)
    }

    /// The key with this id.
    pub fn get(&self, id: KeyId) -> Option<&ApiKey> {
        self.slot_of(id).ok().and_then(|slot| self.key_at(slot))
    }

    /// Adds a key. Fails, changing nothing, if its id is already present, if one of its secrets
    /// (current or retired) is already present, or on a hash prefix collision.
    /// [`stage_insert`](Self::stage_insert) is the same, persisted before it is applied.
    pub fn insert(&mut self, key: ApiKey) -> Result<(), KeyringError> {
        self.stage_insert(key)?.apply();
        Ok(())
    }

    /// Removes a key and its state; its tokens stop matching at once. (To keep a record of a
    /// refused key, [`revoke`](Self::revoke) it instead.) [`stage_remove`](Self::stage_remove)
    /// is the same, persisted before it is applied.
    pub fn remove(&mut self, id: KeyId) -> Option<(ApiKey, KeyState)> {
        let key = self.get(id)?.clone();
        let state = self.state(id).unwrap_or_default();
        self.stage_remove(id).ok()?.apply();
        Some((key, state))
    }

    /// Takes a key out of its slot (the last key moves into it). Part of applying a change.
    fn take_out(&mut self, id: KeyId) {
        let Some(slot) = self.slots.remove(&id) else {
            return;
        };
        let Ok(index) = usize::try_from(slot) else {
            return;
        };
        if let Some(key) = self.keys.get(index).cloned() {
            self.index.remove(&key, slot);
        }
        let Ok(last) = u32::try_from(self.keys.len().saturating_sub(1)) else {
            return;
        };
        // `swap_remove` moves the last key into the freed slot: point its entries there.
        if last != slot
            && let Some(moved) = self.key_at(last).cloned()
        {
            self.index.move_slot(&moved, last, slot);
            self.slots.insert(moved.id(), slot);
        }
        if index < self.keys.len() {
            self.keys.swap_remove(index);
            self.cells.swap_remove(index);
            self.cap_slots.swap_remove(index);
        }
    }

    /// Puts a new key in a new slot. Part of applying a change, whose staging checked it.
    fn put_new(&mut self, key: ApiKey) {
        let Ok(slot) = self.next_slot() else {
            return;
        };
        self.index.put(None, &key, slot);
        self.slots.insert(key.id(), slot);
        self.cap_slots.push(self.caps.slot_for(key.created_by()));
        self.meet_account(key.account());
        self.keys.push(Arc::new(key));
        self.cells.push(Arc::new(KeyCell::new(&self.endpoints)));
    }

    /// Forgets every retired secret whose grace period has ended by `now`, from the keys and the
    /// index, and returns how many. Such secrets are already refused; pruning only frees their
    /// memory and drops them from the keys' records.
    pub fn prune(&mut self, now: Timestamp) -> usize {
        let pruned = self.index.prune(now);
        // Skipping the rest when nothing was pruned only saves work: no retired secret has ended,
        // so the loop would change nothing (cargo-mutants' `>` to `>=` here is equivalent).
        if pruned > 0 {
            // The index's own predicate, so that keys and index agree (also at `MAX`).
            let ended: Vec<usize> = self
                .keys
                .iter()
                .enumerate()
                .skip(1)
                .filter(|(_, key)| {
                    key.retired
                        .is_some_and(|r| !bool::from(index::works_at(r.valid_until, now)))
                })
                .map(|(slot, _)| slot)
                .collect();
            for slot in ended {
                if let Some(key) = self.keys.get_mut(slot) {
                    Arc::make_mut(key).retired = None;
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
    /// as described in the [type docs](Keyring).
    pub fn authenticate(&self, token: &str, now: Timestamp) -> Result<&ApiKey, Deny> {
        let (slot, decision) = self.authenticate_slot(token, now);
        // The key is read on a hit and a miss alike (the dummy when the table is empty), so
        // that the two differ only in the outcome the caller acts on.
        let key = self.key_at(slot).unwrap_or(&DUMMY_KEY);
        match decision {
            Decision::Allow => Ok(key),
            Decision::Deny(deny) => Err(deny),
        }
    }

    /// [`authenticate`](Self::authenticate), as the slot the search landed on and the decision:
    /// [`Decision::Allow`] exactly when the token is that slot's active key. Branch-free.
    fn authenticate_slot(&self, token: &str, now: Timestamp) -> (u32, Decision) {
        let (slot, found) = self.lookup(token, now);
        let key = self.key_at(slot).unwrap_or(&DUMMY_KEY);
        let mut reason = liveness_code(key, now);
        reason.conditional_assign(&code::UNKNOWN_KEY, !found);
        // The same masked table as `authorize`: an open `match` on the code compiled to a branch
        // for `UNKNOWN_KEY` there. Rule 1 alone never yields `MISSING_PERMISSION`, so the
        // permission passed is never read.
        (slot, decision_for(reason, Permission::FIRST))
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
        let cap = self.caps.get(self.cap_slot_at(slot));
        let (mut reason, missing) = reason_code(key, cap, &action, resource, now);
        reason.conditional_assign(&code::UNKNOWN_KEY, !found);
        decision_for(reason, missing)
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
        let (slot, matched) = self.index.lookup(&hash, now);
        // The entry's slot even on a miss, so that a miss touches a stored key's memory as a hit
        // does; callers replace the decision by `UnknownKey` when `found` is false.
        (slot, format_ok & matched)
    }

    /// The id of the key whose index entry a lookup of `token` lands on, hit or miss (the
    /// dummy's, all zeros, in an empty keyring). For the constant-time benches, which pair each
    /// stored token with unstored ones landing on the same entry; not part of the API.
    #[doc(hidden)]
    pub fn landing_key(&self, token: &str) -> KeyId {
        self.id_at(self.lookup(token, Timestamp::EPOCH).0)
    }

    fn cap_slot_at(&self, slot: u32) -> u32 {
        usize::try_from(slot)
            .ok()
            .and_then(|s| self.cap_slots.get(s))
            .copied()
            .unwrap_or(caps::NO_CREATOR_SLOT)
    }

    fn slot_of(&self, id: KeyId) -> Result<u32, KeyringError> {
        self.slots
            .get(&id)
            .copied()
            .ok_or(KeyringError::UnknownKeyId(id))
    }

    fn key_at(&self, slot: u32) -> Option<&ApiKey> {
        self.keys
            .get(usize::try_from(slot).ok()?)
            .map(AsRef::as_ref)
    }

    fn cell_of(&self, id: KeyId) -> Option<&KeyCell> {
        let slot = self.slot_of(id).ok()?;
        self.cells
            .get(usize::try_from(slot).ok()?)
            .map(AsRef::as_ref)
    }

    fn id_at(&self, slot: u32) -> KeyId {
        self.key_at(slot)
            .map_or(KeyId::from_bytes([0; 16]), ApiKey::id)
    }

    fn next_slot(&self) -> Result<u32, KeyringError> {
        u32::try_from(self.keys.len()).map_err(|_| KeyringError::Full)
    }

    /// Puts `key` in `slot`, replacing its secrets in the index. The checks must have passed.
    fn replace(&mut self, slot: u32, key: ApiKey) {
        let old = self.key_at(slot).cloned();
        self.index.put(old.as_ref(), &key, slot);
        let cap_slot = self.caps.slot_for(key.created_by());
        if let Some(place) = usize::try_from(slot)
            .ok()
            .and_then(|i| self.cap_slots.get_mut(i))
        {
            *place = cap_slot;
        }
        if let Some(place) = usize::try_from(slot)
            .ok()
            .and_then(|i| self.keys.get_mut(i))
        {
            *place = Arc::new(key);
        }
    }
}
