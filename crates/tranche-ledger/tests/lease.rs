//! The fenced lease of the object ledger, over the ledger alone, in virtual time: a plan
//! completed between a worker's first look and its lock is not run again (a deterministic
//! interleaving); a worker whose lease was taken over can prove nothing, record nothing and
//! complete nothing; lost answers and spurious refusals of the lock's writes are recognised;
//! and a seeded property over hundreds of schedules (three workers with skewed clocks, each on a
//! faulty store: slow calls, 503s, lost answers, spurious precondition failures, death between
//! writes, and freezes past the lease): never two workers acting on the plan at once, never a
//! completed plan begun or acted on again. The same property run with a careless worker (one
//! that acts without a valid proof) is shown to fail, so the check can fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions,
    PutPayload, PutResult,
};
use support::{fill, plan_with, started};
use tokio::time::Instant;
use tranche_domain::{ExecutionResult, RebalancePlan};
use tranche_ledger::faults::{FaultPlan, FaultyStore, SplitMix64};
use tranche_ledger::{BeginOutcome, LeaseTerms, Ledger, LedgerError, ObjectLedger, TimeSource};

fn plan(id: &str) -> RebalancePlan {
    plan_with(id, &serde_json::json!({}))
}

fn result_for(plan: &RebalancePlan) -> ExecutionResult {
    ExecutionResult::from_items(&plan.plan_id, &plan.correlation_id, Vec::new(), chrono::Utc::now(), None)
}

/// A wall clock that follows the test's virtual time, `skew` ahead (behind when negative).
fn virtual_clock(skew: chrono::Duration) -> TimeSource {
    let (start, base) = (Instant::now(), chrono::DateTime::parse_from_rfc3339("2026-03-02T15:00:00Z").unwrap());
    let base = base.with_timezone(&chrono::Utc) + skew;
    Arc::new(move || base + chrono::Duration::from_std(start.elapsed()).unwrap())
}

fn terms() -> LeaseTerms {
    LeaseTerms::new(Duration::from_secs(10), Duration::from_secs(5)).unwrap()
}

/// A store that runs a hook before the first read of a plan's lock (to interleave another
/// worker's steps deterministically) and may lose the answer of the first write of the lock.
struct Hooked {
    inner: Arc<dyn ObjectStore>,
    before_lock_read: Mutex<Option<BoxFuture<'static, ()>>>,
    lose_next_lock_answer: Mutex<bool>,
    /// Reads of `completed.json` so far, and a hook that runs before read number `.0` (counting
    /// from 1), after which that read fails.
    completion_reads: Mutex<u32>,
    failing_completion_read: Mutex<Option<(u32, BoxFuture<'static, ()>)>>,
}

impl std::fmt::Debug for Hooked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hooked({:?})", self.inner)
    }
}

impl std::fmt::Display for Hooked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hooked({})", self.inner)
    }
}

impl Hooked {
    fn new(inner: &Arc<dyn ObjectStore>) -> Self {
        Self {
            inner: Arc::clone(inner),
            before_lock_read: Mutex::new(None),
            lose_next_lock_answer: Mutex::new(false),
            completion_reads: Mutex::new(0),
            failing_completion_read: Mutex::new(None),
        }
    }
}

fn is_lock(path: &Path) -> bool {
    path.as_ref().ends_with("lock.json")
}

#[async_trait]
impl ObjectStore for Hooked {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let result = self.inner.put_opts(location, payload, opts).await;
        if is_lock(location) && std::mem::take(&mut *self.lose_next_lock_answer.lock().unwrap()) {
            return Err(object_store::Error::Generic {
                store: "Hooked",
                source: "connection reset (answer lost)".into(),
            });
        }
        result
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        if location.as_ref().ends_with("completed.json") {
            let read = {
                let mut reads = self.completion_reads.lock().unwrap();
                *reads += 1;
                *reads
            };
            let armed = {
                let mut hook = self.failing_completion_read.lock().unwrap();
                if hook.as_ref().is_some_and(|(at, _)| *at == read) {
                    hook.take().map(|(_, run)| run)
                } else {
                    None
                }
            };
            if let Some(run) = armed {
                run.await;
                return Err(object_store::Error::Generic { store: "Hooked", source: "503 SlowDown".into() });
            }
        }
        if is_lock(location) {
            let hook = self.before_lock_read.lock().unwrap().take();
            if let Some(hook) = hook {
                hook.await;
            }
        }
        self.inner.get_opts(location, options).await
    }

    async fn delete(&self, location: &Path) -> object_store::Result<()> {
        self.inner.delete(location).await
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        self.inner.copy(from, to).await
    }

    async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        self.inner.copy_if_not_exists(from, to).await
    }
}

