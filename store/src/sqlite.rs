//! The SQLite backend: one file in WAL mode, key changes durable before `commit` returns.

mod scan;
mod schema;

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use keygate::{ApiKey, ApiKeyRecord, Catalog, KeyId, RateLimitState, Usage};
use rusqlite::{
    Connection, OptionalExtension, Statement, Transaction, TransactionBehavior, params,
};

pub use schema::{MIGRATIONS, Migration, SCHEMA_VERSION};

use crate::{Commit, Document, DocumentWrite, KeyStore, KeyWrite, StoreError, StoredKey};

/// How long a write waits for another connection's write (another replica's flush) to end
/// before failing with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The page cache per connection, in KiB.
const CACHE_KIB: i64 = 64 * 1024;

/// How hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// The WAL is synced at every commit: a committed key change survives a power loss.
    Full,
    /// The WAL is synced at the next full commit or checkpoint: usage and rate-limit flushes,
    /// which a crash may lose (seconds of counts) but never corrupts.
    Normal,
}

impl Durability {
    fn pragma(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }
}

#[derive(Debug)]
struct Inner {
    conn: Connection,
    /// The connection's current `synchronous` setting, so that it is set only when it changes.
    sync: Durability,
}

/// A [`KeyStore`] in one SQLite database (a file, or `:memory:`).
///
/// * WAL journal: readers (a start-up load, another replica) do not block the writer.
/// * `synchronous=FULL` for key changes and documents: [`commit`](KeyStore::commit) returns once
///   the change is on disk. `synchronous=NORMAL` for usage and rate-limit flushes (see the crate
///   docs for what a crash can lose).
/// * Foreign keys on: deleting a key deletes its secrets, usage and rate limiter.
/// * The schema is migrated on open ([`MIGRATIONS`]).
///
/// One connection, behind a mutex: calls from several threads take turns (SQLite has one writer
/// at a time anyway). Several processes may open the same file; their writes wait for each other
/// for up to five seconds.
#[derive(Debug)]
pub struct SqliteStore {
    inner: Mutex<Inner>,
}

