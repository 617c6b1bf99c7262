//! The streaming quote client (`QuoteFeed`): connects to `{stream}/v2/{feed}`, authenticates,
//! keeps reference-counted quote subscriptions (the last release unsubscribes), stores the latest
//! quote per symbol, watches for silence, and reconnects with capped exponential backoff and
//! jitter (much longer after `406 connection limit exceeded`), resubscribing everything held.
//! Bad credentials (402) or a feed outside the plan (409) are fatal: `subscribe` then fails.
//!
//! The feed's symbol limit (`symbol_limit`; Alpaca's Basic plan streams 30 symbols on `iex`)
//! is kept here: a subscribe past it is refused before anything is sent, and one the server
//! refuses anyway (`405 symbol limit exceeded`, a limit configured too high) is answered as an
//! error to the subscribe that asked (it waits for the server's answer while the socket is
//! authenticated), its symbols dropped and the limit lowered to what the server held.
//!
//! Two watchdogs: per connection and per symbol. Per connection: no frame at all (pings and
//! pongs count; the client pings a socket quiet for half of `silence`) for `silence`: reconnect;
//! a feed that sent no data for `silence` is asked for what it streams (a subscribe of those
//! symbols, which changes nothing), and one that does not answer in `silence` more is stalled:
//! reconnect (a quiet feed is not torn down; a reconnect on Alpaca can be refused for a while).
//! Connecting and authenticating must each be done within `silence`, every send too, and no
//! message may pass 4 MiB. The backoff starts again after a connection that authenticated. Per
//! symbol: a held symbol without a quote for `symbol_silence` while the socket lives is reported
//! stale and resubscribed, at most once per `symbol_silence`, since the server may have lost the
//! subscription; its next quote clears it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tranche_broker::{BrokerError, QuoteFeed, RejectReason};
use tranche_domain::{Quote, Symbol};

use crate::codec::{decode_json_with, decode_msgpack_with, DataMessage, SymbolCache};
use crate::store::QuoteStore;

/// How to reach the market-data stream.
#[derive(Clone)]
pub struct StreamConfig {
    /// Full URL of the feed, e.g. `wss://stream.data.alpaca.markets/v2/iex`.
    pub url: String,
    /// Key id.
    pub key_id: String,
    /// Secret (never printed).
    pub secret: String,
    /// Ask for MessagePack frames (as Alpaca's SDKs do).
    pub msgpack: bool,
    /// Reconnect when nothing arrives for this long.
    pub silence: Duration,
    /// A held symbol without a quote for this long is stale and resubscribed (zero: off).
    pub symbol_silence: Duration,
    /// Most symbols held in the store.
    pub max_symbols: usize,
    /// Most symbols streamed at once (Alpaca's Basic plan: 30 on `iex`); `None`: no limit.
    pub symbol_limit: Option<usize>,
}

impl std::fmt::Debug for StreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamConfig")
            .field("url", &tranche_broker::url_without_userinfo(&self.url))
            .field("key_id", &self.key_id)
            .field("secret", &"<redacted>")
            .field("msgpack", &self.msgpack)
            .field("silence", &self.silence)
            .field("symbol_silence", &self.symbol_silence)
            .field("symbol_limit", &self.symbol_limit)
            .finish_non_exhaustive()
    }
}

impl StreamConfig {
    /// A JSON feed at `url` with a 30 s connection watchdog and a 60 s per-symbol watchdog.
    pub fn new(url: impl Into<String>, key_id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_id: key_id.into(),
            secret: secret.into(),
            msgpack: false,
            silence: Duration::from_secs(30),
            symbol_silence: Duration::from_secs(60),
            max_symbols: 10_000,
            symbol_limit: None,
        }
    }
}

/// What a subscribe waits for: the server's answer (`Err` with its message for a 405).
type Answer = oneshot::Sender<Result<(), String>>;

enum Command {
    Subscribe(Vec<Symbol>, Option<Answer>),
    Unsubscribe(Vec<Symbol>),
}

/// How long a subscribe waits for the server's answer before taking it as given.
const ANSWER_WAIT: Duration = Duration::from_secs(3);

/// The symbol-limit refusal, as the `QuoteFeed` port states it.
fn symbol_limit_error(message: String) -> BrokerError {
    BrokerError::Rejected { reason: RejectReason::SymbolLimit, code: Some(405), message }
}

