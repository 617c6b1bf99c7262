//! Limit prices: where the first limit sits, where each re-peg moves it, where the escalation
//! caps it. Pure functions of a sane quote (the predecessor replica's prices are in
//! `crate::predecessor`).
//!
//! Invariants: every price is on the tick grid and positive; a step limit lies between the near
//! and far side (a buy never above the ask, a sell never below the bid) and is rounded toward the
//! passive side; only an escalation goes beyond the far side, and by at most the configured band.

use rust_decimal::Decimal;
use tranche_domain::{round_to_tick, Bps, Price, Quote, Rounding, Side};

/// The limit at `aggressiveness` (0 = near side, 1 = far side) between the sides of `quote`.
pub fn step_limit(side: Side, quote: &Quote, aggressiveness: Decimal) -> Price {
    let near = quote.near_side(side).get();
    let far = quote.far_side(side).get();
    let a = aggressiveness.clamp(Decimal::ZERO, Decimal::ONE);
    let raw = near + (far - near) * a;
    let (rounding, lo, hi) = match side {
        Side::Buy => (Rounding::Down, near, far),
        Side::Sell => (Rounding::Up, far, near),
    };
    let price = round_to_tick(Price::new(raw), rounding).get().clamp(lo, hi);
    positive(Price::new(price))
}

/// The aggressiveness of re-peg step `step` of `steps` (step 0 is the first limit).
pub fn aggressiveness_at(step: u32, steps: u32, initial: Decimal, last: Decimal) -> Decimal {
    if steps == 0 {
        return last;
    }
    let k = Decimal::from(step.min(steps));
    initial + (last - initial) * k / Decimal::from(steps)
}

/// How much the quote's sizes lean against an order on `side`, from −1 to 1: positive when
/// they lean against it (more shares bid than offered before a buy: buyers are pressing and
/// the price tends to rise next), negative when with it, 0 without sizes.
pub fn adverse_imbalance(side: Side, quote: &Quote) -> Decimal {
    let (bid, ask) = (quote.bid_size.get(), quote.ask_size.get());
    let total = bid + ask;
    if total <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    let lean = (bid - ask) / total;
    match side {
        Side::Buy => lean,
        Side::Sell => -lean,
    }
}

