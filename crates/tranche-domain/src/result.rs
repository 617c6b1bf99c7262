//! The execution result: what happened to every plan item, in the predecessor's JSON shape plus
//! the per-item facts a user needs (filled quantity, average price, slippage, orders, reasons).
//!
//! Invariants: every plan item appears exactly once; totals are computed from fills, never from
//! the plan's requested amounts; the status follows the predecessor's classification (section
//! 2.2) except that a plan with nothing to trade is a success.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::money::{Bps, Price, Qty, Usd};
use crate::side::{Action, OrderType};
use crate::symbol::Symbol;
use crate::time::Timestamp;

/// The run's overall status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// Every item that needed trading was completed (or nothing needed trading).
    Success,
    /// Some items completed, some did not.
    PartialSuccess,
    /// No item that needed trading was completed.
    Failure,
}

impl ExecutionStatus {
    /// Classifies a run from the number of items that needed trading and the number completed:
    /// `(success flag, status)`. Nothing to trade is a success (predecessor defect D35).
    pub fn classify(attempted: u32, succeeded: u32) -> (bool, ExecutionStatus) {
        if attempted == 0 || succeeded >= attempted {
            (true, ExecutionStatus::Success)
        } else if succeeded > 0 {
            (false, ExecutionStatus::PartialSuccess)
        } else {
            (false, ExecutionStatus::Failure)
        }
    }
}

/// What became of one plan item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemOutcome {
    /// The requested quantity filled completely.
    Filled,
    /// Some of it filled; the rest did not (the reason says why).
    PartiallyFilled,
    /// Orders were worked but nothing filled.
    Unfilled,
    /// The item could not be traded (rejected, not tradable, no price...).
    Failed,
    /// Nothing needed doing (below the minimum notional, nothing to sell...).
    Skipped,
    /// A HOLD item: reported only.
    Held,
}

impl ItemOutcome {
    /// True when the item needed trading (it counts toward the run's status).
    pub const fn was_attempted(self) -> bool {
        matches!(self, Self::Filled | Self::PartiallyFilled | Self::Unfilled | Self::Failed)
    }
}

/// One plan item's result. The first fields keep the predecessor's `OrderResult` names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemResult {
    /// The symbol.
    pub symbol: Symbol,
    /// BUY, SELL or HOLD, as in the plan.
    pub action: Action,
    /// Dollars actually traded (filled notional; predecessor name).
    pub trade_amount: Usd,
    /// Shares ordered (predecessor name; same as `requested_qty`).
    pub shares: Qty,
    /// Average fill price (predecessor name; same as `avg_fill_price`).
    pub price: Option<Price>,
    /// The broker id of the item's last order.
    pub order_id: Option<String>,
    /// The item completed (filled, or nothing to do).
    pub success: bool,
    /// Why it failed or stopped short, when it did.
    pub error_message: Option<String>,
    /// When the item started.
    pub timestamp: Timestamp,
    /// Type of the item's last order.
    pub order_type: Option<OrderType>,
    /// When the last fill happened.
    pub filled_at: Option<Timestamp>,
    /// What became of the item.
    pub outcome: ItemOutcome,
    /// Shares the engine set out to trade.
    pub requested_qty: Qty,
    /// Shares filled across all of the item's orders.
    pub filled_qty: Qty,
    /// Dollars the plan asked for (absolute value).
    pub requested_notional: Usd,
    /// Dollars filled across all of the item's orders.
    pub filled_notional: Usd,
    /// Volume-weighted average fill price.
    pub avg_fill_price: Option<Price>,
    /// Mid price when the item started (the slippage benchmark).
    pub arrival_mid: Option<Price>,
    /// Slippage of the average fill against the arrival mid; positive is worse.
    pub slippage_bps: Option<Bps>,
    /// Orders placed for the item (each re-peg by cancel-and-new counts one more).
    pub orders: u32,
    /// Re-prices of working orders.
    pub repegs: u32,
    /// Why the item was skipped, held short or failed.
    pub reason: Option<String>,
}

impl ItemResult {
    /// The item traded all the run set out to trade (its `requested_qty`, the target after
    /// buys were scaled to the buying power or a sell capped at the position): how well the
    /// execution did, apart from what the account allowed. An item with a shortfall against the
    /// plan reports `partially_filled` even when this holds.
    pub fn reached_target(&self) -> bool {
        self.outcome == ItemOutcome::Filled
            || (self.outcome.was_attempted()
                && self.requested_qty.is_positive()
                && self.filled_qty >= self.requested_qty)
    }
}

