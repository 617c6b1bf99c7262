//! The adapter against the Alpaca emulator over real HTTP and WebSocket on loopback.
//! (Real sockets run in real time; waits are bounded by timeouts, never fixed sleeps.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tranche_alpaca::{AlpacaBroker, AlpacaConfig, AlpacaOrderEvents, Secret};
use tranche_broker::{Broker, BrokerError, OrderEvents, RejectReason, StreamEvent};
use tranche_domain::{ClientOrderId, OrderRequest, OrderStatus, Qty, ReplaceRequest, Side, Symbol, TradeEvent};
use tranche_emulator::{Emulator, EmulatorConfig, DEFAULT_KEY_ID, DEFAULT_SECRET_KEY};
use tranche_sim::FaultConfig;

fn sym(s: &str) -> Symbol {
    Symbol::parse(s).unwrap()
}

async fn emulator() -> Emulator {
    let mut config = EmulatorConfig::default();
    config.sim.market.quote_interval_ms = 100;
    config.sim.account.starting_cash = "10000000".parse().unwrap();
    Emulator::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap()
}

fn adapter(emu: &Emulator) -> AlpacaConfig {
    let mut config = AlpacaConfig::new(DEFAULT_KEY_ID, Secret::new(DEFAULT_SECRET_KEY));
    config.trading_url = emu.url();
    config.data_url = emu.url();
    config.requests_per_minute = 6000;
    config.data_requests_per_minute = 6000;
    config
}

fn order(cid: &str, symbol: &str, side: Side, qty: &str, limit: Option<&str>) -> OrderRequest {
    OrderRequest::day(
        ClientOrderId::from_broker(cid),
        sym(symbol),
        side,
        qty.parse().unwrap(),
        limit.map(|l| l.parse().unwrap()),
    )
}

