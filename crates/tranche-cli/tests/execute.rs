//! End-to-end: the real `tranche` binary executing plans on the embedded simulator.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use tranche_tests::example;

fn tranche(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tranche")).args(args).output().expect("the binary runs")
}

fn temp_file(name: &str, contents: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tranche-cli-exec-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn execute_on_the_simulator_prints_a_table_and_exits_zero() {
    let plan = example("plan.json");
    let out = tranche(&["execute", plan.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("SYMBOL"), "{stdout}");
    assert!(stdout.contains("success: 4 of 4 items completed"), "{stdout}");
    assert!(stdout.contains("FILLED SH") && stdout.contains("TARGET SH"), "shares are named so: {stdout}");
    assert!(stdout.contains("negative is better than the mid"), "the slippage sign is explained: {stdout}");
    let traded = stdout.lines().find(|l| l.contains(" traded (plan ")).unwrap();
    let dollars = traded.split('$').nth(1).unwrap().split(' ').next().unwrap();
    assert!(dollars.split('.').nth(1).is_none_or(|cents| cents.len() <= 2), "dollars to the cent: {traded}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("phase Buy done"), "progress lines on stderr: {stderr}");
    assert!(stderr.contains("the times shown are its virtual clock"), "virtual times are said to be: {stderr}");
}

#[test]
fn execute_json_prints_the_execution_result() {
    let plan = example("plan-30.json");
    let out = tranche(&["execute", plan.to_str().unwrap(), "--json", "--quiet", "--seed", "3"]);
    assert!(out.status.code().is_some_and(|c| c == 0 || c == 2), "{}", String::from_utf8_lossy(&out.stderr));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["plan_id"], "example-30-symbols-20261120");
    assert_eq!(result["orders"].as_array().unwrap().len(), 30);
    for key in ["success", "status", "orders_placed", "orders_succeeded", "total_trade_value", "execution_timestamp"] {
        assert!(result.get(key).is_some(), "{key}");
    }
    assert!(out.stderr.is_empty(), "--quiet: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn dry_run_shows_first_orders_and_sends_nothing() {
    let plan = example("plan.json");
    let out = tranche(&["execute", plan.to_str().unwrap(), "--dry-run", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let preview: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = preview["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    let aapl = &rows[0];
    assert_eq!(aapl["symbol"], "AAPL");
    assert!(
        aapl["qty"].as_str().is_some()
            && aapl["first_limit"].as_str().is_some()
            && aapl["reference"].as_str().is_some()
    );
    let human = tranche(&["execute", plan.to_str().unwrap(), "--dry-run"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("nothing is sent"));
    assert!(!String::from_utf8_lossy(&human.stderr).contains("order "), "no order was placed");
}

#[test]
fn a_broken_plan_exits_65_listing_all_problems() {
    let plan = example("broken-plan.json");
    let out = tranche(&["execute", plan.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the plan has 11 problems"));
}

#[test]
fn bad_configuration_exits_78_naming_the_file_key_and_fix() {
    let plan = example("plan.json");
    let unknown = temp_file("unknown.toml", "[engine]\nrepeg_intervall = 5\n");
    let out = tranche(&["execute", plan.to_str().unwrap(), "--config", unknown.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown.toml") && stderr.contains("repeg_intervall") && stderr.contains("fix:"),
        "{stderr}"
    );

    let invalid = temp_file("invalid.toml", "[engine]\nconcurrency = 0\nmax_repegs = 500\n");
    let out = tranche(&["execute", plan.to_str().unwrap(), "--config", invalid.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("[engine] concurrency") && stderr.contains("[engine] max_repegs"),
        "every bad key: {stderr}"
    );
}

#[test]
fn usage_errors_exit_64() {
    assert_eq!(tranche(&["execute"]).status.code(), Some(64));
    assert_eq!(tranche(&["--help"]).status.code(), Some(0));
}

#[test]
fn sim_run_json_has_the_documented_shape() {
    let out = tranche(&["sim", "run", "--scenarios", "20", "--strategy", "predecessor", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["strategy"], "predecessor");
    assert_eq!(report["scenarios"], 20);
    assert_eq!(report["faults"], "none");
    assert!(report["slippage_bps"]["mean"].is_number() && report["slippage_bps"]["p95"].is_number());
    for key in ["completion_rate", "mean_completion_secs", "requests_per_order"] {
        assert!(report[key].is_number(), "{key}");
    }
    assert_eq!(report["invariant_violations"], 0);
    assert_eq!(report["faults_fired"], serde_json::json!({}), "no faults asked for, none fired");
    let referee = report["referee"].as_object().unwrap();
    assert!(referee.contains_key("two_working_orders") && referee.contains_key("oversell"), "{referee:?}");
    assert!(referee.values().all(|n| *n == 0), "a good run: {referee:?}");
}

#[test]
fn sim_run_json_counts_the_faults_that_fired_by_name() {
    let out = tranche(&["sim", "run", "--scenarios", "5", "--faults", "heavy", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fired = report["faults_fired"].as_object().unwrap();
    for name in ["update_dropped", "server_error", "rate_limited"] {
        assert!(fired.get(name).and_then(serde_json::Value::as_u64).unwrap_or(0) > 0, "{name}: {fired:?}");
    }
    assert!(report["referee"].is_object());
}

#[test]
fn with_a_ledger_a_plan_runs_once_and_a_rerun_returns_the_recorded_result() {
    let plan = example("plan.json");
    let dir = std::env::temp_dir().join(format!("tranche-cli-ledger-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let spec = format!("sqlite:{}", dir.join("ledger.sqlite").display());
    let first = tranche(&["execute", plan.to_str().unwrap(), "--json", "--quiet", "--ledger", &spec]);
    assert_eq!(first.status.code(), Some(0), "{}", String::from_utf8_lossy(&first.stderr));
    let second = tranche(&["execute", plan.to_str().unwrap(), "--json", "--ledger", &spec]);
    assert_eq!(second.status.code(), Some(0));
    assert_eq!(first.stdout, second.stdout, "the re-run returns the recorded result");
    assert!(!String::from_utf8_lossy(&second.stderr).contains("order "), "and sends no order");
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("replayed from the ledger"),
        "and says so: {}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(!String::from_utf8_lossy(&first.stderr).contains("replayed"), "a first run is no replay");
    let table = tranche(&["execute", plan.to_str().unwrap(), "--quiet", "--ledger", &spec]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("replayed from the ledger: this plan was completed by an earlier run; nothing was sent"),
        "{table}"
    );

    let runs = tranche(&["ledger", "runs", "--ledger", &spec, "--json"]);
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1);
    let shown = tranche(&["ledger", "show", "example-small-20261120", "--ledger", &spec, "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["fills"].as_array().unwrap().len(), 4);
    // One intent per order the run placed (a re-peg is an order of its own).
    let result: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let orders: u64 = result["orders"].as_array().unwrap().iter().map(|r| r["orders"].as_u64().unwrap()).sum();
    assert!(orders >= 4, "every traded item placed an order: {orders}");
    assert_eq!(shown["intents"].as_array().unwrap().len() as u64, orders);
    assert_eq!(shown["items"].as_array().unwrap().len(), 4, "the four traded items are recorded as finished");
    let text = tranche(&["ledger", "show", "example-small-20261120", "--ledger", &spec]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("FINISHED ITEMS") && text.contains("AAPL   filled"), "{text}");
    let started = text.lines().find(|l| l.contains(": started ")).unwrap();
    assert!(started.contains("Z, finished ") && !started.contains("+00:00"), "times to the millisecond: {started}");
    let bad = tranche(&["execute", plan.to_str().unwrap(), "--ledger", "ftp://nope"]);
    assert_eq!(bad.status.code(), Some(78));
}

#[test]
fn an_s3_ledger_works_with_the_embedded_simulator_and_a_rerun_returns_the_recorded_result() {
    let Some(moto) = support::require_moto("tranche-cli-ledger") else { return };
    let plan = example("plan.json");
    let spec = "s3://tranche-cli-ledger/runs";
    let execute = || {
        let mut cmd = support::tranche();
        cmd.args(["execute", plan.to_str().unwrap(), "--json", "--quiet", "--ledger", spec]);
        support::with_moto(&mut cmd, &moto);
        support::run(&mut cmd)
    };
    let first = execute();
    assert_eq!(first.0, Some(0), "{}", first.2);
    assert!(!first.2.contains("panicked"), "{}", first.2);
    let result: serde_json::Value = serde_json::from_str(&first.1).unwrap();
    assert_eq!((result["orders_placed"].as_u64(), result["orders_succeeded"].as_u64()), (Some(4), Some(4)), "{result}");
    let second = execute();
    assert_eq!(second.0, Some(0), "{}", second.2);
    assert_eq!(first.1, second.1, "the re-run answers the recorded result");
}

#[test]
fn reading_a_ledger_never_creates_one_and_what_is_not_there_is_said() {
    let dir = std::env::temp_dir().join(format!("tranche-cli-ledger-reads-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // `ledger runs` without --ledger reads the default file in the current directory: absent here.
    let out = Command::new(env!("CARGO_BIN_EXE_tranche")).args(["ledger", "runs"]).current_dir(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(66), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("there is no ledger at tranche-ledger.sqlite"));
    assert!(std::fs::read_dir(&dir).unwrap().next().is_none(), "nothing was created");

    let spec = format!("sqlite:{}", dir.join("ledger.sqlite").display());
    let plan = example("plan.json");
    assert_eq!(tranche(&["execute", plan.to_str().unwrap(), "--quiet", "--ledger", &spec]).status.code(), Some(0));
    let unknown = tranche(&["ledger", "show", "no-such-plan", "--ledger", &spec]);
    assert_eq!(unknown.status.code(), Some(66));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("plan no-such-plan is not in the ledger"));

    let missing_dir = format!("sqlite:{}", dir.join("no-such-dir").join("x.sqlite").display());
    let out = tranche(&["execute", plan.to_str().unwrap(), "--quiet", "--ledger", &missing_dir]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("no-such-dir does not exist") && !stderr.contains("damaged"), "{stderr}");
}

#[test]
fn an_unknown_symbol_is_refused_like_alpaca_unless_the_simulator_is_told_to_invent_it() {
    let plan = temp_file(
        "unknown.json",
        r#"{"plan_id": "unknown-sym", "correlation_id": "c", "causation_id": "t", "timestamp": "2026-03-02T14:40:00Z",
            "total_portfolio_value": "10000",
            "items": [
              {"symbol": "ZZZZQ", "action": "BUY", "trade_amount": "1000", "current_value": "0",
               "current_weight": "0", "target_weight": "0.1", "target_value": "1000"},
              {"symbol": "AAPL", "action": "BUY", "trade_amount": "1000", "current_value": "0",
               "current_weight": "0", "target_weight": "0.1", "target_value": "1000"}
            ]}"#,
    );
    let out = tranche(&["execute", plan.to_str().unwrap(), "--json", "--quiet"]);
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let zzzzq = &result["orders"][0];
    assert_eq!(zzzzq["outcome"], "failed", "{zzzzq}");
    assert!(zzzzq["reason"].as_str().unwrap_or_default().contains("unknown to the broker"), "{zzzzq}");
    assert_eq!(result["orders"][1]["outcome"], "filled", "a listed symbol trades: {result}");

    let config = temp_file("invent.toml", "[simulator.symbols]\ninvent = true\n");
    let out = tranche(&["execute", plan.to_str().unwrap(), "--json", "--quiet", "--config", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the simulator invents markets for ZZZZQ"), "said so: {stderr}");
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["orders"][0]["outcome"], "filled", "{result}");
}

/// A buy scaled down for lack of buying power did what the account allowed, not what the plan
/// asked: the table says `partially filled` with the reason, the summary counts it, and the exit
/// code is 2 (issue 18 item 8).
#[test]
fn an_item_that_trades_less_than_the_plan_asked_says_so_in_the_table_summary_and_exit_code() {
    let mut plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(example("plan.json")).unwrap()).unwrap();
    plan["plan_id"] = "shortfall-1".into();
    plan["total_portfolio_value"] = "200000".into();
    for item in plan["items"].as_array_mut().unwrap() {
        if item["symbol"] == "AAPL" {
            item["trade_amount"] = "60000".into();
            item["target_value"] = "60000".into();
        }
    }
    let plan = temp_file("shortfall.json", &plan.to_string());
    let state = temp_file(
        "shortfall-state.toml",
        "seed = 3\n[account]\nstarting_cash = \"2000\"\npositions = [{ symbol = \"MSFT\", qty = \"12.04253423\" }, { symbol = \"EDZ\", qty = \"525\" }]\n",
    );
    let out = tranche(&["execute", plan.to_str().unwrap(), "--sim-state", state.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let aapl = stdout.lines().find(|l| l.starts_with("AAPL")).unwrap();
    assert!(aapl.contains("partially filled") && aapl.contains("scaled to"), "{aapl}");
    assert!(aapl.contains("of the planned $60000.00"), "{aapl}");
    assert!(stdout.contains("partial success: 2 of 4 items completed"), "{stdout}");
}
