//! The SQLite ledger: recording, idempotency, one worker per plan, completed plans, resuming
//! after a crash (including a real SIGKILL mid-write), and clear errors on foreign files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use support::{plan_with, started};
use tranche_domain::{ClientOrderId, ExecutionResult, OrderStatus, OrderType, Qty, RebalancePlan, Side, Symbol};
use tranche_ledger::{
    BeginOutcome, FillOutcome, FillRecord, Ledger, LedgerError, OrderIntent, OrderRecord, RunHandle, SqliteLedger,
};

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tranche-ledger-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("ledger.sqlite")
}

fn plan(id: &str) -> RebalancePlan {
    plan_with(id, &serde_json::json!({"strategy_attribution": {"AAPL": {"momentum": 1.0}}}))
}

/// A fill carrying the plan's attribution and a nanosecond timestamp (both must round-trip).
fn fill(run: &RunHandle, n: u32) -> FillRecord {
    FillRecord {
        strategy_attribution: serde_json::from_str(r#"{"momentum": 1.0}"#).ok(),
        filled_at: chrono::DateTime::from_timestamp(1_772_463_600, 123_456_789).unwrap(),
        ..support::fill(run, n)
    }
}

fn result_for(plan: &RebalancePlan) -> ExecutionResult {
    ExecutionResult::from_items(&plan.plan_id, &plan.correlation_id, Vec::new(), chrono::Utc::now(), None)
}

#[tokio::test]
async fn finished_items_are_recorded_and_survive_a_reopen() {
    let path = temp_path("items");
    let ledger = SqliteLedger::open(&path).unwrap();
    let run = started(ledger.begin(&plan("plan-items")).await.unwrap());
    support::items_are_recorded_latest_first_by_index(&ledger, &run).await;
    drop(ledger);
    let again = SqliteLedger::open(&path).unwrap();
    assert_eq!(again.items("plan-items").await.unwrap().len(), 2);
}

#[tokio::test]
async fn records_intents_orders_and_fills_and_answers_queries() {
    let ledger = SqliteLedger::open(temp_path("records")).unwrap();
    let plan = plan("p1");
    let run = started(ledger.begin(&plan).await.unwrap());
    assert!(!run.resumed);
    let intent = OrderIntent {
        plan_id: "p1".into(),
        run_id: run.run_id.clone(),
        item_index: 0,
        symbol: Symbol::parse("AAPL").unwrap(),
        side: Side::Buy,
        attempt: 0,
        client_order_id: ClientOrderId::from_broker("tr-pp1-AAPL-b0"),
        order_type: OrderType::Limit,
        qty: Qty::new(1.into()),
        limit_price: Some("228.05".parse().unwrap()),
        replaces: None,
        arrival_mid: Some("228.06".parse().unwrap()),
        created_at: chrono::DateTime::from_timestamp(1_772_463_600, 5).unwrap(),
    };
    ledger.record_intent(&run, &intent).await.unwrap();
    ledger.record_intent(&run, &intent).await.unwrap();
    let mut order = OrderRecord {
        plan_id: "p1".into(),
        client_order_id: intent.client_order_id.clone(),
        broker_order_id: Some("order-1".into()),
        symbol: intent.symbol.clone(),
        side: Side::Buy,
        status: OrderStatus::New,
        filled_qty: Qty::ZERO,
        filled_avg_price: None,
        updated_at: chrono::Utc::now(),
    };
    ledger.record_order(&run, &order).await.unwrap();
    order.status = OrderStatus::Filled;
    order.filled_qty = Qty::new(1.into());
    ledger.record_order(&run, &order).await.unwrap();
    assert_eq!(ledger.record_fill(&run, &fill(&run, 1)).await.unwrap(), FillOutcome::Recorded);

    assert_eq!(ledger.intents("p1").await.unwrap(), vec![intent]);
    let orders = ledger.orders("p1").await.unwrap();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].status, OrderStatus::Filled);
    let fills = ledger.fills("p1").await.unwrap();
    assert_eq!(fills, vec![fill(&run, 1)], "every field round-trips exactly");
    assert!(ledger.fills("other").await.unwrap().is_empty());
}

