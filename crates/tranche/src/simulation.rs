//! Running plans on the embedded simulator: the account picture a plan implies, one run in
//! virtual time, and many seeded scenarios with execution-quality statistics (what
//! `tranche sim run` and the benchmarks report).
//!
//! Invariants: a run uses only the simulator's seeded randomness and virtual time, so the same
//! plan, configs and seed give the same result; every scenario is checked against the engine's
//! invariants and violations are counted, never hidden.

use std::collections::BTreeMap;
use std::sync::Arc;

use rust_decimal::Decimal;
use tranche_broker::{Clock, TokioClock};
use tranche_domain::{ExecutionResult, Fill, Order, Qty, RebalancePlan, Side, Symbol, Usd};
use tranche_engine::{execute, EngineConfig, Ports, ProgressEvent};
use tranche_sim::{MarketModel, SimConfig, SimulatedBroker, StartPosition};

/// What the simulator recorded during a run, for checking the result against the broker.
#[derive(Debug, Clone)]
pub struct SimRecord {
    /// Every order the simulated broker accepted.
    pub orders: Vec<Order>,
    /// Every fill.
    pub fills: Vec<Fill>,
    /// Positions before the run.
    pub positions_before: BTreeMap<Symbol, Decimal>,
    /// Positions after the run.
    pub positions_after: BTreeMap<Symbol, Decimal>,
    /// Cash after the run.
    pub cash_after: Decimal,
    /// Virtual seconds from start to result.
    pub elapsed_secs: f64,
    /// REST requests the run made.
    pub requests: u64,
    /// Those requests by kind.
    pub request_kinds: tranche_sim::Tally,
    /// What the simulator's referee saw during the run (every broken promise, at the attempt).
    pub referee: Vec<String>,
    /// The referee's counts by kind (every kind listed).
    pub referee_counts: tranche_sim::Tally,
    /// How often each injected fault fired during the run.
    pub faults_fired: tranche_sim::Tally,
    /// Order status edges the domain's table refused in the simulator (always 0 when correct).
    pub refused_transitions: u64,
}

/// The simulator account that a plan describes: positions worth each item's `current_value` at the
/// simulator's starting prices, and cash for the rest of `total_portfolio_value`.
pub fn account_from_plan(plan: &RebalancePlan, base: &SimConfig) -> SimConfig {
    let mut config = base.clone();
    let mut invested = Decimal::ZERO;
    config.account.positions.clear();
    for item in &plan.items {
        let value = item.current_value.get();
        if value <= Decimal::ZERO {
            continue;
        }
        let profile = tranche_sim::AssetProfile::derive(&config, &item.symbol);
        let price = Decimal::new(profile.start_micros, 6);
        if price <= Decimal::ZERO {
            continue;
        }
        let raw = value / price;
        let qty = if profile.fractionable { raw.trunc_with_scale(6) } else { raw.trunc() };
        if qty > Decimal::ZERO {
            invested += qty * price;
            config.account.positions.push(StartPosition {
                symbol: item.symbol.clone(),
                qty: Qty::new(qty),
                avg_entry_price: None,
            });
        }
    }
    config.account.starting_cash = Usd::new((plan.total_portfolio_value.get() - invested).max(Decimal::ZERO));
    config
}

/// Starts a simulator for `sim` on a virtual-time clock at the session start.
pub fn start_sim(sim: SimConfig) -> Result<(SimulatedBroker, Arc<dyn Clock>), String> {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(sim.session.start));
    let broker = SimulatedBroker::start(sim, Arc::clone(&clock))?;
    Ok((broker, clock))
}

/// Runs `plan` on a fresh simulator in virtual time. Must be called inside a tokio runtime whose
/// time is paused (`tokio::time::pause()` / `start_paused`), or it runs in real time.
pub async fn run_on_sim(
    plan: RebalancePlan,
    engine: EngineConfig,
    sim: SimConfig,
    progress: Option<tokio::sync::mpsc::UnboundedSender<ProgressEvent>>,
) -> Result<(ExecutionResult, SimRecord), String> {
    let (broker, clock) = start_sim(sim)?;
    Ok(run_on_broker(plan, engine, &broker, &clock, progress).await)
}

