//! The object-store ledger: on an in-memory store, and on a real S3-compatible server (moto) on
//! loopback, started by the test itself. Under `CI=true` the S3 tests must run: a missing
//! server is a failure there, not a skip.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::ObjectStore;
use support::{fill, plan_with, started};
use tranche_domain::{ExecutionResult, RebalancePlan};
use tranche_ledger::{s3_store, BeginOutcome, FillOutcome, Ledger, ObjectLedger, S3Settings};

fn make_plan(id: &str) -> RebalancePlan {
    plan_with(id, &serde_json::json!({}))
}

/// The backend-independent behaviour, run against any store.
async fn suite(store: Arc<dyn ObjectStore>, prefix: &str) {
    let worker_a = ObjectLedger::new(Arc::clone(&store), prefix, "worker-a");
    let worker_b = ObjectLedger::new(Arc::clone(&store), prefix, "worker-b");
    let plan = make_plan("plan-object-1");

    // One worker per plan.
    let run = started(worker_a.begin(&plan).await.unwrap());
    assert!(!run.resumed);
    assert_eq!(worker_b.begin(&plan).await.unwrap(), BeginOutcome::AlreadyRunning { run_id: run.run_id.clone() });
    assert!(worker_a.prove_claim(&run).await.unwrap().valid_for.is_some());
    support::items_are_recorded_latest_first_by_index(&worker_a, &run).await;

    // Fills once, duplicates counted.
    assert_eq!(worker_a.record_fill(&run, &fill(&run, 1)).await.unwrap(), FillOutcome::Recorded);
    assert_eq!(worker_a.record_fill(&run, &fill(&run, 2)).await.unwrap(), FillOutcome::Recorded);
    assert_eq!(worker_a.record_fill(&run, &fill(&run, 1)).await.unwrap(), FillOutcome::Duplicate);
    assert_eq!(worker_a.fills(&plan.plan_id).await.unwrap(), vec![fill(&run, 1), fill(&run, 2)]);
    assert_eq!(worker_a.runs(Some(&plan.plan_id)).await.unwrap()[0].duplicate_fills, 1);

    // Completed plans return their result, to anyone.
    let result = ExecutionResult::from_items(&plan.plan_id, &plan.correlation_id, Vec::new(), chrono::Utc::now(), None);
    worker_a.finish(&run, &result).await.unwrap();
    assert_eq!(worker_b.begin(&plan).await.unwrap(), BeginOutcome::AlreadyCompleted(Box::new(result)));
    assert!(worker_a.record_fill(&run, &fill(&run, 3)).await.is_err(), "a finished run records nothing more");

    // The finished run is archived whole in the predecessor's layout.
    let archived: Vec<_> = {
        use futures::StreamExt;
        let prefix = object_store::path::Path::from(format!("{prefix}/trade-ledgers"));
        store.list(Some(&prefix)).collect::<Vec<_>>().await
    };
    assert_eq!(archived.len(), 1);
    let location = archived[0].as_ref().unwrap().location.to_string();
    assert!(
        location.contains("/trade-ledgers/2") && location.ends_with(&format!("-{}-corr.json", run.run_id)),
        "{location}"
    );

    // A crashed worker's lease runs out; the next worker (here: two minutes later) resumes its run.
    let crashing = ObjectLedger::new(Arc::clone(&store), prefix, "worker-a");
    let other = make_plan("plan-object-2");
    let crashed = started(crashing.begin(&other).await.unwrap());
    crashing.record_fill(&crashed, &fill(&crashed, 9)).await.unwrap();
    drop(crashing);
    assert!(matches!(worker_b.begin(&other).await.unwrap(), BeginOutcome::AlreadyRunning { .. }));
    let two_minutes = chrono::Duration::minutes(2);
    let worker_b = worker_b.with_time_source(Arc::new(move || chrono::Utc::now() + two_minutes));
    let resumed = started(worker_b.begin(&other).await.unwrap());
    assert!(resumed.resumed);
    assert_eq!(resumed.run_id, crashed.run_id);
    assert_eq!(worker_b.fills(&other.plan_id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn object_ledger_on_an_in_memory_store() {
    suite(Arc::new(InMemory::new()), "ledger").await;
}

/// A moto S3 server on a free loopback port, stopped when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_moto() -> Option<Moto> {
    let port = TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
    let mut child = Command::new("python3")
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    // Wait for the server's own "Running on" line (or its exit, when moto is missing).
    let stderr = child.stderr.take()?;
    let mut lines = BufReader::new(stderr).lines();
    let ready = lines.by_ref().take(50).map_while(Result::ok).any(|l| l.contains("Running on"));
    if !ready {
        let _ = child.kill();
        return None;
    }
    // Keep draining the server's log so it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Some(Moto { child, endpoint: format!("http://127.0.0.1:{port}") })
}

fn create_bucket(endpoint: &str, bucket: &str) {
    let address = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    write!(stream, "PUT /{bucket} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "bucket creation: {response}");
}

#[tokio::test]
async fn object_ledger_on_a_real_s3_server() {
    let Some(moto) = start_moto() else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the S3 tests: install moto (`cargo xtask ci` does: pip install 'moto[server]')"
        );
        eprintln!("SKIPPED: moto is not installed (pip install 'moto[server]'); the S3 ledger tests did not run");
        return;
    };
    create_bucket(&moto.endpoint, "tranche-ledger-test");
    let settings = S3Settings {
        bucket: "tranche-ledger-test".into(),
        endpoint: Some(moto.endpoint.clone()),
        region: Some("us-east-1".into()),
        access_key_id: Some("test-only-key-id".into()),
        secret_access_key: Some("test-only-secret".into()),
    };
    assert!(!format!("{settings:?}").contains("test-only-secret"), "settings never print the secret");
    let store = s3_store(&settings).unwrap();
    suite(store, "tranche").await;
}

#[tokio::test]
async fn a_damaged_object_is_a_clear_error_not_a_panic() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let ledger = ObjectLedger::new(Arc::clone(&store), "ledger", "worker");
    let plan = make_plan("plan-damaged");
    let run = started(ledger.begin(&plan).await.unwrap());
    ledger.record_fill(&run, &fill(&run, 1)).await.unwrap();
    // Overwrite every fill object with garbage, as a broken tool or a truncated upload would.
    let fills_dir = {
        use futures::StreamExt;
        let all: Vec<_> = store.list(Some(&object_store::path::Path::from("ledger"))).collect().await;
        all.into_iter().map(|m| m.unwrap().location).filter(|p| p.as_ref().contains("/fills/")).collect::<Vec<_>>()
    };
    assert_eq!(fills_dir.len(), 1);
    store.put(&fills_dir[0], object_store::PutPayload::from_static(b"{not json")).await.unwrap();
    let err = ledger.fills(&plan.plan_id).await.unwrap_err();
    assert!(err.to_string().contains("damaged or not a database") || err.to_string().contains("fills"), "{err}");
    assert!(matches!(err, tranche_ledger::LedgerError::Corrupt { .. }), "{err}");
    // An object far larger than any record (a wrong upload, a hostile writer) is refused by its
    // size, before it is read into memory (a Lambda's memory is a few hundred MB).
    let huge = vec![b' '; 17 << 20];
    store.put(&fills_dir[0], object_store::PutPayload::from(huge)).await.unwrap();
    let err = ledger.fills(&plan.plan_id).await.unwrap_err();
    assert!(matches!(err, tranche_ledger::LedgerError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("larger than any record"), "{err}");
}
