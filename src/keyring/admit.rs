//! One pass over every budget a request is charged to: the rate limits of the key and of every
//! key up its issuing chain (each key's own limit and its named ones), its account's limits, then
//! the credits along the chain. All or none: a refusal gives back what was charged.

use core::sync::atomic::{AtomicI64, Ordering};
use core::time::Duration;
use std::sync::Arc;

use super::Keyring;
use super::state::MAX_RATE_LIMIT_CHAIN;
use super::state::{NO_ARRIVAL, admit, fresh_tats, refund};
use crate::key::KeyId;
use crate::limits::{Budget, LimitError, MAX_NAMED_LIMITS, NamedLimit, Throttled};
use crate::ratelimit::{RateLimit, RetryAfter};
use crate::scope::AccountId;
use crate::timestamp::Timestamp;

/// The most rate-limit budgets one request can be charged to: every key of a full chain with
/// its own limit and a full set of named ones, and a full set of account limits.
const MAX_BUDGETS: usize = MAX_RATE_LIMIT_CHAIN * (1 + MAX_NAMED_LIMITS) + MAX_NAMED_LIMITS;

/// An account's limits, shared by every key of the account, and their live state.
#[derive(Debug)]
pub(super) struct AccountLimits {
    limits: Vec<NamedLimit>,
    tats: [AtomicI64; MAX_NAMED_LIMITS],
    /// Set for this account ([`Keyring::set_account_limits`]), not the keyring's default.
    explicit: bool,
}

impl AccountLimits {
    /// `limits`, keeping the state of every limit of `old` that has the same name (a new one
    /// starts with a full burst).
    fn carrying_over(limits: Vec<NamedLimit>, old: Option<&AccountLimits>, explicit: bool) -> Self {
        let tats = fresh_tats();
        for (limit, tat) in limits.iter().zip(tats.iter()) {
            let kept = old.and_then(|old| {
                old.limits
                    .iter()
                    .zip(old.tats.iter())
                    .find(|(old, _)| old.name() == limit.name())
            });
            if let Some((_, old_tat)) = kept {
                tat.store(old_tat.load(Ordering::Acquire), Ordering::Release);
            }
        }
        Self {
            limits,
            tats,
            explicit,
        }
    }
}

/// Where a budget comes from: what names it, for a limiter kept elsewhere.
#[derive(Debug, Clone, Copy)]
enum Source<'a> {
    Key(&'a crate::key::ApiKey),
    Named(&'a crate::key::ApiKey, &'a NamedLimit),
    Account(AccountId, &'a NamedLimit),
}

impl<'a> Source<'a> {
    fn budget(self) -> Budget<'a> {
        match self {
            Source::Key(key) => Budget::Key(key.id()),
            Source::Named(key, limit) => Budget::Named(key.id(), limit.name()),
            Source::Account(account, limit) => Budget::Account(account, limit.name()),
        }
    }
}

/// What to charge.
#[derive(Debug, Clone, Copy)]
pub(super) struct Charge {
    /// The `rate_limit` of each key up the chain.
    pub(super) chain_limits: bool,
    /// The named limits up the chain and the account's.
    pub(super) other_limits: bool,
    /// Credits to spend along the chain; `None`: rate limits only.
    pub(super) cost: Option<u32>,
}

impl Charge {
    /// Everything, one credit.
    pub(super) const ALL: Charge = Charge {
        chain_limits: true,
        other_limits: true,
        cost: Some(1),
    };
    /// What is left once a limiter kept elsewhere has charged every rate limit: the credits.
    pub(super) const CREDITS_ONLY: Charge = Charge {
        chain_limits: false,
        other_limits: false,
        cost: Some(1),
    };
}

