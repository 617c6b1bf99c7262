//! Where the emulator answers as Alpaca does and a lenient server would not, over raw HTTP on
//! loopback: a symbol the broker does not list is not found (no market invented for a typo),
//! and symbols are case-sensitive. (The budget's 429 without `Retry-After` is held by the
//! adapter's emulator tests.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use tranche_emulator::{Emulator, EmulatorConfig};

mod support;
use support::{get, request};

async fn emulator() -> Emulator {
    let config = EmulatorConfig { requests_per_minute: 0, ..EmulatorConfig::default() };
    Emulator::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap()
}

fn buy(symbol: &str, id: &str) -> serde_json::Value {
    json!({"symbol": symbol, "qty": "1", "side": "buy", "type": "market", "time_in_force": "day", "client_order_id": id})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symbol_the_broker_does_not_list_is_not_found_and_cannot_be_traded() {
    let emu = emulator().await;
    let (status, body) = get(&emu, "/v2/assets/AAPLL").await;
    assert_eq!(status, 404, "{body}");
    let refused = request(&emu, "POST", "/v2/orders", Some(&buy("AAPLL", "typo-1"))).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(refused.body["message"].as_str().unwrap().contains("not found"), "{}", refused.body);
    let (status, body) = get(&emu, "/v2/assets/AAPL").await;
    assert_eq!((status, body["symbol"].as_str()), (200, Some("AAPL")), "a listed symbol is there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symbols_are_case_sensitive() {
    let emu = emulator().await;
    let (status, body) = get(&emu, "/v2/assets/aapl").await;
    assert_eq!(status, 404, "{body}");
    let refused = request(&emu, "POST", "/v2/orders", Some(&buy("aapl", "lower-1"))).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    let placed = request(&emu, "POST", "/v2/orders", Some(&buy("AAPL", "upper-1"))).await;
    assert_eq!(placed.status, 200, "{}", placed.body);
}
