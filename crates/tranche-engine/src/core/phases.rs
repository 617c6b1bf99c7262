//! The run's phases: preflight, cleanup of stale orders, sells, settlement, buys, and the
//! transitions between them; sizing of items once a usable reference price is known.

use rust_decimal::Decimal;
use tranche_broker::BrokerError;
use tranche_domain::{Action, Fill, ItemOutcome, MarketClock, Position, Quote, Side, Timestamp, MARKET_BUY_COLLAR};

use super::{EngineCore, RunPhase, Stage};
use crate::config::Strategy;
use crate::events::{Phase, ProgressEvent};
use crate::io::{Command, PreflightData, TimerId};
use crate::predecessor;
use crate::sizing::{buy_qty, scale_buys, sell_qty};

/// The run stops trading this long before the session's close (its run deadline moves there):
/// what is still open is cancelled while the market is open, so nothing rests into the close
/// (DAY orders expire there) and nothing is sent after it (the broker would queue it for the next
/// open, to trade at prices the plan never saw). Long enough for the cancels' round trips.
pub(crate) const STOP_BEFORE_CLOSE: std::time::Duration = std::time::Duration::from_secs(15);

/// Reads of the fill activities again before the result, `retry_wait` apart, while an order's
/// cumulative filled quantity is more than its booked executions (activities lag the stream).
const FINAL_FILL_REREADS: u32 = 5;

/// `smart` escalates what still works this long before the close (sooner than its horizon if
/// that ends later): the trades get done while the market is open rather than left unfilled.
pub(crate) const ESCALATE_BEFORE_CLOSE: std::time::Duration = std::time::Duration::from_secs(60);

impl EngineCore {
    pub(super) fn start(&mut self, now: Timestamp, out: &mut Vec<Command>) {
        self.started_at = Some(now);
        self.phase = RunPhase::Preflight;
        self.emit_phase(Phase::Preflight, true, now, out);
        out.push(Command::SetTimer { id: TimerId::RunDeadline, at: Self::after(now, self.config.run_deadline) });
        let symbols = self.items.iter().filter(|i| i.side.is_some()).map(|i| i.item.symbol.clone()).collect();
        out.push(Command::Preflight { symbols });
    }

    /// Ends every unfinished item with `reason` (a HOLD as held, an item with fills by its fills,
    /// any other as failed).
    fn fail_all(&mut self, reason: &str, now: Timestamp, out: &mut Vec<Command>) {
        for i in 0..self.items.len() {
            if !self.items[i].stage.is_done() {
                let outcome = if self.items[i].side.is_none() {
                    ItemOutcome::Held
                } else if self.items[i].known_filled().is_zero() {
                    ItemOutcome::Failed
                } else {
                    self.outcome_of(i)
                };
                self.finish_item(i, outcome, Some(reason.to_owned()), now, out);
            }
        }
    }

    /// The run cannot trade (the preflight failed): it ends now, not at its deadline. An
    /// interrupted run's recorded orders are looked up and its fills read first, so that the
    /// result holds everything it did (and its orders still open are cancelled at the end).
    fn preflight_failed(&mut self, reason: &str, now: Timestamp, out: &mut Vec<Command>) {
        self.apply_recovery(now, out);
        self.fail_all(reason, now, out);
        self.emit_phase(Phase::Preflight, false, now, out);
        self.finish_run(now, out);
    }

    /// Takes the session's close from the broker's `clock` onto ours (the broker's time may
    /// differ from ours) and moves the run deadline to `STOP_BEFORE_CLOSE` before it if that is
    /// sooner; an error (the reason) when the run starts too close to the close to trade.
    /// The broker's time is taken as of when the preflight was asked for, not when its last
    /// read answered (those reads may take long: retries, an asset per symbol): the close may
    /// come out a little early, never late.
    fn bound_by_close(&mut self, clock: &MarketClock, now: Timestamp, out: &mut Vec<Command>) -> Result<(), String> {
        let asked = self.started_at.unwrap_or(now).min(now);
        let close = asked + (clock.next_close - clock.timestamp);
        let stop = Self::before(close, STOP_BEFORE_CLOSE);
        if now >= stop {
            return Err(format!(
                "preflight: the market closes at {}: too late to trade (orders stop {} s before the close)",
                clock.next_close.to_rfc3339(),
                STOP_BEFORE_CLOSE.as_secs()
            ));
        }
        self.close_at = Some(close);
        if self.started_at.is_none_or(|start| stop < Self::after(start, self.config.run_deadline)) {
            out.push(Command::SetTimer { id: TimerId::RunDeadline, at: stop });
        }
        Ok(())
    }

