//! The trade_updates WebSocket (§5): authenticate (both accepted forms), listen, then every
//! trade update as JSON in binary frames, as Alpaca's paper stream sends them, or as MessagePack
//! when the upgrade asks for it with `Content-Type: application/msgpack` (client messages are
//! then accepted in either encoding).

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State as Extract;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::broadcast::{self, error::RecvError};

use crate::State;

pub async fn trade_updates(state: Extract<Arc<State>>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    let state = state.0;
    if let Some(min) = state.stream_reconnect_min {
        let now = tokio::time::Instant::now();
        let mut last = state.last_stream_upgrade.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|at| now.duration_since(at) < min) {
            // Alpaca answers rapid reconnects with 429 instead of 101.
            return (axum::http::StatusCode::TOO_MANY_REQUESTS, "too many requests").into_response();
        }
        *last = Some(now);
    }
    let msgpack = headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("msgpack"));
    ws.on_upgrade(move |socket| session(socket, state, msgpack))
}

/// A JSON value as MessagePack (integers stay integers, other numbers become floats).
fn to_msgpack(value: &Value) -> rmpv::Value {
    match value {
        Value::Null => rmpv::Value::Nil,
        Value::Bool(b) => rmpv::Value::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => rmpv::Value::from(i),
            (None, Some(u)) => rmpv::Value::from(u),
            _ => rmpv::Value::F64(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(t) => rmpv::Value::from(t.as_str()),
        Value::Array(items) => rmpv::Value::Array(items.iter().map(to_msgpack).collect()),
        Value::Object(map) => {
            rmpv::Value::Map(map.iter().map(|(k, v)| (rmpv::Value::from(k.as_str()), to_msgpack(v))).collect())
        }
    }
}

/// A MessagePack value as JSON (what a client's msgpack message says).
fn from_msgpack(value: &rmpv::Value) -> Value {
    match value {
        rmpv::Value::Boolean(b) => Value::Bool(*b),
        rmpv::Value::Integer(i) => i.as_i64().map_or_else(|| i.as_u64().map_or(Value::Null, Value::from), Value::from),
        rmpv::Value::F32(f) => Value::from(f64::from(*f)),
        rmpv::Value::F64(f) => Value::from(*f),
        rmpv::Value::String(t) => t.as_str().map_or(Value::Null, Value::from),
        rmpv::Value::Array(items) => Value::Array(items.iter().map(from_msgpack).collect()),
        rmpv::Value::Map(entries) => {
            Value::Object(entries.iter().filter_map(|(k, v)| Some((k.as_str()?.to_owned(), from_msgpack(v)))).collect())
        }
        rmpv::Value::Nil | rmpv::Value::Binary(_) | rmpv::Value::Ext(..) => Value::Null,
    }
}

/// One server message: JSON in a binary frame, or MessagePack.
fn frame(value: &Value, msgpack: bool) -> Message {
    if msgpack {
        let mut bytes = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = rmpv::encode::write_value(&mut bytes, &to_msgpack(value));
        Message::Binary(bytes.into())
    } else {
        Message::Binary(value.to_string().into_bytes().into())
    }
}

/// A client message: JSON (text or binary), or MessagePack on a msgpack session.
fn client_message(bytes: &[u8], msgpack: bool) -> Option<Value> {
    if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
        return Some(value);
    }
    if !msgpack {
        return None;
    }
    let mut reader = bytes;
    rmpv::decode::read_value(&mut reader).ok().map(|v| from_msgpack(&v))
}

fn credentials(msg: &Value) -> Option<(String, String)> {
    match msg.get("action").and_then(Value::as_str)? {
        "authenticate" => {
            let data = msg.get("data")?;
            Some((data.get("key_id")?.as_str()?.to_owned(), data.get("secret_key")?.as_str()?.to_owned()))
        }
        "auth" => Some((msg.get("key")?.as_str()?.to_owned(), msg.get("secret")?.as_str()?.to_owned())),
        _ => None,
    }
}

/// The next update for a session that listens; never, for one that does not.
async fn next_update(updates: &mut Option<broadcast::Receiver<Arc<str>>>) -> Result<Arc<str>, RecvError> {
    match updates {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

async fn session(mut socket: WebSocket, state: Arc<State>, msgpack: bool) {
    // Subscribed only while the session listens: Alpaca keeps nothing for a session that does
    // not (no backfill), so an update sent before `listen` (or after `listen []`) is lost to it.
    let mut updates: Option<broadcast::Receiver<Arc<str>>> = None;
    let mut outages = state.outages.subscribe();
    let mut authorized = false;
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let bytes: Vec<u8> = match incoming {
                    Some(Ok(Message::Text(t))) => t.as_bytes().to_vec(),
                    Some(Ok(Message::Binary(b))) => b.to_vec(),
                    Some(Ok(Message::Ping(p))) => {
                        if socket.send(Message::Pong(p)).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Some(Ok(Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                };
                let Some(msg) = client_message(&bytes, msgpack) else {
                    let reply = json!({"stream": "error", "data": {"error_message": "invalid syntax"}});
                    if socket.send(frame(&reply, msgpack)).await.is_err() {
                        return;
                    }
                    continue;
                };
                let reply = match msg.get("action").and_then(Value::as_str) {
                    Some("authenticate" | "auth") => {
                        authorized = credentials(&msg).is_some_and(|(k, s)| k == state.key_id && s == state.secret_key);
                        let status = if authorized { "authorized" } else { "unauthorized" };
                        json!({"stream": "authorization", "data": {"action": "authenticate", "status": status}})
                    }
                    Some("listen") if authorized => {
                        let wanted: Vec<String> = msg.pointer("/data/streams").and_then(Value::as_array).map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()).unwrap_or_default();
                        let listening = wanted.iter().any(|s| s == "trade_updates");
                        if !listening {
                            updates = None;
                        } else if updates.is_none() {
                            updates = Some(state.updates.subscribe());
                        }
                        let streams: Vec<&str> = if listening { vec!["trade_updates"] } else { Vec::new() };
                        json!({"stream": "listening", "data": {"streams": streams}})
                    }
                    Some("listen") => json!({"stream": "authorization", "data": {"status": "unauthorized", "action": "listen"}}),
                    _ => json!({"stream": "error", "data": {"error_message": "unknown action"}}),
                };
                if socket.send(frame(&reply, msgpack)).await.is_err() {
                    return;
                }
            }
            update = next_update(&mut updates) => match update {
                Ok(text) => {
                    let message = match serde_json::from_str::<Value>(&text) {
                        Ok(update) if msgpack => frame(&update, true),
                        _ => Message::Binary(text.as_bytes().to_vec().into()),
                    };
                    if socket.send(message).await.is_err() {
                        return;
                    }
                }
                // A client too slow to keep up loses the connection, as it would at Alpaca.
                Err(RecvError::Lagged(_) | RecvError::Closed) => return,
            },
            _ = outages.recv() => return,
        }
    }
}
