//! The storage interface a server's keyring persists through.

use keygate::{ApiKeyRecord, Catalog, Change, KeyId, KeyState, RateLimitState, Usage};
use serde::Serialize;

use crate::{Commit, Document, StoreError};

/// One stored key: its record and its persisted state (usage, rate limiter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The key's record, as keygate serializes it.
    pub record: ApiKeyRecord,
    /// Its usage totals and rate-limit state ([`KeyState::default`] when none were saved).
    pub state: KeyState,
}

/// Where a server keeps its keys, their state and its own documents.
///
/// Synchronous: a server calls it from `spawn_blocking` or a writer thread, holding keygate's
/// [`Writer`](keygate::Writer) for a key change (stage, [`persist`](Self::persist), apply; see
/// [`SharedKeyring`](keygate::SharedKeyring)). Every write is atomic: it is all written, or it
/// fails with nothing written.
///
/// | when | call |
/// |---|---|
/// | start-up | [`load_keyring`](crate::load_keyring) (which calls [`load_keys`](Self::load_keys)), [`load_documents`](Self::load_documents) per kind |
/// | a key change (and documents with it) | [`commit`](Self::commit) / [`persist`](Self::persist), durable before it returns, then apply |
/// | every few seconds | [`add_usage`](Self::add_usage) (through a [`UsageFlusher`](crate::UsageFlusher)), [`save_rate_limits`](Self::save_rate_limits) |
pub trait KeyStore: core::fmt::Debug {
    /// Calls `visit` with every stored key, in no particular order, and stops at the first
    /// error (its own, or the visitor's).
    fn load_keys(
        &self,
        visit: &mut dyn FnMut(StoredKey) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// One stored key and its state, or `None` when the store holds no key with this id: what a
    /// replica reloads when another announces a change, and where the usage totals of every
    /// replica meet.
    fn load_key(&self, id: KeyId) -> Result<Option<StoredKey>, StoreError>;

    /// Writes `commit` atomically and durably: when it returns `Ok`, the writes survive a crash
    /// or a power loss; when it fails, nothing was written. Deleting a key deletes its usage
    /// and rate-limit state; replacing a record keeps them.
    ///
    /// Idempotent (every write is an upsert or a delete by id), so the same commit may be
    /// retried: the way out of the one ambiguous failure, a disk that fails while flushing, which
    /// leaves unknown whether the change is on disk. Until a retry succeeds, the change is not
    /// applied: a revocation that may be on disk is not yet in force in memory.
    fn commit(&self, commit: &Commit) -> Result<(), StoreError>;

    /// Adds usage deltas (from [`Keyring::flush_usage`](keygate::Keyring::flush_usage)) to the
    /// stored totals with [`Usage::absorb`]: `total = total + delta`, so several replicas sharing
    /// the store can each flush their own. Deltas of keys the store no longer holds (removed
    /// meanwhile) are dropped. Atomic; durable soon after rather than at once (see the crate
    /// docs: a crash may lose the last seconds of counts, never a key change).
    fn add_usage(&self, deltas: &[(KeyId, Usage)]) -> Result<(), StoreError>;

    /// Saves rate-limiter states. Where a state is stored already the later theoretical arrival
    /// time wins (the stricter limiter: a restart never hands a key more budget than a replica
    /// saw it spend). States of keys the store no longer holds are dropped. Atomic; durable as
    /// [`add_usage`](Self::add_usage) is.
    fn save_rate_limits(&self, states: &[(KeyId, RateLimitState)]) -> Result<(), StoreError>;

    /// Every stored document of `kind`, ordered by id (as text).
    fn load_documents(&self, kind: &str) -> Result<Vec<Document>, StoreError>;

    /// Persists a staged change's records: [`commit`](Self::commit) of
    /// [`Commit::of_change`].
    fn persist(&self, catalog: &Catalog, change: &Change) -> Result<(), StoreError> {
        self.commit(&Commit::of_change(catalog, change))
    }

    /// Writes one document (a [`commit`](Self::commit) of it alone).
    fn put_document<T: Serialize + ?Sized>(
        &self,
        kind: &str,
        id: &str,
        value: &T,
    ) -> Result<(), StoreError>
    where
        Self: Sized,
    {
        let mut commit = Commit::new();
        commit.put_document(kind, id, value)?;
        self.commit(&commit)
    }

    /// Deletes one document (a [`commit`](Self::commit) of it alone).
    fn delete_document(&self, kind: &str, id: &str) -> Result<(), StoreError> {
        let mut commit = Commit::new();
        commit.delete_document(kind, id);
        self.commit(&commit)
    }

    /// Every stored key, collected (prefer [`load_keys`](Self::load_keys) for large stores).
    fn all_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let mut keys = Vec::new();
        self.load_keys(&mut |key| {
            keys.push(key);
            Ok(())
        })?;
        Ok(keys)
    }
}
