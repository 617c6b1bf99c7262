//! The broker ports: trading REST ([`Broker`]), the trade-update stream ([`OrderEvents`]) and
//! the quote feed ([`QuoteFeed`]).
//!
//! Invariants an implementation must keep: `submit_order` and `replace_order` never retry on
//! their own (an ambiguous outcome is [`BrokerError::Uncertain`]); reads may retry transient
//! failures; `position` returns `Ok(None)` for a flat symbol rather than an error.

use async_trait::async_trait;
use tokio::sync::broadcast;
use tranche_domain::{
    Account, Asset, BrokerOrderId, ClientOrderId, Fill, MarketClock, Order, OrderRequest, Position, Quote,
    ReplaceRequest, Symbol, Timestamp,
};

use crate::error::BrokerError;
use crate::events::StreamEvent;

/// Trading operations at a broker.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait Broker: Send + Sync {
    /// The account snapshot (cash, buying power, flags).
    async fn account(&self) -> Result<Account, BrokerError>;

    /// Every open position.
    async fn positions(&self) -> Result<Vec<Position>, BrokerError>;

    /// The position in `symbol`, or `None` when flat.
    async fn position(&self, symbol: &Symbol) -> Result<Option<Position>, BrokerError>;

    /// Asset metadata (tradable, fractionable, shortable...).
    async fn asset(&self, symbol: &Symbol) -> Result<Asset, BrokerError>;

    /// Every active US-equity asset, in one request: a large plan reads its assets this way
    /// once rather than one request per symbol.
    async fn assets(&self) -> Result<Vec<Asset>, BrokerError>;

    /// The market clock.
    async fn clock(&self) -> Result<MarketClock, BrokerError>;

    /// The latest quote from the broker's REST market data (the fallback when the feed has
    /// nothing fresh).
    async fn latest_quote(&self, symbol: &Symbol) -> Result<Quote, BrokerError>;

    /// The latest quotes of many symbols; a symbol without a quote is left out. Brokers that
    /// can answer in one request override this; the default asks symbol by symbol and fails on
    /// the first error other than "not found".
    async fn latest_quotes(&self, symbols: &[Symbol]) -> Result<Vec<Quote>, BrokerError> {
        let mut quotes = Vec::with_capacity(symbols.len());
        for symbol in symbols {
            match self.latest_quote(symbol).await {
                Ok(q) => quotes.push(q),
                Err(BrokerError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(quotes)
    }

    /// Places an order. Never retried internally: an ambiguous outcome is `Uncertain`.
    async fn submit_order(&self, request: &OrderRequest) -> Result<Order, BrokerError>;

    /// Replaces a working order; returns the new order. May still lose a race with a fill.
    async fn replace_order(&self, id: &BrokerOrderId, request: &ReplaceRequest) -> Result<Order, BrokerError>;

    /// Places an order as [`Broker::submit_order`] does, if `cleared` still holds at the last
    /// moment before the request leaves: after any wait in the client (for the request budget's
    /// next permit), so that a right to act proven before a long wait is looked at again when
    /// the wait is over. When it no longer holds, nothing is sent and the answer is
    /// [`BrokerError::Transient`] (no effect). The default looks just before
    /// [`Broker::submit_order`]; an adapter that waits inside overrides it.
    async fn submit_order_if(
        &self,
        request: &OrderRequest,
        cleared: std::sync::Arc<dyn Clearance>,
    ) -> Result<Order, BrokerError> {
        if !cleared.holds() {
            return Err(not_cleared());
        }
        self.submit_order(request).await
    }

    /// Replaces a working order as [`Broker::replace_order`] does, if `cleared` still holds at
    /// the last moment before the request leaves (see [`Broker::submit_order_if`]).
    async fn replace_order_if(
        &self,
        id: &BrokerOrderId,
        request: &ReplaceRequest,
        cleared: std::sync::Arc<dyn Clearance>,
    ) -> Result<Order, BrokerError> {
        if !cleared.holds() {
            return Err(not_cleared());
        }
        self.replace_order(id, request).await
    }

    /// Requests a cancel; the final state arrives as a trade update (the order may still fill).
    async fn cancel_order(&self, id: &BrokerOrderId) -> Result<(), BrokerError>;

    /// One order by broker id.
    async fn order(&self, id: &BrokerOrderId) -> Result<Order, BrokerError>;

    /// One order by client order id (the way to resolve an uncertain submit).
    async fn order_by_client_id(&self, id: &ClientOrderId) -> Result<Order, BrokerError>;

    /// Every open (non-terminal) order in the account.
    async fn open_orders(&self) -> Result<Vec<Order>, BrokerError>;

    /// Fill activities at or after `since`, oldest first.
    async fn fill_activities(&self, since: Timestamp) -> Result<Vec<Fill>, BrokerError>;
}

/// The right to send an order, looked at by [`Broker::submit_order_if`] and
/// [`Broker::replace_order_if`] at the last moment before the request leaves.
pub trait Clearance: Send + Sync {
    /// True while an order may still leave.
    fn holds(&self) -> bool;
}

/// The answer of [`Broker::submit_order_if`] and [`Broker::replace_order_if`] when their
/// clearance no longer held: nothing was sent.
pub fn not_cleared() -> BrokerError {
    BrokerError::Transient { message: "not sent: its clearance lapsed before it could leave".into() }
}

/// The trade-update stream, with markers for its own state.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait OrderEvents: Send {
    /// The next update or marker; `None` when the stream has been shut down for good.
    async fn next_event(&mut self) -> Option<StreamEvent>;
}

/// Live quotes: reference-counted subscriptions and a latest-quote store.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait QuoteFeed: Send + Sync {
    /// Adds one reference to each symbol's subscription (subscribing on the first).
    async fn subscribe(&self, symbols: &[Symbol]) -> Result<(), BrokerError>;

    /// Drops one reference per symbol (unsubscribing on the last). Immediate, never waiting on
    /// the network: a release made before a subscribe counts before it.
    fn release(&self, symbols: &[Symbol]);

    /// The latest quote held for `symbol`, whatever its age (the caller judges freshness).
    fn latest(&self, symbol: &Symbol) -> Option<Quote>;

    /// Notifications of which symbol's quote changed. Bounded: a lagging receiver misses
    /// notifications (and should re-read every symbol it cares about), never memory.
    fn changes(&self) -> broadcast::Receiver<Symbol>;

    /// The most symbols the feed streams at once (Alpaca's Basic plan: 30 on `iex`), or `None`
    /// without a limit. A subscribe past it is refused with [`crate::RejectReason::SymbolLimit`];
    /// a caller streams the symbols that matter most and reads the others' quotes by REST.
    fn symbol_limit(&self) -> Option<usize>;
}