#[tokio::test]
async fn fills_are_recorded_once_and_duplicates_counted() {
    let ledger = SqliteLedger::open(temp_path("dups")).unwrap();
    let run = started(ledger.begin(&plan("p2")).await.unwrap());
    assert_eq!(ledger.record_fill(&run, &fill(&run, 7)).await.unwrap(), FillOutcome::Recorded);
    assert_eq!(ledger.record_fill(&run, &fill(&run, 7)).await.unwrap(), FillOutcome::Duplicate);
    assert_eq!(ledger.record_fill(&run, &fill(&run, 7)).await.unwrap(), FillOutcome::Duplicate);
    assert_eq!(ledger.fills("p2").await.unwrap().len(), 1);
    assert_eq!(ledger.runs(Some("p2")).await.unwrap()[0].duplicate_fills, 2);
}

/// Execution ids are unique within a plan, not across plans: a simulator or emulator started
/// again names its executions from the same seed, so two plans' fills can share an id. The
/// second plan's fill was taken for a duplicate and never recorded.
#[tokio::test]
async fn fills_of_two_plans_under_one_execution_id_are_both_recorded() {
    let ledger = SqliteLedger::open(temp_path("two-plans")).unwrap();
    let first = started(ledger.begin(&plan("plan-a")).await.unwrap());
    let second = started(ledger.begin(&plan("plan-b")).await.unwrap());
    assert_eq!(ledger.record_fill(&first, &fill(&first, 1)).await.unwrap(), FillOutcome::Recorded);
    assert_eq!(ledger.record_fill(&second, &fill(&second, 1)).await.unwrap(), FillOutcome::Recorded);
    assert_eq!(ledger.fills("plan-b").await.unwrap().len(), 1);
    assert_eq!(ledger.record_fill(&second, &fill(&second, 1)).await.unwrap(), FillOutcome::Duplicate);
}

/// A ledger written by the version before (fills keyed by execution id alone) opens, keeps its
/// fills, and keys them by plan from then on.
#[tokio::test]
async fn a_ledger_of_the_version_before_keeps_its_fills() {
    let path = temp_path("v2");
    {
        let ledger = SqliteLedger::open(&path).unwrap();
        let run = started(ledger.begin(&plan("plan-old")).await.unwrap());
        ledger.record_fill(&run, &fill(&run, 1)).await.unwrap();
    }
    // Back to version 2's table, as an older Tranche left it.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE fills_v2 AS SELECT * FROM fills; DROP TABLE fills;
         CREATE TABLE fills (execution_id TEXT PRIMARY KEY, plan_id TEXT NOT NULL, run_id TEXT NOT NULL,
           client_order_id TEXT NOT NULL, broker_order_id TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL,
           qty TEXT NOT NULL, price TEXT NOT NULL, bid TEXT, ask TEXT, order_type TEXT, strategy_attribution TEXT,
           filled_at TEXT NOT NULL, seq INTEGER NOT NULL);
         INSERT INTO fills SELECT * FROM fills_v2; DROP TABLE fills_v2;
         CREATE INDEX fills_by_plan ON fills (plan_id, seq); PRAGMA user_version = 2;",
    )
    .unwrap();
    drop(conn);
    let ledger = SqliteLedger::open(&path).unwrap();
    let kept = ledger.fills("plan-old").await.unwrap();
    assert_eq!(kept.len(), 1, "kept");
    let resumed = started(ledger.begin(&plan("plan-old")).await.unwrap());
    assert!(resumed.resumed && kept[0].run_id == resumed.run_id, "whole");
    assert_eq!(ledger.record_fill(&resumed, &fill(&resumed, 1)).await.unwrap(), FillOutcome::Duplicate, "still once");
    let other = started(ledger.begin(&plan("plan-new")).await.unwrap());
    assert_eq!(ledger.record_fill(&other, &fill(&other, 1)).await.unwrap(), FillOutcome::Recorded);
}

