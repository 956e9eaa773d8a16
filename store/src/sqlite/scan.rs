//! The start-up scan: every key's row, parsed into a [`StoredKey`].
//!
//! Sequential, on the caller's thread. Parsing on worker threads was tried: on the 2-core
//! development machine, busy with other jobs, it made a million-key load slower (5.2-6.7 s
//! against 4.1-5.2 s sequentially), with no spare core to gain from and allocations freed on
//! another thread than the one that made them.

use keygate::{ApiKeyRecord, KeyId, KeyState, RateLimitState, Usage};
use rusqlite::Row;
use rusqlite::types::ValueRef;

use crate::{StoreError, StoredKey};

/// The query: every key with its state. One statement, so one consistent snapshot (WAL).
pub(super) const LOAD_KEYS: &str = "SELECT k.id, k.record, u.usage, r.tat FROM keys AS k
     LEFT JOIN usage AS u ON u.key_id = k.id
     LEFT JOIN rate_limits AS r ON r.key_id = k.id";

/// Reads every row of `rows` and calls `visit` with each parsed key, in no particular order;
/// stops at the first error (a row's, or the visitor's).
pub(super) fn scan(
    mut rows: rusqlite::Rows<'_>,
    visit: &mut dyn FnMut(StoredKey) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    while let Some(row) = rows.next()? {
        visit(parse(row)?)?;
    }
    Ok(())
}

/// One row of [`LOAD_KEYS`], parsed straight from SQLite's buffers.
fn parse(row: &Row<'_>) -> Result<StoredKey, StoreError> {
    let id = key_id(row.get_ref(0)?)?;
    let record: ApiKeyRecord = serde_json::from_str(text(row.get_ref(1)?, "record", id)?)
        .map_err(|error| StoreError::corrupt(format!("record of key {id}: {error}")))?;
    if record.id != id {
        return Err(StoreError::corrupt(format!(
            "record of key {id} holds the id {}",
            record.id
        )));
    }
    let usage = match row.get_ref(2)? {
        ValueRef::Null => Usage::default(),
        usage => parse_usage(id, text(usage, "usage", id)?)?,
    };
    let rate_limit = match row.get_ref(3)? {
        ValueRef::Null => RateLimitState::default(),
        tat => rate_limit_state(
            id,
            tat.as_i64().map_err(|error| {
                StoreError::corrupt(format!("rate limiter of key {id}: {error}"))
            })?,
        )?,
    };
    Ok(StoredKey {
        record,
        state: KeyState { usage, rate_limit },
    })
}

fn key_id(value: ValueRef<'_>) -> Result<KeyId, StoreError> {
    let bytes = value
        .as_blob()
        .map_err(|error| StoreError::corrupt(format!("a key id: {error}")))?;
    <[u8; 16]>::try_from(bytes)
        .map(KeyId::from_bytes)
        .map_err(|_| StoreError::corrupt(format!("a key id of {} bytes", bytes.len())))
}

/// A text column of key `id`'s row, `what` naming it.
fn text<'v>(value: ValueRef<'v>, what: &str, id: KeyId) -> Result<&'v str, StoreError> {
    value
        .as_str()
        .map_err(|error| StoreError::corrupt(format!("{what} of key {id}: {error}")))
}

pub(super) fn parse_usage(id: KeyId, text: &str) -> Result<Usage, StoreError> {
    serde_json::from_str(text)
        .map_err(|error| StoreError::corrupt(format!("usage of key {id}: {error}")))
}

/// The limiter state whose theoretical arrival time is `tat` microseconds. keygate builds one
/// from a TAT only through serde, whose form takes integer microseconds for any instant.
fn rate_limit_state(id: KeyId, tat: i64) -> Result<RateLimitState, StoreError> {
    serde_json::from_value(serde_json::json!({ "tat": tat }))
        .map_err(|error| StoreError::corrupt(format!("rate limiter of key {id}: {error}")))
}
