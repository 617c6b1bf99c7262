//! Simulator configuration: seed, session, account, market behaviour, latencies, fees, faults.
//!
//! Invariants: probabilities are integers in parts per million (deterministic, no floating
//! point); every field has a documented default, so `SimConfig::default()` is a realistic,
//! fault-free trading day; the config deserializes from TOML/JSON with unknown fields refused.

use chrono::TimeZone;
use serde::{Deserialize, Serialize};
use tranche_domain::{Price, Qty, Symbol, Timestamp, Usd};

use crate::realism::{MarketModel, RealismConfig};

/// Everything that shapes a simulation. Same config and seed, same run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// The seed of every random stream.
    pub seed: u64,
    /// The trading session.
    pub session: SessionConfig,
    /// The account at the start.
    pub account: AccountConfig,
    /// Quote and trade-flow behaviour.
    pub market: MarketConfig,
    /// Symbols with special treatment and price overrides.
    pub symbols: SymbolRules,
    /// Latencies.
    pub latency: LatencyConfig,
    /// Regulatory fees on sells.
    pub fees: FeeConfig,
    /// Injected faults.
    pub faults: FaultConfig,
    /// Keep a line-per-event log (for replay tests; costs memory).
    pub record_log: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            session: SessionConfig::default(),
            account: AccountConfig::default(),
            market: MarketConfig::default(),
            symbols: SymbolRules::default(),
            latency: LatencyConfig::default(),
            fees: FeeConfig::default(),
            faults: FaultConfig::none(),
            record_log: false,
        }
    }
}

/// The longest duration any configured wait may have, in milliseconds (a day).
const LONGEST_WAIT_MS: u64 = 86_400_000;

impl SimConfig {
    /// Every configured duration is at most a day (larger ones would push simulated time past
    /// what a timestamp can hold); the error names the field.
    pub fn check_durations(&self) -> Result<(), String> {
        let (m, l, f) = (&self.market, &self.latency, &self.faults);
        let fields = [
            ("market.quote_interval_ms", m.quote_interval_ms),
            ("market.stale_ms", m.stale_ms),
            ("latency.ack_ms", l.ack_ms),
            ("latency.venue_ms", l.venue_ms),
            ("latency.update_ms", l.update_ms),
            ("faults.max_delay_ms", f.max_delay_ms),
            ("faults.reconnect_ms", f.reconnect_ms),
            ("faults.retry_after_ms", f.retry_after_ms),
            ("faults.quote_gap_ms", f.quote_gap_ms),
            ("faults.late_order_max_ms", f.late_order_max_ms),
        ];
        match fields.iter().find(|(_, ms)| *ms > LONGEST_WAIT_MS) {
            Some((name, ms)) => Err(format!("simulator {name}: {ms} ms is longer than a day")),
            None => Ok(()),
        }
    }
}

/// The regular session of the simulated day. DAY orders expire at `close`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Session open (default Monday 2026-03-02 09:30 ET = 14:30 UTC).
    pub open: Timestamp,
    /// Session close (default 16:00 ET = 21:00 UTC the same day).
    pub close: Timestamp,
    /// Where the simulated clock starts (default: 15 minutes after the open).
    pub start: Timestamp,
    /// Sessions on Saturdays and Sundays too (the emulator's "always open" market).
    pub weekends: bool,
    /// Days without a session (exchange holidays), by the UTC date of the session's open.
    pub holidays: Vec<chrono::NaiveDate>,
    /// Days whose session closes early, by the UTC date of the open.
    pub early_closes: Vec<EarlyClose>,
    /// `open` and `close` are US Eastern standard time (UTC−5), and on the days US daylight
    /// saving time is in force (the second Sunday of March to the first Sunday of November)
    /// the session opens and closes an hour earlier in UTC, as NYSE's does (default false: a
    /// calendar fixed in UTC).
    pub us_daylight_saving: bool,
}

