//! An Alpaca-compatible emulator: the trading REST paths under `/v2`, the trade_updates
//! WebSocket at `/stream`, the market-data WebSocket at `/v2/{iex|sip|test}` and the
//! latest-quote data endpoints under `/v2/stocks/`, served from a
//! `tranche-sim` market running in real time, with Alpaca's JSON shapes, status codes, error
//! bodies and key-pair authentication.
//!
//! Invariants: every request is checked against the configured key pair (a wrong pair is a 401
//! with Alpaca's body, no pair a 403); every simulator refusal is answered with the status, code
//! and message Alpaca uses; the broker state lives as long as the process.

mod data_stream;
mod limits;
pub mod options;
mod render;
mod rest;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use tokio::sync::broadcast;
use tranche_broker::{Clock, OrderEvents, StreamEvent, TokioClock};
use tranche_sim::{SimConfig, SimulatedBroker};

pub use data_stream::DataStreamConfig;
pub use render::asset_id;

/// Default key id accepted by the emulator.
pub const DEFAULT_KEY_ID: &str = "EMULATORKEYID";
/// Default secret accepted by the emulator.
pub const DEFAULT_SECRET_KEY: &str = "emulator-secret-key";

/// How the emulator runs.
#[derive(Clone)]
pub struct EmulatorConfig {
    /// The simulated market and account.
    pub sim: SimConfig,
    /// The only accepted key id.
    pub key_id: String,
    /// The only accepted secret.
    pub secret_key: String,
    /// Alpaca's Trading API budget per key pair and minute (200); 0 turns the limit off.
    pub requests_per_minute: u32,
    /// Alpaca's Market Data API budget per key pair and minute (`/v2/stocks/...`; 200 on the
    /// Basic plan), separate from the trading budget; 0 turns the limit off.
    pub data_requests_per_minute: u32,
    /// Added before every REST answer: the network round trip a client sees (default none).
    pub round_trip: std::time::Duration,
    /// Fault injection: a trade_updates upgrade sooner than this after the previous one is
    /// refused with HTTP 429, as Alpaca answers rapid reconnects (default: never refused).
    pub stream_reconnect_min: Option<std::time::Duration>,
    /// Put the simulated session around the wall clock (open every day, for hours), so the
    /// market is open whatever the time and quotes carry real timestamps (default). When
    /// false, the simulator's configured session and start time are used as given.
    pub wall_clock_session: bool,
    /// The instant the emulator's clock reads when it starts, for an always-open session
    /// (`wall_clock_session`); `None` (the default) is the wall clock's now. Tests pin it so
    /// that what they see does not depend on the hour or the day they run.
    pub start_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The market-data stream's limits (Alpaca's Basic plan: 30 symbols on `iex`, auth within
    /// 10 s).
    pub data_stream: DataStreamConfig,
}

impl std::fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorConfig")
            .field("seed", &self.sim.seed)
            .field("key_id", &self.key_id)
            .field("secret_key", &"<redacted>")
            .field("wall_clock_session", &self.wall_clock_session)
            .field("start_at", &self.start_at)
            .field("data_stream", &self.data_stream)
            .field("requests_per_minute", &self.requests_per_minute)
            .field("round_trip", &self.round_trip)
            .field("stream_reconnect_min", &self.stream_reconnect_min)
            .finish_non_exhaustive()
    }
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            sim: SimConfig::default(),
            key_id: DEFAULT_KEY_ID.into(),
            secret_key: DEFAULT_SECRET_KEY.into(),
            wall_clock_session: true,
            start_at: None,
            data_stream: DataStreamConfig::default(),
            requests_per_minute: 200,
            data_requests_per_minute: 200,
            round_trip: std::time::Duration::ZERO,
            stream_reconnect_min: None,
        }
    }
}

