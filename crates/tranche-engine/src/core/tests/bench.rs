//! A bench for driving [`EngineCore::handle`] directly: a plan, a pinned clock, broker answers
//! built from the core's own requests, and finders over the commands it emits.

use rust_decimal::Decimal;
use tranche_broker::BrokerError;
use tranche_domain::{
    Account, AccountStatus, Asset, BrokerOrderId, ClientOrderId, Execution, ExecutionId, MarketClock, Order,
    OrderAmount, OrderRequest, OrderStatus, Position, Price, Qty, Quote, RebalancePlan, Symbol, TimeInForce, Timestamp,
    TradeEvent, TradeUpdate, Usd,
};

use crate::config::EngineConfig;
use crate::core::EngineCore;
use crate::io::{Command, Input, PreflightData, TimerId};

/// 2026-03-02T14:40:00Z, a Monday with the market open.
pub fn t0() -> Timestamp {
    "2026-03-02T14:40:00Z".parse().unwrap_or_default()
}

pub fn d(text: &str) -> Decimal {
    text.parse().unwrap_or_default()
}

pub fn sym(text: &str) -> Symbol {
    Symbol::parse(text).unwrap_or_else(|_| panic!("bad symbol {text}"))
}

/// A plan of `(symbol, action, trade_amount, current_value)` rows.
pub fn plan(id: &str, rows: &[(&str, &str, &str, &str)]) -> RebalancePlan {
    let items: Vec<_> = rows
        .iter()
        .map(|(s, a, amount, current)| {
            // A SELL of the whole current value is a liquidation (target weight zero).
            let closes = *a == "SELL" && d(amount).abs() == d(current);
            let target = if closes { "0" } else { "0.1" };
            serde_json::json!({"symbol": s, "action": a, "trade_amount": amount, "current_value": current,
                "current_weight": "0.1", "target_weight": target, "target_value": "0"})
        })
        .collect();
    RebalancePlan::from_value(&serde_json::json!({"plan_id": id, "correlation_id": "c", "causation_id": "t",
        "timestamp": "2026-03-02T14:40:00Z", "total_portfolio_value": "100000", "items": items}))
    .unwrap_or_else(|e| panic!("bad test plan: {e}"))
}

/// A cash account with `cash` dollars (buying power equal to cash).
pub fn cash_account(cash: &str) -> Account {
    let cash = Usd::new(d(cash));
    Account {
        status: AccountStatus::Active,
        cash,
        buying_power: cash,
        non_marginable_buying_power: cash,
        regt_buying_power: cash,
        daytrading_buying_power: Usd::new(Decimal::ZERO),
        equity: cash,
        multiplier: 1,
        trading_blocked: false,
        account_blocked: false,
        shorting_enabled: false,
    }
}

pub fn asset(symbol: &str, fractionable: bool) -> Asset {
    Asset { symbol: sym(symbol), active: true, tradable: true, fractionable, shortable: false, marginable: true }
}

pub fn position(symbol: &str, qty: &str, price: &str) -> Position {
    let q = Qty::new(d(qty));
    Position {
        symbol: sym(symbol),
        qty: q,
        qty_available: q,
        avg_entry_price: Price::new(d(price)),
        market_value: Usd::new(d(qty).saturating_mul(d(price))),
        current_price: Some(Price::new(d(price))),
    }
}

pub fn quote(symbol: &str, bid: &str, ask: &str, at: Timestamp) -> Quote {
    Quote {
        symbol: sym(symbol),
        bid: Price::new(d(bid)),
        bid_size: Qty::new(d("100")),
        ask: Price::new(d(ask)),
        ask_size: Qty::new(d("100")),
        time: at,
    }
}

pub fn open_clock(now: Timestamp) -> MarketClock {
    MarketClock {
        timestamp: now,
        is_open: true,
        next_open: now + chrono::Duration::hours(24),
        next_close: now + chrono::Duration::hours(5),
    }
}

/// What the broker holds at preflight.
pub struct Broker {
    pub account: Result<Account, BrokerError>,
    pub clock: Result<MarketClock, BrokerError>,
    pub positions: Vec<Position>,
    pub open_orders: Result<Vec<Order>, BrokerError>,
    pub assets: Vec<Asset>,
}

