//! Order sides, plan actions, order types and times in force.
//!
//! Invariant: parsing is case-insensitive and trims; serialization uses the wire spelling
//! (`BUY`/`SELL`/`HOLD` for plan actions, lower case for Alpaca's order fields).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire spelling.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let t = s.trim();
                $(if t.eq_ignore_ascii_case($wire) {
                    return Ok($name::$variant);
                })+
                let expected: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                Err(format!("`{s}` is not a valid {}; expected one of {}", $what, expected.join(", ")))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

wire_enum!(
    /// The side of an order.
    Side, "side" {
        /// Buy shares.
        Buy => "buy",
        /// Sell shares.
        Sell => "sell",
    }
);

wire_enum!(
    /// What a plan item asks for.
    Action, "action" {
        /// Buy `trade_amount` dollars.
        Buy => "BUY",
        /// Sell `trade_amount` dollars (or the whole position when the target weight is 0).
        Sell => "SELL",
        /// Do nothing; reported only.
        Hold => "HOLD",
    }
);

wire_enum!(
    /// The order type, as Alpaca spells it.
    OrderType, "order type" {
        /// Market order.
        Market => "market",
        /// Limit order.
        Limit => "limit",
        /// Stop order.
        Stop => "stop",
        /// Stop-limit order.
        StopLimit => "stop_limit",
        /// Trailing stop order.
        TrailingStop => "trailing_stop",
    }
);

wire_enum!(
    /// How long an order stays working, as Alpaca spells it.
    TimeInForce, "time in force" {
        /// Until the end of the regular session.
        Day => "day",
        /// Good till canceled.
        Gtc => "gtc",
        /// Opening auction.
        Opg => "opg",
        /// Closing auction.
        Cls => "cls",
        /// Immediate or cancel.
        Ioc => "ioc",
        /// Fill or kill.
        Fok => "fok",
    }
);

impl Side {
    /// The other side.
    #[must_use]
    pub const fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

impl Action {
    /// The order side this action trades on; `None` for HOLD.
    pub const fn side(self) -> Option<Side> {
        match self {
            Action::Buy => Some(Side::Buy),
            Action::Sell => Some(Side::Sell),
            Action::Hold => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_case_insensitively() {
        assert_eq!(" buy ".parse::<Action>(), Ok(Action::Buy));
        assert_eq!("Sell".parse::<Action>(), Ok(Action::Sell));
        assert_eq!("HOLD".parse::<Action>(), Ok(Action::Hold));
        let err = "short".parse::<Action>().unwrap_err();
        assert!(err.contains("BUY, SELL, HOLD"), "{err}");
    }

    #[test]
    fn wire_spellings_round_trip() {
        for t in OrderType::ALL {
            assert_eq!(t.as_str().parse::<OrderType>(), Ok(*t));
        }
        for t in TimeInForce::ALL {
            let json = serde_json::to_string(t).unwrap();
            assert_eq!(serde_json::from_str::<TimeInForce>(&json).unwrap(), *t);
        }
        assert_eq!(serde_json::to_string(&Action::Hold).unwrap(), "\"HOLD\"");
        assert_eq!(serde_json::to_string(&Side::Sell).unwrap(), "\"sell\"");
    }

    #[test]
    fn sides() {
        assert_eq!(Side::Buy.opposite(), Side::Sell);
        assert_eq!(Action::Hold.side(), None);
        assert_eq!(Action::Sell.side(), Some(Side::Sell));
    }
}
