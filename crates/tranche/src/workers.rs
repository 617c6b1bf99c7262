//! Two workers on one plan, one broker and one ledger store, at once: what happens when an event
//! that starts a run is delivered twice, or a worker stalls (a long GC pause, a frozen VM, a
//! SIGSTOP) past its lease while another takes over. Each worker has its own clock (the shared
//! virtual clock plus a skew of up to a few seconds), its own copy of the trade-update stream
//! and its own ledger handle whose lease is judged by that worker's clock.
//!
//! Invariants: a paused worker is not polled at all while paused (what it had in flight at the
//! broker completes, as requests already sent would); a request still waiting inside a worker's
//! client (for its rate limiter's next permit, or a fresh connection) when the worker freezes
//! leaves only once the worker runs again, as in a stopped process; both workers see every trade
//! update; the harness only runs the workers, it judges nothing: the simulator's referee and the
//! ledger audit do.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;
use tranche_broker::{Broker, BrokerError, Clearance, Clock, OrderEvents, StreamEvent};
use tranche_domain::{
    Account, Asset, BrokerOrderId, ClientOrderId, ExecutionResult, Fill, MarketClock, Order, OrderRequest, Position,
    Quote, RebalancePlan, ReplaceRequest, Symbol, Timestamp,
};
use tranche_engine::{execute_recorded, EngineConfig, Ports, RunError};
use tranche_ledger::{LeaseTerms, ObjectLedger};
use tranche_sim::SimulatedBroker;

/// A worker's own clock: the shared clock plus a fixed skew (positive: this worker's clock is
/// ahead).
#[derive(Clone)]
pub struct SkewedClock {
    inner: Arc<dyn Clock>,
    skew: chrono::Duration,
}

impl std::fmt::Debug for SkewedClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SkewedClock").field("skew", &self.skew).finish_non_exhaustive()
    }
}

impl SkewedClock {
    /// `inner` read `skew` ahead (or behind, when negative).
    pub fn new(inner: Arc<dyn Clock>, skew: chrono::Duration) -> Self {
        Self { inner, skew }
    }
}

#[async_trait]
impl Clock for SkewedClock {
    fn now(&self) -> Timestamp {
        self.inner.now().checked_add_signed(self.skew).unwrap_or_else(|| self.inner.now())
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        let on_inner = deadline.checked_sub_signed(self.skew).unwrap_or(deadline);
        self.inner.sleep_until(on_inner).await;
    }
}

/// One worker's copy of the simulated trade-update stream (every worker of a broker sees every
/// update, as every connection to Alpaca's stream does).
pub struct StreamCopy {
    receiver: broadcast::Receiver<StreamEvent>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for StreamCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamCopy").finish_non_exhaustive()
    }
}

