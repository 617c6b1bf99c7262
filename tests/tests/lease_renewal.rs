//! The engine's renewals of its claim on the plan (the S3 ledger's lease), on the simulator in
//! virtual time: a renewal that is slow or fails now and then does not stop the run (the engine
//! v1 aborted a run on one failed heartbeat), and the plan is completed under the claim. (That
//! renewals never overlap is structural: the object ledger makes them one at a time per run.)
//! And a claim that is slow to take counts against the run's deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tranche::domain::{ExecutionResult, RebalancePlan};
use tranche::engine::{execute_recorded, EngineConfig, Ports};
use tranche::ledger::{
    BeginOutcome, ClaimProof, FillOutcome, FillRecord, ItemRecord, LeaseTerms, Ledger, LedgerError, ObjectLedger,
    OrderIntent, OrderRecord, RunHandle, RunRecord,
};
use tranche::sim::SimConfig;
use tranche::simulation::{account_from_plan, start_sim};
use tranche_tests::example;

/// An object ledger whose claim proofs take `slow` each and fail every seventh time, counting how
/// many were made (and when), whose `begin` takes `slow_begin`, and whose reads of a plan's
/// intents, fills and items take `slow_reads` each.
struct SlowClaims {
    inner: ObjectLedger,
    slow: Duration,
    slow_begin: Duration,
    slow_reads: std::sync::Mutex<Duration>,
    proofs: AtomicU32,
    proved_at: std::sync::Mutex<Vec<tokio::time::Instant>>,
}

impl SlowClaims {
    async fn read_slowly(&self) {
        let slow = *self.slow_reads.lock().unwrap();
        tokio::time::sleep(slow).await;
    }
}

#[async_trait]
impl Ledger for SlowClaims {
    async fn begin(&self, plan: &RebalancePlan) -> Result<BeginOutcome, LedgerError> {
        tokio::time::sleep(self.slow_begin).await;
        self.inner.begin(plan).await
    }
    fn claim_renewal(&self) -> Option<Duration> {
        self.inner.claim_renewal()
    }
    async fn prove_claim(&self, run: &RunHandle) -> Result<ClaimProof, LedgerError> {
        let n = self.proofs.fetch_add(1, Ordering::SeqCst);
        self.proved_at.lock().unwrap().push(tokio::time::Instant::now());
        tokio::time::sleep(self.slow).await;
        if n % 7 == 6 {
            return Err(LedgerError::Storage("injected: 503 SlowDown".into()));
        }
        self.inner.prove_claim(run).await
    }
    async fn record_intent(&self, run: &RunHandle, intent: &OrderIntent) -> Result<(), LedgerError> {
        self.inner.record_intent(run, intent).await
    }
    async fn record_order(&self, run: &RunHandle, order: &OrderRecord) -> Result<(), LedgerError> {
        self.inner.record_order(run, order).await
    }
    async fn record_fill(&self, run: &RunHandle, fill: &FillRecord) -> Result<FillOutcome, LedgerError> {
        self.inner.record_fill(run, fill).await
    }
    async fn record_item(&self, run: &RunHandle, item: &ItemRecord) -> Result<(), LedgerError> {
        self.inner.record_item(run, item).await
    }
    async fn items(&self, plan_id: &str) -> Result<Vec<ItemRecord>, LedgerError> {
        self.read_slowly().await;
        self.inner.items(plan_id).await
    }
    async fn finish(&self, run: &RunHandle, result: &ExecutionResult) -> Result<(), LedgerError> {
        self.inner.finish(run, result).await
    }
    async fn runs(&self, plan_id: Option<&str>) -> Result<Vec<RunRecord>, LedgerError> {
        self.inner.runs(plan_id).await
    }
    async fn intents(&self, plan_id: &str) -> Result<Vec<OrderIntent>, LedgerError> {
        self.read_slowly().await;
        self.inner.intents(plan_id).await
    }
    async fn orders(&self, plan_id: &str) -> Result<Vec<OrderRecord>, LedgerError> {
        self.inner.orders(plan_id).await
    }
    async fn fills(&self, plan_id: &str) -> Result<Vec<FillRecord>, LedgerError> {
        self.read_slowly().await;
        self.inner.fills(plan_id).await
    }
}

/// The 30-symbol plan on the simulator, with a ledger whose proofs take `slow` and whose begin
/// takes `slow_begin`; the plan, the ledger and the ports.
fn thirty_symbols(slow: Duration, slow_begin: Duration) -> (RebalancePlan, Arc<SlowClaims>, Ports) {
    let plan = RebalancePlan::from_json_str(&std::fs::read_to_string(example("plan-30.json")).unwrap()).unwrap();
    let ports = sim_ports(&plan);
    let time = Arc::clone(&ports.clock);
    let lease = LeaseTerms::new(Duration::from_secs(9), Duration::from_secs(1)).unwrap();
    let inner = ObjectLedger::new(Arc::new(object_store::memory::InMemory::new()), "lease", "worker")
        .with_lease(lease)
        .with_time_source(Arc::new(move || time.now()));
    let ledger = Arc::new(SlowClaims {
        inner,
        slow,
        slow_begin,
        slow_reads: std::sync::Mutex::new(Duration::ZERO),
        proofs: AtomicU32::new(0),
        proved_at: std::sync::Mutex::new(Vec::new()),
    });
    (plan, ledger, ports)
}

