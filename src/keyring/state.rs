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

use super::Keyring;
use crate::key::KeyId;
use crate::ratelimit::{RateLimit, RetryAfter};
use crate::timestamp::Timestamp;

/// How many keys up an `issued_by` chain a request is charged to. Deeper chains are refused
/// (fail closed): a budget that cannot be checked is not spent.
pub const MAX_RATE_LIMIT_CHAIN: usize = 16;

impl Keyring {
    /// Admits a request by the key with this id at `now`, or says when to retry: the key's own
    /// rate limit, and the limit of every rate-limited key up its [`issued_by`] chain, each as
    /// GCRA. The request is charged to every one of those budgets, or to none when any refuses,
    /// so a key's children share its budget and minting children is no way around a limit.
    /// A key with no limit anywhere up its chain is always admitted.
    ///
    /// An unknown id, or a chain deeper than [`MAX_RATE_LIMIT_CHAIN`], is refused (retry in a
    /// second): a budget that cannot be checked is not spent.
    ///
    /// [`issued_by`]: crate::ApiKey::issued_by
    ///
    /// ```
    /// use keygate::{issue, AccountId, Catalog, Issuer, KeySpec, Keyring, RateLimit, Scope,
    ///     Timestamp};
    /// use rand::SeedableRng;
    /// let catalog = Catalog::read_write_delete();
    /// let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    /// let now = Timestamp::from_unix_seconds(1_000);
    /// let owner = Issuer::user(AccountId::from_u64(1), Scope::Account, catalog.all());
    /// let parent = issue(&catalog, &owner,
    ///     KeySpec::named("p").rate_limit(RateLimit::per_period(2, 60)?), now, &mut rng)?.key;
    /// let child = issue(&catalog, &Issuer::key(&catalog, &parent, now)?, KeySpec::named("c"), now,
    ///     &mut rng)?.key;
    /// let mut keyring = Keyring::from_keys(Default::default(), [parent.clone(), child.clone()])?;
    /// assert!(keyring.check_rate_limit(child.id(), now).is_ok());
    /// assert!(keyring.check_rate_limit(parent.id(), now).is_ok());
    /// // The parent's budget of 2 is spent, by the child and the parent together.
    /// assert!(keyring.check_rate_limit(child.id(), now).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check_rate_limit(&mut self, id: KeyId, now: Timestamp) -> Result<(), RetryAfter> {
        let refuse = || RetryAfter::after(now, core::time::Duration::from_secs(1));
        // The chain's (slot, limit) pairs, without allocating.
        let mut chain: [Option<(usize, RateLimit)>; MAX_RATE_LIMIT_CHAIN] =
            [None; MAX_RATE_LIMIT_CHAIN];
        let mut next = Some(id);
        for link in &mut chain {
            let Some(current) = next else { break };
            let slot = self.slot_of(current).map_err(|_| refuse())?;
            let index = usize::try_from(slot).map_err(|_| refuse())?;
            let key = self.keys.get(index).ok_or_else(refuse)?;
            *link = key.rate_limit().map(|limit| (index, *limit));
            next = key.issued_by();
            // An ancestor removed from the keyring ends the chain: nothing left to charge.
            if next.is_some_and(|parent| self.slot_of(parent).is_err()) {
                next = None;
            }
        }
        if next.is_some() {
            return Err(refuse());
        }
        // Check every budget on a copy first; charge them all only if all admit.
        let mut latest: Option<RetryAfter> = None;
        for (index, limit) in chain.iter().flatten() {
            let mut state = self
                .states
                .get(*index)
                .map(|s| s.rate_limit)
                .ok_or_else(refuse)?;
            if let Err(retry) = limit.check(&mut state, now) {
                latest =
                    Some(latest.map_or(retry, |l| if retry.at() > l.at() { retry } else { l }));
            }
        }
        if let Some(retry) = latest {
            return Err(retry);
        }
        for (index, limit) in chain.iter().flatten() {
            if let Some(state) = self.states.get_mut(*index) {
                // Cannot refuse: the copy above admitted the same state at the same instant.
                let _ = limit.check(&mut state.rate_limit, now);
            }
        }
        Ok(())
    }
}
