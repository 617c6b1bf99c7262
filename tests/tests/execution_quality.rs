//! Execution quality over 1,000 fixed seeds with realistic spreads: the smart strategy's mean
//! slippage against the arrival mid beats a market-only strategy and a replica of the
//! predecessor's default algorithm. (The figures are published in docs/benchmarks.md.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tranche::engine::{EngineConfig, Strategy};
use tranche::sim::{MarketConfig, MarketModel};
use tranche::simulation::{run_scenarios, Faults};

#[test]
fn smart_beats_market_and_the_predecessor_over_a_thousand_seeds() {
    let report = |strategy| {
        run_scenarios(
            1,
            1000,
            &EngineConfig { strategy, ..EngineConfig::default() },
            &MarketConfig { model: MarketModel::Realistic, ..MarketConfig::default() },
            Faults::None,
        )
        .unwrap()
    };
    let (smart, market, predecessor) =
        (report(Strategy::Smart), report(Strategy::Market), report(Strategy::Predecessor));
    for r in [&smart, &market, &predecessor] {
        println!("{}", serde_json_line(r));
        assert_eq!(r.invariant_violations, 0, "{r:?}");
        assert!(r.completion_rate > 0.97, "{r:?}");
    }
    assert!(smart.slippage_bps.mean < market.slippage_bps.mean, "smart {smart:?} vs market {market:?}");
    assert!(smart.slippage_bps.mean < predecessor.slippage_bps.mean, "smart {smart:?} vs predecessor {predecessor:?}");
}

fn serde_json_line(r: &tranche::simulation::ScenarioReport) -> String {
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
