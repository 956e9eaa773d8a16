//! Per-key mutable state, kept beside each key: usage counters and the rate limiter.

use serde::{Deserialize, Serialize};

use crate::ratelimit::RateLimitState;
use crate::usage::Usage;

/// A key's mutable per-request state, kept beside it: its usage counters and its rate limiter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyState {
    /// Requests and errors counted so far.
    #[serde(default)]
    pub usage: Usage,
    /// The key's GCRA state, for [`RateLimit::check`](crate::RateLimit::check).
    #[serde(default)]
    pub rate_limit: RateLimitState,
}
