//! `tranche`: the command line users touch. Thin wiring only: it parses arguments, calls the
//! library and maps outcomes to documented exit codes.
//!
//! Exit codes (sysexits-style, stable for scripts): 0 success, 65 invalid plan, 66 the plan file
//! cannot be read.

mod exit;
mod plan_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Execute portfolio rebalance plans safely, quickly and at good prices.
#[derive(Debug, Parser)]
#[command(name = "tranche", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with rebalance plans.
    #[command(subcommand)]
    Plan(PlanCommand),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Plan(PlanCommand::Validate { plan, json }) => plan_cmd::validate(&plan, json),
    }
}
