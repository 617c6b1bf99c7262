//! Order entry at the simulated broker: submit, replace, cancel, with Alpaca's validation
//! pipeline (§8.2 of the protocol reference) and its exact error codes and messages.
//!
//! Invariants: a refused request changes nothing; an accepted request is visible at once through
//! lookups and takes effect at the venue after the venue latency, racing with fills; client
//! order ids are unique forever; injected 5xx and 429 refuse the request before it is applied,
//! an injected "timeout after" applies it and loses only the answer.

use rust_decimal::Decimal;
use tranche_broker::RejectReason;
use tranche_domain::{
    tick::is_on_tick, BrokerOrderId, ClientOrderId, Order, OrderAmount, OrderRequest, OrderStatus, OrderType, Price,
    Qty, ReplaceRequest, Side, TimeInForce, TradeEvent,
};

use crate::core::{Action, Sim, SimOrder};
use crate::error::SimError;

/// A submit answered with a timeout whose order the broker creates later.
#[derive(Debug, Clone)]
pub(crate) struct LateOrder {
    /// What was sent.
    pub request: OrderRequest,
    /// Its stop price, for a stop or stop-limit (it rests untriggered once created).
    pub stop: Option<tranche_domain::Price>,
    /// Reached the books (or was dropped) already.
    pub created: bool,
}

/// Alpaca's refusal of any replace of an order in `status`, whatever the replace asks: a closed
/// order, or one not (or no longer simply) working at the venue.
pub(crate) fn replace_refused_in(status: OrderStatus) -> Option<&'static str> {
    if status.is_terminal() {
        return Some("unable to replace order, order is not open");
    }
    matches!(
        status,
        OrderStatus::Accepted | OrderStatus::PendingNew | OrderStatus::PendingCancel | OrderStatus::PendingReplace
    )
    .then_some("unable to replace order, order isn't sent to exchange yet")
}

const FORBIDDEN: u16 = 403;
const UNPROCESSABLE: u16 = 422;
const CODE_403: u64 = 40_310_000;
const CODE_422: u64 = 42_210_000;
const CODE_VALIDATION: u64 = 40_010_001;

fn reject(status: u16, code: u64, reason: RejectReason, message: impl Into<String>) -> SimError {
    SimError::reject(status, code, reason, message)
}

fn check_price(field: &str, price: Option<Price>) -> Result<(), SimError> {
    match price {
        Some(p) if !p.is_positive() => {
            Err(reject(UNPROCESSABLE, CODE_422, RejectReason::InvalidRequest, format!("invalid {field} {p}")))
        }
        Some(p) if !is_on_tick(p) => Err(reject(
            UNPROCESSABLE,
            CODE_422,
            RejectReason::SubPennyPrice,
            format!("invalid {field} {p}. sub-penny increment does not fulfill minimum pricing criteria"),
        )),
        _ => Ok(()),
    }
}

fn insufficient_qty(requested: Decimal, available: Decimal) -> SimError {
    let message = format!(
        "insufficient qty available for order (requested: {}, available: {})",
        requested.normalize(),
        available.max(Decimal::ZERO).normalize()
    );
    reject(FORBIDDEN, CODE_403, RejectReason::InsufficientQty, message)
}

impl Sim {
    /// Injected 429 / 5xx for a read made outside the `Sim` API (the emulator's reads); counts
    /// the request.
    pub fn inject_call_fault(&mut self) -> Option<SimError> {
        self.call_fault("emulator_read")
    }

    /// Injected 429 / 5xx for any REST call; counts the request under `kind`.
    pub(crate) fn call_fault(&mut self, kind: &'static str) -> Option<SimError> {
        self.requests += 1;
        self.request_kinds.hit(kind);
        tracing::trace!(kind, at = %self.now, "rest request");
        let faults = &self.config.faults;
        let (rate, server, retry) = (faults.rate_limit_ppm, faults.server_error_ppm, faults.retry_after_ms);
        if self.rng.chance_ppm(rate) {
            self.fired.hit("rate_limited");
            return Some(SimError::RateLimited { retry_after: std::time::Duration::from_millis(retry) });
        }
        if self.rng.chance_ppm(server) {
            self.fired.hit("server_error");
            let status = [500, 502, 503, 504][usize::try_from(self.rng.below(4)).unwrap_or(0)];
            return Some(SimError::ServerError { status });
        }
        None
    }