/// The race of the fenced-lease issue, item 1: worker B finds the plan not completed; before B
/// takes the lock, worker A completes the plan and releases its lock; B then takes the free
/// lock. The ledger used to start B on a new run of the completed plan; it must answer with
/// A's result.
#[tokio::test(start_paused = true)]
async fn a_plan_completed_between_the_first_look_and_the_lock_is_not_run_again() {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let plan = plan("plan-race");
    let a = Arc::new(ObjectLedger::new(Arc::clone(&inner), "ledger", "worker-a"));
    let run = started(a.begin(&plan).await.unwrap());
    a.record_fill(&run, &fill(&run, 1)).await.unwrap();
    let hooked = Arc::new(Hooked::new(&inner));
    let result = result_for(&plan);
    let (finisher, done) = (Arc::clone(&a), result.clone());
    *hooked.before_lock_read.lock().unwrap() = Some(Box::pin(async move {
        finisher.finish(&run, &done).await.unwrap();
    }));
    let b = ObjectLedger::new(Arc::clone(&hooked) as Arc<dyn ObjectStore>, "ledger", "worker-b");
    let outcome = b.begin(&plan).await.unwrap();
    assert!(hooked.before_lock_read.lock().unwrap().is_none(), "A completed the plan inside B's begin");
    assert_eq!(outcome, BeginOutcome::AlreadyCompleted(Box::new(result)));
    // B gave the lock back: the plan stays completed for everyone, and one run exists.
    assert_eq!(a.runs(Some(&plan.plan_id)).await.unwrap().len(), 1);
    assert!(matches!(a.begin(&plan).await.unwrap(), BeginOutcome::AlreadyCompleted(_)));
}

/// A store that ignores the conditions of conditional writes (an S3-compatible service without
/// them, a proxy dropping the headers) cannot fence the lease: two workers would both take the
/// lock and send the plan's orders twice. The ledger proves the store first and refuses it,
/// before any plan is touched; the probe leaves nothing behind. The same store honouring the
/// conditions is proven once and used.
#[tokio::test(start_paused = true)]
async fn a_store_that_ignores_conditional_writes_is_refused_before_any_plan_is_claimed() {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let careless = FaultPlan { ignores_conditions: true, ..FaultPlan::none(1) };
    let store = Arc::new(FaultyStore::new(Arc::clone(&inner), careless));
    let first = plan("plan-unfenced");
    for worker in ["worker-a", "worker-b"] {
        let ledger = ObjectLedger::new(Arc::clone(&store) as Arc<dyn ObjectStore>, "ledger", worker);
        let refused = ledger.begin(&first).await;
        assert!(
            matches!(&refused, Err(LedgerError::Invalid(m)) if m.contains("does not honour conditional writes")),
            "{refused:?}"
        );
    }
    let left: Vec<_> = {
        use futures::StreamExt;
        inner.list(None).collect::<Vec<_>>().await
    };
    assert!(left.is_empty(), "nothing written, the probe deleted: {left:?}");

    let honest = ObjectLedger::new(Arc::clone(&inner), "ledger", "worker-a");
    let run = started(honest.begin(&first).await.unwrap());
    honest.finish(&run, &result_for(&first)).await.unwrap();
    let other = plan("plan-second");
    started(honest.begin(&other).await.unwrap());
    let probes: Vec<_> = {
        use futures::StreamExt;
        inner.list(Some(&Path::from("ledger/probes"))).collect::<Vec<_>>().await
    };
    assert!(probes.is_empty(), "{probes:?}");
}

