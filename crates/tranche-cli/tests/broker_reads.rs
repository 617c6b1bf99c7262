//! End-to-end: `tranche account`, `tranche positions` and `tranche orders` with the real binary,
//! on the embedded simulator and through the Alpaca adapter against the emulator on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use tranche_tests::example;

mod support;
use support::{at_emulator, run, start_emulator, tranche, SECRET};

/// A simulator state with cash and two positions, in a fresh directory.
fn sim_state(name: &str) -> std::path::PathBuf {
    let path = support::temp_dir(&format!("reads-{name}")).join("state.toml");
    std::fs::write(
        &path,
        "seed = 3\n[account]\nstarting_cash = \"50000\"\n\
         positions = [{ symbol = \"AAPL\", qty = \"100\" }, { symbol = \"EDZ\", qty = \"50\" }]\n",
    )
    .unwrap();
    path
}

#[test]
fn account_on_the_simulator_as_a_table_and_as_json() {
    let (code, stdout, stderr) = run(tranche().arg("account"));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("broker                       sim\n"), "{stdout}");
    assert!(stdout.contains("equity                       $100000.00"), "the default simulated account: {stdout}");
    assert!(stdout.contains("trading                      allowed"), "{stdout}");

    let state = sim_state("account");
    let (code, stdout, stderr) = run(tranche().args(["account", "--json", "--sim-state", state.to_str().unwrap()]));
    assert_eq!(code, Some(0), "{stderr}");
    let account: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(account["status"], "active");
    assert_eq!(account["cash"], "50000");
    let equity: f64 = account["equity"].as_str().unwrap().parse().unwrap();
    assert!(equity > 50_000.0, "cash plus the positions: {equity}");
}

#[test]
fn positions_on_the_simulator_as_a_table_and_as_json() {
    let state = sim_state("positions");
    let (code, stdout, stderr) = run(tranche().args(["positions", "--sim-state", state.to_str().unwrap()]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("SYMBOL"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("AAPL") && l.contains(" 100 ")), "{stdout}");
    assert!(stdout.contains("2 positions worth $"), "{stdout}");

    let (code, stdout, _) = run(tranche().args(["positions", "--json"]).env("TRANCHE_SIM_STATE", &state));
    assert_eq!(code, Some(0));
    let positions: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let symbols: Vec<&str> = positions.as_array().unwrap().iter().map(|p| p["symbol"].as_str().unwrap()).collect();
    assert_eq!(symbols, ["AAPL", "EDZ"], "sorted by symbol");
    assert_eq!(positions[0]["qty"], "100");

    let (code, stdout, _) = run(tranche().arg("positions"));
    assert_eq!(code, Some(0));
    assert_eq!(stdout, "no positions (equity $100000.00)\n");
}

#[test]
fn orders_on_a_fresh_simulator_are_none() {
    let (code, stdout, stderr) = run(tranche().arg("orders"));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "no open orders\n");
    let (code, stdout, _) = run(tranche().args(["orders", "--json", "--symbol", "AAPL,MSFT"]));
    assert_eq!(code, Some(0));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&stdout).unwrap(), serde_json::json!([]));
    let (code, _, stderr) = run(tranche().args(["orders", "--symbol", "NOT A SYMBOL"]));
    assert_eq!(code, Some(64), "{stderr}");
}

#[test]
fn live_is_only_for_alpaca() {
    let (code, _, stderr) = run(tranche().args(["account", "--live"]));
    assert_eq!(code, Some(64));
    assert!(stderr.contains("--live is for --broker alpaca"), "{stderr}");
}

fn at_alpaca(url: &str, args: &[&str]) -> Command {
    let mut cmd = tranche();
    at_emulator(cmd.args(args).args(["--broker", "alpaca"]), url);
    cmd
}