/// A feed without live quotes: the engine then prices from the broker's REST latest quote
/// (until a market-data stream is configured).
#[derive(Debug)]
pub struct NoQuoteFeed {
    changes: broadcast::Sender<Symbol>,
}

impl Default for NoQuoteFeed {
    fn default() -> Self {
        Self { changes: broadcast::channel(1).0 }
    }
}

#[async_trait]
impl QuoteFeed for NoQuoteFeed {
    async fn subscribe(&self, _symbols: &[Symbol]) -> Result<(), BrokerError> {
        Ok(())
    }

    fn release(&self, _symbols: &[Symbol]) {}

    fn latest(&self, _symbol: &Symbol) -> Option<Quote> {
        None
    }

    fn changes(&self) -> broadcast::Receiver<Symbol> {
        self.changes.subscribe()
    }

    fn symbol_limit(&self) -> Option<usize> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn mocks_stand_in_for_the_ports() {
        let mut broker = MockBroker::new();
        broker
            .expect_cancel_order()
            .returning(|_| Err(BrokerError::rejected(crate::RejectReason::NotCancelable, "order is not cancelable")));
        let err = broker.cancel_order(&BrokerOrderId::new("x")).await.unwrap_err();
        assert_eq!(err.reject_reason(), Some(&crate::RejectReason::NotCancelable));

        let mut events = MockOrderEvents::new();
        events.expect_next_event().times(1).returning(|| Some(StreamEvent::Up));
        assert_eq!(events.next_event().await, Some(StreamEvent::Up));
    }
}
