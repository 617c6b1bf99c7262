//! The trade ledger: the durable record a user audits and the journal the engine recovers from.
//!
//! - [`Ledger`] is the port: runs, order intents (written before the order is sent), order
//!   states, fills (idempotent on execution id) and results, with queries per plan id.
//! - [`SqliteLedger`] (feature `sqlite`, the embedded default): one file, WAL, durable commits,
//!   versioned schema, one live worker per plan through an operating-system file lock that a
//!   crashed process releases.
//!
//! Invariants: nothing recorded is ever rewritten except an order's latest state and a run's
//! completion; amounts are stored as exact decimal text.

mod model;
mod port;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use model::{
    BeginOutcome, FillOutcome, FillRecord, LedgerError, OrderIntent, OrderRecord, RunHandle, RunRecord, RunStatus,
};
pub use port::Ledger;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteLedger;
