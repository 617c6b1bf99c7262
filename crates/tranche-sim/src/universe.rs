//! The simulated universe: every syntactically valid symbol gets a deterministic market profile
//! derived from the seed and the symbol (price level, volatility, spread, depth, fractionable),
//! with well-known US large caps and ETFs at realistic price levels, and a liquidity class
//! (mega cap to thin ETF) that sets spread, volatility and volume in the realistic model.
//!
//! Invariants: a profile depends only on `(seed, symbol, config)`; prices are integers in ticks
//! (cents at or above $1, $0.0001 below) so the market never leaves the tick grid.

use rust_decimal::Decimal;
use tranche_domain::Symbol;

use crate::config::SimConfig;
use crate::listing::LISTING;
use crate::realism::{ClassDraw, MarketModel, NameClass};
use crate::rng::Rng;

/// Whether the universe lists `symbol` (one of the 500 names of `crate::listing`); any other
/// symbol's market is invented from the seed.
pub fn is_listed(symbol: &Symbol) -> bool {
    listed_entry(symbol).is_some()
}

/// The symbols the universe lists, in its order.
pub fn listed() -> impl Iterator<Item = Symbol> {
    LISTING.iter().filter_map(|(s, _, _, _)| Symbol::parse(s).ok())
}

/// The listing's entry of `symbol`.
fn listed_entry(symbol: &Symbol) -> Option<&'static (&'static str, i64, bool, NameClass)> {
    LISTING.iter().find(|(s, _, _, _)| *s == symbol.as_str())
}

/// Log-spaced price levels (in cents) for symbols the table does not know.
const LEVELS_CENTS: &[i64] = &[
    5, 8, 12, 20, 35, 50, 80, 120, 200, 350, 500, 800, 1_200, 2_000, 3_500, 5_000, 8_000, 12_000, 20_000, 35_000,
    50_000, 80_000, 120_000, 200_000, 300_000,
];

/// The fixed characteristics of one symbol's market.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetProfile {
    /// The symbol.
    pub symbol: Symbol,
    /// Decimal places of the tick: 2 (cents) at or above $1, 4 below.
    pub tick_scale: u32,
    /// Starting mid in micro-dollars (1e-6 USD).
    pub start_micros: i64,
    /// Lowest mid the walk may reach, in micro-dollars (keeps the tick regime stable).
    pub floor_micros: i64,
    /// Highest mid the walk may reach, in micro-dollars.
    pub cap_micros: i64,
    /// Standard deviation of the mid per second, in micro-dollars.
    pub sigma_micros_per_sec: i64,
    /// Usual spread in ticks.
    pub base_spread_ticks: i64,
    /// Typical displayed size at the inside, in shares.
    pub lot: i64,
    /// Fractional quantities accepted.
    pub fractionable: bool,
    /// Its liquidity class (what sets its spread, volatility and volume in the realistic model).
    pub class: NameClass,
    /// Shares traded a day (the realistic model's impact scale).
    pub adv_shares: i64,
}

impl AssetProfile {
    /// Micro-dollars per tick.
    pub fn tick_micros(&self) -> i64 {
        if self.tick_scale == 2 {
            10_000
        } else {
            100
        }
    }

    /// A price in ticks as a decimal.
    pub fn price(&self, ticks: i64) -> Decimal {
        Decimal::new(ticks, self.tick_scale)
    }

    /// Derives the profile of `symbol` under `config`.
    pub fn derive(config: &SimConfig, symbol: &Symbol) -> Self {
        let mut rng = Rng::derive(config.seed, &format!("profile:{symbol}"));
        let known = listed_entry(symbol);
        let jitter = rng.range_i64(900, 1100);
        let (cents_guess, mut fractionable) = match known {
            Some((_, cents, frac, _)) => (*cents, *frac),
            None => {
                let level = LEVELS_CENTS[usize::try_from(rng.below(LEVELS_CENTS.len() as u64)).unwrap_or(0)];
                (level * jitter / 1000, rng.chance_ppm(750_000))
            }
        };
        // Micro-dollars: price overrides keep sub-cent precision.
        let start_micros = match config.symbols.prices.get(symbol) {
            Some(p) => p
                .get()
                .checked_mul(Decimal::from(1_000_000))
                .and_then(|m| i64::try_from(m.trunc()).ok())
                .unwrap_or(1_000_000)
                .clamp(100, 100_000_000_000),
            None => cents_guess.max(1) * 10_000,
        };
        if config.symbols.fractionable.contains(symbol) {
            fractionable = true;
        }
        if config.symbols.non_fractionable.contains(symbol) {
            fractionable = false;
        }
        let tick_scale = if start_micros >= 1_000_000 { 2 } else { 4 };
        let (floor_micros, cap_micros) =
            if tick_scale == 2 { (1_050_000.max(start_micros / 4), start_micros * 4) } else { (200, 990_000) };
        // Annualised volatility 15 %..90 %; per second = price * vol / sqrt(252 * 23400) ≈ / 2428.
        let vol_pct = rng.range_i64(15, 90) * i64::from(config.market.volatility_pct) / 100;
        let sigma_micros_per_sec = (start_micros / 100).saturating_mul(vol_pct) / 2428;
        let cents = start_micros / 10_000;
        let base_spread_ticks = match (tick_scale, cents) {
            (4, _) => rng.range_i64(5, 40),
            (_, c) if c < 1_000 => 1,
            (_, c) if c < 5_000 => rng.range_i64(1, 2),
            (_, c) if c < 20_000 => rng.range_i64(1, 3),
            _ => rng.range_i64(2, 8),
        };
        let lot = match cents {
            c if c < 1_000 => 100 * rng.range_i64(10, 60),
            c if c < 10_000 => 100 * rng.range_i64(2, 15),
            _ => 100 * rng.range_i64(1, 5),
        };
        let mut profile = Self {
            symbol: symbol.clone(),
            tick_scale,
            start_micros,
            floor_micros,
            cap_micros: cap_micros.max(floor_micros + 10_000),
            sigma_micros_per_sec: sigma_micros_per_sec.max(1),
            base_spread_ticks,
            lot,
            fractionable,
            class: NameClass::Mid,
            // The quiet model's displayed size is about a two-thousandth of the day.
            adv_shares: lot.saturating_mul(2_000),
        };
        profile.class = class_of(config, symbol, start_micros);
        if config.market.model == MarketModel::Realistic {
            profile.make_realistic(config);
        }
        profile
    }

