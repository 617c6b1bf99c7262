//! Every recorded Alpaca payload in `tests/fixtures/alpaca` (a copy of the project's shared
//! fixtures, with its provenance in the README there) that the adapter reads decodes
//! (orders, accounts, positions, assets, clocks, fill activities, trade updates, latest quotes)
//! and becomes a domain value. The one exception is a payload whose symbol is not a ticker
//! (alpaca-py's fixtures contain "AAPL`"): it decodes, and its conversion is refused with an
//! error naming the symbol, never a panic and never a guess.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use serde_json::Value;
use tranche_alpaca::dto::{
    AccountDto, AssetDto, ClockDto, FillActivityDto, LatestQuoteDto, OrderDto, PositionDto, TradeUpdateDto,
};
use tranche_domain::Symbol;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/alpaca")
}

/// Decodes one payload by its shape; returns what it was, or `None` for payloads the adapter
/// does not read (market-data stream messages, requests the client sends, configurations).
fn decode(value: &Value) -> Result<Option<&'static str>, String> {
    let obj = match value {
        Value::Array(items) => {
            let mut kind = None;
            for item in items {
                kind = decode(item)?.or(kind);
            }
            return Ok(kind);
        }
        Value::Object(o) => o,
        _ => return Ok(None),
    };
    let has = |k: &str| obj.contains_key(k);
    let e = |e: &dyn std::fmt::Display| e.to_string();
    if obj.get("stream").and_then(Value::as_str) == Some("trade_updates") {
        let dto: TradeUpdateDto = serde_json::from_value(obj["data"].clone()).map_err(|x| e(&x))?;
        dto.into_update().map_err(|x| e(&x))?;
        return Ok(Some("trade update"));
    }
    if has("event") && has("order") {
        let dto: TradeUpdateDto = serde_json::from_value(value.clone()).map_err(|x| e(&x))?;
        dto.into_update().map_err(|x| e(&x))?;
        return Ok(Some("trade update"));
    }
    if obj.get("activity_type").and_then(Value::as_str) == Some("FILL") {
        let dto: FillActivityDto = serde_json::from_value(value.clone()).map_err(|x| e(&x))?;
        assert!(!dto.execution_id().is_empty());
        return Ok(Some("fill activity"));
    }
    if has("client_order_id") && has("status") && has("side") {
        let dto: OrderDto = serde_json::from_value(value.clone()).map_err(|x| e(&x))?;
        dto.into_order().map_err(|x| e(&x))?;
        return Ok(Some("order"));
    }
    if has("body") && has("status") {
        return decode(&obj["body"]);
    }
    if has("buying_power") && has("cash") {
        let dto: AccountDto = serde_json::from_value(value.clone()).map_err(|x| e(&x))?;
        dto.into_account();
        return Ok(Some("account"));
    }
    if has("qty_available") || (has("avg_entry_price") && has("qty")) {
        let dto: PositionDto = serde_json::from_value(value.clone()).map_err(|x| e(&x))?;
        dto.into_position().map_err(|x| e(&x))?;
        return Ok(Some("position"));
    }
    if has("tradable") && has("symbol") {
        let dto: AssetDto = serde_json::from_value(value.clone()).map_err(|x| e(&x))?;
        dto.into_asset().map_err(|x| e(&x))?;
        return Ok(Some("asset"));
    }
    if has("is_open") && has("next_open") {
        let dto: ClockDto = serde_json::from_value(value.clone()).map_err(|x| e(&x))?;
        dto.into_clock().map_err(|x| e(&x))?;
        return Ok(Some("clock"));
    }
    if obj.get("quote").is_some_and(|q| q.get("bp").is_some()) {
        let dto: LatestQuoteDto = serde_json::from_value(value.clone()).map_err(|x| e(&x))?;
        dto.into_quote(&Symbol::parse("AAPL").unwrap()).map_err(|x| e(&x))?;
        return Ok(Some("latest quote"));
    }
    if let Some(Value::Object(quotes)) = obj.get("quotes") {
        for (symbol, quote) in quotes {
            let wrapped = serde_json::json!({"symbol": symbol, "quote": quote});
            let dto: LatestQuoteDto = serde_json::from_value(wrapped).map_err(|x| e(&x))?;
            dto.into_quote(&Symbol::parse(symbol).unwrap()).map_err(|x| e(&x))?;
        }
        return Ok(Some("latest quote"));
    }
    Ok(None)
}

#[test]
fn every_recorded_payload_the_adapter_reads_decodes() {
    let dir = fixtures_dir();
    let mut kinds = std::collections::BTreeMap::new();
    let mut failures = Vec::new();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("fixtures at {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let fixture: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        match decode(&fixture["body"]) {
            Ok(Some(kind)) => *kinds.entry(kind).or_insert(0) += 1,
            Ok(None) => {}
            Err(e) if e.contains("unreadable Alpaca payload: symbol `") && e.contains('`') => {
                *kinds.entry("refused: not a ticker").or_insert(0) += 1;
            }
            Err(e) => failures.push(format!("{}: {e}", path.file_name().unwrap().to_string_lossy())),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    for kind in ["order", "account", "position", "asset", "clock", "fill activity", "trade update", "latest quote"] {
        assert!(kinds.get(kind).copied().unwrap_or(0) > 0, "no {kind} fixture decoded: {kinds:?}");
    }
}
