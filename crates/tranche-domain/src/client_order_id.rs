//! Client order ids: the idempotency key of every order attempt.
//!
//! Layout of a derived id: `tr-<plan>-<symbol>-<side><attempt>`, for example `tr-pdaily1-BRK_0B-s3`.
//! - `<plan>` is `p` + the plan id when it is 1 to 16 characters of `[a-z0-9]`, otherwise `h` +
//!   16 base32 characters of the plan id's SHA-256 (80 bits), so any plan id fits.
//! - `<symbol>` is the symbol with `.` `/` `-` escaped as `_0` `_1` `_2` (symbols never contain `_`).
//! - `<side>` is `b` or `s`; `<attempt>` is the attempt number in decimal (0 to 65535).
//!
//! Invariants: at most 48 characters (Alpaca's historical limit; the current one is 128), only
//! `[A-Za-z0-9_-]`, deterministic, and injective: the three fields never contain `-`, each encoding
//! is injective, so distinct inputs give distinct ids (up to SHA-256 collisions of long plan ids).

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::side::Side;
use crate::symbol::Symbol;

/// A client order id: either one Tranche derived, or any id the broker reports for other orders.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientOrderId(String);

/// The fields recovered from a Tranche-derived client order id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedOrderId {
    /// The encoded plan field (`p...` or `h...`); compare with [`ClientOrderId::plan_tag`].
    pub plan_tag: String,
    /// The symbol.
    pub symbol: Symbol,
    /// The side.
    pub side: Side,
    /// The attempt number.
    pub attempt: u16,
}

const PREFIX: &str = "tr-";
const RAW_PLAN_MAX: usize = 16;
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

impl ClientOrderId {
    /// Longest id this module derives.
    pub const MAX_LEN: usize = 48;

    /// The deterministic id of attempt `attempt` for `side` of `symbol` in plan `plan_id`.
    pub fn derive(plan_id: &str, symbol: &Symbol, side: Side, attempt: u16) -> Self {
        let side_char = match side {
            Side::Buy => 'b',
            Side::Sell => 's',
        };
        Self(format!("{PREFIX}{}-{}-{side_char}{attempt}", Self::plan_tag(plan_id), escape_symbol(symbol)))
    }

    /// The plan field used in derived ids for `plan_id`.
    pub fn plan_tag(plan_id: &str) -> String {
        let raw_ok = !plan_id.is_empty()
            && plan_id.len() <= RAW_PLAN_MAX
            && plan_id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if raw_ok {
            format!("p{plan_id}")
        } else {
            let digest = Sha256::digest(plan_id.as_bytes());
            let mut tag = String::with_capacity(17);
            tag.push('h');
            // 80 bits = 16 groups of 5 bits.
            let bits: u128 = digest[..10].iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
            for group in (0..16).rev() {
                let index = ((bits >> (group * 5)) & 0x1f) as usize;
                tag.push(char::from(BASE32[index]));
            }
            tag
        }
    }

    /// Wraps an id reported by the broker (any text; orders not placed by Tranche have their own).
    pub fn from_broker(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The fields of a Tranche-derived id; `None` for any other id.
    pub fn parse_derived(&self) -> Option<DerivedOrderId> {
        let rest = self.0.strip_prefix(PREFIX)?;
        let mut parts = rest.split('-');
        let (plan_tag, symbol, tail) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || plan_tag.len() < 2 {
            return None;
        }
        let symbol = Symbol::parse(&unescape_symbol(symbol)?).ok()?;
        let side = match tail.chars().next()? {
            'b' => Side::Buy,
            's' => Side::Sell,
            _ => return None,
        };
        let digits = &tail[1..];
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || (digits.len() > 1 && digits.starts_with('0'))
        {
            return None;
        }
        let attempt = digits.parse().ok()?;
        Some(DerivedOrderId { plan_tag: plan_tag.to_owned(), symbol, side, attempt })
    }

    /// True when this id was derived by Tranche for plan `plan_id`.
    pub fn belongs_to_plan(&self, plan_id: &str) -> bool {
        self.parse_derived().is_some_and(|d| d.plan_tag == Self::plan_tag(plan_id))
    }
}

fn escape_symbol(symbol: &Symbol) -> String {
    let mut out = String::with_capacity(symbol.as_str().len() * 2);
    for ch in symbol.as_str().chars() {
        match ch {
            '.' => out.push_str("_0"),
            '/' => out.push_str("_1"),
            '-' => out.push_str("_2"),
            other => out.push(other),
        }
    }
    out
}

fn unescape_symbol(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        if ch == '_' {
            out.push(match chars.next()? {
                '0' => '.',
                '1' => '/',
                '2' => '-',
                _ => return None,
            });
        } else {
            out.push(ch);
        }
    }
    Some(out)
}

