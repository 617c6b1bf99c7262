//! End-to-end: `tranche execute --report FILE` with the real binary, on the embedded simulator
//! and through the Alpaca emulator. The page is parsed as HTML and checked for its table (one row
//! per plan item), its charts (one per traded symbol, none for HOLD), the absence of any external
//! resource, and the absence of the API secret there and in the command's output.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;

use scraper::{Html, Selector};
use tranche_tests::example;

mod support;
use support::{start_emulator, temp_dir, tranche};

/// A secret no output may contain.
const SECRET: &str = "zz-report-test-secret-7f3a9c";

fn select<'a>(page: &'a Html, css: &str) -> Vec<scraper::ElementRef<'a>> {
    page.select(&Selector::parse(css).unwrap()).collect()
}

fn text(element: scraper::ElementRef<'_>) -> String {
    element.text().collect::<String>().trim().to_owned()
}

/// The summary table's rows as (symbol, side, orders).
fn summary_rows(page: &Html) -> Vec<(String, String, u32)> {
    select(page, "table.summary tbody tr")
        .into_iter()
        .map(|row| {
            let cells: Vec<String> = row.select(&Selector::parse("td").unwrap()).map(text).collect();
            (cells[0].clone(), cells[1].clone(), cells[10].parse().unwrap())
        })
        .collect()
}

/// Fails when the page could load anything from anywhere.
fn assert_self_contained(html: &str, page: &Html) {
    assert!(select(page, "script").is_empty(), "no script at all");
    assert!(select(page, "link").is_empty(), "no <link>");
    assert!(select(page, "img, iframe, object, embed, use, image").is_empty(), "no embedded resource");
    for element in select(page, "*") {
        for (name, value) in element.value().attrs() {
            let value = value.trim().to_ascii_lowercase();
            let external = value.starts_with("http:") || value.starts_with("https:") || value.starts_with("//");
            assert!(!external, "<{} {name}=\"{value}\"> points outside the page", element.value().name());
            assert!(!matches!(name, "src" | "href" | "xlink:href"), "no {name}= at all: {value}");
        }
    }
    let lower = html.to_ascii_lowercase();
    for needle in ["<script", "<link", "src=", "href=", "@import", "url(http", "url(//", "@font-face"] {
        assert!(!lower.contains(needle), "the page contains `{needle}`");
    }
}

fn assert_no_secret(report: &str, out: &Output) {
    assert!(!report.contains(SECRET), "the secret is not in the report");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(SECRET), "nor on stdout");
    assert!(!String::from_utf8_lossy(&out.stderr).contains(SECRET), "nor on stderr");
}

/// Checks a run's report: one row per plan item, one chart per traded symbol, each with its
/// band, limit steps and fills.
fn assert_run_report(report: &Path, plan_symbols: &[&str]) {
    let html = std::fs::read_to_string(report).unwrap();
    let page = Html::parse_document(&html);
    assert_self_contained(&html, &page);
    let rows = summary_rows(&page);
    assert_eq!(rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), plan_symbols, "one row per item, in plan order");
    let traded: BTreeSet<&str> = rows.iter().filter(|r| r.2 > 0).map(|r| r.0.as_str()).collect();
    let held: BTreeSet<&str> = rows.iter().filter(|r| r.1 == "HOLD").map(|r| r.0.as_str()).collect();
    let charts = select(&page, "svg.chart");
    let charted: Vec<&str> = charts.iter().map(|c| c.value().attr("data-symbol").unwrap()).collect();
    assert_eq!(charted.len(), traded.len(), "one chart per traded symbol: {charted:?}");
    assert_eq!(charted.iter().copied().collect::<BTreeSet<_>>(), traded);
    assert!(held.iter().all(|h| !charted.contains(h)), "no chart for HOLD items");
    for chart in &charts {
        let symbol = chart.value().attr("data-symbol").unwrap();
        let count = |css: &str| chart.select(&Selector::parse(css).unwrap()).count();
        assert_eq!(count("polygon.band"), 1, "{symbol}: the bid/ask band");
        assert!(count("g.limit") >= 1, "{symbol}: limit steps");
        assert!(count("circle.fill") >= 1, "{symbol}: fills");
        assert_eq!(count("g.legend"), 1, "{symbol}: a legend");
        let labels: String = chart.text().collect();
        assert!(labels.contains("price (USD)") && labels.contains("time (UTC"), "{symbol}: axis titles");
        // The arrival-mid label comes after every fill dot, so none is drawn over it.
        let html = chart.html();
        let (label, last_fill) = (html.find("arrival-label"), html.rfind("class=\"fill"));
        assert!(label.is_some() && label > last_fill, "{symbol}: the arrival label is drawn over the fills");
    }
    // At a narrow width the items table scrolls inside its own container, not the page.
    assert_eq!(select(&page, "div.table-scroll > table.summary").len(), 1, "the table has a scroll container");
    assert!(html.contains(".table-scroll{overflow-x:auto"), "and it scrolls sideways");
}

