//! The engine on the simulator: example plans end to end in virtual time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tranche::domain::{ItemOutcome, RebalancePlan};
use tranche::engine::EngineConfig;
use tranche::sim::SimConfig;
use tranche::simulation::{account_from_plan, check_run, run_on_sim};
use tranche_tests::example;

fn plan(name: &str) -> RebalancePlan {
    RebalancePlan::from_json_str(&std::fs::read_to_string(example(name)).unwrap()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_small_example_executes_completely() {
    let plan = plan("plan.json");
    let sim = account_from_plan(&plan, &SimConfig::default());
    let (result, record) = run_on_sim(plan.clone(), EngineConfig::default(), sim, None).await.unwrap();
    let violations = check_run(&plan, &result, &record);
    assert!(violations.is_empty(), "{violations:?}");
    for row in &result.orders {
        println!(
            "{} {:?} {:?} filled {} of {} avg {:?} slip {:?} orders {} repegs {}",
            row.symbol,
            row.action,
            row.outcome,
            row.filled_qty,
            row.requested_qty,
            row.avg_fill_price,
            row.slippage_bps,
            row.orders,
            row.repegs
        );
    }
    assert!(result.success, "{:#?}", result.orders);
    assert_eq!(result.orders.iter().filter(|r| r.outcome == ItemOutcome::Held).count(), 1);
}
