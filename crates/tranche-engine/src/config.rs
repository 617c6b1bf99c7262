//! Engine configuration: one struct with documented defaults, read from TOML with unknown keys
//! refused, and a `validate()` that reports every bad field at once.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tranche_domain::{Bps, Usd, Weight};

/// How orders are worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Smart limit orders: start at the near side, move toward the far side as the time left
    /// runs out and as the quote's sizes lean against the order, then escalate (the default;
    /// see [`SmartPricing`]).
    Smart,
    /// A market order for each item at once (the baseline).
    Market,
    /// A replica of the predecessor's default algorithm (`crate::predecessor`): the liquidity
    /// analyzer's first price, one re-peg two cents through the far side at the phase loop's
    /// second check, a market order at its end.
    Predecessor,
}

/// How the `smart` strategy prices its working orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmartPricing {
    /// From the time left and the quote's imbalance: the limit moves from
    /// `initial_aggressiveness` to `final_aggressiveness` over `working_horizon`, tilted toward
    /// the far side when the sizes lean against the order (more bid than ask before a buy: the
    /// price is likely to rise) and back when they lean with it; re-pegged when a quote moves
    /// the target (at most every `min_repeg_gap`) and on the `repeg_interval` timer; escalated
    /// when the horizon is over (the default).
    Adaptive,
    /// A fixed schedule: `max_repegs` re-pegs, one every `repeg_interval`, from
    /// `initial_aggressiveness` to `final_aggressiveness`, then the escalation; quotes move
    /// nothing between re-pegs (the first `smart`).
    Schedule,
}

/// What the last step after the re-pegs is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Escalation {
    /// A marketable limit `protection_band` beyond the far side (the default).
    ProtectedLimit,
    /// A true market order.
    Market,
}

