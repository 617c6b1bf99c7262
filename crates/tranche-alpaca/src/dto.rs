//! Alpaca's JSON payloads, decoded tolerantly: unknown fields ignored, optional fields missing or
//! `null`, decimals as strings or numbers (`""` is absent), timestamps with any offset, unknown
//! statuses and events as `Unknown`. Conversion to domain types never panics.

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use tranche_domain::time::parse_timestamp;
use tranche_domain::{
    Account, AccountStatus, Asset, BrokerOrderId, ClientOrderId, Execution, ExecutionId, MarketClock, Order,
    OrderStatus, OrderType, Position, Price, Qty, Quote, Side, Symbol, TimeInForce, Timestamp, TradeEvent, TradeUpdate,
    Usd,
};

/// Why a payload could not become a domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable Alpaca payload: {0}")]
pub struct DecodeError(pub String);

fn bad(what: impl Into<String>) -> DecodeError {
    DecodeError(what.into())
}

/// A decimal from a string or a number; `null`, `""` and absence are `None`.
fn opt_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    let value = Option::<Value>::deserialize(d)?;
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => tranche_domain::money::parse_decimal(&s).map(Some).map_err(serde::de::Error::custom),
        Some(Value::Number(n)) => {
            tranche_domain::money::parse_decimal(&n.to_string()).map(Some).map_err(serde::de::Error::custom)
        }
        Some(other) => Err(serde::de::Error::custom(format!("expected a decimal, got {other}"))),
    }
}

fn ts(text: Option<&str>) -> Result<Option<Timestamp>, DecodeError> {
    text.filter(|t| !t.is_empty()).map(parse_timestamp).transpose().map_err(bad)
}

fn symbol(text: &str) -> Result<Symbol, DecodeError> {
    Symbol::parse(text).map_err(|e| bad(e.to_string()))
}

/// An order (§3.5).
#[derive(Debug, Clone, Deserialize)]
pub struct OrderDto {
    id: String,
    #[serde(default)]
    client_order_id: String,
    created_at: Option<String>,
    updated_at: Option<String>,
    submitted_at: Option<String>,
    filled_at: Option<String>,
    replaced_by: Option<String>,
    replaces: Option<String>,
    symbol: String,
    #[serde(default, deserialize_with = "opt_decimal")]
    qty: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    notional: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    filled_qty: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    filled_avg_price: Option<Decimal>,
    /// `type`; `order_type` is its deprecated duplicate (both are usually sent).
    r#type: Option<String>,
    order_type: Option<String>,
    side: String,
    time_in_force: Option<String>,
    #[serde(default, deserialize_with = "opt_decimal")]
    limit_price: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    stop_price: Option<Decimal>,
    status: String,
    extended_hours: Option<bool>,
}

impl OrderDto {
    /// The broker's order id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// When the order was created, when the answer says and it can be read.
    pub fn created_at(&self) -> Option<Timestamp> {
        ts(self.created_at.as_deref()).ok().flatten()
    }

    /// When the order was submitted (what Alpaca's order list filters and sorts on), else when
    /// it was created, when the answer says and it can be read.
    pub fn submitted_at(&self) -> Option<Timestamp> {
        ts(self.submitted_at.as_deref()).ok().flatten().or_else(|| self.created_at())
    }

