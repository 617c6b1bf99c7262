//! The simulated broker's core: a synchronous, deterministic state machine over virtual time.
//!
//! Owns the markets, the account, the orders, the fills, the schedule of future events (quote
//! updates, orders reaching the venue, cancels and replaces taking effect, session closes) and
//! the outbox of trade updates. `advance_to(t)` processes every scheduled event up to `t` in
//! time order (ties by insertion), so the same config, seed and call sequence replay exactly.
//! Invariants: see the crate documentation; the async ports in `ports` are thin locks around this.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use rust_decimal::Decimal;
use tranche_domain::{
    BrokerOrderId, ClientOrderId, Fill, Order, Qty, Quote, Side, Symbol, Timestamp, TradeEvent, TradeUpdate,
};

use crate::account::AccountState;
use crate::config::SimConfig;
use crate::market::Market;
use crate::outbox::{Fate, Outbox};
use crate::rng::Rng;
use crate::session::Calendar;

/// A future event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Action {
    /// A market updates its quote.
    Tick(usize),
    /// An order reaches the venue.
    Arrive(usize),
    /// A cancel request reaches the venue.
    CancelArrive(usize),
    /// A replace reaches the venue: old order, new order.
    ReplaceArrive(usize, usize),
    /// The session closes: DAY orders expire.
    Close,
    /// A replace answered with a timeout reaches the broker (index into `late_replaces`).
    LateReplace(usize),
    /// A slowly routed order becomes `pending_new`.
    Route(usize),
    /// An order whose submit was answered with a timeout is created now (index into `late`).
    LateCreate(usize),
    /// The broker cancels a working order unasked.
    BrokerCancel(usize),
    /// The owner sells the position of a working sell of ours from outside the run.
    OwnerSale(usize),
}

/// One symbol's market and the orders resting in it.
#[derive(Debug)]
pub(crate) struct Slot {
    pub market: Market,
    pub last_step: Timestamp,
    /// Indices of working orders, in arrival (time-priority) order.
    pub resting: Vec<usize>,
    /// The market's prints and bars.
    pub tape: crate::tape::Tape,
}

/// An order with the simulator's private state.
#[derive(Debug, Clone)]
pub(crate) struct SimOrder {
    pub order: Order,
    pub slot: usize,
    /// Shares to fill (for notional orders, fixed when the order reaches the venue).
    pub qty: Decimal,
    /// Buying power held per unfilled share (buys only).
    pub reserve_price: Decimal,
    /// Shares displayed ahead of this order at its price when it joined the queue.
    pub queue_ahead: i64,
    /// Limit in ticks of its market.
    pub limit_ticks: Option<i64>,
    /// For a replacement order: the order it replaces.
    pub replaces: Option<usize>,
    /// An untriggered stop: its stop price in ticks (it works once the market reaches it).
    pub stop_ticks: Option<i64>,
    /// A cancel was accepted and has not reached the venue yet: the order may still fill, and
    /// a replace is refused (a fill meanwhile shows the order `partially_filled`, but the
    /// cancel is still pending).
    pub cancel_pending: bool,
}

impl SimOrder {
    pub fn leaves(&self) -> Decimal {
        (self.qty - self.order.filled_qty.get()).max(Decimal::ZERO)
    }

    /// Buying power this order holds on its own (buys only).
    fn reservation(&self) -> Decimal {
        if self.order.side != Side::Buy {
            return Decimal::ZERO;
        }
        match self.order.notional {
            // Until the venue fixes its quantity, a notional buy holds its notional.
            Some(n) if self.qty.is_zero() => n.get(),
            _ => self.leaves().checked_mul(self.reserve_price).unwrap_or(Decimal::ZERO),
        }
    }
}

