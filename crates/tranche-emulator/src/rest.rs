//! The trading REST handlers (and the latest-quote data endpoint), answering as Alpaca does;
//! the account activities, paged as Alpaca pages them, are in [`activities`].

// Handlers return an HTTP response as their error: its size is the framework's.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State as Extract};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use tranche_domain::{
    BrokerOrderId, ClientOrderId, OrderAmount, OrderRequest, OrderType, Price, Qty, ReplaceRequest, Side, Symbol,
    TimeInForce, Usd,
};
use tranche_sim::SimError;

use crate::render;
use crate::State;

mod activities;
mod bulk;
mod market_data;
mod reference;

pub use activities::{activities, activities_of_type, fill_activities};
pub use bulk::{cancel_all, close_all, close_position};
pub use market_data::{latest_bar_one, latest_bars, latest_trade_one, latest_trades, snapshot_one, snapshots};
pub use reference::{account_configurations, asset, assets, calendar};

type Shared = Extract<Arc<State>>;

/// A JSON answer (the rate-limit headers are added by [`crate::limits`]).
fn reply(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn ok(body: Value) -> Response {
    reply(StatusCode::OK, body)
}

fn error(status: u16, code: u64, message: &str) -> Response {
    reply(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), render::error(code, message))
}

/// A simulator refusal as Alpaca answers it.
fn sim_error(e: SimError) -> Response {
    match e {
        SimError::Reject { status, code, message, detail: Some(detail), .. } => {
            let mut body = render::error(code, &message);
            body["reject_reason"] = detail.reject_reason.into();
            body["existing_order_id"] = detail.existing_order_id.into();
            reply(StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN), body)
        }
        SimError::Reject { status, code, message, .. } => error(status, code, &message),
        SimError::NotFound { message } => error(404, 40_410_000, &message),
        SimError::RateLimited { retry_after } => {
            let mut r = error(429, 42_910_000, "rate limit exceeded");
            if let Ok(v) = HeaderValue::from_str(&retry_after.as_secs().max(1).to_string()) {
                r.headers_mut().insert("Retry-After", v);
            }
            r
        }
        SimError::ServerError { status } => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            "<html><body>upstream error</body></html>",
        )
            .into_response(),
        // The client never hears back: a gateway timeout is what it sees.
        SimError::Timeout { .. } => {
            (StatusCode::GATEWAY_TIMEOUT, "<html><body>504 Gateway Time-out</body></html>").into_response()
        }
    }
}

/// Alpaca's key-pair check, a middleware in front of every REST route: no headers is 403
/// `forbidden.`, a wrong pair 401; the handler runs only for the right pair.
pub async fn require_keys(state: Shared, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let key = headers.get("APCA-API-KEY-ID").and_then(|v| v.to_str().ok());
    let secret = headers.get("APCA-API-SECRET-KEY").and_then(|v| v.to_str().ok());
    match (key, secret) {
        (Some(k), Some(s)) if k == state.0.key_id && s == state.0.secret_key => next.run(request).await,
        (None, _) | (_, None) => reply(StatusCode::FORBIDDEN, serde_json::json!({"message": "forbidden."})),
        _ => error(401, 40_110_000, "request is not authorized"),
    }
}

/// The symbol an order names, exactly as written: Alpaca's symbols are case-sensitive (no
/// trimming, no upper-casing), so `aapl` names no asset (422, as an unknown symbol's order).
fn symbol(text: &str) -> Result<Symbol, Response> {
    match Symbol::parse(text) {
        Ok(symbol) if symbol.as_str() == text => Ok(symbol),
        Ok(_) => Err(error(422, 40_010_001, &format!("asset \"{text}\" not found"))),
        Err(e) => Err(error(422, 40_010_001, &format!("invalid symbol: {e}"))),
    }
}

/// The symbol a path names (a position, a latest quote), exactly as written: anything else
/// names nothing there (404).
fn path_symbol(text: &str) -> Result<Symbol, Response> {
    Symbol::parse(text).ok().filter(|s| s.as_str() == text).ok_or_else(|| error(404, 40_410_000, "not found"))
}

/// A call with faults applied the way the simulator injects them into REST calls.
fn read<T>(state: &State, f: impl FnOnce(&mut tranche_sim::Sim) -> Result<T, SimError>) -> Result<T, Response> {
    state
        .broker
        .with_sim(|sim| match sim.inject_call_fault() {
            Some(fault) => Err(fault),
            None => f(sim),
        })
        .map_err(sim_error)
}

