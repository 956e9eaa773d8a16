//! Per-key rate limits: a config value and a pure GCRA state of one timestamp.

use core::time::Duration;

use serde::{Deserialize, Serialize};

use crate::timestamp::Timestamp;

/// A rate-limit config was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// `requests` must be at least 1.
    #[error("rate limit requests must be at least 1")]
    ZeroRequests,
    /// `period_seconds` must be at least 1.
    #[error("rate limit period must be at least 1 second")]
    ZeroPeriod,
    /// `burst` must be at least 1.
    #[error("rate limit burst must be at least 1")]
    ZeroBurst,
}

/// "At most `requests` per `period`, with bursts of up to `burst` at once."
///
/// GCRA (the generic cell rate algorithm, as in `governor`) keeps the theoretical arrival time
/// (TAT) of the next request. A request at `now` conforms when `TAT - tolerance <= now`; then
/// `TAT = max(TAT, now) + interval`. `interval = period / requests`, and `tolerance = interval *
/// (burst - 1)`, so up to `burst` requests may arrive at once and the long-run rate is `requests`
/// per `period`. The state is data the caller stores; time comes in as `now`; nothing sleeps.
///
/// The guarantee, checked by a property test: in any window of one period, at most
/// `requests + burst - 1` requests are admitted (a full burst at the start of the window, then one
/// per interval), and a refused request's [`RetryAfter::at`] is exactly the first instant at which
/// the next request is admitted.
///
/// ```
/// use keygate::{RateLimit, RateLimitState, Timestamp};
/// let limit = RateLimit::per_period(2, 60)?; // burst defaults to 2
/// let mut state = RateLimitState::default();
/// let t0 = Timestamp::from_unix_seconds(1_000);
/// assert!(limit.check(&mut state, t0).is_ok());
/// assert!(limit.check(&mut state, t0).is_ok());
/// let retry = limit.check(&mut state, t0).unwrap_err();
/// assert_eq!(retry.seconds(), 30);
/// # Ok::<(), keygate::RateLimitError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RateLimitSpec", into = "RateLimitSpec")]
pub struct RateLimit {
    requests: u32,
    period_seconds: u32,
    burst: u32,
}

/// The serialized form of a [`RateLimit`]: `{"requests": 100, "period_seconds": 60}`, with an
/// optional `burst` (default: `requests`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Requests allowed per period.
    pub requests: u32,
    /// The period, in whole seconds.
    pub period_seconds: u32,
    /// Requests allowed at once; `requests` if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

impl TryFrom<RateLimitSpec> for RateLimit {
    type Error = RateLimitError;
    fn try_from(spec: RateLimitSpec) -> Result<Self, RateLimitError> {
        let limit = Self::per_period(spec.requests, spec.period_seconds)?;
        match spec.burst {
            Some(burst) => limit.with_burst(burst),
            None => Ok(limit),
        }
    }
}

impl From<RateLimit> for RateLimitSpec {
    fn from(limit: RateLimit) -> Self {
        Self {
            requests: limit.requests,
            period_seconds: limit.period_seconds,
            burst: (limit.burst != limit.requests).then_some(limit.burst),
        }
    }
}

impl RateLimit {
    /// `requests` per `period_seconds`, all of which may be spent at once.
    pub fn per_period(requests: u32, period_seconds: u32) -> Result<Self, RateLimitError> {
        if requests == 0 {
            return Err(RateLimitError::ZeroRequests);
        }
        if period_seconds == 0 {
            return Err(RateLimitError::ZeroPeriod);
        }
        Ok(Self {
            requests,
            period_seconds,
            burst: requests,
        })
    }

    /// The same rate with a different burst size.
    pub fn with_burst(mut self, burst: u32) -> Result<Self, RateLimitError> {
        if burst == 0 {
            return Err(RateLimitError::ZeroBurst);
        }
        self.burst = burst;
        Ok(self)
    }

    /// Requests per period.
    pub fn requests(&self) -> u32 {
        self.requests
    }

    /// The period.
    pub fn period(&self) -> Duration {
        Duration::from_secs(u64::from(self.period_seconds))
    }

