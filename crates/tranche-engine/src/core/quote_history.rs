//! The quotes the core was told about: the latest per symbol (what it prices from) and the last
//! few per symbol (what was in force when a fill happened, for the ledger: a fill's update
//! usually arrives after the quotes that followed it, so the latest quote is the wrong one).
//!
//! Invariants: the latest quote of a symbol never goes back in time; the recent quotes of a
//! symbol are in time order, at most `RECENT` of them; the quote in force at `t` is the newest
//! one stamped at or before `t`, or none when every remembered quote is newer.

use tranche_domain::{Quote, Symbol, Timestamp};

use super::EngineCore;

/// How many recent quotes are kept per symbol.
const RECENT: usize = 32;

impl EngineCore {
    /// Remembers `quote`, heard at `now`: the latest of its symbol unless an older one arrived
    /// late, and among the recent ones in time order. A latest stamped further ahead of `now`
    /// than a quote may be old is taken over by any quote that comes: the latest is the newest by
    /// its stamp, so one from a clock gone wrong would otherwise shut out every real quote after
    /// it (and a clock of ours running slow makes every quote look ahead: then each one counts).
    pub(crate) fn remember_quote(&mut self, quote: Quote, now: Timestamp) {
        let ahead = chrono::Duration::from_std(self.config.quote_max_age).unwrap_or(chrono::Duration::MAX);
        let symbol = quote.symbol.clone();
        let recent = self.recent_quotes.entry(symbol.clone()).or_default();
        let at = recent.iter().rposition(|q| q.time <= quote.time).map_or(0, |p| p + 1);
        recent.insert(at, quote.clone());
        if recent.len() > RECENT {
            recent.pop_front();
        }
        if self
            .quotes
            .get(&symbol)
            .is_none_or(|old| old.time <= quote.time || old.time.signed_duration_since(now) > ahead)
        {
            self.quotes.insert(symbol, quote);
        }
    }

    /// The quote of `symbol` in force at `at`: the newest remembered one stamped at or before it.
    pub(crate) fn quote_at(&self, symbol: &Symbol, at: Timestamp) -> Option<&Quote> {
        self.recent_quotes.get(symbol)?.iter().rev().find(|q| q.time <= at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EngineConfig;

    use crate::core::tests::bench;

    fn quote(bid: &str, second: i64) -> Quote {
        let t = chrono::DateTime::from_timestamp(1_772_462_000 + second, 0).unwrap();
        let ask = (bench::d(bid) + rust_decimal::Decimal::new(2, 2)).to_string();
        bench::quote("AAPL", bid, &ask, t)
    }

    /// A moment after every quote of these cases.
    fn later() -> tranche_domain::Timestamp {
        quote("0", 3_600).time
    }

    fn core() -> EngineCore {
        EngineCore::new(bench::plan("q1", &[("AAPL", "BUY", "100", "0")]), EngineConfig::default())
    }

    #[test]
    fn the_quote_in_force_at_a_fill_is_the_last_one_before_it_not_the_latest() {
        let mut core = core();
        let aapl = Symbol::parse("AAPL").unwrap();
        core.remember_quote(quote("100.00", 1), later());
        core.remember_quote(quote("100.10", 3), later());
        // A fill at second 2 is processed after the quote of second 3 arrived.
        assert_eq!(core.quote_at(&aapl, quote("0", 2).time).map(|q| q.bid.to_string()), Some("100.00".into()));
        assert_eq!(core.quotes[&aapl].bid.to_string(), "100.10", "pricing still uses the latest");
        assert!(core.quote_at(&aapl, quote("0", 0).time).is_none(), "nothing before the first quote");
    }

    #[test]
    fn a_late_quote_is_kept_in_time_order_and_never_replaces_a_newer_latest() {
        let mut core = core();
        let aapl = Symbol::parse("AAPL").unwrap();
        core.remember_quote(quote("100.00", 1), later());
        core.remember_quote(quote("100.20", 5), later());
        core.remember_quote(quote("100.10", 3), later()); // delivered late
        assert_eq!(core.quotes[&aapl].bid.to_string(), "100.20");
        assert_eq!(core.quote_at(&aapl, quote("0", 4).time).map(|q| q.bid.to_string()), Some("100.10".into()));
        for second in 10..10 + 2 * i64::try_from(RECENT).unwrap() {
            core.remember_quote(quote("101.00", second), later());
        }
        assert_eq!(core.recent_quotes[&aapl].len(), RECENT, "bounded");
    }

    /// A quote stamped an hour ahead (a feed's clock gone wrong) would be the latest for an
    /// hour by its stamp, shutting out every real quote and pricing from a stale one.
    #[test]
    fn a_quote_stamped_in_the_future_never_shuts_out_the_real_ones() {
        let mut core = core();
        let aapl = Symbol::parse("AAPL").unwrap();
        let now = quote("0", 100).time;
        core.remember_quote(quote("100.00", 100 + 3_600), now);
        core.remember_quote(quote("90.00", 100), now);
        assert_eq!(core.quotes[&aapl].bid.to_string(), "90.00", "the real quote is the latest");
        core.remember_quote(quote("89.90", 99), now);
        assert_eq!(core.quotes[&aapl].bid.to_string(), "90.00", "a late older one still does not replace it");
    }

    /// Our clock 30 s slow (a laptop after sleep, an unsynced VM): every quote looks ahead, and
    /// each new one is the latest.
    #[test]
    fn with_our_clock_running_slow_every_quote_still_counts() {
        let mut core = core();
        let aapl = Symbol::parse("AAPL").unwrap();
        let now = quote("0", 100).time;
        for (second, bid) in [(130, "90.00"), (131, "90.10"), (132, "90.20")] {
            core.remember_quote(quote(bid, second), now);
            assert_eq!(core.quotes[&aapl].bid.to_string(), bid);
        }
    }
}
