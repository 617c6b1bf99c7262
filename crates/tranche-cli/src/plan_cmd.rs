//! `tranche plan ...`: reading and checking plan files, and making one from target weights.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rust_decimal::Decimal;
use tranche::domain::{Action, PlanError, RebalancePlan, Usd};

use crate::broker_cmd::{self, BrokerOptions};
use crate::error::{CliError, CliResult};
use tranche::planning::targets;
use tranche::planning::weights::{self as plan_new, NewPlan};

/// Options of `tranche plan new`.
#[derive(Debug, Clone, clap::Args)]
pub struct NewOptions {
    /// Target weights: CSV with a `symbol,weight` header, or JSON (`{"AAPL": 0.3}` or
    /// `[{"symbol": "AAPL", "weight": 0.3}]`). Weights are fractions (or `30%` in CSV), each at
    /// least 0, adding up to at most 1; the rest stays cash.
    #[arg(long, value_name = "FILE")]
    pub targets: PathBuf,
    #[command(flatten)]
    /// The broker whose equity and positions the plan starts from.
    pub broker: BrokerOptions,
    /// Write the plan to this file and print a summary table (default: the plan on stdout).
    #[arg(long, value_name = "PLAN.json")]
    pub out: Option<PathBuf>,
    /// Differences smaller than this many dollars become HOLD.
    #[arg(long, value_name = "USD", default_value = "1", value_parser = parse_min_trade)]
    pub min_trade: Decimal,
    /// Keep positions that are not in the targets as they are (HOLD); by default they are sold
    /// to zero.
    #[arg(long)]
    pub keep_unlisted: bool,
    /// Make the plan even when part of the equity is in holdings that could not be read (their
    /// symbols cannot be in the plan); by default that is refused, since the targets would be
    /// computed on an equity the plan does not see whole.
    #[arg(long)]
    pub allow_unread_holdings: bool,
    /// The plan id, the idempotency key of its execution (default: rebalance-YYYYMMDD-HHMMSS-mmm,
    /// UTC now).
    #[arg(long, value_name = "ID")]
    pub plan_id: Option<String>,
}

fn parse_min_trade(text: &str) -> Result<Decimal, String> {
    let value = tranche::domain::money::parse_decimal(text)?;
    if value < Decimal::ZERO {
        return Err(format!("{value} is negative; use a dollar amount of 0 or more"));
    }
    Ok(value)
}

/// The largest plan (or targets) file read (a plan of thousands of items is a few MB).
const MAX_PLAN_BYTES: u64 = 64 << 20;

/// The text of a plan file (66 when it cannot be read): see [`read_input_text`].
fn read_plan_text(path: &Path) -> Result<String, CliError> {
    read_input_text(path, "plan file")
}

/// The text of an input file, a plan or targets (66 when it cannot be read, naming it as
/// `what`): UTF-8, with or without a byte-order mark, or UTF-16 with one (what PowerShell's `>`
/// and Excel's "Unicode text" write); anything else, or a file past `MAX_PLAN_BYTES`, is an
/// invalid plan (65) that says why.
fn read_input_text(path: &Path, what: &str) -> Result<String, CliError> {
    let shown = path.display();
    let cannot = |e: std::io::Error| CliError::no_input(format!("cannot read {what} {shown}: {e}"));
    if std::fs::metadata(path).map_err(cannot)?.len() > MAX_PLAN_BYTES {
        return Err(CliError::invalid_plan(format!("{shown}: larger than {} MiB", MAX_PLAN_BYTES >> 20)));
    }
    let bytes = std::fs::read(path).map_err(cannot)?;
    let utf16 = |bytes: &[u8], unit: fn([u8; 2]) -> u16| {
        let units: Vec<u16> = bytes.chunks(2).map(|p| unit([p[0], p.get(1).copied().unwrap_or(0)])).collect();
        String::from_utf16(&units)
            .map_err(|_| CliError::invalid_plan(format!("{shown}: not UTF-16 text, though it starts as UTF-16")))
    };
    match bytes.as_slice() {
        [0xFF, 0xFE, rest @ ..] => utf16(rest, u16::from_le_bytes),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, u16::from_be_bytes),
        [0xEF, 0xBB, 0xBF, rest @ ..] | rest => String::from_utf8(rest.to_vec()).map_err(|e| {
            CliError::invalid_plan(format!(
                "{shown}: not UTF-8 text (byte {} of the file is not); save the {what} as UTF-8",
                bytes.len() - rest.len() + e.utf8_error().valid_up_to()
            ))
        }),
    }
}

