//! Progress events: what the engine tells the user while it works (the CLI draws them), in place
//! of the predecessor's TradeExecuted / WorkflowCompleted events.

use serde::Serialize;
use tranche_domain::{ItemOutcome, Price, Qty, Side, Symbol, Timestamp};

/// A trading phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Reading the account and cleaning up stale orders.
    Preflight,
    /// Selling.
    Sell,
    /// Waiting for the sells' buying power.
    Settle,
    /// Buying.
    Buy,
}

/// Something the user may want to see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ProgressEvent {
    /// A phase began.
    PhaseStarted {
        /// The phase.
        phase: Phase,
        /// When.
        at: Timestamp,
    },
    /// A phase ended.
    PhaseDone {
        /// The phase.
        phase: Phase,
        /// When.
        at: Timestamp,
    },
    /// An item started working.
    ItemStarted {
        /// The symbol.
        symbol: Symbol,
        /// Buy or sell.
        side: Side,
        /// Shares to trade.
        qty: Qty,
        /// Mid price at the start.
        arrival_mid: Option<Price>,
        /// When.
        at: Timestamp,
    },
    /// An order was placed.
    OrderPlaced {
        /// The symbol.
        symbol: Symbol,
        /// Shares.
        qty: Qty,
        /// Limit, if any.
        limit: Option<Price>,
        /// When.
        at: Timestamp,
    },
    /// A working order was re-priced.
    Repegged {
        /// The symbol.
        symbol: Symbol,
        /// New limit.
        limit: Price,
        /// Re-pegs so far.
        repegs: u32,
        /// When.
        at: Timestamp,
    },
    /// The item escalated to its last-resort order.
    Escalated {
        /// The symbol.
        symbol: Symbol,
        /// The protective limit, if any.
        limit: Option<Price>,
        /// When.
        at: Timestamp,
    },
    /// Shares filled.
    Filled {
        /// The symbol.
        symbol: Symbol,
        /// Shares in this execution.
        qty: Qty,
        /// Its price.
        price: Price,
        /// Filled so far for the item.
        filled: Qty,
        /// Target of the item.
        target: Qty,
        /// When.
        at: Timestamp,
    },
    /// Something the user should know that is not an item's progress: a request refused and
    /// retried, an unknown outcome being looked up, the run aborting (the driver logs it as a
    /// warning: the core itself never logs).
    Warning {
        /// The symbol concerned, if one.
        symbol: Option<Symbol>,
        /// What happened and what the engine does about it.
        message: String,
        /// When.
        at: Timestamp,
    },
    /// An item finished.
    ItemDone {
        /// The symbol.
        symbol: Symbol,
        /// How.
        outcome: ItemOutcome,
        /// Why, when not simply filled.
        reason: Option<String>,
        /// When.
        at: Timestamp,
    },
}