/// A session that closes early (NYSE: 13:00 ET on the day after Thanksgiving, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyClose {
    /// The UTC date of the session's open.
    pub date: chrono::NaiveDate,
    /// How long that session lasts, in minutes (NYSE's early close: 210, 09:30 to 13:00).
    pub minutes: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        let open = chrono::Utc.with_ymd_and_hms(2026, 3, 2, 14, 30, 0).single().unwrap_or_default();
        Self {
            open,
            close: open + chrono::Duration::minutes(390),
            start: open + chrono::Duration::minutes(15),
            weekends: false,
            holidays: Vec::new(),
            early_closes: Vec::new(),
            us_daylight_saving: false,
        }
    }
}

/// Cash or margin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// Buying power is cash minus open buy orders.
    Cash,
    /// Reg-T margin with the configured multiplier.
    Margin,
}

/// A position held at the start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartPosition {
    /// The symbol.
    pub symbol: Symbol,
    /// Shares held (positive; fractional allowed).
    pub qty: Qty,
    /// Entry price (default: the symbol's starting mid).
    #[serde(default)]
    pub avg_entry_price: Option<Price>,
}

/// The account at the start of the simulation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountConfig {
    /// Cash or margin (default cash: the strictest buying-power model).
    pub kind: AccountKind,
    /// Margin multiplier (margin accounts only; default 2).
    pub multiplier: u8,
    /// Cash at the start (default $100,000).
    pub starting_cash: Usd,
    /// Positions at the start.
    pub positions: Vec<StartPosition>,
    /// The account refuses new orders.
    pub trading_blocked: bool,
    /// The user's own orders, resting when the simulation starts (placed outside Tranche:
    /// Tranche must never touch them, and Alpaca's wash-trade rule fires against them).
    pub open_orders: Vec<UserOrder>,
}

/// An order the account's owner placed outside Tranche: a limit (limit price only), a stop
/// (stop price only) or a stop-limit (both). Stops rest untriggered until the market reaches
/// the stop price, then work as a market (or limit) order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserOrder {
    /// The symbol.
    pub symbol: Symbol,
    /// Buy or sell.
    pub side: tranche_domain::Side,
    /// Shares.
    pub qty: Qty,
    /// Limit price, if any.
    #[serde(default)]
    pub limit_price: Option<Price>,
    /// Stop price, if any.
    #[serde(default)]
    pub stop_price: Option<Price>,
}

impl Default for AccountConfig {
    fn default() -> Self {
        Self {
            kind: AccountKind::Cash,
            multiplier: 2,
            starting_cash: Usd::new(rust_decimal::Decimal::from(100_000)),
            positions: Vec::new(),
            trading_blocked: false,
            open_orders: Vec::new(),
        }
    }
}

/// Quote dynamics and trade flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MarketConfig {
    /// Mean time between quote updates per symbol, in milliseconds (default 1000).
    pub quote_interval_ms: u64,
    /// Volatility multiplier in percent of each symbol's derived volatility (default 100).
    pub volatility_pct: u32,
    /// Chance per update that the spread widens for a while (default 2 %).
    pub widen_ppm: u32,
    /// Chance per update that an aggressive order trades against the inside (default 50 %).
    pub trade_ppm: u32,
    /// Chance per update that the published quote is one-sided (default 0).
    pub one_sided_ppm: u32,
    /// Chance per update that the published quote is crossed (default 0).
    pub crossed_ppm: u32,
    /// Chance per update that the published quote is zero on both sides (default 0).
    pub zero_ppm: u32,
    /// Chance per update that the feed stalls (publishes nothing) for `stale_ms` (default 0).
    pub stale_ppm: u32,
    /// How long a stall lasts, in milliseconds (default 8000).
    pub stale_ms: u64,
    /// Most symbols the quote stream carries at once, as Alpaca's `iex` feed allows 30 on the
    /// Basic plan; a subscribe past it is refused (error 405) and changes nothing (default 0:
    /// no limit).
    pub stream_symbol_limit: usize,
    /// Which market model runs (default `quiet`, the library's; `tranche sim run` and the
    /// execution-quality suite choose `realistic`).
    pub model: MarketModel,
    /// The realistic model's knobs (used only with `model = "realistic"`).
    pub realism: RealismConfig,
}

