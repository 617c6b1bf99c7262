//! A client-side rate limiter that keeps every sliding minute within the budget (Alpaca's rule
//! is 200 requests per minute per key; the client allows itself 190): a token bucket holding
//! half the budget, refilled at the other half per minute. A plan's first requests (up to half
//! the budget) go out at once, later ones at an even pace, and no request ever waits more than
//! one refill interval, so a cancel never sits behind a stalled window. It also honours the
//! server's `X-Ratelimit-Remaining` / `X-Ratelimit-Reset` headers.
//!
//! Invariant: in any window of one minute at most `capacity + refill per minute` = the budget
//! is let through, and nothing while the server said to wait.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    blocked_until: Option<Instant>,
}

/// A token bucket shared by every request of one adapter.
#[derive(Debug)]
pub struct RateLimiter {
    /// Tokens the bucket holds at most (half the budget).
    capacity: f64,
    /// Tokens added per second (the other half of the budget, spread over the minute).
    per_second: f64,
    bucket: Mutex<Bucket>,
}

impl RateLimiter {
    /// Allows at most `per_minute` requests in any minute (at least one).
    pub fn new(per_minute: u32) -> Self {
        let budget = f64::from(per_minute.max(1));
        let capacity = (budget / 2.0).ceil();
        let per_second = (budget - capacity).max(1.0) / 60.0;
        Self {
            capacity,
            per_second,
            bucket: Mutex::new(Bucket { tokens: capacity, last: Instant::now(), blocked_until: None }),
        }
    }

    /// Waits until a request may be sent.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut b = self.bucket.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let now = Instant::now();
                b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * self.per_second).min(self.capacity);
                b.last = now;
                match b.blocked_until {
                    Some(until) if until > now => Some(until - now),
                    // A hair under one token (float refill) counts as one.
                    _ if b.tokens >= 1.0 - 1e-9 => {
                        b.tokens = (b.tokens - 1.0).max(0.0);
                        None
                    }
                    // At least a millisecond: a wait rounded to nothing would spin.
                    _ => {
                        Some(Duration::from_secs_f64((1.0 - b.tokens) / self.per_second).max(Duration::from_millis(1)))
                    }
                }
            };
            match wait {
                None => return,
                Some(d) => tokio::time::sleep(d).await,
            }
        }
    }

    /// The server said no requests are left until `reset_in` from now (at most
    /// `MAX_SERVER_BLOCK`: Alpaca's budget is per minute, and a header from the network, however
    /// large, never makes the process wait for ever or overflow the clock).
    pub fn block_for(&self, reset_in: Duration) {
        let mut b = self.bucket.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        b.blocked_until = Some(now.checked_add(reset_in.min(MAX_SERVER_BLOCK)).unwrap_or(now));
    }
}

/// The longest wait a server's rate-limit reset can impose.
pub const MAX_SERVER_BLOCK: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_server_reset_of_any_size_waits_at_most_a_minute_and_never_panics() {
        let limiter = RateLimiter::new(60);
        limiter.block_for(Duration::MAX);
        let before = Instant::now();
        limiter.acquire().await;
        assert_eq!(before.elapsed(), MAX_SERVER_BLOCK);
    }

    #[tokio::test(start_paused = true)]
    async fn half_the_budget_goes_at_once_then_an_even_pace() {
        let limiter = RateLimiter::new(60);
        let start = Instant::now();
        for _ in 0..30 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "half the budget is there at the start");
        limiter.acquire().await;
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(1_990) && waited <= Duration::from_millis(2_010), "{waited:?}");
        limiter.block_for(Duration::from_secs(30));
        let before = Instant::now();
        limiter.acquire().await;
        assert!(before.elapsed() >= Duration::from_secs(30), "the server's wait is honoured");
    }

    #[tokio::test(start_paused = true)]
    async fn no_minute_ever_holds_more_than_the_budget() {
        let limiter = RateLimiter::new(20);
        let mut sent = Vec::new();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200 {
            // Seeded irregular arrivals: bursts and pauses up to 7 s.
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            tokio::time::advance(Duration::from_millis((seed >> 33) % 7_000)).await;
            limiter.acquire().await;
            sent.push(Instant::now());
        }
        for (i, &t) in sent.iter().enumerate() {
            let in_window = sent[i..].iter().take_while(|&&u| u.duration_since(t) < Duration::from_secs(60)).count();
            assert!(in_window <= 20, "{in_window} requests in the minute from request {i}");
        }
    }
}
