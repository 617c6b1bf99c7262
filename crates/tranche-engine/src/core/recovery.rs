//! Continuing an interrupted run: rebuilding items from the ledger's intents and fills, resolving
//! every recorded order at the broker, and recording to the ledger as the run goes.
//!
//! Invariants: an item's target is the quantity of its first recorded order (never re-sized, so
//! a restart never trades twice); attempt numbers continue after the highest recorded one (no
//! client order id is ever reused); every recorded order is looked up by client order id before
//! the item may send anything new; fills already in the ledger are booked, not recounted; the
//! ledger's records find their item by symbol, so a plan sent again with its items reordered
//! continues each item where it was.

use tranche_domain::{ExecutionId, ItemOutcome, Order, OrderType, Timestamp};
use tranche_ledger::{FillRecord, OrderIntent, OrderRecord};

use super::item::{Child, ChildState, FillSource, Stage};
use super::EngineCore;
use crate::io::{Command, LedgerRecord};

/// What the ledger holds of an interrupted run of the plan.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// Every recorded order intent of the plan.
    pub intents: Vec<OrderIntent>,
    /// Every recorded fill of the plan.
    pub fills: Vec<FillRecord>,
    /// When the interrupted run started (fills since then are re-read from the broker).
    pub started_at: Option<Timestamp>,
    /// The items the interrupted run finished on purpose: reported as recorded, never traded
    /// again.
    pub items: Vec<tranche_ledger::ItemRecord>,
}

impl EngineCore {
    /// Rebuilds items from the recovery data and asks the broker about every recorded order.
    pub(super) fn apply_recovery(&mut self, now: Timestamp, out: &mut Vec<Command>) {
        let Some(recovery) = self.recovery.take() else { return };
        for intent in &recovery.intents {
            // By symbol (unique in a plan), not by the recorded index: a plan sent again with its
            // items in another order still finds each item's orders. An intent of a symbol no
            // longer in the plan, or of the other side, is no item's: its order, if still open,
            // is cancelled with the plan's other leftovers.
            let Some(item_index) = self.items.iter().position(|it| it.item.symbol == intent.symbol) else { continue };
            let item = &mut self.items[item_index];
            if item.side != Some(intent.side) {
                continue;
            }
            if item.children.is_empty() {
                item.target = intent.qty.get();
                item.arrival_mid = intent.arrival_mid;
                item.reference = intent.arrival_mid;
            }
            item.recovered = true;
            item.attempt = item.attempt.max(intent.attempt.saturating_add(1));
            let mut child = Child::sending(
                intent.client_order_id.clone(),
                intent.qty.get(),
                intent.limit_price,
                intent.order_type,
                None,
                intent.replaces.as_deref().map(tranche_domain::BrokerOrderId::new),
                intent.created_at,
            );
            child.state = ChildState::Uncertain;
            item.children.push(child);
            out.push(Command::LookupClientId { item: item_index, client_order_id: intent.client_order_id.clone() });
        }
        for fill in &recovery.fills {
            if let Some(i) = self.items.iter().position(|it| it.child_by_client(&fill.client_order_id).is_some()) {
                let id = ExecutionId::new(fill.execution_id.clone());
                let (qty, price) = (fill.qty.get(), fill.price.get());
                self.items[i].book_fill(
                    &id,
                    qty,
                    price,
                    &fill.client_order_id,
                    fill.filled_at,
                    None,
                    None,
                    FillSource::Ledger,
                );
            }
        }
        if let Some(since) = recovery.started_at {
            // Fills that happened after the last ledger write of the interrupted run.
            let since = Self::before(since, self.config.fill_lookback);
            self.fills_since = Some(self.fills_since.map_or(since, |s| s.min(since)));
            self.fills_requested = true;
            self.fill_reads_out += 1;
            out.push(Command::FetchFills { since });
        }
        for record in &recovery.items {
            // Finished by the interrupted run (found by symbol, as the intents are): its orders
            // are still looked up and its fills read (for the result), but nothing new is sent.
            if let Some(i) = self.items.iter().position(|it| it.item.symbol == record.symbol) {
                self.finish_item(i, record.outcome, record.reason.clone(), now, out);
            }
        }
        let resumed = self.items.iter().filter(|i| i.recovered && !i.stage.is_done()).count();
        if resumed > 0 {
            self.notes.push(format!("resumed an interrupted run: {resumed} item(s) continued from the ledger"));
        }
    }

    /// The ledger record of an execution of item `i`, under the broker id the execution names
    /// (the child may not know its broker id yet when its submit answer was lost).
    pub(super) fn record_fill_to_ledger(&self, i: usize, fill: &tranche_domain::Fill, out: &mut Vec<Command>) {
        let item = &self.items[i];
        let child = item.child_by_client(&fill.client_order_id).map(|c| &item.children[c]);
        // The quote in force when the fill happened, not the latest (which may be later).
        let quote = self.quote_at(&item.item.symbol, fill.time);
        let record = FillRecord {
            execution_id: fill.execution_id.as_str().to_owned(),
            plan_id: self.plan.plan_id.clone(),
            run_id: String::new(),
            client_order_id: fill.client_order_id.clone(),
            broker_order_id: fill.order_id.to_string(),
            symbol: item.item.symbol.clone(),
            side: item.side.unwrap_or(tranche_domain::Side::Buy),
            qty: fill.qty,
            price: fill.price,
            bid: quote.map(|q| q.bid).filter(|p| p.is_positive()),
            ask: quote.map(|q| q.ask).filter(|p| p.is_positive()),
            order_type: Some(child.map_or(OrderType::Limit, |c| c.order_type)),
            strategy_attribution: self.plan.strategy_attribution(&item.item.symbol).cloned(),
            filled_at: fill.time,
        };
        out.push(Command::Record(Box::new(LedgerRecord::Fill(record))));
    }

    pub(super) fn record_order_to_ledger(&self, order: &Order, now: Timestamp, out: &mut Vec<Command>) {
        let record = OrderRecord {
            plan_id: self.plan.plan_id.clone(),
            client_order_id: order.client_order_id.clone(),
            broker_order_id: Some(order.id.to_string()),
            symbol: order.symbol.clone(),
            side: order.side,
            status: order.status,
            filled_qty: order.filled_qty,
            filled_avg_price: order.filled_avg_price,
            updated_at: order.updated_at.unwrap_or(now),
        };
        out.push(Command::Record(Box::new(LedgerRecord::Order(record))));
    }

    /// Stops the run: nothing new is sent, working orders are cancelled, every unfinished item
    /// ends with `reason`.
    pub(super) fn abort(&mut self, reason: &str, now: Timestamp, out: &mut Vec<Command>) {
        if self.aborted.is_some() {
            return;
        }
        out.push(Command::Emit(crate::events::ProgressEvent::Warning {
            symbol: None,
            message: format!("aborting the run: {reason}"),
            at: now,
        }));
        self.aborted = Some(reason.to_owned());
        self.notes.push(reason.to_owned());
        for i in 0..self.items.len() {
            match &self.items[i].stage {
                Stage::Working { .. } => self.close_item(i, reason, now, out),
                Stage::Done { .. } | Stage::Closing { .. } => {}
                _ => {
                    let outcome = if self.items[i].side.is_none() { ItemOutcome::Held } else { ItemOutcome::Failed };
                    self.finish_item(i, outcome, Some(reason.to_owned()), now, out);
                }
            }
        }
    }
}
