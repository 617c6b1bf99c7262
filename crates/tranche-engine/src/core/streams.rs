//! Which symbols' quotes are streamed. A data feed streams a limited number of symbols at once
//! (Alpaca's Basic plan: 30 on `iex`), fewer than a large plan holds: the core streams those
//! that matter most and prices the others from REST quotes, fetched when an order needs one.
//!
//! Invariants: never more symbols asked for than the feed's limit (`stream_slots`); a symbol
//! stays streamed while any item of it is not done (no churn of re-subscribing), and is released
//! when the last one is; a free slot goes first to the items of the phase under way (working
//! before sized before waiting), then to the next phase's, in plan order. A refusal by the feed
//! (Alpaca refuses a whole subscription past its limit) is said, and half the refused symbols
//! are asked for again: the limit is found in a few halvings, never retried in a loop.

use std::collections::BTreeSet;

use tranche_domain::{Action, Symbol, Timestamp};

use super::{EngineCore, RunPhase, Stage};
use crate::events::ProgressEvent;
use crate::io::Command;

impl EngineCore {
    /// The most symbols the feed streams at once (`None`: no limit), from the quote port.
    pub fn set_stream_slots(&mut self, slots: Option<usize>) {
        self.stream_slots = slots;
    }

    /// How much streaming item `i`'s quotes is worth now: lower first.
    fn stream_rank(&self, i: usize) -> (bool, u8, usize) {
        let buying = matches!(self.phase, RunPhase::Settle | RunPhase::Buy | RunPhase::Done);
        let item = &self.items[i];
        let this_phase = (item.item.action == Action::Buy) == buying;
        let stage = match item.stage {
            Stage::Working { .. } | Stage::Closing { .. } => 0,
            Stage::Ready | Stage::NeedsQuote => 1,
            Stage::Waiting | Stage::Done { .. } => 2,
        };
        (!this_phase, stage, i)
    }

    /// Releases the symbols no item needs any more and gives the free slots to the symbols that
    /// need a stream most (see the module's invariants).
    pub(super) fn sync_subscriptions(&mut self, out: &mut Vec<Command>) {
        let needed = |core: &Self, symbol: &Symbol| {
            core.items_of.get(symbol).is_some_and(|items| items.iter().any(|&i| !core.items[i].stage.is_done()))
        };
        let (keep, gone): (Vec<Symbol>, Vec<Symbol>) =
            std::mem::take(&mut self.subscribed).into_iter().partition(|s| needed(self, s));
        if !gone.is_empty() {
            out.push(Command::Release(gone));
        }
        let free = self.stream_slots.unwrap_or(usize::MAX).saturating_sub(keep.len());
        let held: BTreeSet<&Symbol> = keep.iter().collect();
        let mut candidates: Vec<usize> = (0..self.items.len())
            .filter(|&i| {
                let item = &self.items[i];
                !item.stage.is_done() && item.item.action != Action::Hold && !held.contains(&item.item.symbol)
            })
            .collect();
        candidates.sort_by_key(|&i| self.stream_rank(i));
        let mut added: Vec<Symbol> = Vec::new();
        for i in candidates {
            if added.len() >= free {
                break;
            }
            let symbol = &self.items[i].item.symbol;
            if !added.contains(symbol) {
                added.push(symbol.clone());
            }
        }
        let mut subscribed = keep;
        if !added.is_empty() {
            subscribed.extend(added.iter().cloned());
            out.push(Command::Subscribe(added));
        }
        self.subscribed = subscribed;
    }

    /// The feed refused to stream `symbols` (its symbol limit): the limit is taken to be what
    /// it streams plus half of what it refused, and that half is asked for again (the rest are
    /// priced from REST quotes). A refused single symbol leaves the limit at what is streamed.
    pub(super) fn on_subscribe_refused(
        &mut self,
        symbols: &[Symbol],
        message: &str,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) {
        self.subscribed.retain(|s| !symbols.contains(s));
        let streamed = self.subscribed.len();
        let slots = streamed + symbols.len() / 2;
        self.stream_slots = Some(self.stream_slots.map_or(slots, |known| known.min(slots)));
        let names: Vec<&str> = symbols.iter().map(Symbol::as_str).collect();
        out.push(Command::Emit(ProgressEvent::Warning {
            symbol: None,
            message: format!(
                "the data feed refused to stream {} ({message}); it streams {streamed} symbols and {} more are \
                 tried, the others are priced from REST quotes",
                names.join(", "),
                slots - streamed
            ),
            at: now,
        }));
        if matches!(self.phase, RunPhase::Sell | RunPhase::Settle | RunPhase::Buy | RunPhase::CancelStale) {
            self.sync_subscriptions(out);
        }
    }
}
