//! `tranche`: the command line users touch. Thin wiring only: it parses arguments, calls the
//! library and maps outcomes to documented exit codes.
//!
//! Exit codes (sysexits-style, stable for scripts): 0 success, 2 partial success, 3 failure,
//! 64 usage, 65 invalid plan, 66 an input file cannot be read, 69 broker unavailable,
//! 75 the plan is being executed by another worker, 78 bad configuration, 130 interrupted.

/// `println!` for what the command prints on stdout: a reader that went away (`| head`) stops
/// the printing, never the command (`println!` panicked: exit 101, and for `execute` before
/// its report was written).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::stdout::line(format_args!($($arg)*))
    };
}

/// `eprintln!` for the lines the command writes on stderr: a closed stderr stops them, never
/// the command (`eprintln!` panicked: exit 101 in place of the documented code).
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::stdout::err_line(format_args!($($arg)*))
    };
}

mod account_cmd;
mod broker_cmd;
mod env;
mod error;
mod execute;
mod exit;
mod ledger_cmd;
mod logging;
mod output;
mod plan_cmd;
mod settings;
mod signals;
mod sim_cmd;
mod stdout;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

/// Execute portfolio rebalance plans safely, quickly and at good prices.
#[derive(Debug, Parser)]
#[command(
    name = "tranche",
    version,
    about,
    long_about = None,
    after_help = "Settings come from flags, then TRANCHE_* environment variables, then the --config file \
(TRANCHE_CONFIG), then defaults; see docs/configuration.md."
)]
struct Cli {
    /// How log lines on stderr are written: text, or json (one JSON object per line).
    #[arg(long, global = true, value_enum, env = "TRANCHE_LOG_FORMAT", default_value = "text")]
    log_format: logging::LogFormat,
    /// Which log events are written: a level (off, error, warn, info, debug, trace) or
    /// directives such as `warn,tranche_engine=debug`.
    #[arg(
        long,
        global = true,
        value_name = "FILTER",
        env = "TRANCHE_LOG_LEVEL",
        default_value = logging::DEFAULT_FILTER,
        value_parser = logging::parse_filter
    )]
    log_level: tracing_subscriber::filter::Targets,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Execute a plan: sells first, then buys sized to the buying power really there.
    #[command(after_help = "Examples:
  tranche execute examples/plan.json                 # on the embedded simulator
  tranche execute examples/plan.json --dry-run       # show the first orders, send nothing
  tranche execute examples/plan-30.json --json > result.json
  tranche execute plan.json --config tranche.toml --seed 7
  tranche execute plan.json --ledger sqlite:ledger.sqlite   # exactly once: a re-run trades nothing
  tranche execute examples/plan.json --report run.html   # HTML report: table + a chart per symbol

Exit codes: 0 success, 2 partial success, 3 failure, 65 invalid plan,
66 unreadable file, 69 broker unavailable, 75 try again later (the plan busy in
another worker, taken over, left resumable, or the ledger unreachable),
78 bad configuration, 130 interrupted (Ctrl-C, SIGTERM; run it again to continue).")]
    Execute(execute::ExecuteOptions),
    /// Read the ledger.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Run the Alpaca-compatible emulator (same as `alpaca-emulator`).
    #[command(
        after_help = "Example:\n  tranche emulator --listen 127.0.0.1:8088\n  APCA_API_BASE_URL=http://127.0.0.1:8088 APCA_API_DATA_URL=http://127.0.0.1:8088 \\\n    APCA_API_KEY_ID=EMULATORKEYID APCA_API_SECRET_KEY=emulator-secret-key \\\n    tranche execute examples/plan.json --broker alpaca"
    )]
    Emulator {
        /// The emulator's own options (the same as `alpaca-emulator`'s).
        #[command(flatten)]
        options: tranche::emulator::options::EmulatorArgs,
        /// Start the account from this plan's picture (positions worth each item's
        /// `current_value`, cash for the rest of `total_portfolio_value`).
        #[arg(long, value_name = "PLAN")]
        plan: Option<PathBuf>,
    },
    /// Work with rebalance plans.
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Show the broker account: equity, cash, buying power, whether it may trade.
    #[command(
        after_help = "Examples:\n  tranche account\n  tranche account --sim-state state.toml --json\n  tranche account --broker alpaca   # APCA_API_KEY_ID, APCA_API_SECRET_KEY; paper unless --live"
    )]
    Account(account_cmd::ReadOptions),
    /// Show the positions held, with their market value and share of the equity.
    #[command(
        after_help = "Examples:\n  tranche positions --sim-state state.toml\n  tranche positions --broker alpaca --json | jq '.[].symbol'"
    )]
    Positions(account_cmd::ReadOptions),
    /// Show the open orders (closed ones are in the ledger: `tranche ledger show PLAN_ID`).
    #[command(
        after_help = "Examples:\n  tranche orders --broker alpaca\n  tranche orders --broker alpaca --symbol AAPL,MSFT --json"
    )]
    Orders(account_cmd::OrdersOptions),
    /// Simulated rebalances for measuring execution quality.
    #[command(subcommand)]
    Sim(SimCommand),
}