impl SqliteStore {
    /// Opens (creating it if needed) the database at `path`, or an in-memory one for
    /// `":memory:"`, and migrates it to [`SCHEMA_VERSION`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::setup(Connection::open(path)?)
    }

    /// Opens a new, empty in-memory database (gone when the store is dropped).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::setup(Connection::open_in_memory()?)
    }

    fn setup(mut conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // An in-memory database answers "memory": it has no WAL, and needs none.
        let _mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        conn.pragma_update(None, "foreign_keys", true)?;
        // 64 MiB of page cache instead of SQLite's 2 MiB: key ids and token hashes are random,
        // so a bulk import touches index pages all over the file.
        conn.pragma_update(None, "cache_size", CACHE_KIB.saturating_neg())?;
        conn.pragma_update(None, "synchronous", Durability::Full.pragma())?;
        schema::migrate(&mut conn)?;
        Ok(Self {
            inner: Mutex::new(Inner {
                conn,
                sync: Durability::Full,
            }),
        })
    }

    /// Closes the database, reporting an error a plain drop would ignore.
    pub fn close(self) -> Result<(), StoreError> {
        let inner = self
            .inner
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        inner.conn.close().map_err(|(_, error)| error.into())
    }

    /// The database's schema version (`PRAGMA user_version`): [`SCHEMA_VERSION`] once open.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        schema::version(&self.lock().conn)
    }

    /// Writes many keys in one durable transaction, with permission names resolved through
    /// `catalog`: a bulk import (a first load, or a move from another store). Replaces keys that
    /// exist; returns how many were written. Bypasses the keyring's checks but not the store's
    /// (unique ids and secrets).
    pub fn import<'a, I>(&self, catalog: &Catalog, keys: I) -> Result<usize, StoreError>
    where
        I: IntoIterator<Item = &'a ApiKey>,
    {
        self.write(Durability::Full, |tx| {
            let mut writer = KeyWriter::new(tx)?;
            let mut count = 0usize;
            for key in keys {
                writer.put(&key.to_record(catalog))?;
                count = count.saturating_add(1);
            }
            Ok(count)
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic inside a transaction drops the transaction, which rolls it back: the
        // connection is in a clean state even when the lock is poisoned.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `write` in one IMMEDIATE transaction (it takes the write lock at once, so it never
    /// fails half-way for want of it) with `sync`, and commits; on an error, rolls back.
    fn write<T>(
        &self,
        sync: Durability,
        write: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut inner = self.lock();
        if inner.sync != sync {
            inner
                .conn
                .pragma_update(None, "synchronous", sync.pragma())?;
            inner.sync = sync;
        }
        let tx = inner
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = write(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

/// The statements that write key records, prepared once per transaction.
struct KeyWriter<'t> {
    put: Statement<'t>,
    forget_secrets: Statement<'t>,
    add_secret: Statement<'t>,
    delete: Statement<'t>,
}

impl<'t> KeyWriter<'t> {
    fn new(tx: &'t Transaction<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            // An upsert, not `INSERT OR REPLACE`: replacing would delete the row, and with it
            // (by cascade) the key's usage and rate limiter.
            put: tx.prepare(
                "INSERT INTO keys (id, record) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET record = excluded.record",
            )?,
            forget_secrets: tx.prepare("DELETE FROM secrets WHERE key_id = ?1")?,
            add_secret: tx.prepare(
                "INSERT INTO secrets (hash, key_id) VALUES (?1, ?2) ON CONFLICT (hash) DO NOTHING",
            )?,
            delete: tx.prepare("DELETE FROM keys WHERE id = ?1")?,
        })
    }

    fn put(&mut self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        let id = record.id;
        let json =
            serde_json::to_string(record).map_err(|error| StoreError::Record { key: id, error })?;
        self.put.execute(params![id.as_bytes(), json])?;
        // The key's secrets are exactly its record's: the current hash, and the retired one
        // while the record keeps it.
        self.forget_secrets.execute([id.as_bytes()])?;
        let retired = record.retired_secret.map(|retired| retired.token_hash);
        for hash in core::iter::once(record.token_hash).chain(retired) {
            if self
                .add_secret
                .execute(params![hash.as_bytes(), id.as_bytes()])?
                == 0
            {
                return Err(StoreError::DuplicateToken(id));
            }
        }
        Ok(())
    }

    fn delete(&mut self, id: KeyId) -> Result<(), StoreError> {
        self.delete.execute([id.as_bytes()])?;
        Ok(())
    }
}

fn write_documents(tx: &Transaction<'_>, writes: &[DocumentWrite]) -> Result<(), StoreError> {
    if writes.is_empty() {
        return Ok(());
    }
    let mut put = tx.prepare(
        "INSERT INTO documents (kind, id, json) VALUES (?1, ?2, ?3)
         ON CONFLICT (kind, id) DO UPDATE SET json = excluded.json",
    )?;
    let mut create = tx.prepare(
        "INSERT INTO documents (kind, id, json) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
    )?;
    let mut delete = tx.prepare("DELETE FROM documents WHERE kind = ?1 AND id = ?2")?;
    for write in writes {
        match write {
            DocumentWrite::Put { kind, id, json } => {
                put.execute(params![kind, id, json])?;
            }
            DocumentWrite::Create { kind, id, json } => {
                if create.execute(params![kind, id, json])? == 0 {
                    return Err(StoreError::DocumentExists {
                        kind: kind.clone(),
                        id: id.clone(),
                    });
                }
            }
            DocumentWrite::Delete { kind, id } => {
                delete.execute(params![kind, id])?;
            }
        }
    }
    Ok(())
}

impl KeyStore for SqliteStore {
    fn load_keys(
        &self,
        visit: &mut dyn FnMut(StoredKey) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        scan::load(&mut self.lock().conn, visit)
    }

    fn load_key(&self, id: KeyId) -> Result<Option<StoredKey>, StoreError> {
        scan::load_one(&self.lock().conn, id)
    }

    fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        if commit.is_empty() {
            return Ok(());
        }
        self.write(Durability::Full, |tx| {
            if !commit.key_writes().is_empty() {
                let mut writer = KeyWriter::new(tx)?;
                for write in commit.key_writes() {
                    match write {
                        KeyWrite::Put(record) => writer.put(record)?,
                        KeyWrite::Delete(id) => writer.delete(*id)?,
                    }
                }
            }
            write_documents(tx, commit.document_writes())
        })
    }

    fn add_usage(&self, deltas: &[(KeyId, Usage)]) -> Result<(), StoreError> {
        if deltas.is_empty() {
            return Ok(());
        }
        self.write(Durability::Normal, |tx| {
            // No row: the key is gone. A row with NULL: the key has no usage yet.
            let mut read = tx.prepare(
                "SELECT u.usage FROM keys AS k LEFT JOIN usage AS u ON u.key_id = k.id
                 WHERE k.id = ?1",
            )?;
            let mut write = tx.prepare(
                "INSERT INTO usage (key_id, usage) VALUES (?1, ?2)
                 ON CONFLICT (key_id) DO UPDATE SET usage = excluded.usage",
            )?;
            for (id, delta) in deltas {
                let stored: Option<Option<String>> = read
                    .query_row([id.as_bytes()], |row| row.get(0))
                    .optional()?;
                let Some(stored) = stored else { continue };
                let mut total = match stored {
                    Some(text) => scan::parse_usage(*id, &text)?,
                    None => Usage::default(),
                };
                // Read, add, write inside the write transaction: no other replica's flush can
                // come between, so none is lost.
                total.absorb(delta);
                let json = crate::rows::usage_text(*id, &total)?;
                write.execute(params![id.as_bytes(), json])?;
            }
            Ok(())
        })
    }

    fn save_rate_limits(&self, states: &[(KeyId, RateLimitState)]) -> Result<(), StoreError> {
        if states.iter().all(|(_, state)| state.tat().is_none()) {
            return Ok(());
        }
        self.write(Durability::Normal, |tx| {
            // `WHERE EXISTS` drops the states of keys removed meanwhile (the foreign key would
            // refuse them, failing the whole batch).
            let mut save = tx.prepare(
                "INSERT INTO rate_limits (key_id, tat)
                 SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM keys WHERE id = ?1)
                 ON CONFLICT (key_id) DO UPDATE SET tat = max(tat, excluded.tat)",
            )?;
            for (id, state) in states {
                if let Some(tat) = state.tat() {
                    save.execute(params![id.as_bytes(), tat.unix_micros()])?;
                }
            }
            Ok(())
        })
    }

    fn load_documents(&self, kind: &str) -> Result<Vec<Document>, StoreError> {
        let inner = self.lock();
        let mut statement = inner
            .conn
            .prepare("SELECT id, json FROM documents WHERE kind = ?1 ORDER BY id")?;
        let documents = statement
            .query_map([kind], |row| {
                Ok(Document {
                    kind: kind.to_owned(),
                    id: row.get(0)?,
                    json: row.get(1)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(documents)
    }
}