    /// The domain order.
    pub fn into_order(self) -> Result<Order, DecodeError> {
        let status = OrderStatus::from_wire(&self.status);
        if status == OrderStatus::Unknown {
            tracing::warn!(status = %self.status, order_id = %self.id, "unknown order status");
        }
        let created = ts(self.created_at.as_deref().or(self.submitted_at.as_deref()))?
            .ok_or_else(|| bad("order without created_at"))?;
        // Figures no order can have: taken as written, a negative fill would undo shares the
        // account holds, so the whole report is unreadable (and said so) instead.
        let id = &self.id;
        for (name, value) in [
            ("qty", self.qty),
            ("notional", self.notional),
            ("limit_price", self.limit_price),
            ("stop_price", self.stop_price),
        ] {
            if let Some(v) = value.filter(|v| *v <= Decimal::ZERO) {
                return Err(bad(format!("order {id} with {name} {v}")));
            }
        }
        // Recorded payloads carry "0" for an order with nothing filled.
        if let Some(v) = self.filled_avg_price.filter(|v| v.is_sign_negative() && !v.is_zero()) {
            return Err(bad(format!("order {id} with filled_avg_price {v}")));
        }
        if let Some(filled) = self.filled_qty {
            if filled.is_sign_negative() || self.qty.is_some_and(|q| filled > q) {
                return Err(bad(format!("order {id} with filled_qty {filled} of qty {:?}", self.qty)));
            }
        }
        Ok(Order {
            id: BrokerOrderId::new(self.id),
            client_order_id: ClientOrderId::from_broker(self.client_order_id),
            symbol: symbol(&self.symbol)?,
            side: self.side.parse::<Side>().map_err(bad)?,
            order_type: self
                .r#type
                .as_deref()
                .or(self.order_type.as_deref())
                .unwrap_or("market")
                .parse::<OrderType>()
                .unwrap_or(OrderType::Market),
            time_in_force: self
                .time_in_force
                .as_deref()
                .unwrap_or("day")
                .parse::<TimeInForce>()
                .unwrap_or(TimeInForce::Day),
            qty: self.qty.map(Qty::new),
            notional: self.notional.map(Usd::new),
            limit_price: self.limit_price.map(Price::new),
            stop_price: self.stop_price.map(Price::new),
            status,
            filled_qty: Qty::new(self.filled_qty.unwrap_or_default()),
            filled_avg_price: self.filled_avg_price.map(Price::new),
            created_at: created,
            updated_at: ts(self.updated_at.as_deref())?,
            filled_at: ts(self.filled_at.as_deref())?,
            replaces: self.replaces.map(BrokerOrderId::new),
            replaced_by: self.replaced_by.map(BrokerOrderId::new),
            extended_hours: self.extended_hours.unwrap_or(false),
        })
    }
}

/// The account (§3.2); removed and optional fields tolerated.
#[derive(Debug, Clone, Deserialize)]
pub struct AccountDto {
    status: Option<String>,
    #[serde(default, deserialize_with = "opt_decimal")]
    cash: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    buying_power: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    non_marginable_buying_power: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    regt_buying_power: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    daytrading_buying_power: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    equity: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    multiplier: Option<Decimal>,
    trading_blocked: Option<bool>,
    account_blocked: Option<bool>,
    trade_suspended_by_user: Option<bool>,
    shorting_enabled: Option<bool>,
}

impl AccountDto {
    /// The domain account.
    pub fn into_account(self) -> Account {
        let status = match self.status.as_deref() {
            Some("ACTIVE") => AccountStatus::Active,
            other => AccountStatus::Other(other.unwrap_or("UNKNOWN").to_owned()),
        };
        let buying_power = self.buying_power.unwrap_or_default();
        Account {
            status,
            cash: Usd::new(self.cash.unwrap_or_default()),
            buying_power: Usd::new(buying_power),
            non_marginable_buying_power: Usd::new(self.non_marginable_buying_power.unwrap_or(buying_power)),
            regt_buying_power: Usd::new(self.regt_buying_power.unwrap_or(buying_power)),
            daytrading_buying_power: Usd::new(self.daytrading_buying_power.unwrap_or_default()),
            equity: Usd::new(self.equity.unwrap_or_default()),
            multiplier: self.multiplier.and_then(|m| u8::try_from(m.trunc().mantissa()).ok()).unwrap_or(1),
            trading_blocked: self.trading_blocked.unwrap_or(false) || self.trade_suspended_by_user.unwrap_or(false),
            account_blocked: self.account_blocked.unwrap_or(false),
            shorting_enabled: self.shorting_enabled.unwrap_or(false),
        }
    }
}

/// A position (§3.3).
#[derive(Debug, Clone, Deserialize)]
pub struct PositionDto {
    symbol: String,
    #[serde(default, deserialize_with = "opt_decimal")]
    qty: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    qty_available: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    avg_entry_price: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    market_value: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    current_price: Option<Decimal>,
}

impl PositionDto {
    /// The domain position.
    pub fn into_position(self) -> Result<Position, DecodeError> {
        let qty = self.qty.unwrap_or_default();
        Ok(Position {
            symbol: symbol(&self.symbol)?,
            qty: Qty::new(qty),
            qty_available: Qty::new(self.qty_available.unwrap_or(qty)),
            avg_entry_price: Price::new(self.avg_entry_price.unwrap_or_default()),
            market_value: Usd::new(self.market_value.unwrap_or_default()),
            current_price: self.current_price.map(Price::new),
        })
    }
}

/// An asset (§3.12).
#[derive(Debug, Clone, Deserialize)]
pub struct AssetDto {
    symbol: String,
    status: Option<String>,
    tradable: Option<bool>,
    fractionable: Option<bool>,
    shortable: Option<bool>,
    marginable: Option<bool>,
}