    /// Rejects `side` at `limit` when an opposite-side open order in the symbol could trade with it.
    fn check_wash_trade(
        &self,
        symbol: &tranche_domain::Symbol,
        side: Side,
        limit: Option<Price>,
        except: Option<usize>,
    ) -> Result<(), SimError> {
        let conflict = self.open.iter().filter(|&&i| Some(i) != except).map(|&i| &self.orders[i].order).find(|o| {
            if &o.symbol != symbol || o.side == side {
                return false;
            }
            // A resting stop (or stop-limit) conflicts with any opposite order, as at Alpaca.
            if matches!(o.order_type, OrderType::Stop | OrderType::StopLimit) {
                return true;
            }
            match (limit, o.limit_price) {
                (Some(new), Some(old)) => match side {
                    Side::Buy => new >= old,
                    Side::Sell => new <= old,
                },
                _ => true,
            }
        });
        if let Some(existing) = conflict {
            let reject_reason = match existing.order_type {
                OrderType::Limit => "opposite side limit order exists",
                _ => "opposite side market/stop order exists",
            };
            return Err(SimError::Reject {
                status: FORBIDDEN,
                code: CODE_403,
                message: "potential wash trade detected. use complex orders".into(),
                reason: RejectReason::WashTrade,
                detail: Some(crate::error::WashTradeDetail {
                    reject_reason,
                    existing_order_id: existing.id.as_str().to_owned(),
                }),
            });
        }
        Ok(())
    }

    /// The price a buy reserves per share: its limit, or the ask plus Alpaca's market collar (the
    /// worst of its range, `MARKET_BUY_COLLAR`).
    pub(crate) fn reserve_price(&self, slot: usize, order_type: OrderType, limit: Option<Price>) -> Decimal {
        match (order_type, limit) {
            (OrderType::Limit, Some(l)) => l.get(),
            _ => {
                let m = &self.slots[slot].market;
                m.profile.price(m.ask) * tranche_domain::MARKET_BUY_COLLAR
            }
        }
    }

    /// The symbol, order type, time in force and price checks; returns the market slot.
    fn check_instrument(&mut self, req: &OrderRequest) -> Result<usize, SimError> {
        let symbol = &req.symbol;
        if !self.is_known(symbol) {
            return Err(reject(
                UNPROCESSABLE,
                CODE_422,
                RejectReason::NotTradable,
                format!("asset \"{symbol}\" not found"),
            ));
        }
        if self.config.symbols.non_tradable.contains(symbol) {
            let message = format!("asset \"{symbol}\" is not tradable");
            return Err(reject(UNPROCESSABLE, CODE_422, RejectReason::NotTradable, message));
        }
        if !matches!(req.order_type, OrderType::Market | OrderType::Limit) {
            let message = format!("order type {} is not supported by the simulator", req.order_type);
            return Err(reject(UNPROCESSABLE, CODE_422, RejectReason::InvalidRequest, message));
        }
        if matches!(req.time_in_force, TimeInForce::Opg | TimeInForce::Cls) {
            let message = format!("time in force {} is not supported by the simulator", req.time_in_force);
            return Err(reject(UNPROCESSABLE, CODE_422, RejectReason::InvalidRequest, message));
        }
        match (req.order_type, req.limit_price) {
            (OrderType::Limit, None) => {
                let message = "limit_price is required for limit orders";
                return Err(reject(UNPROCESSABLE, CODE_VALIDATION, RejectReason::InvalidRequest, message));
            }
            (OrderType::Market, Some(_)) => {
                let message = "limit_price must not be set for market orders";
                return Err(reject(UNPROCESSABLE, CODE_VALIDATION, RejectReason::InvalidRequest, message));
            }
            _ => {}
        }
        check_price("limit_price", req.limit_price)?;
        Ok(self.slot_of(symbol))
    }