impl Default for MarketConfig {
    fn default() -> Self {
        Self {
            quote_interval_ms: 1000,
            volatility_pct: 100,
            widen_ppm: 20_000,
            trade_ppm: 500_000,
            one_sided_ppm: 0,
            crossed_ppm: 0,
            zero_ppm: 0,
            stale_ppm: 0,
            stale_ms: 8000,
            stream_symbol_limit: 0,
            model: MarketModel::Quiet,
            realism: RealismConfig::default(),
        }
    }
}

/// Symbols with special treatment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SymbolRules {
    /// Unknown to the broker (asset lookups 404, orders rejected).
    pub unknown: Vec<Symbol>,
    /// Known but not tradable (orders rejected).
    pub non_tradable: Vec<Symbol>,
    /// Halted: orders accepted but the market is frozen (no quote updates, no fills).
    pub halted: Vec<Symbol>,
    /// Forced non-fractionable.
    pub non_fractionable: Vec<Symbol>,
    /// Forced fractionable.
    pub fractionable: Vec<Symbol>,
    /// Starting mid prices that override the derived ones.
    pub prices: std::collections::BTreeMap<Symbol, Price>,
    /// Whether symbols the universe does not list (nor any rule above names) get an invented
    /// market: `Some(false)` answers them as Alpaca answers an unknown symbol (asset not found,
    /// orders refused); `None` (the library's default, which scenario tests rely on) or
    /// `Some(true)` invents one. `tranche execute` on the simulator takes `None` as `false`.
    pub invent: Option<bool>,
}

impl SymbolRules {
    /// Whether a rule names `symbol` (then it is known whatever `invent` says).
    pub fn names(&self, symbol: &Symbol) -> bool {
        [&self.non_tradable, &self.halted, &self.non_fractionable, &self.fractionable]
            .iter()
            .any(|list| list.contains(symbol))
            || self.prices.contains_key(symbol)
    }
}

/// Latencies, in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LatencyConfig {
    /// Round trip of a REST call (default 20).
    pub ack_ms: u64,
    /// From acceptance to the order working at the venue, and for cancels and replaces to take
    /// effect (default 5).
    pub venue_ms: u64,
    /// From an event at the venue to its trade update reaching the client (default 15).
    pub update_ms: u64,
}

impl Default for LatencyConfig {
    fn default() -> Self {
        Self { ack_ms: 20, venue_ms: 5, update_ms: 15 }
    }
}

impl LatencyConfig {
    /// No latency at all (benchmarks of engine cost).
    pub fn zero() -> Self {
        Self { ack_ms: 0, venue_ms: 0, update_ms: 0 }
    }
}

/// Regulatory fees charged on sells (Alpaca passes them through).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeeConfig {
    /// SEC fee in dollars per million dollars sold (default 27.80).
    pub sec_per_million: Usd,
    /// FINRA TAF in dollars per share sold (default 0.000166).
    pub taf_per_share: Usd,
    /// FINRA TAF cap per fill (default 8.30).
    pub taf_max: Usd,
}

impl Default for FeeConfig {
    fn default() -> Self {
        Self {
            sec_per_million: Usd::new(rust_decimal::Decimal::new(2780, 2)),
            taf_per_share: Usd::new(rust_decimal::Decimal::new(166, 6)),
            taf_max: Usd::new(rust_decimal::Decimal::new(830, 2)),
        }
    }
}

