//! The emulator's command-line options and its serving loop, shared by the `alpaca-emulator`
//! binary and `tranche emulator`, so both take the same flags with the same defaults.
//!
//! Invariant: the first line on stdout is exactly `alpaca-emulator listening on http://HOST:PORT`
//! (scripts and tests read the port from it); errors go to stderr with a non-zero exit.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

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
    /// Seed of the simulated market.
    #[arg(long, env = "TRANCHE_SEED", default_value_t = 1)]
    pub seed: u64,
    /// The only key id accepted.
    #[arg(long, default_value = DEFAULT_KEY_ID)]
    pub key_id: String,
    /// The only secret accepted.
    #[arg(long, default_value = DEFAULT_SECRET_KEY)]
    pub secret_key: String,
    /// Starting cash of the account.
    #[arg(long, default_value = "100000")]
    pub cash: String,
    /// Injected faults: dropped, duplicated and delayed updates, dropped sockets, 5xx, 429,
    /// lost answers to submits.
    #[arg(long, value_enum, default_value = "none")]
    pub faults: Faults,
    /// Extra latency of every trade update, in milliseconds.
    #[arg(long, default_value_t = 15)]
    pub update_latency_ms: u64,
    /// Alpaca's request budget per minute (0: no limit); past it, requests get 429.
    #[arg(long, default_value_t = 200)]
    pub requests_per_minute: u32,
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
            key_id: self.key_id.clone(),
            secret_key: self.secret_key.clone(),
            requests_per_minute: self.requests_per_minute,
            round_trip: std::time::Duration::from_millis(self.round_trip_ms),
            stream_reconnect_min: (self.stream_reconnect_min_ms > 0)
                .then(|| std::time::Duration::from_millis(self.stream_reconnect_min_ms)),
            start_at: self.start_at,
            ..EmulatorConfig::default()
        };
        config.sim.seed = self.seed;
        config.sim.faults = match self.faults {
            Faults::None => tranche_sim::FaultConfig::none(),
            Faults::Light => tranche_sim::FaultConfig::light(),
            Faults::Heavy => tranche_sim::FaultConfig::heavy(),
        };
        config.sim.latency.update_ms = self.update_latency_ms;
        if self.real_hours {
            config.wall_clock_session = false;
            config.sim.session = us_regular_session(self.start_at.unwrap_or_else(chrono::Utc::now));
        }
        config.sim.account.starting_cash = self.cash.parse().map_err(|e| format!("--cash `{}`: {e}", self.cash))?;
        Ok(config)
    }
}

/// Serves `config` on `listen` until the process is interrupted: prints the documented first
/// line, exits 69 when the address cannot be bound.
pub fn serve(listen: SocketAddr, config: EmulatorConfig) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let mut emulator = match Emulator::start(listen, config).await {
            Ok(e) => e,
            Err(e) => {
                eprintln!("error: cannot listen on {listen}: {e}");
                return ExitCode::from(69);
            }
        };
        println!("alpaca-emulator listening on {}", emulator.url());
        let _ = std::io::stdout().flush();
        tokio::select! {
            () = emulator.wait() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        ExitCode::SUCCESS
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
    }
}
