//! Orders as the broker reports them, and the requests that create or replace them.
//!
//! Invariants: `filled_qty` is cumulative and never decreases when updates are applied; an order's
//! status only moves along the edges of [`crate::status`]; an order with fills is never reported
//! as merely `new`.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::client_order_id::ClientOrderId;
use crate::money::{Price, Qty, Usd};
use crate::side::{OrderType, Side, TimeInForce};
use crate::status::{InvalidTransition, OrderStatus, TradeEvent};
use crate::symbol::Symbol;
use crate::time::Timestamp;

/// The broker's id for an order (a UUID at Alpaca).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BrokerOrderId(String);

impl BrokerOrderId {
    /// Wraps the broker's id text.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }
    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BrokerOrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How much an order is for: shares or dollars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderAmount {
    /// A number of shares (fractional only for fractionable assets, DAY orders).
    Qty(Qty),
    /// A dollar amount (market DAY orders only at Alpaca).
    Notional(Usd),
}

/// A new order, as the engine asks a broker to place it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRequest {
    /// The idempotency key; never reused.
    pub client_order_id: ClientOrderId,
    /// What to trade.
    pub symbol: Symbol,
    /// Buy or sell.
    pub side: Side,
    /// Shares or dollars.
    pub amount: OrderAmount,
    /// Market, limit, ...
    pub order_type: OrderType,
    /// How long it works.
    pub time_in_force: TimeInForce,
    /// Limit price (limit and stop-limit orders); on the tick grid.
    pub limit_price: Option<Price>,
    /// Allowed to execute outside the regular session.
    pub extended_hours: bool,
}

impl OrderRequest {
    /// A regular-session day order for `qty` shares: a limit order at `limit`, or a market order
    /// without one.
    pub fn day(client_order_id: ClientOrderId, symbol: Symbol, side: Side, qty: Qty, limit: Option<Price>) -> Self {
        Self {
            client_order_id,
            symbol,
            side,
            amount: OrderAmount::Qty(qty),
            order_type: if limit.is_some() { OrderType::Limit } else { OrderType::Market },
            time_in_force: TimeInForce::Day,
            limit_price: limit,
            extended_hours: false,
        }
    }
}

/// A replace (Alpaca `PATCH /v2/orders/{id}`): a new order supersedes the old one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaceRequest {
    /// The client order id of the replacement order (new, never reused).
    pub client_order_id: ClientOrderId,
    /// The replacement's quantity: always the remaining quantity, never the original.
    pub qty: Option<Qty>,
    /// The replacement's limit price.
    pub limit_price: Option<Price>,
    /// The replacement's time in force, when it changes.
    pub time_in_force: Option<TimeInForce>,
}

/// An order as the broker reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The broker's id.
    pub id: BrokerOrderId,
    /// The client order id it was placed with.
    pub client_order_id: ClientOrderId,
    /// What it trades.
    pub symbol: Symbol,
    /// Buy or sell.
    pub side: Side,
    /// Order type.
    pub order_type: OrderType,
    /// Time in force.
    pub time_in_force: TimeInForce,
    /// Ordered shares (absent for notional orders).
    pub qty: Option<Qty>,
    /// Ordered dollars (notional orders only).
    pub notional: Option<Usd>,
    /// Limit price.
    pub limit_price: Option<Price>,
    /// Stop price.
    pub stop_price: Option<Price>,
    /// Current status.
    pub status: OrderStatus,
    /// Cumulative filled shares.
    pub filled_qty: Qty,
    /// Volume-weighted average price of all fills so far.
    pub filled_avg_price: Option<Price>,
    /// When the broker created it.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Option<Timestamp>,
    /// When it completed filling.
    pub filled_at: Option<Timestamp>,
    /// The order this one replaced.
    pub replaces: Option<BrokerOrderId>,
    /// The order that replaced this one.
    pub replaced_by: Option<BrokerOrderId>,
    /// Allowed outside the regular session.
    pub extended_hours: bool,
}

impl Order {
    /// Shares still working: ordered minus filled, never negative; `None` for notional orders
    /// that report no share quantity.
    pub fn leaves_qty(&self) -> Option<Qty> {
        let qty = self.qty?;
        let leaves = qty.checked_sub(self.filled_qty)?;
        Some(if leaves.is_negative() { Qty::ZERO } else { leaves })
    }

