//! The realistic market model: what a real US-equity market does to a passive or aggressive
//! order that the quiet random walk leaves out, each part configurable, with the public figures
//! that set its default ranges.
//!
//! - **Liquidity classes** ([`NameClass`]): every symbol belongs to one (mega, large, mid, small
//!   and micro caps; broad, thin and leveraged ETFs), which sets its quoted spread in bps, its
//!   volatility, its daily volume and its displayed size.
//! - **Short-term drift and informed flow**: the fair price carries a predictable drift (`alpha`,
//!   an Ornstein–Uhlenbeck process) besides its noise. Aggressive orders arrive more often on the
//!   drift's side, so a resting buy is mostly hit by sellers just before the price falls: the
//!   adverse selection of passive fills (Glosten & Milgrom 1985).
//! - **Quote imbalance**: displayed sizes lean toward the drift (more size on the bid before a
//!   rise), so the L1 imbalance predicts the next move, as measured by Cont, Kukanov & Stoikov
//!   (2014) and Gould & Bonart (2016).
//! - **Impact of our own orders**: liquidity taken past the displayed size costs the square-root
//!   law `Y · σ_daily · √(Q / V)` (Tóth et al. 2011; Almgren et al. 2005; Bouchaud et al.,
//!   *Trades, Quotes and Prices*, 2018), of which a share stays (permanent) and the rest decays
//!   with a half-life (temporary).
//!
//! Invariants: integer arithmetic only (deterministic on every machine); every quantity is
//! bounded (the drift's lean on sizes, the impact in ticks); the quiet model draws no random
//! number from here, so its paths are those it always had.

use serde::{Deserialize, Serialize};
use tranche_domain::Side;

use crate::rng::Rng;

/// Which market the simulator runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarketModel {
    /// A random walk that our orders do not move, random (uninformed) aggressive flow and sizes
    /// that say nothing: the market every test before the realistic model was written against.
    /// It flatters passive orders (the library's default, so those tests keep their figures).
    #[default]
    Quiet,
    /// Liquidity classes, informed flow (adverse selection), a predictive quote imbalance and
    /// the square-root impact of our own orders ([`RealismConfig`]). The execution-quality
    /// suite and `tranche sim run` run on it by default; elsewhere (`tranche execute` on the
    /// simulator, the emulator) set `[simulator.market] model = "realistic"`.
    Realistic,
}

impl MarketModel {
    /// The model's name as configuration spells it.
    pub fn name(self) -> &'static str {
        match self {
            MarketModel::Quiet => "quiet",
            MarketModel::Realistic => "realistic",
        }
    }
}

/// The realistic model's knobs (used only with [`MarketModel::Realistic`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RealismConfig {
    /// How much of the price's move the drift carries, in ppm of the standard deviation: the
    /// drift's move over its lifetime has the standard deviation `share · σ · √lifetime`
    /// (default 400,000: 16 % of the variance over one lifetime, and `2 · share²` = 32 % of it
    /// over long horizons, the noise making up the rest; at most 700,000). Queue imbalance predicts the direction
    /// of the next mid move with about 60 to 75 % accuracy in large-tick stocks (Gould & Bonart
    /// 2016), so a fair share of short-term moves is foreseeable.
    pub drift_share_ppm: u32,
    /// Half-life of the drift, in milliseconds (default 10,000). Order-flow imbalance explains
    /// price changes over seconds to a minute (Cont, Kukanov & Stoikov 2014).
    pub drift_half_life_ms: u64,
    /// Share of aggressive orders that trade on the drift's side, in ppm (default 400,000: 70 %
    /// of aggressive orders go the way the price is about to move).
    pub informed_ppm: u32,
    /// How far displayed sizes lean toward the drift, in ppm of the size per standard deviation
    /// of the drift (default 500,000; the lean is capped at 80 %).
    pub imbalance_ppm: u32,
    /// How far an aggressive order of the market's own flow moves the fair price at its next
    /// update, in ppm of the half-spread for a trade of one displayed lot (growing with the
    /// square root of its size; default 300,000). Trades carry information (Kyle 1985; Glosten
    /// & Milgrom 1985): what a liquidity provider earns on the spread is mostly lost to the move
    /// after the fill, and realised spreads are a fraction of quoted ones. The noise is lowered
    /// to keep the class's volatility, and the trades' share of the variance is capped at 75 %.
    pub flow_impact_ppm: u32,
    /// The square-root law's prefactor `Y`, in thousandths (default 700: `Y` is of order one,
    /// 0.5 to 1 across markets, Tóth et al. 2011; Bouchaud et al. 2018).
    pub impact_y_milli: u32,
    /// Share of the impact that stays, in ppm (default 600,000: about two thirds of peak impact
    /// remains after the trade, Bouchaud et al. 2018; Almgren et al. 2005 separate a permanent
    /// and a temporary part of similar size).
    pub permanent_ppm: u32,
    /// Half-life of the temporary impact, in milliseconds (default 60,000: impact relaxes over
    /// minutes).
    pub impact_half_life_ms: u64,
}

