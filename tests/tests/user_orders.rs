//! The user's own orders on the plan's symbols (resting limits and stops placed outside
//! Tranche, as Alpaca accounts have them): Tranche never cancels, replaces or trades them away,
//! and an item that Alpaca's wash-trade rule blocks fails with that reason instead of being
//! forced through. Checked by the broker's referee over many seeded plans.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rust_decimal::Decimal;
use tranche::domain::{ItemOutcome, Price, Qty, Side};
use tranche::engine::EngineConfig;
use tranche::sim::{SimConfig, UserOrder};
use tranche::simulation::{check_run, run_on_broker, scenario, start_sim};

const SEEDS: u64 = 200;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap()
}

/// For every traded item, one order of the user's own on the same symbol and the other side,
/// far from the market: a buy limit at a tenth of the price under a sell item (it blocks
/// Tranche's market sells), a sell stop at a tenth of the price over a held buy item (it blocks
/// every buy).
fn with_user_orders(seed: u64) -> (tranche::domain::RebalancePlan, SimConfig) {
    let (plan, mut sim) = scenario(seed, 6, &SimConfig::default());
    for item in &plan.items {
        let Some(side) = item.action.side() else { continue };
        let price = tranche::sim::AssetProfile::derive(&sim, &item.symbol).start_micros;
        let tenth = (Decimal::new(price, 6) / Decimal::TEN).round_dp(2).max(Decimal::new(1, 2));
        let held = sim.account.positions.iter().any(|p| p.symbol == item.symbol && p.qty.get() >= Decimal::ONE);
        let order = match side {
            Side::Sell => UserOrder {
                symbol: item.symbol.clone(),
                side: Side::Buy,
                qty: Qty::new(Decimal::ONE),
                limit_price: Some(Price::new(tenth)),
                stop_price: None,
            },
            Side::Buy if held => UserOrder {
                symbol: item.symbol.clone(),
                side: Side::Sell,
                qty: Qty::new(Decimal::ONE),
                limit_price: None,
                stop_price: Some(Price::new(tenth)),
            },
            Side::Buy => continue,
        };
        sim.account.open_orders.push(order);
    }
    (plan, sim)
}

#[test]
fn the_users_own_orders_are_never_touched_and_blocked_items_say_why() {
    let (mut users, mut blocked, mut failures) = (0, 0, Vec::new());
    for seed in 0..SEEDS {
        let (plan, sim) = with_user_orders(seed);
        users += sim.account.open_orders.len();
        let problems = runtime().block_on(async {
            let (broker, clock) = start_sim(sim).unwrap();
            let (result, record) = run_on_broker(plan.clone(), EngineConfig::default(), &broker, &clock, None).await;
            let mut problems: Vec<String> = check_run(&plan, &result, &record).into_iter().map(|v| v.0).collect();
            let theirs: Vec<_> = broker.with_sim(|s| {
                s.orders().filter(|o| o.client_order_id.as_str().starts_with("user-")).cloned().collect()
            });
            for o in theirs.iter().filter(|o| !o.status.is_open()) {
                problems.push(format!("the user's order {} ended {}", o.client_order_id, o.status));
            }
            for row in &result.orders {
                let reason = row.reason.as_deref().unwrap_or_default();
                if reason.contains("wash trade") {
                    blocked += 1;
                    if row.outcome == ItemOutcome::Filled {
                        problems.push(format!("{}: filled yet blocked: {reason}", row.symbol));
                    }
                }
            }
            problems
        });
        if !problems.is_empty() {
            failures.push(format!("seed {seed}: {}", problems.join("; ")));
        }
    }
    println!("{users} orders of the user's own; {blocked} items blocked by the wash-trade rule");
    assert!(
        failures.is_empty(),
        "{} seeds:\n{}",
        failures.len(),
        failures.iter().take(6).cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(users >= 200 && blocked >= 20, "the user's orders were in the way: {users} orders, {blocked} blocked");
}
