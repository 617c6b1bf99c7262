//! Sizing: dollars to shares, sells capped at what is available, liquidations of the whole
//! position, whole shares for non-fractionable assets, and pro-rata scaling of buys to the buying
//! power actually available.
//!
//! Invariants: a sell never exceeds `qty_available`; a liquidation sells exactly `qty_available`
//! (fractional remainder included, never rounded: predecessor defect D5); buys round down (whole
//! shares, or 9 decimals for fractionable assets); scaling never increases a buy.

use rust_decimal::Decimal;
use tranche_domain::{PlanItem, Price, Qty, Usd};

/// Why an item does not trade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoTrade {
    /// Nothing held to sell.
    NothingToSell,
    /// No usable price to turn dollars into shares.
    NoPrice,
    /// The amount buys less than one share of an asset that trades in whole shares only.
    LessThanOneShare,
    /// Worth less than the minimum notional.
    BelowMinimum {
        /// The item's value at the reference price.
        notional: Usd,
    },
}

impl std::fmt::Display for NoTrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NothingToSell => f.write_str("no position available to sell"),
            Self::NoPrice => f.write_str("no usable quote to size the order"),
            Self::LessThanOneShare => f.write_str("less than one share of an asset that is not fractionable"),
            Self::BelowMinimum { notional } => write!(f, "below the minimum notional (${notional})"),
        }
    }
}

/// Rounds a buy quantity down to what the asset allows.
pub fn round_buy(qty: Decimal, fractionable: bool) -> Decimal {
    if fractionable {
        qty.trunc_with_scale(9).normalize()
    } else {
        qty.trunc()
    }
}

/// Shares to sell for `item` given what is available.
pub fn sell_qty(
    item: &PlanItem,
    available: Qty,
    fractionable: bool,
    reference: Option<Price>,
    min_notional: Usd,
) -> Result<Decimal, NoTrade> {
    let available = available.get().max(Decimal::ZERO);
    if available.is_zero() {
        return Err(NoTrade::NothingToSell);
    }
    if item.is_liquidation() {
        return Ok(available);
    }
    let Some(price) = reference.filter(|p| p.is_positive()) else {
        // Without a price only a liquidation can be sized.
        return Err(NoTrade::NoPrice);
    };
    let wanted = item.trade_amount.abs().shares_at(price).map_or(available, Qty::get);
    let mut qty = wanted.min(available);
    if qty < available {
        qty = round_buy(qty, fractionable);
    }
    check_minimum(qty, price, min_notional)
}

/// Shares to buy for `item` at `reference`, before scaling.
pub fn buy_qty(item: &PlanItem, fractionable: bool, reference: Price, min_notional: Usd) -> Result<Decimal, NoTrade> {
    let wanted = item.trade_amount.abs().shares_at(reference).map_or(Decimal::ZERO, Qty::get);
    let qty = round_buy(wanted, fractionable);
    if qty.is_zero() && !wanted.is_zero() {
        return Err(NoTrade::LessThanOneShare);
    }
    check_minimum(qty, reference, min_notional)
}

fn check_minimum(qty: Decimal, price: Price, min_notional: Usd) -> Result<Decimal, NoTrade> {
    let notional = qty.checked_mul(price.get()).unwrap_or(Decimal::MAX);
    if qty.is_zero() || notional < min_notional.get() {
        return Err(NoTrade::BelowMinimum { notional: Usd::new(notional.round_dp(2)) });
    }
    Ok(qty)
}

/// Scales buys (`qty`, worst-case price per share, fractionable) pro rata so their worst-case
/// cost fits `budget`; returns the factor applied (1 when they fit).
pub fn scale_buys(buys: &mut [(Decimal, Decimal, bool)], budget: Decimal) -> Decimal {
    let need = buys.iter().fold(Decimal::ZERO, |sum, (q, p, _)| sum.saturating_add(q.saturating_mul(*p)));
    if need <= budget || need.is_zero() {
        return Decimal::ONE;
    }
    let factor = (budget.max(Decimal::ZERO) / need).round_dp_with_strategy(9, rust_decimal::RoundingStrategy::ToZero);
    for (qty, _, fractionable) in buys.iter_mut() {
        *qty = round_buy(qty.saturating_mul(factor), *fractionable);
    }
    factor
}

