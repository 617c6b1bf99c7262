//! Working one item: placing child orders, re-pegging by replace (or cancel-then-new), escalating,
//! reacting to answers, trade updates and timers, and finishing.
//!
//! Invariants: a submit whose outcome is unknown is looked up by client order id before anything
//! else is sent for the item (never resent blindly); a 429 re-sends the same request with the
//! same client order id (it was not applied); every new attempt gets a new client order id;
//! exposure at the broker never knowingly exceeds what remains to trade (an over-exposed child is
//! cancelled and replaced by one for the remainder); quantity already filled is never re-sent.

use rust_decimal::Decimal;
use tranche_broker::{BrokerError, RejectReason};
use tranche_domain::{
    BrokerOrderId, ClientOrderId, ItemOutcome, Order, OrderRequest, OrderStatus, OrderType, Price, ReplaceRequest,
    Side, Timestamp, TradeEvent, TradeUpdate, MARKET_BUY_COLLAR,
};

use super::budget::Need;
use super::item::{CancelAnswer, Child, ChildState, FillSource, Pending, Stage};
use super::phases::ESCALATE_BEFORE_CLOSE;
use super::{EngineCore, RunPhase};
use crate::config::{Escalation, SmartPricing, Strategy};
use crate::events::ProgressEvent;
use crate::io::{Command, TimerId};
use crate::predecessor;
use crate::pricing::{adaptive_aggressiveness, aggressiveness_at, escalation_limit, step_limit};

/// `then` after `first` when there is one (`first; then`): reasons said one after another.
fn joined(first: Option<String>, then: String) -> String {
    match first {
        Some(first) => format!("{first}; {then}"),
        None => then,
    }
}

/// What the next order of an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OrderPlan {
    Limit(Price),
    Market,
}

/// The most items still to start whose quotes are asked for beside one that needs a REST quote.
const QUOTE_PREFETCH: usize = 10;

impl EngineCore {
    /// The order for the item's current step, or `None` when a REST quote is needed first.
    fn order_plan(&self, i: usize, now: Timestamp, allow_fallback: bool) -> Option<(OrderPlan, bool)> {
        let item = &self.items[i];
        let side = item.side.unwrap_or(Side::Buy);
        let step = item.step;
        let steps = self.config.max_repegs;
        // The escalation order, protected from `far` (the far side, or what stands for it).
        let escalation = |far: Option<Price>| match (self.config.escalation, far) {
            (Escalation::ProtectedLimit, Some(far)) if far.is_positive() => {
                OrderPlan::Limit(escalation_limit(side, far, self.config.protection_band))
            }
            _ => OrderPlan::Market,
        };
        let sane = self.sane_quote(&item.item.symbol, now);
        let wide = if sane.is_none() { self.wide_quote(&item.item.symbol, now) } else { None };
        // `smart`'s escalation: from a sane quote, else at the far side of a spread too wide to
        // pay a band past (no REST quote needed).
        let escalate = || match (sane, wide) {
            (Some(q), _) => Some((escalation(Some(q.far_side(side))), true)),
            (None, Some(q)) => Some((OrderPlan::Limit(step_limit(side, q, Decimal::ONE)), true)),
            (None, None) => None,
        };
        let (wants_quote, planned) = match self.config.strategy {
            Strategy::Market => (false, Some((OrderPlan::Market, true))),
            // The budget sets the pace: one request per item, at once.
            Strategy::Smart if self.budget_bound => (true, escalate()),
            Strategy::Predecessor => match step {
                0 => {
                    (true, sane.map(|q| (OrderPlan::Limit(predecessor::first_limit(side, q, item.remaining())), false)))
                }
                1 => (true, sane.map(|q| (OrderPlan::Limit(predecessor::repeg_limit(side, q)), false))),
                _ => (false, Some((OrderPlan::Market, true))),
            },
            Strategy::Smart if self.config.smart_pricing == SmartPricing::Adaptive => {
                let elapsed = item.working_since.map_or(std::time::Duration::ZERO, |since| {
                    (now - since).to_std().unwrap_or(std::time::Duration::ZERO)
                });
                if elapsed >= self.config.working_horizon || self.closing_soon(now) {
                    (true, escalate())
                } else if let Some(q) = wide {
                    // Too wide to pay into: join the near side and wait for it to narrow.
                    (true, Some((OrderPlan::Limit(step_limit(side, q, Decimal::ZERO)), false)))
                } else {
                    let ends = (self.config.initial_aggressiveness.get(), self.config.final_aggressiveness.get());
                    let weight = self.config.imbalance_weight.get();
                    let horizon = self.config.working_horizon;
                    (
                        true,
                        sane.map(|q| {
                            let a = adaptive_aggressiveness(elapsed, horizon, ends, weight, side, q);
                            (OrderPlan::Limit(step_limit(side, q, a)), false)
                        }),
                    )
                }
            }
            Strategy::Smart if step > steps || self.closing_soon(now) => {
                (true, sane.map(|q| (escalation(Some(q.far_side(side))), true)))
            }
            Strategy::Smart => {
                let a = aggressiveness_at(
                    step,
                    steps,
                    self.config.initial_aggressiveness.get(),
                    self.config.final_aggressiveness.get(),
                );
                (true, sane.map(|q| (OrderPlan::Limit(step_limit(side, q, a)), false)))
            }
        };
        match planned {
            Some(plan) => Some(plan),
            None if wants_quote && !allow_fallback => None,
            // The predecessor sends a market order when it has no quote (§3.8).
            None if self.config.strategy == Strategy::Predecessor => Some((OrderPlan::Market, true)),
            // No sane quote even from REST: the escalation order, protected from the last known
            // far side when there is one, else from what is known of the price (a one-sided
            // quote's other side, the item's reference): a limit a band beyond it, never an
            // unprotected market order while a price is known.
            None => {
                let last = self.quotes.get(&item.item.symbol);
                let known = |price: Option<Price>| price.filter(|p| p.is_positive());
                let anchor = known(last.map(|q| q.far_side(side)))
                    .or_else(|| known(last.map(|q| q.near_side(side))))
                    .or(item.reference);
                Some((escalation(anchor), true))
            }
        }
    }

    /// Item `i` needs a REST quote to start: the next items of its phase still to start that
    /// have no usable quote either (past the feed's symbol limit, or stale while the phase
    /// waits for the request budget) ask in the same step, so that one multi-symbol request
    /// prices them all (at most [`QUOTE_PREFETCH`] more; fresh for the next few seconds, as
    /// items start one after another).
    fn prefetch_quotes(&self, i: usize, now: Timestamp, out: &mut Vec<Command>) {
        let side = self.items[i].side;
        let next = self
            .items
            .iter()
            .enumerate()
            .skip(i + 1)
            .filter(|(_, item)| item.side == side && item.stage == Stage::Ready)
            .filter(|(_, item)| {
                self.sane_quote(&item.item.symbol, now).is_none() && self.wide_quote(&item.item.symbol, now).is_none()
            })
            .take(QUOTE_PREFETCH);
        for (j, item) in next {
            out.push(Command::FetchQuote { item: j, symbol: item.item.symbol.clone() });
        }
    }

    /// Shares of the next order of item `i` for `remaining`, priced by `plan`: whole shares of a
    /// non-fractionable asset, and for a buy no more than what it may still commit buys at that
    /// price: its allotment, or more of the cash the other buys leave unused (a re-peg or
    /// escalation that pays more buys fewer shares, never on margin).
    fn order_qty(&self, i: usize, remaining: Decimal, plan: OrderPlan) -> Decimal {
        let item = &self.items[i];
        let round = |q: Decimal| self.tradable_qty(i, q);
        if item.item.is_liquidation() && item.side == Some(Side::Sell) {
            return remaining;
        }
        let qty = round(remaining);
        let (Some(Side::Buy), Some(cap)) = (item.side, item.spend_cap) else { return qty };
        let price = match plan {
            OrderPlan::Limit(p) => p.get(),
            // Alpaca holds a market buy at the ask plus its collar.
            OrderPlan::Market => {
                let ask = self.quotes.get(&item.item.symbol).map(|q| q.ask.get()).filter(|a| *a > Decimal::ZERO);
                ask.or(item.reference.map(Price::get)).unwrap_or(Decimal::ZERO).saturating_mul(MARKET_BUY_COLLAR)
            }
        };
        if price <= Decimal::ZERO {
            return qty;
        }
        // Its own allotment at least; more when the other buys leave some of the cash unused.
        let own = cap.saturating_sub(item.filled_notional);
        let left = self.spend_left(i).map_or(own, |pool| pool.max(own)).max(Decimal::ZERO);
        qty.min(round(left.checked_div(price).unwrap_or(Decimal::ZERO)))
    }

