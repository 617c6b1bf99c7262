//! Exactly-once under chaos: simulator faults on (dropped, duplicated, delayed and reordered
//! updates, stream outages, 5xx, 429, submits that time out before or after taking effect,
//! quote gaps; in the full test bed also late orders and replaces, slow routing, activity ids
//! unrelated to execution ids, ledger store faults and a worker frozen past its lease), plus a
//! crash of the engine at a random moment followed by a restart of the same plan id against the
//! same broker and ledger, two workers on one plan, and a redelivery of the completed plan.
//! Checked for every seed: the broker's referee saw nothing (no second working order, no buy
//! before the sells, no margin, no reused id, no order for the completed plan, ...), the ledger
//! equals the broker field by field, every order final, every item once, and each item traded
//! exactly what the run set out to trade. Every fault a suite turns on must have fired at least
//! 50 times.
//!
//! Every fault of the test bed is held to (`exactly_once_under_every_fault_of_the_test_bed`): late
//! replaces, the ledger store's faults and a worker frozen past its lease included.
//!
//! Debugging one seed: `CHAOS_SEED=N` runs only seed N, `CHAOS_TRACE=N` prints the simulator's
//! log of seed N (every request, answer, update and fill, in simulated time), and
//! `CHAOS_SHOW=N` shows the first N failing seeds instead of 6, and `CHAOS_FILLS=1` prints every
//! fill of the broker and of the ledger.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use tranche::audit::ledger_mismatches;
use tranche::broker::Clock;
use tranche::domain::{ExecutionResult, ItemOutcome, RebalancePlan, Side, Symbol};
use tranche::engine::{execute_recorded, EngineConfig, Ports, RunError};
use tranche::ledger::{LeaseTerms, Ledger, ObjectLedger, RunStatus};
use tranche::sim::{FaultConfig, Rng, SimConfig, SimulatedBroker, Tally, ViolationKind};
use tranche::simulation::{scenario, start_sim, POOL};
use tranche::workers::{run_two_workers, with_client_waits, ClientWaits, ClientWaitsSeen, TwoWorkers};
use tranche_ledger::faults::{FaultPlan, FaultyStore};

const SEEDS: u64 = 1000;

/// The ports of one worker; its orders may first wait in its client (`waits`).
fn ports(broker: &SimulatedBroker, clock: &Arc<dyn Clock>, waits: Option<ClientWaits>, name: &str) -> Ports {
    let direct: Arc<dyn tranche::broker::Broker> = Arc::new(broker.broker());
    Ports {
        broker: match waits {
            Some(waits) => with_client_waits(direct, Arc::clone(clock), waits, name),
            None => direct,
        },
        events: Box::new(broker.order_events()),
        quotes: Arc::new(broker.quote_feed()),
        clock: Arc::clone(clock),
    }
}

/// A worker's ledger on the simulation's clock, with a short lease: a restarted worker takes a
/// crashed run over after ten seconds.
fn worker(store: &Arc<dyn object_store::ObjectStore>, name: &str, clock: &Arc<dyn Clock>) -> Arc<dyn Ledger> {
    let clock = Arc::clone(clock);
    let lease = LeaseTerms::new(Duration::from_secs(10), Duration::ZERO).unwrap();
    Arc::new(
        ObjectLedger::new(Arc::clone(store), "chaos", name)
            .with_lease(lease)
            .with_time_source(Arc::new(move || clock.now())),
    )
}

struct Outcome {
    result: ExecutionResult,
    crashed_at: Option<f64>,
}

