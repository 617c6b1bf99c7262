//! `cargo xtask bench [--quick]`: runs every benchmark and the execution-quality runs, then
//! rewrites `docs/benchmarks.md` with the figures, each beside its goal, plus the machine, the
//! toolchain and the date. A figure that misses its goal says so; a benchmark that did not run
//! fails the command rather than leaving an old figure in place.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// A criterion benchmark and what the page says about it.
struct Criterion {
    bench: &'static str,
    id: &'static str,
    what: &'static str,
    unit: Unit,
    goal: Goal,
}

/// How a criterion figure is shown.
#[derive(Clone, Copy)]
enum Unit {
    /// Elements per second (the bench declares element throughput), with the element's name.
    Rate(&'static str),
    /// Time per iteration.
    Time,
}

/// What a figure is held to.
#[derive(Clone, Copy)]
enum Goal {
    /// At least this many elements per second.
    MinRate(f64, &'static str),
    /// At most this many nanoseconds per iteration.
    MaxNanos(f64, &'static str),
    /// Recorded, no goal set.
    None(&'static str),
}

const CRITERION: &[Criterion] = &[
    Criterion {
        bench: "simulation",
        id: "sim/quote_events_100_symbols",
        what: "quote updates of 100 subscribed symbols over 60 simulated seconds at 10 updates/s each",
        unit: Unit::Rate("events"),
        goal: Goal::MinRate(1e6, "≥ 1 M quote events/s on one core"),
    },
    Criterion {
        bench: "simulation",
        id: "sim/quote_events_100_symbols_with_resting_orders",
        what: "the same with a resting buy limit at the bid in every symbol (queue-position matching on every update)",
        unit: Unit::Rate("events"),
        goal: Goal::MinRate(1e6, "≥ 1 M quote events/s on one core"),
    },
    Criterion {
        bench: "codec",
        id: "pricing/decode_json_1000_quotes",
        what: "JSON frames of 10 quotes to typed quotes (a single-pass scanner for plain quote arrays, the general deserializer for anything else; exact decimals; symbols validated once per connection)",
        unit: Unit::Rate("quotes"),
        goal: Goal::MinRate(2e6, "≥ 2 M quotes/s per core"),
    },
    Criterion {
        bench: "codec",
        id: "pricing/decode_msgpack_1000_quotes",
        what: "msgpack frames of 10 quotes (extension −1 timestamps) to typed quotes, read directly from the bytes (no value tree; floats to the decimals they write without formatting; anything but plain quotes through the general decoder)",
        unit: Unit::Rate("quotes"),
        goal: Goal::MinRate(2e6, "≥ 2 M quotes/s per core"),
    },
    Criterion {
        bench: "codec",
        id: "pricing/store_update_1000_quotes",
        what: "latest-wins update of the per-symbol quote store",
        unit: Unit::Rate("updates"),
        goal: Goal::None("none set"),
    },
    Criterion {
        bench: "trade_updates",
        id: "alpaca/decode_trade_updates_1000",
        what: "`trade_updates` fill frames (full order object) to domain updates, the adapter's stream path (the adapter asks for JSON; msgpack is not requested)",
        unit: Unit::Rate("updates"),
        goal: Goal::MinRate(
            1e5,
            "≥ 100 k updates/s (a plan yields a few per order; Alpaca streams at most hundreds per second)",
        ),
    },
    Criterion {
        bench: "fills",
        id: "ledger_sqlite/record_fill_durable",
        what: "one fill as its own transaction, WAL with `synchronous = FULL` (on disk when the call returns)",
        unit: Unit::Time,
        goal: Goal::MaxNanos(
            5e6,
            "≤ 5 ms per fill (a rebalance has at most a few hundred fills: durability under a second per run)",
        ),
    },
];

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

pub(crate) fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    eprintln!("==> {program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!("`{program} {}` failed ({})", args.join(" "), out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))
}

/// Nanoseconds per iteration and elements per iteration of a criterion benchmark.
pub(crate) fn criterion_result(target: &Path, id: &str) -> Result<(f64, Option<f64>), String> {
    let dir = target.join("criterion").join(id).join("new");
    let estimates = read_json(&dir.join("estimates.json"))?;
    // Criterion's own headline figure: the slope of its linear sampling when it has one, else the mean.
    let mean = estimates["slope"]["point_estimate"]
        .as_f64()
        .or_else(|| estimates["mean"]["point_estimate"].as_f64())
        .ok_or_else(|| format!("{id}: no estimate in criterion's results"))?;
    let elements = read_json(&dir.join("benchmark.json"))?["throughput"]["Elements"].as_f64();
    Ok((mean, elements))
}

pub(crate) fn human_rate(per_sec: f64) -> String {
    if per_sec >= 1e6 {
        format!("{:.2} M", per_sec / 1e6)
    } else if per_sec >= 1e3 {
        format!("{:.1} k", per_sec / 1e3)
    } else {
        format!("{per_sec:.1}")
    }
}

fn human_time(nanos: f64) -> String {
    if nanos >= 1e6 {
        format!("{:.2} ms", nanos / 1e6)
    } else if nanos >= 1e3 {
        format!("{:.1} µs", nanos / 1e3)
    } else {
        format!("{nanos:.0} ns")
    }
}

fn verdict(meets: bool) -> &'static str {
    if meets {
        "meets"
    } else {
        "**misses**"
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| t.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or_else(String::new, |kb| format!(", {:.0} GiB", kb / 1024.0 / 1024.0));
    let rustc = run("rustc", &["--version"]).map_or_else(|_| "rustc unknown".into(), |s| s.trim().to_owned());
    let date = run("date", &["-u", "+%Y-%m-%d"]).map_or_else(|_| "unknown date".into(), |s| s.trim().to_owned());
    format!("{cpu}, {cores} cores{memory}; {rustc}; date {date}")
}

/// Runs everything and rewrites the page. `quick` shortens every run (criterion's `--quick`,
/// 200 instead of 1,000 seeds, a shorter engine run).
pub fn bench(quick: bool) -> Result<(), String> {
    let root = workspace_root();
    let target = target_dir(&root);
    // Every benchmark is built by one invocation and run by invocations selecting the same
    // packages and features: one feature resolution, so the dependencies compile once.
    let select = ["--locked", "--workspace", "--features", "tranche/alpaca,tranche/emulator"];
    run("cargo", &[&["bench", "--benches", "--no-run"][..], &select].concat())?;
    let run_bench = |name: &str| -> Result<(), String> {
        let mut args = [&["bench"][..], &select, &["--bench", name, "--"]].concat();
        if quick {
            args.push("--quick");
        }
        run("cargo", &args).map(|_| ())
    };
    // The benches that write their figures as JSON for this page.
    let bench = |name: &str| -> Result<Value, String> {
        run_bench(name)?;
        read_json(&target.join("bench-results").join(format!("{name}.json")))
    };
    let mut criterion: Vec<&str> = CRITERION.iter().map(|c| c.bench).collect();
    criterion.dedup();
    for name in criterion {
        run_bench(name)?;
    }
    // On the frames the codec bench just decoded; a failure is reported on the page, not fatal.
    let alpaca_py = crate::alpaca_py::measure(&root, &target, quick);
    let engine = bench("engine")?;
    let allocations = bench("allocations")?;
    let rate_limit = bench("rate_limit")?;
    let quality = bench("quality")?;
    let cold_start = crate::cold_start::measure(&root, &target, quick);
    let seeds = quality["seeds"].as_str().unwrap_or("?").to_owned();

    let measured = Measured { engine, allocations, rate_limit, quality, alpaca_py, cold_start };
    let page = render(quick, &seeds, &target, &measured)?;
    let path = root.join("docs").join("benchmarks.md");
    std::fs::write(&path, page).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("<== wrote {}", path.display());
    Ok(())
}

/// Everything measured outside criterion, for the page.
struct Measured {
    engine: Value,
    allocations: Value,
    rate_limit: Value,
    /// `quality.json`: the seeds and, per (strategy, faults), `tranche sim run --json`'s report.
    quality: Value,
    alpaca_py: Result<crate::alpaca_py::Measurement, String>,
    cold_start: Result<crate::cold_start::ColdStart, String>,
}

fn render(quick: bool, seeds: &str, target: &Path, measured: &Measured) -> Result<String, String> {
    let mut page = String::new();
    let mode = if quick {
        "`cargo xtask bench --quick` (criterion's quick mode: fewer samples, wider error)"
    } else {
        "`cargo xtask bench`"
    };
    let _ = writeln!(
        page,
        "# Benchmarks\n\nGenerated by {mode}; do not edit by hand. Each figure stands beside its goal, and a\nfigure that misses its goal says so.\n\nMachine: {}.\n",
        machine()
    );

    render_engine(&mut page, &measured.engine);
    render_allocations(&mut page, &measured.allocations);
    render_criterion(&mut page, target)?;
    crate::alpaca_py::render(&mut page, target, &measured.alpaca_py)?;
    render_quality(&mut page, seeds, &measured.quality);
    render_rate_limit(&mut page, &measured.rate_limit);
    crate::cold_start::render(&mut page, &measured.cold_start);
    Ok(page)
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn render_engine(page: &mut String, engine: &Value) {
    page.push_str("## Engine cost (`cargo bench -p tranche --bench engine`)\n\n");
    let d = &engine["decision"];
    let _ = writeln!(
        page,
        "The engine core driven synchronously against the simulator core: 100 working symbols quoting every\nmillisecond on average ({:.0} quotes per virtual second over {} virtual seconds). Every `handle` call\nis timed. A re-peg decision is the timer input whose output re-prices a working order (a replace, or\na cancel before a new order). The quote that moves a price is stored on arrival and read when the\nre-peg fires, so quote-to-replace cost is the sum of the two rows. Percentiles are exact (every\nsample sorted).\n",
        num(&d["quotes_per_virtual_second"]),
        d["virtual_seconds"]
    );
    page.push_str(
        "| input | samples | p50 | p99 | p99.9 | max | goal | verdict |\n|---|---|---|---|---|---|---|---|\n",
    );
    for (name, key, goal_ns) in [("quote update", "quote", 10_000.0), ("re-peg decision", "repeg", 50_000.0)] {
        let p = &d[key];
        let p99 = num(&p["p99_ns"]);
        let _ = writeln!(
            page,
            "| {name} | {} | {} | {} | {} | {} | p99 ≤ {} | {} |",
            p["samples"],
            human_time(num(&p["p50_ns"])),
            human_time(p99),
            human_time(num(&p["p999_ns"])),
            human_time(num(&p["max_ns"])),
            human_time(goal_ns),
            verdict(p99 <= goal_ns && p["samples"].as_u64().unwrap_or(0) > 0)
        );
    }
    let p = &engine["plan_100"];
    let cpu = p["cpu_ms_median"].as_f64().map_or_else(|| "n/a".into(), |c| format!("{c:.1} ms"));
    let wall = num(&p["wall_ms_median"]);
    let _ = writeln!(
        page,
        "\nA 100-symbol plan (50 buys, 50 sells of $5,000) through the async driver on the simulator with zero\nlatency, median of {} runs: **{wall:.1} ms** wall, {cpu} CPU, {} orders, {} items filled.\nGoal: under 1 s of engine time per 100-symbol plan: {}.\n",
        p["runs"],
        p["orders_per_run"],
        p["filled_items"],
        verdict(wall < 1000.0)
    );
}

fn render_allocations(page: &mut String, allocations: &Value) {
    let runs = allocations["runs"].as_array().map_or(&[][..], Vec::as_slice);
    let per_order: Vec<f64> = runs.iter().map(|r| num(&r["allocations_per_order"])).collect();
    let bytes: Vec<f64> = runs.iter().map(|r| num(&r["bytes_per_order"])).collect();
    let worst = per_order.iter().copied().fold(f64::NAN, f64::max);
    #[allow(clippy::cast_precision_loss)]
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let _ = writeln!(
        page,
        "Heap allocations (`cargo bench -p tranche --bench allocations`, a separate binary under a counting\nallocator, so the timings above are untouched): the same 100-symbol plan, {} seeds, whole process\n(engine, driver tasks and the simulated broker answering them). **{:.0} allocations and {:.1} KiB per\norder** on average, {worst:.0} in the worst seed. Goal: ≤ 2,000 allocations per order (nothing per\norder should grow with the plan): {}.\n",
        runs.len(),
        mean(&per_order),
        mean(&bytes) / 1024.0,
        verdict(worst <= 2_000.0),
    );
}

fn render_rate_limit(page: &mut String, rate_limit: &Value) {
    let _ = writeln!(
        page,
        "## Rate-limit bound (`cargo bench -p tranche --features alpaca,emulator --bench rate_limit`)\n\nExample plans through the Alpaca adapter, the market-data stream and the emulator over loopback, on\nthe realistic market: {} ms round trip on every REST call, {} ms to deliver a trade update, and\nAlpaca's budget of {} requests per minute enforced by the emulator (a bucket of {} refilled at {} a\nminute; 429 past it). The adapter spends what the server's `X-Ratelimit-Remaining` says remains\n(less the requests on the way), and the engine plans its own requests against 190 a minute: first\norders first, escalations next, re-pegs only with room to spare. The lower bound is for the least\nrequests the plan needs (its {} fixed reads and one order per trade): those past the first {} wait\n60 s / {} each, plus four round trips and two trade-update deliveries on the critical path. The\n500-symbol plan (`examples/plan-500.json`) streams its quotes without the free feed's 30-symbol\nlimit. Wall clock, real time.\n",
        rate_limit["round_trip_ms"],
        rate_limit["update_latency_ms"],
        rate_limit["per_minute"],
        rate_limit["per_minute"],
        rate_limit["per_minute"],
        rate_limit["fixed_reads"],
        rate_limit["per_minute"],
        rate_limit["per_minute"],
    );
    page.push_str("| plan | strategy | completion | trades filled | mean slippage | Trading API requests (least needed) | data requests | refused (429) | lower bound | completion ÷ bound | goal | verdict |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for run in rate_limit["runs"].as_array().map_or(&[][..], Vec::as_slice) {
        let secs = num(&run["completion_secs"]);
        let bound = num(&run["floor_bound_secs"]);
        let refused = run["refused"].as_u64().unwrap_or(u64::MAX);
        let all = run["filled_items"] == run["trades"];
        let large = run["plan"] == "plan-500.json";
        let (goal, meets) = match (large, run["strategy"].as_str()) {
            (true, _) => ("≤ 1.5 × bound, no 429, every trade filled", secs <= 1.5 * bound && refused == 0 && all),
            (false, Some("market")) => ("≤ 5 × bound, no 429", secs <= 5.0 * bound && refused == 0),
            _ => (
                "no 429, every trade filled (the rest is passive working: a 45 s horizon per phase)",
                refused == 0 && all,
            ),
        };
        let data = num(&run["data_requests"]);
        let _ = writeln!(
            page,
            "| `{}` | `{}` | {secs:.2} s | {} of {} | {:.2} bps | {} ({}) | {data:.0} | {refused} | {bound:.2} s | {:.2} × | {goal} | {} |",
            run["plan"].as_str().unwrap_or("?"),
            run["strategy"].as_str().unwrap_or_default(),
            run["filled_items"],
            run["trades"],
            num(&run["mean_slippage_bps"]),
            num(&run["requests"]) - data,
            run["floor_requests"],
            secs / bound,
            verdict(meets),
        );
    }
    page.push('\n');
}

fn render_criterion(page: &mut String, target: &Path) -> Result<(), String> {
    page.push_str("## Throughput (criterion)\n\n| benchmark | what it measures | result | goal | verdict |\n|---|---|---|---|---|\n");
    for c in CRITERION {
        let (nanos, elements) = criterion_result(target, c.id)?;
        let (result, meets) = match c.unit {
            Unit::Rate(what) => {
                let rate = elements.unwrap_or(1.0) * 1e9 / nanos;
                let text = format!("{} {what}/s ({} per iteration)", human_rate(rate), human_time(nanos));
                let meets = match c.goal {
                    Goal::MinRate(min, _) => Some(rate >= min),
                    Goal::MaxNanos(max, _) => Some(nanos <= max),
                    Goal::None(_) => None,
                };
                (text, meets)
            }
            Unit::Time => {
                let meets = match c.goal {
                    Goal::MaxNanos(max, _) => Some(nanos <= max),
                    Goal::MinRate(min, _) => Some(1e9 / nanos >= min),
                    Goal::None(_) => None,
                };
                (format!("{} ({}/s)", human_time(nanos), human_rate(1e9 / nanos)), meets)
            }
        };
        let goal = match c.goal {
            Goal::MinRate(_, text) | Goal::MaxNanos(_, text) | Goal::None(text) => text,
        };
        let _ =
            writeln!(page, "| `{}` | {} | {result} | {goal} | {} |", c.id, c.what, meets.map_or("recorded", verdict));
    }
    Ok(())
}

/// `value [low, high]` with `digits` decimals and a unit.
fn ci(e: &Value, digits: usize, unit: &str) -> String {
    format!("{:.digits$}{unit} [{:.digits$}, {:.digits$}]", num(&e["value"]), num(&e["low"]), num(&e["high"]))
}

fn render_quality(page: &mut String, seeds: &str, quality: &Value) {
    let _ = writeln!(
        page,
        "\n## Execution quality (`tranche sim run --scenarios {seeds}`)\n\nSeeds 1..={seeds} of `tranche::simulation::scenario`: random plans of 1 to 8 items (buys, partial sells,\nliquidations, holds) over mega and large caps, small and sub-dollar names, broad, thin and leveraged\nETFs; default engine settings. Slippage is per filled item against the mid when the item started\n(positive is worse). Every figure has its 95 % confidence interval in brackets: means by the normal\ninterval, the 95th percentile by order statistics, requests per order by the delta method over\nruns. `light` faults: lost and delayed trade updates, stream drops, 429s and 5xx answers, timeouts\nafter the broker acted. Requests per order include the run's fixed reads (account, clock,\npositions, open orders, assets, REST quotes for sizing); the floor is 1.0.\n\nThe **realistic** market (`tranche_sim::MarketModel::Realistic`, the default of `tranche sim run`)\nhas informed flow (passive fills come before adverse moves), a quote imbalance that foretells the\nnext move, the square-root impact of our own orders, and spreads, volatility and volume by\nliquidity class; see `docs/simulator.md`. The **quiet** market is the random walk every earlier\nfigure was measured on; it flatters passive orders and is shown for reference only.\n"
    );
    page.push_str("| market | strategy | faults | mean slippage (bps) | p95 slippage (bps) | completion | mean time to complete (s, virtual) | REST requests per order | invariant violations |\n|---|---|---|---|---|---|---|---|---|\n");
    let mut requests_ok = true;
    for run in quality["runs"].as_array().map_or(&[][..], Vec::as_slice) {
        let s = &run["summary"];
        if run["market"] == "realistic" && run["strategy"] == "smart" {
            requests_ok &= num(&s["requests_per_order"]["value"]) <= 1.5;
        }
        let _ = writeln!(
            page,
            "| {} | `{}` | {} | {} | {} | {:.1} % | {} | {} | {} |",
            run["market"].as_str().unwrap_or("?"),
            run["strategy"].as_str().unwrap_or("?"),
            run["faults"].as_str().unwrap_or("?"),
            ci(&s["slippage_mean"], 2, ""),
            ci(&s["slippage_p95"], 1, ""),
            num(&s["completion_rate"]) * 100.0,
            ci(&s["secs"], 1, ""),
            ci(&s["requests_per_order"], 2, ""),
            s["invariant_violations"]
        );
    }
    page.push_str("\n`smart` against the predecessor's replica (paired: the same seeds, item by item for slippage, seed by\nseed for time) and against market orders, on the realistic market:\n\n| faults | slippage − predecessor's (bps) | p95 − predecessor's (bps, paired bootstrap) | time − predecessor's (s) | slippage ÷ market orders' | goals | verdict |\n|---|---|---|---|---|---|---|\n");
    for c in quality["comparisons"].as_array().map_or(&[][..], Vec::as_slice) {
        let (d, p95, t, r) = (
            &c["slippage_vs_predecessor"],
            &c["p95_vs_predecessor"],
            &c["secs_vs_predecessor"],
            &c["slippage_ratio_to_market"],
        );
        let meets =
            num(&d["high"]) < 0.0 && num(&p95["value"]) < 0.0 && num(&t["value"]) < 0.0 && num(&r["value"]) <= 0.5;
        let _ = writeln!(
            page,
            "| {} | {} | {} | {} | {} | mean below with the interval below zero; p95 below; time below; ≤ 0.5 × market | {} |",
            c["faults"].as_str().unwrap_or("?"),
            ci(d, 2, ""),
            ci(p95, 1, ""),
            ci(t, 1, ""),
            ci(r, 3, ""),
            verdict(meets)
        );
    }
    render_requests_and_example(page, quality, requests_ok);
    page.push_str("`smart`'s pricing variants on the realistic market without faults, each a setting of `[engine]`\n(the default is the one the table chose: the lowest slippage whose time stays below the\npredecessor's):\n\n| variant | what changes | settings | mean slippage (bps) | p95 (bps) | time (s) | requests per order | − predecessor's slippage (bps, paired) |\n|---|---|---|---|---|---|---|---|\n");
    for v in quality["variants"].as_array().map_or(&[][..], Vec::as_slice) {
        let s = &v["summary"];
        let settings = v["settings"].as_str().unwrap_or("").replace('\n', "; ");
        let _ = writeln!(
            page,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            v["name"].as_str().unwrap_or("?"),
            v["what"].as_str().unwrap_or(""),
            if settings.is_empty() { "(none)".to_owned() } else { format!("`{settings}`") },
            ci(&s["slippage_mean"], 2, ""),
            ci(&s["slippage_p95"], 1, ""),
            ci(&s["secs"], 1, ""),
            ci(&s["requests_per_order"], 2, ""),
            ci(&v["vs_predecessor"], 2, ""),
        );
    }
    page.push_str(PREDECESSOR_REPLICA);
    page.push('\n');
}

/// The requests-per-order goal with the requests by kind, and the 5-symbol example's time.
fn render_requests_and_example(page: &mut String, quality: &Value, requests_ok: bool) {
    let smart = quality["runs"].as_array().and_then(|runs| {
        runs.iter().find(|r| r["market"] == "realistic" && r["strategy"] == "smart" && r["faults"] == "none")
    });
    let kinds = smart.map_or_else(String::new, |run| {
        let s = &run["summary"];
        let (orders, scenarios) = (num(&s["orders"]), num(&s["scenarios"]));
        let mut by_kind: Vec<(String, f64)> = s["requests_by_kind"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), num(v))).collect())
            .unwrap_or_default();
        by_kind.sort_by(|a, b| b.1.total_cmp(&a.1));
        let list: Vec<String> =
            by_kind.iter().filter(|(_, n)| *n > 0.0).map(|(k, n)| format!("{k} {:.2}", n / orders)).collect();
        format!(
            " Per order, by kind: {}. A scenario places {:.1} orders on average. Its fixed reads (account, clock, positions, open orders, the assets, the fill activities, the sizing quotes) come to about one request per order, and every order costs at least one more: a first order its submit, a re-peg two (a read-back and the replace, or a cancel and the new order)",
            list.join(", "),
            orders / scenarios
        )
    });
    let _ = writeln!(
        page,
        "\nGoal: REST requests per order ≤ 1.5 for `smart` on the realistic market (the run's fixed reads\nincluded): {}.{kinds}.\n",
        verdict(requests_ok)
    );
    let e = &quality["example_5"];
    page.push_str("The 5-symbol example (`tranche execute examples/plan.json`, the README's first command) in virtual\nseconds, with today's settings and with `smart`'s settings before issue 20 (the fixed schedule from\n0.4 of the spread, 8 items at a time):\n\n| market | seed 1 today | seed 1 before | mean of seeds 1–20 today | before | goal | verdict |\n|---|---|---|---|---|---|---|\n");
    for market in ["quiet", "realistic"] {
        let (today, before) = (&e[format!("{market}_today")], &e[format!("{market}_before")]);
        let meets =
            num(&today["seed_1"]) <= num(&before["seed_1"]) && num(&today["mean_20"]) <= num(&before["mean_20"]);
        let _ = writeln!(
            page,
            "| {market}{} | {:.1} s | {:.1} s | {:.1} s | {:.1} s | no more time than before | {} |",
            if market == "quiet" { " (the command's default)" } else { "" },
            num(&today["seed_1"]),
            num(&before["seed_1"]),
            num(&today["mean_20"]),
            num(&before["mean_20"]),
            verdict(meets)
        );
    }
    page.push('\n');
}

/// What the predecessor's replica models and what it leaves out (checked point by point against
/// `shared/reference/predecessor-spec.md`).
const PREDECESSOR_REPLICA: &str = "\n### The predecessor's replica (`strategy = \"predecessor\"`)\n\nChecked point by point against the predecessor's specification (its version 2.20.8 defaults).\n\n| point | the predecessor (spec section) | the replica |\n|---|---|---|\n| first price | liquidity analyzer: near side, +1 cent when the order is over 30 % of that side's size, +2 over 80 %, +1 more (never through the far side) when the sizes lean against it beyond 0.2 (§3.10, §3.11) | the same, on the cent grid, half-even (`tranche_engine::predecessor::first_limit`) |\n| re-peg price | two cents through the far side (`allow_cross_spread_on_repeg`), by cancel, confirm, new (§3.10, §3.13) | the same; cancel, then new |\n| re-peg schedule | one monitor loop per phase once its orders are placed: checks 2 s and 14 s after, an order re-pegged once it is 10 s old; the second consideration escalates (§3.13, §3.14) | the same checks from the phase's start plus 0.1 s per order |\n| escalation | a market order for everything still working 24 s after placement (§3.14) | the same, for what remains (defect D4, the full original quantity, not copied) |\n| phase length | the loop always runs its course: no phase shorter than about 24 s (§3.14) | the same |\n| quotes | stream first, fresh within 5 s; used even when \"suspicious\" (a spread over 10 %); a market order without any quote (§3.8, §3.9) | fresh within 5 s, spreads to 10 %, a market order without a usable quote |\n| placement | one order after another, a 0.1 s pause and up to three quote tries each (§3.8) | every order of a phase at once; the pauses only delay the loop's start |\n| between phases | the finalizer's wait (up to 30 s), each sell polled final (0.5 s, one after another), a buying-power check of up to 4 tries (1, 2, 4 s) that proceeds anyway (§3.15–§3.17) | the engine's own settlement: the account read until the sells' cash shows (1 s polls, 10 s at most) |\n| buy sizing | amount ÷ mid, no buying-power check on limit buys (defect D31) | the engine's sizing: buys scaled to the cash, never refused for buying power |\n| left out | the stream restart on bulk subscribe (1.5–16 s, D18), IEX-only quotes, the quote retries' 0.3/0.6 s waits, duplicate orders and lost fills (its defects) | |\n";
