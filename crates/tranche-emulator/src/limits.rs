//! Alpaca's request budgets and the network's round trip, in front of every REST route: a token
//! bucket of `requests_per_minute` per key pair for the Trading API and another of
//! `data_requests_per_minute` for the Market Data API (`/v2/stocks/...`; Alpaca: 200 per minute
//! each, counted separately), the three
//! `X-Ratelimit-*` headers on every answer, `429 {"code":42910000,...}` when the budget is spent
//! (without `Retry-After`: the reset header says when), and a simulated round trip before each
//! answer.
//!
//! Invariants: in any window of one minute at most `requests_per_minute` plus the bucket's
//! capacity of requests are answered by a handler (the bucket starts full, as a fresh key's
//! budget does); every request, answered or refused, is counted once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State as Extract};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use crate::{render, State};

/// A token bucket of one key pair's requests.
#[derive(Debug)]
pub(crate) struct RequestBudget {
    per_minute: u32,
    bucket: Mutex<(f64, Instant)>,
    served: AtomicU64,
    refused: AtomicU64,
}

/// What the budget said of one request.
struct Verdict {
    allowed: bool,
    remaining: u32,
    /// Until one more request is allowed (Alpaca's `X-Ratelimit-Reset`, as a delay): a client
    /// that waits for the reset when nothing is left gets its next request through.
    reset_in: Duration,
}

impl RequestBudget {
    /// A full bucket of `per_minute` requests (0 means no limit).
    pub(crate) fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            bucket: Mutex::new((f64::from(per_minute), Instant::now())),
            served: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// REST requests received so far, refused ones included.
    pub(crate) fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// REST requests refused with 429.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn take(&self) -> Verdict {
        self.served.fetch_add(1, Ordering::Relaxed);
        if self.per_minute == 0 {
            return Verdict { allowed: true, remaining: u32::MAX, reset_in: Duration::ZERO };
        }
        let capacity = f64::from(self.per_minute);
        let per_sec = capacity / 60.0;
        let mut bucket = self.bucket.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let tokens = (bucket.0 + now.duration_since(bucket.1).as_secs_f64() * per_sec).min(capacity);
        let allowed = tokens >= 1.0;
        let tokens = if allowed { tokens - 1.0 } else { tokens };
        if !allowed {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        *bucket = (tokens, now);
        Verdict {
            allowed,
            // Whole requests left: the fraction of a token is not a request.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            remaining: tokens.floor() as u32,
            reset_in: Duration::from_secs_f64((tokens.floor() + 1.0 - tokens).min(capacity) / per_sec),
        }
    }
}

/// The middleware: count, spend a token (or refuse with 429), wait the round trip, answer with
/// the rate-limit headers.
pub async fn budget_and_round_trip(state: Extract<Arc<State>>, request: Request, next: Next) -> Response {
    let state = state.0;
    let budget = if request.uri().path().starts_with("/v2/stocks/") { &state.data_budget } else { &state.budget };
    let verdict = budget.take();
    if !state.round_trip.is_zero() {
        tokio::time::sleep(state.round_trip).await;
    }
    let mut response = if verdict.allowed {
        next.run(request).await
    } else {
        // No `Retry-After`: whether Alpaca sends one is not established, so a client must come
        // back by `X-Ratelimit-Reset` (the injected 429 fault sends one: both forms are served).
        let body = render::error(42_910_000, "rate limit exceeded");
        (axum::http::StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response()
    };
    if budget.per_minute > 0 {
        let reset = chrono::Utc::now() + verdict.reset_in;
        let headers = response.headers_mut();
        headers.insert("X-Ratelimit-Limit", HeaderValue::from(budget.per_minute));
        headers.insert("X-Ratelimit-Remaining", HeaderValue::from(verdict.remaining));
        // Rounded up: waiting until that second never comes too early.
        let reset_secs = reset.timestamp() + i64::from(reset.timestamp_subsec_nanos() > 0);
        headers.insert("X-Ratelimit-Reset", HeaderValue::from(reset_secs));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_full_bucket_then_the_refill_rate() {
        let budget = RequestBudget::new(60);
        let allowed = (0..100).filter(|_| budget.take().allowed).count();
        assert_eq!(allowed, 60, "the bucket starts with one minute's budget");
        let refused = budget.take();
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert!(refused.reset_in <= Duration::from_secs(1), "the next token comes in a second: {:?}", refused.reset_in);
        tokio::time::advance(Duration::from_millis(2_100)).await;
        let allowed = (0..10).filter(|_| budget.take().allowed).count();
        assert_eq!(allowed, 2, "one request a second comes back");
        assert_eq!(budget.served(), 111);
        assert_eq!(budget.refused(), 49);
    }

    #[test]
    fn zero_means_unlimited() {
        let budget = RequestBudget::new(0);
        assert!((0..10_000).all(|_| budget.take().allowed));
    }
}
