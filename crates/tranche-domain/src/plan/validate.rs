//! Plan rules: ranges, signs, duplicates. One set of rules serves both the JSON parser (on the
//! fields that parsed) and [`RebalancePlan::validate`] (on plans built in code), so every
//! violation is reported once, whatever else is wrong.

use std::collections::HashMap;

use rust_decimal::Decimal;

use super::{PlanIssue, RebalancePlan};
use crate::money::{Usd, Weight};
use crate::side::Action;
use crate::symbol::Symbol;

/// The plan-level fields that parsed (`None` = missing or already reported).
#[derive(Default)]
pub(super) struct HeaderParts<'a> {
    pub ids: Vec<(&'static str, Option<&'a str>)>,
    pub total_portfolio_value: Option<Usd>,
    pub max_drift_tolerance: Option<Weight>,
    pub estimated_duration_minutes: Option<u32>,
    pub item_count: usize,
}

/// One item's fields that parsed (`None` = missing or already reported).
#[derive(Default)]
pub(super) struct ItemParts {
    pub current_weight: Option<Weight>,
    pub target_weight: Option<Weight>,
    pub target_value: Option<Usd>,
    pub current_value: Option<Usd>,
    pub trade_amount: Option<Usd>,
    pub action: Option<Action>,
    pub priority: Option<u8>,
}

fn push(issues: &mut Vec<PlanIssue>, path: String, message: String) {
    issues.push(PlanIssue { path, message });
}

fn check_fraction(issues: &mut Vec<PlanIssue>, path: String, value: Option<Weight>) {
    if let Some(value) = value {
        if value.get() < Decimal::ZERO || value.get() > Decimal::ONE {
            push(issues, path, format!("must be between 0 and 1, got {value}"));
        }
    }
}

/// The longest `plan_id`, `correlation_id` or `causation_id` accepted.
pub const MAX_ID_CHARS: usize = 256;

/// What is wrong with `value` as a `plan_id`, `correlation_id` or `causation_id`, if anything:
/// empty, a control character, or past [`MAX_ID_CHARS`] characters.
pub fn id_problem(value: &str) -> Option<String> {
    if value.trim().is_empty() {
        Some("must not be empty".to_owned())
    } else if let Some(at) = value.chars().position(char::is_control) {
        // Printed as is by `plan validate`, `ledger runs` and the result table: an escape
        // sequence from upstream would drive the user's terminal.
        Some(format!("must not contain control characters (one at character {at})"))
    } else if value.chars().count() > MAX_ID_CHARS {
        // The ids name ledger records (an S3 key is at most 1,024 bytes).
        Some(format!("must be at most {MAX_ID_CHARS} characters"))
    } else {
        None
    }
}

pub(super) fn check_header(parts: &HeaderParts<'_>, issues: &mut Vec<PlanIssue>) {
    for (name, value) in &parts.ids {
        if let Some(problem) = value.and_then(id_problem) {
            push(issues, (*name).to_owned(), problem);
        }
    }
    if let Some(value) = parts.total_portfolio_value.filter(|v| v.is_negative()) {
        push(issues, "total_portfolio_value".into(), format!("must not be negative, got {value}"));
    }
    check_fraction(issues, "max_drift_tolerance".into(), parts.max_drift_tolerance);
    if parts.estimated_duration_minutes == Some(0) {
        push(issues, "estimated_duration_minutes".into(), "must be at least 1 when given".into());
    }
    if parts.item_count == 0 {
        push(issues, "items".into(), "must contain at least one item".into());
    }
}

pub(super) fn check_item(index: usize, item: &ItemParts, issues: &mut Vec<PlanIssue>) {
    let at = |field: &str| format!("items[{index}].{field}");
    check_fraction(issues, at("current_weight"), item.current_weight);
    check_fraction(issues, at("target_weight"), item.target_weight);
    for (field, value) in [("target_value", item.target_value), ("current_value", item.current_value)] {
        if let Some(value) = value.filter(|v| v.is_negative()) {
            push(issues, at(field), format!("must not be negative, got {value}"));
        }
    }
    match (item.action, item.trade_amount) {
        (Some(Action::Buy), Some(amount)) if amount.is_negative() => push(
            issues,
            at("trade_amount"),
            format!("BUY needs a positive trade_amount, got {amount} (negative amounts are sells)"),
        ),
        (Some(Action::Sell), Some(amount)) if amount.is_positive() => push(
            issues,
            at("trade_amount"),
            format!("SELL needs a negative trade_amount, got {amount} (positive amounts are buys)"),
        ),
        _ => {}
    }
    if let (Some(Action::Sell), Some(amount), Some(held)) = (item.action, item.trade_amount, item.current_value) {
        // A sell cannot be worth more than the position the plan says is held (a cent of
        // rounding aside).
        let sold = amount.get().abs();
        if sold > held.get() + Decimal::new(1, 2) {
            push(
                issues,
                at("trade_amount"),
                format!("SELL of {} is more than the {held} the plan says is held (current_value)", Usd::new(sold)),
            );
        }
    }
    if let Some(priority) = item.priority.filter(|p| !(1..=5).contains(p)) {
        push(issues, at("priority"), format!("must be between 1 and 5, got {priority}"));
    }
}

pub(super) fn check_duplicates<'a>(
    symbols: impl IntoIterator<Item = (usize, &'a Symbol)>,
    issues: &mut Vec<PlanIssue>,
) {
    let mut first_seen: HashMap<&str, usize> = HashMap::new();
    for (index, symbol) in symbols {
        if let Some(first) = first_seen.get(symbol.as_str()) {
            push(
                issues,
                format!("items[{index}].symbol"),
                format!("duplicate symbol {symbol}: already at items[{first}]"),
            );
        } else {
            first_seen.insert(symbol.as_str(), index);
        }
    }
}

/// Appends every rule violation of a fully built `plan` to `issues`.
pub(super) fn check_plan(plan: &RebalancePlan, issues: &mut Vec<PlanIssue>) {
    let header = HeaderParts {
        ids: vec![
            ("plan_id", Some(plan.plan_id.as_str())),
            ("correlation_id", Some(plan.correlation_id.as_str())),
            ("causation_id", Some(plan.causation_id.as_str())),
        ],
        total_portfolio_value: Some(plan.total_portfolio_value),
        max_drift_tolerance: Some(plan.max_drift_tolerance),
        estimated_duration_minutes: plan.estimated_duration_minutes,
        item_count: plan.items.len(),
    };
    check_header(&header, issues);
    for (index, item) in plan.items.iter().enumerate() {
        let parts = ItemParts {
            current_weight: Some(item.current_weight),
            target_weight: Some(item.target_weight),
            target_value: Some(item.target_value),
            current_value: Some(item.current_value),
            trade_amount: Some(item.trade_amount),
            action: Some(item.action),
            priority: item.priority,
        };
        check_item(index, &parts, issues);
    }
    check_duplicates(plan.items.iter().enumerate().map(|(i, item)| (i, &item.symbol)), issues);
}
