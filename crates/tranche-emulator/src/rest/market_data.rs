//! Market Data API v2 for stocks, from the simulated market and its tape: latest quotes,
//! trades and bars (one symbol and many) and snapshots, each with the `feed` parameter
//! (`iex`, `sip`, `delayed_sip`, `boats`, `overnight`, `otc`: one simulated market serves
//! them all; any other is a 400).
//!
//! Invariants: numbers are JSON numbers, as on Alpaca's data API; a symbol with nothing to
//! show (no print yet) is left out of a many-symbol answer and is a 404 alone; a read starts
//! the symbol's market, so a later read has prints and bars.

use axum::extract::{Path, Query};
use axum::response::Response;
use serde_json::{json, Map, Value};
use tranche_domain::Symbol;
use tranche_sim::Sim;

use super::{error, ok, Shared};
use crate::render;

/// The feeds a `feed` parameter may name.
const FEEDS: [&str; 6] = ["iex", "sip", "delayed_sip", "boats", "overnight", "otc"];

/// `symbols` and `feed` of the data endpoints.
#[derive(Debug, Default, serde::Deserialize)]
pub struct DataQuery {
    /// `A,B,C` on the many-symbol endpoints.
    pub symbols: Option<String>,
    /// The data feed.
    pub feed: Option<String>,
}

impl DataQuery {
    /// Refuses a feed that Alpaca does not have.
    pub fn check_feed(&self) -> Result<(), Response> {
        match self.feed.as_deref() {
            None | Some("") => Ok(()),
            Some(feed) if FEEDS.contains(&feed) => Ok(()),
            Some(feed) => Err(error(400, 40_010_001, &format!("invalid feed: {feed}"))),
        }
    }

    /// The symbols of a many-symbol request (400 when missing or malformed).
    pub fn symbols(&self) -> Result<Vec<Symbol>, Response> {
        self.check_feed()?;
        let Some(list) = self.symbols.as_deref().filter(|s| !s.trim().is_empty()) else {
            return Err(error(400, 40_010_000, "missing symbols"));
        };
        list.split(',')
            .map(|text| Symbol::parse(text.trim()).map_err(|e| error(400, 40_010_001, &format!("invalid symbol: {e}"))))
            .collect()
    }
}

/// What one of the data reads shows for one symbol (`None`: nothing yet, or not listed).
type Reader = fn(&mut Sim, &Symbol) -> Option<Value>;

fn latest_trade(sim: &mut Sim, symbol: &Symbol) -> Option<Value> {
    sim.tape(symbol).ok()?.last().map(render::trade_body)
}

fn latest_bar(sim: &mut Sim, symbol: &Symbol) -> Option<Value> {
    sim.tape(symbol).ok()?.minute_bar().map(render::bar_body)
}

fn snapshot(sim: &mut Sim, symbol: &Symbol) -> Option<Value> {
    let latest_quote = sim.latest_quote(symbol).ok().map(|q| render::quote_body(&q));
    let tape = sim.tape(symbol).ok()?;
    let or_null = |v: Option<Value>| v.unwrap_or(Value::Null);
    Some(json!({
        "latestTrade": or_null(tape.last().map(render::trade_body)),
        "latestQuote": or_null(latest_quote),
        "minuteBar": or_null(tape.minute_bar().map(render::bar_body)),
        "dailyBar": or_null(tape.daily_bar().map(render::bar_body)),
        "prevDailyBar": or_null(tape.previous_daily_bar().map(render::bar_body)),
    }))
}

/// One symbol: `{"symbol": S, <what>: ..}`, or with `nested` false the value's own fields
/// beside `symbol` (a snapshot); a 404 when there is nothing to show.
fn one(state: &Shared, symbol: &str, query: &DataQuery, what: &str, nested: bool, reader: Reader) -> Response {
    if let Err(response) = query.check_feed() {
        return response;
    }
    let Ok(symbol) = Symbol::parse(symbol) else {
        return error(400, 40_010_001, &format!("invalid symbol: {symbol}"));
    };
    match state.0.broker.with_sim(|sim| reader(sim, &symbol)) {
        Some(value) if nested => ok(json!({"symbol": symbol.as_str(), what: value})),
        Some(Value::Object(mut fields)) => {
            fields.insert("symbol".into(), Value::String(symbol.as_str().to_owned()));
            ok(Value::Object(fields))
        }
        _ => error(404, 40_410_000, &format!("no {what} found for {symbol}")),
    }
}

/// Many symbols: `{<key>: {S: ..}}` (or the map itself for snapshots), symbols with nothing left
/// out.
fn many(state: &Shared, query: &DataQuery, key: Option<&str>, reader: Reader) -> Response {
    let symbols = match query.symbols() {
        Ok(symbols) => symbols,
        Err(response) => return response,
    };
    let found: Map<String, Value> = state
        .0
        .broker
        .with_sim(|sim| symbols.iter().filter_map(|s| reader(sim, s).map(|v| (s.as_str().to_owned(), v))).collect());
    match key {
        Some(key) => ok(json!({ key: found })),
        None => ok(Value::Object(found)),
    }
}

/// `GET /v2/stocks/{symbol}/trades/latest`.
pub async fn latest_trade_one(state: Shared, Path(symbol): Path<String>, Query(q): Query<DataQuery>) -> Response {
    one(&state, &symbol, &q, "trade", true, latest_trade)
}

/// `GET /v2/stocks/trades/latest?symbols=..`.
pub async fn latest_trades(state: Shared, Query(q): Query<DataQuery>) -> Response {
    many(&state, &q, Some("trades"), latest_trade)
}

/// `GET /v2/stocks/{symbol}/bars/latest`.
pub async fn latest_bar_one(state: Shared, Path(symbol): Path<String>, Query(q): Query<DataQuery>) -> Response {
    one(&state, &symbol, &q, "bar", true, latest_bar)
}

/// `GET /v2/stocks/bars/latest?symbols=..`.
pub async fn latest_bars(state: Shared, Query(q): Query<DataQuery>) -> Response {
    many(&state, &q, Some("bars"), latest_bar)
}

/// `GET /v2/stocks/{symbol}/snapshot`: the snapshot's fields beside `symbol`.
pub async fn snapshot_one(state: Shared, Path(symbol): Path<String>, Query(q): Query<DataQuery>) -> Response {
    one(&state, &symbol, &q, "snapshot", false, snapshot)
}

/// `GET /v2/stocks/snapshots?symbols=..`: `{S: snapshot}`.
pub async fn snapshots(state: Shared, Query(q): Query<DataQuery>) -> Response {
    many(&state, &q, None, snapshot)
}
