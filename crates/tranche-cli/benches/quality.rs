//! Execution quality: the real `tranche sim run` binary over fixed seeds (1,000; 200 with
//! `--quick`) for the `smart`, `predecessor` and `market` strategies on the realistic market,
//! without and with light faults; the same three on the quiet market (the named profile that
//! flatters passive orders); and the variants of `smart`'s pricing, each behind its
//! configuration. Every figure gets its 95 % confidence interval, and `smart` is compared with
//! the others seed by seed and item by item (`tranche::quality`). A plain `main`, not
//! criterion: the figures go to `target/bench-results/quality.json` for `cargo xtask bench`.
//! Being a bench of this package, it is built by the same `cargo bench` invocation as every
//! other benchmark and runs the binary cargo built beside it.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use tranche::quality::{self, Estimate};

/// (strategy, faults, market), in the order the page lists them.
const RUNS: &[(&str, &str, &str)] = &[
    ("smart", "none", "realistic"),
    ("predecessor", "none", "realistic"),
    ("market", "none", "realistic"),
    ("smart", "light", "realistic"),
    ("predecessor", "light", "realistic"),
    ("market", "light", "realistic"),
    ("smart", "none", "quiet"),
    ("predecessor", "none", "quiet"),
    ("market", "none", "quiet"),
];

/// `smart`'s variants: (name, what it changes, its `[engine]` settings).
const VARIANTS: &[(&str, &str, &str)] = &[
    ("adaptive", "the default", ""),
    (
        "schedule",
        "the first `smart`: 3 re-pegs every 10 s from 0.4 of the spread",
        "smart_pricing = \"schedule\"\ninitial_aggressiveness = \"0.4\"",
    ),
    ("no imbalance", "sizes ignored", "imbalance_weight = \"0\""),
    ("no quote re-pegs", "re-pegs on the timer only", "repeg_on_quote = false"),
    ("horizon 30 s", "escalation 30 s after the first order", "working_horizon = 30.0"),
    ("horizon 60 s", "escalation 60 s after the first order", "working_horizon = 60.0"),
    ("start at 0.4", "first limit 0.4 of the spread from the near side", "initial_aggressiveness = \"0.4\""),
    ("max spread 500 bps", "quotes up to 500 bps are priced from", "max_spread = \"500\""),
];

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let seeds = if quick { "200" } else { "1000" };
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(
        |_| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        std::path::PathBuf::from,
    );
    let dir = target.join("bench-results");
    std::fs::create_dir_all(&dir).expect("create bench-results");
    let mut reports = BTreeMap::new();
    let mut runs = Vec::new();
    for (strategy, faults, market) in RUNS {
        let report = sim_run(seeds, strategy, faults, market, None);
        runs.push(json!({ "strategy": strategy, "faults": faults, "market": market, "summary": summary(&report) }));
        reports.insert((*strategy, *faults, *market), report);
    }
    let mut comparisons = Vec::new();
    for faults in ["none", "light"] {
        let of = |strategy| &reports[&(strategy, faults, "realistic")];
        comparisons.push(compare(faults, of("smart"), of("predecessor"), of("market")));
    }
    let mut variants = Vec::new();
    for (name, what, settings) in VARIANTS {
        let path = dir.join(format!("variant-{}.toml", name.replace(' ', "-")));
        std::fs::write(&path, format!("[engine]\n{settings}\n")).expect("write the variant's settings");
        let report = sim_run(seeds, "smart", "none", "realistic", Some(&path));
        let versus = &reports[&("predecessor", "none", "realistic")];
        let vs_predecessor = quality::paired_difference(&slippage_by_item(&report), &slippage_by_item(versus));
        variants.push(json!({ "name": name, "what": what, "settings": settings, "summary": summary(&report),
            "vs_predecessor": vs_predecessor }));
    }
    let example = example_five(&dir);
    let page = json!({ "seeds": seeds, "runs": runs, "comparisons": comparisons, "variants": variants,
        "example_5": example });
    std::fs::write(dir.join("quality.json"), serde_json::to_vec_pretty(&page).unwrap()).expect("write quality.json");
}

/// The settings `smart` had before its adaptive pricing and the request budget (issue 20): the
/// fixed schedule from 0.4 of the spread, 8 items at a time.
const BEFORE: &str = "[engine]\nsmart_pricing = \"schedule\"\ninitial_aggressiveness = \"0.4\"\nconcurrency = 8\n";

/// The 5-symbol example (`tranche execute examples/plan.json`, the README's first command) in
/// virtual seconds: seed 1 (the command as written) and the mean of seeds 1..=20, on the quiet
/// market it runs on by default and on the realistic one, with today's settings and before.
fn example_five(dir: &Path) -> Value {
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/plan.json");
    let mut out = serde_json::Map::new();
    for (market, model) in [("quiet", ""), ("realistic", "[simulator.market]\nmodel = \"realistic\"\n")] {
        for (when, engine) in [("today", "[engine]\n"), ("before", BEFORE)] {
            let path = dir.join(format!("example-5-{market}-{when}.toml"));
            std::fs::write(&path, format!("{engine}{model}")).expect("write the example's settings");
            let secs: Vec<f64> = (1..=20).map(|seed| execute_secs(&plan, &path, seed)).collect();
            let mean = secs.iter().sum::<f64>() / 20.0;
            out.insert(format!("{market}_{when}"), json!({ "seed_1": secs[0], "mean_20": mean }));
        }
    }
    Value::Object(out)
}

