//! Shared test support. Each integration test includes this with `mod common;` and uses what it
//! needs.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the shared support"
)]

pub mod world;

use keygate::{AccountId, ApiKey, Catalog, KeyId, Scope, Timestamp, TokenHash};

/// The fixture most tests need: a key of account 1 holding every permission of the coarse
/// read/write/delete catalog, created at the epoch, with no expiry.
pub fn full_key(id: KeyId, scope: Scope, token_hash: TokenHash) -> ApiKey {
    let catalog = Catalog::read_write_delete();
    ApiKey::new(
        id,
        "k",
        AccountId::from_u64(1),
        scope,
        catalog.all(),
        token_hash,
        Timestamp::EPOCH,
    )
}

/// The proptest case count: `PROPTEST_CASES` if set, else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
