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
    Execute {
        /// The plan file (JSON, the predecessor's format; see docs/plan-format.md).
        plan: PathBuf,
        /// Settings file (`[engine]`, `[simulator]`; see docs/configuration.md).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Simulator state to start from instead of the plan's own picture (TOML or JSON).
        #[arg(long, value_name = "FILE")]
        sim_state: Option<PathBuf>,
        /// Seed of the simulated market.
        #[arg(long)]
        seed: Option<u64>,
        /// Print the orders that would be placed and send nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// No progress lines on stderr.
        #[arg(long, short)]
        quiet: bool,
        /// Record the run in a ledger (`sqlite:PATH` or `s3://BUCKET/PREFIX`): every order intent
        /// before it is sent, every fill; a completed plan run again returns its recorded result.
        #[arg(long, value_name = "SPEC")]
        ledger: Option<String>,
    },
    /// Read the ledger.
    #[command(subcommand)]
    Ledger(LedgerCommand),
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
        Command::Execute { plan, config, sim_state, seed, dry_run, json, quiet, ledger } => {
            execute::run(&execute::ExecuteOptions { plan, config, sim_state, seed, dry_run, json, quiet, ledger })
        }
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