/// Virtual seconds from start to result of `tranche execute PLAN --seed SEED` on the simulator.
fn execute_secs(plan: &Path, config: &Path, seed: u32) -> f64 {
    let out = Command::new(env!("CARGO_BIN_EXE_tranche"))
        .arg("execute")
        .arg(plan)
        .args(["--json", "--quiet", "--seed", &seed.to_string(), "--config"])
        .arg(config)
        .output()
        .expect("the tranche binary runs");
    let result: Value = serde_json::from_slice(&out.stdout).expect("execute --json prints the result");
    let time = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_default()).expect("a time");
    let (start, end) = (time(&result["metadata"]["started_at"]), time(&result["execution_timestamp"]));
    #[allow(clippy::cast_precision_loss)]
    let secs = (end - start).num_milliseconds() as f64 / 1000.0;
    secs
}

/// `tranche sim run --json` with the given settings.
fn sim_run(seeds: &str, strategy: &str, faults: &str, market: &str, config: Option<&Path>) -> Value {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tranche"));
    command.args(["sim", "run", "--scenarios", seeds, "--strategy", strategy, "--faults", faults]);
    command.args(["--market", market, "--json"]);
    if let Some(path) = config {
        command.arg("--config").arg(path);
    }
    let out = command.output().expect("the tranche binary runs");
    // Exit 3 (failure) with a report is a run that saw invariant violations: a finding the
    // page shows (with examples), not a failure of the benchmark.
    let reported = out.status.success() || (out.status.code() == Some(3) && !out.stdout.is_empty());
    assert!(reported, "sim run {strategy} {faults} {market}: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("sim run --json prints one object");
    let s = &report["slippage_bps"];
    println!(
        "quality  {strategy:<12} {market:<9} faults {faults:<5} {}  mean slippage {:>6.2} bps  p95 {:>6.2}  {:>5.1} s",
        config.map_or(String::new(), |p| p.display().to_string()),
        s["mean"].as_f64().unwrap_or(f64::NAN),
        s["p95"].as_f64().unwrap_or(f64::NAN),
        report["mean_completion_secs"].as_f64().unwrap_or(f64::NAN),
    );
    report
}

/// Every filled item's slippage, by (seed, index).
fn slippage_by_item(report: &Value) -> BTreeMap<(u64, u64), f64> {
    items(report, "items")
        .map(|i| ((i["seed"].as_u64().unwrap(), i["index"].as_u64().unwrap()), f(&i["slippage_bps"])))
        .collect()
}

/// Every scenario's time, by seed.
fn secs_by_seed(report: &Value) -> BTreeMap<u64, f64> {
    items(report, "runs").map(|r| (r["seed"].as_u64().unwrap(), f(&r["secs"]))).collect()
}

fn items<'a>(report: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    report[key].as_array().map_or(&[][..], Vec::as_slice).iter()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// One batch's figures with their intervals.
fn summary(report: &Value) -> Value {
    let slippage: Vec<f64> = slippage_by_item(report).into_values().collect();
    let secs: Vec<f64> = secs_by_seed(report).into_values().collect();
    let requests: Vec<f64> = items(report, "runs").map(|r| f(&r["requests"])).collect();
    let orders: Vec<f64> = items(report, "runs").map(|r| f(&r["orders"])).collect();
    json!({
        "items": slippage.len(),
        "slippage_mean": quality::mean(&slippage),
        "slippage_p95": quality::percentile(&slippage, 0.95),
        "secs": quality::mean(&secs),
        "requests_per_order": quality::ratio_of_means(&requests, &orders),
        "completion_rate": report["completion_rate"],
        "requests_by_kind": report["requests_by_kind"],
        "orders": orders.iter().sum::<f64>(),
        "scenarios": secs.len(),
        "invariant_violations": report["invariant_violations"],
        "violation_examples": report["violation_examples"],
    })
}

/// `smart` against the predecessor (paired differences: slippage item by item, its 95th
/// percentile by a paired bootstrap, time seed by seed) and against market orders (the ratio of
/// mean slippages, item by item).
fn compare(faults: &str, smart: &Value, predecessor: &Value, market: &Value) -> Value {
    let (s, p, m) = (slippage_by_item(smart), slippage_by_item(predecessor), slippage_by_item(market));
    let slippage: Estimate = quality::paired_difference(&s, &p);
    let p95 = quality::paired_percentile_difference(&s, &p, 0.95, 1000);
    let time = quality::paired_difference(&secs_by_seed(smart), &secs_by_seed(predecessor));
    let ratio = quality::paired_ratio(&s, &m);
    json!({ "faults": faults, "slippage_vs_predecessor": slippage, "p95_vs_predecessor": p95,
        "secs_vs_predecessor": time, "slippage_ratio_to_market": ratio })
}
