//! The SQLite ledger: one file in WAL mode with `synchronous = FULL` (a commit is on disk when it
//! returns), a versioned schema, and one live worker per plan through an operating-system lock
//! on a sidecar file, which the kernel releases when a worker dies (so a crashed run can be
//! resumed at once, and two live workers never run the same plan).
//!
//! Invariants: every write is one transaction; fills are unique on execution id within their
//! plan; a completed run is never reopened; each schema step is applied once, under the write
//! lock, however many processes open the file at once.

mod schema;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use tranche_domain::{ClientOrderId, ExecutionResult, OrderStatus, RebalancePlan, Symbol};

use crate::model::{
    BeginOutcome, ClaimProof, FillOutcome, FillRecord, ItemRecord, LedgerError, OrderIntent, OrderRecord, RunHandle,
    RunRecord, RunStatus,
};
use crate::port::Ledger;
use schema::{latest_version, APPLICATION_ID, MIGRATIONS};

/// A ledger in one SQLite file. Its calls block on disk I/O (a durable commit waits for the
/// disk), so each runs on tokio's blocking pool, off the async runtime's threads; called
/// outside a tokio runtime, a call runs on the caller's thread.
pub struct SqliteLedger {
    db: Arc<Db>,
}

/// The database, its connection and the plan locks this process holds.
struct Db {
    path: PathBuf,
    /// The file's one name (links and `.` resolved): the plans' locks are named after it, so
    /// that the same file opened under another name shares them.
    real_path: PathBuf,
    conn: Mutex<Connection>,
    locks: Mutex<HashMap<String, File>>,
}

impl std::fmt::Debug for SqliteLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteLedger").field("path", &self.db.path).finish_non_exhaustive()
    }
}

fn storage(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Storage(e.to_string())
}

/// Runs a query and reads every row with `row`.
fn select_all<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, LedgerError> {
    let mut stmt = conn.prepare(sql).map_err(storage)?;
    let rows = stmt.query_map(params, row).map_err(storage)?.collect::<Result<Vec<_>, _>>().map_err(storage);
    rows
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// A `runs` row as read: id, plan, correlation, started, finished, status, result, duplicates.
type RawRun = (String, String, String, String, Option<String>, String, Option<String>, i64);

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn parse_ts(text: &str) -> Result<DateTime<Utc>, LedgerError> {
    DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).map_err(storage)
}

fn parse<T: std::str::FromStr>(text: &str) -> Result<T, LedgerError>
where
    T::Err: std::fmt::Display,
{
    text.parse::<T>().map_err(|e| LedgerError::Storage(format!("unreadable value `{text}`: {e}")))
}

/// Creates the ledger file readable and writable by its owner only, when it is not there yet
/// (it holds the account's orders, fills and results; SQLite's own default lets every local
/// user read it, and its `-wal` and `-shm` files take the database file's mode).
fn private_file(path: &Path) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Puts the file in WAL mode. Switching needs the file to itself, and SQLite answers "database
/// is locked" at once, without waiting, while another process opening it at the same moment
/// makes the schema: asked again, 50 ms apart, for up to ten seconds (the busy timeout).
fn wal_mode(conn: &Connection) -> rusqlite::Result<()> {
    let mut tries = 0;
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(())) {
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::DatabaseBusy && tries < 200 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            done => return done,
        }
    }
}

