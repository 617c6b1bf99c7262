//! The function's handler end to end, in process, against the Alpaca emulator and the S3 test
//! server (moto), in real time: one `RebalancePlanned` executes the plan and answers
//! `TradeExecuted`; the same event twice at once trades once (client order ids unique); the same
//! event after completion answers the recorded result and sends nothing; an invocation with too
//! little time left leaves the plan resumable and the next one completes it; an SQS batch
//! answers the partial batch failures Lambda expects. (Through Lambda's runtime API with
//! cargo-lambda is the next step.) Under `CI=true` a missing moto is a failure, not a skip.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tranche::alpaca::{AlpacaConfig, Secret};
use tranche::domain::RebalancePlan;
use tranche::emulator::{Emulator, EmulatorConfig, DEFAULT_KEY_ID, DEFAULT_SECRET_KEY};
use tranche::engine::EngineConfig;
use tranche::ledger::{LeaseTerms, LedgerSpec};
use tranche::sim::SimConfig;
use tranche_lambda::handler::Function;
use tranche_tests::{example, Moto};

const BUCKET: &str = "tranche-lambda";

fn planned(plan: &RebalancePlan, event_id: &str) -> Value {
    let text = std::fs::read_to_string(example("plan.json")).unwrap();
    let mut raw: Value = serde_json::from_str(&text).unwrap();
    raw["plan_id"] = plan.plan_id.clone().into();
    json!({
        "event_type": "RebalancePlanned", "event_id": event_id, "correlation_id": "corr-lambda",
        "causation_id": "signals-1", "schema_version": "1.0", "rebalance_plan": raw,
    })
}

async fn emulator(plan: &RebalancePlan) -> Emulator {
    let sim = tranche::simulation::account_from_plan(plan, &SimConfig::default());
    let config = EmulatorConfig {
        sim,
        requests_per_minute: 0,
        data_requests_per_minute: 0,
        // The session around the wall clock, which the function's engine reads too.
        ..EmulatorConfig::default()
    };
    Emulator::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap()
}

fn function(emulator: &Emulator, prefix: &str, margin: Duration) -> Function {
    let mut alpaca = AlpacaConfig::new(DEFAULT_KEY_ID, Secret::new(DEFAULT_SECRET_KEY));
    alpaca.trading_url = emulator.url();
    alpaca.data_url = emulator.url();
    let engine = EngineConfig {
        repeg_interval: Duration::from_secs(1),
        phase_deadline: Duration::from_secs(90),
        run_deadline: Duration::from_secs(120),
        settle_deadline: Duration::from_secs(3),
        ..EngineConfig::default()
    };
    let lease = LeaseTerms::new(Duration::from_secs(6), Duration::from_secs(1)).unwrap();
    let ledger: LedgerSpec = format!("s3://{BUCKET}/{prefix}").parse().unwrap();
    Function::new(ledger, lease, alpaca, engine, margin).unwrap()
}

fn in_seconds(s: u64) -> SystemTime {
    SystemTime::now() + Duration::from_secs(s)
}

fn client_ids(emulator: &Emulator) -> Vec<String> {
    emulator.with_sim(|s| s.orders().map(|o| o.client_order_id.to_string()).collect())
}

/// One moto for the whole file: the S3 client reads its address from the process's environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_end_to_end() {
    let Some(moto) = Moto::require(BUCKET) else { return };
    for (name, value) in moto.env() {
        std::env::set_var(name, value);
    }
    Box::pin(once_however_delivered()).await;
    Box::pin(short_of_time()).await;
}

