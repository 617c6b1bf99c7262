//! The trade ledger: the durable record a user audits and the journal the engine recovers from.
//!
//! - [`Ledger`] is the port: runs, order intents (written before the order is sent), order
//!   states, fills (idempotent on execution id) and results, with queries per plan id.
//! - `SqliteLedger` (feature `sqlite`, the embedded default): one file, WAL, durable commits,
//!   versioned schema, one live worker per plan through an operating-system file lock that a
//!   crashed process releases.
//! - `ObjectLedger` (feature `s3`): S3 and compatible stores; every record its own object,
//!   one worker per plan through a fenced lease (conditional writes of a lock object, proven
//!   before every order), and each finished run archived whole under `trade-ledgers/YYYY/MM/DD/`.
//! - [`LedgerSpec`]: where a ledger lives as users write it (`sqlite:PATH`, `s3://BUCKET/PREFIX`),
//!   and how every app opens it; [`LeaseTerms`]: an S3 lease's length and clock-skew allowance.
//! - `OnOwnRuntime` (feature `s3`): any ledger served from a runtime of its own, for callers
//!   whose runtime has no I/O driver or runs in virtual time (the embedded simulator).
//! - `faults` (feature `faults`, for tests): seeded fault injection, `FaultyStore` over any
//!   object store and `FaultyLedger` over any ledger.
//!
//! Invariants: nothing recorded is ever rewritten except an order's latest state and a run's
//! completion; amounts are stored as exact decimal text.

#[cfg(feature = "faults")]
pub mod faults;
mod model;
#[cfg(feature = "s3")]
mod object;
#[cfg(feature = "s3")]
mod own_runtime;
mod port;
mod spec;
#[cfg(feature = "sqlite")]
mod sqlite;
mod terms;

pub use model::{
    BeginOutcome, ClaimProof, FillOutcome, FillRecord, ItemRecord, LedgerError, OrderIntent, OrderRecord, RunHandle,
    RunRecord, RunStatus,
};
#[cfg(feature = "s3")]
pub use object::{s3_store, s3_store_for, ObjectLedger, S3Settings, TimeSource};
#[cfg(feature = "s3")]
pub use own_runtime::OnOwnRuntime;
pub use port::Ledger;
pub use spec::LedgerSpec;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteLedger;
pub use terms::LeaseTerms;