impl SqliteLedger {
    /// Opens (creating if absent) the ledger at `path`, migrating it to the latest schema.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, LedgerError> {
        let path = path.as_ref().to_path_buf();
        let shown = path.display().to_string();
        let corrupt = |e: rusqlite::Error| LedgerError::Corrupt { path: shown.clone(), message: e.to_string() };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
            return Err(LedgerError::Storage(format!(
                "cannot create the ledger {shown}: the directory {} does not exist (create it, or choose another path)",
                dir.display()
            )));
        }
        private_file(&path).map_err(storage)?;
        let conn = Connection::open(&path).map_err(corrupt)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(corrupt)?;
        // Reading the header is the first access: a file that is not a database fails here. One
        // snapshot: another process may be making the schema meanwhile.
        let (app_id, version, tables): (i64, i64, i64) = {
            let tx = conn.unchecked_transaction().map_err(corrupt)?;
            let app_id = tx.query_row("PRAGMA application_id", [], |r| r.get(0)).map_err(corrupt)?;
            let version = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(corrupt)?;
            let tables = tx.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0)).map_err(corrupt)?;
            tx.commit().map_err(corrupt)?;
            (app_id, version, tables)
        };
        if app_id != APPLICATION_ID && (tables > 0 || version != 0) {
            return Err(LedgerError::Foreign {
                path: shown,
                message: format!("application id {app_id:#x}, {tables} schema objects"),
            });
        }
        if version > latest_version() {
            return Err(LedgerError::TooNew { path: shown, found: version, supported: latest_version() });
        }
        wal_mode(&conn).map_err(corrupt)?;
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;").map_err(corrupt)?;
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(version).unwrap_or(0)) {
            let next = i64::try_from(index + 1).unwrap_or(i64::MAX);
            // Each step under the write lock, the version read again inside it: a process
            // opening the file at the same moment may have applied it since the first read.
            let tx = rusqlite::Transaction::new_unchecked(&conn, rusqlite::TransactionBehavior::Immediate)
                .map_err(corrupt)?;
            let now: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(corrupt)?;
            if now >= next {
                tx.commit().map_err(corrupt)?;
                continue;
            }
            tx.execute_batch(sql).map_err(corrupt)?;
            tx.execute_batch(&format!("PRAGMA user_version = {next}; PRAGMA application_id = {APPLICATION_ID};"))
                .map_err(corrupt)?;
            tx.commit().map_err(corrupt)?;
        }
        let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(corrupt)?;
        if check != "ok" {
            return Err(LedgerError::Corrupt { path: shown, message: check });
        }
        let real_path = std::fs::canonicalize(&path).map_err(storage)?;
        Ok(Self { db: Arc::new(Db { path, real_path, conn: Mutex::new(conn), locks: Mutex::new(HashMap::new()) }) })
    }

    /// The ledger file.
    pub fn path(&self) -> &Path {
        &self.db.path
    }

    /// Runs `call` on the database off the async runtime (on its blocking pool), or on this
    /// thread outside a tokio runtime.
    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Db) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let db = Arc::clone(&self.db);
        if tokio::runtime::Handle::try_current().is_err() {
            return call(&db);
        }
        tokio::task::spawn_blocking(move || call(&db))
            .await
            .map_err(|e| LedgerError::Storage(format!("the ledger's call was lost: {e}")))?
    }
}

impl Db {
    fn conn(&self) -> MutexGuard<'_, Connection> {
        // rusqlite's connection stays usable after a panic elsewhere; transactions roll back.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_path(&self, plan_id: &str) -> PathBuf {
        let digest = Sha256::digest(plan_id.as_bytes());
        let name = hex(&digest[..12]);
        let mut dir = self.real_path.clone().into_os_string();
        dir.push(".locks");
        PathBuf::from(dir).join(format!("{name}.lock"))
    }

    /// Takes the plan's lock; `false` when another live worker holds it.
    fn try_lock_plan(&self, plan_id: &str) -> Result<bool, LedgerError> {
        let path = self.lock_path(plan_id);
        if let Some(dir) = path.parent() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir).map_err(storage)?;
        }
        let mut options = OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path).map_err(storage)?;
        match file.try_lock() {
            Ok(()) => {
                self.locks.lock().unwrap_or_else(PoisonError::into_inner).insert(plan_id.to_owned(), file);
                Ok(true)
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(e)) => Err(storage(e)),
        }
    }

    fn unlock_plan(&self, plan_id: &str) {
        // Dropping the file releases the lock.
        self.locks.lock().unwrap_or_else(PoisonError::into_inner).remove(plan_id);
    }

    fn new_run_id() -> String {
        let now = Utc::now();
        let nanos = now.timestamp_nanos_opt().unwrap_or_default();
        let digest =
            Sha256::digest(format!("{nanos}-{}-{:?}", std::process::id(), std::thread::current().id()).as_bytes());
        let tag = hex(&digest[..4]);
        format!("{}-{tag}", now.format("%Y%m%dT%H%M%S%.6fZ"))
    }

    fn read_run(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRun> {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?, row.get(7)?))
    }

    fn to_run(
        raw: (String, String, String, String, Option<String>, String, Option<String>, i64),
    ) -> Result<RunRecord, LedgerError> {
        let (run_id, plan_id, correlation_id, started_at, finished_at, status, result, duplicates) = raw;
        Ok(RunRecord {
            run_id,
            plan_id,
            correlation_id,
            started_at: parse_ts(&started_at)?,
            finished_at: finished_at.as_deref().map(parse_ts).transpose()?,
            status: if status == "completed" { RunStatus::Completed } else { RunStatus::Running },
            result: result.as_deref().map(serde_json::from_str::<ExecutionResult>).transpose().map_err(storage)?,
            duplicate_fills: u64::try_from(duplicates).unwrap_or(0),
        })
    }

    /// This process still holds the plan's lock as the plan's lock file names it: the file it
    /// locked is the one at the lock's path (a lock file deleted, and another made and locked by
    /// a second worker, leaves this one holding a lock nobody else sees).
    fn holds_lock(&self, run: &RunHandle) -> Result<(), LedgerError> {
        let lost = || LedgerError::ClaimLost { run_id: run.run_id.clone(), plan_id: run.plan_id.clone() };
        let locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(held) = locks.get(&run.plan_id) else { return Err(lost()) };
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let mine = held.metadata().map_err(storage)?;
            match std::fs::metadata(self.lock_path(&run.plan_id)) {
                Ok(now) if now.dev() == mine.dev() && now.ino() == mine.ino() => {}
                _ => return Err(lost()),
            }
        }
        #[cfg(not(unix))]
        let _ = held;
        Ok(())
    }

    /// The run is running, and this process still holds its plan (see [`Db::holds_lock`]).
    fn active(&self, conn: &Connection, run: &RunHandle) -> Result<(), LedgerError> {
        let status: Option<String> = conn
            .query_row("SELECT status FROM runs WHERE run_id = ?1", [&run.run_id], |r| r.get(0))
            .optional()
            .map_err(storage)?;
        match status.as_deref() {
            Some("running") => self.holds_lock(run),
            _ => Err(LedgerError::NotActive { run_id: run.run_id.clone() }),
        }
    }
}

