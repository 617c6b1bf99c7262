//! `tranche execute PLAN`: the main job, on the embedded simulator (virtual time) or at Alpaca;
//! progress on stderr while it runs, the result on stdout, and with `--report` an HTML report.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use tranche::broker::QuoteFeed;
use tranche::domain::{ExecutionResult, RebalancePlan};
use tranche::engine::{execute_recorded, Ports, RunError};
use tranche::engine::{preview, Preview, ProgressEvent};
use tranche::simulation::{account_from_plan, start_sim};

use crate::broker_cmd::{self, AlpacaUse};
use crate::error::{CliError, CliResult};
use crate::exit;
use crate::output;
use crate::plan_cmd::read_plan;
use crate::settings;
use crate::BrokerArg;
use tranche::report;

/// Options of `tranche execute` (its command-line arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct ExecuteOptions {
    /// The plan file (JSON, the predecessor's format; see docs/plan-format.md).
    pub plan: PathBuf,
    /// Settings file (`[engine]`, `[simulator]`; see docs/configuration.md).
    #[arg(long, value_name = "FILE", env = "TRANCHE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Simulator state to start from instead of the plan's own picture (TOML or JSON).
    #[arg(long, value_name = "FILE", env = "TRANCHE_SIM_STATE")]
    pub sim_state: Option<PathBuf>,
    /// Seed of the simulated market.
    #[arg(long, env = "TRANCHE_SEED")]
    pub seed: Option<u64>,
    /// Print the orders that would be placed and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress on stderr (by default: live per-symbol bars on a terminal, plain lines
    /// otherwise).
    #[arg(long, short)]
    pub quiet: bool,
    /// Write a self-contained HTML report to FILE (no script, nothing loaded from anywhere): the
    /// result as a table and, per traded symbol, a chart of the bid/ask band with the limit-price
    /// steps and the fills. With --dry-run it shows the preview instead (nothing is sent). The
    /// file is created before anything is sent: if it cannot be, the command stops with exit 64.
    /// If it cannot be rewritten after the run, the error is printed and the exit code is 3.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// The broker: the embedded simulator (default) or Alpaca (keys and URLs from
    /// `APCA_API_KEY_ID`, `APCA_API_SECRET_KEY`, `APCA_API_BASE_URL`, `APCA_API_DATA_URL`;
    /// paper unless `--live --confirm-live`).
    #[arg(long, value_enum, env = "TRANCHE_BROKER", default_value = "sim")]
    pub broker: BrokerArg,
    /// Trade real money at Alpaca's live API (needs --confirm-live too).
    #[arg(long)]
    pub live: bool,
    /// Confirms --live.
    #[arg(long)]
    pub confirm_live: bool,
    /// Record the run in a ledger (`sqlite:PATH` or `s3://BUCKET/PREFIX`): every order intent
    /// before it is sent, every fill; a completed plan run again returns its recorded result.
    #[arg(long, value_name = "SPEC", env = "TRANCHE_LEDGER")]
    pub ledger: Option<String>,
    /// With an S3 ledger: how long a worker's claim on a plan lasts without renewal, in seconds
    /// (3 to 3600). A worker that crashed is taken over this long (plus the clock skew) after its
    /// last renewal; a live worker renews three times per lease.
    #[arg(long, value_name = "SECONDS", env = "TRANCHE_LEDGER_LEASE", default_value_t = 60.0)]
    pub ledger_lease: f64,
    /// With an S3 ledger: the largest difference between the wall clocks of two workers, in
    /// seconds (0 to 600); a lapsed claim is taken over only this much later.
    #[arg(long, value_name = "SECONDS", env = "TRANCHE_LEDGER_CLOCK_SKEW", default_value_t = 5.0)]
    pub ledger_clock_skew: f64,
}