/// The adaptive aggressiveness: from `initial` to `last` as `elapsed` runs through `horizon`,
/// tilted by `weight` times the adverse imbalance of `quote`, within 0 and 1.
pub fn adaptive_aggressiveness(
    elapsed: std::time::Duration,
    horizon: std::time::Duration,
    (initial, last): (Decimal, Decimal),
    weight: Decimal,
    side: Side,
    quote: &Quote,
) -> Decimal {
    let share = if horizon.is_zero() {
        Decimal::ONE
    } else {
        let ms = |d: std::time::Duration| Decimal::from(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        (ms(elapsed) / ms(horizon)).min(Decimal::ONE)
    };
    let by_time = initial + (last - initial) * share;
    (by_time + weight * adverse_imbalance(side, quote)).clamp(Decimal::ZERO, Decimal::ONE)
}

/// The escalation limit: `band` beyond the far side `far`, rounded back toward the far side
/// (never beyond the band) and never less aggressive than the far side itself (so it is
/// marketable).
pub fn escalation_limit(side: Side, far: Price, band: Bps) -> Price {
    let signed = match side {
        Side::Buy => band,
        Side::Sell => Bps::new(-band.get()),
    };
    let raw = far.offset_bps(signed).unwrap_or(far);
    let rounding = match side {
        Side::Buy => Rounding::Down,
        Side::Sell => Rounding::Up,
    };
    positive(round_to_tick(raw, rounding).max_for(side, far))
}

fn positive(price: Price) -> Price {
    if price.is_positive() {
        price
    } else {
        Price::new(Decimal::new(1, 4))
    }
}

trait AtLeastFar {
    fn max_for(self, side: Side, far: Price) -> Price;
}

impl AtLeastFar for Price {
    /// Never less aggressive than the far side itself.
    fn max_for(self, side: Side, far: Price) -> Price {
        match side {
            Side::Buy => self.max(far),
            Side::Sell => self.min(far),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tranche_domain::{Qty, Symbol};

    fn quote(bid: &str, ask: &str) -> Quote {
        Quote {
            symbol: Symbol::parse("T").unwrap(),
            bid: bid.parse().unwrap(),
            bid_size: Qty::new(100.into()),
            ask: ask.parse().unwrap(),
            ask_size: Qty::new(100.into()),
            time: chrono::DateTime::UNIX_EPOCH,
        }
    }

    fn p(s: &str) -> Price {
        s.parse().unwrap()
    }

    #[test]
    fn step_limits_table() {
        let q = quote("100.00", "100.10");
        let cases = [
            ("buy_near", Side::Buy, "0", "100.00"),
            ("buy_far", Side::Buy, "1", "100.10"),
            ("buy_40pct_rounds_down", Side::Buy, "0.45", "100.04"),
            ("sell_near", Side::Sell, "0", "100.10"),
            ("sell_far", Side::Sell, "1", "100.00"),
            ("sell_45pct_rounds_up", Side::Sell, "0.45", "100.06"),
            ("clamped", Side::Buy, "7", "100.10"),
        ];
        for (name, side, a, want) in cases {
            assert_eq!(step_limit(side, &q, a.parse().unwrap()), p(want), "{name}");
        }
        let one_tick = quote("10.00", "10.01");
        assert_eq!(step_limit(Side::Buy, &one_tick, "0.5".parse().unwrap()), p("10.00"));
        let sub = quote("0.1234", "0.1250");
        assert_eq!(step_limit(Side::Buy, &sub, "0.5".parse().unwrap()), p("0.1242"));
    }

    #[test]
    fn schedule_steps_evenly() {
        let (a0, a1) = ("0.4".parse().unwrap(), Decimal::ONE);
        assert_eq!(aggressiveness_at(0, 3, a0, a1), a0);
        assert_eq!(aggressiveness_at(3, 3, a0, a1), a1);
        assert_eq!(aggressiveness_at(9, 3, a0, a1), a1);
        assert_eq!(aggressiveness_at(0, 0, a0, a1), a1);
        assert_eq!(aggressiveness_at(1, 3, a0, a1), "0.6".parse().unwrap());
    }

    fn sized(bid_size: i64, ask_size: i64) -> Quote {
        Quote { bid_size: Qty::new(bid_size.into()), ask_size: Qty::new(ask_size.into()), ..quote("100.00", "100.10") }
    }

    #[test]
    fn imbalance_leans_against_the_side_it_threatens() {
        let cases = [
            ("bids press a buy", Side::Buy, 300, 100, "0.5"),
            ("bids help a sell", Side::Sell, 300, 100, "-0.5"),
            ("offers help a buy", Side::Buy, 100, 300, "-0.5"),
            ("even", Side::Buy, 200, 200, "0"),
            ("no sizes", Side::Sell, 0, 0, "0"),
        ];
        for (name, side, bid, ask, want) in cases {
            assert_eq!(adverse_imbalance(side, &sized(bid, ask)), want.parse::<Decimal>().unwrap(), "{name}");
        }
    }

    #[test]
    fn adaptive_aggressiveness_table() {
        let secs = std::time::Duration::from_secs;
        let ends = ("0.2".parse().unwrap(), Decimal::ONE);
        let half: Decimal = "0.5".parse().unwrap();
        let cases = [
            ("at the start, even book", 0, 200, 200, "0.2"),
            ("half the horizon gone", 15, 200, 200, "0.6"),
            ("past the horizon", 45, 200, 200, "1"),
            ("bids press the buy", 0, 300, 100, "0.45"),
            ("offers help the buy: at the bid", 0, 100, 300, "0"),
            ("pressed late: capped at the far side", 27, 400, 0, "1"),
        ];
        for (name, elapsed, bid, ask, want) in cases {
            let a = adaptive_aggressiveness(secs(elapsed), secs(30), ends, half, Side::Buy, &sized(bid, ask));
            assert_eq!(a, want.parse::<Decimal>().unwrap(), "{name}");
        }
        // No imbalance weight: the time alone.
        let a = adaptive_aggressiveness(secs(0), secs(30), ends, Decimal::ZERO, Side::Buy, &sized(400, 0));
        assert_eq!(a, "0.2".parse::<Decimal>().unwrap());
    }

    #[test]
    fn escalation_stays_within_the_band() {
        let q = quote("100.00", "100.10");
        assert_eq!(escalation_limit(Side::Buy, q.far_side(Side::Buy), Bps::new(50.into())), p("100.60"));
        assert_eq!(escalation_limit(Side::Sell, q.far_side(Side::Sell), Bps::new(50.into())), p("99.50"));
        assert_eq!(escalation_limit(Side::Buy, q.far_side(Side::Buy), Bps::ZERO), p("100.10"));
    }
}
