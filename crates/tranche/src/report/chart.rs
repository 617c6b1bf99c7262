//! One symbol's chart, as data: the bid/ask samples, the limit-price steps and the fills drawn
//! from the run's progress events, and the axes (domains and readable tick marks) they fit in.
//!
//! Invariants: a chart shows the item's working window (first event to last, with context on
//! both sides), not the whole run; the band starts with the quote in force when the window opens;
//! the domains always have a positive span (a single point still gets an axis); ticks are "nice"
//! numbers (1, 2 or 5 times a power of ten, never finer than a cent above a dollar, so every
//! label is exact; whole seconds or minutes), at most a dozen per axis, whatever the data.

use rust_decimal::prelude::ToPrimitive;
use tranche_domain::{Price, Qty, Side, Symbol, Timestamp};
use tranche_engine::ProgressEvent;

use super::tape::Sample;

/// How a limit price came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// The item's first order (or a new order after a cancel).
    Placed,
    /// A re-price of the working order.
    Repegged,
    /// The last-resort order (protective limit, or market when `price` is `None`).
    Escalated,
}

/// A limit price in force from `at` until the next step or the end of the item.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitStep {
    /// When the order was placed or re-priced.
    pub at: Timestamp,
    /// The limit; `None` for a market order.
    pub price: Option<f64>,
    /// How.
    pub kind: StepKind,
}

/// One execution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FillMark {
    /// When.
    pub at: Timestamp,
    /// Shares.
    pub qty: f64,
    /// Price.
    pub price: f64,
}

/// Everything drawn in one symbol's chart.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartData {
    /// The symbol.
    pub symbol: Symbol,
    /// Buy or sell, when the item started.
    pub side: Option<Side>,
    /// Bid/ask samples, in time order.
    pub samples: Vec<Sample>,
    /// Limit-price steps, in time order.
    pub limits: Vec<LimitStep>,
    /// Fills, in time order.
    pub fills: Vec<FillMark>,
    /// The mid when the item started (the slippage benchmark).
    pub arrival_mid: Option<f64>,
    /// When the item started.
    pub start: Option<Timestamp>,
    /// When the item finished.
    pub end: Option<Timestamp>,
    /// Until when the last sample is known to hold (the band is drawn up to here).
    pub band_until: Option<Timestamp>,
}

/// Context shown around an item's working window: a quarter of its length, at least this.
const MIN_CONTEXT_MS: i64 = 1_500;

fn price(p: Price) -> Option<f64> {
    p.get().to_f64().filter(|v| v.is_finite())
}

fn qty(q: Qty) -> f64 {
    q.get().to_f64().unwrap_or(0.0)
}

impl ChartData {
    /// Collects `symbol`'s steps and fills from `events`, with its recorded `samples`.
    pub fn collect(symbol: &Symbol, events: &[ProgressEvent], samples: Vec<Sample>) -> Self {
        let mut data = ChartData {
            symbol: symbol.clone(),
            side: None,
            samples,
            limits: Vec::new(),
            fills: Vec::new(),
            arrival_mid: None,
            start: None,
            end: None,
            band_until: None,
        };
        for event in events {
            match event {
                ProgressEvent::ItemStarted { symbol: s, side, arrival_mid, at, .. } if s == symbol => {
                    data.side = Some(*side);
                    data.arrival_mid = data.arrival_mid.or(arrival_mid.and_then(price));
                    data.start = data.start.or(Some(*at));
                }
                ProgressEvent::OrderPlaced { symbol: s, limit, at, .. } if s == symbol => {
                    data.limits.push(LimitStep { at: *at, price: limit.and_then(price), kind: StepKind::Placed });
                }
                ProgressEvent::Repegged { symbol: s, limit, at, .. } if s == symbol => {
                    data.limits.push(LimitStep { at: *at, price: price(*limit), kind: StepKind::Repegged });
                }
                ProgressEvent::Escalated { symbol: s, limit, at } if s == symbol => {
                    data.limits.push(LimitStep { at: *at, price: limit.and_then(price), kind: StepKind::Escalated });
                }
                ProgressEvent::Filled { symbol: s, qty: q, price: p, at, .. } if s == symbol => {
                    if let Some(p) = price(*p) {
                        data.fills.push(FillMark { at: *at, qty: qty(*q), price: p });
                    }
                }
                ProgressEvent::ItemDone { symbol: s, at, .. } if s == symbol => data.end = Some(*at),
                _ => {}
            }
        }
        data.focus();
        data
    }