/// A worker whose lease lapsed and was taken over can do nothing more for the plan: no proof,
/// no record, no completion; the new holder continues the same run and completes it.
#[tokio::test(start_paused = true)]
async fn a_worker_whose_lease_was_taken_over_can_prove_record_and_complete_nothing() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let plan = plan("plan-fenced");
    let ledger = |name: &str| {
        ObjectLedger::new(Arc::clone(&store), "ledger", name)
            .with_lease(terms())
            .with_time_source(virtual_clock(chrono::Duration::zero()))
    };
    let (a, b) = (ledger("worker-a"), ledger("worker-b"));
    let run_a = started(a.begin(&plan).await.unwrap());
    assert_eq!(a.prove_claim(&run_a).await.unwrap().valid_for, Some(Duration::from_secs(5)));
    // A live lease turns B away, even at the edge of the clock skew allowance.
    tokio::time::sleep(Duration::from_secs(14)).await;
    assert!(matches!(b.begin(&plan).await.unwrap(), BeginOutcome::AlreadyRunning { .. }));
    // A freezes past its lease plus the skew; B takes over and continues A's run.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let run_b = started(b.begin(&plan).await.unwrap());
    assert!(run_b.resumed);
    assert_eq!(run_b.run_id, run_a.run_id);
    let lost = |r: Result<(), LedgerError>| matches!(r, Err(LedgerError::ClaimLost { .. }));
    assert!(lost(a.prove_claim(&run_a).await.map(|_| ())), "A's proof fails once B holds the lock");
    assert!(lost(a.record_fill(&run_a, &fill(&run_a, 1)).await.map(|_| ())));
    assert!(lost(a.record_item(&run_a, &support::item(&run_a, 0, tranche_domain::ItemOutcome::Filled)).await));
    let result = result_for(&plan);
    assert!(lost(a.finish(&run_a, &result).await));
    assert!(a.fills(&plan.plan_id).await.unwrap().is_empty(), "nothing A tried was recorded");
    assert!(a.items(&plan.plan_id).await.unwrap().is_empty());
    b.prove_claim(&run_b).await.unwrap();
    b.finish(&run_b, &result).await.unwrap();
    assert_eq!(a.begin(&plan).await.unwrap(), BeginOutcome::AlreadyCompleted(Box::new(result)));
}

/// The review's finding 1: a worker whose `begin` failed after its lease was taken over gave the
/// lock back by deleting it, deleting the new holder's lock (and a third worker could then take
/// the plan while the second still acted). It now gives the lock back only if it is still its
/// own.
#[tokio::test(start_paused = true)]
async fn a_begin_that_fails_after_a_takeover_leaves_the_new_holders_lock_alone() {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let plan = plan("plan-slow-begin");
    let hooked = Arc::new(Hooked::new(&inner));
    let worker = |store: Arc<dyn ObjectStore>, name: &str| {
        ObjectLedger::new(store, "ledger", name)
            .with_lease(terms())
            .with_time_source(virtual_clock(chrono::Duration::zero()))
    };
    let b = Arc::new(worker(Arc::clone(&inner), "worker-b"));
    let (taker, taken) = (Arc::clone(&b), plan.clone());
    // A's look for the completion under its new lock stalls past its lease; B takes the plan
    // over meanwhile; then A's read fails and A's begin gives up.
    *hooked.failing_completion_read.lock().unwrap() = Some((
        2,
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(20)).await;
            assert!(matches!(taker.begin(&taken).await.unwrap(), BeginOutcome::Started(_)));
        }),
    ));
    let a = worker(Arc::clone(&hooked) as Arc<dyn ObjectStore>, "worker-a");
    assert!(a.begin(&plan).await.is_err(), "A's begin failed");
    let c = worker(Arc::clone(&inner), "worker-c");
    assert!(matches!(c.begin(&plan).await.unwrap(), BeginOutcome::AlreadyRunning { .. }), "B still holds the plan");
}