    /// Quantity or notional rules, fractional rules; returns the share quantity (0 for notional).
    fn check_amount(&self, req: &OrderRequest, slot: usize) -> Result<Decimal, SimError> {
        let (qty, fractional) = match req.amount {
            OrderAmount::Qty(q) => {
                if !q.is_positive() || q.get().scale() > 9 {
                    return Err(reject(
                        UNPROCESSABLE,
                        CODE_VALIDATION,
                        RejectReason::InvalidRequest,
                        format!("invalid qty {q}"),
                    ));
                }
                (q.get(), q.is_fractional())
            }
            OrderAmount::Notional(n) => {
                if req.order_type != OrderType::Market {
                    let message = "notional orders are only supported for market orders";
                    return Err(reject(UNPROCESSABLE, CODE_VALIDATION, RejectReason::InvalidRequest, message));
                }
                if n.get() < Decimal::ONE {
                    let message = "cost basis must be >= minimal amount of order 1";
                    return Err(reject(FORBIDDEN, CODE_403, RejectReason::InvalidRequest, message));
                }
                (Decimal::ZERO, true)
            }
        };
        if fractional && !self.slots[slot].market.profile.fractionable {
            let message = format!("asset \"{}\" is not fractionable", req.symbol);
            return Err(reject(FORBIDDEN, CODE_403, RejectReason::NotFractionable, message));
        }
        if fractional && qty > Decimal::ZERO {
            // Alpaca's minimum for a fractional order: $1 at the current price.
            let m = &self.slots[slot].market;
            let value = qty.checked_mul(m.profile.price(m.bid)).unwrap_or(Decimal::MAX);
            if value < Decimal::ONE {
                let message = "cost basis must be >= minimal amount of order 1";
                return Err(reject(FORBIDDEN, CODE_403, RejectReason::InvalidRequest, message));
            }
        }
        if fractional && req.time_in_force != TimeInForce::Day {
            let message = "fractional orders must be DAY orders";
            return Err(reject(UNPROCESSABLE, CODE_422, RejectReason::InvalidRequest, message));
        }
        Ok(qty)
    }

    /// Shares available for a sell, buying power for a buy; returns the per-share reservation.
    fn check_funds(&self, req: &OrderRequest, slot: usize) -> Result<Decimal, SimError> {
        let symbol = &req.symbol;
        match req.side {
            Side::Sell => {
                let estimate = match req.amount {
                    OrderAmount::Qty(q) => q.get(),
                    OrderAmount::Notional(n) => {
                        let m = &self.slots[slot].market;
                        n.get().checked_div(m.profile.price(m.bid)).unwrap_or(Decimal::MAX)
                    }
                };
                let held = self.account.qty(symbol);
                if held.is_zero() {
                    return Err(reject(
                        FORBIDDEN,
                        CODE_403,
                        RejectReason::NotShortable,
                        "account is not allowed to short",
                    ));
                }
                let available = (held - self.held_for_sells(symbol)).max(Decimal::ZERO);
                if estimate > available {
                    return Err(insufficient_qty(estimate, available));
                }
                Ok(Decimal::ZERO)
            }
            Side::Buy => {
                let per_share = self.reserve_price(slot, req.order_type, req.limit_price);
                let cost = match req.amount {
                    OrderAmount::Qty(q) => q.get().checked_mul(per_share).unwrap_or(Decimal::MAX),
                    OrderAmount::Notional(n) => n.get(),
                };
                let mark = |s: &tranche_domain::Symbol| self.mark(s);
                if cost > self.account.buying_power(self.reserved(), &mark) {
                    return Err(reject(
                        FORBIDDEN,
                        CODE_403,
                        RejectReason::InsufficientBuyingPower,
                        "insufficient buying power",
                    ));
                }
                Ok(per_share)
            }
        }
    }

    /// Alpaca's submission pipeline; returns the slot, share quantity and per-share reservation.
    fn validate_new(&mut self, req: &OrderRequest) -> Result<(usize, Decimal, Decimal), SimError> {
        let slot = self.check_instrument(req)?;
        let qty = self.check_amount(req, slot)?;
        if self.by_client.contains_key(&req.client_order_id) {
            let message = "client_order_id must be unique";
            return Err(reject(UNPROCESSABLE, CODE_VALIDATION, RejectReason::DuplicateClientOrderId, message));
        }
        if self.account.trading_blocked {
            return Err(reject(FORBIDDEN, CODE_403, RejectReason::AccountBlocked, "account is not allowed to trade"));
        }
        self.check_wash_trade(&req.symbol, req.side, req.limit_price, None)?;
        let reserve = self.check_funds(req, slot)?;
        Ok((slot, qty, reserve))
    }

