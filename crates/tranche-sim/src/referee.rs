//! The referee: an observer inside the simulated broker (not in the engine) that records every
//! breach of Tranche's promises the moment the request that breaks it arrives, whether or not
//! the broker then refuses it. A check counted after the fact proves nothing when the broker
//! already refused the violation (an oversell, a short sale, a duplicate client order id never
//! become orders); the referee counts the attempt.
//!
//! What it watches (each a [`ViolationKind`]): two possibly-working orders for one plan item; a
//! buy sent while a sell order of the same plan is not final, and a sell sent once the plan's
//! buys began; a buy that could take cash below
//! zero, and a fill that does (unless margin is allowed); a limit price off the tick grid; an
//! order for a HOLD item, for a symbol not in the plan, on the wrong side, or under an id that
//! is not a Tranche id; a cancel or replace of an order Tranche did not place for a watched
//! plan; an order for a plan already completed; a sell of more than is available; a sale of
//! nothing held (short); a client order id used again for anything but the identical re-send of
//! a request whose answer was lost; an order or replace sent while the market is closed (it
//! would wait for the next session and trade there at prices the plan never saw); and, reported
//! by the harness, a ledger that disagrees with the broker.
//!
//! Invariants: the referee never changes what the broker does; every violation is recorded with
//! the simulated time and a readable detail; an order is flagged at most once per kind.

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;
use tranche_domain::{
    tick::is_on_tick, ClientOrderId, OrderAmount, OrderRequest, OrderType, Price, RebalancePlan, ReplaceRequest, Side,
    Symbol, Timestamp,
};

use crate::core::Sim;
use crate::tally::Tally;

/// A kind of broken promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    /// A second order for a plan item while another may still work.
    TwoWorkingOrders,
    /// A buy sent while a sell order of the same plan was not final, or a sell (new or by
    /// replace) sent once the plan's buys had begun: the sells come first.
    BuyBeforeSellsFinal,
    /// A buy that could take cash below zero, or a fill that did (margin used).
    MarginUsed,
    /// A limit price off the tick grid.
    OffTickPrice,
    /// An order for a HOLD item, a symbol not in the plan, the wrong side, or a foreign id.
    OrderOutsidePlan,
    /// A cancel or replace of an order Tranche did not place for the watched plan.
    ForeignOrderTouched,
    /// An order for a plan the ledger already holds as completed.
    CompletedPlanOrdered,
    /// A sell of more than the position's available quantity.
    Oversell,
    /// A sell with nothing held.
    ShortSale,
    /// A client order id used again.
    ClientOrderIdReused,
    /// The ledger's orders or fills differ from the broker's.
    LedgerMismatch,
    /// An order or replace sent while the regular session is closed: the broker queues it for
    /// the next open, where it would trade at prices the plan never saw.
    OrderWhileClosed,
}

impl ViolationKind {
    /// Every kind, in report order.
    pub const ALL: [ViolationKind; 12] = [
        Self::TwoWorkingOrders,
        Self::BuyBeforeSellsFinal,
        Self::MarginUsed,
        Self::OffTickPrice,
        Self::OrderOutsidePlan,
        Self::ForeignOrderTouched,
        Self::CompletedPlanOrdered,
        Self::Oversell,
        Self::ShortSale,
        Self::ClientOrderIdReused,
        Self::LedgerMismatch,
        Self::OrderWhileClosed,
    ];

    /// The stable `snake_case` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::TwoWorkingOrders => "two_working_orders",
            Self::BuyBeforeSellsFinal => "buy_before_sells_final",
            Self::MarginUsed => "margin_used",
            Self::OffTickPrice => "off_tick_price",
            Self::OrderOutsidePlan => "order_outside_plan",
            Self::ForeignOrderTouched => "foreign_order_touched",
            Self::CompletedPlanOrdered => "completed_plan_ordered",
            Self::Oversell => "oversell",
            Self::ShortSale => "short_sale",
            Self::ClientOrderIdReused => "client_order_id_reused",
            Self::LedgerMismatch => "ledger_mismatch",
            Self::OrderWhileClosed => "order_while_closed",
        }
    }
}

