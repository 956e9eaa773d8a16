//! From a store to a keyring at start-up, and a keyring's state back to the store.

use std::collections::BTreeMap;

use keygate::{ApiKey, Catalog, KeyId, KeyState, Keyring, RateLimitState, TokenFormat, Usage};

use crate::{KeyStore, StoreError};

/// Loads every stored key into a new [`Keyring`] for `format`, with its usage and rate-limit
/// state: [`Keyring::from_keys`] (one sort), then [`Keyring::restore_state`] per key that has
/// state.
///
/// Fails with [`StoreError::UnknownPermission`] on a record naming a permission `catalog` does not
/// define (the first such record met), and with [`StoreError::Keyring`] if the keys cannot share a
/// keyring. Call [`Keyring::with_endpoints`] afterwards as usual: it keeps the loaded usage.
pub fn load_keyring<S: KeyStore + ?Sized>(
    store: &S,
    catalog: &Catalog,
    format: TokenFormat,
) -> Result<Keyring, StoreError> {
    let mut keys = Gathered::default();
    let mut states = Vec::new();
    store.load_keys(&mut |stored| {
        let id = stored.record.id;
        let key = ApiKey::from_record(stored.record, catalog)
            .map_err(|error| StoreError::UnknownPermission { key: id, error })?;
        keys.push(key);
        // A key never used nor limited has the default state: restoring it would only cost
        // time (most keys of a large store, in the start-up bench nine in ten).
        if stored.state != KeyState::default() {
            states.push((id, stored.state));
        }
        Ok(())
    })?;
    let keyring = Keyring::from_keys(format, keys)?;
    for (id, state) in &states {
        keyring.restore_state(*id, state);
    }
    Ok(keyring)
}

/// Keys gathered in chunks, so that a million of them are never moved by a growing vector,
/// then handed over with their exact count, so that [`Keyring::from_keys`] reserves its tables
/// once instead of growing them (its id map would rehash several times on the way to a million).
#[derive(Default)]
struct Gathered {
    chunks: Vec<Vec<ApiKey>>,
    len: usize,
}

impl Gathered {
    const CHUNK: usize = 4_096;

    fn push(&mut self, key: ApiKey) {
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < Self::CHUNK => chunk.push(key),
            _ => {
                let mut chunk = Vec::with_capacity(Self::CHUNK);
                chunk.push(key);
                self.chunks.push(chunk);
            }
        }
        self.len = self.len.saturating_add(1);
    }
}

impl IntoIterator for Gathered {
    type Item = ApiKey;
    type IntoIter = Counted<core::iter::Flatten<std::vec::IntoIter<Vec<ApiKey>>>>;

    fn into_iter(self) -> Self::IntoIter {
        Counted {
            keys: self.chunks.into_iter().flatten(),
            remaining: self.len,
        }
    }
}

/// An iterator that knows how many items it has left.
struct Counted<I> {
    keys: I,
    remaining: usize,
}

impl<I: Iterator<Item = ApiKey>> Iterator for Counted<I> {
    type Item = ApiKey;

    fn next(&mut self) -> Option<ApiKey> {
        let key = self.keys.next()?;
        self.remaining = self.remaining.saturating_sub(1);
        Some(key)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

/// Every rate-limited key's limiter state that has seen a request: what
/// [`KeyStore::save_rate_limits`] takes.
pub fn rate_limit_states(keyring: &Keyring) -> Vec<(KeyId, RateLimitState)> {
    keyring
        .iter()
        .filter(|key| key.rate_limit().is_some())
        .filter_map(|key| {
            let state = keyring.state(key.id())?.rate_limit;
            state.tat().is_some().then_some((key.id(), state))
        })
        .collect()
}

/// Flushes a keyring's usage to a store, and keeps the deltas a failed save could not write for
/// the next attempt.
///
/// [`Keyring::flush_usage`] moves the counts since the last flush out of the keyring's counters
/// for good: if the store then fails, those counts exist only in the returned deltas. The flusher
/// holds on to them and adds them to the next flush, so a store that is down for a while loses
/// nothing that a later successful flush can write.
///
/// ```
/// use keygate::{AccountId, ApiKey, Catalog, KeyId, Keyring, PermissionSet, Scope, Timestamp,
///     TokenHash};
/// use keygate_store::{KeyStore, SqliteStore, UsageFlusher, load_keyring};
///
/// let catalog = Catalog::read_write_delete();
/// let store = SqliteStore::open_in_memory()?;
/// let mut keyring = Keyring::default();
/// let id = KeyId::from_bytes([1; 16]);
/// let staged = keyring.stage_insert(ApiKey::new(id, "k", AccountId::from_u64(1), Scope::Account,
///     PermissionSet::EMPTY, TokenHash::of("idc_x"), Timestamp::EPOCH))?;
/// store.persist(&catalog, staged.change())?;
/// staged.apply();
///
/// keyring.record_usage(id, "GET /recordings", 200, Timestamp::from_unix_seconds(60));
/// let mut flusher = UsageFlusher::default();
/// assert_eq!(flusher.flush(&store, &keyring)?, 1); // one key's delta written
///
/// let reloaded = load_keyring(&store, &catalog, Default::default())?;
/// assert_eq!(reloaded.state(id).map(|s| s.usage.total_requests()), Some(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct UsageFlusher {
    /// Deltas taken from the keyring and not yet written.
    pending: BTreeMap<KeyId, Usage>,
}

impl UsageFlusher {
    /// Takes `keyring`'s usage deltas and adds them, with any still pending, to `store`'s totals;
    /// returns how many keys' deltas were written. On an error the deltas stay pending.
    pub fn flush<S: KeyStore + ?Sized>(
        &mut self,
        store: &S,
        keyring: &Keyring,
    ) -> Result<usize, StoreError> {
        for (id, delta) in keyring.flush_usage() {
            self.pending.entry(id).or_default().absorb(&delta);
        }
        if self.pending.is_empty() {
            return Ok(0);
        }
        let batch: Vec<(KeyId, Usage)> = self
            .pending
            .iter()
            .map(|(id, usage)| (*id, usage.clone()))
            .collect();
        store.add_usage(&batch)?;
        self.pending.clear();
        Ok(batch.len())
    }

    /// The delta of key `id` waiting for a successful flush, if any.
    pub fn pending_usage(&self, id: KeyId) -> Option<&Usage> {
        self.pending.get(&id)
    }

    /// How many keys have deltas waiting for a successful flush.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}
