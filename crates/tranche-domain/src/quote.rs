//! Level-1 quotes and the sanity verdict that decides whether a quote may be priced from.
//!
//! Invariant: only a [`QuoteVerdict::Sane`] quote yields a mid or a spread for pricing; the
//! thresholds are the caller's (engine configuration), never constants here.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::money::{Bps, Price, Qty};
use crate::symbol::Symbol;
use crate::time::Timestamp;

/// The best bid and offer for one symbol at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    /// The symbol quoted.
    pub symbol: Symbol,
    /// Best bid price (0 when there is no bid).
    pub bid: Price,
    /// Shares bid at the best bid.
    pub bid_size: Qty,
    /// Best ask price (0 when there is no offer).
    pub ask: Price,
    /// Shares offered at the best ask.
    pub ask_size: Qty,
    /// When the quote was made (exchange time when known).
    pub time: Timestamp,
}

/// Thresholds for [`Quote::verdict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuoteLimits {
    /// Oldest acceptable quote.
    pub max_age: Duration,
    /// Widest acceptable spread, relative to the mid.
    pub max_spread: Bps,
}

/// Whether a quote can be priced from, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuoteVerdict {
    /// Two-sided, uncrossed, tight enough and fresh.
    Sane,
    /// Both sides are zero (or a price is negative): no market.
    Zero,
    /// Only one side has a price.
    OneSided,
    /// The bid is above the ask.
    Crossed,
    /// The spread is wider than the limit.
    TooWide,
    /// Older than the limit.
    Stale,
}

impl Quote {
    /// Judges the quote at `now` against `limits`. Checks run from the most to the least severe,
    /// so a zero quote is reported as zero even when it is also stale.
    pub fn verdict(&self, now: Timestamp, limits: QuoteLimits) -> QuoteVerdict {
        let (bid, ask) = (self.bid, self.ask);
        if bid.is_negative() || ask.is_negative() || (bid.is_zero() && ask.is_zero()) {
            return QuoteVerdict::Zero;
        }
        if bid.is_zero() || ask.is_zero() {
            return QuoteVerdict::OneSided;
        }
        if bid > ask {
            return QuoteVerdict::Crossed;
        }
        match self.spread_bps() {
            Some(spread) if spread <= limits.max_spread => {}
            _ => return QuoteVerdict::TooWide,
        }
        let max_age = chrono::Duration::from_std(limits.max_age).unwrap_or(chrono::Duration::MAX);
        // A quote stamped slightly in the future (clock skew) counts as fresh.
        if now.signed_duration_since(self.time) > max_age {
            return QuoteVerdict::Stale;
        }
        QuoteVerdict::Sane
    }

    /// The midpoint of bid and ask, when both sides are positive.
    pub fn mid(&self) -> Option<Price> {
        if self.bid.is_positive() && self.ask.is_positive() {
            self.bid.midpoint(self.ask)
        } else {
            None
        }
    }

    /// The spread relative to the mid, in basis points, when both sides are positive.
    pub fn spread_bps(&self) -> Option<Bps> {
        let mid = self.mid()?;
        Bps::between(mid, self.ask).and_then(|half| half.checked_scale(rust_decimal::Decimal::TWO))
    }

    /// The price a marketable order of `side` would meet: the ask for a buy, the bid for a sell.
    pub fn far_side(&self, side: crate::side::Side) -> Price {
        match side {
            crate::side::Side::Buy => self.ask,
            crate::side::Side::Sell => self.bid,
        }
    }

    /// The price a passive order of `side` would join: the bid for a buy, the ask for a sell.
    pub fn near_side(&self, side: crate::side::Side) -> Price {
        self.far_side(side.opposite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn q(bid: &str, ask: &str, age_secs: i64) -> (Quote, Timestamp) {
        let now = chrono::Utc.with_ymd_and_hms(2026, 3, 2, 15, 0, 0).unwrap();
        let quote = Quote {
            symbol: Symbol::parse("AAPL").unwrap(),
            bid: bid.parse().unwrap(),
            bid_size: Qty::new(100.into()),
            ask: ask.parse().unwrap(),
            ask_size: Qty::new(100.into()),
            time: now - chrono::Duration::seconds(age_secs),
        };
        (quote, now)
    }

    const LIMITS: QuoteLimits = QuoteLimits {
        max_age: Duration::from_secs(5),
        max_spread: Bps::new(rust_decimal::Decimal::from_parts(100, 0, 0, false, 0)),
    };

    #[test]
    fn verdict_table() {
        let cases = [
            ("sane", "99.95", "100.05", 1, QuoteVerdict::Sane),
            ("locked_is_sane", "100", "100", 0, QuoteVerdict::Sane),
            ("zero_both", "0", "0", 0, QuoteVerdict::Zero),
            ("negative", "-1", "100", 0, QuoteVerdict::Zero),
            ("no_bid", "0", "100", 0, QuoteVerdict::OneSided),
            ("no_ask", "100", "0", 0, QuoteVerdict::OneSided),
            ("crossed", "100.10", "100", 0, QuoteVerdict::Crossed),
            ("too_wide", "98", "102", 0, QuoteVerdict::TooWide),
            ("stale", "99.95", "100.05", 6, QuoteVerdict::Stale),
            ("exactly_max_age_is_fresh", "99.95", "100.05", 5, QuoteVerdict::Sane),
            ("future_stamp_is_fresh", "99.95", "100.05", -3, QuoteVerdict::Sane),
            ("zero_beats_stale", "0", "0", 60, QuoteVerdict::Zero),
        ];
        for (name, bid, ask, age, want) in cases {
            let (quote, now) = q(bid, ask, age);
            assert_eq!(quote.verdict(now, LIMITS), want, "{name}");
        }
    }

    #[test]
    fn mid_and_spread() {
        let (quote, _) = q("99.95", "100.05", 0);
        assert_eq!(quote.mid(), Some("100".parse().unwrap()));
        assert_eq!(quote.spread_bps(), Some("10".parse().unwrap()));
        assert_eq!(quote.far_side(crate::side::Side::Buy), "100.05".parse().unwrap());
        assert_eq!(quote.near_side(crate::side::Side::Buy), "99.95".parse().unwrap());
        let (one_sided, _) = q("0", "100", 0);
        assert_eq!(one_sided.mid(), None);
    }
}
