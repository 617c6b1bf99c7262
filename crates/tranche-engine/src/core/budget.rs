//! The request budget: what the engine asked of the broker's Trading API in the last minute,
//! against the broker's budget (`requests_per_minute`), and which of its wishes it can afford:
//! first orders always, an escalation once the phase's first orders are out, a re-peg (a wish,
//! not a need) only with room to spare beyond both.
//!
//! Invariants: every command that becomes a Trading API request is counted when it is emitted
//! (a replace twice: its read-back and the replace itself); the window is the last 60 s; a
//! re-peg put off for want of budget is tried again at a staggered time, one budget slot
//! (`60 s / requests_per_minute`) after the last one put off, so that put-off re-pegs spread
//! over the minute instead of coming back together.

use std::collections::VecDeque;

use tranche_domain::Timestamp;

use super::EngineCore;
use crate::io::Command;

/// The Trading API requests of the last minute.
#[derive(Debug, Clone)]
pub(crate) struct RequestBudget {
    per_minute: u32,
    sent: VecDeque<Timestamp>,
    /// The last time a put-off re-peg was given.
    last_put_off: Option<Timestamp>,
}

/// The window the budget counts over.
const WINDOW: chrono::Duration = chrono::Duration::seconds(60);

impl RequestBudget {
    /// A budget of `per_minute` requests in any minute (0: no limit).
    pub(crate) fn new(per_minute: u32) -> Self {
        Self { per_minute, sent: VecDeque::new(), last_put_off: None }
    }

    /// The Trading API requests `command` makes.
    pub(crate) fn cost(command: &Command) -> usize {
        match command {
            // Account, clock, positions, open orders and the assets: one read of the list for a
            // large plan, one per symbol for a small one (a failed list, read symbol by symbol
            // after it, is not foreseen).
            Command::Preflight { symbols } => {
                4 + if symbols.len() >= crate::io::ASSET_LIST_FROM { 1 } else { symbols.len() }
            }
            Command::Submit { .. }
            | Command::Replace { .. }
            | Command::SendReplace { .. }
            | Command::Cancel { .. }
            | Command::LookupClientId { .. }
            | Command::LookupOrder { .. }
            | Command::FetchAccount
            | Command::FetchPositions
            | Command::FetchPosition { .. }
            | Command::FetchFills { .. } => 1,
            _ => 0,
        }
    }

    /// Counts the requests of `out`, emitted at `now`.
    pub(crate) fn record(&mut self, now: Timestamp, out: &[Command]) {
        if self.per_minute == 0 {
            return;
        }
        let cost: usize = out.iter().map(Self::cost).sum();
        self.sent.extend(std::iter::repeat_n(now, cost));
        self.prune(now);
    }

    fn prune(&mut self, now: Timestamp) {
        while self.sent.front().is_some_and(|&t| now - t >= WINDOW) {
            self.sent.pop_front();
        }
        // Only the last `per_minute` matter to the budget; older ones in a burst past it are
        // queued by the adapter and age out with them.
        let cap = usize::try_from(self.per_minute).unwrap_or(usize::MAX).saturating_mul(4);
        while self.sent.len() > cap {
            self.sent.pop_front();
        }
    }

    /// Requests the budget still allows in the current minute (unbounded without a limit).
    pub(crate) fn spare(&mut self, now: Timestamp) -> usize {
        if self.per_minute == 0 {
            return usize::MAX;
        }
        self.prune(now);
        usize::try_from(self.per_minute).unwrap_or(usize::MAX).saturating_sub(self.sent.len())
    }

    /// When a put-off re-peg that needs `room` requests of spare budget is tried again: once
    /// enough requests left the window, and one budget slot after the re-peg put off before it.
    pub(crate) fn put_off(&mut self, now: Timestamp, room: usize) -> Timestamp {
        self.prune(now);
        let slot = WINDOW / i32::try_from(self.per_minute.max(1)).unwrap_or(i32::MAX);
        let budget = usize::try_from(self.per_minute).unwrap_or(usize::MAX);
        // The last request that must leave the window for `room` to be spare.
        let frees = (self.sent.len() + room)
            .checked_sub(budget.saturating_add(1))
            .and_then(|i| self.sent.get(i))
            .map_or(now, |&t| t + WINDOW);
        let after_last = self.last_put_off.map_or(now, |t| t + slot);
        let at = frees.max(after_last).max(now + slot);
        self.last_put_off = Some(at);
        at
    }
}

/// Whether a request of this kind may go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// An escalation: the phase's first orders go before it.
    Escalation,
    /// A re-peg before the horizon: only with room beyond the first orders and a tenth of the
    /// budget kept for escalations.
    Repeg,
}