/// NYSE's holidays of 2026 and 2027, as NYSE Group published them.
const NYSE_HOLIDAYS: [(i32, u32, u32); 20] = [
    (2026, 1, 1),
    (2026, 1, 19),
    (2026, 2, 16),
    (2026, 4, 3),
    (2026, 5, 25),
    (2026, 6, 19),
    (2026, 7, 3),
    (2026, 9, 7),
    (2026, 11, 26),
    (2026, 12, 25),
    (2027, 1, 1),
    (2027, 1, 18),
    (2027, 2, 15),
    (2027, 3, 26),
    (2027, 5, 31),
    (2027, 6, 18),
    (2027, 7, 5),
    (2027, 9, 6),
    (2027, 11, 25),
    (2027, 12, 24),
];

/// NYSE's early closes (13:00 ET) of 2026 and 2027.
const NYSE_EARLY_CLOSES: [(i32, u32, u32); 3] = [(2026, 11, 27), (2026, 12, 24), (2027, 11, 26)];

/// The US regular session (09:30-16:00 America/New_York, daylight saving time included) on
/// weekdays but NYSE's 2026-2027 holidays, closing at 13:00 on its early closes, with the
/// clock starting at `now`.
pub fn us_regular_session(now: chrono::DateTime<chrono::Utc>) -> tranche_sim::SessionConfig {
    let day = now.date_naive();
    let at = |h: u32, m: u32| day.and_hms_opt(h, m, 0).map_or(now, |t| t.and_utc());
    let date = |(y, m, d): (i32, u32, u32)| chrono::NaiveDate::from_ymd_opt(y, m, d);
    tranche_sim::SessionConfig {
        open: at(14, 30),
        close: at(21, 0),
        start: now,
        weekends: false,
        holidays: NYSE_HOLIDAYS.into_iter().filter_map(date).collect(),
        early_closes: NYSE_EARLY_CLOSES
            .into_iter()
            .filter_map(date)
            .map(|date| tranche_sim::EarlyClose { date, minutes: 210 })
            .collect(),
        us_daylight_saving: true,
    }
}

/// How long the always-open session has been open when the emulator starts.
const OPENED_BEFORE_START: chrono::TimeDelta = chrono::TimeDelta::minutes(15);
/// How long the always-open session stays open after the emulator starts.
const OPEN_AFTER_START: chrono::TimeDelta = chrono::TimeDelta::hours(8);

/// The emulator's always-open market around `now`: a session that opened 15 minutes before
/// `now` and closes 8 hours after it, repeated every day of the week (weekends included), so
/// the market is open from `now` for the whole session whatever the hour or the day.
pub fn always_open_session(now: chrono::DateTime<chrono::Utc>) -> tranche_sim::SessionConfig {
    tranche_sim::SessionConfig {
        open: now - OPENED_BEFORE_START,
        close: now + OPEN_AFTER_START,
        start: now,
        weekends: true,
        holidays: Vec::new(),
        early_closes: Vec::new(),
        us_daylight_saving: false,
    }
}

/// Shared state of the handlers.
pub(crate) struct State {
    pub broker: SimulatedBroker,
    pub key_id: String,
    pub secret_key: String,
    /// Trade updates for every connected stream client, as JSON text.
    pub updates: broadcast::Sender<Arc<str>>,
    /// Bumped on every injected stream outage: connected clients are dropped.
    pub outages: broadcast::Sender<()>,
    /// Drops every market-data socket.
    pub data_drops: broadcast::Sender<()>,
    /// Market-data sockets stay open but send nothing (a stalled feed).
    pub market_data_silent: std::sync::atomic::AtomicBool,
    /// Symbols whose quotes are not sent (a subscription the server lost).
    pub silent_symbols: std::sync::Mutex<std::collections::HashSet<tranche_domain::Symbol>>,
    /// Authenticated market-data sessions, by key and feed (one each).
    pub data_sessions: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Market-data connections open now (authenticated or not).
    pub data_connections: std::sync::atomic::AtomicUsize,
    /// The key pair's REST request budget (and the count of requests).
    pub budget: limits::RequestBudget,
    /// The key pair's Market Data REST budget.
    pub data_budget: limits::RequestBudget,
    /// Waited before every REST answer.
    pub round_trip: std::time::Duration,
    /// Rapid trade_updates reconnects are refused with 429 (see `EmulatorConfig`).
    pub stream_reconnect_min: Option<std::time::Duration>,
    /// When the last trade_updates upgrade was accepted.
    pub last_stream_upgrade: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// The market-data stream's limits.
    pub data_stream: DataStreamConfig,
}

