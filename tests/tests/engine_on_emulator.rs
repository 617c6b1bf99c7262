//! The engine through the Alpaca adapter and the emulator, over real HTTP and WebSocket on
//! loopback: the 30-symbol example plan with the same invariants as on the simulator.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use tranche::alpaca::{AlpacaBroker, AlpacaConfig, AlpacaOrderEvents, Secret};
use tranche::broker::{NoQuoteFeed, SystemClock};
use tranche::domain::{ItemOutcome, RebalancePlan};
use tranche::emulator::{Emulator, EmulatorConfig, DEFAULT_KEY_ID, DEFAULT_SECRET_KEY};
use tranche::engine::{execute, EngineConfig, Ports};
use tranche::sim::SimConfig;
use tranche::simulation::account_from_plan;
use tranche_tests::example;

/// The emulator holding `plan`'s account (quotes every 100 ms), and an adapter configuration
/// for it whose own pacing never slows the run.
async fn emulator_for(plan: &RebalancePlan) -> (Emulator, AlpacaConfig) {
    let mut sim = account_from_plan(plan, &SimConfig::default());
    sim.market.quote_interval_ms = 100;
    let emu = Emulator::start("127.0.0.1:0".parse().unwrap(), EmulatorConfig { sim, ..EmulatorConfig::default() })
        .await
        .unwrap();
    let mut config = AlpacaConfig::new(DEFAULT_KEY_ID, Secret::new(DEFAULT_SECRET_KEY));
    config.trading_url = emu.url();
    config.data_url = emu.url();
    config.requests_per_minute = 6000;
    config.data_requests_per_minute = 6000;
    (emu, config)
}

/// Re-pegs every 1.5 s and deadlines that fit a test run in real time.
fn engine() -> EngineConfig {
    EngineConfig {
        repeg_interval: Duration::from_millis(1500),
        phase_deadline: Duration::from_secs(90),
        run_deadline: Duration::from_secs(200),
        settle_deadline: Duration::from_secs(3),
        ..EngineConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_thirty_symbol_plan_executes_through_the_adapter_and_the_emulator() {
    let plan = RebalancePlan::from_json_str(&std::fs::read_to_string(example("plan-30.json")).unwrap()).unwrap();
    let (emu, config) = emulator_for(&plan).await;
    let ports = Ports {
        broker: Arc::new(AlpacaBroker::new(config.clone()).unwrap()),
        events: Box::new(AlpacaOrderEvents::connect(config)),
        quotes: Arc::new(NoQuoteFeed::default()),
        clock: Arc::new(SystemClock),
    };
    let engine = engine();
    let result = tokio::time::timeout(Duration::from_secs(240), execute(plan.clone(), engine, ports, None))
        .await
        .expect("the run ends");

    let (orders, fills, positions) =
        emu.with_sim(|s| (s.orders().cloned().collect::<Vec<_>>(), s.fills().to_vec(), s.positions()));
    let ids: BTreeSet<_> = orders.iter().map(|o| o.client_order_id.clone()).collect();
    assert_eq!(ids.len(), orders.len(), "no client order id twice");
    assert!(orders.iter().all(|o| o.status.is_terminal()), "every order final");
    assert!(positions.iter().all(|p| p.qty.get() >= Decimal::ZERO), "no short");
    assert_eq!(result.orders.len(), plan.items.len(), "every item once");
    for (item, row) in plan.items.iter().zip(&result.orders) {
        let traded: Decimal = fills.iter().filter(|f| f.symbol == item.symbol).map(|f| f.qty.get()).sum();
        assert_eq!(traded, row.filled_qty.get(), "{}: result fills equal broker fills", item.symbol);
        assert!(
            row.reason.as_deref().is_none_or(|r| !r.contains("insufficient buying power")),
            "{}: {:?}",
            item.symbol,
            row.reason
        );
    }
    let filled = result.orders.iter().filter(|r| r.outcome == ItemOutcome::Filled).count();
    assert!(
        filled >= 25,
        "{filled} of 30 filled: {:#?}",
        result.orders.iter().map(|r| (&r.symbol, r.outcome, &r.reason)).collect::<Vec<_>>()
    );
}

/// The 30-symbol plan (29 traded, one held) and two more buys: 31 symbols to trade on `iex`,
/// whose stream carries 30.
fn thirty_one_symbols() -> RebalancePlan {
    let mut plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(example("plan-30.json")).unwrap()).unwrap();
    let items = plan["items"].as_array_mut().unwrap();
    let template = items[0].clone();
    for symbol in ["TSLA", "TQQQ"] {
        let mut extra = template.clone();
        extra["symbol"] = symbol.into();
        extra["current_value"] = "0.00".into();
        extra["current_weight"] = "0".into();
        extra["trade_amount"] = "1000.00".into();
        extra["target_value"] = "1000.00".into();
        extra["target_weight"] = "0.004".into();
        extra["weight_diff"] = "0.004".into();
        items.push(extra);
    }
    plan["plan_id"] = "thirty-one-symbols".into();
    RebalancePlan::from_value(&plan).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_of_more_symbols_than_the_iex_stream_carries_streams_thirty_and_prices_the_rest_by_rest() {
    let plan = thirty_one_symbols();
    let traded = plan.items.iter().filter(|i| i.action != tranche::domain::Action::Hold).count();
    assert_eq!(traded, tranche::alpaca::IEX_SYMBOL_LIMIT + 1);
    let (emu, config) = emulator_for(&plan).await;
    assert_eq!(config.data_symbol_limit, Some(30), "iex streams 30 symbols unless told otherwise");
    let connection = tranche::wiring::AlpacaConnection::open(config).unwrap();
    let feed = Arc::clone(&connection.quotes);
    let engine = engine();
    let (progress, mut events) = tokio::sync::mpsc::unbounded_channel();
    let result = tokio::time::timeout(
        Duration::from_secs(240),
        execute(plan.clone(), engine, connection.ports(), Some(progress)),
    )
    .await
    .expect("the run ends");
    assert_eq!(feed.symbol_refusals(), 0, "the stream never refused a subscription: the client kept within 30");
    let mut refusals = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let tranche::engine::ProgressEvent::Warning { message, .. } = event {
            if message.contains("refused to stream") {
                refusals.push(message);
            }
        }
    }
    assert!(refusals.is_empty(), "no subscription refused, not even by the client itself: {refusals:#?}");
    assert!(feed.connections() >= 1, "quotes were streamed");
    assert_eq!(result.orders.len(), plan.items.len());
    let unfinished: Vec<_> =
        result.orders.iter().filter(|r| r.outcome != ItemOutcome::Filled).map(|r| (&r.symbol, &r.reason)).collect();
    assert!(unfinished.len() <= 3, "{unfinished:#?}");
    let orders = emu.with_sim(|s| s.orders().cloned().collect::<Vec<_>>());
    let ids: BTreeSet<_> = orders.iter().map(|o| o.client_order_id.clone()).collect();
    assert_eq!(ids.len(), orders.len(), "no client order id twice");
}
