//! The simulated account: cash, positions, regulatory fees and buying power as Alpaca computes it.
//!
//! Invariants: cash changes only by fills (buys pay `qty * price`, sells receive `qty * price`
//! minus fees), so cash + positions move exactly by fills minus fees; a sell frees nothing until
//! it fills; open buy orders reserve buying power; positions are never negative (the simulator
//! refuses short sales).

use std::collections::BTreeMap;

use rust_decimal::{Decimal, RoundingStrategy};
use tranche_domain::{Account, AccountStatus, Price, Qty, Side, Symbol, Usd};

use crate::config::{AccountConfig, AccountKind, FeeConfig};

/// Buying-power figures of an account at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Margin {
    /// What new buys may use.
    pub buying_power: Decimal,
    /// Reg-T buying power.
    pub regt: Decimal,
    /// Day-trading buying power (pattern day traders only).
    pub daytrading: Decimal,
    /// Buying power for non-marginable securities.
    pub non_marginable: Decimal,
}

/// One position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    /// Shares held.
    pub qty: Decimal,
    /// Average entry price.
    pub avg_entry: Decimal,
}

/// Cash and positions.
#[derive(Debug, Clone)]
pub struct AccountState {
    /// Cash or margin.
    pub kind: AccountKind,
    /// Margin multiplier.
    pub multiplier: u8,
    /// Cash balance.
    pub cash: Decimal,
    /// Positions by symbol.
    pub holdings: BTreeMap<Symbol, Holding>,
    /// Fees charged so far.
    pub fees_paid: Decimal,
    /// Order entry refused.
    pub trading_blocked: bool,
}

impl AccountState {
    /// The account of `config`; positions without an entry price take `entry_price(symbol)`.
    pub fn new(config: &AccountConfig, entry_price: impl Fn(&Symbol) -> Decimal) -> Self {
        let mut holdings = BTreeMap::new();
        for p in &config.positions {
            if p.qty.is_positive() {
                let avg_entry = p.avg_entry_price.map_or_else(|| entry_price(&p.symbol), Price::get);
                holdings.insert(p.symbol.clone(), Holding { qty: p.qty.get(), avg_entry });
            }
        }
        Self {
            kind: config.kind,
            multiplier: if config.kind == AccountKind::Cash { 1 } else { config.multiplier.max(1) },
            cash: config.starting_cash.get(),
            holdings,
            fees_paid: Decimal::ZERO,
            trading_blocked: config.trading_blocked,
        }
    }

    /// Shares held in `symbol`.
    pub fn qty(&self, symbol: &Symbol) -> Decimal {
        self.holdings.get(symbol).map_or(Decimal::ZERO, |h| h.qty)
    }

    /// Regulatory fees on a sell fill, rounded up to the cent.
    pub fn sell_fees(fees: &FeeConfig, qty: Decimal, price: Decimal) -> Decimal {
        let notional = qty.checked_mul(price).unwrap_or(Decimal::MAX);
        let sec =
            notional.checked_mul(fees.sec_per_million.get()).map_or(Decimal::ZERO, |v| v / Decimal::from(1_000_000));
        let taf = qty.checked_mul(fees.taf_per_share.get()).unwrap_or(Decimal::MAX).min(fees.taf_max.get());
        let up = |v: Decimal| v.round_dp_with_strategy(2, RoundingStrategy::AwayFromZero);
        up(sec).checked_add(up(taf)).unwrap_or(Decimal::MAX)
    }