impl ExecuteOptions {
    /// Whether orders go to Alpaca (`--broker alpaca`).
    pub fn alpaca(&self) -> bool {
        self.broker == BrokerArg::Alpaca
    }
}

/// A failure before the run started takes the "run in progress" report page with it.
fn before_run(target: Option<&report::Target>) -> impl Fn(CliError) -> CliError + '_ {
    move |error| {
        if let Some(target) = target {
            let _ = std::fs::remove_file(target.path());
        }
        error
    }
}

/// Runs `tranche execute`.
pub fn run(options: &ExecuteOptions) -> CliResult {
    if options.confirm_live && !options.live {
        // A safety flag that would silently do nothing: say so, send nothing.
        return Err(CliError::usage(
            "--confirm-live alone does nothing: live trading needs --live --confirm-live; nothing was sent",
        ));
    }
    let plan = read_plan(&options.plan)?;
    let settings = settings::load(options.config.as_deref())?;
    if options.alpaca() || options.live {
        return run_alpaca(options, &plan, &settings);
    }
    let mut sim = match &options.sim_state {
        Some(path) => settings::load_sim_state(path)?,
        None => account_from_plan(&plan, &settings.simulator),
    };
    if let Some(seed) = options.seed {
        sim.seed = seed;
    }
    like_alpaca(&mut sim.symbols, &plan);
    let info =
        report::RunInfo::new(format!("Embedded simulator, seed {}; times are the simulator's virtual clock", sim.seed));
    let target = report_target(options, &plan, &info)?;
    let gone = before_run(target.as_ref());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| gone(CliError::failure(format!("cannot start the runtime: {e}"))))?;
    let (broker, clock) =
        runtime.block_on(async { start_sim(sim) }).map_err(|e| gone(CliError::config(format!("simulator: {e}"))))?;
    if options.dry_run {
        let feed = broker.quote_feed();
        let symbols: Vec<_> = plan.items.iter().map(|i| i.symbol.clone()).collect();
        let found: Preview = runtime.block_on(async {
            let _ = feed.subscribe(&symbols).await;
            preview(&plan, &settings.engine, &broker.broker(), &feed, tranche::broker::Clock::now(&*clock)).await
        });
        return print_preview(&plan, &found, options.json, target.as_ref(), &info);
    }
    let ledger = options
        .ledger
        .as_deref()
        .map(|spec| crate::ledger_cmd::open_for_runs(spec, options))
        .transpose()
        .map_err(|e| gone(e.context("--ledger")))?;
    // The simulator's runtime runs in virtual time with no I/O driver: a ledger that talks to
    // the network (S3) does its I/O on a real-time runtime of its own, taking no virtual time.
    let ledger = ledger
        .map(tranche::ledger::OnOwnRuntime::for_virtual_time)
        .transpose()
        .map_err(|e| gone(CliError::failure(format!("--ledger: {e}"))))?
        .map(|l| Arc::new(l) as Arc<dyn tranche::ledger::Ledger>);
    let recording = report::Recording::new();
    let quiet = options.quiet;
    if !quiet {
        crate::logging::warn("embedded simulator: the times shown are its virtual clock (a session runs in moments)");
    }
    let outcome: Result<(ExecutionResult, bool), RunError> = runtime.block_on(async {
        let (tx, watcher) = watch(quiet, target.is_some().then(|| Arc::clone(&recording)));
        let ports = Ports {
            broker: Arc::new(broker.broker()),
            events: Box::new(broker.order_events()),
            quotes: recorded(Arc::new(broker.quote_feed()), &clock, target.as_ref(), &recording),
            clock: Arc::clone(&clock),
        };
        let outcome = match ledger {
            Some(ledger) => {
                let replay = ledger.completed_before(&plan.plan_id).await;
                execute_recorded(plan.clone(), settings.engine.clone(), ports, ledger, Some(tx))
                    .await
                    .map(|r| (r, replay))
            }
            None => Ok((tranche::engine::execute(plan.clone(), settings.engine.clone(), ports, Some(tx)).await, false)),
        };
        let _ = watcher.await;
        outcome
    });
    finish(outcome.map_err(Stopped::Run), options, target.as_ref().map(|t| (t, &*recording, &info)))
}

