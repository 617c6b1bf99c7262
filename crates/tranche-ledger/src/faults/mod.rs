//! Fault injection for tests (feature `faults`): make the ledger's storage misbehave the way S3
//! and disks do, deterministically from a seed.
//!
//! Owns [`FaultPlan`] (what to inject and how often), [`FaultInjector`] (the seeded decisions,
//! the counters and the "death between two writes" switch), `FaultyStore` (an
//! `object_store::ObjectStore` wrapper, with feature `s3`) and [`FaultyLedger`] (a [`Ledger`]
//! wrapper, which is how the SQLite backend gets faults).
//!
//! Invariants:
//! - Every admitted call draws the same number of random values whatever the plan enables, so
//!   the n-th call's faults depend only on the seed and n: the same seed and the same sequence of
//!   calls give the same faults, in the same order.
//! - A call failed *before* applying (503, spurious precondition failure, death) never reaches
//!   the inner store; a call failed *after* applying did reach it and succeeded there.
//! - Once [`FaultInjector::writes_applied`] reaches the death threshold, no later call of any
//!   kind reaches the inner store, and at most that many writes are ever applied (a write holds
//!   a slot while in flight, so concurrent writes cannot overshoot).
//! - Slow calls wait with `tokio::time::sleep` (virtual under a paused Tokio runtime); they need
//!   a Tokio runtime with time enabled, as `object_store` itself does.
//!
//! [`Ledger`]: crate::Ledger

mod ledger;
#[cfg(feature = "s3")]
mod store;

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub use ledger::FaultyLedger;
#[cfg(feature = "s3")]
pub use store::FaultyStore;

/// One million: chances are given in parts per million (`PPM` means "always").
pub const PPM: u32 = 1_000_000;

/// What to inject and how often. Chances are per call, in parts per million (0: never,
/// [`PPM`] or more: always).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultPlan {
    /// Seed of the fault sequence.
    pub seed: u64,
    /// Chance that a call is slow: it waits `slow_delay` before it is applied.
    pub slow_ppm: u32,
    /// How long a slow call waits.
    pub slow_delay: Duration,
    /// Chance that a call fails before it is applied (a 503 SlowDown, a busy disk).
    pub fail_before_ppm: u32,
    /// Chance that a write is applied but its caller is told it failed (a lost answer).
    pub fail_after_ppm: u32,
    /// Chance that a conditional write (create-if-absent, update-if-version; object stores
    /// only) is refused as a precondition failure without being applied, as S3 does with a 409
    /// `ConditionalRequestConflict`.
    pub spurious_precondition_ppm: u32,
    /// The process dies after this many writes were applied: every later call fails and none is
    /// applied (`None`: never). See also [`FaultInjector::die_after`].
    pub die_after_writes: Option<u64>,
    /// The store ignores the conditions of conditional writes (object stores only): a
    /// create-if-absent and an update-if-version are applied as plain overwrites, as by an
    /// S3-compatible service without conditional writes or a proxy that drops their headers.
    pub ignores_conditions: bool,
}

impl FaultPlan {
    /// No faults at all: the wrapper behaves exactly as the store it wraps.
    pub fn none(seed: u64) -> Self {
        Self {
            seed,
            slow_ppm: 0,
            slow_delay: Duration::ZERO,
            fail_before_ppm: 0,
            fail_after_ppm: 0,
            spurious_precondition_ppm: 0,
            die_after_writes: None,
            ignores_conditions: false,
        }
    }

    /// A moderately bad day at S3: 5 % of calls slow by 2 s, 5 % refused with a 503, 3 % of
    /// writes applied with their answer lost. No spurious precondition failures, no death.
    pub fn moderate(seed: u64) -> Self {
        Self {
            slow_ppm: 50_000,
            slow_delay: Duration::from_secs(2),
            fail_before_ppm: 50_000,
            fail_after_ppm: 30_000,
            ..Self::none(seed)
        }
    }
}

