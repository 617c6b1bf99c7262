//! The rate-limit bound: example plans executed through the Alpaca adapter, the market-data
//! stream and the emulator over loopback, with a 20 ms round trip on every REST call and
//! Alpaca's budget of 200 requests per minute enforced by the emulator (429 past it), on the
//! simulator's realistic market. A plain `main` in real time (the emulator is a real server),
//! not criterion.
//!
//! Per plan and strategy it reports the wall time from start to the result, the REST requests
//! the emulator received (and refused), the items filled, the mean slippage, and the lower bound
//! the budget and the round trip set for the least requests the plan needs (the run's fixed
//! reads and one order per trade): requests past the bucket's 200 wait `60 s / 200` each, and
//! the critical path holds four round trips (read the account and positions, submit the sells,
//! re-read the buying power, submit the buys) and two trade-update deliveries.
//!
//! The 30-symbol example fits one minute's budget: the round trip is its bound, and `smart`
//! adds the passive waiting that buys better prices. The 500-symbol example (a direct-indexing
//! rebalance, `examples/plan-500.json`) needs more than two minutes of budget for its first
//! orders alone: the budget is its bound. Its quotes stream without the free feed's 30-symbol
//! limit (a paid feed). Results are printed and written to
//! `target/bench-results/rate_limit.json` for `cargo xtask bench`. `--quick` runs the 30-symbol
//! plan with `market` only.

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
/// The fixed reads of a run: account, clock, positions, open orders, the assets (a list for a
/// large plan), the buying power after the sells, the fill activities at the end.
const FIXED_READS: u64 = 7;

/// The fastest a run of `requests` can complete: the requests past one minute's budget each
/// wait for the window to slide, plus four round trips and two trade updates on the critical
/// path.
fn bound_secs(requests: u64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let over_budget = requests.saturating_sub(u64::from(PER_MINUTE)) as f64 * 60.0 / f64::from(PER_MINUTE);
    over_budget + 4.0 * ROUND_TRIP.as_secs_f64() + 2.0 * UPDATE_LATENCY.as_secs_f64()
}

async fn run(name: &str, plan: &RebalancePlan, strategy: Strategy) -> serde_json::Value {
    let mut base = SimConfig::default();
    base.market.model = tranche::sim::MarketModel::Realistic;
    let mut sim = account_from_plan(plan, &base);
    sim.latency.update_ms = u64::try_from(UPDATE_LATENCY.as_millis()).unwrap_or(u64::MAX);
    let config = EmulatorConfig { sim, requests_per_minute: PER_MINUTE, round_trip: ROUND_TRIP, ..Default::default() };
    let emu = Emulator::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap();
    // The adapter as users run it: its own limit (190 in any minute) included.
    let mut alpaca = AlpacaConfig::new(DEFAULT_KEY_ID, Secret::new(DEFAULT_SECRET_KEY));
    alpaca.trading_url = emu.url();
    alpaca.data_url = emu.url();
    // The free feed (`iex`) streams 30 symbols; a larger plan streams on a paid one (`sip`),
    // unless `RATE_LIMIT_FEED` names the feed (`iex`: a large plan on the free feed, the
    // symbols past 30 priced from REST quotes).
    let symbols = plan.items.iter().filter(|i| i.action.side().is_some()).count();
    let feed =
        std::env::var("RATE_LIMIT_FEED").unwrap_or_else(|_| (if symbols > 30 { "sip" } else { "iex" }).to_owned());
    let stream = format!("ws://{}/v2/{feed}", emu.addr);
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
    let data_requests = emu.data_requests_served();
    let filled = result.orders.iter().filter(|r| r.outcome == ItemOutcome::Filled).count();
    let orders = emu.with_sim(|s| s.orders().count());
    let trades = plan.items.iter().filter(|i| i.action.side().is_some()).count() as u64;
    let slippage: Vec<f64> = result
        .orders
        .iter()
        .filter_map(|r| r.slippage_bps)
        .map(|b| b.get().to_string().parse().unwrap_or(0.0))
        .collect();
    #[allow(clippy::cast_precision_loss)]
    let mean_slippage = slippage.iter().sum::<f64>() / slippage.len().max(1) as f64;
    serde_json::json!({
        "plan": name,
        "strategy": format!("{strategy:?}").to_lowercase(),
        "mean_slippage_bps": mean_slippage,
        "completion_secs": secs,
        "items": plan.items.len(),
        "trades": trades,
        "filled_items": filled,
        "orders": orders,
        "requests": requests,
        "data_requests": data_requests,
        "refused": emu.requests_refused(),
        "trading_refused": emu.trading_requests_refused(),
        "floor_requests": FIXED_READS + trades,
        "floor_bound_secs": bound_secs(FIXED_READS + trades),
        "requests_bound_secs": bound_secs(requests),
        "notes": result.metadata.as_ref().and_then(|m| m.get("notes")).cloned().unwrap_or_default(),
    })
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // `--only NAME` runs that plan's cases alone (for looking into one).
    let args: Vec<String> = std::env::args().collect();
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).cloned();
    let read = |file: &str| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(file);
        RebalancePlan::from_json_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    };
    let plans = [("plan-30.json", read("plan-30.json")), ("plan-500.json", read("plan-500.json"))];
    let mut cases: Vec<(&str, &RebalancePlan, Strategy)> = Vec::new();
    for (name, plan) in &plans {
        if (quick && *name != "plan-30.json") || only.as_ref().is_some_and(|o| o != name) {
            continue;
        }
        cases.push((name, plan, Strategy::Market));
        if !quick {
            cases.push((name, plan, Strategy::Smart));
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut runs = Vec::new();
    for (name, plan, strategy) in cases {
        let run = runtime.block_on(run(name, plan, strategy));
        println!(
            "rate-limit bound  {name:<13} {:<8} {:>7.2} s for {} trades ({} filled), {} requests ({} refused, {} of them trading; {} data requests), slippage {:.2} bps; bound {:.2} s for the least requests, {:.2} s for the requests made",
            run["strategy"].as_str().unwrap_or_default(),
            run["completion_secs"].as_f64().unwrap_or_default(),
            run["trades"],
            run["filled_items"],
            run["requests"],
            run["refused"],
            run["trading_refused"],
            run["data_requests"],
            run["mean_slippage_bps"].as_f64().unwrap_or_default(),
            run["floor_bound_secs"].as_f64().unwrap_or_default(),
            run["requests_bound_secs"].as_f64().unwrap_or_default(),
        );
        runs.push(run);
    }
    let report = serde_json::json!({
        "per_minute": PER_MINUTE,
        "round_trip_ms": ROUND_TRIP.as_millis(),
        "update_latency_ms": UPDATE_LATENCY.as_millis(),
        "fixed_reads": FIXED_READS,
        "runs": runs,
    });
    support::write_results("rate_limit", &report);
}