/// The review's finding 2: the completion was recognised by run id, which a run and its
/// takeover share, so a completion written late by the worker that lost the plan was taken by
/// the new holder for its own. It is recognised by the lock holder that wrote it.
#[tokio::test(start_paused = true)]
async fn a_completion_written_by_the_worker_that_lost_the_plan_is_not_taken_for_the_new_holders() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let plan = plan("plan-late-marker");
    let worker = |name: &str| {
        ObjectLedger::new(Arc::clone(&store), "ledger", name)
            .with_lease(terms())
            .with_time_source(virtual_clock(chrono::Duration::zero()))
    };
    let (a, b) = (worker("worker-a"), worker("worker-b"));
    let run_a = started(a.begin(&plan).await.unwrap());
    let lock_path = Path::from(format!("ledger/plans/{}/lock.json", plan_key(&plan.plan_id)));
    let lock: serde_json::Value =
        serde_json::from_slice(&store.get(&lock_path).await.unwrap().bytes().await.unwrap()).unwrap();
    tokio::time::sleep(Duration::from_secs(16)).await;
    let run_b = started(b.begin(&plan).await.unwrap());
    assert_eq!(run_b.run_id, run_a.run_id, "the takeover continues the same run");
    // A's completion, delayed in flight, lands now.
    let late = serde_json::json!({
        "run_id": run_a.run_id, "holder": lock["holder"], "finished_at": "2026-03-02T15:00:01Z",
        "result": result_for(&plan),
    });
    let marker = Path::from(format!("ledger/plans/{}/completed.json", plan_key(&plan.plan_id)));
    store.put(&marker, serde_json::to_vec(&late).unwrap().into()).await.unwrap();
    assert!(matches!(b.finish(&run_b, &result_for(&plan)).await, Err(LedgerError::ClaimLost { .. })));
}

/// The review's finding 4: proofs were judged on the monotonic clock alone, which stops while a
/// VM is suspended; a worker resumed after its lease was taken over wrote with its old proof.
/// The wall clock (which runs on) now bounds a proof too.
#[tokio::test(start_paused = true)]
async fn a_proof_lapses_with_the_wall_clock_while_the_monotonic_clock_stood_still() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let plan = plan("plan-suspended");
    // The wall clock jumps 30 s ahead with no monotonic time passing: a suspended VM.
    let jumped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = Arc::clone(&jumped);
    let base = virtual_clock(chrono::Duration::zero());
    let a = ObjectLedger::new(Arc::clone(&store), "ledger", "worker-a").with_lease(terms()).with_time_source(Arc::new(
        move || base() + chrono::Duration::seconds(if seen.load(std::sync::atomic::Ordering::SeqCst) { 30 } else { 0 }),
    ));
    let run_a = started(a.begin(&plan).await.unwrap());
    a.record_fill(&run_a, &fill(&run_a, 1)).await.unwrap();
    jumped.store(true, std::sync::atomic::Ordering::SeqCst);
    let b = ObjectLedger::new(Arc::clone(&store), "ledger", "worker-b")
        .with_lease(terms())
        .with_time_source(virtual_clock(chrono::Duration::seconds(30)));
    started(b.begin(&plan).await.unwrap());
    assert!(matches!(a.record_fill(&run_a, &fill(&run_a, 2)).await, Err(LedgerError::ClaimLost { .. })));
    assert_eq!(b.fills(&plan.plan_id).await.unwrap().len(), 1, "nothing A tried after its wall clock ran on");
}

