//! Order statuses, trade-update events and the exhaustive transition table between them.
//!
//! The table admits every edge a real broker produces, including the racy ones (a fill after a
//! cancel request, a cancel or replace that is rejected and returns the order to working, a
//! duplicate of a terminal event), and refuses the impossible ones (anything that leaves a terminal
//! status, fills after `rejected`, `new` after a partial fill). A refused edge is data
//! ([`InvalidTransition`]), never a panic: the caller re-reads the order from the broker.
//!
//! Fills themselves are booked per execution id elsewhere; a fill that arrives for an order whose
//! status is already terminal (reordered delivery) is still booked, only the status does not move.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! lenient_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value this version does not know; kept so decoding never fails.
            Unknown,
        }

        impl $name {
            /// Every known variant plus `Unknown`, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+ $name::Unknown];

            /// The wire spelling (`unknown` for [`Self::Unknown`]).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)+
                    $name::Unknown => "unknown",
                }
            }

            /// Parses the wire spelling case-insensitively; anything else is `Unknown`.
            pub fn from_wire(text: &str) -> Self {
                let t = text.trim();
                $(if t.eq_ignore_ascii_case($wire) {
                    return $name::$variant;
                })+
                $name::Unknown
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = std::convert::Infallible;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ok(Self::from_wire(s))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
                Ok(Self::from_wire(&text))
            }
        }
    };
}

lenient_enum!(
    /// Every order status Alpaca reports, plus `Unknown`.
    OrderStatus {
        /// Received, not yet routed (typical outside market hours).
        Accepted => "accepted",
        /// Routed, not yet acknowledged by the venue.
        PendingNew => "pending_new",
        /// Working at the venue.
        New => "new",
        /// Being evaluated by the venue for pricing.
        AcceptedForBidding => "accepted_for_bidding",
        /// Some quantity filled, the rest working.
        PartiallyFilled => "partially_filled",
        /// Completely filled. Terminal.
        Filled => "filled",
        /// Done for today; may resume next session.
        DoneForDay => "done_for_day",
        /// Canceled. Terminal.
        Canceled => "canceled",
        /// Reached the end of its time in force. Terminal.
        Expired => "expired",
        /// Superseded by a replacement order. Terminal.
        Replaced => "replaced",
        /// Cancel requested, not yet confirmed.
        PendingCancel => "pending_cancel",
        /// Replace requested, not yet confirmed; rejects cancel requests.
        PendingReplace => "pending_replace",
        /// Execution guaranteed, not yet occurred.
        Stopped => "stopped",
        /// Rejected by the broker or venue (possibly after a 200 on submit). Terminal.
        Rejected => "rejected",
        /// Not eligible for trading.
        Suspended => "suspended",
        /// Filled or done for day, settlement calculations pending.
        Calculated => "calculated",
        /// A leg of a bracket/OTO/OCO order waiting for its trigger.
        Held => "held",
        /// Under review (broker API).
        PendingReview => "pending_review",
    }
);

lenient_enum!(
    /// Every trade-update event Alpaca sends, plus `Unknown`.
    TradeEvent {
        /// Routed to the venue.
        New => "new",
        /// Routed, not yet acknowledged.
        PendingNew => "pending_new",
        /// Received, not yet routed.
        Accepted => "accepted",
        /// Fully filled by this execution.
        Fill => "fill",
        /// Partly filled by this execution.
        PartialFill => "partial_fill",
        /// Canceled.
        Canceled => "canceled",
        /// Expired at the end of its time in force.
        Expired => "expired",
        /// Done for today.
        DoneForDay => "done_for_day",
        /// Superseded by a replacement; the update carries the old order.
        Replaced => "replaced",
        /// Rejected.
        Rejected => "rejected",
        /// Execution guaranteed.
        Stopped => "stopped",
        /// Cancel in progress.
        PendingCancel => "pending_cancel",
        /// Replace in progress.
        PendingReplace => "pending_replace",
        /// Settlement calculations pending.
        Calculated => "calculated",
        /// Not eligible for trading.
        Suspended => "suspended",
        /// A replace request failed; the order keeps working as before.
        OrderReplaceRejected => "order_replace_rejected",
        /// A cancel request failed (often because the order filled first).
        OrderCancelRejected => "order_cancel_rejected",
        /// The order's terms were restated; status unchanged.
        Restated => "restated",
    }
);