/// Creates the `--report` file (a "run in progress" page) before anything is sent.
fn report_target(
    options: &ExecuteOptions,
    plan: &RebalancePlan,
    info: &report::RunInfo,
) -> Result<Option<report::Target>, CliError> {
    options
        .report
        .as_ref()
        .map(|path| report::Target::create(path, &plan.plan_id, info))
        .transpose()
        .map_err(|message| CliError::usage(format!("--report: {message}; nothing was sent")))
}

/// The quote feed handed to the engine: `feed` itself, or with `--report` a recorder around it.
fn recorded(
    feed: Arc<dyn QuoteFeed>,
    clock: &Arc<dyn tranche::broker::Clock>,
    target: Option<&report::Target>,
    recording: &Arc<report::Recording>,
) -> Arc<dyn QuoteFeed> {
    match target {
        Some(_) => Arc::new(report::RecordingFeed::new(feed, Arc::clone(clock), Arc::clone(recording))),
        None => feed,
    }
}

/// The engine's progress channel and the task that draws its events on stderr (and records them
/// for the report); the task ends when the engine drops the sender.
fn watch(
    quiet: bool,
    recording: Option<Arc<report::Recording>>,
) -> (tokio::sync::mpsc::UnboundedSender<ProgressEvent>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<ProgressEvent>();
    let task = tokio::spawn(async move {
        let mut progress = output::Progress::for_stderr(quiet);
        while let Some(event) = rx.recv().await {
            if let Some(recording) = &recording {
                recording.event(&event);
            }
            progress.event(&event);
        }
        progress.finish();
    });
    (tx, task)
}

fn print_preview(
    plan: &RebalancePlan,
    found: &Preview,
    json: bool,
    target: Option<&report::Target>,
    info: &report::RunInfo,
) -> CliResult {
    if let Some(target) = target {
        target.write_preview(&plan.plan_id, found, info).map_err(CliError::failure)?;
    }
    if json {
        let text = serde_json::to_string_pretty(found)
            .map_err(|e| CliError::failure(format!("cannot write the preview: {e}")))?;
        outln!("{text}");
    } else {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "dry run of plan `{}`: nothing is sent\n", plan.plan_id);
        output::preview_table(found, &mut out);
    }
    Ok(ExitCode::SUCCESS)
}