const RUN_COLUMNS: &str =
    "run_id, plan_id, correlation_id, started_at, finished_at, status, result_json, duplicate_fills";

/// The ledger's calls, each blocking its thread for the time of its transaction.
impl Db {
    fn begin(&self, plan: &RebalancePlan) -> Result<BeginOutcome, LedgerError> {
        let plan_id = plan.plan_id.as_str();
        let completed = |conn: &Connection| -> Result<Option<ExecutionResult>, LedgerError> {
            let text: Option<String> = conn
                .query_row(
                    "SELECT result_json FROM runs WHERE plan_id = ?1 AND status = 'completed' ORDER BY finished_at DESC LIMIT 1",
                    [plan_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(storage)?;
            text.map(|t| serde_json::from_str(&t).map_err(storage)).transpose()
        };
        if !self.try_lock_plan(plan_id)? {
            let conn = self.conn();
            if let Some(result) = completed(&conn)? {
                return Ok(BeginOutcome::AlreadyCompleted(Box::new(result)));
            }
            let run_id: Option<String> = conn
                .query_row("SELECT run_id FROM runs WHERE plan_id = ?1 AND status = 'running' ORDER BY started_at DESC LIMIT 1", [plan_id], |r| r.get(0))
                .optional()
                .map_err(storage)?;
            return Ok(BeginOutcome::AlreadyRunning { run_id: run_id.unwrap_or_else(|| "(starting)".into()) });
        }
        let outcome = (|| {
            let conn = self.conn();
            if let Some(result) = completed(&conn)? {
                return Ok(BeginOutcome::AlreadyCompleted(Box::new(result)));
            }
            let interrupted: Option<String> = conn
                .query_row("SELECT run_id FROM runs WHERE plan_id = ?1 AND status = 'running' ORDER BY started_at DESC LIMIT 1", [plan_id], |r| r.get(0))
                .optional()
                .map_err(storage)?;
            if let Some(run_id) = interrupted {
                // We hold the plan's lock, so the worker of that run is gone: continue it.
                return Ok(BeginOutcome::Started(RunHandle { run_id, plan_id: plan_id.to_owned(), resumed: true }));
            }
            let run_id = Self::new_run_id();
            let plan_json = serde_json::to_string(plan).map_err(storage)?;
            conn.execute(
                "INSERT INTO runs (run_id, plan_id, correlation_id, started_at, status, plan_json) VALUES (?1, ?2, ?3, ?4, 'running', ?5)",
                params![run_id, plan_id, plan.correlation_id, ts(Utc::now()), plan_json],
            )
            .map_err(storage)?;
            Ok(BeginOutcome::Started(RunHandle { run_id, plan_id: plan_id.to_owned(), resumed: false }))
        })();
        if !matches!(outcome, Ok(BeginOutcome::Started(_))) {
            self.unlock_plan(plan_id);
        }
        outcome
    }

    fn record_intent(&self, run: &RunHandle, intent: &OrderIntent) -> Result<(), LedgerError> {
        let conn = self.conn();
        self.active(&conn, run)?;
        conn.execute(
            "INSERT OR IGNORE INTO intents (client_order_id, plan_id, run_id, item_index, symbol, side, attempt, order_type, qty, limit_price, replaces, created_at, arrival_mid, seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, (SELECT coalesce(max(seq), 0) + 1 FROM intents))",
            params![
                intent.client_order_id.as_str(),
                intent.plan_id,
                run.run_id,
                intent.item_index,
                intent.symbol.as_str(),
                intent.side.as_str(),
                intent.attempt,
                intent.order_type.as_str(),
                intent.qty.to_string(),
                intent.limit_price.map(|p| p.to_string()),
                intent.replaces,
                ts(intent.created_at),
                intent.arrival_mid.map(|p| p.to_string()),
            ],
        )
        .map_err(storage)?;
        Ok(())
    }

    fn record_order(&self, run: &RunHandle, order: &OrderRecord) -> Result<(), LedgerError> {
        let conn = self.conn();
        self.active(&conn, run)?;
        conn.execute(
            "INSERT INTO orders (client_order_id, plan_id, broker_order_id, symbol, side, status, filled_qty, filled_avg_price, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (client_order_id) DO UPDATE SET
                broker_order_id = coalesce(excluded.broker_order_id, orders.broker_order_id),
                status = excluded.status, filled_qty = excluded.filled_qty,
                filled_avg_price = coalesce(excluded.filled_avg_price, orders.filled_avg_price),
                updated_at = excluded.updated_at",
            params![
                order.client_order_id.as_str(),
                order.plan_id,
                order.broker_order_id,
                order.symbol.as_str(),
                order.side.as_str(),
                order.status.as_str(),
                order.filled_qty.to_string(),
                order.filled_avg_price.map(|p| p.to_string()),
                ts(order.updated_at),
            ],
        )
        .map_err(storage)?;
        Ok(())
    }

    fn record_item(&self, run: &RunHandle, item: &ItemRecord) -> Result<(), LedgerError> {
        let conn = self.conn();
        self.active(&conn, run)?;
        let record = serde_json::to_string(item).map_err(|e| LedgerError::Storage(e.to_string()))?;
        conn.execute(
            "INSERT INTO items (plan_id, item_index, run_id, record) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (plan_id, item_index) DO UPDATE SET run_id = excluded.run_id, record = excluded.record",
            params![item.plan_id, item.item_index, run.run_id, record],
        )
        .map_err(storage)?;
        Ok(())
    }

    fn items(&self, plan_id: &str) -> Result<Vec<ItemRecord>, LedgerError> {
        let conn = self.conn();
        let rows =
            select_all(&conn, "SELECT record FROM items WHERE plan_id = ?1 ORDER BY item_index", [plan_id], |r| {
                r.get::<_, String>(0)
            })?;
        rows.iter()
            .map(|text| {
                serde_json::from_str(text).map_err(|e| LedgerError::Storage(format!("unreadable item record: {e}")))
            })
            .collect()
    }

    fn record_fill(&self, run: &RunHandle, fill: &FillRecord) -> Result<FillOutcome, LedgerError> {
        let mut conn = self.conn();
        self.active(&conn, run)?;
        let tx = conn.transaction().map_err(storage)?;
        let attribution = fill.strategy_attribution.as_ref().map(serde_json::to_string).transpose().map_err(storage)?;
        let inserted = tx
            .execute(
                "INSERT OR IGNORE INTO fills (execution_id, plan_id, run_id, client_order_id, broker_order_id, symbol, side, qty, price, bid, ask, order_type, strategy_attribution, filled_at, seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, (SELECT coalesce(max(seq), 0) + 1 FROM fills))",
                params![
                    fill.execution_id,
                    fill.plan_id,
                    run.run_id,
                    fill.client_order_id.as_str(),
                    fill.broker_order_id,
                    fill.symbol.as_str(),
                    fill.side.as_str(),
                    fill.qty.to_string(),
                    fill.price.to_string(),
                    fill.bid.map(|p| p.to_string()),
                    fill.ask.map(|p| p.to_string()),
                    fill.order_type.map(tranche_domain::OrderType::as_str),
                    attribution,
                    ts(fill.filled_at),
                ],
            )
            .map_err(storage)?;
        if inserted == 0 {
            tx.execute("UPDATE runs SET duplicate_fills = duplicate_fills + 1 WHERE run_id = ?1", [&run.run_id])
                .map_err(storage)?;
        }
        tx.commit().map_err(storage)?;
        Ok(if inserted == 0 { FillOutcome::Duplicate } else { FillOutcome::Recorded })
    }

    fn finish(&self, run: &RunHandle, result: &ExecutionResult) -> Result<(), LedgerError> {
        {
            let conn = self.conn();
            self.active(&conn, run)?;
            let json = serde_json::to_string(result).map_err(storage)?;
            conn.execute(
                "UPDATE runs SET status = 'completed', finished_at = ?2, result_json = ?3 WHERE run_id = ?1",
                params![run.run_id, ts(Utc::now()), json],
            )
            .map_err(storage)?;
        }
        self.unlock_plan(&run.plan_id);
        Ok(())
    }

    fn runs(&self, plan_id: Option<&str>) -> Result<Vec<RunRecord>, LedgerError> {
        let conn = self.conn();
        let raws = match plan_id {
            Some(p) => select_all(
                &conn,
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE plan_id = ?1 ORDER BY started_at"),
                [p],
                Self::read_run,
            )?,
            None => {
                select_all(&conn, &format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY started_at"), [], Self::read_run)?
            }
        };
        raws.into_iter().map(Self::to_run).collect()
    }

    fn intents(&self, plan_id: &str) -> Result<Vec<OrderIntent>, LedgerError> {
        let conn = self.conn();
        let rows = select_all(
            &conn,
            "SELECT plan_id, run_id, item_index, symbol, side, attempt, client_order_id, order_type, qty, limit_price, replaces, created_at, arrival_mid
                 FROM intents WHERE plan_id = ?1 ORDER BY seq",
            [plan_id],
            |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, u32>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, u16>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, String>(8)?,
                r.get::<_, Option<String>>(9)?,
                r.get::<_, Option<String>>(10)?,
                r.get::<_, String>(11)?,
                r.get::<_, Option<String>>(12)?,
            ))
        },
        )?;
        rows.into_iter()
            .map(
                |(
                    plan_id,
                    run_id,
                    item_index,
                    symbol,
                    side,
                    attempt,
                    cid,
                    order_type,
                    qty,
                    limit,
                    replaces,
                    created,
                    mid,
                )| {
                    Ok(OrderIntent {
                        plan_id,
                        run_id,
                        item_index,
                        symbol: parse::<Symbol>(&symbol)?,
                        side: parse(&side)?,
                        attempt,
                        client_order_id: ClientOrderId::from_broker(cid),
                        order_type: parse(&order_type)?,
                        qty: parse(&qty)?,
                        limit_price: limit.as_deref().map(parse).transpose()?,
                        replaces,
                        arrival_mid: mid.as_deref().map(parse).transpose()?,
                        created_at: parse_ts(&created)?,
                    })
                },
            )
            .collect()
    }