/// Several processes opening a new ledger (or one an upgrade migrates) at once: each migration
/// is applied once and every open succeeds. The second failed as "damaged" (its migration ran
/// on a schema the first had already made).
#[test]
fn ledgers_opened_at_once_for_the_first_time_all_open() {
    for round in 0..20 {
        let path = temp_path(&format!("race-{round}"));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(3));
        let opens: Vec<_> = (0..3)
            .map(|_| {
                let (path, barrier) = (path.clone(), std::sync::Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    SqliteLedger::open(&path).map(|_| ())
                })
            })
            .collect();
        for open in opens {
            let opened = open.join().unwrap();
            assert!(opened.is_ok(), "round {round}: {opened:?}");
        }
    }
}

#[tokio::test]
async fn a_running_plan_is_refused_and_a_completed_one_returns_its_result() {
    let path = temp_path("begin");
    let first = SqliteLedger::open(&path).unwrap();
    let other_worker = SqliteLedger::open(&path).unwrap();
    let plan = plan("p3");
    let run = started(first.begin(&plan).await.unwrap());
    assert_eq!(other_worker.begin(&plan).await.unwrap(), BeginOutcome::AlreadyRunning { run_id: run.run_id.clone() });
    assert_eq!(first.begin(&plan).await.unwrap(), BeginOutcome::AlreadyRunning { run_id: run.run_id.clone() });
    let result = result_for(&plan);
    first.finish(&run, &result).await.unwrap();
    assert_eq!(other_worker.begin(&plan).await.unwrap(), BeginOutcome::AlreadyCompleted(Box::new(result)));
    assert!(matches!(first.record_fill(&run, &fill(&run, 1)).await, Err(LedgerError::NotActive { .. })));
    // Another plan is unaffected.
    started(other_worker.begin(&self::plan("p4")).await.unwrap());
}

/// The same file under two names (a symlink, a relative and an absolute path) is one ledger:
/// the plan's lock is the file's, so a second worker is still turned away (each took a lock of
/// its own name, and both traded the rest of the plan).
#[cfg(unix)]
#[tokio::test]
async fn the_same_file_under_another_name_is_the_same_lock() {
    let path = temp_path("aliases");
    let first = SqliteLedger::open(&path).unwrap();
    let alias = path.with_file_name("alias.sqlite");
    std::os::unix::fs::symlink(&path, &alias).unwrap();
    let dotted = path.parent().unwrap().join(".").join("ledger.sqlite");
    let plan = plan("p-aliases");
    let run = started(first.begin(&plan).await.unwrap());
    for other in [alias, dotted] {
        let other_worker = SqliteLedger::open(&other).unwrap();
        assert_eq!(
            other_worker.begin(&plan).await.unwrap(),
            BeginOutcome::AlreadyRunning { run_id: run.run_id.clone() },
            "{}",
            other.display()
        );
    }
}

/// The plan's lock file deleted under a live worker (someone cleaned "stale" locks): the next
/// worker takes a new lock and resumes the run, and the first, no longer holding the plan's
/// lock, can prove and record nothing from then on (it went on writing, two workers on one
/// plan).
#[tokio::test]
async fn a_worker_whose_lock_file_was_deleted_can_prove_and_record_nothing() {
    let path = temp_path("lock-deleted");
    let first = SqliteLedger::open(&path).unwrap();
    let run = started(first.begin(&plan("p-lock")).await.unwrap());
    first.record_fill(&run, &fill(&run, 1)).await.unwrap();
    let mut locks = std::fs::canonicalize(&path).unwrap().into_os_string();
    locks.push(".locks");
    std::fs::remove_dir_all(&locks).unwrap();
    let second = SqliteLedger::open(&path).unwrap();
    let taken = started(second.begin(&plan("p-lock")).await.unwrap());
    assert!(taken.resumed);
    let lost = |r: Result<(), LedgerError>| matches!(r, Err(LedgerError::ClaimLost { .. }));
    assert!(lost(first.prove_claim(&run).await.map(|_| ())), "the first worker's claim is gone");
    assert!(lost(first.record_fill(&run, &fill(&run, 2)).await.map(|_| ())));
    assert!(second.prove_claim(&taken).await.is_ok());
    second.record_fill(&taken, &fill(&taken, 3)).await.unwrap();
}

