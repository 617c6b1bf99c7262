//! The simulator through the broker ports, in virtual time (tokio's paused clock).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use tranche_broker::{Broker, BrokerError, Clock, OrderEvents, QuoteFeed, StreamEvent, TokioClock};
use tranche_domain::{ClientOrderId, OrderRequest, OrderStatus, Qty, Side, Symbol, TradeEvent};
use tranche_sim::{FaultConfig, SimConfig, SimulatedBroker, StartPosition};

fn sym(s: &str) -> Symbol {
    Symbol::parse(s).unwrap()
}

fn start(config: SimConfig) -> (SimulatedBroker, Arc<dyn Clock>) {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(config.session.start));
    (SimulatedBroker::start(config, Arc::clone(&clock)).unwrap(), clock)
}

fn market_buy(cid: &str, symbol: &str, qty: &str) -> OrderRequest {
    OrderRequest::day(ClientOrderId::from_broker(cid), sym(symbol), Side::Buy, qty.parse().unwrap(), None)
}

#[tokio::test(start_paused = true)]
async fn an_order_round_trip_through_the_ports_in_virtual_time() {
    let (sim, clock) = start(SimConfig::default());
    let broker = sim.broker();
    let mut events = sim.order_events();
    let feed = sim.quote_feed();

    assert_eq!(events.next_event().await, Some(StreamEvent::Up));
    let mut changes = feed.changes();
    feed.subscribe(&[sym("AAPL")]).await.unwrap();
    assert_eq!(changes.recv().await.unwrap(), sym("AAPL"));
    let quote = feed.latest(&sym("AAPL")).unwrap();
    assert!(quote.bid < quote.ask);

    let t0 = clock.now();
    let order = broker.submit_order(&market_buy("rt-1", "AAPL", "3")).await.unwrap();
    assert_eq!(clock.now() - t0, chrono::Duration::milliseconds(20), "the answer takes the ack latency");
    assert_eq!(order.status, OrderStatus::Accepted);

    let mut seen = Vec::new();
    while !seen.contains(&TradeEvent::Fill) {
        match events.next_event().await.unwrap() {
            StreamEvent::Update(u) => {
                assert_eq!(u.order.id, order.id);
                seen.push(u.event);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, [TradeEvent::New, TradeEvent::Fill]);
    let position = broker.position(&sym("AAPL")).await.unwrap().unwrap();
    assert_eq!(position.qty, Qty::new(3.into()));
    assert_eq!(broker.fill_activities(t0).await.unwrap().len(), 1);
    assert_eq!(
        broker.order_by_client_id(&ClientOrderId::from_broker("rt-1")).await.unwrap().status,
        OrderStatus::Filled
    );
    assert!(broker.clock().await.unwrap().is_open);

    feed.release(&[sym("AAPL")]);
    assert!(feed.latest(&sym("AAPL")).is_none(), "released symbols are not streamed");
}

#[tokio::test(start_paused = true)]
async fn a_whole_trading_day_passes_in_virtual_time() {
    let mut config = SimConfig::default();
    config.account.positions.push(StartPosition {
        symbol: sym("SPY"),
        qty: Qty::new(10.into()),
        avg_entry_price: None,
    });
    let (sim, clock) = start(config.clone());
    let feed = sim.quote_feed();
    feed.subscribe(&[sym("SPY")]).await.unwrap();
    clock.sleep_until(config.session.close + chrono::Duration::minutes(1)).await;
    assert!(!sim.broker().clock().await.unwrap().is_open);
    let quote = sim.broker().latest_quote(&sym("SPY")).await.unwrap();
    assert!(quote.time > config.session.close - chrono::Duration::minutes(1), "the market kept quoting all day");
}

#[tokio::test(start_paused = true)]
async fn injected_failures_map_to_what_the_caller_can_do() {
    let config = SimConfig {
        faults: FaultConfig { server_error_ppm: 1_000_000, ..FaultConfig::none() },
        ..SimConfig::default()
    };
    let (sim, _clock) = start(config);
    let broker = sim.broker();
    assert!(matches!(broker.account().await, Err(BrokerError::Transient { .. })));
    assert!(matches!(broker.submit_order(&market_buy("f-1", "AAPL", "1")).await, Err(BrokerError::Uncertain { .. })));
    sim.with_sim(|s| assert_eq!(s.orders().count(), 0, "a 5xx submit was not applied"));

    let config = SimConfig {
        faults: FaultConfig { submit_timeout_after_ppm: 1_000_000, ..FaultConfig::none() },
        ..SimConfig::default()
    };
    let (sim, _clock) = start(config);
    let broker = sim.broker();
    assert!(matches!(broker.submit_order(&market_buy("f-2", "AAPL", "1")).await, Err(BrokerError::Uncertain { .. })));
    let found = broker.order_by_client_id(&ClientOrderId::from_broker("f-2")).await.unwrap();
    assert_eq!(found.client_order_id.as_str(), "f-2", "the order exists: resolve by client order id, never resend");
    assert!(matches!(
        broker.submit_order(&market_buy("f-2", "AAPL", "1")).await,
        Err(BrokerError::Rejected { reason: tranche_broker::RejectReason::DuplicateClientOrderId, .. })
    ));

    let config = SimConfig {
        faults: FaultConfig { rate_limit_ppm: 1_000_000, retry_after_ms: 1500, ..FaultConfig::none() },
        ..SimConfig::default()
    };
    let (sim, _clock) = start(config);
    assert_eq!(
        sim.broker().open_orders().await.unwrap_err(),
        BrokerError::RateLimited { retry_after: Some(std::time::Duration::from_millis(1500)) }
    );
}

#[tokio::test(start_paused = true)]
async fn stream_outages_are_announced_with_a_gap() {
    let config = SimConfig {
        faults: FaultConfig { disconnect_ppm: 1_000_000, reconnect_ms: 2_000, ..FaultConfig::none() },
        ..SimConfig::default()
    };
    let (sim, _clock) = start(config);
    let mut events = sim.order_events();
    assert_eq!(events.next_event().await, Some(StreamEvent::Up));
    sim.broker().submit_order(&market_buy("g-1", "AAPL", "1")).await.unwrap();
    assert!(matches!(events.next_event().await, Some(StreamEvent::Down { .. })));
    assert!(matches!(events.next_event().await, Some(StreamEvent::Gap { .. })));
    assert_eq!(events.next_event().await, Some(StreamEvent::Up));
    assert!(sim.with_sim(|s| s.lost_updates()) >= 1);
}

#[tokio::test(start_paused = true)]
async fn a_subscribe_past_the_feeds_symbol_limit_is_refused_and_changes_nothing() {
    let mut config = SimConfig::default();
    config.market.stream_symbol_limit = 3;
    let (broker, _clock) = start(config);
    let feed = broker.quote_feed();
    feed.subscribe(&[sym("AAPL"), sym("MSFT")]).await.unwrap();
    feed.subscribe(&[sym("AAPL")]).await.expect("a symbol already carried costs nothing");
    let refused = feed.subscribe(&[sym("SPY"), sym("QQQ")]).await.unwrap_err();
    match refused {
        BrokerError::Rejected { code: Some(405), message, .. } => {
            assert!(message.contains("symbol limit"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(broker.with_sim(|s| s.subscription_count()), 2, "unchanged");
    feed.subscribe(&[sym("SPY")]).await.expect("the third fits");
    assert_eq!(broker.with_sim(|s| s.subscription_count()), 3);
}
