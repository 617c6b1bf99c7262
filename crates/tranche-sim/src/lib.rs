//! Deterministic simulated US-equity market and broker: the embedded default broker and the
//! test bed of every property test.
//!
//! - [`Sim`] is the synchronous core: seeded per-symbol markets (random-walk mid, spread that
//!   widens at times, displayed sizes, aggressive trade flow, configurable quote anomalies and
//!   stalls), a matching model (market orders walk a size-limited book, marketable limits fill
//!   at the better of limit and book, resting limits fill on trade-throughs and by L1 queue
//!   position with partial fills, replaced orders go to the back of the queue), cash and margin
//!   accounts with Alpaca's buying-power formula and sell-side fees, Alpaca's rejects with their
//!   codes and messages, DAY expiry at the close, and seeded faults (dropped, duplicated,
//!   delayed and reordered updates, stream outages with gap markers, timeouts before and after a
//!   submit, 5xx, 429, quote gaps).
//! - [`SimulatedBroker`] runs a `Sim` on a `Clock` and exposes the `Broker`, `OrderEvents` and
//!   `QuoteFeed` ports.
//!
//! Invariants: the same config, seed and call sequence produce the same event log byte for byte;
//! cash and positions change exactly by fills minus fees; no order fills beyond its quantity;
//! a cash account's buying power never goes negative; every DAY order is final by the close;
//! a replaced order keeps its fills; no fill exists for an order that was never placed. The
//! simulator refuses short sales and supports market and limit orders only.

mod account;
mod config;
mod core;
mod error;
mod listing;
mod market;
mod matching;
mod orders;
mod outbox;
mod ports;
mod reads;
mod realism;
mod referee;
mod rng;
mod session;
mod tally;
mod tape;
mod universe;
mod user_orders;

pub use config::{
    AccountConfig, AccountKind, EarlyClose, FaultConfig, FeeConfig, LatencyConfig, MarketConfig, SessionConfig,
    SimConfig, StartPosition, SymbolRules, UserOrder,
};
pub use core::Sim;
pub use error::{SimError, WashTradeDetail};
pub use ports::{SimBroker, SimOrderEvents, SimQuoteFeed, SimulatedBroker};
pub use realism::{decay_ppm, impact_micros, MarketModel, Microstructure, NameClass, RealismConfig};
pub use referee::{count_violations, Referee, Violation, ViolationKind};
pub use rng::Rng;
pub use session::{us_eastern_dst, Calendar};
pub use tally::Tally;
pub use tape::{Bar, Print, Tape};
pub use universe::{is_listed, AssetProfile};

#[cfg(test)]
mod properties;
#[cfg(test)]
mod referee_tests;
#[cfg(test)]
mod tests;
