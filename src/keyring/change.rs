//! Staged changes: every change to a keyring is first a value describing it (the records to
//! write, and for a rotation the new token), checked against the keyring but not yet applied.
//! The caller persists it, then applies it; applying cannot fail, and dropping it changes
//! nothing. "Persist, then publish" is the natural order, and a failed save is a no-op.

use crate::key::{ApiKey, KeyId};
use crate::token::Token;

use super::{Keyring, KeyringError};

/// One record a change writes: a key's new version (new or changed), or a key removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordChange<'a> {
    /// Write this version of the key (insert or replace its record).
    Put(&'a ApiKey),
    /// Delete the key's record.
    Delete(KeyId),
}

#[derive(Debug)]
pub(super) enum Op {
    /// A key new to the keyring.
    Insert(ApiKey),
    /// A new version of a key the keyring holds.
    Replace(ApiKey),
    Remove(KeyId),
}

/// A change to a keyring, checked and ready, not yet applied: its records to persist, and the
/// token a rotation minted (shown once, after the change is applied). See [`Staged`].
#[derive(Debug)]
#[must_use = "a change does nothing until it is applied"]
pub struct Change {
    pub(super) ops: Vec<Op>,
    pub(super) token: Option<Token>,
}

impl Change {
    pub(super) fn new(ops: Vec<Op>, token: Option<Token>) -> Self {
        Self { ops, token }
    }

    /// The records to write, in order: persist them all, atomically, before applying.
    pub fn records(&self) -> impl Iterator<Item = RecordChange<'_>> {
        self.ops.iter().map(|op| match op {
            Op::Insert(key) | Op::Replace(key) => RecordChange::Put(key),
            Op::Remove(id) => RecordChange::Delete(*id),
        })
    }

    /// The ids of the keys the change touches, in order.
    pub fn key_ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.records().map(|record| match record {
            RecordChange::Put(key) => key.id(),
            RecordChange::Delete(id) => id,
        })
    }

    /// Whether it changes nothing (revoking a tree that is already revoked).
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A [`Change`] staged against a keyring it borrows, so nothing else can change the keyring
/// before it is applied: that is why applying cannot fail.
///
/// ```
/// use keygate::{AccountId, ApiKey, KeyId, Keyring, PermissionSet, RecordChange, Scope,
///     Timestamp, TokenHash};
/// let mut keyring = Keyring::default();
/// let key = ApiKey::new(KeyId::from_bytes([1; 16]), "k", AccountId::from_u64(1), Scope::Account,
///     PermissionSet::EMPTY, TokenHash::of("idc_x"), Timestamp::EPOCH);
///
/// let staged = keyring.stage_insert(key.clone())?;
/// let saved: Vec<KeyId> = staged.change().key_ids().collect(); // your store writes these first
/// assert_eq!(saved, [key.id()]);
/// drop(staged); // the save failed: nothing happened
/// assert!(keyring.get(key.id()).is_none());
///
/// let staged = keyring.stage_insert(key.clone())?;
/// assert!(matches!(staged.change().records().next(), Some(RecordChange::Put(k)) if k == &key));
/// staged.apply(); // the save succeeded: publish
/// assert!(keyring.get(key.id()).is_some());
/// # Ok::<(), keygate::KeyringError>(())
/// ```
#[derive(Debug)]
#[must_use = "a staged change does nothing until it is applied"]
pub struct Staged<'k> {
    ring: &'k mut Keyring,
    change: Change,
}

impl<'k> Staged<'k> {
    pub(super) fn new(ring: &'k mut Keyring, change: Change) -> Self {
        Self { ring, change }
    }

    /// What will change: the records to persist.
    pub fn change(&self) -> &Change {
        &self.change
    }

    /// Applies the change, and returns the token a rotation minted (show it once). Cannot fail:
    /// the change was checked against this keyring, which nothing else could change since.
    pub fn apply(self) -> Option<Token> {
        self.ring.apply_change(self.change)
    }
}

impl Keyring {
    /// Stages adding a key: fails, changing nothing, if its id is already present, if one of its
    /// secrets (current or retired) is already present, or on a hash prefix collision.
    pub fn stage_insert(&mut self, key: ApiKey) -> Result<Staged<'_>, KeyringError> {
        let change = self.prepare_insert(key)?;
        Ok(Staged::new(self, change))
    }

    /// Stages writing a key's record as another writer stored it (a replica of a shared store
    /// reloading what another replica committed): the key is added if its id is new, and its
    /// record replaced if present, keeping its live usage and rate-limit state. Fails, changing
    /// nothing, if one of its secrets is another key's, or on a hash prefix collision.
    ///
    /// It checks no permission, as [`stage_insert`](Self::stage_insert) does not: the record
    /// comes from the store, which only ever received checked changes. Unlike a
    /// [`Permit`](crate::Permit)'s update it may undo a revocation, as a store's restore would:
    /// the store is the truth.
    pub fn stage_put(&mut self, key: ApiKey) -> Result<Staged<'_>, KeyringError> {
        let change = self.prepare_put(key)?;
        Ok(Staged::new(self, change))
    }

    /// Stages removing a key and its state (its tokens stop matching once applied).
    pub fn stage_remove(&mut self, id: KeyId) -> Result<Staged<'_>, KeyringError> {
        let change = self.prepare_remove(id)?;
        Ok(Staged::new(self, change))
    }

    pub(super) fn prepare_insert(&self, key: ApiKey) -> Result<Change, KeyringError> {
        if self.slots.contains_key(&key.id()) {
            return Err(KeyringError::DuplicateKeyId(key.id()));
        }
        let slot = self.next_slot()?;
        self.index.check(&key, slot)?;
        Ok(Change::new(vec![Op::Insert(key)], None))
    }

    pub(super) fn prepare_put(&self, key: ApiKey) -> Result<Change, KeyringError> {
        let Ok(slot) = self.slot_of(key.id()) else {
            return self.prepare_insert(key);
        };
        self.index.check(&key, slot)?;
        Ok(Change::new(vec![Op::Replace(key)], None))
    }

    pub(super) fn prepare_remove(&self, id: KeyId) -> Result<Change, KeyringError> {
        self.slot_of(id)?;
        Ok(Change::new(vec![Op::Remove(id)], None))
    }

    /// Applies a change prepared against this very state of the keyring.
    pub(super) fn apply_change(&mut self, change: Change) -> Option<Token> {
        for op in change.ops {
            match op {
                Op::Insert(key) => self.put_new(key),
                Op::Replace(key) => {
                    if let Ok(slot) = self.slot_of(key.id()) {
                        self.replace(slot, key);
                    }
                }
                Op::Remove(id) => self.take_out(id),
            }
        }
        change.token
    }
}