struct Inner {
    store: QuoteStore,
    refs: Mutex<BTreeMap<Symbol, u32>>,
    commands: mpsc::UnboundedSender<Command>,
    changes: broadcast::Sender<Symbol>,
    fatal: Mutex<Option<String>>,
    connections: AtomicU64,
    limit_refusals: AtomicU64,
    /// Held symbols the per-symbol watchdog found silent, until their next quote.
    stale: Mutex<BTreeSet<Symbol>>,
    symbol_resubscribes: AtomicU64,
    /// The symbol limit: configured, or lowered to what the server held when it refused more
    /// (`usize::MAX`: none).
    limit: AtomicUsize,
    /// The socket is authenticated: a subscribe sent now is answered.
    authenticated: AtomicBool,
    /// `405 symbol limit exceeded` answers seen so far.
    symbol_refusals: AtomicU64,
}

/// Live quotes from Alpaca's market-data stream.
#[derive(Clone)]
pub struct AlpacaQuoteFeed {
    inner: Arc<Inner>,
    task: Arc<tokio::task::AbortHandle>,
}

impl std::fmt::Debug for AlpacaQuoteFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlpacaQuoteFeed").finish_non_exhaustive()
    }
}

impl Drop for AlpacaQuoteFeed {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

impl AlpacaQuoteFeed {
    /// Starts the supervisor on the current tokio runtime.
    pub fn connect(config: StreamConfig) -> Self {
        let (commands, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            store: QuoteStore::new(config.max_symbols),
            refs: Mutex::new(BTreeMap::new()),
            commands,
            changes: broadcast::channel(4096).0,
            fatal: Mutex::new(None),
            connections: AtomicU64::new(0),
            limit_refusals: AtomicU64::new(0),
            stale: Mutex::new(BTreeSet::new()),
            symbol_resubscribes: AtomicU64::new(0),
            limit: AtomicUsize::new(config.symbol_limit.unwrap_or(usize::MAX)),
            authenticated: AtomicBool::new(false),
            symbol_refusals: AtomicU64::new(0),
        });
        let task = tokio::spawn(supervise(config, Arc::clone(&inner), rx)).abort_handle();
        Self { inner, task: Arc::new(task) }
    }

    /// Connections made so far (reconnects show here).
    pub fn connections(&self) -> u64 {
        self.inner.connections.load(Ordering::Relaxed)
    }

    /// `406 connection limit exceeded` answers seen so far.
    pub fn limit_refusals(&self) -> u64 {
        self.inner.limit_refusals.load(Ordering::Relaxed)
    }

    /// `405 symbol limit exceeded` answers of the server seen so far (counted once what each
    /// refusal changed, the symbols dropped and the limit lowered, is visible).
    pub fn symbol_refusals(&self) -> u64 {
        self.inner.symbol_refusals.load(Ordering::Acquire)
    }

    /// Held symbols without a quote for `symbol_silence` (cleared by their next quote).
    pub fn stale_symbols(&self) -> Vec<Symbol> {
        self.inner.stale.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect()
    }

    /// Symbols resubscribed by the per-symbol watchdog so far.
    pub fn symbol_resubscribes(&self) -> u64 {
        self.inner.symbol_resubscribes.load(Ordering::Relaxed)
    }

