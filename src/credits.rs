//! Usage credits, after Unkey's `remaining` with refill: a budget of requests a key may spend,
//! optionally set back to a fixed amount every period.

use core::time::Duration;

use serde::{Deserialize, Serialize};

use crate::timestamp::Timestamp;

/// A credits config was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CreditsError {
    /// A refill must give at least 1 credit.
    #[error("credits refill amount must be at least 1")]
    ZeroRefillAmount,
    /// A refill period must be at least 1 second.
    #[error("credits refill period must be at least 1 second")]
    ZeroRefillPeriod,
}

/// "This key may spend `remaining` credits; then, with a refill, `amount` credits every period."
///
/// Every admitted request spends credits (one, or a cost the server names); a request that
/// would take the balance below zero is refused with [`UsageExceeded`] (429,
/// `{"error": "Usage exceeded", "code": "USAGE_EXCEEDED"}`, after Unkey's code) and spends
/// nothing. Periods are aligned to the Unix epoch (a daily refill happens at midnight UTC, as
/// Unkey's daily refill does); the period the key was created in has the budget `remaining`, and
/// each later period starts afresh with the refill's `amount` (set, not added: unspent credits do
/// not pile up, as in Unkey). Without a refill, `remaining` is all the key ever spends.
///
/// A request by a key is charged to the credits of every key up its
/// [`issued_by`](crate::ApiKey::issued_by) chain that has credits, as rate limits are: a child's
/// own credits can only narrow its issuer's, and minting children is no way around a budget.
///
/// ```
/// use keygate::{Credits, Timestamp};
/// let credits = Credits::new(2).with_refill(5, 86_400)?;
/// let created = Timestamp::from_unix_seconds(1_000);
/// let mut spent = Default::default();
/// assert!(credits.spend(&mut spent, 1, created, created).is_ok());
/// assert!(credits.spend(&mut spent, 1, created, created).is_ok());
/// let refused = credits.spend(&mut spent, 1, created, created).unwrap_err();
/// assert_eq!(refused.retry_after_seconds(), Some(86_400 - 1_000));
/// // The next day starts with the refill's 5 credits.
/// let tomorrow = Timestamp::from_unix_seconds(86_400);
/// assert!(credits.spend(&mut spent, 5, created, tomorrow).is_ok());
/// assert!(credits.spend(&mut spent, 1, created, tomorrow).is_err());
/// # Ok::<(), keygate::CreditsError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credits {
    remaining: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refill: Option<Refill>,
}

/// A refill: every `period_seconds` (aligned to the Unix epoch), the balance is set to `amount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RefillSpec", into = "RefillSpec")]
pub struct Refill {
    amount: u32,
    period_seconds: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefillSpec {
    amount: u32,
    period_seconds: u32,
}

impl TryFrom<RefillSpec> for Refill {
    type Error = CreditsError;
    fn try_from(spec: RefillSpec) -> Result<Self, CreditsError> {
        Refill::new(spec.amount, spec.period_seconds)
    }
}

impl From<Refill> for RefillSpec {
    fn from(refill: Refill) -> Self {
        Self {
            amount: refill.amount,
            period_seconds: refill.period_seconds,
        }
    }
}

impl Refill {
    /// `amount` credits every `period_seconds`.
    pub fn new(amount: u32, period_seconds: u32) -> Result<Self, CreditsError> {
        if amount == 0 {
            return Err(CreditsError::ZeroRefillAmount);
        }
        if period_seconds == 0 {
            return Err(CreditsError::ZeroRefillPeriod);
        }
        Ok(Self {
            amount,
            period_seconds,
        })
    }

    /// The balance each period starts with.
    pub fn amount(&self) -> u32 {
        self.amount
    }

    /// The period.
    pub fn period(&self) -> Duration {
        Duration::from_secs(u64::from(self.period_seconds))
    }
}

/// Credits spent so far in one period: the state [`Credits::spend`] updates, kept in a key's
/// [`Usage`](crate::Usage) so that it is flushed to a store and summed across replicas like the
/// other counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditsSpent {
    /// The period the count is for: `floor(unix seconds / refill period)`, or 0 without a
    /// refill.
    pub period: u32,
    /// Credits spent in it.
    pub spent: u64,
}

