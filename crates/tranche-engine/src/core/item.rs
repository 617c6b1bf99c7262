//! One plan item's working state: where it is in its life (one [`Stage`], whose variants carry
//! their data: what a working item waits for, why a closing one closes, how a done one ended),
//! its target, its child orders (every attempt, in order) and its fills.
//!
//! Invariants: filled quantity and notional are sums over distinct executions of the item's own
//! children, never a child's cumulative figure (predecessor defects D3, D4), and an order's
//! booked executions never exceed the broker's cumulative filled quantity for it (the two id
//! spaces of executions cannot double-book); remaining = target - filled, never negative; an
//! order counts as working until it is final or a replacement of it is accepted (a rejected
//! replacement leaves it working); a done item never changes again.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use tranche_domain::{
    Asset, BrokerOrderId, ClientOrderId, ExecutionId, ItemOutcome, OrderRequest, OrderStatus, OrderType, PlanItem,
    Position, Price, Side, Timestamp,
};

/// One booked execution of an item.
#[derive(Debug, Clone)]
pub(crate) struct Booked {
    pub qty: Decimal,
    pub price: Decimal,
    /// The child order it filled.
    pub child: ClientOrderId,
    /// Where it was learnt.
    pub source: FillSource,
    /// Booked from an activity read (under the activity's id) and not yet matched by a
    /// trade update of the same execution (under the execution id).
    pub read_unmatched: bool,
    /// When it happened, as its source says.
    pub at: Timestamp,
}

/// What the item's fill reads have shown of the two id spaces (the trade updates' execution ids
/// and the account activities' ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdSpaces {
    /// Not known yet.
    Unknown,
    /// A read named an execution booked from the stream by the same id.
    Shared,
    /// A read listed an order's executions without naming any booked from the stream.
    Unrelated,
}

/// Where an execution was learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FillSource {
    /// A trade update (the execution id).
    Stream,
    /// The account activities (the activity's id, which may differ from the execution id).
    Read,
    /// The ledger of an interrupted run.
    Ledger,
}

/// Where an item is in its life. A HOLD item goes from `Waiting` straight to `Done`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Its phase has not started.
    Waiting,
    /// Waiting for a usable quote to size it.
    NeedsQuote,
    /// Sized, waiting for a concurrency slot.
    Ready,
    /// Orders are being worked; `pending` is what the item waits for, if anything.
    Working {
        /// The request in flight or the step under way.
        pending: Option<Pending>,
    },
    /// Stopping (a deadline, an abort): what is open is being cancelled.
    Closing {
        /// Why it stops (the item's reason when it ends without filling).
        reason: String,
        /// Since when.
        since: Timestamp,
    },
    /// Finished, for good.
    Done {
        /// How it ended.
        outcome: ItemOutcome,
        /// Why, when not simply filled.
        reason: Option<String>,
    },
}

/// What a working item waits for before it decides anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pending {
    /// A REST quote (to price the next order or re-peg).
    Quote,
    /// The answer to a submit.
    Submit,
    /// The answer to a replace.
    Replace,
    /// The state of the working order, read after a refused replace.
    Lookup,
    /// The position, read before a sell goes out again (see `ItemState::position_check`).
    Position,
    /// The working order is being cancelled; with `then_new`, the next order goes out once the
    /// cancel is final (a re-peg that cannot be a replace, an over-exposed order, a lost replace).
    Cancel {
        /// Send the next order once the cancel is final.
        then_new: bool,
    },
}

impl Stage {
    pub fn is_done(&self) -> bool {
        matches!(self, Self::Done { .. })
    }

    pub fn is_working(&self) -> bool {
        matches!(self, Self::Working { .. })
    }

    pub fn is_closing(&self) -> bool {
        matches!(self, Self::Closing { .. })
    }

    /// Working or closing: it has (or may have) orders at the broker.
    pub fn is_active(&self) -> bool {
        self.is_working() || self.is_closing()
    }

    /// The outcome, once done.
    pub fn outcome(&self) -> Option<(ItemOutcome, Option<String>)> {
        match self {
            Self::Done { outcome, reason } => Some((*outcome, reason.clone())),
            _ => None,
        }
    }
}

