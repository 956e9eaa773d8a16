//! Per-key mutable state, kept beside each key: the rate limiter and usage counters, as atomics
//! that requests update through `&self`, without any lock shared between keys.

use core::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use super::Keyring;
use crate::credits::{Credits, CreditsSpent, UsageExceeded};
use crate::key::KeyId;
use crate::limits::MAX_NAMED_LIMITS;
use crate::ratelimit::{RateLimit, RateLimitState, RetryAfter};
use crate::timestamp::Timestamp;
use crate::usage::Usage;

/// A key's mutable per-request state, as a value: its usage counters and its rate limiter. What
/// [`Keyring::state`] reports and [`Keyring::restore_state`] loads (a store persists it).
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

/// How many keys up an `issued_by` chain a request is charged to. Deeper chains are refused
/// (fail closed): a budget that cannot be checked is not spent.
pub const MAX_RATE_LIMIT_CHAIN: usize = 16;

/// The endpoints a keyring counts usage for, by index: the routes a server registers once, so
/// that counting a request is an index, not a map insertion (and never a `format!`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Endpoints {
    /// Sorted, unique.
    names: Vec<String>,
}

impl Endpoints {
    pub(super) fn new<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut names: Vec<String> = names.into_iter().map(Into::into).collect();
        names.sort_unstable();
        names.dedup();
        names.truncate(Usage::MAX_ENDPOINTS);
        Self { names }
    }

    /// The counter index of `name`; unknown names count under [`Usage::OTHER`] (the last
    /// counter). A binary search over a handful of routes: no allocation.
    pub(super) fn index(&self, name: &str) -> usize {
        self.names
            .binary_search_by(|probe| probe.as_str().cmp(name))
            .unwrap_or(self.names.len())
    }

    /// The counter index of the route `"{method} {route}"`, found without building the string:
    /// names sort as `(method, route)` pairs do, since the separating space sorts below every
    /// character a method may hold.
    pub(super) fn index_of(&self, method: &str, route: &str) -> usize {
        self.names
            .binary_search_by(|probe| {
                let (m, r) = probe.split_once(' ').unwrap_or((probe.as_str(), ""));
                (m, r).cmp(&(method, route))
            })
            .unwrap_or(self.names.len())
    }

    /// Counters per key: one per name, and one for everything else.
    fn counters(&self) -> usize {
        self.names.len() + 1
    }
}

/// The GCRA TAT of a key with no recorded arrival (no real TAT is `i64::MIN`: it is always at
/// least one interval past some instant).
pub(super) const NO_ARRIVAL: i64 = i64::MIN;

/// Fresh TATs for a set of named limits.
pub(super) fn fresh_tats() -> [AtomicI64; MAX_NAMED_LIMITS] {
    core::array::from_fn(|_| AtomicI64::new(NO_ARRIVAL))
}

/// A credit count in one word, so that a refill and a spend are one compare-and-swap: the
/// period in the high half, the credits spent in it in the low half (a budget is a `u32`, so a
/// count past it only needs to stay past it: it saturates).
fn pack(spent: CreditsSpent) -> u64 {
    let count = u32::try_from(spent.spent).unwrap_or(u32::MAX);
    (u64::from(spent.period) << 32) | u64::from(count)
}

fn unpack(word: u64) -> CreditsSpent {
    CreditsSpent {
        period: u32::try_from(word >> 32).unwrap_or(u32::MAX),
        spent: word & u64::from(u32::MAX),
    }
}

/// What the live credit count holds beyond the settled one (flushed to, or loaded from, a
/// store): the delta a flush sends. A refund can leave the live count below the settled one
/// (then none: the settled count stays higher, failing closed), and a settled count of a later
/// period has nothing of this one's to add to.
fn unflushed(live: CreditsSpent, settled: Option<CreditsSpent>) -> Option<CreditsSpent> {
    match settled {
        Some(old) if old.period == live.period => (live.spent > old.spent).then(|| CreditsSpent {
            period: live.period,
            spent: live.spent - old.spent,
        }),
        Some(old) if old.period > live.period => None,
        _ => Some(live),
    }
}

