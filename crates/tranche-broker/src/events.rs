//! What the trade-update stream delivers: updates, and markers for the stream's own state.
//!
//! Invariant: after a [`StreamEvent::Down`] the consumer must assume updates were lost until it has
//! reconciled; a [`StreamEvent::Gap`] says so explicitly with the time the gap began.

use tranche_domain::{Timestamp, TradeUpdate};

/// One item from an [`crate::OrderEvents`] stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// An order update.
    Update(Box<TradeUpdate>),
    /// The stream is connected, authenticated and listening.
    Up,
    /// The stream is down; no updates arrive until the next `Up`.
    Down {
        /// Why, for logs.
        reason: String,
    },
    /// Updates between `since` and the next `Up` may have been lost: reconcile from REST.
    Gap {
        /// When the stream was last known to be complete.
        since: Timestamp,
    },
}
