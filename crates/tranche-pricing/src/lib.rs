//! Alpaca market-data stream: the codec ([`codec`], JSON and msgpack, separate from the
//! transport so it can be benchmarked and fuzzed), a bounded latest-quote store, and the
//! streaming client that implements the `QuoteFeed` port.

mod client;
pub mod codec;
mod fast_json;
mod fast_msgpack;
pub mod store;

pub use client::{AlpacaQuoteFeed, StreamConfig};
