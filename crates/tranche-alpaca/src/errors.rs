//! Every Alpaca error shape (with or without `code`, JSON or not) mapped into `BrokerError`,
//! by HTTP status and the structured code and message, never by searching for digits.

use std::time::Duration;

use serde_json::Value;
use tranche_broker::{BrokerError, RejectReason};

/// Maps an error response. `mutation` marks submit / replace / cancel: a 5xx there may have
/// taken effect and is `Uncertain`.
pub fn map_status(status: u16, retry_after: Option<Duration>, body: &str, mutation: bool) -> BrokerError {
    let json: Option<Value> = serde_json::from_str(body).ok();
    let code = json.as_ref().and_then(|v| v.get("code")).and_then(Value::as_u64);
    let message = json.as_ref().and_then(|v| v.get("message")).and_then(Value::as_str).map_or_else(
        || format!("{} (HTTP {status})", tranche_broker::printable(body, 200).trim()),
        |said| tranche_broker::printable(said, MESSAGE_CHARS),
    );
    let lower = message.to_lowercase();
    let reject = |reason: RejectReason| BrokerError::Rejected { reason, code, message: message.clone() };
    match status {
        401 => BrokerError::Auth { message },
        403 if code.is_none() => BrokerError::Auth { message },
        403 | 422 | 400 => reject(classify(&lower, status)),
        404 => BrokerError::NotFound { what: message },
        429 => BrokerError::RateLimited { retry_after },
        500..=599 if mutation => BrokerError::Uncertain { message: format!("HTTP {status}: {message}") },
        500..=599 => BrokerError::Transient { message: format!("HTTP {status}: {message}") },
        _ if mutation => BrokerError::Uncertain { message: format!("unexpected HTTP {status}: {message}") },
        _ => BrokerError::Transient { message: format!("unexpected HTTP {status}: {message}") },
    }
}

/// The most of a server's message kept in an error (Alpaca's are a line).
const MESSAGE_CHARS: usize = 500;

fn classify(message: &str, status: u16) -> RejectReason {
    let has = |needle: &str| message.contains(needle);
    if has("insufficient buying power") || has("insufficient day trading buying power") {
        RejectReason::InsufficientBuyingPower
    } else if has("insufficient qty") {
        RejectReason::InsufficientQty
    } else if has("wash trade") || has("cannot open a long buy while a short") {
        RejectReason::WashTrade
    } else if has("client_order_id must be unique") || has("client order id must be unique") {
        RejectReason::DuplicateClientOrderId
    } else if has("not fractionable") {
        RejectReason::NotFractionable
    } else if has("minimal amount of order") {
        // A fractional (or notional) order under Alpaca's $1 minimum.
        RejectReason::InvalidRequest
    } else if has("isn't sent to exchange yet") || has("not sent to exchange yet") {
        RejectReason::NotYetRouted
    } else if has("not cancelable") || has("not replaceable") || has("unable to replace") {
        RejectReason::NotCancelable
    } else if has("not allowed to short") || has("cannot be sold short") {
        RejectReason::NotShortable
    } else if has("sub-penny") {
        RejectReason::SubPennyPrice
    } else if has("not tradable") || has("not found") || has("not active") || has("invalid symbol") {
        RejectReason::NotTradable
    } else if has("not changed") {
        RejectReason::NothingChanged
    } else if has("not allowed to trade") || has("blocked") {
        RejectReason::AccountBlocked
    } else if has("market is closed") || has("market hours") {
        RejectReason::MarketClosed
    } else if status == 403 {
        RejectReason::Other
    } else {
        RejectReason::InvalidRequest
    }
}

