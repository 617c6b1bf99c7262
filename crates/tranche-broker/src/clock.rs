//! Time as a port: the system clock for real runs and a manual clock for virtual time.
//!
//! Invariant: engine and simulator read time only through [`Clock`]; with [`ManualClock`] nothing
//! waits on the wall clock, so a simulated trading day runs in milliseconds and replays exactly.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use tokio::sync::oneshot;
use tranche_domain::Timestamp;

/// A source of the current time and of timed waits.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Timestamp;

    /// Resolves once the clock reads `deadline` or later.
    async fn sleep_until(&self, deadline: Timestamp);
}

/// The wall clock, with tokio timers.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        chrono::Utc::now()
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        let wait = deadline.signed_duration_since(chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
    }
}

/// Tokio's clock anchored at a chosen start time: real time in a normal runtime, virtual time in a
/// runtime with paused time (`tokio::time::pause()` or `start_paused`), where tokio advances to the
/// next timer whenever every task is idle. Simulations use it so that a trading day runs in
/// milliseconds while the engine, the simulator and the emulator share one notion of now.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start: Timestamp,
    anchor: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that reads `start` now and runs at tokio's pace from here.
    pub fn starting_at(start: Timestamp) -> Self {
        Self { start, anchor: tokio::time::Instant::now() }
    }
}

#[async_trait]
impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let elapsed = chrono::Duration::from_std(self.anchor.elapsed()).unwrap_or(chrono::Duration::MAX);
        self.start.checked_add_signed(elapsed).unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        let offset = deadline.signed_duration_since(self.start).to_std().unwrap_or_default();
        let target = self
            .anchor
            .checked_add(offset)
            .unwrap_or_else(|| self.anchor + std::time::Duration::from_secs(86_400 * 365 * 30));
        tokio::time::sleep_until(target).await;
    }
}

#[derive(Debug)]
struct ManualState {
    now: Timestamp,
    next_key: u64,
    sleepers: BTreeMap<(Timestamp, u64), oneshot::Sender<()>>,
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    state: Arc<Mutex<ManualState>>,
}

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: Timestamp) -> Self {
        Self { state: Arc::new(Mutex::new(ManualState { now: start, next_key: 0, sleepers: BTreeMap::new() })) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ManualState> {
        // The state stays consistent even if a holder panicked: every update is a single assignment.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves the clock to `to` (never backwards) and wakes every sleeper whose deadline passed.
    pub fn set(&self, to: Timestamp) {
        let due: Vec<oneshot::Sender<()>> = {
            let mut state = self.lock();
            if to > state.now {
                state.now = to;
            }
            let now = state.now;
            let later = state.sleepers.split_off(&(now, u64::MAX));
            std::mem::replace(&mut state.sleepers, later).into_values().collect()
        };
        for waker in due {
            // A dropped sleeper is fine: nobody waits any more.
            let _ = waker.send(());
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        let to = self.now().checked_add_signed(by).unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        self.set(to);
    }

    /// The earliest deadline anyone is sleeping until.
    pub fn next_wakeup(&self) -> Option<Timestamp> {
        self.lock().sleepers.keys().next().map(|(t, _)| *t)
    }

    /// Jumps to the earliest pending deadline and wakes its sleepers; returns the new time, or
    /// `None` when nobody sleeps.
    pub fn advance_to_next_wakeup(&self) -> Option<Timestamp> {
        let next = self.next_wakeup()?;
        self.set(next);
        Some(next)
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        self.lock().now
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        let receiver = {
            let mut state = self.lock();
            if deadline <= state.now {
                return;
            }
            let (sender, receiver) = oneshot::channel();
            let key = state.next_key;
            state.next_key += 1;
            state.sleepers.insert((deadline, key), sender);
            receiver
        };
        // The sender is only dropped after being fired (or with the clock itself).
        let _ = receiver.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t0() -> Timestamp {
        chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    #[tokio::test]
    async fn sleepers_wake_in_deadline_order_without_real_waiting() {
        let clock = ManualClock::new(t0());
        let a = tokio::spawn({
            let c = clock.clone();
            async move {
                c.sleep_until(t0() + chrono::Duration::seconds(10)).await;
                c.now()
            }
        });
        let b = tokio::spawn({
            let c = clock.clone();
            async move {
                c.sleep_until(t0() + chrono::Duration::seconds(5)).await;
                c.now()
            }
        });
        while clock.next_wakeup().is_none() || clock.lock().sleepers.len() < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(clock.advance_to_next_wakeup(), Some(t0() + chrono::Duration::seconds(5)));
        assert_eq!(b.await.unwrap(), t0() + chrono::Duration::seconds(5));
        assert!(!a.is_finished());
        clock.advance(Duration::from_secs(60));
        assert_eq!(a.await.unwrap(), t0() + chrono::Duration::seconds(65));
        assert_eq!(clock.next_wakeup(), None);
    }

    #[tokio::test]
    async fn past_deadlines_return_at_once_and_time_never_goes_back() {
        let clock = ManualClock::new(t0());
        clock.sleep_until(t0()).await;
        clock.set(t0() - chrono::Duration::seconds(1));
        assert_eq!(clock.now(), t0());
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_runs_in_virtual_time_when_paused() {
        let clock = TokioClock::starting_at(t0());
        clock.sleep_until(t0() + chrono::Duration::hours(6)).await;
        assert!(clock.now() >= t0() + chrono::Duration::hours(6));
        assert!(clock.now() < t0() + chrono::Duration::hours(6) + chrono::Duration::seconds(1));
    }

    #[tokio::test]
    async fn system_clock_sleep_in_the_past_returns() {
        let clock = SystemClock;
        clock.sleep_until(clock.now() - chrono::Duration::seconds(1)).await;
    }
}