    fn orders(&self, plan_id: &str) -> Result<Vec<OrderRecord>, LedgerError> {
        let conn = self.conn();
        let rows = select_all(
            &conn,
            "SELECT plan_id, client_order_id, broker_order_id, symbol, side, status, filled_qty, filled_avg_price, updated_at
                 FROM orders WHERE plan_id = ?1 ORDER BY updated_at",
            [plan_id],
            |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, String>(8)?,
            ))
        },
        )?;
        rows.into_iter()
            .map(|(plan_id, cid, broker, symbol, side, status, filled, avg, updated)| {
                Ok(OrderRecord {
                    plan_id,
                    client_order_id: ClientOrderId::from_broker(cid),
                    broker_order_id: broker,
                    symbol: parse(&symbol)?,
                    side: parse(&side)?,
                    status: OrderStatus::from_wire(&status),
                    filled_qty: parse(&filled)?,
                    filled_avg_price: avg.as_deref().map(parse).transpose()?,
                    updated_at: parse_ts(&updated)?,
                })
            })
            .collect()
    }

    fn fills(&self, plan_id: &str) -> Result<Vec<FillRecord>, LedgerError> {
        let conn = self.conn();
        let rows = select_all(
            &conn,
            "SELECT execution_id, plan_id, run_id, client_order_id, broker_order_id, symbol, side, qty, price, bid, ask, order_type, strategy_attribution, filled_at
                 FROM fills WHERE plan_id = ?1 ORDER BY seq",
            [plan_id],
            |r| {
            Ok([
                r.get::<_, Option<String>>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, Option<String>>(8)?,
                r.get::<_, Option<String>>(9)?,
                r.get::<_, Option<String>>(10)?,
                r.get::<_, Option<String>>(11)?,
                r.get::<_, Option<String>>(12)?,
                r.get::<_, Option<String>>(13)?,
            ])
        },
        )?;
        rows.into_iter()
            .map(|c| {
                let need =
                    |i: usize| c[i].clone().ok_or_else(|| LedgerError::Storage(format!("fills column {i} is empty")));
                Ok(FillRecord {
                    execution_id: need(0)?,
                    plan_id: need(1)?,
                    run_id: need(2)?,
                    client_order_id: ClientOrderId::from_broker(need(3)?),
                    broker_order_id: need(4)?,
                    symbol: parse(&need(5)?)?,
                    side: parse(&need(6)?)?,
                    qty: parse(&need(7)?)?,
                    price: parse(&need(8)?)?,
                    bid: c[9].as_deref().map(parse).transpose()?,
                    ask: c[10].as_deref().map(parse).transpose()?,
                    order_type: c[11].as_deref().map(parse).transpose()?,
                    strategy_attribution: c[12].as_deref().map(serde_json::from_str).transpose().map_err(storage)?,
                    filled_at: parse_ts(&need(13)?)?,
                })
            })
            .collect()
    }
}

