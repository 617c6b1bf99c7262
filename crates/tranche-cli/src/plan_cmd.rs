//! `tranche plan ...`: reading and checking plan files.

use std::path::Path;
use std::process::ExitCode;

use tranche::domain::{Action, PlanError, RebalancePlan, Usd};

use crate::exit;

/// Reads and validates a plan file; on failure prints every problem and returns the exit code.
pub fn read_plan(path: &Path) -> Result<RebalancePlan, ExitCode> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        eprintln!("error: cannot read plan file {}: {e}", path.display());
        exit::code(exit::NO_INPUT)
    })?;
    RebalancePlan::from_json_str(&text).map_err(|error| {
        eprintln!("error: {}: {error}", path.display());
        exit::code(exit::INVALID_PLAN)
    })
}

/// `tranche plan validate PLAN [--json]`.
pub fn validate(path: &Path, json: bool) -> ExitCode {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: cannot read plan file {}: {e}", path.display());
            return exit::code(exit::NO_INPUT);
        }
    };
    match RebalancePlan::from_json_str(&text) {
        Ok(plan) => {
            if json {
                let summary = serde_json::json!({
                    "valid": true,
                    "plan_id": plan.plan_id,
                    "items": plan.items.len(),
                    "buys": count(&plan, Action::Buy),
                    "sells": count(&plan, Action::Sell),
                    "holds": count(&plan, Action::Hold),
                    "buy_notional": total(&plan, Action::Buy),
                    "sell_notional": total(&plan, Action::Sell),
                });
                println!("{summary}");
            } else {
                println!(
                    "{}: valid plan `{}` with {} items ({} buys for ${}, {} sells for ${}, {} holds)",
                    path.display(),
                    plan.plan_id,
                    plan.items.len(),
                    count(&plan, Action::Buy),
                    total(&plan, Action::Buy),
                    count(&plan, Action::Sell),
                    total(&plan, Action::Sell),
                    count(&plan, Action::Hold),
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            if json {
                let problems = match &error {
                    PlanError::Syntax { line, column, message } => {
                        vec![serde_json::json!({"path": format!("line {line}, column {column}"), "message": message})]
                    }
                    PlanError::Invalid(issues) => {
                        issues.0.iter().map(|i| serde_json::json!({"path": i.path, "message": i.message})).collect()
                    }
                };
                println!("{}", serde_json::json!({"valid": false, "problems": problems}));
            } else {
                eprintln!("error: {}: {error}", path.display());
            }
            exit::code(exit::INVALID_PLAN)
        }
    }
}

fn count(plan: &RebalancePlan, action: Action) -> usize {
    plan.items.iter().filter(|i| i.action == action).count()
}

/// The absolute dollar total of one action's items, as text ("overflow" for absurd plans).
fn total(plan: &RebalancePlan, action: Action) -> String {
    plan.items
        .iter()
        .filter(|i| i.action == action)
        .try_fold(Usd::ZERO, |acc, i| acc.checked_add(i.trade_amount.abs()))
        .map_or_else(|| "overflow".to_owned(), |t| t.to_string())
}