/// One event trades once however often and concurrently it is delivered.
async fn once_however_delivered() {
    let plan = RebalancePlan::from_json_str(&std::fs::read_to_string(example("plan.json")).unwrap()).unwrap();
    let emulator = emulator(&plan).await;
    let function = function(&emulator, "once", Duration::from_secs(5));
    let event = planned(&plan, "evt-1");

    // Delivered twice at the same moment: one trades, the other is reported and asked to be
    // delivered again (a function error, on which Lambda retries an asynchronous invocation).
    let (a, b) = tokio::join!(function.answer(&event, in_seconds(300)), function.answer(&event, in_seconds(300)));
    let (done, other) = if a.payload["metadata"]["disposition"] == "executed" { (&a, &b) } else { (&b, &a) };
    assert_eq!(done.payload["metadata"]["disposition"], "executed", "one delivery traded:\n{a:#?}\n{b:#?}");
    assert!(!done.deliver_again);
    assert_eq!(other.payload["metadata"]["disposition"], "not_executed", "{other:#?}");
    assert!(other.deliver_again, "the other is delivered again, to find the plan completed");
    let answer = &done.payload;
    assert_eq!(answer["event_type"], "TradeExecuted");
    assert_eq!(answer["success"], true, "{answer:#}");
    assert_eq!(
        (answer["correlation_id"].as_str(), answer["causation_id"].as_str()),
        (Some("corr-lambda"), Some("evt-1"))
    );
    assert!(answer["orders_placed"].as_u64().unwrap() >= 4, "{answer:#}");
    let ids = client_ids(&emulator);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len(), "client order ids unique");
    assert!(emulator.with_sim(|s| s.orders().all(|o| o.status.is_terminal())), "every order final");

    // Delivered again after completion: the recorded result, nothing sent.
    let before = client_ids(&emulator).len();
    let again = function.answer(&event, in_seconds(300)).await;
    assert!(!again.deliver_again);
    let again = again.payload;
    assert_eq!(again["metadata"]["disposition"], "replayed", "{again:#}");
    assert_eq!(again["event_id"], answer["event_id"], "the same event, for a consumer that deduplicates");
    assert_eq!(again["orders_placed"], answer["orders_placed"]);
    assert_eq!(client_ids(&emulator).len(), before, "nothing sent for a completed plan");

    // An SQS batch of the same event and a broken one: the broken one is not worth redelivering.
    let batch = json!({"Records": [
        {"messageId": "m1", "eventSource": "aws:sqs", "body": event.to_string()},
        {"messageId": "m2", "eventSource": "aws:sqs", "body": "{\"event_type\": \"RebalancePlanned\"}"},
    ]});
    assert_eq!(function.invoke(&batch, in_seconds(300)).await, json!({"batchItemFailures": []}));
}

/// An invocation short of time leaves the plan resumable and the next one completes it.
async fn short_of_time() {
    let plan = RebalancePlan::from_json_str(&std::fs::read_to_string(example("plan-30.json")).unwrap()).unwrap();
    let emulator = emulator(&plan).await;
    let function = function(&emulator, "resumable", Duration::ZERO).with_least_run(Duration::ZERO);
    let text = std::fs::read_to_string(example("plan-30.json")).unwrap();
    let event = json!({
        "event_type": "RebalancePlanned", "event_id": "evt-30", "correlation_id": "corr-30",
        "rebalance_plan": serde_json::from_str::<Value>(&text).unwrap(),
    });

    // Half a second: the run stops with the 30-symbol plan unfinished.
    let first = function.answer(&event, SystemTime::now() + Duration::from_millis(500)).await;
    assert!(first.deliver_again, "a plan left resumable is delivered again");
    let first = first.payload;
    assert_eq!(first["metadata"]["disposition"], "resumable", "{first:#}");
    assert_eq!(first["success"], false);
    assert!(emulator.with_sim(|s| s.orders().all(|o| o.status.is_terminal())), "its orders were cancelled");

    // The next delivery continues at once and completes it.
    let second = function.invoke(&event, in_seconds(300)).await;
    assert_eq!(second["metadata"]["disposition"], "executed", "{second:#}");
    let notes = second["metadata"]["notes"].to_string();
    assert!(notes.contains("resumed an interrupted run"), "{notes}");
    let ids = client_ids(&emulator);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len(), "client order ids unique");
}