/// One breach, as seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// What was broken.
    pub kind: ViolationKind,
    /// Simulated time of the request (or event) that broke it.
    pub at: Timestamp,
    /// What happened, for a person.
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}: {}", self.kind.name(), self.at.format("%H:%M:%S%.3f"), self.detail)
    }
}

/// `violations` by kind, every kind listed (zero included).
pub fn count_violations(violations: &[Violation]) -> Tally {
    let mut tally = Tally::default();
    for kind in ViolationKind::ALL {
        tally.list(kind.name());
    }
    for v in violations {
        tally.hit(v.kind.name());
    }
    tally
}

/// A plan the referee holds Tranche to.
#[derive(Debug, Clone)]
struct WatchedPlan {
    plan_id: String,
    /// Each item's side; `None` for HOLD.
    items: BTreeMap<Symbol, Option<Side>>,
    completed: bool,
    /// The plan's first buy (new or by replace) and when it was sent.
    first_buy: Option<(ClientOrderId, Timestamp)>,
}

/// The observer. Owned by the simulator; see the module header.
#[derive(Debug, Default)]
pub struct Referee {
    /// Watched plans by their client-order-id tag.
    plans: BTreeMap<String, WatchedPlan>,
    allow_margin: bool,
    violations: Vec<Violation>,
    /// (kind, client order id) pairs already flagged.
    flagged: BTreeSet<(ViolationKind, ClientOrderId)>,
    /// Client order ids whose submit answer was lost: an identical re-send is allowed.
    uncertain: BTreeSet<ClientOrderId>,
    /// Replaces whose answer was lost, by the replacement's id: an identical re-send (same
    /// order, same request) is allowed.
    uncertain_replaces: BTreeMap<ClientOrderId, (usize, ReplaceRequest)>,
}

impl Referee {
    /// Holds every order of `plan` to the plan's items from now on.
    pub fn watch(&mut self, plan: &RebalancePlan) {
        let items = plan.items.iter().map(|i| (i.symbol.clone(), i.action.side())).collect();
        let tag = ClientOrderId::plan_tag(&plan.plan_id);
        self.plans.insert(tag, WatchedPlan { plan_id: plan.plan_id.clone(), items, completed: false, first_buy: None });
    }

    /// Lets buys use margin (for a run whose user opted into margin; plans have no such field
    /// yet, so the harness says so).
    pub fn allow_margin(&mut self, allow: bool) {
        self.allow_margin = allow;
    }

    /// The ledger holds `plan_id` as completed: any later order for it is a violation.
    pub fn plan_completed(&mut self, plan_id: &str) {
        if let Some(plan) = self.plans.get_mut(&ClientOrderId::plan_tag(plan_id)) {
            plan.completed = true;
        }
    }

    /// Records a violation found outside the broker (e.g. the ledger compared with it).
    pub fn report(&mut self, kind: ViolationKind, at: Timestamp, detail: impl Into<String>) {
        self.violations.push(Violation { kind, at, detail: detail.into() });
    }

    /// Every violation seen, in order.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Violations by kind (every kind listed, zero included).
    pub fn counts(&self) -> Tally {
        count_violations(&self.violations)
    }

    fn flag(&mut self, kind: ViolationKind, id: &ClientOrderId, at: Timestamp, detail: String) {
        if self.flagged.insert((kind, id.clone())) {
            self.report(kind, at, detail);
        }
    }

    /// The watched plan an id belongs to, with the item's symbol.
    fn plan_of(&self, id: &ClientOrderId) -> Option<(&WatchedPlan, Symbol)> {
        let derived = id.parse_derived()?;
        self.plans.get(&derived.plan_tag).map(|p| (p, derived.symbol))
    }

    /// The answer to the submit of `id` was lost (timeout, 5xx after applying): resending the
    /// identical request under the same id is how a client finds out, and is allowed.
    pub(crate) fn answer_lost(&mut self, id: &ClientOrderId) {
        self.uncertain.insert(id.clone());
    }

