//! The trading calendar: one session a day, opening at the configured open's time of day and
//! lasting as long as the configured session (close − open, at most a day), on weekdays or on
//! every day, except the configured holidays, and shorter on the configured early closes; with
//! `us_daylight_saving`, an hour earlier in UTC on the days US daylight saving time is in force
//! (else no shift: a calendar fixed in UTC).
//!
//! A session is anchored at its open: the session that opens at 20:00 UTC and lasts eight hours
//! closes at 04:00 UTC the next day, and "weekday" is judged by the day it opens. So a session
//! may cross midnight, and a calendar built around any instant of any day is open at that
//! instant.
//!
//! Invariants: `is_open(t)` is true exactly on `[open_k, open_k + length)` of a session `k`
//! whose open falls on a trading day; `next_open(t) >= t`; `next_close(t) > t`; when open,
//! `next_close(t) < next_open(t)` unless sessions tile the whole day.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use tranche_domain::Timestamp;

use crate::config::SessionConfig;

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// How many days ahead the next session is looked for (a weekend next to holidays is at most
/// four days; a calendar of nothing but holidays is given up on after these).
const SEARCH_DAYS: i64 = 15;

/// The daily sessions derived from the configured session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    /// The open of one session (any session: the others are whole days away).
    anchor: Timestamp,
    /// How long a session lasts, in milliseconds (1 to a day).
    length_ms: i64,
    /// Sessions on Saturdays and Sundays too.
    weekends: bool,
    /// Days without a session (the UTC date of the open).
    holidays: BTreeSet<NaiveDate>,
    /// Shorter sessions: the date of the open and the session's length in milliseconds.
    early: BTreeMap<NaiveDate, i64>,
    /// Sessions an hour earlier in UTC while US daylight saving time is in force.
    daylight_saving: bool,
}

/// The second Sunday of March and the first Sunday of November of `year`: US daylight saving
/// time runs from the first (at 02:00 local) to the second.
fn us_dst_bounds(year: i32) -> Option<(NaiveDate, NaiveDate)> {
    let sunday_on_or_after = |month: u32, day: u32| {
        let d = NaiveDate::from_ymd_opt(year, month, day)?;
        Some(d + Duration::days(i64::from((7 - d.weekday().num_days_from_sunday()) % 7)))
    };
    Some((sunday_on_or_after(3, 8)?, sunday_on_or_after(11, 1)?))
}

/// US daylight saving time is in force in New York at `t` (from 02:00 EST on the second Sunday
/// of March, 07:00 UTC, to 02:00 EDT on the first Sunday of November, 06:00 UTC).
pub fn us_eastern_dst(t: Timestamp) -> bool {
    let Some((start, end)) = us_dst_bounds(t.year()) else { return false };
    let at = |date: NaiveDate, hour: u32| date.and_hms_opt(hour, 0, 0).map(|n| n.and_utc());
    match (at(start, 7), at(end, 6)) {
        (Some(from), Some(until)) => t >= from && t < until,
        _ => false,
    }
}

impl Calendar {
    /// The calendar of `session`: daily sessions at its open's time of day, lasting
    /// `close - open` (clamped to between a millisecond and a day; `Sim::new` refuses anything
    /// outside that range before a calendar is built).
    pub fn new(session: &SessionConfig) -> Self {
        let length_ms = (session.close - session.open).num_milliseconds().clamp(1, DAY_MS);
        let early = session
            .early_closes
            .iter()
            .map(|e| (e.date, (i64::from(e.minutes) * 60_000).clamp(1, length_ms)))
            .collect();
        Self {
            anchor: session.open,
            length_ms,
            weekends: session.weekends,
            holidays: session.holidays.iter().copied().collect(),
            early,
            daylight_saving: session.us_daylight_saving,
        }
    }

    /// Whether a session opens on the day of `open`.
    fn trades_on(&self, open: Timestamp) -> bool {
        (self.weekends || !matches!(open.weekday(), Weekday::Sat | Weekday::Sun))
            && !self.holidays.contains(&open.date_naive())
    }

