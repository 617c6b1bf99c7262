//! Tranche broker ports: the traits the engine drives and the adapters implement.
//!
//! Owns [`Broker`] (trading REST), [`OrderEvents`] (the trade-update stream with its up / down /
//! gap markers), [`QuoteFeed`] (reference-counted quote subscriptions and the latest-quote store),
//! [`Clock`] (now and sleep, with a system clock and a manual clock for virtual time) and the
//! [`BrokerError`] taxonomy, split by what the caller can do. Invariant: nothing here knows a
//! concrete broker; the engine depends on this crate, adapters implement it.
//!
//! With the `mock` feature, `mockall` mocks of every port are exported (`MockBroker`, ...).

mod clock;
mod error;
mod events;
mod ports;
mod shown;

pub use clock::{Clock, ManualClock, SystemClock, TokioClock};
pub use error::{BrokerError, RejectReason};
pub use events::StreamEvent;
pub use ports::{not_cleared, Broker, Clearance, NoQuoteFeed, OrderEvents, QuoteFeed};
pub use shown::{printable, url_without_userinfo};

#[cfg(any(test, feature = "mock"))]
pub use clock::MockClock;
#[cfg(any(test, feature = "mock"))]
pub use ports::{MockBroker, MockOrderEvents, MockQuoteFeed};

/// Result of a broker call.
pub type BrokerResult<T> = Result<T, BrokerError>;