    /// The answer to a replace of order `old` was lost: re-sending it identically is allowed.
    pub(crate) fn replace_answer_lost(&mut self, old: usize, req: &ReplaceRequest) {
        self.uncertain_replaces.insert(req.client_order_id.clone(), (old, req.clone()));
    }
}

/// The plan item an order belongs to: its plan tag and symbol (Tranche ids only).
fn item_key(id: &ClientOrderId) -> Option<(String, Symbol)> {
    id.parse_derived().map(|d| (d.plan_tag, d.symbol))
}

impl Sim {
    /// The referee (read its violations).
    pub fn referee(&self) -> &Referee {
        &self.referee
    }

    /// The referee (watch a plan, mark it completed, report a ledger mismatch).
    pub fn referee_mut(&mut self) -> &mut Referee {
        &mut self.referee
    }

    /// Judges a submit as it arrives, before any fault or validation decides its fate.
    pub(crate) fn judge_submit(&mut self, req: &OrderRequest) {
        let (now, id) = (self.now, req.client_order_id.clone());
        if let Some(existing) = self.by_client.get(&id).copied() {
            let o = &self.orders[existing].order;
            let identical = o.symbol == req.symbol
                && o.side == req.side
                && o.order_type == req.order_type
                && o.time_in_force == req.time_in_force
                && o.limit_price == req.limit_price
                && o.qty.map(OrderAmount::Qty).or(o.notional.map(OrderAmount::Notional)) == Some(req.amount);
            if !(identical && self.referee.uncertain.contains(&id)) {
                let detail = format!("{id} sent again while the broker holds it ({})", o.status);
                self.referee.flag(ViolationKind::ClientOrderIdReused, &id, now, detail);
            }
            // The broker refuses an id it holds before anything else: the request can neither
            // trade nor hold cash or shares, so it is judged as a reuse only.
            return;
        }
        // An id whose first request's answer was lost and that the broker has not created yet
        // (it may still): only that identical request may go again under it. Another one would
        // be created in its place, or beside a late creation, whatever the timing.
        let late_other = self.late.iter().any(|l| !l.created && l.request.client_order_id == id && l.request != *req);
        if late_other {
            let detail = format!("{id} sent again with another request while the broker may still create the first");
            self.referee.flag(ViolationKind::ClientOrderIdReused, &id, now, detail);
        }
        self.judge_price(&id, req.limit_price);
        self.judge_session(&id, "order");
        self.judge_plan_membership(req);
        self.judge_phases(&id, req.side);
        if req.side == Side::Sell {
            let estimate = match req.amount {
                OrderAmount::Qty(q) => q.get(),
                OrderAmount::Notional(n) => {
                    let bid = self.true_quote(&req.symbol).map_or(Decimal::ZERO, |q| q.bid.get());
                    n.get().checked_div(bid).unwrap_or(Decimal::MAX)
                }
            };
            self.judge_sell(&id, &req.symbol, estimate, None);
        } else {
            self.judge_buy(req);
        }
        self.judge_second_order(&id, None);
    }

    /// Judges a replace as it arrives.
    pub(crate) fn judge_replace(&mut self, old: usize, req: &ReplaceRequest) {
        let now = self.now;
        let old_order = self.orders[old].order.clone();
        self.judge_touch(&old_order.client_order_id, "replace");
        let resend = self.referee.uncertain_replaces.get(&req.client_order_id) == Some(&(old, req.clone()));
        if self.by_client.contains_key(&req.client_order_id) && !resend {
            let detail = format!("replace of {} under the used id {}", old_order.client_order_id, req.client_order_id);
            self.referee.flag(ViolationKind::ClientOrderIdReused, &req.client_order_id, now, detail);
        }
        self.judge_price(&req.client_order_id, req.limit_price);
        self.judge_session(&req.client_order_id, "replace");
        self.judge_replacement_membership(&old_order, &req.client_order_id);
        self.judge_phases(&req.client_order_id, old_order.side);
        if crate::orders::replace_refused_in(old_order.status).is_some() || self.orders[old].cancel_pending {
            // A replace of a closed order (it filled or was canceled meanwhile), or of one the
            // broker cannot replace yet, commits nothing: the broker refuses it whatever it asks.
            return;
        }
        let qty = req.qty.map_or(self.orders[old].qty, tranche_domain::Qty::get);
        match old_order.side {
            Side::Sell => {
                let others_leaves = self.orders[old].leaves();
                self.judge_sell(&req.client_order_id, &old_order.symbol, qty, Some(others_leaves));
            }
            Side::Buy => {
                let limit = req.limit_price.or(old_order.limit_price);
                // The replacement is a new order for `qty` (what the old one filled stays filled).
                let cost = self.buy_cost(&old_order.symbol, old_order.order_type, limit, qty);
                let held = self.orders[old].leaves() * self.orders[old].reserve_price;
                self.judge_cash(&req.client_order_id, cost, held);
            }
        }
        self.judge_second_order(&req.client_order_id, Some(old));
    }