    /// The open of session `k` (session 0 opens at the anchor, in standard time): an hour
    /// earlier while daylight saving time is in force, when the calendar follows it.
    fn open_of(&self, k: i64) -> Timestamp {
        let offset = Duration::milliseconds(k.saturating_mul(DAY_MS));
        let standard = self.anchor.checked_add_signed(offset).unwrap_or(if k < 0 {
            Timestamp::MIN_UTC
        } else {
            Timestamp::MAX_UTC
        });
        if self.daylight_saving && us_eastern_dst(standard) {
            standard - Duration::hours(1)
        } else {
            standard
        }
    }

    fn close_of(&self, k: i64) -> Timestamp {
        let open = self.open_of(k);
        let length = self.early.get(&open.date_naive()).copied().unwrap_or(self.length_ms);
        open.checked_add_signed(Duration::milliseconds(length)).unwrap_or(Timestamp::MAX_UTC)
    }

    /// The index of the last session that opens at or before `t` (the next one may open up to
    /// an hour before its standard-time open).
    fn session_at_or_before(&self, t: Timestamp) -> i64 {
        let k = (t - self.anchor).num_milliseconds().div_euclid(DAY_MS);
        if self.open_of(k + 1) <= t {
            k + 1
        } else {
            k
        }
    }

    /// The regular session is open at `t`.
    pub fn is_open(&self, t: Timestamp) -> bool {
        let k = self.session_at_or_before(t);
        self.trades_on(self.open_of(k)) && t < self.close_of(k)
    }

    /// The first session open at or after `t`.
    pub fn next_open(&self, t: Timestamp) -> Timestamp {
        let last = self.session_at_or_before(t);
        let first = if self.open_of(last) >= t { last } else { last + 1 };
        (first..first + SEARCH_DAYS)
            .map(|k| self.open_of(k))
            .find(|&open| self.trades_on(open))
            .unwrap_or(self.open_of(first))
    }

    /// The sessions (open, close) whose open falls in `[from, to)`, oldest first (at most
    /// `limit` of them).
    pub fn sessions_between(&self, from: Timestamp, to: Timestamp, limit: usize) -> Vec<(Timestamp, Timestamp)> {
        let first = self.session_at_or_before(from);
        (first..)
            .map(|k| (k, self.open_of(k)))
            .skip_while(|&(_, open)| open < from)
            .take_while(|&(_, open)| open < to && open < Timestamp::MAX_UTC)
            .filter(|&(_, open)| self.trades_on(open))
            .take(limit)
            .map(|(k, open)| (open, self.close_of(k)))
            .collect()
    }