#[async_trait]
impl Ledger for SqliteLedger {
    async fn begin(&self, plan: &RebalancePlan) -> Result<BeginOutcome, LedgerError> {
        let plan = plan.clone();
        self.blocking(move |db| db.begin(&plan)).await
    }

    /// Held as long as the process holds the plan's lock, unless the lock file was replaced.
    async fn prove_claim(&self, run: &RunHandle) -> Result<ClaimProof, LedgerError> {
        let run = run.clone();
        self.blocking(move |db| db.holds_lock(&run).map(|()| ClaimProof::UNBOUNDED)).await
    }

    async fn record_intent(&self, run: &RunHandle, intent: &OrderIntent) -> Result<(), LedgerError> {
        let run = run.clone();
        let intent = intent.clone();
        self.blocking(move |db| db.record_intent(&run, &intent)).await
    }

    async fn record_order(&self, run: &RunHandle, order: &OrderRecord) -> Result<(), LedgerError> {
        let run = run.clone();
        let order = order.clone();
        self.blocking(move |db| db.record_order(&run, &order)).await
    }

    async fn record_item(&self, run: &RunHandle, item: &ItemRecord) -> Result<(), LedgerError> {
        let run = run.clone();
        let item = item.clone();
        self.blocking(move |db| db.record_item(&run, &item)).await
    }

