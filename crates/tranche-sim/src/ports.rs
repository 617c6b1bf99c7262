//! The simulator behind the broker ports: [`SimBroker`] (`Broker`), [`SimOrderEvents`]
//! (`OrderEvents`) and [`SimQuoteFeed`] (`QuoteFeed`), sharing one [`Sim`] and one `Clock`.
//!
//! A pump task advances the simulation as the clock moves, publishes quote changes and wakes
//! the trade-update reader. Each REST-like call is applied at call time and answers after the
//! configured acknowledgement latency. With a clock in virtual time (`TokioClock` under paused
//! tokio time) a whole trading day runs in milliseconds.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{broadcast, Notify};
use tranche_broker::{Broker, BrokerError, Clock, OrderEvents, QuoteFeed, StreamEvent};
use tranche_domain::{
    Account, Asset, BrokerOrderId, ClientOrderId, Fill, MarketClock, Order, OrderRequest, Position, Quote,
    ReplaceRequest, Symbol, Timestamp,
};

use crate::config::SimConfig;
use crate::core::Sim;
use crate::error::SimError;

struct Shared {
    sim: Mutex<Sim>,
    clock: Arc<dyn Clock>,
    pump_wake: Notify,
    events_ready: Notify,
    quotes: broadcast::Sender<Symbol>,
    prints: broadcast::Sender<crate::tape::Print>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Sim> {
        // A panic while holding the lock cannot leave the simulator half-updated in a way that
        // matters more than losing the whole run; keep serving.
        self.sim.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Advances to the clock's now, publishes quote changes and wakes the update reader.
    fn sync(&self, sim: &mut Sim) {
        sim.advance_to(self.clock.now());
        for symbol in sim.take_quote_changes() {
            // No receiver is fine: nobody is listening yet.
            let _ = self.quotes.send(symbol);
        }
        for print in sim.take_prints() {
            let _ = self.prints.send(print);
        }
        if sim.outbox.has_ready() {
            self.events_ready.notify_one();
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Sim) -> R) -> R {
        let mut sim = self.lock();
        self.sync(&mut sim);
        let result = f(&mut sim);
        self.sync(&mut sim);
        drop(sim);
        self.pump_wake.notify_one();
        result
    }

    async fn acknowledge(&self) {
        let ack = self.lock().config().latency.ack_ms;
        if ack > 0 {
            let at =
                self.clock.now() + chrono::Duration::milliseconds(i64::try_from(ack).unwrap_or(i64::MAX / 1_000_000));
            self.clock.sleep_until(at).await;
        }
    }
}

/// A running simulated broker. Dropping it stops the simulation.
pub struct SimulatedBroker {
    shared: Arc<Shared>,
    pump: tokio::task::AbortHandle,
}

impl std::fmt::Debug for SimulatedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedBroker").finish_non_exhaustive()
    }
}

impl SimulatedBroker {
    /// Starts a simulation of `config` on `clock` (spawns the pump on the current tokio runtime).
    pub fn start(config: SimConfig, clock: Arc<dyn Clock>) -> Result<Self, String> {
        let mut sim = Sim::new(config)?;
        sim.advance_to(clock.now());
        let (quotes, _) = broadcast::channel(4096);
        let (prints, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            sim: Mutex::new(sim),
            clock,
            pump_wake: Notify::new(),
            events_ready: Notify::new(),
            quotes,
            prints,
        });
        let pump = tokio::spawn(pump(Arc::clone(&shared))).abort_handle();
        Ok(Self { shared, pump })
    }

    /// The `Broker` port.
    pub fn broker(&self) -> SimBroker {
        SimBroker { shared: Arc::clone(&self.shared) }
    }

    /// The `OrderEvents` port (one reader: the stream has a single consumer, as at Alpaca). Each
    /// call is a new connection: it starts with `Up` (the stream's `listening`), as a restarted
    /// process hears it.
    pub fn order_events(&self) -> SimOrderEvents {
        self.shared.with(|sim| sim.outbox.connect());
        SimOrderEvents { shared: Arc::clone(&self.shared) }
    }

    /// The `QuoteFeed` port.
    pub fn quote_feed(&self) -> SimQuoteFeed {
        SimQuoteFeed { shared: Arc::clone(&self.shared) }
    }

    /// The market's prints from now on, as they happen (a market-data server's trades). A slow
    /// receiver loses the oldest (`RecvError::Lagged`), never blocks the simulation.
    pub fn prints(&self) -> broadcast::Receiver<crate::tape::Print> {
        let receiver = self.shared.prints.subscribe();
        self.shared.with(Sim::keep_prints);
        receiver
    }

    /// Runs `f` on the simulator, brought up to the clock's now (inspection and test control).
    pub fn with_sim<R>(&self, f: impl FnOnce(&mut Sim) -> R) -> R {
        self.shared.with(f)
    }
}