    /// Registers a new open order under its broker and client ids; returns its index.
    fn admit(&mut self, entry: SimOrder) -> usize {
        let index = self.orders.len();
        self.by_id.insert(entry.order.id.clone(), index);
        self.by_client.insert(entry.order.client_order_id.clone(), index);
        self.orders.push(entry);
        self.open.insert(index);
        index
    }

    /// Places an order.
    pub fn submit(&mut self, req: &OrderRequest) -> Result<Order, SimError> {
        self.submit_stopped_at(req, None)
    }

    /// Places an order; with `stop`, as an untriggered stop (a stop-limit when `req` has a
    /// limit) however its answer goes: answered, timed out after it was placed, or late.
    pub(crate) fn submit_stopped_at(
        &mut self,
        req: &OrderRequest,
        stop: Option<tranche_domain::Price>,
    ) -> Result<Order, SimError> {
        self.judge_submit(req);
        if let Some(fault) = self.call_fault("submit") {
            return Err(fault);
        }
        if self.rng.chance_ppm(self.config.faults.submit_timeout_before_ppm) {
            self.fired.hit("submit_timeout_before");
            self.record(|| format!("submit {} TIMEOUT before", req.client_order_id));
            return Err(SimError::Timeout { applied: false });
        }
        let (slot, qty, reserve_price) = match self.validate_new(req) {
            Ok(v) => v,
            Err(e) => {
                self.record(|| format!("submit {} REJECT {e}", req.client_order_id));
                return Err(e);
            }
        };
        if self.rng.chance_ppm(self.config.faults.late_order_ppm) {
            // The gateway gives up; the order reaches the broker's books later.
            self.fired.hit("late_order");
            let at = self.late_arrival();
            self.late.push(LateOrder { request: req.clone(), stop, created: false });
            self.schedule_at(at, Action::LateCreate(self.late.len() - 1));
            self.referee.answer_lost(&req.client_order_id);
            self.record(|| format!("submit {} TIMEOUT late order", req.client_order_id));
            return Err(SimError::ServerError { status: 504 });
        }
        let order = self.place(req, slot, qty, reserve_price);
        let order = match stop {
            Some(stop) => self.make_stop(&order.id, stop).unwrap_or(order),
            None => order,
        };
        if self.rng.chance_ppm(self.config.faults.submit_timeout_after_ppm) {
            self.fired.hit("submit_timeout_after");
            self.referee.answer_lost(&req.client_order_id);
            self.record(|| format!("submit {} TIMEOUT after", req.client_order_id));
            return Err(SimError::Timeout { applied: true });
        }
        Ok(order)
    }

    /// When a request answered with a gateway timeout reaches the broker: 0.5 s to
    /// `late_order_max_ms` from now.
    fn late_arrival(&mut self) -> tranche_domain::Timestamp {
        let span = self.config.faults.late_order_max_ms.max(500) - 500;
        let delay = 500 + self.rng.below(span + 1);
        let at = self.after_ms(delay);
        self.late_due_until = Some(self.late_due_until.map_or(at, |due| due.max(at)));
        at
    }

    /// Places an order as the account's owner would, outside Tranche (no fault injection, not
    /// judged by the referee): the user's own resting orders that Tranche must never touch.
    pub fn submit_as_user(&mut self, req: &OrderRequest) -> Result<Order, SimError> {
        let (slot, qty, reserve_price) = self.validate_new(req)?;
        self.record(|| format!("user order {}", req.client_order_id));
        Ok(self.place(req, slot, qty, reserve_price))
    }