    /// Sells first, over the whole plan and not only against the sells working at the moment:
    /// once a buy of a watched plan was sent, any sell of it (a new order or a replace) is the
    /// phases out of order, whatever is working then (a sell sent in the gap of a re-peg, or
    /// retried after the buys began, passed the check at the buy).
    fn judge_phases(&mut self, id: &ClientOrderId, side: Side) {
        let now = self.now;
        let Some(derived) = id.parse_derived() else { return };
        let Some(plan) = self.referee.plans.get_mut(&derived.plan_tag) else { return };
        match (side, plan.first_buy.clone()) {
            (Side::Buy, None) => plan.first_buy = Some((id.clone(), now)),
            (Side::Sell, Some((buy, at))) => {
                let detail = format!("sell {id} sent after the plan's buy {buy} at {}", at.format("%H:%M:%S%.3f"));
                self.referee.flag(ViolationKind::BuyBeforeSellsFinal, id, now, detail);
            }
            _ => {}
        }
    }

    /// The replacement's id must name the same plan item as the order it replaces, of a plan
    /// not yet completed.
    fn judge_replacement_membership(&mut self, old: &tranche_domain::Order, id: &ClientOrderId) {
        let now = self.now;
        let Some(derived) = id.parse_derived() else {
            let detail = format!("replace of {} under {id}, not a Tranche client order id", old.client_order_id);
            self.referee.flag(ViolationKind::OrderOutsidePlan, id, now, detail);
            return;
        };
        let Some(plan) = self.referee.plans.get(&derived.plan_tag) else { return };
        let completed = plan.completed.then(|| format!("replace {id} sent for completed plan {}", plan.plan_id));
        if derived.symbol != old.symbol
            || derived.side != old.side
            || old.client_order_id.parse_derived().map(|d| d.plan_tag) != Some(derived.plan_tag)
        {
            let detail = format!("replace of {} under {id}, which names another item", old.client_order_id);
            self.referee.flag(ViolationKind::OrderOutsidePlan, id, now, detail);
        }
        if let Some(detail) = completed {
            self.referee.flag(ViolationKind::CompletedPlanOrdered, id, now, detail);
        }
    }

    /// An order (or replace) of a watched plan must not reach the broker while the session is
    /// closed: it would rest until the next open.
    fn judge_session(&mut self, id: &ClientOrderId, what: &str) {
        let now = self.now;
        if self.referee.plan_of(id).is_none() || self.calendar.is_open(now) {
            return;
        }
        let detail =
            format!("{what} {id} sent while the market is closed (it opens at {})", self.calendar.next_open(now));
        self.referee.flag(ViolationKind::OrderWhileClosed, id, now, detail);
    }

    /// Judges a cancel as it arrives.
    pub(crate) fn judge_cancel(&mut self, target: usize) {
        let id = self.orders[target].order.client_order_id.clone();
        self.judge_touch(&id, "cancel");
    }

