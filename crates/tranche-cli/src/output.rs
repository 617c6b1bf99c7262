//! Human output: progress on stderr (a live display on a terminal, plain lines otherwise, nothing
//! with `--quiet`), the result table and the dry-run table on stdout.

mod live;

use std::io::{IsTerminal, Write};

use tranche::domain::{ExecutionResult, ItemOutcome, Symbol};
use tranche::engine::{Preview, ProgressEvent};

/// Where progress events are drawn.
#[derive(Debug)]
pub enum Progress {
    /// Nowhere (`--quiet`).
    Quiet,
    /// One plain line per event on stderr (stderr is not a terminal, or `TERM=dumb`).
    Lines,
    /// One JSON object per event on stderr (`--log-format json`: every stderr line is JSON).
    Json,
    /// Live per-symbol bars on the terminal.
    Live(Box<live::Live>),
}

impl Progress {
    /// The display for this process: quiet, JSON lines with JSON logs, live when stderr is a
    /// capable terminal, else plain lines.
    pub fn for_stderr(quiet: bool) -> Self {
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        if quiet {
            Self::Quiet
        } else if crate::logging::is_json() {
            Self::Json
        } else if std::io::stderr().is_terminal() && !dumb {
            Self::Live(Box::new(live::Live::new()))
        } else {
            Self::Lines
        }
    }

    /// Draws one event.
    pub fn event(&mut self, event: &ProgressEvent) {
        match self {
            Self::Quiet => {}
            Self::Lines => progress_line(event),
            Self::Json => progress_json(event),
            Self::Live(live) => live.event(event),
        }
    }

    /// Ends the display, leaving the final state on screen.
    pub fn finish(self) {
        if let Self::Live(live) = self {
            live.finish();
        }
    }
}

fn opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A decimal newtype without trailing zeros.
fn num(value: impl Into<rust_decimal::Decimal>) -> String {
    value.into().normalize().to_string()
}

/// A symbol padded to the width of the progress columns.
fn sym(symbol: &Symbol) -> String {
    format!("{:<6}", symbol.as_str())
}

/// One plain line per progress event, on stderr.
pub fn progress_line(event: &ProgressEvent) {
    let line = match event {
        ProgressEvent::PhaseStarted { phase, at } => format!("{} phase {phase:?} started", at.format("%H:%M:%S%.3f")),
        ProgressEvent::PhaseDone { phase, at } => format!("{} phase {phase:?} done", at.format("%H:%M:%S%.3f")),
        ProgressEvent::ItemStarted { symbol, side, qty, arrival_mid, at } => {
            format!(
                "{} {} {side} {} (mid {})",
                at.format("%H:%M:%S%.3f"),
                sym(symbol),
                num(*qty),
                opt(arrival_mid.map(num))
            )
        }
        ProgressEvent::OrderPlaced { symbol, qty, limit, at } => {
            format!(
                "{} {} order {} @ {}",
                at.format("%H:%M:%S%.3f"),
                sym(symbol),
                num(*qty),
                limit.map_or("market".to_owned(), num)
            )
        }
        ProgressEvent::Repegged { symbol, limit, repegs, at } => {
            format!("{} {} re-peg #{repegs} to {limit}", at.format("%H:%M:%S%.3f"), sym(symbol))
        }
        ProgressEvent::Escalated { symbol, limit, at } => {
            format!(
                "{} {} escalated to {}",
                at.format("%H:%M:%S%.3f"),
                sym(symbol),
                limit.map_or("market".to_owned(), |l| l.to_string())
            )
        }
        ProgressEvent::Filled { symbol, qty, price, filled, target, at } => {
            format!(
                "{} {} filled {} @ {} ({} of {})",
                at.format("%H:%M:%S%.3f"),
                sym(symbol),
                num(*qty),
                num(*price),
                num(*filled),
                num(*target)
            )
        }
        ProgressEvent::Warning { symbol, message, at } => format!(
            "{} warning{}: {message}",
            at.format("%H:%M:%S%.3f"),
            symbol.as_ref().map(|s| format!(" {}", sym(s))).unwrap_or_default()
        ),
        ProgressEvent::ItemDone { symbol, outcome, reason, at } => {
            format!(
                "{} {} done: {}{}",
                at.format("%H:%M:%S%.3f"),
                sym(symbol),
                outcome_name(*outcome),
                reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
            )
        }
    };
    errln!("{line}");
}

/// One progress event as a JSON line on stderr, shaped like the JSON log lines with the event
/// under `progress`: `{"timestamp", "level": "INFO", "target": "tranche::progress", "progress": {..}}`.
pub fn progress_json(event: &ProgressEvent) {
    let line = serde_json::json!({
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "level": "INFO",
        "target": "tranche::progress",
        "progress": event,
    });
    errln!("{line}");
}

/// The result as a table with a summary line.
pub fn result_table(result: &ExecutionResult, out: &mut impl Write) {
    let _ = writeln!(
        out,
        "SYMBOL   SIDE  OUTCOME               FILLED SH      TARGET SH   AVG PRICE     ARRIVAL  SLIP BPS ORDERS REPEGS  REASON"
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
        "\nFILLED SH and TARGET SH are shares; SLIP BPS is the average price against the arrival mid in basis \
         points, negative is better than the mid."
    );
    let _ = writeln!(
        out,
        "{}: {} of {} items completed, ${} traded (plan {})",
        match result.status {
            tranche::domain::ExecutionStatus::Success => "success",
            tranche::domain::ExecutionStatus::PartialSuccess => "partial success",
            tranche::domain::ExecutionStatus::Failure => "failure",
        },
        result.orders_succeeded,
        result.orders_placed,
        result.total_trade_value.get().round_dp(2),
        result.plan_id
    );
    let working = possibly_working(result);
    if !working.is_empty() {
        let _ = writeln!(
            out,
            "orders of this run that may still be working at the broker (check with `tranche orders`, cancel them there):"
        );
        for order in working {
            let _ = writeln!(out, "  {order}");
        }
    }
}

/// The orders the run could not settle at its end (`possibly_working_orders` in its metadata).
pub(crate) fn possibly_working(result: &ExecutionResult) -> Vec<String> {
    result
        .metadata
        .as_ref()
        .and_then(|m| m.get("possibly_working_orders"))
        .and_then(serde_json::Value::as_array)
        .map(|list| list.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect())
        .unwrap_or_default()
}

/// The human name of an outcome.
pub(crate) fn outcome_name(outcome: ItemOutcome) -> &'static str {
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
    for note in &preview.notes {
        let _ = writeln!(out, "note: {note}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The orders a run could not settle are named under the table, not only in the JSON: the
    /// table of a run interrupted during a broker outage named none of them.
    #[test]
    fn the_table_names_the_orders_that_may_still_be_working() {
        let mut result = ExecutionResult::from_items("p", "c", Vec::new(), chrono::DateTime::UNIX_EPOCH, None);
        let mut table = Vec::new();
        result_table(&result, &mut table);
        assert!(!String::from_utf8_lossy(&table).contains("may still be working"));
        let named = serde_json::json!(["tr-p-AAPL-b1 (o-1): HTTP 503: unavailable"]);
        result.metadata = Some([("possibly_working_orders".to_owned(), named)].into_iter().collect());
        let mut table = Vec::new();
        result_table(&result, &mut table);
        let shown = String::from_utf8_lossy(&table);
        assert!(shown.contains("may still be working") && shown.contains("tr-p-AAPL-b1 (o-1)"), "{shown}");
    }
}
