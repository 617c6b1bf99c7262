//! End-to-end: the real `tranche` binary validating plan files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use tranche_tests::example;

fn tranche(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tranche")).args(args).output().expect("the binary runs")
}

#[test]
fn valid_plan_exits_zero_with_a_summary() {
    let path = example("plan.json");
    let out = tranche(&["plan", "validate", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("valid plan `example-small-20261120` with 5 items"), "{stdout}");
}

#[test]
fn broken_plan_exits_65_listing_every_problem() {
    let path = example("broken-plan.json");
    let out = tranche(&["plan", "validate", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the plan has 11 problems"), "{stderr}");
    assert!(stderr.contains("items[1].symbol: duplicate symbol AAPL"), "{stderr}");
    assert!(stderr.contains("items[2].action"), "{stderr}");
}

#[test]
fn json_verdict_is_machine_readable() {
    let path = example("broken-plan.json");
    let out = tranche(&["plan", "validate", "--json", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65));
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict["valid"], false);
    assert_eq!(verdict["problems"].as_array().unwrap().len(), 11);
}

#[test]
fn missing_file_and_non_json_are_clear_errors() {
    let out = tranche(&["plan", "validate", "/nonexistent/plan.json"]);
    assert_eq!(out.status.code(), Some(66));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read plan file"));

    let dir = std::env::temp_dir().join(format!("tranche-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{ not json").unwrap();
    let out = tranche(&["plan", "validate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid JSON (line 1"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_sell_of_more_than_the_stated_position_is_a_plan_error_listed_with_the_others() {
    let dir = std::env::temp_dir().join(format!("tranche-cli-oversell-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("oversell.json");
    let plan = serde_json::json!({
        "plan_id": "oversell", "correlation_id": "c", "causation_id": "t", "timestamp": "2026-03-02T14:40:00Z",
        "total_portfolio_value": "40000",
        "items": [
            {"symbol": "EDZ", "action": "SELL", "trade_amount": "-5000000", "current_value": "20000",
             "current_weight": "0.5", "target_weight": "0", "target_value": "0"},
            {"symbol": "AAPL", "action": "BUY", "trade_amount": "-1", "current_value": "0",
             "current_weight": "0", "target_weight": "0.5", "target_value": "20000"}
        ]
    });
    std::fs::write(&path, plan.to_string()).unwrap();
    let out = tranche(&["plan", "validate", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the plan has 2 problems"), "{stderr}");
    assert!(stderr.contains("items[0].trade_amount: SELL of 5000000 is more than the 20000"), "{stderr}");
}

/// A plan saved by an editor or a shell as UTF-8 with a byte-order mark, or as UTF-16 (what
/// PowerShell's `>` writes), is the same plan; text in no encoding a plan is saved in is an
/// invalid plan (65) that says so, not "cannot read" (66) or a JSON error at line 1, column 1.
#[test]
fn a_plan_saved_with_a_byte_order_mark_or_as_utf16_reads_and_other_bytes_are_named() {
    let text = std::fs::read_to_string(example("plan.json")).unwrap();
    let dir = std::env::temp_dir().join(format!("tranche-plan-encodings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut bom = vec![0xEF, 0xBB, 0xBF];
    bom.extend_from_slice(text.as_bytes());
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    let mut utf16_be = vec![0xFE, 0xFF];
    utf16_be.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
    for (name, bytes) in [("bom.json", bom), ("utf16le.json", utf16), ("utf16be.json", utf16_be)] {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = tranche(&["plan", "validate", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let latin1 = dir.join("latin1.json");
    std::fs::write(&latin1, b"{\"plan_id\": \"caf\xe9\"}").unwrap();
    let out = tranche(&["plan", "validate", latin1.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not UTF-8"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
