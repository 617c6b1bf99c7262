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

/// The escalation limit: `band` beyond the far side, rounded back toward the far side (never
/// beyond the band) and never less aggressive than the far side itself (so it is marketable).
pub fn escalation_limit(side: Side, quote: &Quote, band: Bps) -> Price {
    let far = quote.far_side(side);
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

    #[test]
    fn escalation_stays_within_the_band() {
        let q = quote("100.00", "100.10");
        assert_eq!(escalation_limit(Side::Buy, &q, Bps::new(50.into())), p("100.60"));
        assert_eq!(escalation_limit(Side::Sell, &q, Bps::new(50.into())), p("99.50"));
        assert_eq!(escalation_limit(Side::Buy, &q, Bps::ZERO), p("100.10"));
    }
}
