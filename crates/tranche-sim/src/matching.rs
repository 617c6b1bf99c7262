//! Matching: orders reaching the venue, marketable orders walking the book (in the realistic
//! model: paying the square-root law's impact past the displayed size, and moving the price),
//! resting limits with an L1 queue-position model, trade-throughs, aggressive flow, and fills.
//!
//! Invariants: no order fills beyond its quantity; a marketable order fills at the better of its
//! limit and the book (never worse than its limit); a resting limit that the market trades
//! through fills at its limit; a resting order joins the back of the queue at its price (a
//! replaced order starts again at the back); fills update order, account and fill log together
//! before the update is emitted.

use rust_decimal::Decimal;
use tranche_domain::{Execution, ExecutionId, Fill, OrderStatus, Price, Qty, Side, TimeInForce, TradeEvent};

use crate::core::{Action, Sim};
use crate::realism::MarketModel;

/// Deepest book level a marketable order walks.
const MAX_LEVELS: i64 = 200;

impl Sim {
    /// Order `i` reaches the venue.
    pub(crate) fn arrive(&mut self, i: usize) {
        if self.orders[i].order.status.is_terminal() {
            return;
        }
        if !self.calendar.is_open(self.now) {
            let open = self.calendar.next_open(self.now);
            self.schedule_at(open, Action::Arrive(i));
            return;
        }
        let slot = self.orders[i].slot;
        let cid = self.orders[i].order.client_order_id.clone();
        let faults = &self.config.faults;
        let (reject_ppm, cancel_ppm) = (faults.venue_reject_ppm, faults.broker_cancel_ppm);
        if self.orders[i].replaces.is_none() && reject_ppm > 0 && self.rng.chance_ppm(reject_ppm) {
            self.fired.hit("venue_reject");
            self.record(|| format!("arrive {cid} REJECTED by the venue"));
            self.finish(i, TradeEvent::Rejected);
            return;
        }
        if self.transition(i, TradeEvent::New) {
            self.emit(i, TradeEvent::New, None);
        }
        self.record(|| format!("arrive {cid}"));
        if cancel_ppm > 0 && self.rng.chance_ppm(cancel_ppm) {
            self.schedule_unasked(Action::BrokerCancel(i));
        }
        let owner_ppm = self.config.faults.owner_sale_ppm;
        if owner_ppm > 0 && self.orders[i].order.side == Side::Sell && self.rng.chance_ppm(owner_ppm) {
            self.schedule_unasked(Action::OwnerSale(i));
        }
        self.apply_refused_replaces(i);
        if self.slots[slot].market.halted {
            self.rest(i);
            return;
        }
        if self.is_untriggered_stop(i) {
            // Waits off the book for its stop price (see `user_orders`).
            return;
        }
        if self.orders[i].order.notional.is_some() {
            self.fill_notional(i);
            return;
        }
        if self.orders[i].order.side == Side::Buy && self.orders[i].limit_ticks.is_none() {
            // Alpaca converts market buys into marketable limits with a collar; the simulator's
            // collar is the price the order reserved buying power at (the ask at submission plus
            // `MARKET_BUY_COLLAR`).
            let reserve = tranche_domain::Price::new(self.orders[i].reserve_price);
            self.orders[i].limit_ticks = self.slots[slot].market.to_ticks(reserve, Side::Buy);
        }
        self.take_liquidity(i);
        let o = &self.orders[i];
        if o.order.status.is_terminal() {
            return;
        }
        match o.order.time_in_force {
            TimeInForce::Ioc | TimeInForce::Fok => self.finish(i, TradeEvent::Canceled),
            _ => self.rest(i),
        }
    }

    /// `action`, something done to a working order without a request of ours, 1 to 20 s from now.
    fn schedule_unasked(&mut self, action: Action) {
        let delay = 1_000 + self.rng.below(19_000);
        let at = self.after_ms(delay);
        self.schedule_at(at, action);
    }

    /// Order `i` still works and no cancel or replace of ours is under way (one would race with
    /// what is done to it unasked).
    fn works_unasked(&self, i: usize) -> bool {
        let o = &self.orders[i];
        !o.cancel_pending && matches!(o.order.status, OrderStatus::New | OrderStatus::PartiallyFilled)
    }

