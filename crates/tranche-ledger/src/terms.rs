//! The terms of a plan lease (the object ledger's claim on a plan): how long a claim lasts and
//! how far apart two workers' clocks may be. Plain values, known to every build (a spec names
//! them before any backend is chosen).
//!
//! Invariants: a lease is 3 s to 1 h long; the skew allowance is at most 10 minutes; a holder
//! renews three times per lease and acts within half a lease of a renewal.

use std::time::Duration;

use crate::model::LedgerError;

/// How long a worker's claim on a plan lasts and how far apart the workers' clocks may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTerms {
    length: Duration,
    clock_skew: Duration,
}

impl LeaseTerms {
    /// The shortest lease: renewals every second.
    pub const MIN_LENGTH: Duration = Duration::from_secs(3);
    /// The longest lease (a crashed worker's plan waits this long for a takeover).
    pub const MAX_LENGTH: Duration = Duration::from_secs(3600);
    /// The largest clock difference between workers that can be allowed for.
    pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(600);

    /// A lease of `length` between workers whose wall clocks differ by at most `clock_skew`.
    pub fn new(length: Duration, clock_skew: Duration) -> Result<Self, LedgerError> {
        if !(Self::MIN_LENGTH..=Self::MAX_LENGTH).contains(&length) {
            return Err(LedgerError::Invalid(format!(
                "a lease of {length:?} is outside {:?}..={:?}",
                Self::MIN_LENGTH,
                Self::MAX_LENGTH
            )));
        }
        if clock_skew > Self::MAX_CLOCK_SKEW {
            return Err(LedgerError::Invalid(format!(
                "a clock skew allowance of {clock_skew:?} is above {:?}: fix the clocks (NTP)",
                Self::MAX_CLOCK_SKEW
            )));
        }
        Ok(Self { length, clock_skew })
    }

    /// How long a claim lasts without a renewal.
    pub fn length(self) -> Duration {
        self.length
    }

    /// The largest difference between two workers' wall clocks that the lease allows for.
    pub fn clock_skew(self) -> Duration {
        self.clock_skew
    }

    /// How often a holder renews: three times per lease.
    pub fn renew_every(self) -> Duration {
        self.length / 3
    }

    /// How long after a renewal began its holder may act on the plan: half a lease.
    pub fn act_window(self) -> Duration {
        self.length / 2
    }
}

impl Default for LeaseTerms {
    /// A 60-second lease between clocks at most 5 seconds apart.
    fn default() -> Self {
        Self { length: Duration::from_secs(60), clock_skew: Duration::from_secs(5) }
    }
}