    /// A late order reaches the broker's books: created as if submitted now, unless its client
    /// order id was taken meanwhile (a re-send won) or it no longer passes validation (then it
    /// never exists, as a request the broker dropped).
    pub(crate) fn create_late(&mut self, index: usize) {
        let Some(late) = self.late.get(index).cloned() else { return };
        self.late[index].created = true;
        let req = &late.request;
        match self.validate_new(req) {
            Ok((slot, qty, reserve_price)) => {
                self.judge_late_creation(&req.client_order_id);
                self.record(|| format!("late order {} created", req.client_order_id));
                let placed = self.place(req, slot, qty, reserve_price);
                if let Some(stop) = late.stop {
                    self.make_stop(&placed.id, stop);
                }
            }
            Err(e) => self.record(|| format!("late order {} dropped: {e}", req.client_order_id)),
        }
    }

    /// Admits a validated order and schedules its arrival at the venue (slowly routed orders
    /// report `accepted` and `pending_new` first).
    fn place(&mut self, req: &OrderRequest, slot: usize, qty: Decimal, reserve_price: Decimal) -> Order {
        let limit_ticks = req.limit_price.and_then(|p| self.slots[slot].market.to_ticks(p, req.side));
        let order = Order {
            id: self.next_broker_id(),
            client_order_id: req.client_order_id.clone(),
            symbol: req.symbol.clone(),
            side: req.side,
            order_type: req.order_type,
            time_in_force: req.time_in_force,
            qty: match req.amount {
                OrderAmount::Qty(q) => Some(q),
                OrderAmount::Notional(_) => None,
            },
            notional: match req.amount {
                OrderAmount::Notional(n) => Some(n),
                OrderAmount::Qty(_) => None,
            },
            limit_price: req.limit_price,
            stop_price: None,
            status: OrderStatus::Accepted,
            filled_qty: Qty::ZERO,
            filled_avg_price: None,
            created_at: self.now,
            updated_at: Some(self.now),
            filled_at: None,
            replaces: None,
            replaced_by: None,
            extended_hours: req.extended_hours,
        };
        let index = self.admit(SimOrder {
            order: order.clone(),
            slot,
            qty,
            reserve_price,
            queue_ahead: 0,
            limit_ticks,
            replaces: None,
            stop_ticks: None,
            cancel_pending: false,
        });
        let mut venue_ms = self.config.latency.venue_ms;
        if self.rng.chance_ppm(self.config.faults.slow_routing_ppm) {
            self.fired.hit("slow_routing");
            self.emit(index, TradeEvent::Accepted, None);
            let pending_after = 250 + self.rng.below(2_250);
            let route_at = self.after_ms(pending_after);
            self.schedule_at(route_at, Action::Route(index));
            venue_ms += pending_after + 250 + self.rng.below(2_250);
        }
        let at = self.after_ms(venue_ms);
        self.schedule_at(at, Action::Arrive(index));
        self.record(|| {
            format!(
                "submit {} {} {} {:?} {:?}",
                order.client_order_id, order.side, order.symbol, req.amount, req.limit_price
            )
        });
        order
    }

    pub(crate) fn index_of(&self, id: &BrokerOrderId) -> Result<usize, SimError> {
        self.by_id.get(id).copied().ok_or_else(|| SimError::NotFound { message: "order not found".into() })
    }

    /// Requests a cancel (Alpaca answers 204 and reports the outcome on the stream).
    pub fn cancel(&mut self, id: &BrokerOrderId) -> Result<(), SimError> {
        if let Some(&i) = self.by_id.get(id) {
            self.judge_cancel(i);
        }
        if let Some(fault) = self.call_fault("cancel") {
            return Err(fault);
        }
        let i = self.index_of(id)?;
        let status = self.orders[i].order.status;
        if !status.is_cancelable() {
            let cid = self.orders[i].order.client_order_id.clone();
            self.record(|| format!("cancel {cid} REJECT not cancelable ({status})"));
            return Err(reject(UNPROCESSABLE, CODE_422, RejectReason::NotCancelable, "order is not cancelable"));
        }
        if self.transition(i, TradeEvent::PendingCancel) {
            self.emit(i, TradeEvent::PendingCancel, None);
        }
        self.orders[i].cancel_pending = true;
        let ppm = self.config.faults.stuck_cancel_ppm;
        let stuck = ppm > 0 && self.rng.chance_ppm(ppm);
        let wait = if stuck {
            self.fired.hit("stuck_cancel");
            self.config.faults.stuck_cancel_ms
        } else {
            self.config.latency.venue_ms
        };
        let at = self.after_ms(wait);
        self.schedule_at(at, Action::CancelArrive(i));
        let cid = self.orders[i].order.client_order_id.clone();
        self.record(|| format!("cancel {cid}{}", if stuck { " STUCK" } else { "" }));
        Ok(())
    }

