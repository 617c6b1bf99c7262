//! Decode throughput of market-data quote frames (JSON and msgpack) and the cost of a store
//! update: the figures behind "at least 2 million quotes per second per core in JSON". The exact
//! frames decoded here are written to `target/bench-results/quote-frames.json`, so that
//! `cargo xtask bench` can time the official Python SDK decoding the same bytes.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tranche_domain::{Price, Qty, Quote, Symbol};
use tranche_pricing::codec::{
    decode_json_with, decode_msgpack_with, encode_json_quotes, encode_msgpack_quotes, SymbolCache,
};
use tranche_pricing::store::QuoteStore;

/// A batch of realistic quotes: 100 symbols, varied prices and sizes, nanosecond timestamps.
fn quotes(n: usize) -> Vec<Quote> {
    (0..n)
        .map(|i| {
            let cents = 1_000 + i64::try_from(i * 7919 % 90_000).unwrap();
            Quote {
                symbol: Symbol::parse(&format!("S{}", i % 100)).unwrap(),
                bid: Price::new(rust_decimal::Decimal::new(cents, 2)),
                bid_size: Qty::new(i64::try_from(100 + i % 900).unwrap().into()),
                ask: Price::new(rust_decimal::Decimal::new(cents + 1 + i64::try_from(i % 5).unwrap(), 2)),
                ask_size: Qty::new(i64::try_from(200 + i % 700).unwrap().into()),
                time: chrono::DateTime::from_timestamp(
                    1_772_463_600 + i64::try_from(i).unwrap(),
                    u32::try_from(i * 1_000_003 % 1_000_000_000).unwrap(),
                )
                .unwrap(),
            }
        })
        .collect()
}

/// Writes the frames to `<target>/bench-results/quote-frames.json`: the JSON frames as strings,
/// the msgpack frames as lowercase hex, and how many quotes they hold.
fn write_frames(json: &[String], msgpack: &[Vec<u8>], quotes: usize) {
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(
        |_| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        std::path::PathBuf::from,
    );
    let dir = target.join("bench-results");
    std::fs::create_dir_all(&dir).expect("create bench-results");
    let hex = |frame: &Vec<u8>| {
        frame.iter().fold(String::with_capacity(frame.len() * 2), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
    };
    let doc = serde_json::json!({
        "quotes": quotes,
        "json": json,
        "msgpack_hex": msgpack.iter().map(hex).collect::<Vec<_>>(),
    });
    std::fs::write(dir.join("quote-frames.json"), doc.to_string()).expect("write quote-frames.json");
}

fn bench(c: &mut Criterion) {
    let batch = quotes(1000);
    // Frames of 10 quotes, as the server batches them.
    let json: Vec<String> = batch.chunks(10).map(encode_json_quotes).collect();
    let msgpack: Vec<Vec<u8>> = batch.chunks(10).map(encode_msgpack_quotes).collect();
    write_frames(&json, &msgpack, batch.len());
    let mut group = c.benchmark_group("pricing");
    group.throughput(Throughput::Elements(1000));
    // One connection's decoder: its symbol cache is warm after the first frames.
    let mut symbols = SymbolCache::default();
    group.bench_function("decode_json_1000_quotes", |b| {
        b.iter(|| {
            for frame in &json {
                black_box(decode_json_with(frame.as_bytes(), &mut symbols).unwrap());
            }
        });
    });
    group.bench_function("decode_msgpack_1000_quotes", |b| {
        b.iter(|| {
            for frame in &msgpack {
                black_box(decode_msgpack_with(frame, &mut symbols).unwrap());
            }
        });
    });
    let store = QuoteStore::new(1000);
    group.bench_function("store_update_1000_quotes", |b| {
        b.iter(|| {
            for q in &batch {
                black_box(store.update(q.clone()));
            }
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