async fn run_with_crash(
    plan: &RebalancePlan,
    sim: SimConfig,
    crash_after: Option<Duration>,
    store: &Arc<dyn object_store::ObjectStore>,
    waits: Option<ClientWaits>,
) -> (Outcome, SimulatedBroker, Arc<dyn Clock>) {
    let (broker, clock) = start_sim(sim).unwrap();
    broker.with_sim(|s| s.referee_mut().watch(plan));
    let engine = EngineConfig::default();
    let start = clock.now();
    let mut crashed_at = None;
    if let Some(after) = crash_after {
        let deadline = start + chrono::Duration::from_std(after).unwrap();
        let run = execute_recorded(
            plan.clone(),
            engine.clone(),
            ports(&broker, &clock, waits.clone(), "first"),
            worker(store, "first", &clock),
            None,
        );
        tokio::select! {
            biased;
            finished = run => match finished {
                Ok(result) => return (Outcome { result, crashed_at }, broker, clock),
                Err(RunError::LedgerAfterRun { result, .. }) => {
                    return (Outcome { result: *result, crashed_at }, broker, clock);
                }
                // Refused at the start: nothing was traded; the redelivery below runs it.
                Err(RunError::Ledger(_) | RunError::AlreadyRunning { .. } | RunError::ClaimLost { .. } | RunError::LeftResumable { .. }) => {}
            },
            () = clock.sleep_until(deadline) => {
                // The process dies here: every task of the run is dropped mid-flight.
                crashed_at = Some(after.as_secs_f64());
            }
        }
    }
    // The restart is a redelivery: delivered again (a few seconds apart) while the ledger cannot
    // be begun, as a queue redelivers a failed event.
    let mut refusals = Vec::new();
    for _ in 0..20 {
        match execute_recorded(
            plan.clone(),
            engine.clone(),
            ports(&broker, &clock, waits.clone(), "second"),
            worker(store, "second", &clock),
            None,
        )
        .await
        {
            Ok(result) => return (Outcome { result, crashed_at }, broker, clock),
            Err(RunError::LedgerAfterRun { result, .. }) => {
                return (Outcome { result: *result, crashed_at }, broker, clock)
            }
            // Refused (the ledger could not be begun, or it says another worker holds the plan):
            // delivered again later, as a queue redelivers a failed event.
            Err(
                e @ (RunError::Ledger(_)
                | RunError::AlreadyRunning { .. }
                | RunError::ClaimLost { .. }
                | RunError::LeftResumable { .. }),
            ) => {
                refusals.push(e.to_string());
                clock.sleep_until(clock.now() + chrono::Duration::seconds(5)).await;
            }
        }
    }
    panic!("the plan was refused at 20 deliveries in a row: {}", refusals.join("; "))
}

/// What a seed exercised, so the test can prove it is not vacuous.
#[derive(Default)]
struct Exercised {
    /// Orders that waited in a worker's client, and those a frozen worker held back.
    client: Arc<ClientWaitsSeen>,
    crashed_with_orders: u32,
    resumed: u32,
    lost_updates: u64,
    fills: usize,
    compared: u32,
    beyond_one_share: u32,
    attempted: u32,
    completed: u32,
    redelivered: u32,
    fired: Tally,
    referee: Tally,
    two_workers: u32,
    paused: u32,
    /// Faults of the ledger's object store, by kind.
    store_fired: Tally,
    /// Two-worker seeds where both workers ran the plan to a result (a takeover).
    both_ran: u32,
    /// Two-worker seeds where one worker was told the plan is running elsewhere.
    turned_away: u32,
}

/// Two workers on the plan at once (a redelivered event): the second starts up to 10 s after
/// the first with its clock up to 5 s off; in half the seeds the first freezes past its lease.
async fn run_two(
    plan: &RebalancePlan,
    sim: SimConfig,
    seed: u64,
    may_freeze: bool,
    store: &Arc<dyn object_store::ObjectStore>,
    seen: &mut Exercised,
) -> (Result<(ExecutionResult, Vec<String>), String>, SimulatedBroker, Arc<dyn Clock>) {
    let (broker, clock) = start_sim(sim).unwrap();
    broker.with_sim(|s| s.referee_mut().watch(plan));
    let mut rng = Rng::derive(seed, "workers");
    let lease = LeaseTerms::new(Duration::from_secs(30), Duration::from_secs(5)).unwrap();
    let pause_at = Duration::from_millis(rng.below(10_000));
    let pause_for = lease.length() + Duration::from_millis(10_000 + rng.below(50_000));
    // Redelivered at once, or (when the first freezes) while the first's lease has lapsed.
    let spare = u64::try_from(pause_for.saturating_sub(lease.length()).as_millis()).unwrap();
    let late_start = pause_at + lease.length() + lease.clock_skew() + Duration::from_millis(6_000 + rng.below(spare));
    let frozen = rng.below(2) == 0 && may_freeze;
    let setup = TwoWorkers {
        second_starts_after: if frozen { late_start } else { Duration::from_millis(rng.below(10_000)) },
        second_skew_ms: rng.range_i64(-5_000, 5_000),
        first_paused: frozen.then_some((pause_at, pause_for)),
        lease,
        // Most orders wait up to 5 s in the client (a rate limiter's queue when the budget runs
        // short, a fresh connection): one waiting when the first worker freezes leaves after it
        // resumes.
        client_waits: Some(ClientWaits { seed, chance_ppm: 700_000, max_ms: 5_000, seen: Arc::clone(&seen.client) }),
    };
    seen.two_workers += 1;
    seen.paused += u32::from(setup.first_paused.is_some());
    let both = Box::pin(run_two_workers(plan, &EngineConfig::default(), &broker, &clock, store, "chaos", &setup)).await;
    // The answer of the worker that finished last stands (both may have finished the plan).
    // Turned away at the start, or stopped once the other had taken the plan over.
    let running_elsewhere = |r: &Result<ExecutionResult, RunError>| {
        matches!(r, Err(RunError::AlreadyRunning { .. } | RunError::ClaimLost { .. }))
    };
    seen.turned_away += u32::from(running_elsewhere(&both.first) || running_elsewhere(&both.second));
    seen.both_ran += u32::from(both.first.is_ok() && both.second.is_ok());
    // A worker may only be turned away ("running elsewhere"); any other error is a finding.
    let mut errors = Vec::new();
    for (name, outcome) in [("first", &both.first), ("second", &both.second)] {
        if let Err(e) = outcome {
            if !running_elsewhere(outcome) {
                errors.push(format!("the {name} worker failed: {e}"));
            }
        }
    }
    let result = match (both.first, both.second) {
        (Ok(a), Ok(b)) => Ok(if b.execution_timestamp >= a.execution_timestamp { b } else { a }),
        (Ok(r), Err(_)) | (Err(_), Ok(r)) => Ok(r),
        (Err(a), Err(b)) => Err(format!("neither worker finished: {a}; {b}")),
    };
    (result.map(|r| (r, errors)), broker, clock)
}

