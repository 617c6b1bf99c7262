//! Dry runs: the orders a plan would start with (sizes, reference prices, first limit prices),
//! computed from the broker's current state without sending anything.
//!
//! Invariant: only reads are made (account, positions, assets, quotes); never a mutation.

use rust_decimal::Decimal;
use serde::Serialize;
use tranche_broker::{Broker, QuoteFeed};
use tranche_domain::{Action, Price, Quote, QuoteVerdict, RebalancePlan, Side, Symbol, Timestamp, Usd};

use crate::config::{EngineConfig, Strategy};
use crate::pricing::step_limit;
use crate::sizing::{buy_qty, sell_qty};

/// One line of a dry run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreviewRow {
    /// The symbol.
    pub symbol: Symbol,
    /// The plan's action.
    pub action: Action,
    /// Shares the first order would be for (before buy scaling).
    pub qty: Option<tranche_domain::Qty>,
    /// The mid price the size is computed from.
    pub reference: Option<Price>,
    /// The first limit price (`None` for a market order).
    pub first_limit: Option<Price>,
    /// Why the item would not trade, or a warning.
    pub note: Option<String>,
}

/// What a dry run found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preview {
    /// One row per plan item.
    pub rows: Vec<PreviewRow>,
    /// Buying power usable for buys now (cash-like).
    pub buying_power: Option<Usd>,
    /// Estimated cost of the buys at their reference prices.
    pub buy_cost: Usd,
    /// Estimated proceeds of the sells at their reference prices.
    pub sell_proceeds: Usd,
}

/// Computes the dry run of `plan` at `now` from the broker's current state.
pub async fn preview(
    plan: &RebalancePlan,
    config: &EngineConfig,
    broker: &dyn Broker,
    quotes: &dyn QuoteFeed,
    now: Timestamp,
) -> Preview {
    let account = broker.account().await.ok();
    let positions = broker.positions().await.unwrap_or_default();
    let mut rows = Vec::with_capacity(plan.items.len());
    let (mut buy_cost, mut sell_proceeds) = (Decimal::ZERO, Decimal::ZERO);
    let limits = tranche_domain::QuoteLimits { max_age: config.quote_max_age, max_spread: config.max_spread };
    for item in &plan.items {
        let mut row = PreviewRow {
            symbol: item.symbol.clone(),
            action: item.action,
            qty: None,
            reference: None,
            first_limit: None,
            note: None,
        };
        let Some(side) = item.action.side() else {
            row.note = Some("hold".into());
            rows.push(row);
            continue;
        };
        let asset = match broker.asset(&item.symbol).await {
            Ok(a) if a.tradable => a,
            Ok(_) => {
                row.note = Some("not tradable at the broker".into());
                rows.push(row);
                continue;
            }
            Err(e) => {
                row.note = Some(format!("asset lookup failed: {e}"));
                rows.push(row);
                continue;
            }
        };
        let quote: Option<Quote> = match quotes.latest(&item.symbol) {
            Some(q) if q.verdict(now, limits) == QuoteVerdict::Sane => Some(q),
            _ => broker.latest_quote(&item.symbol).await.ok(),
        };
        let sane = quote.as_ref().filter(|q| q.verdict(now, limits) == QuoteVerdict::Sane);
        row.reference = quote.as_ref().and_then(Quote::mid);
        let sized = match side {
            Side::Sell => {
                let available = positions
                    .iter()
                    .find(|p| p.symbol == item.symbol)
                    .map_or(tranche_domain::Qty::ZERO, |p| p.qty_available);
                sell_qty(item, available, asset.fractionable, row.reference, config.min_notional)
            }
            Side::Buy => match row.reference {
                Some(reference) => buy_qty(item, asset.fractionable, reference, config.min_notional),
                None => Err(crate::sizing::NoTrade::NoPrice),
            },
        };
        match sized {
            Ok(qty) => {
                row.qty = Some(qty.into());
                let value = qty * row.reference.map_or(Decimal::ZERO, Price::get);
                match side {
                    Side::Buy => buy_cost += value,
                    Side::Sell => sell_proceeds += value,
                }
                row.first_limit = match (config.strategy, sane) {
                    (Strategy::Market, _) => None,
                    (Strategy::Predecessor, Some(q)) => Some(step_limit(side, q, Decimal::ZERO)),
                    (Strategy::Smart, Some(q)) => Some(step_limit(side, q, config.initial_aggressiveness.get())),
                    (_, None) => {
                        row.note = Some("no sane quote now: would start with the escalation order".into());
                        None
                    }
                };
            }
            Err(reason) => row.note = Some(reason.to_string()),
        }
        rows.push(row);
    }
    let buying_power = account.map(|a| Usd::new(a.buying_power.get().min(a.non_marginable_buying_power.get())));
    Preview {
        rows,
        buying_power,
        buy_cost: Usd::new(buy_cost.round_dp(2)),
        sell_proceeds: Usd::new(sell_proceeds.round_dp(2)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tranche_broker::{MockBroker, MockQuoteFeed};
    use tranche_domain::{Account, AccountStatus, Asset, Qty};

    fn sym(s: &str) -> Symbol {
        Symbol::parse(s).unwrap()
    }

    #[tokio::test]
    async fn a_dry_run_only_reads() {
        let plan = RebalancePlan::from_value(&serde_json::json!({
            "plan_id": "p", "correlation_id": "c", "causation_id": "x", "timestamp": "2026-03-02T15:00:00Z",
            "total_portfolio_value": "10000",
            "items": [{"symbol": "AAPL", "action": "BUY", "trade_amount": "1000", "current_value": "0",
                       "current_weight": "0", "target_weight": "0.1", "target_value": "1000"}]
        }))
        .unwrap();
        let now = plan.timestamp;
        let mut broker = MockBroker::new();
        broker.expect_account().returning(|| {
            Ok(Account {
                status: AccountStatus::Active,
                cash: Usd::new(10_000.into()),
                buying_power: Usd::new(10_000.into()),
                non_marginable_buying_power: Usd::new(10_000.into()),
                regt_buying_power: Usd::new(10_000.into()),
                daytrading_buying_power: Usd::ZERO,
                equity: Usd::new(10_000.into()),
                multiplier: 1,
                trading_blocked: false,
                account_blocked: false,
                shorting_enabled: false,
            })
        });
        broker.expect_positions().returning(|| Ok(Vec::new()));
        broker.expect_asset().returning(|s| {
            Ok(Asset {
                symbol: s.clone(),
                active: true,
                tradable: true,
                fractionable: false,
                shortable: false,
                marginable: true,
            })
        });
        broker.expect_latest_quote().returning(move |s| {
            Ok(Quote {
                symbol: s.clone(),
                bid: "99.95".parse().unwrap(),
                bid_size: Qty::new(100.into()),
                ask: "100.05".parse().unwrap(),
                ask_size: Qty::new(100.into()),
                time: now,
            })
        });
        broker.expect_submit_order().never();
        broker.expect_replace_order().never();
        broker.expect_cancel_order().never();
        let mut feed = MockQuoteFeed::new();
        feed.expect_latest().returning(|_| None);
        let found = preview(&plan, &EngineConfig::default(), &broker, &feed, now).await;
        let row = &found.rows[0];
        assert_eq!(row.symbol, sym("AAPL"));
        assert_eq!(row.qty, Some(Qty::new(10.into())));
        assert_eq!(row.first_limit, Some("99.99".parse().unwrap()));
        assert_eq!(found.buy_cost, Usd::new(1000.into()));
    }
}
