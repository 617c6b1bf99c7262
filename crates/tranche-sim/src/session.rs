//! The trading calendar: the configured session's open and close times of day, every weekday
//! (no holidays, no daylight-saving shift: a simulated calendar, documented as such).
//!
//! Invariant: `is_open(t)` is true exactly on `[open, close)` of a weekday session.

use chrono::{Datelike, Duration, NaiveTime, Weekday};
use tranche_domain::Timestamp;

use crate::config::SessionConfig;

/// Session times of day derived from the configured session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calendar {
    open: NaiveTime,
    close: NaiveTime,
    weekends: bool,
}

impl Calendar {
    /// The calendar of `session` (its open and close times of day, UTC).
    pub fn new(session: &SessionConfig) -> Self {
        Self { open: session.open.time(), close: session.close.time(), weekends: session.weekends }
    }

    fn is_weekday(&self, t: Timestamp) -> bool {
        self.weekends || !matches!(t.weekday(), Weekday::Sat | Weekday::Sun)
    }

    fn at(day: Timestamp, time: NaiveTime) -> Timestamp {
        day.date_naive().and_time(time).and_utc()
    }

    /// The regular session is open at `t`.
    pub fn is_open(&self, t: Timestamp) -> bool {
        self.is_weekday(t) && t >= Self::at(t, self.open) && t < Self::at(t, self.close)
    }

    /// The first session open at or after `t`.
    pub fn next_open(&self, t: Timestamp) -> Timestamp {
        let mut day = t;
        for _ in 0..8 {
            let open = Self::at(day, self.open);
            if self.is_weekday(day) && open >= t {
                return open;
            }
            day += Duration::days(1);
        }
        Self::at(day, self.open)
    }

    /// The first session close strictly after `t`.
    pub fn next_close(&self, t: Timestamp) -> Timestamp {
        let mut day = t;
        for _ in 0..8 {
            let close = Self::at(day, self.close);
            if self.is_weekday(day) && close > t {
                return close;
            }
            day += Duration::days(1);
        }
        Self::at(day, self.close)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekday_sessions() {
        let session = SessionConfig::default(); // Monday 2026-03-02 14:30-21:00 UTC
        let cal = Calendar::new(&session);
        assert!(cal.is_open(session.open));
        assert!(cal.is_open(session.start));
        assert!(!cal.is_open(session.close));
        assert_eq!(cal.next_close(session.start), session.close);
        assert_eq!(cal.next_open(session.close), session.open + Duration::days(1));
        let friday_close = session.close + Duration::days(4);
        assert_eq!(cal.next_open(friday_close), session.open + Duration::days(7), "skips the weekend");
        assert!(!cal.is_open(session.open + Duration::days(5) + Duration::hours(1)), "Saturday");
    }
}