    pub(super) fn on_preflight(&mut self, data: PreflightData, now: Timestamp, out: &mut Vec<Command>) {
        let account = match data.account {
            Ok(a) => a,
            Err(e) => return self.preflight_failed(&format!("preflight: cannot read the account: {e}"), now, out),
        };
        if !account.can_trade() {
            return self.preflight_failed(
                &format!(
                    "preflight: the account cannot trade (status {:?}, trading blocked: {})",
                    account.status, account.trading_blocked
                ),
                now,
                out,
            );
        }
        match data.clock {
            Ok(clock) if clock.is_open => {
                if let Err(reason) = self.bound_by_close(&clock, now, out) {
                    return self.preflight_failed(&reason, now, out);
                }
            }
            Ok(clock) => {
                return self.preflight_failed(
                    &format!("preflight: the market is closed; it opens at {}", clock.next_open.to_rfc3339()),
                    now,
                    out,
                );
            }
            Err(e) => return self.preflight_failed(&format!("preflight: cannot read the market clock: {e}"), now, out),
        }
        let positions = match data.positions {
            Ok(p) => p,
            Err(e) => return self.preflight_failed(&format!("preflight: cannot read positions: {e}"), now, out),
        };
        // Which of this plan's orders from an earlier run still rest, and what the user's own
        // open buys hold of the cash: without them, neither trading nor a budget is safe.
        let open_orders = match data.open_orders {
            Ok(o) => o,
            Err(e) => return self.preflight_failed(&format!("preflight: cannot read open orders: {e}"), now, out),
        };
        self.account = Some(account);
        self.preflight_at = Some(now);
        self.set_positions(&positions);
        for (symbol, asset) in data.assets {
            for i in 0..self.items.len() {
                if self.items[i].item.symbol != symbol || self.items[i].stage.is_done() {
                    continue;
                }
                match &asset {
                    Ok(a) if a.tradable && a.active => self.items[i].asset = Some(a.clone()),
                    Ok(_) => self.finish_item(
                        i,
                        ItemOutcome::Failed,
                        Some(format!("{symbol} is not tradable at the broker")),
                        now,
                        out,
                    ),
                    Err(BrokerError::NotFound { .. }) => {
                        self.finish_item(
                            i,
                            ItemOutcome::Failed,
                            Some(format!("{symbol} is unknown to the broker")),
                            now,
                            out,
                        );
                    }
                    Err(e) => self.finish_item(
                        i,
                        ItemOutcome::Failed,
                        Some(format!("cannot read asset {symbol}: {e}")),
                        now,
                        out,
                    ),
                }
            }
        }
        for i in 0..self.items.len() {
            if self.items[i].item.action == Action::Hold {
                self.finish_item(i, ItemOutcome::Held, None, now, out);
            }
        }
        self.apply_recovery(now, out);
        self.sync_subscriptions(out);
        self.sort_open_orders(open_orders, out);
        self.emit_phase(Phase::Preflight, false, now, out);
        if self.stale_orders.is_empty() {
            self.start_phase(RunPhase::Sell, now, out);
        } else {
            self.phase = RunPhase::CancelStale;
            let at = Self::after(now, self.config.stale_cancel_deadline);
            out.push(Command::SetTimer { id: TimerId::StaleDeadline, at });
        }
    }

    /// Cancels only this plan's own stale orders (an earlier run's), never those of another plan
    /// or anyone else's (predecessor defect D12); the run waits for them to be final before
    /// sizing. Every other open buy holds cash the budget cannot use.
    fn sort_open_orders(&mut self, open_orders: Vec<tranche_domain::Order>, out: &mut Vec<Command>) {
        let tag = tranche_domain::ClientOrderId::plan_tag(&self.plan.plan_id);
        let known: std::collections::BTreeSet<_> =
            self.items.iter().flat_map(|i| i.children.iter().map(|c| c.client_id.clone())).collect();
        self.reserved_by_open_buys = Decimal::ZERO;
        for order in open_orders {
            let of_plan = order.client_order_id.parse_derived().is_some_and(|d| d.plan_tag == tag);
            if of_plan && order.status.is_cancelable() && !known.contains(&order.client_order_id) {
                self.stale_orders.insert(order.id.clone());
                out.push(Command::Cancel { item: None, order: order.id });
            } else if order.side == Side::Buy && !of_plan {
                let leaves = order.leaves_qty().map_or(Decimal::ZERO, tranche_domain::Qty::get);
                let price = order.limit_price.or(order.stop_price).map_or(Decimal::ZERO, tranche_domain::Price::get);
                let held = order
                    .notional
                    .map_or_else(|| leaves.checked_mul(price).unwrap_or(Decimal::MAX), tranche_domain::Usd::get);
                self.reserved_by_open_buys = self.reserved_by_open_buys.saturating_add(held);
            }
        }
    }