/// Engine settings. Every field has a default; see each field for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// How orders are worked (default `smart`).
    pub strategy: Strategy,
    /// Time between re-pegs of a working order (default 10 s).
    #[serde(with = "secs")]
    pub repeg_interval: Duration,
    /// Re-pegs before escalating (default 3).
    pub max_repegs: u32,
    /// Where the first limit sits between the near side (0) and the far side (1) (default 0:
    /// the near side; the execution-quality table chose it over 0.2, 0.4 and 0.6).
    pub initial_aggressiveness: Weight,
    /// Where the last re-peg sits (default 1.0: at the far side).
    pub final_aggressiveness: Weight,
    /// The step after the last re-peg (default `protected_limit`).
    pub escalation: Escalation,
    /// How `smart` prices (default `adaptive`).
    pub smart_pricing: SmartPricing,
    /// `adaptive`: how long an item works before its escalation, from its first order (default
    /// 45 s: patience is what a passive order is paid for, and the table weighs it against the
    /// time to complete, which must stay below the predecessor's).
    #[serde(with = "secs")]
    pub working_horizon: Duration,
    /// `adaptive`: how far the quote's imbalance moves the limit, in shares of the spread at a
    /// fully one-sided book (default 0.5; 0 ignores sizes).
    pub imbalance_weight: Weight,
    /// `adaptive`: re-peg when a quote moves the target price, not only on the timer (default
    /// true).
    pub repeg_on_quote: bool,
    /// `adaptive`: the least time between an order's price and a re-peg on a quote (default
    /// 2 s): what re-pegs on quotes may cost in requests. Timer re-pegs and the escalation keep
    /// their own times.
    #[serde(with = "secs")]
    pub min_repeg_gap: Duration,
    /// How far beyond the far side an escalation limit may trade (default 50 bps).
    pub protection_band: Bps,
    /// Oldest usable quote (default 5 s).
    #[serde(with = "secs")]
    pub quote_max_age: Duration,
    /// Widest usable spread (default 200 bps).
    pub max_spread: Bps,
    /// Items worth less are skipped (default $1).
    pub min_notional: Usd,
    /// Share of buying power kept unused when sizing buys (default 1 %).
    pub buying_power_buffer: Bps,
    /// Items worked at the same time within a phase (default 64: a large plan's pace is set
    /// by the request budget, not by this).
    pub concurrency: usize,
    /// The broker's Trading API budget the engine plans its requests against, per minute
    /// (default 190: Alpaca's 200 less a margin; 0: no budget). First orders always go; an
    /// escalation once the phase's first orders are out; a re-peg only with a tenth of the
    /// budget to spare beyond both, else later, spread over the minute.
    pub requests_per_minute: u32,
    /// Deadline of each trading phase (default 5 min).
    #[serde(with = "secs")]
    pub phase_deadline: Duration,
    /// Deadline of the whole run (default 15 min). With `resumable_at_deadline` (a deadline
    /// outside the run follows, as Lambda's invocation), counted from when the run is asked for:
    /// the time the ledger's claim on the plan takes is part of it.
    #[serde(with = "secs")]
    pub run_deadline: Duration,
    /// Longest wait for the account to show the sells' buying power (default 10 s).
    #[serde(with = "secs")]
    pub settle_deadline: Duration,
    /// How often the account is read again while waiting for buying power (default 1 s).
    #[serde(with = "secs")]
    pub settle_poll: Duration,
    /// Wait before a request refused with "try again" (a 429 without `Retry-After`, a
    /// transient error) is sent again; lookups of an order not found yet back off from it,
    /// doubling (default 2 s).
    #[serde(with = "secs")]
    pub retry_wait: Duration,
    /// How long after an accepted cancel the order's final state is looked up if the stream has
    /// not told it (default 5 s).
    #[serde(with = "secs")]
    pub cancel_confirm_wait: Duration,
    /// How long an order whose request was lost may take to appear at the broker; until then a
    /// lookup that finds nothing is not proof that it was never placed (default 60 s).
    #[serde(with = "secs")]
    pub late_order_window: Duration,
    /// The most time the run's end may take past its result to settle the orders it leaves
    /// open: cancels retried, and submits whose answer was lost looked for (within
    /// `late_order_window` of their send) and cancelled when they appear. What is not settled by
    /// then (and by the end of a request then in flight) is named in the result (default 60 s).
    #[serde(with = "secs")]
    pub wind_down: Duration,
    /// Longest wait for stale orders of this plan (from an earlier run) to confirm their
    /// cancellation before trading starts (default 15 s).
    #[serde(with = "secs")]
    pub stale_cancel_deadline: Duration,
    /// How far before the run's (or an item's) start fill activities are read, for clock skew
    /// between this machine and the broker (default 60 s).
    #[serde(with = "secs")]
    pub fill_lookback: Duration,
    /// Let buys use margin: budget from the broker's buying power instead of cash less what
    /// open buy orders hold (default false: never borrow).
    pub use_margin: bool,
    /// With a ledger: a run that reaches `run_deadline` with items unfinished is left resumable
    /// (its orders cancelled, its claim given up, the plan not completed) instead of completed
    /// with those items unfilled, so that its next delivery continues it (default `false`; the
    /// Lambda function sets it, its deadline being the invocation's).
    pub resumable_at_deadline: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::Smart,
            repeg_interval: Duration::from_secs(10),
            max_repegs: 3,
            initial_aggressiveness: Weight::new(rust_decimal::Decimal::ZERO),
            final_aggressiveness: Weight::new(rust_decimal::Decimal::ONE),
            escalation: Escalation::ProtectedLimit,
            smart_pricing: SmartPricing::Adaptive,
            working_horizon: Duration::from_secs(45),
            imbalance_weight: Weight::new(rust_decimal::Decimal::new(5, 1)),
            repeg_on_quote: true,
            min_repeg_gap: Duration::from_secs(2),
            protection_band: Bps::new(50.into()),
            quote_max_age: Duration::from_secs(5),
            max_spread: Bps::new(200.into()),
            min_notional: Usd::new(1.into()),
            buying_power_buffer: Bps::new(100.into()),
            concurrency: 64,
            requests_per_minute: 190,
            phase_deadline: Duration::from_secs(300),
            run_deadline: Duration::from_secs(900),
            settle_deadline: Duration::from_secs(10),
            settle_poll: Duration::from_secs(1),
            retry_wait: Duration::from_secs(2),
            cancel_confirm_wait: Duration::from_secs(5),
            late_order_window: Duration::from_secs(60),
            wind_down: Duration::from_secs(60),
            stale_cancel_deadline: Duration::from_secs(15),
            fill_lookback: Duration::from_secs(60),
            use_margin: false,
            resumable_at_deadline: false,
        }
    }
}

impl EngineConfig {
    /// `smart` with adaptive pricing (the default).
    pub fn is_adaptive(&self) -> bool {
        self.strategy == Strategy::Smart && self.smart_pricing == SmartPricing::Adaptive
    }
}

/// One bad configuration field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The key.
    pub key: &'static str,
    /// What is wrong and what is allowed.
    pub message: String,
}

/// Every bad field of a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigIssues(pub Vec<ConfigIssue>);

impl std::fmt::Display for ConfigIssues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid engine configuration:")?;
        for issue in &self.0 {
            write!(f, "\n  - {}: {}", issue.key, issue.message)?;
        }
        Ok(())
    }
}