    /// The broker cancels order `i` unasked, if it still works and no cancel or replace of ours
    /// is under way (those would race with it; the fault is counted only when it lands).
    pub(crate) fn broker_cancel(&mut self, i: usize) {
        if !self.works_unasked(i) {
            return;
        }
        self.fired.hit("broker_cancel");
        let cid = self.orders[i].order.client_order_id.clone();
        self.record(|| format!("broker cancels {cid}"));
        self.finish(i, TradeEvent::Canceled);
    }

    /// The owner sells from outside the run while our sell `i` works (the dashboard's "close
    /// position"): ours is cancelled, then the owner's market sell takes all, or half (whole
    /// shares), of what is available. Nothing happens when ours no longer works, or a cancel
    /// or replace of ours is under way.
    pub(crate) fn owner_sale(&mut self, i: usize) {
        if !self.works_unasked(i) {
            return;
        }
        let o = &self.orders[i];
        let symbol = o.order.symbol.clone();
        let cid = o.order.client_order_id.clone();
        self.record(|| format!("the owner closes {symbol}: {cid} cancelled"));
        self.finish(i, TradeEvent::Canceled);
        let available = (self.account.qty(&symbol) - self.held_for_sells(&symbol)).max(Decimal::ZERO);
        let half = (available / Decimal::TWO).trunc();
        let qty = if half.is_zero() || self.rng.chance_ppm(500_000) { available } else { half };
        if qty.is_zero() {
            return;
        }
        self.owner_sales += 1;
        let id = tranche_domain::ClientOrderId::from_broker(format!("owner-sale-{}", self.owner_sales));
        let sale = tranche_domain::OrderRequest::day(id, symbol, Side::Sell, Qty::new(qty), None);
        if self.submit_as_user(&sale).is_ok() {
            self.fired.hit("owner_sale");
        }
    }

    /// Order `i` is routed: `pending_new` on its way to the venue (slow routing only).
    pub(crate) fn route(&mut self, i: usize) {
        if self.orders[i].order.status == OrderStatus::Accepted && self.transition(i, TradeEvent::PendingNew) {
            self.emit(i, TradeEvent::PendingNew, None);
        }
    }

    /// A notional market order: filled at once at the inside price by the broker's market maker
    /// (as Alpaca fills fractional and notional orders), for `notional / price` shares.
    fn fill_notional(&mut self, i: usize) {
        let market = &self.slots[self.orders[i].slot].market;
        let price = market.profile.price(match self.orders[i].order.side {
            Side::Buy => market.ask,
            Side::Sell => market.bid,
        });
        let notional = self.orders[i].order.notional.map_or(Decimal::ZERO, tranche_domain::Usd::get);
        let qty = notional.checked_div(price).unwrap_or(Decimal::ZERO).trunc_with_scale(9);
        if qty.is_zero() {
            self.finish(i, TradeEvent::Canceled);
            return;
        }
        self.orders[i].qty = qty;
        self.fill(i, qty, price);
    }

    /// Walks the book for a marketable order (market, or limit through the far side).
    pub(crate) fn take_liquidity(&mut self, i: usize) {
        if self.config.market.model == MarketModel::Realistic {
            return self.take_with_impact(i);
        }
        let slot = self.orders[i].slot;
        let side = self.orders[i].order.side;
        let limit = self.orders[i].limit_ticks;
        if self.orders[i].order.time_in_force == TimeInForce::Fok && !self.can_fill_entirely(i) {
            return;
        }
        for level in 0..MAX_LEVELS {
            let leaves = self.orders[i].leaves();
            if leaves.is_zero() {
                break;
            }
            let market = &self.slots[slot].market;
            let Some(price) = market.level_price(side, level) else { break };
            let marketable = match (side, limit) {
                (_, None) => true,
                (Side::Buy, Some(l)) => price <= l,
                (Side::Sell, Some(l)) => price >= l,
            };
            if !marketable {
                break;
            }
            let available = Decimal::from(market.depth_at(side, level));
            let qty = leaves.min(available);
            let price = market.profile.price(price);
            self.fill(i, qty, price);
        }
    }

