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

/// The check of a row's figures against the broker's fills can fail: the small example's result,
/// found sound, is tampered with as a broken engine would report it (an execution booked at its
/// limit instead of its price, the dollars of one counted twice, a slippage flattered), and
/// each is caught.
#[tokio::test(start_paused = true)]
async fn a_row_whose_price_dollars_or_slippage_the_broker_does_not_bear_out_is_caught() {
    let plan = plan("plan.json");
    let sim = account_from_plan(&plan, &SimConfig::default());
    let (result, record) = run_on_sim(plan.clone(), EngineConfig::default(), sim, None).await.unwrap();
    assert!(check_run(&plan, &result, &record).is_empty());
    let traded = result.orders.iter().position(|r| r.avg_fill_price.is_some()).expect("a traded row");
    let tamper = |change: &dyn Fn(&mut tranche::domain::ItemResult)| {
        let mut broken = result.clone();
        change(&mut broken.orders[traded]);
        check_run(&plan, &broken, &record).into_iter().map(|v| v.0).collect::<Vec<_>>()
    };
    let cent = rust_decimal::Decimal::new(1, 2);
    let at_its_limit = tamper(&|row| {
        row.avg_fill_price = row.avg_fill_price.map(|p| tranche::domain::Price::new(p.get() + cent));
    });
    assert!(at_its_limit.iter().any(|v| v.contains("average price")), "{at_its_limit:?}");
    let twice = tamper(&|row| {
        row.filled_notional = tranche::domain::Usd::new(row.filled_notional.get() * rust_decimal::Decimal::TWO)
    });
    assert!(twice.iter().any(|v| v.contains("the broker's fills come to")), "{twice:?}");
    let flattered =
        tamper(&|row| row.slippage_bps = Some(tranche::domain::Bps::new(rust_decimal::Decimal::new(-50, 0))));
    assert!(flattered.iter().any(|v| v.contains("slippage")), "{flattered:?}");
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