/// Injected faults, each a chance in parts per million.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// A trade update is lost.
    pub drop_update_ppm: u32,
    /// A trade update is delivered twice.
    pub duplicate_update_ppm: u32,
    /// A trade update is delayed by up to `max_delay_ms` (which also reorders updates).
    pub delay_update_ppm: u32,
    /// The longest extra delay, in milliseconds.
    pub max_delay_ms: u64,
    /// The trade-update stream disconnects (checked per update).
    pub disconnect_ppm: u32,
    /// How long a disconnect lasts, in milliseconds.
    pub reconnect_ms: u64,
    /// A submit times out after the order was placed.
    pub submit_timeout_after_ppm: u32,
    /// A submit times out before the order was placed.
    pub submit_timeout_before_ppm: u32,
    /// Any REST call fails with a 5xx (a mutation is then not applied).
    pub server_error_ppm: u32,
    /// Any REST call is refused with 429.
    pub rate_limit_ppm: u32,
    /// The retry-after of a 429, in milliseconds.
    pub retry_after_ms: u64,
    /// The quote feed goes silent for a symbol (per quote update).
    pub quote_gap_ppm: u32,
    /// How long a quote gap lasts, in milliseconds.
    pub quote_gap_ms: u64,
    /// A submit is answered with a gateway timeout (504) but the broker creates the order 0.5 s
    /// to `late_order_max_ms` later; until then a lookup by client order id says 404.
    pub late_order_ppm: u32,
    /// The same for a replace: answered 504, applied 0.5 s to `late_order_max_ms` later (or
    /// dropped if the order closed meanwhile).
    pub late_replace_ppm: u32,
    /// The longest delay of a late order, in milliseconds (default 30,000).
    pub late_order_max_ms: u64,
    /// An order is routed slowly: it stays `accepted`, then `pending_new` (both reported on
    /// the stream) for 0.5 to 5 s before it works, so a replace in that window is refused.
    pub slow_routing_ppm: u32,
    /// A replace refused because its order is not at the venue yet (422 "order isn't sent to
    /// exchange yet") takes effect anyway once the order gets there, as a user of Alpaca saw
    /// (ATAP #306): the old order ends `replaced` by an order under the refused replace's id.
    pub refused_replace_applied_ppm: u32,
    /// A cancel is accepted (`pending_cancel`) but takes `stuck_cancel_ms` to reach the venue,
    /// as orders stuck in `pending_cancel` on Alpaca do (Alpaca-API #111); the order can fill
    /// meanwhile, and a second cancel is refused as not cancelable.
    pub stuck_cancel_ppm: u32,
    /// How long a stuck cancel takes, in milliseconds.
    pub stuck_cancel_ms: u64,
    /// Fill activities lag the trade updates: a fill shows in `GET /v2/account/activities` only
    /// this many milliseconds after it happened (nothing documents how soon an activity is
    /// there; a reconciliation must not take "not there yet" for "never happened").
    pub activity_lag_ms: u64,
    /// Fill activities carry ids unrelated to the trade updates' execution ids (a real FILL
    /// activity has no `execution_id`; nothing documents that its id matches one).
    pub activity_ids_unrelated: bool,
    /// A new order is accepted (a 200 on submit) and then rejected when it reaches the venue:
    /// `rejected` on the stream, nothing of it traded (Alpaca-API #107, pitfall 13).
    pub venue_reject_ppm: u32,
    /// A working order is cancelled by the broker, unasked, 1 to 20 s after it reaches the
    /// venue (a venue's or the broker's risk cancel): `canceled` on the stream with no cancel
    /// request behind it.
    pub broker_cancel_ppm: u32,
    /// The account's owner sells a position from outside the run while a sell of ours works in
    /// it, 1 to 20 s after that sell reaches the venue (the dashboard's "close position"):
    /// our sell is cancelled (`canceled` with no request of ours behind it) and the owner's
    /// market sell takes all, or half, of the shares then available. A sell placed again for
    /// what it had left would oversell (or, on a margin account, sell short).
    pub owner_sale_ppm: u32,
}

