//! The broker error taxonomy, split by what the caller can do about an error.
//!
//! - [`BrokerError::Auth`]: fix the credentials or configuration; never retry.
//! - [`BrokerError::NotFound`]: the id or symbol does not exist (believe it only after a targeted lookup).
//! - [`BrokerError::Rejected`]: the broker refused the request for a stated reason; retrying the same
//!   request fails the same way.
//! - [`BrokerError::RateLimited`]: wait (at least `retry_after` when given), then retry.
//! - [`BrokerError::Transient`]: a read failed for a passing reason; retry with backoff.
//! - [`BrokerError::Uncertain`]: a mutation may or may not have taken effect; resolve it by a
//!   lookup (client order id) or the trade-update stream, never by blindly sending it again.
//!
//! Invariant: messages never contain credentials (adapters build them from status codes and
//! response bodies only).

use std::fmt;
use std::time::Duration;

/// Why the broker refused a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Not enough buying power for a buy.
    InsufficientBuyingPower,
    /// The sell is larger than the shares available (shares held by open orders do not count).
    InsufficientQty,
    /// An opposite-side order in the same symbol could trade against this one.
    WashTrade,
    /// The client order id was used before (Alpaca never forgets one).
    DuplicateClientOrderId,
    /// A fractional quantity or notional for an asset that is not fractionable.
    NotFractionable,
    /// The order is final (filled, canceled, ...) or being replaced, so it cannot be canceled.
    NotCancelable,
    /// A market-data subscription past the feed's symbol limit (Alpaca's error 405).
    SymbolLimit,
    /// The order has not reached the venue yet (accepted, pending new), so it cannot be replaced
    /// now; it can once it works.
    NotYetRouted,
    /// Selling short is not allowed for this account or asset.
    NotShortable,
    /// A price with more decimals than the tick rule allows.
    SubPennyPrice,
    /// The symbol is unknown, inactive or not tradable.
    NotTradable,
    /// The market is closed for this kind of order.
    MarketClosed,
    /// The account may not trade.
    AccountBlocked,
    /// A replace that changes nothing.
    NothingChanged,
    /// Any other validation failure of the request.
    InvalidRequest,
    /// A reason this adapter does not classify; the message says it.
    Other,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InsufficientBuyingPower => "insufficient buying power",
            Self::InsufficientQty => "insufficient quantity available",
            Self::WashTrade => "potential wash trade",
            Self::DuplicateClientOrderId => "duplicate client order id",
            Self::NotFractionable => "asset not fractionable",
            Self::NotCancelable => "order not cancelable",
            Self::NotYetRouted => "order not yet at the venue",
            Self::SymbolLimit => "symbol limit of the data feed exceeded",
            Self::NotShortable => "short selling not allowed",
            Self::SubPennyPrice => "sub-penny price",
            Self::NotTradable => "asset not tradable",
            Self::MarketClosed => "market closed",
            Self::AccountBlocked => "account blocked",
            Self::NothingChanged => "replace changes nothing",
            Self::InvalidRequest => "invalid request",
            Self::Other => "rejected",
        })
    }
}

/// A failed broker call, classified by what the caller can do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// Credentials missing, wrong or not permitted. Do not retry.
    #[error("broker authentication failed: {message}")]
    Auth {
        /// What the broker said (never the credentials).
        message: String,
    },
    /// The order, position or asset does not exist.
    #[error("not found: {what}")]
    NotFound {
        /// What was looked up.
        what: String,
    },
    /// The broker refused the request.
    #[error("rejected ({reason}{}): {message}", code.map(|c| format!(", code {c}")).unwrap_or_default())]
    Rejected {
        /// The classified reason.
        reason: RejectReason,
        /// The broker's own error code, when it gave one.
        code: Option<u64>,
        /// The broker's message.
        message: String,
    },
    /// Too many requests; wait before the next one.
    #[error("rate limited{}", retry_after.map(|d| format!(", retry after {:.1}s", d.as_secs_f64())).unwrap_or_default())]
    RateLimited {
        /// How long the broker asked to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// The request failed and had no effect (reads, or a mutation known to have been refused
    /// before it reached the broker); retrying is safe.
    #[error("transient broker error: {message}")]
    Transient {
        /// What happened.
        message: String,
    },
    /// The request may or may not have taken effect (timeout, 5xx or dropped connection on a
    /// submit, replace or cancel). Resolve by lookup; never resend blindly.
    #[error("outcome unknown: {message}")]
    Uncertain {
        /// What happened.
        message: String,
    },
}

impl BrokerError {
    /// True when the same request may simply be sent again (after backoff).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Transient { .. })
    }

    /// True when the request may have taken effect despite the error.
    pub fn may_have_taken_effect(&self) -> bool {
        matches!(self, Self::Uncertain { .. })
    }

    /// The reject reason, when this is a rejection.
    pub fn reject_reason(&self) -> Option<&RejectReason> {
        match self {
            Self::Rejected { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// A rejection with no broker code.
    pub fn rejected(reason: RejectReason, message: impl Into<String>) -> Self {
        Self::Rejected { reason, code: None, message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_by_what_the_caller_can_do() {
        let cases: [(&str, BrokerError, bool, bool); 6] = [
            ("auth", BrokerError::Auth { message: "unauthorized.".into() }, false, false),
            ("not_found", BrokerError::NotFound { what: "order x".into() }, false, false),
            ("rejected", BrokerError::rejected(RejectReason::WashTrade, "potential wash trade detected"), false, false),
            ("rate_limited", BrokerError::RateLimited { retry_after: Some(Duration::from_secs(2)) }, true, false),
            ("transient", BrokerError::Transient { message: "503".into() }, true, false),
            ("uncertain", BrokerError::Uncertain { message: "timeout after send".into() }, false, true),
        ];
        for (name, error, retry, maybe) in cases {
            assert_eq!(error.is_retryable(), retry, "{name}");
            assert_eq!(error.may_have_taken_effect(), maybe, "{name}");
        }
    }

    #[test]
    fn messages_are_readable() {
        let e = BrokerError::Rejected {
            reason: RejectReason::InsufficientBuyingPower,
            code: Some(40_310_000),
            message: "insufficient buying power".into(),
        };
        assert_eq!(e.to_string(), "rejected (insufficient buying power, code 40310000): insufficient buying power");
        assert_eq!(
            BrokerError::RateLimited { retry_after: Some(Duration::from_millis(1500)) }.to_string(),
            "rate limited, retry after 1.5s"
        );
        assert_eq!(e.reject_reason(), Some(&RejectReason::InsufficientBuyingPower));
    }
}
