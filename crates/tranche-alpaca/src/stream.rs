//! The trade_updates stream: one owner of the socket (a supervisor task) that authenticates,
//! listens, decodes every update (JSON in text or binary frames), pings, watches for silence,
//! and reconnects with capped exponential backoff and jitter (longer after a 429 or 406 at the
//! upgrade; reset only by a connection that listened), announcing every outage with `Down`,
//! then `Gap { since }` and `Up`. Connecting, then authorizing and listening, must each finish
//! within the request timeout, every send too, and no message may pass 1 MiB. A socket given up
//! on is closed with a close frame.
//!
//! Invariants: updates are delivered in the order received; after any outage the consumer is
//! told updates may be lost (Alpaca does not replay); a rejected key stops the stream (`None`).

use std::time::Duration;

use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tranche_broker::{OrderEvents, StreamEvent};

use crate::config::AlpacaConfig;
use crate::dto::TradeUpdateDto;

/// Seconds of silence after which the socket is considered dead.
const SILENCE: Duration = Duration::from_secs(30);
/// Ping interval.
const PING: Duration = Duration::from_secs(10);
/// The longest a socket given up on takes to be closed with a close frame.
const CLOSE_WITHIN: Duration = Duration::from_secs(1);
/// The largest message accepted from the server (a trade update is about 2 KB): a bigger one
/// ends the connection instead of the process's memory.
const MAX_MESSAGE: usize = 1 << 20;

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

/// The wait before each reconnect: from half a second, doubling to 30 s while connections
/// fail, back to the start once one listened; at least 15 s after a 429 or 406 at the upgrade
/// (the jitter is added by the caller).
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(500);
    const MOST: Duration = Duration::from_secs(30);
    const SLOW: Duration = Duration::from_secs(15);

    fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// The wait after a connection that ended: `listened` if it got as far as listening,
    /// `slow` if the server asked for patience.
    fn after(&mut self, listened: bool, slow: bool) -> Duration {
        if listened {
            self.next = Self::FIRST;
        }
        let wait = if slow { self.next.max(Self::SLOW) } else { self.next };
        self.next = (self.next * 2).min(Self::MOST);
        wait
    }
}

