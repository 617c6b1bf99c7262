//! The account owner's own resting orders (from the simulator configuration, as `--sim-config`
//! gives them) are listed like any order, and Alpaca's wash-trade refusal names the order in the
//! way: HTTP 403, code 40310000, `reject_reason` and `existing_order_id`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;

use chrono::{TimeZone, Utc};
use tranche_domain::{Price, Qty, Side, Symbol};
use tranche_emulator::{Emulator, EmulatorConfig, DEFAULT_KEY_ID, DEFAULT_SECRET_KEY};
use tranche_sim::{StartPosition, UserOrder};

/// One request with the default key pair on a plain socket; the status line and the JSON body.
fn call(address: &str, method: &str, path: &str, body: &str) -> (String, serde_json::Value) {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nAPCA-API-KEY-ID: {DEFAULT_KEY_ID}\r\n\
         APCA-API-SECRET-KEY: {DEFAULT_SECRET_KEY}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, json) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), serde_json::from_str(json).unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_own_orders_are_listed_and_the_wash_trade_refusal_names_the_one_in_the_way() {
    let aapl = Symbol::parse("AAPL").unwrap();
    let mut config = EmulatorConfig {
        start_at: Some(Utc.with_ymd_and_hms(2026, 11, 28, 17, 30, 0).unwrap()),
        requests_per_minute: 0,
        ..EmulatorConfig::default()
    };
    config.sim.account.positions =
        vec![StartPosition { symbol: aapl.clone(), qty: Qty::new(10.into()), avg_entry_price: None }];
    config.sim.account.open_orders = vec![
        UserOrder {
            symbol: aapl.clone(),
            side: Side::Buy,
            qty: Qty::new(1.into()),
            limit_price: Some(Price::new("1.00".parse().unwrap())),
            stop_price: None,
        },
        UserOrder {
            symbol: Symbol::parse("MSFT").unwrap(),
            side: Side::Buy,
            qty: Qty::new(1.into()),
            limit_price: None,
            stop_price: Some(Price::new("9999.00".parse().unwrap())),
        },
    ];
    let emulator = Emulator::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap();
    let address = emulator.addr.to_string();
    tokio::task::spawn_blocking(move || {
        let (status, open) = call(&address, "GET", "/v2/orders?status=open", "");
        assert!(status.contains("200"), "{status}");
        let ids: Vec<&str> = open.as_array().unwrap().iter().map(|o| o["client_order_id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), 2, "{open}");
        assert!(ids.contains(&"user-0") && ids.contains(&"user-1"), "{ids:?}");
        let stop = open.as_array().unwrap().iter().find(|o| o["client_order_id"] == "user-1").unwrap();
        assert_eq!(stop["type"], "stop", "{stop}");
        assert_eq!(stop["stop_price"], "9999", "{stop}");

        let sell = r#"{"symbol":"AAPL","qty":"1","side":"sell","type":"market","time_in_force":"day"}"#;
        let (status, body) = call(&address, "POST", "/v2/orders", sell);
        assert!(status.contains("403"), "{status} {body}");
        assert_eq!(body["code"], 40_310_000);
        assert_eq!(body["message"], "potential wash trade detected. use complex orders");
        assert_eq!(body["reject_reason"], "opposite side limit order exists");
        let user_buy = open.as_array().unwrap().iter().find(|o| o["client_order_id"] == "user-0").unwrap();
        assert_eq!(body["existing_order_id"], user_buy["id"]);
    })
    .await
    .unwrap();
}