    fn set_positions(&mut self, positions: &[Position]) {
        for item in &mut self.items {
            item.position = positions.iter().find(|p| p.symbol == item.item.symbol).cloned();
        }
    }

    /// A stale order reached a final state (or could not be canceled because it already had).
    pub(super) fn stale_done(&mut self, id: &tranche_domain::BrokerOrderId, out: &mut Vec<Command>) {
        if self.stale_orders.remove(id) && self.stale_orders.is_empty() && self.phase == RunPhase::CancelStale {
            out.push(Command::CancelTimer(TimerId::StaleDeadline));
            self.refresh_positions(out);
        }
    }

    pub(super) fn refresh_positions(&mut self, out: &mut Vec<Command>) {
        self.phase = RunPhase::RefreshPositions;
        out.push(Command::FetchPositions);
    }

    pub(super) fn on_positions(
        &mut self,
        result: Result<Vec<Position>, BrokerError>,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) {
        if self.phase != RunPhase::RefreshPositions {
            return;
        }
        match result {
            Ok(positions) => {
                self.set_positions(&positions);
                self.start_phase(RunPhase::Sell, now, out);
            }
            Err(e) => {
                self.fail_all(&format!("cannot read positions after cancelling stale orders: {e}"), now, out);
                self.finish_run(now, out);
            }
        }
    }

    pub(super) fn start_phase(&mut self, phase: RunPhase, now: Timestamp, out: &mut Vec<Command>) {
        self.phase = phase;
        self.phase_started_at = Some(now);
        self.start_loop(phase, now, out);
        if matches!(phase, RunPhase::Sell | RunPhase::Buy) {
            self.judge_budget(now);
        }
        match phase {
            RunPhase::Sell => {
                self.emit_phase(Phase::Sell, true, now, out);
                out.push(Command::SetTimer {
                    id: TimerId::PhaseDeadline,
                    at: Self::after(now, self.config.phase_deadline),
                });
                for i in 0..self.items.len() {
                    if self.items[i].side == Some(Side::Sell) && self.items[i].stage == Stage::Waiting {
                        self.request_reference(i, now, out);
                    }
                }
            }
            RunPhase::Settle => {
                self.emit_phase(Phase::Settle, true, now, out);
                self.settle_deadline = Some(Self::after(now, self.config.settle_deadline));
                for i in 0..self.items.len() {
                    if self.items[i].side == Some(Side::Buy) && self.items[i].stage == Stage::Waiting {
                        self.request_reference(i, now, out);
                    }
                }
            }
            RunPhase::Buy => {
                self.emit_phase(Phase::Buy, true, now, out);
                out.push(Command::SetTimer {
                    id: TimerId::PhaseDeadline,
                    at: Self::after(now, self.config.phase_deadline),
                });
            }
            _ => {}
        }
        // The phase's items come first for the feed's streams.
        self.sync_subscriptions(out);
    }

    /// The predecessor replica's monitor loop of a trading phase starts once the phase's orders
    /// are placed (one pause each), and the phase lasts until it is over.
    fn start_loop(&mut self, phase: RunPhase, now: Timestamp, out: &mut Vec<Command>) {
        let side = match phase {
            RunPhase::Sell => Side::Sell,
            RunPhase::Buy => Side::Buy,
            _ => return,
        };
        self.loop_started_at = None;
        let orders = self.items.iter().filter(|i| i.side == Some(side) && !i.stage.is_done()).count();
        if self.config.strategy != Strategy::Predecessor || orders == 0 {
            return;
        }
        let start = predecessor::loop_start(now, orders);
        self.loop_started_at = Some(start);
        out.push(Command::SetTimer { id: TimerId::PhaseLoop, at: predecessor::loop_end(start) });
    }

    /// Asks for a usable reference price for item `i` (feed first, then REST).
    fn request_reference(&mut self, i: usize, now: Timestamp, out: &mut Vec<Command>) {
        self.items[i].started_at = Some(now);
        if self.items[i].recovered {
            // Sized by the interrupted run: continue with the recorded target, a sell from the
            // shares held now (the owner may have sold some while no run was watching).
            self.items[i].stage = Stage::Ready;
            self.items[i].position_check = self.items[i].side == Some(Side::Sell);
            return;
        }
        self.items[i].stage = Stage::NeedsQuote;
        if self.sizing_quote(&self.items[i].item.symbol, now).is_some() {
            self.on_reference_ready(i, now, out);
        } else {
            out.push(Command::FetchQuote { item: i, symbol: self.items[i].item.symbol.clone() });
        }
    }