impl Default for RealismConfig {
    fn default() -> Self {
        Self {
            drift_share_ppm: 400_000,
            drift_half_life_ms: 10_000,
            informed_ppm: 400_000,
            imbalance_ppm: 500_000,
            flow_impact_ppm: 300_000,
            impact_y_milli: 700,
            permanent_ppm: 600_000,
            impact_half_life_ms: 60_000,
        }
    }
}

impl RealismConfig {
    /// The drift's share, bounded so the noise keeps a positive variance.
    fn drift_share(&self) -> i64 {
        i64::from(self.drift_share_ppm.min(700_000))
    }
}

/// A liquidity class: what sets a name's spread, volatility, volume and displayed size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NameClass {
    /// The largest US stocks (AAPL, MSFT, ...): 1–3 bps quoted spreads, billions a day.
    Mega,
    /// Liquid large caps and popular names: 2–6 bps.
    Large,
    /// Mid caps: 5–15 bps.
    Mid,
    /// Small caps: 20–80 bps, a few million dollars a day.
    Small,
    /// Sub-dollar names: 50–200 bps, where the tick alone is wide.
    Micro,
    /// Broad, heavily traded ETFs (SPY, QQQ, ...): under 2 bps.
    BroadEtf,
    /// Thinly traded ETFs: 10–60 bps.
    ThinEtf,
    /// Leveraged and inverse ETFs: 2–10 bps, two to three times the volatility.
    LeveragedEtf,
}

/// The ranges a class draws from.
struct ClassRanges {
    /// Quoted spread, in tenths of a bps.
    spread_deci_bps: (i64, i64),
    /// Annualised volatility, in percent.
    vol_pct: (i64, i64),
    /// Daily traded value, in millions of dollars (drawn log-uniformly).
    adv_musd: (i64, i64),
}

impl NameClass {
    /// Every class, in order.
    pub const ALL: [NameClass; 8] = [
        NameClass::Mega,
        NameClass::Large,
        NameClass::Mid,
        NameClass::Small,
        NameClass::Micro,
        NameClass::BroadEtf,
        NameClass::ThinEtf,
        NameClass::LeveragedEtf,
    ];

    /// The class's name as reports spell it.
    pub fn name(self) -> &'static str {
        match self {
            NameClass::Mega => "mega cap",
            NameClass::Large => "large cap",
            NameClass::Mid => "mid cap",
            NameClass::Small => "small cap",
            NameClass::Micro => "micro cap",
            NameClass::BroadEtf => "broad ETF",
            NameClass::ThinEtf => "thin ETF",
            NameClass::LeveragedEtf => "leveraged ETF",
        }
    }

    /// Orders of magnitude from public market-quality statistics (SEC Rule 605 reports and
    /// exchange market-quality pages): S&P 500 names quote 1–5 bps, Russell 2000 names tens of
    /// bps, sub-dollar names are bound by the tick, SPY and QQQ trade under a bp.
    fn ranges(self) -> ClassRanges {
        let (spread_deci_bps, vol_pct, adv_musd) = match self {
            NameClass::Mega => ((10, 30), (18, 40), (2_000, 15_000)),
            NameClass::Large => ((20, 60), (20, 45), (200, 2_000)),
            NameClass::Mid => ((50, 150), (25, 55), (20, 200)),
            NameClass::Small => ((200, 800), (40, 90), (2, 20)),
            NameClass::Micro => ((500, 2_000), (60, 150), (1, 5)),
            NameClass::BroadEtf => ((5, 20), (10, 25), (1_000, 30_000)),
            NameClass::ThinEtf => ((100, 600), (12, 35), (1, 5)),
            NameClass::LeveragedEtf => ((20, 100), (50, 120), (100, 3_000)),
        };
        ClassRanges { spread_deci_bps, vol_pct, adv_musd }
    }
}

/// A name's realistic characteristics, drawn from its class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassDraw {
    /// Quoted spread, in tenths of a bps.
    pub spread_deci_bps: i64,
    /// Annualised volatility, in percent.
    pub vol_pct: i64,
    /// Daily traded value, in dollars.
    pub adv_usd: i64,
}