impl FaultConfig {
    /// No faults.
    pub fn none() -> Self {
        Self {
            drop_update_ppm: 0,
            duplicate_update_ppm: 0,
            delay_update_ppm: 0,
            max_delay_ms: 0,
            disconnect_ppm: 0,
            reconnect_ms: 1000,
            submit_timeout_after_ppm: 0,
            submit_timeout_before_ppm: 0,
            server_error_ppm: 0,
            rate_limit_ppm: 0,
            retry_after_ms: 1000,
            quote_gap_ppm: 0,
            quote_gap_ms: 0,
            late_order_ppm: 0,
            late_replace_ppm: 0,
            late_order_max_ms: 30_000,
            slow_routing_ppm: 0,
            refused_replace_applied_ppm: 0,
            stuck_cancel_ppm: 0,
            stuck_cancel_ms: 60_000,
            activity_lag_ms: 0,
            activity_ids_unrelated: false,
            venue_reject_ppm: 0,
            broker_cancel_ppm: 0,
            owner_sale_ppm: 0,
        }
    }

    /// Occasional faults: a flaky but usable broker.
    pub fn light() -> Self {
        Self {
            drop_update_ppm: 5_000,
            duplicate_update_ppm: 5_000,
            delay_update_ppm: 20_000,
            max_delay_ms: 500,
            disconnect_ppm: 2_000,
            reconnect_ms: 2_000,
            submit_timeout_after_ppm: 5_000,
            submit_timeout_before_ppm: 5_000,
            server_error_ppm: 5_000,
            rate_limit_ppm: 5_000,
            retry_after_ms: 1_000,
            quote_gap_ppm: 2_000,
            quote_gap_ms: 10_000,
            late_order_ppm: 2_000,
            late_replace_ppm: 5_000,
            late_order_max_ms: 30_000,
            slow_routing_ppm: 10_000,
            refused_replace_applied_ppm: 100_000,
            stuck_cancel_ppm: 2_000,
            stuck_cancel_ms: 30_000,
            activity_lag_ms: 1_000,
            activity_ids_unrelated: false,
            venue_reject_ppm: 2_000,
            broker_cancel_ppm: 2_000,
            owner_sale_ppm: 0,
        }
    }

    /// Frequent faults of every kind: the chaos setting.
    pub fn heavy() -> Self {
        Self {
            drop_update_ppm: 50_000,
            duplicate_update_ppm: 50_000,
            delay_update_ppm: 100_000,
            max_delay_ms: 2_000,
            disconnect_ppm: 20_000,
            reconnect_ms: 3_000,
            submit_timeout_after_ppm: 30_000,
            submit_timeout_before_ppm: 30_000,
            server_error_ppm: 30_000,
            rate_limit_ppm: 30_000,
            retry_after_ms: 2_000,
            quote_gap_ppm: 10_000,
            quote_gap_ms: 15_000,
            late_order_ppm: 40_000,
            late_replace_ppm: 900_000,
            late_order_max_ms: 30_000,
            slow_routing_ppm: 50_000,
            refused_replace_applied_ppm: 500_000,
            stuck_cancel_ppm: 50_000,
            stuck_cancel_ms: 120_000,
            activity_lag_ms: 10_000,
            activity_ids_unrelated: true,
            venue_reject_ppm: 20_000,
            broker_cancel_ppm: 100_000,
            owner_sale_ppm: 30_000,
        }
    }
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_a_fault_free_day() {
        let config = SimConfig::default();
        assert_eq!(config.faults, FaultConfig::none());
        assert!(config.session.open < config.session.start && config.session.start < config.session.close);
        assert_eq!(
            config.session.close - config.session.open,
            chrono::Duration::hours(6) + chrono::Duration::minutes(30)
        );
    }

    #[test]
    fn reads_partial_json_and_refuses_unknown_fields() {
        let config: SimConfig = serde_json::from_str(
            r#"{"seed": 9, "account": {"starting_cash": "5000", "positions": [{"symbol": "aapl", "qty": "1.5"}]}}"#,
        )
        .unwrap();
        assert_eq!(config.seed, 9);
        assert_eq!(config.account.positions[0].symbol.as_str(), "AAPL");
        assert_eq!(config.account.kind, AccountKind::Cash);
        assert!(serde_json::from_str::<SimConfig>(r#"{"sede": 9}"#).is_err());
    }
}
