//! Decimal newtypes for money, prices, quantities, weights and basis points.
//!
//! Invariants: every amount is a `rust_decimal::Decimal` (never `f64`); arithmetic that can
//! overflow is checked and returns `None` instead of panicking; serde writes decimals as strings
//! (the predecessor's and Alpaca's wire format) and reads strings or JSON numbers.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use crate::side::Side;

/// Parses a decimal from text: plain (`"12.50"`) or scientific (`"1.25e1"`) notation.
pub fn parse_decimal(text: &str) -> Result<Decimal, String> {
    let t = text.trim();
    Decimal::from_str(t)
        .or_else(|_| Decimal::from_scientific(t))
        .map_err(|_| format!("`{text}` is not a decimal number"))
}

/// Reads a decimal from a JSON number without going through binary floating point: the number's
/// shortest round-trip text is parsed as a decimal, so `0.1` stays exactly `0.1`.
pub fn decimal_from_f64(value: f64) -> Result<Decimal, String> {
    if !value.is_finite() {
        return Err(format!("{value} is not a finite number"));
    }
    parse_decimal(&value.to_string())
}

struct DecimalVisitor;

impl de::Visitor<'_> for DecimalVisitor {
    type Value = Decimal;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a decimal number as a string or a JSON number")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
        parse_decimal(v).map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
        Ok(Decimal::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
        Ok(Decimal::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Decimal, E> {
        decimal_from_f64(v).map_err(E::custom)
    }
}

/// Deserializes a decimal from a string or a number (for `#[serde(deserialize_with)]`).
pub fn deserialize_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    d.deserialize_any(DecimalVisitor)
}

macro_rules! decimal_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(Decimal);

        impl $name {
            /// Zero.
            pub const ZERO: Self = Self(Decimal::ZERO);

            /// Wraps a decimal.
            pub const fn new(value: Decimal) -> Self {
                Self(value)
            }
            /// The wrapped decimal.
            pub const fn get(self) -> Decimal {
                self.0
            }
            /// `self + rhs`, or `None` on overflow.
            pub fn checked_add(self, rhs: Self) -> Option<Self> {
                self.0.checked_add(rhs.0).map(Self)
            }
            /// `self - rhs`, or `None` on overflow.
            pub fn checked_sub(self, rhs: Self) -> Option<Self> {
                self.0.checked_sub(rhs.0).map(Self)
            }
            /// `self * factor`, or `None` on overflow.
            pub fn checked_scale(self, factor: Decimal) -> Option<Self> {
                self.0.checked_mul(factor).map(Self)
            }
            /// True when exactly zero.
            pub fn is_zero(self) -> bool {
                self.0.is_zero()
            }
            /// True when strictly greater than zero.
            pub fn is_positive(self) -> bool {
                self.0 > Decimal::ZERO
            }
            /// True when strictly less than zero.
            pub fn is_negative(self) -> bool {
                self.0 < Decimal::ZERO
            }
            /// The absolute value.
            pub fn abs(self) -> Self {
                Self(self.0.abs())
            }
        }

        impl From<Decimal> for $name {
            fn from(value: Decimal) -> Self {
                Self(value)
            }
        }

        impl From<$name> for Decimal {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_decimal(s).map(Self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserialize_decimal(deserializer).map(Self)
            }
        }
    };
}

decimal_newtype!(
    /// A price per share in US dollars.
    Price
);
decimal_newtype!(
    /// A quantity of shares; fractional where the asset allows it; negative for shorts.
    Qty
);
decimal_newtype!(
    /// An amount of US dollars (cash, notional, buying power).
    Usd
);
decimal_newtype!(
    /// A portfolio weight as a fraction (0.25 = 25 %).
    Weight
);
decimal_newtype!(
    /// Basis points (1 bp = 0.01 %); signed.
    Bps
);

const BPS_PER_UNIT: Decimal = Decimal::from_parts(10_000, 0, 0, false, 0);

impl Price {
    /// The dollar value of `qty` shares at this price, or `None` on overflow.
    pub fn notional(self, qty: Qty) -> Option<Usd> {
        self.0.checked_mul(qty.0).map(Usd)
    }

    /// The midpoint of two prices, or `None` on overflow.
    pub fn midpoint(self, other: Price) -> Option<Price> {
        self.0.checked_add(other.0).and_then(|s| s.checked_div(Decimal::TWO)).map(Price)
    }

    /// This price moved by `bps` basis points (`+` up, `-` down), or `None` on overflow.
    pub fn offset_bps(self, bps: Bps) -> Option<Price> {
        let factor = Decimal::ONE.checked_add(bps.0.checked_div(BPS_PER_UNIT)?)?;
        self.0.checked_mul(factor).map(Price)
    }
}