    async fn items(&self, plan_id: &str) -> Result<Vec<ItemRecord>, LedgerError> {
        let plan_id = plan_id.to_owned();
        self.blocking(move |db| db.items(&plan_id)).await
    }

    async fn record_fill(&self, run: &RunHandle, fill: &FillRecord) -> Result<FillOutcome, LedgerError> {
        let run = run.clone();
        let fill = fill.clone();
        self.blocking(move |db| db.record_fill(&run, &fill)).await
    }

    async fn finish(&self, run: &RunHandle, result: &ExecutionResult) -> Result<(), LedgerError> {
        let run = run.clone();
        let result = result.clone();
        self.blocking(move |db| db.finish(&run, &result)).await
    }

    async fn suspend(&self, run: &RunHandle) -> Result<(), LedgerError> {
        let plan_id = run.plan_id.clone();
        self.blocking(move |db| {
            db.unlock_plan(&plan_id);
            Ok(())
        })
        .await
    }

    async fn runs(&self, plan_id: Option<&str>) -> Result<Vec<RunRecord>, LedgerError> {
        let plan_id = plan_id.map(str::to_owned);
        self.blocking(move |db| db.runs(plan_id.as_deref())).await
    }

    async fn intents(&self, plan_id: &str) -> Result<Vec<OrderIntent>, LedgerError> {
        let plan_id = plan_id.to_owned();
        self.blocking(move |db| db.intents(&plan_id)).await
    }

    async fn orders(&self, plan_id: &str) -> Result<Vec<OrderRecord>, LedgerError> {
        let plan_id = plan_id.to_owned();
        self.blocking(move |db| db.orders(&plan_id)).await
    }

    async fn fills(&self, plan_id: &str) -> Result<Vec<FillRecord>, LedgerError> {
        let plan_id = plan_id.to_owned();
        self.blocking(move |db| db.fills(&plan_id)).await
    }
}