    /// Requests allowed at once.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Whether this limit is no looser than `other`: no faster a sustained rate and no larger a
    /// burst, so that in any window it admits no more than `other` would. The rates are compared
    /// exactly, as `requests / period` cross-multiplied in 64 bits.
    ///
    /// ```
    /// use keygate::RateLimit;
    /// let parent = RateLimit::per_period(100, 60)?;
    /// assert!(RateLimit::per_period(50, 60)?.is_within(&parent));
    /// assert!(RateLimit::per_period(100, 120)?.is_within(&parent));
    /// assert!(!RateLimit::per_period(101, 60)?.is_within(&parent));
    /// assert!(!RateLimit::per_period(1, 60)?.with_burst(101)?.is_within(&parent));
    /// # Ok::<(), keygate::RateLimitError>(())
    /// ```
    pub fn is_within(&self, other: &RateLimit) -> bool {
        let this_rate = u64::from(self.requests) * u64::from(other.period_seconds);
        let other_rate = u64::from(other.requests) * u64::from(self.period_seconds);
        this_rate <= other_rate && self.burst <= other.burst
    }

    /// The spacing between requests at the sustained rate, in microseconds, rounded *up*: a
    /// truncated interval would let `requests + 1` through in some windows (3 per second would
    /// space requests 333 333 us apart, and 4 of them fit in one second once the burst is spent).
    /// Rounding up errs on the side of refusing; it is at least 1 us.
    ///
    /// Public, with [`tolerance_micros`](Self::tolerance_micros), for limiters that keep the
    /// state elsewhere (keygate-store's Redis limiter) and must do the same arithmetic.
    pub fn interval_micros(&self) -> i64 {
        let period = i64::from(self.period_seconds) * 1_000_000;
        let requests = i64::from(self.requests);
        // No overflow: period <= u32::MAX * 10^6 < 2^63 - requests.
        ((period + requests - 1) / requests).max(1)
    }

    /// How far ahead of its theoretical arrival time a request may come, in microseconds:
    /// `interval * (burst - 1)`, saturating at `i64::MAX`.
    pub fn tolerance_micros(&self) -> i64 {
        self.interval_micros()
            .saturating_mul(i64::from(self.burst) - 1)
    }

    /// Admits the request at `now` (and records it), or says when to retry. Pure: the outcome
    /// depends only on `self`, `state` and `now`.
    pub fn check(&self, state: &mut RateLimitState, now: Timestamp) -> Result<(), RetryAfter> {
        let interval = self.interval_micros();
        let tolerance = self.tolerance_micros();
        let tat = state.tat.unwrap_or(now).unix_micros();
        let earliest = tat.saturating_sub(tolerance);
        let now_micros = now.unix_micros();
        if earliest > now_micros {
            return Err(RetryAfter::until(
                now,
                Timestamp::from_unix_micros(earliest),
            ));
        }
        // At the end of time the next arrival cannot be recorded: a saturated TAT would stay put
        // and admit every later request, so refuse instead (fail closed).
        let Some(next) = tat.max(now_micros).checked_add(interval) else {
            return Err(RetryAfter::until(now, Timestamp::MAX));
        };
        state.tat = Some(Timestamp::from_unix_micros(next));
        Ok(())
    }
}

/// One key's limiter state: the theoretical arrival time of the next request. Store it beside
/// the key's usage; a fresh state admits a full burst.
///
/// It serializes whatever instant it holds: as RFC 3339 text within years 0000-9999, and as
/// integer microseconds since the epoch beyond them (a state reached with `now` near the end of
/// representable time must still be storable).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitState {
    #[serde(with = "any_instant")]
    tat: Option<Timestamp>,
}

impl RateLimitState {
    /// A state whose next arrival is theoretically due at `tat` (`None`: a fresh state).
    pub(crate) fn at(tat: Option<Timestamp>) -> Self {
        Self { tat }
    }

    /// The theoretical arrival time of the next request, if any request was admitted.
    pub fn tat(&self) -> Option<Timestamp> {
        self.tat
    }
}

