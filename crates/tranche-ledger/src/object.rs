//! The object-store ledger (S3 and compatible stores, through `object_store`): every record is
//! its own object, written as it happens, so a crash loses nothing; one worker per plan through
//! a lease object taken by conditional create and renewed by conditional update; each finished
//! run also written whole at `trade-ledgers/YYYY/MM/DD/HHMMSS-<run id>-<correlation id>.json`
//! (the predecessor's layout).
//!
//! Layout under the prefix: `plans/<plan key>/{lock.json, completed.json, runs/<run id>.json,
//! intents/<client order id>.json, orders/<client order id>.json, fills/<execution key>.json}`.
//!
//! Invariants: a fill object is created only if absent (duplicates are detected by the store,
//! even across workers); the lock is only ever changed by conditional writes; transient store
//! errors are retried by the store client with backoff, and a write that finally fails is an
//! error the engine must surface (the run fails loudly).

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

use crate::model::{
    BeginOutcome, FillOutcome, FillRecord, ItemRecord, LedgerError, OrderIntent, OrderRecord, RunHandle, RunRecord,
    RunStatus,
};
use crate::port::Ledger;

/// How long a worker's claim on a plan lasts without a heartbeat (default).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Lock {
    run_id: String,
    owner: String,
    expires_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
struct FinishedRun<'a> {
    schema_version: u32,
    run: &'a RunRecord,
    intents: Vec<OrderIntent>,
    orders: Vec<OrderRecord>,
    fills: Vec<FillRecord>,
}

/// A ledger in an object store.
pub struct ObjectLedger {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    owner: String,
    lease: Duration,
    /// Per active run: the lock's version, for conditional renewal.
    locks: Mutex<HashMap<String, UpdateVersion>>,
    /// This worker's clock (lease expiry, run times): the wall clock unless a test gives it
    /// another (a simulated worker's skewed, virtual clock).
    now: TimeSource,
}

/// Where a ledger reads the time.
pub type TimeSource = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

impl std::fmt::Debug for ObjectLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectLedger").field("prefix", &self.prefix).field("owner", &self.owner).finish_non_exhaustive()
    }
}

fn storage(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Storage(e.to_string())
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
    /// A ledger under `prefix` in `store`; `owner` names this worker in the plan lock.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, owner: impl Into<String>) -> Self {
        Self {
            store,
            prefix: Path::from(prefix),
            owner: owner.into(),
            lease: DEFAULT_LEASE,
            locks: Mutex::new(HashMap::new()),
            now: Arc::new(Utc::now),
        }
    }

    /// The same ledger reading the time from `now` (for lease expiry and run times) instead of
    /// the wall clock: how a simulation gives each worker its own, possibly skewed, clock.
    #[must_use]
    pub fn with_time_source(mut self, now: TimeSource) -> Self {
        self.now = now;
        self
    }

    /// The same ledger with another lease length.
    #[must_use]
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
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
    ) -> Result<Option<UpdateVersion>, object_store::Error> {
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| object_store::Error::Generic { store: "ledger", source: Box::new(e) })?;
        let result =
            self.store.put_opts(path, PutPayload::from(bytes), PutOptions { mode, ..PutOptions::default() }).await?;
        Ok(Some(UpdateVersion { e_tag: result.e_tag, version: result.version }))
    }

    async fn list_json<T: for<'de> Deserialize<'de>>(&self, dir: &Path) -> Result<Vec<T>, LedgerError> {
        use futures::StreamExt;
        let mut listing = self.store.list(Some(dir));
        let mut paths = Vec::new();
        while let Some(meta) = listing.next().await {
            paths.push(meta.map_err(storage)?.location);
        }
        paths.sort();
        let mut out = Vec::with_capacity(paths.len());
        for path in paths {
            if let Some((value, _)) = self.get_json(&path).await? {
                out.push(value);
            }
        }
        Ok(out)
    }

    fn new_lock(&self, run_id: &str) -> Lock {
        let lease = chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::seconds(60));
        Lock { run_id: run_id.to_owned(), owner: self.owner.clone(), expires_at: (self.now)() + lease }
    }

    fn remember(&self, run_id: &str, version: Option<UpdateVersion>) {
        if let Some(v) = version {
            self.locks.lock().unwrap_or_else(PoisonError::into_inner).insert(run_id.to_owned(), v);
        }
    }

    fn version_of(&self, run: &RunHandle) -> Result<UpdateVersion, LedgerError> {
        self.locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&run.run_id)
            .cloned()
            .ok_or_else(|| LedgerError::NotActive { run_id: run.run_id.clone() })
    }

    async fn run_record(&self, plan_id: &str, run_id: &str) -> Result<RunRecord, LedgerError> {
        let path = self.plan_dir(plan_id).child("runs").child(format!("{}.json", safe(run_id)));
        self.get_json::<RunRecord>(&path)
            .await?
            .map(|(r, _)| r)
            .ok_or_else(|| LedgerError::NotActive { run_id: run_id.to_owned() })
    }

    async fn write_run(&self, record: &RunRecord) -> Result<(), LedgerError> {
        let path = self.plan_dir(&record.plan_id).child("runs").child(format!("{}.json", safe(&record.run_id)));
        self.put_json(&path, record, PutMode::Overwrite).await.map_err(storage)?;
        Ok(())
    }
}