/// One key's live state, shared by every snapshot of a keyring that holds the key (a rotation or
/// an update keeps it), updated with atomics.
#[derive(Debug)]
pub(crate) struct KeyCell {
    tat: AtomicI64,
    total: AtomicU64,
    last_used: AtomicI64,
    errors_4xx: AtomicU64,
    errors_5xx: AtomicU64,
    errors_other: AtomicU64,
    /// One counter per registered endpoint, then one for the rest.
    endpoints: Box<[AtomicU64]>,
    /// The TATs of the key's named limits, by position.
    pub(super) named: [AtomicI64; MAX_NAMED_LIMITS],
    /// Credits spent, as [`pack`] writes them: the live total, settled part included.
    credits: AtomicU64,
    /// Usage loaded from a store or flushed from the counters: only taken by reads of the whole
    /// usage and by flushes, never by a request.
    settled: Mutex<Usage>,
}

impl KeyCell {
    pub(super) fn new(endpoints: &Endpoints) -> Self {
        Self {
            tat: AtomicI64::new(NO_ARRIVAL),
            total: AtomicU64::new(0),
            last_used: AtomicI64::new(i64::MIN),
            errors_4xx: AtomicU64::new(0),
            errors_5xx: AtomicU64::new(0),
            errors_other: AtomicU64::new(0),
            endpoints: (0..endpoints.counters())
                .map(|_| AtomicU64::new(0))
                .collect(),
            named: fresh_tats(),
            credits: AtomicU64::new(0),
            settled: Mutex::new(Usage::default()),
        }
    }

