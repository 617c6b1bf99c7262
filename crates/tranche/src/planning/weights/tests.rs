use super::*;

fn d(text: &str) -> Decimal {
    text.parse().unwrap()
}

fn target(symbol: &str, weight: &str) -> Target {
    Target { symbol: Symbol::parse(symbol).unwrap(), weight: d(weight) }
}

fn held(symbol: &str, qty: &str, value: &str) -> Position {
    Position {
        symbol: Symbol::parse(symbol).unwrap(),
        qty: qty.parse().unwrap(),
        qty_available: qty.parse().unwrap(),
        avg_entry_price: "10".parse().unwrap(),
        market_value: value.parse().unwrap(),
        current_price: None,
    }
}

fn how() -> NewPlan {
    NewPlan {
        plan_id: "rebalance-test".into(),
        timestamp: chrono::DateTime::UNIX_EPOCH,
        min_trade: Decimal::ONE,
        keep_unlisted: false,
        targets_source: "targets.csv".into(),
        broker: "sim".into(),
    }
}

/// (symbol, action, trade amount) of every item.
fn lines(plan: &RebalancePlan) -> Vec<(String, Action, String)> {
    plan.items.iter().map(|i| (i.symbol.to_string(), i.action, i.trade_amount.get().normalize().to_string())).collect()
}

fn line(symbol: &str, action: Action, amount: &str) -> (String, Action, String) {
    (symbol.to_owned(), action, amount.to_owned())
}

#[test]
fn buys_sells_holds_and_liquidates_unlisted_positions() {
    let targets = [target("AAPL", "0.3"), target("MSFT", "0.2"), target("SPY", "0.4"), target("TLT", "0")];
    let positions = [held("AAPL", "100", "25000"), held("SPY", "50", "39999.5"), held("EDZ", "10", "0.5")];
    let plan = build(&targets, Usd::new(d("100000")), &positions, &how()).unwrap();
    assert_eq!(
        lines(&plan),
        vec![
            line("AAPL", Action::Buy, "5000"),
            line("MSFT", Action::Buy, "20000"),
            line("SPY", Action::Hold, "0"),
            line("TLT", Action::Hold, "0"),
            line("EDZ", Action::Sell, "-0.5"),
        ]
    );
    let edz = &plan.items[4];
    assert!(edz.is_liquidation(), "an unlisted position is sold to zero, however small");
    assert_eq!(plan.total_portfolio_value, Usd::new(d("100000")));
    assert_eq!(plan.items[0].current_weight, Weight::new(d("0.25")));
    assert_eq!(plan.items[0].target_value, Usd::new(d("30000")));
    assert_eq!(plan.total_trade_value, Usd::new(d("24999.5")));
    assert_eq!(plan.validate(), Ok(()));
    let text = plan.to_json_pretty();
    assert_eq!(RebalancePlan::from_json_str(&text).unwrap(), plan, "the plan reads back as written");
}

#[test]
fn keep_unlisted_holds_them_and_refuses_targets_that_do_not_fit() {
    let positions = [held("AAPL", "100", "20000"), held("EDZ", "10", "30000")];
    let keep = NewPlan { keep_unlisted: true, ..how() };
    let plan = build(&[target("AAPL", "0.5")], Usd::new(d("100000")), &positions, &keep).unwrap();
    assert_eq!(lines(&plan), vec![line("AAPL", Action::Buy, "30000"), line("EDZ", Action::Hold, "0")]);
    assert_eq!(plan.items[1].target_weight, Weight::new(d("0.3")));

    let problems = build(&[target("AAPL", "0.8")], Usd::new(d("100000")), &positions, &keep).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].contains("(EDZ) are 30.00% of the portfolio")
            && problems[0].contains("at most 70.00%; they add up to 80.00%"),
        "{problems:?}"
    );
}

#[test]
fn differences_below_the_minimum_trade_are_holds_in_both_directions() {
    let positions = [held("AAPL", "1", "300.40"), held("MSFT", "1", "199.60")];
    let targets = [target("AAPL", "0.3"), target("MSFT", "0.2")];
    let coarse = NewPlan { min_trade: d("0.5"), ..how() };
    let plan = build(&targets, Usd::new(d("1000")), &positions, &coarse).unwrap();
    assert_eq!(lines(&plan), vec![line("AAPL", Action::Hold, "0"), line("MSFT", Action::Hold, "0")]);
    let fine = NewPlan { min_trade: d("0.1"), ..how() };
    let plan = build(&targets, Usd::new(d("1000")), &positions, &fine).unwrap();
    assert_eq!(lines(&plan), vec![line("AAPL", Action::Sell, "-0.4"), line("MSFT", Action::Buy, "0.4")]);
}

#[test]
fn target_values_are_rounded_to_the_cent() {
    let plan = build(&[target("AAPL", "0.333333")], Usd::new(d("1000.01")), &[], &how()).unwrap();
    assert_eq!(plan.items[0].target_value, Usd::new(d("333.34")));
    assert_eq!(plan.items[0].trade_amount, Usd::new(d("333.34")));
}

#[test]
fn every_reason_the_plan_cannot_be_built_is_listed() {
    let positions = [held("SQQQ", "-5", "-100"), held("UVXY", "-1", "-20")];
    let problems = build(&[target("AAPL", "0.5")], Usd::ZERO, &positions, &how()).unwrap_err();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].contains("equity is $0"), "{problems:?}");
    assert!(problems[1].starts_with("SQQQ: short position"), "{problems:?}");
}

#[test]
fn the_metadata_says_where_the_plan_came_from() {
    let plan = build(&[target("AAPL", "0.25")], Usd::new(d("1000")), &[], &how()).unwrap();
    let metadata = plan.metadata.unwrap();
    assert_eq!(metadata["targets"], "targets.csv");
    assert_eq!(metadata["broker"], "sim");
    assert_eq!(metadata["unlisted_positions"], "sell");
    assert_eq!(metadata["targets_weight_sum"], "0.25");
}

#[test]
fn equity_the_positions_do_not_explain_is_noticed() {
    let positions = [held("AAPL", "10", "2000"), held("EDZ", "50", "500")];
    let usd = |t: &str| -> Usd { t.parse().unwrap() };
    assert_eq!(unaccounted(usd("10000"), usd("7500"), &positions), None, "all accounted for");
    assert_eq!(unaccounted(usd("10030"), usd("7500"), &positions), None, "price drift within 0.5 %");
    assert_eq!(unaccounted(usd("12500"), usd("7500"), &positions), Some(d("2500")), "an unread holding");
}
