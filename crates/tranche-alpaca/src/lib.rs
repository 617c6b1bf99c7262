//! The Alpaca adapter: the `Broker` port over Alpaca's trading REST API and the `OrderEvents`
//! port over its trade_updates WebSocket, written field by field from the protocol reference.
//!
//! - [`AlpacaBroker`]: typed endpoints, tolerant decoding ([`dto`]), every error mapped into
//!   `BrokerError`, GET retries with backoff and jitter, never a blind retry of a mutation, a
//!   client-side rate limiter that honours the server's headers.
//! - [`AlpacaOrderEvents`]: one owner of the socket, reconnect with backoff and jitter, silence
//!   watchdog, explicit down / gap / up markers.
//!
//! Invariants: the secret appears only in the authentication header and message (never in a
//! `Debug`, log or error); a submit, replace or cancel whose outcome is unknown is reported as
//! `Uncertain`.

mod config;
pub mod dto;
mod errors;
mod limiter;
mod rest;
mod stream;

pub use config::{
    default_symbol_limit, AlpacaConfig, ConfigError, Secret, DATA_STREAM_URL, DATA_URL, DEFAULT_FEED, IEX_SYMBOL_LIMIT,
    LIVE_URL, PAPER_URL,
};
pub use errors::map_status;
pub use limiter::RateLimiter;
pub use rest::AlpacaBroker;
pub use stream::{decode_trade_update, AlpacaOrderEvents};
