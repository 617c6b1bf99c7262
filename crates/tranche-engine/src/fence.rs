//! The fence: this worker's claim on the plan, proven through the ledger before it acts on the
//! broker, so that a worker that lost the plan to another (its lease lapsed while it was
//! frozen, or the store was unreachable for too long) sends nothing more.
//!
//! Invariants: no order (a submit or a replace) leaves the process without a proof of the claim
//! that began after the order's intent was recorded, and it leaves before that proof's window
//! closes on two clocks: tokio's monotonic one (immune to clock steps; a paused test runtime
//! advances it virtually, so a frozen worker's window closes while it is frozen) and the `Clock`
//! port's wall time (which, unlike the monotonic clock, runs on while a VM is suspended); a cancel needs a proof that is still
//! valid, or proves anew, but is not held back when the ledger merely cannot be reached (a
//! cancel cannot trade); once the claim is lost it stays lost, and the run stops at once:
//! nothing more is sent, recorded or cancelled by this worker.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tranche_broker::Clock;
use tranche_domain::Timestamp;
use tranche_ledger::{ClaimProof, Ledger, LedgerError, RunHandle};

/// Attempts at proving the claim for an order before the order is given up (0.5, 1, 2 s apart).
const PROOF_ATTEMPTS: u32 = 4;

/// Why the fence did not let an action through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Another worker has the plan: stop.
    Lost(String),
    /// The claim could not be proven now (the store failed): the order is not sent.
    Unproven(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Lost(reason) => write!(f, "{reason}"),
            Self::Unproven(reason) => write!(f, "the claim on the plan could not be proven: {reason}"),
        }
    }
}

/// Until when this worker may act (on the monotonic clock, and on the wall clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proven {
    Never,
    Until(Instant, Timestamp),
    Always,
}

#[derive(Debug)]
struct State {
    proven: Proven,
    lost: Option<String>,
}

/// This worker's claim on the plan of a recorded run.
pub(crate) struct Fence {
    ledger: Arc<dyn Ledger>,
    run: RunHandle,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fence").field("run", &self.run).field("state", &self.state).finish_non_exhaustive()
    }
}

impl Fence {
    /// The claim `ledger` gave `run` when it began (not yet proven by this fence).
    pub(crate) fn new(ledger: Arc<dyn Ledger>, run: RunHandle, clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(Self { ledger, run, clock, state: Mutex::new(State { proven: Proven::Never, lost: None }) })
    }

