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
use crate::BrokerArg;

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
    /// No progress lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,
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
}

impl ExecuteOptions {
    /// Whether orders go to Alpaca (`--broker alpaca`).
    pub fn alpaca(&self) -> bool {
        self.broker == BrokerArg::Alpaca
    }
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
    if options.alpaca() || options.live {
        return run_alpaca(options, &plan, &settings);
    }
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
    report(outcome, options)
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

/// The Alpaca configuration for this command, with the live-trading safety checks.
fn alpaca_config(options: &ExecuteOptions) -> Result<tranche::alpaca::AlpacaConfig, (u8, String)> {
    if options.live && !options.confirm_live {
        return Err((exit::USAGE, "live trading needs both --live and --confirm-live; nothing was sent".into()));
    }
    if options.live && !options.alpaca() {
        return Err((exit::USAGE, "--live is for --broker alpaca".into()));
    }
    let config =
        tranche::alpaca::AlpacaConfig::from_env(options.live).map_err(|e| (exit::BAD_CONFIG, e.to_string()))?;
    if !options.live && config.trading_url.trim_end_matches('/') == tranche::alpaca::LIVE_URL {
        return Err((
            exit::USAGE,
            "APCA_API_BASE_URL points at the live API; pass --live --confirm-live to trade real money".into(),
        ));
    }
    Ok(config)
}

/// `tranche execute --broker alpaca`: real time, the trade_updates stream, quotes from REST,
/// and a ledger (default `sqlite:tranche-ledger.sqlite`) so that a re-run never trades twice.
fn run_alpaca(options: &ExecuteOptions, plan: &RebalancePlan, settings: &settings::Settings) -> ExitCode {
    let config = match alpaca_config(options) {
        Ok(c) => c,
        Err((code, message)) => return fail(code, &message),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(exit::BROKER_UNAVAILABLE, &format!("cannot start the runtime: {e}")),
    };
    let broker = match tranche::alpaca::AlpacaBroker::new(config.clone()) {
        Ok(b) => b,
        Err(e) => return fail(exit::BROKER_UNAVAILABLE, &e.to_string()),
    };
    let stream = market_data_url(&config);
    let quotes: std::sync::Arc<dyn tranche::broker::QuoteFeed> = runtime.block_on(async {
        std::sync::Arc::new(tranche::pricing::AlpacaQuoteFeed::connect(tranche::pricing::StreamConfig::new(
            stream.clone(),
            config.key_id.clone(),
            config.secret.expose().to_owned(),
        ))) as std::sync::Arc<dyn tranche::broker::QuoteFeed>
    });
    if let Err(e) = runtime.block_on(tranche::broker::Broker::clock(&broker)) {
        return fail(exit::BROKER_UNAVAILABLE, &format!("Alpaca is not reachable at {}: {e}", config.trading_url));
    }
    if options.dry_run {
        let found = runtime.block_on(preview(
            plan,
            &settings.engine,
            &broker,
            &*quotes,
            tranche::broker::Clock::now(&tranche::broker::SystemClock),
        ));
        return print_preview(plan, &found, options.json);
    }
    let spec = options.ledger.clone().unwrap_or_else(|| crate::ledger_cmd::DEFAULT_LEDGER.to_owned());
    let ledger = match crate::ledger_cmd::open(&spec) {
        Ok(l) => l,
        Err(e) => return fail(exit::BAD_CONFIG, &format!("--ledger: {e}")),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<ProgressEvent>();
    let quiet = options.quiet;
    let engine = settings.engine.clone();
    let plan = plan.clone();
    let outcome = runtime.block_on(async move {
        let printer = tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                if !quiet {
                    output::progress_line(&event);
                }
            }
        });
        let ports = Ports {
            broker: std::sync::Arc::new(broker),
            events: Box::new(tranche::alpaca::AlpacaOrderEvents::connect(config)),
            quotes,
            clock: std::sync::Arc::new(tranche::broker::SystemClock),
        };
        let outcome = execute_recorded(plan, engine, ports, ledger, Some(tx)).await;
        let _ = printer.await;
        outcome
    });
    report(outcome, options)
}

/// Prints a run's outcome and returns its exit code.
fn report(outcome: Result<ExecutionResult, RunError>, options: &ExecuteOptions) -> ExitCode {
    let result = match outcome {
        Ok(result) => result,
        Err(RunError::AlreadyRunning { run_id }) => {
            return fail(
                exit::PLAN_BUSY,
                &format!("the plan is being executed by run {run_id}; try again when it is done"),
            );
        }
        Err(RunError::Ledger(e)) => return fail(exit::BAD_CONFIG, &format!("ledger: {e}; nothing was traded")),
        Err(RunError::LedgerAfterRun { error, result }) => {
            eprintln!("error: the run finished but could not be recorded in the ledger: {error}");
            print_result(&result, options.json);
            return exit::code(exit::FAILURE);
        }
    };
    print_result(&result, options.json);
    exit::for_status(result.status)
}

fn print_result(result: &ExecutionResult, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(result).unwrap_or_default());
    } else {
        output::result_table(result, &mut std::io::stdout().lock());
    }
}

/// The market-data stream: `APCA_API_DATA_STREAM_URL` (default Alpaca's, or the data URL's host
/// when that was overridden, e.g. for the emulator) and feed `APCA_DATA_FEED` (default `iex`).
fn market_data_url(config: &tranche::alpaca::AlpacaConfig) -> String {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let base = var("APCA_API_DATA_STREAM_URL").unwrap_or_else(|| {
        let data = config.data_url.trim_end_matches('/');
        if data == tranche::alpaca::DATA_URL {
            "wss://stream.data.alpaca.markets".to_owned()
        } else if let Some(rest) = data.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = data.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            data.to_owned()
        }
    });
    let feed = var("APCA_DATA_FEED").unwrap_or_else(|| "iex".to_owned());
    format!("{}/v2/{feed}", base.trim_end_matches('/'))
}
