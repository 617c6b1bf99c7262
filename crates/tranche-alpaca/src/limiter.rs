//! A client-side rate limiter: a token bucket refilled at the configured requests per minute,
//! which also honours the server's `X-Ratelimit-Remaining` / `X-Ratelimit-Reset` headers.

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
    per_minute: f64,
    bucket: Mutex<Bucket>,
}

impl RateLimiter {
    /// Allows `per_minute` requests per minute, in bursts of at most 10.
    pub fn new(per_minute: u32) -> Self {
        let burst = f64::from(per_minute.clamp(1, 10));
        Self {
            per_minute: f64::from(per_minute.max(1)),
            bucket: Mutex::new(Bucket { tokens: burst, last: Instant::now(), blocked_until: None }),
        }
    }

    /// Waits until a request may be sent.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut b = self.bucket.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let now = Instant::now();
                let burst = (self.per_minute).min(10.0);
                b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * self.per_minute / 60.0).min(burst);
                b.last = now;
                match b.blocked_until {
                    Some(until) if until > now => Some(until - now),
                    _ if b.tokens >= 1.0 => {
                        b.tokens -= 1.0;
                        None
                    }
                    _ => Some(Duration::from_secs_f64((1.0 - b.tokens) * 60.0 / self.per_minute)),
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
        let mut b = self.bucket.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        b.blocked_until = Some(Instant::now() + reset_in);
        b.tokens = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paces_requests_to_the_configured_rate() {
        let limiter = RateLimiter::new(60);
        let start = Instant::now();
        for _ in 0..20 {
            limiter.acquire().await;
        }
        // 10 in the burst, then one per second.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_secs(9) && elapsed <= Duration::from_secs(11), "{elapsed:?}");
        limiter.block_for(Duration::from_secs(30));
        let before = Instant::now();
        limiter.acquire().await;
        assert!(before.elapsed() >= Duration::from_secs(30));
    }
}