impl Broker {
    /// An open market, a cash account with $100,000, the plan's symbols fractionable.
    pub fn open(plan: &RebalancePlan, now: Timestamp) -> Self {
        Self {
            account: Ok(cash_account("100000")),
            clock: Ok(open_clock(now)),
            positions: Vec::new(),
            open_orders: Ok(Vec::new()),
            assets: plan.items.iter().map(|i| asset(i.symbol.as_str(), true)).collect(),
        }
    }

    pub fn preflight(&self) -> Input {
        Input::Preflight(Box::new(PreflightData {
            account: self.account.clone(),
            clock: self.clock.clone(),
            positions: Ok(self.positions.clone()),
            open_orders: self.open_orders.clone(),
            assets: self.assets.iter().map(|a| (a.symbol.clone(), Ok(a.clone()))).collect(),
        }))
    }
}

/// The broker's report of an order placed from `request`.
pub fn order_of(request: &OrderRequest, id: &str, status: OrderStatus, filled: &str, now: Timestamp) -> Order {
    let qty = match request.amount {
        OrderAmount::Qty(q) => Some(q),
        OrderAmount::Notional(_) => None,
    };
    Order {
        id: BrokerOrderId::new(id),
        client_order_id: request.client_order_id.clone(),
        symbol: request.symbol.clone(),
        side: request.side,
        order_type: request.order_type,
        time_in_force: TimeInForce::Day,
        qty,
        notional: None,
        limit_price: request.limit_price,
        stop_price: None,
        status,
        filled_qty: Qty::new(d(filled)),
        filled_avg_price: None,
        created_at: now,
        updated_at: Some(now),
        filled_at: None,
        replaces: None,
        replaced_by: None,
        extended_hours: false,
    }
}

/// `order` as the broker reports it later with `status`.
pub fn with_status(order: &Order, status: OrderStatus) -> Order {
    Order { status, ..order.clone() }
}

/// `order` partially filled: `filled` shares so far.
pub fn partly_filled(order: &Order, filled: &str) -> Order {
    Order { status: OrderStatus::PartiallyFilled, filled_qty: Qty::new(d(filled)), ..order.clone() }
}

/// A trade update for `order` (an execution of `exec_qty` at `price` for fills).
pub fn update(event: TradeEvent, order: &Order, exec: Option<(&str, &str, &str)>, at: Timestamp) -> Input {
    Input::Update(Box::new(TradeUpdate {
        event,
        order: order.clone(),
        execution: exec.map(|(id, qty, price)| Execution {
            id: ExecutionId::new(id.to_owned()),
            qty: Qty::new(d(qty)),
            price: Price::new(d(price)),
        }),
        position_qty: None,
        timestamp: Some(at),
    }))
}

/// A core on a pinned clock, with every command it emitted kept for inspection.
pub struct Bench {
    pub core: EngineCore,
    pub now: Timestamp,
    /// The timers the core has armed and not cancelled (as the driver keeps them).
    pub timers: std::collections::BTreeMap<TimerId, Timestamp>,
}

impl Bench {
    pub fn new(plan: RebalancePlan, config: EngineConfig) -> Self {
        Self { core: EngineCore::new(plan, config), now: t0(), timers: std::collections::BTreeMap::new() }
    }

    pub fn feed(&mut self, input: Input) -> Vec<Command> {
        let out = self.core.handle(input, self.now);
        for command in &out {
            match command {
                Command::SetTimer { id, at } => {
                    self.timers.insert(*id, *at);
                }
                Command::CancelTimer(id) => {
                    self.timers.remove(id);
                }
                _ => {}
            }
        }
        out
    }

    /// Fires timer `id`, which must be armed, at its time.
    pub fn fire(&mut self, id: TimerId) -> Vec<Command> {
        let at = self.timers.remove(&id).unwrap_or_else(|| panic!("{id:?} is not armed: {:?}", self.timers));
        self.now = self.now.max(at);
        self.feed(Input::Timer(id))
    }

    /// Fires the earliest armed timer (`None` when none is armed).
    pub fn fire_next(&mut self) -> Option<(TimerId, Vec<Command>)> {
        let (id, _) = self.timers.iter().min_by_key(|(_, at)| **at).map(|(id, at)| (*id, *at))?;
        Some((id, self.fire(id)))
    }