#[async_trait]
impl OrderEvents for StreamCopy {
    async fn next_event(&mut self) -> Option<StreamEvent> {
        match self.receiver.recv().await {
            Ok(event) => Some(event),
            // A reader that fell this far behind lost updates: say so, as a reconnect would.
            Err(broadcast::error::RecvError::Lagged(_)) => Some(StreamEvent::Gap { since: self.clock.now() }),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// Copies of `broker`'s trade-update stream for `readers` workers (a task forwards every event to
/// each copy until the broker stops).
pub fn stream_copies(broker: &SimulatedBroker, clock: &Arc<dyn Clock>, readers: usize) -> Vec<StreamCopy> {
    let (sender, _) = broadcast::channel(16_384);
    let copies = (0..readers).map(|_| StreamCopy { receiver: sender.subscribe(), clock: Arc::clone(clock) }).collect();
    let mut source = broker.order_events();
    tokio::spawn(async move {
        while let Some(event) = source.next_event().await {
            // No reader left is fine: the workers have finished.
            let _ = sender.send(event);
        }
    });
    copies
}

/// Waits inside a worker's client before its orders leave (as the Alpaca adapter's requests
/// wait for the rate limiter's next permit, or for a fresh connection).
#[derive(Debug, Clone)]
pub struct ClientWaits {
    /// The seed of which requests wait, and how long.
    pub seed: u64,
    /// The chance that a submit, replace or cancel waits, in parts per million.
    pub chance_ppm: u32,
    /// The longest wait, in milliseconds (each is drawn up to it).
    pub max_ms: u64,
    /// What the waits did (shared by every client given these waits, so a suite can show they
    /// happened).
    pub seen: Arc<ClientWaitsSeen>,
}

/// How often requests waited in a client, and how often a frozen worker held one back.
#[derive(Debug, Default)]
pub struct ClientWaitsSeen {
    /// Requests that waited before leaving.
    pub waited: std::sync::atomic::AtomicU64,
    /// Requests still waiting when their worker froze, sent once it resumed.
    pub held_by_freeze: std::sync::atomic::AtomicU64,
}

/// A worker's broker as seen from inside its process: a submit, replace or cancel may first
/// wait in the client ([`ClientWaits`]), and one still waiting when the worker freezes leaves
/// once the freeze is over. An order with a clearance is looked at again after the wait, as
/// the Alpaca adapter does after its permit; reads go straight through.
struct ClientQueue {
    inner: Arc<dyn Broker>,
    /// The shared (unskewed) clock the freeze is set on.
    clock: Arc<dyn Clock>,
    /// When the worker is frozen: from, until.
    freeze: Option<(Timestamp, Timestamp)>,
    waits: Option<ClientWaits>,
    rng: std::sync::Mutex<tranche_sim::Rng>,
}

/// `inner` behind a client whose submits, replaces and cancels may first wait as `waits` says
/// (a single worker's, never frozen); `name` seeds its draws apart from other clients'.
pub fn with_client_waits(
    inner: Arc<dyn Broker>,
    clock: Arc<dyn Clock>,
    waits: ClientWaits,
    name: &str,
) -> Arc<dyn Broker> {
    Arc::new(ClientQueue::new(inner, clock, None, Some(waits), name))
}

impl ClientQueue {
    /// `inner` behind the client of worker `name` (which seeds its draws), frozen during
    /// `freeze` on `clock`.
    fn new(
        inner: Arc<dyn Broker>,
        clock: Arc<dyn Clock>,
        freeze: Option<(Timestamp, Timestamp)>,
        waits: Option<ClientWaits>,
        name: &str,
    ) -> Self {
        let seed = waits.as_ref().map_or(0, |w| w.seed);
        Self { inner, clock, freeze, waits, rng: std::sync::Mutex::new(tranche_sim::Rng::derive(seed, name)) }
    }

    /// Waits until the request may leave the process.
    async fn leave(&self) {
        let wait_ms = self.waits.as_ref().map_or(0, |waits| {
            let mut rng = self.rng.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if rng.chance_ppm(waits.chance_ppm) {
                waits.seen.waited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                rng.below(waits.max_ms.max(1))
            } else {
                0
            }
        });
        if wait_ms > 0 {
            self.clock.sleep_until(later(self.clock.now(), Duration::from_millis(wait_ms))).await;
        }
        if let Some((from, until)) = self.freeze {
            let now = self.clock.now();
            if now >= from && now < until {
                // A stopped process sends nothing; what waited goes once it runs again.
                if let Some(waits) = &self.waits {
                    waits.seen.held_by_freeze.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                self.clock.sleep_until(until).await;
            }
        }
    }
}

#[async_trait]
impl Broker for ClientQueue {
    async fn account(&self) -> Result<Account, BrokerError> {
        self.inner.account().await
    }

    async fn positions(&self) -> Result<Vec<Position>, BrokerError> {
        self.inner.positions().await
    }

    async fn position(&self, symbol: &Symbol) -> Result<Option<Position>, BrokerError> {
        self.inner.position(symbol).await
    }

    async fn asset(&self, symbol: &Symbol) -> Result<Asset, BrokerError> {
        self.inner.asset(symbol).await
    }

    async fn assets(&self) -> Result<Vec<Asset>, BrokerError> {
        self.inner.assets().await
    }

    async fn clock(&self) -> Result<MarketClock, BrokerError> {
        self.inner.clock().await
    }

    async fn latest_quote(&self, symbol: &Symbol) -> Result<Quote, BrokerError> {
        self.inner.latest_quote(symbol).await
    }

    async fn latest_quotes(&self, symbols: &[Symbol]) -> Result<Vec<Quote>, BrokerError> {
        self.inner.latest_quotes(symbols).await
    }

    async fn submit_order(&self, request: &OrderRequest) -> Result<Order, BrokerError> {
        self.leave().await;
        self.inner.submit_order(request).await
    }

    async fn replace_order(&self, id: &BrokerOrderId, request: &ReplaceRequest) -> Result<Order, BrokerError> {
        self.leave().await;
        self.inner.replace_order(id, request).await
    }

    async fn submit_order_if(&self, request: &OrderRequest, cleared: Arc<dyn Clearance>) -> Result<Order, BrokerError> {
        self.leave().await;
        self.inner.submit_order_if(request, cleared).await
    }

    async fn replace_order_if(
        &self,
        id: &BrokerOrderId,
        request: &ReplaceRequest,
        cleared: Arc<dyn Clearance>,
    ) -> Result<Order, BrokerError> {
        self.leave().await;
        self.inner.replace_order_if(id, request, cleared).await
    }

    async fn cancel_order(&self, id: &BrokerOrderId) -> Result<(), BrokerError> {
        self.leave().await;
        self.inner.cancel_order(id).await
    }

    async fn order(&self, id: &BrokerOrderId) -> Result<Order, BrokerError> {
        self.inner.order(id).await
    }

    async fn order_by_client_id(&self, id: &ClientOrderId) -> Result<Order, BrokerError> {
        self.inner.order_by_client_id(id).await
    }

    async fn open_orders(&self) -> Result<Vec<Order>, BrokerError> {
        self.inner.open_orders().await
    }

    async fn fill_activities(&self, since: Timestamp) -> Result<Vec<Fill>, BrokerError> {
        self.inner.fill_activities(since).await
    }
}

/// How the second worker meets the first.
#[derive(Debug, Clone)]
pub struct TwoWorkers {
    /// The second worker starts this long after the first.
    pub second_starts_after: Duration,
    /// The second worker's clock skew against the first's, in milliseconds (±5,000 in the suite).
    pub second_skew_ms: i64,
    /// The first worker stops being polled `.0` after its start, for `.1`.
    pub first_paused: Option<(Duration, Duration)>,
    /// The ledger lease of both workers (its clock skew allowance covers `second_skew_ms`).
    pub lease: LeaseTerms,
    /// Waits inside the workers' clients before their orders leave (`None`: none).
    pub client_waits: Option<ClientWaits>,
}

/// What the two workers returned.
#[derive(Debug)]
pub struct TwoOutcomes {
    /// The first worker's answer.
    pub first: Result<ExecutionResult, RunError>,
    /// The second worker's answer.
    pub second: Result<ExecutionResult, RunError>,
}

/// Runs `plan` on two workers sharing `broker` (already started on `clock`) and the ledger
/// `store` under `prefix`, as `setup` says; returns when both have answered.
pub async fn run_two_workers(
    plan: &RebalancePlan,
    engine: &EngineConfig,
    broker: &SimulatedBroker,
    clock: &Arc<dyn Clock>,
    store: &Arc<dyn object_store::ObjectStore>,
    prefix: &str,
    setup: &TwoWorkers,
) -> TwoOutcomes {
    let mut copies = stream_copies(broker, clock, 2).into_iter();
    let start = clock.now();
    let freeze = setup.first_paused.map(|(after, length)| (later(start, after), later(later(start, after), length)));
    let mut worker = |name: &str, skew: chrono::Duration, freeze: Option<(Timestamp, Timestamp)>| {
        let own: Arc<dyn Clock> = Arc::new(SkewedClock::new(Arc::clone(clock), skew));
        let time = Arc::clone(&own);
        let ledger = ObjectLedger::new(Arc::clone(store), prefix, name)
            .with_lease(setup.lease)
            .with_time_source(Arc::new(move || time.now()));
        let events: Box<dyn OrderEvents> = match copies.next() {
            Some(copy) => Box::new(copy),
            None => Box::new(broker.order_events()),
        };
        let client =
            ClientQueue::new(Arc::new(broker.broker()), Arc::clone(clock), freeze, setup.client_waits.clone(), name);
        let ports = Ports { broker: Arc::new(client), events, quotes: Arc::new(broker.quote_feed()), clock: own };
        execute_recorded(plan.clone(), engine.clone(), ports, Arc::new(ledger), None)
    };
    let first = worker("worker-a", chrono::Duration::zero(), freeze);
    let second = worker("worker-b", chrono::Duration::milliseconds(setup.second_skew_ms), None);
    let first = paused(first, Arc::clone(clock), start, setup.first_paused);
    let second = async {
        clock.sleep_until(later(start, setup.second_starts_after)).await;
        second.await
    };
    let (first, second) = tokio::join!(first, second);
    TwoOutcomes { first, second }
}

/// `t` plus `d`, or the end of time when that overflows.
fn later(t: Timestamp, d: Duration) -> Timestamp {
    chrono::Duration::from_std(d).ok().and_then(|d| t.checked_add_signed(d)).unwrap_or(Timestamp::MAX_UTC)
}

/// Polls `run` except during the pause `(after, for)` counted from `start` on `clock`.
async fn paused<T>(
    run: impl std::future::Future<Output = T>,
    clock: Arc<dyn Clock>,
    start: Timestamp,
    pause: Option<(Duration, Duration)>,
) -> T {
    let mut run = std::pin::pin!(run);
    if let Some((after, length)) = pause {
        let from = later(start, after);
        tokio::select! {
            biased;
            out = &mut run => return out,
            () = clock.sleep_until(from) => {}
        }
        // Frozen: not polled until the pause ends.
        clock.sleep_until(later(from, length)).await;
    }
    run.await
}