    /// The first session close strictly after `t`.
    pub fn next_close(&self, t: Timestamp) -> Timestamp {
        let last = self.session_at_or_before(t);
        (last..=last + SEARCH_DAYS)
            .find(|&k| self.trades_on(self.open_of(k)) && self.close_of(k) > t)
            .map_or_else(|| self.close_of(last + 1), |k| self.close_of(k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn weekday_sessions() {
        let session = SessionConfig::default(); // Monday 2026-03-02 14:30-21:00 UTC
        let cal = Calendar::new(&session);
        assert!(cal.is_open(session.open));
        assert!(cal.is_open(session.start));
        assert!(!cal.is_open(session.close));
        assert!(!cal.is_open(session.open - Duration::milliseconds(1)));
        assert_eq!(cal.next_close(session.start), session.close);
        assert_eq!(cal.next_open(session.open), session.open, "an open at t counts");
        assert_eq!(cal.next_open(session.close), session.open + Duration::days(1));
        let friday_close = session.close + Duration::days(4);
        assert_eq!(cal.next_open(friday_close), session.open + Duration::days(7), "skips the weekend");
        assert_eq!(cal.next_close(friday_close), session.close + Duration::days(7), "skips the weekend");
        assert!(!cal.is_open(session.open + Duration::days(5) + Duration::hours(1)), "Saturday");
        assert!(!cal.is_open(session.open - Duration::days(2) + Duration::hours(1)), "the Saturday before");
    }

    #[test]
    fn the_sessions_between_two_instants_skip_weekends_and_respect_the_limit() {
        let session = SessionConfig::default(); // Monday 2026-03-02 14:30-21:00 UTC
        let cal = Calendar::new(&session);
        let monday = session.open - Duration::hours(14) - Duration::minutes(30);
        // (case, from, to, limit, expected opens as days after Monday's)
        let cases = [
            ("a week", monday, monday + Duration::days(7), 10, vec![0, 1, 2, 3, 4]),
            ("from mid-session", session.open + Duration::hours(1), monday + Duration::days(3), 10, vec![1, 2]),
            ("the limit", monday, monday + Duration::days(14), 6, vec![0, 1, 2, 3, 4, 7]),
            ("a weekend", monday + Duration::days(5), monday + Duration::days(7), 10, vec![]),
            ("empty range", monday + Duration::days(1), monday, 10, vec![]),
        ];
        for (case, from, to, limit, days) in cases {
            let expected: Vec<_> =
                days.iter().map(|&d| (session.open + Duration::days(d), session.close + Duration::days(d))).collect();
            assert_eq!(cal.sessions_between(from, to, limit), expected, "{case}");
        }
    }

    /// NYSE's hours are 09:30-16:00 New York time: 14:30-21:00 UTC in winter, 13:30-20:00 UTC
    /// while daylight saving time is in force (2026: from Sunday 8 March to Sunday 1 November).
    #[test]
    fn a_calendar_following_us_daylight_saving_opens_an_hour_earlier_in_utc_in_summer() {
        let session = SessionConfig { us_daylight_saving: true, ..SessionConfig::default() }; // 2026-03-02
        let cal = Calendar::new(&session);
        let on = |m: u32, d: u32, h: u32, min: u32| chrono::Utc.with_ymd_and_hms(2026, m, d, h, min, 0).unwrap();
        // (case, instant, open?, next open, next close)
        let cases = [
            ("the last winter Friday", on(3, 6, 14, 29), false, on(3, 6, 14, 30), on(3, 6, 21, 0)),
            ("the first summer Monday, before the open", on(3, 9, 13, 29), false, on(3, 9, 13, 30), on(3, 9, 20, 0)),
            ("the first summer Monday, at 13:45 UTC", on(3, 9, 13, 45), true, on(3, 10, 13, 30), on(3, 9, 20, 0)),
            ("a summer day after its close", on(7, 1, 20, 0), false, on(7, 2, 13, 30), on(7, 2, 20, 0)),
            ("the last summer Friday", on(10, 30, 19, 59), true, on(11, 2, 14, 30), on(10, 30, 20, 0)),
            ("the first winter Monday", on(11, 2, 14, 0), false, on(11, 2, 14, 30), on(11, 2, 21, 0)),
        ];
        for (case, t, open, next_open, next_close) in cases {
            assert_eq!(cal.is_open(t), open, "{case}");
            assert_eq!(cal.next_open(t), next_open, "{case}: next open");
            assert_eq!(cal.next_close(t), next_close, "{case}: next close");
        }
        assert!(us_eastern_dst(on(3, 8, 7, 0)) && !us_eastern_dst(on(3, 8, 6, 59)), "02:00 EST on 8 March");
        assert!(!us_eastern_dst(on(11, 1, 6, 0)) && us_eastern_dst(on(11, 1, 5, 59)), "02:00 EDT on 1 November");
        let fixed = Calendar::new(&SessionConfig::default());
        assert!(!fixed.is_open(on(7, 1, 13, 45)), "a calendar fixed in UTC does not move");
    }

    #[test]
    fn holidays_have_no_session_and_early_closes_end_sooner() {
        // Monday 2026-03-02 14:30-21:00 UTC; Wednesday the 4th a holiday, Thursday the 5th
        // closing after 210 minutes (18:00 UTC), and the Friday after the weekend a holiday too.
        let date = |d: u32| NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
        let session = SessionConfig {
            holidays: vec![date(4), date(9)],
            early_closes: vec![crate::config::EarlyClose { date: date(5), minutes: 210 }],
            ..SessionConfig::default()
        };
        let cal = Calendar::new(&session);
        let on = |d: u32, h: u32, m: u32| chrono::Utc.with_ymd_and_hms(2026, 3, d, h, m, 0).unwrap();
        // (case, instant, open?, next open, next close)
        let cases = [
            ("Tuesday's session", on(3, 15, 0), true, on(4, 14, 30) + Duration::days(1), on(3, 21, 0)),
            ("after Tuesday's close", on(3, 21, 0), false, on(5, 14, 30), on(5, 18, 0)),
            ("the holiday's hours", on(4, 15, 0), false, on(5, 14, 30), on(5, 18, 0)),
            ("the early close's session", on(5, 17, 59), true, on(6, 14, 30), on(5, 18, 0)),
            ("after the early close", on(5, 18, 0), false, on(6, 14, 30), on(6, 21, 0)),
            ("Friday, the weekend, the Monday holiday", on(6, 21, 0), false, on(10, 14, 30), on(10, 21, 0)),
        ];
        for (case, t, open, next_open, next_close) in cases {
            assert_eq!(cal.is_open(t), open, "{case}");
            assert_eq!(cal.next_open(t), next_open, "{case}: next open");
            assert_eq!(cal.next_close(t), next_close, "{case}: next close");
        }
        let week = cal.sessions_between(on(2, 0, 0), on(9, 0, 0), 10);
        let opens: Vec<u32> = week.iter().map(|(open, _)| open.day()).collect();
        assert_eq!(opens, vec![2, 3, 5, 6], "no Wednesday, no weekend");
        assert_eq!(week[2].1, on(5, 18, 0), "Thursday closes early");
    }

    #[test]
    fn a_session_that_crosses_midnight_is_open_on_both_sides_of_it() {
        // Opens Saturday 2026-11-28 20:00 UTC for eight hours: closes Sunday 04:00.
        let open = chrono::Utc.with_ymd_and_hms(2026, 11, 28, 20, 0, 0).unwrap();
        let session = SessionConfig {
            open,
            close: open + Duration::hours(8),
            start: open,
            weekends: true,
            ..SessionConfig::default()
        };
        let cal = Calendar::new(&session);
        let midnight = chrono::Utc.with_ymd_and_hms(2026, 11, 29, 0, 0, 0).unwrap();
        for t in [open, midnight - Duration::seconds(1), midnight, midnight + Duration::hours(3)] {
            assert!(cal.is_open(t), "open at {t}");
            assert_eq!(cal.next_close(t), open + Duration::hours(8), "closes once, at 04:00, seen from {t}");
            if t > open {
                assert_eq!(cal.next_open(t), open + Duration::days(1), "next opens the next evening, seen from {t}");
            }
        }
        assert!(!cal.is_open(open + Duration::hours(8)));
        assert!(!cal.is_open(open - Duration::minutes(1)));
    }

    #[test]
    fn a_weekday_session_that_crosses_midnight_belongs_to_the_day_it_opens() {
        // Friday 2026-11-27 22:00 UTC for four hours: the Saturday-morning part is still Friday's.
        let open = chrono::Utc.with_ymd_and_hms(2026, 11, 27, 22, 0, 0).unwrap();
        let session = SessionConfig {
            open,
            close: open + Duration::hours(4),
            start: open,
            weekends: false,
            ..SessionConfig::default()
        };
        let cal = Calendar::new(&session);
        assert!(cal.is_open(open + Duration::hours(3)), "Saturday 01:00 is in Friday's session");
        assert!(!cal.is_open(open + Duration::days(1) + Duration::hours(1)), "no Saturday session");
        assert_eq!(cal.next_open(open + Duration::hours(5)), open + Duration::days(3), "Monday 22:00");
        assert_eq!(cal.next_close(open + Duration::hours(5)), open + Duration::days(3) + Duration::hours(4));
    }

    #[test]
    fn sessions_as_long_as_a_day_never_close_on_trading_days() {
        let open = chrono::Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap(); // a Monday
        let session = SessionConfig {
            open,
            close: open + Duration::days(1),
            start: open,
            weekends: true,
            ..SessionConfig::default()
        };
        let cal = Calendar::new(&session);
        for hour in 0..24 * 9 {
            assert!(cal.is_open(open + Duration::hours(hour)), "hour {hour}");
        }
    }
}
