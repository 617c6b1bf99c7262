//! A plan from target weights (`tranche plan new`'s arithmetic): from target weights and the broker's picture (equity and
//! positions) to a rebalance plan in the predecessor's format.
//!
//! Rules: the portfolio value is the account's equity; a symbol's target value is its weight
//! times that value (to the cent); its current value is the position's market value. A
//! difference smaller than `min_trade` dollars is a HOLD; a held symbol whose target weight is 0
//! is a SELL of the whole position (the engine then liquidates it, fractional remainder included)
//! whatever its size. Held symbols missing from the targets are sold to zero, or kept as HOLD
//! items with `keep_unlisted`. Invariants: pure (no I/O, no clock); every problem is returned at
//! once; a returned plan has passed `RebalancePlan::validate`.

use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Map, Value};
use tranche_domain::{Action, PlanItem, Position, RebalancePlan, Symbol, Timestamp, Urgency, Usd, Weight};

use super::targets::Target;

/// What a new plan is called and how it is built.
#[derive(Debug, Clone)]
pub struct NewPlan {
    /// The plan id (the idempotency key of its execution).
    pub plan_id: String,
    /// When the plan is made.
    pub timestamp: Timestamp,
    /// Differences below this many dollars are HOLD (≥ 0).
    pub min_trade: Decimal,
    /// Keep held symbols that are not in the targets (HOLD) instead of selling them to zero.
    pub keep_unlisted: bool,
    /// Where the targets came from (recorded in the plan's metadata).
    pub targets_source: String,
    /// Which broker's picture the plan is computed from (recorded in the metadata).
    pub broker: String,
}