    /// `qty` as the broker takes it for item `i`: whole shares of a non-fractionable asset, nine
    /// decimals of a fractionable one.
    fn tradable_qty(&self, i: usize, qty: Decimal) -> Decimal {
        if self.items[i].fractionable() {
            qty.trunc_with_scale(9)
        } else {
            qty.trunc()
        }
    }

    /// What buy item `i` may still commit: the buys' cash less what every other buy holds (a
    /// finished one what it spent; one still to trade or trading the larger of its allotment and
    /// what it spent and has open), less what `i` spent. An item whose price rose may use what
    /// the others left unused, never more than the cash.
    fn spend_left(&self, i: usize) -> Option<Decimal> {
        let cash = self.buy_cash?;
        let mut held = Decimal::ZERO;
        for (j, other) in self.items.iter().enumerate() {
            if j == i || other.side != Some(Side::Buy) {
                continue;
            }
            let spent = other.filled_notional;
            let hold = if other.stage.is_done() {
                spent
            } else {
                let open: Decimal = (0..other.children.len())
                    .filter(|&c| other.children[c].is_open() && !other.is_superseded(c))
                    .map(|c| {
                        let child = &other.children[c];
                        let price = child.limit.map_or_else(
                            || other.reference.map_or(Decimal::ZERO, Price::get).saturating_mul(MARKET_BUY_COLLAR),
                            Price::get,
                        );
                        child.leaves().saturating_mul(price)
                    })
                    .fold(Decimal::ZERO, Decimal::saturating_add);
                other.spend_cap.unwrap_or(Decimal::ZERO).max(spent.saturating_add(open))
            };
            held = held.saturating_add(hold);
        }
        Some(cash.saturating_sub(held).saturating_sub(self.items[i].filled_notional))
    }

    /// Sends the item's next order for what remains (or finishes the item).
    pub(super) fn place_next(&mut self, i: usize, now: Timestamp, out: &mut Vec<Command>) {
        self.place(i, now, false, out);
    }

    /// Like [`Self::place_next`]; with `quote_fetched` the REST quote was already tried, so an
    /// unusable quote leads to the escalation order instead of another fetch.
    pub(super) fn place(&mut self, i: usize, now: Timestamp, quote_fetched: bool, out: &mut Vec<Command>) {
        // Never a new order while the stream is down, while an earlier one may still be live
        // (a recovered or uncertain order is resolved first), or after the run was aborted.
        if !self.items[i].stage.is_working()
            || self.items[i].is_busy()
            || !self.stream_up
            || self.aborted.is_some()
            || self.items[i].working_child().is_some()
        {
            return;
        }
        if self.items[i].is_complete(self.min_notional()) {
            // Complete by the broker's counts: it ends once its executions are booked too (or
            // it stops waiting for them), which `after_change` sees to.
            return self.after_change(i, now, out);
        }
        if self.items[i].side == Some(Side::Sell) && self.sell_waits_for_its_last_cancel(i) {
            // Whether the last order ended by our cancel: its answer decides (it calls back).
            return;
        }
        if self.items[i].side == Some(Side::Sell) && self.items[i].position_check {
            // Its shares may have been sold outside the run since its last order: read them.
            self.items[i].wait_for(Some(Pending::Position));
            out.push(Command::FetchPosition { item: i, symbol: self.items[i].item.symbol.clone() });
            return;
        }
        let Some((plan, escalating)) = self.order_plan(i, now, quote_fetched) else {
            self.items[i].wait_for(Some(Pending::Quote));
            out.push(Command::FetchQuote { item: i, symbol: self.items[i].item.symbol.clone() });
            self.prefetch_quotes(i, now, out);
            return;
        };
        let qty = self.order_qty(i, self.items[i].remaining(), plan);
        let price = match plan {
            OrderPlan::Limit(p) => p.get(),
            OrderPlan::Market => self.items[i].reference.map_or(Decimal::ZERO, Price::get),
        };
        let worth = qty.saturating_mul(price);
        // A market order of an item with no known price (a liquidation sized without a quote)
        // has no worth to judge: the broker does.
        let too_small = self.items[i].fractionable()
            && !qty.fract().is_zero()
            && price > Decimal::ZERO
            && worth < self.min_notional();
        if (qty <= Decimal::ZERO || too_small) && self.items[i].executions_missing() {
            // It would end here, by what it spent: not before every execution the broker counts
            // is booked (the fill read `after_change` asked for comes back here).
            return;
        }
        if qty <= Decimal::ZERO {
            // Shares are left, but the budget buys none of them at this price.
            let reason = if self.tradable_qty(i, self.items[i].remaining()) > Decimal::ZERO {
                "the price rose beyond the buying power set aside for the item"
            } else {
                "remaining quantity is below one share"
            };
            return self.finish_item(i, self.outcome_of(i), Some(reason.into()), now, out);
        }
        // A fractional order worth less than the minimum is refused by the broker: when the
        // budget left (or what remains) buys less than that, the item ends here, said so.
        if too_small {
            let reason = format!(
                "the next order would be worth ${} at {price}, below the ${} minimum of a fractional order",
                worth.round_dp(2),
                self.min_notional()
            );
            return self.finish_item(i, self.outcome_of(i), Some(reason), now, out);
        }
        let client_order_id = self.client_id(i);
        let item = &mut self.items[i];
        // A re-peg that waited for the last order to reach the venue is not this order's.
        item.repeg_when_routed = false;
        item.working_since.get_or_insert(now);
        item.priced_at = Some(now);
        let limit_price = match plan {
            OrderPlan::Limit(p) => Some(p),
            OrderPlan::Market => None,
        };
        let request = OrderRequest::day(
            client_order_id.clone(),
            item.item.symbol.clone(),
            item.side.unwrap_or(Side::Buy),
            qty.into(),
            limit_price,
        );
        item.attempt = item.attempt.saturating_add(1);
        item.wait_for(Some(Pending::Submit));
        if escalating && !item.escalated() {
            out.push(Command::Emit(ProgressEvent::Escalated {
                symbol: item.item.symbol.clone(),
                limit: limit_price,
                at: now,
            }));
        }
        item.children.push(Child::sending(
            client_order_id,
            qty,
            limit_price,
            request.order_type,
            Some(request.clone()),
            None,
            now,
        ));
        if let Some(child) = item.children.last_mut() {
            child.escalation = escalating;
        }
        let arrival_mid = self.items[i].arrival_mid;
        out.push(Command::Submit { item: i, request, arrival_mid });
    }

