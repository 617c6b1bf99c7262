//! Project automation. `cargo xtask ci` is the one quality gate: formatting, clippy with warnings
//! as errors, every test of the workspace, and the documentation build, in that order, each timed,
//! stopping at the first failure with a non-zero exit. `cargo xtask bench [--quick]` runs the
//! benchmarks and execution-quality runs and rewrites `docs/benchmarks.md`.

mod alpaca_py;
mod bench;
mod cold_start;
mod leftovers;
mod report_shot;

use std::process::{Command, ExitCode};
use std::time::Instant;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  ci      run the quality gate: fmt check, clippy -D warnings, all tests, docs (warnings denied)
  bench   run every benchmark and the execution-quality runs, rewrite docs/benchmarks.md
          (--quick: criterion's quick mode, 200 instead of 1,000 seeds; a few minutes)
  report-shot  run examples/plan.json with --report and render the page to target/report/run.png
          with headless Chromium (installed if missing); --out FILE.png, --plan PLAN, --seed N
  help    show this text";

/// One step of the gate: a name and the command that runs it.
struct Step {
    name: &'static str,
    program: &'static str,
    args: Vec<&'static str>,
    env: Vec<(&'static str, &'static str)>,
}

impl Step {
    fn cargo(name: &'static str, args: &[&'static str]) -> Self {
        Self { name, program: "cargo", args: args.to_vec(), env: Vec::new() }
    }

    fn with_env(mut self, key: &'static str, value: &'static str) -> Self {
        self.env.push((key, value));
        self
    }
}

fn nextest_installed() -> bool {
    Command::new("cargo").args(["nextest", "--version"]).output().is_ok_and(|out| out.status.success())
}

/// Installs the S3-compatible test server (moto, from PyPI) unless it is already importable.
fn ensure_moto() -> Result<(), String> {
    let importable = |python: &str| {
        Command::new(python).args(["-c", "import moto.server"]).output().is_ok_and(|o| o.status.success())
    };
    if importable("python3") {
        return Ok(());
    }
    eprintln!("==> installing the S3 test server: python3 -m pip install 'moto[server]'");
    let status = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "moto[server]"])
        .status()
        .map_err(|e| format!("cannot run pip: {e}"))?;
    if status.success() && importable("python3") {
        Ok(())
    } else {
        Err(format!("pip install 'moto[server]' failed ({status})"))
    }
}

/// Installs cargo-lambda (from PyPI: it ships as a binary there) unless it is on PATH: the
/// Lambda function's test drives it through `cargo lambda watch`.
fn ensure_cargo_lambda() -> Result<(), String> {
    let present =
        || Command::new("cargo-lambda").args(["lambda", "--version"]).output().is_ok_and(|o| o.status.success());
    if present() {
        return Ok(());
    }
    eprintln!("==> installing cargo-lambda: python3 -m pip install cargo-lambda");
    let status = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "cargo-lambda"])
        .status()
        .map_err(|e| format!("cannot run pip: {e}"))?;
    if status.success() && present() {
        Ok(())
    } else {
        Err(format!("pip install cargo-lambda failed ({status}), or it is not on PATH"))
    }
}

/// The interpreter of a virtualenv holding the pinned alpaca-py (created or updated from PyPI
/// when needed), for the emulator's conformance test with the official SDK.
fn ensure_alpaca_py() -> Result<String, String> {
    let target = bench::target_dir(&bench::workspace_root());
    let python = alpaca_py::interpreter(&target)?;
    // Absolute, but not resolved: the virtualenv's interpreter is a link to the system's, and
    // only the link finds the virtualenv's packages.
    let python = std::path::absolute(&python).unwrap_or(python);
    Ok(python.to_string_lossy().into_owned())
}

