//! Stored values back into keygate's types, shared by every backend: each fails with
//! [`StoreError::Corrupt`] naming the key, never with a panic.

use keygate::{ApiKeyRecord, KeyId, RateLimitState, Usage};

use crate::StoreError;

/// A key id column (16 bytes).
pub(crate) fn key_id(bytes: &[u8]) -> Result<KeyId, StoreError> {
    <[u8; 16]>::try_from(bytes)
        .map(KeyId::from_bytes)
        .map_err(|_| StoreError::corrupt(format!("a key id of {} bytes", bytes.len())))
}

/// Key `id`'s record, parsed from its JSON text, which must hold that same id.
pub(crate) fn record(id: KeyId, text: &str) -> Result<ApiKeyRecord, StoreError> {
    let record: ApiKeyRecord = serde_json::from_str(text)
        .map_err(|error| StoreError::corrupt(format!("record of key {id}: {error}")))?;
    if record.id != id {
        return Err(StoreError::corrupt(format!(
            "record of key {id} holds the id {}",
            record.id
        )));
    }
    Ok(record)
}

/// Key `id`'s usage, parsed from its JSON text.
pub(crate) fn usage(id: KeyId, text: &str) -> Result<Usage, StoreError> {
    serde_json::from_str(text)
        .map_err(|error| StoreError::corrupt(format!("usage of key {id}: {error}")))
}

/// Usage as the JSON text the stores keep.
pub(crate) fn usage_text(id: KeyId, usage: &Usage) -> Result<String, StoreError> {
    serde_json::to_string(usage).map_err(|error| {
        StoreError::corrupt(format!("usage of key {id} does not serialize: {error}"))
    })
}

/// The limiter state whose theoretical arrival time is `tat` microseconds. keygate builds one
/// from a TAT only through serde, whose form takes integer microseconds for any instant.
pub(crate) fn rate_limit_state(id: KeyId, tat: i64) -> Result<RateLimitState, StoreError> {
    serde_json::from_value(serde_json::json!({ "tat": tat }))
        .map_err(|error| StoreError::corrupt(format!("rate limiter of key {id}: {error}")))
}