impl Drop for SimulatedBroker {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

async fn pump(shared: Arc<Shared>) {
    loop {
        let next = {
            let mut sim = shared.lock();
            shared.sync(&mut sim);
            sim.next_wakeup()
        };
        match next {
            Some(at) => {
                tokio::select! {
                    () = shared.clock.sleep_until(at) => {}
                    () = shared.pump_wake.notified() => {}
                }
            }
            None => shared.pump_wake.notified().await,
        }
    }
}

/// Attempts of a read before its error is returned (as the Alpaca adapter's).
const READ_ATTEMPTS: u32 = 4;

/// The simulated broker's trading REST.
#[derive(Clone)]
pub struct SimBroker {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SimBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimBroker").finish_non_exhaustive()
    }
}

impl SimBroker {
    /// A read, retried as a broker adapter retries it (the Alpaca adapter does the same): a
    /// transient failure or a 429 is tried again after a backoff on the simulated clock, up to
    /// `READ_ATTEMPTS` times; the engine above does not retry again.
    async fn read<T>(&self, kind: &'static str, f: impl Fn(&mut Sim) -> Result<T, SimError>) -> Result<T, BrokerError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.shared.with(|sim| match sim.call_fault(kind) {
                Some(fault) => Err(fault),
                None => f(sim),
            });
            self.shared.acknowledge().await;
            match result.map_err(|e| e.into_broker_error(false)) {
                Err(e) if e.is_retryable() && attempt < READ_ATTEMPTS => {
                    let wait = match &e {
                        BrokerError::RateLimited { retry_after: Some(d) } => (*d).min(Duration::from_secs(60)),
                        _ => Duration::from_millis(250 << attempt),
                    };
                    let at = self.shared.clock.now() + chrono::Duration::from_std(wait).unwrap_or_default();
                    self.shared.clock.sleep_until(at).await;
                }
                other => return other,
            }
        }
    }

    async fn mutate<T>(&self, f: impl FnOnce(&mut Sim) -> Result<T, SimError>) -> Result<T, BrokerError> {
        let result = self.shared.with(f);
        self.shared.acknowledge().await;
        result.map_err(|e| e.into_broker_error(true))
    }
}

#[async_trait]
impl Broker for SimBroker {
    async fn account(&self) -> Result<Account, BrokerError> {
        self.read("account", |sim| Ok(sim.account())).await
    }

    async fn positions(&self) -> Result<Vec<Position>, BrokerError> {
        self.read("positions", |sim| Ok(sim.positions())).await
    }

    async fn position(&self, symbol: &Symbol) -> Result<Option<Position>, BrokerError> {
        self.read("position", |sim| Ok(sim.position(symbol))).await
    }

    async fn asset(&self, symbol: &Symbol) -> Result<Asset, BrokerError> {
        self.read("asset", |sim| sim.asset(symbol)).await
    }

    async fn assets(&self) -> Result<Vec<Asset>, BrokerError> {
        // The universe's names and the configured ones; a name the simulator would invent is
        // not listed (read it alone, as at Alpaca a name missing from the list is).
        self.read("assets", |sim| Ok(sim.listed_symbols().iter().filter_map(|s| sim.asset(s).ok()).collect())).await
    }

    async fn clock(&self) -> Result<MarketClock, BrokerError> {
        self.read("clock", |sim| Ok(sim.clock())).await
    }

