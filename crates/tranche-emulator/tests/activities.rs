//! Fill activities paged as Alpaca pages them, over real HTTP on loopback: more than 250
//! executions of orders in several symbols (none of them sent through Tranche) are read page by
//! page in both directions, each exactly once; the page size is capped at 100; a page token
//! continues strictly after its activity; bad parameters are a 422 with Alpaca's body. The
//! executions are awaited on the trade_updates stream, every wait bounded by a timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tranche_domain::{ClientOrderId, OrderRequest, Qty, Side, Symbol};
use tranche_emulator::{Emulator, EmulatorConfig, DEFAULT_KEY_ID, DEFAULT_SECRET_KEY};

mod support;
use support::get;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const SYMBOLS: [&str; 6] = ["AAPL", "MSFT", "SPY", "QQQ", "EDZ", "NVDA"];

fn ids(page: &Value) -> Vec<String> {
    page.as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect()
}

fn time(activity: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(activity["transaction_time"].as_str().unwrap()).unwrap().to_utc()
}

/// Follows page tokens from `query` until a page shorter than `size`; every activity seen.
async fn walk(emu: &Emulator, query: &str, size: usize) -> Vec<Value> {
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..100 {
        let path = match &token {
            Some(t) => format!("/v2/account/activities/FILL?{query}&page_token={t}"),
            None => format!("/v2/account/activities/FILL?{query}"),
        };
        let (status, page) = get(emu, &path).await;
        assert_eq!(status, 200, "{path}: {page}");
        let page = page.as_array().unwrap().clone();
        assert!(page.len() <= size, "{path}: a page of {}", page.len());
        token = page.last().map(|a| a["id"].as_str().unwrap().to_owned());
        let last = page.len() < size;
        seen.extend(page);
        if last {
            return seen;
        }
    }
    panic!("the pages never ended");
}

/// The next trade_updates message (Alpaca sends JSON in binary frames; text is read too).
async fn message(socket: &mut Socket) -> Value {
    loop {
        match socket.next().await.expect("the stream is open").unwrap() {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Binary(bytes) => return serde_json::from_slice(&bytes).unwrap(),
            _ => {}
        }
    }
}