/// The next update for `cid` with `event`, within a bounded wait.
async fn expect_event(events: &mut AlpacaOrderEvents, cid: &str, event: TradeEvent) -> tranche_domain::TradeUpdate {
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.next_event().await {
                Some(StreamEvent::Update(u)) if u.order.client_order_id.as_str() == cid && u.event == event => {
                    return *u
                }
                Some(_) => {}
                None => panic!("stream ended"),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no {event} for {cid}"))
}

async fn expect_marker(events: &mut AlpacaOrderEvents, want: fn(&StreamEvent) -> bool) {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if want(&events.next_event().await.expect("stream open")) {
                return;
            }
        }
    })
    .await
    .expect("marker in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_lifecycle_replace_cancel_and_duplicates() {
    let emu = emulator().await;
    let config = adapter(&emu);
    let broker = AlpacaBroker::new(config.clone()).unwrap();
    let mut events = AlpacaOrderEvents::connect(config);
    expect_marker(&mut events, |e| matches!(e, StreamEvent::Up)).await;

    assert!(broker.clock().await.unwrap().is_open);
    assert_eq!(broker.account().await.unwrap().cash, "10000000".parse().unwrap());
    let quote = broker.latest_quote(&sym("AAPL")).await.unwrap();
    assert!(quote.bid < quote.ask);

    // A market buy: new, then fills; the position shows it.
    let placed = broker.submit_order(&order("e2e-1", "AAPL", Side::Buy, "3", None)).await.unwrap();
    assert_eq!(placed.status, OrderStatus::Accepted);
    expect_event(&mut events, "e2e-1", TradeEvent::New).await;
    let fill = expect_event(&mut events, "e2e-1", TradeEvent::Fill).await;
    assert!(fill.execution.is_some());
    assert_eq!(broker.position(&sym("AAPL")).await.unwrap().unwrap().qty, Qty::new(3.into()));
    let fills = broker.fill_activities(placed.created_at - chrono::Duration::seconds(1)).await.unwrap();
    assert_eq!(fills.len(), 1);
    assert_eq!(fills[0].client_order_id.as_str(), "e2e-1", "fill activities map back to client order ids");

    // A market order larger than the displayed size walks the book: partial fills, then the fill,
    // each execution with its own quantity and price.
    let big = (quote.ask_size.get() * rust_decimal::Decimal::from(3)).to_string();
    broker.submit_order(&order("e2e-big", "AAPL", Side::Buy, &big, None)).await.unwrap();
    let partial = expect_event(&mut events, "e2e-big", TradeEvent::PartialFill).await;
    let last = expect_event(&mut events, "e2e-big", TradeEvent::Fill).await;
    assert!(partial.execution.as_ref().unwrap().qty < last.order.filled_qty);
    assert_eq!(last.order.filled_qty.get().to_string(), big);

    // Cancel of a filled order: 422 not cancelable.
    let err = broker.cancel_order(&placed.id).await.unwrap_err();
    assert_eq!(err.reject_reason(), Some(&RejectReason::NotCancelable), "{err}");

    // A resting limit, replaced, then canceled.
    let low = (quote.bid.get() - rust_decimal::Decimal::from(20)).round_dp(2).to_string();
    let resting = broker.submit_order(&order("e2e-2", "AAPL", Side::Buy, "2", Some(&low))).await.unwrap();
    expect_event(&mut events, "e2e-2", TradeEvent::New).await;
    let lower = (quote.bid.get() - rust_decimal::Decimal::from(21)).round_dp(2);
    let replacement = broker
        .replace_order(
            &resting.id,
            &ReplaceRequest {
                client_order_id: ClientOrderId::from_broker("e2e-2r"),
                qty: Some(Qty::new(2.into())),
                limit_price: Some(lower.into()),
                time_in_force: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(replacement.replaces.as_ref(), Some(&resting.id));
    expect_event(&mut events, "e2e-2", TradeEvent::Replaced).await;
    expect_event(&mut events, "e2e-2r", TradeEvent::New).await;
    broker.cancel_order(&replacement.id).await.unwrap();
    expect_event(&mut events, "e2e-2r", TradeEvent::Canceled).await;
    assert_eq!(
        broker.order_by_client_id(&ClientOrderId::from_broker("e2e-2")).await.unwrap().status,
        OrderStatus::Replaced
    );
    assert!(broker.open_orders().await.unwrap().is_empty());

    // A reused client order id is refused forever.
    let err = broker.submit_order(&order("e2e-1", "AAPL", Side::Buy, "1", None)).await.unwrap_err();
    assert_eq!(err.reject_reason(), Some(&RejectReason::DuplicateClientOrderId), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_rate_limits_are_handled_without_storms_or_second_orders() {
    let emu = emulator().await;
    let broker = AlpacaBroker::new(adapter(&emu)).unwrap();

    // 5xx on a GET: retried (4 attempts), then reported as transient.
    emu.with_sim(|s| s.set_faults(FaultConfig { server_error_ppm: 1_000_000, ..FaultConfig::none() }));
    let before = emu.with_sim(|s| s.requests());
    assert!(matches!(broker.account().await, Err(BrokerError::Transient { .. })));
    assert_eq!(emu.with_sim(|s| s.requests()) - before, 4, "bounded retries");

    // 5xx on a POST: not retried, reported as uncertain; the lookup by client order id says it
    // never happened, so nothing was placed twice.
    let before = emu.with_sim(|s| s.requests());
    let err = broker.submit_order(&order("e2e-5xx", "MSFT", Side::Buy, "1", None)).await.unwrap_err();
    assert!(err.may_have_taken_effect(), "{err}");
    assert_eq!(emu.with_sim(|s| s.requests()) - before, 1, "a submit is never retried");
    emu.with_sim(|s| s.set_faults(FaultConfig::none()));
    assert!(matches!(
        broker.order_by_client_id(&ClientOrderId::from_broker("e2e-5xx")).await,
        Err(BrokerError::NotFound { .. })
    ));

    // A submit whose answer is lost after it took effect: uncertain, and the lookup finds it.
    emu.with_sim(|s| s.set_faults(FaultConfig { submit_timeout_after_ppm: 1_000_000, ..FaultConfig::none() }));
    let err = broker.submit_order(&order("e2e-504", "MSFT", Side::Buy, "1", None)).await.unwrap_err();
    assert!(err.may_have_taken_effect(), "{err}");
    emu.with_sim(|s| s.set_faults(FaultConfig::none()));
    let found = broker.order_by_client_id(&ClientOrderId::from_broker("e2e-504")).await.unwrap();
    assert_eq!(found.client_order_id.as_str(), "e2e-504");
    assert_eq!(emu.with_sim(|s| s.orders().filter(|o| o.client_order_id.as_str() == "e2e-504").count()), 1);

    // 429 with Retry-After: the client waits as told, a few times, then reports it.
    emu.with_sim(|s| {
        s.set_faults(FaultConfig { rate_limit_ppm: 1_000_000, retry_after_ms: 1_000, ..FaultConfig::none() })
    });
    let before = emu.with_sim(|s| s.requests());
    let started = std::time::Instant::now();
    assert!(matches!(broker.positions().await, Err(BrokerError::RateLimited { .. })));
    assert_eq!(emu.with_sim(|s| s.requests()) - before, 4, "no request storm");
    assert!(started.elapsed() >= Duration::from_secs(3), "the server's wait was honoured");
    emu.with_sim(|s| s.set_faults(FaultConfig::none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_socket_is_announced_and_resumed_with_a_gap_marker() {
    let emu = emulator().await;
    let config = adapter(&emu);
    let broker = AlpacaBroker::new(config.clone()).unwrap();
    let mut events = AlpacaOrderEvents::connect(config);
    expect_marker(&mut events, |e| matches!(e, StreamEvent::Up)).await;
    emu.drop_streams();
    expect_marker(&mut events, |e| matches!(e, StreamEvent::Down { .. })).await;
    expect_marker(&mut events, |e| matches!(e, StreamEvent::Gap { .. })).await;
    expect_marker(&mut events, |e| matches!(e, StreamEvent::Up)).await;
    broker.submit_order(&order("after-gap", "SPY", Side::Buy, "1", None)).await.unwrap();
    expect_event(&mut events, "after-gap", TradeEvent::Fill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_are_an_auth_error_and_never_printed() {
    let emu = emulator().await;
    let mut config = adapter(&emu);
    config.secret = Secret::new("wrong-secret-value");
    let broker = AlpacaBroker::new(config.clone()).unwrap();
    let err = broker.account().await.unwrap_err();
    assert!(matches!(err, BrokerError::Auth { .. }), "{err}");
    assert!(!err.to_string().contains("wrong-secret-value") && !format!("{broker:?}").contains("wrong-secret-value"));
    let mut events = AlpacaOrderEvents::connect(config);
    assert!(matches!(
        tokio::time::timeout(Duration::from_secs(10), events.next_event()).await.unwrap(),
        Some(StreamEvent::Down { .. })
    ));
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), events.next_event()).await.unwrap(),
        None,
        "a refused key stops the stream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_latest_quotes_come_in_one_request() {
    let mut config = EmulatorConfig::default();
    config.sim.symbols.unknown.push(sym("NOPE"));
    let emu = Emulator::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap();
    let broker = AlpacaBroker::new(adapter(&emu)).unwrap();
    let before = emu.requests_served();
    let symbols = [sym("MSFT"), sym("AAPL"), sym("NOPE")];
    let quotes = broker.latest_quotes(&symbols).await.unwrap();
    assert_eq!(emu.requests_served() - before, 1, "one request for all symbols");
    let got: Vec<&str> = quotes.iter().map(|q| q.symbol.as_str()).collect();
    assert_eq!(got, ["AAPL", "MSFT"], "a symbol without a quote is left out");
    assert!(quotes.iter().all(|q| q.bid < q.ask));
}

/// A budget of 60 a minute: a full bucket, then one request a second.
async fn emulator_with_budget() -> Emulator {
    let config = EmulatorConfig { requests_per_minute: 60, ..EmulatorConfig::default() };
    Emulator::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_past_its_budget_with_alpacas_429() {
    let emu = emulator_with_budget().await;
    let http = reqwest::Client::new();
    let clock = format!("{}/v2/clock", emu.url());
    let mut last = None;
    for _ in 0..70 {
        let answer = http
            .get(&clock)
            .header("APCA-API-KEY-ID", DEFAULT_KEY_ID)
            .header("APCA-API-SECRET-KEY", DEFAULT_SECRET_KEY)
            .send()
            .await
            .unwrap();
        if answer.status() == 429 {
            last = Some(answer);
            break;
        }
        assert!(answer.headers().contains_key("x-ratelimit-reset"));
    }
    let refused = last.expect("the 61st request of the minute is refused");
    assert_eq!(refused.headers()["x-ratelimit-limit"], "60");
    assert_eq!(refused.headers()["x-ratelimit-remaining"], "0");
    // When to come back is in `X-Ratelimit-Reset` (epoch seconds) only: whether Alpaca sends
    // `Retry-After` is not established, so the client must not need it.
    assert!(!refused.headers().contains_key("retry-after"), "{:?}", refused.headers());
    let reset: i64 = refused.headers()["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!((now..=now + 60).contains(&reset), "the reset in epoch seconds: {reset} at {now}");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["code"], 42_910_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adapter_paces_itself_by_the_servers_headers() {
    let emu = emulator_with_budget().await;
    // The client's own pacing is off (6000 a minute): only the server's headers slow it down.
    let broker = AlpacaBroker::new(adapter(&emu)).unwrap();
    let started = std::time::Instant::now();
    for _ in 0..63 {
        broker.clock().await.unwrap();
    }
    assert_eq!(emu.requests_served(), 63, "no request was refused: the client waited for the reset");
    assert!(started.elapsed() >= Duration::from_secs(2), "three requests past the budget came a second apart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_activities_are_read_page_after_page_each_execution_once() {
    let mut config = EmulatorConfig {
        start_at: Some(chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 3, 2, 14, 30, 0).unwrap()),
        requests_per_minute: 0,
        data_requests_per_minute: 0,
        ..EmulatorConfig::default()
    };
    config.sim.account.starting_cash = "100000000".parse().unwrap();
    let emu = Emulator::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap();
    let adapter = adapter(&emu);
    let broker = AlpacaBroker::new(adapter.clone()).unwrap();
    let mut events = AlpacaOrderEvents::connect(adapter);
    expect_marker(&mut events, |e| matches!(e, StreamEvent::Up)).await;

    // 230 executions of orders Tranche never sent, in four symbols: three pages.
    let orders = 230;
    for i in 0..orders {
        let symbol = ["AAPL", "MSFT", "SPY", "QQQ"][i % 4];
        let request = order(&format!("outside-{i}"), symbol, Side::Buy, "1", None);
        emu.with_sim(|s| s.submit(&request)).unwrap();
    }
    tokio::time::timeout(Duration::from_secs(60), async {
        let mut filled = std::collections::BTreeSet::new();
        while filled.len() < orders {
            if let Some(StreamEvent::Update(u)) = events.next_event().await {
                if u.event == TradeEvent::Fill {
                    filled.insert(u.order.id.clone());
                }
            }
        }
    })
    .await
    .expect("every order filled in time");

    let booked = emu.with_sim(|s| s.fills().to_vec());
    assert_eq!(booked.len(), orders);
    let start = booked[0].time - chrono::Duration::seconds(1);
    let fills = broker.fill_activities(start).await.unwrap();
    let ids: Vec<&str> = fills.iter().map(|f| f.execution_id.as_str()).collect();
    let want: Vec<&str> = booked.iter().map(|f| f.execution_id.as_str()).collect();
    assert_eq!(ids, want, "every execution once, oldest first");
    assert!(fills.iter().all(|f| f.client_order_id.as_str().starts_with("outside-")), "client ids looked up");

    // Client ids are known now: the second read is the pages alone (100 + 100 + 30).
    let before = emu.requests_served();
    assert_eq!(broker.fill_activities(start).await.unwrap().len(), orders);
    assert_eq!(emu.requests_served() - before, 3, "three pages");

    // From an execution's time on: that one and every later one (none earlier).
    let since = booked[150].time;
    let later = broker.fill_activities(since).await.unwrap();
    let want: Vec<&str> = booked.iter().filter(|f| f.time >= since).map(|f| f.execution_id.as_str()).collect();
    assert_eq!(later.iter().map(|f| f.execution_id.as_str()).collect::<Vec<_>>(), want);
}

/// A first connection that fails is said (once) as `Down`, with no gap (nothing was listened
/// to before): the engine, which sends nothing before the stream listens, and its user know why
/// the run waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_connection_that_fails_is_announced_without_a_gap() {
    // A port that nothing listens on (bound, then released).
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut config = AlpacaConfig::new(DEFAULT_KEY_ID, Secret::new(DEFAULT_SECRET_KEY));
    config.trading_url = format!("http://{free}");
    let mut events = AlpacaOrderEvents::connect(config);
    let first = tokio::time::timeout(Duration::from_secs(10), events.next_event()).await.expect("said in time");
    match first {
        Some(StreamEvent::Down { reason }) => assert!(reason.contains("not connected"), "{reason}"),
        other => panic!("expected Down, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_quotes_ask_for_the_configured_feed() {
    let emu = emulator().await;
    let mut config = adapter(&emu);
    config.data_feed = "sip".into();
    let broker = AlpacaBroker::new(config.clone()).unwrap();
    assert!(broker.latest_quote(&sym("AAPL")).await.is_ok(), "sip is a feed");
    assert_eq!(broker.latest_quotes(&[sym("AAPL"), sym("MSFT")]).await.unwrap().len(), 2);
    // A feed Alpaca does not have is refused by the server: proof that the parameter is sent.
    config.data_feed = "nosuchfeed".into();
    let broker = AlpacaBroker::new(config).unwrap();
    let refused = broker.latest_quote(&sym("AAPL")).await.unwrap_err();
    assert!(refused.to_string().contains("invalid feed"), "{refused}");
    assert!(broker.latest_quotes(&[sym("AAPL")]).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quote_reads_spend_the_market_data_budget_and_never_the_trading_one() {
    // Ten trading requests a minute at the server, and as many in the client; the data budget is
    // the ordinary 200.
    let mut server = EmulatorConfig { requests_per_minute: 10, data_requests_per_minute: 200, ..Default::default() };
    server.sim.market.quote_interval_ms = 100;
    let emu = Emulator::start("127.0.0.1:0".parse().unwrap(), server).await.unwrap();
    let mut config = adapter(&emu);
    config.requests_per_minute = 10;
    config.data_requests_per_minute = 190;
    let broker = AlpacaBroker::new(config).unwrap();
    // Sixty quote reads: six times the trading budget. With one budget for both APIs the
    // trading calls below would wait most of a minute (and the bounded wait would fail).
    let both = async {
        for _ in 0..60 {
            broker.latest_quote(&sym("AAPL")).await.unwrap();
        }
        let placed = broker.submit_order(&order("budget-1", "AAPL", Side::Buy, "1", Some("1.00"))).await.unwrap();
        broker.cancel_order(&placed.id).await.unwrap();
        broker.clock().await.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(30), both).await.expect("quote reads do not hold trading calls back");
    assert_eq!(emu.data_requests_served(), 60);
    assert_eq!(emu.requests_refused(), 0, "nothing was refused on either API");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_orders_are_read_past_alpacas_page_of_500() {
    let mut server = EmulatorConfig { requests_per_minute: 0, data_requests_per_minute: 0, ..Default::default() };
    server.sim.account.starting_cash = "10000000".parse().unwrap();
    let emu = Emulator::start("127.0.0.1:0".parse().unwrap(), server).await.unwrap();
    let broker = AlpacaBroker::new(adapter(&emu)).unwrap();
    let symbols = ["AAPL", "MSFT", "SPY", "QQQ", "JPM", "XOM"];
    let mut placed = std::collections::BTreeSet::new();
    for i in 0..1_150 {
        // Resting buys a dollar or so above zero: they never fill.
        let limit = format!("1.{:02}", i % 100);
        let o = order(&format!("page-{i}"), symbols[i % symbols.len()], Side::Buy, "1", Some(&limit));
        placed.insert(broker.submit_order(&o).await.unwrap().id.as_str().to_owned());
    }
    let open = broker.open_orders().await.unwrap();
    let read: std::collections::BTreeSet<String> = open.iter().map(|o| o.id.as_str().to_owned()).collect();
    assert_eq!(open.len(), 1_150, "each open order once");
    assert_eq!(read, placed);
    assert!(open.windows(2).all(|w| w[0].created_at <= w[1].created_at), "oldest first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_before_the_order_works_is_refused_as_not_yet_routed_and_goes_once_it_works() {
    let mut server = EmulatorConfig { requests_per_minute: 0, data_requests_per_minute: 0, ..Default::default() };
    server.sim.faults.slow_routing_ppm = 1_000_000;
    let emu = Emulator::start("127.0.0.1:0".parse().unwrap(), server).await.unwrap();
    let config = adapter(&emu);
    let broker = AlpacaBroker::new(config.clone()).unwrap();
    let mut events = AlpacaOrderEvents::connect(config);
    expect_marker(&mut events, |e| matches!(e, StreamEvent::Up)).await;
    let placed = broker.submit_order(&order("route-1", "AAPL", Side::Buy, "1", Some("1.00"))).await.unwrap();
    let replace = |cid: &str| ReplaceRequest {
        client_order_id: ClientOrderId::from_broker(cid),
        qty: None,
        limit_price: Some("1.01".parse().unwrap()),
        time_in_force: None,
    };
    let refused = broker.replace_order(&placed.id, &replace("route-1-r1")).await.unwrap_err();
    assert_eq!(refused.reject_reason(), Some(&RejectReason::NotYetRouted), "{refused}");
    // The order reaches the venue (its `new` update): the same replace goes through.
    expect_event(&mut events, "route-1", TradeEvent::New).await;
    let replaced = broker.replace_order(&placed.id, &replace("route-1-r2")).await.unwrap();
    assert_eq!(replaced.limit_price, Some("1.01".parse().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fractional_order_under_a_dollar_is_refused_as_alpaca_refuses_it() {
    let emu = emulator().await;
    let broker = AlpacaBroker::new(adapter(&emu)).unwrap();
    // AAPL trades near $228: a thousandth of a share is 23 cents.
    let refused = broker.submit_order(&order("tiny-1", "AAPL", Side::Buy, "0.001", None)).await.unwrap_err();
    assert_eq!(refused.reject_reason(), Some(&RejectReason::InvalidRequest), "{refused}");
    assert!(refused.to_string().contains("minimal amount of order 1"), "{refused}");
    // A dollar's worth goes.
    assert!(broker.submit_order(&order("tiny-2", "AAPL", Side::Buy, "0.01", None)).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_asset_list_is_one_request_with_every_listed_asset() {
    let emu = emulator().await;
    let broker = AlpacaBroker::new(adapter(&emu)).unwrap();
    let before = emu.requests_served();
    let assets = broker.assets().await.unwrap();
    assert_eq!(emu.requests_served() - before, 1, "one request");
    let aapl = assets.iter().find(|a| a.symbol == sym("AAPL")).expect("AAPL is listed");
    assert!(aapl.tradable && aapl.fractionable);
    let edz = assets.iter().find(|a| a.symbol == sym("EDZ")).expect("EDZ is listed");
    assert!(!edz.fractionable, "as the single read says");
    assert_eq!(broker.asset(&sym("EDZ")).await.unwrap(), *edz);
}
