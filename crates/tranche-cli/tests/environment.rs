//! End-to-end: settings from `TRANCHE_*` variables (flags win over them, they win over the
//! configuration file), configuration errors that name the variable, and `--log-format json`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use tranche_tests::example;

mod support;
use support::{run, temp_dir, tranche};

fn temp_file(name: &str, contents: &str) -> PathBuf {
    let path = temp_dir(&format!("env-{name}")).join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// `tranche account --json`, to add settings to.
fn account() -> Command {
    let mut cmd = tranche();
    cmd.args(["account", "--json"]);
    cmd
}

/// The account's cash under `cmd`'s settings.
fn cash(cmd: &mut Command) -> String {
    let (code, stdout, stderr) = run(cmd);
    assert_eq!(code, Some(0), "{stderr}");
    let account: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    account["cash"].as_str().unwrap().to_owned()
}

#[test]
fn flags_win_over_the_environment_which_wins_over_the_file() {
    let file = temp_file("cash-1000.toml", "[simulator.account]\nstarting_cash = \"1000\"\n");
    let state = temp_file("cash-2000.toml", "[account]\nstarting_cash = \"2000\"\n");
    let other = temp_file("cash-3000.toml", "[account]\nstarting_cash = \"3000\"\n");
    assert_eq!(cash(&mut account()), "100000", "the default");
    assert_eq!(cash(account().env("TRANCHE_CONFIG", &file)), "1000", "the file");
    assert_eq!(
        cash(account().env("TRANCHE_CONFIG", &file).env("TRANCHE_SIM_STATE", &state)),
        "2000",
        "the environment"
    );
    let mut flag_wins = account();
    flag_wins.env("TRANCHE_CONFIG", &file).env("TRANCHE_SIM_STATE", &state).arg("--sim-state").arg(&other);
    assert_eq!(cash(&mut flag_wins), "3000", "the flag");
    let config_flag = temp_file("cash-4000.toml", "[simulator.account]\nstarting_cash = \"4000\"\n");
    assert_eq!(cash(account().env("TRANCHE_CONFIG", &file).arg("--config").arg(&config_flag)), "4000", "--config");
}

#[test]
fn environment_errors_exit_78_naming_the_variable_and_the_fix() {
    let cases: [(&str, &str, &[&str]); 5] = [
        ("TRANCHE_BROKER", "ibkr", &["account"]),
        ("TRANCHE_SEED", "seven", &["positions"]),
        ("TRANCHE_LOG_FORMAT", "xml", &["orders"]),
        ("TRANCHE_LOG_LEVEL", "loud", &["account"]),
        ("TRANCHE_LEDGER", "ftp://ledger", &["ledger", "runs"]),
    ];
    for (name, value, args) in cases {
        let (code, _, stderr) = run(tranche().args(args).env(name, value));
        assert_eq!(code, Some(78), "{name}: {stderr}");
        assert!(stderr.contains(&format!("environment variable {name}=`{value}`")), "{name}: {stderr}");
        assert!(stderr.contains(&format!("fix: set {name} to ")), "{name}: {stderr}");
    }
    let (code, _, stderr) = run(tranche().args(["account", "--broker", "ibkr"]).env("TRANCHE_BROKER", "ibkr"));
    assert_eq!(code, Some(64), "a bad flag stays a usage error: {stderr}");
}

/// An empty variable counts as unset, as docs/configuration.md says (a template that passes
/// blanks): every one of these failed with exit 78.
#[test]
fn an_empty_variable_counts_as_unset() {
    let mut cmd = account();
    for name in [
        "TRANCHE_SEED",
        "TRANCHE_CONFIG",
        "TRANCHE_BROKER",
        "TRANCHE_LOG_LEVEL",
        "TRANCHE_LOG_FORMAT",
        "TRANCHE_SIM_STATE",
    ] {
        cmd.env(name, "");
    }
    assert_eq!(cash(&mut cmd), "100000");
    let (code, _, stderr) =
        run(tranche().args(["ledger", "runs"]).env("TRANCHE_LEDGER", "").current_dir(temp_dir("env-empty-ledger")));
    assert_eq!(code, Some(66), "no ledger at the default path (not a bad TRANCHE_LEDGER): {stderr}");
}

#[test]
fn a_config_file_from_the_environment_is_named_with_its_variable() {
    let (code, _, stderr) = run(tranche().arg("account").env("TRANCHE_CONFIG", "/nonexistent/tranche.toml"));
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/tranche.toml (from TRANCHE_CONFIG): cannot read the configuration file")
            && stderr.contains("fix: point TRANCHE_CONFIG at a readable file"),
        "{stderr}"
    );
    let bad = temp_file("typo.toml", "[engine]\nrepeg_intervall = 5\n");
    let plan = example("plan.json");
    let (code, _, stderr) = run(tranche().args(["execute", plan.to_str().unwrap()]).env("TRANCHE_CONFIG", &bad));
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("typo.toml (from TRANCHE_CONFIG)") && stderr.contains("repeg_intervall"), "{stderr}");
}

