//! One symbol's simulated market: a seeded random walk of the fair price, a spread that widens at
//! times, displayed sizes, aggressive trade flow, and the published quote with its anomalies.
//!
//! Invariants: the true inside (`bid`, `ask`, in ticks) is never crossed and never below one
//! tick; the published quote may be anomalous (one-sided, crossed, zero) or absent (stall, gap,
//! halt) exactly as configured, while matching always uses the true inside; all randomness comes
//! from this market's own stream, so its path does not depend on other symbols.

use tranche_domain::{Price, Qty, Quote, Side, Timestamp};

use crate::config::{FaultConfig, MarketConfig};
use crate::rng::Rng;
use crate::universe::AssetProfile;

/// What one market update produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickOutcome {
    /// A new quote was published.
    pub published: bool,
    /// An aggressive order arrived: its side and size in shares.
    pub aggressor: Option<(Side, i64)>,
}

/// The simulated market of one symbol.
#[derive(Debug, Clone)]
pub struct Market {
    /// Fixed characteristics.
    pub profile: AssetProfile,
    rng: Rng,
    fair_micros: i64,
    widen_left: u32,
    widen_factor: i64,
    /// Best bid, in ticks.
    pub bid: i64,
    /// Best ask, in ticks.
    pub ask: i64,
    /// Shares displayed at the bid.
    pub bid_size: i64,
    /// Shares displayed at the ask.
    pub ask_size: i64,
    /// Frozen: no updates, no fills.
    pub halted: bool,
    stall_until: Option<Timestamp>,
    /// The last quote the feed published.
    pub published: Option<Quote>,
}

impl Market {
    /// The market of `profile` at `now`, with its first quote published.
    pub fn new(profile: AssetProfile, seed: u64, halted: bool, now: Timestamp) -> Self {
        let rng = Rng::derive(seed, &format!("market:{}", profile.symbol));
        let fair_micros = profile.start_micros;
        let mut market = Self {
            profile,
            rng,
            fair_micros,
            widen_left: 0,
            widen_factor: 1,
            bid: 0,
            ask: 0,
            bid_size: 0,
            ask_size: 0,
            halted,
            stall_until: None,
            published: None,
        };
        market.refresh_inside();
        market.published = Some(market.true_quote(now));
        market
    }

    fn refresh_inside(&mut self) {
        let tick = self.profile.tick_micros();
        let spread = (self.profile.base_spread_ticks * self.widen_factor).max(1);
        let bid = (self.fair_micros - spread * tick / 2) / tick;
        self.bid = bid.max(1);
        self.ask = self.bid + spread;
        let lot = self.profile.lot;
        self.bid_size = (lot / 2 + self.rng.range_i64(0, lot * 2)) / 100 * 100 + 100;
        self.ask_size = (lot / 2 + self.rng.range_i64(0, lot * 2)) / 100 * 100 + 100;
    }

    /// Milliseconds until the next update.
    pub fn next_interval_ms(&mut self, config: &MarketConfig) -> u64 {
        self.rng.wait_around(config.quote_interval_ms.max(1))
    }

    /// Advances the market by one update at `now`, `elapsed_ms` after the previous one.
    pub fn step(
        &mut self,
        now: Timestamp,
        elapsed_ms: u64,
        config: &MarketConfig,
        faults: &FaultConfig,
    ) -> TickOutcome {
        if self.halted {
            return TickOutcome { published: false, aggressor: None };
        }
        // sigma over the interval = sigma per second * sqrt(elapsed seconds), in integers.
        let root_ms = i64::try_from(elapsed_ms.saturating_mul(1000)).unwrap_or(i64::MAX).isqrt();
        let sigma = self.profile.sigma_micros_per_sec.saturating_mul(root_ms) / 1000;
        let mut fair = self.fair_micros.saturating_add(self.rng.normal_i64(sigma));
        if fair < self.profile.floor_micros {
            fair = 2 * self.profile.floor_micros - fair;
        }
        if fair > self.profile.cap_micros {
            fair = 2 * self.profile.cap_micros - fair;
        }
        self.fair_micros = fair.clamp(self.profile.floor_micros, self.profile.cap_micros);

        if self.widen_left > 0 {
            self.widen_left -= 1;
            if self.widen_left == 0 {
                self.widen_factor = 1;
            }
        } else if self.rng.chance_ppm(config.widen_ppm) {
            self.widen_left = u32::try_from(self.rng.range_i64(3, 20)).unwrap_or(3);
            self.widen_factor = self.rng.range_i64(2, 5);
        }
        self.refresh_inside();

        let aggressor = if self.rng.chance_ppm(config.trade_ppm) {
            let side = if self.rng.below(2) == 0 { Side::Buy } else { Side::Sell };
            let size = 100 * self.rng.range_i64(1, (self.profile.lot / 100).max(1) * 2);
            Some((side, size))
        } else {
            None
        };

        let published = self.publish(now, config, faults);
        TickOutcome { published, aggressor }
    }

    fn publish(&mut self, now: Timestamp, config: &MarketConfig, faults: &FaultConfig) -> bool {
        if self.stall_until.is_some_and(|until| now < until) {
            return false;
        }
        self.stall_until = None;
        let stall_ms = if self.rng.chance_ppm(config.stale_ppm) {
            config.stale_ms
        } else if self.rng.chance_ppm(faults.quote_gap_ppm) {
            faults.quote_gap_ms
        } else {
            0
        };
        if stall_ms > 0 {
            self.stall_until = Some(now + chrono::Duration::milliseconds(i64::try_from(stall_ms).unwrap_or(i64::MAX)));
            return false;
        }
        let mut quote = self.true_quote(now);
        if self.rng.chance_ppm(config.zero_ppm) {
            quote.bid = Price::ZERO;
            quote.ask = Price::ZERO;
        } else if self.rng.chance_ppm(config.one_sided_ppm) {
            if self.rng.below(2) == 0 {
                quote.bid = Price::ZERO;
            } else {
                quote.ask = Price::ZERO;
            }
        } else if self.rng.chance_ppm(config.crossed_ppm) {
            std::mem::swap(&mut quote.bid, &mut quote.ask);
        }
        self.published = Some(quote);
        true
    }