impl ClassDraw {
    /// Draws a name of `class` from `rng`.
    pub fn draw(class: NameClass, rng: &mut Rng) -> Self {
        let r = class.ranges();
        let spread_deci_bps = rng.range_i64(r.spread_deci_bps.0, r.spread_deci_bps.1);
        let vol_pct = rng.range_i64(r.vol_pct.0, r.vol_pct.1);
        // Log-uniform in quarter-octaves between the bounds.
        let (lo, hi) = r.adv_musd;
        let quarter_octaves = {
            let mut n = 0;
            while n < 80
                && lo.saturating_mul(1_000).saturating_mul(quarter_octave_milli(n + 1)) <= hi.saturating_mul(1_000_000)
            {
                n += 1;
            }
            n
        };
        let k = rng.range_i64(0, quarter_octaves);
        let adv_usd = lo.saturating_mul(1_000_000).saturating_mul(quarter_octave_milli(k)) / 1000;
        Self { spread_deci_bps, vol_pct, adv_usd }
    }
}

/// `1000 · 2^(k/4)` in integers.
fn quarter_octave_milli(k: i64) -> i64 {
    const ROOTS: [i64; 4] = [1000, 1189, 1414, 1682];
    let octaves = u32::try_from(k / 4).unwrap_or(0).min(40);
    ROOTS[usize::try_from(k % 4).unwrap_or(0)].saturating_mul(1i64 << octaves)
}

/// `1,000,000 · 2^(−elapsed / half_life)`: whole halvings, and between them the series of
/// `e^(−x·ln 2)` to the fourth power (within 0.3 % of the exact value; a short step decays at the
/// rate `ln 2 / half_life`, as a half-life means).
pub fn decay_ppm(elapsed_ms: u64, half_life_ms: u64) -> i64 {
    if half_life_ms == 0 {
        return 0;
    }
    let halvings = elapsed_ms / half_life_ms;
    if halvings >= 40 {
        return 0;
    }
    let whole = 1_000_000i128 >> halvings;
    // x = rest / half-life, in millionths.
    let x = i128::from(elapsed_ms % half_life_ms) * 1_000_000 / i128::from(half_life_ms);
    let m = 1_000_000i128;
    // 2^(−x) ≈ 1 − 0.693147·x + 0.240227·x² − 0.055504·x³ + 0.009618·x⁴.
    let series = m - 693_147 * x / m + 240_227 * x * x / (m * m) - 55_504 * x * x * x / (m * m * m)
        + 9_618 * x * x * x * x / (m * m * m * m);
    i64::try_from(whole * series / m).unwrap_or(0)
}

/// The microstructure state of one symbol's realistic market.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Microstructure {
    /// The drift, in nano-dollars per second.
    pub alpha_nano: i64,
    /// The temporary part of our own impact still in the price, in micro-dollars (signed: up
    /// after our buys).
    pub temporary_micros: i64,
    /// Shares our marketable orders took in all, signed (buys positive): the meta-order the
    /// square-root law prices.
    pub taken_shares: i64,
    /// The move the last aggressive order of the market's flow makes at the next update, in
    /// micro-dollars.
    pub pending_flow_micros: i64,
}

/// How the realistic model splits a name's variance: the move of one lot-sized aggressive
/// trade and the noise per second, both in micro-dollars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VarianceSplit {
    /// The fair price's move after an aggressive trade of one displayed lot.
    pub flow_per_lot_micros: i64,
    /// The noise's standard deviation per second.
    pub noise_per_sec_micros: i64,
}

impl VarianceSplit {
    /// The split for a name of `sigma_micros_per_sec` and `half_spread_micros`, with aggressive
    /// trades at `trades_per_sec_ppm` (millionths of a trade per second).
    pub fn of(
        sigma_micros_per_sec: i64,
        half_spread_micros: i64,
        trades_per_sec_ppm: i64,
        config: &RealismConfig,
    ) -> Self {
        let sigma = i128::from(sigma_micros_per_sec);
        let share = i128::from(Microstructure::noise_share_ppm(config));
        // What drift leaves to noise and flow, per second, in µ$².
        let budget = sigma * sigma * share * share / 1_000_000_000_000;
        let rate = i128::from(trades_per_sec_ppm.max(0));
        let mut per = i128::from(half_spread_micros) * i128::from(config.flow_impact_ppm) / 1_000_000;
        if rate > 0 && rate * per * per / 1_000_000 > budget * 3 / 4 {
            per = (budget * 3 / 4 * 1_000_000 / rate).isqrt();
        }
        let flow_var = rate * per * per / 1_000_000;
        let noise = (budget - flow_var).max(0).isqrt();
        Self {
            flow_per_lot_micros: i64::try_from(per).unwrap_or(i64::MAX),
            noise_per_sec_micros: i64::try_from(noise).unwrap_or(i64::MAX),
        }
    }