    pub(super) fn on_submitted(
        &mut self,
        i: usize,
        cid: &ClientOrderId,
        result: Result<Order, BrokerError>,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) {
        let Some(c) = self.items.get(i).and_then(|item| item.child_by_client(cid)) else { return };
        match result {
            Ok(order) => {
                self.items[i].answered(c);
                self.adopt(i, c, &order, now, out);
                let child = &self.items[i].children[c];
                out.push(Command::Emit(ProgressEvent::OrderPlaced {
                    symbol: self.items[i].item.symbol.clone(),
                    qty: child.qty.into(),
                    limit: child.limit,
                    at: now,
                }));
                self.arm_repeg(i, now, out);
                // It may have filled (or ended) before the answer came: decide now, not at the
                // next re-peg.
                self.after_change(i, now, out);
            }
            Err(BrokerError::RateLimited { retry_after }) => {
                // Not applied: re-send the same request (same client order id) after the wait.
                self.items[i].children[c].state = ChildState::Resend;
                let at = Self::after(now, retry_after.unwrap_or(self.config.retry_wait));
                out.push(Command::SetTimer { id: TimerId::Retry(i), at });
            }
            Err(BrokerError::Transient { .. }) => {
                self.items[i].children[c].state = ChildState::Resend;
                out.push(Command::SetTimer { id: TimerId::Retry(i), at: Self::after(now, self.config.retry_wait) });
            }
            Err(BrokerError::Uncertain { message }) => {
                out.push(Command::Emit(ProgressEvent::Warning {
                    symbol: Some(self.items[i].item.symbol.clone()),
                    message: format!("submit of {cid}: outcome unknown ({message}); looking the order up"),
                    at: now,
                }));
                self.items[i].children[c].state = ChildState::Uncertain;
                out.push(Command::LookupClientId { item: i, client_order_id: cid.clone() });
            }
            Err(BrokerError::Rejected { reason: RejectReason::DuplicateClientOrderId, .. }) => {
                // The id exists already (an earlier run or a lost answer): adopt that order.
                self.items[i].children[c].state = ChildState::Uncertain;
                out.push(Command::LookupClientId { item: i, client_order_id: cid.clone() });
            }
            // Not for a re-send: the first copy may exist and hold the shares (the arm below).
            Err(BrokerError::Rejected { reason: RejectReason::InsufficientQty, .. })
                if self.items[i].side == Some(Side::Sell)
                    && !self.items[i].quantity_refused
                    && self.items[i].children[c].not_found == 0 =>
            {
                // Fewer shares available than the order asked (sold, or held by an order,
                // outside the run): sized again from the position, once (the predecessor
                // retried once with the quantity available).
                self.items[i].not_placed(c);
                self.items[i].quantity_refused = true;
                self.items[i].position_check = true;
                self.place_next(i, now, out);
            }
            Err(_) if self.items[i].children[c].not_found > 0 => {
                // A re-send refused: the first copy may still appear (and may be why it was
                // refused). It stays possibly live, looked up again after the wait.
                self.items[i].answered(c);
                self.items[i].children[c].state = ChildState::Uncertain;
                let failures = self.items[i].children[c].not_found;
                out.push(Command::SetTimer { id: TimerId::Retry(i), at: self.backoff(now, failures) });
            }
            Err(e) => {
                self.items[i].not_placed(c);
                let reason = format!("order refused: {e}");
                if self.items[i].filled.is_zero() {
                    self.finish_item(i, ItemOutcome::Failed, Some(reason), now, out);
                } else {
                    let outcome = self.outcome_of(i);
                    self.finish_item(i, outcome, Some(reason), now, out);
                }
            }
        }
    }

    /// A sell's last order ended without a cancel of ours the broker accepted (cancelled by the
    /// broker or by the owner closing the position, our cancel refused as too late, rejected,
    /// expired), and no position was read since: the next order waits for a read
    /// (`position_check`). True while that order's end waits for our cancel's answer, which
    /// decides. Judged here, where every path to a new order passes (a stream's return, a
    /// timer, a phase), not where the order ended.
    fn sell_waits_for_its_last_cancel(&mut self, i: usize) -> bool {
        let item = &self.items[i];
        let Some(c) = item.children.iter().rposition(|c| c.state != ChildState::NotPlaced) else { return false };
        let child = &item.children[c];
        let ended =
            matches!(child.state, ChildState::Final(s) if s != OrderStatus::Filled && s != OrderStatus::Replaced);
        if !ended || c < item.position_read_covers {
            return false;
        }
        match child.cancel {
            CancelAnswer::Awaiting => return true,
            CancelAnswer::NotSent | CancelAnswer::NotAccepted => self.items[i].position_check = true,
            CancelAnswer::Accepted => {}
        }
        false
    }

    /// The position read before a sell goes out again: what remains is capped at the shares
    /// available now (its target lowered, said in the result), the item ends when none are
    /// left, and the next order goes out. A failed read is tried again after the retry wait.
    pub(super) fn on_item_position(
        &mut self,
        i: usize,
        result: Result<Option<tranche_domain::Position>, BrokerError>,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) {
        let Some(item) = self.items.get_mut(i) else { return };
        if item.pending() != Some(Pending::Position) {
            return;
        }
        item.wait_for(None);
        let Ok(position) = result else {
            out.push(Command::SetTimer { id: TimerId::Repeg(i), at: Self::after(now, self.config.retry_wait) });
            return;
        };
        item.position_check = false;
        item.position_read_covers = item.children.len();
        let available = position.as_ref().map_or(Decimal::ZERO, |p| p.qty_available.get().max(Decimal::ZERO));
        let remaining = item.remaining();
        if available < remaining {
            // Whole shares of a non-fractionable asset: the fraction is left, as a liquidation's.
            let sellable = self.tradable_qty(i, available);
            let item = &mut self.items[i];
            item.target = item.known_filled().saturating_add(sellable);
            if item.item.is_liquidation() {
                item.left_over = available - sellable;
            }
            let capped = format!(
                "capped at the {} shares available: the position changed after the plan was sized (shares sold, or held by orders, outside this run)",
                available.normalize()
            );
            item.shortfall = Some(joined(item.shortfall.take(), capped));
            item.position = position;
            if sellable.is_zero() {
                let outcome = self.outcome_of(i);
                let reason = format!("no shares of {} left to sell", self.items[i].item.symbol);
                return self.finish_item(i, outcome, Some(reason), now, out);
            }
        }
        self.place_next(i, now, out);
    }

    /// Merges a broker report of child `c` of item `i` (a submit's or replace's answer, a
    /// lookup, a trade update; possibly stale or out of order) into what is known of the order,
    /// and records the merged state in the ledger: the ledger never moves an order back to an
    /// earlier state because an old report arrived late.
    fn adopt(&mut self, i: usize, c: usize, order: &Order, now: Timestamp, out: &mut Vec<Command>) {
        let merged = match self.items[i].children[c].report.take() {
            Some(mut known) if known.id == order.id => {
                known.merge_report(order);
                known
            }
            _ => order.clone(),
        };
        self.record_order_to_ledger(&merged, now, out);
        let child = &mut self.items[i].children[c];
        child.broker_id = Some(merged.id.clone());
        child.reported_filled = child.reported_filled.max(merged.filled_qty.get());
        if let Some(q) = merged.qty {
            child.qty = q.get();
        }
        if child.replaces.is_none() {
            child.replaces.clone_from(&merged.replaces);
        }
        child.state = match &child.state {
            ChildState::Final(s) => ChildState::Final(*s),
            _ if merged.status.is_terminal() => ChildState::Final(merged.status),
            _ => ChildState::Live(merged.status),
        };
        let replaced = (merged.status == OrderStatus::Replaced).then(|| merged.clone());
        child.report = Some(merged);
        if let Some(order) = replaced {
            // However the news came (an update, a lookup, a read-back before a replace).
            self.follow_replacement(i, &order, out);
        }
    }

    fn arm_repeg(&self, i: usize, now: Timestamp, out: &mut Vec<Command>) {
        let at = match (self.config.strategy, self.loop_started_at) {
            // The replica's checks are the phase loop's, not the item's; past the last one, a
            // re-peg (an order sent late) goes at once to market.
            (Strategy::Predecessor, Some(start)) => predecessor::next_check(start, now).unwrap_or(now),
            // Adaptive: the next timer re-peg, or the horizon's end if sooner (the escalation
            // is on time).
            _ if self.config.is_adaptive() => {
                let next = Self::after(now, self.config.repeg_interval);
                match self.horizon_end(i) {
                    Some(end) if end > now => next.min(end),
                    _ => next,
                }
            }
            _ => Self::after(now, self.config.repeg_interval),
        };
        out.push(Command::SetTimer { id: TimerId::Repeg(i), at });
    }