impl Default for FaultPlan {
    fn default() -> Self {
        Self::none(0)
    }
}

/// A kind of injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// The call waited before it was applied.
    Slow,
    /// The call failed before it was applied.
    FailBefore,
    /// The write was applied; its caller was told it failed.
    FailAfter,
    /// A conditional write was refused as a precondition failure without being applied.
    SpuriousPrecondition,
    /// The process was dead: the call failed and was not applied.
    Dead,
}

impl FaultKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FaultKind; 5] =
        [Self::Slow, Self::FailBefore, Self::FailAfter, Self::SpuriousPrecondition, Self::Dead];

    /// The name used in [`FaultInjector::faults_fired`].
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Slow => "slow",
            Self::FailBefore => "fail_before",
            Self::FailAfter => "fail_after",
            Self::SpuriousPrecondition => "spurious_precondition",
            Self::Dead => "dead",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Slow => 0,
            Self::FailBefore => 1,
            Self::FailAfter => 2,
            Self::SpuriousPrecondition => 3,
            Self::Dead => 4,
        }
    }
}

/// One fault that fired, for comparing runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultEvent {
    /// Number of the call it hit (1 = the wrapper's first call).
    pub call: u64,
    /// The operation (`put`, `get`, `record_fill`, ...).
    pub op: &'static str,
    /// What fired.
    pub kind: FaultKind,
}

/// The error an injected fault carries (the source of the store's `Generic`, `AlreadyExists` or
/// `Precondition` error; its text is in the ledger's `Storage` error). Every message starts
/// with "injected".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InjectedFault {
    /// What fired.
    pub kind: FaultKind,
    /// What the caller is told.
    pub message: String,
}

impl InjectedFault {
    fn new(kind: FaultKind, op: &str, target: &str, writes_applied: u64) -> Self {
        let what = if target.is_empty() { op.to_owned() } else { format!("{op} {target}") };
        let message = match kind {
            FaultKind::Slow => format!("injected slow call: {what}"),
            FaultKind::FailBefore => format!("injected 503 SlowDown: {what} was refused and not applied"),
            FaultKind::FailAfter => {
                format!("injected lost answer: {what} was applied but the connection reset before the answer")
            }
            FaultKind::SpuriousPrecondition => {
                format!("injected spurious precondition failure: {what} was not applied")
            }
            FaultKind::Dead => format!(
                "injected process death: the process is dead (killed after {writes_applied} writes); {what} was not applied"
            ),
        };
        Self { kind, message }
    }
}

/// How a call touches the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
    /// A write applied only if a condition holds (create if absent, update if unchanged).
    ConditionalWrite,
}

/// The seeded decisions, counters and death switch shared by the wrappers.
#[derive(Debug)]
pub struct FaultInjector {
    plan: FaultPlan,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    rng: SplitMix64,
    calls: u64,
    fired: [u64; 5],
    trace: Vec<FaultEvent>,
    writes_applied: u64,
    writes_in_flight: u64,
    death_at: Option<u64>,
}

/// What to do with one admitted call.
#[derive(Debug)]
pub(crate) struct Ticket<'a> {
    injector: &'a FaultInjector,
    call: u64,
    op: &'static str,
    pub(crate) slow: Option<Duration>,
    pub(crate) fail_before: bool,
    pub(crate) spurious_precondition: bool,
    fail_after: bool,
    /// The call holds a write slot (released exactly once: by `settle` or on drop).
    holds_slot: bool,
}

impl FaultInjector {
    /// An injector following `plan`.
    pub fn new(plan: FaultPlan) -> Self {
        let state = State {
            rng: SplitMix64(plan.seed),
            calls: 0,
            fired: [0; 5],
            trace: Vec::new(),
            writes_applied: 0,
            writes_in_flight: 0,
            death_at: plan.die_after_writes,
        };
        Self { plan, state: Mutex::new(state) }
    }

