//! Builders shared by the ledger's integration tests (SQLite and object store).

use tranche_domain::{ClientOrderId, OrderType, RebalancePlan, Side, Symbol};
use tranche_ledger::{BeginOutcome, FillRecord, RunHandle};

/// A one-item plan (buy $100 of AAPL) with `id` and the given plan metadata.
pub fn plan_with(id: &str, metadata: &serde_json::Value) -> RebalancePlan {
    RebalancePlan::from_value(&serde_json::json!({
        "plan_id": id, "correlation_id": "corr", "causation_id": "x", "timestamp": "2026-03-02T15:00:00Z",
        "total_portfolio_value": "1000", "metadata": metadata,
        "items": [{"symbol": "AAPL", "action": "BUY", "trade_amount": "100", "current_value": "0",
                   "current_weight": "0", "target_weight": "0.1", "target_value": "100"}]
    }))
    .expect("the test plan is valid")
}

/// The run of a `begin` that must have started one.
pub fn started(outcome: BeginOutcome) -> RunHandle {
    match outcome {
        BeginOutcome::Started(run) => run,
        other => panic!("expected a started run, got {other:?}"),
    }
}

/// Fill number `n` of the run: half a share of AAPL at 228.10, `n` seconds after 15:00 UTC.
pub fn fill(run: &RunHandle, n: u32) -> FillRecord {
    FillRecord {
        execution_id: format!("exec-{n}"),
        plan_id: run.plan_id.clone(),
        run_id: run.run_id.clone(),
        client_order_id: ClientOrderId::from_broker("tr-pa-AAPL-b0"),
        broker_order_id: "order-1".into(),
        symbol: Symbol::parse("AAPL").expect("valid symbol"),
        side: Side::Buy,
        qty: "0.5".parse().expect("valid qty"),
        price: "228.10".parse().expect("valid price"),
        bid: Some("228.09".parse().expect("valid bid")),
        ask: Some("228.11".parse().expect("valid ask")),
        order_type: Some(OrderType::Limit),
        strategy_attribution: None,
        filled_at: chrono::DateTime::from_timestamp(1_772_463_600 + i64::from(n), 0).expect("valid time"),
    }
}

/// The finished-item record of item `index` with `outcome`.
pub fn item(run: &RunHandle, index: u32, outcome: tranche_domain::ItemOutcome) -> tranche_ledger::ItemRecord {
    tranche_ledger::ItemRecord {
        plan_id: run.plan_id.clone(),
        run_id: run.run_id.clone(),
        item_index: index,
        symbol: Symbol::parse("AAPL").expect("valid symbol"),
        outcome,
        reason: (outcome != tranche_domain::ItemOutcome::Filled).then(|| "phase deadline reached".to_owned()),
        recorded_at: chrono::DateTime::from_timestamp(1_772_463_600, 0).expect("valid time"),
    }
}

/// Finished items: the latest record of an item wins, they come back by index, and a finished
/// run records nothing more.
#[allow(dead_code)]
pub async fn items_are_recorded_latest_first_by_index(ledger: &dyn tranche_ledger::Ledger, run: &RunHandle) {
    use tranche_domain::ItemOutcome::{Filled, PartiallyFilled, Unfilled};
    ledger.record_item(run, &item(run, 1, Unfilled)).await.expect("recorded");
    ledger.record_item(run, &item(run, 0, Filled)).await.expect("recorded");
    ledger.record_item(run, &item(run, 1, PartiallyFilled)).await.expect("recorded");
    let items = ledger.items(&run.plan_id).await.expect("read");
    assert_eq!(items, vec![item(run, 0, Filled), item(run, 1, PartiallyFilled)]);
    assert!(ledger.items("another-plan").await.expect("read").is_empty());
}