/// What we know about one child order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChildState {
    /// Request sent, no answer yet.
    Sending,
    /// Not applied (a 429, a transient refusal) or not found yet after a lost answer: the same
    /// request goes again, under the same client order id, when the item's retry timer fires.
    Resend,
    /// The answer was lost: it may or may not exist; resolved by lookup or stream.
    Uncertain,
    /// Accepted by the broker, not final.
    Live(OrderStatus),
    /// Final at the broker.
    Final(OrderStatus),
    /// Never placed (refused, or a targeted lookup found nothing).
    NotPlaced,
}

/// One order attempt of an item.
#[derive(Debug, Clone)]
pub(crate) struct Child {
    pub client_id: ClientOrderId,
    pub broker_id: Option<BrokerOrderId>,
    pub state: ChildState,
    pub qty: Decimal,
    pub limit: Option<Price>,
    pub order_type: OrderType,
    /// The broker's cumulative filled quantity, as last reported.
    pub reported_filled: Decimal,
    /// The request of a submit, kept to re-send it under the same client order id (after a 429,
    /// or while a lost submit cannot be found: the broker refuses a second copy of an id).
    pub request: Option<OrderRequest>,
    /// The order a replace asked to change (this child is its replacement).
    pub replaces: Option<BrokerOrderId>,
    /// When the request that created it was last sent (a lost one may still appear for a while).
    pub sent_at: Timestamp,
    /// When it was first sent (its intent's time): an order under its id created long before is
    /// not this order.
    pub created: Timestamp,
    /// Lookups of this child that found nothing.
    pub not_found: u32,
    /// Everything the broker has reported of the order, merged (the ledger's record of it).
    pub report: Option<tranche_domain::Order>,
    /// It is the escalation order (the step after the re-pegs, meant to trade).
    pub escalation: bool,
    /// A replace refused because its order was not at the venue yet: Alpaca has applied such a
    /// replace anyway once the order got there (ATAP #306), so the old order may yet end
    /// replaced by this one.
    pub refused_may_apply: bool,
    /// Its replace has left for the broker (not only been decided): while it is `Sending`, the
    /// answer on its way names the order it made.
    pub answer_due: bool,
    /// What became of our cancels of it: when it ends cancelled, whether we ended it (else the
    /// broker or the account's owner did, and a sell reads the position before it goes again).
    pub cancel: CancelAnswer,
}

/// What became of our cancels of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum CancelAnswer {
    /// None sent.
    #[default]
    NotSent,
    /// Sent, not answered yet.
    Awaiting,
    /// The broker accepted one.
    Accepted,
    /// Refused (too late: already final), or its outcome unknown.
    NotAccepted,
}

impl Child {
    /// Sent, and whether the broker has it is not known yet (in flight, lost, or waiting to be
    /// sent again).
    pub fn outcome_unknown(&self) -> bool {
        matches!(self.state, ChildState::Sending | ChildState::Resend | ChildState::Uncertain)
    }

    /// A child for an order about to be sent (a submit with its `request`, or the replacement
    /// of `replaces`).
    pub fn sending(
        client_id: ClientOrderId,
        qty: Decimal,
        limit: Option<Price>,
        order_type: OrderType,
        request: Option<OrderRequest>,
        replaces: Option<BrokerOrderId>,
        now: Timestamp,
    ) -> Self {
        Self {
            client_id,
            broker_id: None,
            state: ChildState::Sending,
            qty,
            limit,
            order_type,
            reported_filled: Decimal::ZERO,
            request,
            replaces,
            sent_at: now,
            created: now,
            not_found: 0,
            report: None,
            escalation: false,
            refused_may_apply: false,
            answer_due: false,
            cancel: CancelAnswer::NotSent,
        }
    }

    /// A submit whose answer never came, which the broker may yet create: in flight (its
    /// answer cut off when the run ends), lost, or waiting to go again after a lost answer.
    pub fn may_yet_appear(&self) -> bool {
        self.broker_id.is_none()
            && self.request.is_some()
            && match self.state {
                ChildState::Sending | ChildState::Uncertain => true,
                ChildState::Resend => self.not_found > 0,
                _ => false,
            }
    }

    pub fn is_open(&self) -> bool {
        matches!(self.state, ChildState::Sending | ChildState::Resend | ChildState::Uncertain | ChildState::Live(_))
    }