#[async_trait]
impl Ledger for ObjectLedger {
    async fn begin(&self, plan: &RebalancePlan) -> Result<BeginOutcome, LedgerError> {
        let dir = self.plan_dir(&plan.plan_id);
        if let Some((result, _)) = self.get_json::<ExecutionResult>(&dir.child("completed.json")).await? {
            return Ok(BeginOutcome::AlreadyCompleted(Box::new(result)));
        }
        let runs: Vec<RunRecord> = self.list_json(&dir.child("runs")).await?;
        let interrupted = runs.iter().filter(|r| r.status == RunStatus::Running).max_by_key(|r| r.started_at).cloned();
        let run_id = interrupted.as_ref().map_or_else(new_run_id, |r| r.run_id.clone());
        let lock_path = dir.child("lock.json");
        let taken = match self.get_json::<Lock>(&lock_path).await? {
            None => self.put_json(&lock_path, &self.new_lock(&run_id), PutMode::Create).await,
            Some((lock, _)) if lock.expires_at > (self.now)() => {
                return Ok(BeginOutcome::AlreadyRunning { run_id: lock.run_id })
            }
            // An expired lease: its worker is gone. Take it over, unless someone else just did.
            Some((_, version)) => self.put_json(&lock_path, &self.new_lock(&run_id), PutMode::Update(version)).await,
        };
        match taken {
            Ok(version) => self.remember(&run_id, version),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                let holder =
                    self.get_json::<Lock>(&lock_path).await?.map_or_else(|| "(unknown)".to_owned(), |(l, _)| l.run_id);
                return Ok(BeginOutcome::AlreadyRunning { run_id: holder });
            }
            Err(e) => return Err(storage(e)),
        }
        let resumed = interrupted.is_some();
        if !resumed {
            let record = RunRecord {
                run_id: run_id.clone(),
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
        Ok(BeginOutcome::Started(RunHandle { run_id, plan_id: plan.plan_id.clone(), resumed }))
    }

    async fn heartbeat(&self, run: &RunHandle) -> Result<(), LedgerError> {
        let version = self.version_of(run)?;
        let lock_path = self.plan_dir(&run.plan_id).child("lock.json");
        match self.put_json(&lock_path, &self.new_lock(&run.run_id), PutMode::Update(version)).await {
            Ok(v) => {
                self.remember(&run.run_id, v);
                Ok(())
            }
            Err(object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }) => {
                Err(LedgerError::Storage(format!("run {} lost its claim on plan {}", run.run_id, run.plan_id)))
            }
            Err(e) => Err(storage(e)),
        }
    }

