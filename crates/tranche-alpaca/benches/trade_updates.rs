//! Decode throughput of `trade_updates` frames: text frame to JSON, the envelope read, the
//! `data` to the domain `TradeUpdate`, exactly as the adapter's stream does for every message.
//! The frames are fill and partial-fill events around a full Alpaca order object (the shape of
//! the recorded `order_routes__limit_order` fixture, every field present), with varied ids,
//! prices and quantities. The adapter asks the trading stream for JSON (Alpaca sends msgpack only
//! when the upgrade asks for it, and trade updates are a few per order), so JSON is the one path.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{json, Value};
use tranche_alpaca::decode_trade_update;

const FRAMES: usize = 1_000;

fn frames() -> Vec<String> {
    (0..FRAMES)
        .map(|i| {
            let partial = i % 3 == 0;
            let qty = 1 + i % 40;
            let cents = 10_000 + i * 7919 % 50_000;
            let price = format!("{}.{:02}", cents / 100, cents % 100);
            let order = json!({
                "id": format!("61e69015-8549-4bfd-b9c3-{i:012}"),
                "client_order_id": format!("tr-plan-7-S{}-b{}", i % 100, i % 4),
                "created_at": "2026-03-16T14:38:01.942282Z",
                "updated_at": "2026-03-16T14:38:02.101000Z",
                "submitted_at": "2026-03-16T14:38:01.937734Z",
                "filled_at": if partial { Value::Null } else { json!("2026-03-16T14:38:02.100000Z") },
                "expired_at": null, "canceled_at": null, "failed_at": null, "replaced_at": null,
                "replaced_by": null, "replaces": null,
                "asset_id": "904837e3-3b76-47ec-b432-046db621571b",
                "symbol": format!("S{}", i % 100),
                "asset_class": "us_equity",
                "notional": null,
                "qty": (qty * 2).to_string(),
                "filled_qty": qty.to_string(),
                "filled_avg_price": price,
                "order_class": "simple", "order_type": "limit", "type": "limit",
                "side": if i % 2 == 0 { "buy" } else { "sell" },
                "time_in_force": "day",
                "limit_price": price,
                "stop_price": null,
                "status": if partial { "partially_filled" } else { "filled" },
                "extended_hours": false, "legs": null, "trail_percent": null, "trail_price": null,
                "hwm": null, "position_intent": "buy_to_open",
            });
            json!({
                "stream": "trade_updates",
                "data": {
                    "event": if partial { "partial_fill" } else { "fill" },
                    "execution_id": format!("2f63ea93-423d-4169-b3f6-{i:012}"),
                    "order": order,
                    "position_qty": (qty * 3).to_string(),
                    "price": price,
                    "qty": qty.to_string(),
                    "timestamp": "2026-03-16T14:38:02.100000Z",
                }
            })
            .to_string()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let frames = frames();
    let mut group = c.benchmark_group("alpaca");
    group.throughput(Throughput::Elements(FRAMES as u64));
    group.bench_function("decode_trade_updates_1000", |b| {
        b.iter(|| {
            let mut decoded = 0usize;
            for frame in &frames {
                let value: Value = serde_json::from_str(black_box(frame)).unwrap();
                if value.get("stream").and_then(Value::as_str) == Some("trade_updates") {
                    let update = decode_trade_update(&value["data"]).unwrap();
                    decoded += usize::from(update.execution.is_some());
                }
            }
            assert_eq!(decoded, FRAMES);
            decoded
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
