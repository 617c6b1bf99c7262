//! The SQLite schema and its migrations. Version n is `MIGRATIONS[n - 1]`; `PRAGMA user_version`
//! holds the version, `PRAGMA application_id` marks the file as a Tranche ledger.
//!
//! The schema is documented for users in docs/ledger.md; keep the two in step.

/// `PRAGMA application_id` of a Tranche ledger ("TRNC").
pub const APPLICATION_ID: i64 = 0x5452_4E43;

/// Migrations, oldest first.
pub const MIGRATIONS: &[&str] = &[
    // 1: runs, intents, orders, fills.
    "
    CREATE TABLE runs (
        run_id           TEXT PRIMARY KEY,
        plan_id          TEXT NOT NULL,
        correlation_id   TEXT NOT NULL,
        started_at       TEXT NOT NULL,
        finished_at      TEXT,
        status           TEXT NOT NULL CHECK (status IN ('running', 'completed')),
        result_json      TEXT,
        plan_json        TEXT NOT NULL,
        duplicate_fills  INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX runs_by_plan ON runs (plan_id, started_at);

    CREATE TABLE intents (
        client_order_id  TEXT PRIMARY KEY,
        plan_id          TEXT NOT NULL,
        run_id           TEXT NOT NULL REFERENCES runs (run_id),
        item_index       INTEGER NOT NULL,
        symbol           TEXT NOT NULL,
        side             TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
        attempt          INTEGER NOT NULL,
        order_type       TEXT NOT NULL,
        qty              TEXT NOT NULL,
        limit_price      TEXT,
        replaces         TEXT,
        arrival_mid      TEXT,
        created_at       TEXT NOT NULL,
        seq              INTEGER NOT NULL
    );
    CREATE INDEX intents_by_plan ON intents (plan_id, seq);

    CREATE TABLE orders (
        client_order_id  TEXT PRIMARY KEY,
        plan_id          TEXT NOT NULL,
        broker_order_id  TEXT,
        symbol           TEXT NOT NULL,
        side             TEXT NOT NULL,
        status           TEXT NOT NULL,
        filled_qty       TEXT NOT NULL,
        filled_avg_price TEXT,
        updated_at       TEXT NOT NULL
    );
    CREATE INDEX orders_by_plan ON orders (plan_id);

    CREATE TABLE fills (
        execution_id         TEXT PRIMARY KEY,
        plan_id              TEXT NOT NULL,
        run_id               TEXT NOT NULL REFERENCES runs (run_id),
        client_order_id      TEXT NOT NULL,
        broker_order_id      TEXT NOT NULL,
        symbol               TEXT NOT NULL,
        side                 TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
        qty                  TEXT NOT NULL,
        price                TEXT NOT NULL,
        bid                  TEXT,
        ask                  TEXT,
        order_type           TEXT,
        strategy_attribution TEXT,
        filled_at            TEXT NOT NULL,
        seq                  INTEGER NOT NULL
    );
    CREATE INDEX fills_by_plan ON fills (plan_id, seq);
    ",
    // 2: finished items (the record is the JSON of `ItemRecord`; the latest per item wins).
    "
    CREATE TABLE items (
        plan_id     TEXT NOT NULL,
        item_index  INTEGER NOT NULL,
        run_id      TEXT NOT NULL REFERENCES runs (run_id),
        record      TEXT NOT NULL,
        PRIMARY KEY (plan_id, item_index)
    );
    ",
    // 3: fills unique within their plan, not across plans (a simulator started again names its
    // executions from the same seed: another plan's fill under a known id was dropped).
    "
    CREATE TABLE fills_by_plan_and_execution (
        execution_id         TEXT NOT NULL,
        plan_id              TEXT NOT NULL,
        run_id               TEXT NOT NULL REFERENCES runs (run_id),
        client_order_id      TEXT NOT NULL,
        broker_order_id      TEXT NOT NULL,
        symbol               TEXT NOT NULL,
        side                 TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
        qty                  TEXT NOT NULL,
        price                TEXT NOT NULL,
        bid                  TEXT,
        ask                  TEXT,
        order_type           TEXT,
        strategy_attribution TEXT,
        filled_at            TEXT NOT NULL,
        seq                  INTEGER NOT NULL,
        PRIMARY KEY (plan_id, execution_id)
    );
    INSERT INTO fills_by_plan_and_execution
        SELECT execution_id, plan_id, run_id, client_order_id, broker_order_id, symbol, side, qty, price, bid, ask,
               order_type, strategy_attribution, filled_at, seq
        FROM fills;
    DROP TABLE fills;
    ALTER TABLE fills_by_plan_and_execution RENAME TO fills;
    CREATE INDEX fills_by_plan ON fills (plan_id, seq);
    ",
];

/// The newest schema version this build reads and writes.
pub fn latest_version() -> i64 {
    i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX)
}
