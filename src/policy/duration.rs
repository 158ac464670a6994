//! The one duration type of the policy: parsed once, where the policy is
//! read, and compared with times as it is (no conversions where rules use it).

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A span of time as a policy writes it (`24h`, `90m`, `1h30m`, `7d`):
/// `maxAge`, `gracePeriod`, `breakGlass.maxDuration`, `violationGrace`.
/// Printed as written ([`std::fmt::Display`]: `24h`, `1h30m`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(TimeDelta);

impl Duration {
    /// Parses a duration as [`parse_duration`] does (the same words and
    /// error). A span too long to add to a time is held as the longest one.
    pub fn parse(s: &str) -> Result<Duration, String> {
        parse_duration(s).map(|d| Duration(TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)))
    }

    pub const fn from_secs(secs: i64) -> Duration {
        Duration(TimeDelta::seconds(secs))
    }

    /// The span, to add to or compare with times.
    pub fn delta(self) -> TimeDelta {
        self.0
    }

    /// Whole seconds (saturating).
    pub fn secs(self) -> i64 {
        self.0.num_seconds()
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// `at` plus this span, or `None` past the last time there is.
    pub fn after(self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        at.checked_add_signed(self.0)
    }
}

/// Parses durations as Kubernetes users write them: `24h`, `90m`, `1h30m`,
/// `7d` (for the policy, [`Duration::parse`]; for flags, this).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("duration {s:?} does not parse ({e}); write e.g. 24h, 90m, 7d"))
}

/// Durations as policies write them: `24h`, `90m`, `1h30m`, `45s`.
impl std::fmt::Display for Duration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0.num_seconds().max(0);
        let (h, m, sec) = (s / 3600, (s / 60) % 60, s % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if sec > 0 || (h == 0 && m == 0) {
            write!(f, "{sec}s")?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        Duration::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_written() {
        for (secs, s) in [(86400, "24h"), (5400, "1h30m"), (90, "1m30s"), (0, "0s"), (604800, "168h")] {
            assert_eq!(Duration::from_secs(secs).to_string(), s);
        }
    }

    #[test]
    fn durations_parse_once_as_users_write_them() {
        // (written, seconds or the start of the error)
        let rows: [(&str, Result<i64, &str>); 6] = [
            ("24h", Ok(86400)),
            (" 1h30m ", Ok(5400)),
            ("7d", Ok(604800)),
            ("45s", Ok(45)),
            ("soon", Err("duration \"soon\" does not parse (")),
            ("", Err("duration \"\" does not parse (")),
        ];
        for (written, want) in rows {
            match (Duration::parse(written), want) {
                (Ok(d), Ok(secs)) => assert_eq!(d.secs(), secs, "{written}"),
                (Err(e), Err(start)) => {
                    assert!(e.starts_with(start) && e.ends_with("; write e.g. 24h, 90m, 7d"), "{written}: {e}")
                }
                (got, _) => panic!("{written}: {got:?}"),
            }
        }
    }

    #[test]
    fn a_span_past_the_end_of_time_does_not_overflow() {
        let d = Duration::parse("100000000years").unwrap();
        let now: DateTime<Utc> = "2026-06-15T12:00:00Z".parse().unwrap();
        assert_eq!(d.after(now), None);
        assert!(d.delta() > TimeDelta::days(365 * 1000));
    }
}