    /// The plan it follows.
    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many times each kind fired, every kind present (zero when it never fired).
    pub fn faults_fired(&self) -> BTreeMap<&'static str, u64> {
        let state = self.state();
        FaultKind::ALL.iter().map(|k| (k.as_str(), state.fired[k.index()])).collect()
    }

    /// How many times `kind` fired.
    pub fn fired(&self, kind: FaultKind) -> u64 {
        self.state().fired[kind.index()]
    }

    /// Every fault that fired, in order (kept for the injector's lifetime: a test tool).
    pub fn trace(&self) -> Vec<FaultEvent> {
        self.state().trace.clone()
    }

    /// Calls seen so far (including refused ones).
    pub fn calls(&self) -> u64 {
        self.state().calls
    }

    /// Writes the inner store applied so far (including those whose answer was lost).
    pub fn writes_applied(&self) -> u64 {
        self.state().writes_applied
    }

    /// Kills the process after `more` further applied writes (0: now). Replaces any earlier
    /// threshold.
    pub fn die_after(&self, more: u64) {
        let mut state = self.state();
        state.death_at = Some(state.writes_applied.saturating_add(more));
    }

    /// True once the death threshold is reached: every call fails and none is applied.
    pub fn is_dead(&self) -> bool {
        self.state().dead()
    }

    fn fire(state: &mut State, call: u64, op: &'static str, kind: FaultKind) {
        state.fired[kind.index()] = state.fired[kind.index()].saturating_add(1);
        state.trace.push(FaultEvent { call, op, kind });
    }

    /// Admits a call, or refuses it because the process is dead.
    pub(crate) fn admit(&self, op: &'static str, target: &str, access: Access) -> Result<Ticket<'_>, InjectedFault> {
        let mut state = self.state();
        state.calls = state.calls.saturating_add(1);
        let call = state.calls;
        let is_write = access != Access::Read;
        let no_slot_left = is_write
            && state.death_at.is_some_and(|n| state.writes_applied.saturating_add(state.writes_in_flight) >= n);
        if state.dead() || no_slot_left {
            Self::fire(&mut state, call, op, FaultKind::Dead);
            return Err(InjectedFault::new(FaultKind::Dead, op, target, state.writes_applied));
        }
        // Always four draws, whatever is enabled (see the module's invariants).
        let slow = state.rng.chance(self.plan.slow_ppm);
        let fail_before = state.rng.chance(self.plan.fail_before_ppm);
        let spurious = state.rng.chance(self.plan.spurious_precondition_ppm) && access == Access::ConditionalWrite;
        let fail_after = state.rng.chance(self.plan.fail_after_ppm) && is_write;
        let slow = slow.then_some(self.plan.slow_delay);
        if slow.is_some() {
            Self::fire(&mut state, call, op, FaultKind::Slow);
        }
        if fail_before {
            Self::fire(&mut state, call, op, FaultKind::FailBefore);
        } else if spurious {
            Self::fire(&mut state, call, op, FaultKind::SpuriousPrecondition);
        }
        if is_write {
            state.writes_in_flight = state.writes_in_flight.saturating_add(1);
        }
        Ok(Ticket {
            injector: self,
            call,
            op,
            slow,
            fail_before,
            spurious_precondition: spurious && !fail_before,
            fail_after,
            holds_slot: is_write,
        })
    }
}

impl State {
    fn dead(&self) -> bool {
        self.death_at.is_some_and(|n| self.writes_applied >= n)
    }
}