/// What a suite runs: the faults, and whether a worker of a two-worker seed may freeze past its
/// lease (else the second worker arrives while the first holds a live lease).
#[derive(Clone)]
struct Mode {
    faults: FaultConfig,
    freeze: bool,
    /// Faults of the object store under the workers' ledgers (the auditor reads the store
    /// directly).
    store: Option<fn(u64) -> FaultPlan>,
}

async fn check(seed: u64, mode: &Mode, seen: &mut Exercised) -> Vec<String> {
    let faults = &mode.faults;
    let mut base = SimConfig { faults: faults.clone(), ..SimConfig::default() };
    if seed % 3 == 2 {
        // Whole shares only: re-pegs go out as replaces (Alpaca cannot replace a fractional
        // quantity), so the faults of replaces get their chance.
        base.symbols.non_fractionable = POOL.iter().map(|s| Symbol::parse(s).unwrap()).collect();
    }
    base.record_log = std::env::var("CHAOS_TRACE").is_ok();
    let (plan, sim) = scenario(seed, 6, &base);
    let mut rng = Rng::derive(seed, "crash");
    let crash_after = (rng.below(4) != 0).then(|| Duration::from_millis(rng.below(25_000)));
    let store: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let faulty = mode.store.map(|plan| Arc::new(FaultyStore::new(Arc::clone(&store), plan(seed))));
    let workers_store: Arc<dyn object_store::ObjectStore> = match &faulty {
        Some(f) => Arc::clone(f) as Arc<dyn object_store::ObjectStore>,
        None => Arc::clone(&store),
    };
    let mut worker_errors = Vec::new();
    let (outcome, broker, clock) = if seed % 5 == 4 {
        match run_two(&plan, sim, seed, mode.freeze, &workers_store, seen).await {
            (Ok((result, errors)), broker, clock) => {
                worker_errors = errors;
                (Outcome { result, crashed_at: None }, broker, clock)
            }
            (Err(e), _, _) => return vec![format!("seed {seed} (two workers):"), e],
        }
    } else {
        // A third of the orders wait up to 2 s in the client (a rate limiter's queue, a fresh
        // connection), as the Alpaca adapter's do when the budget runs short.
        let waits = ClientWaits { seed, chance_ppm: 330_000, max_ms: 2_000, seen: Arc::clone(&seen.client) };
        run_with_crash(&plan, sim, crash_after, &workers_store, Some(waits)).await
    };
    for (name, count) in faulty.map(|f| f.faults_fired()).unwrap_or_default() {
        seen.store_fired.hit_times(name, count);
    }
    if std::env::var("CHAOS_TRACE").ok() == Some(seed.to_string()) {
        broker.with_sim(|s| s.log().iter().for_each(|l| eprintln!("TRACE {l}")));
    }
    // Cancels and late updates land, and every request answered with a timeout reaches the
    // broker's books (a late order may be created long after the run), before anything is read.
    clock.sleep_until(clock.now() + chrono::Duration::seconds(5)).await;
    tranche::simulation::settle(&broker, &clock).await;
    // The same plan on the same market, undisturbed: no faults, no crash.
    let (clean_plan, clean_sim) =
        scenario(seed, 6, &SimConfig { symbols: base.symbols.clone(), ..SimConfig::default() });
    let (clean, _, _) = run_with_crash(
        &clean_plan,
        clean_sim,
        None,
        &(Arc::new(object_store::memory::InMemory::new()) as Arc<dyn object_store::ObjectStore>),
        None,
    )
    .await;
    let ledger = worker(&store, "auditor", &clock);
    let ledger_fills = ledger.fills(&plan.plan_id).await.unwrap();
    let intents = ledger.intents(&plan.plan_id).await.unwrap();
    // Every order and fill but the account owner's (`owner_sale`, trading beside the run): an
    // order of the engine's under another plan's tag is still checked (and found).
    let ours = |id: &tranche::domain::ClientOrderId| !id.as_str().starts_with("owner-sale-");
    let (orders, fills, positions_after) = broker.with_sim(|s| {
        (
            s.orders().filter(|o| ours(&o.client_order_id)).cloned().collect::<Vec<_>>(),
            s.fills().iter().filter(|f| ours(&f.client_order_id)).cloned().collect::<Vec<_>>(),
            s.positions().into_iter().map(|p| (p.symbol, p.qty.get())).collect::<BTreeMap<_, _>>(),
        )
    });
    let result = &outcome.result;
    let mut problems = worker_errors;
    if outcome.crashed_at.is_some() && !intents.is_empty() {
        seen.crashed_with_orders += 1;
    }
    let notes = result.metadata.as_ref().and_then(|m| m.get("notes")).map(ToString::to_string).unwrap_or_default();
    seen.resumed += u32::from(notes.contains("resumed an interrupted run"));
    seen.lost_updates += broker.with_sim(|s| s.lost_updates());
    seen.fills += fills.len();
    seen.attempted += result.orders_placed;
    seen.completed += u32::try_from(result.orders.iter().filter(|r| r.reached_target()).count()).unwrap_or(u32::MAX);

    if std::env::var("CHAOS_FILLS").is_ok() {
        print_fills(&fills, &ledger_fills);
    }
    check_orders(&orders, &intents, &mut problems);
    // The ledger against the broker, field by field (orders and fills): what it finds is the
    // referee's `ledger_mismatch`.
    let ledger_orders = ledger.orders(&plan.plan_id).await.unwrap();
    let mismatches = ledger_mismatches(&plan.plan_id, &ledger_orders, &ledger_fills, &orders, &fills);
    broker.with_sim(|s| {
        let now = s.now();
        for m in mismatches {
            s.referee_mut().report(ViolationKind::LedgerMismatch, now, m);
        }
    });
    check_items(&plan, result, &clean.result, &fills, &intents, &positions_after, seen, &mut problems);
    redeliver(&plan, result, &broker, &clock, &store, seen, &mut problems).await;
    if !problems.is_empty() {
        problems.insert(
            0,
            format!(
                "seed {seed} (crash at {:?} s{}): {:?} {notes}",
                outcome.crashed_at,
                if seed % 5 == 4 { ", two workers" } else { "" },
                result
                    .orders
                    .iter()
                    .map(|r| (r.symbol.as_str().to_owned(), r.outcome, r.reason.clone()))
                    .collect::<Vec<_>>()
            ),
        );
    }
    problems
}

