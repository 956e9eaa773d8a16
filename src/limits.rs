//! Named rate limits: several per key, and limits shared by every key of an account, all charged
//! with the key's own limit and credits in one pass (see [`Keyring::admit`](crate::Keyring::admit)).

use serde::{Deserialize, Serialize};

use core::fmt;

use crate::credits::UsageExceeded;
use crate::key::KeyId;
use crate::ratelimit::{RateLimit, RetryAfter};
use crate::scope::AccountId;

/// How many named limits a key, or an account, may carry.
pub const MAX_NAMED_LIMITS: usize = 4;
/// The longest limit name, in bytes.
pub const MAX_LIMIT_NAME_LEN: usize = 32;

/// A named limit, or a set of them, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// Names are 1 to [`MAX_LIMIT_NAME_LEN`] bytes of `a-z`, `0-9`, `_`, `-` and `.`.
    #[error("limit names must be 1 to 32 characters of a-z, 0-9, '_', '-' and '.'")]
    BadName,
    /// Two limits of one key or account share a name.
    #[error("limit names must be unique")]
    DuplicateName,
    /// More than [`MAX_NAMED_LIMITS`] limits.
    #[error("at most 4 named limits")]
    TooMany,
}

/// A rate limit with a name (`"requests"`, `"transcriptions"`), after Unkey's named rate limits:
/// `{"name": "burst", "requests": 10, "period_seconds": 1}`, with an optional `burst`.
///
/// ```
/// use keygate::{NamedLimit, RateLimit};
/// let limit: NamedLimit = serde_json::from_str(
///     r#"{"name": "per-day", "requests": 10000, "period_seconds": 86400}"#)?;
/// assert_eq!(limit.name(), "per-day");
/// assert_eq!(limit.limit(), &RateLimit::per_period(10_000, 86_400)?);
/// assert!(serde_json::from_str::<NamedLimit>(
///     r#"{"name": "Per Day", "requests": 1, "period_seconds": 1}"#).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "NamedLimitSpec", into = "NamedLimitSpec")]
pub struct NamedLimit {
    name: String,
    limit: RateLimit,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedLimitSpec {
    name: String,
    requests: u32,
    period_seconds: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    burst: Option<u32>,
}

/// A named limit's JSON was refused: its name, or its rate.
#[derive(Debug, thiserror::Error)]
enum SpecError {
    #[error(transparent)]
    Name(#[from] LimitError),
    #[error(transparent)]
    Rate(#[from] crate::ratelimit::RateLimitError),
}

impl TryFrom<NamedLimitSpec> for NamedLimit {
    type Error = SpecError;
    fn try_from(spec: NamedLimitSpec) -> Result<Self, SpecError> {
        let limit = RateLimit::try_from(crate::ratelimit::RateLimitSpec {
            requests: spec.requests,
            period_seconds: spec.period_seconds,
            burst: spec.burst,
        })?;
        Ok(NamedLimit::new(spec.name, limit)?)
    }
}

impl From<NamedLimit> for NamedLimitSpec {
    fn from(named: NamedLimit) -> Self {
        let rate = crate::ratelimit::RateLimitSpec::from(named.limit);
        Self {
            name: named.name,
            requests: rate.requests,
            period_seconds: rate.period_seconds,
            burst: rate.burst,
        }
    }
}

impl NamedLimit {
    /// `limit`, called `name`.
    pub fn new(name: impl Into<String>, limit: RateLimit) -> Result<Self, LimitError> {
        let name = name.into();
        let valid = !name.is_empty()
            && name.len() <= MAX_LIMIT_NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b));
        if !valid {
            return Err(LimitError::BadName);
        }
        Ok(Self { name, limit })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its rate.
    pub fn limit(&self) -> &RateLimit {
        &self.limit
    }

    /// Checks a set of named limits, one key's or one account's: at most [`MAX_NAMED_LIMITS`],
    /// with unique names. What every setter of a set checks (a key, a record, a key request, an
    /// account, a server's configuration).
    pub fn check_set(limits: &[NamedLimit]) -> Result<(), LimitError> {
        if limits.len() > MAX_NAMED_LIMITS {
            return Err(LimitError::TooMany);
        }
        for (i, limit) in limits.iter().enumerate() {
            if limits
                .iter()
                .skip(i + 1)
                .any(|other| other.name == limit.name)
            {
                return Err(LimitError::DuplicateName);
            }
        }
        Ok(())
    }
}

/// Why [`Keyring::admit`](crate::Keyring::admit) refused a request. Nothing was charged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Throttled {
    /// A rate limit (the key's own, a named one, an account's, or one up the issuing chain) is
    /// spent: 429 `{"error": "Rate limit exceeded", "retry_after": N}`.
    #[error(transparent)]
    RateLimited(#[from] RetryAfter),
    /// A credit balance is spent: 429 `{"error": "Usage exceeded", "code": "USAGE_EXCEEDED"}`.
    #[error(transparent)]
    UsageExceeded(#[from] UsageExceeded),
}

/// One rate-limit budget a request is charged to, named so that a limiter kept elsewhere (Redis,
/// shared by replicas) can keep its state: [`Keyring::rate_limit_budgets`](crate::Keyring::rate_limit_budgets).
///
/// Shown as `<key id>` for a key's own `rate_limit` (the form a key's budget always had),
/// `<key id>:<name>` for a named limit and `account:<account id>:<name>` for an account's. Limit
/// names hold no `:` and key ids are hex, so no two budgets share a form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Budget<'a> {
    /// A key's own [`rate_limit`](crate::ApiKey::rate_limit).
    Key(KeyId),
    /// One of a key's [named limits](crate::ApiKey::limits).
    Named(KeyId, &'a str),
    /// A limit every key of an account shares.
    Account(AccountId, &'a str),
}

impl fmt::Display for Budget<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Budget::Key(id) => write!(f, "{id}"),
            Budget::Named(id, name) => write!(f, "{id}:{name}"),
            Budget::Account(account, name) => write!(f, "account:{account}:{name}"),
        }
    }
}