    /// The realistic model's marketable order: the displayed size at the far side, the rest at
    /// the square-root law's price if its limit allows (otherwise the rest rests), then the
    /// price moves by the impact of what it took.
    fn take_with_impact(&mut self, i: usize) {
        let slot = self.orders[i].slot;
        let side = self.orders[i].order.side;
        let limit = self.orders[i].limit_ticks;
        let within = |price: i64| match (side, limit) {
            (_, None) => true,
            (Side::Buy, Some(l)) => price <= l,
            (Side::Sell, Some(l)) => price >= l,
        };
        let leaves = self.orders[i].leaves();
        let shares = i64::try_from(leaves.ceil()).unwrap_or(i64::MAX);
        let realism = &self.config.market.realism;
        let market = &self.slots[slot].market;
        let Some(far) = market.level_price(side, 0) else { return };
        let beyond = market.impact_price(side, shares, realism);
        let displayed = Decimal::from(market.depth_at(side, 0));
        if !within(far) {
            return;
        }
        let whole = within(beyond) || displayed >= leaves;
        if self.orders[i].order.time_in_force == TimeInForce::Fok && !whole {
            return;
        }
        let at_far = leaves.min(displayed);
        let (far_price, beyond_price) = (market.profile.price(far), market.profile.price(beyond));
        self.fill(i, at_far, far_price);
        let rest = self.orders[i].leaves();
        if rest > Decimal::ZERO && within(beyond) {
            self.fill(i, rest, beyond_price);
        }
        let taken = leaves - self.orders[i].leaves();
        let taken_shares = i64::try_from(taken.ceil()).unwrap_or(0);
        let realism = self.config.market.realism;
        self.slots[slot].market.take_impact(side, taken_shares, &realism);
    }

    fn can_fill_entirely(&self, i: usize) -> bool {
        let o = &self.orders[i];
        let market = &self.slots[o.slot].market;
        let mut available = Decimal::ZERO;
        for level in 0..MAX_LEVELS {
            let Some(price) = market.level_price(o.order.side, level) else { break };
            let ok = match (o.order.side, o.limit_ticks) {
                (_, None) => true,
                (Side::Buy, Some(l)) => price <= l,
                (Side::Sell, Some(l)) => price >= l,
            };
            if !ok {
                break;
            }
            available += Decimal::from(market.depth_at(o.order.side, level));
            if available >= o.leaves() {
                return true;
            }
        }
        false
    }

    /// Puts order `i` in its market's queue, behind what is displayed at its price.
    pub(crate) fn rest(&mut self, i: usize) {
        let slot = self.orders[i].slot;
        let market = &self.slots[slot].market;
        let ahead = match (self.orders[i].order.side, self.orders[i].limit_ticks) {
            (Side::Buy, Some(l)) if l == market.bid => market.bid_size,
            (Side::Sell, Some(l)) if l == market.ask => market.ask_size,
            (Side::Buy, Some(l)) if l < market.bid => market.bid_size + market.profile.lot * (market.bid - l),
            (Side::Sell, Some(l)) if l > market.ask => market.ask_size + market.profile.lot * (l - market.ask),
            _ => 0,
        };
        self.orders[i].queue_ahead = ahead;
        self.slots[slot].resting.push(i);
    }

