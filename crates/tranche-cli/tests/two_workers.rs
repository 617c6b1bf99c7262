//! One plan, two real `tranche execute --ledger s3://...` processes, against the S3 test server
//! (moto) and the Alpaca emulator, both started by the test: run at the same moment, exactly one
//! trades and the other is turned away (exit 75) or answers with the recorded result; stopped
//! with SIGSTOP past its lease while a second process takes the plan over, the first sends no
//! order after SIGCONT, and the plan's totals are those of an undisturbed run. Under `CI=true`
//! a missing moto is a failure, not a skip.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use rust_decimal::Decimal;
use tranche::alpaca::{AlpacaBroker, AlpacaConfig, Secret};
use tranche::broker::Broker;
use tranche::domain::Fill;
use tranche::ledger::{s3_store, Ledger, ObjectLedger, OrderIntent, RunRecord, S3Settings};
use tranche_tests::example;

mod support;
use support::{at_emulator, require_moto, s, start_emulator, temp_dir, tranche, with_moto, Killed, Moto, KEY, SECRET};

const BUCKET: &str = "tranche-two-workers";

/// `tranche execute PLAN --broker alpaca --ledger s3://BUCKET/PREFIX` at the emulator, with a
/// four-second lease between clocks at most a second apart, and a configuration that re-pegs
/// every second.
fn execute(url: &str, moto: &Moto, plan: &Path, prefix: &str, config: &Path) -> Command {
    let mut cmd = tranche();
    at_emulator(cmd.args(["execute", s(plan), "--broker", "alpaca", "--config", s(config)]), url);
    cmd.args(["--ledger", &format!("s3://{BUCKET}/{prefix}"), "--ledger-lease", "4", "--ledger-clock-skew", "1"]);
    with_moto(&mut cmd, moto);
    cmd
}

fn fast_config(name: &str) -> std::path::PathBuf {
    let dir = temp_dir(name);
    let config = dir.join("fast.toml");
    std::fs::write(
        &config,
        // The default 64 items at a time: a stop then finds orders waiting for the request
        // budget's next permit, which must not leave once the worker resumes without its claim.
        "[engine]\nrepeg_interval = 1.0\nphase_deadline = 90.0\nrun_deadline = 200.0\nsettle_deadline = 3.0\n",
    )
    .unwrap();
    config
}

/// What the broker and the ledger hold for a plan, read from outside both processes.
struct Audit {
    runs: Vec<RunRecord>,
    intents: Vec<OrderIntent>,
    fills: Vec<Fill>,
    open_orders: usize,
    /// Intents whose order the broker knows and holds in a final state.
    final_orders: usize,
    /// Intents whose order the broker never received.
    never_sent: usize,
}

fn audit(url: &str, moto: &Moto, prefix: &str, plan_id: &str) -> Audit {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut adapter = AlpacaConfig::new(KEY, Secret::new(SECRET));
    url.clone_into(&mut adapter.trading_url);
    url.clone_into(&mut adapter.data_url);
    let broker = AlpacaBroker::new(adapter).unwrap();
    let settings = S3Settings {
        bucket: BUCKET.into(),
        endpoint: Some(moto.endpoint.clone()),
        region: Some("us-east-1".into()),
        access_key_id: Some("test-only-key-id".into()),
        secret_access_key: Some("test-only-secret".into()),
    };
    let ledger = ObjectLedger::new(s3_store(&settings).unwrap(), prefix, "auditor");
    runtime.block_on(async {
        let intents = ledger.intents(plan_id).await.unwrap();
        let (mut final_orders, mut never_sent) = (0, 0);
        for intent in &intents {
            match broker.order_by_client_id(&intent.client_order_id).await {
                Ok(order) if order.status.is_terminal() => final_orders += 1,
                Ok(order) => panic!("order {} is still {}", intent.client_order_id, order.status),
                Err(_) => never_sent += 1,
            }
        }
        Audit {
            runs: ledger.runs(Some(plan_id)).await.unwrap(),
            fills: broker.fill_activities(chrono::DateTime::UNIX_EPOCH).await.unwrap(),
            open_orders: broker.open_orders().await.unwrap().len(),
            intents,
            final_orders,
            never_sent,
        }
    })
}

/// Per symbol, the shares the broker filled.
fn traded(fills: &[Fill]) -> BTreeMap<String, Decimal> {
    let mut out = BTreeMap::new();
    for fill in fills {
        *out.entry(fill.symbol.as_str().to_owned()).or_default() += fill.qty.get();
    }
    out
}

