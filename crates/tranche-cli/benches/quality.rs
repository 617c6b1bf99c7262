//! Execution quality: the real `tranche sim run` binary over fixed seeds for the `smart`,
//! `predecessor` and `market` strategies, without and with light faults (1,000 seeds; 200 with
//! `--quick`). A plain `main`, not criterion: each run's JSON report is collected into
//! `target/bench-results/quality.json` for `cargo xtask bench`. Being a bench of this package, it
//! is built by the same `cargo bench` invocation as every other benchmark (one feature
//! resolution, one compile of the dependencies) and runs the binary cargo built beside it.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::process::Command;

/// (strategy, faults), in the order the page lists them.
const RUNS: &[(&str, &str)] = &[
    ("smart", "none"),
    ("predecessor", "none"),
    ("market", "none"),
    ("smart", "light"),
    ("predecessor", "light"),
    ("market", "light"),
];

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let seeds = if quick { "200" } else { "1000" };
    let mut runs = Vec::new();
    for (strategy, faults) in RUNS {
        let out = Command::new(env!("CARGO_BIN_EXE_tranche"))
            .args(["sim", "run", "--scenarios", seeds, "--strategy", strategy, "--faults", faults, "--json"])
            .output()
            .expect("the tranche binary runs");
        // Exit 3 (failure) with a report is a run that saw invariant violations: a finding the
        // page shows (with examples), not a failure of the benchmark.
        let reported = out.status.success() || (out.status.code() == Some(3) && !out.stdout.is_empty());
        assert!(reported, "sim run {strategy} {faults}: {}", String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("sim run --json prints one object");
        println!(
            "quality  {strategy:<12} faults {faults:<5}  mean slippage {:>6.2} bps  completion {:>5.1} %  violations {}",
            report["slippage_bps"]["mean"].as_f64().unwrap_or(f64::NAN),
            report["completion_rate"].as_f64().unwrap_or(f64::NAN) * 100.0,
            report["invariant_violations"]
        );
        runs.push(serde_json::json!({ "strategy": strategy, "faults": faults, "report": report }));
    }
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(
        |_| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        std::path::PathBuf::from,
    );
    let dir = target.join("bench-results");
    let report = serde_json::json!({ "seeds": seeds, "runs": runs });
    std::fs::create_dir_all(&dir).expect("create bench-results");
    std::fs::write(dir.join("quality.json"), serde_json::to_vec_pretty(&report).unwrap()).expect("write quality.json");
}
