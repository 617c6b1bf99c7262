//! Tranche domain: the vocabulary every other crate speaks.
//!
//! Owns the rebalance plan and its validation, symbols and decimal newtypes for money, prices and
//! quantities, orders and their state machine, fills, quotes and their sanity verdict, tick rounding,
//! account snapshots and the execution result. Invariants: pure (no I/O, no async runtime, no clock
//! reads), no `f64` in any amount, and no function panics on any input.

pub mod account;
pub mod client_order_id;
pub mod fill;
pub mod money;
pub mod order;
pub mod plan;
pub mod quote;
pub mod result;
pub mod side;
pub mod status;
pub mod symbol;
pub mod tick;
pub mod time;

pub use account::{Account, AccountStatus, Asset, MarketClock, Position};
pub use client_order_id::{ClientOrderId, DerivedOrderId};
pub use fill::{Execution, ExecutionId, Fill, TradeUpdate};
pub use money::{Bps, Price, Qty, Usd, Weight};
pub use order::{BrokerOrderId, Order, OrderAmount, OrderRequest, ReplaceRequest, MARKET_BUY_COLLAR};
pub use plan::{PlanError, PlanIssue, PlanIssues, PlanItem, RebalancePlan, Urgency};
pub use quote::{Quote, QuoteLimits, QuoteVerdict};
pub use result::{ExecutionResult, ExecutionStatus, ItemOutcome, ItemResult};
pub use side::{Action, OrderType, Side, TimeInForce};
pub use status::{InvalidTransition, OrderStatus, TradeEvent};
pub use symbol::{Symbol, SymbolError};
pub use tick::{round_to_tick, tick_size, Rounding};
pub use time::Timestamp;
