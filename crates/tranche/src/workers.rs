//! Two workers on one plan, one broker and one ledger store, at once: what happens when an event
//! that starts a run is delivered twice, or a worker stalls (a long GC pause, a frozen VM, a
//! SIGSTOP) past its lease while another takes over. Each worker has its own clock (the shared
//! virtual clock plus a skew of up to a few seconds), its own copy of the trade-update stream
//! and its own ledger handle whose lease is judged by that worker's clock.
//!
//! Invariants: a paused worker is not polled at all while paused (what it had in flight at the
//! broker completes, as requests already sent would); both workers see every trade update; the
//! harness only runs the workers, it judges nothing: the simulator's referee and the ledger audit
//! do.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;
use tranche_broker::{Clock, OrderEvents, StreamEvent};
use tranche_domain::{ExecutionResult, RebalancePlan, Timestamp};
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
    let mut worker = |name: &str, skew: chrono::Duration| {
        let own: Arc<dyn Clock> = Arc::new(SkewedClock::new(Arc::clone(clock), skew));
        let time = Arc::clone(&own);
        let ledger = ObjectLedger::new(Arc::clone(store), prefix, name)
            .with_lease(setup.lease)
            .with_time_source(Arc::new(move || time.now()));
        let events: Box<dyn OrderEvents> = match copies.next() {
            Some(copy) => Box::new(copy),
            None => Box::new(broker.order_events()),
        };
        let ports =
            Ports { broker: Arc::new(broker.broker()), events, quotes: Arc::new(broker.quote_feed()), clock: own };
        execute_recorded(plan.clone(), engine.clone(), ports, Arc::new(ledger), None)
    };
    let first = worker("worker-a", chrono::Duration::zero());
    let second = worker("worker-b", chrono::Duration::milliseconds(setup.second_skew_ms));
    let start = clock.now();
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