    /// Keeps the samples of the working window (with context), the one in force when the window
    /// opens moved to its start, and says until when the last one holds: while the item was
    /// worked its symbol stayed subscribed, so an unchanged quote records nothing new.
    fn focus(&mut self) {
        let events = self.limits.iter().map(|l| l.at).chain(self.fills.iter().map(|f| f.at));
        let first = events.clone().chain(self.start).min();
        let last = events.chain(self.end).max();
        let last_sample = self.samples.last().map(|s| s.at);
        let (Some(first), Some(last)) = (first, last) else {
            self.band_until = last_sample;
            return;
        };
        let context = ((last - first) / 4).max(chrono::Duration::milliseconds(MIN_CONTEXT_MS));
        let (lo, hi) = (first - context, last + context);
        let in_force = self.samples.iter().rposition(|s| s.at <= lo).map(|i| Sample { at: lo, ..self.samples[i] });
        let inside = self.samples.iter().filter(|s| s.at > lo && s.at <= hi).copied();
        self.samples = in_force.into_iter().chain(inside).collect();
        self.band_until = match last_sample {
            Some(seen) if seen > hi => Some(hi),
            Some(seen) => Some(seen.max(last).min(hi)),
            None => None,
        };
    }

    /// True when there is nothing to draw.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty() && self.limits.is_empty() && self.fills.is_empty()
    }

    /// The time span to draw: every sample, step, fill, start and end, at least one second.
    pub fn time_domain(&self) -> Option<(Timestamp, Timestamp)> {
        let times = self
            .samples
            .iter()
            .map(|s| s.at)
            .chain(self.limits.iter().map(|l| l.at))
            .chain(self.fills.iter().map(|f| f.at))
            .chain(self.start)
            .chain(self.end)
            .chain(self.band_until);
        let (lo, hi) = times.fold(None, |acc: Option<(Timestamp, Timestamp)>, t| match acc {
            None => Some((t, t)),
            Some((lo, hi)) => Some((lo.min(t), hi.max(t))),
        })?;
        let hi = hi.max(lo + chrono::Duration::seconds(1));
        let pad = (hi - lo) / 40;
        Some((lo - pad, hi + pad))
    }

    /// The price span to draw: every bid, ask, limit, fill and the arrival mid, padded.
    pub fn price_domain(&self) -> Option<(f64, f64)> {
        let prices = self
            .samples
            .iter()
            .flat_map(|s| [s.bid, s.ask])
            .chain(self.limits.iter().filter_map(|l| l.price))
            .chain(self.fills.iter().map(|f| f.price))
            .chain(self.arrival_mid)
            .filter(|p| p.is_finite() && *p > 0.0);
        let (lo, hi) = prices.fold(None, |acc: Option<(f64, f64)>, p| match acc {
            None => Some((p, p)),
            Some((lo, hi)) => Some((lo.min(p), hi.max(p))),
        })?;
        let span = (hi - lo).max(lo * 0.0005).max(0.01);
        let pad = span * 0.12;
        Some(((lo - pad).max(0.0), hi + pad))
    }
}

/// A linear map from a data domain to a pixel range.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    d0: f64,
    d1: f64,
    r0: f64,
    r1: f64,
}

impl Scale {
    /// Maps `[d0, d1]` onto `[r0, r1]` (`r1 < r0` flips the axis, as for prices).
    pub fn new(d0: f64, d1: f64, r0: f64, r1: f64) -> Self {
        let d1 = if d1 > d0 { d1 } else { d0 + 1.0 };
        Self { d0, d1, r0, r1 }
    }

    /// The pixel for `v`.
    pub fn at(&self, v: f64) -> f64 {
        self.r0 + (v - self.d0) / (self.d1 - self.d0) * (self.r1 - self.r0)
    }
}

/// A step of 1, 2 or 5 times a power of ten giving about `target` ticks over `span` (no 2.5:
/// its labels would need one more digit than the step suggests, or be rounded).
pub fn nice_step(span: f64, target: f64) -> f64 {
    let raw = (span / target.max(1.0)).max(1e-9);
    let magnitude = 10_f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * magnitude).find(|s| *s >= raw * 0.999).unwrap_or(magnitude * 10.0)
}

