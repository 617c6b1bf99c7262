//! `tranche`: the command line users touch. Thin wiring only: it parses arguments, calls the
//! library and maps outcomes to documented exit codes.
//!
//! Exit codes (sysexits-style, stable for scripts): 0 success, 2 partial success, 3 failure,
//! 64 usage, 65 invalid plan, 66 an input file cannot be read, 69 broker unavailable,
//! 75 the plan is being executed by another worker, 78 bad configuration.

mod execute;
mod exit;
mod ledger_cmd;
mod output;
mod plan_cmd;
mod settings;
mod sim_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Execute portfolio rebalance plans safely, quickly and at good prices.
#[derive(Debug, Parser)]
#[command(name = "tranche", version, about, long_about = None)]
struct Cli {
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

Exit codes: 0 success, 2 partial success, 3 failure, 65 invalid plan,
66 unreadable file, 69 broker unavailable, 75 plan busy in another worker,
78 bad configuration.")]
    Execute(execute::ExecuteOptions),
    /// Read the ledger.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Run the Alpaca-compatible emulator (same as `alpaca-emulator`).
    #[command(
        after_help = "Example:\n  tranche emulator --listen 127.0.0.1:8088\n  APCA_API_BASE_URL=http://127.0.0.1:8088 APCA_API_DATA_URL=http://127.0.0.1:8088 \\\n    APCA_API_KEY_ID=EMULATORKEYID APCA_API_SECRET_KEY=emulator-secret-key \\\n    tranche execute examples/plan.json --broker alpaca"
    )]
    Emulator {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Seed of the simulated market.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Start the account from this plan's picture (positions worth each item's
        /// `current_value`, cash for the rest of `total_portfolio_value`).
        #[arg(long, value_name = "PLAN")]
        plan: Option<PathBuf>,
    },
    /// Work with rebalance plans.
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Simulated rebalances for measuring execution quality.
    #[command(subcommand)]
    Sim(SimCommand),
}

#[derive(Debug, Subcommand)]
enum PlanCommand {
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
        #[arg(long, value_name = "SPEC", default_value = ledger_cmd::DEFAULT_LEDGER)]
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
        #[arg(long, value_name = "SPEC", default_value = ledger_cmd::DEFAULT_LEDGER)]
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
        /// First seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { exit::code(exit::USAGE) } else { ExitCode::SUCCESS };
        }
    };
    match cli.command {
        Command::Execute(options) => execute::run(&options),
        Command::Emulator { listen, seed, plan } => emulator(listen, seed, plan.as_deref()),
        Command::Ledger(LedgerCommand::Runs { ledger, plan, json }) => ledger_cmd::runs(&ledger, plan.as_deref(), json),
        Command::Ledger(LedgerCommand::Show { plan_id, ledger, json }) => ledger_cmd::show(&ledger, &plan_id, json),
        Command::Plan(PlanCommand::Validate { plan, json }) => plan_cmd::validate(&plan, json),
        Command::Sim(SimCommand::Run { scenarios, strategy, faults, seed, json }) => {
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
            sim_cmd::run(scenarios, seed, strategy, faults, json)
        }
    }
}

fn emulator(listen: std::net::SocketAddr, seed: u64, plan: Option<&std::path::Path>) -> ExitCode {
    let mut config = tranche::emulator::EmulatorConfig::default();
    config.sim.seed = seed;
    if let Some(path) = plan {
        match plan_cmd::read_plan(path) {
            Ok(plan) => config.sim = tranche::simulation::account_from_plan(&plan, &config.sim),
            Err(code) => return code,
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return exit::code(exit::FAILURE);
        }
    };
    runtime.block_on(async move {
        let mut emulator = match tranche::emulator::Emulator::start(listen, config).await {
            Ok(e) => e,
            Err(e) => {
                eprintln!("error: cannot listen on {listen}: {e}");
                return exit::code(exit::BROKER_UNAVAILABLE);
            }
        };
        println!("alpaca-emulator listening on {}", emulator.url());
        tokio::select! {
            () = emulator.wait() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        ExitCode::SUCCESS
    })
}