#[test]
fn a_simulated_run_writes_a_self_contained_report_with_a_chart_per_traded_symbol() {
    let dir = temp_dir("sim");
    let report = dir.join("run.html");
    let plan = example("plan.json");
    let out = tranche()
        .args(["execute", plan.to_str().unwrap(), "--report", report.to_str().unwrap()])
        .env("APCA_API_SECRET_KEY", SECRET)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("success: 4 of 4 items completed"), "stdout unchanged");
    assert!(String::from_utf8_lossy(&out.stderr).contains("report written to"));
    assert_run_report(&report, &["AAPL", "MSFT", "SPY", "EDZ", "QQQ"]);
    let html = std::fs::read_to_string(&report).unwrap();
    assert_no_secret(&html, &out);
    assert!(!dir.join("run.html.partial").exists(), "no partial file left behind");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_dry_run_report_shows_the_preview_and_nothing_is_sent() {
    let dir = temp_dir("dry");
    let report = dir.join("preview.html");
    let plan = example("plan.json");
    let out = tranche()
        .args(["execute", plan.to_str().unwrap(), "--dry-run", "--report", report.to_str().unwrap()])
        .env("APCA_API_SECRET_KEY", SECRET)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&report).unwrap();
    let page = Html::parse_document(&html);
    assert_self_contained(&html, &page);
    assert_eq!(select(&page, "table.summary tbody tr").len(), 5, "one row per item");
    assert!(select(&page, "svg.chart").is_empty(), "a preview has no charts");
    assert!(select(&page, "h1").into_iter().map(text).any(|t| t.contains("Dry run")));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("order "), "no order was placed");
    assert_no_secret(&html, &out);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unwritable_report_path_stops_before_anything_is_sent() {
    let dir = temp_dir("unwritable");
    let report = dir.join("no-such-dir").join("run.html");
    let plan = example("plan.json");
    let out =
        tranche().args(["execute", plan.to_str().unwrap(), "--report", report.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--report") && stderr.contains("nothing was sent"), "{stderr}");
    assert!(!stderr.contains("order "), "no order was placed: {stderr}");
    assert!(out.stdout.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_run_at_alpaca_through_the_emulator_charts_the_streamed_quotes() {
    let plan = example("plan.json");
    let (_emulator, url) = start_emulator(&plan);
    let dir = temp_dir("alpaca");
    let report = dir.join("run.html");
    let config = dir.join("fast.toml");
    std::fs::write(&config, "[engine]\nrepeg_interval = 1.0\n").unwrap();
    let out = tranche()
        .args(["execute", plan.to_str().unwrap(), "--broker", "alpaca", "--report", report.to_str().unwrap()])
        .args(["--ledger", &format!("sqlite:{}", dir.join("l.sqlite").display())])
        .args(["--config", config.to_str().unwrap()])
        .env("APCA_API_BASE_URL", &url)
        .env("APCA_API_DATA_URL", &url)
        .env("APCA_API_KEY_ID", support::KEY)
        .env("APCA_API_SECRET_KEY", support::SECRET)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_run_report(&report, &["AAPL", "MSFT", "SPY", "EDZ", "QQQ"]);
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(!html.contains(support::SECRET) && !html.contains(&url), "neither the secret nor the URL");
    let everything = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!everything.contains(support::SECRET));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_run_that_cannot_start_leaves_no_report_page_behind() {
    let dir = temp_dir("unreachable");
    let report = dir.join("run.html");
    let plan = example("plan.json");
    // A loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let (code, _, stderr) = support::run(
        tranche()
            .args(["execute", plan.to_str().unwrap(), "--broker", "alpaca", "--report", report.to_str().unwrap()])
            .env("APCA_API_BASE_URL", &url)
            .env("APCA_API_DATA_URL", &url)
            .env("APCA_API_KEY_ID", "KEY")
            .env("APCA_API_SECRET_KEY", SECRET),
    );
    assert_eq!(code, Some(69), "the broker is unreachable: {stderr}");
    assert!(!report.exists(), "the \"run in progress\" page is removed when the run never started");
    assert!(!stderr.contains(SECRET));
    let _ = std::fs::remove_dir_all(&dir);
}