    pub(super) fn on_repeg_timer(&mut self, i: usize, now: Timestamp, out: &mut Vec<Command>) {
        if self.items.get(i).is_none_or(|item| !item.stage.is_working()) {
            return;
        }
        // Not while a request is out, nor while the working order is being cancelled for the
        // next one (that one is priced when it goes), nor while the stream is down.
        if self.items[i].is_busy() || self.items[i].replacing_by_new() || !self.stream_up {
            // A replace creates a new order: not while the stream is down.
            out.push(Command::SetTimer { id: TimerId::Repeg(i), at: self.backoff(now, 0) });
            return;
        }
        let Some(c) = self.items[i].working_child() else {
            return self.place_next(i, now, out);
        };
        if !matches!(self.items[i].children[c].state, ChildState::Live(_)) {
            return;
        }
        // A market order is left to fill: there is no price to move, and cancelling it for
        // another would only churn (the predecessor's replica re-arms its timer at once once
        // its loop is over).
        if self.items[i].children[c].order_type == OrderType::Market {
            return;
        }
        // Whether the order has reached the venue is judged on the order read back just before
        // a replace leaves (`on_replace_cleared`), never on this view, which a lost `new`
        // update can leave at `accepted` for good.
        self.items[i].repeg_when_routed = false;
        if self.holds_through_wide_spread(i, now) {
            return self.arm_repeg(i, now, out);
        }
        // The budget first: the phase's first orders, then escalations, then re-pegs.
        if let Some(need) = self.budget_need(i, now) {
            if !self.affords(need, now, out) {
                let room = self.room_for(need, out);
                let mut at = self.budget.put_off(now, room);
                // A put-off re-peg comes back by the horizon's end at the latest: the escalation
                // is due then, whatever the re-peg waited for.
                if need == Need::Repeg {
                    if let Some(end) = self.horizon_end(i) {
                        at = at.min(end.max(now));
                    }
                }
                out.push(Command::SetTimer { id: TimerId::Repeg(i), at });
                return;
            }
        }
        if self.config.strategy == Strategy::Predecessor {
            if !self.predecessor_step(i, c, now) {
                return self.arm_repeg(i, now, out);
            }
        } else {
            self.items[i].step += 1;
        }
        if self.order_plan(i, now, false).is_none() {
            self.items[i].wait_for(Some(Pending::Quote));
            out.push(Command::FetchQuote { item: i, symbol: self.items[i].item.symbol.clone() });
            return;
        }
        self.continue_repeg(i, now, out);
    }

    /// Adaptive pricing: a quote moved item `i`'s target price past its working limit (toward
    /// the far side: the market left the order behind, or the sizes now lean against it), and
    /// the order was priced at least `min_repeg_gap` ago: re-price it now rather than at the
    /// timer. A target that moved back toward the near side waits for the timer (a request
    /// that buys nothing but a cheaper chance of a fill is not spent at once).
    pub(super) fn repeg_on_quote(&mut self, i: usize, now: Timestamp, out: &mut Vec<Command>) {
        let item = &self.items[i];
        if !item.stage.is_working() || item.is_busy() || item.replacing_by_new() || !self.stream_up {
            return;
        }
        let gap = chrono::Duration::from_std(self.config.min_repeg_gap).unwrap_or_default();
        if item.priced_at.is_some_and(|at| now - at < gap) {
            return;
        }
        let Some(c) = item.working_child() else { return };
        let child = &item.children[c];
        let (ChildState::Live(_), Some(limit), OrderType::Limit) = (&child.state, child.limit, child.order_type) else {
            return;
        };
        let Some((OrderPlan::Limit(target), false)) = self.order_plan(i, now, false) else { return };
        let further = match item.side.unwrap_or(Side::Buy) {
            Side::Buy => target > limit,
            Side::Sell => target < limit,
        };
        if further && self.worth_a_request(i, limit, target, now) && self.affords(Need::Repeg, now, out) {
            self.items[i].repeg_when_routed = false;
            self.items[i].step += 1;
            self.continue_repeg(i, now, out);
        }
    }

    /// Adaptive pricing keeps a working order as it is while the spread is too wide to price
    /// from (a re-peg would only move it back to the near side) and the horizon is not over.
    fn holds_through_wide_spread(&self, i: usize, now: Timestamp) -> bool {
        let item = &self.items[i];
        self.config.is_adaptive()
            && self.horizon_end(i).is_none_or(|end| now < end)
            && self.sane_quote(&item.item.symbol, now).is_none()
            && self.wide_quote(&item.item.symbol, now).is_some()
    }

    /// Adaptive pricing: when item `i`'s horizon ends (once its first order is out), or when
    /// `smart` escalates before the close if that comes first.
    fn horizon_end(&self, i: usize) -> Option<Timestamp> {
        let end = self.items[i].working_since.map(|since| Self::after(since, self.config.working_horizon))?;
        Some(self.escalation_before_close().map_or(end, |by_close| end.min(by_close)))
    }

    /// When `smart` escalates whatever still works, because the session closes soon.
    fn escalation_before_close(&self) -> Option<Timestamp> {
        self.close_at.map(|close| Self::before(close, ESCALATE_BEFORE_CLOSE))
    }

    /// True once the close is near enough for `smart` to escalate.
    fn closing_soon(&self, now: Timestamp) -> bool {
        self.escalation_before_close().is_some_and(|at| now >= at)
    }

    /// What the budget must allow for item `i`'s next re-peg: an escalation or a re-peg
    /// (`None` for the predecessor's replica, which knows no budget, and market orders).
    fn budget_need(&self, i: usize, now: Timestamp) -> Option<Need> {
        let item = &self.items[i];
        match (self.config.strategy, self.config.smart_pricing) {
            (Strategy::Smart, SmartPricing::Adaptive) => {
                let over = self.horizon_end(i).is_some_and(|end| now >= end);
                Some(if over { Need::Escalation } else { Need::Repeg })
            }
            (Strategy::Smart, SmartPricing::Schedule) => {
                let over = item.step >= self.config.max_repegs || self.closing_soon(now);
                Some(if over { Need::Escalation } else { Need::Repeg })
            }
            _ => None,
        }
    }

    /// Whether a re-peg from `limit` to `target` buys enough to spend a request on: any tick
    /// while more than half the budget is spare, else at least a quarter of the spread.
    fn worth_a_request(&mut self, i: usize, limit: Price, target: Price, now: Timestamp) -> bool {
        let half = usize::try_from(self.config.requests_per_minute / 2).unwrap_or(0);
        if self.config.requests_per_minute == 0 || self.budget.spare(now) > half {
            return true;
        }
        let Some(q) = self.quotes.get(&self.items[i].item.symbol) else { return true };
        let spread = (q.ask.get() - q.bid.get()).abs();
        (target.get() - limit.get()).abs() * Decimal::from(4) >= spread
    }

    /// The predecessor replica's check of item `i`'s working child `c` (§3.13, §3.14): at the
    /// loop's end everything goes to market; before it, an order at least `FILL_WAIT` old is
    /// re-pegged the first time and sent to market the second. Returns whether the step moved.
    fn predecessor_step(&mut self, i: usize, c: usize, now: Timestamp) -> bool {
        let last = self.loop_started_at.map(predecessor::loop_end);
        let item = &mut self.items[i];
        if last.is_none_or(|last| now >= last) {
            item.step = 2;
            return true;
        }
        let wait = chrono::Duration::from_std(predecessor::FILL_WAIT).unwrap_or_default();
        if now - item.children[c].created < wait {
            return false;
        }
        item.step = (item.step + 1).min(2);
        true
    }

    /// Re-prices the working child for the current step (the quote is known, or will not be).
    pub(super) fn continue_repeg(&mut self, i: usize, now: Timestamp, out: &mut Vec<Command>) {
        self.items[i].quote_answered();
        let Some(c) = self.items[i].working_child() else {
            return self.place(i, now, true, out);
        };
        let Some((plan, escalating)) = self.order_plan(i, now, true) else { return };
        let child = self.items[i].children[c].clone();
        let Some(order_id) = child.broker_id.clone() else { return };
        let remaining = self.order_qty(i, self.items[i].remaining(), plan);
        match plan {
            OrderPlan::Limit(price) if child.order_type == OrderType::Limit => {
                if child.limit == Some(price) {
                    return self.arm_repeg(i, now, out);
                }
                let fractional = !remaining.fract().is_zero() || !child.qty.fract().is_zero();
                let untouched = child.reported_filled.is_zero() && self.items[i].booked_for(&child.client_id).is_zero();
                let side = self.items[i].side.unwrap_or(Side::Buy);
                let marketable = self.marketable(i, price);
                // A replace races with fills of the order it replaces, and Alpaca's replacement
                // keeps the quantity sent, so a raced fill would be traded twice. Replace only an
                // untouched order with a non-marketable price, looked at again just before the
                // replace leaves (`on_replace_cleared`), so the race is only the network's;
                // otherwise cancel, then new. Alpaca cannot change a fractional quantity by
                // replace at all.
                if fractional || remaining.is_zero() || !untouched || marketable {
                    return self.cancel_then_new(i, c, now, out);
                }
                let client_order_id = self.client_id(i);
                let breaks = self.stream_breaks;
                let item = &mut self.items[i];
                item.attempt = item.attempt.saturating_add(1);
                item.priced_at = Some(now);
                item.breaks_at_replace = breaks;
                item.wait_for(Some(Pending::Replace));
                if escalating && !item.escalated() {
                    out.push(Command::Emit(ProgressEvent::Escalated {
                        symbol: item.item.symbol.clone(),
                        limit: Some(price),
                        at: now,
                    }));
                }
                item.children.push(Child::sending(
                    client_order_id.clone(),
                    remaining,
                    Some(price),
                    OrderType::Limit,
                    None,
                    Some(order_id.clone()),
                    now,
                ));
                if let Some(child) = item.children.last_mut() {
                    child.escalation = escalating;
                }
                let request = ReplaceRequest {
                    client_order_id,
                    qty: Some(remaining.into()),
                    limit_price: Some(price),
                    time_in_force: None,
                };
                let (symbol, side, arrival_mid) = (self.items[i].item.symbol.clone(), side, self.items[i].arrival_mid);
                out.push(Command::Replace { item: i, order: order_id, symbol, side, request, arrival_mid });
            }
            _ => self.cancel_then_new(i, c, now, out),
        }
    }