    pub fn leaves(&self) -> Decimal {
        self.qty.saturating_sub(self.reported_filled).max(Decimal::ZERO)
    }
}

/// A plan item being executed.
#[derive(Debug, Clone)]
pub(crate) struct ItemState {
    pub item: PlanItem,
    pub side: Option<Side>,
    pub asset: Option<Asset>,
    pub position: Option<Position>,
    pub stage: Stage,
    pub target: Decimal,
    pub reference: Option<Price>,
    pub arrival_mid: Option<Price>,
    pub fills: BTreeMap<ExecutionId, Booked>,
    /// Execution ids of trade updates matched to executions booked from a read under another
    /// id (a repeated update of one of them is known, not new).
    pub matched_ids: std::collections::BTreeSet<ExecutionId>,
    /// Whether the activities name executions as the trade updates do.
    pub id_spaces: IdSpaces,
    pub filled: Decimal,
    pub filled_notional: Decimal,
    pub last_fill_at: Option<Timestamp>,
    pub children: Vec<Child>,
    pub attempt: u16,
    pub repegs: u32,
    pub step: u32,
    /// A re-peg is due but the working order has not reached the venue (accepted, pending new,
    /// or a replace refused as "not sent to exchange yet"): it goes when the order works.
    pub repeg_when_routed: bool,
    /// The stream's breaks when the replace now on its way was decided.
    pub breaks_at_replace: u64,
    pub started_at: Option<Timestamp>,
    /// When its first order was sent (the adaptive pricing's clock starts here).
    pub working_since: Option<Timestamp>,
    /// When an order of it was last priced (sent, or re-priced by replace).
    pub priced_at: Option<Timestamp>,
    /// Continued from an interrupted run: sized already, orders recorded.
    pub recovered: bool,
    /// Shares a liquidation cannot sell: the fraction of a non-fractionable asset.
    pub left_over: Decimal,
    /// The most a buy may spend in all (its share of the budget at sizing).
    pub spend_cap: Option<Decimal>,
    /// Why its target is less than the plan asked (buys scaled to the buying power, a sell capped
    /// at the position): filling that target is a partial fill of the plan, said so.
    pub shortfall: Option<String>,
    /// A sell's next order waits for a read of the position: its last order ended without
    /// our asking (the owner closing the position cancels our orders, then sells), or a sell
    /// was refused for the quantity. Shares sold outside the run are never sold again (a
    /// margin account would take the excess as a short sale).
    pub position_check: bool,
    /// A sell refused for the quantity was sized again from a fresh position once; a second
    /// refusal fails the item.
    pub quantity_refused: bool,
    /// The children a position read was made after (those before this index): their ends need
    /// no further read.
    pub position_read_covers: usize,
}

impl ItemState {
    pub fn new(item: PlanItem) -> Self {
        Self {
            side: item.action.side(),
            item,
            asset: None,
            position: None,
            stage: Stage::Waiting,
            target: Decimal::ZERO,
            reference: None,
            arrival_mid: None,
            fills: BTreeMap::new(),
            matched_ids: std::collections::BTreeSet::new(),
            id_spaces: IdSpaces::Unknown,
            filled: Decimal::ZERO,
            filled_notional: Decimal::ZERO,
            last_fill_at: None,
            children: Vec::new(),
            attempt: 0,
            repegs: 0,
            repeg_when_routed: false,
            breaks_at_replace: 0,
            step: 0,
            started_at: None,
            working_since: None,
            priced_at: None,
            recovered: false,
            left_over: Decimal::ZERO,
            spend_cap: None,
            shortfall: None,
            position_check: false,
            quantity_refused: false,
            position_read_covers: 0,
        }
    }

    /// What the working item waits for (`None` when not working or waiting for nothing).
    pub fn pending(&self) -> Option<Pending> {
        match &self.stage {
            Stage::Working { pending } => *pending,
            _ => None,
        }
    }

    /// Waits for a request (a quote, a submit, a replace, a lookup) before deciding anything.
    pub fn is_busy(&self) -> bool {
        matches!(
            self.pending(),
            Some(Pending::Quote | Pending::Submit | Pending::Replace | Pending::Lookup | Pending::Position)
        )
    }

    /// Its working order is being cancelled so that the next one can go out.
    pub fn replacing_by_new(&self) -> bool {
        self.pending() == Some(Pending::Cancel { then_new: true })
    }

