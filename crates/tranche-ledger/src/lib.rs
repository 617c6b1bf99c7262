//! The trade ledger: the durable record a user audits and the journal the engine recovers from.
//!
//! Planned contents (issue "Trade ledger"): the `Ledger` port (runs, order intents written before
//! submission, order updates, fills idempotent on execution id, results), a SQLite backend (WAL,
//! durable commits, migrations) and an object-store backend with a conditional-create plan lock.