    /// Counts one request to endpoint `index` answered with `status` at `now`.
    pub(super) fn record(&self, index: usize, status: u16, now: Timestamp) {
        self.total.fetch_add(1, Ordering::Relaxed);
        self.last_used
            .fetch_max(now.unix_micros(), Ordering::Relaxed);
        let counter = self.endpoints.get(index).or_else(|| self.endpoints.last());
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        match status {
            0..=399 => {}
            400..=499 => {
                self.errors_4xx.fetch_add(1, Ordering::Relaxed);
            }
            500..=599 => {
                self.errors_5xx.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                self.errors_other.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counts since the last flush, as a [`Usage`]; with `drain`, the counters restart from
    /// zero (a request counted meanwhile lands in this delta or the next, never in neither).
    fn counted(&self, endpoints: &Endpoints, drain: bool) -> Usage {
        let read = |counter: &AtomicU64| {
            if drain {
                counter.swap(0, Ordering::Relaxed)
            } else {
                counter.load(Ordering::Relaxed)
            }
        };
        let last = self.last_used.load(Ordering::Relaxed);
        let names = endpoints.names.iter().map(String::as_str);
        let by_endpoint = names
            .chain([Usage::OTHER])
            .zip(self.endpoints.iter())
            .map(|(name, counter)| (name, read(counter)));
        Usage::from_counts(
            (last != i64::MIN).then_some(Timestamp::from_unix_micros(last)),
            read(&self.total),
            by_endpoint,
            [
                ("4xx", read(&self.errors_4xx)),
                ("5xx", read(&self.errors_5xx)),
                (Usage::OTHER, read(&self.errors_other)),
            ],
        )
    }

    fn settled(&self) -> std::sync::MutexGuard<'_, Usage> {
        // The guarded value is a plain record updated by whole-value additions: a panic
        // elsewhere cannot leave it half-written.
        self.settled.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn state(&self, endpoints: &Endpoints) -> KeyState {
        let mut usage = self.settled().clone();
        usage.absorb(&self.counted(endpoints, false));
        usage.set_credits_spent(self.credits_spent());
        let tat = self.tat.load(Ordering::Acquire);
        KeyState {
            usage,
            rate_limit: RateLimitState::at(
                (tat != NO_ARRIVAL).then_some(Timestamp::from_unix_micros(tat)),
            ),
        }
    }

    pub(super) fn restore(&self, state: &KeyState) {
        *self.settled() = state.usage.clone();
        let credits = state.usage.credits_spent().unwrap_or_default();
        self.credits.store(pack(credits), Ordering::Release);
        let tat = state
            .rate_limit
            .tat()
            .map_or(NO_ARRIVAL, Timestamp::unix_micros);
        self.tat.store(tat, Ordering::Release);
    }

    /// Moves the counts since the last flush into the settled usage, and returns them: the
    /// delta a store adds to its totals.
    pub(super) fn flush(&self, endpoints: &Endpoints) -> Usage {
        let mut delta = self.counted(endpoints, true);
        let mut settled = self.settled();
        let credits = self
            .credits_spent()
            .and_then(|live| unflushed(live, settled.credits_spent()));
        delta.set_credits_spent(credits);
        settled.absorb(&delta);
        delta
    }

    /// Takes in a store's credit count (every replica's flushed spend), keeping what this cell
    /// spent since its last flush: the way replicas see each other's spending between restarts.
    /// A count of an earlier period than this cell's is stale, and ignored.
    fn sync_credits(&self, stored: CreditsSpent) {
        let mut settled = self.settled();
        let flushed = settled.credits_spent();
        let mut current = self.credits.load(Ordering::Acquire);
        loop {
            let live = unpack(current);
            if current != 0 && stored.period < live.period {
                return;
            }
            // What this cell spent that no store has seen yet, in the stored count's period.
            let mine = if current == 0 || live.period < stored.period {
                0
            } else {
                unflushed(live, flushed).map_or(0, |delta| delta.spent)
            };
            let next = CreditsSpent {
                period: stored.period,
                spent: stored.spent.saturating_add(mine),
            };
            match self.credits.compare_exchange_weak(
                current,
                pack(next),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        settled.set_credits_spent(Some(stored));
    }

    /// The live credit count, if the key ever spent a credit or loaded a count.
    fn credits_spent(&self) -> Option<CreditsSpent> {
        let word = self.credits.load(Ordering::Acquire);
        (word != 0).then(|| unpack(word))
    }

    /// Spends `cost` credits by compare-and-swap: the same decision as [`Credits::spend`] on the
    /// count it read. Returns the period charged, for [`refund_credits`](Self::refund_credits).
    pub(super) fn spend(
        &self,
        credits: &Credits,
        cost: u32,
        created_at: Timestamp,
        now: Timestamp,
    ) -> Result<u32, UsageExceeded> {
        let mut current = self.credits.load(Ordering::Acquire);
        loop {
            let mut spent = unpack(current);
            credits.spend(&mut spent, cost, created_at, now)?;
            match self.credits.compare_exchange_weak(
                current,
                pack(spent),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(spent.period),
                Err(actual) => current = actual,
            }
        }
    }

    /// Gives back `cost` credits spent in `period`, unless the count has moved on to a later
    /// period since (then there is nothing of that period left to give back).
    pub(super) fn refund_credits(&self, cost: u32, period: u32) {
        let _ = self
            .credits
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                let spent = unpack(word);
                (spent.period == period && spent.spent >= u64::from(cost)).then(|| {
                    pack(CreditsSpent {
                        period,
                        spent: spent.spent - u64::from(cost),
                    })
                })
            });
    }

    /// The TAT of the key's own rate limit.
    pub(super) fn tat(&self) -> &AtomicI64 {
        &self.tat
    }
}

/// One GCRA step on a TAT, by compare-and-swap (as `governor` does): the same decision as
/// [`RateLimit::check`] on the value it read. Returns the TAT it replaced, for [`refund`].
pub(super) fn admit(tat: &AtomicI64, limit: &RateLimit, now: Timestamp) -> Result<i64, RetryAfter> {
    let mut current = tat.load(Ordering::Acquire);
    loop {
        let mut state = RateLimitState::at(
            (current != NO_ARRIVAL).then_some(Timestamp::from_unix_micros(current)),
        );
        limit.check(&mut state, now)?;
        let next = state.tat().map_or(NO_ARRIVAL, Timestamp::unix_micros);
        match tat.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(current),
            Err(actual) => current = actual,
        }
    }
}

/// Undoes an admission whose TAT is still the one it wrote; if another request has moved it
/// since, the charge stays (never refunding more than was charged: fail closed).
pub(super) fn refund(tat: &AtomicI64, limit: &RateLimit, previous: i64, now: Timestamp) {
    let mut state = RateLimitState::at(
        (previous != NO_ARRIVAL).then_some(Timestamp::from_unix_micros(previous)),
    );
    if limit.check(&mut state, now).is_ok() {
        let written = state.tat().map_or(NO_ARRIVAL, Timestamp::unix_micros);
        let _ = tat.compare_exchange(written, previous, Ordering::AcqRel, Ordering::Relaxed);
    }
}

impl Keyring {
    /// Admits a request by the key with this id at `now`, or says when to retry: the key's own
    /// rate limit and named limits, those of every key up its [`issued_by`] chain, and its
    /// account's limits ([`Keyring::set_account_limits`]), each as GCRA on an atomic TAT (no
    /// lock). It spends no credits: [`Keyring::admit`] charges everything. The request is charged to every one of those budgets;
    /// when one refuses, the charges already made are refunded where no other request has moved
    /// them since. A key's children thus share its budget, and minting children is no way around
    /// a limit. A key with no limit anywhere up its chain is always admitted.
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
    /// let keyring = Keyring::from_keys(Default::default(), [parent.clone(), child.clone()])?;
    /// assert!(keyring.check_rate_limit(child.id(), now).is_ok());
    /// assert!(keyring.check_rate_limit(parent.id(), now).is_ok());
    /// // The parent's budget of 2 is spent, by the child and the parent together.
    /// assert!(keyring.check_rate_limit(child.id(), now).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check_rate_limit(&self, id: KeyId, now: Timestamp) -> Result<(), RetryAfter> {
        match self.slot_of(id) {
            Ok(slot) => self.check_rate_limit_at(slot, now),
            Err(_) => Err(RetryAfter::after(now, core::time::Duration::from_secs(1))),
        }
    }

    /// The budgets a request by the key with this id is charged to, in the order
    /// [`check_rate_limit`](Self::check_rate_limit) charges them: the key's own limit, then the
    /// limit of each rate-limited key up its [`issued_by`](crate::ApiKey::issued_by) chain, as
    /// `(id, limit)`; keys without a limit are skipped, so a chain with no limit anywhere is
    /// empty (always admitted). At most [`MAX_RATE_LIMIT_CHAIN`] items, no allocation.
    ///
    /// `None` where `check_rate_limit` refuses without charging anything (an unknown id, a chain
    /// deeper than [`MAX_RATE_LIMIT_CHAIN`]): a limiter that keeps the state elsewhere (shared by
    /// several replicas) should refuse too, retrying in a second.
    pub fn rate_limit_chain(
        &self,
        id: KeyId,
    ) -> Option<impl Iterator<Item = (KeyId, RateLimit)> + use<'_>> {
        let chain = self.chain_keys(self.slot_of(id).ok()?)?;
        Some(chain.into_iter().flatten().filter_map(|index| {
            let key = self.keys.get(index)?;
            Some((key.id(), *key.rate_limit()?))
        }))
    }