/// A running emulator.
pub struct Emulator {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<State>,
    server: tokio::task::JoinHandle<()>,
    pump: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Emulator {
    /// Binds `addr` (port 0 picks a free one) and serves until dropped.
    pub async fn start(addr: SocketAddr, mut config: EmulatorConfig) -> std::io::Result<Self> {
        if config.wall_clock_session {
            config.sim.session = always_open_session(config.start_at.unwrap_or_else(chrono::Utc::now));
        }
        // As at Alpaca, a symbol the broker does not list is not found (no market is invented
        // for a typo) unless the configuration says otherwise.
        config.sim.symbols.invent.get_or_insert(false);
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(config.sim.session.start));
        let broker = SimulatedBroker::start(config.sim, clock).map_err(std::io::Error::other)?;
        // Trades, bars and snapshots are served from the tape.
        broker.with_sim(tranche_sim::Sim::keep_tape);
        let (updates, _) = broadcast::channel(4096);
        let (outages, _) = broadcast::channel(16);
        let mut events = broker.order_events();
        let state = Arc::new(State {
            broker,
            key_id: config.key_id,
            secret_key: config.secret_key,
            updates,
            outages,
            data_drops: broadcast::channel(16).0,
            market_data_silent: std::sync::atomic::AtomicBool::new(false),
            silent_symbols: std::sync::Mutex::new(std::collections::HashSet::new()),
            data_sessions: std::sync::Mutex::new(std::collections::HashSet::new()),
            data_connections: std::sync::atomic::AtomicUsize::new(0),
            budget: limits::RequestBudget::new(config.requests_per_minute),
            data_budget: limits::RequestBudget::new(config.data_requests_per_minute),
            round_trip: config.round_trip,
            stream_reconnect_min: config.stream_reconnect_min,
            last_stream_upgrade: std::sync::Mutex::new(None),
            data_stream: config.data_stream,
        });
        let pump_state = Arc::clone(&state);
        let pump = tokio::spawn(async move {
            while let Some(event) = events.next_event().await {
                match event {
                    StreamEvent::Update(update) => {
                        let text: Arc<str> = render::trade_update(&update).to_string().into();
                        let _ = pump_state.updates.send(text);
                    }
                    StreamEvent::Down { .. } => {
                        let _ = pump_state.outages.send(());
                    }
                    StreamEvent::Up | StreamEvent::Gap { .. } => {}
                }
            }
        });
        let app = router(Arc::clone(&state));
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "emulator server stopped");
            }
        });
        Ok(Self { addr, state, server, pump })
    }

    /// The base URL (`http://HOST:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Runs `f` on the simulator (inspection and fault control in tests).
    pub fn with_sim<R>(&self, f: impl FnOnce(&mut tranche_sim::Sim) -> R) -> R {
        self.state.broker.with_sim(f)
    }

    /// REST requests received so far on both APIs (refused ones included): what a client spent
    /// of its budgets.
    pub fn requests_served(&self) -> u64 {
        self.state.budget.served() + self.state.data_budget.served()
    }

    /// REST requests refused with 429 on either API because the key's budget was spent.
    pub fn requests_refused(&self) -> u64 {
        self.state.budget.refused() + self.state.data_budget.refused()
    }

    /// Trading API requests refused with 429.
    pub fn trading_requests_refused(&self) -> u64 {
        self.state.budget.refused()
    }

    /// Market Data API requests received so far (refused ones included).
    pub fn data_requests_served(&self) -> u64 {
        self.state.data_budget.served()
    }

    /// Drops every connected trade-update stream (as a network failure would).
    pub fn drop_streams(&self) {
        let _ = self.state.outages.send(());
    }

    /// Market-data connections open now (authenticated or not).
    pub fn market_data_connections(&self) -> usize {
        self.state.data_connections.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Drops every market-data socket.
    pub fn drop_market_data(&self) {
        let _ = self.state.data_drops.send(());
    }

    /// Stalls (or resumes) the market-data feed: sockets stay open and answer pings, nothing
    /// else is sent (no data, no answer to a subscribe).
    pub fn silence_market_data(&self, silent: bool) {
        self.state.market_data_silent.store(silent, std::sync::atomic::Ordering::Relaxed);
    }

    /// Stops (or resumes) sending quotes of one symbol while the others flow: a subscription
    /// the server lost.
    pub fn silence_symbol(&self, symbol: &tranche_domain::Symbol, silent: bool) {
        let mut set = self.state.silent_symbols.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if silent {
            set.insert(symbol.clone());
        } else {
            set.remove(symbol);
        }
    }

    /// Waits until the server stops (it runs until the process ends).
    pub async fn wait(&mut self) {
        let _ = (&mut self.server).await;
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.server.abort();
        self.pump.abort();
    }
}

fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/v2/account", get(rest::account))
        .route("/v2/account/configurations", get(rest::account_configurations))
        .route("/v2/positions", get(rest::positions).delete(rest::close_all))
        .route("/v2/positions/{symbol}", get(rest::position).delete(rest::close_position))
        .route("/v2/assets", get(rest::assets))
        .route("/v2/assets/{symbol}", get(rest::asset))
        .route("/v2/clock", get(rest::clock))
        .route("/v2/calendar", get(rest::calendar))
        .route("/v2/orders", post(rest::submit).get(rest::list_orders).delete(rest::cancel_all))
        .route("/v2/orders:by_client_order_id", get(rest::order_by_client_id))
        .route("/v2/orders/{id}", get(rest::order).patch(rest::replace).delete(rest::cancel))
        .route("/v2/account/activities/FILL", get(rest::fill_activities))
        .route("/v2/account/activities", get(rest::activities))
        .route("/v2/account/activities/{activity_type}", get(rest::activities_of_type))
        .route("/v2/stocks/{symbol}/quotes/latest", get(rest::latest_quote))
        .route("/v2/stocks/quotes/latest", get(rest::latest_quotes))
        .route("/v2/stocks/{symbol}/trades/latest", get(rest::latest_trade_one))
        .route("/v2/stocks/trades/latest", get(rest::latest_trades))
        .route("/v2/stocks/{symbol}/bars/latest", get(rest::latest_bar_one))
        .route("/v2/stocks/bars/latest", get(rest::latest_bars))
        .route("/v2/stocks/{symbol}/snapshot", get(rest::snapshot_one))
        .route("/v2/stocks/snapshots", get(rest::snapshots))
        // The key check runs first (the outer layer), then the budget and the round trip.
        .route_layer(axum::middleware::from_fn_with_state(Arc::clone(&state), limits::budget_and_round_trip))
        // The streams authenticate with their first message, not with headers.
        .route_layer(axum::middleware::from_fn_with_state(Arc::clone(&state), rest::require_keys))
        .route("/stream", get(stream::trade_updates))
        .route("/v2/{feed}", get(data_stream::market_data))
        // Whatever else a client asks for (another path, or another method on a known path)
        // is named in a 501, never a bare 404 or 405.
        .fallback(rest::not_implemented)
        .method_not_allowed_fallback(rest::not_implemented)
        .with_state(state)
}