    pub(super) fn on_rest_quote(
        &mut self,
        i: usize,
        result: Result<Quote, BrokerError>,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) {
        let Some(item) = self.items.get(i) else { return };
        let symbol = item.item.symbol.clone();
        if let Ok(q) = result {
            if q.symbol == symbol {
                self.remember_quote(q, now);
            }
        }
        match &self.items[i].stage {
            Stage::NeedsQuote => {
                if self.sizing_quote(&symbol, now).is_some() {
                    self.on_reference_ready(i, now, out);
                } else if self.items[i].item.is_liquidation() {
                    // A liquidation needs no price to be sized; it is worked by the escalation order.
                    self.on_reference_ready(i, now, out);
                } else {
                    let verdict = self
                        .quotes
                        .get(&symbol)
                        .map_or("none".to_owned(), |q| format!("{:?}", q.verdict(now, self.limits())).to_lowercase());
                    self.finish_item(
                        i,
                        ItemOutcome::Failed,
                        Some(format!("no usable quote to size the order (latest: {verdict})")),
                        now,
                        out,
                    );
                }
            }
            // Only the item that waits for this quote goes on; one that did not ask (a quote asked
            // for another item's sake, a second answer) has it remembered and waits for its own
            // re-peg, within the budget and the re-peg gap.
            Stage::Working { .. } if self.items[i].pending() == Some(super::item::Pending::Quote) => {
                self.continue_repeg(i, now, out);
            }
            _ => {}
        }
    }

    /// Item `i` has a usable reference (or is a liquidation without one): size it.
    pub(super) fn on_reference_ready(&mut self, i: usize, now: Timestamp, out: &mut Vec<Command>) {
        let symbol = self.items[i].item.symbol.clone();
        let mid = self.sizing_quote(&symbol, now).and_then(Quote::mid);
        let item = &mut self.items[i];
        item.reference = mid;
        item.arrival_mid = mid;
        match item.side {
            Some(Side::Sell) => {
                let available = item.position.as_ref().map_or(tranche_domain::Qty::ZERO, |p| p.qty_available);
                match sell_qty(&item.item, available, item.fractionable(), mid, self.config.min_notional) {
                    Ok(qty) if item.item.is_liquidation() && !item.fractionable() && !qty.fract().is_zero() => {
                        // The broker takes whole shares only of a non-fractionable asset: sell
                        // those, and say what is left (predecessor defect D5).
                        let (whole, left) = (qty.trunc(), qty.fract());
                        item.left_over = left;
                        if whole.is_zero() {
                            let reason = format!(
                                "only {} shares held: {symbol} is not fractionable and the broker sells whole shares only",
                                left.normalize()
                            );
                            self.finish_item(i, ItemOutcome::Skipped, Some(reason), now, out);
                        } else {
                            item.target = whole;
                            item.stage = Stage::Ready;
                        }
                    }
                    Ok(qty) => {
                        // Fewer shares held than the plan's amount buys: capped at the position.
                        let wanted =
                            mid.and_then(|m| item.item.trade_amount.abs().shares_at(m)).map(tranche_domain::Qty::get);
                        let whole = Decimal::ONE.min(qty);
                        if !item.item.is_liquidation()
                            && wanted.is_some_and(|w| qty == available.get() && w - qty >= whole)
                        {
                            item.shortfall = Some(format!(
                                "capped at the {} shares held; the plan asked for ${}",
                                qty.normalize(),
                                item.item.trade_amount.abs().get().round_dp(2)
                            ));
                        }
                        item.target = qty;
                        item.stage = Stage::Ready;
                    }
                    Err(reason) => self.finish_item(i, ItemOutcome::Skipped, Some(reason.to_string()), now, out),
                }
            }
            Some(Side::Buy) => item.stage = Stage::Ready, // sized with the others at settlement
            None => {}
        }
    }

