//! Reads at the simulated broker: account, positions, assets, clock, quotes, orders, fills.
//!
//! Invariant: reads never change broker state (injected faults aside, which only consume the
//! fault stream).

use rust_decimal::Decimal;
use tranche_domain::{Account, Asset, ExecutionId, Fill, MarketClock, Order, Position, Quote, Symbol, Timestamp};

use crate::core::Sim;
use crate::error::SimError;

impl Sim {
    /// The account snapshot.
    pub fn account(&self) -> Account {
        let mark = |s: &Symbol| self.mark(s);
        self.account.snapshot(self.reserved(), &mark)
    }

    /// Every position.
    pub fn positions(&self) -> Vec<Position> {
        self.account
            .holdings
            .keys()
            .filter_map(|s| self.account.position(s, self.held_for_sells(s), self.mark(s)))
            .collect()
    }

    /// One position (`None` when flat).
    pub fn position(&self, symbol: &Symbol) -> Option<Position> {
        self.account.position(symbol, self.held_for_sells(symbol), self.mark(symbol))
    }

    /// Asset metadata.
    pub fn asset(&mut self, symbol: &Symbol) -> Result<Asset, SimError> {
        if !self.is_known(symbol) {
            return Err(SimError::NotFound { message: format!("asset not found for {symbol}") });
        }
        let slot = self.slot_of(symbol);
        Ok(Asset {
            symbol: symbol.clone(),
            active: true,
            tradable: !self.config.symbols.non_tradable.contains(symbol),
            fractionable: self.slots[slot].market.profile.fractionable,
            shortable: false,
            marginable: true,
        })
    }

    /// The symbols an asset list shows: the universe's, the ones the configuration names and
    /// the account holds, less those configured unknown; sorted.
    pub fn listed_symbols(&self) -> Vec<Symbol> {
        let rules = &self.config.symbols;
        let mut all: std::collections::BTreeSet<Symbol> = crate::universe::listed().collect();
        for list in [&rules.non_tradable, &rules.halted, &rules.non_fractionable, &rules.fractionable] {
            all.extend(list.iter().cloned());
        }
        all.extend(rules.prices.keys().cloned());
        all.extend(self.config.account.positions.iter().map(|p| p.symbol.clone()));
        all.extend(self.symbols.keys().cloned());
        all.retain(|s| !rules.unknown.contains(s));
        all.into_iter().collect()
    }

    /// The trading calendar.
    pub fn calendar(&self) -> &crate::session::Calendar {
        &self.calendar
    }

    /// The market clock.
    pub fn clock(&self) -> MarketClock {
        MarketClock {
            timestamp: self.now,
            is_open: self.calendar.is_open(self.now),
            next_open: self.calendar.next_open(self.now),
            next_close: self.calendar.next_close(self.now),
        }
    }

    /// The latest published quote (REST market data), activating the symbol's market.
    pub fn latest_quote(&mut self, symbol: &Symbol) -> Result<Quote, SimError> {
        if !self.is_known(symbol) {
            return Err(SimError::NotFound { message: format!("no quote for {symbol}") });
        }
        let slot = self.slot_of(symbol);
        self.slots[slot]
            .market
            .published
            .clone()
            .ok_or_else(|| SimError::NotFound { message: format!("no quote for {symbol}") })
    }

    /// Every open order, oldest first.
    pub fn open_orders(&self) -> Vec<Order> {
        self.open.iter().map(|&i| self.orders[i].order.clone()).collect()
    }

    /// Fill activities at or after `since`, oldest first, those younger than `activity_lag_ms`
    /// not yet. With `activity_ids_unrelated` each carries an id of its own instead of the trade
    /// update's execution id (as a real FILL activity, whose id nothing ties to the stream's
    /// `execution_id`).
    pub fn fill_activities(&mut self, since: Timestamp) -> Vec<Fill> {
        let unrelated = self.config.faults.activity_ids_unrelated;
        let seed = self.config.seed;
        let shown_until = self.now
            - chrono::Duration::milliseconds(i64::try_from(self.config.faults.activity_lag_ms).unwrap_or(i64::MAX));
        let lagging = self.fills.iter().filter(|f| f.time >= since && f.time > shown_until).count();
        if lagging > 0 {
            self.fired.hit_times("activity_lagged", lagging as u64);
        }
        let list: Vec<Fill> = self
            .fills
            .iter()
            .enumerate()
            .filter(|(_, f)| f.time >= since && f.time <= shown_until)
            .map(|(index, f)| {
                let mut fill = f.clone();
                if unrelated {
                    let mixed = (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed.rotate_left(17);
                    fill.execution_id = ExecutionId::new(format!("act-{mixed:016x}"));
                }
                fill
            })
            .collect();
        if unrelated {
            // Counted once per activity however often it is read.
            let served = self.fills.len();
            let newly = served.saturating_sub(self.activities_served);
            self.activities_served = self.activities_served.max(served);
            self.fired.hit_times("activity_id_unrelated", newly as u64);
        }
        list
    }

    /// Cash plus the value of every position at the true mid.
    pub fn equity(&self) -> Decimal {
        self.account().equity.get()
    }
}
