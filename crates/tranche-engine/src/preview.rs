//! Dry runs: the orders a plan would start with (sizes, reference prices, first limit prices),
//! computed from the broker's current state without sending anything.
//!
//! Invariants: only reads are made (account, clock, positions, open orders, assets, quotes);
//! never a mutation. The decisions are the real core's: the dry run feeds [`EngineCore`] the
//! broker's answers and collects the first order it would send for each item (a sell is then
//! answered "not sent", so that the buys are sized as they would be, from the cash the sells
//! are expected to bring), so a dry run can never disagree with a run about what is tradable,
//! how much, or at what price.

use std::collections::{BTreeMap, VecDeque};

use rust_decimal::Decimal;
use serde::Serialize;
use tranche_broker::{Broker, BrokerError, QuoteFeed, RejectReason};
use tranche_domain::{Action, OrderAmount, Price, RebalancePlan, Side, Symbol, Timestamp, Usd};

use crate::config::EngineConfig;
use crate::core::EngineCore;
use crate::io::{Command, Input, PreflightData, TimerId};

/// One line of a dry run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreviewRow {
    /// The symbol.
    pub symbol: Symbol,
    /// The plan's action.
    pub action: Action,
    /// Shares the first order would be for (buys after scaling to the buying power).
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
    /// What the buys may spend now: cash less what others' open buys hold (or the broker's
    /// buying power with `use_margin`), before the sells' proceeds.
    pub buying_power: Option<Usd>,
    /// Estimated cost of the buys at their reference prices.
    pub buy_cost: Usd,
    /// Estimated proceeds of the sells at their reference prices.
    pub sell_proceeds: Usd,
    /// What the run would also do or meet (stale orders it would cancel, a closed market).
    pub notes: Vec<String>,
}

/// Inputs fed to the core before the dry run gives up (a plan of a few hundred items needs a
/// few per item).
const MAX_STEPS: usize = 20_000;

/// Computes the dry run of `plan` at `now` from the broker's current state.
pub async fn preview(
    plan: &RebalancePlan,
    config: &EngineConfig,
    broker: &dyn Broker,
    quotes: &dyn QuoteFeed,
    now: Timestamp,
) -> Preview {
    // Every item of a phase at once: the first order of each is what is wanted.
    let config = EngineConfig { concurrency: plan.items.len().max(1), ..config.clone() };
    let mut run = DryRun::new(plan, &config, now);
    let mut queue: VecDeque<Input> = VecDeque::from([Input::Start, Input::StreamUp]);
    let mut steps = 0;
    while steps < MAX_STEPS {
        steps += 1;
        let input = match queue.pop_front() {
            Some(input) => input,
            None => match run.next_timer() {
                Some(input) => input,
                None => break,
            },
        };
        for command in run.core.handle(input, run.now) {
            if let Some(answer) = run.answer(command, broker, quotes).await {
                queue.push_back(answer);
            }
        }
        if run.core.is_finished() {
            break;
        }
    }
    run.into_preview(plan)
}

/// The state of one dry run: the core, its clock and timers, and what it would send.
struct DryRun {
    core: EngineCore,
    now: Timestamp,
    timers: BTreeMap<TimerId, Timestamp>,
    first: BTreeMap<usize, tranche_domain::OrderRequest>,
    notes: Vec<String>,
    /// Expected proceeds of the sells, added to the cash the buys are sized from.
    proceeds: Decimal,
    buying_power: Option<Usd>,
}

impl DryRun {
    fn new(plan: &RebalancePlan, config: &EngineConfig, now: Timestamp) -> Self {
        Self {
            core: EngineCore::new(plan.clone(), config.clone()),
            now,
            timers: BTreeMap::new(),
            first: BTreeMap::new(),
            notes: Vec::new(),
            proceeds: Decimal::ZERO,
            buying_power: None,
        }
    }

    /// The earliest timer, fired at its time (the dry run's clock jumps to it).
    fn next_timer(&mut self) -> Option<Input> {
        let (id, at) = self.timers.iter().min_by_key(|(_, at)| **at).map(|(id, at)| (*id, *at))?;
        self.timers.remove(&id);
        // Deadlines end the dry run: every first order has been seen by then.
        if matches!(id, TimerId::PhaseDeadline | TimerId::RunDeadline | TimerId::Repeg(_) | TimerId::Retry(_)) {
            return None;
        }
        self.now = self.now.max(at);
        Some(Input::Timer(id))
    }

