//! Simulated events per second: quote updates across 100 active symbols (with matching against
//! resting orders), the figure behind "at least 1 million quote events per second on one core".

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tranche_domain::{ClientOrderId, OrderRequest, Side, Symbol};
use tranche_sim::{Sim, SimConfig};

const SYMBOLS: usize = 100;
const SIM_SECONDS: i64 = 60;
const INTERVAL_MS: u64 = 100;

fn busy_sim(resting_orders: bool) -> Sim {
    let mut config = SimConfig { seed: 7, ..SimConfig::default() };
    config.market.quote_interval_ms = INTERVAL_MS;
    config.account.starting_cash = "100000000".parse().unwrap();
    let mut sim = Sim::new(config).unwrap();
    for i in 0..SYMBOLS {
        let symbol = Symbol::parse(&format!("S{i}")).unwrap();
        sim.subscribe(&symbol);
        if resting_orders {
            let bid = sim.true_quote(&symbol).unwrap().bid;
            let request = OrderRequest::day(
                ClientOrderId::from_broker(format!("bench-{i}")),
                symbol,
                Side::Buy,
                "1000".parse().unwrap(),
                Some(bid),
            );
            sim.submit(&request).unwrap();
        }
    }
    sim
}

fn quote_events(c: &mut Criterion) {
    let events = u64::try_from(SYMBOLS).unwrap() * u64::try_from(SIM_SECONDS).unwrap() * 1000 / INTERVAL_MS;
    let mut group = c.benchmark_group("sim");
    group.throughput(Throughput::Elements(events));
    group.sample_size(20);
    for (name, resting) in [("quote_events_100_symbols", false), ("quote_events_100_symbols_with_resting_orders", true)]
    {
        group.bench_function(name, |b| {
            b.iter_batched(
                || busy_sim(resting),
                |mut sim| {
                    let end = sim.now() + chrono::Duration::seconds(SIM_SECONDS);
                    sim.advance_to(end);
                    black_box(sim.take_quote_changes().len())
                },
                criterion::BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, quote_events);
criterion_main!(benches);