/// `Option<Timestamp>` as RFC 3339 text when recordable, else as integer microseconds.
mod any_instant {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::timestamp::Timestamp;

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Instant {
        Micros(i64),
        Text(Timestamp),
    }

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Timestamp>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        value
            .map(|t| {
                if t.is_recordable() {
                    Instant::Text(t)
                } else {
                    Instant::Micros(t.unix_micros())
                }
            })
            .serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Timestamp>, D::Error> {
        Ok(
            Option::<Instant>::deserialize(deserializer)?.map(|instant| match instant {
                Instant::Micros(micros) => Timestamp::from_unix_micros(micros),
                Instant::Text(t) => t,
            }),
        )
    }
}

/// A refused request: when the next one will be admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("rate limit exceeded; retry after {} s", self.seconds())]
pub struct RetryAfter {
    at: Timestamp,
    wait: Duration,
}

impl RetryAfter {
    /// Retry `wait` after `now`.
    pub fn after(now: Timestamp, wait: Duration) -> Self {
        Self {
            at: now.saturating_add(wait),
            wait,
        }
    }

    /// Retry at `at`, refused at `now`: the wait is the exact difference (zero if `at` is not
    /// after `now`). What [`RateLimit::check`] returns, for limiters that keep the state
    /// elsewhere.
    pub fn until(now: Timestamp, at: Timestamp) -> Self {
        let (now, at_micros) = (now.unix_micros(), at.unix_micros());
        // abs_diff, not `-`: with `now` near i64::MIN the difference overflows i64, and
        // overflow checks are on in release builds, so `-` would panic on caller input.
        let wait = if at_micros > now {
            Duration::from_micros(at_micros.abs_diff(now))
        } else {
            Duration::ZERO
        };
        Self { at, wait }
    }

    /// The instant the next request will be admitted.
    pub fn at(&self) -> Timestamp {
        self.at
    }

