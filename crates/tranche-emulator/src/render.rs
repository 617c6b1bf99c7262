//! Alpaca's JSON shapes, field by field from the protocol reference: decimals as strings on the
//! trading API and numbers on the data API, nanosecond UTC timestamps on orders.

use rust_decimal::Decimal;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tranche_domain::{Account, Asset, Fill, MarketClock, Order, Position, Qty, Quote, Timestamp, TradeUpdate};

fn ts(t: Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn opt_ts(t: Option<Timestamp>) -> Value {
    t.map_or(Value::Null, |t| Value::String(ts(t)))
}

fn dec(value: impl Into<Decimal>) -> Value {
    Value::String(value.into().normalize().to_string())
}

fn opt_dec<T: Into<Decimal>>(value: Option<T>) -> Value {
    value.map_or(Value::Null, |v| dec(v))
}

fn num(value: impl Into<Decimal>) -> Value {
    value.into().normalize().to_string().parse::<serde_json::Number>().map_or(Value::Null, Value::Number)
}

/// A stable UUID-shaped id for a symbol.
pub fn asset_id(symbol: &str) -> String {
    let h = Sha256::digest(symbol.as_bytes());
    let hex = h[..16].iter().fold(String::with_capacity(32), |mut out, b| {
        use std::fmt::Write;
        let _ = write!(out, "{b:02x}");
        out
    });
    format!("{}-{}-4{}-8{}-{}", &hex[..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32])
}

/// An order object (§3.5).
pub fn order(o: &Order) -> Value {
    let terminal_at =
        |status: tranche_domain::OrderStatus| if o.status == status { opt_ts(o.updated_at) } else { Value::Null };
    json!({
        "id": o.id.as_str(),
        "client_order_id": o.client_order_id.as_str(),
        "created_at": ts(o.created_at),
        "updated_at": opt_ts(o.updated_at),
        "submitted_at": ts(o.created_at),
        "filled_at": opt_ts(o.filled_at),
        "expired_at": terminal_at(tranche_domain::OrderStatus::Expired),
        "canceled_at": terminal_at(tranche_domain::OrderStatus::Canceled),
        "failed_at": terminal_at(tranche_domain::OrderStatus::Rejected),
        "replaced_at": terminal_at(tranche_domain::OrderStatus::Replaced),
        "replaced_by": o.replaced_by.as_ref().map(tranche_domain::BrokerOrderId::as_str),
        "replaces": o.replaces.as_ref().map(tranche_domain::BrokerOrderId::as_str),
        "asset_id": asset_id(o.symbol.as_str()),
        "symbol": o.symbol.as_str(),
        "asset_class": "us_equity",
        "notional": opt_dec(o.notional),
        "qty": opt_dec(o.qty),
        "filled_qty": dec(o.filled_qty),
        "filled_avg_price": opt_dec(o.filled_avg_price),
        "order_class": "",
        "order_type": o.order_type.as_str(),
        "type": o.order_type.as_str(),
        "side": o.side.as_str(),
        "time_in_force": o.time_in_force.as_str(),
        "limit_price": opt_dec(o.limit_price),
        "stop_price": opt_dec(o.stop_price),
        "status": o.status.as_str(),
        "extended_hours": o.extended_hours,
        "legs": null,
        "trail_percent": null,
        "trail_price": null,
        "hwm": null,
        "position_intent": if o.side == tranche_domain::Side::Buy { "buy_to_open" } else { "sell_to_close" },
    })
}

/// The account object (§3.2).
pub fn account(a: &Account, long_market_value: Decimal) -> Value {
    json!({
        "id": "2f4a1f0e-7d6b-4f4b-9d1e-8a3c0b6e5d21",
        "account_number": "PA3EMULATOR",
        "status": match &a.status { tranche_domain::AccountStatus::Active => "ACTIVE".to_owned(), tranche_domain::AccountStatus::Other(s) => s.clone() },
        "crypto_status": "INACTIVE",
        "currency": "USD",
        "cash": dec(a.cash),
        "buying_power": dec(a.buying_power),
        "regt_buying_power": dec(a.regt_buying_power),
        "daytrading_buying_power": dec(a.daytrading_buying_power),
        "non_marginable_buying_power": dec(a.non_marginable_buying_power),
        "effective_buying_power": dec(a.buying_power),
        "equity": dec(a.equity),
        "portfolio_value": dec(a.equity),
        "last_equity": dec(a.equity),
        "long_market_value": dec(long_market_value),
        "short_market_value": "0",
        "initial_margin": "0",
        "maintenance_margin": "0",
        "last_maintenance_margin": "0",
        "sma": "0",
        "multiplier": a.multiplier.to_string(),
        "shorting_enabled": a.shorting_enabled,
        "trading_blocked": a.trading_blocked,
        "account_blocked": a.account_blocked,
        "transfers_blocked": false,
        "trade_suspended_by_user": false,
        "accrued_fees": "0",
        "pending_transfer_in": "0",
        "pending_transfer_out": "0",
        "created_at": "2024-01-02T15:04:05.123456Z",
    })
}

/// A position object (§3.3).
pub fn position(p: &Position) -> Value {
    let cost = p.avg_entry_price.get() * p.qty.get();
    let price = p.current_price.map_or(Decimal::ZERO, tranche_domain::Price::get);
    json!({
        "asset_id": asset_id(p.symbol.as_str()),
        "symbol": p.symbol.as_str(),
        "exchange": "NASDAQ",
        "asset_class": "us_equity",
        "asset_marginable": true,
        "qty": dec(p.qty),
        "qty_available": dec(p.qty_available),
        "side": "long",
        "avg_entry_price": dec(p.avg_entry_price),
        "market_value": dec(p.market_value),
        "cost_basis": dec(cost.round_dp(6)),
        "unrealized_pl": dec((p.market_value.get() - cost).round_dp(6)),
        "unrealized_plpc": "0",
        "unrealized_intraday_pl": "0",
        "unrealized_intraday_plpc": "0",
        "current_price": dec(price),
        "lastday_price": dec(price),
        "change_today": "0",
    })
}

/// An asset object (§3.12).
pub fn asset(a: &Asset) -> Value {
    json!({
        "id": asset_id(a.symbol.as_str()),
        "class": "us_equity",
        "exchange": "NASDAQ",
        "symbol": a.symbol.as_str(),
        "name": format!("{} (emulated)", a.symbol),
        "status": if a.active { "active" } else { "inactive" },
        "tradable": a.tradable,
        "marginable": a.marginable,
        "shortable": a.shortable,
        "easy_to_borrow": a.shortable,
        "fractionable": a.fractionable,
        "attributes": [],
    })
}

/// New York's offset from UTC at `t`: −4 h while US daylight saving time is in force, else −5 h.
pub fn eastern_at(t: Timestamp) -> chrono::FixedOffset {
    let hours = if tranche_sim::us_eastern_dst(t) { 4 } else { 5 };
    chrono::FixedOffset::west_opt(hours * 3600).unwrap_or_else(|| chrono::Utc.fix())
}

/// The instant of a New York wall time (`None` for one that does not exist, in the hour the
/// clocks skip in March; the later of the two in the hour repeated in November).
pub fn eastern_local(wall: &chrono::NaiveDateTime) -> Option<Timestamp> {
    [5, 4]
        .into_iter()
        .map(|hours| (*wall + chrono::Duration::hours(hours)).and_utc())
        .find(|t| t.with_timezone(&eastern_at(*t)).naive_local() == *wall)
}

/// `t` as a New York wall time.
pub fn in_eastern(t: Timestamp) -> chrono::DateTime<chrono::FixedOffset> {
    t.with_timezone(&eastern_at(t))
}

/// The clock object (§3.13), with New York's offsets.
pub fn clock(c: &MarketClock) -> Value {
    let et = |t: Timestamp| in_eastern(t).to_rfc3339_opts(chrono::SecondsFormat::Nanos, false);
    json!({"timestamp": et(c.timestamp), "is_open": c.is_open, "next_open": et(c.next_open), "next_close": et(c.next_close)})
}

use chrono::Offset;

/// The layout of the time in an activity id: US/Eastern wall time to the millisecond, as in
/// Alpaca's documented sample (`20190524113406977::…` for `2019-05-24T15:34:06.977Z`).
pub const ACTIVITY_ID_TIME: &str = "%Y%m%d%H%M%S%3f";

/// An account activity id as Alpaca writes it: `<Eastern time to the ms>::<id>`.
pub fn activity_id(time: Timestamp, id: &str) -> String {
    format!("{}::{id}", in_eastern(time).format(ACTIVITY_ID_TIME))
}

/// Where an execution left its order: what a FILL activity reports besides the execution.
#[derive(Debug, Clone, Copy)]
pub struct FillProgress {
    /// Shares of the order filled up to and including this execution.
    pub cum_qty: Qty,
    /// Shares of the order still unfilled after it (`None`: not known, a notional order).
    pub leaves_qty: Option<Qty>,
    /// This execution completed the order.
    pub completes: bool,
}

/// A FILL activity (`GET /v2/account/activities[/FILL]`), as of its execution: `type`,
/// `cum_qty`, `leaves_qty` and `order_status` say where the order stood right after it. The id
/// is `<time>::<execution id>`; like Alpaca's activities it has no `execution_id` field.
pub fn fill_activity(f: &Fill, progress: &FillProgress) -> Value {
    json!({
        "id": activity_id(f.time, f.execution_id.as_str()),
        "activity_type": "FILL",
        "transaction_time": ts(f.time),
        "type": if progress.completes { "fill" } else { "partial_fill" },
        "price": dec(f.price),
        "qty": dec(f.qty),
        "side": f.side.as_str(),
        "symbol": f.symbol.as_str(),
        "leaves_qty": progress.leaves_qty.map_or(Value::Null, dec),
        "order_id": f.order_id.as_str(),
        "cum_qty": dec(progress.cum_qty),
        "order_status": if progress.completes { "filled" } else { "partially_filled" },
    })
}

/// A trade update message (§5.3).
pub fn trade_update(u: &TradeUpdate) -> Value {
    let mut data = json!({"event": u.event.as_str(), "order": order(&u.order), "timestamp": opt_ts(u.timestamp)});
    if let Some(e) = &u.execution {
        data["execution_id"] = json!(e.id.as_str());
        data["price"] = dec(e.price);
        data["qty"] = dec(e.qty);
    }
    if let Some(p) = u.position_qty {
        data["position_qty"] = dec(p);
    }
    json!({"stream": "trade_updates", "data": data})
}

/// The latest-quote response of the data API (§7), numbers not strings.
pub fn latest_quote(q: &Quote) -> Value {
    json!({ "symbol": q.symbol.as_str(), "quote": quote_body(q) })
}

/// A quote as the data API and the market-data stream write it (numbers, not strings).
pub(crate) fn quote_body(q: &Quote) -> Value {
    json!({"t": ts(q.time), "ax": "V", "ap": num(q.ask), "as": num(q.ask_size), "bx": "V", "bp": num(q.bid), "bs": num(q.bid_size), "c": ["R"], "z": "C"})
}

/// A print of the simulator's tape as the data API and the market-data stream write a trade.
pub(crate) fn trade_body(p: &tranche_sim::Print) -> Value {
    json!({"t": ts(p.time), "x": "V", "p": num(p.price), "s": num(p.size), "c": ["@"], "i": p.id, "z": "C"})
}

/// A bar of the simulator's tape as the data API writes it (`t` is its start, to the second).
pub(crate) fn bar_body(b: &tranche_sim::Bar) -> Value {
    json!({"t": b.start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "o": num(b.open), "h": num(b.high),
        "l": num(b.low), "c": num(b.close), "v": num(b.volume), "n": b.trades, "vw": num(b.vwap)})
}

/// `GET /v2/stocks/quotes/latest?symbols=...`: the quotes by symbol.
pub fn latest_quotes(quotes: &[Quote]) -> Value {
    let by_symbol: serde_json::Map<String, Value> =
        quotes.iter().map(|q| (q.symbol.as_str().to_owned(), quote_body(q))).collect();
    json!({ "quotes": by_symbol })
}

/// Alpaca's error body.
pub fn error(code: u64, message: &str) -> Value {
    json!({"code": code, "message": message})
}
