//! The market-data WebSocket (§6) at `/v2/{iex|sip|test}`: `connected`, `auth`, `subscribe` /
//! `unsubscribe` (any channel; quotes are the only data) with the full subscription state in
//! reply, then the simulated market's quotes in batches, as JSON text or (when asked with
//! `Content-Type: application/msgpack`) msgpack binary frames with extension timestamps.
//!
//! Alpaca's Basic-plan rules, with the limits of [`DataStreamConfig`]: one authenticated
//! session per key and feed (the next gets `406 connection limit exceeded` and is closed); on
//! `iex` at most `iex_symbol_limit` distinct trade and quote symbols per connection (a subscribe
//! past it gets `405 symbol limit exceeded` and changes nothing); a connection that has not
//! authenticated within `auth_timeout` gets `404 auth timeout` and is closed.

mod subscriptions;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State as Extract};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tranche_broker::QuoteFeed;

use crate::State;
use subscriptions::Subscriptions;

/// Alpaca's Basic plan: 30 symbols per `iex` connection.
pub const IEX_SYMBOL_LIMIT: usize = 30;
/// Alpaca's auth timeout as the emulator keeps it: 10 seconds after connecting.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// The market-data stream's limits (Alpaca's Basic plan by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataStreamConfig {
    /// Most distinct symbols one `iex` connection may hold across its trades and quotes
    /// (default 30; bars are not counted); 0 turns the limit off. `sip`, `delayed_sip` and
    /// `test` have no limit.
    pub iex_symbol_limit: usize,
    /// How long a connection may stay unauthenticated before `404 auth timeout` closes it
    /// (default 10 s); zero never times out.
    pub auth_timeout: Duration,
}

impl Default for DataStreamConfig {
    fn default() -> Self {
        Self { iex_symbol_limit: IEX_SYMBOL_LIMIT, auth_timeout: AUTH_TIMEOUT }
    }
}

impl DataStreamConfig {
    /// The symbol limit of `feed` (0: none).
    fn symbol_limit(&self, feed: &str) -> usize {
        if feed == "iex" {
            self.iex_symbol_limit
        } else {
            0
        }
    }
}

/// The limits the emulator runs with.
fn config_of(state: &State) -> DataStreamConfig {
    state.data_stream
}

/// The upgrade at `/v2/{feed}`: `iex`, `sip`, `delayed_sip` and `test`; any other is a 404.
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

fn error(code: u16, msg: &str) -> Message {
    control(&json!({"T": "error", "code": code, "msg": msg}))
}

/// Waits until `deadline`, or forever without one.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Applies a `subscribe` (or `unsubscribe`) to the connection's state and the quote source;
/// the reply: the whole state, or `405 symbol limit exceeded` with nothing changed.
async fn change(
    subscribed: &mut Subscriptions,
    quotes: &dyn QuoteFeed,
    subscribe: bool,
    msg: &Value,
    limit: usize,
) -> Message {
    match subscribed.apply(subscribe, msg, limit) {
        Ok(changed) => {
            if !changed.added.is_empty() {
                let _ = quotes.subscribe(&changed.added).await;
            }
            if !changed.removed.is_empty() {
                quotes.release(&changed.removed).await;
            }
            control(&subscribed.reply())
        }
        Err(subscriptions::LimitExceeded) => error(405, "symbol limit exceeded"),
    }
}

async fn session(mut socket: WebSocket, state: Arc<State>, feed: String, msgpack: bool) {
    let config = config_of(&state);
    // No deadline for zero, or for a timeout too long to be represented.
    let auth_deadline = (!config.auth_timeout.is_zero())
        .then(|| tokio::time::Instant::now().checked_add(config.auth_timeout))
        .flatten();
    let quotes = state.broker.quote_feed();
    let mut changes = quotes.changes();
    let mut drops = state.data_drops.subscribe();
    let mut subscribed = Subscriptions::default();
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
                    let _ = socket.send(error(400, "invalid syntax")).await;
                    continue;
                };
                let action = msg.get("action").and_then(Value::as_str).unwrap_or_default();
                let reply = match action {
                    "auth" if session_key.is_some() => error(403, "already authenticated"),
                    "auth" => {
                        let ok = msg.get("key").and_then(Value::as_str) == Some(state.key_id.as_str())
                            && msg.get("secret").and_then(Value::as_str) == Some(state.secret_key.as_str());
                        if !ok {
                            let _ = socket.send(error(402, "auth failed")).await;
                            break;
                        }
                        let key = format!("{}/{feed}", state.key_id);
                        let fresh = state.data_sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key.clone());
                        if !fresh {
                            let _ = socket.send(error(406, "connection limit exceeded")).await;
                            break;
                        }
                        session_key = Some(key);
                        control(&json!({"T": "success", "msg": "authenticated"}))
                    }
                    "subscribe" | "unsubscribe" if session_key.is_none() => error(401, "not authenticated"),
                    "subscribe" | "unsubscribe" => {
                        let limit = config.symbol_limit(&feed);
                        change(&mut subscribed, &quotes, action == "subscribe", &msg, limit).await
                    }
                    _ => error(400, "invalid syntax"),
                };
                if socket.send(reply).await.is_err() {
                    break;
                }
            }
            changed = changes.recv() => {
                let Ok(symbol) = changed else { continue };
                if !subscribed.wants_quote(&symbol) || state.market_data_silent.load(Ordering::Relaxed) {
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
            () = until(auth_deadline), if session_key.is_none() => {
                let _ = socket.send(error(404, "auth timeout")).await;
                let _ = socket.send(Message::Close(None)).await;
                break;
            }
            _ = drops.recv() => break,
        }
    }
    quotes.release(&subscribed.quote_symbols()).await;
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