impl AssetDto {
    /// The domain asset.
    pub fn into_asset(self) -> Result<Asset, DecodeError> {
        Ok(Asset {
            symbol: symbol(&self.symbol)?,
            active: self.status.as_deref().is_none_or(|s| s.eq_ignore_ascii_case("active")),
            tradable: self.tradable.unwrap_or(false),
            fractionable: self.fractionable.unwrap_or(false),
            shortable: self.shortable.unwrap_or(false),
            marginable: self.marginable.unwrap_or(false),
        })
    }
}

/// The market clock (§3.13).
#[derive(Debug, Clone, Deserialize)]
pub struct ClockDto {
    timestamp: String,
    is_open: bool,
    next_open: String,
    next_close: String,
}

impl ClockDto {
    /// The domain clock.
    pub fn into_clock(self) -> Result<MarketClock, DecodeError> {
        let need = |t: &str| parse_timestamp(t).map_err(bad);
        Ok(MarketClock {
            timestamp: need(&self.timestamp)?,
            is_open: self.is_open,
            next_open: need(&self.next_open)?,
            next_close: need(&self.next_close)?,
        })
    }
}

/// A FILL account activity.
#[derive(Debug, Clone, Deserialize)]
pub struct FillActivityDto {
    /// Activity id (`<time>::<uuid>`).
    pub id: String,
    /// Execution id when the server gives one.
    pub execution_id: Option<String>,
    /// `FILL`.
    pub activity_type: Option<String>,
    /// When it executed.
    pub transaction_time: String,
    /// Price of this execution.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub price: Option<Decimal>,
    /// Shares of this execution.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub qty: Option<Decimal>,
    /// Buy or sell.
    pub side: String,
    /// The symbol.
    pub symbol: String,
    /// The order's broker id.
    pub order_id: String,
}

impl FillActivityDto {
    /// The execution id: the server's field, else the part of the activity id after `::`.
    pub fn execution_id(&self) -> String {
        self.execution_id.clone().unwrap_or_else(|| self.id.rsplit("::").next().unwrap_or(&self.id).to_owned())
    }
}

/// The data API's latest quotes of many symbols (§7): `{"quotes": {"AAPL": {"bp",...}, ...}}`;
/// a symbol without a quote is absent.
#[derive(Debug, Clone, Deserialize)]
pub struct LatestQuotesDto {
    #[serde(default)]
    quotes: std::collections::BTreeMap<String, QuoteBody>,
}

impl LatestQuotesDto {
    /// The domain quotes, in symbol order. An entry that cannot be read is left out (and
    /// logged): its symbol then has no quote, as if the feed had none, and the others are kept.
    pub fn into_quotes(self) -> Vec<Quote> {
        self.quotes
            .into_iter()
            .filter_map(|(s, quote)| match symbol(&s).and_then(|sym| quote.into_quote(sym)) {
                Ok(q) => Some(q),
                Err(e) => {
                    tracing::warn!(symbol = %s, error = %e, "skipping an unreadable latest quote");
                    None
                }
            })
            .collect()
    }
}

/// The data API's latest quote (§7): `{"symbol", "quote": {"bp","bs","ap","as","t"}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct LatestQuoteDto {
    symbol: Option<String>,
    quote: QuoteBody,
}

#[derive(Debug, Clone, Deserialize)]
struct QuoteBody {
    t: String,
    #[serde(default, deserialize_with = "opt_decimal")]
    bp: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    bs: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    ap: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    r#as: Option<Decimal>,
}

impl LatestQuoteDto {
    /// The domain quote (`fallback` names the symbol when the payload does not).
    pub fn into_quote(self, fallback: &Symbol) -> Result<Quote, DecodeError> {
        let symbol = match self.symbol {
            Some(s) => symbol(&s)?,
            None => fallback.clone(),
        };
        self.quote.into_quote(symbol)
    }
}