    /// Judges a fill just booked: a buy that leaves cash below zero used margin.
    pub(crate) fn judge_fill(&mut self, id: &ClientOrderId, side: Side) {
        let cash = self.account.cash;
        if side == Side::Buy && cash < Decimal::ZERO && !self.referee.allow_margin && self.referee.plan_of(id).is_some()
        {
            let detail = format!("a fill of {id} left cash at {cash}");
            // One finding for an order's fills, apart from its attempt's.
            let key = ClientOrderId::from_broker(format!("{id}#fills"));
            self.referee.flag(ViolationKind::MarginUsed, &key, self.now, detail);
        }
    }

    /// Judges an order the broker creates late (its submit was answered with a timeout).
    pub(crate) fn judge_late_creation(&mut self, id: &ClientOrderId) {
        self.judge_second_order(id, None);
    }

    fn judge_price(&mut self, id: &ClientOrderId, limit: Option<Price>) {
        if let Some(price) = limit.filter(|p| p.is_positive() && !is_on_tick(*p)) {
            let detail = format!("{id} priced at {price}, off the tick grid");
            self.referee.flag(ViolationKind::OffTickPrice, id, self.now, detail);
        }
    }

    fn judge_plan_membership(&mut self, req: &OrderRequest) {
        let (now, id) = (self.now, &req.client_order_id);
        let Some(derived) = id.parse_derived() else {
            let detail = format!("{id} for {} is not a Tranche client order id", req.symbol);
            self.referee.flag(ViolationKind::OrderOutsidePlan, id, now, detail);
            return;
        };
        let Some(plan) = self.referee.plans.get(&derived.plan_tag) else { return };
        let problem = if derived.symbol == req.symbol {
            match plan.items.get(&req.symbol) {
                None => Some(format!("{id}: {} is not in plan {}", req.symbol, plan.plan_id)),
                Some(None) => Some(format!("{id}: {} is a HOLD item of plan {}", req.symbol, plan.plan_id)),
                Some(Some(side)) if *side != req.side => {
                    Some(format!("{id}: {} on the {} side of a {} item", req.symbol, req.side, side))
                }
                Some(Some(_)) => None,
            }
        } else {
            Some(format!("{id} names {} but orders {}", derived.symbol, req.symbol))
        };
        let completed = plan.completed.then(|| format!("{id} sent for completed plan {}", plan.plan_id));
        if let Some(detail) = problem {
            self.referee.flag(ViolationKind::OrderOutsidePlan, id, now, detail);
        }
        if let Some(detail) = completed {
            self.referee.flag(ViolationKind::CompletedPlanOrdered, id, now, detail);
        }
    }

    /// A sell of `qty` (replacing an order that holds `replacing` of the available shares).
    fn judge_sell(&mut self, id: &ClientOrderId, symbol: &Symbol, qty: Decimal, replacing: Option<Decimal>) {
        let held = self.account.qty(symbol);
        if held <= Decimal::ZERO {
            let detail = format!("{id} sells {qty} {symbol} with nothing held");
            self.referee.flag(ViolationKind::ShortSale, id, self.now, detail);
            return;
        }
        let available = held - self.held_for_sells(symbol) + replacing.unwrap_or(Decimal::ZERO);
        if qty > available {
            let detail = format!("{id} sells {qty} {symbol} with {available} available");
            self.referee.flag(ViolationKind::Oversell, id, self.now, detail);
        }
    }

    fn judge_buy(&mut self, req: &OrderRequest) {
        let id = &req.client_order_id;
        if let Some((tag, _)) = item_key(id) {
            let working_sell = self
                .open
                .iter()
                .map(|&i| &self.orders[i].order)
                .find(|o| o.side == Side::Sell && item_key(&o.client_order_id).is_some_and(|(t, _)| t == tag));
            let late_sell = self.late.iter().find(|l| {
                !l.created
                    && l.request.side == Side::Sell
                    && !self.by_client.contains_key(&l.request.client_order_id)
                    && item_key(&l.request.client_order_id).is_some_and(|(t, _)| t == tag)
            });
            let detail = match (working_sell, late_sell) {
                (Some(sell), _) => {
                    Some(format!("{id} sent while the sell {} is {}", sell.client_order_id, sell.status))
                }
                (None, Some(l)) => {
                    Some(format!("{id} sent while the sell {} is about to be created", l.request.client_order_id))
                }
                (None, None) => None,
            };
            if let Some(detail) = detail {
                self.referee.flag(ViolationKind::BuyBeforeSellsFinal, id, self.now, detail);
            }
        }
        let cost = match req.amount {
            OrderAmount::Notional(n) => n.get(),
            OrderAmount::Qty(q) => self.buy_cost(&req.symbol, req.order_type, req.limit_price, q.get()),
        };
        self.judge_cash(id, cost, Decimal::ZERO);
    }

