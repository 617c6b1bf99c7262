//! The object-store ledger (S3 and compatible stores, through `object_store`): every record is
//! its own object, written as it happens, so a crash loses nothing; one worker per plan through
//! a fenced lease on a lock object (see `lease`); each finished run also written whole at
//! `trade-ledgers/YYYY/MM/DD/HHMMSS-<run id>-<correlation id>.json` (the predecessor's layout).
//!
//! Layout under the prefix: `plans/<plan key>/{lock.json, completed.json, runs/<run id>.json,
//! intents/<client order id>.json, orders/<client order id>.json, fills/<execution key>.json,
//! items/<index>.json}`; `probes/` holds the short-lived object of the proof that the store
//! honours conditional writes (see `probe`), asked before a ledger's first claim.
//!
//! Invariants: a plan is completed by one conditional create of `completed.json`, written
//! under a freshly proven lease, and `begin` looks for it again after taking the lock, so a
//! completed plan is never executed again; a crash between any two writes of `finish` leaves the
//! plan either resumable (no marker) or completed (marker; the rest is repaired by the next
//! `begin`); intents and fills are created only if absent, and a refusal is believed only once
//! the object is read back; every record is written under a proven lease (a worker that lost
//! the plan, e.g. frozen past its lease, finds out at its first write and writes nothing); transient store
//! errors are retried by the store client, and a write that finally fails is an error the engine
//! must surface.

mod lease;
mod probe;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tranche_domain::{ExecutionResult, RebalancePlan};

use lease::{Held, Taken};

use crate::model::{
    BeginOutcome, ClaimProof, FillOutcome, FillRecord, ItemRecord, LedgerError, OrderIntent, OrderRecord, RunHandle,
    RunRecord, RunStatus,
};
use crate::port::Ledger;
use crate::terms::LeaseTerms;

/// The completion marker of a plan: which run completed it, when, and its result.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Completion {
    run_id: String,
    /// The lock holder that completed the plan (the run id alone is shared by a run and its
    /// takeover).
    #[serde(default)]
    holder: String,
    finished_at: DateTime<Utc>,
    result: ExecutionResult,
}

/// `completed.json` as written by this version, or by an earlier one (the bare result).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StoredCompletion {
    Marked(Completion),
    Bare(ExecutionResult),
}

#[derive(Debug, Serialize)]
struct FinishedRun<'a> {
    schema_version: u32,
    run: &'a RunRecord,
    intents: Vec<OrderIntent>,
    orders: Vec<OrderRecord>,
    fills: Vec<FillRecord>,
}

/// What a create-if-absent came to.
enum Created {
    /// Written now.
    New,
    /// The object was there already (written earlier, by this worker or another).
    Existing,
}

/// A ledger in an object store.
pub struct ObjectLedger {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    owner: String,
    lease: LeaseTerms,
    /// Per active run: the lock this worker holds for it.
    leases: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Held>>>>,
    /// This worker's clock (lease expiry, run times): the wall clock unless a test gives it
    /// another (a simulated worker's skewed, virtual clock).
    now: TimeSource,
    /// Set once the store was shown to honour conditional writes (see `probe`).
    conditions_proven: std::sync::atomic::AtomicBool,
}

/// Where a ledger reads the time.
pub type TimeSource = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

impl std::fmt::Debug for ObjectLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectLedger").field("prefix", &self.prefix).field("owner", &self.owner).finish_non_exhaustive()
    }
}

/// The largest object read as a record (the largest, a completed plan's result, is a few MB for
/// thousands of items): a bigger one is damaged, and is not read into memory.
const MAX_RECORD_BYTES: u64 = 16 << 20;

/// Records read at once when a plan's records are listed (a store's connection pool serves more).
const READS_AT_ONCE: usize = 16;

fn storage(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Storage(without_s3_answer(&e.to_string()))
}