    /// True when a limit at `price` would trade at once against the item's latest quote (or
    /// there is none to tell).
    fn marketable(&self, i: usize, price: Price) -> bool {
        let side = self.items[i].side.unwrap_or(Side::Buy);
        self.quotes.get(&self.items[i].item.symbol).is_none_or(|q| match side {
            Side::Buy => price >= q.ask,
            Side::Sell => price <= q.bid,
        })
    }

    /// The last look before a replace leaves: recording its intent and proving the claim took
    /// time in which the order it replaces may have filled, been cancelled, or the market moved
    /// through the new price; and a fill's update may have been lost. The order as read back is
    /// merged first. Sent only if that order is still live and untouched by the broker's own
    /// account, the new price is still not marketable and the item still waits for this
    /// replace; otherwise (or when the order could not be read) the replace is withdrawn (never
    /// sent: its intent stays as an order that does not exist) and the re-peg goes by cancel,
    /// then new.
    pub(super) fn on_replace_cleared(
        &mut self,
        i: usize,
        old: BrokerOrderId,
        request: ReplaceRequest,
        current: Result<Order, BrokerError>,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) {
        let Some(item) = self.items.get(i) else { return };
        let Some(new_c) = item.child_by_client(&request.client_order_id) else { return };
        let old_c = item.child_by_broker(&old);
        let read = match (&current, old_c) {
            (Ok(order), Some(o)) if order.id == old => {
                self.adopt(i, o, order, now, out);
                true
            }
            _ => false,
        };
        let item = &self.items[i];
        let waiting = item.pending() == Some(Pending::Replace) && item.children[new_c].state == ChildState::Sending;
        let old_live = old_c.filter(|&o| matches!(item.children[o].state, ChildState::Live(_)));
        let untouched = old_live.is_some_and(|o| {
            item.children[o].reported_filled.is_zero() && item.booked_for(&item.children[o].client_id).is_zero()
        });
        let passive = request.limit_price.is_some_and(|price| !self.marketable(i, price));
        let routing = old_live.is_some_and(|o| {
            matches!(item.children[o].state, ChildState::Live(OrderStatus::Accepted | OrderStatus::PendingNew))
        });
        let broke = !self.stream_up || self.stream_breaks != item.breaks_at_replace;
        if read && waiting && (routing || broke) {
            // Not at the venue yet (Alpaca would refuse): this step goes once the order works.
            // Or the stream broke since the replace was decided (it may be back up by now): a
            // fill whose update the break lost goes unseen from the read-back on, and the
            // replacement would trade it again; the step comes again, with a new read-back.
            let item = &mut self.items[i];
            item.not_placed(new_c);
            item.step = item.step.saturating_sub(1);
            item.repeg_when_routed = true;
            return self.arm_repeg(i, now, out);
        }
        if read && waiting && untouched && passive {
            self.items[i].children[new_c].answer_due = true;
            out.push(Command::SendReplace { item: i, order: old, request });
            return;
        }
        self.items[i].not_placed(new_c);
        match old_live {
            Some(o) if waiting => self.cancel_then_new(i, o, now, out),
            _ => self.after_change(i, now, out),
        }
    }

    /// A replace held back at the last moment (nothing sent): its last look no longer stands,
    /// so this re-peg goes by cancel, then new (a cancel cannot trade a fill twice); a second
    /// replace would only wait again where the first did.
    pub(super) fn on_replace_held_back(
        &mut self,
        i: usize,
        old: &BrokerOrderId,
        cid: &ClientOrderId,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) {
        let Some(new_c) = self.items.get(i).and_then(|item| item.child_by_client(cid)) else { return };
        self.items[i].not_placed(new_c);
        let old_c = self.items[i].child_by_broker(old);
        self.refollow(i, old_c, out);
        let item = &mut self.items[i];
        let waiting = item.pending().is_none();
        match item.child_by_broker(old).filter(|&o| matches!(item.children[o].state, ChildState::Live(_))) {
            Some(o) if waiting && item.stage.is_working() => self.cancel_then_new(i, o, now, out),
            _ => self.after_change(i, now, out),
        }
    }

    fn cancel_then_new(&mut self, i: usize, c: usize, _now: Timestamp, out: &mut Vec<Command>) {
        let item = &mut self.items[i];
        // Only for an order the broker has named: one whose answer is still out is decided
        // when it comes.
        if let Some(id) = item.children[c].broker_id.clone() {
            item.wait_for(Some(Pending::Cancel { then_new: true }));
            out.push(Command::Cancel { item: Some(i), order: id });
        }
    }

    pub(super) fn on_replaced(
        &mut self,
        i: usize,
        old: &BrokerOrderId,
        cid: &ClientOrderId,
        result: Result<Order, BrokerError>,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) {
        let Some(new_c) = self.items.get(i).and_then(|item| item.child_by_client(cid)) else { return };
        let old_c = self.items[i].child_by_broker(old);
        match result {
            Ok(order) => {
                self.items[i].answered(new_c);
                self.adopt(i, new_c, &order, now, out);
                self.items[i].repegs += 1;
                let item = &self.items[i];
                if let Some(limit) = item.children[new_c].limit {
                    out.push(Command::Emit(ProgressEvent::Repegged {
                        symbol: item.item.symbol.clone(),
                        limit,
                        repegs: item.repegs,
                        at: now,
                    }));
                }
                self.arm_repeg(i, now, out);
                self.after_change(i, now, out);
            }
            Err(BrokerError::Uncertain { .. }) => {
                // The replace may have happened: resolve by the new client order id.
                self.items[i].children[new_c].state = ChildState::Uncertain;
                out.push(Command::LookupClientId { item: i, client_order_id: cid.clone() });
                self.refollow(i, old_c, out);
            }
            Err(e) => {
                self.items[i].not_placed(new_c);
                let replaced = self.refollow(i, old_c, out);
                match e {
                    BrokerError::Rejected { reason: RejectReason::NothingChanged, .. } => self.arm_repeg(i, now, out),
                    BrokerError::Rejected { reason: RejectReason::NotYetRouted, .. } => {
                        // The same step again once the order works (its `new` update), or
                        // after the re-peg interval should that update be lost. Alpaca has
                        // applied such a refused replace once the order reached the venue
                        // (ATAP #306): should the old order end replaced by it, it is followed.
                        let item = &mut self.items[i];
                        item.children[new_c].refused_may_apply = true;
                        item.step = item.step.saturating_sub(1);
                        item.repeg_when_routed = true;
                        self.arm_repeg(i, now, out);
                    }
                    BrokerError::RateLimited { .. } | BrokerError::Transient { .. } => {
                        self.items[i].step = self.items[i].step.saturating_sub(1);
                        out.push(Command::SetTimer { id: TimerId::Repeg(i), at: self.backoff(now, 0) });
                    }
                    BrokerError::Rejected { reason: RejectReason::InsufficientBuyingPower, .. } => {
                        out.push(Command::Emit(ProgressEvent::Warning {
                            symbol: Some(self.items[i].item.symbol.clone()),
                            message: "re-peg refused for buying power; keeping the working order".into(),
                            at: now,
                        }));
                        self.arm_repeg(i, now, out);
                    }
                    _ => {
                        // Not replaceable now (filled, being cancelled, not yet routed...): find
                        // out (unless it is known replaced), and keep the order on the re-peg
                        // schedule whatever the answer.
                        if let Some(o) = old_c.filter(|_| !replaced) {
                            let c = self.items[i].children[o].client_id.clone();
                            self.items[i].wait_for(Some(Pending::Lookup));
                            out.push(Command::LookupOrder { item: i, client_order_id: c, order: old.clone() });
                        }
                        self.arm_repeg(i, now, out);
                    }
                }
            }
        }
    }