    /// Counts one request by the key with this id to `endpoint` (a registered route, see
    /// [`Keyring::with_endpoints`]; anything else counts under [`Usage::OTHER`]), answered with
    /// `status` at `now`. Atomic counters: no lock, no allocation. Unknown ids are ignored.
    pub fn record_usage(&self, id: KeyId, endpoint: &str, status: u16, now: Timestamp) {
        if let Ok(slot) = self.slot_of(id) {
            self.record_usage_at(slot, endpoint, status, now);
        }
    }

    /// [`record_usage`](Self::record_usage) for the key in `slot`: no id lookup.
    pub(super) fn record_usage_at(&self, slot: u32, endpoint: &str, status: u16, now: Timestamp) {
        let index = self.endpoints.index(endpoint);
        if let Some(cell) = usize::try_from(slot)
            .ok()
            .and_then(|slot| self.cells.get(slot))
        {
            cell.record(index, status, now);
        }
    }

    /// [`record_usage`](Self::record_usage) for the route `"{method} {route}"` (as registered
    /// with [`Keyring::with_endpoints`]), without building that string: what a middleware calls
    /// with the request's method and matched route.
    pub fn record_request(
        &self,
        id: KeyId,
        method: &str,
        route: &str,
        status: u16,
        now: Timestamp,
    ) {
        if let Ok(slot) = self.slot_of(id) {
            self.record_request_at(slot, method, route, status, now);
        }
    }

