//! The rate limiter's guarantees, over random configs and arrival patterns.
//!
//! - In any window of one period, at most `requests + burst - 1` requests are admitted (a full
//!   burst, then one per interval), and at one instant at most `burst`.
//! - A refused request's `retry_after` is exact: the next request is refused a microsecond before
//!   `RetryAfter::at` and admitted at it; `seconds()` is the wait rounded up to whole seconds.
//! - A refusal leaves the state as it was, and requests spaced at the sustained rate are never
//!   refused.
//!
//! The case count follows `PROPTEST_CASES` (default 256).

use std::time::Duration;

use keygate::{RateLimit, RateLimitState, Timestamp};
use proptest::prelude::*;

fn limit() -> impl Strategy<Value = RateLimit> {
    (1u32..=20, 1u32..=120, 1u32..=25).prop_filter_map(
        "valid config",
        |(requests, period, burst)| {
            RateLimit::per_period(requests, period)
                .and_then(|l| l.with_burst(burst))
                .ok()
        },
    )
}

/// When the next request arrives.
#[derive(Debug, Clone, Copy)]
enum Gap {
    /// This many microseconds after the previous one.
    After(u64),
    /// As soon as allowed: at the last refusal's `RetryAfter::at`, or at once after an admission.
    /// The greedy client is the one that finds the limiter's edges.
    Greedy,
}

/// Arrivals: greedy runs, bursts, short and long gaps.
fn gaps() -> impl Strategy<Value = Vec<Gap>> {
    prop::collection::vec(
        prop_oneof![
            4 => Just(Gap::Greedy),
            2 => Just(Gap::After(0)),
            3 => (0u64..2_000_000).prop_map(Gap::After),
            2 => (0u64..30_000_000).prop_map(Gap::After),
            1 => (0u64..300_000_000).prop_map(Gap::After),
        ],
        1..300,
    )
}

fn micros(t: Timestamp) -> i64 {
    t.unix_micros()
}

proptest! {
    #[test]
    fn no_window_of_one_period_admits_more_than_requests_plus_burst(
        limit in limit(),
        gaps in gaps(),
        start in -1_000_000_000_000i64..1_000_000_000_000,
    ) {
        let mut state = RateLimitState::default();
        let mut now = start;
        let mut admitted: Vec<i64> = Vec::new();
        let mut retry_at: Option<i64> = None;
        for gap in gaps {
            now = match (gap, retry_at) {
                (Gap::After(micros), _) => now + i64::try_from(micros).unwrap_or(i64::MAX),
                (Gap::Greedy, Some(next)) => next,
                (Gap::Greedy, None) => now,
            };
            let at = Timestamp::from_unix_micros(now);
            retry_at = None;
            let before = state;
            match limit.check(&mut state, at) {
                Ok(()) => admitted.push(now),
                Err(retry) => {
                    retry_at = Some(micros(retry.at()));
                    prop_assert_eq!(state, before, "a refusal changed the state");
                    // Exact: refused just before `at`, admitted at it.
                    let next = micros(retry.at());
                    prop_assert!(next > now);
                    prop_assert_eq!(retry.wait(), Duration::from_micros((next - now).unsigned_abs()));
                    let just_before = Timestamp::from_unix_micros(next - 1);
                    prop_assert!(limit.check(&mut state.clone(), just_before).is_err());
                    prop_assert!(limit.check(&mut state.clone(), retry.at()).is_ok());
                    // Whole seconds, rounded up.
                    let wait = retry.wait().as_micros();
                    prop_assert_eq!(u128::from(retry.seconds()), wait.div_ceil(1_000_000));
                    prop_assert!(retry.seconds() >= 1);
                }
            }
        }
        let period = i64::try_from(limit.period().as_micros()).unwrap_or(i64::MAX);
        let most = usize::try_from(limit.requests() + limit.burst() - 1).unwrap_or(usize::MAX);
        let burst = usize::try_from(limit.burst()).unwrap_or(usize::MAX);
        // Every maximal window starts at an admitted request; count [t, t + period).
        let mut end = 0;
        for (i, &t) in admitted.iter().enumerate() {
            while end < admitted.len() && admitted.get(end).is_some_and(|&u| u < t + period) {
                end += 1;
            }
            prop_assert!(end - i <= most, "{} admitted in one period from {t}; at most {most}", end - i);
            let same_instant = admitted.iter().skip(i).take_while(|&&u| u == t).count();
            prop_assert!(same_instant <= burst);
        }
    }

    #[test]
    fn requests_at_the_sustained_rate_are_never_refused(
        limit in limit(),
        count in 1usize..200,
        slack in prop::collection::vec(0u64..1_000_000, 200),
    ) {
        // The interval, rounded up as the limiter does.
        let period = limit.period().as_micros();
        let interval = u64::try_from(period.div_ceil(u128::from(limit.requests()))).unwrap_or(u64::MAX);
        let mut state = RateLimitState::default();
        let mut now: u64 = 1_000_000_000;
        for extra in slack.into_iter().take(count) {
            let at = Timestamp::from_unix_micros(i64::try_from(now).unwrap_or(i64::MAX));
            prop_assert!(limit.check(&mut state, at).is_ok(), "refused at the sustained rate");
            now += interval + extra;
        }
    }

    #[test]
    fn a_fresh_state_admits_exactly_one_burst_at_once(limit in limit(), t in any::<i32>()) {
        let mut state = RateLimitState::default();
        let at = Timestamp::from_unix_seconds(i64::from(t));
        let admitted = (0..limit.burst() + 5)
            .filter(|_| limit.check(&mut state, at).is_ok())
            .count();
        prop_assert_eq!(admitted, usize::try_from(limit.burst()).unwrap_or(usize::MAX));
    }
}
