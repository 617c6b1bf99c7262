//! The operator's calls on many things at once, and closing positions, as Alpaca answers them:
//! `DELETE /v2/orders` (cancel every open order: 207 with one `{id, status, body}` per order),
//! `DELETE /v2/positions/{symbol or asset id}` (a market order closing all, `qty` shares or a
//! `percentage` of the position) and `DELETE /v2/positions` (every position, after cancelling
//! the open orders with `cancel_orders=true`: 207 with one `{symbol, status, body}` each).
//!
//! Invariants: each order and position is handled on its own (one refusal never stops the
//! others, and is reported in its entry with Alpaca's status and body); a close never sells
//! more than the position holds (the simulator's own checks refuse it as Alpaca does).

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::Response;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tranche_domain::{ClientOrderId, OrderRequest, Position, Qty, Side};
use tranche_sim::{Sim, SimError};

use super::{error, ok, reply, sim_error, Shared};
use crate::render;

/// The status and body Alpaca puts in a 207 entry for a refusal.
fn entry_error(e: &SimError) -> (u16, Value) {
    match e {
        SimError::Reject { status, code, message, .. } => (*status, render::error(*code, message)),
        SimError::NotFound { message } => (404, render::error(40_410_000, message)),
        SimError::RateLimited { .. } => (429, render::error(42_910_000, "rate limit exceeded")),
        SimError::ServerError { status } => (*status, render::error(50_010_000, "internal server error")),
        SimError::Timeout { .. } => (504, render::error(50_410_000, "gateway timeout")),
    }
}

/// Cancels every open order (`at_once`: without the venue's round trip); one entry per order.
fn cancel_every_order(sim: &mut Sim, at_once: bool) -> Vec<Value> {
    sim.open_orders()
        .into_iter()
        .map(|order| match if at_once { sim.cancel_now(&order.id) } else { sim.cancel(&order.id) } {
            Ok(()) => json!({"id": order.id.as_str(), "status": 200}),
            Err(e) => {
                let (status, body) = entry_error(&e);
                json!({"id": order.id.as_str(), "status": status, "body": body})
            }
        })
        .collect()
}

/// `DELETE /v2/orders`: 207 Multi-Status, one entry per open order.
pub async fn cancel_all(state: Shared) -> Response {
    let entries = state.0.broker.with_sim(|sim| cancel_every_order(sim, false));
    reply(StatusCode::MULTI_STATUS, Value::Array(entries))
}

/// How much of a position to close.
#[derive(Debug, Default, serde::Deserialize)]
pub struct CloseQuery {
    qty: Option<String>,
    percentage: Option<String>,
}

/// The shares a close sells (or buys back): all, `qty`, or `percentage` % (whole shares for a
/// non-fractionable asset, at most nine decimals otherwise).
fn close_qty(position: &Position, fractionable: bool, query: &CloseQuery) -> Result<Decimal, Response> {
    let held = position.qty.get().abs();
    let parse = |name: &str, text: &str| {
        text.trim()
            .parse::<Decimal>()
            .ok()
            .filter(|v| *v > Decimal::ZERO)
            .ok_or_else(|| error(422, 40_010_001, &format!("invalid {name}: {text}")))
    };
    match (&query.qty, &query.percentage) {
        (Some(_), Some(_)) => Err(error(422, 40_010_001, "only one of qty or percentage may be given")),
        (Some(qty), None) => parse("qty", qty),
        (None, Some(pct)) => {
            let pct = parse("percentage", pct)?;
            if pct > Decimal::ONE_HUNDRED {
                return Err(error(422, 40_010_001, "percentage must be between 0 and 100"));
            }
            let share = held * pct / Decimal::ONE_HUNDRED;
            let qty = if fractionable { share.round_dp(9) } else { share.floor() };
            if qty.is_zero() {
                return Err(error(
                    422,
                    40_010_001,
                    "the percentage is less than one share of a non-fractionable asset",
                ));
            }
            Ok(qty)
        }
        (None, None) => Ok(held),
    }
}

/// Submits the market order that closes `qty` of `position`.
fn close(sim: &mut Sim, position: &Position, qty: Decimal) -> Result<tranche_domain::Order, SimError> {
    let side = if position.qty.get() > Decimal::ZERO { Side::Sell } else { Side::Buy };
    let id = format!("emu-close-{}-{}", position.symbol, chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default());
    sim.submit(&OrderRequest::day(ClientOrderId::from_broker(id), position.symbol.clone(), side, Qty::new(qty), None))
}

/// The held position named by a symbol or an asset id.
fn held(sim: &Sim, name: &str) -> Option<Position> {
    sim.positions().into_iter().find(|p| p.symbol.as_str() == name || render::asset_id(p.symbol.as_str()) == name)
}

/// `DELETE /v2/positions/{symbol_or_asset_id}`: the closing order, or 404 "position does not
/// exist".
pub async fn close_position(state: Shared, Path(name): Path<String>, Query(query): Query<CloseQuery>) -> Response {
    let outcome = state.0.broker.with_sim(|sim| {
        let Some(position) = held(sim, &name) else {
            return Err(error(404, 40_410_000, "position does not exist"));
        };
        let fractionable = sim.asset(&position.symbol).is_ok_and(|a| a.fractionable);
        let qty = close_qty(&position, fractionable, &query)?;
        close(sim, &position, qty).map_err(sim_error)
    });
    match outcome {
        Ok(order) => ok(render::order(&order)),
        Err(response) => response,
    }
}

/// `cancel_orders=true` of `DELETE /v2/positions`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct CloseAllQuery {
    cancel_orders: Option<String>,
}

/// `DELETE /v2/positions[?cancel_orders=true]`: 207, one entry per position with its closing
/// order (or the refusal).
pub async fn close_all(state: Shared, Query(query): Query<CloseAllQuery>) -> Response {
    let cancel_orders = match super::flag("cancel_orders", query.cancel_orders.as_deref()) {
        Ok(flag) => flag.unwrap_or(false),
        Err(response) => return response,
    };
    let entries = state.0.broker.with_sim(|sim| {
        if cancel_orders {
            // Done before the liquidation, so that what the orders held can be sold.
            cancel_every_order(sim, true);
        }
        sim.positions()
            .into_iter()
            .filter(|p| !p.qty.get().is_zero())
            .map(|position| match close(sim, &position, position.qty.get().abs()) {
                Ok(order) => json!({"symbol": position.symbol.as_str(), "status": 200, "body": render::order(&order)}),
                Err(e) => {
                    let (status, body) = entry_error(&e);
                    json!({"symbol": position.symbol.as_str(), "status": status, "body": body})
                }
            })
            .collect::<Vec<_>>()
    });
    reply(StatusCode::MULTI_STATUS, Value::Array(entries))
}
