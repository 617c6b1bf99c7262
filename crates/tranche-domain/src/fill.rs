//! Executions and trade updates.
//!
//! Invariant: a [`Fill`] is one execution, identified by its execution id, with the quantity and
//! price of that execution only (never cumulative); deduplication is by execution id.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::client_order_id::ClientOrderId;
use crate::money::{Price, Qty, Usd};
use crate::order::{BrokerOrderId, Order};
use crate::side::Side;
use crate::status::TradeEvent;
use crate::symbol::Symbol;
use crate::time::Timestamp;

/// The broker's id of one execution.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExecutionId(String);

impl ExecutionId {
    /// Wraps the broker's id text.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }
    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExecutionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The execution carried by a fill or partial-fill update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    /// Execution id.
    pub id: ExecutionId,
    /// Shares in this execution.
    pub qty: Qty,
    /// Price of this execution.
    pub price: Price,
}

/// One update from the trade-update stream: an event and the order as of that event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeUpdate {
    /// What happened.
    pub event: TradeEvent,
    /// The order after the event (for `replaced`, the old order).
    pub order: Order,
    /// The execution, for fills and partial fills that carry one.
    pub execution: Option<Execution>,
    /// Position size after the event, signed.
    pub position_qty: Option<Qty>,
    /// When the event happened.
    pub timestamp: Option<Timestamp>,
}

/// One execution of one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    /// Execution id (unique; the deduplication key).
    pub execution_id: ExecutionId,
    /// The order that filled.
    pub order_id: BrokerOrderId,
    /// Its client order id.
    pub client_order_id: ClientOrderId,
    /// What traded.
    pub symbol: Symbol,
    /// Buy or sell.
    pub side: Side,
    /// Shares in this execution.
    pub qty: Qty,
    /// Price of this execution.
    pub price: Price,
    /// When it executed.
    pub time: Timestamp,
}

impl Fill {
    /// The dollar value of the execution, or `None` on overflow.
    pub fn notional(&self) -> Option<Usd> {
        self.price.notional(self.qty)
    }
}

impl TradeUpdate {
    /// The fill this update reports, when it is a fill or partial fill with an execution.
    pub fn fill(&self) -> Option<Fill> {
        if !matches!(self.event, TradeEvent::Fill | TradeEvent::PartialFill) {
            return None;
        }
        let execution = self.execution.as_ref()?;
        Some(Fill {
            execution_id: execution.id.clone(),
            order_id: self.order.id.clone(),
            client_order_id: self.order.client_order_id.clone(),
            symbol: self.order.symbol.clone(),
            side: self.order.side,
            qty: execution.qty,
            price: execution.price,
            time: self.timestamp.or(self.order.filled_at).or(self.order.updated_at).unwrap_or(self.order.created_at),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::tests::sample_order;
    use crate::status::OrderStatus;

    #[test]
    fn only_fills_with_an_execution_yield_a_fill() {
        let order = sample_order("10", "4", OrderStatus::PartiallyFilled);
        let execution =
            Execution { id: ExecutionId::new("x1"), qty: "4".parse().unwrap(), price: "99.5".parse().unwrap() };
        let mut update = TradeUpdate {
            event: TradeEvent::PartialFill,
            order,
            execution: Some(execution),
            position_qty: None,
            timestamp: None,
        };
        let fill = update.fill().unwrap();
        assert_eq!((fill.qty, fill.price), ("4".parse().unwrap(), "99.5".parse().unwrap()));
        assert_eq!(fill.notional(), Some("398.0".parse().unwrap()));
        update.event = TradeEvent::Canceled;
        assert_eq!(update.fill(), None);
        update.event = TradeEvent::Fill;
        update.execution = None;
        assert_eq!(update.fill(), None);
    }
}