#[test]
fn json_logs_are_one_object_per_line_on_stderr() {
    let (code, stdout, stderr) = run(tranche().args(["--log-format", "json", "--log-level", "info", "account"]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("broker"), "results stay on stdout: {stdout}");
    let events: Vec<serde_json::Value> =
        stderr.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    assert!(events.iter().any(|e| e["level"] == "INFO" && e["message"] == "account read"), "{stderr}");
    assert!(events.iter().all(|e| e["timestamp"].is_string() && e["target"].is_string()), "{stderr}");

    let targets = temp_file("bad-targets.csv", "symbol,weight\nAAPL,2\n");
    let (code, _, stderr) =
        run(tranche().args(["plan", "new", "--targets", targets.to_str().unwrap()]).env("TRANCHE_LOG_FORMAT", "json"));
    assert_eq!(code, Some(65));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "the error is one JSON line: {stderr}");
    let error: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(error["level"], "ERROR");
    assert!(error["message"].as_str().unwrap().contains("weight 2 is above 1"), "{error}");

    let (_, _, stderr) = run(tranche().arg("account"));
    assert!(stderr.is_empty(), "text logs at the default level say nothing on success: {stderr}");
}

#[test]
fn every_error_names_its_fix_on_its_own_line_or_in_its_own_json_field() {
    let missing = std::env::temp_dir().join(format!("tranche-no-ledger-{}.sqlite", std::process::id()));
    let spec = format!("sqlite:{}", missing.display());
    let (code, stdout, stderr) = run(tranche().args(["ledger", "runs", "--ledger", &spec]));
    assert_eq!(code, Some(66), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].starts_with("error: there is no ledger at "), "{stderr}");
    assert!(lines[1].starts_with("fix: pass --ledger sqlite:PATH"), "{stderr}");

    let (code, _, stderr) = run(tranche().args(["--log-format", "json", "ledger", "runs", "--ledger", &spec]));
    assert_eq!(code, Some(66), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "the error and its fix are one JSON line: {stderr}");
    let error: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(error["level"], "ERROR");
    assert!(error["message"].as_str().unwrap().starts_with("there is no ledger at "), "{error}");
    assert!(!error["message"].as_str().unwrap().contains("fix:"), "{error}");
    assert!(error["fix"].as_str().unwrap().starts_with("pass --ledger sqlite:PATH"), "{error}");
    assert!(!missing.exists(), "reading never creates a ledger");
}

/// In JSON mode an error found while the command line and its variables are read is an ERROR
/// event too, whichever way JSON was asked for: they came out as plain text (the logs were not
/// set up yet).
#[test]
fn errors_in_reading_the_command_line_are_json_in_json_mode() {
    /// (arguments, a variable set)
    type Case<'a> = (&'a [&'a str], Option<(&'a str, &'a str)>);
    let cases: [Case<'_>; 3] = [
        (&["account"], Some(("TRANCHE_SEED", "seven"))),
        (&["--log-format", "json", "account", "--seed", "seven"], None),
        (&["--log-format=json", "account", "--no-such-flag"], None),
    ];
    for (args, variable) in cases {
        let mut cmd = tranche();
        cmd.args(args);
        if let Some((name, value)) = variable {
            cmd.env(name, value).env("TRANCHE_LOG_FORMAT", "json");
        }
        let (code, _, stderr) = run(&mut cmd);
        assert!(matches!(code, Some(64 | 78)), "{args:?}: {stderr}");
        assert!(!stderr.trim().is_empty(), "{args:?}: the error is said");
        for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
            let event: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {line}"));
            assert_eq!(event["level"], "ERROR", "{args:?}: {line}");
        }
    }
}

#[test]
fn with_json_logs_execute_progress_is_json_lines_too() {
    let plan = example("plan.json");
    let (code, stdout, stderr) = run(tranche().args(["--log-format", "json", "execute", plan.to_str().unwrap()]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("AAPL"), "the result table stays on stdout: {stdout}");
    let events: Vec<serde_json::Value> =
        stderr.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let progress: Vec<&serde_json::Value> = events.iter().filter(|e| e["target"] == "tranche::progress").collect();
    assert!(
        progress.iter().any(|e| e["progress"]["event"] == "filled" && e["progress"]["symbol"] == "AAPL"),
        "{stderr}"
    );
    assert!(progress.iter().all(|e| e["timestamp"].is_string() && e["level"] == "INFO"), "{stderr}");
}
