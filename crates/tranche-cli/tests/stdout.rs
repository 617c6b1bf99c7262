//! Output to a reader that goes away (`tranche ... | head`): the command finishes as it would,
//! with its own exit code, and says nothing of it (Rust's `println!` panicked on the closed
//! pipe: exit 101 and a panic message, and for `execute` before the report was written).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;

use tranche_tests::example;

mod support;
use support::{temp_dir, tranche};

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
