//! The market-data WebSocket (§6) at `/v2/{iex|sip|test}`: `connected`, `auth`, `subscribe` /
//! `unsubscribe` (any channel; quotes and trades carry data) with the full subscription state in
//! reply, then the simulated market's quotes and prints (its tape) as they happen. Every frame
//! in both directions is JSON text, or with `Content-Type: application/msgpack` at the upgrade
//! MessagePack binary (data with extension timestamps), as Alpaca's SDKs speak it.
//!
//! Alpaca's Basic-plan rules, with the limits of [`DataStreamConfig`]: one authenticated
//! session per key and feed (the next gets `406 connection limit exceeded` and is closed); on
//! `iex` at most `iex_symbol_limit` distinct trade and quote symbols per connection (a subscribe
//! past it gets `405 symbol limit exceeded` and changes nothing); a connection that has not
//! authenticated within `auth_timeout` gets `404 auth timeout` and is closed. A session holds
//! nothing once it ends: its subscriptions are released and the open-connection count falls.

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
    /// How long an authenticated session that ended without a close frame (a dropped
    /// connection, a client gone) still holds its key's one session: a new connection of the
    /// key meanwhile is refused with `406 connection limit exceeded` (Alpaca keeps such a
    /// half-dead session about 90 s, pitfall 1). Zero (the default here) frees it at once.
    pub half_dead_hold: Duration,
}

impl Default for DataStreamConfig {
    fn default() -> Self {
        Self { iex_symbol_limit: IEX_SYMBOL_LIMIT, auth_timeout: AUTH_TIMEOUT, half_dead_hold: Duration::ZERO }
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

/// The upgrade at `/v2/{feed}`: `iex`, `sip`, `delayed_sip` and `test`; an upgrade to any other
/// is a 404. A plain request on this path is a REST call the emulator does not have (e.g.
/// `GET /v2/watchlists`): 501 naming it.
pub async fn market_data(
    state: Extract<Arc<State>>,
    Path(feed): Path<String>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        return crate::rest::not_implemented_call(&axum::http::Method::GET, uri.path());
    };
    let state = state.0;
    if !matches!(feed.as_str(), "iex" | "sip" | "test" | "delayed_sip") {
        return (axum::http::StatusCode::NOT_FOUND, "unknown feed").into_response();
    }
    let msgpack = headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("msgpack"));
    let wire = if msgpack { Wire::MessagePack } else { Wire::Json };
    ws.on_upgrade(move |socket| session(socket, state, feed, wire))
}

/// The encoding of one connection, fixed at the upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Json,
    MessagePack,
}

impl Wire {
    /// A control message (`[{..}]`) in this connection's encoding.
    fn control(self, value: &Value) -> Message {
        let batch = Value::Array(vec![value.clone()]);
        match self {
            Wire::Json => Message::Text(batch.to_string().into()),
            Wire::MessagePack => {
                let mut out = Vec::new();
                let _ = rmpv::encode::write_value(&mut out, &msgpack_value(&batch));
                Message::Binary(out.into())
            }
        }
    }

    fn error(self, code: u16, msg: &str) -> Message {
        self.control(&json!({"T": "error", "code": code, "msg": msg}))
    }

    /// A client message: in a JSON session, JSON text or a binary frame holding JSON or
    /// MessagePack (some clients send either as binary); in a MessagePack session, a binary
    /// frame of MessagePack only, as Alpaca's SDKs send. `None` when it is none of these.
    fn decode(self, data: &[u8], binary: bool) -> Option<Value> {
        if self == Wire::Json {
            if let Ok(value) = serde_json::from_slice::<Value>(data) {
                return Some(value);
            }
        }
        if !binary {
            return None;
        }
        let mut reader = data;
        let value = rmpv::decode::read_value(&mut reader).ok()?;
        reader.is_empty().then(|| json_value(&value)).flatten()
    }
}

