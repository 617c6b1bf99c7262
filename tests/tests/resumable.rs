//! A run that reaches its deadline can be left resumable (`resumable_at_deadline`, what the
//! Lambda function does with the invocation's remaining time): its orders cancelled, its claim
//! given up at once, the plan not completed; the next delivery continues it where it stopped and
//! completes it, trading nothing twice. The same for a run asked to stop (a signal). On the
//! simulator in virtual time, with the S3 ledger.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use tranche::domain::RebalancePlan;
use tranche::engine::{execute_recorded, EngineConfig, Ports, RunError};
use tranche::ledger::{LeaseTerms, Ledger, ObjectLedger, RunStatus};
use tranche::sim::SimConfig;
use tranche::simulation::{account_from_plan, start_sim};
use tranche_tests::example;

/// Ctrl-C (or a service stop) 20 s into the 30-symbol plan: its orders cancelled, the plan
/// left to resume though the CLI's runs are not resumable at their deadline; the same plan run
/// again completes it.
#[tokio::test(start_paused = true)]
async fn a_run_asked_to_stop_is_left_resumable_and_the_next_run_completes_it() {
    let stop_after = |clock: Arc<dyn tranche::broker::Clock>| -> tranche::engine::StopRequest {
        Box::pin(async move {
            clock.sleep_until(clock.now() + chrono::Duration::seconds(20)).await;
            "interrupted by SIGINT".to_owned()
        })
    };
    stopped_then_completed(EngineConfig::default(), Some(stop_after)).await;
}

#[tokio::test(start_paused = true)]
async fn a_run_out_of_time_is_left_resumable_and_the_next_delivery_completes_it() {
    // The first delivery has 20 seconds: the sells are under way, the buys not done.
    let short = EngineConfig {
        run_deadline: Duration::from_secs(20),
        phase_deadline: Duration::from_secs(20),
        resumable_at_deadline: true,
        ..EngineConfig::default()
    };
    stopped_then_completed(short, None).await;
}

/// The 30-symbol plan run with `first` (and stopped by `stop` when given) must be left
/// resumable with its orders cancelled; a second run completes it, trading nothing twice.
async fn stopped_then_completed(
    first: EngineConfig,
    stop: Option<fn(Arc<dyn tranche::broker::Clock>) -> tranche::engine::StopRequest>,
) {
    let plan = RebalancePlan::from_json_str(&std::fs::read_to_string(example("plan-30.json")).unwrap()).unwrap();
    let (broker, clock) = start_sim(account_from_plan(&plan, &SimConfig::default())).unwrap();
    broker.with_sim(|s| s.referee_mut().watch(&plan));
    let store: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let ledger = |name: &str| -> Arc<dyn Ledger> {
        let time = Arc::clone(&clock);
        Arc::new(
            ObjectLedger::new(Arc::clone(&store), "resumable", name)
                .with_lease(LeaseTerms::new(Duration::from_secs(60), Duration::from_secs(5)).unwrap())
                .with_time_source(Arc::new(move || time.now())),
        )
    };
    let ports = || Ports {
        broker: Arc::new(broker.broker()),
        events: Box::new(broker.order_events()),
        quotes: Arc::new(broker.quote_feed()),
        clock: Arc::clone(&clock),
    };
    let first = match stop {
        Some(stop) => {
            let stop = stop(Arc::clone(&clock));
            tranche::engine::execute_recorded_until(plan.clone(), first, ports(), ledger("first"), None, stop).await
        }
        None => execute_recorded(plan.clone(), first, ports(), ledger("first"), None).await,
    };
    let Err(RunError::LeftResumable { result }) = first else {
        panic!("not left resumable: {:?}", first.map(|r| r.status))
    };
    assert!(result.orders.iter().any(|r| !r.reached_target()), "it stopped with work left");
    let runs = ledger("auditor").runs(Some(&plan.plan_id)).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Running, "not completed: resumable");
    let open = broker.with_sim(|s| s.orders().filter(|o| !o.status.is_terminal()).count());
    assert_eq!(open, 0, "its orders were cancelled");

    // The next delivery begins at once (the claim was given up) and completes the plan.
    let second = execute_recorded(plan.clone(), EngineConfig::default(), ports(), ledger("second"), None)
        .await
        .expect("the next delivery continues the run");
    let notes = second.metadata.as_ref().and_then(|m| m.get("notes")).map(ToString::to_string).unwrap_or_default();
    assert!(notes.contains("resumed an interrupted run"), "{notes}");
    let runs = ledger("auditor").runs(Some(&plan.plan_id)).await.unwrap();
    assert_eq!((runs.len(), runs[0].status), (1, RunStatus::Completed), "one run, continued and completed");
    let (orders, fills, referee) = broker
        .with_sim(|s| (s.orders().cloned().collect::<Vec<_>>(), s.fills().to_vec(), s.referee().violations().to_vec()));
    assert!(referee.is_empty(), "{referee:?}");
    let ids: std::collections::BTreeSet<_> = orders.iter().map(|o| o.client_order_id.clone()).collect();
    assert_eq!(ids.len(), orders.len(), "no client order id twice");
    assert!(orders.iter().all(|o| o.status.is_terminal()));
    for row in &second.orders {
        let traded: rust_decimal::Decimal = fills.iter().filter(|f| f.symbol == row.symbol).map(|f| f.qty.get()).sum();
        assert_eq!(traded, row.filled_qty.get(), "{}: the result counts both deliveries' fills", row.symbol);
    }
    assert!(second.orders.iter().filter(|r| r.reached_target()).count() >= 25, "{:#?}", second.orders);
}
