//! What the simulated broker answers when it does not do what was asked, in Alpaca's terms
//! (HTTP status, error code, message) so the emulator can serve it verbatim, and its mapping into
//! the [`BrokerError`] taxonomy of the ports.

use std::time::Duration;

use tranche_broker::{BrokerError, RejectReason};

/// A refusal or an injected failure of the simulated broker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// The request was refused (validation, risk or state), as Alpaca refuses it.
    #[error("{status} {code}: {message}")]
    Reject {
        /// HTTP status Alpaca uses.
        status: u16,
        /// Alpaca's error code.
        code: u64,
        /// Alpaca's message text.
        message: String,
        /// The classified reason.
        reason: RejectReason,
        /// Alpaca's `reject_reason` and `existing_order_id` on a wash-trade refusal (the
        /// opposite-side order in the way), when there is one.
        detail: Option<WashTradeDetail>,
    },
    /// No such order, position or asset.
    #[error("404 40410000: {message}")]
    NotFound {
        /// Alpaca's message text.
        message: String,
    },
    /// Injected server error (HTTP 5xx): the request was not applied.
    #[error("{status}: injected server error")]
    ServerError {
        /// 500, 502, 503 or 504.
        status: u16,
    },
    /// Injected rate limit (HTTP 429): the request was not applied.
    #[error("429 42910000: rate limit exceeded")]
    RateLimited {
        /// How long to wait.
        retry_after: Duration,
    },
    /// Injected timeout: the client never hears back; `applied` says whether the request
    /// nevertheless took effect.
    #[error("request timed out (applied: {applied})")]
    Timeout {
        /// The request took effect before the connection was lost.
        applied: bool,
    },
}

/// Which opposite-side order stood in the way of an order refused as a potential wash trade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WashTradeDetail {
    /// Alpaca's `reject_reason`: "opposite side market/stop order exists" or "opposite side
    /// limit order exists".
    pub reject_reason: &'static str,
    /// The broker id of the order in the way.
    pub existing_order_id: String,
}

impl SimError {
    /// A rejection with Alpaca's status, code and message.
    pub fn reject(status: u16, code: u64, reason: RejectReason, message: impl Into<String>) -> Self {
        Self::Reject { status, code, message: message.into(), reason, detail: None }
    }

    /// The error as the port reports it. `mutation` says whether the request changes state
    /// (submit, replace, cancel): a lost answer to a mutation is uncertain, to a read transient.
    pub fn into_broker_error(self, mutation: bool) -> BrokerError {
        match self {
            Self::Reject { code, message, reason, .. } => BrokerError::Rejected { reason, code: Some(code), message },
            Self::NotFound { message } => BrokerError::NotFound { what: message },
            Self::RateLimited { retry_after } => BrokerError::RateLimited { retry_after: Some(retry_after) },
            Self::ServerError { status } if mutation => BrokerError::Uncertain {
                message: format!("HTTP {status} from the broker; the request may have been applied"),
            },
            Self::ServerError { status } => {
                BrokerError::Transient { message: format!("HTTP {status} from the broker") }
            }
            Self::Timeout { .. } if mutation => {
                BrokerError::Uncertain { message: "request timed out; the request may have been applied".into() }
            }
            Self::Timeout { .. } => BrokerError::Transient { message: "request timed out".into() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_answers_to_mutations_are_uncertain() {
        assert!(SimError::ServerError { status: 504 }.into_broker_error(true).may_have_taken_effect());
        assert!(SimError::ServerError { status: 504 }.into_broker_error(false).is_retryable());
        assert!(SimError::Timeout { applied: false }.into_broker_error(true).may_have_taken_effect());
        let rejected = SimError::reject(
            403,
            40_310_000,
            RejectReason::WashTrade,
            "potential wash trade detected. use complex orders",
        );
        assert_eq!(rejected.to_string(), "403 40310000: potential wash trade detected. use complex orders");
        assert_eq!(rejected.into_broker_error(true).reject_reason(), Some(&RejectReason::WashTrade));
    }
}
