//! The market-data WebSocket (§6) at `/v2/{iex|sip|test}`: `connected`, `auth`, `subscribe` /
//! `unsubscribe` (quotes) with the full subscription state in reply, then the simulated
//! market's quotes in batches, as JSON text or (when asked with `Content-Type:
//! application/msgpack`) msgpack binary frames with extension timestamps. One authenticated
//! session per key and feed: the next gets `406 connection limit exceeded`.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State as Extract};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tranche_broker::QuoteFeed;
use tranche_domain::Symbol;

use crate::State;

pub async fn market_data(
    state: Extract<Arc<State>>,
    Path(feed): Path<String>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let state = state.0;
    if !matches!(feed.as_str(), "iex" | "sip" | "test" | "delayed_sip") {
        return (axum::http::StatusCode::NOT_FOUND, "unknown feed").into_response();
    }
    let msgpack = headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("msgpack"));
    ws.on_upgrade(move |socket| session(socket, state, feed, msgpack))
}

fn control(value: &Value) -> Message {
    Message::Text(Value::Array(vec![value.clone()]).to_string().into())
}

async fn session(mut socket: WebSocket, state: Arc<State>, feed: String, msgpack: bool) {
    let quotes = state.broker.quote_feed();
    let mut changes = quotes.changes();
    let mut drops = state.data_drops.subscribe();
    let mut subscribed: BTreeSet<Symbol> = BTreeSet::new();
    let mut session_key: Option<String> = None;
    if socket.send(control(&json!({"T": "success", "msg": "connected"}))).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                    Some(Ok(Message::Ping(p))) => {
                        let _ = socket.send(Message::Pong(p)).await;
                        continue;
                    }
                    Some(Ok(Message::Pong(_))) => continue,
                    _ => break,
                };
                let Ok(msg) = serde_json::from_str::<Value>(&text) else {
                    let _ = socket.send(control(&json!({"T": "error", "code": 400, "msg": "invalid syntax"}))).await;
                    continue;
                };
                let action = msg.get("action").and_then(Value::as_str).unwrap_or_default();
                let reply = match action {
                    "auth" if session_key.is_some() => json!({"T": "error", "code": 403, "msg": "already authenticated"}),
                    "auth" => {
                        let ok = msg.get("key").and_then(Value::as_str) == Some(state.key_id.as_str())
                            && msg.get("secret").and_then(Value::as_str) == Some(state.secret_key.as_str());
                        if !ok {
                            let _ = socket.send(control(&json!({"T": "error", "code": 402, "msg": "auth failed"}))).await;
                            break;
                        }
                        let key = format!("{}/{feed}", state.key_id);
                        let fresh = state.data_sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key.clone());
                        if !fresh {
                            let _ = socket.send(control(&json!({"T": "error", "code": 406, "msg": "connection limit exceeded"}))).await;
                            break;
                        }
                        session_key = Some(key);
                        json!({"T": "success", "msg": "authenticated"})
                    }
                    "subscribe" | "unsubscribe" if session_key.is_none() => json!({"T": "error", "code": 401, "msg": "not authenticated"}),
                    "subscribe" | "unsubscribe" => {
                        let symbols: Vec<Symbol> = msg.get("quotes").and_then(Value::as_array).map(|a| a.iter().filter_map(|v| v.as_str()).filter_map(|s| Symbol::parse(s).ok()).collect()).unwrap_or_default();
                        let changed: Vec<Symbol> = if action == "subscribe" {
                            symbols.into_iter().filter(|s| subscribed.insert(s.clone())).collect()
                        } else {
                            symbols.into_iter().filter(|s| subscribed.remove(s)).collect()
                        };
                        if action == "subscribe" {
                            let _ = quotes.subscribe(&changed).await;
                        } else {
                            quotes.release(&changed).await;
                        }
                        let list: Vec<&str> = subscribed.iter().map(Symbol::as_str).collect();
                        json!({"T": "subscription", "trades": [], "quotes": list, "bars": [], "updatedBars": [], "dailyBars": [], "statuses": [], "lulds": [], "corrections": [], "cancelErrors": []})
                    }
                    _ => json!({"T": "error", "code": 400, "msg": "invalid syntax"}),
                };
                if socket.send(control(&reply)).await.is_err() {
                    break;
                }
            }
            changed = changes.recv() => {
                let Ok(symbol) = changed else { continue };
                if !subscribed.contains(&symbol) || state.market_data_silent.load(Ordering::Relaxed) {
                    continue;
                }
                if state.silent_symbols.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(&symbol) {
                    continue;
                }
                let Some(quote) = quotes.latest(&symbol) else { continue };
                let frame = if msgpack {
                    Message::Binary(tranche_pricing_free::msgpack_quote(&quote).into())
                } else {
                    Message::Text(tranche_pricing_free::json_quote(&quote).into())
                };
                if socket.send(frame).await.is_err() {
                    break;
                }
            }
            _ = drops.recv() => break,
        }
    }
    quotes.release(&subscribed.into_iter().collect::<Vec<_>>()).await;
    if let Some(key) = session_key {
        state.data_sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&key);
    }
}

/// Quote frames in the stream's formats, written here field by field (the emulator does not
/// share the client's codec, so the two check each other).
mod tranche_pricing_free {
    use tranche_domain::Quote;

    fn number(d: rust_decimal::Decimal) -> serde_json::Value {
        d.normalize()
            .to_string()
            .parse::<serde_json::Number>()
            .map_or(serde_json::Value::Null, serde_json::Value::Number)
    }

    pub fn json_quote(q: &Quote) -> String {
        serde_json::json!([{"T": "q", "S": q.symbol.as_str(), "bx": "V", "bp": number(q.bid.get()), "bs": number(q.bid_size.get()),
            "ax": "V", "ap": number(q.ask.get()), "as": number(q.ask_size.get()),
            "t": q.time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true), "c": ["R"], "z": "C"}])
        .to_string()
    }

    pub fn msgpack_quote(q: &Quote) -> Vec<u8> {
        let f = |d: rust_decimal::Decimal| d.to_string().parse::<f64>().unwrap_or(0.0);
        let mut ts = Vec::with_capacity(12);
        ts.extend_from_slice(&q.time.timestamp_subsec_nanos().to_be_bytes());
        ts.extend_from_slice(&q.time.timestamp().to_be_bytes());
        let value = rmpv::Value::Array(vec![rmpv::Value::Map(vec![
            ("T".into(), "q".into()),
            ("S".into(), q.symbol.as_str().into()),
            ("bp".into(), rmpv::Value::F64(f(q.bid.get()))),
            ("bs".into(), rmpv::Value::F64(f(q.bid_size.get()))),
            ("ap".into(), rmpv::Value::F64(f(q.ask.get()))),
            ("as".into(), rmpv::Value::F64(f(q.ask_size.get()))),
            ("t".into(), rmpv::Value::Ext(-1, ts)),
        ])]);
        let mut out = Vec::new();
        let _ = rmpv::encode::write_value(&mut out, &value);
        out
    }
}