    /// [`record_request`](Self::record_request) for the key in `slot`: no id lookup.
    pub(super) fn record_request_at(
        &self,
        slot: u32,
        method: &str,
        route: &str,
        status: u16,
        now: Timestamp,
    ) {
        let index = self.endpoints.index_of(method, route);
        if let Some(cell) = usize::try_from(slot)
            .ok()
            .and_then(|slot| self.cells.get(slot))
        {
            cell.record(index, status, now);
        }
    }

    /// The per-request state of the key with this id, as it is now: settled usage plus the
    /// counts since the last flush, and the rate limiter.
    pub fn state(&self, id: KeyId) -> Option<KeyState> {
        self.cell_of(id).map(|cell| cell.state(&self.endpoints))
    }

    /// The usage a key counted since the last [`flush_usage`](Self::flush_usage), not yet in any
    /// store. A store's total plus this is the key's usage as far as this keyring knows it: the
    /// way to show usage when several replicas add their counts to one store.
    pub fn unflushed_usage(&self, id: KeyId) -> Option<Usage> {
        self.cell_of(id)
            .map(|cell| cell.counted(&self.endpoints, false))
    }

    /// Loads a key's persisted state (at start-up, from a store). Returns whether the key is
    /// here.
    pub fn restore_state(&self, id: KeyId, state: &KeyState) -> bool {
        self.cell_of(id).map(|cell| cell.restore(state)).is_some()
    }

    /// Takes in a store's credit count for the key with this id (from
    /// [`Usage::credits_spent`] of what the store holds, every replica's flushed spending), and
    /// keeps what this keyring spent since its last flush. What a replica calls when it reloads
    /// keys from a shared store, so that its balances come to include the other replicas'
    /// spending. Returns whether the key is here.
    pub fn sync_credits(&self, id: KeyId, stored: &Usage) -> bool {
        let Some(cell) = self.cell_of(id) else {
            return false;
        };
        if let Some(spent) = stored.credits_spent() {
            cell.sync_credits(spent);
        }
        true
    }

    /// Moves every key's usage counted since the last flush into its settled usage, and returns
    /// the deltas of the keys that were used: what a store adds to its totals
    /// (`total = total + delta`), so that several replicas can each flush their own.
    pub fn flush_usage(&self) -> Vec<(KeyId, Usage)> {
        self.keys
            .iter()
            .zip(self.cells.iter())
            .skip(1)
            .filter_map(|(key, cell)| {
                let delta = cell.flush(&self.endpoints);
                // Credits a child's requests spent count as the ancestor's, without requests.
                (delta.total_requests() > 0 || delta.credits_spent().is_some())
                    .then(|| (key.id(), delta))
            })
            .collect()
    }
}