async fn supervise(config: AlpacaConfig, tx: mpsc::Sender<StreamEvent>) {
    let mut backoff = Backoff::new();
    let mut down_since: Option<tranche_domain::Timestamp> = None;
    let mut was_up = false;
    let mut told_not_up = false;
    // When the last frame of a listening session was heard: updates may be lost from then on
    // (a silent socket is given up on only after the watchdog's silence).
    let mut heard_at: Option<tranche_domain::Timestamp> = None;
    loop {
        let mut listened = false;
        match session(&config, &tx, &mut down_since, &mut listened, &mut heard_at).await {
            End::Stop => return,
            End::Retry { slow } => {
                was_up |= listened;
                if was_up && down_since.is_none() {
                    down_since = Some(heard_at.take().unwrap_or_else(chrono::Utc::now));
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
                tokio::time::sleep(backoff.after(listened, slow) + jitter(500)).await;
            }
        }
        if tx.is_closed() {
            return;
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

/// One connection, until it ends. `listened` is set once the server confirms the listen. The
/// connection (TCP, TLS and the upgrade) and then authorization and listening must each be
/// done within the adapter's request timeout: a server that accepts and never answers is a
/// failed connection, not a wait for ever. A socket given up on (silent, not listening in
/// time, a failed send) is closed with a close frame, so that the server can free the session
/// at once rather than hold it half-dead; bounded, a dead socket takes no longer than a second.
async fn session(
    config: &AlpacaConfig,
    tx: &mpsc::Sender<StreamEvent>,
    down_since: &mut Option<tranche_domain::Timestamp>,
    listened: &mut bool,
    heard_at: &mut Option<tranche_domain::Timestamp>,
) -> End {
    let mut socket = match open(config).await {
        Ok(socket) => socket,
        Err(end) => return end,
    };
    let end = session_loop(config, tx, down_since, listened, heard_at, &mut socket).await;
    let _ = tokio::time::timeout(CLOSE_WITHIN, socket.close(None)).await;
    end
}

/// Authorizes, listens and then reads `socket` until the session ends (see [`session`]).
async fn session_loop(
    config: &AlpacaConfig,
    tx: &mpsc::Sender<StreamEvent>,
    down_since: &mut Option<tranche_domain::Timestamp>,
    listened: &mut bool,
    heard_at: &mut Option<tranche_domain::Timestamp>,
    socket: &mut Socket,
) -> End {
    let auth = json!({"action": "auth", "key": config.key_id, "secret": config.secret.expose()});
    if send(socket, Message::Text(auth.to_string().into()), config.timeout).await.is_err() {
        return End::Retry { slow: false };
    }
    let mut listening = false;
    let listen_by = tokio::time::Instant::now() + config.timeout;
    let mut ping = tokio::time::interval(PING);
    ping.tick().await;
    let mut last_heard = tokio::time::Instant::now();
    let mut unreadable = Unreadable::default();
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(listen_by), if !listening => {
                tracing::warn!(timeout = ?config.timeout, "trade_updates not listening in time; reconnecting");
                return End::Retry { slow: false };
            }
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
                let heard_before = *heard_at;
                if listening {
                    *heard_at = Some(chrono::Utc::now());
                }
                if matches!(message, Message::Close(_)) {
                    return End::Retry { slow: false };
                }
                let Some(value) = parse_frame(&message) else { continue };
                match value.get("stream").and_then(Value::as_str) {
                    Some("authorization") => {
                        let status = value.pointer("/data/status").and_then(Value::as_str);
                        if status == Some("authorized") {
                            let listen = json!({"action": "listen", "data": {"streams": ["trade_updates"]}});
                            if send(socket, Message::Text(listen.to_string().into()), config.timeout).await.is_err() {
                                return End::Retry { slow: false };
                            }
                        } else if status != Some("unauthorized") {
                            // Not a refusal (no status, or one this adapter does not know): the
                            // listen deadline decides.
                            tracing::warn!(?status, "trade_updates: an authorization message without a verdict");
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
                            *heard_at = Some(chrono::Utc::now());
                            if let Some(since) = down_since.take() {
                                if tx.send(StreamEvent::Gap { since }).await.is_err() {
                                    return End::Stop;
                                }
                            }
                            *listened = true;
                            if tx.send(StreamEvent::Up).await.is_err() {
                                return End::Stop;
                            }
                        }
                    }
                    Some("trade_updates") => {
                        let Some(data) = value.get("data") else { continue };
                        if !deliver(data, tx, &mut unreadable, heard_before).await {
                            return End::Stop;
                        }
                    }
                    _ => {}
                }
            }
            _ = ping.tick() => {
                if let Some(since) = unreadable.due() {
                    if !tell_gap(tx, since).await {
                        return End::Stop;
                    }
                }
                if last_heard.elapsed() > SILENCE {
                    tracing::warn!("trade_updates silent too long; reconnecting");
                    return End::Retry { slow: false };
                }
                if send(socket, Message::Ping(Vec::new().into()), config.timeout).await.is_err() {
                    return End::Retry { slow: false };
                }
            }
        }
    }
}

/// Delivers one update's `data`; false once nobody listens. One unreadable update is never
/// fatal; what it said is read back: told as a gap from the frame before it (`heard_before`: the
/// engine looks its live orders up and reads the fills since), at most one every `PING`.
async fn deliver(
    data: &Value,
    tx: &mpsc::Sender<StreamEvent>,
    unreadable: &mut Unreadable,
    heard_before: Option<tranche_domain::Timestamp>,
) -> bool {
    match decode_trade_update(data) {
        Ok(update) => tx.send(StreamEvent::Update(Box::new(update))).await.is_ok(),
        Err(e) => {
            tracing::warn!(error = %e, "an unreadable trade update: told as a gap");
            unreadable.note(heard_before.unwrap_or_else(chrono::Utc::now));
            match unreadable.due() {
                Some(since) => tell_gap(tx, since).await,
                None => true,
            }
        }
    }
}

/// Unreadable trade updates not yet told as a gap: from when, and when the last gap was told
/// (told at most once every `PING`, so that a server sending garbage cannot storm the broker
/// with the reads a gap asks for; one held back is told at the next ping).
#[derive(Default)]
struct Unreadable {
    since: Option<tranche_domain::Timestamp>,
    told_at: Option<tokio::time::Instant>,
}

impl Unreadable {
    /// An unreadable update came after the frame heard at `since`.
    fn note(&mut self, since: tranche_domain::Timestamp) {
        self.since = Some(self.since.map_or(since, |s| s.min(since)));
    }

    /// The gap to tell now, if one is waiting and the last was told long enough ago.
    fn due(&mut self) -> Option<tranche_domain::Timestamp> {
        if self.told_at.is_some_and(|at| at.elapsed() < PING) {
            return None;
        }
        let since = self.since.take()?;
        self.told_at = Some(tokio::time::Instant::now());
        Some(since)
    }
}

/// Tells the consumer that updates since `since` may be lost, the stream still up; false once
/// nobody listens.
async fn tell_gap(tx: &mpsc::Sender<StreamEvent>, since: tranche_domain::Timestamp) -> bool {
    tx.send(StreamEvent::Gap { since }).await.is_ok() && tx.send(StreamEvent::Up).await.is_ok()
}

/// The socket of the trade stream.
type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects (TCP, TLS and the upgrade) within the request timeout, with the message limit.
async fn open(config: &AlpacaConfig) -> Result<Socket, End> {
    let url = config.stream_url();
    let limits = WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE)).max_frame_size(Some(MAX_MESSAGE));
    let connect = tokio_tungstenite::connect_async_with_config(url.as_str(), Some(limits), false);
    match tokio::time::timeout(config.timeout, connect).await {
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            let status = response.status().as_u16();
            tracing::warn!(status, "trade_updates upgrade refused");
            Err(End::Retry { slow: status == 429 || status == 406 })
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "trade_updates connection failed");
            Err(End::Retry { slow: false })
        }
        Err(_) => {
            tracing::warn!(timeout = ?config.timeout, "trade_updates connection not made in time");
            Err(End::Retry { slow: false })
        }
    }
}