impl Ticket<'_> {
    /// The error to answer with, when this call fails before it is applied.
    pub(crate) fn refusal(&self, target: &str) -> Option<InjectedFault> {
        let kind = if self.fail_before {
            FaultKind::FailBefore
        } else if self.spurious_precondition {
            FaultKind::SpuriousPrecondition
        } else {
            return None;
        };
        Some(InjectedFault::new(kind, self.op, target, 0))
    }

    /// Records the inner call's outcome (`applied`: it succeeded); returns the lost-answer
    /// error when the caller must be told it failed although it was applied.
    pub(crate) fn settle(mut self, applied: bool, target: &str) -> Option<InjectedFault> {
        let mut state = self.injector.state();
        if !self.holds_slot {
            return None;
        }
        self.holds_slot = false;
        state.writes_in_flight = state.writes_in_flight.saturating_sub(1);
        if !applied {
            return None;
        }
        state.writes_applied = state.writes_applied.saturating_add(1);
        if !self.fail_after {
            return None;
        }
        FaultInjector::fire(&mut state, self.call, self.op, FaultKind::FailAfter);
        Some(InjectedFault::new(FaultKind::FailAfter, self.op, target, state.writes_applied))
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        // A call abandoned before it settled (refused, or its future dropped) frees its slot.
        if self.holds_slot {
            let mut state = self.injector.state();
            state.writes_in_flight = state.writes_in_flight.saturating_sub(1);
        }
    }
}

/// SplitMix64: a tiny, well-mixed, seedable generator (Steele, Lea and Flood, 2014); the
/// faults' dice, and a test's for its schedules.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next number of the sequence.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `ppm` / 1,000,000 (always from [`PPM`] up).
    pub fn chance(&mut self, ppm: u32) -> bool {
        self.next_u64() % u64::from(PPM) < u64::from(ppm)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_deterministic_and_honours_the_extremes() {
        let (mut a, mut b) = (SplitMix64(7), SplitMix64(7));
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, (0..8).map(|_| SplitMix64(8).next_u64()).collect::<Vec<_>>());
        let mut r = SplitMix64(1);
        assert!((0..1000).all(|_| !r.chance(0)));
        assert!((0..1000).all(|_| r.chance(PPM)));
        assert!((0..1000).all(|_| r.chance(u32::MAX)));
        let hits = (0..100_000).filter(|_| r.chance(100_000)).count();
        assert!((9_000..11_000).contains(&hits), "about 10 %: {hits}");
    }

    #[test]
    fn a_refused_or_abandoned_write_frees_its_slot() {
        let injector = FaultInjector::new(FaultPlan { die_after_writes: Some(1), ..FaultPlan::none(1) });
        let ticket = injector.admit("put", "a", Access::Write).unwrap();
        // While the first write is in flight, a second one would overshoot the threshold.
        assert_eq!(injector.admit("put", "b", Access::Write).unwrap_err().kind, FaultKind::Dead);
        assert!(injector.admit("get", "a", Access::Read).is_ok(), "reads pass until the death");
        drop(ticket);
        let ticket = injector.admit("put", "a", Access::Write).unwrap();
        assert!(ticket.settle(false, "a").is_none());
        assert!(!injector.is_dead());
        let ticket = injector.admit("put", "a", Access::Write).unwrap();
        assert!(ticket.settle(true, "a").is_none());
        assert!(injector.is_dead());
        assert_eq!(injector.admit("get", "a", Access::Read).unwrap_err().kind, FaultKind::Dead);
        assert_eq!(injector.fired(FaultKind::Dead), 2);
        assert_eq!(injector.writes_applied(), 1);
    }

    #[test]
    fn death_can_be_armed_later_and_counts_from_then() {
        let injector = FaultInjector::new(FaultPlan::none(3));
        for _ in 0..3 {
            let t = injector.admit("put", "x", Access::Write).unwrap();
            assert!(t.settle(true, "x").is_none());
        }
        injector.die_after(1);
        assert!(!injector.is_dead());
        let t = injector.admit("put", "x", Access::Write).unwrap();
        assert!(t.settle(true, "x").is_none());
        assert!(injector.is_dead());
        let err = injector.admit("put", "x", Access::Write).unwrap_err();
        assert!(err.message.contains("process is dead") && err.message.contains("after 4 writes"), "{err}");
        injector.die_after(0);
        assert!(injector.is_dead());
    }
}
