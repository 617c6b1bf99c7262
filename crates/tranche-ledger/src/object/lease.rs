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
//!   began after a caller asked serves every caller that was waiting for it (group commit);
//! - a proof holds on two clocks: the monotonic one (immune to clock steps) and the worker's
//!   wall clock (which, unlike the monotonic one, runs on while a VM is suspended);
//! - the lock is never deleted: it is given back by a conditional write that marks it lapsed,
//!   which cannot touch a lock another worker has taken over.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
    /// When the last successful write of the lock began: on the monotonic clock, and on this
    /// worker's wall clock (which, unlike the monotonic one, also runs while a VM is suspended).
    pub proven_at: Option<(Instant, DateTime<Utc>)>,
    /// The plan was taken over (or given up): nothing more may be done for it.
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

    /// True when `lock` has lapsed by this worker's clock, allowing for the skew between clocks,
    /// or is damaged: an expiry past the longest lease any worker within the skew could have
    /// written (its conditional writes still fence a takeover of it).
    fn lapsed(&self, lock: &Lock) -> bool {
        let skew = chrono::Duration::from_std(self.lease.clock_skew()).unwrap_or(chrono::Duration::zero());
        let longest = chrono::Duration::from_std(crate::LeaseTerms::MAX_LENGTH).unwrap_or(chrono::Duration::hours(1));
        let now = (self.now)();
        // A day's margin beyond the longest lease and this worker's skew: workers may allow for
        // different skews, and a live lock is never taken for a damaged one.
        let credible =
            now.checked_add_signed(longest + skew + chrono::Duration::days(1)).unwrap_or(DateTime::<Utc>::MAX_UTC);
        lock.expires_at.checked_add_signed(skew).is_none_or(|until| now > until) || lock.expires_at > credible
    }

    /// True when a proof begun at `at` still allows acting now, on both clocks.
    fn proof_holds(&self, at: (Instant, DateTime<Utc>)) -> bool {
        let window = self.lease.act_window();
        let wall = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::zero());
        Instant::now() < at.0 + window && (self.now)() < at.1 + wall
    }

    /// Takes the lock of `plan_id` for `run_id` if it is free or has lapsed.
    pub(super) async fn take_lock(&self, plan_id: &str, run_id: &str) -> Result<Taken, LedgerError> {
        let path = self.lock_path(plan_id);
        let holder = holder_token(&self.owner);
        let mut failure = None;
        for attempt in 0..=LOCK_ATTEMPTS {
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
                Some((lock, version)) => (PutMode::Update(version), lock.generation.saturating_add(1)),
                None => (PutMode::Create, 1),
            };
            // The last round only reads back what the one before it did.
            if attempt == LOCK_ATTEMPTS {
                break;
            }
            let lock = self.lock_body(run_id, &holder, generation);
            let began = (Instant::now(), (self.now)());
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
    async fn renew(&self, run: &RunHandle, held: &mut Held) -> Result<(), LedgerError> {
        let path = self.lock_path(&run.plan_id);
        let lost = || LedgerError::ClaimLost { run_id: run.run_id.clone(), plan_id: run.plan_id.clone() };
        let mut failure = None;
        for _ in 0..LOCK_ATTEMPTS {
            let lock = self.lock_body(&held.lock.run_id, &held.lock.holder, held.lock.generation);
            let began = (Instant::now(), (self.now)());
            match self.put_json(&path, &lock, PutMode::Update(held.version.clone())).await {
                Ok(version) => {
                    held.version = version;
                    held.lock = lock;
                    held.proven_at = Some(began);
                    return Ok(());
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
        if held.proven_at.is_none_or(|proven| proven.0 < asked || !self.proof_holds(proven)) {
            self.renew(run, &mut held).await?;
        }
        // The renewal began after the caller asked, so the caller may act for the window from
        // when it asked, on its own clock.
        Ok(ClaimProof { valid_for: Some(self.lease.act_window()) })
    }

    /// Proves the claim of `run` unless a proof valid now (on both clocks, read once the
    /// renewals are quiet) exists; the write that follows must follow at once.
    pub(super) async fn prove_current(&self, run: &RunHandle) -> Result<(), LedgerError> {
        {
            let held = self.held(run)?;
            let held = held.lock().await;
            if held.lost {
                return Err(LedgerError::ClaimLost { run_id: run.run_id.clone(), plan_id: run.plan_id.clone() });
            }
            if held.proven_at.is_some_and(|at| self.proof_holds(at)) {
                return Ok(());
            }
        }
        self.prove(run, Instant::now()).await.map(|_| ())
    }

    /// Gives up the lock `held` of `plan_id` (the plan is finished, or the run could not start)
    /// so that the next worker need not wait for the lease to lapse: a conditional write that
    /// marks it lapsed, which fails harmlessly if the lock is no longer ours (it is never
    /// deleted: a lock taken over meanwhile is the other worker's). A failure only delays the
    /// next worker. Nothing more may be done for the plan with `held` afterwards.
    pub(super) async fn release(&self, plan_id: &str, held: &Arc<tokio::sync::Mutex<Held>>) {
        let path = self.lock_path(plan_id);
        let mut held = held.lock().await;
        let run_id = held.lock.run_id.clone();
        if !held.lost {
            let released = Lock { expires_at: DateTime::<Utc>::UNIX_EPOCH, ..held.lock.clone() };
            for attempt in 1..=LOCK_ATTEMPTS {
                match self.put_json(&path, &released, PutMode::Update(held.version.clone())).await {
                    Ok(_) => break,
                    Err(e) => {
                        match self.get_json::<Lock>(&path).await {
                            Ok(Some((now, version))) if now.holder == held.lock.holder && now != released => {
                                held.version = version;
                            }
                            // Released already (a lost answer), or no longer ours.
                            Ok(_) => break,
                            Err(_) => {}
                        }
                        if attempt == LOCK_ATTEMPTS {
                            tracing::warn!(error = %e, %plan_id, "could not release the plan lock; the next run waits for the lease to lapse");
                        }
                    }
                }
            }
            held.lost = true;
        }
        self.leases.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&run_id);
    }
}
