//! End to end, with real processes: `tranche emulator` keeps the broker state in its own
//! process; `tranche execute --broker alpaca` is killed with SIGKILL, or interrupted with SIGINT,
//! in the middle of a plan and the same command is run again. No client order id twice, every order final, ledger fills
//! equal broker fills, no oversell, nothing traded beyond its target.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use rust_decimal::Decimal;
use tranche::alpaca::{AlpacaBroker, AlpacaConfig, Secret};
use tranche::broker::Broker;
use tranche::ledger::{Ledger, SqliteLedger};
use tranche_tests::example;

mod support;
use support::{at_emulator, start_emulator, temp_dir, tranche, KEY, SECRET};

fn execute(url: &str, plan: &str, ledger: &str, config: &str) -> Command {
    let mut cmd = tranche();
    at_emulator(cmd.args(["execute", plan, "--broker", "alpaca", "--ledger", ledger, "--config", config]), url);
    cmd
}

#[test]
fn a_killed_run_is_continued_by_the_same_command_without_trading_twice() {
    stopped_mid_plan_then_run_again("crash", |first, _| {
        first.kill().unwrap();
        first.wait().unwrap();
    });
}

/// Ctrl-C mid-plan: the run cancels its open orders before it exits (130), says so, and leaves
/// the plan to resume; nothing is left working at the broker in between.
#[test]
fn an_interrupted_run_cancels_its_orders_exits_130_and_the_same_command_continues_it() {
    stopped_mid_plan_then_run_again("sigint", |first, url| {
        let signalled = Command::new("kill").args(["-INT", &first.id().to_string()]).status().unwrap();
        assert!(signalled.success());
        let status = first.wait().unwrap();
        assert_eq!(status.code(), Some(130), "interrupted: exit 130");
        let (runtime, broker) = broker_at(url);
        let open = runtime.block_on(broker.open_orders()).unwrap();
        assert!(open.is_empty(), "nothing left working after Ctrl-C: {open:?}");
    });
}