impl Usd {
    /// How many shares this amount buys at `price`; `None` when the price is not positive or on
    /// overflow. Not rounded: callers round to the asset's increment with an explicit direction.
    pub fn shares_at(self, price: Price) -> Option<Qty> {
        if price.0 <= Decimal::ZERO {
            return None;
        }
        self.0.checked_div(price.0).map(Qty)
    }
}

impl Qty {
    /// The smaller of two quantities.
    pub fn min(self, other: Qty) -> Qty {
        Ord::min(self, other)
    }

    /// Rounds down to whole shares (toward zero).
    pub fn floor_whole(self) -> Qty {
        Qty(self.0.trunc())
    }

    /// Rounds toward zero to `dp` decimal places (Alpaca accepts at most 9).
    pub fn truncate_dp(self, dp: u32) -> Qty {
        Qty(self.0.trunc_with_scale(dp))
    }

    /// True when the quantity has a fractional part.
    pub fn is_fractional(self) -> bool {
        self.0.fract() != Decimal::ZERO
    }
}

impl Bps {
    /// `(value - reference) / reference` in basis points; `None` for a non-positive reference.
    pub fn between(reference: Price, value: Price) -> Option<Bps> {
        if reference.0 <= Decimal::ZERO {
            return None;
        }
        let diff = value.0.checked_sub(reference.0)?;
        diff.checked_mul(BPS_PER_UNIT)?.checked_div(reference.0).map(Bps)
    }

    /// Execution slippage against a benchmark price: positive means worse than the benchmark
    /// (paid more on a buy, received less on a sell), negative means price improvement.
    pub fn slippage(side: Side, benchmark: Price, average_fill: Price) -> Option<Bps> {
        let raw = Self::between(benchmark, average_fill)?;
        Some(match side {
            Side::Buy => raw,
            Side::Sell => Bps(-raw.0),
        })
    }

    /// Rounded to two decimal places for reports.
    pub fn rounded(self) -> Bps {
        Bps(self.0.round_dp(2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        parse_decimal(text).unwrap()
    }

    #[test]
    fn reads_strings_and_numbers_exactly() {
        let from_str: Usd = serde_json::from_str("\"1234.56\"").unwrap();
        let from_num: Usd = serde_json::from_str("1234.56").unwrap();
        let from_int: Usd = serde_json::from_str("7").unwrap();
        let tenth: Usd = serde_json::from_str("0.1").unwrap();
        let sci: Usd = serde_json::from_str("\"1.5e3\"").unwrap();
        assert_eq!(from_str.get(), d("1234.56"));
        assert_eq!(from_num, from_str);
        assert_eq!(from_int.get(), d("7"));
        assert_eq!(tenth.get(), d("0.1"));
        assert_eq!(sci.get(), d("1500"));
        assert!(serde_json::from_str::<Usd>("\"ten\"").is_err());
        assert!(serde_json::from_str::<Usd>("true").is_err());
    }

    #[test]
    fn writes_strings() {
        assert_eq!(serde_json::to_string(&Price::new(d("107.00"))).unwrap(), "\"107.00\"");
    }

    #[test]
    fn checked_arithmetic_never_panics() {
        let max = Usd::new(Decimal::MAX);
        assert_eq!(max.checked_add(Usd::new(Decimal::ONE)), None);
        assert_eq!(Price::new(Decimal::MAX).notional(Qty::new(d("2"))), None);
        assert_eq!(Usd::new(d("100")).shares_at(Price::ZERO), None);
        assert_eq!(Usd::new(d("100")).shares_at(Price::new(d("-1"))), None);
        assert_eq!(Usd::new(d("100")).shares_at(Price::new(d("40"))), Some(Qty::new(d("2.5"))));
    }

    #[test]
    fn slippage_sign_follows_the_side() {
        let mid = Price::new(d("100"));
        let paid = Price::new(d("100.10"));
        assert_eq!(Bps::slippage(Side::Buy, mid, paid), Some(Bps::new(d("10"))));
        assert_eq!(Bps::slippage(Side::Sell, mid, paid), Some(Bps::new(d("-10"))));
        assert_eq!(Bps::slippage(Side::Buy, Price::ZERO, paid), None);
    }

    #[test]
    fn quantity_rounding_is_toward_zero() {
        assert_eq!(Qty::new(d("10.9")).floor_whole(), Qty::new(d("10")));
        assert_eq!(Qty::new(d("1.2345675")).truncate_dp(6), Qty::new(d("1.234567")));
        assert!(Qty::new(d("0.3")).is_fractional());
        assert!(!Qty::new(d("3.000")).is_fractional());
    }

    #[test]
    fn offsets_in_bps() {
        assert_eq!(Price::new(d("100")).offset_bps(Bps::new(d("50"))), Some(Price::new(d("100.5"))));
        assert_eq!(Price::new(d("100")).offset_bps(Bps::new(d("-50"))), Some(Price::new(d("99.5"))));
    }
}