/// Reads and validates a plan file; the error lists every problem (65).
pub fn read_plan(path: &Path) -> Result<RebalancePlan, CliError> {
    let text = read_plan_text(path)?;
    RebalancePlan::from_json_str(&text).map_err(|error| CliError::invalid_plan(format!("{}: {error}", path.display())))
}

/// `tranche plan validate PLAN [--json]`.
pub fn validate(path: &Path, json: bool) -> CliResult {
    let text = read_plan_text(path)?;
    match RebalancePlan::from_json_str(&text) {
        Ok(plan) => {
            if json {
                let summary = serde_json::json!({
                    "valid": true,
                    "plan_id": plan.plan_id,
                    "items": plan.items.len(),
                    "buys": count(&plan, Action::Buy),
                    "sells": count(&plan, Action::Sell),
                    "holds": count(&plan, Action::Hold),
                    "buy_notional": total(&plan, Action::Buy),
                    "sell_notional": total(&plan, Action::Sell),
                });
                outln!("{summary}");
            } else {
                outln!(
                    "{}: valid plan `{}` with {} items ({} buys for ${}, {} sells for ${}, {} holds)",
                    path.display(),
                    plan.plan_id,
                    plan.items.len(),
                    count(&plan, Action::Buy),
                    total(&plan, Action::Buy),
                    count(&plan, Action::Sell),
                    total(&plan, Action::Sell),
                    count(&plan, Action::Hold),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            if json {
                let problems = match &error {
                    PlanError::Syntax { line, column, message } => {
                        vec![serde_json::json!({"path": format!("line {line}, column {column}"), "message": message})]
                    }
                    PlanError::Invalid(issues) => {
                        issues.0.iter().map(|i| serde_json::json!({"path": i.path, "message": i.message})).collect()
                    }
                };
                outln!("{}", serde_json::json!({"valid": false, "problems": problems}));
                // The problems are the answer, on stdout; stderr stays quiet for scripts.
                Ok(crate::exit::code(crate::exit::INVALID_PLAN))
            } else {
                Err(CliError::invalid_plan(format!("{}: {error}", path.display())))
            }
        }
    }
}

fn count(plan: &RebalancePlan, action: Action) -> usize {
    plan.items.iter().filter(|i| i.action == action).count()
}

/// The absolute dollar total of one action's items, as text ("overflow" for absurd plans).
fn total(plan: &RebalancePlan, action: Action) -> String {
    plan.items
        .iter()
        .filter(|i| i.action == action)
        .try_fold(Usd::ZERO, |acc, i| acc.checked_add(i.trade_amount.abs()))
        .map_or_else(|| "overflow".to_owned(), |t| t.to_string())
}

/// `tranche plan new --targets FILE [--out PLAN.json]`: a plan from target weights and the
/// broker's equity and positions.
pub fn new(options: &NewOptions) -> CliResult {
    let path = &options.targets;
    let text = read_input_text(path, "targets file")?;
    let targets =
        targets::parse(&text).map_err(|problems| CliError::invalid_plan(format!("{}: {problems}", path.display())))?;
    let plan_id = match &options.plan_id {
        Some(id) => match tranche::domain::plan::id_problem(id) {
            Some(problem) => return Err(CliError::usage(format!("--plan-id {problem}"))),
            None => id.trim().to_owned(),
        },
        // Down to the millisecond: two plans made by one script in the same second must not
        // share an id (with a ledger the second would return the first's result).
        None => format!("rebalance-{}", chrono::Utc::now().format("%Y%m%d-%H%M%S-%3f")),
    };
    let connection = broker_cmd::connect(&options.broker)?;
    let account = connection.call("account", connection.broker.account())?;
    let positions = connection.call("positions", connection.broker.positions())?;
    refuse_untradable(&targets, &connection.call("assets", connection.broker.assets())?, path)?;
    let how = NewPlan {
        plan_id,
        timestamp: chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 3),
        min_trade: options.min_trade,
        keep_unlisted: options.keep_unlisted,
        targets_source: path.display().to_string(),
        broker: connection.label.to_owned(),
    };
    if let Some(gap) = plan_new::unaccounted(account.equity, account.cash, &positions) {
        let what = format!(
            "${gap} of the equity is in holdings the broker reported but that could not be read (see the \
             warnings above); they cannot be in the plan"
        );
        if !options.allow_unread_holdings {
            return Err(
                CliError::invalid_plan(what).with_fix("close or move those holdings, or pass --allow-unread-holdings")
            );
        }
        tracing::warn!(target: "tranche", unaccounted = %gap, "{what}; going on (--allow-unread-holdings)");
    }
    let plan = plan_new::build(&targets, account.equity, &positions, &how).map_err(|problems| {
        let n = problems.len();
        let list: Vec<String> = problems.iter().map(|p| format!("\n  - {p}")).collect();
        CliError::invalid_plan(format!(
            "cannot make a plan from {}: {n} problem{}:{}",
            path.display(),
            if n == 1 { "" } else { "s" },
            list.concat()
        ))
    })?;
    tracing::info!(plan_id = %plan.plan_id, items = plan.items.len(), broker = connection.label, "plan made");
    let json = plan.to_json_pretty();
    let Some(out) = &options.out else {
        outln!("{json}");
        return Ok(ExitCode::SUCCESS);
    };
    write_atomically(out, &json)
        .map_err(|e| CliError::failure(format!("cannot write the plan to {}: {e}", out.display())))?;
    summary(&plan, out, &mut std::io::stdout().lock());
    Ok(ExitCode::SUCCESS)
}

/// Refuses (65) targets with a weight above 0 that the broker does not list as active and
/// tradable (a typo such as `AAPLL`): the holding meant would be unlisted and sold to zero, and
/// the typo's buy would fail alone at execution. A weight of 0 (a delisted holding to sell) is
/// left to the plan.
fn refuse_untradable(
    wanted: &[targets::Target],
    assets: &[tranche::domain::Asset],
    path: &Path,
) -> Result<(), CliError> {
    let tradable: std::collections::HashSet<&tranche::domain::Symbol> =
        assets.iter().filter(|a| a.active && a.tradable).map(|a| &a.symbol).collect();
    let unknown: Vec<&str> = wanted
        .iter()
        .filter(|t| !t.weight.is_zero() && !tradable.contains(&t.symbol))
        .map(|t| t.symbol.as_str())
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(CliError::invalid_plan(format!(
        "{}: {} not an active, tradable asset at the broker: {}",
        path.display(),
        if unknown.len() == 1 { "a target is" } else { "targets are" },
        unknown.join(", ")
    ))
    .with_fix("check the symbols' spelling (symbols are the broker's: BRK.B, not BRK-B)"))
}

/// Writes `text` to a temporary file beside `path`, then renames it over `path`: a reader never
/// sees half a plan.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    let temporary = path.with_file_name(name);
    std::fs::write(&temporary, format!("{text}\n"))?;
    std::fs::rename(&temporary, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}

/// The new plan as a table, and where it was written.
fn summary(plan: &RebalancePlan, out: &Path, to: &mut impl Write) {
    let _ = writeln!(
        to,
        "{:<10} {:<6} {:>14} {:>14} {:>14} {:>9} {:>9}",
        "SYMBOL", "ACTION", "CURRENT $", "TARGET $", "TRADE $", "CURRENT", "TARGET"
    );
    for item in &plan.items {
        let _ = writeln!(
            to,
            "{:<10} {:<6} {:>14} {:>14} {:>14} {:>9} {:>9}",
            item.symbol.as_str(),
            item.action.as_str(),
            format!("{:.2}", item.current_value.get()),
            format!("{:.2}", item.target_value.get()),
            format!("{:.2}", item.trade_amount.get()),
            format!("{:.2}%", item.current_weight.get() * Decimal::ONE_HUNDRED),
            format!("{:.2}%", item.target_weight.get() * Decimal::ONE_HUNDRED),
        );
    }
    let _ = writeln!(
        to,
        "\nplan `{}` written to {}: {} buys for ${}, {} sells for ${}, {} holds; portfolio ${}",
        plan.plan_id,
        out.display(),
        count(plan, Action::Buy),
        total(plan, Action::Buy),
        count(plan, Action::Sell),
        total(plan, Action::Sell),
        count(plan, Action::Hold),
        plan.total_portfolio_value
    );
}