fn text(out: &Output) -> String {
    format!("exit {:?}\n{}", out.status.code(), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn two_processes_started_at_once_trade_the_plan_once() {
    let Some(moto) = require_moto(BUCKET) else { return };
    let config = fast_config("two-at-once");
    let plan = example("plan.json");
    let (_emulator, url) = start_emulator(&plan);
    let spawn = || {
        execute(&url, &moto, &plan, "at-once", &config)
            .args(["--json", "--quiet"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    let outputs = [first.wait_with_output().unwrap(), second.wait_with_output().unwrap()];
    let traded_here = |o: &Output| {
        matches!(o.status.code(), Some(0 | 2))
            && !String::from_utf8_lossy(&o.stderr).contains("replayed from the ledger")
    };
    let turned_away = |o: &Output| {
        o.status.code() == Some(75) || String::from_utf8_lossy(&o.stderr).contains("replayed from the ledger")
    };
    let report = format!("{}\n---\n{}", text(&outputs[0]), text(&outputs[1]));
    assert_eq!(outputs.iter().filter(|o| traded_here(o)).count(), 1, "exactly one process traded:\n{report}");
    assert_eq!(outputs.iter().filter(|o| turned_away(o)).count(), 1, "the other was turned away:\n{report}");

    let found = audit(&url, &moto, "at-once", "example-small-20261120");
    assert_eq!(found.runs.len(), 1, "one run of the plan: {:?}", found.runs);
    assert_eq!(found.open_orders, 0);
    let ids: BTreeSet<_> = found.intents.iter().map(|i| i.client_order_id.clone()).collect();
    assert_eq!(ids.len(), found.intents.len(), "no client order id twice");
    assert_eq!(found.final_orders + found.never_sent, found.intents.len());
    assert!(found.fills.iter().all(|f| ids.contains(&f.client_order_id)), "every fill is of a recorded order");
}

#[test]
fn a_process_stopped_past_its_lease_sends_nothing_after_it_resumes() {
    let Some(moto) = require_moto(BUCKET) else { return };
    let config = fast_config("stopped");
    let plan = example("plan-30.json");
    let plan_id = "example-30-symbols-20261120";
    let (_emulator, url) = start_emulator(&plan);

    // The first worker, stopped once a few of its orders are out.
    let mut first =
        execute(&url, &moto, &plan, "stopped", &config).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(first.stderr.take().unwrap()).lines();
    let orders_out = lines.by_ref().map_while(Result::ok).filter(|l| l.contains(" order ")).take(4).count();
    assert_eq!(orders_out, 4, "the first worker got under way");
    let pid = first.id().to_string();
    let first = Killed(first);
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());

    // The second worker, delivered again until the first's lease has lapsed, takes the plan
    // over and completes it.
    let mut attempts = 0;
    let second = loop {
        attempts += 1;
        let out = execute(&url, &moto, &plan, "stopped", &config).args(["--json", "--quiet"]).output().unwrap();
        if out.status.code() != Some(75) || attempts == 60 {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    assert!(matches!(second.status.code(), Some(0 | 2)), "{}", text(&second));
    assert!(attempts > 1, "the stopped worker's lease held the plan for a while");
    let before = audit(&url, &moto, "stopped", plan_id);
    assert_eq!(before.runs.len(), 1, "the second worker continued the first's run");

    // The first worker resumes: it learns that it lost the plan and stops, sending nothing.
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    let drained = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    let mut first = first;
    let status = first.0.wait().unwrap();
    let said = drained.join().unwrap();
    assert_eq!(status.code(), Some(75), "the resumed worker stops with 75:\n{said}");
    assert!(said.contains("lost its claim"), "{said}");
    let after = audit(&url, &moto, "stopped", plan_id);
    assert_eq!(after.intents.len(), before.intents.len(), "no order intent after resuming");
    assert_eq!(after.fills.len(), before.fills.len(), "no trade after resuming");
    assert_eq!(after.open_orders, 0);
    assert_eq!(after.final_orders + after.never_sent, after.intents.len());

    // The totals of the plan are those of an undisturbed run on the same market.
    let (_fresh, fresh_url) = start_emulator(&plan);
    let undisturbed =
        execute(&fresh_url, &moto, &plan, "undisturbed", &config).args(["--json", "--quiet"]).output().unwrap();
    assert!(matches!(undisturbed.status.code(), Some(0 | 2)), "{}", text(&undisturbed));
    let clean = traded(&audit(&fresh_url, &moto, "undisturbed", plan_id).fills);
    let disturbed = traded(&after.fills);
    assert_eq!(disturbed.keys().collect::<Vec<_>>(), clean.keys().collect::<Vec<_>>());
    let result: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    for row in result["orders"].as_array().unwrap() {
        let symbol = row["symbol"].as_str().unwrap();
        let (got, want) =
            (disturbed.get(symbol).copied().unwrap_or_default(), clean.get(symbol).copied().unwrap_or_default());
        let price = row["avg_fill_price"].as_str().and_then(|p| p.parse::<Decimal>().ok()).unwrap_or(Decimal::ONE);
        // Buys are sized from prices seen at different moments: within 5 % or one share.
        let tolerance = (want * Decimal::new(5, 2)).max(Decimal::ONE);
        assert!((got - want).abs() <= tolerance, "{symbol}: {got} shares, undisturbed {want} (at {price})");
        assert_eq!(row["filled_qty"].as_str().unwrap().parse::<Decimal>().unwrap(), got, "{symbol}");
    }
}
