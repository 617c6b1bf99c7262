//! The example plans shipped in `examples/` parse and validate; the broken one reports every
//! problem at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tranche::domain::{Action, PlanError, RebalancePlan};
use tranche_tests::example;

fn read(name: &str) -> Result<RebalancePlan, PlanError> {
    let text = std::fs::read_to_string(example(name)).expect("example file exists");
    RebalancePlan::from_json_str(&text)
}

#[test]
fn small_example_is_valid() {
    let plan = read("plan.json").expect("valid");
    assert_eq!(plan.items.len(), 5);
    assert_eq!(plan.validate(), Ok(()));
    assert!(plan.items.iter().any(tranche::domain::PlanItem::is_liquidation));
}

#[test]
fn thirty_symbol_example_has_fractional_liquidation_and_hold_items() {
    let plan = read("plan-30.json").expect("valid");
    assert_eq!(plan.items.len(), 30);
    assert_eq!(plan.validate(), Ok(()));
    let liquidations: Vec<&str> = plan.items.iter().filter(|i| i.is_liquidation()).map(|i| i.symbol.as_str()).collect();
    assert_eq!(liquidations, ["EDZ", "SQQQ", "NIO"]);
    assert!(plan.items.iter().any(|i| i.action == Action::Hold));
    assert!(plan.items.iter().any(|i| i.symbol.as_str() == "BRK.B"));
    assert!(plan.items.iter().filter(|i| i.action == Action::Buy).count() >= 10);
    assert!(plan.items.iter().filter(|i| i.action == Action::Sell).count() >= 10);
}

#[test]
fn five_hundred_symbol_example_is_a_direct_indexing_rebalance_over_the_simulated_listing() {
    let plan = read("plan-500.json").expect("valid");
    assert_eq!(plan.items.len(), 500);
    assert_eq!(plan.validate(), Ok(()));
    let count = |action| plan.items.iter().filter(|i| i.action == action).count();
    assert!(count(Action::Buy) >= 150 && count(Action::Sell) >= 150 && count(Action::Hold) >= 20);
    let liquidations = plan.items.iter().filter(|i| i.is_liquidation()).count();
    assert!((3..=20).contains(&liquidations), "a few liquidations: {liquidations}");
    // Small trades: a direct index moves a little of many names.
    let largest = plan.items.iter().map(|i| i.trade_amount.get().abs()).max().unwrap();
    assert!(largest < rust_decimal::Decimal::from(6000), "{largest}");
    // Every name is one the simulator (and the emulator) lists, some of them whole-share only.
    assert!(plan.items.iter().all(|i| tranche::sim::is_listed(&i.symbol)));
    let config = tranche::sim::SimConfig::default();
    let whole =
        plan.items.iter().filter(|i| !tranche::sim::AssetProfile::derive(&config, &i.symbol).fractionable).count();
    assert!(whole >= 20, "{whole} non-fractionable names");
}

#[test]
fn broken_example_lists_all_its_problems() {
    let Err(PlanError::Invalid(issues)) = read("broken-plan.json") else {
        panic!("the broken plan must be invalid");
    };
    let paths: Vec<&str> = issues.0.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(paths.len(), 11, "every problem once: {issues}");
    for want in [
        "correlation_id",
        "timestamp",
        "plan_id",
        "total_portfolio_value",
        "items[0].target_weight",
        "items[0].trade_amount",
        "items[1].symbol",
        "items[1].target_value",
        "items[1].priority",
        "items[2].symbol",
        "items[2].action",
    ] {
        assert!(paths.contains(&want), "missing {want}: {issues}");
    }
}
