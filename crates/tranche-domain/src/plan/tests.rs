use proptest::prelude::*;
use serde_json::json;

use super::*;

fn good_plan() -> Value {
    json!({
        "schema_version": "1.0",
        "correlation_id": "corr-1",
        "causation_id": "cause-1",
        "timestamp": "2026-11-20T14:30:00-05:00",
        "plan_id": "plan-2026-11-20",
        "total_portfolio_value": "100000.00",
        "total_trade_value": 0,
        "items": [
            {"symbol": "aapl", "current_weight": "0.10", "target_weight": 0.15, "weight_diff": "0.05",
             "target_value": "15000", "current_value": "10000", "trade_amount": "5000", "action": "buy", "priority": 1},
            {"symbol": "EDZ", "current_weight": "0.05", "target_weight": "0", "weight_diff": "-0.05",
             "target_value": "0", "current_value": "5000", "trade_amount": "-5000", "action": "SELL", "priority": 2},
            {"symbol": "SPY", "current_weight": "0.5", "target_weight": "0.5", "weight_diff": "0",
             "target_value": "50000", "current_value": "50000", "trade_amount": "0", "action": "Hold", "priority": 3}
        ],
        "metadata": {"strategy_attribution": {"AAPL": {"momentum": 0.6, "value": 0.4}}}
    })
}

#[test]
fn reads_the_predecessor_format() {
    let plan = RebalancePlan::from_value(&good_plan()).unwrap();
    assert_eq!(plan.items.len(), 3);
    assert_eq!(plan.items[0].symbol.as_str(), "AAPL");
    assert_eq!(plan.items[0].action, Action::Buy);
    assert_eq!(plan.items[0].target_weight, "0.15".parse().unwrap());
    assert!(plan.items[1].is_liquidation());
    assert_eq!(plan.timestamp.to_rfc3339(), "2026-11-20T19:30:00+00:00");
    assert_eq!(plan.max_drift_tolerance, "0.05".parse().unwrap());
    assert_eq!(plan.execution_urgency, Urgency::Normal);
    let attribution = plan.strategy_attribution(&plan.items[0].symbol).unwrap();
    assert_eq!(attribution.len(), 2);
    assert!(plan.strategy_attribution(&plan.items[2].symbol).is_none());
}

#[test]
fn unknown_fields_are_ignored_and_defaults_apply() {
    let mut value = good_plan();
    value["future_field"] = json!({"x": 1});
    value.as_object_mut().unwrap().remove("schema_version");
    value.as_object_mut().unwrap().remove("total_trade_value");
    let plan = RebalancePlan::from_value(&value).unwrap();
    assert_eq!(plan.schema_version, "1.0");
    assert_eq!(plan.total_trade_value, Usd::ZERO);
}

#[test]
fn a_broken_plan_reports_every_problem_with_its_path() {
    let value = json!({
        "correlation_id": "",
        "causation_id": "c",
        "timestamp": "not a time",
        "total_portfolio_value": "-5",
        "max_drift_tolerance": "2",
        "items": [
            {"symbol": "AAPL", "current_weight": "1.5", "target_weight": "-0.1", "target_value": "-1",
             "current_value": "0", "trade_amount": "-100", "action": "BUY"},
            {"symbol": "aapl", "current_weight": "0", "target_weight": "0", "target_value": "0",
             "current_value": "0", "trade_amount": "100", "action": "SELL", "priority": 9},
            {"symbol": "BAD SYMBOL", "current_weight": "x", "target_weight": "0", "target_value": "0",
             "current_value": "0", "trade_amount": "0", "action": "SHORT"},
            "not an item"
        ]
    });
    let issues = RebalancePlan::from_value(&value).unwrap_err();
    let paths: Vec<&str> = issues.0.iter().map(|i| i.path.as_str()).collect();
    for want in [
        "correlation_id",
        "timestamp",
        "plan_id",
        "total_portfolio_value",
        "max_drift_tolerance",
        "items[0].current_weight",
        "items[0].target_weight",
        "items[0].target_value",
        "items[0].trade_amount",
        "items[1].symbol",
        "items[1].trade_amount",
        "items[1].priority",
        "items[2].symbol",
        "items[2].current_weight",
        "items[2].action",
        "items[3]",
    ] {
        assert!(paths.contains(&want), "missing {want} in {paths:?}");
    }
    let text = issues.to_string();
    assert!(text.contains("duplicate symbol AAPL: already at items[0]"), "{text}");
    assert!(text.contains("BUY needs a positive trade_amount"), "{text}");
}

#[test]
fn empty_and_missing_items_are_reported_once() {
    let mut value = good_plan();
    value["items"] = json!([]);
    let issues = RebalancePlan::from_value(&value).unwrap_err();
    assert_eq!(issues.0, vec![PlanIssue { path: "items".into(), message: "must contain at least one item".into() }]);
    value.as_object_mut().unwrap().remove("items");
    let issues = RebalancePlan::from_value(&value).unwrap_err();
    assert_eq!(issues.0.len(), 1, "{issues}");
}

