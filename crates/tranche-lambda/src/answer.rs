//! What the function answers: a `TradeExecuted`-compatible payload (the predecessor's fields:
//! `schema_version`, `success`, `orders_placed`, `orders_succeeded`, `failed_symbols`,
//! `failure_reason`, `execution_data`, and the event ids) that a Lambda destination or a Step
//! Functions state can route; for an SQS batch, the partial batch failures Lambda expects.
//!
//! Invariants: the answer's `event_id` is derived from the plan id and the outcome (executed,
//! whether now or replayed from the ledger; resumable; not executed), so a redelivered event is
//! answered with the same id (a consumer can deduplicate); `success` is
//! true only when every item reached its target (a partial execution is a failure, the
//! predecessor's default); credentials never appear (nothing here sees them).

use serde_json::{json, Value};
use tranche::domain::{ExecutionResult, ExecutionStatus, ItemOutcome};

use crate::event::RebalancePlanned;

/// The schema version of the answers.
pub const SCHEMA_VERSION: &str = "1.0";

/// How a run came out, besides its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Executed now (completed).
    Executed,
    /// The plan was completed earlier: its recorded result, nothing sent.
    Replayed,
    /// Stopped at the invocation's deadline: the plan is left resumable, the next delivery
    /// continues it.
    Resumable,
}

/// The largest answer sent whole: EventBridge, Step Functions and Lambda's asynchronous
/// destinations take at most 256 KB, and a 500-item plan's rows alone are about 350 KB.
pub const ANSWER_LIMIT: usize = 240_000;

/// The `TradeExecuted` answer to `event` for `result`, within `ANSWER_LIMIT`: past it,
/// `execution_data.orders` keeps only the rows that did not reach their target (all of them
/// should those still not fit), and says how many it left out and where the whole result is.
pub fn trade_executed(event: &RebalancePlanned, result: &ExecutionResult, disposition: Disposition) -> Value {
    let mut answer = whole_answer(event, result, disposition);
    if sent_size(&answer, disposition) <= ANSWER_LIMIT {
        return answer;
    }
    let short: Vec<&tranche::domain::ItemResult> =
        result.orders.iter().filter(|row| !row.reached_target() && row.outcome.was_attempted()).collect();
    let mut kept = serde_json::to_value(&short).unwrap_or(Value::Array(Vec::new()));
    answer["execution_data"]["orders"] = kept.clone();
    if sent_size(&answer, disposition) > ANSWER_LIMIT {
        kept = Value::Array(Vec::new());
    }
    let omitted = result.orders.len() - kept.as_array().map_or(0, Vec::len);
    answer["execution_data"]["orders"] = kept;
    answer["execution_data"]["orders_omitted"] = omitted.into();
    answer["execution_data"]["full_result"] =
        format!("every row is in the ledger: tranche ledger runs --plan {} --json", result.plan_id).into();
    answer
}

/// The bytes `answer` takes where it is sent: as it is, or, for a run left resumable (delivered
/// again), as the message of a function error, a JSON string inside JSON whose quotes and
/// backslashes are escaped (a sixth larger for result rows).
fn sent_size(answer: &Value, disposition: Disposition) -> usize {
    let text = answer.to_string();
    if disposition == Disposition::Resumable {
        serde_json::to_string(&text).map_or(usize::MAX, |quoted| quoted.len())
    } else {
        text.len()
    }
}

