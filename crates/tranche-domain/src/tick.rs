//! Tick rounding for US equity limit and stop prices.
//!
//! Rule (Alpaca and Reg NMS): prices at or above $1.00 trade in $0.01 increments, prices below
//! $1.00 in $0.0001 increments. Invariants: rounding is idempotent, moves a price by less than one
//! tick, and the caller always says which way (a buy limit rounds down to stay passive, a sell up).

use rust_decimal::{Decimal, RoundingStrategy};

use crate::money::Price;

/// Which way to round a price that is not on the tick grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rounding {
    /// Toward lower prices (never pay more than asked on a buy).
    Down,
    /// Toward higher prices (never sell for less than asked).
    Up,
    /// To the nearest tick, halves away from zero.
    Nearest,
}

/// The tick size that applies at `price`: $0.01 at or above $1, $0.0001 below.
pub fn tick_size(price: Price) -> Price {
    if price.get() >= Decimal::ONE {
        Price::new(Decimal::new(1, 2))
    } else {
        Price::new(Decimal::new(1, 4))
    }
}

/// Rounds `price` onto the tick grid in the given direction.
pub fn round_to_tick(price: Price, rounding: Rounding) -> Price {
    let dp = tick_size(price).get().scale();
    let strategy = match rounding {
        Rounding::Down => RoundingStrategy::ToNegativeInfinity,
        Rounding::Up => RoundingStrategy::ToPositiveInfinity,
        Rounding::Nearest => RoundingStrategy::MidpointAwayFromZero,
    };
    Price::new(price.get().round_dp_with_strategy(dp, strategy))
}

/// True when `price` is already on the tick grid (what Alpaca accepts without a sub-penny reject).
pub fn is_on_tick(price: Price) -> bool {
    round_to_tick(price, Rounding::Down) == price
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(text: &str) -> Price {
        text.parse().unwrap()
    }

    #[test]
    fn table() {
        let cases = [
            ("penny_down", "290.123", Rounding::Down, "290.12"),
            ("penny_up", "290.123", Rounding::Up, "290.13"),
            ("penny_nearest_half_away", "290.125", Rounding::Nearest, "290.13"),
            ("on_grid_unchanged", "10.50", Rounding::Up, "10.50"),
            ("sub_dollar_down", "0.123456", Rounding::Down, "0.1234"),
            ("sub_dollar_up", "0.123456", Rounding::Up, "0.1235"),
            ("sub_dollar_up_to_a_dollar", "0.99995", Rounding::Up, "1.0000"),
            ("just_above_a_dollar_down", "1.009", Rounding::Down, "1.00"),
        ];
        for (name, input, rounding, want) in cases {
            assert_eq!(round_to_tick(p(input), rounding), p(want), "{name}");
        }
    }

    #[test]
    fn grid_check() {
        assert!(is_on_tick(p("1.00")));
        assert!(!is_on_tick(p("1.001")));
        assert!(is_on_tick(p("0.0001")));
        assert!(!is_on_tick(p("0.00001")));
    }

    fn any_price() -> impl Strategy<Value = Price> {
        (0i64..100_000_000_000, 0u32..=8).prop_map(|(m, s)| Price::new(Decimal::new(m, s)))
    }

    fn any_rounding() -> impl Strategy<Value = Rounding> {
        prop_oneof![Just(Rounding::Down), Just(Rounding::Up), Just(Rounding::Nearest)]
    }

    proptest! {
        #[test]
        fn rounding_is_idempotent(price in any_price(), r in any_rounding(), r2 in any_rounding()) {
            let once = round_to_tick(price, r);
            prop_assert_eq!(round_to_tick(once, r2), once);
            prop_assert!(is_on_tick(once));
        }

        #[test]
        fn rounding_moves_less_than_one_tick_in_the_asked_direction(price in any_price(), r in any_rounding()) {
            let rounded = round_to_tick(price, r);
            let moved = (rounded.get() - price.get()).abs();
            prop_assert!(moved < tick_size(price).get());
            match r {
                Rounding::Down => prop_assert!(rounded <= price),
                Rounding::Up => prop_assert!(rounded >= price),
                Rounding::Nearest => {}
            }
        }
    }
}