/// Every fill of the broker and of the ledger, for debugging a seed (`CHAOS_FILLS=1`).
fn print_fills(broker: &[tranche::domain::Fill], ledger: &[tranche::ledger::FillRecord]) {
    for f in broker {
        eprintln!("BROKER {} {} {} {}", f.execution_id, f.client_order_id, f.qty, f.price);
    }
    for f in ledger {
        eprintln!(
            "LEDGER {} {} {} {} @ {} run {}",
            f.execution_id, f.client_order_id, f.qty, f.price, f.filled_at, f.run_id
        );
    }
}

/// Every order final, no client order id twice, none sent without a recorded intent.
fn check_orders(
    orders: &[tranche::domain::Order],
    intents: &[tranche::ledger::OrderIntent],
    problems: &mut Vec<String>,
) {
    let mut ids = BTreeSet::new();
    for o in orders {
        if !ids.insert(o.client_order_id.clone()) {
            problems.push(format!("client order id {} twice", o.client_order_id));
        }
        if !o.status.is_terminal() {
            problems.push(format!("order {} still {}", o.client_order_id, o.status));
        }
        if !intents.iter().any(|i| i.client_order_id == o.client_order_id) {
            problems.push(format!("order {} was sent without a recorded intent", o.client_order_id));
        }
    }
}

