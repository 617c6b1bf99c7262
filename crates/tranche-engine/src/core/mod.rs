//! The decision core: a synchronous state machine, `handle(input, now) -> Vec<Command>`.
//!
//! Owns the run's phases (preflight, stale-order cleanup, sells, settlement, buys), every item's
//! state and the latest quotes it was told about. It performs no I/O and reads no clock: the
//! driver executes its commands and feeds the answers back. Invariants: at most one request per
//! item is in flight; a submit is never repeated blindly (an unknown outcome is looked up by
//! client order id); no new order is sent while the trade-update stream is down; every item ends
//! in the result exactly once.

mod budget;
mod item;
mod phases;
mod quote_history;
mod recovery;
mod report;
mod streams;
mod work;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;
use tranche_domain::{
    Account, BrokerOrderId, ClientOrderId, Quote, QuoteLimits, QuoteVerdict, RebalancePlan, Symbol, Timestamp,
};

use crate::config::EngineConfig;
use crate::events::Phase;
use crate::io::{Command, Input, TimerId};

pub(crate) use item::{ChildState, ItemState, Stage};
pub use recovery::Recovery;

/// An order of the run not known to be final when the run ends (see
/// [`EngineCore::open_orders`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOrder {
    /// Its client order id.
    pub client_id: ClientOrderId,
    /// The broker's id, when the broker answered.
    pub broker_id: Option<BrokerOrderId>,
    /// A submit whose answer never came (lost, or cut off in flight): until when the broker may
    /// still create it (its last send plus `late_order_window`); a lookup that finds nothing
    /// before then proves nothing.
    pub may_appear_until: Option<Timestamp>,
}

/// Which part of the run is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunPhase {
    Start,
    Preflight,
    CancelStale,
    RefreshPositions,
    Sell,
    Settle,
    Buy,
    Done,
}

/// The engine's decision core for one plan.
#[derive(Debug)]
pub struct EngineCore {
    pub(crate) config: EngineConfig,
    pub(crate) plan: RebalancePlan,
    pub(crate) items: Vec<ItemState>,
    /// The items of each symbol (the plan's items are fixed for the run), so a quote finds
    /// the items it concerns without scanning them all.
    pub(crate) items_of: BTreeMap<Symbol, Vec<usize>>,
    pub(crate) phase: RunPhase,
    pub(crate) started_at: Option<Timestamp>,
    pub(crate) phase_started_at: Option<Timestamp>,
    /// When the predecessor replica's monitor loop of the current phase started.
    pub(crate) loop_started_at: Option<Timestamp>,
    /// The Trading API requests of the last minute, against the broker's budget.
    pub(crate) budget: budget::RequestBudget,
    /// The current phase's first orders alone were more than the budget had room for when it
    /// started: the budget, not the market, sets its pace, so `smart` sends each item's first
    /// order as its escalation (a protected limit: one request, no re-peg to pay for).
    pub(crate) budget_bound: bool,
    pub(crate) quotes: BTreeMap<Symbol, Quote>,
    /// The last few quotes of each symbol, in time order (see `quote_history`).
    pub(crate) recent_quotes: BTreeMap<Symbol, std::collections::VecDeque<Quote>>,
    pub(crate) stream_up: bool,
    /// How often the trade-update stream broke (down, or a gap) in this run: a replace decided
    /// before a break may miss a fill whose update the break lost.
    pub(crate) stream_breaks: u64,
    /// The trade-update stream has listened at least once.
    pub(crate) stream_ever_up: bool,
    pub(crate) stale_orders: BTreeSet<BrokerOrderId>,
    pub(crate) account: Option<Account>,
    /// When the preflight read the account: the settlement expects that account's cash plus
    /// the proceeds of the sells filled since (not those of an interrupted run, already in it).
    pub(crate) preflight_at: Option<Timestamp>,
    pub(crate) settle_requested: bool,
    pub(crate) settle_deadline: Option<Timestamp>,
    pub(crate) account_errors: u32,
    /// The symbols whose quotes are streamed (see `streams`).
    pub(crate) subscribed: Vec<Symbol>,
    /// The most symbols the quote feed streams at once (`None`: no limit).
    pub(crate) stream_slots: Option<usize>,
    pub(crate) fills_requested: bool,
    pub(crate) finished: bool,
    pub(crate) notes: Vec<String>,
    pub(crate) recovery: Option<Recovery>,
    pub(crate) aborted: Option<String>,
    /// Where the final fill reconciliation is.
    pub(crate) finishing: Finishing,
    /// Fill activities from this time on belong to the run (an interrupted run's included).
    pub(crate) fills_since: Option<Timestamp>,
    /// What open buy orders not of this plan held at preflight (the budget cannot use it).
    pub(crate) reserved_by_open_buys: Decimal,
    /// What all the buys together may hold (set when they are sized).
    pub(crate) buy_cash: Option<Decimal>,
    /// The run deadline passed: open orders are being cancelled before the result.
    pub(crate) run_out_of_time: bool,
    /// The regular session's close, on this run's clock (the broker's clock read at the
    /// preflight, moved by how far ours differs from it): `smart` escalates
    /// `ESCALATE_BEFORE_CLOSE` before it, and the run stops trading `STOP_BEFORE_CLOSE` before it.
    pub(crate) close_at: Option<Timestamp>,
    /// The run deadline was the close's: the run ends rather than being left to resume.
    pub(crate) stopped_for_close: bool,
    /// The run was asked to stop (`Input::Interrupted`): it ends as at its deadline and is left
    /// to resume.
    pub(crate) interrupted: bool,
    /// The orders whose final state is being read before the result.
    pub(crate) final_lookups: BTreeSet<ClientOrderId>,
    /// No cross-check read of fills before this time (one `retry_wait` after the last).
    pub(crate) fills_read_not_before: Timestamp,
    /// The start of the cross-check read waiting for its timer.
    pub(crate) fills_read_since: Option<Timestamp>,
    /// Fill reads asked for and not answered yet (the final reconciliation waits for all of
    /// them, so an earlier read's answer never stands for the final one).
    pub(crate) fill_reads_out: u32,
    /// Final fill reads made again because they did not show every execution the broker counts.
    pub(crate) final_rereads: u32,
}