/// The plan's account on a fresh simulator.
fn sim_ports(plan: &RebalancePlan) -> Ports {
    let (broker, clock) = start_sim(account_from_plan(plan, &SimConfig::default())).unwrap();
    Ports {
        broker: Arc::new(broker.broker()),
        events: Box::new(broker.order_events()),
        quotes: Arc::new(broker.quote_feed()),
        clock,
    }
}

/// The run's deadline counts from when the run is asked for: a claim that takes 40 s of a 60 s
/// deadline leaves the run 20 s, not 60 (on Lambda, the invocation's deadline follows, and a run
/// past it is killed with its orders working and nothing recorded).
#[tokio::test(start_paused = true)]
async fn a_claim_slow_to_take_counts_against_the_run_deadline() {
    let (plan, ledger, ports) = thirty_symbols(Duration::ZERO, Duration::from_secs(40));
    let clock = Arc::clone(&ports.clock);
    let config =
        EngineConfig { run_deadline: Duration::from_secs(60), resumable_at_deadline: true, ..EngineConfig::default() };
    let started = clock.now();
    let outcome = execute_recorded(plan, config, ports, ledger as _, None).await;
    let seconds = (clock.now() - started).num_seconds();
    assert!(
        matches!(outcome, Err(tranche::engine::RunError::LeftResumable { .. })),
        "the 30-symbol plan takes longer than the 20 s left: {:?}",
        outcome.map(|r| (r.status, r.metadata))
    );
    // The deadline at 60 s, then its cancels, final reads and the result.
    assert!(seconds <= 60 + 30, "the run ended {seconds} s after it was asked for");

    // Without a deadline outside the run (the CLI's), the claim's time takes nothing from it: a
    // deadline eaten by a slow claim would end the plan with everything unfilled.
    let (plan, ledger, ports) = thirty_symbols(Duration::ZERO, Duration::from_secs(40));
    let config = EngineConfig { run_deadline: Duration::from_secs(60), ..EngineConfig::default() };
    let result = execute_recorded(plan, config, ports, ledger as _, None).await.expect("completed");
    assert!(result.orders.iter().filter(|r| r.reached_target()).count() >= 25, "{:?}", result.status);
}

#[tokio::test(start_paused = true)]
async fn slow_and_failing_renewals_do_not_stop_the_run() {
    // Each renewal takes two seconds of its three-second period, and every seventh one fails.
    let (plan, ledger, ports) = thirty_symbols(Duration::from_secs(2), Duration::ZERO);
    let clock = Arc::clone(&ports.clock);
    let started = clock.now();
    let result = execute_recorded(plan.clone(), EngineConfig::default(), ports, Arc::clone(&ledger) as _, None)
        .await
        .expect("slow renewals do not stop the run");
    let seconds = (clock.now() - started).num_seconds();
    assert!(result.orders.iter().filter(|r| r.reached_target()).count() >= 25, "{:#?}", result.orders);
    let proofs = ledger.proofs.load(Ordering::SeqCst);
    // One proof per order at least, and renewals on their own schedule over the whole run.
    assert!(proofs >= 40, "{proofs} proofs in {seconds} s");
    let runs = ledger.inner.runs(Some(&plan.plan_id)).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, tranche::ledger::RunStatus::Completed);
}

/// A resumed run reads the interrupted run's intents, fills and items before it trades (for a
/// large plan thousands of objects, one request each: longer than the lease). The claim is
/// renewed while it reads: a claim left to lapse there lets a redelivered event take the plan
/// over, and the first worker then stops with nothing done, again and again.
#[tokio::test(start_paused = true)]
async fn a_resumed_run_renews_its_claim_while_it_reads_the_interrupted_runs_records() {
    let (plan, ledger, ports) = thirty_symbols(Duration::ZERO, Duration::ZERO);
    let config =
        EngineConfig { run_deadline: Duration::from_secs(8), resumable_at_deadline: true, ..EngineConfig::default() };
    let outcome = execute_recorded(plan.clone(), config, ports, Arc::clone(&ledger) as _, None).await;
    assert!(matches!(outcome, Err(tranche::engine::RunError::LeftResumable { .. })), "{outcome:?}");
    // The next delivery, once the first worker's lease has lapsed: each of its three reads
    // takes 12 s (the lease is 9 s).
    tokio::time::sleep(Duration::from_secs(15)).await;
    *ledger.slow_reads.lock().unwrap() = Duration::from_secs(12);
    let asked = tokio::time::Instant::now();
    let again = plan.clone();
    let result = execute_recorded(plan, EngineConfig::default(), sim_ports(&again), Arc::clone(&ledger) as _, None)
        .await
        .expect("the resumed run completes under its claim");
    assert!(result.metadata.is_some());
    let read_until = asked + Duration::from_secs(36);
    let during: Vec<_> =
        ledger.proved_at.lock().unwrap().iter().filter(|t| **t > asked && **t < read_until).copied().collect();
    assert!(during.len() >= 3, "{} proofs while the records were read (36 s)", during.len());
}