/// Delivers the plan once more: when the ledger holds it completed, the ledger answers and the
/// broker hears nothing (the referee counts any order sent for it). Then collects what the
/// referee saw over the whole seed, and the faults that fired.
async fn redeliver(
    plan: &RebalancePlan,
    result: &ExecutionResult,
    broker: &SimulatedBroker,
    clock: &Arc<dyn Clock>,
    store: &Arc<dyn object_store::ObjectStore>,
    seen: &mut Exercised,
    problems: &mut Vec<String>,
) {
    let orders_before = broker.with_sim(|s| s.orders().count());
    let runs = worker(store, "auditor", clock).runs(Some(&plan.plan_id)).await.unwrap();
    if runs.iter().any(|r| r.status == RunStatus::Completed) {
        broker.with_sim(|s| s.referee_mut().plan_completed(&plan.plan_id));
    } else {
        problems.push("the ledger does not hold the plan as completed after the run".into());
    }
    match execute_recorded(
        plan.clone(),
        EngineConfig::default(),
        ports(broker, clock, None, "again"),
        worker(store, "again", clock),
        None,
    )
    .await
    {
        Ok(again) if again.orders.len() == result.orders.len() => seen.redelivered += 1,
        Ok(again) => problems.push(format!("the redelivered plan answered {} rows", again.orders.len())),
        Err(e) => problems.push(format!("the redelivered plan was refused: {e}")),
    }
    let (after, referee, counts, fired) = broker.with_sim(|s| {
        let referee: Vec<String> = s.referee().violations().iter().map(ToString::to_string).collect();
        (s.orders().count(), referee, s.referee().counts(), s.faults_fired())
    });
    if after != orders_before {
        problems.push(format!("{} orders sent for the completed plan", after - orders_before));
    }
    problems.extend(referee.into_iter().map(|v| format!("referee: {v}")));
    seen.referee.add(&counts);
    seen.fired.add(&fired);
}