/// An edge the state machine refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("order in status `{from}` cannot take event `{event}`")]
pub struct InvalidTransition {
    /// Status before the event.
    pub from: OrderStatus,
    /// The refused event.
    pub event: TradeEvent,
}

impl OrderStatus {
    /// Final: the order will never change again (filled, canceled, expired, replaced, rejected).
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Filled | Self::Canceled | Self::Expired | Self::Replaced | Self::Rejected)
    }

    /// Still working or may still work (every non-terminal status, `Unknown` included, because an
    /// order we cannot classify must be treated as live until a lookup says otherwise).
    pub const fn is_open(self) -> bool {
        !self.is_terminal()
    }

    /// A cancel request makes sense: open, and not already cancelling or replacing.
    pub const fn is_cancelable(self) -> bool {
        self.is_open() && !matches!(self, Self::PendingCancel | Self::PendingReplace)
    }

    /// Applies `event` to this status.
    ///
    /// `order_cancel_rejected` / `order_replace_rejected` return a pending order to `new`; an order
    /// with fills is `partially_filled`, which [`crate::Order::apply_status_event`] restores from
    /// its filled quantity.
    pub fn on_event(self, event: TradeEvent) -> Result<OrderStatus, InvalidTransition> {
        use OrderStatus as S;
        use TradeEvent as E;
        let refuse = Err(InvalidTransition { from: self, event });

        // Events that carry no status information never move or refuse anything.
        if matches!(event, E::Unknown | E::Restated) {
            return Ok(self);
        }
        // An order we cannot classify accepts whatever the broker says happened.
        if self == S::Unknown {
            return Ok(implied_status(event).unwrap_or(S::Unknown));
        }
        if self.is_terminal() {
            return match (self, event) {
                // Duplicate delivery of the event that made the order final.
                (S::Filled, E::Fill)
                | (S::Canceled, E::Canceled)
                | (S::Expired, E::Expired)
                | (S::Replaced, E::Replaced)
                | (S::Rejected, E::Rejected) => Ok(self),
                // A cancel or replace lost the race against a fill (or came after the end).
                (_, E::OrderCancelRejected | E::OrderReplaceRejected) => Ok(self),
                _ => refuse,
            };
        }

        let has_fills = matches!(self, S::PartiallyFilled);
        match event {
            E::Fill => Ok(S::Filled),
            E::PartialFill => Ok(S::PartiallyFilled),
            E::Canceled => Ok(S::Canceled),
            E::Expired => Ok(S::Expired),
            E::Replaced => Ok(S::Replaced),
            E::Calculated => Ok(S::Calculated),
            E::Stopped => Ok(S::Stopped),
            E::Suspended => Ok(S::Suspended),
            E::DoneForDay => Ok(S::DoneForDay),
            // An order with fills was accepted by the venue: it cannot be rejected or un-routed.
            E::Rejected | E::PendingNew | E::Accepted if has_fills => refuse,
            E::Rejected => Ok(S::Rejected),
            E::New if has_fills => Ok(S::PartiallyFilled),
            E::New => Ok(S::New),
            E::PendingNew => match self {
                S::Accepted | S::PendingNew | S::Held | S::AcceptedForBidding | S::PendingReview => Ok(S::PendingNew),
                _ => refuse,
            },
            // The newer `accepted` event, and an unrouted order returning from a pending request.
            E::Accepted => match self {
                S::Accepted | S::PendingNew | S::PendingCancel | S::PendingReplace | S::Held | S::PendingReview => {
                    Ok(S::Accepted)
                }
                _ => refuse,
            },
            // Orders being replaced reject cancel requests.
            E::PendingCancel => match self {
                S::PendingReplace => refuse,
                _ => Ok(S::PendingCancel),
            },
            E::PendingReplace => match self {
                S::PendingCancel => refuse,
                _ => Ok(S::PendingReplace),
            },
            E::OrderCancelRejected | E::OrderReplaceRejected => match self {
                S::PendingCancel | S::PendingReplace => Ok(S::New),
                other => Ok(other),
            },
            E::Unknown | E::Restated => Ok(self),
        }
    }
}

