//! Deterministic simulated US-equity market and broker: the embedded default broker and the test bed.
//!
//! Planned contents (issue "Simulated market and broker"): a seeded per-symbol market (random-walk mid,
//! spread model, quote sizes, quote anomalies, trading-hours clock), a matching model for market,
//! marketable and resting limit orders with L1 queue position and partial fills, cash and margin
//! accounts with Alpaca-like buying power, Alpaca's rejects, and seeded fault injection. It will
//! implement the `Broker`, `OrderEvents` and `QuoteFeed` ports of `tranche-broker` on the `Clock`
//! port, so a simulated trading day runs in virtual time.