/// Ctrl-C while the run's end waits (here for orders whose submit's answer was lost, which the
/// broker may still create): the signal is heard, and a second one exits at once (130). Nothing
/// listened there: both did nothing until the wind-down was over.
#[test]
fn a_second_ctrl_c_exits_at_once_while_the_runs_end_waits() {
    let dir = temp_dir("sigint-wind-down");
    let sim = dir.join("sim.json");
    std::fs::write(&sim, r#"{"faults": {"late_order_ppm": 1000000, "late_order_max_ms": 60000}}"#).unwrap();
    let config = dir.join("short.toml");
    std::fs::write(
        &config,
        "[engine]\nphase_deadline = 2.0\nrun_deadline = 2.0\nwind_down = 60.0\nlate_order_window = 60.0\n",
    )
    .unwrap();
    let plan_path = example("plan.json");
    let (_emulator, url) = support::start_emulator_with(&plan_path, &["--sim-config", sim.to_str().unwrap()]);
    let ledger = format!("sqlite:{}", dir.join("ledger.sqlite").display());
    let mut run = execute(&url, plan_path.to_str().unwrap(), &ledger, config.to_str().unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(run.stderr.take().unwrap()).lines();
    let waiting = lines.by_ref().map_while(Result::ok).any(|l| l.contains("may still be created by the broker"));
    assert!(waiting, "the run's end waits for the lost submits");
    let said = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    let interrupted = std::time::Instant::now();
    for _ in 0..2 {
        assert!(Command::new("kill").args(["-INT", &run.id().to_string()]).status().unwrap().success());
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let status = run.wait().unwrap();
    let said = said.join().unwrap();
    assert_eq!(status.code(), Some(130), "{said}");
    assert!(
        interrupted.elapsed() < std::time::Duration::from_secs(20),
        "exited {:?} after the first Ctrl-C",
        interrupted.elapsed()
    );
    assert!(said.contains("again: exiting now"), "{said}");
}

/// A runtime and an adapter at the emulator at `url`.
fn broker_at(url: &str) -> (tokio::runtime::Runtime, AlpacaBroker) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut adapter = AlpacaConfig::new(KEY, Secret::new(SECRET));
    url.clone_into(&mut adapter.trading_url);
    url.clone_into(&mut adapter.data_url);
    (runtime, AlpacaBroker::new(adapter).unwrap())
}

/// The 30-symbol plan at the emulator, stopped by `stop` once six orders are out, then the same
/// command again: it continues and finishes, with no client order id twice, every order final,
/// ledger fills equal broker fills, no oversell and nothing traded beyond its target.
fn stopped_mid_plan_then_run_again(name: &str, stop: impl FnOnce(&mut std::process::Child, &str)) {
    let dir = temp_dir(name);
    let config = dir.join("fast.toml");
    std::fs::write(
        &config,
        "[engine]\nrepeg_interval = 1.0\nphase_deadline = 90.0\nrun_deadline = 200.0\nsettle_deadline = 3.0\n",
    )
    .unwrap();
    let plan_path = example("plan-30.json");
    let plan = plan_path.to_str().unwrap();
    let ledger_path = dir.join("ledger.sqlite");
    let ledger = format!("sqlite:{}", ledger_path.display());
    let (_emulator, url) = start_emulator(&plan_path);

    // First run: stopped once a few orders are out.
    let mut first = execute(&url, plan, &ledger, config.to_str().unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut orders_seen = 0;
    let mut lines = BufReader::new(first.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains(" order ") {
            orders_seen += 1;
            if orders_seen == 6 {
                break;
            }
        }
    }
    // What it says after that is read on, so that it never blocks on a full pipe.
    let said = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    stop(&mut first, &url);
    let said = said.join().unwrap();
    assert_eq!(orders_seen, 6, "the first run was stopped mid-plan: {said}");

    // The same command again: continues and finishes.
    let second = execute(&url, plan, &ledger, config.to_str().unwrap()).args(["--json", "--quiet"]).output().unwrap();
    assert!(matches!(second.status.code(), Some(0 | 2)), "{}", String::from_utf8_lossy(&second.stderr));
    let result: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(result["orders"].as_array().unwrap().len(), 30);

    // Check the broker (another process) against the ledger.
    let (runtime, broker) = broker_at(&url);
    let (open, fills, positions) = runtime.block_on(async {
        (
            broker.open_orders().await.unwrap(),
            broker.fill_activities(chrono::DateTime::UNIX_EPOCH).await.unwrap(),
            broker.positions().await.unwrap(),
        )
    });
    assert!(open.is_empty(), "no order left open: {open:?}");
    assert!(positions.iter().all(|p| p.qty.get() >= Decimal::ZERO), "no oversell");
    let local = SqliteLedger::open(&ledger_path).unwrap();
    let plan_id = "example-30-symbols-20261120";
    let (runs, intents, ledger_fills) = runtime.block_on(async {
        (
            local.runs(Some(plan_id)).await.unwrap(),
            local.intents(plan_id).await.unwrap(),
            local.fills(plan_id).await.unwrap(),
        )
    });
    assert_eq!(runs.len(), 1, "one run, interrupted and continued");
    let broker_ids: BTreeSet<String> = fills.iter().map(|f| f.execution_id.as_str().to_owned()).collect();
    let ledger_ids: BTreeSet<String> = ledger_fills.iter().map(|f| f.execution_id.clone()).collect();
    assert_eq!(broker_ids, ledger_ids, "ledger fills equal broker fills");
    assert_eq!(ledger_ids.len(), ledger_fills.len(), "no fill recorded twice");
    let intent_ids: BTreeSet<_> = intents.iter().map(|i| i.client_order_id.clone()).collect();
    assert_eq!(intent_ids.len(), intents.len(), "no client order id twice");
    for fill in &fills {
        assert!(intent_ids.contains(&fill.client_order_id), "every order had its intent recorded first");
    }
    for (index, row) in result["orders"].as_array().unwrap().iter().enumerate() {
        let target =
            intents.iter().filter(|i| i.item_index as usize == index).min_by_key(|i| i.attempt).map(|i| i.qty.get());
        let symbol = row["symbol"].as_str().unwrap();
        let traded: Decimal = fills.iter().filter(|f| f.symbol.as_str() == symbol).map(|f| f.qty.get()).sum();
        if let Some(target) = target {
            assert!(traded <= target, "{symbol}: traded {traded} of a target of {target}");
        }
        assert_eq!(row["filled_qty"].as_str().unwrap().parse::<Decimal>().unwrap(), traded, "{symbol}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn live_trading_needs_explicit_confirmation() {
    let plan = example("plan.json");
    let out = tranche()
        .args(["execute", plan.to_str().unwrap(), "--broker", "alpaca", "--live"])
        .env("APCA_API_KEY_ID", KEY)
        .env("APCA_API_SECRET_KEY", SECRET)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--confirm-live"));
    let out = tranche()
        .args(["execute", plan.to_str().unwrap(), "--broker", "alpaca"])
        .env("APCA_API_BASE_URL", "https://api.alpaca.markets")
        .env("APCA_API_KEY_ID", KEY)
        .env("APCA_API_SECRET_KEY", SECRET)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "a live base URL without --live is refused");
}

#[test]
fn execute_through_the_emulator_with_a_base_url_override_never_leaks_the_secret() {
    let plan = example("plan.json");
    let (_emulator, url) = start_emulator(&plan);
    let dir = temp_dir("alpaca-cli");
    let ledger = format!("sqlite:{}", dir.join("l.sqlite").display());
    let config = dir.join("fast.toml");
    std::fs::write(&config, "[engine]\nrepeg_interval = 1.0\n").unwrap();
    let out = execute(&url, plan.to_str().unwrap(), &ledger, config.to_str().unwrap()).arg("--json").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["status"], "success");
    let everything = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!everything.contains(SECRET), "the secret never appears in output or logs");
    let _ = std::fs::remove_dir_all(&dir);
}
