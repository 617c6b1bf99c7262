//! Execution quality over 1,000 fixed seeds on the realistic market (informed flow, a quote
//! imbalance that foretells the move, the impact of our own orders, spreads by liquidity class):
//! `smart` against the predecessor's replica and market orders, item by item on the same seeds,
//! as the goals of `docs/benchmarks.md` ask. (The figures with their intervals are published
//! there.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::BTreeMap;

use tranche::engine::{EngineConfig, Strategy};
use tranche::quality;
use tranche::sim::{MarketConfig, MarketModel};
use tranche::simulation::{run_scenarios, Faults, ScenarioReport};

fn report(strategy: Strategy) -> ScenarioReport {
    let market = MarketConfig { model: MarketModel::Realistic, ..MarketConfig::default() };
    run_scenarios(1, 1000, &EngineConfig { strategy, ..EngineConfig::default() }, &market, Faults::None).unwrap()
}

fn by_item(r: &ScenarioReport) -> BTreeMap<(u64, usize), f64> {
    r.items.iter().map(|i| ((i.seed, i.index), i.slippage_bps)).collect()
}

fn by_seed(r: &ScenarioReport) -> BTreeMap<u64, f64> {
    r.runs.iter().map(|run| (run.seed, run.secs)).collect()
}

#[test]
fn smart_beats_the_predecessor_and_halves_market_orders_slippage_on_the_realistic_market() {
    let (smart, market, predecessor) =
        (report(Strategy::Smart), report(Strategy::Market), report(Strategy::Predecessor));
    for r in [&smart, &market, &predecessor] {
        println!("{}", line(r));
        assert_eq!(r.invariant_violations, 0, "{:?}", r.violation_examples);
        assert!(r.completion_rate > 0.97, "{}", line(r));
    }
    let vs_predecessor = quality::paired_difference(&by_item(&smart), &by_item(&predecessor));
    assert!(vs_predecessor.below_zero(), "smart − predecessor: {vs_predecessor:?}");
    assert!(smart.slippage_bps.p95 < predecessor.slippage_bps.p95, "{} vs {}", line(&smart), line(&predecessor));
    let time = quality::paired_difference(&by_seed(&smart), &by_seed(&predecessor));
    assert!(time.value < 0.0, "smart's time − the predecessor's: {time:?}");
    let ratio = quality::paired_ratio(&by_item(&smart), &by_item(&market));
    assert!(ratio.value <= 0.5, "smart ÷ market orders: {ratio:?}");
}

fn line(r: &ScenarioReport) -> String {
    format!(
        "{:?}: slippage mean {:.2} bps p95 {:.2} bps, completion {:.4}, {:.1} s, {:.2} requests/order",
        r.strategy,
        r.slippage_bps.mean,
        r.slippage_bps.p95,
        r.completion_rate,
        r.mean_completion_secs,
        r.requests_per_order
    )
}
