//! The report's HTML: the page shell (inline CSS, a content-security policy that forbids every
//! external load), the run summary, the per-item table, one section per charted symbol, and the
//! dry-run and "run in progress" pages.
//!
//! Invariants: every text that comes from data (plan ids, symbols, reasons, labels) goes through
//! [`escape`]; the page references no external resource (no script, stylesheet, font or image
//! URL); nothing secret is ever passed in (the callers hand over results, events and quotes only).

use std::fmt::Write;

use rust_decimal::Decimal;
use tranche_domain::{Action, ExecutionResult, ExecutionStatus, ItemOutcome, ItemResult, Usd};
use tranche_engine::Preview;

use super::chart::ChartData;
use super::svg;
use super::tape::Trace;
use super::RunInfo;

/// Escapes `text` for HTML text and attribute values (`&`, `<`, `>`, `"`, `'`).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;color:#111827;
 background:#f9fafb;margin:0;padding:24px}
main{max-width:1180px;margin:0 auto}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 10px}h3{font-size:15px;margin:0 0 8px}
p.sub{color:#4b5563;margin:0 0 16px}
dl.facts{display:grid;grid-template-columns:repeat(4,minmax(0,1fr));gap:8px 16px;background:#fff;
 border:1px solid #e5e7eb;border-radius:8px;padding:12px 16px;margin:0}
dl.facts div{min-width:0}dl.facts dt{font-size:12px;color:#6b7280}
dl.facts dd{margin:2px 0 0;font-weight:600;overflow-wrap:anywhere}
.table-scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #e5e7eb;font-size:13px}
th,td{padding:6px 8px;border-bottom:1px solid #e5e7eb;text-align:left;vertical-align:top}
th{background:#f3f4f6;font-weight:600;white-space:nowrap}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tbody tr:nth-child(even){background:#fafafa}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;white-space:nowrap}
.filled,.success{background:#dcfce7;color:#166534}.partially_filled,.partial_success{background:#fef3c7;color:#92400e}
.unfilled,.failed,.failure{background:#fee2e2;color:#991b1b}.skipped,.held{background:#e5e7eb;color:#374151}
section.symbol{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:14px 16px;margin:14px 0}
section.symbol svg{width:100%;height:auto;display:block}
p.note,p.legend-text{color:#4b5563;font-size:13px}
footer{color:#6b7280;font-size:12px;margin-top:28px}
";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{STYLE}</style>\n\
         </head>\n<body>\n<main>\n{body}</main>\n</body>\n</html>\n",
        escape(title)
    )
}

/// A decimal without trailing zeros.
fn num(value: impl Into<Decimal>) -> String {
    value.into().normalize().to_string()
}

fn opt(value: Option<String>) -> String {
    value.unwrap_or_else(|| "–".to_owned())
}

/// Dollars with cents and thousands separators: `$19,997.79`, `-$5.00`.
fn dollars(value: Usd) -> String {
    let rounded = value.get().round_dp(2);
    let text = format!("{:.2}", rounded.abs());
    let (whole, cents) = text.split_once('.').unwrap_or((&text, "00"));
    let mut grouped = String::new();
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    let sign = if rounded.is_sign_negative() && !rounded.is_zero() { "-" } else { "" };
    format!("{sign}${grouped}.{cents}")
}

fn status_name(status: ExecutionStatus) -> (&'static str, &'static str) {
    match status {
        ExecutionStatus::Success => ("success", "success"),
        ExecutionStatus::PartialSuccess => ("partial_success", "partial success"),
        ExecutionStatus::Failure => ("failure", "failure"),
    }
}

fn outcome_name(outcome: ItemOutcome) -> (&'static str, &'static str) {
    match outcome {
        ItemOutcome::Filled => ("filled", "filled"),
        ItemOutcome::PartiallyFilled => ("partially_filled", "partially filled"),
        ItemOutcome::Unfilled => ("unfilled", "unfilled"),
        ItemOutcome::Failed => ("failed", "failed"),
        ItemOutcome::Skipped => ("skipped", "skipped"),
        ItemOutcome::Held => ("held", "held"),
    }
}

fn badge((class, label): (&str, &str)) -> String {
    format!("<span class=\"badge {class}\">{}</span>", escape(label))
}

fn facts(out: &mut String, facts: &[(&str, String)]) {
    out.push_str("<dl class=\"facts\">");
    for (name, value) in facts {
        let _ = write!(out, "<div><dt>{}</dt><dd>{value}</dd></div>", escape(name));
    }
    out.push_str("</dl>\n");
}

/// The page for a finished run: summary, table, charts.
pub fn run_page(result: &ExecutionResult, trace: &Trace, info: &RunInfo) -> String {
    let mut body = String::new();
    let _ = writeln!(body, "<h1>Execution report: {}</h1>", escape(&result.plan_id));
    let _ = writeln!(body, "<p class=\"sub\">{}</p>", escape(&info.broker));
    let started = trace.events.iter().map(event_time).min();
    facts(
        &mut body,
        &[
            ("Status", badge(status_name(result.status))),
            ("Items completed", format!("{} of {}", result.orders_succeeded, result.orders_placed)),
            ("Traded (from fills)", escape(&dollars(result.total_trade_value))),
            ("Plan items", result.orders.len().to_string()),
            ("Started (UTC)", opt(started.map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()))),
            ("Finished (UTC)", result.execution_timestamp.format("%Y-%m-%d %H:%M:%S%.3f").to_string()),
            ("Correlation id", escape(&result.correlation_id)),
            ("Report written (UTC)", info.generated.format("%Y-%m-%d %H:%M:%S").to_string()),
        ],
    );
    body.push_str("<h2>Items</h2>\n");
    summary_table(&mut body, &result.orders);
    body.push_str("<h2>Charts</h2>\n<p class=\"legend-text\">Per traded symbol: the shaded band runs from the best bid (green) to the best ask (red) as the engine read them; the black line is the limit price, each step a new price (a re-peg or a new order); amber dashes mark the escalation; violet dots are fills (larger = more shares); the dotted grey line is the mid when the item started (the slippage benchmark).</p>\n");
    let mut charted = 0;
    for (index, item) in result.orders.iter().enumerate() {
        if item.action == Action::Hold {
            continue;
        }
        let samples = trace.quotes.get(&item.symbol).cloned().unwrap_or_default();
        let data = ChartData::collect(&item.symbol, &trace.events, samples);
        if let Some(chart) = svg::chart(&data, index) {
            charted += 1;
            let _ = writeln!(
                body,
                "<section class=\"symbol\" id=\"symbol-{index}\">\n<h3>{}</h3>\n{chart}\n</section>",
                chart_heading(item)
            );
        } else if item.orders > 0 || item.outcome.was_attempted() {
            let _ = writeln!(
                body,
                "<p class=\"note\">{}: no quotes or orders of this symbol were seen in this run.</p>",
                escape(item.symbol.as_str())
            );
        }
    }
    if charted == 0 {
        body.push_str("<p class=\"note\">Nothing to chart: no orders were worked in this run (for example, the plan had already been executed and its result was read from the ledger).</p>\n");
    }
    let _ = writeln!(
        body,
        "<footer>Written by tranche {}. This page loads nothing from anywhere.</footer>",
        env!("CARGO_PKG_VERSION")
    );
    page(&format!("tranche report: {}", result.plan_id), &body)
}

fn event_time(event: &tranche_engine::ProgressEvent) -> tranche_domain::Timestamp {
    use tranche_engine::ProgressEvent as E;
    match event {
        E::PhaseStarted { at, .. }
        | E::PhaseDone { at, .. }
        | E::ItemStarted { at, .. }
        | E::OrderPlaced { at, .. }
        | E::Repegged { at, .. }
        | E::Escalated { at, .. }
        | E::Filled { at, .. }
        | E::Warning { at, .. }
        | E::ItemDone { at, .. } => *at,
    }
}

fn chart_heading(item: &ItemResult) -> String {
    format!(
        "{} · {} · {} {} of {} shares{}{} · {} order{}, {} re-peg{}",
        escape(item.symbol.as_str()),
        escape(item.action.as_str()),
        badge(outcome_name(item.outcome)),
        escape(&num(item.filled_qty)),
        escape(&num(item.requested_qty)),
        item.avg_fill_price.map(|p| format!(" at {}", escape(&num(p)))).unwrap_or_default(),
        item.slippage_bps.map(|b| format!(" · slippage {} bps", escape(&b.to_string()))).unwrap_or_default(),
        item.orders,
        if item.orders == 1 { "" } else { "s" },
        item.repegs,
        if item.repegs == 1 { "" } else { "s" },
    )
}

fn summary_table(out: &mut String, items: &[ItemResult]) {
    out.push_str(
        "<div class=\"table-scroll\"><table class=\"summary\">\n<thead><tr><th>Symbol</th><th>Side</th><th>Outcome</th>\
         <th class=\"num\">Ordered (sh)</th><th class=\"num\">Filled (sh)</th><th class=\"num\">Requested $</th>\
         <th class=\"num\">Filled $</th><th class=\"num\">Avg price</th><th class=\"num\">Arrival mid</th>\
         <th class=\"num\">Slippage (bps)</th><th class=\"num\">Orders</th><th class=\"num\">Re-pegs</th>\
         <th>Reason</th></tr></thead>\n<tbody>\n",
    );
    for item in items {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            escape(item.symbol.as_str()),
            escape(item.action.as_str()),
            badge(outcome_name(item.outcome)),
            escape(&num(item.requested_qty)),
            escape(&num(item.filled_qty)),
            escape(&dollars(item.requested_notional)),
            escape(&dollars(item.filled_notional)),
            escape(&opt(item.avg_fill_price.map(num))),
            escape(&opt(item.arrival_mid.map(num))),
            escape(&opt(item.slippage_bps.map(|b| b.to_string()))),
            item.orders,
            item.repegs,
            escape(item.reason.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</tbody>\n</table></div>\n");
}

/// The page for `--dry-run --report`: the first orders the run would place; nothing was sent.
pub fn preview_page(plan_id: &str, preview: &Preview, info: &RunInfo) -> String {
    let mut body = String::new();
    let _ = writeln!(body, "<h1>Dry run: {}</h1>", escape(plan_id));
    let _ = writeln!(
        body,
        "<p class=\"sub\">{}. Nothing was sent: these are the first orders a run would place now, before buys are scaled to the buying power the sells free up.</p>",
        escape(&info.broker)
    );
    facts(
        &mut body,
        &[
            ("Sells (estimate)", escape(&dollars(preview.sell_proceeds))),
            ("Buys (estimate)", escape(&dollars(preview.buy_cost))),
            ("Buying power now", escape(&opt(preview.buying_power.map(dollars)))),
            ("Report written (UTC)", info.generated.format("%Y-%m-%d %H:%M:%S").to_string()),
        ],
    );
    body.push_str(
        "<h2>First orders</h2>\n<div class=\"table-scroll\"><table class=\"summary preview\">\n<thead><tr><th>Symbol</th><th>Side</th>\
         <th class=\"num\">Shares</th><th class=\"num\">Mid</th><th class=\"num\">First limit</th><th>Note</th></tr></thead>\n<tbody>\n",
    );
    for row in &preview.rows {
        let first_limit = match (row.first_limit, row.qty) {
            (Some(limit), _) => num(limit),
            (None, Some(_)) => "market".to_owned(),
            (None, None) => "–".to_owned(),
        };
        let _ = writeln!(
            body,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            escape(row.symbol.as_str()),
            escape(row.action.as_str()),
            escape(&opt(row.qty.map(num))),
            escape(&opt(row.reference.map(num))),
            escape(&first_limit),
            escape(row.note.as_deref().unwrap_or("")),
        );
    }
    body.push_str("</tbody>\n</table></div>\n");
    let _ = writeln!(
        body,
        "<footer>Written by tranche {}. This page loads nothing from anywhere.</footer>",
        env!("CARGO_PKG_VERSION")
    );
    page(&format!("tranche dry run: {plan_id}"), &body)
}

/// The placeholder written before the run starts: replaced by the report when the run ends, so
/// a file left like this means the run was interrupted.
pub fn pending_page(plan_id: &str, info: &RunInfo) -> String {
    let body = format!(
        "<h1>Run of {} in progress</h1>\n<p class=\"sub\">{}. Started {} UTC. This page is replaced by the report when the run ends; if it is still here, the run was interrupted (run the plan again: it resumes without trading twice when a ledger is used).</p>\n",
        escape(plan_id),
        escape(&info.broker),
        info.generated.format("%Y-%m-%d %H:%M:%S"),
    );
    page(&format!("tranche run in progress: {plan_id}"), &body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn escape_table() {
        let cases = [
            ("plain", "AAPL", "AAPL"),
            ("tags", "<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
            ("quotes", r#"a "b" 'c'"#, "a &quot;b&quot; &#39;c&#39;"),
            ("ampersand_first", "&lt;", "&amp;lt;"),
        ];
        for (name, input, want) in cases {
            assert_eq!(escape(input), want, "{name}");
        }
    }

    #[test]
    fn dollars_table() {
        let cases = [
            ("thousands", "19997.79", "$19,997.79"),
            ("millions", "1234567.891", "$1,234,567.89"),
            ("small", "5", "$5.00"),
            ("negative", "-1000", "-$1,000.00"),
            ("zero", "0", "$0.00"),
        ];
        for (name, input, want) in cases {
            assert_eq!(dollars(input.parse().unwrap()), want, "{name}");
        }
    }

    #[test]
    fn a_page_loads_nothing_from_outside() {
        let info = RunInfo { broker: "simulator <seed 1>".into(), generated: chrono::DateTime::UNIX_EPOCH };
        let html = pending_page("plan \"x\" <b>", &info);
        assert!(html.contains("plan &quot;x&quot; &lt;b&gt;") && html.contains("simulator &lt;seed 1&gt;"));
        assert!(html.contains("default-src 'none'"));
        for external in ["src=", "href=", "<link", "<script", "@import", "url(http"] {
            assert!(!html.contains(external), "{external}");
        }
    }
}