/// Per item: once in the result, result fills equal broker fills (shares, dollars, average
/// price, slippage), no oversell, never more than the recorded target, filled only with less than
/// an order's worth left, and the same dollars as an undisturbed run.
#[allow(clippy::too_many_arguments)]
fn check_items(
    plan: &RebalancePlan,
    result: &ExecutionResult,
    clean: &ExecutionResult,
    fills: &[tranche::domain::Fill],
    intents: &[tranche::ledger::OrderIntent],
    positions_after: &BTreeMap<Symbol, Decimal>,
    seen: &mut Exercised,
    problems: &mut Vec<String>,
) {
    // Every item once; result fills equal broker fills; no oversell; no item traded twice.
    if result.orders.len() != plan.items.len() {
        problems.push(format!("{} result rows for {} items", result.orders.len(), plan.items.len()));
    }
    for (index, (item, row)) in plan.items.iter().zip(&result.orders).enumerate() {
        let of_item: Vec<&tranche::domain::Fill> = fills.iter().filter(|f| f.symbol == item.symbol).collect();
        let traded: Decimal = of_item.iter().map(|f| f.qty.get()).sum();
        if traded != row.filled_qty.get() {
            problems.push(format!("{}: result says {} filled, broker {traded}", item.symbol, row.filled_qty));
        }
        if of_item.iter().any(|f| Some(f.side) != item.action.side()) {
            problems.push(format!("{}: traded on the wrong side", item.symbol));
        }
        problems.extend(tranche::simulation::row_figures_problems(row, &of_item));
        let target =
            intents.iter().filter(|i| i.item_index as usize == index).min_by_key(|i| i.attempt).map(|i| i.qty.get());
        if let Some(target) = target {
            if traded > target {
                problems.push(format!("{}: traded {traded}, more than the target {target}", item.symbol));
            }
            // Filled means nothing worth an order (the $1 minimum) is left.
            let price = row.avg_fill_price.map_or(Decimal::ONE, tranche::domain::Price::get);
            if row.outcome == ItemOutcome::Filled && (target - traded) * price >= Decimal::ONE {
                problems.push(format!("{}: reported filled with {traded} of {target}", item.symbol));
            }
        }
        // Against the undisturbed run: the same dollars (sizing prices differ in time), when
        // both runs completed every sell (else the buys had different buying power).
        let clean_row = &clean.orders[index];
        let sells_done = |r: &ExecutionResult| {
            r.orders.iter().all(|o| {
                o.action.side() != Some(Side::Sell)
                    || o.outcome == ItemOutcome::Filled
                    || o.outcome == ItemOutcome::Skipped
            })
        };
        if row.outcome == ItemOutcome::Filled
            && clean_row.outcome == ItemOutcome::Filled
            && sells_done(result)
            && sells_done(clean)
        {
            // Sized at a slightly different price, a run may trade a share (or a percent of the
            // shares) more or less, and a wide spread crossed or not moves the dollars: a lost or
            // doubled order moves both.
            let (dollars, clean_dollars) = (row.filled_notional.get(), clean_row.filled_notional.get());
            let clean_shares = clean_row.filled_qty.get();
            let shares_apart = (traded - clean_shares).abs();
            // A whole share for whole-share trades; a fractional one gets only the percent.
            let whole = clean_shares.fract().is_zero() && traded.fract().is_zero();
            let percent = clean_shares / Decimal::from(100);
            let share_slack = if whole { percent.max(Decimal::ONE) } else { percent };
            if (dollars - clean_dollars).abs() > clean_dollars * Decimal::new(5, 2) && shares_apart > share_slack {
                problems.push(format!(
                    "{}: traded ${dollars} ({traded} shares), the undisturbed run ${clean_dollars} ({} shares)",
                    item.symbol, clean_row.filled_qty
                ));
            }
            if (traded - clean_row.filled_qty.get()).abs() > Decimal::ONE {
                seen.beyond_one_share += 1;
            }
            seen.compared += 1;
        }
        if item.action.side() == Some(Side::Sell) {
            let after = positions_after.get(&item.symbol).copied().unwrap_or_default();
            if after < Decimal::ZERO {
                problems.push(format!("{}: oversold to {after}", item.symbol));
            }
        }
    }
}

/// The ledger store's faults in the full test bed: slow calls, 503s before a write is applied,
/// lost answers after it was, and conditional writes refused spuriously.
fn store_faults(seed: u64) -> FaultPlan {
    FaultPlan { spurious_precondition_ppm: 20_000, ..FaultPlan::moderate(seed) }
}

/// Every problem counts.
fn none_known(_: &str) -> bool {
    false
}