#[derive(Debug, Subcommand)]
enum PlanCommand {
    /// Make a plan from target weights and the broker's equity and positions.
    #[command(after_help = "Examples:
  tranche plan new --targets targets.csv --out plan.json      # on the simulator's account
  tranche plan new --targets targets.json --broker alpaca --min-trade 25 --out plan.json
  tranche plan new --targets targets.csv --keep-unlisted --plan-id daily-2026-03-02 > plan.json

Targets: CSV with a `symbol,weight` header, or JSON {\"AAPL\": 0.3} or [{\"symbol\": \"AAPL\", \"weight\": 0.3}].
Target value = weight x equity; differences under --min-trade dollars are HOLD; positions not in the
targets are sold to zero unless --keep-unlisted. Exit 65 lists every problem of the targets.")]
    New(plan_cmd::NewOptions),
    /// Check a plan file and list every problem in it at once.
    #[command(
        after_help = "Examples:\n  tranche plan validate examples/plan.json\n  tranche plan validate --json plan.json | jq .problems"
    )]
    Validate {
        /// The plan file (JSON, the predecessor's format).
        plan: PathBuf,
        /// Print the verdict as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// List runs, oldest first.
    #[command(
        after_help = "Examples:\n  tranche ledger runs\n  tranche ledger runs --ledger s3://my-bucket/tranche --plan daily-2026-03-02"
    )]
    Runs {
        /// The ledger.
        #[arg(long, value_name = "SPEC", env = "TRANCHE_LEDGER", default_value = ledger_cmd::DEFAULT_LEDGER)]
        ledger: String,
        /// Only runs of this plan.
        #[arg(long)]
        plan: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a plan's runs, orders and fills.
    Show {
        /// The plan id.
        plan_id: String,
        /// The ledger.
        #[arg(long, value_name = "SPEC", env = "TRANCHE_LEDGER", default_value = ledger_cmd::DEFAULT_LEDGER)]
        ledger: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `--broker`: where orders go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BrokerArg {
    Sim,
    Alpaca,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StrategyArg {
    Market,
    Predecessor,
    Smart,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum MarketArg {
    Realistic,
    Quiet,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FaultsArg {
    None,
    Light,
    Heavy,
}

#[derive(Debug, Subcommand)]
enum SimCommand {
    /// Run many seeded rebalances and report slippage, completion, time and requests.
    #[command(
        after_help = "Examples:\n  tranche sim run --scenarios 1000 --strategy smart\n  tranche sim run --scenarios 200 --strategy predecessor --faults light --json"
    )]
    Run {
        /// How many scenarios.
        #[arg(long, default_value_t = 100)]
        scenarios: u64,
        /// How orders are worked.
        #[arg(long, value_enum, default_value = "smart")]
        strategy: StrategyArg,
        /// Injected broker faults.
        #[arg(long, value_enum, default_value = "none")]
        faults: FaultsArg,
        /// The simulated market: `realistic` (informed flow, quote imbalance, the impact of our
        /// own orders, spreads by liquidity class) or `quiet` (a random walk that flatters
        /// passive orders).
        #[arg(long, value_enum, default_value = "realistic")]
        market: MarketArg,
        /// A configuration file: its `[engine]` settings (all but the strategy) and its
        /// `[simulator.market]` (all but the model) apply to every scenario.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// First seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    unset_empty_variables();
    let args: Vec<String> = std::env::args().collect();
    let parsed = Cli::command().try_get_matches_from(&args).and_then(|m| Cli::from_arg_matches(&m).map(|cli| (m, cli)));
    let (matches, cli) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            // Reported as the logs will be: JSON when asked for, though the logs are not set up yet.
            if json_asked(&args) {
                let errors = tracing_subscriber::filter::Targets::new().with_default(tracing::Level::ERROR);
                logging::init(logging::LogFormat::Json, errors);
            }
            if let Some(error) = env::clap_error(&e, &args) {
                return error.report();
            }
            if e.use_stderr() && logging::is_json() {
                logging::error(e.to_string().trim());
                return exit::code(exit::USAGE);
            }
            let _ = e.print();
            return if e.use_stderr() { exit::code(exit::USAGE) } else { ExitCode::SUCCESS };
        }
    };
    logging::init(cli.log_format, cli.log_level);
    if let Err(error) = env::record(&matches) {
        return error.report();
    }
    error::exit_code(run(cli.command))
}

/// JSON logs asked for, by `--log-format json` (or `=json`) or `TRANCHE_LOG_FORMAT`, read from
/// the raw command line when it cannot be parsed.
fn json_asked(args: &[String]) -> bool {
    let flag = args.iter().position(|a| a == "--log-format").and_then(|i| args.get(i + 1)).map(String::as_str);
    let joined = args.iter().find_map(|a| a.strip_prefix("--log-format="));
    match flag.or(joined) {
        Some(format) => format == "json",
        None => std::env::var("TRANCHE_LOG_FORMAT").is_ok_and(|v| v == "json"),
    }
}

/// An empty `TRANCHE_*` variable counts as unset (docs/configuration.md: a template that passes
/// blanks), where clap would read it as a value and refuse it. Done first, before any thread.
fn unset_empty_variables() {
    for (name, value) in std::env::vars_os() {
        if value.is_empty() && name.to_str().is_some_and(|n| n.starts_with("TRANCHE_")) {
            std::env::remove_var(&name);
        }
    }
}

/// Runs one command.
fn run(command: Command) -> error::CliResult {
    match command {
        Command::Account(options) => account_cmd::account(&options),
        Command::Positions(options) => account_cmd::positions(&options),
        Command::Orders(options) => account_cmd::orders(&options),
        Command::Execute(options) => execute::run(&options),
        Command::Emulator { options, plan } => emulator(&options, plan.as_deref()),
        Command::Ledger(LedgerCommand::Runs { ledger, plan, json }) => ledger_cmd::runs(&ledger, plan.as_deref(), json),
        Command::Ledger(LedgerCommand::Show { plan_id, ledger, json }) => ledger_cmd::show(&ledger, &plan_id, json),
        Command::Plan(PlanCommand::Validate { plan, json }) => plan_cmd::validate(&plan, json),
        Command::Plan(PlanCommand::New(options)) => plan_cmd::new(&options),
        Command::Sim(SimCommand::Run { scenarios, strategy, faults, market, config, seed, json }) => {
            let strategy = match strategy {
                StrategyArg::Market => tranche::engine::Strategy::Market,
                StrategyArg::Predecessor => tranche::engine::Strategy::Predecessor,
                StrategyArg::Smart => tranche::engine::Strategy::Smart,
            };
            let faults = match faults {
                FaultsArg::None => tranche::simulation::Faults::None,
                FaultsArg::Light => tranche::simulation::Faults::Light,
                FaultsArg::Heavy => tranche::simulation::Faults::Heavy,
            };
            let market = match market {
                MarketArg::Realistic => tranche::sim::MarketModel::Realistic,
                MarketArg::Quiet => tranche::sim::MarketModel::Quiet,
            };
            sim_cmd::run(scenarios, seed, (strategy, market), faults, config.as_deref(), json)
        }
    }
}

fn emulator(options: &tranche::emulator::options::EmulatorArgs, plan: Option<&std::path::Path>) -> error::CliResult {
    let mut config = options.config().map_err(error::CliError::usage)?;
    if let Some(path) = plan {
        let plan = plan_cmd::read_plan(path)?;
        config.sim = tranche::simulation::account_from_plan(&plan, &config.sim);
    }
    tranche::emulator::options::serve(options.listen, config).map_err(|e| match e {
        tranche::emulator::options::ServeError::Listen { .. } => error::CliError::broker_unavailable(e.to_string()),
        tranche::emulator::options::ServeError::Runtime(_) => error::CliError::failure(e.to_string()),
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `TRANCHE_*` variable a flag reads is listed in `env::VARS`, so a bad value of it
    /// is named as the variable (78) and not as a flag the user never typed (64).
    #[test]
    fn every_variable_a_flag_reads_is_listed() {
        fn walk(command: &clap::Command, found: &mut Vec<String>) {
            for arg in command.get_arguments() {
                if let Some(name) = arg.get_env().and_then(|n| n.to_str()) {
                    if name.starts_with("TRANCHE_") {
                        found.push(name.to_owned());
                    }
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, found);
            }
        }
        let mut found = Vec::new();
        walk(&Cli::command(), &mut found);
        assert!(found.len() >= 8, "{found:?}");
        for name in found {
            assert!(env::VARS.iter().any(|v| v.name == name), "{name} is not in env::VARS");
        }
    }
}
