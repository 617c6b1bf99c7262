//! `tranche execute PLAN`: the main job, on the embedded simulator (virtual time).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use tranche::broker::QuoteFeed;
use tranche::domain::{ExecutionResult, RebalancePlan};
use tranche::engine::{execute_recorded, Ports, RunError};
use tranche::engine::{preview, Preview, ProgressEvent};
use tranche::simulation::{account_from_plan, start_sim};

use crate::exit;
use crate::output;
use crate::plan_cmd::read_plan;
use crate::settings;

/// Options of `tranche execute`.
#[derive(Debug, Clone)]
pub struct ExecuteOptions {
    /// The plan file.
    pub plan: PathBuf,
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// `--sim-state FILE`.
    pub sim_state: Option<PathBuf>,
    /// `--seed N`.
    pub seed: Option<u64>,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--json`.
    pub json: bool,
    /// `--quiet`: no progress lines.
    pub quiet: bool,
    /// `--ledger SPEC`: record the run (and make it exactly-once) in this ledger.
    pub ledger: Option<String>,
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("error: {message}");
    exit::code(code)
}

/// Runs `tranche execute`.
pub fn run(options: &ExecuteOptions) -> ExitCode {
    let plan = match read_plan(&options.plan) {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    let settings = match settings::load(options.config.as_deref()) {
        Ok(s) => s,
        Err(e) => return fail(exit::BAD_CONFIG, &e.0),
    };
    let mut sim = match &options.sim_state {
        Some(path) => match settings::load_sim_state(path) {
            Ok(s) => s,
            Err(e) => return fail(exit::BAD_CONFIG, &e.0),
        },
        None => account_from_plan(&plan, &settings.simulator),
    };
    if let Some(seed) = options.seed {
        sim.seed = seed;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build() {
        Ok(rt) => rt,
        Err(e) => return fail(exit::BROKER_UNAVAILABLE, &format!("cannot start the runtime: {e}")),
    };
    let (broker, clock) = match runtime.block_on(async { start_sim(sim) }) {
        Ok(b) => b,
        Err(e) => return fail(exit::BAD_CONFIG, &format!("simulator: {e}")),
    };
    if options.dry_run {
        let feed = broker.quote_feed();
        let symbols: Vec<_> = plan.items.iter().map(|i| i.symbol.clone()).collect();
        let found: Preview = runtime.block_on(async {
            let _ = feed.subscribe(&symbols).await;
            preview(&plan, &settings.engine, &broker.broker(), &feed, tranche::broker::Clock::now(&*clock)).await
        });
        return print_preview(&plan, &found, options.json);
    }
    let ledger = match options.ledger.as_deref().map(crate::ledger_cmd::open).transpose() {
        Ok(l) => l,
        Err(e) => return fail(exit::BAD_CONFIG, &format!("--ledger: {e}")),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<ProgressEvent>();
    let quiet = options.quiet;
    let outcome: Result<ExecutionResult, RunError> = runtime.block_on(async {
        let printer = tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                if !quiet {
                    output::progress_line(&event);
                }
            }
        });
        let ports = Ports {
            broker: std::sync::Arc::new(broker.broker()),
            events: Box::new(broker.order_events()),
            quotes: std::sync::Arc::new(broker.quote_feed()),
            clock: std::sync::Arc::clone(&clock),
        };
        let outcome = match ledger {
            Some(ledger) => execute_recorded(plan.clone(), settings.engine.clone(), ports, ledger, Some(tx)).await,
            None => Ok(tranche::engine::execute(plan.clone(), settings.engine.clone(), ports, Some(tx)).await),
        };
        let _ = printer.await;
        outcome
    });
    let result = match outcome {
        Ok(result) => result,
        Err(RunError::AlreadyRunning { run_id }) => {
            return fail(
                exit::PLAN_BUSY,
                &format!("plan `{}` is being executed by run {run_id}; try again when it is done", plan.plan_id),
            );
        }
        Err(RunError::Ledger(e)) => return fail(exit::BAD_CONFIG, &format!("ledger: {e}; nothing was traded")),
        Err(RunError::LedgerAfterRun { error, result }) => {
            eprintln!("error: the run finished but could not be recorded in the ledger: {error}");
            if options.json {
                println!("{}", serde_json::to_string_pretty(&*result).unwrap_or_default());
            } else {
                output::result_table(&result, &mut std::io::stdout().lock());
            }
            return exit::code(exit::FAILURE);
        }
    };
    if options.json {
        match serde_json::to_string_pretty(&result) {
            Ok(text) => println!("{text}"),
            Err(e) => return fail(exit::FAILURE, &format!("cannot write the result: {e}")),
        }
    } else {
        output::result_table(&result, &mut std::io::stdout().lock());
    }
    exit::for_status(result.status)
}

fn print_preview(plan: &RebalancePlan, found: &Preview, json: bool) -> ExitCode {
    if json {
        match serde_json::to_string_pretty(found) {
            Ok(text) => println!("{text}"),
            Err(e) => return fail(exit::FAILURE, &format!("cannot write the preview: {e}")),
        }
    } else {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "dry run of plan `{}`: nothing is sent\n", plan.plan_id);
        output::preview_table(found, &mut out);
    }
    ExitCode::SUCCESS
}