/// Price ticks: a nice step and the tick values that cover `[lo, hi]`, widened to whole steps.
pub fn price_ticks(lo: f64, hi: f64) -> (f64, f64, Vec<f64>) {
    // Prices of a dollar or more move in cents: no tick finer than that.
    let step = nice_step(hi - lo, 5.0).max(if lo >= 1.0 { 0.01 } else { 0.0001 });
    let first = (lo / step).floor() * step;
    let last = (hi / step).ceil() * step;
    let ticks = (0..=24).map(|i| first + f64::from(i) * step).take_while(|v| *v <= last + step * 0.001).collect();
    (first, last, ticks)
}

/// Decimal places that tell neighbouring ticks `step` apart (at least cents).
pub fn price_decimals(step: f64) -> usize {
    // A step computed as 1e-2 may land a hair below 0.01.
    match step * 1.000_001 {
        s if s >= 0.01 => 2,
        s if s >= 0.001 => 3,
        _ => 4,
    }
}

/// A price with the decimals it has (at least two, at most four): `415.195`, `9.52`, `0.1234`.
pub fn price_text(price: f64) -> String {
    let text = format!("{price:.4}");
    let trimmed = text.trim_end_matches('0');
    let decimals = trimmed.split_once('.').map_or(0, |(_, d)| d.len());
    if decimals >= 2 {
        trimmed.to_owned()
    } else {
        format!("{price:.2}")
    }
}

/// Tick steps for the time axis, in milliseconds.
const TIME_STEPS_MS: [i64; 24] = [
    10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000,
    1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000, 86_400_000,
];

/// Time ticks over `[lo, hi]`: the step in milliseconds and the tick times, on whole multiples of
/// the step (so 15:31:00, 15:31:30, ... rather than odd offsets from the first quote).
pub fn time_ticks(lo: Timestamp, hi: Timestamp) -> (i64, Vec<Timestamp>) {
    let span = (hi - lo).num_milliseconds().max(1);
    let step = TIME_STEPS_MS.into_iter().find(|s| span / s <= 8).unwrap_or(86_400_000);
    let start_ms = lo.timestamp_millis();
    let first = start_ms.div_euclid(step) * step + if start_ms.rem_euclid(step) == 0 { 0 } else { step };
    let ticks = (0..=12)
        .map(|i| first + i * step)
        .take_while(|ms| *ms <= hi.timestamp_millis())
        .filter_map(chrono::DateTime::from_timestamp_millis)
        .collect();
    (step, ticks)
}

