//! A client-side rate limiter: at most the configured number of requests in any window of one
//! minute (Alpaca's rule is 200 per minute per key), so a plan's first requests go out at once
//! instead of trickling; it also honours the server's `X-Ratelimit-Remaining` /
//! `X-Ratelimit-Reset` headers.
//!
//! Invariant: the send times of the last `per_minute` requests are kept (memory bounded by the
//! budget); a request is let through only when fewer than `per_minute` were let through in the
//! minute before it, and never while the server said to wait.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Window {
    /// When the requests of the last minute were let through, oldest first.
    sent: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

/// A sliding one-minute window shared by every request of one adapter.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: usize,
    window: Mutex<Window>,
}

impl RateLimiter {
    /// Allows `per_minute` requests in any minute (at least one).
    pub fn new(per_minute: u32) -> Self {
        let per_minute = usize::try_from(per_minute.max(1)).unwrap_or(usize::MAX);
        Self {
            per_minute,
            window: Mutex::new(Window { sent: VecDeque::with_capacity(per_minute.min(1024)), blocked_until: None }),
        }
    }

    /// Waits until a request may be sent.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut w = self.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let now = Instant::now();
                while w.sent.front().is_some_and(|&t| now.duration_since(t) >= WINDOW) {
                    w.sent.pop_front();
                }
                match (w.blocked_until, w.sent.front()) {
                    (Some(until), _) if until > now => Some(until - now),
                    (_, Some(&oldest)) if w.sent.len() >= self.per_minute => Some(oldest + WINDOW - now),
                    _ => {
                        w.sent.push_back(now);
                        None
                    }
                }
            };
            match wait {
                None => return,
                Some(d) => tokio::time::sleep(d).await,
            }
        }
    }

    /// The server said no requests are left until `reset_in` from now.
    pub fn block_for(&self, reset_in: Duration) {
        let mut w = self.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        w.blocked_until = Some(Instant::now() + reset_in);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_minutes_budget_goes_at_once_then_as_the_window_slides() {
        let limiter = RateLimiter::new(60);
        let start = Instant::now();
        for _ in 0..60 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the whole budget is there at the start");
        limiter.acquire().await;
        assert_eq!(start.elapsed(), WINDOW, "the 61st waits until the first leaves the window");
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
            let in_window = sent[i..].iter().take_while(|&&u| u.duration_since(t) < WINDOW).count();
            assert!(in_window <= 20, "{in_window} requests in the minute from request {i}");
        }
    }
}