#[test]
fn syntax_errors_carry_a_position() {
    let err = RebalancePlan::from_json_str("{\"plan_id\": ").unwrap_err();
    assert!(matches!(err, PlanError::Syntax { line: 1, .. }), "{err}");
    let err = RebalancePlan::from_json_str("[1, 2]").unwrap_err();
    assert!(err.to_string().contains("must be a JSON object"), "{err}");
}

#[test]
fn validate_catches_problems_in_plans_built_in_code() {
    let mut plan = RebalancePlan::from_value(&good_plan()).unwrap();
    assert_eq!(plan.validate(), Ok(()));
    plan.items[2].symbol = plan.items[0].symbol.clone();
    plan.items[0].trade_amount = "-1".parse().unwrap();
    let issues = plan.validate().unwrap_err();
    assert_eq!(issues.0.len(), 2, "{issues}");
}

#[test]
fn a_sell_of_more_than_the_plan_says_is_held_is_a_plan_error() {
    let with = |amount: &str, held: &str| {
        let mut value = good_plan();
        value["items"] = json!([{"symbol": "EDZ", "current_weight": "0.1", "target_weight": "0", "target_value": "0",
            "current_value": held, "trade_amount": amount, "action": "SELL"}]);
        RebalancePlan::from_value(&value)
    };
    assert!(with("-20000", "20000").is_ok(), "the whole position");
    assert!(with("-20000.01", "20000").is_ok(), "a cent of rounding");
    let issues = with("-5000000", "20000").unwrap_err().to_string();
    assert!(issues.contains("items[0].trade_amount") && issues.contains("more than the 20000"), "{issues}");
}

fn decimal_text() -> impl Strategy<Value = String> {
    (0i64..10_000_000, 0u32..6).prop_map(|(m, s)| rust_decimal::Decimal::new(m, s).to_string())
}

fn any_item() -> impl Strategy<Value = Value> {
    ("[A-Z]{1,5}", decimal_text(), decimal_text(), prop_oneof![Just("BUY"), Just("SELL"), Just("HOLD")], 1u8..=5).prop_map(
        |(symbol, value, amount, action, priority)| {
            // A sell never sells more than the plan says is held.
            let (signed, held) =
                if action == "SELL" { (format!("-{amount}"), amount) } else { (amount, "0".to_owned()) };
            json!({"symbol": symbol, "current_weight": "0.1", "target_weight": "0.2", "weight_diff": "0.1",
                   "target_value": value, "current_value": held, "trade_amount": signed, "action": action, "priority": priority})
        },
    )
}

proptest! {
    #[test]
    fn valid_plans_round_trip_through_json(items in proptest::collection::vec(any_item(), 1..8), seconds in 0i64..4_000_000_000) {
        let mut value = good_plan();
        let mut seen = std::collections::HashSet::new();
        let items: Vec<Value> = items.into_iter().filter(|i| seen.insert(i["symbol"].as_str().unwrap_or_default().to_owned())).collect();
        value["items"] = Value::Array(items);
        value["timestamp"] = json!(chrono::DateTime::from_timestamp(seconds, 0).unwrap().to_rfc3339());
        let plan = RebalancePlan::from_value(&value).unwrap();
        let text = serde_json::to_string(&plan).unwrap();
        let back: RebalancePlan = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&back, &plan);
        prop_assert_eq!(RebalancePlan::from_json_str(&plan.to_json_pretty()).unwrap(), plan);
    }

    #[test]
    fn the_parser_never_panics_on_arbitrary_text(text in ".{0,300}") {
        let _ = RebalancePlan::from_json_str(&text);
    }

    #[test]
    fn the_parser_never_panics_on_arbitrary_json(value in arbitrary_json()) {
        let _ = RebalancePlan::from_value(&value);
        let mut plan = good_plan();
        plan["items"][0]["trade_amount"] = value.clone();
        plan["timestamp"] = value.clone();
        plan["items"][1] = value;
        let _ = RebalancePlan::from_value(&plan);
    }
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Ids are printed as they are (tables, `ledger runs`) and name ledger records: a control
/// character (a terminal escape) or an id past 256 characters is refused with its path.
#[test]
fn ids_with_control_characters_or_past_256_characters_are_refused() {
    let mut value = good_plan();
    value["plan_id"] = json!("plan\u{1b}[2J");
    value["correlation_id"] = json!("c".repeat(257));
    value["causation_id"] = json!("ok");
    let issues = RebalancePlan::from_value(&value).unwrap_err();
    let found: Vec<(&str, &str)> = issues.0.iter().map(|i| (i.path.as_str(), i.message.as_str())).collect();
    assert_eq!(
        found,
        [
            ("plan_id", "must not contain control characters (one at character 4)"),
            ("correlation_id", "must be at most 256 characters")
        ]
    );
    value["correlation_id"] = json!("c".repeat(256));
    value["plan_id"] = json!("plan-ünïcode");
    assert!(RebalancePlan::from_value(&value).is_ok());
}
