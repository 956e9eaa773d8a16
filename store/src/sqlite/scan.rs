//! The start-up scan: every key's row and state, parsed into [`StoredKey`]s.
//!
//! Sequential, on the caller's thread. Parsing on worker threads was tried (with an earlier,
//! slower scan): on the 2-core development machine, busy with other jobs, it made a million-key
//! load slower (5.2-6.7 s against 4.1-5.2 s sequentially), with no spare core to gain from and
//! allocations freed on another thread than the one that made them.

use std::collections::HashMap;

use keygate::{ApiKeyRecord, KeyId, KeyState, RateLimitState, Usage};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row};

use crate::{StoreError, StoredKey, rows};

/// Calls `visit` with every stored key and its state, in no particular order; stops at the
/// first error (a row's, or the visitor's).
///
/// The state tables are read first, into maps, and the keys then scanned alone: joining them
/// to every key row costs a B-tree probe per key and table, which made a million-key scan
/// twenty times slower (3.8 s against 0.19 s, with a tenth of the keys holding state).
pub(super) fn load(
    conn: &mut Connection,
    visit: &mut dyn FnMut(StoredKey) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    // One read transaction: the three statements see one snapshot of the database (WAL), even
    // while other connections write.
    let tx = conn.transaction()?;
    let mut usage = HashMap::new();
    let mut statement = tx.prepare("SELECT key_id, usage FROM usage")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let id = key_id(row.get_ref(0)?)?;
        usage.insert(id, parse_usage(id, text(row.get_ref(1)?, "usage", id)?)?);
    }
    drop(rows);
    let mut limits = HashMap::new();
    let mut statement = tx.prepare("SELECT key_id, tat FROM rate_limits")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let id = key_id(row.get_ref(0)?)?;
        let tat = row
            .get_ref(1)?
            .as_i64()
            .map_err(|error| StoreError::corrupt(format!("rate limiter of key {id}: {error}")))?;
        limits.insert(id, rows::rate_limit_state(id, tat)?);
    }
    drop(rows);
    let mut statement = tx.prepare("SELECT id, record FROM keys")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let (id, record) = parse_record(row)?;
        let state = KeyState {
            usage: usage.remove(&id).unwrap_or_default(),
            rate_limit: limits.remove(&id).unwrap_or_default(),
        };
        visit(StoredKey { record, state })?;
    }
    Ok(())
}

/// Key `id` and its state, if stored.
pub(super) fn load_one(conn: &Connection, id: KeyId) -> Result<Option<StoredKey>, StoreError> {
    let mut statement = conn.prepare(
        "SELECT k.record, u.usage, r.tat FROM keys AS k
         LEFT JOIN usage AS u ON u.key_id = k.id LEFT JOIN rate_limits AS r ON r.key_id = k.id
         WHERE k.id = ?1",
    )?;
    let mut rows = statement.query([id.as_bytes()])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let record = rows::record(id, text(row.get_ref(0)?, "record", id)?)?;
    let usage = match row.get_ref(1)? {
        ValueRef::Null => Usage::default(),
        value => rows::usage(id, text(value, "usage", id)?)?,
    };
    let rate_limit = match row.get_ref(2)? {
        ValueRef::Null => RateLimitState::default(),
        value => rows::rate_limit_state(
            id,
            value.as_i64().map_err(|error| {
                StoreError::corrupt(format!("rate limiter of key {id}: {error}"))
            })?,
        )?,
    };
    Ok(Some(StoredKey {
        record,
        state: KeyState { usage, rate_limit },
    }))
}

/// A row of `keys`, its record parsed straight from SQLite's buffer.
fn parse_record(row: &Row<'_>) -> Result<(KeyId, ApiKeyRecord), StoreError> {
    let id = key_id(row.get_ref(0)?)?;
    let record = rows::record(id, text(row.get_ref(1)?, "record", id)?)?;
    Ok((id, record))
}

fn key_id(value: ValueRef<'_>) -> Result<KeyId, StoreError> {
    rows::key_id(
        value
            .as_blob()
            .map_err(|error| StoreError::corrupt(format!("a key id: {error}")))?,
    )
}

/// A text column of key `id`'s row, `what` naming it.
fn text<'v>(value: ValueRef<'v>, what: &str, id: KeyId) -> Result<&'v str, StoreError> {
    value
        .as_str()
        .map_err(|error| StoreError::corrupt(format!("{what} of key {id}: {error}")))
}

pub(super) use rows::usage as parse_usage;
