//! The async driver: runs the core's commands against the ports and feeds the answers back.
//!
//! Invariants: time comes only from the `Clock` port; broker calls run concurrently as tasks and
//! each answer returns as exactly one input; the `select!` is biased (order events, then broker
//! answers, then quotes, then timers) so a fill is always seen before a quote or timer that
//! could act on stale state; reads are retried by the broker adapter, never again here, and
//! mutations never (a cancel at the end of the run, being idempotent, is the exception). When
//! the run ends with orders of its own not known to be final (a deadline, an abort), each is
//! cancelled before the result is returned, a submit whose answer was lost looked for while the
//! broker may still create it, all within the `wind_down` (and the one request then in flight);
//! any not settled is named in the result's metadata (`possibly_working_orders`). With a ledger,
//! every order goes through the fence (`fence`): intent recorded, claim proven, then sent; the
//! claim is renewed while the run lasts (one renewal at a time, its last steps included), and a
//! lost claim ends the run at once with [`RunError::ClaimLost`], nothing more sent or recorded.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tranche_broker::{Broker, BrokerError, Clearance, Clock, OrderEvents, QuoteFeed, RejectReason, StreamEvent};
use tranche_domain::{
    BrokerOrderId, ClientOrderId, ExecutionResult, OrderAmount, OrderRequest, Price, Qty, RebalancePlan, Symbol,
    Timestamp,
};
use tranche_ledger::{BeginOutcome, Ledger, LedgerError, OrderIntent, RunHandle};

use crate::config::EngineConfig;
use crate::core::{EngineCore, OpenOrder, Recovery};
use crate::events::ProgressEvent;
use crate::fence::{keep_renewing, Fence};
use crate::io::{Command, Input, LedgerRecord, PreflightData, TimerId};

/// The ports the engine runs on.
pub struct Ports {
    /// Trading REST.
    pub broker: Arc<dyn Broker>,
    /// The trade-update stream (one consumer: the engine).
    pub events: Box<dyn OrderEvents>,
    /// Live quotes.
    pub quotes: Arc<dyn QuoteFeed>,
    /// Time.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ports").finish_non_exhaustive()
    }
}

/// Why a recorded run did not produce a result of its own.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Another worker runs this plan now.
    #[error("plan is already being executed by run {run_id}; wait for it to finish")]
    AlreadyRunning {
        /// That run.
        run_id: String,
    },
    /// The ledger could not be read or begun; nothing was traded.
    #[error("the ledger cannot be used, nothing was traded: {0}")]
    Ledger(LedgerError),
    /// Another worker took the plan over while this one ran (this worker's lease lapsed, e.g.
    /// it was frozen or the ledger's store was unreachable for too long). This worker sent
    /// nothing after it learnt so; the other worker continues the plan and records its result.
    #[error("{reason}")]
    ClaimLost {
        /// This worker's run.
        run_id: String,
        /// What the ledger said.
        reason: String,
    },
    /// The run reached its deadline with items unfinished and, as configured
    /// (`resumable_at_deadline`), was left resumable: its orders cancelled, its claim given up,
    /// the plan not completed. The next delivery continues it; `result` is where it stands.
    #[error("the run reached its deadline and was left resumable; deliver the plan again to continue it")]
    LeftResumable {
        /// Where the run stands.
        result: Box<ExecutionResult>,
    },
    /// The run traded but its result could not be recorded.
    #[error("the run finished but its result could not be recorded: {error}")]
    LedgerAfterRun {
        /// The failure.
        error: LedgerError,
        /// The run's result.
        result: Box<ExecutionResult>,
    },
}

/// The ledger side of a recorded run.
struct Journal {
    ledger: Arc<dyn Ledger>,
    run: RunHandle,
    /// The claim on the plan.
    fence: Arc<Fence>,
    /// When the claim is renewed next (`None`: it needs no renewal, or a renewal is under way).
    next_renewal: Option<Timestamp>,
}

impl Journal {
    fn claim_lost(&self) -> Option<RunError> {
        self.fence.lost().map(|reason| RunError::ClaimLost { run_id: self.run.run_id.clone(), reason })
    }

    /// Starts a renewal of the claim when one is due; one at a time: the next is scheduled
    /// when this one is done.
    fn renew_if_due(&mut self, now: Timestamp, records: &mut JoinSet<Written>) {
        if self.next_renewal.is_some_and(|at| now >= at) {
            self.next_renewal = None;
            let fence = Arc::clone(&self.fence);
            records.spawn(async move {
                fence.renew().await;
                Written { order: None, error: None, renewal: true }
            });
        }
    }

    /// When the next renewal is due, counted from `now`.
    fn renewal_after(&self, now: Timestamp) -> Option<Timestamp> {
        let every = chrono::Duration::from_std(self.fence.renewal()?).ok()?;
        now.checked_add_signed(every)
    }
}

/// Executes `plan` with `config` on `ports` without a ledger; progress events go to `progress`
/// when given. Never panics on broker behaviour: every failure ends up in the result.
pub async fn execute(
    plan: RebalancePlan,
    config: EngineConfig,
    ports: Ports,
    progress: Option<mpsc::UnboundedSender<ProgressEvent>>,
) -> ExecutionResult {
    let plan_id = plan.plan_id.clone();
    let correlation_id = plan.correlation_id.clone();
    let mut core = EngineCore::new(plan, config);
    core.set_stream_slots(ports.quotes.symbol_limit());
    match run_loop(core, ports, None, progress, never()).await {
        Ok(result) => result,
        Err(RunError::LedgerAfterRun { result, .. }) => *result,
        // Without a journal no ledger error can occur; report it as a failed run all the same.
        Err(e) => ExecutionResult::from_items(
            &plan_id,
            &correlation_id,
            Vec::new(),
            chrono::Utc::now(),
            Some(note(&e.to_string())),
        ),
    }
}

/// A request to stop a run, with why (see [`execute_recorded_until`]).
pub type StopRequest = std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>>;

/// A stop request that never comes.
fn never() -> StopRequest {
    Box::pin(std::future::pending())
}

/// Executes `plan` exactly once with `ledger` as its journal: a completed plan returns its
/// recorded result and trades nothing; a plan another worker runs is refused; an interrupted
/// run is continued from the ledger and the broker. Every order intent is recorded before the
/// order is sent; every fill and order state is recorded as it is learnt.
pub async fn execute_recorded(
    plan: RebalancePlan,
    config: EngineConfig,
    ports: Ports,
    ledger: Arc<dyn Ledger>,
    progress: Option<mpsc::UnboundedSender<ProgressEvent>>,
) -> Result<ExecutionResult, RunError> {
    execute_recorded_until(plan, config, ports, ledger, progress, never()).await
}

