//! Record times: kept as a [`SystemTime`] until a record is written, and
//! written as RFC 3339 in UTC with microseconds (`2026-11-27T18:39:42.123456Z`).
use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// When something happened, as wall-clock time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Timestamp(pub SystemTime);

impl Timestamp {
    pub(crate) fn now() -> Self {
        Self(SystemTime::now())
    }

    /// Microseconds since the epoch (0 before it).
    pub(crate) fn micros(self) -> i64 {
        self.0
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
    }

    /// Milliseconds from `earlier` to `self`, 0 if `earlier` is later.
    pub(crate) fn ms_since(self, earlier: Self) -> u64 {
        self.0
            .duration_since(earlier.0)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// How long from `earlier` to `self`, zero if `earlier` is later.
    pub(crate) fn since(self, earlier: Self) -> Duration {
        self.0.duration_since(earlier.0).unwrap_or_default()
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Self;
    fn add(self, d: Duration) -> Self {
        Self(self.0 + d)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // humantime panics before the epoch; no record is that old.
        let t = self.0.max(UNIX_EPOCH);
        write!(f, "{}", humantime::format_rfc3339_micros(t))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{text:?} is not an RFC 3339 time")]
pub(crate) struct TimeError {
    text: String,
    #[source]
    source: humantime::TimestampError,
}

impl std::str::FromStr for Timestamp {
    type Err = TimeError;
    fn from_str(s: &str) -> Result<Self, TimeError> {
        humantime::parse_rfc3339_weak(s)
            .map(Self)
            .map_err(|source| TimeError {
                text: s.to_owned(),
                source,
            })
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_micros_round_trip() {
        let t = Timestamp(UNIX_EPOCH + Duration::from_nanos(1_764_268_782_123_456_789));
        let s = t.to_string();
        assert_eq!(s, "2025-11-27T18:39:42.123456Z");
        let back: Timestamp = s.parse().unwrap();
        assert_eq!(back.micros(), t.micros());
        assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{s}\""));
        assert!("yesterday".parse::<Timestamp>().is_err());
        assert_eq!(
            Timestamp(UNIX_EPOCH).to_string(),
            "1970-01-01T00:00:00.000000Z"
        );
    }
}
