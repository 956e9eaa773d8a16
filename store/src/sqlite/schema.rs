//! The SQLite schema, as an ordered list of migrations applied by `PRAGMA user_version`.

use rusqlite::{Connection, TransactionBehavior};

use crate::StoreError;

/// One step of the schema: applied, in order, to a database whose `user_version` is below
/// `version`, and then `user_version` becomes `version`. Steps are never edited once released:
/// a change to the schema is a new step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// The `user_version` the database has after this step (1, 2, ...).
    pub version: u32,
    /// What the step does.
    pub description: &'static str,
    /// The SQL it runs, inside the migration's transaction.
    pub sql: &'static str,
}

/// Every migration, in order: `MIGRATIONS[i].version == i + 1`.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "keys (records as JSON), their secrets (unique), usage and rate limiters",
        sql: "
            -- One row per key: keygate's ApiKeyRecord as JSON text. The id (16 bytes) is also a
            -- column, for lookups and foreign keys.
            CREATE TABLE keys (
                id BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
                record TEXT NOT NULL
            );
            -- Every secret a key holds: its current token hash, and the retired one during a
            -- rotation grace period. Unique across all keys, as keygate's keyring requires: a
            -- store can never hold two keys that could not be loaded together.
            CREATE TABLE secrets (
                hash BLOB PRIMARY KEY NOT NULL CHECK (length(hash) = 32),
                key_id BLOB NOT NULL REFERENCES keys (id) ON DELETE CASCADE
            ) WITHOUT ROWID;
            CREATE INDEX secrets_by_key ON secrets (key_id);
            -- Settled usage totals (keygate's Usage as JSON), summed from every replica's deltas.
            CREATE TABLE usage (
                key_id BLOB PRIMARY KEY NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
                usage TEXT NOT NULL
            ) WITHOUT ROWID;
            -- GCRA theoretical arrival times, in microseconds since the Unix epoch.
            CREATE TABLE rate_limits (
                key_id BLOB PRIMARY KEY NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
                tat INTEGER NOT NULL
            ) WITHOUT ROWID;
        ",
    },
    Migration {
        version: 2,
        description: "documents: the server's own JSON data by (kind, id)",
        sql: "
            CREATE TABLE documents (
                kind TEXT NOT NULL,
                id TEXT NOT NULL,
                json TEXT NOT NULL,
                PRIMARY KEY (kind, id)
            ) WITHOUT ROWID;
        ",
    },
];

/// The schema version this build writes: the last migration's.
pub const SCHEMA_VERSION: u32 = match MIGRATIONS.last() {
    Some(last) => last.version,
    None => 0,
};

/// The database's `user_version`.
pub(crate) fn version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("PRAGMA user_version", [], |row| row.get(0))?)
}

/// Brings the database up to [`SCHEMA_VERSION`], in one transaction: all the missing steps, or
/// (on an error) none. Refuses a database newer than this build.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    // Cheap, and needs no write lock, on every open but the first.
    if version(conn)? == i64::from(SCHEMA_VERSION) {
        return Ok(());
    }
    // IMMEDIATE: two processes opening a new file at once migrate it one after the other; the
    // second reads the version again inside its transaction and finds nothing to do.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = version(&tx)?;
    if found > i64::from(SCHEMA_VERSION) {
        return Err(StoreError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    if found < 0 {
        return Err(StoreError::corrupt(format!(
            "negative schema version {found}"
        )));
    }
    for step in MIGRATIONS
        .iter()
        .filter(|step| i64::from(step.version) > found)
    {
        tx.execute_batch(step.sql)?;
        tx.pragma_update(None, "user_version", step.version)?;
    }
    tx.commit()?;
    Ok(())
}