/// Runs `plan` on an existing simulator (prepared by the caller) and records what it did.
pub async fn run_on_broker(
    plan: RebalancePlan,
    engine: EngineConfig,
    broker: &SimulatedBroker,
    clock: &Arc<dyn Clock>,
    progress: Option<tokio::sync::mpsc::UnboundedSender<ProgressEvent>>,
) -> (ExecutionResult, SimRecord) {
    let positions_before = broker.with_sim(|s| s.positions().into_iter().map(|p| (p.symbol, p.qty.get())).collect());
    broker.with_sim(|s| s.referee_mut().watch(&plan));
    let (violations_before, fired_before) = broker.with_sim(|s| (s.referee().violations().len(), s.faults_fired()));
    let orders_before = broker.with_sim(|s| s.orders().count());
    let fills_before = broker.with_sim(|s| s.fills().len());
    let (requests_before, kinds_before) = broker.with_sim(|s| (s.requests(), s.request_kinds().clone()));
    let start = clock.now();
    let ports = Ports {
        broker: Arc::new(broker.broker()),
        events: Box::new(broker.order_events()),
        quotes: Arc::new(broker.quote_feed()),
        clock: Arc::clone(clock),
    };
    let result = execute(plan, engine, ports, progress).await;
    settle(broker, clock).await;
    let record = broker.with_sim(|s| SimRecord {
        orders: s.orders().skip(orders_before).cloned().collect(),
        fills: s.fills()[fills_before..].to_vec(),
        positions_before,
        positions_after: s.positions().into_iter().map(|p| (p.symbol, p.qty.get())).collect(),
        cash_after: s.account().cash.get(),
        elapsed_secs: (result.execution_timestamp - start).num_milliseconds() as f64 / 1000.0,
        requests: s.requests() - requests_before,
        request_kinds: s.request_kinds().since(&kinds_before),
        referee: s.referee().violations()[violations_before..].iter().map(ToString::to_string).collect(),
        referee_counts: tranche_sim::count_violations(&s.referee().violations()[violations_before..]),
        faults_fired: s.faults_fired().since(&fired_before),
        refused_transitions: s.refused_transitions(),
    });
    (result, record)
}

/// Waits (in the simulator's time) until cancels and late updates have landed and every request
/// answered with a timeout has reached the broker's books (a late order may be created up to
/// `late_order_max_ms` after its answer): the broker's final state is read after that, so an
/// order the broker creates after the run is seen (working, it breaks "every order final").
pub async fn settle(broker: &SimulatedBroker, clock: &Arc<dyn Clock>) {
    let mut until = clock.now() + chrono::Duration::seconds(2);
    if let Some(due) = broker.with_sim(|s| s.late_requests_due_until()) {
        until = until.max(due + chrono::Duration::seconds(1));
    }
    clock.sleep_until(until).await;
}

/// An invariant a run broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

/// Checks a run against the engine's invariants: whatever the broker's referee saw at the
/// attempt (see `tranche_sim::Referee`), no client order id twice, no position below zero,
/// every order final and none of ours open, every item exactly once, result fills equal the
/// broker's fills of the plan's orders (the account owner's own orders trade beside them), in
/// shares and in dollars, average price and slippage (see [`row_figures_problems`]).
pub fn check_run(plan: &RebalancePlan, result: &ExecutionResult, record: &SimRecord) -> Vec<Violation> {
    let mut v: Vec<Violation> = record.referee.iter().map(|seen| Violation(format!("referee: {seen}"))).collect();
    if record.refused_transitions > 0 {
        v.push(Violation(format!("{} order status changes refused by the status table", record.refused_transitions)));
    }
    let mut ids = std::collections::BTreeSet::new();
    for o in &record.orders {
        if !ids.insert(o.client_order_id.clone()) {
            v.push(Violation(format!("client order id {} used twice", o.client_order_id)));
        }
        if !o.status.is_terminal() {
            v.push(Violation(format!("order {} ({}) still {}", o.client_order_id, o.symbol, o.status)));
        }
    }
    for (symbol, qty) in &record.positions_after {
        if *qty < Decimal::ZERO {
            v.push(Violation(format!("short position in {symbol}: {qty}")));
        }
    }
    if result.orders.len() != plan.items.len() {
        v.push(Violation(format!("{} items in the result for {} in the plan", result.orders.len(), plan.items.len())));
    }
    let ours: Vec<&Fill> = record.fills.iter().filter(|f| f.client_order_id.belongs_to_plan(&plan.plan_id)).collect();
    for (item, row) in plan.items.iter().zip(&result.orders) {
        if item.symbol != row.symbol {
            v.push(Violation(format!("result row {} is for {} not {}", row.symbol, row.symbol, item.symbol)));
        }
        let fills: Vec<&Fill> = ours.iter().copied().filter(|f| f.symbol == item.symbol).collect();
        let broker_filled: Decimal = fills.iter().map(|f| f.qty.get()).sum();
        if broker_filled != row.filled_qty.get() {
            v.push(Violation(format!(
                "{}: result filled {} but the broker filled {}",
                item.symbol, row.filled_qty, broker_filled
            )));
        }
        if !fills.iter().all(|f| Some(f.side) == item.action.side()) {
            v.push(Violation(format!("{}: a fill on the wrong side", item.symbol)));
        }
        v.extend(row_figures_problems(row, &fills).into_iter().map(Violation));
    }
    v
}