    /// The move after an aggressive trade of `size` shares where a lot is `lot`: the per-lot
    /// move times `√(size / lot)`, at most twice it.
    pub fn flow_move(self, size: i64, lot: i64) -> i64 {
        let ratio_ppm = size.saturating_mul(1_000_000) / lot.max(1);
        let root_milli = ratio_ppm.max(0).isqrt().min(2000);
        self.flow_per_lot_micros.saturating_mul(root_milli) / 1000
    }
}

/// Nano-dollars in a micro-dollar.
const NANO: i64 = 1000;

impl Microstructure {
    /// The drift's mean lifetime, in milliseconds (half-life / ln 2).
    fn lifetime_ms(config: &RealismConfig) -> i64 {
        i64::try_from(config.drift_half_life_ms).unwrap_or(i64::MAX / 2).saturating_mul(1443) / 1000
    }

    /// The drift's stationary standard deviation, in nano-dollars per second, for a price whose
    /// standard deviation is `sigma_micros_per_sec`: the drift's move over its lifetime `τ` has
    /// the standard deviation `share · σ · √τ`, so `σ_α = share · σ / √τ`.
    pub fn alpha_sd_nano(sigma_micros_per_sec: i64, config: &RealismConfig) -> i64 {
        let tau_ms = Self::lifetime_ms(config).max(1);
        // share·σ/√τ with τ in seconds = share·σ·√1000/√τ_ms; in nano: ×1000.
        let root_tau_ms = tau_ms.isqrt().max(1);
        sigma_micros_per_sec.saturating_mul(config.drift_share()).saturating_mul(NANO) / 1_000_000 * 31_623
            / 1000
            / root_tau_ms
    }

    /// The noise's share of the standard deviation, in ppm, so that drift and noise together
    /// keep the class's volatility: `√(1 − 2·share²)` (the drift's variance over long horizons
    /// is `2·share²·σ²` per unit time).
    pub fn noise_share_ppm(config: &RealismConfig) -> i64 {
        let share = config.drift_share();
        (1_000_000_000_000i64 - 2 * share * share).max(0).isqrt()
    }

    /// Advances the drift by `elapsed_ms` and returns the move it makes over that time, in
    /// micro-dollars.
    pub fn advance(
        &mut self,
        elapsed_ms: u64,
        sigma_micros_per_sec: i64,
        config: &RealismConfig,
        rng: &mut Rng,
    ) -> i64 {
        let sd = Self::alpha_sd_nano(sigma_micros_per_sec, config);
        let keep = decay_ppm(elapsed_ms, config.drift_half_life_ms);
        // Innovation keeps the stationary variance: sd · √(1 − keep²).
        let fresh = (1_000_000_000_000i64 - keep * keep).max(0).isqrt();
        self.alpha_nano =
            self.alpha_nano.saturating_mul(keep) / 1_000_000 + rng.normal_i64(sd.saturating_mul(fresh) / 1_000_000);
        // Bounded at four standard deviations.
        self.alpha_nano = self.alpha_nano.clamp(-4 * sd.max(1), 4 * sd.max(1));
        self.temporary_micros =
            self.temporary_micros.saturating_mul(decay_ppm(elapsed_ms, config.impact_half_life_ms.max(1))) / 1_000_000;
        let elapsed = i64::try_from(elapsed_ms).unwrap_or(i64::MAX);
        self.alpha_nano.saturating_mul(elapsed) / 1_000_000
    }

    /// How far displayed sizes lean toward the drift, in ppm (positive: more on the bid),
    /// within ±80 %.
    pub fn lean_ppm(&self, sigma_micros_per_sec: i64, config: &RealismConfig) -> i64 {
        let sd = Self::alpha_sd_nano(sigma_micros_per_sec, config).max(1);
        (self.alpha_nano.saturating_mul(i64::from(config.imbalance_ppm)) / sd).clamp(-800_000, 800_000)
    }

    /// The side of the next aggressive order: the drift's side for the informed share, else a
    /// fair coin (the same draws either way, so the path does not depend on the outcome).
    pub fn aggressor_side(&self, config: &RealismConfig, rng: &mut Rng) -> Side {
        let informed = rng.chance_ppm(config.informed_ppm);
        let coin = if rng.below(2) == 0 { Side::Buy } else { Side::Sell };
        if informed {
            if self.alpha_nano >= 0 {
                Side::Buy
            } else {
                Side::Sell
            }
        } else {
            coin
        }
    }
}

