//! The replica of the predecessor's default execution algorithm (`Strategy::Predecessor`), as
//! `shared/reference/predecessor-spec.md` describes it: the liquidity analyzer's first price
//! (§3.10, §3.11), the re-peg two cents through the far side (§3.10), the phase-wide monitor loop
//! (§3.14: checks 2 s and 14 s after the phase's orders are placed, an order re-pegged once it is
//! 10 s old, everything still working sent to market 24 s after placement, and no phase ending
//! sooner), the quote acceptance (§3.9: fresh within 5 s, used even when suspicious, a spread up
//! to 10 %), and a market order when there is no quote (§3.8). Its defects (§6) are not copied:
//! the escalation sends what remains, not the original quantity (D4), and an order already final
//! is not left unfilled (D6).
//!
//! Invariants: pure functions of their inputs; every price is on the cent grid (the predecessor
//! rounds every price to cents, half-even, even below $1) and at least one cent.

use std::time::Duration;

use rust_decimal::{Decimal, RoundingStrategy};
use tranche_domain::{Bps, Price, Quote, QuoteLimits, Side, Timestamp};

/// The pause before each placement (§3.8 step 2): the loop starts after every order of the phase
/// is placed, one by one.
pub const PLACEMENT_PAUSE: Duration = Duration::from_millis(100);
/// The loop's check interval (`fill_wait ÷ 5`, clamped to 1..5 s: 2 s with the defaults).
pub const CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// `fill_wait_seconds`: an order younger than this is left alone, and the loop sleeps this long
/// after each check.
pub const FILL_WAIT: Duration = Duration::from_secs(10);
/// `repeg_min_improvement`: how far the re-peg goes through the far side, in cents.
pub const CROSS_CENTS: i64 = 2;
/// A quote is "suspicious" past a 10 % spread (§3.9), and still used when nothing better exists.
pub const MAX_SPREAD: Bps = Bps::new(Decimal::from_parts(1000, 0, 0, false, 0));
/// `quote_freshness_seconds`.
pub const QUOTE_FRESHNESS: Duration = Duration::from_secs(5);

/// The quote limits the predecessor prices with.
pub fn quote_limits() -> QuoteLimits {
    QuoteLimits { max_age: QUOTE_FRESHNESS, max_spread: MAX_SPREAD }
}

/// When a phase's monitor loop starts: once its `orders` are placed, one pause each after the
/// phase began.
pub fn loop_start(phase_start: Timestamp, orders: usize) -> Timestamp {
    let pause = chrono::Duration::from_std(PLACEMENT_PAUSE).unwrap_or_default();
    phase_start + pause * i32::try_from(orders.min(100_000)).unwrap_or(100_000)
}

/// The loop's two checks (`2 + 10·k` s after it starts... as the loop sleeps: check interval,
/// check, fill wait, check interval, check) and the final escalation after the last fill wait.
pub fn checks(loop_start: Timestamp) -> [Timestamp; 3] {
    let interval = chrono::Duration::from_std(CHECK_INTERVAL).unwrap_or_default();
    let wait = chrono::Duration::from_std(FILL_WAIT).unwrap_or_default();
    let first = loop_start + interval;
    let second = first + wait + interval;
    [first, second, second + wait]
}

/// When the loop ends: its final escalation, and the earliest its phase may end.
pub fn loop_end(loop_start: Timestamp) -> Timestamp {
    checks(loop_start)[2]
}

/// The next check of the loop after `now` (the last is the final escalation), if any remains.
pub fn next_check(loop_start: Timestamp, now: Timestamp) -> Option<Timestamp> {
    checks(loop_start).into_iter().find(|&t| t > now)
}

/// The first limit: the liquidity analyzer's recommendation for an order of `qty` shares. The
/// bid recommendation joins the bid, one cent above it when the order is over 30 % of the bid's
/// size, two when over 80 %, and one more cent (never above the ask less a cent) when the bid
/// outweighs the ask (imbalance below −0.2); the ask recommendation mirrors it from the ask;
/// both on cents, and an ask recommendation below the bid's is raised to it (§3.11). A buy takes
/// the bid recommendation, a sell the ask's.
pub fn first_limit(side: Side, quote: &Quote, qty: Decimal) -> Price {
    let cent = Decimal::new(1, 2);
    let (bid, ask) = (quote.bid.get(), quote.ask.get());
    let (bid_size, ask_size) = (quote.bid_size.get(), quote.ask_size.get());
    let total = bid_size + ask_size;
    let imbalance = if total.is_zero() { Decimal::ZERO } else { (ask_size - bid_size) / total };
    let ticks = |size: Decimal| {
        let ratio = qty / size.max(Decimal::ONE);
        if ratio > Decimal::new(8, 1) {
            Decimal::TWO
        } else if ratio > Decimal::new(3, 1) {
            Decimal::ONE
        } else {
            Decimal::ZERO
        }
    };
    let threshold = Decimal::new(2, 1);
    let mut bid_rec = bid + ticks(bid_size) * cent;
    if imbalance < -threshold {
        bid_rec = (bid_rec + cent).min(ask - cent);
    }
    let mut ask_rec = ask - ticks(ask_size) * cent;
    if imbalance > threshold {
        ask_rec = (ask_rec - cent).max(bid + cent);
    }
    let (bid_rec, mut ask_rec) = (cents(bid_rec), cents(ask_rec));
    if ask_rec < bid_rec {
        ask_rec = bid_rec;
    }
    match side {
        Side::Buy => bid_rec,
        Side::Sell => ask_rec,
    }
}