impl CreditsSpent {
    /// Adds a count from elsewhere (a replica's flush): counts of the same period add up, a later
    /// period's replaces an earlier one's, and an earlier one's is dropped.
    pub fn absorb(&mut self, other: &CreditsSpent) {
        if other.period == self.period {
            self.spent = self.spent.saturating_add(other.spent);
        } else if other.period > self.period {
            *self = *other;
        }
    }
}

/// An exhausted credit balance: 429 `{"error": "Usage exceeded", "code": "USAGE_EXCEEDED"}`,
/// with `retry_after` (and a `Retry-After` header) when a refill will come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("usage exceeded")]
pub struct UsageExceeded {
    refill_at: Option<Timestamp>,
    now: Timestamp,
}

impl UsageExceeded {
    /// Refused at `now`, with the next refill at `refill_at` (`None`: no refill will come).
    pub fn new(now: Timestamp, refill_at: Option<Timestamp>) -> Self {
        Self { refill_at, now }
    }

    /// When the next refill comes, if one will.
    pub fn refill_at(&self) -> Option<Timestamp> {
        self.refill_at
    }

    /// Whole seconds until the next refill (at least 1), if one will come.
    pub fn retry_after_seconds(&self) -> Option<u64> {
        self.refill_at
            .map(|at| crate::ratelimit::RetryAfter::until(self.now, at).seconds())
    }
}

impl Credits {
    /// A budget of `remaining` credits, never refilled.
    pub fn new(remaining: u32) -> Self {
        Self {
            remaining,
            refill: None,
        }
    }

    /// The same budget, set to `amount` at the start of every period of `period_seconds`.
    pub fn with_refill(mut self, amount: u32, period_seconds: u32) -> Result<Self, CreditsError> {
        self.refill = Some(Refill::new(amount, period_seconds)?);
        Ok(self)
    }

    /// The budget of the period the key was created in.
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// The refill, if any.
    pub fn refill(&self) -> Option<Refill> {
        self.refill
    }

    /// The period `now` falls in: `floor(unix seconds / refill period)`, clamped to `u32` (a
    /// period number past it stays at the last one: no refill, fail closed); 0 without a refill.
    pub fn period_at(&self, now: Timestamp) -> u32 {
        let Some(refill) = self.refill else {
            return 0;
        };
        let seconds = now.unix_micros().div_euclid(1_000_000);
        let period = seconds.div_euclid(i64::from(refill.period_seconds));
        u32::try_from(period.max(0)).unwrap_or(u32::MAX)
    }

    /// The credits period `period` starts with, for a key created at `created_at`.
    pub fn budget(&self, period: u32, created_at: Timestamp) -> u64 {
        match self.refill {
            Some(refill) if period > self.period_at(created_at) => u64::from(refill.amount),
            _ => u64::from(self.remaining),
        }
    }

    /// When the period after `period` starts (the next refill), if there is a refill.
    pub fn next_refill(&self, period: u32) -> Option<Timestamp> {
        let refill = self.refill?;
        let start = (i64::from(period) + 1) * i64::from(refill.period_seconds);
        Some(Timestamp::from_unix_seconds(start))
    }

    /// Spends `cost` credits at `now` from `spent` (the key's count, created at `created_at`), or
    /// refuses and changes nothing. Pure: what the keyring's atomic cell does, step for step.
    pub fn spend(
        &self,
        spent: &mut CreditsSpent,
        cost: u32,
        created_at: Timestamp,
        now: Timestamp,
    ) -> Result<(), UsageExceeded> {
        let current = self.period_at(now);
        // A clock that went back stays in the period already counted: never a second refill.
        let (period, already) = if current > spent.period {
            (current, 0)
        } else {
            (spent.period, spent.spent)
        };
        let after = already.saturating_add(u64::from(cost));
        if after > self.budget(period, created_at) {
            return Err(UsageExceeded::new(now, self.next_refill(period)));
        }
        *spent = CreditsSpent {
            period,
            spent: after,
        };
        Ok(())
    }
}
