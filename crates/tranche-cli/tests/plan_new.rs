//! End-to-end: `tranche plan new` with the real binary on the embedded simulator; the plans it
//! writes pass `tranche plan validate` and execute on the same account.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

mod support;
use support::{run, s, temp_dir, tranche};

/// A fresh directory with a simulator state holding cash, AAPL and EDZ.
fn workspace(name: &str) -> PathBuf {
    let dir = temp_dir(&format!("plan-new-{name}"));
    std::fs::write(
        dir.join("state.toml"),
        "seed = 3\n[account]\nstarting_cash = \"50000\"\n\
         positions = [{ symbol = \"AAPL\", qty = \"100\" }, { symbol = \"EDZ\", qty = \"50\" }]\n",
    )
    .unwrap();
    dir
}

fn validate(plan: &Path) -> serde_json::Value {
    let (code, stdout, stderr) = run(tranche().args(["plan", "validate", "--json", s(plan)]));
    assert_eq!(code, Some(0), "plan validate accepts the new plan: {stdout}{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn a_plan_from_csv_targets_is_valid_and_executes_on_the_same_account() {
    let dir = workspace("csv");
    let (targets, state, plan) = (dir.join("targets.csv"), dir.join("state.toml"), dir.join("plan.json"));
    std::fs::write(&targets, "symbol,weight\nAAPL,0.3\nMSFT,0.2\nSPY,40%\n").unwrap();
    let (code, stdout, stderr) = run(tranche().args([
        "plan",
        "new",
        "--targets",
        s(&targets),
        "--sim-state",
        s(&state),
        "--out",
        s(&plan),
        "--plan-id",
        "csv-test-plan",
    ]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("SYMBOL"), "a summary table: {stdout}");
    assert!(stdout.contains("plan `csv-test-plan` written to"), "{stdout}");

    let verdict = validate(&plan);
    assert_eq!(verdict["plan_id"], "csv-test-plan");
    assert_eq!(verdict["items"], 4, "three targets and the unlisted EDZ");
    assert_eq!((verdict["buys"].as_u64(), verdict["sells"].as_u64()), (Some(2), Some(2)), "{verdict}");

    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    let edz = written["items"].as_array().unwrap().iter().find(|i| i["symbol"] == "EDZ").unwrap();
    assert_eq!((edz["action"].as_str(), edz["target_weight"].as_str()), (Some("SELL"), Some("0")), "sold to zero");
    assert_eq!(written["metadata"]["broker"], "sim");

    let (code, stdout, stderr) = run(tranche().args(["execute", s(&plan), "--sim-state", s(&state), "--quiet"]));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("success: 4 of 4 items completed"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_plan_from_json_targets_goes_to_stdout_and_keeps_unlisted_positions_on_request() {
    let dir = workspace("json");
    let (targets, state) = (dir.join("targets.json"), dir.join("state.toml"));
    std::fs::write(&targets, r#"[{"symbol": "AAPL", "weight": 0.25}, {"symbol": "QQQ", "weight": "0.5"}]"#).unwrap();
    let (code, stdout, stderr) = run(tranche()
        .args(["plan", "new", "--targets", s(&targets), "--keep-unlisted", "--min-trade", "50"])
        .env("TRANCHE_SIM_STATE", &state));
    assert_eq!(code, Some(0), "{stderr}");
    let plan_path = dir.join("plan.json");
    std::fs::write(&plan_path, &stdout).unwrap();
    validate(&plan_path);
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let actions: Vec<(&str, &str)> = plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["symbol"].as_str().unwrap(), i["action"].as_str().unwrap()))
        .collect();
    assert_eq!(actions, [("AAPL", "SELL"), ("QQQ", "BUY"), ("EDZ", "HOLD")], "{stdout}");
    assert!(plan["plan_id"].as_str().unwrap().starts_with("rebalance-"), "a generated plan id");

    std::fs::write(&targets, r#"{"AAPL": 0.5, "QQQ": 0.5}"#).unwrap();
    let (code, _, stderr) = run(tranche()
        .args(["plan", "new", "--targets", s(&targets), "--keep-unlisted"])
        .env("TRANCHE_SIM_STATE", &state));
    assert_eq!(code, Some(65), "kept EDZ leaves less than 100% for the targets: {stderr}");
    assert!(stderr.contains("with --keep-unlisted the positions not in the targets (EDZ)"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_targets_exit_65_listing_every_problem() {
    let dir = workspace("bad");
    let targets = dir.join("targets.csv");
    std::fs::write(&targets, "symbol,weight\nAAPL,0.7\nBAD SYMBOL,0.1\nMSFT,-0.2\naapl,0.3\nSPY,lots\nQQQ,0.2\n")
        .unwrap();
    let (code, stdout, stderr) = run(tranche().args(["plan", "new", "--targets", s(&targets)]));
    assert_eq!(code, Some(65), "{stderr}");
    assert!(stdout.is_empty(), "no plan: {stdout}");
    for want in [
        "the targets have 5 problems",
        "line 3: symbol `BAD SYMBOL`",
        "line 4: weight -0.2 is negative",
        "line 5: duplicate symbol AAPL: already at line 2",
        "line 6: `lots` is not a decimal number",
        "the weights add up to 1.3; at most 1 is allowed",
    ] {
        assert!(stderr.contains(want), "missing `{want}` in {stderr}");
    }

    let (code, _, stderr) = run(tranche().args(["plan", "new", "--targets", s(&dir.join("missing.csv"))]));
    assert_eq!(code, Some(66), "{stderr}");
    let (code, _, stderr) = run(tranche().args(["plan", "new", "--targets", s(&targets), "--min-trade", "-5"]));
    assert_eq!(code, Some(64), "{stderr}");
    // A plan id refused as a plan file's would be: empty, a control character, past 256.
    let good = dir.join("good.csv");
    std::fs::write(&good, "symbol,weight\nAAPL,0.5\n").unwrap();
    for (id, said) in [("", "must not be empty"), ("plan\u{1b}[2J", "control characters"), (&"p".repeat(257), "256")] {
        let (code, _, stderr) = run(tranche().args(["plan", "new", "--targets", s(&good), "--plan-id", id]));
        assert_eq!(code, Some(64), "{id:?}: {stderr}");
        assert!(stderr.contains("--plan-id must") && stderr.contains(said), "{id:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Targets saved by Excel ("CSV UTF-8" writes a byte-order mark) or PowerShell (UTF-16) read
/// as the plan files do; other bytes are an invalid input (65) that names the byte.
#[test]
fn targets_with_a_byte_order_mark_or_in_utf16_read() {
    let dir = workspace("encodings");
    let state = dir.join("state.toml");
    let text = "symbol,weight\r\nAAPL,0.5\r\nQQQ,0.5\r\n";
    let mut bom = vec![0xEF, 0xBB, 0xBF];
    bom.extend_from_slice(text.as_bytes());
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    for (name, bytes) in [("bom.csv", bom), ("utf16.csv", utf16)] {
        let targets = dir.join(name);
        std::fs::write(&targets, bytes).unwrap();
        let (code, stdout, stderr) =
            run(tranche().args(["plan", "new", "--targets", s(&targets)]).env("TRANCHE_SIM_STATE", &state));
        assert_eq!(code, Some(0), "{name}: {stderr}");
        let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let symbols: Vec<&str> =
            plan["items"].as_array().unwrap().iter().map(|i| i["symbol"].as_str().unwrap()).collect();
        assert_eq!(symbols, ["AAPL", "QQQ", "EDZ"], "{name}: {stdout}");
    }
    let latin1 = dir.join("latin1.csv");
    std::fs::write(&latin1, b"symbol,weight\nAAPL,0.5 \xA0\n").unwrap();
    let (code, _, stderr) =
        run(tranche().args(["plan", "new", "--targets", s(&latin1)]).env("TRANCHE_SIM_STATE", &state));
    assert_eq!(code, Some(65), "{stderr}");
    assert!(stderr.contains("not UTF-8 text (byte 23 of the file is not)"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A target the broker does not list as an active, tradable asset (a typo: `AAPLL`) is refused
/// before any plan is made: the held AAPL would be unlisted and sold to zero, and the typo's buy
/// would fail alone at execution. A weight of 0 for such a name (a delisted holding to sell)
/// stays allowed.
#[test]
fn a_target_the_broker_does_not_list_is_refused_before_a_plan_is_made() {
    let dir = workspace("unknown");
    let state = dir.join("state.toml");
    let targets = dir.join("targets.csv");
    std::fs::write(&targets, "symbol,weight\nAAPLL,0.3\nMSFT,0.2\nZZZZQ,0\n").unwrap();
    let (code, stdout, stderr) =
        run(tranche().args(["plan", "new", "--targets", s(&targets)]).env("TRANCHE_SIM_STATE", &state));
    assert_eq!(code, Some(65), "{stderr}");
    assert!(stdout.is_empty(), "no plan: {stdout}");
    assert!(stderr.contains("AAPLL") && !stderr.contains("ZZZZQ"), "{stderr}");
    assert!(stderr.contains("not an active, tradable asset at the broker"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