impl QuoteBody {
    fn into_quote(self, symbol: Symbol) -> Result<Quote, DecodeError> {
        Ok(Quote {
            symbol,
            bid: Price::new(self.bp.unwrap_or_default()),
            bid_size: Qty::new(self.bs.unwrap_or_default()),
            ask: Price::new(self.ap.unwrap_or_default()),
            ask_size: Qty::new(self.r#as.unwrap_or_default()),
            time: parse_timestamp(&self.t).map_err(bad)?,
        })
    }
}

/// `data` of a trade_updates message (§5.3).
#[derive(Debug, Clone, Deserialize)]
pub struct TradeUpdateDto {
    event: String,
    order: OrderDto,
    timestamp: Option<String>,
    execution_id: Option<String>,
    #[serde(default, deserialize_with = "opt_decimal")]
    price: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    qty: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    position_qty: Option<Decimal>,
}

impl TradeUpdateDto {
    /// The domain trade update.
    pub fn into_update(self) -> Result<TradeUpdate, DecodeError> {
        let event = TradeEvent::from_wire(&self.event);
        if event == TradeEvent::Unknown {
            tracing::warn!(event = %self.event, "unknown trade update event");
        }
        let execution = match (self.execution_id, self.qty, self.price) {
            (Some(id), Some(qty), Some(price)) if matches!(event, TradeEvent::Fill | TradeEvent::PartialFill) => {
                if qty <= Decimal::ZERO || price <= Decimal::ZERO {
                    return Err(bad(format!(
                        "execution {id} of order {} with qty {qty} at price {price}",
                        self.order.id
                    )));
                }
                Some(Execution { id: ExecutionId::new(id), qty: Qty::new(qty), price: Price::new(price) })
            }
            _ => None,
        };
        Ok(TradeUpdate {
            event,
            order: self.order.into_order()?,
            execution,
            position_qty: self.position_qty.map(Qty::new),
            timestamp: ts(self.timestamp.as_deref())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `partial_fill` of AAPL: the execution's `qty` and `price`, the order's `qty`,
    /// `filled_qty` and `limit_price`.
    fn partial_fill(exec: (&str, &str), order: (&str, &str, &str)) -> serde_json::Value {
        serde_json::json!({
            "event": "partial_fill", "execution_id": "e-1", "timestamp": "2026-03-02T14:45:01Z",
            "qty": exec.0, "price": exec.1, "position_qty": "5",
            "order": {"id": "o-1", "client_order_id": "c-1", "symbol": "AAPL", "side": "buy", "type": "limit",
                "time_in_force": "day", "status": "partially_filled", "created_at": "2026-03-02T14:45:00Z",
                "qty": order.0, "filled_qty": order.1, "limit_price": order.2}
        })
    }

    fn decode(value: &serde_json::Value) -> Result<TradeUpdate, String> {
        TradeUpdateDto::deserialize(value).map_err(|e| e.to_string())?.into_update().map_err(|e| e.0)
    }

    #[test]
    fn a_fill_of_no_or_negative_shares_or_at_no_price_is_unreadable() {
        let fine = decode(&partial_fill(("5", "100.00"), ("10", "5", "100.00"))).unwrap();
        assert_eq!(fine.execution.map(|e| e.qty.get()), Some(Decimal::from(5)));
        for (qty, price) in [("0", "100.00"), ("-5", "100.00"), ("5", "0"), ("5", "-100.00")] {
            let err = decode(&partial_fill((qty, price), ("10", "5", "100.00"))).unwrap_err();
            assert!(err.contains("execution"), "{qty} @ {price}: {err}");
        }
    }

    #[test]
    fn an_order_with_negative_or_impossible_quantities_or_prices_is_unreadable() {
        for (qty, filled, limit, what) in [
            ("0", "0", "100.00", "qty"),
            ("-10", "0", "100.00", "qty"),
            ("10", "-1", "100.00", "filled_qty"),
            ("10", "11", "100.00", "filled_qty"),
            ("10", "5", "0", "limit_price"),
            ("10", "5", "-1", "limit_price"),
        ] {
            let err = decode(&partial_fill(("5", "100.00"), (qty, filled, limit))).unwrap_err();
            assert!(err.contains(what), "qty {qty} filled {filled} limit {limit}: {err}");
        }
    }

    #[test]
    fn one_unreadable_latest_quote_does_not_spoil_the_others() {
        let body = r#"{"quotes":{
            "AAPL":{"t":"2022-04-12T17:16:36.390749849Z","ap":170.34,"as":1,"bp":165.5,"bs":1},
            "BAD SYMBOL":{"t":"2022-04-12T17:16:36Z","ap":1,"as":1,"bp":1,"bs":1},
            "MSFT":{"t":"not a time","ap":1,"as":1,"bp":1,"bs":1}}}"#;
        let quotes = serde_json::from_str::<LatestQuotesDto>(body).unwrap().into_quotes();
        assert_eq!(quotes.len(), 1);
        assert_eq!(quotes[0].symbol.as_str(), "AAPL");
        assert_eq!(quotes[0].bid, Price::new(Decimal::new(1655, 1)));
    }
}
