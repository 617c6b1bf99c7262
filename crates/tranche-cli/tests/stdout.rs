//! Output to a reader that goes away (`tranche ... | head`, `2> >(head -1)`): the command
//! finishes as it would, with its own exit code, and says nothing of it (Rust's `println!`
//! panicked on a closed stdout: exit 101, and for `execute` before the report was written). A
//! closed stderr must not stop a run either (its progress is written while it trades).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;

use tranche_tests::example;

mod support;
use support::{at_emulator, start_emulator, temp_dir, tranche};

#[test]
fn a_closed_stdout_ends_nothing_early_and_panics_nothing() {
    // The 500-symbol plan's result, pretty-printed, is far more than a pipe holds.
    let dir = temp_dir("stdout");
    let report = dir.join("report.html");
    let mut child = tranche()
        .args(["execute", example("plan-500.json").to_str().unwrap(), "--json", "--quiet", "--report"])
        .arg(&report)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert_eq!(first.trim(), "{");
    // The reader is gone (dropped with the BufReader): every later write meets a closed pipe.
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let status = child.wait().unwrap();
    assert!(matches!(status.code(), Some(0 | 2)), "the run's own exit code: {status:?} {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let page = std::fs::read_to_string(&report).unwrap();
    assert!(!page.contains("in progress</h1>"), "the report was written with the result");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Progress goes to stderr while the run trades: a reader of stderr that stops after one line
/// must not stop the run. It finishes, and its whole result reaches stdout.
#[test]
fn a_closed_stderr_does_not_stop_a_run() {
    // At the emulator, in real time: progress comes as the run trades, after the reader left.
    let plan = example("plan-30.json");
    let (_emulator, url) = start_emulator(&plan);
    let dir = temp_dir("stderr");
    let ledger = format!("sqlite:{}", dir.join("ledger.sqlite").display());
    let mut cmd = tranche();
    at_emulator(
        cmd.args(["execute", plan.to_str().unwrap(), "--broker", "alpaca", "--ledger", &ledger, "--json"]),
        &url,
    );
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut first = String::new();
    BufReader::new(child.stderr.take().unwrap()).read_line(&mut first).unwrap();
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let status = child.wait().unwrap();
    assert!(matches!(status.code(), Some(0 | 2)), "the run's own exit code: {status:?} (first line: {first})");
    let result: serde_json::Value = serde_json::from_str(&stdout).expect("the whole result");
    assert_eq!(result["orders"].as_array().map(Vec::len), Some(30));
    let _ = std::fs::remove_dir_all(&dir);
}

/// An error reported on a stderr nobody reads (`2>&-` in a cron line, a supervisor that closed
/// it) ends the command with its own code: `eprintln!` panicked on the closed pipe (exit 101,
/// the documented code lost).
#[test]
fn an_error_on_a_closed_stderr_keeps_its_exit_code() {
    let dir = temp_dir("stderr-error");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let status = tranche()
        .args(["plan", "validate", dir.join("missing.json").to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(writer)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(66), "cannot read the plan file: {status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