/// `text` with an S3 error answer (XML) cut down to its code and message: the rest of it may
/// echo the access key id and the canonical request, whose headers carry a session token.
fn without_s3_answer(text: &str) -> String {
    let Some(start) = text.find("<?xml").or_else(|| text.find("<Error>")) else { return text.to_owned() };
    let element = |name: &str| {
        let (open, close) = (format!("<{name}>"), format!("</{name}>"));
        let from = text[start..].find(&open)? + start + open.len();
        let to = text[from..].find(&close)? + from;
        Some(text[from..to].to_owned())
    };
    let code = element("Code").unwrap_or_else(|| "error".to_owned());
    let said = element("Message").map(|m| format!(": {m}")).unwrap_or_default();
    format!("{}S3 {code}{said}", &text[..start])
}

fn key(text: &str, len: usize) -> String {
    use std::fmt::Write;
    Sha256::digest(text.as_bytes())[..len].iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Object names keep `[A-Za-z0-9_.-]` and escape the rest.
fn safe(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect()
}

impl ObjectLedger {
    /// A ledger under `prefix` in `store`; `owner` names this worker in the plan lock. The lease
    /// is [`LeaseTerms::default`].
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, owner: impl Into<String>) -> Self {
        Self {
            store,
            prefix: Path::from(prefix),
            owner: owner.into(),
            lease: LeaseTerms::default(),
            leases: Mutex::new(HashMap::new()),
            now: Arc::new(Utc::now),
            conditions_proven: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The same ledger reading the time from `now` (for lease expiry and run times) instead of
    /// the wall clock: how a simulation gives each worker its own, possibly skewed, clock.
    #[must_use]
    pub fn with_time_source(mut self, now: TimeSource) -> Self {
        self.now = now;
        self
    }

    /// The same ledger with other lease terms.
    #[must_use]
    pub fn with_lease(mut self, terms: LeaseTerms) -> Self {
        self.lease = terms;
        self
    }

    fn plan_dir(&self, plan_id: &str) -> Path {
        self.prefix.child("plans").child(key(plan_id, 16))
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        path: &Path,
    ) -> Result<Option<(T, UpdateVersion)>, LedgerError> {
        match self.store.get(path).await {
            Ok(got) => {
                if got.meta.size > MAX_RECORD_BYTES {
                    return Err(LedgerError::Corrupt {
                        path: path.to_string(),
                        message: format!(
                            "{} bytes, larger than any record ({} MiB at most): not read",
                            got.meta.size,
                            MAX_RECORD_BYTES >> 20
                        ),
                    });
                }
                let version = UpdateVersion { e_tag: got.meta.e_tag.clone(), version: got.meta.version.clone() };
                let bytes = got.bytes().await.map_err(storage)?;
                let value = serde_json::from_slice(&bytes)
                    .map_err(|e| LedgerError::Corrupt { path: path.to_string(), message: e.to_string() })?;
                Ok(Some((value, version)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage(e)),
        }
    }

    async fn put_json<T: Serialize>(
        &self,
        path: &Path,
        value: &T,
        mode: PutMode,
    ) -> Result<UpdateVersion, object_store::Error> {
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| object_store::Error::Generic { store: "ledger", source: Box::new(e) })?;
        let result =
            self.store.put_opts(path, PutPayload::from(bytes), PutOptions { mode, ..PutOptions::default() }).await?;
        Ok(UpdateVersion { e_tag: result.e_tag, version: result.version })
    }

    /// Creates `path` holding `value` unless it exists. A refusal is believed only when the
    /// object is there (a store may refuse a create spuriously); a failure may have been
    /// applied, which a repeated call then finds as `Existing`.
    async fn create_once<T: Serialize>(&self, path: &Path, value: &T) -> Result<Created, LedgerError> {
        for _ in 0..4 {
            match self.put_json(path, value, PutMode::Create).await {
                Ok(_) => return Ok(Created::New),
                Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                    match self.store.head(path).await {
                        Ok(_) => return Ok(Created::Existing),
                        Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(storage(e)),
                    }
                }
                Err(e) => return Err(storage(e)),
            }
        }
        Err(LedgerError::Storage(format!("the store kept refusing to create {path}, which is not there")))
    }

    async fn list_json<T: for<'de> Deserialize<'de>>(&self, dir: &Path) -> Result<Vec<T>, LedgerError> {
        self.list_json_where(dir, |_| true).await
    }

    /// The objects under `dir` (at any depth) whose path `wanted` accepts, read in path order:
    /// one listing, and a read of each wanted object only.
    async fn list_json_where<T: for<'de> Deserialize<'de>>(
        &self,
        dir: &Path,
        wanted: impl Fn(&Path) -> bool,
    ) -> Result<Vec<T>, LedgerError> {
        use futures::StreamExt;
        let mut listing = self.store.list(Some(dir));
        let mut paths = Vec::new();
        while let Some(meta) = listing.next().await {
            let location = meta.map_err(storage)?.location;
            if wanted(&location) {
                paths.push(location);
            }
        }
        paths.sort();
        // Several reads at a time, in order: a resumed large plan has thousands of records, and
        // one GET after another at S3's latency took minutes.
        let mut reads = Vec::with_capacity(paths.len());
        for path in &paths {
            reads.push(self.get_json::<T>(path));
        }
        let read: Vec<Option<(T, UpdateVersion)>> = futures::stream::iter(reads)
            .buffered(READS_AT_ONCE)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        Ok(read.into_iter().flatten().map(|(value, _)| value).collect())
    }

    /// The lock this worker holds for `run`.
    fn held(&self, run: &RunHandle) -> Result<Arc<tokio::sync::Mutex<Held>>, LedgerError> {
        self.leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&run.run_id)
            .cloned()
            .ok_or_else(|| LedgerError::NotActive { run_id: run.run_id.clone() })
    }

    fn run_path(&self, plan_id: &str, run_id: &str) -> Path {
        self.plan_dir(plan_id).child("runs").child(format!("{}.json", safe(run_id)))
    }

    async fn run_record(&self, plan_id: &str, run_id: &str) -> Result<RunRecord, LedgerError> {
        self.get_json::<RunRecord>(&self.run_path(plan_id, run_id))
            .await?
            .map(|(r, _)| r)
            .ok_or_else(|| LedgerError::NotActive { run_id: run_id.to_owned() })
    }

    async fn write_run(&self, record: &RunRecord) -> Result<(), LedgerError> {
        self.put_json(&self.run_path(&record.plan_id, &record.run_id), record, PutMode::Overwrite)
            .await
            .map_err(storage)?;
        Ok(())
    }

    /// The plan's completion marker, if it was completed.
    async fn completion(&self, plan_id: &str) -> Result<Option<StoredCompletion>, LedgerError> {
        let path = self.plan_dir(plan_id).child("completed.json");
        Ok(self.get_json::<StoredCompletion>(&path).await?.map(|(c, _)| c))
    }

    /// Writes what follows the completion marker: the run record completed, then the run
    /// archived whole. Each is skipped when already written and is an overwrite with the same
    /// content otherwise, so repeating this after any failure is safe.
    async fn write_completed_run(&self, plan_id: &str, completion: &Completion) -> Result<(), LedgerError> {
        let mut record = self.run_record(plan_id, &completion.run_id).await?;
        if record.status != RunStatus::Completed {
            record.status = RunStatus::Completed;
            record.finished_at = Some(completion.finished_at);
            record.result = Some(completion.result.clone());
            self.write_run(&record).await?;
        }
        let archive = self.archive_path(&record, completion.finished_at);
        match self.store.head(&archive).await {
            Ok(_) => return Ok(()),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(storage(e)),
        }
        let whole = FinishedRun {
            schema_version: 1,
            run: &record,
            intents: self.intents(plan_id).await?,
            orders: self.orders(plan_id).await?,
            fills: self.fills(plan_id).await?,
        };
        self.put_json(&archive, &whole, PutMode::Overwrite).await.map_err(storage)?;
        Ok(())
    }

    /// Where a run finished at `finished_at` is archived whole (the predecessor's layout).
    fn archive_path(&self, record: &RunRecord, finished_at: DateTime<Utc>) -> Path {
        self.prefix
            .child("trade-ledgers")
            .child(finished_at.format("%Y").to_string())
            .child(finished_at.format("%m").to_string())
            .child(finished_at.format("%d").to_string())
            .child(format!(
                "{}-{}-{}.json",
                finished_at.format("%H%M%S"),
                safe(&record.run_id),
                safe(&record.correlation_id)
            ))
    }

    /// Begins under the lock just taken (`held`, in the map under its provisional run id):
    /// completed since the first look, resumed, or new.
    async fn begin_locked(
        &self,
        plan: &RebalancePlan,
        held: &Arc<tokio::sync::Mutex<Held>>,
    ) -> Result<BeginOutcome, LedgerError> {
        // A worker that held the lock may have completed the plan since the first look.
        if let Some(done) = self.completion(&plan.plan_id).await? {
            self.release(&plan.plan_id, held).await;
            return Ok(BeginOutcome::AlreadyCompleted(Box::new(self.completed_result(&plan.plan_id, done).await)));
        }
        // The runs as they are now, under the lock: an interrupted one is continued.
        let runs: Vec<RunRecord> = self.list_json(&self.plan_dir(&plan.plan_id).child("runs")).await?;
        let interrupted = runs.iter().filter(|r| r.status == RunStatus::Running).max_by_key(|r| r.started_at).cloned();
        let resumed = interrupted.is_some();
        let run_id = {
            let mut lock = held.lock().await;
            let provisional = lock.lock.run_id.clone();
            if let Some(run) = &interrupted {
                lock.lock.run_id.clone_from(&run.run_id);
            }
            let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
            leases.remove(&provisional);
            leases.insert(lock.lock.run_id.clone(), Arc::clone(held));
            lock.lock.run_id.clone()
        };
        let handle = RunHandle { run_id: run_id.clone(), plan_id: plan.plan_id.clone(), resumed };
        // The reads above may have been slow: the claim is proven again before anything is
        // written (for a resumed run, this renewal also names the run in the lock).
        if resumed {
            self.prove(&handle, tokio::time::Instant::now()).await?;
        } else {
            self.prove_current(&handle).await?;
            let record = RunRecord {
                run_id,
                plan_id: plan.plan_id.clone(),
                correlation_id: plan.correlation_id.clone(),
                started_at: (self.now)(),
                finished_at: None,
                status: RunStatus::Running,
                result: None,
                duplicate_fills: 0,
            };
            self.write_run(&record).await?;
        }
        Ok(BeginOutcome::Started(handle))
    }

    /// The result of a completed plan; a completion whose bookkeeping a crash interrupted is
    /// finished on the way (best effort: the result is the marker's either way).
    async fn completed_result(&self, plan_id: &str, done: StoredCompletion) -> ExecutionResult {
        match done {
            StoredCompletion::Bare(result) => result,
            StoredCompletion::Marked(completion) => {
                if let Err(e) = self.write_completed_run(plan_id, &completion).await {
                    tracing::warn!(error = %e, %plan_id, "could not complete the bookkeeping of the plan's finished run");
                }
                completion.result
            }
        }
    }
}

#[async_trait]
impl Ledger for ObjectLedger {
    async fn begin(&self, plan: &RebalancePlan) -> Result<BeginOutcome, LedgerError> {
        if let Some(done) = self.completion(&plan.plan_id).await? {
            return Ok(BeginOutcome::AlreadyCompleted(Box::new(self.completed_result(&plan.plan_id, done).await)));
        }
        if !self.conditions_proven.load(std::sync::atomic::Ordering::Acquire) {
            self.probe_conditional_writes().await?;
            self.conditions_proven.store(true, std::sync::atomic::Ordering::Release);
        }
        let held = match self.take_lock(&plan.plan_id, &new_run_id()).await? {
            Taken::Held(held) => Arc::new(tokio::sync::Mutex::new(held)),
            Taken::Busy(run_id) => return Ok(BeginOutcome::AlreadyRunning { run_id }),
        };
        {
            let run_id = held.lock().await.lock.run_id.clone();
            self.leases.lock().unwrap_or_else(PoisonError::into_inner).insert(run_id, Arc::clone(&held));
        }
        match self.begin_locked(plan, &held).await {
            Ok(outcome) => Ok(outcome),
            Err(e) => {
                // Not begun: the plan is free again at once, not after the lease (unless the
                // claim was lost meanwhile: then the lock is another worker's).
                self.release(&plan.plan_id, &held).await;
                Err(e)
            }
        }
    }

    async fn suspend(&self, run: &RunHandle) -> Result<(), LedgerError> {
        let held = self.held(run)?;
        self.release(&run.plan_id, &held).await;
        Ok(())
    }

    fn claim_renewal(&self) -> Option<Duration> {
        Some(self.lease.renew_every())
    }

    async fn prove_claim(&self, run: &RunHandle) -> Result<ClaimProof, LedgerError> {
        self.prove(run, tokio::time::Instant::now()).await
    }

    async fn record_intent(&self, run: &RunHandle, intent: &OrderIntent) -> Result<(), LedgerError> {
        self.prove_current(run).await?;
        let path = self
            .plan_dir(&run.plan_id)
            .child("intents")
            .child(format!("{}.json", safe(intent.client_order_id.as_str())));
        self.create_once(&path, intent).await.map(|_| ())
    }

    async fn record_order(&self, run: &RunHandle, order: &OrderRecord) -> Result<(), LedgerError> {
        self.prove_current(run).await?;
        let path =
            self.plan_dir(&run.plan_id).child("orders").child(format!("{}.json", safe(order.client_order_id.as_str())));
        self.put_json(&path, order, PutMode::Overwrite).await.map_err(storage)?;
        Ok(())
    }

    async fn record_item(&self, run: &RunHandle, item: &ItemRecord) -> Result<(), LedgerError> {
        self.prove_current(run).await?;
        let path = self.plan_dir(&run.plan_id).child("items").child(format!("{:06}.json", item.item_index));
        self.put_json(&path, item, PutMode::Overwrite).await.map_err(storage)?;
        Ok(())
    }

    async fn items(&self, plan_id: &str) -> Result<Vec<ItemRecord>, LedgerError> {
        let mut items: Vec<ItemRecord> = self.list_json(&self.plan_dir(plan_id).child("items")).await?;
        items.sort_by_key(|i| i.item_index);
        Ok(items)
    }

    async fn record_fill(&self, run: &RunHandle, fill: &FillRecord) -> Result<FillOutcome, LedgerError> {
        self.prove_current(run).await?;
        let path = self.plan_dir(&run.plan_id).child("fills").child(format!("{}.json", key(&fill.execution_id, 20)));
        match self.create_once(&path, fill).await? {
            Created::New => Ok(FillOutcome::Recorded),
            Created::Existing => {
                let mut record = self.run_record(&run.plan_id, &run.run_id).await?;
                // Counted on a running run only: never written back over its completion.
                if record.status == RunStatus::Running {
                    record.duplicate_fills += 1;
                    self.prove_current(run).await?;
                    self.write_run(&record).await?;
                }
                Ok(FillOutcome::Duplicate)
            }
        }
    }

    async fn finish(&self, run: &RunHandle, result: &ExecutionResult) -> Result<(), LedgerError> {
        // The completion is written under a freshly proven claim: a worker that lost the plan
        // cannot complete it.
        self.prove(run, tokio::time::Instant::now()).await?;
        let held = self.held(run)?;
        let holder = held.lock().await.lock.holder.clone();
        let marker = Completion {
            run_id: run.run_id.clone(),
            holder: holder.clone(),
            finished_at: (self.now)(),
            result: result.clone(),
        };
        let path = self.plan_dir(&run.plan_id).child("completed.json");
        let completion = match self.create_once(&path, &marker).await? {
            Created::New => marker,
            // Written by an earlier attempt of this finish whose answer was lost; a completion
            // by any other holder (another worker, or this run before a takeover) means the
            // plan was taken from this worker.
            Created::Existing => match self.completion(&run.plan_id).await? {
                Some(StoredCompletion::Marked(c)) if c.holder == holder => c,
                _ => return Err(LedgerError::ClaimLost { run_id: run.run_id.clone(), plan_id: run.plan_id.clone() }),
            },
        };
        // The plan is completed now. What follows is bookkeeping: tried a few times here, and
        // done by the next `begin` of the plan if it could not be (or this worker dies first).
        let mut bookkeeping = self.write_completed_run(&run.plan_id, &completion).await;
        for _ in 1..3 {
            if bookkeeping.is_ok() {
                break;
            }
            bookkeeping = self.write_completed_run(&run.plan_id, &completion).await;
        }
        if let Err(e) = bookkeeping {
            tracing::warn!(error = %e, plan_id = %run.plan_id, "the plan is completed; its run record and archive are left to the next begin");
        }
        self.release(&run.plan_id, &held).await;
        Ok(())
    }

    async fn runs(&self, plan_id: Option<&str>) -> Result<Vec<RunRecord>, LedgerError> {
        let mut runs: Vec<RunRecord> = match plan_id {
            Some(p) => self.list_json(&self.plan_dir(p).child("runs")).await?,
            // Every plan's `runs/<run id>.json`, and nothing of the records beside them.
            None => {
                let run_record = |path: &Path| {
                    let parts: Vec<_> = path.parts().collect();
                    parts.len() >= 2 && parts[parts.len() - 2].as_ref() == "runs"
                };
                self.list_json_where(&self.prefix.child("plans"), run_record).await?
            }
        };
        // A run record still `running` whose plan's completion marker names it: the record's
        // update after the marker was left to the next `begin` (a failing store); the marker
        // is the truth.
        let unfinished: std::collections::BTreeSet<String> =
            runs.iter().filter(|r| r.status == RunStatus::Running).map(|r| r.plan_id.clone()).collect();
        for plan_id in unfinished {
            if let Some(StoredCompletion::Marked(completion)) = self.completion(&plan_id).await? {
                let run = runs
                    .iter_mut()
                    .find(|r| r.plan_id == plan_id && r.run_id == completion.run_id && r.status == RunStatus::Running);
                if let Some(run) = run {
                    run.status = RunStatus::Completed;
                    run.finished_at = Some(completion.finished_at);
                    run.result = Some(completion.result);
                }
            }
        }
        runs.sort_by_key(|r| r.started_at);
        Ok(runs)
    }

    async fn intents(&self, plan_id: &str) -> Result<Vec<OrderIntent>, LedgerError> {
        let mut intents: Vec<OrderIntent> = self.list_json(&self.plan_dir(plan_id).child("intents")).await?;
        intents.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.attempt.cmp(&b.attempt)));
        Ok(intents)
    }

    async fn orders(&self, plan_id: &str) -> Result<Vec<OrderRecord>, LedgerError> {
        let mut orders: Vec<OrderRecord> = self.list_json(&self.plan_dir(plan_id).child("orders")).await?;
        orders.sort_by_key(|o| o.updated_at);
        Ok(orders)
    }

    async fn fills(&self, plan_id: &str) -> Result<Vec<FillRecord>, LedgerError> {
        let mut fills: Vec<FillRecord> = self.list_json(&self.plan_dir(plan_id).child("fills")).await?;
        fills.sort_by(|a, b| a.filled_at.cmp(&b.filled_at).then_with(|| a.execution_id.cmp(&b.execution_id)));
        Ok(fills)
    }
}

