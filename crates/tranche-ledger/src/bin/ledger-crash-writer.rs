//! Test helper for the crash test of the SQLite ledger: begins a run of a plan in the ledger
//! at the path given as the only argument, then records fills forever, printing
//! `committed <n>` after each commit. The test kills it with SIGKILL mid-write and checks
//! that the reopened ledger is consistent and holds every fill reported as committed.

use std::future::Future;
use std::io::Write;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use tranche_domain::{ClientOrderId, RebalancePlan, Side, Symbol};
use tranche_ledger::{BeginOutcome, FillRecord, Ledger, SqliteLedger};

/// The SQLite ledger's futures never wait on anything: one poll completes them.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::yield_now();
    }
}

fn main() -> std::process::ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: ledger-crash-writer LEDGER_PATH");
        return std::process::ExitCode::from(64);
    };
    let plan = RebalancePlan::from_value(&serde_json::json!({
        "plan_id": "crash-plan", "correlation_id": "c", "causation_id": "x", "timestamp": "2026-03-02T15:00:00Z",
        "total_portfolio_value": "1000",
        "items": [{"symbol": "AAPL", "action": "BUY", "trade_amount": "100", "current_value": "0",
                   "current_weight": "0", "target_weight": "0.1", "target_value": "100"}]
    }));
    let (Ok(plan), Ok(ledger)) = (plan, SqliteLedger::open(&path)) else {
        eprintln!("cannot set up the ledger at {path}");
        return std::process::ExitCode::FAILURE;
    };
    let Ok(BeginOutcome::Started(run)) = block_on(ledger.begin(&plan)) else {
        eprintln!("cannot begin the run");
        return std::process::ExitCode::FAILURE;
    };
    let mut stdout = std::io::stdout().lock();
    for n in 0u64.. {
        let fill = FillRecord {
            execution_id: format!("exec-{n}"),
            plan_id: run.plan_id.clone(),
            run_id: run.run_id.clone(),
            client_order_id: ClientOrderId::from_broker(format!("tr-pcrash-AAPL-b{n}")),
            broker_order_id: format!("order-{n}"),
            symbol: Symbol::parse("AAPL").unwrap_or_else(|_| unreachable_symbol()),
            side: Side::Buy,
            qty: rust_decimal_free_qty(),
            price: "228.10".parse().unwrap_or_default(),
            bid: None,
            ask: None,
            order_type: None,
            strategy_attribution: None,
            filled_at: chrono::Utc::now(),
        };
        if block_on(ledger.record_fill(&run, &fill)).is_err() {
            return std::process::ExitCode::FAILURE;
        }
        if writeln!(stdout, "committed {n}").and_then(|()| stdout.flush()).is_err() {
            return std::process::ExitCode::FAILURE;
        }
    }
    std::process::ExitCode::SUCCESS
}

fn rust_decimal_free_qty() -> tranche_domain::Qty {
    "1".parse().unwrap_or_default()
}

fn unreachable_symbol() -> Symbol {
    // "AAPL" is a valid symbol; this is never reached.
    std::process::exit(70)
}
