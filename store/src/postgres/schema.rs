//! The PostgreSQL schema: SQLite's tables in PostgreSQL's types, applied by the same numbered
//! steps, with the version in a one-row table instead of `PRAGMA user_version`.

use tokio_postgres::Client;

use crate::{Migration, SCHEMA_VERSION, StoreError};

/// Every PostgreSQL migration, in order: step `i` creates what SQLite's [`MIGRATIONS`](crate::MIGRATIONS)
/// step `i` creates, so a store moves between the two by an export and an import.
pub const PG_MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "keys (records as JSON), their secrets (unique), usage and rate limiters",
        sql: "
            CREATE TABLE keys (
                id bytea PRIMARY KEY CHECK (octet_length(id) = 16),
                record text NOT NULL
            );
            CREATE TABLE secrets (
                hash bytea PRIMARY KEY CHECK (octet_length(hash) = 32),
                key_id bytea NOT NULL REFERENCES keys (id) ON DELETE CASCADE
            );
            CREATE INDEX secrets_by_key ON secrets (key_id);
            CREATE TABLE usage (
                key_id bytea PRIMARY KEY REFERENCES keys (id) ON DELETE CASCADE,
                usage text NOT NULL
            );
            CREATE TABLE rate_limits (
                key_id bytea PRIMARY KEY REFERENCES keys (id) ON DELETE CASCADE,
                tat bigint NOT NULL
            );
        ",
    },
    Migration {
        version: 2,
        description: "documents: the server's own JSON data by (kind, id)",
        sql: "
            CREATE TABLE documents (
                kind text NOT NULL,
                id text NOT NULL,
                json text NOT NULL,
                PRIMARY KEY (kind, id)
            );
        ",
    },
];

// Both backends are at the same version, step for step.
const _: () = assert!(PG_MIGRATIONS.len() == crate::MIGRATIONS.len());

/// Serialises migrations of one database: two replicas starting at once take turns.
const MIGRATION_LOCK: i64 = 0x6b65_7967_6174_6501; // "keygate" + 1

/// The database's schema version; 0 before the first migration.
pub(super) async fn version(client: &Client) -> Result<i64, StoreError> {
    let table = client
        .query_opt("SELECT to_regclass('keygate_schema') IS NOT NULL", &[])
        .await?
        .map(|row| row.try_get::<_, bool>(0))
        .transpose()?
        .unwrap_or(false);
    if !table {
        return Ok(0);
    }
    let row = client
        .query_opt("SELECT version FROM keygate_schema", &[])
        .await?;
    Ok(row
        .map(|row| row.try_get::<_, i32>(0))
        .transpose()?
        .map_or(0, i64::from))
}

/// Brings the database up to [`SCHEMA_VERSION`] in one transaction: all the missing steps, or
/// none. Refuses a database newer than this build.
pub(super) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    if version(client).await? == i64::from(SCHEMA_VERSION) {
        return Ok(());
    }
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS keygate_schema (version integer NOT NULL)")
        .await?;
    // Read again under the lock: another replica may have just migrated it.
    let found = tx
        .query_opt("SELECT version FROM keygate_schema", &[])
        .await?
        .map(|row| row.try_get::<_, i32>(0))
        .transpose()?
        .map_or(0, i64::from);
    if found > i64::from(SCHEMA_VERSION) {
        return Err(StoreError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for step in PG_MIGRATIONS
        .iter()
        .filter(|step| i64::from(step.version) > found)
    {
        tx.batch_execute(step.sql).await?;
    }
    let version = i32::try_from(SCHEMA_VERSION)
        .map_err(|_| StoreError::corrupt(format!("schema version {SCHEMA_VERSION}")))?;
    tx.execute("DELETE FROM keygate_schema", &[]).await?;
    tx.execute(
        "INSERT INTO keygate_schema (version) VALUES ($1)",
        &[&version],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