    /// After a market update: trade-throughs, then the aggressive order (if any) against resting
    /// orders in price-time priority.
    pub(crate) fn match_resting(&mut self, slot: usize, aggressor: Option<(Side, i64)>) {
        if self.slots[slot].market.halted || self.slots[slot].resting.is_empty() {
            return;
        }
        let resting = self.slots[slot].resting.clone();
        for &i in &resting {
            if self.is_untriggered_stop(i) {
                continue;
            }
            let o = &self.orders[i];
            let Some(limit) = o.limit_ticks else { continue };
            let market = &self.slots[slot].market;
            let (through, displayed, better_than_inside) = match o.order.side {
                Side::Buy => (market.ask <= limit, market.ask_size, limit > market.bid),
                Side::Sell => (market.bid >= limit, market.bid_size, limit < market.ask),
            };
            if through && self.config.market.model == MarketModel::Realistic {
                // Marketable again: in the realistic model it takes what the book now offers as
                // any marketable order does, at the far side and past it at the square-root
                // law's price within its limit, and moves the price (the rest of a protected
                // limit would otherwise fill at its limit, or take size every update without
                // impact).
                self.take_with_impact(i);
            } else if through {
                let qty = o.leaves().min(Decimal::from(displayed));
                let price = market.profile.price(limit);
                self.fill(i, qty, price);
            } else if better_than_inside {
                // Alone at a better price than the displayed inside: nobody is ahead.
                self.orders[i].queue_ahead = 0;
            }
        }
        let Some((aggressor_side, mut size)) = aggressor else { return };
        // An aggressive sell hits resting buys at or above the bid, best price first.
        let passive = aggressor_side.opposite();
        let market = &self.slots[slot].market;
        let (bid, ask) = (market.bid, market.ask);
        let mut candidates: Vec<(i64, usize)> = self.slots[slot]
            .resting
            .iter()
            .copied()
            .filter(|&i| self.orders[i].order.side == passive && !self.orders[i].order.status.is_terminal())
            .filter_map(|i| {
                let l = self.orders[i].limit_ticks?;
                let reachable = match passive {
                    Side::Buy => l >= bid,
                    Side::Sell => l <= ask,
                };
                reachable.then_some((if passive == Side::Buy { -l } else { l }, i))
            })
            .collect();
        candidates.sort_unstable();
        for (_, i) in candidates {
            if size <= 0 {
                break;
            }
            let at_inside = self.orders[i].limit_ticks == Some(if passive == Side::Buy { bid } else { ask });
            if at_inside && self.orders[i].queue_ahead > 0 {
                let consumed = self.orders[i].queue_ahead.min(size);
                self.orders[i].queue_ahead -= consumed;
                size -= consumed;
                if size <= 0 {
                    break;
                }
            }
            let qty = self.orders[i].leaves().min(Decimal::from(size));
            let filled_shares = i64::try_from(qty.ceil()).unwrap_or(size);
            size -= filled_shares;
            let price = self.slots[slot].market.profile.price(self.orders[i].limit_ticks.unwrap_or_default());
            self.fill(i, qty, price);
        }
    }

    /// Books an execution of `qty` at `price` for order `i`.
    pub(crate) fn fill(&mut self, i: usize, qty: Decimal, price: Decimal) {
        if qty <= Decimal::ZERO {
            return;
        }
        let qty = qty.min(self.orders[i].leaves());
        if qty.is_zero() {
            return;
        }
        let now = self.now;
        self.exec_seq += 1;
        let tag = self.config.seed & 0xffff_ffff;
        let execution_id = ExecutionId::new(format!("{tag:08x}-0000-4000-9000-{:012x}", self.exec_seq));
        let (symbol, side) = (self.orders[i].order.symbol.clone(), self.orders[i].order.side);
        self.account.apply_fill(&self.config.fees, &symbol, side, qty, price);
        let o = &mut self.orders[i];
        let before = o.order.filled_qty.get();
        let after = before + qty;
        let old_avg = o.order.filled_avg_price.map_or(Decimal::ZERO, Price::get);
        let avg = (old_avg * before + price * qty).checked_div(after).unwrap_or(price).round_dp(9).normalize();
        o.order.filled_qty = Qty::new(after);
        o.order.filled_avg_price = Some(Price::new(avg));
        o.order.updated_at = Some(now);
        let complete = o.leaves().is_zero();
        if complete {
            o.order.filled_at = Some(now);
        }
        self.transition(i, if complete { TradeEvent::Fill } else { TradeEvent::PartialFill });
        let o = &mut self.orders[i];
        let fill = Fill {
            execution_id: execution_id.clone(),
            order_id: o.order.id.clone(),
            client_order_id: o.order.client_order_id.clone(),
            symbol,
            side,
            qty: Qty::new(qty),
            price: Price::new(price),
            time: now,
        };
        self.record(|| format!("fill {} {} {} @ {}", fill.client_order_id, fill.side, fill.qty, fill.price));
        let client_order_id = fill.client_order_id.clone();
        self.fills.push(fill);
        self.judge_fill(&client_order_id, side);
        let execution = Execution { id: execution_id, qty: Qty::new(qty), price: Price::new(price) };
        if complete {
            let slot = self.orders[i].slot;
            self.open.remove(&i);
            self.slots[slot].resting.retain(|&r| r != i);
            self.emit(i, TradeEvent::Fill, Some(execution));
        } else {
            self.emit(i, TradeEvent::PartialFill, Some(execution));
        }
    }
}