/// As [`execute_recorded`], until `stop` comes (a signal: Ctrl-C, a container or service
/// stop): the run then stops trading as at its deadline (its open orders cancelled, its fills
/// read, its result made) and is left to resume (`RunError::LeftResumable`): the same plan run
/// again continues it.
pub async fn execute_recorded_until(
    plan: RebalancePlan,
    config: EngineConfig,
    ports: Ports,
    ledger: Arc<dyn Ledger>,
    progress: Option<mpsc::UnboundedSender<ProgressEvent>>,
    stop: StopRequest,
) -> Result<ExecutionResult, RunError> {
    let asked_at = ports.clock.now();
    // A store that fails at times: begun again (a begin that failed gave the plan back).
    let begun = retrying(&ports.clock, BEGIN_ATTEMPTS, || ledger.begin(&plan)).await.map_err(|e| match e {
        // A resumed run's first proof found the plan taken over meanwhile.
        LedgerError::ClaimLost { run_id, .. } => {
            RunError::ClaimLost { run_id, reason: "another worker took the plan over as this one began".into() }
        }
        other => RunError::Ledger(other),
    })?;
    let run = match begun {
        BeginOutcome::AlreadyCompleted(result) => {
            tracing::info!(plan_id = %plan.plan_id, "plan already executed; returning its recorded result");
            return Ok(*result);
        }
        BeginOutcome::AlreadyRunning { run_id } => return Err(RunError::AlreadyRunning { run_id }),
        BeginOutcome::Started(run) => run,
    };
    // A run resumable at its deadline has a deadline outside it (Lambda's invocation): counted
    // from when the run was asked for, the time the claim and a resumed run's reads took is
    // spent. (Otherwise the deadline ends the plan, and is the run's own from its start.)
    let mut config = config;
    let claimed = |config: &mut EngineConfig, now: tranche_domain::Timestamp| {
        if config.resumable_at_deadline {
            let spent = (now - asked_at).to_std().unwrap_or_default();
            config.run_deadline = config.run_deadline.saturating_sub(spent);
        }
    };
    let fence = Fence::new(Arc::clone(&ledger), run.clone(), Arc::clone(&ports.clock));
    let core = if run.resumed {
        // The claim is renewed while the interrupted run's records are read: a large plan's are
        // thousands of objects, longer than a lease, and a claim left to lapse here would let
        // a redelivered event take the plan over before anything is traded.
        let _renewing = keep_renewing(&fence, &ports.clock);
        // Read as the writes are made: again while the store fails.
        let clock = &ports.clock;
        let intents = durably(clock, || ledger.intents(&plan.plan_id)).await.map_err(RunError::Ledger)?;
        let fills = durably(clock, || ledger.fills(&plan.plan_id)).await.map_err(RunError::Ledger)?;
        // The engine's own clock stamped the intents: the earliest one bounds the interrupted
        // run's fills (the ledger's run times are wall-clock, which a simulation does not use).
        let started_at = intents.iter().map(|i| i.created_at).min();
        tracing::warn!(plan_id = %plan.plan_id, run_id = %run.run_id, intents = intents.len(), fills = fills.len(), "resuming an interrupted run");
        let items = durably(clock, || ledger.items(&plan.plan_id)).await.map_err(RunError::Ledger)?;
        claimed(&mut config, clock.now());
        EngineCore::resuming(plan, config, Recovery { intents, fills, started_at, items })
    } else {
        claimed(&mut config, ports.clock.now());
        EngineCore::new(plan, config)
    };
    let mut core = core;
    core.set_stream_slots(ports.quotes.symbol_limit());
    let mut journal = Journal { ledger, run, fence, next_renewal: None };
    journal.next_renewal = journal.renewal_after(ports.clock.now());
    run_loop(core, ports, Some(journal), progress, stop).await
}

/// A broker call whose panic (a bug, or an answer nobody foresaw) becomes an error of unknown
/// outcome: the task's answer would be lost for good, and its item wait for it until the run's
/// deadline. Unknown, not refused: a submit or replace is then looked up, a read read again.
async fn contained<T>(call: impl std::future::Future<Output = Result<T, BrokerError>>) -> Result<T, BrokerError> {
    use futures_util::FutureExt;
    std::panic::AssertUnwindSafe(call).catch_unwind().await.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(%what, "a broker call panicked");
        Err(BrokerError::Uncertain { message: format!("the broker call failed unexpectedly: {what}") })
    })
}

/// The earlier of two times, when there is one.
fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