impl Keyring {
    /// Admits a request by the key with this id at `now`, spending one credit, or refuses it
    /// with nothing charged. One pass over every budget the request is charged to:
    ///
    /// 1. the rate limits of the key and of every key up its
    ///    [`issued_by`](crate::ApiKey::issued_by) chain: each key's own
    ///    [`rate_limit`](crate::ApiKey::rate_limit) and its [named limits](crate::ApiKey::limits);
    /// 2. the limits of the key's account ([`set_account_limits`](Self::set_account_limits)),
    ///    shared by every key of the account;
    /// 3. the [`Credits`](crate::Credits) of every key up the chain that has them.
    ///
    /// Each limit is GCRA on an atomic TAT and each credit count one atomic word, so there is no
    /// lock. When one refuses, the charges already made are given back (where no other request
    /// has moved them since): a refused request spends nothing, and the first refusal met is
    /// the answer, [`Throttled::RateLimited`] or [`Throttled::UsageExceeded`], both 429.
    ///
    /// An unknown id, or a chain deeper than [`MAX_RATE_LIMIT_CHAIN`], is refused (retry in a
    /// second): a budget that cannot be checked is not spent.
    ///
    /// ```
    /// use keygate::{issue, AccountId, Catalog, Credits, Issuer, KeySpec, Keyring, NamedLimit,
    ///     RateLimit, Refusal, Scope, Throttled, Timestamp};
    /// use rand::SeedableRng;
    /// let catalog = Catalog::read_write_delete();
    /// let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    /// let now = Timestamp::from_unix_seconds(1_000);
    /// let account = AccountId::from_u64(1);
    /// let owner = Issuer::user(account, Scope::Account, catalog.all());
    /// let spec = KeySpec::named("trial")
    ///     .credits(Credits::new(3))
    ///     .limit(NamedLimit::new("per-second", RateLimit::per_period(2, 1)?)?);
    /// let key = issue(&catalog, &owner, spec, now, &mut rng)?.key;
    /// let mut keyring = Keyring::from_keys(Default::default(), [key.clone()])?;
    /// // Every key of the account together: 100 a minute.
    /// keyring.set_account_limits(account,
    ///     vec![NamedLimit::new("account", RateLimit::per_period(100, 60)?)?])?;
    /// assert!(keyring.admit(key.id(), now).is_ok());
    /// assert!(keyring.admit(key.id(), now).is_ok());
    /// // The named limit refuses the third request this second, and spends no credit for it.
    /// assert!(matches!(keyring.admit(key.id(), now), Err(Throttled::RateLimited(_))));
    /// let later = Timestamp::from_unix_seconds(1_001);
    /// assert!(keyring.admit(key.id(), later).is_ok());
    /// let spent = keyring.admit(key.id(), Timestamp::from_unix_seconds(1_002)).unwrap_err();
    /// assert_eq!(spent.status(), 429);
    /// assert_eq!(serde_json::to_string(&spent.body(&catalog))?,
    ///     r#"{"error":"Usage exceeded","code":"USAGE_EXCEEDED"}"#);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn admit(&self, id: KeyId, now: Timestamp) -> Result<(), Throttled> {
        self.admit_costing(id, 1, now)
    }

    /// [`admit`](Self::admit), spending `cost` credits (Unkey's `cost`: an expensive operation
    /// may cost more than one). A cost of 0 checks that no balance is overspent and spends none.
    pub fn admit_costing(&self, id: KeyId, cost: u32, now: Timestamp) -> Result<(), Throttled> {
        let charge = Charge {
            cost: Some(cost),
            ..Charge::ALL
        };
        match self.slot_of(id) {
            Ok(slot) => self.admit_at(slot, charge, now),
            Err(_) => Err(refuse_unchecked(now).into()),
        }
    }

    /// [`check_rate_limit`](Self::check_rate_limit) for the key in `slot` (found by a lookup in
    /// this very keyring): no id lookup for the key itself.
    pub(super) fn check_rate_limit_at(&self, slot: u32, now: Timestamp) -> Result<(), RetryAfter> {
        let charge = Charge {
            cost: None,
            ..Charge::ALL
        };
        self.admit_at(slot, charge, now)
            .map_err(|throttled| match throttled {
                Throttled::RateLimited(retry) => retry,
                // Not charged without a cost; should it ever be, still a refusal.
                Throttled::UsageExceeded(_) => refuse_unchecked(now),
            })
    }

    /// [`admit`](Self::admit) for the key in `slot`, charging what `charge` says.
    pub(super) fn admit_at(
        &self,
        slot: u32,
        charge: Charge,
        now: Timestamp,
    ) -> Result<(), Throttled> {
        let chain = self.chain_keys(slot).ok_or_else(|| refuse_unchecked(now))?;
        let account = self.account_of(slot, charge);
        if self.budgets(&chain, charge, account, |_| ()).count() > MAX_BUDGETS {
            return Err(refuse_unchecked(now).into());
        }
        let mut previous = [NO_ARRIVAL; MAX_BUDGETS];
        let mut charged = 0;
        let budgets = self.budgets(&chain, charge, account, |_| ());
        for ((_, tat, limit), record) in budgets.zip(previous.iter_mut()) {
            match admit(tat, limit, now) {
                Ok(tat) => {
                    *record = tat;
                    charged += 1;
                }
                Err(retry) => {
                    self.refund_limits(&chain, charge, account, &previous, charged, now);
                    return Err(retry.into());
                }
            }
        }
        let Some(cost) = charge.cost else {
            return Ok(());
        };
        let mut periods: [Option<u32>; MAX_RATE_LIMIT_CHAIN] = [None; MAX_RATE_LIMIT_CHAIN];
        for (&index, record) in chain.iter().flatten().zip(periods.iter_mut()) {
            let (Some(key), Some(cell)) = (self.keys.get(index), self.cells.get(index)) else {
                continue;
            };
            let Some(credits) = key.credits() else {
                continue;
            };
            match cell.spend(credits, cost, key.created_at(), now) {
                Ok(period) => *record = Some(period),
                Err(exceeded) => {
                    for (&index, period) in chain.iter().flatten().zip(periods.iter()) {
                        if let (Some(period), Some(cell)) = (period, self.cells.get(index)) {
                            cell.refund_credits(cost, *period);
                        }
                    }
                    self.refund_limits(&chain, charge, account, &previous, charged, now);
                    return Err(exceeded.into());
                }
            }
        }
        Ok(())
    }

    /// Gives back the first `charged` of the budgets, whose replaced TATs are in `previous`.
    fn refund_limits(
        &self,
        chain: &[Option<usize>; MAX_RATE_LIMIT_CHAIN],
        charge: Charge,
        account: Option<(AccountId, &Arc<AccountLimits>)>,
        previous: &[i64; MAX_BUDGETS],
        charged: usize,
        now: Timestamp,
    ) {
        let budgets = self.budgets(chain, charge, account, |_| ());
        for ((_, tat, limit), old) in budgets.zip(previous.iter()).take(charged) {
            refund(tat, limit, *old, now);
        }
    }

    /// Every rate-limit budget of a request by the first key of `chain`, in charging order, with
    /// where it comes from (references only: the hot path never builds a name).
    ///
    /// `label` turns each budget's [`Source`] into what the caller keeps of it: nothing on the
    /// hot path (`|_| ()`, compiled away), a name for a limiter kept elsewhere.
    fn budgets<'a, 'c, L: 'a, F: Fn(Source<'a>) -> L + Copy + 'a>(
        &'a self,
        chain: &'c [Option<usize>; MAX_RATE_LIMIT_CHAIN],
        charge: Charge,
        account: Option<(AccountId, &'a Arc<AccountLimits>)>,
        label: F,
    ) -> impl Iterator<Item = (L, &'a AtomicI64, &'a RateLimit)> + use<'a, 'c, L, F> {
        let keys = chain.iter().flatten().flat_map(move |&index| {
            let pair = self.keys.get(index).zip(self.cells.get(index));
            let own = pair
                .filter(|_| charge.chain_limits)
                .and_then(|(key, cell)| {
                    Some((label(Source::Key(key)), cell.tat(), key.rate_limit()?))
                });
            let named =
                pair.filter(|_| charge.other_limits)
                    .into_iter()
                    .flat_map(move |(key, cell)| {
                        key.limits()
                            .iter()
                            .zip(cell.named.iter())
                            .map(move |(named, tat)| {
                                (label(Source::Named(key, named)), tat, named.limit())
                            })
                    });
            own.into_iter().chain(named)
        });
        let shared = account.into_iter().flat_map(move |(id, account)| {
            account
                .limits
                .iter()
                .zip(account.tats.iter())
                .map(move |(named, tat)| (label(Source::Account(id, named)), tat, named.limit()))
        });
        keys.chain(shared)
    }

    /// Every rate-limit budget a request by the key with this id is charged to, in the order
    /// [`admit`](Self::admit) charges them, named for a limiter that keeps their state elsewhere
    /// (keygate-store's Redis limiter, shared by replicas): each key's own limit and named ones
    /// up the issuing chain, then the account's; at most 84. `None` where `admit` refuses
    /// without charging anything (an unknown id, a chain deeper than
    /// [`MAX_RATE_LIMIT_CHAIN`]): refuse too. Credits are not budgets of this kind: see
    /// [`AuthenticatedKey::spend_credits`](crate::AuthenticatedKey::spend_credits).
    pub fn rate_limit_budgets(
        &self,
        id: KeyId,
    ) -> Option<impl Iterator<Item = (Budget<'_>, RateLimit)> + '_> {
        self.budgets_at(self.slot_of(id).ok()?)
    }

    /// [`rate_limit_budgets`](Self::rate_limit_budgets) for the key in `slot`.
    pub(super) fn budgets_at(
        &self,
        slot: u32,
    ) -> Option<impl Iterator<Item = (Budget<'_>, RateLimit)> + '_> {
        let chain = self.chain_keys(slot)?;
        let account = self.account_of(slot, Charge::ALL);
        // Collected: the names borrow the keyring, the chain is local (and a limiter kept
        // elsewhere makes a round trip for them anyway).
        let budgets: Vec<(Budget<'_>, RateLimit)> = self
            .budgets(&chain, Charge::ALL, account, Source::budget)
            .map(|(budget, _, limit)| (budget, *limit))
            .collect();
        Some(budgets.into_iter())
    }

    /// The account limits of the key in `slot`, when `charge` takes them.
    fn account_of(&self, slot: u32, charge: Charge) -> Option<(AccountId, &Arc<AccountLimits>)> {
        let key = usize::try_from(slot)
            .ok()
            .and_then(|index| self.keys.get(index))?;
        let account = key.account();
        self.accounts
            .get(&account)
            .filter(|_| charge.other_limits)
            .map(|limits| (account, limits))
    }

    /// The slots of the key in `slot` and of every key up its issuing chain (an ancestor no
    /// longer here ends it); `None` for a chain deeper than [`MAX_RATE_LIMIT_CHAIN`] or a slot
    /// that holds no key.
    pub(super) fn chain_keys(&self, slot: u32) -> Option<[Option<usize>; MAX_RATE_LIMIT_CHAIN]> {
        let mut chain = [None; MAX_RATE_LIMIT_CHAIN];
        let mut next = usize::try_from(slot).ok();
        for link in &mut chain {
            let Some(index) = next else { break };
            let key = self.keys.get(index)?;
            self.cells.get(index)?;
            *link = Some(index);
            // An ancestor removed from the keyring ends the chain: nothing left to charge.
            next = key
                .issued_by()
                .and_then(|parent| self.slot_of(parent).ok())
                .and_then(|parent| usize::try_from(parent).ok());
        }
        next.is_none().then_some(chain)
    }

    /// Sets the limits shared by every key of `account` (Unkey's limits on an identity): at most
    /// [`MAX_NAMED_LIMITS`], with unique names. They replace the keyring's default
    /// ([`set_default_account_limits`](Self::set_default_account_limits)) for this account; an
    /// empty list goes back to the default. A limit that keeps its name keeps its state, so
    /// re-setting the same limits changes nothing; a new one starts with a full burst. Charged by
    /// [`admit`](Self::admit) and [`check_rate_limit`](Self::check_rate_limit) for each key of
    /// the account.
    pub fn set_account_limits(
        &mut self,
        account: AccountId,
        limits: Vec<NamedLimit>,
    ) -> Result<(), LimitError> {
        NamedLimit::check_set(&limits)?;
        if limits.is_empty() {
            self.accounts.remove(&account);
            self.apply_default(account);
            return Ok(());
        }
        let cell =
            AccountLimits::carrying_over(limits, self.accounts.get(&account).map(|a| &**a), true);
        self.accounts.insert(account, Arc::new(cell));
        Ok(())
    }

    /// Sets the limits every account's keys share unless the account has its own
    /// ([`set_account_limits`](Self::set_account_limits)): each account gets its own budget of
    /// each (100 a minute per account, say, whatever its number of keys). At most
    /// [`MAX_NAMED_LIMITS`], with unique names; an empty list lifts them. Accounts met later (a
    /// key of a new account inserted) get them too. O(number of keys): a start-up setting.
    pub fn set_default_account_limits(
        &mut self,
        limits: Vec<NamedLimit>,
    ) -> Result<(), LimitError> {
        NamedLimit::check_set(&limits)?;
        self.default_account_limits = Arc::from(limits);
        let accounts: std::collections::BTreeSet<AccountId> =
            self.keys.iter().skip(1).map(|key| key.account()).collect();
        for account in accounts {
            self.apply_default(account);
        }
        Ok(())
    }

    /// The limits every key of `account` shares, its own or the default; empty if none.
    pub fn account_limits(&self, account: AccountId) -> &[NamedLimit] {
        self.accounts
            .get(&account)
            .map_or(&[], |limits| limits.limits.as_slice())
    }

    /// Gives `account` the default limits unless it has its own; none when there is no default.
    fn apply_default(&mut self, account: AccountId) {
        let old = self.accounts.get(&account).cloned();
        if old.as_ref().is_some_and(|old| old.explicit) {
            return;
        }
        if self.default_account_limits.is_empty() {
            self.accounts.remove(&account);
            return;
        }
        let limits = self.default_account_limits.to_vec();
        let cell = AccountLimits::carrying_over(limits, old.as_deref(), false);
        self.accounts.insert(account, Arc::new(cell));
    }

    /// Makes sure a key of `account` being put in finds its account's default limits. Part of
    /// applying a change.
    pub(super) fn meet_account(&mut self, account: AccountId) {
        if !self.default_account_limits.is_empty() && !self.accounts.contains_key(&account) {
            self.apply_default(account);
        }
    }
}

/// The refusal of a request whose budgets cannot be checked: retry in a second.
fn refuse_unchecked(now: Timestamp) -> RetryAfter {
    RetryAfter::after(now, Duration::from_secs(1))
}