    pub(super) fn on_canceled(
        &mut self,
        item: Option<usize>,
        order: &BrokerOrderId,
        result: Result<(), BrokerError>,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) {
        let Some(i) = item else {
            match result {
                // Its final state comes on the stream (or the stale deadline passes).
                Ok(()) => {}
                // Gone or already final: done.
                Err(
                    BrokerError::NotFound { .. } | BrokerError::Rejected { reason: RejectReason::NotCancelable, .. },
                ) => self.stale_done(order, out),
                // Not cancelled: sent again after a wait, until the stale deadline.
                Err(_) => {
                    if self.stale_orders.contains(order) {
                        out.push(Command::SetTimer { id: TimerId::StaleRetry, at: self.backoff(now, 0) });
                    }
                }
            }
            return;
        };
        let Some(c) = self.items.get(i).and_then(|it| it.child_by_broker(order)) else { return };
        // One cancel accepted is enough: a later one refused (the order is final) changes nothing.
        let child = &mut self.items[i].children[c];
        if child.cancel != CancelAnswer::Accepted {
            child.cancel = if result.is_ok() { CancelAnswer::Accepted } else { CancelAnswer::NotAccepted };
        }
        match result {
            Ok(()) => {
                // Final state comes on the stream; look it up if it does not come.
                let at = Self::after(now, self.config.cancel_confirm_wait);
                out.push(Command::SetTimer { id: TimerId::Retry(i), at });
            }
            Err(BrokerError::RateLimited { .. } | BrokerError::Transient { .. } | BrokerError::Uncertain { .. }) => {
                // Not applied (or maybe): looked up when the timer fires, and sent again if the
                // order still works.
                out.push(Command::SetTimer { id: TimerId::Retry(i), at: self.backoff(now, 0) });
            }
            Err(_) => {
                // Not cancelable now (already final, or not yet routed) or unknown: read its
                // real state; if it still works, the cancel goes again when the timer fires.
                let cid = self.items[i].children[c].client_id.clone();
                out.push(Command::LookupOrder { item: i, client_order_id: cid, order: order.clone() });
                out.push(Command::SetTimer { id: TimerId::Retry(i), at: self.backoff(now, 0) });
            }
        }
        // Its end came first and a sell's next order waited for this answer
        // (`sell_waits_for_its_last_cancel`).
        if matches!(self.items[i].children[c].state, ChildState::Final(_)) {
            self.after_change(i, now, out);
        }
    }

    pub(super) fn on_retry_timer(&mut self, i: usize, now: Timestamp, out: &mut Vec<Command>) {
        let Some(item) = self.items.get(i) else { return };
        if item.stage.is_done() {
            return;
        }
        self.resend(i, now, out);
        let item = &self.items[i];
        for child in &item.children {
            match &child.state {
                ChildState::Uncertain => {
                    out.push(Command::LookupClientId { item: i, client_order_id: child.client_id.clone() })
                }
                // A cancel in flight, an order that must go before the next one, or one whose
                // state the item waits for (the lookup after a refused replace failed): read its
                // state (the answer sends the cancel again if the order still works).
                ChildState::Live(status)
                    if *status == OrderStatus::PendingCancel
                        || item.replacing_by_new()
                        || item.stage.is_closing()
                        || item.pending() == Some(Pending::Lookup) =>
                {
                    if let Some(id) = &child.broker_id {
                        out.push(Command::LookupOrder {
                            item: i,
                            client_order_id: child.client_id.clone(),
                            order: id.clone(),
                        });
                    }
                }
                _ => {}
            }
        }
    }

    /// Sends the submits of item `i` that wait to be sent again (same request, same client
    /// order id), unless the stream is down or the run aborted: then they wait for the next
    /// timer (armed when the stream comes back) or are abandoned with the run.
    pub(super) fn resend(&mut self, i: usize, now: Timestamp, out: &mut Vec<Command>) {
        let can_send = self.stream_up && self.aborted.is_none();
        let working = self.items[i].stage.is_working();
        let arrival_mid = self.items[i].arrival_mid;
        for child in &mut self.items[i].children {
            if child.state != ChildState::Resend {
                continue;
            }
            match child.request.clone() {
                // A closing or aborted item sends nothing new: what may exist is looked up by
                // the retry timer that called this (and cancelled if it does).
                _ if !working || self.aborted.is_some() => child.state = ChildState::Uncertain,
                Some(request) if can_send => {
                    child.state = ChildState::Sending;
                    child.sent_at = now;
                    out.push(Command::Submit { item: i, request, arrival_mid });
                }
                // The stream is down: sent when it is back (`on_stream_up`).
                Some(_) => {}
                None => child.state = ChildState::NotPlaced,
            }
        }
    }

    /// True when child `c` of item `i` is to be cancelled: the item is closing or complete, or
    /// its working order must go before the next one is sent.
    fn cancel_wanted(&self, i: usize, c: usize) -> bool {
        let item = &self.items[i];
        item.stage.is_closing()
            || (item.replacing_by_new() && item.working_child() == Some(c))
            || (item.stage.is_working() && item.is_complete(self.min_notional()))
    }

    /// Whether the order `found` by a lookup of child `c` of item `i` is the order this child
    /// sent: its client order id, same symbol, side and (for a share order) quantity, created
    /// since the child was. A plan id used again with a lost ledger derives the same client
    /// order ids as an earlier day's run; that run's orders are not this run's.
    fn is_this_childs(&self, i: usize, c: usize, found: &Order) -> bool {
        let item = &self.items[i];
        let child = &item.children[c];
        // A lookup by broker id (a replacement followed by `replaced_by`) may find another
        // child's order: the client order id the broker holds says whose it is.
        found.client_order_id == child.client_id
            && found.symbol == item.item.symbol
            && Some(found.side) == item.side
            && found.qty.is_none_or(|q| q.get() == child.qty || child.broker_id.as_ref() == Some(&found.id))
            // Created by this run's request (allowing the clocks to differ by `fill_lookback`),
            // not by an earlier day's run of the same plan id.
            && found.created_at >= Self::before(child.created, self.config.fill_lookback)
    }

    pub(super) fn on_looked_up(
        &mut self,
        i: usize,
        cid: &ClientOrderId,
        result: Result<Order, BrokerError>,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) {
        let Some(c) = self.items.get(i).and_then(|item| item.child_by_client(cid)) else { return };
        // A lookup by broker id (a replacement followed) may find the order another of this
        // item's children made (a replace refused that applied anyway): it is that child's (its
        // owner), and the asked child is left to its own lookups.
        let owner = match &result {
            Ok(order) => self.items[i]
                .child_by_client(&order.client_order_id)
                .filter(|&o| o != c && self.is_this_childs(i, o, order))
                .unwrap_or(c),
            Err(_) => c,
        };
        match result {
            Ok(order) if !self.is_this_childs(i, owner, &order) => {
                // Someone else's order under our id (an earlier day's run of a reused plan id):
                // this child was never placed, and the id cannot be used; the item goes on under
                // the next one.
                self.items[i].not_placed(c);
                let note = if order.client_order_id == *cid {
                    format!("client order id {cid} belongs to an order of another run")
                } else {
                    format!("the order found for client order id {cid} is {}'s", order.client_order_id)
                };
                self.notes.push(format!(
                    "{}: {note} ({} {} {}); not counted",
                    self.items[i].item.symbol, order.side, order.symbol, order.status
                ));
                self.after_change(i, now, out);
            }
            Ok(order) => {
                let found = &self.items[i].children[owner];
                // A refused replace's child (not placed) whose order turned up is found, too.
                let was_unknown = found.outcome_unknown() || (owner != c && found.state == ChildState::NotPlaced);
                self.items[i].answered(c);
                self.adopt(i, owner, &order, now, out);
                let live = matches!(self.items[i].children[owner].state, ChildState::Live(_));
                if was_unknown && live {
                    self.arm_repeg(i, now, out);
                }
                if live && self.cancel_wanted(i, owner) {
                    // The cancel did not take (refused, lost, or not sent yet): again, or look
                    // again later while the broker is cancelling it.
                    if order.status.is_cancelable() {
                        out.push(Command::Cancel { item: Some(i), order: order.id.clone() });
                    }
                    out.push(Command::SetTimer { id: TimerId::Retry(i), at: self.backoff(now, 1) });
                }
                self.after_change(i, now, out);
            }
            Err(BrokerError::NotFound { .. }) => {
                self.items[i].answered(c);
                if self.items[i].children[c].outcome_unknown() {
                    self.not_found(i, c, now, out);
                }
                self.after_change(i, now, out);
            }
            Err(_) => out.push(Command::SetTimer { id: TimerId::Retry(i), at: self.backoff(now, 0) }),
        }
    }