/// The final fill reconciliation before the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finishing {
    /// Not started.
    No,
    /// The orders not known to be final are being looked up; the fill read follows.
    AwaitingOrders,
    /// Every order's state is read: the fill read is next.
    OrdersRead,
    /// Fill activities requested; the result follows their answer.
    AwaitingFills,
    /// Done: the result may be built.
    Reconciled,
}

impl EngineCore {
    /// A core for `plan` with `config` (validate both first).
    pub fn new(plan: RebalancePlan, config: EngineConfig) -> Self {
        let per_minute = config.requests_per_minute;
        let items: Vec<ItemState> = plan.items.iter().cloned().map(ItemState::new).collect();
        let mut items_of: BTreeMap<Symbol, Vec<usize>> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            items_of.entry(item.item.symbol.clone()).or_default().push(i);
        }
        Self {
            config,
            plan,
            items,
            items_of,
            phase: RunPhase::Start,
            started_at: None,
            phase_started_at: None,
            loop_started_at: None,
            budget: budget::RequestBudget::new(per_minute),
            budget_bound: false,
            quotes: BTreeMap::new(),
            recent_quotes: BTreeMap::new(),
            // Gated: no order goes out before the trade-update stream listens (the first
            // `StreamUp` opens the gate), so no update of ours can be missed.
            stream_up: false,
            stream_breaks: 0,
            stream_ever_up: false,
            stale_orders: BTreeSet::new(),
            account: None,
            preflight_at: None,
            settle_requested: false,
            settle_deadline: None,
            account_errors: 0,
            subscribed: Vec::new(),
            stream_slots: None,
            fills_requested: false,
            finished: false,
            notes: Vec::new(),
            recovery: None,
            aborted: None,
            finishing: Finishing::No,
            fills_since: None,
            reserved_by_open_buys: Decimal::ZERO,
            buy_cash: None,
            run_out_of_time: false,
            close_at: None,
            stopped_for_close: false,
            interrupted: false,
            final_lookups: BTreeSet::new(),
            fills_read_not_before: chrono::DateTime::<chrono::Utc>::MIN_UTC,
            fills_read_since: None,
            fill_reads_out: 0,
            final_rereads: 0,
        }
    }

    /// A core that continues an interrupted run of `plan` from what the ledger recorded.
    pub fn resuming(plan: RebalancePlan, config: EngineConfig, recovery: Recovery) -> Self {
        let mut core = Self::new(plan, config);
        core.recovery = Some(recovery);
        core
    }

    /// This run's orders not known to be final. Empty after a normal end; after a deadline or
    /// an abort these may still be working at the broker, or (a submit whose answer was lost,
    /// or cut off in flight) may yet be created by it.
    pub fn open_orders(&self) -> Vec<OpenOrder> {
        let window = self.config.late_order_window;
        self.items
            .iter()
            .flat_map(|item| item.children.iter().filter(|c| c.is_open()))
            .map(|c| OpenOrder {
                client_id: c.client_id.clone(),
                broker_id: c.broker_id.clone(),
                may_appear_until: c.may_yet_appear().then(|| Self::after(c.sent_at, window)),
            })
            .collect()
    }

    /// True once the run has produced its result.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// True when the run reached its deadline with items it had not finished (not when it
    /// stopped for the session's close: that run is over, not to be resumed).
    pub fn ran_out_of_time(&self) -> bool {
        self.run_out_of_time && !self.stopped_for_close
    }

    /// The run was asked to stop before it finished: it is to be left resumable, whatever
    /// `resumable_at_deadline` says (its user stopped it; running it again continues it).
    pub fn interrupted(&self) -> bool {
        self.interrupted
    }

    /// Handles one input at time `now`.
    pub fn handle(&mut self, input: Input, now: Timestamp) -> Vec<Command> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        match input {
            Input::Start => self.start(now, &mut out),
            Input::Preflight(data) => self.on_preflight(*data, now, &mut out),
            Input::Positions(result) => self.on_positions(result, now, &mut out),
            Input::Account(result) => self.on_account(result, now, &mut out),
            Input::ItemPosition { item, result } => self.on_item_position(item, result, now, &mut out),
            Input::RestQuote { item, result } => self.on_rest_quote(item, result, now, &mut out),
            Input::RestQuotes { items, result } => {
                for item in items {
                    let Some(symbol) = self.items.get(item).map(|i| i.item.symbol.clone()) else { continue };
                    let one = match &result {
                        Ok(quotes) => quotes.iter().find(|q| q.symbol == symbol).cloned().ok_or_else(|| {
                            tranche_broker::BrokerError::NotFound { what: format!("latest quote of {symbol}") }
                        }),
                        Err(e) => Err(e.clone()),
                    };
                    self.on_rest_quote(item, one, now, &mut out);
                }
            }
            Input::Submitted { item, client_order_id, result } => {
                self.on_submitted(item, &client_order_id, result, now, &mut out)
            }
            Input::ReplaceCleared { item, old, request, current } => {
                self.on_replace_cleared(item, old, request, current, now, &mut out);
            }
            Input::ReplaceHeldBack { item, old, client_order_id } => {
                self.on_replace_held_back(item, &old, &client_order_id, now, &mut out);
            }
            Input::Replaced { item, old, client_order_id, result } => {
                self.on_replaced(item, &old, &client_order_id, result, now, &mut out);
            }
            Input::Canceled { item, order, result } => self.on_canceled(item, &order, result, now, &mut out),
            Input::LookedUp { item, client_order_id, result } => {
                self.on_looked_up(item, &client_order_id, result, now, &mut out);
                if self.finishing == Finishing::AwaitingOrders
                    && self.final_lookups.remove(&client_order_id)
                    && self.final_lookups.is_empty()
                {
                    self.finishing = Finishing::OrdersRead;
                    self.finish_run(now, &mut out);
                }
            }
            Input::Fills(result) => self.on_fills(result, now, &mut out),
            Input::Update(update) => self.on_update(&update, now, &mut out),
            Input::StreamUp => self.on_stream_up(now, &mut out),
            Input::StreamDown => {
                self.stream_up = false;
                self.stream_breaks += 1;
            }
            Input::StreamGap { since } => {
                self.stream_breaks += 1;
                self.on_stream_gap(since, now, &mut out);
            }
            Input::Quote(quote) => self.on_quote(quote, now, &mut out),
            Input::Quotes(quotes) => quotes.into_iter().for_each(|q| self.on_quote(q, now, &mut out)),
            Input::SubscribeRefused { symbols, message } => {
                self.on_subscribe_refused(&symbols, &message, now, &mut out);
            }
            Input::LedgerFailed(reason) => self.abort(&format!("ledger write failed: {reason}"), now, &mut out),
            Input::Interrupted(reason) => self.on_interrupt(&reason, now, &mut out),
            Input::IntentFailed { item, client_order_id, reason } => {
                if let Some(it) = self.items.get_mut(item) {
                    if let Some(c) = it.child_by_client(&client_order_id) {
                        it.answered(c);
                        // A re-send's first copy may still appear: it stays possibly live.
                        it.children[c].state =
                            if it.children[c].not_found > 0 { ChildState::Uncertain } else { ChildState::NotPlaced };
                    }
                }
                self.abort(&format!("ledger write failed, order not sent: {reason}"), now, &mut out);
            }
            Input::Timer(id) => self.on_timer(id, now, &mut out),
        }
        self.progress(now, &mut out);
        self.note_cancels_sent(&out);
        self.budget.record(now, &out);
        out
    }

    /// Marks the orders of this step's cancels as awaiting the cancel's answer (unless one was
    /// accepted already): whether an order that ends cancelled was ended by us is judged on it.
    fn note_cancels_sent(&mut self, out: &[Command]) {
        for command in out {
            let Command::Cancel { item: Some(i), order } = command else { continue };
            let Some(item) = self.items.get_mut(*i) else { continue };
            if let Some(c) = item.child_by_broker(order) {
                let child = &mut item.children[c];
                if child.cancel != item::CancelAnswer::Accepted {
                    child.cancel = item::CancelAnswer::Awaiting;
                }
            }
        }
    }

    pub(crate) fn limits(&self) -> QuoteLimits {
        if self.config.strategy == crate::config::Strategy::Predecessor {
            return crate::predecessor::quote_limits();
        }
        QuoteLimits { max_age: self.config.quote_max_age, max_spread: self.config.max_spread }
    }

    /// The latest quote for `symbol` if it is sane at `now`.
    pub(crate) fn sane_quote(&self, symbol: &Symbol, now: Timestamp) -> Option<&Quote> {
        self.quotes.get(symbol).filter(|q| q.verdict(now, self.limits()) == QuoteVerdict::Sane)
    }

    /// A fresh, two-sided, uncrossed quote whose spread is wider than `max_spread`: real (a
    /// thin name, a passing widening) but not one to cross. Adaptive pricing joins its near side
    /// and waits rather than escalating through it.
    pub(crate) fn wide_quote(&self, symbol: &Symbol, now: Timestamp) -> Option<&Quote> {
        self.quotes.get(symbol).filter(|q| q.verdict(now, self.limits()) == QuoteVerdict::TooWide).filter(|q| {
            let relaxed = QuoteLimits {
                max_age: self.config.quote_max_age,
                max_spread: tranche_domain::Bps::new(Decimal::from(10_000)),
            };
            q.verdict(now, relaxed) == QuoteVerdict::Sane
        })
    }

    /// A quote good enough to size an order from (not to price one): two-sided and uncrossed,
    /// even if wide or somewhat old (at most ten times the pricing age limit).
    pub(crate) fn sizing_quote(&self, symbol: &Symbol, now: Timestamp) -> Option<&Quote> {
        let relaxed = QuoteLimits {
            max_age: self.config.quote_max_age.saturating_mul(10),
            max_spread: tranche_domain::Bps::new(Decimal::from(10_000)),
        };
        self.quotes.get(symbol).filter(|q| q.verdict(now, relaxed) == QuoteVerdict::Sane)
    }

    fn on_quote(&mut self, quote: Quote, now: Timestamp, out: &mut Vec<Command>) {
        let symbol = quote.symbol.clone();
        self.remember_quote(quote, now);
        // Items waiting for a usable quote may proceed.
        let Some(of_symbol) = self.items_of.get(&symbol) else { return };
        let waiting: Vec<usize> =
            of_symbol.iter().copied().filter(|&i| self.items[i].stage == Stage::NeedsQuote).collect();
        for i in waiting {
            if self.sizing_quote(&symbol, now).is_some() {
                self.on_reference_ready(i, now, out);
            }
        }
        if self.config.is_adaptive() && self.config.repeg_on_quote {
            // By position: the list is not copied on every quote.
            let mut k = 0;
            while let Some(i) = self.items_of.get(&symbol).and_then(|items| items.get(k)).copied() {
                self.repeg_on_quote(i, now, out);
                k += 1;
            }
        }
    }

    fn on_timer(&mut self, id: TimerId, now: Timestamp, out: &mut Vec<Command>) {
        match id {
            TimerId::Repeg(i) => self.on_repeg_timer(i, now, out),
            TimerId::Retry(i) => self.on_retry_timer(i, now, out),
            TimerId::StaleDeadline => {
                if self.phase == RunPhase::CancelStale {
                    self.notes.push(format!(
                        "{} stale order(s) did not confirm cancellation in time",
                        self.stale_orders.len()
                    ));
                    self.stale_orders.clear();
                    self.refresh_positions(out);
                }
            }
            TimerId::StaleRetry => {
                if self.phase == RunPhase::CancelStale {
                    for id in &self.stale_orders {
                        out.push(Command::Cancel { item: None, order: id.clone() });
                    }
                }
            }
            TimerId::Settle => {
                if self.phase == RunPhase::Settle {
                    out.push(Command::FetchAccount);
                }
            }
            TimerId::PhaseDeadline => self.on_phase_deadline(now, out),
            // Nothing to do but look at the phase again (`progress` runs after every input).
            TimerId::PhaseLoop => {}
            TimerId::RunDeadline => self.on_run_deadline(now, out),
            TimerId::FinalGrace => self.on_final_grace(now, out),
            TimerId::FillsRead => {
                if let Some(since) = self.fills_read_since.take() {
                    self.fill_reads_out += 1;
                    out.push(Command::FetchFills { since });
                }
            }
        }
    }

    pub(crate) fn client_id(&self, i: usize) -> ClientOrderId {
        let item = &self.items[i];
        let side = item.side.unwrap_or(tranche_domain::Side::Buy);
        ClientOrderId::derive(&self.plan.plan_id, &item.item.symbol, side, item.attempt)
    }

    pub(crate) fn min_notional(&self) -> Decimal {
        self.config.min_notional.get()
    }

    /// `now + d`, saturating at the end of representable time (a duration from outside, such as
    /// a broker's `Retry-After`, can be arbitrarily large).
    pub(crate) fn after(now: Timestamp, d: std::time::Duration) -> Timestamp {
        chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
    }

    /// `now - d`, saturating at the start of representable time.
    pub(crate) fn before(now: Timestamp, d: std::time::Duration) -> Timestamp {
        chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
    }

    /// When to try again after `failures` consecutive failures: `retry_wait` doubled per
    /// failure, at most 16 times as long.
    pub(crate) fn backoff(&self, now: Timestamp, failures: u32) -> Timestamp {
        Self::after(now, self.config.retry_wait.saturating_mul(1 << failures.min(4)))
    }

    pub(crate) fn emit_phase(&self, phase: Phase, started: bool, now: Timestamp, out: &mut Vec<Command>) {
        out.push(Command::Emit(if started {
            crate::events::ProgressEvent::PhaseStarted { phase, at: now }
        } else {
            crate::events::ProgressEvent::PhaseDone { phase, at: now }
        }));
    }
}