fn cents(value: Decimal) -> Decimal {
    value.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

fn percent(value: Decimal) -> String {
    format!("{:.2}%", value * Decimal::ONE_HUNDRED)
}

/// One line of the plan before it becomes a `PlanItem`.
struct Line {
    symbol: Symbol,
    current_value: Decimal,
    target_weight: Decimal,
    target_value: Decimal,
    held: bool,
}

/// The part of `equity` that neither `cash` nor `positions` accounts for, when it is more than
/// $1 and 0.5 % of the equity: holdings the broker reported but the adapter could not read (an
/// option, say). Their symbols cannot be in the plan, so its targets would be off.
pub fn unaccounted(equity: Usd, cash: Usd, positions: &[Position]) -> Option<Decimal> {
    let held: Decimal = positions.iter().map(|p| p.market_value.get()).sum();
    let gap = equity.get() - cash.get() - held;
    let tolerance = Decimal::ONE.max(equity.get().abs() * Decimal::new(5, 3));
    (gap.abs() > tolerance).then_some(gap)
}

/// Builds the plan, or lists every reason it cannot be built.
pub fn build(
    targets: &[Target],
    equity: Usd,
    positions: &[Position],
    how: &NewPlan,
) -> Result<RebalancePlan, Vec<String>> {
    let total = cents(equity.get());
    let mut problems = Vec::new();
    if total <= Decimal::ZERO {
        problems.push(format!("the account's equity is ${total}: there is nothing to allocate"));
    }
    for p in positions.iter().filter(|p| p.qty.is_negative() || p.market_value.is_negative()) {
        problems.push(format!(
            "{}: short position of {} shares; plan new does not cover shorts (close it first)",
            p.symbol, p.qty
        ));
    }
    let listed = |s: &Symbol| targets.iter().any(|t| &t.symbol == s);
    let mut unlisted: Vec<&Position> = positions.iter().filter(|p| !listed(&p.symbol)).collect();
    unlisted.sort_by(|a, b| a.symbol.cmp(&b.symbol));
    if how.keep_unlisted && total > Decimal::ZERO {
        let kept = unlisted.iter().map(|p| p.market_value.get()).sum::<Decimal>() / total;
        let wanted: Decimal = targets.iter().map(|t| t.weight).sum();
        if wanted + kept > Decimal::ONE {
            let names: Vec<&str> = unlisted.iter().map(|p| p.symbol.as_str()).collect();
            problems.push(format!(
                "with --keep-unlisted the positions not in the targets ({}) are {} of the portfolio, so the \
                 targets may add up to at most {}; they add up to {}",
                names.join(", "),
                percent(kept),
                percent((Decimal::ONE - kept).max(Decimal::ZERO)),
                percent(wanted)
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let position = |s: &Symbol| positions.iter().find(|p| &p.symbol == s);
    let mut lines: Vec<Line> = targets
        .iter()
        .map(|t| Line {
            symbol: t.symbol.clone(),
            current_value: position(&t.symbol).map_or(Decimal::ZERO, |p| cents(p.market_value.get())),
            target_weight: t.weight,
            target_value: cents(t.weight * total),
            held: position(&t.symbol).is_some_and(|p| p.qty.is_positive()),
        })
        .collect();
    lines.extend(unlisted.iter().map(|p| {
        let current = cents(p.market_value.get());
        let (target_weight, target_value) =
            if how.keep_unlisted { (weight_of(current, total), current) } else { (Decimal::ZERO, Decimal::ZERO) };
        Line {
            symbol: p.symbol.clone(),
            current_value: current,
            target_weight,
            target_value,
            held: p.qty.is_positive(),
        }
    }));
    let items: Vec<PlanItem> = lines.into_iter().map(|line| item(line, total, how.min_trade)).collect();
    let plan = RebalancePlan {
        schema_version: "1.0".to_owned(),
        correlation_id: how.plan_id.clone(),
        causation_id: "tranche plan new".to_owned(),
        timestamp: how.timestamp,
        plan_id: how.plan_id.clone(),
        total_trade_value: Usd::new(items.iter().map(|i| i.trade_amount.get()).sum()),
        items,
        total_portfolio_value: Usd::new(total),
        max_drift_tolerance: Weight::new(Decimal::new(5, 2)),
        execution_urgency: Urgency::Normal,
        estimated_duration_minutes: None,
        metadata: Some(metadata(targets, how)),
    };
    plan.validate()
        .map_err(|issues| issues.0.into_iter().map(|i| format!("{}: {}", i.path, i.message)).collect::<Vec<_>>())?;
    Ok(plan)
}

/// `value / total` to six places, within 0..=1 (a leveraged position may be worth more than the
/// equity; the plan format's weights are fractions).
fn weight_of(value: Decimal, total: Decimal) -> Decimal {
    if total <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    (value / total).round_dp(6).clamp(Decimal::ZERO, Decimal::ONE)
}

fn item(line: Line, total: Decimal, min_trade: Decimal) -> PlanItem {
    let difference = line.target_value - line.current_value;
    let (action, trade_amount) = if line.held && line.target_weight.is_zero() {
        (Action::Sell, -line.current_value)
    } else if difference.is_zero() || difference.abs() < min_trade {
        (Action::Hold, Decimal::ZERO)
    } else if difference.is_sign_positive() {
        (Action::Buy, difference)
    } else {
        (Action::Sell, difference)
    };
    let current_weight = weight_of(line.current_value, total);
    PlanItem {
        symbol: line.symbol,
        current_weight: Weight::new(current_weight),
        target_weight: Weight::new(line.target_weight),
        weight_diff: Weight::new(line.target_weight - current_weight),
        target_value: Usd::new(line.target_value),
        current_value: Usd::new(line.current_value),
        trade_amount: Usd::new(trade_amount),
        action,
        priority: None,
    }
}

fn metadata(targets: &[Target], how: &NewPlan) -> Map<String, Value> {
    let weights: Decimal = targets.iter().map(|t| t.weight).sum();
    let unlisted = if how.keep_unlisted { "keep" } else { "sell" };
    let value = json!({
        "generated_by": concat!("tranche plan new ", env!("CARGO_PKG_VERSION")),
        "targets": how.targets_source,
        "broker": how.broker,
        "min_trade": how.min_trade.normalize().to_string(),
        "unlisted_positions": unlisted,
        "targets_weight_sum": weights.normalize().to_string(),
    });
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests;