pub async fn account(state: Shared) -> Response {
    let state = state.0;
    match read(&state, |s| Ok((s.account(), s.positions()))) {
        Ok((account, positions)) => {
            let lmv = positions.iter().map(|p| p.market_value.get()).sum();
            ok(render::account(&account, lmv))
        }
        Err(r) => r,
    }
}

pub async fn positions(state: Shared) -> Response {
    let state = state.0;
    match read(&state, |s| Ok(s.positions())) {
        Ok(list) => ok(Value::Array(list.iter().map(render::position).collect())),
        Err(r) => r,
    }
}

pub async fn position(state: Shared, Path(sym): Path<String>) -> Response {
    let state = state.0;
    let sym = match path_symbol(&sym) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match read(&state, |s| s.position(&sym).ok_or(SimError::NotFound { message: "position does not exist".into() })) {
        Ok(p) => ok(render::position(&p)),
        Err(r) => r,
    }
}

pub async fn clock(state: Shared) -> Response {
    let state = state.0;
    match read(&state, |s| Ok(s.clock())) {
        Ok(c) => ok(render::clock(&c)),
        Err(r) => r,
    }
}

pub async fn latest_quote(state: Shared, Path(sym): Path<String>, Query(q): Query<market_data::DataQuery>) -> Response {
    if let Err(response) = q.check_feed() {
        return response;
    }
    let state = state.0;
    let sym = match path_symbol(&sym) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match state.broker.with_sim(|s| s.latest_quote(&sym)) {
        Ok(q) => ok(render::latest_quote(&q)),
        Err(SimError::NotFound { .. }) => error(404, 40_410_000, "not found"),
        Err(e) => sim_error(e),
    }
}

/// `GET /v2/stocks/quotes/latest?symbols=A,B`: `{"quotes":{"A":{..},"B":{..}}}`; a symbol
/// without a quote is left out, as Alpaca does; no or a malformed symbol is a 400.
pub async fn latest_quotes(state: Shared, Query(q): Query<market_data::DataQuery>) -> Response {
    let state = state.0;
    let symbols = match q.symbols() {
        Ok(symbols) => symbols,
        Err(response) => return response,
    };
    let quotes: Vec<_> = state.broker.with_sim(|s| symbols.iter().filter_map(|sym| s.latest_quote(sym).ok()).collect());
    ok(render::latest_quotes(&quotes))
}

/// A number sent as a string or a JSON number (`null` and `""` are absent).
fn decimal_field(body: &Value, name: &str) -> Result<Option<rust_decimal::Decimal>, Response> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => {
            s.parse().map(Some).map_err(|_| error(422, 40_010_001, &format!("invalid {name}: {s}")))
        }
        Some(Value::Number(n)) => {
            n.to_string().parse().map(Some).map_err(|_| error(422, 40_010_001, &format!("invalid {name}: {n}")))
        }
        Some(other) => Err(error(422, 40_010_001, &format!("invalid {name}: {other}"))),
    }
}