    /// Cancels an open order at once, without the venue's round trip (`pending_cancel` then
    /// `canceled` on the stream): what the broker does before liquidating with
    /// `DELETE /v2/positions?cancel_orders=true`, so that the shares the orders held are free.
    ///
    /// # Errors
    /// As [`Sim::cancel`], without injected faults.
    pub fn cancel_now(&mut self, id: &BrokerOrderId) -> Result<(), SimError> {
        let i = self.index_of(id)?;
        self.judge_cancel(i);
        let status = self.orders[i].order.status;
        if !status.is_cancelable() {
            return Err(reject(UNPROCESSABLE, CODE_422, RejectReason::NotCancelable, "order is not cancelable"));
        }
        if self.transition(i, TradeEvent::PendingCancel) {
            self.emit(i, TradeEvent::PendingCancel, None);
        }
        self.finish(i, TradeEvent::Canceled);
        let cid = self.orders[i].order.client_order_id.clone();
        self.record(|| format!("cancel {cid} at once"));
        Ok(())
    }

    /// The cancel reaches the venue: cancels what is left, or reports that it lost the race.
    pub(crate) fn cancel_arrives(&mut self, i: usize) {
        if self.orders[i].order.status.is_terminal() {
            self.emit(i, TradeEvent::OrderCancelRejected, None);
            return;
        }
        self.finish(i, TradeEvent::Canceled);
    }

    /// Replaces a working order; returns the new order.
    pub fn replace(&mut self, id: &BrokerOrderId, req: &ReplaceRequest) -> Result<Order, SimError> {
        if let Some(&old) = self.by_id.get(id) {
            self.judge_replace(old, req);
        }
        if let Some(fault) = self.call_fault("replace") {
            return Err(fault);
        }
        let old = self.index_of(id)?;
        let result = self.validate_replace(old, req);
        let (qty, limit) = match result {
            Ok(v) => v,
            Err(e) => {
                let cid = self.orders[old].order.client_order_id.clone();
                self.record(|| format!("replace {cid} REJECT {e}"));
                let unrouted = matches!(&e, SimError::Reject { reason: RejectReason::NotYetRouted, .. });
                let ppm = self.config.faults.refused_replace_applied_ppm;
                if unrouted && ppm > 0 && self.rng.chance_ppm(ppm) {
                    self.fired.hit("refused_replace_applied");
                    self.refused_replaces.push((old, req.clone()));
                }
                return Err(e);
            }
        };
        if self.rng.chance_ppm(self.config.faults.late_replace_ppm) {
            // The gateway gives up; the replace reaches the broker later (or finds the order
            // closed by then and is dropped).
            self.fired.hit("late_replace");
            let at = self.late_arrival();
            self.late_replaces.push((old, req.clone()));
            self.referee.replace_answer_lost(old, req);
            self.schedule_at(at, Action::LateReplace(self.late_replaces.len() - 1));
            let cid = self.orders[old].order.client_order_id.clone();
            self.record(|| format!("replace {cid} TIMEOUT late replace"));
            return Err(SimError::ServerError { status: 504 });
        }
        Ok(self.apply_replace(old, req, qty, limit))
    }

