//! The rate-limit bound: the 30-symbol example plan executed through the Alpaca adapter, the
//! market-data stream and the emulator over loopback, with a 20 ms round trip on every REST call
//! and Alpaca's budget of 200 requests per minute enforced by the emulator (429 past it). A plain
//! `main` in real time (the emulator is a real server), not criterion.
//!
//! Per strategy it reports the wall time from start to the result, the REST requests the
//! emulator received (and refused), and the lower bound the rate limit and the round trip set
//! for the requests the run made: requests past one minute's budget wait `60 s / 200` each, and
//! the critical path holds four round trips (read the account and positions, submit the sells,
//! re-read the buying power, submit the buys) and two trade-update deliveries (the sells' fills,
//! the buys' fills). At the floor of one request per order, 30 orders fit in one minute's budget,
//! so the bound is 4 × 20 ms + 2 × 15 ms = 0.11 s: for a 30-symbol plan the round trip, not the
//! budget, is the limit, as long as the client spends its budget at once instead of pacing it.
//!
//! `market` shows the bound with fills that need no waiting; `smart` (the default strategy, with
//! its default 10 s re-peg interval) adds the passive waiting that buys better prices. Results
//! are printed and written to `target/bench-results/rate_limit.json` for `cargo xtask bench`.
//! `--quick` runs `market` only.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tranche::alpaca::{AlpacaBroker, AlpacaConfig, AlpacaOrderEvents, Secret};
use tranche::broker::{QuoteFeed, SystemClock};
use tranche::domain::{ItemOutcome, RebalancePlan};
use tranche::emulator::{Emulator, EmulatorConfig, DEFAULT_KEY_ID, DEFAULT_SECRET_KEY};
use tranche::engine::{execute, EngineConfig, Ports, Strategy};
use tranche::pricing::{AlpacaQuoteFeed, StreamConfig};
use tranche::sim::SimConfig;
use tranche::simulation::account_from_plan;

mod support;

/// Alpaca's budget.
const PER_MINUTE: u32 = 200;
/// The round trip of every REST call.
const ROUND_TRIP: Duration = Duration::from_millis(20);
/// The emulator's delay from a fill to its trade update (the simulator's default).
const UPDATE_LATENCY: Duration = Duration::from_millis(15);
/// The floor: one request per order, one order per symbol.
const FLOOR_REQUESTS: u64 = 30;

/// The fastest a run of `requests` can complete: the requests past one minute's budget each
/// wait for the window to slide, plus four round trips and two trade updates on the critical
/// path.
fn bound_secs(requests: u64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let over_budget = requests.saturating_sub(u64::from(PER_MINUTE)) as f64 * 60.0 / f64::from(PER_MINUTE);
    over_budget + 4.0 * ROUND_TRIP.as_secs_f64() + 2.0 * UPDATE_LATENCY.as_secs_f64()
}

async fn run(plan: &RebalancePlan, strategy: Strategy) -> serde_json::Value {
    let mut sim = account_from_plan(plan, &SimConfig::default());
    sim.latency.update_ms = u64::try_from(UPDATE_LATENCY.as_millis()).unwrap_or(u64::MAX);
    let config = EmulatorConfig { sim, requests_per_minute: PER_MINUTE, round_trip: ROUND_TRIP, ..Default::default() };
    let emu = Emulator::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap();
    // The adapter as users run it: its own limit (190 in any minute) included.
    let mut alpaca = AlpacaConfig::new(DEFAULT_KEY_ID, Secret::new(DEFAULT_SECRET_KEY));
    alpaca.trading_url = emu.url();
    alpaca.data_url = emu.url();
    let stream = format!("ws://{}/v2/iex", emu.addr);
    let quotes: Arc<dyn QuoteFeed> =
        Arc::new(AlpacaQuoteFeed::connect(StreamConfig::new(stream, DEFAULT_KEY_ID, DEFAULT_SECRET_KEY)));
    let ports = Ports {
        broker: Arc::new(AlpacaBroker::new(alpaca.clone()).unwrap()),
        events: Box::new(AlpacaOrderEvents::connect(alpaca)),
        quotes,
        clock: Arc::new(SystemClock),
    };
    let engine = EngineConfig { strategy, ..EngineConfig::default() };
    let before = emu.requests_served();
    let started = Instant::now();
    let result = execute(plan.clone(), engine, ports, None).await;
    let secs = started.elapsed().as_secs_f64();
    let requests = emu.requests_served() - before;
    let filled = result.orders.iter().filter(|r| r.outcome == ItemOutcome::Filled).count();
    let orders = emu.with_sim(|s| s.orders().count());
    serde_json::json!({
        "strategy": format!("{strategy:?}").to_lowercase(),
        "completion_secs": secs,
        "items": plan.items.len(),
        "trades": plan.items.iter().filter(|i| i.action.side().is_some()).count(),
        "filled_items": filled,
        "orders": orders,
        "requests": requests,
        "refused": emu.requests_refused(),
        "floor_bound_secs": bound_secs(FLOOR_REQUESTS),
        "requests_bound_secs": bound_secs(requests),
    })
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/plan-30.json");
    let plan = RebalancePlan::from_json_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let strategies: &[Strategy] = if quick { &[Strategy::Market] } else { &[Strategy::Market, Strategy::Smart] };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut runs = Vec::new();
    for &strategy in strategies {
        let run = runtime.block_on(run(&plan, strategy));
        println!(
            "rate-limit bound  {:<8} {:>7.2} s for {} trades ({} filled), {} requests ({} refused); bound {:.2} s at the floor of one request per order, {:.2} s for the requests made",
            run["strategy"].as_str().unwrap_or_default(),
            run["completion_secs"].as_f64().unwrap_or_default(),
            run["trades"],
            run["filled_items"],
            run["requests"],
            run["refused"],
            run["floor_bound_secs"].as_f64().unwrap_or_default(),
            run["requests_bound_secs"].as_f64().unwrap_or_default(),
        );
        runs.push(run);
    }
    let report = serde_json::json!({
        "per_minute": PER_MINUTE,
        "round_trip_ms": ROUND_TRIP.as_millis(),
        "update_latency_ms": UPDATE_LATENCY.as_millis(),
        "floor_requests": FLOOR_REQUESTS,
        "runs": runs,
    });
    support::write_results("rate_limit", &report);
}
