//! Instants, always passed in by the caller: keygate never reads a clock.
//!
//! A [`Timestamp`] is a count of microseconds since the Unix epoch in an `i64`: one machine word
//! that compares in constant time, fine enough for rate limiting, wide enough for any date an RFC
//! 3339 string can hold. Records show it as RFC 3339 (`2026-04-15T10:00:00Z`), as the seeds do.

use core::fmt;
use core::str::FromStr;
use core::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const MICROS_PER_SEC: i64 = 1_000_000;

/// A text timestamp was not RFC 3339, or lies outside the years 0000-9999.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp {input:?}: expected RFC 3339, e.g. 2026-04-15T10:00:00Z")]
pub struct TimestampError {
    input: String,
}

/// An instant, in microseconds since 1970-01-01T00:00:00Z.
///
/// ```
/// use keygate::Timestamp;
/// use std::time::Duration;
/// let t: Timestamp = "2026-04-15T10:00:00Z".parse()?;
/// assert_eq!(t.unix_seconds(), 1_776_247_200);
/// assert_eq!((t + Duration::from_secs(60)).to_string(), "2026-04-15T10:01:00Z");
/// # Ok::<(), keygate::TimestampError>(())
/// ```
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);
    /// The latest representable instant; adding past it saturates here.
    pub const MAX: Timestamp = Timestamp(i64::MAX);
    /// The latest instant RFC 3339 can write, 9999-12-31T23:59:59.999999Z: the latest a stored
    /// record may hold.
    pub const LATEST_RECORDABLE: Timestamp = Timestamp(253_402_300_799_999_999);
    /// The earliest instant RFC 3339 can write, 0000-01-01T00:00:00Z.
    pub const EARLIEST_RECORDABLE: Timestamp = Timestamp(-62_167_219_200_000_000);

    /// From whole seconds since the epoch.
    pub const fn from_unix_seconds(seconds: i64) -> Self {
        Self(seconds.saturating_mul(MICROS_PER_SEC))
    }

    /// From microseconds since the epoch.
    pub const fn from_unix_micros(micros: i64) -> Self {
        Self(micros)
    }

    /// From a [`std::time::SystemTime`], for callers that read the system clock themselves.
    /// Instants outside the representable range saturate.
    pub fn from_system_time(time: std::time::SystemTime) -> Self {
        match time.duration_since(std::time::UNIX_EPOCH) {
            Ok(after) => Self(i64::try_from(after.as_micros()).unwrap_or(i64::MAX)),
            Err(before) => Self(
                i64::try_from(before.duration().as_micros())
                    .map(|m| -m)
                    .unwrap_or(i64::MIN),
            ),
        }
    }

    /// Whole seconds since the epoch, rounded towards minus infinity.
    pub const fn unix_seconds(self) -> i64 {
        self.0.div_euclid(MICROS_PER_SEC)
    }

    /// Microseconds since the epoch.
    pub const fn unix_micros(self) -> i64 {
        self.0
    }

    /// Whether a record can store this instant: whether it lies within RFC 3339's years.
    ///
    /// ```
    /// use keygate::Timestamp;
    /// assert!(Timestamp::LATEST_RECORDABLE.is_recordable());
    /// assert!(!Timestamp::MAX.is_recordable());
    /// assert_eq!(Timestamp::LATEST_RECORDABLE.to_string(), "9999-12-31T23:59:59.999999Z");
    /// ```
    pub const fn is_recordable(self) -> bool {
        self.0 >= Self::EARLIEST_RECORDABLE.0 && self.0 <= Self::LATEST_RECORDABLE.0
    }

    /// `self + duration` with the duration rounded *up* to the next microsecond, saturating at
    /// [`Timestamp::MAX`]: a positive duration always moves the instant (a key with a 1 ns time
    /// to live is not dead at birth).
    pub fn saturating_add_ceil(self, duration: Duration) -> Self {
        let micros = duration.as_nanos().div_ceil(1_000);
        Self(
            self.0
                .saturating_add(i64::try_from(micros).unwrap_or(i64::MAX)),
        )
    }

    /// `self + duration`, saturating at [`Timestamp::MAX`].
    pub fn saturating_add(self, duration: Duration) -> Self {
        let micros = i64::try_from(duration.as_micros()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(micros))
    }

    /// `self - duration`, saturating at the earliest representable instant.
    pub fn saturating_sub(self, duration: Duration) -> Self {
        let micros = i64::try_from(duration.as_micros()).unwrap_or(i64::MAX);
        Self(self.0.saturating_sub(micros))
    }

    /// How long after `earlier` this is; zero if it is not after it.
    pub fn duration_since(self, earlier: Timestamp) -> Duration {
        let micros = self.0.saturating_sub(earlier.0);
        Duration::from_micros(u64::try_from(micros).unwrap_or(0))
    }

    fn to_datetime(self) -> Option<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000).ok()
    }
}

impl core::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;
    /// Saturating, like [`Timestamp::saturating_add`]: a far-future expiry never wraps into the past.
    fn add(self, rhs: Duration) -> Timestamp {
        self.saturating_add(rhs)
    }
}

impl core::ops::Sub<Duration> for Timestamp {
    type Output = Timestamp;
    /// Saturating, like [`Timestamp::saturating_sub`].
    fn sub(self, rhs: Duration) -> Timestamp {
        self.saturating_sub(rhs)
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(s: &str) -> Result<Self, TimestampError> {
        let error = || TimestampError {
            input: s.chars().take(64).collect(),
        };
        let parsed = OffsetDateTime::parse(s, &Rfc3339).map_err(|_| error())?;
        // Sub-microsecond digits are dropped: truncation, never rounding up past an expiry.
        let micros = parsed.unix_timestamp_nanos().div_euclid(1_000);
        i64::try_from(micros).map(Self).map_err(|_| error())
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC, with fractional seconds only when there are any.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(dt) = self.to_datetime() else {
            return write!(f, "@{}us", self.0);
        };
        match dt.format(&Rfc3339) {
            Ok(text) => f.write_str(&text),
            Err(_) => write!(f, "@{}us", self.0),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = self
            .to_datetime()
            .and_then(|dt| dt.format(&Rfc3339).ok())
            .ok_or_else(|| serde::ser::Error::custom("timestamp outside RFC 3339's years"))?;
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip_including_fractions_and_offsets() {
        let t: Timestamp = "2024-05-01T00:00:00.000000Z".parse().unwrap();
        assert_eq!(t.to_string(), "2024-05-01T00:00:00Z");
        let t: Timestamp = "2026-04-15T12:00:00+02:00".parse().unwrap();
        assert_eq!(t.to_string(), "2026-04-15T10:00:00Z");
        let t: Timestamp = "2026-04-15T10:00:00.25Z".parse().unwrap();
        assert_eq!(t.to_string(), "2026-04-15T10:00:00.25Z");
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-04-15 10:00:00",
            "2026-04-15",
        ] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<Timestamp>("12").is_err());
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Timestamp::MAX + Duration::from_secs(1), Timestamp::MAX);
        assert_eq!(
            Timestamp::from_unix_seconds(10).duration_since(Timestamp::from_unix_seconds(20)),
            Duration::ZERO
        );
    }
}