/// `tranche execute --broker alpaca`: real time, the trade_updates stream, quotes from REST,
/// and a ledger (default `sqlite:tranche-ledger.sqlite`) so that a re-run never trades twice.
fn run_alpaca(options: &ExecuteOptions, plan: &RebalancePlan, settings: &settings::Settings) -> CliResult {
    if options.live && !options.alpaca() {
        return Err(CliError::usage("--live is for --broker alpaca; nothing was sent"));
    }
    let config = broker_cmd::alpaca_config(options.live, AlpacaUse::Trade { confirm_live: options.confirm_live })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::failure(format!("cannot start the runtime: {e}")))?;
    let info = report::RunInfo::new(alpaca_label(options, &config));
    let target = report_target(options, plan, &info)?;
    let gone = before_run(target.as_ref());
    let connection = runtime
        .block_on(async { tranche::wiring::AlpacaConnection::open(config.clone()) })
        .map_err(|e| gone(CliError::broker_unavailable(e.to_string())))?;
    let broker = Arc::clone(&connection.broker);
    let quotes: Arc<dyn QuoteFeed> = Arc::clone(&connection.quotes) as Arc<dyn QuoteFeed>;
    runtime.block_on(tranche::broker::Broker::clock(&*broker)).map_err(|e| {
        let url = config.trading_url_shown();
        let context = match e {
            tranche::broker::BrokerError::Auth { .. } => format!("Alpaca at {url} refused the keys"),
            _ => format!("Alpaca is not reachable at {url}"),
        };
        gone(broker_cmd::broker_failure(&e).context(&context))
    })?;
    if options.dry_run {
        let found = runtime.block_on(preview(
            plan,
            &settings.engine,
            &*broker,
            &*quotes,
            tranche::broker::Clock::now(&tranche::broker::SystemClock),
        ));
        return print_preview(plan, &found, options.json, target.as_ref(), &info);
    }
    let spec = options.ledger.clone().unwrap_or_else(|| crate::ledger_cmd::DEFAULT_LEDGER.to_owned());
    let ledger = crate::ledger_cmd::open_for_runs(&spec, options).map_err(|e| gone(e.context("--ledger")))?;
    let recording = report::Recording::new();
    let clock: Arc<dyn tranche::broker::Clock> = Arc::new(tranche::broker::SystemClock);
    let quotes = recorded(quotes, &clock, target.as_ref(), &recording);
    let quiet = options.quiet;
    let engine = settings.engine.clone();
    let plan = plan.clone();
    let record = target.is_some().then(|| Arc::clone(&recording));
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = Arc::clone(&interrupted);
    let outcome = runtime.block_on(async move {
        let stop = crate::signals::stop_request(seen);
        let (tx, watcher) = watch(quiet, record);
        let ports = connection.ports_with(quotes);
        let replay = ledger.completed_before(&plan.plan_id).await;
        let outcome = tranche::engine::execute_recorded_until(plan, engine, ports, ledger, Some(tx), stop)
            .await
            .map(|r| (r, replay));
        let _ = watcher.await;
        outcome
    });
    let outcome = match outcome {
        Err(RunError::LeftResumable { result }) if interrupted.load(std::sync::atomic::Ordering::SeqCst) => {
            Err(Stopped::Interrupted(result))
        }
        other => other.map_err(Stopped::Run),
    };
    finish(outcome, options, target.as_ref().map(|t| (t, &*recording, &info)))
}

/// Why a run gave no completed result.
enum Stopped {
    /// Stopped by a signal and left to resume.
    Interrupted(Box<ExecutionResult>),
    /// The engine's error.
    Run(RunError),
}

/// Where orders go, for the report: paper, live or another Alpaca-compatible URL (never the URL
/// itself, which may carry credentials).
fn alpaca_label(options: &ExecuteOptions, config: &tranche::alpaca::AlpacaConfig) -> String {
    if config.is_live() {
        "Alpaca live trading (real money)".to_owned()
    } else if config.trading_url.trim_end_matches('/') == tranche::alpaca::PAPER_URL {
        "Alpaca paper trading".to_owned()
    } else if options.live {
        "Alpaca-compatible API (live flag set)".to_owned()
    } else {
        "Alpaca-compatible API at a custom URL (e.g. the emulator)".to_owned()
    }
}