/// The simulated broker.
#[derive(Debug)]
pub struct Sim {
    pub(crate) config: SimConfig,
    pub(crate) calendar: Calendar,
    pub(crate) now: Timestamp,
    pub(crate) rng: Rng,
    pub(crate) symbols: BTreeMap<Symbol, usize>,
    pub(crate) slots: Vec<Slot>,
    pub(crate) account: AccountState,
    pub(crate) orders: Vec<SimOrder>,
    pub(crate) by_id: HashMap<BrokerOrderId, usize>,
    pub(crate) by_client: HashMap<ClientOrderId, usize>,
    pub(crate) open: BTreeSet<usize>,
    pub(crate) fills: Vec<Fill>,
    schedule: BinaryHeap<Reverse<(Timestamp, u64, Action)>>,
    schedule_seq: u64,
    pub(crate) outbox: Outbox,
    /// Status edges the domain's table refused (see `transition`).
    pub(crate) refused_transitions: u64,
    pub(crate) log: Vec<String>,
    pub(crate) subscriptions: BTreeMap<Symbol, u32>,
    pub(crate) quote_changes: Vec<Symbol>,
    /// Prints not yet taken by a listener (`None`: nobody listens, nothing is kept).
    pub(crate) prints: Option<Vec<crate::tape::Print>>,
    /// The tape is kept (a market-data server asked for it; off, the market's hot loop does no
    /// bookkeeping for it).
    pub(crate) tape_on: bool,
    pub(crate) exec_seq: u64,
    pub(crate) requests: u64,
    /// REST requests by kind (`account`, `submit`, ...).
    pub(crate) request_kinds: crate::tally::Tally,
    /// Submits answered with a timeout whose orders the broker creates later.
    pub(crate) late: Vec<crate::orders::LateOrder>,
    /// Replaces answered with a timeout that reach the broker later: (old order, request).
    pub(crate) late_replaces: Vec<(usize, tranche_domain::ReplaceRequest)>,
    /// Replaces refused as not yet routed that take effect once their order reaches the venue
    /// (`refused_replace_applied_ppm`): the order's index and the request.
    pub(crate) refused_replaces: Vec<(usize, tranche_domain::ReplaceRequest)>,
    /// The latest time a late order or a late replace is due at the broker (`None`: none yet).
    pub(crate) late_due_until: Option<tranche_domain::Timestamp>,
    /// Fills whose activities were served with unrelated ids (for counting that fault once each).
    pub(crate) activities_served: usize,
    /// How often each injected fault fired (the outbox counts its own).
    pub(crate) fired: crate::tally::Tally,
    /// The owner's sales made so far (`owner_sale_ppm`; they name the owner's orders).
    pub(crate) owner_sales: u32,
    /// The observer of Tranche's promises.
    pub(crate) referee: crate::referee::Referee,
}

/// Largest amount accepted in a configuration (keeps decimal arithmetic far from overflow).
fn config_max() -> Decimal {
    Decimal::from(1_000_000_000_000_000_000i64)
}