    /// A lookup did not find child `c` of item `i`, whose request may have been lost on its way
    /// or may still arrive. Never a second order beside one that may appear: a submit is sent
    /// again under the same client order id (the broker refuses a second copy, so at most one
    /// exists); a replace's order is cancelled, so that the replace can no longer land; anything
    /// else is looked up again until it can no longer appear.
    fn not_found(&mut self, i: usize, c: usize, now: Timestamp, out: &mut Vec<Command>) {
        let may_send = self.items[i].stage.is_working() && self.stream_up && self.aborted.is_none();
        let window_over = Self::after(self.items[i].children[c].sent_at, self.config.late_order_window) <= now;
        let child = &mut self.items[i].children[c];
        child.not_found = child.not_found.saturating_add(1);
        let failures = child.not_found;
        if child.request.is_some() && may_send {
            child.state = ChildState::Resend;
            out.push(Command::SetTimer { id: TimerId::Retry(i), at: self.backoff(now, failures.saturating_sub(1)) });
            return;
        }
        if let Some(old) = child.replaces.clone() {
            let old_state = self.items[i].child_by_broker(&old).map(|o| self.items[i].children[o].state.clone());
            match old_state {
                Some(ChildState::Final(OrderStatus::Replaced)) => {}
                Some(ChildState::Final(_)) => {
                    // What it would have replaced is final otherwise: it can never land.
                    self.items[i].children[c].state = ChildState::NotPlaced;
                    return;
                }
                Some(ChildState::Live(status)) => {
                    self.items[i].wait_for(Some(Pending::Cancel { then_new: true }));
                    if status.is_cancelable() {
                        out.push(Command::Cancel { item: Some(i), order: old });
                    }
                }
                _ => {}
            }
            out.push(Command::SetTimer { id: TimerId::Retry(i), at: self.backoff(now, failures) });
            return;
        }
        if window_over {
            self.items[i].children[c].state = ChildState::NotPlaced;
        } else {
            out.push(Command::SetTimer { id: TimerId::Retry(i), at: self.backoff(now, failures) });
        }
    }

    /// `order` of item `i`, replaced by an order this run has not heard of (the replace's
    /// answer or the new order's updates were lost, or the broker applied a replace it had
    /// refused): follows `replaced_by`. Only a replacement whose answer was lost, or whose
    /// refusal may not have held, can be it: one whose answer is still on its way is named by
    /// that answer (or ends uncertain, and is looked up then), and one withdrawn before it left
    /// (never sent) is no order at all. A refused one followed is uncertain until the lookup
    /// answers: no order goes beside it.
    /// A replace of child `old_c`'s order has left the broker's hands without an order (lost,
    /// refused or held back) while that order is known replaced, so not by this replace: by one
    /// refused earlier that applied anyway. It is followed now that no answer is due (never an
    /// order beside it); whether the old order is known replaced.
    fn refollow(&mut self, i: usize, old_c: Option<usize>, out: &mut Vec<Command>) -> bool {
        let replaced =
            old_c.and_then(|o| self.items[i].children[o].report.clone()).filter(|r| r.status == OrderStatus::Replaced);
        if let Some(report) = &replaced {
            self.follow_replacement(i, report, out);
        }
        replaced.is_some()
    }

    fn follow_replacement(&mut self, i: usize, order: &Order, out: &mut Vec<Command>) {
        let (OrderStatus::Replaced, Some(new_id)) = (order.status, order.replaced_by.as_ref()) else { return };
        let item = &mut self.items[i];
        if item.child_by_broker(new_id).is_some() {
            return;
        }
        let of_old = |r: &Child| r.replaces.as_ref() == Some(&order.id) && r.broker_id.is_none();
        if item.children.iter().any(|r| of_old(r) && r.state == ChildState::Sending && r.answer_due) {
            // A replace of it is out and its answer on the way: that answer names the
            // replacement (or, refused, has the old order looked up, which comes back here).
            return;
        }
        // A replace whose answer was lost first; a refused one only when there is none.
        let lost = item
            .children
            .iter()
            .position(|r| of_old(r) && matches!(r.state, ChildState::Uncertain | ChildState::Resend))
            .or_else(|| {
                item.children.iter().position(|r| of_old(r) && r.state == ChildState::NotPlaced && r.refused_may_apply)
            });
        if let Some(r) = lost {
            let child = &mut item.children[r];
            if child.state == ChildState::NotPlaced {
                child.state = ChildState::Uncertain;
            }
            out.push(Command::LookupOrder { item: i, client_order_id: child.client_id.clone(), order: new_id.clone() });
        }
    }

    pub(super) fn on_update(&mut self, update: &TradeUpdate, now: Timestamp, out: &mut Vec<Command>) {
        let order = &update.order;
        let found =
            (0..self.items.len()).find_map(|i| self.items[i].child_by_client(&order.client_order_id).map(|c| (i, c)));
        let Some((i, c)) = found else {
            if order.status.is_terminal() {
                self.stale_done(&order.id, out);
            }
            return;
        };
        if let (Some(exec), TradeEvent::Fill | TradeEvent::PartialFill) = (&update.execution, update.event) {
            let fill = tranche_domain::Fill {
                execution_id: exec.id.clone(),
                order_id: order.id.clone(),
                client_order_id: order.client_order_id.clone(),
                symbol: order.symbol.clone(),
                side: order.side,
                qty: exec.qty,
                price: exec.price,
                time: update.timestamp.unwrap_or(now),
            };
            self.record_fill(i, &fill, Some(order.filled_qty.get()), out);
        }
        let was_unknown = self.items[i].children[c].outcome_unknown();
        self.adopt(i, c, order, now, out);
        if was_unknown
            && matches!(self.items[i].children[c].state, ChildState::Live(_))
            && self.items[i].stage.is_working()
        {
            // The stream told first what a lost answer did not: the order works, on schedule.
            self.arm_repeg(i, now, out);
        }
        if order.status.is_terminal() {
            // Also the end of a stale order this run waits for (one of an earlier run).
            self.stale_done(&order.id, out);
        }
        if update.event == TradeEvent::OrderReplaceRejected {
            // The replace lost: this order keeps working (or has filled); its replacement will
            // never work, whether or not its own `rejected` arrives.
            let id = order.id.clone();
            for r in &mut self.items[i].children {
                if r.replaces.as_ref() == Some(&id) && !matches!(r.state, ChildState::Final(_)) {
                    r.state = ChildState::Final(OrderStatus::Rejected);
                }
            }
        }
        if was_unknown {
            self.items[i].answered(c);
        }
        self.after_change(i, now, out);
        if self.items[i].repeg_when_routed
            && update.event == TradeEvent::New
            && self.items[i].working_child() == Some(c)
            && self.items[i].stage.is_working()
        {
            // The order reached the venue: the re-peg that waited for it goes now.
            self.on_repeg_timer(i, now, out);
        }
    }

    /// Books an execution of item `i` (from the stream or the activities) and records it.
    /// Books an execution of item `i` (from the stream, with the order's cumulative filled
    /// quantity that came with it, or from the activities: `reported` is `None`) within what the
    /// broker reported filled for the order, and records it.
    pub(super) fn record_fill(
        &mut self,
        i: usize,
        fill: &tranche_domain::Fill,
        reported: Option<Decimal>,
        out: &mut Vec<Command>,
    ) {
        let (qty, price, at) = (fill.qty.get(), fill.price.get(), fill.time);
        let known =
            self.items[i].child_by_client(&fill.client_order_id).map(|c| self.items[i].children[c].reported_filled);
        let cap = match (known, reported) {
            (Some(k), Some(r)) => Some(k.max(r)),
            (Some(k), None) => Some(k),
            (None, r) => r,
        };
        let source = if reported.is_some() { FillSource::Stream } else { FillSource::Read };
        if self.items[i].book_fill(&fill.execution_id, qty, price, &fill.client_order_id, at, cap, reported, source) {
            self.record_fill_to_ledger(i, fill, out);
            let item = &self.items[i];
            out.push(Command::Emit(ProgressEvent::Filled {
                symbol: item.item.symbol.clone(),
                qty: qty.into(),
                price: price.into(),
                filled: item.filled.into(),
                target: item.target.into(),
                at,
            }));
        }
    }