    pub(super) fn on_account(
        &mut self,
        result: Result<tranche_domain::Account, BrokerError>,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) {
        if self.phase != RunPhase::Settle {
            return;
        }
        let account = match result {
            Ok(a) => a,
            Err(e) if self.account_errors < 5 => {
                self.account_errors += 1;
                out.push(Command::Emit(ProgressEvent::Warning {
                    symbol: None,
                    message: format!("reading the account failed ({e}); retrying"),
                    at: now,
                }));
                out.push(Command::SetTimer { id: TimerId::Settle, at: Self::after(now, self.config.settle_poll) });
                return;
            }
            Err(e) => {
                for i in 0..self.items.len() {
                    if self.items[i].side == Some(Side::Buy) && !self.items[i].stage.is_done() {
                        self.finish_item(
                            i,
                            ItemOutcome::Failed,
                            Some(format!("cannot read buying power: {e}")),
                            now,
                            out,
                        );
                    }
                }
                return;
            }
        };
        let budget = self.budget(&account);
        let mut sized: Vec<(usize, Decimal, Decimal, bool)> = Vec::new();
        let mut committed = Decimal::ZERO;
        for i in 0..self.items.len() {
            let item = &self.items[i];
            if item.side != Some(Side::Buy) || item.stage != Stage::Ready {
                continue;
            }
            if item.recovered {
                // Sized by the interrupted run; what remains still needs buying power.
                let held = item.remaining().saturating_mul(self.worst_buy_price(i, now));
                committed = committed.saturating_add(held);
                self.items[i].spend_cap = Some(self.items[i].filled_notional.saturating_add(held));
                continue;
            }
            let Some(reference) = item.reference else { continue };
            match buy_qty(&item.item, item.fractionable(), reference, self.config.min_notional) {
                Ok(qty) => {
                    let worst = self.worst_buy_price(i, now);
                    sized.push((i, qty, worst, item.fractionable()));
                }
                Err(reason) => self.finish_item(i, ItemOutcome::Skipped, Some(reason.to_string()), now, out),
            }
        }
        let need = sized.iter().fold(committed, |sum, (_, q, p, _)| sum.saturating_add(q.saturating_mul(*p)));
        let deadline_passed = self.settle_deadline.is_none_or(|d| now >= d);
        if need > budget && !deadline_passed && !self.proceeds_shown(&account) {
            // The sells' proceeds may not show yet: look again shortly, until the deadline.
            out.push(Command::SetTimer { id: TimerId::Settle, at: Self::after(now, self.config.settle_poll) });
            return;
        }
        let mut buys: Vec<(Decimal, Decimal, bool)> = sized.iter().map(|(_, q, p, f)| (*q, *p, *f)).collect();
        let factor = scale_buys(&mut buys, budget.saturating_sub(committed).max(Decimal::ZERO));
        if factor < Decimal::ONE {
            self.notes.push(format!(
                "buys scaled to {}% to fit buying power of ${}",
                (factor * Decimal::from(100)).round_dp(2),
                budget.round_dp(2)
            ));
        }
        for ((i, _, _, _), (qty, _, _)) in sized.iter().zip(buys) {
            let reference = self.items[*i].reference.unwrap_or_default();
            let notional = qty.saturating_mul(reference.get());
            if qty.is_zero() || notional < self.min_notional() {
                // A buy too small for the broker by the plan's own amount is skipped, as the
                // predecessor did; one the account cannot pay for is a buy not made.
                if factor < Decimal::ONE {
                    let reason = format!(
                        "not bought: scaled below the minimum notional to fit buying power of ${:.2}",
                        budget.round_dp(2)
                    );
                    self.finish_item(*i, ItemOutcome::Unfilled, Some(reason), now, out);
                } else {
                    self.finish_item(*i, ItemOutcome::Skipped, Some("below the minimum notional".into()), now, out);
                }
            } else {
                self.items[*i].target = qty;
                self.items[*i].spend_cap = Some(qty.saturating_mul(self.worst_buy_price(*i, now)));
                if factor < Decimal::ONE {
                    self.items[*i].shortfall = Some(format!(
                        "scaled to {}% of the planned ${:.2} to fit buying power of ${:.2}",
                        (factor * Decimal::from(100)).round_dp(2),
                        self.items[*i].item.trade_amount.abs().get().round_dp(2),
                        budget.round_dp(2)
                    ));
                }
            }
        }
        self.buy_cash = Some(self.spendable(&account));
        self.account = Some(account);
        self.emit_phase(Phase::Settle, false, now, out);
        self.start_phase(RunPhase::Buy, now, out);
    }

    /// Whether `account`'s cash shows every sell proceed booked for a fill since the preflight's
    /// read (less the most its regulatory fees can be: the SEC fee under 1 bp of the proceeds,
    /// FINRA's TAF $0.000166 a share up to $8.30 a fill, each rounded up to the cent). Once it
    /// does, waiting longer adds no cash: a buy-only plan, or one whose buys want more than the
    /// sells bring, is sized at once instead of polling the account until the settlement
    /// deadline. Fills of an interrupted run, before the preflight, are in that cash already.
    fn proceeds_shown(&self, account: &tranche_domain::Account) -> bool {
        let (Some(before), Some(since)) = (&self.account, self.preflight_at) else { return false };
        let (taf_per_share, taf_max, cent) = (Decimal::new(166, 6), Decimal::new(830, 2), Decimal::new(1, 2));
        let (proceeds, fees) = self
            .items
            .iter()
            .filter(|i| i.side == Some(Side::Sell))
            .flat_map(|i| i.fills.values())
            .filter(|f| f.at >= since)
            .fold((Decimal::ZERO, Decimal::ZERO), |(proceeds, fees), f| {
                let value = f.qty.saturating_mul(f.price);
                let taf = f.qty.saturating_mul(taf_per_share).min(taf_max);
                (proceeds.saturating_add(value), fees.saturating_add(taf).saturating_add(cent))
            });
        let fees = fees.saturating_add(proceeds.saturating_mul(Decimal::new(1, 4)));
        account.cash.get().saturating_add(fees) >= before.cash.get().saturating_add(proceeds)
    }