impl Sim {
    /// A simulator at `config.session.start`.
    pub fn new(config: SimConfig) -> Result<Self, String> {
        let account_cfg = &config.account;
        if account_cfg.starting_cash.get().abs() > config_max()
            || account_cfg.positions.iter().any(|p| p.qty.get().abs() > config_max() || p.qty.is_negative())
        {
            return Err("simulator account: cash and position quantities must be between 0 and 1e18".into());
        }
        if config.session.close <= config.session.open {
            return Err("simulator session: close must be after open".into());
        }
        config.check_durations()?;
        if config.session.close - config.session.open > chrono::Duration::days(1) {
            return Err("simulator session: a session lasts at most a day (close within 24 hours of open)".into());
        }
        let calendar = Calendar::new(&config.session);
        let now = config.session.start;
        let entry = |s: &Symbol| {
            let profile = crate::universe::AssetProfile::derive(&config, s);
            Decimal::new(profile.start_micros, 6).normalize()
        };
        let account = AccountState::new(&config.account, entry);
        let mut sim = Self {
            rng: Rng::derive(config.seed, "broker"),
            outbox: Outbox::new(config.seed),
            refused_transitions: 0,
            calendar,
            now,
            symbols: BTreeMap::new(),
            slots: Vec::new(),
            account,
            orders: Vec::new(),
            by_id: HashMap::new(),
            by_client: HashMap::new(),
            open: BTreeSet::new(),
            fills: Vec::new(),
            schedule: BinaryHeap::new(),
            schedule_seq: 0,
            log: Vec::new(),
            subscriptions: BTreeMap::new(),
            quote_changes: Vec::new(),
            prints: None,
            tape_on: false,
            exec_seq: 0,
            requests: 0,
            request_kinds: crate::tally::Tally::default(),
            late: Vec::new(),
            late_replaces: Vec::new(),
            refused_replaces: Vec::new(),
            late_due_until: None,
            activities_served: 0,
            fired: crate::tally::Tally::default(),
            owner_sales: 0,
            referee: crate::referee::Referee::default(),
            config,
        };
        let close = sim.calendar.next_close(now);
        sim.schedule_at(close, Action::Close);
        let held: Vec<Symbol> = sim.account.holdings.keys().cloned().collect();
        for symbol in held {
            sim.slot_of(&symbol);
        }
        sim.place_user_orders()?;
        Ok(sim)
    }

    /// The simulator's current time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The event log (empty unless `record_log` is on).
    pub fn log(&self) -> &[String] {
        &self.log
    }

    /// Every fill so far, oldest first.
    pub fn fills(&self) -> &[Fill] {
        &self.fills
    }

    /// Every order ever accepted, in submission order.
    pub fn orders(&self) -> impl Iterator<Item = &Order> {
        self.orders.iter().map(|o| &o.order)
    }

    /// Fees charged so far.
    pub fn fees_paid(&self) -> Decimal {
        self.account.fees_paid
    }

    /// Replaces the injected faults from now on (tests and the emulator's fault switches).
    pub fn set_faults(&mut self, faults: crate::config::FaultConfig) {
        self.config.faults = faults;
    }

    /// REST requests served so far (every read and every mutation, refused ones included).
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// REST requests so far by kind (`account`, `asset`, `submit`, `replace`, ...).
    pub fn request_kinds(&self) -> &crate::tally::Tally {
        &self.request_kinds
    }

