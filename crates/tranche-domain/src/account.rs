//! Account, position, asset and market-clock snapshots as read from a broker.
//!
//! Invariant: these are facts reported by the broker at one moment; the engine never edits them,
//! it reads fresh ones.

use serde::{Deserialize, Serialize};

use crate::money::{Price, Qty, Usd};
use crate::symbol::Symbol;
use crate::time::Timestamp;

/// Whether the account may trade, as the broker states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    /// Open and approved (`ACTIVE`).
    Active,
    /// Any other state (onboarding, disabled, closed, ...), with the broker's word for it.
    Other(String),
}

/// A snapshot of the trading account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Account state.
    pub status: AccountStatus,
    /// Cash balance (negative is a margin debit).
    pub cash: Usd,
    /// What the broker will let new buy orders use now (open buy orders already deducted).
    pub buying_power: Usd,
    /// Buying power for non-marginable assets. On a margin account this is excess equity, not
    /// cash: it can be positive while cash is negative.
    pub non_marginable_buying_power: Usd,
    /// Reg-T (overnight) buying power: twice the excess equity on a margin account.
    #[serde(default)]
    pub regt_buying_power: Usd,
    /// Day-trading buying power: four times the excess over maintenance margin for a pattern
    /// day trader (multiplier 4), zero otherwise.
    #[serde(default)]
    pub daytrading_buying_power: Usd,
    /// Cash plus the market value of all positions.
    pub equity: Usd,
    /// Margin multiplier: 1 for a cash-like account, 2 or 4 for margin.
    pub multiplier: u8,
    /// Order entry refused by the broker.
    pub trading_blocked: bool,
    /// The whole account is blocked.
    pub account_blocked: bool,
    /// Short selling allowed.
    pub shorting_enabled: bool,
}

impl Account {
    /// True when the broker will accept new orders from this account.
    pub fn can_trade(&self) -> bool {
        self.status == AccountStatus::Active && !self.trading_blocked && !self.account_blocked
    }
}

/// A position in one symbol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The symbol held.
    pub symbol: Symbol,
    /// Shares held; negative for a short.
    pub qty: Qty,
    /// Shares not already held by open sell orders (what a new sell may use).
    pub qty_available: Qty,
    /// Average entry price.
    pub avg_entry_price: Price,
    /// Market value at the broker's current price.
    pub market_value: Usd,
    /// The broker's current price, when given.
    pub current_price: Option<Price>,
}

/// What the broker says about an instrument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asset {
    /// The symbol.
    pub symbol: Symbol,
    /// Listed and active at the broker.
    pub active: bool,
    /// Orders are accepted.
    pub tradable: bool,
    /// Fractional quantities are accepted.
    pub fractionable: bool,
    /// Can be sold short.
    pub shortable: bool,
    /// Counts toward margin buying power.
    pub marginable: bool,
}

/// The market clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketClock {
    /// The broker's time.
    pub timestamp: Timestamp,
    /// The regular session is open.
    pub is_open: bool,
    /// Next session open.
    pub next_open: Timestamp,
    /// Next session close.
    pub next_close: Timestamp,
}
