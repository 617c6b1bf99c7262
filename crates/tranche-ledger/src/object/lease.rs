//! The plan lease of the object ledger: one lock object per plan (`lock.json`), taken by a
//! conditional create (or, once lapsed, a conditional update of the version read), renewed by
//! conditional updates, and proven by such a renewal before every order the engine sends.
//!
//! Invariants:
//! - the lock is only ever written conditionally (`If-None-Match: *` to create it, `If-Match` on
//!   the version last seen to change it), so of two workers racing for it exactly one wins, and
//!   a worker whose lock was taken over can never write it again;
//! - a lock names its holder by a token unique to one `begin`: a write whose answer was lost, or
//!   that the store refused spuriously, is recognised by reading the lock back (our token: ours);
//!   any other token means the plan was taken over, and the claim is lost for good;
//! - a taker judges a lock lapsed only when its own clock is past the lock's expiry plus the
//!   configured clock skew, and the holder acts only within half a lease of the start of its
//!   last successful renewal, on its own monotonic clock. With clocks within the skew of each
//!   other, a holder's acting window closes at least half a lease before anyone can take over:
//!   that half lease is what an order already sent has to reach the broker;
//! - renewals of one run never overlap (one at a time, under an async mutex), and a renewal that
//!   began after a caller asked serves every caller that was waiting for it (group commit).

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{PutMode, UpdateVersion};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{key, storage, ObjectLedger};
use crate::model::{ClaimProof, LedgerError, RunHandle};

/// The lock object of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Lock {
    /// The run the holder executes.
    pub run_id: String,
    /// The worker's name (for people).
    pub owner: String,
    /// The token of the `begin` that took the lock (fencing: only its holder writes it).
    #[serde(default)]
    pub holder: String,
    /// Incremented by every takeover of a lapsed lock.
    #[serde(default)]
    pub generation: u64,
    /// When the claim lapses, on the holder's clock.
    pub expires_at: DateTime<Utc>,
    /// The lease length the holder works with.
    #[serde(default)]
    pub lease_ms: u64,
}

/// A lock this worker holds.
#[derive(Debug)]
pub(super) struct Held {
    /// The lock's version as last written or read by this worker.
    pub version: UpdateVersion,
    /// What was written.
    pub lock: Lock,
    /// When (monotonic) the last successful write of the lock began.
    pub proven_at: Option<Instant>,
    /// The plan was taken over: nothing more may be done for it.
    pub lost: bool,
}

/// What taking a plan's lock came to.
pub(super) enum Taken {
    /// This worker holds it.
    Held(Held),
    /// Another worker holds a live lock, for this run.
    Busy(String),
}

/// Attempts at taking or renewing a lock before the store's failure is reported.
const LOCK_ATTEMPTS: u32 = 5;

/// A token unique to one `begin` of one worker.
fn holder_token(owner: &str) -> String {
    static TAKES: AtomicU64 = AtomicU64::new(0);
    let take = TAKES.fetch_add(1, Ordering::Relaxed);
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    key(&format!("{owner}-{}-{nanos}-{take}", std::process::id()), 12)
}

impl ObjectLedger {
    fn lock_path(&self, plan_id: &str) -> Path {
        self.plan_dir(plan_id).child("lock.json")
    }