fn new_run_id() -> String {
    let now = Utc::now();
    format!(
        "{}-{}",
        now.format("%Y%m%dT%H%M%S%.6fZ"),
        key(&format!("{:?}-{}", now.timestamp_nanos_opt(), std::process::id()), 4)
    )
}

/// Where and how to reach an S3 (or S3-compatible) bucket. Unset fields come from the standard
/// AWS environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, ...).
#[derive(Clone, Default)]
pub struct S3Settings {
    /// The bucket.
    pub bucket: String,
    /// Service URL override (compatible stores, tests).
    pub endpoint: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key (never printed: `Debug` redacts it).
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id.as_ref().map(|_| "<set>"))
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// An S3 object store for the ledger with the default lease's timing (see [`s3_store_for`]).
pub fn s3_store(settings: &S3Settings) -> Result<Arc<dyn ObjectStore>, LedgerError> {
    s3_store_for(settings, LeaseTerms::default())
}

/// An S3 object store for a ledger whose lease follows `lease`: conditional writes on, and
/// every call over (its retries included) within a quarter of the lease, so that a write a
/// worker began within its acting window (half a lease) has landed or failed before anyone can
/// take the plan over (a lease plus the skew after the proof): one request times out after an
/// eighth of the lease (at least a second), transient errors are retried with backoff within
/// the quarter.
pub fn s3_store_for(settings: &S3Settings, lease: LeaseTerms) -> Result<Arc<dyn ObjectStore>, LedgerError> {
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
    use object_store::ClientConfigKey;
    let request = (lease.length() / 8).max(Duration::from_secs(1));
    let all = (lease.length() / 4).max(request);
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&settings.bucket)
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        // Set key by key: replacing the client options would drop what `from_env` read into
        // them (`AWS_ALLOW_HTTP`, proxies).
        .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), format!("{}ms", request.as_millis()))
        .with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
            format!("{}ms", request.min(Duration::from_secs(5)).as_millis()),
        )
        .with_retry(object_store::RetryConfig {
            max_retries: 5,
            retry_timeout: all,
            backoff: object_store::BackoffConfig::default(),
        });
    if let Some(url) = &settings.endpoint {
        builder = builder
            .with_endpoint(url)
            .with_allow_http(url.starts_with("http://"))
            .with_virtual_hosted_style_request(false);
    }
    if let Some(region) = &settings.region {
        builder = builder.with_region(region);
    }
    if let Some(key) = &settings.access_key_id {
        builder = builder.with_access_key_id(key);
    }
    if let Some(secret) = &settings.secret_access_key {
        builder = builder.with_secret_access_key(secret);
    }
    builder.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>).map_err(storage)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// S3's refusal of a signature echoes the access key id and the canonical request, whose
    /// headers carry a session token (Lambda's credentials): the ledger's error keeps the
    /// request and S3's code and message, never the rest of the answer.
    #[test]
    fn a_storage_error_never_carries_s3s_echo_of_the_credentials() {
        let answer = "Error performing PUT https://bucket.s3.amazonaws.com/ledger/plans/x/lock.json in 120ms - \
            Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
            <Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match \
            the signature you provided.</Message><AWSAccessKeyId>ASIAEXAMPLEKEYID</AWSAccessKeyId>\
            <CanonicalRequest>PUT\n/ledger/plans/x/lock.json\n\nx-amz-security-token:IQoJb3JpZ2luX2VjEXAMPLETOKEN\n\
            </CanonicalRequest><RequestId>4442587FB7D0A2F9</RequestId></Error>";
        let LedgerError::Storage(message) = storage(answer) else { panic!("a storage error") };
        assert!(!message.contains("ASIAEXAMPLEKEYID") && !message.contains("EXAMPLETOKEN"), "{message}");
        assert!(message.starts_with("Error performing PUT https://bucket.s3.amazonaws.com/"), "{message}");
        assert!(message.ends_with("403 Forbidden: S3 SignatureDoesNotMatch: The request signature we calculated does not match the signature you provided."), "{message}");
        let LedgerError::Storage(plain) = storage("connection refused") else { panic!("a storage error") };
        assert_eq!(plain, "connection refused");
    }
}