    /// What the plan's buys may spend: the account's cash less what open buy orders of others
    /// hold (never borrowed; a margin account lends, and its buying power counts the loan),
    /// or with `use_margin` the broker's buying power; less the configured buffer.
    pub(crate) fn budget(&self, account: &tranche_domain::Account) -> Decimal {
        let buffer = Decimal::ONE - self.config.buying_power_buffer.get() / Decimal::from(10_000);
        self.spendable(account).checked_mul(buffer).unwrap_or(Decimal::ZERO)
    }

    /// What the buys may hold at most, all together: cash less others' open buys (or, with
    /// `use_margin`, the broker's buying power). The buffer is kept out of sizing only.
    fn spendable(&self, account: &tranche_domain::Account) -> Decimal {
        let available = if self.config.use_margin {
            account.buying_power.get()
        } else {
            let cash = account.cash.get().saturating_sub(self.reserved_by_open_buys);
            account.buying_power.get().min(cash)
        };
        available.max(Decimal::ZERO)
    }

    /// The most a buy of item `i` may pay per share: the far side plus the escalation band (or
    /// Alpaca's market collar, `MARKET_BUY_COLLAR`, when market orders may be sent), plus 1 % for
    /// drift.
    fn worst_buy_price(&self, i: usize, now: Timestamp) -> Decimal {
        let item = &self.items[i];
        let reference = item.reference.map_or(Decimal::ZERO, tranche_domain::Price::get);
        let far = self.sizing_quote(&item.item.symbol, now).map_or(reference, |q| q.ask.get()).max(reference);
        let market_possible =
            self.config.strategy != Strategy::Smart || self.config.escalation == crate::config::Escalation::Market;
        let band = if market_possible {
            MARKET_BUY_COLLAR - Decimal::ONE
        } else {
            self.config.protection_band.get() / Decimal::from(10_000)
        };
        far.saturating_mul(Decimal::ONE + band).saturating_mul(Decimal::new(101, 2))
    }

    /// Starts ready items while slots are free, and moves on when a phase is complete.
    pub(super) fn progress(&mut self, now: Timestamp, out: &mut Vec<Command>) {
        if self.finished {
            return;
        }
        if let Some(reason) = self.aborted.clone() {
            // Finish once every working item has cancelled what it had open.
            if !self.items.iter().any(|i| i.stage.is_active()) {
                for i in 0..self.items.len() {
                    if !self.items[i].stage.is_done() {
                        self.finish_item(i, ItemOutcome::Failed, Some(reason.clone()), now, out);
                    }
                }
                self.finish_run(now, out);
            }
            return;
        }
        if self.run_out_of_time {
            if self.items.iter().all(|i| i.stage.is_done()) {
                self.finish_run(now, out);
            }
            return;
        }
        let side = match self.phase {
            RunPhase::Sell => Side::Sell,
            RunPhase::Buy => Side::Buy,
            RunPhase::Settle => {
                let buys_left = self.items.iter().any(|i| i.side == Some(Side::Buy) && !i.stage.is_done());
                let quotes_pending =
                    self.items.iter().any(|i| i.side == Some(Side::Buy) && i.stage == Stage::NeedsQuote);
                if !buys_left {
                    self.emit_phase(Phase::Settle, false, now, out);
                    self.finish_run(now, out);
                } else if !quotes_pending && !self.settle_requested {
                    // Every buy has its reference: read the buying power the sells freed.
                    self.settle_requested = true;
                    out.push(Command::FetchAccount);
                }
                return;
            }
            _ => return,
        };
        let active = self.items.iter().filter(|i| i.stage.is_active()).count();
        // The predecessor places every order of the phase (one by one, §3.3).
        let mut free = if self.config.strategy == Strategy::Predecessor {
            usize::MAX
        } else {
            self.config.concurrency.saturating_sub(active)
        };
        for i in 0..self.items.len() {
            if free == 0 {
                break;
            }
            if self.items[i].side == Some(side) && self.items[i].stage == Stage::Ready {
                free -= 1;
                self.start_item(i, now, out);
            }
        }
        let loop_over = self.loop_started_at.is_none_or(|start| now >= predecessor::loop_end(start));
        let phase_done = self.items.iter().filter(|i| i.side == Some(side)).all(|i| i.stage.is_done())
            && (self.config.strategy != Strategy::Predecessor || loop_over);
        if phase_done {
            out.push(Command::CancelTimer(TimerId::PhaseDeadline));
            match side {
                Side::Sell => {
                    self.emit_phase(Phase::Sell, false, now, out);
                    self.start_phase(RunPhase::Settle, now, out);
                    self.progress(now, out);
                }
                Side::Buy => {
                    self.emit_phase(Phase::Buy, false, now, out);
                    self.finish_run(now, out);
                }
            }
        }
    }

