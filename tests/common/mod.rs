//! Shared test support. Each integration test includes this with `mod common;` and uses what it
//! needs.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the shared support"
)]

pub mod reference;

/// The proptest case count: `PROPTEST_CASES` if set, else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
