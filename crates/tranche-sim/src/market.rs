//! One symbol's simulated market: a seeded random walk of the fair price, a spread that widens at
//! times, displayed sizes, aggressive trade flow, and the published quote with its anomalies;
//! in the realistic model (`crate::realism`) also a predictable drift, informed flow, sizes that
//! lean toward the drift and the impact of our own marketable orders.
//!
//! Invariants: the true inside (`bid`, `ask`, in ticks) is never crossed and never below one
//! tick; the published quote may be anomalous (one-sided, crossed, zero) or absent (stall, gap,
//! halt) exactly as configured, while matching always uses the true inside; all randomness comes
//! from this market's own stream, so its path does not depend on other symbols.

use tranche_domain::{Price, Qty, Quote, Side, Timestamp};

use crate::config::{FaultConfig, MarketConfig};
use crate::realism::{impact_micros, MarketModel, Microstructure, RealismConfig, VarianceSplit};
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
    /// Gaps in the feed injected so far (`quote_gap_ppm`), counted as fired faults.
    pub(crate) quote_gaps: u64,
    /// The last quote the feed published.
    pub published: Option<Quote>,
    /// Drift and our own temporary impact (the realistic model; zero in the quiet one).
    pub micro: Microstructure,
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
            quote_gaps: 0,
            published: None,
            micro: Microstructure::default(),
        };
        market.refresh_inside();
        market.published = Some(market.true_quote(now));
        market
    }

    fn refresh_inside(&mut self) {
        self.place_inside();
        let lot = self.profile.lot;
        self.bid_size = (lot / 2 + self.rng.range_i64(0, lot * 2)) / 100 * 100 + 100;
        self.ask_size = (lot / 2 + self.rng.range_i64(0, lot * 2)) / 100 * 100 + 100;
    }

    /// The inside around the fair price (plus our temporary impact), sizes unchanged.
    fn place_inside(&mut self) {
        let tick = self.profile.tick_micros();
        let spread = (self.profile.base_spread_ticks * self.widen_factor).max(1);
        let center = self.fair_micros.saturating_add(self.micro.temporary_micros);
        let bid = (center - spread * tick / 2) / tick;
        self.bid = bid.max(1);
        self.ask = self.bid + spread;
    }

    /// The realistic model's sizes: the quiet model's draws, leaning toward the drift.
    fn lean_sizes(&mut self, realism: &RealismConfig) {
        let lean = self.micro.lean_ppm(self.profile.sigma_micros_per_sec, realism);
        let scale = |size: i64, ppm: i64| (size.saturating_mul(1_000_000 + ppm) / 1_000_000 / 100 * 100).max(100);
        self.bid_size = scale(self.bid_size, lean);
        self.ask_size = scale(self.ask_size, -lean);
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
        if config.model == MarketModel::Realistic {
            return self.step_realistic(now, elapsed_ms, config, faults);
        }
        // sigma over the interval = sigma per second * sqrt(elapsed seconds), in integers.
        let root_ms = i64::try_from(elapsed_ms.saturating_mul(1000)).unwrap_or(i64::MAX).isqrt();
        let sigma = self.profile.sigma_micros_per_sec.saturating_mul(root_ms) / 1000;
        let fair = self.fair_micros.saturating_add(self.rng.normal_i64(sigma));
        self.fair_micros = self.reflect(fair);
        self.widen_or_relax(config);
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

    /// One update of the realistic model: drift and noise (noisier while the spread is wide),
    /// our temporary impact relaxing, sizes leaning toward the drift, informed flow.
    fn step_realistic(
        &mut self,
        now: Timestamp,
        elapsed_ms: u64,
        config: &MarketConfig,
        faults: &FaultConfig,
    ) -> TickOutcome {
        let realism = &config.realism;
        let sigma_second = self.profile.sigma_micros_per_sec;
        let drift = self.micro.advance(elapsed_ms, sigma_second, realism, &mut self.rng);
        let split = self.variance_split(config);
        let root_ms = i64::try_from(elapsed_ms.saturating_mul(1000)).unwrap_or(i64::MAX).isqrt();
        // A wide-spread episode is a volatile one: the noise grows with the widening.
        let stress = (1 + self.widen_factor) / 2;
        let noise = split.noise_per_sec_micros.saturating_mul(root_ms) / 1000 * stress;
        let flow = std::mem::take(&mut self.micro.pending_flow_micros);
        let fair =
            self.fair_micros.saturating_add(drift).saturating_add(flow).saturating_add(self.rng.normal_i64(noise));
        self.fair_micros = self.reflect(fair);
        self.widen_or_relax(config);
        self.refresh_inside();
        self.lean_sizes(realism);
        let aggressor = if self.rng.chance_ppm(self.trade_ppm_per_update(config)) {
            let side = self.micro.aggressor_side(realism, &mut self.rng);
            let size = 100 * self.rng.range_i64(1, (self.profile.lot / 100).max(1) * 2);
            // It trades at this inside; the price answers at the next update.
            let moved = split.flow_move(size, self.profile.lot);
            self.micro.pending_flow_micros = if side == Side::Buy { moved } else { -moved };
            Some((side, size))
        } else {
            None
        };
        let published = self.publish(now, config, faults);
        TickOutcome { published, aggressor }
    }

    /// A wide-spread episode counts down, or one starts.
    fn widen_or_relax(&mut self, config: &MarketConfig) {
        if self.widen_left > 0 {
            self.widen_left -= 1;
            if self.widen_left == 0 {
                self.widen_factor = 1;
            }
        } else if self.rng.chance_ppm(config.widen_ppm) {
            self.widen_left = u32::try_from(self.rng.range_i64(3, 20)).unwrap_or(3);
            self.widen_factor = self.rng.range_i64(2, 5);
        }
    }

    /// How this name's variance splits between the market's flow and noise.
    fn variance_split(&self, config: &MarketConfig) -> VarianceSplit {
        let half_spread = self.profile.base_spread_ticks * self.profile.tick_micros() / 2;
        let interval = i64::try_from(config.quote_interval_ms.max(1)).unwrap_or(1);
        let per_sec_ppm = i64::from(self.trade_ppm_per_update(config)) * 1000 / interval;
        VarianceSplit::of(self.profile.sigma_micros_per_sec, half_spread, per_sec_ppm, &config.realism)
    }

    /// The realistic model's chance of an aggressive order per update: what trades the name's
    /// daily volume over the session in trades of the size drawn (one lot on average), at most
    /// `trade_ppm`. A thin name trades seldom, so a passive order there waits long.
    fn trade_ppm_per_update(&self, config: &MarketConfig) -> u32 {
        let lots = (self.profile.lot / 100).max(1);
        let mean_size = 50 * (2 * lots + 1);
        let interval = i128::from(i64::try_from(config.quote_interval_ms.max(1)).unwrap_or(1));
        // Trades per update, in ppm: volume / (session seconds × mean size) × interval.
        let ppm = i128::from(self.profile.adv_shares) * 1_000_000 * interval / (23_400_000 * i128::from(mean_size));
        u32::try_from(ppm.clamp(0, i128::from(config.trade_ppm))).unwrap_or(config.trade_ppm)
    }

    /// The fair price kept within the profile's floor and cap (reflected at the bounds).
    fn reflect(&self, mut fair: i64) -> i64 {
        if fair < self.profile.floor_micros {
            fair = 2 * self.profile.floor_micros - fair;
        }
        if fair > self.profile.cap_micros {
            fair = 2 * self.profile.cap_micros - fair;
        }
        fair.clamp(self.profile.floor_micros, self.profile.cap_micros)
    }

    /// The peak impact, in micro-dollars, of taking `shares` more on `side` after what our
    /// marketable orders took before: the square-root law applies to the whole of what we took
    /// (the meta-order), so splitting a take does not add up square roots.
    fn added_impact(&self, side: Side, shares: i64, realism: &RealismConfig) -> i64 {
        let signed = |q: i64| {
            let i = impact_micros(q.abs(), self.profile.adv_shares, self.profile.sigma_micros_per_sec, realism);
            if q < 0 {
                -i
            } else {
                i
            }
        };
        let before = self.micro.taken_shares;
        let after = match side {
            Side::Buy => before.saturating_add(shares),
            Side::Sell => before.saturating_sub(shares),
        };
        (signed(after) - signed(before)).abs()
    }

    /// The price in ticks at which shares beyond the displayed size of a `shares`-share
    /// marketable order trade in the realistic model: the far side moved by two thirds of the
    /// square-root law's added impact (the average over a walk up a concave book), rounded
    /// against the order.
    pub fn impact_price(&self, side: Side, shares: i64, realism: &RealismConfig) -> i64 {
        let peak = self.added_impact(side, shares, realism);
        let tick = self.profile.tick_micros();
        let ticks = (peak * 2 / 3 + tick - 1) / tick;
        match side {
            Side::Buy => self.ask.saturating_add(ticks),
            Side::Sell => (self.bid - ticks).max(1),
        }
    }

    /// Our marketable order of `shares` moved the price (realistic model): the permanent share
    /// of the peak impact moves the fair price, the rest is a temporary offset that relaxes;
    /// the inside moves at once, sizes stay.
    pub fn take_impact(&mut self, side: Side, shares: i64, realism: &RealismConfig) {
        let peak = self.added_impact(side, shares, realism);
        self.micro.taken_shares = match side {
            Side::Buy => self.micro.taken_shares.saturating_add(shares),
            Side::Sell => self.micro.taken_shares.saturating_sub(shares),
        };
        let permanent = peak.saturating_mul(i64::from(realism.permanent_ppm.min(1_000_000))) / 1_000_000;
        let sign = if side == Side::Buy { 1 } else { -1 };
        self.fair_micros = self.reflect(self.fair_micros.saturating_add(sign * permanent));
        self.micro.temporary_micros = self.micro.temporary_micros.saturating_add(sign * (peak - permanent));
        self.place_inside();
    }

    fn publish(&mut self, now: Timestamp, config: &MarketConfig, faults: &FaultConfig) -> bool {
        if self.stall_until.is_some_and(|until| now < until) {
            return false;
        }
        self.stall_until = None;
        let stall_ms = if self.rng.chance_ppm(config.stale_ppm) {
            config.stale_ms
        } else if self.rng.chance_ppm(faults.quote_gap_ppm) {
            self.quote_gaps += 1;
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
    use crate::realism::NameClass;
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

    fn realistic(symbol: &str, seed: u64) -> (Market, SimConfig) {
        let mut config = SimConfig { seed, ..SimConfig::default() };
        config.market.model = MarketModel::Realistic;
        let profile = AssetProfile::derive(&config, &Symbol::parse(symbol).unwrap());
        (Market::new(profile, seed, false, config.session.start), config)
    }

    /// Mid in micro-dollars.
    fn mid_micros(m: &Market) -> i64 {
        (m.bid + m.ask) * m.profile.tick_micros() / 2
    }

    /// Over many updates of `symbol`: the mean move of the mid over the 10 s after an aggressive
    /// sell (what fills a resting buy), in bps, and the share of imbalanced quotes whose next
    /// 5 s move went the way the imbalance pointed.
    fn after_flow_and_imbalance(model: MarketModel, symbol: &str) -> (f64, f64) {
        let (mut moves_bps, mut agree, mut imbalanced) = (Vec::new(), 0u32, 0u32);
        for seed in 1..=20 {
            let (mut m, mut config) = market(symbol, seed);
            if model == MarketModel::Realistic {
                (m, config) = realistic(symbol, seed);
            }
            let mut now = config.session.start;
            let mut history: Vec<(i64, bool, i64)> = Vec::new();
            for _ in 0..3000 {
                now += chrono::Duration::seconds(1);
                let out = m.step(now, 1000, &config.market, &config.faults);
                let sell = matches!(out.aggressor, Some((Side::Sell, _)));
                history.push((mid_micros(&m), sell, m.bid_size - m.ask_size));
            }
            for t in 0..history.len() - 10 {
                let (mid, sell, lean) = history[t];
                let later = history[t + 10].0;
                if sell {
                    moves_bps.push((later - mid) as f64 / mid as f64 * 10_000.0);
                }
                let next = history[t + 5].0 - mid;
                if lean != 0 && next != 0 {
                    imbalanced += 1;
                    agree += u32::from((lean > 0) == (next > 0));
                }
            }
        }
        let mean = moves_bps.iter().sum::<f64>() / moves_bps.len() as f64;
        (mean, f64::from(agree) / f64::from(imbalanced))
    }

    #[test]
    fn passive_buys_fill_before_the_price_falls_only_in_the_realistic_market() {
        let (quiet_move, quiet_agree) = after_flow_and_imbalance(MarketModel::Quiet, "MSFT");
        let (real_move, real_agree) = after_flow_and_imbalance(MarketModel::Realistic, "MSFT");
        // After the sells that hit resting bids, the realistic price falls; the quiet one does
        // not care.
        assert!(real_move < -0.5, "realistic: {real_move:.3} bps after an aggressive sell");
        assert!(quiet_move.abs() < 0.3, "quiet: {quiet_move:.3} bps after an aggressive sell");
        // The imbalance tells the next move in the realistic market only.
        assert!(real_agree > 0.56, "realistic imbalance right {real_agree:.3}");
        assert!((0.46..0.54).contains(&quiet_agree), "quiet imbalance right {quiet_agree:.3}");
    }

    #[test]
    fn spreads_follow_the_liquidity_class() {
        let bps = |symbol: &str| {
            let (m, _) = realistic(symbol, 1);
            (m.ask - m.bid) as f64 * m.profile.tick_micros() as f64 / mid_micros(&m) as f64 * 10_000.0
        };
        let cases = [("AAPL", 0.9, 3.5), ("SPY", 0.1, 2.1), ("PLUG", 20.0, 90.0), ("EDZ", 2.0, 25.0)];
        for (symbol, lo, hi) in cases {
            let got = bps(symbol);
            assert!((lo..=hi).contains(&got), "{symbol}: {got:.2} bps not in {lo}..={hi}");
        }
        let (aapl, _) = realistic("AAPL", 1);
        let (plug, _) = realistic("PLUG", 1);
        assert_eq!((aapl.profile.class, plug.profile.class), (NameClass::Mega, NameClass::Small));
        // Dollar volume: billions for a mega cap, millions for a small cap.
        assert!(aapl.profile.adv_shares * 228 > 1_000_000_000 && plug.profile.adv_shares * 2 < 50_000_000);
    }

    #[test]
    fn our_marketable_order_moves_the_price_and_part_of_it_relaxes() {
        let (mut m, config) = realistic("PLUG", 4);
        let realism = &config.market.realism;
        let before = mid_micros(&m);
        // A tenth of the day's volume: the square-root law's peak is Y·σ_daily·√0.1.
        let shares = m.profile.adv_shares / 10;
        let peak = impact_micros(shares, m.profile.adv_shares, m.profile.sigma_micros_per_sec, realism);
        assert!(m.impact_price(Side::Buy, shares, realism) > m.ask, "past the displayed size costs more");
        assert_eq!(m.impact_price(Side::Buy, 0, realism), m.ask);
        m.take_impact(Side::Buy, shares, realism);
        let moved = mid_micros(&m) - before;
        let tick = m.profile.tick_micros();
        assert!((moved - peak).abs() <= tick, "moved {moved} µ$ for a peak of {peak}");
        let temporary = m.micro.temporary_micros;
        assert_eq!(temporary, peak - peak * 600 / 1000);
        // One half-life later the temporary part is half (the permanent part stays in `fair`).
        let mut relaxed = m.micro;
        relaxed.advance(realism.impact_half_life_ms, m.profile.sigma_micros_per_sec, realism, &mut Rng::new(1));
        assert_eq!(relaxed.temporary_micros, temporary / 2);
        // A sell moves it the other way.
        let (mut s, _) = realistic("PLUG", 4);
        s.take_impact(Side::Sell, shares, realism);
        assert!(mid_micros(&s) < before);
        // Taken in two halves, the second half adds what the square root of the whole adds.
        let (mut halves, _) = realistic("PLUG", 4);
        halves.take_impact(Side::Buy, shares / 2, realism);
        let second = halves.impact_price(Side::Buy, shares / 2, realism) - halves.ask;
        let whole_rest = impact_micros(shares, m.profile.adv_shares, m.profile.sigma_micros_per_sec, realism)
            - impact_micros(shares / 2, m.profile.adv_shares, m.profile.sigma_micros_per_sec, realism);
        assert!((second * tick - whole_rest * 2 / 3).abs() <= tick, "{second} ticks vs {whole_rest} µ$");
    }

    #[test]
    fn tick_conversion_never_makes_a_limit_more_aggressive() {
        let (m, _) = market("AAPL", 1);
        assert_eq!(m.to_ticks("100.005".parse().unwrap(), Side::Buy), Some(10_000));
        assert_eq!(m.to_ticks("100.005".parse().unwrap(), Side::Sell), Some(10_001));
        assert_eq!(m.to_ticks(Price::new(rust_decimal::Decimal::MAX), Side::Buy), None);
    }
}