/// The answer with every row.
fn whole_answer(event: &RebalancePlanned, result: &ExecutionResult, disposition: Disposition) -> Value {
    let success = result.status == ExecutionStatus::Success && disposition != Disposition::Resumable;
    let failed: Vec<&str> = result
        .orders
        .iter()
        .filter(|row| !matches!(row.outcome, ItemOutcome::Filled | ItemOutcome::Held | ItemOutcome::Skipped))
        .map(|row| row.symbol.as_str())
        .collect();
    let failure_reason = (!success).then(|| failure_reason(result, &failed, disposition));
    let state = match disposition {
        Disposition::Executed => "executed",
        Disposition::Replayed => "replayed",
        Disposition::Resumable => "resumable",
    };
    // A replay answers the completed run's result again: the same event, under the same id.
    let outcome = if disposition == Disposition::Resumable { "resumable" } else { "executed" };
    json!({
        "schema_version": SCHEMA_VERSION,
        "event_type": "TradeExecuted",
        "event_id": format!("trade-executed-{}-{outcome}", result.plan_id),
        "correlation_id": event.correlation_id,
        "causation_id": event.event_id,
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "source_module": "tranche-lambda",
        "success": success,
        "orders_placed": result.orders_placed,
        "orders_succeeded": result.orders_succeeded,
        "failed_symbols": failed,
        "failure_reason": failure_reason,
        "execution_data": {
            "plan_id": result.plan_id,
            "orders_placed": result.orders_placed,
            "orders_succeeded": result.orders_succeeded,
            "total_trade_value": result.total_trade_value.to_string(),
            "execution_timestamp": result.execution_timestamp.to_rfc3339(),
            "success": result.success,
            "status": result.status,
            "orders": result.orders,
        },
        "metadata": {
            "source": "tranche-lambda",
            "disposition": state,
            "resumable": disposition == Disposition::Resumable,
            "notes": result.metadata.as_ref().and_then(|m| m.get("notes")).cloned().unwrap_or(Value::Null),
        },
    })
}

/// The predecessor's wording, plus what only Tranche can say (a resumable plan).
fn failure_reason(result: &ExecutionResult, failed: &[&str], disposition: Disposition) -> String {
    if disposition == Disposition::Resumable {
        return format!(
            "The invocation ran out of time: {}/{} orders succeeded so far; the plan is left resumable and its next delivery continues it",
            result.orders_succeeded, result.orders_placed
        );
    }
    match result.status {
        ExecutionStatus::PartialSuccess => format!(
            "Trade execution partially failed: {}/{} orders succeeded. Failed symbols: {}",
            result.orders_succeeded,
            result.orders_placed,
            failed.join(", ")
        ),
        _ if result.orders_placed == 0 => "Trade execution failed: No orders were placed".to_owned(),
        _ => format!("Trade execution failed: {}/{} orders succeeded", result.orders_succeeded, result.orders_placed),
    }
}

/// An answer for an event that could not be executed at all (refused, running elsewhere, or the
/// ledger or broker unusable): `success` false, the reason, nothing placed.
pub fn not_executed(event: Option<&RebalancePlanned>, reason: &str, retry: bool) -> Value {
    let reason = shortened(reason, REASON_LIMIT);
    json!({
        "schema_version": SCHEMA_VERSION,
        "event_type": "TradeExecuted",
        "event_id": format!("trade-executed-{}-not-executed", event.map_or("unknown", |e| e.plan.plan_id.as_str())),
        "correlation_id": event.map(|e| e.correlation_id.clone()),
        "causation_id": event.map(|e| e.event_id.clone()),
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "source_module": "tranche-lambda",
        "success": false,
        "orders_placed": 0,
        "orders_succeeded": 0,
        "failed_symbols": [],
        "failure_reason": reason,
        "execution_data": Value::Null,
        "metadata": {"source": "tranche-lambda", "disposition": "not_executed", "retry_later": retry},
    })
}

/// The longest `failure_reason` of an answer that executed nothing, in bytes: a plan with
/// thousands of problems lists them all in its reason, and the answer must stay within
/// `ANSWER_LIMIT` (EventBridge and Step Functions refuse more than 256 KB).
const REASON_LIMIT: usize = 16_000;

/// `reason` cut to at most `limit` bytes on a character boundary, saying how much was left out.
fn shortened(reason: &str, limit: usize) -> String {
    if reason.len() <= limit {
        return reason.to_owned();
    }
    let mut end = limit;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}... ({} more bytes left out; `tranche plan validate` lists every problem)",
        &reason[..end],
        reason.len() - end
    )
}