fn text_field<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get(name).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// A new order as the client asked for it: the request the simulator places and, for a stop or
/// a stop-limit, its stop price.
fn parse_order(body: &Value, generated_id: String) -> Result<(OrderRequest, Option<Price>), Response> {
    let sym = symbol(text_field(body, "symbol").ok_or_else(|| error(422, 40_010_001, "symbol is required"))?)?;
    let side: Side = text_field(body, "side")
        .ok_or_else(|| error(422, 40_010_001, "side is required"))?
        .parse()
        .map_err(|e: String| error(422, 40_010_001, &e))?;
    let order_type: OrderType = text_field(body, "type")
        .or_else(|| text_field(body, "order_type"))
        .ok_or_else(|| error(422, 40_010_001, "type is required"))?
        .parse()
        .map_err(|e: String| error(422, 40_010_001, &e))?;
    let time_in_force: TimeInForce = text_field(body, "time_in_force")
        .ok_or_else(|| error(422, 40_010_001, "time_in_force is required"))?
        .parse()
        .map_err(|e: String| error(422, 40_010_001, &e))?;
    let amount = match (decimal_field(body, "qty")?, decimal_field(body, "notional")?) {
        (Some(q), None) => OrderAmount::Qty(Qty::new(q)),
        (None, Some(n)) => OrderAmount::Notional(Usd::new(n)),
        (None, None) => return Err(error(422, 40_010_001, "qty or notional is required")),
        (Some(_), Some(_)) => return Err(error(400, 40_010_000, "only one of qty or notional may be given")),
    };
    let limit_price = decimal_field(body, "limit_price")?.map(Price::new);
    let stop_price = decimal_field(body, "stop_price")?.map(Price::new);
    let extended_hours = body.get("extended_hours").and_then(Value::as_bool).unwrap_or(false);
    match order_type {
        OrderType::Limit | OrderType::StopLimit if limit_price.is_none() => {
            return Err(error(422, 40_010_001, "limit_price is required"));
        }
        OrderType::Stop | OrderType::StopLimit if stop_price.is_none() => {
            return Err(error(422, 40_010_001, "stop_price is required"));
        }
        OrderType::Market | OrderType::Stop if limit_price.is_some() => {
            return Err(error(422, 40_010_001, "limit_price is only for limit and stop_limit orders"));
        }
        OrderType::TrailingStop => {
            return Err(error(501, 50_100_000, "the emulator does not implement trailing_stop orders"));
        }
        _ => {}
    }
    if extended_hours && !(order_type == OrderType::Limit && time_in_force == TimeInForce::Day) {
        return Err(error(422, 42_210_000, "extended hours order must be DAY limit orders"));
    }
    let request = OrderRequest {
        client_order_id: ClientOrderId::from_broker(
            text_field(body, "client_order_id").map_or(generated_id, str::to_owned),
        ),
        symbol: sym,
        side,
        amount,
        order_type,
        time_in_force,
        limit_price,
        extended_hours,
    };
    Ok((request, stop_price.filter(|_| matches!(order_type, OrderType::Stop | OrderType::StopLimit))))
}

pub async fn submit(state: Shared, body: Option<Json<Value>>) -> Response {
    let state = state.0;
    let Some(Json(body)) = body else {
        return error(400, 40_010_000, "request body format is invalid");
    };
    let generated = format!("emu-{}", chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default());
    let (request, stop) = match parse_order(&body, generated) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let placed = state.broker.with_sim(|s| match stop {
        Some(stop) => s.submit_stop(&request, stop),
        None => s.submit(&request),
    });
    match placed {
        Ok(order) => ok(render::order(&order)),
        Err(e) => sim_error(e),
    }
}

pub async fn replace(state: Shared, Path(id): Path<String>, body: Option<Json<Value>>) -> Response {
    let state = state.0;
    let body = body.map_or(Value::Null, |Json(b)| b);
    let request = ReplaceRequest {
        client_order_id: ClientOrderId::from_broker(text_field(&body, "client_order_id").map_or_else(
            || format!("emu-r-{}", chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()),
            str::to_owned,
        )),
        qty: match decimal_field(&body, "qty") {
            Ok(q) => q.map(Qty::new),
            Err(r) => return r,
        },
        limit_price: match decimal_field(&body, "limit_price") {
            Ok(p) => p.map(Price::new),
            Err(r) => return r,
        },
        time_in_force: text_field(&body, "time_in_force").and_then(|t| t.parse().ok()),
    };
    match state.broker.with_sim(|s| s.replace(&BrokerOrderId::new(id), &request)) {
        Ok(order) => ok(render::order(&order)),
        Err(e) => sim_error(e),
    }
}

pub async fn cancel(state: Shared, Path(id): Path<String>) -> Response {
    let state = state.0;
    match state.broker.with_sim(|s| s.cancel(&BrokerOrderId::new(id))) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => sim_error(e),
    }
}

pub async fn order(state: Shared, Path(id): Path<String>) -> Response {
    let state = state.0;
    match read(&state, |s| s.order(&BrokerOrderId::new(id))) {
        Ok(o) => ok(render::order(&o)),
        Err(r) => r,
    }
}

#[derive(serde::Deserialize)]
pub struct ByClientId {
    client_order_id: String,
}

pub async fn order_by_client_id(state: Shared, Query(q): Query<ByClientId>) -> Response {
    let state = state.0;
    match read(&state, |s| s.order_by_client_id(&ClientOrderId::from_broker(q.client_order_id))) {
        Ok(o) => ok(render::order(&o)),
        Err(r) => r,
    }
}

