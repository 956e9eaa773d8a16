//! What one atomic write holds: key records from a staged [`Change`], and documents.

use keygate::{ApiKeyRecord, Catalog, Change, KeyId, RecordChange};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::StoreError;

/// One key record written by a [`Commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyWrite {
    /// Insert or replace the key's record (its usage and rate-limit state stay).
    Put(Box<ApiKeyRecord>),
    /// Delete the key's record, with its usage and rate-limit state.
    Delete(KeyId),
}

/// One document written by a [`Commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentWrite {
    /// Insert or replace the document `(kind, id)` with this JSON text.
    Put {
        /// The document's kind (`"project"`, `"recording"`, ...).
        kind: String,
        /// Its id within the kind.
        id: String,
        /// Its JSON text.
        json: String,
    },
    /// Insert the document `(kind, id)` with this JSON text, which must not exist yet: the commit
    /// fails with [`StoreError::DocumentExists`], writing nothing, if it does. How replicas
    /// sharing a store keep from overwriting each other's new documents when they pick the same
    /// id.
    Create {
        /// The document's kind.
        kind: String,
        /// Its id within the kind.
        id: String,
        /// Its JSON text.
        json: String,
    },
    /// Delete the document `(kind, id)`, if it exists.
    Delete {
        /// The document's kind.
        kind: String,
        /// Its id within the kind.
        id: String,
    },
}

/// Writes that a store persists together, in one transaction: all of them or none.
///
/// Key writes come from a staged [`Change`] (its records, in order), documents from the server's
/// own data, so that, say, deleting a project and revoking its keys is one durable step:
///
/// ```
/// use keygate::{AccountId, ApiKey, Catalog, KeyId, Keyring, PermissionSet, Scope, Timestamp,
///     TokenHash};
/// use keygate_store::{Commit, KeyStore, SqliteStore};
///
/// let catalog = Catalog::read_write_delete();
/// let store = SqliteStore::open_in_memory()?;
/// let mut keyring = Keyring::default();
/// let key = ApiKey::new(KeyId::from_bytes([1; 16]), "k", AccountId::from_u64(1), Scope::Account,
///     PermissionSet::EMPTY, TokenHash::of("idc_x"), Timestamp::EPOCH);
///
/// let staged = keyring.stage_insert(key)?;
/// let mut commit = Commit::of_change(&catalog, staged.change());
/// commit.put_document("project", "1", &serde_json::json!({"name": "Support"}))?;
/// store.commit(&commit)?; // on an error, drop `staged`: neither the store nor the keyring changed
/// staged.apply();
///
/// assert_eq!(store.load_documents("project")?.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use = "a commit does nothing until a store commits it"]
pub struct Commit {
    keys: Vec<KeyWrite>,
    documents: Vec<DocumentWrite>,
}

impl Commit {
    /// An empty commit.
    pub fn new() -> Self {
        Self::default()
    }

    /// A commit of a staged change's records, with permission names resolved through `catalog`
    /// (the catalog the keyring's keys were built with).
    pub fn of_change(catalog: &Catalog, change: &Change) -> Self {
        let mut commit = Self::new();
        commit.add_change(catalog, change);
        commit
    }

    /// Adds a staged change's records, after the writes already added.
    pub fn add_change(&mut self, catalog: &Catalog, change: &Change) {
        self.keys
            .extend(change.records().map(|record| match record {
                RecordChange::Put(key) => KeyWrite::Put(Box::new(key.to_record(catalog))),
                RecordChange::Delete(id) => KeyWrite::Delete(id),
            }));
    }

    /// Adds a key write directly (an import, or a migration of records).
    pub fn add_key_write(&mut self, write: KeyWrite) {
        self.keys.push(write);
    }

    /// Adds a document `(kind, id)` with `value` serialized as JSON.
    pub fn put_document<T: Serialize + ?Sized>(
        &mut self,
        kind: &str,
        id: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let json = document_json(kind, id, value)?;
        self.documents.push(DocumentWrite::Put {
            kind: kind.to_owned(),
            id: id.to_owned(),
            json,
        });
        Ok(())
    }

    /// Adds the creation of document `(kind, id)` with `value` serialized as JSON: the whole commit
    /// fails with [`StoreError::DocumentExists`] if the document exists already.
    pub fn create_document<T: Serialize + ?Sized>(
        &mut self,
        kind: &str,
        id: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let json = document_json(kind, id, value)?;
        self.documents.push(DocumentWrite::Create {
            kind: kind.to_owned(),
            id: id.to_owned(),
            json,
        });
        Ok(())
    }

    /// Adds the deletion of document `(kind, id)` (nothing if it does not exist).
    pub fn delete_document(&mut self, kind: &str, id: &str) {
        self.documents.push(DocumentWrite::Delete {
            kind: kind.to_owned(),
            id: id.to_owned(),
        });
    }

    /// The key writes, in order.
    pub fn key_writes(&self) -> &[KeyWrite] {
        &self.keys
    }

    /// The document writes, in order (a store applies them after the key writes).
    pub fn document_writes(&self) -> &[DocumentWrite] {
        &self.documents
    }

    /// Whether it writes nothing.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.documents.is_empty()
    }
}

/// `value` as a document's JSON text.
fn document_json<T: Serialize + ?Sized>(
    kind: &str,
    id: &str,
    value: &T,
) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|error| StoreError::Document {
        kind: kind.to_owned(),
        id: id.to_owned(),
        error,
    })
}

/// A stored document, as [`KeyStore::load_documents`](crate::KeyStore::load_documents) returns
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Its kind.
    pub kind: String,
    /// Its id within the kind.
    pub id: String,
    /// Its JSON text, as written.
    pub json: String,
}

impl Document {
    /// The document parsed as a `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, StoreError> {
        serde_json::from_str(&self.json).map_err(|error| StoreError::Document {
            kind: self.kind.clone(),
            id: self.id.clone(),
            error,
        })
    }
}