/// The answer to an SQS batch: the records to deliver again (Lambda's partial batch response).
pub fn batch_failures(message_ids: &[String]) -> Value {
    json!({
        "batchItemFailures": message_ids.iter().map(|id| json!({"itemIdentifier": id})).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A plan refused for thousands of problems: the answer stays within `ANSWER_LIMIT`, its
    /// reason starts as the problems do and says that the rest was left out.
    #[test]
    fn an_answer_that_executed_nothing_stays_within_the_limit() {
        let reason =
            format!("the plan has problems:{}", "\n  - items[12345].trade_amount: must be négative".repeat(20_000));
        let answer = not_executed(None, &reason, false);
        assert!(answer.to_string().len() <= ANSWER_LIMIT, "{} bytes", answer.to_string().len());
        let kept = answer["failure_reason"].as_str().unwrap();
        assert!(kept.starts_with("the plan has problems:\n  - items[12345]"), "{}", &kept[..80]);
        assert!(kept.ends_with("bytes left out; `tranche plan validate` lists every problem)"), "{kept}");
        assert_eq!(not_executed(None, "short", true)["failure_reason"], "short");
    }
    use tranche::domain::RebalancePlan;

    fn event() -> RebalancePlanned {
        let plan = RebalancePlan::from_json_str(include_str!("../../../examples/plan.json")).unwrap();
        RebalancePlanned { event_id: "evt-9".into(), correlation_id: "corr-9".into(), plan }
    }

    fn result(status: ExecutionStatus) -> ExecutionResult {
        let mut r = ExecutionResult::from_items("p", "c", Vec::new(), chrono::Utc::now(), None);
        r.status = status;
        r.orders_placed = 4;
        r.orders_succeeded = if status == ExecutionStatus::Success { 4 } else { 3 };
        r
    }

    #[test]
    fn a_completed_plan_answers_success_with_the_event_ids() {
        let answer = trade_executed(&event(), &result(ExecutionStatus::Success), Disposition::Executed);
        assert_eq!(answer["success"], true);
        assert_eq!(
            (answer["correlation_id"].as_str(), answer["causation_id"].as_str()),
            (Some("corr-9"), Some("evt-9"))
        );
        assert_eq!(answer["failure_reason"], Value::Null);
        assert_eq!(answer["event_id"], "trade-executed-p-executed", "a redelivery answers the same id");
        let replayed = trade_executed(&event(), &result(ExecutionStatus::Success), Disposition::Replayed);
        assert_eq!(replayed["event_id"], answer["event_id"], "a replay is the same event");
        assert_eq!(replayed["metadata"]["disposition"], "replayed");
    }

    #[test]
    fn partial_and_resumable_runs_are_failures_that_say_why() {
        let partial = trade_executed(&event(), &result(ExecutionStatus::PartialSuccess), Disposition::Executed);
        assert_eq!(partial["success"], false);
        assert!(partial["failure_reason"].as_str().unwrap().starts_with("Trade execution partially failed: 3/4"));
        let resumable = trade_executed(&event(), &result(ExecutionStatus::Success), Disposition::Resumable);
        assert_eq!(resumable["success"], false);
        assert_eq!(resumable["metadata"]["resumable"], true);
        assert!(resumable["failure_reason"].as_str().unwrap().contains("left resumable"));
    }

    /// A 500-item plan's answer fits the 256 KB that EventBridge and Step Functions take: the
    /// rows that reached their target are left out, counted, and the ledger named.
    #[test]
    fn a_large_plans_answer_keeps_the_rows_that_fell_short_within_the_limit() {
        let plan = RebalancePlan::from_json_str(include_str!("../../../examples/plan-500.json")).unwrap();
        let row = |i: usize, item: &tranche::domain::PlanItem| {
            let mut row: tranche::domain::ItemResult = serde_json::from_value(json!({
                "symbol": item.symbol, "action": "BUY", "trade_amount": "1000.00", "shares": "3.5", "price": "285.71",
                "order_id": "00000001-0000-4000-8000-000000000016", "success": true, "error_message": null,
                "timestamp": "2026-03-02T14:46:01Z", "order_type": "limit", "filled_at": "2026-03-02T14:46:02.332Z",
                "outcome": "filled", "requested_qty": "3.5", "filled_qty": "3.5", "requested_notional": "1000.00",
                "filled_notional": "1000.00", "avg_fill_price": "285.71", "arrival_mid": "285.70",
                "slippage_bps": "0.35", "orders": 1, "repegs": 0, "reason": null
            }))
            .unwrap();
            if i % 100 == 7 {
                row.outcome = ItemOutcome::PartiallyFilled;
                row.filled_qty = serde_json::from_value(json!("1")).unwrap();
                row.reason = Some("the run's deadline came".into());
            }
            row
        };
        let rows: Vec<_> = plan.items.iter().enumerate().map(|(i, item)| row(i, item)).collect();
        let n = rows.len();
        let small = ExecutionResult::from_items(&plan.plan_id, "c", rows[..3].to_vec(), chrono::Utc::now(), None);
        let result = ExecutionResult::from_items(&plan.plan_id, "c", rows, chrono::Utc::now(), None);
        let answer = trade_executed(&event(), &result, Disposition::Executed);
        assert!(answer.to_string().len() <= ANSWER_LIMIT, "{} bytes", answer.to_string().len());
        let kept = answer["execution_data"]["orders"].as_array().unwrap();
        assert_eq!(kept.len(), 5, "the rows that fell short");
        assert!(kept.iter().all(|r| r["outcome"] == "partially_filled"));
        assert_eq!(answer["execution_data"]["orders_omitted"], n - 5);
        assert!(answer["execution_data"]["full_result"].as_str().unwrap().contains(&plan.plan_id));
        assert_eq!(answer["orders_placed"], result.orders_placed, "the counts stay whole");
        assert_eq!(answer["failed_symbols"].as_array().unwrap().len(), 5);
        // A small plan's answer is whole.
        let small = trade_executed(&event(), &small, Disposition::Executed);
        assert_eq!(small["execution_data"]["orders"].as_array().unwrap().len(), 3);
        assert!(small["execution_data"].get("orders_omitted").is_none());
    }

    /// A large plan left resumable is delivered again with its answer as the message of a
    /// function error: escaped there, the answer must still fit. 360 rows short of their target
    /// fit as plain JSON, and not as the message.
    #[test]
    fn a_resumable_answer_fits_the_limit_as_the_message_of_a_function_error() {
        let plan = RebalancePlan::from_json_str(include_str!("../../../examples/plan-500.json")).unwrap();
        let row: tranche::domain::ItemResult = serde_json::from_value(json!({
            "symbol": "AAPL", "action": "BUY", "trade_amount": "285.71", "shares": "3.5", "price": "285.71",
            "order_id": "00000001-0000-4000-8000-000000000016", "success": false,
            "error_message": "run deadline reached; its cancel was not confirmed in time",
            "timestamp": "2026-03-02T14:46:01Z", "order_type": "limit", "filled_at": "2026-03-02T14:46:02.332Z",
            "outcome": "partially_filled", "requested_qty": "3.5", "filled_qty": "1", "requested_notional": "1000.00",
            "filled_notional": "285.71", "avg_fill_price": "285.71", "arrival_mid": "285.70",
            "slippage_bps": "0.35", "orders": 1, "repegs": 0, "reason": "run deadline reached; its cancel was not confirmed in time"
        }))
        .unwrap();
        let rows: Vec<_> = plan
            .items
            .iter()
            .take(360)
            .map(|item| tranche::domain::ItemResult { symbol: item.symbol.clone(), ..row.clone() })
            .collect();
        let result = ExecutionResult::from_items(&plan.plan_id, "c", rows, chrono::Utc::now(), None);
        let whole = whole_answer(&event(), &result, Disposition::Resumable).to_string();
        let escaped = serde_json::to_string(&whole).unwrap().len();
        assert!(whole.len() <= ANSWER_LIMIT && escaped > ANSWER_LIMIT, "{} and {escaped} bytes", whole.len());
        let answer = trade_executed(&event(), &result, Disposition::Resumable);
        let as_message = serde_json::to_string(&answer.to_string()).unwrap().len();
        assert!(as_message <= ANSWER_LIMIT, "{as_message} bytes as a function error's message");
        assert_eq!(answer["orders_placed"], result.orders_placed, "the counts stay whole");
    }

    #[test]
    fn a_batch_names_the_records_to_deliver_again() {
        let answer = batch_failures(&["m2".to_owned()]);
        assert_eq!(answer, json!({"batchItemFailures": [{"itemIdentifier": "m2"}]}));
    }
}