/// The peak impact of taking `shares` on a name whose price moves `sigma_micros_per_sec` a
/// second and trades `adv_shares` a day: `Y · σ_daily · √(shares / adv)`, in micro-dollars.
/// (`σ_daily = σ_second · √23,400`, the regular session's seconds.)
pub fn impact_micros(shares: i64, adv_shares: i64, sigma_micros_per_sec: i64, config: &RealismConfig) -> i64 {
    if shares <= 0 || adv_shares <= 0 {
        return 0;
    }
    let sigma_daily = sigma_micros_per_sec.saturating_mul(153);
    // √(shares / adv) in ppm.
    let ratio = i128::from(shares) * 1_000_000_000_000 / i128::from(adv_shares);
    let root_ppm = i64::try_from(ratio.min(i128::from(i64::MAX)).cast_unsigned().isqrt()).unwrap_or(i64::MAX);
    let micros = i128::from(sigma_daily) * i128::from(root_ppm) * i128::from(config.impact_y_milli) / 1_000_000_000;
    i64::try_from(micros).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decay_halves_every_half_life() {
        let cases = [(0, 1000, 1_000_000), (1000, 1000, 500_000), (2000, 1000, 250_000), (500, 1000, 707_107)];
        for (elapsed, hl, want) in cases {
            let got = decay_ppm(elapsed, hl);
            assert!((got - want).abs() <= want / 300 + 1, "{elapsed} ms of {hl}: {got}, not {want}");
        }
        // A short step decays at ln 2 per half-life: 1 % of a half-life keeps 99.31 %.
        assert!((decay_ppm(10, 1000) - 993_092).abs() <= 50, "{}", decay_ppm(10, 1000));
        assert_eq!(decay_ppm(100_000, 1), 0);
        assert_eq!(decay_ppm(5, 0), 0);
    }

    #[test]
    fn the_square_root_law_table() {
        let config = RealismConfig::default();
        // σ = 1 % a day on a $100 name: σ_second ≈ 1,000,000 / 153 µ$.
        let sigma = 6_536;
        // 1 % of the day's volume: 0.7 · $1 · 0.1 = 7 cents.
        let at_1pct = impact_micros(10_000, 1_000_000, sigma, &config);
        assert!((69_000..=71_000).contains(&at_1pct), "{at_1pct}");
        // Four times the size, twice the impact.
        let at_4pct = impact_micros(40_000, 1_000_000, sigma, &config);
        assert!((at_4pct - 2 * at_1pct).abs() < 200, "{at_4pct} vs {at_1pct}");
        assert_eq!(impact_micros(0, 1_000_000, sigma, &config), 0);
        assert_eq!(impact_micros(100, 0, sigma, &config), 0);
    }

    #[test]
    fn the_drift_keeps_its_stationary_spread_and_stays_bounded() {
        let config = RealismConfig::default();
        let sigma = 10_000;
        let sd = Microstructure::alpha_sd_nano(sigma, &config);
        assert!(sd > 0);
        let mut m = Microstructure::default();
        let mut rng = Rng::new(3);
        let mut sum_sq = 0i128;
        let n = 20_000;
        for _ in 0..n {
            m.advance(1000, sigma, &config, &mut rng);
            assert!(m.alpha_nano.abs() <= 4 * sd);
            sum_sq += i128::from(m.alpha_nano) * i128::from(m.alpha_nano);
        }
        let rms = i64::try_from((sum_sq / n).isqrt()).unwrap();
        assert!(rms > sd * 7 / 10 && rms < sd * 13 / 10, "rms {rms} vs sd {sd}");
    }

    #[test]
    fn classes_draw_within_their_ranges() {
        let mut rng = Rng::new(9);
        for class in NameClass::ALL {
            let r = class.ranges();
            for _ in 0..200 {
                let d = ClassDraw::draw(class, &mut rng);
                assert!((r.spread_deci_bps.0..=r.spread_deci_bps.1).contains(&d.spread_deci_bps), "{class:?}");
                assert!((r.vol_pct.0..=r.vol_pct.1).contains(&d.vol_pct), "{class:?}");
                assert!(d.adv_usd >= r.adv_musd.0 * 1_000_000 && d.adv_usd <= r.adv_musd.1 * 1_000_000, "{class:?}");
            }
        }
    }
}
