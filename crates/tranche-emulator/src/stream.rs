//! The trade_updates WebSocket (§5): authenticate (both accepted forms), listen, then every
//! trade update as JSON in binary frames, as Alpaca's paper stream sends them.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State as Extract;
use axum::response::Response;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use crate::State;

pub async fn trade_updates(state: Extract<Arc<State>>, ws: WebSocketUpgrade) -> Response {
    let state = state.0;
    ws.on_upgrade(move |socket| session(socket, state))
}

fn frame(value: &Value) -> Message {
    Message::Binary(value.to_string().into_bytes().into())
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

async fn session(mut socket: WebSocket, state: Arc<State>) {
    let mut updates = state.updates.subscribe();
    let mut outages = state.outages.subscribe();
    let (mut authorized, mut listening) = (false, false);
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                    Some(Ok(Message::Ping(p))) => {
                        if socket.send(Message::Pong(p)).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Some(Ok(Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                };
                let Ok(msg) = serde_json::from_str::<Value>(&text) else {
                    let reply = json!({"stream": "error", "data": {"error_message": "invalid syntax"}});
                    if socket.send(frame(&reply)).await.is_err() {
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
                        listening = wanted.iter().any(|s| s == "trade_updates");
                        let streams: Vec<&str> = if listening { vec!["trade_updates"] } else { Vec::new() };
                        json!({"stream": "listening", "data": {"streams": streams}})
                    }
                    Some("listen") => json!({"stream": "authorization", "data": {"status": "unauthorized", "action": "listen"}}),
                    _ => json!({"stream": "error", "data": {"error_message": "unknown action"}}),
                };
                if socket.send(frame(&reply)).await.is_err() {
                    return;
                }
            }
            update = updates.recv(), if listening => match update {
                Ok(text) => {
                    if socket.send(Message::Binary(text.as_bytes().to_vec().into())).await.is_err() {
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