    /// Books a fill; returns the fee charged.
    pub fn apply_fill(
        &mut self,
        fees: &FeeConfig,
        symbol: &Symbol,
        side: Side,
        qty: Decimal,
        price: Decimal,
    ) -> Decimal {
        let notional = qty.checked_mul(price).unwrap_or(Decimal::ZERO);
        match side {
            Side::Buy => {
                self.cash -= notional;
                let h = self.holdings.entry(symbol.clone()).or_insert(Holding { qty: Decimal::ZERO, avg_entry: price });
                let cost = h.qty.checked_mul(h.avg_entry).unwrap_or(Decimal::ZERO) + notional;
                h.qty += qty;
                if !h.qty.is_zero() {
                    h.avg_entry = (cost / h.qty).round_dp(6);
                }
                Decimal::ZERO
            }
            Side::Sell => {
                let fee = Self::sell_fees(fees, qty, price);
                self.cash += notional - fee;
                self.fees_paid += fee;
                let h = self.holdings.entry(symbol.clone()).or_insert(Holding { qty: Decimal::ZERO, avg_entry: price });
                h.qty -= qty;
                // Order entry refuses short sales, so a position never goes below zero; a
                // negative one would stay visible here rather than vanish.
                if h.qty.is_zero() {
                    self.holdings.remove(symbol);
                }
                fee
            }
        }
    }

    /// Market value of all positions at `mark(symbol)`.
    pub fn long_market_value(&self, mark: &impl Fn(&Symbol) -> Decimal) -> Decimal {
        self.holdings.iter().map(|(s, h)| h.qty.checked_mul(mark(s)).unwrap_or(Decimal::ZERO)).sum()
    }

    /// The margin figures of the account given the reservations of open buy orders, as Alpaca
    /// reports them. A cash account (or a margin account with multiplier 1) spends cash. A
    /// margin account's excess equity is `equity - initial margin` (50 % of the long market
    /// value): Reg-T buying power is twice it, non-marginable buying power is it once (so it is
    /// not cash: it stays positive with a margin debit; Alpaca's own figure differs and is not
    /// documented, only "not cash" is modelled); a pattern day trader (multiplier 4) also has
    /// four times the excess over maintenance margin (30 %, the protocol reference's figure) to
    /// day-trade, and its buying power is the larger of the two.
    pub fn margin(&self, reserved: Decimal, mark: &impl Fn(&Symbol) -> Decimal) -> Margin {
        if self.kind == AccountKind::Cash || self.multiplier <= 1 {
            let cash = self.cash - reserved;
            return Margin { buying_power: cash, regt: cash, daytrading: Decimal::ZERO, non_marginable: cash };
        }
        let lmv = self.long_market_value(mark);
        let equity = self.cash + lmv;
        let excess = (equity - lmv / Decimal::TWO).max(Decimal::ZERO);
        let regt = excess * Decimal::TWO - reserved;
        let daytrading = if self.multiplier >= 4 {
            (equity - lmv * Decimal::new(3, 1)).max(Decimal::ZERO) * Decimal::from(4) - reserved
        } else {
            Decimal::ZERO
        };
        Margin { buying_power: regt.max(daytrading), regt, daytrading, non_marginable: excess - reserved }
    }

    /// Buying power given the reservations of open buy orders (see [`AccountState::margin`]).
    pub fn buying_power(&self, reserved: Decimal, mark: &impl Fn(&Symbol) -> Decimal) -> Decimal {
        self.margin(reserved, mark).buying_power
    }

    /// The account snapshot the broker reports.
    pub fn snapshot(&self, reserved: Decimal, mark: &impl Fn(&Symbol) -> Decimal) -> Account {
        let equity = self.cash + self.long_market_value(mark);
        let margin = self.margin(reserved, mark);
        Account {
            status: AccountStatus::Active,
            cash: Usd::new(self.cash),
            buying_power: Usd::new(margin.buying_power),
            non_marginable_buying_power: Usd::new(margin.non_marginable.max(Decimal::ZERO)),
            regt_buying_power: Usd::new(margin.regt),
            daytrading_buying_power: Usd::new(margin.daytrading.max(Decimal::ZERO)),
            equity: Usd::new(equity),
            multiplier: self.multiplier,
            trading_blocked: self.trading_blocked,
            account_blocked: false,
            shorting_enabled: false,
        }
    }