    /// Decides what follows any change of item `i`.
    pub(super) fn after_change(&mut self, i: usize, now: Timestamp, out: &mut Vec<Command>) {
        if self.items[i].stage.is_done() {
            return;
        }
        // Cross-check executions against each child's cumulative fill.
        let missing = self.items[i].executions_missing();
        if missing && !self.fills_requested {
            self.fills_requested = true;
            let since = Self::before(self.items[i].started_at.unwrap_or(now), self.config.fill_lookback);
            self.fills_read_since = Some(self.fills_read_since.map_or(since, |s| s.min(since)));
            if self.fills_read_not_before > now {
                // The last read did not show them yet: not again at once.
                out.push(Command::SetTimer { id: TimerId::FillsRead, at: self.fills_read_not_before });
            } else {
                self.fills_read_since = None;
                self.fill_reads_out += 1;
                out.push(Command::FetchFills { since });
            }
        }
        let (closing, closing_since) = match &self.items[i].stage {
            Stage::Working { .. } => (None, now),
            Stage::Closing { reason, since } => (Some(reason.clone()), *since),
            // Not started yet (or done): its phase decides what happens, not a stray answer.
            _ => return,
        };
        let complete = self.items[i].is_complete(self.min_notional());
        let any_open = self.items[i].any_open();
        if complete || closing.is_some() {
            // Executions the broker counts but no fill read shows are waited for, not for ever:
            // a closing item ends after `late_order_window` with what it could book, said so.
            let gave_up = closing.is_some() && Self::after(closing_since, self.config.late_order_window) <= now;
            if any_open {
                self.cancel_open_children(i, out);
            } else if !missing || gave_up {
                let (outcome, mut reason) =
                    if complete { (ItemOutcome::Filled, None) } else { (self.outcome_of(i), closing) };
                if missing {
                    let note = "the broker reports fills its fill activities do not show yet; the result has the fills it could read";
                    reason = Some(reason.map_or(note.to_owned(), |r| format!("{r}; {note}")));
                }
                self.finish_item(i, outcome, reason, now, out);
            }
            return;
        }
        if self.items[i].is_busy() {
            return;
        }
        let remaining = self.items[i].remaining();
        if self.items[i].exposure() > remaining {
            // A replace raced with fills: never leave more working than remains.
            if let Some(c) = self.items[i].working_child() {
                return self.cancel_then_new(i, c, now, out);
            }
        }
        if self.items[i].working_child().is_none() {
            let last_rejected =
                self.items[i].children.last().is_some_and(|c| c.state == ChildState::Final(OrderStatus::Rejected));
            // The broker refuses this item's orders for good when it rejects three in a row
            // (after their 200: Alpaca-API #107); one rejected now and then among orders that
            // worked is placed again. A rejected replacement does not count (its order works
            // on).
            let rejected_in_a_row = self.items[i]
                .children
                .iter()
                .rev()
                .filter(|c| c.replaces.is_none())
                .take_while(|c| c.state == ChildState::Final(OrderStatus::Rejected))
                .count();
            if last_rejected && !self.items[i].replacing_by_new() && rejected_in_a_row >= 3 {
                // Nothing traded is a failure, as when a submit is refused outright.
                let outcome = match self.outcome_of(i) {
                    ItemOutcome::Unfilled => ItemOutcome::Failed,
                    outcome => outcome,
                };
                return self.finish_item(
                    i,
                    outcome,
                    Some("three orders in a row rejected by the broker".into()),
                    now,
                    out,
                );
            }
            // A cancel-then-new is over: the cancelled order is final.
            self.items[i].wait_for(None);
            self.place_next(i, now, out);
        }
    }

    fn cancel_open_children(&mut self, i: usize, out: &mut Vec<Command>) {
        for c in &mut self.items[i].children {
            if let (ChildState::Live(status), Some(id)) = (&c.state, &c.broker_id) {
                if status.is_cancelable() {
                    c.state = ChildState::Live(OrderStatus::PendingCancel);
                    out.push(Command::Cancel { item: Some(i), order: id.clone() });
                }
            }
        }
    }

    /// Stops working item `i`: cancels what is open and finishes when everything is final.
    pub(super) fn close_item(&mut self, i: usize, reason: &str, now: Timestamp, out: &mut Vec<Command>) {
        self.items[i].stage = Stage::Closing { reason: reason.to_owned(), since: now };
        out.push(Command::CancelTimer(TimerId::Repeg(i)));
        if self.items[i].any_open() {
            self.cancel_open_children(i, out);
            out.push(Command::SetTimer {
                id: TimerId::Retry(i),
                at: Self::after(now, self.config.cancel_confirm_wait),
            });
        } else {
            let outcome = self.outcome_of(i);
            self.finish_item(i, outcome, Some(reason.to_owned()), now, out);
        }
    }

    /// The outcome implied by the fills so far.
    pub(super) fn outcome_of(&self, i: usize) -> ItemOutcome {
        let item = &self.items[i];
        if item.is_complete(self.min_notional()) && item.target.is_sign_positive() && !item.target.is_zero() {
            ItemOutcome::Filled
        } else if item.filled.is_zero() {
            ItemOutcome::Unfilled
        } else {
            ItemOutcome::PartiallyFilled
        }
    }

    pub(super) fn finish_item(
        &mut self,
        i: usize,
        outcome: ItemOutcome,
        reason: Option<String>,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) {
        let min_notional = self.min_notional();
        let item = &mut self.items[i];
        if item.stage.is_done() {
            return;
        }
        // Less than the plan asked, whatever the reason, is never "filled": a fraction a
        // liquidation cannot sell, buys scaled to the buying power, a sell capped at the position.
        let mut short = item.shortfall.clone();
        if !item.left_over.is_zero() {
            let left = format!(
                "{} shares left: {} is not fractionable and the broker sells whole shares only",
                item.left_over.normalize(),
                item.item.symbol
            );
            short = Some(joined(short, left));
        }
        // A remainder too small for an order is filled for every purpose, and said.
        let reason = match (outcome, reason) {
            (ItemOutcome::Filled, None) => item.remainder_under_minimum(min_notional),
            (_, reason) => reason,
        };
        let (outcome, reason) = match (outcome, short) {
            (ItemOutcome::Filled, Some(why)) => (ItemOutcome::PartiallyFilled, Some(why)),
            (other, Some(why)) => (other, Some(joined(reason, why))),
            (other, None) => (other, reason),
        };
        item.stage = Stage::Done { outcome, reason: reason.clone() };
        // Finished on purpose while trading (filled, skipped, refused, a phase deadline): made
        // durable so that a resumed run never trades it again. Not when the run aborts, runs
        // out of time or cannot trade at all: a later run should try those again.
        let on_purpose = self.aborted.is_none()
            && !self.run_out_of_time
            && matches!(self.phase, RunPhase::Sell | RunPhase::Settle | RunPhase::Buy);
        if on_purpose {
            let record = tranche_ledger::ItemRecord {
                plan_id: self.plan.plan_id.clone(),
                run_id: String::new(),
                item_index: u32::try_from(i).unwrap_or(u32::MAX),
                symbol: item.item.symbol.clone(),
                outcome,
                reason: reason.clone(),
                recorded_at: now,
            };
            out.push(Command::Record(Box::new(crate::io::LedgerRecord::Item(record))));
        }
        let item = &self.items[i];
        out.push(Command::CancelTimer(TimerId::Repeg(i)));
        out.push(Command::CancelTimer(TimerId::Retry(i)));
        out.push(Command::Emit(ProgressEvent::ItemDone { symbol: item.item.symbol.clone(), outcome, reason, at: now }));
        // Its stream (when no other item needs it) goes to an item that needs one; not once
        // the run is finishing (every stream is released then).
        if self.finishing == super::Finishing::No
            && matches!(self.phase, RunPhase::Sell | RunPhase::Settle | RunPhase::Buy)
        {
            self.sync_subscriptions(out);
        }
    }
}