impl EngineCore {
    /// First orders the current phase still has to send (each needs a request).
    pub(crate) fn first_orders_pending(&self) -> usize {
        let Some(side) = self.phase_side() else { return 0 };
        self.items.iter().filter(|i| i.side == Some(side) && !i.stage.is_done() && i.children.is_empty()).count()
    }

    /// Of those, the ones a free concurrency slot lets go now (the others wait for an item to
    /// finish: holding budget for them would only hold back the escalations that free slots).
    fn first_orders_due(&self) -> usize {
        let Some(side) = self.phase_side() else { return 0 };
        let working =
            self.items.iter().filter(|i| i.side == Some(side) && !i.stage.is_done() && !i.children.is_empty()).count();
        self.first_orders_pending().min(self.config.concurrency.saturating_sub(working))
    }

    /// At a phase's start: whether its first orders alone exceed the budget's room (then the
    /// budget sets the pace, and `smart` sends each first order as its escalation).
    pub(crate) fn judge_budget(&mut self, now: Timestamp) {
        let first = self.first_orders_pending();
        let spare = self.budget.spare(now);
        self.budget_bound = self.config.strategy == crate::config::Strategy::Smart
            && self.config.requests_per_minute > 0
            && first > spare;
        if self.budget_bound {
            self.notes.push(format!(
                "{first} first orders in one phase, with room for {spare} requests in the budget's minute: worked as protected limits at once (the request budget, not the market, sets the pace)"
            ));
        }
    }

    /// The spare budget a request of `need` requires now, beside the requests of `out` not yet
    /// counted: for an escalation the first orders a free slot lets go now, for a re-peg every
    /// first order of the phase and a tenth of the budget more, and the two a replace or a
    /// cancel-then-new costs.
    pub(crate) fn room_for(&self, need: Need, out: &[Command]) -> usize {
        let reserve = match need {
            Need::Escalation => self.first_orders_due(),
            Need::Repeg => {
                self.first_orders_pending() + usize::try_from(self.config.requests_per_minute / 10).unwrap_or(0)
            }
        };
        let pending: usize = out.iter().map(RequestBudget::cost).sum();
        reserve + pending + 2
    }

    /// Whether the budget allows a request of `need` now (see [`Self::room_for`]).
    pub(crate) fn affords(&mut self, need: Need, now: Timestamp, out: &[Command]) -> bool {
        let room = self.room_for(need, out);
        self.budget.spare(now) >= room
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        chrono::DateTime::UNIX_EPOCH + chrono::Duration::seconds(secs)
    }

    fn submit() -> Command {
        Command::FetchAccount
    }

    /// The preflight costs what the driver sends: four reads and the assets, one list for a
    /// large plan, one read per symbol for a small one. It counted five whatever the plan (19
    /// symbols: 23 requests sent, 5 counted, the rest spent again on re-pegs).
    #[test]
    fn the_preflight_costs_its_asset_reads() {
        let symbols = |n: usize| {
            (0..n).map(|i| tranche_domain::Symbol::parse(&format!("S{i}")).unwrap_or_else(|e| panic!("{e}"))).collect()
        };
        assert_eq!(RequestBudget::cost(&Command::Preflight { symbols: symbols(3) }), 7);
        assert_eq!(RequestBudget::cost(&Command::Preflight { symbols: symbols(19) }), 23);
        assert_eq!(RequestBudget::cost(&Command::Preflight { symbols: symbols(500) }), 5);
    }

    #[test]
    fn the_window_is_the_last_minute() {
        let mut budget = RequestBudget::new(10);
        budget.record(at(0), &[submit(), submit(), submit()]);
        budget.record(at(30), &[submit(), Command::CancelTimer(crate::io::TimerId::PhaseDeadline)]);
        assert_eq!(budget.spare(at(30)), 6, "timers cost nothing");
        assert_eq!(budget.spare(at(59)), 6);
        assert_eq!(budget.spare(at(60)), 9, "the first three left the window");
        assert_eq!(budget.spare(at(90)), 10);
        assert_eq!(RequestBudget::new(0).spare(at(0)), usize::MAX, "no limit");
    }

    #[test]
    fn put_off_re_pegs_come_back_one_slot_apart_once_the_window_has_room() {
        let mut budget = RequestBudget::new(6);
        budget.record(at(0), &[submit(), submit(), submit(), submit(), submit(), submit(), submit()]);
        assert_eq!(budget.spare(at(1)), 0);
        // Seven sent at 0 s with room for six: one must leave, at 60 s; then 10 s apart.
        let first = budget.put_off(at(1), 1);
        assert_eq!(first, at(60));
        assert_eq!(budget.put_off(at(1), 1), at(70));
        assert_eq!(budget.put_off(at(2), 1), at(80));
        // Room for three needs the first three gone (all sent at 0 s): still 60 s, a slot later.
        assert_eq!(budget.put_off(at(3), 3), at(90));
    }
}