/// Sends one message, within `timeout`: a server that stops reading must not stall the
/// session (and its silence watchdog) on a full send buffer.
async fn send(socket: &mut Socket, message: Message, timeout: Duration) -> Result<(), ()> {
    match tokio::time::timeout(timeout, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn connections_that_keep_failing_back_off_to_thirty_seconds_even_before_the_first_listen() {
        let mut backoff = Backoff::new();
        let waits: Vec<Duration> = (0..8).map(|_| backoff.after(false, false)).collect();
        let expected = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0].map(secs);
        assert_eq!(waits, expected, "a server that refuses every upgrade gets no storm");
    }

    #[test]
    fn a_connection_that_listened_starts_the_backoff_again_and_a_429_waits_long() {
        let mut backoff = Backoff::new();
        for _ in 0..6 {
            backoff.after(false, false);
        }
        assert_eq!(backoff.after(true, false), secs(0.5), "a drop after a good connection: retried at once");
        assert_eq!(backoff.after(false, false), secs(1.0));
        assert_eq!(backoff.after(true, true), secs(15.0), "429 or 406: at least 15 s");
        assert_eq!(backoff.after(true, false), secs(0.5), "and the next drop of a good connection is quick again");
    }

    /// A config for a server at `addr` with a short request timeout.
    fn config_at(addr: std::net::SocketAddr) -> AlpacaConfig {
        let mut config = AlpacaConfig::new("KEY", crate::config::Secret::new("SECRET"));
        config.trading_url = format!("http://{addr}");
        config.timeout = Duration::from_millis(300);
        config
    }

    /// Two servers that never let the stream listen: one accepts TCP and says nothing, one
    /// completes the upgrade and never answers the auth. Each is a failed connection, said as
    /// `Down` and tried again, never a silent wait for ever.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_that_never_answers_is_a_failed_connection_not_a_wait_for_ever() {
        for upgrade in [false, true] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let accepted = Arc::new(AtomicUsize::new(0));
            let count = Arc::clone(&accepted);
            tokio::spawn(async move {
                let (mut raw, mut upgraded) = (Vec::new(), Vec::new());
                while let Ok((socket, _)) = listener.accept().await {
                    count.fetch_add(1, Ordering::SeqCst);
                    if upgrade {
                        if let Ok(ws) = tokio_tungstenite::accept_async(socket).await {
                            upgraded.push(ws);
                        }
                    } else {
                        raw.push(socket);
                    }
                }
            });
            let mut events = AlpacaOrderEvents::connect(config_at(addr));
            let first = tokio::time::timeout(Duration::from_secs(5), events.next_event()).await;
            assert!(matches!(first, Ok(Some(StreamEvent::Down { .. }))), "upgrade {upgrade}: {first:?}");
            tokio::time::timeout(Duration::from_secs(5), async {
                while accepted.load(Ordering::SeqCst) < 2 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            .expect("tried again");
        }
    }
    /// A session given up on (here: authorized and never listening in time) is closed with a
    /// close frame, so that the server frees it at once rather than hold it half-dead.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_session_given_up_on_is_closed_with_a_close_frame() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (seen_tx, mut seen_rx) = mpsc::channel::<Vec<String>>(4);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let seen_tx = seen_tx.clone();
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(socket).await else { return };
                    let mut seen = Vec::new();
                    while let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                        match message {
                            Message::Text(t) if t.as_str().contains("\"auth\"") => {
                                seen.push("auth".to_owned());
                                let authorized = json!({"stream": "authorization", "data": {"status": "authorized", "action": "authenticate"}});
                                let _ = ws.send(Message::Text(authorized.to_string().into())).await;
                            }
                            Message::Text(t) if t.as_str().contains("\"listen\"") => seen.push("listen".to_owned()),
                            Message::Close(_) => {
                                seen.push("close".to_owned());
                                break;
                            }
                            _ => {}
                        }
                    }
                    let _ = seen_tx.send(seen).await;
                });
            }
        });
        let _events = AlpacaOrderEvents::connect(config_at(addr));
        let seen = tokio::time::timeout(Duration::from_secs(5), seen_rx.recv()).await.expect("the session ended");
        assert_eq!(seen, Some(vec!["auth".to_owned(), "listen".to_owned(), "close".to_owned()]));
    }
    /// A socket that dies after the last frame was heard: the gap the consumer is told of runs
    /// from that frame, not from when the death was noticed (the silence watchdog notices a
    /// silent socket only after its 30 s; updates sent meanwhile were lost).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_gap_runs_from_the_last_frame_heard() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut first = true;
            while let Ok((socket, _)) = listener.accept().await {
                let quiet_then_drop = std::mem::take(&mut first);
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(socket).await else { return };
                    while let Some(Ok(message)) = ws.next().await {
                        let Message::Text(t) = message else { continue };
                        let answer = if t.as_str().contains("\"auth\"") {
                            json!({"stream": "authorization", "data": {"status": "authorized", "action": "authenticate"}})
                        } else if t.as_str().contains("\"listen\"") {
                            json!({"stream": "listening", "data": {"streams": ["trade_updates"]}})
                        } else {
                            continue;
                        };
                        let listen = answer["stream"] == "listening";
                        let _ = ws.send(Message::Text(answer.to_string().into())).await;
                        if listen && quiet_then_drop {
                            // Silent for a while, then the connection dies (no close frame).
                            tokio::time::sleep(Duration::from_millis(1_500)).await;
                            return;
                        }
                    }
                });
            }
        });
        let mut events = AlpacaOrderEvents::connect(config_at(addr));
        let within = Duration::from_secs(10);
        let up = tokio::time::timeout(within, events.next_event()).await.expect("in time");
        assert!(matches!(up, Some(StreamEvent::Up)), "{up:?}");
        let listened_by = chrono::Utc::now();
        let down = tokio::time::timeout(within, events.next_event()).await.expect("in time");
        assert!(matches!(down, Some(StreamEvent::Down { .. })), "{down:?}");
        let gap = tokio::time::timeout(within, events.next_event()).await.expect("in time");
        let Some(StreamEvent::Gap { since }) = gap else { panic!("a gap: {gap:?}") };
        assert!(since <= listened_by, "the gap runs from the last frame ({since}), heard by {listened_by}");
    }
    /// A trade update the adapter cannot read (a fill whose order has no status) is told as a
    /// gap, the stream still up: the engine reads back what it said. It was only logged.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreadable_update_is_told_as_a_gap() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let Ok((socket, _)) = listener.accept().await else { return };
            let Ok(mut ws) = tokio_tungstenite::accept_async(socket).await else { return };
            while let Some(Ok(message)) = ws.next().await {
                let Message::Text(t) = message else { continue };
                if t.as_str().contains("\"auth\"") {
                    let ok =
                        json!({"stream": "authorization", "data": {"status": "authorized", "action": "authenticate"}});
                    let _ = ws.send(Message::Text(ok.to_string().into())).await;
                } else if t.as_str().contains("\"listen\"") {
                    let listening = json!({"stream": "listening", "data": {"streams": ["trade_updates"]}});
                    let _ = ws.send(Message::Text(listening.to_string().into())).await;
                    let unreadable = json!({"stream": "trade_updates", "data": {"event": "fill", "order": {"id": "o-1", "status": null}}});
                    let _ = ws.send(Message::Text(unreadable.to_string().into())).await;
                }
            }
        });
        let mut events = AlpacaOrderEvents::connect(config_at(addr));
        let within = Duration::from_secs(10);
        let mut seen = Vec::new();
        for _ in 0..3 {
            let event = tokio::time::timeout(within, events.next_event()).await.expect("in time");
            seen.push(match event {
                Some(StreamEvent::Up) => "up",
                Some(StreamEvent::Gap { .. }) => "gap",
                other => panic!("{other:?}"),
            });
        }
        assert_eq!(seen, ["up", "gap", "up"]);
    }
}
