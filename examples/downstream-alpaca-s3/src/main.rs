//! A downstream application of the `tranche` facade: execute a rebalance plan at Alpaca and record
//! it in an S3 ledger, the way a service (a scheduled job, a queue worker) would embed Tranche.
//!
//! It depends on `tranche` with `default-features = false, features = ["alpaca", "ledger-s3"]`,
//! so neither the simulator nor SQLite is compiled. Usage:
//!
//! ```text
//! downstream-alpaca-s3 PLAN.json s3://BUCKET/PREFIX
//! ```
//!
//! Alpaca's keys and URLs come from `APCA_API_KEY_ID`, `APCA_API_SECRET_KEY`, `APCA_API_BASE_URL`
//! (paper unless it says otherwise; Alpaca's live host is refused unless `CONFIRM_LIVE=yes`, so a
//! copied environment never trades real money by accident), `APCA_API_DATA_STREAM_URL` and
//! `APCA_DATA_FEED`; the
//! bucket's credentials, region and endpoint from the standard `AWS_*` variables. The ledger makes
//! the run exactly-once: running the same plan again returns its recorded result, and two workers
//! cannot run one plan at the same time. Prints the `ExecutionResult` as JSON; exits 0 on success,
//! 2 on partial success, 3 on failure, 1 when it could not start.

use std::process::ExitCode;
use std::sync::Arc;

use tranche::alpaca::AlpacaConfig;
use tranche::domain::{ExecutionStatus, RebalancePlan};
use tranche::engine::{execute_recorded, EngineConfig, RunError};
use tranche::ledger::{LeaseTerms, Ledger, LedgerSpec};
use tranche::wiring::AlpacaConnection;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(status) => match status {
            ExecutionStatus::Success => ExitCode::SUCCESS,
            ExecutionStatus::PartialSuccess => ExitCode::from(2),
            ExecutionStatus::Failure => ExitCode::from(3),
        },
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<ExecutionStatus, String> {
    let mut args = std::env::args().skip(1);
    let (Some(plan_path), Some(ledger_url)) = (args.next(), args.next()) else {
        return Err("usage: downstream-alpaca-s3 PLAN.json s3://BUCKET/PREFIX".into());
    };
    let text = std::fs::read_to_string(&plan_path).map_err(|e| format!("cannot read {plan_path}: {e}"))?;
    let plan = RebalancePlan::from_json_str(&text).map_err(|e| format!("{plan_path}: {e}"))?;

    let ledger = s3_ledger(&ledger_url)?;
    let alpaca = AlpacaConfig::from_env(false).map_err(|e| e.to_string())?;
    if alpaca.is_live() && std::env::var("CONFIRM_LIVE").as_deref() != Ok("yes") {
        return Err(format!(
            "APCA_API_BASE_URL is Alpaca's live host ({}): set CONFIRM_LIVE=yes to trade real money",
            tranche::alpaca::LIVE_URL
        ));
    }
    let ports = AlpacaConnection::open(alpaca).map_err(|e| e.to_string())?.ports();

    let result = match execute_recorded(plan, EngineConfig::default(), ports, ledger, None).await {
        Ok(result) => result,
        // The run traded: report what it did even though the ledger missed its result.
        Err(RunError::LedgerAfterRun { error, result }) => {
            eprintln!("error: the result could not be recorded: {error}");
            *result
        }
        Err(e) => return Err(e.to_string()),
    };
    println!("{}", serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?);
    Ok(result.status)
}

/// The object-store ledger at `s3://BUCKET/PREFIX` (a SQLite spec is refused: this service's
/// workers share their ledger).
fn s3_ledger(url: &str) -> Result<Arc<dyn Ledger>, String> {
    let spec: LedgerSpec = url.parse().map_err(|e: tranche::ledger::LedgerError| e.to_string())?;
    if !spec.is_shared() {
        return Err(format!("`{url}` is not an s3://BUCKET/PREFIX URL"));
    }
    let owner = format!("downstream-alpaca-s3-{}", std::process::id());
    spec.open(&owner, LeaseTerms::default()).map_err(|e| format!("cannot open the ledger {url}: {e}"))
}
