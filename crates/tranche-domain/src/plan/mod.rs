//! The rebalance plan: what the user asks Tranche to trade.
//!
//! Reads the predecessor's plan JSON (decimals as strings or numbers, timestamps with offsets,
//! optional metadata with `strategy_attribution`). Invariant: a `RebalancePlan` value that exists
//! has passed [`RebalancePlan::validate`]; parsing reports every problem at once, each with its
//! path (`items[3].target_weight`), never only the first.

mod parse;
mod validate;

pub use validate::{id_problem, MAX_ID_CHARS};

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::money::{Usd, Weight};
use crate::side::Action;
use crate::symbol::Symbol;
use crate::time::Timestamp;

/// How urgently the portfolio module wants the plan done (carried, reported, not yet acted on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Urgency {
    /// No hurry.
    Low,
    /// The default.
    Normal,
    /// Soon.
    High,
    /// Now.
    Urgent,
}

/// One symbol's line in the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanItem {
    /// The symbol to trade.
    pub symbol: Symbol,
    /// Weight in the portfolio now (0..1).
    pub current_weight: Weight,
    /// Weight wanted (0..1); 0 on a SELL means "liquidate the whole position".
    pub target_weight: Weight,
    /// `target_weight - current_weight`.
    pub weight_diff: Weight,
    /// Dollar value wanted (≥ 0).
    pub target_value: Usd,
    /// Dollar value held now (≥ 0).
    pub current_value: Usd,
    /// Dollars to trade: positive buys, negative sells.
    pub trade_amount: Usd,
    /// BUY, SELL or HOLD.
    pub action: Action,
    /// 1 (highest) to 5; carried but not used for ordering.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
}

impl PlanItem {
    /// A SELL whose target weight is zero: close the whole position, fractional remainder included.
    pub fn is_liquidation(&self) -> bool {
        self.action == Action::Sell && self.target_weight.is_zero()
    }
}

/// A rebalance plan: per symbol BUY / SELL / HOLD with a dollar amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RebalancePlan {
    /// Plan schema version (default `1.0`).
    pub schema_version: String,
    /// Correlation id of the workflow that produced the plan.
    pub correlation_id: String,
    /// Id of the event that caused the plan.
    pub causation_id: String,
    /// When the plan was made.
    pub timestamp: Timestamp,
    /// The plan's id: the idempotency key of the whole run.
    pub plan_id: String,
    /// The items, in plan order.
    pub items: Vec<PlanItem>,
    /// Portfolio value the plan was computed from (≥ 0).
    pub total_portfolio_value: Usd,
    /// Sum of trade amounts, as the portfolio module states it.
    pub total_trade_value: Usd,
    /// Drift tolerance the portfolio module used (0..1; default 0.05).
    pub max_drift_tolerance: Weight,
    /// Urgency (default NORMAL).
    pub execution_urgency: Urgency,
    /// Expected duration, when given (≥ 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_duration_minutes: Option<u32>,
    /// Free-form metadata; `strategy_attribution` is read by the ledger.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

impl RebalancePlan {
    /// Parses and validates plan JSON text.
    pub fn from_json_str(text: &str) -> Result<Self, PlanError> {
        let value: Value = serde_json::from_str(text).map_err(|e| PlanError::Syntax {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        Self::from_value(&value).map_err(PlanError::Invalid)
    }

    /// Parses and validates a plan from a JSON value, collecting every problem.
    pub fn from_value(value: &Value) -> Result<Self, PlanIssues> {
        parse::plan_from_value(value)
    }

    /// Checks the cross-field rules (ranges, signs, duplicates) on a plan built in code.
    pub fn validate(&self) -> Result<(), PlanIssues> {
        let mut issues = Vec::new();
        validate::check_plan(self, &mut issues);
        if issues.is_empty() {
            Ok(())
        } else {
            Err(PlanIssues(issues))
        }
    }

    /// The plan as pretty JSON (the same shape it is read from).
    pub fn to_json_pretty(&self) -> String {
        // Serializing plain data with string keys cannot fail; fall back to an empty object anyway.
        serde_json::to_string_pretty(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// The strategy weights for `symbol` from `metadata.strategy_attribution`, when present.
    pub fn strategy_attribution(&self, symbol: &Symbol) -> Option<&Map<String, Value>> {
        self.metadata.as_ref()?.get("strategy_attribution")?.as_object()?.get(symbol.as_str())?.as_object()
    }
}

impl<'de> Deserialize<'de> for RebalancePlan {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_value(&value).map_err(serde::de::Error::custom)
    }
}

/// One problem found in a plan, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanIssue {
    /// Where: `plan_id`, `items[3].target_weight`, ...
    pub path: String,
    /// What is wrong and what was found.
    pub message: String,
}

/// Every problem found in a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct PlanIssues(pub Vec<PlanIssue>);

impl fmt::Display for PlanIssues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "the plan has {n} problem{}:", if n == 1 { "" } else { "s" })?;
        for issue in &self.0 {
            write!(f, "\n  - {}: {}", issue.path, issue.message)?;
        }
        Ok(())
    }
}

/// Why a plan could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Not JSON at all.
    #[error("the plan is not valid JSON (line {line}, column {column}): {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// JSON, but not a valid plan.
    #[error("{0}")]
    Invalid(PlanIssues),
}

#[cfg(test)]
mod tests;