    async fn latest_quote(&self, symbol: &Symbol) -> Result<Quote, BrokerError> {
        self.read("latest_quote", |sim| sim.latest_quote(symbol)).await
    }

    async fn latest_quotes(&self, symbols: &[Symbol]) -> Result<Vec<Quote>, BrokerError> {
        // One request, as Alpaca's multi-symbol endpoint; a symbol without a quote is left out.
        self.read("latest_quotes", |sim| Ok(symbols.iter().filter_map(|s| sim.latest_quote(s).ok()).collect())).await
    }

    async fn submit_order(&self, request: &OrderRequest) -> Result<Order, BrokerError> {
        self.mutate(|sim| sim.submit(request)).await
    }

    async fn replace_order(&self, id: &BrokerOrderId, request: &ReplaceRequest) -> Result<Order, BrokerError> {
        self.mutate(|sim| sim.replace(id, request)).await
    }

    async fn cancel_order(&self, id: &BrokerOrderId) -> Result<(), BrokerError> {
        self.mutate(|sim| sim.cancel(id)).await
    }

    async fn order(&self, id: &BrokerOrderId) -> Result<Order, BrokerError> {
        self.read("order", |sim| sim.order(id)).await
    }

    async fn order_by_client_id(&self, id: &ClientOrderId) -> Result<Order, BrokerError> {
        self.read("order_by_client_id", |sim| sim.order_by_client_id(id)).await
    }

    async fn open_orders(&self) -> Result<Vec<Order>, BrokerError> {
        self.read("open_orders", |sim| Ok(sim.open_orders())).await
    }

    async fn fill_activities(&self, since: Timestamp) -> Result<Vec<Fill>, BrokerError> {
        self.read("fill_activities", |sim| Ok(sim.fill_activities(since))).await
    }
}

/// The simulated trade-update stream.
pub struct SimOrderEvents {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SimOrderEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimOrderEvents").finish_non_exhaustive()
    }
}

#[async_trait]
impl OrderEvents for SimOrderEvents {
    async fn next_event(&mut self) -> Option<StreamEvent> {
        loop {
            {
                let mut sim = self.shared.lock();
                self.shared.sync(&mut sim);
                if let Some(event) = sim.pop_event() {
                    return Some(event);
                }
            }
            self.shared.events_ready.notified().await;
        }
    }
}

/// The simulated quote feed.
#[derive(Clone)]
pub struct SimQuoteFeed {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SimQuoteFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimQuoteFeed").finish_non_exhaustive()
    }
}

#[async_trait]
impl QuoteFeed for SimQuoteFeed {
    async fn subscribe(&self, symbols: &[Symbol]) -> Result<(), BrokerError> {
        self.shared.with(|sim| {
            let limit = sim.config().market.stream_symbol_limit;
            let new: std::collections::BTreeSet<&Symbol> =
                symbols.iter().filter(|s| !sim.subscriptions.contains_key(*s)).collect();
            if limit > 0 && sim.subscriptions.len() + new.len() > limit {
                // Alpaca's answer on the stream: error 405, the subscriptions stay as they were.
                return Err(BrokerError::Rejected {
                    reason: tranche_broker::RejectReason::SymbolLimit,
                    code: Some(405),
                    message: format!("symbol limit exceeded: the feed carries at most {limit} symbols"),
                });
            }
            for symbol in symbols {
                sim.subscribe(symbol);
            }
            Ok(())
        })
    }

    fn release(&self, symbols: &[Symbol]) {
        self.shared.with(|sim| symbols.iter().for_each(|s| sim.release(s)));
    }

    fn symbol_limit(&self) -> Option<usize> {
        let limit = self.shared.lock().config().market.stream_symbol_limit;
        (limit > 0).then_some(limit)
    }

    fn latest(&self, symbol: &Symbol) -> Option<Quote> {
        self.shared.with(|sim| if sim.subscriptions.contains_key(symbol) { sim.published_quote(symbol) } else { None })
    }

    fn changes(&self) -> broadcast::Receiver<Symbol> {
        self.shared.quotes.subscribe()
    }
}