#[test]
fn positions_and_account_at_alpaca_through_the_emulator_never_show_the_secret() {
    let (_emulator, url) = start_emulator(&example("plan.json"));
    let (code, stdout, stderr) =
        run(&mut at_alpaca(&url, &["positions", "--json", "--log-format", "json", "--log-level", "trace"]));
    assert_eq!(code, Some(0), "{stderr}");
    let positions: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let symbols: Vec<&str> = positions.as_array().unwrap().iter().map(|p| p["symbol"].as_str().unwrap()).collect();
    assert_eq!(symbols, ["AAPL", "EDZ", "MSFT", "QQQ", "SPY"], "the plan's held positions");
    assert!(!stderr.contains(SECRET) && !stdout.contains(SECRET), "the secret is in no output and no log");

    let (code, stdout, stderr) = run(&mut at_alpaca(&url, &["positions"]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("5 positions worth $"), "{stdout}");
    let (code, stdout, stderr) = run(&mut at_alpaca(&url, &["account"]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("broker                       alpaca\n"), "{stdout}");
    let (code, stdout, _) = run(&mut at_alpaca(&url, &["orders", "--json"]));
    assert_eq!(code, Some(0));
    assert!(serde_json::from_str::<serde_json::Value>(&stdout).unwrap().is_array());

    let (code, _, stderr) = run(at_alpaca(&url, &["account"]).env("APCA_API_SECRET_KEY", "wrong-secret"));
    assert_eq!(code, Some(78), "refused keys are a configuration error: {stderr}");
    assert!(stderr.contains("APCA_API_SECRET_KEY") && !stderr.contains("wrong-secret"), "{stderr}");
}

#[test]
fn alpaca_without_keys_is_bad_configuration_and_unreachable_is_unavailable() {
    let (code, _, stderr) = run(tranche().args(["positions", "--broker", "alpaca"]));
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("APCA_API_KEY_ID is not set"), "{stderr}");

    // A loopback port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let (code, _, stderr) = run(&mut at_alpaca(&url, &["account"]));
    assert_eq!(code, Some(69), "{stderr}");
    assert!(stderr.contains("alpaca: cannot read the account"), "{stderr}");
}

#[test]
fn refused_keys_are_78_for_every_command_and_execute_says_the_keys_were_refused() {
    let (_emulator, url) = start_emulator(&example("plan.json"));
    let plan = example("plan.json");
    let mut execute = tranche();
    at_emulator(execute.args(["execute", plan.to_str().unwrap(), "--broker", "alpaca"]), &url)
        .env("APCA_API_SECRET_KEY", "wrong-secret");
    let (code, _, stderr) = run(&mut execute);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("refused the keys") && stderr.contains("APCA_API_SECRET_KEY"), "{stderr}");
    assert!(!stderr.contains("wrong-secret") && !stderr.contains("not reachable"), "{stderr}");
    for command in [["positions"], ["orders"]] {
        let (code, _, stderr) = run(at_alpaca(&url, &command).env("APCA_API_SECRET_KEY", "wrong-secret"));
        assert_eq!(code, Some(78), "{command:?}: {stderr}");
    }
}

#[test]
fn a_url_variable_that_is_not_a_url_is_a_configuration_error_named_before_anything_is_sent() {
    let plan = example("plan.json");
    for (variable, args) in [
        ("APCA_API_BASE_URL", vec!["positions", "--broker", "alpaca"]),
        ("APCA_API_BASE_URL", vec!["execute", plan.to_str().unwrap(), "--broker", "alpaca"]),
        ("APCA_API_DATA_URL", vec!["execute", plan.to_str().unwrap(), "--broker", "alpaca"]),
    ] {
        let mut cmd = tranche();
        // Nothing listens there: any request would fail differently (69), not with 78.
        at_emulator(cmd.args(&args), "http://127.0.0.1:9").env(variable, "not-a-url");
        let (code, _, stderr) = run(&mut cmd);
        assert_eq!(code, Some(78), "{variable} {args:?}: {stderr}");
        assert!(stderr.contains(&format!("{variable}=`not-a-url` is not an http(s) URL")), "{stderr}");
    }
}

#[test]
fn confirm_live_alone_is_refused_as_a_usage_error() {
    let plan = example("plan.json");
    let (code, _, stderr) = run(tranche().args(["execute", plan.to_str().unwrap(), "--confirm-live"]));
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("--confirm-live alone does nothing"), "{stderr}");
}
