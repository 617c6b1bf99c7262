//! Reference reads: the account configurations, the asset list (with `status` and
//! `asset_class` filters) and one asset by symbol or id, and the trading calendar of the
//! simulated session.
//!
//! Invariants: what these answer is what the simulator does (fractional trading on, shorting
//! off, the margin multiplier of the configured account; every listed asset active); the
//! calendar is the simulated session's: its holidays and early closes (NYSE's with
//! `--real-hours`; none in the always-open market), trades settling on the next session's day.

use axum::extract::{Path, Query};
use axum::response::Response;
use chrono::NaiveDate;
use serde_json::{json, Value};
use tranche_domain::Symbol;
use tranche_sim::{AccountKind, SimError};

use super::{error, ok, read, Shared};
use crate::render;

/// `GET /v2/account/configurations`, from the simulated account.
pub async fn account_configurations(state: Shared) -> Response {
    let configuration = state.0.broker.with_sim(|sim| {
        let account = &sim.config().account;
        let multiplier = match account.kind {
            AccountKind::Cash => 1,
            AccountKind::Margin => account.multiplier,
        };
        json!({
            "dtbp_check": "entry",
            "no_shorting": true,
            "suspend_trade": false,
            "fractional_trading": true,
            "max_margin_multiplier": multiplier.to_string(),
            "pdt_check": "entry",
            "trade_confirm_email": "all",
            "ptp_no_exception_entry": false,
            "max_options_trading_level": 0,
        })
    });
    ok(configuration)
}

/// The filters of `GET /v2/assets`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct AssetsQuery {
    status: Option<String>,
    asset_class: Option<String>,
}

/// `GET /v2/assets`: every asset the simulator lists (all active US equities).
pub async fn assets(state: Shared, Query(query): Query<AssetsQuery>) -> Response {
    match query.status.as_deref() {
        None | Some("" | "active" | "inactive") => {}
        Some(other) => return error(422, 40_010_001, &format!("invalid status: {other}")),
    }
    match query.asset_class.as_deref() {
        None | Some("" | "us_equity" | "us_option" | "crypto") => {}
        Some(other) => return error(422, 40_010_001, &format!("invalid asset_class: {other}")),
    }
    let wanted = query.status.as_deref().is_none_or(|s| s.is_empty() || s == "active")
        && query.asset_class.as_deref().is_none_or(|c| c.is_empty() || c == "us_equity");
    if !wanted {
        return ok(json!([]));
    }
    let listed = read(&state.0, |sim| {
        let symbols = sim.listed_symbols();
        Ok(symbols.iter().filter_map(|s| sim.asset(s).ok()).map(|a| render::asset(&a)).collect::<Vec<_>>())
    });
    match listed {
        Ok(assets) => ok(Value::Array(assets)),
        Err(response) => response,
    }
}

/// `GET /v2/assets/{symbol_or_asset_id}`: 404 "asset not found" for any other.
pub async fn asset(state: Shared, Path(name): Path<String>) -> Response {
    let found = read(&state.0, |sim| {
        let symbol = match Symbol::parse(&name) {
            // Case-sensitive, as Alpaca's symbols are.
            Ok(symbol) if symbol.as_str() == name && sim.is_known(&symbol) => Some(symbol),
            _ => sim.listed_symbols().into_iter().find(|s| render::asset_id(s.as_str()) == name),
        };
        let symbol = symbol.ok_or_else(|| SimError::NotFound { message: format!("asset not found for {name}") })?;
        sim.asset(&symbol)
    });
    match found {
        Ok(a) => ok(render::asset(&a)),
        Err(response) => response,
    }
}

/// The range of `GET /v2/calendar`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct CalendarQuery {
    start: Option<String>,
    end: Option<String>,
}

/// Days a calendar answer may hold (Alpaca's answers are bounded by its data, 1970 to 2029).
const MOST_DAYS: usize = 1_000;

/// `GET /v2/calendar?start=YYYY-MM-DD&end=YYYY-MM-DD` (both inclusive, US Eastern dates; by
/// default from today for a year): each session's date, open and close in Eastern wall time.
pub async fn calendar(state: Shared, Query(query): Query<CalendarQuery>) -> Response {
    let date = |name: &str, text: &Option<String>| -> Result<Option<NaiveDate>, Response> {
        text.as_deref()
            .filter(|t| !t.is_empty())
            .map(|t| {
                // A date, or a timestamp whose Eastern date counts.
                NaiveDate::parse_from_str(t, "%Y-%m-%d")
                    .or_else(|_| {
                        t.parse::<chrono::DateTime<chrono::Utc>>().map(|at| render::in_eastern(at).date_naive())
                    })
                    .map_err(|_| error(400, 40_010_001, &format!("invalid {name}: {t}")))
            })
            .transpose()
    };
    let (start, end) = match (date("start", &query.start), date("end", &query.end)) {
        (Ok(start), Ok(end)) => (start, end),
        (Err(response), _) | (_, Err(response)) => return response,
    };
    let sessions = state.0.broker.with_sim(|sim| {
        let today = render::in_eastern(sim.now()).date_naive();
        let start = start.unwrap_or(today);
        let end = end.or_else(|| start.checked_add_days(chrono::Days::new(365))).unwrap_or(start);
        let midnight = |day: NaiveDate| day.and_hms_opt(0, 0, 0).and_then(|t| render::eastern_local(&t));
        let day_after = end.checked_add_days(chrono::Days::new(1));
        let (Some(from), Some(to)) = (midnight(start), day_after.and_then(midnight)) else { return Vec::new() };
        let calendar = sim.calendar();
        // Each session with the next one's open: trades settle on the next trading day (T+1).
        calendar
            .sessions_between(from, to, MOST_DAYS)
            .into_iter()
            .map(|(open, close)| (open, close, calendar.next_open(close)))
            .collect::<Vec<_>>()
    });
    let days: Vec<Value> = sessions
        .iter()
        .map(|(open, close, next)| {
            let (open, close) = (render::in_eastern(*open), render::in_eastern(*close));
            let settles = render::in_eastern(*next).date_naive();
            json!({
                "date": open.date_naive().to_string(),
                "open": open.format("%H:%M").to_string(),
                "close": close.format("%H:%M").to_string(),
                "session_open": "0400",
                "session_close": "2000",
                "settlement_date": settles.to_string(),
            })
        })
        .collect();
    ok(Value::Array(days))
}