    /// Carries out one command with reads only; the core's answer, if it waits for one.
    async fn answer(&mut self, command: Command, broker: &dyn Broker, quotes: &dyn QuoteFeed) -> Option<Input> {
        match command {
            Command::Preflight { symbols } => {
                let mut clock = broker.clock().await;
                if let Some(c) = clock.as_mut().ok().filter(|c| !c.is_open) {
                    self.notes.push(format!(
                        "the market is closed now (it opens at {}); this is the run as if it were open",
                        c.next_open.to_rfc3339()
                    ));
                    c.is_open = true;
                }
                let mut assets = Vec::with_capacity(symbols.len());
                for symbol in symbols {
                    let asset = broker.asset(&symbol).await;
                    assets.push((symbol, asset));
                }
                let account = broker.account().await;
                self.buying_power = account.as_ref().ok().map(|a| Usd::new(self.core.budget(a).round_dp(2)));
                Some(Input::Preflight(Box::new(PreflightData {
                    account,
                    clock,
                    positions: broker.positions().await,
                    open_orders: broker.open_orders().await,
                    assets,
                })))
            }
            Command::FetchPositions => Some(Input::Positions(broker.positions().await)),
            Command::FetchPosition { item, symbol } => {
                Some(Input::ItemPosition { item, result: broker.position(&symbol).await })
            }
            Command::FetchAccount => {
                // The buys are sized from the cash the sells would bring.
                let account = broker.account().await.map(|mut a| {
                    a.cash = Usd::new(a.cash.get().saturating_add(self.proceeds));
                    a.buying_power = Usd::new(a.buying_power.get().saturating_add(self.proceeds));
                    a.non_marginable_buying_power =
                        Usd::new(a.non_marginable_buying_power.get().saturating_add(self.proceeds));
                    a
                });
                Some(Input::Account(account))
            }
            Command::FetchQuote { item, symbol } => {
                Some(Input::RestQuote { item, result: broker.latest_quote(&symbol).await })
            }
            Command::Subscribe(symbols) => {
                Some(Input::Quotes(symbols.iter().filter_map(|s| quotes.latest(s)).collect()))
            }
            Command::Cancel { item: None, order } => {
                self.notes.push(format!("would cancel order {order}, left working by an earlier run of this plan"));
                None
            }
            Command::Submit { item, request, .. } => {
                if request.side == Side::Sell {
                    let reference =
                        self.core.items.get(item).and_then(|i| i.reference).map_or(Decimal::ZERO, Price::get);
                    if let OrderAmount::Qty(q) = request.amount {
                        self.proceeds = self.proceeds.saturating_add(q.get().saturating_mul(reference));
                    }
                }
                let client_order_id = request.client_order_id.clone();
                self.first.entry(item).or_insert(request);
                // Not sent: the item ends here, and the run moves on to what follows it.
                let refused = BrokerError::Rejected {
                    reason: RejectReason::Other,
                    code: None,
                    message: "dry run: not sent".into(),
                };
                Some(Input::Submitted { item, client_order_id, result: Err(refused) })
            }
            Command::SetTimer { id, at } => {
                self.timers.insert(id, at);
                None
            }
            Command::CancelTimer(id) => {
                self.timers.remove(&id);
                None
            }
            // Ledger records, progress, releases, lookups of nothing sent: nothing to do.
            _ => None,
        }
    }

