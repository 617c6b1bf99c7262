//! What the function is invoked with: the predecessor's `RebalancePlanned` event as it is, the
//! same inside an EventBridge envelope (`detail`), or an SQS batch of them (one per record; a
//! record's body holds either form).
//!
//! Invariants: parsing never panics; a record that is not a usable `RebalancePlanned` is an
//! error of that record alone (the rest of a batch is still executed); the plan inside goes
//! through the same validation as a plan file (`RebalancePlan::from_value`), and the event's
//! own ids (which every answer carries) through the plan's id rules.

use serde_json::Value;
use tranche::domain::RebalancePlan;

/// One `RebalancePlanned` event: its plan and the ids the answer carries on.
#[derive(Debug, Clone)]
pub struct RebalancePlanned {
    /// The event's id (the answer's causation id).
    pub event_id: String,
    /// The workflow's correlation id.
    pub correlation_id: String,
    /// The plan to execute.
    pub plan: RebalancePlan,
}

/// Why an event cannot be executed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Not JSON, or not an object.
    #[error("the event is not a JSON object: {0}")]
    NotAnObject(String),
    /// Another event type.
    #[error("event type `{0}` is not handled (only RebalancePlanned is)")]
    OtherType(String),
    /// No `rebalance_plan`.
    #[error("the event carries no rebalance_plan")]
    NoPlan,
    /// The plan is not a valid plan.
    #[error("the rebalance_plan is invalid: {0}")]
    BadPlan(String),
    /// An id of the event breaks the id rules (the answers carry it).
    #[error("the event's {field} {problem}")]
    BadId {
        /// Which id.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// One SQS record: its message id (how a partial batch failure names it) and its event.
#[derive(Debug)]
pub struct Record {
    /// The SQS message id.
    pub message_id: String,
    /// The event, or why it cannot be executed.
    pub event: Result<RebalancePlanned, EventError>,
}

/// An invocation.
#[derive(Debug)]
pub enum Invocation {
    /// One event (directly, or from EventBridge).
    One(Box<Result<RebalancePlanned, EventError>>),
    /// An SQS batch.
    Batch(Vec<Record>),
}

/// Reads an invocation's payload.
pub fn parse(payload: &Value) -> Invocation {
    let records = payload.get("Records").and_then(Value::as_array);
    if let Some(records) = records.filter(|r| r.iter().any(|r| r.get("eventSource") == Some(&"aws:sqs".into()))) {
        return Invocation::Batch(
            records
                .iter()
                .map(|record| {
                    let message_id =
                        record.get("messageId").and_then(Value::as_str).unwrap_or("(no message id)").to_owned();
                    let event = match record.get("body").and_then(Value::as_str) {
                        Some(body) => serde_json::from_str::<Value>(body)
                            .map_err(|e| EventError::NotAnObject(e.to_string()))
                            .and_then(|v| event(&v)),
                        None => Err(EventError::NotAnObject("the SQS record has no body".into())),
                    };
                    Record { message_id, event }
                })
                .collect(),
        );
    }
    Invocation::One(Box::new(event(payload)))
}

/// One event, directly or inside an EventBridge envelope.
fn event(value: &Value) -> Result<RebalancePlanned, EventError> {
    if !value.is_object() {
        return Err(EventError::NotAnObject(format!("found {}", kind(value))));
    }
    let inner = match (value.get("detail-type"), value.get("detail")) {
        (Some(_), Some(detail)) if detail.is_object() => detail,
        _ => value,
    };
    match inner.get("event_type") {
        Some(Value::String(kind)) if kind != "RebalancePlanned" => {
            return Err(EventError::OtherType(tranche::broker::printable(kind, 64)));
        }
        Some(Value::String(_)) | None => {}
        Some(other) => return Err(EventError::OtherType(tranche::broker::printable(&other.to_string(), 64))),
    }
    let plan = inner.get("rebalance_plan").ok_or(EventError::NoPlan)?;
    let plan = RebalancePlan::from_value(plan).map_err(|e| EventError::BadPlan(e.to_string()))?;
    let text = |name: &str| inner.get(name).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    // The envelope's id stands in for an event id the detail does not carry.
    let event_id = text("event_id")
        .or_else(|| value.get("id").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| format!("rebalance-planned-{}", plan.plan_id));
    let correlation_id = text("correlation_id").unwrap_or_else(|| plan.correlation_id.clone());
    // Held to the plan's id rules: every answer carries them, whatever else it cuts.
    for (field, id) in [("event_id", &event_id), ("correlation_id", &correlation_id)] {
        if let Some(problem) = tranche::domain::plan::id_problem(id) {
            return Err(EventError::BadId { field, problem });
        }
    }
    Ok(RebalancePlanned { event_id, correlation_id, plan })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn plan() -> Value {
        serde_json::json!({
            "plan_id": "plan-1", "correlation_id": "corr-plan", "causation_id": "cause",
            "timestamp": "2026-03-02T14:00:00Z", "total_portfolio_value": "10000",
            "total_trade_value": "1000",
            "items": [{"symbol": "AAPL", "current_weight": "0", "target_weight": "0.1",
                       "current_value": "0", "target_value": "1000", "trade_amount": "1000",
                       "action": "BUY", "priority": 1}]
        })
    }

    fn planned() -> Value {
        serde_json::json!({
            "event_type": "RebalancePlanned", "event_id": "evt-1", "correlation_id": "corr-1",
            "causation_id": "signal-1", "schema_version": "1.0", "rebalance_plan": plan(),
        })
    }

    #[test]
    fn the_predecessors_event_as_it_is() {
        let Invocation::One(one) = parse(&planned()) else { panic!("not one event") };
        let event = one.unwrap();
        assert_eq!((event.event_id.as_str(), event.correlation_id.as_str()), ("evt-1", "corr-1"));
        assert_eq!(event.plan.plan_id, "plan-1");
    }

    #[test]
    fn inside_an_eventbridge_envelope() {
        let envelope = serde_json::json!({
            "version": "0", "id": "eb-1", "detail-type": "RebalancePlanned", "source": "portfolio",
            "detail": planned(),
        });
        let Invocation::One(one) = parse(&envelope) else { panic!("not one event") };
        let event = one.unwrap();
        assert_eq!(event.event_id, "evt-1");
        let mut bare = planned();
        bare.as_object_mut().unwrap().remove("event_id");
        let envelope = serde_json::json!({"id": "eb-2", "detail-type": "RebalancePlanned", "detail": bare});
        let Invocation::One(one) = parse(&envelope) else { panic!("not one event") };
        let event = one.unwrap();
        assert_eq!(event.event_id, "eb-2", "the envelope's id stands in");
    }

    #[test]
    fn an_sqs_batch_keeps_each_records_own_outcome() {
        let batch = serde_json::json!({"Records": [
            {"messageId": "m1", "eventSource": "aws:sqs", "body": planned().to_string()},
            {"messageId": "m2", "eventSource": "aws:sqs", "body": "{not json"},
            {"messageId": "m3", "eventSource": "aws:sqs",
             "body": serde_json::json!({"detail-type": "X", "detail": planned()}).to_string()},
        ]});
        let Invocation::Batch(records) = parse(&batch) else { panic!("not a batch") };
        let ids: Vec<_> = records.iter().map(|r| (r.message_id.as_str(), r.event.is_ok())).collect();
        assert_eq!(ids, vec![("m1", true), ("m2", false), ("m3", true)]);
    }

    /// The event's own ids are held to the plan's id rules (at most 256 characters, no control
    /// characters): the answers carry them, whatever else is cut, and a 300 KB event id made an
    /// answer past the 256 KB its consumers take. An event type that is not a string is no
    /// `RebalancePlanned`.
    #[test]
    fn event_ids_past_the_id_rules_or_an_event_type_of_another_kind_are_refused() {
        for (field, value) in [
            ("event_id", Value::String("e".repeat(300_000))),
            ("correlation_id", Value::String("corr\u{1b}]52;c;AAAA\u{7}".into())),
            ("event_type", Value::from(42)),
        ] {
            let mut event = planned();
            event[field] = value;
            let Invocation::One(one) = parse(&event) else { panic!("not one event") };
            let refused = one.expect_err(field);
            let said = refused.to_string();
            assert!(said.contains(field) || said.contains("42"), "{field}: {said}");
            assert!(said.len() < 1_000, "{field}: the refusal does not echo the value whole");
        }
        let envelope = serde_json::json!({"id": "i".repeat(300), "detail-type": "RebalancePlanned", "detail": {
            "event_type": "RebalancePlanned", "rebalance_plan": plan()}});
        let Invocation::One(one) = parse(&envelope) else { panic!("not one event") };
        assert!(one.is_err(), "an envelope id standing in for the event id is held to the same rules");
    }

    #[test]
    fn what_cannot_be_executed_says_why() {
        let mut other = planned();
        other["event_type"] = "TradeExecuted".into();
        assert!(matches!(parse(&other), Invocation::One(e) if matches!(*e, Err(EventError::OtherType(_)))));
        let mut no_plan = planned();
        no_plan.as_object_mut().unwrap().remove("rebalance_plan");
        assert!(matches!(parse(&no_plan), Invocation::One(e) if matches!(*e, Err(EventError::NoPlan))));
        let mut bad = planned();
        bad["rebalance_plan"]["items"][0]["action"] = "SHORT".into();
        assert!(matches!(parse(&bad), Invocation::One(e) if matches!(*e, Err(EventError::BadPlan(_)))));
        assert!(
            matches!(parse(&Value::String("x".into())), Invocation::One(e) if matches!(*e, Err(EventError::NotAnObject(_))))
        );
    }
}