async fn run_loop(
    mut core: EngineCore,
    mut ports: Ports,
    mut journal: Option<Journal>,
    progress: Option<mpsc::UnboundedSender<ProgressEvent>>,
    mut stop: StopRequest,
) -> Result<ExecutionResult, RunError> {
    let mut stop_asked = false;
    let mut work = InFlight::default();
    let mut quote_rx = ports.quotes.changes();
    let mut queue: VecDeque<Input> = VecDeque::from([Input::Start]);
    let mut events_open = true;
    let mut quotes_open = true;
    loop {
        while let Some(input) = queue.pop_front() {
            // A worker that lost the plan acts no more: not even on what it already knows.
            if let Some(lost) = journal.as_ref().and_then(Journal::claim_lost) {
                work.tasks.abort_all();
                work.records.abort_all();
                return Err(lost);
            }
            let context = Context { ports: &ports, journal: journal.as_ref(), progress: progress.as_ref() };
            if let Some(result) = step(&mut core, input, &context, &mut work) {
                let suspend = core.interrupted() || (core.ran_out_of_time() && core.config.resumable_at_deadline);
                let wind_down = core.config.wind_down;
                return end_run(result, core.open_orders(), wind_down, &ports, journal, work, suspend).await;
            }
        }
        let now = ports.clock.now();
        if let Some(j) = journal.as_mut() {
            j.renew_if_due(now, &mut work.records);
        }
        let heartbeat = journal.as_ref().and_then(|j| j.next_renewal);
        let next_timer = work.timers.iter().min_by_key(|(_, at)| **at).map(|(id, at)| (*id, *at));
        let wake = earliest(next_timer.map(|(_, at)| at), heartbeat);
        let clock = Arc::clone(&ports.clock);
        let sleep = async move {
            match wake {
                Some(at) => clock.sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            reason = &mut stop, if !stop_asked => {
                stop_asked = true;
                tracing::warn!(%reason, "stopping the run: cancelling its open orders");
                queue.push_back(Input::Interrupted(reason));
            }
            event = ports.events.next_event(), if events_open => {
                events_open = event.is_some();
                queue.push_back(work.on_stream_event(event));
            }
            Some(joined) = work.tasks.join_next(), if !work.tasks.is_empty() => match joined {
                Ok(input) => {
                    if let Input::Replaced { old, .. } | Input::ReplaceHeldBack { old, .. } = &input {
                        work.replacing.remove(old);
                    }
                    queue.push_back(input);
                }
                Err(e) => tracing::error!(error = %e, "a broker task failed"),
            },
            Some(joined) = work.records.join_next(), if !work.records.is_empty() => {
                if let Ok(written) = joined {
                    if let Some(j) = journal.as_mut() {
                        if written.renewal {
                            j.next_renewal = j.renewal_after(ports.clock.now());
                        }
                        if let Some(error) = &written.error {
                            j.fence.observe(error);
                        }
                    }
                    let to = journal.as_ref().map(|j| (Arc::clone(&j.ledger), j.run.clone()));
                    work.order_writes.written(&written, to, &ports.clock, &mut work.records);
                    if let Some(error) = written.error {
                        queue.push_back(Input::LedgerFailed(error.to_string()));
                    }
                }
            },
            changed = quote_rx.recv(), if quotes_open => match changed {
                Ok(symbol) => {
                    if work.subscribed.contains(&symbol) {
                        if let Some(quote) = ports.quotes.latest(&symbol) {
                            queue.push_back(Input::Quote(quote));
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    for symbol in &work.subscribed {
                        if let Some(quote) = ports.quotes.latest(symbol) {
                            queue.push_back(Input::Quote(quote));
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => quotes_open = false,
            },
            () = sleep => {
                if let Some((id, at)) = next_timer {
                    if ports.clock.now() >= at {
                        work.timers.remove(&id);
                        queue.push_back(Input::Timer(id));
                    }
                }
            }
        }
    }
}

/// The run has its result: its orders still open are cancelled (and those that may yet appear
/// looked for) within `wind_down`, and the result recorded, with the claim on the plan kept
/// (renewed) meanwhile.
async fn end_run(
    result: ExecutionResult,
    open: Vec<OpenOrder>,
    wind_down: std::time::Duration,
    ports: &Ports,
    journal: Option<Journal>,
    mut work: InFlight,
    suspend: bool,
) -> Result<ExecutionResult, RunError> {
    work.tasks.abort_all();
    let _renewing = journal.as_ref().and_then(|j| keep_renewing(&j.fence, &ports.clock));
    let fence = journal.as_ref().map(|j| Arc::clone(&j.fence));
    let by = EngineCore::after(ports.clock.now(), wind_down);
    let result = cancel_leftovers(result, open, ports, fence.as_deref(), by).await;
    match journal {
        Some(journal) if suspend => suspend_run(result, journal, work, &ports.clock).await,
        journal => finish(result, journal, work.records, work.order_writes, &ports.clock).await,
    }
}

/// Leaves a run that reached its deadline resumable: its records written, its claim given up,
/// the plan not completed.
async fn suspend_run(
    result: ExecutionResult,
    journal: Journal,
    mut work: InFlight,
    clock: &Arc<dyn Clock>,
) -> Result<ExecutionResult, RunError> {
    while let Some(joined) = work.records.join_next().await {
        if let Ok(written) = joined {
            let to = Some((Arc::clone(&journal.ledger), journal.run.clone()));
            work.order_writes.written(&written, to, clock, &mut work.records);
            if let Some(error) = written.error {
                journal.fence.observe(&error);
            }
        }
    }
    if let Some(lost) = journal.claim_lost() {
        return Err(lost);
    }
    if let Err(error) = durably(clock, || journal.ledger.suspend(&journal.run)).await {
        // Not given up: the next delivery waits for the lease to lapse, then continues.
        tracing::warn!(%error, "could not give up the claim on the plan");
    }
    Err(RunError::LeftResumable { result: Box::new(result) })
}

/// Cancel attempts per leftover order (1, 2, 4, 8 s apart).
const CANCEL_ATTEMPTS: u32 = 5;

/// What the run's end may take past its `wind_down`: the one request then in flight (the
/// adapter's timeout).
const LAST_REQUEST: std::time::Duration = std::time::Duration::from_secs(10);

/// The longest wait between two lookups of a leftover order that may yet appear.
const LATE_LOOKUP_GAP: chrono::Duration = chrono::Duration::seconds(8);

/// What became of one leftover order.
enum Leftover {
    /// Cancelled, final, or never placed.
    Settled,
    /// May still be working (or yet appear): how it is named in the result.
    Named(String),
    /// The plan was taken over: its orders are the other worker's to manage.
    TakenOver,
}

/// Cancels the run's orders still open when it ends, all at once, by `by`: an order whose
/// answer never came is looked up, and while the broker may still create it (within
/// `late_order_window` of its send) looked for again and cancelled once it appears. The ones
/// not settled by `by` are named in the result (and logged) so no working order goes
/// unnoticed.
async fn cancel_leftovers(
    mut result: ExecutionResult,
    open: Vec<OpenOrder>,
    ports: &Ports,
    fence: Option<&Fence>,
    by: Timestamp,
) -> ExecutionResult {
    let may_appear = open.iter().filter(|o| o.may_appear_until.is_some()).count();
    if may_appear > 0 {
        // Said, for whoever wonders why the run's end waits.
        tracing::warn!(
            orders = may_appear,
            looking_until = %by,
            "orders whose submit's answer was lost may still be created by the broker: looking for them, to cancel them"
        );
    }
    // Each bounded: by `by`, and the one request then in flight (a first cancel always goes).
    let hard = by + chrono::Duration::from_std(LAST_REQUEST).unwrap_or_default();
    let bounded = |order: OpenOrder| async move {
        let client_id = order.client_id.clone();
        tokio::select! {
            biased;
            settled = settle_leftover(order, ports, fence, by) => settled,
            () = ports.clock.sleep_until(hard) => {
                Leftover::Named(format!("{client_id}: not settled when the run's end had to be over"))
            }
        }
    };
    let settled = futures_util::future::join_all(open.into_iter().map(bounded)).await;
    if settled.iter().any(|s| matches!(s, Leftover::TakenOver)) {
        return result;
    }
    let left: Vec<String> = settled
        .into_iter()
        .filter_map(|s| match s {
            Leftover::Named(named) => Some(named),
            Leftover::Settled | Leftover::TakenOver => None,
        })
        .collect();
    if !left.is_empty() {
        tracing::error!(orders = ?left, "orders of this run may still be working at the broker");
        let list = left.into_iter().map(serde_json::Value::String).collect();
        result.metadata.get_or_insert_with(Default::default).insert("possibly_working_orders".into(), list);
    }
    result
}

/// Settles one leftover order by `by` (see [`cancel_leftovers`]).
async fn settle_leftover(order: OpenOrder, ports: &Ports, fence: Option<&Fence>, by: Timestamp) -> Leftover {
    let client_id = order.client_id;
    let mut gap = chrono::Duration::seconds(1);
    let id = loop {
        // The orders of a plan another worker took over are that worker's to manage.
        if let Some(fence) = fence {
            if fence.allow_cancel().await.is_err() {
                return Leftover::TakenOver;
            }
        }
        if let Some(id) = order.broker_id.clone() {
            break id;
        }
        // Its answer never came: find it by client order id.
        let why = match contained(ports.broker.order_by_client_id(&client_id)).await {
            Ok(found) if !found.status.is_terminal() => break found.id,
            Ok(_) => return Leftover::Settled,
            Err(BrokerError::NotFound { .. }) => match order.may_appear_until {
                Some(until) if ports.clock.now() < until => {
                    format!("{client_id}: its request's answer was lost and it is not found; the broker may still create it until {until}")
                }
                _ => return Leftover::Settled,
            },
            Err(e) => format!("{client_id}: {e}"),
        };
        // The next look: after the back-off, or when the order's window closes (its last look
        // that matters), whichever comes first; a window already closed does not cut the back-off.
        let now = ports.clock.now();
        let next = now + gap;
        let wake = match order.may_appear_until {
            Some(until) if until > now => next.min(until),
            _ => next,
        };
        if wake > by {
            return Leftover::Named(why);
        }
        tracing::debug!(%client_id, reason = %why, "looking for a leftover order again");
        ports.clock.sleep_until(wake).await;
        gap = (gap * 2).min(LATE_LOOKUP_GAP);
    };
    tracing::warn!(%client_id, order = %id, "the run ended with this order open; cancelling it");
    match cancel_or_name(&client_id, id, ports, by).await {
        Some(named) => Leftover::Named(named),
        None => Leftover::Settled,
    }
}

/// Replacements followed from a leftover order that turns out replaced.
const REPLACEMENTS_FOLLOWED: usize = 3;

/// Cancels leftover order `id` of `client_id`; `None` once it is cancelled or final, else how
/// it is named in the result. One the broker will not cancel is read: final already, or still
/// being cancelled or replaced (and able to fill until then: orders stick in `pending_cancel`
/// on Alpaca); one found replaced has its replacement cancelled the same way (a replace refused
/// as not yet routed that Alpaca applied anyway is an order the run never counted as open).
async fn cancel_or_name(client_id: &ClientOrderId, id: BrokerOrderId, ports: &Ports, by: Timestamp) -> Option<String> {
    let mut id = id;
    for _ in 0..=REPLACEMENTS_FOLLOWED {
        match cancel_with_retries(&id, ports, by).await {
            Ok(()) => return None,
            Err(BrokerError::Rejected { reason: RejectReason::NotCancelable, .. }) => {
                match contained(ports.broker.order(&id)).await {
                    Ok(order) => match (order.status, order.replaced_by) {
                        (tranche_domain::OrderStatus::Replaced, Some(next)) => {
                            tracing::warn!(%client_id, order = %id, replacement = %next, "the leftover order was replaced; cancelling its replacement");
                            id = next;
                        }
                        (status, _) if status.is_terminal() => return None,
                        (status, _) => return Some(format!("{client_id} ({id}): {status}, its cancel not confirmed")),
                    },
                    Err(e) => return Some(format!("{client_id} ({id}): not cancelable, and unreadable: {e}")),
                }
            }
            Err(e) => return Some(format!("{client_id} ({id}): {e}")),
        }
    }
    Some(format!("{client_id} ({id}): replaced again and again; the last replacement was not cancelled"))
}

/// Cancels `id`, retrying failures that may be transient (a cancel is idempotent) while a retry
/// can start by `by`; an order that is gone counts as cancelled, one the broker will not cancel
/// (final, or being cancelled or replaced) is the caller's to read.
async fn cancel_with_retries(id: &BrokerOrderId, ports: &Ports, by: Timestamp) -> Result<(), BrokerError> {
    let mut wait = chrono::Duration::seconds(1);
    let mut attempt = 1;
    loop {
        match contained(ports.broker.cancel_order(id)).await {
            Ok(()) | Err(BrokerError::NotFound { .. }) => return Ok(()),
            Err(
                e @ (BrokerError::RateLimited { .. } | BrokerError::Transient { .. } | BrokerError::Uncertain { .. }),
            ) if attempt < CANCEL_ATTEMPTS && ports.clock.now() + wait <= by => {
                tracing::debug!(error = %e, attempt, "cancel failed; retrying");
                ports.clock.sleep_until(ports.clock.now() + wait).await;
                wait = wait * 2;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Waits for the ledger writes in flight, then records the result.
async fn finish(
    mut result: ExecutionResult,
    journal: Option<Journal>,
    mut records: JoinSet<Written>,
    mut order_writes: OrderWrites,
    clock: &Arc<dyn Clock>,
) -> Result<ExecutionResult, RunError> {
    let Some(journal) = journal else { return Ok(result) };
    let mut failure = None;
    while let Some(joined) = records.join_next().await {
        if let Ok(written) = joined {
            let to = Some((Arc::clone(&journal.ledger), journal.run.clone()));
            order_writes.written(&written, to, clock, &mut records);
            if let Some(error) = written.error {
                journal.fence.observe(&error);
                failure = Some(error);
            }
        }
    }
    if let Some(lost) = journal.claim_lost() {
        return Err(lost);
    }
    if let Some(error) = failure {
        // The result is what happened; a detail record the store refused does not make the
        // plan resumable (a resumed run would trade items this one stopped). Said in the result.
        let note = format!("some ledger records could not be written: {error}");
        tracing::error!(%note);
        let metadata = result.metadata.get_or_insert_with(Default::default);
        match metadata.get_mut("notes").and_then(serde_json::Value::as_array_mut) {
            Some(notes) => notes.push(serde_json::Value::String(note)),
            None => {
                metadata.insert("notes".into(), serde_json::json!([note]));
            }
        }
    }
    // A store that fails at times: the completion is written again (it is idempotent), and an
    // answer lost after it was applied is recognised by reading the run back.
    let mut wait = chrono::Duration::seconds(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let error = match journal.ledger.finish(&journal.run, &result).await {
            Ok(()) => return Ok(result),
            Err(LedgerError::ClaimLost { .. }) => {
                return Err(RunError::ClaimLost {
                    run_id: journal.run.run_id.clone(),
                    reason: "another worker took the plan over before this run could record its result".into(),
                })
            }
            Err(error) => error,
        };
        let completed = journal.ledger.runs(Some(&journal.run.plan_id)).await.is_ok_and(|runs| {
            runs.iter().any(|r| r.run_id == journal.run.run_id && r.status == tranche_ledger::RunStatus::Completed)
        });
        if completed {
            return Ok(result);
        }
        if attempt == FINISH_ATTEMPTS || matches!(error, LedgerError::NotActive { .. }) {
            return Err(RunError::LedgerAfterRun { error, result: Box::new(result) });
        }
        tracing::warn!(%error, attempt, "recording the result failed; trying again");
        clock.sleep_until(clock.now() + wait).await;
        wait = (wait * 2).min(chrono::Duration::seconds(8));
    }
}

/// The asset of each symbol, in order: from the asset list for a large plan (the names it does
/// not hold, and all of them should the list fail, read one by one), else one read per symbol,
/// all at once.
async fn read_assets(
    broker: &Arc<dyn Broker>,
    symbols: Vec<Symbol>,
) -> Vec<(Symbol, Result<tranche_domain::Asset, BrokerError>)> {
    let listed: std::collections::HashMap<Symbol, tranche_domain::Asset> =
        if symbols.len() >= crate::io::ASSET_LIST_FROM {
            match contained(broker.assets()).await {
                Ok(list) => list.into_iter().map(|a| (a.symbol.clone(), a)).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "the asset list cannot be read; reading each asset");
                    std::collections::HashMap::new()
                }
            }
        } else {
            std::collections::HashMap::new()
        };
    let mut lookups = JoinSet::new();
    let mut found = Vec::with_capacity(symbols.len());
    for (i, symbol) in symbols.into_iter().enumerate() {
        match listed.get(&symbol) {
            Some(asset) => found.push((i, symbol, Ok(asset.clone()))),
            None => {
                let broker = Arc::clone(broker);
                lookups.spawn(async move {
                    let asset = contained(broker.asset(&symbol)).await;
                    (i, symbol, asset)
                });
            }
        }
    }
    found.extend(lookups.join_all().await);
    found.sort_by_key(|(i, _, _)| *i);
    found.into_iter().map(|(_, symbol, asset)| (symbol, asset)).collect()
}

/// Attempts of a ledger write before it counts as failed (0.5, 1, 2 s apart).
const WRITE_ATTEMPTS: u32 = 4;

/// Attempts at beginning the run (0.5 s, then doubling up to 8 s apart: about 40 s in all);
/// nothing is traded yet, so waiting for the store costs only time.
const BEGIN_ATTEMPTS: u32 = 8;

/// Runs a ledger write (or read), again after a storage failure (every write of the ledger is
/// idempotent: a record is overwritten, an intent or fill created once, so a write whose answer
/// was lost is safe to repeat); any other error (a lost claim, a finished run) is final at once.
async fn durably<T, F, Fut>(clock: &Arc<dyn Clock>, write: F) -> Result<T, LedgerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, LedgerError>>,
{
    retrying(clock, WRITE_ATTEMPTS, write).await
}

/// Runs `call` up to `attempts` times while it fails with a storage error.
async fn retrying<T, F, Fut>(clock: &Arc<dyn Clock>, attempts: u32, mut call: F) -> Result<T, LedgerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, LedgerError>>,
{
    let mut wait = chrono::Duration::milliseconds(500);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call().await {
            Err(LedgerError::Storage(e)) if attempt < attempts => {
                tracing::debug!(error = %e, attempt, "a ledger call failed; trying again");
                clock.sleep_until(clock.now() + wait).await;
                wait = (wait * 2).min(chrono::Duration::seconds(8));
            }
            other => return other,
        }
    }
}

/// Attempts to record the result (1, 2, 4, then 8 s apart: about a minute in all).
const FINISH_ATTEMPTS: u32 = 10;

/// What the loop has under way: broker calls, ledger writes, timers, and the symbols whose quotes
/// it holds.
#[derive(Default)]
struct InFlight {
    tasks: JoinSet<Input>,
    records: JoinSet<Written>,
    order_writes: OrderWrites,
    timers: BTreeMap<TimerId, Timestamp>,
    subscribed: BTreeSet<Symbol>,
    /// The orders a replace is on its way for, each with whether a fill of it has come since
    /// the replace's last look (then the replace, still waiting in the client, must not leave).
    replacing: BTreeMap<BrokerOrderId, Arc<AtomicBool>>,
    /// How often the trade-update stream has broken (down, a gap, closed) since the run began.
    stream_breaks: Arc<AtomicU64>,
}

impl InFlight {
    /// What the trade-update stream said, as the core's input; a fill marks a replace on its
    /// way for the order as touched, and a break is counted (see [`ReplaceClearance`]).
    fn on_stream_event(&mut self, event: Option<StreamEvent>) -> Input {
        match event {
            Some(StreamEvent::Update(update)) => {
                if matches!(update.event, tranche_domain::TradeEvent::Fill | tranche_domain::TradeEvent::PartialFill) {
                    if let Some(touched) = self.replacing.get(&update.order.id) {
                        touched.store(true, Ordering::SeqCst);
                    }
                }
                Input::Update(update)
            }
            Some(StreamEvent::Up) => Input::StreamUp,
            Some(StreamEvent::Down { reason }) => {
                tracing::warn!(%reason, "trade-update stream down");
                self.stream_breaks.fetch_add(1, Ordering::SeqCst);
                Input::StreamDown
            }
            Some(StreamEvent::Gap { since }) => {
                self.stream_breaks.fetch_add(1, Ordering::SeqCst);
                Input::StreamGap { since }
            }
            None => {
                self.stream_breaks.fetch_add(1, Ordering::SeqCst);
                Input::StreamDown
            }
        }
    }
}

/// What a replace needs to still hold when it leaves: the claim on the plan (when the run is
/// fenced), and no fill of the order it replaces since the core's last look, as far as an
/// unbroken stream can tell (a replacement keeps the quantity sent, so a fill in between
/// would be traded twice; a fill's update lost with a broken stream is one nobody saw).
struct ReplaceClearance {
    fence: Option<Arc<Fence>>,
    touched: Arc<AtomicBool>,
    stream_breaks: Arc<AtomicU64>,
    /// The stream's breaks when the replace was cleared by the core.
    breaks_at_look: u64,
    /// Until when the core's last look (on the order as read back) still stands: a fill whose
    /// update was lost can only be caught by a read, and the read grows old while the replace
    /// waits in the client.
    fresh_until: tokio::time::Instant,
}

/// How long a replace's last look stands: far more than sending it at once takes, far less
/// than a wait for the request budget.
const REPLACE_LOOK_STANDS: std::time::Duration = std::time::Duration::from_millis(500);

impl Clearance for ReplaceClearance {
    fn holds(&self) -> bool {
        tokio::time::Instant::now() < self.fresh_until
            && !self.touched.load(Ordering::SeqCst)
            && self.stream_breaks.load(Ordering::SeqCst) == self.breaks_at_look
            && self.fence.as_ref().is_none_or(|f| f.acting_allowed())
    }
}

/// A ledger write that completed: which order's record it was (if one), its error, and whether
/// it was a renewal of the claim (whose failures the fence keeps).
struct Written {
    order: Option<ClientOrderId>,
    error: Option<LedgerError>,
    renewal: bool,
}

impl Written {
    fn other(result: Result<(), LedgerError>) -> Self {
        Self { order: None, error: result.err(), renewal: false }
    }
}

/// One write at a time per order record, so that a later state can never be overwritten by an
/// earlier one whose write finished last; while a write is in flight only the most advanced
/// record waiting for the order is kept (final over open, more filled over less, newer over
/// older).
#[derive(Default)]
struct OrderWrites {
    in_flight: BTreeSet<ClientOrderId>,
    waiting: BTreeMap<ClientOrderId, tranche_ledger::OrderRecord>,
}

impl OrderWrites {
    fn advance(record: &tranche_ledger::OrderRecord) -> (bool, Qty, Timestamp) {
        (record.status.is_terminal(), record.filled_qty, record.updated_at)
    }

    /// Writes `record` now, or after the write of the same order in flight.
    fn write(
        &mut self,
        record: tranche_ledger::OrderRecord,
        journal: Option<(Arc<dyn Ledger>, RunHandle)>,
        clock: &Arc<dyn Clock>,
        records: &mut JoinSet<Written>,
    ) {
        let Some((ledger, run)) = journal else { return };
        let clock = Arc::clone(clock);
        let id = record.client_order_id.clone();
        if self.in_flight.contains(&id) {
            let keep = self.waiting.get(&id).is_some_and(|w| Self::advance(w) > Self::advance(&record));
            if !keep {
                self.waiting.insert(id, record);
            }
            return;
        }
        self.in_flight.insert(id.clone());
        records.spawn(async move {
            let written = durably(&clock, || ledger.record_order(&run, &record)).await;
            Written { order: Some(id), error: written.err(), renewal: false }
        });
    }

    /// A write completed: the order's waiting record (if any) goes next.
    fn written(
        &mut self,
        done: &Written,
        journal: Option<(Arc<dyn Ledger>, RunHandle)>,
        clock: &Arc<dyn Clock>,
        records: &mut JoinSet<Written>,
    ) {
        let Some(id) = &done.order else { return };
        self.in_flight.remove(id);
        if let Some(next) = self.waiting.remove(id) {
            self.write(next, journal, clock, records);
        }
    }
}

/// What `dispatch` needs besides what is in flight.
struct Context<'a> {
    ports: &'a Ports,
    journal: Option<&'a Journal>,
    progress: Option<&'a mpsc::UnboundedSender<ProgressEvent>>,
}

fn note(text: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut map = serde_json::Map::new();
    map.insert("error".into(), serde_json::Value::String(text.to_owned()));
    map
}

/// The intent of a submit or replace, for the ledger.
fn intent(
    journal: &Journal,
    item: usize,
    request: &OrderRequest,
    replaces: Option<&BrokerOrderId>,
    arrival_mid: Option<Price>,
    now: Timestamp,
) -> OrderIntent {
    let (qty, order_type) = match request.amount {
        OrderAmount::Qty(q) => (q, request.order_type),
        OrderAmount::Notional(_) => (Qty::ZERO, request.order_type),
    };
    OrderIntent {
        plan_id: journal.run.plan_id.clone(),
        run_id: journal.run.run_id.clone(),
        item_index: u32::try_from(item).unwrap_or(u32::MAX),
        symbol: request.symbol.clone(),
        side: request.side,
        attempt: request.client_order_id.parse_derived().map_or(0, |d| d.attempt),
        client_order_id: request.client_order_id.clone(),
        order_type,
        qty,
        limit_price: request.limit_price,
        replaces: replaces.map(ToString::to_string),
        arrival_mid,
        created_at: now,
    }
}

/// Runs the core on one input and carries out its commands (the quotes wanted in this step go
/// out together); returns the result when the run is over.
fn step(core: &mut EngineCore, input: Input, context: &Context<'_>, work: &mut InFlight) -> Option<ExecutionResult> {
    let mut quotes_wanted = Vec::new();
    for command in core.handle(input, context.ports.clock.now()) {
        if let Command::FetchQuote { item, symbol } = command {
            quotes_wanted.push((item, symbol));
        } else if let Some(result) = dispatch(command, context, work) {
            return Some(result);
        }
    }
    fetch_quotes(quotes_wanted, context.ports, &mut work.tasks);
    None
}

/// Asks the broker's REST market data for the quotes items wanted in one step: one request for
/// one symbol, one multi-symbol request for several.
fn fetch_quotes(wanted: Vec<(usize, Symbol)>, ports: &Ports, tasks: &mut JoinSet<Input>) {
    let broker = Arc::clone(&ports.broker);
    match <[_; 1]>::try_from(wanted) {
        Ok([(item, symbol)]) => {
            tasks
                .spawn(async move { Input::RestQuote { item, result: contained(broker.latest_quote(&symbol)).await } });
        }
        Err(wanted) if wanted.is_empty() => {}
        Err(wanted) => {
            let (mut items, mut symbols): (Vec<usize>, Vec<Symbol>) = wanted.into_iter().unzip();
            // An item that asked for itself and was also asked for by one before it (its
            // quote fetched ahead) hears the answer once.
            items.sort_unstable();
            items.dedup();
            symbols.sort();
            symbols.dedup();
            tasks.spawn(
                async move { Input::RestQuotes { items, result: contained(broker.latest_quotes(&symbols)).await } },
            );
        }
    }
}

/// Sends a replace the core cleared on its last look, held back at the last moment before it
/// leaves if its [`ReplaceClearance`] lapsed meanwhile.
fn send_replace(
    item: usize,
    order: BrokerOrderId,
    request: tranche_domain::ReplaceRequest,
    context: &Context<'_>,
    tasks: &mut JoinSet<Input>,
    replacing: &mut BTreeMap<BrokerOrderId, Arc<AtomicBool>>,
    stream_breaks: &Arc<AtomicU64>,
) {
    let broker = Arc::clone(&context.ports.broker);
    let touched = Arc::new(AtomicBool::new(false));
    replacing.insert(order.clone(), Arc::clone(&touched));
    let stream_breaks = Arc::clone(stream_breaks);
    let breaks_at_look = stream_breaks.load(Ordering::SeqCst);
    let fresh_until = tokio::time::Instant::now() + REPLACE_LOOK_STANDS;
    let fence = context.journal.map(|j| Arc::clone(&j.fence));
    let clock = Arc::clone(&context.ports.clock);
    tasks.spawn(async move {
        // The proof made for the last look is normally still valid; if not, again.
        if let Some(fence) = fence.as_ref().filter(|f| !f.acting_allowed()) {
            if let Err(refusal) = fence.prove_for_order(&clock).await {
                let client_order_id = request.client_order_id.clone();
                return Input::IntentFailed { item, client_order_id, reason: refusal.to_string() };
            }
        }
        let clearance = Arc::new(ReplaceClearance { fence, touched, stream_breaks, breaks_at_look, fresh_until });
        let result = contained(broker.replace_order_if(&order, &request, Arc::clone(&clearance) as _)).await;
        // Its conditions never come back once failed: failed now, it was held back (and a
        // transient answer sends nothing either way).
        if matches!(result, Err(BrokerError::Transient { .. })) && !clearance.holds() {
            return Input::ReplaceHeldBack { item, old: order, client_order_id: request.client_order_id };
        }
        Input::Replaced { item, old: order, client_order_id: request.client_order_id, result }
    });
}

/// Runs one command; returns the result when the run is over.
fn dispatch(command: Command, context: &Context<'_>, work: &mut InFlight) -> Option<ExecutionResult> {
    let InFlight { tasks, records, order_writes, timers, subscribed, replacing, stream_breaks } = work;
    let ports = context.ports;
    let progress = context.progress;
    let broker = Arc::clone(&ports.broker);
    match command {
        Command::Preflight { symbols } => {
            // Every read at once: the run starts after one round trip, not one per read.
            tasks.spawn(async move {
                let (account, market, positions, open_orders, assets) = tokio::join!(
                    contained(broker.account()),
                    contained(broker.clock()),
                    contained(broker.positions()),
                    contained(broker.open_orders()),
                    read_assets(&broker, symbols),
                );
                Input::Preflight(Box::new(PreflightData { account, clock: market, positions, open_orders, assets }))
            });
        }
        Command::FetchPositions => {
            tasks.spawn(async move { Input::Positions(contained(broker.positions()).await) });
        }
        Command::FetchPosition { item, symbol } => {
            tasks.spawn(async move { Input::ItemPosition { item, result: contained(broker.position(&symbol)).await } });
        }
        Command::FetchAccount => {
            tasks.spawn(async move { Input::Account(contained(broker.account()).await) });
        }
        Command::FetchQuote { item, symbol } => fetch_quotes(vec![(item, symbol)], ports, tasks),
        Command::Subscribe(symbols) => {
            subscribed.extend(symbols.iter().cloned());
            let feed = Arc::clone(&ports.quotes);
            tasks.spawn(async move {
                match feed.subscribe(&symbols).await {
                    // Prime the core with whatever the feed already holds.
                    Ok(()) => Input::Quotes(symbols.iter().filter_map(|s| feed.latest(s)).collect()),
                    Err(e) => {
                        tracing::warn!(error = %e, symbols = symbols.len(), "quote subscription refused");
                        Input::SubscribeRefused { symbols, message: e.to_string() }
                    }
                }
            });
        }
        Command::Release(symbols) => {
            for s in &symbols {
                subscribed.remove(s);
            }
            // At once, before any subscribe that follows it is spawned: a slot freed here is free
            // when the next subscription counts.
            ports.quotes.release(&symbols);
        }
        Command::SendReplace { item, order, request } => {
            send_replace(item, order, request, context, tasks, replacing, stream_breaks);
        }
        command @ (Command::Submit { .. } | Command::Replace { .. } | Command::Cancel { .. } | Command::Record(_)) => {
            dispatch_journaled(command, context, tasks, records, order_writes);
        }
        Command::LookupClientId { item, client_order_id } => {
            tasks.spawn(async move {
                let result = contained(broker.order_by_client_id(&client_order_id)).await;
                Input::LookedUp { item, client_order_id, result }
            });
        }
        Command::LookupOrder { item, client_order_id, order } => {
            tasks.spawn(async move {
                let result = contained(broker.order(&order)).await;
                Input::LookedUp { item, client_order_id, result }
            });
        }
        Command::FetchFills { since } => {
            tasks.spawn(async move { Input::Fills(contained(broker.fill_activities(since)).await) });
        }
        Command::SetTimer { id, at } => {
            timers.insert(id, at);
        }
        Command::CancelTimer(id) => {
            timers.remove(&id);
        }
        Command::Emit(event) => {
            // The core never logs; what it says is logged here.
            match &event {
                ProgressEvent::Warning { symbol, message, .. } => {
                    tracing::warn!(symbol = symbol.as_ref().map(Symbol::as_str), "{message}");
                }
                _ => tracing::debug!(?event, "progress"),
            }
            if let Some(tx) = progress {
                // A receiver that went away only stops the progress display.
                let _ = tx.send(event);
            }
        }
        Command::Finish(result) => return Some(*result),
    }
    None
}

/// Makes the intent of an order durable, then proves the claim on the plan, before the order
/// leaves the process (when the run is journaled); if either fails, the input that stops the
/// order from being sent. The proof is valid when this returns: the caller sends at once.
async fn cleared_to_send(
    journal: Option<(Arc<dyn Ledger>, RunHandle, Arc<Fence>)>,
    intent: Option<OrderIntent>,
    item: usize,
    client_order_id: &ClientOrderId,
    clock: &Arc<dyn Clock>,
) -> Result<(), Input> {
    let (Some((ledger, run, fence)), Some(intent)) = (journal, intent) else { return Ok(()) };
    let not_sent = |reason: String| Input::IntentFailed { item, client_order_id: client_order_id.clone(), reason };
    durably(clock, || ledger.record_intent(&run, &intent)).await.map_err(|e| not_sent(e.to_string()))?;
    // A lost claim stops the run before this input is read.
    fence.prove_for_order(clock).await.map_err(|refusal| not_sent(refusal.to_string()))
}

/// Times an order whose proof lapsed while it waited to leave is proven again and sent again.
const CLEARANCE_ATTEMPTS: u32 = 4;

/// Places `request`, looked at by the fence (when the run is fenced) at the last moment before
/// it leaves; a proof that lapsed in the client's wait (a frozen process, a long queue for the
/// request budget) is proven again and the order sent again (a transient answer sends nothing),
/// or the claim is found lost and nothing leaves (`Err`).
async fn submit_fenced(
    broker: &Arc<dyn Broker>,
    fence: Option<&Arc<Fence>>,
    clock: &Arc<dyn Clock>,
    request: &OrderRequest,
) -> Result<Result<tranche_domain::Order, BrokerError>, String> {
    let Some(fence) = fence else { return Ok(contained(broker.submit_order(request)).await) };
    let mut attempt = 1;
    loop {
        let result = contained(broker.submit_order_if(request, Arc::clone(fence) as _)).await;
        let lapsed = matches!(result, Err(BrokerError::Transient { .. })) && !fence.acting_allowed();
        if !lapsed || attempt == CLEARANCE_ATTEMPTS {
            return Ok(result);
        }
        attempt += 1;
        fence.prove_for_order(clock).await.map_err(|refusal| refusal.to_string())?;
    }
}

/// Orders (intent first, fenced), cancels (fenced) and ledger records.
fn dispatch_journaled(
    command: Command,
    context: &Context<'_>,
    tasks: &mut JoinSet<Input>,
    records: &mut JoinSet<Written>,
    order_writes: &mut OrderWrites,
) {
    let broker = Arc::clone(&context.ports.broker);
    let clock = Arc::clone(&context.ports.clock);
    let journal = context.journal.map(|j| (Arc::clone(&j.ledger), j.run.clone()));
    let fenced = context.journal.map(|j| (Arc::clone(&j.ledger), j.run.clone(), Arc::clone(&j.fence)));
    match command {
        Command::Submit { item, request, arrival_mid } => {
            let intent = context.journal.map(|j| intent(j, item, &request, None, arrival_mid, clock.now()));
            let fence = context.journal.map(|j| Arc::clone(&j.fence));
            tasks.spawn(async move {
                if let Err(failed) = cleared_to_send(fenced, intent, item, &request.client_order_id, &clock).await {
                    return failed;
                }
                match submit_fenced(&broker, fence.as_ref(), &clock, &request).await {
                    Ok(result) => Input::Submitted { item, client_order_id: request.client_order_id, result },
                    Err(reason) => Input::IntentFailed { item, client_order_id: request.client_order_id, reason },
                }
            });
        }
        Command::Replace { item, order, symbol, side, request, arrival_mid } => {
            let as_order = OrderRequest {
                client_order_id: request.client_order_id.clone(),
                symbol,
                side,
                amount: OrderAmount::Qty(request.qty.unwrap_or(Qty::ZERO)),
                order_type: tranche_domain::OrderType::Limit,
                time_in_force: request.time_in_force.unwrap_or(tranche_domain::TimeInForce::Day),
                limit_price: request.limit_price,
                extended_hours: false,
            };
            let intent = context.journal.map(|j| intent(j, item, &as_order, Some(&order), arrival_mid, clock.now()));
            tasks.spawn(async move {
                if let Err(failed) = cleared_to_send(fenced, intent, item, &request.client_order_id, &clock).await {
                    return failed;
                }
                // Not sent yet: the core takes a last look at the order it replaces, as it is now.
                let current = contained(broker.order(&order)).await;
                Input::ReplaceCleared { item, old: order, request, current }
            });
        }
        Command::Cancel { item, order } => {
            let fence = context.journal.map(|j| Arc::clone(&j.fence));
            tasks.spawn(async move {
                let refused = match &fence {
                    Some(fence) => fence.allow_cancel().await.err(),
                    None => None,
                };
                if let Some(refusal) = refused {
                    // Only a lost claim refuses a cancel, and the run stops on it before this
                    // answer is read.
                    let result = Err(BrokerError::Transient { message: refusal.to_string() });
                    return Input::Canceled { item, order, result };
                }
                let result = contained(broker.cancel_order(&order)).await;
                Input::Canceled { item, order, result }
            });
        }
        Command::Record(record) => match *record {
            LedgerRecord::Order(order) => order_writes.write(order, journal, &clock, records),
            LedgerRecord::Item(mut item) => {
                if let Some((ledger, run)) = journal {
                    records.spawn(async move {
                        item.run_id.clone_from(&run.run_id);
                        Written::other(durably(&clock, || ledger.record_item(&run, &item)).await)
                    });
                }
            }
            LedgerRecord::Fill(mut fill) => {
                if let Some((ledger, run)) = journal {
                    records.spawn(async move {
                        fill.run_id.clone_from(&run.run_id);
                        Written::other(durably(&clock, || ledger.record_fill(&run, &fill)).await.map(|_| ()))
                    });
                }
            }
        },
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tranche_broker::{BrokerError, ManualClock, MockBroker, MockOrderEvents, MockQuoteFeed, RejectReason};
    use tranche_domain::{BrokerOrderId, ClientOrderId, ExecutionResult, Order, OrderStatus};

    use super::{cancel_leftovers, contained, OpenOrder, Ports};

    /// A broker call that panics answers an error of unknown outcome, with what it said; one
    /// that does not is answered as it is.
    #[tokio::test]
    async fn a_broker_call_that_panics_answers_an_error_of_unknown_outcome() {
        let panicked: Result<u32, BrokerError> = contained(async { panic!("index out of bounds") }).await;
        match panicked {
            Err(BrokerError::Uncertain { message }) => assert!(message.contains("index out of bounds"), "{message}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(contained(async { Ok::<u32, BrokerError>(7) }).await, Ok(7));
    }

    fn not_cancelable() -> BrokerError {
        BrokerError::Rejected {
            reason: RejectReason::NotCancelable,
            code: Some(42_210_000),
            message: "order is not cancelable".into(),
        }
    }

    fn order(id: &str, status: OrderStatus, replaced_by: Option<&str>) -> Order {
        Order {
            id: BrokerOrderId::new(id),
            client_order_id: ClientOrderId::from_broker("tr-p-AAPL-b0"),
            symbol: tranche_domain::Symbol::parse("AAPL").unwrap_or_else(|e| panic!("{e}")),
            side: tranche_domain::Side::Buy,
            order_type: tranche_domain::OrderType::Limit,
            time_in_force: tranche_domain::TimeInForce::Day,
            qty: Some(tranche_domain::Qty::new(10.into())),
            notional: None,
            limit_price: None,
            stop_price: None,
            status,
            filled_qty: tranche_domain::Qty::ZERO,
            filled_avg_price: None,
            created_at: chrono::DateTime::UNIX_EPOCH,
            updated_at: None,
            filled_at: None,
            replaces: None,
            replaced_by: replaced_by.map(BrokerOrderId::new),
            extended_hours: false,
        }
    }

    fn ports(broker: MockBroker) -> Ports {
        let now = chrono::DateTime::parse_from_rfc3339("2026-03-02T14:40:00Z").map(Into::into).unwrap_or_default();
        Ports {
            broker: Arc::new(broker),
            events: Box::new(MockOrderEvents::new()),
            quotes: Arc::new(MockQuoteFeed::new()),
            clock: Arc::new(ManualClock::new(now)),
        }
    }

    fn named(result: &ExecutionResult) -> String {
        result
            .metadata
            .as_ref()
            .and_then(|m| m.get("possibly_working_orders"))
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    /// A lost submit whose late-order window closed before the run ended, and whose lookups fail
    /// (the broker in trouble, as it tends to be when submits are lost): looked up again with
    /// the back-off, not back to back until the wind-down's end (a closed window cut every wait
    /// to nothing).
    #[tokio::test(start_paused = true)]
    async fn lookups_of_a_leftover_back_off_when_its_window_has_closed() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let looked = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&looked);
        let mut broker = MockBroker::new();
        broker.expect_order_by_client_id().returning(move |_| {
            // Found gone at last, so that a loop without back-off ends too (and is counted).
            if count.fetch_add(1, Ordering::SeqCst) >= 100 {
                Err(BrokerError::NotFound { what: "order".into() })
            } else {
                Err(BrokerError::Transient { message: "503".into() })
            }
        });
        let now = chrono::DateTime::parse_from_rfc3339("2026-03-02T14:40:00Z").map(Into::into).unwrap_or_default();
        let ports = Ports {
            broker: Arc::new(broker),
            events: Box::new(MockOrderEvents::new()),
            quotes: Arc::new(MockQuoteFeed::new()),
            clock: Arc::new(tranche_broker::TokioClock::starting_at(now)),
        };
        let empty = ExecutionResult::from_items("p", "c", Vec::new(), chrono::DateTime::UNIX_EPOCH, None);
        let open = vec![OpenOrder {
            client_id: ClientOrderId::from_broker("tr-p-AAPL-b0"),
            broker_id: None,
            may_appear_until: Some(now - chrono::Duration::seconds(1)),
        }];
        let result = cancel_leftovers(empty, open, &ports, None, now + chrono::Duration::seconds(60)).await;
        let looked = looked.load(Ordering::SeqCst);
        assert!(looked <= 12, "{looked} lookups in a minute");
        assert!(named(&result).contains("503"), "named with its last error: {}", named(&result));
    }

    /// The leftover order was replaced (a replace refused as not yet routed that Alpaca applied
    /// anyway: the run never counted the replacement as open). Its replacement may be working:
    /// it is cancelled, and named while it cannot be.
    #[tokio::test]
    async fn a_leftover_found_replaced_has_its_replacement_cancelled_or_named() {
        for replacement_cancels in [true, false] {
            let mut broker = MockBroker::new();
            broker.expect_cancel_order().returning(move |id| {
                if id.as_str() == "o2" && replacement_cancels {
                    Ok(())
                } else {
                    Err(not_cancelable())
                }
            });
            broker.expect_order().returning(|id| {
                Ok(match id.as_str() {
                    "o1" => order("o1", OrderStatus::Replaced, Some("o2")),
                    _ => order("o2", OrderStatus::PendingCancel, None),
                })
            });
            let ports = ports(broker);
            let empty = ExecutionResult::from_items("p", "c", Vec::new(), chrono::DateTime::UNIX_EPOCH, None);
            let open = vec![OpenOrder {
                client_id: ClientOrderId::from_broker("tr-p-AAPL-b0"),
                broker_id: Some(BrokerOrderId::new("o1")),
                may_appear_until: None,
            }];
            let by = ports.clock.now() + chrono::Duration::seconds(60);
            let result = cancel_leftovers(empty, open, &ports, None, by).await;
            if replacement_cancels {
                assert_eq!(named(&result), "", "the replacement was cancelled");
            } else {
                let named = named(&result);
                assert!(named.contains("o2") && named.contains("pending_cancel"), "{named}");
            }
        }
    }
}