    fn start_item(&mut self, i: usize, now: Timestamp, out: &mut Vec<Command>) {
        let item = &mut self.items[i];
        item.stage = Stage::Working { pending: None };
        let (symbol, side, qty, mid) =
            (item.item.symbol.clone(), item.side.unwrap_or(Side::Buy), item.target, item.arrival_mid);
        out.push(Command::Emit(ProgressEvent::ItemStarted {
            symbol,
            side,
            qty: qty.into(),
            arrival_mid: mid,
            at: now,
        }));
        if let Some(c) = self.items[i].working_child() {
            // An order of an interrupted run may still work: re-read it and keep it on the
            // re-peg schedule (its updates may have been lost while nobody listened).
            let child = &self.items[i].children[c];
            if let Some(id) = child.broker_id.clone() {
                out.push(Command::LookupOrder { item: i, client_order_id: child.client_id.clone(), order: id });
            }
            out.push(Command::SetTimer { id: TimerId::Repeg(i), at: Self::after(now, self.config.repeg_interval) });
        }
        self.place_next(i, now, out);
    }

    pub(super) fn on_phase_deadline(&mut self, now: Timestamp, out: &mut Vec<Command>) {
        for i in 0..self.items.len() {
            match &self.items[i].stage {
                Stage::Working { .. } if !self.stream_ever_up => self.close_item(
                    i,
                    "phase deadline reached: the trade-update stream never listened, so no order was sent",
                    now,
                    out,
                ),
                Stage::Working { .. } => self.close_item(i, "phase deadline reached", now, out),
                Stage::Ready | Stage::NeedsQuote if self.phase_side() == self.items[i].side => {
                    self.finish_item(
                        i,
                        ItemOutcome::Unfilled,
                        Some("phase deadline reached before the item started".into()),
                        now,
                        out,
                    );
                }
                _ => {}
            }
        }
    }

    pub(super) fn phase_side(&self) -> Option<Side> {
        match self.phase {
            RunPhase::Sell => Some(Side::Sell),
            RunPhase::Buy | RunPhase::Settle => Some(Side::Buy),
            _ => None,
        }
    }

    /// The run is out of time: every open order is cancelled, and the result follows once the
    /// cancels are final (so that no fill lands after the final fill read), or after a grace of
    /// `cancel_confirm_wait` if the broker does not confirm them (those orders are then named in
    /// the result by the driver).
    pub(super) fn on_run_deadline(&mut self, now: Timestamp, out: &mut Vec<Command>) {
        if self.run_out_of_time {
            // Stopped already (asked to): its cancels and result are under way.
            return;
        }
        let closing = self.close_at.is_some_and(|close| now >= Self::before(close, STOP_BEFORE_CLOSE));
        // Stopped for the close, the run ends (it is not left to resume: the rest of the plan
        // would trade at the next open, on prices it never saw).
        self.stopped_for_close = closing;
        let reason = match self.close_at {
            Some(close) if closing => format!(
                "the market closes at {}: trading stopped {} s before the close",
                close.format("%H:%M:%S UTC"),
                STOP_BEFORE_CLOSE.as_secs()
            ),
            _ => "run deadline reached".to_owned(),
        };
        self.stop_trading(&reason, now, out);
    }

    /// The run was asked to stop (a signal): as at its deadline, with `reason`, and left to
    /// resume. Nothing happens once the run is finished or already stopping.
    pub(super) fn on_interrupt(&mut self, reason: &str, now: Timestamp, out: &mut Vec<Command>) {
        // Finishing already (every item done, the final reads out): the run completes.
        if self.finished || self.run_out_of_time || self.finishing != super::Finishing::No {
            return;
        }
        self.interrupted = true;
        self.notes.push(format!("{reason}: open orders cancelled; the plan is left to resume"));
        out.push(Command::CancelTimer(TimerId::RunDeadline));
        self.stop_trading(reason, now, out);
    }