    /// Order `i` reached the venue: the replaces of it refused as not yet routed that take
    /// effect anyway are applied now (when still valid: a replacement id used meanwhile, or
    /// anything else a replace sent now would be refused for, drops it).
    pub(crate) fn apply_refused_replaces(&mut self, i: usize) {
        let (due, rest): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.refused_replaces).into_iter().partition(|(o, _)| *o == i);
        self.refused_replaces = rest;
        for (old, req) in due {
            self.apply_if_valid(old, &req, "refused");
        }
    }

    /// A late replace reaches the broker: applied as if sent now when it is still valid.
    pub(crate) fn replace_late(&mut self, index: usize) {
        let Some((old, req)) = self.late_replaces.get(index).cloned() else { return };
        self.apply_if_valid(old, &req, "late");
    }

    /// A replace of order `old` taking effect after its answer (`kind`: late, refused): applied
    /// as if sent now when it is still valid, else dropped; recorded either way.
    fn apply_if_valid(&mut self, old: usize, req: &ReplaceRequest, kind: &str) {
        match self.validate_replace(old, req) {
            Ok((qty, limit)) => {
                self.record(|| format!("{kind} replace {} applied", req.client_order_id));
                self.apply_replace(old, req, qty, limit);
            }
            Err(e) => self.record(|| format!("{kind} replace {} dropped: {e}", req.client_order_id)),
        }
    }

    /// Creates the replacement of order `old` (validated) and sends the replace to the venue.
    fn apply_replace(&mut self, old: usize, req: &ReplaceRequest, qty: Decimal, limit: Option<Price>) -> Order {
        let slot = self.orders[old].slot;
        let side = self.orders[old].order.side;
        let mut order = self.orders[old].order.clone();
        order.id = self.next_broker_id();
        order.client_order_id = req.client_order_id.clone();
        order.qty = Some(Qty::new(qty));
        order.limit_price = limit;
        order.time_in_force = req.time_in_force.unwrap_or(order.time_in_force);
        order.status = OrderStatus::PendingNew;
        order.filled_qty = Qty::ZERO;
        order.filled_avg_price = None;
        order.filled_at = None;
        order.created_at = self.now;
        order.updated_at = Some(self.now);
        order.replaces = Some(self.orders[old].order.id.clone());
        order.replaced_by = None;
        let limit_ticks = limit.and_then(|p| self.slots[slot].market.to_ticks(p, side));
        let reserve_price =
            if side == Side::Buy { self.reserve_price(slot, order.order_type, limit) } else { Decimal::ZERO };
        let index = self.admit(SimOrder {
            order: order.clone(),
            slot,
            qty,
            reserve_price,
            queue_ahead: 0,
            limit_ticks,
            replaces: Some(old),
            stop_ticks: None,
            cancel_pending: false,
        });
        if self.transition(old, TradeEvent::PendingReplace) {
            self.emit(old, TradeEvent::PendingReplace, None);
        }
        let at = self.after_ms(self.config.latency.venue_ms);
        self.schedule_at(at, Action::ReplaceArrive(old, index));
        let cid = self.orders[old].order.client_order_id.clone();
        self.record(|| format!("replace {} -> {} qty {qty} limit {limit:?}", cid, order.client_order_id));
        order
    }

    fn validate_replace(&mut self, old: usize, req: &ReplaceRequest) -> Result<(Decimal, Option<Price>), SimError> {
        let o = &self.orders[old];
        if o.cancel_pending && !o.order.status.is_terminal() {
            return Err(reject(
                UNPROCESSABLE,
                CODE_422,
                RejectReason::NotCancelable,
                "unable to replace order, order is pending cancel",
            ));
        }
        if let Some(message) = replace_refused_in(o.order.status) {
            // Only an order on its way to the venue will work soon; one being cancelled or
            // replaced will not.
            let routing = matches!(o.order.status, OrderStatus::Accepted | OrderStatus::PendingNew);
            let reason = if routing { RejectReason::NotYetRouted } else { RejectReason::NotCancelable };
            return Err(reject(UNPROCESSABLE, CODE_VALIDATION, reason, message));
        }
        if o.order.notional.is_some() {
            return Err(reject(
                UNPROCESSABLE,
                CODE_422,
                RejectReason::InvalidRequest,
                "notional orders cannot be replaced",
            ));
        }
        let qty = req.qty.map_or(o.qty, Qty::get);
        if qty <= Decimal::ZERO
            || (req.qty.is_some() && (qty.fract() != Decimal::ZERO || o.qty.fract() != Decimal::ZERO))
        {
            return Err(reject(
                UNPROCESSABLE,
                CODE_422,
                RejectReason::InvalidRequest,
                "qty must be a positive whole number; fractional orders cannot change quantity",
            ));
        }
        let limit = req.limit_price.or(o.order.limit_price);
        if o.order.order_type == OrderType::Market && req.limit_price.is_some() {
            return Err(reject(
                UNPROCESSABLE,
                CODE_422,
                RejectReason::InvalidRequest,
                "limit_price cannot be set on a market order",
            ));
        }
        let unchanged = qty == o.qty
            && limit == o.order.limit_price
            && req.time_in_force.is_none_or(|t| t == o.order.time_in_force);
        if unchanged {
            return Err(reject(FORBIDDEN, CODE_403, RejectReason::NothingChanged, "order parameters are not changed"));
        }
        check_price("limit_price", req.limit_price)?;
        if self.by_client.contains_key(&req.client_order_id) {
            return Err(reject(
                UNPROCESSABLE,
                CODE_VALIDATION,
                RejectReason::DuplicateClientOrderId,
                "client_order_id must be unique",
            ));
        }
        let (symbol, side, slot, order_type) = (o.order.symbol.clone(), o.order.side, o.slot, o.order.order_type);
        self.check_wash_trade(&symbol, side, limit, Some(old))?;
        match side {
            Side::Buy => {
                // While pending, the larger of the old and new orders is held; check the increase.
                let new_cost = qty.checked_mul(self.reserve_price(slot, order_type, limit)).unwrap_or(Decimal::MAX);
                let old_cost =
                    self.orders[old].leaves().checked_mul(self.orders[old].reserve_price).unwrap_or(Decimal::ZERO);
                let mark = |s: &tranche_domain::Symbol| self.mark(s);
                if new_cost - old_cost.min(new_cost) > self.account.buying_power(self.reserved(), &mark) {
                    return Err(reject(
                        FORBIDDEN,
                        CODE_403,
                        RejectReason::InsufficientBuyingPower,
                        "insufficient buying power",
                    ));
                }
            }
            Side::Sell => {
                let available = self.account.qty(&symbol) - self.held_for_sells(&symbol) + self.orders[old].leaves();
                if qty > available {
                    return Err(insufficient_qty(qty, available));
                }
            }
        }
        Ok((qty, limit))
    }

    /// The replace reaches the venue: the old order is replaced, or (when it filled first) the
    /// replace is rejected and the new order with it.
    pub(crate) fn replace_arrives(&mut self, old: usize, new: usize) {
        if self.orders[old].order.status.is_terminal() {
            self.emit(old, TradeEvent::OrderReplaceRejected, None);
            self.finish(new, TradeEvent::Rejected);
            return;
        }
        if self.orders[new].order.side == Side::Sell {
            // The venue will not let the replacement sell shares that are no longer there (the
            // old order may have filled while the replace was on its way).
            let symbol = self.orders[new].order.symbol.clone();
            let others = self.held_for_sells(&symbol) - self.orders[old].leaves() - self.orders[new].leaves();
            let available = self.account.qty(&symbol) - others.max(Decimal::ZERO);
            if self.orders[new].leaves() > available {
                // The old order works on (back from pending_replace, by the table), and says so.
                self.transition(old, TradeEvent::OrderReplaceRejected);
                self.emit(old, TradeEvent::OrderReplaceRejected, None);
                self.finish(new, TradeEvent::Rejected);
                return;
            }
        }
        let new_id = self.orders[new].order.id.clone();
        self.orders[old].order.replaced_by = Some(new_id);
        self.finish(old, TradeEvent::Replaced);
        self.arrive(new);
    }

    /// Looks an order up by client order id.
    pub fn order_by_client_id(&self, id: &ClientOrderId) -> Result<Order, SimError> {
        self.by_client
            .get(id)
            .map(|&i| self.orders[i].order.clone())
            .ok_or_else(|| SimError::NotFound { message: "order not found".into() })
    }

    /// Looks an order up by broker id.
    pub fn order(&self, id: &BrokerOrderId) -> Result<Order, SimError> {
        self.index_of(id).map(|i| self.orders[i].order.clone())
    }
}