/// What a result row says of the dollars, the average price and the slippage of its fills
/// that the broker's `fills` of it do not bear out: the dollars traded (to the cent) and the
/// average price (to six places) are the broker's executions', and the slippage is that average
/// against the row's own arrival mid, signed for its side. An engine that books an execution at
/// another price than the broker's, or counts one twice and drops another of the same size,
/// is caught here though its share count is right.
pub fn row_figures_problems(row: &tranche_domain::ItemResult, fills: &[&Fill]) -> Vec<String> {
    let mut problems = Vec::new();
    let qty: Decimal = fills.iter().map(|f| f.qty.get()).sum();
    let notional: Decimal = fills.iter().map(|f| f.qty.get() * f.price.get()).sum();
    if row.filled_notional.get() != notional.round_dp(2) {
        problems.push(format!(
            "{}: result traded ${} but the broker's fills come to ${}",
            row.symbol,
            row.filled_notional,
            notional.round_dp(2)
        ));
    }
    let average = notional.checked_div(qty).map(|p| p.round_dp(6).normalize());
    if row.avg_fill_price.map(tranche_domain::Price::get) != average {
        problems.push(format!(
            "{}: result's average price {:?} but the broker's fills average {average:?}",
            row.symbol, row.avg_fill_price
        ));
    }
    let side = fills.first().map(|f| f.side);
    let slippage = match (side, row.arrival_mid, average) {
        (Some(side), Some(mid), Some(average)) => {
            tranche_domain::Bps::slippage(side, mid, tranche_domain::Price::new(average))
                .map(tranche_domain::Bps::rounded)
        }
        _ => None,
    };
    if average.is_some() && row.slippage_bps != slippage {
        problems.push(format!(
            "{}: result's slippage {:?} but the broker's fills against its arrival mid give {slippage:?}",
            row.symbol, row.slippage_bps
        ));
    }
    problems
}

/// Net shares traded per symbol (buys positive).
pub fn net_traded(fills: &[Fill]) -> BTreeMap<Symbol, Decimal> {
    let mut out = BTreeMap::new();
    for f in fills {
        let signed = if f.side == Side::Buy { f.qty.get() } else { -f.qty.get() };
        *out.entry(f.symbol.clone()).or_insert(Decimal::ZERO) += signed;
    }
    out
}

/// Symbols scenarios draw from: large caps, ETFs, non-fractionable and sub-dollar names, and
/// synthetic symbols with derived profiles.
pub const POOL: &[&str] = &[
    "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "BRK.B", "JPM", "SPY", "QQQ", "IWM", "TLT", "GLD", "EDZ", "SQQQ",
    "SOXL", "F", "PLUG", "NIO", "SIRI", "XA", "XB", "XC", "XD", "XE", "XF",
];

