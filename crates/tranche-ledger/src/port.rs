//! The `Ledger` port: what the engine records and what it asks back.
//!
//! Invariants every backend keeps: `begin` refuses a plan that another live worker runs and
//! returns the recorded result of a completed plan; only the worker holding the plan's claim
//! records what a later run relies on (items, the result); `record_intent` is durable before it
//! returns (the engine sends the order only afterwards); `record_fill` is idempotent on the
//! execution id; `finish` records the result durably.

use async_trait::async_trait;
use tranche_domain::{ExecutionResult, RebalancePlan};

use crate::model::{
    BeginOutcome, ClaimProof, FillOutcome, FillRecord, ItemRecord, LedgerError, OrderIntent, OrderRecord, RunHandle,
    RunRecord, RunStatus,
};

/// A durable trade ledger.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// Begins (or resumes, after an interruption) a run of `plan`.
    async fn begin(&self, plan: &RebalancePlan) -> Result<BeginOutcome, LedgerError>;

    /// How often the engine renews its claim on a plan with [`Ledger::prove_claim`] while it
    /// runs (`None`: the claim needs no renewal, it lasts as long as the process).
    fn claim_renewal(&self) -> Option<std::time::Duration> {
        None
    }

    /// Proves that this worker still holds `run`'s plan, by a write that began after this call
    /// was made and that fails for a worker that lost the plan (renewing the lease where the
    /// backend has one). The engine proves its claim before every order it sends and sends it
    /// only within the proof's `valid_for`. [`LedgerError::ClaimLost`]: another worker has the
    /// plan, stop at once; any other error: the claim could not be proven now (try again).
    async fn prove_claim(&self, _run: &RunHandle) -> Result<ClaimProof, LedgerError> {
        Ok(ClaimProof::UNBOUNDED)
    }

    /// Records an order attempt before it is sent.
    async fn record_intent(&self, run: &RunHandle, intent: &OrderIntent) -> Result<(), LedgerError>;

    /// Records the latest state of an order.
    async fn record_order(&self, run: &RunHandle, order: &OrderRecord) -> Result<(), LedgerError>;

    /// Records a fill once; a repeated execution id is ignored and counted.
    async fn record_fill(&self, run: &RunHandle, fill: &FillRecord) -> Result<FillOutcome, LedgerError>;

    /// Records that the run finished a plan item: a resumed run does not trade it again (the
    /// latest record of an item wins).
    async fn record_item(&self, run: &RunHandle, item: &ItemRecord) -> Result<(), LedgerError>;

    /// Every finished item of a plan, by item index.
    async fn items(&self, plan_id: &str) -> Result<Vec<ItemRecord>, LedgerError>;

    /// Gives up this worker's claim on the run's plan without finishing it: the run stays
    /// resumable and the next `begin` continues it at once (no lease to wait out).
    async fn suspend(&self, _run: &RunHandle) -> Result<(), LedgerError> {
        Ok(())
    }

    /// Finishes the run with its result and releases the plan.
    async fn finish(&self, run: &RunHandle, result: &ExecutionResult) -> Result<(), LedgerError>;

    /// Every run of a plan, oldest first (`None`: every run in the ledger).
    async fn runs(&self, plan_id: Option<&str>) -> Result<Vec<RunRecord>, LedgerError>;

    /// True when a run of the plan completed (a `begin` now answers its recorded result);
    /// false too when the runs cannot be read.
    async fn completed_before(&self, plan_id: &str) -> bool {
        self.runs(Some(plan_id)).await.is_ok_and(|runs| runs.iter().any(|r| r.status == RunStatus::Completed))
    }

    /// Every intent of a plan, in the order they were recorded.
    async fn intents(&self, plan_id: &str) -> Result<Vec<OrderIntent>, LedgerError>;

    /// The latest state of every order of a plan.
    async fn orders(&self, plan_id: &str) -> Result<Vec<OrderRecord>, LedgerError>;

    /// Every fill of a plan, oldest first.
    async fn fills(&self, plan_id: &str) -> Result<Vec<FillRecord>, LedgerError>;
}
