//! What the benches of this crate share: the 100-symbol plan and where results are written.

// Each bench uses part of this module.
#![allow(dead_code)]

use tranche::domain::RebalancePlan;

/// Symbols in the bench plan.
pub const SYMBOLS: usize = 100;

/// A plan of 100 symbols: half sold down from 1.5 % to 1 %, half bought up from 0.5 % to 1 %.
pub fn plan_100() -> RebalancePlan {
    let items: Vec<serde_json::Value> = (0..SYMBOLS)
        .map(|i| {
            let buy = i % 2 == 0;
            let (current_weight, current_value, weight_diff, trade_amount, action) = if buy {
                ("0.005", "5000.00", "0.005", "5000.00", "BUY")
            } else {
                ("0.015", "15000.00", "-0.005", "-5000.00", "SELL")
            };
            serde_json::json!({
                "symbol": format!("S{i}"),
                "current_weight": current_weight,
                "target_weight": "0.01",
                "weight_diff": weight_diff,
                "target_value": "10000.00",
                "current_value": current_value,
                "trade_amount": trade_amount,
                "action": action,
                "priority": i % 5 + 1,
            })
        })
        .collect();
    let plan = serde_json::json!({
        "schema_version": "1.0",
        "correlation_id": "bench",
        "causation_id": "bench",
        "timestamp": "2026-03-03T14:30:00Z",
        "plan_id": "bench-100-symbols",
        "total_portfolio_value": "1000000.00",
        "max_drift_tolerance": "0.05",
        "execution_urgency": "NORMAL",
        "estimated_duration_minutes": 15,
        "items": items,
    });
    RebalancePlan::from_json_str(&plan.to_string()).expect("the bench plan is valid")
}

/// Writes `report` to `<target>/bench-results/<name>.json` for `cargo xtask bench`; a failure is
/// a warning (the printed figures stand).
pub fn write_results(name: &str, report: &serde_json::Value) {
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(
        |_| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        std::path::PathBuf::from,
    );
    let dir = target.join("bench-results");
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::write(dir.join(format!("{name}.json")), serde_json::to_vec_pretty(report).unwrap_or_default())
    }) {
        eprintln!("warning: cannot write {}: {e}", dir.display());
    }
}