impl fmt::Display for ClientOrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sym(s: &str) -> Symbol {
        Symbol::parse(s).unwrap()
    }

    #[test]
    fn short_plan_ids_are_readable() {
        let id = ClientOrderId::derive("daily1", &sym("BRK.B"), Side::Sell, 3);
        assert_eq!(id.as_str(), "tr-pdaily1-BRK_0B-s3");
    }

    #[test]
    fn long_plan_ids_are_hashed_and_fit() {
        let plan = "rebalance-2026-11-21T15:30:00Z-6f1c2f8e-3a7b-4c1e-9d2f-0123456789ab";
        let id = ClientOrderId::derive(plan, &sym("ABCD.EFGHI"), Side::Buy, u16::MAX);
        assert!(id.as_str().len() <= ClientOrderId::MAX_LEN, "{id} ({} chars)", id.as_str().len());
        assert!(id.belongs_to_plan(plan));
        assert!(!id.belongs_to_plan("other"));
    }

    #[test]
    fn parses_back_its_own_ids_only() {
        let id = ClientOrderId::derive("Plan-X", &sym("BTC/USD"), Side::Buy, 12);
        let parts = id.parse_derived().unwrap();
        assert_eq!((parts.symbol, parts.side, parts.attempt), (sym("BTC/USD"), Side::Buy, 12));
        for foreign in [
            "eb9e2aaa-f71a-4f51-b5b4-52a6c565dad4",
            "tr-",
            "tr-p-AAPL-x1",
            "tr-pa-AAPL-b01",
            "tr-pa-A_9-b1",
            "tr-pa-AAPL-b1-x",
        ] {
            assert_eq!(ClientOrderId::from_broker(foreign).parse_derived(), None, "{foreign}");
        }
    }

    fn any_symbol() -> impl Strategy<Value = Symbol> {
        "[A-Z0-9][A-Z0-9./-]{0,9}".prop_map(|s| Symbol::parse(&s).unwrap())
    }

    fn any_side() -> impl Strategy<Value = Side> {
        prop_oneof![Just(Side::Buy), Just(Side::Sell)]
    }

    proptest! {
        #[test]
        fn ids_fit_the_limits_and_round_trip(plan in ".{0,80}", symbol in any_symbol(), side in any_side(), attempt in any::<u16>()) {
            let id = ClientOrderId::derive(&plan, &symbol, side, attempt);
            prop_assert!(id.as_str().len() <= ClientOrderId::MAX_LEN);
            prop_assert!(id.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
            let parts = id.parse_derived().unwrap();
            prop_assert_eq!(parts.symbol, symbol);
            prop_assert_eq!(parts.side, side);
            prop_assert_eq!(parts.attempt, attempt);
            prop_assert!(id.belongs_to_plan(&plan));
        }

        #[test]
        fn distinct_inputs_give_distinct_ids(
            a in ("[a-z0-9]{0,20}|.{0,30}", any_symbol(), any_side(), 0u16..5),
            b in ("[a-z0-9]{0,20}|.{0,30}", any_symbol(), any_side(), 0u16..5),
        ) {
            let id_a = ClientOrderId::derive(&a.0, &a.1, a.2, a.3);
            let id_b = ClientOrderId::derive(&b.0, &b.1, b.2, b.3);
            prop_assert_eq!(a == b, id_a == id_b);
        }

        #[test]
        fn near_identical_plan_ids_differ(plan in "[a-z0-9]{1,16}", symbol in any_symbol()) {
            let upper = plan.to_uppercase();
            let longer = format!("{plan}0");
            let ids = [
                ClientOrderId::derive(&plan, &symbol, Side::Buy, 0),
                ClientOrderId::derive(&upper, &symbol, Side::Buy, 0),
                ClientOrderId::derive(&longer, &symbol, Side::Buy, 0),
            ];
            prop_assert_ne!(&ids[0], &ids[2]);
            if upper != plan {
                prop_assert_ne!(&ids[0], &ids[1]);
            }
        }
    }
}
