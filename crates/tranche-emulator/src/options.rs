//! The emulator's command-line options and its serving loop, shared by the `alpaca-emulator`
//! binary and `tranche emulator`, so both take the same flags with the same defaults.
//!
//! Invariant: the first line on stdout is exactly `alpaca-emulator listening on http://HOST:PORT`
//! (scripts and tests read the port from it); errors go to stderr with a non-zero exit.

use std::io::Write;
use std::net::SocketAddr;

use crate::{us_regular_session, Emulator, EmulatorConfig, DEFAULT_KEY_ID, DEFAULT_SECRET_KEY};

/// Injected faults, from none to heavy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Faults {
    /// A fault-free broker.
    None,
    /// Occasional lost, duplicated and delayed updates, dropped sockets, 5xx, 429, lost answers.
    Light,
    /// The same, often.
    Heavy,
}

/// How the emulator is run from the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct EmulatorArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Seed of the simulated market (default 1, or the --sim-config file's).
    #[arg(long, env = "TRANCHE_SEED")]
    pub seed: Option<u64>,
    /// The only key id accepted.
    #[arg(long, default_value = DEFAULT_KEY_ID)]
    pub key_id: String,
    /// The only secret accepted.
    #[arg(long, default_value = DEFAULT_SECRET_KEY)]
    pub secret_key: String,
    /// Starting cash of the account (default 100000, or the --sim-config file's).
    #[arg(long)]
    pub cash: Option<String>,
    /// Injected faults: dropped, duplicated and delayed updates, dropped sockets, 5xx, 429,
    /// lost answers to submits, late orders and replaces (a 504 whose order appears, or whose
    /// replace applies, up to 30 s later), slow routing (accepted/pending_new, replaces refused
    /// until the order works), cancels stuck in pending_cancel, fill activities that lag, orders
    /// rejected at the venue after their 200, orders the broker cancels unasked; heavy, often,
    /// and with fill activities whose ids are unrelated to the execution ids (default none, or
    /// the --sim-config file's faults).
    #[arg(long, value_enum, default_value = "none")]
    pub faults: Faults,
    /// The account as Alpaca sets it up: every account is a margin account; 1 spends cash only,
    /// 2 is Reg-T margin, 4 a pattern day trader (default: a cash account).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["1", "2", "4"]))]
    pub account_multiplier: Option<String>,
    /// A simulator configuration (JSON, every field optional: account with positions and the
    /// user's own open orders, market, symbols, latency, fees, faults with every knob); the
    /// flags given apply on top of it. Its session is replaced by the emulator's (open from the
    /// start, or --real-hours).
    #[arg(long, value_name = "FILE")]
    pub sim_config: Option<std::path::PathBuf>,
    /// Most symbols one `iex` market-data connection may subscribe (Alpaca's Basic plan: 30;
    /// 0: no limit). Past it a subscribe gets error 405 and changes nothing.
    #[arg(long, default_value_t = crate::data_stream::IEX_SYMBOL_LIMIT)]
    pub data_symbol_limit: usize,
    /// Milliseconds a market-data connection may stay unauthenticated before it is closed with
    /// error 404 "auth timeout" (Alpaca: 10,000; 0: never).
    #[arg(long, default_value_t = 10_000)]
    pub data_auth_timeout_ms: u64,
    /// Milliseconds a market-data session that ended without a close frame (a dropped
    /// connection) still holds its key's one session, so that reconnecting meanwhile gets
    /// error 406 (Alpaca: about 90,000; 0: freed at once).
    #[arg(long, default_value_t = 0)]
    pub data_half_dead_hold_ms: u64,
    /// Extra latency of every trade update, in milliseconds (default 15, or the --sim-config
    /// file's).
    #[arg(long)]
    pub update_latency_ms: Option<u64>,
    /// Alpaca's Trading API request budget per minute (0: no limit); past it, requests get 429.
    #[arg(long, default_value_t = 200)]
    pub requests_per_minute: u32,
    /// Alpaca's Market Data API request budget per minute, counted apart from the trading one
    /// (0: no limit).
    #[arg(long, default_value_t = 200)]
    pub data_requests_per_minute: u32,
    /// Round trip added before every REST answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub round_trip_ms: u64,
    /// Refuse a trade_updates reconnect sooner than this many milliseconds after the previous
    /// one with HTTP 429, as Alpaca does (0: never).
    #[arg(long, default_value_t = 0)]
    pub stream_reconnect_min_ms: u64,
    /// Follow the US regular session (09:30-16:00 ET on weekdays) instead of an always-open
    /// market.
    #[arg(long)]
    pub real_hours: bool,
    /// What the emulator's clock reads when it starts (RFC 3339, e.g. 2026-11-28T17:30:00Z;
    /// default: the wall clock). The market is open from then on for eight hours, whatever
    /// the hour or the day, unless --real-hours.
    #[arg(long)]
    pub start_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl EmulatorArgs {
    /// The emulator configuration these options describe; the error names the bad flag.
    pub fn config(&self) -> Result<EmulatorConfig, String> {
        let mut config = EmulatorConfig {
            sim: match &self.sim_config {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| format!("--sim-config {}: cannot read it: {e}", path.display()))?;
                    serde_json::from_str(&text).map_err(|e| format!("--sim-config {}: {e}", path.display()))?
                }
                None => tranche_sim::SimConfig::default(),
            },
            key_id: self.key_id.clone(),
            secret_key: self.secret_key.clone(),
            requests_per_minute: self.requests_per_minute,
            data_requests_per_minute: self.data_requests_per_minute,
            round_trip: std::time::Duration::from_millis(self.round_trip_ms),
            stream_reconnect_min: (self.stream_reconnect_min_ms > 0)
                .then(|| std::time::Duration::from_millis(self.stream_reconnect_min_ms)),
            start_at: self.start_at,
            data_stream: crate::DataStreamConfig {
                iex_symbol_limit: self.data_symbol_limit,
                auth_timeout: std::time::Duration::from_millis(self.data_auth_timeout_ms),
                half_dead_hold: std::time::Duration::from_millis(self.data_half_dead_hold_ms),
            },
            ..EmulatorConfig::default()
        };
        if let Some(seed) = self.seed {
            config.sim.seed = seed;
        }
        match self.faults {
            // The configuration file's faults stand unless a level is asked for.
            Faults::None if self.sim_config.is_some() => {}
            Faults::None => config.sim.faults = tranche_sim::FaultConfig::none(),
            Faults::Light => config.sim.faults = tranche_sim::FaultConfig::light(),
            Faults::Heavy => config.sim.faults = tranche_sim::FaultConfig::heavy(),
        }
        if let Some(multiplier) = &self.account_multiplier {
            config.sim.account.kind = tranche_sim::AccountKind::Margin;
            config.sim.account.multiplier = multiplier.parse().map_err(|e| format!("--account-multiplier: {e}"))?;
        }
        if let Some(ms) = self.update_latency_ms {
            config.sim.latency.update_ms = ms;
        }
        if self.real_hours {
            config.wall_clock_session = false;
            config.sim.session = us_regular_session(self.start_at.unwrap_or_else(chrono::Utc::now));
        }
        if let Some(cash) = &self.cash {
            config.sim.account.starting_cash = cash.parse().map_err(|e| format!("--cash `{cash}`: {e}"))?;
        }
        Ok(config)
    }
}