/// A seeded random rebalance: a plan of 1 to `max_items` items (buys, sells, liquidations and
/// holds) and the simulator it runs on, with the account the plan describes.
pub fn scenario(seed: u64, max_items: usize, base: &SimConfig) -> (RebalancePlan, SimConfig) {
    let mut rng = tranche_sim::Rng::derive(seed, "scenario");
    let count = 1 + usize::try_from(rng.below(max_items.max(1) as u64)).unwrap_or(0);
    let mut symbols: Vec<&str> = Vec::new();
    while symbols.len() < count.min(POOL.len()) {
        let s = POOL[usize::try_from(rng.below(POOL.len() as u64)).unwrap_or(0)];
        if !symbols.contains(&s) {
            symbols.push(s);
        }
    }
    let cash = Decimal::from(rng.range_i64(0, 40_000));
    let mut items = Vec::new();
    let mut total = cash;
    for s in &symbols {
        let current = Decimal::from(rng.range_i64(0, 20_000));
        total += current;
        let (action, amount, target_weight) = match (rng.below(10), current.is_zero()) {
            (0, _) => ("HOLD", Decimal::ZERO, "0.1"),
            (1..=2, false) => ("SELL", -current, "0"),
            (3..=5, false) => {
                ("SELL", -(current * Decimal::from(rng.range_i64(5, 95)) / Decimal::from(100)).round_dp(2), "0.05")
            }
            _ => ("BUY", Decimal::from(rng.range_i64(2, 15_000)), "0.1"),
        };
        items.push(serde_json::json!({
            "symbol": s, "current_weight": "0.1", "target_weight": target_weight, "target_value": "0",
            "current_value": current.to_string(), "trade_amount": amount.to_string(), "action": action,
        }));
    }
    let plan = serde_json::json!({
        "correlation_id": format!("corr-{seed}"), "causation_id": "scenario", "timestamp": "2026-03-02T14:40:00Z",
        "plan_id": format!("scenario-{seed}"), "total_portfolio_value": total.to_string(), "items": items,
    });
    let plan = RebalancePlan::from_value(&plan).unwrap_or_else(|issues| unreachable_plan(&issues));
    let mut sim = base.clone();
    sim.seed = seed;
    let sim = account_from_plan(&plan, &sim);
    (plan, sim)
}

/// Generated plans are valid by construction; a failure here is a bug in the generator.
fn unreachable_plan(issues: &tranche_domain::PlanIssues) -> RebalancePlan {
    panic!("scenario generator produced an invalid plan: {issues}")
}

/// How much fault injection a scenario batch uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Faults {
    /// None.
    None,
    /// Occasional.
    Light,
    /// Frequent, of every kind.
    Heavy,
}

impl Faults {
    fn config(self) -> tranche_sim::FaultConfig {
        match self {
            Faults::None => tranche_sim::FaultConfig::none(),
            Faults::Light => tranche_sim::FaultConfig::light(),
            Faults::Heavy => tranche_sim::FaultConfig::heavy(),
        }
    }
}

/// Mean and 95th percentile.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Spread {
    /// Arithmetic mean.
    pub mean: f64,
    /// 95th percentile (nearest rank).
    pub p95: f64,
}

/// One filled item of a scenario batch: where it was and what it cost. The same seed and index
/// name the same item under every strategy, so batches pair item by item.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ItemSample {
    /// The scenario's seed.
    pub seed: u64,
    /// The item's position in its plan.
    pub index: usize,
    /// Its symbol.
    pub symbol: Symbol,
    /// Its liquidity class in the simulated market.
    pub class: tranche_sim::NameClass,
    /// Slippage against the item's arrival mid, in bps (positive is worse).
    pub slippage_bps: f64,
}

/// One scenario of a batch: how long it took and what it asked of the broker.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RunSample {
    /// The scenario's seed.
    pub seed: u64,
    /// Virtual seconds from start to result.
    pub secs: f64,
    /// REST requests.
    pub requests: u64,
    /// Orders placed (a replacement counts: the broker makes a new order of it).
    pub orders: u64,
}

/// Execution quality over many seeded scenarios (`tranche sim run --json` prints this).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScenarioReport {
    /// The strategy.
    pub strategy: tranche_engine::Strategy,
    /// The simulated market's model.
    pub market: MarketModel,
    /// Scenarios run.
    pub scenarios: u64,
    /// Fault level.
    pub faults: Faults,
    /// Slippage of each filled item against its arrival mid, in bps (positive is worse).
    pub slippage_bps: Spread,
    /// Items completed / items that needed trading.
    pub completion_rate: f64,
    /// Mean virtual seconds per run.
    pub mean_completion_secs: f64,
    /// REST requests per order placed.
    pub requests_per_order: f64,
    /// REST requests by kind, over every scenario.
    pub requests_by_kind: tranche_sim::Tally,
    /// Invariant violations (must be 0), the referee's included.
    pub invariant_violations: u64,
    /// The first violations found (at most ten), each with its seed.
    pub violation_examples: Vec<String>,
    /// How often each kind of injected fault fired, by name.
    pub faults_fired: tranche_sim::Tally,
    /// What the broker's referee saw, by kind (all zero on a good run).
    pub referee: tranche_sim::Tally,
    /// Every filled item's slippage, by seed and index (for paired comparisons).
    pub items: Vec<ItemSample>,
    /// Every scenario's time and requests, by seed.
    pub runs: Vec<RunSample>,
}