/// A JSON value as MessagePack (integers stay integers, other numbers become floats).
fn msgpack_value(value: &Value) -> rmpv::Value {
    match value {
        Value::Null => rmpv::Value::Nil,
        Value::Bool(b) => rmpv::Value::Boolean(*b),
        Value::Number(n) => n
            .as_i64()
            .map(rmpv::Value::from)
            .or_else(|| n.as_u64().map(rmpv::Value::from))
            .unwrap_or_else(|| rmpv::Value::F64(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => rmpv::Value::from(s.as_str()),
        Value::Array(items) => rmpv::Value::Array(items.iter().map(msgpack_value).collect()),
        Value::Object(map) => {
            rmpv::Value::Map(map.iter().map(|(k, v)| (rmpv::Value::from(k.as_str()), msgpack_value(v))).collect())
        }
    }
}

/// A MessagePack client message as JSON; `None` for what JSON cannot hold (binary, extensions,
/// non-string keys, non-finite floats).
fn json_value(value: &rmpv::Value) -> Option<Value> {
    Some(match value {
        rmpv::Value::Nil => Value::Null,
        rmpv::Value::Boolean(b) => Value::Bool(*b),
        rmpv::Value::Integer(i) => i.as_i64().map(Value::from).or_else(|| i.as_u64().map(Value::from))?,
        rmpv::Value::F32(f) => serde_json::Number::from_f64(f64::from(*f)).map(Value::Number)?,
        rmpv::Value::F64(f) => serde_json::Number::from_f64(*f).map(Value::Number)?,
        rmpv::Value::String(s) => Value::String(s.as_str()?.to_owned()),
        rmpv::Value::Array(items) => Value::Array(items.iter().map(json_value).collect::<Option<_>>()?),
        rmpv::Value::Map(entries) => Value::Object(
            entries.iter().map(|(k, v)| Some((k.as_str()?.to_owned(), json_value(v)?))).collect::<Option<_>>()?,
        ),
        rmpv::Value::Binary(_) | rmpv::Value::Ext(..) => return None,
    })
}

/// Counts a market-data connection while it is open.
struct Open<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Open<'a> {
    fn count(gauge: &'a std::sync::atomic::AtomicUsize) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(gauge)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Waits until `deadline`, or forever without one.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Applies a `subscribe` (or `unsubscribe`) to the connection's state and the market (a symbol
/// with quotes or trades subscribed keeps its market running); the reply: the whole state, or
/// `405 symbol limit exceeded` with nothing changed.
async fn change(
    subscribed: &mut Subscriptions,
    quotes: &dyn QuoteFeed,
    subscribe: bool,
    msg: &Value,
    limit: usize,
    wire: Wire,
) -> Message {
    match subscribed.apply(subscribe, msg, limit) {
        Ok(changed) => {
            if !changed.added.is_empty() {
                let _ = quotes.subscribe(&changed.added).await;
            }
            if !changed.removed.is_empty() {
                quotes.release(&changed.removed);
            }
            wire.control(&subscribed.reply())
        }
        Err(subscriptions::LimitExceeded) => wire.error(405, "symbol limit exceeded"),
    }
}

/// One client's session state: who it is once authenticated and what it subscribed.
struct Client {
    state: Arc<State>,
    feed: String,
    wire: Wire,
    quotes: tranche_sim::SimQuoteFeed,
    subscribed: Subscriptions,
    /// The `key/feed` this session holds once authenticated (one per key and feed).
    key: Option<String>,
}

impl Client {
    /// The answer to one client message, and whether the connection closes after it.
    async fn answer(&mut self, msg: &Value) -> (Message, bool) {
        let wire = self.wire;
        let action = msg.get("action").and_then(Value::as_str).unwrap_or_default();
        let reply = match action {
            "auth" if self.key.is_some() => wire.error(403, "already authenticated"),
            "auth" => {
                let state = &self.state;
                let ok = msg.get("key").and_then(Value::as_str) == Some(state.key_id.as_str())
                    && msg.get("secret").and_then(Value::as_str) == Some(state.secret_key.as_str());
                if !ok {
                    return (wire.error(402, "auth failed"), true);
                }
                let key = format!("{}/{}", state.key_id, self.feed);
                let fresh =
                    state.data_sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key.clone());
                if !fresh {
                    return (wire.error(406, "connection limit exceeded"), true);
                }
                self.key = Some(key);
                wire.control(&json!({"T": "success", "msg": "authenticated"}))
            }
            "subscribe" | "unsubscribe" if self.key.is_none() => wire.error(401, "not authenticated"),
            "subscribe" | "unsubscribe" => {
                let limit = config_of(&self.state).symbol_limit(&self.feed);
                change(&mut self.subscribed, &self.quotes, action == "subscribe", msg, limit, wire).await
            }
            _ => wire.error(400, "invalid syntax"),
        };
        (reply, false)
    }

    /// Whether nothing may be sent now (a stalled feed).
    fn silent(&self) -> bool {
        self.state.market_data_silent.load(Ordering::Relaxed)
    }

    /// The frame of `symbol`'s new quote, when this client wants it.
    fn quote_frame(&self, symbol: &tranche_domain::Symbol) -> Option<Message> {
        if !self.subscribed.wants_quote(symbol) || self.silent() {
            return None;
        }
        if self.state.silent_symbols.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(symbol) {
            return None;
        }
        let quote = self.quotes.latest(symbol)?;
        Some(match self.wire {
            Wire::MessagePack => Message::Binary(tranche_pricing_free::msgpack_quote(&quote).into()),
            Wire::Json => Message::Text(tranche_pricing_free::json_quote(&quote).into()),
        })
    }

    /// The frame of a print, when this client wants it.
    fn trade_frame(&self, print: &tranche_sim::Print) -> Option<Message> {
        if !self.subscribed.wants_trade(&print.symbol) || self.silent() {
            return None;
        }
        Some(match self.wire {
            Wire::MessagePack => Message::Binary(tranche_pricing_free::msgpack_trade(print).into()),
            Wire::Json => Message::Text(tranche_pricing_free::json_trade(print).into()),
        })
    }

    /// Gives back what the session held: its market subscriptions, and its connection slot, at
    /// once after a close frame, else after the half-dead hold.
    fn end(self, closed_cleanly: bool) {
        self.quotes.release(&self.subscribed.market_symbols());
        let Some(key) = self.key else { return };
        let hold = config_of(&self.state).half_dead_hold;
        let free = move |state: &State| {
            state.data_sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&key);
        };
        if closed_cleanly || hold.is_zero() {
            free(&self.state);
        } else {
            let state = self.state;
            tokio::spawn(async move {
                tokio::time::sleep(hold).await;
                free(&state);
            });
        }
    }
}

async fn session(mut socket: WebSocket, state: Arc<State>, feed: String, wire: Wire) {
    let _open = Open::count(&state.data_connections);
    let config = config_of(&state);
    // No deadline for zero, or for a timeout too long to be represented.
    let auth_deadline = (!config.auth_timeout.is_zero())
        .then(|| tokio::time::Instant::now().checked_add(config.auth_timeout))
        .flatten();
    let quotes = state.broker.quote_feed();
    let mut changes = quotes.changes();
    let mut prints = state.broker.prints();
    let mut drops = state.data_drops.subscribe();
    let mut client =
        Client { state: Arc::clone(&state), feed, wire, quotes, subscribed: Subscriptions::default(), key: None };
    if socket.send(wire.control(&json!({"T": "success", "msg": "connected"}))).await.is_err() {
        return;
    }
    let mut closed_cleanly = false;
    loop {
        let frame = tokio::select! {
            incoming = socket.recv() => {
                let decoded = match incoming {
                    Some(Ok(Message::Text(t))) => wire.decode(t.as_bytes(), false),
                    Some(Ok(Message::Binary(b))) => wire.decode(&b, true),
                    Some(Ok(Message::Ping(p))) => {
                        if socket.send(Message::Pong(p)).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    Some(Ok(Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) => {
                        closed_cleanly = true;
                        break;
                    }
                    _ => break,
                };
                let (reply, close) = match decoded {
                    Some(msg) => client.answer(&msg).await,
                    None => (wire.error(400, "invalid syntax"), false),
                };
                if close {
                    // The server closes: nothing is left half-dead.
                    let _ = socket.send(reply).await;
                    closed_cleanly = true;
                    break;
                }
                // A stalled feed answers nothing (its WebSocket layer still answers pings).
                (!client.silent()).then_some(reply)
            }
            changed = changes.recv() => {
                let Ok(symbol) = changed else { continue };
                client.quote_frame(&symbol)
            }
            printed = prints.recv() => match printed {
                Ok(print) => client.trade_frame(&print),
                // A slow reader loses the oldest prints, as a slow client of Alpaca's does.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            () = until(auth_deadline), if client.key.is_none() => {
                let _ = socket.send(wire.error(404, "auth timeout")).await;
                let _ = socket.send(Message::Close(None)).await;
                break;
            }
            _ = drops.recv() => break,
        };
        if let Some(frame) = frame {
            if socket.send(frame).await.is_err() {
                break;
            }
        }
    }
    client.end(closed_cleanly);
}

/// Quote and trade frames in the stream's formats: JSON from the emulator's own bodies
/// (`render`), MessagePack written here field by field (the emulator does not share the
/// client's codec, so the two check each other).
mod tranche_pricing_free {
    use tranche_domain::Quote;
    use tranche_sim::Print;

    /// `[{"T": kind, "S": symbol, ..body}]`: one stream message.
    fn message(kind: &str, symbol: &str, mut body: serde_json::Value) -> String {
        body["T"] = kind.into();
        body["S"] = symbol.into();
        serde_json::Value::Array(vec![body]).to_string()
    }

    /// Nanoseconds then seconds, big-endian: MessagePack's timestamp 96 (extension −1).
    fn timestamp(t: tranche_domain::Timestamp) -> rmpv::Value {
        let mut ts = Vec::with_capacity(12);
        ts.extend_from_slice(&t.timestamp_subsec_nanos().to_be_bytes());
        ts.extend_from_slice(&t.timestamp().to_be_bytes());
        rmpv::Value::Ext(-1, ts)
    }

    fn float(d: rust_decimal::Decimal) -> rmpv::Value {
        rmpv::Value::F64(d.to_string().parse::<f64>().unwrap_or(0.0))
    }

    fn encode(value: &rmpv::Value) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = rmpv::encode::write_value(&mut out, value);
        out
    }

    pub fn json_trade(p: &Print) -> String {
        message("t", p.symbol.as_str(), crate::render::trade_body(p))
    }

    pub fn msgpack_trade(p: &Print) -> Vec<u8> {
        encode(&rmpv::Value::Array(vec![rmpv::Value::Map(vec![
            ("T".into(), "t".into()),
            ("S".into(), p.symbol.as_str().into()),
            ("i".into(), p.id.into()),
            ("x".into(), "V".into()),
            ("p".into(), float(p.price.get())),
            ("s".into(), float(p.size.get())),
            ("c".into(), rmpv::Value::Array(vec!["@".into()])),
            ("t".into(), timestamp(p.time)),
            ("z".into(), "C".into()),
        ])]))
    }

    pub fn json_quote(q: &Quote) -> String {
        message("q", q.symbol.as_str(), crate::render::quote_body(q))
    }

    pub fn msgpack_quote(q: &Quote) -> Vec<u8> {
        encode(&rmpv::Value::Array(vec![rmpv::Value::Map(vec![
            ("T".into(), "q".into()),
            ("S".into(), q.symbol.as_str().into()),
            ("bx".into(), "V".into()),
            ("bp".into(), float(q.bid.get())),
            ("bs".into(), float(q.bid_size.get())),
            ("ax".into(), "V".into()),
            ("ap".into(), float(q.ask.get())),
            ("as".into(), float(q.ask_size.get())),
            ("c".into(), rmpv::Value::Array(vec!["R".into()])),
            ("t".into(), timestamp(q.time)),
            ("z".into(), "C".into()),
        ])]))
    }
}