    /// Symbols with at least one quote-feed subscription.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.len()
    }

    /// Updates lost to injected drops and outages.
    pub fn lost_updates(&self) -> u64 {
        self.outbox.lost
    }

    /// How often each kind of injected fault fired so far, by name (the trade-update channel's
    /// included).
    pub fn faults_fired(&self) -> crate::tally::Tally {
        let mut all = self.fired.clone();
        all.add(&self.outbox.fired);
        let gaps: u64 = self.slots.iter().map(|s| s.market.quote_gaps).sum();
        if gaps > 0 {
            all.hit_times("quote_gap", gaps);
        }
        all
    }

    pub(crate) fn record(&mut self, line: impl FnOnce() -> String) {
        if self.config.record_log {
            let stamp = self.now.format("%Y-%m-%dT%H:%M:%S%.3fZ");
            self.log.push(format!("{stamp} {}", line()));
        }
    }

    pub(crate) fn schedule_at(&mut self, at: Timestamp, action: Action) {
        self.schedule_seq += 1;
        self.schedule.push(Reverse((at, self.schedule_seq, action)));
    }

    pub(crate) fn after_ms(&self, ms: u64) -> Timestamp {
        let wait = chrono::Duration::milliseconds(i64::try_from(ms).unwrap_or(i64::MAX / 1_000_000));
        self.now.checked_add_signed(wait).unwrap_or(Timestamp::MAX_UTC)
    }

    /// The market slot of a known symbol, created (and scheduled) on first use.
    pub(crate) fn slot_of(&mut self, symbol: &Symbol) -> usize {
        if let Some(&i) = self.symbols.get(symbol) {
            return i;
        }
        let profile = crate::universe::AssetProfile::derive(&self.config, symbol);
        let halted = self.config.symbols.halted.contains(symbol);
        let mut market = Market::new(profile, self.config.seed, halted, self.now);
        let first = market.next_interval_ms(&self.config.market);
        let index = self.slots.len();
        self.slots.push(Slot { market, last_step: self.now, resting: Vec::new(), tape: crate::tape::Tape::default() });
        self.symbols.insert(symbol.clone(), index);
        let at = self.after_ms(first);
        self.schedule_at(at, Action::Tick(index));
        index
    }

    /// Processes every scheduled event up to `t` (never moves time backwards).
    pub fn advance_to(&mut self, t: Timestamp) {
        while let Some(Reverse((at, _, action))) = self.schedule.peek().copied() {
            if at > t {
                break;
            }
            self.schedule.pop();
            if at > self.now {
                self.now = at;
            }
            self.outbox.advance(self.now, &self.config.faults);
            self.handle(action);
        }
        if t > self.now {
            self.now = t;
        }
        self.outbox.advance(self.now, &self.config.faults);
    }

    /// When the next scheduled event or update delivery falls due.
    pub fn next_wakeup(&self) -> Option<Timestamp> {
        let scheduled = self.schedule.peek().map(|r| r.0 .0);
        match (scheduled, self.outbox.next_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn handle(&mut self, action: Action) {
        match action {
            Action::Tick(slot) => self.tick(slot),
            Action::Arrive(i) => self.arrive(i),
            Action::CancelArrive(i) => self.cancel_arrives(i),
            Action::ReplaceArrive(old, new) => self.replace_arrives(old, new),
            Action::Close => self.close_session(),
            Action::LateCreate(i) => self.create_late(i),
            Action::Route(i) => self.route(i),
            Action::LateReplace(i) => self.replace_late(i),
            Action::BrokerCancel(i) => self.broker_cancel(i),
            Action::OwnerSale(i) => self.owner_sale(i),
        }
    }

    fn tick(&mut self, slot: usize) {
        let elapsed = (self.now - self.slots[slot].last_step).num_milliseconds().max(0).unsigned_abs();
        let outcome = self.slots[slot].market.step(self.now, elapsed, &self.config.market, &self.config.faults);
        self.slots[slot].last_step = self.now;
        let symbol = self.slots[slot].market.profile.symbol.clone();
        if outcome.published {
            if self.config.record_log {
                if let Some(q) = self.slots[slot].market.published.clone() {
                    self.record(|| format!("quote {} {}x{} {}x{}", q.symbol, q.bid, q.ask, q.bid_size, q.ask_size));
                }
            }
            if self.subscriptions.contains_key(&symbol) {
                self.quote_changes.push(symbol);
            }
        }
        if self.calendar.is_open(self.now) {
            if let Some((side, size)) = outcome.aggressor.filter(|_| !self.slots[slot].market.halted) {
                self.print(slot, side, size);
            }
            self.trigger_stops(slot);
            self.match_resting(slot, outcome.aggressor);
        }
        let next = self.slots[slot].market.next_interval_ms(&self.config.market);
        let at = self.after_ms(next);
        self.schedule_at(at, Action::Tick(slot));
    }

    fn close_session(&mut self) {
        let expiring: Vec<usize> = self
            .open
            .iter()
            .copied()
            .filter(|&i| self.orders[i].order.time_in_force == tranche_domain::TimeInForce::Day)
            .collect();
        for i in expiring {
            self.finish(i, TradeEvent::Expired);
        }
        let next = self.calendar.next_close(self.now);
        self.schedule_at(next, Action::Close);
    }

    /// Moves order `i` by `event` through the domain's status table
    /// (`Order::apply_status_event`): the simulator's orders change status only along its edges.
    /// A refused edge is recorded, counted and dropped (the order keeps its status), never a
    /// panic; callers emit the event only when it was applied.
    pub(crate) fn transition(&mut self, i: usize, event: TradeEvent) -> bool {
        match self.orders[i].order.apply_status_event(event) {
            Ok(_) => {
                self.orders[i].order.updated_at = Some(self.now);
                true
            }
            Err(refused) => {
                self.refused_transitions += 1;
                let cid = self.orders[i].order.client_order_id.clone();
                self.record(|| format!("status edge refused for {cid}: {} on {}", refused.event, refused.from));
                false
            }
        }
    }

    /// Status edges the table refused (zero in a correct simulator; see `transition`).
    pub fn refused_transitions(&self) -> u64 {
        self.refused_transitions
    }

    /// The latest time a request answered with a timeout (a late order, a late replace) reaches
    /// the broker's books, whether or not it has yet: a harness that reads the broker's final
    /// state before then misses orders the broker creates after the run (`None`: no such
    /// request was ever made).
    pub fn late_requests_due_until(&self) -> Option<tranche_domain::Timestamp> {
        self.late_due_until
    }

    /// Ends order `i` with the terminal `event` (its status follows from the table) and tells
    /// the client.
    pub(crate) fn finish(&mut self, i: usize, event: TradeEvent) {
        if self.orders[i].order.status.is_terminal() || !self.transition(i, event) {
            return;
        }
        let o = &mut self.orders[i];
        let slot = o.slot;
        self.open.remove(&i);
        self.slots[slot].resting.retain(|&r| r != i);
        self.emit(i, event, None);
    }

    /// Queues a trade update for order `i` as it is now.
    pub(crate) fn emit(&mut self, i: usize, event: TradeEvent, execution: Option<tranche_domain::Execution>) {
        let order = self.orders[i].order.clone();
        let position_qty = execution.as_ref().map(|_| Qty::new(self.account.qty(&order.symbol)));
        let update = TradeUpdate { event, order, execution, position_qty, timestamp: Some(self.now) };
        let id = update.order.client_order_id.clone();
        let fate = self.outbox.send(update, self.now, &self.config.latency, &self.config.faults);
        self.record(|| match fate {
            Fate::Dropped => format!("update {event} {id} DROPPED"),
            Fate::Queued { duplicated, delayed_ms } => {
                format!(
                    "update {event} {id}{}{}",
                    if duplicated { " DUP" } else { "" },
                    if delayed_ms > 0 { format!(" +{delayed_ms}ms") } else { String::new() }
                )
            }
        });
    }

    /// The next trade update or stream marker that has been delivered.
    pub fn pop_event(&mut self) -> Option<tranche_broker::StreamEvent> {
        self.outbox.pop()
    }

    /// Symbols whose published quote changed since the last call (subscribed ones only).
    pub fn take_quote_changes(&mut self) -> Vec<Symbol> {
        std::mem::take(&mut self.quote_changes)
    }

    /// An aggressive order of the market's own flow prints at the inside it takes.
    fn print(&mut self, slot: usize, aggressor: tranche_domain::Side, size: i64) {
        if !self.tape_on {
            return;
        }
        let market = &self.slots[slot].market;
        let ticks = if aggressor == tranche_domain::Side::Buy { market.ask } else { market.bid };
        let price = tranche_domain::Price::new(market.profile.price(ticks));
        let symbol = market.profile.symbol.clone();
        let print =
            self.slots[slot].tape.print(&symbol, price, tranche_domain::Qty::new(Decimal::from(size)), self.now);
        if let Some(prints) = &mut self.prints {
            prints.push(print);
        }
    }

    /// Keeps the tape from now on: the last print and the bars of each market, for
    /// [`Sim::tape`] (a market-data server's trades and bars).
    pub fn keep_tape(&mut self) {
        self.tape_on = true;
    }

    /// Keeps the tape and every print from now on for [`Sim::take_prints`] (a market-data
    /// server's streamed trades).
    pub fn keep_prints(&mut self) {
        self.keep_tape();
        self.prints.get_or_insert_with(Vec::new);
    }

    /// The prints since the last call (none unless [`Sim::keep_prints`] was called).
    pub fn take_prints(&mut self) -> Vec<crate::tape::Print> {
        self.prints.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The tape of `symbol` (its last print and bars; empty unless [`Sim::keep_tape`] was
    /// called), starting its market when it is not running yet.
    ///
    /// # Errors
    /// [`crate::SimError::NotFound`] for a symbol the simulator does not list.
    pub fn tape(&mut self, symbol: &Symbol) -> Result<&crate::tape::Tape, crate::error::SimError> {
        if !self.is_known(symbol) {
            return Err(crate::error::SimError::NotFound { message: format!("no trades for {symbol}") });
        }
        let slot = self.slot_of(symbol);
        Ok(&self.slots[slot].tape)
    }

    /// The last published quote of `symbol`, if its market exists.
    pub fn published_quote(&self, symbol: &Symbol) -> Option<Quote> {
        self.symbols.get(symbol).and_then(|&i| self.slots[i].market.published.clone())
    }

    /// The true inside of `symbol`, if its market exists (what matching uses).
    pub fn true_quote(&self, symbol: &Symbol) -> Option<Quote> {
        self.symbols.get(symbol).map(|&i| self.slots[i].market.true_quote(self.now))
    }

    /// Adds a quote-feed reference to `symbol`.
    pub fn subscribe(&mut self, symbol: &Symbol) {
        if self.is_known(symbol) {
            self.slot_of(symbol);
        }
        *self.subscriptions.entry(symbol.clone()).or_insert(0) += 1;
    }

    /// Drops a quote-feed reference to `symbol`.
    pub fn release(&mut self, symbol: &Symbol) {
        if let Some(count) = self.subscriptions.get_mut(symbol) {
            *count -= 1;
            if *count == 0 {
                self.subscriptions.remove(symbol);
            }
        }
    }

    /// True when the broker knows `symbol`: not listed as unknown, and either in the universe,
    /// named by a rule, or invented (see `SymbolRules::invent`).
    pub fn is_known(&self, symbol: &Symbol) -> bool {
        let rules = &self.config.symbols;
        !rules.unknown.contains(symbol)
            && (rules.invent != Some(false) || crate::universe::is_listed(symbol) || rules.names(symbol))
    }

    /// Buying power held by open buy orders. While a replace is pending, the larger of the old
    /// and the new order is held, as at Alpaca.
    pub(crate) fn reserved(&self) -> Decimal {
        self.open
            .iter()
            .map(|&i| {
                let o = &self.orders[i];
                match o.replaces.filter(|old| self.open.contains(old)) {
                    Some(old) => o.reservation().max(self.orders[old].reservation()) - self.orders[old].reservation(),
                    None => o.reservation(),
                }
            })
            .sum()
    }

    /// Shares of `symbol` held by open sell orders.
    pub(crate) fn held_for_sells(&self, symbol: &Symbol) -> Decimal {
        self.open
            .iter()
            .map(|&i| &self.orders[i])
            .filter(|o| o.order.side == Side::Sell && &o.order.symbol == symbol)
            .map(SimOrder::leaves)
            .sum()
    }

    /// The mark price of `symbol` (true mid), or its entry price when it has no market.
    pub(crate) fn mark(&self, symbol: &Symbol) -> Decimal {
        match self.symbols.get(symbol) {
            Some(&i) => self.slots[i].market.mid().get(),
            None => self.account.holdings.get(symbol).map_or(Decimal::ZERO, |h| h.avg_entry),
        }
    }

    pub(crate) fn next_broker_id(&self) -> BrokerOrderId {
        let tag = self.config.seed & 0xffff_ffff;
        BrokerOrderId::new(format!("{tag:08x}-0000-4000-8000-{:012x}", self.orders.len()))
    }
}