/// Why [`serve`] could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The async runtime could not be started.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    /// The address cannot be bound (taken, or not this machine's).
    #[error("cannot listen on {listen}: {source}")]
    Listen {
        /// The address asked for.
        listen: SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
}

/// Serves `config` on `listen` until the process is interrupted, after printing the documented
/// first line (`alpaca-emulator listening on http://HOST:PORT`).
///
/// # Errors
/// [`ServeError`] when the runtime cannot start or the address cannot be bound.
pub fn serve(listen: SocketAddr, config: EmulatorConfig) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(async move {
        let mut emulator =
            Emulator::start(listen, config).await.map_err(|source| ServeError::Listen { listen, source })?;
        println!("alpaca-emulator listening on {}", emulator.url());
        let _ = std::io::stdout().flush();
        tokio::select! {
            () = emulator.wait() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        emulator: EmulatorArgs,
    }

    #[test]
    fn defaults_are_alpacas_and_flags_reach_the_configuration() {
        let config = Cli::parse_from(["x"]).emulator.config().unwrap();
        assert_eq!(config.requests_per_minute, 200);
        assert!(config.round_trip.is_zero() && config.wall_clock_session);
        let args = ["x", "--seed", "9", "--round-trip-ms", "20", "--requests-per-minute", "0", "--cash", "2500.50"];
        let config = Cli::parse_from(args).emulator.config().unwrap();
        assert_eq!((config.sim.seed, config.requests_per_minute), (9, 0));
        assert_eq!(config.round_trip, std::time::Duration::from_millis(20));
        assert_eq!(config.sim.account.starting_cash.to_string(), "2500.50");
        let bad = Cli::parse_from(["x", "--cash", "lots"]).emulator.config().unwrap_err();
        assert!(bad.contains("--cash `lots`"), "{bad}");
        let margin =
            Cli::parse_from(["x", "--account-multiplier", "4", "--faults", "heavy"]).emulator.config().unwrap();
        assert_eq!((margin.sim.account.kind, margin.sim.account.multiplier), (tranche_sim::AccountKind::Margin, 4));
        assert!(margin.sim.faults.late_order_ppm > 0 && margin.sim.faults.activity_ids_unrelated);
        assert!(Cli::try_parse_from(["x", "--account-multiplier", "3"]).is_err());
        let file = std::env::temp_dir().join(format!("tranche-emulator-sim-{}.json", std::process::id()));
        let json = r#"{"seed": 7, "latency": {"update_ms": 99}, "faults": {"late_order_ppm": 1000}}"#;
        std::fs::write(&file, json).unwrap();
        let path = file.to_str().unwrap();
        let from_file = Cli::parse_from(["x", "--sim-config", path]).emulator.config().unwrap();
        assert_eq!((from_file.sim.seed, from_file.sim.latency.update_ms), (7, 99), "the file's values stand");
        assert_eq!(from_file.sim.faults.late_order_ppm, 1000, "and its faults");
        let args = ["x", "--sim-config", path, "--seed", "8", "--update-latency-ms", "5", "--faults", "none"];
        let flags = Cli::parse_from(args).emulator.config().unwrap();
        assert_eq!((flags.sim.seed, flags.sim.latency.update_ms), (8, 5), "flags given apply on top");
        std::fs::remove_file(&file).unwrap();
        let missing = Cli::parse_from(["x", "--sim-config", "/nonexistent/sim.json"]).emulator.config().unwrap_err();
        assert!(missing.contains("--sim-config /nonexistent/sim.json: cannot read it"), "{missing}");
    }
}
