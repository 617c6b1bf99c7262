//! `--ledger` specifications and `tranche ledger ...`: where runs are recorded, and reading
//! them back.

use std::process::ExitCode;
use std::sync::Arc;

use std::time::Duration;

use tranche::ledger::{LeaseTerms, Ledger, LedgerSpec};

use crate::error::{CliError, CliResult};

/// The default ledger file.
pub const DEFAULT_LEDGER: &str = "sqlite:tranche-ledger.sqlite";

/// Opens the ledger of a `--ledger` value for `execute`: as [`open`], with an S3 ledger's lease
/// terms from `--ledger-lease` and `--ledger-clock-skew`.
pub fn open_for_runs(spec: &str, options: &crate::execute::ExecuteOptions) -> Result<Arc<dyn Ledger>, CliError> {
    let seconds = |value: f64, flag: &str, id: &str| {
        Duration::try_from_secs_f64(value).map_err(|_| {
            CliError::config(format!("{flag} {value}{} is not a number of seconds", crate::env::origin(id)))
        })
    };
    let terms = LeaseTerms::new(
        seconds(options.ledger_lease, "--ledger-lease", "ledger_lease")?,
        seconds(options.ledger_clock_skew, "--ledger-clock-skew", "ledger_clock_skew")?,
    )
    .map_err(|e| {
        let from = [crate::env::origin("ledger_lease"), crate::env::origin("ledger_clock_skew")].concat();
        CliError::config(format!("{e}{from}"))
    })?;
    open_with(spec, terms)
}

/// Opens the ledger of a `--ledger` value: `sqlite:PATH` or `s3://BUCKET/PREFIX` (S3 credentials,
/// region and endpoint from the standard `AWS_*` environment variables).
pub fn open(spec: &str) -> Result<Arc<dyn Ledger>, CliError> {
    open_with(spec, LeaseTerms::default())
}

fn open_with(spec: &str, terms: LeaseTerms) -> Result<Arc<dyn Ledger>, CliError> {
    let spec: LedgerSpec = spec.parse().map_err(|e: tranche::ledger::LedgerError| CliError::config(e.to_string()))?;
    spec.open(&format!("tranche-{}", std::process::id()), terms).map_err(|e| CliError::config(e.to_string()))
}

/// The ledger of `spec` and a runtime to read it with.
fn open_for_reading(spec: &str) -> Result<(Arc<dyn Ledger>, tokio::runtime::Runtime), CliError> {
    // Reading never creates: a SQLite ledger that is not there is named, not made empty.
    if let Ok(parsed @ LedgerSpec::Sqlite(path)) = spec.parse::<LedgerSpec>().as_ref() {
        if !parsed.exists() {
            return Err(CliError::no_input(format!(
                "there is no ledger at {}: nothing has been recorded there",
                path.display()
            ))
            .with_fix("pass --ledger sqlite:PATH (or s3://BUCKET/PREFIX) naming the ledger that execute wrote"));
        }
    }
    let ledger = open(spec)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failure(format!("cannot start the runtime: {e}")))?;
    Ok((ledger, runtime))
}

/// `tranche ledger runs [--plan ID] [--json]`.
pub fn runs(spec: &str, plan: Option<&str>, json: bool) -> CliResult {
    let (ledger, rt) = open_for_reading(spec)?;
    let runs = rt.block_on(ledger.runs(plan)).map_err(|e| CliError::failure(e.to_string()))?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&runs).unwrap_or_else(|_| "[]".into()));
        return Ok(ExitCode::SUCCESS);
    }
    outln!("{:<36} {:<28} {:<10} {:<36} {:>8}", "RUN", "PLAN", "STATUS", "STARTED", "RESULT");
    for run in runs {
        let status = run.result.as_ref().map_or("-".to_owned(), |r| format!("{:?}", r.status).to_lowercase());
        outln!(
            "{:<36} {:<28} {:<10} {:<36} {:>8}",
            run.run_id,
            run.plan_id,
            run.status.as_str(),
            millis(run.started_at),
            status
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `tranche ledger show PLAN_ID [--json]`: intents, orders and fills of a plan.
pub fn show(spec: &str, plan_id: &str, json: bool) -> CliResult {
    let (ledger, rt) = open_for_reading(spec)?;
    let read = rt.block_on(async {
        Ok::<_, tranche::ledger::LedgerError>((
            ledger.runs(Some(plan_id)).await?,
            ledger.intents(plan_id).await?,
            ledger.orders(plan_id).await?,
            ledger.fills(plan_id).await?,
            ledger.items(plan_id).await?,
        ))
    });
    let (runs, intents, orders, fills, items) = read.map_err(|e| CliError::failure(e.to_string()))?;
    if runs.is_empty() && intents.is_empty() && orders.is_empty() && fills.is_empty() && items.is_empty() {
        return Err(CliError::no_input(format!("plan {plan_id} is not in the ledger {spec}"))
            .with_fix(format!("`tranche ledger runs --ledger {spec}` lists the plans it holds")));
    }
    if json {
        let all =
            serde_json::json!({"runs": runs, "intents": intents, "orders": orders, "fills": fills, "items": items});
        outln!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    outln!("plan {plan_id}: {} run(s), {} order intent(s), {} fill(s)", runs.len(), intents.len(), fills.len());
    for run in &runs {
        let finished = run.finished_at.map(|t| format!(", finished {}", millis(t))).unwrap_or_default();
        outln!("  run {} {}: started {}{finished}", run.run_id, run.status.as_str(), millis(run.started_at));
    }
    if !items.is_empty() {
        // Items a run finished on purpose: a resumed run reports them as recorded.
        outln!("\nFINISHED ITEMS");
        for item in &items {
            outln!(
                "  #{:<3} {:<6} {:<16} {}",
                item.item_index,
                item.symbol.as_str(),
                crate::output::outcome_name(item.outcome),
                item.reason.as_deref().unwrap_or("")
            );
        }
    }
    outln!("\nORDERS");
    for order in &orders {
        outln!(
            "  {:<36} {:<6} {:<4} {:<16} filled {}",
            order.client_order_id.as_str(),
            order.symbol.as_str(),
            order.side.as_str(),
            order.status.as_str(),
            order.filled_qty.get().normalize()
        );
    }
    outln!("\nFILLS");
    for fill in &fills {
        outln!(
            "  {} {:<6} {:<4} {:>14} @ {:<10} bid {:<10} ask {:<10} {}",
            fill.filled_at.format("%H:%M:%S%.3f"),
            fill.symbol.as_str(),
            fill.side.as_str(),
            fill.qty.get().normalize(),
            fill.price.get().normalize(),
            fill.bid.map_or("-".into(), |p| p.get().normalize().to_string()),
            fill.ask.map_or("-".into(), |p| p.get().normalize().to_string()),
            fill.client_order_id.as_str()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A time for people: UTC to the millisecond.
fn millis(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