    /// Sets what the working item waits for (nothing happens unless it is working).
    pub fn wait_for(&mut self, what: Option<Pending>) {
        if let Stage::Working { pending } = &mut self.stage {
            *pending = what;
        }
    }

    /// An answer about child `c` came (to a submit, a replace or a lookup): the item no longer
    /// waits for it. A submit or replace wait concerns the newest child only, so the answer about
    /// an older order (a lookup after a stream gap) never ends it; a cancel-then-new still waits
    /// for the cancel; a quote wait ends only with the quote (`quote_answered`).
    pub fn answered(&mut self, c: usize) {
        let newest = c + 1 == self.children.len();
        match self.pending() {
            Some(Pending::Submit | Pending::Replace) if newest => self.wait_for(None),
            Some(Pending::Lookup) => self.wait_for(None),
            _ => {}
        }
    }

    /// Child `c`'s request is answered, and no order came of it (refused, withdrawn before it
    /// left, held back, or someone else's under its id).
    pub fn not_placed(&mut self, c: usize) {
        self.answered(c);
        self.children[c].state = ChildState::NotPlaced;
    }

    /// The REST quote the item waited for came (or will not).
    pub fn quote_answered(&mut self) {
        if self.pending() == Some(Pending::Quote) {
            self.wait_for(None);
        }
    }

    /// An escalation order has been sent for it.
    pub fn escalated(&self) -> bool {
        self.children.iter().any(|c| c.escalation)
    }

    pub fn fractionable(&self) -> bool {
        self.asset.as_ref().is_some_and(|a| a.fractionable)
    }

    /// Shares known to have filled: per order, the larger of its booked executions and the
    /// broker's cumulative figure (executions can arrive after the figure, or be lost in transit).
    pub fn known_filled(&self) -> Decimal {
        let per_child: Decimal = self
            .children
            .iter()
            .map(|c| c.reported_filled.max(self.booked_for(&c.client_id)))
            .fold(Decimal::ZERO, Decimal::saturating_add);
        per_child.max(self.filled)
    }

    /// Some order's cumulative filled quantity, as the broker reported it, is more than its
    /// booked executions: an execution's update was lost (or is late) and no fill read showed
    /// it yet. What the item spent is not known until it is booked.
    pub fn executions_missing(&self) -> bool {
        self.children.iter().any(|c| c.reported_filled > self.booked_for(&c.client_id))
    }

    /// What is left to trade, by everything known to have filled.
    pub fn remaining(&self) -> Decimal {
        self.target.saturating_sub(self.known_filled()).max(Decimal::ZERO)
    }

    /// True when what is left cannot or need not be traded: nothing, less than a whole share of
    /// a non-fractionable asset, or less than the minimum notional of a fractionable one.
    pub fn is_complete(&self, min_notional: Decimal) -> bool {
        let remaining = self.remaining();
        if remaining.is_zero() {
            return true;
        }
        if self.item.is_liquidation() {
            // A liquidation sells everything, fractional remainder included.
            return false;
        }
        if !self.fractionable() {
            return remaining < Decimal::ONE;
        }
        let price = self.reference.map_or(Decimal::ZERO, Price::get);
        remaining.checked_mul(price).is_none_or(|value| value < min_notional)
    }

    /// What a fractionable item leaves untraded because an order for it would be under the
    /// broker's minimum (Alpaca refuses a fractional order under $1), said for the result;
    /// `None` when nothing is left that way.
    pub fn remainder_under_minimum(&self, min_notional: Decimal) -> Option<String> {
        let remaining = self.remaining();
        if remaining.is_zero() || self.item.is_liquidation() || !self.fractionable() {
            return None;
        }
        let price = self.reference.map_or(Decimal::ZERO, Price::get);
        let value = remaining.checked_mul(price)?;
        (value < min_notional).then(|| {
            format!(
                "{} shares (about ${}) left untraded: an order for them would be under the ${} minimum of a \
                 fractional order",
                remaining.normalize(),
                value.round_dp(2),
                min_notional.normalize()
            )
        })
    }

