//! A client-side rate limiter that keeps every sliding minute within the budget (Alpaca's rule
//! is 200 requests per minute per key; the client allows itself 190): a token bucket holding
//! half the budget, refilled at the other half per minute. A plan's first requests (up to half
//! the budget) go out at once, later ones at an even pace, and without the server's word no
//! request waits more than one refill interval, so a cancel never sits behind a stalled window
//! (with it, a request waits as long as the server says nothing remains, at most a minute).
//!
//! The server's count is the truth when it gives one: an answer's `X-Ratelimit-Remaining` sets
//! the tokens in hand to what the server says remains, less the requests still on the way and a
//! small margin (so a server that refills faster than the local pace, as Alpaca's bucket of 200
//! refilled at 200 a minute does, is used at its pace), and with nothing left the limiter waits
//! for the server's `X-Ratelimit-Reset`.
//!
//! Invariants: without the server's headers, in any window of one minute at most
//! `capacity + refill per minute` = the budget is let through; with them, never more than the
//! server said remains less those on the way; nothing while the server said to wait; every
//! permit given is returned (answered or dropped), so requests on the way are counted right.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    blocked_until: Option<Instant>,
    /// Requests let through whose answer has not come yet.
    in_flight: u32,
    /// The number of the next permit.
    next_permit: u64,
    /// The newest permit whose answer set the tokens (an older answer arriving late says less).
    synced_permit: Option<u64>,
}

/// Requests kept in hand below what the server says remains.
const SERVER_MARGIN: f64 = 3.0;

/// A token bucket shared by every request of one adapter.
#[derive(Debug)]
pub struct RateLimiter {
    /// Tokens the bucket holds at most (half the budget).
    capacity: f64,
    /// Tokens added per second (the other half of the budget, spread over the minute).
    per_second: f64,
    /// The whole budget: the most tokens the server's count may give.
    budget: f64,
    bucket: Mutex<Bucket>,
}