/// An emulator with many executions: one-share market buys in every symbol, and a few large
/// ones that walk the book (partial fills, then the fill). Returns once every order has filled.
async fn emulator_with_fills() -> Emulator {
    let mut config = EmulatorConfig {
        start_at: Some(Utc.with_ymd_and_hms(2026, 3, 2, 14, 30, 0).unwrap()),
        requests_per_minute: 0,
        ..EmulatorConfig::default()
    };
    config.sim.account.starting_cash = "100000000".parse().unwrap();
    let emu = Emulator::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap();

    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/stream", emu.addr)).await.unwrap();
    let auth = format!(r#"{{"action":"auth","key":"{DEFAULT_KEY_ID}","secret":"{DEFAULT_SECRET_KEY}"}}"#);
    socket.send(Message::Text(auth.into())).await.unwrap();
    let listen = r#"{"action":"listen","data":{"streams":["trade_updates"]}}"#;
    socket.send(Message::Text(listen.into())).await.unwrap();
    // Updates are broadcast to listening clients only: wait for the listening reply.
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if message(&mut socket).await["stream"] == "listening" {
                return;
            }
        }
    })
    .await
    .expect("listening in time");

    let mut orders = 0;
    for i in 0..264 {
        let symbol = Symbol::parse(SYMBOLS[i % SYMBOLS.len()]).unwrap();
        let request = OrderRequest::day(
            ClientOrderId::from_broker(format!("other-{i}")),
            symbol,
            Side::Buy,
            Qty::new(1.into()),
            None,
        );
        emu.with_sim(|s| s.submit(&request)).unwrap();
        orders += 1;
    }
    for symbol in ["AAPL", "SPY"] {
        let symbol = Symbol::parse(symbol).unwrap();
        let quote = emu.with_sim(|s| s.latest_quote(&symbol)).unwrap();
        let big = quote.ask_size.get() * rust_decimal::Decimal::from(3);
        let request = OrderRequest::day(
            ClientOrderId::from_broker(format!("big-{symbol}")),
            symbol,
            Side::Buy,
            Qty::new(big),
            None,
        );
        emu.with_sim(|s| s.submit(&request)).unwrap();
        orders += 1;
    }

    // Every order's last event is its fill.
    tokio::time::timeout(Duration::from_secs(120), async {
        let mut filled = BTreeSet::new();
        while filled.len() < orders {
            let update = message(&mut socket).await;
            if update["stream"] == "trade_updates" && update["data"]["event"] == "fill" {
                filled.insert(update["data"]["order"]["id"].as_str().unwrap().to_owned());
            }
        }
    })
    .await
    .expect("every order filled in time");
    emu
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_activities_are_paged_as_alpaca_pages_them() {
    let emu = emulator_with_fills().await;
    let fills = emu.with_sim(|s| s.fill_activities(DateTime::UNIX_EPOCH));
    assert!(fills.len() > 250, "{} executions", fills.len());

    // Ascending, 100 a page: every execution once, ordered by time then id.
    let asc = walk(&emu, "direction=asc", 100).await;
    let asc_ids: Vec<String> = asc.iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(asc_ids.len(), fills.len());
    assert_eq!(asc_ids.iter().collect::<BTreeSet<_>>().len(), fills.len(), "no activity twice");
    let keys: Vec<(DateTime<Utc>, &String)> = asc.iter().map(time).zip(&asc_ids).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "ascending by time, then id");
    let executions: BTreeSet<&str> = fills.iter().map(|f| f.execution_id.as_str()).collect();
    let suffixes: BTreeSet<&str> = asc_ids.iter().map(|id| id.split_once("::").unwrap().1).collect();
    assert_eq!(suffixes, executions, "one activity per execution, the id ending in the execution id");
    let symbols: BTreeSet<&str> = asc.iter().map(|a| a["symbol"].as_str().unwrap()).collect();
    assert_eq!(symbols.len(), SYMBOLS.len(), "account-wide: every symbol");

    // Descending (the default), and small pages: the same activities in the same total order.
    let desc: Vec<String> = walk(&emu, "", 100).await.iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(desc, asc_ids.iter().rev().cloned().collect::<Vec<_>>());
    let small: Vec<String> =
        walk(&emu, "direction=asc&page_size=7", 7).await.iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(small, asc_ids);

    // The page size is capped at 100; a token continues strictly after its activity.
    let (status, capped) = get(&emu, "/v2/account/activities/FILL?direction=asc&page_size=1000").await;
    assert_eq!(status, 200);
    assert_eq!(ids(&capped), asc_ids[..100]);
    let token = &asc_ids[141];
    let (_, next) =
        get(&emu, &format!("/v2/account/activities/FILL?direction=asc&page_size=5&page_token={token}")).await;
    assert_eq!(ids(&next), asc_ids[142..147]);
    let (_, back) =
        get(&emu, &format!("/v2/account/activities/FILL?direction=desc&page_size=5&page_token={token}")).await;
    assert_eq!(ids(&back), asc_ids[136..141].iter().rev().cloned().collect::<Vec<_>>());

    // after and until: strictly later / strictly earlier.
    let t = time(&asc[120]).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let (_, later) = get(&emu, &format!("/v2/account/activities/FILL?direction=asc&after={t}")).await;
    assert!(ids(&later).iter().all(|id| asc_ids.iter().position(|a| a == id) > Some(120)));
    assert!(later.as_array().unwrap().iter().all(|a| time(a) > time(&asc[120])));
    let (_, earlier) = get(&emu, &format!("/v2/account/activities/FILL?direction=asc&page_size=100&until={t}")).await;
    assert!(earlier.as_array().unwrap().iter().all(|a| time(a) < time(&asc[120])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_activity_says_where_its_order_stood_after_it() {
    let emu = emulator_with_fills().await;
    let asc = walk(&emu, "direction=asc", 100).await;
    let eastern = chrono::FixedOffset::west_opt(5 * 3600).unwrap();
    let mut cum: HashMap<String, rust_decimal::Decimal> = HashMap::new();
    let mut last_type: HashMap<String, String> = HashMap::new();
    for a in &asc {
        assert_eq!(a["activity_type"], "FILL");
        let (prefix, _) = a["id"].as_str().unwrap().split_once("::").unwrap();
        assert_eq!(prefix, time(a).with_timezone(&eastern).format("%Y%m%d%H%M%S%3f").to_string(), "{a}");
        let order = a["order_id"].as_str().unwrap().to_owned();
        let qty: rust_decimal::Decimal = a["qty"].as_str().unwrap().parse().unwrap();
        let total = cum.entry(order.clone()).or_default();
        *total += qty;
        assert_eq!(a["cum_qty"].as_str().unwrap().parse::<rust_decimal::Decimal>().unwrap(), *total, "{a}");
        last_type.insert(order, a["type"].as_str().unwrap().to_owned());
        let partial = a["type"] == "partial_fill";
        assert_eq!(a["order_status"], if partial { "partially_filled" } else { "filled" }, "{a}");
        assert_eq!(a["leaves_qty"] == "0", !partial, "{a}");
    }
    assert!(last_type.values().all(|t| t == "fill"), "every order's last execution filled it");
    assert!(asc.iter().any(|a| a["type"] == "partial_fill"), "the large orders filled in parts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_paging_parameters_are_refused_with_alpacas_422() {
    let config = EmulatorConfig {
        start_at: Some(Utc.with_ymd_and_hms(2026, 3, 2, 14, 30, 0).unwrap()),
        ..EmulatorConfig::default()
    };
    let emu = Emulator::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap();
    let cases = [
        ("page_size_zero", "page_size=0"),
        ("page_size_text", "page_size=ten"),
        ("page_size_negative", "page_size=-5"),
        ("direction", "direction=sideways"),
        ("after", "after=yesterday"),
        ("until", "until=2026-13-45"),
        ("page_token", "page_token=not-an-activity"),
    ];
    for (name, query) in cases {
        let (status, body) = get(&emu, &format!("/v2/account/activities/FILL?{query}")).await;
        assert_eq!(status, 422, "{name}: {body}");
        assert_eq!(body["code"], 40_010_001, "{name}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{name}: {body}");
    }
    let (status, body) = get(&emu, "/v2/account/activities/FILL?page_size=100&direction=asc").await;
    assert_eq!((status, body), (200, Value::Array(Vec::new())), "no executions yet: an empty page");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_activities_are_the_fills_and_filter_by_type() {
    let emu = emulator_with_fills().await;
    let fills = walk(&emu, "direction=asc", 100).await;
    let (status, all) = get(&emu, "/v2/account/activities?direction=asc&page_size=100").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(ids(&all), fills[..100].iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>());
    let (_, typed) = get(&emu, "/v2/account/activities?activity_types=DIV,FILL&direction=asc&page_size=100").await;
    assert_eq!(ids(&typed), ids(&all));
    let (status, none) = get(&emu, "/v2/account/activities?activity_types=DIV,TRANS").await;
    assert_eq!((status, none), (200, Value::Array(Vec::new())));
    let (status, body) = get(&emu, "/v2/account/activities?activity_types=FILL,BOGUS").await;
    assert_eq!(status, 422);
    assert_eq!(body["message"], "invalid activity type: BOGUS");
    let (status, dividends) = get(&emu, "/v2/account/activities/DIV").await;
    assert_eq!((status, dividends), (200, Value::Array(Vec::new())));
    let (status, _) = get(&emu, "/v2/account/activities/BOGUS").await;
    assert_eq!(status, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_ids_end_in_the_id_the_simulator_reports_for_the_activity() {
    let emu = emulator_with_fills().await;
    emu.with_sim(|s| {
        s.set_faults(tranche_sim::FaultConfig { activity_ids_unrelated: true, ..tranche_sim::FaultConfig::none() })
    });
    let reported: BTreeSet<String> =
        emu.with_sim(|s| s.fill_activities(DateTime::UNIX_EPOCH)).iter().map(|f| f.execution_id.to_string()).collect();
    let streamed: BTreeSet<String> = emu.with_sim(|s| s.fills().iter().map(|f| f.execution_id.to_string()).collect());
    assert!(reported.is_disjoint(&streamed), "the simulator's activity ids differ from the execution ids");
    let asc = walk(&emu, "direction=asc", 100).await;
    let suffixes: BTreeSet<String> =
        asc.iter().map(|a| a["id"].as_str().unwrap().split_once("::").unwrap().1.to_owned()).collect();
    assert_eq!(suffixes, reported);
    assert_eq!(walk(&emu, "direction=asc&page_size=9", 9).await, asc, "stable ids: paging still visits each once");
}