    /// Books an execution of child `client_id` once; returns false when it is not booked.
    ///
    /// The trade-update stream and the account activities name an execution in two id spaces
    /// that nothing documents as equal, so an id is not enough to tell a new execution from one
    /// booked under the other id. The broker's cumulative filled quantity of the order
    /// (`filled_up_to`, the largest it has reported) is the authority: an execution that would
    /// take the order's booked fills beyond it is not booked (a later report of a larger
    /// figure, and the fill read it triggers, books it then). Executions recorded in the ledger
    /// of an interrupted run are booked without that bound (`None`). A trade update of an
    /// execution already booked from an activity read (same order, quantity and price, not yet
    /// matched) is that execution: it is matched, not booked again (the bound alone lets it
    /// through when another execution's update was lost), once a read has shown the two id
    /// spaces to be unrelated; before anything showed either, only when the update's own
    /// cumulative (`cumulative`: the order's filled quantity up to this execution) is booked
    /// already (a read lists an order's executions oldest first, so a booked read execution of
    /// its size and price within that cumulative is this one). Where the ids are shared, the id
    /// alone tells, and two executions of the same size and price are two.
    #[allow(clippy::too_many_arguments)]
    pub fn book_fill(
        &mut self,
        id: &ExecutionId,
        qty: Decimal,
        price: Decimal,
        client_id: &ClientOrderId,
        at: Timestamp,
        filled_up_to: Option<Decimal>,
        cumulative: Option<Decimal>,
        source: FillSource,
    ) -> bool {
        if let Some(known) = self.fills.get_mut(id) {
            // Named by the same id in both spaces (as Alpaca's ids may be): matched by it.
            if source == FillSource::Stream {
                known.read_unmatched = false;
            }
            return false;
        }
        if self.matched_ids.contains(id) {
            return false;
        }
        let covered = cumulative.is_some_and(|upto| upto <= self.booked_for(client_id));
        let may_match = match self.id_spaces {
            IdSpaces::Unrelated => true,
            IdSpaces::Unknown => covered,
            IdSpaces::Shared => false,
        };
        if source == FillSource::Stream && may_match {
            let read = self
                .fills
                .values_mut()
                .find(|b| b.read_unmatched && &b.child == client_id && b.qty == qty && b.price == price);
            if let Some(read) = read {
                read.read_unmatched = false;
                self.matched_ids.insert(id.clone());
                return false;
            }
        }
        if filled_up_to.is_some_and(|cap| self.booked_for(client_id).saturating_add(qty) > cap) {
            return false;
        }
        let read_unmatched = source == FillSource::Read;
        self.fills.insert(id.clone(), Booked { qty, price, child: client_id.clone(), source, read_unmatched, at });
        self.filled = self.filled.saturating_add(qty);
        self.filled_notional = self.filled_notional.saturating_add(qty.checked_mul(price).unwrap_or(Decimal::ZERO));
        self.last_fill_at = Some(self.last_fill_at.map_or(at, |t| t.max(at)));
        true
    }

    /// Learns from an activity read whether its ids are the trade updates' execution ids: a
    /// read that names an execution booked from the stream shows them shared; one that lists an
    /// order's executions up to a time and names none of those booked from the stream by then
    /// shows them unrelated (an execution after the read's last one of the order may not be in
    /// it yet: activities can lag the stream). Shared wins (it cannot be mistaken), and undoes
    /// what was taken for one execution under two ids while they looked unrelated.
    pub fn learn_id_spaces(&mut self, read: &[tranche_domain::Fill]) {
        if self.id_spaces == IdSpaces::Shared {
            return;
        }
        for child in &self.children {
            let listed: Vec<&tranche_domain::Fill> =
                read.iter().filter(|f| f.client_order_id == child.client_id).collect();
            let Some(read_until) = listed.iter().map(|f| f.time).max() else { continue };
            let streamed: Vec<(&ExecutionId, Timestamp)> = self
                .fills
                .iter()
                .filter(|(_, b)| b.child == child.client_id && b.source == FillSource::Stream)
                .map(|(id, b)| (id, b.at))
                .collect();
            if streamed.iter().any(|(id, _)| listed.iter().any(|f| &f.execution_id == *id)) {
                self.id_spaces = IdSpaces::Shared;
                for booked in self.fills.values_mut() {
                    booked.read_unmatched = false;
                }
                // Stream executions matched to read ones as the same under two ids were not:
                // the next read books them.
                self.matched_ids.clear();
                return;
            }
            if streamed.iter().any(|(_, at)| *at <= read_until) {
                self.id_spaces = IdSpaces::Unrelated;
            }
        }
    }