/// The key of a plan's directory (as the ledger names it).
fn plan_key(plan_id: &str) -> String {
    use sha2::Digest;
    use std::fmt::Write;
    sha2::Sha256::digest(plan_id.as_bytes())[..16].iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The answer of the lock's first write is lost after the store applied it: the same begin
/// recognises its own lock (it is not locked out for a lease), and a renewal whose answer is
/// lost is not taken for a takeover.
#[tokio::test(start_paused = true)]
async fn lost_answers_of_the_locks_writes_are_recognised_as_our_own() {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let hooked = Arc::new(Hooked::new(&inner));
    let ledger = ObjectLedger::new(Arc::clone(&hooked) as Arc<dyn ObjectStore>, "ledger", "worker");
    let plan = plan("plan-lost-answer");
    *hooked.lose_next_lock_answer.lock().unwrap() = true;
    let run = started(ledger.begin(&plan).await.unwrap());
    assert!(!*hooked.lose_next_lock_answer.lock().unwrap(), "the lock's create lost its answer");
    *hooked.lose_next_lock_answer.lock().unwrap() = true;
    ledger.prove_claim(&run).await.unwrap();
    ledger.prove_claim(&run).await.unwrap();
    ledger.finish(&run, &result_for(&plan)).await.unwrap();
}

/// Spurious precondition failures of the lock's conditional writes (S3's 409 conflict) are
/// retried, never taken for a lost claim.
#[tokio::test(start_paused = true)]
async fn spurious_refusals_of_the_lock_are_not_a_lost_claim() {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let store = Arc::new(FaultyStore::new(
        Arc::clone(&inner),
        FaultPlan { spurious_precondition_ppm: 300_000, ..FaultPlan::none(11) },
    ));
    let ledger = ObjectLedger::new(Arc::clone(&store) as Arc<dyn ObjectStore>, "ledger", "worker");
    let plan = plan("plan-spurious");
    let run = started(ledger.begin(&plan).await.unwrap());
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        match ledger.prove_claim(&run).await {
            Ok(_) | Err(LedgerError::Storage(_)) => {}
            Err(e) => panic!("a spurious refusal was taken for: {e}"),
        }
    }
    assert!(store.faults_fired()["spurious_precondition"] >= 10, "{:?}", store.faults_fired());
}

/// What one worker does: when it arrives, its clock skew, how many orders it sends, where it
/// freezes and for how long, and after how many store writes it dies.
#[derive(Debug, Clone)]
struct Script {
    arrives: Duration,
    skew_ms: i64,
    orders: u32,
    gap: Duration,
    freeze: Option<(u32, Duration)>,
    dies_after: Option<u64>,
}

impl Script {
    fn roll(dice: &mut SplitMix64) -> Self {
        Self {
            arrives: Duration::from_millis(dice.below(30_000)),
            skew_ms: i64::try_from(dice.below(10_001)).unwrap() - 5_000,
            orders: 1 + u32::try_from(dice.below(8)).unwrap(),
            gap: Duration::from_millis(200 + dice.below(4_000)),
            freeze: dice
                .chance(400_000)
                .then(|| (u32::try_from(dice.below(6)).unwrap(), Duration::from_millis(5_000 + dice.below(40_000)))),
            dies_after: dice.chance(200_000).then(|| 2 + dice.below(20)),
        }
    }
}

/// What happened, in virtual time.
#[derive(Debug, Default)]
struct Tape {
    /// Per session (one successful begin): the worker and the instants it acted.
    sessions: Vec<(usize, Vec<Instant>)>,
    /// When a finish returned `Ok`, and by which session.
    completed: Vec<(usize, Instant)>,
    /// Sessions begun, with when.
    begun: Vec<Instant>,
    lost_claims: u32,
    turned_away: u32,
}