    /// The fatal error that stopped the stream, if any.
    pub fn fatal(&self) -> Option<String> {
        self.inner.fatal.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[async_trait]
impl QuoteFeed for AlpacaQuoteFeed {
    async fn subscribe(&self, symbols: &[Symbol]) -> Result<(), BrokerError> {
        if let Some(message) = self.fatal() {
            return Err(BrokerError::Auth { message });
        }
        let mut added = Vec::new();
        {
            let mut refs = self.inner.refs.lock().unwrap_or_else(PoisonError::into_inner);
            let new: BTreeSet<&Symbol> = symbols.iter().filter(|s| !refs.contains_key(*s)).collect();
            let limit = self.inner.limit.load(Ordering::Relaxed);
            if refs.len().saturating_add(new.len()) > limit {
                return Err(symbol_limit_error(format!(
                    "symbol limit exceeded: the feed streams at most {limit} symbols, {} are held and {} more were asked for",
                    refs.len(),
                    new.len()
                )));
            }
            for s in symbols {
                let count = refs.entry(s.clone()).or_insert(0);
                *count += 1;
                if *count == 1 {
                    added.push(s.clone());
                }
            }
        }
        if added.is_empty() {
            return Ok(());
        }
        // Before the socket authenticates too: the request goes once it has (after everything
        // held, which the server may refuse as a whole), and its own answer tells the caller.
        let (answer, answered) = oneshot::channel();
        let _ = self.inner.commands.send(Command::Subscribe(added, Some(answer)));
        match tokio::time::timeout(ANSWER_WAIT, answered).await {
            Ok(Ok(Err(message))) => Err(symbol_limit_error(message)),
            // Answered, or no answer in time (the socket may have dropped: everything held is
            // sent again on the next one).
            _ => Ok(()),
        }
    }

    fn release(&self, symbols: &[Symbol]) {
        let mut removed = Vec::new();
        {
            let mut refs = self.inner.refs.lock().unwrap_or_else(PoisonError::into_inner);
            for s in symbols {
                if let Some(count) = refs.get_mut(s) {
                    *count -= 1;
                    if *count == 0 {
                        refs.remove(s);
                        removed.push(s.clone());
                    }
                }
            }
        }
        for s in &removed {
            self.inner.store.remove(s);
        }
        {
            let mut stale = self.inner.stale.lock().unwrap_or_else(PoisonError::into_inner);
            for s in &removed {
                stale.remove(s);
            }
        }
        if !removed.is_empty() {
            let _ = self.inner.commands.send(Command::Unsubscribe(removed));
        }
    }

    fn latest(&self, symbol: &Symbol) -> Option<Quote> {
        let subscribed = self.inner.refs.lock().unwrap_or_else(PoisonError::into_inner).contains_key(symbol);
        if subscribed {
            self.inner.store.get(symbol)
        } else {
            None
        }
    }

    fn changes(&self) -> broadcast::Receiver<Symbol> {
        self.inner.changes.subscribe()
    }

    fn symbol_limit(&self) -> Option<usize> {
        let limit = self.inner.limit.load(Ordering::Relaxed);
        (limit != usize::MAX).then_some(limit)
    }
}

/// A held symbol as this connection knows it: when it was last heard of (or first held), and
/// whether the per-symbol watchdog marked it stale.
struct Heard {
    at: tokio::time::Instant,
    stale: bool,
}

impl Inner {
    /// The server refused a subscribe of `symbols` (405) as a whole, changing nothing: those it
    /// did not stream already (`on_server`, its last `subscription` state on this socket) are
    /// not streamed, and are dropped from what is held.
    /// When nobody waits for the answer (the subscription re-sent on a new socket, or a caller
    /// that stopped waiting), the limit is also lowered to what the refusal proves (fewer than
    /// the server's symbols and the refused ones together), so that a later subscribe past it
    /// is refused and its caller learns; a caller that waits learns from its own answer and
    /// decides what to ask for next.
    fn refused(&self, symbols: &[Symbol], on_server: &BTreeSet<Symbol>, anyone_waits: bool) {
        let mut refs = self.refs.lock().unwrap_or_else(PoisonError::into_inner);
        let mut asked_in_all = on_server.len();
        for s in symbols.iter().filter(|s| !on_server.contains(*s)) {
            asked_in_all += 1;
            refs.remove(s);
            self.store.remove(s);
        }
        if !anyone_waits {
            self.limit.fetch_min(asked_in_all.saturating_sub(1).max(refs.len()), Ordering::Relaxed);
        }
        // Counted last, and released: whoever sees the count sees what the refusal changed.
        self.symbol_refusals.fetch_add(1, Ordering::Release);
    }

    /// A quote of `symbol` arrived at `at`. The shared stale set is touched only when the symbol
    /// was marked (or is new on this connection, which may follow one that marked it), so the
    /// quote path takes no lock in the usual case.
    fn quote_heard(&self, heard: &mut HashMap<Symbol, Heard>, symbol: &Symbol, at: tokio::time::Instant) {
        let was_marked = match heard.get_mut(symbol) {
            Some(h) => {
                h.at = at;
                std::mem::take(&mut h.stale)
            }
            None => {
                heard.insert(symbol.clone(), Heard { at, stale: false });
                true
            }
        };
        if was_marked {
            self.stale.lock().unwrap_or_else(PoisonError::into_inner).remove(symbol);
        }
    }

    /// The held symbols not heard of for `limit`: marked stale, their clocks restarted (so each
    /// is resubscribed at most once per `limit`). Symbols no longer held are forgotten; newly
    /// held ones start their clock now.
    fn silent_symbols(&self, heard: &mut HashMap<Symbol, Heard>, limit: Duration) -> Vec<Symbol> {
        let now = tokio::time::Instant::now();
        let held = self.refs.lock().unwrap_or_else(PoisonError::into_inner);
        heard.retain(|s, _| held.contains_key(s));
        let mut silent = Vec::new();
        for symbol in held.keys() {
            let h = heard.entry(symbol.clone()).or_insert(Heard { at: now, stale: false });
            if now.duration_since(h.at) > limit {
                h.at = now;
                h.stale = true;
                silent.push(symbol.clone());
            }
        }
        drop(held);
        if !silent.is_empty() {
            self.stale.lock().unwrap_or_else(PoisonError::into_inner).extend(silent.iter().cloned());
            self.symbol_resubscribes.fetch_add(silent.len() as u64, Ordering::Relaxed);
        }
        silent
    }
}

/// The per-symbol watchdog's tick: resubscribes the held symbols silent for `limit`; false when
/// the socket failed.
async fn resubscribe_silent<S>(
    socket: &mut S,
    inner: &Inner,
    heard: &mut HashMap<Symbol, Heard>,
    limit: Duration,
    awaiting: &mut VecDeque<(Vec<Symbol>, Option<Answer>)>,
    msgpack: bool,
) -> bool
where
    S: futures_util::Sink<Message> + Unpin,
{
    if limit.is_zero() {
        return true;
    }
    let silent = inner.silent_symbols(heard, limit);
    if silent.is_empty() {
        return true;
    }
    let list: Vec<&str> = silent.iter().map(Symbol::as_str).collect();
    tracing::warn!(symbols = ?list, "no quotes for these symbols; resubscribing them");
    let sent = send_within(socket, subscribe_message("subscribe", &silent, msgpack), Duration::from_secs(10)).await;
    if sent {
        awaiting.push_back((silent, None));
    }
    sent
}

enum End {
    Retry { slow: bool },
    Fatal(String),
}

fn jitter(max_ms: u64) -> Duration {
    Duration::from_millis(u64::from(chrono::Utc::now().timestamp_subsec_nanos()) % max_ms.max(1))
}

async fn supervise(config: StreamConfig, inner: Arc<Inner>, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let (end, authenticated) = session(&config, &inner, &mut commands).await;
        match end {
            End::Fatal(message) => {
                tracing::error!(%message, "market-data stream stopped");
                *inner.fatal.lock().unwrap_or_else(PoisonError::into_inner) = Some(message);
                return;
            }
            End::Retry { slow } => {
                // A connection that worked starts the backoff again; one after another that
                // failed doubles it (to 30 s).
                if authenticated {
                    backoff = Duration::from_millis(250);
                }
                // Alpaca keeps a dropped session ~90 s: after a 406, wait long.
                let wait = if slow { backoff.max(Duration::from_secs(30)) } else { backoff };
                tokio::time::sleep(wait + jitter(250)).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// The largest message accepted from the server (a batch of quotes is a few KB): a bigger one
/// ends the connection instead of the process's memory.
const MAX_MESSAGE: usize = 4 << 20;

/// Sends `message` within `within` (a server that stops reading must not stall the session and
/// its watchdog on a full send buffer); whether it went.
async fn send_within<S: futures_util::Sink<Message> + Unpin>(
    socket: &mut S,
    message: Message,
    within: Duration,
) -> bool {
    matches!(tokio::time::timeout(within, socket.send(message)).await, Ok(Ok(())))
}

/// A client message in the connection's encoding: JSON text, or with `msgpack` a MessagePack
/// binary frame (every frame in both directions is MessagePack then, as Alpaca's SDKs send).
fn client_message(value: &serde_json::Value, msgpack: bool) -> Message {
    fn convert(value: &serde_json::Value) -> rmpv::Value {
        match value {
            serde_json::Value::String(s) => rmpv::Value::from(s.as_str()),
            serde_json::Value::Array(items) => rmpv::Value::Array(items.iter().map(convert).collect()),
            serde_json::Value::Object(map) => {
                rmpv::Value::Map(map.iter().map(|(k, v)| (rmpv::Value::from(k.as_str()), convert(v))).collect())
            }
            serde_json::Value::Bool(b) => rmpv::Value::Boolean(*b),
            serde_json::Value::Number(n) => n.as_i64().map_or(rmpv::Value::Nil, rmpv::Value::from),
            serde_json::Value::Null => rmpv::Value::Nil,
        }
    }
    if msgpack {
        let mut out = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = rmpv::encode::write_value(&mut out, &convert(value));
        Message::Binary(out.into())
    } else {
        Message::Text(value.to_string().into())
    }
}

fn subscribe_message(action: &str, symbols: &[Symbol], msgpack: bool) -> Message {
    let list: Vec<&str> = symbols.iter().map(Symbol::as_str).collect();
    client_message(&json!({"action": action, "quotes": list}), msgpack)
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the socket (asking for msgpack frames when configured); refusals say how to go on.
async fn open(config: &StreamConfig) -> Result<Socket, End> {
    let Ok(mut request) = config.url.as_str().into_client_request() else {
        return Err(End::Fatal(format!(
            "`{}` is not a WebSocket URL",
            tranche_broker::url_without_userinfo(&config.url)
        )));
    };
    if config.msgpack {
        if let Ok(v) = "application/msgpack".parse() {
            request.headers_mut().insert("Content-Type", v);
        }
    }
    let limits = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let connect = tokio_tungstenite::connect_async_with_config(request, Some(limits), false);
    // A server that accepts and never answers is a failed connection, not a wait for ever.
    let Ok(connected) = tokio::time::timeout(config.silence, connect).await else {
        tracing::warn!(timeout = ?config.silence, "market-data connection not made in time");
        return Err(End::Retry { slow: false });
    };
    match connected {
        Ok((s, _)) => Ok(s),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            let status = r.status().as_u16();
            Err(if matches!(status, 401 | 403) {
                End::Fatal(format!("market-data upgrade refused: HTTP {status}"))
            } else {
                End::Retry { slow: status == 429 || status == 406 }
            })
        }
        Err(e) => {
            tracing::warn!(error = %e, "market-data connection failed");
            Err(End::Retry { slow: false })
        }
    }
}

/// One connection, until it ends; whether it authenticated.
async fn session(config: &StreamConfig, inner: &Inner, commands: &mut mpsc::UnboundedReceiver<Command>) -> (End, bool) {
    let mut socket = match open(config).await {
        Ok(s) => s,
        Err(end) => return (end, false),
    };
    inner.connections.fetch_add(1, Ordering::Relaxed);
    let auth = json!({"action": "auth", "key": config.key_id, "secret": config.secret});
    if !send_within(&mut socket, client_message(&auth, config.msgpack), config.silence).await {
        return (End::Retry { slow: false }, false);
    }
    let mut authenticated = false;
    inner.authenticated.store(false, Ordering::Relaxed);
    // The subscribe and unsubscribe messages sent on this socket, oldest first, each answered
    // by one `subscription` (or, for a subscribe past the limit, a 405): what they asked for and
    // who waits for the answer.
    let mut awaiting: VecDeque<(Vec<Symbol>, Option<Answer>)> = VecDeque::new();
    let end = session_loop(config, inner, commands, &mut socket, &mut authenticated, &mut awaiting).await;
    inner.authenticated.store(false, Ordering::Relaxed);
    // Closed with a close frame where the socket still carries one (a stalled feed given up on):
    // Alpaca frees the key's one session at once, where a socket only dropped stays half-dead
    // for about 90 s and the reconnect meanwhile is refused with 406. Bounded: a dead socket
    // takes no longer than a second here.
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
    // Whoever still waits: the symbols are held and go again with everything on the next socket.
    for (_, answer) in awaiting.drain(..) {
        if let Some(answer) = answer {
            let _ = answer.send(Ok(()));
        }
    }
    (end, authenticated)
}

/// The server's answer to the oldest (un)subscribe sent on this socket: the `subscription`
/// state (`refusal` `None`), or an error. A 405 (the symbol limit) drops the symbols asked for
/// that the server does not stream (`on_server`) and tells whoever still waits; another error
/// (400, 401, 500) changed nothing at the server and answers the request all the same, so that
/// the next answer is matched to the next request (a symbol it asked for and never gets is
/// found silent by the per-symbol watchdog).
fn answer(
    inner: &Inner,
    awaiting: &mut VecDeque<(Vec<Symbol>, Option<Answer>)>,
    on_server: &BTreeSet<Symbol>,
    refusal: Option<(u16, String)>,
) {
    let (asked, waiting) = awaiting.pop_front().unwrap_or_default();
    let outcome = match refusal {
        None => Ok(()),
        Some((405, msg)) => {
            tracing::warn!(%msg, symbols = asked.len(), "the market-data feed refused symbols");
            // A caller that gave up waiting (its answer came late) learns nothing from it.
            let anyone_waits = waiting.as_ref().is_some_and(|w| !w.is_closed());
            inner.refused(&asked, on_server, anyone_waits);
            Err(msg)
        }
        Some((code, msg)) => {
            tracing::warn!(code, %msg, "market-data (un)subscribe refused");
            Ok(())
        }
    };
    if let Some(waiting) = waiting {
        let _ = waiting.send(outcome);
    }
}

/// What the connection watchdog knows of one socket. Any frame (a ping or pong too) says the
/// socket lives; a data or control frame says the feed does. A feed quiet for `silence` is asked
/// for its subscription again: a live one answers, a stalled one does not and is reconnected
/// after `silence` more.
struct Liveness {
    /// The last frame of any kind.
    heard: tokio::time::Instant,
    /// The last data or control frame.
    data: tokio::time::Instant,
    /// When the quiet feed was asked for its subscription (its next frame clears it).
    probe: Option<tokio::time::Instant>,
}

impl Liveness {
    fn new() -> Self {
        let now = tokio::time::Instant::now();
        Self { heard: now, data: now, probe: None }
    }

    /// A frame came: of data (or control), or a ping or pong.
    fn frame(&mut self, data: bool) {
        self.heard = tokio::time::Instant::now();
        if data {
            self.data = self.heard;
            self.probe = None;
        }
    }

    /// The watchdog's look: why to reconnect, or what to send (the probe, a ping) first.
    async fn check<S: futures_util::Sink<Message> + Unpin>(
        &mut self,
        socket: &mut S,
        config: &StreamConfig,
        authenticated: bool,
        on_server: &BTreeSet<Symbol>,
        awaiting: &mut VecDeque<(Vec<Symbol>, Option<Answer>)>,
    ) -> Result<(), End> {
        let retry = || End::Retry { slow: false };
        if self.heard.elapsed() > config.silence {
            tracing::warn!("market-data stream silent; reconnecting");
            return Err(retry());
        }
        if self.probe.is_some_and(|at| at.elapsed() > config.silence) {
            tracing::warn!("market-data feed stalled (a subscribe went unanswered); reconnecting");
            return Err(retry());
        }
        // Something streamed, or asked for and unanswered: a quiet feed is probed.
        let expecting = !on_server.is_empty() || !awaiting.is_empty();
        if authenticated && self.probe.is_none() && expecting && self.data.elapsed() > config.silence {
            // Subscribing to what the server streams already changes nothing but draws its
            // answer.
            let streamed: Vec<Symbol> = on_server.iter().cloned().collect();
            if !send_within(socket, subscribe_message("subscribe", &streamed, config.msgpack), config.silence).await {
                return Err(retry());
            }
            awaiting.push_back((streamed, None));
            self.probe = Some(tokio::time::Instant::now());
        }
        // Quiet for half the watchdog's time: a ping, whose pong says the socket lives.
        if self.heard.elapsed() > config.silence / 2
            && !send_within(socket, Message::Ping(Vec::new().into()), config.silence).await
        {
            return Err(retry());
        }
        Ok(())
    }
}

async fn session_loop(
    config: &StreamConfig,
    inner: &Inner,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    socket: &mut Socket,
    authenticated: &mut bool,
    awaiting: &mut VecDeque<(Vec<Symbol>, Option<Answer>)>,
) -> End {
    let mut symbols = SymbolCache::default();
    // A zero `symbol_silence` turns the per-symbol watchdog off; the tick is never zero.
    let shortest =
        if config.symbol_silence.is_zero() { config.silence } else { config.silence.min(config.symbol_silence) };
    let mut watchdog = tokio::time::interval((shortest / 4).max(Duration::from_millis(1)));
    watchdog.tick().await;
    let mut alive = Liveness::new();
    // Authenticated within the watchdog's time, or tried again (pings alone keep a socket alive,
    // not one that never lets the client in).
    let auth_by = alive.heard + config.silence;
    // When each held symbol was last heard of (or subscribed), for the per-symbol watchdog.
    let mut symbol_heard: HashMap<Symbol, Heard> = HashMap::new();
    // What the server streams on this socket, as its last `subscription` answer said.
    let mut on_server: BTreeSet<Symbol> = BTreeSet::new();
    loop {
        tokio::select! {
            frame = socket.next() => {
                let messages = match frame {
                    Some(Ok(Message::Text(t))) => decode_json_with(t.as_bytes(), &mut symbols),
                    Some(Ok(Message::Binary(b))) => if config.msgpack { decode_msgpack_with(&b, &mut symbols) } else { decode_json_with(&b, &mut symbols) },
                    Some(Ok(Message::Close(_))) | None => return End::Retry { slow: false },
                    // A ping or pong: the socket is alive, though no quote changed.
                    Some(Ok(_)) => {
                        alive.frame(false);
                        continue;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "market-data read failed");
                        return End::Retry { slow: false };
                    }
                };
                alive.frame(true);
                let messages = match messages {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "skipping an undecodable market-data frame");
                        continue;
                    }
                };
                for message in messages {
                    match message {
                        DataMessage::Success(msg) if msg == "authenticated" => {
                            *authenticated = true;
                            inner.authenticated.store(true, Ordering::Relaxed);
                            let held: Vec<Symbol> = inner.refs.lock().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect();
                            if !held.is_empty() {
                                if !send_within(socket, subscribe_message("subscribe", &held, config.msgpack), config.silence).await {
                                    return End::Retry { slow: false };
                                }
                                awaiting.push_back((held, None));
                            }
                        }
                        DataMessage::Subscription { quotes } => {
                            on_server = quotes.iter().filter_map(|s| Symbol::parse(s).ok()).collect();
                            answer(inner, awaiting, &on_server, None);
                        }
                        DataMessage::Error { code: code @ (400 | 401 | 405 | 500), msg } if !awaiting.is_empty() => {
                            answer(inner, awaiting, &on_server, Some((code, msg)));
                        }
                        DataMessage::Quote(q) => {
                            let symbol = q.symbol.clone();
                            inner.quote_heard(&mut symbol_heard, &symbol, alive.heard);
                            if inner.store.update(q) {
                                let _ = inner.changes.send(symbol);
                            }
                        }
                        DataMessage::Error { code: 402 | 409 | 410 | 411, msg } => return End::Fatal(msg),
                        DataMessage::Error { code: 406, msg } => {
                            inner.limit_refusals.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(%msg, "market-data connection limit");
                            return End::Retry { slow: true };
                        }
                        DataMessage::Error { code, msg } => tracing::warn!(code, %msg, "market-data error"),
                        _ => {}
                    }
                }
            }
            command = commands.recv(), if *authenticated => {
                let (message, entry) = match command {
                    Some(Command::Subscribe(s, answer)) => (subscribe_message("subscribe", &s, config.msgpack), (s, answer)),
                    Some(Command::Unsubscribe(s)) => (subscribe_message("unsubscribe", &s, config.msgpack), (Vec::new(), None)),
                    None => return End::Fatal("the feed was dropped".into()),
                };
                if !send_within(socket, message, config.silence).await {
                    return End::Retry { slow: false };
                }
                awaiting.push_back(entry);
            }
            () = tokio::time::sleep_until(auth_by), if !*authenticated => {
                tracing::warn!(timeout = ?config.silence, "market-data stream not authenticated in time; reconnecting");
                return End::Retry { slow: false };
            }
            _ = watchdog.tick() => {
                if let Err(end) = alive.check(socket, config, *authenticated, &on_server, awaiting).await {
                    return end;
                }
                if *authenticated && !resubscribe_silent(socket, inner, &mut symbol_heard, config.symbol_silence, awaiting, config.msgpack).await {
                    return End::Retry { slow: false };
                }
            }
        }
    }
}
