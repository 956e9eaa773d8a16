//! Per-key usage: what a server counts for auditing and shows on a key's usage page (IdentityCall's API:
//! "last used timestamp, total requests, requests by endpoint, error rates").
//!
//! [`Usage`] is a plain record: the server calls [`Usage::record`] once per request (a pure update,
//! no clock: `now` is an argument) and stores the record with serde. Its memory is bounded
//! whatever the traffic: at most [`Usage::MAX_ENDPOINTS`] endpoint names are kept, each at most
//! [`Usage::MAX_ENDPOINT_LEN`] bytes, and everything beyond falls into [`Usage::OTHER`], so a
//! client requesting random paths cannot grow it without bound. Counters saturate instead of
//! wrapping.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::credits::CreditsSpent;
use crate::timestamp::Timestamp;

/// One key's usage counters.
///
/// Errors are counted by status class: `"4xx"` for 400-499 and `"5xx"` for 500-599, the split a
/// dashboard shows (client mistakes against server faults). A status of 600 or above is not valid
/// HTTP; it is counted as an error under `"other"` rather than dropped. Statuses below 400 are not
/// errors.
///
/// ```
/// use keygate::{Timestamp, Usage};
/// let mut usage = Usage::default();
/// let now = Timestamp::from_unix_seconds(1_000);
/// usage.record("GET /recordings", 200, now);
/// usage.record("GET /recordings", 200, now);
/// usage.record("POST /recordings", 403, now);
/// assert_eq!(usage.total_requests(), 3);
/// assert_eq!(usage.requests_for("GET /recordings"), 2);
/// assert_eq!(usage.errors_in_class("4xx"), 1);
/// assert_eq!(usage.last_used_at(), Some(now));
/// assert!((usage.error_rate() - 1.0 / 3.0).abs() < 1e-12);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    #[serde(default)]
    last_used_at: Option<Timestamp>,
    #[serde(default)]
    total_requests: u64,
    #[serde(default)]
    requests_by_endpoint: BTreeMap<String, u64>,
    #[serde(default)]
    errors_by_status_class: BTreeMap<String, u64>,
    /// Credits spent in the current period, for a key with [`Credits`](crate::Credits): kept
    /// here so that a store sums it across replicas with the other counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    credits: Option<CreditsSpent>,
}

impl Usage {
    /// How many distinct endpoint names are kept; requests to further endpoints count under
    /// [`Usage::OTHER`].
    pub const MAX_ENDPOINTS: usize = 256;
    /// The longest endpoint name kept, in bytes; longer names count under [`Usage::OTHER`].
    pub const MAX_ENDPOINT_LEN: usize = 200;
    /// The bucket for endpoints past the limits, and for statuses of 600 and above.
    pub const OTHER: &'static str = "other";

    /// Counts one request to `endpoint` answered with `status` at `now`.
    ///
    /// Pass the route (`GET /recordings/:id`), not the raw path: the endpoint map is meant to
    /// have a handful of entries, and the bound exists only to survive callers that forget.
    /// `last_used_at` never moves backwards, so records merged out of order stay right.
    pub fn record(&mut self, endpoint: &str, status: u16, now: Timestamp) {
        self.last_used_at = Some(self.last_used_at.map_or(now, |last| last.max(now)));
        self.total_requests = self.total_requests.saturating_add(1);

        let known = self.requests_by_endpoint.contains_key(endpoint);
        let has_room = self.requests_by_endpoint.len() < Self::MAX_ENDPOINTS;
        let bucket = if known || (has_room && endpoint.len() <= Self::MAX_ENDPOINT_LEN) {
            endpoint
        } else {
            Self::OTHER
        };
        bump(&mut self.requests_by_endpoint, bucket);

        if let Some(class) = status_class(status) {
            bump(&mut self.errors_by_status_class, class);
        }
    }

    /// The latest request's time, if any was recorded.
    pub fn last_used_at(&self) -> Option<Timestamp> {
        self.last_used_at
    }

    /// All requests counted.
    pub fn total_requests(&self) -> u64 {
        self.total_requests
    }

    /// Credits spent, and in which period, if the key ever spent any.
    pub fn credits_spent(&self) -> Option<CreditsSpent> {
        self.credits
    }

    /// The same usage with this credit count.
    pub(crate) fn set_credits_spent(&mut self, spent: Option<CreditsSpent>) {
        self.credits = spent;
    }

    /// Requests per endpoint name.
    pub fn requests_by_endpoint(&self) -> &BTreeMap<String, u64> {
        &self.requests_by_endpoint
    }

    /// Requests to one endpoint (0 if never seen).
    pub fn requests_for(&self, endpoint: &str) -> u64 {
        self.requests_by_endpoint
            .get(endpoint)
            .copied()
            .unwrap_or(0)
    }

    /// Error responses per status class (`"4xx"`, `"5xx"`, `"other"`).
    pub fn errors_by_status_class(&self) -> &BTreeMap<String, u64> {
        &self.errors_by_status_class
    }

    /// Errors in one class (0 if none).
    pub fn errors_in_class(&self, class: &str) -> u64 {
        self.errors_by_status_class.get(class).copied().unwrap_or(0)
    }

    /// All error responses counted.
    pub fn total_errors(&self) -> u64 {
        self.errors_by_status_class
            .values()
            .fold(0u64, |sum, n| sum.saturating_add(*n))
    }

    /// Errors as a fraction of requests, in `0.0..=1.0`; `0.0` before the first request.
    pub fn error_rate(&self) -> f64 {
        if self.total_requests == 0 {
            return 0.0;
        }
        // A record loaded from storage may claim more errors than requests; never report > 1.
        #[expect(
            clippy::cast_precision_loss,
            reason = "a rate needs no more than f64's 53 bits of precision"
        )]
        let rate = self.total_errors() as f64 / self.total_requests as f64;
        rate.min(1.0)
    }
}

