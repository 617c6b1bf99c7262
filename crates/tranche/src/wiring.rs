//! One wiring for every app (the CLI, the Lambda function, a downstream service): Alpaca's
//! configuration turned into the engine's ports. Apps keep their flags, environment, logging and
//! output; what connects to what lives here, once.
//!
//! Invariants: the market-data stream's URL and feed come from the configuration
//! (`AlpacaConfig::market_data_stream_url`), never re-derived by an app; the trade-update stream
//! is connected when the ports are taken (one consumer: the engine); the secret leaves the
//! configuration only for the two streams' authentication.

use std::sync::Arc;

use tranche_alpaca::{AlpacaBroker, AlpacaConfig, AlpacaOrderEvents};
use tranche_broker::{BrokerError, Clock, QuoteFeed, SystemClock};
use tranche_engine::Ports;
use tranche_pricing::{AlpacaQuoteFeed, StreamConfig};

/// A connection to Alpaca: its REST client and its quote feed (connecting in the background).
pub struct AlpacaConnection {
    /// The configuration it was opened with.
    pub config: AlpacaConfig,
    /// Trading REST.
    pub broker: Arc<AlpacaBroker>,
    /// Live quotes from the market-data stream.
    pub quotes: Arc<AlpacaQuoteFeed>,
}

impl std::fmt::Debug for AlpacaConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlpacaConnection").field("config", &self.config).finish_non_exhaustive()
    }
}

impl AlpacaConnection {
    /// Opens the REST client and starts the quote feed for `config`. Call it within a tokio
    /// runtime (the feed's connection runs as a task).
    pub fn open(config: AlpacaConfig) -> Result<Self, BrokerError> {
        let broker = Arc::new(AlpacaBroker::new(config.clone())?);
        let mut stream = StreamConfig::new(
            config.market_data_stream_url(),
            config.key_id.clone(),
            config.secret.expose().to_owned(),
        );
        stream.symbol_limit = config.data_symbol_limit;
        let quotes = Arc::new(AlpacaQuoteFeed::connect(stream));
        Ok(Self { config, broker, quotes })
    }

    /// The engine's ports on the system clock, with `quotes` in place of the feed (an app that
    /// records quotes wraps the feed), and the trade-update stream connected now.
    pub fn ports_with(&self, quotes: Arc<dyn QuoteFeed>) -> Ports {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        Ports {
            broker: Arc::clone(&self.broker) as Arc<dyn tranche_broker::Broker>,
            events: Box::new(AlpacaOrderEvents::connect(self.config.clone())),
            quotes,
            clock,
        }
    }

    /// The engine's ports: the REST client, the trade-update stream (connected now), the quote
    /// feed and the system clock.
    pub fn ports(&self) -> Ports {
        self.ports_with(Arc::clone(&self.quotes) as Arc<dyn QuoteFeed>)
    }
}