/// The re-peg: two cents through the far side (`allow_cross_spread_on_repeg`, the default).
pub fn repeg_limit(side: Side, quote: &Quote) -> Price {
    let cross = Decimal::new(CROSS_CENTS, 2);
    cents(match side {
        Side::Buy => quote.ask.get() + cross,
        Side::Sell => quote.bid.get() - cross,
    })
}

/// Rounded to cents, half-even, at least one cent.
fn cents(raw: Decimal) -> Price {
    Price::new(raw.round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven).max(Decimal::new(1, 2)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tranche_domain::{Qty, Symbol};

    fn quote(bid: &str, ask: &str, bid_size: i64, ask_size: i64) -> Quote {
        Quote {
            symbol: Symbol::parse("T").unwrap(),
            bid: bid.parse().unwrap(),
            bid_size: Qty::new(bid_size.into()),
            ask: ask.parse().unwrap(),
            ask_size: Qty::new(ask_size.into()),
            time: chrono::DateTime::UNIX_EPOCH,
        }
    }

    /// The spec's own examples (§3.11: bid 100.00, ask 100.10).
    #[test]
    fn first_limits_are_the_liquidity_analyzers() {
        let cases = [
            ("small order joins", 1000, 1000, 50, "100.00", "100.10"),
            ("over 80 % of the size", 100, 100, 90, "100.02", "100.08"),
            ("over 30 % of the size", 100, 100, 40, "100.01", "100.09"),
            ("bid outweighs the ask", 2000, 500, 10, "100.01", "100.10"),
        ];
        for (name, bid_size, ask_size, qty, buy, sell) in cases {
            let q = quote("100.00", "100.10", bid_size, ask_size);
            assert_eq!(first_limit(Side::Buy, &q, qty.into()), buy.parse().unwrap(), "{name}: buy");
            assert_eq!(first_limit(Side::Sell, &q, qty.into()), sell.parse().unwrap(), "{name}: sell");
        }
        // Never through the far side on a one-cent spread for the imbalance's cent; cents below
        // $1 too.
        let tight = quote("10.00", "10.01", 2000, 100);
        assert_eq!(first_limit(Side::Buy, &tight, 10.into()), "10.00".parse().unwrap());
        // A large order on a one-cent spread: the bid recommendation is 10.02 (two cents for
        // over 80 % of the size), the ask's 9.99 is raised to it.
        let big = quote("10.00", "10.01", 100, 100);
        assert_eq!(first_limit(Side::Buy, &big, 90.into()), "10.02".parse().unwrap());
        assert_eq!(first_limit(Side::Sell, &big, 90.into()), "10.02".parse().unwrap());
        let sub = quote("0.5012", "0.5030", 100, 100);
        assert_eq!(first_limit(Side::Buy, &sub, 10.into()), "0.50".parse().unwrap());
    }

    #[test]
    fn the_repeg_crosses_by_two_cents_on_the_cent_grid() {
        let q = quote("100.00", "100.50", 100, 100);
        assert_eq!(repeg_limit(Side::Buy, &q), "100.52".parse().unwrap());
        assert_eq!(repeg_limit(Side::Sell, &q), "99.98".parse().unwrap());
        let sub = quote("0.5000", "0.5010", 100, 100);
        assert_eq!(repeg_limit(Side::Buy, &sub), "0.52".parse().unwrap());
        assert_eq!(repeg_limit(Side::Sell, &quote("0.0100", "0.0200", 1, 1)), "0.01".parse().unwrap());
    }

    #[test]
    fn the_loop_checks_at_2_and_14_s_and_escalates_at_24_s() {
        let start = chrono::DateTime::UNIX_EPOCH;
        let anchor = loop_start(start, 5);
        assert_eq!(anchor, start + chrono::Duration::milliseconds(500));
        let secs = |t: Timestamp| (t - anchor).num_seconds();
        assert_eq!(checks(anchor).map(secs), [2, 14, 24]);
        assert_eq!(next_check(anchor, anchor).map(secs), Some(2));
        assert_eq!(next_check(anchor, anchor + chrono::Duration::seconds(2)).map(secs), Some(14));
        assert_eq!(next_check(anchor, anchor + chrono::Duration::seconds(24)), None);
    }
}
