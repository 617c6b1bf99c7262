//! The simulated tape of one symbol: the market's own prints (each aggressive order of the
//! simulated trade flow trading at the inside it takes) and the one-minute and daily bars built
//! from them, as a market-data service publishes them.
//!
//! Invariants: bookkeeping only (no randomness is drawn, so a market's path and the simulator's
//! event log do not depend on whether anyone reads the tape); a bar's low ≤ open, close ≤ high;
//! its volume is the sum of its prints' sizes and its VWAP lies between its low and high; a
//! minute bar starts on a whole minute, a daily bar at midnight US Eastern (taken as UTC−5, like
//! the simulated calendar, which has no daylight saving).

use chrono::{DurationRound, TimeDelta};
use rust_decimal::Decimal;
use tranche_domain::{Price, Qty, Symbol, Timestamp};

/// One print on the tape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Print {
    /// The symbol traded.
    pub symbol: Symbol,
    /// The trade id (increasing per symbol).
    pub id: u64,
    /// The price.
    pub price: Price,
    /// The size in shares.
    pub size: Qty,
    /// When it printed.
    pub time: Timestamp,
}

/// An OHLCV bar built from prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    /// The start of the bar's interval.
    pub start: Timestamp,
    /// First print's price.
    pub open: Price,
    /// Highest price.
    pub high: Price,
    /// Lowest price.
    pub low: Price,
    /// Last print's price.
    pub close: Price,
    /// Shares traded.
    pub volume: Qty,
    /// Number of prints.
    pub trades: u64,
    /// Volume-weighted average price.
    pub vwap: Price,
}

/// A bar being built, with the dollar volume its VWAP needs.
#[derive(Debug, Clone)]
struct Building {
    bar: Bar,
    dollars: Decimal,
}

impl Building {
    fn start(start: Timestamp, print: &Print) -> Self {
        let p = print.price;
        Self {
            bar: Bar { start, open: p, high: p, low: p, close: p, volume: print.size, trades: 1, vwap: p },
            dollars: p.get() * print.size.get(),
        }
    }

    fn add(&mut self, print: &Print) {
        let p = print.price;
        let bar = &mut self.bar;
        bar.high = bar.high.max(p);
        bar.low = bar.low.min(p);
        bar.close = p;
        bar.volume = Qty::new(bar.volume.get() + print.size.get());
        bar.trades += 1;
        self.dollars += p.get() * print.size.get();
        if !bar.volume.get().is_zero() {
            // Rounded as Alpaca rounds its `vw`; between low and high by construction.
            let vwap = (self.dollars / bar.volume.get()).round_dp(6);
            bar.vwap = Price::new(vwap.clamp(bar.low.get(), bar.high.get()));
        }
    }
}

/// The start of the minute of `t`.
fn minute_of(t: Timestamp) -> Timestamp {
    t.duration_trunc(TimeDelta::minutes(1)).unwrap_or(t)
}

/// Midnight US Eastern (UTC−5) of the day of `t`.
fn day_of(t: Timestamp) -> Timestamp {
    let eastern = TimeDelta::hours(5);
    (t - eastern).duration_trunc(TimeDelta::days(1)).map_or(t, |midnight| midnight + eastern)
}

/// One symbol's tape: the last print and the current minute and day.
#[derive(Debug, Clone, Default)]
pub struct Tape {
    last: Option<Print>,
    minute: Option<Building>,
    day: Option<Building>,
    previous_day: Option<Bar>,
    next_id: u64,
}

impl Tape {
    /// Records a print of `size` shares at `price` at `time`, returning it.
    pub fn print(&mut self, symbol: &Symbol, price: Price, size: Qty, time: Timestamp) -> Print {
        self.next_id += 1;
        let print = Print { symbol: symbol.clone(), id: self.next_id, price, size, time };
        let minute = minute_of(time);
        match &mut self.minute {
            Some(b) if b.bar.start == minute => b.add(&print),
            _ => self.minute = Some(Building::start(minute, &print)),
        }
        let day = day_of(time);
        match &mut self.day {
            Some(b) if b.bar.start == day => b.add(&print),
            _ => {
                self.previous_day = self.day.take().map(|b| b.bar);
                self.day = Some(Building::start(day, &print));
            }
        }
        self.last = Some(print.clone());
        print
    }

    /// The last print.
    pub fn last(&self) -> Option<&Print> {
        self.last.as_ref()
    }

    /// The latest minute bar (the minute of the last print, possibly still building).
    pub fn minute_bar(&self) -> Option<&Bar> {
        self.minute.as_ref().map(|b| &b.bar)
    }

    /// Today's bar so far (the day of the last print).
    pub fn daily_bar(&self) -> Option<&Bar> {
        self.day.as_ref().map(|b| &b.bar)
    }

    /// The previous trading day's bar, once the simulation has crossed a day.
    pub fn previous_daily_bar(&self) -> Option<&Bar> {
        self.previous_day.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn d(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    #[test]
    fn bars_follow_the_prints_and_roll_on_the_minute_and_the_eastern_day() {
        let s = Symbol::parse("AAPL").unwrap();
        let mut tape = Tape::default();
        // (time, price, size, minute bar: open, high, low, close, volume, trades, vwap)
        let cases = [
            ("2026-03-02T15:00:05Z", "100", "10", ("100", "100", "100", "100", "10", 1, "100")),
            ("2026-03-02T15:00:40Z", "101", "30", ("100", "101", "100", "101", "40", 2, "100.75")),
            ("2026-03-02T15:00:59.999Z", "99", "10", ("100", "101", "99", "99", "50", 3, "100.4")),
            ("2026-03-02T15:01:00Z", "98", "5", ("98", "98", "98", "98", "5", 1, "98")),
        ];
        for (time, price, size, (o, h, l, c, v, n, vw)) in cases {
            let print = tape.print(&s, Price::new(d(price)), Qty::new(d(size)), at(time));
            assert_eq!(tape.last(), Some(&print), "{time}");
            let bar = tape.minute_bar().unwrap();
            assert_eq!(bar.start, minute_of(at(time)), "{time}");
            let got = (bar.open.get(), bar.high.get(), bar.low.get(), bar.close.get(), bar.volume.get(), bar.trades);
            assert_eq!(got, (d(o), d(h), d(l), d(c), d(v), n), "{time}");
            assert_eq!(bar.vwap.get(), d(vw), "{time}");
        }
        let day = tape.daily_bar().unwrap();
        assert_eq!(day.start, at("2026-03-02T05:00:00Z"), "midnight Eastern");
        assert_eq!((day.volume.get(), day.trades, day.low.get(), day.high.get()), (d("55"), 4, d("98"), d("101")));
        assert!(tape.previous_daily_bar().is_none());
        // 04:59 UTC on the 3rd is still the 2nd in New York; 05:00 is the 3rd.
        tape.print(&s, Price::new(d("97")), Qty::new(d("1")), at("2026-03-03T04:59:00Z"));
        assert_eq!(tape.daily_bar().unwrap().trades, 5);
        tape.print(&s, Price::new(d("96")), Qty::new(d("2")), at("2026-03-03T05:00:00Z"));
        assert_eq!(tape.daily_bar().unwrap().start, at("2026-03-03T05:00:00Z"));
        assert_eq!(tape.previous_daily_bar().unwrap().trades, 5);
        assert_eq!(tape.last().unwrap().id, 6, "ids increase per print");
    }
}
