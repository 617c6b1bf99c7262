//! Human output: progress lines on stderr, the result table and the dry-run table on stdout.

use std::io::Write;

use tranche::domain::{ExecutionResult, ItemOutcome};
use tranche::engine::{Preview, ProgressEvent};

fn opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A decimal newtype without trailing zeros.
fn num(value: impl Into<rust_decimal::Decimal>) -> String {
    value.into().normalize().to_string()
}

/// One plain line per progress event, on stderr.
pub fn progress_line(event: &ProgressEvent) {
    let line = match event {
        ProgressEvent::PhaseStarted { phase, at } => format!("{} phase {phase:?} started", at.format("%H:%M:%S%.3f")),
        ProgressEvent::PhaseDone { phase, at } => format!("{} phase {phase:?} done", at.format("%H:%M:%S%.3f")),
        ProgressEvent::ItemStarted { symbol, side, qty, arrival_mid, at } => {
            format!(
                "{} {symbol:<6} {side} {} (mid {})",
                at.format("%H:%M:%S%.3f"),
                num(*qty),
                opt(arrival_mid.map(num))
            )
        }
        ProgressEvent::OrderPlaced { symbol, qty, limit, at } => {
            format!(
                "{} {symbol:<6} order {} @ {}",
                at.format("%H:%M:%S%.3f"),
                num(*qty),
                limit.map_or("market".to_owned(), num)
            )
        }
        ProgressEvent::Repegged { symbol, limit, repegs, at } => {
            format!("{} {symbol:<6} re-peg #{repegs} to {limit}", at.format("%H:%M:%S%.3f"))
        }
        ProgressEvent::Escalated { symbol, limit, at } => {
            format!(
                "{} {symbol:<6} escalated to {}",
                at.format("%H:%M:%S%.3f"),
                limit.map_or("market".to_owned(), |l| l.to_string())
            )
        }
        ProgressEvent::Filled { symbol, qty, price, filled, target, at } => {
            format!(
                "{} {symbol:<6} filled {} @ {} ({} of {})",
                at.format("%H:%M:%S%.3f"),
                num(*qty),
                num(*price),
                num(*filled),
                num(*target)
            )
        }
        ProgressEvent::ItemDone { symbol, outcome, reason, at } => {
            format!(
                "{} {symbol:<6} {outcome:?}{}",
                at.format("%H:%M:%S%.3f"),
                reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
            )
        }
    };
    eprintln!("{line}");
}

/// The result as a table with a summary line.
pub fn result_table(result: &ExecutionResult, out: &mut impl Write) {
    let _ = writeln!(
        out,
        "SYMBOL   SIDE  OUTCOME                  FILLED         TARGET   AVG PRICE     ARRIVAL  SLIP BPS ORDERS REPEGS  REASON"
    );
    for row in &result.orders {
        let _ = writeln!(
            out,
            "{:<8} {:<5} {:<16} {:>14} {:>14} {:>11} {:>11} {:>9} {:>6} {:>6}  {}",
            row.symbol.as_str(),
            row.action.as_str(),
            outcome_name(row.outcome),
            row.filled_qty.get().normalize().to_string(),
            row.requested_qty.get().normalize().to_string(),
            opt(row.avg_fill_price.map(num)),
            opt(row.arrival_mid.map(num)),
            opt(row.slippage_bps),
            row.orders,
            row.repegs,
            row.reason.clone().unwrap_or_default()
        );
    }
    let _ = writeln!(
        out,
        "\n{}: {} of {} items completed, ${} traded (plan {})",
        match result.status {
            tranche::domain::ExecutionStatus::Success => "success",
            tranche::domain::ExecutionStatus::PartialSuccess => "partial success",
            tranche::domain::ExecutionStatus::Failure => "failure",
        },
        result.orders_succeeded,
        result.orders_placed,
        result.total_trade_value,
        result.plan_id
    );
}

fn outcome_name(outcome: ItemOutcome) -> &'static str {
    match outcome {
        ItemOutcome::Filled => "filled",
        ItemOutcome::PartiallyFilled => "partially filled",
        ItemOutcome::Unfilled => "unfilled",
        ItemOutcome::Failed => "failed",
        ItemOutcome::Skipped => "skipped",
        ItemOutcome::Held => "held",
    }
}

/// The dry run as a table.
pub fn preview_table(preview: &Preview, out: &mut impl Write) {
    let _ = writeln!(out, "{:<8} {:<5} {:>14} {:>11} {:>11}  NOTE", "SYMBOL", "SIDE", "QTY", "MID", "1ST LIMIT");
    for row in &preview.rows {
        let _ = writeln!(
            out,
            "{:<8} {:<5} {:>14} {:>11} {:>11}  {}",
            row.symbol.as_str(),
            row.action.as_str(),
            opt(row.qty.map(|q| q.get().normalize())),
            opt(row.reference.map(num)),
            row.first_limit.map_or_else(
                || if row.qty.is_some() { "market".to_owned() } else { "-".to_owned() },
                |l| l.to_string()
            ),
            row.note.clone().unwrap_or_default()
        );
    }
    let _ = writeln!(
        out,
        "\nsells ~${}, buys ~${}, buying power now ${}",
        preview.sell_proceeds,
        preview.buy_cost,
        opt(preview.buying_power)
    );
}
