//! The trade_updates stream: one owner of the socket (a supervisor task) that authenticates,
//! listens, decodes every update (JSON in text or binary frames), pings, watches for silence,
//! and reconnects with capped exponential backoff and jitter (longer after a 429 or 406 at the
//! upgrade), announcing every outage with `Down`, then `Gap { since }` and `Up`.
//!
//! Invariants: updates are delivered in the order received; after any outage the consumer is
//! told updates may be lost (Alpaca does not replay); a rejected key stops the stream (`None`).

use std::time::Duration;

use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tranche_broker::{OrderEvents, StreamEvent};

use crate::config::AlpacaConfig;
use crate::dto::TradeUpdateDto;

/// Seconds of silence after which the socket is considered dead.
const SILENCE: Duration = Duration::from_secs(30);
/// Ping interval.
const PING: Duration = Duration::from_secs(10);

/// The trade-update stream as an `OrderEvents` port.
#[derive(Debug)]
pub struct AlpacaOrderEvents {
    rx: mpsc::Receiver<StreamEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AlpacaOrderEvents {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[async_trait]
impl OrderEvents for AlpacaOrderEvents {
    async fn next_event(&mut self) -> Option<StreamEvent> {
        self.rx.recv().await
    }
}

impl AlpacaOrderEvents {
    /// Starts the supervisor (on the current tokio runtime).
    pub fn connect(config: AlpacaConfig) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        let task = tokio::spawn(supervise(config, tx));
        Self { rx, task }
    }
}

enum End {
    /// The connection ended; reconnect after `backoff`.
    Retry { slow: bool },
    /// The keys were refused or the consumer is gone: stop.
    Stop,
}

fn jitter(max_ms: u64) -> Duration {
    let nanos = u64::from(chrono::Utc::now().timestamp_subsec_nanos());
    Duration::from_millis(if max_ms == 0 { 0 } else { nanos % max_ms })
}

async fn supervise(config: AlpacaConfig, tx: mpsc::Sender<StreamEvent>) {
    let mut backoff = Duration::from_millis(500);
    let mut down_since: Option<tranche_domain::Timestamp> = None;
    let mut was_up = false;
    let mut told_not_up = false;
    loop {
        match session(&config, &tx, &mut down_since, &mut was_up).await {
            End::Stop => return,
            End::Retry { slow } => {
                if was_up && down_since.is_none() {
                    down_since = Some(chrono::Utc::now());
                    if tx.send(StreamEvent::Down { reason: "trade_updates connection lost".into() }).await.is_err() {
                        return;
                    }
                } else if !was_up && !told_not_up {
                    // The first connection failed: said once, so that the engine (which sends
                    // nothing before the stream listens) and its user know why it waits. No gap:
                    // nothing was listened to before.
                    told_not_up = true;
                    let reason = "trade_updates not connected yet; retrying".to_owned();
                    if tx.send(StreamEvent::Down { reason }).await.is_err() {
                        return;
                    }
                }
                let wait = if slow { backoff.max(Duration::from_secs(15)) } else { backoff };
                tokio::time::sleep(wait + jitter(500)).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        if tx.is_closed() {
            return;
        }
        if down_since.is_none() {
            backoff = Duration::from_millis(500);
        }
    }
}

/// The `data` of one `trade_updates` message as the domain update (the stream's decode path,
/// public for the throughput benchmark); the error says what was unreadable.
pub fn decode_trade_update(data: &Value) -> Result<tranche_domain::TradeUpdate, String> {
    use serde::Deserialize as _;
    TradeUpdateDto::deserialize(data).map_err(|e| e.to_string())?.into_update().map_err(|e| e.to_string())
}

fn parse_frame(message: &Message) -> Option<Value> {
    match message {
        Message::Text(t) => serde_json::from_str(t.as_str()).ok(),
        Message::Binary(b) => serde_json::from_slice(b).ok(),
        _ => None,
    }
}

async fn session(
    config: &AlpacaConfig,
    tx: &mpsc::Sender<StreamEvent>,
    down_since: &mut Option<tranche_domain::Timestamp>,
    was_up: &mut bool,
) -> End {
    let url = config.stream_url();
    let (mut socket, _) = match tokio_tungstenite::connect_async(url.as_str()).await {
        Ok(s) => s,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            tracing::warn!(status, "trade_updates upgrade refused");
            return End::Retry { slow: status == 429 || status == 406 };
        }
        Err(e) => {
            tracing::warn!(error = %e, "trade_updates connection failed");
            return End::Retry { slow: false };
        }
    };
    let auth = json!({"action": "auth", "key": config.key_id, "secret": config.secret.expose()});
    if socket.send(Message::Text(auth.to_string().into())).await.is_err() {
        return End::Retry { slow: false };
    }
    let mut listening = false;
    let mut ping = tokio::time::interval(PING);
    ping.tick().await;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            frame = socket.next() => {
                let message = match frame {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "trade_updates read failed");
                        return End::Retry { slow: false };
                    }
                    None => return End::Retry { slow: false },
                };
                last_heard = tokio::time::Instant::now();
                if matches!(message, Message::Close(_)) {
                    return End::Retry { slow: false };
                }
                let Some(value) = parse_frame(&message) else { continue };
                match value.get("stream").and_then(Value::as_str) {
                    Some("authorization") => {
                        let status = value.pointer("/data/status").and_then(Value::as_str);
                        if status == Some("authorized") {
                            let listen = json!({"action": "listen", "data": {"streams": ["trade_updates"]}});
                            if socket.send(Message::Text(listen.to_string().into())).await.is_err() {
                                return End::Retry { slow: false };
                            }
                        } else {
                            tracing::error!("trade_updates: the key pair was refused");
                            let _ = tx.send(StreamEvent::Down { reason: "trade_updates authorization refused".into() }).await;
                            return End::Stop;
                        }
                    }
                    Some("listening") => {
                        let streams = value.pointer("/data/streams").and_then(Value::as_array);
                        if streams.is_some_and(|s| s.iter().any(|v| v.as_str() == Some("trade_updates"))) && !listening {
                            listening = true;
                            if let Some(since) = down_since.take() {
                                if tx.send(StreamEvent::Gap { since }).await.is_err() {
                                    return End::Stop;
                                }
                            }
                            *was_up = true;
                            if tx.send(StreamEvent::Up).await.is_err() {
                                return End::Stop;
                            }
                        }
                    }
                    Some("trade_updates") => {
                        let Some(data) = value.get("data") else { continue };
                        match decode_trade_update(data) {
                            Ok(update) => {
                                if tx.send(StreamEvent::Update(Box::new(update))).await.is_err() {
                                    return End::Stop;
                                }
                            }
                            // One unreadable update is logged, never fatal; reconciliation
                            // catches what it said.
                            Err(e) => tracing::warn!(error = %e, "skipping an unreadable trade update"),
                        }
                    }
                    _ => {}
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > SILENCE {
                    tracing::warn!("trade_updates silent too long; reconnecting");
                    return End::Retry { slow: false };
                }
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return End::Retry { slow: false };
                }
            }
        }
    }
}
