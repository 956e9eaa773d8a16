//! The one error type of the store.

use keygate::{CatalogError, KeyId, KeyringError};

/// A store operation failed. A failed write changed nothing: every write is one transaction.
///
/// No message carries a secret: the store never sees a token, only its SHA-256 hash, and the
/// messages name keys by id and documents by kind and id.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database refused or failed an operation (I/O, a full disk, a lock held too long, a
    /// constraint or a trigger).
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL refused or failed an operation, or the connection to it failed.
    #[cfg(feature = "postgres")]
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    /// The store did not answer in time (its deadline passed), or cannot be reached at all. A
    /// write that failed so may or may not have reached the database: retry the same commit
    /// (commits are idempotent) before applying it.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A write would give two keys the same secret: the token hash (current, or retired during a
    /// rotation grace period) of this key is already another key's.
    #[error("API key {0} has a token hash another stored key already has")]
    DuplicateToken(KeyId),
    /// A stored key names a permission the catalog no longer defines (a permission was removed
    /// from the catalog, or the store belongs to another deployment). Loading refuses it rather
    /// than drop the name, which would silently change what the key may do.
    #[error("stored API key {key} cannot be loaded with this catalog: {error}")]
    UnknownPermission {
        /// The key whose record names it.
        key: KeyId,
        /// What the catalog said (which name).
        error: CatalogError,
    },
    /// The stored keys cannot form a keyring together (a duplicate id or secret, or a hash
    /// prefix collision).
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// A stored value is not what this crate writes: a record, usage or document that does not
    /// parse, or an id of the wrong size. The database was changed by something else.
    #[error("corrupt store: {what}")]
    Corrupt {
        /// Which value, by table and id, and what is wrong with it.
        what: String,
    },
    /// A key record could not be serialized (a bug: keygate's records always serialize).
    #[error("API key {key}: record does not serialize: {error}")]
    Record {
        /// The key.
        key: KeyId,
        /// What serde said.
        error: serde_json::Error,
    },
    /// A document could not be serialized, or a stored one does not parse as the type asked for.
    #[error("document {kind}/{id}: {error}")]
    Document {
        /// The document's kind.
        kind: String,
        /// The document's id.
        id: String,
        /// What serde said.
        error: serde_json::Error,
    },
    /// A commit creating a document ([`Commit::create_document`](crate::Commit::create_document))
    /// found it already there (another replica created it first); nothing was written.
    #[error("document {kind}/{id} exists already")]
    DocumentExists {
        /// The document's kind.
        kind: String,
        /// Its id.
        id: String,
    },
    /// The database was written by a newer version of this crate (its schema version is past the
    /// last migration this version knows): refusing it beats misreading it.
    #[error("database schema version {found} is newer than this build knows ({known})")]
    SchemaTooNew {
        /// The database's `user_version`.
        found: i64,
        /// The last version this build migrates to.
        known: u32,
    },
}

impl StoreError {
    /// A corrupt value: `what` names it and says what is wrong.
    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        Self::Corrupt { what: what.into() }
    }
}