    async fn record_intent(&self, run: &RunHandle, intent: &OrderIntent) -> Result<(), LedgerError> {
        self.version_of(run)?;
        let path = self
            .plan_dir(&run.plan_id)
            .child("intents")
            .child(format!("{}.json", safe(intent.client_order_id.as_str())));
        match self.put_json(&path, intent, PutMode::Create).await {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(storage(e)),
        }
    }

    async fn record_order(&self, run: &RunHandle, order: &OrderRecord) -> Result<(), LedgerError> {
        self.version_of(run)?;
        let path =
            self.plan_dir(&run.plan_id).child("orders").child(format!("{}.json", safe(order.client_order_id.as_str())));
        self.put_json(&path, order, PutMode::Overwrite).await.map_err(storage)?;
        Ok(())
    }

    async fn record_item(&self, run: &RunHandle, item: &ItemRecord) -> Result<(), LedgerError> {
        self.version_of(run)?;
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
        self.version_of(run)?;
        let path = self.plan_dir(&run.plan_id).child("fills").child(format!("{}.json", key(&fill.execution_id, 20)));
        match self.put_json(&path, fill, PutMode::Create).await {
            Ok(_) => Ok(FillOutcome::Recorded),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                let mut record = self.run_record(&run.plan_id, &run.run_id).await?;
                record.duplicate_fills += 1;
                self.write_run(&record).await?;
                Ok(FillOutcome::Duplicate)
            }
            Err(e) => Err(storage(e)),
        }
    }

    async fn finish(&self, run: &RunHandle, result: &ExecutionResult) -> Result<(), LedgerError> {
        self.version_of(run)?;
        let dir = self.plan_dir(&run.plan_id);
        let mut record = self.run_record(&run.plan_id, &run.run_id).await?;
        let finished_at = (self.now)();
        record.status = RunStatus::Completed;
        record.finished_at = Some(finished_at);
        record.result = Some(result.clone());
        let whole = FinishedRun {
            schema_version: 1,
            run: &record,
            intents: self.intents(&run.plan_id).await?,
            orders: self.orders(&run.plan_id).await?,
            fills: self.fills(&run.plan_id).await?,
        };
        let archive = self
            .prefix
            .child("trade-ledgers")
            .child(finished_at.format("%Y").to_string())
            .child(finished_at.format("%m").to_string())
            .child(finished_at.format("%d").to_string())
            .child(format!(
                "{}-{}-{}.json",
                finished_at.format("%H%M%S"),
                safe(&run.run_id),
                safe(&record.correlation_id)
            ));
        self.put_json(&archive, &whole, PutMode::Overwrite).await.map_err(storage)?;
        match self.put_json(&dir.child("completed.json"), result, PutMode::Create).await {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(storage(e)),
        }
        self.write_run(&record).await?;
        // Release the plan; a failure here only delays the next run until the lease ends.
        if let Err(e) = self.store.delete(&dir.child("lock.json")).await {
            tracing::warn!(error = %e, plan_id = %run.plan_id, "could not release the plan lock");
        }
        self.locks.lock().unwrap_or_else(PoisonError::into_inner).remove(&run.run_id);
        Ok(())
    }

    async fn runs(&self, plan_id: Option<&str>) -> Result<Vec<RunRecord>, LedgerError> {
        let mut runs: Vec<RunRecord> = match plan_id {
            Some(p) => self.list_json(&self.plan_dir(p).child("runs")).await?,
            None => {
                let all: Vec<serde_json::Value> = self.list_json(&self.prefix.child("plans")).await.unwrap_or_default();
                all.into_iter().filter_map(|v| serde_json::from_value::<RunRecord>(v).ok()).collect()
            }
        };
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

/// An S3 object store for the ledger: conditional writes on, transient errors retried with
/// backoff by the client (5 attempts within 60 s).
pub fn s3_store(settings: &S3Settings) -> Result<Arc<dyn ObjectStore>, LedgerError> {
    use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&settings.bucket)
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_retry(object_store::RetryConfig {
            max_retries: 5,
            retry_timeout: Duration::from_secs(60),
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