impl EngineConfig {
    /// Checks every field; reports all problems at once.
    pub fn validate(&self) -> Result<(), ConfigIssues> {
        let mut issues = Vec::new();
        let mut bad = |key: &'static str, message: String| issues.push(ConfigIssue { key, message });
        let unit = rust_decimal::Decimal::ZERO..=rust_decimal::Decimal::ONE;
        if self.repeg_interval < Duration::from_millis(100) {
            bad("repeg_interval", "must be at least 0.1 s".into());
        }
        if self.max_repegs > 50 {
            bad("max_repegs", format!("must be at most 50, got {}", self.max_repegs));
        }
        if !unit.contains(&self.initial_aggressiveness.get()) {
            bad("initial_aggressiveness", format!("must be between 0 and 1, got {}", self.initial_aggressiveness));
        }
        if !unit.contains(&self.final_aggressiveness.get()) {
            bad("final_aggressiveness", format!("must be between 0 and 1, got {}", self.final_aggressiveness));
        }
        if !unit.contains(&self.imbalance_weight.get()) {
            bad("imbalance_weight", format!("must be between 0 and 1, got {}", self.imbalance_weight));
        }
        if self.final_aggressiveness < self.initial_aggressiveness {
            bad("final_aggressiveness", "must not be below initial_aggressiveness".into());
        }
        if self.protection_band.is_negative() || self.protection_band.get() > rust_decimal::Decimal::from(1000) {
            bad("protection_band", format!("must be between 0 and 1000 bps, got {}", self.protection_band));
        }
        if self.quote_max_age.is_zero() {
            bad("quote_max_age", "must be positive".into());
        }
        if !self.max_spread.is_positive() {
            bad("max_spread", "must be positive".into());
        }
        if self.min_notional.is_negative() {
            bad("min_notional", "must not be negative".into());
        }
        if self.buying_power_buffer.is_negative()
            || self.buying_power_buffer.get() >= rust_decimal::Decimal::from(10_000)
        {
            bad("buying_power_buffer", "must be between 0 and 10000 bps".into());
        }
        if self.requests_per_minute > 100_000 {
            bad("requests_per_minute", format!("must be at most 100000, got {}", self.requests_per_minute));
        }
        if self.concurrency == 0 || self.concurrency > 200 {
            bad("concurrency", format!("must be between 1 and 200, got {}", self.concurrency));
        }
        if self.phase_deadline.is_zero() {
            bad("phase_deadline", "must be positive".into());
        }
        // Every duration is bounded, so that no time computed from one can overflow.
        let day = Duration::from_secs(86_400);
        for (key, value, least) in [
            ("repeg_interval", self.repeg_interval, Duration::ZERO),
            ("working_horizon", self.working_horizon, Duration::from_secs(1)),
            ("min_repeg_gap", self.min_repeg_gap, Duration::from_millis(100)),
            ("quote_max_age", self.quote_max_age, Duration::ZERO),
            ("phase_deadline", self.phase_deadline, Duration::ZERO),
            ("run_deadline", self.run_deadline, Duration::ZERO),
            ("settle_deadline", self.settle_deadline, Duration::ZERO),
            ("settle_poll", self.settle_poll, Duration::from_millis(100)),
            ("retry_wait", self.retry_wait, Duration::from_millis(100)),
            ("cancel_confirm_wait", self.cancel_confirm_wait, Duration::from_millis(100)),
            ("late_order_window", self.late_order_window, Duration::ZERO),
            ("wind_down", self.wind_down, Duration::ZERO),
            ("stale_cancel_deadline", self.stale_cancel_deadline, Duration::from_millis(100)),
            ("fill_lookback", self.fill_lookback, Duration::ZERO),
        ] {
            if value > day {
                bad(key, format!("must be at most one day (86400 s), got {} s", value.as_secs_f64()));
            } else if value < least {
                bad(key, format!("must be at least {} s", least.as_secs_f64()));
            }
        }
        if self.run_deadline < self.phase_deadline {
            bad("run_deadline", "must be at least phase_deadline".into());
        }
        if issues.is_empty() {
            Ok(())
        } else {
            Err(ConfigIssues(issues))
        }
    }
}

/// Durations as (fractional) seconds in TOML.
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(value.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(deserializer)?;
        Duration::try_from_secs_f64(secs)
            .map_err(|_| serde::de::Error::custom(format!("{secs} is not a valid number of seconds")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let config = EngineConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.repeg_interval, Duration::from_secs(10));
        assert_eq!(config.quote_max_age, Duration::from_secs(5));
        assert_eq!(config.min_notional, Usd::new(1.into()));
    }

    #[test]
    fn toml_with_unknown_keys_is_refused() {
        let config: EngineConfig = toml::from_str("repeg_interval = 2.5\nstrategy = \"predecessor\"").unwrap();
        assert_eq!(config.repeg_interval, Duration::from_millis(2500));
        assert_eq!(config.strategy, Strategy::Predecessor);
        let err = toml::from_str::<EngineConfig>("repeg_intervall = 2").unwrap_err().to_string();
        assert!(err.contains("repeg_intervall"), "{err}");
    }

    #[test]
    fn validate_reports_every_bad_field() {
        let config = EngineConfig {
            max_repegs: 99,
            initial_aggressiveness: Weight::new(2.into()),
            concurrency: 0,
            quote_max_age: Duration::ZERO,
            run_deadline: Duration::from_secs(1),
            ..EngineConfig::default()
        };
        let issues = config.validate().unwrap_err();
        let keys: Vec<&str> = issues.0.iter().map(|i| i.key).collect();
        for key in [
            "max_repegs",
            "initial_aggressiveness",
            "final_aggressiveness",
            "concurrency",
            "quote_max_age",
            "run_deadline",
        ] {
            assert!(keys.contains(&key), "{key} missing from {issues}");
        }
    }
}