    /// How long to wait, exactly.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// Whole seconds to wait, rounded up (never 0): the `retry_after` field and `Retry-After`
    /// header.
    pub fn seconds(&self) -> u64 {
        let secs = self.wait.as_secs() + u64::from(self.wait.subsec_nanos() > 0);
        secs.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::Refusal;

    fn at(micros: i64) -> Timestamp {
        Timestamp::from_unix_micros(micros)
    }

    #[test]
    fn a_fresh_state_admits_exactly_one_burst() {
        let limit = RateLimit::per_period(5, 60).unwrap().with_burst(3).unwrap();
        let mut state = RateLimitState::default();
        for _ in 0..3 {
            assert!(limit.check(&mut state, at(0)).is_ok());
        }
        let retry = limit.check(&mut state, at(0)).unwrap_err();
        // interval = 12 s; after 3 at t=0 the TAT is 36 s and the tolerance 24 s.
        assert_eq!(retry.at(), Timestamp::from_unix_seconds(12));
        assert_eq!(retry.wait(), Duration::from_secs(12));
        assert_eq!(retry.seconds(), 12);
    }

    #[test]
    fn retry_at_is_the_first_admitted_instant() {
        let limit = RateLimit::per_period(1, 60).unwrap();
        let mut state = RateLimitState::default();
        limit.check(&mut state, at(0)).unwrap();
        let retry = limit.check(&mut state, at(1)).unwrap_err();
        assert_eq!(retry.at(), Timestamp::from_unix_seconds(60));
        let before = retry.at().unix_micros() - 1;
        assert!(limit.check(&mut state.clone(), at(before)).is_err());
        assert!(limit.check(&mut state, retry.at()).is_ok());
    }

    #[test]
    fn a_refusal_does_not_change_the_state() {
        let limit = RateLimit::per_period(1, 1).unwrap();
        let mut state = RateLimitState::default();
        limit.check(&mut state, at(0)).unwrap();
        let saved = state;
        assert!(limit.check(&mut state, at(10)).is_err());
        assert_eq!(state, saved);
    }

    #[test]
    fn interval_rounds_up_so_no_window_admits_an_extra_request() {
        // 3 per second: a truncated interval (333 333 us) admits 6 in the one-second window
        // [0, 1 s) (a burst of 3, then at 333 333, 666 666 and 999 999 us); rounded up, 5.
        let limit = RateLimit::per_period(3, 1).unwrap();
        assert_eq!(limit.interval_micros(), 333_334);
        let mut state = RateLimitState::default();
        let admitted = (0..1_000_000)
            .filter(|&t| limit.check(&mut state, at(t)).is_ok())
            .count();
        assert_eq!(admitted, 5);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let limit = RateLimit::per_period(1, 10).unwrap();
        let mut state = RateLimitState::default();
        limit.check(&mut state, at(0)).unwrap();
        let retry = limit.check(&mut state, at(8_500_000)).unwrap_err();
        assert_eq!(retry.wait(), Duration::from_micros(1_500_000));
        assert_eq!(retry.seconds(), 2);
        let retry = limit.check(&mut state, at(9_999_999)).unwrap_err();
        assert_eq!(retry.seconds(), 1, "never 0");
        assert_eq!(
            serde_json::to_string(&retry.body(&crate::catalog::Catalog::EMPTY)).unwrap(),
            r#"{"error":"Rate limit exceeded","retry_after":1}"#
        );
        assert_eq!(retry.status(), 429);
    }

    #[test]
    fn extreme_instants_fail_closed_and_stay_storable() {
        let limit = RateLimit::per_period(1, u32::MAX).unwrap();
        let mut state = RateLimitState::default();
        // At the end of time the arrival cannot be recorded: refused, and the state unchanged
        // (a saturated TAT would admit every later request).
        assert!(limit.check(&mut state, Timestamp::MAX).is_err());
        assert_eq!(state, RateLimitState::default());
        limit.check(&mut state, at(0)).unwrap();
        let retry = limit.check(&mut state, at(i64::MIN)).unwrap_err();
        assert!(retry.wait() > Duration::from_secs(1 << 40));

        // One request per microsecond, a burst of four billion: near the end of time only as
        // many requests as there are microseconds left are admitted, then none.
        let many = RateLimit::per_period(u32::MAX, 1).unwrap();
        assert_eq!(many.interval_micros(), 1);
        let mut state = RateLimitState::default();
        let near_end = at(i64::MAX - 10);
        let admitted = (0..100)
            .filter(|_| many.check(&mut state, near_end).is_ok())
            .count();
        assert_eq!(admitted, 10);
        assert!(many.check(&mut state, Timestamp::MAX).is_err());
        // Past year 9999 the state still serializes (as microseconds), and comes back the same.
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(json, format!(r#"{{"tat":{}}}"#, i64::MAX));
        assert_eq!(
            serde_json::from_str::<RateLimitState>(&json).unwrap(),
            state
        );
        let mut early = RateLimitState::default();
        many.check(&mut early, at(1_000_000)).unwrap();
        let json = serde_json::to_string(&early).unwrap();
        assert_eq!(json, r#"{"tat":"1970-01-01T00:00:01.000001Z"}"#);
        assert_eq!(
            serde_json::from_str::<RateLimitState>(&json).unwrap(),
            early
        );
    }

    #[test]
    fn config_errors_and_serde() {
        assert_eq!(
            RateLimit::per_period(0, 1),
            Err(RateLimitError::ZeroRequests)
        );
        assert_eq!(RateLimit::per_period(1, 0), Err(RateLimitError::ZeroPeriod));
        assert_eq!(
            RateLimit::per_period(1, 1).unwrap().with_burst(0),
            Err(RateLimitError::ZeroBurst)
        );
        let limit: RateLimit =
            serde_json::from_str(r#"{"requests": 100, "period_seconds": 60}"#).unwrap();
        assert_eq!(limit.burst(), 100);
        assert_eq!(
            serde_json::to_string(&limit.with_burst(10).unwrap()).unwrap(),
            r#"{"requests":100,"period_seconds":60,"burst":10}"#
        );
        assert!(
            serde_json::from_str::<RateLimit>(r#"{"requests": 0, "period_seconds": 60}"#).is_err()
        );
        assert!(
            serde_json::from_str::<RateLimit>(r#"{"requests": 1, "period_seconds": 1, "x": 1}"#)
                .is_err()
        );
    }
}