fn ci_steps(alpaca_py: &'static str) -> Vec<Step> {
    let mut steps = vec![
        Step::cargo("format", &["fmt", "--all", "--check"]),
        Step::cargo("clippy", &["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"]),
    ];
    if nextest_installed() {
        steps.push(
            Step::cargo(
                "tests (nextest)",
                &["nextest", "run", "--workspace", "--locked", "--no-fail-fast", "--failure-output", "final"],
            )
            .with_env("TRANCHE_ALPACA_PY", alpaca_py),
        );
        // nextest does not run doc tests.
        steps.push(Step::cargo("doc tests", &["test", "--workspace", "--locked", "--doc"]));
    } else {
        steps.push(Step::cargo("tests", &["test", "--workspace", "--locked"]).with_env("TRANCHE_ALPACA_PY", alpaca_py));
    }
    steps.push(
        Step::cargo("docs", &["doc", "--workspace", "--no-deps", "--locked"]).with_env("RUSTDOCFLAGS", "-D warnings"),
    );
    steps
}

fn run_steps(steps: &[Step]) -> ExitCode {
    let started = Instant::now();
    let mut timings = Vec::new();
    for step in steps {
        eprintln!("==> {} ({} {})", step.name, step.program, step.args.join(" "));
        let t = Instant::now();
        let status = Command::new(step.program).args(&step.args).envs(step.env.iter().copied()).status();
        let secs = t.elapsed().as_secs_f64();
        timings.push((step.name, secs));
        match status {
            Ok(s) if s.success() => eprintln!("<== {} passed in {secs:.1}s", step.name),
            Ok(s) => {
                eprintln!("<== {} FAILED in {secs:.1}s ({s})", step.name);
                print_timings(&timings, started.elapsed().as_secs_f64());
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("<== {} could not start `{}`: {e}", step.name, step.program);
                return ExitCode::FAILURE;
            }
        }
    }
    print_timings(&timings, started.elapsed().as_secs_f64());
    eprintln!("ci: all steps passed");
    ExitCode::SUCCESS
}

/// Fails when a process a test started is still running after the tests (see `leftovers`).
fn check_no_leftovers() -> ExitCode {
    let target = bench::target_dir(&bench::workspace_root());
    let target = target.canonicalize().unwrap_or(target);
    let left = leftovers::left_behind(&leftovers::running(), &target, std::process::id());
    if left.is_empty() {
        return ExitCode::SUCCESS;
    }
    eprintln!("ci: FAILED after the tests: {} process(es) they started are still running:", left.len());
    for p in &left {
        eprintln!("  pid {} {}", p.pid, p.cmdline);
    }
    ExitCode::FAILURE
}

fn print_timings(timings: &[(&str, f64)], total: f64) {
    eprintln!("\nstep timings:");
    for (name, secs) in timings {
        eprintln!("  {name:<18} {secs:>8.1}s");
    }
    eprintln!("  {:<18} {total:>8.1}s", "total");
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => {
            if let Err(e) = ensure_moto() {
                eprintln!("ci: {e}; the S3 ledger tests need it");
                return ExitCode::FAILURE;
            }
            if let Err(e) = ensure_cargo_lambda() {
                eprintln!("ci: {e}; the Lambda function's test needs it");
                return ExitCode::FAILURE;
            }
            let alpaca_py = match ensure_alpaca_py() {
                // Leaked once: the steps hold `'static` strings and live until the process ends.
                Ok(python) => &*Box::leak(python.into_boxed_str()),
                Err(e) => {
                    eprintln!("ci: {e}; the emulator's conformance test with the official SDK needs it");
                    return ExitCode::FAILURE;
                }
            };
            let code = run_steps(&ci_steps(alpaca_py));
            if code != ExitCode::SUCCESS {
                return code;
            }
            check_no_leftovers()
        }
        Some("bench") => {
            let quick = args.iter().skip(1).any(|a| a == "--quick");
            match bench::bench(quick) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("bench: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some("report-shot") => report_shot::main(&args[1..]),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("unknown command `{other}`\n\n{USAGE}");
            ExitCode::from(2)
        }
        None => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