/// The result of executing a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionResult {
    /// True when the status is `success`.
    pub success: bool,
    /// Overall status.
    pub status: ExecutionStatus,
    /// The plan's id.
    pub plan_id: String,
    /// The plan's correlation id.
    pub correlation_id: String,
    /// One entry per plan item, in plan order.
    pub orders: Vec<ItemResult>,
    /// Items that needed trading (predecessor name).
    pub orders_placed: u32,
    /// Items completed (predecessor name).
    pub orders_succeeded: u32,
    /// Dollars traded, from fills.
    pub total_trade_value: Usd,
    /// When the run finished.
    pub execution_timestamp: Timestamp,
    /// Run metadata (engine version, strategy, timings, ...).
    pub metadata: Option<Map<String, Value>>,
}

impl ExecutionResult {
    /// Builds the result from the per-item results, deriving counts, totals and status.
    pub fn from_items(
        plan_id: &str,
        correlation_id: &str,
        orders: Vec<ItemResult>,
        execution_timestamp: Timestamp,
        metadata: Option<Map<String, Value>>,
    ) -> Self {
        let count = |pred: fn(&ItemResult) -> bool| {
            u32::try_from(orders.iter().filter(|o| pred(o)).count()).unwrap_or(u32::MAX)
        };
        let attempted = count(|o| o.outcome.was_attempted());
        let succeeded = count(|o| o.outcome == ItemOutcome::Filled);
        let (success, status) = ExecutionStatus::classify(attempted, succeeded);
        let total_trade_value = orders
            .iter()
            .try_fold(Usd::ZERO, |acc, o| acc.checked_add(o.filled_notional))
            .unwrap_or(Usd::new(rust_decimal::Decimal::MAX));
        Self {
            success,
            status,
            plan_id: plan_id.to_owned(),
            correlation_id: correlation_id.to_owned(),
            orders,
            orders_placed: attempted,
            orders_succeeded: succeeded,
            total_trade_value,
            execution_timestamp,
            metadata,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(symbol: &str, outcome: ItemOutcome, filled_notional: &str) -> ItemResult {
        ItemResult {
            symbol: Symbol::parse(symbol).unwrap(),
            action: Action::Buy,
            trade_amount: filled_notional.parse().unwrap(),
            shares: Qty::ZERO,
            price: None,
            order_id: None,
            success: outcome == ItemOutcome::Filled,
            error_message: None,
            timestamp: chrono::DateTime::UNIX_EPOCH,
            order_type: None,
            filled_at: None,
            outcome,
            requested_qty: Qty::ZERO,
            filled_qty: Qty::ZERO,
            requested_notional: Usd::ZERO,
            filled_notional: filled_notional.parse().unwrap(),
            avg_fill_price: None,
            arrival_mid: None,
            slippage_bps: None,
            orders: 0,
            repegs: 0,
            reason: None,
        }
    }

    #[test]
    fn classification_table() {
        let cases = [
            ("nothing_to_trade_is_success", 0, 0, (true, ExecutionStatus::Success)),
            ("all_done", 3, 3, (true, ExecutionStatus::Success)),
            ("some_done", 3, 1, (false, ExecutionStatus::PartialSuccess)),
            ("none_done", 3, 0, (false, ExecutionStatus::Failure)),
        ];
        for (name, attempted, succeeded, want) in cases {
            assert_eq!(ExecutionStatus::classify(attempted, succeeded), want, "{name}");
        }
    }

    #[test]
    fn totals_come_from_fills_and_holds_do_not_count() {
        let result = ExecutionResult::from_items(
            "p1",
            "c1",
            vec![
                item("AAPL", ItemOutcome::Filled, "1000.50"),
                item("MSFT", ItemOutcome::PartiallyFilled, "200"),
                item("SPY", ItemOutcome::Held, "0"),
                item("QQQ", ItemOutcome::Skipped, "0"),
            ],
            chrono::DateTime::UNIX_EPOCH,
            None,
        );
        assert_eq!((result.orders_placed, result.orders_succeeded), (2, 1));
        assert_eq!(result.status, ExecutionStatus::PartialSuccess);
        assert!(!result.success);
        assert_eq!(result.total_trade_value, "1200.50".parse().unwrap());
    }

    #[test]
    fn json_keeps_the_predecessor_fields() {
        let result = ExecutionResult::from_items(
            "p1",
            "c1",
            vec![item("AAPL", ItemOutcome::Skipped, "0")],
            chrono::DateTime::UNIX_EPOCH,
            None,
        );
        let json = serde_json::to_value(&result).unwrap();
        for key in [
            "success",
            "status",
            "plan_id",
            "correlation_id",
            "orders",
            "orders_placed",
            "orders_succeeded",
            "total_trade_value",
            "execution_timestamp",
            "metadata",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert_eq!(json["status"], "success");
        let back: ExecutionResult = serde_json::from_value(json).unwrap();
        assert_eq!(back, result);
    }
}