    /// Applies a status event and keeps the "an order with fills is not `new`" rule.
    /// On a refused edge the order is left unchanged.
    pub fn apply_status_event(&mut self, event: TradeEvent) -> Result<OrderStatus, InvalidTransition> {
        let mut next = self.status.on_event(event)?;
        if next == OrderStatus::New && self.filled_qty.is_positive() {
            next = OrderStatus::PartiallyFilled;
        }
        self.status = next;
        Ok(next)
    }

    /// Merges another report of the same order (from a REST lookup or a trade update, possibly
    /// delivered out of order): keeps the larger cumulative fill, never moves a terminal order
    /// back to open, ignores a non-terminal status from a report with fewer fills (stale), and
    /// never calls an order with fills `new`.
    pub fn merge_report(&mut self, report: &Order) {
        let stale = report.filled_qty < self.filled_qty;
        if report.filled_qty > self.filled_qty {
            self.filled_qty = report.filled_qty;
            self.filled_avg_price = report.filled_avg_price.or(self.filled_avg_price);
            self.filled_at = report.filled_at.or(self.filled_at);
        }
        if !self.status.is_terminal() && (!stale || report.status.is_terminal()) {
            self.status = report.status;
        }
        if self.status == OrderStatus::New && self.filled_qty.is_positive() {
            self.status = OrderStatus::PartiallyFilled;
        }
        self.updated_at = report.updated_at.max(self.updated_at);
        self.replaced_by = report.replaced_by.clone().or(self.replaced_by.take());
        self.replaces = self.replaces.take().or(report.replaces.clone());
    }
}

/// How far above the ask Alpaca holds a market buy: it turns the buy into a marketable limit
/// with a collar of 2.5 % to 4 % and checks buying power at that price (Alpaca's trading API docs,
/// `_index.md`; `alpaca-protocol.md` §8.4). The worst of the range, so that a buy sized for it is
/// never refused, whichever collar the broker picks.
pub const MARKET_BUY_COLLAR: Decimal = Decimal::from_parts(104, 0, 0, false, 2);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A working limit order for tests.
    pub(crate) fn sample_order(qty: &str, filled: &str, status: OrderStatus) -> Order {
        Order {
            id: BrokerOrderId::new("61e69015-8549-4bfd-b9c3-01e75843f47d"),
            client_order_id: ClientOrderId::from_broker("tr-pa-AAPL-b0"),
            symbol: Symbol::parse("AAPL").unwrap(),
            side: Side::Buy,
            order_type: OrderType::Limit,
            time_in_force: TimeInForce::Day,
            qty: Some(qty.parse().unwrap()),
            notional: None,
            limit_price: Some("100.00".parse().unwrap()),
            stop_price: None,
            status,
            filled_qty: filled.parse().unwrap(),
            filled_avg_price: None,
            created_at: chrono::DateTime::UNIX_EPOCH,
            updated_at: None,
            filled_at: None,
            replaces: None,
            replaced_by: None,
            extended_hours: false,
        }
    }

    #[test]
    fn leaves_is_never_negative() {
        assert_eq!(sample_order("10", "4", OrderStatus::PartiallyFilled).leaves_qty(), Some("6".parse().unwrap()));
        assert_eq!(sample_order("10", "12", OrderStatus::Filled).leaves_qty(), Some(Qty::ZERO));
    }

    #[test]
    fn cancel_rejected_with_fills_returns_to_partially_filled() {
        let mut order = sample_order("10", "4", OrderStatus::PendingCancel);
        assert_eq!(order.apply_status_event(TradeEvent::OrderCancelRejected), Ok(OrderStatus::PartiallyFilled));
        let mut filled = sample_order("10", "10", OrderStatus::Filled);
        assert!(filled.apply_status_event(TradeEvent::New).is_err());
        assert_eq!(filled.status, OrderStatus::Filled);
    }

    #[test]
    fn merge_keeps_the_larger_fill_and_terminal_status() {
        let mut order = sample_order("10", "6", OrderStatus::Filled);
        let stale = sample_order("10", "4", OrderStatus::New);
        order.merge_report(&stale);
        assert_eq!(order.filled_qty, "6".parse().unwrap());
        assert_eq!(order.status, OrderStatus::Filled);

        let mut working = sample_order("10", "6", OrderStatus::PartiallyFilled);
        working.merge_report(&stale);
        assert_eq!(working.status, OrderStatus::PartiallyFilled, "a stale report does not regress");
        let mut canceled = sample_order("10", "6", OrderStatus::Canceled);
        canceled.merge_report(&sample_order("10", "6", OrderStatus::Canceled));
        working.merge_report(&canceled);
        assert_eq!(working.status, OrderStatus::Canceled);
    }
}