/// The wait a 429 asks for: `Retry-After` seconds, else until `X-Ratelimit-Reset` (epoch s);
/// never more than `MAX_SERVER_BLOCK` (Alpaca's budget is per minute, and a header from the
/// network, however hostile, must not park an order for the rest of the run).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<i64>().ok());
    let most = i64::try_from(crate::limiter::MAX_SERVER_BLOCK.as_secs()).unwrap_or(60);
    let wait = match get("retry-after") {
        Some(secs) => secs,
        None => get("x-ratelimit-reset")?.saturating_sub(chrono::Utc::now().timestamp()),
    };
    Some(Duration::from_secs(u64::try_from(wait.clamp(0, most)).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server's message with an escape sequence (OSC 52 writes the user's clipboard) and no
    /// end: the error carries it escaped and cut, whatever reaches a terminal or a ledger row.
    #[test]
    fn a_servers_message_is_carried_escaped_and_cut() {
        let hostile = format!("{{\"code\":40310000,\"message\":\"\\u001b]52;c;AAAA\\u0007 {}\"}}", "x".repeat(100_000));
        let BrokerError::Rejected { message, .. } = map_status(403, None, &hostile, true) else { panic!("a refusal") };
        assert!(!message.chars().any(char::is_control), "{message:?}");
        assert!(message.starts_with("\\u{1b}]52;c;AAAA\\u{7}"), "{message:?}");
        assert!(message.chars().count() <= MESSAGE_CHARS + 10, "{} characters", message.chars().count());
        let BrokerError::Transient { message } = map_status(502, None, "\u{1b}[2J<html>", false) else { panic!("5xx") };
        assert!(!message.chars().any(char::is_control), "{message:?}");
    }

    /// A wait from the network is bounded, however hostile: a `Retry-After` of years, a reset
    /// at the far end of time (which overflowed the subtraction).
    #[test]
    fn a_hostile_rate_limit_header_waits_a_minute_at_most_and_never_panics() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("retry-after", "999999999".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(crate::limiter::MAX_SERVER_BLOCK));
        for reset in [i64::MIN, i64::MAX] {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert("x-ratelimit-reset", reset.to_string().parse().unwrap());
            assert!(retry_after(&headers).is_some_and(|d| d <= crate::limiter::MAX_SERVER_BLOCK), "{reset}");
        }
    }

    #[test]
    fn alpaca_error_table() {
        let cases: &[(&str, u16, &str, bool, &str)] = &[
            ("auth_without_code", 403, r#"{"message":"forbidden."}"#, false, "auth"),
            ("unauthorized", 401, r#"{"code":40110000,"message":"request is not authorized"}"#, false, "auth"),
            (
                "buying_power",
                403,
                r#"{"code":40310000,"message":"insufficient buying power","buying_power":"1"}"#,
                true,
                "InsufficientBuyingPower",
            ),
            (
                "wash_trade_403",
                403,
                r#"{"code":40310000,"message":"potential wash trade detected. use complex orders","reject_reason":"opposite side market/stop order exists"}"#,
                true,
                "WashTrade",
            ),
            (
                "wash_trade_422",
                422,
                r#"{"code":42210000,"message":"potential wash trade detected. use complex orders"}"#,
                true,
                "WashTrade",
            ),
            (
                "qty",
                403,
                r#"{"available":"0","code":40310000,"existing_qty":"1000","held_for_orders":"1000","message":"insufficient qty available for order (requested: 1000, available: 0)","symbol":"SQQQ"}"#,
                true,
                "InsufficientQty",
            ),
            (
                "duplicate",
                422,
                r#"{"code":40010001,"message":"client_order_id must be unique"}"#,
                true,
                "DuplicateClientOrderId",
            ),
            ("not_cancelable", 422, r#"{"code":42210000,"message":"order is not cancelable"}"#, true, "NotCancelable"),
            (
                "under_the_minimum",
                403,
                r#"{"code":40310000,"message":"cost basis must be >= minimal amount of order 1"}"#,
                true,
                "InvalidRequest",
            ),
            (
                "replace_before_routing",
                422,
                r#"{"code":42210000,"message":"unable to replace order, order isn't sent to exchange yet"}"#,
                true,
                "NotYetRouted",
            ),
            (
                "replace_of_a_closed_order",
                422,
                r#"{"code":42210000,"message":"unable to replace order, order is not open"}"#,
                true,
                "NotCancelable",
            ),
            (
                "sub_penny",
                422,
                r#"{"code":42210000,"message":"invalid limit_price 290.123. sub-penny increment does not fulfill minimum pricing criteria"}"#,
                true,
                "SubPennyPrice",
            ),
            (
                "not_fractionable",
                403,
                r#"{"code":40310000,"message":"asset \"EDZ\" is not fractionable"}"#,
                true,
                "NotFractionable",
            ),
            ("not_found", 404, r#"{"code":40410000,"message":"order not found"}"#, false, "not_found"),
            ("gateway_html_on_post", 504, "<html><body>504 Gateway Time-out</body></html>", true, "uncertain"),
            ("gateway_html_on_get", 502, "<html>bad gateway</html>", false, "transient"),
            ("rate_limited", 429, r#"{"code":42910000,"message":"rate limit exceeded"}"#, true, "rate"),
        ];
        for (name, status, body, mutation, want) in cases {
            let e = map_status(*status, Some(Duration::from_secs(3)), body, *mutation);
            let got = match &e {
                BrokerError::Auth { .. } => "auth".to_owned(),
                BrokerError::NotFound { .. } => "not_found".to_owned(),
                BrokerError::Rejected { reason, .. } => format!("{reason:?}"),
                BrokerError::RateLimited { retry_after } => {
                    assert_eq!(*retry_after, Some(Duration::from_secs(3)));
                    "rate".to_owned()
                }
                BrokerError::Transient { .. } => "transient".to_owned(),
                BrokerError::Uncertain { .. } => "uncertain".to_owned(),
            };
            assert_eq!(&got, want, "{name}: {e}");
        }
    }
}