impl RateLimiter {
    /// Allows at most `per_minute` requests in any minute (at least one).
    pub fn new(per_minute: u32) -> Self {
        let budget = f64::from(per_minute.max(1));
        let capacity = (budget / 2.0).ceil();
        let budget = budget.max(capacity);
        let per_second = (budget - capacity).max(1.0) / 60.0;
        Self {
            capacity,
            per_second,
            budget,
            bucket: Mutex::new(Bucket {
                tokens: capacity,
                last: Instant::now(),
                blocked_until: None,
                in_flight: 0,
                next_permit: 0,
                synced_permit: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.bucket.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until a request may be sent; the permit is returned with the answer
    /// (`Permit::answered`) or by dropping it.
    pub async fn acquire(&self) -> Permit<'_> {
        loop {
            let step = {
                let mut b = self.lock();
                let now = Instant::now();
                // The refill never takes the tokens past the capacity, nor below what the
                // server's count gave.
                if b.tokens < self.capacity {
                    b.tokens =
                        (b.tokens + now.duration_since(b.last).as_secs_f64() * self.per_second).min(self.capacity);
                }
                b.last = now;
                match b.blocked_until {
                    Some(until) if until > now => Err(until - now),
                    // A hair under one token (float refill) counts as one.
                    _ if b.tokens >= 1.0 - 1e-9 => {
                        b.tokens = (b.tokens - 1.0).max(0.0);
                        b.in_flight = b.in_flight.saturating_add(1);
                        b.next_permit += 1;
                        Ok(b.next_permit)
                    }
                    // At least a millisecond: a wait rounded to nothing would spin.
                    _ => Err(Duration::from_secs_f64((1.0 - b.tokens) / self.per_second).max(Duration::from_millis(1))),
                }
            };
            match step {
                Ok(number) => return Permit { limiter: self, number, returned: false },
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// The answer to permit `number` came: the server says `remaining` requests are left (until
    /// `reset_in`, when it says so). An answer older than one already applied is not applied
    /// (it counts fewer of our requests).
    fn answered(&self, number: u64, remaining: Option<u32>, reset_in: Option<Duration>) {
        let mut b = self.lock();
        b.in_flight = b.in_flight.saturating_sub(1);
        let Some(remaining) = remaining else { return };
        if b.synced_permit.is_some_and(|newest| number < newest) {
            return;
        }
        b.synced_permit = Some(number);
        let usable = f64::from(remaining) - f64::from(b.in_flight) - SERVER_MARGIN;
        b.tokens = usable.clamp(0.0, self.budget);
        // The server's count covers the time until now: the local refill starts from here.
        b.last = Instant::now();
        if usable < 1.0 {
            if let Some(wait) = reset_in {
                let now = Instant::now();
                b.blocked_until = Some(now.checked_add(wait.min(MAX_SERVER_BLOCK)).unwrap_or(now));
            }
        }
    }

    /// The server said no requests are left until `reset_in` from now (at most
    /// `MAX_SERVER_BLOCK`: Alpaca's budget is per minute, and a header from the network, however
    /// large, never makes the process wait for ever or overflow the clock).
    pub fn block_for(&self, reset_in: Duration) {
        let mut b = self.lock();
        let now = Instant::now();
        b.blocked_until = Some(now.checked_add(reset_in.min(MAX_SERVER_BLOCK)).unwrap_or(now));
    }
}

/// Leave to send one request: returned with the server's answer, or dropped (no answer).
#[derive(Debug)]
pub struct Permit<'a> {
    limiter: &'a RateLimiter,
    /// Its number, in the order permits were given.
    number: u64,
    returned: bool,
}

impl Permit<'_> {
    /// Nothing was sent under this permit: its token goes back to the bucket.
    pub fn unused(mut self) {
        self.returned = true;
        let mut b = self.limiter.lock();
        b.in_flight = b.in_flight.saturating_sub(1);
        b.tokens = (b.tokens + 1.0).min(self.limiter.budget);
    }

    /// The answer came with the server's `X-Ratelimit-Remaining` (and `X-Ratelimit-Reset` as a
    /// delay), when it gave them.
    pub fn answered(mut self, remaining: Option<u32>, reset_in: Option<Duration>) {
        self.returned = true;
        self.limiter.answered(self.number, remaining, reset_in);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.returned {
            self.limiter.answered(self.number, None, None);
        }
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
    async fn a_permit_given_back_unused_is_there_again_at_once() {
        let limiter = RateLimiter::new(2);
        let start = Instant::now();
        limiter.acquire().await.unused();
        let _kept = limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::ZERO, "the one token came back");
        assert_eq!(limiter.lock().in_flight, 1, "only the permit kept is on the way");
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

    /// A server whose budget is a bucket of `capacity` refilled at `capacity` a minute (as the
    /// emulator models Alpaca's), answering with what remains and when one more is allowed.
    struct Server {
        tokens: f64,
        capacity: f64,
        last: Instant,
        refused: u32,
    }

    impl Server {
        fn answer(&mut self) -> (Option<u32>, Option<Duration>) {
            let now = Instant::now();
            let rate = self.capacity / 60.0;
            self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * rate).min(self.capacity);
            self.last = now;
            if self.tokens >= 1.0 {
                self.tokens -= 1.0;
            } else {
                self.refused += 1;
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let remaining = self.tokens.floor() as u32;
            let reset = Duration::from_secs_f64(((1.0 - self.tokens).max(0.0) / rate).ceil());
            (Some(remaining), Some(reset))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn with_the_servers_count_the_limiter_keeps_the_servers_pace_without_a_refusal() {
        let limiter = RateLimiter::new(60);
        let mut server = Server { tokens: 60.0, capacity: 60.0, last: Instant::now(), refused: 0 };
        let start = Instant::now();
        for _ in 0..300 {
            let permit = limiter.acquire().await;
            // A 20 ms round trip.
            tokio::time::advance(Duration::from_millis(20)).await;
            let (remaining, reset) = server.answer();
            permit.answered(remaining, reset);
        }
        let took = start.elapsed().as_secs_f64();
        assert_eq!(server.refused, 0);
        // The server's bucket lets 300 through in (300 − 60) s at best; the local pace alone
        // (30 at once, then 30 a minute) would take 540 s.
        assert!(took < 300.0, "{took} s");
        assert!(took > 235.0, "{took} s: faster than the server allows");
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_older_than_one_applied_does_not_raise_the_count() {
        let limiter = RateLimiter::new(60);
        let (first, second) = (limiter.acquire().await, limiter.acquire().await);
        // The second request's answer comes first: 10 remain.
        second.answered(Some(10), None);
        let tokens = limiter.lock().tokens;
        // The first's answer, older, said 50: it must not raise the tokens back.
        first.answered(Some(50), None);
        assert!(limiter.lock().tokens <= tokens, "{} > {tokens}", limiter.lock().tokens);
    }

    #[tokio::test(start_paused = true)]
    async fn a_permit_dropped_without_an_answer_is_returned() {
        let limiter = RateLimiter::new(60);
        let permit = limiter.acquire().await;
        assert_eq!(limiter.lock().in_flight, 1);
        drop(permit);
        assert_eq!(limiter.lock().in_flight, 0);
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