/// The `percent`th percentile of sorted values (nearest rank).
fn percentile(sorted: &[f64], percent: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (sorted.len() * percent).div_ceil(100).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Runs `count` seeded scenarios (seeds `first_seed..first_seed + count`) with `engine` on
/// `market` with `faults`, in virtual time. Call it outside an async context: it drives its own
/// paused-time runtime.
pub fn run_scenarios(
    first_seed: u64,
    count: u64,
    engine: &EngineConfig,
    market: &tranche_sim::MarketConfig,
    faults: Faults,
) -> Result<ScenarioReport, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| format!("cannot start the simulation runtime: {e}"))?;
    let mut base = SimConfig { faults: faults.config(), ..SimConfig::default() };
    base.market = market.clone();
    let market = market.model;
    let (mut items, mut runs) = (Vec::new(), Vec::new());
    let mut slippage = Vec::new();
    let (mut attempted, mut completed, mut orders, mut requests, mut violations) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut secs = 0.0;
    let (mut fired, mut referee) = (tranche_sim::Tally::default(), tranche_sim::count_violations(&[]));
    let mut kinds = tranche_sim::Tally::default();
    let mut examples = Vec::new();
    for seed in first_seed..first_seed.saturating_add(count) {
        let (plan, sim) = scenario(seed, 8, &base);
        let classes: Vec<tranche_sim::NameClass> =
            plan.items.iter().map(|item| tranche_sim::AssetProfile::derive(&sim, &item.symbol).class).collect();
        let (result, record) = runtime.block_on(run_on_sim(plan.clone(), engine.clone(), sim, None))?;
        let found = check_run(&plan, &result, &record);
        violations += found.len() as u64;
        for v in found {
            if examples.len() < 10 {
                examples.push(format!("seed {seed}: {}", v.0));
            }
        }
        fired.add(&record.faults_fired);
        referee.add(&record.referee_counts);
        attempted += u64::from(result.orders_placed);
        completed += result.orders.iter().filter(|r| r.reached_target()).count() as u64;
        orders += record.orders.len() as u64;
        requests += record.requests;
        kinds.add(&record.request_kinds);
        secs += record.elapsed_secs;
        runs.push(RunSample {
            seed,
            secs: record.elapsed_secs,
            requests: record.requests,
            orders: record.orders.len() as u64,
        });
        for (index, row) in result.orders.iter().enumerate() {
            if let Some(bps) = row.slippage_bps {
                let bps = bps.get().to_string().parse::<f64>().unwrap_or(0.0);
                slippage.push(bps);
                let class = classes.get(index).copied().unwrap_or(tranche_sim::NameClass::Mid);
                items.push(ItemSample { seed, index, symbol: row.symbol.clone(), class, slippage_bps: bps });
            }
        }
    }
    slippage.sort_by(f64::total_cmp);
    let mean = if slippage.is_empty() { 0.0 } else { slippage.iter().sum::<f64>() / slippage.len() as f64 };
    Ok(ScenarioReport {
        strategy: engine.strategy,
        market,
        scenarios: count,
        faults,
        slippage_bps: Spread { mean, p95: percentile(&slippage, 95) },
        completion_rate: if attempted == 0 { 1.0 } else { completed as f64 / attempted as f64 },
        mean_completion_secs: if count == 0 { 0.0 } else { secs / count as f64 },
        requests_per_order: if orders == 0 { 0.0 } else { requests as f64 / orders as f64 },
        requests_by_kind: kinds,
        invariant_violations: violations,
        violation_examples: examples,
        faults_fired: fired,
        referee,
        items,
        runs,
    })
}