    /// The executions of an activity read (every fill of the account since a time, complete
    /// for each order) that are new to this item. Per child order: an execution booked under
    /// the same id is known; of the rest, each booked execution of the order that the read does
    /// not name by id (booked from the stream, whose ids may differ from the activities') stands
    /// for one execution of the read with the same quantity and price, unless the ids are known
    /// to be shared; what is left over is new. Counting this way is exact whenever the read
    /// holds every execution booked so far, and an execution it cannot tell apart yet is booked
    /// by a later read.
    pub fn new_in_activity_read(&self, read: &[tranche_domain::Fill]) -> Vec<tranche_domain::Fill> {
        let mut fresh = Vec::new();
        for child in &self.children {
            let of_child: Vec<&tranche_domain::Fill> =
                read.iter().filter(|f| f.client_order_id == child.client_id).collect();
            if of_child.is_empty() {
                continue;
            }
            let named: std::collections::BTreeSet<&ExecutionId> = of_child.iter().map(|f| &f.execution_id).collect();
            // Where the ids are shared, an id not booked is a new execution; a booked one the
            // read does not name yet is only one the read does not show yet (activities lag).
            let shared = self.id_spaces == IdSpaces::Shared;
            let mut unnamed: Vec<(Decimal, Decimal)> = self
                .fills
                .iter()
                .filter(|(id, b)| !shared && b.child == child.client_id && !named.contains(id))
                .map(|(_, b)| (b.qty, b.price))
                .collect();
            for fill in of_child {
                if self.fills.contains_key(&fill.execution_id) {
                    continue;
                }
                let key = (fill.qty.get(), fill.price.get());
                if let Some(pos) = unnamed.iter().position(|k| *k == key) {
                    unnamed.swap_remove(pos);
                    continue;
                }
                fresh.push(fill.clone());
            }
        }
        fresh
    }

    /// The sum of booked executions of one child.
    pub fn booked_for(&self, client_id: &ClientOrderId) -> Decimal {
        self.fills
            .values()
            .filter(|b| &b.child == client_id)
            .map(|b| b.qty)
            .fold(Decimal::ZERO, Decimal::saturating_add)
    }

    /// Index of the child with this client order id.
    pub fn child_by_client(&self, id: &ClientOrderId) -> Option<usize> {
        self.children.iter().position(|c| &c.client_id == id)
    }

    /// Index of the child with this broker id.
    pub fn child_by_broker(&self, id: &BrokerOrderId) -> Option<usize> {
        self.children.iter().position(|c| c.broker_id.as_ref() == Some(id))
    }

    /// True when child `c` no longer counts as working: it is final, or a replacement of it
    /// was accepted by the broker (and not rejected). A replacement that is rejected, whatever
    /// event says so first, leaves the order it would have replaced working.
    pub fn is_superseded(&self, c: usize) -> bool {
        let child = &self.children[c];
        if matches!(child.state, ChildState::Final(_)) {
            return true;
        }
        let Some(id) = child.broker_id.as_ref() else { return false };
        self.children.iter().any(|r| {
            r.replaces.as_ref() == Some(id)
                && match r.state {
                    ChildState::Live(_) => true,
                    ChildState::Final(status) => status != OrderStatus::Rejected,
                    ChildState::Sending | ChildState::Resend | ChildState::Uncertain | ChildState::NotPlaced => false,
                }
        })
    }

    /// Shares still exposed at the broker: leaves of open children not superseded by a replace.
    pub fn exposure(&self) -> Decimal {
        (0..self.children.len())
            .filter(|&c| self.children[c].is_open() && !self.is_superseded(c))
            .map(|c| self.children[c].leaves())
            .fold(Decimal::ZERO, Decimal::saturating_add)
    }

    /// The newest open child that is not superseded.
    pub fn working_child(&self) -> Option<usize> {
        (0..self.children.len()).rev().find(|&c| self.children[c].is_open() && !self.is_superseded(c))
    }

    pub fn any_open(&self) -> bool {
        self.children.iter().any(Child::is_open)
    }
}