/// The status an event implies on its own, when it implies one.
fn implied_status(event: TradeEvent) -> Option<OrderStatus> {
    use OrderStatus as S;
    use TradeEvent as E;
    Some(match event {
        E::New => S::New,
        E::PendingNew => S::PendingNew,
        E::Accepted => S::Accepted,
        E::Fill => S::Filled,
        E::PartialFill => S::PartiallyFilled,
        E::Canceled => S::Canceled,
        E::Expired => S::Expired,
        E::DoneForDay => S::DoneForDay,
        E::Replaced => S::Replaced,
        E::Rejected => S::Rejected,
        E::Stopped => S::Stopped,
        E::PendingCancel => S::PendingCancel,
        E::PendingReplace => S::PendingReplace,
        E::Calculated => S::Calculated,
        E::Suspended => S::Suspended,
        E::OrderReplaceRejected | E::OrderCancelRejected | E::Restated | E::Unknown => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::OrderStatus as S;
    use super::TradeEvent as E;
    use proptest::prelude::*;

    type Case = (&'static str, (S, E, Option<S>));

    #[test]
    fn transition_table() {
        let ok = |from, event, to| (from, event, Some(to));
        let no = |from, event| (from, event, None);
        let cases: &[Case] = &[
            ("accepted_routed", ok(S::Accepted, E::PendingNew, S::PendingNew)),
            ("pending_new_acknowledged", ok(S::PendingNew, E::New, S::New)),
            ("accepted_straight_to_new", ok(S::Accepted, E::New, S::New)),
            ("new_partial_fill", ok(S::New, E::PartialFill, S::PartiallyFilled)),
            ("partial_then_fill", ok(S::PartiallyFilled, E::Fill, S::Filled)),
            ("partial_then_partial", ok(S::PartiallyFilled, E::PartialFill, S::PartiallyFilled)),
            ("new_fills_at_once", ok(S::New, E::Fill, S::Filled)),
            ("new_canceled", ok(S::New, E::Canceled, S::Canceled)),
            ("partial_canceled_keeps_fills_elsewhere", ok(S::PartiallyFilled, E::Canceled, S::Canceled)),
            ("day_order_expires", ok(S::New, E::Expired, S::Expired)),
            ("done_for_day", ok(S::PartiallyFilled, E::DoneForDay, S::DoneForDay)),
            ("done_for_day_resumes", ok(S::DoneForDay, E::New, S::New)),
            ("async_reject_after_200", ok(S::Accepted, E::Rejected, S::Rejected)),
            ("replacement_loses_race_rejected", ok(S::PendingNew, E::Rejected, S::Rejected)),
            ("cancel_requested", ok(S::New, E::PendingCancel, S::PendingCancel)),
            ("fill_after_cancel_request", ok(S::PendingCancel, E::Fill, S::Filled)),
            ("partial_fill_after_cancel_request", ok(S::PendingCancel, E::PartialFill, S::PartiallyFilled)),
            ("cancel_confirmed", ok(S::PendingCancel, E::Canceled, S::Canceled)),
            ("pending_cancel_back_to_accepted", ok(S::PendingCancel, E::Accepted, S::Accepted)),
            ("cancel_rejected_back_to_working", ok(S::PendingCancel, E::OrderCancelRejected, S::New)),
            ("replace_requested", ok(S::New, E::PendingReplace, S::PendingReplace)),
            ("replaced", ok(S::PendingReplace, E::Replaced, S::Replaced)),
            ("replaced_without_pending_event", ok(S::New, E::Replaced, S::Replaced)),
            ("fill_during_replace", ok(S::PendingReplace, E::Fill, S::Filled)),
            ("replace_rejected_back_to_working", ok(S::PendingReplace, E::OrderReplaceRejected, S::New)),
            ("cancel_lost_race_to_fill", ok(S::Filled, E::OrderCancelRejected, S::Filled)),
            ("replace_lost_race_to_fill", ok(S::Filled, E::OrderReplaceRejected, S::Filled)),
            ("duplicate_fill_event", ok(S::Filled, E::Fill, S::Filled)),
            ("duplicate_canceled_event", ok(S::Canceled, E::Canceled, S::Canceled)),
            ("restated_changes_nothing", ok(S::New, E::Restated, S::New)),
            ("unknown_event_changes_nothing", ok(S::Filled, E::Unknown, S::Filled)),
            ("unknown_status_takes_event", ok(S::Unknown, E::Canceled, S::Canceled)),
            ("unknown_status_rejection_event", ok(S::Unknown, E::OrderCancelRejected, S::Unknown)),
            ("new_after_partial_stays_partial", ok(S::PartiallyFilled, E::New, S::PartiallyFilled)),
            ("held_leg_triggers", ok(S::Held, E::New, S::New)),
            ("calculated", ok(S::New, E::Calculated, S::Calculated)),
            ("filled_not_recalculated", no(S::Filled, E::Calculated)),
            ("filled_never_reopens", no(S::Filled, E::New)),
            ("fill_after_canceled_moves_no_status", no(S::Canceled, E::Fill)),
            ("canceled_never_fills_partially", no(S::Canceled, E::PartialFill)),
            ("rejected_never_fills", no(S::Rejected, E::Fill)),
            ("replaced_never_cancels", no(S::Replaced, E::Canceled)),
            ("expired_never_new", no(S::Expired, E::New)),
            ("partial_cannot_be_rejected", no(S::PartiallyFilled, E::Rejected)),
            ("partial_cannot_go_pending_new", no(S::PartiallyFilled, E::PendingNew)),
            ("new_cannot_go_back_to_pending_new", no(S::New, E::PendingNew)),
            ("pending_replace_rejects_cancel", no(S::PendingReplace, E::PendingCancel)),
            ("pending_cancel_cannot_replace", no(S::PendingCancel, E::PendingReplace)),
        ];
        for (name, (from, event, want)) in cases {
            let got = from.on_event(*event).ok();
            assert_eq!(got, *want, "{name}: {from} + {event}");
        }
    }

    #[test]
    fn terminal_statuses_only_accept_duplicates_and_late_rejections() {
        for from in S::ALL.iter().copied().filter(|s| s.is_terminal()) {
            for event in E::ALL.iter().copied() {
                if let Ok(to) = from.on_event(event) {
                    assert_eq!(to, from, "{from} left a terminal status on {event}");
                }
            }
        }
    }

    #[test]
    fn wire_names_round_trip_and_unknowns_decode() {
        for s in S::ALL {
            assert_eq!(S::from_wire(s.as_str()), *s);
        }
        for e in E::ALL {
            assert_eq!(E::from_wire(e.as_str()), *e);
        }
        assert_eq!(serde_json::from_str::<S>("\"brand_new_status\"").unwrap(), S::Unknown);
        assert_eq!(serde_json::from_str::<E>("\"PARTIAL_FILL\"").unwrap(), E::PartialFill);
    }

    #[test]
    fn cancelable() {
        assert!(S::New.is_cancelable());
        assert!(S::Unknown.is_open());
        assert!(!S::PendingReplace.is_cancelable());
        assert!(!S::Filled.is_cancelable());
    }

    proptest! {
        #[test]
        fn the_table_is_total_and_never_panics(s in 0..S::ALL.len(), e in 0..E::ALL.len()) {
            let _ = S::ALL[s].on_event(E::ALL[e]);
        }

        #[test]
        fn any_event_sequence_is_handled(events in proptest::collection::vec(0..E::ALL.len(), 0..40)) {
            let mut status = S::PendingNew;
            let mut was_terminal = false;
            for e in events {
                if let Ok(next) = status.on_event(E::ALL[e]) {
                    if was_terminal {
                        prop_assert_eq!(next, status);
                    }
                    status = next;
                    was_terminal |= status.is_terminal();
                }
            }
        }

        #[test]
        fn arbitrary_status_text_decodes(text in ".{0,30}") {
            let _ = S::from_wire(&text);
            let _ = E::from_wire(&text);
        }
    }
}