    /// Stops trading for `reason`: every open order is cancelled, and every item ends once its
    /// cancels are final (or after the grace).
    fn stop_trading(&mut self, reason: &str, now: Timestamp, out: &mut Vec<Command>) {
        self.run_out_of_time = true;
        let reason = reason.to_owned();
        for i in 0..self.items.len() {
            match &self.items[i].stage {
                Stage::Done { .. } => {}
                Stage::Working { .. } | Stage::Closing { .. } if self.items[i].any_open() => {
                    self.close_item(i, &reason, now, out);
                }
                _ => {
                    let outcome = self.outcome_of(i);
                    self.finish_item(i, outcome, Some(reason.clone()), now, out);
                }
            }
        }
        out.push(Command::SetTimer { id: TimerId::FinalGrace, at: Self::after(now, self.config.cancel_confirm_wait) });
    }

    /// The grace after the run deadline is over: the run ends with what is known.
    pub(super) fn on_final_grace(&mut self, now: Timestamp, out: &mut Vec<Command>) {
        for i in 0..self.items.len() {
            if !self.items[i].stage.is_done() {
                let outcome = self.outcome_of(i);
                let stopped = if self.interrupted { "interrupted" } else { "run deadline reached" };
                let reason = format!("{stopped}; its cancel was not confirmed in time");
                self.finish_item(i, outcome, Some(reason), now, out);
            }
        }
        self.finish_run(now, out);
    }

    pub(super) fn on_stream_up(&mut self, now: Timestamp, out: &mut Vec<Command>) {
        let was_down = !self.stream_up;
        self.stream_up = true;
        self.stream_ever_up = true;
        if was_down {
            // Orders held back while the stream was down may go now.
            for i in 0..self.items.len() {
                if self.items[i].stage.is_working() {
                    self.resend(i, now, out);
                }
                if self.items[i].stage.is_working()
                    && !self.items[i].is_busy()
                    && self.items[i].working_child().is_none()
                {
                    self.place_next(i, now, out);
                }
            }
        }
    }

    /// Updates may have been lost: re-read every open child and the fills since the gap.
    pub(super) fn on_stream_gap(&mut self, since: Timestamp, _now: Timestamp, out: &mut Vec<Command>) {
        self.stream_up = false;
        for (i, item) in self.items.iter().enumerate() {
            for c in item.children.iter().filter(|c| matches!(c.state, super::ChildState::Live(_))) {
                if let Some(id) = &c.broker_id {
                    out.push(Command::LookupOrder { item: i, client_order_id: c.client_id.clone(), order: id.clone() });
                }
            }
        }
        self.fill_reads_out += 1;
        out.push(Command::FetchFills { since });
    }

    pub(super) fn on_fills(&mut self, result: Result<Vec<Fill>, BrokerError>, now: Timestamp, out: &mut Vec<Command>) {
        self.fills_requested = false;
        self.fill_reads_out = self.fill_reads_out.saturating_sub(1);
        self.fills_read_not_before = Self::after(now, self.config.retry_wait);
        let final_answer = self.finishing == super::Finishing::AwaitingFills && self.fill_reads_out == 0;
        let fills = match result {
            Ok(fills) => fills,
            Err(e) => {
                if final_answer {
                    self.notes.push(format!("final fill reconciliation failed: {e}"));
                    self.finishing = super::Finishing::Reconciled;
                    self.finish_run(now, out);
                } else {
                    // Read again after the wait, for the items still missing executions.
                    for i in 0..self.items.len() {
                        self.after_change(i, now, out);
                    }
                }
                return;
            }
        };
        for i in 0..self.items.len() {
            self.items[i].learn_id_spaces(&fills);
            for fill in self.items[i].new_in_activity_read(&fills) {
                self.record_fill(i, &fill, None, out);
            }
        }
        for i in 0..self.items.len() {
            self.after_change(i, now, out);
        }
        if final_answer {
            let short: Vec<String> = self
                .items
                .iter()
                .filter(|item| item.executions_missing())
                .map(|item| item.item.symbol.to_string())
                .collect();
            if !short.is_empty() && self.final_rereads < FINAL_FILL_REREADS {
                // The activities lag the stream: what the broker counts and no read showed yet
                // is read again before the result, `retry_wait` later.
                self.final_rereads += 1;
                self.fills_read_since = Some(self.run_fills_since(now));
                out.push(Command::SetTimer { id: TimerId::FillsRead, at: Self::after(now, self.config.retry_wait) });
                return;
            }
            if !short.is_empty() {
                self.notes.push(format!(
                    "{}: the broker reports fills its fill activities do not show yet; the result has the fills it could read",
                    short.join(", ")
                ));
            }
            self.finishing = super::Finishing::Reconciled;
            self.finish_run(now, out);
        }
    }
}