#[cfg(test)]
mod tests {
    use super::*;
    use tranche_domain::{Action, Symbol, Weight};

    fn item(action: Action, amount: &str, target_weight: &str) -> PlanItem {
        PlanItem {
            symbol: Symbol::parse("EDZ").unwrap(),
            current_weight: Weight::new("0.1".parse().unwrap()),
            target_weight: Weight::new(target_weight.parse().unwrap()),
            weight_diff: Weight::ZERO,
            target_value: Usd::ZERO,
            current_value: Usd::ZERO,
            trade_amount: amount.parse().unwrap(),
            action,
            priority: None,
        }
    }

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn d5_liquidation_sells_the_exact_fractional_position_even_when_not_fractionable() {
        // The predecessor rounded 10.5 shares of non-fractionable EDZ down to 10 (and 0.3 to 0).
        let liquidate = item(Action::Sell, "-100", "0");
        for held in ["10.5", "0.3", "1.2345675"] {
            let qty = sell_qty(&liquidate, Qty::new(d(held)), false, None, Usd::new(Decimal::ONE)).unwrap();
            assert_eq!(qty, d(held));
        }
    }

    #[test]
    fn d9_sells_are_capped_at_what_is_available_and_need_a_price() {
        let sell = item(Action::Sell, "-10000", "0.05");
        let price = Some(Price::new(d("10")));
        assert_eq!(sell_qty(&sell, Qty::new(d("40")), true, price, Usd::new(Decimal::ONE)), Ok(d("40")));
        assert_eq!(sell_qty(&sell, Qty::ZERO, true, price, Usd::new(Decimal::ONE)), Err(NoTrade::NothingToSell));
        assert!(sell_qty(&sell, Qty::new(d("40")), true, None, Usd::new(Decimal::ONE)).is_err(), "no 1-share fallback");
        let partial = item(Action::Sell, "-95", "0.05");
        assert_eq!(sell_qty(&partial, Qty::new(d("40")), false, price, Usd::new(Decimal::ONE)), Ok(d("9")));
        assert_eq!(sell_qty(&partial, Qty::new(d("40")), true, price, Usd::new(Decimal::ONE)), Ok(d("9.5")));
    }

    #[test]
    fn buys_round_down_and_tiny_buys_are_skipped() {
        let buy = item(Action::Buy, "1000", "0.2");
        assert_eq!(buy_qty(&buy, false, Price::new(d("300")), Usd::new(Decimal::ONE)), Ok(d("3")));
        assert_eq!(buy_qty(&buy, true, Price::new(d("300")), Usd::new(Decimal::ONE)), Ok(d("3.333333333")));
        let tiny = item(Action::Buy, "0.50", "0.2");
        assert!(matches!(
            buy_qty(&tiny, true, Price::new(d("10")), Usd::new(Decimal::ONE)),
            Err(NoTrade::BelowMinimum { .. })
        ));
        assert!(
            buy_qty(&buy, false, Price::new(d("2000")), Usd::new(Decimal::ONE)).is_err(),
            "less than one whole share"
        );
    }

    #[test]
    fn buys_scale_down_pro_rata_never_up() {
        let mut buys = vec![(d("10"), d("100"), false), (d("5.5"), d("100"), true)];
        let factor = scale_buys(&mut buys, d("775"));
        assert_eq!(factor, d("0.5"));
        assert_eq!(buys[0].0, d("5"));
        assert_eq!(buys[1].0, d("2.75"));
        let mut fits = vec![(d("1"), d("100"), false)];
        assert_eq!(scale_buys(&mut fits, d("1000")), Decimal::ONE);
        assert_eq!(fits[0].0, d("1"));
    }
}