/// Runs the suite over `SEEDS` seeds with `faults`, leaving out problems that `known` accepts;
/// the failures and what was exercised.
fn suite(mode: &Mode, known: fn(&str) -> bool) -> (Vec<String>, Exercised) {
    let mut failures = Vec::new();
    let mut seen = Exercised::default();
    for seed in 0..SEEDS {
        if std::env::var("CHAOS_SEED").is_ok_and(|s| s != seed.to_string()) {
            continue;
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let mut problems = runtime.block_on(check(seed, mode, &mut seen));
        problems.retain(|p| !known(p));
        // The first line is the seed's header; a failure has at least one problem under it.
        if problems.len() > 1 {
            failures.push(problems.join("\n    "));
        }
    }
    let fired: Vec<String> = seen.fired.iter().map(|(name, n)| format!("{name} {n}")).collect();
    println!("faults fired over {SEEDS} seeds: {}", fired.join(", "));
    let referee: Vec<String> = seen.referee.iter().map(|(name, n)| format!("{name} {n}")).collect();
    println!("referee: {}", referee.join(", "));
    let store: Vec<String> = seen.store_fired.iter().map(|(name, n)| format!("{name} {n}")).collect();
    println!("ledger store faults fired: {}", store.join(", "));
    println!(
        "two workers: {} seeds ({} with the first frozen past its lease): {} turned one away, {} both answered with a result",
        seen.two_workers, seen.paused, seen.turned_away, seen.both_ran
    );
    (failures, seen)
}

/// No seed failed (the first few failures are shown).
fn assert_no_failures(failures: &[String]) {
    // `CHAOS_SHOW=N` shows the first N failures instead of 6.
    let show = std::env::var("CHAOS_SHOW").ok().and_then(|n| n.parse().ok()).unwrap_or(6);
    let shown = failures.iter().take(show).cloned().collect::<Vec<_>>().join("\n");
    assert!(failures.is_empty(), "{} of {SEEDS} seeds broke exactly-once:\n{shown}", failures.len());
}

/// Every fault that `faults` turns on fired at least 50 times (the owner's sale, rarer by design, 10).
fn assert_every_fault_fired(faults: &FaultConfig, seen: &Exercised) {
    let expected = [
        ("update_dropped", faults.drop_update_ppm),
        ("update_duplicated", faults.duplicate_update_ppm),
        ("update_delayed", faults.delay_update_ppm),
        ("stream_disconnect", faults.disconnect_ppm),
        ("submit_timeout_after", faults.submit_timeout_after_ppm),
        ("submit_timeout_before", faults.submit_timeout_before_ppm),
        ("server_error", faults.server_error_ppm),
        ("rate_limited", faults.rate_limit_ppm),
        ("late_order", faults.late_order_ppm),
        ("late_replace", faults.late_replace_ppm),
        ("slow_routing", faults.slow_routing_ppm),
        ("activity_id_unrelated", u32::from(faults.activity_ids_unrelated)),
        ("stuck_cancel", faults.stuck_cancel_ppm),
        ("activity_lagged", u32::try_from(faults.activity_lag_ms).unwrap_or(u32::MAX)),
        ("venue_reject", faults.venue_reject_ppm),
        ("broker_cancel", faults.broker_cancel_ppm),
        ("quote_gap", faults.quote_gap_ppm),
        // Not `refused_replace_applied`: it follows a replace refused as not yet routed, and the
        // engine sends no replace before its order works (0 of 1,000 heavy-fault scenarios);
        // the simulator's own case and the core's cases hold it.
    ];
    for (name, on) in expected {
        if on > 0 {
            assert!(seen.fired.get(name) >= 50, "{name} fired only {} times", seen.fired.get(name));
        }
    }
    // The owner's sale meets only sells working at the venue, 3 % of them: about 20 times a
    // suite (the test bed's own scenario meets it on every sell).
    if faults.owner_sale_ppm > 0 {
        assert!(seen.fired.get("owner_sale") >= 10, "owner_sale fired only {} times", seen.fired.get("owner_sale"));
    }
}

#[test]
fn exactly_once_under_every_fault_and_a_crash_restart() {
    let faults = FaultConfig::heavy();
    let (failures, seen) = suite(&Mode { faults: faults.clone(), freeze: false, store: None }, none_known);
    assert_no_failures(&failures);
    println!(
        "crashed with orders out: {}, resumed: {}, updates lost to faults: {}, fills: {}, items compared with an undisturbed run: {} ({} differ by more than one share)",
        seen.crashed_with_orders, seen.resumed, seen.lost_updates, seen.fills, seen.compared, seen.beyond_one_share
    );
    println!("items completed despite the chaos: {} of {}", seen.completed, seen.attempted);
    assert!(seen.completed * 100 >= seen.attempted * 95, "{} of {} items completed", seen.completed, seen.attempted);
    // The chaos really happened.
    let seeds = u32::try_from(SEEDS).unwrap();
    assert!(seen.crashed_with_orders * 4 >= seeds, "{} crashes with orders out", seen.crashed_with_orders);
    assert!(seen.resumed * 4 >= seeds, "{} resumed runs", seen.resumed);
    assert!(seen.lost_updates >= u64::from(seeds), "{} lost updates", seen.lost_updates);
    assert!(seen.redelivered * 2 >= seeds, "{} completed plans redelivered", seen.redelivered);
    assert!(seen.two_workers * 10 >= seeds && seen.turned_away * 20 >= seeds, "{} two-worker seeds", seen.two_workers);
    assert_every_fault_fired(&faults, &seen);
}

/// The faults of the whole test bed fire in the chaos suite, however the engine fares (its
/// correctness under them is the ignored test below).
#[test]
fn every_fault_of_the_test_bed_fires_in_the_chaos_suite() {
    let faults = FaultConfig::heavy();
    let (_, seen) = suite(&Mode { faults: faults.clone(), freeze: true, store: Some(store_faults) }, none_known);
    assert_every_fault_fired(&faults, &seen);
    for kind in ["slow", "fail_before", "fail_after", "spurious_precondition"] {
        assert!(
            seen.store_fired.get(kind) >= 50,
            "ledger store fault {kind} fired only {} times",
            seen.store_fired.get(kind)
        );
    }
    assert!(seen.paused >= 50, "{} workers frozen past their lease", seen.paused);
    let waited = seen.client.waited.load(std::sync::atomic::Ordering::Relaxed);
    let held = seen.client.held_by_freeze.load(std::sync::atomic::Ordering::Relaxed);
    println!("client waits: {waited} orders waited in a client, {held} held back by a frozen worker");
    assert!(waited >= 50 && held >= 50, "{waited} client waits, {held} held by a freeze");
}

/// Engine core v1 recorded an order in the ledger when it learnt of a change, so a record stopped
/// at the last status the engine saw: after a crash, or when the final update was lost, the
/// ledger said `pending_cancel`, `accepted` or `partially_filled` where the broker said
/// `canceled` or `filled` (about half of the seeds), and a few orders had no record at all.
/// Engine core v2 records every report it merges (lookups included, stale reports never moving
/// a record back), writes one record per order at a time, and reads the final state of every
/// order not known to be final before the result. This failed on v1 and passes now; the main
/// suite above holds it too.
#[test]
fn the_ledger_holds_every_orders_final_state() {
    let (failures, _) = suite(&Mode { faults: FaultConfig::heavy(), freeze: false, store: None }, none_known);
    assert_no_failures(&failures);
}

/// The engine under the whole test bed (late orders and replaces, slow routing, unrelated
/// activity ids, ledger store faults, a worker frozen past its lease). Engine core v1 booked
/// every fill read back from the activities a second time under its activity id and sent a late
/// order again under a new client order id; engine core v2 closed both (fills are bounded by
/// the broker's cumulative filled quantity per order; an uncertain submit keeps its id); the
/// fenced lease closed the ledger store's faults and the frozen worker. The last were two engine
/// holes: a replace decided on a fill state that a fill changed while the replace's intent and
/// claim were written (or whose update was lost), so the replacement asked for the whole
/// remaining quantity again (seeds 509 and 950, counted by the referee as oversells; closed by
/// the core's last look with the order read back); and an execution booked from an activity read
/// booked again when its delayed update arrived (seeds 470 and 812).
#[test]
fn exactly_once_under_every_fault_of_the_test_bed() {
    let (failures, _) =
        suite(&Mode { faults: FaultConfig::heavy(), freeze: true, store: Some(store_faults) }, none_known);
    assert_no_failures(&failures);
}

/// Engine core v1 and the S3 ledger without fencing (the fenced-lease issue, item 2): the first
/// worker freezes past its lease, the second takes the plan over and trades it, and the first,
/// once it runs again, still acts on the broker: it re-sends client order ids the second already
/// used, tries to sell shares the second sold, fails its items on "lost its claim" ledger writes
/// and answers a result that disagrees with the broker (seeds 99, 124, 154, 184, 209, 214, ...).
/// With the fence, the first worker learns at its first write or order after it resumes that its
/// claim is lost (its proof lapsed while it was frozen, and the renewal finds the lock taken) and
/// stops there, with `ClaimLost`; an earlier fenced version that let it record fills it read
/// back from the activities without a proof put them in the ledger twice (seeds 34, 59, 79).
#[test]
fn a_worker_frozen_past_its_lease_acts_no_more_once_it_resumes() {
    let (failures, seen) = suite(&Mode { faults: FaultConfig::heavy(), freeze: true, store: None }, none_known);
    assert!(seen.paused * 20 >= u32::try_from(SEEDS).unwrap(), "{} frozen workers", seen.paused);
    assert_no_failures(&failures);
}

/// The engine over a ledger store that fails at times (slow calls, 503s before a write is
/// applied, lost answers after it was, spurious precondition failures). Engine core v1 failed an
/// item for good on one failed intent write and left a plan whose result could not be recorded
/// open for a redelivery that traded again (about 300 of 1,000 seeds). Engine core v2 retries
/// every (idempotent) ledger write and the result, records each item it finishes on purpose (a
/// resumed run never trades it again), and completes the plan even when a detail record was
/// refused (the result says so). The fenced lease closed the object ledger's own: a spurious
/// `AlreadyExists` taken for a written intent, a `begin` or `finish` left half done, a lost
/// `begin` answer that locked the worker out (about 250 seeds, then 57, then 1 as they were
/// fixed), and then the engine's replace race of the test above (seed 509).
#[test]
fn a_ledger_store_that_fails_at_times_loses_no_item_and_reopens_nothing() {
    let mode = Mode { faults: FaultConfig::heavy(), freeze: false, store: Some(store_faults) };
    let (failures, _) = suite(&mode, none_known);
    assert_no_failures(&failures);
}