    /// The position snapshot for `symbol` given the shares held by open sell orders.
    pub fn position(
        &self,
        symbol: &Symbol,
        held_for_orders: Decimal,
        mark: Decimal,
    ) -> Option<tranche_domain::Position> {
        let h = self.holdings.get(symbol)?;
        Some(tranche_domain::Position {
            symbol: symbol.clone(),
            qty: Qty::new(h.qty),
            qty_available: Qty::new((h.qty - held_for_orders).max(Decimal::ZERO)),
            avg_entry_price: Price::new(h.avg_entry),
            market_value: Usd::new(h.qty.checked_mul(mark).unwrap_or(Decimal::ZERO)),
            current_price: Some(Price::new(mark)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn fees_are_sell_side_only_and_capped() {
        let fees = FeeConfig::default();
        // $10,000 sold: SEC 0.278 -> 0.28; TAF 100 * 0.000166 = 0.0166 -> 0.02.
        assert_eq!(AccountState::sell_fees(&fees, d("100"), d("100")), d("0.30"));
        // TAF cap at 8.30 for a huge share count.
        let big = AccountState::sell_fees(&fees, d("1000000"), d("1"));
        assert_eq!(big, d("27.80") + d("8.30"));
        let mut account = AccountState::new(&AccountConfig::default(), |_| d("100"));
        let aapl = Symbol::parse("AAPL").unwrap();
        assert_eq!(account.apply_fill(&fees, &aapl, Side::Buy, d("100"), d("100")), Decimal::ZERO);
        assert_eq!(account.cash, d("90000"));
        account.apply_fill(&fees, &aapl, Side::Sell, d("100"), d("100"));
        assert_eq!(account.cash, d("99999.70"));
        assert!(account.holdings.is_empty());
    }

    #[test]
    fn buying_power_models() {
        let mark = |_: &Symbol| d("100");
        let mut config = AccountConfig::default();
        config.positions.push(crate::config::StartPosition {
            symbol: Symbol::parse("SPY").unwrap(),
            qty: Qty::new(d("100")),
            avg_entry_price: None,
        });
        let cash = AccountState::new(&config, |_| d("100"));
        assert_eq!(cash.buying_power(d("1000"), &mark), d("99000"));
        config.kind = AccountKind::Margin;
        let margin = AccountState::new(&config, |_| d("100"));
        // equity 110,000; initial margin 5,000; (105,000) * 2 - 1,000.
        assert_eq!(margin.buying_power(d("1000"), &mark), d("209000"));
        let figures = margin.margin(d("1000"), &mark);
        assert_eq!((figures.regt, figures.daytrading, figures.non_marginable), (d("209000"), d("0"), d("104000")));
        config.multiplier = 4;
        let pdt = AccountState::new(&config, |_| d("100")).margin(d("1000"), &mark);
        // excess over maintenance: 110,000 - 3,000 = 107,000; x4 - 1,000.
        assert_eq!((pdt.daytrading, pdt.buying_power), (d("427000"), d("427000")));
        config.multiplier = 1;
        let one = AccountState::new(&config, |_| d("100")).margin(d("1000"), &mark);
        assert_eq!((one.buying_power, one.non_marginable), (d("99000"), d("99000")), "multiplier 1 spends cash");
        // Alpaca's own example shape: a margin debit with non-marginable buying power left.
        config.multiplier = 2;
        config.starting_cash = Usd::new(d("-2000"));
        let debit = AccountState::new(&config, |_| d("100")).margin(Decimal::ZERO, &mark);
        assert!(debit.non_marginable > Decimal::ZERO, "NMBP {} with cash -2000", debit.non_marginable);
        let position = margin.position(&Symbol::parse("SPY").unwrap(), d("30"), d("100")).unwrap();
        assert_eq!(position.qty_available, Qty::new(d("70")));
    }
}