/// A new ledger, its WAL files and its plan locks are its owner's alone: they hold the account's
/// orders, fills and results, and a lock anyone can take would hold a plan for ever. SQLite's
/// default made the file readable by every local user.
#[cfg(unix)]
#[tokio::test]
async fn a_new_ledger_and_its_locks_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let path = temp_path("private");
    let ledger = SqliteLedger::open(&path).unwrap();
    let run = started(ledger.begin(&plan("p-private")).await.unwrap());
    ledger.record_fill(&run, &fill(&run, 1)).await.unwrap();
    let mut wal = path.clone().into_os_string();
    wal.push("-wal");
    let mut locks = std::fs::canonicalize(&path).unwrap().into_os_string();
    locks.push(".locks");
    for file in [path.clone(), PathBuf::from(wal), PathBuf::from(&locks)] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{}: {mode:o}", file.display());
    }
    for lock in std::fs::read_dir(&locks).unwrap() {
        let mode = lock.unwrap().metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "a lock: {mode:o}");
    }
}

#[tokio::test]
async fn an_interrupted_run_is_resumed_by_the_next_worker() {
    let path = temp_path("resume");
    let plan = plan("p5");
    let run = {
        let ledger = SqliteLedger::open(&path).unwrap();
        let run = started(ledger.begin(&plan).await.unwrap());
        ledger.record_fill(&run, &fill(&run, 1)).await.unwrap();
        run
        // Dropped without finishing: the worker "died".
    };
    let ledger = SqliteLedger::open(&path).unwrap();
    let resumed = started(ledger.begin(&plan).await.unwrap());
    assert!(resumed.resumed);
    assert_eq!(resumed.run_id, run.run_id);
    assert_eq!(ledger.fills("p5").await.unwrap().len(), 1);
}

#[test]
fn the_ledger_survives_sigkill_mid_write_and_reopens_consistent() {
    let path = temp_path("sigkill");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ledger-crash-writer"))
        .arg(&path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the writer starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut committed = 0u64;
    while committed < 200 {
        let line = lines.next().expect("the writer reports commits").unwrap();
        committed = line.trim_start_matches("committed ").parse::<u64>().unwrap() + 1;
    }
    // SIGKILL: no destructor, no flush, no unlock.
    child.kill().unwrap();
    child.wait().unwrap();

    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let ledger = SqliteLedger::open(&path).expect("reopens after a crash");
    let fills = runtime.block_on(ledger.fills("crash-plan")).unwrap();
    let stored = u64::try_from(fills.len()).unwrap();
    assert!(stored >= committed, "every fill reported committed is there ({stored} of {committed})");
    for (n, fill) in fills.iter().enumerate() {
        assert_eq!(fill.execution_id, format!("exec-{n}"), "no gap, no torn row");
    }
    // The killed worker's lock is gone: the run can be resumed at once.
    let outcome = runtime.block_on(ledger.begin(&plan("crash-plan"))).unwrap();
    assert!(matches!(outcome, BeginOutcome::Started(RunHandle { resumed: true, .. })), "{outcome:?}");
}

#[test]
fn corrupt_foreign_and_newer_files_give_clear_errors() {
    let garbage = temp_path("garbage");
    std::fs::write(
        &garbage,
        b"this is not a database, just text that happens to be long enough to fill a header..........",
    )
    .unwrap();
    let err = SqliteLedger::open(&garbage).unwrap_err();
    assert!(matches!(err, LedgerError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("damaged or not a database"));

    let foreign = temp_path("foreign");
    rusqlite::Connection::open(&foreign).unwrap().execute_batch("CREATE TABLE customers (id INTEGER);").unwrap();
    let err = SqliteLedger::open(&foreign).unwrap_err();
    assert!(matches!(err, LedgerError::Foreign { .. }), "{err}");
    assert!(err.to_string().contains("not a Tranche ledger"));

    let newer = temp_path("newer");
    drop(SqliteLedger::open(&newer).unwrap());
    rusqlite::Connection::open(&newer).unwrap().execute_batch("PRAGMA user_version = 99;").unwrap();
    let err = SqliteLedger::open(&newer).unwrap_err();
    assert!(matches!(err, LedgerError::TooNew { found: 99, .. }), "{err}");
}