    /// Start, preflight against `broker`, and quotes for every symbol at `bid`/`ask`: returns
    /// every command of these steps.
    pub fn open_with(&mut self, broker: &Broker, quotes: &[(&str, &str, &str)]) -> Vec<Command> {
        let mut out = self.feed(Input::Start);
        out.extend(self.feed(Input::StreamUp));
        out.extend(self.feed(broker.preflight()));
        for (s, bid, ask) in quotes {
            let q = quote(s, bid, ask, self.now);
            out.extend(self.feed(Input::Quote(q)));
        }
        out
    }

    /// Answers every REST quote request in `out` with `bid`/`ask` now.
    pub fn answer_quotes(&mut self, out: &[Command], bid: &str, ask: &str) -> Vec<Command> {
        let asked: Vec<_> = out
            .iter()
            .filter_map(|c| match c {
                Command::FetchQuote { item, symbol } => Some((*item, symbol.clone())),
                _ => None,
            })
            .collect();
        let mut answers = Vec::new();
        for (item, symbol) in asked {
            let q = quote(symbol.as_str(), bid, ask, self.now);
            answers.extend(self.feed(Input::RestQuote { item, result: Ok(q) }));
        }
        answers
    }

    /// Like [`Self::open_with`], then answers the buying-power read with `broker`'s account.
    pub fn open_and_settle(&mut self, broker: &Broker, quotes: &[(&str, &str, &str)]) -> Vec<Command> {
        let mut out = self.open_with(broker, quotes);
        if out.iter().any(|c| matches!(c, Command::FetchAccount)) {
            out.extend(self.feed(Input::Account(broker.account.clone())));
        }
        out
    }
}

/// What `pick` finds in each command of `out`, in order.
pub fn found<T>(out: &[Command], pick: impl Fn(&Command) -> Option<T>) -> Vec<T> {
    out.iter().filter_map(pick).collect()
}

pub fn submits(out: &[Command]) -> Vec<OrderRequest> {
    found(out, |c| match c {
        Command::Submit { request, .. } => Some(request.clone()),
        _ => None,
    })
}

pub fn the_submit(out: &[Command]) -> OrderRequest {
    let all = submits(out);
    assert_eq!(all.len(), 1, "expected one submit in {out:#?}");
    all.into_iter().next().unwrap_or_else(|| unreachable!())
}

pub fn cancels(out: &[Command]) -> Vec<BrokerOrderId> {
    found(out, |c| match c {
        Command::Cancel { order, .. } => Some(order.clone()),
        _ => None,
    })
}

pub fn replaces(out: &[Command]) -> Vec<(BrokerOrderId, tranche_domain::ReplaceRequest)> {
    found(out, |c| match c {
        Command::Replace { order, request, .. } => Some((order.clone(), request.clone())),
        _ => None,
    })
}

/// Replaces sent after the core's last look.
pub fn sent_replaces(out: &[Command]) -> Vec<(BrokerOrderId, tranche_domain::ReplaceRequest)> {
    found(out, |c| match c {
        Command::SendReplace { order, request, .. } => Some((order.clone(), request.clone())),
        _ => None,
    })
}

pub fn client_lookups(out: &[Command]) -> Vec<ClientOrderId> {
    found(out, |c| match c {
        Command::LookupClientId { client_order_id, .. } => Some(client_order_id.clone()),
        _ => None,
    })
}

pub fn order_lookups(out: &[Command]) -> Vec<BrokerOrderId> {
    found(out, |c| match c {
        Command::LookupOrder { order, .. } => Some(order.clone()),
        _ => None,
    })
}

pub fn timer(out: &[Command], id: TimerId) -> Option<Timestamp> {
    out.iter().rev().find_map(|c| match c {
        Command::SetTimer { id: set, at } if *set == id => Some(*at),
        _ => None,
    })
}

pub fn result(out: &[Command]) -> Option<tranche_domain::ExecutionResult> {
    out.iter().find_map(|c| match c {
        Command::Finish(r) => Some((**r).clone()),
        _ => None,
    })
}

pub fn fetches_fills(out: &[Command]) -> bool {
    out.iter().any(|c| matches!(c, Command::FetchFills { .. }))
}