/// The filters of `GET /v2/orders`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<String>,
    after: Option<String>,
    until: Option<String>,
    direction: Option<String>,
    nested: Option<String>,
    symbols: Option<String>,
    side: Option<String>,
}

/// A time bound of the order list: an RFC 3339 timestamp or a date (its midnight UTC).
fn bound(name: &str, text: Option<&str>) -> Result<Option<tranche_domain::Timestamp>, Response> {
    let Some(text) = text.filter(|t| !t.is_empty()) else { return Ok(None) };
    let parsed = text.parse::<tranche_domain::Timestamp>().ok().or_else(|| {
        chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc())
    });
    parsed.map(Some).ok_or_else(|| error(422, 40_010_001, &format!("invalid {name}: {text}")))
}

/// The orders `q` selects, in its direction, at most its limit (≤ 500, default 50).
fn select_orders(
    mut orders: Vec<tranche_domain::Order>,
    q: &ListQuery,
) -> Result<Vec<tranche_domain::Order>, Response> {
    let limit = match q.limit.as_deref().filter(|l| !l.is_empty()) {
        None => 50,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=500).contains(&n) => n,
            _ => return Err(error(422, 40_010_001, &format!("invalid limit: {text} (1 to 500)"))),
        },
    };
    let (after, until) = (bound("after", q.after.as_deref())?, bound("until", q.until.as_deref())?);
    let ascending = match q.direction.as_deref() {
        None | Some("" | "desc") => false,
        Some("asc") => true,
        Some(other) => return Err(error(422, 40_010_001, &format!("invalid direction: {other}"))),
    };
    // The simulator has no multi-leg orders: nested or not, the list is the same.
    flag("nested", q.nested.as_deref())?;
    let side: Option<Side> = match q.side.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => Some(text.parse().map_err(|_| error(422, 40_010_001, &format!("invalid side: {text}")))?),
    };
    let symbols: Option<Vec<Symbol>> = match q.symbols.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(list) => Some(list.split(',').map(|s| symbol(s.trim())).collect::<Result<_, _>>()?),
    };
    orders.retain(|o| {
        after.is_none_or(|t| o.created_at > t)
            && until.is_none_or(|t| o.created_at < t)
            && side.is_none_or(|s| o.side == s)
            && symbols.as_ref().is_none_or(|list| list.contains(&o.symbol))
    });
    orders.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.as_str().cmp(b.id.as_str())));
    if !ascending {
        orders.reverse();
    }
    orders.truncate(limit);
    Ok(orders)
}

/// `GET /v2/orders` with Alpaca's filters: `status` (open, closed, all), `limit`, `after`,
/// `until`, `direction`, `nested`, `symbols`, `side`.
pub async fn list_orders(state: Shared, Query(query): Query<ListQuery>) -> Response {
    let state = state.0;
    let q = query;
    let status = q.status.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "open".into());
    if !matches!(status.as_str(), "open" | "closed" | "all") {
        return error(422, 40_010_001, &format!("invalid status: {status}"));
    }
    let listed = read(&state, |s| {
        Ok(match status.as_str() {
            "open" => s.open_orders(),
            "closed" => s.orders().filter(|o| o.status.is_terminal()).cloned().collect(),
            _ => s.orders().cloned().collect(),
        })
    });
    match listed.and_then(|orders| select_orders(orders, &q)) {
        Ok(orders) => ok(Value::Array(orders.iter().map(render::order).collect())),
        Err(r) => r,
    }
}

/// Anything Alpaca offers that the emulator does not: 501 with a body naming the call.
pub async fn not_implemented(request: Request) -> Response {
    not_implemented_call(request.method(), request.uri().path())
}

/// The 501 answer naming `method path`.
pub fn not_implemented_call(method: &axum::http::Method, path: &str) -> Response {
    let call = format!("{method} {path}");
    let mut body = render::error(50_100_000, &format!("the emulator does not implement {call}"));
    body["endpoint"] = Value::String(call);
    reply(StatusCode::NOT_IMPLEMENTED, body)
}

/// A boolean query parameter as clients send it: `true`/`false` in any case (alpaca-py sends
/// Python's `True`); `None` when absent or empty.
pub(crate) fn flag(name: &str, text: Option<&str>) -> Result<Option<bool>, Response> {
    match text.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(error(422, 40_010_001, &format!("invalid {name}: {}", text.unwrap_or_default()))),
    }
}