impl Usage {
    /// A usage from counters (zero counts are left out), as the keyring's atomic cells report it.
    pub(crate) fn from_counts<'a>(
        last_used_at: Option<Timestamp>,
        total_requests: u64,
        by_endpoint: impl IntoIterator<Item = (&'a str, u64)>,
        by_error_class: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> Self {
        let collect = |counts: &mut dyn Iterator<Item = (&'a str, u64)>| {
            counts
                .filter(|(_, n)| *n > 0)
                .map(|(name, n)| (name.to_owned(), n))
                .collect()
        };
        Self {
            last_used_at: last_used_at.filter(|_| total_requests > 0),
            total_requests,
            requests_by_endpoint: collect(&mut by_endpoint.into_iter()),
            errors_by_status_class: collect(&mut by_error_class.into_iter()),
            credits: None,
        }
    }

    /// Adds `other`'s counts to these (a delta flushed from the counters, or from another
    /// replica), keeping the later `last_used_at` and the bound on endpoint names.
    ///
    /// ```
    /// use keygate::{Timestamp, Usage};
    /// let (t1, t2) = (Timestamp::from_unix_seconds(1), Timestamp::from_unix_seconds(2));
    /// let mut total = Usage::default();
    /// total.record("GET /a", 200, t2);
    /// let mut delta = Usage::default();
    /// delta.record("GET /a", 500, t1);
    /// total.absorb(&delta);
    /// assert_eq!((total.total_requests(), total.requests_for("GET /a")), (2, 2));
    /// assert_eq!((total.errors_in_class("5xx"), total.last_used_at()), (1, Some(t2)));
    /// ```
    pub fn absorb(&mut self, other: &Usage) {
        self.last_used_at = match (self.last_used_at, other.last_used_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.total_requests = self.total_requests.saturating_add(other.total_requests);
        for (name, count) in &other.requests_by_endpoint {
            let known = self.requests_by_endpoint.contains_key(name);
            let bucket = if known || self.requests_by_endpoint.len() < Self::MAX_ENDPOINTS {
                name.as_str()
            } else {
                Self::OTHER
            };
            add(&mut self.requests_by_endpoint, bucket, *count);
        }
        for (class, count) in &other.errors_by_status_class {
            add(&mut self.errors_by_status_class, class, *count);
        }
        if let Some(other) = &other.credits {
            self.credits.get_or_insert_default().absorb(other);
        }
    }
}

/// Adds `count` to `map[name]`, saturating.
fn add(map: &mut BTreeMap<String, u64>, name: &str, count: u64) {
    match map.get_mut(name) {
        Some(total) => *total = total.saturating_add(count),
        None => {
            map.insert(name.to_owned(), count);
        }
    }
}

/// The error class of a status, or `None` for a non-error status.
fn status_class(status: u16) -> Option<&'static str> {
    match status {
        0..=399 => None,
        400..=499 => Some("4xx"),
        500..=599 => Some("5xx"),
        _ => Some(Usage::OTHER),
    }
}

/// Adds one to `map[name]`, saturating.
fn bump(map: &mut BTreeMap<String, u64>, name: &str) {
    match map.get_mut(name) {
        Some(count) => *count = count.saturating_add(1),
        None => {
            map.insert(name.to_owned(), 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_unix_seconds(100);

    #[test]
    fn classes_split_client_and_server_errors() {
        let mut usage = Usage::default();
        for status in [200, 204, 301, 399, 400, 401, 499, 500, 503, 599, 600, 999] {
            usage.record("GET /x", status, NOW);
        }
        assert_eq!(usage.errors_in_class("4xx"), 3);
        assert_eq!(usage.errors_in_class("5xx"), 3);
        assert_eq!(usage.errors_in_class("other"), 2);
        assert_eq!(usage.total_errors(), 8);
        assert_eq!(usage.total_requests(), 12);
    }

    #[test]
    fn endpoints_are_bounded() {
        let mut usage = Usage::default();
        for i in 0..1_000 {
            usage.record(&format!("GET /{i}"), 200, NOW);
        }
        usage.record(&"x".repeat(Usage::MAX_ENDPOINT_LEN + 1), 200, NOW);
        assert_eq!(usage.requests_by_endpoint().len(), Usage::MAX_ENDPOINTS + 1);
        assert_eq!(usage.requests_for(Usage::OTHER), 1_000 - 256 + 1);
        // A known endpoint keeps counting after the map is full.
        usage.record("GET /0", 200, NOW);
        assert_eq!(usage.requests_for("GET /0"), 2);
    }

    #[test]
    fn counters_saturate_and_time_never_goes_back() {
        let mut usage: Usage = serde_json::from_str(
            r#"{"total_requests": 18446744073709551615,
                "requests_by_endpoint": {"a": 18446744073709551615},
                "errors_by_status_class": {"4xx": 18446744073709551615, "5xx": 5}}"#,
        )
        .unwrap();
        usage.record("a", 404, NOW);
        assert_eq!(usage.total_requests(), u64::MAX);
        assert_eq!(usage.requests_for("a"), u64::MAX);
        assert_eq!(usage.total_errors(), u64::MAX);
        assert!(usage.error_rate() <= 1.0);
        usage.record("a", 200, Timestamp::from_unix_seconds(50));
        assert_eq!(usage.last_used_at(), Some(NOW));
    }

    #[test]
    fn empty_usage_has_zero_error_rate() {
        assert_eq!(Usage::default().error_rate(), 0.0);
    }
}
