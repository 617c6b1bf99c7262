//! Fill recording on the SQLite ledger: each fill is one durable transaction (WAL,
//! `synchronous = FULL`), so this measures the cost of never losing a fill.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tranche_domain::{ClientOrderId, OrderType, RebalancePlan, Side, Symbol};
use tranche_ledger::{BeginOutcome, FillRecord, Ledger, SqliteLedger};

/// The SQLite ledger's futures complete on the first poll.
fn ready<F: std::future::Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the SQLite ledger does not wait"),
    }
}

fn bench_fills(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("tranche-ledger-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ledger = SqliteLedger::open(dir.join("bench.sqlite")).unwrap();
    let plan = RebalancePlan::from_value(&serde_json::json!({
        "plan_id": "bench", "correlation_id": "c", "causation_id": "x", "timestamp": "2026-03-02T15:00:00Z",
        "total_portfolio_value": "1000",
        "items": [{"symbol": "AAPL", "action": "BUY", "trade_amount": "100", "current_value": "0",
                   "current_weight": "0", "target_weight": "0.1", "target_value": "100"}]
    }))
    .unwrap();
    let BeginOutcome::Started(run) = ready(ledger.begin(&plan)).unwrap() else { panic!("begin") };
    let mut n = 0u64;
    let mut group = c.benchmark_group("ledger_sqlite");
    group.throughput(Throughput::Elements(1));
    group.bench_function("record_fill_durable", |b| {
        b.iter(|| {
            n += 1;
            let fill = FillRecord {
                execution_id: format!("exec-{n}"),
                plan_id: run.plan_id.clone(),
                run_id: run.run_id.clone(),
                client_order_id: ClientOrderId::from_broker("tr-pbench-AAPL-b0"),
                broker_order_id: "order-1".into(),
                symbol: Symbol::parse("AAPL").unwrap(),
                side: Side::Buy,
                qty: "1".parse().unwrap(),
                price: "228.10".parse().unwrap(),
                bid: Some("228.09".parse().unwrap()),
                ask: Some("228.11".parse().unwrap()),
                order_type: Some(OrderType::Limit),
                strategy_attribution: None,
                filled_at: chrono::Utc::now(),
            };
            black_box(ready(ledger.record_fill(&run, &fill)).unwrap())
        });
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench_fills);
criterion_main!(benches);