    /// True while `proven` allows acting, on both clocks.
    fn holds(&self, proven: Proven) -> bool {
        match proven {
            Proven::Always => true,
            Proven::Until(until, wall) => Instant::now() < until && self.clock.now() < wall,
            Proven::Never => false,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Why the claim was lost, once it was.
    pub(crate) fn lost(&self) -> Option<String> {
        self.state().lost.clone()
    }

    /// How often the claim is renewed while the run goes on (`None`: never needed).
    pub(crate) fn renewal(&self) -> Option<Duration> {
        self.ledger.claim_renewal()
    }

    /// Takes note of a ledger error: a lost claim is lost for good.
    pub(crate) fn observe(&self, error: &LedgerError) {
        if let LedgerError::ClaimLost { .. } = error {
            let mut state = self.state();
            if state.lost.is_none() {
                state.lost = Some(error.to_string());
            }
        }
    }

    /// One proof, asked for now; the instant it is valid until.
    async fn prove_once(&self) -> Result<Proven, Refusal> {
        if let Some(reason) = self.lost() {
            return Err(Refusal::Lost(reason));
        }
        let (asked, asked_wall) = (Instant::now(), self.clock.now());
        match self.ledger.prove_claim(&self.run).await {
            Ok(ClaimProof { valid_for: None }) => {
                self.state().proven = Proven::Always;
                Ok(Proven::Always)
            }
            Ok(ClaimProof { valid_for: Some(window) }) => {
                let wall = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::zero());
                let until = Proven::Until(asked + window, asked_wall.checked_add_signed(wall).unwrap_or(asked_wall));
                let mut state = self.state();
                state.proven = match (state.proven, until) {
                    (Proven::Until(old, old_wall), Proven::Until(new, new_wall)) => {
                        Proven::Until(old.max(new), old_wall.max(new_wall))
                    }
                    _ => until,
                };
                Ok(until)
            }
            Err(e) => {
                self.observe(&e);
                Err(match self.lost() {
                    Some(reason) => Refusal::Lost(reason),
                    None => Refusal::Unproven(e.to_string()),
                })
            }
        }
    }

    /// A proof for an order whose intent is recorded: a renewal that began after this call,
    /// tried again while the store fails. The order must leave before the instant returned.
    pub(crate) async fn prove_for_order(&self, clock: &Arc<dyn Clock>) -> Result<(), Refusal> {
        let mut wait = chrono::Duration::milliseconds(500);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.prove_once().await {
                Ok(proven) if self.holds(proven) => return Ok(()),
                // A proof that took longer than its own window proves nothing by now.
                Ok(_) | Err(Refusal::Unproven(_)) if attempt < PROOF_ATTEMPTS => {
                    clock.sleep_until(clock.now() + wait).await;
                    wait = wait * 2;
                }
                Ok(_) => return Err(Refusal::Unproven("every proof took longer than its window".into())),
                Err(refusal) => return Err(refusal),
            }
        }
    }

    /// True when a proof is valid now and the claim is not lost (an order may leave at once).
    pub(crate) fn acting_allowed(&self) -> bool {
        let (lost, proven) = {
            let state = self.state();
            (state.lost.is_some(), state.proven)
        };
        !lost && self.holds(proven)
    }

    /// Lets a cancel through: with a proof still valid, or a new one; a store that cannot be
    /// reached does not hold a cancel back (only a lost claim does).
    pub(crate) async fn allow_cancel(&self) -> Result<(), Refusal> {
        let proven = {
            let state = self.state();
            if let Some(reason) = &state.lost {
                return Err(Refusal::Lost(reason.clone()));
            }
            state.proven
        };
        if self.holds(proven) {
            return Ok(());
        }
        match self.prove_once().await {
            Ok(_) | Err(Refusal::Unproven(_)) => Ok(()),
            Err(lost) => Err(lost),
        }
    }

    /// Renews the claim once (a heartbeat); a failure that is not a loss is only logged.
    pub(crate) async fn renew(&self) {
        if let Err(Refusal::Unproven(reason)) = self.prove_once().await {
            tracing::warn!(%reason, run_id = %self.run.run_id, "could not renew the claim on the plan; orders wait for a proof");
        }
    }
}

/// The broker looks at the fence again at the last moment before an order leaves (after its
/// client's wait for the request budget), so a proof that lapsed during that wait sends nothing.
impl tranche_broker::Clearance for Fence {
    fn holds(&self) -> bool {
        self.acting_allowed()
    }
}

/// Renews `fence`'s claim every renewal period on `clock` while it lives (kept while the run's
/// last steps, its final cancels and its result, are under way); dropping it stops the renewals,
/// so a run that is dropped (a crash) leaves its lease to lapse.
pub(crate) struct Renewing(tokio::task::JoinHandle<()>);

impl Drop for Renewing {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts renewing `fence`'s claim in the background (`None`: it needs no renewal).
pub(crate) fn keep_renewing(fence: &Arc<Fence>, clock: &Arc<dyn Clock>) -> Option<Renewing> {
    let every = chrono::Duration::from_std(fence.renewal()?).ok()?;
    let (fence, clock) = (Arc::clone(fence), Arc::clone(clock));
    Some(Renewing(tokio::spawn(async move {
        while fence.lost().is_none() {
            clock.sleep_until(clock.now() + every).await;
            fence.renew().await;
        }
    })))
}