/// Prints a run's outcome, writes its report, and returns the exit code.
fn finish(
    outcome: Result<(ExecutionResult, bool), Stopped>,
    options: &ExecuteOptions,
    report: Option<(&report::Target, &report::Recording, &report::RunInfo)>,
) -> CliResult {
    let outcome = match outcome {
        Ok(done) => Ok(done),
        Err(Stopped::Run(e)) => Err(e),
        Err(Stopped::Interrupted(result)) => {
            crate::logging::warn(if output::possibly_working(&result).is_empty() {
                "interrupted: the run's open orders were cancelled and what it did is recorded; run the same command again to continue"
            } else {
                "interrupted: what the run did is recorded, but some of its orders may still be working (named below); run the same command again to continue"
            });
            return print_and_report(&result, exit::code(crate::signals::INTERRUPTED), options, report);
        }
    };
    let (result, code) = match outcome {
        Ok((result, replayed)) => {
            if replayed {
                // Said even with --quiet: the user must not mistake it for a new run.
                crate::logging::warn(REPLAYED);
                if !options.json {
                    outln!("{REPLAYED}");
                }
            }
            let code = exit::for_status(result.status);
            (result, code)
        }
        Err(RunError::AlreadyRunning { run_id }) => {
            discard(report);
            return Err(CliError::try_later(format!(
                "the plan is being executed by run {run_id}; try again when it is done"
            )));
        }
        Err(RunError::ClaimLost { run_id, reason }) => {
            discard(report);
            return Err(CliError::try_later(format!("run {run_id} stopped: {reason}"))
                .with_fix("nothing to do: the plan's result is the other worker's (`tranche ledger show`)"));
        }
        // A store that failed through every retry is a temporary failure: try again later.
        Err(RunError::Ledger(e @ tranche::ledger::LedgerError::Storage(_))) => {
            discard(report);
            return Err(CliError::try_later(format!("ledger: {e}; nothing was traded")).with_fix("run it again later"));
        }
        Err(RunError::Ledger(e)) => {
            discard(report);
            return Err(CliError::config(format!("ledger: {e}; nothing was traded")));
        }
        // The CLI never asks for it (`resumable_at_deadline` is the Lambda function's); said
        // plainly should a configuration set it: run the same command again to continue.
        Err(RunError::LeftResumable { result }) => {
            crate::logging::warn("the run reached its deadline and was left resumable: run the same command again");
            (*result, exit::code(exit::PLAN_BUSY))
        }
        Err(RunError::LedgerAfterRun { error, result }) => {
            crate::logging::error(&format!("the run finished but could not be recorded in the ledger: {error}"));
            (*result, exit::code(exit::FAILURE))
        }
    };
    print_and_report(&result, code, options, report)
}

/// Prints the result, writes the report, and answers `code`.
fn print_and_report(
    result: &ExecutionResult,
    code: std::process::ExitCode,
    options: &ExecuteOptions,
    report: Option<(&report::Target, &report::Recording, &report::RunInfo)>,
) -> CliResult {
    print_result(result, options.json);
    if let Some((target, recording, info)) = report {
        match target.write_run(result, recording, info) {
            Ok(()) if !options.quiet => errln!("report written to {}", target.path().display()),
            Ok(()) => {}
            Err(message) => return Err(CliError::failure(message)),
        }
    }
    Ok(code)
}

/// Like Alpaca, the simulator knows only its universe's names unless told to invent markets;
/// when it does, says for which of the plan's symbols.
fn like_alpaca(symbols: &mut tranche::sim::SymbolRules, plan: &RebalancePlan) {
    let invented: Vec<&str> = plan
        .items
        .iter()
        .map(|i| &i.symbol)
        .filter(|s| !tranche::sim::is_listed(s) && !symbols.names(s))
        .map(tranche::domain::Symbol::as_str)
        .collect();
    match symbols.invent {
        None => symbols.invent = Some(false),
        Some(true) if !invented.is_empty() => crate::logging::warn(&format!(
            "the simulator invents markets for {} (not in its universe; Alpaca would answer \"asset not found\")",
            invented.join(", ")
        )),
        Some(_) => {}
    }
}

/// What a re-run of a completed plan says.
const REPLAYED: &str = "replayed from the ledger: this plan was completed by an earlier run; nothing was sent";

/// Removes the "run in progress" page of a run that never started (nothing to report).
fn discard(report: Option<(&report::Target, &report::Recording, &report::RunInfo)>) {
    if let Some((target, _, _)) = report {
        let _ = std::fs::remove_file(target.path());
    }
}

fn print_result(result: &ExecutionResult, json: bool) {
    if json {
        outln!("{}", serde_json::to_string_pretty(result).unwrap_or_default());
    } else {
        output::result_table(result, &mut std::io::stdout().lock());
    }
}
