//! The end of a run: releasing subscriptions and building the [`ExecutionResult`] from the items'
//! fills (never from requested amounts: predecessor defect D32).

use serde_json::{json, Map, Value};
use tranche_domain::{Bps, ExecutionResult, ItemOutcome, ItemResult, Price, Qty, Timestamp, Usd};

use super::item::ChildState;
use super::{EngineCore, Finishing, RunPhase};
use crate::io::{Command, TimerId};

impl EngineCore {
    /// Where the run's final fill read starts: its start less `fill_lookback`, or an
    /// interrupted run's first intent if sooner.
    pub(super) fn run_fills_since(&self, now: Timestamp) -> Timestamp {
        let since = Self::before(self.started_at.unwrap_or(now), self.config.fill_lookback);
        self.fills_since.map_or(since, |s| s.min(since))
    }

    pub(super) fn finish_run(&mut self, now: Timestamp, out: &mut Vec<Command>) {
        if self.finished {
            return;
        }
        if matches!(self.finishing, Finishing::AwaitingOrders | Finishing::AwaitingFills) {
            return;
        }
        let traded = self.started_at.is_some() && self.items.iter().any(|i| !i.children.is_empty());
        if self.finishing == Finishing::No && traded {
            // Before the result: the final state of every order not known to be final, from the
            // broker (recorded in the ledger as it comes; its updates may have been lost).
            let mut asks = Vec::new();
            for (i, item) in self.items.iter().enumerate() {
                for child in &item.children {
                    if matches!(child.state, ChildState::Final(_) | ChildState::NotPlaced) {
                        continue;
                    }
                    self.final_lookups.insert(child.client_id.clone());
                    asks.push(match &child.broker_id {
                        Some(id) => Command::LookupOrder {
                            item: i,
                            client_order_id: child.client_id.clone(),
                            order: id.clone(),
                        },
                        None => Command::LookupClientId { item: i, client_order_id: child.client_id.clone() },
                    });
                }
            }
            self.finishing = Finishing::OrdersRead;
            if !asks.is_empty() {
                self.finishing = Finishing::AwaitingOrders;
                out.extend(asks);
                return;
            }
        }
        if self.finishing == Finishing::OrdersRead {
            // Then every execution of the run, from the broker's own record, so a fill whose
            // update was lost is still counted (and recorded).
            self.finishing = Finishing::AwaitingFills;
            let since = self.run_fills_since(now);
            self.fill_reads_out += 1;
            out.push(Command::FetchFills { since });
            return;
        }
        self.finished = true;
        self.phase = RunPhase::Done;
        for id in [
            TimerId::PhaseDeadline,
            TimerId::RunDeadline,
            TimerId::Settle,
            TimerId::StaleDeadline,
            TimerId::StaleRetry,
            TimerId::FinalGrace,
            TimerId::FillsRead,
        ] {
            out.push(Command::CancelTimer(id));
        }
        if !self.subscribed.is_empty() {
            out.push(Command::Release(std::mem::take(&mut self.subscribed)));
        }
        let items = (0..self.items.len()).map(|i| self.item_result(i, now)).collect();
        let mut metadata = Map::new();
        metadata.insert("engine".into(), json!(format!("tranche {}", env!("CARGO_PKG_VERSION"))));
        metadata.insert("strategy".into(), serde_json::to_value(self.config.strategy).unwrap_or(Value::Null));
        if let Some(start) = self.started_at {
            metadata.insert("started_at".into(), json!(start.to_rfc3339()));
            metadata.insert("duration_secs".into(), json!((now - start).num_milliseconds() as f64 / 1000.0));
        }
        if !self.notes.is_empty() {
            metadata.insert("notes".into(), json!(self.notes));
        }
        let result =
            ExecutionResult::from_items(&self.plan.plan_id, &self.plan.correlation_id, items, now, Some(metadata));
        out.push(Command::Finish(Box::new(result)));
    }

    fn item_result(&self, i: usize, now: Timestamp) -> ItemResult {
        let item = &self.items[i];
        let (outcome, reason) =
            item.stage.outcome().unwrap_or((ItemOutcome::Unfilled, Some("run ended before the item finished".into())));
        // Fills booked after the item ended (the final reads find an execution whose update was
        // lost) count: an item that ended with less traded says what it traded after all. Less
        // than the plan asked (a target scaled or capped, a fraction left) is never filled.
        let short = item.shortfall.is_some() || !item.left_over.is_zero();
        let ended = outcome;
        let outcome = match (outcome, self.outcome_of(i)) {
            (ItemOutcome::Unfilled | ItemOutcome::Failed, ItemOutcome::Filled) if short => ItemOutcome::PartiallyFilled,
            (ItemOutcome::PartiallyFilled, ItemOutcome::Filled) if short => ItemOutcome::PartiallyFilled,
            (
                ItemOutcome::Unfilled | ItemOutcome::Failed | ItemOutcome::PartiallyFilled,
                now @ (ItemOutcome::PartiallyFilled | ItemOutcome::Filled),
            ) => now,
            (outcome, _) => outcome,
        };
        // Filled after all: why it ended stays said, as what the final reads corrected.
        let reason = match reason {
            Some(why) if outcome == ItemOutcome::Filled && ended != ItemOutcome::Filled => {
                Some(format!("filled: its last executions were found by the final reads after it ended ({why})"))
            }
            reason => reason,
        };
        let avg = item.filled_notional.checked_div(item.filled).map(|p| Price::new(p.round_dp(6).normalize()));
        let slippage = match (item.side, item.arrival_mid, avg) {
            (Some(side), Some(mid), Some(avg)) => Bps::slippage(side, mid, avg).map(Bps::rounded),
            _ => None,
        };
        let placed: Vec<_> = item.children.iter().filter(|c| !matches!(c.state, ChildState::NotPlaced)).collect();
        let last = placed.last();
        let failed = matches!(outcome, ItemOutcome::Failed | ItemOutcome::Unfilled | ItemOutcome::PartiallyFilled);
        ItemResult {
            symbol: item.item.symbol.clone(),
            action: item.item.action,
            trade_amount: Usd::new(item.filled_notional.round_dp(2)),
            shares: Qty::new(item.target),
            price: avg,
            order_id: last.and_then(|c| c.broker_id.as_ref().map(ToString::to_string)),
            success: !failed,
            error_message: if failed { reason.clone() } else { None },
            timestamp: item.started_at.or(self.started_at).unwrap_or(now),
            order_type: last.map(|c| c.order_type),
            filled_at: item.last_fill_at,
            outcome,
            requested_qty: Qty::new(item.target),
            filled_qty: Qty::new(item.filled),
            requested_notional: item.item.trade_amount.abs(),
            filled_notional: Usd::new(item.filled_notional.round_dp(2)),
            avg_fill_price: avg,
            arrival_mid: item.arrival_mid,
            slippage_bps: slippage,
            orders: u32::try_from(placed.len()).unwrap_or(u32::MAX),
            repegs: item.repegs,
            reason,
        }
    }
}