    /// Spread, volatility, volume and displayed size drawn from the name's class (from a stream
    /// of its own, so the price level and flags stay those of the quiet model).
    fn make_realistic(&mut self, config: &SimConfig) {
        let mut rng = Rng::derive(config.seed, &format!("class:{}", self.symbol));
        let draw = ClassDraw::draw(self.class, &mut rng);
        let tick = self.tick_micros();
        // The spread in bps at this price, in ticks, at least one (the tick binds cheap names).
        let spread_micros = i128::from(self.start_micros) * i128::from(draw.spread_deci_bps) / 100_000;
        let ticks = i64::try_from(spread_micros).unwrap_or(i64::MAX).saturating_add(tick / 2) / tick;
        self.base_spread_ticks = ticks.max(1);
        let vol_pct = draw.vol_pct * i64::from(config.market.volatility_pct) / 100;
        self.sigma_micros_per_sec = ((self.start_micros / 100).saturating_mul(vol_pct) / 2428).max(1);
        let price_micros = self.start_micros.max(1);
        let adv_shares = i64::try_from(i128::from(draw.adv_usd) * 1_000_000 / i128::from(price_micros))
            .unwrap_or(i64::MAX)
            .max(1_000);
        self.adv_shares = adv_shares;
        // The inside shows about a ten-thousandth of the day, in round lots, one lot at least.
        self.lot = (adv_shares / 10_000 / 100 * 100).clamp(100, 50_000);
    }
}

/// The liquidity class of a listed name; an invented one's is drawn from the seed (sub-dollar
/// names are micro caps).
fn class_of(config: &SimConfig, symbol: &Symbol, start_micros: i64) -> NameClass {
    if let Some((_, _, _, class)) = listed_entry(symbol) {
        return *class;
    }
    if start_micros < 1_000_000 {
        return NameClass::Micro;
    }
    let mut rng = Rng::derive(config.seed, &format!("class-of:{symbol}"));
    match rng.below(20) {
        0..=2 => NameClass::Large,
        3..=8 => NameClass::Mid,
        9..=14 => NameClass::Small,
        15..=17 => NameClass::ThinEtf,
        _ => NameClass::LeveragedEtf,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str) -> Symbol {
        Symbol::parse(s).unwrap()
    }

    #[test]
    fn known_symbols_have_realistic_prices_and_flags() {
        let config = SimConfig::default();
        let aapl = AssetProfile::derive(&config, &sym("AAPL"));
        assert_eq!((aapl.start_micros, aapl.tick_scale, aapl.fractionable), (228_100_000, 2, true));
        assert!(!AssetProfile::derive(&config, &sym("EDZ")).fractionable);
    }

    #[test]
    fn any_symbol_gets_a_deterministic_profile_across_the_price_range() {
        let config = SimConfig::default();
        let mut sub_dollar = 0;
        let mut over_1000 = 0;
        for i in 0..400 {
            let s = sym(&format!("Z{i}"));
            let a = AssetProfile::derive(&config, &s);
            assert_eq!(a, AssetProfile::derive(&config, &s));
            assert!(a.start_micros >= 100 && a.sigma_micros_per_sec >= 1 && a.base_spread_ticks >= 1);
            assert!(a.floor_micros < a.cap_micros);
            sub_dollar += usize::from(a.tick_scale == 4);
            over_1000 += usize::from(a.start_micros > 1_000_000_000);
        }
        assert!(sub_dollar > 20 && over_1000 > 5, "{sub_dollar} {over_1000}");
    }

    #[test]
    fn the_listing_holds_500_names_of_every_class_some_whole_share_only() {
        let config = SimConfig::default();
        let names: std::collections::BTreeSet<Symbol> = listed().collect();
        assert_eq!(names.len(), 500);
        let mut by_class = std::collections::BTreeMap::new();
        for name in &names {
            *by_class.entry(class_of(&config, name, 1_000_000)).or_insert(0) += 1;
        }
        for (class, least) in [
            (NameClass::Mega, 7),
            (NameClass::Large, 100),
            (NameClass::Mid, 100),
            (NameClass::Small, 80),
            (NameClass::BroadEtf, 40),
            (NameClass::ThinEtf, 15),
            (NameClass::LeveragedEtf, 15),
        ] {
            assert!(by_class.get(&class).copied().unwrap_or(0) >= least, "{class:?}: {by_class:?}");
        }
        let whole_shares = names.iter().filter(|n| !AssetProfile::derive(&config, n).fractionable).count();
        assert!((25..=100).contains(&whole_shares), "{whole_shares}");
        assert!(is_listed(&sym("AVGO")) && !is_listed(&sym("Z1")));
    }

    #[test]
    fn overrides_apply() {
        let mut config = SimConfig::default();
        config.symbols.prices.insert(sym("AAPL"), "0.5".parse().unwrap());
        config.symbols.non_fractionable.push(sym("AAPL"));
        let a = AssetProfile::derive(&config, &sym("AAPL"));
        assert_eq!((a.start_micros, a.tick_scale, a.fractionable), (500_000, 4, false));
    }
}