    fn lock_body(&self, run_id: &str, holder: &str, generation: u64) -> Lock {
        let length = self.lease.length();
        let lease = chrono::Duration::from_std(length).unwrap_or(chrono::Duration::seconds(60));
        Lock {
            run_id: run_id.to_owned(),
            owner: self.owner.clone(),
            holder: holder.to_owned(),
            generation,
            expires_at: (self.now)() + lease,
            lease_ms: u64::try_from(length.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// True when `lock` has lapsed by this worker's clock, allowing for the skew between clocks.
    fn lapsed(&self, lock: &Lock) -> bool {
        let skew = chrono::Duration::from_std(self.lease.clock_skew()).unwrap_or(chrono::Duration::zero());
        (self.now)() > lock.expires_at + skew
    }

    /// Takes the lock of `plan_id` for `run_id` if it is free or has lapsed.
    pub(super) async fn take_lock(&self, plan_id: &str, run_id: &str) -> Result<Taken, LedgerError> {
        let path = self.lock_path(plan_id);
        let holder = holder_token(&self.owner);
        let mut failure = None;
        for _ in 0..LOCK_ATTEMPTS {
            let current = match self.get_json::<Lock>(&path).await {
                Ok(current) => current,
                Err(e) => {
                    failure = Some(e);
                    continue;
                }
            };
            let (mode, generation) = match current {
                // An earlier attempt of ours was applied although it was reported failed.
                Some((lock, version)) if lock.holder == holder => {
                    return Ok(Taken::Held(Held { version, lock, proven_at: None, lost: false }));
                }
                Some((lock, _)) if !self.lapsed(&lock) => return Ok(Taken::Busy(lock.run_id)),
                // A lapsed lease: its worker is gone. Take it over, unless someone else just did.
                Some((lock, version)) => (PutMode::Update(version), lock.generation + 1),
                None => (PutMode::Create, 1),
            };
            let lock = self.lock_body(run_id, &holder, generation);
            let began = Instant::now();
            match self.put_json(&path, &lock, mode).await {
                Ok(version) => return Ok(Taken::Held(Held { version, lock, proven_at: Some(began), lost: false })),
                // Refused (another worker was faster, or the store refused spuriously) or failed
                // (perhaps after it was applied): the lock as it is now decides, next round.
                Err(e) => failure = Some(storage(e)),
            }
        }
        Err(failure.unwrap_or_else(|| LedgerError::Storage("the plan lock could not be taken".into())))
    }

    /// Renews `held` by a conditional write; `ClaimLost` once another worker has the lock.
    async fn renew(&self, run: &RunHandle, held: &mut Held) -> Result<Instant, LedgerError> {
        let path = self.lock_path(&run.plan_id);
        let lost = || LedgerError::ClaimLost { run_id: run.run_id.clone(), plan_id: run.plan_id.clone() };
        let mut failure = None;
        for _ in 0..LOCK_ATTEMPTS {
            let lock = self.lock_body(&held.lock.run_id, &held.lock.holder, held.lock.generation);
            let began = Instant::now();
            match self.put_json(&path, &lock, PutMode::Update(held.version.clone())).await {
                Ok(version) => {
                    held.version = version;
                    held.lock = lock;
                    held.proven_at = Some(began);
                    return Ok(began);
                }
                Err(e) => failure = Some(storage(e)),
            }
            // Refused or failed: the version we hold may be stale because an earlier write of
            // ours was applied with its answer lost, or the lock was taken over. Read it back.
            match self.get_json::<Lock>(&path).await {
                Ok(Some((now, version))) if now.holder == held.lock.holder => held.version = version,
                Ok(_) => {
                    held.lost = true;
                    return Err(lost());
                }
                Err(e) => failure = Some(e),
            }
        }
        Err(failure.unwrap_or_else(|| LedgerError::Storage("the plan lock could not be renewed".into())))
    }

    /// Proves the claim of `run` by a renewal that began after `asked` (one renewal serves
    /// every caller that was waiting for it).
    pub(super) async fn prove(&self, run: &RunHandle, asked: Instant) -> Result<ClaimProof, LedgerError> {
        let held = self.held(run)?;
        let mut held = held.lock().await;
        if held.lost {
            return Err(LedgerError::ClaimLost { run_id: run.run_id.clone(), plan_id: run.plan_id.clone() });
        }
        if held.proven_at.is_none_or(|at| at < asked) {
            self.renew(run, &mut held).await?;
        }
        // The renewal began after the caller asked, so the caller may act for the window from
        // when it asked, on its own clock.
        Ok(ClaimProof { valid_for: Some(self.lease.act_window()) })
    }

    /// Proves the claim of `run` unless a proof still valid now exists.
    pub(super) async fn prove_current(&self, run: &RunHandle) -> Result<(), LedgerError> {
        let now = Instant::now();
        let window = self.lease.act_window();
        {
            let held = self.held(run)?;
            let held = held.lock().await;
            if held.lost {
                return Err(LedgerError::ClaimLost { run_id: run.run_id.clone(), plan_id: run.plan_id.clone() });
            }
            if held.proven_at.is_some_and(|at| now < at + window) {
                return Ok(());
            }
        }
        self.prove(run, now).await.map(|_| ())
    }

    /// Gives up the lock of `plan_id` (the plan is finished, or the run could not start): the
    /// next worker need not wait for the lease to lapse. A failure only delays that worker.
    pub(super) async fn release(&self, plan_id: &str, run_id: &str) {
        let path = self.lock_path(plan_id);
        for attempt in 1..=LOCK_ATTEMPTS {
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => break,
                Err(e) if attempt == LOCK_ATTEMPTS => {
                    tracing::warn!(error = %e, %plan_id, "could not release the plan lock; the next run waits for the lease to lapse");
                }
                Err(_) => {}
            }
        }
        self.leases.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(run_id);
    }
}