    /// What `qty` shares cost at the limit (or, for a market order, at the ask).
    /// What a buy of `qty` holds, as the broker reserves it: its limit, or for a market order
    /// the ask plus Alpaca's collar (a symbol without a market yet: its starting price, so
    /// that judging never creates a market).
    fn buy_cost(&self, symbol: &Symbol, order_type: OrderType, limit: Option<Price>, qty: Decimal) -> Decimal {
        let price = match (order_type, limit, self.symbols.get(symbol)) {
            (OrderType::Limit, Some(l), _) => l.get(),
            (_, _, Some(&slot)) => self.reserve_price(slot, order_type, limit),
            _ if self.is_known(symbol) => {
                let start = crate::universe::AssetProfile::derive(&self.config, symbol).start_micros;
                Decimal::new(start, 6) * tranche_domain::MARKET_BUY_COLLAR
            }
            _ => Decimal::ZERO,
        };
        qty.checked_mul(price).unwrap_or(Decimal::MAX)
    }

    /// A buy costing `cost` on top of what open buys hold (as the broker holds it: the larger of
    /// an order and its pending replacement), less `released`, what it replaces.
    fn judge_cash(&mut self, id: &ClientOrderId, cost: Decimal, released: Decimal) {
        if self.referee.allow_margin || self.referee.plan_of(id).is_none() {
            return;
        }
        let committed = self.reserved();
        let cash = self.account.cash;
        let need = cost.saturating_add(committed).saturating_sub(released);
        if need > cash {
            let detail = format!("{id} would commit {need} with {cash} cash (margin; itself {cost}, open buys {committed}, released {released})");
            self.referee.flag(ViolationKind::MarginUsed, id, self.now, detail);
        }
    }

    /// An order that would be a second possibly-working order of its item (`replacing`: the
    /// order a replace supersedes, which may work alongside until the replace lands).
    fn judge_second_order(&mut self, id: &ClientOrderId, replacing: Option<usize>) {
        let Some(key) = item_key(id) else { return };
        let other = self.open.iter().copied().filter(|&i| Some(i) != replacing).find(|&i| {
            let o = &self.orders[i].order;
            o.client_order_id != *id && item_key(&o.client_order_id).as_ref() == Some(&key)
        });
        // A late order whose id a re-send has taken meanwhile will never be created.
        let pending = self.late.iter().find(|l| {
            !l.created
                && l.request.client_order_id != *id
                && !self.by_client.contains_key(&l.request.client_order_id)
                && item_key(&l.request.client_order_id).as_ref() == Some(&key)
        });
        let detail = match (other, pending) {
            (Some(i), _) => {
                let o = &self.orders[i].order;
                Some(format!("{id} while {} is {}", o.client_order_id, o.status))
            }
            (None, Some(l)) => Some(format!("{id} while {} is about to be created", l.request.client_order_id)),
            (None, None) => None,
        };
        if let Some(detail) = detail {
            self.referee.flag(ViolationKind::TwoWorkingOrders, id, self.now, detail);
        }
    }

    /// A cancel or replace of `id`: only orders Tranche placed for a watched plan may be touched.
    fn judge_touch(&mut self, id: &ClientOrderId, what: &str) {
        let ours = match id.parse_derived() {
            None => false,
            Some(d) => self.referee.plans.is_empty() || self.referee.plans.contains_key(&d.plan_tag),
        };
        if !ours {
            let detail = format!("{what} of {id}, an order Tranche did not place for this plan");
            self.referee.flag(ViolationKind::ForeignOrderTouched, id, self.now, detail);
        }
    }
}
