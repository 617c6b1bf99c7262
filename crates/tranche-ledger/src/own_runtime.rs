//! A ledger that does its I/O on a runtime of its own: every call runs as a task on a dedicated
//! real-time tokio runtime (network and timers enabled). This is how a ledger that talks to the
//! network (S3) serves an engine whose runtime has no I/O driver or runs in virtual time (the
//! embedded simulator's paused clock, where a request timeout would otherwise fire at once).
//!
//! A caller in real time awaits the answer ([`OnOwnRuntime::new`]). A caller in virtual time
//! ([`OnOwnRuntime::for_virtual_time`]) has its thread wait for it: a paused tokio runtime whose
//! tasks all wait jumps to its next timer, so awaiting would let simulated time run on during
//! every write (and a lease's renewals pile up); blocking the simulation's thread makes ledger
//! I/O take no virtual time, as the simulation's other ports do.
//!
//! Invariants: every call is forwarded unchanged to the inner ledger and its answer returned
//! unchanged; a call the dedicated runtime cannot complete (it was shut down) is a storage error,
//! never a panic; dropping the wrapper shuts the runtime down without blocking the caller.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use tranche_domain::{ExecutionResult, RebalancePlan};

use crate::model::{
    BeginOutcome, ClaimProof, FillOutcome, FillRecord, ItemRecord, LedgerError, OrderIntent, OrderRecord, RunHandle,
    RunRecord,
};
use crate::port::Ledger;

/// A ledger whose calls run on its own runtime (see the module documentation).
pub struct OnOwnRuntime {
    inner: Arc<dyn Ledger>,
    runtime: Option<tokio::runtime::Runtime>,
    /// The caller's thread waits for each answer (a caller in virtual time).
    block: bool,
}

impl std::fmt::Debug for OnOwnRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnOwnRuntime").finish_non_exhaustive()
    }
}

impl OnOwnRuntime {
    /// `inner`, served from a new runtime with one worker thread; callers await the answers.
    pub fn new(inner: Arc<dyn Ledger>) -> Result<Self, LedgerError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tranche-ledger")
            .enable_all()
            .build()
            .map_err(|e| LedgerError::Storage(format!("cannot start the ledger's runtime: {e}")))?;
        Ok(Self { inner, runtime: Some(runtime), block: false })
    }

    /// `inner`, served from a new runtime, for a caller in virtual time: the caller's thread
    /// waits for each answer, so no simulated time passes during ledger I/O.
    pub fn for_virtual_time(inner: Arc<dyn Ledger>) -> Result<Self, LedgerError> {
        let mut ledger = Self::new(inner)?;
        ledger.block = true;
        Ok(ledger)
    }

    /// Runs `call` on the inner ledger, on the dedicated runtime.
    async fn on_runtime<T, F>(&self, call: impl FnOnce(Arc<dyn Ledger>) -> F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, LedgerError>> + Send + 'static,
    {
        let Some(runtime) = &self.runtime else {
            return Err(LedgerError::Storage("the ledger's runtime has stopped".into()));
        };
        let stopped =
            |e: &dyn std::fmt::Display| LedgerError::Storage(format!("the ledger's runtime stopped the call: {e}"));
        if self.block {
            let (answer, wait) = std::sync::mpsc::channel();
            let work = call(Arc::clone(&self.inner));
            runtime.spawn(async move {
                // The caller waits on the other end; it cannot have gone away.
                let _ = answer.send(work.await);
            });
            return wait.recv().map_err(|e| stopped(&e))?;
        }
        runtime.spawn(call(Arc::clone(&self.inner))).await.map_err(|e| stopped(&e))?
    }
}

impl Drop for OnOwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Dropping a runtime blocks until its tasks end, which an async caller must not do.
            runtime.shutdown_background();
        }
    }
}

#[async_trait]
impl Ledger for OnOwnRuntime {
    async fn begin(&self, plan: &RebalancePlan) -> Result<BeginOutcome, LedgerError> {
        let plan = plan.clone();
        self.on_runtime(|l| async move { l.begin(&plan).await }).await
    }

    async fn suspend(&self, run: &RunHandle) -> Result<(), LedgerError> {
        let run = run.clone();
        self.on_runtime(|l| async move { l.suspend(&run).await }).await
    }

    fn claim_renewal(&self) -> Option<std::time::Duration> {
        self.inner.claim_renewal()
    }

    async fn prove_claim(&self, run: &RunHandle) -> Result<ClaimProof, LedgerError> {
        let run = run.clone();
        self.on_runtime(|l| async move { l.prove_claim(&run).await }).await
    }

    async fn record_intent(&self, run: &RunHandle, intent: &OrderIntent) -> Result<(), LedgerError> {
        let (run, intent) = (run.clone(), intent.clone());
        self.on_runtime(|l| async move { l.record_intent(&run, &intent).await }).await
    }

    async fn record_order(&self, run: &RunHandle, order: &OrderRecord) -> Result<(), LedgerError> {
        let (run, order) = (run.clone(), order.clone());
        self.on_runtime(|l| async move { l.record_order(&run, &order).await }).await
    }