/// One worker's life: deliveries until it completes the plan, is told it is complete, dies or
/// gives up. A careless worker acts even without a valid proof.
async fn work(
    who: usize,
    ledger: ObjectLedger,
    plan: RebalancePlan,
    script: Script,
    tape: Arc<Mutex<Tape>>,
    careless: bool,
) {
    tokio::time::sleep(script.arrives).await;
    for _ in 0..6 {
        let run = match ledger.begin(&plan).await {
            Ok(BeginOutcome::Started(run)) => run,
            Ok(BeginOutcome::AlreadyCompleted(_)) => return,
            Ok(BeginOutcome::AlreadyRunning { .. }) => {
                tape.lock().unwrap().turned_away += 1;
                tokio::time::sleep(Duration::from_secs(8)).await;
                continue;
            }
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        let session = {
            let mut tape = tape.lock().unwrap();
            tape.sessions.push((who, Vec::new()));
            tape.begun.push(Instant::now());
            tape.sessions.len() - 1
        };
        for order in 0..script.orders {
            if let Some((at, length)) = script.freeze {
                if at == order {
                    tokio::time::sleep(length).await;
                }
            }
            for _ in 0..4 {
                let asked = Instant::now();
                match ledger.prove_claim(&run).await {
                    Ok(proof) if Instant::now() < asked + proof.valid_for.unwrap() || careless => {
                        tape.lock().unwrap().sessions[session].1.push(Instant::now());
                        break;
                    }
                    Err(LedgerError::ClaimLost { .. }) if !careless => {
                        tape.lock().unwrap().lost_claims += 1;
                        return;
                    }
                    _ if careless => {
                        tape.lock().unwrap().sessions[session].1.push(Instant::now());
                        break;
                    }
                    _ => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
            tokio::time::sleep(script.gap).await;
        }
        for _ in 0..6 {
            match ledger.finish(&run, &result_for(&plan)).await {
                Ok(()) => {
                    tape.lock().unwrap().completed.push((session, Instant::now()));
                    return;
                }
                Err(LedgerError::ClaimLost { .. }) => {
                    tape.lock().unwrap().lost_claims += 1;
                    return;
                }
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
        return;
    }
}

/// What a set of schedules exercised.
#[derive(Debug, Default)]
struct Seen {
    takeovers: u32,
    lost_claims: u32,
    turned_away: u32,
    completed: u32,
    faults: std::collections::BTreeMap<&'static str, u64>,
}

/// Runs seed `seed`'s schedule; the violations found.
async fn schedule(seed: u64, careless: bool, seen: &mut Seen) -> Vec<String> {
    let mut dice = SplitMix64(seed);
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let plan = plan(&format!("plan-schedule-{seed}"));
    let tape = Arc::new(Mutex::new(Tape::default()));
    let mut stores = Vec::new();
    let mut workers = Vec::new();
    for who in 0..3 {
        let script = Script::roll(&mut dice);
        let faults = FaultPlan {
            spurious_precondition_ppm: 20_000,
            die_after_writes: script.dies_after,
            ..FaultPlan::moderate(seed * 3 + who as u64)
        };
        let store = Arc::new(FaultyStore::new(Arc::clone(&inner), faults));
        let ledger = ObjectLedger::new(Arc::clone(&store) as Arc<dyn ObjectStore>, "ledger", format!("worker-{who}"))
            .with_lease(terms())
            .with_time_source(virtual_clock(chrono::Duration::milliseconds(script.skew_ms)));
        stores.push(store);
        workers.push(tokio::spawn(work(who, ledger, plan.clone(), script, Arc::clone(&tape), careless)));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    for store in &stores {
        for (kind, n) in store.faults_fired() {
            *seen.faults.entry(kind).or_default() += n;
        }
    }
    let tape = std::mem::take(&mut *tape.lock().unwrap());
    let mut problems = Vec::new();
    // Never two sessions acting at once: each session's actions all come before the next
    // session's first (sessions in the order they first acted).
    let mut spans: Vec<(Instant, Instant, usize)> = tape
        .sessions
        .iter()
        .filter(|(_, acts)| !acts.is_empty())
        .map(|(who, acts)| (acts[0], *acts.last().unwrap(), *who))
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        if pair[1].0 <= pair[0].1 {
            problems.push(format!(
                "seed {seed}: worker {} acted at {:?} while worker {} still acted until {:?}",
                pair[1].2, pair[1].0, pair[0].2, pair[0].1
            ));
        }
    }
    // Never a completed plan begun or acted on again, and completed once.
    if let Some((_, done)) = tape.completed.first() {
        if tape.completed.len() > 1 {
            problems.push(format!("seed {seed}: the plan was completed {} times", tape.completed.len()));
        }
        if tape.begun.iter().any(|at| at > done) {
            problems.push(format!("seed {seed}: the completed plan was begun again"));
        }
        if tape.sessions.iter().flat_map(|(_, acts)| acts).any(|at| at > done) {
            problems.push(format!("seed {seed}: someone acted on the completed plan"));
        }
        let auditor = ObjectLedger::new(Arc::clone(&inner), "ledger", "auditor");
        if !matches!(auditor.begin(&plan).await, Ok(BeginOutcome::AlreadyCompleted(_))) {
            problems.push(format!("seed {seed}: the ledger does not answer the completed plan's result"));
        }
    }
    seen.takeovers += u32::try_from(tape.sessions.len().saturating_sub(1)).unwrap();
    seen.lost_claims += tape.lost_claims;
    seen.turned_away += tape.turned_away;
    seen.completed += u32::from(!tape.completed.is_empty());
    problems
}

fn run_schedules(seeds: u64, careless: bool) -> (Vec<String>, Seen) {
    let mut seen = Seen::default();
    let mut problems = Vec::new();
    for seed in 0..seeds {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        problems.extend(runtime.block_on(schedule(seed, careless, &mut seen)));
    }
    (problems, seen)
}

#[test]
fn three_workers_on_faulty_stores_with_skewed_clocks_never_act_at_once_nor_twice() {
    let (problems, seen) = run_schedules(400, false);
    assert!(problems.is_empty(), "{} violations:\n{}", problems.len(), problems[..problems.len().min(8)].join("\n"));
    println!("{seen:?}");
    // The schedules really exercised takeovers, lost claims and the store's faults.
    assert!(seen.takeovers >= 100, "{seen:?}");
    assert!(seen.lost_claims >= 30, "{seen:?}");
    assert!(seen.turned_away >= 100, "{seen:?}");
    assert!(seen.completed >= 200, "{seen:?}");
    for kind in ["slow", "fail_before", "fail_after", "spurious_precondition", "dead"] {
        assert!(seen.faults.get(kind).copied().unwrap_or(0) >= 20, "{kind}: {seen:?}");
    }
}

/// The property can fail: workers that act without a valid proof (as the ledger without a fence
/// allowed) are caught acting at once, or on a completed plan.
#[test]
fn the_schedule_property_catches_a_worker_that_acts_without_a_proof() {
    let (problems, _) = run_schedules(100, true);
    assert!(problems.len() >= 10, "only {} violations: {problems:?}", problems.len());
}

/// A damaged lock (an expiry no worker within the clock skew could have written: in the year
/// 9999, or at the end of chrono's range, with the largest generation): `begin` neither panics
/// (adding the skew overflowed) nor leaves the plan locked for ever; the lock is taken over,
/// and the worker acts on the plan under its own.
#[tokio::test(start_paused = true)]
async fn a_lock_expiring_beyond_any_lease_is_taken_over_without_a_panic() {
    for (n, expires_at) in ["9999-12-31T23:59:59Z", "+262142-12-31T23:59:59Z"].into_iter().enumerate() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let plan = plan(&format!("plan-damaged-lock-{n}"));
        let damaged = serde_json::json!({
            "run_id": "run-of-nobody", "owner": "gone", "holder": "gone-1", "generation": u64::MAX,
            "expires_at": expires_at, "lease_ms": 10_000,
        });
        let lock_path = Path::from(format!("ledger/plans/{}/lock.json", plan_key(&plan.plan_id)));
        store.put(&lock_path, serde_json::to_vec(&damaged).unwrap().into()).await.unwrap();
        let worker = ObjectLedger::new(Arc::clone(&store), "ledger", "worker-a")
            .with_lease(terms())
            .with_time_source(virtual_clock(chrono::Duration::zero()));
        let run = started(worker.begin(&plan).await.unwrap());
        worker.record_fill(&run, &fill(&run, 1)).await.unwrap();
        assert_eq!(worker.fills(&plan.plan_id).await.unwrap().len(), 1, "{expires_at}");
    }
}
