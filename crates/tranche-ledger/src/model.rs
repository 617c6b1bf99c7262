//! What the ledger records: runs, order intents, order states, fills and finished items, and its
//! errors.
//!
//! Invariants: a fill is identified by its execution id (recorded once, duplicates counted);
//! an intent is identified by its client order id and is written before the request is sent;
//! amounts are decimals, stored exactly.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tranche_domain::{ClientOrderId, ExecutionResult, ItemOutcome, OrderStatus, OrderType, Price, Qty, Side, Symbol};

/// Whether a run is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Started, not finished (possibly interrupted).
    Running,
    /// Finished with a recorded result.
    Completed,
}

impl RunStatus {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
        }
    }
}

/// One run of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Unique id of this run.
    pub run_id: String,
    /// The plan it executes.
    pub plan_id: String,
    /// The plan's correlation id.
    pub correlation_id: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Running or completed.
    pub status: RunStatus,
    /// The result, once completed.
    pub result: Option<ExecutionResult>,
    /// Fills reported more than once and ignored.
    pub duplicate_fills: u64,
}

/// A plan item a run has finished (filled, or stopped on purpose: a deadline, a refusal, a
/// shortfall): a resumed run of the plan reports it as recorded and never trades it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRecord {
    /// The plan.
    pub plan_id: String,
    /// The run that finished it.
    pub run_id: String,
    /// Index of the plan item.
    pub item_index: u32,
    /// The symbol.
    pub symbol: Symbol,
    /// How it ended.
    pub outcome: ItemOutcome,
    /// Why, when it did not fill.
    pub reason: Option<String>,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}

/// An order attempt, written before its request leaves the process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderIntent {
    /// The plan.
    pub plan_id: String,
    /// The run that sent it.
    pub run_id: String,
    /// Index of the plan item.
    pub item_index: u32,
    /// The symbol.
    pub symbol: Symbol,
    /// Buy or sell.
    pub side: Side,
    /// Attempt number (part of the client order id).
    pub attempt: u16,
    /// The idempotency key.
    pub client_order_id: ClientOrderId,
    /// Market or limit.
    pub order_type: OrderType,
    /// Shares.
    pub qty: Qty,
    /// Limit price.
    pub limit_price: Option<Price>,
    /// The broker order this one replaces (a re-peg by replace).
    pub replaces: Option<String>,
    /// The mid price when the item started (the slippage benchmark, kept for resumed runs).
    pub arrival_mid: Option<Price>,
    /// When the intent was recorded.
    pub created_at: DateTime<Utc>,
}

/// The latest known state of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    /// The plan.
    pub plan_id: String,
    /// Its client order id.
    pub client_order_id: ClientOrderId,
    /// Its broker id, once known.
    pub broker_order_id: Option<String>,
    /// The symbol.
    pub symbol: Symbol,
    /// Buy or sell.
    pub side: Side,
    /// Latest status.
    pub status: OrderStatus,
    /// Cumulative filled shares.
    pub filled_qty: Qty,
    /// Average fill price.
    pub filled_avg_price: Option<Price>,
    /// When this state was recorded.
    pub updated_at: DateTime<Utc>,
}

/// One execution, as audited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FillRecord {
    /// Execution id (unique).
    pub execution_id: String,
    /// The plan.
    pub plan_id: String,
    /// The run that saw it.
    pub run_id: String,
    /// Client order id of the order that filled.
    pub client_order_id: ClientOrderId,
    /// Broker id of the order that filled.
    pub broker_order_id: String,
    /// The symbol.
    pub symbol: Symbol,
    /// Buy or sell.
    pub side: Side,
    /// Shares in this execution.
    pub qty: Qty,
    /// Price of this execution.
    pub price: Price,
    /// Best bid when the fill happened (from the quote in force then).
    pub bid: Option<Price>,
    /// Best ask when the fill happened.
    pub ask: Option<Price>,
    /// Type of the order that filled.
    pub order_type: Option<OrderType>,
    /// Strategy weights from the plan's metadata for this symbol.
    pub strategy_attribution: Option<Map<String, Value>>,
    /// When it executed.
    pub filled_at: DateTime<Utc>,
}

/// What happened to a fill handed to the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillOutcome {
    /// Recorded.
    Recorded,
    /// Already recorded (same execution id): ignored and counted.
    Duplicate,
}

/// A run that was begun.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunHandle {
    /// The run's id.
    pub run_id: String,
    /// The plan.
    pub plan_id: String,
    /// True when an earlier, interrupted run of the plan is being continued.
    pub resumed: bool,
}

/// The answer to "begin a run of this plan".
#[derive(Debug, Clone, PartialEq)]
pub enum BeginOutcome {
    /// Go ahead.
    Started(RunHandle),
    /// Another worker runs this plan right now.
    AlreadyRunning {
        /// Its run id.
        run_id: String,
    },
    /// The plan was executed before; here is its result.
    AlreadyCompleted(Box<ExecutionResult>),
}

/// Why the ledger failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The file is not a database, or is damaged.
    #[error("the ledger at {path} is damaged or not a database: {message}")]
    Corrupt {
        /// Where.
        path: String,
        /// What the store said.
        message: String,
    },
    /// The file is a database of something else.
    #[error("{path} is not a Tranche ledger ({message}); choose another ledger path")]
    Foreign {
        /// Where.
        path: String,
        /// What was found.
        message: String,
    },
    /// Written by a newer Tranche.
    #[error("the ledger at {path} has schema version {found}; this Tranche reads up to {supported}: upgrade Tranche")]
    TooNew {
        /// Where.
        path: String,
        /// Its version.
        found: i64,
        /// Ours.
        supported: i64,
    },
    /// The run is not active in this ledger (not begun, or finished).
    #[error("run {run_id} is not active")]
    NotActive {
        /// The run.
        run_id: String,
    },
    /// A storage failure that persisted after retries.
    #[error("ledger storage failed: {0}")]
    Storage(String),
    /// Another worker took the plan over (this worker's lease lapsed and was taken, or the plan
    /// was finished by the other): this worker must stop acting on the plan at once.
    #[error("run {run_id} lost its claim on plan {plan_id} to another worker; it stops here and the other continues")]
    ClaimLost {
        /// The run that lost the claim.
        run_id: String,
        /// The plan.
        plan_id: String,
    },
    /// The ledger was configured with values it cannot work with.
    #[error("invalid ledger setting: {0}")]
    Invalid(String),
}

/// What a proof of the claim on a plan allows: acting on the plan (sending orders, recording
/// what a later run relies on) for `valid_for`, counted from the moment the proof was asked
/// for, on the caller's monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimProof {
    /// How long the claim is proven for (`None`: as long as the process lives, e.g. an
    /// operating-system lock).
    pub valid_for: Option<std::time::Duration>,
}

impl ClaimProof {
    /// A claim that holds as long as the process does.
    pub const UNBOUNDED: Self = Self { valid_for: None };
}