    fn into_preview(self, plan: &RebalancePlan) -> Preview {
        let (mut buy_cost, mut sell_proceeds) = (Decimal::ZERO, Decimal::ZERO);
        let rows = plan
            .items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let state = self.core.items.get(i);
                let reference = state.and_then(|s| s.reference);
                let mut row = PreviewRow {
                    symbol: item.symbol.clone(),
                    action: item.action,
                    qty: None,
                    reference,
                    first_limit: None,
                    note: None,
                };
                match self.first.get(&i) {
                    Some(request) => {
                        let qty = match request.amount {
                            OrderAmount::Qty(q) => q,
                            OrderAmount::Notional(_) => tranche_domain::Qty::ZERO,
                        };
                        row.qty = Some(qty);
                        row.first_limit = request.limit_price;
                        let value = qty.get().saturating_mul(reference.map_or(Decimal::ZERO, Price::get));
                        match request.side {
                            Side::Buy => buy_cost = buy_cost.saturating_add(value),
                            Side::Sell => sell_proceeds = sell_proceeds.saturating_add(value),
                        }
                        if request.limit_price.is_none() {
                            row.note = Some("would start with a market order".into());
                        }
                    }
                    None if item.action == Action::Hold => row.note = Some("hold".into()),
                    None => {
                        row.note = state
                            .and_then(|s| s.stage.outcome())
                            .and_then(|(_, reason)| reason)
                            .or_else(|| Some("would not start".into()));
                    }
                }
                row
            })
            .collect();
        Preview {
            rows,
            buying_power: self.buying_power,
            buy_cost: Usd::new(buy_cost.round_dp(2)),
            sell_proceeds: Usd::new(sell_proceeds.round_dp(2)),
            notes: self.notes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tranche_broker::{MockBroker, MockQuoteFeed};
    use tranche_domain::{Account, AccountStatus, Asset, MarketClock, Qty, Quote};

    fn sym(s: &str) -> Symbol {
        Symbol::parse(s).unwrap()
    }

    /// A plan buying $1,000 of AAPL.
    fn one_buy() -> RebalancePlan {
        RebalancePlan::from_value(&serde_json::json!({
            "plan_id": "p", "correlation_id": "c", "causation_id": "x", "timestamp": "2026-03-02T15:00:00Z",
            "total_portfolio_value": "10000",
            "items": [{"symbol": "AAPL", "action": "BUY", "trade_amount": "1000", "current_value": "0",
                       "current_weight": "0", "target_weight": "0.1", "target_value": "1000"}]
        }))
        .unwrap()
    }

    /// A broker with $10,000 of cash and nothing else, AAPL at 99.95 / 100.05 (`active`: whether
    /// the asset is active; `open`: the market), that fails the test on any mutation.
    fn reads_only(now: Timestamp, active: bool, open: bool) -> MockBroker {
        let mut broker = MockBroker::new();
        let cash = Usd::new(10_000.into());
        broker.expect_account().returning(move || {
            Ok(Account {
                status: AccountStatus::Active,
                cash,
                buying_power: cash,
                non_marginable_buying_power: cash,
                regt_buying_power: cash,
                daytrading_buying_power: Usd::ZERO,
                equity: cash,
                multiplier: 1,
                trading_blocked: false,
                account_blocked: false,
                shorting_enabled: false,
            })
        });
        broker.expect_positions().returning(|| Ok(Vec::new()));
        broker.expect_open_orders().returning(|| Ok(Vec::new()));
        broker.expect_clock().returning(move || {
            Ok(MarketClock {
                timestamp: now,
                is_open: open,
                next_open: now + chrono::Duration::hours(1),
                next_close: now + chrono::Duration::hours(7),
            })
        });
        broker.expect_asset().returning(move |s| {
            Ok(Asset {
                symbol: s.clone(),
                active,
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
        broker.expect_submit_order_if().never();
        broker.expect_replace_order_if().never();
        broker.expect_cancel_order().never();
        broker
    }

    fn no_feed() -> MockQuoteFeed {
        let mut feed = MockQuoteFeed::new();
        feed.expect_latest().returning(|_| None);
        feed
    }

    #[tokio::test]
    async fn a_dry_run_only_reads() {
        let plan = one_buy();
        let now = plan.timestamp;
        let found = preview(&plan, &EngineConfig::default(), &reads_only(now, true, false), &no_feed(), now).await;
        let row = &found.rows[0];
        assert_eq!(row.symbol, sym("AAPL"));
        assert_eq!(row.qty, Some(Qty::new(10.into())));
        // The default first limit joins the bid (an even book tilts it nowhere).
        assert_eq!(row.first_limit, Some("99.95".parse().unwrap()));
        assert_eq!(found.buy_cost, Usd::new(1000.into()));
        assert!(found.notes.iter().any(|n| n.contains("market is closed")), "{:?}", found.notes);
    }

    /// The dry run is the core's decision: an asset that is tradable but not active is refused
    /// in the dry run exactly as in a run (the dry run of engine core v1 checked only
    /// `tradable`).
    #[tokio::test]
    async fn a_dry_run_refuses_what_a_run_refuses() {
        let plan = one_buy();
        let now = plan.timestamp;
        let found = preview(&plan, &EngineConfig::default(), &reads_only(now, false, true), &no_feed(), now).await;
        let row = &found.rows[0];
        assert_eq!(row.qty, None);
        assert!(row.note.as_deref().is_some_and(|n| n.contains("not tradable")), "{row:?}");
    }
}
