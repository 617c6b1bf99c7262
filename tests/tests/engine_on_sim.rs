//! The engine on the simulator: example plans end to end in virtual time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tranche::domain::{ItemOutcome, RebalancePlan};
use tranche::engine::{EngineConfig, ProgressEvent as E};
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

#[tokio::test(start_paused = true)]
async fn a_closed_market_or_a_blocked_account_is_refused_clearly_with_nothing_sent() {
    let plan = plan("plan.json");
    let mut closed = account_from_plan(&plan, &SimConfig::default());
    closed.session.start = closed.session.close + chrono::Duration::hours(1);
    let (result, record) = run_on_sim(plan.clone(), EngineConfig::default(), closed, None).await.unwrap();
    assert!(record.orders.is_empty());
    assert_eq!(result.status, tranche::domain::ExecutionStatus::Failure);
    let reason = result.orders[0].reason.clone().unwrap();
    assert!(reason.contains("market is closed") && reason.contains("2026-03-03T14:30:00"), "{reason}");

    let mut blocked = account_from_plan(&plan, &SimConfig::default());
    blocked.account.trading_blocked = true;
    let (result, record) = run_on_sim(plan.clone(), EngineConfig::default(), blocked, None).await.unwrap();
    assert!(record.orders.is_empty());
    assert!(result.orders[0].reason.as_deref().unwrap().contains("cannot trade"));
    assert_eq!(result.orders.len(), plan.items.len(), "every item is still accounted for");
}

#[tokio::test(start_paused = true)]
async fn the_thirty_symbol_example_executes_with_progress_events() {
    let plan = plan("plan-30.json");
    let sim = account_from_plan(&plan, &SimConfig::default());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (result, record) = run_on_sim(plan.clone(), EngineConfig::default(), sim, Some(tx)).await.unwrap();
    assert!(check_run(&plan, &result, &record).is_empty(), "{:?}", check_run(&plan, &result, &record));
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    let done = events.iter().filter(|e| matches!(e, E::ItemDone { .. })).count();
    assert_eq!(done, plan.items.len(), "one ItemDone per item");
    assert!(events.iter().any(|e| matches!(e, E::Filled { .. })));
    assert!(events.iter().any(|e| matches!(e, E::PhaseDone { phase: tranche::engine::Phase::Buy, .. })));
    let traded = result.orders.iter().filter(|r| r.outcome == ItemOutcome::Filled).count();
    assert!(
        traded >= 25,
        "{traded} of 30 items filled: {:#?}",
        result.orders.iter().map(|r| (&r.symbol, r.outcome, &r.reason)).collect::<Vec<_>>()
    );
}