/// A time label precise enough for ticks `step_ms` apart.
pub fn time_label(at: Timestamp, step_ms: i64) -> String {
    let format = match step_ms {
        s if s < 1_000 => "%H:%M:%S%.3f",
        s if s < 60_000 => "%H:%M:%S",
        _ => "%H:%M",
    };
    at.format(format).to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use chrono::TimeZone;

    fn at(ms: i64) -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 3, 2, 15, 0, 0).unwrap() + chrono::Duration::milliseconds(ms)
    }

    #[test]
    fn nice_steps_table() {
        let cases = [
            ("cents", 0.05, 5.0, 0.01),
            ("two_cents", 0.08, 5.0, 0.02),
            ("halves", 1.1, 5.0, 0.5),
            ("dollars", 4.0, 5.0, 1.0),
            ("fives", 21.0, 5.0, 5.0),
        ];
        for (name, span, target, want) in cases {
            assert!((nice_step(span, target) - want).abs() < 1e-12, "{name}: {}", nice_step(span, target));
        }
    }

    #[test]
    fn price_ticks_cover_the_domain_on_whole_steps() {
        let (lo, hi, ticks) = price_ticks(228.013, 228.097);
        assert!(lo <= 228.013 && hi >= 228.097);
        assert!(ticks.len() >= 3 && ticks.len() <= 12, "{ticks:?}");
        assert!((ticks[0] - lo).abs() < 1e-9);
        assert_eq!(price_decimals(0.02), 2);
        assert_eq!((price_decimals(0.009_999_999_9), price_decimals(0.005)), (2, 3));
        let (_, _, cents) = price_ticks(9.511, 9.529);
        assert!((cents[1] - cents[0] - 0.01).abs() < 1e-9, "no half-cent ticks above a dollar: {cents:?}");
        assert_eq!(
            (price_text(415.195), price_text(9.5), price_text(0.12345)),
            ("415.195".into(), "9.50".into(), "0.1235".into())
        );
    }

    #[test]
    fn the_chart_focuses_on_the_working_window() {
        let symbol = Symbol::parse("AAPL").unwrap();
        let samples: Vec<Sample> = (0..20_i32)
            .map(|i| Sample { at: at(i64::from(i) * 1_000), bid: 100.0 + f64::from(i), ask: 100.5 + f64::from(i) })
            .collect();
        let events = vec![
            ProgressEvent::ItemStarted {
                symbol: symbol.clone(),
                side: Side::Buy,
                qty: "1".parse().unwrap(),
                arrival_mid: None,
                at: at(10_000),
            },
            ProgressEvent::ItemDone {
                symbol: symbol.clone(),
                outcome: tranche_domain::ItemOutcome::Filled,
                reason: None,
                at: at(12_000),
            },
        ];
        let data = ChartData::collect(&symbol, &events, samples.clone());
        assert_eq!(data.samples[0], Sample { at: at(8_500), bid: 108.0, ask: 108.5 }, "the quote in force, moved");
        assert_eq!(data.samples.last().unwrap().at, at(13_000));
        assert_eq!(data.band_until, Some(at(13_500)), "quotes went on after the window");
        let (lo, hi) = data.time_domain().unwrap();
        assert!(lo <= at(8_500) && hi >= at(13_500) && hi < at(14_000));
        let (plo, phi) = data.price_domain().unwrap();
        assert!(plo > 107.0 && phi < 115.0, "prices of the window only: {plo} {phi}");
        let early = ChartData::collect(&symbol, &events, samples[..3].to_vec());
        assert_eq!(early.samples.len(), 1);
        assert_eq!(early.band_until, Some(at(12_000)), "an unchanged quote holds until the item ends");
    }

    #[test]
    fn time_ticks_fall_on_whole_steps() {
        let (step, ticks) = time_ticks(at(-250), at(7_300));
        assert_eq!(step, 1_000);
        assert_eq!(ticks.first(), Some(&at(0)));
        assert_eq!(ticks.len(), 8);
        assert_eq!(time_label(ticks[1], step), "15:00:01");
        let (step, ticks) = time_ticks(at(0), at(600_000));
        assert_eq!((step, ticks.len()), (120_000, 6));
        assert_eq!(time_label(ticks[1], step), "15:02");
    }

    #[test]
    fn events_of_other_symbols_are_ignored() {
        let aapl = Symbol::parse("AAPL").unwrap();
        let msft = Symbol::parse("MSFT").unwrap();
        let events = vec![
            ProgressEvent::OrderPlaced {
                symbol: msft.clone(),
                qty: "1".parse().unwrap(),
                limit: Some("400".parse().unwrap()),
                at: at(0),
            },
            ProgressEvent::OrderPlaced {
                symbol: aapl.clone(),
                qty: "2".parse().unwrap(),
                limit: Some("228.06".parse().unwrap()),
                at: at(5),
            },
            ProgressEvent::Escalated { symbol: aapl.clone(), limit: None, at: at(9) },
            ProgressEvent::Filled {
                symbol: aapl.clone(),
                qty: "2".parse().unwrap(),
                price: "228.1".parse().unwrap(),
                filled: "2".parse().unwrap(),
                target: "2".parse().unwrap(),
                at: at(10),
            },
        ];
        let data = ChartData::collect(&aapl, &events, Vec::new());
        assert_eq!(data.limits.len(), 2);
        assert_eq!(data.limits[1], LimitStep { at: at(9), price: None, kind: StepKind::Escalated });
        assert_eq!(data.fills, vec![FillMark { at: at(10), qty: 2.0, price: 228.1 }]);
        let (lo, hi) = data.time_domain().unwrap();
        assert!(lo < at(5) && hi >= at(1_000), "at least a second: {lo} {hi}");
        let (plo, phi) = data.price_domain().unwrap();
        assert!(plo < 228.06 && phi > 228.1);
        assert!(ChartData::collect(&msft, &[], Vec::new()).is_empty());
    }
}