    /// The true inside as a quote.
    pub fn true_quote(&self, now: Timestamp) -> Quote {
        Quote {
            symbol: self.profile.symbol.clone(),
            bid: Price::new(self.profile.price(self.bid)),
            bid_size: Qty::new(self.bid_size.into()),
            ask: Price::new(self.profile.price(self.ask)),
            ask_size: Qty::new(self.ask_size.into()),
            time: now,
        }
    }

    /// The true mid as a price (for marking positions).
    pub fn mid(&self) -> Price {
        Price::new(
            rust_decimal::Decimal::new(self.bid + self.ask, self.profile.tick_scale) / rust_decimal::Decimal::TWO,
        )
    }

    /// Shares available at `level` ticks beyond the inside on the side a `side` order takes from
    /// (level 0 is the displayed size; deeper levels hold more).
    pub fn depth_at(&self, side: Side, level: i64) -> i64 {
        let inside = match side {
            Side::Buy => self.ask_size,
            Side::Sell => self.bid_size,
        };
        if level == 0 {
            inside
        } else {
            self.profile.lot.saturating_mul(level + 1)
        }
    }

    /// The price in ticks of `level` on the side a `side` order takes from (`None` below one tick).
    pub fn level_price(&self, side: Side, level: i64) -> Option<i64> {
        match side {
            Side::Buy => Some(self.ask + level),
            Side::Sell => Some(self.bid - level).filter(|p| *p >= 1),
        }
    }

    /// Converts a decimal price to ticks of this market, rounding toward the given direction's
    /// passive side (a buy limit down, a sell limit up) so a limit is never made more aggressive.
    pub fn to_ticks(&self, price: Price, side: Side) -> Option<i64> {
        let scaled = price.get().checked_mul(rust_decimal::Decimal::from(10i64.pow(self.profile.tick_scale)))?;
        let rounded = match side {
            Side::Buy => scaled.floor(),
            Side::Sell => scaled.ceil(),
        };
        i64::try_from(rounded).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SimConfig;
    use tranche_domain::{QuoteLimits, QuoteVerdict, Symbol};

    fn market(symbol: &str, seed: u64) -> (Market, SimConfig) {
        let config = SimConfig { seed, ..SimConfig::default() };
        let profile = AssetProfile::derive(&config, &Symbol::parse(symbol).unwrap());
        (Market::new(profile, seed, false, config.session.start), config)
    }

    #[test]
    fn the_inside_is_never_crossed_and_quotes_are_sane_by_default() {
        for seed in 0..20 {
            for symbol in ["AAPL", "EDZ", "PLUG", "Z1", "Z77"] {
                let (mut m, config) = market(symbol, seed);
                let mut now = config.session.start;
                let limits =
                    QuoteLimits { max_age: std::time::Duration::from_secs(5), max_spread: "100000".parse().unwrap() };
                for _ in 0..500 {
                    now += chrono::Duration::seconds(1);
                    let out = m.step(now, 1000, &config.market, &config.faults);
                    assert!(m.bid >= 1 && m.ask > m.bid, "{symbol} seed {seed}: {} {}", m.bid, m.ask);
                    assert!(out.published);
                    assert_eq!(m.published.as_ref().unwrap().verdict(now, limits), QuoteVerdict::Sane);
                }
            }
        }
    }

    #[test]
    fn anomalies_appear_when_configured() {
        let (mut m, mut config) = market("AAPL", 3);
        config.market.one_sided_ppm = 200_000;
        config.market.crossed_ppm = 200_000;
        config.market.stale_ppm = 50_000;
        let limits = QuoteLimits { max_age: std::time::Duration::from_secs(5), max_spread: "1000".parse().unwrap() };
        let mut seen = std::collections::BTreeSet::new();
        let mut now = config.session.start;
        for _ in 0..2000 {
            now += chrono::Duration::seconds(1);
            m.step(now, 1000, &config.market, &config.faults);
            seen.insert(format!("{:?}", m.published.as_ref().unwrap().verdict(now, limits)));
        }
        for want in ["Sane", "OneSided", "Crossed", "Stale"] {
            assert!(seen.contains(want), "{want} not in {seen:?}");
        }
    }

    #[test]
    fn halted_markets_do_not_move() {
        let (m0, config) = market("AAPL", 1);
        let mut m = Market::new(m0.profile.clone(), 1, true, config.session.start);
        let before = (m.bid, m.ask);
        let out = m.step(config.session.start + chrono::Duration::seconds(1), 1000, &config.market, &config.faults);
        assert_eq!((m.bid, m.ask), before);
        assert!(!out.published && out.aggressor.is_none());
    }

    #[test]
    fn tick_conversion_never_makes_a_limit_more_aggressive() {
        let (m, _) = market("AAPL", 1);
        assert_eq!(m.to_ticks("100.005".parse().unwrap(), Side::Buy), Some(10_000));
        assert_eq!(m.to_ticks("100.005".parse().unwrap(), Side::Sell), Some(10_001));
        assert_eq!(m.to_ticks(Price::new(rust_decimal::Decimal::MAX), Side::Buy), None);
    }
}