    async fn record_fill(&self, run: &RunHandle, fill: &FillRecord) -> Result<FillOutcome, LedgerError> {
        let (run, fill) = (run.clone(), fill.clone());
        self.on_runtime(|l| async move { l.record_fill(&run, &fill).await }).await
    }

    async fn record_item(&self, run: &RunHandle, item: &ItemRecord) -> Result<(), LedgerError> {
        let (run, item) = (run.clone(), item.clone());
        self.on_runtime(|l| async move { l.record_item(&run, &item).await }).await
    }

    async fn items(&self, plan_id: &str) -> Result<Vec<ItemRecord>, LedgerError> {
        let plan_id = plan_id.to_owned();
        self.on_runtime(|l| async move { l.items(&plan_id).await }).await
    }

    async fn finish(&self, run: &RunHandle, result: &ExecutionResult) -> Result<(), LedgerError> {
        let (run, result) = (run.clone(), result.clone());
        self.on_runtime(|l| async move { l.finish(&run, &result).await }).await
    }

    async fn runs(&self, plan_id: Option<&str>) -> Result<Vec<RunRecord>, LedgerError> {
        let plan_id = plan_id.map(str::to_owned);
        self.on_runtime(|l| async move { l.runs(plan_id.as_deref()).await }).await
    }

    async fn intents(&self, plan_id: &str) -> Result<Vec<OrderIntent>, LedgerError> {
        let plan_id = plan_id.to_owned();
        self.on_runtime(|l| async move { l.intents(&plan_id).await }).await
    }

    async fn orders(&self, plan_id: &str) -> Result<Vec<OrderRecord>, LedgerError> {
        let plan_id = plan_id.to_owned();
        self.on_runtime(|l| async move { l.orders(&plan_id).await }).await
    }

    async fn fills(&self, plan_id: &str) -> Result<Vec<FillRecord>, LedgerError> {
        let plan_id = plan_id.to_owned();
        self.on_runtime(|l| async move { l.fills(&plan_id).await }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ledger whose every call needs a runtime with timers and I/O: it sleeps on tokio's
    /// clock and binds a socket.
    struct NeedsIo;

    #[async_trait]
    impl Ledger for NeedsIo {
        async fn begin(&self, _plan: &RebalancePlan) -> Result<BeginOutcome, LedgerError> {
            Err(LedgerError::Storage("not used".into()))
        }
        async fn record_intent(&self, _run: &RunHandle, _intent: &OrderIntent) -> Result<(), LedgerError> {
            Ok(())
        }
        async fn record_order(&self, _run: &RunHandle, _order: &OrderRecord) -> Result<(), LedgerError> {
            Ok(())
        }
        async fn record_fill(&self, _run: &RunHandle, _fill: &FillRecord) -> Result<FillOutcome, LedgerError> {
            Ok(FillOutcome::Recorded)
        }
        async fn record_item(&self, _run: &RunHandle, _item: &ItemRecord) -> Result<(), LedgerError> {
            Ok(())
        }
        async fn items(&self, _plan_id: &str) -> Result<Vec<ItemRecord>, LedgerError> {
            Ok(Vec::new())
        }
        async fn finish(&self, _run: &RunHandle, _result: &ExecutionResult) -> Result<(), LedgerError> {
            Ok(())
        }
        async fn runs(&self, plan_id: Option<&str>) -> Result<Vec<RunRecord>, LedgerError> {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            let socket =
                tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| LedgerError::Storage(e.to_string()))?;
            drop(socket);
            Err(LedgerError::Storage(format!("served {plan_id:?} with I/O")))
        }
        async fn intents(&self, _plan_id: &str) -> Result<Vec<OrderIntent>, LedgerError> {
            Ok(Vec::new())
        }
        async fn orders(&self, _plan_id: &str) -> Result<Vec<OrderRecord>, LedgerError> {
            Ok(Vec::new())
        }
        async fn fills(&self, _plan_id: &str) -> Result<Vec<FillRecord>, LedgerError> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn a_ledger_needing_io_serves_a_caller_in_paused_time_without_io() {
        // The embedded simulator's runtime: virtual time, no I/O driver.
        let caller = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let ledger = OnOwnRuntime::new(Arc::new(NeedsIo)).unwrap();
        let answer = caller.block_on(ledger.runs(Some("p1"))).unwrap_err();
        assert_eq!(answer.to_string(), LedgerError::Storage("served Some(\"p1\") with I/O".into()).to_string());
        caller.block_on(async { drop(ledger) });
    }

    #[test]
    fn in_virtual_time_no_simulated_time_passes_while_the_ledger_works() {
        let caller = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        for (ledger, frozen) in [
            (OnOwnRuntime::for_virtual_time(Arc::new(NeedsIo)).unwrap(), true),
            (OnOwnRuntime::new(Arc::new(NeedsIo)).unwrap(), false),
        ] {
            let elapsed = caller.block_on(async {
                // A timer an hour away, as the engine always has one pending.
                let _timer = tokio::spawn(tokio::time::sleep(std::time::Duration::from_secs(3600)));
                let start = tokio::time::Instant::now();
                let _ = ledger.runs(None).await;
                start.elapsed()
            });
            assert_eq!(elapsed.is_zero(), frozen, "{elapsed:?}");
        }
    }
}
