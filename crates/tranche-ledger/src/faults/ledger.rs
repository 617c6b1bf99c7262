//! `FaultyLedger`: any [`Ledger`] with seeded faults (slow calls, failures before and after the
//! call is applied, death after N writes); how the SQLite backend is made to misbehave.
//!
//! Invariants: the writes are `begin`, `prove_claim`, `suspend`, `record_intent`, `record_order`,
//! `record_fill`, `record_item` and `finish`; a write counts as applied when the inner ledger answered `Ok`.
//! Spurious precondition failures are an object-store fault and never fire here. With
//! [`FaultPlan::none`] every call is passed through unchanged.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use tranche_domain::{ExecutionResult, RebalancePlan};

use super::{Access, FaultInjector, FaultPlan, InjectedFault};
use crate::model::{
    BeginOutcome, ClaimProof, FillOutcome, FillRecord, ItemRecord, LedgerError, OrderIntent, OrderRecord, RunHandle,
    RunRecord,
};
use crate::port::Ledger;

/// A [`Ledger`] that misbehaves on purpose, following a [`FaultPlan`].
pub struct FaultyLedger {
    inner: Arc<dyn Ledger>,
    injector: FaultInjector,
}

impl std::fmt::Debug for FaultyLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyLedger").field("injector", &self.injector).finish_non_exhaustive()
    }
}

fn injected(fault: InjectedFault) -> LedgerError {
    LedgerError::Storage(fault.message)
}

impl FaultyLedger {
    /// `inner` with the faults of `plan`.
    pub fn new(inner: Arc<dyn Ledger>, plan: FaultPlan) -> Self {
        Self { inner, injector: FaultInjector::new(plan) }
    }

    /// The fault decisions, counters and death switch.
    pub fn injector(&self) -> &FaultInjector {
        &self.injector
    }

    /// How many times each kind of fault fired (every kind present).
    pub fn faults_fired(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.injector.faults_fired()
    }

    /// The wrapped ledger.
    pub fn inner(&self) -> &Arc<dyn Ledger> {
        &self.inner
    }

    async fn call<T>(
        &self,
        op: &'static str,
        target: &str,
        access: Access,
        inner: impl Future<Output = Result<T, LedgerError>>,
    ) -> Result<T, LedgerError> {
        let ticket = self.injector.admit(op, target, access).map_err(injected)?;
        if let Some(delay) = ticket.slow {
            tokio::time::sleep(delay).await;
        }
        if let Some(refusal) = ticket.refusal(target) {
            return Err(injected(refusal));
        }
        let result = inner.await;
        match ticket.settle(result.is_ok(), target) {
            Some(lost) => Err(injected(lost)),
            None => result,
        }
    }
}

#[async_trait]
impl Ledger for FaultyLedger {
    async fn begin(&self, plan: &RebalancePlan) -> Result<BeginOutcome, LedgerError> {
        self.call("begin", &plan.plan_id, Access::Write, self.inner.begin(plan)).await
    }

    async fn suspend(&self, run: &RunHandle) -> Result<(), LedgerError> {
        self.call("suspend", &run.run_id, Access::Write, self.inner.suspend(run)).await
    }

    fn claim_renewal(&self) -> Option<std::time::Duration> {
        self.inner.claim_renewal()
    }

    async fn prove_claim(&self, run: &RunHandle) -> Result<ClaimProof, LedgerError> {
        self.call("prove_claim", &run.run_id, Access::Write, self.inner.prove_claim(run)).await
    }

    async fn record_intent(&self, run: &RunHandle, intent: &OrderIntent) -> Result<(), LedgerError> {
        let target = intent.client_order_id.as_str();
        self.call("record_intent", target, Access::Write, self.inner.record_intent(run, intent)).await
    }

    async fn record_order(&self, run: &RunHandle, order: &OrderRecord) -> Result<(), LedgerError> {
        let target = order.client_order_id.as_str();
        self.call("record_order", target, Access::Write, self.inner.record_order(run, order)).await
    }

    async fn record_fill(&self, run: &RunHandle, fill: &FillRecord) -> Result<FillOutcome, LedgerError> {
        self.call("record_fill", &fill.execution_id, Access::Write, self.inner.record_fill(run, fill)).await
    }

    async fn record_item(&self, run: &RunHandle, item: &ItemRecord) -> Result<(), LedgerError> {
        let target = item.item_index.to_string();
        self.call("record_item", &target, Access::Write, self.inner.record_item(run, item)).await
    }

    async fn items(&self, plan_id: &str) -> Result<Vec<ItemRecord>, LedgerError> {
        self.call("items", plan_id, Access::Read, self.inner.items(plan_id)).await
    }

    async fn finish(&self, run: &RunHandle, result: &ExecutionResult) -> Result<(), LedgerError> {
        self.call("finish", &run.run_id, Access::Write, self.inner.finish(run, result)).await
    }

    async fn runs(&self, plan_id: Option<&str>) -> Result<Vec<RunRecord>, LedgerError> {
        self.call("runs", plan_id.unwrap_or(""), Access::Read, self.inner.runs(plan_id)).await
    }

    async fn intents(&self, plan_id: &str) -> Result<Vec<OrderIntent>, LedgerError> {
        self.call("intents", plan_id, Access::Read, self.inner.intents(plan_id)).await
    }

    async fn orders(&self, plan_id: &str) -> Result<Vec<OrderRecord>, LedgerError> {
        self.call("orders", plan_id, Access::Read, self.inner.orders(plan_id)).await
    }

    async fn fills(&self, plan_id: &str) -> Result<Vec<FillRecord>, LedgerError> {
        self.call("fills", plan_id, Access::Read, self.inner.fills(plan_id)).await
    }
}
