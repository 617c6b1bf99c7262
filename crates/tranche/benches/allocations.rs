//! Heap allocations per order: the 100-symbol bench plan run through the async driver on the
//! simulator with zero latency, under an instrumented global allocator (`stats_alloc`, which
//! wraps the system allocator with atomic counters). A separate binary from the `engine` bench,
//! so the counting never touches the timings there.
//!
//! The count covers the whole run in the process: the engine core, the driver and its tasks,
//! and the simulated broker answering it (the simulator's share is not separated). Per order
//! means divided by the orders the run placed. Results are printed and written to
//! `target/bench-results/allocations.json` for `cargo xtask bench`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::alloc::System;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tranche::engine::EngineConfig;
use tranche::sim::{LatencyConfig, SimConfig};
use tranche::simulation::{account_from_plan, run_on_sim};

mod support;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let plan = support::plan_100();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    let mut runs = Vec::new();
    for seed in 1..=if quick { 2 } else { 5 } {
        let mut config = account_from_plan(&plan, &SimConfig::default());
        config.latency = LatencyConfig::zero();
        config.seed = seed;
        let plan = plan.clone();
        let region = Region::new(GLOBAL);
        let (result, record) =
            runtime.block_on(run_on_sim(plan, EngineConfig::default(), config, None)).expect("the plan runs");
        let change = region.change();
        let orders = record.orders.len();
        assert!(orders > 0, "the bench plan places orders");
        #[allow(clippy::cast_precision_loss)]
        let per_order = |n: usize| n as f64 / orders as f64;
        let run = serde_json::json!({
            "seed": seed,
            "orders": orders,
            "filled_items": result.orders.iter().filter(|r| r.filled_qty.get() > rust_decimal::Decimal::ZERO).count(),
            "allocations": change.allocations,
            "reallocations": change.reallocations,
            "bytes_allocated": change.bytes_allocated,
            "allocations_per_order": per_order(change.allocations + change.reallocations),
            "bytes_per_order": per_order(change.bytes_allocated),
        });
        println!(
            "allocations  seed {seed}: {} orders, {:.0} allocations and {:.1} KiB allocated per order",
            orders,
            run["allocations_per_order"].as_f64().unwrap_or_default(),
            run["bytes_per_order"].as_f64().unwrap_or_default() / 1024.0
        );
        runs.push(run);
    }
    let report = serde_json::json!({ "symbols": support::SYMBOLS, "runs": runs });
    support::write_results("allocations", &report);
}
